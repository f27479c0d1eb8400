//! The node's control requests, typed: what `asyncpay ctl` sends and the control API takes
//! (`POST /v1/<command>` with the request's fields as a JSON object).
//!
//! ```
//! use asyncpay::node::runtime::Request;
//! use serde_json::json;
//!
//! let r = Request::parse("open", json!({"peer": "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798", "capacity_sat": 1000}))?;
//! assert!(matches!(r, Request::Open { capacity_sat: 1000, .. }));
//! assert!(Request::parse("open", json!({"capacity_sat": 1000})).is_err());
//! assert!(Request::parse("launch", json!({})).is_err());
//! # Ok::<(), asyncpay::node::runtime::RequestError>(())
//! ```

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::crypto::keys::PublicKey;
use crate::mailbox::keys::Contact;
use crate::protocol::messages::ChannelId;
use crate::protocol::payment::PaymentId;

use super::CrashPoint;

/// A control request.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// The node's key, role, height, wallet balance, channels and payments.
    Info,
    /// A new address of the node's wallet.
    Address,
    /// The wallet's balance: confirmed, and pending (unconfirmed, ours or received).
    Balance,
    /// The wallet's public descriptors, for a watch-only wallet elsewhere.
    Descriptors,
    /// Send coins from the wallet to an address (not channel funds).
    Withdraw {
        /// Where to (an address of the node's network).
        address: String,
        /// How much; without it, everything the wallet can spend less the fee.
        #[serde(default)]
        amount_sat: Option<u64>,
        /// The feerate, sat/vB (default 2).
        #[serde(default)]
        feerate_sat_vb: Option<u64>,
    },
    /// Admit a peer's key and, given an address, dial it (and keep redialling).
    Connect {
        /// The peer's node key (hex, x-only).
        #[serde(deserialize_with = "de_key")]
        node_key: PublicKey,
        /// Where it listens (`host:port`).
        #[serde(default)]
        addr: Option<String>,
    },
    /// Open a channel to a connected peer, funded from the wallet.
    Open {
        /// The peer (hex, x-only).
        #[serde(deserialize_with = "de_key")]
        peer: PublicKey,
        /// The channel's capacity.
        capacity_sat: u64,
    },
    /// The node's signed contact card (node key, age recipient, mailbox URL, receipt
    /// slots); with any of the offer's fields, a static offer (card version 3).
    Contact {
        /// The amount a payer must pay, in sat.
        #[serde(default)]
        amount_sat: Option<u64>,
        /// What is sold (the payer's letter carries it as its note).
        #[serde(default)]
        description: Option<String>,
        /// The offer expires this many seconds from now.
        #[serde(default)]
        expires_in_secs: Option<u64>,
        /// The LSP that may buy this node's signature (hex, x-only).
        #[serde(default)]
        lsp: Option<String>,
    },
    /// Pay a payee through the LSP while the payee may be offline.
    Pay {
        /// The LSP (hex, x-only).
        #[serde(deserialize_with = "de_key")]
        lsp: PublicKey,
        /// What the payee receives.
        amount_sat: u64,
        /// The payee's contact card.
        contact: Contact,
        /// What the LSP keeps (default: its policy's fee).
        #[serde(default)]
        fee_sat: Option<u64>,
        /// A note for the payee.
        #[serde(default)]
        note: Option<String>,
        /// A held sale: the payment waits in a PTLC to the LSP expiring this many blocks
        /// from now (default: a withheld update).
        #[serde(default)]
        hold_blocks: Option<u32>,
        /// For a held sale: an offer the payer cannot cancel before its expiry, which a
        /// merchant's offline device can accept.
        #[serde(default)]
        irrevocable: bool,
        /// Keep the sealed letter for the payer to hand over (`letter`), instead of posting
        /// it to the payee's mailbox.
        #[serde(default)]
        hand_over: bool,
    },
    /// The sealed sale letter of a payment made with `hand_over`, once S's offer came (hex):
    /// what the payer hands the payee's device (`asyncpay pos accept`).
    Letter {
        /// The payment (hex).
        payment_id: PaymentId,
    },
    /// Reverse variant: be paid while offline by a payer buying the LSP's signature.
    Receive {
        /// The LSP (hex, x-only).
        #[serde(deserialize_with = "de_key")]
        lsp: PublicKey,
        /// What we receive.
        amount_sat: u64,
        /// The payer's contact card.
        payer_contact: Contact,
    },
    /// Cancel a payment not yet sold.
    Cancel {
        /// The payment (hex).
        payment_id: PaymentId,
    },
    /// The proof of payment of a completed payment (payer): the payee's receipt signature,
    /// for `asyncpay proof verify`.
    Proof {
        /// The payment (hex).
        payment_id: PaymentId,
    },
    /// Fetch and handle the letters in the node's mailbox.
    Fetch,
    /// Publish the channel's latest state on chain.
    ForceClose {
        /// The channel (hex).
        #[serde(deserialize_with = "de_channel_id")]
        channel_id: ChannelId,
    },
    /// Every channel, typed ([`super::ChannelDetails`]).
    ListChannels,
    /// Every payment, typed ([`super::PaymentDetails`]), without any withheld signature.
    ListPayments,
    /// Close a channel cooperatively: both sign one spend of the funding output paying each
    /// its balance of the last complete state (which must hold no PTLC); the fee comes out
    /// of ours.
    Close {
        /// The channel (hex).
        #[serde(deserialize_with = "de_channel_id")]
        channel_id: ChannelId,
        /// The close transaction's fee (default [`super::DEFAULT_CLOSE_FEE_SAT`]).
        #[serde(default)]
        fee_sat: Option<u64>,
    },
    /// Stop the node.
    Stop,
    /// Fault injection: SIGKILL the process at this point of its outputs.
    CrashAt {
        /// `send:<message>`, `post-letter` or `persist:<n>`.
        #[serde(deserialize_with = "de_crash_point")]
        point: CrashPoint,
    },
}

/// A request that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No such command.
    #[error("unknown command {0:?}; try info, list-channels, list-payments, address, balance, descriptors, withdraw, connect, open, contact, pay, receive, cancel, proof, fetch, close, force-close, crash-at, stop")]
    Unknown(String),
    /// The arguments are not a JSON object.
    #[error("the arguments of {0:?} must be a JSON object")]
    NotAnObject(String),
    /// A field is missing or malformed.
    #[error("{command}: {reason}")]
    Fields {
        /// The command.
        command: String,
        /// What serde said.
        reason: String,
    },
}

/// The commands [`Request::parse`] knows.
pub const COMMANDS: [&str; 20] = [
    "info",
    "list-channels",
    "list-payments",
    "address",
    "balance",
    "descriptors",
    "withdraw",
    "connect",
    "open",
    "contact",
    "pay",
    "letter",
    "receive",
    "cancel",
    "proof",
    "fetch",
    "close",
    "force-close",
    "stop",
    "crash-at",
];

impl Request {
    /// The request `command` with the fields `args` (a JSON object, or null for none).
    pub fn parse(command: &str, args: Value) -> Result<Request, RequestError> {
        if !COMMANDS.contains(&command) {
            return Err(RequestError::Unknown(command.to_owned()));
        }
        let mut fields = match args {
            Value::Null => serde_json::Map::new(),
            Value::Object(map) => map,
            _ => return Err(RequestError::NotAnObject(command.to_owned())),
        };
        fields.insert("command".into(), Value::String(command.to_owned()));
        serde_json::from_value(Value::Object(fields)).map_err(|e| RequestError::Fields {
            command: command.to_owned(),
            reason: e.to_string(),
        })
    }
}

fn de_key<'de, D: Deserializer<'de>>(d: D) -> Result<PublicKey, D::Error> {
    let text = String::deserialize(d)?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(&text, &mut bytes)
        .map_err(|e| serde::de::Error::custom(format!("node key {text:?}: {e}")))?;
    PublicKey::from_xonly_bytes(bytes)
        .map_err(|e| serde::de::Error::custom(format!("node key {text:?}: {e}")))
}

fn de_channel_id<'de, D: Deserializer<'de>>(d: D) -> Result<ChannelId, D::Error> {
    let text = String::deserialize(d)?;
    let mut id = [0u8; 32];
    hex::decode_to_slice(&text, &mut id)
        .map_err(|e| serde::de::Error::custom(format!("channel_id is 32 hex bytes: {e}")))?;
    Ok(ChannelId(id))
}

fn de_crash_point<'de, D: Deserializer<'de>>(d: D) -> Result<CrashPoint, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}
