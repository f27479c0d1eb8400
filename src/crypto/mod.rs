//! Cryptography: BIP118 (SIGHASH_ANYPREVOUT) signature messages, keys and signatures.

pub mod bip118;
