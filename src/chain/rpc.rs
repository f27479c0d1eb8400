//! bitcoind's JSON-RPC (cookie authentication), and publishing a channel transaction: alone
//! when it pays its own fee, or as a package with a CPFP child on its P2A anchor at a feerate
//! that rises with each attempt. Used by the node and by the watchtower.
//!
//! ```
//! use asyncpay::chain::rpc::{bumped_feerate, FIRST_FEERATE, MAX_FEERATE};
//!
//! assert_eq!(bumped_feerate(0), FIRST_FEERATE);
//! assert_eq!(bumped_feerate(1), 8);
//! assert_eq!(bumped_feerate(40), MAX_FEERATE);
//! ```

use std::path::PathBuf;
use std::time::Duration;

use bitcoin::{FeeRate, Transaction};
use serde_json::{json, Value};

use super::wallet::{Wallet, WalletError};

/// The CPFP feerate of the first submission of a channel transaction, sat/vB.
pub const FIRST_FEERATE: u64 = 5;
/// The feerate never rises above this, sat/vB.
pub const MAX_FEERATE: u64 = 500;

/// The child's feerate at the `attempt`-th submission (0-based): up by half each time, so a
/// transaction outbid in the mempool catches up within a few blocks.
pub fn bumped_feerate(attempt: u32) -> u64 {
    let mut rate = FIRST_FEERATE;
    for _ in 0..attempt {
        rate = (rate * 3).div_ceil(2);
        if rate >= MAX_FEERATE {
            return MAX_FEERATE;
        }
    }
    rate
}

/// RPC and publication failures.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The cookie file cannot be read.
    #[error("reading the RPC cookie {path}: {source}")]
    Cookie {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The cookie file is not `user:password`.
    #[error("the RPC cookie {path} is not user:password")]
    BadCookie {
        /// The file.
        path: PathBuf,
    },
    /// The request did not get an answer.
    #[error("{method}: {source}")]
    Transport {
        /// The RPC method.
        method: String,
        /// Why.
        source: reqwest::Error,
    },
    /// bitcoind answered with an error.
    #[error("{method}: {error}")]
    Node {
        /// The RPC method.
        method: String,
        /// bitcoind's error object.
        error: Value,
    },
    /// A package was refused by the mempool.
    #[error("package refused at {feerate_sat_vb} sat/vB: {message} {reasons}")]
    PackageRefused {
        /// The child's feerate.
        feerate_sat_vb: u64,
        /// bitcoind's `package_msg`.
        message: String,
        /// The per-transaction errors.
        reasons: String,
    },
    /// The wallet could not build, sign or record the child.
    #[error(transparent)]
    Wallet(#[from] WalletError),
}

/// A bitcoind JSON-RPC endpoint with cookie authentication.
#[derive(Debug, Clone)]
pub struct Rpc {
    url: String,
    cookie: PathBuf,
    http: reqwest::Client,
}

impl Rpc {
    /// The endpoint at `url`, authenticated with the cookie file `cookie` (read at each call:
    /// bitcoind writes a new one when it restarts).
    pub fn new(url: impl Into<String>, cookie: impl Into<PathBuf>) -> Self {
        Rpc {
            url: url.into(),
            cookie: cookie.into(),
            http: reqwest::Client::new(),
        }
    }

    /// Calls `method` with `params`; bitcoind's `result`.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let cookie = std::fs::read_to_string(&self.cookie).map_err(|source| RpcError::Cookie {
            path: self.cookie.clone(),
            source,
        })?;
        let (user, pass) = cookie
            .trim()
            .split_once(':')
            .ok_or_else(|| RpcError::BadCookie {
                path: self.cookie.clone(),
            })?;
        let transport = |source| RpcError::Transport {
            method: method.to_owned(),
            source,
        };
        let body: Value = self
            .http
            .post(&self.url)
            .basic_auth(user, Some(pass))
            .json(&json!({"jsonrpc": "1.0", "id": "asyncpay", "method": method, "params": params}))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(transport)?
            .json()
            .await
            .map_err(transport)?;
        if !body["error"].is_null() {
            return Err(RpcError::Node {
                method: method.to_owned(),
                error: body["error"].clone(),
            });
        }
        Ok(body["result"].clone())
    }
}

/// How a publication went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Sent alone (`sendrawtransaction`): the transaction has no anchor.
    Alone,
    /// Sent as a package with a child at this feerate (sat/vB), and accepted.
    Package {
        /// The child's feerate for the package.
        feerate_sat_vb: u64,
    },
}

/// What the fee escalation counts a transaction's publications by: its version, lock time
/// and outputs, without its inputs. A channel update bound again to another output (a
/// counterparty keeps publishing older updates under it) is the same state with a new txid;
/// keyed by txid, its feerate would start again from the bottom at every rebinding, which an
/// adversary racing it could exploit. Keyed like this, the feerate keeps rising for the state
/// as long as it has not confirmed. Used by the node and by the watchtower.
pub fn escalation_key(tx: &Transaction) -> bitcoin::hashes::sha256::Hash {
    use bitcoin::consensus::Encodable;
    use bitcoin::hashes::{sha256, Hash};
    let mut engine = sha256::Hash::engine();
    tx.version
        .consensus_encode(&mut engine)
        .expect("hashing cannot fail");
    tx.lock_time
        .consensus_encode(&mut engine)
        .expect("hashing cannot fail");
    tx.output
        .consensus_encode(&mut engine)
        .expect("hashing cannot fail");
    sha256::Hash::from_engine(engine)
}

/// Publishes `tx`, the `attempt`-th time (0-based): with no P2A anchor through
/// `sendrawtransaction`; with one, as a package with a CPFP child from `wallet` at
/// [`bumped_feerate`]`(attempt)`. A package the node refuses gives its child's coin back to
/// the wallet, so a refusal (for example under TRUC rules, while an older update of the
/// counterparty is unconfirmed) does not eat the fee coins. The wallet's calls block: run
/// this on a runtime that allows `block_in_place` (a multi-threaded one).
pub async fn publish(
    rpc: &Rpc,
    wallet: &mut Wallet,
    tx: &Transaction,
    attempt: u32,
) -> Result<Published, RpcError> {
    let Some(anchor) = tx
        .output
        .iter()
        .position(|o| o.script_pubkey == bitcoin::ScriptBuf::new_p2a())
    else {
        let hex = bitcoin::consensus::encode::serialize_hex(tx);
        rpc.call("sendrawtransaction", json!([hex])).await?;
        wallet.record_broadcast(std::slice::from_ref(tx))?;
        return Ok(Published::Alone);
    };
    let feerate = bumped_feerate(attempt);
    let rate = FeeRate::from_sat_per_vb(feerate).expect("at most MAX_FEERATE sat/vB");
    // Outputs are counted in u32 by consensus.
    let vout = u32::try_from(anchor).expect("a transaction has fewer than 2^32 outputs");
    let child = tokio::task::block_in_place(|| wallet.cpfp_child(tx, vout, rate))?;
    let hex: Vec<String> = [tx, &child.tx]
        .iter()
        .map(|t| bitcoin::consensus::encode::serialize_hex(*t))
        .collect();
    let answer = match rpc.call("submitpackage", json!([hex])).await {
        Ok(answer) => answer,
        Err(e) => {
            wallet.abandon(&child.tx)?;
            return Err(e);
        }
    };
    if answer["package_msg"].as_str() != Some("success") {
        wallet.abandon(&child.tx)?;
        let reasons: Vec<String> = answer["tx-results"]
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(|r| r["error"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        return Err(RpcError::PackageRefused {
            feerate_sat_vb: feerate,
            message: answer["package_msg"].to_string(),
            reasons: reasons.join("; "),
        });
    }
    wallet.record_broadcast(&[tx.clone(), child.tx.clone()])?;
    Ok(Published::Package {
        feerate_sat_vb: feerate,
    })
}

#[cfg(test)]
mod tests {
    use super::{bumped_feerate, FIRST_FEERATE, MAX_FEERATE};

    #[test]
    fn the_cpfp_feerate_rises_by_half_each_submission_up_to_the_cap() {
        let rates: Vec<u64> = (0..14).map(bumped_feerate).collect();
        assert_eq!(rates[0], FIRST_FEERATE);
        assert_eq!(&rates[..6], &[5, 8, 12, 18, 27, 41]);
        assert!(
            rates.windows(2).all(|w| w[1] >= w[0]),
            "never falls: {rates:?}"
        );
        assert_eq!(
            bumped_feerate(12),
            MAX_FEERATE,
            "capped after a dozen blocks"
        );
        assert_eq!(bumped_feerate(u32::MAX), MAX_FEERATE, "no overflow");
    }
}

#[cfg(test)]
mod escalation_tests {
    use super::escalation_key;
    use bitcoin::absolute::LockTime;
    use bitcoin::hashes::Hash;
    use bitcoin::transaction::Version;
    use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};

    fn update(prevout: u8, state: u32) -> Transaction {
        Transaction {
            version: Version(3),
            lock_time: LockTime::from_consensus(500_000_000 + state),
            input: vec![TxIn {
                previous_output: OutPoint {
                    txid: Txid::from_byte_array([prevout; 32]),
                    vout: 0,
                },
                script_sig: ScriptBuf::new(),
                sequence: Sequence(0xffff_fffd),
                witness: Witness::new(),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(100_000),
                script_pubkey: ScriptBuf::new_op_return([7u8; 4]),
            }],
        }
    }

    #[test]
    fn a_state_bound_to_another_input_keeps_its_fee_escalation() {
        // The same update bound to the funding output and to an older update's output: two
        // txids, one escalation.
        let (a, b) = (update(1, 5), update(2, 5));
        assert_ne!(a.compute_txid(), b.compute_txid());
        assert_eq!(escalation_key(&a), escalation_key(&b));
        // Another state, or other outputs, escalate on their own.
        assert_ne!(escalation_key(&a), escalation_key(&update(1, 6)));
        let mut other = update(1, 5);
        other.output[0].value = Amount::from_sat(99_000);
        assert_ne!(escalation_key(&a), escalation_key(&other));
    }
}
