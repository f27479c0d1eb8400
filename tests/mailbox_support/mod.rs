//! Shared helpers for the mailbox scenario tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use asyncpay::mailbox::client::MailboxClient;
use asyncpay::mailbox::envelope::{seal, Envelope, EnvelopeId, Letter};
use asyncpay::mailbox::keys::{Contact, NodeKey, VerifiedContact};
use asyncpay::mailbox::server::{Clock, MailboxServer, ManualClock, ServerConfig};

/// A server on a free loopback port with a temporary data directory.
pub struct Running {
    pub server: MailboxServer,
    pub client: MailboxClient,
    pub dir: tempfile::TempDir,
}

/// Fixed start time for manual clocks.
pub const T0: u64 = 1_800_000_000;

pub async fn start(tweak: impl FnOnce(&mut ServerConfig)) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ServerConfig::new(dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    tweak(&mut config);
    let server = MailboxServer::start(config).await.expect("server starts");
    let client = MailboxClient::new(&server.url()).expect("client");
    Running {
        server,
        client,
        dir,
    }
}

/// Starts a server driven by a manual clock.
pub async fn start_with_clock(
    tweak: impl FnOnce(&mut ServerConfig),
) -> (Running, Arc<ManualClock>) {
    let clock = ManualClock::at(T0);
    let c: Arc<dyn Clock> = clock.clone();
    let running = start(|config| {
        config.clock = c;
        tweak(config);
    })
    .await;
    (running, clock)
}

pub fn key(byte: u8) -> NodeKey {
    NodeKey::from_secret_bytes([byte; 32]).expect("valid secret")
}

pub fn contact_of(key: &NodeKey, url: &str) -> VerifiedContact {
    Contact::sign(key, url, T0)
        .verify()
        .expect("own contact verifies")
}

/// Seals `payload` for `to` with an explicit id and expiry.
pub fn envelope(
    to: &NodeKey,
    from: Option<&NodeKey>,
    id: u8,
    payload: &[u8],
    expires_at: u64,
) -> Envelope {
    let letter = Letter {
        recipient: to.public(),
        id: EnvelopeId([id; 16]),
        created_at: T0,
        payload: payload.to_vec(),
    };
    seal(
        &letter,
        &to.age_recipient(),
        expires_at,
        from,
        from.is_some(),
    )
    .expect("seal")
}

pub const DAY: Duration = Duration::from_secs(86_400);

/// The test-only webhook policy: plain http to loopback, which a real server refuses.
pub fn insecure_webhooks() -> asyncpay::mailbox::webhook::WebhookPolicy {
    asyncpay::mailbox::webhook::WebhookPolicy {
        allow_http: true,
        allow_private: true,
    }
}

/// A webhook endpoint on a free loopback port: its URL, and the notifications it receives.
pub async fn webhook_receiver() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<asyncpay::mailbox::api::WebhookNotification>,
) {
    use asyncpay::mailbox::api::WebhookNotification;
    use axum::{routing::post, Json, Router};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<WebhookNotification>();
    let hook = Router::new().route(
        "/hook",
        post(move |Json(n): Json<WebhookNotification>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(n);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await });
    (hook_url, rx)
}

/// One webhook call as received: its headers and the exact body bytes.
pub struct ReceivedCall {
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

/// A webhook endpoint on a free loopback port that keeps each call's headers and raw body
/// (to check the server's signature over the exact bytes).
pub async fn raw_webhook_receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<ReceivedCall>)
{
    use axum::{body::Bytes, http::HeaderMap, routing::post, Router};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<ReceivedCall>();
    let hook = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(ReceivedCall {
                    headers,
                    body: body.to_vec(),
                });
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await });
    (hook_url, rx)
}
