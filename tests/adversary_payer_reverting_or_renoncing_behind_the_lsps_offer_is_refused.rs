//! A byzantine payer A tries to take back a payment its LSP S has offered to buy.
//!
//! A pays the offline payee B: A and S agree state 1, S signs a purchase offer priced at A's
//! committed nonce R1, A posts its letter. Then A, still connected, sends S either
//! - `Propose(Revert { abandoned: 1 })`: before the fix S's channel countersigned it without
//!   asking the LSP role; B later sold A's signature, S paid B and could not complete state
//!   1 (`StateAbandoned`) yet recorded the sale as `sold`: A alone took the amount from S; or
//! - the same proposal of state 1 again with a new nonce R2: before the fix S's channel took
//!   R2, so the scalar B sells (made with R1) no longer completed state 1: S paid for nothing.
//!
//! Now the LSP role prices state 1 in the channel before its offer leaves, and the channel
//! refuses both. B sells, S completes state 1 and is paid exactly.

use asyncpay::crypto::keys::SecretKey;
use asyncpay::crypto::nonce::PublicNonce;
use asyncpay::node::core::{NodeInput, NodeOutput};
use asyncpay::protocol::channel::{Phase, Snapshot};
use asyncpay::protocol::messages::{Change, ChannelId, Message, ProposeUpdate};
use asyncpay::protocol::payment::PaymentId;
use asyncpay::protocol::wire::PeerMessage;
use asyncpay::testing::*;

const AMOUNT: u64 = 50_000;

/// A–S and S–B open; B is offline; A pays and S has an open offer on A–S's state 1.
fn offered() -> (Network, ChannelId, PaymentId) {
    let mut sim = Network::new();
    let a_s = sim.open(A, S, A_S_CAPACITY).unwrap();
    sim.open(S, B, S_B_CAPACITY).unwrap();
    sim.stop(B);
    let id = sim.pay(AMOUNT).unwrap();
    assert_eq!(sim.nodes[A].status(&id), Some("posted"));
    assert_eq!(sim.nodes[S].status(&id), Some("offered"));
    let snap = sim.nodes[S].channel_with(sim.key(A)).unwrap();
    assert_eq!(snap.phase(), Phase::CounterSigned);
    assert_eq!(
        snap.priced,
        Some(1),
        "the LSP priced state 1 before offering"
    );
    (sim, a_s, id)
}

/// A fresh, valid nonce the adversary commits to.
fn adversary_nonce(b: u8) -> PublicNonce {
    let x = SecretKey::from_bytes([b; 32])
        .unwrap()
        .public_key()
        .to_xonly_bytes();
    PublicNonce::from_xonly_bytes(x)
}

/// A's proposal of the pending state again, committing to `nonce`.
fn renonced(sim: &Network, a_s: ChannelId, nonce: PublicNonce) -> Message {
    let pending = s_channel(sim, a_s).pending().cloned().unwrap();
    Message::Propose(ProposeUpdate {
        channel_id: a_s,
        state: pending.body.number,
        change: pending.change,
        nonce,
    })
}

/// Feeds S a channel message from A; returns S's outputs (empty if refused).
fn from_a(sim: &mut Network, msg: Message) -> Vec<NodeOutput> {
    let frame = PeerMessage::Channel(msg).encode();
    let from = sim.key(A);
    let core = sim.nodes[S].core.as_mut().unwrap();
    core.handle(NodeInput::Frame { from, frame })
        .map(|handled| handled.actions)
        .unwrap_or_default()
}

/// S's A–S snapshot.
fn s_channel(sim: &Network, a_s: ChannelId) -> Snapshot {
    sim.nodes[S].core().channels()[&a_s]
        .channel
        .snapshot()
        .clone()
}

/// Feeds S `msg` from A and checks that S neither answers nor changes its channel.
fn refused_without_change(sim: &mut Network, a_s: ChannelId, msg: Message, what: &str) {
    let before = s_channel(sim, a_s);
    let out = from_a(sim, msg);
    assert!(!countersigned(&out), "S answered {what}");
    assert_eq!(
        before,
        s_channel(sim, a_s),
        "refusing {what} changed nothing"
    );
}

fn countersigned(outputs: &[NodeOutput]) -> bool {
    outputs
        .iter()
        .any(|o| matches!(o, NodeOutput::Send { what, .. } if *what == "countersign"))
}

/// B comes online and sells; S must complete state 1 and be paid amount plus fee.
fn sale_still_pays_s(mut sim: Network, id: PaymentId) {
    sim.stop(A);
    sim.start(B).unwrap();
    sim.fetch_letters(B).unwrap();
    assert_eq!(sim.nodes[B].status(&id), Some("paid"));
    assert_eq!(sim.nodes[S].status(&id), Some("sold"));
    let fee = policy().fee_for(AMOUNT);
    let a_s = sim.nodes[S].state_with(sim.key(A)).unwrap();
    assert_eq!(a_s.number, 1, "S completed the state it bought");
    assert_eq!(
        (a_s.to_a, a_s.to_s),
        (A_S_CAPACITY - AMOUNT - fee, AMOUNT + fee)
    );
    let snap = sim.nodes[S].channel_with(sim.key(A)).unwrap();
    assert_eq!(snap.priced, None, "completion lifts the price");
    // And A, back, ends on the same state with its receipt.
    sim.start(A).unwrap();
    sim.pump().unwrap();
    assert_eq!(sim.nodes[A].status(&id), Some("completed"));
    assert_eq!(sim.nodes[A].state_with(sim.key(S)), Some(a_s));
}

#[test]
fn payer_reverting_the_offered_state_is_refused_and_the_sale_pays_the_lsp() {
    let (mut sim, a_s, id) = offered();
    let revert = Message::Propose(ProposeUpdate {
        channel_id: a_s,
        state: 2,
        change: Change::Revert { abandoned: 1 },
        nonce: adversary_nonce(0x0d),
    });
    refused_without_change(&mut sim, a_s, revert, "A's revert behind its offer");
    assert_eq!(sim.nodes[S].status(&id), Some("offered"));
    sale_still_pays_s(sim, id);
}

#[test]
fn payer_replacing_the_priced_nonce_is_refused_and_the_sale_pays_the_lsp() {
    let (mut sim, a_s, id) = offered();
    let renonce = renonced(&sim, a_s, adversary_nonce(0x0e));
    refused_without_change(&mut sim, a_s, renonce, "a new nonce for the priced state");
    sale_still_pays_s(sim, id);
}

/// The same proposal with the same nonce (an honest reconnection) is still answered.
#[test]
fn payer_repeating_the_proposal_with_its_nonce_is_answered() {
    let (mut sim, a_s, _) = offered();
    let pending = s_channel(&sim, a_s).pending().cloned().unwrap();
    let again = Message::Propose(ProposeUpdate {
        channel_id: a_s,
        state: pending.body.number,
        change: pending.change,
        nonce: pending.proposer_nonce,
    });
    assert!(countersigned(&from_a(&mut sim, again)));
}

/// S's own revert (the offer expired or A cancelled) is the role's decision and still works.
#[test]
fn lsp_voiding_its_offer_reverts_the_priced_state() {
    let (mut sim, _, id) = offered();
    sim.block(HEIGHT + policy().offer_lifetime + 1).unwrap();
    assert_eq!(sim.nodes[S].status(&id), Some("cancelled"));
    let s = sim.nodes[S].state_with(sim.key(A)).unwrap();
    assert_eq!((s.number, s.to_a), (2, A_S_CAPACITY));
    assert_eq!(sim.nodes[S].channel_with(sim.key(A)).unwrap().priced, None);
}

/// A nonce that is no curve point's x (BIP340's test vector 5) travels as its bytes: the
/// wire does not lift it. Offered in place of the priced nonce it is refused like any other
/// new nonce; committed in a fresh proposal, S may countersign it, but nothing can price
/// it, so S can offer nothing on that state (and no signature with that R verifies).
#[test]
fn payer_committing_a_nonce_off_the_curve_gets_nothing_priced() {
    let off_curve: [u8; 32] =
        hex::decode("EEFDEA4CDB677750A420FEE807EACF21EB9898AE79B9768766E4FAA04A2D4A34")
            .unwrap()
            .try_into()
            .unwrap();
    let (mut sim, a_s, id) = offered();
    let renonce = renonced(&sim, a_s, PublicNonce::from_xonly_bytes(off_curve));
    refused_without_change(
        &mut sim,
        a_s,
        renonce,
        "a nonce off the curve for the priced state",
    );
    sale_still_pays_s(sim, id);

    // A fresh channel: A proposes a transfer committing to the same x.
    let mut sim = Network::new();
    let a_s = sim.open(A, S, A_S_CAPACITY).unwrap();
    let number = s_channel(&sim, a_s).complete.as_ref().unwrap().body.number + 1;
    let proposal = Message::Propose(ProposeUpdate {
        channel_id: a_s,
        state: number,
        change: Change::Transfer { amount_sat: AMOUNT },
        nonce: PublicNonce::from_xonly_bytes(off_curve),
    });
    assert!(countersigned(&from_a(&mut sim, proposal)));
    let snap = s_channel(&sim, a_s);
    assert_eq!(
        snap.pending().map(|p| p.proposer_nonce.to_xonly_bytes()),
        Some(off_curve),
        "S holds the proposal with the x as sent"
    );
    let entry = &sim.nodes[S].core().channels()[&a_s];
    assert_eq!(
        entry.channel.pending_price_point(),
        None,
        "no price point from an x off the curve"
    );
}
