//! `asyncpay node run`: one node as a process, and `asyncpay ctl`, its control client.
//!
//! The process owns a data directory (0700): `seed`, `node.db` (channels, payments, peers;
//! it holds withheld signatures and PTLC secrets), `wallet.sqlite` (a BDK wallet synced over
//! electrs), and, once it is ready, `node.json` (node key, peer and control addresses) and
//! `control.token`, every file 0600 (SQLite's WAL and SHM files too). Control answers show
//! payments through `asyncpay::node::views`, never the stored records. One task owns the node core
//! and carries out its outputs in order, storing each persist durably before anything that
//! follows; peer connections, the control server and the chain poller feed it events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use asyncpay::chain::wallet::{Wallet, WalletSeed};

use crate::chain_io::Rpc;
use crate::files::{load_seed, private_dir, private_file, write_private};
use asyncpay::crypto::keys::PublicKey;
use asyncpay::mailbox::client::MailboxClient;
use asyncpay::mailbox::keys::{Contact, NodeKey};
use asyncpay::mailbox::tagged_hash;
use asyncpay::net::{connect, Admission, Allow, ConnectionWriter, Listener, NetError, Superseded};
use asyncpay::node::core::{
    node_key, NodeCommand, NodeCore, NodeInput, NodeOutput, Records, Role, DEFAULT_ROUTER_POLICY,
};
use asyncpay::node::store::Store;
use asyncpay::protocol::channel::Snapshot;
use asyncpay::protocol::messages::ChannelId;
use asyncpay::protocol::payment::{LspPolicy, PayerStatus, PaymentId};
use asyncpay::tx::Party;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use bdk_electrum::electrum_client::{self, ElectrumApi};
use bitcoin::{Amount, FeeRate, OutPoint, Transaction, Txid};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

/// Node subcommands.
#[derive(clap::Subcommand)]
pub enum NodeCmd {
    /// Run a node in the foreground until `asyncpay ctl ... stop` or a signal.
    Run(RunArgs),
}

/// `asyncpay node run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The payment role this node plays.
    #[arg(long, value_enum)]
    role: Role,
    /// Data directory (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// Electrum server of the chain (electrs), e.g. tcp://127.0.0.1:50001.
    #[arg(long)]
    electrum: String,
    /// Base URL of the mailbox server.
    #[arg(long)]
    mailbox: String,
    /// bitcoind RPC URL: used to submit fee-less channel transactions with a CPFP child
    /// (`submitpackage` has no Electrum equivalent).
    #[arg(long)]
    rpc_url: Option<String>,
    /// bitcoind RPC cookie file.
    #[arg(long)]
    rpc_cookie: Option<PathBuf>,
    /// Peer listening address.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Blocks between an update confirming and its settlement, for channels this node opens.
    /// A payer's channel needs at least the LSP's PTLC delta plus 2 (how long the LSP has to
    /// finish a sale after the payer publishes an older state); a channel that carries PTLCs
    /// to a payee needs at most half the PTLC delta (a PTLC must expire at least twice the
    /// channel's delay ahead). Default: 32 for a payer, 6 for every other role.
    #[arg(long)]
    shared_delay: Option<u16>,
    /// LSP only: blocks until the PTLC by which the LSP buys a signature expires.
    #[arg(long, default_value_t = 30)]
    ptlc_delta: u32,
    /// Fault injection: SIGKILL this process at POINT of its outputs (`send:<message>`,
    /// `post-letter` or `persist:<n>`, counted from the start); also `ctl ... crash-at`.
    #[arg(long, value_name = "POINT")]
    crash_at: Option<CrashPoint>,
    /// Peer handshakes in flight at once (more connections are closed at once).
    #[arg(long, default_value_t = 64)]
    max_handshakes: usize,
    /// Peer handshakes in flight at once from one source address.
    #[arg(long, default_value_t = 8)]
    max_handshakes_per_ip: usize,
    /// Milliseconds an accepted peer socket may stay silent before its first handshake
    /// message.
    #[arg(long, default_value_t = 2_000)]
    first_message_timeout_ms: u64,
    /// Connections one peer key may hold open to us; a newer one supersedes the oldest.
    #[arg(long, default_value_t = 2)]
    max_connections_per_peer: usize,
    /// Seconds a peer connection may bring no message before it is closed (each end sends
    /// a keepalive every third of this).
    #[arg(long, default_value_t = 90)]
    idle_timeout_secs: u64,
    /// Watchtower URL (`asyncpay watchtower serve`): each channel's latest complete state is
    /// sent there once stored, so an older state published while this node is offline is
    /// answered. Needed by a node that may stay offline longer than a channel's shared delay.
    /// Repeat the flag for several towers: any one of them that stays online protects the
    /// node.
    #[arg(long)]
    watchtower: Vec<String>,
}

fn admission(args: &RunArgs) -> Admission {
    Admission {
        max_handshakes: args.max_handshakes,
        max_handshakes_per_ip: args.max_handshakes_per_ip,
        first_message_timeout: Duration::from_millis(args.first_message_timeout_ms),
        max_connections_per_peer: args.max_connections_per_peer,
    }
}

/// First wait before redialling a peer; it doubles after each failure up to
/// [`MAX_REDIAL`].
const MIN_REDIAL: Duration = Duration::from_millis(300);
/// Longest wait between two dials of one peer.
const MAX_REDIAL: Duration = Duration::from_secs(60);
/// A connection that lived this long was healthy: the next redial starts from
/// [`MIN_REDIAL`] again.
const HEALTHY_CONNECTION: Duration = Duration::from_secs(10);

/// `asyncpay ctl`.
#[derive(clap::Args)]
pub struct CtlArgs {
    /// The node's data directory (its `node.json` and `control.token` are read).
    #[arg(long)]
    data_dir: PathBuf,
    /// info | address | connect | open | contact | pay | receive | cancel | fetch | force-close |
    /// stop |
    /// crash-at (fault injection: '{"point": "send:<message>" | "post-letter" | "persist:<n>"}'
    /// makes the node SIGKILL itself at that point of its outputs)
    command: String,
    /// JSON arguments, e.g. '{"amount_sat": 50000, ...}'.
    #[arg(default_value = "{}")]
    args: String,
}

pub async fn ctl(args: CtlArgs) -> anyhow::Result<()> {
    let value: Value = serde_json::from_str(&args.args).context("arguments must be JSON")?;
    let reply = call(&args.data_dir, &args.command, value).await?;
    println!("{}", serde_json::to_string_pretty(&reply)?);
    Ok(())
}

/// Calls a running node's control endpoint.
pub async fn call(data_dir: &Path, command: &str, args: Value) -> anyhow::Result<Value> {
    let info: Value = serde_json::from_slice(
        &std::fs::read(data_dir.join("node.json"))
            .with_context(|| format!("no running node in {}", data_dir.display()))?,
    )?;
    let token = std::fs::read_to_string(data_dir.join("control.token"))?;
    let url = info["control_url"]
        .as_str()
        .context("node.json lacks control_url")?;
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/{command}"))
        .bearer_auth(token.trim())
        .json(&args)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .with_context(|| format!("node at {url} does not answer"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "{command} failed ({status}): {}",
            body["message"].as_str().unwrap_or("no message")
        );
    }
    Ok(body)
}

enum Ev {
    Frame {
        from: PublicKey,
        frame: Vec<u8>,
    },
    Connected {
        peer: PublicKey,
        conn: u64,
        writer: mpsc::UnboundedSender<Vec<u8>>,
    },
    Disconnected {
        peer: PublicKey,
        conn: u64,
    },
    Control {
        command: String,
        args: Value,
        reply: oneshot::Sender<Result<Value, String>>,
    },
    Tick,
}

struct Node {
    core: NodeCore,
    store: Store,
    wallet: Wallet,
    mailbox_key: NodeKey,
    mailbox: MailboxClient,
    electrum: String,
    rpc: Option<Rpc>,
    writers: HashMap<PublicKey, (u64, mpsc::UnboundedSender<Vec<u8>>)>,
    /// The redial loop of each peer we dial; a new `ctl connect` replaces the old loop.
    dialers: HashMap<PublicKey, tokio::task::AbortHandle>,
    /// How long a peer connection may stay silent.
    idle: Duration,
    allow: Arc<RwLock<HashSet<PublicKey>>>,
    events: mpsc::UnboundedSender<Ev>,
    next_conn: u64,
    shared_delay: u16,
    height: u32,
    /// Watched outpoints and the spends already handed to the core: (txid, confirmed).
    watches: BTreeMap<OutPoint, HashSet<(Txid, bool)>>,
    funding: HashMap<ChannelId, Transaction>,
    stop: bool,
    node_secret: Arc<asyncpay::crypto::keys::SecretKey>,
    /// The Electrum connection, kept between polls; dropped on error and reopened.
    chain: Option<electrum_client::Client>,
    /// Fault injection (`ctl crash-at`): where to die, and the persists seen since armed.
    crash: Option<(CrashPoint, u64)>,
    /// How often each transaction was submitted: a transaction the channel publishes again
    /// (it is not confirmed yet) goes out with a child at a higher feerate each time.
    attempts: HashMap<Txid, u32>,
    /// The watchtowers' pushers, and the newest state of each channel handed to them.
    towers: (
        Vec<mpsc::UnboundedSender<Snapshot>>,
        HashMap<ChannelId, u64>,
    ),
}

/// A point in the driver's outputs where a node armed with `ctl crash-at` kills itself with
/// SIGKILL (fault injection for tests and the demo): everything before the point is stored
/// and done, nothing after it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CrashPoint {
    /// Before the frame of this message is handed to the connection.
    Send(String),
    /// Before the letter is posted to the payee's mailbox.
    PostLetter,
    /// Right after the n-th persist (1-based) since the point was armed.
    Persist(u64),
}

impl std::str::FromStr for CrashPoint {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.split_once(':') {
            Some(("send", what)) if !what.is_empty() => Ok(CrashPoint::Send(what.to_owned())),
            Some(("persist", n)) => match n.parse::<u64>() {
                Ok(n) if n > 0 => Ok(CrashPoint::Persist(n)),
                _ => bail!("persist:<n> needs a count from 1, got {n:?}"),
            },
            None if s == "post-letter" => Ok(CrashPoint::PostLetter),
            _ => bail!("unknown crash point {s:?}: send:<message> | post-letter | persist:<n>"),
        }
    }
}

impl std::fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CrashPoint::Send(what) => write!(f, "send:{what}"),
            CrashPoint::PostLetter => f.write_str("post-letter"),
            CrashPoint::Persist(n) => write!(f, "persist:{n}"),
        }
    }
}

fn lsp_policy(ptlc_delta: u32) -> LspPolicy {
    LspPolicy {
        fee_base_sat: 100,
        fee_ppm: 1_000,
        offer_lifetime: 1_008,
        ptlc_delta,
    }
}

pub async fn run(cmd: NodeCmd) -> anyhow::Result<()> {
    let NodeCmd::Run(args) = cmd;
    private_dir(&args.data_dir)?;
    let seed = load_seed(&args.data_dir)?;
    // The stores hold withheld signatures, PTLC secrets and the wallet: created 0600 before
    // SQLite opens them (SQLite gives its WAL and SHM files the database file's mode).
    private_file(&args.data_dir.join("node.db"))?;
    private_file(&args.data_dir.join("wallet.sqlite"))?;
    let store = Store::open(&args.data_dir.join("node.db"))?;
    let records = match args.role {
        Role::Payer => Records::Payer(store.payments()?),
        Role::Lsp => Records::Lsp(lsp_policy(args.ptlc_delta), store.payments()?),
        Role::Payee => Records::Payee(store.payments()?),
        Role::Router => Records::Router(DEFAULT_ROUTER_POLICY, store.payments()?),
    };
    let wallet_seed = WalletSeed::from_bytes(tagged_hash("asyncpay/node/v1/wallet", &[&seed]));
    let mut wallet = tokio::task::block_in_place(|| -> anyhow::Result<Wallet> {
        let mut w = Wallet::create_or_load(
            args.data_dir.join("wallet.sqlite"),
            &wallet_seed,
            bitcoin::Network::Regtest,
        )?;
        w.sync(&args.electrum)?;
        Ok(w)
    })?;
    let height = wallet.tip_height();
    let mut core = NodeCore::restore(seed, height, store.channels()?, records)?;
    core.restore_reverse(store.reverse_payments()?);
    let node_secret = Arc::new(node_key(&seed));
    let mailbox_key = NodeKey::from_secret_bytes(node_secret.to_secret_bytes())
        .map_err(|e| anyhow!("mailbox key: {e:?}"))?;
    let rpc = match (&args.rpc_url, &args.rpc_cookie) {
        (Some(url), Some(cookie)) => Some(Rpc {
            url: url.clone(),
            cookie: cookie.clone(),
        }),
        (None, None) => None,
        _ => bail!("--rpc-url and --rpc-cookie go together"),
    };
    let _ = &mut wallet;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let known: HashSet<PublicKey> = store.peers()?.into_iter().map(|(k, _)| k).collect();
    let allow = Arc::new(RwLock::new(known));
    let allow_fn = {
        let allow = allow.clone();
        Allow::from_fn(move |k| allow.read().map(|s| s.contains(k)).unwrap_or(false))
    };
    // Peers that dial us keep our address: a restarted node listens where it did before,
    // unless told otherwise.
    let addr_file = args.data_dir.join("peer.addr");
    let listen = match std::fs::read_to_string(&addr_file) {
        Ok(text) if args.listen.port() == 0 => text.trim().parse().unwrap_or(args.listen),
        _ => args.listen,
    };
    let listener = Listener::bind(listen, node_secret.clone(), allow_fn).await?;
    let peer_addr = listener.local_addr()?;
    write_private(&addr_file, peer_addr.to_string().as_bytes())?;

    let core_watches: BTreeMap<OutPoint, HashSet<(Txid, bool)>> = core
        .watched()
        .into_iter()
        .map(|o| (o, HashSet::new()))
        .collect();
    let mut node = Node {
        core,
        store,
        wallet,
        mailbox_key,
        mailbox: MailboxClient::new(&args.mailbox)?,
        electrum: args.electrum.clone(),
        rpc,
        writers: HashMap::new(),
        dialers: HashMap::new(),
        idle: Duration::from_secs(args.idle_timeout_secs.max(1)),
        allow,
        events: tx.clone(),
        next_conn: 0,
        shared_delay: args.shared_delay.unwrap_or(match args.role {
            Role::Payer => 32,
            _ => 6,
        }),
        height,
        // The watches announced before a restart are rebuilt from the channels; without them
        // a restarted node would miss a stale state published while it was away.
        watches: core_watches,
        funding: HashMap::new(),
        stop: false,
        node_secret,
        chain: None,
        crash: args.crash_at.clone().map(|p| (p, 0)),
        attempts: HashMap::new(),
        towers: (
            args.watchtower
                .iter()
                .map(|url| spawn_tower_pusher(url, seed))
                .collect::<anyhow::Result<_>>()?,
            HashMap::new(),
        ),
    };

    // Accept peers: every handshake runs in its own task, within the caps of `Admission`
    // (a silent socket cannot hold the door for anyone else).
    {
        let tx = tx.clone();
        let mut admissions = listener.serve(admission(&args));
        let idle = Duration::from_secs(args.idle_timeout_secs.max(1));
        tokio::spawn(async move {
            while let Some(admitted) = admissions.next().await {
                let _ = tx.send(Ev::Tick);
                spawn_connection(
                    admitted.connection,
                    tx.clone(),
                    None,
                    Some(admitted.superseded),
                    idle,
                );
            }
        });
    }
    // Dial known peers.
    for (key, addr) in node.store.peers()? {
        if let Some(addr) = addr {
            node.dial(key, addr, None);
        }
    }
    // Control server.
    let token = hex::encode(rand::random::<[u8; 16]>());
    write_private(&args.data_dir.join("control.token"), token.as_bytes())?;
    let control = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let control_addr = control.local_addr()?;
    let app = Router::new()
        .route("/v1/{command}", post(control_handler))
        .with_state(ControlState {
            token: Arc::new(token),
            events: tx.clone(),
        });
    // The server shuts down gracefully after the event loop ends, so the answer to `stop`
    // (and to any other request in flight) reaches its caller before the process exits.
    let (control_stop, control_stopped) = oneshot::channel::<()>();
    // Loopback only, but a local process could still hold connections open: the same
    // header, body and connection limits as the mailbox server.
    let control_limits = asyncpay::net::http::HttpLimits {
        max_connections: 64,
        max_connections_per_ip: 64,
        ..Default::default()
    };
    let control_server = tokio::spawn(asyncpay::net::http::serve(
        control,
        app,
        control_limits,
        async {
            let _ = control_stopped.await;
        },
    ));
    // Chain poller.
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if tx.send(Ev::Tick).is_err() {
                    return;
                }
            }
        });
    }
    let info = json!({
        "node_key": node.core.public_key().to_string(),
        "peer_addr": peer_addr.to_string(),
        "control_url": format!("http://{control_addr}"),
        "role": args.role,
        "pid": std::process::id(),
    });
    write_private(
        &args.data_dir.join("node.json"),
        info.to_string().as_bytes(),
    )?;
    println!("{}", json!({"event": "ready", "node": info}));

    let entropy: [u8; 32] = rand::random();
    let outputs = node.core.handle(NodeInput::Entropy(entropy))?;
    node.run_outputs(outputs).await?;
    let outputs = node.core.handle(NodeInput::Started)?;
    node.run_outputs(outputs).await?;
    let mut last_poll = Instant::now() - Duration::from_secs(10);
    while let Some(ev) = rx.recv().await {
        if let Err(e) = node.on_event(ev, &mut last_poll).await {
            tracing::warn!("{e:#}");
            eprintln!("{}", json!({"event": "error", "message": format!("{e:#}")}));
        }
        if node.stop {
            break;
        }
    }
    let _ = std::fs::remove_file(args.data_dir.join("node.json"));
    // Requests still queued are answered "stopping" as their reply channels drop.
    drop(rx);
    let _ = control_stop.send(());
    if tokio::time::timeout(Duration::from_secs(5), control_server)
        .await
        .is_err()
    {
        tracing::warn!("control server did not finish its answers within 5 s");
    }
    Ok(())
}

/// Runs a connection's reader and writer tasks; `done` (for a dialer that redials) fires
/// when the connection ends, `superseded` (for an accepted one) ends it when a newer
/// connection of the same key arrives.
///
/// Each end sends an empty message (a keepalive, never handed to the core) when it has sent
/// nothing for a third of `idle`; a connection that brings no complete message within `idle`
/// is closed, so a dead or stalling peer does not hold its descriptor.
fn spawn_connection(
    conn: asyncpay::net::Connection,
    tx: mpsc::UnboundedSender<Ev>,
    done: Option<oneshot::Sender<()>>,
    superseded: Option<Superseded>,
    idle: Duration,
) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let peer = conn.peer();
    let (mut reader, writer) = conn.into_split();
    let (wtx, mut wrx) = mpsc::unbounded_channel::<Vec<u8>>();
    let _ = tx.send(Ev::Connected {
        peer,
        conn: id,
        writer: wtx,
    });
    let (closed_tx, mut closed_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut writer: ConnectionWriter = writer;
        let keepalive = idle / 3;
        loop {
            let frame = tokio::select! {
                frame = wrx.recv() => match frame {
                    Some(frame) => frame,
                    None => break,
                },
                _ = tokio::time::sleep(keepalive) => Vec::new(),
                _ = &mut closed_rx => break,
            };
            if writer.send(&frame).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    tokio::spawn(async move {
        let mut superseded = superseded;
        let why = loop {
            let next = tokio::select! {
                next = tokio::time::timeout(idle, reader.recv()) => next,
                _ = async {
                    match superseded.as_mut() {
                        Some(s) => s.wait().await,
                        None => std::future::pending().await,
                    }
                } => break "superseded by a newer connection of the same key".to_owned(),
            };
            match next {
                Ok(Ok(frame)) if frame.is_empty() => continue,
                Ok(Ok(frame)) => {
                    if tx.send(Ev::Frame { from: peer, frame }).is_err() {
                        return;
                    }
                }
                Ok(Err(NetError::Closed)) => break "closed by the peer".to_owned(),
                Ok(Err(e)) => break e.to_string(),
                Err(_) => break format!("idle for {idle:?}"),
            }
        };
        drop(closed_tx);
        drop(superseded);
        eprintln!(
            "{}",
            json!({"event": "disconnected", "peer": peer.to_string(), "reason": why})
        );
        let _ = tx.send(Ev::Disconnected { peer, conn: id });
        if let Some(done) = done {
            let _ = done.send(());
        }
    });
}

#[derive(Clone)]
struct ControlState {
    token: Arc<String>,
    events: mpsc::UnboundedSender<Ev>,
}

/// Largest control request body.
const MAX_CONTROL_BODY: usize = 1024 * 1024;

async fn control_handler(
    State(state): State<ControlState>,
    axum::extract::Path(command): axum::extract::Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> impl IntoResponse {
    // The token is checked before a byte of the body is read, and compared in constant time.
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| {
            use subtle::ConstantTimeEq as _;
            bool::from(t.as_bytes().ct_eq(state.token.as_bytes()))
        });
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "unauthorized", "message": "bad or missing control token"})),
        );
    }
    let args = match axum::body::to_bytes(body, MAX_CONTROL_BODY).await {
        Ok(bytes) if bytes.is_empty() => Value::Null,
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(value) => value,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": "malformed", "message": format!("arguments: {e}")})),
                )
            }
        },
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "malformed", "message": format!("body: {e}")})),
            )
        }
    };
    let (reply, answer) = oneshot::channel();
    if state
        .events
        .send(Ev::Control {
            command,
            args,
            reply,
        })
        .is_err()
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "stopping", "message": "the node is stopping"})),
        );
    }
    match answer.await {
        Ok(Ok(value)) => (StatusCode::OK, Json(value)),
        Ok(Err(message)) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "refused", "message": message})),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "stopping", "message": "the node is stopping"})),
        ),
    }
}

fn key_arg(args: &Value, name: &str) -> Result<PublicKey, String> {
    let text = args[name]
        .as_str()
        .ok_or_else(|| format!("missing \"{name}\" (hex node key)"))?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes).map_err(|e| format!("{name}: {e}"))?;
    PublicKey::from_xonly_bytes(bytes).map_err(|e| format!("{name}: {e}"))
}

fn u64_arg(args: &Value, name: &str) -> Result<u64, String> {
    args[name]
        .as_u64()
        .ok_or_else(|| format!("missing \"{name}\" (integer)"))
}

impl Node {
    /// Dials `key` at `addr` and keeps redialling whenever the connection ends or an attempt
    /// fails, waiting twice as long after each failure (from [`MIN_REDIAL`] up to
    /// [`MAX_REDIAL`]). Every failure is logged; `first` hears how the first attempt went.
    fn dial(
        &mut self,
        key: PublicKey,
        addr: String,
        first: Option<oneshot::Sender<Result<(), String>>>,
    ) {
        let tx = self.events.clone();
        let secret = self.node_secret.clone();
        let idle = self.idle;
        let task = tokio::spawn(async move {
            let mut first = first;
            let mut backoff = MIN_REDIAL;
            loop {
                match connect(addr.as_str(), &secret, key).await {
                    Ok(conn) => {
                        if let Some(first) = first.take() {
                            let _ = first.send(Ok(()));
                        }
                        let started = Instant::now();
                        let (done_tx, done_rx) = oneshot::channel::<()>();
                        spawn_connection(conn, tx.clone(), Some(done_tx), None, idle);
                        let _ = done_rx.await;
                        if started.elapsed() >= HEALTHY_CONNECTION {
                            backoff = MIN_REDIAL;
                        }
                    }
                    Err(e) => {
                        eprintln!(
                            "{}",
                            json!({
                                "event": "dial_failed",
                                "peer": key.to_string(),
                                "addr": addr,
                                "refused": matches!(e, NetError::Refused),
                                "error": e.to_string(),
                                "retry_in_ms": backoff.as_millis() as u64,
                            })
                        );
                        if let Some(first) = first.take() {
                            let _ = first.send(Err(format!("dialling {key} at {addr}: {e}")));
                        }
                    }
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_REDIAL);
            }
        });
        if let Some(old) = self.dialers.insert(key, task.abort_handle()) {
            old.abort();
        }
    }

    /// `ctl connect`: admits `node_key` and, given an `addr`, dials it; the answer waits for
    /// the first attempt, so a node that refuses our key is reported (the redial goes on).
    fn connect_command(&mut self, args: Value, reply: oneshot::Sender<Result<Value, String>>) {
        let result = (|| -> anyhow::Result<(PublicKey, Option<String>)> {
            let key = key_arg(&args, "node_key").map_err(|e| anyhow!(e))?;
            let addr = args["addr"].as_str().map(str::to_owned);
            self.store.put_peer(&key, addr.as_deref())?;
            self.allow.write().expect("not poisoned").insert(key);
            Ok((key, addr))
        })();
        match result {
            Err(e) => {
                let _ = reply.send(Err(format!("{e:#}")));
            }
            Ok((_, None)) => {
                let _ = reply.send(Ok(json!({})));
            }
            Ok((key, Some(addr))) => {
                let (first_tx, first_rx) = oneshot::channel();
                self.dial(key, addr.clone(), Some(first_tx));
                tokio::spawn(async move {
                    let answer = match first_rx.await {
                        Ok(Ok(())) => Ok(json!({"connected": true})),
                        Ok(Err(reason)) => Err(reason),
                        Err(_) => Err("the node is stopping".to_owned()),
                    };
                    let _ = reply.send(answer);
                });
            }
        }
    }

    async fn on_event(&mut self, ev: Ev, last_poll: &mut Instant) -> anyhow::Result<()> {
        match ev {
            Ev::Frame { from, frame } => match self.core.handle(NodeInput::Frame { from, frame }) {
                Ok(outputs) => self.run_outputs(outputs).await?,
                Err(e) => {
                    eprintln!(
                        "{}",
                        json!({"event": "refused", "peer": from.to_string(), "error": e.to_string()})
                    )
                }
            },
            Ev::Connected { peer, conn, writer } => {
                self.next_conn = self.next_conn.max(conn);
                self.writers.insert(peer, (conn, writer));
                println!(
                    "{}",
                    json!({"event": "connected", "peer": peer.to_string()})
                );
                let outputs = self.core.handle(NodeInput::Connected { peer })?;
                self.run_outputs(outputs).await?;
            }
            Ev::Disconnected { peer, conn } => {
                if self.writers.get(&peer).is_some_and(|(c, _)| *c == conn) {
                    self.writers.remove(&peer);
                }
            }
            Ev::Control {
                command,
                args,
                reply,
            } if command == "connect" => self.connect_command(args, reply),
            Ev::Control {
                command,
                args,
                reply,
            } => {
                let result = self.control(&command, args).await;
                let _ = reply.send(result.map_err(|e| format!("{e:#}")));
            }
            Ev::Tick => {
                if last_poll.elapsed() >= Duration::from_millis(250) {
                    *last_poll = Instant::now();
                    self.poll_chain().await?;
                }
                self.feed_tower();
            }
        }
        Ok(())
    }

    /// Hands every channel whose complete state is newer than what the pusher has to the
    /// watchtower's pusher. The core stored the state before it reached the snapshot.
    fn feed_tower(&mut self) {
        let (pushers, handed) = &mut self.towers;
        if pushers.is_empty() {
            return;
        }
        for (id, entry) in self.core.channels() {
            let snapshot = entry.channel.snapshot();
            let Some(number) = snapshot.complete.as_ref().map(|r| r.body.number) else {
                continue;
            };
            if snapshot.funding_outpoint.is_none() || handed.get(id) == Some(&number) {
                continue;
            }
            handed.insert(*id, number);
            for pusher in pushers.iter() {
                let _ = pusher.send(snapshot.clone());
            }
        }
    }

    async fn control(&mut self, command: &str, args: Value) -> anyhow::Result<Value> {
        let entropy: [u8; 32] = rand::random();
        let outputs = self.core.handle(NodeInput::Entropy(entropy))?;
        self.run_outputs(outputs).await?;
        match command {
            "info" => Ok(self.info()),
            "address" => {
                let address = tokio::task::block_in_place(|| self.wallet.new_address())?;
                Ok(json!({ "address": address.to_string() }))
            }
            "open" => {
                let peer = key_arg(&args, "peer").map_err(|e| anyhow!(e))?;
                let capacity_sat = u64_arg(&args, "capacity_sat").map_err(|e| anyhow!(e))?;
                if !self.writers.contains_key(&peer) {
                    bail!("peer {peer} is not connected");
                }
                let channel_id = ChannelId(rand::random());
                let outputs = self.core.handle(NodeInput::Command(NodeCommand::OpenChannel {
                    peer,
                    channel_id,
                    capacity_sat,
                    shared_delay: self.shared_delay,
                }))?;
                self.run_outputs(outputs).await?;
                Ok(json!({ "channel_id": hex::encode(channel_id.0) }))
            }
            "contact" => {
                let contact = Contact::sign(&self.mailbox_key, self.mailbox.base_url(), now());
                Ok(serde_json::to_value(contact)?)
            }
            "pay" => {
                let lsp = key_arg(&args, "lsp").map_err(|e| anyhow!(e))?;
                let amount_sat = u64_arg(&args, "amount_sat").map_err(|e| anyhow!(e))?;
                let contact: Contact = serde_json::from_value(args["contact"].clone())
                    .context("\"contact\" must be a payee's contact card")?;
                let verified = contact
                    .verify()
                    .map_err(|e| anyhow!("contact does not verify: {e:?}"))?;
                let payee = PublicKey::from(verified.node_key);
                self.store
                    .put_contact(&payee, &serde_json::to_string(&contact)?)?;
                let fee_sat = args["fee_sat"]
                    .as_u64()
                    .unwrap_or_else(|| lsp_policy(0).fee_for(amount_sat));
                let payment_id = PaymentId(rand::random());
                let note = args["note"].as_str().unwrap_or("").to_owned();
                let outputs = self.core.handle(NodeInput::Command(NodeCommand::Pay {
                    payment_id,
                    lsp,
                    payee,
                    amount_sat,
                    fee_sat,
                    note,
                }))?;
                self.run_outputs(outputs).await?;
                // A transfer the channel refused (e.g. above the balance) leaves the payment
                // void at once: the caller hears why instead of polling a payment that waits.
                let void_reason = self.core.payer().and_then(|p| {
                    p.payments()
                        .find(|(id, _)| **id == payment_id)
                        .and_then(|(_, r)| match &r.status {
                            PayerStatus::Void { reason } => Some(reason.clone()),
                            _ => None,
                        })
                });
                if let Some(reason) = void_reason {
                    bail!("payment {payment_id} refused: {reason}");
                }
                Ok(json!({ "payment_id": payment_id.to_string(), "fee_sat": fee_sat }))
            }
            "receive" => {
                // Reverse variant: be paid while offline by a payer buying our LSP's signature.
                let lsp = key_arg(&args, "lsp").map_err(|e| anyhow!(e))?;
                let amount_sat = u64_arg(&args, "amount_sat").map_err(|e| anyhow!(e))?;
                let card: Contact = serde_json::from_value(args["payer_contact"].clone())
                    .context("\"payer_contact\" must be the payer's contact card")?;
                let verified = card
                    .verify()
                    .map_err(|e| anyhow!("payer contact does not verify: {e:?}"))?;
                let payer = PublicKey::from(verified.node_key);
                self.store.put_contact(&payer, &serde_json::to_string(&card)?)?;
                let own = Contact::sign(&self.mailbox_key, self.mailbox.base_url(), now());
                let payment_id = PaymentId(rand::random());
                let outputs = self.core.handle(NodeInput::Command(NodeCommand::Receive {
                    payment_id,
                    lsp,
                    payer,
                    amount_sat,
                    contact: Some(serde_json::to_value(own)?),
                }))?;
                self.run_outputs(outputs).await?;
                Ok(json!({ "payment_id": payment_id.to_string() }))
            }
            "cancel" => {
                let payment_id: PaymentId = args["payment_id"]
                    .as_str()
                    .context("missing \"payment_id\"")?
                    .parse()
                    .context("payment_id is 32 hex bytes")?;
                let outputs = self
                    .core
                    .handle(NodeInput::Command(NodeCommand::Cancel { payment_id }))?;
                self.run_outputs(outputs).await?;
                Ok(json!({}))
            }
            "fetch" => {
                let n = self.fetch_letters().await?;
                Ok(json!({ "letters": n }))
            }
            "force-close" => {
                let channel_id = channel_arg(&args)?;
                let outputs = self
                    .core
                    .handle(NodeInput::Command(NodeCommand::ForceClose { channel_id }))?;
                self.run_outputs(outputs).await?;
                Ok(json!({}))
            }
            "stop" => {
                self.stop = true;
                Ok(json!({}))
            }
            "crash-at" => {
                let point: CrashPoint = args["point"]
                    .as_str()
                    .context("missing \"point\": send:<message> | post-letter | persist:<n>")?
                    .parse()?;
                println!(
                    "{}",
                    json!({"event": "crash_armed", "point": point.to_string()})
                );
                self.crash = Some((point, 0));
                Ok(json!({}))
            }
            other => bail!(
                "unknown command {other:?}; try info, address, connect, open, contact, pay, receive, cancel, fetch, force-close, crash-at, stop"
            ),
        }
    }

    fn info(&self) -> Value {
        let channels: Vec<Value> = self
            .core
            .channels()
            .iter()
            .map(|(id, e)| {
                let snap = e.channel.snapshot();
                let (state, to_self, to_peer) = match e.channel.latest() {
                    Some(body) => {
                        let other = match snap.side {
                            Party::A => Party::S,
                            Party::S => Party::A,
                        };
                        (
                            Some(body.number),
                            body.balance(snap.side),
                            body.balance(other),
                        )
                    }
                    None => (None, 0, 0),
                };
                json!({
                    "channel_id": hex::encode(id.0),
                    "peer": e.peer.to_string(),
                    "phase": format!("{:?}", e.channel.phase()),
                    "funding_outpoint": snap.funding_outpoint.map(|o| o.to_string()),
                    "state": state,
                    "to_self_sat": to_self,
                    "to_peer_sat": to_peer,
                    "connected": self.writers.contains_key(&e.peer),
                })
            })
            .collect();
        // Typed views, never the stored records: no withheld signature leaves the node.
        let payments = asyncpay::node::views::payments(&self.core);
        let reverse = asyncpay::node::views::reverse(&self.core);
        let balance = self.wallet.balance();
        json!({
            "node_key": self.core.public_key().to_string(),
            "role": self.core.role(),
            "height": self.height,
            "wallet_sat": balance.confirmed.to_sat(),
            "wallet_pending_sat": (balance.trusted_pending + balance.untrusted_pending).to_sat(),
            "channels": channels,
            "payments": payments,
            "reverse": reverse,
        })
    }

    async fn fetch_letters(&mut self) -> anyhow::Result<usize> {
        let messages = self
            .mailbox
            .fetch(&self.mailbox_key, 32, Duration::from_secs(0))
            .await?;
        let mut handled = vec![];
        for message in &messages {
            match message.open(&self.mailbox_key) {
                Ok(opened) => {
                    match self.core.handle(NodeInput::Letter {
                        bytes: opened.payload,
                    }) {
                        Ok(outputs) => self.run_outputs(outputs).await?,
                        Err(e) => eprintln!(
                            "{}",
                            json!({"event": "letter_refused", "error": e.to_string()})
                        ),
                    }
                }
                Err(e) => eprintln!(
                    "{}",
                    json!({"event": "letter_refused", "error": format!("{e:?}")})
                ),
            }
            // Stored (or refused for good) before it is deleted from the mailbox.
            handled.push(message.id);
        }
        if !handled.is_empty() {
            self.mailbox.ack(&self.mailbox_key, &handled).await?;
        }
        Ok(handled.len())
    }

    async fn poll_chain(&mut self) -> anyhow::Result<()> {
        let client = match self.chain.take() {
            Some(client) => client,
            None => tokio::task::block_in_place(|| electrum_client::Client::new(&self.electrum))?,
        };
        self.poll_chain_with(&client).await?;
        // Kept only while it works: an error above drops it and the next poll reconnects.
        self.chain = Some(client);
        Ok(())
    }

    async fn poll_chain_with(&mut self, client: &electrum_client::Client) -> anyhow::Result<()> {
        let electrum = self.electrum.clone();
        let tip = tokio::task::block_in_place(|| client.block_headers_subscribe())?;
        // The answer above is the tip; drop the queued notifications so they do not pile up.
        while client.block_headers_pop_raw()?.is_some() {}
        let height = u32::try_from(tip.height).unwrap_or(u32::MAX);
        if height != self.height {
            self.height = height;
            tokio::task::block_in_place(|| self.wallet.sync(&electrum))?;
            let outputs = self.core.handle(NodeInput::Block { height })?;
            self.run_outputs(outputs).await?;
        }
        // Funding confirmations.
        let unconfirmed: Vec<OutPoint> = self
            .core
            .channels()
            .values()
            .filter_map(|e| {
                let s = e.channel.snapshot();
                (!s.funding_confirmed)
                    .then_some(s.funding_outpoint)
                    .flatten()
            })
            .collect();
        for outpoint in unconfirmed {
            if let Some(h) = confirmed_height(client, &outpoint.txid)? {
                let outputs = self.core.handle(NodeInput::Confirmed {
                    txid: outpoint.txid,
                    height: h,
                })?;
                self.run_outputs(outputs).await?;
            }
        }
        // Spends of watched outpoints.
        let watched: Vec<OutPoint> = self.watches.keys().copied().collect();
        for outpoint in watched {
            let Ok(parent) = tokio::task::block_in_place(|| client.transaction_get(&outpoint.txid))
            else {
                continue;
            };
            let Some(out) = parent.output.get(outpoint.vout as usize) else {
                continue;
            };
            let history =
                tokio::task::block_in_place(|| client.script_get_history(&out.script_pubkey))?;
            for item in history {
                let confirmed_at = u32::try_from(item.height).ok().filter(|h| *h > 0);
                // Each spend goes to the core once when seen and once when confirmed: an old
                // spend handed over again would look like a new stale state to the channel.
                let seen_key = (item.tx_hash, confirmed_at.is_some());
                let fresh = self
                    .watches
                    .get_mut(&outpoint)
                    .map(|seen| seen.insert(seen_key))
                    .unwrap_or(false);
                if !fresh {
                    continue;
                }
                let tx = tokio::task::block_in_place(|| client.transaction_get(&item.tx_hash))?;
                if tx.input.iter().any(|i| i.previous_output == outpoint) {
                    let outputs = self.core.handle(NodeInput::Spend { tx, confirmed_at })?;
                    self.run_outputs(outputs).await?;
                }
            }
        }
        Ok(())
    }

    async fn run_outputs(&mut self, outputs: Vec<NodeOutput>) -> anyhow::Result<()> {
        let mut queue = std::collections::VecDeque::from(outputs);
        while let Some(output) = queue.pop_front() {
            self.crash_before(&output);
            match output {
                NodeOutput::PersistChannel { peer, snapshot } => {
                    self.store.put_channel(&peer, &snapshot)?;
                    self.crash_after_persist();
                }
                NodeOutput::PersistPayment { payment_id, record } => {
                    self.store.put_payment(&payment_id, &record)?;
                    self.crash_after_persist();
                }
                NodeOutput::PersistReverse { payment_id, record } => {
                    self.store.put_reverse(&payment_id, &record)?;
                    self.crash_after_persist();
                }
                NodeOutput::PostReverse { to, bytes, contact } => {
                    self.post(&to, contact, bytes).await?;
                    println!(
                        "{}",
                        json!({"event": "letter_posted", "to": to.to_string()})
                    );
                }
                NodeOutput::Send { to, frame, what } => {
                    let delivered = match self.writers.get(&to) {
                        Some((_, w)) => w.send(frame).is_ok(),
                        None => false,
                    };
                    println!(
                        "{}",
                        json!({"event": "send", "to": to.to_string(), "message": what, "delivered": delivered})
                    );
                }
                NodeOutput::Broadcast(tx) => {
                    if let Err(e) = self.broadcast(&tx).await {
                        eprintln!(
                            "{}",
                            json!({"event": "broadcast_failed", "txid": tx.compute_txid().to_string(), "error": format!("{e:#}")})
                        );
                    }
                }
                NodeOutput::Watch(outpoint) => {
                    self.watches.entry(outpoint).or_default();
                }
                NodeOutput::NeedFunding {
                    channel_id,
                    script_pubkey,
                    capacity_sat,
                } => {
                    let funding = tokio::task::block_in_place(|| {
                        self.wallet.build_funding(
                            script_pubkey,
                            Amount::from_sat(capacity_sat),
                            FeeRate::from_sat_per_vb(2).expect("small feerate"),
                        )
                    })?;
                    self.store.put_funding(&channel_id, &funding.tx)?;
                    let outpoint = funding.outpoint();
                    self.funding.insert(channel_id, funding.tx);
                    queue.extend(self.core.handle(NodeInput::FundingBuilt {
                        channel_id,
                        outpoint,
                    })?);
                }
                NodeOutput::ReadyToFund { channel_id } => {
                    let tx = match self.funding.get(&channel_id) {
                        Some(tx) => tx.clone(),
                        None => self
                            .store
                            .funding(&channel_id)?
                            .context("funding transaction was not stored")?,
                    };
                    let electrum = self.electrum.clone();
                    let txid =
                        tokio::task::block_in_place(|| self.wallet.broadcast(&electrum, &tx))?;
                    println!(
                        "{}",
                        json!({"event": "funding_broadcast", "channel_id": hex::encode(channel_id.0), "txid": txid.to_string()})
                    );
                }
                NodeOutput::PostLetter {
                    payment_id,
                    payee,
                    letter,
                } => {
                    self.post(&payee, None, letter.encode()).await?;
                    println!(
                        "{}",
                        json!({"event": "letter_posted", "payment_id": payment_id.to_string()})
                    );
                    queue.extend(self.core.handle(NodeInput::LetterPosted { payment_id })?);
                }
                NodeOutput::ChannelEvent { channel_id, event } => {
                    println!(
                        "{}",
                        json!({"event": "channel", "channel_id": hex::encode(channel_id.0), "what": format!("{event:?}")})
                    );
                }
                NodeOutput::PaymentEvent(event) => {
                    println!("{}", json!({"event": "payment", "what": event}));
                }
                NodeOutput::Refused { peer, error } => {
                    eprintln!(
                        "{}",
                        json!({"event": "refused", "peer": peer.to_string(), "error": error})
                    );
                }
            }
        }
        Ok(())
    }

    /// Seals `bytes` to `to`'s mailbox: to the contact card given, or else the one stored
    /// for `to`.
    async fn post(
        &self,
        to: &PublicKey,
        card: Option<Value>,
        bytes: Vec<u8>,
    ) -> anyhow::Result<()> {
        let contact: Contact = match card {
            Some(card) => {
                serde_json::from_value(card).context("the letter's contact card does not parse")?
            }
            None => serde_json::from_str(
                &self
                    .store
                    .contact(to)?
                    .context("no contact stored for the letter's recipient")?,
            )?,
        };
        let verified = contact.verify().map_err(|e| anyhow!("contact: {e:?}"))?;
        self.mailbox
            .send(
                &verified,
                Some(&self.mailbox_key),
                bytes,
                Duration::from_secs(7 * 24 * 3600),
            )
            .await?;
        Ok(())
    }

    /// Dies before `output` if the armed crash point is there.
    fn crash_before(&self, output: &NodeOutput) {
        let hit = match (&self.crash, output) {
            (Some((CrashPoint::Send(want), _)), NodeOutput::Send { what, .. }) => want == what,
            (Some((CrashPoint::PostLetter, _)), NodeOutput::PostLetter { .. }) => true,
            _ => false,
        };
        if hit {
            self.freeze();
        }
    }

    fn crash_after_persist(&mut self) {
        if let Some((CrashPoint::Persist(n), seen)) = &mut self.crash {
            *seen += 1;
            if *seen == *n {
                self.freeze();
            }
        }
    }

    /// Reports the crash point and dies by SIGKILL on the spot: no destructor runs, nothing
    /// is flushed or closed in order, exactly as if the machine had killed it.
    fn freeze(&self) -> ! {
        use std::io::Write as _;
        let point = self.crash.as_ref().map(|(p, _)| p.to_string());
        println!("{}", json!({"event": "crash_point", "point": point}));
        let _ = std::io::stdout().flush();
        let pid = std::process::id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status();
        // Only reached if no `kill` program could be run.
        std::process::abort()
    }

    /// Channel transactions with a P2A anchor pay no fee: they go out as a package with a
    /// CPFP child from the wallet through `submitpackage` (needs the node's RPC), at a
    /// feerate that rises each time the channel publishes the same transaction again. A
    /// transaction without an anchor (a PTLC timeout) pays its own fee and goes out through
    /// `sendrawtransaction`.
    async fn broadcast(&mut self, tx: &Transaction) -> anyhow::Result<()> {
        let Some(rpc) = self.rpc.clone() else {
            bail!("no --rpc-url: cannot submit a package");
        };
        let txid = tx.compute_txid();
        let attempt = {
            let n = self.attempts.entry(txid).or_insert(0);
            *n += 1;
            *n - 1
        };
        let published = crate::chain_io::publish(&rpc, &mut self.wallet, tx, attempt).await?;
        let feerate = match published {
            crate::chain_io::Published::Alone => None,
            crate::chain_io::Published::Package { feerate_sat_vb } => Some(feerate_sat_vb),
        };
        println!(
            "{}",
            json!({"event": "transaction_published", "txid": txid.to_string(), "attempt": attempt, "feerate_sat_vb": feerate})
        );
        Ok(())
    }
}

/// The task that sends channels' latest states to the watchtower: the newest snapshot of
/// each channel waits until the tower took it, retried every two seconds. Nothing is stored:
/// after a restart every channel is sent again, and the tower asks for what it lacks.
fn spawn_tower_pusher(
    url: &str,
    seed: [u8; 32],
) -> anyhow::Result<mpsc::UnboundedSender<Snapshot>> {
    let client = asyncpay::tower::client::TowerClient::new(url)?;
    let url = url.to_owned();
    let (tx, mut rx) = mpsc::unbounded_channel::<Snapshot>();
    tokio::spawn(async move {
        let mut waiting: BTreeMap<ChannelId, Snapshot> = BTreeMap::new();
        loop {
            if waiting.is_empty() {
                match rx.recv().await {
                    Some(s) => {
                        waiting.insert(s.channel_id, s);
                    }
                    None => return,
                }
            }
            while let Ok(s) = rx.try_recv() {
                waiting.insert(s.channel_id, s);
            }
            let ids: Vec<ChannelId> = waiting.keys().copied().collect();
            for id in ids {
                let Some(snapshot) = waiting.get(&id) else {
                    continue;
                };
                let state = snapshot.complete.as_ref().map(|r| r.body.number);
                match client.push(&seed, snapshot).await {
                    Ok(held) => {
                        println!(
                            "{}",
                            json!({"event": "watchtower_updated", "tower": url, "channel_id": hex::encode(id.0), "state": held})
                        );
                        waiting.remove(&id);
                    }
                    // A state the tower already holds a newer one of, or a channel it no
                    // longer takes appointments for (closing on chain): nothing to retry.
                    Err(asyncpay::tower::client::PushError::Refused { code, .. })
                        if code == "stale" || code == "closing" =>
                    {
                        waiting.remove(&id);
                    }
                    Err(e) => eprintln!(
                        "{}",
                        json!({"event": "watchtower_failed", "tower": url, "channel_id": hex::encode(id.0), "state": state, "error": e.to_string()})
                    ),
                }
            }
            if !waiting.is_empty() {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    });
    Ok(tx)
}

fn confirmed_height(client: &electrum_client::Client, txid: &Txid) -> anyhow::Result<Option<u32>> {
    let Ok(tx) = tokio::task::block_in_place(|| client.transaction_get(txid)) else {
        return Ok(None);
    };
    let Some(out) = tx.output.first() else {
        return Ok(None);
    };
    let history = tokio::task::block_in_place(|| client.script_get_history(&out.script_pubkey))?;
    Ok(history
        .iter()
        .find(|h| &h.tx_hash == txid && h.height > 0)
        .map(|h| h.height as u32))
}

fn channel_arg(args: &Value) -> anyhow::Result<ChannelId> {
    let text = args["channel_id"]
        .as_str()
        .context("missing \"channel_id\"")?;
    let mut id = [0u8; 32];
    hex::decode_to_slice(text, &mut id).context("channel_id is 32 hex bytes")?;
    Ok(ChannelId(id))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
