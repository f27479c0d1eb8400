//! Running `asyncpay demo --json` from a test and reading its transcript.
#![allow(dead_code)]

use std::process::Command;

use serde_json::Value;

/// Runs `asyncpay demo --json --timeout-secs 60` with `args`; the run must succeed and print
/// one JSON transcript, which is returned.
pub fn demo(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .args(["demo", "--json", "--timeout-secs", "60"])
        .args(args)
        .output()
        .expect("run asyncpay demo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?}: demo failed:\n{stderr}");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}):\n{stderr}"))
}

/// A field of `party`'s balance row in `channel` (`change_sat`, `after_sat`, …).
pub fn balance(t: &Value, channel: &str, party: &str, field: &str) -> i64 {
    t["balances"]
        .as_array()
        .expect("balances")
        .iter()
        .find(|b| b["channel"] == channel && b["party"] == party)
        .and_then(|b| b[field].as_i64())
        .unwrap_or_else(|| panic!("no balance row {channel}/{party} with {field}"))
}

/// What `party`'s balance in `channel` changed by.
pub fn change(t: &Value, channel: &str, party: &str) -> i64 {
    balance(t, channel, party, "change_sat")
}

/// Whether the transcript shows `from` sending `what` to `to`.
pub fn sent(t: &Value, from: &str, to: &str, what: &str) -> bool {
    messages(t)
        .iter()
        .any(|m| m["from"] == from && m["to"] == to && m["what"] == what)
}

/// The messages of the transcript.
pub fn messages(t: &Value) -> &Vec<Value> {
    t["messages"].as_array().expect("messages")
}

/// The number of the step named `name`.
pub fn step(t: &Value, name: &str) -> u64 {
    t["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["name"] == name)
        .and_then(|s| s["n"].as_u64())
        .unwrap_or_else(|| panic!("no step {name}: {:#}", t["steps"]))
}

/// The run's checks passed and the payment was undone before a sale: A's payment void, S's
/// offer cancelled, B's invoice refused, and no balance moved on any channel.
pub fn assert_undone(t: &Value) {
    assert_eq!(t["ok"], true, "{:#}", t["checks"]);
    assert_eq!(t["status"]["payer"], "void");
    assert_eq!(t["status"]["lsp"], "cancelled");
    assert_eq!(t["status"]["payee"], "refused");
    for b in t["balances"].as_array().expect("balances") {
        assert_eq!(b["change_sat"], 0, "{b}");
    }
}
