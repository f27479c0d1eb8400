//! Every bad input is answered with the right HTTP status and a JSON body holding a
//! machine-readable code.
mod mailbox_support;

use asyncpay::mailbox::api::{ErrorBody, ErrorCode};
use mailbox_support::*;

async fn expect(response: reqwest::Response, status: u16, code: ErrorCode) {
    assert_eq!(response.status().as_u16(), status);
    let body: ErrorBody = response.json().await.expect("json error body");
    assert_eq!(body.error.code, code, "{}", body.error.message);
    assert!(!body.error.message.is_empty());
}

#[tokio::test]
async fn bad_inputs_get_json_error_codes() {
    let running = start(|_| {}).await;
    let url = running.server.url();
    let http = reqwest::Client::new();
    let post = |body: Vec<u8>| http.post(format!("{url}/v1/messages")).body(body).send();
    let payee = key(2);
    let good = envelope(&payee, None, 1, b"x", u64::MAX / 2).encode();

    expect(
        post(b"hello".to_vec()).await.unwrap(),
        400,
        ErrorCode::Malformed,
    )
    .await;
    expect(
        post(good[..40].to_vec()).await.unwrap(),
        400,
        ErrorCode::Malformed,
    )
    .await;
    let mut v9 = good.clone();
    v9[4] = 9;
    expect(post(v9).await.unwrap(), 400, ErrorCode::UnknownVersion).await;
    let mut trailing = good.clone();
    trailing.push(0);
    expect(post(trailing).await.unwrap(), 400, ErrorCode::Malformed).await;
    let expired = envelope(&payee, None, 2, b"x", 1).encode();
    expect(post(expired).await.unwrap(), 400, ErrorCode::Expired).await;

    let key_hex = payee.public().to_string();
    expect(
        http.post(format!("{url}/v1/mailboxes/nothex/challenge"))
            .send()
            .await
            .unwrap(),
        400,
        ErrorCode::Malformed,
    )
    .await;
    expect(
        http.post(format!("{url}/v1/mailboxes/{key_hex}/fetch"))
            .body("{not json")
            .send()
            .await
            .unwrap(),
        400,
        ErrorCode::Malformed,
    )
    .await;
    expect(
        http.post(format!("{url}/v1/mailboxes/{key_hex}/ack"))
            .json(&serde_json::json!({"challenge": "00", "signature": "00", "ids": []}))
            .send()
            .await
            .unwrap(),
        400,
        ErrorCode::Malformed,
    )
    .await;
    expect(
        http.get(format!("{url}/v2/nowhere")).send().await.unwrap(),
        404,
        ErrorCode::NotFound,
    )
    .await;
    assert_eq!(running.server.stored_rows().await.unwrap(), 0);
    running.server.shutdown().await.unwrap();
}
