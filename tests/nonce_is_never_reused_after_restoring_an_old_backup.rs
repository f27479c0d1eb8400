//! A party restored from an old backup hands out nonce sessions it already used: its counter
//! went back. Update nonces are derived from the session and the message they will sign,
//! so the restored party, signing another state, commits another nonce: no nonce ever signs
//! two different messages (which would reveal the channel key). Checked for the proposer's
//! committed nonce and for the countersigner's nonce, on both sides of the channel.

mod channel_support;

use anyhow::{ensure, Context};
use asyncpay::protocol::channel::{Channel, Command, Input, Snapshot};
use asyncpay::protocol::messages::Message;
use asyncpay::tx::Party;
use channel_support::*;

fn other(p: Party) -> Party {
    match p {
        Party::A => Party::S,
        Party::S => Party::A,
    }
}

/// The nonces (x-only R) in every signature or commitment `party` has queued for its peer.
fn nonces_sent(net: &Net<Never>, party: Party) -> Vec<[u8; 32]> {
    let queue = match party {
        Party::A => &net.to_s,
        Party::S => &net.to_a,
    };
    queue
        .iter()
        .filter_map(|m| match m {
            Message::Propose(p) => Some(p.nonce.to_xonly_bytes()),
            Message::CounterSign(c) => Some(c.signature.nonce().to_xonly_bytes()),
            _ => None,
        })
        .collect()
}

fn transfer(net: &mut Net<Never>, party: Party, amount_sat: u64) -> anyhow::Result<()> {
    net.input(
        party,
        Input::Command(Command::Transfer {
            amount_sat,
            withhold: false,
        }),
    )?;
    Ok(())
}

/// `party` backs up, then proposes (or countersigns) a transfer; it is restored from the
/// backup and does the same with another amount. The two nonces differ.
fn restored(party: Party, as_proposer: bool) -> anyhow::Result<()> {
    let mut net = Net::new(Never);
    net.open()?;
    let backup: Snapshot = net.snapshot(party).clone();
    let proposer = if as_proposer { party } else { other(party) };
    // It restarts from that copy before signing, as it will again later: both signings
    // start from exactly the same stored state.
    net.node(party).channel = Some(Channel::restore(secrets(party), backup.clone())?);

    transfer(&mut net, proposer, 10_000)?;
    if !as_proposer {
        // Deliver just the proposal, so that what `party` queued is its countersignature.
        let proposal = match proposer {
            Party::A => net.to_s.pop_front(),
            Party::S => net.to_a.pop_front(),
        }
        .context("a proposal")?;
        net.input(party, Input::Message(proposal))?;
    }
    let first = nonces_sent(&net, party);
    ensure!(!first.is_empty(), "{party:?} committed a nonce");
    net.pump()?;

    // The old copy comes back, with the session counter of the backup.
    let restored = Channel::restore(secrets(party), backup.clone())?;
    ensure!(restored.snapshot().next_nonce_session == backup.next_nonce_session);
    net.node(party).channel = Some(restored);
    net.to_a.clear();
    net.to_s.clear();
    if as_proposer {
        transfer(&mut net, party, 20_000)?;
    } else {
        // The peer proposes another state 1 to the restored copy (the same channel opened
        // again from scratch gives the peer's proposal for the same moment).
        let mut fresh = Net::new(Never);
        fresh.open()?;
        transfer(&mut fresh, proposer, 20_000)?;
        let proposal = match proposer {
            Party::A => fresh.to_s.pop_front(),
            Party::S => fresh.to_a.pop_front(),
        }
        .context("a proposal")?;
        net.input(party, Input::Message(proposal))?;
    }
    let second = nonces_sent(&net, party);
    ensure!(!second.is_empty(), "{party:?} committed a nonce again");
    for r in &second {
        ensure!(
            !first.contains(r),
            "{party:?} reused a nonce after restoring its backup"
        );
    }
    Ok(())
}

#[test]
fn a_restored_proposer_commits_a_fresh_nonce() -> anyhow::Result<()> {
    restored(Party::A, true)?;
    restored(Party::S, true)
}

#[test]
fn a_restored_countersigner_signs_with_a_fresh_nonce() -> anyhow::Result<()> {
    restored(Party::A, false)?;
    restored(Party::S, false)
}
