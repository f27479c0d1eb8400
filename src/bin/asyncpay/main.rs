//! The `asyncpay` command line.
use clap::{Parser, Subcommand};

mod bench_mailbox;
mod mailbox;

/// asyncpay: asynchronous Lightning payments by pay-for-signature (research implementation).
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the bitcoind / electrs paths the harness would use.
    Env,
    /// Mailbox server and client.
    Mailbox(mailbox::MailboxArgs),
    /// Benchmarks that print figures beside a named baseline.
    Bench {
        #[command(subcommand)]
        kind: BenchKind,
    },
}

#[derive(Subcommand)]
enum BenchKind {
    /// Mailbox throughput and latency against SQLite's durable single-insert rate.
    Mailbox(bench_mailbox::BenchMailboxArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Env => {
            println!("BITCOIND_EXE={}", std::env::var("BITCOIND_EXE").unwrap_or_default());
            println!("ELECTRS_EXE={}", std::env::var("ELECTRS_EXE").unwrap_or_default());
        }
        Command::Mailbox(args) => mailbox::run(args)?,
        Command::Bench { kind } => match kind {
            BenchKind::Mailbox(args) => bench_mailbox::run(args)?,
        },
    }
    Ok(())
}
