//! Counts of the curve operations this module performs, per thread: the measurement hook of
//! `asyncpay bench payment`, which reports how many of each S does per sale next to the
//! operations the protocol requires of it (S's floor, docs/benchmarks.md).
//!
//! Every function of [`crate::crypto`] that does an elliptic-curve operation adds one to
//! its [`Op`] on the calling thread; [`snapshot`] reads them, and the difference of two
//! snapshots is what the thread did in between. A count costs a thread-local increment
//! (nanoseconds, against microseconds for the cheapest counted operation), so it is always
//! on: the bench counts the build it measures.
//!
//! ```
//! use asyncpay::crypto::keys::SecretKey;
//! use asyncpay::crypto::tally::{snapshot, Op};
//!
//! let x = SecretKey::from_bytes([7u8; 32])?;
//! let before = snapshot();
//! let sig = x.sign(&[1u8; 32], &[2u8; 32]);
//! x.public_key().verify(&[1u8; 32], &sig)?;
//! let done = snapshot().since(&before);
//! assert_eq!((done.get(Op::Sign), done.get(Op::Verify)), (1, 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::Cell;

/// A kind of curve operation, as the crypto module performs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// A BIP340 signature with a fresh nonce ([`SecretKey::sign`]): k·G, then s = k + e·x.
    ///
    /// [`SecretKey::sign`]: crate::crypto::keys::SecretKey::sign
    Sign,
    /// A committed nonce R = k·G ([`NonceSource::reserve`]).
    ///
    /// [`NonceSource::reserve`]: crate::crypto::nonce::NonceSource::reserve
    NonceCommit,
    /// A signature with a committed nonce ([`SecretNonce::sign`]): s = k + e·x, no curve
    /// operation (its R was made by [`Op::NonceCommit`]).
    ///
    /// [`SecretNonce::sign`]: crate::crypto::nonce::SecretNonce::sign
    NonceSign,
    /// A BIP340 verification by libsecp256k1 ([`PublicKey::verify`]).
    ///
    /// [`PublicKey::verify`]: crate::crypto::keys::PublicKey::verify
    Verify,
    /// An adaptor signature made ([`EncryptedSignature::encrypt`]): k·G, R + T, s = k + e·x.
    ///
    /// [`EncryptedSignature::encrypt`]: crate::crypto::adaptor::EncryptedSignature::encrypt
    AdaptorEncrypt,
    /// An adaptor signature checked ([`EncryptedSignature::verify`]): ŝ·G = R + e·X.
    ///
    /// [`EncryptedSignature::verify`]: crate::crypto::adaptor::EncryptedSignature::verify
    AdaptorVerify,
    /// An adaptor signature decrypted with t: an unverified one
    /// ([`EncryptedSignature::decrypt`]), whose result's verification counts as an
    /// [`Op::Verify`] too, or a verified one ([`VerifiedEncryptedSignature::decrypt`]), whose
    /// check t·G = T counts as an [`Op::SecretToPoint`] too.
    ///
    /// [`EncryptedSignature::decrypt`]: crate::crypto::adaptor::EncryptedSignature::decrypt
    /// [`VerifiedEncryptedSignature::decrypt`]: crate::crypto::adaptor::VerifiedEncryptedSignature::decrypt
    AdaptorDecrypt,
    /// The scalar t recovered from an adaptor signature and its decryption
    /// ([`EncryptedSignature::recover`]): a subtraction and t·G = T.
    ///
    /// [`EncryptedSignature::recover`]: crate::crypto::adaptor::EncryptedSignature::recover
    AdaptorRecover,
    /// A price point T = R + e·X ([`price_point`]).
    ///
    /// [`price_point`]: crate::crypto::adaptor::price_point
    PricePoint,
    /// t·G of an adaptor secret ([`AdaptorSecret::adaptor_point`], and so
    /// [`sells`]).
    ///
    /// [`AdaptorSecret::adaptor_point`]: crate::crypto::adaptor::AdaptorSecret::adaptor_point
    /// [`sells`]: crate::crypto::adaptor::sells
    SecretToPoint,
    /// x·G of a secret key made into this crate's key pair ([`SecretKey::from_bytes`],
    /// [`SecretKey::from_keypair`]).
    ///
    /// [`SecretKey::from_bytes`]: crate::crypto::keys::SecretKey::from_bytes
    /// [`SecretKey::from_keypair`]: crate::crypto::keys::SecretKey::from_keypair
    KeyFromSecret,
    /// x·G of a secret key made into a libsecp256k1 key pair ([`SecretKey::to_keypair`]).
    ///
    /// [`SecretKey::to_keypair`]: crate::crypto::keys::SecretKey::to_keypair
    KeyToLibsecp,
    /// A point decoded from its x coordinate (or compressed form): a square root. Wire
    /// decoding of keys, nonces, signatures and adaptor points, and every conversion of a key
    /// or adaptor point between this crate's types and libsecp256k1's.
    PointDecode,
    /// A use of the process's libsecp256k1 context (`crate::crypto::secp()`): each is one
    /// libsecp256k1 call of the transaction builders (a taproot tweak, a key tweak, a
    /// covenant signature), of [`Op::Verify`] or of [`Op::KeyToLibsecp`] (when given this
    /// context).
    LibsecpContext,
}

/// How many kinds of [`Op`] there are.
const KINDS: usize = 14;

impl Op {
    /// Every kind, in the order of [`Tally`]'s entries.
    pub const ALL: [Op; KINDS] = [
        Op::Sign,
        Op::NonceCommit,
        Op::NonceSign,
        Op::Verify,
        Op::AdaptorEncrypt,
        Op::AdaptorVerify,
        Op::AdaptorDecrypt,
        Op::AdaptorRecover,
        Op::PricePoint,
        Op::SecretToPoint,
        Op::KeyFromSecret,
        Op::KeyToLibsecp,
        Op::PointDecode,
        Op::LibsecpContext,
    ];

    /// Its name in reports (snake case).
    pub fn name(self) -> &'static str {
        match self {
            Op::Sign => "sign",
            Op::NonceCommit => "nonce_commit",
            Op::NonceSign => "nonce_sign",
            Op::Verify => "verify",
            Op::AdaptorEncrypt => "adaptor_encrypt",
            Op::AdaptorVerify => "adaptor_verify",
            Op::AdaptorDecrypt => "adaptor_decrypt",
            Op::AdaptorRecover => "adaptor_recover",
            Op::PricePoint => "price_point",
            Op::SecretToPoint => "secret_to_point",
            Op::KeyFromSecret => "key_from_secret",
            Op::KeyToLibsecp => "key_to_libsecp",
            Op::PointDecode => "point_decode",
            Op::LibsecpContext => "libsecp_context",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

thread_local! {
    static COUNTS: [Cell<u64>; KINDS] = const { [const { Cell::new(0) }; KINDS] };
}

/// Adds one `op` on this thread.
pub(crate) fn count(op: Op) {
    COUNTS.with(|c| {
        let cell = &c[op.index()];
        cell.set(cell.get().wrapping_add(1));
    });
}

/// The counts of this thread so far.
pub fn snapshot() -> Tally {
    COUNTS.with(|c| Tally(std::array::from_fn(|i| c[i].get())))
}

/// Operation counts, by [`Op`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally([u64; KINDS]);

impl Tally {
    /// The count of `op`.
    pub fn get(&self, op: Op) -> u64 {
        self.0[op.index()]
    }

    /// What was counted between `earlier` and this snapshot (of the same thread).
    pub fn since(&self, earlier: &Tally) -> Tally {
        Tally(std::array::from_fn(|i| {
            self.0[i].wrapping_sub(earlier.0[i])
        }))
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Tally) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a = a.wrapping_add(b);
        }
    }

    /// Each kind with its count.
    pub fn iter(&self) -> impl Iterator<Item = (Op, u64)> + '_ {
        Op::ALL.iter().map(|op| (*op, self.get(*op)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_listed_in_index_order() {
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(op.index(), i, "{op:?}");
        }
    }

    #[test]
    fn counts_are_per_thread() {
        let before = snapshot();
        count(Op::Verify);
        std::thread::spawn(|| count(Op::Verify))
            .join()
            .expect("thread runs");
        assert_eq!(snapshot().since(&before).get(Op::Verify), 1);
    }
}
