//! On the regtest, a node started in process (`asyncpay::node::runtime::start`) is paid to its
//! wallet, reports the balance, and withdraws to an address through the mempool: part of the
//! coins, then everything that is left. A withdrawal above the balance, to an address of
//! another network, or to garbage is refused and moves nothing.

use std::time::{Duration, Instant};

use asyncpay::chain::regtest::{Regtest, RegtestOptions};
use asyncpay::node::core::Role;
use asyncpay::node::runtime::{start, NodeConfig, NodeHandle, RuntimeError};
use bitcoin::{Address, Amount, Network};

const FUNDED: u64 = 100_000;
const SENT: u64 = 60_000;

/// Polls the node's balance until `want` holds.
async fn balance_until(
    node: &NodeHandle,
    what: &str,
    want: impl Fn((u64, u64)) -> bool,
) -> (u64, u64) {
    let started = Instant::now();
    loop {
        let balance = node.balance().await.expect("balance");
        if want(balance) {
            return balance;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: balance stays {balance:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn node_wallet_withdraws_to_an_address_through_the_mempool() {
    let chain = Regtest::start(RegtestOptions {
        electrs: true,
        ..RegtestOptions::default()
    })
    .expect("regtest with electrs");
    let root = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let faucet = Address::from_script(&chain.faucet_script_pubkey(), Network::Regtest)
        .expect("the faucet's script is an address")
        .to_string();
    runtime.block_on(async {
        let config = NodeConfig::new(
            Role::Payee,
            root.path().join("payee"),
            chain.electrum_url().expect("electrum url"),
            "http://127.0.0.1:9",
        );
        let node = start(config).await.expect("node starts");
        let address: Address<bitcoin::address::NetworkUnchecked> = node
            .new_address()
            .await
            .expect("address")
            .parse()
            .expect("an address");
        let address = address.require_network(Network::Regtest).expect("regtest");
        chain
            .fund(&address.script_pubkey(), Amount::from_sat(FUNDED))
            .expect("the faucet pays");
        chain.mine(1).expect("mine");
        balance_until(&node, "funded", |(c, _)| c == FUNDED).await;

        // Refusals move nothing.
        for (to, amount, why) in [
            (faucet.as_str(), Some(FUNDED * 2), "above the balance"),
            (
                "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
                Some(SENT),
                "a mainnet address",
            ),
            ("not an address", Some(SENT), "garbage"),
        ] {
            let refused = node.withdraw(to, amount, None).await;
            assert!(
                matches!(
                    refused,
                    Err(RuntimeError::Refused { .. }) | Err(RuntimeError::Wallet(_))
                ),
                "{why}: {refused:?}"
            );
        }
        assert_eq!(node.balance().await.expect("balance"), (FUNDED, 0));

        // Part of it: the transaction goes through the mempool and confirms.
        let txid = node
            .withdraw(&faucet, Some(SENT), Some(3))
            .await
            .expect("withdraws");
        assert!(chain.in_mempool(&txid).expect("mempool"), "in the mempool");
        let tx = chain.transaction(&txid).expect("known to the node");
        assert!(tx
            .output
            .iter()
            .any(|o| o.script_pubkey == chain.faucet_script_pubkey()
                && o.value == Amount::from_sat(SENT)));
        chain.confirm(&txid).expect("confirms");
        let (left, _) = balance_until(&node, "after the withdrawal", |(c, p)| {
            c < FUNDED - SENT && p == 0
        })
        .await;
        let fee = FUNDED - SENT - left;
        assert!(
            fee >= 3 * tx.vsize() as u64 && fee < 10 * tx.vsize() as u64,
            "fee {fee} sat for {} vB at 3 sat/vB",
            tx.vsize()
        );

        // Everything that is left.
        let all = node.withdraw(&faucet, None, None).await.expect("drains");
        chain.confirm(&all).expect("confirms");
        balance_until(&node, "drained", |(c, p)| c == 0 && p == 0).await;
        println!("withdrew {SENT} sat (fee {fee} sat), then the remaining {left} sat less its fee");
        node.stop().await.expect("stops");
    });
}
