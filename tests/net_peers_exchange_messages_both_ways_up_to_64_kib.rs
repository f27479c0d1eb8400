//! Two nodes that know each other connect over loopback and exchange messages of every size
//! up to the 64 KiB limit, in both directions, also from split halves in separate tasks.

mod net_support;

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use asyncpay::net::frame::MAX_CHUNK_LEN;
use asyncpay::net::{connect, Allow, Connection, Listener, NetError, MAX_MESSAGE_LEN};
use net_support::key;

/// A listener for node 1 that lets node 2 in, and a connection from node 2 to it.
async fn pair() -> anyhow::Result<(Connection, Connection)> {
    let lsp = Arc::new(key(1));
    let lsp_key = lsp.public_key();
    let payer = key(2);
    let listener = Listener::bind("127.0.0.1:0", lsp, Allow::keys([payer.public_key()])).await?;
    let addr = listener.local_addr()?;
    let accepted = tokio::spawn(async move { listener.accept().await });
    let connected = connect(addr, &payer, lsp_key).await?;
    let accepted = accepted.await.context("accept task")??;
    Ok((connected, accepted))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn messages_of_every_boundary_size_arrive_intact_both_ways() -> anyhow::Result<()> {
    let (mut payer, mut lsp) = pair().await?;
    assert_eq!(payer.peer(), key(1).public_key());
    assert_eq!(lsp.peer(), key(2).public_key());

    // Sizes around the one-frame boundary (4-byte header + body = one Noise chunk).
    let sizes = [
        0,
        1,
        1024,
        MAX_CHUNK_LEN - 4,
        MAX_CHUNK_LEN - 3,
        MAX_CHUNK_LEN,
        MAX_MESSAGE_LEN - 1,
        MAX_MESSAGE_LEN,
    ];
    for (i, &len) in sizes.iter().enumerate() {
        let there = pattern(len, i as u8);
        payer.send(&there).await?;
        assert_eq!(lsp.recv().await?, there, "payer -> lsp, {len} bytes");
        let back = pattern(len, 100 + i as u8);
        lsp.send(&back).await?;
        assert_eq!(payer.recv().await?, back, "lsp -> payer, {len} bytes");
    }
    // Several messages in flight at once keep their order and boundaries.
    for &len in &sizes {
        payer.send(&pattern(len, 7)).await?;
    }
    for &len in &sizes {
        assert_eq!(lsp.recv().await?, pattern(len, 7));
    }
    // A half-close: the payer stops sending but still hears the LSP.
    payer.shutdown().await?;
    assert!(matches!(lsp.recv().await, Err(NetError::Closed)));
    lsp.send(b"last word").await?;
    assert_eq!(payer.recv().await?, b"last word");
    Ok(())
}

#[tokio::test]
async fn an_oversized_message_is_refused_before_anything_is_sent() -> anyhow::Result<()> {
    let (mut payer, mut lsp) = pair().await?;
    let err = payer
        .send(&vec![0u8; MAX_MESSAGE_LEN + 1])
        .await
        .expect_err("over the limit");
    assert!(
        matches!(err, NetError::MessageTooLarge { len, max } if len == MAX_MESSAGE_LEN + 1 && max == MAX_MESSAGE_LEN),
        "{err:?}"
    );
    // Nothing reached the wire, so the connection is still in step.
    payer.send(b"still here").await?;
    assert_eq!(lsp.recv().await?, b"still here");
    Ok(())
}

#[tokio::test]
async fn split_halves_work_from_separate_tasks_and_close_cleanly() -> anyhow::Result<()> {
    let (payer, lsp) = pair().await?;
    let (mut payer_rx, mut payer_tx) = payer.into_split();
    let (mut lsp_rx, mut lsp_tx) = lsp.into_split();
    assert_eq!(payer_rx.peer(), key(1).public_key());
    assert_eq!(lsp_tx.peer(), key(2).public_key());
    const N: u32 = 300;

    // Both directions at once: each side writes from one task while reading in another.
    let payer_writer = tokio::spawn(async move {
        for i in 0..N {
            payer_tx
                .send(&pattern(1 + i as usize * 200, i as u8))
                .await?;
        }
        payer_tx.shutdown().await?;
        Ok::<_, NetError>(())
    });
    let lsp_writer = tokio::spawn(async move {
        for i in 0..N {
            lsp_tx.send(&i.to_be_bytes()).await?;
        }
        lsp_tx.shutdown().await?;
        Ok::<_, NetError>(())
    });
    let lsp_reader = tokio::spawn(async move {
        for i in 0..N {
            assert_eq!(lsp_rx.recv().await?, pattern(1 + i as usize * 200, i as u8));
        }
        lsp_rx.recv().await.map(|_| ())
    });
    for i in 0..N {
        assert_eq!(payer_rx.recv().await?, i.to_be_bytes());
    }
    assert!(matches!(payer_rx.recv().await, Err(NetError::Closed)));
    payer_writer.await??;
    lsp_writer.await??;
    // The payer shut its direction after its last message: the LSP sees a clean close.
    assert!(matches!(lsp_reader.await?, Err(NetError::Closed)));
    Ok(())
}

/// Loopback figure: 10,000 round trips of a 1 KiB message (printed, not asserted). Two
/// worker threads, so that the two ends compute in parallel as two processes would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_one_kib_round_trips_are_measured() -> anyhow::Result<()> {
    let (mut payer, lsp) = pair().await?;
    const ROUNDS: usize = 10_000;
    let echo = tokio::spawn(async move {
        let mut lsp = lsp;
        for _ in 0..ROUNDS {
            let message = lsp.recv().await?;
            lsp.send(&message).await?;
        }
        Ok::<_, NetError>(())
    });
    let message = pattern(1024, 3);
    let start = Instant::now();
    for _ in 0..ROUNDS {
        payer.send(&message).await?;
        assert_eq!(payer.recv().await?.len(), 1024);
    }
    let elapsed = start.elapsed();
    echo.await??;
    let per_round = elapsed / ROUNDS as u32;
    let mib_per_s = (2 * ROUNDS * 1024) as f64 / elapsed.as_secs_f64() / (1024.0 * 1024.0);
    println!(
        "NET_FIGURE round_trips={ROUNDS} size=1024 total_ms={} mean_rtt_us={} payload_mib_per_s={mib_per_s:.1}",
        elapsed.as_millis(),
        per_round.as_micros()
    );

    // The handshake itself, for the same report.
    let start = Instant::now();
    const HANDSHAKES: u32 = 50;
    for _ in 0..HANDSHAKES {
        pair().await?;
    }
    println!(
        "NET_FIGURE handshake_mean_us={} (bind + connect + accept, loopback)",
        (start.elapsed() / HANDSHAKES).as_micros()
    );
    Ok(())
}
