//! Replayed, out-of-order and badly signed peer messages, and PTLCs that break the expiry
//! rule, get typed errors and leave both parties' state untouched.

mod channel_support;

use asyncpay::crypto::keys::SecretKey;
use asyncpay::protocol::channel::{ChannelError, Command, Input};
use asyncpay::protocol::messages::{Change, ChannelId, CompleteUpdate, Message};
use asyncpay::tx::ptlc::ExpiryError;
use asyncpay::tx::Party;
use channel_support::*;

fn opened() -> Net<Never> {
    let mut net = Net::new(Never);
    net.open().expect("channel opens");
    net
}

/// Sends `msg` to `party` and checks it is refused without a state change.
fn refused(net: &mut Net<Never>, party: Party, msg: Message) -> ChannelError {
    let before = net.snapshot(party).clone();
    let channel = net.node(party).channel.as_mut().expect("open");
    let err = channel
        .handle(Input::Message(msg))
        .expect_err("message must be refused");
    assert_eq!(channel.snapshot(), &before, "refusal changed the state");
    err
}

fn transfer(net: &mut Net<Never>, from: Party, amount_sat: u64) {
    net.input(
        from,
        Input::Command(Command::Transfer {
            amount_sat,
            withhold: false,
        }),
    )
    .expect("transfer accepted");
}

#[test]
fn replayed_and_out_of_order_messages_are_refused() {
    let mut net = opened();
    transfer(&mut net, Party::A, 1_000);
    // Capture the whole exchange of state 1, then deliver it.
    let propose = net.to_s.front().cloned().expect("proposal sent");
    net.pump().expect("exchange completes");
    let state1 = net.snapshot(Party::S).complete.clone().expect("state 1");
    assert_eq!(state1.body.number, 1);

    // A replayed proposal of a completed state.
    assert!(matches!(
        refused(&mut net, Party::S, propose.clone()),
        ChannelError::WrongState {
            got: 1,
            expected: 2,
            ..
        }
    ));
    // A replayed completion.
    let complete = Message::Complete(CompleteUpdate {
        channel_id: ChannelId([7; 32]),
        state: 1,
        signature: state1.sig_a,
    });
    assert!(matches!(
        refused(&mut net, Party::S, complete.clone()),
        ChannelError::WrongState { .. }
    ));
    // A countersignature nobody asked for.
    assert!(matches!(
        refused(
            &mut net,
            Party::A,
            Message::CounterSign(asyncpay::protocol::messages::CounterSignUpdate {
                channel_id: ChannelId([7; 32]),
                state: 2,
                signature: state1.sig_s,
            })
        ),
        ChannelError::Unexpected { .. }
    ));
    // A message for another channel.
    let mut other = propose;
    if let Message::Propose(m) = &mut other {
        m.channel_id = ChannelId([8; 32]);
    }
    assert!(matches!(
        refused(&mut net, Party::S, other),
        ChannelError::WrongChannel { .. }
    ));
}

#[test]
fn invalid_signatures_and_wrong_nonces_are_refused() {
    let mut net = opened();
    transfer(&mut net, Party::A, 1_000);
    // S receives the proposal and countersigns; hold A's completion back.
    let propose = net.to_s.pop_front().expect("proposal");
    let actions = net
        .node(Party::S)
        .channel
        .as_mut()
        .expect("open")
        .handle(Input::Message(propose))
        .expect("valid proposal");
    net.run_actions(Party::S, actions).expect("driver");
    let countersign = net.to_a.pop_front().expect("countersignature");
    let Message::CounterSign(mut bad) = countersign.clone() else {
        panic!("expected a countersignature")
    };
    // A signature by the wrong key on the right state.
    bad.signature = SecretKey::from_bytes([0x5a; 32])
        .expect("scalar")
        .sign(&[0; 32], &[0; 32]);
    assert!(matches!(
        refused(&mut net, Party::A, Message::CounterSign(bad)),
        ChannelError::InvalidSignature { .. }
    ));
    // The real one completes A; its completion signature uses the committed nonce.
    let actions = net
        .node(Party::A)
        .channel
        .as_mut()
        .expect("open")
        .handle(Input::Message(countersign))
        .expect("valid countersignature");
    net.run_actions(Party::A, actions).expect("driver");
    let Some(Message::Complete(good)) = net.to_s.pop_front() else {
        panic!("expected a completion")
    };
    // A valid BIP340 signature by A, but not with the committed nonce.
    let mut wrong_nonce = good.clone();
    wrong_nonce.signature = net
        .snapshot(Party::A)
        .complete
        .as_ref()
        .map(|_| secrets(Party::A).key.sign(&[1; 32], &[9; 32]))
        .expect("key");
    assert!(matches!(
        refused(&mut net, Party::S, Message::Complete(wrong_nonce)),
        ChannelError::NonceMismatch { state: 1 }
    ));
    let actions = net
        .node(Party::S)
        .channel
        .as_mut()
        .expect("open")
        .handle(Input::Message(Message::Complete(good)))
        .expect("valid completion");
    net.run_actions(Party::S, actions).expect("driver");
    assert_eq!(
        net.snapshot(Party::A).complete,
        net.snapshot(Party::S).complete
    );
}

#[test]
fn ptlc_expiry_rule_is_enforced_by_both_parties() {
    let mut net = opened();
    let point = secret(9).adaptor_point();
    let min = 2 * u32::from(DELAY);
    let add = |expiry| {
        Input::Command(Command::AddPtlc {
            amount_sat: 10_000,
            point,
            expiry,
        })
    };
    let before = net.snapshot(Party::A).clone();
    let channel = net.node(Party::A).channel.as_mut().expect("open");
    // One block short of 2·shared_delay.
    assert!(matches!(
        channel.handle(add(HEIGHT + min - 1)),
        Err(ChannelError::Expiry(ExpiryError::TooSoon { minimum, .. })) if minimum == min
    ));
    // Beyond the update window.
    assert!(matches!(
        channel.handle(add(HEIGHT + WINDOW + 1)),
        Err(ChannelError::Expiry(ExpiryError::OutlivesWindow { .. }))
    ));
    assert_eq!(channel.snapshot(), &before);
    // Exactly 2·shared_delay is allowed.
    net.input(Party::A, add(HEIGHT + min))
        .expect("at the limit");
    // The receiver checks too: a peer proposing a short expiry is refused.
    let Some(Message::Propose(mut p)) = net.to_s.pop_front() else {
        panic!("expected a proposal")
    };
    if let Change::AddPtlc { expiry, .. } = &mut p.change {
        *expiry = HEIGHT + min - 1;
    }
    assert!(matches!(
        refused(&mut net, Party::S, Message::Propose(p)),
        ChannelError::Expiry(ExpiryError::TooSoon { .. })
    ));
}

/// A peer never reuses a PTLC id: once a PTLC of id k reached a complete state, a later
/// proposal of the peer naming k again is refused (`BadPtlcId`), even after the first is
/// gone. So a role's fulfil or fail naming k can only ever meet the PTLC it meant.
#[test]
fn a_peer_reusing_the_id_of_a_ptlc_that_is_gone_is_refused() {
    let mut net = opened();
    let add = |b: u8| {
        Input::Command(Command::AddPtlc {
            amount_sat: 10_000,
            point: secret(b).adaptor_point(),
            expiry: HEIGHT + 3 * u32::from(DELAY),
        })
    };
    net.input(Party::A, add(9)).expect("first PTLC");
    net.pump().expect("completes");
    let first = net.snapshot(Party::S).complete.as_ref().unwrap().body.ptlcs[0].id;
    net.input(Party::S, Input::Command(Command::Fail { id: first }))
        .expect("S fails it back");
    net.pump().expect("completes");
    assert!(net
        .snapshot(Party::S)
        .complete
        .as_ref()
        .unwrap()
        .body
        .ptlcs
        .is_empty());
    // A's next PTLC, relabelled with the first one's id.
    net.input(Party::A, add(10)).expect("second PTLC");
    let Some(Message::Propose(mut p)) = net.to_s.pop_front() else {
        panic!("expected a proposal")
    };
    let Change::AddPtlc { id, .. } = &mut p.change else {
        panic!("expected a PTLC")
    };
    assert_ne!(*id, first, "an honest channel never reuses one");
    *id = first;
    assert!(matches!(
        refused(&mut net, Party::S, Message::Propose(p)),
        ChannelError::BadPtlcId { id } if id == first
    ));
}
