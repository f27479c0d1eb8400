//! The node's durable store: one SQLite file per node (WAL, `synchronous=FULL`), holding the
//! channel snapshots, payment records, known peers, funding transactions and payee contacts.
//! Every `put_*` returns only once the row is durable, so a driver can send right after it.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::crypto::keys::PublicKey;
use crate::protocol::channel::Snapshot;
use crate::protocol::messages::ChannelId;
use crate::protocol::payment::PaymentId;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored row does not parse.
    #[error("stored {what} does not parse: {reason}")]
    Corrupt {
        /// The table.
        what: &'static str,
        /// The parser's message.
        reason: String,
    },
}

fn corrupt(what: &'static str) -> impl Fn(String) -> StoreError {
    move |reason| StoreError::Corrupt { what, reason }
}

/// The store.
pub struct Store {
    db: Connection,
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
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS channels (id TEXT PRIMARY KEY, peer TEXT NOT NULL, snapshot TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS payments (id TEXT PRIMARY KEY, record TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS peers (key TEXT PRIMARY KEY, addr TEXT);
             CREATE TABLE IF NOT EXISTS funding (channel TEXT PRIMARY KEY, tx TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS contacts (payee TEXT PRIMARY KEY, contact TEXT NOT NULL);",
        )?;
        Ok(Store { db })
    }

    /// Stores a channel snapshot.
    pub fn put_channel(&self, peer: &PublicKey, snapshot: &Snapshot) -> Result<(), StoreError> {
        let json = serde_json::to_string(snapshot).expect("snapshots serialise");
        self.db.execute(
            "INSERT INTO channels (id, peer, snapshot) VALUES (?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET peer = excluded.peer, snapshot = excluded.snapshot",
            params![hex::encode(snapshot.channel_id.0), peer.to_string(), json],
        )?;
        Ok(())
    }

    /// Every stored channel.
    pub fn channels(&self) -> Result<Vec<(PublicKey, Snapshot)>, StoreError> {
        let mut stmt = self.db.prepare("SELECT peer, snapshot FROM channels")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = vec![];
        for row in rows {
            let (peer, snapshot) = row?;
            let peer = parse_key(&peer).map_err(corrupt("channel peer"))?;
            let snapshot =
                serde_json::from_str(&snapshot).map_err(|e| corrupt("snapshot")(e.to_string()))?;
            out.push((peer, snapshot));
        }
        Ok(out)
    }

    /// Stores a payment record (JSON of the role's record type).
    pub fn put_payment(
        &self,
        id: &PaymentId,
        record: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT INTO payments (id, record) VALUES (?1, ?2)
             ON CONFLICT(id) DO UPDATE SET record = excluded.record",
            params![id.to_string(), record.to_string()],
        )?;
        Ok(())
    }

    /// Every stored payment record, parsed as `R`.
    pub fn payments<R: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<Vec<(PaymentId, R)>, StoreError> {
        let mut stmt = self.db.prepare("SELECT id, record FROM payments")?;
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

fn parse_key(text: &str) -> Result<PublicKey, String> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes).map_err(|e| e.to_string())?;
    PublicKey::from_xonly_bytes(bytes).map_err(|e| e.to_string())
}
