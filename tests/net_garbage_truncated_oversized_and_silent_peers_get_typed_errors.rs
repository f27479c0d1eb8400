//! Whatever a peer sends — garbage, oversized or truncated frames, tampered ciphertext, a
//! message longer than the limit, or nothing at all — the other end gets a typed error
//! and drops the connection; nothing panics and nothing waits forever.

mod net_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use asyncpay::net::frame::{MAX_CHUNK_LEN, MAX_HANDSHAKE_FRAME_LEN, MAX_MESSAGE_LEN};
use asyncpay::net::handshake::Role;
use asyncpay::net::{
    connect, connect_with, initiate_on, respond_on, Allow, Listener, NetConfig, NetError,
};
use net_support::{key, RawPeer};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SHORT: NetConfig = NetConfig {
    handshake_timeout: Duration::from_millis(300),
};

/// The LSP (key 1) listening for the payer (key 2), with a short handshake timeout.
async fn lsp_listener() -> anyhow::Result<(Listener, SocketAddr)> {
    let listener = Listener::bind(
        "127.0.0.1:0",
        Arc::new(key(1)),
        Allow::keys([key(2).public_key()]),
    )
    .await?
    .with_config(SHORT);
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Sends `bytes` raw to the listener (optionally closing our side afterwards) and returns
/// what `accept` made of it.
async fn accept_after_raw(bytes: Vec<u8>, close: bool) -> anyhow::Result<NetError> {
    let (listener, addr) = lsp_listener().await?;
    let client = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(&bytes).await?;
        if close {
            stream.shutdown().await?;
        }
        // Hold the socket until the listener has decided.
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink).await;
        Ok::<_, std::io::Error>(())
    });
    let err = listener
        .accept()
        .await
        .expect_err("raw bytes are no handshake");
    client.await??;
    Ok(err)
}

#[tokio::test]
async fn text_sent_to_the_listener_is_an_oversized_frame() -> anyhow::Result<()> {
    let err = accept_after_raw(b"GET / HTTP/1.1\r\nHost: lsp\r\n\r\n".to_vec(), false).await?;
    // "GE" read as a length prefix is 0x4745 = 18245 bytes, far above any handshake message.
    assert!(
        matches!(err, NetError::FrameTooLarge { len: 0x4745, max } if max == MAX_HANDSHAKE_FRAME_LEN),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_well_sized_but_forged_handshake_fails_noise() -> anyhow::Result<()> {
    let (listener, addr) = lsp_listener().await?;
    let accepted = tokio::spawn(async move { listener.accept().await });
    let mut stream = TcpStream::connect(addr).await?;
    // Message 1 is a bare ephemeral key: any 32 bytes pass. Message 3 must decrypt.
    let mut first = vec![0, 32];
    first.extend_from_slice(&[0x11; 32]);
    stream.write_all(&first).await?;
    let mut second = [0u8; 2 + 96];
    stream.read_exact(&mut second).await?;
    assert_eq!(&second[..2], &[0, 96]);
    let mut third = vec![0, 64];
    third.extend_from_slice(&[0x22; 64]);
    stream.write_all(&third).await?;
    let err = accepted.await?.expect_err("forged message 3");
    assert!(
        matches!(err, NetError::Noise(snow::Error::Decrypt)),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_handshake_message_with_a_payload_is_refused() -> anyhow::Result<()> {
    let mut first = vec![0, 37];
    first.extend_from_slice(&[0x11; 32]);
    first.extend_from_slice(b"hello");
    let err = accept_after_raw(first, false).await?;
    assert!(
        matches!(err, NetError::UnexpectedHandshakePayload { len: 5 }),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_truncated_handshake_frame_is_reported_as_truncated() -> anyhow::Result<()> {
    let mut partial = vec![0, 32];
    partial.extend_from_slice(&[0x11; 10]);
    let err = accept_after_raw(partial, true).await?;
    assert!(
        matches!(err, NetError::Truncated { buffered: 12 }),
        "{err:?}"
    );
    let err = accept_after_raw(Vec::new(), true).await?;
    assert!(matches!(err, NetError::Closed), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn a_silent_peer_times_out_on_either_side() -> anyhow::Result<()> {
    // Silent client: connects and says nothing.
    let (listener, addr) = lsp_listener().await?;
    let silent_client = TcpStream::connect(addr).await?;
    let err = listener.accept().await.expect_err("silent client");
    assert!(
        matches!(err, NetError::HandshakeTimeout { after } if after == SHORT.handshake_timeout),
        "{err:?}"
    );
    drop(silent_client);

    // Silent server: accepts and says nothing.
    let silent = TcpListener::bind("127.0.0.1:0").await?;
    let addr = silent.local_addr()?;
    let holder = tokio::spawn(async move {
        let (stream, _) = silent.accept().await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(stream);
        Ok::<_, std::io::Error>(())
    });
    let err = connect_with(addr, &key(2), key(1).public_key(), SHORT)
        .await
        .expect_err("silent server");
    assert!(matches!(err, NetError::HandshakeTimeout { .. }), "{err:?}");
    holder.abort();
    Ok(())
}

#[tokio::test]
async fn a_server_that_hangs_up_gives_closed() -> anyhow::Result<()> {
    let rude = TcpListener::bind("127.0.0.1:0").await?;
    let addr = rude.local_addr()?;
    let server = tokio::spawn(async move {
        let (stream, _) = rude.accept().await?;
        drop(stream);
        Ok::<_, std::io::Error>(())
    });
    let err = connect(addr, &key(2), key(1).public_key())
        .await
        .expect_err("hung up");
    assert!(matches!(err, NetError::Closed | NetError::Io(_)), "{err:?}");
    server.await??;
    Ok(())
}

/// A raw peer that passes the handshake as the payer, so it can misbehave afterwards.
async fn authenticated_raw_payer() -> anyhow::Result<(RawPeer, asyncpay::net::Connection)> {
    let (listener, addr) = lsp_listener().await?;
    let accepted = tokio::spawn(async move { listener.accept().await });
    let mut raw = RawPeer::initiate(addr).await?;
    raw.send_binding(&key(2), Role::Initiator).await?;
    let lsp = accepted.await??;
    let lsp_binding = raw.recv_frame().await?;
    assert_eq!(lsp_binding.len(), 4 + 96);
    Ok((raw, lsp))
}

#[tokio::test]
async fn an_authenticated_peer_announcing_an_oversized_message_is_refused() -> anyhow::Result<()> {
    let (mut raw, mut lsp) = authenticated_raw_payer().await?;
    assert_eq!(lsp.peer(), key(2).public_key());
    let announced = (MAX_MESSAGE_LEN as u32 + 1).to_be_bytes();
    raw.send_frame(&announced).await?;
    let err = lsp.recv().await.expect_err("oversized announcement");
    assert!(
        matches!(err, NetError::MessageTooLarge { len, max } if len == MAX_MESSAGE_LEN + 1 && max == MAX_MESSAGE_LEN),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_message_cut_off_between_its_frames_is_truncated() -> anyhow::Result<()> {
    let (mut raw, mut lsp) = authenticated_raw_payer().await?;
    // Announce a full-size message, send only its first frame, then hang up.
    let mut first = (MAX_MESSAGE_LEN as u32).to_be_bytes().to_vec();
    first.resize(MAX_CHUNK_LEN, 0xab);
    raw.send_frame(&first).await?;
    raw.stream.shutdown().await?;
    let err = lsp.recv().await.expect_err("cut off");
    assert!(
        matches!(err, NetError::Truncated { buffered: 0 }),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_tampered_frame_fails_authentication() -> anyhow::Result<()> {
    let (listener, lsp_addr) = lsp_listener().await?;
    // A relay between payer and LSP that flips one bit of the payer's first message, after
    // the handshake: message 1 (2+32), message 3 (2+64), the binding frame (2+4+96+16).
    const HANDSHAKE_BYTES: usize = 34 + 66 + 118;
    let relay = TcpListener::bind("127.0.0.1:0").await?;
    let relay_addr = relay.local_addr()?;
    tokio::spawn(async move {
        let (client, _) = relay.accept().await?;
        let server = TcpStream::connect(lsp_addr).await?;
        let (mut client_rx, mut client_tx) = client.into_split();
        let (mut server_rx, mut server_tx) = server.into_split();
        tokio::spawn(async move { tokio::io::copy(&mut server_rx, &mut client_tx).await });
        let mut seen = 0usize;
        let mut buf = [0u8; 4096];
        loop {
            let n = client_rx.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            let flip = HANDSHAKE_BYTES + 10;
            if (seen..seen + n).contains(&flip) {
                buf[flip - seen] ^= 0x01;
            }
            seen += n;
            server_tx.write_all(&buf[..n]).await?;
        }
        Ok::<_, std::io::Error>(())
    });

    let accepted = tokio::spawn(async move { listener.accept().await });
    let mut payer = connect(relay_addr, &key(2), key(1).public_key()).await?;
    let mut lsp = accepted.await??;
    payer.send(&[0x55; 100]).await?;
    let err = lsp.recv().await.expect_err("tampered");
    // Frame 0 of this direction was the binding; frame 1 is the tampered message.
    assert!(matches!(err, NetError::Decrypt { frame: 1 }), "{err:?}");
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Random bytes, then end of stream, fed to either side's handshake: always an error,
    /// never a panic or a hang.
    #[test]
    fn random_bytes_never_complete_or_crash_a_handshake(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        as_listener in any::<bool>(),
    ) {
        let result = runtime().block_on(async {
            let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
            let feeder = tokio::spawn(async move {
                let _ = theirs.write_all(&bytes).await;
                let _ = theirs.shutdown().await;
                let mut sink = Vec::new();
                let _ = theirs.read_to_end(&mut sink).await;
            });
            let key1 = key(1);
            let handshake = async {
                if as_listener {
                    respond_on(ours, &key1, &Allow::keys([key(2).public_key()])).await
                } else {
                    initiate_on(ours, &key1, key(2).public_key()).await
                }
            };
            let outcome = tokio::time::timeout(Duration::from_secs(5), handshake).await;
            feeder.abort();
            outcome
        });
        let outcome = result.expect("the handshake ends by itself once the bytes run out");
        prop_assert!(outcome.is_err());
    }
}
