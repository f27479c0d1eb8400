//! A private signet of the project's own: bitcoind (BIP118-patched) runs `-signet` with the
//! challenge of a block signer written here (BIP325), and every block is built from
//! `getblocktemplate`, signed, ground and submitted by the harness.
//!
//! - The node reports chain `signet` with the project's challenge, and BIP118 active.
//! - A block signed by another key, or not signed, is refused by the node.
//! - One payment on it, on node cores with channels funded through the signet's mempool:
//!   A pays an offline B through S and goes offline; B sells; A, back, closes A–S alone with
//!   the state it paid in. The update (BIP118 signatures) and its settlement go through the
//!   mempool as CPFP packages and confirm in signed blocks; the settlement pays A its
//!   capacity less amount and fee, S amount and fee.

mod tx_support;

use std::sync::Arc;

use anyhow::{ensure, Context};
use asyncpay::chain::regtest::{Regtest, RegtestOptions};
use asyncpay::chain::signet::{self, SignetSigner};
use asyncpay::node::core::{NodeCommand, NodeInput};
use asyncpay::testing::*;
use asyncpay::tx::STATE_LOCKTIME_BASE;
use bitcoin::consensus::encode::serialize_hex;
use serde_json::{json, Value};

const AMOUNT: u64 = 50_000;

fn start() -> Arc<Regtest> {
    let options = RegtestOptions {
        signet: Some(SignetSigner::from_seed(b"asyncpay test signet")),
        ..Default::default()
    };
    Arc::new(Regtest::start(options).expect("a BIP118-enforcing private signet"))
}

/// A block from the node's template, signed by `signer` (or not signed), with its proof of
/// work: what the node answers to `submitblock`.
fn submit(chain: &Regtest, signer: Option<&SignetSigner>) -> Value {
    let template: Value = chain
        .rpc(
            "getblocktemplate",
            &[json!({"rules": ["segwit", "signet"]})],
        )
        .unwrap();
    let payout = chain.faucet_script_pubkey();
    let mut block = signet::block_from_template(&template, &payout, b"other").unwrap();
    if let Some(signer) = signer {
        signer.sign(&mut block).unwrap();
    }
    signet::grind(&mut block.header).unwrap();
    chain
        .rpc("submitblock", &[json!(serialize_hex(&block))])
        .unwrap()
}

#[test]
fn private_signet_enforces_bip118_and_refuses_blocks_signed_by_another_key() {
    let chain = start();
    let signer = chain.signet_signer().expect("a signet").clone();
    let info: Value = chain.rpc("getblockchaininfo", &[]).unwrap();
    assert_eq!(info["chain"], "signet");
    assert_eq!(
        info["signet_challenge"],
        signer.challenge().to_hex_string(),
        "the project's challenge"
    );
    assert!(chain.anyprevout_active().unwrap(), "BIP118 is enforced");

    let height = chain.height().unwrap();
    let other = SignetSigner::from_seed(b"someone else");
    let answer = submit(&chain, Some(&other));
    assert!(
        answer.as_str().is_some_and(|a| a.contains("signet")),
        "a block signed by another key is refused: {answer}"
    );
    let answer = submit(&chain, None);
    assert!(
        answer.as_str().is_some_and(|a| a.contains("signet")),
        "an unsigned block is refused: {answer}"
    );
    assert_eq!(chain.height().unwrap(), height, "neither joined the chain");
    // The signer's own block joins it.
    assert_eq!(submit(&chain, Some(&signer)), Value::Null);
    assert_eq!(chain.height().unwrap(), height + 1);
}

#[test]
fn payment_on_the_private_signet_settles_on_chain_through_the_mempool() -> anyhow::Result<()> {
    let chain = start();
    let fees = tx_support::keypair("signet-payment-fees");
    let coins = tx_support::fee_coins(&chain, &fees, 2);
    let (mut sim, a_s, id) = Network::paid_offline_on_chain(chain.clone(), AMOUNT)?;
    sim.start(B)?;
    sim.fetch_letters(B)?;
    ensure!(
        sim.nodes[B].status(&id) == Some("paid"),
        "B sold A's signature: {:?}",
        sim.refusals
    );
    sim.start(A)?;
    sim.pump()?;
    ensure!(sim.nodes[A].status(&id) == Some("completed"));

    // A closes A–S alone with state 1.
    let before = sim.broadcasts.len();
    sim.input(
        A,
        NodeInput::Command(NodeCommand::ForceClose { channel_id: a_s }),
    )?;
    let update = sim.broadcasts[before..]
        .iter()
        .find(|tx| tx.lock_time.to_consensus_u32() >= STATE_LOCKTIME_BASE)
        .cloned()
        .context("A's node publishes an update")?;
    ensure!(update.lock_time.to_consensus_u32() - STATE_LOCKTIME_BASE == 1);
    let (txid, at) =
        tx_support::confirm_using(&chain, &update, &fees, coins[0].clone(), "the update")?;
    sim.block(at)?;
    sim.input(
        A,
        NodeInput::Spend {
            tx: update.clone(),
            confirmed_at: Some(at),
        },
    )?;
    let limit = u64::from(at) + 3 * u64::from(PAYER_DELAY);
    let settlement = sim.mine_until_settlement(&chain, txid, limit)?;
    tx_support::confirm_using(
        &chain,
        &settlement,
        &fees,
        coins[1].clone(),
        "the settlement",
    )?;
    let mut paid = tx_support::unspent_amounts(&chain, &settlement);
    paid.sort_unstable();
    let fee = policy().fee_for(AMOUNT);
    let mut expected = vec![A_S_CAPACITY - AMOUNT - fee, AMOUNT + fee];
    expected.sort_unstable();
    ensure!(
        paid == expected,
        "settlement pays {paid:?}, not {expected:?}"
    );
    Ok(())
}
