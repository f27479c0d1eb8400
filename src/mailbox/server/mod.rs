//! The mailbox HTTP server (axum): posts, challenges, authenticated fetch with long-poll,
//! acknowledgements, webhooks, expiry sweeping and graceful shutdown.
//!
//! ```no_run
//! # async fn demo() -> Result<(), asyncpay::mailbox::server::ServerError> {
//! use asyncpay::mailbox::server::{MailboxServer, ServerConfig};
//!
//! let mut config = ServerConfig::new("/tmp/mailbox-data");
//! config.listen = "127.0.0.1:0".parse().unwrap();
//! let server = MailboxServer::start(config).await?;
//! println!("listening on {}", server.url());
//! server.shutdown().await?;
//! # Ok(()) }
//! ```
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use bitcoin::secp256k1::{schnorr, XOnlyPublicKey};
use tokio::sync::{watch, Notify};

use super::api::{
    AckRequest, AckResponse, ChallengeResponse, ErrorBody, ErrorCode, ErrorDetail, FetchRequest,
    FetchResponse, PostResponse, ServerKeyResponse, WebhookNotification, WebhookRequest,
    WebhookResponse, WireMessage,
};
use super::auth::{AuthError, ChallengeBook, Operation};
use super::envelope::{Envelope, EnvelopeError, EnvelopeId};
use super::limits::RateLimiter;
use super::proxy::{ClientAddr, ForwardedHeader, TrustedProxy};
use super::store::{NewMessage, PostOutcome, Store, StoreConfig, StoreError};
use super::webhook::{self, ServerKey, ServerKeyError, WebhookPolicy};
use crate::net::http::HttpLimits;

mod wake;
use wake::{release_waker, wake, waker};

/// Upper bound on messages one fetch returns.
pub const MAX_FETCH_LIMIT: u32 = 1000;
/// Upper bound on ids one ack may list.
pub const MAX_ACK_IDS: usize = 1000;
/// Upper bound on a webhook URL.
pub const MAX_WEBHOOK_URL: usize = 2048;

/// Source of time for the server. Tests substitute a [`ManualClock`].
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the unix epoch.
    fn now_ms(&self) -> u64;
    /// Seconds since the unix epoch.
    fn now(&self) -> u64 {
        self.now_ms() / 1000
    }
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `unix_secs`.
    pub fn at(unix_secs: u64) -> Arc<Self> {
        Arc::new(ManualClock(AtomicU64::new(unix_secs * 1000)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Server settings.
#[derive(Clone)]
pub struct ServerConfig {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Directory holding `mailbox.sqlite`.
    pub data_dir: PathBuf,
    /// Largest accepted envelope, in bytes.
    pub max_message_bytes: usize,
    /// Most live messages one mailbox may hold.
    pub max_messages_per_mailbox: u32,
    /// Longest time a message is kept; later expiries are shortened to this.
    pub max_ttl_secs: u64,
    /// How often expired messages are deleted.
    pub sweep_interval: Duration,
    /// Requests per second allowed per client IP (refill rate).
    pub ip_rate_per_sec: f64,
    /// Burst allowed per client IP.
    pub ip_burst: f64,
    /// Posts per second allowed per stamped sender key.
    pub sender_rate_per_sec: f64,
    /// Burst allowed per stamped sender key.
    pub sender_burst: f64,
    /// Lifetime of an authentication challenge.
    pub challenge_ttl_secs: u64,
    /// Longest long-poll a fetch may ask for.
    pub max_wait_secs: u32,
    /// Most operations per group-commit transaction.
    pub max_batch: usize,
    /// Most writes waiting for the store's writer; beyond it a post, ack or webhook update
    /// is answered 503 with `Retry-After: 1` at once.
    pub max_queue: usize,
    /// Whether recipients may register webhooks.
    pub webhooks: bool,
    /// Least time between two webhook calls for one mailbox; mail arriving sooner is
    /// announced by one call when the interval ends, so a device is never flooded and
    /// never misses the last message.
    pub webhook_min_interval: Duration,
    /// Which webhook targets are accepted (https to public addresses unless relaxed for
    /// tests; see [`super::webhook`]).
    pub webhook_policy: WebhookPolicy,
    /// Most webhooks registered in total.
    pub max_webhooks: usize,
    /// Most webhooks registered from one client IP address (since the server started).
    pub max_webhooks_per_ip: usize,
    /// Time a connection has to send a request's headers; also how long an idle
    /// keep-alive connection is kept before the next request begins.
    pub header_timeout: Duration,
    /// Longest wait for the next piece of a request body.
    pub body_timeout: Duration,
    /// Most open connections; at the cap the oldest with no request in flight makes room
    /// for a new one (see [`crate::net::http`]).
    pub max_connections: usize,
    /// Most open connections from one client IP address. Counted when a connection is
    /// accepted, before any header is read, so it applies to the peer: connections from a
    /// trusted proxy are exempt (they still count towards `max_connections`).
    pub max_connections_per_ip: usize,
    /// Reverse proxies whose forwarding header names the client (empty: none). Every
    /// per-address limit and log then uses the forwarded address for requests from them;
    /// from any other peer the header is ignored (see [`super::proxy`]).
    pub trusted_proxies: Vec<TrustedProxy>,
    /// The header trusted proxies write the client's address into.
    pub forwarded_header: ForwardedHeader,
    /// Time source.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("max_messages_per_mailbox", &self.max_messages_per_mailbox)
            .field("max_ttl_secs", &self.max_ttl_secs)
            .field("sweep_interval", &self.sweep_interval)
            .field("ip_rate_per_sec", &self.ip_rate_per_sec)
            .field("ip_burst", &self.ip_burst)
            .field("sender_rate_per_sec", &self.sender_rate_per_sec)
            .field("sender_burst", &self.sender_burst)
            .field("challenge_ttl_secs", &self.challenge_ttl_secs)
            .field("max_wait_secs", &self.max_wait_secs)
            .field("max_batch", &self.max_batch)
            .field("max_queue", &self.max_queue)
            .field("webhooks", &self.webhooks)
            .field("webhook_min_interval", &self.webhook_min_interval)
            .field("webhook_policy", &self.webhook_policy)
            .field("max_webhooks", &self.max_webhooks)
            .field("max_webhooks_per_ip", &self.max_webhooks_per_ip)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("forwarded_header", &self.forwarded_header)
            .finish_non_exhaustive()
    }
}

impl ServerConfig {
    /// Defaults: loopback on a free port, 64 KiB envelopes, 1000 messages per mailbox,
    /// 7-day TTL, sweep every 30 s, 200 requests/s per IP (burst 1000), 20 posts/s per
    /// sender (burst 100), 60 s challenges, 60 s long-polls, webhooks on (https to public
    /// addresses only, 10,000 in all, 16 per client address), 10 s to send headers (and
    /// the same for an idle keep-alive connection), 10 s between pieces of a body, 1,024
    /// connections in all and 64 per client address, no trusted proxy (`X-Forwarded-For`
    /// once one is named).
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            max_message_bytes: 64 * 1024,
            max_messages_per_mailbox: 1000,
            max_ttl_secs: 7 * 24 * 3600,
            sweep_interval: Duration::from_secs(30),
            ip_rate_per_sec: 200.0,
            ip_burst: 1000.0,
            sender_rate_per_sec: 20.0,
            sender_burst: 100.0,
            challenge_ttl_secs: 60,
            max_wait_secs: 60,
            max_batch: 512,
            max_queue: 4096,
            webhooks: true,
            webhook_min_interval: Duration::from_secs(5),
            webhook_policy: WebhookPolicy::default(),
            max_webhooks: 10_000,
            max_webhooks_per_ip: 16,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_ip: 64,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Server failures.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store failed to open or operate.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The webhook signing key could not be read or created.
    #[error("server key: {0}")]
    Key(#[from] ServerKeyError),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The HTTP server stopped with an error.
    #[error("http server: {0}")]
    Serve(std::io::Error),
    /// The server task panicked or was cancelled.
    #[error("server task ended abnormally")]
    Task,
}

/// A registered webhook and its call schedule.
struct Hook {
    url: String,
    /// The client address that registered it (none for hooks loaded from the store).
    source: Option<IpAddr>,
    /// When the last call was made (server clock, ms).
    last_call_ms: Option<u64>,
    /// A deferred call is scheduled.
    pending: bool,
}

impl Hook {
    fn new(url: String, source: Option<IpAddr>) -> Self {
        Hook {
            url,
            source,
            last_call_ms: None,
            pending: false,
        }
    }
}

struct AppState {
    config: ServerConfig,
    store: Store,
    challenges: Mutex<ChallengeBook>,
    ip_limiter: Mutex<RateLimiter<IpAddr>>,
    sender_limiter: Mutex<RateLimiter<XOnlyPublicKey>>,
    wakers: Mutex<HashMap<XOnlyPublicKey, Arc<Notify>>>,
    webhooks: Mutex<HashMap<XOnlyPublicKey, Hook>>,
    webhook_stats: WebhookCounters,
    /// Signs every webhook call.
    server_key: ServerKey,
    shutdown: watch::Receiver<bool>,
}

#[derive(Default)]
struct WebhookCounters {
    delivered: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
}

/// What became of the webhook calls a server attempted since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WebhookStats {
    /// Calls answered with a success status.
    pub delivered: u64,
    /// Calls that failed or got another status (a redirect among them: none is followed).
    pub failed: u64,
    /// Calls not made because the target no longer passed the address check.
    pub refused: u64,
}

/// A running server.
pub struct MailboxServer {
    local_addr: SocketAddr,
    state: Arc<AppState>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
    sweeper: tokio::task::JoinHandle<()>,
}

/// An error answer: HTTP status from the code, JSON [`ErrorBody`].
#[derive(Debug)]
struct ApiError {
    code: ErrorCode,
    message: String,
}

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if self.code == ErrorCode::Unavailable {
            // Overloaded or restarting: a client waits a second before it tries again.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Closed => ApiError::new(ErrorCode::Unavailable, "store is shutting down"),
            StoreError::Busy => ApiError::new(
                ErrorCode::Unavailable,
                "the store's write queue is full; retry shortly",
            ),
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::new(ErrorCode::Internal, "store failure")
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::TooManyChallenges => ApiError::new(ErrorCode::RateLimited, e.to_string()),
            other => ApiError::new(ErrorCode::Unauthorized, other.to_string()),
        }
    }
}

impl From<EnvelopeError> for ApiError {
    fn from(e: EnvelopeError) -> Self {
        match e {
            EnvelopeError::UnknownVersion { .. } => {
                ApiError::new(ErrorCode::UnknownVersion, e.to_string())
            }
            other => ApiError::new(ErrorCode::Malformed, other.to_string()),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

impl MailboxServer {
    /// Opens the store, binds the socket and starts serving.
    pub async fn start(config: ServerConfig) -> Result<MailboxServer, ServerError> {
        let mut store_config = StoreConfig::new(config.data_dir.join("mailbox.sqlite"));
        store_config.max_messages_per_mailbox = config.max_messages_per_mailbox;
        store_config.max_batch = config.max_batch;
        store_config.max_queue = config.max_queue;
        let store = Store::open(store_config)?;
        // After the store, which made the data directory (0700).
        let (server_key, created) = ServerKey::load_or_create(&config.data_dir)?;
        let hooks = store.webhooks().await?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
        let (stop, shutdown) = watch::channel(false);
        let state = Arc::new(AppState {
            challenges: Mutex::new(ChallengeBook::new(config.challenge_ttl_secs, 64, 1_000_000)),
            ip_limiter: Mutex::new(RateLimiter::new(
                config.ip_rate_per_sec,
                config.ip_burst,
                100_000,
            )),
            sender_limiter: Mutex::new(RateLimiter::new(
                config.sender_rate_per_sec,
                config.sender_burst,
                100_000,
            )),
            wakers: Mutex::new(HashMap::new()),
            webhooks: Mutex::new(
                hooks
                    .into_iter()
                    .map(|(key, url)| (key, Hook::new(url, None)))
                    .collect(),
            ),
            webhook_stats: WebhookCounters::default(),
            server_key,
            shutdown: shutdown.clone(),
            store,
            config,
        });
        let app = router(state.clone());
        let task = tokio::spawn(serve(listener, app, state.config.clone(), shutdown.clone()));
        let sweeper = tokio::spawn(sweep_loop(state.clone(), shutdown));
        tracing::info!(addr = %local_addr, data_dir = %state.config.data_dir.display(), server_key = %state.server_key.public_key(), created_key = created, "mailbox server listening");
        Ok(MailboxServer {
            local_addr,
            state,
            stop,
            task,
            sweeper,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The public key that signs this server's webhook calls (also served at
    /// `GET /v1/server-key`).
    pub fn server_key(&self) -> crate::crypto::keys::PublicKey {
        self.state.server_key.public_key()
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Runs an expiry sweep now; returns how many messages were deleted.
    pub async fn sweep_now(&self) -> Result<u64, ServerError> {
        let now = self.state.config.clock.now();
        Ok(self.state.store.sweep(now).await?)
    }

    /// What became of the webhook calls attempted so far.
    pub fn webhook_stats(&self) -> WebhookStats {
        let c = &self.state.webhook_stats;
        WebhookStats {
            delivered: c.delivered.load(Ordering::SeqCst),
            failed: c.failed.load(Ordering::SeqCst),
            refused: c.refused.load(Ordering::SeqCst),
        }
    }

    /// Rows in the store, expired or not (for tests and diagnostics).
    pub async fn stored_rows(&self) -> Result<u64, ServerError> {
        Ok(self.state.store.total_rows().await?)
    }

    /// Stops accepting connections, lets in-flight requests (and long-polls, which are
    /// woken) finish, flushes the store and returns.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.stop.send(true);
        let served = self.task.await.map_err(|_| ServerError::Task)?;
        let _ = self.sweeper.await;
        drop(self.state);
        tracing::info!("mailbox server stopped");
        served
    }

    /// Serves until `signal` resolves, then shuts down gracefully.
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServerError> {
        signal.await;
        tracing::info!("shutdown requested");
        self.shutdown().await
    }
}

/// Serves the app with the configured timeouts and connection caps (see
/// [`crate::net::http`]) until shutdown.
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    config: ServerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    let limits = HttpLimits {
        header_timeout: config.header_timeout,
        body_timeout: config.body_timeout,
        max_connections: config.max_connections,
        max_connections_per_ip: config.max_connections_per_ip,
    };
    let trusted = config.trusted_proxies;
    crate::net::http::serve_exempting(
        listener,
        app,
        limits,
        move |ip| super::proxy::is_trusted(&trusted, ip),
        async move {
            let _ = shutdown.wait_for(|s| *s).await;
        },
    )
    .await;
    Ok(())
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/v1/health",
            get(|| async { Json(serde_json::json!({"ok": true})) }),
        )
        .route("/v1/server-key", get(server_key))
        .route("/v1/messages", post(post_message))
        .route("/v1/mailboxes/{key}/challenge", post(challenge))
        .route("/v1/mailboxes/{key}/fetch", post(fetch))
        .route("/v1/mailboxes/{key}/ack", post(ack))
        .route("/v1/mailboxes/{key}/webhook", post(set_webhook))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint") })
        // Body limits are enforced per handler so the answer carries our JSON error.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn sweep_loop(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(state.config.sweep_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
        let now = state.config.clock.now();
        match state.store.sweep(now).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "expired messages swept"),
            Err(e) => tracing::warn!(error = %e, "sweep failed"),
        }
        state
            .challenges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .prune(now);
    }
}

/// The client address a request counts against: the peer's, or the one a trusted proxy
/// forwarded (the only way handlers learn a client's address; see [`super::proxy`]).
struct ClientIp(IpAddr);

impl axum::extract::FromRequestParts<Arc<AppState>> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
            return Err(ApiError::new(
                ErrorCode::Internal,
                "connection address unknown",
            ));
        };
        let config = &state.config;
        let client = super::proxy::client_addr(
            peer.ip(),
            &parts.headers,
            &config.trusted_proxies,
            config.forwarded_header,
        );
        if let ClientAddr::Unreadable { proxy } = client {
            tracing::debug!(%proxy, header = config.forwarded_header.name(), "unreadable forwarding header from a trusted proxy: counted against the proxy");
        }
        Ok(ClientIp(client.ip()))
    }
}

fn check_ip(state: &AppState, client: IpAddr) -> ApiResult<()> {
    let now = state.config.clock.now_ms();
    let ok = state
        .ip_limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .allow(client, now);
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::RateLimited,
            format!("too many requests from {client}"),
        ))
    }
}

fn parse_mailbox(key: &str) -> ApiResult<XOnlyPublicKey> {
    XOnlyPublicKey::from_str(key)
        .map_err(|_| ApiError::new(ErrorCode::Malformed, "mailbox is not a hex x-only key"))
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorCode::Malformed, format!("bad json body: {e}")))
}

fn parse_proof(challenge: &str, signature: &str) -> ApiResult<([u8; 32], schnorr::Signature)> {
    let mut c = [0u8; 32];
    hex::decode_to_slice(challenge, &mut c)
        .map_err(|_| ApiError::new(ErrorCode::Malformed, "challenge must be 64 hex characters"))?;
    let sig = schnorr::Signature::from_str(signature)
        .map_err(|_| ApiError::new(ErrorCode::Malformed, "signature must be 128 hex characters"))?;
    Ok((c, sig))
}

fn authorize(
    state: &AppState,
    mailbox: &XOnlyPublicKey,
    challenge: &[u8; 32],
    op: &Operation,
    sig: &schnorr::Signature,
) -> ApiResult<()> {
    let now = state.config.clock.now();
    let result = state
        .challenges
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .redeem(mailbox, challenge, op, sig, now);
    if let Err(e) = &result {
        tracing::info!(mailbox = %mailbox, op = op.code(), reason = %e, "proof refused");
    }
    Ok(result?)
}

/// Small JSON bodies (requests other than posts) are capped at this size.
const MAX_JSON_BODY: usize = 256 * 1024;

async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> ApiResult<Bytes> {
    let too_big = || ApiError::new(ErrorCode::Oversized, format!("body exceeds {limit} bytes"));
    if let Some(len) = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(too_big());
        }
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let over_limit = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if over_limit {
            too_big()
        } else {
            // A body that stalls past the body timeout, or a broken connection.
            ApiError::new(ErrorCode::Malformed, format!("request body: {e}"))
        }
    })
}

async fn server_key(State(state): State<Arc<AppState>>) -> Json<ServerKeyResponse> {
    Json(ServerKeyResponse {
        server_key: state.server_key.public_key().to_string(),
    })
}

async fn post_message(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    check_ip(&state, client)?;
    let bytes = read_body(body, &headers, state.config.max_message_bytes).await?;
    let envelope = Envelope::decode(&bytes)?;
    let now = state.config.clock.now();
    if envelope.expires_at <= now {
        return Err(ApiError::new(
            ErrorCode::Expired,
            format!("envelope expired at {}", envelope.expires_at),
        ));
    }
    if let Some(stamp) = &envelope.stamp {
        let ok = state
            .sender_limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(stamp.sender, state.config.clock.now_ms());
        if !ok {
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                format!("too many posts from sender {}", stamp.sender),
            ));
        }
    }
    let expires_at = envelope
        .expires_at
        .min(now.saturating_add(state.config.max_ttl_secs));
    let outcome = state
        .store
        .insert(NewMessage {
            recipient: envelope.recipient,
            id: envelope.id,
            envelope: bytes.to_vec(),
            expires_at,
            now,
        })
        .await?;
    let (status, duplicate, received_at, expires_at) = match outcome {
        PostOutcome::Stored {
            received_at,
            expires_at,
        } => {
            tracing::debug!(mailbox = %envelope.recipient, id = %envelope.id, bytes = bytes.len(), "message stored");
            wake(&state, &envelope.recipient);
            (StatusCode::CREATED, false, received_at, expires_at)
        }
        PostOutcome::Duplicate {
            received_at,
            expires_at,
        } => (StatusCode::OK, true, received_at, expires_at),
        PostOutcome::Conflict => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "envelope id {} is stored with different content",
                    envelope.id
                ),
            ))
        }
        PostOutcome::OverQuota { limit } => {
            return Err(ApiError::new(
                ErrorCode::OverQuota,
                format!("mailbox holds its limit of {limit} messages"),
            ))
        }
    };
    Ok((
        status,
        Json(PostResponse {
            id: envelope.id.to_string(),
            duplicate,
            received_at,
            expires_at,
        }),
    )
        .into_response())
}

async fn challenge(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    Path(key): Path<String>,
) -> ApiResult<Json<ChallengeResponse>> {
    check_ip(&state, client)?;
    let mailbox = parse_mailbox(&key)?;
    let now = state.config.clock.now();
    let issued = state
        .challenges
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .issue(mailbox, rand::random(), now)?;
    Ok(Json(ChallengeResponse {
        challenge: hex::encode(issued.challenge),
        expires_at: issued.expires_at,
    }))
}

async fn fetch(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<FetchResponse>> {
    check_ip(&state, client)?;
    let mailbox = parse_mailbox(&key)?;
    let request: FetchRequest = parse_json(&read_body(body, &headers, MAX_JSON_BODY).await?)?;
    let (challenge, sig) = parse_proof(&request.challenge, &request.signature)?;
    let op = Operation::Fetch {
        limit: request.limit,
        wait_secs: request.wait_secs,
    };
    authorize(&state, &mailbox, &challenge, &op, &sig)?;
    let limit = request.limit.clamp(1, MAX_FETCH_LIMIT);
    let wait = Duration::from_secs(request.wait_secs.min(state.config.max_wait_secs) as u64);
    let deadline = tokio::time::Instant::now() + wait;
    let notify = waker(&state, mailbox);
    let mut shutdown = state.shutdown.clone();
    let result = loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        // Register interest before reading, so a post that commits in between still wakes us.
        notified.as_mut().enable();
        let now = state.config.clock.now();
        let found = match state.store.fetch(mailbox, limit, now).await {
            Ok(found) => found,
            Err(e) => break Err(e),
        };
        if !found.is_empty() || tokio::time::Instant::now() >= deadline || *shutdown.borrow() {
            break Ok(found);
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
    };
    release_waker(&state, &mailbox, notify);
    let found = result?;
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(Json(FetchResponse {
        messages: found
            .into_iter()
            .map(|m| WireMessage {
                id: m.id.to_string(),
                received_at: m.received_at,
                expires_at: m.expires_at,
                envelope: b64.encode(&m.envelope),
            })
            .collect(),
    }))
}

async fn ack(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<AckResponse>> {
    check_ip(&state, client)?;
    let mailbox = parse_mailbox(&key)?;
    let request: AckRequest = parse_json(&read_body(body, &headers, MAX_JSON_BODY).await?)?;
    if request.ids.len() > MAX_ACK_IDS {
        return Err(ApiError::new(
            ErrorCode::Malformed,
            format!("at most {MAX_ACK_IDS} ids per ack"),
        ));
    }
    let ids = request
        .ids
        .iter()
        .map(|s| EnvelopeId::from_str(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::new(ErrorCode::Malformed, e.to_string()))?;
    let (challenge, sig) = parse_proof(&request.challenge, &request.signature)?;
    let op = Operation::Ack { ids: ids.clone() };
    authorize(&state, &mailbox, &challenge, &op, &sig)?;
    let deleted = state.store.delete(mailbox, ids).await?;
    tracing::debug!(mailbox = %mailbox, deleted, "messages acknowledged");
    Ok(Json(AckResponse { deleted }))
}

async fn set_webhook(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<WebhookResponse>> {
    check_ip(&state, client)?;
    if !state.config.webhooks {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "webhooks are disabled on this server",
        ));
    }
    let mailbox = parse_mailbox(&key)?;
    let request: WebhookRequest = parse_json(&read_body(body, &headers, MAX_JSON_BODY).await?)?;
    if let Some(url) = &request.url {
        // Form first (cheap), the resolution after the proof: an anonymous client cannot
        // make the server resolve names for it.
        webhook::parse(url, MAX_WEBHOOK_URL, state.config.webhook_policy)
            .map_err(|e| ApiError::new(ErrorCode::Malformed, e.to_string()))?;
    }
    let (challenge, sig) = parse_proof(&request.challenge, &request.signature)?;
    let op = Operation::SetWebhook {
        url: request.url.clone(),
    };
    authorize(&state, &mailbox, &challenge, &op, &sig)?;
    if let Some(url) = &request.url {
        webhook::check(url, MAX_WEBHOOK_URL, state.config.webhook_policy)
            .await
            .map_err(|e| ApiError::new(ErrorCode::Malformed, e.to_string()))?;
        let hooks = state.webhooks.lock().unwrap_or_else(|e| e.into_inner());
        if !hooks.contains_key(&mailbox) {
            if hooks.len() >= state.config.max_webhooks {
                return Err(ApiError::new(
                    ErrorCode::OverQuota,
                    format!(
                        "the server holds its limit of {} webhooks",
                        state.config.max_webhooks
                    ),
                ));
            }
            let from_here = hooks.values().filter(|h| h.source == Some(client)).count();
            if from_here >= state.config.max_webhooks_per_ip {
                return Err(ApiError::new(
                    ErrorCode::OverQuota,
                    format!(
                        "{} registered its limit of {} webhooks",
                        client, state.config.max_webhooks_per_ip
                    ),
                ));
            }
        }
    }
    state
        .store
        .set_webhook(mailbox, request.url.clone())
        .await?;
    {
        let mut hooks = state.webhooks.lock().unwrap_or_else(|e| e.into_inner());
        match &request.url {
            Some(url) => {
                hooks.insert(mailbox, Hook::new(url.clone(), Some(client)));
            }
            None => {
                hooks.remove(&mailbox);
            }
        }
    }
    tracing::info!(mailbox = %mailbox, set = request.url.is_some(), "webhook updated");
    Ok(Json(WebhookResponse { url: request.url }))
}

/// Resolves on ctrl-c or, on unix, SIGTERM: what `asyncpay mailbox serve` hands to
/// [`MailboxServer::run_until`].
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
