//! The per-payment accounting of `asyncpay::sim` on small cases computed by hand, and the
//! aggregation over a distribution whose every draw is the same.
//!
//! Parameters throughout: 1,000 sat, 600 s blocks, 60 s resolution (0.1 block), horizon 100
//! blocks, route CLTV budget 30 (hold limit 70), claim margin 5 (payer deadline 95).

use asyncpay::sim::{
    account, simulate, ModelParams, NamedDistribution, OfflineDistribution, Scheme, SimConfig,
    SimError,
};

fn params() -> ModelParams {
    ModelParams {
        amount_sat: 1_000,
        block_secs: 600.0,
        resolve_secs: 60.0,
        horizon_blocks: 100,
        route_cltv_budget: 30,
        claim_margin_blocks: 5,
        shared_delay: 6,
        cltv_limits: vec![("39".into(), 39), ("40".into(), 40)],
    }
}

fn close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-6,
        "got {actual}, expected {expected}"
    );
}

fn locked(actual: &asyncpay::sim::Locked, payer: f64, lsp: f64, hop: f64) {
    close(actual.payer, payer);
    close(actual.lsp, lsp);
    close(actual.hop, hop);
}

#[test]
fn payee_back_after_ten_blocks_payer_after_three() {
    let a = account(&params(), 10.0, 3.0).unwrap();
    assert!(a.sold && a.forwarded);
    // Payer: 1,000 sat from sending to the sale at 10 + 0.1 blocks, in every scheme.
    // LSP and hop: only the 0.1-block resolution, unless the HTLC waits at the hop, which
    // locks the LSP's outgoing HTLC for the whole 10.1 blocks.
    locked(&a.pay_for_signature, 10_100.0, 100.0, 100.0);
    locked(&a.held_at_payer_lsp, 10_100.0, 100.0, 100.0);
    locked(&a.held_at_payee_hop, 10_100.0, 10_100.0, 100.0);
    close(a.pay_for_signature.total(), 10_300.0);
    close(a.held_at_payee_hop.total(), 20_300.0);
    // A is back at 3 while the sale is pending until 10.1: 7.1 blocks with a blocked channel.
    close(a.payer_blocked_blocks, 7.1);
    close(a.claimed_awaiting_payer_blocks, 0.0);
    close(a.cltv_needed_blocks, 40.0);
    assert!(!a.payer_missed_htlc_deadline);
}

#[test]
fn payer_away_longer_than_payee_leaves_the_claimed_htlc_waiting() {
    let a = account(&params(), 10.0, 50.0).unwrap();
    close(a.payer_blocked_blocks, 0.0);
    close(a.claimed_awaiting_payer_blocks, 50.0 - 10.1);
    // Not counted as locked: the figures are those of the case above.
    locked(&a.held_at_payer_lsp, 10_100.0, 100.0, 100.0);
    assert!(!a.payer_missed_htlc_deadline);
}

#[test]
fn payer_back_after_the_htlc_deadline_forces_a_close_only_in_the_baseline() {
    let at_deadline = account(&params(), 10.0, 95.0).unwrap();
    assert!(!at_deadline.payer_missed_htlc_deadline);
    let late = account(&params(), 10.0, 95.5).unwrap();
    assert!(late.payer_missed_htlc_deadline);
    assert!(late.sold);
    close(late.payer_blocked_blocks, 0.0);
}

#[test]
fn payee_between_hold_limit_and_offer_expiry_is_paid_only_by_signature_sale() {
    let a = account(&params(), 80.0, 1.0).unwrap();
    assert!(a.sold);
    assert!(!a.forwarded);
    locked(&a.pay_for_signature, 80_100.0, 100.0, 100.0);
    // The held HTLC is failed back at the hold limit, 70 blocks after sending.
    locked(&a.held_at_payer_lsp, 70_000.0, 0.0, 0.0);
    locked(&a.held_at_payee_hop, 70_000.0, 70_000.0, 0.0);
    close(a.claimed_awaiting_payer_blocks, 0.0);
}

#[test]
fn payee_after_the_horizon_fails_everywhere_and_the_offer_locks_the_payer_longest() {
    let a = account(&params(), 150.0, 200.0).unwrap();
    assert!(!a.sold && !a.forwarded);
    locked(&a.pay_for_signature, 100_000.0, 0.0, 0.0);
    locked(&a.held_at_payer_lsp, 70_000.0, 0.0, 0.0);
    locked(&a.held_at_payee_hop, 70_000.0, 70_000.0, 0.0);
    // A came back after the offer expired: never blocked.
    close(a.payer_blocked_blocks, 0.0);
    assert!(!a.payer_missed_htlc_deadline);
}

#[test]
fn payee_exactly_at_the_limits_still_gets_paid() {
    let a = account(&params(), 70.0, 0.0).unwrap();
    assert!(a.forwarded && a.sold);
    let b = account(&params(), 100.0, 0.0).unwrap();
    assert!(b.sold && !b.forwarded);
}

#[test]
fn bad_inputs_are_typed_errors() {
    assert!(matches!(
        account(&params(), -1.0, 0.0),
        Err(SimError::BadParameter {
            name: "payee_offline",
            ..
        })
    ));
    assert!(matches!(
        account(&params(), 1.0, f64::INFINITY),
        Err(SimError::BadParameter {
            name: "payer_offline",
            ..
        })
    ));
    let zero = ModelParams {
        amount_sat: 0,
        ..params()
    };
    assert_eq!(account(&zero, 1.0, 1.0), Err(SimError::ZeroAmount));
    let short = ModelParams {
        horizon_blocks: 30,
        ..params()
    };
    assert_eq!(
        account(&short, 1.0, 1.0),
        Err(SimError::HorizonTooShort {
            horizon: 30,
            budget: 30
        })
    );
    let nan = ModelParams {
        resolve_secs: f64::NAN,
        ..params()
    };
    assert!(matches!(
        account(&nan, 1.0, 1.0),
        Err(SimError::BadParameter {
            name: "resolve_secs",
            ..
        })
    ));
    let config = SimConfig {
        payments: 0,
        seed: 1,
        params: params(),
    };
    let constant = NamedDistribution {
        name: "c",
        source: "test",
        distribution: OfflineDistribution::Exponential { mean_blocks: 1.0 },
    };
    assert_eq!(simulate(&constant, &config), Err(SimError::NoPayments));
}

#[test]
fn a_constant_distribution_aggregates_to_the_hand_computed_payment() {
    // σ = 0: every payee and every payer is offline for exactly 10 blocks.
    let constant = NamedDistribution {
        name: "constant-10",
        source: "test",
        distribution: OfflineDistribution::LogNormal {
            median_blocks: 10.0,
            sigma: 0.0,
        },
    };
    let config = SimConfig {
        payments: 500,
        seed: 3,
        params: params(),
    };
    let r = simulate(&constant, &config).unwrap();
    assert_eq!(r.payments, 500);
    close(r.payee_offline_blocks.mean, 10.0);
    let ours = r.scheme(Scheme::PayForSignature);
    let held = r.scheme(Scheme::HeldAtPayeeHop);
    for stats in [ours.payer, ours.total, held.payer, held.lsp] {
        close(stats.p50, stats.mean);
        close(stats.p99, stats.mean);
    }
    close(ours.payer.mean, 10_100.0);
    close(ours.lsp.mean, 100.0);
    close(ours.total.mean, 10_300.0);
    close(held.lsp.mean, 10_100.0);
    close(held.total.mean, 20_300.0);
    let l = &r.limits;
    // CLTV needed 10 + 30 = 40: above 39, not above 40.
    close(l.cltv_exceeds[0].fraction, 1.0);
    close(l.cltv_exceeds[1].fraction, 0.0);
    close(l.held_failed, 0.0);
    close(l.sale_failed, 0.0);
    // A is back at 10, the sale completes at 10.1.
    close(l.payer_blocked, 1.0);
    close(l.payer_blocked_mean_blocks, 0.1);
    close(l.claimed_awaiting_payer, 0.0);
    close(l.claimed_awaiting_payer_mean_blocks, 0.0);
}

/// A held sale: the PTLC A offers S expires at the horizon (100); S must claim it from
/// shared_delay + 3 = 9 blocks before, and its PTLC to B (2 · 6 = 12 blocks) must let S learn
/// the scalar by then, which a late claim on chain may delay by the 2-block margin, so B must
/// sell within 100 − 9 − 12 − 2 = 77 blocks. Inside that window it locks what
/// pay-for-signature locks and blocks nothing; after it, A's amount until the window's end.
#[test]
fn a_held_sale_locks_like_a_sale_inside_its_window_and_blocks_nothing() {
    let p = params();
    assert_eq!(p.held_window_blocks(), 77);
    let a = account(&p, 10.0, 3.0).unwrap();
    assert!(a.held_sold);
    locked(&a.held_sale, 10_100.0, 100.0, 100.0);
    assert_eq!(a.locked(Scheme::HeldSale), &a.held_sale);
    // B back at 77 sells; at 78 it is too late (the pay-for-signature sale, horizon 100,
    // still goes through).
    assert!(account(&p, 77.0, 3.0).unwrap().held_sold);
    let late = account(&p, 78.0, 3.0).unwrap();
    assert!(!late.held_sold && late.sold);
    locked(&late.held_sale, 77_000.0, 0.0, 0.0);
}
