//! BIP118 (SIGHASH_ANYPREVOUT) signature messages, keys and signatures.
//!
//! BIP118 adds a public key type to tapscript: `0x01 || x` (33 bytes), or the single byte
//! `0x01` standing for the taproot internal key. Signatures for these keys commit to key
//! version 0x01 and may use the hash types `SIGHASH_ANYPREVOUT` (0x41-0x43: the outpoint is
//! not signed) and `SIGHASH_ANYPREVOUTANYSCRIPT` (0xc1-0xc3: neither outpoint, amount,
//! scriptPubKey nor tapleaf is signed), which is what lets an eltoo update spend any earlier
//! state.
//!
//! # Example: an eltoo update signed with ALL|ANYPREVOUTANYSCRIPT
//!
//! ```
//! use asyncpay::crypto::bip118::{ApoKey, ApoScriptExt, ApoSighashType, ApoSpend, LeafContext, SpentOutputs};
//! use bitcoin::absolute::LockTime;
//! use bitcoin::script::Builder;
//! use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
//! use bitcoin::transaction::Version;
//! use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
//!
//! let secp = Secp256k1::new();
//! let keypair = |b| Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[b; 32]).unwrap());
//! let (alice, sam) = (keypair(0xa1), keypair(0x55));
//! let p_a = ApoKey::Explicit(alice.x_only_public_key().0);
//! let p_s = ApoKey::Explicit(sam.x_only_public_key().0);
//!
//! // The update leaf `<0x01||P_A> CHECKSIGVERIFY <0x01||P_S> CHECKSIG`.
//! let leaf_script = Builder::new()
//!     .push_apo_checksigverify(&p_a)
//!     .push_apo_checksig(&p_s)
//!     .into_script();
//!
//! // Update transaction U_1; the outpoint it spends is irrelevant to the signatures.
//! let update = Transaction {
//!     version: Version(3),
//!     lock_time: LockTime::from_consensus(500_000_001),
//!     input: vec![TxIn {
//!         previous_output: OutPoint::null(),
//!         script_sig: ScriptBuf::new(),
//!         sequence: Sequence(0xffff_fffd),
//!         witness: Witness::new(),
//!     }],
//!     output: vec![TxOut { value: Amount::from_sat(99_000), script_pubkey: ScriptBuf::new() }],
//! };
//!
//! // ANYPREVOUTANYSCRIPT needs no spent output data at all.
//! let spend = ApoSpend::new(&update, 0, SpentOutputs::Unknown, LeafContext::new(&leaf_script));
//! let hash_type = ApoSighashType::AllPlusAnyPrevoutAnyScript;
//! let sig_a = spend.sign(&secp, &alice, hash_type, &[1; 32])?;
//! let sig_s = spend.sign(&secp, &sam, hash_type, &[2; 32])?;
//! assert_eq!(sig_a.to_vec().len(), 65); // 64-byte signature || 0xc1
//!
//! // Witness: the signature checked first (P_A's) sits on top of the stack.
//! let witness_stack = [sig_s.to_vec(), sig_a.to_vec(), leaf_script.to_bytes() /* , control block */];
//! spend.verify(&secp, &alice.x_only_public_key().0, &witness_stack[1])?;
//! spend.verify(&secp, &sam.x_only_public_key().0, &witness_stack[0])?;
//!
//! // The same signatures hold when U_1 is rebound to another prevout and another leaf.
//! let mut rebound = update.clone();
//! rebound.input[0].previous_output.vout = 7;
//! let other_leaf = Builder::new().push_int(500_000_000).into_script();
//! let rebound_spend = ApoSpend::new(&rebound, 0, SpentOutputs::Unknown, LeafContext::new(&other_leaf));
//! rebound_spend.verify(&secp, &alice.x_only_public_key().0, &sig_a.to_vec())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layers
//!
//! - [`ApoSighashType`] parses and classifies hash types; [`KeyVersion`] tells BIP342 keys
//!   (0x00) from BIP118 keys (0x01).
//! - [`signature_message`] / [`sighash`] compute BIP118's `0x00 || Msg118 || Ext118` and its
//!   `TapSighash`; the `_with_key_version` variants also compute plain BIP342 messages.
//!   [`SpentOutputs`] says how much of the spent outputs the caller knows.
//! - [`sign`] and [`ApoSignature`] turn a sighash into a 64/65-byte witness signature and
//!   back; [`ApoSpend`] bundles one input's context for signing and [`verify`]ing.
//! - [`ApoKey`] and [`ApoScriptExt`] encode BIP118 keys in scripts.
//!
//! Adaptor signatures elsewhere in the crate sign the same 32-byte sighash.

mod hash_type;
mod keys;
mod message;
mod signature;

pub use hash_type::{
    ApoSighashType, InputCommitment, InvalidHashTypeError, KeyVersion, OutputCommitment,
    SIGHASH_ANYONECANPAY, SIGHASH_ANYPREVOUT, SIGHASH_ANYPREVOUTANYSCRIPT,
};
pub use keys::{
    apo_pubkey_bytes, ApoKey, ApoKeyError, ApoScriptExt, APO_INTERNAL_KEY, APO_KEY_PREFIX,
};
pub use message::{
    sighash, sighash_with_key_version, signature_message, signature_message_with_key_version,
    tap_sighash, Bip118Error, LeafContext, SpentOutputs, ANNEX_TAG,
};
pub use signature::{sign, verify, ApoSignature, ApoSpend, SignatureError, VerifyError};
