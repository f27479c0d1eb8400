//! The store's writer queue is bounded: while the disk cannot keep up (here, another
//! connection holds an exclusive lock on the database, so the writer waits on it), posts
//! beyond the queue's room are answered at once with 503 `unavailable` and `Retry-After: 1`
//! instead of piling up in memory. Once the disk is back, every post that was queued is
//! stored, and new posts are accepted again.
mod mailbox_support;

use asyncpay::mailbox::api::{ErrorBody, ErrorCode};
use mailbox_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_beyond_a_full_writer_queue_get_503_with_retry_after() {
    let running = start(|c| {
        c.max_queue = 2;
        c.max_batch = 1;
    })
    .await;
    let payee = key(2);
    let url = format!("{}/v1/messages", running.server.url());

    // The disk stalls: an exclusive lock the writer must wait for.
    let db = rusqlite::Connection::open(running.dir.path().join("mailbox.sqlite")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();

    // At most three posts fit: one in the writer's hands, two queued. Ten are sent.
    let http = reqwest::Client::new();
    let mut posts = vec![];
    for i in 0..10u8 {
        let body = envelope(&payee, None, i + 1, &[i; 64], u64::MAX / 2).encode();
        let (http, url) = (http.clone(), url.clone());
        posts.push(tokio::spawn(async move {
            http.post(url).body(body).send().await.unwrap()
        }));
        // Let each post reach the queue in turn.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The refused ones are answered while the disk still stalls; the others wait for it.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let answered = posts.iter().filter(|p| p.is_finished()).count();
    assert!(
        answered >= 7,
        "posts beyond the queue answered at once: {answered}"
    );
    db.execute_batch("COMMIT").unwrap();

    let mut stored = 0;
    let mut unavailable = 0;
    for post in posts {
        let response = post.await.unwrap();
        match response.status().as_u16() {
            200 | 201 => stored += 1,
            503 => {
                assert_eq!(
                    response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()),
                    Some("1"),
                    "a 503 says when to retry"
                );
                let body: ErrorBody = response.json().await.unwrap();
                assert_eq!(body.error.code, ErrorCode::Unavailable);
                unavailable += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    println!("FULL_QUEUE stored {stored}, unavailable {unavailable}");
    assert!(
        stored <= 3,
        "no more than the queue's room was taken: {stored}"
    );
    assert!(
        stored >= 1,
        "the queued posts were stored once the disk was back"
    );
    assert_eq!(stored + unavailable, 10);
    assert_eq!(running.server.stored_rows().await.unwrap(), stored as u64);

    // The disk is back: a new post is accepted.
    let later = envelope(&payee, None, 99, b"later", u64::MAX / 2);
    running.client.post(&later).await.unwrap();
    running.server.shutdown().await.unwrap();
}
