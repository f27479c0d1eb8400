//! `asyncpay demo --payer-cheats-while-pending`: the sale window on processes. Right after A
//! goes offline with its signature on state 1 for sale, A's backup publishes the stale U_0
//! through the mempool and it confirms. B then comes online and sells inside S's window: S's
//! node buys the scalar, completes U_1 and publishes it over U_0 in the same step, before A
//! is back; U_1 confirms and its settlement pays A and S exactly their state-1 balances.

use std::process::Command;

use serde_json::Value;

const AMOUNT: i64 = 50_000;

#[test]
fn payer_publishes_a_stale_state_while_the_sale_is_pending_and_s_overrides_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .args([
            "demo",
            "--json",
            "--payer-cheats-while-pending",
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
    assert_eq!(t["status"]["payer"], "completed");
    assert_eq!(t["status"]["lsp"], "sold");
    assert_eq!(t["status"]["payee"], "paid");
    let balance = |channel: &str, party: &str, field: &str| {
        t["balances"]
            .as_array()
            .expect("balances")
            .iter()
            .find(|b| b["channel"] == channel && b["party"] == party)
            .and_then(|b| b[field].as_i64())
            .expect("balance row")
    };
    let fee = t["fee_sat"].as_i64().expect("fee");
    assert_eq!(balance("A–S", "A", "change_sat"), -AMOUNT - fee);
    assert_eq!(balance("S–B", "B", "change_sat"), AMOUNT);

    let steps = t["steps"].as_array().expect("steps");
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| s["n"].as_u64())
            .unwrap_or_else(|| panic!("no step {name}: {steps:?}"))
    };
    let (stale, sell, receipt) = (step("stale"), step("sell"), step("receipt"));
    assert!(stale < sell && sell < receipt, "U_0 went out before B sold");
    let on_chain = |what: &str| {
        t["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .find(|m| m["to"] == "chain" && m["what"] == what)
            .and_then(|m| m["step"].as_u64())
            .unwrap_or_else(|| panic!("no {what} on chain: {:#}", t["messages"]))
    };
    assert_eq!(on_chain("U_0 (stale, restored from backup)"), stale);
    assert_eq!(
        on_chain("U_1 spends U_0"),
        sell,
        "S published U_1 when it bought the scalar, before A was back"
    );
    let e = &t["enforcement"];
    assert_eq!(
        (e["stale_state"].as_u64(), e["override_state"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(e["shared_delay"].as_u64(), Some(40));
    assert_eq!(
        e["settled_to_a"].as_i64(),
        Some(balance("A–S", "A", "after_sat"))
    );
    assert_eq!(
        e["settled_to_s"].as_i64(),
        Some(balance("A–S", "S", "after_sat"))
    );
}
