//! `asyncpay demo`: the narrated regtest run of one asynchronous payment.
//!
//! Everything runs as the user would run it: a BIP118-enforcing regtest `bitcoind` with
//! `electrs` (the crate's harness), `asyncpay mailbox serve` and three `asyncpay node run`
//! processes (payer A, LSP S, payee B), each in its own data directory under one temporary
//! directory. The demo drives them only through their control interface, narrates each step
//! on stderr and ends with a summary (balances before/after, txids, timings) and a mermaid
//! sequence diagram of the peer messages; `--json` prints the same as one JSON transcript on
//! stdout, and `--svg PATH` writes the diagram as a self-contained SVG (`sequence_svg`).
//! Every child process is killed when the demo ends, also on error.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use asyncpay::chain::regtest::{Regtest, RegtestOptions};
use asyncpay::crypto::keys::PublicKey;
use asyncpay::node::core::{NodeCommand, NodeCore, NodeInput, NodeOutput, Records};
use asyncpay::node::store::Store;
use asyncpay::protocol::channel::Snapshot;
use asyncpay::tx::anchor::{cpfp_child, find_anchor, package_fee, CHILD_VBYTES};
use asyncpay::tx::STATE_LOCKTIME_BASE;
use bitcoin::address::NetworkUnchecked;
use bitcoin::{Address, Amount, Network, Txid};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::sequence_svg::sequence_svg;

/// Transcript format version of `asyncpay demo --json`.
const TRANSCRIPT_VERSION: u32 = 1;
/// What the faucet sends each wallet.
const WALLET_FUNDS_SAT: u64 = 2_000_000;
/// Capacity of the A–S channel (A funds it).
const AS_CAPACITY_SAT: u64 = 1_000_000;
/// Capacity of the S–B channel (S funds it).
const SB_CAPACITY_SAT: u64 = 400_000;
/// How long a node may take to write its `node.json`.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Shared delay of A–S: S's PTLC delta plus the sale window margin, and some to spare.
const PAYER_DELAY: u16 = 32;
/// Shared delay of A–S with `--payer-cheats-while-pending`: B sells after U_0 has
/// confirmed, so the window (`confirmed_at + delay − 1 − margin`) must still hold a whole
/// PTLC lifetime then: 40 leaves 7 blocks for the sale.
const PAYER_DELAY_FOR_LATE_SALE: u16 = 40;
/// Shared delay of S–B (and of S–P and P–B when routed).
const PAYEE_DELAY: u16 = 6;
/// Blocks S's PTLCs live: at least twice the payee channel's shared delay, and through a
/// router its expiry delta (14) plus twice P–B's shared delay.
const PTLC_DELTA: u32 = 30;
/// Poll interval of awaited conditions.
const POLL: Duration = Duration::from_millis(25);

/// Options of `asyncpay demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Print one machine-readable JSON transcript on stdout (the narration stays on stderr).
    #[arg(long)]
    json: bool,
    /// Keep the temporary directory (node data directories and logs) after the run.
    #[arg(long)]
    keep: bool,
    /// What A pays B, in satoshis.
    #[arg(long, default_value_t = 50_000)]
    amount_sat: u64,
    /// Skip the on-chain epilogue (A publishes its stale state, S overrides it, the
    /// settlement confirms).
    #[arg(long)]
    no_epilogue: bool,
    /// Longest wait for any one condition (a status, a connection, a confirmation), in
    /// seconds.
    #[arg(long, default_value_t = 90)]
    timeout_secs: u64,
    /// Also write the sequence diagram as a self-contained SVG file to PATH.
    #[arg(long, value_name = "PATH")]
    svg: Option<PathBuf>,
    /// Fault injection: PARTY (A, S, B, or P with --routed) kills itself with SIGKILL at POINT
    /// (`send:<message>` before it sends that message, `post-letter` before A posts its
    /// letter, `persist:<n>` right after its n-th store write), counted from the party's
    /// first start in the payment (A and S: the pay step; B: the sell step; re-armed at each
    /// start until it fires). The demo restarts the party at once and the payment must still
    /// complete with the exact balances; the transcript's `crash` says where it died.
    #[arg(long, value_name = "PARTY:POINT")]
    crash: Option<String>,
    /// B has no channel with S but one with a router P (a fourth process, `--role router`):
    /// S pays B through P with the same point, P keeps its fee.
    #[arg(long)]
    routed: bool,
    /// In the on-chain epilogue, S is stopped before A publishes its stale state and started
    /// again only after that state has confirmed: S must find it from its stored channels
    /// alone and still override it in time.
    #[arg(long)]
    lsp_restarts_after_cheat: bool,
    /// The reverse variant instead: B is the one offline. B asks S for a state paying it and
    /// leaves S's offer in A's mailbox; A buys S's signature with a PTLC and hands it to B;
    /// B, back, has its state. No on-chain epilogue.
    #[arg(long, conflicts_with_all = ["routed", "crash", "lsp_restarts_after_cheat"])]
    reverse: bool,
    /// An adversary with B's contact card puts a bogus letter in B's mailbox before B comes
    /// online: `wrong-scalar` (A's letter with another valid signature, whose scalar does not
    /// sell the point), `tampered-offer` (the amount in S's signed offer raised by one
    /// satoshi) or `replayed-letter` (A's letter posted again). B must refuse it or ignore
    /// the repeat, and the genuine payment must still complete exactly once.
    #[arg(long, value_enum, conflicts_with = "reverse")]
    adversary: Option<Adversary>,
    /// A comes back before B sells and cancels: S cancels the offer and reverts A–S to
    /// state 0's balances (state 2); B, online later, invoices and is refused (`cancelled`);
    /// nothing moves on any channel. The on-chain epilogue then shows S answering A's
    /// stale state 0 with the revert.
    #[arg(long, conflicts_with_all = ["reverse", "routed", "crash", "adversary"])]
    cancel: bool,
    /// A's backup publishes the stale state 0 while A's signature on state 1 is still for
    /// sale (right after A goes offline), and it confirms; B then sells inside S's window:
    /// S buys the scalar, and its node publishes U_1 over U_0 at once and settles state 1.
    #[arg(
        long,
        conflicts_with_all = ["reverse", "routed", "crash", "adversary", "cancel", "lsp_restarts_after_cheat", "no_epilogue"]
    )]
    payer_cheats_while_pending: bool,
    /// S goes offline right after its offer and is away until the offer has expired: B
    /// invoices in time but nobody pays it; S, back, refuses the invoice (`expired`) and
    /// reverts A–S (state 2); A, back, finds its payment void. Nothing moves on any
    /// channel, and in the on-chain epilogue S answers A's stale state 0 with the revert.
    #[arg(
        long,
        conflicts_with_all = ["reverse", "routed", "crash", "adversary", "cancel", "payer_cheats_while_pending"]
    )]
    lsp_never_pays: bool,
}

// ---------------------------------------------------------------------------------------
// Child processes

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

impl Children {
    fn add(&mut self, name: &str, child: Child, log: PathBuf) {
        self.started.push((name.to_string(), child.id()));
        self.procs.push(Proc {
            name: name.to_string(),
            child,
            log,
        });
    }

    fn get_mut(&mut self, name: &str) -> anyhow::Result<&mut Proc> {
        self.procs
            .iter_mut()
            .find(|p| p.name == name)
            .ok_or_else(|| anyhow!("no process {name}"))
    }

    /// Whether `name` has exited; an exit is reported with the tail of its log.
    fn check_alive(&mut self, name: &str) -> anyhow::Result<()> {
        let proc = self.get_mut(name)?;
        if let Some(status) = proc.child.try_wait()? {
            bail!(
                "{name} exited ({status}); last lines of {}:\n{}",
                proc.log.display(),
                tail(&proc.log, 20)
            );
        }
        Ok(())
    }

    /// Whether `name` has exited (without reporting it as an error).
    fn exited(&mut self, name: &str) -> anyhow::Result<bool> {
        Ok(self.get_mut(name)?.child.try_wait()?.is_some())
    }

    /// Waits for `name` to exit by itself; kills it after `limit`.
    fn wait_exit(&mut self, name: &str, limit: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let index = self
            .procs
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| anyhow!("no process {name}"))?;
        loop {
            if self.procs[index].child.try_wait()?.is_some() {
                self.procs.remove(index);
                return Ok(());
            }
            if started.elapsed() > limit {
                let mut proc = self.procs.remove(index);
                let _ = proc.child.kill();
                let _ = proc.child.wait();
                bail!("{name} did not exit within {limit:?} after /v1/stop; killed it");
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for proc in &mut self.procs {
            let _ = proc.child.kill();
            let _ = proc.child.wait();
        }
    }
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
    mut probe: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    loop {
        if let Some(value) = probe()? {
            return Ok(value);
        }
        if started.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------------------
// Nodes and their control interface

/// What a ready node writes to `<data-dir>/node.json`.
#[derive(Debug, Clone, Deserialize)]
struct NodeFile {
    node_key: String,
    peer_addr: String,
    control_url: String,
    pid: u32,
}

/// The three parties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Party {
    A,
    S,
    B,
    P,
}

impl Party {
    /// Every party a run may have; P only in a routed run.
    const ALL: [Party; 4] = [Party::A, Party::S, Party::B, Party::P];

    fn name(self) -> &'static str {
        match self {
            Party::A => "A",
            Party::S => "S",
            Party::B => "B",
            Party::P => "P",
        }
    }

    fn role(self) -> &'static str {
        match self {
            Party::A => "payer",
            Party::S => "lsp",
            Party::B => "payee",
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

impl Control {
    fn new() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self { runtime, http })
    }

    /// POSTs `body` to `path` of a running node; an error answer becomes an error carrying
    /// the node's code and message.
    fn call(&self, node: &Node, path: &str, body: Value) -> anyhow::Result<Value> {
        let (file, token) = node
            .running
            .as_ref()
            .ok_or_else(|| anyhow!("{} is not running", node.party.name()))?;
        let url = format!("{}{path}", file.control_url.trim_end_matches('/'));
        self.runtime.block_on(async {
            let response = self
                .http
                .post(&url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .with_context(|| format!("{} {path}", node.party.name()))?;
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let value: Value = if text.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(&text).with_context(|| {
                    format!("{} {path}: answer is not JSON: {text}", node.party.name())
                })?
            };
            if !status.is_success() {
                bail!(
                    "{} {path} failed ({status}): {} {}",
                    node.party.name(),
                    value["error"].as_str().unwrap_or("?"),
                    value["message"].as_str().unwrap_or(&text)
                );
            }
            Ok(value)
        })
    }
}

// ---------------------------------------------------------------------------------------
// Transcript

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

/// The transcript `--json` prints.
#[derive(Debug, Serialize)]
struct Transcript {
    version: u32,
    ok: bool,
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
    checks: Vec<Check>,
    /// Every child process the demo started (all are gone when it exits).
    processes: Vec<Value>,
    total_ms: u64,
    /// The temporary directory of the run (node data, logs); removed unless `kept`.
    data_dir: String,
    kept: bool,
}

/// The demo's narration and what it collects for the summary.
struct Narrator {
    started: Instant,
    steps: Vec<Step>,
    current: Option<(Instant, usize)>,
}

impl Narrator {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            steps: Vec::new(),
            current: None,
        }
    }

    fn begin(&mut self, name: &'static str, title: impl Into<String>) {
        self.end();
        let title = title.into();
        let n = self.steps.len() + 1;
        eprintln!(
            "[{:>6.1}s] {n:>2}. {title}",
            self.started.elapsed().as_secs_f64()
        );
        let started = self.started.elapsed();
        self.steps.push(Step {
            n,
            name,
            title,
            started_ms: started.as_millis() as u64,
            started_us: started.as_micros() as u64,
            duration_ms: 0,
            details: Vec::new(),
        });
        self.current = Some((Instant::now(), n - 1));
    }

    fn detail(&mut self, text: impl Into<String>) {
        let text = text.into();
        eprintln!("            {text}");
        if let Some((_, i)) = self.current {
            self.steps[i].details.push(text);
        }
    }

    fn end(&mut self) {
        if let Some((at, i)) = self.current.take() {
            self.steps[i].duration_ms = at.elapsed().as_millis() as u64;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The demo

struct Demo {
    // Fields drop in declaration order: the children go before the chain and the directory.
    children: Children,
    args: DemoArgs,
    root: tempfile::TempDir,
    exe: PathBuf,
    chain: Regtest,
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
    runs: [u32; 4],
    /// The injected crash (`--crash`).
    crash: Option<CrashReport>,
    /// The payment step under way, for re-arming the crash at a restart.
    in_payment: bool,
    /// What `--adversary` did.
    adversary: Option<AdversaryReport>,
}

/// A stale update A's backup put on chain.
struct Stale {
    txid: Txid,
    state: u32,
}

/// A bogus letter put in B's mailbox (`--adversary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Adversary {
    /// A's letter with another valid signature, whose scalar does not sell the point.
    WrongScalar,
    /// The amount in S's signed offer raised by one satoshi.
    TamperedOffer,
    /// A's letter posted a second time.
    ReplayedLetter,
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

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let json = args.json;
    let keep = args.keep;
    let svg_path = args.svg.clone();
    let mut narrator = Narrator::new();
    narrator.begin(
        "chain",
        "start regtest bitcoind (BIP118 enforced) and electrs",
    );
    let options = RegtestOptions {
        electrs: true,
        ..Default::default()
    };
    let chain = Regtest::start(options).context("starting the regtest chain")?;
    let electrum = chain.electrum_url()?;
    narrator.detail(format!(
        "bitcoind {} at height {}, electrs {electrum}",
        chain.rpc_url(),
        chain.height()?
    ));
    let root = tempfile::Builder::new()
        .prefix("asyncpay-demo-")
        .tempdir()?;
    let crash = match &args.crash {
        None => None,
        Some(spec) => {
            let (party, point) = spec.split_once(':').ok_or_else(|| {
                anyhow!("--crash {spec:?}: expected PARTY:POINT, e.g. S:send:offer")
            })?;
            let party = match party {
                "A" => "A",
                "S" => "S",
                "B" => "B",
                "P" if args.routed => "P",
                other => bail!("--crash: unknown party {other:?} (A, S, B, or P with --routed)"),
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
        exe: std::env::current_exe().context("locating the asyncpay binary")?,
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
        runs: [0; 4],
        crash,
        in_payment: false,
        adversary: None,
    };
    let result = demo.play();
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
        std::fs::write(path, &transcript.svg)
            .with_context(|| format!("writing the sequence diagram to {}", path.display()))?;
        eprintln!("sequence diagram written to {}", path.display());
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&transcript)?);
    } else {
        print_summary(&transcript);
    }
    if !transcript.ok {
        bail!("a check failed (see the table above)");
    }
    Ok(())
}

impl Demo {
    fn node(&self, party: Party) -> &Node {
        &self.nodes[party.index()]
    }

    /// A control call. A query (`/v1/info`) to the party told to crash that dies meanwhile
    /// restarts it and asks again (once); other commands are not repeated, their callers
    /// decide.
    fn call(&mut self, party: Party, path: &str, body: Value) -> anyhow::Result<Value> {
        match self.control.call(self.node(party), path, body.clone()) {
            Err(e) if path == "/v1/info" && self.crash_pending() == Some(party) => {
                if !self.recover_after_failed_call(party)? {
                    return Err(e);
                }
                self.control.call(self.node(party), path, body)
            }
            other => other,
        }
    }

    fn info(&mut self, party: Party) -> anyhow::Result<Value> {
        self.call(party, "/v1/info", json!({}))
    }

    /// Starts the node of `party` (again) and waits until it wrote its `node.json`.
    fn start_node(&mut self, party: Party) -> anyhow::Result<()> {
        let name = party.name();
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir)?;
        let node_file = dir.join("node.json");
        // A file left by the previous run of this node must not be taken for the new one.
        let _ = std::fs::remove_file(&node_file);
        let log = self.root.path().join(format!("{name}.log"));
        let log_file = OpenOptions::new().create(true).append(true).open(&log)?;
        self.runs[party.index()] += 1;
        let run = self.runs[party.index()];
        let mut command = Command::new(&self.exe);
        command
            .args(["node", "run", "--role", party.role(), "--data-dir"])
            .arg(&dir)
            .args(["--electrum", &self.electrum, "--mailbox", &self.mailbox_url])
            .args(["--listen", "127.0.0.1:0"]);
        // A party restarted during the payment is armed from its first output on: it may
        // reach its point before a control call could arm it.
        if let Some(point) = self.armed_point(party) {
            command.args(["--crash-at", &point]);
            self.narrator
                .detail(format!("{name} is armed to SIGKILL itself at {point}"));
        }
        // A's channel must outlast a sale after A publishes an older state (PTLC delta plus
        // margin); B's channel must settle well inside the PTLC's lifetime.
        match party {
            Party::A => {
                let delay = if self.args.payer_cheats_while_pending {
                    PAYER_DELAY_FOR_LATE_SALE
                } else {
                    PAYER_DELAY
                };
                command.args(["--shared-delay", &delay.to_string()]);
            }
            Party::S => {
                command
                    .args(["--shared-delay", &PAYEE_DELAY.to_string()])
                    .args(["--ptlc-delta", &PTLC_DELTA.to_string()])
                    .args(["--rpc-url", &self.chain.rpc_url(), "--rpc-cookie"])
                    .arg(self.chain.rpc_cookie_file());
            }
            Party::P => {
                command.args(["--shared-delay", &PAYEE_DELAY.to_string()]);
            }
            Party::B => {
                command.args(["--watchtower", &self.tower_url]);
            }
        }
        command
            .env(
                "RUST_LOG",
                std::env::var("ASYNCPAY_DEMO_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file.try_clone()?);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting node {name}"))?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("stdout is piped");
        self.events
            .follow(stdout, log_file, party, run, self.narrator.started);
        self.children.add(name, child, log);
        let file: NodeFile = {
            let children = &mut self.children;
            wait_for(&format!("{name} to write node.json"), START_TIMEOUT, || {
                // Read first: a node armed to crash may already have died after writing it.
                let file = std::fs::read_to_string(&node_file)
                    .ok()
                    .and_then(|text| serde_json::from_str::<NodeFile>(&text).ok())
                    .filter(|file| file.pid == pid);
                if file.is_none() {
                    children.check_alive(name)?;
                }
                Ok(file)
            })?
        };
        let token = wait_for(
            &format!("{name} to write control.token"),
            START_TIMEOUT,
            || {
                Ok(std::fs::read_to_string(dir.join("control.token"))
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty()))
            },
        )?;
        let node = &mut self.nodes[party.index()];
        node.dir = dir;
        node.key = file.node_key.clone();
        self.narrator.detail(format!(
            "{name} ({}) pid {} key {}… peers at {}, control at {}",
            party.role(),
            file.pid,
            &file.node_key[..16.min(file.node_key.len())],
            file.peer_addr,
            file.control_url
        ));
        node.running = Some((file, token));
        Ok(())
    }

    /// Asks a node to stop and waits for its process to exit.
    fn stop_node(&mut self, party: Party) -> anyhow::Result<()> {
        self.call(party, "/v1/stop", json!({}))?;
        self.children
            .wait_exit(party.name(), Duration::from_secs(30))?;
        self.nodes[party.index()].running = None;
        self.narrator.detail(format!("{} stopped", party.name()));
        Ok(())
    }

    fn start_mailbox(&mut self) -> anyhow::Result<()> {
        self.narrator
            .detail(format!("work directory {}", self.root.path().display()));
        let dir = self.root.path().join("mailbox");
        std::fs::create_dir_all(&dir)?;
        let log = self.root.path().join("mailbox.log");
        let mut child = Command::new(&self.exe)
            .args([
                "mailbox",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--json",
                "--data-dir",
            ])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log)?)
            .spawn()
            .context("starting the mailbox server")?;
        let stdout = child.stdout.take().expect("stdout is piped");
        self.children.add("mailbox", child, log);
        // The server prints one line with its URL once it listens.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(START_TIMEOUT)
            .context("the mailbox server did not print its URL")?;
        let value: Value = serde_json::from_str(line.trim())
            .with_context(|| format!("mailbox serve printed {line:?}"))?;
        self.mailbox_url = value["listening"]
            .as_str()
            .ok_or_else(|| anyhow!("mailbox serve printed {line:?}"))?
            .to_string();
        let pid = self.children.started.last().map_or(0, |(_, pid)| *pid);
        self.narrator
            .detail(format!("mailbox pid {pid} at {}", self.mailbox_url));
        Ok(())
    }

    /// Starts B's watchtower and waits until it wrote its `tower.json`.
    fn start_tower(&mut self) -> anyhow::Result<()> {
        let dir = self.root.path().join("watchtower");
        std::fs::create_dir_all(&dir)?;
        let log = self.root.path().join("watchtower.log");
        let child = Command::new(&self.exe)
            .args([
                "watchtower",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&dir)
            .args(["--rpc-url", &self.chain.rpc_url(), "--rpc-cookie"])
            .arg(self.chain.rpc_cookie_file())
            .args(["--electrum", &self.electrum, "--poll-ms", "300"])
            .stdin(Stdio::null())
            .stdout(File::create(self.root.path().join("watchtower.out"))?)
            .stderr(File::create(&log)?)
            .spawn()
            .context("starting the watchtower")?;
        self.children.add("watchtower", child, log);
        let file = dir.join("tower.json");
        let info: Value = wait_for("the watchtower to write tower.json", START_TIMEOUT, || {
            self.children.check_alive("watchtower")?;
            Ok(std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok()))
        })?;
        self.tower_url = info["url"]
            .as_str()
            .ok_or_else(|| anyhow!("tower.json without url: {info}"))?
            .to_string();
        self.narrator
            .detail(format!("watchtower at {}", self.tower_url));
        Ok(())
    }

    /// The newest state of channel `channel_id` that `party` reported its watchtower holds.
    fn tower_state(&self, party: Party, channel_id: &str) -> Option<u64> {
        self.events
            .all()
            .iter()
            .rev()
            .find(|e| {
                e.party == party
                    && e.event["event"] == "watchtower_updated"
                    && e.event["channel_id"] == channel_id
            })
            .and_then(|e| e.event["state"].as_u64())
    }

    /// Mines `n` blocks, waits for electrs and for every running node to see the new tip.
    fn mine(&mut self, n: u64) -> anyhow::Result<u64> {
        self.chain.mine(n)?;
        self.chain.wait_for_electrs_tip()?;
        let height = self.chain.height()?;
        for party in self.parties() {
            if self.node(party).running.is_none() {
                continue;
            }
            wait_for(
                &format!("{} to reach height {height}", party.name()),
                Duration::from_secs(self.args.timeout_secs),
                || {
                    let info = self.info(party)?;
                    Ok((info["height"].as_u64().unwrap_or(0) >= height).then_some(()))
                },
            )?;
        }
        Ok(height)
    }

    fn payment_status(&mut self, party: Party, payment_id: &str) -> anyhow::Result<Option<String>> {
        let info = self.info(party)?;
        Ok(info[self.ledger()]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["payment_id"].as_str() == Some(payment_id))
            .and_then(|p| p["status"].as_str().map(str::to_string)))
    }

    fn payment_record(&mut self, party: Party, payment_id: &str) -> anyhow::Result<Value> {
        let info = self.info(party)?;
        info[self.ledger()]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["payment_id"].as_str() == Some(payment_id))
            .map(|p| p["record"].clone())
            .ok_or_else(|| anyhow!("{} has no payment {payment_id}", party.name()))
    }

    /// Waits until `party` reports `payment_id` with status `want`; a status in `stop` ends
    /// the wait with an error. A party that dies at its injected crash point meanwhile is
    /// restarted.
    fn await_status(
        &mut self,
        party: Party,
        payment_id: &str,
        want: &str,
        stop: &[&str],
    ) -> anyhow::Result<()> {
        let name = party.name();
        let limit = Duration::from_secs(self.args.timeout_secs);
        let started = Instant::now();
        let mut last = None;
        loop {
            self.recover()?;
            self.alive_or_crashing(party)?;
            match self.payment_status(party, payment_id) {
                Ok(status) if status.as_deref() == Some(want) => break,
                Ok(Some(s)) if stop.contains(&s.as_str()) => {
                    bail!("{name}: payment ended as {s}, not {want}")
                }
                Ok(status) => last = status,
                // Died while answering: the next turn restarts it.
                Err(_) if self.crash_pending() == Some(party) => {}
                Err(e) => return Err(e),
            }
            if started.elapsed() > limit {
                bail!(
                    "timed out after {limit:?} waiting for {name} to report payment status \
                     {want}; last status at {name}: {last:?}"
                );
            }
            std::thread::sleep(POLL);
        }
        self.check_no_secret_shown(party)?;
        self.narrator.detail(format!("{name}: payment {want}"));
        Ok(())
    }

    /// `ctl info` of `party` must show none of the secrets its store holds (the withheld
    /// and bought signatures of its payments): checked at every payment status the demo
    /// waits for, so in every state a payment passes through.
    fn check_no_secret_shown(&mut self, party: Party) -> anyhow::Result<()> {
        let db = self.node(party).dir.join("node.db");
        let secrets = {
            let conn = rusqlite::Connection::open_with_flags(
                &db,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?;
            conn.busy_timeout(Duration::from_secs(5))?;
            let mut secrets = Vec::new();
            for table in ["payments", "reverse"] {
                let mut stmt = conn.prepare(&format!("SELECT record FROM {table}"))?;
                let records = stmt.query_map([], |row| row.get::<_, String>(0))?;
                for record in records {
                    let record: Value = serde_json::from_str(&record?)?;
                    secrets.extend(asyncpay::node::views::stored_secrets(&record));
                }
            }
            secrets
        };
        // A party that dies at its injected crash point meanwhile is restarted by the
        // caller's next wait; there is no answer to check then.
        let Ok(info) = self.info(party) else {
            return Ok(());
        };
        let shown = info.to_string();
        if let Some(secret) = secrets.iter().find(|s| shown.contains(s.as_str())) {
            bail!(
                "{}: ctl info shows a secret its store holds ({}...)",
                party.name(),
                &secret[..secret.len().min(8)]
            );
        }
        Ok(())
    }

    /// Waits until S's revert of A–S (state 2, with state 0's balances) is complete at A and
    /// at S.
    fn await_revert(&mut self, as_id: &str) -> anyhow::Result<()> {
        let limit = Duration::from_secs(self.args.timeout_secs);
        wait_for(
            "A–S to reach the revert (state 2) at A and S",
            limit,
            || {
                let a = self.channel(Party::A, as_id)?;
                let s = self.channel(Party::S, as_id)?;
                Ok(
                    (a["state"].as_u64() == Some(2) && s["state"].as_u64() == Some(2))
                        .then_some(()),
                )
            },
        )?;
        let (a, s) = (
            self.own_balance(Party::A, as_id)?,
            self.own_balance(Party::S, as_id)?,
        );
        self.narrator.detail(format!(
            "S reverted A–S to state 2 with state 0's balances: A {a} / S {s} sat"
        ));
        Ok(())
    }

    /// Waits until B reports its invoice refused, and checks S's reason code.
    fn await_refusal(&mut self, payment_id: &str, reason: &str) -> anyhow::Result<()> {
        self.await_status(Party::B, payment_id, "refused", &["paid"])?;
        let record = self.payment_record(Party::B, payment_id)?;
        let said = record["status"]["reason"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        self.narrator
            .detail(format!("S refused B's invoice: {said}"));
        if said != reason {
            bail!("B's invoice was refused for another reason than {reason}: {record}");
        }
        Ok(())
    }

    /// The channel `channel_id` as `party` reports it.
    fn channel(&mut self, party: Party, channel_id: &str) -> anyhow::Result<Value> {
        let info = self.info(party)?;
        info["channels"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["channel_id"].as_str() == Some(channel_id))
            .cloned()
            .ok_or_else(|| anyhow!("{} has no channel {channel_id}", party.name()))
    }

    fn own_balance(&mut self, party: Party, channel_id: &str) -> anyhow::Result<u64> {
        let c = self.channel(party, channel_id)?;
        c["to_self_sat"]
            .as_u64()
            .ok_or_else(|| anyhow!("{}: channel without to_self_sat: {c}", party.name()))
    }

    /// Funds a node's wallet from the faucet through the mempool; returns the txid.
    fn fund_wallet(&mut self, party: Party, amount: Amount) -> anyhow::Result<Txid> {
        let answer = self.call(party, "/v1/address", json!({}))?;
        let text = answer["address"]
            .as_str()
            .ok_or_else(|| anyhow!("{}: /v1/address answered {answer}", party.name()))?;
        let address = text
            .parse::<Address<NetworkUnchecked>>()?
            .require_network(Network::Regtest)?;
        let (outpoint, _) = self.chain.fund(&address.script_pubkey(), amount)?;
        self.narrator.detail(format!(
            "faucet pays {} {} sat at {address}: {}",
            party.name(),
            amount.to_sat(),
            outpoint.txid
        ));
        Ok(outpoint.txid)
    }

    /// Opens a channel from `opener` to `acceptor`, waits until both hold the signed state 0
    /// and the funding transaction is in the mempool, and confirms it.
    fn open_channel(
        &mut self,
        opener: Party,
        acceptor: Party,
        capacity_sat: u64,
        label: &'static str,
    ) -> anyhow::Result<(String, Txid)> {
        let answer = self.call(
            opener,
            "/v1/open",
            json!({"peer": self.node(acceptor).key, "capacity_sat": capacity_sat}),
        )?;
        let channel_id = answer["channel_id"]
            .as_str()
            .ok_or_else(|| anyhow!("/v1/open answered {answer}"))?
            .to_string();
        self.narrator.detail(format!(
            "{} opens {label} ({capacity_sat} sat): channel {channel_id}",
            opener.name()
        ));
        let mut funding: Option<Txid> = None;
        for party in [opener, acceptor] {
            let outpoint: String = {
                let children = &mut self.children;
                let control = &self.control;
                let node = &self.nodes[party.index()];
                wait_for(
                    &format!("{} to hold the signed state 0 of {label}", party.name()),
                    Duration::from_secs(self.args.timeout_secs),
                    || {
                        children.check_alive(party.name())?;
                        let info = control.call(node, "/v1/info", json!({}))?;
                        let channel = info["channels"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .find(|c| c["channel_id"].as_str() == Some(channel_id.as_str()));
                        Ok(channel.and_then(|c| {
                            let funded = c["phase"]
                                .as_str()
                                .is_some_and(|p| p.eq_ignore_ascii_case("funded"));
                            let outpoint = c["funding_outpoint"].as_str()?;
                            funded.then(|| outpoint.to_string())
                        }))
                    },
                )?
            };
            let txid: Txid = outpoint
                .split(':')
                .next()
                .unwrap_or_default()
                .parse()
                .with_context(|| format!("funding outpoint {outpoint}"))?;
            if funding.is_some_and(|t| t != txid) {
                bail!("{label}: the two sides name different funding transactions");
            }
            funding = Some(txid);
        }
        let txid = funding.expect("set in the loop");
        {
            let chain = &self.chain;
            let children = &mut self.children;
            wait_for(
                &format!("the funding transaction of {label} in the mempool"),
                Duration::from_secs(self.args.timeout_secs),
                || {
                    children.check_alive(opener.name())?;
                    Ok(chain.in_mempool(&txid)?.then_some(()))
                },
            )?;
        }
        let height = self.chain.confirm(&txid)?;
        self.chain.wait_for_electrs_tip()?;
        for party in [opener, acceptor] {
            let id = json!(channel_id);
            self.await_event(party, &format!("{label} funding confirmed"), |e| {
                e["event"] == "channel" && e["channel_id"] == id && e["what"] == "FundingConfirmed"
            })?;
        }
        self.narrator.detail(format!(
            "funding transaction {txid} confirmed at height {height}; both sides saw it"
        ));
        self.txids.push(TxRecord {
            what: format!("{label} funding"),
            txid: txid.to_string(),
            confirmed_at: Some(height),
        });
        Ok((channel_id, txid))
    }

    fn begin(&mut self, name: &'static str, title: impl Into<String>) {
        self.narrator.begin(name, title);
    }

    /// Waits until `party`'s current process reports an event that `matches`. A party that
    /// dies at its injected crash point meanwhile is restarted, and the wait goes on for its
    /// new process.
    fn await_event(
        &mut self,
        party: Party,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<()> {
        let limit = Duration::from_secs(self.args.timeout_secs);
        let started = Instant::now();
        loop {
            let run = self.runs[party.index()];
            if self.events.any(party, run, &matches) {
                return Ok(());
            }
            if self.recover()? {
                continue;
            }
            self.alive_or_crashing(party)?;
            if started.elapsed() > limit {
                bail!(
                    "timed out after {limit:?} waiting for {} to report {what}",
                    party.name()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Puts a bogus letter made from A's genuine one in B's mailbox, sealed to B's contact by
    /// a key of the adversary's own.
    fn post_bogus_letter(
        &mut self,
        kind: Adversary,
        letter: &Value,
        contact: &Value,
    ) -> anyhow::Result<()> {
        let mut bogus = letter.clone();
        match kind {
            Adversary::WrongScalar => {
                // A valid BIP340 signature, but not on U_1 and not by A's channel key.
                let key = asyncpay::crypto::keys::SecretKey::from_bytes(rand::random())
                    .map_err(|e| anyhow!("adversary key: {e}"))?;
                bogus["signature"] = serde_json::to_value(key.sign(&[7; 32], &[0; 32]))?;
            }
            Adversary::TamperedOffer => {
                let amount = bogus["offer"]["terms"]["amount_sat"]
                    .as_u64()
                    .ok_or_else(|| anyhow!("A's letter has no offer amount"))?;
                bogus["offer"]["terms"]["amount_sat"] = json!(amount + 1);
            }
            Adversary::ReplayedLetter => {}
        }
        let card: asyncpay::mailbox::keys::Contact = serde_json::from_value(contact.clone())?;
        let to = card.verify().map_err(|e| anyhow!("B's contact: {e:?}"))?;
        let client = asyncpay::mailbox::client::MailboxClient::new(&self.mailbox_url)?;
        let sender = asyncpay::mailbox::keys::NodeKey::generate();
        let bytes = serde_json::to_vec(&bogus)?;
        self.control.runtime.block_on(client.send(
            &to,
            Some(&sender),
            bytes,
            Duration::from_secs(3600),
        ))?;
        self.narrator.detail(format!(
            "an adversary put a {} letter in B's mailbox",
            match kind {
                Adversary::WrongScalar => "wrong-scalar",
                Adversary::TamperedOffer => "tampered-offer",
                Adversary::ReplayedLetter => "replayed",
            }
        ));
        self.adversary = Some(AdversaryReport {
            kind,
            letters_fetched: 0,
            refused_by_b: false,
            refusal: None,
        });
        Ok(())
    }

    /// Where the nodes list this run's payment in `info`: the main flow's payments, or the
    /// reverse variant's.
    fn ledger(&self) -> &'static str {
        if self.args.reverse {
            "reverse"
        } else {
            "payments"
        }
    }

    /// The reverse variant's payment: B asks, leaves; A buys; B returns. Returns the payment
    /// id and S's fee.
    fn reverse_payment(&mut self) -> anyhow::Result<(String, u64)> {
        let amount = self.args.amount_sat;
        self.in_payment = true;
        self.begin(
            "receive",
            format!(
                "B asks S for a state paying it {amount} sat, leaves S's offer in A's mailbox and goes offline"
            ),
        );
        let payer_contact = self.call(Party::A, "/v1/contact", json!({}))?;
        let answer = self.call(
            Party::B,
            "/v1/receive",
            json!({"lsp": self.node(Party::S).key, "payer_contact": payer_contact, "amount_sat": amount}),
        )?;
        let payment_id = answer["payment_id"]
            .as_str()
            .ok_or_else(|| anyhow!("/v1/receive answered {answer}"))?
            .to_string();
        self.narrator.detail(format!("payment {payment_id}"));
        self.await_status(Party::B, &payment_id, "offered", &[])?;
        self.await_status(Party::S, &payment_id, "offered", &[])?;
        let record = self.payment_record(Party::S, &payment_id)?;
        let fee = record["status"]["offer"]["terms"]["fee_sat"]
            .as_u64()
            .ok_or_else(|| anyhow!("S's record has no offer fee"))?;
        self.narrator.detail(format!(
            "S proposed state 1 of S–B paying B, kept its signature back and offered it for \
             {amount} + {fee} sat; B countersigned and posted the offer to A's mailbox"
        ));
        self.stop_node(Party::B)?;

        self.begin(
            "buy",
            "A fetches B's request and buys S's signature with a PTLC on A–S",
        );
        let asked = self.narrator.started.elapsed();
        let fetched = self.call(Party::A, "/v1/fetch", json!({}))?;
        let run = self.runs[Party::A.index()];
        self.events
            .push(asked, Party::A, run, json!({"event": "fetched"}));
        self.narrator
            .detail(format!("A fetched {} letter(s)", fetched["letters"]));
        self.await_status(Party::A, &payment_id, "bought", &[])?;
        self.await_status(Party::S, &payment_id, "bought", &[])?;
        self.narrator.detail(
            "S fulfilled A's PTLC with its signature's scalar and released state 1 of S–B; A \
             holds the complete update and handed S's signature to B's mailbox",
        );

        self.begin("return", "B comes back online and has its state");
        self.start_node(Party::B)?;
        self.await_connected(Party::B, Party::S)?;
        let asked = self.narrator.started.elapsed();
        let fetched = self.call(Party::B, "/v1/fetch", json!({}))?;
        let run = self.runs[Party::B.index()];
        self.events
            .push(asked, Party::B, run, json!({"event": "fetched"}));
        self.narrator.detail(format!(
            "B reconnected to S and fetched {} letter(s) (A's hand-over)",
            fetched["letters"]
        ));
        self.await_status(Party::B, &payment_id, "paid", &[])?;
        Ok((payment_id, fee))
    }

    /// The parties of this run: A, S, B, and the router P when routed.
    fn parties(&self) -> Vec<Party> {
        Party::ALL
            .into_iter()
            .filter(|p| *p != Party::P || self.args.routed)
            .collect()
    }

    /// The channels that carry S's payment to B, each with its opener (who pays) and
    /// acceptor: S–B, or S–P and P–B through the router.
    fn hops(&self) -> Vec<(&'static str, Party, Party)> {
        if self.args.routed {
            vec![("S–P", Party::S, Party::P), ("P–B", Party::P, Party::B)]
        } else {
            vec![("S–B", Party::S, Party::B)]
        }
    }

    /// The party told to crash (`--crash`) that has not yet died.
    fn crash_pending(&self) -> Option<Party> {
        let c = self.crash.as_ref().filter(|c| c.fired_in.is_none())?;
        Party::ALL.into_iter().find(|p| p.name() == c.party)
    }

    /// The crash point to arm `party` with: it is the one told to crash, the payment is
    /// under way and it has not died yet.
    fn armed_point(&self, party: Party) -> Option<String> {
        if !self.in_payment || self.crash_pending() != Some(party) {
            return None;
        }
        self.crash.as_ref().map(|c| c.point.clone())
    }

    /// Arms a running `party`'s injected crash point (see [`Demo::armed_point`]).
    fn arm(&mut self, party: Party) -> anyhow::Result<()> {
        let Some(point) = self.armed_point(party) else {
            return Ok(());
        };
        self.call(party, "/v1/crash-at", json!({ "point": point }))?;
        self.narrator.detail(format!(
            "{} is armed to SIGKILL itself at {point}",
            party.name()
        ));
        Ok(())
    }

    /// Fails if `party`'s process has exited, unless it is the party told to crash (its
    /// death is handled by [`Demo::recover`]).
    fn alive_or_crashing(&mut self, party: Party) -> anyhow::Result<()> {
        match self.children.check_alive(party.name()) {
            Err(_) if self.crash_pending() == Some(party) => Ok(()),
            other => other,
        }
    }

    /// After a control call to `party` failed: if it is the party told to crash, gives its
    /// process a moment to finish dying, then [`Demo::recover`]s it.
    fn recover_after_failed_call(&mut self, party: Party) -> anyhow::Result<bool> {
        if self.crash_pending() != Some(party) {
            return Ok(false);
        }
        let started = Instant::now();
        while !self.children.exited(party.name())? && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(POLL);
        }
        self.recover()
    }

    /// If the party told to crash has died at its crash point, restarts it at once, as an
    /// operator's supervisor would. Returns whether it did. A death without the crash point
    /// reported is an error.
    fn recover(&mut self) -> anyhow::Result<bool> {
        let Some(party) = self.crash_pending() else {
            return Ok(false);
        };
        if self.nodes[party.index()].running.is_none() || !self.children.exited(party.name())? {
            return Ok(false);
        }
        let run = self.runs[party.index()];
        // The report is read from the process's stdout by another thread.
        let reported = wait_for("the crash point report", Duration::from_secs(2), || {
            Ok(self
                .events
                .any(party, run, |e| e["event"] == "crash_point")
                .then_some(()))
        });
        if reported.is_err() {
            self.children.check_alive(party.name())?;
        }
        self.children
            .wait_exit(party.name(), Duration::from_secs(5))?;
        self.nodes[party.index()].running = None;
        let step = self.narrator.steps.last().map(|s| s.name.to_string());
        let at = self.narrator.started.elapsed().as_millis() as u64;
        let point = match self.crash.as_mut() {
            Some(c) => {
                c.fired_in = step;
                c.fired_at_ms = Some(at);
                c.point.clone()
            }
            None => String::new(),
        };
        self.narrator.detail(format!(
            "{} died by SIGKILL at {point}; restarting it from its data directory",
            party.name()
        ));
        self.start_node(party)?;
        Ok(true)
    }

    /// Waits until `party`'s current process reports a connection with `peer`.
    fn await_connected(&mut self, party: Party, peer: Party) -> anyhow::Result<()> {
        let key = json!(self.node(peer).key);
        self.await_event(party, &format!("a connection to {}", peer.name()), |e| {
            e["event"] == "connected" && e["peer"] == key
        })
    }

    /// The whole run; the caller cleans up.
    fn play(&mut self) -> anyhow::Result<Transcript> {
        let amount = self.args.amount_sat;

        self.begin(
            "mailbox",
            "start the mailbox server (asyncpay mailbox serve)",
        );
        self.start_mailbox()?;
        self.begin(
            "tower",
            "start B's watchtower (asyncpay watchtower serve): B will be offline longer than its channel's delay",
        );
        self.start_tower()?;

        let routed = self.args.routed;
        self.begin(
            "nodes",
            if routed {
                "start payer A, LSP S, router P and payee B (asyncpay node run)"
            } else {
                "start payer A, LSP S and payee B (asyncpay node run)"
            },
        );
        for party in self.parties() {
            self.start_node(party)?;
        }

        self.begin("fund", "fund the wallets from the faucet");
        for party in self.parties() {
            let txid = self.fund_wallet(party, Amount::from_sat(WALLET_FUNDS_SAT))?;
            self.txids.push(TxRecord {
                what: format!("faucet to {}'s wallet", party.name()),
                txid: txid.to_string(),
                confirmed_at: None,
            });
        }
        let height = self.mine(1)?;
        for record in &mut self.txids {
            record.confirmed_at = Some(height);
        }
        for party in self.parties() {
            wait_for(
                &format!("{}'s wallet to see its coins", party.name()),
                Duration::from_secs(self.args.timeout_secs),
                || {
                    let info = self.info(party)?;
                    Ok((info["wallet_sat"].as_u64() == Some(WALLET_FUNDS_SAT)).then_some(()))
                },
            )?;
        }
        self.narrator.detail(format!(
            "confirmed at height {height}; each wallet holds {WALLET_FUNDS_SAT} sat"
        ));

        self.begin(
            "connect",
            if routed {
                "A, B and P connect to S, B to P, over authenticated loopback TCP"
            } else {
                "A and B connect to S over authenticated loopback TCP"
            },
        );
        self.connect(Party::A, Party::S)?;
        self.connect(Party::B, Party::S)?;
        if routed {
            self.connect(Party::P, Party::S)?;
            self.connect(Party::B, Party::P)?;
        }

        let hops = self.hops();
        let names: Vec<String> = hops
            .iter()
            .map(|(label, opener, _)| format!("{label} ({} funds)", opener.name()))
            .collect();
        self.begin(
            "open",
            format!(
                "open and confirm the channels A–S (A funds) and {}",
                names.join(" and ")
            ),
        );
        let (as_id, as_txid) = self.open_channel(Party::A, Party::S, AS_CAPACITY_SAT, "A–S")?;
        // Each channel of the payee side: label, id, funding txid, opener, acceptor.
        let mut payee_side = vec![];
        for (label, opener, acceptor) in hops {
            let (id, txid) = self.open_channel(opener, acceptor, SB_CAPACITY_SAT, label)?;
            payee_side.push((label, id, txid, opener, acceptor));
        }
        let balances_of = |demo: &mut Demo| -> anyhow::Result<Vec<u64>> {
            let mut out = vec![
                demo.own_balance(Party::A, &as_id)?,
                demo.own_balance(Party::S, &as_id)?,
            ];
            for (_, id, _, opener, acceptor) in &payee_side {
                out.push(demo.own_balance(*opener, id)?);
                out.push(demo.own_balance(*acceptor, id)?);
            }
            Ok(out)
        };
        let describe = |b: &[u64]| {
            let mut text = format!("A–S: A {} / S {} sat", b[0], b[1]);
            for (i, (label, _, _, opener, acceptor)) in payee_side.iter().enumerate() {
                text.push_str(&format!(
                    "; {label}: {} {} / {} {} sat",
                    opener.name(),
                    b[2 + 2 * i],
                    acceptor.name(),
                    b[3 + 2 * i]
                ));
            }
            text
        };
        let before = balances_of(self)?;
        self.narrator.detail(describe(&before));

        let (payment_id, fee, backup) = if self.args.reverse {
            let (payment_id, fee) = self.reverse_payment()?;
            (payment_id, fee, None)
        } else {
            self.begin(
                "contact",
                "B publishes its mailbox contact and goes offline",
            );
            let contact = self.call(Party::B, "/v1/contact", json!({}))?;
            self.narrator.detail(format!(
                "contact: node {}…, mailbox {}",
                contact["node_key"]
                    .as_str()
                    .map(|k| &k[..16.min(k.len())])
                    .unwrap_or("?"),
                contact["mailbox_url"].as_str().unwrap_or("?")
            ));
            self.stop_node(Party::B)?;

            self.begin(
                "pay",
                format!("A pays B {amount} sat through S, posts its letter and goes offline"),
            );
            self.in_payment = true;
            self.arm(Party::A)?;
            self.arm(Party::S)?;
            if routed {
                self.arm(Party::P)?;
            }
            let paid = self.call(
                Party::A,
                "/v1/pay",
                json!({"lsp": self.node(Party::S).key, "contact": contact, "amount_sat": amount}),
            );
            let payment_id = match paid {
                Ok(answer) => answer["payment_id"]
                    .as_str()
                    .ok_or_else(|| anyhow!("/v1/pay answered {answer}"))?
                    .to_string(),
                // A died while paying: its payment is in its store; it resumes after a restart.
                Err(e) => {
                    if !self.recover_after_failed_call(Party::A)? {
                        return Err(e);
                    }
                    let info = self.info(Party::A)?;
                    info["payments"]
                        .as_array()
                        .and_then(|p| p.first())
                        .and_then(|p| p["payment_id"].as_str())
                        .ok_or_else(|| anyhow!("A restarted without the payment it was making"))?
                        .to_string()
                }
            };
            self.narrator.detail(format!("payment {payment_id}"));
            self.await_status(Party::A, &payment_id, "posted", &["void", "cancelling"])?;
            self.await_status(Party::S, &payment_id, "offered", &["cancelled"])?;
            let record = self.payment_record(Party::A, &payment_id)?;
            let fee = record["fee_sat"]
                .as_u64()
                .ok_or_else(|| anyhow!("A's payment record has no fee_sat"))?;
            if let Some(kind) = self.args.adversary {
                // `ctl info` never shows A's withheld signature: the adversary takes the
                // letter from A's own store, as one who got hold of A's files would.
                let letter = stored_letter(&self.node(Party::A).dir, &payment_id)?;
                self.post_bogus_letter(kind, &letter, &contact)?;
            }
            self.narrator.detail(format!(
                "S offered {amount} sat to B for A's signature, fee {fee} sat; the letter is in B's mailbox"
            ));
            let held = self.own_balance(Party::S, &as_id)?;
            self.narrator.detail(format!(
                "nothing has moved yet: S's balance in A–S is still {held} sat"
            ));
            self.stop_node(Party::A)?;
            let backup = Backup::take(&self.node(Party::A).dir)?;
            self.narrator.detail(format!(
                "A's backup as it went offline: A–S at state {}",
                backup.state(&as_id).map_or("?".into(), |n| n.to_string())
            ));
            let stale = if self.args.payer_cheats_while_pending {
                self.begin(
                    "stale",
                    "A's backup publishes the stale state 0 while A's signature on state 1 is for sale",
                );
                let stale = self.publish_stale(&backup, &as_id)?;
                let limit = Duration::from_secs(self.args.timeout_secs);
                wait_for("S to see the stale state", limit, || {
                    let c = self.channel(Party::S, &as_id)?;
                    Ok((c["phase"] == "ForceClosing").then_some(()))
                })?;
                self.narrator.detail(
                    "S saw U_0 confirm; it keeps its countersigned state 1 while the sale window \
                     is open",
                );
                Some(stale)
            } else {
                None
            };

            if self.args.cancel {
                self.begin(
                    "cancel",
                    "A comes back before B sells and cancels the payment",
                );
                self.start_node(Party::A)?;
                self.await_connected(Party::A, Party::S)?;
                self.narrator.detail("A reconnected to S");
                self.call(Party::A, "/v1/cancel", json!({ "payment_id": payment_id }))?;
                self.await_status(Party::S, &payment_id, "cancelled", &["selling", "sold"])?;
                self.await_status(Party::A, &payment_id, "void", &["completed"])?;
                self.await_revert(&as_id)?;
            }

            if self.args.lsp_never_pays {
                self.begin("gone", "S goes offline before B comes online");
                self.stop_node(Party::S)?;
            }
            self.begin(
                "sell",
                if self.args.cancel {
                    "B comes online, fetches the letter and invoices S, which refuses: the offer is cancelled"
                } else if self.args.lsp_never_pays {
                    "B comes online, fetches the letter and invoices S, which is not there"
                } else {
                    "B comes online, fetches the letter and sells A's signature to S"
                },
            );
            self.start_node(Party::B)?;
            if !self.args.lsp_never_pays {
                // B redials the peers it knows by itself.
                self.await_connected(Party::B, Party::S)?;
                self.narrator.detail("B reconnected to S");
            }
            let asked = self.narrator.started.elapsed();
            let fetched = match self.call(Party::B, "/v1/fetch", json!({})) {
                Ok(fetched) => fetched,
                // B died while handling the letter: the mailbox still holds it.
                Err(e) => {
                    if !self.recover_after_failed_call(Party::B)? {
                        return Err(e);
                    }
                    self.await_connected(Party::B, Party::S)?;
                    self.call(Party::B, "/v1/fetch", json!({}))?
                }
            };
            self.events.push(
                asked,
                Party::B,
                self.runs[Party::B.index()],
                json!({"event": "fetched"}),
            );
            self.narrator
                .detail(format!("B fetched {} letter(s)", fetched["letters"]));
            if let Some(report) = self.adversary.as_mut() {
                report.letters_fetched = fetched["letters"].as_u64().unwrap_or(0);
            }
            if self.args.lsp_never_pays {
                self.await_status(Party::B, &payment_id, "invoiced", &["paid", "refused"])?;
                let record = self.payment_record(Party::B, &payment_id)?;
                let expiry = record["letter"]["offer"]["terms"]["expiry"]
                    .as_u64()
                    .ok_or_else(|| anyhow!("B's record has no offer expiry: {record}"))?;
                self.narrator.detail(format!(
                    "B keeps its scalar: without a PTLC nothing can complete A's state 1; the \
                     offer expires at height {expiry}"
                ));

                self.begin(
                    "expire",
                    "the offer expires with S away; S comes back and refuses B's invoice",
                );
                let height = self.chain.height()?;
                let blocks = (expiry + 1).saturating_sub(height);
                self.mine(blocks)?;
                self.narrator.detail(format!(
                    "mined {blocks} blocks: height {} is past the expiry",
                    expiry + 1
                ));
                self.start_node(Party::S)?;
                self.await_status(Party::S, &payment_id, "cancelled", &["selling", "sold"])?;
                self.await_refusal(&payment_id, "expired")?;

                self.begin(
                    "unwind",
                    "A comes back online: its payment is void and A–S is reverted",
                );
                self.start_node(Party::A)?;
                self.await_connected(Party::A, Party::S)?;
                self.narrator.detail("A reconnected to S");
                self.await_status(Party::A, &payment_id, "void", &["completed"])?;
                self.await_revert(&as_id)?;
            } else if self.args.cancel {
                self.await_refusal(&payment_id, "cancelled")?;
            } else {
                self.await_status(Party::B, &payment_id, "paid", &["refused"])?;
                if self.adversary.is_some() {
                    let log =
                        std::fs::read_to_string(self.root.path().join("B.log")).unwrap_or_default();
                    let refusal = log
                        .lines()
                        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                        .find(|e| e["event"] == "letter_refused")
                        .map(|e| e["error"].as_str().unwrap_or("?").to_string());
                    let refused = refusal.is_some();
                    if let Some(report) = self.adversary.as_mut() {
                        report.refused_by_b = refused;
                        report.refusal = refusal;
                    }
                    self.narrator.detail(if refused {
                        "B refused the bogus letter and sold the genuine one"
                    } else {
                        "B handled the repeated letter once"
                    });
                }
                self.await_status(Party::S, &payment_id, "sold", &["cancelled"])?;
                if let Some(stale) = &stale {
                    let limit = Duration::from_secs(self.args.timeout_secs);
                    let over = wait_for("S's U_1 spending U_0", limit, || {
                        spender(&self.chain, stale.txid)
                    })?;
                    self.chain_event(Party::S, "U_1 spends U_0".into());
                    self.narrator.detail(format!(
                        "S completed U_1 with the scalar and published it over U_0 at once: {} \
                         (in the mempool)",
                        over.compute_txid()
                    ));
                }

                self.begin("receipt", "A comes back online and receives its receipt");
                self.start_node(Party::A)?;
                self.await_connected(Party::A, Party::S)?;
                self.narrator.detail("A reconnected to S");
                self.await_status(Party::A, &payment_id, "completed", &["void"])?;
            }
            (payment_id, fee, Some((backup, stale)))
        };
        let after = balances_of(self)?;
        self.narrator.detail(describe(&after));
        let mut status = json!({
            "payer": self.payment_status(Party::A, &payment_id)?,
            "lsp": self.payment_status(Party::S, &payment_id)?,
            "payee": self.payment_status(Party::B, &payment_id)?,
        });
        if self.args.reverse {
            status["variant"] = json!("payee offline");
        }
        if routed {
            status["router"] = json!(self.payment_status(Party::P, &payment_id)?);
        }

        self.in_payment = false;
        if let Some(c) = &self.crash {
            match &c.fired_in {
                Some(step) => self.narrator.detail(format!(
                    "{} died at {} in step {step}, restarted, and the payment completed",
                    c.party, c.point
                )),
                None => self.narrator.detail(format!(
                    "{} never reached {}: nothing was killed",
                    c.party, c.point
                )),
            }
        }

        // B's latest state of its LSP channel reached its watchtower before B leaves.
        let b_channel = payee_side
            .last()
            .map(|(_, id, _, _, _)| id.clone())
            .context("B has a channel")?;
        let b_state = self.channel(Party::B, &b_channel)?["state"].as_u64();
        let timeout = Duration::from_secs(self.args.timeout_secs);
        let tower_state = wait_for("B's watchtower to hold B's latest state", timeout, || {
            Ok(self
                .tower_state(Party::B, &b_channel)
                .filter(|s| Some(*s) == b_state)
                .map(Some))
        })
        .unwrap_or_else(|_| self.tower_state(Party::B, &b_channel));
        self.narrator.detail(format!(
            "B's watchtower holds state {} of B's channel",
            tower_state.map_or("none".into(), |s| s.to_string())
        ));

        self.begin("offline", "A and B go offline; S stays online");
        self.stop_node(Party::A)?;
        self.stop_node(Party::B)?;
        if routed {
            self.stop_node(Party::P)?;
        }

        let enforcement = match (&backup, self.args.no_epilogue) {
            (Some((backup, Some(stale))), false) => {
                Some(self.override_and_settle(stale, backup, &as_id, after[0], after[1])?)
            }
            (Some((backup, None)), false) => {
                Some(self.epilogue(backup, &as_id, after[0], after[1])?)
            }
            _ => None,
        };

        self.begin("stop", "stop S");
        self.stop_node(Party::S)?;
        self.narrator.end();

        let mut rows = vec![("A–S", as_id.clone(), "A"), ("A–S", as_id.clone(), "S")];
        for (label, id, _, opener, acceptor) in &payee_side {
            rows.push((label, id.clone(), opener.name()));
            rows.push((label, id.clone(), acceptor.name()));
        }
        let balances: Vec<Balance> = rows
            .iter()
            .zip(before.iter().zip(after.iter()))
            .map(|((channel, id, party), (b, a))| Balance {
                channel,
                channel_id: id.to_string(),
                party,
                before_sat: *b,
                after_sat: *a,
                change_sat: *a as i64 - *b as i64,
            })
            .collect();
        // With --cancel nothing moves anywhere.
        let moved = !self.unwound();
        let paid = if moved { (amount + fee) as i64 } else { 0 };
        // What crosses each payee-side channel: the router's fee too on S–P.
        let router_fee = asyncpay::node::core::DEFAULT_ROUTER_POLICY.fee_sat;
        let crossing = |i: usize| -> i64 {
            if !moved {
                0
            } else if routed && i == 0 {
                (amount + router_fee) as i64
            } else {
                amount as i64
            }
        };
        let (payer_done, lsp_done, payee_done) = if self.args.reverse {
            ("bought", "bought", "paid")
        } else if self.unwound() {
            ("void", "cancelled", "refused")
        } else {
            ("completed", "sold", "paid")
        };
        let mut checks = vec![
            check("payer status", json!(payer_done), status["payer"].clone()),
            check("lsp status", json!(lsp_done), status["lsp"].clone()),
            check("payee status", json!(payee_done), status["payee"].clone()),
            check(
                "A's change in A–S",
                json!(-paid),
                json!(balances[0].change_sat),
            ),
            check(
                "S's change in A–S",
                json!(paid),
                json!(balances[1].change_sat),
            ),
            check(
                "A–S capacity conserved",
                json!(AS_CAPACITY_SAT),
                json!(after[0] + after[1]),
            ),
        ];
        for (i, (label, _, _, opener, acceptor)) in payee_side.iter().enumerate() {
            checks.push(check(
                &format!("{}'s change in {label}", opener.name()),
                json!(-crossing(i)),
                json!(balances[2 + 2 * i].change_sat),
            ));
            checks.push(check(
                &format!("{}'s change in {label}", acceptor.name()),
                json!(crossing(i)),
                json!(balances[3 + 2 * i].change_sat),
            ));
            checks.push(check(
                &format!("{label} capacity conserved"),
                json!(SB_CAPACITY_SAT),
                json!(after[2 + 2 * i] + after[3 + 2 * i]),
            ));
        }
        checks.push(check(
            "B's watchtower holds B's latest state",
            json!(b_state),
            json!(tower_state),
        ));
        if routed {
            checks.push(check(
                "router status",
                json!("settled"),
                status["router"].clone(),
            ));
        }
        if let Some(e) = &enforcement {
            let latest = self.latest_state();
            checks.push(check(
                "S raised its feerate after miners passed over its first package",
                json!(true),
                json!(e.bumped_sat_vb[1] > e.bumped_sat_vb[0]),
            ));
            checks.push(check(
                &format!("stale U_0 confirmed, then overridden by U_{latest}"),
                json!([0, latest]),
                json!([e.stale_state, e.override_state]),
            ));
            checks.push(check(
                &format!("settlement pays A its state-{latest} balance"),
                json!(after[0]),
                json!(e.settled_to_a),
            ));
            checks.push(check(
                &format!("settlement pays S its state-{latest} balance"),
                json!(after[1]),
                json!(e.settled_to_s),
            ));
        }
        let ok = checks.iter().all(|c| c.ok);
        let keys: Vec<Value> = self
            .nodes
            .iter()
            .filter(|n| !n.key.is_empty())
            .map(|n| json!({"name": n.party.name(), "role": n.party.role(), "node_key": n.key}))
            .collect();
        let mut channels = vec![
            json!({"name": "A–S", "channel_id": as_id, "opener": "A", "capacity_sat": AS_CAPACITY_SAT, "funding_txid": as_txid.to_string()}),
        ];
        for (label, id, txid, opener, _) in &payee_side {
            channels.push(json!({"name": label, "channel_id": id, "opener": opener.name(), "capacity_sat": SB_CAPACITY_SAT, "funding_txid": txid.to_string()}));
        }
        let messages = self.messages();
        let mermaid = mermaid(&self.narrator.steps, &messages);
        let svg = sequence_svg(&self.narrator.steps, &messages);
        Ok(Transcript {
            version: TRANSCRIPT_VERSION,
            ok,
            amount_sat: amount,
            fee_sat: fee,
            payment_id,
            status,
            nodes: keys,
            channels,
            balances,
            txids: self.txids.clone(),
            steps: self.narrator.steps.clone(),
            messages,
            mermaid,
            svg,
            enforcement,
            crash: self.crash.clone(),
            adversary: self.adversary.clone(),
            checks,
            processes: self
                .children
                .started
                .iter()
                .map(|(name, pid)| json!({"name": name, "pid": pid}))
                .collect(),
            total_ms: self.narrator.started.elapsed().as_millis() as u64,
            data_dir: self.root.path().display().to_string(),
            kept: false,
        })
    }

    /// Whether the payment is undone before a sale (`--cancel`, `--lsp-never-pays`).
    fn unwound(&self) -> bool {
        self.args.cancel || self.args.lsp_never_pays
    }

    /// A–S's latest state after the payment: 1 (the sold state), or 2 when it was undone (the
    /// revert to state 0's balances).
    fn latest_state(&self) -> u32 {
        if self.unwound() {
            2
        } else {
            1
        }
    }

    /// The on-chain epilogue: A, restored from its backup, publishes state 0; S, online,
    /// overrides it with its latest state; that state's settlement confirms after the delay.
    fn epilogue(
        &mut self,
        backup: &Backup,
        channel_id: &str,
        to_a: u64,
        to_s: u64,
    ) -> anyhow::Result<Enforcement> {
        self.begin(
            "stale",
            "A restores the backup it took when it went offline and publishes the stale state 0",
        );
        let away = self.args.lsp_restarts_after_cheat;
        if away {
            self.stop_node(Party::S)?;
        }
        let stale = self.publish_stale(backup, channel_id)?;
        if away {
            // Two more blocks pass with S away, well inside the shared delay.
            self.chain.mine(2)?;
            self.chain.wait_for_electrs_tip()?;
            self.start_node(Party::S)?;
            self.narrator.detail(
                "S was offline while U_0 confirmed; it restarts and watches its channels again \
                 from its store",
            );
        }
        self.override_and_settle(&stale, backup, channel_id, to_a, to_s)
    }

    /// A's backup publishes its state (0) with a CPFP child through `submitpackage`, and it
    /// confirms.
    fn publish_stale(&mut self, backup: &Backup, channel_id: &str) -> anyhow::Result<Stale> {
        let height = u32::try_from(self.chain.height()?)?;
        let stale = backup.force_close(channel_id, height)?;
        let stale_txid = stale.compute_txid();
        let stale_state = stale.lock_time.to_consensus_u32() - STATE_LOCKTIME_BASE;
        let child = self.fee_child(&stale)?;
        let answer = self.chain.submit_package(&[stale.clone(), child])?;
        if answer["package_msg"] != "success" {
            bail!("submitpackage refused A's stale update: {answer}");
        }
        self.chain_event(
            Party::A,
            format!("U_{stale_state} (stale, restored from backup)"),
        );
        let at = self.chain.confirm(&stale_txid)?;
        self.chain.wait_for_electrs_tip()?;
        self.narrator.detail(format!(
            "U_{stale_state} {stale_txid} (nLockTime TL({stale_state})) with a CPFP child \
             through submitpackage; confirmed at height {at}"
        ));
        self.txids.push(TxRecord {
            what: format!("A's stale update U_{stale_state}"),
            txid: stale_txid.to_string(),
            confirmed_at: Some(at),
        });
        Ok(Stale {
            txid: stale_txid,
            state: stale_state,
        })
    }

    /// S's node answers the stale update with its latest state and settles that state
    /// after the shared delay; the settlement confirms.
    fn override_and_settle(
        &mut self,
        stale: &Stale,
        backup: &Backup,
        channel_id: &str,
        to_a: u64,
        to_s: u64,
    ) -> anyhow::Result<Enforcement> {
        let wait = Duration::from_secs(self.args.timeout_secs);
        let (stale_txid, stale_state) = (stale.txid, stale.state);

        let latest = self.latest_state();
        let published_at_sale = self.args.payer_cheats_while_pending;
        self.begin(
            "override",
            if published_at_sale {
                format!(
                    "U_{latest}, which S published over U_0 when it bought the scalar, confirms"
                )
            } else {
                format!("S sees the stale state and overrides it with U_{latest}")
            },
        );
        let over = wait_for("S's update spending the stale one", wait, || {
            spender(&self.chain, stale_txid)
        })?;
        let over_txid = over.compute_txid();
        let override_state = over.lock_time.to_consensus_u32() - STATE_LOCKTIME_BASE;
        if !published_at_sale {
            self.chain_event(
                Party::S,
                format!("U_{override_state} spends U_{stale_state}"),
            );
        }
        // A fee market: miners pass over S's first package, its child's feerate being below
        // what blocks take (simulated by `prioritisetransaction` on the child). S publishes
        // the update again at the next block with a child at a higher feerate, which replaces
        // the first one and is mined.
        let (first_child, first_rate) =
            wait_for("S's CPFP child", wait, || anchor_child(&self.chain, &over))?;
        self.chain.rpc::<bool>(
            "prioritisetransaction",
            &[json!(first_child.to_string()), json!(0), json!(-10_000_000)],
        )?;
        self.mine(1)?;
        if !self.chain.in_mempool(&over_txid)? {
            bail!("U_{override_state} was mined although its child was passed over");
        }
        let (_, second_rate) = wait_for("S to publish its update again, higher", wait, || {
            Ok(anchor_child(&self.chain, &over)?.filter(|(txid, _)| *txid != first_child))
        })?;
        self.narrator.detail(format!(
            "miners passed over S's package at {first_rate:.1} sat/vB for a block; S published \
             it again with a child at {second_rate:.1} sat/vB, which replaced the first"
        ));
        let at = u32::try_from(self.chain.confirm(&over_txid)?)?;
        self.chain.wait_for_electrs_tip()?;
        self.narrator.detail(format!(
            "U_{override_state} {over_txid} spends U_{stale_state}'s output; confirmed at height {at}"
        ));
        self.txids.push(TxRecord {
            what: format!("S's override U_{override_state}"),
            txid: over_txid.to_string(),
            confirmed_at: Some(u64::from(at)),
        });

        self.begin(
            "settle",
            format!("after the shared delay S publishes the settlement of state {latest}"),
        );
        // SE_n may confirm `shared_delay` blocks after U_n (BIP68); S publishes it as soon as
        // the next block can carry it.
        let delay = u64::from(backup.shared_delay(channel_id)?);
        let blocks = (u64::from(at) + delay - 1).saturating_sub(self.chain.height()?);
        self.mine(blocks)?;
        let mut mined = u32::try_from(blocks)?;
        self.narrator.detail(format!(
            "mined {blocks} blocks: the next block is {delay} after U_{override_state}'s"
        ));
        // S looks at its settlement when a block arrives; if it learnt of U_n's confirmation
        // only after the block that made SE_n final, it publishes on the next block.
        let settlement = loop {
            let quick = Duration::from_secs(3);
            match wait_for("S's settlement", quick, || spender(&self.chain, over_txid)) {
                Ok(tx) => break tx,
                Err(_) if u64::from(mined) < delay * 3 => {
                    self.mine(1)?;
                    mined += 1;
                }
                Err(e) => return Err(e),
            }
        };
        if u64::from(mined) > blocks {
            self.narrator.detail(format!(
                "S published after {} more block(s)",
                u64::from(mined) - blocks
            ));
        }
        let settle_txid = settlement.compute_txid();
        self.chain_event(Party::S, format!("SE_{override_state} (settlement)"));
        let at = self.chain.confirm(&settle_txid)?;
        let payout = |party: Party| -> anyhow::Result<u64> {
            let key = backup.payout_script(channel_id, party)?;
            Ok(settlement
                .output
                .iter()
                .filter(|o| o.script_pubkey == key)
                .map(|o| o.value.to_sat())
                .sum())
        };
        let settled_to_a = payout(Party::A)?;
        let settled_to_s = payout(Party::S)?;
        self.narrator.detail(format!(
            "SE_{override_state} {settle_txid} confirmed at height {at}: \
             A {settled_to_a} sat, S {settled_to_s} sat (state {override_state}: A {to_a}, S {to_s})"
        ));
        self.txids.push(TxRecord {
            what: format!("S's settlement SE_{override_state}"),
            txid: settle_txid.to_string(),
            confirmed_at: Some(at),
        });
        Ok(Enforcement {
            bumped_sat_vb: [first_rate, second_rate],
            stale_state,
            stale_txid: stale_txid.to_string(),
            override_state,
            override_txid: over_txid.to_string(),
            settlement_txid: settle_txid.to_string(),
            blocks_to_settlement: mined,
            shared_delay: delay,
            settled_to_a,
            settled_to_s,
        })
    }

    /// Records that `party` put a transaction on chain, for the diagram.
    fn chain_event(&self, party: Party, what: String) {
        self.events.push(
            self.narrator.started.elapsed(),
            party,
            0,
            json!({"event": "onchain", "what": what}),
        );
    }

    /// A CPFP child for `parent`'s anchor, paid from a fresh faucet coin of the demo's.
    fn fee_child(&mut self, parent: &bitcoin::Transaction) -> anyhow::Result<bitcoin::Transaction> {
        use bitcoin::hashes::Hash;
        use bitcoin::key::{Keypair, TapTweak};
        use bitcoin::secp256k1::{Message, Secp256k1};
        use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};

        let secp = Secp256k1::new();
        let keypair = Keypair::new(&secp, &mut rand::thread_rng());
        let (xonly, _) = keypair.x_only_public_key();
        let script = bitcoin::ScriptBuf::new_p2tr(&secp, xonly, None);
        let (coin, coin_out) = self.chain.fund(&script, Amount::from_sat(100_000))?;
        self.chain.confirm(&coin.txid)?;
        let (_, anchor_out) = find_anchor(parent)?;
        let fee = package_fee(parent, CHILD_VBYTES, 5);
        let mut child = cpfp_child(parent, coin, &coin_out, script, fee)?;
        let sighash = SighashCache::new(&child).taproot_key_spend_signature_hash(
            1,
            &Prevouts::All(&[anchor_out, coin_out]),
            TapSighashType::Default,
        )?;
        let tweaked = keypair.tap_tweak(&secp, None);
        let sig = secp.sign_schnorr(
            &Message::from_digest(sighash.to_byte_array()),
            &tweaked.to_keypair(),
        );
        child.input[1].witness.push(sig.as_ref());
        Ok(child)
    }

    /// The messages of the run, in order: peer messages the nodes delivered, letters posted
    /// to and fetched from the mailbox. Each belongs to the step during which it happened.
    fn messages(&self) -> Vec<Msg> {
        let name_of = |key: &Value| {
            self.nodes
                .iter()
                .find(|n| !n.key.is_empty() && json!(n.key) == *key)
                .map_or("?", |n| n.party.name())
        };
        let steps = &self.narrator.steps;
        self.events
            .all()
            .into_iter()
            .filter_map(|seen| {
                let e = &seen.event;
                let from = seen.party.name();
                let (from, to, what) = match e["event"].as_str()? {
                    "send" if e["delivered"] == true => (
                        from,
                        name_of(&e["to"]),
                        e["message"].as_str().unwrap_or("?").to_string(),
                    ),
                    "letter_posted" => {
                        let to = if e["to"].is_null() {
                            "B"
                        } else {
                            name_of(&e["to"])
                        };
                        (from, "mailbox", format!("letter (age-encrypted to {to})"))
                    }
                    "fetched" => ("mailbox", from, "letter".into()),
                    "onchain" => (from, "chain", e["what"].as_str().unwrap_or("?").into()),
                    _ => return None,
                };
                let at_ms = seen.at.as_secs_f64() * 1000.0;
                let at_us = seen.at.as_micros() as u64;
                let step = steps
                    .iter()
                    .rev()
                    .find(|s| s.started_us <= at_us)
                    .map_or(0, |s| s.n);
                Some(Msg {
                    step,
                    at_ms: (at_ms * 1000.0).round() / 1000.0,
                    from: from.to_string(),
                    to: to.to_string(),
                    what,
                })
            })
            .collect()
    }

    /// `from` dials `to`'s peer address; `to` is first told to accept `from` (a node
    /// refuses peers it does not know).
    fn connect(&mut self, from: Party, to: Party) -> anyhow::Result<()> {
        let addr = self
            .node(to)
            .running
            .as_ref()
            .map(|(f, _)| f.peer_addr.clone())
            .ok_or_else(|| anyhow!("{} is not running", to.name()))?;
        self.call(to, "/v1/connect", json!({"node_key": self.node(from).key}))?;
        self.call(
            from,
            "/v1/connect",
            json!({"node_key": self.node(to).key, "addr": addr}),
        )?;
        self.await_connected(from, to)?;
        self.await_connected(to, from)?;
        self.narrator.detail(format!(
            "{} connected to {} at {addr} (Noise XX, both node keys checked)",
            from.name(),
            to.name()
        ));
        Ok(())
    }
}

/// The letter of payment `payment_id` as A stored it (signature included), read from the
/// `node.db` in A's data directory `dir`.
fn stored_letter(dir: &std::path::Path, payment_id: &str) -> anyhow::Result<Value> {
    let store = asyncpay::node::store::Store::open(&dir.join("node.db"))?;
    let records: Vec<(asyncpay::protocol::payment::PaymentId, Value)> = store.payments()?;
    records
        .into_iter()
        .find(|(id, _)| id.to_string() == payment_id)
        .map(|(_, record)| record["status"]["letter"].clone())
        .filter(|letter| !letter.is_null())
        .ok_or_else(|| anyhow!("A's store holds no letter for payment {payment_id}"))
}

/// A channel transaction in the mempool that spends an output of `parent`: a version-3
/// transaction with a state number as nLockTime (an update) or a settlement.
fn spender(chain: &Regtest, parent: Txid) -> anyhow::Result<Option<bitcoin::Transaction>> {
    let pool: Vec<Txid> = chain.rpc("getrawmempool", &[])?;
    for txid in pool {
        let tx = chain.transaction(&txid)?;
        let spends_parent = tx.input.iter().any(|i| i.previous_output.txid == parent);
        let is_anchor_child = tx
            .input
            .iter()
            .any(|i| i.witness.is_empty() && i.previous_output.txid == parent);
        if spends_parent && !is_anchor_child && tx.version.0 == 3 {
            return Ok(Some(tx));
        }
    }
    Ok(None)
}

/// The mempool child spending `parent`'s anchor, and the package feerate it gives (sat/vB).
fn anchor_child(
    chain: &Regtest,
    parent: &bitcoin::Transaction,
) -> anyhow::Result<Option<(Txid, f64)>> {
    let Some(vout) = parent
        .output
        .iter()
        .position(|o| o.script_pubkey == bitcoin::ScriptBuf::new_p2a())
    else {
        bail!("{} has no anchor", parent.compute_txid());
    };
    let txid = parent.compute_txid();
    let spending: Value = chain.rpc(
        "gettxspendingprevout",
        &[json!([{"txid": txid.to_string(), "vout": vout}])],
    )?;
    let Some(child) = spending[0]["spendingtxid"].as_str() else {
        return Ok(None);
    };
    let entry: Value = chain.rpc("getmempoolentry", &[json!(child)])?;
    let fee_btc = entry["fees"]["base"].as_f64().unwrap_or(0.0);
    let vsize = entry["vsize"].as_f64().unwrap_or(0.0) + parent.vsize() as f64;
    Ok(Some((
        child.parse()?,
        (fee_btc * 1e8 / vsize * 10.0).round() / 10.0,
    )))
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

impl Backup {
    /// Reads a stopped node's seed and channels.
    fn take(dir: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(dir.join("seed")).context("A's seed")?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed).context("A's seed is not 32 hex bytes")?;
        let channels = Store::open(&dir.join("node.db"))?.channels()?;
        Ok(Self { seed, channels })
    }

    fn snapshot(&self, channel_id: &str) -> anyhow::Result<&Snapshot> {
        self.channels
            .iter()
            .map(|(_, s)| s)
            .find(|s| hex::encode(s.channel_id.0) == channel_id)
            .ok_or_else(|| anyhow!("the backup has no channel {channel_id}"))
    }

    /// The channel's shared delay (blocks from an update confirming to its settlement).
    fn shared_delay(&self, channel_id: &str) -> anyhow::Result<u16> {
        self.snapshot(channel_id)?
            .params
            .as_ref()
            .map(|p| p.shared_delay)
            .ok_or_else(|| anyhow!("the backup has no channel parameters"))
    }

    /// The latest complete state in the backup.
    fn state(&self, channel_id: &str) -> Option<u64> {
        self.snapshot(channel_id)
            .ok()?
            .complete
            .as_ref()
            .map(|c| c.body.number)
    }

    /// The update transaction the backed-up node publishes when told to force-close.
    fn force_close(&self, channel_id: &str, height: u32) -> anyhow::Result<bitcoin::Transaction> {
        let mut core = NodeCore::restore(
            self.seed,
            height,
            self.channels.clone(),
            Records::Payer(Vec::new()),
        )?;
        let id = self.snapshot(channel_id)?.channel_id;
        let outputs = core.handle(NodeInput::Command(NodeCommand::ForceClose {
            channel_id: id,
        }))?;
        outputs
            .into_iter()
            .find_map(|o| match o {
                NodeOutput::Broadcast(tx) => Some(tx),
                _ => None,
            })
            .ok_or_else(|| anyhow!("the restored node published nothing"))
    }

    /// The settlement output script of `party` in the channel.
    fn payout_script(&self, channel_id: &str, party: Party) -> anyhow::Result<bitcoin::ScriptBuf> {
        let snapshot = self.snapshot(channel_id)?;
        let params = snapshot
            .params
            .as_ref()
            .ok_or_else(|| anyhow!("the backup has no channel parameters"))?;
        let key = match party {
            Party::A => params.payout_a,
            Party::S => params.payout_s,
            Party::B | Party::P => bail!("{} has no output in A–S", party.name()),
        };
        Ok(bitcoin::ScriptBuf::new_p2tr(
            &bitcoin::secp256k1::Secp256k1::verification_only(),
            bitcoin::XOnlyPublicKey::from(key),
            None,
        ))
    }
}

/// Prints the refusals and errors the processes logged, so that a failed run says why.
fn report_problems(dir: &Path) {
    for name in ["A", "S", "B", "P", "mailbox"] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                l.contains("refused") || l.contains("error") || l.contains("panicked")
            })
            .collect();
        if lines.is_empty() {
            continue;
        }
        eprintln!("{name} reported:");
        for line in &lines[lines.len().saturating_sub(5)..] {
            eprintln!("    {line}");
        }
    }
}

fn check(what: &str, expected: Value, actual: Value) -> Check {
    Check {
        what: what.to_string(),
        ok: expected == actual,
        expected,
        actual,
    }
}

/// One JSON line a node printed on stdout, stamped with the time it reached the demo.
#[derive(Debug, Clone)]
struct Seen {
    at: Duration,
    party: Party,
    run: u32,
    event: Value,
}

/// The nodes' stdout events, in order of arrival. Nodes print a line right after they act
/// (for a message: right after handing it to the connection), so the order of arrival across
/// processes is the order of the messages.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Seen>>>);

impl Events {
    /// Copies every line of `stdout` to `log` and records its JSON events, on a thread.
    fn follow(&self, stdout: ChildStdout, mut log: File, party: Party, run: u32, t0: Instant) {
        let events = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let at = t0.elapsed();
                let _ = writeln!(log, "{line}");
                if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    if event.is_object() {
                        events.push(at, party, run, event);
                    }
                }
            }
        });
    }

    fn push(&self, at: Duration, party: Party, run: u32, event: Value) {
        let mut all = self.0.lock().expect("events lock");
        let index = all.partition_point(|e| e.at <= at);
        all.insert(
            index,
            Seen {
                at,
                party,
                run,
                event,
            },
        );
    }

    fn any(&self, party: Party, run: u32, matches: impl Fn(&Value) -> bool) -> bool {
        self.0
            .lock()
            .expect("events lock")
            .iter()
            .any(|e| e.party == party && e.run == run && matches(&e.event))
    }

    fn all(&self) -> Vec<Seen> {
        self.0.lock().expect("events lock").clone()
    }
}

/// The participants of the sequence diagram, left to right: (name in the messages, label).
pub(crate) const PARTICIPANTS: [(&str, &str); 5] = [
    ("A", "A (payer)"),
    ("S", "S (LSP)"),
    ("mailbox", "mailbox"),
    ("B", "B (payee)"),
    ("chain", "regtest chain"),
];

/// The steps that have messages, each with its messages in order: what the sequence diagram
/// shows, one note per step.
pub(crate) fn diagram_steps<'a>(
    steps: &'a [Step],
    messages: &'a [Msg],
) -> Vec<(&'a Step, Vec<&'a Msg>)> {
    steps
        .iter()
        .filter_map(|step| {
            let msgs: Vec<&Msg> = messages.iter().filter(|m| m.step == step.n).collect();
            (!msgs.is_empty()).then_some((step, msgs))
        })
        .collect()
}

/// The mermaid sequence diagram of the messages, one note per step.
pub(crate) fn mermaid(steps: &[Step], messages: &[Msg]) -> String {
    let mut out = String::from("sequenceDiagram\n");
    for (name, label) in PARTICIPANTS {
        out.push_str(&format!("    participant {name} as {label}\n"));
    }
    let (first, last) = (PARTICIPANTS[0].0, PARTICIPANTS[PARTICIPANTS.len() - 1].0);
    for (step, msgs) in diagram_steps(steps, messages) {
        out.push_str(&format!(
            "    Note over {first},{last}: {}. {}\n",
            step.n,
            step.title.replace(';', ",")
        ));
        for m in msgs {
            out.push_str(&format!(
                "    {}->>{}: {}\n",
                m.from,
                m.to,
                m.what.replace(';', ",")
            ));
        }
    }
    out
}

fn print_summary(t: &Transcript) {
    let mut out = std::io::stdout().lock();
    let outcome = if t.status["lsp"] == "cancelled" {
        format!(
            "A's payment of {} sat to B was cancelled before a sale: nothing moved",
            t.amount_sat
        )
    } else {
        format!(
            "A paid B {} sat through S (fee {} sat)",
            t.amount_sat, t.fee_sat
        )
    };
    let _ = writeln!(out, "\n{outcome}; payment {}\n", t.payment_id);
    let _ = writeln!(
        out,
        "| channel | party | before (sat) | after (sat) | change |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|");
    for b in &t.balances {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:+} |",
            b.channel, b.party, b.before_sat, b.after_sat, b.change_sat
        );
    }
    let _ = writeln!(out, "\n| transaction | txid | confirmed at |");
    let _ = writeln!(out, "|---|---|---:|");
    for tx in &t.txids {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            tx.what,
            tx.txid,
            tx.confirmed_at
                .map(|h| h.to_string())
                .unwrap_or_else(|| "-".into())
        );
    }
    let _ = writeln!(out, "\n| step | what | took (ms) |");
    let _ = writeln!(out, "|---:|---|---:|");
    for s in &t.steps {
        let _ = writeln!(out, "| {} | {} | {} |", s.n, s.title, s.duration_ms);
    }
    let _ = writeln!(out, "\n| check | expected | actual | |");
    let _ = writeln!(out, "|---|---|---|---|");
    for c in &t.checks {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            c.what,
            c.expected,
            c.actual,
            if c.ok { "ok" } else { "FAILED" }
        );
    }
    let _ = writeln!(out, "\ntotal {:.1} s\n", t.total_ms as f64 / 1000.0);
    let _ = writeln!(out, "```mermaid\n{}```", t.mermaid);
}
