//! A captured fetch or delete proof works once; replaying it is refused.
mod mailbox_support;

use asyncpay::mailbox::api::ErrorCode;
use asyncpay::mailbox::auth::{sign_request, Operation};
use asyncpay::mailbox::envelope::EnvelopeId;
use mailbox_support::*;

#[tokio::test]
async fn replayed_fetch_proof_is_rejected() {
    let running = start(|_| {}).await;
    let c = &running.client;
    let payee = key(2);
    let mailbox = payee.public();
    c.post(&envelope(&payee, None, 1, b"a", u64::MAX / 2))
        .await
        .unwrap();
    c.post(&envelope(&payee, None, 2, b"b", u64::MAX / 2))
        .await
        .unwrap();

    let ch = c.challenge(&mailbox).await.unwrap();
    let op = Operation::Fetch {
        limit: 10,
        wait_secs: 0,
    };
    let sig = sign_request(&payee, &ch.challenge, &op);
    let first = c
        .fetch_with_proof(&mailbox, &ch.challenge, &sig, 10, 0)
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    let replay = c
        .fetch_with_proof(&mailbox, &ch.challenge, &sig, 10, 0)
        .await
        .unwrap_err();
    assert_eq!(replay.code(), Some(ErrorCode::Unauthorized));

    // The same holds for deletes: the replay must not delete the second message.
    let ids = vec![EnvelopeId([1; 16])];
    let ch = c.challenge(&mailbox).await.unwrap();
    let sig = sign_request(&payee, &ch.challenge, &Operation::Ack { ids: ids.clone() });
    assert_eq!(
        c.ack_with_proof(&mailbox, &ch.challenge, &sig, &ids)
            .await
            .unwrap(),
        1
    );
    let replay = c
        .ack_with_proof(&mailbox, &ch.challenge, &sig, &ids)
        .await
        .unwrap_err();
    assert_eq!(replay.code(), Some(ErrorCode::Unauthorized));
    assert_eq!(running.server.stored_rows().await.unwrap(), 1);
    running.server.shutdown().await.unwrap();
}
