//! `asyncpay bench capital`: capital locked per payment, in sat·blocks, under
//! pay-for-signature and two held-HTLC baselines, from a seeded simulation over the
//! offline-time distributions documented in `docs/capital.md`.

use asyncpay::sim::{
    documented_distributions, simulate, DistributionReport, ModelParams, Party, Scheme, SimConfig,
    Stats,
};
use clap::Args;
use serde_json::json;

/// Options of `asyncpay bench capital`.
#[derive(Args)]
pub struct BenchCapitalArgs {
    /// Payments simulated per distribution.
    #[arg(long, default_value_t = 100_000)]
    payments: usize,
    /// Seed of the simulation's RNG; the same seed prints the same figures.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Payment amount in sat (every figure is linear in it).
    #[arg(long, default_value_t = 100_000)]
    amount_sat: u64,
    /// Seconds from the payee coming online to the payment resolving along the path.
    #[arg(long, default_value_t = 10.0)]
    resolve_secs: f64,
    /// Print the reports as JSON.
    #[arg(long)]
    json: bool,
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

fn print_report(report: &DistributionReport, params: &ModelParams) {
    let b = &report.payee_offline_blocks;
    println!(
        "== {} ({}) — {}",
        report.name, report.description, report.source
    );
    println!(
        "   payee offline, blocks: mean {:.1}, p50 {:.1}, p99 {:.1}; {} payments",
        b.mean, b.p50, b.p99, report.payments
    );
    println!(
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
            println!(
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
    println!(
        "   held HTLC CLTV (offline + {} route) exceeds: {}",
        params.route_cltv_budget,
        cltv.join(", ")
    );
    println!(
        "   failed: held HTLC (payee later than {} blocks) {}; sale (payee later than offer expiry {} blocks) {}",
        params.hold_limit_blocks(),
        pct(l.held_failed),
        params.horizon_blocks,
        pct(l.sale_failed)
    );
    println!(
        "   held: payer back after its HTLC deadline (LSP force-closes) {}; claimed HTLC waits for payer {} (mean {:.1} blocks, not counted)",
        pct(l.payer_missed_htlc_deadline),
        pct(l.claimed_awaiting_payer),
        l.claimed_awaiting_payer_mean_blocks
    );
    println!(
        "   pfs: payer back while its sale is pending (channel takes no other update) {} (mean {:.1} blocks)",
        pct(l.payer_blocked),
        l.payer_blocked_mean_blocks
    );
    println!();
}

/// Runs the simulation for every documented distribution and prints the tables.
pub fn run(args: BenchCapitalArgs) -> anyhow::Result<()> {
    let params = ModelParams {
        amount_sat: args.amount_sat,
        resolve_secs: args.resolve_secs,
        ..ModelParams::default()
    };
    let config = SimConfig {
        payments: args.payments,
        seed: args.seed,
        params,
    };
    let reports = documented_distributions()
        .iter()
        .map(|d| simulate(d, &config))
        .collect::<Result<Vec<_>, _>>()?;

    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"config": config, "reports": reports}))?
        );
        return Ok(());
    }
    let p = &config.params;
    println!(
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
    println!("pfs/this = mean(pay-for-signature) / mean(this scheme), same party\n");
    for report in &reports {
        print_report(report, p);
    }
    Ok(())
}
