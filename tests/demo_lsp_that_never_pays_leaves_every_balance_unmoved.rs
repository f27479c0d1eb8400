//! `asyncpay demo --lsp-never-pays`: S goes offline right after its offer and stays away
//! until the offer has expired. B, online in between, invoices but is never paid, so it
//! keeps its scalar and nothing can complete A's state 1. S, back, refuses the invoice with
//! `expired` and reverts A–S; A, back, finds its payment void. No balance moves on any
//! channel, and in the on-chain epilogue S answers A's stale state 0 with the revert (state
//! 2), whose settlement pays A its whole balance.

mod demo_support;

use demo_support::*;

#[test]
fn lsp_that_never_pays_leaves_every_balance_unmoved() {
    let t = demo(&["--lsp-never-pays"]);
    assert_undone(&t);
    let (gone, expire) = (step(&t, "gone"), step(&t, "expire"));
    // Nothing reached S while it was away, and S sent nothing on S–B but its refusal.
    assert!(
        !messages(&t).iter().any(|m| {
            let n = m["step"].as_u64().unwrap_or(0);
            n > gone && n < expire && (m["to"] == "S" || m["from"] == "S")
        }),
        "S was away"
    );
    assert!(sent(&t, "S", "B", "invoice_refused"));
    assert!(
        !messages(&t).iter().any(|m| m["step"].as_u64() >= Some(gone)
            && ((m["from"] == "S" && m["to"] == "B") || (m["from"] == "B" && m["to"] == "S"))
            && m["what"] == "propose"),
        "no update on S–B once S was gone"
    );
    let e = &t["enforcement"];
    assert_eq!(
        (e["stale_state"].as_u64(), e["override_state"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(e["settled_to_a"].as_u64(), Some(1_000_000));
}
