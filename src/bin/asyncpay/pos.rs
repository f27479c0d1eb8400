//! `asyncpay pos`: a merchant's device at the counter.
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use asyncpay::node::pos::{self, RelayLimits};

#[derive(clap::Subcommand)]
pub enum PosCmd {
    /// Check a sale letter handed over by a payer (the file stands in for QR or NFC), with
    /// no network, and queue it for the merchant's node to sell the next time it runs (at
    /// once if it runs). Checks: sealed to this node and signed by the letter's payer; the
    /// LSP's offer is signed, names this merchant, is irrevocable, pays the amount the till
    /// asks and runs at least --min-blocks past the height the device assumes (the last tip
    /// its node saw, plus a block per ten minutes since); the letter, completed with this
    /// node's receipt signature, sells the offer's point; no other letter or payment of this
    /// node holds its receipt slot; the node has a channel with the LSP. Prints what was
    /// accepted and what that guarantees; exits non-zero, storing nothing, on any refusal.
    Accept {
        /// The merchant node's data directory (the node may be stopped or running).
        #[arg(long)]
        data_dir: PathBuf,
        /// The letter: a file holding the sealed envelope (binary, or hex as `ctl letter`
        /// prints it), or `-` for standard input.
        letter: String,
        /// What the till asks, in sat: a letter paying another amount is refused.
        #[arg(long)]
        amount_sat: u64,
        /// Blocks the offer must still run past the last height the node saw.
        #[arg(long, default_value_t = 6)]
        min_blocks: u32,
    },
    /// Relay an offline payer's connection to its LSP: every connection accepted on
    /// --listen is carried byte for byte to --to and back. The payer's session with the LSP
    /// is end-to-end encrypted and authenticated (Noise): the relay can delay, drop or
    /// corrupt bytes, which ends the session, but cannot read or change a message. Prints
    /// one JSON line per connection carried.
    Relay {
        /// Where the payer's phone connects.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// The LSP's peer address.
        #[arg(long)]
        to: SocketAddr,
        /// Connections carried at once.
        #[arg(long, default_value_t = 8)]
        max_connections: usize,
        /// Close a connection idle this many seconds.
        #[arg(long, default_value_t = 60)]
        idle_secs: u64,
        /// Fault injection, for tests of a dishonest relay: `corrupt:N`, `drop:N` or
        /// `replay:N` does that to the payer's first chunk at or past N bytes of each
        /// connection.
        #[arg(long, value_name = "KIND:BYTES")]
        fault: Option<pos::Fault>,
    },
}

pub fn run(cmd: PosCmd) -> anyhow::Result<()> {
    match cmd {
        PosCmd::Accept {
            data_dir,
            letter,
            amount_sat,
            min_blocks,
        } => {
            // Hex of the largest envelope and a newline, and one byte more to see a longer one.
            let cap = (2 * pos::MAX_ENVELOPE_LEN + 2) as u64;
            let mut bytes = vec![];
            if letter == "-" {
                std::io::stdin().take(cap).read_to_end(&mut bytes)?;
            } else {
                std::fs::File::open(&letter)
                    .with_context(|| format!("reading {letter}"))?
                    .take(cap)
                    .read_to_end(&mut bytes)
                    .with_context(|| format!("reading {letter}"))?;
            }
            // Hex as `ctl letter` prints it, or the envelope's bytes.
            let text = String::from_utf8_lossy(&bytes);
            let envelope = match hex::decode(text.trim()) {
                Ok(decoded) => decoded,
                Err(_) => bytes,
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let accepted = pos::accept(&data_dir, &envelope, amount_sat, min_blocks, now)?;
            println!("{}", serde_json::to_string_pretty(&accepted)?);
            Ok(())
        }
        PosCmd::Relay {
            listen,
            to,
            max_connections,
            idle_secs,
            fault,
        } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(async move {
                let listener = tokio::net::TcpListener::bind(listen).await?;
                println!(
                    "{}",
                    serde_json::json!({"event": "relaying", "listen": listener.local_addr()?.to_string(), "to": to.to_string()})
                );
                let limits = RelayLimits {
                    max_connections,
                    idle: Duration::from_secs(idle_secs),
                    fault,
                    ..RelayLimits::default()
                };
                pos::relay(listener, to, limits, |event| {
                    println!("{}", serde_json::to_value(&event).unwrap_or_default());
                })
                .await?;
                Ok(())
            }),
    }
}
