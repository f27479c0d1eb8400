//! Why the demo stopped.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use bitcoin::Txid;
use serde_json::Value;

/// Why a demo run failed: a wait that timed out, a child process that died, a node that
/// refused or answered something unexpected, an outcome that is not the protocol's, or a
/// failure of the chain, a store or the system underneath.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// `crash` is not `PARTY:POINT`.
    #[error("--crash {0:?}: expected PARTY:POINT, e.g. S:send:offer")]
    CrashSpec(String),
    /// `crash` names a party the run does not have.
    #[error("--crash: unknown party {0:?} (A, S, B, or P with --routed)")]
    CrashParty(String),
    /// The demo was told to stop (ctrl-c, SIGTERM).
    #[error("interrupted")]
    Interrupted,
    /// A condition did not come about in time.
    #[error("timed out after {limit:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the demo waited.
        limit: Duration,
    },
    /// The regtest chain did not start.
    #[error("starting the regtest chain")]
    ChainStart(#[source] crate::chain::regtest::HarnessError),
    /// A child process could not be started.
    #[error("{what}")]
    Spawn {
        /// Which process.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// A child process exited when it should have been running.
    #[error("{name} exited ({status}); last lines of {}:\n{tail}", log.display())]
    Exited {
        /// The process.
        name: String,
        /// How it exited.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its log.
        tail: String,
    },
    /// The demo has no process of that name.
    #[error("no process {0}")]
    NoProcess(String),
    /// A node asked to stop did not exit in time; it was killed.
    #[error("{name} did not exit within {limit:?} after /v1/stop; killed it")]
    NotStopped {
        /// The node.
        name: String,
        /// How long the demo waited.
        limit: Duration,
    },
    /// A node the demo needed is not running.
    #[error("{0} is not running")]
    NotRunning(&'static str),
    /// The mailbox server printed no line with its URL in time.
    #[error("the mailbox server did not print its URL")]
    MailboxSilent(#[source] std::sync::mpsc::RecvTimeoutError),
    /// The mailbox server's first line is not JSON.
    #[error("mailbox serve printed {line:?}")]
    MailboxLine {
        /// The line.
        line: String,
        /// Why it does not parse.
        source: serde_json::Error,
    },
    /// A node's control interface did not answer.
    #[error("{party} {path}")]
    ControlUnreachable {
        /// The node.
        party: &'static str,
        /// The request.
        path: String,
        /// Why.
        source: reqwest::Error,
    },
    /// A node's control interface answered something that is not JSON.
    #[error("{party} {path}: answer is not JSON: {text}")]
    ControlNotJson {
        /// The node.
        party: &'static str,
        /// The request.
        path: String,
        /// The answer.
        text: String,
        /// Why it does not parse.
        source: serde_json::Error,
    },
    /// A node refused a control request.
    #[error("{party} {path} failed ({status}): {error} {message}")]
    ControlRefused {
        /// The node.
        party: &'static str,
        /// The request.
        path: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The node's error code.
        error: String,
        /// The node's message.
        message: String,
    },
    /// A node's answer, record or file lacks what the demo reads from it; the text says
    /// which and shows what there was.
    #[error("{0}")]
    Answer(String),
    /// A payment ended in another status than the one awaited.
    #[error("{party}: payment ended as {status}, not {want}")]
    PaymentEnded {
        /// The party reporting it.
        party: &'static str,
        /// What it reported.
        status: String,
        /// What the demo waited for.
        want: String,
    },
    /// A node's control answer shows a secret its store holds.
    #[error("{party}: ctl info shows a secret its store holds ({prefix}...)")]
    SecretShown {
        /// The node.
        party: &'static str,
        /// The secret's first characters.
        prefix: String,
    },
    /// S refused B's invoice, but not for the reason the run expects.
    #[error("B's invoice was refused for another reason than {reason}: {record}")]
    RefusedFor {
        /// The reason expected.
        reason: String,
        /// B's payment record.
        record: Value,
    },
    /// A funding outpoint a node reported does not parse.
    #[error("funding outpoint {outpoint}")]
    FundingOutpoint {
        /// The outpoint as reported.
        outpoint: String,
        /// Why it does not parse.
        source: bitcoin::hashes::hex::HexToArrayError,
    },
    /// The two sides of a channel name different funding transactions.
    #[error("{0}: the two sides name different funding transactions")]
    FundingMismatch(&'static str),
    /// The adversary's key (`--adversary wrong-scalar`).
    #[error("adversary key: {0}")]
    AdversaryKey(crate::crypto::keys::KeyError),
    /// B's contact card does not verify.
    #[error("B's contact: {0:?}")]
    Contact(crate::mailbox::keys::KeyError),
    /// `submitpackage` refused the stale update A's backup published.
    #[error("submitpackage refused A's stale update: {0}")]
    PackageRefused(Value),
    /// S's update was mined although the miners were to pass over its fee child.
    #[error("U_{0} was mined although its child was passed over")]
    MinedPassedOver(u32),
    /// A channel transaction without an anchor output.
    #[error("{0} has no anchor")]
    NoAnchor(Txid),
    /// A's seed file could not be read.
    #[error("A's seed")]
    Seed(#[source] std::io::Error),
    /// A's seed file does not hold 32 hex bytes.
    #[error("A's seed is not 32 hex bytes")]
    SeedHex(#[source] hex::FromHexError),
    /// A's backup has no channel of this id.
    #[error("the backup has no channel {0}")]
    BackupChannel(String),
    /// A backed-up channel without parameters.
    #[error("the backup has no channel parameters")]
    BackupParams,
    /// The node restored from A's backup published no update when told to force-close.
    #[error("the restored node published nothing")]
    NothingPublished,
    /// A party that has no settlement output in A–S.
    #[error("{0} has no output in A–S")]
    NoOutput(&'static str),
    /// The sequence diagram could not be written (`svg`).
    #[error("writing the sequence diagram to {}", path.display())]
    Svg {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The regtest chain.
    #[error(transparent)]
    Chain(#[from] crate::chain::regtest::HarnessError),
    /// A bitcoind RPC call.
    #[error(transparent)]
    Rpc(#[from] crate::chain::regtest::RpcError),
    /// A node's store, read by the demo.
    #[error(transparent)]
    Store(#[from] crate::node::store::StoreError),
    /// The node core restored from A's backup.
    #[error(transparent)]
    Node(#[from] crate::node::core::NodeError),
    /// A transaction builder.
    #[error(transparent)]
    Tx(#[from] crate::tx::TxError),
    /// The mailbox client the adversary posts with.
    #[error(transparent)]
    Mailbox(#[from] crate::mailbox::client::ClientError),
    /// The HTTP client of the control calls.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// A node's SQLite database, read by the demo.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// A wallet address a node gave.
    #[error(transparent)]
    Address(#[from] bitcoin::address::ParseError),
    /// A txid an RPC answer gave.
    #[error(transparent)]
    Txid(#[from] bitcoin::hashes::hex::HexToArrayError),
    /// A sighash of the demo's fee child.
    #[error(transparent)]
    Sighash(#[from] bitcoin::sighash::TaprootError),
    /// A block height that does not fit.
    #[error(transparent)]
    Height(#[from] std::num::TryFromIntError),
    /// A file, a directory or a runtime.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}
