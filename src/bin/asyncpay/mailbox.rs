//! `asyncpay mailbox ...`: run a mailbox server, manage keys and contacts, send, fetch, ack.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use asyncpay::mailbox::client::MailboxClient;
use asyncpay::mailbox::envelope::EnvelopeId;
use asyncpay::mailbox::keys::{Contact, NodeKey, VerifiedContact};
use asyncpay::mailbox::proxy::{ForwardedHeader, TrustedProxy};
use asyncpay::mailbox::server::{shutdown_signal, MailboxServer, ServerConfig};
use asyncpay::mailbox::webhook::WebhookPolicy;
use clap::{Args, Subcommand};
use serde_json::json;

/// Mailbox commands.
#[derive(Args)]
pub struct MailboxArgs {
    #[command(subcommand)]
    command: MailboxCommand,
}

#[derive(Subcommand)]
enum MailboxCommand {
    /// Run a mailbox server until SIGTERM or ctrl-c.
    Serve(ServeArgs),
    /// Create a node key file (32-byte secret, hex).
    Keygen {
        /// Where to write the key (must not exist).
        #[arg(long)]
        out: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a signed contact (node key, age recipient, mailbox URL) for a key.
    Contact {
        /// Node key file.
        #[arg(long)]
        key: PathBuf,
        /// Mailbox server URL to advertise.
        #[arg(long)]
        url: String,
    },
    /// Encrypt a message to a payee and post it to its mailbox.
    Send(SendArgs),
    /// Fetch, decrypt and print the messages in your mailbox.
    Fetch(FetchArgs),
    /// Delete messages from your mailbox.
    Ack(AckArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (port 0: any free port; the bound URL is printed on stdout).
    #[arg(
        long,
        env = "ASYNCPAY_MAILBOX_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    listen: SocketAddr,
    /// Directory for the SQLite store.
    #[arg(
        long,
        env = "ASYNCPAY_MAILBOX_DATA_DIR",
        default_value = "mailbox-data"
    )]
    data_dir: PathBuf,
    /// Largest accepted envelope in bytes.
    #[arg(
        long,
        env = "ASYNCPAY_MAILBOX_MAX_MESSAGE_BYTES",
        default_value_t = 65536
    )]
    max_message_bytes: usize,
    /// Most live messages per mailbox.
    #[arg(long, env = "ASYNCPAY_MAILBOX_MAX_MESSAGES", default_value_t = 1000)]
    max_messages: u32,
    /// Longest time a message is kept, in seconds.
    #[arg(long, env = "ASYNCPAY_MAILBOX_MAX_TTL_SECS", default_value_t = 604_800)]
    max_ttl_secs: u64,
    /// Seconds between expiry sweeps.
    #[arg(long, env = "ASYNCPAY_MAILBOX_SWEEP_SECS", default_value_t = 30)]
    sweep_secs: u64,
    /// Requests per second per client IP.
    #[arg(long, env = "ASYNCPAY_MAILBOX_IP_RATE", default_value_t = 200.0)]
    ip_rate: f64,
    /// Request burst per client IP.
    #[arg(long, env = "ASYNCPAY_MAILBOX_IP_BURST", default_value_t = 1000.0)]
    ip_burst: f64,
    /// Posts per second per stamped sender.
    #[arg(long, env = "ASYNCPAY_MAILBOX_SENDER_RATE", default_value_t = 20.0)]
    sender_rate: f64,
    /// Post burst per stamped sender.
    #[arg(long, env = "ASYNCPAY_MAILBOX_SENDER_BURST", default_value_t = 100.0)]
    sender_burst: f64,
    /// Most operations per group-commit transaction.
    #[arg(long, env = "ASYNCPAY_MAILBOX_MAX_BATCH", default_value_t = 512)]
    max_batch: usize,
    /// Most writes waiting for the store; beyond it a write is answered 503 with
    /// `Retry-After: 1` instead of queueing without bound.
    #[arg(long, env = "ASYNCPAY_MAILBOX_MAX_QUEUE", default_value_t = 4096)]
    max_queue: usize,
    /// Refuse webhook registrations.
    #[arg(long)]
    no_webhooks: bool,
    /// Least seconds between two webhook calls for one mailbox (mail arriving sooner is
    /// announced by one call when the interval ends).
    #[arg(
        long,
        env = "ASYNCPAY_MAILBOX_WEBHOOK_INTERVAL_SECS",
        default_value_t = 5
    )]
    webhook_interval_secs: u64,
    /// Webhooks may be plain http and point at loopback or private addresses. For tests
    /// on one machine only: it lets any client make the server call internal services.
    #[arg(long)]
    insecure_webhooks_for_tests: bool,
    /// Most webhooks registered in total.
    #[arg(long, env = "ASYNCPAY_MAILBOX_MAX_WEBHOOKS", default_value_t = 10_000)]
    max_webhooks: usize,
    /// Most webhooks registered from one client address.
    #[arg(
        long,
        env = "ASYNCPAY_MAILBOX_MAX_WEBHOOKS_PER_IP",
        default_value_t = 16
    )]
    max_webhooks_per_ip: usize,
    /// Milliseconds a connection has to send a request's headers (also how long an idle
    /// keep-alive connection is kept).
    #[arg(
        long,
        env = "ASYNCPAY_MAILBOX_HEADER_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    header_timeout_ms: u64,
    /// Milliseconds to wait for the next piece of a request body.
    #[arg(
        long,
        env = "ASYNCPAY_MAILBOX_BODY_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    body_timeout_ms: u64,
    /// Most open connections; at the cap the oldest with no request in flight is dropped to
    /// make room.
    #[arg(long, env = "ASYNCPAY_MAILBOX_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Most open connections from one client address (counted per peer: a trusted proxy is
    /// exempt, but not from --max-connections).
    #[arg(
        long,
        env = "ASYNCPAY_MAILBOX_MAX_CONNECTIONS_PER_IP",
        default_value_t = 64
    )]
    max_connections_per_ip: usize,
    /// A reverse proxy (IP address or CIDR range, e.g. 127.0.0.1 or 10.0.0.0/8) whose
    /// forwarding header names the client for the per-address limits and logs; repeat for
    /// several (the environment variable takes a comma-separated list). The header is
    /// ignored from every other peer.
    #[arg(
        long = "trusted-proxy",
        value_name = "ADDR",
        env = "ASYNCPAY_MAILBOX_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<TrustedProxy>,
    /// The header trusted proxies write the client address into: x-forwarded-for or
    /// forwarded (RFC 7239). Only this one is read.
    #[arg(
        long,
        env = "ASYNCPAY_MAILBOX_FORWARDED_HEADER",
        default_value = "x-forwarded-for"
    )]
    forwarded_header: ForwardedHeader,
    /// Log as JSON lines (stderr).
    #[arg(long)]
    log_json: bool,
    /// Print the listening line as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SendArgs {
    /// Mailbox server URL (defaults to the contact's URL).
    #[arg(long)]
    server: Option<String>,
    /// Payee's signed contact (JSON file from `asyncpay mailbox contact`).
    #[arg(long, conflicts_with_all = ["to", "age"])]
    to_contact: Option<PathBuf>,
    /// Payee's node key (hex), with --age.
    #[arg(long, requires = "age")]
    to: Option<String>,
    /// Payee's age recipient (age1...), with --to.
    #[arg(long, requires = "to")]
    age: Option<String>,
    /// Your node key file, to sign the letter and stamp the envelope (omit to send anonymously).
    #[arg(long)]
    from: Option<PathBuf>,
    /// Message text.
    #[arg(long, conflicts_with = "file")]
    message: Option<String>,
    /// File whose bytes are the message.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Envelope id (32 hex); reuse it to make a retry idempotent. Random by default.
    #[arg(long)]
    id: Option<String>,
    /// Time to live in seconds.
    #[arg(long, default_value_t = 86_400)]
    ttl_secs: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct FetchArgs {
    /// Mailbox server URL.
    #[arg(long)]
    server: String,
    /// Your node key file.
    #[arg(long)]
    key: PathBuf,
    /// Most messages to fetch.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Seconds to wait for mail if the mailbox is empty.
    #[arg(long, default_value_t = 0)]
    wait_secs: u64,
    /// Delete the messages after they are decrypted.
    #[arg(long)]
    ack: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct AckArgs {
    /// Mailbox server URL.
    #[arg(long)]
    server: String,
    /// Your node key file.
    #[arg(long)]
    key: PathBuf,
    /// Envelope ids (hex) to delete.
    #[arg(required = true)]
    ids: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Runs a mailbox command.
pub fn run(args: MailboxArgs) -> anyhow::Result<()> {
    match args.command {
        MailboxCommand::Serve(a) => serve(a),
        MailboxCommand::Keygen { out, json } => {
            let key = NodeKey::generate();
            key.write_file(&out)?;
            if json {
                println!(
                    "{}",
                    json!({"key_file": out, "node_key": key.public().to_string(),
                           "age_recipient": key.age_recipient().to_string()})
                );
            } else {
                println!("node key:      {}", key.public());
                println!("age recipient: {}", key.age_recipient());
                println!("secret written to {}", out.display());
            }
            Ok(())
        }
        MailboxCommand::Contact { key, url } => {
            let key = NodeKey::read_file(&key)?;
            let contact = Contact::sign(&key, &url, asyncpay::mailbox::unix_now());
            println!("{}", serde_json::to_string_pretty(&contact)?);
            Ok(())
        }
        MailboxCommand::Send(a) => runtime()?.block_on(send(a)),
        MailboxCommand::Fetch(a) => runtime()?.block_on(fetch(a)),
        MailboxCommand::Ack(a) => runtime()?.block_on(ack(a)),
    }
}

fn serve(a: ServeArgs) -> anyhow::Result<()> {
    asyncpay::log::init(a.log_json, std::io::stderr)?;
    let mut config = ServerConfig::new(&a.data_dir);
    config.listen = a.listen;
    config.max_message_bytes = a.max_message_bytes;
    config.max_messages_per_mailbox = a.max_messages;
    config.max_ttl_secs = a.max_ttl_secs;
    config.sweep_interval = Duration::from_secs(a.sweep_secs.max(1));
    config.ip_rate_per_sec = a.ip_rate;
    config.ip_burst = a.ip_burst;
    config.sender_rate_per_sec = a.sender_rate;
    config.sender_burst = a.sender_burst;
    config.max_batch = a.max_batch;
    config.max_queue = a.max_queue;
    config.webhooks = !a.no_webhooks;
    config.webhook_min_interval = Duration::from_secs(a.webhook_interval_secs);
    config.webhook_policy = WebhookPolicy {
        allow_http: a.insecure_webhooks_for_tests,
        allow_private: a.insecure_webhooks_for_tests,
    };
    config.max_webhooks = a.max_webhooks;
    config.max_webhooks_per_ip = a.max_webhooks_per_ip;
    config.header_timeout = Duration::from_millis(a.header_timeout_ms.max(1));
    config.body_timeout = Duration::from_millis(a.body_timeout_ms.max(1));
    config.max_connections = a.max_connections;
    config.max_connections_per_ip = a.max_connections_per_ip;
    config.trusted_proxies = a.trusted_proxies;
    config.forwarded_header = a.forwarded_header;
    runtime()?.block_on(async move {
        let server = MailboxServer::start(config).await?;
        if a.json {
            println!(
                "{}",
                json!({"listening": server.url(), "server_key": server.server_key().to_string()})
            );
        } else {
            println!("listening on {}", server.url());
            println!("webhook calls signed by server key {}", server.server_key());
        }
        server.run_until(shutdown_signal()).await?;
        Ok(())
    })
}

fn recipient(a: &SendArgs) -> anyhow::Result<VerifiedContact> {
    if let Some(path) = &a.to_contact {
        return Ok(VerifiedContact::read_file(path)?);
    }
    match (&a.to, &a.age) {
        (Some(to), Some(age)) => Ok(VerifiedContact::from_parts(
            to,
            age,
            a.server.clone().unwrap_or_default(),
        )?),
        _ => bail!("give --to-contact, or --to with --age"),
    }
}

async fn send(a: SendArgs) -> anyhow::Result<()> {
    let to = recipient(&a)?;
    let server = a.server.clone().unwrap_or_else(|| to.mailbox_url.clone());
    if server.is_empty() {
        bail!("no server: give --server");
    }
    let from = a.from.as_deref().map(NodeKey::read_file).transpose()?;
    let payload = match (&a.message, &a.file) {
        (Some(m), _) => m.as_bytes().to_vec(),
        (None, Some(f)) => std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
        (None, None) => bail!("give --message or --file"),
    };
    let id = match &a.id {
        Some(id) => id.parse::<EnvelopeId>()?,
        None => EnvelopeId::random(),
    };
    let payload_len = payload.len();
    let client = MailboxClient::new(&server)?;
    let sent = client
        .send_with_id(
            &to,
            from.as_ref(),
            id,
            payload,
            Duration::from_secs(a.ttl_secs),
        )
        .await?;
    if a.json {
        println!(
            "{}",
            json!({"id": sent.id.to_string(), "duplicate": sent.receipt.duplicate,
                   "received_at": sent.receipt.received_at, "expires_at": sent.receipt.expires_at,
                   "payload_bytes": payload_len, "envelope_bytes": sent.envelope_bytes})
        );
    } else {
        println!(
            "{} {} ({} payload bytes in a {}-byte envelope), expires at {}",
            if sent.receipt.duplicate {
                "already stored"
            } else {
                "stored"
            },
            sent.id,
            payload_len,
            sent.envelope_bytes,
            sent.receipt.expires_at
        );
    }
    Ok(())
}

async fn fetch(a: FetchArgs) -> anyhow::Result<()> {
    let key = NodeKey::read_file(&a.key)?;
    let client = MailboxClient::new(&a.server)?;
    let mail = client
        .fetch_and_open(&key, a.limit, Duration::from_secs(a.wait_secs), a.ack)
        .await?;
    let view = mail.to_json();
    let out = view["messages"].as_array().cloned().unwrap_or_default();
    let acked = mail.acked;
    if a.json {
        println!("{view}");
    } else {
        if out.is_empty() {
            println!("no messages");
        }
        for m in &out {
            println!("{m}");
        }
        if a.ack {
            println!("acknowledged {acked}");
        }
    }
    Ok(())
}

async fn ack(a: AckArgs) -> anyhow::Result<()> {
    let key = NodeKey::read_file(&a.key)?;
    let ids = a
        .ids
        .iter()
        .map(|s| s.parse::<EnvelopeId>())
        .collect::<Result<Vec<_>, _>>()?;
    let client = MailboxClient::new(&a.server)?;
    let deleted = client.ack(&key, &ids).await?;
    if a.json {
        println!("{}", json!({"deleted": deleted}));
    } else {
        println!("deleted {deleted}");
    }
    Ok(())
}
