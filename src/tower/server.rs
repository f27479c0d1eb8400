//! The watchtower as a process: [`serve`] runs the HTTP API and the block scanner around a
//! [`Tower`] until a shutdown signal. `asyncpay watchtower serve` is [`serve`] with a
//! [`TowerConfig`] from its flags.
//!
//! The data directory (0700) holds `seed`, `tower.sqlite` (appointments and sealed leaves)
//! and `wallet.sqlite` (the BDK wallet that pays the CPFP fees of what the tower publishes),
//! and, once the server is up, `tower.json` (URL and fee address), every file 0600.
//!
//! HTTP API (JSON):
//! - `POST /v1/appointments` with an [`Appointment`]: `200 {"state": n}` once stored
//!   durably; `409 {"error": "missing_leaves", "from": k}` asks for the leaves from state k
//!   on; other refusals are `400 {"error": code, "message": ...}`.
//! - `GET /v1/info`: height scanned, channels held, breaches under way, fee address.
//!
//! One loop scans every new block through bitcoind's RPC (`getblock`, raw), hands it to the
//! [`Tower`], stores what changed together with the height, and only then publishes: at the
//! tip, every transaction an open breach needs, each time with a CPFP child at a higher
//! feerate than the time before, until it confirms.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bitcoin::{Block, Network};
use serde_json::{json, Value};

use super::{Appointment, Tower, TowerError, TowerLimits, TowerStore};
use crate::chain::electrum::Electrum;
use crate::chain::rpc::{publish, Published, Rpc, RpcError};
use crate::chain::wallet::{Wallet, WalletError, WalletSeed};
use crate::crypto::tagged_hash;
use crate::node::files::{load_seed, private_dir, private_file, write_private, FileError};
use crate::node::store::StoreError;

/// What a tower is told at start.
#[derive(Debug, Clone)]
pub struct TowerConfig {
    /// Its data directory (created if missing, 0700).
    pub data_dir: PathBuf,
    /// Where the HTTP API listens (port 0: any free port).
    pub listen: SocketAddr,
    /// bitcoind's RPC URL: blocks are read and packages submitted through it.
    pub rpc_url: String,
    /// bitcoind's RPC cookie file.
    pub rpc_cookie: PathBuf,
    /// The Electrum server the fee wallet syncs with.
    pub electrum: Electrum,
    /// The chain.
    pub network: Network,
    /// How often the chain tip is looked at.
    pub poll: Duration,
    /// Caps on channels, states, leaves and kits.
    pub limits: TowerLimits,
}

/// What can stop the tower or fail a scan.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A file of the data directory.
    #[error(transparent)]
    File(#[from] FileError),
    /// The tower's store.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The fee wallet.
    #[error("wallet: {0}")]
    Wallet(#[from] WalletError),
    /// bitcoind's RPC.
    #[error("rpc: {0}")]
    Rpc(#[from] RpcError),
    /// bitcoind answered something unexpected.
    #[error("unexpected answer to {method}: {detail}")]
    Answer {
        /// The RPC method.
        method: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The listening socket.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

struct Shared {
    tower: Tower,
    store: TowerStore,
    scanned: u32,
    fee_address: String,
}

type AppState = Arc<Mutex<Shared>>;

/// Runs a tower until ctrl-c or SIGTERM. Must run on a multi-threaded tokio runtime (the fee
/// wallet blocks; it runs under `block_in_place`).
pub async fn serve(config: TowerConfig) -> Result<(), ServeError> {
    private_dir(&config.data_dir)?;
    let seed = load_seed(&config.data_dir)?;
    let db_path = config.data_dir.join("tower.sqlite");
    private_file(&db_path)?;
    private_file(&config.data_dir.join("wallet.sqlite"))?;
    let store = TowerStore::open(&db_path)?;
    let tower = Tower::restore(config.limits, store.load()?);
    let wallet_seed = WalletSeed::from_bytes(tagged_hash("asyncpay/tower/v1/wallet", &[&seed]));
    let mut wallet = tokio::task::block_in_place(|| -> Result<Wallet, WalletError> {
        let mut w = Wallet::create_or_load(
            config.data_dir.join("wallet.sqlite"),
            &wallet_seed,
            config.network,
        )?;
        w.sync(&config.electrum)?;
        Ok(w)
    })?;
    let fee_address = wallet.new_address()?.to_string();
    let rpc = Rpc::new(config.rpc_url.clone(), config.rpc_cookie.clone());
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
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let url = format!("http://{local}");
    let ready = json!({"url": url, "fee_address": fee_address, "scanned": scanned, "pid": std::process::id()});
    write_private(
        &config.data_dir.join("tower.json"),
        ready.to_string().as_bytes(),
    )?;
    println!("{}", json!({"event": "watchtower_ready", "tower": ready}));
    let server = tokio::spawn(crate::net::http::serve(
        listener,
        app,
        crate::net::http::HttpLimits::default(),
        shutdown(),
    ));

    let mut attempts: HashMap<bitcoin::hashes::sha256::Hash, u32> = HashMap::new();
    let stop = shutdown();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(config.poll.max(Duration::from_millis(10))) => {}
        }
        if let Err(e) = scan(&state, &rpc, &mut wallet, &config.electrum, &mut attempts).await {
            eprintln!("{}", json!({"event": "error", "message": e.to_string()}));
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
    electrum: &Electrum,
    attempts: &mut HashMap<bitcoin::hashes::sha256::Hash, u32>,
) -> Result<(), ServeError> {
    let tip = tip(rpc).await?;
    let mut scanned = state.lock().expect("tower lock").scanned;
    while scanned < tip {
        let height = scanned + 1;
        let hash = rpc.call("getblockhash", json!([height])).await?;
        let raw = rpc.call("getblock", json!([hash, 0])).await?;
        let bad = |detail: String| ServeError::Answer {
            method: "getblock",
            detail,
        };
        let bytes = hex::decode(raw.as_str().ok_or_else(|| bad("not hex".into()))?)
            .map_err(|e| bad(e.to_string()))?;
        let block: Block =
            bitcoin::consensus::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
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
            let attempt = attempts
                .entry(crate::chain::rpc::escalation_key(tx))
                .or_insert(0);
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
                    json!({"event": "publish_failed", "txid": txid.to_string(), "attempt": n, "error": e.to_string()})
                ),
            }
        }
    }
    Ok(())
}

async fn tip(rpc: &Rpc) -> Result<u32, ServeError> {
    let count = rpc.call("getblockcount", json!([])).await?;
    count
        .as_u64()
        .and_then(|c| u32::try_from(c).ok())
        .ok_or_else(|| ServeError::Answer {
            method: "getblockcount",
            detail: count.to_string(),
        })
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
