//! Asynchronous payment by pay-for-signature: the sans-io roles of payer A, LSP S and payee B.
//!
//! The channel layer ([`crate::protocol::channel`]) already lets A propose a state n+1 that
//! moves `amount + fee` to S and keep its completing signature back, and lets S complete that
//! state from the signature's scalar alone. This module adds what turns that withheld
//! signature into a payment to a third party:
//!
//! 1. A asks S for a [`PurchaseOffer`] on the withheld state ([`PayRequest`]); S answers with
//!    an offer it signs: "I pay `amount` to `payee` for the discrete log of `point` (the price
//!    point of A's signature) until block `expiry`".
//! 2. A seals a [`SaleLetter`] (the offer and its withheld signature) to B's mailbox, and may
//!    go offline.
//! 3. B opens the letter, checks that the scalar sells the point and that S signed the offer,
//!    and sends S a signed [`Invoice`] for the point.
//! 4. S pays B with a PTLC locked to the point on the S–B channel; B fulfils it with the
//!    scalar, S learns it and completes state n+1 of the A–S channel.
//! 5. When A returns, S hands it a [`Receipt`] holding B's signed invoice.
//!
//! S is the single place where a sale and A's cancellation are ordered: an invoice is only
//! accepted while the offer is [`LspStatus::Offered`], and a cancellation only then too.
//!
//! Every role is a state machine in the style of [`crate::protocol::channel::Channel`]:
//! `handle(input) -> Result<Vec<Action>, PaymentError>`; the driver carries the actions out
//! in order, and finishes each [`Action::Persist`] durably before the next action.
//!
//! ```
//! use asyncpay::crypto::keys::SecretKey;
//! use asyncpay::crypto::adaptor::AdaptorSecret;
//! use asyncpay::protocol::messages::ChannelId;
//! use asyncpay::protocol::payment::{OfferTerms, PaymentId};
//!
//! let lsp = SecretKey::from_bytes([2; 32]).unwrap();
//! let payee = SecretKey::from_bytes([3; 32]).unwrap().public_key();
//! let point = AdaptorSecret::from_bytes([4; 32]).unwrap().adaptor_point();
//! let terms = OfferTerms {
//!     payment_id: PaymentId([1; 32]), lsp: lsp.public_key(), channel_id: ChannelId([5; 32]),
//!     state: 1, amount_sat: 50_000, fee_sat: 100, point, payee, expiry: 500, held: None,
//!     irrevocable: false,
//! };
//! let offer = terms.sign(&lsp, &[0; 32]);
//! assert!(offer.verify().is_ok());
//! let mut forged = offer.clone();
//! forged.terms.amount_sat += 1;
//! assert!(forged.verify().is_err());
//! ```

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::crypto::adaptor::{sells, AdaptorPoint, AdaptorSecret, EncryptedSignature};
use crate::crypto::keys::{PublicKey, SecretKey, Signature};
use crate::crypto::receipt::ReceiptKeys;
use crate::crypto::tagged_hash;
use crate::protocol::channel::Command;
use crate::protocol::messages::{ChannelId, RevealedSecret};

mod lsp;
mod payee;
mod payer;
mod proof;
mod reverse;
mod router;

pub use lsp::{
    HeldTransfer, Lsp, LspAction, LspInput, LspPayment, LspPolicy, LspStatus, PendingTransfer,
};
pub use payee::{Payee, PayeeAction, PayeeInput, PayeePayment, PayeeStatus};
pub use payer::{Hold, Payer, PayerAction, PayerInput, PayerPayment, PayerStatus};
pub use proof::{receipt_message, ProofError, ProofOfPayment};
pub use reverse::{
    reverse_ptlc_expiry, Reverse, ReverseAction, ReverseInput, ReverseLetter, ReversePayment,
    ReverseStatus, UpdateProof,
};
pub use router::{
    Incoming, Router, RouterAction, RouterInput, RouterPayment, RouterPolicy, RouterStatus,
};

/// The version of the sale letter's encoding (the mailbox letter A leaves for B).
pub const PAYMENT_VERSION: u8 = 3;

/// No mailbox letter (a sale letter or a letter of the reverse variant) is longer than this.
pub const MAX_LETTER_LEN: usize = 4096;

/// The longest reason a refusal message may carry, in bytes: reasons are
/// [`PaymentError::code`]s.
pub const MAX_REASON_LEN: usize = 64;

/// The longest note a payer may put in a sale letter, in bytes.
pub const MAX_NOTE_LEN: usize = 512;

const OFFER_TAG: &str = "asyncpay/payment/v1/offer";
const INVOICE_TAG: &str = "asyncpay/payment/v1/invoice";

/// Names one payment at every party; chosen at random by the payer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PaymentId(#[serde(with = "hex_32")] pub [u8; 32]);

impl fmt::Debug for PaymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PaymentId({})", hex::encode(self.0))
    }
}

impl fmt::Display for PaymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl core::str::FromStr for PaymentId {
    type Err = hex::FromHexError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(PaymentId(out))
    }
}

mod hex_32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// Why a payment message, letter or input is refused. None of them changes any state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// Bytes that are not a mailbox letter.
    #[error("undecodable letter: {0}")]
    Decode(String),
    /// A mailbox letter whose first byte names another kind of letter (or none).
    #[error("not a {expected:?} letter (first byte {found:?})")]
    LetterKind {
        /// The kind the decoder expected.
        expected: LetterKind,
        /// The letter's first byte.
        found: Option<u8>,
    },
    /// A letter longer than [`MAX_LETTER_LEN`], or a note longer than [`MAX_NOTE_LEN`].
    #[error("letter or note of {len} bytes exceeds {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A version this build does not speak.
    #[error("unsupported payment message version {0}")]
    Version(u8),
    /// A signature that does not verify.
    #[error("invalid {what} signature")]
    BadSignature {
        /// What was signed.
        what: &'static str,
    },
    /// The scalar in a letter is not the discrete log of the offer's point.
    #[error("the letter's signature does not sell the offered point")]
    WrongScalar,
    /// A receipt slot the payee has already signed with for another payment: a second
    /// signature with its nonce would reveal the slot's key.
    #[error("receipt slot {slot} of epoch {epoch} was used for payment {used_by} already")]
    ReceiptSlotUsed {
        /// The card epoch.
        epoch: u32,
        /// The slot.
        slot: u32,
        /// The payment it signed for.
        used_by: PaymentId,
    },
    /// A receipt slot of a card epoch the payee no longer (or never) issued.
    #[error("receipt slot of epoch {epoch}, but the payee's card is of epoch {current}")]
    ReceiptEpoch {
        /// The letter's epoch.
        epoch: u32,
        /// The payee's current epoch.
        current: u32,
    },
    /// The payee's contact card has no receipt slot left that it endorsed and this payer
    /// did not use.
    #[error(
        "no unused endorsed receipt slot on the payee's card (of {slots}): ask it for a new card"
    )]
    NoReceiptSlot {
        /// The card's number of slots.
        slots: usize,
    },
    /// No payment with this id.
    #[error("unknown payment {0}")]
    UnknownPayment(PaymentId),
    /// A payment id already in use.
    #[error("payment {0} exists already")]
    DuplicatePayment(PaymentId),
    /// The message came from a node that has no say in this payment.
    #[error("{what} from {from}, which is not this payment's {role}")]
    WrongPeer {
        /// The message.
        what: &'static str,
        /// Who sent it.
        from: Box<PublicKey>,
        /// Whom it should have come from.
        role: &'static str,
    },
    /// A field disagrees with what was agreed before.
    #[error("{field} does not match the payment")]
    Mismatch {
        /// The field.
        field: &'static str,
    },
    /// The input does not fit the payment's status (replayed or out of order).
    #[error("{what} is not expected while the payment is {status}")]
    Unexpected {
        /// The input.
        what: &'static str,
        /// The payment's status.
        status: &'static str,
    },
    /// The payer cancelled the offer before a sale.
    #[error("the payer cancelled the offer")]
    Cancelled,
    /// The offer is irrevocable: the payer cannot cancel it before its expiry.
    #[error("the offer is irrevocable until height {expiry}: the payee may still sell it")]
    Irrevocable {
        /// The offer's last height.
        expiry: u32,
    },
    /// The offer's expiry has passed.
    #[error("offer expired at height {expiry}, now {height}")]
    Expired {
        /// The offer's last height.
        expiry: u32,
        /// The current height.
        height: u32,
    },
    /// Amounts that do not add up or are zero.
    #[error("invalid amount: {0}")]
    Amount(&'static str),
    /// The withheld channel state the request refers to does not exist or differs.
    #[error("no withheld state {state} moving {transfer_sat} sat on this channel")]
    NoPendingState {
        /// The state named by the request.
        state: u64,
        /// The transfer the request needs.
        transfer_sat: u64,
    },
    /// The offer cannot be bought safely any more: a PTLC for it would outlive the window in
    /// which S can still publish the completed state.
    #[error(
        "sale window closed: ptlc expiry {ptlc_expiry} is past the last safe height {last_safe}"
    )]
    WindowClosed {
        /// The expiry the PTLC would need.
        ptlc_expiry: u32,
        /// The last expiry that lets S learn the scalar while it can still complete and
        /// publish the state (or claim the payer's PTLC, for a held sale).
        last_safe: u32,
    },
    /// The payer's channel replaces an older published state for too few blocks for a sale
    /// to settle inside that time.
    #[error(
        "payer channel's shared delay {shared_delay} is below the {needed} blocks a sale needs"
    )]
    DelayTooShort {
        /// The channel's shared delay.
        shared_delay: u16,
        /// PTLC delta plus twice the sale window margin.
        needed: u32,
    },
}

impl PaymentError {
    /// A short stable code for peers and logs.
    pub fn code(&self) -> &'static str {
        match self {
            PaymentError::Decode(_) => "decode",
            PaymentError::LetterKind { .. } => "letter_kind",
            PaymentError::TooLarge { .. } => "too_large",
            PaymentError::Version(_) => "version",
            PaymentError::BadSignature { .. } => "bad_signature",
            PaymentError::WrongScalar => "wrong_scalar",
            PaymentError::ReceiptSlotUsed { .. } => "receipt_slot_used",
            PaymentError::ReceiptEpoch { .. } => "receipt_epoch",
            PaymentError::NoReceiptSlot { .. } => "no_receipt_slot",
            PaymentError::UnknownPayment(_) => "unknown_payment",
            PaymentError::DuplicatePayment(_) => "duplicate_payment",
            PaymentError::WrongPeer { .. } => "wrong_peer",
            PaymentError::Mismatch { .. } => "mismatch",
            PaymentError::Unexpected { .. } => "unexpected",
            PaymentError::Cancelled => "cancelled",
            PaymentError::Irrevocable { .. } => "irrevocable",
            PaymentError::Expired { .. } => "expired",
            PaymentError::Amount(_) => "amount",
            PaymentError::NoPendingState { .. } => "no_pending_state",
            PaymentError::WindowClosed { .. } => "window_closed",
            PaymentError::DelayTooShort { .. } => "delay_too_short",
        }
    }
}

/// A's request for an offer on its withheld state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayRequest {
    /// The payment.
    pub payment_id: PaymentId,
    /// The A–S channel.
    pub channel_id: ChannelId,
    /// The withheld state n+1.
    pub state: u64,
    /// What B is to receive.
    pub amount_sat: u64,
    /// What S keeps; the state moves `amount_sat + fee_sat` from A to S.
    pub fee_sat: u64,
    /// B's node key.
    pub payee: PublicKey,
    /// For a held sale: the PTLC A offered S for it, in state `state` or later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldPtlc>,
    /// A held sale A may not cancel before the offer's expiry: the offer a merchant's
    /// offline device can rely on (see "Point of sale" in docs/payment.md).
    #[serde(default, skip_serializing_if = "is_false")]
    pub irrevocable: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The PTLC that carries a held sale on the A–S channel: A offered it to S out of its own
/// balance, locked to the point B sells, so the payment waits in a complete state of its
/// own and any number of payments can wait at once (see "Held sales" in
/// docs/payment.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldPtlc {
    /// The PTLC's id on the A–S channel.
    pub id: u64,
    /// Its expiry height: from then on A may take its amount back on chain.
    pub expiry: u32,
}

impl HeldPtlc {
    fn bytes(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[..8].copy_from_slice(&self.id.to_be_bytes());
        out[8..].copy_from_slice(&self.expiry.to_be_bytes());
        out
    }
}

/// What S promises in a [`PurchaseOffer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferTerms {
    /// The payment.
    pub payment_id: PaymentId,
    /// S's node key, the signer.
    pub lsp: PublicKey,
    /// The A–S channel.
    pub channel_id: ChannelId,
    /// The state whose signature is sold; for a held sale, the state that holds the PTLC.
    pub state: u64,
    /// What S pays for the scalar.
    pub amount_sat: u64,
    /// What S keeps.
    pub fee_sat: u64,
    /// T, the price point of A's signature.
    pub point: AdaptorPoint,
    /// The only node S pays.
    pub payee: PublicKey,
    /// The last block height at which S accepts an invoice.
    pub expiry: u32,
    /// For a held sale: the payer's PTLC S claims with the scalar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldPtlc>,
    /// S refuses the payer's cancellation until `expiry`: once the letter is handed over,
    /// the payee can count on the sale until then (only held sales are irrevocable).
    #[serde(default, skip_serializing_if = "is_false")]
    pub irrevocable: bool,
}

impl OfferTerms {
    /// `tagged_hash("asyncpay/payment/v1/offer", id ‖ lsp ‖ channel ‖ state ‖ amount ‖ fee ‖
    /// point ‖ payee ‖ expiry [‖ held id ‖ held expiry] [‖ 0x01])`, integers big-endian, the
    /// held PTLC only for a held sale, the final byte only for an irrevocable offer.
    pub fn digest(&self) -> [u8; 32] {
        let held = self.held.map(|h| h.bytes());
        let irrevocable: &[u8] = if self.irrevocable { &[1] } else { &[] };
        tagged_hash(
            OFFER_TAG,
            &[
                &self.payment_id.0,
                &self.lsp.to_xonly_bytes(),
                &self.channel_id.0,
                &self.state.to_be_bytes(),
                &self.amount_sat.to_be_bytes(),
                &self.fee_sat.to_be_bytes(),
                &self.point.to_bytes(),
                &self.payee.to_xonly_bytes(),
                &self.expiry.to_be_bytes(),
                held.as_ref().map_or(&[][..], |h| &h[..]),
                irrevocable,
            ],
        )
    }

    /// Signs the terms with S's key (which must be `self.lsp`).
    pub fn sign(self, lsp: &SecretKey, aux: &[u8; 32]) -> PurchaseOffer {
        let signature = lsp.sign(&self.digest(), aux);
        PurchaseOffer {
            terms: self,
            signature,
        }
    }
}

/// S's signed promise to buy A's withheld signature from the payee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurchaseOffer {
    /// What S promises.
    pub terms: OfferTerms,
    /// S's BIP340 signature over [`OfferTerms::digest`].
    pub signature: Signature,
}

impl core::ops::Deref for PurchaseOffer {
    type Target = OfferTerms;

    fn deref(&self) -> &OfferTerms {
        &self.terms
    }
}

impl PurchaseOffer {
    /// Checks S's signature.
    pub fn verify(&self) -> Result<(), PaymentError> {
        self.terms
            .lsp
            .verify(&self.terms.digest(), &self.signature)
            .map_err(|_| PaymentError::BadSignature { what: "offer" })
    }
}

/// What the payee completes with its receipt signature z into the scalar S buys.
///
/// Read back also from the bare pre-signature that records of the previous version stored
/// (in a field named `presignature`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", from = "StoredForSale")]
pub enum ForSale {
    /// A's pre-signature on its withheld update U_{n+1}, encrypted to Z = z·G: completed,
    /// its scalar s (with s·G = T) is A's signature, the thing sold.
    Presignature(EncryptedSignature),
    /// A held sale: A's share a of the point T = a·G + Z of the PTLC A offered S. The
    /// scalar sold is t = a + z, which completes A's pre-signed half of S's claim on that
    /// PTLC.
    Share(Share),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StoredForSale {
    Tagged(TaggedForSale),
    Bare(EncryptedSignature),
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum TaggedForSale {
    Presignature(EncryptedSignature),
    Share(Share),
}

impl From<StoredForSale> for ForSale {
    fn from(stored: StoredForSale) -> Self {
        match stored {
            StoredForSale::Tagged(TaggedForSale::Presignature(p)) | StoredForSale::Bare(p) => {
                ForSale::Presignature(p)
            }
            StoredForSale::Tagged(TaggedForSale::Share(a)) => ForSale::Share(a),
        }
    }
}

impl ForSale {
    /// The scalar sold, from the payee's receipt signature scalar z.
    pub fn complete(&self, z: &AdaptorSecret) -> Result<AdaptorSecret, PaymentError> {
        match self {
            ForSale::Presignature(p) => p.decrypt_scalar(z),
            ForSale::Share(a) => a.secret()?.add(z),
        }
        .map_err(|_| PaymentError::WrongScalar)
    }

    /// z, the payee's receipt signature scalar, from the scalar S bought and the receipt
    /// point Z = z·G; refused unless it is z.
    pub fn receipt_scalar(
        &self,
        receipt_point: &AdaptorPoint,
        scalar: &AdaptorSecret,
    ) -> Result<AdaptorSecret, PaymentError> {
        let z = match self {
            ForSale::Presignature(p) => p
                .recover_from_scalar(receipt_point, scalar)
                .map_err(|_| PaymentError::WrongScalar)?,
            ForSale::Share(a) => scalar
                .sub(&a.secret()?)
                .map_err(|_| PaymentError::WrongScalar)?,
        };
        if !sells(&z, receipt_point) {
            return Err(PaymentError::WrongScalar);
        }
        Ok(z)
    }
}

impl fmt::Debug for ForSale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ForSale::Presignature(_) => "Presignature(<redacted>)",
            ForSale::Share(_) => "Share(<redacted>)",
        })
    }
}

/// The payer's share a of a held sale's point (a non-zero scalar, 32 bytes big-endian).
/// Whoever holds it and B's receipt signature holds the scalar S pays for: redacted in
/// `Debug`, kept only by the payer and in the letter sealed to B.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share(#[serde(with = "hex_32")] pub [u8; 32]);

impl Share {
    /// The share as a scalar; refused if zero or not below the curve order.
    pub fn secret(&self) -> Result<AdaptorSecret, PaymentError> {
        AdaptorSecret::from_bytes(self.0).map_err(|_| PaymentError::WrongScalar)
    }
}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Share(<redacted>)")
    }
}

/// What A leaves in B's mailbox (sealed with age to B): the offer and what B completes into
/// the scalar S buys (A's pre-signature, or for a held sale A's share of the point), both
/// bound to B's receipt signature.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaleLetter {
    /// Encoding version, [`PAYMENT_VERSION`].
    pub version: u8,
    /// S's offer.
    pub offer: PurchaseOffer,
    /// What B completes, with its receipt signature on [`SaleLetter::receipt_message`] with
    /// slot `receipt_slot`, into the scalar it sells.
    #[serde(alias = "presignature")]
    pub sold: ForSale,
    /// The card epoch of the receipt slot.
    pub receipt_epoch: u32,
    /// The receipt slot (its index on B's card).
    pub receipt_slot: u32,
    /// A's node key.
    pub payer: PublicKey,
    /// A note for B (bounded).
    pub note: String,
}

impl fmt::Debug for SaleLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaleLetter")
            .field("offer", &self.offer)
            .field("sold", &self.sold)
            .field("receipt_epoch", &self.receipt_epoch)
            .field("receipt_slot", &self.receipt_slot)
            .field("payer", &self.payer)
            .finish_non_exhaustive()
    }
}

/// What a mailbox letter is, named by its first byte: a letter's kind is in its encoding,
/// never guessed from which parser accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LetterKind {
    /// A payer's sale letter to its payee ([`SaleLetter`]), byte 1.
    Sale,
    /// A letter of the reverse variant ([`reverse::ReverseLetter`]), byte 2.
    Reverse,
}

impl LetterKind {
    /// The first byte of letters of this kind.
    pub fn byte(self) -> u8 {
        match self {
            LetterKind::Sale => 1,
            LetterKind::Reverse => 2,
        }
    }

    /// The kind of the letter `bytes`.
    pub fn of(bytes: &[u8]) -> Option<LetterKind> {
        match bytes.first() {
            Some(1) => Some(LetterKind::Sale),
            Some(2) => Some(LetterKind::Reverse),
            _ => None,
        }
    }

    /// `body` with this kind's byte in front.
    pub fn frame(self, body: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + 1);
        out.push(self.byte());
        out.extend(body);
        out
    }

    /// The body of a letter of this kind (bounded in size), or why it is not one.
    pub(crate) fn strip(self, bytes: &[u8]) -> Result<&[u8], PaymentError> {
        bounded(bytes)?;
        match bytes.split_first() {
            Some((first, body)) if *first == self.byte() => Ok(body),
            other => Err(PaymentError::LetterKind {
                expected: self,
                found: other.map(|(b, _)| *b),
            }),
        }
    }
}

impl SaleLetter {
    /// Its kind byte, then JSON (the mailbox envelope encrypts them).
    pub fn encode(&self) -> Vec<u8> {
        LetterKind::Sale.frame(serde_json::to_vec(self).expect("a letter always serialises"))
    }

    /// Parses and bounds a letter; checks the kind and the version only (see
    /// [`SaleLetter::check`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, PaymentError> {
        let body = LetterKind::Sale.strip(bytes)?;
        let letter: SaleLetter =
            serde_json::from_slice(body).map_err(|e| PaymentError::Decode(e.to_string()))?;
        if letter.version != PAYMENT_VERSION {
            return Err(PaymentError::Version(letter.version));
        }
        if letter.note.len() > MAX_NOTE_LEN {
            return Err(PaymentError::TooLarge {
                len: letter.note.len(),
                max: MAX_NOTE_LEN,
            });
        }
        Ok(letter)
    }

    /// The receipt message B's slot signs for this letter.
    pub fn receipt_message(&self) -> [u8; 32] {
        receipt_message(
            &self.offer.payment_id,
            self.offer.amount_sat,
            &self.offer.payee,
            self.receipt_epoch,
            self.receipt_slot,
            &self.note,
        )
    }

    /// What B checks before it invoices: S signed the offer, the offer names `payee`, and
    /// what the letter sells, completed with B's receipt signature (slot `receipt_slot` of
    /// `receipts`), is the discrete log of the offer's point. Returns that scalar.
    ///
    /// This signs the receipt message with the slot: the caller must hold the slot as spent
    /// for this payment (durably) before the scalar leaves it.
    pub fn check(
        &self,
        payee: &SecretKey,
        receipts: &ReceiptKeys,
    ) -> Result<AdaptorSecret, PaymentError> {
        self.offer.verify()?;
        if self.offer.payee != payee.public_key() {
            return Err(PaymentError::Mismatch { field: "payee" });
        }
        let receipt = receipts.sign(
            self.receipt_epoch,
            self.receipt_slot,
            &self.receipt_message(),
        );
        let z = AdaptorSecret::from_signature(&receipt).map_err(|_| PaymentError::WrongScalar)?;
        let secret = self.sold.complete(&z)?;
        if !sells(&secret, &self.offer.point) {
            return Err(PaymentError::WrongScalar);
        }
        Ok(secret)
    }
}

/// What B asks S to pay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvoiceTerms {
    /// The payment.
    pub payment_id: PaymentId,
    /// The point B will open.
    pub point: AdaptorPoint,
    /// The amount.
    pub amount_sat: u64,
    /// B's node key, the signer.
    pub payee: PublicKey,
    /// The LSP it is addressed to.
    pub lsp: PublicKey,
    /// How to reach B when it has no channel with the LSP: the router whose channel with B
    /// carries the last hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_hint: Option<RouteHint>,
}

/// The last hop to a payee that has no channel with the LSP, as the payee announces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteHint {
    /// The router's node key.
    pub router: PublicKey,
    /// What the router keeps for forwarding.
    pub fee_sat: u64,
    /// Blocks the router needs between the expiry of the PTLC it receives and the one it
    /// offers (at least twice its channel's shared delay).
    pub expiry_delta: u32,
}

impl InvoiceTerms {
    /// The terms answering `offer`, for `payee`, reached through `route_hint` if any.
    pub fn for_offer(
        offer: &PurchaseOffer,
        payee: PublicKey,
        route_hint: Option<RouteHint>,
    ) -> Self {
        InvoiceTerms {
            payment_id: offer.payment_id,
            point: offer.point,
            amount_sat: offer.amount_sat,
            payee,
            lsp: offer.lsp,
            route_hint,
        }
    }

    /// `tagged_hash("asyncpay/payment/v1/invoice", id ‖ point ‖ amount ‖ payee ‖ lsp
    /// [‖ router ‖ fee ‖ expiry_delta])`, the hint only when there is one.
    pub fn digest(&self) -> [u8; 32] {
        let hint = self.route_hint.map(|h| {
            let mut bytes = h.router.to_xonly_bytes().to_vec();
            bytes.extend(h.fee_sat.to_be_bytes());
            bytes.extend(h.expiry_delta.to_be_bytes());
            bytes
        });
        tagged_hash(
            INVOICE_TAG,
            &[
                &self.payment_id.0,
                &self.point.to_bytes(),
                &self.amount_sat.to_be_bytes(),
                &self.payee.to_xonly_bytes(),
                &self.lsp.to_xonly_bytes(),
                hint.as_deref().unwrap_or(&[]),
            ],
        )
    }

    /// Signs the terms with B's key (which must be `self.payee`).
    pub fn sign(self, payee: &SecretKey, aux: &[u8; 32]) -> Invoice {
        let signature = payee.sign(&self.digest(), aux);
        Invoice {
            terms: self,
            signature,
        }
    }
}

/// B's signed request to be paid for the point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invoice {
    /// What B asks.
    pub terms: InvoiceTerms,
    /// B's BIP340 signature over [`InvoiceTerms::digest`].
    pub signature: Signature,
}

impl core::ops::Deref for Invoice {
    type Target = InvoiceTerms;

    fn deref(&self) -> &InvoiceTerms {
        &self.terms
    }
}

impl Invoice {
    /// Checks B's signature.
    pub fn verify(&self) -> Result<(), PaymentError> {
        self.terms
            .payee
            .verify(&self.terms.digest(), &self.signature)
            .map_err(|_| PaymentError::BadSignature { what: "invoice" })
    }

    /// Checks the signature and that the invoice answers `offer` exactly.
    pub fn check_against(&self, offer: &PurchaseOffer) -> Result<(), PaymentError> {
        self.verify()?;
        same(self.payment_id == offer.payment_id, "payment_id")?;
        same(self.point == offer.point, "point")?;
        same(self.amount_sat == offer.amount_sat, "amount")?;
        same(self.payee == offer.payee, "payee")?;
        same(self.lsp == offer.lsp, "lsp")
    }
}

/// What S hands A once it bought A's signature: B's signed invoice for the payment and the
/// scalar S bought. The invoice shows what B asked (B signs it before S pays); the scalar,
/// with A's pre-signature, yields B's receipt signature, which B could only have produced
/// by completing A's signature, that is by selling it: the [`ProofOfPayment`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The payment.
    pub payment_id: PaymentId,
    /// B's signed invoice.
    pub invoice: Invoice,
    /// The scalar S bought (B revealed it to claim S's PTLC): with its pre-signature, the
    /// payer learns B's receipt signature from it, the proof of payment.
    pub scalar: RevealedSecret,
}

/// How S answered a cancellation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelOutcome {
    /// The offer is void; S will not buy, and the state is being reverted.
    Cancelled,
    /// B's invoice was accepted first; the sale goes on.
    SaleInProgress,
    /// Already sold (a [`Receipt`] follows).
    Sold,
    /// The offer had expired already; the state is reverted.
    Expired,
    /// The offer is irrevocable until its expiry: the payee may still sell it.
    Irrevocable,
}

/// A payment-layer peer message. It travels in the one wire encoding of
/// [`crate::protocol::wire`], as the
/// [`PeerMessage::Payment`](crate::protocol::wire::PeerMessage::Payment) variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentMessage {
    /// A → S.
    Request(PayRequest),
    /// S → A.
    Offer(PurchaseOffer),
    /// B → S.
    Invoice(Invoice),
    /// S → B: the invoice is refused.
    InvoiceRefused {
        /// The payment.
        payment_id: PaymentId,
        /// [`PaymentError::code`] of the reason (at most [`MAX_REASON_LEN`] bytes on the
        /// wire).
        reason: String,
    },
    /// A → S: withdraw the offer if it is not sold.
    Cancel {
        /// The payment.
        payment_id: PaymentId,
    },
    /// S → A.
    Cancelled {
        /// The payment.
        payment_id: PaymentId,
        /// What happened.
        outcome: CancelOutcome,
    },
    /// S → A: the payment is done.
    Receipt(Receipt),
    /// A → S: the receipt arrived; S stops resending it.
    ReceiptAck {
        /// The payment.
        payment_id: PaymentId,
    },
    /// S → A: the request was refused.
    RequestRefused {
        /// The payment.
        payment_id: PaymentId,
        /// [`PaymentError::code`] of the reason (at most [`MAX_REASON_LEN`] bytes on the
        /// wire).
        reason: String,
    },
    /// S → router P: forward the PTLC S is adding on S–P to the payee.
    Forward(Forward),
    /// B → S (reverse variant): propose a state paying B `amount_sat`, to be bought by
    /// `payer`.
    ReceiveRequest {
        /// The payment.
        payment_id: PaymentId,
        /// What B receives.
        amount_sat: u64,
        /// Who will buy S's signature.
        payer: PublicKey,
    },
    /// S → B (reverse variant): S's offer of its withheld signature on that state.
    ReceiveOffer(PurchaseOffer),
}

/// What a router is asked to do with a PTLC it receives: offer one with the same point to
/// the next node. Sent in the clear over the authenticated connection (no onion): the router
/// learns the payee and the amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    /// The payment.
    pub payment_id: PaymentId,
    /// The point of both PTLCs.
    pub point: AdaptorPoint,
    /// What the incoming PTLC carries.
    pub amount_in_sat: u64,
    /// What the outgoing PTLC must carry.
    pub amount_out_sat: u64,
    /// The outgoing PTLC's expiry.
    pub expiry_out: u32,
    /// The next node.
    pub next: PublicKey,
}

impl PaymentMessage {
    /// The message's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            PaymentMessage::Request(_) => "request",
            PaymentMessage::Offer(_) => "offer",
            PaymentMessage::Invoice(_) => "invoice",
            PaymentMessage::InvoiceRefused { .. } => "invoice_refused",
            PaymentMessage::Cancel { .. } => "cancel",
            PaymentMessage::Cancelled { .. } => "cancelled",
            PaymentMessage::Receipt(_) => "receipt",
            PaymentMessage::ReceiptAck { .. } => "receipt_ack",
            PaymentMessage::RequestRefused { .. } => "request_refused",
            PaymentMessage::Forward(_) => "forward",
            PaymentMessage::ReceiveRequest { .. } => "receive_request",
            PaymentMessage::ReceiveOffer(_) => "receive_offer",
        }
    }
}

/// `Ok` if `ok`, else a [`PaymentError::Mismatch`] naming `field`.
fn same(ok: bool, field: &'static str) -> Result<(), PaymentError> {
    if ok {
        Ok(())
    } else {
        Err(PaymentError::Mismatch { field })
    }
}

fn bounded(bytes: &[u8]) -> Result<(), PaymentError> {
    if bytes.len() > MAX_LETTER_LEN {
        return Err(PaymentError::TooLarge {
            len: bytes.len(),
            max: MAX_LETTER_LEN,
        });
    }
    Ok(())
}

/// What a payment role asks its driver to do, in order.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Action<R> {
    /// Store this payment record durably before the next action.
    Persist(R),
    /// Send a payment message to the peer with this node key.
    Send {
        /// The peer.
        to: PublicKey,
        /// The message.
        message: PaymentMessage,
    },
    /// Feed this command to the channel with this id.
    Channel {
        /// The channel.
        channel_id: ChannelId,
        /// The command.
        command: Command,
    },
    /// Abandon the withheld state `abandoned_state` of this channel for good: propose the
    /// state after it with the balances before it, which overrides it on chain.
    Revert {
        /// The channel.
        channel_id: ChannelId,
        /// The withheld state.
        abandoned_state: u64,
    },
    /// Seal this letter to the payee's mailbox (payer only).
    PostLetter {
        /// The payment.
        payment_id: PaymentId,
        /// The payee.
        payee: PublicKey,
        /// The letter.
        letter: Box<SaleLetter>,
    },
    /// Tell the user.
    Event(PaymentEvent),
}

/// Something the user should know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PaymentEvent {
    /// Payer: the letter is in the mailbox; the payer may go offline.
    LetterPosted {
        /// The payment.
        payment_id: PaymentId,
    },
    /// LSP: an offer was made.
    Offered {
        /// The payment.
        payment_id: PaymentId,
        /// The price point.
        point: AdaptorPoint,
    },
    /// Payee: a letter was checked and an invoice sent.
    Invoiced {
        /// The payment.
        payment_id: PaymentId,
        /// The amount.
        amount_sat: u64,
    },
    /// Payer: its withheld state was completed by the payee's signature, and the proof of
    /// payment taken from it; S's receipt has not come yet.
    Paid {
        /// The payment.
        payment_id: PaymentId,
    },
    /// LSP: the sale went through and the payer's state is complete. Payee: paid.
    /// Payer: the receipt arrived.
    Completed {
        /// The payment.
        payment_id: PaymentId,
    },
    /// The payment was cancelled or expired before a sale.
    Cancelled {
        /// The payment.
        payment_id: PaymentId,
        /// Why.
        outcome: CancelOutcome,
    },
    /// A peer refused something.
    Refused {
        /// The payment.
        payment_id: PaymentId,
        /// The peer's reason code.
        reason: String,
    },
}

/// A fresh 32-byte value for signatures' auxiliary randomness and ids, supplied by the
/// driver (the core uses no global RNG).
#[derive(Clone, Copy)]
pub struct Entropy(pub [u8; 32]);

impl fmt::Debug for Entropy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Entropy(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::{ForSale, LetterKind, PaymentError, Share};
    use crate::crypto::adaptor::{AdaptorSecret, EncryptedSignature};
    use crate::crypto::keys::SecretKey;

    /// A record of the previous version stored the pre-signature bare, under
    /// `presignature`: it reads back as `ForSale::Presignature`; both forms of today round
    /// trip, and the share's bytes never show in `Debug`.
    #[test]
    fn what_is_for_sale_reads_back_in_every_stored_form() {
        let key = SecretKey::from_bytes([7; 32]).unwrap();
        let t = AdaptorSecret::from_bytes([8; 32]).unwrap().adaptor_point();
        let pre = EncryptedSignature::encrypt(&key, &t, &[1; 32], &[2; 32]);
        #[derive(serde::Deserialize)]
        struct Old {
            #[serde(alias = "presignature")]
            sold: ForSale,
        }
        let old = serde_json::json!({ "presignature": pre });
        let read: Old = serde_json::from_value(old).unwrap();
        assert!(read.sold == ForSale::Presignature(pre.clone()));
        for sold in [ForSale::Presignature(pre), ForSale::Share(Share([9; 32]))] {
            let json = serde_json::to_string(&sold).unwrap();
            assert!(serde_json::from_str::<ForSale>(&json).unwrap() == sold);
        }
        let shown = format!("{:?}", ForSale::Share(Share([0xab; 32])));
        assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
    }

    /// A peer that sends a letter of one kind where another is expected, no kind byte, or a
    /// kind no decoder knows, gets a typed refusal: a letter is never read as the other kind.
    #[test]
    fn a_letter_is_read_only_as_the_kind_its_first_byte_names() {
        let body = br#"{"version":1}"#.to_vec();
        let sale = LetterKind::Sale.frame(body.clone());
        let reverse = LetterKind::Reverse.frame(body.clone());
        assert_eq!(LetterKind::of(&sale), Some(LetterKind::Sale));
        assert_eq!(LetterKind::of(&reverse), Some(LetterKind::Reverse));
        assert_eq!(LetterKind::Sale.strip(&sale).unwrap(), &body[..]);
        for (bytes, found) in [
            (reverse.clone(), Some(2)),
            (body.clone(), Some(b'{')),
            (vec![], None),
            (vec![9, 1, 2], Some(9)),
        ] {
            assert!(matches!(
                LetterKind::Sale.strip(&bytes),
                Err(PaymentError::LetterKind { expected: LetterKind::Sale, found: f }) if f == found
            ));
        }
        assert!(matches!(
            LetterKind::Reverse.strip(&sale),
            Err(PaymentError::LetterKind { found: Some(1), .. })
        ));
        assert!(LetterKind::of(&[7]).is_none() && LetterKind::of(&[]).is_none());
    }
}
