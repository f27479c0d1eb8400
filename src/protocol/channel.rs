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
//! `Proposed`, `CounterSigned`, `Withheld`, `ForceClosing`, `Closed`.
//!
//! ```
//! use asyncpay::crypto::keys::SecretKey;
//! use asyncpay::crypto::nonce::NonceSeed;
//! use asyncpay::protocol::channel::{Action, Channel, ChannelSecrets, Command, Input, OpenTerms};
//! use asyncpay::protocol::messages::ChannelId;
//! use bitcoin::OutPoint;
//!
//! let secrets = |b: u8| ChannelSecrets {
//!     key: SecretKey::from_bytes([b; 32]).unwrap(),
//!     nonce_seed: NonceSeed::from_bytes([b + 1; 32]),
//! };
//! let payout = |b: u8| SecretKey::from_bytes([b; 32]).unwrap().public_key();
//! let terms = OpenTerms {
//!     capacity_sat: 100_000, push_sat: 0, shared_delay: 6, update_window: 1_000,
//!     payout_key: payout(10),
//! };
//! let (mut a, actions) = Channel::open(secrets(1), ChannelId([9; 32]), terms, 100)?;
//! // Persist first, then the open message.
//! assert!(matches!(actions[0], Action::Persist(_)));
//! let Action::Send(open) = &actions[1] else { panic!() };
//! let asyncpay::protocol::messages::Message::Open(open) = open else { panic!() };
//! let (mut s, actions) = Channel::accept(secrets(3), open, payout(11), 100)?;
//! let Action::Send(accept) = actions.last().unwrap().clone() else { panic!() };
//! a.handle(Input::Message(accept))?;
//! // A builds the funding transaction with its wallet, then proposes state 0.
//! let actions = a.handle(Input::Command(Command::FundingBuilt { outpoint: OutPoint::null() }))?;
//! assert!(matches!(actions[0], Action::Persist(_)));
//! # Ok::<(), asyncpay::protocol::channel::ChannelError>(())
//! ```

use std::collections::BTreeMap;

use bitcoin::hashes::{sha256, Hash as _, HashEngine as _};
use bitcoin::{OutPoint, Transaction};
use serde::{Deserialize, Serialize};

use crate::crypto::adaptor::{price_point, sells, AdaptorPoint, AdaptorSecret, EncryptedSignature};
use crate::crypto::keys::{PublicKey, SecretKey, Signature};
use crate::crypto::nonce::{
    NonceCounterStore, NonceError, NonceSeed, NonceSource, PublicNonce, SecretNonce,
};
use crate::tx::{Party, PtlcExpiry, TxError, STATE_LOCKTIME_BASE};

use crate::tx::close::{self, CloseNonce};

use super::messages::{
    AcceptChannel, Change, ChannelId, CloseAccept, CloseProposal, CloseSigned, CompleteUpdate,
    CounterSignUpdate, Message, MessageError, OpenChannel, ProposeUpdate, Reestablish,
    RevealedSecret,
};
use super::transactions as txs;

/// Snapshot format version; [`Channel::restore`] refuses others.
pub const SNAPSHOT_VERSION: u8 = 2;

/// At most this many PTLCs may be pending in one state (bounds transaction and message size).
pub const MAX_PTLCS: usize = 32;

/// Fee a PTLC timeout pays out of its amount (it is signed when published, alone).
pub const TIMEOUT_FEE_SAT: u64 = 1_000;

/// Errors of the channel state machine. None of them changes the channel's state.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Peer bytes that are not a message.
    #[error("undecodable peer message")]
    Decode(#[from] MessageError),
    /// A message for another channel.
    #[error("message for channel {got:?}, this is {ours:?}")]
    WrongChannel {
        /// The message's channel.
        got: ChannelId,
        /// This channel.
        ours: ChannelId,
    },
    /// A message or command that this phase does not expect (out of order).
    #[error("{what} is not expected in phase {phase:?}")]
    Unexpected {
        /// The message or command.
        what: &'static str,
        /// The channel's phase.
        phase: Phase,
    },
    /// A message about a state other than the one under way (replayed or reordered).
    #[error("{what} for state {got}, expected state {expected}")]
    WrongState {
        /// The message.
        what: &'static str,
        /// Its state number.
        got: u64,
        /// The state this channel expects.
        expected: u64,
    },
    /// Both parties proposed the same state; A's proposal wins and this one is refused.
    #[error("proposal for state {state} collides with ours, which takes precedence")]
    ProposalCollision {
        /// The state both proposed.
        state: u64,
    },
    /// A different change for a state already countersigned.
    #[error("a different change was already signed for state {state}")]
    ConflictingProposal {
        /// The state.
        state: u64,
    },
    /// A signature that does not verify.
    #[error("invalid {what} signature for state {state}")]
    InvalidSignature {
        /// Which signature.
        what: &'static str,
        /// The state.
        state: u64,
    },
    /// The completing signature does not use the nonce committed in the proposal.
    #[error("signature for state {state} does not use the committed nonce")]
    NonceMismatch {
        /// The state.
        state: u64,
    },
    /// The committed nonce of this state was lost in a restart; reconnect to re-propose.
    #[error("nonce of state {state} was lost in a restart; reconnect to re-propose")]
    NonceLost {
        /// The state.
        state: u64,
    },
    /// A party's balance cannot pay for the change.
    #[error("balance {available} sat cannot pay {needed} sat")]
    InsufficientBalance {
        /// What the change needs.
        needed: u64,
        /// What the party has.
        available: u64,
    },
    /// A zero amount.
    #[error("amount must be positive")]
    ZeroAmount,
    /// The PTLC does not exist in the current state.
    #[error("no ptlc {id} in the current state")]
    UnknownPtlc {
        /// The PTLC's number.
        id: u64,
    },
    /// A PTLC number already used, or one the proposer may not assign.
    #[error("ptlc id {id} is taken or not the proposer's to assign")]
    BadPtlcId {
        /// The PTLC's number.
        id: u64,
    },
    /// The party may not make this change to the PTLC (only its payee fulfils or fails it).
    #[error("only the payee of ptlc {id} may {what} it")]
    NotPayee {
        /// The PTLC's number.
        id: u64,
        /// What was attempted.
        what: &'static str,
    },
    /// The revealed secret is not the discrete log of the PTLC's point.
    #[error("secret does not open ptlc {id}")]
    WrongSecret {
        /// The PTLC's number.
        id: u64,
    },
    /// Too many PTLCs.
    #[error("state already holds {count} ptlcs, the limit")]
    TooManyPtlcs {
        /// How many there are.
        count: usize,
    },
    /// The PTLC's expiry breaks the timing rule (≥ 2·shared_delay away, within the window).
    #[error("ptlc expiry refused")]
    Expiry(#[from] crate::tx::ptlc::ExpiryError),
    /// The open terms are unusable.
    #[error("invalid open terms: {reason}")]
    InvalidTerms {
        /// Why.
        reason: &'static str,
    },
    /// The peer claims a complete state this party has never seen: its snapshot is behind.
    #[error("peer is at state {peer}, we are at {ours}: our snapshot is stale")]
    PeerAhead {
        /// The peer's complete state.
        peer: u64,
        /// Ours.
        ours: u64,
    },
    /// An update of an unknown state is on chain.
    #[error("an update of unknown state {state} is on chain")]
    UnknownOnChainState {
        /// The state in its locktime.
        state: u64,
    },
    /// The pending state was given up by a revert: its signature can no longer complete it.
    #[error("state {state} was abandoned by a revert")]
    StateAbandoned {
        /// The abandoned state.
        state: u64,
    },
    /// A payment role has offered to buy the pending state's signature: the peer may neither
    /// revert that state nor replace its nonce (the price point would no longer be for sale).
    #[error("state {state} is priced by a payment in flight: {what} refused")]
    Priced {
        /// The priced state.
        state: u64,
        /// What was refused.
        what: &'static str,
    },
    /// A revert that does not abandon the pending state right after the last complete one.
    #[error("revert of state {abandoned} refused: the pending state is {pending:?}")]
    BadRevert {
        /// The state the revert gives up.
        abandoned: u64,
        /// The state pending here, if any.
        pending: Option<u64>,
    },
    /// A PTLC claim could not be made or its secret not read.
    #[error("ptlc claim")]
    PtlcClaim(#[from] crate::tx::ptlc::ClaimError),
    /// A cooperative close needs a state without PTLCs.
    #[error("cannot close cooperatively with {count} ptlcs pending")]
    PtlcsPending {
        /// How many there are.
        count: usize,
    },
    /// The peer's MuSig2 nonce is not an encoding of two curve points.
    #[error("malformed musig2 close nonce")]
    MalformedCloseNonce,
    /// A snapshot that does not belong to these secrets or this format.
    #[error("snapshot does not match: {reason}")]
    BadSnapshot {
        /// Why.
        reason: &'static str,
    },
    /// A transaction could not be built.
    #[error("transaction")]
    Tx(#[from] TxError),
    /// A PTLC claim signature could not be made or checked.
    #[error("ptlc claim signature")]
    Claim(#[from] crate::crypto::adaptor::AdaptorError),
    /// Nonce handling failed.
    #[error("nonce")]
    Nonce(#[from] NonceError),
}

impl ChannelError {
    /// A code for the peer's [`ErrorMessage`](super::messages::ErrorMessage): 1 malformed,
    /// 2 out of order, 3 invalid signature, 4 refused change, 5 other.
    pub fn code(&self) -> u16 {
        match self {
            ChannelError::Decode(_) | ChannelError::WrongChannel { .. } => 1,
            ChannelError::Unexpected { .. }
            | ChannelError::WrongState { .. }
            | ChannelError::ProposalCollision { .. }
            | ChannelError::ConflictingProposal { .. } => 2,
            ChannelError::InvalidSignature { .. } | ChannelError::NonceMismatch { .. } => 3,
            ChannelError::MalformedCloseNonce => 1,
            ChannelError::InsufficientBalance { .. }
            | ChannelError::ZeroAmount
            | ChannelError::UnknownPtlc { .. }
            | ChannelError::BadPtlcId { .. }
            | ChannelError::NotPayee { .. }
            | ChannelError::WrongSecret { .. }
            | ChannelError::TooManyPtlcs { .. }
            | ChannelError::StateAbandoned { .. }
            | ChannelError::Priced { .. }
            | ChannelError::BadRevert { .. }
            | ChannelError::PtlcsPending { .. }
            | ChannelError::Expiry(_)
            | ChannelError::Claim(_)
            | ChannelError::InvalidTerms { .. } => 4,
            _ => 5,
        }
    }
}

/// The secrets of one channel, supplied by the driver at creation and at every restore.
///
/// Use a distinct key and nonce seed per channel: nonces are derived from seed, session and
/// key, and each channel keeps its own session counter.
pub struct ChannelSecrets {
    /// This party's channel key (P_A or P_S): update signatures, PTLC halves, close.
    pub key: SecretKey,
    /// Seed of the committed nonces.
    pub nonce_seed: NonceSeed,
}

impl core::fmt::Debug for ChannelSecrets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChannelSecrets")
            .field("key", &self.key)
            .field("nonce_seed", &self.nonce_seed)
            .finish()
    }
}

/// What the opener chooses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenTerms {
    /// Value of the funding output.
    pub capacity_sat: u64,
    /// The acceptor's initial balance.
    pub push_sat: u64,
    /// Blocks between an update confirming and its settlement.
    pub shared_delay: u16,
    /// Blocks ahead within which a PTLC must expire.
    pub update_window: u32,
    /// The opener's payout key.
    pub payout_key: PublicKey,
}

/// The agreed parameters of an open channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelParams {
    /// The channel's id.
    pub channel_id: ChannelId,
    /// Value of the funding output.
    pub capacity_sat: u64,
    /// Relative delay of every settlement, in blocks.
    pub shared_delay: u16,
    /// Blocks ahead within which a PTLC must expire.
    pub update_window: u32,
    /// A's channel key.
    pub key_a: PublicKey,
    /// S's channel key.
    pub key_s: PublicKey,
    /// A's payout key.
    pub payout_a: PublicKey,
    /// S's payout key.
    pub payout_s: PublicKey,
}

/// A PTLC in a channel state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PtlcRecord {
    /// Its number (even: offered by A, odd: offered by S).
    pub id: u64,
    /// Who offered it (and gets it back after expiry).
    pub offerer: Party,
    /// Its amount.
    pub amount_sat: u64,
    /// The point whose discrete log claims it.
    pub point: AdaptorPoint,
    /// Its expiry height.
    pub expiry: PtlcExpiry,
    /// The offerer's claim half, encrypted to `point`.
    pub claim_signature: EncryptedSignature,
}

/// The balances and PTLCs of one state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateBody {
    /// n.
    pub number: u64,
    /// A's balance.
    pub to_a: u64,
    /// S's balance.
    pub to_s: u64,
    /// Pending PTLCs, in output order.
    pub ptlcs: Vec<PtlcRecord>,
}

impl StateBody {
    /// to_a + to_s + Σ ptlcs; equals the capacity in every state (saturating on overflow,
    /// which no valid state reaches).
    pub fn total(&self) -> u64 {
        self.ptlcs
            .iter()
            .fold(self.to_a.saturating_add(self.to_s), |acc, p| {
                acc.saturating_add(p.amount_sat)
            })
    }

    fn balance_mut(&mut self, party: Party) -> &mut u64 {
        match party {
            Party::A => &mut self.to_a,
            Party::S => &mut self.to_s,
        }
    }

    /// The balance of `party`.
    pub fn balance(&self, party: Party) -> u64 {
        match party {
            Party::A => self.to_a,
            Party::S => self.to_s,
        }
    }
}

/// A state both parties have signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateRecord {
    /// The state.
    pub body: StateBody,
    /// Who proposed it.
    pub proposer: Party,
    /// The change that led to it.
    pub change: Change,
    /// A's signature on U_n.
    pub sig_a: Signature,
    /// S's signature on U_n.
    pub sig_s: Signature,
}

impl StateRecord {
    /// The proposer's signature on U_n: what a [`CompleteUpdate`] of this state carries.
    pub fn proposer_signature(&self) -> Signature {
        match self.proposer {
            Party::A => self.sig_a,
            Party::S => self.sig_s,
        }
    }
}

/// An update under way. `Debug` leaves out a withheld signature (see [`Event`]).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingUpdate {
    /// The proposed state.
    pub body: StateBody,
    /// Its change.
    pub change: Change,
    /// Who proposed it.
    pub proposer: Party,
    /// The proposer's committed nonce.
    pub proposer_nonce: PublicNonce,
    /// Whether the proposer keeps its signature back (pay-for-signature).
    pub withhold: bool,
    /// The non-proposer's signature, once made or received.
    pub countersignature: Option<Signature>,
    /// The proposer's signature, once made (kept here while withheld).
    pub proposer_signature: Option<Signature>,
}

impl core::fmt::Debug for PendingUpdate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PendingUpdate")
            .field("body", &self.body)
            .field("change", &self.change)
            .field("proposer", &self.proposer)
            .field("proposer_nonce", &self.proposer_nonce)
            .field("withhold", &self.withhold)
            .field("countersignature", &self.countersignature)
            .field(
                "proposer_signature",
                &self.proposer_signature.map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// What is on chain after a unilateral close began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnChain {
    /// State of the newest update seen on chain.
    pub state: u64,
    /// Its update output.
    pub outpoint: OutPoint,
    /// Height it confirmed at.
    pub confirmed_at: Option<u32>,
    /// Whether our settlement has been broadcast.
    pub settlement_broadcast: bool,
    /// The settlement's txid, once seen.
    pub settlement_txid: Option<bitcoin::Txid>,
    /// PTLC ids already timed out or claimed by us.
    pub resolved_ptlcs: Vec<u64>,
    /// PTLC ids whose output was seen spent (by us or the peer): nothing to publish again.
    #[serde(default)]
    pub spent_ptlcs: Vec<u64>,
}

/// Blocks kept in hand between the last height a bought state should be published at and
/// the first height the older on-chain state's settlement can confirm at: one for the
/// publication to propagate, one for it to be mined.
pub const SALE_WINDOW_MARGIN: u32 = 2;

/// The named states of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// The opener sent its terms.
    Offered,
    /// Both keys are known; the opener builds the funding transaction.
    Accepted,
    /// A complete state, nothing under way.
    Funded,
    /// We proposed a state and wait for the countersignature.
    Proposed,
    /// We countersigned the peer's proposal and wait for its signature.
    CounterSigned,
    /// We signed our proposal and keep the signature back.
    Withheld,
    /// A cooperative close of the last complete state is being signed or awaits its
    /// confirmation; no update is accepted.
    Closing,
    /// An update is on chain; we drive it to our latest settlement.
    ForceClosing,
    /// The channel's funds have left it.
    Closed,
}

/// Everything a party must keep durably about a channel. Secret keys and secret nonces are
/// not in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`SNAPSHOT_VERSION`].
    pub version: u8,
    /// Which party we are.
    pub side: Party,
    /// Our channel key (checked against the secrets on restore).
    pub own_key: PublicKey,
    /// The channel's id.
    pub channel_id: ChannelId,
    /// The phase.
    pub phase: Phase,
    /// The opener's terms while offered.
    pub terms: Option<OpenTerms>,
    /// The agreed parameters once accepted.
    pub params: Option<ChannelParams>,
    /// The funding output, once known.
    pub funding_outpoint: Option<OutPoint>,
    /// Whether the funding transaction confirmed.
    pub funding_confirmed: bool,
    /// The last complete state.
    pub complete: Option<StateRecord>,
    /// The update under way.
    pub pending: Option<PendingUpdate>,
    /// The next unused nonce session: advanced before any public nonce leaves.
    pub next_nonce_session: u64,
    /// Our next PTLC counter.
    pub next_ptlc: u64,
    /// Settlement leaf hash of every state we signed, to answer a stale update. It grows by
    /// 32 bytes a state, so it is stored as one hex string of `state ‖ hash` records
    /// rather than as a JSON map of byte arrays (which costs ten times as much to write).
    #[serde(with = "leaf_hash_log")]
    pub settlement_leaf_hashes: BTreeMap<u64, [u8; 32]>,
    /// The chain height last reported.
    pub height: u32,
    /// Unilateral close progress.
    pub on_chain: Option<OnChain>,
    /// The last pending state given up by a revert, with the signatures we held for it.
    #[serde(default)]
    pub abandoned: Option<PendingUpdate>,
    /// The cooperative close under way.
    #[serde(default)]
    pub closing: Option<CloseRecord>,
    /// The last complete state, if we completed it with the peer's signature bought from its
    /// payee: on every reconnection we show the peer its signature (its proof of the
    /// purchase) before anything else.
    #[serde(default)]
    pub bought: Option<u64>,
    /// Our proposal that lost a collision with the peer's, to be proposed again once the
    /// peer's completes.
    #[serde(default)]
    pub dropped: Option<DroppedProposal>,
    /// The pending state a payment role has priced ([`Command::Price`]): until it completes
    /// or we revert it ourselves, a revert of it by the peer and a new nonce for it are
    /// refused.
    #[serde(default)]
    pub priced: Option<u64>,
    /// Secrets of PTLCs we are paid by (given to `Fulfil` or `ProvideSecret`), or that we
    /// offered and learned from a claim on chain: what claims a PTLC output after a
    /// unilateral close.
    #[serde(default)]
    pub ptlc_secrets: BTreeMap<u64, RevealedSecret>,
}

/// A proposal of ours that lost a collision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DroppedProposal {
    /// Its change.
    pub change: Change,
    /// Whether we would keep our signature back.
    pub withhold: bool,
}

/// A cooperative close: what was proposed and what each side has sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseRecord {
    /// Who proposed it (and pays its fee).
    pub proposer: Party,
    /// The fee, from the proposer's balance.
    pub fee_sat: u64,
    /// The proposer's MuSig2 public nonce (66 bytes).
    pub proposer_nonce: Vec<u8>,
    /// The acceptor's MuSig2 public nonce, once made.
    pub acceptor_nonce: Option<Vec<u8>>,
    /// The acceptor's partial signature, once made.
    pub acceptor_partial: Option<[u8; 32]>,
    /// The aggregate signature, once known.
    pub signature: Option<Signature>,
    /// The close transaction's txid.
    pub txid: bitcoin::Txid,
}

impl CloseRecord {
    fn nonce(bytes: &[u8]) -> Option<[u8; 66]> {
        bytes.try_into().ok()
    }
}

impl Snapshot {
    /// Whether this snapshot makes `msg` safe to send: it holds the signature or the nonce
    /// commitment the message carries. Drivers and tests use it to check persist-before-send.
    pub fn covers(&self, msg: &Message) -> bool {
        let own = |rec: &StateRecord| match self.side {
            Party::A => rec.sig_a,
            Party::S => rec.sig_s,
        };
        match msg {
            Message::Propose(m) => {
                self.pending.as_ref().is_some_and(|p| {
                    p.proposer == self.side
                        && p.proposer_nonce == m.nonce
                        && p.body.number == m.state
                }) && self.next_nonce_session > 0
            }
            Message::CounterSign(m) => {
                self.pending.as_ref().is_some_and(|p| {
                    p.body.number == m.state && p.countersignature == Some(m.signature)
                }) || self
                    .complete
                    .as_ref()
                    .is_some_and(|c| c.body.number == m.state && own(c) == m.signature)
            }
            Message::Complete(m) => {
                self.complete.as_ref().is_some_and(|c| {
                    c.body.number == m.state && c.proposer_signature() == m.signature
                }) || self.pending.as_ref().is_some_and(|p| {
                    p.body.number == m.state && p.proposer_signature == Some(m.signature)
                })
            }
            Message::CloseProposal(m) => self.closing.as_ref().is_some_and(|c| {
                c.proposer == self.side
                    && c.fee_sat == m.fee_sat
                    && CloseRecord::nonce(&c.proposer_nonce) == Some(m.nonce)
            }),
            Message::CloseAccept(m) => self.closing.as_ref().is_some_and(|c| {
                c.proposer != self.side
                    && c.acceptor_nonce.as_deref().and_then(CloseRecord::nonce) == Some(m.nonce)
                    && c.acceptor_partial == Some(m.partial_signature)
            }),
            Message::CloseSigned(m) => self
                .closing
                .as_ref()
                .is_some_and(|c| c.signature == Some(m.signature)),
            _ => true,
        }
    }
}

/// A user command.
pub enum Command {
    /// The opener's wallet built the funding transaction (not yet broadcast): propose state 0.
    FundingBuilt {
        /// Where its channel output is.
        outpoint: OutPoint,
    },
    /// Offer a PTLC to the peer.
    AddPtlc {
        /// Amount.
        amount_sat: u64,
        /// Payment point T.
        point: AdaptorPoint,
        /// Expiry height.
        expiry: u32,
    },
    /// Claim a PTLC offered by the peer with its secret.
    Fulfil {
        /// The PTLC.
        id: u64,
        /// t with t·G = T.
        secret: AdaptorSecret,
    },
    /// Give up a PTLC offered by the peer.
    Fail {
        /// The PTLC.
        id: u64,
    },
    /// Pay the peer outright; with `withhold`, keep our update signature back (it is reported
    /// in [`Event::SignatureWithheld`] to be sold by the payee).
    Transfer {
        /// Amount.
        amount_sat: u64,
        /// Keep the completing signature back.
        withhold: bool,
    },
    /// Send a withheld signature after all.
    Release,
    /// A payment role made an offer that depends on pending state `state` and its committed
    /// nonce (it priced the signature that completes it): from now on the channel refuses a
    /// revert of that state by the peer and a re-proposal of it with another nonce. Only the
    /// role lifts this, by completing the state or by a revert of its own.
    Price {
        /// The pending state.
        state: u64,
    },
    /// Complete the peer's withheld state from its signature's scalar, bought elsewhere.
    CompleteWithSecret {
        /// s of the peer's signature (the discrete log of the price point).
        secret: AdaptorSecret,
    },
    /// Give up the pending state n+1 for good (a withheld transfer that was not sold, on
    /// either side): propose state n+2 with the balances and PTLCs of state n. Once the peer
    /// countersigns, [`Command::CompleteWithSecret`] for n+1 is refused.
    Revert,
    /// Hand the channel the secret of a PTLC the peer offered us (learned elsewhere), so that
    /// it claims the PTLC output on chain after a unilateral close.
    ProvideSecret {
        /// The PTLC.
        id: u64,
        /// t with t·G = T.
        secret: AdaptorSecret,
    },
    /// Close cooperatively on the last complete state (which must hold no PTLCs), paying
    /// `fee_sat` from our balance: a MuSig2 key-path spend of the funding output.
    Close {
        /// The close transaction's fee.
        fee_sat: u64,
    },
    /// Publish the latest state.
    ForceClose,
}

impl core::fmt::Debug for Command {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::FundingBuilt { .. } => "funding_built",
            Command::AddPtlc { .. } => "add_ptlc",
            Command::Fulfil { .. } => "fulfil",
            Command::Fail { .. } => "fail",
            Command::Transfer { .. } => "transfer",
            Command::Release => "release",
            Command::Price { .. } => "price",
            Command::CompleteWithSecret { .. } => "complete_with_secret",
            Command::Revert => "revert",
            Command::Close { .. } => "close",
            Command::ProvideSecret { .. } => "provide_secret",
            Command::ForceClose => "force_close",
        }
    }
}

/// Something the chain source reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ChainEvent {
    /// A new tip.
    Block {
        /// Its height.
        height: u32,
    },
    /// A transaction was confirmed (the funding transaction, typically).
    Confirmed {
        /// Its txid.
        txid: bitcoin::Txid,
        /// The height of the block holding it.
        height: u32,
    },
    /// A transaction spending a watched outpoint, in the mempool or confirmed.
    Spend {
        /// The transaction.
        tx: Transaction,
        /// The height of the block holding it, if confirmed.
        confirmed_at: Option<u32>,
    },
}

/// One input to [`Channel::handle`].
// Inputs are handled one at a time and never stored in bulk, so their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Input {
    /// A decoded peer message.
    Message(Message),
    /// Raw peer bytes, decoded here.
    PeerBytes(Vec<u8>),
    /// A user command.
    Command(Command),
    /// A chain event.
    Chain(ChainEvent),
    /// The peer connection is (re)established: send [`Reestablish`].
    Connected,
    /// Wall-clock time, unix seconds (kept for drivers' timeouts; the channel uses heights).
    Time(u64),
    /// Fresh randomness, mixed into the auxiliary randomness of signatures.
    Randomness([u8; 32]),
}

/// Something that happened, for the user. `Debug` leaves out a withheld signature: it is
/// what is for sale, and whoever learns it can complete the state without paying.
#[derive(Clone, PartialEq)]
pub enum Event {
    /// The opener may build the funding transaction paying this script the capacity.
    Accepted {
        /// The funding output's script.
        funding_script_pubkey: bitcoin::ScriptBuf,
        /// Its value.
        capacity_sat: u64,
    },
    /// State 0 is complete: the opener may broadcast the funding transaction.
    ReadyToFund,
    /// The funding transaction confirmed; the channel can update.
    FundingConfirmed,
    /// A state is complete.
    StateCompleted {
        /// Its number.
        state: u64,
        /// What it changed.
        change: Change,
        /// A's balance.
        to_a: u64,
        /// S's balance.
        to_s: u64,
    },
    /// Our proposal lost a collision: the channel proposes it again once the peer's
    /// completes.
    ProposalDropped {
        /// What it proposed.
        change: Change,
    },
    /// A proposal that lost a collision no longer applies once the peer's state completed
    /// (for example, its PTLC's expiry is now too close): it is given up for good, and the
    /// role that asked for it must treat it as refused.
    ProposalAbandoned {
        /// What it proposed.
        change: Change,
        /// Why the channel refused it now ([`ChannelError::code`]).
        code: u16,
    },
    /// We signed our proposal and keep the signature back: hand it to the payee.
    SignatureWithheld {
        /// The state.
        state: u64,
        /// Our signature on U_state.
        signature: Signature,
        /// Its price point.
        price_point: AdaptorPoint,
    },
    /// The peer re-proposed a pending state with a new nonce (it restarted): any price
    /// point computed from the old one is void.
    NonceReplaced {
        /// The state.
        state: u64,
    },
    /// The peer published a stale update; we answered with the latest.
    StaleUpdateAnswered {
        /// The stale state.
        stale: u64,
        /// Ours.
        latest: u64,
    },
    /// A PTLC of the latest state is about to run out of time off chain: we publish the
    /// latest state to resolve it on chain (see [`Channel::ptlc_due`]).
    ClosingForPtlc {
        /// The PTLC.
        id: u64,
        /// Its expiry.
        expiry: u32,
    },
    /// A PTLC was failed back to its offerer in a complete state: whatever it paid for was
    /// not bought through it.
    PtlcFailed {
        /// The PTLC.
        id: u64,
        /// Its point.
        point: AdaptorPoint,
        /// Who offered it.
        offerer: Party,
    },
    /// A PTLC's secret became known on chain.
    PtlcSecretLearned {
        /// The PTLC.
        id: u64,
        /// Its secret.
        secret: RevealedSecret,
    },
    /// The cooperative close is fully signed: publish it (the action before this event).
    CloseSigned {
        /// The close transaction's txid.
        txid: bitcoin::Txid,
    },
    /// The cooperative close confirmed: the channel is closed.
    ClosedCooperatively {
        /// The close transaction's txid.
        txid: bitcoin::Txid,
    },
    /// The settlement confirmed: balances paid out; PTLC outputs remain to be resolved.
    Settled {
        /// The settled state.
        state: u64,
    },
}

impl core::fmt::Debug for Event {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Event::Accepted {
                funding_script_pubkey,
                capacity_sat,
            } => f
                .debug_struct("Accepted")
                .field("funding_script_pubkey", funding_script_pubkey)
                .field("capacity_sat", capacity_sat)
                .finish(),
            Event::ReadyToFund => f.write_str("ReadyToFund"),
            Event::FundingConfirmed => f.write_str("FundingConfirmed"),
            Event::StateCompleted {
                state,
                change,
                to_a,
                to_s,
            } => f
                .debug_struct("StateCompleted")
                .field("state", state)
                .field("change", change)
                .field("to_a", to_a)
                .field("to_s", to_s)
                .finish(),
            Event::ProposalDropped { change } => f
                .debug_struct("ProposalDropped")
                .field("change", change)
                .finish(),
            Event::ProposalAbandoned { change, code } => f
                .debug_struct("ProposalAbandoned")
                .field("change", change)
                .field("code", code)
                .finish(),
            Event::SignatureWithheld {
                state, price_point, ..
            } => f
                .debug_struct("SignatureWithheld")
                .field("state", state)
                .field("signature", &"<redacted>")
                .field("price_point", price_point)
                .finish(),
            Event::NonceReplaced { state } => f
                .debug_struct("NonceReplaced")
                .field("state", state)
                .finish(),
            Event::StaleUpdateAnswered { stale, latest } => f
                .debug_struct("StaleUpdateAnswered")
                .field("stale", stale)
                .field("latest", latest)
                .finish(),
            Event::ClosingForPtlc { id, expiry } => f
                .debug_struct("ClosingForPtlc")
                .field("id", id)
                .field("expiry", expiry)
                .finish(),
            Event::PtlcFailed { id, point, offerer } => f
                .debug_struct("PtlcFailed")
                .field("id", id)
                .field("point", point)
                .field("offerer", offerer)
                .finish(),
            Event::PtlcSecretLearned { id, secret } => f
                .debug_struct("PtlcSecretLearned")
                .field("id", id)
                .field("secret", secret)
                .finish(),
            Event::CloseSigned { txid } => {
                f.debug_struct("CloseSigned").field("txid", txid).finish()
            }
            Event::ClosedCooperatively { txid } => f
                .debug_struct("ClosedCooperatively")
                .field("txid", txid)
                .finish(),
            Event::Settled { state } => f.debug_struct("Settled").field("state", state).finish(),
        }
    }
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Store this snapshot durably before executing any later action.
    Persist(Box<Snapshot>),
    /// Send this message to the peer.
    Send(Message),
    /// Publish this transaction. Updates, settlements and PTLC claims pay no fee and carry a
    /// P2A anchor: submit them with a CPFP child ([`crate::tx::anchor`]) via `submitpackage`.
    Broadcast(Transaction),
    /// Report every transaction spending this outpoint ([`ChainEvent::Spend`]).
    Watch(OutPoint),
    /// Tell the user.
    Event(Event),
}

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
        height: u32,
    ) -> Snapshot {
        Snapshot {
            version: SNAPSHOT_VERSION,
            side,
            own_key,
            channel_id,
            phase: Phase::Offered,
            terms: None,
            params: None,
            funding_outpoint: None,
            funding_confirmed: false,
            complete: None,
            pending: None,
            next_nonce_session: 0,
            next_ptlc: 0,
            settlement_leaf_hashes: BTreeMap::new(),
            height,
            on_chain: None,
            abandoned: None,
            closing: None,
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
        let mut snap = Self::empty_snapshot(Party::A, own_key, channel_id, height);
        snap.terms = Some(terms.clone());
        let mut channel = Self::with_snapshot(secrets, snap)?;
        let msg = channel.open_message()?;
        let actions = channel.commit(vec![msg], vec![]);
        Ok((channel, actions))
    }

    fn open_message(&self) -> Result<Message, ChannelError> {
        let terms = self.snap.terms.as_ref().ok_or(self.unexpected("open"))?;
        Ok(Message::Open(OpenChannel {
            channel_id: self.snap.channel_id,
            capacity_sat: terms.capacity_sat,
            push_sat: terms.push_sat,
            shared_delay: terms.shared_delay,
            update_window: terms.update_window,
            update_key: self.snap.own_key,
            payout_key: terms.payout_key,
        }))
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
        let mut snap = Self::empty_snapshot(Party::S, own_key, open.channel_id, height);
        snap.phase = Phase::Accepted;
        snap.terms = Some(OpenTerms {
            capacity_sat: open.capacity_sat,
            push_sat: open.push_sat,
            shared_delay: open.shared_delay,
            update_window: open.update_window,
            payout_key: open.payout_key,
        });
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
        Self::with_snapshot(secrets, snapshot)
    }

    /// The current snapshot (what the last `Persist` stored, or will store).
    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.snap.phase
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
        if self.snap.phase == Phase::Closed && self.snap.on_chain.is_none() {
            return outpoints;
        }
        if self.snap.complete.is_some() {
            outpoints.extend(self.snap.funding_outpoint);
        }
        if let Some(oc) = &self.snap.on_chain {
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
        let oc = self.snap.on_chain.as_ref()?;
        let pending_sellable = self.snap.pending.is_some() && oc.settlement_txid.is_none();
        if !pending_sellable {
            return Some(0);
        }
        let at = oc.confirmed_at?;
        let delay = u32::from(self.snap.params.as_ref()?.shared_delay);
        Some((at + delay).saturating_sub(1 + SALE_WINDOW_MARGIN))
    }

    /// The PTLC of the latest complete state that must be resolved on chain at `height`, while
    /// the channel is not yet closing: one we are paid by and know the secret of, still
    /// unfulfilled off chain once fewer than shared_delay + [`SALE_WINDOW_MARGIN`] + 1
    /// blocks are left before its expiry (our claim must confirm before the offerer's
    /// timeout is valid), or one we offered that has expired (we take it back).
    pub fn ptlc_due(&self, height: u32) -> Option<&PtlcRecord> {
        let open = matches!(
            self.snap.phase,
            Phase::Funded | Phase::Proposed | Phase::CounterSigned | Phase::Withheld
        );
        if !open || self.snap.on_chain.is_some() || !self.snap.funding_confirmed {
            return None;
        }
        self.latest()?.ptlcs.iter().find(|p| {
            let ours_to_claim = p.offerer != self.snap.side;
            (!ours_to_claim || self.snap.ptlc_secrets.contains_key(&p.id))
                && self.ptlc_deadline(p).is_some_and(|at| height >= at)
        })
    }

    /// The height from which `ptlc` must be resolved on chain rather than off: its expiry
    /// for the offerer; for the party it pays, shared_delay + [`SALE_WINDOW_MARGIN`] + 1
    /// blocks before it, so that the settlement confirms and the claim is valid before the
    /// offerer's timeout is.
    fn ptlc_deadline(&self, ptlc: &PtlcRecord) -> Option<u32> {
        let expiry = ptlc.expiry.height();
        if ptlc.offerer == self.snap.side {
            return Some(expiry);
        }
        let delay = u32::from(self.snap.params.as_ref()?.shared_delay);
        Some(expiry.saturating_sub(delay + SALE_WINDOW_MARGIN + 1))
    }

    /// Whether the pending update is a countersigned proposal one past `latest`: the peer's,
    /// which we may complete if its signature is sold (we cannot tell whether the peer
    /// withholds it or has just not sent it yet), or our own withheld one, which we must
    /// recognise if the peer publishes it after buying our signature.
    fn sellable_on_chain(&self, latest: u64) -> bool {
        self.snap.pending.as_ref().is_some_and(|p| {
            p.countersignature.is_some()
                && p.body.number == latest + 1
                && !matches!(p.change, Change::Revert { .. })
        })
    }

    /// The latest complete state's update, signed and bound to the update output on chain,
    /// if the state on chain is older and not yet settled.
    fn override_on_chain(&self) -> Result<Option<Transaction>, ChannelError> {
        let (Some(oc), Some(rec)) = (&self.snap.on_chain, &self.snap.complete) else {
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
        let pending = self.snap.pending.as_ref()?;
        if matches!(pending.change, Change::Revert { .. }) {
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
            &key_of(params, pending.proposer),
            &m,
        )
        .ok()
    }

    /// Handles one input. On error nothing changed and there is nothing to do.
    pub fn handle(&mut self, input: Input) -> Result<Vec<Action>, ChannelError> {
        match input {
            Input::Message(msg) => self.on_message(msg),
            Input::PeerBytes(bytes) => {
                let msg = Message::decode(&bytes)?;
                self.on_message(msg)
            }
            Input::Command(cmd) => self.on_command(cmd),
            Input::Chain(event) => self.on_chain(event),
            Input::Connected => {
                if self.snap.phase == Phase::Offered {
                    // The open may have been lost with the connection.
                    return Ok(vec![Action::Send(self.open_message()?)]);
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
            phase: self.snap.phase,
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
            phase: self.snap.phase,
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
        let mut actions = vec![Action::Persist(Box::new(self.snap.clone()))];
        debug_assert!(sends.iter().all(|m| self.snap.covers(m)));
        actions.extend(sends.into_iter().map(Action::Send));
        actions.extend(others);
        actions
    }

    /// The state after `change` by `proposer` on the last complete state.
    fn apply(&self, change: &Change, proposer: Party) -> Result<StateBody, ChannelError> {
        let params = self.params(change.kind())?;
        let number = self.next_number();
        let mut body = match (&self.snap.complete, change) {
            (None, Change::Open { .. }) => {
                let terms = self.snap.terms.as_ref().ok_or(self.unexpected("open"))?;
                return Ok(StateBody {
                    number: 0,
                    to_a: terms.capacity_sat - terms.push_sat,
                    to_s: terms.push_sat,
                    ptlcs: vec![],
                });
            }
            (Some(_), Change::Open { .. }) => return Err(self.unexpected("open change")),
            (None, _) => return Err(self.unexpected(change.kind())),
            (Some(c), Change::Revert { abandoned }) => {
                // Exactly state n again, numbered past the abandoned n+1.
                let pending = self
                    .snap
                    .pending
                    .as_ref()
                    .filter(|p| !matches!(p.change, Change::Revert { .. }))
                    .or(self.snap.abandoned.as_ref())
                    .map(|p| p.body.number);
                if *abandoned != number || pending != Some(*abandoned) {
                    return Err(ChannelError::BadRevert {
                        abandoned: *abandoned,
                        pending,
                    });
                }
                let mut body = c.body.clone();
                body.number = number + 1;
                return Ok(body);
            }
            (Some(c), _) => c.body.clone(),
        };
        body.number = number;
        match change {
            Change::Open { .. } | Change::Revert { .. } => unreachable!("handled above"),
            Change::Transfer { amount_sat } => {
                debit(&mut body, proposer, *amount_sat)?;
                *body.balance_mut(other(proposer)) += amount_sat;
            }
            Change::AddPtlc {
                id,
                amount_sat,
                point,
                expiry,
                claim_signature,
            } => {
                if body.ptlcs.len() >= MAX_PTLCS {
                    return Err(ChannelError::TooManyPtlcs {
                        count: body.ptlcs.len(),
                    });
                }
                let parity = match proposer {
                    Party::A => 0,
                    Party::S => 1,
                };
                if id % 2 != parity || body.ptlcs.iter().any(|p| p.id == *id) {
                    return Err(ChannelError::BadPtlcId { id: *id });
                }
                let height = self.snap.height;
                let expiry = PtlcExpiry::checked_within(
                    height,
                    *expiry,
                    params.shared_delay,
                    height.saturating_add(params.update_window),
                )?;
                debit(&mut body, proposer, *amount_sat)?;
                let record = PtlcRecord {
                    id: *id,
                    offerer: proposer,
                    amount_sat: *amount_sat,
                    point: *point,
                    expiry,
                    claim_signature: claim_signature.clone(),
                };
                let built = self.txs("add_ptlc")?;
                built
                    .claim(&built.ptlc(&record))?
                    .verify_offerer_signature(claim_signature)?;
                body.ptlcs.push(record);
            }
            Change::FulfilPtlc { id, secret } => {
                let at = find_ptlc(&body, *id, proposer, "fulfil")?;
                let t = AdaptorSecret::from_bytes(secret.0)
                    .map_err(|_| ChannelError::WrongSecret { id: *id })?;
                if !sells(&t, &body.ptlcs[at].point) {
                    return Err(ChannelError::WrongSecret { id: *id });
                }
                let ptlc = body.ptlcs.remove(at);
                *body.balance_mut(proposer) += ptlc.amount_sat;
            }
            Change::FailPtlc { id } => {
                let at = find_ptlc(&body, *id, proposer, "fail")?;
                let ptlc = body.ptlcs.remove(at);
                *body.balance_mut(ptlc.offerer) += ptlc.amount_sat;
            }
        }
        debug_assert_eq!(body.total(), params.capacity_sat, "balance conservation");
        Ok(body)
    }

    // ---- commands ----

    fn on_command(&mut self, cmd: Command) -> Result<Vec<Action>, ChannelError> {
        let side = self.snap.side;
        match cmd {
            Command::FundingBuilt { outpoint } => {
                if self.snap.phase != Phase::Accepted || side != Party::A {
                    return Err(self.unexpected("funding_built"));
                }
                self.propose(
                    Change::Open {
                        funding_outpoint: outpoint,
                    },
                    false,
                )
            }
            Command::AddPtlc {
                amount_sat,
                point,
                expiry,
            } => {
                self.ready_to_update("add_ptlc")?;
                let id = self.snap.next_ptlc * 2 + side.index() as u64;
                let params = self.params("add_ptlc")?;
                // Check before signing anything so that a refused PTLC changes nothing.
                let checked = PtlcExpiry::checked_within(
                    self.snap.height,
                    expiry,
                    params.shared_delay,
                    self.snap.height.saturating_add(params.update_window),
                )?;
                let balance = self.latest().map_or(0, |b| b.balance(side));
                if amount_sat == 0 {
                    return Err(ChannelError::ZeroAmount);
                }
                if amount_sat > balance {
                    return Err(ChannelError::InsufficientBalance {
                        needed: amount_sat,
                        available: balance,
                    });
                }
                let built = self.txs("add_ptlc")?;
                let output = built.ptlc_output(side, point, amount_sat, checked);
                let claim = built.claim(&output)?;
                let aux = self.aux();
                let claim_signature =
                    claim.encrypt_offerer_signature(&txs::keypair(&self.key), &aux);
                let change = Change::AddPtlc {
                    id,
                    amount_sat,
                    point,
                    expiry,
                    claim_signature,
                };
                self.apply(&change, side)?;
                self.snap.next_ptlc += 1;
                self.propose(change, false)
            }
            Command::Fulfil { id, secret } => {
                self.ready_to_update("fulfil")?;
                // Revealing the secret off chain this late would let the offerer take it
                // and still time the PTLC out on chain.
                let late = self
                    .latest()
                    .and_then(|b| b.ptlcs.iter().find(|p| p.id == id))
                    .and_then(|p| Some((p.expiry.height(), self.ptlc_deadline(p)?)));
                if let Some((expiry, deadline)) = late {
                    if self.snap.height >= deadline {
                        // Keep the secret for the claim and publish the latest state now.
                        let before = self.snap.clone();
                        let mut actions = self.provide_secret(id, secret)?;
                        match self.force_close() {
                            Ok(closed) => actions.extend(closed),
                            Err(e) => {
                                self.snap = before;
                                return Err(e);
                            }
                        }
                        actions.push(Action::Event(Event::ClosingForPtlc { id, expiry }));
                        return Ok(actions);
                    }
                }
                let revealed = RevealedSecret(secret.to_secret_bytes());
                // Validated by the proposal; kept so that an on-chain claim can use it.
                self.snap.ptlc_secrets.insert(id, revealed.clone());
                let proposed = self.propose(
                    Change::FulfilPtlc {
                        id,
                        secret: revealed,
                    },
                    false,
                );
                if proposed.is_err() {
                    self.snap.ptlc_secrets.remove(&id);
                }
                proposed
            }
            Command::ProvideSecret { id, secret } => self.provide_secret(id, secret),
            Command::Fail { id } => {
                self.ready_to_update("fail")?;
                self.propose(Change::FailPtlc { id }, false)
            }
            Command::Transfer {
                amount_sat,
                withhold,
            } => {
                self.ready_to_update("transfer")?;
                self.propose(Change::Transfer { amount_sat }, withhold)
            }
            Command::Release => {
                let pending = match (&self.snap.phase, &self.snap.pending) {
                    (Phase::Withheld, Some(p)) => p.clone(),
                    _ => return Err(self.unexpected("release")),
                };
                self.finish_own_proposal(pending)
            }
            Command::Price { state } => {
                let pending = self
                    .snap
                    .pending
                    .as_ref()
                    .filter(|p| !matches!(p.change, Change::Revert { .. }))
                    .map(|p| p.body.number);
                let priceable = matches!(
                    self.snap.phase,
                    Phase::CounterSigned | Phase::Withheld | Phase::ForceClosing
                );
                if !priceable || pending != Some(state) {
                    return Err(ChannelError::WrongState {
                        what: "price",
                        got: state,
                        expected: pending.unwrap_or_else(|| self.next_number()),
                    });
                }
                if self.snap.priced == Some(state) {
                    return Ok(vec![]);
                }
                self.snap.priced = Some(state);
                Ok(self.commit(vec![], vec![]))
            }
            Command::CompleteWithSecret { secret } => {
                let on_chain = self.snap.phase == Phase::ForceClosing;
                let pending = match (&self.snap.phase, &self.snap.pending) {
                    (Phase::CounterSigned | Phase::ForceClosing, Some(p))
                        if !matches!(p.change, Change::Revert { .. }) =>
                    {
                        p.clone()
                    }
                    _ => {
                        if let Some(abandoned) = &self.snap.abandoned {
                            return Err(ChannelError::StateAbandoned {
                                state: abandoned.body.number,
                            });
                        }
                        return Err(self.unexpected("complete_with_secret"));
                    }
                };
                let signature = secret.to_signature(&pending.proposer_nonce);
                let state = pending.body.number;
                // The peer's own signature, shown back: its proof that we bought it.
                let shown = Action::Send(Message::Complete(CompleteUpdate {
                    channel_id: self.snap.channel_id,
                    state,
                    signature,
                }));
                if !on_chain {
                    let mut actions = self.complete_peer_proposal(pending, signature, true)?;
                    actions.push(shown);
                    return Ok(actions);
                }
                // Bought during a unilateral close: the completed state replaces the older
                // one on chain at once, and the peer is shown its signature too.
                let before = self.snap.clone();
                let mut actions = self.complete_peer_proposal(pending, signature, true)?;
                actions.push(shown);
                match self.override_on_chain() {
                    Ok(Some(answer)) => actions.push(Action::Broadcast(answer)),
                    Ok(None) => {}
                    Err(e) => {
                        self.snap = before;
                        return Err(e);
                    }
                }
                Ok(actions)
            }
            Command::Revert => {
                let pending = match (&self.snap.phase, &self.snap.pending) {
                    (Phase::CounterSigned | Phase::Withheld, Some(p))
                        if !matches!(p.change, Change::Revert { .. }) =>
                    {
                        p.clone()
                    }
                    _ => return Err(self.unexpected("revert")),
                };
                let abandoned = pending.body.number;
                let before = self.snap.abandoned.replace(pending);
                // Our own revert is the role's decision: the price no longer holds.
                let priced = self.snap.priced.take();
                let proposed = self.propose(Change::Revert { abandoned }, false);
                if proposed.is_err() {
                    self.snap.abandoned = before;
                    self.snap.priced = priced;
                }
                proposed
            }
            Command::Close { fee_sat } => self.propose_close(fee_sat),
            Command::ForceClose => self.force_close(),
        }
    }

    fn ready_to_update(&self, what: &'static str) -> Result<(), ChannelError> {
        if self.snap.phase != Phase::Funded || !self.snap.funding_confirmed {
            return Err(self.unexpected(what));
        }
        Ok(())
    }

    /// Proposes `change` with a fresh committed nonce: persist (counter, pending), then send.
    fn propose(&mut self, change: Change, withhold: bool) -> Result<Vec<Action>, ChannelError> {
        let side = self.snap.side;
        let body = self.apply(&change, side)?;
        let sighash = self.txs("propose")?.update_sighash(&body)?;
        let nonce = self.fresh_nonce(&sighash)?;
        let state = body.number;
        if let Change::Open { funding_outpoint } = change {
            self.snap.funding_outpoint = Some(funding_outpoint);
        }
        self.snap.pending = Some(PendingUpdate {
            body,
            change: change.clone(),
            proposer: side,
            proposer_nonce: nonce.public_nonce(),
            withhold,
            countersignature: None,
            proposer_signature: None,
        });
        self.snap.phase = Phase::Proposed;
        let msg = Message::Propose(ProposeUpdate {
            channel_id: self.snap.channel_id,
            state,
            change,
            nonce: nonce.public_nonce(),
        });
        self.secret_nonce = Some(nonce);
        Ok(self.commit(vec![msg], vec![]))
    }

    /// Re-sends our pending proposal after a reconnection, with a fresh nonce if the old
    /// one was lost.
    fn repropose(&mut self) -> Result<Vec<Action>, ChannelError> {
        let pending = self
            .snap
            .pending
            .clone()
            .ok_or(self.unexpected("repropose"))?;
        if self.secret_nonce.is_none() {
            let sighash = self.txs("repropose")?.update_sighash(&pending.body)?;
            let nonce = self.fresh_nonce(&sighash)?;
            let p = self.snap.pending.as_mut().expect("checked above");
            p.proposer_nonce = nonce.public_nonce();
            self.secret_nonce = Some(nonce);
        }
        let nonce = self
            .secret_nonce
            .as_ref()
            .map(|n| n.public_nonce())
            .expect("set above");
        let msg = Message::Propose(ProposeUpdate {
            channel_id: self.snap.channel_id,
            state: pending.body.number,
            change: pending.change,
            nonce,
        });
        Ok(self.commit(vec![msg], vec![]))
    }

    // ---- messages ----

    fn on_message(&mut self, msg: Message) -> Result<Vec<Action>, ChannelError> {
        if msg.channel_id() != self.snap.channel_id {
            return Err(ChannelError::WrongChannel {
                got: msg.channel_id(),
                ours: self.snap.channel_id,
            });
        }
        match msg {
            Message::Accept(m) => self.on_accept(m),
            Message::Open(m) => {
                // A repeated open (the accept was lost): answer it again, once it matches.
                let same = self.snap.side == Party::S
                    && self.snap.phase == Phase::Accepted
                    && self.open_message_matches(&m);
                if !same {
                    return Err(self.unexpected("open"));
                }
                Ok(vec![Action::Send(self.accept_message()?)])
            }
            Message::Propose(m) => self.on_propose(m),
            Message::CounterSign(m) => self.on_countersign(m),
            Message::Complete(m) => self.on_complete(m),
            Message::Reestablish(m) => self.on_reestablish(m),
            Message::CloseProposal(m) => self.on_close_proposal(m),
            Message::CloseAccept(m) => self.on_close_accept(m),
            Message::CloseSigned(m) => self.on_close_signed(m),
            Message::Error(_) => Ok(vec![]),
        }
    }

    fn open_message_matches(&self, m: &OpenChannel) -> bool {
        match (&self.snap.terms, &self.snap.params) {
            (Some(t), Some(p)) => {
                t.capacity_sat == m.capacity_sat
                    && t.push_sat == m.push_sat
                    && t.shared_delay == m.shared_delay
                    && t.update_window == m.update_window
                    && t.payout_key == m.payout_key
                    && p.key_a == m.update_key
            }
            _ => false,
        }
    }

    fn on_accept(&mut self, m: AcceptChannel) -> Result<Vec<Action>, ChannelError> {
        if self.snap.side == Party::A && self.snap.phase != Phase::Offered {
            // A repeated accept changes nothing once it matches what we hold.
            if let Some(p) = &self.snap.params {
                if p.key_s == m.update_key && p.payout_s == m.payout_key {
                    return Ok(vec![]);
                }
            }
        }
        if self.snap.phase != Phase::Offered || self.snap.side != Party::A {
            return Err(self.unexpected("accept"));
        }
        let terms = self.snap.terms.clone().ok_or(self.unexpected("accept"))?;
        if m.update_key == self.snap.own_key {
            return Err(ChannelError::InvalidTerms {
                reason: "both parties use the same key",
            });
        }
        let params = ChannelParams {
            channel_id: self.snap.channel_id,
            capacity_sat: terms.capacity_sat,
            shared_delay: terms.shared_delay,
            update_window: terms.update_window,
            key_a: self.snap.own_key,
            key_s: m.update_key,
            payout_a: terms.payout_key,
            payout_s: m.payout_key,
        };
        let funding = txs::ChannelTxs::new(&params).funding().clone();
        self.snap.params = Some(params);
        self.snap.phase = Phase::Accepted;
        Ok(self.commit(
            vec![],
            vec![Action::Event(Event::Accepted {
                funding_script_pubkey: funding.script_pubkey(),
                capacity_sat: terms.capacity_sat,
            })],
        ))
    }

    fn on_propose(&mut self, m: ProposeUpdate) -> Result<Vec<Action>, ChannelError> {
        let peer = other(self.snap.side);
        if let Change::Revert { abandoned } = m.change {
            let revertible = matches!(self.snap.phase, Phase::Withheld | Phase::CounterSigned)
                && self.snap.pending.as_ref().is_some_and(|p| {
                    p.body.number == abandoned && !matches!(p.change, Change::Revert { .. })
                });
            if revertible && self.snap.priced == Some(abandoned) {
                return Err(ChannelError::Priced {
                    state: abandoned,
                    what: "revert",
                });
            }
            if revertible {
                return self.countersign_revert(m, abandoned);
            }
        }
        match self.snap.phase {
            Phase::Funded | Phase::Accepted => {}
            Phase::Proposed => {
                let ours = self.snap.pending.as_ref().map_or(0, |p| p.body.number);
                if m.state != ours {
                    return Err(ChannelError::WrongState {
                        what: "propose",
                        got: m.state,
                        expected: ours,
                    });
                }
                // Both proposed the same state: A's proposal wins, except over a revert,
                // which is never dropped for a collision (it gives up a state a payment
                // role decided to give up; the peer countersigns it first).
                let our_revert = self
                    .snap
                    .pending
                    .as_ref()
                    .is_some_and(|p| matches!(p.change, Change::Revert { .. }));
                if self.snap.side == Party::A || our_revert {
                    return Err(ChannelError::ProposalCollision { state: m.state });
                }
                let dropped = self.snap.pending.clone().map(|p| p.change);
                // Validate theirs against the complete state before dropping ours.
                let body = self.apply(&m.change, peer)?;
                // Ours is proposed again once theirs completes (`repropose_dropped`).
                let before = self.snap.dropped.take();
                self.snap.dropped = self.snap.pending.as_ref().map(|p| DroppedProposal {
                    change: p.change.clone(),
                    withhold: p.withhold,
                });
                let countersigned = self.countersign(m, body);
                let mut actions = match countersigned {
                    Ok(actions) => actions,
                    Err(e) => {
                        self.snap.dropped = before;
                        return Err(e);
                    }
                };
                self.secret_nonce = None;
                if let Some(change) = dropped {
                    actions.push(Action::Event(Event::ProposalDropped { change }));
                }
                return Ok(actions);
            }
            Phase::CounterSigned => {
                let pending = self
                    .snap
                    .pending
                    .clone()
                    .expect("countersigned has pending");
                if m.state != pending.body.number {
                    return Err(ChannelError::WrongState {
                        what: "propose",
                        got: m.state,
                        expected: pending.body.number,
                    });
                }
                if m.change != pending.change {
                    return Err(ChannelError::ConflictingProposal { state: m.state });
                }
                // The same proposal again (reconnection): resend our stored signature, and
                // take the new nonce if the proposer had to make one.
                let mut others = vec![];
                if m.nonce != pending.proposer_nonce && self.snap.priced == Some(m.state) {
                    return Err(ChannelError::Priced {
                        state: m.state,
                        what: "new nonce",
                    });
                }
                if m.nonce != pending.proposer_nonce {
                    self.snap
                        .pending
                        .as_mut()
                        .expect("checked above")
                        .proposer_nonce = m.nonce;
                    others.push(Action::Event(Event::NonceReplaced { state: m.state }));
                }
                let signature = pending.countersignature.expect("countersigned holds it");
                let msg = Message::CounterSign(CounterSignUpdate {
                    channel_id: self.snap.channel_id,
                    state: m.state,
                    signature,
                });
                return Ok(self.commit(vec![msg], others));
            }
            _ => return Err(self.unexpected("propose")),
        }
        let expected = self.next_number();
        if m.state != expected {
            return Err(ChannelError::WrongState {
                what: "propose",
                got: m.state,
                expected,
            });
        }
        if self.snap.phase == Phase::Accepted && !matches!(m.change, Change::Open { .. }) {
            return Err(self.unexpected(m.change.kind()));
        }
        if self.snap.phase == Phase::Funded && !self.snap.funding_confirmed {
            return Err(self.unexpected(m.change.kind()));
        }
        let body = self.apply(&m.change, peer)?;
        self.countersign(m, body)
    }

    /// The peer gives up the pending state `abandoned`: check the revert and countersign it.
    fn countersign_revert(
        &mut self,
        m: ProposeUpdate,
        abandoned: u64,
    ) -> Result<Vec<Action>, ChannelError> {
        if m.state != abandoned + 1 {
            return Err(ChannelError::WrongState {
                what: "propose",
                got: m.state,
                expected: abandoned + 1,
            });
        }
        let body = self.apply(&m.change, other(self.snap.side))?;
        let before = self.snap.abandoned.take();
        self.snap.abandoned = self.snap.pending.clone();
        let countersigned = self.countersign(m, body);
        if countersigned.is_err() {
            self.snap.abandoned = before;
        }
        countersigned
    }

    fn countersign(
        &mut self,
        m: ProposeUpdate,
        body: StateBody,
    ) -> Result<Vec<Action>, ChannelError> {
        // What we sign is the state the message names, never another number.
        if body.number != m.state {
            return Err(ChannelError::WrongState {
                what: "propose",
                got: m.state,
                expected: body.number,
            });
        }
        let digests = self.txs("propose")?.digests(&body)?;
        let (sighash, leaf_hash) = (digests.sighash, digests.settlement_leaf_hash);
        let signature = self.sign_fresh(&sighash)?;
        if let Change::Open { funding_outpoint } = m.change {
            self.snap.funding_outpoint = Some(funding_outpoint);
        }
        self.snap
            .settlement_leaf_hashes
            .insert(body.number, leaf_hash);
        self.snap.pending = Some(PendingUpdate {
            body,
            change: m.change,
            proposer: other(self.snap.side),
            proposer_nonce: m.nonce,
            withhold: false,
            countersignature: Some(signature),
            proposer_signature: None,
        });
        self.snap.phase = Phase::CounterSigned;
        let msg = Message::CounterSign(CounterSignUpdate {
            channel_id: self.snap.channel_id,
            state: m.state,
            signature,
        });
        Ok(self.commit(vec![msg], vec![]))
    }

    fn on_countersign(&mut self, m: CounterSignUpdate) -> Result<Vec<Action>, ChannelError> {
        let pending = match (&self.snap.phase, &self.snap.pending) {
            (Phase::Proposed, Some(p)) => p.clone(),
            _ => return Err(self.unexpected("countersign")),
        };
        if m.state != pending.body.number {
            return Err(ChannelError::WrongState {
                what: "countersign",
                got: m.state,
                expected: pending.body.number,
            });
        }
        let params = self.params("countersign")?.clone();
        let digests = self.txs("countersign")?.digests(&pending.body)?;
        let sighash = digests.sighash;
        key_of(&params, other(self.snap.side))
            .verify(&sighash, &m.signature)
            .map_err(|_| ChannelError::InvalidSignature {
                what: "countersign",
                state: m.state,
            })?;
        let nonce = self
            .secret_nonce
            .take()
            .ok_or(ChannelError::NonceLost { state: m.state })?;
        let signature = nonce.sign(&self.key, &sighash)?;
        let leaf_hash = digests.settlement_leaf_hash;
        self.snap
            .settlement_leaf_hashes
            .insert(pending.body.number, leaf_hash);
        let mut pending = pending;
        pending.countersignature = Some(m.signature);
        pending.proposer_signature = Some(signature);
        if pending.withhold {
            let price_point = price_point(&pending.proposer_nonce, &self.snap.own_key, &sighash)?;
            let state = pending.body.number;
            self.snap.pending = Some(pending);
            self.snap.phase = Phase::Withheld;
            return Ok(self.commit(
                vec![],
                vec![Action::Event(Event::SignatureWithheld {
                    state,
                    signature,
                    price_point,
                })],
            ));
        }
        self.finish_own_proposal(pending)
    }

    /// Our proposal is signed by both: it becomes the complete state; send our signature.
    fn finish_own_proposal(&mut self, pending: PendingUpdate) -> Result<Vec<Action>, ChannelError> {
        let own = pending
            .proposer_signature
            .ok_or(self.unexpected("complete"))?;
        let peer = pending
            .countersignature
            .ok_or(self.unexpected("complete"))?;
        let state = pending.body.number;
        let others = self.make_complete(pending, own, peer)?;
        let msg = Message::Complete(CompleteUpdate {
            channel_id: self.snap.channel_id,
            state,
            signature: own,
        });
        Ok(self.commit(vec![msg], others))
    }

    /// Records a fully signed state and returns the actions that follow from it.
    fn make_complete(
        &mut self,
        pending: PendingUpdate,
        proposer_sig: Signature,
        other_sig: Signature,
    ) -> Result<Vec<Action>, ChannelError> {
        let (sig_a, sig_s) = match pending.proposer {
            Party::A => (proposer_sig, other_sig),
            Party::S => (other_sig, proposer_sig),
        };
        let event = Event::StateCompleted {
            state: pending.body.number,
            change: pending.change.clone(),
            to_a: pending.body.to_a,
            to_s: pending.body.to_s,
        };
        let first = self.snap.complete.is_none();
        let failed = match &pending.change {
            Change::FailPtlc { id } => self
                .snap
                .complete
                .as_ref()
                .and_then(|c| c.body.ptlcs.iter().find(|p| p.id == *id))
                .map(|p| Event::PtlcFailed {
                    id: p.id,
                    point: p.point,
                    offerer: p.offerer,
                }),
            _ => None,
        };
        self.snap.complete = Some(StateRecord {
            body: pending.body,
            proposer: pending.proposer,
            change: pending.change,
            sig_a,
            sig_s,
        });
        self.snap.pending = None;
        self.snap.priced = None;
        if self.snap.phase != Phase::ForceClosing {
            self.snap.phase = Phase::Funded;
        }
        let mut others = vec![Action::Event(event)];
        others.extend(failed.map(Action::Event));
        if first {
            if let Some(outpoint) = self.snap.funding_outpoint {
                others.push(Action::Watch(outpoint));
            }
            if self.snap.side == Party::A {
                others.push(Action::Event(Event::ReadyToFund));
            }
        }
        Ok(others)
    }

    fn on_complete(&mut self, m: CompleteUpdate) -> Result<Vec<Action>, ChannelError> {
        if let Some(actions) = self.complete_abandoned(&m)? {
            return Ok(actions);
        }
        let pending = match (&self.snap.phase, &self.snap.pending) {
            (Phase::CounterSigned, Some(p)) => p.clone(),
            (Phase::Withheld, Some(p)) => return self.on_purchase_shown(p.clone(), &m),
            (Phase::ForceClosing, Some(p))
                if p.proposer == self.snap.side && p.proposer_signature.is_some() =>
            {
                return self.on_purchase_shown(p.clone(), &m)
            }
            _ => {
                // Our own last proposal, shown to us again with our signature (a repeated
                // proof of purchase): nothing to do. A replayed completion of the peer's is
                // refused below.
                if let Some(rec) = &self.snap.complete {
                    if rec.proposer == self.snap.side
                        && rec.body.number == m.state
                        && rec.proposer_signature() == m.signature
                    {
                        return Ok(vec![]);
                    }
                }
                if let Some(n) = self.complete_number() {
                    if m.state <= n {
                        return Err(ChannelError::WrongState {
                            what: "complete",
                            got: m.state,
                            expected: n + 1,
                        });
                    }
                }
                return Err(self.unexpected("complete"));
            }
        };
        if m.state != pending.body.number {
            return Err(ChannelError::WrongState {
                what: "complete",
                got: m.state,
                expected: pending.body.number,
            });
        }
        self.complete_peer_proposal(pending, m.signature, false)
    }

    /// The peer shows our own withheld signature: it bought it (from the payee it was sold
    /// to), so our withheld state is complete. Anything but that exact signature is refused:
    /// a withheld state is never completed on the peer's word.
    fn on_purchase_shown(
        &mut self,
        pending: PendingUpdate,
        m: &CompleteUpdate,
    ) -> Result<Vec<Action>, ChannelError> {
        let state = pending.body.number;
        if m.state != state {
            return Err(ChannelError::WrongState {
                what: "complete",
                got: m.state,
                expected: state,
            });
        }
        let (Some(own), Some(peer)) = (pending.proposer_signature, pending.countersignature) else {
            return Err(self.unexpected("complete"));
        };
        if m.signature != own {
            return Err(ChannelError::InvalidSignature {
                what: "complete",
                state,
            });
        }
        let before = self.snap.clone();
        let mut others = self.make_complete(pending, own, peer)?;
        // Bought while an older state is on chain: the completed one goes over it.
        match self.override_on_chain() {
            Ok(answer) => others.extend(answer.map(Action::Broadcast)),
            Err(e) => {
                self.snap = before;
                return Err(e);
            }
        }
        Ok(self.commit(vec![], others))
    }

    /// Our revert crossed the peer's completing signature of the state it abandons: the
    /// signature wins (the state is paid for), our revert is dropped.
    fn complete_abandoned(
        &mut self,
        m: &CompleteUpdate,
    ) -> Result<Option<Vec<Action>>, ChannelError> {
        let (Phase::Proposed, Some(pending), Some(abandoned)) =
            (self.snap.phase, &self.snap.pending, &self.snap.abandoned)
        else {
            return Ok(None);
        };
        let crossed = matches!(pending.change, Change::Revert { .. })
            && abandoned.body.number == m.state
            && abandoned.proposer != self.snap.side
            && self.complete_number().is_some_and(|n| n + 1 == m.state);
        if !crossed {
            return Ok(None);
        }
        let (dropped, abandoned) = (pending.change.clone(), abandoned.clone());
        let before = self.snap.abandoned.take();
        match self.complete_peer_proposal(abandoned, m.signature, false) {
            Ok(mut actions) => {
                self.secret_nonce = None;
                actions.push(Action::Event(Event::ProposalDropped { change: dropped }));
                Ok(Some(actions))
            }
            Err(e) => {
                self.snap.abandoned = before;
                Err(e)
            }
        }
    }

    /// The peer's signature on its own proposal, received or bought: check and complete.
    fn complete_peer_proposal(
        &mut self,
        pending: PendingUpdate,
        signature: Signature,
        bought: bool,
    ) -> Result<Vec<Action>, ChannelError> {
        let state = pending.body.number;
        if signature.nonce() != pending.proposer_nonce {
            return Err(ChannelError::NonceMismatch { state });
        }
        let params = self.params("complete")?.clone();
        let sighash = self.txs("complete")?.update_sighash(&pending.body)?;
        key_of(&params, pending.proposer)
            .verify(&sighash, &signature)
            .map_err(|_| ChannelError::InvalidSignature {
                what: "complete",
                state,
            })?;
        let own = pending
            .countersignature
            .ok_or(self.unexpected("complete"))?;
        let others = self.make_complete(pending, signature, own)?;
        self.snap.bought = bought.then_some(state);
        let mut actions = self.commit(vec![], others);
        actions.extend(self.repropose_dropped());
        Ok(actions)
    }

    /// Our proposal that lost a collision, proposed again now that the peer's completed: a
    /// role's change (a PTLC offered or fulfilled) is not lost to the timing of the peer's.
    /// If it no longer applies, it is reported dropped for good.
    fn repropose_dropped(&mut self) -> Vec<Action> {
        if self.snap.phase != Phase::Funded || !self.snap.funding_confirmed {
            return vec![];
        }
        let Some(dropped) = self.snap.dropped.take() else {
            return vec![];
        };
        match self.propose(dropped.change.clone(), dropped.withhold) {
            Ok(actions) => actions,
            // Stored without the dropped change before the role hears of it: a restart does
            // not give it up a second time.
            Err(e) => self.commit(
                vec![],
                vec![Action::Event(Event::ProposalAbandoned {
                    change: dropped.change,
                    code: e.code(),
                })],
            ),
        }
    }

    fn on_reestablish(&mut self, m: Reestablish) -> Result<Vec<Action>, ChannelError> {
        let ours = self.next_number();
        // Only the proposer can be one state ahead (it completes first), and only until its
        // completing signature arrives.
        // A withheld signature may have been sold to the peer, which is then one ahead too.
        // A revert skips a state number, so the peer may be one past the pending state.
        let mut most = match &self.snap.pending {
            Some(p) if p.proposer != self.snap.side || self.snap.phase == Phase::Withheld => {
                p.body.number + 1
            }
            _ => ours,
        };
        if let (Phase::Proposed, Some(abandoned)) = (self.snap.phase, &self.snap.abandoned) {
            // Our revert may have crossed the peer's completion of the abandoned state.
            most = most.max(abandoned.body.number + 1);
        }
        if m.next_state > most {
            return Err(ChannelError::PeerAhead {
                peer: m.next_state,
                ours,
            });
        }
        match self.snap.phase {
            Phase::Proposed => {
                let mut actions = self.resend_complete_if_missing(m.next_state);
                actions.extend(self.repropose()?);
                Ok(actions)
            }
            // A peer one past our withheld state says it bought our signature. A number is no
            // proof: the state completes only when the peer shows the signature itself
            // ([`CompleteUpdate`] carrying it, which an honest buyer sends on reconnection).
            Phase::Withheld => Ok(vec![]),
            Phase::Funded | Phase::ForceClosing => {
                Ok(self.resend_complete_if_missing(m.next_state))
            }
            Phase::Closing => self.reestablish_close(),
            _ => Ok(vec![]),
        }
    }

    /// If the peer lacks our last complete state, send the proposer's signature on it: ours
    /// if we proposed it (the peer never got it), or the peer's own if we completed its
    /// withheld proposal with a bought signature (the proof of purchase; it tells the peer
    /// nothing it did not know).
    fn resend_complete_if_missing(&mut self, peer_next: u64) -> Vec<Action> {
        let Some(rec) = self.snap.complete.clone() else {
            return vec![];
        };
        // The peer lacks our last state if it would sign that state next, or, for a revert
        // of ours, the state the revert skipped.
        let ours = rec.proposer == self.snap.side;
        let missing = peer_next == rec.body.number
            || (ours
                && matches!(rec.change, Change::Revert { abandoned } if peer_next == abandoned));
        // A bought state was shown to the peer when it connected (`Input::Connected`).
        if !missing || (!ours && self.snap.bought == Some(rec.body.number)) {
            return vec![];
        }
        let msg = self.complete_message(&rec);
        self.commit(vec![msg], vec![])
    }

    /// The [`CompleteUpdate`] of a complete state: its proposer's signature.
    fn complete_message(&self, rec: &StateRecord) -> Message {
        Message::Complete(CompleteUpdate {
            channel_id: self.snap.channel_id,
            state: rec.body.number,
            signature: rec.proposer_signature(),
        })
    }

    // ---- cooperative close ----

    /// The last complete state, if it can be closed cooperatively, with the close paying
    /// `fee_sat` from `payer`'s balance.
    fn close_tx(&self, payer: Party, fee_sat: u64) -> Result<Transaction, ChannelError> {
        let rec = self
            .snap
            .complete
            .as_ref()
            .ok_or(self.unexpected("close"))?;
        if !rec.body.ptlcs.is_empty() {
            return Err(ChannelError::PtlcsPending {
                count: rec.body.ptlcs.len(),
            });
        }
        let outpoint = self.snap.funding_outpoint.ok_or(self.unexpected("close"))?;
        self.txs("close")?
            .close(&rec.body, payer, fee_sat, outpoint)?
            .ok_or(ChannelError::InsufficientBalance {
                needed: fee_sat,
                available: rec.body.balance(payer),
            })
    }

    /// A fresh MuSig2 nonce for the close. Its session comes from the same persisted counter
    /// as the update nonces, advanced here; the public nonce must only leave through
    /// [`Channel::commit`].
    fn fresh_close_nonce(&mut self, m: &[u8; 32]) -> Result<CloseNonce, ChannelError> {
        let reserved = self.fresh_nonce(m)?;
        let mut engine = sha256::Hash::engine();
        engine.input(b"asyncpay/close-session");
        engine.input(&self.snap.channel_id.0);
        engine.input(&reserved.session_id().get().to_be_bytes());
        engine.input(m);
        let session = sha256::Hash::from_engine(engine).to_byte_array();
        let aux = self.aux();
        let funding = self.txs("close")?.funding();
        Ok(CloseNonce::new(
            funding,
            &txs::keypair(&self.key),
            &session,
            &aux,
        ))
    }

    fn propose_close(&mut self, fee_sat: u64) -> Result<Vec<Action>, ChannelError> {
        self.ready_to_update("close")?;
        let side = self.snap.side;
        let tx = self.close_tx(side, fee_sat)?;
        let nonce = self.fresh_close_nonce(&tx.compute_txid().to_byte_array())?;
        self.snap.closing = Some(CloseRecord {
            proposer: side,
            fee_sat,
            proposer_nonce: nonce.public().to_vec(),
            acceptor_nonce: None,
            acceptor_partial: None,
            signature: None,
            txid: tx.compute_txid(),
        });
        self.snap.phase = Phase::Closing;
        let msg = Message::CloseProposal(CloseProposal {
            channel_id: self.snap.channel_id,
            fee_sat,
            nonce: nonce.public(),
        });
        self.close_nonce = Some(nonce);
        Ok(self.commit(vec![msg], vec![]))
    }

    fn close_nonces(
        proposer: Party,
        proposer_nonce: [u8; 66],
        acceptor_nonce: [u8; 66],
    ) -> [[u8; 66]; 2] {
        match proposer {
            Party::A => [proposer_nonce, acceptor_nonce],
            Party::S => [acceptor_nonce, proposer_nonce],
        }
    }

    fn on_close_proposal(&mut self, m: CloseProposal) -> Result<Vec<Action>, ChannelError> {
        let side = self.snap.side;
        let peer = other(side);
        match (&self.snap.phase, &self.snap.closing) {
            (Phase::Funded, _) if self.snap.funding_confirmed => {}
            (Phase::Closing, Some(c)) if c.signature.is_none() => {
                if c.proposer == side && side == Party::A {
                    // Both proposed: A's close wins, as for updates.
                    return Err(ChannelError::ProposalCollision {
                        state: self.next_number().saturating_sub(1),
                    });
                }
                if c.proposer == peer
                    && CloseRecord::nonce(&c.proposer_nonce) == Some(m.nonce)
                    && c.fee_sat == m.fee_sat
                {
                    // The same proposal again (reconnection): the same answer.
                    if let (Some(nonce), Some(partial)) = (
                        c.acceptor_nonce.as_deref().and_then(CloseRecord::nonce),
                        c.acceptor_partial,
                    ) {
                        let msg = Message::CloseAccept(CloseAccept {
                            channel_id: self.snap.channel_id,
                            nonce,
                            partial_signature: partial,
                        });
                        return Ok(self.commit(vec![msg], vec![]));
                    }
                }
            }
            _ => return Err(self.unexpected("close_proposal")),
        }
        if schnorr_fun::binonce::Nonce::<schnorr_fun::fun::marker::Zero>::from_bytes(m.nonce)
            .is_none()
        {
            return Err(ChannelError::MalformedCloseNonce);
        }
        let tx = self.close_tx(peer, m.fee_sat)?;
        let nonce = self.fresh_close_nonce(&tx.compute_txid().to_byte_array())?;
        let ours = nonce.public();
        let nonces = Self::close_nonces(peer, m.nonce, ours);
        let funding = self.txs("close")?.funding().clone();
        let partial = close::partial_sign(
            &funding,
            &tx,
            side,
            &txs::keypair(&self.key),
            nonce,
            &nonces,
        )?;
        self.snap.closing = Some(CloseRecord {
            proposer: peer,
            fee_sat: m.fee_sat,
            proposer_nonce: m.nonce.to_vec(),
            acceptor_nonce: Some(ours.to_vec()),
            acceptor_partial: Some(partial),
            signature: None,
            txid: tx.compute_txid(),
        });
        self.snap.phase = Phase::Closing;
        // Our own close proposal, if any, lost the collision.
        self.close_nonce = None;
        let msg = Message::CloseAccept(CloseAccept {
            channel_id: self.snap.channel_id,
            nonce: ours,
            partial_signature: partial,
        });
        Ok(self.commit(vec![msg], vec![]))
    }

    fn on_close_accept(&mut self, m: CloseAccept) -> Result<Vec<Action>, ChannelError> {
        let side = self.snap.side;
        let closing = match (&self.snap.phase, &self.snap.closing) {
            (Phase::Closing, Some(c)) if c.proposer == side && c.signature.is_none() => c.clone(),
            _ => return Err(self.unexpected("close_accept")),
        };
        let state = self.next_number().saturating_sub(1);
        let own_nonce =
            CloseRecord::nonce(&closing.proposer_nonce).ok_or(ChannelError::MalformedCloseNonce)?;
        let nonces = Self::close_nonces(side, own_nonce, m.nonce);
        let tx = self.close_tx(side, closing.fee_sat)?;
        let funding = self.txs("close")?.funding().clone();
        close::verify_partial(&funding, &tx, other(side), &m.partial_signature, &nonces).map_err(
            |_| ChannelError::InvalidSignature {
                what: "close_accept",
                state,
            },
        )?;
        let nonce = self
            .close_nonce
            .take()
            .ok_or(ChannelError::NonceLost { state })?;
        let own = close::partial_sign(
            &funding,
            &tx,
            side,
            &txs::keypair(&self.key),
            nonce,
            &nonces,
        )?;
        let partials = match side {
            Party::A => [own, m.partial_signature],
            Party::S => [m.partial_signature, own],
        };
        let signed = close::combine(&funding, &tx, &nonces, partials)?;
        let signature = signed.input[0]
            .witness
            .nth(0)
            .and_then(|w| <[u8; 64]>::try_from(w).ok())
            .map(Signature::from_bytes)
            .ok_or(ChannelError::InvalidSignature {
                what: "close",
                state,
            })?
            .map_err(|_| ChannelError::InvalidSignature {
                what: "close",
                state,
            })?;
        let c = self.snap.closing.as_mut().expect("checked above");
        c.acceptor_nonce = Some(m.nonce.to_vec());
        c.acceptor_partial = Some(m.partial_signature);
        c.signature = Some(signature);
        let txid = signed.compute_txid();
        let msg = Message::CloseSigned(CloseSigned {
            channel_id: self.snap.channel_id,
            signature,
        });
        Ok(self.commit(
            vec![msg],
            vec![
                Action::Broadcast(signed),
                Action::Event(Event::CloseSigned { txid }),
            ],
        ))
    }

    fn on_close_signed(&mut self, m: CloseSigned) -> Result<Vec<Action>, ChannelError> {
        let side = self.snap.side;
        let closing = match (&self.snap.phase, &self.snap.closing) {
            (Phase::Closing, Some(c)) if c.proposer != side && c.acceptor_partial.is_some() => {
                c.clone()
            }
            _ => return Err(self.unexpected("close_signed")),
        };
        if closing.signature == Some(m.signature) {
            return Ok(vec![]);
        }
        let state = self.next_number().saturating_sub(1);
        let mut tx = self.close_tx(other(side), closing.fee_sat)?;
        let funding = self.txs("close")?.funding();
        let sighash = close::close_sighash(funding, &tx)?;
        let output_key = PublicKey::from(funding.spend_info().output_key().to_x_only_public_key());
        output_key
            .verify(&sighash, &m.signature)
            .map_err(|_| ChannelError::InvalidSignature {
                what: "close_signed",
                state,
            })?;
        tx.input[0].witness = bitcoin::Witness::from_slice(&[m.signature.to_bytes()]);
        let txid = tx.compute_txid();
        self.snap.closing.as_mut().expect("checked above").signature = Some(m.signature);
        Ok(self.commit(
            vec![],
            vec![
                Action::Broadcast(tx),
                Action::Event(Event::CloseSigned { txid }),
            ],
        ))
    }

    /// After a reconnection the proposer drives the close on: it re-sends its proposal (with
    /// a fresh nonce if its secret one died in a restart) or its aggregate signature.
    fn reestablish_close(&mut self) -> Result<Vec<Action>, ChannelError> {
        let Some(closing) = self.snap.closing.clone() else {
            return Ok(vec![]);
        };
        if closing.proposer != self.snap.side {
            return Ok(vec![]);
        }
        if let Some(signature) = closing.signature {
            let msg = Message::CloseSigned(CloseSigned {
                channel_id: self.snap.channel_id,
                signature,
            });
            return Ok(self.commit(vec![msg], vec![]));
        }
        if self.close_nonce.is_none() {
            let nonce = self.fresh_close_nonce(&closing.txid.to_byte_array())?;
            let c = self.snap.closing.as_mut().expect("checked above");
            c.proposer_nonce = nonce.public().to_vec();
            self.close_nonce = Some(nonce);
        }
        let nonce = self
            .close_nonce
            .as_ref()
            .map(|n| n.public())
            .expect("set above");
        let msg = Message::CloseProposal(CloseProposal {
            channel_id: self.snap.channel_id,
            fee_sat: closing.fee_sat,
            nonce,
        });
        Ok(self.commit(vec![msg], vec![]))
    }

    // ---- on-chain PTLCs ----

    fn provide_secret(
        &mut self,
        id: u64,
        secret: AdaptorSecret,
    ) -> Result<Vec<Action>, ChannelError> {
        let rec = self
            .snap
            .complete
            .as_ref()
            .ok_or(self.unexpected("provide_secret"))?;
        let ptlc = rec
            .body
            .ptlcs
            .iter()
            .find(|p| p.id == id)
            .ok_or(ChannelError::UnknownPtlc { id })?;
        if ptlc.offerer == self.snap.side {
            return Err(ChannelError::NotPayee { id, what: "claim" });
        }
        if !sells(&secret, &ptlc.point) {
            return Err(ChannelError::WrongSecret { id });
        }
        self.snap
            .ptlc_secrets
            .insert(id, RevealedSecret(secret.to_secret_bytes()));
        match self.resolve_ptlcs() {
            Ok(others) => Ok(self.commit(vec![], others)),
            Err(e) => {
                self.snap.ptlc_secrets.remove(&id);
                Err(e)
            }
        }
    }

    /// The PTLC outputs of our settlement once it confirmed, with where they are.
    fn settled_ptlcs(&self) -> Result<Vec<(PtlcRecord, OutPoint)>, ChannelError> {
        let (Some(oc), Some(rec)) = (&self.snap.on_chain, &self.snap.complete) else {
            return Ok(vec![]);
        };
        let Some(txid) = oc.settlement_txid else {
            return Ok(vec![]);
        };
        if oc.state != rec.body.number || rec.body.ptlcs.is_empty() {
            return Ok(vec![]);
        }
        let settlement = self.txs("settled_ptlcs")?.settlement(&rec.body)?;
        Ok(rec
            .body
            .ptlcs
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let vout = settlement.ptlc_vout(i)?;
                Some((p.clone(), OutPoint { txid, vout }))
            })
            .collect())
    }

    /// Claims (we are paid and know the secret) and timeouts (we offered and the expiry has
    /// come) of settled PTLC outputs not yet resolved, recorded as resolved.
    fn resolve_ptlcs(&mut self) -> Result<Vec<Action>, ChannelError> {
        let mut others = vec![];
        let mut resolved = vec![];
        for (ptlc, outpoint) in self.settled_ptlcs()? {
            let done = self
                .snap
                .on_chain
                .as_ref()
                .is_some_and(|oc| oc.resolved_ptlcs.contains(&ptlc.id));
            if done {
                continue;
            }
            if let Some(tx) = self.ptlc_resolution(&ptlc, outpoint)? {
                others.push(Action::Broadcast(tx));
                resolved.push(ptlc.id);
            }
        }
        if let Some(oc) = self.snap.on_chain.as_mut() {
            oc.resolved_ptlcs.extend(resolved);
        }
        Ok(others)
    }

    /// What takes a settled PTLC output for us now, if anything: the claim of one we are
    /// paid by whose secret we know, or the timeout of one we offered once its expiry is
    /// reached (its nLockTime is the expiry: valid in the next block).
    fn ptlc_resolution(
        &mut self,
        ptlc: &PtlcRecord,
        outpoint: OutPoint,
    ) -> Result<Option<Transaction>, ChannelError> {
        if ptlc.offerer != self.snap.side {
            let Some(secret) = self.snap.ptlc_secrets.get(&ptlc.id) else {
                return Ok(None);
            };
            let t = AdaptorSecret::from_bytes(secret.0)
                .map_err(|_| ChannelError::WrongSecret { id: ptlc.id })?;
            let aux = self.aux();
            let built = self.txs("claim")?;
            let claim = built.claim(&built.ptlc(ptlc))?;
            let tx = claim.finish(
                outpoint,
                &ptlc.claim_signature,
                &t,
                &txs::keypair(&self.key),
                &aux,
            )?;
            return Ok(Some(tx));
        }
        if self.snap.height < ptlc.expiry.height() {
            return Ok(None);
        }
        let aux = self.aux();
        let built = self.txs("timeout")?;
        let timeout = crate::tx::Timeout::new(
            &built.ptlc(ptlc),
            outpoint,
            built.payout(self.snap.side).clone(),
            bitcoin::Amount::from_sat(TIMEOUT_FEE_SAT),
        )?;
        Ok(Some(timeout.sign(&txs::keypair(&self.key), &aux)?))
    }

    /// A spend of one of our settled PTLC outputs: a claim of a PTLC we offered reveals its
    /// secret.
    fn on_ptlc_spend(&mut self, tx: &Transaction) -> Result<Option<Vec<Action>>, ChannelError> {
        let settled = self.settled_ptlcs()?;
        let Some((ptlc, _)) = settled
            .into_iter()
            .find(|(_, outpoint)| tx.input.iter().any(|i| i.previous_output == *outpoint))
        else {
            return Ok(None);
        };
        let mut others = vec![];
        if ptlc.offerer == self.snap.side && !self.snap.ptlc_secrets.contains_key(&ptlc.id) {
            let output = self.txs("ptlc_spend")?.ptlc(&ptlc);
            if let Ok(t) = crate::tx::ptlc::extract_secret(&output, &ptlc.claim_signature, tx) {
                let secret = RevealedSecret(t.to_secret_bytes());
                self.snap.ptlc_secrets.insert(ptlc.id, secret.clone());
                others.push(Action::Event(Event::PtlcSecretLearned {
                    id: ptlc.id,
                    secret,
                }));
            }
        }
        let oc = self.snap.on_chain.as_mut().expect("settled_ptlcs needs it");
        let news = !oc.spent_ptlcs.contains(&ptlc.id);
        if news {
            oc.spent_ptlcs.push(ptlc.id);
        }
        if !oc.resolved_ptlcs.contains(&ptlc.id) {
            oc.resolved_ptlcs.push(ptlc.id);
        } else if others.is_empty() && !news {
            return Ok(Some(vec![]));
        }
        Ok(Some(self.commit(vec![], others)))
    }

    // ---- chain ----

    fn force_close(&mut self) -> Result<Vec<Action>, ChannelError> {
        let rec = self
            .snap
            .complete
            .clone()
            .ok_or(self.unexpected("force_close"))?;
        let outpoint = self
            .snap
            .funding_outpoint
            .ok_or(self.unexpected("force_close"))?;
        let spent = match &self.snap.on_chain {
            Some(oc) if oc.state < rec.body.number => {
                let leaf = self
                    .snap
                    .settlement_leaf_hashes
                    .get(&oc.state)
                    .copied()
                    .ok_or(ChannelError::UnknownOnChainState { state: oc.state })?;
                txs::Spent::Update {
                    outpoint: oc.outpoint,
                    state: u32::try_from(oc.state)
                        .map_err(|_| ChannelError::UnknownOnChainState { state: oc.state })?,
                    settlement_leaf_hash: leaf,
                }
            }
            Some(_) => return Ok(vec![]),
            None => txs::Spent::Funding(outpoint),
        };
        let tx = self.latest_update(&spent)?;
        self.snap.phase = Phase::ForceClosing;
        Ok(self.commit(vec![], vec![Action::Broadcast(tx)]))
    }

    /// What we must still get confirmed, published again: our latest update while none is
    /// seen on chain after we closed; our answer to an older update on chain; our settlement
    /// while it is unconfirmed. Nothing changes state, so nothing is persisted.
    fn rebroadcast(&mut self) -> Result<Vec<Action>, ChannelError> {
        if let Some(oc) = &self.snap.on_chain {
            if oc.settlement_txid.is_some() {
                // Settled: every PTLC output we took and have not seen spent, again.
                let pending: Vec<u64> = oc
                    .resolved_ptlcs
                    .iter()
                    .filter(|id| !oc.spent_ptlcs.contains(id))
                    .copied()
                    .collect();
                let mut actions = vec![];
                for (ptlc, outpoint) in self.settled_ptlcs()? {
                    if pending.contains(&ptlc.id) {
                        if let Some(tx) = self.ptlc_resolution(&ptlc, outpoint)? {
                            actions.push(Action::Broadcast(tx));
                        }
                    }
                }
                return Ok(actions);
            }
        }
        let Some(rec) = &self.snap.complete else {
            return Ok(vec![]);
        };
        match (&self.snap.on_chain, self.snap.phase) {
            (None, Phase::ForceClosing) => {
                let outpoint = self
                    .snap
                    .funding_outpoint
                    .ok_or(self.unexpected("rebroadcast"))?;
                let tx = self.latest_update(&txs::Spent::Funding(outpoint))?;
                Ok(vec![Action::Broadcast(tx)])
            }
            (Some(oc), _) if oc.settlement_txid.is_none() => {
                if oc.state < rec.body.number {
                    return Ok(self
                        .override_on_chain()?
                        .map(Action::Broadcast)
                        .into_iter()
                        .collect());
                }
                if oc.settlement_broadcast && oc.state == rec.body.number {
                    let tx =
                        txs::bound_settlement(self.txs("rebroadcast")?, &rec.body, oc.outpoint)?;
                    return Ok(vec![Action::Broadcast(tx)]);
                }
                Ok(vec![])
            }
            _ => Ok(vec![]),
        }
    }

    fn on_chain(&mut self, event: ChainEvent) -> Result<Vec<Action>, ChannelError> {
        match event {
            ChainEvent::Block { height } => {
                if height <= self.snap.height {
                    return Ok(vec![]);
                }
                let before = self.snap.height;
                self.snap.height = height;
                let mut others = vec![];
                let mut settle = false;
                if let (Some(oc), Some(rec), Some(params)) =
                    (&self.snap.on_chain, &self.snap.complete, &self.snap.params)
                {
                    if let Some(at) = oc.confirmed_at {
                        let ready = height + 1 >= at + u32::from(params.shared_delay);
                        if oc.state == rec.body.number && ready && !oc.settlement_broadcast {
                            let built = self.txs.get_or_init(|| txs::ChannelTxs::new(params));
                            let tx = txs::bound_settlement(built, &rec.body, oc.outpoint)
                                .inspect_err(|_| self.snap.height = before)?;
                            others.push(Action::Broadcast(tx));
                            settle = true;
                        }
                    }
                }
                let resolved = self
                    .snap
                    .on_chain
                    .as_ref()
                    .map(|oc| oc.resolved_ptlcs.clone());
                match self.resolve_ptlcs() {
                    Ok(actions) => others.extend(actions),
                    Err(e) => {
                        self.snap.height = before;
                        if let (Some(oc), Some(resolved)) = (self.snap.on_chain.as_mut(), resolved)
                        {
                            oc.resolved_ptlcs = resolved;
                        }
                        return Err(e);
                    }
                }
                if let Some(ptlc) = self.ptlc_due(height).cloned() {
                    let closed = self
                        .force_close()
                        .inspect_err(|_| self.snap.height = before)?;
                    others.push(Action::Event(Event::ClosingForPtlc {
                        id: ptlc.id,
                        expiry: ptlc.expiry.height(),
                    }));
                    // `force_close` persisted; what follows is reported after it.
                    let mut actions = closed;
                    actions.extend(others);
                    return Ok(actions);
                }
                if others.is_empty() {
                    // The height is re-fed after a restart; no need to persist it alone.
                    // What we published and have not yet seen on chain is published again
                    // (a dropped or outbid broadcast is retried every block until moot).
                    return self
                        .rebroadcast()
                        .inspect_err(|_| self.snap.height = before);
                }
                if let Some(oc) = self.snap.on_chain.as_mut() {
                    oc.settlement_broadcast |= settle;
                }
                Ok(self.commit(vec![], others))
            }
            ChainEvent::Confirmed { txid, .. } => {
                let is_funding = self.snap.funding_outpoint.is_some_and(|o| o.txid == txid);
                if is_funding && !self.snap.funding_confirmed {
                    self.snap.funding_confirmed = true;
                    return Ok(self.commit(vec![], vec![Action::Event(Event::FundingConfirmed)]));
                }
                Ok(vec![])
            }
            ChainEvent::Spend { tx, confirmed_at } => self.on_spend(tx, confirmed_at),
        }
    }

    fn on_spend(
        &mut self,
        tx: Transaction,
        confirmed_at: Option<u32>,
    ) -> Result<Vec<Action>, ChannelError> {
        if let Some(actions) = self.on_ptlc_spend(&tx)? {
            return Ok(actions);
        }
        // The update we know is on chain, again: news only when it has just confirmed. (It
        // spends an outpoint we no longer watch once it is the one on chain.)
        if let Some(oc) = self.snap.on_chain.as_mut() {
            if oc.outpoint.txid == tx.compute_txid() {
                if oc.confirmed_at.is_none() && confirmed_at.is_some() {
                    oc.confirmed_at = confirmed_at;
                    return Ok(self.commit(vec![], vec![]));
                }
                return Ok(vec![]);
            }
        }
        let watched: Vec<OutPoint> = self
            .snap
            .funding_outpoint
            .into_iter()
            .chain(self.snap.on_chain.as_ref().map(|oc| oc.outpoint))
            .collect();
        let Some(input) = tx
            .input
            .iter()
            .find(|i| watched.contains(&i.previous_output))
        else {
            return Ok(vec![]);
        };
        let locktime = tx.lock_time.to_consensus_u32();
        let is_update = locktime >= STATE_LOCKTIME_BASE && input.witness.len() == 4;
        if !is_update {
            // Our cooperative close, confirmed.
            if let Some(c) = &self.snap.closing {
                let txid = tx.compute_txid();
                if c.txid == txid && confirmed_at.is_some() && self.snap.phase != Phase::Closed {
                    self.snap.phase = Phase::Closed;
                    return Ok(self.commit(
                        vec![],
                        vec![Action::Event(Event::ClosedCooperatively { txid })],
                    ));
                }
            }
            // A settlement of the on-chain state (leaf + control block) or a close.
            if let Some(oc) = self.snap.on_chain.as_mut() {
                if input.previous_output == oc.outpoint
                    && confirmed_at.is_some()
                    && oc.settlement_txid.is_none()
                {
                    oc.settlement_txid = Some(tx.compute_txid());
                    let state = oc.state;
                    self.snap.phase = Phase::Closed;
                    // A state after the settled one can never be published now.
                    let kept = self.snap.pending.take();
                    let settled = self.settled_ptlcs();
                    let resolved = settled.and_then(|settled| {
                        let mut others: Vec<Action> = settled
                            .into_iter()
                            .map(|(_, outpoint)| Action::Watch(outpoint))
                            .collect();
                        others.push(Action::Event(Event::Settled { state }));
                        others.extend(self.resolve_ptlcs()?);
                        Ok(others)
                    });
                    return match resolved {
                        Ok(others) => Ok(self.commit(vec![], others)),
                        Err(e) => {
                            // Nothing changed: forget the settlement again.
                            if let Some(oc) = self.snap.on_chain.as_mut() {
                                oc.settlement_txid = None;
                                oc.resolved_ptlcs.clear();
                            }
                            self.snap.phase = Phase::ForceClosing;
                            self.snap.pending = kept;
                            Err(e)
                        }
                    };
                }
            }
            return Ok(vec![]);
        }
        let m = u64::from(locktime - STATE_LOCKTIME_BASE);
        let params = self.params("spend")?.clone();
        let mut others = vec![];
        // A state we countersigned (or withheld) whose missing signature is now public.
        if let Some(pending) = self.snap.pending.clone() {
            if pending.body.number == m && self.complete_number().is_none_or(|n| n < m) {
                let (sig_a, sig_s) = (witness_sig(input, 1), witness_sig(input, 0));
                let proposer_sig = match pending.proposer {
                    Party::A => sig_a,
                    Party::S => sig_s,
                };
                if let Some(sig) = proposer_sig {
                    let sighash = self.txs("spend")?.update_sighash(&pending.body)?;
                    if key_of(&params, pending.proposer)
                        .verify(&sighash, &sig)
                        .is_ok()
                    {
                        let other_sig = match pending.proposer {
                            Party::A => sig_s,
                            Party::S => sig_a,
                        };
                        if let Some(other_sig) = other_sig {
                            others.extend(self.make_complete(pending, sig, other_sig)?);
                        }
                    }
                }
            }
        }
        let rec = self.snap.complete.clone().ok_or(self.unexpected("spend"))?;
        let latest = rec.body.number;
        if m > latest {
            return Err(ChannelError::UnknownOnChainState { state: m });
        }
        let outpoint = OutPoint {
            txid: tx.compute_txid(),
            vout: 0,
        };
        let already = self
            .snap
            .on_chain
            .as_ref()
            .is_some_and(|oc| oc.outpoint == outpoint);
        // A restarted driver hands every spend it finds to the channel again. An older update
        // than the one known to be on chain is history (the known one spends it or conflicts
        // with it).
        if let Some(oc) = &self.snap.on_chain {
            let history = m < oc.state && (oc.confirmed_at.is_some() || confirmed_at.is_none());
            if history {
                return Ok(if others.is_empty() {
                    others
                } else {
                    self.commit(vec![], others)
                });
            }
        }
        self.snap.phase = Phase::ForceClosing;
        // The peer's withheld proposal one past our latest state stays: its signature may
        // still be sold, and then the completed state overrides what is on chain as long as
        // that state's settlement has not confirmed (see `Channel::sale_window`).
        if !self.sellable_on_chain(latest) {
            self.snap.pending = None;
        }
        self.secret_nonce = None;
        if !already {
            others.push(Action::Watch(outpoint));
        }
        let settlement_broadcast = self
            .snap
            .on_chain
            .as_ref()
            .is_some_and(|oc| oc.outpoint == outpoint && oc.settlement_broadcast);
        self.snap.on_chain = Some(OnChain {
            state: m,
            outpoint,
            confirmed_at,
            settlement_broadcast,
            settlement_txid: None,
            resolved_ptlcs: vec![],
            spent_ptlcs: vec![],
        });
        if m < latest && !already {
            let answer = self
                .override_on_chain()?
                .ok_or(ChannelError::UnknownOnChainState { state: m })?;
            others.push(Action::Broadcast(answer));
            others.push(Action::Event(Event::StaleUpdateAnswered {
                stale: m,
                latest,
            }));
        }
        Ok(self.commit(vec![], others))
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

/// The compact encoding of [`Snapshot::settlement_leaf_hashes`]: hex of 40-byte records, the
/// state (8 bytes, big-endian) then its leaf hash, in increasing state order.
pub(crate) mod leaf_hash_log {
    use std::collections::BTreeMap;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    const RECORD: usize = 40;

    pub(crate) fn serialize<S: Serializer>(
        map: &BTreeMap<u64, [u8; 32]>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = Vec::with_capacity(map.len() * RECORD * 2);
        let mut push = |bytes: &[u8]| {
            for b in bytes {
                text.push(DIGITS[usize::from(b >> 4)]);
                text.push(DIGITS[usize::from(b & 0x0f)]);
            }
        };
        for (state, hash) in map {
            push(&state.to_be_bytes());
            push(hash);
        }
        serializer.serialize_str(core::str::from_utf8(&text).expect("hex digits are ascii"))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<u64, [u8; 32]>, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = hex::decode(text.as_bytes()).map_err(D::Error::custom)?;
        if bytes.len() % RECORD != 0 {
            return Err(D::Error::custom(
                "leaf hash log is not whole 40-byte records",
            ));
        }
        let mut map = BTreeMap::new();
        let mut last = None;
        for record in bytes.chunks_exact(RECORD) {
            let (state, hash) = record.split_at(8);
            let state = u64::from_be_bytes(state.try_into().expect("8 bytes"));
            if last.is_some_and(|l| l >= state) {
                return Err(D::Error::custom("leaf hash log states are not increasing"));
            }
            last = Some(state);
            map.insert(state, hash.try_into().expect("32 bytes"));
        }
        Ok(map)
    }
}
