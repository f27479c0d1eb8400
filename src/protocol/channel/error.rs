//! The channel's errors: what was refused, and why; none changes the channel's state.

use super::*;

/// Errors of the channel state machine. None of them changes the channel's state.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Peer bytes that are not a message.
    #[error("undecodable peer message")]
    Decode(#[from] WireError),
    /// Peer bytes holding a message of the payment layer, not the channel's.
    #[error("{message} is a payment message, not a channel message")]
    NotChannelMessage {
        /// The message's name.
        message: &'static str,
    },
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
    /// A code for the peer's [`ErrorMessage`](crate::protocol::messages::ErrorMessage): 1 malformed,
    /// 2 out of order, 3 invalid signature, 4 refused change, 5 other.
    pub fn code(&self) -> u16 {
        match self {
            ChannelError::Decode(_)
            | ChannelError::NotChannelMessage { .. }
            | ChannelError::WrongChannel { .. } => 1,
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
