//! Adaptor signatures and signature price points.
//!
//! Both serve one pattern: a point T = t·G whose discrete log t is being sold.
//!
//! - An [`EncryptedSignature`] under T is a BIP340 signature that only becomes valid once
//!   decrypted with t; whoever sees both the encrypted and the decrypted signature learns t.
//!   A PTLC offerer hands one over in advance so that claiming on chain reveals t.
//! - The [`price_point`] of a signature not yet made: for a committed nonce R, key X and
//!   message m, T = R + e·X with e the BIP340 challenge, and the future signature's scalar
//!   s satisfies s·G = T. S pays whoever reveals s; the payee reveals it in the PTLC claim.
//!
//! Messages are raw 32-byte BIP341/BIP118 sighashes (no tag or prefix is added), and every
//! decrypted signature verifies with libsecp256k1's BIP340 verification.
//!
//! ```
//! use asyncpay::crypto::adaptor::{sells, AdaptorSecret, EncryptedSignature};
//! use asyncpay::crypto::keys::SecretKey;
//! use bitcoin::secp256k1::{self, Secp256k1};
//!
//! let x = SecretKey::from_bytes([1u8; 32])?; // the offerer's key
//! let X = x.public_key();
//! let t = AdaptorSecret::from_bytes([2u8; 32])?; // known to the payee only
//! let T = t.adaptor_point();
//! let m = [3u8; 32]; // sighash of the PTLC success transaction
//!
//! // The offerer encrypts its signature to T; the payee checks it, which gives it a
//! // VerifiedEncryptedSignature bound to X, T and m.
//! let encrypted = EncryptedSignature::encrypt(&x, &T, &m, &[4u8; 32]);
//! let verified = encrypted.verify(&X, &T, &m)?;
//!
//! // The payee decrypts with t (checking only t·G = T) and publishes a valid BIP340
//! // signature...
//! let sig = verified.decrypt(&t)?;
//! let secp = Secp256k1::verification_only();
//! secp.verify_schnorr(&sig.into(), &secp256k1::Message::from_digest(m), &X.into())?;
//! // (An encrypted signature nobody verified decrypts with a full check of the result.)
//! assert_eq!(encrypted.decrypt(&t, &X, &m)?, sig);
//!
//! // ...from which the offerer learns t.
//! let learned = encrypted.recover(&T, &sig)?;
//! assert!(sells(&learned, &T));
//! assert_eq!(learned.to_secret_bytes(), t.to_secret_bytes());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Secrets are not serialisable by accident:
//!
//! ```compile_fail,E0277
//! # use asyncpay::crypto::adaptor::AdaptorSecret;
//! fn needs_serialize<T: serde::Serialize>() {}
//! needs_serialize::<AdaptorSecret>();
//! ```
//!
//! and a verified encrypted signature cannot be read back from bytes (it is only ever made by
//! a check):
//!
//! ```compile_fail,E0277
//! # use asyncpay::crypto::adaptor::VerifiedEncryptedSignature;
//! fn needs_deserialize<T: serde::de::DeserializeOwned>() {}
//! needs_deserialize::<VerifiedEncryptedSignature>();
//! ```
#![allow(non_snake_case)]

use core::fmt;

use bitcoin::secp256k1;
use schnorr_fun::{
    adaptor::Adaptor,
    fun::{g, marker::*, s, Point, Scalar},
    Message,
};
use serde::{Deserialize, Serialize};

use crate::crypto::keys::{self, PublicKey, SecretKey, Signature};
use crate::crypto::nonce::PublicNonce;
use crate::crypto::tally::{self, Op};

/// Errors from adaptor signatures and price points.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdaptorError {
    /// The secret bytes are zero or not below the curve order.
    #[error("adaptor secret is zero or not below the curve order")]
    InvalidSecret,
    /// The 33 bytes are not a compressed curve point.
    #[error("{} is not a compressed curve point", hex::encode(.bytes))]
    InvalidPoint {
        /// The rejected encoding.
        bytes: [u8; 33],
    },
    /// The 65 bytes are not an encrypted signature encoding.
    #[error("malformed encrypted signature: {reason}")]
    MalformedEncryptedSignature {
        /// Which part is malformed.
        reason: &'static str,
    },
    /// The encrypted signature would not decrypt to a valid signature for this key, adaptor
    /// point and message.
    #[error(
        "encrypted signature does not verify under public key {} and adaptor point {}",
        hex::encode(.public_key),
        hex::encode(.adaptor_point)
    )]
    InvalidEncryptedSignature {
        /// The signer's x-only key it was checked against.
        public_key: [u8; 32],
        /// The adaptor point it was checked against, compressed.
        adaptor_point: [u8; 33],
    },
    /// Decrypting with this secret does not give a valid signature: it is not the discrete
    /// log of the point the signature was encrypted to.
    #[error(
        "adaptor secret for {} does not decrypt this signature by public key {}",
        hex::encode(.adaptor_point),
        hex::encode(.public_key)
    )]
    WrongSecret {
        /// The point of the secret that was tried, compressed.
        adaptor_point: [u8; 33],
        /// The signer's x-only key.
        public_key: [u8; 32],
    },
    /// The signature is not the decryption of this encrypted signature under this point.
    #[error(
        "signature was not decrypted from this encrypted signature under {}",
        hex::encode(.adaptor_point)
    )]
    NotDecryptedFrom {
        /// The adaptor point recovery was attempted for, compressed.
        adaptor_point: [u8; 33],
    },
    /// A signature with s = 0 sells nothing.
    #[error("signature scalar is zero")]
    ZeroScalar,
    /// R + e·X is the point at infinity, so no signature with this nonce can be sold.
    #[error(
        "price point of nonce {} and public key {} is the point at infinity",
        hex::encode(.nonce),
        hex::encode(.public_key)
    )]
    PricePointAtInfinity {
        /// The committed nonce, x-only.
        nonce: [u8; 32],
        /// The signer's x-only key.
        public_key: [u8; 32],
    },
    /// The nonce (or a signature's R) is no curve point's x-coordinate: nothing signed with
    /// it can be priced, verified or sold.
    #[error("nonce {} is not the x-coordinate of a curve point", hex::encode(.nonce))]
    NonceNotOnCurve {
        /// The x-coordinate.
        nonce: [u8; 32],
    },
}

/// An adaptor (decryption) secret t, the discrete log of an [`AdaptorPoint`] T = t·G.
///
/// The scalar s of a signature is the adaptor secret of its price point. Not `Clone`, not
/// `Serialize`; redacted `Debug`. Move it explicitly with [`AdaptorSecret::to_secret_bytes`].
pub struct AdaptorSecret(Scalar<Secret, NonZero>);

impl AdaptorSecret {
    /// Parses a 32-byte secret; rejects zero and values not below the curve order.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, AdaptorError> {
        Scalar::from_bytes(bytes)
            .map(Self)
            .ok_or(AdaptorError::InvalidSecret)
    }

    /// The signature's scalar s, which is the secret its [`price_point`] sells.
    pub fn from_signature(signature: &Signature) -> Result<Self, AdaptorError> {
        signature
            .s()
            .secret()
            .non_zero()
            .map(Self)
            .ok_or(AdaptorError::ZeroScalar)
    }

    /// The 32-byte secret. Handle with care.
    pub fn to_secret_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// T = t·G.
    pub fn adaptor_point(&self) -> AdaptorPoint {
        tally::count(Op::SecretToPoint);
        AdaptorPoint(from_libsecp(&generator_mul(&self.0)))
    }

    /// a + b, the secret of the sum of their points: how the payee of a held sale (see
    /// `protocol::payment`) completes the payer's share with its receipt signature.
    pub fn add(&self, other: &AdaptorSecret) -> Result<AdaptorSecret, AdaptorError> {
        let sum = s!(self.0 + other.0);
        sum.non_zero()
            .map(AdaptorSecret)
            .ok_or(AdaptorError::ZeroScalar)
    }

    /// a − b: how the payer of a held sale takes the payee's receipt signature back out of
    /// the scalar S bought.
    pub fn sub(&self, other: &AdaptorSecret) -> Result<AdaptorSecret, AdaptorError> {
        let difference = s!(self.0 - other.0);
        difference
            .non_zero()
            .map(AdaptorSecret)
            .ok_or(AdaptorError::ZeroScalar)
    }

    /// The signature (R, s) with this secret as s: how S completes the payer's signature
    /// once the payee has revealed s. Check the result with [`PublicKey::verify`].
    pub fn to_signature(&self, R: &PublicNonce) -> Signature {
        let s = self.0.public().mark_zero();
        Signature::from_parts(R, &s)
    }
}

impl fmt::Debug for AdaptorSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdaptorSecret(<redacted>)")
    }
}

/// An adaptor (encryption) point T = t·G: the price of a signature, the lock of a PTLC.
/// Encoded as a 33-byte compressed point.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AdaptorPoint(Point);

impl AdaptorPoint {
    /// Parses a 33-byte compressed point.
    pub fn from_bytes(bytes: [u8; 33]) -> Result<Self, AdaptorError> {
        tally::count(Op::PointDecode);
        Point::from_bytes(bytes)
            .map(Self)
            .ok_or(AdaptorError::InvalidPoint { bytes })
    }

    /// The 33-byte compressed encoding.
    pub fn to_bytes(&self) -> [u8; 33] {
        self.0.to_bytes()
    }

    /// T + a·G: the point of a held sale, from the payee's receipt point T and the payer's
    /// share a. Public arithmetic on T, constant time in a.
    pub fn add_secret(&self, a: &AdaptorSecret) -> Result<AdaptorPoint, AdaptorError> {
        let aG = from_libsecp(&generator_mul(&a.0));
        g!(self.0 + aG)
            .normalize()
            .non_zero()
            .map(AdaptorPoint)
            .ok_or(AdaptorError::InvalidPoint {
                bytes: self.to_bytes(),
            })
    }
}

impl fmt::Display for AdaptorPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.to_bytes()))
    }
}

impl fmt::Debug for AdaptorPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AdaptorPoint({self})")
    }
}

impl From<secp256k1::PublicKey> for AdaptorPoint {
    fn from(point: secp256k1::PublicKey) -> Self {
        tally::count(Op::PointDecode);
        Self(Point::from(point))
    }
}

impl From<AdaptorPoint> for secp256k1::PublicKey {
    fn from(point: AdaptorPoint) -> Self {
        tally::count(Op::PointDecode);
        secp256k1::PublicKey::from(point.0)
    }
}

/// The price point T = R + e·X of the BIP340 signature that key X will make on the 32-byte
/// message m with committed nonce R, where e = H_tag("BIP0340/challenge", R.x || X.x || m).
///
/// The signature's scalar s is exactly the t with t·G = T; see [`sells`].
pub fn price_point(
    R: &PublicNonce,
    X: &PublicKey,
    m: &[u8; 32],
) -> Result<AdaptorPoint, AdaptorError> {
    tally::count(Op::PricePoint);
    let R_point = R.lift().map_err(|_| AdaptorError::NonceNotOnCurve {
        nonce: R.to_xonly_bytes(),
    })?;
    let e = keys::challenge_x(&R.to_xonly_bytes(), X.point(), m);
    sum_variable_time(&R_point, X.point(), e)
        .map(AdaptorPoint)
        .ok_or(AdaptorError::PricePointAtInfinity {
            nonce: R.to_xonly_bytes(),
            public_key: X.to_xonly_bytes(),
        })
}

/// Whether `s` is what `T` sells: s·G = T.
pub fn sells(s: &AdaptorSecret, T: &AdaptorPoint) -> bool {
    tally::count(Op::SecretToPoint);
    is_point(&generator_mul(&s.0), &T.0)
}

/// A BIP340 signature encrypted to an adaptor point T (a "pre-signature").
///
/// Encoded in 65 bytes: R.x of the final signature, the encrypted scalar ŝ, and one byte
/// telling whether t must be negated to decrypt (a consequence of R having even y).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EncryptedSignature(schnorr_fun::adaptor::EncryptedSignature);

impl EncryptedSignature {
    /// Signs the 32-byte message m with key x, encrypted to T.
    ///
    /// The nonce is derived as in BIP340 from x, X, T, m and `aux` (fresh random bytes from
    /// the caller; any fixed value still binds the nonce to all inputs).
    pub fn encrypt(x: &SecretKey, T: &AdaptorPoint, m: &[u8; 32], aux: &[u8; 32]) -> Self {
        tally::count(Op::AdaptorEncrypt);
        Self(encrypted_sign(x.keypair(), &T.0, m, aux))
    }

    /// Checks that decrypting with the discrete log of T yields a valid signature by X on m;
    /// the proof of that check is the [`VerifiedEncryptedSignature`] it returns, which
    /// decrypts with a check of t alone.
    pub fn verify(
        &self,
        X: &PublicKey,
        T: &AdaptorPoint,
        m: &[u8; 32],
    ) -> Result<VerifiedEncryptedSignature, AdaptorError> {
        tally::count(Op::AdaptorVerify);
        let valid = verify_variable_time(X.point(), &T.0, m, &self.0).unwrap_or_else(|| {
            keys::verifier().verify_encrypted_signature(X.point(), &T.0, Message::raw(m), &self.0)
        });
        if valid {
            Ok(VerifiedEncryptedSignature {
                encrypted: self.clone(),
                X: *X,
                T: *T,
                m: *m,
            })
        } else {
            Err(AdaptorError::InvalidEncryptedSignature {
                public_key: X.to_xonly_bytes(),
                adaptor_point: T.to_bytes(),
            })
        }
    }

    /// The signature s = ŝ ± t, unchecked: what every decryption computes before its own
    /// check.
    fn complete(&self, t: &AdaptorSecret) -> Signature {
        Signature::from_inner(keys::verifier().decrypt_signature(t.0, self.0.clone()))
    }

    /// Decrypts with t and checks that the result is a valid signature by X on m.
    ///
    /// For an encrypted signature nobody verified. One that was verified under (X, T, m)
    /// decrypts for less with [`VerifiedEncryptedSignature::decrypt`].
    pub fn decrypt(
        &self,
        t: &AdaptorSecret,
        X: &PublicKey,
        m: &[u8; 32],
    ) -> Result<Signature, AdaptorError> {
        tally::count(Op::AdaptorDecrypt);
        let sig = self.complete(t);
        // A full BIP340 verification rather than a cheaper check: s·G = R + e·X follows from
        // t·G = T alone only for an encrypted signature verified under (X, T, m), and this one
        // may not have been.
        if !verify_bip340(X.point(), m, &sig) {
            return Err(AdaptorError::WrongSecret {
                adaptor_point: t.adaptor_point().to_bytes(),
                public_key: X.to_xonly_bytes(),
            });
        }
        Ok(sig)
    }

    /// Recovers t from the signature decrypted from this encrypted signature.
    pub fn recover(
        &self,
        T: &AdaptorPoint,
        signature: &Signature,
    ) -> Result<AdaptorSecret, AdaptorError> {
        tally::count(Op::AdaptorRecover);
        let signature = signature.lift().ok_or(AdaptorError::NonceNotOnCurve {
            nonce: signature.nonce().to_xonly_bytes(),
        })?;
        recover_decryption_key(&T.0, &self.0, &signature)
            .map(AdaptorSecret)
            .ok_or(AdaptorError::NotDecryptedFrom {
                adaptor_point: T.to_bytes(),
            })
    }

    /// The nonce R the decrypted signature will carry.
    pub fn nonce(&self) -> PublicNonce {
        PublicNonce::from_point(self.0.R)
    }

    /// The 65-byte encoding: R.x, ŝ, negation flag (0 or 1).
    pub fn to_bytes(&self) -> [u8; 65] {
        let mut bytes = [0u8; 65];
        bytes[..32].copy_from_slice(&self.0.R.to_xonly_bytes());
        bytes[32..64].copy_from_slice(&self.0.s_hat.to_bytes());
        bytes[64] = u8::from(self.0.needs_negation);
        bytes
    }

    /// Parses the 65-byte encoding of [`EncryptedSignature::to_bytes`].
    pub fn from_bytes(bytes: &[u8; 65]) -> Result<Self, AdaptorError> {
        let malformed = |reason| AdaptorError::MalformedEncryptedSignature { reason };
        let mut r = [0u8; 32];
        r.copy_from_slice(&bytes[..32]);
        let mut s = [0u8; 32];
        s.copy_from_slice(&bytes[32..64]);
        tally::count(Op::PointDecode);
        let R = Point::from_xonly_bytes(r).ok_or(malformed("nonce is not a curve point"))?;
        let s_hat =
            Scalar::from_bytes(s).ok_or(malformed("scalar is not below the curve order"))?;
        let needs_negation = match bytes[64] {
            0 => false,
            1 => true,
            _ => return Err(malformed("negation flag is neither 0 nor 1")),
        };
        Ok(Self(schnorr_fun::adaptor::EncryptedSignature {
            R,
            s_hat,
            needs_negation,
        }))
    }
}

// Equality of the encoding's parts (R, ŝ, flag) is an equivalence relation.
impl Eq for EncryptedSignature {}

// The scalar is left out: a payer's pre-signature together with the sold scalar yields the
// payee's receipt signature, which is the payer's to hand out.
impl fmt::Debug for EncryptedSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedSignature")
            .field("R", &hex::encode(self.0.R.to_xonly_bytes()))
            .field("s_hat", &"<redacted>")
            .field("needs_negation", &self.0.needs_negation)
            .finish()
    }
}

/// An [`EncryptedSignature`] verified under its signer's key X, adaptor point T and message
/// m, which it carries. Made only by [`EncryptedSignature::verify`].
///
/// Verification established ŝ·G = R + e·X ± T, so decrypting needs only the check t·G = T
/// ([`VerifiedEncryptedSignature::decrypt`]): then s = ŝ ± t satisfies s·G = R + e·X, a valid
/// BIP340 signature by X on m, without verifying it.
///
/// Neither `Serialize` nor `Deserialize`, and no constructor from bytes or parts: what it
/// vouches for is a check, and bytes read back cannot show that the check was made (nor that
/// it was made by this version, under this message). So it lives in memory only. Whoever
/// stores an encrypted signature stores the [`EncryptedSignature`] and, after reloading it,
/// verifies it again before using this type (a channel's PTLC claim does so after a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEncryptedSignature {
    encrypted: EncryptedSignature,
    X: PublicKey,
    T: AdaptorPoint,
    m: [u8; 32],
}

impl VerifiedEncryptedSignature {
    /// Decrypts with t: checks t·G = T (constant time in t) and completes s = ŝ ± t, which is
    /// then a valid BIP340 signature by X on m (see the type's documentation).
    ///
    /// Refuses any other t with [`AdaptorError::WrongSecret`].
    pub fn decrypt(&self, t: &AdaptorSecret) -> Result<Signature, AdaptorError> {
        tally::count(Op::AdaptorDecrypt);
        tally::count(Op::SecretToPoint);
        let tG = generator_mul(&t.0);
        if !is_point(&tG, &self.T.0) {
            return Err(AdaptorError::WrongSecret {
                adaptor_point: tG.serialize(),
                public_key: self.X.to_xonly_bytes(),
            });
        }
        Ok(self.encrypted.complete(t))
    }

    /// Whether it was verified under exactly this key, adaptor point and message.
    pub fn is_for(&self, X: &PublicKey, T: &AdaptorPoint, m: &[u8; 32]) -> bool {
        (&self.X, &self.T, &self.m) == (X, T, m)
    }

    /// The encrypted signature, as sent and stored.
    pub fn encrypted(&self) -> &EncryptedSignature {
        &self.encrypted
    }
}

// ---- Signatures encrypted under a committed nonce (proof of payment) ----

impl AdaptorPoint {
    /// The point, for the crate's own arithmetic.
    pub(crate) fn point(&self) -> &Point {
        &self.0
    }
}

impl EncryptedSignature {
    /// Assembles a pre-signature made with a committed nonce ([`SecretNonce::encrypt`]).
    ///
    /// [`SecretNonce::encrypt`]: crate::crypto::nonce::SecretNonce::encrypt
    pub(crate) fn from_parts(R: Point<EvenY>, s_hat: Scalar<Public, Zero>, negated: bool) -> Self {
        Self(schnorr_fun::adaptor::EncryptedSignature {
            R,
            s_hat,
            needs_negation: negated,
        })
    }

    /// The completed scalar s = ŝ ± y, without a signature check: for a decryptor that does
    /// not know the signed message and checks s against the signature's price point instead
    /// (`sells(&s, &T)`), as the payee checks a pre-signature against S's offer.
    pub fn decrypt_scalar(&self, y: &AdaptorSecret) -> Result<AdaptorSecret, AdaptorError> {
        tally::count(Op::AdaptorDecrypt);
        AdaptorSecret::from_signature(&self.complete(y))
    }

    /// Recovers y (with y·G = Y) from the completed scalar s of this pre-signature: how the
    /// payer learns the payee's receipt signature from the scalar S bought.
    pub fn recover_from_scalar(
        &self,
        Y: &AdaptorPoint,
        s: &AdaptorSecret,
    ) -> Result<AdaptorSecret, AdaptorError> {
        self.recover(Y, &s.to_signature(&self.nonce()))
    }
}

// The curve arithmetic of this module runs on libsecp256k1 (through the process's one
// context), two to three times faster than secp256kfun's here: secp256kfun has no
// precomputed tables for G and, in the version we use, runs its "variable-time" operations
// on the constant-time code too. The results are exactly those of schnorr_fun's adaptor
// module, which the tests compare them with.
//
// Which operations see secret data, and why they are constant time:
// - `encrypted_sign`: the key x and the nonce r. The nonce is derived by schnorr_fun's
//   BIP340 synthetic derivation (hashing), r·G by libsecp256k1's generator multiplication
//   (constant time, blinded by the context's randomisation), the parity fix of r and
//   ŝ = r + c·x on secp256kfun's scalars (constant time). r·G + T and what follows from it
//   are public: r·G = R − T.
// - `generator_mul` (t·G for `adaptor_point`, `sells`, `recover` and the decryption of a
//   verified encrypted signature): the secret t, on libsecp256k1's constant-time generator
//   multiplication; `is_point` compares the result with T in constant time, and s = ŝ ± t
//   is on secp256kfun's scalars (constant time).
// - `recover_decryption_key`: t = ±(s − ŝ) on secp256kfun's scalars, then t·G as above.
// - `verify_variable_time` and `sum_variable_time` (adaptor verification, price points) see
//   only public data (keys, nonces, adaptor points, challenges, published scalars), so they
//   use libsecp256k1's variable-time multiplication.
// - `verify_bip340` (the check of a decrypted signature) sees its scalar s, from which
//   anyone holding the encrypted signature learns t: decrypting is for publishing (the
//   claim transaction carries s), so s is treated as public from then on, as libsecp256k1's
//   own verification treats it.

/// The libsecp256k1 form of a curve point, through its uncompressed encoding (no square root,
/// unlike the compressed one).
fn libsecp_point<T: Normalized, S>(P: &Point<T, S>) -> secp256k1::PublicKey {
    secp256k1::PublicKey::from_slice(&P.to_bytes_uncompressed())
        .expect("a point's uncompressed encoding parses")
}

/// The secp256kfun form of a libsecp256k1 point (a square root: secp256kfun builds a point
/// only from an encoding it checks).
fn from_libsecp(P: &secp256k1::PublicKey) -> Point {
    Point::from_bytes(P.serialize()).expect("libsecp256k1 points are curve points")
}

/// t·G, in constant time (libsecp256k1's generator multiplication on its precomputed table).
pub(crate) fn generator_mul(t: &Scalar<Secret, NonZero>) -> secp256k1::PublicKey {
    let mut bytes = t.to_bytes();
    let mut key =
        secp256k1::SecretKey::from_slice(&bytes).expect("a non-zero scalar is a secret key");
    zeroize::Zeroize::zeroize(&mut bytes);
    let point = secp256k1::PublicKey::from_secret_key(super::context(), &key);
    key.non_secure_erase();
    point
}

/// Whether `P` is `T`, compared in constant time (`P` may come from a secret).
fn is_point(P: &secp256k1::PublicKey, T: &Point) -> bool {
    let (P, T) = (P.serialize_uncompressed(), T.to_bytes_uncompressed());
    subtle::ConstantTimeEq::ct_eq(&P[..], &T[..]).into()
}

/// schnorr_fun's `encrypted_sign` (the same nonce, so the same encrypted signature) with its
/// generator multiplication on libsecp256k1.
fn encrypted_sign(
    keypair: &schnorr_fun::fun::KeyPair<EvenY>,
    Y: &Point,
    m: &[u8; 32],
    aux: &[u8; 32],
) -> schnorr_fun::adaptor::EncryptedSignature {
    let (x, X) = keypair.as_tuple();
    let signer = keys::signer(aux);
    let mut r = schnorr_fun::fun::derive_nonce!(
        nonce_gen => signer.nonce_gen(),
        secret => x,
        public => [X, Y, Message::raw(m)]
    );
    // The nonce is derived from Y, so r·G + Y is a random point, never infinity.
    let R = generator_mul(&r)
        .combine(&libsecp_point(Y))
        .expect("computationally unreachable");
    let [parity, R_x @ ..] = R.serialize();
    // R must have even y: negate it (and so r), which the decryptor has to mirror on t.
    let needs_negation = parity == 0x03;
    r.conditional_negate(needs_negation);
    let R = Point::<EvenY>::from_xonly_bytes(R_x).expect("libsecp256k1 points are curve points");
    let c = keys::challenge(&R, &X, m);
    schnorr_fun::adaptor::EncryptedSignature {
        R,
        s_hat: schnorr_fun::fun::s!(r + c * x).public(),
        needs_negation,
    }
}

/// Whether ŝ·G − c·X = R ± Y (+ if the encrypted signature needs negation), in one
/// variable-time multiplication; `None` when that cannot tell (c = 0, or ŝ·G − c·X at
/// infinity), for the caller to ask schnorr_fun.
fn verify_variable_time(
    X: &Point<EvenY>,
    Y: &Point,
    m: &[u8; 32],
    encrypted: &schnorr_fun::adaptor::EncryptedSignature,
) -> Option<bool> {
    let c = keys::challenge(&encrypted.R, X, m);
    let sG_minus_cX = double_mul_variable_time(encrypted.s_hat, c, X)?;
    // ŝ·G − c·X = R ± Y exactly when ŝ·G − c·X ∓ Y = R.
    let Y = libsecp_point(Y);
    let Y = if encrypted.needs_negation {
        Y.negate(super::context())
    } else {
        Y
    };
    let mut R = [0x02; 33];
    R[1..].copy_from_slice(&encrypted.R.to_xonly_bytes());
    Some(
        sG_minus_cX
            .combine(&Y)
            .is_ok_and(|sum| sum.serialize() == R),
    )
}

/// a·G − b·X in one variable-time multiplication (all public); `None` if b = 0 or at
/// infinity.
///
/// libsecp256k1 offers its variable-time a·P + b·G for an arbitrary point P only as ECDSA
/// public key recovery: from (r, s), a recovery id and a message z it computes
/// r⁻¹·s·P − r⁻¹·z·G, where P is the point of x-coordinate r (plus the order n if the id's
/// bit 1 is set) and of the id's y parity. With P = X (even y), s = −b·r and z = −a·r that
/// is a·G − b·X: the point itself, not only its x-coordinate.
fn double_mul_variable_time(
    a: Scalar<Public, Zero>,
    b: Scalar<Public, Zero>,
    X: &Point<EvenY>,
) -> Option<secp256k1::PublicKey> {
    use schnorr_fun::fun::s;
    use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};

    let X_x = X.to_xonly_bytes();
    let (r, above_order) = match Scalar::<Public, Zero>::from_bytes(X_x) {
        Some(r) => (r, false),
        None => (Scalar::from_bytes_mod_order(X_x), true),
    };
    // s = 0 if b = 0, or if r = 0: X's x-coordinate is n itself (a curve point).
    let s = s!(-b * r).non_zero()?;
    let z = s!(-a * r);
    let mut compact = [0u8; 64];
    compact[..32].copy_from_slice(&r.to_bytes());
    compact[32..].copy_from_slice(&s.to_bytes());
    let id = RecoveryId::from_i32(if above_order { 2 } else { 0 }).expect("a recovery id");
    let sig = RecoverableSignature::from_compact(&compact, id).expect("r and s are scalars");
    super::context()
        .recover_ecdsa(&secp256k1::Message::from_digest(z.to_bytes()), &sig)
        .ok()
}

/// R + e·X, variable time (all public); `None` at infinity.
fn sum_variable_time(R: &Point<EvenY>, X: &Point<EvenY>, e: Scalar<Public, Zero>) -> Option<Point> {
    let R = libsecp_point(R);
    let sum = match e.non_zero() {
        None => R,
        Some(e) => {
            let e = secp256k1::Scalar::from_be_bytes(e.to_bytes()).expect("a scalar");
            let eX = libsecp_point(X)
                .mul_tweak(super::context(), &e)
                .expect("a non-zero multiple of a point of prime order");
            R.combine(&eX).ok()?
        }
    };
    Some(from_libsecp(&sum))
}

/// BIP340 verification on libsecp256k1, as [`PublicKey::verify`] but without the square root
/// of decoding the key from its x-coordinate; counted as a verification.
fn verify_bip340(X: &Point<EvenY>, m: &[u8; 32], sig: &Signature) -> bool {
    tally::count(Op::Verify);
    let (key, _) = libsecp_point(X).x_only_public_key();
    crate::crypto::secp()
        .verify_schnorr(
            &secp256k1::schnorr::Signature::from(*sig),
            &secp256k1::Message::from_digest(*m),
            &key,
        )
        .is_ok()
}

/// schnorr_fun's `recover_decryption_key` with t·G on libsecp256k1 (constant time: t is the
/// secret being learned).
fn recover_decryption_key(
    T: &Point,
    encrypted: &schnorr_fun::adaptor::EncryptedSignature,
    signature: &schnorr_fun::Signature,
) -> Option<Scalar<Secret, NonZero>> {
    if signature.R != encrypted.R {
        return None;
    }
    let (s, s_hat) = (signature.s, encrypted.s_hat);
    let mut t = schnorr_fun::fun::s!(s - s_hat).secret();
    t.conditional_negate(encrypted.needs_negation);
    // t = 0 only if s = ŝ, which is public.
    let t = t.non_zero()?;
    is_point(&generator_mul(&t), T).then_some(t)
}

#[cfg(test)]
mod reference_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::libsecp_verifies;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes([byte; 32]).expect("valid scalar")
    }

    fn secret(byte: u8) -> AdaptorSecret {
        AdaptorSecret::from_bytes([byte; 32]).expect("valid scalar")
    }

    #[test]
    fn round_trip() {
        let (x, t, m) = (key(1), secret(2), [3u8; 32]);
        let (X, T) = (x.public_key(), t.adaptor_point());
        let enc = EncryptedSignature::encrypt(&x, &T, &m, &[0; 32]);
        enc.verify(&X, &T, &m).expect("valid encrypted signature");
        let sig = enc.decrypt(&t, &X, &m).expect("right secret");
        assert_eq!(sig.nonce(), enc.nonce());
        let learned = enc.recover(&T, &sig).expect("decrypted from it");
        assert_eq!(learned.to_secret_bytes(), t.to_secret_bytes());
    }

    #[test]
    fn wrong_secret_and_wrong_point_fail() {
        let (x, t, m) = (key(1), secret(2), [3u8; 32]);
        let (X, T) = (x.public_key(), t.adaptor_point());
        let enc = EncryptedSignature::encrypt(&x, &T, &m, &[0; 32]);
        assert!(matches!(
            enc.decrypt(&secret(5), &X, &m),
            Err(AdaptorError::WrongSecret { .. })
        ));
        let other = secret(6).adaptor_point();
        assert!(enc.verify(&X, &other, &m).is_err());
        assert!(enc.verify(&key(7).public_key(), &T, &m).is_err());
        assert!(enc.verify(&X, &T, &[8; 32]).is_err());
        let sig = enc.decrypt(&t, &X, &m).expect("right secret");
        assert_eq!(
            enc.recover(&other, &sig).err(),
            Some(AdaptorError::NotDecryptedFrom {
                adaptor_point: other.to_bytes()
            })
        );
        // A signature not decrypted from `enc` (different nonce) reveals nothing.
        let unrelated = x.sign(&m, &[1; 32]);
        assert!(enc.recover(&T, &unrelated).is_err());
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        let (x, t) = (key(1), secret(2));
        let enc = EncryptedSignature::encrypt(&x, &t.adaptor_point(), &[3; 32], &[0; 32]);
        let bytes = enc.to_bytes();
        assert_eq!(
            EncryptedSignature::from_bytes(&bytes).expect("own encoding"),
            enc
        );
        let mut bad_flag = bytes;
        bad_flag[64] = 2;
        assert!(EncryptedSignature::from_bytes(&bad_flag).is_err());
        let mut bad_s = bytes;
        bad_s[32..64].copy_from_slice(&[0xff; 32]);
        assert!(EncryptedSignature::from_bytes(&bad_s).is_err());
        let T = t.adaptor_point();
        assert_eq!(
            AdaptorPoint::from_bytes(T.to_bytes()).expect("own encoding"),
            T
        );
        assert!(AdaptorPoint::from_bytes([0x05; 33]).is_err());
    }

    #[test]
    fn price_point_of_a_signature() {
        let x = key(9);
        let m = [0x42; 32];
        let sig = x.sign(&m, &[0; 32]);
        let T = price_point(&sig.nonce(), &x.public_key(), &m).expect("not at infinity");
        let s = AdaptorSecret::from_signature(&sig).expect("nonzero s");
        assert!(sells(&s, &T));
        assert!(!sells(&secret(1), &T));
        // S completes the signature from R and the revealed s.
        assert_eq!(s.to_signature(&sig.nonce()), sig);
    }

    #[test]
    fn libsecp_point_round_trip() {
        let T = secret(3).adaptor_point();
        let pk: secp256k1::PublicKey = T.into();
        assert_eq!(pk.serialize(), T.to_bytes());
        assert_eq!(AdaptorPoint::from(pk), T);
    }

    #[test]
    fn serde_round_trips_and_validates() {
        let (x, t, m) = (key(1), secret(2), [3u8; 32]);
        let T = t.adaptor_point();
        let enc = EncryptedSignature::encrypt(&x, &T, &m, &[0; 32]);
        let sig = enc.decrypt(&t, &x.public_key(), &m).expect("right secret");

        let json = serde_json::to_string(&(T, &enc, sig, x.public_key(), sig.nonce()))
            .expect("serialisable");
        let back: (
            AdaptorPoint,
            EncryptedSignature,
            Signature,
            PublicKey,
            PublicNonce,
        ) = serde_json::from_str(&json).expect("own encoding");
        assert_eq!(back, (T, enc, sig, x.public_key(), sig.nonce()));

        // A point that is not on the curve does not deserialise.
        let bad = format!("\"{}\"", "05".repeat(33));
        assert!(serde_json::from_str::<AdaptorPoint>(&bad).is_err());
    }

    #[test]
    fn verified_decrypt_gives_a_valid_signature() {
        let (x, t, m) = (key(1), secret(2), [3u8; 32]);
        let (X, T) = (x.public_key(), t.adaptor_point());
        let enc = EncryptedSignature::encrypt(&x, &T, &m, &[0; 32]);
        let verified = enc.verify(&X, &T, &m).expect("valid encrypted signature");
        assert!(verified.is_for(&X, &T, &m));
        assert!(!verified.is_for(&X, &T, &[4; 32]));
        assert_eq!(verified.encrypted(), &enc);
        let sig = verified.decrypt(&t).expect("right secret");
        assert!(libsecp_verifies(&X, &m, &sig));
        assert_eq!(sig, enc.decrypt(&t, &X, &m).expect("right secret"));
        let learned = enc.recover(&T, &sig).expect("decrypted from it");
        assert_eq!(learned.to_secret_bytes(), t.to_secret_bytes());
    }

    #[test]
    fn verified_decrypt_refuses_a_wrong_secret() {
        let (x, t, m) = (key(1), secret(2), [3u8; 32]);
        let (X, T) = (x.public_key(), t.adaptor_point());
        let verified = EncryptedSignature::encrypt(&x, &T, &m, &[0; 32])
            .verify(&X, &T, &m)
            .expect("valid encrypted signature");
        for wrong in [secret(5), secret(0xfe)] {
            assert_eq!(
                verified.decrypt(&wrong),
                Err(AdaptorError::WrongSecret {
                    adaptor_point: wrong.adaptor_point().to_bytes(),
                    public_key: X.to_xonly_bytes(),
                })
            );
        }
        // t's negation has T's x-coordinate: refused too (the check compares whole points).
        let negated = AdaptorSecret(-t.0);
        assert_eq!(
            negated.adaptor_point().to_bytes()[1..],
            T.to_bytes()[1..],
            "same x"
        );
        assert!(matches!(
            verified.decrypt(&negated),
            Err(AdaptorError::WrongSecret { .. })
        ));
    }

    #[test]
    fn verified_decrypt_with_and_without_negation() {
        let x = key(1);
        let X = x.public_key();
        for t in [secret(2), secret(3), secret(4)] {
            let T = t.adaptor_point();
            let mut seen = [false; 2];
            for i in 0u8..64 {
                let m = [i; 32];
                let enc = EncryptedSignature::encrypt(&x, &T, &m, &[i; 32]);
                let negation = enc.0.needs_negation;
                seen[usize::from(negation)] = true;
                let verified = enc.verify(&X, &T, &m).expect("valid");
                let sig = verified.decrypt(&t).expect("right secret");
                assert!(libsecp_verifies(&X, &m, &sig), "negation {negation}");
                assert_eq!(sig, enc.decrypt(&t, &X, &m).expect("right secret"));
                // The other flag does not verify, so it never decrypts without a full check.
                let mut flipped = enc.clone();
                flipped.0.needs_negation = !negation;
                assert!(flipped.verify(&X, &T, &m).is_err());
                assert!(flipped.decrypt(&t, &X, &m).is_err());
            }
            assert_eq!(seen, [true, true], "both flags occur");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn verified_decrypt_equals_the_fully_checked_one(
            x in proptest::prelude::any::<[u8; 32]>(),
            t in proptest::prelude::any::<[u8; 32]>(),
            other in proptest::prelude::any::<[u8; 32]>(),
            m in proptest::prelude::any::<[u8; 32]>(),
            aux in proptest::prelude::any::<[u8; 32]>(),
        ) {
            // Invalid scalars occur with probability about 2^-128; skip them.
            let (Ok(x), Ok(t), Ok(other)) = (
                SecretKey::from_bytes(x),
                AdaptorSecret::from_bytes(t),
                AdaptorSecret::from_bytes(other),
            ) else {
                return Ok(());
            };
            let (X, T) = (x.public_key(), t.adaptor_point());
            let enc = EncryptedSignature::encrypt(&x, &T, &m, &aux);
            let verified = enc.verify(&X, &T, &m).expect("valid");
            let sig = verified.decrypt(&t).expect("right secret");
            proptest::prop_assert_eq!(Ok(sig), enc.decrypt(&t, &X, &m));
            proptest::prop_assert!(libsecp_verifies(&X, &m, &sig));
            if other.to_secret_bytes() != t.to_secret_bytes() {
                proptest::prop_assert!(verified.decrypt(&other).is_err());
                proptest::prop_assert!(enc.decrypt(&other, &X, &m).is_err());
            }
        }
    }

    #[test]
    fn debug_is_redacted() {
        let t = secret(0x3c);
        assert_eq!(format!("{t:?}"), "AdaptorSecret(<redacted>)");
    }
}
