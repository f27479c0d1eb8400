//! `asyncpay demo --pos offline-merchant --json` and `--pos offline-payer --json`, on
//! processes on the BIP118 regtest: paying at a shop when one side has no connection, from
//! the merchant B's static offer.
//!
//! - offline-merchant: A pays B's offer as an irrevocable held sale and hands the letter
//!   over; A's cancellation is refused; B's device, offline, refuses a tampered copy, a copy
//!   at a till asking another amount and the letter at another merchant's device (C),
//!   accepts the letter (`asyncpay pos accept`, separate processes) and sells once online.
//! - offline-payer: A's session with S runs through B's relay (`asyncpay pos relay`) from
//!   the channel's opening on; relays corrupting, dropping and replaying A's bytes each make
//!   S drop the session with the broken frame named, and move nothing; then A pays at the
//!   counter and B is paid at once.
//!
//! Both end with exact balances and A's proof verified by `asyncpay proof verify` against
//! B's static offer (a copy for one satoshi more refused).

mod demo_support;

use demo_support::*;
use serde_json::Value;

fn check<'a>(t: &'a Value, what: &str) -> &'a Value {
    t["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["what"] == what)
        .unwrap_or_else(|| panic!("no check {what:?}"))
}

fn paid_exactly_once(t: &Value) {
    assert_eq!(t["status"]["payer"], "completed");
    assert_eq!(t["status"]["lsp"], "sold");
    assert_eq!(t["status"]["payee"], "paid");
    let (amount, fee) = (
        t["amount_sat"].as_i64().unwrap(),
        t["fee_sat"].as_i64().unwrap(),
    );
    assert_eq!(amount, 21_000);
    assert!(fee > 0);
    assert_eq!(change(t, "A–S", "A"), -(amount + fee));
    assert_eq!(change(t, "A–S", "S"), amount + fee);
    assert_eq!(change(t, "S–B", "S"), -amount);
    assert_eq!(change(t, "S–B", "B"), amount);
    assert_eq!(t["proof"]["verified"], true);
    assert_eq!(t["proof"]["other_amount_refused"], true);
    assert_eq!(t["proof"]["proof"]["note"], "a coffee");
    // B's static offer: version 3, its amount, description and LSP signed with the card.
    let offer = &t["pos"]["offer"];
    assert_eq!(offer["version"], 3);
    assert_eq!(offer["offer"]["amount_sat"], 21_000);
    assert_eq!(offer["offer"]["description"], "a coffee");
    let s_key = t["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "S")
        .unwrap()["node_key"]
        .clone();
    assert_eq!(offer["offer"]["lsp"], s_key);
    assert_eq!(
        check(t, "A refuses to pay the static offer another amount")["ok"],
        true
    );
    assert_eq!(
        check(t, "B's watchtower holds B's latest state")["ok"],
        true
    );
    // Every check the run made holds (the transcript's `ok`).
    assert_eq!(t["ok"], true);
}

#[test]
fn an_offline_merchant_checks_the_handed_letter_offline_and_is_paid_once_online() {
    let t = demo(&["--pos", "offline-merchant"]);
    paid_exactly_once(&t);
    assert_eq!(t["pos"]["mode"], "offline-merchant");
    assert_eq!(t["pos"]["cancel"], "refused: irrevocable");
    let accepts = t["pos"]["accepts"].as_array().unwrap();
    let outcome = |what: &str| {
        let a = accepts
            .iter()
            .find(|a| a["what"] == what)
            .unwrap_or_else(|| panic!("no attempt {what:?}"));
        (
            a["accepted"].as_bool().unwrap(),
            a["output"].as_str().unwrap().to_owned(),
        )
    };
    let (ok, out) = outcome("a copy with one byte changed");
    assert!(
        !ok && out.contains("not a letter sealed to this merchant"),
        "{out}"
    );
    let (ok, out) = outcome("at a till asking another amount");
    assert!(!ok && out.contains("the sale is for 21001 sat"), "{out}");
    let (ok, out) = outcome("at another merchant's device (C)");
    assert!(
        !ok && out.contains("not a letter sealed to this merchant"),
        "{out}"
    );
    let (ok, out) = outcome("the letter");
    assert!(ok, "{out}");
    let accepted: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(accepted["amount_sat"], 21_000);
    assert_eq!(accepted["payment_id"], t["payment_id"]);
    assert!(accepted["blocks_left"].as_u64().unwrap() >= 6);
    assert!(accepted["guarantee"]
        .as_str()
        .unwrap()
        .contains("irrevocable"));
    // C's device and channel: nothing moved.
    assert_eq!(change(&t, "S–C", "C"), 0);
    // B accepted while its node was stopped, and sold after it started.
    assert!(step(&t, "accept") < step(&t, "sell"));
}

#[test]
fn an_offline_payer_pays_through_the_merchants_relay_which_cannot_tamper() {
    let t = demo(&["--pos", "offline-payer"]);
    paid_exactly_once(&t);
    assert_eq!(t["pos"]["mode"], "offline-payer");
    let faults = t["pos"]["faults"].as_array().unwrap();
    let kinds: Vec<&str> = faults.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["corrupt", "drop", "replay"]);
    for f in faults {
        assert_eq!(f["injected"]["event"], "fault");
        assert_eq!(f["injected"]["kind"], f["kind"]);
        let saw = f["lsp_saw"]
            .as_str()
            .unwrap_or_else(|| panic!("S saw nothing: {f}"));
        assert!(saw.contains("failed authentication"), "{saw}");
        assert_eq!(f["ptlcs_after"], 0);
    }
    // Every process the demo started includes the relays.
    let processes = t["processes"].as_array().unwrap();
    for name in [
        "relay",
        "relay-corrupt",
        "relay-drop",
        "relay-replay",
        "relay-honest",
    ] {
        assert!(
            processes.iter().any(|p| p["name"] == name),
            "no process {name}"
        );
    }
}
