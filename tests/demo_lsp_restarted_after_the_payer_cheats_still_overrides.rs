//! `asyncpay demo --lsp-restarts-after-cheat`: in the on-chain epilogue S is stopped before
//! A's backup publishes the stale U_0, and started again only after U_0 has confirmed (two
//! blocks later). S's process must find the spend from its stored channels alone (it watches
//! them again at start), answer with U_1 inside the shared delay, and settle state 1 with
//! the exact balances.

use std::process::Command;

use serde_json::Value;

#[test]
fn lsp_restarted_after_the_stale_state_confirmed_still_overrides_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .args([
            "demo",
            "--json",
            "--lsp-restarts-after-cheat",
            "--timeout-secs",
            "60",
        ])
        .output()
        .expect("run asyncpay demo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stderr}");
    let t: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stderr}"));
    assert_eq!(t["ok"], true, "{:#}", t["checks"]);
    let e = &t["enforcement"];
    assert_eq!(
        (e["stale_state"].as_u64(), e["override_state"].as_u64()),
        (Some(0), Some(1))
    );
    let after = |party: &str| {
        t["balances"]
            .as_array()
            .expect("balances")
            .iter()
            .find(|b| b["channel"] == "A–S" && b["party"] == party)
            .and_then(|b| b["after_sat"].as_u64())
            .expect("A–S balance")
    };
    assert_eq!(e["settled_to_a"].as_u64(), Some(after("A")));
    assert_eq!(e["settled_to_s"].as_u64(), Some(after("S")));
    // S was started twice: at the beginning, and again after the stale state confirmed.
    let s_starts = t["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter(|p| p["name"] == "S")
        .count();
    assert_eq!(s_starts, 2, "{:#}", t["processes"]);
}
