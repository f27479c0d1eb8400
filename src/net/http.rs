//! Serving an axum app over HTTP/1 with the limits `axum::serve` lacks: a header timeout
//! (which also closes idle keep-alive connections), a body timeout, and caps on open
//! connections per client address (beyond it a connection is closed at once) and in total
//! (at that cap the oldest connection with no request in flight, one still sending its
//! headers or an idle keep-alive, is dropped to make room; only if every connection is
//! inside a request is the new one closed). Used by the mailbox server and the node's
//! control API.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use asyncpay::net::http::{serve, HttpLimits};
//!
//! let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! serve(listener, app, HttpLimits::default(), std::future::pending()).await;
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;

use crate::net::ConnectionCaps;

/// Limits of an HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time a connection has to send a request's headers; also how long an idle keep-alive
    /// connection is kept before its next request begins.
    pub header_timeout: Duration,
    /// Longest wait for the next piece of a request body.
    pub body_timeout: Duration,
    /// Most open connections; at the cap the oldest one with no request in flight is
    /// dropped for a new one, or, if all are inside a request, the new one is closed.
    pub max_connections: usize,
    /// Most open connections from one client IP address.
    pub max_connections_per_ip: usize,
}

impl Default for HttpLimits {
    /// 10 s for headers, 10 s between pieces of a body, 1,024 connections, 64 per address.
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_ip: 64,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and lets the
/// open connections finish (at most 10 s). Handlers may extract
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    serve_exempting(listener, app, limits, |_| false, shutdown).await
}

/// [`serve`], except that connections from addresses for which `exempt_per_ip` holds are not
/// held to `max_connections_per_ip` (they still count towards `max_connections`): a
/// trusted reverse proxy carries many clients' connections from one address.
pub async fn serve_exempting(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: HttpLimits,
    exempt_per_ip: impl Fn(std::net::IpAddr) -> bool,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt as _;

    // Per address by `caps` (refused beyond it), in total by `open` (oldest idle dropped).
    let caps = ConnectionCaps::new(
        tokio::sync::Semaphore::MAX_PERMITS,
        limits.max_connections_per_ip,
    );
    let open = Open::default();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        let (stream, remote): (_, SocketAddr) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or a transient error: back off briefly, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = if exempt_per_ip(remote.ip()) {
            None
        } else {
            let Some(slot) = caps.admit(remote.ip()) else {
                tracing::debug!(%remote, "connection cap of this address reached: closed");
                continue;
            };
            Some(slot)
        };
        if !open.make_room(limits.max_connections.max(1)) {
            tracing::debug!(%remote, "connection cap reached, every connection busy: closed");
            continue;
        }
        let (id, busy) = open.reserve();
        let guard = open.guard(id);
        let service = tower::ServiceBuilder::new()
            .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
                limits.body_timeout,
            ))
            .service(app.clone())
            .map_request(move |mut request: axum::http::Request<_>| {
                request.extensions_mut().insert(ConnectInfo(remote));
                request
            })
            // A request is in flight from its headers to its answer.
            .map_future(move |answer| {
                let in_flight = Busy::start(&busy);
                async move {
                    let answer = answer.await;
                    drop(in_flight);
                    answer
                }
            });
        let connection = http.serve_connection(
            TokioIo::new(stream),
            hyper_util::service::TowerToHyperService::new(service),
        );
        let connection = graceful.watch(connection);
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
            drop(guard);
            drop(slot);
        });
        open.attach(id, task.abort_handle());
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open 10 s after shutdown began");
    }
}

/// Counts a request in flight on a connection while it lives.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(count))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One open connection: its id, its requests in flight and the handle that drops it (none
/// until its task is attached).
type Entry = (u64, Arc<AtomicUsize>, Option<tokio::task::AbortHandle>);

/// The open connections, oldest first, and the last id given out.
#[derive(Default, Clone)]
struct Open {
    inner: Arc<Mutex<(u64, VecDeque<Entry>)>>,
}

impl Open {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, VecDeque<Entry>)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a new connection fits under `max`, after dropping the oldest connection
    /// with no request in flight if needed.
    fn make_room(&self, max: usize) -> bool {
        let mut guard = self.lock();
        if guard.1.len() < max {
            return true;
        }
        let idle = guard
            .1
            .iter()
            .position(|(_, busy, handle)| handle.is_some() && busy.load(Ordering::SeqCst) == 0);
        match idle.and_then(|i| guard.1.remove(i)) {
            Some((_, _, Some(handle))) => {
                handle.abort();
                true
            }
            _ => false,
        }
    }

    fn reserve(&self) -> (u64, Arc<AtomicUsize>) {
        let mut guard = self.lock();
        guard.0 += 1;
        let id = guard.0;
        let busy = Arc::new(AtomicUsize::new(0));
        guard.1.push_back((id, Arc::clone(&busy), None));
        (id, busy)
    }

    fn attach(&self, id: u64, handle: tokio::task::AbortHandle) {
        let mut guard = self.lock();
        if let Some(entry) = guard.1.iter_mut().find(|(i, _, _)| *i == id) {
            entry.2 = Some(handle);
        }
    }

    fn guard(&self, id: u64) -> OpenGuard {
        OpenGuard {
            open: self.clone(),
            id,
        }
    }
}

/// Removes a connection's entry when its task ends or is dropped.
struct OpenGuard {
    open: Open,
    id: u64,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.open.lock().1.retain(|(i, _, _)| *i != self.id);
    }
}
