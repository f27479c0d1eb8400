//! The real node binary's peer port under attack. Fifty silent sockets (from ten other
//! addresses) hold handshakes open, and an allow-listed peer still connects within a
//! second; the silent sockets are dropped after the first-message timeout. Then 2,000
//! silent sockets from 250 addresses, far above the total handshake cap: the node keeps at
//! most that many and the peer still connects at once. Then one
//! allow-listed key opens 300 connections: each newer one supersedes the oldest, and the
//! node's descriptor count stays bounded.
mod node_process_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use asyncpay::crypto::keys::SecretKey;
use asyncpay::net::{connect_with, NetConfig, NetError};
use node_process_support::*;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

const SILENT: usize = 50;
const FLOOD: usize = 300;
const STORM: usize = 2_000;

async fn from(source: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(to).await
}

/// Whether the node has closed `stream` (a read returns at once with EOF or an error).
async fn is_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_millis(5), stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[test]
fn silent_sockets_and_a_connection_flood_do_not_lock_peers_out() {
    let electrum = FakeElectrum::start();
    let root = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&electrum, &root.path().join("lsp"), "lsp", &[]);
    let peer = Arc::new(SecretKey::from_bytes([7u8; 32]).expect("key"));
    let (ok, _, err) = node.ctl(
        "connect",
        &json!({"node_key": peer.public_key().to_string()}),
    );
    assert!(ok, "allow-listing the peer: {err}");
    let addr = node.peer_addr();
    let node_key = node.key();
    let fds_start = node.fds();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // Fifty silent sockets, five from each of 127.0.0.2..=127.0.0.11.
        let mut silent = Vec::new();
        for i in 0..SILENT {
            let source = [127, 0, 0, 2 + (i / 5) as u8];
            silent.push(from(source, addr).await.expect("silent connect"));
        }
        let fds_silent = wait_until_fds(&node, fds_start + SILENT).await;

        let config = NetConfig {
            handshake_timeout: Duration::from_secs(10),
        };
        let t = Instant::now();
        let conn = connect_with(addr, &peer, node_key, config)
            .await
            .expect("the allow-listed peer gets in");
        let connect_time = t.elapsed();
        let mut still_open = 0;
        for s in &mut silent {
            if !is_closed(s).await {
                still_open += 1;
            }
        }
        println!(
            "NODE_EDGE connect with {SILENT} silent sockets held: {connect_time:?} ({still_open} of them still open then; node descriptors {fds_start} before, {fds_silent} with them)"
        );
        assert!(connect_time < Duration::from_secs(1), "{connect_time:?}");
        assert_eq!(still_open, SILENT, "the silent sockets were all held");
        drop(conn);

        // After the first-message timeout (2 s by default) every silent socket is closed.
        let t = Instant::now();
        for s in &mut silent {
            let mut buf = [0u8; 16];
            let closed = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
            assert!(
                matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
                "silent socket closed by the node"
            );
        }
        println!(
            "NODE_EDGE silent sockets all closed by the node {:?} after the peer connected",
            t.elapsed()
        );
        drop(silent);

        // 2,000 silent sockets, eight (the per-address cap) from each of 250 addresses: far
        // above the total cap of 64. The oldest handshakes make room for newer ones, so the
        // node keeps at most 64 and the peer still gets in at once.
        let fds_before_storm = node.fds();
        let t = Instant::now();
        let mut storm = Vec::new();
        for i in 0..STORM {
            let n = 2 + i / 8;
            let source = [127, 0, 1 + (n / 250) as u8, (n % 250) as u8 + 1];
            storm.push(from(source, addr).await.expect("storm connect"));
        }
        let storm_time = t.elapsed();
        let fds_storm_now = node.fds();
        // Dropped handshakes close their sockets as the runtime gets to them: under load
        // that lags the accepts a little, so wait (at most 1 s, half the first-message
        // timeout) for the count to come within the cap.
        let settle = Instant::now();
        let mut fds_storm = fds_storm_now;
        while fds_storm > fds_before_storm + 64 + 8 && settle.elapsed() < Duration::from_secs(1) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            fds_storm = node.fds();
        }
        let settled_after = settle.elapsed();
        let t = Instant::now();
        let conn = connect_with(addr, &peer, node_key, NetConfig::default())
            .await
            .expect("the allow-listed peer gets in through the storm");
        let storm_connect = t.elapsed();
        println!(
            "NODE_EDGE {STORM} silent sockets opened in {storm_time:?}: node descriptors {fds_before_storm} before, {fds_storm_now} right after the last, {fds_storm} {settled_after:?} later; the peer connected in {storm_connect:?}"
        );
        assert!(storm_connect < Duration::from_secs(1), "{storm_connect:?}");
        assert!(
            fds_storm <= fds_before_storm + 64 + 8,
            "descriptors rose from {fds_before_storm} to {fds_storm}"
        );
        drop(conn);
        drop(storm);

        // The node closes its ends of the storm (at once, or at the first-message timeout).
        let settle = Instant::now();
        while node.fds() > fds_start + 2 && settle.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // One allowed key, 300 connections, eight at a time (the per-address handshake cap).
        let fds_before_flood = node.fds();
        let mut held = Vec::new();
        let mut fds_max = 0;
        let mut refused = 0;
        let t = Instant::now();
        for batch in 0..FLOOD / 10 {
            let mut tasks = Vec::new();
            for _ in 0..10 {
                let peer = peer.clone();
                tasks.push(tokio::spawn(async move {
                    connect_with(addr, &peer, node_key, NetConfig::default()).await
                }));
            }
            for task in tasks {
                match task.await.expect("connect task") {
                    Ok(conn) => held.push(conn),
                    Err(NetError::Refused | NetError::Closed | NetError::Io(_)) => refused += 1,
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
            if batch % 5 == 0 {
                fds_max = fds_max.max(node.fds());
            }
        }
        let flood_time = t.elapsed();
        fds_max = fds_max.max(node.fds());
        // The node closed all but the newest connections of the key.
        let mut open = 0;
        for conn in held.iter_mut() {
            let closed = tokio::time::timeout(Duration::from_millis(200), conn.recv()).await;
            if closed.is_err() {
                open += 1;
            }
        }
        let fds_after = node.fds();
        println!(
            "NODE_EDGE {FLOOD} connections with one key in {flood_time:?}: {} admitted, {refused} refused at the handshake cap, {open} still open at the end; node descriptors {fds_before_flood} before, at most {fds_max} during, {fds_after} after",
            held.len()
        );
        assert!(open <= 2, "{open} connections of one key still open");
        assert!(
            // The key's two connections, eight handshakes in flight, and connections
            // superseded but not yet closed: bounded, whatever the number of attempts.
            fds_max <= fds_before_flood + 32,
            "descriptors rose from {fds_before_flood} to {fds_max}"
        );

        // The key (and any other allowed peer) still gets in.
        let t = Instant::now();
        let _conn = connect_with(addr, &peer, node_key, NetConfig::default())
            .await
            .expect("connects after the flood");
        println!("NODE_EDGE connect after the flood: {:?}", t.elapsed());
    });
}

/// Waits until the node holds at least `want` descriptors (the silent sockets accepted).
async fn wait_until_fds(node: &Node, want: usize) -> usize {
    let start = Instant::now();
    loop {
        let now = node.fds();
        if now >= want || start.elapsed() > Duration::from_secs(1) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
