//! Signing nonces committed in advance, with reuse made impossible by construction.
//!
//! In our protocol the payer A commits to the nonce R of its signature on a channel update
//! before signing, so that its LSP S can compute the signature's price point
//! ([`price_point`](crate::crypto::adaptor::price_point)). Two signatures with one nonce and
//! different messages give away the secret key, so this module is built so that cannot
//! happen, also across crashes and restarts:
//!
//! - A nonce k is derived deterministically from a persistent [`NonceSeed`], a
//!   [`SessionId`], the signer's public key and caller-supplied auxiliary bytes; no RNG,
//!   clock or disk is touched here.
//! - Session ids come from a counter held by a [`NonceCounterStore`]. [`NonceSource::reserve`]
//!   hands out a [`PendingNonce`], which does not reveal its public nonce. Only
//!   [`PendingNonce::persist`], which durably advances the stored counter past the session
//!   id, yields the [`SecretNonce`] and with it the public nonce. After a restart the
//!   reloaded counter is past every session id whose nonce ever left the process.
//! - A [`SecretNonce`] is neither `Clone`, `Copy` nor `Serialize`, and
//!   [`SecretNonce::sign`] takes it by value: one nonce, one signature.
//!
//! A crash between committing R and signing abandons the session: the secret nonce is not
//! stored and cannot be re-derived through this API, so the protocol commits a new nonce.
//!
//! ```
//! use asyncpay::crypto::adaptor::{price_point, sells, AdaptorSecret};
//! use asyncpay::crypto::keys::SecretKey;
//! use asyncpay::crypto::nonce::{MemoryCounterStore, NonceSeed, NonceSource};
//!
//! let x = SecretKey::from_bytes([1u8; 32])?;
//! let X = x.public_key();
//! let mut store = MemoryCounterStore::default(); // a database row in a real node
//! let mut source = NonceSource::load(NonceSeed::from_bytes([2u8; 32]), &store)?;
//!
//! // Reserve a session; the public nonce is only reachable after the counter is persisted.
//! let pending = source.reserve(&X, &[3u8; 32])?;
//! let nonce = pending.persist(&mut store)?;
//! let R = nonce.public_nonce(); // now safe to send to S
//!
//! // S prices the signature A will produce on message m.
//! let m = [4u8; 32];
//! let T = price_point(&R, &X, &m)?;
//!
//! // A signs, consuming the nonce; the signature's scalar is what T sells.
//! let sig = nonce.sign(&x, &m)?;
//! X.verify(&m, &sig)?;
//! assert!(sells(&AdaptorSecret::from_signature(&sig)?, &T));
//!
//! // After a restart the reloaded counter gives a fresh session.
//! let source = NonceSource::load(NonceSeed::from_bytes([2u8; 32]), &store)?;
//! assert_eq!(source.next_session().get(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Signing twice with one nonce does not compile:
//!
//! ```compile_fail,E0382
//! # use asyncpay::crypto::keys::SecretKey;
//! # use asyncpay::crypto::nonce::{MemoryCounterStore, NonceSeed, NonceSource};
//! # let x = SecretKey::from_bytes([1u8; 32]).unwrap();
//! # let mut store = MemoryCounterStore::default();
//! # let mut source = NonceSource::load(NonceSeed::from_bytes([2u8; 32]), &store).unwrap();
//! let nonce = source.reserve(&x.public_key(), &[0u8; 32]).unwrap().persist(&mut store).unwrap();
//! let first = nonce.sign(&x, &[1u8; 32]);
//! let second = nonce.sign(&x, &[2u8; 32]); // use of moved value
//! ```
//!
//! Nor does copying one:
//!
//! ```compile_fail,E0277
//! # use asyncpay::crypto::nonce::SecretNonce;
//! fn needs_clone<T: Clone>() {}
//! needs_clone::<SecretNonce>();
//! ```
//!
//! Nor serialising one:
//!
//! ```compile_fail,E0277
//! # use asyncpay::crypto::nonce::SecretNonce;
//! fn needs_serialize<T: serde::Serialize>() {}
//! needs_serialize::<SecretNonce>();
//! ```
//!
//! Nor reading the public nonce before the session id is persisted:
//!
//! ```compile_fail,E0599
//! # use asyncpay::crypto::keys::SecretKey;
//! # use asyncpay::crypto::nonce::{MemoryCounterStore, NonceSeed, NonceSource};
//! # let x = SecretKey::from_bytes([1u8; 32]).unwrap();
//! # let store = MemoryCounterStore::default();
//! # let mut source = NonceSource::load(NonceSeed::from_bytes([2u8; 32]), &store).unwrap();
//! let pending = source.reserve(&x.public_key(), &[0u8; 32]).unwrap();
//! let R = pending.public_nonce();
//! ```
#![allow(non_snake_case)]

use core::fmt;
use std::error::Error as StdError;

use schnorr_fun::fun::{g, hash::HashAdd, marker::*, s, Point, Scalar, Tag};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroize;

use crate::crypto::adaptor::{generator_mul, AdaptorPoint, EncryptedSignature};
use crate::crypto::keys::{self, KeyError, PublicKey, SecretKey, Signature};
use crate::crypto::tally::{self, Op};

/// Tag of the hash that derives committed nonces.
const NONCE_TAG: &[u8] = b"asyncpay/committed-nonce";

/// Errors from reserving, persisting and using committed nonces.
#[derive(Debug, thiserror::Error)]
pub enum NonceError {
    /// The counter store could not be read; no nonce can be handed out.
    #[error("nonce counter store failed to load the next session id")]
    Load {
        /// The store's own error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The counter store could not persist the advanced counter; the reserved nonce was
    /// dropped unseen and the session may be reserved again.
    #[error("nonce counter store failed to persist next session id {next}")]
    Persist {
        /// The counter value that could not be stored.
        next: u64,
        /// The store's own error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// R + Z is the point at infinity: no signature encrypted to Z can use this nonce.
    #[error("nonce of session {session} plus the encryption point is the point at infinity")]
    EncryptedNonceAtInfinity {
        /// The session of the consumed nonce.
        session: SessionId,
    },
    /// Every 64-bit session id has been used.
    #[error("nonce session ids are exhausted")]
    Exhausted,
    /// The nonce was reserved for another key; it has been consumed without signing.
    #[error(
        "nonce of session {session} was reserved for {}, not for {}",
        hex::encode(.expected),
        hex::encode(.actual)
    )]
    WrongSigner {
        /// The session of the consumed nonce.
        session: SessionId,
        /// The x-only key the nonce was reserved for.
        expected: [u8; 32],
        /// The x-only key that tried to sign with it.
        actual: [u8; 32],
    },
}

/// The persistent secret from which committed nonces are derived: 32 bytes of randomness
/// supplied by the caller once and stored with the node's other secrets.
///
/// Not `Clone`, not `Serialize`; zeroed on drop; redacted `Debug`.
pub struct NonceSeed([u8; 32]);

impl NonceSeed {
    /// Takes 32 bytes of fresh randomness (or the stored seed when reloading).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The seed bytes, for storing them. Handle with care: this is a secret.
    pub fn to_secret_bytes(&self) -> [u8; 32] {
        self.0
    }
}

impl Drop for NonceSeed {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for NonceSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NonceSeed(<redacted>)")
    }
}

/// The number of a signing session. Each session id yields at most one public nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(u64);

impl SessionId {
    /// The session number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A public nonce R (BIP340: even y, encoded as its 32-byte x-coordinate).
///
/// Held as that x-coordinate: a nonce a peer commits to is compared with the R of the
/// signature it later sends and hashed into challenges, neither of which needs the point.
/// Whether the x-coordinate is a curve point's is checked where the point is needed
/// ([`PublicNonce::lift`]: a price point, an encrypted nonce), which refuses one that is not;
/// a signature carrying such an R verifies under no key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicNonce([u8; 32]);

impl PublicNonce {
    /// Takes a 32-byte x-only nonce, such as a counterparty's commitment (checked as a point
    /// only where it is lifted to one: [`PublicNonce::lift`]).
    pub fn from_xonly_bytes(x: [u8; 32]) -> Self {
        Self(x)
    }

    /// The 32-byte x-only encoding.
    pub fn to_xonly_bytes(&self) -> [u8; 32] {
        self.0
    }

    pub(crate) fn from_point(R: Point<EvenY>) -> Self {
        Self(R.to_xonly_bytes())
    }

    /// The point with this x-coordinate and even y (one square root), or why there is none.
    pub(crate) fn lift(&self) -> Result<Point<EvenY>, KeyError> {
        tally::count(Op::PointDecode);
        Point::from_xonly_bytes(self.0).ok_or(KeyError::InvalidXOnly { x: self.0 })
    }
}

impl Serialize for PublicNonce {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        crate::crypto::hex_serde::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for PublicNonce {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::crypto::hex_serde::deserialize(deserializer).map(Self)
    }
}

impl fmt::Display for PublicNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.to_xonly_bytes()))
    }
}

impl fmt::Debug for PublicNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicNonce({self})")
    }
}

/// Durable storage of the next unused session id, implemented by the caller's driver.
///
/// The nonce module never does I/O itself; it calls this trait at the one point where
/// durability matters.
pub trait NonceCounterStore {
    /// The store's error type.
    type Error: StdError + Send + Sync + 'static;

    /// Returns the stored next session id, or 0 if nothing has been stored yet.
    fn load_next(&self) -> Result<u64, Self::Error>;

    /// Durably stores `next` as the next unused session id. Must not return `Ok` before the
    /// value would survive a crash. Values passed by one [`NonceSource`] never decrease.
    fn persist_next(&mut self, next: u64) -> Result<(), Self::Error>;
}

/// A counter store in memory, for tests and simulations: "durable" for as long as the value
/// lives, so dropping a [`NonceSource`] and loading a new one from the same store models a
/// restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryCounterStore {
    next: u64,
}

impl MemoryCounterStore {
    /// A store whose counter starts at `next`.
    pub fn new(next: u64) -> Self {
        Self { next }
    }
}

impl NonceCounterStore for MemoryCounterStore {
    type Error = core::convert::Infallible;

    fn load_next(&self) -> Result<u64, Self::Error> {
        Ok(self.next)
    }

    fn persist_next(&mut self, next: u64) -> Result<(), Self::Error> {
        self.next = next;
        Ok(())
    }
}

/// Hands out committed nonces, one session id at a time.
///
/// Use one source per seed and counter store; two sources sharing a store would hand out
/// the same session ids.
pub struct NonceSource {
    seed: NonceSeed,
    next: u64,
}

impl NonceSource {
    /// Loads the counter from `store` (at startup, and after every restart).
    pub fn load<S: NonceCounterStore + ?Sized>(
        seed: NonceSeed,
        store: &S,
    ) -> Result<Self, NonceError> {
        let next = store.load_next().map_err(|e| NonceError::Load {
            source: Box::new(e),
        })?;
        Ok(Self { seed, next })
    }

    /// The session id the next [`NonceSource::reserve`] will use.
    pub fn next_session(&self) -> SessionId {
        SessionId(self.next)
    }

    /// Reserves the next session and derives its nonce for `signer`.
    ///
    /// `aux` should be fresh random bytes from the caller; it hedges against a weak or
    /// leaked seed, while uniqueness comes from the session id alone. The public nonce stays
    /// hidden until [`PendingNonce::persist`] succeeds, and the mutable borrow forbids a
    /// second reservation until then.
    pub fn reserve(
        &mut self,
        signer: &PublicKey,
        aux: &[u8; 32],
    ) -> Result<PendingNonce<'_>, NonceError> {
        if self.next == u64::MAX {
            return Err(NonceError::Exhausted);
        }
        let session = SessionId(self.next);
        let nonce = derive(&self.seed, session, signer, aux);
        Ok(PendingNonce {
            source: self,
            nonce,
        })
    }
}

impl fmt::Debug for NonceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceSource")
            .field("seed", &self.seed)
            .field("next", &self.next)
            .finish()
    }
}

/// k = H_tag(seed || session || X || aux), negated if needed so that R = k·G has even y.
fn derive(seed: &NonceSeed, session: SessionId, signer: &PublicKey, aux: &[u8; 32]) -> SecretNonce {
    let hash = Sha256::default()
        .tag(NONCE_TAG)
        .add(&seed.0[..])
        .add(&session.0.to_be_bytes()[..])
        .add(&signer.to_xonly_bytes()[..])
        .add(&aux[..]);
    // A zero hash output (probability 2^-256) is the only failure; `from_hash` treats it as
    // computationally unreachable.
    let mut k = Scalar::<Secret, NonZero>::from_hash(hash);
    tally::count(Op::NonceCommit);
    // k·G on libsecp256k1's constant-time generator multiplication (precomputed table, where
    // secp256kfun has none), then k negated if R has odd y, as BIP340 wants: the same k and R
    // as secp256kfun's `even_y_from_scalar_mul` (a test compares them). R is public.
    let [parity, R_x @ ..] = generator_mul(&k).serialize();
    k.conditional_negate(parity == 0x03);
    SecretNonce {
        k,
        R: PublicNonce(R_x),
        session,
        signer: *signer,
    }
}

/// A reserved nonce whose session id is not yet durably stored. Its public nonce cannot be
/// read; persist it to obtain the [`SecretNonce`].
#[must_use = "a pending nonce is useless until persisted"]
pub struct PendingNonce<'a> {
    source: &'a mut NonceSource,
    nonce: SecretNonce,
}

impl PendingNonce<'_> {
    /// The reserved session id.
    pub fn session_id(&self) -> SessionId {
        self.nonce.session
    }

    /// The counter value that [`PendingNonce::persist`] will store.
    pub fn next_to_persist(&self) -> u64 {
        self.nonce.session.0 + 1
    }

    /// Durably advances the counter past this session, then releases the nonce.
    ///
    /// On error the nonce is dropped without its public part ever having been readable, so
    /// reserving the same session again is safe.
    pub fn persist<S: NonceCounterStore + ?Sized>(
        self,
        store: &mut S,
    ) -> Result<SecretNonce, NonceError> {
        let next = self.next_to_persist();
        store.persist_next(next).map_err(|e| NonceError::Persist {
            next,
            source: Box::new(e),
        })?;
        self.source.next = next;
        Ok(self.nonce)
    }
}

impl fmt::Debug for PendingNonce<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingNonce")
            .field("session", &self.nonce.session)
            .finish_non_exhaustive()
    }
}

/// A secret nonce k whose public nonce R = k·G may have been shared. Signing consumes it.
///
/// Not `Clone`, `Copy` or `Serialize`; redacted `Debug`.
pub struct SecretNonce {
    k: Scalar<Secret, NonZero>,
    R: PublicNonce,
    session: SessionId,
    signer: PublicKey,
}

impl SecretNonce {
    /// The public nonce R to commit to.
    pub fn public_nonce(&self) -> PublicNonce {
        self.R
    }

    /// The session this nonce belongs to.
    pub fn session_id(&self) -> SessionId {
        self.session
    }

    /// The key this nonce was reserved for.
    pub fn signer(&self) -> PublicKey {
        self.signer
    }

    /// Signs a 32-byte message with this nonce: s = k + e·x with e the BIP340 challenge of
    /// (R, X, m). The result is a standard BIP340 signature whose s satisfies
    /// s·G = [`price_point`](crate::crypto::adaptor::price_point)(R, X, m).
    ///
    /// Consumes the nonce even on error (a key other than the one it was reserved for).
    pub fn sign(self, secret_key: &SecretKey, m: &[u8; 32]) -> Result<Signature, NonceError> {
        tally::count(Op::NonceSign);
        self.check_signer(secret_key)?;
        let (x, X) = secret_key.keypair().as_tuple();
        let e = keys::challenge_x(&self.R.0, &X, m);
        let k = self.k;
        let s = s!(k + e * x).public();
        Ok(Signature::from_parts(&self.R, &s))
    }
}

impl SecretNonce {
    /// Refuses a key other than the one this nonce was reserved for.
    fn check_signer(&self, secret_key: &SecretKey) -> Result<(), NonceError> {
        let actual = secret_key.public_key();
        if actual != self.signer {
            return Err(NonceError::WrongSigner {
                session: self.session,
                expected: self.signer.to_xonly_bytes(),
                actual: actual.to_xonly_bytes(),
            });
        }
        Ok(())
    }

    /// The nonce the signature carries when it is encrypted to `Z`
    /// ([`SecretNonce::encrypt`]): R + Z, normalised to even y.
    ///
    /// Committing to it instead of R lets the counterparty price the signature exactly as
    /// before (T = (R + Z) + e·X, see [`price_point`](crate::crypto::adaptor::price_point)),
    /// while the signer itself can make only a pre-signature: the scalar needs z with
    /// z·G = Z, which someone else holds.
    pub fn encrypted_public_nonce(&self, Z: &AdaptorPoint) -> Result<PublicNonce, NonceError> {
        self.encrypted_nonce_point(Z)
            .map(|(R, _)| PublicNonce::from_point(R))
    }

    fn encrypted_nonce_point(&self, Z: &AdaptorPoint) -> Result<(Point<EvenY>, bool), NonceError> {
        let R = self
            .R
            .lift()
            .expect("R = k·G from libsecp256k1 is a curve point");
        let Z = *Z.point();
        g!(R + Z)
            .normalize()
            .non_zero()
            .map(Point::into_point_with_even_y)
            .ok_or(NonceError::EncryptedNonceAtInfinity {
                session: self.session,
            })
    }

    /// Pre-signs the 32-byte message m with this nonce, encrypted to Z: the signature's
    /// nonce is R + Z ([`SecretNonce::encrypted_public_nonce`]) and its scalar is
    /// ŝ ± z, which only a holder of z can complete. Whoever then sees the completed scalar
    /// learns z back from the pre-signature ([`EncryptedSignature::recover_from_scalar`]).
    ///
    /// Consumes the nonce even on error.
    pub fn encrypt(
        self,
        secret_key: &SecretKey,
        Z: &AdaptorPoint,
        m: &[u8; 32],
    ) -> Result<EncryptedSignature, NonceError> {
        tally::count(Op::AdaptorEncrypt);
        self.check_signer(secret_key)?;
        let (R, negated) = self.encrypted_nonce_point(Z)?;
        let (x, X) = secret_key.keypair().as_tuple();
        let e = keys::challenge(&R, &X, m);
        // The final nonce is ±(k + z); the signer negates its own part now and the
        // decryptor its part (the `negated` flag), as BIP340's even-y nonce requires.
        let mut k = self.k;
        k.conditional_negate(negated);
        let s_hat = s!(k + e * x).public();
        Ok(EncryptedSignature::from_parts(R, s_hat, negated))
    }
}

impl fmt::Debug for SecretNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretNonce")
            .field("public_nonce", &self.R)
            .field("session", &self.session)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes([byte; 32]).expect("valid scalar")
    }

    #[derive(Debug, thiserror::Error)]
    #[error("disk full")]
    struct DiskFull;

    /// A store that fails to persist, to check nothing leaks on failure.
    struct FailingStore;

    /// The committed nonce made on libsecp256k1 is secp256kfun's: the same k (after the
    /// parity fix) and the same even-y R, over many seeds (both parities occur).
    #[test]
    fn nonces_match_secp256kfuns_even_y_derivation() {
        let signer = key(3).public_key();
        let mut flipped = [false, false];
        for i in 0..64u8 {
            let seed = NonceSeed::from_bytes([i; 32]);
            let nonce = derive(&seed, SessionId(u64::from(i)), &signer, &[i ^ 0x5a; 32]);
            let hash = Sha256::default()
                .tag(NONCE_TAG)
                .add(&seed.0[..])
                .add(&u64::from(i).to_be_bytes()[..])
                .add(&signer.to_xonly_bytes()[..])
                .add(&[i ^ 0x5a; 32][..]);
            let mut k = Scalar::<Secret, NonZero>::from_hash(hash);
            let original = k;
            let R = Point::even_y_from_scalar_mul(schnorr_fun::fun::G, &mut k);
            flipped[usize::from(k != original)] = true;
            assert_eq!(nonce.R, PublicNonce::from_point(R));
            assert_eq!(nonce.k, k);
        }
        assert_eq!(flipped, [true, true], "both parities exercised");
    }

    impl NonceCounterStore for FailingStore {
        type Error = DiskFull;
        fn load_next(&self) -> Result<u64, DiskFull> {
            Ok(7)
        }
        fn persist_next(&mut self, _next: u64) -> Result<(), DiskFull> {
            Err(DiskFull)
        }
    }

    #[test]
    fn sessions_advance_and_nonces_differ() {
        let x = key(1);
        let mut store = MemoryCounterStore::default();
        let mut source =
            NonceSource::load(NonceSeed::from_bytes([9; 32]), &store).expect("infallible");
        let mut seen = HashSet::new();
        for expected in 0..5u64 {
            let nonce = source
                .reserve(&x.public_key(), &[0; 32])
                .expect("not exhausted")
                .persist(&mut store)
                .expect("infallible");
            assert_eq!(nonce.session_id().get(), expected);
            assert!(seen.insert(nonce.public_nonce()));
        }
        assert_eq!(store, MemoryCounterStore::new(5));
    }

    #[test]
    fn failed_persist_does_not_advance() {
        let x = key(1);
        let mut store = FailingStore;
        let mut source = NonceSource::load(NonceSeed::from_bytes([9; 32]), &store).expect("loads");
        let err = source
            .reserve(&x.public_key(), &[0; 32])
            .expect("not exhausted")
            .persist(&mut store)
            .expect_err("store fails");
        assert!(matches!(err, NonceError::Persist { next: 8, .. }));
        assert_eq!(
            err.to_string(),
            "nonce counter store failed to persist next session id 8"
        );
        assert_eq!(source.next_session().get(), 7);
    }

    #[test]
    fn exhausted_counter_is_an_error() {
        let store = MemoryCounterStore::new(u64::MAX);
        let mut source =
            NonceSource::load(NonceSeed::from_bytes([9; 32]), &store).expect("infallible");
        assert!(matches!(
            source.reserve(&key(1).public_key(), &[0; 32]),
            Err(NonceError::Exhausted)
        ));
    }

    #[test]
    fn wrong_signer_is_rejected() {
        let mut store = MemoryCounterStore::default();
        let mut source =
            NonceSource::load(NonceSeed::from_bytes([9; 32]), &store).expect("infallible");
        let nonce = source
            .reserve(&key(1).public_key(), &[0; 32])
            .expect("not exhausted")
            .persist(&mut store)
            .expect("infallible");
        assert!(matches!(
            nonce.sign(&key(2), &[0; 32]),
            Err(NonceError::WrongSigner { .. })
        ));
    }

    #[test]
    fn signature_uses_the_committed_nonce() {
        let x = key(3);
        let mut store = MemoryCounterStore::default();
        let mut source =
            NonceSource::load(NonceSeed::from_bytes([9; 32]), &store).expect("infallible");
        let nonce = source
            .reserve(&x.public_key(), &[1; 32])
            .expect("not exhausted")
            .persist(&mut store)
            .expect("infallible");
        let R = nonce.public_nonce();
        let m = [0x5a; 32];
        let sig = nonce.sign(&x, &m).expect("right signer");
        assert_eq!(sig.nonce(), R);
        x.public_key()
            .verify(&m, &sig)
            .expect("valid bip340 signature");
    }

    #[test]
    fn debug_is_redacted() {
        let seed = NonceSeed::from_bytes([0xab; 32]);
        assert_eq!(format!("{seed:?}"), "NonceSeed(<redacted>)");
        let mut store = MemoryCounterStore::default();
        let mut source = NonceSource::load(seed, &store).expect("infallible");
        assert!(!format!("{source:?}").contains("abab"));
        let x = key(4);
        let nonce = source
            .reserve(&x.public_key(), &[0; 32])
            .expect("not exhausted")
            .persist(&mut store)
            .expect("infallible");
        let k = hex::encode(nonce.k.to_bytes());
        let shown = format!("{nonce:?}");
        assert!(shown.contains("<redacted>"));
        assert!(!shown.contains(&k));
    }
}
