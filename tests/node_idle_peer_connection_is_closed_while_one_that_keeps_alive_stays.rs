//! The real node closes a peer connection that brings no message for its idle timeout, and
//! keeps one open whose peer sends keepalives (empty messages), which the node sends too.
mod node_process_support;

use std::time::{Duration, Instant};

use asyncpay::crypto::keys::SecretKey;
use asyncpay::net::{connect, NetError};
use node_process_support::*;
use serde_json::json;

#[test]
fn an_idle_connection_is_closed_and_a_kept_alive_one_stays() {
    let electrum = FakeElectrum::start();
    let root = tempfile::tempdir().expect("tempdir");
    let node = Node::start(
        &electrum,
        &root.path().join("lsp"),
        "lsp",
        &["--idle-timeout-secs", "1"],
    );
    let quiet = SecretKey::from_bytes([7u8; 32]).expect("key");
    let lively = SecretKey::from_bytes([8u8; 32]).expect("key");
    for key in [&quiet, &lively] {
        let (ok, _, err) = node.ctl(
            "connect",
            &json!({"node_key": key.public_key().to_string()}),
        );
        assert!(ok, "{err}");
    }
    let addr = node.peer_addr();
    let node_key = node.key();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut quiet_conn = connect(addr, &quiet, node_key).await.expect("quiet connects");
        let mut lively_conn = connect(addr, &lively, node_key).await.expect("lively connects");
        let start = Instant::now();
        // The quiet peer never sends: the node's keepalives reach it, then the node closes.
        let quiet = async {
            let mut keepalives = 0;
            let closed_after = loop {
                match tokio::time::timeout(Duration::from_secs(5), quiet_conn.recv()).await {
                    Ok(Ok(message)) if message.is_empty() => keepalives += 1,
                    Ok(Ok(other)) => panic!("unexpected {} bytes", other.len()),
                    Ok(Err(NetError::Closed)) => break start.elapsed(),
                    Ok(Err(e)) => panic!("{e}"),
                    Err(_) => panic!("the node did not close an idle connection within 5 s"),
                }
            };
            (keepalives, closed_after)
        };
        // Meanwhile, from the start, the lively peer sends keepalives of its own and stays
        // connected (recv is cancel safe, so it can alternate with sending).
        let lively = async {
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until {
                lively_conn.send(&[]).await.expect("keepalive sent");
                match tokio::time::timeout(Duration::from_millis(300), lively_conn.recv()).await {
                    Ok(Ok(_)) | Err(_) => {}
                    Ok(Err(e)) => panic!("the node closed a connection that kept alive: {e}"),
                }
            }
        };
        let ((keepalives, closed_after), ()) = tokio::join!(quiet, lively);
        println!(
            "NODE_IDLE idle timeout 1 s: a silent peer got {keepalives} keepalives and was closed after {closed_after:?}"
        );
        assert!(closed_after >= Duration::from_millis(900), "{closed_after:?}");
        assert!(keepalives >= 1);
        println!("NODE_IDLE a peer sending keepalives stayed connected for 3 s");
    });
}
