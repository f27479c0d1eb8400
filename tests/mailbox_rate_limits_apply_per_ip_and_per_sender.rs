//! Requests beyond the per-IP budget and stamped posts beyond the per-sender budget are
//! refused with `rate_limited` until the buckets refill.
mod mailbox_support;
use std::time::Duration;

use asyncpay::mailbox::api::ErrorCode;
use mailbox_support::*;

#[tokio::test]
async fn per_sender_limit() {
    let (running, clock) = start_with_clock(|c| {
        c.sender_rate_per_sec = 1.0;
        c.sender_burst = 2.0;
    })
    .await;
    let c = &running.client;
    let (alice, bob, payee) = (key(1), key(5), key(2));
    let far = T0 + 3600;
    c.post(&envelope(&payee, Some(&alice), 1, b"1", far))
        .await
        .unwrap();
    c.post(&envelope(&payee, Some(&alice), 2, b"2", far))
        .await
        .unwrap();
    let err = c
        .post(&envelope(&payee, Some(&alice), 3, b"3", far))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::RateLimited));
    // Another sender has its own budget.
    c.post(&envelope(&payee, Some(&bob), 4, b"4", far))
        .await
        .unwrap();
    // A second later Alice has one token again.
    clock.advance(Duration::from_secs(1));
    c.post(&envelope(&payee, Some(&alice), 3, b"3", far))
        .await
        .unwrap();
    running.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn per_ip_limit() {
    let (running, clock) = start_with_clock(|c| {
        c.ip_rate_per_sec = 1.0;
        c.ip_burst = 3.0;
    })
    .await;
    let c = &running.client;
    let payee = key(2);
    let far = T0 + 3600;
    for id in 1..=3 {
        c.post(&envelope(&payee, None, id, b"m", far))
            .await
            .unwrap();
    }
    let err = c
        .post(&envelope(&payee, None, 4, b"m", far))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::RateLimited));
    // Challenges count against the same budget.
    let err = c.challenge(&payee.public()).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::RateLimited));
    clock.advance(Duration::from_secs(1));
    c.post(&envelope(&payee, None, 4, b"m", far)).await.unwrap();
    running.server.shutdown().await.unwrap();
}
