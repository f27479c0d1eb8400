//! `asyncpay bench payment`: the asynchronous payment's figures, each beside a baseline
//! measured in the same run.
//!
//! - the online part: payee online → paid latency on loopback (real transport, real
//!   mailbox, durable stores), step by step ([`STEPS`]), and the messages each part of a
//!   payment sends; its nodes run on the one driver ([`crate::node::driver`]);
//! - the sales part: the bytes S stores per pending payment, and S's sale throughput with
//!   durable storage, one transaction per input and with group commit, and with S sharded
//!   over worker threads (one store each) for 1 and 2 workers.
//!
//! [`measure`] runs every part and returns the report as JSON (what `--json` prints);
//! [`render`] turns it into the text report.
//!
//! ```no_run
//! use asyncpay::bench::payment::{measure, render, PaymentBenchOptions};
//!
//! let report = measure(&PaymentBenchOptions {
//!     payments: 3,
//!     warmup: 1,
//!     unbatched_sales: 6,
//!     sales: 12,
//!     payees: 3,
//!     baseline_rounds: 20,
//!     ..Default::default()
//! })?;
//! assert_eq!(report["online"]["per_input"]["payments"], 3);
//! print!("{}", render(&report));
//! # Ok::<(), asyncpay::bench::payment::PaymentBenchError>(())
//! ```

pub mod floor;
#[cfg(all(feature = "regtest", feature = "testing"))]
mod held;
mod node;
mod online;
mod relay;
mod sales;

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash as _;
use bitcoin::{OutPoint, Txid};
use serde_json::{json, Value};

use crate::node::store::Store;
use crate::protocol::messages::ChannelId;
use crate::protocol::payment::{LspPolicy, PaymentId};

/// What the benchmark measures and against which baselines: what `asyncpay bench payment
/// --help` says about the figures.
pub const ABOUT: &str = "\
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
holds. Sharded (--workers, --worker-sales): S's channels split over worker threads, one \
node key, each worker a core with its own store and the same group-commit loop; each frame \
goes to the worker owning its sender's channel; a payee and the payers whose payments it \
sells are on one worker (cross-shard sales are not built). Reported per number of workers: \
sales/s, S's CPU per sale per worker and the payees' beside, and sales/s per core projected \
from them. Baselines: durable single-row SQLite commits right before and after each \
run (fsync bound = their rate / commits per sale), and for the whole run durable commits on \
a fresh and a warm store and File::sync_all/s in the same directory. Target: 5,000 sales/s.

5. S's elliptic-curve floor per sale: the curve operations the protocol requires of S for one sale (verify B's invoice; the PTLC output's keys; the adaptor signature on B's claim; the covenant signature and output key of each new S-B state; S's signatures on them; verify B's; check that B's scalar sells the point, which also makes A's completed signature valid), each timed with libsecp256k1 on S's thread between its batches during the batched run, on inputs that do not repeat back to back (floor_us_per_sale; the same calls timed alone after the sales are reported beside), against S's core time per sale of the last sale run (s_cpu_us_per_sale) and their ratio (floor_ratio). The operations S does per sale today are counted on S's thread and shown beside the number required (docs/benchmarks.md lists both).

6. A held sale while it waits (a PTLC the payer offers S, many at once on one channel), for 1 \
and 16 pending: the bytes S stores per pending held sale (channel snapshot growth and payment \
record, in process), and its on-chain weight measured on a throwaway BIP118 regtest (the \
crate's harness): S force-closes with the sales bought and pending, every transaction goes \
through the mempool, and the weights are those of the confirmed settlement (against a close \
with no PTLC) and of S's claim of each PTLC (its CPFP child not counted). Without a BIP118 \
bitcoind the weights are reported as an error.";

pub use online::STEPS;

/// What `asyncpay bench payment` is told; the defaults are its flags' defaults.
#[derive(Debug, Clone)]
pub struct PaymentBenchOptions {
    /// Payments measured for the online latency (after the warm-up; at least one runs).
    pub payments: usize,
    /// Payments run first and not measured.
    pub warmup: usize,
    /// Sales with one transaction per input (each pending payment sells once).
    pub unbatched_sales: usize,
    /// Sales with group commit.
    pub sales: usize,
    /// Payees (S–B channels); each sells one payment at a time, so this many sales are in
    /// flight.
    pub payees: usize,
    /// Most inputs S handles per group commit.
    pub max_batch: usize,
    /// The numbers of worker threads S's channels are sharded over, one sale run each.
    pub workers: Vec<usize>,
    /// Sales of each sharded run (0 skips them).
    pub worker_sales: usize,
    /// Rounds of each baseline (Noise round trips, SQLite commits, fsyncs).
    pub baseline_rounds: usize,
    /// A round-trip time (ms) added on the payee's links to its LSP and its mailbox for a
    /// second run of the online part; 0 skips it.
    pub rtt_ms: u64,
    /// Payments measured over that link (after the warm-up).
    pub rtt_payments: usize,
    /// Directory under which the run's stores are kept (in a new subdirectory); a temporary
    /// directory, removed at the end, when `None`.
    pub data_dir: Option<PathBuf>,
}

impl Default for PaymentBenchOptions {
    fn default() -> Self {
        Self {
            payments: 40,
            warmup: 3,
            unbatched_sales: 200,
            sales: 3000,
            payees: 256,
            max_batch: 64,
            workers: vec![1, 2],
            worker_sales: 1000,
            baseline_rounds: 300,
            rtt_ms: 50,
            rtt_payments: 10,
            data_dir: None,
        }
    }
}

/// Why the payment benchmark could not run, or what its nodes did that a correct run does
/// not.
#[derive(Debug, thiserror::Error)]
pub enum PaymentBenchError {
    /// Neither unbatched nor batched sales asked for.
    #[error("no sales to run")]
    NoSales,
    /// A node thread could not start its node.
    #[error("node failed to start")]
    NodeStart(#[source] Box<PaymentBenchError>),
    /// A node thread ended before it reported that its node runs.
    #[error("node thread ended early")]
    NodeThreadEnded(#[source] std::sync::mpsc::RecvError),
    /// A command for a node thread that has stopped.
    #[error("node thread has stopped")]
    NodeStopped,
    /// A node thread dropped a command without answering it.
    #[error("node thread dropped its answer")]
    NoAnswer(#[from] tokio::sync::oneshot::error::RecvError),
    /// A thread of the benchmark panicked.
    #[error("{0} panicked")]
    Panicked(&'static str),
    /// A wait for a node's state that did not end in time (setup only).
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// A wait for something a node reports that did not end in time.
    #[error("timed out waiting for {what}; refusals: {refusals:?}")]
    NoteTimeout {
        /// What was awaited.
        what: &'static str,
        /// The inputs refused so far, by node.
        refusals: Vec<String>,
    },
    /// Every node stopped reporting during a wait.
    #[error("nodes stopped while waiting for {0}")]
    NodesStopped(&'static str),
    /// One payment of the online part failed.
    #[error("online payment {payment}, commit {commit}")]
    OnlinePayment {
        /// The payment's index (warm-up included).
        payment: usize,
        /// The commit mode of its nodes (`per_row`, `per_input`).
        commit: &'static str,
        /// What failed.
        source: Box<PaymentBenchError>,
    },
    /// B's mailbox did not hold exactly A's letter.
    #[error("B found {0} letters in its mailbox, expected 1")]
    Letters(usize),
    /// Inputs refused by a node during an online payment.
    #[error("payment {payment}: refused inputs: {refusals:?}")]
    Refused {
        /// The payment's index.
        payment: usize,
        /// The refusals, by node.
        refusals: Vec<String>,
    },
    /// Fewer payments sold, paid or completed than run.
    #[error("{commit}: {who} {count} of {total} payments")]
    Incomplete {
        /// The commit mode of the nodes.
        commit: &'static str,
        /// Whose count (`S sold`, `B paid`, `A completed`).
        who: &'static str,
        /// The count.
        count: Value,
        /// Payments run.
        total: usize,
    },
    /// A step's event that no node reported.
    #[error("no note for {0}")]
    NoNote(&'static str),
    /// Message counts that differ between payments (they are the protocol's, not samples).
    #[error("{what}: message counts differ between payments: {this} vs {first}")]
    CountsDiffer {
        /// Which part of the payment.
        what: &'static str,
        /// This payment's frames.
        this: String,
        /// The first measured payment's frames.
        first: String,
    },
    /// The echo of the Noise round-trip baseline differs from what was sent.
    #[error("echo differs")]
    EchoDiffers,
    /// The echo server of the Noise baseline did not start.
    #[error("echo server did not start")]
    EchoServer(#[source] std::sync::mpsc::RecvError),
    /// A node of the sales' setup refused an input.
    #[error("setup: {node} refused: {error}")]
    SetupRefused {
        /// The node (`S`, `Payer(i)`, `Payee(j)`).
        node: String,
        /// The core's refusal.
        error: String,
    },
    /// A channel of the sales' setup that is not funded.
    #[error("setup: channel at {node} is {phase:?}")]
    SetupChannel {
        /// The node (`S`, `Payer(i)`, `Payee(j)`).
        node: String,
        /// The channel's phase, if the node has it.
        phase: Option<crate::protocol::channel::Phase>,
    },
    /// Offers at S or payment rows that do not match the pending payments.
    #[error("{offered} offers at S and {rows} new payment rows for {payments} payments")]
    Offers {
        /// Payments S offered.
        offered: usize,
        /// Payment rows S wrote.
        rows: i64,
        /// Pending payments set up.
        payments: usize,
    },
    /// A letter from a node that is not a payer, or to one that is not a payee.
    #[error("a letter from {0} to a node that is not a payee")]
    LetterNotToPayee(String),
    /// A letter posted during the sales.
    #[error("unexpected letter during the sales")]
    UnexpectedLetter,
    /// A funding transaction asked for during the sales.
    #[error("unexpected funding during the sales")]
    UnexpectedFunding,
    /// A frame for a payee the sales do not know.
    #[error("frame for an unknown payee")]
    UnknownPayee,
    /// S waited too long for a frame during the sales.
    #[error(
        "S waited 30 s for a frame with {sold} of {expected} sales done; refusals: {refusals:?}"
    )]
    SWaited {
        /// Sales done.
        sold: usize,
        /// Sales of the run.
        expected: usize,
        /// S's refusals.
        refusals: Vec<String>,
    },
    /// The payees' thread ended before every sale was done.
    #[error("the payees stopped with {sold} of {expected} sales done; refusals: {refusals:?}")]
    PayeesStopped {
        /// Sales done.
        sold: usize,
        /// Sales of the run.
        expected: usize,
        /// S's refusals.
        refusals: Vec<String>,
    },
    /// The payees waited too long for a frame from S.
    #[error("payees waited 30 s with {paid} of {expected} paid; refusals: {refusals:?}")]
    PayeesWaited {
        /// Payees paid.
        paid: usize,
        /// Sales of the run.
        expected: usize,
        /// The payees' refusals.
        refusals: Vec<String>,
    },
    /// Inputs refused during the sales.
    #[error("refusals during the sales: S {s:?}, payees {payees:?}")]
    SalesRefused {
        /// S's refusals.
        s: Vec<String>,
        /// The payees' refusals.
        payees: Vec<String>,
    },
    /// A payment of a sale run that S has not sold.
    #[error("payment {payment} is {status} at S")]
    NotSold {
        /// The payment's index.
        payment: usize,
        /// Its status at S.
        status: Value,
    },
    /// A payer's channel at S that is not at the state the sale completes.
    #[error("payer {payer}'s channel at S is at state {state:?}, expected 1")]
    PayerState {
        /// The payer's index.
        payer: usize,
        /// The number of the channel's complete state.
        state: Option<u64>,
    },
    /// A channel of S in the stores of two shards: two cores with S's key held it.
    #[error("channel {0} is in two shards' stores")]
    ChannelInTwoShards(String),
    /// A payment of S in the stores of two shards.
    #[error("payment {0} is in two shards' stores")]
    PaymentInTwoShards(String),
    /// More workers asked for than payees to spread over them.
    #[error("{workers} workers for {payees} payees: each worker needs a payee")]
    Workers {
        /// Workers asked for.
        workers: usize,
        /// Payees.
        payees: usize,
    },
    /// Something the benchmark set up or measured that is missing.
    #[error("{0}")]
    Missing(&'static str),
    /// A payment of the reverse variant, which the benchmark does not run.
    #[error("the bench runs no payment of the reverse variant")]
    Reverse,
    /// A mailbox key or contact the benchmark derives.
    #[error("{0}")]
    MailboxKey(&'static str, #[source] crate::mailbox::keys::KeyError),
    /// A letter that does not open.
    #[error("letter does not open")]
    Letter(#[source] crate::mailbox::envelope::EnvelopeError),
    /// The mailbox server under test.
    #[error(transparent)]
    MailboxServer(#[from] super::BenchError),
    /// A node's core (an input refused).
    #[error(transparent)]
    Node(#[from] crate::node::core::NodeError),
    /// A node's store.
    #[error(transparent)]
    Store(#[from] crate::node::store::StoreError),
    /// Reading S's store sizes.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The peer transport.
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    /// The mailbox client.
    #[error(transparent)]
    Mailbox(#[from] crate::mailbox::client::ClientError),
    /// A file, a directory, a thread or a runtime.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// `error` and its sources, joined by ": " (as `anyhow` prints an error with `{:#}`).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
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
fn sqlite_commits(
    dir: &Path,
    name: &str,
    rounds: usize,
    warm: bool,
) -> Result<Value, PaymentBenchError> {
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let store = Store::open(&path)?;
    let record = json!({ "status": { "status": "offered" }, "padding": "x".repeat(1200) });
    if warm {
        store.batch(|st| {
            for i in 0..5_000u32 {
                st.put_payment(&PaymentId(seed(0x98, i)), &record)?;
            }
            Ok::<(), PaymentBenchError>(())
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
fn file_syncs(dir: &Path, rounds: usize) -> Result<Value, PaymentBenchError> {
    let path = dir.join("fsync.bin");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let block = [0xa5u8; 4096];
    let mut rate = |data_only: bool| -> Result<f64, std::io::Error> {
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

/// Runs every part of the benchmark and returns its report (what `--json` prints).
pub fn measure(options: &PaymentBenchOptions) -> Result<Value, PaymentBenchError> {
    let tmp = tempfile::tempdir()?;
    // A fresh directory each run: the byte counts must not see an earlier run's rows.
    let dir = match &options.data_dir {
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

    let commits_before =
        sqlite_commits(&dir, "baseline-before.db", options.baseline_rounds, false)?;
    let syncs = file_syncs(&dir, options.baseline_rounds)?;
    let online = online::run(
        &dir.join("online"),
        &online::OnlineOptions {
            payments: options.payments.max(1),
            warmup: options.warmup,
            baseline_rounds: options.baseline_rounds,
            rtt: (options.rtt_ms > 0)
                .then(|| (Duration::from_millis(options.rtt_ms), options.rtt_payments)),
        },
    )?;
    let sales = sales::run(
        &dir.join("sales"),
        &sales::SalesOptions {
            payees: options.payees,
            unbatched_sales: options.unbatched_sales,
            sales: options.sales,
            max_batch: options.max_batch,
            workers: options.workers.clone(),
            worker_sales: options.worker_sales,
        },
    )?;
    // Held sales: bytes at S in process; weights on a throwaway regtest, reported as an
    // error (not fatal) where no BIP118 bitcoind is installed.
    #[cfg(all(feature = "regtest", feature = "testing"))]
    let held = {
        let held_counts = [1usize, 16];
        json!({
            "bytes": held::bytes(&held_counts)?,
            "weights": held::weights(&held_counts)
                .unwrap_or_else(|e| json!({ "error": e.to_string() })),
        })
    };
    #[cfg(not(all(feature = "regtest", feature = "testing")))]
    let held = json!({ "weights": { "error": "built without the regtest and testing features" } });
    let commits_after = sqlite_commits(&dir, "baseline-after.db", options.baseline_rounds, false)?;
    let commits_warm = sqlite_commits(&dir, "baseline-warm.db", options.baseline_rounds, true)?;

    let mut report = json!({
        "online": online.json,
        "sales": sales,
        "held": held,
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
    Ok(report)
}

/// The text report of a report [`measure`] returned.
pub fn render(r: &Value) -> String {
    let mut out = String::new();
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let o = &r["online"];
    let _ = writeln!(
            out,
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
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "1. payee online -> S has completed A's state ({label}); {} payments after {} warm-up",
            m["payments"],
            m["payments_run"].as_u64().unwrap_or(0) - m["payments"].as_u64().unwrap_or(0)
        );
        let _ = writeln!(
            out,
            "   {:<14} {:>8} {:>8} {:>8}",
            "step (ms)", "p50", "p90", "max"
        );
        let mut steps: Vec<&str> = online::STEPS.iter().map(|(n, _)| *n).collect();
        steps.push("total");
        for step in steps {
            let s = &m["latency_ms"][step];
            let _ = writeln!(
                out,
                "   {:<14} {:>8.2} {:>8.2} {:>8.2}",
                step,
                f(&s["p50"]),
                f(&s["p90"]),
                f(&s["max"])
            );
        }
        let at = &m["attribution_mean_ms"];
        let w = &m["persists_in_window"];
        let _ = writeln!(
            out,
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
        let _ = writeln!(
            out,
            "   target p50 < 20 ms: {} ({:.2} ms)",
            if p50 < 20.0 { "met" } else { "missed" },
            p50
        );
    }
    let rtt = &o["per_input_rtt"];
    if rtt.is_object() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "1b. the same (one transaction per input) with {} ms added round-trip time on B's links to S and the mailbox; {} payments",
            f(&rtt["rtt_ms"]),
            rtt["payments"]
        );
        let _ = writeln!(out, "   {:<14} {:>8} {:>10}", "step", "p50 ms", "p50 / RTT");
        let mut steps: Vec<&str> = online::STEPS.iter().map(|(n, _)| *n).collect();
        steps.push("total");
        for step in steps {
            let _ = writeln!(
                out,
                "   {:<14} {:>8.1} {:>10.2}",
                step,
                f(&rtt["latency_ms"][step]["p50"]),
                f(&rtt["p50_over_rtt"][step])
            );
        }
    }
    let _ = writeln!(
            out,
        "   baselines: Noise round trip p50 {:.3} ms (64 bytes, loopback); durable SQLite commit between payments p50 {:.3} ms, mean {:.3} ms",
        f(&o["noise_round_trip"]["round_trip_ms"]["p50"]),
        f(&o["per_row"]["sqlite_commit_between_payments_ms"]["p50"]),
        f(&o["per_row"]["sqlite_commit_between_payments_ms"]["mean"])
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "2. messages per payment (from the frames written)");
    for (part, label) in [
        ("a_pays", "A pays (A-S)"),
        ("a_returns", "A returns (A-S)"),
        ("a_total", "A in all (A-S)"),
        ("b_sells", "B sells (S-B)"),
    ] {
        let m = &o["per_row"]["messages"][part];
        let _ = writeln!(
            out,
            "   {:<16} channel {:>2}  payment {:>2}  mailbox requests {:>2}  peer round trips {:>4.1}  bytes {:>5}",
            label,
            m["channel_messages"],
            m["payment_messages"],
            m["mailbox_requests"],
            f(&m["peer_round_trips"]),
            m["peer_bytes"]
        );
    }
    let _ = writeln!(out);
    let p = &r["sales"]["pending"];
    let _ = writeln!(
        out,
        "3. bytes S stores per pending payment ({} pending vs 0)",
        p["pending_payments"]
    );
    let _ = writeln!(
            out,
        "   rows {:.0} B (payment record {:.0} + channel snapshot growth {:.0}); database file {:.0} B",
        f(&p["row_bytes_per_pending"]),
        f(&p["payment_record_bytes_per_pending"]),
        f(&p["channel_snapshot_growth_per_pending"]),
        f(&p["file_bytes_per_pending"])
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "4. S's sales/s with durable storage (target >= 5000)");
    for run in ["unbatched", "batched"] {
        let s = &r["sales"][run];
        if s.is_null() {
            continue;
        }
        let _ = writeln!(
            out,
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
        let _ = writeln!(
            out,
            "             baseline around the run: durable commit mean {:.3} ms = {:.0} commits/s -> fsync bound {:.0} sales/s at {:.2} commits per sale",
            f(&s["sqlite_commit_around_run_ms"]["mean"]),
            f(&s["baseline_commits_per_sec"]),
            f(&s["fsync_bound_sales_per_sec"]),
            f(&s["s_commits_per_sale"])
        );
        let _ = writeln!(
            out,
            "             payees (other thread): core {:.0} us, persist {:.0} us per sale, busy {:.2} s",
            f(&s["payees_core_us_per_sale"]),
            f(&s["payees_persist_us_per_sale"]),
            f(&s["payees_busy_secs"])
        );
        let by = &s["s_core_us_per_input"];
        let _ = writeln!(
            out,
            "             S core per input: invoice {:.0} us, countersign {:.0} us, propose {:.0} us, complete {:.0} us (completes A's state too)",
            f(&by["invoice"]),
            f(&by["countersign"]),
            f(&by["propose"]),
            f(&by["complete"])
        );
    }
    let w = &r["sales"]["workers"];
    for run in w["runs"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "   {:<9} {:>7.0} sales/s over {} sales, S sharded over {} worker(s) (a store each; cross-shard sales {}); per sale: S {:.0} us CPU per worker, payees {:.0} us CPU (one thread) -> per core {:.0} sales/s for S alone, {:.0} with the payees",
            format!("workers={}", run["workers"]),
            f(&run["sales_per_sec"]),
            run["sales"],
            run["workers"],
            w["cross_shard_sales"].as_str().unwrap_or("?"),
            f(&run["s_thread_cpu_us_per_sale"]),
            f(&run["payees_thread_cpu_us_per_sale"]),
            f(&run["projection"]["s_sales_per_sec_per_core"]),
            f(&run["projection"]["sales_per_sec_per_core_with_payees"]),
        );
        for shard in run["shards"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "             worker {}: {} sales ({} sold in its store), {:.0} us CPU, {:.2} commits per sale, {:.2} s waiting for a core",
                shard["shard"],
                shard["sales"],
                shard["sold_in_store"],
                f(&shard["thread_cpu_us_per_sale"]),
                f(&shard["commits_per_sale"]),
                f(&shard["run_queue_wait_secs"]),
            );
        }
    }
    let _ = writeln!(
            out,
        "   whole-run baselines: durable single-row SQLite commits/s: fresh store {:.0} at the start, {:.0} at the end, warm store {:.0}; 4 KiB rewrite + File::sync_all {:.0}/s, + sync_data {:.0}/s",
        f(&b["sqlite_commit_before"]["commits_per_sec"]),
        f(&b["sqlite_commit_after"]["commits_per_sec"]),
        f(&b["sqlite_commit_warm"]["commits_per_sec"]),
        f(&b["file_sync"]["sync_all_per_sec"]),
        f(&b["file_sync"]["sync_data_per_sec"])
    );
    let fl = &r["sales"]["floor"];
    if !fl.is_null() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "5. S's elliptic-curve floor per sale (libsecp256k1, timed after the sales)"
        );
        let _ = writeln!(
            out,
            "   {:<30} {:>5} {:>8}  timed as",
            "operation", "count", "us each"
        );
        for op in fl["floor_ops"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "   {:<30} {:>5} {:>8.2}  {}",
                op["name"].as_str().unwrap_or("?"),
                op["count"].as_u64().unwrap_or(0),
                f(&op["us_each"]),
                op["libsecp256k1"].as_str().unwrap_or("?")
            );
        }
        let _ = writeln!(
            out,
            "   floor_us_per_sale {:.1} / s_cpu_us_per_sale {:.1} ({}) = floor_ratio {:.3}",
            f(&fl["floor_us_per_sale"]),
            f(&fl["s_cpu_us_per_sale"]),
            fl["s_cpu_is"].as_str().unwrap_or("?"),
            f(&fl["floor_ratio"])
        );
        let counted: Vec<String> = fl["done_today"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                format!(
                    "{} {} ({})",
                    d["op"].as_str().unwrap_or("?"),
                    d["counted_per_sale"],
                    d["required_per_sale"]
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "   counted at S per sale (required): {}",
            counted.join(", ")
        );
    }
    let held = &r["held"];
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "6. a held sale while it waits (a PTLC A offers S), 1 and 16 pending on one channel"
    );
    for b in held["bytes"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "   {:>2} pending: S stores {:.0} B per pending (channel snapshot growth {:.0} + payment record {:.0})",
            b["pending"].as_u64().unwrap_or(0),
            f(&b["row_bytes_per_pending"]),
            f(&b["channel_snapshot_growth_per_pending"]),
            f(&b["payment_record_bytes_per_pending"])
        );
    }
    let w = &held["weights"];
    if let Some(error) = w["error"].as_str() {
        let _ = writeln!(out, "   on-chain weight not measured: {error}");
    }
    for row in w["rows"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "   {:>2} pending: {:.0} WU per pending ({:.1} vB) = settlement output {:.0} + S's claim {:.0} WU (settlement {} WU, {} WU without PTLCs)",
            row["pending"].as_u64().unwrap_or(0),
            f(&row["wu_per_pending"]),
            f(&row["vbytes_per_pending"]),
            f(&row["settlement_output_wu_per_pending"]),
            f(&row["claim_wu_mean"]),
            row["settlement_wu"],
            w["settlement_wu_without_ptlcs"]
        );
    }
    out
}
