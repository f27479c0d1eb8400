//! `asyncpay demo --cancel`: cancellation on processes. A posts its letter and stops, comes
//! back before B sells and cancels through its control interface; S cancels the offer and
//! reverts A–S to state 0's balances (state 2); B, online later, invoices and is refused
//! with `cancelled`. No balance moves on any channel, and in the on-chain epilogue S answers
//! A's stale state 0 with the revert, whose settlement pays A its whole balance.

mod demo_support;

use demo_support::*;

#[test]
fn payer_cancels_before_the_sale_and_nothing_moves() {
    let t = demo(&["--cancel"]);
    assert_undone(&t);
    assert!(sent(&t, "A", "S", "cancel"));
    assert!(sent(&t, "S", "A", "cancelled"));
    assert!(sent(&t, "B", "S", "invoice"));
    assert!(sent(&t, "S", "B", "invoice_refused"));
    // S never offered B a PTLC: no channel update between S and B once B is back.
    let (cancel, sell) = (step(&t, "cancel"), step(&t, "sell"));
    assert!(cancel < sell, "A cancelled before B came online");
    assert!(
        !messages(&t).iter().any(|m| m["step"] == sell
            && ["propose", "countersign", "complete"].contains(&m["what"].as_str().unwrap_or(""))),
        "no update on S–B in the sell step"
    );
    let e = &t["enforcement"];
    assert_eq!(
        (e["stale_state"].as_u64(), e["override_state"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(e["settled_to_a"].as_u64(), Some(1_000_000));
    assert_eq!(e["settled_to_s"].as_u64(), Some(0));
}
