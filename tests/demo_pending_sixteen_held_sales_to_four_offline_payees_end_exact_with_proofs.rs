//! `asyncpay demo --pending 16 --json`: sixteen held sales wait at once on A's one channel
//! with S, on processes, to four payees B, C, D and E while they are offline. A cancels two;
//! B, C and D come online in a shuffled order and sell; E comes only after S's offers to it
//! expired and refuses its letters; A, back, receives its receipts. Every balance ends exact
//! and each sold payment's proof is checked by a separate `asyncpay proof verify` process
//! against its own payee's card (and a copy for one satoshi more is refused).

mod demo_support;

use demo_support::*;

#[test]
fn sixteen_held_sales_to_four_offline_payees_end_exact_with_proofs() {
    let t = demo(&["--pending", "16"]);
    let pending = t["pending"].as_array().expect("the payments");
    assert_eq!(pending.len(), 16);
    let count = |outcome: &str| pending.iter().filter(|p| p["outcome"] == outcome).count();
    assert_eq!(
        (count("sold"), count("cancelled"), count("expired")),
        (10, 2, 4)
    );
    let waiting = t["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["what"] == "PTLCs waiting at once on A–S")
        .expect("the check");
    assert_eq!(waiting["actual"], 16);

    // Each sold payment: completed at A, sold at S, paid at its payee, its proof verified
    // against that payee's card; the others moved nothing.
    let mut spent = 0i64;
    for p in pending {
        if p["outcome"] == "sold" {
            assert_eq!(
                (&p["payer_status"], &p["lsp_status"], &p["payee_status"]),
                (&"completed".into(), &"sold".into(), &"paid".into())
            );
            assert_eq!(p["proof"]["verified"], true);
            assert_eq!(p["proof"]["other_amount_refused"], true);
            assert_eq!(p["proof"]["proof"]["amount_sat"], p["amount_sat"]);
            spent += p["amount_sat"].as_i64().unwrap() + p["fee_sat"].as_i64().unwrap();
        } else {
            assert_eq!(p["payer_status"], "void");
            assert_eq!(p["lsp_status"], "cancelled");
            assert!(p.get("proof").is_none());
        }
    }
    assert_eq!(change(&t, "A–S", "A"), -spent);
    assert_eq!(change(&t, "A–S", "S"), spent);
    for (payee, channel) in [("B", "S–B"), ("C", "S–C"), ("D", "S–D"), ("E", "S–E")] {
        let got: i64 = pending
            .iter()
            .filter(|p| p["payee"] == payee && p["outcome"] == "sold")
            .map(|p| p["amount_sat"].as_i64().unwrap())
            .sum();
        assert_eq!(change(&t, channel, payee), got, "{payee}");
        assert_eq!(change(&t, channel, "S"), -got, "{payee}");
    }
    assert_eq!(change(&t, "S–E", "E"), 0, "E sold nothing");
    // The payees sold in the shuffled order D, B, C; E last.
    let sells: Vec<u64> = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "sell")
        .map(|s| s["n"].as_u64().unwrap())
        .collect();
    assert_eq!(sells.len(), 4);
    assert!(step(&t, "expire") < *sells.last().unwrap());
}
