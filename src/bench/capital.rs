//! `asyncpay bench capital`: capital locked per payment, in sat·blocks, under
//! pay-for-signature and two held-HTLC baselines, from a seeded simulation over the
//! offline-time distributions documented in `docs/capital.md`.
//!
//! ```
//! use asyncpay::bench::capital::measure;
//! use asyncpay::sim::{ModelParams, SimConfig};
//!
//! let config = SimConfig { payments: 200, seed: 1, params: ModelParams::default() };
//! let figures = measure(config)?;
//! assert!(!figures.reports.is_empty());
//! assert!(figures.render().contains("pfs/this"));
//! # Ok::<(), asyncpay::sim::SimError>(())
//! ```

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::sim::{
    documented_distributions, simulate, DistributionReport, ModelParams, Party, Scheme, SimConfig,
    SimError, Stats,
};

/// The simulation's configuration and one report per documented distribution.
#[derive(Debug, Clone)]
pub struct CapitalFigures {
    /// What was simulated.
    pub config: SimConfig,
    /// One report per distribution of [`documented_distributions`], in their order.
    pub reports: Vec<DistributionReport>,
}

/// Runs the simulation for every documented distribution.
pub fn measure(config: SimConfig) -> Result<CapitalFigures, SimError> {
    let reports = documented_distributions()
        .iter()
        .map(|d| simulate(d, &config))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CapitalFigures { config, reports })
}

impl CapitalFigures {
    /// The configuration and the reports as one JSON object (what `--json` prints).
    pub fn to_json(&self) -> Value {
        json!({"config": self.config, "reports": self.reports})
    }

    /// The reports as text: a header, then one table per distribution.
    pub fn render(&self) -> String {
        let config = &self.config;
        let p = &config.params;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "capital locked per payment, sat·blocks (amount {} sat, block {} s, resolution {} s, \
             horizon {} blocks, route CLTV {} blocks, seed {}, {} payments per distribution)",
            p.amount_sat,
            p.block_secs,
            p.resolve_secs,
            p.horizon_blocks,
            p.route_cltv_budget,
            config.seed,
            config.payments
        );
        let _ = writeln!(
            out,
            "pfs/this = mean(pay-for-signature) / mean(this scheme), same party\n"
        );
        for report in &self.reports {
            render_report(&mut out, report, p);
        }
        out
    }
}

/// `mean(ours) / mean(baseline)`, or `-` when the baseline locks nothing.
fn ratio(ours: &Stats, baseline: &Stats) -> String {
    if baseline.mean > 0.0 {
        let r = ours.mean / baseline.mean;
        if r >= 0.01 {
            format!("{r:.3}")
        } else {
            format!("{r:.1e}")
        }
    } else {
        "-".to_string()
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

fn render_report(out: &mut String, report: &DistributionReport, params: &ModelParams) {
    let b = &report.payee_offline_blocks;
    let _ = writeln!(
        out,
        "== {} ({}) — {}",
        report.name, report.description, report.source
    );
    let _ = writeln!(
        out,
        "   payee offline, blocks: mean {:.1}, p50 {:.1}, p99 {:.1}; {} payments",
        b.mean, b.p50, b.p99, report.payments
    );
    let _ = writeln!(
        out,
        "{:<12} {:<20} {:>14} {:>14} {:>14} {:>10}",
        "party", "scheme", "mean", "p50", "p99", "pfs/this"
    );
    let ours = report.scheme(Scheme::PayForSignature);
    let rows: Vec<(&str, Option<Party>)> = Party::ALL
        .iter()
        .map(|p| (p.label(), Some(*p)))
        .chain(std::iter::once(("all", None)))
        .collect();
    for (label, party) in rows {
        for scheme in Scheme::ALL {
            let s = report.scheme(scheme);
            let (stats, ours_stats) = match party {
                Some(p) => (s.party(p), ours.party(p)),
                None => (&s.total, &ours.total),
            };
            let _ = writeln!(
                out,
                "{:<12} {:<20} {:>14.0} {:>14.0} {:>14.0} {:>10}",
                label,
                scheme.label(),
                stats.mean,
                stats.p50,
                stats.p99,
                ratio(ours_stats, stats)
            );
        }
    }
    let l = &report.limits;
    let cltv: Vec<String> = l
        .cltv_exceeds
        .iter()
        .map(|c| format!("{} {}", pct(c.fraction), c.limit))
        .collect();
    let _ = writeln!(
        out,
        "   held HTLC CLTV (offline + {} route) exceeds: {}",
        params.route_cltv_budget,
        cltv.join(", ")
    );
    let _ = writeln!(
        out,
        "   failed: held HTLC (payee later than {} blocks) {}; sale (payee later than offer expiry {} blocks) {}",
        params.hold_limit_blocks(),
        pct(l.held_failed),
        params.horizon_blocks,
        pct(l.sale_failed)
    );
    let _ = writeln!(
        out,
        "   held: payer back after its HTLC deadline (LSP force-closes) {}; claimed HTLC waits for payer {} (mean {:.1} blocks, not counted)",
        pct(l.payer_missed_htlc_deadline),
        pct(l.claimed_awaiting_payer),
        l.claimed_awaiting_payer_mean_blocks
    );
    let _ = writeln!(
        out,
        "   pfs: payer back while its sale is pending (channel takes no other update) {} (mean {:.1} blocks)",
        pct(l.payer_blocked),
        l.payer_blocked_mean_blocks
    );
    let _ = writeln!(
        out,
        "   held sale: failed (payee later than the held window {} blocks) {}; its channel takes other updates meanwhile",
        params.held_window_blocks(),
        pct(l.held_sale_failed)
    );
    let _ = writeln!(out);
}
