//! Serving many peers on one listener without letting any of them hold the door.
//!
//! [`Listener::serve`] accepts TCP connections in one task and runs each handshake in a task
//! of its own, so a silent or slow socket delays nobody else. What one source can take is
//! bounded: handshakes in flight per source IP address (a connection beyond the cap is
//! closed at once, before a byte is read) and in total (at the cap, the oldest handshake in
//! flight is dropped to make room: an honest handshake takes milliseconds, so the oldest is
//! almost always a silent socket, and a flood of them cannot keep a peer out), the wait for
//! the first handshake message, and, once a peer has proven its key, how many connections
//! that key may hold (a newer connection supersedes the oldest).
//!
//! ```
//! use std::sync::Arc;
//! use asyncpay::crypto::keys::SecretKey;
//! use asyncpay::net::{connect, Admission, Allow, Listener};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), asyncpay::net::NetError> {
//! let lsp = Arc::new(SecretKey::from_bytes([1u8; 32]).expect("valid key"));
//! let payer = SecretKey::from_bytes([2u8; 32]).expect("valid key");
//! let lsp_key = lsp.public_key();
//! let listener = Listener::bind("127.0.0.1:0", lsp, Allow::keys([payer.public_key()])).await?;
//! let addr = listener.local_addr()?;
//! let mut admitted = listener.serve(Admission::default());
//!
//! let _ours = connect(addr, &payer, lsp_key).await?;
//! let peer = admitted.next().await.expect("serving");
//! assert_eq!(peer.connection.peer(), payer.public_key());
//! # Ok(())
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::crypto::keys::PublicKey;
use crate::net::{Connection, Listener};

/// Limits a serving listener applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Handshakes in flight at once, from everyone; at the cap the oldest is dropped to
    /// make room for a new one.
    pub max_handshakes: usize,
    /// Handshakes in flight at once from one source IP address.
    pub max_handshakes_per_ip: usize,
    /// How long an accepted socket may stay silent before its first handshake message (a
    /// connecting node sends it at once).
    pub first_message_timeout: Duration,
    /// Connections one authenticated node key may hold; a newer one supersedes the oldest.
    pub max_connections_per_peer: usize,
}

impl Default for Admission {
    /// 64 handshakes in flight, 8 per source address, 2 s for the first message, 2
    /// connections per node key.
    fn default() -> Self {
        Self {
            max_handshakes: 64,
            max_handshakes_per_ip: 8,
            first_message_timeout: Duration::from_secs(2),
            max_connections_per_peer: 2,
        }
    }
}

/// An authenticated connection handed out by [`Listener::serve`].
#[derive(Debug)]
pub struct Admitted {
    /// The connection.
    pub connection: Connection,
    /// The peer's TCP address (not an identity).
    pub remote_addr: SocketAddr,
    /// Fires when a newer connection of the same key takes this one's place; hold it as
    /// long as the connection lives (dropping it gives the place up).
    pub superseded: Superseded,
}

/// The place of one connection among its key's connections (see [`Admitted::superseded`]).
#[derive(Debug)]
pub struct Superseded {
    signal: oneshot::Receiver<()>,
    _place: Place,
}

impl Superseded {
    /// Resolves once a newer connection of the same key has taken this one's place.
    pub async fn wait(&mut self) {
        let _ = (&mut self.signal).await;
    }
}

/// The connections being served, as they are admitted.
#[derive(Debug)]
pub struct Admissions {
    rx: mpsc::Receiver<Admitted>,
    task: tokio::task::JoinHandle<()>,
}

impl Admissions {
    /// The next admitted connection; `None` only if the accept task ended.
    pub async fn next(&mut self) -> Option<Admitted> {
        self.rx.recv().await
    }
}

impl Drop for Admissions {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// Serves the listener under `admission`'s limits: accepts in a task of its own, runs
    /// every handshake in its own task, and hands out the connections that pass. Failed
    /// and refused handshakes are logged (tracing, `debug`) and dropped.
    pub fn serve(self, admission: Admission) -> Admissions {
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(accept_loop(self, admission, tx));
        Admissions { rx, task }
    }
}

async fn accept_loop(listener: Listener, admission: Admission, tx: mpsc::Sender<Admitted>) {
    // The total is enforced by `pending` (oldest evicted), the per-address cap by `caps`.
    let caps = ConnectionCaps::new(Semaphore::MAX_PERMITS, admission.max_handshakes_per_ip);
    let pending = Pending::default();
    let peers = PeerTable::new(admission.max_connections_per_peer.max(1));
    loop {
        let incoming = match listener.accept_incoming().await {
            Ok(incoming) => incoming,
            Err(e) => {
                // Out of descriptors or a transient accept error: back off a little rather
                // than spin, then keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if tx.is_closed() {
            return;
        }
        let remote = incoming.remote_addr();
        let Some(slot) = caps.admit(remote.ip()) else {
            tracing::debug!(%remote, "handshake cap of this address reached: connection closed");
            continue;
        };
        // At the total cap the oldest handshake in flight makes room: an honest one takes
        // milliseconds, so the oldest is almost always a socket that says nothing.
        let evicted = pending.make_room(admission.max_handshakes.max(1));
        if evicted > 0 {
            tracing::debug!(%remote, evicted, "handshake cap reached: oldest handshake dropped");
        }
        let id = pending.reserve();
        let tx = tx.clone();
        let peers = peers.clone();
        let guard = pending.guard(id);
        let task = tokio::spawn(async move {
            let result = incoming
                .handshake_within(Some(admission.first_message_timeout))
                .await;
            drop(guard);
            drop(slot);
            match result {
                Ok(connection) => {
                    let superseded = peers.admit(connection.peer());
                    let _ = tx
                        .send(Admitted {
                            connection,
                            remote_addr: remote,
                            superseded,
                        })
                        .await;
                }
                Err(e) => tracing::debug!(%remote, error = %e, "handshake failed"),
            }
        });
        pending.attach(id, task.abort_handle());
    }
}

/// The last id given out, and the handshakes in flight, oldest first, each with the handle
/// that cancels it (none until its task is attached).
type PendingTable = (u64, VecDeque<(u64, Option<tokio::task::AbortHandle>)>);

/// The handshakes in flight.
#[derive(Default, Clone)]
struct Pending {
    inner: Arc<Mutex<PendingTable>>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, PendingTable> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cancels the oldest handshakes until fewer than `max` are in flight; how many.
    fn make_room(&self, max: usize) -> usize {
        let mut guard = self.lock();
        let mut evicted = 0;
        while guard.1.len() >= max {
            if let Some((_, Some(handle))) = guard.1.pop_front() {
                handle.abort();
            }
            evicted += 1;
        }
        evicted
    }

    /// A new entry, not yet attached to its task.
    fn reserve(&self) -> u64 {
        let mut guard = self.lock();
        guard.0 += 1;
        let id = guard.0;
        guard.1.push_back((id, None));
        id
    }

    /// Attaches the task's handle, unless the handshake already ended.
    fn attach(&self, id: u64, handle: tokio::task::AbortHandle) {
        let mut guard = self.lock();
        if let Some(entry) = guard.1.iter_mut().find(|(i, _)| *i == id) {
            entry.1 = Some(handle);
        }
    }

    /// Removes entry `id` when dropped (the handshake ended, or was cancelled).
    fn guard(&self, id: u64) -> PendingGuard {
        PendingGuard {
            pending: self.clone(),
            id,
        }
    }
}

struct PendingGuard {
    pending: Pending,
    id: u64,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut guard = self.pending.lock();
        guard.1.retain(|(i, _)| *i != self.id);
    }
}

/// Caps on connections (or handshakes) held at once: in total and per source IP address.
/// [`ConnectionCaps::admit`] hands out a slot, or nothing when either cap is reached; the
/// slot is given back when dropped.
#[derive(Debug, Clone)]
pub struct ConnectionCaps {
    total: Arc<Semaphore>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    per_ip_cap: usize,
}

impl ConnectionCaps {
    /// At most `total` at once, and at most `per_ip` from one address (each at least 1).
    pub fn new(total: usize, per_ip: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total.max(1))),
            per_ip: Arc::new(Mutex::new(HashMap::new())),
            per_ip_cap: per_ip.max(1),
        }
    }

    /// A slot for a connection from `ip`, if both caps allow one more.
    pub fn admit(&self, ip: IpAddr) -> Option<CapSlot> {
        let permit = Arc::clone(&self.total).try_acquire_owned().ok()?;
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let count = map.entry(ip).or_insert(0);
        if *count >= self.per_ip_cap {
            return None;
        }
        *count += 1;
        Some(CapSlot {
            table: Arc::clone(&self.per_ip),
            ip,
            _permit: permit,
        })
    }

    /// Slots held from `ip` now.
    pub fn held_by(&self, ip: IpAddr) -> usize {
        let map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&ip).copied().unwrap_or(0)
    }
}

/// A slot taken from [`ConnectionCaps`]; given back when dropped.
#[derive(Debug)]
pub struct CapSlot {
    table: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for CapSlot {
    fn drop(&mut self) {
        let mut map = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = map.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

type Places = HashMap<PublicKey, VecDeque<(u64, oneshot::Sender<()>)>>;

/// The connections of each admitted key, oldest first.
#[derive(Clone)]
struct PeerTable {
    cap: usize,
    inner: Arc<Mutex<(u64, Places)>>,
}

impl PeerTable {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            inner: Arc::new(Mutex::new((0, HashMap::new()))),
        }
    }

    /// Registers a new connection of `key`, superseding the oldest beyond the cap.
    fn admit(&self, key: PublicKey) -> Superseded {
        let (signal_tx, signal) = oneshot::channel();
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (next, places) = &mut *guard;
        *next += 1;
        let id = *next;
        let list = places.entry(key).or_default();
        list.push_back((id, signal_tx));
        while list.len() > self.cap {
            if let Some((old, signal)) = list.pop_front() {
                tracing::debug!(peer = %key, connection = old, "superseded by a newer connection");
                let _ = signal.send(());
            }
        }
        Superseded {
            signal,
            _place: Place {
                table: self.clone(),
                key,
                id,
            },
        }
    }
}

/// A connection's entry in the [`PeerTable`]; removed when dropped.
struct Place {
    table: PeerTable,
    key: PublicKey,
    id: u64,
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Place")
            .field("key", &self.key)
            .field("id", &self.id)
            .finish()
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut guard = self.table.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = guard.1.get_mut(&self.key) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                guard.1.remove(&self.key);
            }
        }
    }
}
