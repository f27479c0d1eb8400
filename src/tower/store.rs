//! The tower's durable store: one SQLite file (WAL, `synchronous=FULL`) with one row per
//! channel, one row per sealed leaf, and the height scanned last. [`TowerStore::save`]
//! writes everything one input changed in one transaction and returns once it is durable:
//! the driver answers an appointment or publishes a transaction only after that.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::watcher::{Record, Stored};
use super::SEALED_LEAF_LEN;
use crate::node::store::StoreError;

/// The store.
pub struct TowerStore {
    db: Connection,
}

impl core::fmt::Debug for TowerStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("TowerStore")
    }
}

fn corrupt(what: &'static str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what,
        reason: reason.to_string(),
    }
}

impl TowerStore {
    /// Opens or creates the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS records (client BLOB NOT NULL, hint BLOB NOT NULL, record TEXT NOT NULL, PRIMARY KEY (client, hint));
             CREATE TABLE IF NOT EXISTS leaves (client BLOB NOT NULL, hint BLOB NOT NULL, state INTEGER NOT NULL, sealed BLOB NOT NULL, PRIMARY KEY (client, hint, state));
             CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )?;
        Ok(TowerStore { db })
    }

    /// Writes what changed, and the scanned height if given, in one transaction.
    pub fn save(&self, stored: &[Stored], scanned: Option<u32>) -> Result<(), StoreError> {
        let tx = self.db.unchecked_transaction()?;
        for s in stored {
            let r = &s.record;
            let json = serde_json::to_string(r).map_err(|e| corrupt("record", e))?;
            tx.execute(
                "INSERT OR REPLACE INTO records (client, hint, record) VALUES (?1, ?2, ?3)",
                params![&r.client[..], &r.hint.0[..], json],
            )?;
            for (i, leaf) in s.leaves.iter().enumerate() {
                let state = s.leaves_from + i as u64;
                tx.execute(
                    "INSERT OR IGNORE INTO leaves (client, hint, state, sealed) VALUES (?1, ?2, ?3, ?4)",
                    params![
                        &r.client[..],
                        &r.hint.0[..],
                        i64::try_from(state).map_err(|e| corrupt("leaf state", e))?,
                        &leaf[..]
                    ],
                )?;
            }
        }
        if let Some(h) = scanned {
            tx.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('scanned', ?1)",
                params![h],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The height scanned last, if any.
    pub fn scanned(&self) -> Result<Option<u32>, StoreError> {
        Ok(self
            .db
            .query_row("SELECT value FROM meta WHERE name = 'scanned'", [], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Every record with its leaves, in state order.
    #[allow(clippy::type_complexity)]
    pub fn load(&self) -> Result<Vec<(Record, Vec<[u8; SEALED_LEAF_LEN]>)>, StoreError> {
        let mut out = vec![];
        let mut records = self.db.prepare("SELECT record FROM records")?;
        let rows = records.query_map([], |r| r.get::<_, String>(0))?;
        let mut leaves = self
            .db
            .prepare("SELECT sealed FROM leaves WHERE client = ?1 AND hint = ?2 ORDER BY state")?;
        for row in rows {
            let record: Record = serde_json::from_str(&row?).map_err(|e| corrupt("record", e))?;
            let sealed = leaves
                .query_map(params![&record.client[..], &record.hint.0[..]], |r| {
                    r.get::<_, Vec<u8>>(0)
                })?
                .map(|b| {
                    b.map_err(StoreError::from).and_then(|b| {
                        <[u8; SEALED_LEAF_LEN]>::try_from(b.as_slice())
                            .map_err(|e| corrupt("leaf", e))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if sealed.len() as u64 != record.leaf_count {
                return Err(corrupt(
                    "leaves",
                    format!("{} stored, {} expected", sealed.len(), record.leaf_count),
                ));
            }
            out.push((record, sealed));
        }
        Ok(out)
    }
}
