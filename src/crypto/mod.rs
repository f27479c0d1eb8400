//! Cryptography: BIP118 (SIGHASH_ANYPREVOUT) signature messages, keys and signatures;
//! adaptor signatures and signature price points; nonce handling; counts of the curve
//! operations performed ([`tally`], for the benchmarks).

pub mod adaptor;
pub mod bip118;
pub mod keys;
pub mod nonce;
pub mod receipt;
pub mod tally;

/// Serde for the values held as their encoding (signatures, nonces): a hex string in a
/// human-readable format (as secp256kfun writes its points and signatures, so stored
/// snapshots read the same), the bytes otherwise.
pub(crate) mod hex_serde {
    use serde::de::Error as _;

    pub(crate) fn serialize<S: serde::Serializer, const N: usize>(
        bytes: &[u8; N],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(bytes))
        } else {
            serializer.serialize_bytes(bytes)
        }
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>, const N: usize>(
        deserializer: D,
    ) -> Result<[u8; N], D::Error> {
        let bytes: Vec<u8> = if deserializer.is_human_readable() {
            let text =
                <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
            hex::decode(text.as_ref()).map_err(D::Error::custom)?
        } else {
            <Vec<u8> as serde::Deserialize>::deserialize(deserializer)?
        };
        let len = bytes.len();
        bytes
            .try_into()
            .map_err(|_| D::Error::invalid_length(len, &"the encoding's length"))
    }
}

use bitcoin::hashes::{sha256, Hash as _, HashEngine as _};

/// BIP340-style tagged hash: `SHA256(SHA256(tag) ‖ SHA256(tag) ‖ parts...)`. Every hash the
/// project defines (mailbox authentication and contacts, payment randomness, watchtower
/// hints and keys, key derivations) is one of these, each with its own tag.
///
/// ```
/// use asyncpay::crypto::tagged_hash;
/// // BIP340's own construction: the same as rust-bitcoin's tagged hash engine.
/// let ours = tagged_hash("BIP0340/challenge", &[b"ab", b"c"]);
/// let theirs = {
///     use bitcoin::hashes::{sha256, Hash, HashEngine};
///     let mut e = sha256::Hash::engine();
///     let tag = sha256::Hash::hash(b"BIP0340/challenge");
///     e.input(tag.as_ref());
///     e.input(tag.as_ref());
///     e.input(b"abc");
///     sha256::Hash::from_engine(e).to_byte_array()
/// };
/// assert_eq!(ours, theirs);
/// ```
pub fn tagged_hash(tag: &str, parts: &[&[u8]]) -> [u8; 32] {
    let tag_hash = sha256::Hash::hash(tag.as_bytes());
    let mut engine = sha256::Hash::engine();
    engine.input(tag_hash.as_ref());
    engine.input(tag_hash.as_ref());
    for part in parts {
        engine.input(part);
    }
    sha256::Hash::from_engine(engine).to_byte_array()
}

/// The process's one libsecp256k1 context, created (and randomised) on first use.
///
/// Creating a context randomises it, which costs as much as a signature; keys and the
/// transaction builders run many times per channel update, so they share this one.
pub(crate) fn secp() -> &'static bitcoin::secp256k1::Secp256k1<bitcoin::secp256k1::All> {
    tally::count(tally::Op::LibsecpContext);
    context()
}

/// The same context, uncounted: for the libsecp256k1 calls inside an operation that counts
/// as its own [`tally::Op`] (an adaptor signature made or checked, a price point, t·G), so
/// that they do not count again as uses of the context.
fn context() -> &'static bitcoin::secp256k1::Secp256k1<bitcoin::secp256k1::All> {
    static SECP: std::sync::LazyLock<bitcoin::secp256k1::Secp256k1<bitcoin::secp256k1::All>> =
        std::sync::LazyLock::new(bitcoin::secp256k1::Secp256k1::new);
    &SECP
}
