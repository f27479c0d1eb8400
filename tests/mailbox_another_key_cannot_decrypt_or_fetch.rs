//! A letter sealed to the payee cannot be read with another node's key, and another node
//! cannot fetch the payee's mailbox.
mod mailbox_support;
use std::time::Duration;

use asyncpay::mailbox::api::ErrorCode;
use asyncpay::mailbox::auth::{sign_request, Operation};
use asyncpay::mailbox::envelope::EnvelopeError;
use mailbox_support::*;

#[tokio::test]
async fn another_key_cannot_decrypt_or_fetch() {
    let running = start(|_| {}).await;
    let payer = key(1);
    let payee = key(2);
    let eve = key(3);
    let env = envelope(&payee, Some(&payer), 7, b"secret", T0 * 2);
    running.client.post(&env).await.unwrap();

    // Eve holds the stored bytes (say, she runs the server) but not the payee's age identity.
    assert!(matches!(
        age::decrypt(eve.age_identity(), &env.ciphertext),
        Err(age::DecryptError::NoMatchingKeys)
    ));
    assert!(matches!(env.open(&eve), Err(EnvelopeError::Mismatch(_))));

    // Eve asks for a challenge on the payee's mailbox and signs it with her key.
    let issued = running.client.challenge(&payee.public()).await.unwrap();
    let op = Operation::Fetch {
        limit: 10,
        wait_secs: 0,
    };
    let sig = sign_request(&eve, &issued.challenge, &op);
    let err = running
        .client
        .fetch_with_proof(&payee.public(), &issued.challenge, &sig, 10, 0)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized));

    // Eve's own mailbox is empty; the payee still gets the letter.
    assert!(running
        .client
        .fetch(&eve, 10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    let got = running
        .client
        .fetch(&payee, 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(got[0].open(&payee).unwrap().payload, b"secret");
    running.server.shutdown().await.unwrap();
}
