//! A burst of mail to one mailbox calls its webhook once at once and once more when the
//! minimum interval ends, never once per message.
mod mailbox_support;
use std::time::Duration;

use mailbox_support::*;

#[tokio::test]
async fn webhook_calls_are_coalesced() {
    let (hook_url, mut rx) = webhook_receiver().await;

    let running = start(|c| {
        c.webhook_min_interval = Duration::from_millis(800);
        c.webhook_policy = insecure_webhooks();
    })
    .await;
    let c = &running.client;
    let payee = key(2);
    c.set_webhook(&payee, Some(&hook_url)).await.unwrap();
    for id in 1..=10 {
        c.post(&envelope(&payee, None, id, b"m", u64::MAX / 2))
            .await
            .unwrap();
    }
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
    assert!(first.expect("first call").is_some());
    let second = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
    assert!(second
        .expect("trailing call for the rest of the burst")
        .is_some());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(rx.try_recv().is_err(), "no call per message");
    running.server.shutdown().await.unwrap();
}
