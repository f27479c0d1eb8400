//! Reverse variant: the payer A holds the offline payee B's complete update U_n of S–B (it
//! bought S's signature). S, cheating, publishes an old update U_0 and then, on top of it,
//! a later but still old update U_k (k < n) spending U_0's output. Before the fix A watched
//! only S–B's funding output: it answered U_0 and never heard of U_k, which could settle.
//! Now every older update A answers is watched in turn, and A answers U_k on its own output.
//!
//! In process: S's old copies publish what they hold; A's node core is fed the spends as a
//! driver watching what A asked it to watch would feed them.

use anyhow::{ensure, Context};
use asyncpay::node::core::{NodeCore, NodeInput, NodeOutput, Records};
use asyncpay::protocol::payment::PaymentId;
use asyncpay::testing::*;
use asyncpay::tx::STATE_LOCKTIME_BASE;
use bitcoin::{OutPoint, Transaction};

const AMOUNT: u64 = 30_000;

fn state_of(tx: &Transaction) -> u32 {
    tx.lock_time.to_consensus_u32() - STATE_LOCKTIME_BASE
}

/// A's outputs for a spend it is told of: (updates it broadcasts, outpoints it watches).
fn a_sees(
    sim: &mut Network,
    tx: &Transaction,
    at: u32,
) -> anyhow::Result<(Vec<Transaction>, Vec<OutPoint>)> {
    let core = sim.nodes[A].core.as_mut().context("A runs")?;
    let outputs = core.handle(NodeInput::Spend {
        tx: tx.clone(),
        confirmed_at: Some(at),
    })?;
    let mut sent = vec![];
    let mut watched = vec![];
    for o in outputs.actions {
        match o {
            NodeOutput::Broadcast(tx) => sent.push(tx),
            NodeOutput::Watch(o) => watched.push(o),
            _ => {}
        }
    }
    Ok((sent, watched))
}

#[test]
fn payer_answers_every_old_update_the_lsp_stacks_on_another() -> anyhow::Result<()> {
    let mut sim = Network::new();
    sim.open(A, S, 1_000_000)?;
    let sb = sim.open(S, B, 400_000)?;
    let copy_0: Vec<_> = sim.nodes[S].channels.values().cloned().collect();
    // A forward payment moves S–B to state 2 (PTLC added, then fulfilled).
    let paid = sim.pay(AMOUNT)?;
    sim.fetch_letters(B)?;
    ensure!(sim.nodes[S].status(&paid) == Some("sold"));
    let k = sim.nodes[S].state_with(sim.key(B)).context("S–B")?.number;
    ensure!(k >= 2, "S–B moved on: state {k}");
    let copy_k: Vec<_> = sim.nodes[S].channels.values().cloned().collect();

    // B is paid by A buying S's signature on the next state, then goes offline.
    let id = PaymentId([0x43; 32]);
    sim.receive(id, AMOUNT)?;
    sim.pump()?;
    sim.stop(B);
    sim.fetch_letters(A)?;
    ensure!(
        sim.nodes[A].reverse_status(&id) == Some("bought"),
        "A bought S's signature: {:?}",
        sim.refusals
    );

    // S publishes U_0 from its first copy.
    let restore = |copy: Vec<_>, sim: &Network| {
        NodeCore::restore(
            sim.nodes[S].seed,
            sim.height,
            copy,
            Records::Lsp(policy(), vec![]),
        )
    };
    let mut old_0 = restore(copy_0, &sim)?;
    let u0 = force_close(&mut old_0, sb)?;
    ensure!(state_of(&u0) == 0);
    let at = sim.height + 1;
    let (sent, watched) = a_sees(&mut sim, &u0, at)?;
    let answer = sent.first().context("A answers U_0")?;
    let u0_out = OutPoint {
        txid: u0.compute_txid(),
        vout: 0,
    };
    ensure!(answer.input[0].previous_output == u0_out);
    let n = state_of(answer);
    ensure!(n as u64 > k, "A's update is the newest state");
    ensure!(watched.contains(&u0_out), "A watches U_0's output");

    // S's second copy answers U_0 with its own latest (still old) state U_k, on U_0's output.
    let mut old_k = restore(copy_k, &sim)?;
    let uk = old_k
        .handle(NodeInput::Spend {
            tx: u0.clone(),
            confirmed_at: Some(at),
        })?
        .actions
        .into_iter()
        .find_map(|o| match o {
            NodeOutput::Broadcast(tx) if state_of(&tx) as u64 == k => Some(tx),
            _ => None,
        })
        .context("S's copy publishes U_k on top of U_0")?;
    ensure!(uk.input[0].previous_output == u0_out);

    // A hears of U_k (it watches U_0's output) and answers it on U_k's own output.
    let (sent, watched) = a_sees(&mut sim, &uk, at + 1)?;
    let uk_out = OutPoint {
        txid: uk.compute_txid(),
        vout: 0,
    };
    let answer = sent.first().context("A answers U_k")?;
    ensure!(answer.input[0].previous_output == uk_out);
    ensure!(state_of(answer) == n);
    ensure!(watched.contains(&uk_out), "A watches U_k's output in turn");
    Ok(())
}
