//! The tower's state machine: appointments in, blocks in, transactions to publish out.
//! No I/O: the driver stores what [`Tower::accept`] and [`Tower::block`] report as changed,
//! then publishes.

use std::collections::{BTreeMap, HashMap};

use bitcoin::{Block, OutPoint, Transaction};
use serde::{Deserialize, Serialize};

use super::{hint, leaf_keys, open_leaf, sealing_key, Appointment, Hint, Kit, TowerError};
use super::{KIT_PADDING, SEALED_LEAF_LEN};
use crate::protocol::transactions::{self as txs, ChannelTxs};
use crate::tx::STATE_LOCKTIME_BASE;

/// The tower's caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TowerLimits {
    /// Channels watched in all.
    pub max_channels: usize,
    /// States (leaves) kept per channel.
    pub max_states: u64,
    /// Leaves taken in one appointment.
    pub max_leaves_per_appointment: u64,
    /// Largest sealed kit, in bytes.
    pub max_kit_bytes: usize,
    /// Leaves (48 bytes each) kept over all channels: with the channel and state caps alone,
    /// appointments could fill tens of gigabytes.
    pub max_total_leaves: u64,
}

impl Default for TowerLimits {
    /// 10,000 channels, 100,000 states each, [`super::MAX_LEAVES_PER_APPOINTMENT`] leaves an
    /// appointment, 64 KiB kits, 10 million leaves in all (480 MB).
    fn default() -> Self {
        TowerLimits {
            max_channels: 10_000,
            max_states: 100_000,
            max_leaves_per_appointment: super::MAX_LEAVES_PER_APPOINTMENT,
            max_kit_bytes: 64 * KIT_PADDING,
            max_total_leaves: 10_000_000,
        }
    }
}

/// The newest update of a channel seen confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateOnChain {
    /// Its state number.
    pub state: u64,
    /// Its update output.
    pub outpoint: OutPoint,
    /// The height it confirmed at.
    pub confirmed_at: u32,
}

/// A channel whose kit was opened by an update on chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breach {
    /// The sealing key, learned from the update's witness.
    #[serde(with = "hex::serde")]
    pub key: [u8; 32],
    /// The opened kit.
    pub kit: Kit,
    /// The newest update on chain.
    pub on_chain: UpdateOnChain,
    /// The txid of the settlement that spent it, once confirmed: nothing left to do.
    pub settled: Option<bitcoin::Txid>,
}

/// One watched channel, as stored (its sealed leaves are kept apart, see [`Stored`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The client key.
    #[serde(with = "hex::serde")]
    pub client: [u8; 32],
    /// The hint.
    pub hint: Hint,
    /// The newest state.
    pub state: u64,
    /// Its sealed kit.
    #[serde(with = "hex::serde")]
    pub kit: Vec<u8>,
    /// How many leaves are held (states `0..leaf_count`).
    pub leaf_count: u64,
    /// Set once an update of the channel is on chain.
    pub breach: Option<Breach>,
    /// The channel was closed cooperatively: the funding output was spent by a key-path
    /// spend, which reveals nothing. Kept so a late appointment is refused.
    #[serde(default)]
    pub closed: bool,
}

/// What the driver must store after an input, before it publishes anything: the record, and
/// the sealed leaves from `leaves_from` on (each [`SEALED_LEAF_LEN`] bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The changed record.
    pub record: Record,
    /// State of the first new leaf.
    pub leaves_from: u64,
    /// New sealed leaves.
    pub leaves: Vec<[u8; SEALED_LEAF_LEN]>,
}

/// What the tower did, for its log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TowerEvent {
    /// An update of a watched channel is on chain: its kit is open.
    Opened {
        /// The channel's hint.
        hint: Hint,
        /// State of the update on chain.
        state: u64,
        /// The kit's state.
        latest: u64,
    },
    /// The kit's update was published against an older one.
    Answered {
        /// The hint.
        hint: Hint,
        /// State on chain.
        stale: u64,
        /// The kit's state.
        latest: u64,
    },
    /// The kit's settlement was published.
    Settling {
        /// The hint.
        hint: Hint,
        /// Its state.
        state: u64,
    },
    /// The settlement confirmed: done.
    Settled {
        /// The hint.
        hint: Hint,
        /// The settled state.
        state: u64,
    },
    /// The funding output was spent by a cooperative close.
    ClosedCooperatively {
        /// The hint.
        hint: Hint,
    },
    /// An older update is on chain but the tower lacks its leaf (the client never sent it):
    /// it cannot answer.
    Unanswerable {
        /// The hint.
        hint: Hint,
        /// The stale state.
        stale: u64,
    },
    /// A record under this hint did not open with the key the chain revealed (another
    /// client's junk under the same hint).
    NotOpened {
        /// The hint.
        hint: Hint,
    },
}

/// What one block asks of the driver.
#[derive(Debug, Default)]
pub struct BlockOutcome {
    /// Store these first.
    pub stored: Vec<Stored>,
    /// Then publish these (each needs a CPFP child if it has an anchor).
    pub broadcasts: Vec<Transaction>,
    /// For the log.
    pub events: Vec<TowerEvent>,
}

type Id = ([u8; 32], Hint);

/// The watchtower.
#[derive(Debug, Default)]
pub struct Tower {
    limits: TowerLimits,
    records: HashMap<Id, Record>,
    leaves: HashMap<Id, Vec<[u8; SEALED_LEAF_LEN]>>,
    by_hint: HashMap<Hint, Vec<[u8; 32]>>,
    /// Leaves held over all channels.
    total_leaves: u64,
    /// Update outputs of opened channels (several records may follow one channel: another
    /// client may have registered under the same hint).
    watching: HashMap<OutPoint, Vec<Id>>,
}

impl Tower {
    /// An empty tower.
    pub fn new(limits: TowerLimits) -> Tower {
        Tower {
            limits,
            ..Tower::default()
        }
    }

    /// A tower from its stored records and their leaves.
    pub fn restore(
        limits: TowerLimits,
        stored: impl IntoIterator<Item = (Record, Vec<[u8; SEALED_LEAF_LEN]>)>,
    ) -> Tower {
        let mut tower = Tower::new(limits);
        for (record, leaves) in stored {
            tower.insert(record, leaves);
        }
        tower
    }

    fn insert(&mut self, record: Record, leaves: Vec<[u8; SEALED_LEAF_LEN]>) {
        let id = (record.client, record.hint);
        if let Some(b) = &record.breach {
            if b.settled.is_none() {
                self.watching
                    .entry(b.on_chain.outpoint)
                    .or_default()
                    .push(id);
            }
        }
        let clients = self.by_hint.entry(record.hint).or_default();
        if !clients.contains(&record.client) {
            clients.push(record.client);
        }
        self.total_leaves += leaves.len() as u64;
        self.leaves.insert(id, leaves);
        self.records.insert(id, record);
    }

    /// Channels held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no channel is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Channels with an update on chain and no settlement yet.
    pub fn breaches(&self) -> usize {
        self.records
            .values()
            .filter(|r| r.breach.as_ref().is_some_and(|b| b.settled.is_none()))
            .count()
    }

    /// Takes an appointment. On error nothing changed.
    pub fn accept(&mut self, a: Appointment) -> Result<Stored, TowerError> {
        a.verify()?;
        if a.kit.len() > self.limits.max_kit_bytes {
            return Err(TowerError::KitTooLarge {
                len: a.kit.len(),
                max: self.limits.max_kit_bytes,
            });
        }
        if a.leaves.len() % SEALED_LEAF_LEN != 0 || a.leaves.is_empty() {
            return Err(TowerError::LeavesMisaligned {
                from: a.leaves_from,
                to: a.leaves_from,
                state: a.state,
            });
        }
        let count = (a.leaves.len() / SEALED_LEAF_LEN) as u64;
        if count > self.limits.max_leaves_per_appointment {
            return Err(TowerError::TooManyLeaves {
                count,
                max: self.limits.max_leaves_per_appointment,
            });
        }
        let to = a.leaves_from.saturating_add(count - 1);
        if to > a.state {
            return Err(TowerError::LeavesMisaligned {
                from: a.leaves_from,
                to,
                state: a.state,
            });
        }
        if a.state >= self.limits.max_states {
            return Err(TowerError::TooManyLeaves {
                count: a.state.saturating_add(1),
                max: self.limits.max_states,
            });
        }
        let id = (a.client, a.hint);
        let (have, stored_state) = match self.records.get(&id) {
            Some(r) => {
                if r.breach.is_some() || r.closed {
                    return Err(TowerError::Closing);
                }
                if a.state < r.state {
                    return Err(TowerError::Stale {
                        state: a.state,
                        stored: r.state,
                    });
                }
                if a.state == r.state && a.kit != r.kit {
                    return Err(TowerError::Conflict { state: a.state });
                }
                (r.leaf_count, Some(r.state))
            }
            None => {
                if self.records.len() >= self.limits.max_channels {
                    return Err(TowerError::Full { what: "channels" });
                }
                (0, None)
            }
        };
        if a.leaves_from > have {
            return Err(TowerError::MissingLeaves { from: have });
        }
        // Leaves the tower has are kept (the first copy wins); new ones are appended.
        let new: Vec<[u8; SEALED_LEAF_LEN]> = a
            .leaves
            .chunks_exact(SEALED_LEAF_LEN)
            .skip((have - a.leaves_from) as usize)
            .map(|c| c.try_into().expect("chunks of the sealed leaf length"))
            .collect();
        if self.total_leaves.saturating_add(new.len() as u64) > self.limits.max_total_leaves {
            return Err(TowerError::Full { what: "leaves" });
        }
        let record = Record {
            client: a.client,
            hint: a.hint,
            state: a.state,
            kit: a.kit,
            leaf_count: have.max(to + 1),
            breach: None,
            closed: false,
        };
        if stored_state == Some(a.state) && new.is_empty() {
            // The same appointment again: nothing to store.
            return Ok(Stored {
                record,
                leaves_from: have,
                leaves: vec![],
            });
        }
        self.total_leaves += new.len() as u64;
        let leaves = self.leaves.entry(id).or_default();
        leaves.extend_from_slice(&new);
        let clients = self.by_hint.entry(a.hint).or_default();
        if !clients.contains(&a.client) {
            clients.push(a.client);
        }
        self.records.insert(id, record.clone());
        Ok(Stored {
            record,
            leaves_from: have,
            leaves: new,
        })
    }

    /// Scans a block at `height`, then says what to publish for every open breach.
    pub fn block(&mut self, height: u32, block: &Block) -> BlockOutcome {
        let mut out = BlockOutcome::default();
        let mut changed: BTreeMap<Id, ()> = BTreeMap::new();
        for tx in &block.txdata {
            for input in &tx.input {
                let prevout = input.previous_output;
                if let Some(ids) = self.watching.remove(&prevout) {
                    for id in ids {
                        if self.on_spend(id, tx, input, height, &mut out.events) {
                            changed.insert(id, ());
                        }
                    }
                    continue;
                }
                let h = hint(&prevout);
                let Some(clients) = self.by_hint.get(&h).cloned() else {
                    continue;
                };
                for client in clients {
                    let id = (client, h);
                    if self.open(id, prevout, tx, input, height, &mut out.events) {
                        changed.insert(id, ());
                    }
                }
            }
        }
        for id in changed.keys() {
            if let Some(record) = self.records.get(id) {
                out.stored.push(Stored {
                    record: record.clone(),
                    leaves_from: record.leaf_count,
                    leaves: vec![],
                });
            }
        }
        for (id, record) in &self.records {
            let Some(b) = &record.breach else { continue };
            if b.settled.is_some() {
                continue;
            }
            match self.publish(id, b, height) {
                Ok(Some((tx, event))) => {
                    out.broadcasts.push(tx);
                    if let Some(event) = event {
                        out.events.push(event);
                    }
                }
                Ok(None) => {}
                Err(event) => out.events.push(event),
            }
        }
        out
    }

    /// A spend of a hinted funding output: opens the record's kit if the spend is an update.
    fn open(
        &mut self,
        id: Id,
        funding: OutPoint,
        tx: &Transaction,
        input: &bitcoin::TxIn,
        height: u32,
        events: &mut Vec<TowerEvent>,
    ) -> bool {
        let Some(record) = self.records.get_mut(&id) else {
            return false;
        };
        if record.breach.is_some() || record.closed {
            return false;
        }
        let Some(state) = update_state(tx, input) else {
            record.closed = true;
            events.push(TowerEvent::ClosedCooperatively { hint: id.1 });
            return true;
        };
        let leaf = input.witness.nth(2).map(bitcoin::Script::from_bytes);
        let Some(keys) = leaf.and_then(leaf_keys) else {
            return false;
        };
        let key = sealing_key(&keys, &funding);
        let kit = match Kit::open(&key, record.state, &record.kit) {
            Ok(kit) if kit.funding_outpoint == funding => kit,
            _ => {
                events.push(TowerEvent::NotOpened { hint: id.1 });
                return false;
            }
        };
        let outpoint = OutPoint {
            txid: tx.compute_txid(),
            vout: 0,
        };
        events.push(TowerEvent::Opened {
            hint: id.1,
            state,
            latest: record.state,
        });
        record.breach = Some(Breach {
            key,
            kit,
            on_chain: UpdateOnChain {
                state,
                outpoint,
                confirmed_at: height,
            },
            settled: None,
        });
        self.watching.entry(outpoint).or_default().push(id);
        true
    }

    /// A spend of the update output on chain: a newer update, or the settlement.
    fn on_spend(
        &mut self,
        id: Id,
        tx: &Transaction,
        input: &bitcoin::TxIn,
        height: u32,
        events: &mut Vec<TowerEvent>,
    ) -> bool {
        let Some(b) = self.records.get_mut(&id).and_then(|r| r.breach.as_mut()) else {
            return false;
        };
        match update_state(tx, input) {
            Some(state) => {
                let outpoint = OutPoint {
                    txid: tx.compute_txid(),
                    vout: 0,
                };
                b.on_chain = UpdateOnChain {
                    state,
                    outpoint,
                    confirmed_at: height,
                };
                self.watching.entry(outpoint).or_default().push(id);
            }
            None => {
                b.settled = Some(tx.compute_txid());
                events.push(TowerEvent::Settled {
                    hint: id.1,
                    state: b.on_chain.state,
                });
            }
        }
        true
    }

    /// What to publish for an open breach at `height`: the kit's update against an older one
    /// on chain, or its settlement once due.
    fn publish(
        &self,
        id: &Id,
        b: &Breach,
        height: u32,
    ) -> Result<Option<(Transaction, Option<TowerEvent>)>, TowerEvent> {
        let kit = &b.kit;
        let latest = kit.body.number;
        let on = &b.on_chain;
        let built = ChannelTxs::new(&kit.params);
        if on.state < latest {
            let unanswerable = TowerEvent::Unanswerable {
                hint: id.1,
                stale: on.state,
            };
            let sealed = self
                .leaves
                .get(id)
                .and_then(|l| l.get(usize::try_from(on.state).ok()?))
                .ok_or(unanswerable.clone())?;
            let leaf = open_leaf(&b.key, on.state, sealed).ok_or(unanswerable.clone())?;
            let spent = txs::Spent::Update {
                outpoint: on.outpoint,
                state: u32::try_from(on.state).map_err(|_| unanswerable.clone())?,
                settlement_leaf_hash: leaf,
            };
            let tx = txs::signed_update(&built, &kit.body, &kit.sig_a, &kit.sig_s, &spent)
                .map_err(|_| unanswerable)?;
            return Ok(Some((
                tx,
                Some(TowerEvent::Answered {
                    hint: id.1,
                    stale: on.state,
                    latest,
                }),
            )));
        }
        let due = on.confirmed_at + u32::from(kit.params.shared_delay);
        if on.state == latest && height + 1 >= due {
            if let Ok(tx) = txs::bound_settlement(&built, &kit.body, on.outpoint) {
                return Ok(Some((
                    tx,
                    Some(TowerEvent::Settling {
                        hint: id.1,
                        state: latest,
                    }),
                )));
            }
        }
        Ok(None)
    }
}

/// The state number of `tx` if its `input` spends through an update leaf (four witness
/// elements, a state locktime).
fn update_state(tx: &Transaction, input: &bitcoin::TxIn) -> Option<u64> {
    let locktime = tx.lock_time.to_consensus_u32();
    (locktime >= STATE_LOCKTIME_BASE && input.witness.len() == 4)
        .then(|| u64::from(locktime - STATE_LOCKTIME_BASE))
}
