//! BIP118 public keys in tapscript and script fragments that check signatures with them.

use bitcoin::opcodes::all::{OP_CHECKSIG, OP_CHECKSIGVERIFY, OP_PUSHNUM_1};
use bitcoin::script::Builder;
use bitcoin::XOnlyPublicKey;

/// The prefix byte of a 33-byte BIP118 public key.
pub const APO_KEY_PREFIX: u8 = 0x01;

/// The 1-byte BIP118 public key that stands for the taproot internal key of the output
/// being spent. In a script it is pushed as `OP_1` (the minimal push of `[0x01]`).
pub const APO_INTERNAL_KEY: [u8; 1] = [APO_KEY_PREFIX];

/// The 33-byte BIP118 encoding `0x01 || x` of an x-only key.
pub fn apo_pubkey_bytes(key: &XOnlyPublicKey) -> [u8; 33] {
    let mut bytes = [0u8; 33];
    bytes[0] = APO_KEY_PREFIX;
    bytes[1..].copy_from_slice(&key.serialize());
    bytes
}

/// A BIP118 public key as it appears in a tapscript.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApoKey {
    /// The single byte `0x01`: the taproot internal key of the output being spent.
    InternalKey,
    /// `0x01 || x`: an explicit x-only key.
    Explicit(XOnlyPublicKey),
}

/// A byte string that is not a usable BIP118 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApoKeyError {
    /// Neither `[0x01]` nor 33 bytes starting with 0x01.
    #[error("not a BIP118 public key: {len} bytes, first byte {first:?}")]
    NotApoKey {
        /// Length of the rejected key.
        len: usize,
        /// Its first byte, if any.
        first: Option<u8>,
    },
    /// A 33-byte BIP118 key whose last 32 bytes are not an x coordinate on the curve.
    #[error("BIP118 public key is not a valid x-only key")]
    InvalidXOnly,
}

impl ApoKey {
    /// Parses a tapscript key push as a BIP118 key.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ApoKeyError> {
        match bytes {
            [APO_KEY_PREFIX] => Ok(ApoKey::InternalKey),
            [APO_KEY_PREFIX, x @ ..] if x.len() == 32 => XOnlyPublicKey::from_slice(x)
                .map(ApoKey::Explicit)
                .map_err(|_| ApoKeyError::InvalidXOnly),
            _ => Err(ApoKeyError::NotApoKey {
                len: bytes.len(),
                first: bytes.first().copied(),
            }),
        }
    }

    /// The key as pushed in a script: `[0x01]` or `0x01 || x`.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            ApoKey::InternalKey => APO_INTERNAL_KEY.to_vec(),
            ApoKey::Explicit(key) => apo_pubkey_bytes(key).to_vec(),
        }
    }

    /// The BIP340 key that verifies signatures for this key, given the taproot internal key
    /// of the output being spent.
    pub fn resolve(&self, internal_key: &XOnlyPublicKey) -> XOnlyPublicKey {
        match self {
            ApoKey::InternalKey => *internal_key,
            ApoKey::Explicit(key) => *key,
        }
    }

    /// The explicit x-only key, or `None` for the internal-key form.
    pub fn explicit(&self) -> Option<XOnlyPublicKey> {
        match self {
            ApoKey::InternalKey => None,
            ApoKey::Explicit(key) => Some(*key),
        }
    }
}

impl From<XOnlyPublicKey> for ApoKey {
    fn from(key: XOnlyPublicKey) -> Self {
        ApoKey::Explicit(key)
    }
}

/// Script building with BIP118 keys.
///
/// ```
/// use asyncpay::crypto::bip118::{ApoKey, ApoScriptExt};
/// use bitcoin::script::Builder;
/// use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
///
/// let secp = Secp256k1::new();
/// let key = |b| Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[b; 32]).unwrap());
/// let (p_a, _) = key(1).x_only_public_key();
/// let (p_s, _) = key(2).x_only_public_key();
/// let update_leaf = Builder::new()
///     .push_apo_checksigverify(&ApoKey::Explicit(p_a))
///     .push_apo_checksig(&ApoKey::Explicit(p_s))
///     .into_script();
/// assert_eq!(update_leaf.len(), 2 * (1 + 33 + 1));
/// ```
pub trait ApoScriptExt: Sized {
    /// Pushes the key: `OP_1` for the internal key, a 33-byte push otherwise.
    fn push_apo_key(self, key: &ApoKey) -> Self;

    /// Appends `<key> OP_CHECKSIG`.
    fn push_apo_checksig(self, key: &ApoKey) -> Self;

    /// Appends `<key> OP_CHECKSIGVERIFY`.
    fn push_apo_checksigverify(self, key: &ApoKey) -> Self;
}

impl ApoScriptExt for Builder {
    fn push_apo_key(self, key: &ApoKey) -> Self {
        match key {
            // Policy (MINIMALDATA) requires `[0x01]` to be pushed as OP_1.
            ApoKey::InternalKey => self.push_opcode(OP_PUSHNUM_1),
            ApoKey::Explicit(key) => self.push_slice(apo_pubkey_bytes(key)),
        }
    }

    fn push_apo_checksig(self, key: &ApoKey) -> Self {
        self.push_apo_key(key).push_opcode(OP_CHECKSIG)
    }

    fn push_apo_checksigverify(self, key: &ApoKey) -> Self {
        self.push_apo_key(key).push_opcode(OP_CHECKSIGVERIFY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::script::Instruction;
    use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};

    fn xonly(byte: u8) -> XOnlyPublicKey {
        let secp = Secp256k1::new();
        let sk = SecretKey::from_slice(&[byte; 32]).expect("valid scalar");
        Keypair::from_secret_key(&secp, &sk).x_only_public_key().0
    }

    #[test]
    fn key_encodings_round_trip() {
        let p = xonly(7);
        let bytes = apo_pubkey_bytes(&p);
        assert_eq!(bytes[0], 0x01);
        assert_eq!(&bytes[1..], &p.serialize());
        assert_eq!(ApoKey::from_slice(&bytes), Ok(ApoKey::Explicit(p)));
        assert_eq!(
            ApoKey::from_slice(&APO_INTERNAL_KEY),
            Ok(ApoKey::InternalKey)
        );
        assert_eq!(ApoKey::Explicit(p).to_bytes(), bytes.to_vec());
        assert_eq!(ApoKey::InternalKey.to_bytes(), vec![0x01]);
        assert_eq!(ApoKey::InternalKey.resolve(&p), p);
        assert_eq!(ApoKey::Explicit(p).resolve(&xonly(8)), p);
    }

    #[test]
    fn non_apo_keys_are_rejected() {
        let p = xonly(7).serialize();
        assert!(matches!(
            ApoKey::from_slice(&p),
            Err(ApoKeyError::NotApoKey { len: 32, .. })
        ));
        let mut wrong_prefix = apo_pubkey_bytes(&xonly(7));
        wrong_prefix[0] = 0x02;
        assert!(ApoKey::from_slice(&wrong_prefix).is_err());
        assert!(ApoKey::from_slice(&[]).is_err());
        assert!(ApoKey::from_slice(&[0x02]).is_err());
        let mut off_curve = [0xffu8; 33];
        off_curve[0] = 0x01;
        assert_eq!(
            ApoKey::from_slice(&off_curve),
            Err(ApoKeyError::InvalidXOnly)
        );
    }

    #[test]
    fn fragments_push_minimally() {
        let p = xonly(3);
        let script = Builder::new()
            .push_apo_checksigverify(&ApoKey::Explicit(p))
            .push_apo_checksig(&ApoKey::InternalKey)
            .into_script();
        let ops: Vec<_> = script
            .instructions_minimal()
            .collect::<Result<_, _>>()
            .expect("minimal pushes");
        assert_eq!(ops.len(), 4);
        assert_eq!(
            ops[0],
            Instruction::PushBytes((&apo_pubkey_bytes(&p)).into())
        );
        assert_eq!(ops[1], Instruction::Op(OP_CHECKSIGVERIFY));
        assert_eq!(ops[2], Instruction::Op(OP_PUSHNUM_1));
        assert_eq!(ops[3], Instruction::Op(OP_CHECKSIG));
    }
}
