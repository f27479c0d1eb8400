//! `asyncpay regtest up` and `asyncpay signet up` start a long-lived network in the
//! background and return once it is ready; the bitcoin-cli line they print reaches the node
//! (chain `regtest`, or `signet` with the printed challenge); a second `up` on the same
//! directory is refused; `faucet ADDRESS AMOUNT` pays an address through the mempool and a
//! bad address or amount is refused; `mine 3` moves the height by 3 (on signet, blocks signed
//! by the network's key) and confirms the faucet's payment; on the signet, the whole demo
//! (`asyncpay demo --network signet --network-dir DIR --json`: nodes, mailbox and watchtower
//! as processes, the payment, then the stale state overridden and settled on chain) runs on
//! the network and reports chain `signet` with the network's challenge; `down` stops it, and
//! afterwards neither the server nor any bitcoind or electrs of the directory runs, and
//! `mine` says nothing runs.
use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{Address, CompressedPublicKey, Network};
use serde_json::Value;

fn asyncpay(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("run asyncpay")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs the printed bitcoin-cli command line with `args` and decodes its answer.
fn bitcoin_cli(info: &Value, args: &[&str]) -> Value {
    let argv: Vec<&str> = info["bitcoin_cli"]
        .as_array()
        .expect("a bitcoin-cli argv")
        .iter()
        .map(|a| a.as_str().expect("string arguments"))
        .collect();
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .args(args)
        .output()
        .expect("run bitcoin-cli");
    assert!(out.status.success(), "bitcoin-cli {args:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout).expect("bitcoin-cli answers JSON")
}

/// Live processes whose command line mentions `dir`, found independently of the crate.
fn processes_mentioning(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_string();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (state != "Z" && cmdline.contains(&needle)).then_some((pid, cmdline))
        })
        .collect()
}

/// An address of `chain` nobody else pays.
fn address(chain: &str) -> Address {
    let secp = Secp256k1::new();
    let key = SecretKey::from_slice(&[0x42; 32]).expect("a valid key");
    let public = CompressedPublicKey(key.public_key(&secp));
    let network = if chain == "signet" {
        Network::Signet
    } else {
        Network::Regtest
    };
    Address::p2wpkh(&public, network)
}

/// The demo, on the network running in `dir`.
fn demo_on(chain: &str, dir: &Path, info: &Value) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .args(["demo", "--network", chain, "--json", "--network-dir"])
        .arg(dir)
        .output()
        .expect("run the demo");
    assert!(out.status.success(), "demo on {chain}: {}", text(&out));
    let transcript: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(transcript["ok"], true, "{}", text(&out));
    assert_eq!(transcript["chain"]["name"], chain);
    assert_eq!(transcript["chain"]["attached"], true);
    assert_eq!(
        transcript["chain"]["signet_challenge"], info["signet_challenge"],
        "the demo ran on the network's own signet"
    );
    assert!(
        transcript["enforcement"]["settlement_txid"].is_string(),
        "the stale state was overridden and the settlement confirmed: {:#}",
        transcript["enforcement"]
    );
    eprintln!("demo on {chain} in {:?}", started.elapsed());
}

fn up_mine_and_down(chain: &str, dir: &Path, extra: &[&str], demo: bool) {
    let started = Instant::now();
    let mut args = vec![chain, "up", "--json"];
    args.extend_from_slice(extra);
    let out = asyncpay(&args, dir);
    assert!(out.status.success(), "{chain} up: {}", text(&out));
    let info: Value = serde_json::from_slice(&out.stdout).expect("up --json prints JSON");
    eprintln!("{chain} up in {:?}: {info:#}", started.elapsed());
    let pid = info["pid"].as_u64().expect("the server pid") as u32;
    assert!(info["rpc_url"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));
    assert!(Path::new(info["rpc_cookie_file"].as_str().unwrap()).is_file());
    let line = info["bitcoin_cli_line"]
        .as_str()
        .expect("a bitcoin-cli line");
    assert!(line.contains(&format!(" -{chain} ")), "{line}");
    assert!(line.contains("-rpccookiefile="), "{line}");

    let running = processes_mentioning(dir);
    let bitcoinds = running
        .iter()
        .filter(|(_, c)| {
            c.split(' ')
                .next()
                .is_some_and(|exe| exe.ends_with("bitcoind"))
        })
        .count();
    assert_eq!(
        bitcoinds, 1,
        "one bitcoind runs from the directory: {running:?}"
    );

    let chain_info = bitcoin_cli(&info, &["getblockchaininfo"]);
    assert_eq!(chain_info["chain"], chain);
    if chain == "signet" {
        let challenge = info["signet_challenge"].as_str().expect("a challenge");
        assert_eq!(chain_info["signet_challenge"], challenge);
        assert!(
            line.contains(&format!("-signetchallenge={challenge}")),
            "{line}"
        );
    } else {
        assert!(info["signet_challenge"].is_null());
    }
    let height = chain_info["blocks"].as_u64().expect("a height");
    assert_eq!(info["height"].as_u64(), Some(height));

    let again = asyncpay(&args, dir);
    assert!(
        !again.status.success(),
        "a second up is refused: {}",
        text(&again)
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already runs"),
        "{}",
        text(&again)
    );

    let to = address(chain).to_string();
    let paid = asyncpay(&[chain, "faucet", &to, "25000"], dir);
    assert!(paid.status.success(), "{chain} faucet: {}", text(&paid));
    let outpoint = String::from_utf8_lossy(&paid.stdout).trim().to_string();
    let (txid, vout) = outpoint.split_once(':').expect("faucet prints txid:vout");
    let tx = bitcoin_cli(&info, &["getrawtransaction", txid, "1"]);
    let output = &tx["vout"][vout.parse::<usize>().expect("a vout")];
    assert_eq!(output["value"].as_f64(), Some(0.00025), "{output}");
    assert_eq!(output["scriptPubKey"]["address"], to.as_str());
    assert!(tx["confirmations"].is_null(), "in the mempool, not mined");
    let other = address(if chain == "signet" {
        "regtest"
    } else {
        "signet"
    })
    .to_string();
    for (bad, why) in [
        (
            vec![chain, "faucet", other.as_str(), "25000"],
            "another network's address",
        ),
        (vec![chain, "faucet", to.as_str(), "0"], "nothing"),
        (vec![chain, "faucet", to.as_str(), "2000000000"], "20 BTC"),
    ] {
        let refused = asyncpay(&bad, dir);
        assert!(
            !refused.status.success(),
            "the faucet pays {why}: {}",
            text(&refused)
        );
    }

    let mined = asyncpay(&[chain, "mine", "3"], dir);
    assert!(mined.status.success(), "{chain} mine: {}", text(&mined));
    let printed: u64 = String::from_utf8_lossy(&mined.stdout)
        .trim()
        .parse()
        .expect("mine prints the height");
    assert_eq!(printed, height + 3);
    assert_eq!(bitcoin_cli(&info, &["getblockcount"]), height + 3);
    let tx = bitcoin_cli(&info, &["getrawtransaction", txid, "1"]);
    assert_eq!(
        tx["confirmations"].as_u64(),
        Some(3),
        "the faucet's payment confirmed"
    );

    if demo {
        demo_on(chain, dir, &info);
    }

    let down = asyncpay(&[chain, "down"], dir);
    assert!(down.status.success(), "{chain} down: {}", text(&down));
    let proc_dir = format!("/proc/{pid}");
    assert!(
        !Path::new(&proc_dir).exists()
            || std::fs::read_to_string(format!("{proc_dir}/stat")).is_ok_and(|s| s.contains(") Z")),
        "the server {pid} still runs"
    );
    let left = processes_mentioning(dir);
    assert!(left.is_empty(), "still running after down: {left:?}");
    assert!(!dir.join("network.json").exists());

    let after = asyncpay(&[chain, "mine", "1"], dir);
    assert!(!after.status.success(), "mine after down fails");
    assert!(
        String::from_utf8_lossy(&after.stderr).contains("no network runs"),
        "{}",
        text(&after)
    );
    eprintln!("{chain}: up, mine, down in {:?}", started.elapsed());
}

#[test]
fn network_up_faucet_mine_demo_and_down_on_regtest_and_signet_leave_no_process() {
    let root = tempfile::tempdir().expect("tempdir");
    up_mine_and_down(
        "regtest",
        &root.path().join("regtest"),
        &["--no-electrs"],
        false,
    );
    up_mine_and_down(
        "signet",
        &root.path().join("signet"),
        &["--seed", "network test"],
        true,
    );
}
