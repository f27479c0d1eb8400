//! The `asyncpay` command line.
use clap::{Parser, Subcommand};

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Env => {
            println!("BITCOIND_EXE={}", std::env::var("BITCOIND_EXE").unwrap_or_default());
            println!("ELECTRS_EXE={}", std::env::var("ELECTRS_EXE").unwrap_or_default());
        }
    }
    Ok(())
}
