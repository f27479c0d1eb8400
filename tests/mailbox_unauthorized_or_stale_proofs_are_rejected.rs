//! Fetch and delete need a fresh proof by the mailbox key: a wrong key, a proof for other
//! parameters, a challenge for another mailbox, an unknown or an expired challenge are all
//! refused with `unauthorized`, and nothing is deleted.
mod mailbox_support;
use std::time::Duration;

use asyncpay::mailbox::api::ErrorCode;
use asyncpay::mailbox::auth::{sign_request, Operation};
use asyncpay::mailbox::envelope::EnvelopeId;
use mailbox_support::*;

#[tokio::test]
async fn unauthorized_or_stale_proofs_are_rejected() {
    let (running, clock) = start_with_clock(|c| c.challenge_ttl_secs = 30).await;
    let c = &running.client;
    let payee = key(2);
    let eve = key(3);
    let mailbox = payee.public();
    c.post(&envelope(&payee, None, 1, b"x", T0 + 3600))
        .await
        .unwrap();
    let ids = vec![EnvelopeId([1; 16])];
    let ack = Operation::Ack { ids: ids.clone() };
    let unauthorized = |e: asyncpay::mailbox::client::ClientError| {
        assert_eq!(e.code(), Some(ErrorCode::Unauthorized), "{e}");
    };

    // Wrong key.
    let ch = c.challenge(&mailbox).await.unwrap();
    let sig = sign_request(&eve, &ch.challenge, &ack);
    unauthorized(
        c.ack_with_proof(&mailbox, &ch.challenge, &sig, &ids)
            .await
            .unwrap_err(),
    );

    // Right key, but the proof covers other ids than those requested.
    let ch = c.challenge(&mailbox).await.unwrap();
    let other = Operation::Ack {
        ids: vec![EnvelopeId([9; 16])],
    };
    let sig = sign_request(&payee, &ch.challenge, &other);
    unauthorized(
        c.ack_with_proof(&mailbox, &ch.challenge, &sig, &ids)
            .await
            .unwrap_err(),
    );

    // Right key, but a fetch proof presented for a delete.
    let ch = c.challenge(&mailbox).await.unwrap();
    let fetch = Operation::Fetch {
        limit: 1,
        wait_secs: 0,
    };
    let sig = sign_request(&payee, &ch.challenge, &fetch);
    unauthorized(
        c.ack_with_proof(&mailbox, &ch.challenge, &sig, &ids)
            .await
            .unwrap_err(),
    );

    // A challenge issued for Eve's mailbox, signed by the payee.
    let ch = c.challenge(&eve.public()).await.unwrap();
    let sig = sign_request(&payee, &ch.challenge, &ack);
    unauthorized(
        c.ack_with_proof(&mailbox, &ch.challenge, &sig, &ids)
            .await
            .unwrap_err(),
    );

    // A challenge the server never issued.
    let sig = sign_request(&payee, &[7u8; 32], &ack);
    unauthorized(
        c.ack_with_proof(&mailbox, &[7u8; 32], &sig, &ids)
            .await
            .unwrap_err(),
    );

    // A stale challenge: correctly signed, presented after its expiry.
    let ch = c.challenge(&mailbox).await.unwrap();
    let sig = sign_request(&payee, &ch.challenge, &fetch);
    clock.advance(Duration::from_secs(31));
    unauthorized(
        c.fetch_with_proof(&mailbox, &ch.challenge, &sig, 1, 0)
            .await
            .unwrap_err(),
    );

    // Nothing was deleted; the owner still reads its message.
    assert_eq!(c.fetch(&payee, 10, Duration::ZERO).await.unwrap().len(), 1);
    running.server.shutdown().await.unwrap();
}
