//! Proof of payment: the payee's BIP340 signature on a receipt message, which the payer
//! learns from the scalar S bought (see [`crate::crypto::receipt`]).
//!
//! The payer encrypts its withheld signature to the point Z of the payee's future receipt
//! signature on m = [`receipt_message`]; the payee can complete (and so sell) the withheld
//! signature only by adding its receipt signature's scalar; the payer, given the sold scalar,
//! subtracts its pre-signature and holds the payee's signature on m. Anyone can check it with
//! the payee's contact card: the card's signature by the payee's node key covers the slot.

use serde::{Deserialize, Serialize};

use crate::crypto::keys::{PublicKey, Signature};
use crate::crypto::receipt::{ReceiptCard, ReceiptSlot};
use crate::crypto::tagged_hash;

use super::PaymentId;

const RECEIPT_TAG: &str = "asyncpay/receipt/v1/message";

/// m = `tagged_hash("asyncpay/receipt/v1/message", payment_id ‖ amount ‖ payee ‖ epoch ‖
/// slot ‖ SHA256(note))`, integers big-endian: what the payee's receipt signature says.
pub fn receipt_message(
    payment_id: &PaymentId,
    amount_sat: u64,
    payee: &PublicKey,
    epoch: u32,
    slot: u32,
    note: &str,
) -> [u8; 32] {
    use bitcoin::hashes::{sha256, Hash as _};
    let note_hash = sha256::Hash::hash(note.as_bytes()).to_byte_array();
    tagged_hash(
        RECEIPT_TAG,
        &[
            &payment_id.0,
            &amount_sat.to_be_bytes(),
            &payee.to_xonly_bytes(),
            &epoch.to_be_bytes(),
            &slot.to_be_bytes(),
            &note_hash,
        ],
    )
}

/// Why a proof of payment is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The proof names another payee than the card's.
    #[error("the proof names payee {proof}, the contact card is {card}'s")]
    OtherPayee {
        /// The payee named by the proof.
        proof: Box<PublicKey>,
        /// The card's node key.
        card: Box<PublicKey>,
    },
    /// The card has no slot like the proof's in this epoch.
    #[error("receipt slot {slot} of epoch {epoch} is not on the contact card")]
    UnknownSlot {
        /// The proof's epoch.
        epoch: u32,
        /// The proof's slot.
        slot: u32,
    },
    /// The card lists no receipt slots (a version 1 card).
    #[error("the contact card lists no receipt slots")]
    NoReceiptSlots,
    /// The signature does not verify for the slot's key and the message the proof states.
    #[error("the receipt signature does not verify for this payment, amount and note")]
    BadSignature,
}

/// What the payer holds once the payment completed: the payee's receipt signature on
/// (payment id, amount, payee, slot, note).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofOfPayment {
    /// The payment.
    pub payment_id: PaymentId,
    /// What the payee was paid.
    pub amount_sat: u64,
    /// The payer's note, as signed.
    pub note: String,
    /// The payee's node key.
    pub payee: PublicKey,
    /// The card epoch of the slot.
    pub epoch: u32,
    /// The receipt slot.
    pub slot: ReceiptSlot,
    /// The slot's BIP340 signature on [`ProofOfPayment::message`].
    pub signature: Signature,
}

impl ProofOfPayment {
    /// The receipt message the signature covers.
    pub fn message(&self) -> [u8; 32] {
        receipt_message(
            &self.payment_id,
            self.amount_sat,
            &self.payee,
            self.epoch,
            self.slot.index,
            &self.note,
        )
    }

    /// Checks the proof against the payee's receipt card, whose signature by `payee` the
    /// caller has checked (a contact card's [`verify`](crate::mailbox::keys::Contact::verify)).
    pub fn verify(&self, payee: &PublicKey, card: &ReceiptCard) -> Result<(), ProofError> {
        if &self.payee != payee {
            return Err(ProofError::OtherPayee {
                proof: Box::new(self.payee),
                card: Box::new(*payee),
            });
        }
        let on_card = card.epoch == self.epoch
            && card.slots.get(self.slot.index as usize) == Some(&self.slot);
        if !on_card {
            return Err(ProofError::UnknownSlot {
                epoch: self.epoch,
                slot: self.slot.index,
            });
        }
        if self.signature.nonce() != self.slot.nonce {
            return Err(ProofError::BadSignature);
        }
        self.slot
            .key
            .verify(&self.message(), &self.signature)
            .map_err(|_| ProofError::BadSignature)
    }
}
