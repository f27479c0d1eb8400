//! Recipient authentication by challenge and BIP340 signature (pure, no clock, no RNG).
//!
//! To fetch, acknowledge (delete) or configure its mailbox, a recipient first asks the
//! server for a challenge: 32 random bytes, bound to the mailbox, single-use, with an
//! expiry. It then signs
//!
//! ```text
//! tagged_hash("asyncpay/mailbox/v1/auth",
//!     challenge(32) ‖ mailbox node key(32) ‖ operation(1) ‖ SHA256(parameters))
//! ```
//!
//! where the operation byte and parameter encoding are given by [`Operation`]. The server
//! removes a challenge the first time it is presented, so a replayed proof finds nothing;
//! a proof for another mailbox, operation or parameter set fails the signature check.
//!
//! ```
//! use asyncpay::mailbox::auth::{sign_request, ChallengeBook, Operation};
//! use asyncpay::mailbox::keys::NodeKey;
//!
//! let payee = NodeKey::from_secret_bytes([3u8; 32]).unwrap();
//! let mut book = ChallengeBook::new(60, 16, 1000);
//! let issued = book.issue(payee.public(), [42u8; 32], 1_000).unwrap();
//! let op = Operation::Fetch { limit: 10, wait_secs: 0 };
//! let sig = sign_request(&payee, &issued.challenge, &op);
//! assert!(book.redeem(&payee.public(), &issued.challenge, &op, &sig, 1_001).is_ok());
//! // The same proof again is a replay.
//! assert!(book.redeem(&payee.public(), &issued.challenge, &op, &sig, 1_002).is_err());
//! ```
use std::collections::{HashMap, VecDeque};

use bitcoin::secp256k1::{schnorr, XOnlyPublicKey};
use sha2::{Digest, Sha256};

use super::envelope::EnvelopeId;
use super::keys::{verify_digest, NodeKey};
use crate::crypto::tagged_hash;

/// Tag of the authentication hash.
pub const AUTH_TAG: &str = "asyncpay/mailbox/v1/auth";

/// A server-issued challenge.
pub type Challenge = [u8; 32];

/// What a proof authorises, with its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Read up to `limit` messages, waiting up to `wait_secs` for one to arrive.
    Fetch {
        /// Maximum number of messages returned.
        limit: u32,
        /// Long-poll duration in seconds (0 = answer at once).
        wait_secs: u32,
    },
    /// Delete the listed messages.
    Ack {
        /// Ids to delete, in request order.
        ids: Vec<EnvelopeId>,
    },
    /// Set (or clear, with `None`) the mailbox's wake-up webhook.
    SetWebhook {
        /// URL the server POSTs to when a message arrives.
        url: Option<String>,
    },
}

impl Operation {
    /// The operation byte: 1 fetch, 2 ack, 3 set webhook.
    pub fn code(&self) -> u8 {
        match self {
            Operation::Fetch { .. } => 1,
            Operation::Ack { .. } => 2,
            Operation::SetWebhook { .. } => 3,
        }
    }

    /// Canonical parameter encoding: fetch `limit(u32) ‖ wait_secs(u32)`; ack
    /// `count(u32) ‖ ids(16 each)`; webhook `0` or `1 ‖ len(u32) ‖ url`.
    pub fn encode_params(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Operation::Fetch { limit, wait_secs } => {
                out.extend_from_slice(&limit.to_be_bytes());
                out.extend_from_slice(&wait_secs.to_be_bytes());
            }
            Operation::Ack { ids } => {
                out.extend_from_slice(&(ids.len() as u32).to_be_bytes());
                for id in ids {
                    out.extend_from_slice(&id.0);
                }
            }
            Operation::SetWebhook { url } => match url {
                None => out.push(0),
                Some(url) => {
                    out.push(1);
                    out.extend_from_slice(&(url.len() as u32).to_be_bytes());
                    out.extend_from_slice(url.as_bytes());
                }
            },
        }
        out
    }
}

/// The digest a recipient signs to authorise `op` on `mailbox` under `challenge`.
pub fn auth_digest(challenge: &Challenge, mailbox: &XOnlyPublicKey, op: &Operation) -> [u8; 32] {
    let params: [u8; 32] = Sha256::digest(op.encode_params()).into();
    tagged_hash(
        AUTH_TAG,
        &[challenge, &mailbox.serialize(), &[op.code()], &params],
    )
}

/// Signs a request with the mailbox owner's key.
pub fn sign_request(key: &NodeKey, challenge: &Challenge, op: &Operation) -> schnorr::Signature {
    key.sign_digest(auth_digest(challenge, &key.public(), op))
}

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The challenge was never issued, was already used, or was pruned.
    #[error("unknown or already used challenge")]
    UnknownChallenge,
    /// The challenge expired at the given time.
    #[error("challenge expired at {0}")]
    Expired(u64),
    /// The challenge was issued for another mailbox.
    #[error("challenge was issued for another mailbox")]
    WrongMailbox,
    /// The signature does not verify for this mailbox, operation and parameters.
    #[error("signature does not verify")]
    BadSignature,
    /// Too many outstanding challenges.
    #[error("too many outstanding challenges")]
    TooManyChallenges,
}

/// A challenge as handed to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The random challenge.
    pub challenge: Challenge,
    /// Unix time after which it is refused.
    pub expires_at: u64,
}

/// Outstanding challenges: issue, redeem once, prune.
#[derive(Debug)]
pub struct ChallengeBook {
    ttl_secs: u64,
    max_per_mailbox: usize,
    max_total: usize,
    entries: HashMap<Challenge, (XOnlyPublicKey, u64)>,
    /// Outstanding challenges of each mailbox, oldest first.
    per_mailbox: HashMap<XOnlyPublicKey, VecDeque<Challenge>>,
}

impl ChallengeBook {
    /// A book whose challenges live `ttl_secs`, at most `max_per_mailbox` outstanding per
    /// mailbox and `max_total` overall.
    pub fn new(ttl_secs: u64, max_per_mailbox: usize, max_total: usize) -> Self {
        ChallengeBook {
            ttl_secs,
            max_per_mailbox,
            max_total,
            entries: HashMap::new(),
            per_mailbox: HashMap::new(),
        }
    }

    /// Number of outstanding challenges.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no challenge is outstanding.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records `random` as a challenge for `mailbox`, valid until `now + ttl`.
    ///
    /// When the mailbox already has its maximum of outstanding challenges, the oldest is
    /// dropped: anyone may ask for challenges on any mailbox, and refusing new ones would
    /// let a stranger lock the owner out.
    pub fn issue(
        &mut self,
        mailbox: XOnlyPublicKey,
        random: Challenge,
        now: u64,
    ) -> Result<Issued, AuthError> {
        if self.entries.len() >= self.max_total {
            self.prune(now);
            if self.entries.len() >= self.max_total {
                return Err(AuthError::TooManyChallenges);
            }
        }
        let outstanding = self.per_mailbox.get(&mailbox).map_or(0, VecDeque::len);
        if outstanding >= self.max_per_mailbox.max(1) {
            let oldest = self
                .per_mailbox
                .get(&mailbox)
                .and_then(|q| q.front().copied());
            if let Some(oldest) = oldest {
                self.remove(&oldest);
            }
        }
        let expires_at = now.saturating_add(self.ttl_secs);
        if let Some(previous) = self.entries.insert(random, (mailbox, expires_at)) {
            // Same random bytes issued twice (only with a broken RNG): keep one entry.
            self.detach(&random, &previous.0);
        }
        self.per_mailbox
            .entry(mailbox)
            .or_default()
            .push_back(random);
        Ok(Issued {
            challenge: random,
            expires_at,
        })
    }

    fn detach(&mut self, challenge: &Challenge, mailbox: &XOnlyPublicKey) {
        if let Some(queue) = self.per_mailbox.get_mut(mailbox) {
            queue.retain(|c| c != challenge);
            if queue.is_empty() {
                self.per_mailbox.remove(mailbox);
            }
        }
    }

    fn remove(&mut self, challenge: &Challenge) -> Option<(XOnlyPublicKey, u64)> {
        let entry = self.entries.remove(challenge)?;
        self.detach(challenge, &entry.0);
        Some(entry)
    }

    /// Checks a proof. The challenge is consumed whatever the outcome, so each challenge
    /// admits at most one attempt.
    pub fn redeem(
        &mut self,
        mailbox: &XOnlyPublicKey,
        challenge: &Challenge,
        op: &Operation,
        signature: &schnorr::Signature,
        now: u64,
    ) -> Result<(), AuthError> {
        let (bound, expires_at) = self.remove(challenge).ok_or(AuthError::UnknownChallenge)?;
        if now > expires_at {
            return Err(AuthError::Expired(expires_at));
        }
        if &bound != mailbox {
            return Err(AuthError::WrongMailbox);
        }
        if !verify_digest(mailbox, auth_digest(challenge, mailbox, op), signature) {
            return Err(AuthError::BadSignature);
        }
        Ok(())
    }

    /// Drops expired challenges.
    pub fn prune(&mut self, now: u64) {
        let stale: Vec<Challenge> = self
            .entries
            .iter()
            .filter(|(_, (_, exp))| *exp < now)
            .map(|(c, _)| *c)
            .collect();
        for c in stale {
            self.remove(&c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> NodeKey {
        NodeKey::from_secret_bytes([b; 32]).unwrap()
    }

    #[test]
    fn digest_binds_every_field() {
        let k = key(1).public();
        let other = key(2).public();
        let fetch = Operation::Fetch {
            limit: 1,
            wait_secs: 0,
        };
        let base = auth_digest(&[0u8; 32], &k, &fetch);
        assert_ne!(base, auth_digest(&[1u8; 32], &k, &fetch));
        assert_ne!(base, auth_digest(&[0u8; 32], &other, &fetch));
        assert_ne!(
            base,
            auth_digest(
                &[0u8; 32],
                &k,
                &Operation::Fetch {
                    limit: 2,
                    wait_secs: 0
                }
            )
        );
        assert_ne!(
            auth_digest(&[0u8; 32], &k, &Operation::Ack { ids: vec![] }),
            auth_digest(&[0u8; 32], &k, &Operation::SetWebhook { url: None })
        );
    }

    #[test]
    fn wrong_key_stale_and_replayed_proofs_fail() {
        let owner = key(1);
        let thief = key(2);
        let mut book = ChallengeBook::new(30, 4, 100);
        let op = Operation::Ack {
            ids: vec![EnvelopeId([1; 16])],
        };

        let c = book.issue(owner.public(), [1; 32], 100).unwrap();
        let sig = sign_request(&thief, &c.challenge, &op);
        assert_eq!(
            book.redeem(&owner.public(), &c.challenge, &op, &sig, 101),
            Err(AuthError::BadSignature)
        );

        let c = book.issue(owner.public(), [2; 32], 100).unwrap();
        let sig = sign_request(&owner, &c.challenge, &op);
        assert_eq!(
            book.redeem(&owner.public(), &c.challenge, &op, &sig, 131),
            Err(AuthError::Expired(130))
        );

        let c = book.issue(owner.public(), [3; 32], 100).unwrap();
        let sig = sign_request(&owner, &c.challenge, &op);
        let other_op = Operation::Ack {
            ids: vec![EnvelopeId([2; 16])],
        };
        assert_eq!(
            book.redeem(&owner.public(), &c.challenge, &other_op, &sig, 101),
            Err(AuthError::BadSignature)
        );

        let c = book.issue(owner.public(), [4; 32], 100).unwrap();
        let sig = sign_request(&owner, &c.challenge, &op);
        assert_eq!(
            book.redeem(&owner.public(), &c.challenge, &op, &sig, 101),
            Ok(())
        );
        assert_eq!(
            book.redeem(&owner.public(), &c.challenge, &op, &sig, 101),
            Err(AuthError::UnknownChallenge)
        );

        let c = book.issue(thief.public(), [5; 32], 100).unwrap();
        let sig = sign_request(&owner, &c.challenge, &op);
        assert_eq!(
            book.redeem(&owner.public(), &c.challenge, &op, &sig, 101),
            Err(AuthError::WrongMailbox)
        );
        assert!(book.is_empty());
    }

    #[test]
    fn outstanding_challenges_are_bounded() {
        let owner = key(1);
        let op = Operation::Fetch {
            limit: 1,
            wait_secs: 0,
        };
        let mut book = ChallengeBook::new(30, 2, 3);
        book.issue(owner.public(), [1; 32], 0).unwrap();
        book.issue(owner.public(), [2; 32], 0).unwrap();
        // A third challenge for the same mailbox evicts the oldest rather than refusing.
        book.issue(owner.public(), [3; 32], 0).unwrap();
        assert_eq!(book.len(), 2);
        let sig = sign_request(&owner, &[1; 32], &op);
        assert_eq!(
            book.redeem(&owner.public(), &[1; 32], &op, &sig, 1),
            Err(AuthError::UnknownChallenge)
        );
        let sig = sign_request(&owner, &[3; 32], &op);
        assert_eq!(book.redeem(&owner.public(), &[3; 32], &op, &sig, 1), Ok(()));

        // The global cap refuses once reached, and stale entries are pruned to make room.
        let other = key(2).public();
        book.issue(other, [4; 32], 0).unwrap();
        book.issue(other, [5; 32], 0).unwrap();
        assert_eq!(
            book.issue(key(3).public(), [6; 32], 0),
            Err(AuthError::TooManyChallenges)
        );
        assert!(book.issue(key(3).public(), [6; 32], 31).is_ok());
        assert_eq!(book.len(), 1);
    }
}
