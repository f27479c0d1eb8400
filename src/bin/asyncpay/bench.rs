//! `asyncpay bench mailbox | crypto | capital | payment`: flags into the library's
//! benchmarks ([`asyncpay::bench`]), then their figures printed as text or JSON.

use std::path::PathBuf;

use asyncpay::bench::mailbox::MailboxBenchOptions;
use asyncpay::bench::payment::PaymentBenchOptions;
use asyncpay::sim::{ModelParams, SimConfig};
use clap::Args;

/// Options of `asyncpay bench mailbox`.
#[derive(Args)]
pub struct BenchMailboxArgs {
    /// Concurrent clients (each posts to its own payee's mailbox).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Total messages posted (spread over the clients).
    #[arg(long, default_value_t = 4096)]
    messages: usize,
    /// Payload bytes per message (a pre-signed update with its context is a few hundred).
    #[arg(long, default_value_t = 512)]
    payload_bytes: usize,
    /// Messages per fetch.
    #[arg(long, default_value_t = 16)]
    fetch_limit: u32,
    /// Inserts for the single-insert SQLite baseline.
    #[arg(long, default_value_t = 500)]
    baseline_inserts: usize,
    /// Directory for the databases (a temporary directory by default).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `asyncpay bench mailbox`.
pub fn mailbox(args: BenchMailboxArgs) -> anyhow::Result<()> {
    let report = asyncpay::bench::mailbox::measure(&MailboxBenchOptions {
        clients: args.clients,
        messages: args.messages,
        payload_bytes: args.payload_bytes,
        fetch_limit: args.fetch_limit,
        baseline_inserts: args.baseline_inserts,
        data_dir: args.data_dir,
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", asyncpay::bench::mailbox::render(&report));
    }
    Ok(())
}

/// Options of `asyncpay bench crypto`.
#[derive(Args)]
pub struct BenchCryptoArgs {
    /// Calls per round.
    #[arg(long, default_value_t = 2_000)]
    iterations: u32,
    /// Rounds; the median round is reported.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `asyncpay bench crypto`.
pub fn crypto(args: BenchCryptoArgs) -> anyhow::Result<()> {
    let figures = asyncpay::bench::crypto::measure(args.iterations, args.rounds)?;
    if args.json {
        println!("{}", figures.to_json());
    } else {
        print!("{}", figures.render());
    }
    Ok(())
}

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

/// Runs `asyncpay bench capital`: the simulation for every documented distribution.
pub fn capital(args: BenchCapitalArgs) -> anyhow::Result<()> {
    let params = ModelParams {
        amount_sat: args.amount_sat,
        resolve_secs: args.resolve_secs,
        ..ModelParams::default()
    };
    let figures = asyncpay::bench::capital::measure(SimConfig {
        payments: args.payments,
        seed: args.seed,
        params,
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures.to_json())?);
    } else {
        print!("{}", figures.render());
    }
    Ok(())
}

/// Options of `asyncpay bench payment`.
#[derive(Args)]
pub struct BenchPaymentArgs {
    /// Payments measured for the online latency (after the warm-up).
    #[arg(long, default_value_t = 40)]
    payments: usize,
    /// Payments run first and not measured.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Sales with one commit per row (each pending payment sells once).
    #[arg(long, default_value_t = 200)]
    unbatched_sales: usize,
    /// Sales with group commit.
    #[arg(long, default_value_t = 3000)]
    sales: usize,
    /// Payees (S–B channels); each sells one payment at a time, so this many sales are in
    /// flight.
    #[arg(long, default_value_t = 256)]
    payees: usize,
    /// Most inputs S handles per group commit. Far fewer than the sales in flight: a batch
    /// that takes everything queued makes S and the payees take turns instead of working at
    /// the same time.
    #[arg(long, default_value_t = 64)]
    max_batch: usize,
    /// Worker threads S's channels are sharded over (one node key, a store per worker), one
    /// group-commit sale run for each number listed.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<usize>,
    /// Sales of each sharded run (0 skips them).
    #[arg(long, default_value_t = 1000)]
    worker_sales: usize,
    /// Rounds of each baseline (Noise round trips, SQLite commits, fsyncs).
    #[arg(long, default_value_t = 300)]
    baseline_rounds: usize,
    /// A round-trip time in ms added on the payee's links (to its LSP and its mailbox,
    /// through delaying relays on loopback) for a second run of the online part, which
    /// reports each step's latency divided by it; 0 skips that run.
    #[arg(long, default_value_t = 50)]
    rtt_ms: u64,
    /// Payments measured over that link (after the warm-up).
    #[arg(long, default_value_t = 10)]
    rtt_payments: usize,
    /// Directory under which the run's stores are kept (in a new subdirectory); by default a
    /// temporary directory, removed at the end.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `asyncpay bench payment`.
pub fn payment(args: BenchPaymentArgs) -> anyhow::Result<()> {
    let report = asyncpay::bench::payment::measure(&PaymentBenchOptions {
        payments: args.payments,
        warmup: args.warmup,
        unbatched_sales: args.unbatched_sales,
        sales: args.sales,
        payees: args.payees,
        max_batch: args.max_batch,
        workers: args.workers,
        worker_sales: args.worker_sales,
        baseline_rounds: args.baseline_rounds,
        rtt_ms: args.rtt_ms,
        rtt_payments: args.rtt_payments,
        data_dir: args.data_dir,
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", asyncpay::bench::payment::render(&report));
    }
    Ok(())
}
