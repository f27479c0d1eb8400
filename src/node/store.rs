//! The node's durable store: one SQLite file per node (WAL, `synchronous=FULL`), holding the
//! channel snapshots, payment records, known peers, funding transactions and payee contacts.
//! Every `put_*` returns only once the row is durable, so a driver can send right after it;
//! inside [`Store::batch`] the rows of the whole batch become durable together when it returns
//! (one commit, one fsync of the write-ahead log), and a driver sends nothing that depends on
//! them before then.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::crypto::keys::PublicKey;
use crate::node::core::ChangeSet;
use crate::protocol::channel::{Snapshot, SnapshotError};
use crate::protocol::messages::ChannelId;
use crate::protocol::payment::PaymentId;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored channel snapshot cannot be read: written by a build with another snapshot
    /// format ([`SnapshotError::Version`]), or corrupt.
    #[error("stored channel snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    /// A stored row does not parse.
    #[error("stored {what} does not parse: {reason}")]
    Corrupt {
        /// The table.
        what: &'static str,
        /// The parser's message.
        reason: String,
    },
}

/// A state number as SQLite's signed integer: the cast is undone when the row is read
/// (`as u64`), so every u64 comes back as it went in.
fn state_key(state: u64) -> i64 {
    state as i64
}

fn corrupt(what: &'static str) -> impl Fn(String) -> StoreError {
    move |reason| StoreError::Corrupt { what, reason }
}

/// The store.
pub struct Store {
    db: Connection,
    /// Per channel, the state through which its settlement leaf hashes are durably stored
    /// and final: the complete state of its last committed snapshot. Leaf hashes are added
    /// only for states signed after the complete one, so a write stores the rows from here
    /// on: the one or two states an update adds, not the whole log.
    logged: RefCell<HashMap<ChannelId, u64>>,
    /// The same for the writes of the open batch, made `logged` when it commits.
    staged: RefCell<HashMap<ChannelId, u64>>,
}

impl core::fmt::Debug for Store {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens or creates the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Connection::open(path)?;
        // `asyncpay pos accept` writes a running node's inbox from another process.
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS channels (id TEXT PRIMARY KEY, peer TEXT NOT NULL, snapshot TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS payments (id TEXT PRIMARY KEY, record TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS peers (key TEXT PRIMARY KEY, addr TEXT);
             CREATE TABLE IF NOT EXISTS funding (channel TEXT PRIMARY KEY, tx TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS contacts (payee TEXT PRIMARY KEY, contact TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS reverse (id TEXT PRIMARY KEY, record TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS handed (payment TEXT PRIMARY KEY, envelope BLOB);
             CREATE TABLE IF NOT EXISTS inbox (payment TEXT PRIMARY KEY, epoch INTEGER NOT NULL, slot INTEGER NOT NULL, lsp TEXT NOT NULL, amount INTEGER NOT NULL, envelope BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS tip (one INTEGER PRIMARY KEY CHECK (one = 1), height INTEGER NOT NULL, seen_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS leaf_hashes (channel BLOB NOT NULL, state INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (channel, state)) WITHOUT ROWID;",
        )?;
        Ok(Store {
            db,
            logged: RefCell::default(),
            staged: RefCell::default(),
        })
    }

    /// Runs `f` in one transaction: every `put_*` it makes becomes durable together, with a
    /// single commit, when `f` returns `Ok`; if `f` (or the commit) fails, none of them is
    /// kept. Group commit for a driver that handles several inputs and persists all their
    /// outputs before sending any of their messages: persist-before-send holds for the batch
    /// as a whole. Batches do not nest.
    pub fn batch<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self
            .db
            .unchecked_transaction()
            .map_err(|e| E::from(StoreError::from(e)))?;
        self.staged.borrow_mut().clear();
        let value = f(self).and_then(|value| {
            tx.commit().map_err(|e| E::from(StoreError::from(e)))?;
            Ok(value)
        });
        let staged = std::mem::take(&mut *self.staged.borrow_mut());
        if value.is_ok() {
            self.logged.borrow_mut().extend(staged);
        }
        value
    }

    /// Stores a channel snapshot, with the settlement leaf hashes of the states signed since
    /// its last stored complete state (the rows an update adds; the older ones are stored
    /// and final), in one transaction.
    pub fn put_channel(&self, peer: &PublicKey, snapshot: &Snapshot) -> Result<(), StoreError> {
        if self.db.is_autocommit() {
            return self.batch(|store| store.put_channel(peer, snapshot));
        }
        let id = snapshot.channel_id;
        let from = self.logged.borrow().get(&id).copied().unwrap_or(0);
        let mut insert = self.db.prepare_cached(
            "INSERT INTO leaf_hashes (channel, state, hash) VALUES (?1, ?2, ?3)
             ON CONFLICT(channel, state) DO UPDATE SET hash = excluded.hash",
        )?;
        for (state, hash) in snapshot.settlement_leaf_hashes.range(from..) {
            insert.execute(params![&id.0[..], state_key(*state), &hash[..]])?;
        }
        let json = serde_json::to_string(snapshot).expect("snapshots serialise");
        self.db
            .prepare_cached(
                "INSERT INTO channels (id, peer, snapshot) VALUES (?1, ?2, ?3)
                 ON CONFLICT(id) DO UPDATE SET peer = excluded.peer, snapshot = excluded.snapshot",
            )?
            .execute(params![hex::encode(id.0), peer.to_string(), json])?;
        let through = snapshot.complete.as_ref().map_or(0, |c| c.body.number);
        let mut staged = self.staged.borrow_mut();
        let mark = staged.entry(id).or_insert(through);
        *mark = (*mark).max(through);
        Ok(())
    }

    /// The settlement leaf hashes stored for a channel.
    fn leaf_hashes(&self, id: &ChannelId) -> Result<BTreeMap<u64, [u8; 32]>, StoreError> {
        let mut stmt = self
            .db
            .prepare_cached("SELECT state, hash FROM leaf_hashes WHERE channel = ?1")?;
        let rows = stmt.query_map(params![&id.0[..]], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut log = BTreeMap::new();
        for row in rows {
            let (state, hash) = row?;
            let hash = <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| StoreError::Corrupt {
                what: "leaf hash",
                reason: format!("{} bytes, not 32", hash.len()),
            })?;
            log.insert(state as u64, hash);
        }
        Ok(log)
    }

    /// Every stored channel.
    pub fn channels(&self) -> Result<Vec<(PublicKey, Snapshot)>, StoreError> {
        let mut stmt = self.db.prepare("SELECT peer, snapshot FROM channels")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = vec![];
        for row in rows {
            let (peer, snapshot) = row?;
            let peer = parse_key(&peer).map_err(corrupt("channel peer"))?;
            let mut snapshot = Snapshot::from_json(&snapshot)?;
            // A version-4 row carries its log in its JSON: nothing of it is in the table
            // yet, so the next write stores all of it (mark 0).
            let through = if snapshot.settlement_leaf_hashes.is_empty() {
                snapshot.complete.as_ref().map_or(0, |c| c.body.number)
            } else {
                0
            };
            let mut log = self.leaf_hashes(&snapshot.channel_id)?;
            for (state, hash) in snapshot.settlement_leaf_hashes.iter() {
                log.entry(*state).or_insert(*hash);
            }
            snapshot.settlement_leaf_hashes = std::sync::Arc::new(log);
            self.logged
                .borrow_mut()
                .insert(snapshot.channel_id, through);
            out.push((peer, snapshot));
        }
        Ok(out)
    }

    /// Stores a payment record (JSON of the role's record type).
    pub fn put_payment(
        &self,
        id: &PaymentId,
        record: &impl serde::Serialize,
    ) -> Result<(), StoreError> {
        self.put_record(
            "INSERT INTO payments (id, record) VALUES (?1, ?2)
             ON CONFLICT(id) DO UPDATE SET record = excluded.record",
            id,
            record,
        )
    }

    /// Stores a record of the reverse variant (payee offline).
    pub fn put_reverse(
        &self,
        id: &PaymentId,
        record: &impl serde::Serialize,
    ) -> Result<(), StoreError> {
        self.put_record(
            "INSERT INTO reverse (id, record) VALUES (?1, ?2)
             ON CONFLICT(id) DO UPDATE SET record = excluded.record",
            id,
            record,
        )
    }

    fn put_record(
        &self,
        upsert: &str,
        id: &PaymentId,
        record: &impl serde::Serialize,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(record).expect("records serialise");
        self.db
            .prepare_cached(upsert)?
            .execute(params![id.to_string(), json])?;
        Ok(())
    }

    /// Writes everything one input changed in one transaction: durable together when this
    /// returns, or not at all.
    pub fn commit(&self, changes: &ChangeSet) -> Result<(), StoreError> {
        self.batch(|store| -> Result<(), StoreError> {
            for (peer, snapshot) in changes.channels.values() {
                store.put_channel(peer, snapshot)?;
            }
            for (id, record) in &changes.payments {
                store.put_payment(id, record)?;
            }
            for (id, record) in &changes.reverse {
                store.put_reverse(id, record)?;
            }
            Ok(())
        })
    }

    /// Every stored payment record, parsed as `R`.
    pub fn payments<R: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<Vec<(PaymentId, R)>, StoreError> {
        self.records("SELECT id, record FROM payments")
    }

    /// Every stored record of the reverse variant.
    pub fn reverse_payments<R: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<Vec<(PaymentId, R)>, StoreError> {
        self.records("SELECT id, record FROM reverse")
    }

    fn records<R: serde::de::DeserializeOwned>(
        &self,
        query: &str,
    ) -> Result<Vec<(PaymentId, R)>, StoreError> {
        let mut stmt = self.db.prepare(query)?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = vec![];
        for row in rows {
            let (id, record) = row?;
            let id: PaymentId = id
                .parse()
                .map_err(|e: hex::FromHexError| corrupt("payment id")(e.to_string()))?;
            let record =
                serde_json::from_str(&record).map_err(|e| corrupt("payment")(e.to_string()))?;
            out.push((id, record));
        }
        Ok(out)
    }

    /// Remembers a peer (and where to dial it, if we dial).
    pub fn put_peer(&self, key: &PublicKey, addr: Option<&str>) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT INTO peers (key, addr) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET addr = COALESCE(excluded.addr, peers.addr)",
            params![key.to_string(), addr],
        )?;
        Ok(())
    }

    /// Known peers.
    pub fn peers(&self) -> Result<Vec<(PublicKey, Option<String>)>, StoreError> {
        let mut stmt = self.db.prepare("SELECT key, addr FROM peers")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
        })?;
        let mut out = vec![];
        for row in rows {
            let (key, addr) = row?;
            out.push((parse_key(&key).map_err(corrupt("peer"))?, addr));
        }
        Ok(out)
    }

    /// Stores the funding transaction built for a channel (hex), before it is broadcast.
    pub fn put_funding(
        &self,
        channel: &ChannelId,
        tx: &bitcoin::Transaction,
    ) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT OR REPLACE INTO funding (channel, tx) VALUES (?1, ?2)",
            params![
                hex::encode(channel.0),
                bitcoin::consensus::encode::serialize_hex(tx)
            ],
        )?;
        Ok(())
    }

    /// The funding transaction built for a channel.
    pub fn funding(&self, channel: &ChannelId) -> Result<Option<bitcoin::Transaction>, StoreError> {
        let hex_tx: Option<String> = self
            .db
            .query_row(
                "SELECT tx FROM funding WHERE channel = ?1",
                params![hex::encode(channel.0)],
                |r| r.get(0),
            )
            .optional()?;
        hex_tx
            .map(|h| {
                bitcoin::consensus::encode::deserialize_hex(&h)
                    .map_err(|e| corrupt("funding")(e.to_string()))
            })
            .transpose()
    }

    /// Stores a payee's contact (JSON).
    pub fn put_contact(&self, payee: &PublicKey, contact: &str) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT OR REPLACE INTO contacts (payee, contact) VALUES (?1, ?2)",
            params![payee.to_string(), contact],
        )?;
        Ok(())
    }

    /// Marks payment `payment`'s sale letter as one handed over (read with
    /// [`Store::handed`]) instead of posted to the payee's mailbox.
    pub fn put_hand_over(&self, payment: &str) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT OR IGNORE INTO handed (payment, envelope) VALUES (?1, NULL)",
            params![payment],
        )?;
        Ok(())
    }

    /// Stores the sealed envelope of a letter to hand over.
    pub fn put_handed(&self, payment: &str, envelope: &[u8]) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT OR REPLACE INTO handed (payment, envelope) VALUES (?1, ?2)",
            params![payment, envelope],
        )?;
        Ok(())
    }

    /// `None` if payment `payment`'s letter goes to the mailbox; `Some(None)` if it is to be
    /// handed over but not sealed yet; `Some(Some(envelope))` once sealed.
    pub fn handed(&self, payment: &str) -> Result<Option<Option<Vec<u8>>>, StoreError> {
        Ok(self
            .db
            .query_row(
                "SELECT envelope FROM handed WHERE payment = ?1",
                params![payment],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Queues the sealed envelope of payment `payment`'s letter (`letter`: its receipt slot
    /// and the LSP that pays it how much), handed to this node by `asyncpay pos accept`, for
    /// the node to handle as a letter accepted at the counter; in one transaction with the
    /// checks that no other letter waits for this payment or this slot (one slot pays one
    /// payment) and that `fits` the total of the letters waiting for the same LSP.
    pub fn put_inbox(
        &mut self,
        payment: &str,
        letter: &InboxLetter,
        envelope: &[u8],
        fits: impl FnOnce(u64) -> bool,
    ) -> Result<Inboxed, StoreError> {
        let InboxLetter {
            epoch,
            slot,
            lsp,
            amount_sat,
        } = letter;
        let tx = self
            .db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let same: Option<Vec<u8>> = tx
            .query_row(
                "SELECT envelope FROM inbox WHERE payment = ?1",
                params![payment],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(waiting) = same {
            return Ok(if waiting == envelope {
                Inboxed::Already
            } else {
                Inboxed::OtherLetter
            });
        }
        let slot_taken: Option<String> = tx
            .query_row(
                "SELECT payment FROM inbox WHERE epoch = ?1 AND slot = ?2",
                params![epoch, slot],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(by) = slot_taken {
            return Ok(Inboxed::SlotTaken(by));
        }
        let waiting: i64 = tx.query_row(
            "SELECT COALESCE(SUM(amount), 0) FROM inbox WHERE lsp = ?1",
            params![lsp],
            |r| r.get(0),
        )?;
        if !fits(u64::try_from(waiting).unwrap_or(u64::MAX)) {
            return Ok(Inboxed::NoCapacity);
        }
        tx.execute(
            "INSERT INTO inbox (payment, epoch, slot, lsp, amount, envelope) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![payment, epoch, slot, lsp, i64::try_from(*amount_sat).unwrap_or(i64::MAX), envelope],
        )?;
        tx.commit()?;
        Ok(Inboxed::Added)
    }

    /// The envelopes waiting in the inbox (payment, envelope), oldest first.
    pub fn inbox(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut stmt = self
            .db
            .prepare("SELECT payment, envelope FROM inbox ORDER BY rowid")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes a handled envelope from the inbox.
    pub fn delete_inbox(&self, payment: &str) -> Result<(), StoreError> {
        self.db
            .execute("DELETE FROM inbox WHERE payment = ?1", params![payment])?;
        Ok(())
    }

    /// Records the chain's tip as the node last saw it, at unix time `seen_at`.
    pub fn put_tip(&self, height: u32, seen_at: u64) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT OR REPLACE INTO tip (one, height, seen_at) VALUES (1, ?1, ?2)",
            params![height, seen_at as i64],
        )?;
        Ok(())
    }

    /// The tip the node last saw and when (unix time), if it recorded one.
    pub fn tip(&self) -> Result<Option<(u32, u64)>, StoreError> {
        Ok(self
            .db
            .query_row("SELECT height, seen_at FROM tip WHERE one = 1", [], |r| {
                Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })
            .optional()?)
    }

    /// A payee's stored contact (JSON).
    pub fn contact(&self, payee: &PublicKey) -> Result<Option<String>, StoreError> {
        Ok(self
            .db
            .query_row(
                "SELECT contact FROM contacts WHERE payee = ?1",
                params![payee.to_string()],
                |r| r.get(0),
            )
            .optional()?)
    }
}

/// What [`Store::put_inbox`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inboxed {
    /// The letter waits in the inbox.
    Added,
    /// This very letter waited already.
    Already,
    /// Another letter for the same payment waits: this one is not kept.
    OtherLetter,
    /// Another payment's letter that waits names the same receipt slot (that payment's id).
    SlotTaken(String),
    /// The letters waiting for the same LSP and this one would be more than the LSP can pay.
    NoCapacity,
}

/// What the inbox keeps of a letter beside its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxLetter {
    /// The receipt slot's card epoch.
    pub epoch: u32,
    /// The receipt slot.
    pub slot: u32,
    /// The LSP that pays (hex node key).
    pub lsp: String,
    /// What it pays.
    pub amount_sat: u64,
}

fn parse_key(text: &str) -> Result<PublicKey, String> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes).map_err(|e| e.to_string())?;
    PublicKey::from_xonly_bytes(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total_changes(store: &Store) -> i64 {
        store
            .db
            .query_row("SELECT total_changes()", [], |r| r.get(0))
            .expect("a count")
    }

    /// Writes `snapshot` in a batch that then fails.
    fn put_in_a_failing_batch(store: &Store, peer: &PublicKey, snapshot: &Snapshot) {
        let failed: Result<(), StoreError> = store.batch(|s| {
            s.put_channel(peer, snapshot)?;
            Err(StoreError::Corrupt {
                what: "test",
                reason: "the batch fails".into(),
            })
        });
        assert!(failed.is_err());
    }

    /// S's snapshots of its channel with B after each of `payments` payments (B online):
    /// every payment adds a PTLC state and its fulfilment.
    fn s_b_snapshots(payments: usize) -> (PublicKey, Vec<Snapshot>) {
        use crate::testing::{Network, A, B, S};
        let mut sim = Network::new();
        sim.open(A, S, 1_000_000).expect("A–S opens");
        sim.open(S, B, 400_000).expect("S–B opens");
        let peer = sim.key(B);
        let mut snaps = vec![sim.nodes[S].channel_with(peer).expect("S–B").clone()];
        for _ in 0..payments {
            sim.pay(10_000).expect("A pays");
            sim.fetch_letters(B).expect("B sells");
            snaps.push(sim.nodes[S].channel_with(peer).expect("S–B").clone());
        }
        (peer, snaps)
    }

    /// The settlement leaf hashes are stored beside the snapshot, a write storing only the
    /// states signed since the last stored complete state, and a channel read back holds
    /// every hash it was written with, also after a batch that failed.
    #[test]
    fn leaf_hashes_are_stored_append_only_and_read_back_whole() {
        let (peer, snaps) = s_b_snapshots(4);
        let last = snaps.last().expect("snapshots");
        let log_len = last.settlement_leaf_hashes.len();
        assert!(log_len >= 8, "each payment signs states: {log_len}");
        assert!(
            !serde_json::to_string(last)
                .expect("json")
                .contains(&hex::encode(
                    last.settlement_leaf_hashes.values().next().expect("a hash")
                )),
            "the log is not in the snapshot's JSON"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("node.db");
        {
            let store = Store::open(&path).expect("open");
            for snap in &snaps {
                let before = total_changes(&store);
                store.put_channel(&peer, snap).expect("stored");
                let rows = total_changes(&store) - before;
                // The snapshot row and the hashes from the stored complete state on: never
                // the whole log.
                assert!(rows <= 4, "{rows} rows for one write");
            }
            // A batch that fails stores none of its rows and moves nothing on.
            put_in_a_failing_batch(&store, &peer, &snaps[0]);
        }
        let store = Store::open(&path).expect("reopened");
        let read = store.channels().expect("read");
        assert_eq!(read.len(), 1);
        assert_eq!(
            read[0].1, *last,
            "the whole snapshot, log included, comes back"
        );
        // After a reload, writing the same channel again adds no old state.
        let before = total_changes(&store);
        store.put_channel(&peer, last).expect("stored");
        assert!(total_changes(&store) - before <= 3);
    }

    /// A row written by snapshot version 4 (log inside the JSON) reads back whole, and the
    /// next write moves its log into the table.
    #[test]
    fn a_version_4_row_moves_its_log_into_the_table() {
        use crate::protocol::channel::LOG_IN_JSON_VERSION;
        let (peer, snaps) = s_b_snapshots(2);
        let last = snaps.last().expect("snapshots");
        let mut old: serde_json::Value = serde_json::to_value(last).expect("json");
        old["version"] = LOG_IN_JSON_VERSION.into();
        let mut log = String::new();
        for (state, hash) in last.settlement_leaf_hashes.iter() {
            log.push_str(&hex::encode(state.to_be_bytes()));
            log.push_str(&hex::encode(hash));
        }
        old["settlement_leaf_hashes"] = log.into();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("node.db");
        {
            let store = Store::open(&path).expect("open");
            store
                .db
                .execute(
                    "INSERT INTO channels (id, peer, snapshot) VALUES (?1, ?2, ?3)",
                    params![
                        hex::encode(last.channel_id.0),
                        peer.to_string(),
                        old.to_string()
                    ],
                )
                .expect("an old row");
            let read = store.channels().expect("read");
            assert_eq!(read[0].1, *last);
            store.put_channel(&peer, &read[0].1).expect("rewritten");
        }
        let store = Store::open(&path).expect("reopened");
        let stored: i64 = store
            .db
            .query_row("SELECT COUNT(*) FROM leaf_hashes", [], |r| r.get(0))
            .expect("a count");
        assert_eq!(stored as usize, last.settlement_leaf_hashes.len());
        assert_eq!(store.channels().expect("read")[0].1, *last);
    }

    /// Writes skipped in a failed batch are written by the next one: the mark of what is
    /// stored moves only when a batch commits.
    #[test]
    fn leaf_hashes_of_a_failed_batch_are_written_by_the_next() {
        let (peer, snaps) = s_b_snapshots(3);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("node.db");
        {
            let store = Store::open(&path).expect("open");
            store.put_channel(&peer, &snaps[0]).expect("stored");
            put_in_a_failing_batch(&store, &peer, &snaps[2]);
            store.put_channel(&peer, &snaps[3]).expect("stored");
        }
        let read = Store::open(&path)
            .expect("reopened")
            .channels()
            .expect("read");
        assert_eq!(read[0].1, snaps[3]);
    }

    fn record(n: u64) -> serde_json::Value {
        serde_json::json!({ "status": { "status": "offered" }, "n": n })
    }

    #[test]
    fn a_batch_keeps_all_its_rows_or_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("node.db");
        let store = Store::open(&path).expect("open");
        let (one, two, three) = (PaymentId([1; 32]), PaymentId([2; 32]), PaymentId([3; 32]));
        store
            .batch(|s| {
                s.put_payment(&one, &record(1))?;
                s.put_payment(&two, &record(2))
            })
            .expect("batch commits");
        let failed: Result<(), StoreError> = store.batch(|s| {
            s.put_payment(&three, &record(3))?;
            Err(StoreError::Corrupt {
                what: "test",
                reason: "abandon the batch".into(),
            })
        });
        assert!(failed.is_err());
        drop(store);
        let reopened = Store::open(&path).expect("reopen");
        let mut ids: Vec<PaymentId> = reopened
            .payments::<serde_json::Value>()
            .expect("read")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        ids.sort_by_key(|id| id.0);
        assert_eq!(ids, vec![one, two]);
    }

    /// A channel stored by a build with another snapshot format is refused by name, not
    /// misread and not reported as a parse error.
    #[test]
    fn a_stored_snapshot_of_another_version_is_refused_by_name() {
        use crate::crypto::keys::SecretKey;
        use crate::crypto::nonce::NonceSeed;
        use crate::protocol::channel::{Channel, ChannelSecrets, OpenTerms, SNAPSHOT_VERSION};

        let key = SecretKey::from_bytes([1; 32]).expect("a valid key");
        let peer = key.public_key();
        let terms = OpenTerms {
            capacity_sat: 100_000,
            push_sat: 0,
            shared_delay: 6,
            update_window: 1_000,
            payout_key: peer,
        };
        let secrets = ChannelSecrets {
            key,
            nonce_seed: NonceSeed::from_bytes([2; 32]),
        };
        let (channel, _) =
            Channel::open(secrets, ChannelId([9; 32]), terms, 100).expect("the channel opens");
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("node.db")).expect("open");
        store
            .put_channel(&peer, channel.snapshot())
            .expect("stored");
        assert_eq!(store.channels().expect("read").len(), 1);
        let rewritten = store
            .db
            .execute(
                "UPDATE channels SET snapshot = replace(snapshot, ?1, '\"version\":2')",
                params![format!("\"version\":{SNAPSHOT_VERSION}")],
            )
            .expect("rewritten");
        assert_eq!(rewritten, 1);
        match store.channels() {
            Err(StoreError::Snapshot(SnapshotError::Version {
                found: 2,
                supported: SNAPSHOT_VERSION,
            })) => {}
            other => panic!("an old snapshot gave {other:?}"),
        }
    }
}
