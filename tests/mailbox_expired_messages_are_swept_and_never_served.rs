//! Expiry: a message past its TTL is no longer served, the sweeper deletes it, an envelope
//! that arrives already expired is refused with `expired`, and a TTL beyond the server's
//! maximum is shortened.
mod mailbox_support;
use std::time::Duration;

use asyncpay::mailbox::api::ErrorCode;
use mailbox_support::*;

#[tokio::test]
async fn expired_messages_are_swept_and_never_served() {
    let (running, clock) = start_with_clock(|c| {
        c.max_ttl_secs = 3600;
        // The background sweeper runs too, but the test drives sweeps itself.
        c.sweep_interval = Duration::from_secs(3600);
    })
    .await;
    let c = &running.client;
    let payee = key(2);

    let short = c
        .post(&envelope(&payee, None, 1, b"short", T0 + 60))
        .await
        .unwrap();
    assert_eq!(short.expires_at, T0 + 60);
    let long = c
        .post(&envelope(&payee, None, 2, b"long", T0 + 10 * 86_400))
        .await
        .unwrap();
    assert_eq!(
        long.expires_at,
        T0 + 3600,
        "ttl clamped to the server maximum"
    );

    let err = c
        .post(&envelope(&payee, None, 3, b"late", T0 - 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Expired));

    clock.advance(Duration::from_secs(61));
    let got = c.fetch(&payee, 10, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].open(&payee).unwrap().payload, b"long");
    assert_eq!(running.server.stored_rows().await.unwrap(), 2);
    assert_eq!(running.server.sweep_now().await.unwrap(), 1);
    assert_eq!(running.server.stored_rows().await.unwrap(), 1);

    clock.advance(Duration::from_secs(3600));
    assert!(c
        .fetch(&payee, 10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(running.server.sweep_now().await.unwrap(), 1);
    assert_eq!(running.server.stored_rows().await.unwrap(), 0);
    running.server.shutdown().await.unwrap();
}
