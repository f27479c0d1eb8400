//! `asyncpay demo --reverse`: the reverse variant on processes. B asks S for a state paying
//! it and leaves S's offer in A's mailbox, then stops; A buys S's signature with a PTLC on
//! A–S and hands it to B's mailbox; B starts again and has its state. The transcript must
//! show the statuses, exact balance changes on both channels and the messages of the
//! variant.

mod demo_support;

use demo_support::*;

const AMOUNT: i64 = 50_000;

#[test]
fn payee_offline_is_paid_by_the_payer_buying_its_lsp_signature() {
    let t = demo(&["--reverse"]);
    assert_eq!(t["ok"], true, "{:#}", t["checks"]);
    assert_eq!(t["status"]["payer"], "bought");
    assert_eq!(t["status"]["lsp"], "bought");
    assert_eq!(t["status"]["payee"], "paid");
    assert!(t["enforcement"].is_null(), "no epilogue in this variant");
    let fee = t["fee_sat"].as_i64().expect("fee");
    assert_eq!(change(&t, "A–S", "A"), -AMOUNT - fee);
    assert_eq!(change(&t, "A–S", "S"), AMOUNT + fee);
    assert_eq!(change(&t, "S–B", "S"), -AMOUNT);
    assert_eq!(change(&t, "S–B", "B"), AMOUNT);
    assert!(sent(&t, "B", "S", "receive_request"));
    assert!(sent(&t, "S", "B", "receive_offer"));
    assert!(sent(&t, "B", "mailbox", "letter (age-encrypted to A)"));
    assert!(sent(&t, "A", "mailbox", "letter (age-encrypted to B)"));
    assert!(sent(&t, "mailbox", "A", "letter"));
}
