//! An envelope above the size limit is refused with `oversized` (HTTP 413, JSON body), and
//! one just under it is accepted.
mod mailbox_support;

use asyncpay::mailbox::api::{ErrorBody, ErrorCode};
use mailbox_support::*;

#[tokio::test]
async fn oversized_envelope_is_refused() {
    let limit = 4096;
    let running = start(|c| c.max_message_bytes = limit).await;
    let payee = key(2);
    let small = envelope(&payee, None, 1, &[0u8; 1024], u64::MAX / 2);
    assert!(small.encode().len() <= limit);
    running.client.post(&small).await.unwrap();

    let big = envelope(&payee, None, 2, &[0u8; 8192], u64::MAX / 2);
    let err = running.client.post(&big).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Oversized));

    // The raw answer is a 413 with a JSON body.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/messages", running.server.url()))
        .body(big.encode())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let body: ErrorBody = response.json().await.unwrap();
    assert_eq!(body.error.code, ErrorCode::Oversized);
    assert_eq!(running.server.stored_rows().await.unwrap(), 1);
    running.server.shutdown().await.unwrap();
}
