//! Fixtures of the in-process watchtower tests: a channel at state 2 whose older states the
//! LSP kept, blocks made of given transactions, and the first transaction actions publish.
#![allow(dead_code)]

use anyhow::{ensure, Context};
use asyncpay::protocol::channel::{Action, Channel, Command, Input, OpenTerms, Snapshot};
use asyncpay::tx::{Party, STATE_LOCKTIME_BASE};
use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash as _;
use bitcoin::{Block, BlockHash, CompactTarget, Transaction, TxMerkleNode};

use crate::channel_support::pair::Pair;
use crate::channel_support::{
    funding_outpoint, payout, secrets, CAPACITY, DELAY, HEIGHT, PUSH, WINDOW,
};

/// The payee's node seed (its client keys derive from it).
pub const SEED: [u8; 32] = [0x5e; 32];

/// A block holding `txs` (the tower checks neither header nor merkle root).
pub fn block(txs: Vec<Transaction>) -> Block {
    Block {
        header: Header {
            version: Version::TWO,
            prev_blockhash: BlockHash::all_zeros(),
            merkle_root: TxMerkleNode::all_zeros(),
            time: 0,
            bits: CompactTarget::from_consensus(0),
            nonce: 0,
        },
        txdata: txs,
    }
}

/// The state number an update commits to in its locktime.
pub fn state(tx: &Transaction) -> u32 {
    tx.lock_time.to_consensus_u32() - STATE_LOCKTIME_BASE
}

/// The first transaction `actions` publish.
pub fn broadcast_of(actions: Vec<Action>) -> Option<Transaction> {
    actions.into_iter().find_map(|a| match a {
        Action::Broadcast(tx) => Some(tx),
        _ => None,
    })
}

/// What `party`'s copy `snapshot` publishes when it force-closes.
pub fn force_close(snapshot: Snapshot, party: Party) -> anyhow::Result<Transaction> {
    let mut old = Channel::restore(secrets(party), snapshot)?;
    broadcast_of(old.handle(Input::Command(Command::ForceClose))?)
        .context("a force close publishes an update")
}

/// A channel at state 2 (S paid A twice: A, the payee side, gains at each state), and the
/// LSP's copies of states 0 and 1.
pub fn channel_at_state_2() -> anyhow::Result<(Pair, [Snapshot; 2])> {
    let terms = OpenTerms {
        capacity_sat: CAPACITY,
        push_sat: PUSH,
        shared_delay: DELAY,
        update_window: WINDOW,
        payout_key: payout(Party::A),
    };
    let (mut pair, _) = Pair::open(terms, HEIGHT, |_, _| Ok((funding_outpoint(), HEIGHT)))?;
    let mut copies = vec![];
    for amount_sat in [30_000, 40_000] {
        copies.push(pair.channel(Party::S).snapshot().clone());
        pair.input(
            Party::S,
            Input::Command(Command::Transfer {
                amount_sat,
                withhold: false,
            }),
        )?;
        pair.pump(HEIGHT)?;
    }
    let latest = pair.channel(Party::A).latest().context("state")?.clone();
    ensure!(latest.number == 2 && latest.to_a == CAPACITY - PUSH + 70_000);
    Ok((pair, [copies[0].clone(), copies[1].clone()]))
}
