//! A payee that registered a webhook (authenticated) gets a content-free notification
//! when mail arrives, and none after clearing it.
mod mailbox_support;
use std::time::Duration;

use asyncpay::mailbox::api::ErrorCode;
use mailbox_support::*;

#[tokio::test]
async fn webhook_is_called_when_mail_arrives() {
    let (hook_url, mut rx) = webhook_receiver().await;

    // The receiver is plain http on loopback: allowed only by the test-only policy.
    let running = start(|c| c.webhook_policy = insecure_webhooks()).await;
    let c = &running.client;
    let payee = key(2);
    let far = u64::MAX / 2;

    let bad = c
        .set_webhook(&payee, Some("ftp://example"))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Some(ErrorCode::Malformed));
    assert_eq!(
        c.set_webhook(&payee, Some(&hook_url)).await.unwrap(),
        Some(hook_url.clone())
    );

    c.post(&envelope(&payee, None, 1, b"m", far)).await.unwrap();
    let note = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("webhook called")
        .unwrap();
    assert_eq!(note.mailbox, payee.public().to_string());
    assert_eq!(note.event, "mailbox.message");

    // Mail for another mailbox does not call this hook.
    c.post(&envelope(&key(4), None, 2, b"m", far))
        .await
        .unwrap();
    c.set_webhook(&payee, None).await.unwrap();
    c.post(&envelope(&payee, None, 3, b"m", far)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rx.try_recv().is_err());
    running.server.shutdown().await.unwrap();
}
