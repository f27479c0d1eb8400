//! The one wire encoding of peer messages: a message type, then a TLV stream, after the
//! rules of BOLT 1 ("Lightning Message Format", "Type-Length-Value Format").
//!
//! Each frame two peers exchange over their authenticated connection holds exactly one
//! [`PeerMessage`], a channel [`Message`] or a [`PaymentMessage`]:
//!
//! ```text
//! message    = type (u16, big-endian) ‖ tlv_stream
//! tlv_stream = record*                  record types strictly increasing
//! record     = type (BigSize) ‖ length (BigSize) ‖ value (length bytes)
//! ```
//!
//! Every field of every message is a record of its own, as in BOLT 12's all-TLV messages;
//! a field holding a structure (a PTLC change, a route hint, the invoice in a receipt) is
//! one record whose value is a nested TLV stream. BigSize is Bitcoin's CompactSize made
//! big-endian, and only its shortest form of a number is accepted.
//!
//! ## Odd is optional, even is required
//!
//! The parity of a number says what a node that does not know it must do. An unknown
//! **odd** record is skipped and an unknown **odd** message type is ignored
//! ([`Decoded::Ignored`]; the node logs it): a later version can add optional fields and
//! messages that this one passes over. An unknown **even** record ([`WireError::UnknownEvenRecord`])
//! or message type ([`WireError::UnknownEvenType`]) is refused: whatever the peer meant
//! by it cannot be understood safely. Every field and message of this version is even:
//! each must be understood.
//!
//! ## Message types
//!
//! The high byte of a type names its layer: `0x01` channel messages, `0x02` payment
//! messages ([`Layer`]).
//!
//! | type | hex | message | | type | hex | message |
//! |---|---|---|---|---|---|---|
//! | 256 | `0x0100` | `open` | | 512 | `0x0200` | `request` |
//! | 258 | `0x0102` | `accept` | | 514 | `0x0202` | `offer` |
//! | 260 | `0x0104` | `propose` | | 516 | `0x0204` | `invoice` |
//! | 262 | `0x0106` | `countersign` | | 518 | `0x0206` | `invoice_refused` |
//! | 264 | `0x0108` | `complete` | | 520 | `0x0208` | `cancel` |
//! | 266 | `0x010a` | `reestablish` | | 522 | `0x020a` | `cancelled` |
//! | 268 | `0x010c` | `close_proposal` | | 524 | `0x020c` | `receipt` |
//! | 270 | `0x010e` | `close_accept` | | 526 | `0x020e` | `receipt_ack` |
//! | 272 | `0x0110` | `error` | | 528 | `0x0210` | `request_refused` |
//! | 274 | `0x0112` | `close_signed` | | 530 | `0x0212` | `forward` |
//! | | | | | 532 | `0x0214` | `receive_request` |
//! | | | | | 534 | `0x0216` | `receive_offer` |
//!
//! The records of each message are listed in `docs/protocol.md` (channel) and
//! `docs/payment.md` (payment).
//!
//! ## Values
//!
//! A record holds one value in its canonical fixed-size form and must be exactly that long
//! ([`WireError::WrongLength`]): integers big-endian in their full width (u8, u16, u32,
//! u64), ids 32 bytes, x-only keys and nonces 32 bytes, compressed points 33, BIP340
//! signatures 64, encrypted signatures 65, an outpoint its txid's 32 bytes then the output
//! index as a u32. Keys and compressed points must lie on the curve, scalars below the group
//! order and flags be 0 or 1 ([`WireError::InvalidField`]); a nonce and a signature's R are
//! kept as the x-coordinate sent and checked where they are lifted to a point
//! ([`crate::crypto::nonce::PublicNonce`]). Text is UTF-8, bounded
//! ([`crate::protocol::messages::MAX_ERROR_TEXT`],
//! [`MAX_REASON_LEN`](crate::protocol::payment::MAX_REASON_LEN)), with no length prefix:
//! the record's length is the text's.
//!
//! ## What the decoder promises
//!
//! [`PeerMessage::decode`] never panics, refuses input longer than [`MAX_MESSAGE_LEN`]
//! before reading it, and allocates nothing beyond the decoded message (whose texts are
//! bounded). Each refusal is a typed [`WireError`]; a required field that is absent names
//! itself ([`WireError::Missing`]).
//!
//! ```
//! use asyncpay::protocol::messages::{ChannelId, Message, Reestablish};
//! use asyncpay::protocol::wire::{Decoded, PeerMessage, WireError};
//!
//! let msg = PeerMessage::Channel(Message::Reestablish(Reestablish {
//!     channel_id: ChannelId([7; 32]),
//!     next_state: 3,
//! }));
//! let bytes = msg.encode();
//! assert_eq!(&bytes[..2], &[0x01, 0x0a]); // reestablish
//! assert_eq!(PeerMessage::decode(&bytes)?, Decoded::Message(msg.clone()));
//!
//! // A later version's optional field, odd record 9, is skipped...
//! let mut newer = bytes.clone();
//! newer.extend([9, 1, 0xff]);
//! assert_eq!(PeerMessage::decode(&newer)?, Decoded::Message(msg));
//! // ...and a field this version would have to understand, even record 8, refused.
//! let mut newer = bytes.clone();
//! newer.extend([8, 0]);
//! assert!(matches!(
//!     PeerMessage::decode(&newer),
//!     Err(WireError::UnknownEvenRecord { stream: "reestablish", record_type: 8 })
//! ));
//!
//! // An unknown message type: odd is ignored, even refused.
//! assert_eq!(PeerMessage::decode(&[0x7f, 0xff])?, Decoded::Ignored { message_type: 0x7fff });
//! assert_eq!(
//!     PeerMessage::decode(&[0x7f, 0xfe]),
//!     Err(WireError::UnknownEvenType { message_type: 0x7ffe })
//! );
//! # Ok::<(), WireError>(())
//! ```

mod channel;
mod payment;
mod tlv;

pub use tlv::{read_bigsize, write_bigsize, TlvReader, TlvWriter};

use crate::protocol::messages::Message;
use crate::protocol::payment::PaymentMessage;

/// No encoded peer message is longer than this; longer input is refused before it is read.
/// The largest message of this version (a receipt with a route hint) is about a third of
/// it: the rest leaves room for the optional fields of later versions.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// The message type numbers (see the table in the [module docs](self)).
pub mod types {
    /// [`Message::Open`](crate::protocol::messages::Message::Open).
    pub const OPEN: u16 = 0x0100;
    /// [`Message::Accept`](crate::protocol::messages::Message::Accept).
    pub const ACCEPT: u16 = 0x0102;
    /// [`Message::Propose`](crate::protocol::messages::Message::Propose).
    pub const PROPOSE: u16 = 0x0104;
    /// [`Message::CounterSign`](crate::protocol::messages::Message::CounterSign).
    pub const COUNTERSIGN: u16 = 0x0106;
    /// [`Message::Complete`](crate::protocol::messages::Message::Complete).
    pub const COMPLETE: u16 = 0x0108;
    /// [`Message::Reestablish`](crate::protocol::messages::Message::Reestablish).
    pub const REESTABLISH: u16 = 0x010a;
    /// [`Message::CloseProposal`](crate::protocol::messages::Message::CloseProposal).
    pub const CLOSE_PROPOSAL: u16 = 0x010c;
    /// [`Message::CloseAccept`](crate::protocol::messages::Message::CloseAccept).
    pub const CLOSE_ACCEPT: u16 = 0x010e;
    /// [`Message::Error`](crate::protocol::messages::Message::Error).
    pub const ERROR: u16 = 0x0110;
    /// [`Message::CloseSigned`](crate::protocol::messages::Message::CloseSigned).
    pub const CLOSE_SIGNED: u16 = 0x0112;

    /// [`PaymentMessage::Request`](crate::protocol::payment::PaymentMessage::Request).
    pub const REQUEST: u16 = 0x0200;
    /// [`PaymentMessage::Offer`](crate::protocol::payment::PaymentMessage::Offer).
    pub const OFFER: u16 = 0x0202;
    /// [`PaymentMessage::Invoice`](crate::protocol::payment::PaymentMessage::Invoice).
    pub const INVOICE: u16 = 0x0204;
    /// [`PaymentMessage::InvoiceRefused`](crate::protocol::payment::PaymentMessage::InvoiceRefused).
    pub const INVOICE_REFUSED: u16 = 0x0206;
    /// [`PaymentMessage::Cancel`](crate::protocol::payment::PaymentMessage::Cancel).
    pub const CANCEL: u16 = 0x0208;
    /// [`PaymentMessage::Cancelled`](crate::protocol::payment::PaymentMessage::Cancelled).
    pub const CANCELLED: u16 = 0x020a;
    /// [`PaymentMessage::Receipt`](crate::protocol::payment::PaymentMessage::Receipt).
    pub const RECEIPT: u16 = 0x020c;
    /// [`PaymentMessage::ReceiptAck`](crate::protocol::payment::PaymentMessage::ReceiptAck).
    pub const RECEIPT_ACK: u16 = 0x020e;
    /// [`PaymentMessage::RequestRefused`](crate::protocol::payment::PaymentMessage::RequestRefused).
    pub const REQUEST_REFUSED: u16 = 0x0210;
    /// [`PaymentMessage::Forward`](crate::protocol::payment::PaymentMessage::Forward).
    pub const FORWARD: u16 = 0x0212;
    /// [`PaymentMessage::ReceiveRequest`](crate::protocol::payment::PaymentMessage::ReceiveRequest).
    pub const RECEIVE_REQUEST: u16 = 0x0214;
    /// [`PaymentMessage::ReceiveOffer`](crate::protocol::payment::PaymentMessage::ReceiveOffer).
    pub const RECEIVE_OFFER: u16 = 0x0216;
}

/// Why bytes are not a peer message. None of them is a panic, whatever the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input is longer than [`MAX_MESSAGE_LEN`].
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Length of the input.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input ended inside the message type, a record's type or a record's length.
    #[error("input ends inside the {field}: {needed} bytes needed, {available} left")]
    Truncated {
        /// What was being read.
        field: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A BigSize written longer than the shortest form of its value.
    #[error("the {field} {value} is not minimally encoded")]
    NonMinimalBigSize {
        /// What was being read.
        field: &'static str,
        /// The value it encodes.
        value: u64,
    },
    /// An even message type this build does not know.
    #[error("unknown even message type {message_type}")]
    UnknownEvenType {
        /// The type received.
        message_type: u16,
    },
    /// A record whose type is below the type of the record before it.
    #[error("record type {found} after record type {previous} in {stream}")]
    OutOfOrder {
        /// The message or nested value.
        stream: &'static str,
        /// The type before.
        previous: u64,
        /// The lower type that followed.
        found: u64,
    },
    /// Two records of the same type.
    #[error("record type {record_type} twice in {stream}")]
    Duplicate {
        /// The message or nested value.
        stream: &'static str,
        /// The repeated type.
        record_type: u64,
    },
    /// A record whose length runs past the end of its stream.
    #[error("record {record_type} of {stream} claims {length} bytes, {available} left")]
    LengthBeyondInput {
        /// The message or nested value.
        stream: &'static str,
        /// The record's type.
        record_type: u64,
        /// The length it claims.
        length: u64,
        /// The bytes that were left.
        available: usize,
    },
    /// An even record type the decoder of this stream does not know.
    #[error("unknown even record type {record_type} in {stream}")]
    UnknownEvenRecord {
        /// The message or nested value.
        stream: &'static str,
        /// The record's type.
        record_type: u64,
    },
    /// A required field is absent.
    #[error("{stream} lacks its required field {field}")]
    Missing {
        /// The message or nested value.
        stream: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A fixed-size field of another length.
    #[error("field {field} is {found} bytes, expected {expected}")]
    WrongLength {
        /// The field.
        field: &'static str,
        /// Its size.
        expected: usize,
        /// The record's length.
        found: usize,
    },
    /// A text field longer than its limit.
    #[error("field {field} of {len} bytes exceeds its limit of {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field holds bytes that are not a valid value of its type.
    #[error("field {field} is invalid: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A state change of a kind this build does not know.
    #[error("unknown state change kind {kind}")]
    UnknownChangeKind {
        /// The kind received.
        kind: u8,
    },
}

/// The layer a message belongs to, named by the high byte of its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// Channel messages, `0x01xx`.
    Channel,
    /// Payment messages, `0x02xx`.
    Payment,
}

impl Layer {
    /// The layer of `message_type`, if it is one of ours.
    pub fn of(message_type: u16) -> Option<Layer> {
        match message_type >> 8 {
            0x01 => Some(Layer::Channel),
            0x02 => Some(Layer::Payment),
            _ => None,
        }
    }
}

/// The message type a frame starts with, without decoding the rest (for counting and
/// transcripts).
pub fn peek_type(frame: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(frame.get(..2)?.try_into().ok()?))
}

/// One message between two peers: the only thing a peer frame holds.
// Messages are handled one at a time; the size difference of the variants is of no
// consequence.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum PeerMessage {
    /// A channel message.
    Channel(Message),
    /// A payment message.
    Payment(PaymentMessage),
}

/// What [`PeerMessage::decode`] found.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A message this build knows.
    Message(PeerMessage),
    /// A message of an unknown odd type, sent by a later version for peers that understand
    /// it: ignored.
    Ignored {
        /// Its type.
        message_type: u16,
    },
}

impl From<Message> for PeerMessage {
    fn from(message: Message) -> Self {
        PeerMessage::Channel(message)
    }
}

impl From<PaymentMessage> for PeerMessage {
    fn from(message: PaymentMessage) -> Self {
        PeerMessage::Payment(message)
    }
}

impl PeerMessage {
    /// The type number the encoding starts with.
    pub fn message_type(&self) -> u16 {
        match self {
            PeerMessage::Channel(m) => channel::message_type(m),
            PeerMessage::Payment(m) => payment::message_type(m),
        }
    }

    /// The message's name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            PeerMessage::Channel(m) => m.name(),
            PeerMessage::Payment(m) => m.name(),
        }
    }

    /// `type ‖ tlv_stream`, at most [`MAX_MESSAGE_LEN`] bytes (texts are cut at a character
    /// boundary to their limits).
    pub fn encode(&self) -> Vec<u8> {
        let bytes = match self {
            PeerMessage::Channel(m) => channel::encode(m),
            PeerMessage::Payment(m) => payment::encode(m),
        };
        debug_assert!(bytes.len() <= MAX_MESSAGE_LEN, "{} too long", self.name());
        bytes
    }

    /// Decodes one message: a message this build knows, an unknown odd type to ignore, or
    /// a typed refusal.
    pub fn decode(bytes: &[u8]) -> Result<Decoded, WireError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(WireError::TooLarge {
                len: bytes.len(),
                max: MAX_MESSAGE_LEN,
            });
        }
        let message_type = peek_type(bytes).ok_or(WireError::Truncated {
            field: "message type",
            needed: 2,
            available: bytes.len(),
        })?;
        let body = &bytes[2..];
        if let Some(message) = channel::decode(message_type, body)? {
            return Ok(Decoded::Message(PeerMessage::Channel(message)));
        }
        if let Some(message) = payment::decode(message_type, body)? {
            return Ok(Decoded::Message(PeerMessage::Payment(message)));
        }
        if message_type % 2 == 1 {
            Ok(Decoded::Ignored { message_type })
        } else {
            Err(WireError::UnknownEvenType { message_type })
        }
    }
}
