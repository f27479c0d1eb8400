//! PTLC outputs of a settlement transaction, and their two spends.
//!
//! A PTLC pays `amount` to the payee if it reveals t with t·G = T before block `expiry`,
//! and returns to the offerer after. P2TR with two leaves:
//!
//! - success: `<P_payee> CHECKSIGVERIFY <0x01‖P_offerer> CHECKSIG`. The offerer's half is
//!   given in advance, as an adaptor signature encrypted to T, with `SIGHASH_ALL|ANYPREVOUT`
//!   (0x41): the settlement's txid depends on which update it spends, so the signature must
//!   not commit to the outpoint; it does commit to the PTLC's amount, script and leaf and to
//!   the whole claim transaction. Completing it reveals t to the offerer
//!   ([`extract_secret`]). The payee signs with a plain BIP340 key at claim time.
//! - timeout: `<expiry> CLTV DROP <P_offerer> CHECKSIG`, signed by the offerer after expiry.
//!
//! The internal key is H + h(T)·G with h a tagged hash of T: unspendable like H, and
//! different for every payment point, so that an ANYPREVOUT signature for one PTLC can
//! never be replayed on another PTLC of the same amount between the same keys.
//!
//! The claim ([`Claim`]) is version 3 and pays the whole amount to the payee plus a zero-value
//! P2A anchor (no fee: the offerer's signature fixes the outputs long before publication).
//! The timeout ([`Timeout`]) is signed by the offerer alone when it is published and pays its
//! fee from the amount.
//!
//! Timing ([`PtlcExpiry::checked`]): a PTLC in an eltoo channel reaches the chain through an
//! update and, one shared delay later, a settlement; a counterparty that publishes a stale
//! update first makes the honest party answer with the latest update, which costs another
//! delay. So the expiry must be at least 2·shared_delay blocks away, or the timeout path
//! opens before the payee could claim.
//!
//! ```
//! use asyncpay::crypto::adaptor::AdaptorSecret;
//! use asyncpay::tx::ptlc::{extract_secret, Claim, Ptlc, PtlcExpiry};
//! use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
//! use bitcoin::{Amount, OutPoint, ScriptBuf};
//!
//! let secp = Secp256k1::new();
//! let key = |b| Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[b; 32]).unwrap());
//! let (offerer, payee) = (key(1), key(2));
//! let t = AdaptorSecret::from_bytes([3; 32])?;
//! let ptlc = Ptlc {
//!     offerer: offerer.x_only_public_key().0,
//!     payee: payee.x_only_public_key().0,
//!     point: t.adaptor_point(),
//!     amount: Amount::from_sat(20_000),
//!     // At height 800 with a 144-block shared delay, 1088 is the earliest allowed expiry.
//!     expiry: PtlcExpiry::checked(800, 1088, 144)?,
//! };
//! assert!(PtlcExpiry::checked(800, 1087, 144).is_err());
//!
//! // In advance: the offerer's half, encrypted to T; the payee checks it.
//! let claim = Claim::new(&ptlc, ScriptBuf::new_p2tr(&secp, ptlc.payee, None))?;
//! let encrypted = claim.encrypt_offerer_signature(&offerer, &[4; 32]);
//! let verified = claim.verify_offerer_signature(&encrypted)?;
//!
//! // On chain: the payee completes it with t, wherever the PTLC output ended up...
//! let tx = claim.finish_verified(OutPoint::null(), &verified, &t, &payee, &[5; 32])?;
//! // ...and the offerer learns t from the witness.
//! let learned = extract_secret(&ptlc, &encrypted, &tx)?;
//! assert_eq!(learned.to_secret_bytes(), t.to_secret_bytes());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::RefCell;
use std::collections::VecDeque;

use bitcoin::hashes::{sha256t_hash_newtype, Hash as _};
use bitcoin::key::{TweakedPublicKey, XOnlyPublicKey};
use bitcoin::opcodes::all::{OP_CHECKSIG, OP_CHECKSIGVERIFY, OP_CLTV, OP_DROP};
use bitcoin::script::Builder;
use bitcoin::secp256k1::{schnorr, Keypair, Message, Scalar};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::taproot::{ControlBlock, LeafVersion, TaprootBuilder, TaprootSpendInfo};
use bitcoin::transaction::Version;
use bitcoin::{absolute, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

use super::{dust_limit, p2a_output, unspendable_internal_key, TxError, TRUC_VERSION};
use crate::crypto::adaptor::{
    AdaptorError, AdaptorPoint, AdaptorSecret, EncryptedSignature, VerifiedEncryptedSignature,
};
use crate::crypto::bip118::{
    sighash, ApoKey, ApoScriptExt, ApoSighashType, LeafContext, SpentOutputs,
};
use crate::crypto::keys::{PublicKey, SecretKey, Signature};

/// The hash type of the offerer's half of a claim.
pub const CLAIM_SIGHASH: ApoSighashType = ApoSighashType::AllPlusAnyPrevout;

/// Largest block height a CLTV height lock can name.
const MAX_HEIGHT: u32 = 499_999_999;

sha256t_hash_newtype! {
    struct PtlcTweakTag = hash_str("asyncpay/ptlc-internal-key");
    #[hash_newtype(forward)]
    struct PtlcTweakHash(_);
}

/// Why a PTLC expiry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpiryError {
    /// Fewer than 2·shared_delay blocks left.
    #[error("expiry {expiry} is {delta} blocks away, the minimum is 2 x shared delay = {minimum}")]
    TooSoon {
        /// The requested expiry height.
        expiry: u32,
        /// Blocks from now to expiry (0 if already passed).
        delta: u32,
        /// 2·shared_delay.
        minimum: u32,
    },
    /// The expiry is after the deadline by which the PTLC must be resolved.
    #[error("expiry {expiry} outlives the window that closes at height {deadline}")]
    OutlivesWindow {
        /// The requested expiry height.
        expiry: u32,
        /// The last height the PTLC may expire at.
        deadline: u32,
    },
    /// Not a block height (CLTV would read it as a timestamp).
    #[error("expiry {expiry} is not a block height")]
    NotAHeight {
        /// The requested expiry.
        expiry: u32,
    },
}

/// A PTLC expiry height that respects the eltoo timing rule.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct PtlcExpiry(u32);

impl PtlcExpiry {
    /// `expiry` if at least 2·`shared_delay` blocks lie between `current_height` and it.
    pub fn checked(
        current_height: u32,
        expiry: u32,
        shared_delay: u16,
    ) -> Result<Self, ExpiryError> {
        if expiry > MAX_HEIGHT {
            return Err(ExpiryError::NotAHeight { expiry });
        }
        let minimum = 2 * u32::from(shared_delay);
        let delta = expiry.saturating_sub(current_height);
        if delta < minimum {
            return Err(ExpiryError::TooSoon {
                expiry,
                delta,
                minimum,
            });
        }
        Ok(PtlcExpiry(expiry))
    }

    /// [`PtlcExpiry::checked`], and not later than `deadline`: for a PTLC that buys a
    /// signature completing an update, the last height at which the buyer can still publish
    /// that update (the window the counterparty's unilateral close leaves it).
    pub fn checked_within(
        current_height: u32,
        expiry: u32,
        shared_delay: u16,
        deadline: u32,
    ) -> Result<Self, ExpiryError> {
        let checked = Self::checked(current_height, expiry, shared_delay)?;
        if expiry > deadline {
            return Err(ExpiryError::OutlivesWindow { expiry, deadline });
        }
        Ok(checked)
    }

    /// The height.
    pub fn height(self) -> u32 {
        self.0
    }
}

/// A PTLC output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ptlc {
    /// The key that offers the payment (and gets it back after expiry).
    pub offerer: XOnlyPublicKey,
    /// The key that is paid when it reveals the secret.
    pub payee: XOnlyPublicKey,
    /// T: the payment is for its discrete log.
    pub point: AdaptorPoint,
    /// The amount.
    pub amount: Amount,
    /// The expiry height.
    pub expiry: PtlcExpiry,
}

impl Ptlc {
    /// `<P_payee> CHECKSIGVERIFY <0x01‖P_offerer> CHECKSIG`.
    pub fn success_leaf(&self) -> ScriptBuf {
        Builder::new()
            .push_x_only_key(&self.payee)
            .push_opcode(OP_CHECKSIGVERIFY)
            .push_apo_key(&ApoKey::Explicit(self.offerer))
            .push_opcode(OP_CHECKSIG)
            .into_script()
    }

    /// `<expiry> CLTV DROP <P_offerer> CHECKSIG`.
    pub fn timeout_leaf(&self) -> ScriptBuf {
        Builder::new()
            .push_int(i64::from(self.expiry.height()))
            .push_opcode(OP_CLTV)
            .push_opcode(OP_DROP)
            .push_x_only_key(&self.offerer)
            .push_opcode(OP_CHECKSIG)
            .into_script()
    }

    /// H + h(T)·G.
    pub fn internal_key(&self) -> XOnlyPublicKey {
        let secp = super::secp();
        let tweak = PtlcTweakHash::hash(&self.point.to_bytes()).to_byte_array();
        let tweak = Scalar::from_be_bytes(tweak).expect("a hash below the curve order");
        unspendable_internal_key()
            .add_tweak(secp, &tweak)
            .expect("H + h(T)G is not the point at infinity")
            .0
    }

    fn spend_info(&self) -> TaprootSpendInfo {
        let secp = super::secp();
        TaprootBuilder::new()
            .add_leaf(1, self.success_leaf())
            .expect("depth 1")
            .add_leaf(1, self.timeout_leaf())
            .expect("depth 1")
            .finalize(secp, self.internal_key())
            .expect("complete tree")
    }

    fn control_block(&self, leaf: &ScriptBuf) -> ControlBlock {
        self.spend_info()
            .control_block(&(leaf.clone(), LeafVersion::TapScript))
            .expect("the leaf is in the tree")
    }

    /// The P2TR script.
    pub fn script_pubkey(&self) -> ScriptBuf {
        ScriptBuf::new_p2tr_tweaked(self.output_key())
    }

    /// The output key: the internal key tweaked by the tree of both leaves (two tweaks).
    ///
    /// It depends on the keys, the point and the expiry only, and one channel update asks
    /// for it more than once (the offerer's claim sighash, then the settlement that pays to
    /// it, both for the same new state), so the last few are remembered on each thread: a
    /// pure function's results, the same whichever thread or order asks.
    fn output_key(&self) -> TweakedPublicKey {
        type Shape = (XOnlyPublicKey, XOnlyPublicKey, AdaptorPoint, PtlcExpiry);
        const REMEMBERED: usize = 8;
        thread_local! {
            static RECENT: RefCell<VecDeque<(Shape, TweakedPublicKey)>> =
                const { RefCell::new(VecDeque::new()) };
        }
        let shape: Shape = (self.offerer, self.payee, self.point, self.expiry);
        if let Some(key) = RECENT.with_borrow(|recent| {
            recent
                .iter()
                .find(|(s, _)| *s == shape)
                .map(|(_, key)| *key)
        }) {
            return key;
        }
        let key = self.spend_info().output_key();
        RECENT.with_borrow_mut(|recent| {
            if recent.len() == REMEMBERED {
                recent.pop_front();
            }
            recent.push_back((shape, key));
        });
        key
    }

    /// The settlement output.
    pub fn txout(&self) -> TxOut {
        TxOut {
            value: self.amount,
            script_pubkey: self.script_pubkey(),
        }
    }
}

fn one_input(outpoint: OutPoint, sequence: Sequence) -> Vec<TxIn> {
    vec![TxIn {
        previous_output: outpoint,
        script_sig: ScriptBuf::new(),
        sequence,
        witness: Witness::new(),
    }]
}

fn leaf_sighash(
    tx: &Transaction,
    spent: &TxOut,
    leaf: &ScriptBuf,
) -> Result<bitcoin::TapSighash, TxError> {
    let leaf_hash = bitcoin::taproot::TapLeafHash::from_script(leaf, LeafVersion::TapScript);
    SighashCache::new(tx)
        .taproot_script_spend_signature_hash(
            0,
            &Prevouts::All(std::slice::from_ref(spent)),
            leaf_hash,
            TapSighashType::Default,
        )
        .map_err(TxError::from)
}

/// The claim of a PTLC by its payee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    ptlc: Ptlc,
    tx: Transaction,
}

impl Claim {
    /// The claim paying the whole amount to `payee_script` (plus a zero-value anchor).
    pub fn new(ptlc: &Ptlc, payee_script: ScriptBuf) -> Result<Self, TxError> {
        let limit = dust_limit(&payee_script);
        if ptlc.amount < limit {
            return Err(TxError::Dust {
                value: ptlc.amount,
                limit,
            });
        }
        let tx = Transaction {
            version: Version(TRUC_VERSION),
            lock_time: absolute::LockTime::ZERO,
            input: one_input(OutPoint::null(), Sequence::ENABLE_RBF_NO_LOCKTIME),
            output: vec![
                TxOut {
                    value: ptlc.amount,
                    script_pubkey: payee_script,
                },
                p2a_output(Amount::ZERO),
            ],
        };
        Ok(Claim {
            ptlc: ptlc.clone(),
            tx,
        })
    }

    /// The PTLC being claimed.
    pub fn ptlc(&self) -> &Ptlc {
        &self.ptlc
    }

    /// The offerer's message: ALL|ANYPREVOUT, the same wherever the PTLC output ends up.
    pub fn offerer_sighash(&self) -> [u8; 32] {
        let txout = self.ptlc.txout();
        let leaf = self.ptlc.success_leaf();
        sighash(
            &self.tx,
            0,
            SpentOutputs::This(&txout),
            CLAIM_SIGHASH,
            &LeafContext::new(&leaf),
            None,
        )
        .expect("input 0 exists and its spent output is given")
        .to_byte_array()
    }

    /// The offerer's half, encrypted to T (`aux`: fresh randomness from the caller).
    pub fn encrypt_offerer_signature(
        &self,
        offerer: &Keypair,
        aux: &[u8; 32],
    ) -> EncryptedSignature {
        self.encrypt_offerer_signature_with(&SecretKey::from_keypair(offerer), aux)
    }

    /// [`Claim::encrypt_offerer_signature`] with the offerer's key as this crate holds it
    /// (a channel's own key: no conversion to a libsecp256k1 key pair and back).
    pub fn encrypt_offerer_signature_with(
        &self,
        offerer: &SecretKey,
        aux: &[u8; 32],
    ) -> EncryptedSignature {
        EncryptedSignature::encrypt(offerer, &self.ptlc.point, &self.offerer_sighash(), aux)
    }

    /// What the payee checks before accepting the PTLC; the verified half finishes the claim
    /// with [`Claim::finish_verified`].
    pub fn verify_offerer_signature(
        &self,
        encrypted: &EncryptedSignature,
    ) -> Result<VerifiedEncryptedSignature, AdaptorError> {
        encrypted.verify(
            &PublicKey::from(self.ptlc.offerer),
            &self.ptlc.point,
            &self.offerer_sighash(),
        )
    }

    /// The claim spending the PTLC output at `outpoint`, completed by the payee with t, from
    /// an offerer's half nobody verified: the completed signature is verified in full.
    pub fn finish(
        &self,
        outpoint: OutPoint,
        encrypted: &EncryptedSignature,
        secret: &AdaptorSecret,
        payee: &Keypair,
        aux: &[u8; 32],
    ) -> Result<Transaction, ClaimError> {
        let offerer_sig = encrypted.decrypt(
            secret,
            &PublicKey::from(self.ptlc.offerer),
            &self.offerer_sighash(),
        )?;
        self.complete(outpoint, offerer_sig, payee, aux)
    }

    /// [`Claim::finish`] from the offerer's half as [`Claim::verify_offerer_signature`]
    /// returned it: decrypting checks only t·G = T. A half verified for another claim
    /// (another key, point or message) is refused with [`ClaimError::VerifiedForAnother`].
    pub fn finish_verified(
        &self,
        outpoint: OutPoint,
        verified: &VerifiedEncryptedSignature,
        secret: &AdaptorSecret,
        payee: &Keypair,
        aux: &[u8; 32],
    ) -> Result<Transaction, ClaimError> {
        let offerer = PublicKey::from(self.ptlc.offerer);
        if !verified.is_for(&offerer, &self.ptlc.point, &self.offerer_sighash()) {
            return Err(ClaimError::VerifiedForAnother);
        }
        let offerer_sig = verified.decrypt(secret)?;
        self.complete(outpoint, offerer_sig, payee, aux)
    }

    /// The claim at `outpoint` with the offerer's completed signature and the payee's own.
    fn complete(
        &self,
        outpoint: OutPoint,
        offerer_sig: Signature,
        payee: &Keypair,
        aux: &[u8; 32],
    ) -> Result<Transaction, ClaimError> {
        let mut tx = self.tx.clone();
        tx.input[0].previous_output = outpoint;
        let leaf = self.ptlc.success_leaf();
        let digest = leaf_sighash(&tx, &self.ptlc.txout(), &leaf)?;
        let secp = super::secp();
        let payee_sig = secp.sign_schnorr_with_aux_rand(
            &Message::from_digest(digest.to_byte_array()),
            payee,
            aux,
        );
        let mut offerer_bytes = schnorr::Signature::from(offerer_sig).serialize().to_vec();
        offerer_bytes.push(CLAIM_SIGHASH.to_u8());
        let mut witness = Witness::new();
        witness.push(offerer_bytes);
        witness.push(payee_sig.serialize());
        witness.push(leaf.as_bytes());
        witness.push(self.ptlc.control_block(&leaf).serialize());
        tx.input[0].witness = witness;
        Ok(tx)
    }
}

/// Why a claim cannot be finished or its secret not extracted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// Decrypting or recovering failed (wrong secret, or not our encrypted signature).
    #[error(transparent)]
    Adaptor(#[from] AdaptorError),
    /// The transaction could not be built.
    #[error(transparent)]
    Tx(#[from] TxError),
    /// No input of the transaction spends this PTLC through its success leaf.
    #[error("no input spends the PTLC through its success leaf")]
    NotAClaim,
    /// The offerer's signature in the witness is not a 65-byte ALL|ANYPREVOUT signature.
    #[error("the offerer's signature in the witness is malformed")]
    MalformedSignature,
    /// The verified offerer's half was verified for another claim (key, point or message).
    #[error("the offerer's half was verified for another claim")]
    VerifiedForAnother,
}

/// Reads t from a transaction that claims `ptlc` with the decryption of `encrypted`.
pub fn extract_secret(
    ptlc: &Ptlc,
    encrypted: &EncryptedSignature,
    claim: &Transaction,
) -> Result<AdaptorSecret, ClaimError> {
    let leaf = ptlc.success_leaf();
    let witness = claim
        .input
        .iter()
        .map(|input| &input.witness)
        .find(|w| w.len() == 4 && w.nth(2) == Some(leaf.as_bytes()))
        .ok_or(ClaimError::NotAClaim)?;
    let bytes = witness.nth(0).ok_or(ClaimError::NotAClaim)?;
    if bytes.len() != 65 || bytes[64] != CLAIM_SIGHASH.to_u8() {
        return Err(ClaimError::MalformedSignature);
    }
    let sig =
        schnorr::Signature::from_slice(&bytes[..64]).map_err(|_| ClaimError::MalformedSignature)?;
    let sig = Signature::try_from(sig).map_err(|_| ClaimError::MalformedSignature)?;
    Ok(encrypted.recover(&ptlc.point, &sig)?)
}

/// The offerer taking a PTLC back after expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeout {
    ptlc: Ptlc,
    tx: Transaction,
}

impl Timeout {
    /// The timeout of the PTLC at `outpoint`, paying `amount - fee` to `to`.
    pub fn new(
        ptlc: &Ptlc,
        outpoint: OutPoint,
        to: ScriptBuf,
        fee: Amount,
    ) -> Result<Self, TxError> {
        let value = ptlc
            .amount
            .checked_sub(fee)
            .ok_or(TxError::InsufficientValue {
                needed: fee,
                available: ptlc.amount,
            })?;
        let limit = dust_limit(&to);
        if value < limit {
            return Err(TxError::Dust { value, limit });
        }
        let tx = Transaction {
            version: Version::TWO,
            lock_time: absolute::LockTime::from_height(ptlc.expiry.height())
                .expect("PtlcExpiry is a height"),
            input: one_input(outpoint, Sequence::ENABLE_RBF_NO_LOCKTIME),
            output: vec![TxOut {
                value,
                script_pubkey: to,
            }],
        };
        Ok(Timeout {
            ptlc: ptlc.clone(),
            tx,
        })
    }

    /// The unsigned transaction.
    pub fn unsigned_tx(&self) -> &Transaction {
        &self.tx
    }

    /// The offerer's BIP341 script-path sighash (default hash type).
    pub fn sighash(&self) -> Result<[u8; 32], TxError> {
        Ok(leaf_sighash(&self.tx, &self.ptlc.txout(), &self.ptlc.timeout_leaf())?.to_byte_array())
    }

    /// Signs and returns the finished transaction.
    pub fn sign(&self, offerer: &Keypair, aux: &[u8; 32]) -> Result<Transaction, TxError> {
        if offerer.x_only_public_key().0 != self.ptlc.offerer {
            return Err(TxError::KeyMismatch {
                expected: self.ptlc.offerer.serialize(),
            });
        }
        let secp = super::secp();
        let sig =
            secp.sign_schnorr_with_aux_rand(&Message::from_digest(self.sighash()?), offerer, aux);
        let leaf = self.ptlc.timeout_leaf();
        let mut tx = self.tx.clone();
        let mut witness = Witness::new();
        witness.push(sig.serialize());
        witness.push(leaf.as_bytes());
        witness.push(self.ptlc.control_block(&leaf).serialize());
        tx.input[0].witness = witness;
        Ok(tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::Secp256k1;

    use crate::tx::test_keypair as kp;

    fn ptlc(t: &AdaptorSecret) -> Ptlc {
        Ptlc {
            offerer: kp(1).x_only_public_key().0,
            payee: kp(2).x_only_public_key().0,
            point: t.adaptor_point(),
            amount: Amount::from_sat(20_000),
            expiry: PtlcExpiry::checked(100, 200, 10).unwrap(),
        }
    }

    #[test]
    fn expiry_needs_two_shared_delays() {
        assert!(PtlcExpiry::checked(100, 120, 10).is_ok());
        assert_eq!(
            PtlcExpiry::checked(100, 119, 10),
            Err(ExpiryError::TooSoon {
                expiry: 119,
                delta: 19,
                minimum: 20
            })
        );
        assert!(matches!(
            PtlcExpiry::checked(100, 50, 10),
            Err(ExpiryError::TooSoon { delta: 0, .. })
        ));
        assert!(matches!(
            PtlcExpiry::checked(100, 500_000_000, 10),
            Err(ExpiryError::NotAHeight { .. })
        ));
        assert_eq!(
            PtlcExpiry::checked_within(100, 150, 10, 140),
            Err(ExpiryError::OutlivesWindow {
                expiry: 150,
                deadline: 140
            })
        );
        assert!(PtlcExpiry::checked_within(100, 130, 10, 140).is_ok());
    }

    #[test]
    fn claim_reveals_the_secret() {
        let t = AdaptorSecret::from_bytes([9; 32]).unwrap();
        let p = ptlc(&t);
        let to = ScriptBuf::new_p2tr(&Secp256k1::new(), kp(2).x_only_public_key().0, None);
        let claim = Claim::new(&p, to).unwrap();
        let enc = claim.encrypt_offerer_signature(&kp(1), &[3; 32]);
        claim.verify_offerer_signature(&enc).unwrap();
        let outpoint = OutPoint {
            txid: bitcoin::Txid::all_zeros(),
            vout: 2,
        };
        let tx = claim.finish(outpoint, &enc, &t, &kp(2), &[4; 32]).unwrap();
        assert_eq!(tx.input[0].witness.len(), 4);
        let learned = extract_secret(&p, &enc, &tx).unwrap();
        assert_eq!(learned.to_secret_bytes(), t.to_secret_bytes());

        let wrong = AdaptorSecret::from_bytes([8; 32]).unwrap();
        assert!(matches!(
            claim.finish(outpoint, &enc, &wrong, &kp(2), &[4; 32]),
            Err(ClaimError::Adaptor(_))
        ));
        let mut not_claim = tx.clone();
        not_claim.input[0].witness = Witness::new();
        assert!(matches!(
            extract_secret(&p, &enc, &not_claim),
            Err(ClaimError::NotAClaim)
        ));
    }

    #[test]
    fn verified_half_finishes_the_same_claim_and_only_its_own() {
        let t = AdaptorSecret::from_bytes([9; 32]).unwrap();
        let p = ptlc(&t);
        let to = ScriptBuf::new_p2tr(&Secp256k1::new(), kp(2).x_only_public_key().0, None);
        let claim = Claim::new(&p, to.clone()).unwrap();
        let enc = claim.encrypt_offerer_signature(&kp(1), &[3; 32]);
        let verified = claim.verify_offerer_signature(&enc).unwrap();
        let outpoint = OutPoint::null();
        let tx = claim
            .finish_verified(outpoint, &verified, &t, &kp(2), &[4; 32])
            .unwrap();
        assert_eq!(
            tx,
            claim.finish(outpoint, &enc, &t, &kp(2), &[4; 32]).unwrap()
        );
        assert_eq!(
            extract_secret(&p, &enc, &tx).unwrap().to_secret_bytes(),
            t.to_secret_bytes()
        );

        let wrong = AdaptorSecret::from_bytes([8; 32]).unwrap();
        assert!(matches!(
            claim.finish_verified(outpoint, &verified, &wrong, &kp(2), &[4; 32]),
            Err(ClaimError::Adaptor(AdaptorError::WrongSecret { .. }))
        ));
        // Verified for a claim of another amount (another message): refused, not decrypted
        // into a signature this claim's transaction would not accept.
        let mut bigger = p.clone();
        bigger.amount = Amount::from_sat(30_000);
        let other_claim = Claim::new(&bigger, to).unwrap();
        assert_eq!(
            other_claim.finish_verified(outpoint, &verified, &t, &kp(2), &[4; 32]),
            Err(ClaimError::VerifiedForAnother)
        );
    }

    #[test]
    fn offerer_sighash_ignores_the_outpoint_but_not_the_point() {
        let t = AdaptorSecret::from_bytes([9; 32]).unwrap();
        let p = ptlc(&t);
        let to = ScriptBuf::new_p2tr(&Secp256k1::new(), kp(2).x_only_public_key().0, None);
        let claim = Claim::new(&p, to.clone()).unwrap();
        let mut other = p.clone();
        other.point = AdaptorSecret::from_bytes([7; 32]).unwrap().adaptor_point();
        assert_ne!(p.script_pubkey(), other.script_pubkey());
        assert_ne!(
            claim.offerer_sighash(),
            Claim::new(&other, to).unwrap().offerer_sighash()
        );
    }

    #[test]
    fn leaves_and_timeout() {
        let t = AdaptorSecret::from_bytes([9; 32]).unwrap();
        let p = ptlc(&t);
        assert_eq!(p.success_leaf().len(), 33 + 1 + 34 + 1);
        assert_eq!(
            p.timeout_leaf().as_bytes()[..5],
            [0x02, 0xc8, 0x00, 0xb1, 0x75]
        );
        let to = ScriptBuf::new_p2tr(&Secp256k1::new(), kp(1).x_only_public_key().0, None);
        let timeout =
            Timeout::new(&p, OutPoint::null(), to.clone(), Amount::from_sat(500)).unwrap();
        assert_eq!(timeout.unsigned_tx().lock_time.to_consensus_u32(), 200);
        assert_eq!(
            timeout.unsigned_tx().output[0].value,
            Amount::from_sat(19_500)
        );
        assert!(timeout.sign(&kp(2), &[0; 32]).is_err());
        let tx = timeout.sign(&kp(1), &[0; 32]).unwrap();
        assert_eq!(tx.input[0].witness.len(), 3);
        assert!(Timeout::new(&p, OutPoint::null(), to, Amount::from_sat(19_900)).is_err());
    }
}
