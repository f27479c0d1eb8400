//! Every webhook call carries a timestamp and a BIP340 signature by the server's long-term
//! key over (timestamp, exact body). A receiver that took the key from `GET /v1/server-key`
//! accepts the call, and refuses it with the body or timestamp changed, under another key,
//! or once it is older than the allowed skew. The key is kept (0600) across restarts.
mod mailbox_support;
use std::time::Duration;

use asyncpay::mailbox::api::WebhookNotification;
use asyncpay::mailbox::server::{MailboxServer, ServerConfig};
use asyncpay::mailbox::unix_now;
use asyncpay::mailbox::webhook::{
    verify_call, ServerKey, WebhookCallError, DEFAULT_MAX_SKEW_SECS, SERVER_KEY_FILE,
    SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use mailbox_support::*;

#[tokio::test]
async fn webhook_calls_are_signed_by_the_server_key() {
    let (hook_url, mut calls) = raw_webhook_receiver().await;
    let running = start(|c| c.webhook_policy = insecure_webhooks()).await;
    let c = &running.client;
    let payee = key(2);

    // The receiver takes the key once, from the server (over https in production).
    let server_key = c.server_key().await.unwrap();
    assert_eq!(server_key, running.server.server_key());

    c.set_webhook(&payee, Some(&hook_url)).await.unwrap();
    c.post(&envelope(&payee, None, 1, b"m", u64::MAX / 2))
        .await
        .unwrap();
    let call = tokio::time::timeout(Duration::from_secs(10), calls.recv())
        .await
        .expect("webhook called")
        .unwrap();
    let header = |name: &str| {
        call.headers
            .get(name)
            .unwrap_or_else(|| panic!("{name} present"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let (timestamp, signature) = (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER));
    assert_eq!(header("content-type"), "application/json");
    let now = unix_now();
    let skew = DEFAULT_MAX_SKEW_SECS;

    verify_call(&server_key, &timestamp, &call.body, &signature, now, skew)
        .expect("the call verifies");
    let note: WebhookNotification = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(note.mailbox, payee.public().to_string());
    let sent_at: u64 = timestamp.parse().unwrap();
    assert!(sent_at.abs_diff(now) <= 5, "signed at the time of the call");

    let bad = WebhookCallError::BadSignature {
        server_key: server_key.to_xonly_bytes(),
    };
    // The body changed after signing (another mailbox named, or a byte flipped).
    let other_mailbox = String::from_utf8(call.body.clone())
        .unwrap()
        .replace(&payee.public().to_string(), &key(4).public().to_string());
    assert_ne!(other_mailbox.as_bytes(), &call.body[..]);
    assert_eq!(
        verify_call(
            &server_key,
            &timestamp,
            other_mailbox.as_bytes(),
            &signature,
            now,
            skew
        ),
        Err(bad.clone())
    );
    let mut with_space = call.body.clone();
    with_space.push(b' ');
    assert_eq!(
        verify_call(&server_key, &timestamp, &with_space, &signature, now, skew),
        Err(bad.clone())
    );
    // The timestamp changed (moved forward to look fresh).
    let moved = (sent_at + 1).to_string();
    assert_eq!(
        verify_call(&server_key, &moved, &call.body, &signature, now, skew),
        Err(bad)
    );
    // Another server's key, and another server's signature over the same call.
    let other = ServerKey::generate();
    assert!(matches!(
        verify_call(
            &other.public_key(),
            &timestamp,
            &call.body,
            &signature,
            now,
            skew
        ),
        Err(WebhookCallError::BadSignature { .. })
    ));
    let forged = other.sign_call(sent_at, &call.body).signature_header();
    assert!(matches!(
        verify_call(&server_key, &timestamp, &call.body, &forged, now, skew),
        Err(WebhookCallError::BadSignature { .. })
    ));
    // The same call played again after the window.
    assert!(matches!(
        verify_call(
            &server_key,
            &timestamp,
            &call.body,
            &signature,
            now + skew + 5,
            skew
        ),
        Err(WebhookCallError::Stale { .. })
    ));
    running.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_server_key_is_created_private_and_kept_across_restarts() {
    let running = start(|_| {}).await;
    let first = running.server.server_key();
    let path = running.dir.path().join(SERVER_KEY_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    }
    let secret = std::fs::read_to_string(&path).unwrap();
    assert_eq!(secret.trim().len(), 64);
    assert!(
        !secret.contains(&first.to_string()),
        "the file holds the secret"
    );
    running.server.shutdown().await.unwrap();

    let mut config = ServerConfig::new(running.dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    let again = MailboxServer::start(config).await.unwrap();
    assert_eq!(again.server_key(), first);
    again.shutdown().await.unwrap();

    // A damaged key file stops the server rather than signing with a new key.
    std::fs::write(&path, "damaged\n").unwrap();
    let mut config = ServerConfig::new(running.dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    let refused = MailboxServer::start(config).await.err().expect("refused");
    assert!(refused.to_string().contains("server key"), "{refused}");
}
