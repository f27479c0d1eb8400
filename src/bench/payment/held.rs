//! Part 6 of `asyncpay bench payment`: what a held sale costs while it waits, for 1 and 16
//! pending at once on one A–S channel.
//!
//! - **Bytes at S.** S's stored rows (the A–S channel snapshot and the payment records, as
//!   the store writes them) after n held sales offered, minus before, divided by n.
//! - **On-chain weight.** On a throwaway BIP118 regtest (the crate's harness), node cores
//!   with channels funded on chain: A makes n held sales and goes offline, B sells them all,
//!   S publishes its latest state. Every transaction goes through the mempool (packages with
//!   a CPFP child on their anchor), and the weights are those of the confirmed transactions:
//!   the settlement with n PTLC outputs against the settlement of a close with none, and
//!   S's claim of each PTLC (its CPFP child not counted: it pays fees, any coin does).

use std::sync::Arc;

use bitcoin::hashes::Hash;
use bitcoin::key::{Keypair, TapTweak};
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, Txid};
use serde_json::{json, Value};

use super::PaymentBenchError;
use crate::chain::regtest::{Regtest, RegtestOptions};
use crate::node::core::{NodeCommand, NodeInput};
use crate::testing::{Network, A, B, S};
use crate::tx::anchor::{cpfp_child, find_anchor, package_fee, CHILD_VBYTES};
use crate::tx::STATE_LOCKTIME_BASE;

const CAPACITY: u64 = 2_000_000;
const DELAY: u16 = 6;
/// Blocks a held PTLC lives: long enough for S's offers to outlive the sales.
const HOLD: u32 = 120;

fn amount(i: usize) -> u64 {
    10_000 + 100 * i as u64
}

fn setup_error(what: &str, e: impl std::fmt::Display) -> PaymentBenchError {
    PaymentBenchError::SetupRefused {
        node: "held sales".into(),
        error: format!("{what}: {e}"),
    }
}

/// A–S (delay 6) and S–B; B offline; A makes `n` held sales to B, all posted. With `stop_a`,
/// A then goes offline.
fn posted(sim: &mut Network, n: usize, stop_a: bool) -> Result<(), PaymentBenchError> {
    let e = |e: anyhow::Error| setup_error("setup", e);
    sim.open_with_delay(A, S, CAPACITY, DELAY).map_err(e)?;
    sim.open(S, B, CAPACITY).map_err(e)?;
    sim.stop(B);
    for i in 0..n {
        let id = sim.pay_held(B, amount(i), HOLD).map_err(e)?;
        if sim.nodes[A].status(&id) != Some("posted") {
            return Err(setup_error(
                "payment",
                format!("{i} is {:?}: {:?}", sim.nodes[A].status(&id), sim.refusals),
            ));
        }
    }
    if stop_a {
        sim.stop(A);
    }
    Ok(())
}

/// Bytes of a stored settlement leaf hash row (`node::store`): channel id, state, hash.
const LEAF_ROW_BYTES: usize = 32 + 8 + 32;

/// The bytes of S's stored rows: its channel snapshots (JSON, with their settlement leaf
/// hash rows) and payment records (JSON).
fn s_row_bytes(sim: &Network) -> Result<(usize, usize), PaymentBenchError> {
    let node = &sim.nodes[S];
    let channels = node
        .channels
        .values()
        .map(|(_, snap)| {
            serde_json::to_string(snap)
                .map(|t| t.len() + LEAF_ROW_BYTES * snap.settlement_leaf_hashes.len())
        })
        .sum::<Result<usize, _>>()
        .map_err(|e| setup_error("snapshot", e))?;
    let payments = node
        .payments
        .values()
        .map(|r| serde_json::to_string(r).map(|t| t.len()))
        .sum::<Result<usize, _>>()
        .map_err(|e| setup_error("record", e))?;
    Ok((channels, payments))
}

/// Bytes S stores per pending held sale, for each count in `counts`.
pub fn bytes(counts: &[usize]) -> Result<Value, PaymentBenchError> {
    let mut out = vec![];
    for &n in counts {
        let mut base = Network::new();
        posted(&mut base, 0, false)?;
        let (c0, p0) = s_row_bytes(&base)?;
        let mut sim = Network::new();
        posted(&mut sim, n, false)?;
        let (c1, p1) = s_row_bytes(&sim)?;
        let per = |a: usize, b: usize| (a as f64 - b as f64) / n.max(1) as f64;
        out.push(json!({
            "pending": n,
            "row_bytes_per_pending": per(c1 + p1, c0 + p0),
            "channel_snapshot_growth_per_pending": per(c1, c0),
            "payment_record_bytes_per_pending": per(p1, p0),
        }));
    }
    Ok(Value::Array(out))
}

/// Publishes the nodes' broadcasts through the mempool, one block at a time, and tells
/// the nodes what confirmed.
struct Relay {
    chain: Arc<Regtest>,
    fees: Keypair,
    seen: usize,
    pending: Vec<Transaction>,
    confirmed: Vec<Transaction>,
}

impl Relay {
    fn wallet_script(&self) -> ScriptBuf {
        ScriptBuf::new_p2tr(&Secp256k1::new(), self.fees.x_only_public_key().0, None)
    }

    /// A package: `parent` and a child on its anchor paying 2 sat/vB for both from a fresh
    /// faucet coin.
    fn publish_package(&self, parent: &Transaction) -> Result<bool, PaymentBenchError> {
        let e = |e: &dyn std::fmt::Display| setup_error("fee coin", e);
        let (coin, coin_txout) = self
            .chain
            .fund(&self.wallet_script(), Amount::from_sat(50_000))
            .map_err(|x| e(&x))?;
        self.chain.confirm(&coin.txid).map_err(|x| e(&x))?;
        let fee = package_fee(parent, CHILD_VBYTES, 2);
        let mut child =
            cpfp_child(parent, coin, &coin_txout, self.wallet_script(), fee).map_err(|x| e(&x))?;
        let (_, anchor) = find_anchor(parent).map_err(|x| e(&x))?;
        let secp = Secp256k1::new();
        let prevouts = [anchor, coin_txout];
        let sighash = SighashCache::new(&child)
            .taproot_key_spend_signature_hash(1, &Prevouts::All(&prevouts), TapSighashType::Default)
            .map_err(|x| e(&x))?;
        let tweaked = self.fees.tap_tweak(&secp, None).to_keypair();
        let sig =
            secp.sign_schnorr_no_aux_rand(&Message::from_digest(sighash.to_byte_array()), &tweaked);
        child.input[1].witness = bitcoin::Witness::from_slice(&[sig.serialize()]);
        let answer = self
            .chain
            .submit_package(&[parent.clone(), child])
            .map_err(|x| e(&x))?;
        Ok(answer["package_msg"] == "success")
    }

    fn confirmed_now(&self, txid: &Txid) -> bool {
        self.chain.confirmations(txid).unwrap_or(0) > 0
    }

    fn block(&mut self, sim: &mut Network) -> Result<(), PaymentBenchError> {
        let e = |x: &dyn std::fmt::Display| setup_error("relay", x);
        for tx in &sim.broadcasts[self.seen..] {
            if !self
                .pending
                .iter()
                .any(|p| p.compute_txid() == tx.compute_txid())
            {
                self.pending.push(tx.clone());
            }
        }
        self.seen = sim.broadcasts.len();
        for tx in self.pending.clone() {
            let txid = tx.compute_txid();
            if self.chain.in_mempool(&txid).map_err(|x| e(&x))? || self.confirmed_now(&txid) {
                continue;
            }
            // Not valid yet (a timelock), or already spent: tried again next block.
            if find_anchor(&tx).is_ok() {
                let _ = self.publish_package(&tx)?;
            } else {
                let _ = self.chain.send_raw(&tx);
            }
        }
        self.chain.mine(1).map_err(|x| e(&x))?;
        let height = u32::try_from(self.chain.height().map_err(|x| e(&x))?).unwrap_or(u32::MAX);
        sim.block(height).map_err(|x| e(&x))?;
        let newly: Vec<Transaction> = self
            .pending
            .iter()
            .filter(|tx| {
                self.confirmed_now(&tx.compute_txid())
                    && !self
                        .confirmed
                        .iter()
                        .any(|c| c.compute_txid() == tx.compute_txid())
            })
            .cloned()
            .collect();
        for tx in newly {
            for node in 0..sim.nodes.len() {
                if sim.online(node) {
                    sim.input(
                        node,
                        NodeInput::Spend {
                            tx: tx.clone(),
                            confirmed_at: Some(height),
                        },
                    )
                    .map_err(|x| e(&x))?;
                }
            }
            sim.pump().map_err(|x| e(&x))?;
            self.confirmed.push(tx);
        }
        Ok(())
    }

    fn spender(&self, outpoint: &OutPoint) -> Option<&Transaction> {
        self.confirmed
            .iter()
            .find(|tx| tx.input.iter().any(|i| &i.previous_output == outpoint))
    }
}

/// One close of A–S with `n` held sales bought by S and pending in its latest state: the
/// confirmed update, settlement and claims.
fn close_with(chain: &Arc<Regtest>, n: usize) -> Result<Value, PaymentBenchError> {
    let e = |x: &dyn std::fmt::Display| setup_error("close", x);
    let mut sim = Network::on_chain(chain.clone()).map_err(|x| e(&x))?;
    posted(&mut sim, n, true)?;
    sim.start(B).map_err(|x| e(&x))?;
    sim.fetch_letters(B).map_err(|x| e(&x))?;
    let a_s = sim.nodes[S]
        .channel_with(sim.key(A))
        .map(|s| s.channel_id)
        .ok_or_else(|| setup_error("close", "no A–S channel at S"))?;
    let before = sim.broadcasts.len();
    sim.input(
        S,
        NodeInput::Command(NodeCommand::ForceClose { channel_id: a_s }),
    )
    .map_err(|x| e(&x))?;
    let update = sim.broadcasts[before..]
        .iter()
        .find(|tx| tx.lock_time.to_consensus_u32() >= STATE_LOCKTIME_BASE)
        .cloned()
        .ok_or_else(|| setup_error("close", "S published no update"))?;
    let mut relay = Relay {
        chain: chain.clone(),
        fees: Keypair::from_secret_key(
            &Secp256k1::new(),
            &SecretKey::from_slice(&[0x5e; 32]).expect("a valid key"),
        ),
        seen: 0,
        pending: vec![],
        confirmed: vec![],
    };
    let update_out = OutPoint {
        txid: update.compute_txid(),
        vout: 0,
    };
    for _ in 0..(4 * u32::from(DELAY) + 20) {
        let settled = relay.spender(&update_out).cloned();
        if let Some(se) = settled {
            let txid = se.compute_txid();
            let claimed = (0..se.output.len() as u32)
                .filter(|&vout| relay.spender(&OutPoint { txid, vout }).is_some())
                .filter(|&vout| se.output[vout as usize].value.to_sat() > 0)
                .count();
            if claimed >= n {
                let claims: Vec<u64> = (0..se.output.len() as u32)
                    .filter(|&vout| se.output[vout as usize].value.to_sat() > 0)
                    .filter_map(|vout| relay.spender(&OutPoint { txid, vout }))
                    .map(|tx| tx.weight().to_wu())
                    .collect();
                let update_wu = relay
                    .confirmed
                    .iter()
                    .find(|t| t.compute_txid() == update.compute_txid())
                    .map(|t| t.weight().to_wu());
                return Ok(json!({
                    "pending": n,
                    "update_wu": update_wu,
                    "settlement_wu": se.weight().to_wu(),
                    "settlement_outputs": se.output.len(),
                    "claim_wu": claims,
                }));
            }
        }
        relay.block(&mut sim)?;
    }
    Err(setup_error("close", format!("{n} claims did not confirm")))
}

/// On-chain weight of a pending held sale, for each count in `counts`, from transactions a
/// throwaway BIP118 regtest node accepted and mined.
pub fn weights(counts: &[usize]) -> Result<Value, PaymentBenchError> {
    let chain =
        Arc::new(Regtest::start(RegtestOptions::default()).map_err(|x| setup_error("regtest", x))?);
    let base = close_with(&chain, 0)?;
    let base_wu = base["settlement_wu"].as_u64().unwrap_or(0);
    let mut rows = vec![];
    for &n in counts {
        let run = close_with(&chain, n)?;
        let settlement = run["settlement_wu"].as_u64().unwrap_or(0);
        let claims: Vec<u64> = run["claim_wu"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        let claim_mean = claims.iter().sum::<u64>() as f64 / claims.len().max(1) as f64;
        let output_per_pending = (settlement as f64 - base_wu as f64) / n.max(1) as f64;
        rows.push(json!({
            "pending": n,
            "settlement_wu": settlement,
            "settlement_output_wu_per_pending": output_per_pending,
            "claim_wu_mean": claim_mean,
            "wu_per_pending": output_per_pending + claim_mean,
            "vbytes_per_pending": (output_per_pending + claim_mean) / 4.0,
            "update_wu": run["update_wu"],
        }));
    }
    Ok(json!({
        "settlement_wu_without_ptlcs": base_wu,
        "update_wu_without_ptlcs": base["update_wu"],
        "rows": rows,
    }))
}
