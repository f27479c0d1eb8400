//! A and B collude against S's withheld sale. S accepts B's invoice and pays it with a PTLC
//! expiring at X = h + Δ; B fulfils in its own channel but never sends the fulfilment, never
//! goes on chain by itself, and keeps its claim for the last block it can win; A's old
//! backup publishes state 0 of A–S, which confirms at h + 1, the earliest it can. A–S has
//! the shortest delay S accepts (Δ + 2·`SALE_WINDOW_MARGIN`).
//!
//! S must learn the scalar from B's claim while it can still publish the completed U_1 with
//! `SALE_WINDOW_MARGIN` blocks to spare before U_0's settlement is valid (its sale window),
//! or B is paid while A keeps its money. In the model of this test each of S's transactions
//! confirms in the first block it is valid in, except its PTLC timeout (fixed fee, no
//! anchor), which miners leave out for `SALE_WINDOW_MARGIN` blocks: B's claim takes the
//! last of them.
//!
//! Before the fix S went on chain for its PTLC only at X, so the output existed only after
//! S–B's shared delay and B's claim came at X + 9 here, seven blocks after S's window ended
//! (S never learnt the scalar in time); and S's rule only asked Δ + `SALE_WINDOW_MARGIN` of
//! A–S's delay.
//!
//! In process: transactions are handed to the node cores as chain events.

use asyncpay::node::core::{NodeCommand, NodeCore, NodeInput, NodeOutput, Records};
use asyncpay::protocol::channel::SALE_WINDOW_MARGIN;
use asyncpay::protocol::messages::{Change, Message};
use asyncpay::protocol::wire::{Decoded, PeerMessage};
use asyncpay::testing::*;
use asyncpay::tx::STATE_LOCKTIME_BASE;
use bitcoin::Transaction;

const AMOUNT: u64 = 50_000;

fn is_fulfilment(frame: &[u8]) -> bool {
    matches!(
        PeerMessage::decode(frame),
        Ok(Decoded::Message(PeerMessage::Channel(Message::Propose(p))))
            if matches!(p.change, Change::FulfilPtlc { .. })
    )
}

/// A stopped node's core as its store holds it (B's claim, A's old state are made with it).
fn restored(sim: &Network, node: usize) -> NodeCore {
    let n = &sim.nodes[node];
    NodeCore::restore(
        n.seed,
        sim.height,
        n.channels.values().cloned().collect(),
        Records::Payer(vec![]),
    )
    .unwrap()
}

fn broadcasts(core: &mut NodeCore, input: NodeInput) -> Vec<Transaction> {
    core.handle(input)
        .unwrap()
        .actions
        .into_iter()
        .filter_map(|o| match o {
            NodeOutput::Broadcast(tx) => Some(tx),
            _ => None,
        })
        .collect()
}

fn spent_to_s(sim: &mut Network, tx: &Transaction, at: u32) {
    sim.input(
        S,
        NodeInput::Spend {
            tx: tx.clone(),
            confirmed_at: Some(at),
        },
    )
    .unwrap();
    sim.pump().unwrap();
}

/// The next block; what was broadcast since the last call.
fn next_block(sim: &mut Network, height: &mut u32, seen: &mut usize) -> Vec<Transaction> {
    *height += 1;
    sim.block(*height).unwrap();
    let new = sim.broadcasts[*seen..].to_vec();
    *seen = sim.broadcasts.len();
    new
}

#[test]
fn payee_claiming_as_late_as_it_can_still_lets_the_lsp_complete_the_payers_state() {
    let delta = policy().ptlc_delta;
    let payer_delay = (delta + 2 * SALE_WINDOW_MARGIN) as u16;
    let mut sim = Network::new();
    let a_s = sim
        .open_with_delay(A, S, A_S_CAPACITY, payer_delay)
        .unwrap();
    sim.open(S, B, S_B_CAPACITY).unwrap();
    let id = sim.pay_while_payee_offline(AMOUNT).unwrap();
    let mut old_a = restored(&sim, A);
    let u0 = broadcasts(
        &mut old_a,
        NodeInput::Command(NodeCommand::ForceClose { channel_id: a_s }),
    )
    .into_iter()
    .find(|tx| tx.lock_time.to_consensus_u32() == STATE_LOCKTIME_BASE)
    .expect("A's old backup publishes state 0");

    // B sells at h; its fulfilment never reaches S.
    let h = sim.height;
    sim.start(B).unwrap();
    let letter = sim.nodes[B].mailbox.remove(0);
    sim.input(B, NodeInput::Letter { bytes: letter }).unwrap();
    while let Some((from, to, frame)) = sim.queue.pop_front() {
        if from == B && is_fulfilment(&frame) {
            continue;
        }
        let from = sim.key(from);
        let _ = sim.input(to, NodeInput::Frame { from, frame });
    }
    assert_eq!(sim.nodes[S].status(&id), Some("selling"));
    sim.stop(B);
    let mut byzantine_b = restored(&sim, B);
    let expiry = h + delta;

    // U_0 confirms at h + 1: SE_0 is valid from h + 1 + D_A, S's window ends M + 1 before.
    let at = h + 1;
    spent_to_s(&mut sim, &u0, at);
    let window = at + u32::from(payer_delay) - 1 - SALE_WINDOW_MARGIN;

    // S closes S–B by itself; each of its transactions confirms in the first block it can.
    let mut height = at;
    let mut seen = sim.broadcasts.len();
    let sb_update = loop {
        assert!(height < expiry + 20, "S never went on chain for its PTLC");
        let new = next_block(&mut sim, &mut height, &mut seen);
        let found = new.into_iter().find(|tx| {
            tx.lock_time.to_consensus_u32() > STATE_LOCKTIME_BASE
                && tx.input[0].previous_output.txid != u0.compute_txid()
        });
        if let Some(tx) = found {
            break tx;
        }
    };
    let closed_at = height;
    spent_to_s(&mut sim, &sb_update, height + 1);
    broadcasts(
        &mut byzantine_b,
        NodeInput::Spend {
            tx: sb_update.clone(),
            confirmed_at: Some(height + 1),
        },
    );
    let settlement = loop {
        assert!(height < expiry + 40, "S never settled S–B");
        let new = next_block(&mut sim, &mut height, &mut seen);
        let found = new
            .into_iter()
            .find(|tx| tx.input[0].previous_output.txid == sb_update.compute_txid());
        if let Some(tx) = found {
            break tx;
        }
    };
    let settled_at = height + 1;
    spent_to_s(&mut sim, &settlement, settled_at);
    let claim = broadcasts(
        &mut byzantine_b,
        NodeInput::Spend {
            tx: settlement.clone(),
            confirmed_at: Some(settled_at),
        },
    )
    .into_iter()
    .find(|tx| tx.input[0].previous_output.txid == settlement.compute_txid())
    .expect("B can claim from the settlement");

    // S's timeout goes out at the expiry (or at once after it); B's claim wins M blocks later.
    let mut timeout_at = None;
    while timeout_at.is_none() {
        assert!(height < expiry + 60, "S never timed its PTLC out");
        let new = next_block(&mut sim, &mut height, &mut seen);
        if new
            .iter()
            .any(|tx| tx.lock_time.to_consensus_u32() == expiry)
        {
            timeout_at = Some(height);
        }
    }
    let claimed_at = timeout_at.unwrap() + SALE_WINDOW_MARGIN;
    while height < claimed_at - 1 {
        next_block(&mut sim, &mut height, &mut seen);
    }
    height = claimed_at;
    sim.block(height).unwrap();
    seen = sim.broadcasts.len();
    spent_to_s(&mut sim, &claim, claimed_at);

    // S learnt the scalar inside its window: it completes U_1 and publishes it over U_0.
    assert!(
        claimed_at <= window,
        "S closed S–B at {closed_at} (PTLC expiry {expiry}), learnt the scalar at \
         {claimed_at}, after its window ended at {window}: B is paid, A keeps its money"
    );
    assert_eq!(sim.nodes[S].status(&id), Some("sold"));
    let u1 = sim.broadcasts[seen..]
        .iter()
        .find(|tx| tx.lock_time.to_consensus_u32() == STATE_LOCKTIME_BASE + 1)
        .expect("S publishes U_1");
    assert_eq!(u1.input[0].previous_output.txid, u0.compute_txid());
}
