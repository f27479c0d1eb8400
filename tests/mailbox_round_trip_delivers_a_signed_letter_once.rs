//! A payer posts a signed letter; the payee fetches, decrypts, verifies the sender and
//! acknowledges; a retried post of the same envelope is stored once.
mod mailbox_support;
use std::time::Duration;

use mailbox_support::*;

#[tokio::test]
async fn round_trip_delivers_a_signed_letter_once() {
    let running = start(|_| {}).await;
    let payer = key(1);
    let payee = key(2);
    let to = contact_of(&payee, &running.server.url());

    let sent = running
        .client
        .send(&to, Some(&payer), b"pre-signed update n+1".to_vec(), DAY)
        .await
        .unwrap();
    assert!(!sent.receipt.duplicate);

    let got = running
        .client
        .fetch(&payee, 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, sent.id);
    let opened = got[0].open(&payee).unwrap();
    assert_eq!(opened.payload, b"pre-signed update n+1");
    assert_eq!(opened.sender, Some(payer.public()));

    // Retrying the identical post (lost answer) stores nothing new.
    let again = running.client.post_bytes(got[0].raw.clone()).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(
        running
            .client
            .fetch(&payee, 10, Duration::ZERO)
            .await
            .unwrap()
            .len(),
        1
    );

    assert_eq!(running.client.ack(&payee, &[sent.id]).await.unwrap(), 1);
    assert!(running
        .client
        .fetch(&payee, 10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(running.server.stored_rows().await.unwrap(), 0);
    running.server.shutdown().await.unwrap();
}
