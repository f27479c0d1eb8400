//! The rate of full channel updates: both parties in one process, messages through memory
//! queues, every `Persist` action written to its own file in a temporary directory and
//! fsynced before the next action runs (persist before send).
//!
//! ```
//! use asyncpay::bench::channel::measure;
//!
//! let figures = measure(4, false)?;
//! assert!(figures.persists_per_update > 0.0 && figures.messages_per_update > 0.0);
//! # Ok::<(), asyncpay::bench::BenchError>(())
//! ```

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bitcoin::hashes::Hash;
use bitcoin::{OutPoint, Txid};

use super::BenchError;
use crate::crypto::keys::SecretKey;
use crate::crypto::nonce::NonceSeed;
use crate::protocol::channel::{
    Action, ChainEvent, Channel, ChannelSecrets, Command, Input, OpenTerms, Phase,
};
use crate::protocol::messages::{ChannelId, Message};

const HEIGHT: u32 = 200;

fn secrets(b: u8) -> Result<ChannelSecrets, BenchError> {
    Ok(ChannelSecrets {
        key: SecretKey::from_bytes([b; 32])?,
        nonce_seed: NonceSeed::from_bytes([b.wrapping_add(1); 32]),
    })
}

struct Side {
    channel: Option<Channel>,
    file: PathBuf,
    persists: u64,
    /// The complete state of the last snapshot written: the leaf hashes up to it are final.
    logged: u64,
}

/// Carries out one party's actions: persist durably, queue messages for the peer.
fn run(
    side: &mut Side,
    actions: Vec<Action>,
    out: &mut VecDeque<Message>,
    fsync: bool,
) -> Result<(), BenchError> {
    for action in actions {
        match action {
            Action::Persist(snapshot) => {
                // What a store writes for it: the snapshot, and the settlement leaf hashes
                // of the states signed since the last complete one it wrote (as
                // `node::store` appends them beside the snapshot).
                let mut bytes = serde_json::to_vec(&snapshot)?;
                for (state, hash) in snapshot.settlement_leaf_hashes.range(side.logged..) {
                    bytes.extend_from_slice(&state.to_be_bytes());
                    bytes.extend_from_slice(hash);
                }
                side.logged = snapshot.complete.as_ref().map_or(0, |c| c.body.number);
                let mut f = File::create(&side.file).map_err(|source| BenchError::File {
                    path: side.file.clone(),
                    source,
                })?;
                f.write_all(&bytes)?;
                if fsync {
                    f.sync_data()?;
                }
                side.persists += 1;
            }
            Action::Send(msg) => out.push_back(msg),
            _ => {}
        }
    }
    Ok(())
}

struct Pair {
    a: Side,
    s: Side,
    to_a: VecDeque<Message>,
    to_s: VecDeque<Message>,
    fsync: bool,
    messages: u64,
}

impl Pair {
    fn pump(&mut self) -> Result<(), BenchError> {
        loop {
            let (to_s, msg) = if let Some(m) = self.to_s.pop_front() {
                (true, m)
            } else if let Some(m) = self.to_a.pop_front() {
                (false, m)
            } else {
                return Ok(());
            };
            self.messages += 1;
            let (side, out) = if to_s {
                (&mut self.s, &mut self.to_a)
            } else {
                (&mut self.a, &mut self.to_s)
            };
            let actions = match side.channel.as_mut() {
                Some(channel) => channel.handle(Input::Message(msg))?,
                None => {
                    let Message::Open(open) = &msg else {
                        return Err(BenchError::UnexpectedFirstMessage);
                    };
                    let payout = SecretKey::from_bytes([0x44; 32])?.public_key();
                    let (channel, actions) = Channel::accept(secrets(0x22)?, open, payout, HEIGHT)?;
                    side.channel = Some(channel);
                    actions
                }
            };
            run(side, actions, out, self.fsync)?;
        }
    }

    fn input_a(&mut self, input: Input) -> Result<(), BenchError> {
        let actions = self
            .a
            .channel
            .as_mut()
            .ok_or(BenchError::Missing("a has a channel"))?
            .handle(input)?;
        run(&mut self.a, actions, &mut self.to_s, self.fsync)
    }

    fn open(dir: &Path, fsync: bool) -> Result<Self, BenchError> {
        let terms = OpenTerms {
            capacity_sat: 10_000_000,
            push_sat: 0,
            shared_delay: 6,
            update_window: 1_000,
            payout_key: SecretKey::from_bytes([0x33; 32])?.public_key(),
        };
        let (channel, actions) = Channel::open(secrets(0x11)?, ChannelId([7; 32]), terms, HEIGHT)?;
        let mut pair = Pair {
            a: Side {
                channel: Some(channel),
                file: dir.join("a.snapshot"),
                persists: 0,
                logged: 0,
            },
            s: Side {
                channel: None,
                file: dir.join("s.snapshot"),
                persists: 0,
                logged: 0,
            },
            to_a: VecDeque::new(),
            to_s: VecDeque::new(),
            fsync,
            messages: 0,
        };
        run(&mut pair.a, actions, &mut pair.to_s, fsync)?;
        pair.pump()?;
        let funding = OutPoint {
            txid: Txid::from_byte_array([0xf0; 32]),
            vout: 0,
        };
        pair.input_a(Input::Command(Command::FundingBuilt { outpoint: funding }))?;
        pair.pump()?;
        let confirmed = || {
            Input::Chain(ChainEvent::Confirmed {
                txid: funding.txid,
                height: HEIGHT,
            })
        };
        pair.input_a(confirmed())?;
        let s = pair
            .s
            .channel
            .as_mut()
            .ok_or(BenchError::Missing("s has a channel"))?;
        let actions = s.handle(confirmed())?;
        run(&mut pair.s, actions, &mut pair.to_a, fsync)?;
        pair.pump()?;
        Ok(pair)
    }
}

/// Figures of `updates` transfers of 1 sat from A to S.
#[derive(Debug, Clone, Copy)]
pub struct ChannelFigures {
    /// Completed updates per second.
    pub updates_per_sec: f64,
    /// Persist actions (fsynced snapshot writes) per update, both parties.
    pub persists_per_update: f64,
    /// Peer messages per update.
    pub messages_per_update: f64,
}

/// Runs `updates` full updates in a fresh temporary directory.
pub fn measure(updates: u32, fsync: bool) -> Result<ChannelFigures, BenchError> {
    let dir = tempfile::tempdir()?;
    let mut pair = Pair::open(dir.path(), fsync)?;
    let (persists0, messages0) = (pair.a.persists + pair.s.persists, pair.messages);
    let before = pair
        .s
        .channel
        .as_ref()
        .and_then(|c| c.latest().map(|b| b.to_s))
        .ok_or(BenchError::Missing("state"))?;
    let start = Instant::now();
    for _ in 0..updates {
        pair.input_a(Input::Command(Command::Transfer {
            amount_sat: 1,
            withhold: false,
        }))?;
        pair.pump()?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    for side in [&pair.a, &pair.s] {
        let channel = side
            .channel
            .as_ref()
            .ok_or(BenchError::Missing("channel"))?;
        if channel.phase() != Phase::Funded {
            return Err(BenchError::ChannelPhase(channel.phase()));
        }
    }
    let after = pair
        .s
        .channel
        .as_ref()
        .and_then(|c| c.latest().map(|b| b.to_s))
        .ok_or(BenchError::Missing("state"))?;
    if after - before != u64::from(updates) {
        return Err(BenchError::Transfers {
            gained: after - before,
            updates,
        });
    }
    let n = f64::from(updates);
    Ok(ChannelFigures {
        updates_per_sec: n / elapsed,
        persists_per_update: (pair.a.persists + pair.s.persists - persists0) as f64 / n,
        messages_per_update: (pair.messages - messages0) as f64 / n,
    })
}
