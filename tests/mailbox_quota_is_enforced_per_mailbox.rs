//! A full mailbox refuses new mail with `over_quota` (other mailboxes are unaffected), and
//! accepts again once the recipient acknowledges.
mod mailbox_support;

use asyncpay::mailbox::api::ErrorCode;
use asyncpay::mailbox::envelope::EnvelopeId;
use mailbox_support::*;

#[tokio::test]
async fn quota_is_enforced_per_mailbox() {
    let running = start(|c| c.max_messages_per_mailbox = 3).await;
    let c = &running.client;
    let payee = key(2);
    let other = key(4);
    let far = u64::MAX / 2;
    let first = envelope(&payee, None, 1, b"m", far);
    c.post(&first).await.unwrap();
    for id in 2..=3 {
        c.post(&envelope(&payee, None, id, b"m", far))
            .await
            .unwrap();
    }
    let err = c
        .post(&envelope(&payee, None, 4, b"m", far))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::OverQuota));
    // A retry of a stored message is still answered as a duplicate, not refused.
    assert!(c.post(&first).await.unwrap().duplicate);
    c.post(&envelope(&other, None, 4, b"m", far)).await.unwrap();

    assert_eq!(c.ack(&payee, &[EnvelopeId([1; 16])]).await.unwrap(), 1);
    c.post(&envelope(&payee, None, 4, b"m", far)).await.unwrap();
    assert_eq!(running.server.stored_rows().await.unwrap(), 4);
    running.server.shutdown().await.unwrap();
}
