//! Properties of the capital accounting over random parameters and offline times: no
//! locked figure is negative or infinite; a held HTLC locks the payer's amount for at least
//! the payee's offline time (up to the hold limit, after which it fails); pay-for-signature
//! never locks the LSP's or the hop's capital while the payee is offline.

use asyncpay::sim::{account, ModelParams, Party, Scheme};
use proptest::prelude::*;

fn params() -> impl Strategy<Value = ModelParams> {
    (
        1u64..=2_100_000_000_000_000,
        1.0f64..3_600.0,
        0.0f64..7_200.0,
        1u32..100_000,
        0u32..5_000,
        0u32..500,
    )
        .prop_map(
            |(amount, block, resolve, extra, budget, margin)| ModelParams {
                amount_sat: amount,
                block_secs: block,
                resolve_secs: resolve,
                horizon_blocks: budget + extra,
                route_cltv_budget: budget,
                claim_margin_blocks: margin,
                ..ModelParams::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn locked_capital_is_never_negative(
        p in params(),
        payee in 0.0f64..1.0e6,
        payer in 0.0f64..1.0e6,
    ) {
        let a = account(&p, payee, payer).unwrap();
        for scheme in Scheme::ALL {
            for party in Party::ALL {
                let v = a.locked(scheme).of(party);
                prop_assert!(v.is_finite() && v >= 0.0, "{scheme:?} {party:?}: {v}");
            }
        }
        prop_assert!(a.payer_blocked_blocks >= 0.0);
        prop_assert!(a.claimed_awaiting_payer_blocks >= 0.0);
    }

    #[test]
    fn held_htlc_locks_the_payer_for_the_offline_time(
        p in params(),
        payee in 0.0f64..1.0e6,
        payer in 0.0f64..1.0e6,
    ) {
        let a = account(&p, payee, payer).unwrap();
        let amount = p.amount_sat as f64;
        let hold_limit = f64::from(p.hold_limit_blocks());
        // Relative slack for floating-point rounding only.
        let slack = 1.0 - 1e-12;
        for held in [&a.held_at_payer_lsp, &a.held_at_payee_hop] {
            prop_assert!(held.payer >= amount * payee.min(hold_limit) * slack);
            if a.forwarded {
                prop_assert!(held.payer >= amount * payee * slack);
            }
        }
        // Held at the hop, the LSP's outgoing HTLC is locked as long as the payer's.
        prop_assert!(a.held_at_payee_hop.lsp >= amount * payee.min(hold_limit) * slack);
        // Pay-for-signature does not flatter itself: the payer's amount is committed at
        // least as long as under the held HTLC.
        prop_assert!(a.pay_for_signature.payer >= a.held_at_payer_lsp.payer * slack);
    }

    #[test]
    fn signature_sale_locks_lsp_and_hop_only_while_the_payee_is_online(
        p in params(),
        payee in 0.0f64..1.0e6,
        payer in 0.0f64..1.0e6,
    ) {
        let a = account(&p, payee, payer).unwrap();
        let online = p.amount_sat as f64 * p.resolve_blocks();
        prop_assert!(a.pay_for_signature.lsp <= online * (1.0 + 1e-12));
        prop_assert!(a.pay_for_signature.hop <= online * (1.0 + 1e-12));
        prop_assert_eq!(a.sold, payee <= f64::from(p.horizon_blocks));
    }
}
