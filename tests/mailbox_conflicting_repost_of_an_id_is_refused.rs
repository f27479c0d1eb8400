//! Posting the same envelope id with different content is a `conflict`; the first content
//! stays.
mod mailbox_support;
use std::time::Duration;

use asyncpay::mailbox::api::ErrorCode;
use mailbox_support::*;

#[tokio::test]
async fn conflicting_repost_of_an_id_is_refused() {
    let running = start(|_| {}).await;
    let payee = key(2);
    let original = envelope(&payee, None, 5, b"first", u64::MAX / 2);
    running.client.post(&original).await.unwrap();
    let other = envelope(&payee, None, 5, b"second", u64::MAX / 2);
    let err = running.client.post(&other).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Conflict));
    let got = running
        .client
        .fetch(&payee, 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].open(&payee).unwrap().payload, b"first");
    running.server.shutdown().await.unwrap();
}
