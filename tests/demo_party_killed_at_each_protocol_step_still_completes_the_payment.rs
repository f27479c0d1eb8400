//! Every party of the payer-offline payment SIGKILLed at each protocol step, on processes:
//! `asyncpay demo --crash PARTY:POINT` runs the real nodes on the BIP118 regtest, the party
//! kills itself right before it first sends each kind of its payment messages (or posts its
//! letter), and for the LSP after every one of its store writes during the payment (which
//! also covers its later sends of a kind); the demo restarts
//! it from its data directory at once. Each run must complete the payment with the exact
//! balances (the demo's own checks) and say that the party died at that point, in the step
//! where that point lies.

mod demo_support;

use demo_support::*;
use serde_json::Value;

const AMOUNT: u64 = 50_000;

/// Runs the demo with one crash; returns its transcript.
fn demo_with_crash(spec: &str) -> Value {
    let amount = AMOUNT.to_string();
    demo(&["--no-epilogue", "--amount-sat", &amount, "--crash", spec])
}

/// The payment completed with the exact balances after the crash.
fn completed(t: &Value, spec: &str) {
    assert_eq!(t["ok"], true, "--crash {spec}: {:#}", t["checks"]);
    assert_eq!(t["status"]["payer"], "completed", "--crash {spec}");
    assert_eq!(t["status"]["lsp"], "sold", "--crash {spec}");
    assert_eq!(t["status"]["payee"], "paid", "--crash {spec}");
    let fee = t["fee_sat"].as_i64().expect("fee");
    for (channel, party, expected) in [
        ("A–S", "A", -(AMOUNT as i64) - fee),
        ("A–S", "S", AMOUNT as i64 + fee),
        ("S–B", "S", -(AMOUNT as i64)),
        ("S–B", "B", AMOUNT as i64),
    ] {
        assert_eq!(change(t, channel, party), expected, "--crash {spec}");
    }
}

#[test]
fn each_party_killed_before_each_of_its_messages_restarts_and_the_payment_completes() {
    let points = [
        ("A:send:propose", "pay"),
        ("A:send:request", "pay"),
        ("A:post-letter", "pay"),
        ("A:send:receipt_ack", "receipt"),
        ("S:send:countersign", "pay"),
        ("S:send:offer", "pay"),
        ("S:send:propose", "sell"),
        ("S:send:complete", "sell"),
        ("S:send:receipt", "sell"),
        ("B:send:invoice", "sell"),
        ("B:send:countersign", "sell"),
        ("B:send:propose", "sell"),
        ("B:send:complete", "sell"),
    ];
    for (spec, step) in points {
        let t = demo_with_crash(spec);
        completed(&t, spec);
        let crash = &t["crash"];
        assert_eq!(crash["fired_in"], step, "--crash {spec}: {crash}");
    }
}

#[test]
fn the_lsp_killed_after_each_of_its_store_writes_restarts_and_the_payment_completes() {
    let mut n = 1;
    loop {
        let spec = format!("S:persist:{n}");
        let t = demo_with_crash(&spec);
        completed(&t, &spec);
        if t["crash"]["fired_in"].is_null() {
            break;
        }
        n += 1;
        assert!(n < 40, "no end to S's store writes");
    }
    assert!(n > 6, "S wrote only {} times during the payment", n - 1);
}

#[test]
fn the_payer_and_payee_killed_after_their_first_store_writes_restart_and_complete() {
    for spec in ["A:persist:1", "A:persist:3", "B:persist:1", "B:persist:3"] {
        let t = demo_with_crash(spec);
        completed(&t, spec);
        assert!(
            !t["crash"]["fired_in"].is_null(),
            "--crash {spec} never fired"
        );
    }
}
