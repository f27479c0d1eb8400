//! A seeded simulation of capital locked by asynchronous payments: pay-for-signature against
//! held-HTLC baselines, over documented offline-time distributions.
//!
//! Pure computation: no I/O, no clock, no global RNG. The caller passes a seed; the same
//! seed, parameters and payment count give the same report. `asyncpay bench capital` prints
//! the reports, and `docs/capital.md` states the model and every assumption.
//!
//! ```
//! use asyncpay::sim::{documented_distributions, simulate, ModelParams, Scheme, SimConfig};
//!
//! let config = SimConfig { payments: 1_000, seed: 42, params: ModelParams::default() };
//! let hour = &documented_distributions()[0];
//! let report = simulate(hour, &config).unwrap();
//! let ours = report.scheme(Scheme::PayForSignature).total.mean;
//! let held = report.scheme(Scheme::HeldAtPayeeHop).total.mean;
//! assert!(ours < held);
//! assert_eq!(report, simulate(hour, &config).unwrap());
//! ```

mod capital;
mod distribution;

pub use capital::{account, Locked, ModelParams, Party, PaymentAccount, Scheme};
pub use distribution::{
    documented_distributions, NamedDistribution, OfflineDistribution, BLOCKS_PER_HOUR,
};

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;

/// Why a simulation cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// A parameter is negative, zero where it must be positive, or not finite.
    #[error("parameter {name} = {value} is out of range")]
    BadParameter {
        /// The parameter's name.
        name: &'static str,
        /// The value given.
        value: f64,
    },
    /// A mixture distribution without components.
    #[error("a mixture needs at least one component")]
    EmptyMixture,
    /// The payment amount is zero.
    #[error("the payment amount must be positive")]
    ZeroAmount,
    /// The horizon leaves no time to hold an HTLC once the route's CLTV budget is taken.
    #[error("horizon {horizon} blocks does not exceed the route's CLTV budget of {budget}")]
    HorizonTooShort {
        /// Blocks after sending by which the payee must return.
        horizon: u32,
        /// CLTV blocks the released HTLC needs downstream.
        budget: u32,
    },
    /// No payments to simulate.
    #[error("at least one payment is needed")]
    NoPayments,
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimConfig {
    /// Payments per distribution.
    pub payments: usize,
    /// Seed of the RNG (`rand`'s `StdRng`, seeded with `seed_from_u64`).
    pub seed: u64,
    /// The model's parameters.
    pub params: ModelParams,
}

/// Mean and percentiles of one figure over all payments.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    /// Arithmetic mean.
    pub mean: f64,
    /// Median (nearest rank).
    pub p50: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
}

impl Stats {
    /// The statistics of `values` (sorted in place). `values` must not be empty.
    fn of(values: &mut [f64]) -> Stats {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let rank = |p: f64| {
            // Nearest rank: the smallest value with at least p·n values at or below it.
            let k = (p * n as f64).ceil() as usize;
            values[k.clamp(1, n) - 1]
        };
        Stats {
            mean: values.iter().sum::<f64>() / n as f64,
            p50: rank(0.50),
            p99: rank(0.99),
        }
    }
}

/// Locked capital of one scheme, per party and in total, in sat·blocks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SchemeReport {
    /// The scheme.
    pub scheme: Scheme,
    /// The payer's locked capital.
    pub payer: Stats,
    /// The payer's LSP's.
    pub lsp: Stats,
    /// The payee's hop's.
    pub hop: Stats,
    /// All three per payment.
    pub total: Stats,
}

impl SchemeReport {
    /// One party's figures.
    pub fn party(&self, party: Party) -> &Stats {
        match party {
            Party::Payer => &self.payer,
            Party::Lsp => &self.lsp,
            Party::Hop => &self.hop,
        }
    }
}

/// The share of payments whose held HTLC would need more CLTV than a named limit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CltvExcess {
    /// The limit's name.
    pub limit: String,
    /// The limit in blocks.
    pub blocks: u32,
    /// Share of payments needing more.
    pub fraction: f64,
}

/// What limits how long the parties can stay offline, as observed over the payments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    /// Per named CLTV limit, the share of payments whose held HTLC would exceed it.
    pub cltv_exceeds: Vec<CltvExcess>,
    /// Baselines: share of payments failed because B returned after the hold limit.
    pub held_failed: f64,
    /// Pay-for-signature: share of payments failed because B returned after the offer's
    /// expiry.
    pub sale_failed: f64,
    /// Held sale: share of payments failed because B returned after the held window.
    pub held_sale_failed: f64,
    /// Baselines: share of payments where A returned after its HTLC's deadline, forcing its
    /// LSP to close A's channel on chain.
    pub payer_missed_htlc_deadline: f64,
    /// Pay-for-signature: share of payments where A was back while the sale was pending.
    pub payer_blocked: f64,
    /// Pay-for-signature: mean blocks A spent online with the sale pending, over those
    /// payments.
    pub payer_blocked_mean_blocks: f64,
    /// Baselines: share of payments where the claimed HTLC waited for A in A's channel.
    pub claimed_awaiting_payer: f64,
    /// Baselines: mean blocks it waited, over those payments.
    pub claimed_awaiting_payer_mean_blocks: f64,
}

/// The simulation of one distribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DistributionReport {
    /// The distribution's name.
    pub name: String,
    /// Its description in hours.
    pub description: String,
    /// Where its parameters come from.
    pub source: String,
    /// Payments simulated.
    pub payments: usize,
    /// The payee's offline time in blocks.
    pub payee_offline_blocks: Stats,
    /// One report per scheme, in the order of [`Scheme::ALL`].
    pub schemes: Vec<SchemeReport>,
    /// Offline-time limits.
    pub limits: Limits,
}

impl DistributionReport {
    /// The report of `scheme`.
    pub fn scheme(&self, scheme: Scheme) -> &SchemeReport {
        self.schemes
            .iter()
            .find(|s| s.scheme == scheme)
            .expect("simulate reports every scheme")
    }
}

/// Simulates `config.payments` payments whose payee and payer offline times are drawn
/// independently from `named`'s distribution (payee first, then payer, per payment).
pub fn simulate(
    named: &NamedDistribution,
    config: &SimConfig,
) -> Result<DistributionReport, SimError> {
    if config.payments == 0 {
        return Err(SimError::NoPayments);
    }
    config.params.validate()?;
    named.distribution.validate()?;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let n = config.payments;
    let params = &config.params;

    let mut payee_offline = Vec::with_capacity(n);
    let mut accounts = Vec::with_capacity(n);
    for _ in 0..n {
        let payee = named.distribution.sample(&mut rng);
        let payer = named.distribution.sample(&mut rng);
        accounts.push(account(params, payee, payer)?);
        payee_offline.push(payee);
    }

    let schemes = Scheme::ALL
        .iter()
        .map(|&scheme| {
            let column = |f: &dyn Fn(&Locked) -> f64| {
                let mut v: Vec<f64> = accounts.iter().map(|a| f(a.locked(scheme))).collect();
                Stats::of(&mut v)
            };
            SchemeReport {
                scheme,
                payer: column(&|l| l.payer),
                lsp: column(&|l| l.lsp),
                hop: column(&|l| l.hop),
                total: column(&|l| l.total()),
            }
        })
        .collect();

    let share = |pred: &dyn Fn(&PaymentAccount) -> bool| {
        accounts.iter().filter(|a| pred(a)).count() as f64 / n as f64
    };
    let mean_where_positive = |f: &dyn Fn(&PaymentAccount) -> f64| {
        let v: Vec<f64> = accounts.iter().map(f).filter(|x| *x > 0.0).collect();
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let limits = Limits {
        cltv_exceeds: params
            .cltv_limits
            .iter()
            .map(|(limit, blocks)| CltvExcess {
                limit: limit.clone(),
                blocks: *blocks,
                fraction: share(&|a| a.cltv_needed_blocks > f64::from(*blocks)),
            })
            .collect(),
        held_failed: share(&|a| !a.forwarded),
        sale_failed: share(&|a| !a.sold),
        held_sale_failed: share(&|a| !a.held_sold),
        payer_missed_htlc_deadline: share(&|a| a.payer_missed_htlc_deadline),
        payer_blocked: share(&|a| a.payer_blocked_blocks > 0.0),
        payer_blocked_mean_blocks: mean_where_positive(&|a| a.payer_blocked_blocks),
        claimed_awaiting_payer: share(&|a| a.claimed_awaiting_payer_blocks > 0.0),
        claimed_awaiting_payer_mean_blocks: mean_where_positive(&|a| {
            a.claimed_awaiting_payer_blocks
        }),
    };

    Ok(DistributionReport {
        name: named.name.to_string(),
        description: named.distribution.describe(),
        source: named.source.to_string(),
        payments: n,
        payee_offline_blocks: Stats::of(&mut payee_offline),
        schemes,
        limits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = Stats::of(&mut v);
        assert_eq!(s.p50, 50.0);
        assert_eq!(s.p99, 99.0);
        assert_eq!(s.mean, 50.5);
        let mut one = vec![3.0];
        assert_eq!(
            Stats::of(&mut one),
            Stats {
                mean: 3.0,
                p50: 3.0,
                p99: 3.0
            }
        );
    }
}
