//! The node runtime: the one driver of a [`NodeCore`](super::core::NodeCore) as a process
//! runs it. `asyncpay node run` is [`run`] with a [`NodeConfig`] from its flags; [`start`]
//! runs the same driver and returns a [`NodeHandle`] whose typed methods (`connect`,
//! `open_channel`, `pay`, `receive`, `cancel`, `fetch`, `close`, `force_close`,
//! `list_channels`, `list_payments`, `new_address`, `balance`, `withdraw`, `contact`,
//! `status`, `stop`) are the control API's requests, and whose [`NodeHandle::events`] is a
//! stream of typed [`NodeEvent`]s. Another process reaches a running node's control API with
//! a [`ControlClient`] (`asyncpay ctl`), and [`wallet_descriptors`] reads a node's wallet
//! descriptors from its seed alone.
//!
//! ```text
//!  peers (Noise, net/) ─┐                      ┌─> store (SQLite), then:
//!  control API (HTTP) ──┼─> one event queue ─> │   send frames, post letters,
//!  chain poll (electrs) ┤   NodeCore::handle   │   broadcast (CPFP via bitcoind),
//!  timer ───────────────┘                      └─> fund channels, push to watchtowers
//! ```
//!
//! One task owns the core and runs it on the one driver ([`super::driver`]): what an input
//! changed is written in one SQLite transaction before any of its actions (persist before
//! send). Peer connections, the control server and the chain poller only feed it events. The data directory (0700) holds `seed`,
//! `node.db` (channels, payments, peers; it holds withheld signatures and PTLC secrets),
//! `wallet.sqlite` (a BDK wallet synced over electrs) and, once the node is up, `node.json`
//! (node key, peer and control addresses), `peer.addr` and `control.token`, every file 0600.
//! Every line the node reports also goes through `tracing` (target `asyncpay::node`);
//! `asyncpay node run` writes it to `node.log` in the data directory (0600, `RUST_LOG` filters,
//! `--log-json` for JSON).
//! Control answers show payments through [`super::views`], never the stored records.
//!
//! The node reports what it does as one JSON object per line: on stdout what happened
//! (`ready`, `connected`, `send`, `letter_posted`, `transaction_published`, `channel`,
//! `payment`, `watchtower_updated`, ...), on stderr what went wrong (`refused`,
//! `dial_failed`, `broadcast_failed`, `error`, ...). Each of these reports but `ready` and
//! `listen_moved` (both before [`start`] returns) is also a [`NodeEvent`] on the handle's
//! event stream, whose serde form is the line itself: a reader of the output parses lines
//! back into `NodeEvent`s (a `channel` line carries a [`ChannelEvent`]).

mod answers;
mod client;
mod control;
mod details;
mod driver;
mod error;
mod events;
mod handle;
mod peers;
mod request;
mod towers;

use crate::chain::electrum::Electrum;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::net::Admission;
use crate::protocol::payment::LspPolicy;

pub use client::{ControlClient, ControlError};
pub use details::{
    list_channels, list_payments, ChannelDetails, CloseDetails, PaymentDetails, PtlcDetails,
};
pub use driver::{run, start};
pub use error::RuntimeError;
pub use events::{ChannelEvent, NodeEvent, EVENT_BUFFER};
pub use handle::{NodeHandle, NodeInfo};
pub use request::{Request, RequestError, COMMANDS};

use super::core::Role;

/// What a node is told at start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The payment role it plays.
    pub role: Role,
    /// Its data directory (created if missing, 0700).
    pub data_dir: PathBuf,
    /// The Electrum server of the chain, e.g. `tcp://127.0.0.1:50001` (a local electrs) or
    /// `ssl://host:50002` (certificate checked unless accepted explicitly).
    pub electrum: Electrum,
    /// The mailbox server's base URL.
    pub mailbox: String,
    /// bitcoind's RPC URL and cookie file: needed to publish channel transactions
    /// (`submitpackage` has no Electrum equivalent).
    pub rpc: Option<(String, PathBuf)>,
    /// The chain.
    pub network: bitcoin::Network,
    /// Where to listen for peers (port 0: the address of the previous run, else any).
    pub listen: SocketAddr,
    /// Blocks between an update confirming and its settlement, for channels this node opens
    /// (default: 32 for a payer, 6 for the others).
    pub shared_delay: Option<u16>,
    /// LSP only: blocks until the PTLC by which the LSP buys a signature expires.
    pub ptlc_delta: u32,
    /// Fault injection: SIGKILL the process at this point of its outputs.
    pub crash_at: Option<CrashPoint>,
    /// Caps on peer handshakes and connections.
    pub admission: Admission,
    /// How long a peer connection may bring no message before it is closed.
    pub idle_timeout: Duration,
    /// Watchtower URLs: each channel's latest complete state is sent to every one of them.
    pub watchtowers: Vec<String>,
}

impl NodeConfig {
    /// A regtest node with the default limits: no RPC, no watchtower, any free port.
    pub fn new(
        role: Role,
        data_dir: impl Into<PathBuf>,
        electrum: impl Into<Electrum>,
        mailbox: impl Into<String>,
    ) -> Self {
        NodeConfig {
            role,
            data_dir: data_dir.into(),
            electrum: electrum.into(),
            mailbox: mailbox.into(),
            rpc: None,
            network: bitcoin::Network::Regtest,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            shared_delay: None,
            ptlc_delta: 28,
            crash_at: None,
            admission: Admission::default(),
            idle_timeout: Duration::from_secs(90),
            watchtowers: vec![],
        }
    }

    /// The shared delay of channels this node opens.
    pub fn shared_delay(&self) -> u16 {
        self.shared_delay.unwrap_or(match self.role {
            Role::Payer => 32,
            _ => 6,
        })
    }
}

/// The seed of a node's BDK wallet, derived from the node's seed (so one mnemonic backs up
/// both the node's keys and its wallet).
pub fn wallet_seed(seed: &[u8; 32]) -> crate::chain::wallet::WalletSeed {
    crate::chain::wallet::WalletSeed::from_bytes(crate::crypto::tagged_hash(
        "asyncpay/node/v1/wallet",
        &[seed],
    ))
}

/// Why a node's wallet descriptors cannot be given.
#[derive(Debug, thiserror::Error)]
pub enum DescriptorsError {
    /// The data directory holds no node seed.
    #[error("no node seed in {}", .0.display())]
    NoSeed(PathBuf),
    /// The seed file.
    #[error(transparent)]
    File(#[from] crate::node::files::FileError),
    /// The wallet's keys.
    #[error(transparent)]
    Wallet(#[from] crate::chain::wallet::WalletError),
    /// A descriptor that does not parse back.
    #[error(transparent)]
    Descriptor(#[from] bdk_wallet::miniscript::Error),
}

/// The output descriptors (external, internal), with checksums, of the wallet of the node
/// whose seed is in `data_dir`: public ones for a watch-only wallet (Sparrow, BDK), or with
/// `private` the ones that can spend. Read from the seed alone; the node need not run.
pub fn wallet_descriptors(
    data_dir: &Path,
    network: bitcoin::Network,
    private: bool,
) -> Result<(String, String), DescriptorsError> {
    use bdk_wallet::miniscript::{Descriptor, DescriptorPublicKey};
    if !data_dir.join("seed").exists() {
        return Err(DescriptorsError::NoSeed(data_dir.to_path_buf()));
    }
    let seed = crate::node::files::load_seed(data_dir)?;
    let (external, internal) =
        crate::chain::wallet::private_descriptors(&wallet_seed(&seed), network)?;
    if private {
        return Ok((external, internal));
    }
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let public = |text: &str| -> Result<String, DescriptorsError> {
        let (descriptor, _) = Descriptor::<DescriptorPublicKey>::parse_descriptor(&secp, text)?;
        Ok(descriptor.to_string())
    };
    Ok((public(&external)?, public(&internal)?))
}

/// The fee of a cooperative close when none is given: 2 sat/vB on its 154 vB (one key-path
/// input, two P2TR outputs; see docs/transactions.md), paid from the proposer's balance.
pub const DEFAULT_CLOSE_FEE_SAT: u64 = 2 * 154;

/// The LSP's pricing: 100 sat plus 1,000 ppm, offers valid 1,008 blocks.
pub fn lsp_policy(ptlc_delta: u32) -> LspPolicy {
    LspPolicy {
        fee_base_sat: 100,
        fee_ppm: 1_000,
        offer_lifetime: 1_008,
        ptlc_delta,
    }
}

/// A point in the driver's outputs where a node armed with `ctl crash-at` kills itself with
/// SIGKILL (fault injection for tests and the demo): everything before the point is stored
/// and done, nothing after it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrashPoint {
    /// Before the frame of this message is handed to the connection.
    Send(String),
    /// Before the letter is posted to the payee's mailbox.
    PostLetter,
    /// Right after the n-th persist (1-based) since the point was armed.
    Persist(u64),
}

/// A crash point that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown crash point {0:?}: send:<message> | post-letter | persist:<n> (n from 1)")]
pub struct BadCrashPoint(pub String);

impl std::str::FromStr for CrashPoint {
    type Err = BadCrashPoint;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("send", what)) if !what.is_empty() => Ok(CrashPoint::Send(what.to_owned())),
            Some(("persist", n)) => match n.parse::<u64>() {
                Ok(n) if n > 0 => Ok(CrashPoint::Persist(n)),
                _ => Err(BadCrashPoint(s.to_owned())),
            },
            None if s == "post-letter" => Ok(CrashPoint::PostLetter),
            _ => Err(BadCrashPoint(s.to_owned())),
        }
    }
}

impl std::fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CrashPoint::Send(what) => write!(f, "send:{what}"),
            CrashPoint::PostLetter => f.write_str("post-letter"),
            CrashPoint::Persist(n) => write!(f, "persist:{n}"),
        }
    }
}

/// Reports what happened (stdout, one JSON object a line).
pub(crate) fn emit(event: Value) {
    tracing::info!(target: "asyncpay::node", "{event}");
    println!("{event}");
}

/// Reports what went wrong (stderr, one JSON object a line).
pub(crate) fn warn(event: Value) {
    tracing::warn!(target: "asyncpay::node", "{event}");
    eprintln!("{event}");
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::CrashPoint;

    #[test]
    fn crash_points_parse_and_print_back() {
        for text in ["send:offer", "post-letter", "persist:3"] {
            let point: CrashPoint = text.parse().unwrap();
            assert_eq!(point.to_string(), text);
        }
        for bad in ["send:", "persist:0", "persist:x", "boom", ""] {
            assert!(bad.parse::<CrashPoint>().is_err(), "{bad}");
        }
    }
}
