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
        let on_card = card.epoch == self.epoch && card.slots.contains(&self.slot);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::SecretKey;
    use crate::crypto::receipt::ReceiptKeys;

    fn genuine() -> (ProofOfPayment, PublicKey, ReceiptCard, ReceiptKeys) {
        let receipts = ReceiptKeys::from_seed(&[3; 32]);
        let card = receipts.card(0, 4);
        let payee = SecretKey::from_bytes([4; 32]).unwrap().public_key();
        let mut proof = ProofOfPayment {
            payment_id: PaymentId([5; 32]),
            amount_sat: 50_000,
            note: "coffee".into(),
            payee,
            epoch: 0,
            slot: card.slots[2],
            signature: SecretKey::from_bytes([1; 32])
                .unwrap()
                .sign(&[0; 32], &[0; 32]),
        };
        proof.signature = receipts.sign(0, 2, &proof.message());
        (proof, payee, card, receipts)
    }

    #[test]
    fn a_genuine_proof_verifies_and_every_forgery_is_refused_with_its_reason() {
        let (proof, payee, card, receipts) = genuine();
        proof.verify(&payee, &card).unwrap();

        // Another amount, note or payment: the signature no longer covers it.
        for forged in [
            ProofOfPayment {
                amount_sat: proof.amount_sat + 1,
                ..proof.clone()
            },
            ProofOfPayment {
                note: "tea".into(),
                ..proof.clone()
            },
            ProofOfPayment {
                payment_id: PaymentId([6; 32]),
                ..proof.clone()
            },
        ] {
            assert_eq!(forged.verify(&payee, &card), Err(ProofError::BadSignature));
        }
        // A signature by another key (the payee's node key would not do either), or by the
        // slot's key with another nonce than the slot's.
        let other = SecretKey::from_bytes([7; 32]).unwrap();
        let forged = ProofOfPayment {
            signature: other.sign(&proof.message(), &[0; 32]),
            ..proof.clone()
        };
        assert_eq!(forged.verify(&payee, &card), Err(ProofError::BadSignature));
        // The signature of slot 3 claimed for slot 2, and a slot the card does not list.
        let forged = ProofOfPayment {
            signature: receipts.sign(0, 3, &proof.message()),
            ..proof.clone()
        };
        assert_eq!(forged.verify(&payee, &card), Err(ProofError::BadSignature));
        let off_card = ProofOfPayment {
            slot: receipts.slot(0, 9),
            ..proof.clone()
        };
        assert_eq!(
            off_card.verify(&payee, &card),
            Err(ProofError::UnknownSlot { epoch: 0, slot: 9 })
        );
        let other_epoch = ProofOfPayment {
            epoch: 1,
            ..proof.clone()
        };
        assert!(matches!(
            other_epoch.verify(&payee, &card),
            Err(ProofError::UnknownSlot { epoch: 1, .. })
        ));
        // Checked against another payee's card.
        let stranger = SecretKey::from_bytes([8; 32]).unwrap().public_key();
        assert!(matches!(
            proof.verify(&stranger, &card),
            Err(ProofError::OtherPayee { .. })
        ));
        // The reasons read as sentences.
        assert_eq!(
            ProofError::BadSignature.to_string(),
            "the receipt signature does not verify for this payment, amount and note"
        );
    }
}
