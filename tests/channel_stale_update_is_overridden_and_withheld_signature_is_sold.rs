//! Chain watching and pay-for-signature at the channel level:
//! - S sees A's stale update U_1 on chain and answers with the latest update, which spends
//!   U_1's output; once that confirms, S broadcasts the settlement after shared_delay blocks.
//! - A proposes a transfer and withholds its signature; S prices it from the committed
//!   nonce, completes the state from the scalar alone, and A learns on reconnection.

mod channel_support;

use asyncpay::crypto::adaptor::{sells, AdaptorSecret};
use asyncpay::protocol::channel::{ChainEvent, Command, Event, Input, Phase};
use asyncpay::tx::{
    ChannelKeys, Funding, Party, Settlement, SettlementTerms, SpentChannel, Update,
    STATE_LOCKTIME_BASE,
};
use bitcoin::{Amount, OutPoint, ScriptBuf, TxOut};
use channel_support::*;

fn opened() -> Net<Never> {
    let mut net = Net::new(Never);
    net.open().expect("channel opens");
    net
}

fn transfer(net: &mut Net<Never>, from: Party, amount_sat: u64, withhold: bool) {
    net.input(
        from,
        Input::Command(Command::Transfer {
            amount_sat,
            withhold,
        }),
    )
    .expect("transfer accepted");
    net.pump().expect("exchange");
}

#[test]
fn stale_update_is_answered_with_the_latest_and_settled_after_the_delay() {
    let mut net = opened();
    transfer(&mut net, Party::A, 1_000, false);
    let state1 = net.snapshot(Party::A).complete.clone().expect("state 1");
    transfer(&mut net, Party::A, 2_000, false);
    transfer(&mut net, Party::S, 500, false);
    assert_eq!(
        net.snapshot(Party::S)
            .complete
            .as_ref()
            .unwrap()
            .body
            .number,
        3
    );

    // A publishes U_1, built independently with the transaction builders.
    let key = |p| bitcoin::XOnlyPublicKey::from(secrets(p).key.public_key());
    let funding = Funding::new(
        ChannelKeys::new(key(Party::A), key(Party::S)),
        Amount::from_sat(CAPACITY),
    );
    let pay = |p, v| TxOut {
        value: Amount::from_sat(v),
        script_pubkey: ScriptBuf::new_p2tr(
            &bitcoin::secp256k1::Secp256k1::verification_only(),
            payout(p).into(),
            None,
        ),
    };
    let terms = SettlementTerms {
        a: pay(Party::A, state1.body.to_a),
        s: pay(Party::S, state1.body.to_s),
        ptlcs: vec![],
    };
    let se1 = Settlement::new(&funding, DELAY, terms).expect("settlement");
    let u1 = Update::new(&funding, 1, &se1).expect("update");
    let stale = u1
        .bind(
            &SpentChannel::Funding {
                outpoint: funding_outpoint(),
                funding: &funding,
            },
            &state1.sig_a.into(),
            &state1.sig_s.into(),
        )
        .expect("the channel's own signatures bind U_1");

    net.input(
        Party::S,
        Input::Chain(ChainEvent::Spend {
            tx: stale.clone(),
            confirmed_at: Some(HEIGHT + 10),
        }),
    )
    .expect("stale update handled");
    let answer = net.s.broadcasts.last().cloned().expect("S answered");
    assert_eq!(
        answer.input[0].previous_output,
        OutPoint {
            txid: stale.compute_txid(),
            vout: 0
        }
    );
    assert_eq!(answer.lock_time.to_consensus_u32(), STATE_LOCKTIME_BASE + 3);
    assert!(net.s.events.contains(&Event::StaleUpdateAnswered {
        stale: 1,
        latest: 3
    }));
    assert_eq!(net.snapshot(Party::S).phase, Phase::ForceClosing);

    // The latest update confirms; nothing happens until shared_delay blocks later.
    let confirmed = HEIGHT + 11;
    net.input(
        Party::S,
        Input::Chain(ChainEvent::Spend {
            tx: answer.clone(),
            confirmed_at: Some(confirmed),
        }),
    )
    .expect("latest update handled");
    let before = net.s.broadcasts.len();
    for h in confirmed..confirmed + u32::from(DELAY) - 1 {
        net.input(Party::S, Input::Chain(ChainEvent::Block { height: h }))
            .expect("block");
    }
    assert_eq!(
        net.s.broadcasts.len(),
        before,
        "settlement waits for the delay"
    );
    net.input(
        Party::S,
        Input::Chain(ChainEvent::Block {
            height: confirmed + u32::from(DELAY) - 1,
        }),
    )
    .expect("block");
    let settlement = net
        .s
        .broadcasts
        .last()
        .cloned()
        .expect("settlement broadcast");
    assert_eq!(
        settlement.input[0].previous_output,
        OutPoint {
            txid: answer.compute_txid(),
            vout: 0
        }
    );
    assert_eq!(
        settlement.input[0].sequence,
        bitcoin::Sequence::from_height(DELAY)
    );
    let latest = net
        .snapshot(Party::S)
        .complete
        .clone()
        .expect("state 3")
        .body;
    let paid: Vec<u64> = settlement.output.iter().map(|o| o.value.to_sat()).collect();
    assert!(paid.contains(&latest.to_a) && paid.contains(&latest.to_s));

    net.input(
        Party::S,
        Input::Chain(ChainEvent::Spend {
            tx: settlement,
            confirmed_at: Some(confirmed + u32::from(DELAY)),
        }),
    )
    .expect("settlement seen");
    assert_eq!(net.snapshot(Party::S).phase, Phase::Closed);
}

#[test]
fn withheld_signature_is_priced_and_completes_the_state_when_sold() {
    let mut net = opened();
    transfer(&mut net, Party::A, 25_000, true);
    assert_eq!(net.snapshot(Party::A).phase, Phase::Withheld);
    assert_eq!(net.snapshot(Party::S).phase, Phase::CounterSigned);
    let (signature, price_point) = net
        .a
        .events
        .iter()
        .find_map(|e| match e {
            Event::SignatureWithheld {
                signature,
                price_point,
                ..
            } => Some((*signature, *price_point)),
            _ => None,
        })
        .expect("A reports the withheld signature");
    // S computes the same price point from the committed nonce alone.
    assert_eq!(net.s.channel().pending_price_point(), Some(price_point));
    let s = AdaptorSecret::from_signature(&signature).expect("nonzero");
    assert!(sells(&s, &price_point));

    // A wrong scalar is refused and changes nothing.
    let before = net.snapshot(Party::S).clone();
    assert!(net
        .input(
            Party::S,
            Input::Command(Command::CompleteWithSecret { secret: secret(5) })
        )
        .is_err());
    assert_eq!(net.snapshot(Party::S), &before);

    // The payee sells s; S completes state 1.
    net.input(
        Party::S,
        Input::Command(Command::CompleteWithSecret { secret: s }),
    )
    .expect("sold scalar completes the state");
    let s_state = net.snapshot(Party::S).complete.clone().expect("complete");
    assert_eq!(s_state.body.number, 1);
    assert_eq!(s_state.body.to_s, PUSH + 25_000);

    // A comes back: reconnection tells it S completed the state.
    net.reconnect().expect("reconnect");
    net.pump().expect("pump");
    assert_eq!(net.snapshot(Party::A).phase, Phase::Funded);
    assert_eq!(
        net.snapshot(Party::A).complete,
        net.snapshot(Party::S).complete
    );
    assert!(net
        .a
        .events
        .iter()
        .any(|e| matches!(e, Event::StateCompleted { state: 1, .. })));
}
