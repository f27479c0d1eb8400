//! `asyncpay watchtower serve`: the watchtower as a process.
//!
//! The data directory (0700) holds `seed`, `tower.sqlite` (appointments and sealed leaves)
//! and `wallet.sqlite` (the BDK wallet that pays the CPFP fees of what the tower publishes),
//! and, once the server is up, `tower.json` (URL and fee address), every file 0600.
//!
//! HTTP API (JSON):
//! - `POST /v1/appointments` with an [`asyncpay::tower::Appointment`]: `200 {"state": n}`
//!   once stored durably; `409 {"error": "missing_leaves", "from": k}` asks for the leaves
//!   from state k on; other refusals are `400 {"error": code, "message": ...}`.
//! - `GET /v1/info`: height scanned, channels held, breaches under way, fee address.
//!
//! One loop scans every new block through bitcoind's RPC (`getblock`, raw), hands it to the
//! [`asyncpay::tower::Tower`], stores what changed together with the height, and only then
//! publishes: at the tip, every transaction an open breach needs, each time with a CPFP child
//! at a higher feerate than the time before, until it confirms.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use asyncpay::chain::wallet::{Wallet, WalletSeed};
use asyncpay::crypto::tagged_hash;
use asyncpay::tower::{Appointment, Tower, TowerError, TowerLimits, TowerStore};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bitcoin::{Block, Network, Txid};
use serde_json::{json, Value};

use asyncpay::chain::rpc::{publish, Published, Rpc};
use asyncpay::node::files::{load_seed, private_dir, private_file, write_private};

/// Watchtower commands.
#[derive(clap::Subcommand)]
pub enum TowerCmd {
    /// Run a watchtower until SIGTERM or ctrl-c: take appointments over HTTP, scan every
    /// block, answer an older update of a watched channel with the latest one and settle it.
    Serve(ServeArgs),
}

/// `asyncpay watchtower serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Data directory (created if missing).
    #[arg(long, env = "ASYNCPAY_TOWER_DATA_DIR")]
    data_dir: PathBuf,
    /// Address to listen on (port 0: any free port; the URL is printed and written to
    /// tower.json).
    #[arg(long, env = "ASYNCPAY_TOWER_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// bitcoind RPC URL: blocks are read and packages submitted through it.
    #[arg(long, env = "ASYNCPAY_TOWER_RPC_URL")]
    rpc_url: String,
    /// bitcoind RPC cookie file.
    #[arg(long, env = "ASYNCPAY_TOWER_RPC_COOKIE")]
    rpc_cookie: PathBuf,
    /// Electrum server (electrs) the fee wallet syncs with, e.g. tcp://127.0.0.1:50001.
    #[arg(long, env = "ASYNCPAY_TOWER_ELECTRUM")]
    electrum: String,
    /// The chain.
    #[arg(long, default_value = "regtest")]
    network: Network,
    /// Milliseconds between looks at the chain tip.
    #[arg(long, default_value_t = 1_000)]
    poll_ms: u64,
    /// Channels held in all.
    #[arg(long, default_value_t = 10_000)]
    max_channels: usize,
    /// States kept per channel (48 bytes each).
    #[arg(long, default_value_t = 100_000)]
    max_states: u64,
}

struct Shared {
    tower: Tower,
    store: TowerStore,
    scanned: u32,
    fee_address: String,
}

type AppState = Arc<Mutex<Shared>>;

/// Runs the command.
pub async fn run(cmd: TowerCmd) -> anyhow::Result<()> {
    match cmd {
        TowerCmd::Serve(args) => serve(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    private_dir(&args.data_dir)?;
    let seed = load_seed(&args.data_dir)?;
    let db_path = args.data_dir.join("tower.sqlite");
    private_file(&db_path)?;
    private_file(&args.data_dir.join("wallet.sqlite"))?;
    let store = TowerStore::open(&db_path)?;
    let limits = TowerLimits {
        max_channels: args.max_channels,
        max_states: args.max_states,
        ..TowerLimits::default()
    };
    let tower = Tower::restore(limits, store.load()?);
    let wallet_seed = WalletSeed::from_bytes(tagged_hash("asyncpay/tower/v1/wallet", &[&seed]));
    let mut wallet = tokio::task::block_in_place(|| -> anyhow::Result<Wallet> {
        let mut w = Wallet::create_or_load(
            args.data_dir.join("wallet.sqlite"),
            &wallet_seed,
            args.network,
        )?;
        w.sync(&args.electrum)?;
        Ok(w)
    })?;
    let fee_address = wallet.new_address()?.to_string();
    let rpc = Rpc::new(args.rpc_url.clone(), args.rpc_cookie.clone());
    let tip = tip(&rpc).await?;
    // A new tower starts at the tip: nothing before its first appointment concerns it.
    let scanned = match store.scanned()? {
        Some(h) => h,
        None => {
            store.save(&[], Some(tip))?;
            tip
        }
    };
    let state: AppState = Arc::new(Mutex::new(Shared {
        tower,
        store,
        scanned,
        fee_address: fee_address.clone(),
    }));

    let app = Router::new()
        .route("/v1/appointments", post(appointment))
        .route("/v1/info", get(info))
        .layer(DefaultBodyLimit::max(512 * 1024))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let url = format!("http://{}", listener.local_addr()?);
    let ready = json!({"url": url, "fee_address": fee_address, "scanned": scanned, "pid": std::process::id()});
    write_private(
        &args.data_dir.join("tower.json"),
        ready.to_string().as_bytes(),
    )?;
    println!("{}", json!({"event": "watchtower_ready", "tower": ready}));
    let server = tokio::spawn(asyncpay::net::http::serve(
        listener,
        app,
        asyncpay::net::http::HttpLimits::default(),
        shutdown(),
    ));

    let mut attempts: HashMap<Txid, u32> = HashMap::new();
    let stop = shutdown();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(Duration::from_millis(args.poll_ms.max(10))) => {}
        }
        if let Err(e) = scan(&state, &rpc, &mut wallet, &args.electrum, &mut attempts).await {
            eprintln!("{}", json!({"event": "error", "message": format!("{e:#}")}));
        }
    }
    server.abort();
    Ok(())
}

/// Scans the blocks after the last scanned one up to the tip; at the tip, publishes what
/// the open breaches need.
async fn scan(
    state: &AppState,
    rpc: &Rpc,
    wallet: &mut Wallet,
    electrum: &str,
    attempts: &mut HashMap<Txid, u32>,
) -> anyhow::Result<()> {
    let tip = tip(rpc).await?;
    let mut scanned = state.lock().expect("tower lock").scanned;
    while scanned < tip {
        let height = scanned + 1;
        let hash = rpc.call("getblockhash", json!([height])).await?;
        let raw = rpc.call("getblock", json!([hash, 0])).await?;
        let bytes = hex::decode(raw.as_str().context("getblock answers hex")?)?;
        let block: Block = bitcoin::consensus::deserialize(&bytes).context("block decodes")?;
        let outcome = {
            let mut shared = state.lock().expect("tower lock");
            let outcome = shared.tower.block(height, &block);
            shared.store.save(&outcome.stored, Some(height))?;
            shared.scanned = height;
            outcome
        };
        for event in &outcome.events {
            println!(
                "{}",
                json!({"event": "tower", "height": height, "what": event})
            );
        }
        scanned = height;
        if height < tip || outcome.broadcasts.is_empty() {
            continue;
        }
        // The fee wallet must see the block just scanned (its coins may have confirmed in it):
        // electrs can lag bitcoind by a moment.
        for _ in 0..50 {
            tokio::task::block_in_place(|| wallet.sync(electrum))?;
            if wallet.tip_height() >= height {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for tx in &outcome.broadcasts {
            let txid = tx.compute_txid();
            let attempt = attempts.entry(txid).or_insert(0);
            let n = *attempt;
            *attempt += 1;
            match publish(rpc, wallet, tx, n).await {
                Ok(published) => {
                    let feerate = match published {
                        Published::Alone => None,
                        Published::Package { feerate_sat_vb } => Some(feerate_sat_vb),
                    };
                    println!(
                        "{}",
                        json!({"event": "transaction_published", "txid": txid.to_string(), "attempt": n, "feerate_sat_vb": feerate})
                    );
                }
                Err(e) => eprintln!(
                    "{}",
                    json!({"event": "publish_failed", "txid": txid.to_string(), "attempt": n, "error": format!("{e:#}")})
                ),
            }
        }
    }
    Ok(())
}

async fn tip(rpc: &Rpc) -> anyhow::Result<u32> {
    let count = rpc.call("getblockcount", json!([])).await?;
    u32::try_from(count.as_u64().context("getblockcount answers a number")?)
        .context("height fits u32")
}

async fn appointment(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> (StatusCode, Json<Value>) {
    let a: Appointment = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "bad_request", "message": e.to_string()})),
            )
        }
    };
    let mut shared = state.lock().expect("tower lock");
    let stored = match shared.tower.accept(a) {
        Ok(stored) => stored,
        Err(TowerError::MissingLeaves { from }) => {
            return (
                StatusCode::CONFLICT,
                Json(json!({"error": "missing_leaves", "from": from})),
            )
        }
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": e.code(), "message": e.to_string()})),
            )
        }
    };
    // Answered only once durable.
    if let Err(e) = shared.store.save(std::slice::from_ref(&stored), None) {
        eprintln!(
            "{}",
            json!({"event": "error", "message": format!("storing an appointment: {e}")})
        );
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "store", "message": "the appointment was not stored"})),
        );
    }
    (StatusCode::OK, Json(json!({"state": stored.record.state})))
}

async fn info(State(state): State<AppState>) -> Json<Value> {
    let shared = state.lock().expect("tower lock");
    Json(json!({
        "scanned": shared.scanned,
        "channels": shared.tower.len(),
        "breaches": shared.tower.breaches(),
        "fee_address": shared.fee_address,
    }))
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
