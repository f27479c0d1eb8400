//! The settlement transaction SE_n: pays out state n once U_n has aged by the shared delay.
//!
//! - version 3, nLockTime 0, one input (U_n's update output) with nSequence = shared delay
//!   in blocks (BIP68);
//! - outputs, in this order: A's balance, S's balance, each PTLC ([`crate::tx::ptlc`]),
//!   then a P2A anchor. The outputs add up to the channel's value exactly: SE_n pays no fee.
//!   An output below its dust limit is left out and its value goes to the anchor (like
//!   trimmed HTLCs in BOLT 3 go to fees; whoever spends the anchor collects it).
//!
//! No party signs SE_n. U_n's settlement leaf holds the only signature it needs:
//!
//! `<shared_delay> CSV DROP <CovSig_n> <0x01‖G> CHECKSIG`
//!
//! CovSig_n is a `SIGHASH_ALL|ANYPREVOUTANYSCRIPT` signature over SE_n by the private key 1
//! (public key G), with BIP340's nonce derived from the key, the message and 32 zero bytes
//! of auxiliary randomness. Anyone can compute it, everyone computes the same bytes, and it
//! is valid for exactly one transaction, which makes the leaf a covenant: the update output
//! can only be spent by SE_n. APOAS matters twice: SE_n's input outpoint varies with the
//! update it spends, and the signature cannot commit to the leaf that contains it.
//! The CSV is implied by the signed nSequence as well; it stays in the script so the delay
//! is visible to anyone reading it.
//!
//! The witness is the leaf script and its control block, nothing else.
//!
//! ```
//! use asyncpay::tx::{ChannelKeys, Funding, Settlement, SettlementTerms, Update};
//! use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
//! use bitcoin::{Amount, OutPoint, ScriptBuf, TxOut};
//!
//! let secp = Secp256k1::new();
//! let key = |b| Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[b; 32]).unwrap());
//! let (a, s) = (key(1).x_only_public_key().0, key(2).x_only_public_key().0);
//! let funding = Funding::new(ChannelKeys::new(a, s), Amount::from_sat(100_000));
//! let pay = |x, sats| TxOut {
//!     value: Amount::from_sat(sats),
//!     script_pubkey: ScriptBuf::new_p2tr(&secp, x, None),
//! };
//! let terms = SettlementTerms { a: pay(a, 99_800), s: pay(s, 200), ptlcs: vec![] };
//! let se = Settlement::new(&funding, 144, terms)?;
//! // S's 200 sat are dust: they go to the anchor, and SE_n still pays no fee.
//! assert_eq!(se.s_vout(), None);
//! assert_eq!(se.unsigned_tx().output[se.anchor_vout() as usize].value, Amount::from_sat(200));
//!
//! // U_n commits to SE_n through its settlement leaf; SE_n needs no signature to spend it.
//! let u = Update::new(&funding, 5, &se)?;
//! let tx = se.bind(OutPoint { txid: u.unsigned_tx().compute_txid(), vout: 0 }, u.output())?;
//! assert_eq!(tx.input[0].witness.len(), 2);
//! # Ok::<(), asyncpay::tx::TxError>(())
//! ```

use bitcoin::hashes::Hash as _;
use bitcoin::key::XOnlyPublicKey;
use bitcoin::opcodes::all::{OP_CSV, OP_DROP};
use bitcoin::script::Builder;
use bitcoin::secp256k1::{Keypair, Message, SecretKey};
use bitcoin::taproot::{LeafVersion, TapLeafHash};
use bitcoin::transaction::Version;
use bitcoin::{absolute, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

use super::funding::Funding;
use super::ptlc::Ptlc;
use super::update::UpdateOutput;
use super::{dust_limit, p2a_output, TxError, TRUC_VERSION};
use crate::crypto::bip118::{
    sighash, ApoKey, ApoScriptExt, ApoSighashType, LeafContext, SpentOutputs,
};

/// The hash type of the covenant signature.
pub const COVENANT_SIGHASH: ApoSighashType = ApoSighashType::AllPlusAnyPrevoutAnyScript;

/// What state n pays out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementTerms {
    /// A's balance output.
    pub a: TxOut,
    /// S's balance output.
    pub s: TxOut,
    /// PTLCs in output order.
    pub ptlcs: Vec<Ptlc>,
}

/// SE_n, unbound (its input outpoint is filled in by [`Settlement::bind`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    tx: Transaction,
    leaf: ScriptBuf,
    shared_delay: u16,
    a_vout: Option<u32>,
    s_vout: Option<u32>,
    ptlc_vouts: Vec<Option<u32>>,
    anchor_vout: u32,
}

/// The key with private key 1: G. Its "signature" is a covenant anyone can compute.
/// (Derived once: every settlement is signed with it.)
fn covenant_keypair() -> &'static Keypair {
    static COVENANT: std::sync::LazyLock<Keypair> = std::sync::LazyLock::new(|| {
        let mut one = [0u8; 32];
        one[31] = 1;
        let sk = SecretKey::from_slice(&one).expect("1 is a valid secret key");
        Keypair::from_secret_key(super::secp(), &sk)
    });
    &COVENANT
}

/// G as an x-only key.
pub fn covenant_key() -> XOnlyPublicKey {
    covenant_keypair().x_only_public_key().0
}

impl Settlement {
    /// SE_n paying `terms` from `funding`'s value after `shared_delay` blocks.
    ///
    /// The terms must add up to the channel's value exactly.
    pub fn new(
        funding: &Funding,
        shared_delay: u16,
        terms: SettlementTerms,
    ) -> Result<Self, TxError> {
        if shared_delay == 0 {
            return Err(TxError::InvalidDelay { blocks: 0 });
        }
        let total = terms
            .ptlcs
            .iter()
            .map(|p| p.amount)
            .chain([terms.a.value, terms.s.value])
            .try_fold(Amount::ZERO, |acc, v| acc.checked_add(v));
        match total {
            Some(total) if total == funding.value() => {}
            total => {
                return Err(TxError::Unbalanced {
                    outputs: total.unwrap_or(Amount::MAX),
                    channel: funding.value(),
                })
            }
        }

        let mut outputs = Vec::new();
        let mut trimmed = Amount::ZERO;
        let mut place = |txout: TxOut| {
            if txout.value < dust_limit(&txout.script_pubkey) {
                trimmed += txout.value;
                None
            } else {
                outputs.push(txout);
                Some(outputs.len() as u32 - 1)
            }
        };
        let a_vout = place(terms.a);
        let s_vout = place(terms.s);
        let ptlc_vouts: Vec<_> = terms.ptlcs.iter().map(|p| place(p.txout())).collect();
        let anchor_vout = outputs.len() as u32;
        outputs.push(p2a_output(trimmed));

        let mut tx = Transaction {
            version: Version(TRUC_VERSION),
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: ScriptBuf::new(),
                sequence: Sequence::from_height(shared_delay),
                witness: Witness::new(),
            }],
            output: outputs,
        };
        let leaf = Self::covenant_leaf(&tx, shared_delay);
        tx.input[0].witness = Witness::new();
        Ok(Settlement {
            tx,
            leaf,
            shared_delay,
            a_vout,
            s_vout,
            ptlc_vouts,
            anchor_vout,
        })
    }

    fn covenant_leaf(tx: &Transaction, shared_delay: u16) -> ScriptBuf {
        // The leaf is not signed under APOAS: any placeholder gives the same message.
        let placeholder = ScriptBuf::new();
        let digest = sighash(
            tx,
            0,
            SpentOutputs::Unknown,
            COVENANT_SIGHASH,
            &LeafContext::new(&placeholder),
            None,
        )
        .expect("input 0 exists and APOAS needs no spent outputs");
        let msg = Message::from_digest(digest.to_byte_array());
        let sig = super::secp().sign_schnorr_with_aux_rand(&msg, covenant_keypair(), &[0u8; 32]);
        let mut sig = sig.serialize().to_vec();
        sig.push(COVENANT_SIGHASH.to_u8());
        let sig: [u8; 65] = sig.try_into().expect("64 bytes and a hash type");
        Builder::new()
            .push_int(i64::from(shared_delay))
            .push_opcode(OP_CSV)
            .push_opcode(OP_DROP)
            .push_slice(sig)
            .push_apo_checksig(&ApoKey::Explicit(covenant_key()))
            .into_script()
    }

    /// The settlement leaf to put in U_n's update output.
    pub fn leaf(&self) -> &ScriptBuf {
        &self.leaf
    }

    /// Its tapleaf hash: what a party keeps per state to spend a stale update later.
    pub fn leaf_hash(&self) -> TapLeafHash {
        TapLeafHash::from_script(&self.leaf, LeafVersion::TapScript)
    }

    /// The shared delay in blocks.
    pub fn shared_delay(&self) -> u16 {
        self.shared_delay
    }

    /// The unbound transaction (null outpoint, empty witness).
    pub fn unsigned_tx(&self) -> &Transaction {
        &self.tx
    }

    /// Output index of A's balance, if not trimmed as dust.
    pub fn a_vout(&self) -> Option<u32> {
        self.a_vout
    }

    /// Output index of S's balance, if not trimmed as dust.
    pub fn s_vout(&self) -> Option<u32> {
        self.s_vout
    }

    /// Output index of the i-th PTLC, if present and not trimmed as dust.
    pub fn ptlc_vout(&self, i: usize) -> Option<u32> {
        self.ptlc_vouts.get(i).copied().flatten()
    }

    /// Output index of the P2A anchor (always the last output).
    pub fn anchor_vout(&self) -> u32 {
        self.anchor_vout
    }

    /// SE_n spending the update output of its state at `outpoint`.
    pub fn bind(&self, outpoint: OutPoint, output: &UpdateOutput) -> Result<Transaction, TxError> {
        if output.settlement_leaf_hash() != self.leaf_hash() {
            return Err(TxError::WrongSettlement {
                state: output.state(),
            });
        }
        let mut tx = self.tx.clone();
        tx.input[0].previous_output = outpoint;
        let mut witness = Witness::new();
        witness.push(self.leaf.as_bytes());
        witness.push(output.settlement_control_block().serialize());
        tx.input[0].witness = witness;
        Ok(tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::funding::ChannelKeys;
    use bitcoin::secp256k1::Secp256k1;

    fn funding(sats: u64) -> Funding {
        let secp = Secp256k1::new();
        let key = |b| {
            Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[b; 32]).expect("scalar"))
                .x_only_public_key()
                .0
        };
        Funding::new(ChannelKeys::new(key(1), key(2)), Amount::from_sat(sats))
    }

    fn pay(sats: u64, b: u8) -> TxOut {
        TxOut {
            value: Amount::from_sat(sats),
            script_pubkey: ScriptBuf::new_p2tr_tweaked(
                bitcoin::key::TweakedPublicKey::dangerous_assume_tweaked(
                    Keypair::from_secret_key(
                        &Secp256k1::new(),
                        &SecretKey::from_slice(&[b; 32]).expect("scalar"),
                    )
                    .x_only_public_key()
                    .0,
                ),
            ),
        }
    }

    #[test]
    fn covenant_signature_is_deterministic_and_valid() {
        let f = funding(100_000);
        let terms = SettlementTerms {
            a: pay(60_000, 3),
            s: pay(40_000, 4),
            ptlcs: vec![],
        };
        let se = Settlement::new(&f, 6, terms.clone()).unwrap();
        assert_eq!(se, Settlement::new(&f, 6, terms).unwrap());
        let leaf = se.leaf().as_bytes();
        // <6> CSV DROP <65-byte sig> <33-byte key> CHECKSIG
        assert_eq!(&leaf[..4], &[0x56, 0xb2, 0x75, 0x41]);
        assert_eq!(leaf.len(), 3 + 66 + 34 + 1);
        assert_eq!(leaf[3 + 65], 0xc1);
        let sig = bitcoin::secp256k1::schnorr::Signature::from_slice(&leaf[4..68]).unwrap();
        let empty = ScriptBuf::new();
        let digest = sighash(
            se.unsigned_tx(),
            0,
            SpentOutputs::Unknown,
            COVENANT_SIGHASH,
            &LeafContext::new(&empty),
            None,
        )
        .unwrap();
        Secp256k1::verification_only()
            .verify_schnorr(
                &sig,
                &Message::from_digest(digest.to_byte_array()),
                &covenant_key(),
            )
            .unwrap();
        assert_eq!(se.unsigned_tx().input[0].sequence, Sequence(6));
    }

    #[test]
    fn balances_must_add_up_and_dust_goes_to_the_anchor() {
        let f = funding(100_000);
        let unbalanced = SettlementTerms {
            a: pay(60_000, 3),
            s: pay(30_000, 4),
            ptlcs: vec![],
        };
        assert!(matches!(
            Settlement::new(&f, 6, unbalanced),
            Err(TxError::Unbalanced { .. })
        ));
        let dusty = SettlementTerms {
            a: pay(99_700, 3),
            s: pay(300, 4),
            ptlcs: vec![],
        };
        let se = Settlement::new(&f, 6, dusty).unwrap();
        assert_eq!(se.a_vout(), Some(0));
        assert_eq!(se.s_vout(), None);
        assert_eq!(se.anchor_vout(), 1);
        assert_eq!(se.unsigned_tx().output[1].value, Amount::from_sat(300));
        assert!(Settlement::new(
            &f,
            0,
            SettlementTerms {
                a: pay(50_000, 3),
                s: pay(50_000, 4),
                ptlcs: vec![]
            }
        )
        .is_err());
    }

    #[test]
    fn different_balances_give_different_leaves() {
        let f = funding(100_000);
        let se = |a| {
            Settlement::new(
                &f,
                6,
                SettlementTerms {
                    a: pay(a, 3),
                    s: pay(100_000 - a, 4),
                    ptlcs: vec![],
                },
            )
            .unwrap()
            .leaf_hash()
        };
        assert_ne!(se(60_000), se(59_999));
    }
}
