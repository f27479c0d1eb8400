//! Cryptography: BIP118 (SIGHASH_ANYPREVOUT) signature messages, keys and signatures;
//! adaptor signatures and signature price points; nonce handling.

pub mod adaptor;
pub mod bip118;
pub mod keys;
pub mod nonce;
