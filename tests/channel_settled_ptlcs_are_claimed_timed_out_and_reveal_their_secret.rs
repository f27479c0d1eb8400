//! On-chain PTLC resolution by the channel state machines after a unilateral close: A offers
//! S a PTLC, S offers A one; S, which knows the secret of A's PTLC, force-closes. Once the
//! settlement confirms, S broadcasts the claim of A's PTLC at once; A, seeing the claim spend
//! the PTLC output, reports the secret (`PtlcSecretLearned`) and never times it out; S's own
//! PTLC, whose secret A never learns, is timed out by S exactly when its expiry is reached.

mod channel_support;

use anyhow::Context;
use asyncpay::crypto::tally::{self, Op};
use asyncpay::protocol::channel::{
    ChainEvent, Channel, ChannelError, Command, Event, Input, Phase, Snapshot,
};
use asyncpay::tx::{Party, STATE_LOCKTIME_BASE};
use bitcoin::OutPoint;
use channel_support::*;

const EXPIRY: u32 = HEIGHT + 2 * DELAY as u32 + 30;

fn block(net: &mut Net<Never>, party: Party, height: u32) -> anyhow::Result<()> {
    net.input(party, Input::Chain(ChainEvent::Block { height }))?;
    Ok(())
}

#[test]
fn settled_ptlcs_are_claimed_with_the_secret_or_timed_out_after_expiry() -> anyhow::Result<()> {
    settle_claim_and_time_out(false)
}

/// S restarts from its stored (JSON) snapshot before closing: the check of A's claim half
/// made on accepting the PTLC is not stored, so S's claim verifies the stored half again.
#[test]
fn a_claim_after_a_reload_from_disk_verifies_the_stored_half_again() -> anyhow::Result<()> {
    settle_claim_and_time_out(true)
}

fn settle_claim_and_time_out(reload_s: bool) -> anyhow::Result<()> {
    let mut net = Net::new(Never);
    net.open()?;
    for (party, tag) in [(Party::A, 9), (Party::S, 8)] {
        net.input(
            party,
            Input::Command(Command::AddPtlc {
                amount_sat: 50_000,
                point: secret(tag).adaptor_point(),
                expiry: EXPIRY,
            }),
        )?;
        net.pump()?;
    }
    // A's PTLC is 0, S's is 1. S learns the secret of A's PTLC elsewhere.
    assert!(matches!(
        net.input(
            Party::S,
            Input::Command(Command::ProvideSecret {
                id: 0,
                secret: secret(3)
            })
        ),
        Err(ChannelError::WrongSecret { id: 0 })
    ));
    assert!(matches!(
        net.input(
            Party::S,
            Input::Command(Command::ProvideSecret {
                id: 1,
                secret: secret(8)
            })
        ),
        Err(ChannelError::NotPayee { id: 1, .. })
    ));
    net.input(
        Party::S,
        Input::Command(Command::ProvideSecret {
            id: 0,
            secret: secret(9),
        }),
    )?;

    if reload_s {
        let stored = net.s.persisted.as_ref().context("S stored its channel")?;
        let json = serde_json::to_string(stored)?;
        // The JSON alone is refused: the leaf hashes are stored beside it.
        let mut reread = Snapshot::from_json(&json)?;
        anyhow::ensure!(reread.settlement_leaf_hashes.is_empty());
        anyhow::ensure!(matches!(
            Channel::restore(secrets(Party::S), reread.clone()),
            Err(ChannelError::BadSnapshot { .. })
        ));
        reread.settlement_leaf_hashes = stored.settlement_leaf_hashes.clone();
        net.s.persisted = Some(reread);
        net.crash(Party::S)?;
        net.pump()?;
    }

    // S publishes the latest update; it confirms; the settlement follows after the delay.
    net.input(Party::S, Input::Command(Command::ForceClose))?;
    let update = net
        .s
        .broadcasts
        .last()
        .cloned()
        .context("S publishes U_n")?;
    assert_eq!(update.lock_time.to_consensus_u32(), STATE_LOCKTIME_BASE + 2);
    let confirmed = HEIGHT + 1;
    for party in [Party::A, Party::S] {
        net.spend(party, &update, confirmed)?;
        for h in confirmed + 1..confirmed + u32::from(DELAY) {
            block(&mut net, party, h)?;
        }
    }
    let settlement = net.s.broadcasts.last().cloned().context("S settles")?;
    assert_eq!(net.a.broadcasts.last(), Some(&settlement), "A settles too");
    let settled_at = confirmed + u32::from(DELAY);
    let before = net.s.broadcasts.len();
    let ops = tally::snapshot();
    net.spend(Party::S, &settlement, settled_at)?;
    let ops = tally::snapshot().since(&ops);
    assert_eq!(net.snapshot(Party::S).phase(), Phase::Closed);
    // The claim decrypts A's half once: as verified on accepting the PTLC, or after the
    // reload verified again.
    assert_eq!(ops.get(Op::AdaptorDecrypt), 1);
    assert_eq!(ops.get(Op::AdaptorVerify), u64::from(reload_s));

    // S claims A's PTLC at once, from the settlement's PTLC output.
    assert_eq!(net.s.broadcasts.len(), before + 1, "exactly one claim");
    let claim = net.s.broadcasts.last().cloned().context("claim")?;
    let settlement_txid = settlement.compute_txid();
    assert_eq!(claim.input[0].previous_output.txid, settlement_txid);
    assert_eq!(
        claim.input[0].witness.len(),
        4,
        "claim through the success leaf"
    );
    let claimed: OutPoint = claim.input[0].previous_output;
    assert_eq!(
        settlement.output[claimed.vout as usize].value.to_sat(),
        50_000
    );

    // The claim confirms: S sees its PTLC output spent and does not publish the claim again.
    net.spend(Party::S, &claim, settled_at + 1)?;

    // A sees the settlement and then the claim: it learns the secret, and never times out.
    net.spend(Party::A, &settlement, settled_at)?;
    let a_before = net.a.broadcasts.len();
    net.spend(Party::A, &claim, settled_at + 1)?;
    let learned = net
        .a
        .events
        .iter()
        .find_map(|e| match e {
            Event::PtlcSecretLearned { id: 0, secret } => Some(secret.clone()),
            _ => None,
        })
        .context("A learns the secret from the claim")?;
    assert_eq!(learned.0, secret(9).to_secret_bytes());
    for h in settled_at + 2..=EXPIRY + 2 {
        block(&mut net, Party::A, h)?;
    }
    assert_eq!(net.a.broadcasts.len(), a_before, "A times nothing out");

    // S's own PTLC: nothing before the expiry, the timeout at it.
    for h in settled_at + 1..EXPIRY {
        block(&mut net, Party::S, h)?;
    }
    assert_eq!(
        net.s.broadcasts.len(),
        before + 1,
        "no timeout before expiry"
    );
    block(&mut net, Party::S, EXPIRY)?;
    let timeout = net.s.broadcasts.last().cloned().context("timeout")?;
    assert_eq!(timeout.lock_time.to_consensus_u32(), EXPIRY);
    assert_eq!(timeout.input[0].previous_output.txid, settlement_txid);
    assert_ne!(timeout.input[0].previous_output, claimed);
    assert_eq!(timeout.input[0].witness.len(), 3, "timeout leaf");
    // Published again while it is not seen on chain, the same transaction.
    block(&mut net, Party::S, EXPIRY + 1)?;
    assert_eq!(net.s.broadcasts.len(), before + 3);
    assert_eq!(
        net.s.broadcasts.last().map(|tx| tx.compute_txid()),
        Some(timeout.compute_txid())
    );
    // Once seen spent, never again.
    net.spend(Party::S, &timeout, EXPIRY + 1)?;
    block(&mut net, Party::S, EXPIRY + 2)?;
    assert_eq!(net.s.broadcasts.len(), before + 3);
    Ok(())
}
