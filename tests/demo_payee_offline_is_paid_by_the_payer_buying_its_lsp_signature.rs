//! `asyncpay demo --reverse`: the reverse variant on processes. B asks S for a state paying
//! it and leaves S's offer in A's mailbox, then stops; A buys S's signature with a PTLC on
//! A–S and hands it to B's mailbox; B starts again and has its state. The transcript must
//! show the statuses, exact balance changes on both channels and the messages of the
//! variant.

use std::process::Command;

use serde_json::Value;

const AMOUNT: i64 = 50_000;

#[test]
fn payee_offline_is_paid_by_the_payer_buying_its_lsp_signature() {
    let output = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .args(["demo", "--json", "--reverse", "--timeout-secs", "60"])
        .output()
        .expect("run asyncpay demo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stderr}");
    let t: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stderr}"));
    assert_eq!(t["ok"], true, "{:#}", t["checks"]);
    assert_eq!(t["status"]["payer"], "bought");
    assert_eq!(t["status"]["lsp"], "bought");
    assert_eq!(t["status"]["payee"], "paid");
    assert!(t["enforcement"].is_null(), "no epilogue in this variant");
    let fee = t["fee_sat"].as_i64().expect("fee");
    let change = |channel: &str, party: &str| {
        t["balances"]
            .as_array()
            .expect("balances")
            .iter()
            .find(|b| b["channel"] == channel && b["party"] == party)
            .and_then(|b| b["change_sat"].as_i64())
            .expect("balance row")
    };
    assert_eq!(change("A–S", "A"), -AMOUNT - fee);
    assert_eq!(change("A–S", "S"), AMOUNT + fee);
    assert_eq!(change("S–B", "S"), -AMOUNT);
    assert_eq!(change("S–B", "B"), AMOUNT);
    let sent = |from: &str, to: &str, what: &str| {
        t["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .any(|m| m["from"] == from && m["to"] == to && m["what"] == what)
    };
    assert!(sent("B", "S", "receive_request"));
    assert!(sent("S", "B", "receive_offer"));
    assert!(sent("B", "mailbox", "letter (age-encrypted to A)"));
    assert!(sent("A", "mailbox", "letter (age-encrypted to B)"));
    assert!(sent("mailbox", "A", "letter"));
}
