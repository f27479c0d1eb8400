//! The real server binary is killed with SIGKILL in the middle of a burst of concurrent
//! posts. After a restart on the same data directory every acknowledged message is there,
//! and every message served decodes and decrypts in full (no partial write is served).
mod mailbox_support;
use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asyncpay::mailbox::client::MailboxClient;
use asyncpay::mailbox::envelope::EnvelopeId;
use mailbox_support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

async fn spawn_server(data_dir: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .args(["mailbox", "serve", "--listen", "127.0.0.1:0", "--json"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--ip-rate", "1000000", "--ip-burst", "1000000"])
        .args(["--max-messages", "100000"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("server binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("server prints its address")
        .unwrap()
        .expect("a line");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    (child, v["listening"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_killed_mid_burst_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = spawn_server(dir.path()).await;
    let client = MailboxClient::new(&url).unwrap();
    let payees: Vec<u8> = (10..18).collect();
    let acked = Arc::new(Mutex::new(HashSet::<EnvelopeId>::new()));
    let attempted = Arc::new(Mutex::new(HashSet::<EnvelopeId>::new()));

    let mut tasks = Vec::new();
    for (t, payee) in payees.iter().enumerate() {
        let client = client.clone();
        let acked = acked.clone();
        let attempted = attempted.clone();
        let payee = key(*payee);
        tasks.push(tokio::spawn(async move {
            for n in 0u32.. {
                let mut id = [0u8; 16];
                id[0] = t as u8;
                id[1..5].copy_from_slice(&n.to_be_bytes());
                let letter = asyncpay::mailbox::envelope::Letter {
                    recipient: payee.public(),
                    id: EnvelopeId(id),
                    created_at: 0,
                    payload: vec![n as u8; 700],
                };
                let env = asyncpay::mailbox::envelope::seal(
                    &letter,
                    &payee.age_recipient(),
                    asyncpay::mailbox::unix_now() + 3600,
                    None,
                    false,
                )
                .unwrap();
                attempted.lock().unwrap().insert(EnvelopeId(id));
                match client.post(&env).await {
                    Ok(_) => {
                        acked.lock().unwrap().insert(EnvelopeId(id));
                    }
                    Err(_) => break,
                }
            }
        }));
    }

    // Kill once a good number of posts are acknowledged, while all clients are still posting.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 300 {
        assert!(tokio::time::Instant::now() < deadline, "burst too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().unwrap(); // SIGKILL on Unix
    child.wait().await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let attempted = attempted.lock().unwrap().clone();
    assert!(attempted.len() > acked.len() || !acked.is_empty());

    let (mut child, url) = spawn_server(dir.path()).await;
    let client = MailboxClient::new(&url).unwrap();
    let mut served = HashSet::new();
    for p in &payees {
        let payee = key(*p);
        loop {
            let page = client.fetch(&payee, 1000, Duration::ZERO).await.unwrap();
            if page.is_empty() {
                break;
            }
            for m in &page {
                let opened = m.open(&payee).expect("every served message is whole");
                assert_eq!(opened.payload.len(), 700);
                assert!(attempted.contains(&m.id), "served an id never posted");
                assert!(served.insert(m.id), "served twice");
            }
            let ids: Vec<_> = page.iter().map(|m| m.id).collect();
            client.ack(&payee, &ids).await.unwrap();
        }
    }
    let lost: Vec<_> = acked.difference(&served).collect();
    assert!(lost.is_empty(), "lost {} acknowledged messages", lost.len());
    eprintln!(
        "acknowledged {}, attempted {}, served after restart {}",
        acked.len(),
        attempted.len(),
        served.len()
    );
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}
