//! `asyncpay bench payment`: the asynchronous payment's figures, each printed beside a
//! baseline measured in the same run.
//!
//! - [`online`]: payee online → paid latency on loopback (real transport, real mailbox,
//!   durable stores), step by step, and the messages each part of a payment sends; its
//!   nodes' `Io` (the one driver's) is in [`node`];
//! - [`sales`]: the bytes S stores per pending payment, and S's sale throughput with
//!   durable storage, one transaction per input and with group commit.

mod node;
mod online;
mod sales;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use asyncpay::node::store::Store;
use asyncpay::protocol::messages::ChannelId;
use asyncpay::protocol::payment::{LspPolicy, PaymentId};
use bitcoin::hashes::Hash as _;
use bitcoin::{OutPoint, Txid};
use clap::Args;
use serde_json::{json, Value};

/// What `asyncpay bench payment --help` says about the figures.
pub const LONG_ABOUT: &str = "\
The asynchronous payment's figures, each beside a baseline measured in the same run.

1. Payee online -> paid latency. A, S and B are nodes on the one node driver (the one \
`asyncpay node` runs), each on its own thread with its own durable SQLite store (WAL, \
synchronous=FULL), talking over the authenticated transport (Noise XX bound to node keys) on \
loopback TCP; A's letter goes through a mailbox server on loopback. Two sets of nodes pay in \
turn: one writes the change set of each input in one transaction (as `asyncpay node`), the \
other writes each of its rows as a commit of its own; both send an input's frames only after \
its rows. The chain is not used: \
the bench feeds the funding confirmation a chain would. Per payment, A pays and goes \
offline; then B comes online and the clock starts. Steps: connect (B dials S, Noise \
handshake, B's core handles the connection), mailbox_fetch (challenge + fetch requests), \
decrypt (age), letter (B checks S's offer and s_A*G = T, persists, sends its invoice), \
invoice_to_s, ptlc_add (S accepts and adds the PTLC on S-B until B holds it in a complete \
state), fulfil (B fulfils until S has B's completion), complete_a (S persists the sale and \
completes A's U_{n+1}); total ends when S has persisted A's completed state; b_paid_at when \
B has persisted itself paid. p50/p90/max over --payments. The attribution splits the mean \
total into core compute, SQLite persist, mailbox + decrypt and the rest (network, transport, \
scheduling). Baselines: a 64-byte loopback Noise round trip, and durable single-row SQLite \
commits taken between payments.

2. Messages and round trips per payment, counted from the frames the drivers wrote: A pays \
(A-S), A returns (A-S: reestablish, receipt), B sells (S-B), by layer (channel, payment, \
mailbox requests). Round trips: the longest chain of frames each sent in answer to the one \
before, divided by two.

3. Bytes S stores per pending payment: S's store after K offered, unsold payments minus \
after 0 (K payers each with a channel to S), divided by K: bytes of stored rows (payment \
record, channel snapshot growth) and database file bytes after a checkpoint.

4. S's sale throughput with durable storage. A sale: S receives B's invoice for an offered \
payment, persists it, adds the PTLC on S-B, B fulfils it, S persists the sale and completes \
A's state with the scalar (four inputs and seven rows at S). S runs on one thread with its \
own store, all payees on another (one shared store, group commit), frames through memory \
queues; each payee sells one payment at a time; every node runs on the one node driver. \
Unbatched: one transaction per input (its change set), as `asyncpay node`. Batched (group \
commit): S hands every queued input (up to --max-batch) to its core, writes all their change \
sets in one transaction, and only then sends their frames, so persist before send still \
holds. Baselines: durable single-row SQLite commits right before and after each \
run (fsync bound = their rate / commits per sale), and for the whole run durable commits on \
a fresh and a warm store and File::sync_all/s in the same directory. Target: 5,000 sales/s.";

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
    /// Rounds of each baseline (Noise round trips, SQLite commits, fsyncs).
    #[arg(long, default_value_t = 300)]
    baseline_rounds: usize,
    /// Directory under which the run's stores are kept (in a new subdirectory); by default a
    /// temporary directory, removed at the end.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Height every core starts at.
const HEIGHT: u32 = 300;
/// Blocks between an update confirming and its settlement.
/// Shared delay of the payees' channels.
const SHARED_DELAY: u16 = 6;
/// Shared delay of the payers' channels: S's PTLC delta plus the sale window margin, and
/// some to spare (S makes no offer on a shorter one).
const PAYER_DELAY: u16 = 48;
/// Amount of every payment.
const AMOUNT_SAT: u64 = 10_000;

/// S's terms: the fee is irrelevant to the figures; the PTLC delta must be at least twice
/// the shared delay.
fn policy() -> LspPolicy {
    LspPolicy {
        fee_base_sat: 10,
        fee_ppm: 1_000,
        offer_lifetime: 144,
        ptlc_delta: 40,
    }
}

/// A seed (or id) for node `i` of a kind.
fn seed(kind: u8, i: u32) -> [u8; 32] {
    let mut s = [0x5e; 32];
    s[0] = kind;
    s[1..5].copy_from_slice(&i.to_le_bytes());
    s
}

/// The outpoint the bench pretends funds a channel.
fn fake_outpoint(channel: &ChannelId) -> OutPoint {
    OutPoint {
        txid: Txid::from_byte_array(channel.0),
        vout: 0,
    }
}

/// Percentiles of a sample, in the sample's unit.
#[derive(Debug, Clone, Copy, Default)]
struct Summary {
    n: usize,
    p50: f64,
    p90: f64,
    max: f64,
    mean: f64,
}

impl Summary {
    fn json(&self) -> Value {
        json!({ "n": self.n, "p50": self.p50, "p90": self.p90, "max": self.max, "mean": self.mean })
    }
}

fn summary(values: &[f64]) -> Summary {
    if values.is_empty() {
        return Summary::default();
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[(((v.len() - 1) as f64) * p).round() as usize];
    Summary {
        n: v.len(),
        p50: at(0.5),
        p90: at(0.9),
        max: v[v.len() - 1],
        mean: v.iter().sum::<f64>() / v.len() as f64,
    }
}

/// Durable single-row commits through the node store (WAL, synchronous=FULL), each row a
/// payment record of about the size S writes. On a fresh store every commit grows the
/// write-ahead log; `warm` first writes 6 MB in one transaction, so the log is checkpointed
/// and the measured commits overwrite it in place, as in a store that has been running.
fn sqlite_commits(dir: &Path, name: &str, rounds: usize, warm: bool) -> anyhow::Result<Value> {
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let store = Store::open(&path)?;
    let record = json!({ "status": { "status": "offered" }, "padding": "x".repeat(1200) });
    if warm {
        store.batch(|st| {
            for i in 0..5_000u32 {
                st.put_payment(&PaymentId(seed(0x98, i)), &record)?;
            }
            anyhow::Ok(())
        })?;
        // The next write restarts the checkpointed log from its beginning.
        store.put_payment(&PaymentId(seed(0x97, 0)), &record)?;
    }
    let mut lat = Vec::with_capacity(rounds);
    let start = Instant::now();
    for i in 0..rounds.max(1) {
        let t = Instant::now();
        store.put_payment(&PaymentId(seed(0x99, i as u32)), &record)?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(json!({
        "commits": lat.len(),
        "commit_ms": summary(&lat).json(),
        "commits_per_sec": lat.len() as f64 / secs,
    }))
}

/// `File::sync_all` and `File::sync_data` after rewriting 4 KiB, in the same directory.
fn file_syncs(dir: &Path, rounds: usize) -> anyhow::Result<Value> {
    let path = dir.join("fsync.bin");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let block = [0xa5u8; 4096];
    let mut rate = |data_only: bool| -> anyhow::Result<f64> {
        let start = Instant::now();
        for _ in 0..rounds.max(1) {
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&block)?;
            if data_only {
                file.sync_data()?;
            } else {
                file.sync_all()?;
            }
        }
        Ok(rounds.max(1) as f64 / start.elapsed().as_secs_f64())
    };
    let sync_all = rate(false)?;
    let sync_data = rate(true)?;
    Ok(json!({ "sync_all_per_sec": sync_all, "sync_data_per_sec": sync_data }))
}

/// The 1-minute load average (Linux), if readable.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs the benchmark.
pub fn run(args: BenchPaymentArgs) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    // A fresh directory each run: the byte counts must not see an earlier run's rows.
    let dir = match &args.data_dir {
        Some(parent) => parent.join(format!(
            "bench-payment-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        )),
        None => tmp.path().to_owned(),
    };
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    let load_before = load_average();

    let commits_before = sqlite_commits(&dir, "baseline-before.db", args.baseline_rounds, false)?;
    let syncs = file_syncs(&dir, args.baseline_rounds)?;
    let online = online::run(
        &dir.join("online"),
        &online::OnlineArgs {
            payments: args.payments.max(1),
            warmup: args.warmup,
            baseline_rounds: args.baseline_rounds,
        },
    )?;
    let sales = sales::run(
        &dir.join("sales"),
        &sales::SalesArgs {
            payees: args.payees,
            unbatched_sales: args.unbatched_sales,
            sales: args.sales,
            max_batch: args.max_batch,
        },
    )?;
    let commits_after = sqlite_commits(&dir, "baseline-after.db", args.baseline_rounds, false)?;
    let commits_warm = sqlite_commits(&dir, "baseline-warm.db", args.baseline_rounds, true)?;

    let mut report = json!({
        "online": online.json,
        "sales": sales,
        "baselines": {
            "sqlite_commit_before": commits_before,
            "sqlite_commit_after": commits_after,
            "sqlite_commit_warm": commits_warm,
            "file_sync": syncs,
        },
        "seconds": 0.0,
    });
    let commit_rate = |k: &str| {
        report["baselines"][k]["commits_per_sec"]
            .as_f64()
            .unwrap_or(0.0)
    };
    // The fastest of the three: disk noise cannot make the ratios flatter.
    let commits_per_sec = [
        "sqlite_commit_before",
        "sqlite_commit_after",
        "sqlite_commit_warm",
    ]
    .into_iter()
    .map(commit_rate)
    .fold(0.0, f64::max);
    report["baselines"]["sqlite_commits_per_sec"] = json!(commits_per_sec);
    report["seconds"] = json!(started.elapsed().as_secs_f64());
    // Other work on the machine shows in every figure; the load says how much there was.
    report["load_average_1min"] = json!({ "before": load_before, "after": load_average() });

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    print(&report);
    Ok(())
}

fn print(r: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let o = &r["online"];
    println!(
        "payment bench: A, S, B as node cores with durable SQLite stores, Noise over loopback TCP, mailbox on loopback ({:.0} s, load average {} -> {})",
        f(&r["seconds"]),
        r["load_average_1min"]["before"],
        r["load_average_1min"]["after"]
    );
    let b = &r["baselines"];
    for (mode, label) in [
        ("per_row", "one commit per row of a change set"),
        ("per_input", "one transaction per input, as `asyncpay node`"),
    ] {
        let m = &o[mode];
        println!();
        println!(
            "1. payee online -> S has completed A's state ({label}); {} payments after {} warm-up",
            m["payments"],
            m["payments_run"].as_u64().unwrap_or(0) - m["payments"].as_u64().unwrap_or(0)
        );
        println!(
            "   {:<14} {:>8} {:>8} {:>8}",
            "step (ms)", "p50", "p90", "max"
        );
        let mut steps: Vec<&str> = online::STEPS.iter().map(|(n, _)| *n).collect();
        steps.push("total");
        for step in steps {
            let s = &m["latency_ms"][step];
            println!(
                "   {:<14} {:>8.2} {:>8.2} {:>8.2}",
                step,
                f(&s["p50"]),
                f(&s["p90"]),
                f(&s["max"])
            );
        }
        let at = &m["attribution_mean_ms"];
        let w = &m["persists_in_window"];
        println!(
            "   mean total {:.2} ms = core {:.2} + SQLite {:.2} ({} rows/{} commits at S, {}/{} at B) + mailbox/decrypt {:.2} + network/scheduling {:.2}",
            f(&at["total"]),
            f(&at["core_compute"]),
            f(&at["sqlite_persist"]),
            w["s"],
            w["s_commits"],
            w["b"],
            w["b_commits"],
            f(&at["mailbox_and_decrypt"]),
            f(&at["network_and_scheduling"])
        );
        let p50 = f(&m["latency_ms"]["total"]["p50"]);
        println!(
            "   target p50 < 20 ms: {} ({:.2} ms)",
            if p50 < 20.0 { "met" } else { "missed" },
            p50
        );
    }
    println!(
        "   baselines: Noise round trip p50 {:.3} ms (64 bytes, loopback); durable SQLite commit between payments p50 {:.3} ms, mean {:.3} ms",
        f(&o["noise_round_trip"]["round_trip_ms"]["p50"]),
        f(&o["per_row"]["sqlite_commit_between_payments_ms"]["p50"]),
        f(&o["per_row"]["sqlite_commit_between_payments_ms"]["mean"])
    );
    println!();
    println!("2. messages per payment (from the frames written)");
    for (part, label) in [
        ("a_pays", "A pays (A-S)"),
        ("a_returns", "A returns (A-S)"),
        ("a_total", "A in all (A-S)"),
        ("b_sells", "B sells (S-B)"),
    ] {
        let m = &o["per_row"]["messages"][part];
        println!(
            "   {:<16} channel {:>2}  payment {:>2}  mailbox requests {:>2}  peer round trips {:>4.1}  bytes {:>5}",
            label,
            m["channel_messages"],
            m["payment_messages"],
            m["mailbox_requests"],
            f(&m["peer_round_trips"]),
            m["peer_bytes"]
        );
    }
    println!();
    let p = &r["sales"]["pending"];
    println!(
        "3. bytes S stores per pending payment ({} pending vs 0)",
        p["pending_payments"]
    );
    println!(
        "   rows {:.0} B (payment record {:.0} + channel snapshot growth {:.0}); database file {:.0} B",
        f(&p["row_bytes_per_pending"]),
        f(&p["payment_record_bytes_per_pending"]),
        f(&p["channel_snapshot_growth_per_pending"]),
        f(&p["file_bytes_per_pending"])
    );
    println!();
    println!("4. S's sales/s with durable storage (target >= 5000)");
    for run in ["unbatched", "batched"] {
        let s = &r["sales"][run];
        if s.is_null() {
            continue;
        }
        println!(
            "   {:<9} {:>7.0} sales/s over {} sales ({} in flight); S busy {:.2} s -> S alone {:.0}/s; per sale at S: {:.2} commits, {:.0} us core, {:.0} us persist",
            run,
            f(&s["sales_per_sec"]),
            s["sales"],
            s["payees_in_flight"],
            f(&s["s_busy_secs"]),
            f(&s["s_capacity_sales_per_sec"]),
            f(&s["s_commits_per_sale"]),
            f(&s["s_core_us_per_sale"]),
            f(&s["s_persist_us_per_sale"]),
        );
        println!(
            "             baseline around the run: durable commit mean {:.3} ms = {:.0} commits/s -> fsync bound {:.0} sales/s at {:.2} commits per sale",
            f(&s["sqlite_commit_around_run_ms"]["mean"]),
            f(&s["baseline_commits_per_sec"]),
            f(&s["fsync_bound_sales_per_sec"]),
            f(&s["s_commits_per_sale"])
        );
        println!(
            "             payees (other thread): core {:.0} us, persist {:.0} us per sale, busy {:.2} s",
            f(&s["payees_core_us_per_sale"]),
            f(&s["payees_persist_us_per_sale"]),
            f(&s["payees_busy_secs"])
        );
        let by = &s["s_core_us_per_input"];
        println!(
            "             S core per input: invoice {:.0} us, countersign {:.0} us, propose {:.0} us, complete {:.0} us (completes A's state too)",
            f(&by["invoice"]),
            f(&by["countersign"]),
            f(&by["propose"]),
            f(&by["complete"])
        );
    }
    println!(
        "   whole-run baselines: durable single-row SQLite commits/s: fresh store {:.0} at the start, {:.0} at the end, warm store {:.0}; 4 KiB rewrite + File::sync_all {:.0}/s, + sync_data {:.0}/s",
        f(&b["sqlite_commit_before"]["commits_per_sec"]),
        f(&b["sqlite_commit_after"]["commits_per_sec"]),
        f(&b["sqlite_commit_warm"]["commits_per_sec"]),
        f(&b["file_sync"]["sync_all_per_sec"]),
        f(&b["file_sync"]["sync_data_per_sec"])
    );
}
