//! `asyncpay regtest|signet up|mine|faucet|down`: flags into `asyncpay::chain::network`, and
//! printing.
use std::path::PathBuf;
use std::time::Duration;

use asyncpay::chain::network::{self, Chain, ServeOptions};
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum NetworkCmd {
    /// Start the network in the background (bitcoind, electrs unless --no-electrs) and return
    /// once it is ready, printing its RPC URL, cookie file, Electrum URL and a bitcoin-cli line.
    Up(UpArgs),
    /// Mine N blocks on the running network and print the new height.
    Mine {
        /// How many blocks.
        blocks: u64,
        /// The network's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Pay an address of the network from its faucet (through the mempool: mine a block to
    /// confirm it) and print the new output (`txid:vout`).
    Faucet {
        /// Where to.
        address: String,
        /// How much, in satoshis (at most 10 BTC a request).
        amount_sat: u64,
        /// The network's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Stop the network and every process of it.
    Down {
        /// The network's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// How long to wait for it to stop before killing it.
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
    /// Run the network in the foreground (what `up` starts in the background).
    #[command(hide = true)]
    Serve(ServeArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    /// Where the network keeps its files (network.json, network.log, chain/).
    #[arg(long)]
    data_dir: PathBuf,
    /// Do not run electrs (a node's wallet needs it; `bitcoin-cli` alone does not).
    #[arg(long)]
    no_electrs: bool,
    /// Signet only: the seed of the block key (the same seed gives the same challenge).
    #[arg(long)]
    seed: Option<String>,
    /// Mine one block every SECS seconds.
    #[arg(long, value_name = "SECS")]
    block_interval: Option<u64>,
}

#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// How long to wait for the network to be ready.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
}

pub fn run(chain: Chain, command: NetworkCmd) -> anyhow::Result<()> {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    };
    match command {
        NetworkCmd::Up(args) => up(chain, args),
        NetworkCmd::Mine { blocks, data_dir } => {
            let height = runtime()?.block_on(network::mine(&data_dir, blocks))?;
            println!("{height}");
            Ok(())
        }
        NetworkCmd::Faucet {
            address,
            amount_sat,
            data_dir,
        } => {
            let address = address
                .parse::<bitcoin::Address<bitcoin::address::NetworkUnchecked>>()?
                .require_network(chain.bitcoin_network())?;
            let paid = runtime()?.block_on(network::faucet(
                &data_dir,
                &address.script_pubkey(),
                amount_sat,
            ))?;
            println!("{}", paid.outpoint);
            Ok(())
        }
        NetworkCmd::Down {
            data_dir,
            timeout_secs,
        } => {
            let pid =
                runtime()?.block_on(network::down(&data_dir, Duration::from_secs(timeout_secs)))?;
            match pid {
                Some(pid) => eprintln!("{} stopped (server pid {pid})", chain.as_str()),
                None => eprintln!("{} stopped (leftover processes killed)", chain.as_str()),
            }
            Ok(())
        }
        NetworkCmd::Serve(args) => Ok(runtime()?.block_on(network::serve(args.options(chain)))?),
    }
}

impl ServeArgs {
    fn options(self, chain: Chain) -> ServeOptions {
        ServeOptions {
            chain,
            data_dir: self.data_dir,
            electrs: !self.no_electrs,
            seed: self.seed,
            block_interval: self.block_interval.map(Duration::from_secs),
        }
    }
}

fn up(chain: Chain, args: UpArgs) -> anyhow::Result<()> {
    let mut options = args.serve.options(chain);
    if chain == Chain::Regtest && options.seed.is_some() {
        return Err(network::NetworkError::SeedOnRegtest.into());
    }
    options.data_dir = network::absolute(&options.data_dir)?;
    let data_dir = options.data_dir.clone();
    let server = network::server_command(&std::env::current_exe()?, &options);
    eprintln!(
        "starting {} in {} (log: {})",
        chain.as_str(),
        data_dir.display(),
        data_dir.join(network::LOG_FILE).display()
    );
    let info = network::up(
        &data_dir,
        server,
        Duration::from_secs(args.timeout_secs),
        |waited| eprintln!("  still starting ({} s)", waited.as_secs()),
    )?;
    if args.json {
        let mut value = serde_json::to_value(&info)?;
        value["bitcoin_cli_line"] = info.bitcoin_cli_line().into();
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("{info}");
    }
    Ok(())
}
