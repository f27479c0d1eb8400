//! A flipped ciphertext bit is caught: by the server when the envelope is stamped (the
//! stamp covers the ciphertext), and by the recipient's age decryption otherwise.
mod mailbox_support;
use std::time::Duration;

use asyncpay::mailbox::api::ErrorCode;
use asyncpay::mailbox::envelope::EnvelopeError;
use mailbox_support::*;

#[tokio::test]
async fn tampered_ciphertext_is_rejected() {
    let running = start(|_| {}).await;
    let payer = key(1);
    let payee = key(2);

    let mut stamped = envelope(&payee, Some(&payer), 1, b"update", T0 * 2);
    let mid = stamped.ciphertext.len() / 2;
    stamped.ciphertext[mid] ^= 0x01;
    let err = running.client.post(&stamped).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Malformed));

    let mut anonymous = envelope(&payee, None, 2, b"update", T0 * 2);
    let last = anonymous.ciphertext.len() - 1;
    anonymous.ciphertext[last] ^= 0x01;
    running.client.post(&anonymous).await.unwrap();
    let got = running
        .client
        .fetch(&payee, 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert!(matches!(
        got[0].open(&payee),
        Err(EnvelopeError::Decrypt(_))
    ));
    running.server.shutdown().await.unwrap();
}
