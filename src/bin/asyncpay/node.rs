//! `asyncpay node run` (flags into an [`asyncpay::node::runtime::NodeConfig`], then the
//! library's runtime) and `asyncpay ctl` (one request through the library's
//! [`ControlClient`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use asyncpay::chain::electrum::Electrum;
use asyncpay::net::Admission;
use asyncpay::node::core::Role;
use asyncpay::node::runtime::{ControlClient, CrashPoint, NodeConfig};
use clap::builder::TypedValueParser as _;
use serde_json::Value;

/// Node subcommands.
#[derive(clap::Subcommand)]
pub enum NodeCmd {
    /// Run a node in the foreground until `asyncpay ctl ... stop` or a signal.
    Run(Box<RunArgs>),
    /// Print the node's seed as a 24-word BIP39 mnemonic (creating the seed if the data
    /// directory has none). Anyone with these words controls the node's keys and wallet.
    Mnemonic {
        /// The node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Restore a node's seed from its 24-word mnemonic, read from standard input, into a data
    /// directory that has no seed yet; then `node run` on it is the same node (same key,
    /// same wallet). Channels are not in the seed: they come from the node's store.
    Restore {
        /// The data directory to create.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Give the node a new receipt card epoch, at random: run it on a data directory restored
    /// from a copy (a backup of the files), whose record of spent receipt slots may be older
    /// than the node's last payment received. Cards issued before are void (`node restore`
    /// does this itself). The node must not be running.
    NewReceiptEpoch {
        /// The node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Print the node wallet's output descriptors, read from the seed file: public ones for a
    /// watch-only wallet (Sparrow, BDK), or with --private the ones that can spend.
    Descriptors {
        /// The node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The chain.
        #[arg(long, default_value = "regtest")]
        network: bitcoin::Network,
        /// Include the master private key (anyone with it can spend the wallet's coins).
        #[arg(long)]
        private: bool,
    },
}

/// `asyncpay node run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The payment role this node plays.
    #[arg(long, value_parser = role_parser())]
    role: Role,
    /// Data directory (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// The chain: a BIP118-enforcing regtest, or a signet (private, or Bitcoin Inquisition's
    /// public one). Addresses and the wallet follow it.
    #[arg(long, default_value = "regtest", value_parser = network_parser())]
    network: bitcoin::Network,
    /// Electrum server of the chain: tcp://127.0.0.1:50001 (a local electrs) or
    /// ssl://host:50002 (TLS; the certificate is checked against the Web PKI roots).
    #[arg(long)]
    electrum: String,
    /// Over ssl://, accept any certificate: only for your own self-signed server reached over
    /// a path you trust (the wallet then believes whoever answers).
    #[arg(long)]
    electrum_accept_invalid_certs: bool,
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
    #[arg(long, default_value_t = 28)]
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
    /// The node's log: every event and problem, with what `RUST_LOG` lets through (default
    /// `info`; e.g. `RUST_LOG=asyncpay=debug`). Default: `node.log` in the data directory,
    /// 0600, appended to.
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Write the log as one JSON object a line instead of text.
    #[arg(long)]
    log_json: bool,
}

/// `asyncpay ctl`.
#[derive(clap::Args)]
pub struct CtlArgs {
    /// The node's data directory (its `node.json` and `control.token` are read).
    #[arg(long)]
    data_dir: PathBuf,
    #[command(subcommand)]
    request: CtlRequest,
}

/// One control request; each answer is printed as JSON. Node keys are hex x-only keys,
/// contact cards are JSON (inline or `@FILE`). Its serde form is the control API's: the
/// command's name (`list-channels`) and its fields.
#[derive(clap::Subcommand, serde::Serialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
enum CtlRequest {
    /// The node's key, role, height, wallet balance, channels and payments.
    Info,
    /// Every channel: peer, side, phase, capacity, funding output, latest state number,
    /// balances to self and to the peer, pending PTLCs, the update and the close under way.
    ListChannels,
    /// Every payment: its id, this node's role in it, status, amount, the LSP's fee and the
    /// rest of its record (never a withheld or bought signature).
    ListPayments,
    /// A new address of the node's wallet.
    Address,
    /// The wallet's balance: confirmed, and pending (unconfirmed).
    Balance,
    /// The wallet's public output descriptors, for a watch-only wallet elsewhere.
    Descriptors,
    /// Send coins from the wallet (not channel funds) to an address.
    Withdraw {
        /// Where to: an address of the node's network.
        #[arg(long)]
        address: String,
        /// How much, in sat.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        amount_sat: Option<u64>,
        /// Everything the wallet can spend, less the fee.
        #[arg(long)]
        #[serde(skip)]
        all: bool,
        /// The feerate in sat/vB.
        #[arg(long, default_value_t = 2)]
        feerate_sat_vb: u64,
    },
    /// Admit a peer's key and, given an address, dial it (and keep redialling); fails with
    /// the reason if the first attempt is refused.
    Connect {
        /// The peer's node key.
        #[arg(long)]
        node_key: String,
        /// Where it listens (`host:port`).
        #[arg(long)]
        addr: Option<String>,
    },
    /// Open a channel to a connected peer, funded from the wallet.
    Open {
        /// The peer's node key.
        #[arg(long)]
        peer: String,
        /// The channel's capacity in sat.
        #[arg(long)]
        capacity_sat: u64,
    },
    /// Print the node's signed contact card (node key, age recipient, mailbox URL, receipt
    /// slots). With any of the flags below it is a static offer (card version 3): what a
    /// payer pays while this node is offline, signed; a payer refuses it once expired, for
    /// another amount, or through another LSP.
    Contact {
        /// The amount a payer must pay, in sat (default: any).
        #[arg(long)]
        #[serde(skip_serializing_if = "Option::is_none")]
        amount_sat: Option<u64>,
        /// What is sold; the payer's letter carries it as its note, which the proof of
        /// payment signs.
        #[arg(long)]
        #[serde(skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// The offer expires this many seconds from now.
        #[arg(long)]
        #[serde(skip_serializing_if = "Option::is_none")]
        expires_in_secs: Option<u64>,
        /// The LSP that may buy this node's signature (its node key): the one it has a
        /// channel with.
        #[arg(long)]
        #[serde(skip_serializing_if = "Option::is_none")]
        lsp: Option<String>,
    },
    /// Pay a payee through the LSP; the payee may be offline.
    Pay {
        /// The LSP's node key.
        #[arg(long)]
        lsp: String,
        /// What the payee receives, in sat.
        #[arg(long)]
        amount_sat: u64,
        /// The payee's contact card (JSON, or @FILE).
        #[arg(long, value_parser = card)]
        contact: Value,
        /// What the LSP keeps (default: its policy's fee).
        #[arg(long)]
        fee_sat: Option<u64>,
        /// A note for the payee.
        #[arg(long)]
        note: Option<String>,
        /// Hold the payment as a PTLC to the LSP expiring this many blocks from now (at most
        /// the channel's update window), so that many payments can wait on one channel at
        /// once; without it the payment withholds a channel update (one at a time).
        #[arg(long)]
        #[serde(skip_serializing_if = "Option::is_none")]
        hold_blocks: Option<u32>,
        /// With --hold-blocks: ask the LSP for an offer this node cannot cancel before its
        /// expiry, which a merchant's offline device accepts (`asyncpay pos accept`).
        #[arg(long, requires = "hold_blocks")]
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        irrevocable: bool,
        /// Keep the sealed letter for this node to hand over (`ctl letter`) instead of
        /// posting it to the payee's mailbox.
        #[arg(long)]
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        hand_over: bool,
    },
    /// Print the sealed sale letter of a payment made with --hand-over, once the LSP's offer
    /// came (`envelope`, hex): what the payer hands the merchant's device.
    Letter {
        /// The payment id (hex).
        #[arg(long)]
        payment_id: String,
    },
    /// Reverse variant: be paid while offline by a payer buying the LSP's signature.
    Receive {
        /// The LSP's node key.
        #[arg(long)]
        lsp: String,
        /// What this node receives, in sat.
        #[arg(long)]
        amount_sat: u64,
        /// The payer's contact card (JSON, or @FILE).
        #[arg(long, value_parser = card)]
        payer_contact: Value,
    },
    /// Cancel a payment not yet sold.
    Cancel {
        /// The payment id (hex).
        #[arg(long)]
        payment_id: String,
    },
    /// Print the proof of payment of a completed payment (payer): the payee's receipt
    /// signature, checked offline by `asyncpay proof verify`.
    Proof {
        /// The payment id (hex).
        #[arg(long)]
        payment_id: String,
    },
    /// Fetch and handle the letters in the node's mailbox.
    Fetch,
    /// Close a channel cooperatively: both parties sign one spend of the funding output
    /// paying each its balance of the last complete state; prints the close's txid. The
    /// channel must be funded and confirmed, with no update under way and no PTLC.
    Close {
        /// The channel id (hex).
        #[arg(long)]
        channel_id: String,
        /// The close transaction's fee in sat (2 sat/vB by default), paid from this node's
        /// balance.
        #[arg(long, default_value_t = asyncpay::node::runtime::DEFAULT_CLOSE_FEE_SAT)]
        fee_sat: u64,
    },
    /// Publish a channel's latest state on chain.
    ForceClose {
        /// The channel id (hex).
        #[arg(long)]
        channel_id: String,
    },
    /// Stop the node.
    Stop,
    /// Fault injection: the node SIGKILLs itself at this point of its outputs.
    CrashAt {
        /// `send:<message>`, `post-letter` or `persist:<n>`.
        #[arg(long)]
        point: String,
    },
    /// Any request as a command name and its JSON fields, as the control API takes them
    /// (`POST /v1/<command>`), e.g. `raw pay '{"lsp": "...", ...}'`.
    Raw {
        /// The command.
        command: String,
        /// Its fields, a JSON object.
        #[arg(default_value = "{}")]
        args: String,
    },
}

/// A contact card given inline or as `@FILE`.
fn card(text: &str) -> anyhow::Result<Value> {
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => text.to_owned(),
    };
    serde_json::from_str(&text).context("a contact card is JSON")
}

impl CtlRequest {
    /// The control API's command name and body.
    fn into_call(self) -> anyhow::Result<(String, Value)> {
        if let CtlRequest::Raw { command, args } = self {
            let body = serde_json::from_str(&args).context("arguments must be JSON")?;
            return Ok((command, body));
        }
        let mut body = serde_json::to_value(&self)?;
        let command = body
            .as_object_mut()
            .and_then(|fields| fields.remove("request"))
            .and_then(|name| name.as_str().map(str::to_owned))
            .context("a request has a command name")?;
        Ok((command, body))
    }
}

/// The chains a node runs on: the ones that enforce BIP118.
fn network_parser() -> impl clap::builder::TypedValueParser<Value = bitcoin::Network> {
    clap::builder::PossibleValuesParser::new(["regtest", "signet"]).map(|name| match &*name {
        "signet" => bitcoin::Network::Signet,
        _ => bitcoin::Network::Regtest,
    })
}

/// `--role`: one of the library's role names, listed in `--help`.
fn role_parser() -> impl clap::builder::TypedValueParser<Value = Role> {
    clap::builder::PossibleValuesParser::new(Role::ALL.map(Role::name))
        .map(|name| name.parse::<Role>().expect("a name from Role::ALL"))
}

/// `asyncpay node run`: the library's runtime with the configuration the flags give.
pub async fn run(cmd: NodeCmd) -> anyhow::Result<()> {
    let args = match cmd {
        NodeCmd::Run(args) => *args,
        NodeCmd::Mnemonic { data_dir } => {
            asyncpay::node::files::private_dir(&data_dir)?;
            let seed = asyncpay::node::files::load_seed(&data_dir)?;
            eprintln!("node: anyone with these words controls this node's keys and wallet");
            println!("{}", asyncpay::node::files::seed_mnemonic(&seed));
            return Ok(());
        }
        NodeCmd::NewReceiptEpoch { data_dir } => {
            // A node's directory: its seed is there.
            let seed = data_dir.join("seed");
            if !seed.exists() {
                anyhow::bail!(
                    "{} has no seed: not a node's data directory",
                    data_dir.display()
                );
            }
            let epoch = asyncpay::node::files::new_receipt_epoch(&data_dir)?;
            println!("{}", serde_json::json!({ "receipt_epoch": epoch }));
            return Ok(());
        }
        NodeCmd::Restore { data_dir } => {
            let mut words = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut words)
                .context("reading the mnemonic from standard input")?;
            let seed = asyncpay::node::files::seed_from_mnemonic(&words)?;
            let epoch = asyncpay::node::files::restore_seed(&data_dir, &seed)?;
            println!(
                "{}",
                serde_json::json!({
                    "restored": data_dir.display().to_string(),
                    "node_key": asyncpay::node::core::node_key(&seed).public_key().to_string(),
                    "receipt_epoch": epoch,
                })
            );
            return Ok(());
        }
        NodeCmd::Descriptors {
            data_dir,
            network,
            private,
        } => {
            let (external, internal) =
                asyncpay::node::runtime::wallet_descriptors(&data_dir, network, private)?;
            println!(
                "{}",
                serde_json::json!({"external": external, "internal": internal})
            );
            return Ok(());
        }
    };
    asyncpay::node::files::private_dir(&args.data_dir)?;
    let log = (args.log_file.clone()).unwrap_or_else(|| args.data_dir.join("node.log"));
    asyncpay::log::init_file(&log, args.log_json)?;
    let rpc = match (args.rpc_url, args.rpc_cookie) {
        (Some(url), Some(cookie)) => Some((url, cookie)),
        (None, None) => None,
        _ => bail!("--rpc-url and --rpc-cookie go together"),
    };
    let config = NodeConfig {
        rpc,
        listen: args.listen,
        shared_delay: args.shared_delay,
        ptlc_delta: args.ptlc_delta,
        crash_at: args.crash_at,
        admission: Admission {
            max_handshakes: args.max_handshakes,
            max_handshakes_per_ip: args.max_handshakes_per_ip,
            first_message_timeout: Duration::from_millis(args.first_message_timeout_ms),
            max_connections_per_peer: args.max_connections_per_peer,
        },
        idle_timeout: Duration::from_secs(args.idle_timeout_secs),
        watchtowers: args.watchtower,
        network: args.network,
        ..NodeConfig::new(
            args.role,
            args.data_dir,
            Electrum::new(args.electrum).accept_invalid_certs(args.electrum_accept_invalid_certs),
            args.mailbox,
        )
    };
    asyncpay::node::runtime::run(config).await?;
    Ok(())
}

/// `asyncpay ctl`: one request to the node running in `--data-dir`; its answer printed.
pub async fn ctl(args: CtlArgs) -> anyhow::Result<()> {
    let (command, value) = args.request.into_call()?;
    let reply = ControlClient::open(&args.data_dir)?
        .call(&command, &value)
        .await?;
    println!("{}", serde_json::to_string_pretty(&reply)?);
    Ok(())
}
