//! Peer messages of the channel protocol and their versioned binary encoding.
//!
//! Every message is `version (1 byte) ‖ type (1 byte) ‖ body`, where the body is a fixed
//! sequence of big-endian integers, fixed-size keys, points and signatures, and at most one
//! length-prefixed field. The decoder is strict: it accepts exactly the encoder's output and
//! nothing else (no trailing bytes, no unknown types or versions, no invalid points or
//! scalars, no non-canonical flags), never panics and never allocates more than
//! [`MAX_MESSAGE_LEN`] bytes.
//!
//! ```
//! use asyncpay::protocol::messages::{ChannelId, Message, Reestablish};
//!
//! let msg = Message::Reestablish(Reestablish { channel_id: ChannelId([7; 32]), next_state: 3 });
//! let bytes = msg.encode();
//! assert_eq!(Message::decode(&bytes)?, msg);
//! assert!(Message::decode(&bytes[..bytes.len() - 1]).is_err());
//! # Ok::<(), asyncpay::protocol::messages::MessageError>(())
//! ```
//!
//! What each message means, and when it may be sent, is in `docs/protocol.md`; the checks that
//! depend on the channel's state (out-of-order, replayed, badly signed) are made by
//! [`Channel`](crate::protocol::channel::Channel), not here.

use core::fmt;

use bitcoin::hashes::Hash as _;
use bitcoin::{OutPoint, Txid};

use crate::crypto::adaptor::{AdaptorPoint, EncryptedSignature};
use crate::crypto::keys::{PublicKey, Signature};
use crate::crypto::nonce::PublicNonce;

/// The only encoding version this build speaks.
pub const PROTOCOL_VERSION: u8 = 1;

/// No encoded message is longer than this; longer input is refused before it is parsed.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// The longest reason text an [`ErrorMessage`] may carry, in bytes.
pub const MAX_ERROR_TEXT: usize = 256;

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The input is longer than [`MAX_MESSAGE_LEN`].
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Length of the input.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input ended inside a field.
    #[error("message truncated in field {field}: needed {needed} more bytes, {available} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// Bytes follow the last field.
    #[error("{count} trailing bytes after a {message} message")]
    TrailingBytes {
        /// The message type that was decoded.
        message: &'static str,
        /// How many bytes were left over.
        count: usize,
    },
    /// The version byte is not [`PROTOCOL_VERSION`].
    #[error("unsupported message version {version}")]
    UnsupportedVersion {
        /// The version byte received.
        version: u8,
    },
    /// The type byte names no message.
    #[error("unknown message type {message_type}")]
    UnknownType {
        /// The type byte received.
        message_type: u8,
    },
    /// The tag of a state change names no change.
    #[error("unknown state change tag {tag}")]
    UnknownChange {
        /// The tag byte received.
        tag: u8,
    },
    /// A field holds bytes that are not a valid value of its type.
    #[error("field {field} is invalid: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

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
    /// Type 1.
    Open(OpenChannel),
    /// Type 2.
    Accept(AcceptChannel),
    /// Type 3.
    Propose(ProposeUpdate),
    /// Type 4.
    CounterSign(CounterSignUpdate),
    /// Type 5.
    Complete(CompleteUpdate),
    /// Type 6.
    Reestablish(Reestablish),
    /// Type 7.
    CloseProposal(CloseProposal),
    /// Type 8.
    CloseAccept(CloseAccept),
    /// Type 9.
    Error(ErrorMessage),
    /// Type 10.
    CloseSigned(CloseSigned),
}

const T_OPEN: u8 = 1;
const T_ACCEPT: u8 = 2;
const T_PROPOSE: u8 = 3;
const T_COUNTERSIGN: u8 = 4;
const T_COMPLETE: u8 = 5;
const T_REESTABLISH: u8 = 6;
const T_CLOSE_PROPOSAL: u8 = 7;
const T_CLOSE_ACCEPT: u8 = 8;
const T_ERROR: u8 = 9;
const T_CLOSE_SIGNED: u8 = 10;

const C_OPEN: u8 = 0;
const C_ADD: u8 = 1;
const C_FULFIL: u8 = 2;
const C_FAIL: u8 = 3;
const C_TRANSFER: u8 = 4;
const C_REVERT: u8 = 5;

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

    /// The versioned binary encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(128);
        w.push(PROTOCOL_VERSION);
        match self {
            Message::Open(m) => {
                w.push(T_OPEN);
                w.extend_from_slice(&m.channel_id.0);
                w.extend_from_slice(&m.capacity_sat.to_be_bytes());
                w.extend_from_slice(&m.push_sat.to_be_bytes());
                w.extend_from_slice(&m.shared_delay.to_be_bytes());
                w.extend_from_slice(&m.update_window.to_be_bytes());
                w.extend_from_slice(&m.update_key.to_xonly_bytes());
                w.extend_from_slice(&m.payout_key.to_xonly_bytes());
            }
            Message::Accept(m) => {
                w.push(T_ACCEPT);
                w.extend_from_slice(&m.channel_id.0);
                w.extend_from_slice(&m.update_key.to_xonly_bytes());
                w.extend_from_slice(&m.payout_key.to_xonly_bytes());
            }
            Message::Propose(m) => {
                w.push(T_PROPOSE);
                w.extend_from_slice(&m.channel_id.0);
                w.extend_from_slice(&m.state.to_be_bytes());
                w.extend_from_slice(&m.nonce.to_xonly_bytes());
                encode_change(&mut w, &m.change);
            }
            Message::CounterSign(m) => {
                w.push(T_COUNTERSIGN);
                w.extend_from_slice(&m.channel_id.0);
                w.extend_from_slice(&m.state.to_be_bytes());
                w.extend_from_slice(&m.signature.to_bytes());
            }
            Message::Complete(m) => {
                w.push(T_COMPLETE);
                w.extend_from_slice(&m.channel_id.0);
                w.extend_from_slice(&m.state.to_be_bytes());
                w.extend_from_slice(&m.signature.to_bytes());
            }
            Message::Reestablish(m) => {
                w.push(T_REESTABLISH);
                w.extend_from_slice(&m.channel_id.0);
                w.extend_from_slice(&m.next_state.to_be_bytes());
            }
            Message::CloseProposal(m) => {
                w.push(T_CLOSE_PROPOSAL);
                w.extend_from_slice(&m.channel_id.0);
                w.extend_from_slice(&m.fee_sat.to_be_bytes());
                w.extend_from_slice(&m.nonce);
            }
            Message::CloseAccept(m) => {
                w.push(T_CLOSE_ACCEPT);
                w.extend_from_slice(&m.channel_id.0);
                w.extend_from_slice(&m.nonce);
                w.extend_from_slice(&m.partial_signature);
            }
            Message::CloseSigned(m) => {
                w.push(T_CLOSE_SIGNED);
                w.extend_from_slice(&m.channel_id.0);
                w.extend_from_slice(&m.signature.to_bytes());
            }
            Message::Error(m) => {
                w.push(T_ERROR);
                w.extend_from_slice(&m.channel_id.0);
                w.extend_from_slice(&m.code.to_be_bytes());
                // Encoding an over-long text would produce bytes our own decoder refuses, so
                // the text is cut at a character boundary within the limit.
                let text = truncate_utf8(&m.text, MAX_ERROR_TEXT);
                w.extend_from_slice(&(text.len() as u16).to_be_bytes());
                w.extend_from_slice(text.as_bytes());
            }
        }
        w
    }

    /// Decodes one message, refusing anything [`Message::encode`] would not produce.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(MessageError::TooLarge {
                len: bytes.len(),
                max: MAX_MESSAGE_LEN,
            });
        }
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u8("version")?;
        if version != PROTOCOL_VERSION {
            return Err(MessageError::UnsupportedVersion { version });
        }
        let message_type = r.u8("type")?;
        let msg = match message_type {
            T_OPEN => Message::Open(OpenChannel {
                channel_id: r.channel_id()?,
                capacity_sat: r.u64("capacity_sat")?,
                push_sat: r.u64("push_sat")?,
                shared_delay: r.u16("shared_delay")?,
                update_window: r.u32("update_window")?,
                update_key: r.public_key("update_key")?,
                payout_key: r.public_key("payout_key")?,
            }),
            T_ACCEPT => Message::Accept(AcceptChannel {
                channel_id: r.channel_id()?,
                update_key: r.public_key("update_key")?,
                payout_key: r.public_key("payout_key")?,
            }),
            T_PROPOSE => Message::Propose(ProposeUpdate {
                channel_id: r.channel_id()?,
                state: r.u64("state")?,
                nonce: r.nonce("nonce")?,
                change: decode_change(&mut r)?,
            }),
            T_COUNTERSIGN => Message::CounterSign(CounterSignUpdate {
                channel_id: r.channel_id()?,
                state: r.u64("state")?,
                signature: r.signature("signature")?,
            }),
            T_COMPLETE => Message::Complete(CompleteUpdate {
                channel_id: r.channel_id()?,
                state: r.u64("state")?,
                signature: r.signature("signature")?,
            }),
            T_REESTABLISH => Message::Reestablish(Reestablish {
                channel_id: r.channel_id()?,
                next_state: r.u64("next_state")?,
            }),
            T_CLOSE_PROPOSAL => Message::CloseProposal(CloseProposal {
                channel_id: r.channel_id()?,
                fee_sat: r.u64("fee_sat")?,
                nonce: r.array("nonce")?,
            }),
            T_CLOSE_ACCEPT => Message::CloseAccept(CloseAccept {
                channel_id: r.channel_id()?,
                nonce: r.array("nonce")?,
                partial_signature: r.array("partial_signature")?,
            }),
            T_CLOSE_SIGNED => Message::CloseSigned(CloseSigned {
                channel_id: r.channel_id()?,
                signature: r.signature("signature")?,
            }),
            T_ERROR => {
                let channel_id = r.channel_id()?;
                let code = r.u16("code")?;
                let len = usize::from(r.u16("text_len")?);
                if len > MAX_ERROR_TEXT {
                    return Err(MessageError::InvalidField {
                        field: "text",
                        reason: "longer than 256 bytes",
                    });
                }
                let text = core::str::from_utf8(r.take("text", len)?)
                    .map_err(|_| MessageError::InvalidField {
                        field: "text",
                        reason: "not utf-8",
                    })?
                    .to_owned();
                Message::Error(ErrorMessage {
                    channel_id,
                    code,
                    text,
                })
            }
            other => {
                return Err(MessageError::UnknownType {
                    message_type: other,
                })
            }
        };
        let left = bytes.len() - r.pos;
        if left != 0 {
            return Err(MessageError::TrailingBytes {
                message: msg.name(),
                count: left,
            });
        }
        Ok(msg)
    }
}

fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn encode_change(w: &mut Vec<u8>, change: &Change) {
    match change {
        Change::Open { funding_outpoint } => {
            w.push(C_OPEN);
            w.extend_from_slice(funding_outpoint.txid.as_byte_array());
            w.extend_from_slice(&funding_outpoint.vout.to_be_bytes());
        }
        Change::AddPtlc {
            id,
            amount_sat,
            point,
            expiry,
            claim_signature,
        } => {
            w.push(C_ADD);
            w.extend_from_slice(&id.to_be_bytes());
            w.extend_from_slice(&amount_sat.to_be_bytes());
            w.extend_from_slice(&point.to_bytes());
            w.extend_from_slice(&expiry.to_be_bytes());
            w.extend_from_slice(&claim_signature.to_bytes());
        }
        Change::FulfilPtlc { id, secret } => {
            w.push(C_FULFIL);
            w.extend_from_slice(&id.to_be_bytes());
            w.extend_from_slice(&secret.0);
        }
        Change::FailPtlc { id } => {
            w.push(C_FAIL);
            w.extend_from_slice(&id.to_be_bytes());
        }
        Change::Transfer { amount_sat } => {
            w.push(C_TRANSFER);
            w.extend_from_slice(&amount_sat.to_be_bytes());
        }
        Change::Revert { abandoned } => {
            w.push(C_REVERT);
            w.extend_from_slice(&abandoned.to_be_bytes());
        }
    }
}

fn decode_change(r: &mut Reader<'_>) -> Result<Change, MessageError> {
    let tag = r.u8("change_tag")?;
    Ok(match tag {
        C_OPEN => Change::Open {
            funding_outpoint: OutPoint {
                txid: Txid::from_byte_array(r.array("funding_txid")?),
                vout: r.u32("funding_vout")?,
            },
        },
        C_ADD => Change::AddPtlc {
            id: r.u64("ptlc_id")?,
            amount_sat: r.u64("amount_sat")?,
            point: AdaptorPoint::from_bytes(r.array("point")?).map_err(|_| {
                MessageError::InvalidField {
                    field: "point",
                    reason: "not a compressed curve point",
                }
            })?,
            expiry: r.u32("expiry")?,
            claim_signature: EncryptedSignature::from_bytes(&r.array("claim_signature")?).map_err(
                |_| MessageError::InvalidField {
                    field: "claim_signature",
                    reason: "not an encrypted signature encoding",
                },
            )?,
        },
        C_FULFIL => Change::FulfilPtlc {
            id: r.u64("ptlc_id")?,
            secret: RevealedSecret(r.array("secret")?),
        },
        C_FAIL => Change::FailPtlc {
            id: r.u64("ptlc_id")?,
        },
        C_TRANSFER => Change::Transfer {
            amount_sat: r.u64("amount_sat")?,
        },
        C_REVERT => Change::Revert {
            abandoned: r.u64("abandoned")?,
        },
        tag => return Err(MessageError::UnknownChange { tag }),
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], MessageError> {
        let available = self.bytes.len() - self.pos;
        if available < n {
            return Err(MessageError::Truncated {
                field,
                needed: n,
                available,
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], MessageError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, MessageError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, MessageError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, MessageError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, MessageError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    fn channel_id(&mut self) -> Result<ChannelId, MessageError> {
        Ok(ChannelId(self.array("channel_id")?))
    }

    fn public_key(&mut self, field: &'static str) -> Result<PublicKey, MessageError> {
        PublicKey::from_xonly_bytes(self.array(field)?).map_err(|_| MessageError::InvalidField {
            field,
            reason: "not an x-only curve point",
        })
    }

    fn nonce(&mut self, field: &'static str) -> Result<PublicNonce, MessageError> {
        PublicNonce::from_xonly_bytes(self.array(field)?).map_err(|_| MessageError::InvalidField {
            field,
            reason: "not an x-only curve point",
        })
    }

    fn signature(&mut self, field: &'static str) -> Result<Signature, MessageError> {
        Signature::from_bytes(self.array(field)?).map_err(|_| MessageError::InvalidField {
            field,
            reason: "not a bip340 signature encoding",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::adaptor::AdaptorSecret;
    use crate::crypto::keys::SecretKey;

    fn key(b: u8) -> SecretKey {
        SecretKey::from_bytes([b; 32]).expect("valid scalar")
    }

    fn add() -> Message {
        let t = AdaptorSecret::from_bytes([3; 32]).expect("valid scalar");
        let point = t.adaptor_point();
        Message::Propose(ProposeUpdate {
            channel_id: ChannelId([1; 32]),
            state: 9,
            change: Change::AddPtlc {
                id: 4,
                amount_sat: 1000,
                point,
                expiry: 800,
                claim_signature: EncryptedSignature::encrypt(&key(2), &point, &[5; 32], &[0; 32]),
            },
            nonce: key(6).sign(&[1; 32], &[0; 32]).nonce(),
        })
    }

    #[test]
    fn every_prefix_is_truncated_and_extra_bytes_are_refused() {
        let bytes = add().encode();
        assert_eq!(Message::decode(&bytes), Ok(add()));
        for cut in 0..bytes.len() {
            assert!(matches!(
                Message::decode(&bytes[..cut]),
                Err(MessageError::Truncated { .. })
            ));
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            Message::decode(&long),
            Err(MessageError::TrailingBytes {
                message: "propose",
                count: 1
            })
        );
    }

    #[test]
    fn unknown_version_type_and_change_are_typed() {
        let mut bytes = add().encode();
        bytes[0] = 2;
        assert_eq!(
            Message::decode(&bytes),
            Err(MessageError::UnsupportedVersion { version: 2 })
        );
        assert_eq!(
            Message::decode(&[1, 200]),
            Err(MessageError::UnknownType { message_type: 200 })
        );
        let mut bytes = add().encode();
        // version, type, channel id, state, nonce, then the change tag.
        bytes[2 + 32 + 8 + 32] = 77;
        assert_eq!(
            Message::decode(&bytes),
            Err(MessageError::UnknownChange { tag: 77 })
        );
        assert!(matches!(
            Message::decode(&vec![1; MAX_MESSAGE_LEN + 1]),
            Err(MessageError::TooLarge { .. })
        ));
    }

    #[test]
    fn invalid_points_are_refused() {
        let mut bytes = add().encode();
        // Point x = 0xff..ff is not on the curve (above the field size).
        let at = 2 + 32 + 8;
        bytes[at..at + 32].copy_from_slice(&[0xff; 32]);
        assert!(matches!(
            Message::decode(&bytes),
            Err(MessageError::InvalidField { field: "nonce", .. })
        ));
    }

    #[test]
    fn error_text_is_bounded() {
        let msg = Message::Error(ErrorMessage {
            channel_id: ChannelId([0; 32]),
            code: 3,
            text: "é".repeat(200),
        });
        let decoded = Message::decode(&msg.encode()).expect("own encoding");
        match decoded {
            Message::Error(e) => assert!(e.text.len() <= MAX_ERROR_TEXT),
            other => panic!("decoded {other:?}"),
        }
    }
}
