//! Peers are known by node key: the listener refuses keys off its allow-list, keys the peer
//! cannot sign for, and bindings replayed from another session; the connecting side refuses
//! a listener that is not the node it asked for. Each refusal is a typed error, the refused
//! connection is dropped, and the listener keeps serving the peers it knows.

mod net_support;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use asyncpay::crypto::keys::SecretKey;
use asyncpay::net::handshake::{binding_digest, Binding, Role};
use asyncpay::net::{connect, Allow, Listener, NetError};
use net_support::{key, RawPeer};
use tokio::net::TcpListener;

/// The LSP (key 1) listens and knows only the payer (key 2).
async fn lsp_listener() -> anyhow::Result<Listener> {
    Ok(Listener::bind(
        "127.0.0.1:0",
        Arc::new(key(1)),
        Allow::keys([key(2).public_key()]),
    )
    .await?)
}

#[tokio::test]
async fn an_unknown_peer_is_refused_and_the_listener_serves_the_next_one() -> anyhow::Result<()> {
    let listener = lsp_listener().await?;
    let addr = listener.local_addr()?;
    let stranger = key(3);
    let attempt = tokio::spawn(async move { connect(addr, &stranger, key(1).public_key()).await });

    let refused = listener.accept().await.expect_err("stranger refused");
    assert!(
        matches!(&refused, NetError::UnknownPeer { peer } if **peer == key(3).public_key()),
        "{refused:?}"
    );
    // The stranger learns nothing: the listener never sent its binding, it just hung up.
    let failed = attempt.await?.expect_err("stranger's connect fails");
    assert!(matches!(failed, NetError::Refused), "{failed:?}");

    // The known payer still gets in on the same listener.
    let payer = key(2);
    let attempt = tokio::spawn(async move { connect(addr, &payer, key(1).public_key()).await });
    let conn = listener.accept().await?;
    assert_eq!(conn.peer(), key(2).public_key());
    assert_eq!(attempt.await??.peer(), key(1).public_key());
    Ok(())
}

#[tokio::test]
async fn an_allow_callback_decides_per_key() -> anyhow::Result<()> {
    let allowed = key(5).public_key();
    let listener = Listener::bind(
        "127.0.0.1:0",
        Arc::new(key(1)),
        Allow::from_fn(move |peer| *peer == allowed),
    )
    .await?;
    let addr = listener.local_addr()?;
    for (byte, admitted) in [(6u8, false), (5u8, true)] {
        let attempt =
            tokio::spawn(async move { connect(addr, &key(byte), key(1).public_key()).await });
        let accepted = listener.accept().await;
        assert_eq!(accepted.is_ok(), admitted, "key {byte}: {accepted:?}");
        assert_eq!(attempt.await?.is_ok(), admitted);
    }
    Ok(())
}

#[tokio::test]
async fn a_peer_claiming_a_key_it_cannot_sign_for_is_refused() -> anyhow::Result<()> {
    let listener = lsp_listener().await?;
    let addr = listener.local_addr()?;
    let accepted = tokio::spawn(async move { listener.accept().await });

    // The impostor (key 9) claims to be the payer (key 2) and signs with its own key.
    let mut impostor = RawPeer::initiate(addr).await?;
    let forged = Binding {
        key: key(2).public_key(),
        signature: key(9).sign(
            &binding_digest(Role::Initiator, &impostor.handshake_hash),
            &[0u8; 32],
        ),
    };
    impostor.send_message(&forged.to_bytes()).await?;

    let refused = accepted.await?.expect_err("impostor refused");
    assert!(
        matches!(&refused, NetError::BadBindingSignature { claimed } if **claimed == key(2).public_key()),
        "{refused:?}"
    );
    assert!(impostor.sees_close().await, "listener hangs up");
    Ok(())
}

#[tokio::test]
async fn a_binding_captured_in_one_session_is_refused_in_another() -> anyhow::Result<()> {
    // The payer dials a node run by the attacker, which records the payer's binding...
    let trap = TcpListener::bind("127.0.0.1:0").await?;
    let trap_addr = trap.local_addr()?;
    let payer = key(2);
    let victim = tokio::spawn(async move {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            connect(trap_addr, &payer, key(9).public_key()),
        )
        .await;
    });
    let mut trap_side = RawPeer::respond(&trap).await?;
    let captured = trap_side.recv_frame().await?;
    assert_eq!(captured.len(), 4 + 96, "header and binding in one frame");
    let binding = Binding::parse(&captured[4..])?;
    assert_eq!(binding.key, key(2).public_key());
    assert_eq!(
        binding.verify(Role::Initiator, &trap_side.handshake_hash)?,
        key(2).public_key(),
        "the capture is a valid binding for the trap's session"
    );
    let trap_hash = trap_side.handshake_hash.clone();
    drop(trap_side);
    victim.await.context("victim task")?;

    // ...and replays it to the LSP as its own: the LSP's session has another handshake hash.
    let listener = lsp_listener().await?;
    let addr = listener.local_addr()?;
    let accepted = tokio::spawn(async move { listener.accept().await });
    let mut replayer = RawPeer::initiate(addr).await?;
    assert_ne!(replayer.handshake_hash, trap_hash);
    replayer.send_frame(&captured).await?;
    let refused = accepted.await?.expect_err("replay refused");
    assert!(
        matches!(&refused, NetError::BadBindingSignature { claimed } if **claimed == key(2).public_key()),
        "{refused:?}"
    );
    Ok(())
}

#[tokio::test]
async fn connecting_to_a_listener_with_another_key_fails() -> anyhow::Result<()> {
    // Node 4 listens where the payer expected the LSP (node 1); it would let the payer in.
    let imposter_lsp = Arc::new(key(4));
    let listener = Listener::bind(
        "127.0.0.1:0",
        imposter_lsp,
        Allow::keys([key(2).public_key()]),
    )
    .await?;
    let addr = listener.local_addr()?;
    let accepted = tokio::spawn(async move { listener.accept().await });

    let failed = connect(addr, &key(2), key(1).public_key())
        .await
        .expect_err("wrong listener");
    assert!(
        matches!(&failed, NetError::UnexpectedPeer { expected, claimed }
            if **expected == key(1).public_key() && **claimed == key(4).public_key()),
        "{failed:?}"
    );
    // The listener finished its side; the payer hangs up after, so whatever it then does
    // with the connection fails.
    let mut conn = accepted.await??;
    assert!(conn.recv().await.is_err());
    Ok(())
}

#[tokio::test]
async fn a_listener_that_cannot_sign_for_the_expected_key_is_refused() -> anyhow::Result<()> {
    // A raw responder claims to be the LSP (node 1) but signs with node 9's key.
    let trap = TcpListener::bind("127.0.0.1:0").await?;
    let addr = trap.local_addr()?;
    let responder = tokio::spawn(async move {
        let mut raw = RawPeer::respond(&trap).await?;
        let _their_binding = raw.recv_frame().await?;
        let forged = Binding {
            key: key(1).public_key(),
            signature: key(9).sign(
                &binding_digest(Role::Responder, &raw.handshake_hash),
                &[0u8; 32],
            ),
        };
        raw.send_message(&forged.to_bytes()).await?;
        Ok::<_, anyhow::Error>(raw)
    });
    let failed = connect(addr, &key(2), key(1).public_key())
        .await
        .expect_err("forged listener refused");
    assert!(
        matches!(&failed, NetError::BadBindingSignature { claimed } if **claimed == key(1).public_key()),
        "{failed:?}"
    );
    responder.await??;
    Ok(())
}

#[tokio::test]
async fn node_secret_keys_do_not_show_in_debug_output() -> anyhow::Result<()> {
    let secret = SecretKey::from_bytes([0x42; 32]).expect("valid");
    let secret_hex = hex::encode(secret.to_secret_bytes());
    let listener = Listener::bind("127.0.0.1:0", Arc::new(secret), Allow::keys([])).await?;
    let shown = format!("{listener:?}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert!(!shown.contains(&secret_hex), "{shown}");
    Ok(())
}
