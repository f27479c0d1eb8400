//! Receipt slots: single-use BIP340 nonces and keys a payee publishes in advance, so that a
//! payer can encrypt its withheld signature to the payee's future receipt signature.
//!
//! Slot i of epoch j is a pair (R_i, P_i) of points with even y whose secrets r_i, p_i are
//! derived from the payee's seed, j and i. For a receipt message m, the point
//! Z = R_i + H_BIP340(R_i ‖ P_i ‖ m)·P_i is the [`price_point`] of the BIP340 signature
//! (R_i, z) by P_i on m, which only the payee can make. A payer pre-signs with nonce
//! R_A + Z ([`SecretNonce::encrypt`](crate::crypto::nonce::SecretNonce::encrypt)); the payee
//! completes the payer's signature by adding z, and whoever sees the completed scalar and the
//! pre-signature learns z, that is the payee's signature on m: a proof of payment.
//!
//! A slot must sign one message only: two signatures with one nonce reveal p_i (that slot's
//! key only: the slot keys are not the node key and hold no funds). The payee refuses a
//! second use (see `protocol::payment`).
//!
//! ```
//! use asyncpay::crypto::adaptor::sells;
//! use asyncpay::crypto::receipt::{receipt_point, ReceiptKeys};
//!
//! let keys = ReceiptKeys::from_seed(&[1u8; 32]);
//! let slot = keys.slot(0, 3);
//! let m = [9u8; 32];
//! let Z = receipt_point(&slot, &m)?;
//! let receipt = keys.sign(0, 3, &m);
//! slot.key.verify(&m, &receipt)?; // a plain BIP340 signature by the slot key
//! assert_eq!(receipt.nonce(), slot.nonce);
//! let z = asyncpay::crypto::adaptor::AdaptorSecret::from_signature(&receipt)?;
//! assert!(sells(&z, &Z));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![allow(non_snake_case)]

use core::fmt;

use schnorr_fun::fun::{marker::*, s, Point, Scalar};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::crypto::adaptor::{generator_mul, price_point, AdaptorError, AdaptorPoint};
use crate::crypto::keys::{self, PublicKey, SecretKey, Signature};
use crate::crypto::nonce::PublicNonce;
use crate::crypto::tagged_hash;

/// The public half of a receipt slot, as a contact card lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptSlot {
    /// The slot's index on its card.
    pub index: u32,
    /// R_i, the slot's one-time nonce.
    pub nonce: PublicNonce,
    /// P_i, the slot's one-time key.
    pub key: PublicKey,
    /// The node's BIP340 signature on [`ReceiptSlot::digest`] of the slot's epoch: anyone
    /// holding a proof made with the slot checks it with the node key alone, whatever card
    /// the node issues later (cards list unspent slots, and a restore starts a new epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endorsement: Option<Signature>,
}

impl ReceiptSlot {
    /// `tagged_hash("asyncpay/receipt/v1/slot", epoch ‖ index ‖ R ‖ P)`, integers big-endian:
    /// what the node's endorsement of the slot signs.
    pub fn digest(&self, epoch: u32) -> [u8; 32] {
        tagged_hash(
            "asyncpay/receipt/v1/slot",
            &[
                &epoch.to_be_bytes(),
                &self.index.to_be_bytes(),
                &self.nonce.to_xonly_bytes(),
                &self.key.to_xonly_bytes(),
            ],
        )
    }

    /// Whether the slot of `epoch` carries `node`'s endorsement.
    pub fn endorsed_by(&self, epoch: u32, node: &PublicKey) -> bool {
        self.endorsement
            .is_some_and(|e| node.verify(&self.digest(epoch), &e).is_ok())
    }
}

/// The receipt slots of one card epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptCard {
    /// The epoch: slots of another epoch are refused by the payee.
    pub epoch: u32,
    /// The slots, indices 0, 1, ….
    pub slots: Vec<ReceiptSlot>,
}

/// Z for `slot` and the receipt message m: the point of the slot's signature on m.
pub fn receipt_point(slot: &ReceiptSlot, m: &[u8; 32]) -> Result<AdaptorPoint, AdaptorError> {
    price_point(&slot.nonce, &slot.key, m)
}

/// The payee's secret from which every slot is derived.
///
/// Not `Clone`, not `Serialize`; zeroed on drop; redacted `Debug`.
pub struct ReceiptKeys([u8; 32]);

impl ReceiptKeys {
    /// Derives the receipt root from the node's seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(tagged_hash("asyncpay/receipt/v1/root", &[seed]))
    }

    fn secret(&self, what: &str, epoch: u32, index: u32) -> Scalar<Secret, NonZero> {
        let mut counter = 0u32;
        loop {
            let mut bytes = tagged_hash(
                "asyncpay/receipt/v1/slot",
                &[
                    &self.0,
                    what.as_bytes(),
                    &epoch.to_be_bytes(),
                    &index.to_be_bytes(),
                    &counter.to_be_bytes(),
                ],
            );
            let scalar = Scalar::<Secret, Zero>::from_bytes(bytes).and_then(|s| s.non_zero());
            bytes.zeroize();
            if let Some(scalar) = scalar {
                return scalar;
            }
            // Unreachable in practice (probability about 2^-128); derived again, not panicked.
            counter += 1;
        }
    }

    /// The slot's secrets (r_i, p_i) and points (R_i, P_i), each secret normalised so that
    /// its point has even y.
    fn secrets(&self, epoch: u32, index: u32) -> (EvenPair, EvenPair) {
        (
            even(self.secret("nonce", epoch, index)),
            even(self.secret("key", epoch, index)),
        )
    }

    /// The public half of slot `index` of `epoch`.
    pub fn slot(&self, epoch: u32, index: u32) -> ReceiptSlot {
        let ((_, R), (_, P)) = self.secrets(epoch, index);
        ReceiptSlot {
            index,
            nonce: PublicNonce::from_point(R),
            key: PublicKey::from_xonly_bytes(P.to_xonly_bytes())
                .expect("an even-y point is an x-only key"),
            endorsement: None,
        }
    }

    /// Slots 0..count of `epoch`.
    pub fn card(&self, epoch: u32, count: u32) -> ReceiptCard {
        ReceiptCard {
            epoch,
            slots: (0..count).map(|i| self.slot(epoch, i)).collect(),
        }
    }

    /// The slots `indices` of `epoch`, each endorsed by the node key `node`.
    pub fn endorsed_card(
        &self,
        epoch: u32,
        indices: impl IntoIterator<Item = u32>,
        node: &SecretKey,
    ) -> ReceiptCard {
        let slots = indices
            .into_iter()
            .map(|i| {
                let mut slot = self.slot(epoch, i);
                // Deterministic (BIP340 with zero auxiliary randomness): the same slot is
                // endorsed by the same signature on every card.
                slot.endorsement = Some(node.sign(&slot.digest(epoch), &[0; 32]));
                slot
            })
            .collect();
        ReceiptCard { epoch, slots }
    }

    /// The slot's BIP340 signature on m, with the slot's nonce. Sign at most one message per
    /// slot: the caller records the slot as spent (durably) first.
    pub fn sign(&self, epoch: u32, index: u32, m: &[u8; 32]) -> Signature {
        let ((r, R), (p, P)) = self.secrets(epoch, index);
        let c = keys::challenge(&R, &P, m);
        let z = s!(r + c * p).public();
        Signature::from_inner(schnorr_fun::Signature { R, s: z })
    }
}

/// A secret scalar and its even-y point.
type EvenPair = (Scalar<Secret, NonZero>, Point<EvenY>);

/// `s`, negated if s·G has odd y, and its point (BIP340's even-y form). s·G on
/// libsecp256k1's constant-time generator multiplication; the point is public.
fn even(mut s: Scalar<Secret, NonZero>) -> EvenPair {
    let [parity, x @ ..] = generator_mul(&s).serialize();
    s.conditional_negate(parity == 0x03);
    let point = Point::<EvenY>::from_xonly_bytes(x).expect("libsecp256k1 points are curve points");
    (s, point)
}

impl Drop for ReceiptKeys {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for ReceiptKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReceiptKeys(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::adaptor::{sells, AdaptorSecret};
    use crate::crypto::keys::SecretKey;
    use crate::crypto::nonce::{MemoryCounterStore, NonceSeed, NonceSource};

    /// The slot points made on libsecp256k1 are secp256kfun's even-y points of the same
    /// secrets (both parities occur over the slots).
    #[test]
    fn slot_points_are_the_even_y_points_of_their_secrets() {
        use schnorr_fun::fun::{g, G};
        let keys = ReceiptKeys::from_seed(&[9; 32]);
        let mut odd = [false, false];
        for i in 0..32 {
            let slot = keys.slot(2, i);
            let p = keys.secret("key", 2, i);
            let key = SecretKey::from_bytes(p.to_bytes()).unwrap();
            assert_eq!(slot.key, key.public_key());
            let r = keys.secret("nonce", 2, i);
            let (R, negated) = g!(r * G).normalize().into_point_with_even_y();
            odd[usize::from(negated)] = true;
            assert_eq!(slot.nonce, PublicNonce::from_point(R));
        }
        assert_eq!(odd, [true, true]);
    }

    /// The whole construction: A pre-signs encrypted to B's receipt point; B completes with
    /// its receipt signature; the completed signature is A's valid BIP340 signature whose
    /// scalar sells the price point S computed from the committed nonce alone; A recovers
    /// B's receipt signature from the completed scalar.
    #[test]
    fn a_completed_pre_signature_reveals_the_receipt_signature() {
        let receipts = ReceiptKeys::from_seed(&[5; 32]);
        let x = SecretKey::from_bytes([6; 32]).unwrap();
        let X = x.public_key();
        let mut store = MemoryCounterStore::default();
        let mut source = NonceSource::load(NonceSeed::from_bytes([7; 32]), &store).unwrap();
        // Enough rounds that both parities of R_A + Z occur.
        let mut negated = [false, false];
        for i in 0..24u32 {
            let m_receipt = tagged_hash("test/receipt", &[&i.to_be_bytes()]);
            let sighash = tagged_hash("test/sighash", &[&i.to_be_bytes()]);
            let slot = receipts.slot(1, i);
            let Z = receipt_point(&slot, &m_receipt).unwrap();
            let nonce = source
                .reserve(&X, &sighash)
                .unwrap()
                .persist(&mut store)
                .unwrap();
            let committed = nonce.encrypted_public_nonce(&Z).unwrap();
            let T = price_point(&committed, &X, &sighash).unwrap();
            let pre = nonce.encrypt(&x, &Z, &sighash).unwrap();
            assert_eq!(pre.nonce(), committed);
            negated[usize::from(pre.to_bytes()[64])] = true;
            pre.verify(&X, &Z, &sighash).unwrap();

            let receipt = receipts.sign(1, i, &m_receipt);
            let z = AdaptorSecret::from_signature(&receipt).unwrap();
            let t = pre.decrypt_scalar(&z).unwrap();
            assert!(sells(&t, &T), "the completed scalar is what S pays for");
            X.verify(&sighash, &t.to_signature(&committed)).unwrap();

            let learned = pre.recover_from_scalar(&Z, &t).unwrap();
            let proof = learned.to_signature(&slot.nonce);
            slot.key.verify(&m_receipt, &proof).unwrap();
            assert_eq!(proof, receipt);
            // Another slot's signature does not complete it.
            let other = AdaptorSecret::from_signature(&receipts.sign(1, i + 100, &m_receipt));
            assert!(!sells(&pre.decrypt_scalar(&other.unwrap()).unwrap(), &T));
        }
        assert_eq!(negated, [true, true], "both nonce parities exercised");
    }

    #[test]
    fn slots_differ_by_epoch_and_index_and_are_deterministic() {
        let keys = ReceiptKeys::from_seed(&[1; 32]);
        assert_eq!(keys.slot(0, 0), keys.slot(0, 0));
        assert_ne!(keys.slot(0, 0).nonce, keys.slot(0, 1).nonce);
        assert_ne!(keys.slot(0, 0).nonce, keys.slot(1, 0).nonce);
        assert_ne!(keys.slot(0, 0).key, keys.slot(1, 0).key);
        assert_ne!(keys.slot(0, 0), ReceiptKeys::from_seed(&[2; 32]).slot(0, 0));
        let card = keys.card(4, 3);
        assert_eq!(card.slots.len(), 3);
        assert_eq!(card.slots[2], keys.slot(4, 2));
        assert_eq!(format!("{keys:?}"), "ReceiptKeys(<redacted>)");
    }
}
