//! A party killed in the middle of an update comes back from its last persisted snapshot
//! (`Channel::restore`), reconnects, finishes the update, and then publishes the latest
//! state: the update and the settlement go through the node's mempool (CPFP packages paid by
//! its BDK wallet) and pay both parties their latest balances.
//!
//! Every combination is covered: the killed party is A or S, the update is proposed by A
//! (A pays S) or by S (S pays A), and the kill comes right after each of the killed party's
//! persists during the update (its first: the proposal or the countersignature; its second:
//! the completed state). The peers refuse no message along the way and the node refuses no
//! package.

mod wallet_support;

use anyhow::{ensure, Context};
use asyncpay::chain::regtest::Regtest;
use asyncpay::chain::wallet::Wallet;
use asyncpay::protocol::channel::{Command, Event, Input, Phase};
use asyncpay::tx::Party;
use bitcoin::Amount;
use wallet_support::*;

const CAPACITY: u64 = 600_000;
const PUSH: u64 = 100_000;
const PAID: u64 = 70_000;

/// What one case ends with, for the report.
struct Outcome {
    published: Vec<Published>,
}

fn other(side: Party) -> Party {
    match side {
        Party::A => Party::S,
        Party::S => Party::A,
    }
}

/// Opens a channel, kills `killed` right after its `nth` persist of an update proposed by
/// `proposer`, restores and reconnects it, then lets it close on chain.
fn case(
    chain: &Regtest,
    url: &str,
    dir: &std::path::Path,
    wallets: (Wallet, Wallet),
    killed: Party,
    proposer: Party,
    nth: usize,
) -> anyhow::Result<(Outcome, (Wallet, Wallet))> {
    let tag = format!("restart-{killed:?}-{proposer:?}-{nth}");
    let mut pair = Pair::open(chain, dir, &tag, CAPACITY, PUSH, wallets.0, wallets.1)?;
    pair.fund(chain, url)?;

    // The update: the proposer pays the other party.
    let (to_a, to_s) = match proposer {
        Party::A => (CAPACITY - PUSH - PAID, PUSH + PAID),
        Party::S => (CAPACITY - PUSH + PAID, PUSH - PAID),
    };
    let base = pair.peer(killed).persists;
    pair.kill = Some(Kill {
        side: killed,
        at: base + nth,
    });
    pair.input(
        proposer,
        Input::Command(Command::Transfer {
            amount_sat: PAID,
            withhold: false,
        }),
    )?;
    pair.pump()?;
    ensure!(
        pair.killed.is_some(),
        "{tag}: {killed:?} never reached its persist #{nth} of the update"
    );
    ensure!(pair.peer(killed).channel.is_none(), "{tag}: killed");

    // Back from the snapshot on disk, with what it held when it died.
    let stored = pair.peer(killed).stored()?;
    pair.restart(killed)?;
    ensure!(
        pair.peer(killed).channel().snapshot() == &stored,
        "{tag}: restored exactly the persisted snapshot"
    );
    pair.reconnect()?;
    ensure!(
        pair.refused.is_empty(),
        "{tag}: messages refused: {:?}",
        pair.refused
    );
    for side in [Party::A, Party::S] {
        let channel = pair.peer(side).channel();
        ensure!(
            channel.phase() == Phase::Funded,
            "{tag}: {side:?} finished the update, is {:?}",
            channel.phase()
        );
        let latest = channel.latest().context("complete state")?;
        ensure!(
            (latest.number, latest.to_a, latest.to_s) == (1, to_a, to_s),
            "{tag}: {side:?} holds state {} with {} / {}",
            latest.number,
            latest.to_a,
            latest.to_s
        );
    }
    // The party that stayed up reports the new state exactly once.
    let survivor = other(killed);
    ensure!(
        pair.peer(survivor).completed() == vec![0, 1],
        "{tag}: {survivor:?} completed {:?}",
        pair.peer(survivor).completed()
    );

    // The restarted party publishes the latest state; it settles with the state-1 balances.
    let (update, settlement) = pair.force_close(chain, url, killed)?;
    ensure!(
        update.parent.lock_time.to_consensus_u32() == asyncpay::tx::STATE_LOCKTIME_BASE + 1,
        "{tag}: U_1 was published"
    );
    for side in [Party::A, Party::S] {
        ensure!(
            pair.peer(side).has(|e| *e == Event::Settled { state: 1 }),
            "{tag}: {side:?} saw state 1 settle"
        );
    }
    let se = &settlement.parent;
    ensure!(paid_to(chain, se, &payout_script(&pair.a.payout))? == Amount::from_sat(to_a));
    ensure!(paid_to(chain, se, &payout_script(&pair.s.payout))? == Amount::from_sat(to_s));
    // The payouts landed in the wallets: each holds its payout as a confirmed coin.
    for side in [Party::A, Party::S] {
        let peer = pair.peer(side);
        let want = Amount::from_sat(if side == Party::A { to_a } else { to_s });
        let address_script = payout_script(&peer.payout);
        ensure!(
            peer.wallet.balance().confirmed >= want,
            "{tag}: {side:?}'s wallet holds its payout"
        );
        ensure!(
            se.output
                .iter()
                .any(|o| o.script_pubkey == address_script && o.value == want),
            "{tag}: {side:?} payout output"
        );
    }
    ensure!(pair.refused.is_empty(), "{tag}: {:?}", pair.refused);
    Ok((
        Outcome {
            published: vec![update, settlement],
        },
        pair.into_wallets(),
    ))
}

/// Every case in which `killed` is the party killed, on one chain.
fn restarted(killed: Party) -> anyhow::Result<()> {
    let (chain, url) = start_chain();
    let dir = tempfile::tempdir()?;
    let mut wallets = (
        funded_wallet(&chain, &url, dir.path(), "A", &[3_000_000, 50_000, 50_000])?,
        funded_wallet(
            &chain,
            &url,
            dir.path(),
            "S",
            &[50_000, 50_000, 50_000, 50_000],
        )?,
    );
    let mut cases = 0;
    for proposer in [Party::A, Party::S] {
        for nth in 1..=2 {
            let (outcome, back) = case(&chain, &url, dir.path(), wallets, killed, proposer, nth)?;
            wallets = back;
            cases += 1;
            for p in &outcome.published {
                print!("killed {killed:?}, proposer {proposer:?}, persist #{nth}: ");
                p.report();
            }
        }
    }
    assert_eq!(cases, 4);
    Ok(())
}

#[test]
fn payer_restarted_mid_update_still_settles_the_latest_state() -> anyhow::Result<()> {
    restarted(Party::A)
}

#[test]
fn lsp_restarted_mid_update_still_settles_the_latest_state() -> anyhow::Result<()> {
    restarted(Party::S)
}
