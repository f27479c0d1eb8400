//! Keys and BIP340 signatures over 32-byte messages (BIP341/BIP118 sighashes), with
//! conversions to and from the `bitcoin` crate's libsecp256k1 types.
//!
//! A [`SecretKey`] x has the x-only [`PublicKey`] X = x·G (x is normalised so that X has even
//! y, as BIP340 requires). Messages are the raw 32-byte sighash, hashed into the BIP340
//! challenge as is: no tag or application prefix is added.
//!
//! ```
//! use asyncpay::crypto::keys::{SecretKey, Signature};
//! use bitcoin::secp256k1::{self, Secp256k1};
//!
//! let x = SecretKey::from_bytes([7u8; 32])?;
//! let X = x.public_key();
//! let m = [42u8; 32]; // a sighash
//! let aux = [9u8; 32]; // fresh randomness supplied by the caller
//! let sig = x.sign(&m, &aux);
//! X.verify(&m, &sig)?;
//!
//! // libsecp256k1 agrees, through the `bitcoin` crate's types.
//! let secp = Secp256k1::new();
//! let libsecp_sig: secp256k1::schnorr::Signature = sig.into();
//! let libsecp_key: secp256k1::XOnlyPublicKey = X.into();
//! secp.verify_schnorr(&libsecp_sig, &secp256k1::Message::from_digest(m), &libsecp_key)?;
//!
//! // And back: a libsecp256k1 keypair signs with the same key.
//! let keypair = x.to_keypair(&secp);
//! assert_eq!(SecretKey::from_keypair(&keypair).public_key(), X);
//! assert_eq!(Signature::try_from(libsecp_sig)?, sig);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![allow(non_snake_case)]

use core::fmt;

use bitcoin::secp256k1;
use schnorr_fun::{
    fun::{marker::*, nonce::NonceRng, nonce::Synthetic, KeyPair, Point, Scalar},
    Message, Schnorr,
};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::crypto::nonce::PublicNonce;
use crate::crypto::tally::{self, Op};

/// Errors from parsing or checking keys and signatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The secret key bytes are zero or not below the curve order.
    #[error("secret key is zero or not below the curve order")]
    InvalidSecretKey,
    /// The 32 bytes are not the x-coordinate of a point on the curve.
    #[error("{} is not the x-coordinate of a curve point", hex::encode(.x))]
    InvalidXOnly {
        /// The rejected x-coordinate.
        x: [u8; 32],
    },
    /// The 64 bytes are not a BIP340 signature encoding: s is not below the curve order (R is
    /// not lifted when a signature is parsed; see [`Signature`]).
    #[error("malformed bip340 signature {}", hex::encode(.bytes))]
    MalformedSignature {
        /// The rejected encoding.
        bytes: [u8; 64],
    },
    /// The signature does not verify for this key and message.
    #[error("signature does not verify under public key {}", hex::encode(.public_key))]
    InvalidSignature {
        /// The x-only key the signature was checked against.
        public_key: [u8; 32],
    },
}

/// The BIP340 verifier (challenge hash tagged `BIP0340/challenge`), made once: making one
/// hashes the tag, which every challenge would otherwise repeat.
pub(crate) fn verifier() -> &'static Schnorr<Sha256> {
    static VERIFIER: std::sync::LazyLock<Schnorr<Sha256>> =
        std::sync::LazyLock::new(Schnorr::<Sha256>::verify_only);
    &VERIFIER
}

/// BIP340 challenge e = H_tag("BIP0340/challenge", R.x || X.x || m) over a raw 32-byte message.
pub(crate) fn challenge(R: &Point<EvenY>, X: &Point<EvenY>, m: &[u8; 32]) -> Scalar<Public, Zero> {
    verifier().challenge(R, X, Message::raw(m))
}

/// [`challenge`] with R given by its x-coordinate, which is all the hash takes of it.
pub(crate) fn challenge_x(R: &[u8; 32], X: &Point<EvenY>, m: &[u8; 32]) -> Scalar<Public, Zero> {
    use schnorr_fun::fun::hash::HashAdd;
    Scalar::<Secret, NonZero>::from_hash(
        verifier()
            .challenge_hash()
            .add(&R[..])
            .add(X)
            .add(Message::raw(m)),
    )
    .mark_zero()
    .public()
}

/// Auxiliary randomness fed into BIP340's synthetic nonce derivation.
///
/// BIP340 hashes it (tag `BIP0340/aux`) and xors it into the secret key before deriving the
/// nonce, so the caller's bytes enter exactly as the BIP specifies.
pub(crate) struct AuxRand(pub(crate) [u8; 32]);

impl NonceRng for AuxRand {
    fn fill_bytes(&self, bytes: &mut [u8]) {
        for (out, aux) in bytes.iter_mut().zip(self.0.iter()) {
            *out = *aux;
        }
    }
}

/// A BIP340 signer whose nonce derivation takes the given auxiliary randomness.
pub(crate) fn signer(aux: &[u8; 32]) -> Schnorr<Sha256, Synthetic<Sha256, AuxRand>> {
    Schnorr::new(Synthetic::new(AuxRand(*aux)))
}

/// A secret signing key x, normalised so that its public key X = x·G has even y.
///
/// Not `Clone`, not `Serialize`; its `Debug` shows only the public key.
pub struct SecretKey(KeyPair<EvenY>);

impl SecretKey {
    /// Parses a 32-byte secret key; rejects zero and values not below the curve order.
    ///
    /// If the key's point has odd y the stored scalar is negated (BIP340), so
    /// [`SecretKey::to_secret_bytes`] may differ from `bytes` while signing identically.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
        let x = Scalar::<Secret, NonZero>::from_bytes(bytes).ok_or(KeyError::InvalidSecretKey)?;
        tally::count(Op::KeyFromSecret);
        Ok(Self(KeyPair::new_xonly(x)))
    }

    /// Takes the secret key of a libsecp256k1 keypair.
    pub fn from_keypair(keypair: &secp256k1::Keypair) -> Self {
        tally::count(Op::KeyFromSecret);
        Self(KeyPair::new_xonly(Scalar::from(keypair.secret_key())))
    }

    /// The libsecp256k1 keypair for the same (even-y normalised) secret key.
    pub fn to_keypair<C: secp256k1::Signing>(
        &self,
        secp: &secp256k1::Secp256k1<C>,
    ) -> secp256k1::Keypair {
        let sk = secp256k1::SecretKey::from(*self.0.secret_key());
        tally::count(Op::KeyToLibsecp);
        secp256k1::Keypair::from_secret_key(secp, &sk)
    }

    /// The 32-byte even-y normalised secret scalar. Handle with care: this is the secret.
    pub fn to_secret_bytes(&self) -> [u8; 32] {
        self.0.secret_key().to_bytes()
    }

    /// The x-only public key X.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.public_key())
    }

    /// Signs a 32-byte message exactly as BIP340 specifies, deriving the nonce from the
    /// key, the message and `aux`.
    ///
    /// `aux` should be 32 fresh random bytes from the caller; reusing or zeroing it keeps the
    /// signature secure (the nonce is still bound to key and message) but gives up BIP340's
    /// protection against side channels. For a nonce committed in advance, use
    /// [`SecretNonce::sign`](crate::crypto::nonce::SecretNonce::sign).
    pub fn sign(&self, m: &[u8; 32], aux: &[u8; 32]) -> Signature {
        tally::count(Op::Sign);
        Signature::from_inner(signer(aux).sign(&self.0, Message::raw(m)))
    }

    pub(crate) fn keypair(&self) -> &KeyPair<EvenY> {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("public_key", &self.public_key())
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// An x-only public key X (BIP340): a curve point with even y, encoded as its 32-byte x.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PublicKey(Point<EvenY>);

impl PublicKey {
    /// Parses a 32-byte x-only key.
    pub fn from_xonly_bytes(x: [u8; 32]) -> Result<Self, KeyError> {
        tally::count(Op::PointDecode);
        Point::from_xonly_bytes(x)
            .map(Self)
            .ok_or(KeyError::InvalidXOnly { x })
    }

    /// The 32-byte x-only encoding.
    pub fn to_xonly_bytes(&self) -> [u8; 32] {
        self.0.to_xonly_bytes()
    }

    /// Checks a BIP340 signature on a raw 32-byte message.
    ///
    /// Everything checked here is public, so it runs on libsecp256k1's variable-time
    /// verifier, which is several times faster than a constant-time one.
    pub fn verify(&self, m: &[u8; 32], signature: &Signature) -> Result<(), KeyError> {
        verify_parsed(&secp256k1::XOnlyPublicKey::from(*self), m, signature)
    }

    pub(crate) fn point(&self) -> &Point<EvenY> {
        &self.0
    }
}

/// [`PublicKey::verify`] with the key already in libsecp256k1's form: for a key that signs
/// often (a channel's two keys), converted once rather than once per signature.
pub(crate) fn verify_parsed(
    key: &secp256k1::XOnlyPublicKey,
    m: &[u8; 32],
    signature: &Signature,
) -> Result<(), KeyError> {
    let sig = secp256k1::schnorr::Signature::from(*signature);
    tally::count(Op::Verify);
    crate::crypto::secp()
        .verify_schnorr(&sig, &secp256k1::Message::from_digest(*m), key)
        .map_err(|_| KeyError::InvalidSignature {
            public_key: key.serialize(),
        })
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.to_xonly_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl From<secp256k1::XOnlyPublicKey> for PublicKey {
    fn from(key: secp256k1::XOnlyPublicKey) -> Self {
        tally::count(Op::PointDecode);
        Self(Point::from(key))
    }
}

impl From<PublicKey> for secp256k1::XOnlyPublicKey {
    /// Through both coordinates, which libsecp256k1 checks against the curve equation: no
    /// square root, unlike a parse of x alone (so not counted as a decoding).
    fn from(key: PublicKey) -> Self {
        secp256k1::PublicKey::from_slice(&key.0.to_bytes_uncompressed())
            .expect("a secp256kfun point is a curve point")
            .x_only_public_key()
            .0
    }
}

/// A BIP340 signature (R, s): 64 bytes, R's x-coordinate then s.
///
/// Held as its encoding: s is checked below the curve order when it is parsed, R's
/// x-coordinate is not lifted to a point. Verification never needs R as a point (it compares
/// the x-coordinate it computes with R's), and a signature whose R is no curve point's x
/// verifies under no key; the adaptor arithmetic that does need R lifts it then
/// ([`Signature::lift`]) and reports an R off the curve. Parsing a signature therefore costs
/// no square root.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; 64]);

impl Signature {
    /// Parses the 64-byte BIP340 encoding; rejects an s not below the curve order. An R that
    /// is no curve point's x is not rejected here: no key verifies such a signature.
    pub fn from_bytes(bytes: [u8; 64]) -> Result<Self, KeyError> {
        let mut s = [0u8; 32];
        s.copy_from_slice(&bytes[32..]);
        match Scalar::<Public, Zero>::from_bytes(s) {
            Some(_) => Ok(Self(bytes)),
            None => Err(KeyError::MalformedSignature { bytes }),
        }
    }

    /// The 64-byte BIP340 encoding.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }

    /// The signature's public nonce R, as its x-coordinate.
    pub fn nonce(&self) -> PublicNonce {
        let mut x = [0u8; 32];
        x.copy_from_slice(&self.0[..32]);
        PublicNonce::from_xonly_bytes(x)
    }

    /// The scalar s, 32 bytes. Revealing it together with an encrypted signature or a price
    /// point is what sells it.
    pub fn s_bytes(&self) -> [u8; 32] {
        let mut s = [0u8; 32];
        s.copy_from_slice(&self.0[32..]);
        s
    }

    /// The scalar s.
    pub(crate) fn s(&self) -> Scalar<Public, Zero> {
        Scalar::from_bytes(self.s_bytes()).expect("checked below the curve order when parsed")
    }

    /// (R, s) from R's x-coordinate and s.
    pub(crate) fn from_parts(R: &PublicNonce, s: &Scalar<Public, Zero>) -> Self {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&R.to_xonly_bytes());
        bytes[32..].copy_from_slice(&s.to_bytes());
        Self(bytes)
    }

    pub(crate) fn from_inner(inner: schnorr_fun::Signature) -> Self {
        Self(inner.to_bytes())
    }

    /// schnorr_fun's form, with R lifted to a point (one square root): `None` when R is no
    /// curve point's x.
    pub(crate) fn lift(&self) -> Option<schnorr_fun::Signature> {
        tally::count(Op::PointDecode);
        schnorr_fun::Signature::from_bytes(self.0)
    }
}

impl Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        crate::crypto::hex_serde::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes: [u8; 64] = crate::crypto::hex_serde::deserialize(deserializer)?;
        Signature::from_bytes(bytes).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.to_bytes()))
    }
}

impl From<Signature> for secp256k1::schnorr::Signature {
    fn from(signature: Signature) -> Self {
        secp256k1::schnorr::Signature::from_slice(&signature.0).expect("64 bytes")
    }
}

impl TryFrom<secp256k1::schnorr::Signature> for Signature {
    type Error = KeyError;

    /// libsecp256k1 accepts any 64 bytes as a signature; this rejects an s not below the
    /// curve order, as [`Signature::from_bytes`] does (an R off the curve verifies under no
    /// key and is refused where it is lifted).
    fn try_from(signature: secp256k1::schnorr::Signature) -> Result<Self, KeyError> {
        Self::from_bytes(signature.serialize())
    }
}

/// Whether libsecp256k1 (not this module) accepts `sig` on `m` under `X`: the tests' referee.
#[cfg(test)]
pub(crate) fn libsecp_verifies(X: &PublicKey, m: &[u8; 32], sig: &Signature) -> bool {
    secp256k1::Secp256k1::verification_only()
        .verify_schnorr(
            &(*sig).into(),
            &secp256k1::Message::from_digest(*m),
            &(*X).into(),
        )
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_secret_keys() {
        assert_eq!(
            SecretKey::from_bytes([0; 32]).err(),
            Some(KeyError::InvalidSecretKey)
        );
        assert_eq!(
            SecretKey::from_bytes([0xff; 32]).err(),
            Some(KeyError::InvalidSecretKey)
        );
    }

    #[test]
    fn odd_key_is_normalised_and_signs_for_libsecp() {
        let secp = secp256k1::Secp256k1::new();
        // Find a small scalar whose point has odd y, so that normalisation negates it.
        let (bytes, sk) = (1u8..=20)
            .map(|i| {
                let mut bytes = [0u8; 32];
                bytes[31] = i;
                let sk = secp256k1::SecretKey::from_slice(&bytes).expect("small nonzero scalar");
                (bytes, sk)
            })
            .find(|(_, sk)| {
                let (_, parity) = sk.x_only_public_key(&secp);
                parity == secp256k1::Parity::Odd
            })
            .expect("about half of all points have odd y");
        let x = SecretKey::from_bytes(bytes).expect("valid scalar");
        assert_ne!(x.to_secret_bytes(), bytes);
        assert_eq!(
            x.public_key(),
            PublicKey::from(sk.x_only_public_key(&secp).0)
        );
        let m = [1u8; 32];
        let sig = x.sign(&m, &[0; 32]);
        assert!(x.public_key().verify(&m, &sig).is_ok());
        assert!(libsecp_verifies(&x.public_key(), &m, &sig));
    }

    #[test]
    fn keypair_round_trip() {
        let secp = secp256k1::Secp256k1::new();
        let x = SecretKey::from_bytes([5; 32]).expect("valid scalar");
        let kp = x.to_keypair(&secp);
        let (xonly, _parity) = kp.x_only_public_key();
        assert_eq!(PublicKey::from(xonly), x.public_key());
        assert_eq!(
            SecretKey::from_keypair(&kp).to_secret_bytes(),
            x.to_secret_bytes()
        );
    }

    #[test]
    fn wrong_message_fails() {
        let x = SecretKey::from_bytes([5; 32]).expect("valid scalar");
        let sig = x.sign(&[1; 32], &[2; 32]);
        assert_eq!(
            x.public_key().verify(&[3; 32], &sig),
            Err(KeyError::InvalidSignature {
                public_key: x.public_key().to_xonly_bytes()
            })
        );
    }

    #[test]
    fn rejects_bad_encodings() {
        // BIP340 test vector 5: not the x-coordinate of any curve point.
        let x: [u8; 32] =
            hex::decode("EEFDEA4CDB677750A420FEE807EACF21EB9898AE79B9768766E4FAA04A2D4A34")
                .expect("hex literal")
                .try_into()
                .expect("32 bytes");
        assert!(matches!(
            PublicKey::from_xonly_bytes(x),
            Err(KeyError::InvalidXOnly { .. })
        ));
        // s not below the curve order: refused when parsed.
        let key = SecretKey::from_bytes([0x11; 32]).expect("valid scalar");
        let good = key.sign(&[5; 32], &[6; 32]).to_bytes();
        let mut s_too_large = good;
        s_too_large[32..].copy_from_slice(&[0xff; 32]);
        assert!(matches!(
            Signature::from_bytes(s_too_large),
            Err(KeyError::MalformedSignature { .. })
        ));
        // R not a curve point's x: parsed as bytes, never lifted, verified by no key.
        let mut r_off_curve = good;
        r_off_curve[..32].copy_from_slice(&x);
        let sig = Signature::from_bytes(r_off_curve).expect("s is in range");
        assert!(sig.lift().is_none());
        assert!(key.public_key().verify(&[5; 32], &sig).is_err());
        assert!(libsecp_verifies(
            &key.public_key(),
            &[5; 32],
            &Signature::from_bytes(good).expect("own")
        ));
        assert!(!libsecp_verifies(&key.public_key(), &[5; 32], &sig));
    }

    /// A signature's nonce is its R's x as sent; the BIP340 challenge hashed from those bytes
    /// is the one secp256kfun hashes from the point.
    #[test]
    fn challenge_from_bytes_is_the_points() {
        let key = SecretKey::from_bytes([0x21; 32]).expect("valid scalar");
        let sig = key.sign(&[9; 32], &[1; 32]);
        let R = sig.nonce().lift().expect("a signature's own R");
        assert_eq!(
            challenge_x(
                &sig.nonce().to_xonly_bytes(),
                key.public_key().point(),
                &[9; 32]
            ),
            challenge(&R, key.public_key().point(), &[9; 32])
        );
        assert_eq!(Signature::from_bytes(sig.to_bytes()), Ok(sig));
    }

    #[test]
    fn debug_is_redacted() {
        let x = SecretKey::from_bytes([0x11; 32]).expect("valid scalar");
        let shown = format!("{x:?}");
        assert!(shown.contains("<redacted>"));
        assert!(!shown.contains(&hex::encode(x.to_secret_bytes())));
    }
}
