//! Adversarial letters on processes: `asyncpay demo --adversary KIND` puts a bogus letter,
//! made from A's genuine one, in B's mailbox before B comes online. B must refuse a letter
//! whose scalar does not sell the point and one whose offer S did not sign as it reads, and
//! handle a replayed letter once; in every case the genuine payment completes exactly once
//! (the demo's own balance checks).

mod demo_support;

use serde_json::Value;

fn demo(kind: &str) -> Value {
    let t = demo_support::demo(&["--no-epilogue", "--adversary", kind]);
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
