//! The `asyncpay` command line.
use std::path::PathBuf;

use asyncpay::config::{self, ConfigFile};
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

mod bench;
mod demo;
mod mailbox;
mod network;
mod node;
mod pos;
mod proof;
mod watchtower;

/// asyncpay: asynchronous Lightning payments by pay-for-signature (research implementation).
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML) for `node run`, `mailbox serve` and `watchtower serve`: a
    /// table per command (`[node]`, `[mailbox]`, `[watchtower]`) whose keys are flag names;
    /// flags and their environment variables override it (docs/signet.md).
    #[arg(long, global = true, value_name = "FILE", env = "ASYNCPAY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The command line, with the configuration file's values as its flags' defaults. The file
/// is found before parsing (it changes how the rest parses): `--config FILE`,
/// `--config=FILE` or `ASYNCPAY_CONFIG`.
fn parse() -> anyhow::Result<Cli> {
    let args: Vec<_> = std::env::args_os().collect();
    let given = args.iter().enumerate().find_map(|(i, arg)| {
        let arg = arg.to_str()?;
        match arg.strip_prefix("--config") {
            Some("") => args.get(i + 1).map(PathBuf::from),
            Some(rest) => rest.strip_prefix('=').map(PathBuf::from),
            None => None,
        }
    });
    let path = given.or_else(|| std::env::var_os("ASYNCPAY_CONFIG").map(PathBuf::from));
    let mut command = Cli::command();
    if let Some(path) = path {
        command = config::apply(command, &ConfigFile::read(&path)?)?;
    }
    Ok(Cli::from_arg_matches(&command.get_matches())?)
}

#[derive(Subcommand)]
enum Command {
    /// The narrated regtest demo: A pays an offline B through its LSP S while going offline
    /// itself; every party is a separate process.
    Demo(demo::DemoArgs),
    /// Print the bitcoind / electrs paths the regtest harness uses (from BITCOIND_EXE /
    /// ELECTRS_EXE or the file scripts/setup writes); with --check, start a throwaway
    /// regtest node and report whether it enforces BIP118.
    Env {
        /// Start a regtest node and check that `anyprevout` is active.
        #[arg(long)]
        check: bool,
    },
    /// Mailbox server and client.
    Mailbox(mailbox::MailboxArgs),
    /// Run a node (payer, LSP or payee) as a process with its own data directory.
    Node {
        #[command(subcommand)]
        command: node::NodeCmd,
    },
    /// Control a running node: one subcommand per request (`asyncpay ctl --help` lists
    /// them); `raw` sends any request as JSON.
    Ctl(node::CtlArgs),
    /// A watchtower for nodes that go offline for longer than their channels' shared delay:
    /// it answers an older update with the latest one it was given, and settles it.
    Watchtower {
        #[command(subcommand)]
        command: watchtower::TowerCmd,
    },
    /// A long-lived regtest network in a data directory: `up` (in the background), `mine N`,
    /// `down`.
    Regtest {
        #[command(subcommand)]
        command: network::NetworkCmd,
    },
    /// A long-lived private signet whose blocks this process signs (BIP325, the challenge
    /// derived from --seed): `up` (in the background), `mine N`, `down`.
    Signet {
        #[command(subcommand)]
        command: network::NetworkCmd,
    },
    /// Point of sale: `accept` checks a letter handed to a merchant's offline device and
    /// queues it for sale; `relay` carries an offline payer's session to its LSP.
    Pos {
        #[command(subcommand)]
        command: pos::PosCmd,
    },
    /// Proofs of payment: `verify` checks one offline against the payee's contact card.
    Proof {
        #[command(subcommand)]
        command: proof::ProofCmd,
    },
    /// Benchmarks that print figures beside a named baseline.
    Bench {
        #[command(subcommand)]
        kind: BenchKind,
    },
}

#[derive(Subcommand)]
enum BenchKind {
    /// Mailbox throughput and latency against SQLite's durable single-insert rate.
    Mailbox(bench::BenchMailboxArgs),
    /// Adaptor signatures, price points and BIP118 sighashes against libsecp256k1's BIP340
    /// sign and verify.
    Crypto(bench::BenchCryptoArgs),
    /// Capital locked per payment (sat·blocks) under pay-for-signature against held-HTLC
    /// baselines, from a seeded simulation over documented offline-time distributions.
    Capital(bench::BenchCapitalArgs),
    /// The asynchronous payment: payee-online latency per step, messages per payment, bytes
    /// S stores per pending payment, S's sale throughput; each beside a baseline.
    #[command(long_about = asyncpay::bench::payment::ABOUT)]
    Payment(bench::BenchPaymentArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = parse()?;
    match cli.command {
        Command::Demo(args) => demo::run(args)?,
        Command::Env { check } => print!("{}", asyncpay::chain::regtest::check_environment(check)?),
        Command::Mailbox(args) => mailbox::run(args)?,
        Command::Node { command } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(node::run(command))?,
        Command::Watchtower { command } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(watchtower::run(command))?,
        Command::Ctl(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(node::ctl(args))?,
        Command::Regtest { command } => {
            network::run(asyncpay::chain::network::Chain::Regtest, command)?
        }
        Command::Signet { command } => {
            network::run(asyncpay::chain::network::Chain::Signet, command)?
        }
        Command::Pos { command } => pos::run(command)?,
        Command::Proof { command } => proof::run(command)?,
        Command::Bench { kind } => match kind {
            BenchKind::Mailbox(args) => bench::mailbox(args)?,
            BenchKind::Crypto(args) => bench::crypto(args)?,
            BenchKind::Capital(args) => bench::capital(args)?,
            BenchKind::Payment(args) => bench::payment(args)?,
        },
    }
    Ok(())
}
