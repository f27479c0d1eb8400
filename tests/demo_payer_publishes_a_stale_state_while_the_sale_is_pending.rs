//! `asyncpay demo --payer-cheats-while-pending`: the sale window on processes. Right after A
//! goes offline with its signature on state 1 for sale, A's backup publishes the stale U_0
//! through the mempool and it confirms. B then comes online and sells inside S's window: S's
//! node buys the scalar, completes U_1 and publishes it over U_0 in the same step, before A
//! is back; U_1 confirms and its settlement pays A and S exactly their state-1 balances.

mod demo_support;

use demo_support::*;

const AMOUNT: i64 = 50_000;

#[test]
fn payer_publishes_a_stale_state_while_the_sale_is_pending_and_s_overrides_it() {
    let t = demo(&["--payer-cheats-while-pending"]);
    assert_eq!(t["ok"], true, "{:#}", t["checks"]);
    assert_eq!(t["status"]["payer"], "completed");
    assert_eq!(t["status"]["lsp"], "sold");
    assert_eq!(t["status"]["payee"], "paid");
    let fee = t["fee_sat"].as_i64().expect("fee");
    assert_eq!(balance(&t, "A–S", "A", "change_sat"), -AMOUNT - fee);
    assert_eq!(balance(&t, "S–B", "B", "change_sat"), AMOUNT);

    let (stale, sell, receipt) = (step(&t, "stale"), step(&t, "sell"), step(&t, "receipt"));
    assert!(stale < sell && sell < receipt, "U_0 went out before B sold");
    let on_chain = |what: &str| {
        messages(&t)
            .iter()
            .find(|m| m["to"] == "chain" && m["what"] == what)
            .and_then(|m| m["step"].as_u64())
            .unwrap_or_else(|| panic!("no {what} on chain: {:#}", t["messages"]))
    };
    assert_eq!(on_chain("U_0 (stale, restored from backup)"), stale);
    assert_eq!(
        on_chain("U_1 spends U_0"),
        sell,
        "S published U_1 when it bought the scalar, before A was back"
    );
    let e = &t["enforcement"];
    assert_eq!(
        (e["stale_state"].as_u64(), e["override_state"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(e["shared_delay"].as_u64(), Some(40));
    assert_eq!(
        e["settled_to_a"].as_i64(),
        Some(balance(&t, "A–S", "A", "after_sat"))
    );
    assert_eq!(
        e["settled_to_s"].as_i64(),
        Some(balance(&t, "A–S", "S", "after_sat"))
    );
}
