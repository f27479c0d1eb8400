//! A node configured with a TLS Electrum URL (`ssl://`) reaches its chain through it: a TLS
//! endpoint on loopback (rustls, the self-signed certificate in `tests/fixtures/tls`) in front
//! of the regtest's electrs. Started with `accept_invalid_certs`, the node syncs its wallet
//! over TLS and sees a payment to it confirm; with the certificate checked (the default), the
//! same self-signed server is refused and the node does not start. The endpoint counts the
//! TLS sessions it completed, so the test knows the wallet's traffic went through it.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asyncpay::chain::electrum::Electrum;
use asyncpay::chain::regtest::{Regtest, RegtestOptions};
use asyncpay::mailbox::server::{MailboxServer, ServerConfig};
use asyncpay::node::core::Role;
use asyncpay::node::runtime::{self, NodeConfig};
use bitcoin::address::NetworkUnchecked;
use bitcoin::{Address, Amount, Network};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig as TlsConfig};
use tokio_rustls::TlsAcceptor;

const PAID_SAT: u64 = 123_456;

/// A TLS endpoint on a free loopback port that forwards each session to `backend`; returns
/// its port and the number of TLS sessions completed so far.
async fn tls_front(backend: String) -> (u16, Arc<AtomicUsize>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    let certs = CertificateDer::pem_file_iter(format!("{dir}/cert.pem"))
        .expect("cert.pem")
        .collect::<Result<Vec<_>, _>>()
        .expect("a certificate");
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/key.pem")).expect("key.pem");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = TlsConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let sessions = Arc::new(AtomicUsize::new(0));
    let counted = sessions.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, backend, counted) = (acceptor.clone(), backend.clone(), counted.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends its handshake here.
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                let Ok(mut plain) = TcpStream::connect(&backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, sessions)
}

#[test]
fn node_syncs_over_a_tls_electrum_server_and_refuses_an_unchecked_certificate() {
    let chain = Regtest::start(RegtestOptions {
        electrs: true,
        ..RegtestOptions::default()
    })
    .expect("regtest with electrs");
    let root = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let backend = chain.electrum_url().expect("electrs runs");
        let (port, sessions) = tls_front(backend).await;
        let url = format!("ssl://127.0.0.1:{port}");

        let mut mailbox_config = ServerConfig::new(root.path().join("mailbox"));
        mailbox_config.listen = "127.0.0.1:0".parse().expect("addr");
        std::fs::create_dir_all(&mailbox_config.data_dir).expect("mailbox dir");
        let mailbox = MailboxServer::start(mailbox_config)
            .await
            .expect("mailbox starts");

        // Checked (the default): the self-signed certificate is refused, the node does not
        // start, and no TLS session completed.
        let checked = NodeConfig::new(
            Role::Payee,
            root.path().join("checked"),
            Electrum::new(url.as_str()),
            mailbox.url(),
        );
        let refused = runtime::start(checked).await;
        let error = refused.expect_err("a self-signed server is refused");
        eprintln!("checked certificate: {error}");
        assert!(
            error.to_string().contains("UnknownIssuer"),
            "refused because no trusted authority issued it: {error}"
        );
        assert_eq!(sessions.load(Ordering::SeqCst), 0, "no session completed");

        // Accepted: the node syncs over TLS.
        let electrum = Electrum::new(url.as_str()).accept_invalid_certs(true);
        let config = NodeConfig::new(
            Role::Payee,
            root.path().join("node"),
            electrum,
            mailbox.url(),
        );
        let node = runtime::start(config)
            .await
            .expect("the node starts over TLS");
        assert!(
            sessions.load(Ordering::SeqCst) > 0,
            "the wallet synced through TLS"
        );
        let address = node
            .new_address()
            .await
            .expect("an address")
            .parse::<Address<NetworkUnchecked>>()
            .expect("an address")
            .require_network(Network::Regtest)
            .expect("a regtest address");
        let (coin, _) = chain
            .fund(&address.script_pubkey(), Amount::from_sat(PAID_SAT))
            .expect("the faucet pays");
        chain.confirm(&coin.txid).expect("confirmed");
        chain.wait_for_electrs_tip().expect("electrs follows");
        let started = Instant::now();
        loop {
            let (confirmed, _) = node.balance().await.expect("balance");
            if confirmed == PAID_SAT {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the node never saw its coin over TLS (confirmed {confirmed})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!(
            "{} TLS sessions; the coin confirmed in {:?}",
            sessions.load(Ordering::SeqCst),
            started.elapsed()
        );
        node.stop().await.expect("the node stops");
        mailbox.shutdown().await.expect("mailbox stops");
    });
}
