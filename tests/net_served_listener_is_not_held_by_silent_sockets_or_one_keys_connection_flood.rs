//! `Listener::serve` in process: fifty silent sockets from other addresses do not delay an
//! allow-listed peer; a socket that stays silent is dropped after the first-message timeout;
//! the handshake caps close connections beyond them at once; and one key's flood of
//! connections leaves only the newest ones open, the older ones superseded.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use asyncpay::crypto::keys::SecretKey;
use asyncpay::net::{connect, Admission, Allow, Listener, NetError};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

fn key(byte: u8) -> SecretKey {
    SecretKey::from_bytes([byte; 32]).expect("valid key")
}

async fn from(source: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(to).await
}

/// Time until the other end closes `stream` (at most 10 s).
async fn closed_within(stream: &mut TcpStream) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 16];
    match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Some(start.elapsed()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_do_not_hold_the_door() {
    let lsp = Arc::new(key(1));
    let lsp_key = lsp.public_key();
    let payer = key(2);
    let listener = Listener::bind("127.0.0.1:0", lsp, Allow::keys([payer.public_key()]))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let admission = Admission {
        first_message_timeout: Duration::from_millis(500),
        ..Admission::default()
    };
    let mut served = listener.serve(admission);

    // 50 silent sockets, five from each of ten addresses: all within the caps, all held.
    let mut silent = Vec::new();
    for i in 0..50u8 {
        silent.push(from([127, 0, 0, 2 + i / 5], addr).await.expect("connect"));
    }
    let t = Instant::now();
    let _conn = connect(addr, &payer, lsp_key).await.expect("payer gets in");
    let admitted = served.next().await.expect("admitted");
    let elapsed = t.elapsed();
    assert_eq!(admitted.connection.peer(), payer.public_key());
    println!("NET_ADMISSION connect with 50 silent sockets held: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(1));

    // Each silent socket is dropped once the first-message timeout passes.
    for s in &mut silent {
        let closed = closed_within(s).await.expect("closed by the listener");
        assert!(closed < Duration::from_secs(2), "{closed:?}");
    }

    // Beyond the per-address cap (8), a connection is closed at once.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(from([127, 0, 0, 60], addr).await.expect("connect"));
    }
    let mut ninth = from([127, 0, 0, 60], addr).await.expect("connect");
    let closed = closed_within(&mut ninth).await.expect("ninth closed");
    println!("NET_ADMISSION ninth socket from one address closed after {closed:?}");
    assert!(closed < Duration::from_millis(400), "{closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_keys_flood_keeps_only_its_newest_connections() {
    let lsp = Arc::new(key(1));
    let lsp_key = lsp.public_key();
    let payer = Arc::new(key(2));
    let listener = Listener::bind("127.0.0.1:0", lsp, Allow::keys([payer.public_key()]))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut served = listener.serve(Admission::default());

    // The server side: hold each admitted connection until superseded, then drop it.
    let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let (live, peak) = (live.clone(), peak.clone());
        tokio::spawn(async move {
            while let Some(mut admitted) = served.next().await {
                let (live, peak) = (live.clone(), peak.clone());
                tokio::spawn(async move {
                    use std::sync::atomic::Ordering::SeqCst;
                    let now = live.fetch_add(1, SeqCst) + 1;
                    peak.fetch_max(now, SeqCst);
                    admitted.superseded.wait().await;
                    live.fetch_sub(1, SeqCst);
                    drop(admitted);
                });
            }
        });
    }
    let mut clients = Vec::new();
    let mut refused = 0;
    for _ in 0..30 {
        let mut batch = Vec::new();
        for _ in 0..10 {
            let payer = payer.clone();
            batch.push(tokio::spawn(
                async move { connect(addr, &payer, lsp_key).await },
            ));
        }
        for task in batch {
            match task.await.expect("task") {
                Ok(conn) => clients.push(conn),
                Err(NetError::Refused | NetError::Closed | NetError::Io(_)) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
    }
    // Every connection but the newest two is closed by the listener.
    let mut open = 0;
    for conn in clients.iter_mut() {
        if tokio::time::timeout(Duration::from_millis(100), conn.recv())
            .await
            .is_err()
        {
            open += 1;
        }
    }
    let peak = peak.load(std::sync::atomic::Ordering::SeqCst);
    println!(
        "NET_ADMISSION 300 connections of one key: {} admitted, {refused} closed at the handshake cap, {open} open at the end, at most {peak} held at once",
        clients.len()
    );
    assert_eq!(open, 2);
    // At most the two kept, plus those admitted in the same instant before the table
    // superseded them (bounded by the per-address handshake cap, 8).
    assert!(peak <= 2 + 8, "{peak}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_total_cap_the_oldest_handshake_makes_room() {
    let lsp = Arc::new(key(1));
    let lsp_key = lsp.public_key();
    let payer = key(2);
    let listener = Listener::bind("127.0.0.1:0", lsp, Allow::keys([payer.public_key()]))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let admission = Admission {
        max_handshakes: 16,
        first_message_timeout: Duration::from_secs(30),
        ..Admission::default()
    };
    let mut served = listener.serve(admission);
    // 40 silent sockets from five addresses (8 each, the per-address cap): the total cap of
    // 16 keeps only the newest 16, the first 24 are dropped in turn.
    let mut silent = Vec::new();
    for i in 0..40u8 {
        silent.push(from([127, 0, 0, 2 + i / 8], addr).await.expect("connect"));
    }
    let t = Instant::now();
    let _conn = connect(addr, &payer, lsp_key).await.expect("payer gets in");
    let admitted = served.next().await.expect("admitted");
    println!(
        "NET_ADMISSION connect with the total cap full of silent sockets: {:?}",
        t.elapsed()
    );
    assert_eq!(admitted.connection.peer(), payer.public_key());
    // The oldest were closed by the listener well before their 30 s timeout.
    let mut dropped = 0;
    for s in silent.iter_mut().take(24) {
        if closed_within(s)
            .await
            .is_some_and(|d| d < Duration::from_secs(5))
        {
            dropped += 1;
        }
    }
    assert_eq!(dropped, 24);
}
