//! On the BIP118 regtest, through the mempool, with the real `asyncpay watchtower serve`
//! process: the payee (A here, the non-LSP side) is paid twice by its LSP, hands its latest
//! state to its tower, and goes offline for three times the channel's shared delay.
//!
//! The LSP cheats: it publishes its copy of state 0 with a CPFP child, and once U_0 has
//! confirmed it races the tower with its copy of state 1 on U_0's output, paying a higher
//! feerate than the tower's first answer. Blocks are mined one at a time, each only after
//! the tower has scanned the previous one and had time to publish. The tower, from the
//! blocks alone, opens its kit when U_0 confirms, answers U_0 and then the stacked U_1 with
//! U_2, paying its own CPFP fees at rising feerates, and after the shared delay publishes
//! SE_2. The payee, never back online, is paid its state-2 balance exactly; the LSP's
//! settlements of states 0 and 1 never confirm.

mod channel_support;
mod tx_support;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use asyncpay::chain::regtest::{Regtest, RegtestOptions};
use asyncpay::protocol::channel::{Action, ChainEvent, Channel, Command as Cmd, Input};
use asyncpay::tower::client::TowerClient;
use asyncpay::tx::{Party, STATE_LOCKTIME_BASE};
use bitcoin::{Amount, OutPoint, Transaction};
use channel_support::pair::{payout_script, Pair};
use channel_support::secrets;
use serde_json::Value;

const CAPACITY: u64 = 500_000;
const PUSH: u64 = 150_000;
const SEED: [u8; 32] = [0x7b; 32];
/// The LSP's package feerate for its stacked U_1: above the tower's first answer (5 sat/vB).
const ADVERSARY_FEERATE: u64 = 20;

/// Submits `parent` with a CPFP child from `coin` at `feerate` sat/vB; the node's answer.
fn publish_at(
    chain: &Regtest,
    parent: &Transaction,
    payer: &bitcoin::key::Keypair,
    coin: (OutPoint, bitcoin::TxOut),
    feerate: u64,
) -> anyhow::Result<Value> {
    use asyncpay::tx::anchor::{cpfp_child, find_anchor, package_fee, CHILD_VBYTES};
    let fee = package_fee(parent, CHILD_VBYTES, feerate);
    let mut child = cpfp_child(
        parent,
        coin.0,
        &coin.1,
        tx_support::wallet_script(payer),
        fee,
    )?;
    let (_, anchor) = find_anchor(parent)?;
    tx_support::sign_key_spend(&mut child, 1, &[anchor, coin.1], payer);
    Ok(chain.submit_package(&[parent.clone(), child])?)
}

struct Tower {
    child: Child,
    url: String,
    rt: tokio::runtime::Runtime,
}

impl Drop for Tower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tower {
    fn start(chain: &Regtest, dir: &Path) -> anyhow::Result<Tower> {
        let child = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
            .args(["watchtower", "serve", "--poll-ms", "100", "--data-dir"])
            .arg(dir)
            .args(["--rpc-url", &chain.rpc_url(), "--rpc-cookie"])
            .arg(chain.rpc_cookie_file())
            .args(["--electrum", &chain.electrum_url()?])
            .stdout(std::fs::File::create(dir.with_extension("out"))?)
            .stderr(std::fs::File::create(dir.with_extension("err"))?)
            .spawn()?;
        let started = Instant::now();
        let info: Value = loop {
            if let Ok(text) = std::fs::read_to_string(dir.join("tower.json")) {
                if let Ok(v) = serde_json::from_str(&text) {
                    break v;
                }
            }
            ensure!(started.elapsed() < Duration::from_secs(60), "tower start");
            std::thread::sleep(Duration::from_millis(50));
        };
        let url = info["url"].as_str().context("url")?.to_owned();
        Ok(Tower {
            child,
            url,
            rt: tokio::runtime::Runtime::new()?,
        })
    }

    fn info(&self) -> anyhow::Result<Value> {
        let url = format!("{}/v1/info", self.url);
        self.rt
            .block_on(async { reqwest::get(url).await?.json::<Value>().await })
            .map_err(Into::into)
    }

    /// Waits until the tower has scanned `height`, then gives it a moment to publish.
    fn scanned(&self, height: u32) -> anyhow::Result<()> {
        let started = Instant::now();
        while self.info()?["scanned"].as_u64() < Some(u64::from(height)) {
            ensure!(started.elapsed() < Duration::from_secs(60), "tower scan");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(700));
        Ok(())
    }
}

fn state(tx: &Transaction) -> u32 {
    tx.lock_time.to_consensus_u32() - STATE_LOCKTIME_BASE
}

/// The confirmed transaction spending `outpoint` in blocks `from..=to`, with its height.
fn spender(
    chain: &Regtest,
    outpoint: OutPoint,
    from: u32,
    to: u32,
) -> anyhow::Result<Option<(Transaction, u32)>> {
    for h in from..=to {
        let hash: bitcoin::BlockHash = chain.rpc("getblockhash", &[serde_json::json!(h)])?;
        for tx in chain.block(&hash)?.txdata {
            if tx.input.iter().any(|i| i.previous_output == outpoint) {
                return Ok(Some((tx, h)));
            }
        }
    }
    Ok(None)
}

fn mine_one(chain: &Regtest, tower: &Tower) -> anyhow::Result<u32> {
    chain.mine(1)?;
    let h = u32::try_from(chain.height()?)?;
    tower.scanned(h)?;
    Ok(h)
}

#[test]
fn payee_offline_past_its_delay_is_protected_by_its_watchtower() -> anyhow::Result<()> {
    let chain = Regtest::start(RegtestOptions {
        electrs: true,
        ..RegtestOptions::default()
    })?;
    let dir = tempfile::tempdir()?;
    let tower = Tower::start(&chain, dir.path())?;
    let fee_address: bitcoin::Address<bitcoin::address::NetworkUnchecked> = tower.info()?
        ["fee_address"]
        .as_str()
        .context("fee address")?
        .parse()?;
    let fee_script = fee_address.assume_checked().script_pubkey();
    for _ in 0..3 {
        chain.fund(&fee_script, Amount::from_sat(200_000))?;
    }
    let adversary = tx_support::keypair("tower-adversary");
    let coins = tx_support::fee_coins(&chain, &adversary, 2);

    let (mut pair, funding, height) =
        Pair::open_on(&chain, CAPACITY, PUSH, tx_support::SHARED_DELAY)?;
    let mut copies = vec![];
    for amount_sat in [60_000, 90_000] {
        copies.push(pair.channel(Party::S).snapshot().clone());
        pair.input(
            Party::S,
            Input::Command(Cmd::Transfer {
                amount_sat,
                withhold: false,
            }),
        )?;
        pair.pump(height)?;
    }
    let latest = pair.channel(Party::A).latest().context("state")?.clone();
    ensure!(latest.number == 2 && latest.to_a == CAPACITY - PUSH + 150_000);

    // The payee hands its state to the tower, then goes offline for good.
    let snapshot = pair.channel(Party::A).snapshot().clone();
    let held = tower
        .rt
        .block_on(TowerClient::new(&tower.url)?.push(&SEED, &snapshot))?;
    ensure!(held == 2);
    ensure!(tower.info()?["channels"] == 1);
    drop(pair);

    // The LSP publishes U_0 with a child; it confirms in the next block.
    let mut old0 = Channel::restore(secrets(Party::S), copies[0].clone())?;
    let u0 = old0
        .handle(Input::Command(Cmd::ForceClose))?
        .into_iter()
        .find_map(|a| match a {
            Action::Broadcast(tx) => Some(tx),
            _ => None,
        })
        .context("U_0")?;
    ensure!(state(&u0) == 0 && u0.input[0].previous_output == funding);
    tx_support::try_publish_using(&chain, &u0, &adversary, coins[0].clone())
        .map_err(|e| anyhow::anyhow!("U_0 refused: {e}"))?;
    let h0 = u32::try_from(chain.height()?)? + 1;
    // The LSP's copy of state 1, to be stacked on U_0 as soon as it confirms.
    let mut old1 = Channel::restore(secrets(Party::S), copies[1].clone())?;
    old1.handle(Input::Chain(ChainEvent::Block { height: h0 }))?;
    let u1 = old1
        .handle(Input::Chain(ChainEvent::Spend {
            tx: u0.clone(),
            confirmed_at: Some(h0),
        }))?
        .into_iter()
        .find_map(|a| match a {
            Action::Broadcast(tx) => Some(tx),
            _ => None,
        })
        .context("U_1 on U_0")?;
    chain.mine(1)?;
    ensure!(chain.confirmations(&u0.compute_txid())? == 1);
    // The race: the LSP's U_1 goes out at once (its fee coin pays a high feerate), before the
    // tower has seen the block.
    let stacked = publish_at(&chain, &u1, &adversary, coins[1].clone(), ADVERSARY_FEERATE)?;
    ensure!(
        stacked["package_msg"] == "success",
        "U_1 enters the mempool: {stacked}"
    );
    tower.scanned(h0)?;

    // Blocks one at a time for three shared delays; the payee never comes back.
    let delay = u32::from(tx_support::SHARED_DELAY);
    let end = h0 + 3 * delay;
    let mut h = h0;
    while h < end {
        h = mine_one(&chain, &tower)?;
    }

    // What happened on chain: U_0, then something on U_0's output, ending in U_2 and SE_2.
    let u0_out = OutPoint {
        txid: u0.compute_txid(),
        vout: 0,
    };
    let (next, at) = spender(&chain, u0_out, h0, end)?.context("U_0's output is spent")?;
    let (u2, at2) = if state(&next) == 2 {
        (next, at)
    } else {
        ensure!(state(&next) == 1, "U_0 is spent by U_1 or U_2");
        let u1_out = OutPoint {
            txid: next.compute_txid(),
            vout: 0,
        };
        spender(&chain, u1_out, at, end)?.context("U_1's output is spent")?
    };
    ensure!(state(&u2) == 2, "the newest update on chain is U_2");
    let u2_out = OutPoint {
        txid: u2.compute_txid(),
        vout: 0,
    };
    let (se2, at_se) = spender(&chain, u2_out, at2, end)?.context("SE_2 confirms")?;
    ensure!(at_se >= at2 + delay, "SE_2 waited for the delay");
    ensure!(
        se2.output[0].value.to_sat() == latest.to_a
            && se2.output[0].script_pubkey == payout_script(Party::A),
        "the payee is paid its state-2 balance exactly: {:?}",
        se2.output
    );
    ensure!(se2.output[1].value.to_sat() == latest.to_s);
    let stacked_path = at2 > at;
    println!(
        "U_0 confirmed at {h0}; {}U_2 at {at2}; SE_2 at {at_se}; the payee was offline through height {end}",
        if stacked_path { format!("the LSP's U_1 at {at}; ") } else { String::new() }
    );
    // The tower's own account: what it published, at which feerates, what was refused.
    let log = |suffix: &str| -> anyhow::Result<Vec<Value>> {
        Ok(std::fs::read_to_string(dir.path().with_extension(suffix))?
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    };
    let published: Vec<Value> = log("out")?
        .into_iter()
        .filter(|e| e["event"] == "transaction_published")
        .collect();
    let refused: Vec<Value> = log("err")?
        .into_iter()
        .filter(|e| e["event"] == "publish_failed")
        .collect();
    let feerates: Vec<String> = published
        .iter()
        .map(|e| e["feerate_sat_vb"].to_string())
        .collect();
    println!(
        "tower: {} publications (package feerates sat/vB: {}), {} refused by the mempool",
        published.len(),
        feerates.join(", "),
        refused.len()
    );
    ensure!(
        published
            .iter()
            .any(|e| e["txid"] == u2.compute_txid().to_string()),
        "the U_2 on chain is the tower's"
    );
    ensure!(
        published
            .iter()
            .any(|e| e["txid"] == se2.compute_txid().to_string()),
        "SE_2 is the tower's"
    );
    if at2 > h0 + delay {
        bail!("U_2 confirmed after U_0's settlement could have");
    }
    Ok(())
}
