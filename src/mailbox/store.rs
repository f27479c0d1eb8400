//! SQLite message store with group commit.
//!
//! One writer thread owns the write connection. Posts, deletes and sweeps queue to it; it
//! takes everything queued (up to a batch limit), applies it in one transaction, commits
//! (WAL, `synchronous=FULL`, so the commit is on disk when `COMMIT` returns) and only then
//! answers each request. Under load many posts share one fsync, which is what lets durable
//! posts outrun one-transaction-per-insert. Reads use a small pool of separate connections,
//! which WAL lets run beside the writer.
//!
//! Each row keeps the SHA256 of its envelope; reads recheck it, so a torn or corrupted row
//! is never served.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bitcoin::secp256k1::XOnlyPublicKey;
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::envelope::EnvelopeId;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The data directory or database file could not be created or made private.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The group transaction this operation belonged to failed to begin or commit.
    #[error("batch transaction failed: {0}")]
    Batch(Arc<rusqlite::Error>),
    /// The writer has stopped (shutdown in progress or a crash of the writer thread).
    #[error("store is closed")]
    Closed,
    /// The writer's queue is full (the disk is slower than the posts): try again shortly.
    #[error("the store's write queue is full")]
    Busy,
}

/// Store settings.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Database file.
    pub path: PathBuf,
    /// Maximum live messages per mailbox.
    pub max_messages_per_mailbox: u32,
    /// Maximum operations per group-commit transaction.
    pub max_batch: usize,
    /// Number of read connections.
    pub readers: usize,
    /// Most operations waiting for the writer; beyond it a write is refused at once
    /// ([`StoreError::Busy`]) instead of queueing without bound.
    pub max_queue: usize,
}

impl StoreConfig {
    /// Defaults for a database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreConfig {
            path: path.into(),
            max_messages_per_mailbox: 1000,
            max_batch: 512,
            readers: 4,
            max_queue: 4096,
        }
    }
}

/// What happened to a post.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostOutcome {
    /// Newly stored and durable.
    Stored {
        /// Storage time.
        received_at: u64,
        /// Expiry.
        expires_at: u64,
    },
    /// Already stored with identical content (nothing written).
    Duplicate {
        /// Time of the first store.
        received_at: u64,
        /// Expiry of the stored copy.
        expires_at: u64,
    },
    /// The id is taken by different content.
    Conflict,
    /// The mailbox already holds `limit` live messages.
    OverQuota {
        /// The per-mailbox limit.
        limit: u32,
    },
}

/// A message as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// Envelope id.
    pub id: EnvelopeId,
    /// Storage time.
    pub received_at: u64,
    /// Expiry.
    pub expires_at: u64,
    /// Outer envelope bytes.
    pub envelope: Vec<u8>,
}

/// A post handed to the writer.
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// Mailbox.
    pub recipient: XOnlyPublicKey,
    /// Envelope id.
    pub id: EnvelopeId,
    /// Outer envelope bytes.
    pub envelope: Vec<u8>,
    /// Expiry (already clamped by the caller).
    pub expires_at: u64,
    /// Current time.
    pub now: u64,
}

enum WriteOp {
    Insert(NewMessage, oneshot::Sender<Result<PostOutcome, StoreError>>),
    Delete(
        XOnlyPublicKey,
        Vec<EnvelopeId>,
        oneshot::Sender<Result<u64, StoreError>>,
    ),
    Sweep(u64, oneshot::Sender<Result<u64, StoreError>>),
    SetWebhook(
        XOnlyPublicKey,
        Option<String>,
        oneshot::Sender<Result<u64, StoreError>>,
    ),
}

/// Handle to the store; cheap to share behind an `Arc`.
pub struct Store {
    writer: mpsc::Sender<WriteOp>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: AtomicUsize,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
    max_messages: u32,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    recipient BLOB NOT NULL,
    id BLOB NOT NULL,
    digest BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    envelope BLOB NOT NULL,
    UNIQUE (recipient, id)
);
CREATE INDEX IF NOT EXISTS messages_by_mailbox_expiry ON messages (recipient, expires_at);
CREATE INDEX IF NOT EXISTS messages_by_expiry ON messages (expires_at);
CREATE TABLE IF NOT EXISTS webhooks (
    recipient BLOB PRIMARY KEY,
    url TEXT NOT NULL
);
";

/// Creates `dir` if missing and makes it 0700.
fn private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt as _;
    let io = |source| StoreError::Io {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

/// Creates the database file 0600 before SQLite opens it (SQLite gives its `-wal` and
/// `-shm` files the database file's mode), and brings existing files to 0600.
fn private_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let io = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = PathBuf::from(name);
        if file.exists() {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
    }
    Ok(())
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the database and starts the writer thread.
    pub fn open(config: StoreConfig) -> Result<Store, StoreError> {
        if let Some(dir) = config.path.parent() {
            if !dir.as_os_str().is_empty() {
                private_dir(dir)?;
            }
        }
        private_file(&config.path)?;
        let conn = open_connection(&config.path)?;
        conn.execute_batch(SCHEMA)?;
        // Checkpoints run on their own thread (below), so a commit never waits for one.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpoint_conn = open_connection(&config.path)?;
        let (stop_checkpoints, stop_rx) = std::sync::mpsc::channel::<()>();
        let checkpointer = std::thread::Builder::new()
            .name("mailbox-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoint_conn, stop_rx))
            .map_err(|source| StoreError::Io {
                path: config.path.clone(),
                source,
            })?;
        let mut readers = Vec::new();
        for _ in 0..config.readers.max(1) {
            readers.push(Mutex::new(open_connection(&config.path)?));
        }
        let (tx, rx) = mpsc::channel(config.max_queue.max(1));
        let max_messages = config.max_messages_per_mailbox;
        let max_batch = config.max_batch.max(1);
        let thread = std::thread::Builder::new()
            .name("mailbox-writer".into())
            .spawn(move || writer_loop(conn, rx, max_messages, max_batch))
            .map_err(|source| StoreError::Io {
                path: config.path.clone(),
                source,
            })?;
        Ok(Store {
            writer: tx,
            readers: Arc::new(readers),
            next_reader: AtomicUsize::new(0),
            thread: Mutex::new(Some(thread)),
            checkpointer: Mutex::new(Some((stop_checkpoints, checkpointer))),
            max_messages,
        })
    }

    /// The per-mailbox limit in force.
    pub fn max_messages_per_mailbox(&self) -> u32 {
        self.max_messages
    }

    async fn write<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> WriteOp,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writer.try_send(make(tx)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Busy,
            mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Stores a message; returns after the transaction holding it has committed.
    pub async fn insert(&self, message: NewMessage) -> Result<PostOutcome, StoreError> {
        self.write(|tx| WriteOp::Insert(message, tx)).await
    }

    /// Deletes the listed messages of a mailbox; returns how many existed.
    pub async fn delete(
        &self,
        recipient: XOnlyPublicKey,
        ids: Vec<EnvelopeId>,
    ) -> Result<u64, StoreError> {
        self.write(|tx| WriteOp::Delete(recipient, ids, tx)).await
    }

    /// Deletes every message expired at `now`; returns how many.
    pub async fn sweep(&self, now: u64) -> Result<u64, StoreError> {
        self.write(|tx| WriteOp::Sweep(now, tx)).await
    }

    /// Sets or clears a mailbox's webhook.
    pub async fn set_webhook(
        &self,
        recipient: XOnlyPublicKey,
        url: Option<String>,
    ) -> Result<(), StoreError> {
        self.write(|tx| WriteOp::SetWebhook(recipient, url, tx))
            .await
            .map(|_| ())
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        let index = self.next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
        tokio::task::spawn_blocking(move || {
            let conn = readers[index].lock().unwrap_or_else(|e| e.into_inner());
            f(&conn)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Live messages of a mailbox in arrival order, at most `limit`.
    pub async fn fetch(
        &self,
        recipient: XOnlyPublicKey,
        limit: u32,
        now: u64,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, received_at, expires_at, envelope, digest FROM messages
                 WHERE recipient = ?1 AND expires_at > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![&recipient.serialize()[..], now as i64, limit as i64],
                |row| {
                    Ok((
                        row.get::<_, Vec<u8>>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, Vec<u8>>(3)?,
                        row.get::<_, Vec<u8>>(4)?,
                    ))
                },
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (id, received_at, expires_at, envelope, digest) = row?;
                let Ok(id) = <[u8; 16]>::try_from(id.as_slice()) else {
                    tracing::error!("skipping row with a malformed id");
                    continue;
                };
                if Sha256::digest(&envelope).as_slice() != digest.as_slice() {
                    tracing::error!(id = %hex::encode(id), "skipping row whose digest does not match");
                    continue;
                }
                out.push(StoredMessage {
                    id: EnvelopeId(id),
                    received_at: received_at as u64,
                    expires_at: expires_at as u64,
                    envelope,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Number of live messages in a mailbox.
    pub async fn count(&self, recipient: XOnlyPublicKey, now: u64) -> Result<u64, StoreError> {
        self.read(move |conn| {
            Ok(conn.query_row(
                "SELECT COUNT(*) FROM messages WHERE recipient = ?1 AND expires_at > ?2",
                params![&recipient.serialize()[..], now as i64],
                |r| r.get::<_, i64>(0),
            )? as u64)
        })
        .await
    }

    /// Number of rows, live or expired-but-not-swept, in the whole store.
    pub async fn total_rows(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            Ok(conn.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get::<_, i64>(0))? as u64)
        })
        .await
    }

    /// Every registered webhook.
    pub async fn webhooks(&self) -> Result<Vec<(XOnlyPublicKey, String)>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare("SELECT recipient, url FROM webhooks")?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (key, url) = row?;
                if let Ok(key) = XOnlyPublicKey::from_slice(&key) {
                    out.push((key, url));
                }
            }
            Ok(out)
        })
        .await
    }

    /// The webhook registered for a mailbox.
    pub async fn webhook(&self, recipient: XOnlyPublicKey) -> Result<Option<String>, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT url FROM webhooks WHERE recipient = ?1",
                    params![&recipient.serialize()[..]],
                    |r| r.get::<_, String>(0),
                )
                .optional()?)
        })
        .await
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the channel ends the writer loop after the queued batch.
        let (dead, _) = mpsc::channel(1);
        let _ = std::mem::replace(&mut self.writer, dead);
        if let Some(handle) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
        let checkpointer = self
            .checkpointer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((stop, handle)) = checkpointer {
            drop(stop);
            let _ = handle.join();
        }
    }
}

/// Copies the WAL back into the database every 200 ms without blocking the writer
/// (`PASSIVE`), and once more, fully, at close.
fn checkpoint_loop(conn: Connection, stop: std::sync::mpsc::Receiver<()>) {
    let checkpoint = |mode: &str| {
        if let Err(e) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
            tracing::warn!(error = %e, "checkpoint failed");
        }
    };
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
        stop.recv_timeout(std::time::Duration::from_millis(200))
    {
        checkpoint("PASSIVE");
    }
    checkpoint("TRUNCATE");
}

fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<WriteOp>,
    max_messages: u32,
    max_batch: usize,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        apply_batch(&mut conn, batch, max_messages);
    }
    tracing::debug!("mailbox writer stopped");
}

enum Reply {
    Insert(
        oneshot::Sender<Result<PostOutcome, StoreError>>,
        Result<PostOutcome, StoreError>,
    ),
    Count(
        oneshot::Sender<Result<u64, StoreError>>,
        Result<u64, StoreError>,
    ),
}

fn apply_batch(conn: &mut Connection, batch: Vec<WriteOp>, max_messages: u32) {
    let size = batch.len();
    // IMMEDIATE: the write lock is taken (waiting out the busy timeout) before the first
    // read, so a batch never fails on upgrading a stale read snapshot to a write.
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!(error = %e, "cannot begin transaction");
            let e = Arc::new(e);
            for op in batch {
                fail(op, StoreError::Batch(e.clone()));
            }
            return;
        }
    };
    let mut replies = Vec::with_capacity(size);
    for op in batch {
        match op {
            WriteOp::Insert(msg, reply) => {
                let result = insert_one(&tx, &msg, max_messages);
                replies.push(Reply::Insert(reply, result));
            }
            WriteOp::Delete(recipient, ids, reply) => {
                let result = delete_ids(&tx, &recipient, &ids);
                replies.push(Reply::Count(reply, result));
            }
            WriteOp::Sweep(now, reply) => {
                let result = tx
                    .execute(
                        "DELETE FROM messages WHERE expires_at <= ?1",
                        params![now as i64],
                    )
                    .map(|n| n as u64)
                    .map_err(StoreError::from);
                replies.push(Reply::Count(reply, result));
            }
            WriteOp::SetWebhook(recipient, url, reply) => {
                let key = recipient.serialize();
                let result = match url {
                    Some(url) => tx.execute(
                        "INSERT INTO webhooks (recipient, url) VALUES (?1, ?2)
                         ON CONFLICT (recipient) DO UPDATE SET url = excluded.url",
                        params![&key[..], url],
                    ),
                    None => tx.execute(
                        "DELETE FROM webhooks WHERE recipient = ?1",
                        params![&key[..]],
                    ),
                }
                .map(|n| n as u64)
                .map_err(StoreError::from);
                replies.push(Reply::Count(reply, result));
            }
        }
    }
    match tx.commit() {
        Ok(()) => {
            tracing::trace!(size, "batch committed");
            for reply in replies {
                match reply {
                    Reply::Insert(tx, r) => {
                        let _ = tx.send(r);
                    }
                    Reply::Count(tx, r) => {
                        let _ = tx.send(r);
                    }
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, size, "batch commit failed");
            let e = Arc::new(e);
            for reply in replies {
                let err = StoreError::Batch(e.clone());
                match reply {
                    Reply::Insert(tx, _) => {
                        let _ = tx.send(Err(err));
                    }
                    Reply::Count(tx, _) => {
                        let _ = tx.send(Err(err));
                    }
                }
            }
        }
    }
}

fn fail(op: WriteOp, err: StoreError) {
    match op {
        WriteOp::Insert(_, r) => {
            let _ = r.send(Err(err));
        }
        WriteOp::Delete(_, _, r) | WriteOp::Sweep(_, r) | WriteOp::SetWebhook(_, _, r) => {
            let _ = r.send(Err(err));
        }
    }
}

fn insert_one(
    tx: &rusqlite::Transaction<'_>,
    msg: &NewMessage,
    max_messages: u32,
) -> Result<PostOutcome, StoreError> {
    let key = msg.recipient.serialize();
    let digest: [u8; 32] = Sha256::digest(&msg.envelope).into();
    let existing = tx
        .prepare_cached(
            "SELECT digest, received_at, expires_at FROM messages WHERE recipient = ?1 AND id = ?2",
        )?
        .query_row(params![&key[..], &msg.id.0[..]], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .optional()?;
    if let Some((old_digest, received_at, expires_at)) = existing {
        if (expires_at as u64) > msg.now {
            return Ok(if old_digest == digest {
                PostOutcome::Duplicate {
                    received_at: received_at as u64,
                    expires_at: expires_at as u64,
                }
            } else {
                PostOutcome::Conflict
            });
        }
        // The old copy has expired but not been swept: the id is free again.
        tx.prepare_cached("DELETE FROM messages WHERE recipient = ?1 AND id = ?2")?
            .execute(params![&key[..], &msg.id.0[..]])?;
    }
    let live: i64 = tx
        .prepare_cached("SELECT COUNT(*) FROM messages WHERE recipient = ?1 AND expires_at > ?2")?
        .query_row(params![&key[..], msg.now as i64], |r| r.get(0))?;
    if live >= max_messages as i64 {
        return Ok(PostOutcome::OverQuota {
            limit: max_messages,
        });
    }
    tx.prepare_cached(
        "INSERT INTO messages (recipient, id, digest, received_at, expires_at, envelope)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        &key[..],
        &msg.id.0[..],
        &digest[..],
        msg.now as i64,
        msg.expires_at as i64,
        &msg.envelope
    ])?;
    Ok(PostOutcome::Stored {
        received_at: msg.now,
        expires_at: msg.expires_at,
    })
}

fn delete_ids(
    tx: &rusqlite::Transaction<'_>,
    recipient: &XOnlyPublicKey,
    ids: &[EnvelopeId],
) -> Result<u64, StoreError> {
    let key = recipient.serialize();
    let mut stmt = tx.prepare_cached("DELETE FROM messages WHERE recipient = ?1 AND id = ?2")?;
    let mut n = 0u64;
    for id in ids {
        n += stmt.execute(params![&key[..], &id.0[..]])? as u64;
    }
    Ok(n)
}

/// Measures this machine's durable single-insert rate: one message-sized row per
/// transaction, WAL and `synchronous=FULL`, for `count` inserts of `size` bytes into a fresh
/// database at `path`. Returns inserts per second.
pub fn single_insert_baseline(path: &Path, count: usize, size: usize) -> Result<f64, StoreError> {
    let conn = open_connection(path)?;
    conn.execute_batch(SCHEMA)?;
    let key = [2u8; 32];
    let envelope = vec![0xabu8; size];
    let digest: [u8; 32] = Sha256::digest(&envelope).into();
    let start = std::time::Instant::now();
    for i in 0..count {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        conn.execute("BEGIN", [])?;
        conn.prepare_cached(
            "INSERT INTO messages (recipient, id, digest, received_at, expires_at, envelope)
             VALUES (?1, ?2, ?3, 0, 9999999999, ?4)",
        )?
        .execute(params![&key[..], &id[..], &digest[..], &envelope])?;
        conn.execute("COMMIT", [])?;
    }
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::keys::NodeKey;

    fn msg(to: XOnlyPublicKey, id: u8, body: &[u8], now: u64, exp: u64) -> NewMessage {
        NewMessage {
            recipient: to,
            id: EnvelopeId([id; 16]),
            envelope: body.to_vec(),
            expires_at: exp,
            now,
        }
    }

    #[tokio::test]
    async fn idempotent_conflict_quota_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::new(dir.path().join("m.sqlite"));
        config.max_messages_per_mailbox = 2;
        let store = Store::open(config).unwrap();
        let to = NodeKey::from_secret_bytes([1; 32]).unwrap().public();
        assert!(matches!(
            store.insert(msg(to, 1, b"a", 10, 100)).await.unwrap(),
            PostOutcome::Stored { .. }
        ));
        assert!(matches!(
            store.insert(msg(to, 1, b"a", 11, 100)).await.unwrap(),
            PostOutcome::Duplicate {
                received_at: 10,
                ..
            }
        ));
        assert_eq!(
            store.insert(msg(to, 1, b"b", 11, 100)).await.unwrap(),
            PostOutcome::Conflict
        );
        store.insert(msg(to, 2, b"c", 12, 50)).await.unwrap();
        assert_eq!(
            store.insert(msg(to, 3, b"d", 12, 100)).await.unwrap(),
            PostOutcome::OverQuota { limit: 2 }
        );
        assert_eq!(store.fetch(to, 10, 20).await.unwrap().len(), 2);
        assert_eq!(store.fetch(to, 10, 60).await.unwrap().len(), 1);
        assert_eq!(store.sweep(60).await.unwrap(), 1);
        assert_eq!(
            store.delete(to, vec![EnvelopeId([1; 16])]).await.unwrap(),
            1
        );
        assert_eq!(store.total_rows().await.unwrap(), 0);
    }
}
