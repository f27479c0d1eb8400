//! Long-lived test networks in a data directory, Nigiri-style: `asyncpay regtest up` and
//! `asyncpay signet up` run the [regtest harness](crate::chain::regtest) in a background
//! server process until `down`.
//!
//! The server ([`serve`]) starts the harness with its data directories under
//! `DIR/chain`, writes `DIR/control.token` (mode 0600) and then, atomically,
//! `DIR/network.json` ([`NetworkInfo`]: URLs, cookie file, challenge, its pid). It answers
//! `POST /mine`, `POST /faucet` (pay a script from the harness's faucet through the mempool)
//! and `POST /stop` on a loopback HTTP endpoint guarded by the token, optionally mines a block
//! every few seconds, and on `stop`, SIGTERM or ctrl-c drops the harness, which stops
//! bitcoind and electrs. Only the server holds the signet's block key and the faucet's coins:
//! whoever else uses the network (a node, the demo through
//! [`Regtest::attach`](crate::chain::regtest::Regtest::attach)) mines and is paid through it.
//!
//! [`up`] spawns the server detached (its own process group, output in `DIR/network.log`)
//! and returns once `network.json` is there; [`mine`], [`faucet`] and [`down`] are its
//! clients. `down`
//! waits for the server to exit, signals it if it does not, and kills any process still
//! running from `DIR/chain`.
//!
//! ```no_run
//! # async fn example() -> Result<(), asyncpay::chain::network::NetworkError> {
//! use asyncpay::chain::network;
//! use std::path::Path;
//! use std::time::Duration;
//!
//! let dir = Path::new("/tmp/my-regtest");
//! let exe = std::env::current_exe().expect("own path");
//! let mut server = std::process::Command::new(exe);
//! server.args(["regtest", "serve", "--data-dir", "/tmp/my-regtest"]);
//! let info = network::up(dir, server, Duration::from_secs(300), |_| {})?;
//! println!("{}", info.bitcoin_cli_line());
//! let height = network::mine(dir, 3).await?;
//! network::down(dir, Duration::from_secs(60)).await?;
//! # let _ = height;
//! # Ok(())
//! # }
//! ```

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::chain::regtest::{HarnessError, Regtest, RegtestOptions};
use crate::chain::signet::SignetSigner;

/// The network description the server writes once the network is ready.
pub const INFO_FILE: &str = "network.json";
/// The control token (mode 0600).
pub const TOKEN_FILE: &str = "control.token";
/// The server's pid, written by [`up`] as soon as the server is spawned.
pub const PID_FILE: &str = "server.pid";
/// The server's stdout and stderr.
pub const LOG_FILE: &str = "network.log";
/// Where bitcoind's and electrs's data directories are made.
pub const WORK_DIR: &str = "chain";
/// The seed of the signet's block key when none is given.
pub const DEFAULT_SIGNET_SEED: &str = "asyncpay signet";
/// The most blocks one `mine` request may ask for.
pub const MAX_BLOCKS_PER_REQUEST: u64 = 10_000;

/// Which chain the network runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Chain {
    /// Regtest: blocks by `generatetoaddress`.
    Regtest,
    /// A private signet whose blocks the server signs.
    Signet,
}

impl Chain {
    /// The name bitcoind gives the chain (`regtest`, `signet`).
    pub fn as_str(self) -> &'static str {
        match self {
            Chain::Regtest => "regtest",
            Chain::Signet => "signet",
        }
    }

    /// The network its addresses belong to.
    pub fn bitcoin_network(self) -> bitcoin::Network {
        match self {
            Chain::Regtest => bitcoin::Network::Regtest,
            Chain::Signet => bitcoin::Network::Signet,
        }
    }
}

/// A running network, as written to `DIR/network.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// The chain.
    pub chain: Chain,
    /// The server's pid.
    pub pid: u32,
    /// The data directory (absolute).
    pub data_dir: PathBuf,
    /// bitcoind's RPC URL.
    pub rpc_url: String,
    /// bitcoind's RPC cookie file.
    pub rpc_cookie_file: PathBuf,
    /// electrs's address (`127.0.0.1:port`), if electrs runs.
    pub electrum_url: Option<String>,
    /// The signet challenge (hex), on signet.
    pub signet_challenge: Option<String>,
    /// The height when the network became ready.
    pub height: u64,
    /// The server's control endpoint (`http://127.0.0.1:port`).
    pub control_url: String,
    /// A `bitcoin-cli` command line for this node, one argument per element.
    pub bitcoin_cli: Vec<String>,
}

/// What `asyncpay regtest|signet up` prints: where everything is and how to use it.
impl core::fmt::Display for NetworkInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let name = self.chain.as_str();
        let dir = self.data_dir.display();
        writeln!(
            f,
            "{name} running (server pid {}), height {}",
            self.pid, self.height
        )?;
        writeln!(f, "rpc url:       {}", self.rpc_url)?;
        writeln!(f, "rpc cookie:    {}", self.rpc_cookie_file.display())?;
        if let Some(url) = &self.electrum_url {
            writeln!(f, "electrum url:  {url}")?;
        }
        if let Some(challenge) = &self.signet_challenge {
            writeln!(f, "challenge:     {challenge}")?;
        }
        writeln!(f, "bitcoin-cli:   {}", self.bitcoin_cli_line())?;
        writeln!(f, "mine:          asyncpay {name} mine 1 --data-dir {dir}")?;
        write!(f, "stop:          asyncpay {name} down --data-dir {dir}")
    }
}

impl NetworkInfo {
    /// [`Self::bitcoin_cli`] as one line to paste into a shell.
    pub fn bitcoin_cli_line(&self) -> String {
        self.bitcoin_cli
            .iter()
            .map(|arg| shell_quote(arg))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn shell_quote(arg: &str) -> String {
    let plain = arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_=./:,@+".contains(c));
    if plain && !arg.is_empty() {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// What the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Regtest or a private signet.
    pub chain: Chain,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Also run electrs.
    pub electrs: bool,
    /// The signet's block key seed ([`DEFAULT_SIGNET_SEED`] when `None`); refused on regtest.
    pub seed: Option<String>,
    /// Mine one block every interval.
    pub block_interval: Option<Duration>,
}

/// What can go wrong running a network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// `up` on a directory whose server runs.
    #[error("a network already runs in {} (server pid {pid}); stop it with `down` first", data_dir.display())]
    AlreadyRunning {
        /// The data directory.
        data_dir: PathBuf,
        /// The running server.
        pid: u32,
    },
    /// `mine` or `down` on a directory with no running network.
    #[error("no network runs in {}", data_dir.display())]
    NotRunning {
        /// The data directory.
        data_dir: PathBuf,
    },
    /// A seed was given for a regtest network.
    #[error("--seed is for a signet (it derives the block key); regtest has no block key")]
    SeedOnRegtest,
    /// A file or process operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or executable.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// `network.json` could not be read.
    #[error("{} is not a network description: {source}", path.display())]
    BadInfo {
        /// The file.
        path: PathBuf,
        /// The parse failure.
        source: serde_json::Error,
    },
    /// The harness failed.
    #[error(transparent)]
    Harness(#[from] HarnessError),
    /// The server exited before the network was ready.
    #[error("the network server exited ({status}) before the network was ready; the end of {}:\n{tail}", log.display())]
    ServerExited {
        /// Its exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },
    /// Waiting took too long.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long.
        after: Duration,
    },
    /// A control request failed.
    #[error("{request} request to the network server failed: {reason}")]
    Control {
        /// The request.
        request: &'static str,
        /// Why.
        reason: String,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> NetworkError + 'a {
    move |source| NetworkError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` if needed and returns its absolute path: the server is given that path,
/// so that its command line identifies it.
pub fn absolute(dir: &Path) -> Result<PathBuf, NetworkError> {
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    dir.canonicalize().map_err(io("resolve", dir))
}

/// Reads `DIR/network.json`, if there is one.
pub fn read_info(data_dir: &Path) -> Result<Option<NetworkInfo>, NetworkError> {
    let path = data_dir.join(INFO_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| NetworkError::BadInfo { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", &path)(e)),
    }
}

/// Whether `pid` is a live (not zombie) process.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

/// The pid of the server running in `data_dir` (absolute), if it runs: the pid recorded in
/// `server.pid`, alive, with the directory on its command line (so a reused pid is not taken
/// for it).
fn running_server(data_dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(data_dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let line = cmdline(pid)?;
    (pid_alive(pid) && line.contains(&*data_dir.to_string_lossy())).then_some(pid)
}

/// Live processes whose command line mentions `dir` (bitcoind's `-datadir`, electrs's
/// `--db-dir`), other than this one.
pub fn processes_under(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && pid_alive(pid))
        .filter(|&pid| cmdline(pid).is_some_and(|line| line.contains(&needle)))
        .collect()
}

fn signal(pid: u32, signal: &str) {
    // `kill(1)`: the library forbids unsafe code, so no libc::kill.
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), NetworkError> {
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io("create", path))?;
    file.write_all(bytes).map_err(io("write", path))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), NetworkError> {
    let tmp = path.with_extension("json.tmp");
    write_private(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(io("rename", path))
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The command that runs the network's server: `exe` (the `asyncpay` binary) with
/// `<chain> serve` and the options' flags, which `asyncpay <chain> up` hands to [`up`].
pub fn server_command(exe: &Path, options: &ServeOptions) -> Command {
    let mut server = Command::new(exe);
    server
        .arg(options.chain.as_str())
        .arg("serve")
        .arg("--data-dir")
        .arg(&options.data_dir);
    if !options.electrs {
        server.arg("--no-electrs");
    }
    if let Some(seed) = &options.seed {
        server.arg("--seed").arg(seed);
    }
    if let Some(interval) = options.block_interval {
        server
            .arg("--block-interval")
            .arg(interval.as_secs().to_string());
    }
    server
}

/// Starts `server` (a command that runs [`serve`] on `data_dir`) detached from this process
/// (its own process group; stdin closed, stdout and stderr to `DIR/network.log`) and waits
/// until it has written `network.json`. `progress` is called every few seconds with the
/// time waited so far. A directory whose server already runs is refused.
pub fn up(
    data_dir: &Path,
    mut server: Command,
    timeout: Duration,
    mut progress: impl FnMut(Duration),
) -> Result<NetworkInfo, NetworkError> {
    let data_dir = absolute(data_dir)?;
    if let Some(pid) = running_server(&data_dir) {
        return Err(NetworkError::AlreadyRunning { data_dir, pid });
    }
    for stale in [INFO_FILE, TOKEN_FILE, PID_FILE] {
        let _ = std::fs::remove_file(data_dir.join(stale));
    }
    let log_path = data_dir.join(LOG_FILE);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io("open", &log_path))?;
    let log_err = log.try_clone().map_err(io("open", &log_path))?;
    server
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    let program = PathBuf::from(server.get_program());
    let mut child = server.spawn().map_err(io("spawn", &program))?;
    let pid = child.id();
    std::fs::write(data_dir.join(PID_FILE), format!("{pid}\n"))
        .map_err(io("write", &data_dir.join(PID_FILE)))?;

    let started = Instant::now();
    let mut last_progress = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(io("wait for", &program))? {
            let _ = std::fs::remove_file(data_dir.join(PID_FILE));
            return Err(NetworkError::ServerExited {
                status: status.to_string(),
                log: log_path.clone(),
                tail: log_tail(&log_path),
            });
        }
        // A half-written file cannot be seen: the server renames it into place.
        if let Ok(Some(info)) = read_info(&data_dir) {
            if info.pid == pid {
                return Ok(info);
            }
        }
        if started.elapsed() > timeout {
            signal(pid, "TERM");
            return Err(NetworkError::Timeout {
                what: "the network to start",
                after: timeout,
            });
        }
        if last_progress.elapsed() >= Duration::from_secs(5) {
            progress(started.elapsed());
            last_progress = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The request body of `POST /mine`.
#[derive(Debug, Serialize, Deserialize)]
struct MineRequest {
    blocks: u64,
}

/// The answer to `POST /mine`.
#[derive(Debug, Serialize, Deserialize)]
struct MineAnswer {
    height: u64,
}

/// Most a faucet request pays: 10 BTC.
pub const MAX_FAUCET_SAT: u64 = 1_000_000_000;

/// The request body of `POST /faucet`.
#[derive(Debug, Serialize, Deserialize)]
struct FaucetRequest {
    /// The output script to pay (hex).
    script_pubkey: String,
    amount_sat: u64,
}

/// What the faucet paid: a new output, in the mempool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaucetPayment {
    /// The output.
    pub outpoint: bitcoin::OutPoint,
    /// What it holds.
    pub txout: bitcoin::TxOut,
}

struct ServerState {
    chain: Arc<Regtest>,
    token: String,
    /// One mining job at a time: two signet blocks built from the same template would
    /// conflict.
    mining: tokio::sync::Mutex<()>,
    stop: tokio::sync::Notify,
}

impl ServerState {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        use subtle::ConstantTimeEq as _;
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        bool::from(given.as_bytes().ct_eq(self.token.as_bytes()))
    }

    async fn mine(&self, blocks: u64) -> Result<u64, HarnessError> {
        let _guard = self.mining.lock().await;
        let chain = self.chain.clone();
        tokio::task::spawn_blocking(move || {
            chain.mine(blocks)?;
            chain.height()
        })
        .await
        .expect("mining does not panic")
    }
}

type Answer<T> = Result<Json<T>, (StatusCode, String)>;

async fn mine_handler(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Json(request): Json<MineRequest>,
) -> Answer<MineAnswer> {
    if !state.authorized(&headers) {
        return Err((StatusCode::UNAUTHORIZED, "bad token".into()));
    }
    if request.blocks > MAX_BLOCKS_PER_REQUEST {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("at most {MAX_BLOCKS_PER_REQUEST} blocks per request"),
        ));
    }
    match state.mine(request.blocks).await {
        Ok(height) => Ok(Json(MineAnswer { height })),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn faucet_handler(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Json(request): Json<FaucetRequest>,
) -> Answer<FaucetPayment> {
    if !state.authorized(&headers) {
        return Err((StatusCode::UNAUTHORIZED, "bad token".into()));
    }
    if request.amount_sat == 0 || request.amount_sat > MAX_FAUCET_SAT {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("the amount must be between 1 and {MAX_FAUCET_SAT} sat"),
        ));
    }
    let script = bitcoin::ScriptBuf::from_hex(&request.script_pubkey)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("script_pubkey: {e}")))?;
    // The faucet's coins change with every payment and every block: one job at a time.
    let _guard = state.mining.lock().await;
    let chain = state.chain.clone();
    let amount = bitcoin::Amount::from_sat(request.amount_sat);
    let paid = tokio::task::spawn_blocking(move || chain.fund(&script, amount))
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match paid {
        Ok((outpoint, txout)) => Ok(Json(FaucetPayment { outpoint, txout })),
        Err(e @ HarnessError::FaucetEmpty { .. }) => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{e}; mine blocks first"),
        )),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn stop_handler(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
) -> Answer<serde_json::Value> {
    if !state.authorized(&headers) {
        return Err((StatusCode::UNAUTHORIZED, "bad token".into()));
    }
    state.stop.notify_one();
    Ok(Json(serde_json::json!({ "stopping": true })))
}

fn bitcoin_cli(chain: &Regtest, kind: Chain, challenge: Option<&str>) -> Vec<String> {
    let cli = chain
        .binaries()
        .bitcoind
        .parent()
        .map(|dir| dir.join("bitcoin-cli"))
        .filter(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bitcoin-cli".into());
    let url = url::Url::parse(&chain.rpc_url()).expect("the harness's RPC URL parses");
    let mut args = vec![
        cli,
        format!("-{}", kind.as_str()),
        format!("-rpcconnect={}", url.host_str().unwrap_or("127.0.0.1")),
        format!("-rpcport={}", url.port().unwrap_or(18443)),
        format!("-rpccookiefile={}", chain.rpc_cookie_file().display()),
    ];
    if let Some(challenge) = challenge {
        args.push(format!("-signetchallenge={challenge}"));
    }
    args
}

/// Runs a network until a `stop` request, SIGTERM or ctrl-c (what `asyncpay regtest serve`
/// runs; see the [module documentation](self)). The harness is dropped before this returns,
/// so bitcoind and electrs are stopped and their directories deleted.
pub async fn serve(options: ServeOptions) -> Result<(), NetworkError> {
    use tokio::signal::unix::{signal as unix_signal, SignalKind};
    // Installed first: a SIGTERM while the chain starts is kept and acted on once it has
    // started (and can then be stopped), instead of killing this process and leaving
    // bitcoind behind.
    let mut term =
        unix_signal(SignalKind::terminate()).map_err(io("install", Path::new("SIGTERM")))?;
    let mut int =
        unix_signal(SignalKind::interrupt()).map_err(io("install", Path::new("SIGINT")))?;

    let data_dir = absolute(&options.data_dir)?;
    let work_dir = data_dir.join(WORK_DIR);
    std::fs::create_dir_all(&work_dir).map_err(io("create", &work_dir))?;
    let signer = match (options.chain, &options.seed) {
        (Chain::Regtest, Some(_)) => return Err(NetworkError::SeedOnRegtest),
        (Chain::Regtest, None) => None,
        (Chain::Signet, seed) => Some(SignetSigner::from_seed(
            seed.as_deref().unwrap_or(DEFAULT_SIGNET_SEED).as_bytes(),
        )),
    };
    let challenge = signer.as_ref().map(|s| s.challenge().to_hex_string());
    let regtest_options = RegtestOptions {
        electrs: options.electrs,
        signet: signer,
        work_dir: Some(work_dir),
        ..RegtestOptions::default()
    };
    eprintln!("starting {}", options.chain.as_str());
    let chain = tokio::task::spawn_blocking(move || Regtest::start(regtest_options))
        .await
        .expect("starting the chain does not panic")?;
    let chain = Arc::new(chain);

    let token = hex::encode(rand::random::<[u8; 32]>());
    write_private(&data_dir.join(TOKEN_FILE), token.as_bytes())?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(io("bind", Path::new("127.0.0.1:0")))?;
    let control = listener
        .local_addr()
        .map_err(io("bind", Path::new("127.0.0.1:0")))?;
    let state = Arc::new(ServerState {
        chain: chain.clone(),
        token,
        mining: tokio::sync::Mutex::new(()),
        stop: tokio::sync::Notify::new(),
    });
    let app = Router::new()
        .route("/mine", post(mine_handler))
        .route("/faucet", post(faucet_handler))
        .route("/stop", post(stop_handler))
        .with_state(state.clone());

    let miner = options.block_interval.map(|every| {
        let state = state.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                ticks.tick().await;
                match state.mine(1).await {
                    Ok(height) => eprintln!("mined block {height}"),
                    Err(e) => eprintln!("mining failed: {e}"),
                }
            }
        })
    });

    let info = NetworkInfo {
        chain: options.chain,
        pid: std::process::id(),
        data_dir: data_dir.clone(),
        rpc_url: chain.rpc_url(),
        rpc_cookie_file: chain.rpc_cookie_file().to_path_buf(),
        electrum_url: chain.electrum_url().ok(),
        signet_challenge: challenge.clone(),
        height: chain.height()?,
        control_url: format!("http://{control}"),
        bitcoin_cli: bitcoin_cli(&chain, options.chain, challenge.as_deref()),
    };
    let json = serde_json::to_vec_pretty(&info).expect("the network info serializes");
    write_atomically(&data_dir.join(INFO_FILE), &json)?;
    eprintln!("ready: {}", String::from_utf8_lossy(&json));

    let stopping = state.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let why = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = stopping.stop.notified() => "a stop request",
            };
            eprintln!("stopping on {why}");
        })
        .await;

    if let Some(miner) = miner {
        miner.abort();
        let _ = miner.await;
    }
    // Waits for a mining job in flight, whose task holds a reference to the chain.
    drop(state.mining.lock().await);
    for file in [INFO_FILE, TOKEN_FILE] {
        let _ = std::fs::remove_file(data_dir.join(file));
    }
    drop(state);
    drop(chain);
    eprintln!("stopped");
    served.map_err(io("serve", Path::new("control endpoint")))
}

async fn control<T: serde::de::DeserializeOwned>(
    data_dir: &Path,
    request: &'static str,
    body: serde_json::Value,
    timeout: Duration,
) -> Result<T, NetworkError> {
    let info = read_info(data_dir)?.ok_or_else(|| NetworkError::NotRunning {
        data_dir: data_dir.to_path_buf(),
    })?;
    let token_path = data_dir.join(TOKEN_FILE);
    let token = std::fs::read_to_string(&token_path).map_err(io("read", &token_path))?;
    let failed = |reason: String| NetworkError::Control { request, reason };
    let response = reqwest::Client::new()
        .post(format!("{}/{request}", info.control_url))
        .bearer_auth(token.trim())
        .json(&body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(failed(format!("{status}: {text}")));
    }
    response.json().await.map_err(|e| failed(e.to_string()))
}

/// Mines `blocks` blocks on the network running in `data_dir` (on signet, signed by its
/// block key) and returns the new height.
pub async fn mine(data_dir: &Path, blocks: u64) -> Result<u64, NetworkError> {
    let data_dir = absolute(data_dir)?;
    // A signet block takes seconds to grind on a small machine.
    let timeout = Duration::from_secs(60)
        + Duration::from_secs(30) * blocks.min(MAX_BLOCKS_PER_REQUEST) as u32;
    let answer: MineAnswer = control(
        &data_dir,
        "mine",
        serde_json::json!({ "blocks": blocks }),
        timeout,
    )
    .await?;
    Ok(answer.height)
}

/// Pays `amount_sat` to `script_pubkey` from the faucet of the network running in
/// `data_dir`, through the mempool (the payment is unconfirmed until a block is mined).
pub async fn faucet(
    data_dir: &Path,
    script_pubkey: &bitcoin::Script,
    amount_sat: u64,
) -> Result<FaucetPayment, NetworkError> {
    let data_dir = absolute(data_dir)?;
    control(
        &data_dir,
        "faucet",
        serde_json::json!({
            "script_pubkey": script_pubkey.to_hex_string(),
            "amount_sat": amount_sat,
        }),
        Duration::from_secs(60),
    )
    .await
}

/// Stops the network running in `data_dir`: asks its server to stop and waits up to
/// `timeout` for it to exit; then SIGTERM, and SIGKILL as a last resort. Any process still
/// running from `DIR/chain` (bitcoind, electrs of a server that was killed) is killed.
/// Returns the server's pid, or [`NetworkError::NotRunning`] if neither the server nor any
/// process of it ran.
pub async fn down(data_dir: &Path, timeout: Duration) -> Result<Option<u32>, NetworkError> {
    let data_dir = absolute(data_dir)?;
    let server = running_server(&data_dir);
    if let Some(pid) = server {
        let asked = control::<serde_json::Value>(
            &data_dir,
            "stop",
            serde_json::json!({}),
            Duration::from_secs(10),
        )
        .await;
        if asked.is_err() {
            // Still starting (no control endpoint yet), or the endpoint is gone.
            signal(pid, "TERM");
        }
        if !wait_gone(&[pid], timeout).await {
            signal(pid, "TERM");
            if !wait_gone(&[pid], Duration::from_secs(10)).await {
                signal(pid, "KILL");
                wait_gone(&[pid], Duration::from_secs(5)).await;
            }
        }
    }
    let work_dir = data_dir.join(WORK_DIR);
    let leftovers = processes_under(&work_dir);
    for &pid in &leftovers {
        signal(pid, "KILL");
    }
    if !wait_gone(&leftovers, Duration::from_secs(10)).await {
        return Err(NetworkError::Timeout {
            what: "the network's processes to exit",
            after: Duration::from_secs(10),
        });
    }
    for file in [INFO_FILE, TOKEN_FILE, PID_FILE] {
        let _ = std::fs::remove_file(data_dir.join(file));
    }
    if server.is_none() && leftovers.is_empty() {
        return Err(NetworkError::NotRunning { data_dir });
    }
    if !leftovers.is_empty() {
        // Their temporary directories were not deleted by the harness.
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    Ok(server)
}

async fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let started = Instant::now();
    loop {
        if pids.iter().all(|&pid| !pid_alive(pid)) {
            return true;
        }
        if started.elapsed() > timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bitcoin_cli_line_quotes_only_what_a_shell_would_split() {
        let info = NetworkInfo {
            chain: Chain::Regtest,
            pid: 1,
            data_dir: PathBuf::from("/d"),
            rpc_url: "http://127.0.0.1:1".into(),
            rpc_cookie_file: PathBuf::from("/d/.cookie"),
            electrum_url: None,
            signet_challenge: None,
            height: 0,
            control_url: "http://127.0.0.1:2".into(),
            bitcoin_cli: vec![
                "/bin/bitcoin-cli".into(),
                "-regtest".into(),
                "-rpccookiefile=/my dir/it's".into(),
            ],
        };
        assert_eq!(
            info.bitcoin_cli_line(),
            r"/bin/bitcoin-cli -regtest '-rpccookiefile=/my dir/it'\''s'"
        );
    }

    #[test]
    fn this_process_is_alive_and_a_free_pid_is_not() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX));
    }
}
