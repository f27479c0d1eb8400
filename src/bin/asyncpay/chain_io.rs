//! What the node and the watchtower share on the chain side: bitcoind's JSON-RPC, and
//! publishing a channel transaction with a CPFP child at a feerate that rises with each
//! attempt.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use asyncpay::chain::wallet::Wallet;
use bitcoin::{FeeRate, Transaction};
use serde_json::{json, Value};

/// The CPFP feerate of the first submission of a channel transaction, sat/vB.
pub(crate) const FIRST_FEERATE: u64 = 5;
/// The feerate never rises above this, sat/vB.
pub(crate) const MAX_FEERATE: u64 = 500;

/// The child's feerate at the `attempt`-th submission (0-based): up by half each time, so a
/// transaction outbid in the mempool catches up within a few blocks.
pub(crate) fn bumped_feerate(attempt: u32) -> u64 {
    let mut rate = FIRST_FEERATE;
    for _ in 0..attempt {
        rate = (rate * 3).div_ceil(2);
        if rate >= MAX_FEERATE {
            return MAX_FEERATE;
        }
    }
    rate
}

/// A bitcoind JSON-RPC endpoint with cookie authentication.
#[derive(Clone)]
pub(crate) struct Rpc {
    pub(crate) url: String,
    pub(crate) cookie: PathBuf,
}

impl Rpc {
    pub(crate) async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let cookie = std::fs::read_to_string(&self.cookie)
            .with_context(|| format!("reading {}", self.cookie.display()))?;
        let (user, pass) = cookie
            .trim()
            .split_once(':')
            .context("cookie file is user:password")?;
        let body: Value = reqwest::Client::new()
            .post(&self.url)
            .basic_auth(user, Some(pass))
            .json(&json!({"jsonrpc": "1.0", "id": "asyncpay", "method": method, "params": params}))
            .timeout(Duration::from_secs(30))
            .send()
            .await?
            .json()
            .await?;
        if !body["error"].is_null() {
            bail!("{method}: {}", body["error"]);
        }
        Ok(body["result"].clone())
    }
}

/// How a publication went.
pub(crate) enum Published {
    /// Sent alone (`sendrawtransaction`): the transaction has no anchor.
    Alone,
    /// Sent as a package with a child at this feerate (sat/vB), and accepted.
    Package {
        /// The child's feerate for the package.
        feerate_sat_vb: u64,
    },
}

/// Publishes `tx`, the `attempt`-th time (0-based): with no P2A anchor through
/// `sendrawtransaction`; with one, as a package with a CPFP child from `wallet` at
/// [`bumped_feerate`]`(attempt)`. A package the node refuses gives its child's coin back to
/// the wallet, so a refusal (for example under TRUC rules, while an older update of the
/// counterparty is unconfirmed) does not eat the fee coins.
pub(crate) async fn publish(
    rpc: &Rpc,
    wallet: &mut Wallet,
    tx: &Transaction,
    attempt: u32,
) -> anyhow::Result<Published> {
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
    let child = tokio::task::block_in_place(|| {
        wallet
            .cpfp_child(
                tx,
                u32::try_from(anchor).context("anchor index")?,
                FeeRate::from_sat_per_vb(feerate).context("bounded feerate")?,
            )
            .map_err(anyhow::Error::from)
    })?;
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
        bail!(
            "package refused at {feerate} sat/vB: {} {}",
            answer["package_msg"],
            reasons.join("; ")
        );
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
