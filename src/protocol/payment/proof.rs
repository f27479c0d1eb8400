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
use crate::crypto::receipt::ReceiptSlot;
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
    /// The slot carries no endorsement by the payee's node key for this epoch.
    #[error("receipt slot {slot} of epoch {epoch} is not endorsed by the payee's node key")]
    UnknownSlot {
        /// The proof's epoch.
        epoch: u32,
        /// The proof's slot.
        slot: u32,
    },
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

    /// Checks the proof against the payee's node key `payee` (from any of its contact cards,
    /// whose signature the caller checked): the slot's endorsement by that key, then the
    /// slot's signature on the receipt message.
    pub fn verify(&self, payee: &PublicKey) -> Result<(), ProofError> {
        if &self.payee != payee {
            return Err(ProofError::OtherPayee {
                proof: Box::new(self.payee),
                card: Box::new(*payee),
            });
        }
        if !self.slot.endorsed_by(self.epoch, payee) {
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

    fn genuine() -> (ProofOfPayment, PublicKey, ReceiptKeys) {
        let receipts = ReceiptKeys::from_seed(&[3; 32]);
        let node = SecretKey::from_bytes([4; 32]).unwrap();
        let card = receipts.endorsed_card(0, 0..4, &node);
        let payee = node.public_key();
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
        (proof, payee, receipts)
    }

    #[test]
    fn a_genuine_proof_verifies_and_every_forgery_is_refused_with_its_reason() {
        let (proof, payee, receipts) = genuine();
        proof.verify(&payee).unwrap();

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
            assert_eq!(forged.verify(&payee), Err(ProofError::BadSignature));
        }
        // A signature by another key, or by another slot's key.
        let other = SecretKey::from_bytes([7; 32]).unwrap();
        let forged = ProofOfPayment {
            signature: other.sign(&proof.message(), &[0; 32]),
            ..proof.clone()
        };
        assert_eq!(forged.verify(&payee), Err(ProofError::BadSignature));
        let forged = ProofOfPayment {
            signature: receipts.sign(0, 3, &proof.message()),
            ..proof.clone()
        };
        assert_eq!(forged.verify(&payee), Err(ProofError::BadSignature));
        // A slot the payee never endorsed (a forger's own slot, with a valid signature by
        // it), one endorsed by another key, and the slot claimed for another epoch.
        let own = receipts.slot(0, 9);
        let endorsed_by_other = ReceiptSlot {
            endorsement: Some(other.sign(&own.digest(0), &[0; 32])),
            ..own
        };
        for slot in [own, endorsed_by_other] {
            let forged = ProofOfPayment {
                slot,
                signature: receipts.sign(0, 9, &proof.message()),
                ..proof.clone()
            };
            assert_eq!(
                forged.verify(&payee),
                Err(ProofError::UnknownSlot { epoch: 0, slot: 9 })
            );
        }
        let other_epoch = ProofOfPayment {
            epoch: 1,
            ..proof.clone()
        };
        assert!(matches!(
            other_epoch.verify(&payee),
            Err(ProofError::UnknownSlot { epoch: 1, .. })
        ));
        // Checked against another payee.
        let stranger = SecretKey::from_bytes([8; 32]).unwrap().public_key();
        assert!(matches!(
            proof.verify(&stranger),
            Err(ProofError::OtherPayee { .. })
        ));
        // The reasons read as sentences.
        assert_eq!(
            ProofError::BadSignature.to_string(),
            "the receipt signature does not verify for this payment, amount and note"
        );
    }
}
