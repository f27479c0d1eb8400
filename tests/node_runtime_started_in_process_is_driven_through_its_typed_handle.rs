//! The node runtime started in process (`asyncpay::node::runtime::start`) is driven through
//! its typed handle, by the one driver `asyncpay node run` also uses: two nodes admit and dial
//! each other, show their status and contact card, list no channel and no payment, report the
//! connection on their event streams, refuse a channel to a peer that is not connected, a
//! payment with a forged contact card and a cooperative close of a channel they do not have,
//! and stop cleanly (their `node.json` is gone, the handle's task ends, the event stream
//! closes).

mod node_process_support;

use std::time::Duration;

use asyncpay::node::core::Role;
use asyncpay::node::runtime::{start, NodeConfig, NodeEvent, RuntimeError};
use asyncpay::protocol::messages::ChannelId;
use node_process_support::FakeElectrum;

#[test]
fn two_nodes_started_in_process_are_driven_through_their_handles() {
    let electrum = FakeElectrum::start();
    let root = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // Nothing listens there: no test here posts to or fetches from a mailbox.
        let mailbox = "http://127.0.0.1:9";
        let config = |role, name: &str| {
            NodeConfig::new(role, root.path().join(name), electrum.url.clone(), mailbox)
        };
        let lsp = start(config(Role::Lsp, "lsp")).await.expect("lsp starts");
        let payer = start(config(Role::Payer, "payer")).await.expect("payer starts");
        let mut lsp_events = lsp.events();
        assert!(root.path().join("lsp/node.json").exists());

        let (lsp_key, payer_key) = (lsp.info().node_key, payer.info().node_key);
        // Not admitted yet: the LSP refuses the payer's key.
        let refused = payer.connect(lsp_key, Some(lsp.info().peer_addr)).await;
        assert!(
            matches!(&refused, Err(RuntimeError::Refused { reason }) if reason.contains("refused")),
            "{refused:?}"
        );
        lsp.connect(payer_key, None).await.expect("lsp admits the payer");
        payer
            .connect(lsp_key, Some(lsp.info().peer_addr))
            .await
            .expect("the payer dials the lsp");

        // The LSP's stream reports the payer's connection.
        let connected = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match lsp_events.recv().await {
                    Ok(NodeEvent::Connected { peer }) => return peer,
                    Ok(_) => continue,
                    Err(e) => panic!("event stream: {e}"),
                }
            }
        })
        .await
        .expect("the connection is reported");
        assert_eq!(connected, payer_key);
        for node in [&lsp, &payer] {
            assert!(node.list_channels().await.expect("channels").is_empty());
            assert!(node.list_payments().await.expect("payments").is_empty());
        }

        let status = payer.status().await.expect("status");
        assert_eq!(status["role"], "payer");
        assert_eq!(status["node_key"], payer_key.to_string());
        let card = lsp.contact().await.expect("contact");
        let verified = card.verify().expect("the card verifies");
        assert_eq!(
            asyncpay::crypto::keys::PublicKey::from(verified.node_key),
            lsp_key
        );

        // A channel to a peer that is not connected is refused, with the reason.
        let stranger = asyncpay::crypto::keys::SecretKey::from_bytes([9u8; 32])
            .expect("key")
            .public_key();
        let open = payer.open_channel(stranger, 100_000).await;
        assert!(
            matches!(&open, Err(RuntimeError::Refused { reason }) if reason.contains("not connected")),
            "{open:?}"
        );
        // A payment to a forged contact card is refused before anything is stored.
        let mut forged = card.clone();
        forged.mailbox_url = "http://127.0.0.1:1".into();
        let pay = payer.pay(lsp_key, 1_000, forged, None, None).await;
        assert!(matches!(pay, Err(RuntimeError::Refused { .. })), "{pay:?}");
        // A cooperative close of a channel the node does not have is refused.
        let close = payer.close(ChannelId([3; 32])).await;
        assert!(
            matches!(&close, Err(RuntimeError::Refused { reason }) if reason.contains("unknown channel")),
            "{close:?}"
        );

        tokio::time::timeout(Duration::from_secs(20), payer.stop())
            .await
            .expect("the payer stops in time")
            .expect("cleanly");
        tokio::time::timeout(Duration::from_secs(20), lsp.stop())
            .await
            .expect("the lsp stops in time")
            .expect("cleanly");
        assert!(!root.path().join("lsp/node.json").exists());
        // Once the node has stopped, its stream ends after what it had delivered.
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match lsp_events.recv().await {
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    Err(e) => panic!("event stream: {e}"),
                }
            }
        })
        .await
        .expect("the stream closes once the node has stopped");
    });
}
