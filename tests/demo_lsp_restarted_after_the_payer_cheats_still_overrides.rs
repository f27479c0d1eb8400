//! `asyncpay demo --lsp-restarts-after-cheat`: in the on-chain epilogue S is stopped before
//! A's backup publishes the stale U_0, and started again only after U_0 has confirmed (two
//! blocks later). S's process must find the spend from its stored channels alone (it watches
//! them again at start), answer with U_1 inside the shared delay, and settle state 1 with
//! the exact balances.

mod demo_support;

use demo_support::*;

#[test]
fn lsp_restarted_after_the_stale_state_confirmed_still_overrides_it() {
    let t = demo(&["--lsp-restarts-after-cheat"]);
    assert_eq!(t["ok"], true, "{:#}", t["checks"]);
    let e = &t["enforcement"];
    assert_eq!(
        (e["stale_state"].as_u64(), e["override_state"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(
        e["settled_to_a"].as_u64(),
        Some(balance(&t, "A–S", "A", "after_sat") as u64)
    );
    assert_eq!(
        e["settled_to_s"].as_u64(),
        Some(balance(&t, "A–S", "S", "after_sat") as u64)
    );
    // S was started twice: at the beginning, and again after the stale state confirmed.
    let s_starts = t["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter(|p| p["name"] == "S")
        .count();
    assert_eq!(s_starts, 2, "{:#}", t["processes"]);
}
