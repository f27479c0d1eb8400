//! A watchtower for a party that goes offline for longer than its channel's shared delay: the
//! offline payee (and the payer of the reverse variant).
//!
//! eltoo makes a tower simple: whatever older update the counterparty publishes, the latest
//! update U_n, signed once with `ANYPREVOUTANYSCRIPT`, spends it, and the latest settlement
//! SE_n follows after the delay. So the tower keeps, per channel, one *kit* (the channel's
//! parameters, the latest state and both signatures on U_n) that replaces the previous one
//! at every new state, plus one 48-byte entry per state: the settlement leaf hash of that
//! state, which the control block spending an update output needs and which no transaction
//! on chain reveals (see [`crate::tx::update`]). Putting the leaf hash on chain (in the
//! update's annex, for example) would make the tower's storage constant; this transaction
//! format does not, and the tower's storage grows by 48 bytes a state.
//!
//! # What the tower learns
//!
//! Everything is sealed (ChaCha20-Poly1305) under a key that only a unilateral close
//! reveals:
//!
//! ```text
//! hint = tagged_hash("asyncpay/tower/v1/hint", funding outpoint)[..16]
//! key  = tagged_hash("asyncpay/tower/v1/key",  P_A ‖ P_S ‖ funding outpoint)
//! ```
//!
//! P_A and P_S are the channel's update keys. They are not visible in the funding output (a
//! taproot output key) and appear on chain only in the witness of an update spending it.
//! Until then the tower holds a hint and ciphertext: it can find the channel's funding
//! output only by hashing every outpoint spent on chain, and even then it cannot open the
//! kit unless the spend was an update. A cooperative close (a key-path spend) reveals no
//! keys, so the tower never learns that channel's balances. What it does learn: how many
//! states each channel went through (one appointment a state), the client key of each
//! channel (one fresh key per channel, so channels are not linked), and everything about a
//! channel once an update of it is on chain, which is public then anyway.
//!
//! # What the tower does
//!
//! [`Tower::block`] scans each block. An update spending a hinted funding output opens the
//! kit; from then on the tower follows the channel's update outputs. While the newest update
//! on chain is older than the kit's, the tower publishes U_n bound to it, every block, until
//! U_n confirms; once U_n has aged by the shared delay, it publishes SE_n, every block,
//! until it confirms. The driver pays the fees (a CPFP child on the P2A anchor from the
//! tower's own wallet, at rising feerates). PTLC outputs of SE_n are left to their owners.
//!
//! Appointments are signed by the channel's client key; a channel's state only moves
//! forward, so a replayed appointment changes nothing.
//!
//! ```
//! use asyncpay::tower::{hint, Hint};
//! use bitcoin::OutPoint;
//!
//! let h: Hint = hint(&OutPoint::null());
//! assert_eq!(h.0.len(), 16);
//! ```

pub mod client;
pub mod server;
mod store;
mod watcher;

pub use store::TowerStore;
pub use watcher::{
    BlockOutcome, Breach, Record, Stored, Tower, TowerEvent, TowerLimits, UpdateOnChain,
};

use bitcoin::hashes::Hash as _;
use bitcoin::secp256k1::{schnorr, Keypair, Message, XOnlyPublicKey};
use bitcoin::{OutPoint, Script};
use chacha20poly1305::aead::{Aead as _, KeyInit as _};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::crypto::keys::Signature;
use crate::crypto::tagged_hash;
use crate::protocol::channel::{ChannelParams, Snapshot, StateBody};
use crate::protocol::messages::ChannelId;

/// Tag of the hint hash.
pub const HINT_TAG: &str = "asyncpay/tower/v1/hint";
/// Tag of the sealing key hash.
pub const KEY_TAG: &str = "asyncpay/tower/v1/key";
/// Tag of the hash an appointment's signature covers.
pub const APPOINTMENT_TAG: &str = "asyncpay/tower/v1/appointment";
/// Tag of the derivation of a channel's client key from a node seed.
pub const CLIENT_KEY_TAG: &str = "asyncpay/tower/v1/client";
/// A sealed settlement leaf hash: 32 bytes and a 16-byte tag.
pub const SEALED_LEAF_LEN: usize = 48;
/// Most leaves one appointment carries.
pub const MAX_LEAVES_PER_APPOINTMENT: u64 = 1_000;
/// Kits are padded to a multiple of this many bytes, so their size says little about how
/// many PTLCs a state holds.
pub const KIT_PADDING: usize = 1024;

/// What went wrong with an appointment, a kit or a sealed entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TowerError {
    /// The channel has no complete state or no funding output yet.
    #[error("channel has nothing to watch yet")]
    NothingToWatch,
    /// The signature does not verify under the appointment's client key.
    #[error("appointment signature does not verify")]
    BadSignature,
    /// The kit's ciphertext is larger than the tower accepts.
    #[error("kit of {len} bytes exceeds {max}")]
    KitTooLarge {
        /// Its length.
        len: usize,
        /// The tower's maximum.
        max: usize,
    },
    /// More leaves than the tower takes in one appointment, or than it keeps per channel.
    #[error("too many leaves: {count} (at most {max})")]
    TooManyLeaves {
        /// The count that was asked for.
        count: u64,
        /// The maximum.
        max: u64,
    },
    /// The leaves must not run past the appointment's state.
    #[error("leaves {from}..={to} run past state {state}")]
    LeavesMisaligned {
        /// First leaf's state.
        from: u64,
        /// Last leaf's state.
        to: u64,
        /// The appointment's state.
        state: u64,
    },
    /// The tower lacks the leaves of the states from `from` on: send them.
    #[error("the tower needs the leaves from state {from} on")]
    MissingLeaves {
        /// The first state whose leaf the tower lacks.
        from: u64,
    },
    /// The tower already holds a newer state for the channel.
    #[error("stale appointment: state {state} is older than the stored {stored}")]
    Stale {
        /// The appointment's state.
        state: u64,
        /// The tower's state.
        stored: u64,
    },
    /// The same state again with another kit.
    #[error("state {state} was stored with another kit")]
    Conflict {
        /// The state.
        state: u64,
    },
    /// The channel is being closed on chain: the tower takes no more appointments for it.
    #[error("channel is closing on chain")]
    Closing,
    /// The tower's appointment caps are reached.
    #[error("the tower is full: {what}")]
    Full {
        /// Which cap.
        what: &'static str,
    },
    /// A sealed value did not open under the key (wrong key, or tampered).
    #[error("sealed data does not open")]
    Unsealed,
    /// A kit's plaintext is not a kit.
    #[error("kit does not decode")]
    BadKit,
}

impl TowerError {
    /// A short stable code for the HTTP answer.
    pub fn code(&self) -> &'static str {
        match self {
            TowerError::NothingToWatch => "nothing_to_watch",
            TowerError::BadSignature => "bad_signature",
            TowerError::KitTooLarge { .. } => "kit_too_large",
            TowerError::TooManyLeaves { .. } => "too_many_leaves",
            TowerError::LeavesMisaligned { .. } => "leaves_misaligned",
            TowerError::MissingLeaves { .. } => "missing_leaves",
            TowerError::Stale { .. } => "stale",
            TowerError::Conflict { .. } => "conflict",
            TowerError::Closing => "closing",
            TowerError::Full { .. } => "full",
            TowerError::Unsealed => "unsealed",
            TowerError::BadKit => "bad_kit",
        }
    }
}

/// The first 16 bytes of the hash of a funding outpoint: how the tower recognises a spend of
/// a channel it watches without knowing the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Hint(#[serde(with = "hex_16")] pub [u8; 16]);

/// The hint of the channel funded by `funding`.
pub fn hint(funding: &OutPoint) -> Hint {
    let h = tagged_hash(HINT_TAG, &[&outpoint_bytes(funding)]);
    let mut out = [0u8; 16];
    out.copy_from_slice(&h[..16]);
    Hint(out)
}

fn outpoint_bytes(o: &OutPoint) -> [u8; 36] {
    let mut b = [0u8; 36];
    b[..32].copy_from_slice(&o.txid.to_byte_array());
    b[32..].copy_from_slice(&o.vout.to_le_bytes());
    b
}

/// The sealing key of a channel, from the two update keys (as the update leaf pushes them:
/// `0x01‖x`, 33 bytes each, in leaf order) and the funding outpoint.
fn sealing_key(keys: &[[u8; 33]; 2], funding: &OutPoint) -> [u8; 32] {
    tagged_hash(KEY_TAG, &[&keys[0], &keys[1], &outpoint_bytes(funding)])
}

/// The two 33-byte `0x01‖x` key pushes of an update leaf, in order; `None` for any other
/// script. Works for the funding output's leaf and for every update output's update leaf.
pub(crate) fn leaf_keys(leaf: &Script) -> Option<[[u8; 33]; 2]> {
    let mut keys = vec![];
    for ins in leaf.instructions() {
        if let Ok(bitcoin::script::Instruction::PushBytes(p)) = ins {
            let b = p.as_bytes();
            if b.len() == 33 && b[0] == 0x01 {
                keys.push(<[u8; 33]>::try_from(b).ok()?);
            }
        }
    }
    match keys.as_slice() {
        [a, s] => Some([*a, *s]),
        _ => None,
    }
}

fn nonce(kind: u8, state: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[0] = kind;
    n[1..9].copy_from_slice(&state.to_be_bytes());
    n
}

fn seal(key: &[u8; 32], nonce: [u8; 12], plaintext: &[u8]) -> Vec<u8> {
    ChaCha20Poly1305::new(Key::from_slice(key))
        .encrypt(Nonce::from_slice(&nonce), plaintext)
        .expect("ChaCha20-Poly1305 seals any message shorter than 256 GiB")
}

fn open(key: &[u8; 32], nonce: [u8; 12], ciphertext: &[u8]) -> Result<Vec<u8>, TowerError> {
    ChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt(Nonce::from_slice(&nonce), ciphertext)
        .map_err(|_| TowerError::Unsealed)
}

/// What the tower needs to answer any older update of a channel with its latest one and
/// settle it: the channel's parameters, its funding output, the latest state and both
/// signatures on that state's update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kit {
    /// The channel's parameters (keys, payout keys, capacity, shared delay).
    pub params: ChannelParams,
    /// The funding output.
    pub funding_outpoint: OutPoint,
    /// The latest complete state.
    pub body: StateBody,
    /// A's signature on U_n.
    pub sig_a: Signature,
    /// S's signature on U_n.
    pub sig_s: Signature,
}

impl Kit {
    /// The kit of a channel's latest complete state.
    pub fn of(snapshot: &Snapshot) -> Result<Kit, TowerError> {
        let (Some(params), Some(funding_outpoint), Some(rec)) = (
            snapshot.params.clone(),
            snapshot.funding_outpoint,
            snapshot.complete.as_ref(),
        ) else {
            return Err(TowerError::NothingToWatch);
        };
        Ok(Kit {
            params,
            funding_outpoint,
            body: rec.body.clone(),
            sig_a: rec.sig_a,
            sig_s: rec.sig_s,
        })
    }

    /// The key the kit is sealed under.
    fn key(&self) -> [u8; 32] {
        let txs = crate::protocol::transactions::ChannelTxs::new(&self.params);
        let keys = leaf_keys(txs.funding().update_leaf())
            .expect("the funding output's update leaf pushes the two update keys");
        sealing_key(&keys, &self.funding_outpoint)
    }

    fn seal(&self, key: &[u8; 32]) -> Vec<u8> {
        let mut plain = serde_json::to_vec(self).expect("a kit serialises");
        // JSON allows trailing white space: pad to hide the number of PTLCs.
        let padded = plain.len().div_ceil(KIT_PADDING) * KIT_PADDING;
        plain.resize(padded, b' ');
        seal(key, nonce(b'k', self.body.number), &plain)
    }

    fn open(key: &[u8; 32], state: u64, sealed: &[u8]) -> Result<Kit, TowerError> {
        let plain = open(key, nonce(b'k', state), sealed)?;
        let kit: Kit = serde_json::from_slice(&plain).map_err(|_| TowerError::BadKit)?;
        if kit.body.number != state {
            return Err(TowerError::BadKit);
        }
        Ok(kit)
    }
}

fn seal_leaf(key: &[u8; 32], state: u64, leaf: &[u8; 32]) -> [u8; SEALED_LEAF_LEN] {
    let sealed = seal(key, nonce(b'l', state), leaf);
    sealed
        .try_into()
        .expect("32 bytes sealed are 48 bytes with the tag")
}

fn open_leaf(key: &[u8; 32], state: u64, sealed: &[u8; SEALED_LEAF_LEN]) -> Option<[u8; 32]> {
    open(key, nonce(b'l', state), sealed).ok()?.try_into().ok()
}

/// One appointment: the sealed kit of `state` and the sealed settlement leaf hashes of
/// some of the states up to it, from `leaves_from` on, signed by the channel's client key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appointment {
    /// The channel's client key (x-only).
    #[serde(with = "hex_32")]
    pub client: [u8; 32],
    /// The channel's hint.
    pub hint: Hint,
    /// The kit's state number.
    pub state: u64,
    /// The sealed kit.
    #[serde(with = "hex::serde")]
    pub kit: Vec<u8>,
    /// The state of the first leaf.
    pub leaves_from: u64,
    /// Sealed leaves of states from `leaves_from` on (at most up to `state`), 48 bytes each,
    /// concatenated.
    #[serde(with = "hex::serde")]
    pub leaves: Vec<u8>,
    /// BIP340 signature by `client` over [`Appointment::digest`].
    #[serde(with = "hex::serde")]
    pub signature: Vec<u8>,
}

impl Appointment {
    /// The client key of the channel `channel_id` of the node whose seed is `seed`: one key
    /// per channel, so the tower cannot tell which channels belong to one node.
    pub fn client_key(seed: &[u8; 32], channel_id: &ChannelId) -> Keypair {
        let mut counter = 0u8;
        loop {
            let bytes = tagged_hash(CLIENT_KEY_TAG, &[seed, &channel_id.0, &[counter]]);
            if let Ok(sk) = bitcoin::secp256k1::SecretKey::from_slice(&bytes) {
                return Keypair::from_secret_key(crate::tx::secp(), &sk);
            }
            // Probability 2^-128: try the next counter.
            counter = counter.wrapping_add(1);
        }
    }

    /// The appointment for a channel's latest complete state, carrying the leaves of the
    /// states `from..=to` (`to` clamped to the latest state; at most
    /// [`MAX_LEAVES_PER_APPOINTMENT`] of them, the tower refuses more).
    pub fn new(
        client: &Keypair,
        snapshot: &Snapshot,
        from: u64,
        to: u64,
    ) -> Result<Appointment, TowerError> {
        let kit = Kit::of(snapshot)?;
        let key = kit.key();
        let state = kit.body.number;
        let to = to.min(state);
        let leaves_from = from.min(to);
        let mut leaves = Vec::with_capacity(SEALED_LEAF_LEN * (to - leaves_from + 1) as usize);
        for k in leaves_from..=to {
            let leaf = snapshot
                .settlement_leaf_hashes
                .get(&k)
                .ok_or(TowerError::NothingToWatch)?;
            leaves.extend_from_slice(&seal_leaf(&key, k, leaf));
        }
        let mut a = Appointment {
            client: client.x_only_public_key().0.serialize(),
            hint: hint(&kit.funding_outpoint),
            state,
            kit: kit.seal(&key),
            leaves_from,
            leaves,
            signature: vec![],
        };
        let msg = Message::from_digest(a.digest());
        a.signature = crate::tx::secp()
            .sign_schnorr_no_aux_rand(&msg, client)
            .as_ref()
            .to_vec();
        Ok(a)
    }

    /// What the signature covers.
    pub fn digest(&self) -> [u8; 32] {
        tagged_hash(
            APPOINTMENT_TAG,
            &[
                &self.client,
                &self.hint.0,
                &self.state.to_be_bytes(),
                &Sha256::digest(&self.kit),
                &self.leaves_from.to_be_bytes(),
                &Sha256::digest(&self.leaves),
            ],
        )
    }

    /// Checks the signature.
    pub fn verify(&self) -> Result<(), TowerError> {
        let key = XOnlyPublicKey::from_slice(&self.client).map_err(|_| TowerError::BadSignature)?;
        let sig = schnorr::Signature::from_slice(&self.signature)
            .map_err(|_| TowerError::BadSignature)?;
        crate::tx::secp()
            .verify_schnorr(&sig, &Message::from_digest(self.digest()), &key)
            .map_err(|_| TowerError::BadSignature)
    }
}

mod hex_16 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

mod hex_32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}
