//! Cryptography: BIP118 (SIGHASH_ANYPREVOUT) signature messages, keys and signatures;
//! adaptor signatures and signature price points; nonce handling.

pub mod adaptor;
pub mod bip118;
pub mod keys;
pub mod nonce;

/// The process's one libsecp256k1 context, created (and randomised) on first use.
///
/// Creating a context randomises it, which costs as much as a signature; keys and the
/// transaction builders run many times per channel update, so they share this one.
pub(crate) fn secp() -> &'static bitcoin::secp256k1::Secp256k1<bitcoin::secp256k1::All> {
    static SECP: std::sync::LazyLock<bitcoin::secp256k1::Secp256k1<bitcoin::secp256k1::All>> =
        std::sync::LazyLock::new(bitcoin::secp256k1::Secp256k1::new);
    &SECP
}
