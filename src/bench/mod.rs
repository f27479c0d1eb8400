//! Benchmarks behind `asyncpay bench`: each measures in this process and returns its figures
//! beside a baseline measured in the same run; the binary only prints them.
//!
//! | module | what it measures | baseline |
//! |---|---|---|
//! | [`crypto`] | adaptor signatures, price points, BIP118 sighashes, full channel updates | libsecp256k1's BIP340 sign and verify |
//! | [`channel`] | full channel updates, both parties in one process, persisting before sending | (used by [`crypto`]) |
//! | [`mailbox`] | mailbox posts and fetches from concurrent clients over loopback | SQLite's durable single-insert rate |
//! | [`capital`] | capital locked per payment, from the seeded simulation in [`crate::sim`] | held-HTLC schemes |
//! | [`payment`] | payee-online latency per step, messages per payment, bytes S stores per pending payment, S's sales/s; nodes on the one driver with durable stores | Noise round trip, durable SQLite commits, fsyncs |
//!
//! ```
//! let figures = asyncpay::bench::channel::measure(3, false)?;
//! assert!(figures.updates_per_sec > 0.0);
//! # Ok::<(), asyncpay::bench::BenchError>(())
//! ```

pub mod capital;
pub mod channel;
pub mod crypto;
pub mod mailbox;
pub mod payment;

use std::path::PathBuf;

/// Why a benchmark could not run or its measured code misbehaved.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Zero iterations or rounds.
    #[error("iterations and rounds must be positive")]
    NoRounds,
    /// A price point that the sold scalar does not match.
    #[error("price point does not match the signature")]
    PricePoint,
    /// A channel's first message was not an `Open`.
    #[error("unexpected first message")]
    UnexpectedFirstMessage,
    /// A channel or state the benchmark had set up is missing.
    #[error("{0}")]
    Missing(&'static str),
    /// A channel that left the funded phase during the run.
    #[error("channel ended in {0:?}")]
    ChannelPhase(crate::protocol::channel::Phase),
    /// Transfers that did not move exactly their amount.
    #[error("S gained {gained} sat over {updates} transfers of 1 sat")]
    Transfers {
        /// What S gained.
        gained: u64,
        /// How many 1-sat transfers were made.
        updates: u32,
    },
    /// Fewer messages fetched than posted.
    #[error("fetched {fetched} of {total} messages")]
    Fetched {
        /// Messages fetched and opened.
        fetched: usize,
        /// Messages posted.
        total: usize,
    },
    /// A snapshot file the benchmark writes.
    #[error("{}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The single-insert SQLite baseline.
    #[error("single-insert baseline")]
    Baseline(#[source] crate::mailbox::store::StoreError),
    /// The server thread ended before it reported its URL.
    #[error("server thread ended early")]
    ServerThread(#[source] std::sync::mpsc::RecvError),
    /// The mailbox server under test did not start.
    #[error("server failed to start: {0}")]
    ServerStart(String),
    /// A key.
    #[error(transparent)]
    Key(#[from] crate::crypto::keys::KeyError),
    /// An adaptor signature or secret.
    #[error(transparent)]
    Adaptor(#[from] crate::crypto::adaptor::AdaptorError),
    /// A committed nonce.
    #[error(transparent)]
    Nonce(#[from] crate::crypto::nonce::NonceError),
    /// libsecp256k1.
    #[error(transparent)]
    Secp(#[from] bitcoin::secp256k1::Error),
    /// The channel state machine.
    #[error(transparent)]
    Channel(#[from] crate::protocol::channel::ChannelError),
    /// Sealing or opening an envelope.
    #[error(transparent)]
    Envelope(#[from] crate::mailbox::envelope::EnvelopeError),
    /// The mailbox client.
    #[error(transparent)]
    Client(#[from] crate::mailbox::client::ClientError),
    /// The mailbox server.
    #[error(transparent)]
    Server(#[from] crate::mailbox::server::ServerError),
    /// The simulation.
    #[error(transparent)]
    Sim(#[from] crate::sim::SimError),
    /// An HTTP client.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// A client task.
    #[error(transparent)]
    Join(#[from] tokio::task::JoinError),
    /// A file, a directory or a runtime.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}
