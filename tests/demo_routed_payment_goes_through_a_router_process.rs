//! `asyncpay demo --routed`: B's only channel is with a router P, a fourth process
//! (`asyncpay node run --role router`). S pays B through P with the same point on the BIP118
//! regtest's processes; the transcript must show the payment completed at all four, exact
//! balance changes on A–S, S–P (amount + P's fee) and P–B (amount), the forward and the
//! PTLCs in the messages, and the run must survive P being SIGKILLed at its steps.

use std::process::Command;

use serde_json::Value;

const AMOUNT: i64 = 50_000;
/// The router's fee (`DEFAULT_ROUTER_POLICY`).
const ROUTER_FEE: i64 = 10;

fn demo(extra: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .args([
            "demo",
            "--json",
            "--routed",
            "--no-epilogue",
            "--timeout-secs",
            "60",
        ])
        .args(extra)
        .output()
        .expect("run asyncpay demo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{extra:?}: demo failed:\n{stderr}");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{extra:?}: stdout is not JSON ({e}):\n{stderr}"))
}

fn change(t: &Value, channel: &str, party: &str) -> i64 {
    t["balances"]
        .as_array()
        .expect("balances")
        .iter()
        .find(|b| b["channel"] == channel && b["party"] == party)
        .and_then(|b| b["change_sat"].as_i64())
        .unwrap_or_else(|| panic!("no balance row {channel}/{party}"))
}

fn paid_through_p(t: &Value, what: &str) {
    assert_eq!(t["ok"], true, "{what}: {:#}", t["checks"]);
    assert_eq!(t["status"]["payer"], "completed", "{what}");
    assert_eq!(t["status"]["lsp"], "sold", "{what}");
    assert_eq!(t["status"]["router"], "settled", "{what}");
    assert_eq!(t["status"]["payee"], "paid", "{what}");
    let fee = t["fee_sat"].as_i64().expect("fee");
    assert_eq!(change(t, "A–S", "A"), -AMOUNT - fee, "{what}");
    assert_eq!(change(t, "A–S", "S"), AMOUNT + fee, "{what}");
    assert_eq!(change(t, "S–P", "S"), -AMOUNT - ROUTER_FEE, "{what}");
    assert_eq!(change(t, "S–P", "P"), AMOUNT + ROUTER_FEE, "{what}");
    assert_eq!(change(t, "P–B", "P"), -AMOUNT, "{what}");
    assert_eq!(change(t, "P–B", "B"), AMOUNT, "{what}");
    assert!(
        t["channels"]
            .as_array()
            .expect("channels")
            .iter()
            .all(|c| c["name"] != "S–B"),
        "{what}: B has no channel with S"
    );
}

#[test]
fn the_payment_goes_through_the_router_process() {
    let t = demo(&[]);
    paid_through_p(&t, "routed");
    let sent = |from: &str, to: &str, what: &str| {
        t["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .any(|m| m["from"] == from && m["to"] == to && m["what"] == what)
    };
    assert!(sent("S", "P", "forward"), "S asks P to forward");
    assert!(sent("P", "B", "propose"), "P offers B the PTLC");
    assert!(sent("P", "S", "propose"), "P fulfils S's PTLC");
    assert!(!sent("S", "B", "propose"), "S has no channel with B");
}

#[test]
fn the_router_killed_at_its_steps_restarts_and_the_payment_completes() {
    for point in [
        "P:send:countersign",
        "P:send:propose",
        "P:send:complete",
        "P:persist:3",
    ] {
        let t = demo(&["--crash", point]);
        paid_through_p(&t, point);
        assert_eq!(
            t["crash"]["fired_in"], "sell",
            "--crash {point}: {}",
            t["crash"]
        );
    }
}
