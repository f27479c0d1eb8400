//! `asyncpay demo --json --svg PATH`, run as a user runs it: regtest bitcoind and electrs,
//! the mailbox and three node processes. The transcript must show the payment completed at
//! every party, channel balances that moved by exactly the amount and the LSP's fee,
//! confirmed funding transactions, timed steps, the messages of the protocol in the sequence
//! diagram (mermaid text, and the SVG also written to PATH), the on-chain epilogue (A's stale
//! state 0 confirmed, overridden by S's state 1, whose settlement pays both exactly their
//! state-1 balances), and no child process left running.

use std::process::Command;

use serde_json::Value;

const AMOUNT: u64 = 50_000;

fn balance<'a>(t: &'a Value, channel: &str, party: &str) -> &'a Value {
    t["balances"]
        .as_array()
        .expect("balances")
        .iter()
        .find(|b| b["channel"] == channel && b["party"] == party)
        .unwrap_or_else(|| panic!("no balance row {channel}/{party}"))
}

fn change(t: &Value, channel: &str, party: &str) -> i64 {
    let row = balance(t, channel, party);
    let before = row["before_sat"].as_i64().expect("before_sat");
    let after = row["after_sat"].as_i64().expect("after_sat");
    assert_eq!(row["change_sat"].as_i64(), Some(after - before), "{row}");
    after - before
}

#[test]
fn demo_runs_end_to_end_and_prints_a_json_transcript() {
    let out_dir = tempfile::tempdir().expect("temporary directory");
    let svg_path = out_dir.path().join("run.svg");
    let output = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .args([
            "demo",
            "--json",
            "--amount-sat",
            &AMOUNT.to_string(),
            "--svg",
        ])
        .arg(&svg_path)
        .output()
        .expect("run asyncpay demo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stderr}");
    let t: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{stderr}"));

    assert_eq!(t["version"], 1);
    assert_eq!(t["ok"], true, "{:#}", t["checks"]);
    assert_eq!(t["status"]["payer"], "completed");
    assert_eq!(t["status"]["lsp"], "sold");
    assert_eq!(t["status"]["payee"], "paid");
    // A's proof of payment: checked by `asyncpay proof verify` against B's card, and a copy
    // claiming another amount refused with the reason.
    let proof = &t["proof"];
    assert_eq!(proof["verified"], true, "{proof}");
    assert_eq!(proof["other_amount_refused"], true, "{proof}");
    assert!(
        proof["refusal"]
            .as_str()
            .unwrap()
            .contains("does not verify"),
        "{proof}"
    );
    assert_eq!(proof["proof"]["payment_id"], t["payment_id"], "{proof}");
    assert_eq!(
        proof["proof"]["amount_sat"].as_u64(),
        Some(AMOUNT),
        "{proof}"
    );

    // Exact balances: A pays the amount and S's fee, B receives the amount.
    assert_eq!(t["amount_sat"].as_u64(), Some(AMOUNT));
    let fee = t["fee_sat"].as_i64().expect("fee_sat");
    assert!(fee > 0, "S charges a fee");
    let amount = AMOUNT as i64;
    assert_eq!(change(&t, "A–S", "A"), -(amount + fee));
    assert_eq!(change(&t, "A–S", "S"), amount + fee);
    assert_eq!(change(&t, "S–B", "S"), -amount);
    assert_eq!(change(&t, "S–B", "B"), amount);
    for (channel, capacity) in [("A–S", 1_000_000), ("S–B", 400_000)] {
        let sum: i64 = t["balances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["channel"] == channel)
            .map(|b| b["after_sat"].as_i64().unwrap())
            .sum();
        assert_eq!(sum, capacity, "{channel} conserves its capacity");
    }

    // Both channels were funded by transactions the chain confirmed.
    let channels = t["channels"].as_array().expect("channels");
    assert_eq!(channels.len(), 2);
    for channel in channels {
        let txid = channel["funding_txid"].as_str().expect("funding_txid");
        let record = t["txids"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["txid"] == txid)
            .unwrap_or_else(|| panic!("funding {txid} not among the txids"));
        assert!(record["confirmed_at"].as_u64().unwrap() > 100, "{record}");
        assert_eq!(txid.len(), 64);
    }

    // Every step is timed, in order, and the story is complete.
    let steps = t["steps"].as_array().expect("steps");
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    for name in [
        "chain", "nodes", "fund", "open", "contact", "pay", "sell", "receipt",
    ] {
        assert!(names.contains(&name), "step {name} missing from {names:?}");
    }
    let mut last = 0;
    for step in steps {
        let started = step["started_ms"].as_u64().unwrap();
        assert!(started >= last, "steps out of order");
        last = started;
        assert!(step["duration_ms"].is_u64());
    }
    assert!(t["total_ms"].as_u64().unwrap() >= last);

    // The diagram shows the messages that make the payment, from the nodes' own reports.
    let mermaid = t["mermaid"].as_str().expect("mermaid");
    assert!(mermaid.starts_with("sequenceDiagram\n"), "{mermaid}");
    for arrow in [
        "A->>S: request",
        "S->>A: offer",
        "A->>mailbox: letter",
        "mailbox->>B: letter",
        "B->>S: invoice",
        "S->>A: receipt",
    ] {
        assert!(mermaid.contains(arrow), "{arrow} missing from\n{mermaid}");
    }
    // The same diagram as SVG: one arrow per message, as many as the mermaid text has.
    let svg = t["svg"].as_str().expect("svg");
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
    let messages = t["messages"].as_array().expect("messages").len();
    assert_eq!(
        svg.matches("<g class=\"message\"").count(),
        messages,
        "{svg}"
    );
    assert_eq!(mermaid.matches("->>").count(), messages, "{mermaid}");
    let written = std::fs::read_to_string(&svg_path).expect("--svg writes the file");
    assert_eq!(written, svg, "--svg writes the transcript's svg");
    let pay_step = steps.iter().find(|s| s["name"] == "pay").unwrap()["n"].clone();
    assert!(
        t["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["step"] == pay_step && m["from"] == "A" && m["to"] == "mailbox"),
        "the letter is posted during the pay step"
    );

    // Enforcement on chain: the stale state is overridden and the latest one settles.
    let e = &t["enforcement"];
    assert_eq!(e["stale_state"], 0, "{e}");
    assert_eq!(e["override_state"], 1, "{e}");
    assert_eq!(
        e["settled_to_a"].as_i64(),
        balance(&t, "A–S", "A")["after_sat"].as_i64(),
        "{e}"
    );
    assert_eq!(
        e["settled_to_s"].as_i64(),
        balance(&t, "A–S", "S")["after_sat"].as_i64(),
        "{e}"
    );
    let mut heights = vec![];
    for key in ["stale_txid", "override_txid", "settlement_txid"] {
        let txid = e[key].as_str().expect(key);
        let record = t["txids"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["txid"] == txid)
            .unwrap_or_else(|| panic!("{key} {txid} not among the txids"));
        heights.push(record["confirmed_at"].as_u64().expect("confirmed"));
    }
    assert!(
        heights[0] < heights[1],
        "U_1 confirms after U_0: {heights:?}"
    );
    let delay = e["shared_delay"].as_u64().expect("shared_delay");
    assert!(delay > 0);
    assert!(
        heights[2] >= heights[1] + delay,
        "the settlement waits the shared delay: {heights:?}"
    );
    for arrow in ["A->>chain: U_0", "S->>chain: U_1", "S->>chain: SE_1"] {
        assert!(mermaid.contains(arrow), "{arrow} missing from\n{mermaid}");
    }

    // No child process outlives the demo, and its directory is gone.
    let dir = t["data_dir"].as_str().expect("data_dir");
    assert_eq!(t["kept"], false);
    assert!(!std::path::Path::new(dir).exists(), "{dir} was not removed");
    let processes = t["processes"].as_array().expect("processes");
    assert!(
        processes.len() >= 6,
        "mailbox, three nodes and two restarts"
    );
    for p in processes {
        let pid = p["pid"].as_u64().unwrap();
        // A process of this run names the run's directory on its command line.
        let alive = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .map(|c| c.contains(dir))
            .unwrap_or(false);
        assert!(!alive, "{p} still runs");
    }
}
