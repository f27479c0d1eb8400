//! Behind a trusted reverse proxy, clients named by `X-Forwarded-For` get their own rate
//! limit buckets and webhook quotas; the same header from an untrusted peer moves nothing; a
//! malformed header from the proxy counts against the proxy; and the proxy's connections
//! are not held to the per-address connection cap.
mod mailbox_support;
use std::time::Duration;

use asyncpay::mailbox::api::ErrorCode;
use asyncpay::mailbox::client::{ClientError, MailboxClient};
use asyncpay::mailbox::proxy::{ForwardedHeader, TrustedProxy};
use mailbox_support::*;

/// A client of `server` whose every request carries `headers` (as a proxy would add them).
fn client_with(url: &str, headers: &[(&str, &str)]) -> MailboxClient {
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        map.append(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            reqwest::header::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
    }
    let http = reqwest::Client::builder()
        .default_headers(map)
        .build()
        .unwrap();
    MailboxClient::with_http(url, http).unwrap()
}

fn forwarded_for(url: &str, xff: &str) -> MailboxClient {
    client_with(url, &[("x-forwarded-for", xff)])
}

/// Asks for challenges until one is refused; returns how many were granted and the refusal.
async fn exhaust(client: &MailboxClient) -> (u32, ClientError) {
    let mailbox = key(2).public();
    for granted in 0..100 {
        if let Err(e) = client.challenge(&mailbox).await {
            return (granted, e);
        }
    }
    panic!("the rate limit never applied");
}

fn refused_for(e: &ClientError, who: &str) {
    assert_eq!(e.code(), Some(ErrorCode::RateLimited), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("too many requests from {who}")),
        "{e}"
    );
}

async fn challenge_ok(client: &MailboxClient) -> bool {
    client.challenge(&key(2).public()).await.is_ok()
}

fn loopback_trusted() -> Vec<TrustedProxy> {
    vec!["127.0.0.1".parse().unwrap()]
}

#[tokio::test]
async fn clients_behind_a_trusted_proxy_have_their_own_buckets() {
    // No refill during the test: the manual clock does not move.
    let (running, _clock) = start_with_clock(|c| {
        c.ip_burst = 3.0;
        c.trusted_proxies = loopback_trusted();
    })
    .await;
    let url = running.server.url();
    // nginx appends the peer it saw to whatever the client sent: the left part is ignored.
    let alice = forwarded_for(&url, "6.6.6.6, 203.0.113.1");
    let bob = forwarded_for(&url, "203.0.113.2");
    let (granted, refusal) = exhaust(&alice).await;
    assert_eq!(granted, 3);
    refused_for(&refusal, "203.0.113.1");
    // Alice spent her burst; Bob and the proxy itself have theirs.
    assert!(challenge_ok(&bob).await);
    assert!(challenge_ok(&running.client).await);
    // Alice cannot get out by writing another address on the left.
    let alice_again = forwarded_for(&url, "203.0.113.99, 203.0.113.1");
    refused_for(
        &alice_again
            .challenge(&key(2).public())
            .await
            .expect_err("still Alice's bucket"),
        "203.0.113.1",
    );
    // A hop through a second trusted proxy is skipped: the client is the next address left.
    let bob_via_two = forwarded_for(&url, "203.0.113.2, 127.0.0.1");
    assert!(challenge_ok(&bob_via_two).await);
    assert!(challenge_ok(&bob_via_two).await);
    refused_for(&exhaust(&bob).await.1, "203.0.113.2");
    running.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_forged_header_from_an_untrusted_peer_does_not_escape_its_bucket() {
    let (running, _clock) = start_with_clock(|c| {
        c.ip_burst = 3.0;
        // The proxies are elsewhere: loopback (the test) is an ordinary client.
        c.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    let url = running.server.url();
    let (granted, refusal) = exhaust(&forwarded_for(&url, "203.0.113.1")).await;
    assert_eq!(granted, 3);
    refused_for(&refusal, "127.0.0.1");
    for forged in [
        forwarded_for(&url, "203.0.113.2"),
        forwarded_for(&url, "10.0.0.1"),
        client_with(&url, &[("forwarded", "for=203.0.113.3")]),
        running.client.clone(),
    ] {
        refused_for(
            &forged
                .challenge(&key(2).public())
                .await
                .expect_err("same bucket"),
            "127.0.0.1",
        );
    }
    running.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_malformed_header_from_a_trusted_proxy_counts_against_the_proxy() {
    let (running, _clock) = start_with_clock(|c| {
        c.ip_burst = 3.0;
        c.trusted_proxies = loopback_trusted();
    })
    .await;
    let url = running.server.url();
    let malformed = [
        forwarded_for(&url, "not an address"),
        forwarded_for(&url, "203.0.113.1,"),
        forwarded_for(&url, "unknown"),
        forwarded_for(&url, "203.0.113.1 203.0.113.2"),
    ];
    for client in &malformed[..3] {
        assert!(
            challenge_ok(client).await,
            "answered, from the proxy's bucket"
        );
    }
    // The proxy's bucket is spent, by the malformed requests and its own alike.
    for client in malformed.iter().chain([&running.client]) {
        refused_for(
            &client
                .challenge(&key(2).public())
                .await
                .expect_err("the proxy's bucket"),
            "127.0.0.1",
        );
    }
    // A client named properly still has its own.
    assert!(challenge_ok(&forwarded_for(&url, "203.0.113.7")).await);
    // Raw bytes that are not text in the header: still an answer, never a crash.
    let raw = raw_request(
        &running.server.local_addr(),
        b"POST /v1/mailboxes/00/challenge HTTP/1.1\r\nhost: x\r\nx-forwarded-for: \xff\xfe\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 429"), "{raw}");
    assert!(challenge_ok(&forwarded_for(&url, "203.0.113.8")).await);
    running.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_forwarded_header_is_read_when_chosen_and_only_then() {
    let (running, _clock) = start_with_clock(|c| {
        c.ip_burst = 1.0;
        c.trusted_proxies = loopback_trusted();
        c.forwarded_header = ForwardedHeader::Forwarded;
    })
    .await;
    let url = running.server.url();
    let carol = client_with(
        &url,
        &[("forwarded", "for=\"[2001:db8::7]:4711\";proto=https")],
    );
    assert!(challenge_ok(&carol).await);
    refused_for(&exhaust(&carol).await.1, "2001:db8::7");
    // X-Forwarded-For is not read now: the proxy's own bucket.
    assert!(challenge_ok(&forwarded_for(&url, "2001:db8::7")).await);
    refused_for(&exhaust(&running.client).await.1, "127.0.0.1");
    running.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn webhook_quota_per_address_follows_the_forwarded_address() {
    let (hook_url, _calls) = webhook_receiver().await;
    let running = start(|c| {
        c.trusted_proxies = loopback_trusted();
        c.webhook_policy = insecure_webhooks();
        c.max_webhooks_per_ip = 1;
    })
    .await;
    let url = running.server.url();
    let alice = forwarded_for(&url, "203.0.113.1");
    let bob = forwarded_for(&url, "203.0.113.2");
    alice.set_webhook(&key(10), Some(&hook_url)).await.unwrap();
    let refused = alice
        .set_webhook(&key(11), Some(&hook_url))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::OverQuota));
    assert!(refused.to_string().contains("203.0.113.1"), "{refused}");
    bob.set_webhook(&key(11), Some(&hook_url)).await.unwrap();
    running.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_trusted_proxy_is_not_held_to_the_per_address_connection_cap() {
    for trusted in [false, true] {
        let running = start(|c| {
            c.max_connections_per_ip = 2;
            c.header_timeout = Duration::from_secs(30);
            if trusted {
                c.trusted_proxies = loopback_trusted();
            }
        })
        .await;
        let addr = running.server.local_addr();
        // A proxy's pool of connections, open and idle.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let answer = raw_request(
            &addr,
            b"GET /v1/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        if trusted {
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        } else {
            assert_eq!(answer, "", "closed at the cap");
        }
        drop(held);
        running.server.shutdown().await.unwrap();
    }
}

/// Sends `request` on a new connection; returns what came back before the server closed it
/// (empty if it was closed unanswered).
async fn raw_request(addr: &std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may close a refused connection before the request is written.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
    match read.await.expect("answered or closed within 10 s") {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("reading the answer: {e}"),
    }
    String::from_utf8_lossy(&answer).into_owned()
}
