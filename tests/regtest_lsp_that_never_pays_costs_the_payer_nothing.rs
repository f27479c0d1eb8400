//! S never pays, with node cores on the BIP118 regtest, channels funded on chain and every
//! transaction through the mempool. A posts its signature on state 1 of A–S to B's mailbox
//! and goes offline; S goes dark before B comes online. B invoices S in time, but nobody adds
//! a PTLC: B keeps its scalar, so state 1 can never be completed, and S's offer expires.
//! - S never comes back: A, back after the expiry, closes A–S alone with its latest complete
//!   state (0), and its settlement pays A its whole balance; A's node records the payment
//!   as void once that settlement confirms.
//! - S comes back after the expiry: it refuses B's invoice as `expired` and reverts A's
//!   withheld state; A, back, finds the payment void, and a close of A–S with the reverted
//!   state pays A its whole balance.
//!
//! In both, S–B never moved: B was not paid and S paid nothing.

mod tx_support;

use std::sync::Arc;

use anyhow::{ensure, Context};
use asyncpay::chain::regtest::Regtest;
use asyncpay::node::core::{NodeCommand, NodeInput};
use asyncpay::protocol::messages::ChannelId;
use asyncpay::protocol::payment::{PayeeStatus, PayerStatus, PaymentId, SaleLetter};
use asyncpay::testing::*;
use asyncpay::tx::STATE_LOCKTIME_BASE;

const AMOUNT: u64 = 50_000;

struct Scene {
    chain: Arc<Regtest>,
    fees: bitcoin::secp256k1::Keypair,
    coins: Vec<(bitcoin::OutPoint, bitcoin::TxOut)>,
    sim: Network,
    id: PaymentId,
    a_s: ChannelId,
}

/// Channels funded on chain; A pays B (offline), posts its letter and stops; S stops; B
/// comes online, fetches the letter and invoices S, which is not there; blocks are mined
/// past the offer's expiry. Only B is running at the end.
fn lsp_gone_past_the_expiry() -> anyhow::Result<Scene> {
    let chain = Arc::new(tx_support::start());
    let fees = tx_support::keypair("lsp-never-pays-fees");
    let coins = tx_support::fee_coins(&chain, &fees, 2);
    let (mut sim, a_s, id) = Network::paid_offline_on_chain(chain.clone(), AMOUNT)?;
    sim.stop(S);

    let letter = sim.nodes[B].mailbox.first().context("A's letter")?;
    let expiry = SaleLetter::decode(letter)?.offer.expiry;
    sim.start(B)?;
    sim.fetch_letters(B)?;
    ensure!(
        sim.nodes[B].status(&id) == Some("invoiced"),
        "B invoiced S in time: {:?}",
        sim.nodes[B].payment(&id)
    );
    let now = u32::try_from(chain.height()?)?;
    ensure!(expiry > now, "the offer was live when B invoiced");
    chain.mine(u64::from(expiry + 1 - now))?;
    sim.block(expiry + 1)?;
    Ok(Scene {
        chain,
        fees,
        coins,
        sim,
        id,
        a_s,
    })
}

/// A closes A–S alone: its node publishes its latest complete state, which goes through the
/// mempool and confirms; blocks are mined until A's node settles it, and the settlement goes
/// through the mempool too. With `crash`, A's node stops right after it stores the
/// settled channel and is started again. Returns (the update's state number, what the
/// settlement pays).
fn a_closes_alone(scene: &mut Scene, crash: bool) -> anyhow::Result<(u32, Vec<u64>)> {
    let before = scene.sim.broadcasts.len();
    let channel_id = scene.a_s;
    scene.sim.input(
        A,
        NodeInput::Command(NodeCommand::ForceClose { channel_id }),
    )?;
    let update = scene.sim.broadcasts[before..]
        .iter()
        .find(|tx| tx.lock_time.to_consensus_u32() >= STATE_LOCKTIME_BASE)
        .cloned()
        .context("A's node publishes an update")?;
    let state = update.lock_time.to_consensus_u32() - STATE_LOCKTIME_BASE;
    let (txid, at) = tx_support::confirm_using(
        &scene.chain,
        &update,
        &scene.fees,
        scene.coins[0].clone(),
        "the update",
    )?;
    scene.sim.block(at)?;
    scene.sim.input(
        A,
        NodeInput::Spend {
            tx: update.clone(),
            confirmed_at: Some(at),
        },
    )?;
    let limit = u64::from(at) + 3 * u64::from(PAYER_DELAY);
    let settlement = scene
        .sim
        .mine_until_settlement(&scene.chain, txid, limit)
        .with_context(|| format!("A's node never settled state {state}"))?;
    let (_, at) = tx_support::confirm_using(
        &scene.chain,
        &settlement,
        &scene.fees,
        scene.coins[1].clone(),
        "the settlement",
    )?;
    scene.sim.block(at)?;
    if crash {
        scene.sim.nodes[A].crash_after = Some(0);
    }
    scene.sim.input(
        A,
        NodeInput::Spend {
            tx: settlement.clone(),
            confirmed_at: Some(at),
        },
    )?;
    if crash {
        ensure!(
            !scene.sim.online(A),
            "A stopped after storing the settled channel"
        );
        scene.sim.start(A)?;
    }
    Ok((
        state,
        tx_support::unspent_amounts(&scene.chain, &settlement),
    ))
}

/// S–B as B stored it: at its opening state, S's whole capacity on S's side, and no PTLC
/// was ever added to it.
fn s_b_untouched(sim: &Network) -> anyhow::Result<()> {
    let sb = sim.nodes[B].channel_with(sim.key(S)).context("B's S–B")?;
    let state = sb.complete.as_ref().context("S–B's state")?;
    ensure!(
        (state.body.number, state.body.to_a, state.body.to_s) == (0, S_B_CAPACITY, 0),
        "S–B moved: {:?}",
        state.body
    );
    ensure!(
        sb.next_ptlc == 0 && sb.pending().is_none(),
        "no PTLC was offered on S–B"
    );
    Ok(())
}

#[test]
fn s_never_comes_back_and_a_closes_with_state_0_keeping_its_whole_balance() -> anyhow::Result<()> {
    let mut scene = lsp_gone_past_the_expiry()?;
    s_b_untouched(&scene.sim)?;
    scene.sim.start(A)?;
    let (state, outs) = a_closes_alone(&mut scene, true)?;
    ensure!(
        state == 0,
        "A closed with its latest complete state, not {state}"
    );
    ensure!(
        outs.contains(&A_S_CAPACITY),
        "the settlement pays A its whole balance: {outs:?}"
    );
    // A's node learnt from the settlement that state 1 can never be completed, although it
    // stopped right after storing the settled channel.
    let id = scene.id;
    ensure!(scene.sim.nodes[A].status(&id) == Some("void"));
    let status = &scene.sim.nodes[A].payer(&id).context("A's record")?.status;
    ensure!(
        matches!(status, PayerStatus::Void { reason, .. } if reason.contains("settled on chain at state 0")),
        "{status:?}"
    );
    ensure!(
        scene.sim.nodes[B].status(&id) == Some("invoiced"),
        "B was not paid"
    );
    Ok(())
}

#[test]
fn s_back_after_the_expiry_refuses_the_invoice_and_a_closes_with_its_whole_balance(
) -> anyhow::Result<()> {
    let mut scene = lsp_gone_past_the_expiry()?;
    let id = scene.id;
    scene.sim.start(S)?;
    scene.sim.pump()?;
    ensure!(scene.sim.nodes[S].status(&id) == Some("cancelled"));
    ensure!(scene.sim.nodes[B].status(&id) == Some("refused"));
    let status = &scene.sim.nodes[B].payee(&id).context("B's record")?.status;
    ensure!(
        matches!(status, PayeeStatus::Refused { reason } if reason == "expired"),
        "{status:?}"
    );
    s_b_untouched(&scene.sim)?;

    scene.sim.start(A)?;
    scene.sim.pump()?;
    ensure!(scene.sim.nodes[A].status(&id) == Some("void"));
    let state = scene.sim.nodes[A]
        .state_with(scene.sim.key(S))
        .context("A's A–S")?;
    ensure!(
        (state.number, state.to_a) == (2, A_S_CAPACITY),
        "A–S reverted to A's whole balance: {state:?}"
    );
    scene.sim.stop(S);
    let (closed, outs) = a_closes_alone(&mut scene, false)?;
    ensure!(
        closed == 2,
        "A closed with the reverted state, not {closed}"
    );
    ensure!(
        outs.contains(&A_S_CAPACITY),
        "the settlement pays A its whole balance: {outs:?}"
    );
    Ok(())
}
