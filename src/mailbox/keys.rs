//! Node keys, the age identity derived from them, and signed contacts.
//!
//! One 32-byte seed serves both purposes: it is the BIP340 secret of the *node key* (the
//! x-only public key that names a mailbox and signs requests and payloads) and, through a
//! tagged hash, the seed of an age X25519 identity that envelopes are encrypted to.
//!
//! ```
//! use asyncpay::mailbox::keys::{Contact, NodeKey};
//!
//! let payee = NodeKey::from_secret_bytes([7u8; 32]).unwrap();
//! let contact = Contact::sign(&payee, "http://127.0.0.1:8080", 1_700_000_000);
//! let checked = contact.verify().unwrap();
//! assert_eq!(checked.node_key, payee.public());
//! assert_eq!(checked.age_recipient.to_string(), payee.age_recipient().to_string());
//! ```
use std::fmt;
use std::str::FromStr;

use std::sync::OnceLock;

use bitcoin::secp256k1::{schnorr, All, Keypair, Message, Secp256k1, XOnlyPublicKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::keys::PublicKey;
use crate::crypto::receipt::ReceiptCard;
use crate::crypto::tagged_hash;
use crate::protocol::payment::{ProofError, ProofOfPayment};

/// Tag of the hash that turns a node secret into an age X25519 secret.
pub const AGE_DERIVATION_TAG: &str = "asyncpay/mailbox/v1/age-identity";
/// Tag of the hash signed in a [`Contact`].
pub const CONTACT_TAG: &str = "asyncpay/mailbox/v1/contact";

/// Errors raised while loading or checking keys and contacts.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The secret is zero or not below the curve order.
    #[error("node secret is not a valid secp256k1 scalar")]
    InvalidSecret,
    /// A key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A key file does not hold 64 hex characters.
    #[error("key file {path} does not hold a 32-byte hex secret")]
    BadKeyFile {
        /// The file involved.
        path: String,
    },
    /// A public key is not a valid x-only key.
    #[error("invalid x-only public key {0:?}")]
    InvalidPublicKey(String),
    /// An age recipient string does not parse.
    #[error("invalid age recipient {0:?}")]
    InvalidAgeRecipient(String),
    /// A contact signature does not verify.
    #[error("contact signature does not verify for node key {0}")]
    BadContactSignature(XOnlyPublicKey),
    /// A contact card of a version this build does not read, or whose version does not match
    /// its fields (version 1 lists no receipt slots, version 2 does).
    #[error("contact card version {0} is unknown or does not match its fields")]
    ContactVersion(u8),
    /// A contact signature is not 64 hex-encoded bytes.
    #[error("contact signature is malformed")]
    MalformedSignature,
    /// A static offer's description longer than [`MAX_DESCRIPTION_LEN`] bytes.
    #[error("offer description of {0} bytes exceeds {MAX_DESCRIPTION_LEN}")]
    DescriptionTooLong(usize),
}

/// Why a payer does not pay a static offer (a contact card of version 3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// The offer's expiry has passed.
    #[error("the payee's offer expired at unix time {expires_at}, now {now}")]
    Expired {
        /// The offer's last second.
        expires_at: u64,
        /// The payer's clock.
        now: u64,
    },
    /// The offer names an amount and the payment is for another.
    #[error("the payee's offer asks {offered} sat, the payment is for {asked} sat")]
    Amount {
        /// What the offer asks.
        offered: u64,
        /// What the payer would pay.
        asked: u64,
    },
    /// The offer names the LSPs that may buy for the payee, and the payer's is not one.
    #[error("the payee sells only to LSP {allowed}, not to {lsp}")]
    Lsp {
        /// The LSP the offer names (hex).
        allowed: String,
        /// The payer's LSP (hex).
        lsp: String,
    },
}

/// The longest description a static offer may carry, in bytes (it becomes the sale
/// letter's note, which the receipt signs).
pub const MAX_DESCRIPTION_LEN: usize = 512;

/// What a contact card of version 3 adds: a static offer in BOLT 12's sense, which the payee
/// leaves behind (on a web page, a QR code at a till) and which any payer may pay while the
/// payee is offline. Every field is optional and signed with the card.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticOffer {
    /// The amount asked, in sat; a payer pays exactly this. `None`: any amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_sat: Option<u64>,
    /// What is sold; the payer's letter carries it as its note, so the proof of payment
    /// names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The last unix second at which a payer may pay it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// The LSP (hex x-only node key) that may buy the payee's signature: the one the payee
    /// has a channel with. A payer through another LSP is refused before it pays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsp: Option<String>,
}

impl StaticOffer {
    fn digest_bytes(&self) -> Result<Vec<u8>, KeyError> {
        let mut out = vec![];
        match self.amount_sat {
            Some(a) => {
                out.push(1);
                out.extend_from_slice(&a.to_be_bytes());
            }
            None => out.push(0),
        }
        let description = self.description.as_deref().unwrap_or("");
        if description.len() > MAX_DESCRIPTION_LEN {
            return Err(KeyError::DescriptionTooLong(description.len()));
        }
        out.push(u8::from(self.description.is_some()));
        out.extend_from_slice(&(description.len() as u32).to_be_bytes());
        out.extend_from_slice(description.as_bytes());
        match self.expires_at {
            Some(t) => {
                out.push(1);
                out.extend_from_slice(&t.to_be_bytes());
            }
            None => out.push(0),
        }
        match &self.lsp {
            Some(lsp) => {
                out.push(1);
                out.extend_from_slice(&parse_node_key(lsp)?.serialize());
            }
            None => out.push(0),
        }
        Ok(out)
    }

    /// Whether a payment of `amount_sat` through `lsp` at unix time `now` may pay this
    /// offer.
    pub fn check(&self, amount_sat: u64, lsp: &PublicKey, now: u64) -> Result<(), OfferError> {
        if let Some(expires_at) = self.expires_at {
            if now > expires_at {
                return Err(OfferError::Expired { expires_at, now });
            }
        }
        if let Some(offered) = self.amount_sat {
            if offered != amount_sat {
                return Err(OfferError::Amount {
                    offered,
                    asked: amount_sat,
                });
            }
        }
        // Parsed when the card was verified.
        if let Some(allowed) = self.lsp.as_deref().and_then(|k| parse_node_key(k).ok()) {
            if allowed.serialize() != lsp.to_xonly_bytes() {
                return Err(OfferError::Lsp {
                    allowed: allowed.to_string(),
                    lsp: hex::encode(lsp.to_xonly_bytes()),
                });
            }
        }
        Ok(())
    }
}

/// Why a contact given by hand (a card file, or a node key and an age recipient) cannot be
/// used.
#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    /// The card file could not be read.
    #[error("reading contact {}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The card file is not a contact card.
    #[error("parsing contact")]
    Parse(#[source] serde_json::Error),
    /// The age recipient does not parse.
    #[error("invalid age recipient: {0}")]
    AgeRecipient(String),
    /// The node key does not parse, or the card's signature does not verify.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// One context for the process: creating one per call costs a blinding multiplication.
fn secp() -> &'static Secp256k1<All> {
    static SECP: OnceLock<Secp256k1<All>> = OnceLock::new();
    SECP.get_or_init(Secp256k1::new)
}

/// A node's secret key: BIP340 signing key plus the derived age identity.
///
/// `Debug` never prints the secret.
pub struct NodeKey {
    keypair: Keypair,
    age: age::x25519::Identity,
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey")
            .field("public", &self.public())
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl NodeKey {
    /// Builds a node key from its 32-byte secret.
    pub fn from_secret_bytes(secret: [u8; 32]) -> Result<Self, KeyError> {
        let secret = Zeroizing::new(secret);
        let keypair =
            Keypair::from_seckey_slice(secp(), &secret[..]).map_err(|_| KeyError::InvalidSecret)?;
        let age = derive_age_identity(&secret);
        Ok(NodeKey { keypair, age })
    }

    /// Generates a fresh random node key.
    pub fn generate() -> Self {
        loop {
            let bytes = Zeroizing::new(rand::random::<[u8; 32]>());
            if let Ok(key) = Self::from_secret_bytes(*bytes) {
                return key;
            }
        }
    }

    /// Reads a key file: 64 hex characters (surrounding whitespace ignored).
    pub fn read_file(path: &std::path::Path) -> Result<Self, KeyError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Io {
                    path: path.display().to_string(),
                    source,
                })?,
            );
        let bad = || KeyError::BadKeyFile {
            path: path.display().to_string(),
        };
        let mut secret = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), &mut secret[..]).map_err(|_| bad())?;
        Self::from_secret_bytes(*secret)
    }

    /// Writes the secret as hex to a new file (fails if it exists; mode 0600 on Unix).
    pub fn write_file(&self, path: &std::path::Path) -> Result<(), KeyError> {
        use std::io::Write;
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io)?;
        let hex = Zeroizing::new(hex::encode(self.keypair.secret_bytes()));
        file.write_all(hex.as_bytes()).map_err(io)?;
        file.write_all(b"\n").map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// The x-only public node key (names this node's mailbox).
    pub fn public(&self) -> XOnlyPublicKey {
        self.keypair.x_only_public_key().0
    }

    /// The age recipient that senders encrypt to.
    pub fn age_recipient(&self) -> age::x25519::Recipient {
        self.age.to_public()
    }

    /// The age identity that decrypts envelopes sent to this node.
    pub fn age_identity(&self) -> &age::x25519::Identity {
        &self.age
    }

    /// BIP340-signs a 32-byte digest (with fresh auxiliary randomness).
    pub fn sign_digest(&self, digest: [u8; 32]) -> schnorr::Signature {
        secp().sign_schnorr(&Message::from_digest(digest), &self.keypair)
    }
}

/// Verifies a BIP340 signature over a 32-byte digest.
pub fn verify_digest(key: &XOnlyPublicKey, digest: [u8; 32], sig: &schnorr::Signature) -> bool {
    secp()
        .verify_schnorr(sig, &Message::from_digest(digest), key)
        .is_ok()
}

/// Parses a hex x-only public key.
pub fn parse_node_key(hex_key: &str) -> Result<XOnlyPublicKey, KeyError> {
    XOnlyPublicKey::from_str(hex_key.trim())
        .map_err(|_| KeyError::InvalidPublicKey(hex_key.to_owned()))
}

/// Derives the age X25519 identity from a node secret:
/// `x25519_secret = tagged_hash("asyncpay/mailbox/v1/age-identity", node_secret)`.
fn derive_age_identity(secret: &[u8; 32]) -> age::x25519::Identity {
    let derived = Zeroizing::new(tagged_hash(AGE_DERIVATION_TAG, &[&secret[..]]));
    // age exposes no byte constructor, so go through its Bech32 string form.
    let hrp = bech32::Hrp::parse("age-secret-key-").expect("static hrp is valid");
    let encoded = Zeroizing::new(
        bech32::encode::<bech32::Bech32>(hrp, &derived[..])
            .expect("32 bytes fit a bech32 string")
            .to_uppercase(),
    );
    age::x25519::Identity::from_str(&encoded).expect("a 32-byte bech32 secret parses")
}

/// A payee's signed contact card: node key, age recipient and mailbox URL.
///
/// A payer that obtained the node key out of band (an offer, a channel peer) can check that
/// the age recipient and mailbox URL were published by that node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Contact format version (currently 1).
    pub version: u8,
    /// Hex x-only node key.
    pub node_key: String,
    /// age X25519 recipient (`age1...`).
    pub age_recipient: String,
    /// Base URL of the mailbox server that holds this node's mailbox.
    pub mailbox_url: String,
    /// Unix time the contact was issued.
    pub issued_at: u64,
    /// The node's receipt slots (version 2): a payer encrypts its withheld signature to one,
    /// and the payment's proof of payment is the node's signature with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipts: Option<ReceiptCard>,
    /// A static offer (version 3, which also lists receipt slots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<StaticOffer>,
    /// Hex BIP340 signature by the node key over [`contact_digest`].
    pub signature: String,
}

/// A contact whose signature has been checked, with parsed fields.
#[derive(Clone, Debug)]
pub struct VerifiedContact {
    /// The payee's node key (names its mailbox).
    pub node_key: XOnlyPublicKey,
    /// The age recipient to encrypt to.
    pub age_recipient: age::x25519::Recipient,
    /// Base URL of the mailbox server.
    pub mailbox_url: String,
    /// Unix time the contact was issued.
    pub issued_at: u64,
    /// The receipt slots, when the card lists them (version 2).
    pub receipts: Option<ReceiptCard>,
    /// The static offer, when the card is one (version 3).
    pub offer: Option<StaticOffer>,
}

impl Contact {
    /// Builds and signs a contact for `key`.
    pub fn sign(key: &NodeKey, mailbox_url: &str, issued_at: u64) -> Contact {
        Self::sign_with_receipts(key, mailbox_url, issued_at, None)
    }

    /// Builds and signs a contact for `key` that lists receipt slots (version 2) if given.
    pub fn sign_with_receipts(
        key: &NodeKey,
        mailbox_url: &str,
        issued_at: u64,
        receipts: Option<ReceiptCard>,
    ) -> Contact {
        Self::sign_offer(key, mailbox_url, issued_at, receipts, None)
            .expect("a card without an offer has nothing to refuse")
    }

    /// Builds and signs a contact for `key` that lists receipt slots (version 2) if given,
    /// and is a static offer (version 3, with receipt slots) if `offer` is given. Refuses an
    /// offer without receipt slots, with an LSP key that does not parse, or with a
    /// description over [`MAX_DESCRIPTION_LEN`].
    pub fn sign_offer(
        key: &NodeKey,
        mailbox_url: &str,
        issued_at: u64,
        receipts: Option<ReceiptCard>,
        offer: Option<StaticOffer>,
    ) -> Result<Contact, KeyError> {
        let node_key = key.public();
        let age_recipient = key.age_recipient().to_string();
        let version = match (&receipts, &offer) {
            (None, None) => 1,
            (Some(_), None) => 2,
            (Some(_), Some(_)) => 3,
            (None, Some(_)) => return Err(KeyError::ContactVersion(3)),
        };
        let digest = contact_digest(
            version,
            &node_key,
            &age_recipient,
            mailbox_url,
            issued_at,
            receipts.as_ref(),
            offer.as_ref(),
        )?;
        Ok(Contact {
            version,
            node_key: node_key.to_string(),
            age_recipient,
            mailbox_url: mailbox_url.to_owned(),
            issued_at,
            receipts,
            offer,
            signature: key.sign_digest(digest).to_string(),
        })
    }

    /// Checks the signature and parses the fields.
    pub fn verify(&self) -> Result<VerifiedContact, KeyError> {
        let node_key = parse_node_key(&self.node_key)?;
        let age_recipient = age::x25519::Recipient::from_str(&self.age_recipient)
            .map_err(|_| KeyError::InvalidAgeRecipient(self.age_recipient.clone()))?;
        let sig = schnorr::Signature::from_str(&self.signature)
            .map_err(|_| KeyError::MalformedSignature)?;
        match (self.version, &self.receipts, &self.offer) {
            (1, None, None) | (2, Some(_), None) | (3, Some(_), Some(_)) => {}
            (version, _, _) => return Err(KeyError::ContactVersion(version)),
        }
        let digest = contact_digest(
            self.version,
            &node_key,
            &self.age_recipient,
            &self.mailbox_url,
            self.issued_at,
            self.receipts.as_ref(),
            self.offer.as_ref(),
        )?;
        if !verify_digest(&node_key, digest, &sig) {
            return Err(KeyError::BadContactSignature(node_key));
        }
        Ok(VerifiedContact {
            node_key,
            age_recipient,
            mailbox_url: self.mailbox_url.clone(),
            issued_at: self.issued_at,
            receipts: self.receipts.clone(),
            offer: self.offer.clone(),
        })
    }
}

impl VerifiedContact {
    /// Checks a proof of payment against this (verified) card's node key: the proof names
    /// this node, its slot carries the node's endorsement, and the slot's signature covers
    /// the proof's payment, amount and note. Any card of the node will do.
    pub fn check_proof(&self, proof: &ProofOfPayment) -> Result<(), ProofError> {
        proof.verify(&PublicKey::from(self.node_key))
    }

    /// The contact card in the JSON file `path` (as `asyncpay mailbox contact` prints it),
    /// verified.
    pub fn read_file(path: &std::path::Path) -> Result<Self, ContactError> {
        let text = std::fs::read_to_string(path).map_err(|source| ContactError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let contact: Contact = serde_json::from_str(&text).map_err(ContactError::Parse)?;
        Ok(contact.verify()?)
    }

    /// A contact without a signed card, from a node key (hex) and an age recipient
    /// (`age1...`) obtained otherwise; its mailbox at `mailbox_url`, issued at time 0.
    pub fn from_parts(
        node_key: &str,
        age_recipient: &str,
        mailbox_url: String,
    ) -> Result<Self, ContactError> {
        Ok(VerifiedContact {
            node_key: parse_node_key(node_key)?,
            age_recipient: age_recipient
                .parse()
                .map_err(|e: &str| ContactError::AgeRecipient(e.to_string()))?,
            mailbox_url,
            issued_at: 0,
            receipts: None,
            offer: None,
        })
    }
}

/// `tagged_hash("asyncpay/mailbox/v1/contact", version ‖ node_key ‖ len‖age ‖ len‖url ‖
/// issued_at [‖ epoch ‖ count ‖ (index ‖ R ‖ P)…] [‖ offer])`, lengths, time, epoch, count
/// and index big-endian (u32, u32, u64, u32, u32, u32); the receipt slots in versions 2 and
/// 3, the offer only in version 3: each of its fields a presence byte (0 or 1) then the
/// value (amount u64; description u32 length and bytes, always written; expiry u64; LSP
/// 32 bytes). Refuses an offer whose LSP key does not parse or whose description is too long.
pub fn contact_digest(
    version: u8,
    node_key: &XOnlyPublicKey,
    age_recipient: &str,
    mailbox_url: &str,
    issued_at: u64,
    receipts: Option<&ReceiptCard>,
    offer: Option<&StaticOffer>,
) -> Result<[u8; 32], KeyError> {
    let offer = offer.map(StaticOffer::digest_bytes).transpose()?;
    let mut slots = vec![];
    if let Some(card) = receipts {
        slots.extend_from_slice(&card.epoch.to_be_bytes());
        slots.extend_from_slice(&(card.slots.len() as u32).to_be_bytes());
        for slot in &card.slots {
            slots.extend_from_slice(&slot.index.to_be_bytes());
            slots.extend_from_slice(&slot.nonce.to_xonly_bytes());
            slots.extend_from_slice(&slot.key.to_xonly_bytes());
        }
    }
    Ok(tagged_hash(
        CONTACT_TAG,
        &[
            &[version],
            &node_key.serialize(),
            &(age_recipient.len() as u32).to_be_bytes(),
            age_recipient.as_bytes(),
            &(mailbox_url.len() as u32).to_be_bytes(),
            mailbox_url.as_bytes(),
            &issued_at.to_be_bytes(),
            &slots,
            offer.as_deref().unwrap_or(&[]),
        ],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_identity_is_deterministic_and_key_specific() {
        let a1 = NodeKey::from_secret_bytes([1u8; 32]).unwrap();
        let a2 = NodeKey::from_secret_bytes([1u8; 32]).unwrap();
        let b = NodeKey::from_secret_bytes([2u8; 32]).unwrap();
        assert_eq!(
            a1.age_recipient().to_string(),
            a2.age_recipient().to_string()
        );
        assert_ne!(
            a1.age_recipient().to_string(),
            b.age_recipient().to_string()
        );
    }

    #[test]
    fn zero_secret_is_rejected() {
        assert!(matches!(
            NodeKey::from_secret_bytes([0u8; 32]),
            Err(KeyError::InvalidSecret)
        ));
    }

    #[test]
    fn debug_redacts_secret() {
        let key = NodeKey::from_secret_bytes([3u8; 32]).unwrap();
        let text = format!("{key:?}");
        assert!(text.contains("redacted"));
        assert!(!text.contains(&hex::encode([3u8; 32])));
    }

    #[test]
    fn tampered_contact_fails() {
        let key = NodeKey::from_secret_bytes([4u8; 32]).unwrap();
        let mut contact = Contact::sign(&key, "http://127.0.0.1:1", 5);
        assert!(contact.verify().is_ok());
        contact.mailbox_url = "http://evil.example".into();
        assert!(matches!(
            contact.verify(),
            Err(KeyError::BadContactSignature(_))
        ));
    }

    fn static_offer(key: &NodeKey, lsp: &str) -> Contact {
        let receipts = crate::crypto::receipt::ReceiptKeys::from_seed(&[4u8; 32]).card(0, 4);
        let offer = StaticOffer {
            amount_sat: Some(21_000),
            description: Some("a coffee".into()),
            expires_at: Some(1_000),
            lsp: Some(lsp.into()),
        };
        Contact::sign_offer(key, "http://127.0.0.1:1", 5, Some(receipts), Some(offer)).unwrap()
    }

    #[test]
    fn a_static_offer_is_signed_with_its_card_and_checked_before_paying() {
        let key = NodeKey::from_secret_bytes([4u8; 32]).unwrap();
        let lsp = NodeKey::from_secret_bytes([5u8; 32]).unwrap().public();
        let other = NodeKey::from_secret_bytes([6u8; 32]).unwrap().public();
        let contact = static_offer(&key, &lsp.to_string());
        assert_eq!(contact.version, 3);
        let offer = contact.verify().unwrap().offer.unwrap();
        let lsp_key = PublicKey::from(lsp);
        assert_eq!(offer.check(21_000, &lsp_key, 1_000), Ok(()));
        assert_eq!(
            offer.check(21_000, &lsp_key, 1_001),
            Err(OfferError::Expired {
                expires_at: 1_000,
                now: 1_001
            })
        );
        assert!(matches!(
            offer.check(21_001, &lsp_key, 0),
            Err(OfferError::Amount {
                offered: 21_000,
                asked: 21_001
            })
        ));
        assert!(matches!(
            offer.check(21_000, &PublicKey::from(other), 0),
            Err(OfferError::Lsp { .. })
        ));

        // Each field is signed: a payer cannot be shown another amount, description,
        // expiry or LSP.
        for edit in [
            |o: &mut StaticOffer| o.amount_sat = Some(1),
            |o: &mut StaticOffer| o.amount_sat = None,
            |o: &mut StaticOffer| o.description = Some("two coffees".into()),
            |o: &mut StaticOffer| o.expires_at = Some(u64::MAX),
            |o: &mut StaticOffer| o.lsp = None,
        ] {
            let mut tampered = contact.clone();
            edit(tampered.offer.as_mut().unwrap());
            assert!(matches!(
                tampered.verify(),
                Err(KeyError::BadContactSignature(_))
            ));
        }
        // An offer without its version, or a version 3 card without an offer, is refused.
        let mut stripped = contact.clone();
        stripped.offer = None;
        assert!(matches!(
            stripped.verify(),
            Err(KeyError::ContactVersion(3))
        ));
        let mut relabelled = contact.clone();
        relabelled.version = 2;
        assert!(matches!(
            relabelled.verify(),
            Err(KeyError::ContactVersion(2))
        ));
        // An LSP that is not a key, or a description over the limit, is not signed.
        let mut bad = contact.offer.clone().unwrap();
        bad.lsp = Some("not a key".into());
        let receipts = contact.receipts.clone();
        assert!(Contact::sign_offer(&key, "http://x", 5, receipts.clone(), Some(bad)).is_err());
        let long = StaticOffer {
            description: Some("x".repeat(MAX_DESCRIPTION_LEN + 1)),
            ..StaticOffer::default()
        };
        assert!(matches!(
            Contact::sign_offer(&key, "http://x", 5, receipts, Some(long)),
            Err(KeyError::DescriptionTooLong(_))
        ));
        // An offer needs receipt slots: a payment to it must give a proof.
        assert!(
            Contact::sign_offer(&key, "http://x", 5, None, Some(StaticOffer::default())).is_err()
        );
    }
}
