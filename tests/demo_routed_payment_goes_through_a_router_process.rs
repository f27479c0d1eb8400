//! `asyncpay demo --routed`: B's only channel is with a router P, a fourth process
//! (`asyncpay node run --role router`). S pays B through P with the same point on the BIP118
//! regtest's processes; the transcript must show the payment completed at all four, exact
//! balance changes on A–S, S–P (amount + P's fee) and P–B (amount), the forward and the
//! PTLCs in the messages, and the run must survive P being SIGKILLed at its steps.

mod demo_support;

use demo_support::*;
use serde_json::Value;

const AMOUNT: i64 = 50_000;
/// The router's fee (`DEFAULT_ROUTER_POLICY`).
const ROUTER_FEE: i64 = 10;

/// A routed run without the on-chain epilogue, with `extra` options.
fn routed(extra: &[&str]) -> Value {
    let mut args = vec!["--routed", "--no-epilogue"];
    args.extend_from_slice(extra);
    demo(&args)
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
    let t = routed(&[]);
    paid_through_p(&t, "routed");
    assert!(sent(&t, "S", "P", "forward"), "S asks P to forward");
    assert!(sent(&t, "P", "B", "propose"), "P offers B the PTLC");
    assert!(sent(&t, "P", "S", "propose"), "P fulfils S's PTLC");
    assert!(!sent(&t, "S", "B", "propose"), "S has no channel with B");
}

#[test]
fn the_router_killed_at_its_steps_restarts_and_the_payment_completes() {
    for point in [
        "P:send:countersign",
        "P:send:propose",
        "P:send:complete",
        "P:persist:3",
    ] {
        let t = routed(&["--crash", point]);
        paid_through_p(&t, point);
        assert_eq!(
            t["crash"]["fired_in"], "sell",
            "--crash {point}: {}",
            t["crash"]
        );
    }
}
