//! Node cores on the BIP118 regtest, channels funded on chain and every transaction through
//! the mempool: A goes offline with its signature on state 1 of A–S for sale, and its old
//! backup publishes state 0. S's node keeps the sale open for its window:
//! - B sells inside it: S buys the scalar, its node publishes U_1 over U_0 at once, and the
//!   settlement of state 1 pays A and S their state-1 balances (B is paid on S–B); A, back
//!   while S is away, takes its proof of payment from U_1 on chain;
//! - B comes after it: S refuses the invoice (`window_closed`), nothing moves on S–B, and
//!   the settlement of state 0 pays A its whole balance.

mod tx_support;

use std::sync::Arc;

use anyhow::{ensure, Context};
use asyncpay::chain::regtest::Regtest;
use asyncpay::node::core::{NodeCore, NodeInput, Records};
use asyncpay::protocol::channel::SALE_WINDOW_MARGIN;
use asyncpay::protocol::payment::{PayeeStatus, PayerStatus, PaymentId};
use asyncpay::testing::*;
use asyncpay::tx::STATE_LOCKTIME_BASE;
use bitcoin::{OutPoint, Transaction, TxOut};

const AMOUNT: u64 = 50_000;

struct Scene {
    chain: Arc<Regtest>,
    fees: bitcoin::secp256k1::Keypair,
    coins: Vec<(OutPoint, TxOut)>,
    sim: Network,
    id: PaymentId,
    u0: Transaction,
    at: u32,
}

/// A–S and S–B funded on chain; A pays B (offline), posts its letter and stops; A's backup
/// from before the payment publishes U_0 of A–S, which confirms at `at`; S is told.
fn stale_state_published() -> anyhow::Result<Scene> {
    let chain = Arc::new(tx_support::start());
    let fees = tx_support::keypair("sale-window-node-fees");
    let (mut sim, a_s, id) = Network::paid_offline_on_chain(chain.clone(), AMOUNT)?;

    let mut backup = NodeCore::restore(
        sim.nodes[A].seed,
        sim.height,
        sim.nodes[A].channels.values().cloned().collect(),
        Records::Payer(vec![]),
    )?;
    let u0 = force_close(&mut backup, a_s).context("A's backup publishes U_0")?;
    ensure!(u0.lock_time.to_consensus_u32() == STATE_LOCKTIME_BASE);
    let coins = tx_support::fee_coins(&chain, &fees, 3);
    let (_, at) = tx_support::confirm_using(&chain, &u0, &fees, coins[0].clone(), "U_0")?;
    sim.block(at)?;
    sim.input(
        S,
        NodeInput::Spend {
            tx: u0.clone(),
            confirmed_at: Some(at),
        },
    )?;
    Ok(Scene {
        chain,
        fees,
        coins,
        sim,
        id,
        u0,
        at,
    })
}

/// Mines until S's node broadcasts a spend of `parent`'s output; publishes and confirms it.
fn settle(scene: &mut Scene, parent: &Transaction, coin: usize) -> anyhow::Result<Transaction> {
    let limit = u64::from(scene.at) + 3 * u64::from(PAYER_DELAY);
    let settlement = scene
        .sim
        .mine_until_settlement(&scene.chain, parent.compute_txid(), limit)?;
    tx_support::confirm_using(
        &scene.chain,
        &settlement,
        &scene.fees,
        scene.coins[coin].clone(),
        "the settlement",
    )?;
    Ok(settlement)
}

fn paid(scene: &Scene, tx: &Transaction) -> Vec<u64> {
    tx_support::unspent_amounts(&scene.chain, tx)
}

#[test]
fn b_sells_inside_the_window_and_s_node_publishes_the_sold_state() -> anyhow::Result<()> {
    let mut scene = stale_state_published()?;
    let broadcasts = scene.sim.broadcasts.len();
    scene.sim.start(B)?;
    scene.sim.fetch_letters(B)?;
    let id = scene.id;
    ensure!(
        scene.sim.nodes[B].status(&id) == Some("paid"),
        "B is paid: {:?}",
        scene.sim.refusals
    );
    let u1 = scene.sim.broadcasts[broadcasts..]
        .iter()
        .find(|tx| tx.lock_time.to_consensus_u32() == STATE_LOCKTIME_BASE + 1)
        .cloned()
        .context("S's node publishes U_1")?;
    let u0_out = OutPoint {
        txid: scene.u0.compute_txid(),
        vout: 0,
    };
    ensure!(u1.input[0].previous_output == u0_out);
    let (_, at1) = tx_support::confirm_using(
        &scene.chain,
        &u1,
        &scene.fees,
        scene.coins[1].clone(),
        "U_1",
    )?;
    ensure!(
        at1 < scene.at + u32::from(PAYER_DELAY),
        "U_1 beat U_0's settlement"
    );
    scene.sim.input(
        S,
        NodeInput::Spend {
            tx: u1.clone(),
            confirmed_at: Some(at1),
        },
    )?;
    let se1 = settle(&mut scene, &u1, 2)?;
    let state1 = scene.sim.nodes[S]
        .state_with(scene.sim.key(A))
        .context("A–S")?;
    ensure!(state1.number == 1 && state1.to_s == AMOUNT + policy().fee_for(AMOUNT));
    let outs = paid(&scene, &se1);
    ensure!(
        outs.contains(&state1.to_a) && outs.contains(&state1.to_s),
        "SE_1 pays state 1: {outs:?}"
    );

    // A comes back while S is away and learns from the chain alone that B was paid: U_1's
    // witness carries A's signature as B completed it, and with it B's receipt signature.
    scene.sim.stop(S);
    scene.sim.start(A)?;
    for (tx, at) in [(scene.u0.clone(), scene.at), (u1, at1)] {
        let confirmed_at = Some(at);
        scene.sim.input(A, NodeInput::Spend { tx, confirmed_at })?;
    }
    let status = &scene.sim.nodes[A].payer(&id).context("A's record")?.status;
    let PayerStatus::Paid { proof, .. } = status else {
        anyhow::bail!("A holds its proof from the chain: {status:?}");
    };
    proof
        .verify(&scene.sim.key(B))
        .map_err(|e| anyhow::anyhow!("A's proof from the chain: {e}"))?;
    Ok(())
}

#[test]
fn b_comes_after_the_window_and_state_0_settles() -> anyhow::Result<()> {
    let mut scene = stale_state_published()?;
    let deadline = scene.at + u32::from(PAYER_DELAY) - 1 - SALE_WINDOW_MARGIN;
    // One block after the last safe invoice height: S learns t by the expiry + the margin.
    let late = deadline - SALE_WINDOW_MARGIN - policy().ptlc_delta + 1;
    scene.chain.mine(u64::from(late - scene.at))?;
    scene.sim.block(late)?;
    scene.sim.start(B)?;
    scene.sim.fetch_letters(B)?;
    let id = scene.id;
    ensure!(scene.sim.nodes[B].status(&id) == Some("refused"));
    let status = &scene.sim.nodes[B].payee(&id).context("B's record")?.status;
    ensure!(
        matches!(status, PayeeStatus::Refused { reason } if reason == "window_closed"),
        "{status:?}"
    );
    let sb = scene.sim.nodes[S]
        .state_with(scene.sim.key(B))
        .context("S–B")?;
    ensure!((sb.number, sb.to_s) == (0, 0), "S paid B nothing");
    let u0 = scene.u0.clone();
    let se0 = settle(&mut scene, &u0, 1)?;
    ensure!(
        paid(&scene, &se0).contains(&1_000_000),
        "SE_0 pays A its whole balance: {:?}",
        paid(&scene, &se0)
    );
    Ok(())
}
