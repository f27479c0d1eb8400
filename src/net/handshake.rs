//! The handshake's pieces, without I/O: the Noise session set-up, and the *binding* that
//! ties a finished Noise session to the node keys of its two ends.
//!
//! Noise XX gives both ends an encrypted, integrity-protected channel and a handshake hash
//! `h` that commits to everything either side sent during the handshake. It does not say
//! who the other end is: the Noise static keys are X25519 keys made fresh for every
//! connection. Each end therefore sends, as its first encrypted message, a [`Binding`]: its
//! node key and a BIP340 signature over
//!
//! ```text
//! digest = SHA256(SHA256(tag) ‖ SHA256(tag) ‖ role ‖ h),  tag = "asyncpay/net/node-key-binding"
//! ```
//!
//! where `role` is one byte, 0x00 when the initiator signs and 0x01 when the responder
//! signs. `h` is fresh in every session (both ends contribute ephemeral keys), so a binding
//! cannot be replayed into another session, and the role byte stops a binding from being
//! reflected back to the end that made it.
//!
//! ```
//! use asyncpay::crypto::keys::SecretKey;
//! use asyncpay::net::handshake::{Binding, Role};
//!
//! let node = SecretKey::from_bytes([3u8; 32])?;
//! let h = [9u8; 32]; // the Noise handshake hash of one session
//! let binding = Binding::sign(&node, Role::Initiator, &h, &[1u8; 32]);
//! let received = Binding::parse(&binding.to_bytes())?;
//! assert_eq!(received.verify(Role::Initiator, &h)?, node.public_key());
//! // Neither another session nor the other role accepts it.
//! assert!(received.verify(Role::Initiator, &[8u8; 32]).is_err());
//! assert!(received.verify(Role::Responder, &h).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::crypto::keys::{PublicKey, SecretKey, Signature};
use crate::net::NetError;

/// The Noise protocol name: pattern XX, X25519, ChaCha20-Poly1305, SHA-256.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_SHA256";

/// Mixed into the Noise handshake hash before the first message, so that a peer speaking
/// another protocol or another version of this one fails the handshake.
pub const PROLOGUE: &[u8] = b"asyncpay/net/v1";

/// Tag of the binding signature's tagged hash (BIP340-style tagging).
pub const BINDING_TAG: &[u8] = b"asyncpay/net/node-key-binding";

/// Length of an encoded [`Binding`]: 32-byte x-only key, 64-byte signature.
pub const BINDING_LEN: usize = 32 + 64;

/// Which end of the connection signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end that connected (Noise initiator).
    Initiator,
    /// The end that accepted (Noise responder).
    Responder,
}

impl Role {
    fn byte(self) -> u8 {
        match self {
            Role::Initiator => 0x00,
            Role::Responder => 0x01,
        }
    }
}

/// The 32-byte message a node signs to bind itself, in `role`, to the session whose Noise
/// handshake hash is `handshake_hash`.
pub fn binding_digest(role: Role, handshake_hash: &[u8]) -> [u8; 32] {
    let tag = Sha256::digest(BINDING_TAG);
    Sha256::new()
        .chain_update(tag)
        .chain_update(tag)
        .chain_update([role.byte()])
        .chain_update(handshake_hash)
        .finalize()
        .into()
}

/// A node key and its signature over one session's [`binding_digest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// The node key the sender claims.
    pub key: PublicKey,
    /// The sender's signature over the binding digest.
    pub signature: Signature,
}

impl Binding {
    /// Signs the binding for `role` in the session with handshake hash `handshake_hash`.
    /// `aux` is fresh randomness for BIP340's nonce derivation.
    pub fn sign(key: &SecretKey, role: Role, handshake_hash: &[u8], aux: &[u8; 32]) -> Self {
        Self {
            key: key.public_key(),
            signature: key.sign(&binding_digest(role, handshake_hash), aux),
        }
    }

    /// The 96-byte encoding: x-only key, then signature.
    pub fn to_bytes(&self) -> [u8; BINDING_LEN] {
        let mut out = [0u8; BINDING_LEN];
        out[..32].copy_from_slice(&self.key.to_xonly_bytes());
        out[32..].copy_from_slice(&self.signature.to_bytes());
        out
    }

    /// Parses the 96-byte encoding; does not check the signature.
    pub fn parse(bytes: &[u8]) -> Result<Self, NetError> {
        let Ok(bytes) = <&[u8; BINDING_LEN]>::try_from(bytes) else {
            return Err(NetError::MalformedBinding { len: bytes.len() });
        };
        let (key, signature) = bytes.split_at(32);
        let key = PublicKey::from_xonly_bytes(key.try_into().expect("split at 32"))
            .map_err(|e| NetError::InvalidPeerKey(Box::new(e)))?;
        let signature = Signature::from_bytes(signature.try_into().expect("64 bytes remain"))
            .map_err(|e| NetError::InvalidPeerKey(Box::new(e)))?;
        Ok(Self { key, signature })
    }

    /// Checks the signature for `role` in the session with handshake hash `handshake_hash`;
    /// returns the now proven node key.
    pub fn verify(&self, role: Role, handshake_hash: &[u8]) -> Result<PublicKey, NetError> {
        self.key
            .verify(&binding_digest(role, handshake_hash), &self.signature)
            .map_err(|_| NetError::BadBindingSignature {
                claimed: Box::new(self.key),
            })?;
        Ok(self.key)
    }
}

/// Starts a Noise XX handshake with a throwaway static key (node identity comes from the
/// binding, not from the Noise static key).
pub(crate) fn noise_handshake(role: Role) -> Result<snow::HandshakeState, NetError> {
    let params = NOISE_PARAMS
        .parse()
        .expect("the protocol name is a supported constant");
    let builder = snow::Builder::new(params);
    let mut static_key = builder.generate_keypair().map_err(NetError::Noise)?;
    let builder = builder
        .local_private_key(&static_key.private)
        .and_then(|b| b.prologue(PROLOGUE));
    let state = builder.and_then(|b| match role {
        Role::Initiator => b.build_initiator(),
        Role::Responder => b.build_responder(),
    });
    static_key.private.zeroize();
    state.map_err(NetError::Noise)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes([byte; 32]).expect("valid scalar")
    }

    #[test]
    fn digest_is_the_tagged_hash_of_role_and_hash() {
        let h = [0x42u8; 32];
        let tag = Sha256::digest(b"asyncpay/net/node-key-binding");
        let mut preimage = Vec::new();
        preimage.extend_from_slice(&tag);
        preimage.extend_from_slice(&tag);
        preimage.push(1);
        preimage.extend_from_slice(&h);
        let expected: [u8; 32] = Sha256::digest(&preimage).into();
        assert_eq!(binding_digest(Role::Responder, &h), expected);
        assert_ne!(
            binding_digest(Role::Initiator, &h),
            binding_digest(Role::Responder, &h)
        );
    }

    #[test]
    fn binding_is_refused_for_another_key_session_or_role() {
        let h = [5u8; 32];
        let honest = Binding::sign(&key(1), Role::Initiator, &h, &[0; 32]);
        assert_eq!(
            Binding::parse(&honest.to_bytes())
                .unwrap()
                .verify(Role::Initiator, &h)
                .unwrap(),
            key(1).public_key()
        );
        // Claims key 2 but signs with key 1: impersonation.
        let forged = Binding {
            key: key(2).public_key(),
            signature: honest.signature,
        };
        assert!(matches!(
            forged.verify(Role::Initiator, &h),
            Err(NetError::BadBindingSignature { claimed }) if *claimed == key(2).public_key()
        ));
        assert!(honest.verify(Role::Initiator, &[6u8; 32]).is_err());
        assert!(honest.verify(Role::Responder, &h).is_err());
    }

    #[test]
    fn malformed_bindings_are_typed_errors() {
        assert!(matches!(
            Binding::parse(&[0u8; 95]),
            Err(NetError::MalformedBinding { len: 95 })
        ));
        // An x-coordinate that is not on the curve (BIP340 test vector 5's key).
        let mut bytes = [0u8; BINDING_LEN];
        bytes[..32].copy_from_slice(
            &hex::decode("EEFDEA4CDB677750A420FEE807EACF21EB9898AE79B9768766E4FAA04A2D4A34")
                .unwrap(),
        );
        assert!(matches!(
            Binding::parse(&bytes),
            Err(NetError::InvalidPeerKey(_))
        ));
        let mut bytes = Binding::sign(&key(1), Role::Initiator, &[0; 32], &[0; 32]).to_bytes();
        bytes[64..].copy_from_slice(&[0xff; 32]); // s not below the curve order
        assert!(matches!(
            Binding::parse(&bytes),
            Err(NetError::InvalidPeerKey(_))
        ));
    }

    #[test]
    fn noise_sessions_agree_on_the_handshake_hash() {
        let mut i = noise_handshake(Role::Initiator).unwrap();
        let mut r = noise_handshake(Role::Responder).unwrap();
        let (mut a, mut b) = ([0u8; 256], [0u8; 256]);
        let n = i.write_message(&[], &mut a).unwrap();
        assert_eq!(n, 32);
        r.read_message(&a[..n], &mut b).unwrap();
        let n = r.write_message(&[], &mut a).unwrap();
        assert_eq!(n, 96);
        i.read_message(&a[..n], &mut b).unwrap();
        let n = i.write_message(&[], &mut a).unwrap();
        assert_eq!(n, 64);
        r.read_message(&a[..n], &mut b).unwrap();
        assert!(i.is_handshake_finished() && r.is_handshake_finished());
        assert_eq!(i.get_handshake_hash(), r.get_handshake_hash());
        assert_eq!(i.get_handshake_hash().len(), 32);
    }
}
