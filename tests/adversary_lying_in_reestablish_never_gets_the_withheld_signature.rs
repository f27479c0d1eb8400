//! A peer lies about the state it has reached to get a withheld signature without paying.
//!
//! The proposer of state n+1 signed it and keeps its signature back (pay-for-signature). A
//! byzantine peer sends `Reestablish { next_state: n+2 }` (as if it had bought the signature)
//! and then `Reestablish { next_state: n+1 }` (as if it lacked the state). Before the fix the
//! first message made the proposer treat n+1 as complete and the second made it send
//! `Complete { n+1, signature }`: the peer held a fully signed state without paying anybody.
//!
//! Checked for both sides of the channel: the payer A withholding from its LSP S (the
//! forward payment) and S withholding from its payee (the reverse variant). The withheld
//! signature never leaves; the state stays withheld; an honest purchase, proven by showing
//! the signature itself, still completes it on both sides.

mod channel_support;

use anyhow::{ensure, Context};
use asyncpay::crypto::adaptor::AdaptorSecret;
use asyncpay::crypto::keys::Signature;
use asyncpay::protocol::channel::{Command, Event, Input, Phase};
use asyncpay::protocol::messages::{CompleteUpdate, Message, Reestablish};
use asyncpay::tx::Party;
use channel_support::*;

const PAID: u64 = 25_000;

fn other(p: Party) -> Party {
    match p {
        Party::A => Party::S,
        Party::S => Party::A,
    }
}

/// Opens A–S and lets `proposer` withhold its signature on a transfer (state 1).
fn withheld(proposer: Party) -> anyhow::Result<(Net<Never>, Signature)> {
    let mut net = Net::new(Never);
    net.open()?;
    net.input(
        proposer,
        Input::Command(Command::Transfer {
            amount_sat: PAID,
            withhold: true,
        }),
    )?;
    net.pump()?;
    ensure!(net.snapshot(proposer).phase() == Phase::Withheld);
    ensure!(net.snapshot(other(proposer)).phase() == Phase::CounterSigned);
    let sig = net
        .node(proposer)
        .events
        .iter()
        .find_map(|e| match e {
            Event::SignatureWithheld { signature, .. } => Some(*signature),
            _ => None,
        })
        .context("the proposer reports its withheld signature")?;
    Ok((net, sig))
}

/// Every message `party` has queued for its peer.
fn sent_by(net: &Net<Never>, party: Party) -> Vec<Message> {
    match party {
        Party::A => net.to_s.iter().cloned().collect(),
        Party::S => net.to_a.iter().cloned().collect(),
    }
}

fn carries(msg: &Message, sig: &Signature) -> bool {
    match msg {
        Message::Complete(m) => m.signature == *sig,
        Message::CounterSign(m) => m.signature == *sig,
        _ => false,
    }
}

fn lie(proposer: Party) -> anyhow::Result<()> {
    let (mut net, sig) = withheld(proposer)?;
    let channel_id = net.snapshot(proposer).channel_id;
    let before = net.snapshot(proposer).clone();
    for next_state in [2, 1, 2, 1, 0, 3] {
        let lie = Message::Reestablish(Reestablish {
            channel_id,
            next_state,
        });
        // The liar's refusals are fine; what matters is what the proposer sends.
        let _ = net.input(proposer, Input::Message(lie));
        ensure!(
            !sent_by(&net, proposer).iter().any(|m| carries(m, &sig)),
            "{proposer:?} sent its withheld signature after a reestablish claiming {next_state}"
        );
        ensure!(
            net.snapshot(proposer).phase() == Phase::Withheld,
            "{proposer:?} left the withheld phase on the peer's word ({next_state})"
        );
    }
    ensure!(
        net.snapshot(proposer).complete == before.complete,
        "no state completed"
    );
    // A `Complete` that shows anything but the proposer's own signature proves nothing.
    let forged = Message::Complete(CompleteUpdate {
        channel_id,
        state: 1,
        signature: net
            .snapshot(proposer)
            .pending()
            .and_then(|p| p.countersignature())
            .context("countersigned")?,
    });
    ensure!(net.input(proposer, Input::Message(forged)).is_err());
    ensure!(net.snapshot(proposer).phase() == Phase::Withheld);
    Ok(())
}

#[test]
fn payer_withholding_from_its_lsp_ignores_lying_reestablish_numbers() -> anyhow::Result<()> {
    lie(Party::A)
}

#[test]
fn lsp_withholding_from_its_payee_ignores_lying_reestablish_numbers() -> anyhow::Result<()> {
    lie(Party::S)
}

/// The honest path: the buyer completes the state with the bought scalar and shows the
/// signature; the proposer completes the same state, at once and again after reconnecting.
fn bought(proposer: Party, reconnect_first: bool) -> anyhow::Result<()> {
    let (mut net, sig) = withheld(proposer)?;
    let buyer = other(proposer);
    let secret = AdaptorSecret::from_signature(&sig)?;
    net.input(
        buyer,
        Input::Command(Command::CompleteWithSecret { secret }),
    )?;
    ensure!(net.snapshot(buyer).complete.as_ref().map(|c| c.body.number) == Some(1));
    if reconnect_first {
        // The proof was lost with the connection: the buyer shows it again.
        net.to_a.clear();
        net.to_s.clear();
        net.reconnect()?;
    }
    net.pump()?;
    for party in [Party::A, Party::S] {
        let snap = net.snapshot(party);
        ensure!(
            snap.phase() == Phase::Funded,
            "{party:?} is {:?}",
            snap.phase()
        );
        ensure!(snap.complete.as_ref().map(|c| c.body.number) == Some(1));
    }
    // The same state, signed by both.
    let signed = |party| {
        net.snapshot(party)
            .complete
            .as_ref()
            .map(|c| (c.body.clone(), c.sig_a, c.sig_s))
    };
    ensure!(signed(Party::A) == signed(Party::S));
    ensure!(
        net.snapshot(buyer).bought == Some(1),
        "the buyer shows it on reconnection"
    );
    Ok(())
}

#[test]
fn a_bought_signature_shown_back_completes_the_withheld_state() -> anyhow::Result<()> {
    for proposer in [Party::A, Party::S] {
        for reconnect_first in [false, true] {
            bought(proposer, reconnect_first).with_context(|| {
                format!("{proposer:?} withholding, reconnect {reconnect_first}")
            })?;
        }
    }
    Ok(())
}
