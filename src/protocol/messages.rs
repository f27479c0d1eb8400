//! The channel protocol's peer messages.
//!
//! They travel in the one wire encoding of [`crate::protocol::wire`], as the
//! [`PeerMessage::Channel`](crate::protocol::wire::PeerMessage::Channel) variant: a message
//! type, then every field as a TLV record.
//!
//! ```
//! use asyncpay::protocol::messages::{ChannelId, Message, Reestablish};
//! use asyncpay::protocol::wire::{Decoded, PeerMessage};
//!
//! let msg = Message::Reestablish(Reestablish { channel_id: ChannelId([7; 32]), next_state: 3 });
//! let bytes = PeerMessage::from(msg.clone()).encode();
//! assert_eq!(PeerMessage::decode(&bytes)?, Decoded::Message(PeerMessage::Channel(msg)));
//! assert!(PeerMessage::decode(&bytes[..bytes.len() - 1]).is_err());
//! # Ok::<(), asyncpay::protocol::wire::WireError>(())
//! ```
//!
//! What each message means, and when it may be sent, is in `docs/protocol.md`; the checks that
//! depend on the channel's state (out-of-order, replayed, badly signed) are made by
//! [`Channel`](crate::protocol::channel::Channel), not here.

use core::fmt;

use bitcoin::OutPoint;

use crate::crypto::adaptor::{AdaptorPoint, EncryptedSignature};
use crate::crypto::keys::{PublicKey, Signature};
use crate::crypto::nonce::PublicNonce;

/// The longest reason text an [`ErrorMessage`] may carry, in bytes.
pub const MAX_ERROR_TEXT: usize = 256;

/// Identifies a channel between two peers: 32 bytes chosen by the opener.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ChannelId(pub [u8; 32]);

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelId({})", hex::encode(self.0))
    }
}

/// A PTLC secret t revealed to the counterparty so that it moves the PTLC's amount.
///
/// Once sent it is known to the peer, but it still pays for a signature elsewhere, so it is
/// kept out of logs: `Debug` is redacted.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RevealedSecret(pub [u8; 32]);

impl fmt::Debug for RevealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RevealedSecret(<redacted>)")
    }
}

/// A change from one channel state to the next. One change per state keeps every state
/// attributable to exactly one proposal.
// The PTLC variant carries its encrypted claim signature inline; changes are handled one at
// a time, so the size difference is of no consequence.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Change {
    /// State 0: the channel's opening balances on the given funding output.
    Open {
        /// The funding output both update chains start from.
        funding_outpoint: OutPoint,
    },
    /// The proposer offers a PTLC to the other party out of its own balance.
    AddPtlc {
        /// The PTLC's number, unique in the channel (the proposer's next id).
        id: u64,
        /// Amount moved from the offerer's balance into the PTLC.
        amount_sat: u64,
        /// The point T whose discrete log claims the PTLC.
        point: AdaptorPoint,
        /// Block height after which the offerer may take the amount back on chain.
        expiry: u32,
        /// The offerer's half of the on-chain claim, encrypted to `point`.
        claim_signature: EncryptedSignature,
    },
    /// The proposer, receiver of the PTLC, reveals its secret and takes the amount.
    FulfilPtlc {
        /// The PTLC's number.
        id: u64,
        /// t with t·G = T.
        secret: RevealedSecret,
    },
    /// The proposer, receiver of the PTLC, gives it up: the amount returns to the offerer.
    FailPtlc {
        /// The PTLC's number.
        id: u64,
    },
    /// The proposer pays the other party outright. This is the state a payer pre-signs and
    /// whose update signature the payee later sells to the LSP.
    Transfer {
        /// Amount moved from the proposer's balance to the other party's.
        amount_sat: u64,
    },
    /// Abandons the pending state `abandoned` = n+1 for good (a withheld signature that was
    /// never sold): the new state, numbered n+2, has exactly the balances and PTLCs of the
    /// last complete state n. Its higher state number overrides U_{n+1} on chain even if
    /// U_{n+1} is completed later.
    Revert {
        /// The state given up (one past the last complete state).
        abandoned: u64,
    },
}

impl Change {
    /// A short name for errors and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Open { .. } => "open",
            Change::AddPtlc { .. } => "add_ptlc",
            Change::FulfilPtlc { .. } => "fulfil_ptlc",
            Change::FailPtlc { .. } => "fail_ptlc",
            Change::Transfer { .. } => "transfer",
            Change::Revert { .. } => "revert",
        }
    }
}

/// The opener asks to open a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenChannel {
    /// The channel's id.
    pub channel_id: ChannelId,
    /// Value of the funding output.
    pub capacity_sat: u64,
    /// Initial balance of the acceptor (the rest is the opener's).
    pub push_sat: u64,
    /// Relative delay (blocks) between an update confirming and its settlement.
    pub shared_delay: u16,
    /// Blocks ahead within which either party can always still publish an update; no PTLC
    /// may expire later than this from the height it is added at.
    pub update_window: u32,
    /// The opener's update key (signs U_n with ANYPREVOUTANYSCRIPT).
    pub update_key: PublicKey,
    /// The key the opener's settlement balance is paid to.
    pub payout_key: PublicKey,
}

/// The acceptor agrees to open the channel.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptChannel {
    /// The channel's id.
    pub channel_id: ChannelId,
    /// The acceptor's update key.
    pub update_key: PublicKey,
    /// The key the acceptor's settlement balance is paid to.
    pub payout_key: PublicKey,
}

/// Proposes state `state` (one [`Change`] on top of the last complete state) and commits to
/// the nonce of the proposer's signature on its update transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposeUpdate {
    /// The channel's id.
    pub channel_id: ChannelId,
    /// The proposed state number.
    pub state: u64,
    /// What the state changes.
    pub change: Change,
    /// R of the proposer's future signature on U_state: its price point is R + e·P.
    pub nonce: PublicNonce,
}

/// The receiver of a proposal signs its update transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterSignUpdate {
    /// The channel's id.
    pub channel_id: ChannelId,
    /// The state signed.
    pub state: u64,
    /// BIP340 signature (hash type 0xc1) on U_state's sighash by the signer's update key.
    pub signature: Signature,
}

/// The proposer's signature on the update transaction, made with the committed nonce. It
/// completes the state. A payer may withhold it and sell it later instead.
#[derive(Debug, Clone, PartialEq)]
pub struct CompleteUpdate {
    /// The channel's id.
    pub channel_id: ChannelId,
    /// The state completed.
    pub state: u64,
    /// BIP340 signature on U_state's sighash whose R is the committed nonce.
    pub signature: Signature,
}

/// Sent after every (re)connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Reestablish {
    /// The channel's id.
    pub channel_id: ChannelId,
    /// The state the sender would sign next: one past its last complete state, 0 if none.
    pub next_state: u64,
}

/// Proposes a cooperative close on the current balances (no PTLCs, no update under way)
/// and sends the proposer's MuSig2 public nonce for the key-path signature.
#[derive(Debug, Clone, PartialEq)]
pub struct CloseProposal {
    /// The channel's id.
    pub channel_id: ChannelId,
    /// Fee of the close transaction, taken from the proposer's balance.
    pub fee_sat: u64,
    /// The proposer's MuSig2 public nonce (two compressed points).
    pub nonce: [u8; 66],
}

/// Accepts a cooperative close: the acceptor's MuSig2 nonce and partial signature.
#[derive(Debug, Clone, PartialEq)]
pub struct CloseAccept {
    /// The channel's id.
    pub channel_id: ChannelId,
    /// The acceptor's MuSig2 public nonce.
    pub nonce: [u8; 66],
    /// The acceptor's MuSig2 partial signature.
    pub partial_signature: [u8; 32],
}

/// The proposer's combined key-path signature: the close transaction is final.
#[derive(Debug, Clone, PartialEq)]
pub struct CloseSigned {
    /// The channel's id.
    pub channel_id: ChannelId,
    /// The BIP340 signature for the funding output's key.
    pub signature: Signature,
}

/// Tells the peer that its last message was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorMessage {
    /// The channel's id.
    pub channel_id: ChannelId,
    /// A machine-readable code (see `docs/protocol.md`).
    pub code: u16,
    /// A short human-readable reason, at most [`MAX_ERROR_TEXT`] bytes of UTF-8.
    pub text: String,
}

/// A peer message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Type 256 (`0x0100`).
    Open(OpenChannel),
    /// Type 258 (`0x0102`).
    Accept(AcceptChannel),
    /// Type 260 (`0x0104`).
    Propose(ProposeUpdate),
    /// Type 262 (`0x0106`).
    CounterSign(CounterSignUpdate),
    /// Type 264 (`0x0108`).
    Complete(CompleteUpdate),
    /// Type 266 (`0x010a`).
    Reestablish(Reestablish),
    /// Type 268 (`0x010c`).
    CloseProposal(CloseProposal),
    /// Type 270 (`0x010e`).
    CloseAccept(CloseAccept),
    /// Type 272 (`0x0110`).
    Error(ErrorMessage),
    /// Type 274 (`0x0112`).
    CloseSigned(CloseSigned),
}

impl Message {
    /// The message's name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Open(_) => "open",
            Message::Accept(_) => "accept",
            Message::Propose(_) => "propose",
            Message::CounterSign(_) => "countersign",
            Message::Complete(_) => "complete",
            Message::Reestablish(_) => "reestablish",
            Message::CloseProposal(_) => "close_proposal",
            Message::CloseAccept(_) => "close_accept",
            Message::Error(_) => "error",
            Message::CloseSigned(_) => "close_signed",
        }
    }

    /// Whether the message carries a signature, a partial signature or a public nonce: such
    /// a message may only leave after the state that makes it safe has been persisted.
    pub fn carries_commitment(&self) -> bool {
        matches!(
            self,
            Message::Propose(_)
                | Message::CounterSign(_)
                | Message::Complete(_)
                | Message::CloseProposal(_)
                | Message::CloseAccept(_)
                | Message::CloseSigned(_)
        )
    }

    /// The channel the message is about.
    pub fn channel_id(&self) -> ChannelId {
        match self {
            Message::Open(m) => m.channel_id,
            Message::Accept(m) => m.channel_id,
            Message::Propose(m) => m.channel_id,
            Message::CounterSign(m) => m.channel_id,
            Message::Complete(m) => m.channel_id,
            Message::Reestablish(m) => m.channel_id,
            Message::CloseProposal(m) => m.channel_id,
            Message::CloseAccept(m) => m.channel_id,
            Message::Error(m) => m.channel_id,
            Message::CloseSigned(m) => m.channel_id,
        }
    }
}
