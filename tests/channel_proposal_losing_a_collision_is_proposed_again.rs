//! Both parties propose state n+1 at once: A's proposal wins, S countersigns it and drops
//! its own. S's change (here a PTLC it offers, as an LSP paying a payee) is not lost: the
//! channel proposes it again once A's state completes, also after S restarts in between.
//! A proposal colliding with S's revert is refused instead: a revert is never dropped. A
//! dropped change that no longer applies when the peer's state completes (its PTLC's expiry
//! came too close meanwhile) is given up for good and reported once, so the role that asked
//! for it can treat it as refused.

mod channel_support;

use anyhow::{ensure, Context};
use asyncpay::protocol::channel::{Command, Event, Input, Phase};
use asyncpay::protocol::messages::{Change, Message};
use asyncpay::tx::Party;
use channel_support::*;

const EXPIRY: u32 = HEIGHT + 2 * DELAY as u32 + 50;

fn collide(net: &mut Net<Never>) -> anyhow::Result<()> {
    net.input(
        Party::A,
        Input::Command(Command::Transfer {
            amount_sat: 10_000,
            withhold: false,
        }),
    )?;
    net.input(
        Party::S,
        Input::Command(Command::AddPtlc {
            amount_sat: 30_000,
            point: secret(7).adaptor_point(),
            expiry: EXPIRY,
        }),
    )?;
    // A refuses S's proposal (its own wins); S gets A's.
    let theirs = net.to_a.pop_front().context("S proposed")?;
    ensure!(matches!(theirs, Message::Propose(_)));
    Ok(())
}

fn ptlc_committed(net: &Net<Never>) -> anyhow::Result<()> {
    for party in [Party::A, Party::S] {
        let snap = net.snapshot(party);
        let rec = snap.complete.as_ref().context("complete")?;
        ensure!(
            rec.body.number == 2,
            "{party:?} on state {}",
            rec.body.number
        );
        ensure!(matches!(rec.change, Change::AddPtlc { .. }));
        ensure!(rec.body.ptlcs.len() == 1);
        ensure!(snap.phase() == Phase::Funded);
        ensure!(snap.dropped.is_none());
    }
    Ok(())
}

#[test]
fn the_losing_proposal_is_proposed_again_after_the_winner_completes() -> anyhow::Result<()> {
    let mut net = Net::new(Never);
    net.open()?;
    collide(&mut net)?;
    net.pump()?;
    ensure!(net
        .s
        .events
        .iter()
        .any(|e| matches!(e, Event::ProposalDropped { .. })));
    ptlc_committed(&net)
}

#[test]
fn the_losing_proposal_survives_a_restart_before_the_winner_completes() -> anyhow::Result<()> {
    let mut net = Net::new(Never);
    net.open()?;
    collide(&mut net)?;
    // S countersigns A's proposal, then restarts before A's completion arrives.
    let proposal = net.to_s.pop_front().context("A proposed")?;
    net.input(Party::S, Input::Message(proposal))?;
    ensure!(
        net.snapshot(Party::S).dropped.is_some(),
        "kept in the snapshot"
    );
    net.crash(Party::S)?;
    for _ in 0..10 {
        net.pump()?;
        if net
            .snapshot(Party::S)
            .complete
            .as_ref()
            .map(|c| c.body.number)
            == Some(2)
        {
            break;
        }
        net.reconnect()?;
    }
    ptlc_committed(&net)
}

#[test]
fn a_losing_proposal_that_no_longer_applies_is_abandoned_once() -> anyhow::Result<()> {
    let mut net = Net::new(Never);
    net.open()?;
    collide(&mut net)?;
    let proposal = net.to_s.pop_front().context("A proposed")?;
    net.input(Party::S, Input::Message(proposal))?;
    // Blocks arrive before A's state completes: S's PTLC would now expire less than two
    // shared delays ahead, which the channel refuses.
    let late = EXPIRY - 2 * u32::from(DELAY) + 1;
    net.input(
        Party::S,
        Input::Chain(asyncpay::protocol::channel::ChainEvent::Block { height: late }),
    )?;
    net.pump()?;
    let abandoned: Vec<&Event> = net
        .s
        .events
        .iter()
        .filter(|e| matches!(e, Event::ProposalAbandoned { .. }))
        .collect();
    ensure!(abandoned.len() == 1, "{abandoned:?}");
    ensure!(matches!(
        abandoned[0],
        Event::ProposalAbandoned {
            change: Change::AddPtlc { .. },
            ..
        }
    ));
    for party in [Party::A, Party::S] {
        let snap = net.snapshot(party);
        ensure!(snap.complete.as_ref().map(|c| c.body.number) == Some(1));
        ensure!(snap.phase() == Phase::Funded && snap.dropped.is_none());
    }
    // A restart does not give it up (or propose it) a second time.
    net.crash(Party::S)?;
    net.pump()?;
    let again = net
        .s
        .events
        .iter()
        .filter(|e| matches!(e, Event::ProposalAbandoned { .. }))
        .count();
    ensure!(again == 1, "reported once");
    ensure!(
        net.snapshot(Party::S)
            .complete
            .as_ref()
            .map(|c| c.body.number)
            == Some(1)
    );
    Ok(())
}
