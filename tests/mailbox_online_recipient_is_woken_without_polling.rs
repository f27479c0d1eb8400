//! A payee that is online waits in one long-poll fetch; a post wakes it at once, far sooner
//! than its wait would have run out.
mod mailbox_support;
use std::time::{Duration, Instant};

use mailbox_support::*;

#[tokio::test]
async fn online_recipient_is_woken_without_polling() {
    let running = start(|_| {}).await;
    let payee = key(2);
    let payer = key(1);
    let to = contact_of(&payee, &running.server.url());

    let waiter = {
        let client = running.client.clone();
        let payee = key(2);
        tokio::spawn(async move {
            let start = Instant::now();
            let got = client
                .fetch(&payee, 10, Duration::from_secs(30))
                .await
                .unwrap();
            (got, start.elapsed())
        })
    };
    // Give the fetch time to register (it must not return early on an empty mailbox).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished());

    let posted_at = Instant::now();
    running
        .client
        .send(&to, Some(&payer), b"wake up".to_vec(), DAY)
        .await
        .unwrap();
    let (got, waited) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("woken well before the 30 s wait ends")
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].open(&payee).unwrap().payload, b"wake up");
    assert!(waited < Duration::from_secs(10));
    assert!(posted_at.elapsed() < Duration::from_secs(5));
    running.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn empty_long_poll_returns_after_its_wait_and_shutdown_cuts_it_short() {
    let running = start(|_| {}).await;
    let payee = key(2);
    let start = Instant::now();
    let got = running
        .client
        .fetch(&payee, 10, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(got.is_empty());
    assert!(start.elapsed() >= Duration::from_millis(900));

    let client = running.client.clone();
    let waiter =
        tokio::spawn(async move { client.fetch(&key(2), 10, Duration::from_secs(60)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    running.server.shutdown().await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "graceful shutdown wakes long-polls"
    );
    assert!(waiter.await.unwrap().unwrap().is_empty());
}
