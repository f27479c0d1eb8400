//! The reverse variant on the BIP118 regtest, through the mempool: B is offline and A has
//! bought S's signature on state 1 of S–B (paying B). S, cheating, publishes S–B's state 0
//! from an old copy of its store (`submitpackage` with a CPFP child). A, which holds the
//! complete U_1 and watches S–B's funding output, answers with U_1 spending U_0's output;
//! it confirms long before U_0's settlement could. B, back, settles state 1 after the shared
//! delay and is paid exactly its amount.

mod tx_support;

use std::sync::Arc;

use anyhow::{ensure, Context};
use asyncpay::node::core::{NodeCore, NodeInput, Records};
use asyncpay::protocol::payment::PaymentId;
use asyncpay::testing::*;
use asyncpay::tx::STATE_LOCKTIME_BASE;
use bitcoin::{Amount, OutPoint};

const AMOUNT: u64 = 30_000;

#[test]
fn payer_holding_the_offline_payees_update_overrides_the_lsps_stale_state() -> anyhow::Result<()> {
    let chain = Arc::new(tx_support::start());
    let fees = tx_support::keypair("reverse-watch-fees");
    let mut sim = Network::on_chain(chain.clone())?;
    sim.open(A, S, 1_000_000)?;
    let sb = sim.open(S, B, 400_000)?;
    // S keeps a copy of its store from before the payment: state 0 of S–B.
    let stale_copy: Vec<_> = sim.nodes[S].channels.values().cloned().collect();

    let id = PaymentId([0x42; 32]);
    sim.receive(id, AMOUNT)?;
    sim.pump()?;
    sim.stop(B);
    sim.fetch_letters(A)?;
    ensure!(
        sim.nodes[A].reverse_status(&id) == Some("bought"),
        "A bought S's signature: {:?}",
        sim.refusals
    );

    // S publishes state 0 of S–B from its old copy.
    let mut old = NodeCore::restore(
        sim.nodes[S].seed,
        sim.height,
        stale_copy,
        Records::Lsp(policy(), vec![]),
    )?;
    let u0 = force_close(&mut old, sb).context("S's old copy publishes U_0")?;
    ensure!(u0.lock_time.to_consensus_u32() == STATE_LOCKTIME_BASE);
    let coins = tx_support::fee_coins(&chain, &fees, 3);
    let (u0_txid, at) = tx_support::confirm_using(&chain, &u0, &fees, coins[0].clone(), "U_0")?;
    sim.block(at)?;

    // A, watching S–B's funding output, answers with U_1.
    let before = sim.broadcasts.len();
    sim.input(
        A,
        NodeInput::Spend {
            tx: u0.clone(),
            confirmed_at: Some(at),
        },
    )?;
    let u1 = sim.broadcasts[before..]
        .iter()
        .find(|tx| tx.lock_time.to_consensus_u32() == STATE_LOCKTIME_BASE + 1)
        .cloned()
        .context("A publishes U_1")?;
    let u0_out = OutPoint {
        txid: u0_txid,
        vout: 0,
    };
    ensure!(
        u1.input[0].previous_output == u0_out,
        "U_1 spends U_0's output"
    );
    let (u1_txid, at1) = tx_support::confirm_using(&chain, &u1, &fees, coins[1].clone(), "U_1")?;
    ensure!(at1 < at + 6, "U_1 confirmed before U_0's settlement could");
    ensure!(
        tx_support::utxo(&chain, &u0_out).is_none(),
        "U_0's output is spent"
    );

    // B returns: it has state 1 (from S or A's hand-over), sees both updates and settles.
    sim.start(B)?;
    sim.fetch_letters(B)?;
    ensure!(sim.nodes[B].reverse_status(&id) == Some("paid"));
    for (tx, h) in [(&u0, at), (&u1, at1)] {
        sim.input(
            B,
            NodeInput::Spend {
                tx: tx.clone(),
                confirmed_at: Some(h),
            },
        )?;
    }
    let settlement = sim
        .mine_until_settlement(&chain, u1_txid, u64::from(at1) + 20)
        .context("no settlement of state 1")?;
    tx_support::confirm_using(&chain, &settlement, &fees, coins[2].clone(), "SE_1")?;
    let paid: Vec<Amount> = tx_support::unspent_outputs(&chain, &settlement)
        .into_iter()
        .map(|(amount, _)| amount)
        .collect();
    ensure!(
        paid.contains(&Amount::from_sat(AMOUNT)),
        "SE_1 pays B {AMOUNT} sat: {paid:?}"
    );
    ensure!(paid.contains(&Amount::from_sat(400_000 - AMOUNT)));
    Ok(())
}
