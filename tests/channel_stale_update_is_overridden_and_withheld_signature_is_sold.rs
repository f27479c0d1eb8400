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

/// U_1 as A would publish it from its own copy of state 1, built independently with the
/// transaction builders.
fn stale_update(state1: &asyncpay::protocol::channel::StateRecord) -> bitcoin::Transaction {
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
    u1.bind(
        &SpentChannel::Funding {
            outpoint: funding_outpoint(),
            funding: &funding,
        },
        &state1.sig_a.into(),
        &state1.sig_s.into(),
    )
    .expect("the channel's own signatures bind U_1")
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
    let stale = stale_update(&state1);

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
    assert_eq!(net.snapshot(Party::S).phase(), Phase::ForceClosing);

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
    assert_eq!(net.snapshot(Party::S).phase(), Phase::Closed);
}

#[test]
fn withheld_signature_is_priced_and_completes_the_state_when_sold() {
    let mut net = opened();
    transfer(&mut net, Party::A, 25_000, true);
    assert_eq!(net.snapshot(Party::A).phase(), Phase::Withheld);
    assert_eq!(net.snapshot(Party::S).phase(), Phase::CounterSigned);
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
    assert_eq!(net.snapshot(Party::A).phase(), Phase::Funded);
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

/// A restarted driver watches the channel's outpoints again (from the snapshot alone) and
/// hands over every spend it finds, old ones included, in whatever order its chain source
/// lists them. None of them may move the channel back or make it broadcast again.
#[test]
fn spends_handed_over_again_after_a_restart_change_nothing() {
    let mut net = opened();
    transfer(&mut net, Party::A, 1_000, false);
    let state1 = net.snapshot(Party::A).complete.clone().expect("state 1");
    transfer(&mut net, Party::A, 2_000, false);
    let stale = stale_update(&state1);
    let spend = |tx: &bitcoin::Transaction, at: Option<u32>| {
        Input::Chain(ChainEvent::Spend {
            tx: tx.clone(),
            confirmed_at: at,
        })
    };
    net.input(Party::S, spend(&stale, Some(HEIGHT + 10)))
        .expect("stale update handled");
    let answer = net.s.broadcasts.last().cloned().expect("S answered");
    let answer_out = OutPoint {
        txid: answer.compute_txid(),
        vout: 0,
    };
    net.input(Party::S, spend(&answer, None))
        .expect("answer seen in the mempool");
    net.input(Party::S, spend(&answer, Some(HEIGHT + 11)))
        .expect("answer confirmed");
    assert_eq!(
        net.snapshot(Party::S).on_chain().map(|oc| oc.confirmed_at),
        Some(Some(HEIGHT + 11))
    );

    // Restart before the settlement: the funding output and the answer's output are watched.
    net.crash(Party::S).expect("restart");
    let watched = net.s.channel().watched();
    assert!(watched.contains(&funding_outpoint()), "{watched:?}");
    assert!(watched.contains(&answer_out), "{watched:?}");
    let before = net.snapshot(Party::S).clone();
    let broadcasts = net.s.broadcasts.len();
    for (tx, at) in [
        (&answer, Some(HEIGHT + 11)),
        (&stale, Some(HEIGHT + 10)),
        (&answer, None),
        (&stale, None),
    ] {
        net.input(Party::S, spend(tx, at)).expect("old spend");
        assert_eq!(net.snapshot(Party::S), &before, "an old spend moved S");
    }
    assert_eq!(
        net.s.broadcasts.len(),
        broadcasts,
        "an old spend was answered"
    );

    // The settlement goes out after the delay and confirms; the channel closes.
    let due = HEIGHT + 11 + u32::from(DELAY) - 1;
    net.input(Party::S, Input::Chain(ChainEvent::Block { height: due }))
        .expect("block");
    let settlement = net.s.broadcasts.last().cloned().expect("settlement");
    assert_eq!(settlement.input[0].previous_output, answer_out);
    net.input(Party::S, spend(&settlement, Some(due + 1)))
        .expect("settlement confirmed");
    assert_eq!(net.snapshot(Party::S).phase(), Phase::Closed);

    // Restart after the close: every spend again, newest first, changes nothing.
    net.crash(Party::S).expect("restart");
    let closed = net.snapshot(Party::S).clone();
    let broadcasts = net.s.broadcasts.len();
    for (tx, at) in [
        (&settlement, Some(due + 1)),
        (&answer, Some(HEIGHT + 11)),
        (&stale, Some(HEIGHT + 10)),
    ] {
        net.input(Party::S, spend(tx, at)).expect("old spend");
        assert_eq!(net.snapshot(Party::S), &closed, "an old spend reopened S");
    }
    assert_eq!(net.s.broadcasts.len(), broadcasts);
}

/// State 1 complete, A's signature on state 2 withheld: the channels, the scalar that would
/// sell it, and U_1 as A would publish it.
fn withheld_after_state_1() -> (Net<Never>, AdaptorSecret, bitcoin::Transaction) {
    let mut net = opened();
    transfer(&mut net, Party::A, 1_000, false);
    let state1 = net.snapshot(Party::A).complete.clone().expect("state 1");
    transfer(&mut net, Party::A, 25_000, true);
    let signature = net
        .a
        .events
        .iter()
        .find_map(|e| match e {
            Event::SignatureWithheld { signature, .. } => Some(*signature),
            _ => None,
        })
        .expect("withheld");
    let scalar = AdaptorSecret::from_signature(&signature).expect("nonzero");
    (net, scalar, stale_update(&state1))
}

/// A withholds its signature on state 2 and, while the sale is pending, publishes state 1
/// (its latest complete state). S keeps the withheld proposal: its sale window runs until
/// the margin before state 1's settlement could confirm. A scalar bought inside it completes
/// state 2, which S publishes at once on top of U_1 and settles after the delay; S never
/// settles state 1.
#[test]
fn withheld_state_sold_inside_the_window_overrides_the_published_state() {
    let (mut net, scalar, u1) = withheld_after_state_1();
    let at = HEIGHT + 10;
    assert_eq!(net.s.channel().sale_window(), None, "not on chain yet");
    net.input(
        Party::S,
        Input::Chain(ChainEvent::Spend {
            tx: u1.clone(),
            confirmed_at: Some(at),
        }),
    )
    .expect("U_1 seen");
    assert!(
        net.s.broadcasts.is_empty(),
        "U_1 is S's latest complete state"
    );
    let deadline = at + u32::from(DELAY) - 1 - asyncpay::protocol::channel::SALE_WINDOW_MARGIN;
    assert_eq!(net.s.channel().sale_window(), Some(deadline));
    assert!(
        net.snapshot(Party::S).pending().is_some(),
        "the sale stays possible"
    );

    // Blocks up to the deadline: S does not settle state 1 yet... it may not before the delay.
    for h in at..=deadline {
        net.input(Party::S, Input::Chain(ChainEvent::Block { height: h }))
            .expect("block");
    }
    assert!(net.s.broadcasts.is_empty());

    // B sells the scalar inside the window.
    net.input(
        Party::S,
        Input::Command(Command::CompleteWithSecret { secret: scalar }),
    )
    .expect("bought inside the window");
    let u2 = net.s.broadcasts.last().cloned().expect("S publishes U_2");
    let u1_out = OutPoint {
        txid: u1.compute_txid(),
        vout: 0,
    };
    assert_eq!(u2.input[0].previous_output, u1_out);
    assert_eq!(u2.lock_time.to_consensus_u32(), STATE_LOCKTIME_BASE + 2);
    let complete = net.snapshot(Party::S).complete.clone().expect("state 2");
    assert_eq!(complete.body.number, 2);
    assert_eq!(complete.body.to_s, PUSH + 1_000 + 25_000);

    // Past state 1's settlement height S publishes nothing for state 1.
    let before = net.s.broadcasts.len();
    net.input(
        Party::S,
        Input::Chain(ChainEvent::Block {
            height: at + u32::from(DELAY),
        }),
    )
    .expect("block");
    // Only U_2 again (it is not seen on chain yet): state 1 is never settled by S.
    assert!(
        net.s.broadcasts[before..]
            .iter()
            .all(|tx| tx.compute_txid() == u2.compute_txid()),
        "state 1 is never settled by S"
    );

    // U_2 confirms; its settlement follows after the delay and pays state 2.
    let at2 = at + u32::from(DELAY);
    net.input(
        Party::S,
        Input::Chain(ChainEvent::Spend {
            tx: u2.clone(),
            confirmed_at: Some(at2),
        }),
    )
    .expect("U_2 seen");
    net.input(
        Party::S,
        Input::Chain(ChainEvent::Block {
            height: at2 + u32::from(DELAY) - 1,
        }),
    )
    .expect("block");
    let se2 = net.s.broadcasts.last().cloned().expect("SE_2");
    assert_eq!(se2.input[0].previous_output.txid, u2.compute_txid());
    let paid: Vec<u64> = se2.output.iter().map(|o| o.value.to_sat()).collect();
    assert!(paid.contains(&complete.body.to_a) && paid.contains(&complete.body.to_s));
}

/// The same, but state 1's settlement confirms before anyone sells: the withheld state can
/// no longer win, the window reports closed, and a late scalar is refused without change.
#[test]
fn withheld_state_sold_after_the_published_state_settled_is_refused() {
    let (mut net, scalar, u1) = withheld_after_state_1();
    let at = HEIGHT + 10;
    net.input(
        Party::S,
        Input::Chain(ChainEvent::Spend {
            tx: u1,
            confirmed_at: Some(at),
        }),
    )
    .expect("U_1 seen");
    net.input(
        Party::S,
        Input::Chain(ChainEvent::Block {
            height: at + u32::from(DELAY) - 1,
        }),
    )
    .expect("block");
    let se1 = net.s.broadcasts.last().cloned().expect("S settles state 1");
    net.input(
        Party::S,
        Input::Chain(ChainEvent::Spend {
            tx: se1,
            confirmed_at: Some(at + u32::from(DELAY)),
        }),
    )
    .expect("SE_1 confirmed");
    assert_eq!(net.s.channel().sale_window(), Some(0));
    let before = net.snapshot(Party::S).clone();
    assert!(net
        .input(
            Party::S,
            Input::Command(Command::CompleteWithSecret { secret: scalar }),
        )
        .is_err());
    assert_eq!(net.snapshot(Party::S), &before);
}

/// The withheld signature is what is for sale: neither the event reporting it nor A's
/// snapshot prints it in `Debug` (logs), though A's snapshot stores it.
#[test]
fn a_withheld_signature_never_shows_in_debug_output() {
    let mut net = opened();
    transfer(&mut net, Party::A, 25_000, true);
    let (event, signature) = net
        .a
        .events
        .iter()
        .find_map(|e| match e {
            Event::SignatureWithheld { signature, .. } => Some((e.clone(), *signature)),
            _ => None,
        })
        .expect("withheld");
    let secret = hex::encode(signature.to_bytes());
    let printed = format!("{event:?} {:?}", net.snapshot(Party::A));
    assert!(printed.contains("<redacted>"), "{printed}");
    assert!(
        !printed.contains(&secret),
        "the signature leaked: {printed}"
    );
    // Stored all the same: A needs it to hand it to the payee after a restart.
    let (_, stored) = net.snapshot(Party::A).withheld().expect("withheld");
    assert_eq!(stored.own_signature(), Some(signature));
}
