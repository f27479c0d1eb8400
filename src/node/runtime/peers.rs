//! Peer connections: each one a reader and a writer task feeding the driver's queue, and a
//! redial loop with backoff for each peer this node dials.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::crypto::keys::PublicKey;
use crate::net::{connect, ConnectionWriter, NetError, Superseded};

use super::driver::{Ev, RuntimeIo};
use super::events::{NodeEvent, Reporter};

/// First wait before redialling a peer; it doubles after each failure up to
/// [`MAX_REDIAL`].
const MIN_REDIAL: Duration = Duration::from_millis(300);
/// Longest wait between two dials of one peer.
const MAX_REDIAL: Duration = Duration::from_secs(60);
/// A connection that lived this long was healthy: the next redial starts from
/// [`MIN_REDIAL`] again.
const HEALTHY_CONNECTION: Duration = Duration::from_secs(10);

/// Runs a connection's reader and writer tasks; `done` (for a dialer that redials) fires
/// when the connection ends, `superseded` (for an accepted one) ends it when a newer
/// connection of the same key arrives.
///
/// Each end sends an empty message (a keepalive, never handed to the core) when it has sent
/// nothing for a third of `idle`; a connection that brings no complete message within `idle`
/// is closed, so a dead or stalling peer does not hold its descriptor.
pub(super) fn spawn_connection(
    conn: crate::net::Connection,
    tx: mpsc::UnboundedSender<Ev>,
    done: Option<oneshot::Sender<()>>,
    superseded: Option<Superseded>,
    idle: Duration,
    reporter: Reporter,
) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let peer = conn.peer();
    let (mut reader, writer) = conn.into_split();
    let (wtx, mut wrx) = mpsc::unbounded_channel::<Vec<u8>>();
    let _ = tx.send(Ev::Connected {
        peer,
        conn: id,
        writer: wtx,
    });
    let (closed_tx, mut closed_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut writer: ConnectionWriter = writer;
        let keepalive = idle / 3;
        loop {
            let frame = tokio::select! {
                frame = wrx.recv() => match frame {
                    Some(frame) => frame,
                    None => break,
                },
                _ = tokio::time::sleep(keepalive) => Vec::new(),
                _ = &mut closed_rx => break,
            };
            if writer.send(&frame).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    tokio::spawn(async move {
        let mut superseded = superseded;
        let why = loop {
            let next = tokio::select! {
                next = tokio::time::timeout(idle, reader.recv()) => next,
                _ = async {
                    match superseded.as_mut() {
                        Some(s) => s.wait().await,
                        None => std::future::pending().await,
                    }
                } => break "superseded by a newer connection of the same key".to_owned(),
            };
            match next {
                Ok(Ok(frame)) if frame.is_empty() => continue,
                Ok(Ok(frame)) => {
                    if tx.send(Ev::Frame { from: peer, frame }).is_err() {
                        return;
                    }
                }
                Ok(Err(NetError::Closed)) => break "closed by the peer".to_owned(),
                Ok(Err(e)) => break e.to_string(),
                Err(_) => break format!("idle for {idle:?}"),
            }
        };
        drop(closed_tx);
        drop(superseded);
        reporter.report(NodeEvent::Disconnected { peer, reason: why });
        let _ = tx.send(Ev::Disconnected { peer, conn: id });
        if let Some(done) = done {
            let _ = done.send(());
        }
    });
}

impl RuntimeIo {
    /// Dials `key` at `addr` and keeps redialling whenever the connection ends or an attempt
    /// fails, waiting twice as long after each failure (from [`MIN_REDIAL`] up to
    /// [`MAX_REDIAL`]). Every failure is logged; `first` hears how the first attempt went.
    pub(super) fn dial(
        &mut self,
        key: PublicKey,
        addr: String,
        first: Option<oneshot::Sender<Result<(), String>>>,
    ) {
        let tx = self.events.clone();
        let secret = self.node_secret.clone();
        let idle = self.idle;
        let reporter = self.reporter.clone();
        let task = tokio::spawn(async move {
            let mut first = first;
            let mut backoff = MIN_REDIAL;
            loop {
                match connect(addr.as_str(), &secret, key).await {
                    Ok(conn) => {
                        if let Some(first) = first.take() {
                            let _ = first.send(Ok(()));
                        }
                        let started = Instant::now();
                        let (done_tx, done_rx) = oneshot::channel::<()>();
                        spawn_connection(
                            conn,
                            tx.clone(),
                            Some(done_tx),
                            None,
                            idle,
                            reporter.clone(),
                        );
                        let _ = done_rx.await;
                        if started.elapsed() >= HEALTHY_CONNECTION {
                            backoff = MIN_REDIAL;
                        }
                    }
                    Err(e) => {
                        reporter.report(NodeEvent::DialFailed {
                            peer: key,
                            addr: addr.clone(),
                            refused: matches!(e, NetError::Refused),
                            error: e.to_string(),
                            retry_in_ms: backoff.as_millis() as u64,
                        });
                        if let Some(first) = first.take() {
                            let _ = first.send(Err(format!("dialling {key} at {addr}: {e}")));
                        }
                    }
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_REDIAL);
            }
        });
        if let Some(old) = self.dialers.insert(key, task.abort_handle()) {
            old.abort();
        }
    }

    /// `ctl connect`: admits `key` and, given an `addr`, dials it; the answer waits for the
    /// first attempt, so a node that refuses our key is reported (the redial goes on).
    pub(super) fn connect_command(
        &mut self,
        key: PublicKey,
        addr: Option<String>,
        reply: oneshot::Sender<Result<Value, String>>,
    ) {
        if let Err(e) = self.store.put_peer(&key, addr.as_deref()) {
            let _ = reply.send(Err(format!("store: {e}")));
            return;
        }
        self.allow.write().expect("not poisoned").insert(key);
        match addr {
            None => {
                let _ = reply.send(Ok(json!({})));
            }
            Some(addr) => {
                let (first_tx, first_rx) = oneshot::channel();
                self.dial(key, addr, Some(first_tx));
                tokio::spawn(async move {
                    let answer = match first_rx.await {
                        Ok(Ok(())) => Ok(json!({"connected": true})),
                        Ok(Err(reason)) => Err(reason),
                        Err(_) => Err("the node is stopping".to_owned()),
                    };
                    let _ = reply.send(answer);
                });
            }
        }
    }
}
