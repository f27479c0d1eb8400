//! The eltoo channel between A (the opener, the payer in an async payment) and S (the
//! acceptor, its LSP), as a sans-io state machine.
//!
//! [`Channel::handle`] takes one [`Input`] (a peer message, a user command, a chain event,
//! the time or fresh randomness) and returns the [`Action`]s the driver must carry out, in
//! order: [`Action::Persist`] a snapshot, [`Action::Send`] a message, [`Action::Broadcast`] a
//! transaction, [`Action::Watch`] an outpoint, or report an [`Event`]. The channel does no
//! I/O, reads no clock and uses no global RNG.
//!
//! **Persist before send.** Every action list in which a message carrying a signature or a
//! public nonce is sent starts with the [`Action::Persist`] of the snapshot that makes it
//! safe: the snapshot holds the signature (so that a restart resends the same one rather
//! than making another) and the advanced nonce counter (so that a restart never derives the
//! same nonce again). A driver must finish each `Persist` durably before it executes the
//! next action. Secret nonces live only in memory; a restart abandons them and a fresh
//! proposal commits to a fresh nonce.
//!
//! **Updates.** Every state n+1 is one [`Change`] on top of the last complete state n, in
//! three messages: the proposer sends [`ProposeUpdate`] with the nonce R of its future
//! signature on U_{n+1}; the other party checks the change, signs U_{n+1} and returns
//! [`CounterSignUpdate`]; the proposer signs with the committed nonce and sends
//! [`CompleteUpdate`] — or, for a payment by pay-for-signature, withholds it
//! ([`Command::Transfer`] with `withhold`), in which case the other party can price it as
//! T = R + e·P ([`Channel::pending_price_point`]) and complete the state once it learns the
//! signature's scalar ([`Command::CompleteWithSecret`]).
//!
//! The states ([`Phase`]) are named for what happened: `Offered`, `Accepted`, `Funded`,
//! `Proposed`, `CounterSigned`, `Withheld`, `Closing`, `ForceClosing`, `Closed`. A phase is
//! not stored but read off the snapshot's data ([`Snapshot::phase`]): each record lives where
//! it exists ([`Stage`], [`Progress`], [`CloseProgress`]), so reading a withheld signature or
//! a close's partial signature is a pattern match that binds it.
//!
//! ```
//! use asyncpay::crypto::keys::SecretKey;
//! use asyncpay::crypto::nonce::NonceSeed;
//! use asyncpay::protocol::channel::{
//!     Action, Channel, ChannelSecrets, Command, Input, OpenTerms, Phase,
//! };
//! use asyncpay::protocol::messages::{ChannelId, Message};
//! use bitcoin::OutPoint;
//!
//! let key = |b: u8| SecretKey::from_bytes([b; 32]);
//! let secrets = |b: u8| -> Result<ChannelSecrets, asyncpay::crypto::keys::KeyError> {
//!     Ok(ChannelSecrets { key: key(b)?, nonce_seed: NonceSeed::from_bytes([b + 1; 32]) })
//! };
//! let terms = OpenTerms {
//!     capacity_sat: 100_000, push_sat: 0, shared_delay: 6, update_window: 1_000,
//!     payout_key: key(10)?.public_key(),
//! };
//! let (mut a, actions) = Channel::open(secrets(1)?, ChannelId([9; 32]), terms, 100)?;
//! // Persist first, then the open message.
//! let [Action::Persist(_), Action::Send(Message::Open(open))] = &actions[..] else {
//!     return Err("persist, then send the open".into());
//! };
//! let (s, actions) = Channel::accept(secrets(3)?, open, key(11)?.public_key(), 100)?;
//! let Some(Action::Send(accept)) = actions.last().cloned() else {
//!     return Err("S sends its accept".into());
//! };
//! a.handle(Input::Message(accept))?;
//! assert_eq!((a.phase(), s.phase()), (Phase::Accepted, Phase::Accepted));
//! // A builds the funding transaction with its wallet, then proposes state 0.
//! let actions = a.handle(Input::Command(Command::FundingBuilt { outpoint: OutPoint::null() }))?;
//! assert!(matches!(actions.first(), Some(Action::Persist(_))));
//! assert_eq!(a.phase(), Phase::Proposed);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;

use bitcoin::hashes::{sha256, Hash as _, HashEngine as _};
use bitcoin::{OutPoint, Transaction};
use serde::{Deserialize, Serialize};

use crate::crypto::adaptor::{
    price_point, sells, AdaptorPoint, AdaptorSecret, EncryptedSignature, VerifiedEncryptedSignature,
};
use crate::crypto::keys::{PublicKey, SecretKey, Signature};
use crate::crypto::nonce::{
    NonceCounterStore, NonceError, NonceSeed, NonceSource, PublicNonce, SecretNonce,
};
use crate::tx::{Party, PtlcExpiry, TxError, STATE_LOCKTIME_BASE};

use crate::tx::close::{self, CloseNonce};

use super::messages::{
    AcceptChannel, Change, ChannelId, CloseAccept, CloseProposal, CloseSigned, CompleteUpdate,
    CounterSignUpdate, Message, OpenChannel, ProposeUpdate, Reestablish, RevealedSecret,
};
use super::transactions as txs;
use super::wire::{Decoded, PeerMessage, WireError};

/// Snapshot format version; [`Channel::restore`] refuses others.
pub const SNAPSHOT_VERSION: u8 = 5;

/// At most this many PTLCs may be pending in one state (bounds transaction and message size).
pub const MAX_PTLCS: usize = 32;

/// Fee a PTLC timeout pays out of its amount (it is signed when published, alone).
pub const TIMEOUT_FEE_SAT: u64 = 1_000;

mod command;
mod cooperative;
mod error;
mod io;
mod message;
mod onchain;
mod state;

pub use error::ChannelError;
pub use io::{Action, ChainEvent, Command, Event, Input};
pub(crate) use state::{leaf_hash_log, VerifiedClaim};
pub use state::{
    AcceptorShare, ChannelParams, ChannelSecrets, CloseProgress, CloseRecord, DroppedProposal,
    OnChain, OpenTerms, OwnWithheld, PendingUpdate, Phase, Progress, PtlcRecord, Snapshot,
    SnapshotError, Stage, StateBody, StateRecord, Withheld, Withhold, LOG_IN_JSON_VERSION,
    SALE_WINDOW_MARGIN,
};

/// The nonce counter lives in the snapshot: advancing it here and persisting the snapshot
/// before the public nonce is sent is what makes it durable.
struct SnapshotCounter<'a>(&'a mut u64);

impl NonceCounterStore for SnapshotCounter<'_> {
    type Error = core::convert::Infallible;

    fn load_next(&self) -> Result<u64, Self::Error> {
        Ok(*self.0)
    }

    fn persist_next(&mut self, next: u64) -> Result<(), Self::Error> {
        *self.0 = next;
        Ok(())
    }
}

/// One side of an eltoo channel.
pub struct Channel {
    key: SecretKey,
    nonces: NonceSource,
    /// The secret nonce of our pending proposal; never stored, never cloned.
    secret_nonce: Option<SecretNonce>,
    /// Our secret MuSig2 nonce for the close we proposed; never stored, never cloned.
    close_nonce: Option<CloseNonce>,
    entropy: [u8; 32],
    aux_counter: u64,
    snap: Snapshot,
    /// The channel's transactions, derived from its parameters once they are known.
    txs: std::sync::OnceLock<txs::ChannelTxs>,
}

impl core::fmt::Debug for Channel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Channel")
            .field("key", &self.key)
            .field("snapshot", &self.snap)
            .finish_non_exhaustive()
    }
}

fn other(party: Party) -> Party {
    match party {
        Party::A => Party::S,
        Party::S => Party::A,
    }
}

impl Channel {
    fn with_snapshot(secrets: ChannelSecrets, snap: Snapshot) -> Result<Self, ChannelError> {
        let mut counter = snap.next_nonce_session;
        let nonces = NonceSource::load(secrets.nonce_seed, &SnapshotCounter(&mut counter))?;
        Ok(Channel {
            key: secrets.key,
            nonces,
            secret_nonce: None,
            close_nonce: None,
            entropy: [0; 32],
            aux_counter: 0,
            snap,
            txs: std::sync::OnceLock::new(),
        })
    }

    fn empty_snapshot(
        side: Party,
        own_key: PublicKey,
        channel_id: ChannelId,
        terms: OpenTerms,
        height: u32,
    ) -> Snapshot {
        Snapshot {
            version: SNAPSHOT_VERSION,
            side,
            own_key,
            channel_id,
            terms,
            params: None,
            funding_outpoint: None,
            funding_confirmed: false,
            complete: None,
            stage: Stage::Open { pending: None },
            next_nonce_session: 0,
            next_ptlc: 0,
            peer_next_ptlc: 0,
            settlement_leaf_hashes: Default::default(),
            height,
            abandoned: None,
            priced: None,
            bought: None,
            dropped: None,
            ptlc_secrets: BTreeMap::new(),
        }
    }

    /// Starts a channel as its opener A: persist, then send [`OpenChannel`].
    pub fn open(
        secrets: ChannelSecrets,
        channel_id: ChannelId,
        terms: OpenTerms,
        height: u32,
    ) -> Result<(Self, Vec<Action>), ChannelError> {
        check_terms(terms.capacity_sat, terms.push_sat, terms.shared_delay)?;
        let own_key = secrets.key.public_key();
        let snap = Self::empty_snapshot(Party::A, own_key, channel_id, terms, height);
        let mut channel = Self::with_snapshot(secrets, snap)?;
        let msg = channel.open_message();
        let actions = channel.commit(vec![msg], vec![]);
        Ok((channel, actions))
    }

    fn open_message(&self) -> Message {
        let terms = &self.snap.terms;
        Message::Open(OpenChannel {
            channel_id: self.snap.channel_id,
            capacity_sat: terms.capacity_sat,
            push_sat: terms.push_sat,
            shared_delay: terms.shared_delay,
            update_window: terms.update_window,
            update_key: self.snap.own_key,
            payout_key: terms.payout_key,
        })
    }

    fn accept_message(&self) -> Result<Message, ChannelError> {
        let params = self.params("accept")?;
        Ok(Message::Accept(AcceptChannel {
            channel_id: self.snap.channel_id,
            update_key: params.key_s,
            payout_key: params.payout_s,
        }))
    }

    /// Accepts an [`OpenChannel`] as S: persist, then send [`AcceptChannel`].
    pub fn accept(
        secrets: ChannelSecrets,
        open: &OpenChannel,
        payout_key: PublicKey,
        height: u32,
    ) -> Result<(Self, Vec<Action>), ChannelError> {
        check_terms(open.capacity_sat, open.push_sat, open.shared_delay)?;
        let own_key = secrets.key.public_key();
        if own_key == open.update_key {
            return Err(ChannelError::InvalidTerms {
                reason: "both parties use the same key",
            });
        }
        let terms = OpenTerms {
            capacity_sat: open.capacity_sat,
            push_sat: open.push_sat,
            shared_delay: open.shared_delay,
            update_window: open.update_window,
            payout_key: open.payout_key,
        };
        let mut snap = Self::empty_snapshot(Party::S, own_key, open.channel_id, terms, height);
        snap.params = Some(ChannelParams {
            channel_id: open.channel_id,
            capacity_sat: open.capacity_sat,
            shared_delay: open.shared_delay,
            update_window: open.update_window,
            key_a: open.update_key,
            key_s: own_key,
            payout_a: open.payout_key,
            payout_s: payout_key,
        });
        let mut channel = Self::with_snapshot(secrets, snap)?;
        let msg = channel.accept_message()?;
        let actions = channel.commit(vec![msg], vec![]);
        Ok((channel, actions))
    }

    /// Reloads a channel from its last persisted snapshot (after a restart). Any secret nonce
    /// of a pending proposal is gone; send [`Input::Connected`] to resume.
    pub fn restore(secrets: ChannelSecrets, snapshot: Snapshot) -> Result<Self, ChannelError> {
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(ChannelError::BadSnapshot {
                reason: "unknown snapshot version",
            });
        }
        if secrets.key.public_key() != snapshot.own_key {
            return Err(ChannelError::BadSnapshot {
                reason: "snapshot belongs to another key",
            });
        }
        // A snapshot stored before the peer's ids were tracked: its complete state's PTLCs
        // of the peer's are used ids too.
        let mut snapshot = snapshot;
        let used = snapshot
            .complete
            .as_ref()
            .into_iter()
            .flat_map(|c| c.body.ptlcs.iter())
            .filter(|p| p.offerer != snapshot.side)
            .map(|p| p.id / 2 + 1)
            .max()
            .unwrap_or(0);
        snapshot.peer_next_ptlc = snapshot.peer_next_ptlc.max(used);
        let mut channel = Self::with_snapshot(secrets, snapshot)?;
        channel.keep_complete_leaf_hash()?;
        Ok(channel)
    }

    /// Makes sure the complete state's settlement leaf hash is in the log. The log is not in
    /// the snapshot's serde form: a driver that stored only that restores an empty log, and a
    /// channel that cannot answer a stale update; it is refused. A log without the complete
    /// state's own hash (an earlier build completed a state from the chain without keeping it)
    /// gets it back: it is a function of the state and the channel's parameters.
    fn keep_complete_leaf_hash(&mut self) -> Result<(), ChannelError> {
        let Some(complete) = self.snap.complete.as_ref() else {
            return Ok(());
        };
        let number = complete.body.number;
        if self.snap.settlement_leaf_hashes.contains_key(&number) {
            return Ok(());
        }
        if self.snap.settlement_leaf_hashes.is_empty() && number > 0 {
            return Err(ChannelError::BadSnapshot {
                reason: "settlement leaf hashes missing: they are stored beside the snapshot, \
                         not in its serde form (see node::store)",
            });
        }
        let body = complete.body.clone();
        let leaf = self.txs("restore")?.digests(&body)?.settlement_leaf_hash;
        std::sync::Arc::make_mut(&mut self.snap.settlement_leaf_hashes).insert(number, leaf);
        Ok(())
    }

    /// The current snapshot (what the last `Persist` stored, or will store).
    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.snap.phase()
    }

    /// The last complete state.
    pub fn latest(&self) -> Option<&StateBody> {
        self.snap.complete.as_ref().map(|c| &c.body)
    }

    /// The outpoints whose spends this channel must hear about, from its snapshot alone: the
    /// funding output once a state is complete, the update output on chain during a
    /// unilateral close, and the settled PTLC outputs. A driver that restarts watches these
    /// again; the `Watch` actions that announced them were carried out before the restart.
    pub fn watched(&self) -> Vec<OutPoint> {
        let mut outpoints = vec![];
        if self.snap.phase() == Phase::Closed && self.snap.on_chain().is_none() {
            return outpoints;
        }
        if self.snap.complete.is_some() {
            outpoints.extend(self.snap.funding_outpoint);
        }
        if let Some(oc) = self.snap.on_chain() {
            outpoints.push(oc.outpoint);
        }
        if let Ok(settled) = self.settled_ptlcs() {
            outpoints.extend(settled.into_iter().map(|(_, outpoint)| outpoint));
        }
        outpoints
    }

    /// While an older state of this channel is on chain and the peer's withheld proposal
    /// can still be completed: the last height by which its completion should be published
    /// so that it confirms before the on-chain state's settlement can (the settlement may
    /// confirm `shared_delay` blocks after the update, BIP68). `Some(0)` once the withheld
    /// state can no longer win (settled, or nothing left to complete); `None` while the
    /// channel is not being closed on chain or the update is unconfirmed.
    pub fn sale_window(&self) -> Option<u32> {
        let oc = self.snap.on_chain()?;
        let pending_sellable = self.snap.pending().is_some() && oc.settlement_txid.is_none();
        if !pending_sellable {
            return Some(0);
        }
        let at = oc.confirmed_at?;
        let delay = u32::from(self.snap.params.as_ref()?.shared_delay);
        Some((at + delay).saturating_sub(1 + SALE_WINDOW_MARGIN))
    }

    /// The PTLC of the latest complete state that must be resolved on chain at `height`, while
    /// the channel is not yet closing: one we are paid by and know the secret of, or one we
    /// offered, still unresolved off chain once fewer than shared_delay +
    /// [`SALE_WINDOW_MARGIN`] + 1 blocks are left before its expiry (see `ptlc_deadline`).
    pub fn ptlc_due(&self, height: u32) -> Option<&PtlcRecord> {
        let open = matches!(self.snap.stage, Stage::Open { .. });
        if !open || !self.snap.funding_confirmed {
            return None;
        }
        self.latest()?.ptlcs.iter().find(|p| {
            let ours_to_claim = p.offerer != self.snap.side;
            (!ours_to_claim || self.snap.ptlc_secrets.contains_key(&p.id))
                && self.ptlc_deadline(p).is_some_and(|at| height >= at)
        })
    }

    /// The height from which `ptlc` must be resolved on chain rather than off, for either
    /// side: shared_delay + [`SALE_WINDOW_MARGIN`] + 1 blocks before its expiry, so that the
    /// latest update confirms and its settlement puts the PTLC output on chain (the margin
    /// for both to be mined) before the expiry.
    ///
    /// The party it pays must have its claim confirmed before the offerer's timeout is
    /// valid. The offerer must not wait for the expiry either: the claim leaf has no
    /// timelock, and in eltoo the output exists only once the settlement has waited
    /// shared_delay blocks after the update. An offerer that went on chain at the expiry
    /// would let a stalling peer claim, and reveal the secret, up to shared_delay + 2 blocks
    /// after it, racing the timeout; the LSP that bought a signature with the PTLC would
    /// learn it too late to publish the completed state (`PaymentError::DelayTooShort`).
    /// Going on chain here, the output is there by the expiry, the timeout competes from
    /// the next block, and the secret is on chain (or the PTLC timed out) by the expiry +
    /// [`SALE_WINDOW_MARGIN`] at the latest.
    fn ptlc_deadline(&self, ptlc: &PtlcRecord) -> Option<u32> {
        let delay = u32::from(self.snap.params.as_ref()?.shared_delay);
        Some(
            ptlc.expiry
                .height()
                .saturating_sub(delay + SALE_WINDOW_MARGIN + 1),
        )
    }

    /// Whether the pending update is a countersigned proposal one past `latest`: the peer's,
    /// which we may complete if its signature is sold (we cannot tell whether the peer
    /// withholds it or has just not sent it yet), or our own withheld one, which we must
    /// recognise if the peer publishes it after buying our signature.
    fn sellable_on_chain(&self, latest: u64) -> bool {
        self.snap.pending().is_some_and(|p| {
            p.countersignature().is_some() && p.body.number == latest + 1 && !p.is_revert()
        })
    }

    /// The latest complete state's update, signed and bound to the update output on chain,
    /// if the state on chain is older and not yet settled.
    fn override_on_chain(&self) -> Result<Option<Transaction>, ChannelError> {
        let (Some(oc), Some(rec)) = (self.snap.on_chain(), &self.snap.complete) else {
            return Ok(None);
        };
        let m = oc.state;
        if m >= rec.body.number || oc.settlement_txid.is_some() {
            return Ok(None);
        }
        let leaf = self
            .snap
            .settlement_leaf_hashes
            .get(&m)
            .copied()
            .ok_or(ChannelError::UnknownOnChainState { state: m })?;
        let spent = txs::Spent::Update {
            outpoint: oc.outpoint,
            state: u32::try_from(m).map_err(|_| ChannelError::UnknownOnChainState { state: m })?,
            settlement_leaf_hash: leaf,
        };
        Ok(Some(self.latest_update(&spent)?))
    }

    /// Our latest complete state's update, fully signed, spending `spent`.
    fn latest_update(&self, spent: &txs::Spent) -> Result<Transaction, ChannelError> {
        let rec = self
            .snap
            .complete
            .as_ref()
            .ok_or(self.unexpected("update"))?;
        Ok(txs::signed_update(
            self.txs("update")?,
            &rec.body,
            &rec.sig_a,
            &rec.sig_s,
            spent,
        )?)
    }

    /// The price point T = R + e·P of the proposer's signature on the pending update, from
    /// its committed nonce: what the pending state's completion costs.
    pub fn pending_price_point(&self) -> Option<AdaptorPoint> {
        let pending = self.snap.pending()?;
        if pending.is_revert() {
            // A revert is never sold: nothing to price.
            return None;
        }
        let params = self.snap.params.as_ref()?;
        let m = self
            .txs("price_point")
            .ok()?
            .update_sighash(&pending.body)
            .ok()?;
        price_point(
            &pending.proposer_nonce,
            &key_of(params, pending.proposer(self.snap.side)),
            &m,
        )
        .ok()
    }

    /// Handles one input. On error nothing changed and there is nothing to do.
    pub fn handle(&mut self, input: Input) -> Result<Vec<Action>, ChannelError> {
        match input {
            Input::Message(msg) => self.on_message(msg),
            Input::PeerBytes(bytes) => match PeerMessage::decode(&bytes)? {
                Decoded::Message(PeerMessage::Channel(msg)) => self.on_message(msg),
                Decoded::Message(PeerMessage::Payment(msg)) => {
                    Err(ChannelError::NotChannelMessage {
                        message: msg.name(),
                    })
                }
                // A later version's optional message: nothing for this channel to do.
                Decoded::Ignored { .. } => Ok(vec![]),
            },
            Input::Command(cmd) => self.on_command(cmd),
            Input::Chain(event) => self.on_chain(event),
            Input::Connected => {
                if self.snap.phase() == Phase::Offered {
                    // The open may have been lost with the connection.
                    return Ok(vec![Action::Send(self.open_message())]);
                }
                let mut sends = vec![Action::Send(Message::Reestablish(Reestablish {
                    channel_id: self.snap.channel_id,
                    next_state: self.next_number(),
                }))];
                // A state we bought: the peer sees its signature before any payment message
                // (a receipt) can reach it; a repeat is harmless.
                let bought = self.snap.bought;
                if let Some(rec) = self
                    .snap
                    .complete
                    .as_ref()
                    .filter(|r| Some(r.body.number) == bought)
                {
                    sends.push(Action::Send(self.complete_message(rec)));
                }
                Ok(sends)
            }
            Input::Time(_) => Ok(vec![]),
            Input::Randomness(bytes) => {
                let mut engine = sha256::Hash::engine();
                engine.input(&self.entropy);
                engine.input(&bytes);
                self.entropy = sha256::Hash::from_engine(engine).to_byte_array();
                Ok(vec![])
            }
        }
    }

    // ---- helpers ----

    fn params(&self, what: &'static str) -> Result<&ChannelParams, ChannelError> {
        self.snap.params.as_ref().ok_or(ChannelError::Unexpected {
            what,
            phase: self.snap.phase(),
        })
    }

    /// The channel's transaction builders (parameters must be known).
    fn txs(&self, what: &'static str) -> Result<&txs::ChannelTxs, ChannelError> {
        let params = self.params(what)?;
        Ok(self.txs.get_or_init(|| txs::ChannelTxs::new(params)))
    }

    fn complete_number(&self) -> Option<u64> {
        self.snap.complete.as_ref().map(|c| c.body.number)
    }

    fn next_number(&self) -> u64 {
        self.complete_number().map_or(0, |n| n + 1)
    }

    fn unexpected(&self, what: &'static str) -> ChannelError {
        ChannelError::Unexpected {
            what,
            phase: self.snap.phase(),
        }
    }

    fn aux(&mut self) -> [u8; 32] {
        let mut engine = sha256::Hash::engine();
        engine.input(b"asyncpay/channel-aux");
        engine.input(&self.entropy);
        engine.input(&self.aux_counter.to_be_bytes());
        engine.input(&self.snap.next_nonce_session.to_be_bytes());
        self.aux_counter += 1;
        sha256::Hash::from_engine(engine).to_byte_array()
    }

    /// Reserves the next session and advances the snapshot's counter. The public nonce must
    /// only leave through [`Channel::commit`], which persists the counter first.
    ///
    /// `m` is the message the nonce will sign. It is mixed into the derivation so that a
    /// party restored from an old backup, whose counter hands out a session again, never
    /// signs a different message with the same nonce: for the same message it makes the same
    /// signature again, which reveals nothing; the driver's randomness
    /// ([`Input::Randomness`]) makes even that unlikely.
    fn fresh_nonce(&mut self, m: &[u8; 32]) -> Result<SecretNonce, ChannelError> {
        let mut engine = sha256::Hash::engine();
        engine.input(&self.aux());
        engine.input(m);
        let aux = sha256::Hash::from_engine(engine).to_byte_array();
        let own = self.key.public_key();
        let pending = self.nonces.reserve(&own, &aux)?;
        let nonce = pending.persist(&mut SnapshotCounter(&mut self.snap.next_nonce_session))?;
        Ok(nonce)
    }

    /// Signs `m` with a fresh committed nonce (used for countersignatures).
    fn sign_fresh(&mut self, m: &[u8; 32]) -> Result<Signature, ChannelError> {
        let nonce = self.fresh_nonce(m)?;
        Ok(nonce.sign(&self.key, m)?)
    }

    /// The only way messages leave: the snapshot is persisted first whenever any of them
    /// carries a signature or nonce (and whenever `others` follow, so that what they report
    /// is durable too).
    fn commit(&mut self, sends: Vec<Message>, others: Vec<Action>) -> Vec<Action> {
        debug_assert!(
            self.snap.complete.as_ref().is_none_or(|c| self
                .snap
                .settlement_leaf_hashes
                .contains_key(&c.body.number)),
            "a complete state's leaf hash is kept"
        );
        let mut actions = vec![Action::Persist(Box::new(self.snap.clone()))];
        debug_assert!(sends.iter().all(|m| self.snap.covers(m)));
        actions.extend(sends.into_iter().map(Action::Send));
        actions.extend(others);
        actions
    }
}

fn witness_sig(input: &bitcoin::TxIn, at: usize) -> Option<Signature> {
    let bytes = input.witness.nth(at)?;
    let bytes: [u8; 64] = bytes.get(..64)?.try_into().ok()?;
    Signature::from_bytes(bytes).ok()
}

fn key_of(params: &ChannelParams, party: Party) -> PublicKey {
    match party {
        Party::A => params.key_a,
        Party::S => params.key_s,
    }
}

fn check_terms(capacity_sat: u64, push_sat: u64, shared_delay: u16) -> Result<(), ChannelError> {
    if capacity_sat == 0 || capacity_sat > 21_000_000 * 100_000_000 {
        return Err(ChannelError::InvalidTerms {
            reason: "capacity out of range",
        });
    }
    if push_sat > capacity_sat {
        return Err(ChannelError::InvalidTerms {
            reason: "push exceeds capacity",
        });
    }
    if shared_delay == 0 {
        return Err(ChannelError::InvalidTerms {
            reason: "shared delay is zero",
        });
    }
    Ok(())
}

fn debit(body: &mut StateBody, party: Party, amount: u64) -> Result<(), ChannelError> {
    if amount == 0 {
        return Err(ChannelError::ZeroAmount);
    }
    let balance = body.balance_mut(party);
    if *balance < amount {
        return Err(ChannelError::InsufficientBalance {
            needed: amount,
            available: *balance,
        });
    }
    *balance -= amount;
    Ok(())
}

fn find_ptlc(
    body: &StateBody,
    id: u64,
    proposer: Party,
    what: &'static str,
) -> Result<usize, ChannelError> {
    let at = body
        .ptlcs
        .iter()
        .position(|p| p.id == id)
        .ok_or(ChannelError::UnknownPtlc { id })?;
    if body.ptlcs[at].offerer == proposer {
        return Err(ChannelError::NotPayee { id, what });
    }
    Ok(at)
}
