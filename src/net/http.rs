//! Serving an axum app over HTTP/1 with the limits `axum::serve` lacks: a header timeout
//! (which also closes idle keep-alive connections), a body timeout, and caps on open
//! connections in total and per client address. Used by the mailbox server and the node's
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

use std::net::SocketAddr;
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
    /// Most open connections; further ones are closed as soon as they are accepted.
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
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt as _;

    let caps = ConnectionCaps::new(limits.max_connections, limits.max_connections_per_ip);
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
        let Some(slot) = caps.admit(remote.ip()) else {
            tracing::debug!(%remote, "connection cap reached: closed");
            continue;
        };
        let service = tower::ServiceBuilder::new()
            .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
                limits.body_timeout,
            ))
            .service(app.clone())
            .map_request(move |mut request: axum::http::Request<_>| {
                request.extensions_mut().insert(ConnectInfo(remote));
                request
            });
        let connection = http.serve_connection(
            TokioIo::new(stream),
            hyper_util::service::TowerToHyperService::new(service),
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open 10 s after shutdown began");
    }
}
