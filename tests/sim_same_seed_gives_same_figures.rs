//! The capital simulation is deterministic: the same seed gives the same report, in the
//! library and through `asyncpay bench capital --json`; another seed gives another one.

use std::process::Command;

use anyhow::{ensure, Context};
use asyncpay::sim::{documented_distributions, simulate, ModelParams, SimConfig};

fn config(seed: u64) -> SimConfig {
    SimConfig {
        payments: 5_000,
        seed,
        params: ModelParams::default(),
    }
}

#[test]
fn library_reports_repeat_for_a_seed_and_differ_across_seeds() -> anyhow::Result<()> {
    for named in documented_distributions() {
        let first = simulate(&named, &config(7))?;
        let again = simulate(&named, &config(7))?;
        assert_eq!(first, again, "{}", named.name);
        assert_eq!(
            serde_json::to_string(&first)?,
            serde_json::to_string(&again)?
        );
        let other = simulate(&named, &config(8))?;
        assert_ne!(
            first.payee_offline_blocks, other.payee_offline_blocks,
            "{}",
            named.name
        );
    }
    Ok(())
}

fn bench_json(seed: &str) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .args([
            "bench",
            "capital",
            "--payments",
            "2000",
            "--seed",
            seed,
            "--json",
        ])
        .output()
        .context("run asyncpay")?;
    ensure!(
        out.status.success(),
        "bench capital failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[test]
fn bench_capital_json_repeats_for_a_seed() -> anyhow::Result<()> {
    let first = bench_json("11")?;
    let again = bench_json("11")?;
    assert_eq!(first, again);
    let reports = first["reports"].as_array().context("reports")?;
    assert_eq!(reports.len(), documented_distributions().len());
    assert_eq!(first["config"]["seed"], 11);
    for report in reports {
        assert_eq!(report["payments"], 2000);
        assert_eq!(
            report["schemes"].as_array().context("schemes")?.len(),
            asyncpay::sim::Scheme::ALL.len()
        );
    }
    let other = bench_json("12")?;
    assert_ne!(first["reports"], other["reports"]);
    Ok(())
}
