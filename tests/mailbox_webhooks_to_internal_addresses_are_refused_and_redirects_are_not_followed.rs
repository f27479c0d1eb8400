//! Webhooks cannot make the mailbox server call into its own host or network: every
//! spelling of an internal address is refused at registration, a hook that has come to
//! point inward is refused again at call time, a redirect is never followed, plain http
//! needs the test-only policy, and webhooks are capped per client address and in total.
mod mailbox_support;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asyncpay::mailbox::api::ErrorCode;
use asyncpay::mailbox::server::MailboxServer;
use mailbox_support::*;

/// Waits (at most 10 s) until `done` holds.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An HTTP endpoint on a free loopback port that counts the requests it gets, answering
/// each with `status` and `location`.
async fn endpoint(status: u16, location: Option<String>) -> (u16, Arc<AtomicU64>) {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        let location = location.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let status = StatusCode::from_u16(status).expect("status");
            match location {
                Some(to) => (status, [(header::LOCATION, to)]).into_response(),
                None => status.into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, hits)
}

#[tokio::test]
async fn every_spelling_of_an_internal_address_is_refused() {
    let (port, hits) = endpoint(200, None).await;
    let running = start(|_| {}).await;
    let c = &running.client;
    let forms = [
        format!("https://127.0.0.1:{port}/hook"),
        format!("https://[::1]:{port}/hook"),
        format!("https://2130706433:{port}/hook"),
        format!("https://0x7f.0.0.1:{port}/hook"),
        format!("https://localhost:{port}/hook"),
        format!("https://[::ffff:127.0.0.1]:{port}/hook"),
        "https://169.254.169.254/latest/meta-data/".to_owned(),
        "https://0.0.0.0/".to_owned(),
        "https://[::]/".to_owned(),
        "https://10.0.0.1/".to_owned(),
        "https://172.16.5.4/".to_owned(),
        "https://192.168.1.1/".to_owned(),
        "https://100.64.0.1/".to_owned(),
        "https://[fe80::1]/".to_owned(),
        "https://[fd00::1]/".to_owned(),
        // bitcoind's regtest RPC port on this host.
        "https://127.0.0.1:18443/".to_owned(),
        // Plain http, even to a public address, is refused without the test-only policy.
        "http://93.184.215.14/hook".to_owned(),
        "https://user:pass@93.184.215.14/hook".to_owned(),
    ];
    for (i, url) in forms.iter().enumerate() {
        let payee = key(10 + i as u8);
        let err = c
            .set_webhook(&payee, Some(url))
            .await
            .expect_err("internal target refused");
        assert_eq!(err.code(), Some(ErrorCode::Malformed), "{url}: {err}");
        println!("SSRF refused {url}: {err}");
    }
    // Nothing was registered, so mail calls nothing.
    c.post(&envelope(&key(10), None, 1, b"m", u64::MAX / 2))
        .await
        .expect("post");
    assert_eq!(running.server.webhook_stats(), Default::default());
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    running.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_redirect_to_another_internal_port_is_not_followed() {
    let (internal, internal_hits) = endpoint(200, None).await;
    let (redirector, redirector_hits) =
        endpoint(302, Some(format!("http://127.0.0.1:{internal}/admin"))).await;
    let running = start(|c| c.webhook_policy = insecure_webhooks()).await;
    let c = &running.client;
    let payee = key(2);
    c.set_webhook(&payee, Some(&format!("http://127.0.0.1:{redirector}/hook")))
        .await
        .expect("registered under the test-only policy");
    c.post(&envelope(&payee, None, 1, b"m", u64::MAX / 2))
        .await
        .expect("post");
    // The call returns (as failed: a 302 is not success) without following the redirect.
    wait_until("the webhook call to end", || {
        running.server.webhook_stats().failed == 1
    })
    .await;
    println!(
        "SSRF redirect: redirector hits {}, redirect target hits {}, stats {:?}",
        redirector_hits.load(Ordering::SeqCst),
        internal_hits.load(Ordering::SeqCst),
        running.server.webhook_stats()
    );
    assert_eq!(redirector_hits.load(Ordering::SeqCst), 1);
    assert_eq!(internal_hits.load(Ordering::SeqCst), 0);
    running.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_stored_hook_that_points_inward_is_refused_at_call_time() {
    let (port, hits) = endpoint(200, None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = |policy| {
        let mut config = asyncpay::mailbox::server::ServerConfig::new(dir.path());
        config.listen = "127.0.0.1:0".parse().expect("addr");
        config.webhook_policy = policy;
        config
    };
    // Registered while the policy allowed it (as a name might have resolved outward then)...
    let server = MailboxServer::start(config(insecure_webhooks()))
        .await
        .expect("start");
    let client = asyncpay::mailbox::client::MailboxClient::new(&server.url()).expect("client");
    let payee = key(2);
    client
        .set_webhook(&payee, Some(&format!("http://127.0.0.1:{port}/hook")))
        .await
        .expect("registered");
    server.shutdown().await.expect("shutdown");

    // ... the call, under the real policy, checks the target again and does not go out.
    let server = MailboxServer::start(config(Default::default()))
        .await
        .expect("restart");
    let client = asyncpay::mailbox::client::MailboxClient::new(&server.url()).expect("client");
    client
        .post(&envelope(&payee, None, 1, b"m", u64::MAX / 2))
        .await
        .expect("post");
    wait_until("the call to be refused", || {
        server.webhook_stats().refused == 1
    })
    .await;
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    println!("SSRF call-time check: {:?}", server.webhook_stats());
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn webhooks_are_capped_per_client_address_and_in_total() {
    let (port, _hits) = endpoint(200, None).await;
    let url = format!("http://127.0.0.1:{port}/hook");
    let running = start(|c| {
        c.webhook_policy = insecure_webhooks();
        c.max_webhooks_per_ip = 3;
    })
    .await;
    let c = &running.client;
    for i in 0..3 {
        c.set_webhook(&key(20 + i), Some(&url))
            .await
            .expect("under the cap");
    }
    // Re-registering an existing hook is not a new one.
    c.set_webhook(&key(20), Some(&url))
        .await
        .expect("replacing");
    let err = c
        .set_webhook(&key(30), Some(&url))
        .await
        .expect_err("over the cap");
    assert_eq!(err.code(), Some(ErrorCode::OverQuota), "{err}");
    // Clearing one makes room.
    c.set_webhook(&key(21), None).await.expect("cleared");
    c.set_webhook(&key(30), Some(&url))
        .await
        .expect("room again");
    running.server.shutdown().await.expect("shutdown");

    let running = start(|c| {
        c.webhook_policy = insecure_webhooks();
        c.max_webhooks = 2;
    })
    .await;
    let c = &running.client;
    c.set_webhook(&key(40), Some(&url)).await.expect("1");
    c.set_webhook(&key(41), Some(&url)).await.expect("2");
    let err = c
        .set_webhook(&key(42), Some(&url))
        .await
        .expect_err("over the total");
    assert_eq!(err.code(), Some(ErrorCode::OverQuota), "{err}");
    running.server.shutdown().await.expect("shutdown");
}
