//! A byzantine payee B takes its PTLC on chain instead of fulfilling it off chain.
//!
//! B sells A's signature: S offers B a PTLC locked to the price point. B fulfils it in its
//! own channel but never sends the fulfilment; it closes S–B alone and, once the settlement
//! confirms, claims the PTLC output with the scalar. The claim's witness reveals the scalar
//! to S. Before the fix the channel reported `PtlcSecretLearned` and the node core dropped it
//! (a wildcard arm): S never completed A's state and lost the amount. Now the LSP role hears
//! it and completes A–S's state 1, exactly as if B had fulfilled off chain.
//!
//! In process: transactions are handed to the node cores as chain events in the order a
//! chain would confirm them.

use asyncpay::node::core::{NodeCommand, NodeInput};
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

/// The newest broadcast that spends `txid`'s outputs and satisfies `pick`.
fn spending(
    sim: &Network,
    txid: bitcoin::Txid,
    pick: impl Fn(&Transaction) -> bool,
) -> Transaction {
    sim.broadcasts
        .iter()
        .rev()
        .find(|tx| tx.input.iter().any(|i| i.previous_output.txid == txid) && pick(tx))
        .cloned()
        .unwrap_or_else(|| panic!("nothing spends {txid}"))
}

fn confirm(sim: &mut Network, tx: &Transaction, height: u32) {
    for node in [S, B] {
        sim.input(
            node,
            NodeInput::Spend {
                tx: tx.clone(),
                confirmed_at: Some(height),
            },
        )
        .unwrap();
    }
    sim.pump().unwrap();
}

#[test]
fn payee_claiming_on_chain_reveals_the_scalar_and_the_lsp_completes_the_payers_state() {
    let mut sim = Network::new();
    sim.open(A, S, A_S_CAPACITY).unwrap();
    let s_b = sim.open(S, B, S_B_CAPACITY).unwrap();
    sim.stop(B);
    let id = sim.pay(AMOUNT).unwrap();
    sim.stop(A);

    // B sells, but its fulfilment never reaches S.
    sim.start(B).unwrap();
    let letter = sim.nodes[B].mailbox.remove(0);
    sim.input(B, NodeInput::Letter { bytes: letter }).unwrap();
    let mut withheld = 0;
    while let Some((from, to, frame)) = sim.queue.pop_front() {
        if from == B && is_fulfilment(&frame) {
            withheld += 1;
            continue;
        }
        let from = sim.key(from);
        let _ = sim.input(to, NodeInput::Frame { from, frame });
    }
    assert_eq!(withheld, 1, "B fulfilled in its own channel");
    assert_eq!(sim.nodes[S].status(&id), Some("selling"));
    let before = sim.nodes[S].state_with(sim.key(A)).unwrap();
    assert_eq!(before.number, 0, "S has not completed A's state yet");

    // B closes S–B alone on the state holding the PTLC and claims it once settled.
    sim.broadcasts.clear();
    sim.input(
        B,
        NodeInput::Command(NodeCommand::ForceClose { channel_id: s_b }),
    )
    .unwrap();
    let update = sim
        .broadcasts
        .last()
        .cloned()
        .expect("B publishes its latest update");
    let mut height = sim.height + 1;
    confirm(&mut sim, &update, height);
    let mut settlement = None;
    for _ in 0..20 {
        height += 1;
        sim.block(height).unwrap();
        let found = sim.broadcasts.iter().find(|tx| {
            tx.input[0].previous_output.txid == update.compute_txid()
                && tx.lock_time.to_consensus_u32() < STATE_LOCKTIME_BASE
        });
        if let Some(tx) = found {
            settlement = Some(tx.clone());
            break;
        }
    }
    let settlement = settlement.expect("the settlement is published after the shared delay");
    height += 1;
    confirm(&mut sim, &settlement, height);
    let claim = spending(&sim, settlement.compute_txid(), |_| true);
    height += 1;
    // Only S needs to see the claim: it is a spend of the PTLC output S watches.
    sim.input(
        S,
        NodeInput::Spend {
            tx: claim,
            confirmed_at: Some(height),
        },
    )
    .unwrap();
    sim.pump().unwrap();

    assert_eq!(sim.nodes[S].status(&id), Some("sold"));
    let fee = policy().fee_for(AMOUNT);
    let a_s_state = sim.nodes[S].state_with(sim.key(A)).unwrap();
    assert_eq!(
        a_s_state.number, 1,
        "S completed A's state from the on-chain scalar"
    );
    assert_eq!(
        (a_s_state.to_a, a_s_state.to_s),
        (A_S_CAPACITY - AMOUNT - fee, AMOUNT + fee)
    );
    // A, back, is on the same state with its receipt.
    sim.start(A).unwrap();
    sim.pump().unwrap();
    assert_eq!(sim.nodes[A].status(&id), Some("completed"));
    assert_eq!(sim.nodes[A].state_with(sim.key(S)), Some(a_s_state));
}
