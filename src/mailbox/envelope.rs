//! Envelope format, version 1: encoding, decoding, sealing and opening (pure functions).
//!
//! An envelope has two layers. The *outer* envelope is what the server sees and stores: the
//! recipient's node key (which names the mailbox), a sender-chosen envelope id, an expiry
//! and an age ciphertext, optionally followed by a *stamp* (sender node key and BIP340
//! signature over the outer bytes) that lets the server rate-limit per sender. The *inner*
//! letter is the age plaintext: it repeats the recipient key and the envelope id (so a
//! server or eavesdropper cannot re-wrap a letter for another mailbox or id), carries the
//! creation time and the payload, and may be signed by the sender's node key so the
//! recipient knows who wrote it.
//!
//! All integers are big-endian. Keys are 32-byte BIP340 x-only keys, signatures 64-byte
//! BIP340 signatures, `tagged_hash(tag, m) = SHA256(SHA256(tag) ‖ SHA256(tag) ‖ m)`.
//!
//! ```text
//! outer envelope v1                         inner letter v1 (age plaintext)
//! off  len  field                           off  len  field
//! 0    4    magic "APMB"                    0    4    magic "APMI"
//! 4    1    version = 1                     4    1    version = 1
//! 5    1    flags: bit 0 = stamped          5    1    flags: bit 0 = signed
//! 6    32   recipient node key              6    32   recipient node key
//! 38   16   envelope id                     38   16   envelope id
//! 54   8    expires_at (unix s)             54   8    created_at (unix s)
//! 62   4    n = ciphertext length           62   4    m = payload length
//! 66   n    age ciphertext (binary v1)      66   m    payload
//! if stamped:                               if signed:
//! 66+n 32   sender node key                 66+m 32   sender node key
//! 98+n 64   sig over tagged_hash(           98+m 64   sig over tagged_hash(
//!             "asyncpay/mailbox/v1/stamp",              "asyncpay/mailbox/v1/letter",
//!             bytes[0..98+n])                           bytes[0..98+m])
//! ```
//!
//! Unknown flag bits and trailing bytes are rejected; a known magic with another version
//! byte is reported as [`EnvelopeError::UnknownVersion`].
//!
//! ```
//! use asyncpay::mailbox::envelope::{seal, Envelope, EnvelopeId, Letter};
//! use asyncpay::mailbox::keys::NodeKey;
//!
//! let payer = NodeKey::from_secret_bytes([1u8; 32]).unwrap();
//! let payee = NodeKey::from_secret_bytes([2u8; 32]).unwrap();
//! let letter = Letter {
//!     recipient: payee.public(),
//!     id: EnvelopeId([9u8; 16]),
//!     created_at: 1_700_000_000,
//!     payload: b"pre-signed update".to_vec(),
//! };
//! let envelope = seal(&letter, &payee.age_recipient(), 1_700_086_400, Some(&payer), true).unwrap();
//! let wire = envelope.encode();
//! let opened = Envelope::decode(&wire).unwrap().open(&payee).unwrap();
//! assert_eq!(opened.payload, b"pre-signed update");
//! assert_eq!(opened.sender, Some(payer.public()));
//! ```
use std::fmt;
use std::str::FromStr;

use bitcoin::secp256k1::{schnorr, XOnlyPublicKey};
use sha2::{Digest, Sha256};

use super::keys::{verify_digest, NodeKey, VerifiedContact};
use crate::crypto::tagged_hash;

/// Magic bytes of the outer envelope.
pub const OUTER_MAGIC: [u8; 4] = *b"APMB";
/// Magic bytes of the inner letter.
pub const INNER_MAGIC: [u8; 4] = *b"APMI";
/// The envelope version this module reads and writes.
pub const VERSION: u8 = 1;
/// Tag of the stamp signature hash.
pub const STAMP_TAG: &str = "asyncpay/mailbox/v1/stamp";
/// Tag of the letter signature hash.
pub const LETTER_TAG: &str = "asyncpay/mailbox/v1/letter";
/// Bytes of fixed header before the ciphertext or payload.
pub const HEADER_LEN: usize = 66;
/// Bytes a stamp or letter signature adds (key + signature).
pub const SIGNATURE_BLOCK_LEN: usize = 32 + 64;

const FLAG_SIGNED: u8 = 0x01;

/// Errors from encoding, decoding, sealing and opening envelopes.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Input is shorter than the format requires.
    #[error("truncated {layer}: need {needed} bytes, have {have}")]
    Truncated {
        /// `"envelope"` or `"letter"`.
        layer: &'static str,
        /// Bytes required.
        needed: usize,
        /// Bytes present.
        have: usize,
    },
    /// The magic bytes are wrong.
    #[error("bad magic in {0}")]
    BadMagic(&'static str),
    /// A known format with a version this code does not understand.
    #[error("unknown {layer} version {version}")]
    UnknownVersion {
        /// `"envelope"` or `"letter"`.
        layer: &'static str,
        /// The version byte found.
        version: u8,
    },
    /// Flag bits this version does not define.
    #[error("unknown flags {flags:#04x} in {layer}")]
    UnknownFlags {
        /// `"envelope"` or `"letter"`.
        layer: &'static str,
        /// The flags byte found.
        flags: u8,
    },
    /// Bytes follow the last field.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// A 32-byte field is not a valid x-only key.
    #[error("invalid public key in {0}")]
    InvalidKey(&'static str),
    /// The stamp signature does not verify.
    #[error("stamp signature does not verify")]
    BadStamp,
    /// The letter signature does not verify.
    #[error("letter signature does not verify")]
    BadSignature,
    /// age encryption failed.
    #[error("age encryption failed: {0}")]
    Encrypt(#[from] age::EncryptError),
    /// age decryption failed: wrong key or tampered ciphertext.
    #[error("age decryption failed: {0}")]
    Decrypt(#[from] age::DecryptError),
    /// The letter names another recipient or envelope id than its envelope.
    #[error("letter does not match its envelope ({0} differs)")]
    Mismatch(&'static str),
    /// A length does not fit the format's u32 field.
    #[error("{0} too long for the format")]
    TooLong(&'static str),
}

/// Sender-chosen 16-byte envelope id; posting the same id twice is idempotent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvelopeId(pub [u8; 16]);

impl EnvelopeId {
    /// A fresh random id.
    pub fn random() -> Self {
        EnvelopeId(rand::random())
    }
}

impl fmt::Display for EnvelopeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for EnvelopeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EnvelopeId({self})")
    }
}

/// Error parsing an [`EnvelopeId`] from hex.
#[derive(Debug, thiserror::Error)]
#[error("envelope id must be 32 hex characters")]
pub struct ParseIdError;

impl FromStr for EnvelopeId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseIdError)?;
        Ok(EnvelopeId(out))
    }
}

/// The plaintext a sender hands to [`seal`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Letter {
    /// The recipient's node key.
    pub recipient: XOnlyPublicKey,
    /// Envelope id (repeated inside so it cannot be swapped).
    pub id: EnvelopeId,
    /// Creation time, unix seconds.
    pub created_at: u64,
    /// Application payload (opaque to the mailbox).
    pub payload: Vec<u8>,
}

/// Sender identification on the outer envelope, checked by the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The sender's node key.
    pub sender: XOnlyPublicKey,
    /// BIP340 signature over the stamp hash.
    pub signature: schnorr::Signature,
}

/// An outer envelope: what travels to and rests on the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The recipient's node key (names the mailbox).
    pub recipient: XOnlyPublicKey,
    /// Sender-chosen id.
    pub id: EnvelopeId,
    /// Expiry, unix seconds; the server may shorten but never extends it.
    pub expires_at: u64,
    /// age v1 binary ciphertext of the encoded [`Letter`].
    pub ciphertext: Vec<u8>,
    /// Optional sender stamp.
    pub stamp: Option<Stamp>,
}

/// A letter after decryption and verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// Envelope id.
    pub id: EnvelopeId,
    /// Creation time claimed by the sender.
    pub created_at: u64,
    /// The payload.
    pub payload: Vec<u8>,
    /// The verified signer, if the letter was signed.
    pub sender: Option<XOnlyPublicKey>,
}

fn header(magic: [u8; 4], flags: u8, key: &XOnlyPublicKey, id: &EnvelopeId, time: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(&magic);
    out.push(VERSION);
    out.push(flags);
    out.extend_from_slice(&key.serialize());
    out.extend_from_slice(&id.0);
    out.extend_from_slice(&time.to_be_bytes());
    out
}

/// Encodes a letter as the inner plaintext, signing it with `sender` if given.
pub fn encode_letter(letter: &Letter, sender: Option<&NodeKey>) -> Result<Vec<u8>, EnvelopeError> {
    let len = u32::try_from(letter.payload.len()).map_err(|_| EnvelopeError::TooLong("payload"))?;
    let flags = if sender.is_some() { FLAG_SIGNED } else { 0 };
    let mut out = header(
        INNER_MAGIC,
        flags,
        &letter.recipient,
        &letter.id,
        letter.created_at,
    );
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&letter.payload);
    if let Some(key) = sender {
        out.extend_from_slice(&key.public().serialize());
        let sig = key.sign_digest(tagged_hash(LETTER_TAG, &[&out]));
        out.extend_from_slice(&sig.serialize());
    }
    Ok(out)
}

/// Parsed fixed header shared by both layers.
struct Parsed<'a> {
    flags: u8,
    key: XOnlyPublicKey,
    id: EnvelopeId,
    time: u64,
    body: &'a [u8],
    /// Bytes from the start up to the end of the body (what a signature covers, before the key).
    signed_prefix_len: usize,
    rest: &'a [u8],
}

fn parse_layer<'a>(
    bytes: &'a [u8],
    magic: [u8; 4],
    layer: &'static str,
) -> Result<Parsed<'a>, EnvelopeError> {
    let truncated = |needed| EnvelopeError::Truncated {
        layer,
        needed,
        have: bytes.len(),
    };
    if bytes.len() < 5 {
        return Err(truncated(HEADER_LEN));
    }
    if bytes[..4] != magic {
        return Err(EnvelopeError::BadMagic(layer));
    }
    if bytes[4] != VERSION {
        return Err(EnvelopeError::UnknownVersion {
            layer,
            version: bytes[4],
        });
    }
    if bytes.len() < HEADER_LEN {
        return Err(truncated(HEADER_LEN));
    }
    let flags = bytes[5];
    if flags & !FLAG_SIGNED != 0 {
        return Err(EnvelopeError::UnknownFlags { layer, flags });
    }
    let key =
        XOnlyPublicKey::from_slice(&bytes[6..38]).map_err(|_| EnvelopeError::InvalidKey(layer))?;
    let id = EnvelopeId(bytes[38..54].try_into().expect("16-byte slice"));
    let time = u64::from_be_bytes(bytes[54..62].try_into().expect("8-byte slice"));
    let len = u32::from_be_bytes(bytes[62..66].try_into().expect("4-byte slice")) as usize;
    let end = HEADER_LEN
        .checked_add(len)
        .ok_or(EnvelopeError::TooLong(layer))?;
    if bytes.len() < end {
        return Err(truncated(end));
    }
    Ok(Parsed {
        flags,
        key,
        id,
        time,
        body: &bytes[HEADER_LEN..end],
        signed_prefix_len: end,
        rest: &bytes[end..],
    })
}

/// Reads the optional signature block after the body and checks it.
fn parse_signature_block(
    bytes: &[u8],
    parsed: &Parsed<'_>,
    tag: &str,
) -> Result<Option<(XOnlyPublicKey, schnorr::Signature)>, EnvelopeError> {
    if parsed.flags & FLAG_SIGNED == 0 {
        if !parsed.rest.is_empty() {
            return Err(EnvelopeError::TrailingBytes(parsed.rest.len()));
        }
        return Ok(None);
    }
    let rest = parsed.rest;
    if rest.len() < SIGNATURE_BLOCK_LEN {
        return Err(EnvelopeError::Truncated {
            layer: if tag == STAMP_TAG {
                "envelope"
            } else {
                "letter"
            },
            needed: parsed.signed_prefix_len + SIGNATURE_BLOCK_LEN,
            have: bytes.len(),
        });
    }
    if rest.len() > SIGNATURE_BLOCK_LEN {
        return Err(EnvelopeError::TrailingBytes(
            rest.len() - SIGNATURE_BLOCK_LEN,
        ));
    }
    let key =
        XOnlyPublicKey::from_slice(&rest[..32]).map_err(|_| EnvelopeError::InvalidKey("signer"))?;
    let sig =
        schnorr::Signature::from_slice(&rest[32..]).map_err(|_| EnvelopeError::BadSignature)?;
    let covered = &bytes[..parsed.signed_prefix_len + 32];
    if !verify_digest(&key, tagged_hash(tag, &[covered]), &sig) {
        return Err(if tag == STAMP_TAG {
            EnvelopeError::BadStamp
        } else {
            EnvelopeError::BadSignature
        });
    }
    Ok(Some((key, sig)))
}

/// Decodes and verifies an inner letter, returning it with its verified signer.
pub fn decode_letter(bytes: &[u8]) -> Result<(Letter, Option<XOnlyPublicKey>), EnvelopeError> {
    let parsed = parse_layer(bytes, INNER_MAGIC, "letter")?;
    let signer = parse_signature_block(bytes, &parsed, LETTER_TAG)?.map(|(k, _)| k);
    Ok((
        Letter {
            recipient: parsed.key,
            id: parsed.id,
            created_at: parsed.time,
            payload: parsed.body.to_vec(),
        },
        signer,
    ))
}

/// Encrypts a letter to the recipient's age key and wraps it in an outer envelope.
///
/// `sender`, if given, signs the letter; `stamp` additionally stamps the outer envelope with
/// the same key (revealing the sender's node key to the server, which uses it for per-sender
/// rate limits).
pub fn seal(
    letter: &Letter,
    to: &age::x25519::Recipient,
    expires_at: u64,
    sender: Option<&NodeKey>,
    stamp: bool,
) -> Result<Envelope, EnvelopeError> {
    let plaintext = zeroize::Zeroizing::new(encode_letter(letter, sender)?);
    let ciphertext = age::encrypt(to, &plaintext)?;
    let mut envelope = Envelope {
        recipient: letter.recipient,
        id: letter.id,
        expires_at,
        ciphertext,
        stamp: None,
    };
    if let (true, Some(key)) = (stamp, sender) {
        let mut prefix = envelope.unsigned_bytes(true)?;
        prefix.extend_from_slice(&key.public().serialize());
        let signature = key.sign_digest(tagged_hash(STAMP_TAG, &[&prefix]));
        envelope.stamp = Some(Stamp {
            sender: key.public(),
            signature,
        });
    }
    Ok(envelope)
}

/// `payload` as a letter to the node of contact `to`, created `now` (unix seconds) with id
/// `id`, sealed to its age recipient, signed by `from` if given (and the envelope stamped
/// with it if `stamp`), expiring `ttl_secs` later: what the mailbox client posts and what a
/// payer hands over at a counter.
pub fn seal_for(
    to: &VerifiedContact,
    from: Option<&NodeKey>,
    id: EnvelopeId,
    payload: Vec<u8>,
    now: u64,
    ttl_secs: u64,
    stamp: bool,
) -> Result<Envelope, EnvelopeError> {
    let letter = Letter {
        recipient: to.node_key,
        id,
        created_at: now,
        payload,
    };
    seal(
        &letter,
        &to.age_recipient,
        now.saturating_add(ttl_secs),
        from,
        stamp,
    )
}

impl Envelope {
    fn unsigned_bytes(&self, stamped: bool) -> Result<Vec<u8>, EnvelopeError> {
        let len = u32::try_from(self.ciphertext.len())
            .map_err(|_| EnvelopeError::TooLong("ciphertext"))?;
        let flags = if stamped { FLAG_SIGNED } else { 0 };
        let mut out = header(
            OUTER_MAGIC,
            flags,
            &self.recipient,
            &self.id,
            self.expires_at,
        );
        out.reserve(4 + self.ciphertext.len() + SIGNATURE_BLOCK_LEN);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.ciphertext);
        Ok(out)
    }

    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self
            .unsigned_bytes(self.stamp.is_some())
            .expect("a decoded or sealed envelope fits the u32 length field");
        if let Some(stamp) = &self.stamp {
            out.extend_from_slice(&stamp.sender.serialize());
            out.extend_from_slice(&stamp.signature.serialize());
        }
        out
    }

    /// Decodes an outer envelope and verifies its stamp, if any.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let parsed = parse_layer(bytes, OUTER_MAGIC, "envelope")?;
        let stamp = parse_signature_block(bytes, &parsed, STAMP_TAG)?
            .map(|(sender, signature)| Stamp { sender, signature });
        Ok(Envelope {
            recipient: parsed.key,
            id: parsed.id,
            expires_at: parsed.time,
            ciphertext: parsed.body.to_vec(),
            stamp,
        })
    }

    /// SHA256 of the wire encoding: two posts with one id are the same post iff this matches.
    pub fn content_digest(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }

    /// Decrypts with the recipient's key and checks the letter against this envelope.
    pub fn open(&self, key: &NodeKey) -> Result<Opened, EnvelopeError> {
        if key.public() != self.recipient {
            return Err(EnvelopeError::Mismatch("recipient"));
        }
        let plaintext =
            zeroize::Zeroizing::new(age::decrypt(key.age_identity(), &self.ciphertext)?);
        let (letter, sender) = decode_letter(&plaintext)?;
        if letter.recipient != self.recipient {
            return Err(EnvelopeError::Mismatch("recipient"));
        }
        if letter.id != self.id {
            return Err(EnvelopeError::Mismatch("envelope id"));
        }
        Ok(Opened {
            id: letter.id,
            created_at: letter.created_at,
            payload: letter.payload,
            sender,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (NodeKey, NodeKey) {
        (
            NodeKey::from_secret_bytes([1u8; 32]).unwrap(),
            NodeKey::from_secret_bytes([2u8; 32]).unwrap(),
        )
    }

    fn letter(to: &NodeKey) -> Letter {
        Letter {
            recipient: to.public(),
            id: EnvelopeId([5u8; 16]),
            created_at: 10,
            payload: b"hello".to_vec(),
        }
    }

    #[test]
    fn round_trip_signed_and_stamped() {
        let (a, b) = keys();
        let env = seal(&letter(&b), &b.age_recipient(), 99, Some(&a), true).unwrap();
        let wire = env.encode();
        let back = Envelope::decode(&wire).unwrap();
        assert_eq!(back, env);
        assert_eq!(back.stamp.unwrap().sender, a.public());
        let opened = back.open(&b).unwrap();
        assert_eq!(opened.payload, b"hello");
        assert_eq!(opened.sender, Some(a.public()));
    }

    #[test]
    fn anonymous_round_trip() {
        let (_, b) = keys();
        let env = seal(&letter(&b), &b.age_recipient(), 99, None, true).unwrap();
        assert!(env.stamp.is_none());
        let opened = Envelope::decode(&env.encode()).unwrap().open(&b).unwrap();
        assert_eq!(opened.sender, None);
    }

    #[test]
    fn version_and_magic_and_trailing_are_checked() {
        let (a, b) = keys();
        let mut wire = seal(&letter(&b), &b.age_recipient(), 99, Some(&a), false)
            .unwrap()
            .encode();
        let mut v2 = wire.clone();
        v2[4] = 2;
        assert!(matches!(
            Envelope::decode(&v2),
            Err(EnvelopeError::UnknownVersion { version: 2, .. })
        ));
        let mut bad = wire.clone();
        bad[0] = b'X';
        assert!(matches!(
            Envelope::decode(&bad),
            Err(EnvelopeError::BadMagic(_))
        ));
        wire.push(0);
        assert!(matches!(
            Envelope::decode(&wire),
            Err(EnvelopeError::TrailingBytes(1))
        ));
        assert!(matches!(
            Envelope::decode(&wire[..20]),
            Err(EnvelopeError::Truncated { .. })
        ));
    }

    #[test]
    fn tampered_stamp_region_fails() {
        let (a, b) = keys();
        let wire = seal(&letter(&b), &b.age_recipient(), 99, Some(&a), true)
            .unwrap()
            .encode();
        let mut bad = wire.clone();
        bad[54] ^= 1; // expiry byte
        assert!(matches!(
            Envelope::decode(&bad),
            Err(EnvelopeError::BadStamp)
        ));
    }

    #[test]
    fn tampered_ciphertext_and_wrong_key_fail_to_open() {
        let (a, b) = keys();
        let mut env = seal(&letter(&b), &b.age_recipient(), 99, Some(&a), false).unwrap();
        assert!(matches!(env.open(&a), Err(EnvelopeError::Mismatch(_))));
        let last = env.ciphertext.len() - 1;
        env.ciphertext[last] ^= 0x80;
        assert!(matches!(env.open(&b), Err(EnvelopeError::Decrypt(_))));
    }

    #[test]
    fn letter_for_another_id_is_rejected() {
        let (a, b) = keys();
        let mut env = seal(&letter(&b), &b.age_recipient(), 99, Some(&a), false).unwrap();
        env.id = EnvelopeId([6u8; 16]);
        assert!(matches!(
            env.open(&b),
            Err(EnvelopeError::Mismatch("envelope id"))
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn encode_decode_round_trip(
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
            id in proptest::prelude::any::<[u8; 16]>(),
            created_at in proptest::prelude::any::<u64>(),
            expires_at in proptest::prelude::any::<u64>(),
            signed in proptest::prelude::any::<bool>(),
        ) {
            let (a, b) = keys();
            let letter = Letter { recipient: b.public(), id: EnvelopeId(id), created_at, payload };
            let sender = if signed { Some(&a) } else { None };
            let env = seal(&letter, &b.age_recipient(), expires_at, sender, signed).unwrap();
            let back = Envelope::decode(&env.encode()).unwrap();
            proptest::prop_assert_eq!(&back, &env);
            let opened = back.open(&b).unwrap();
            proptest::prop_assert_eq!(opened.payload, letter.payload);
            proptest::prop_assert_eq!(opened.created_at, created_at);
            proptest::prop_assert_eq!(opened.sender, sender.map(NodeKey::public));
        }

        #[test]
        fn mutated_envelopes_never_panic_and_never_open_wrongly(
            index in proptest::prelude::any::<proptest::sample::Index>(),
            flip in 1u8..=255,
            cut in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            let (a, b) = keys();
            let wire = seal(&letter(&b), &b.age_recipient(), 99, Some(&a), true).unwrap().encode();
            let mut bad = wire.clone();
            let i = index.index(bad.len());
            bad[i] ^= flip;
            // Every single-byte change is caught: by the stamp, the parser or age.
            let result = Envelope::decode(&bad).and_then(|e| e.open(&b));
            proptest::prop_assert!(result.is_err());
            let truncated = &wire[..cut.index(wire.len())];
            proptest::prop_assert!(Envelope::decode(truncated).is_err());
            let _ = decode_letter(&bad);
        }
    }

    #[test]
    fn forged_letter_signature_fails() {
        let (a, b) = keys();
        let mut bytes = encode_letter(&letter(&b), Some(&a)).unwrap();
        bytes[HEADER_LEN] ^= 1;
        assert!(matches!(
            decode_letter(&bytes),
            Err(EnvelopeError::BadSignature)
        ));
    }
}
