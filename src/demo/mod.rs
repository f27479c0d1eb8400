//! `asyncpay demo`: the narrated regtest run of one asynchronous payment.
//!
//! Everything runs as the user would run it: a BIP118-enforcing regtest `bitcoind` with
//! `electrs` (the crate's harness), `asyncpay mailbox serve`, `asyncpay watchtower serve` and
//! three `asyncpay node run` processes (payer A, LSP S, payee B), each in its own data
//! directory under one temporary directory. The demo drives them only through their control
//! interface and narrates each step on stderr; [`run`] returns a [`Transcript`] (balances
//! before/after, txids, timings, checks and a mermaid sequence diagram of the peer
//! messages), which `asyncpay demo` prints as a summary ([`Transcript::summary`]) or, with
//! `--json`, serialized as one JSON document; [`DemoOptions::svg`] writes the diagram as a
//! self-contained SVG (`sequence_svg`). Every child process is killed when the demo ends,
//! also on error.
//!
//! `play.rs` tells the story step by step; `steps.rs` holds its building blocks (funding,
//! channels, statuses, checks); `processes.rs` the child processes, their control calls and
//! injected crashes; `onchain.rs` the on-chain epilogue; `report.rs` the narration, events,
//! summary and diagram.
//!
//! ```no_run
//! use asyncpay::demo::{run, DemoOptions};
//!
//! // The `asyncpay` binary, whose `node run`, `mailbox serve` and `watchtower serve` the
//! // demo starts as its child processes.
//! let exe = std::path::PathBuf::from("target/debug/asyncpay");
//! let transcript = run(DemoOptions::new(exe))?;
//! print!("{}", transcript.summary());
//! assert!(transcript.ok());
//! # Ok::<(), asyncpay::demo::DemoError>(())
//! ```

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoin::address::NetworkUnchecked;
use bitcoin::{Address, Amount, Txid};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::chain::network::Chain;
use crate::chain::regtest::{Regtest, RegtestOptions};
use crate::chain::signet::SignetSigner;
use crate::crypto::keys::PublicKey;
use crate::node::core::{NodeCommand, NodeCore, NodeInput, NodeOutput, Records};
use crate::node::runtime::{ChannelEvent, NodeEvent};
use crate::node::store::Store;
use crate::protocol::channel::Snapshot;
use crate::tx::anchor::{cpfp_child, find_anchor, package_fee, CHILD_VBYTES};
use crate::tx::STATE_LOCKTIME_BASE;

mod error;
mod onchain;
mod pending;
mod play;
mod pos;
mod processes;
mod report;
mod sequence_svg;
mod steps;

pub use error::DemoError;
use onchain::{spender, stored_letter};
use pending::PendingPayment;
pub use pos::PosMode;
use pos::PosReport;
use report::{check, report_problems};
pub(crate) use report::{diagram_steps, mermaid};
use sequence_svg::sequence_svg;
use steps::balance_rows;

/// Transcript format version of `asyncpay demo --json`.
pub const TRANSCRIPT_VERSION: u32 = 1;

/// What the faucet sends each wallet.
const WALLET_FUNDS_SAT: u64 = 2_000_000;

/// Capacity of the A–S channel (A funds it).
const AS_CAPACITY_SAT: u64 = 1_000_000;

/// Capacity of the S–B channel (S funds it).
const SB_CAPACITY_SAT: u64 = 400_000;

/// How long a node may take to write its `node.json`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Shared delay of A–S: S's PTLC delta plus twice the sale window margin (the rule
/// `delay_too_short` enforces).
const PAYER_DELAY: u16 = 32;

/// Shared delay of A–S with `--payer-cheats-while-pending`: B sells after U_0 has
/// confirmed, so the window (`confirmed_at + delay − 1 − margin`) must still hold a whole
/// PTLC lifetime and the margin then (S learns the scalar by the expiry + margin): 40
/// leaves 7 blocks for the sale.
const PAYER_DELAY_FOR_LATE_SALE: u16 = 40;

/// Shared delay of S–B (and of S–P and P–B when routed).
const PAYEE_DELAY: u16 = 6;

/// Blocks S's PTLCs live: at least twice the payee channel's shared delay, and through a
/// router its expiry delta (14) plus twice P–B's shared delay; at most A–S's shared delay
/// less twice the sale window margin.
const PTLC_DELTA: u32 = 28;

/// Poll interval of awaited conditions.
const POLL: Duration = Duration::from_millis(25);

/// What a demo run is told: `asyncpay demo`'s flags but `--json` (printing is the caller's).
/// [`DemoOptions::new`] gives the flags' defaults.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The `asyncpay` binary whose `mailbox serve`, `watchtower serve` and `node run` the
    /// demo starts as its child processes.
    pub exe: PathBuf,
    /// Keep the temporary directory (node data directories and logs) after the run.
    pub keep: bool,
    /// What A pays B, in satoshis.
    pub amount_sat: u64,
    /// Skip the on-chain epilogue (A publishes its stale state, S overrides it, the
    /// settlement confirms).
    pub no_epilogue: bool,
    /// Longest wait for any one condition (a status, a connection, a confirmation), in
    /// seconds.
    pub timeout_secs: u64,
    /// Also write the sequence diagram as a self-contained SVG file here.
    pub svg: Option<PathBuf>,
    /// Fault injection, `PARTY:POINT`: the party (A, S, B, or P when routed) kills itself with
    /// SIGKILL at the point (`send:<message>`, `post-letter` or `persist:<n>`), counted from
    /// its first start in the payment; the demo restarts it at once and the payment must
    /// still complete with the exact balances.
    pub crash: Option<String>,
    /// B has no channel with S but one with a router P (a fourth process): S pays B through
    /// P with the same point, P keeps its fee.
    pub routed: bool,
    /// In the on-chain epilogue, S is stopped before A publishes its stale state and started
    /// again only after that state has confirmed.
    pub lsp_restarts_after_cheat: bool,
    /// The reverse variant instead: B is the one offline; A buys S's signature with a PTLC
    /// and hands it to B. No on-chain epilogue.
    pub reverse: bool,
    /// An adversary with B's contact card puts a bogus letter in B's mailbox before B comes
    /// online; B must refuse it or ignore the repeat.
    pub adversary: Option<Adversary>,
    /// A comes back before B sells and cancels: nothing moves on any channel.
    pub cancel: bool,
    /// A's backup publishes the stale state 0 while A's signature on state 1 is still for
    /// sale, and it confirms; B then sells inside S's window.
    pub payer_cheats_while_pending: bool,
    /// S goes offline right after its offer and is away until the offer has expired:
    /// nothing moves on any channel.
    pub lsp_never_pays: bool,
    /// The chain: regtest, or a private signet (blocks signed by its own key).
    pub network: Chain,
    /// Use the network running in this directory (`asyncpay regtest|signet up`) instead of
    /// starting a throwaway one: its server mines the blocks and its faucet pays.
    pub network_dir: Option<PathBuf>,
    /// Instead of one payment, this many held sales on one A–S channel to four payees
    /// (B, C, D, E) while they are offline: A cancels two, the payees come online in a
    /// shuffled order and sell, E only after S's offers to it expired (see `pending.rs`).
    pub pending: Option<usize>,
    /// Instead of the main flow, a payment at a shop when one side has no connection (see
    /// `pos.rs`).
    pub pos: Option<PosMode>,
}

impl DemoOptions {
    /// The main flow with `asyncpay demo`'s defaults (50,000 sat, 90 s per wait, with the
    /// on-chain epilogue), its processes started from `exe`.
    pub fn new(exe: PathBuf) -> Self {
        Self {
            exe,
            keep: false,
            amount_sat: 50_000,
            no_epilogue: false,
            timeout_secs: 90,
            svg: None,
            crash: None,
            routed: false,
            lsp_restarts_after_cheat: false,
            reverse: false,
            adversary: None,
            cancel: false,
            payer_cheats_while_pending: false,
            network: Chain::Regtest,
            network_dir: None,
            lsp_never_pays: false,
            pending: None,
            pos: None,
        }
    }
}

/// One child process and where its output goes.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

/// Every child the demo started. Dropping it kills the ones still running, so an error or a
/// panic anywhere in the demo leaves no process behind.
#[derive(Default)]
struct Children {
    procs: Vec<Proc>,
    /// Every process ever started: (name, pid).
    started: Vec<(String, u32)>,
}

/// The last `n` lines of a log file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Polls `probe` until it yields a value, failing after `limit`.
fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut probe: impl FnMut() -> Result<Option<T>, DemoError>,
) -> Result<T, DemoError> {
    let started = Instant::now();
    loop {
        interrupted()?;
        if let Some(value) = probe()? {
            return Ok(value);
        }
        if started.elapsed() > limit {
            return Err(DemoError::Timeout {
                what: what.to_string(),
                limit,
            });
        }
        std::thread::sleep(POLL);
    }
}

/// Set when the demo is told to stop (ctrl-c, SIGTERM): every wait gives up at its next poll,
/// the demo unwinds as on any error, and dropping its state stops every child process, the
/// chain and the work directory.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Catches ctrl-c and SIGTERM for the rest of the run (a thread of its own: the demo's main
/// thread blocks in its waits).
fn watch_signals() {
    std::thread::spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        let which = runtime.block_on(async {
            let term = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term => "SIGTERM",
            }
        });
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        eprintln!("demo: {which}: stopping every child process");
    });
}

/// An error once the demo was told to stop.
fn interrupted() -> Result<(), DemoError> {
    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(DemoError::Interrupted);
    }
    Ok(())
}

/// What a ready node writes to `<data-dir>/node.json`.
#[derive(Debug, Clone, Deserialize)]
struct NodeFile {
    node_key: String,
    peer_addr: String,
    control_url: String,
    pid: u32,
}

/// The parties: payer A, LSP S, payee B, router P; payees C, D and E in a run with
/// `--pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Party {
    A,
    S,
    B,
    P,
    C,
    D,
    E,
}

impl Party {
    /// Every party a run may have; P only in a routed run, C, D and E only with `--pending`.
    const ALL: [Party; 7] = [
        Party::A,
        Party::S,
        Party::B,
        Party::P,
        Party::C,
        Party::D,
        Party::E,
    ];

    fn name(self) -> &'static str {
        match self {
            Party::A => "A",
            Party::S => "S",
            Party::B => "B",
            Party::P => "P",
            Party::C => "C",
            Party::D => "D",
            Party::E => "E",
        }
    }

    fn role(self) -> &'static str {
        match self {
            Party::A => "payer",
            Party::S => "lsp",
            Party::B | Party::C | Party::D | Party::E => "payee",
            Party::P => "router",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A node's data directory and, while it runs, its address and control token.
struct Node {
    party: Party,
    dir: PathBuf,
    running: Option<(NodeFile, String)>,
    /// The node key, known once it first started.
    key: String,
}

/// Blocking calls to the nodes' control interfaces.
struct Control {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
}

/// One narrated step.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Step {
    pub(crate) n: usize,
    pub(crate) name: &'static str,
    pub(crate) title: String,
    pub(crate) started_ms: u64,
    /// The start to the microsecond, to place events recorded just before a step began
    /// in the step before it.
    #[serde(skip)]
    pub(crate) started_us: u64,
    pub(crate) duration_ms: u64,
    pub(crate) details: Vec<String>,
}

/// A balance of one party in one channel, before and after the payment.
#[derive(Debug, Clone, Serialize)]
struct Balance {
    channel: &'static str,
    channel_id: String,
    party: &'static str,
    before_sat: u64,
    after_sat: u64,
    change_sat: i64,
}

/// A transaction the demo saw confirm.
#[derive(Debug, Clone, Serialize)]
struct TxRecord {
    what: String,
    txid: String,
    confirmed_at: Option<u64>,
}

/// A peer or mailbox message, for the sequence diagram.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Msg {
    pub(crate) step: usize,
    pub(crate) at_ms: f64,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) what: String,
}

/// A check the demo makes on its own outcome.
#[derive(Debug, Clone, Serialize)]
struct Check {
    what: String,
    expected: Value,
    actual: Value,
    ok: bool,
}

/// What a demo run showed: parties, channels, balances before and after, transactions,
/// steps, messages and their sequence diagram, the checks the demo made on its outcome.
/// `asyncpay demo --json` prints it serialized (transcript format [`TRANSCRIPT_VERSION`]).
#[derive(Debug, Serialize)]
pub struct Transcript {
    version: u32,
    ok: bool,
    /// The chain.
    chain: ChainReport,
    amount_sat: u64,
    fee_sat: u64,
    payment_id: String,
    status: Value,
    nodes: Vec<Value>,
    channels: Vec<Value>,
    balances: Vec<Balance>,
    txids: Vec<TxRecord>,
    steps: Vec<Step>,
    messages: Vec<Msg>,
    mermaid: String,
    /// The same diagram as a self-contained SVG document.
    svg: String,
    /// The on-chain epilogue, unless `--no-epilogue`.
    enforcement: Option<Enforcement>,
    /// The injected crash (`--crash`), if any: party, point, whether and in which step it
    /// fired.
    crash: Option<CrashReport>,
    /// The bogus letter (`--adversary`), if any, and what B made of it.
    adversary: Option<AdversaryReport>,
    /// A's proof of payment, once the payment completed, and what `asyncpay proof verify`
    /// said of it and of a copy claiming another amount.
    proof: Option<ProofReport>,
    /// With `--pending`: every payment, its payee, outcome and proof.
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<Vec<PendingPayment>>,
    /// With `--pos`: the static offer, the offline checks, the cancellation and the relay
    /// faults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pos: Option<PosReport>,
    checks: Vec<Check>,
    /// Every child process the demo started (all are gone when it exits).
    processes: Vec<Value>,
    total_ms: u64,
    /// The temporary directory of the run (node data, logs); removed unless `kept`.
    data_dir: String,
    kept: bool,
}

/// What a story (the main flow, `--pending`, `--pos`) adds to the transcript
/// [`Demo::transcript`] builds around it.
struct Story {
    amount_sat: u64,
    fee_sat: u64,
    payment_id: String,
    status: Value,
    channels: Vec<Value>,
    balances: Vec<Balance>,
    checks: Vec<Check>,
    enforcement: Option<Enforcement>,
    proof: Option<ProofReport>,
    pending: Option<Vec<PendingPayment>>,
    pos: Option<PosReport>,
}

impl Demo {
    /// The transcript of a run that told `story`: its checks, and what every run shows
    /// (chain, nodes, transactions, steps, messages and their diagrams, processes).
    fn transcript(&self, story: Story) -> Transcript {
        let messages = self.messages();
        Transcript {
            version: TRANSCRIPT_VERSION,
            ok: story.checks.iter().all(|c| c.ok),
            chain: self.chain_report.clone(),
            amount_sat: story.amount_sat,
            fee_sat: story.fee_sat,
            payment_id: story.payment_id,
            status: story.status,
            nodes: self.node_keys(),
            channels: story.channels,
            balances: story.balances,
            txids: self.txids.clone(),
            steps: self.narrator.steps.clone(),
            mermaid: mermaid(&self.narrator.steps, &messages),
            svg: sequence_svg(&self.narrator.steps, &messages),
            messages,
            enforcement: story.enforcement,
            crash: self.crash.clone(),
            adversary: self.adversary.clone(),
            proof: story.proof,
            pending: story.pending,
            pos: story.pos,
            checks: story.checks,
            processes: self.children.started_json(),
            total_ms: self.narrator.started.elapsed().as_millis() as u64,
            data_dir: self.root.path().display().to_string(),
            kept: false,
        }
    }
}

/// The demo's narration and what it collects for the summary.
struct Narrator {
    started: Instant,
    steps: Vec<Step>,
    current: Option<(Instant, usize)>,
}

struct Demo {
    // Fields drop in declaration order: the children go before the chain and the directory.
    children: Children,
    args: DemoOptions,
    root: tempfile::TempDir,
    exe: PathBuf,
    chain: Regtest,
    /// Which chain that is, as its node says.
    chain_report: ChainReport,
    electrum: String,
    mailbox_url: String,
    /// B's watchtower.
    tower_url: String,
    control: Control,
    nodes: Vec<Node>,
    narrator: Narrator,
    txids: Vec<TxRecord>,
    /// What the nodes reported on stdout, stamped on arrival.
    events: Events,
    /// How many times each party's node was started (events carry the run they came from).
    runs: [u32; 7],
    /// The injected crash (`--crash`).
    crash: Option<CrashReport>,
    /// The payment step under way, for re-arming the crash at a restart.
    in_payment: bool,
    /// What `--adversary` did.
    adversary: Option<AdversaryReport>,
    /// B's contact card, as A paid it.
    b_contact: Option<Value>,
}

/// The chain the demo ran on, as its node reports it (`getblockchaininfo`).
#[derive(Debug, Clone, Serialize)]
struct ChainReport {
    /// `regtest` or `signet`.
    name: String,
    /// The signet's challenge script (hex).
    signet_challenge: Option<String>,
    /// Whether it is a running network's (`--network-dir`) rather than the demo's own.
    attached: bool,
}

/// A stale update A's backup put on chain.
struct Stale {
    txid: Txid,
    state: u32,
}

/// A bogus letter put in B's mailbox (`--adversary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Adversary {
    /// A's letter with another valid signature, whose scalar does not sell the point.
    WrongScalar,
    /// The amount in S's signed offer raised by one satoshi.
    TamperedOffer,
    /// A's letter posted a second time.
    ReplayedLetter,
}

/// A's proof of payment and its checks by `asyncpay proof verify` (a separate process,
/// with B's contact card as the only other input).
#[derive(Debug, Clone, Serialize)]
struct ProofReport {
    /// The proof, as `ctl proof` printed it.
    proof: Value,
    /// `asyncpay proof verify` accepted it.
    verified: bool,
    /// It refused the same proof with the amount raised by one satoshi, and why.
    other_amount_refused: bool,
    /// Its reason for refusing that copy.
    refusal: String,
}

/// What `--adversary` did and what B made of it.
#[derive(Debug, Clone, Serialize)]
struct AdversaryReport {
    kind: Adversary,
    /// Letters B fetched (the genuine one and the bogus one, unless the mailbox stored a
    /// repeat only once).
    letters_fetched: u64,
    /// B's own report that it refused a letter.
    refused_by_b: bool,
    /// Why, in B's words.
    refusal: Option<String>,
}

/// Where a party was told to die (`--crash`) and what happened.
#[derive(Debug, Clone, Serialize)]
struct CrashReport {
    party: &'static str,
    point: String,
    /// The step it died in; `None` if the point was never reached.
    fired_in: Option<String>,
    /// Milliseconds from the demo's start.
    fired_at_ms: Option<u64>,
}

/// Runs the demo and returns its transcript; the narration goes to stderr meanwhile.
/// Ctrl-c or SIGTERM ends the run with [`DemoError::Interrupted`]. Every child process is
/// stopped before it returns, also on error; the temporary directory is removed unless
/// [`DemoOptions::keep`]. A transcript whose checks failed is still `Ok`: see
/// [`Transcript::ok`].
pub fn run(args: DemoOptions) -> Result<Transcript, DemoError> {
    watch_signals();
    let keep = args.keep;
    let svg_path = args.svg.clone();
    let mut narrator = Narrator::new();
    let name = args.network.as_str();
    let chain = match &args.network_dir {
        Some(dir) => {
            narrator.begin(
                "chain",
                format!("use the {name} running in {}", dir.display()),
            );
            Regtest::attach(dir, args.network).map_err(DemoError::ChainStart)?
        }
        None => {
            let what = match args.network {
                Chain::Regtest => "regtest bitcoind (BIP118 enforced)",
                Chain::Signet => "private signet bitcoind (BIP118 enforced, blocks signed here)",
            };
            narrator.begin("chain", format!("start {what} and electrs"));
            let signet = (args.network == Chain::Signet)
                .then(|| SignetSigner::from_seed(&rand::random::<[u8; 32]>()));
            let options = RegtestOptions {
                electrs: true,
                signet,
                ..Default::default()
            };
            Regtest::start(options).map_err(DemoError::ChainStart)?
        }
    };
    let info: Value = chain.rpc("getblockchaininfo", &[])?;
    let electrum = chain.electrum_url()?;
    narrator.detail(format!(
        "bitcoind {} on chain {} at height {}, electrs {electrum}",
        chain.rpc_url(),
        info["chain"].as_str().unwrap_or("?"),
        chain.height()?
    ));
    let chain_report = ChainReport {
        name: info["chain"].as_str().unwrap_or("?").to_owned(),
        signet_challenge: info["signet_challenge"].as_str().map(str::to_owned),
        attached: args.network_dir.is_some(),
    };
    let root = tempfile::Builder::new()
        .prefix("asyncpay-demo-")
        .tempdir()?;
    let crash = match &args.crash {
        None => None,
        Some(spec) => {
            let (party, point) = spec
                .split_once(':')
                .ok_or_else(|| DemoError::CrashSpec(spec.clone()))?;
            let party = match party {
                "A" => "A",
                "S" => "S",
                "B" => "B",
                "P" if args.routed => "P",
                other => return Err(DemoError::CrashParty(other.to_string())),
            };
            Some(CrashReport {
                party,
                point: point.to_owned(),
                fired_in: None,
                fired_at_ms: None,
            })
        }
    };
    let mut demo = Demo {
        chain_report,
        exe: args.exe.clone(),
        args,
        root,
        chain,
        electrum,
        mailbox_url: String::new(),
        tower_url: String::new(),
        control: Control::new()?,
        nodes: Party::ALL
            .iter()
            .map(|&party| Node {
                party,
                dir: PathBuf::new(),
                running: None,
                key: String::new(),
            })
            .collect(),
        children: Children::default(),
        narrator,
        txids: Vec::new(),
        events: Events::default(),
        runs: [0; 7],
        crash,
        in_payment: false,
        adversary: None,
        b_contact: None,
    };
    let result = if demo.args.pending.is_some() {
        demo.play_pending()
    } else if let Some(mode) = demo.args.pos {
        demo.play_pos(mode)
    } else {
        demo.play()
    };
    // Stop the children before the chain and the directory go away.
    drop(std::mem::take(&mut demo.children));
    let log_dir = demo.root.path().to_path_buf();
    if keep {
        let root = std::mem::replace(&mut demo.root, tempfile::tempdir()?);
        let _ = root.keep();
        eprintln!("data directories and logs kept in {}", log_dir.display());
    }
    let mut transcript = match result {
        Ok(t) => t,
        Err(e) => {
            report_problems(&log_dir);
            if !keep {
                eprintln!("(run with --keep to keep the node data directories and logs)");
            }
            return Err(e);
        }
    };
    transcript.kept = keep;
    if let Some(path) = &svg_path {
        std::fs::write(path, &transcript.svg).map_err(|source| DemoError::Svg {
            path: path.clone(),
            source,
        })?;
        eprintln!("sequence diagram written to {}", path.display());
    }
    Ok(transcript)
}

/// What the on-chain epilogue showed.
#[derive(Debug, Clone, Serialize)]
struct Enforcement {
    /// The package feerates of S's override: passed over by miners, then raised by S.
    bumped_sat_vb: [f64; 2],
    stale_state: u32,
    stale_txid: String,
    override_state: u32,
    override_txid: String,
    settlement_txid: String,
    blocks_to_settlement: u32,
    shared_delay: u64,
    settled_to_a: u64,
    settled_to_s: u64,
}

/// A's data as it went offline: its seed and stored channels. Restored in this process, it
/// plays an A that publishes an old state. No `Debug`: the seed is secret.
struct Backup {
    seed: [u8; 32],
    channels: Vec<(PublicKey, Snapshot)>,
}

/// One report, stamped with the time it reached the demo.
#[derive(Debug, Clone)]
struct Seen {
    at: Duration,
    party: Party,
    run: u32,
    event: Reported,
}

/// What the demo records: a node's event, parsed from the JSON line it printed on stdout, or
/// something the demo saw itself happen for a party.
// A demo records a few hundred of them.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Reported {
    /// A line of the node's stdout.
    Node(NodeEvent),
    /// The party fetched its letters from the mailbox.
    Fetched,
    /// The party put a transaction on chain (what, for the diagram).
    OnChain(String),
}

/// The nodes' stdout events, in order of arrival. Nodes print a line right after they act
/// (for a message: right after handing it to the connection), so the order of arrival across
/// processes is the order of the messages.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Seen>>>);

/// The participants of the sequence diagram, left to right: (name in the messages, label).
pub(crate) const PARTICIPANTS: [(&str, &str); 5] = [
    ("A", "A (payer)"),
    ("S", "S (LSP)"),
    ("mailbox", "mailbox"),
    ("B", "B (payee)"),
    ("chain", "regtest chain"),
];
