//! Cancelling a withheld state: A proposes a transfer and withholds its signature (state
//! n+1); instead of a sale, a revert (proposed by S, or by A) produces state n+2 with exactly
//! the balances and PTLCs of state n.
//! - Both parties end on state n+2 equal to state n; the price point is gone; S's
//!   `CompleteWithSecret` with the genuine scalar of n+1 is refused with a typed error.
//! - A revert that does not abandon the pending state is refused and changes nothing.
//! - A party crashed at every persist point of the revert resumes to the same result.
//! - U_{n+1}, completed and published after the revert, is answered on chain with U_{n+2}.
//! - `Change::Revert` survives the wire encoding.

mod channel_support;

use anyhow::{bail, ensure, Context};
use asyncpay::crypto::adaptor::AdaptorSecret;
use asyncpay::crypto::keys::Signature;
use asyncpay::protocol::channel::{
    ChainEvent, ChannelError, Command, Event, Input, Phase, Progress, StateBody,
};
use asyncpay::protocol::messages::{Change, ChannelId, Message, ProposeUpdate};
use asyncpay::protocol::wire::{Decoded, PeerMessage};
use asyncpay::tx::{
    ChannelKeys, Funding, Party, Settlement, SettlementTerms, SpentChannel, Update,
    STATE_LOCKTIME_BASE,
};
use bitcoin::{Amount, OutPoint, ScriptBuf, TxOut};
use channel_support::*;

const PAID: u64 = 25_000;

/// A and S do one ordinary transfer (state 1) and a PTLC (state 2), then A withholds its
/// signature on a transfer (state 3). Returns A's withheld signature.
fn withheld<P: CrashPolicy>(net: &mut Net<P>) -> anyhow::Result<Signature> {
    net.open()?;
    net.input(
        Party::A,
        Input::Command(Command::Transfer {
            amount_sat: 10_000,
            withhold: false,
        }),
    )?;
    net.pump()?;
    net.input(
        Party::S,
        Input::Command(Command::AddPtlc {
            amount_sat: 30_000,
            point: secret(7).adaptor_point(),
            expiry: HEIGHT + 2 * u32::from(DELAY) + 50,
        }),
    )?;
    net.pump()?;
    net.input(
        Party::A,
        Input::Command(Command::Transfer {
            amount_sat: PAID,
            withhold: true,
        }),
    )?;
    net.pump()?;
    ensure!(net.snapshot(Party::A).phase() == Phase::Withheld);
    ensure!(net.snapshot(Party::S).phase() == Phase::CounterSigned);
    net.a
        .events
        .iter()
        .find_map(|e| match e {
            Event::SignatureWithheld { signature, .. } => Some(*signature),
            _ => None,
        })
        .context("A reports its withheld signature")
}

fn state2<P: CrashPolicy>(net: &Net<P>) -> StateBody {
    net.snapshot(Party::S)
        .complete
        .as_ref()
        .expect("state 2 is complete")
        .body
        .clone()
}

/// Reconnects until both parties are idle on the same complete state.
fn settle<P: CrashPolicy>(net: &mut Net<P>) -> anyhow::Result<()> {
    for _ in 0..20 {
        net.pump()?;
        let (a, s) = (net.snapshot(Party::A), net.snapshot(Party::S));
        if a.phase() == Phase::Funded && s.phase() == Phase::Funded && a.complete == s.complete {
            return Ok(());
        }
        net.reconnect()?;
    }
    bail!(
        "parties never converged: A {:?}, S {:?}",
        net.snapshot(Party::A).phase(),
        net.snapshot(Party::S).phase()
    )
}

/// Both parties are on state 4, equal to state 2, and the sale of state 3 is refused.
fn check_reverted<P: CrashPolicy>(
    net: &mut Net<P>,
    before: &StateBody,
    withheld: &Signature,
) -> anyhow::Result<()> {
    for party in [Party::A, Party::S] {
        let snap = net.snapshot(party);
        let rec = snap.complete.as_ref().context("complete state")?;
        ensure!(
            rec.body.number == 4,
            "{party:?} is on state {}",
            rec.body.number
        );
        ensure!(rec.change == Change::Revert { abandoned: 3 });
        ensure!(rec.body.to_a == before.to_a && rec.body.to_s == before.to_s);
        ensure!(rec.body.ptlcs == before.ptlcs, "PTLCs of state 2 kept");
        ensure!(snap.phase() == Phase::Funded);
        ensure!(net.node(party).channel().pending_price_point().is_none());
    }
    // S could still buy A's genuine scalar for state 3 from the payee: refused, typed.
    let scalar = AdaptorSecret::from_signature(withheld)?;
    let snapshot = net.snapshot(Party::S).clone();
    match net.input(
        Party::S,
        Input::Command(Command::CompleteWithSecret { secret: scalar }),
    ) {
        Err(ChannelError::StateAbandoned { state: 3 }) => {}
        other => bail!("completing the abandoned state gave {other:?}"),
    }
    ensure!(
        net.snapshot(Party::S) == &snapshot,
        "refusal changed nothing"
    );
    Ok(())
}

#[test]
fn s_reverts_the_withheld_state_and_the_sale_is_refused() -> anyhow::Result<()> {
    let mut net = Net::new(Never);
    let sig = withheld(&mut net)?;
    let before = state2(&net);
    assert!(net.s.channel().pending_price_point().is_some());
    net.input(Party::S, Input::Command(Command::Revert))?;
    // Once S proposed the revert it no longer buys the signature.
    let scalar = AdaptorSecret::from_signature(&sig)?;
    assert!(matches!(
        net.input(
            Party::S,
            Input::Command(Command::CompleteWithSecret { secret: scalar })
        ),
        Err(ChannelError::StateAbandoned { state: 3 })
    ));
    net.pump()?;
    check_reverted(&mut net, &before, &sig)?;
    assert!(net.a.events.iter().any(|e| matches!(
        e,
        Event::StateCompleted {
            state: 4,
            change: Change::Revert { abandoned: 3 },
            ..
        }
    )));
    // The channel carries on from state 4.
    net.input(
        Party::A,
        Input::Command(Command::Transfer {
            amount_sat: 1_000,
            withhold: false,
        }),
    )?;
    net.pump()?;
    let latest = net.a.channel().latest().context("state 5")?.clone();
    assert_eq!((latest.number, latest.to_s), (5, before.to_s + 1_000));
    Ok(())
}

#[test]
fn a_reverts_its_own_withheld_state() -> anyhow::Result<()> {
    let mut net = Net::new(Never);
    let sig = withheld(&mut net)?;
    let before = state2(&net);
    net.input(Party::A, Input::Command(Command::Revert))?;
    net.pump()?;
    // A keeps the abandoned state with its own signature, which stays out of `Debug`.
    let snap = net.snapshot(Party::A);
    let abandoned = snap
        .abandoned
        .as_ref()
        .context("A keeps the abandoned state")?;
    ensure!(
        matches!(&abandoned.progress, Progress::Withheld(w) if w.own_signature() == Some(sig)),
        "abandoned with A's withheld signature"
    );
    let printed = format!("{snap:?}");
    ensure!(
        !printed.contains(&hex::encode(sig.to_bytes())),
        "leaked: {printed}"
    );
    check_reverted(&mut net, &before, &sig)
}

#[test]
fn a_revert_that_abandons_another_state_is_refused_without_change() -> anyhow::Result<()> {
    let mut net = Net::new(Never);
    withheld(&mut net)?;
    let snapshot = net.snapshot(Party::A).clone();
    let nonce = net.snapshot(Party::S).pending().context("pending")?;
    let nonce = nonce.proposer_nonce;
    for (state, abandoned) in [(4, 2), (3, 3), (5, 4), (4, 4)] {
        let forged = Message::Propose(ProposeUpdate {
            channel_id: ChannelId([7; 32]),
            state,
            change: Change::Revert { abandoned },
            nonce,
        });
        assert!(
            net.a
                .channel
                .as_mut()
                .expect("A")
                .handle(Input::Message(forged))
                .is_err(),
            "revert of {abandoned} as state {state} accepted"
        );
        assert_eq!(net.snapshot(Party::A), &snapshot);
    }
    // Nothing to revert in a settled channel.
    let mut idle = Net::new(Never);
    idle.open()?;
    assert!(matches!(
        idle.input(Party::S, Input::Command(Command::Revert)),
        Err(ChannelError::Unexpected { .. })
    ));
    Ok(())
}

struct CrashAt {
    party: Party,
    index: usize,
}

impl CrashPolicy for CrashAt {
    fn crash(&mut self, party: Party, index: usize) -> bool {
        party == self.party && index == self.index
    }
}

/// The revert run under `policy`, with the crash points counted from after the withheld
/// state (crashes before it are the other restart test's business).
fn revert_run<P: CrashPolicy>(policy: P) -> anyhow::Result<(Net<P>, StateBody, Signature)> {
    let mut net = Net::new(policy);
    let sig = withheld(&mut net)?;
    let before = state2(&net);
    net.input(Party::S, Input::Command(Command::Revert))?;
    settle(&mut net)?;
    Ok((net, before, sig))
}

#[test]
fn a_crash_at_every_persist_point_of_the_revert_resumes_to_state_n() -> anyhow::Result<()> {
    let (mut clean, before, sig) = revert_run(Never)?;
    check_reverted(&mut clean, &before, &sig)?;
    // Persist points before the revert, per party, measured on a run without it.
    let mut upto = Net::new(Never);
    withheld(&mut upto)?;
    let mut crashed = 0;
    for (party, first, last) in [
        (Party::A, upto.a.persists, clean.a.persists),
        (Party::S, upto.s.persists, clean.s.persists),
    ] {
        assert!(last > first, "{party:?} persists during the revert");
        for index in first + 1..=last {
            let context = || format!("crash of {party:?} at persist {index}");
            let (mut net, before, sig) =
                revert_run(CrashAt { party, index }).with_context(context)?;
            check_reverted(&mut net, &before, &sig).with_context(context)?;
            crashed += net.crashes;
        }
    }
    assert!(crashed >= 4, "crashes happened: {crashed}");
    Ok(())
}

#[test]
fn the_abandoned_update_published_later_is_answered_with_the_revert() -> anyhow::Result<()> {
    let mut net = Net::new(Never);
    let sig_a = withheld(&mut net)?;
    let before = state2(&net);
    let sig_s = net
        .snapshot(Party::S)
        .pending()
        .and_then(|p| p.countersignature())
        .context("S's countersignature on U_3")?;
    net.input(Party::S, Input::Command(Command::Revert))?;
    net.pump()?;

    // Someone completes U_3 anyway (A's signature and S's countersignature) and publishes it.
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
    let ptlcs = net
        .snapshot(Party::S)
        .abandoned
        .as_ref()
        .context("S keeps the abandoned state")?
        .body
        .ptlcs
        .iter()
        .map(|p| asyncpay::tx::Ptlc {
            offerer: key(p.offerer),
            payee: key(if p.offerer == Party::A {
                Party::S
            } else {
                Party::A
            }),
            point: p.point,
            amount: Amount::from_sat(p.amount_sat),
            expiry: p.expiry,
        })
        .collect();
    let terms = SettlementTerms {
        a: pay(Party::A, before.to_a - PAID),
        s: pay(Party::S, before.to_s + PAID),
        ptlcs,
    };
    let se3 = Settlement::new(&funding, DELAY, terms)?;
    let u3 = Update::new(&funding, 3, &se3)?;
    let abandoned = u3.bind(
        &SpentChannel::Funding {
            outpoint: funding_outpoint(),
            funding: &funding,
        },
        &sig_a.into(),
        &sig_s.into(),
    )?;
    net.input(
        Party::S,
        Input::Chain(ChainEvent::Spend {
            tx: abandoned.clone(),
            confirmed_at: Some(HEIGHT + 10),
        }),
    )?;
    let answer = net.s.broadcasts.last().cloned().context("S answered")?;
    assert_eq!(
        answer.input[0].previous_output,
        OutPoint {
            txid: abandoned.compute_txid(),
            vout: 0
        }
    );
    assert_eq!(answer.lock_time.to_consensus_u32(), STATE_LOCKTIME_BASE + 4);
    assert!(net.s.events.contains(&Event::StaleUpdateAnswered {
        stale: 3,
        latest: 4
    }));
    Ok(())
}

#[test]
fn revert_changes_survive_the_wire_encoding() {
    let msg = Message::Propose(ProposeUpdate {
        channel_id: ChannelId([1; 32]),
        state: 9,
        change: Change::Revert { abandoned: 8 },
        nonce: secrets(Party::A).key.sign(&[1; 32], &[0; 32]).nonce(),
    });
    let bytes = PeerMessage::Channel(msg.clone()).encode();
    assert_eq!(
        PeerMessage::decode(&bytes),
        Ok(Decoded::Message(PeerMessage::Channel(msg)))
    );
    assert!(PeerMessage::decode(&bytes[..bytes.len() - 1]).is_err());
}
