//! Adversarial letters on processes: `asyncpay demo --adversary KIND` puts a bogus letter,
//! made from A's genuine one, in B's mailbox before B comes online. B must refuse a letter
//! whose scalar does not sell the point and one whose offer S did not sign as it reads, and
//! handle a replayed letter once; in every case the genuine payment completes exactly once
//! (the demo's own balance checks).

use std::process::Command;

use serde_json::Value;

fn demo(kind: &str) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .args([
            "demo",
            "--json",
            "--no-epilogue",
            "--timeout-secs",
            "60",
            "--adversary",
            kind,
        ])
        .output()
        .expect("run asyncpay demo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "--adversary {kind}: demo failed:\n{stderr}"
    );
    let t: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("--adversary {kind}: stdout is not JSON ({e}):\n{stderr}"));
    assert_eq!(t["ok"], true, "--adversary {kind}: {:#}", t["checks"]);
    assert_eq!(t["status"]["payee"], "paid", "--adversary {kind}");
    assert_eq!(t["adversary"]["letters_fetched"], 2, "--adversary {kind}");
    t
}

#[test]
fn a_letter_whose_scalar_does_not_sell_the_point_is_refused() {
    let t = demo("wrong-scalar");
    let why = t["adversary"]["refusal"]
        .as_str()
        .expect("B refused a letter");
    assert!(why.contains("does not sell"), "{why}");
}

#[test]
fn a_letter_with_a_tampered_offer_is_refused() {
    let t = demo("tampered-offer");
    let why = t["adversary"]["refusal"]
        .as_str()
        .expect("B refused a letter");
    assert!(why.contains("invalid offer signature"), "{why}");
}

#[test]
fn a_replayed_letter_pays_once() {
    let t = demo("replayed-letter");
    assert_eq!(t["adversary"]["refused_by_b"], false, "{}", t["adversary"]);
}
