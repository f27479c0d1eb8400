//! `asyncpay bench mailbox`: concurrent clients against an in-process server on loopback,
//! beside this machine's durable single-insert SQLite rate measured in the same run.
//!
//! ```no_run
//! use asyncpay::bench::mailbox::{measure, render, MailboxBenchOptions};
//!
//! let report = measure(&MailboxBenchOptions { messages: 256, ..Default::default() })?;
//! print!("{}", render(&report));
//! # Ok::<(), asyncpay::bench::BenchError>(())
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::BenchError;
use crate::mailbox::client::MailboxClient;
use crate::mailbox::envelope::{seal, EnvelopeId, Letter};
use crate::mailbox::keys::NodeKey;
use crate::mailbox::server::{MailboxServer, ServerConfig, ServerError};
use crate::mailbox::store::single_insert_baseline;
use crate::mailbox::unix_now;

/// What `asyncpay bench mailbox` is told; the defaults are its flags' defaults.
#[derive(Debug, Clone)]
pub struct MailboxBenchOptions {
    /// Concurrent clients (each posts to its own payee's mailbox).
    pub clients: usize,
    /// Total messages posted (spread over the clients).
    pub messages: usize,
    /// Payload bytes per message.
    pub payload_bytes: usize,
    /// Messages per fetch.
    pub fetch_limit: u32,
    /// Inserts for the single-insert SQLite baseline.
    pub baseline_inserts: usize,
    /// Directory for the databases (a temporary directory when `None`).
    pub data_dir: Option<PathBuf>,
}

impl Default for MailboxBenchOptions {
    fn default() -> Self {
        Self {
            clients: 64,
            messages: 4096,
            payload_bytes: 512,
            fetch_limit: 16,
            baseline_inserts: 500,
            data_dir: None,
        }
    }
}

/// The server under test, on its own runtime and threads so that client work cannot
/// delay its tasks.
pub struct ServerThread {
    /// The server's base URL.
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), BenchError>>>,
}

impl ServerThread {
    /// Starts a server with `config` on a thread of its own and waits until it listens.
    pub fn start(config: ServerConfig) -> Result<Self, BenchError> {
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || -> Result<(), BenchError> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("bench-server")
                .build()?;
            runtime.block_on(async move {
                let server = match MailboxServer::start(config).await {
                    Ok(server) => server,
                    Err(e) => {
                        let _ = url_tx.send(Err(e.to_string()));
                        return Err(e);
                    }
                };
                let _ = url_tx.send(Ok(server.url()));
                server
                    .run_until(async {
                        let _ = stop_rx.await;
                    })
                    .await?;
                Ok::<(), ServerError>(())
            })?;
            Ok(())
        });
        let url = url_rx
            .recv()
            .map_err(BenchError::ServerThread)?
            .map_err(BenchError::ServerStart)?;
        Ok(ServerThread {
            url,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the server and waits for its thread.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Runs the benchmark: the baseline, then posts and fetches, then the baseline again. The
/// figures are one JSON object (what `--json` prints).
pub fn measure(args: &MailboxBenchOptions) -> Result<Value, BenchError> {
    let tmp = tempfile::tempdir()?;
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    let clients = args.clients.max(1);
    let per_client = args.messages.div_ceil(clients).max(1);
    let total = per_client * clients;

    // Baseline first, on an idle disk: one transaction per insert, synchronous=FULL, WAL.
    let sample_size = {
        let k = NodeKey::generate();
        let letter = Letter {
            recipient: k.public(),
            id: EnvelopeId::random(),
            created_at: 0,
            payload: vec![0; args.payload_bytes],
        };
        seal(&letter, &k.age_recipient(), u64::MAX, Some(&k), true)?
            .encode()
            .len()
    };
    let baseline_path = dir.join("baseline.sqlite");
    let _ = std::fs::remove_file(&baseline_path);
    let baseline_before =
        single_insert_baseline(&baseline_path, args.baseline_inserts, sample_size)
            .map_err(BenchError::Baseline)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let server_dir = dir.join("server");
        let _ = std::fs::remove_dir_all(&server_dir);
        let mut config = ServerConfig::new(&server_dir);
        config.ip_rate_per_sec = f64::INFINITY;
        config.ip_burst = f64::INFINITY;
        config.sender_rate_per_sec = f64::INFINITY;
        config.sender_burst = f64::INFINITY;
        config.max_messages_per_mailbox = (per_client as u32).max(1000);
        // Every client shares one loopback address: the per-address caps would be theirs.
        config.max_connections = config.max_connections.max(clients * 4 + 64);
        config.max_connections_per_ip = config.max_connections;
        let mut server_handle = ServerThread::start(config)?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(clients * 2)
            .build()?;
        let client = MailboxClient::with_http(&server_handle.url, http)?;

        // Seal everything before the clock starts: sealing is the sender's CPU, not the
        // mailbox's throughput.
        let sender = Arc::new(NodeKey::generate());
        let payees: Vec<Arc<NodeKey>> = (0..clients)
            .map(|_| Arc::new(NodeKey::generate()))
            .collect();
        let now = unix_now();
        let mut work = Vec::new();
        let mut envelope_bytes = 0usize;
        for payee in &payees {
            let mut batch = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let letter = Letter {
                    recipient: payee.public(),
                    id: EnvelopeId::random(),
                    created_at: now,
                    payload: vec![0x5a; args.payload_bytes],
                };
                let bytes = seal(
                    &letter,
                    &payee.age_recipient(),
                    now + 3600,
                    Some(&sender),
                    true,
                )?
                .encode();
                envelope_bytes += bytes.len();
                batch.push(bytes);
            }
            work.push(batch);
        }

        // Posts.
        let start = Instant::now();
        let mut tasks = Vec::new();
        for batch in work {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(batch.len());
                for bytes in batch {
                    let t = Instant::now();
                    client.post_bytes(bytes).await?;
                    lat.push(t.elapsed());
                }
                Ok::<_, BenchError>(lat)
            }));
        }
        let mut post_lat = Vec::with_capacity(total);
        for t in tasks {
            post_lat.extend(t.await??);
        }
        let post_secs = start.elapsed().as_secs_f64();

        // Fetches: each client drains its mailbox, fetch then ack, page by page.
        let start = Instant::now();
        let mut tasks = Vec::new();
        for payee in payees {
            let client = client.clone();
            let limit = args.fetch_limit;
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut pages = Vec::new();
                loop {
                    let t = Instant::now();
                    let page = client.fetch(&payee, limit, Duration::ZERO).await?;
                    lat.push(t.elapsed());
                    if page.is_empty() {
                        break;
                    }
                    let ids: Vec<_> = page.iter().map(|m| m.id).collect();
                    client.ack(&payee, &ids).await?;
                    pages.push(page);
                }
                Ok::<_, BenchError>((lat, payee, pages))
            }));
        }
        let mut fetch_lat = Vec::new();
        let mut received = Vec::new();
        for t in tasks {
            let (lat, payee, pages) = t.await??;
            fetch_lat.extend(lat);
            received.push((payee, pages));
        }
        let fetch_secs = start.elapsed().as_secs_f64();
        server_handle.stop();

        // Decrypt and verify everything after the clock stops (client CPU, not the mailbox's).
        let mut fetched = 0usize;
        for (payee, pages) in &received {
            for m in pages.iter().flatten() {
                m.open(payee)?;
                fetched += 1;
            }
        }
        if fetched != total {
            return Err(BenchError::Fetched { fetched, total });
        }

        post_lat.sort();
        fetch_lat.sort();
        let posts_per_sec = total as f64 / post_secs;
        let overhead = envelope_bytes as f64 / total as f64 - args.payload_bytes as f64;
        Ok::<_, BenchError>(json!({
            "clients": clients,
            "messages": total,
            "payload_bytes": args.payload_bytes,
            "envelope_bytes_mean": envelope_bytes as f64 / total as f64,
            "overhead_bytes_per_message": overhead,
            "posts_per_sec": posts_per_sec,
            "post_p50_ms": percentile(&post_lat, 50.0),
            "post_p99_ms": percentile(&post_lat, 99.0),
            "fetch_requests": fetch_lat.len(),
            "fetches_per_sec": fetch_lat.len() as f64 / fetch_secs,
            "fetched_messages_per_sec": fetched as f64 / fetch_secs,
            "fetched_messages": fetched,
            "fetch_p50_ms": percentile(&fetch_lat, 50.0),
            "fetch_p99_ms": percentile(&fetch_lat, 99.0),
            "target_ratio": 2.0,
            "target_post_p99_ms": 20.0,
        }))
    })?;
    // Measured again after the run; the higher of the two is the baseline, so that disk
    // noise can only make the ratio look worse.
    let _ = std::fs::remove_file(&baseline_path);
    let baseline_after = single_insert_baseline(&baseline_path, args.baseline_inserts, sample_size)
        .map_err(BenchError::Baseline)?;
    let baseline = baseline_before.max(baseline_after);
    let mut report = report;
    let posts_per_sec = report["posts_per_sec"].as_f64().unwrap_or(0.0);
    report["baseline_single_insert_per_sec"] = json!(baseline);
    report["baseline_before_per_sec"] = json!(baseline_before);
    report["baseline_after_per_sec"] = json!(baseline_after);
    report["ratio_posts_to_baseline"] = json!(posts_per_sec / baseline);

    Ok(report)
}

/// The figures of [`measure`] as text, one line per kind of figure.
pub fn render(report: &Value) -> String {
    let mut out = String::new();
    let f = |k: &str| report[k].as_f64().unwrap_or(0.0);
    let _ = writeln!(
        out,
        "mailbox bench: {} clients, {} messages of {} payload bytes, loopback, in-process server",
        report["clients"], report["messages"], report["payload_bytes"]
    );
    let _ = writeln!(
        out,
        "  posts:    {:>9.0} /s   p50 {:>6.2} ms   p99 {:>6.2} ms   (target p99 < 20 ms)",
        f("posts_per_sec"),
        f("post_p50_ms"),
        f("post_p99_ms")
    );
    let _ = writeln!(
        out,
        "  fetches:  {:>9.0} /s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({:.0} messages/s, challenge + fetch per request)",
        f("fetches_per_sec"),
        f("fetch_p50_ms"),
        f("fetch_p99_ms"),
        f("fetched_messages_per_sec")
    );
    let _ = writeln!(
        out,
        "  overhead: {:>9.0} bytes per message (envelope {:.0} bytes; age header, signed letter, stamp)",
        f("overhead_bytes_per_message"),
        f("envelope_bytes_mean")
    );
    let _ = writeln!(
        out,
        "  baseline: {:>9.0} durable single inserts/s (SQLite WAL, synchronous=FULL, one transaction per insert; {:.0} before, {:.0} after the run)",
        f("baseline_single_insert_per_sec"),
        f("baseline_before_per_sec"),
        f("baseline_after_per_sec")
    );
    let _ = writeln!(
        out,
        "  ratio:    {:>9.2}x durable posts/s over the baseline (target >= 2x)",
        f("ratio_posts_to_baseline")
    );
    out
}
