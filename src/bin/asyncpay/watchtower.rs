//! `asyncpay watchtower serve`: flags into an [`asyncpay::tower::server::TowerConfig`], then
//! the library's tower server (its API and files are described there and in
//! docs/watchtower.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use asyncpay::chain::electrum::Electrum;
use asyncpay::tower::server::{serve, TowerConfig};
use asyncpay::tower::TowerLimits;
use bitcoin::Network;

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
    /// Over ssl://, accept any certificate (your own self-signed server only).
    #[arg(long)]
    electrum_accept_invalid_certs: bool,
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
    /// States kept over all channels (48 bytes each).
    #[arg(long, default_value_t = 10_000_000)]
    max_total_states: u64,
}

/// Runs the command.
pub async fn run(cmd: TowerCmd) -> anyhow::Result<()> {
    let TowerCmd::Serve(args) = cmd;
    serve(TowerConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        rpc_url: args.rpc_url,
        rpc_cookie: args.rpc_cookie,
        electrum: Electrum::new(args.electrum)
            .accept_invalid_certs(args.electrum_accept_invalid_certs),
        network: args.network,
        poll: Duration::from_millis(args.poll_ms),
        limits: TowerLimits {
            max_channels: args.max_channels,
            max_states: args.max_states,
            max_total_leaves: args.max_total_states,
            ..TowerLimits::default()
        },
    })
    .await?;
    Ok(())
}
