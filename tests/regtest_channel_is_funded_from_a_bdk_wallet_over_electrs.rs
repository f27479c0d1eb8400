//! A's light-client wallet (BDK, synced over electrs) funds a channel with S: on `Accepted`
//! the wallet builds the funding transaction to the channel's script, state 0 is signed, on
//! `ReadyToFund` the wallet broadcasts it through electrs and a block confirms it. A pays S
//! once; then A closes alone: its latest update U_1 and, after the shared delay, the
//! settlement SE_1 go through the node's mempool, each as a zero-fee parent with a CPFP child
//! paid by A's wallet (`submitpackage`). The settlement pays both balances into the parties'
//! wallets, and the wallets' balances account for every satoshi.

mod wallet_support;

use asyncpay::protocol::channel::{Command, Event, Input, Phase};
use asyncpay::tx::Party;
use bitcoin::Amount;
use wallet_support::*;

const CAPACITY: u64 = 1_000_000;
const PAID: u64 = 150_000;

#[test]
fn channel_is_funded_from_a_bdk_wallet_over_electrs() -> anyhow::Result<()> {
    let (chain, url) = start_chain();
    let dir = tempfile::tempdir()?;
    let wallet_a = funded_wallet(&chain, &url, dir.path(), "A", &[1_500_000, 80_000])?;
    let wallet_s = funded_wallet(&chain, &url, dir.path(), "S", &[])?;
    let start_a = wallet_a.balance().confirmed;

    let mut pair = Pair::open(
        &chain,
        dir.path(),
        "funded",
        CAPACITY,
        0,
        wallet_a,
        wallet_s,
    )?;
    assert_eq!(pair.phases(), (Phase::Accepted, Phase::Accepted));
    let funding = pair.fund(&chain, &url)?;
    // The wallet knows the fee: every input is its own.
    let funding_fee = funding.fee;
    assert!(funding_fee >= feerate().fee_vb(funding.tx.vsize() as u64).unwrap());
    let funding_vb = funding.tx.vsize();
    let funding = funding.tx;
    assert_eq!(pair.phases(), (Phase::Funded, Phase::Funded));

    pair.input(
        Party::A,
        Input::Command(Command::Transfer {
            amount_sat: PAID,
            withhold: false,
        }),
    )?;
    pair.pump()?;
    for peer in [&pair.a, &pair.s] {
        assert_eq!(peer.completed(), vec![0, 1], "{:?}", peer.side);
        let latest = peer.channel().latest().expect("a complete state");
        assert_eq!((latest.to_a, latest.to_s), (CAPACITY - PAID, PAID));
    }
    assert!(pair.refused.is_empty(), "{:?}", pair.refused);

    let a_before_close = pair.a.wallet.balance().total();
    let (update, settlement) = pair.force_close(&chain, &url, Party::A)?;
    assert_eq!(
        update.parent.input[0].previous_output.txid,
        funding.compute_txid(),
        "U_1 spends the funding output"
    );
    for peer in [&pair.a, &pair.s] {
        assert!(
            peer.has(|e| *e == Event::Settled { state: 1 }),
            "{:?} saw state 1 settle",
            peer.side
        );
        assert_eq!(peer.channel().phase(), Phase::Closed);
    }

    // The payout outputs carry the state-1 balances, to the keys the wallets gave.
    let se = &settlement.parent;
    assert_eq!(
        paid_to(&chain, se, &payout_script(&pair.a.payout))?,
        Amount::from_sat(CAPACITY - PAID)
    );
    assert_eq!(
        paid_to(&chain, se, &payout_script(&pair.s.payout))?,
        Amount::from_sat(PAID)
    );
    let paid_out: Amount = se
        .output
        .iter()
        .filter(|o| o.script_pubkey != bitcoin::ScriptBuf::new_p2a())
        .map(|o| o.value)
        .sum();
    assert_eq!(paid_out, Amount::from_sat(CAPACITY), "zero-fee settlement");

    // The wallets see it: S holds exactly its balance; A lost exactly the two CPFP fees.
    assert_eq!(pair.s.wallet.balance().confirmed, Amount::from_sat(PAID));
    assert_eq!(
        pair.a.wallet.balance().confirmed,
        a_before_close + Amount::from_sat(CAPACITY - PAID)
            - update.child.fee
            - settlement.child.fee
    );
    assert_eq!(
        pair.a.wallet.balance().confirmed,
        start_a - funding_fee - Amount::from_sat(PAID) - update.child.fee - settlement.child.fee
    );

    println!(
        "FUNDING | {funding_vb} vB | fee {} sat |",
        funding_fee.to_sat()
    );
    update.report();
    settlement.report();
    Ok(())
}
