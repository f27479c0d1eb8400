//! BIP118 (SIGHASH_ANYPREVOUT) signature messages, keys and signatures.

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
