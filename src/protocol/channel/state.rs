//! What a channel stores: parameters, states, the pending update, on-chain progress, and the
//! snapshot that holds them all.
//!
//! # The shape of a snapshot
//!
//! A [`Snapshot`] holds each record only where it exists, so that a phase and the data it
//! needs cannot disagree and reading that data is a pattern match, not a check that it is
//! there. The [`Phase`] is not stored: [`Snapshot::phase`] reads it off three things.
//!
//! - The [`Stage`]: [`Stage::Open`], [`Stage::Closing`], [`Stage::ForceClosing`] or
//!   [`Stage::Closed`], each holding the records that exist in it. The update under way
//!   lives in `Open` and `ForceClosing` (a withheld state can still be bought and completed
//!   while an older state is on chain, and then overrides it), never in `Closing` or
//!   `Closed`. The cooperative [`CloseRecord`] exists from its proposal on and is kept
//!   through a unilateral close begun meanwhile (the close may still confirm first) into
//!   `Closed`. [`OnChain`] exists from the first update seen on chain and is kept into
//!   `Closed`, where settled PTLC outputs are still claimed and timed out.
//! - The pending update's [`Progress`]: `Proposed` (our proposal, no signature yet),
//!   `CounterSigned` (the peer's proposal and our countersignature) or `Withheld` (our
//!   proposal, the peer's countersignature and our own signature, kept back and redacted in
//!   `Debug`). Whose proposal it is follows from the progress. In `Open` the progress names
//!   the phase (`Proposed`, `CounterSigned`, `Withheld`).
//! - Whether [`Snapshot::params`] and [`Snapshot::complete`] exist: an `Open` channel with
//!   nothing under way is `Offered` without parameters, `Accepted` without a complete state
//!   and `Funded` with one.
//!
//! A cooperative close's [`CloseProgress`] goes the same way: `Proposed` (the proposer's
//! nonce) → `Accepted` (the acceptor's nonce and partial signature) → `Signed` (the
//! aggregate signature).
//!
//! What is not local to one phase stays beside the stage: the parameters and the last
//! complete state (every later phase needs them), the abandoned state of the last revert, the
//! number of a bought or priced state, a proposal dropped in a collision, PTLC secrets and
//! the settlement leaf hashes. So the types still admit a few combinations no transition
//! makes (an update under way before the parameters are known, say); every transition
//! checks the stage it starts from.
//!
//! [`Phase`] itself stays a plain `Copy` name: it is what errors
//! ([`ChannelError::Unexpected`]) and the node's views report, and the records it would hold
//! outlive it (`ForceClosing` may still complete a withheld state; `Closed` still resolves
//! PTLC outputs).
//!
//! The snapshot is stored as JSON; one of another [`SNAPSHOT_VERSION`] is refused by name
//! ([`Snapshot::from_json`], [`SnapshotError::Version`]) rather than misread.

use super::*;

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
    /// `claim_signature` as verified when we accepted the PTLC from the peer; in memory only.
    #[serde(skip)]
    pub(crate) verified_claim: VerifiedClaim,
}

impl PtlcRecord {
    /// The peer's claim half as verified when we accepted the PTLC, if this record was made
    /// by that check in this process (see [`VerifiedClaim`]).
    pub(crate) fn verified_claim(&self) -> Option<&VerifiedEncryptedSignature> {
        self.verified_claim
            .0
            .as_ref()
            .filter(|verified| verified.encrypted() == &self.claim_signature)
    }
}

/// The [`VerifiedEncryptedSignature`] that checking the peer's claim half made when we
/// accepted its PTLC, kept beside the record so that our claim on chain decrypts the half
/// with a check of t alone (`Claim::finish_verified`).
///
/// Never stored: a snapshot holds the [`EncryptedSignature`] only, a reloaded record has no
/// verified half, and the claim then verifies the stored one again. We do not trust the
/// stored form because we wrote it: bytes read back do not show that a check was made, nor
/// under which claim transaction (a later version may build another). Not part of a record's
/// value either: records are equal with or without it.
#[derive(Clone, Default)]
pub(crate) struct VerifiedClaim(pub(crate) Option<VerifiedEncryptedSignature>);

impl PartialEq for VerifiedClaim {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl core::fmt::Debug for VerifiedClaim {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(if self.0.is_some() {
            "verified"
        } else {
            "unverified"
        })
    }
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

    pub(super) fn balance_mut(&mut self, party: Party) -> &mut u64 {
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

/// An update under way: the proposed state and how far its signing got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingUpdate {
    /// The proposed state.
    pub body: StateBody,
    /// Its change.
    pub change: Change,
    /// The proposer's committed nonce.
    pub proposer_nonce: PublicNonce,
    /// The signatures made so far; whose proposal it is follows from it.
    pub progress: Progress,
}

/// How far the signing of a [`PendingUpdate`] got. Each step holds exactly the signatures
/// that exist in it.
// One per channel, inside its snapshot: the withheld step's size (a pre-signature and its
// point) is of no consequence, and boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Progress {
    /// Our proposal, sent with its committed nonce; the peer has not countersigned it.
    Proposed {
        /// Whether and how we will keep our signature back (pay-for-signature).
        withhold: Withhold,
    },
    /// The peer's proposal, countersigned by us; its own signature has not come (it may be
    /// withholding it: we cannot tell).
    CounterSigned {
        /// Our signature on it.
        countersignature: Signature,
    },
    /// Our proposal, countersigned by the peer and signed by us; we keep our signature back
    /// until it is bought or released.
    Withheld(Withheld),
}

/// Whether and how a proposer keeps its signature back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Withhold {
    /// Send the completing signature as soon as the peer countersigns.
    No,
    /// Sign, and keep the signature back until it is bought or released.
    Signature,
    /// Make only a pre-signature encrypted to this point (a payee's receipt point, see
    /// [`crate::crypto::receipt`]): the committed nonce is R + Z, and the signature can be
    /// completed only with the receipt signature, by the payee. Not even we can release it.
    EncryptedTo(AdaptorPoint),
}

/// Our own signature on a withheld proposal.
// A signature is its 64 bytes, a pre-signature holds points; one of these exists per
// withheld proposal, so the size difference costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnWithheld {
    /// The signature itself, kept back.
    Signature(Signature),
    /// A pre-signature encrypted to a receipt point: the payee completes it.
    Encrypted {
        /// The pre-signature.
        presignature: EncryptedSignature,
        /// Z, the point it is encrypted to.
        receipt_point: AdaptorPoint,
    },
}

/// The signatures of our withheld proposal. `Debug` leaves out our own (see [`Event`]): it
/// is what is for sale, and whoever learns it completes the state without paying.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Withheld {
    /// The peer's signature on it.
    pub countersignature: Signature,
    /// Ours, kept back.
    pub own: OwnWithheld,
}

impl Withheld {
    /// Our signature, if we hold it complete (not when only a pre-signature exists).
    pub fn own_signature(&self) -> Option<Signature> {
        match &self.own {
            OwnWithheld::Signature(signature) => Some(*signature),
            OwnWithheld::Encrypted { .. } => None,
        }
    }
}

impl core::fmt::Debug for Withheld {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Withheld")
            .field("countersignature", &self.countersignature)
            .field("own", &"<redacted>")
            .finish()
    }
}

impl PendingUpdate {
    /// Whether we proposed it.
    pub fn is_ours(&self) -> bool {
        !matches!(self.progress, Progress::CounterSigned { .. })
    }

    /// Who proposed it, `us` being our side.
    pub fn proposer(&self, us: Party) -> Party {
        if self.is_ours() {
            us
        } else {
            other(us)
        }
    }

    /// The non-proposer's signature, once made or received.
    pub fn countersignature(&self) -> Option<Signature> {
        match &self.progress {
            Progress::Proposed { .. } => None,
            Progress::CounterSigned { countersignature }
            | Progress::Withheld(Withheld {
                countersignature, ..
            }) => Some(*countersignature),
        }
    }

    /// Whether it gives up the state before it (a revert is never sold).
    pub fn is_revert(&self) -> bool {
        matches!(self.change, Change::Revert { .. })
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
    /// PTLCs whose resolution by us confirmed and was reported: our timeout
    /// (`Event::PtlcFailed`) or our claim (`Event::PtlcClaimed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reported_ptlcs: Vec<u64>,
}

/// Blocks kept in hand between the last height a bought state should be published at and
/// the first height the older on-chain state's settlement can confirm at: one for the
/// publication to propagate, one for it to be mined.
pub const SALE_WINDOW_MARGIN: u32 = 2;

/// The named states of a channel: what [`Snapshot::phase`] reads off the snapshot's data.
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

/// Where a channel is in its life, with the records that exist there (see the module
/// documentation for why these and not others).
// One stage a channel, inside its snapshot: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Stage {
    /// No close has begun: the channel is offered, accepted or funded.
    Open {
        /// The update under way.
        pending: Option<PendingUpdate>,
    },
    /// A cooperative close of the last complete state is being signed or awaits its
    /// confirmation; no update is accepted.
    Closing {
        /// The close.
        close: CloseRecord,
    },
    /// We published an update, or saw one: we drive it to our latest settlement.
    ForceClosing {
        /// The update under way when the close began. Once an update is seen on chain only
        /// a countersigned proposal one past our latest state stays: its signature may still
        /// be sold, and the completed state then overrides the one on chain.
        pending: Option<PendingUpdate>,
        /// A cooperative close begun before: its confirmation still closes the channel.
        close: Option<CloseRecord>,
        /// What is on chain, once an update is seen there.
        on_chain: Option<OnChain>,
    },
    /// The channel's funds have left it (settled PTLC outputs may remain to be resolved).
    Closed {
        /// The cooperative close, if one was begun.
        close: Option<CloseRecord>,
        /// What went on chain, if an update did.
        on_chain: Option<OnChain>,
    },
}

impl Stage {
    /// The update under way: while open, or kept through a unilateral close.
    fn pending(&self) -> Option<&PendingUpdate> {
        match self {
            Stage::Open { pending } | Stage::ForceClosing { pending, .. } => pending.as_ref(),
            Stage::Closing { .. } | Stage::Closed { .. } => None,
        }
    }

    fn into_records(self) -> (Option<PendingUpdate>, Option<CloseRecord>, Option<OnChain>) {
        match self {
            Stage::Open { pending } => (pending, None, None),
            Stage::Closing { close } => (None, Some(close), None),
            Stage::ForceClosing {
                pending,
                close,
                on_chain,
            } => (pending, close, on_chain),
            Stage::Closed { close, on_chain } => (None, close, on_chain),
        }
    }
}

/// Everything a party must keep durably about a channel. Secret keys and secret nonces are
/// not in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`SNAPSHOT_VERSION`]: a snapshot of any other version does not deserialize.
    #[serde(deserialize_with = "snapshot_version")]
    pub version: u8,
    /// Which party we are.
    pub side: Party,
    /// Our channel key (checked against the secrets on restore).
    pub own_key: PublicKey,
    /// The channel's id.
    pub channel_id: ChannelId,
    /// The opener's terms.
    pub terms: OpenTerms,
    /// The agreed parameters once accepted (`None`: offered).
    pub params: Option<ChannelParams>,
    /// The funding output, once known.
    pub funding_outpoint: Option<OutPoint>,
    /// Whether the funding transaction confirmed.
    pub funding_confirmed: bool,
    /// The last complete state.
    pub complete: Option<StateRecord>,
    /// Open, closing, force closing or closed, with the update under way, the cooperative
    /// close and what is on chain.
    pub stage: Stage,
    /// The next unused nonce session: advanced before any public nonce leaves.
    pub next_nonce_session: u64,
    /// Our next PTLC counter.
    pub next_ptlc: u64,
    /// The lowest counter the peer may still use for a PTLC: one past the highest of its
    /// PTLCs that reached a complete state. A peer never reuses an id, so a role's command
    /// naming a PTLC by id (fulfil, fail) can only ever meet the PTLC it meant.
    #[serde(default)]
    pub peer_next_ptlc: u64,
    /// Settlement leaf hash of every state we signed, to answer a stale update. It grows by
    /// 32 bytes a state, so it is not part of the snapshot's JSON: a store keeps it
    /// beside the snapshot, a row per state (`node::store`: the rows of the states a write adds,
    /// in the same transaction), so that what an update writes does not grow with the
    /// number of states, and fills it back in when it loads the channel. Shared between
    /// the channel and the snapshots it hands out to persist, so handing one out copies no
    /// log; the channel's next insert copies it only while such a snapshot is still held.
    /// (A version-4 snapshot carried it in its JSON, which is still read, so that a store
    /// written by that version moves its log into the table on its next write.)
    #[serde(
        default,
        skip_serializing,
        deserialize_with = "leaf_hash_log::deserialize_shared"
    )]
    pub settlement_leaf_hashes: std::sync::Arc<BTreeMap<u64, [u8; 32]>>,
    /// The chain height last reported.
    pub height: u32,
    /// The last pending state given up by a revert, with the signatures we held for it.
    pub abandoned: Option<PendingUpdate>,
    /// The last complete state, if we completed it with the peer's signature bought from its
    /// payee: on every reconnection we show the peer its signature (its proof of the
    /// purchase) before anything else.
    pub bought: Option<u64>,
    /// Our proposal that lost a collision, to be proposed again once the peer's completes.
    pub dropped: Option<DroppedProposal>,
    /// The pending state a payment role has priced ([`Command::Price`]): until it completes
    /// or we revert it ourselves, a revert of it by the peer and a new nonce for it are
    /// refused.
    pub priced: Option<u64>,
    /// Secrets of PTLCs we are paid by (given to `Fulfil` or `ProvideSecret`), or that we
    /// offered and learned from a claim on chain: what claims a PTLC output after a
    /// unilateral close.
    pub ptlc_secrets: BTreeMap<u64, RevealedSecret>,
}

/// The snapshot version that kept the settlement leaf hashes in its JSON, which
/// [`Snapshot::from_json`] still reads.
pub const LOG_IN_JSON_VERSION: u8 = 4;

fn snapshot_version<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u8, D::Error> {
    let version = u8::deserialize(deserializer)?;
    if version != SNAPSHOT_VERSION {
        return Err(serde::de::Error::custom(SnapshotError::Version {
            found: version,
            supported: SNAPSHOT_VERSION,
        }));
    }
    Ok(version)
}

/// Why a stored snapshot cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Written by a build with another snapshot format: it is refused rather than misread.
    #[error(
        "snapshot version {found} cannot be read by this build, which reads version {supported}"
    )]
    Version {
        /// The version it was written with.
        found: u8,
        /// [`SNAPSHOT_VERSION`].
        supported: u8,
    },
    /// Not the JSON of a snapshot.
    #[error("snapshot does not parse")]
    Json(#[from] serde_json::Error),
}

/// A proposal of ours that lost a collision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DroppedProposal {
    /// Its change.
    pub change: Change,
    /// Whether and how we would keep our signature back.
    pub withhold: Withhold,
}

/// A cooperative close: what was proposed and how far its signing got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseRecord {
    /// Who proposed it (and pays its fee).
    pub proposer: Party,
    /// The fee, from the proposer's balance.
    pub fee_sat: u64,
    /// The proposer's MuSig2 public nonce.
    #[serde(with = "close_nonce_hex")]
    pub proposer_nonce: [u8; 66],
    /// The close transaction's txid.
    pub txid: bitcoin::Txid,
    /// What each side has sent.
    pub progress: CloseProgress,
}

/// How far the signing of a cooperative close got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloseProgress {
    /// The proposer sent its nonce; the acceptor has not answered (as far as the proposer
    /// knows: its answer carries what completes the close).
    Proposed,
    /// The acceptor made its nonce and partial signature (and sent them).
    Accepted(AcceptorShare),
    /// Both partial signatures are combined: the close can be published.
    Signed {
        /// What the acceptor contributed.
        acceptor: AcceptorShare,
        /// The aggregate signature.
        signature: Signature,
    },
}

/// What the acceptor of a cooperative close contributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptorShare {
    /// Its MuSig2 public nonce.
    #[serde(with = "close_nonce_hex")]
    pub nonce: [u8; 66],
    /// Its partial signature.
    pub partial: [u8; 32],
}

impl CloseRecord {
    /// The aggregate signature, once combined.
    pub fn signature(&self) -> Option<Signature> {
        match self.progress {
            CloseProgress::Signed { signature, .. } => Some(signature),
            CloseProgress::Proposed | CloseProgress::Accepted { .. } => None,
        }
    }
}

impl Snapshot {
    /// The phase, read off the data: the stage, the pending update's progress, and whether
    /// parameters and a complete state exist.
    pub fn phase(&self) -> Phase {
        match &self.stage {
            Stage::Open { pending: Some(p) } => match p.progress {
                Progress::Proposed { .. } => Phase::Proposed,
                Progress::CounterSigned { .. } => Phase::CounterSigned,
                Progress::Withheld(_) => Phase::Withheld,
            },
            Stage::Open { pending: None } if self.params.is_none() => Phase::Offered,
            Stage::Open { pending: None } if self.complete.is_none() => Phase::Accepted,
            Stage::Open { pending: None } => Phase::Funded,
            Stage::Closing { .. } => Phase::Closing,
            Stage::ForceClosing { .. } => Phase::ForceClosing,
            Stage::Closed { .. } => Phase::Closed,
        }
    }

    /// The update under way (while open, or kept through a unilateral close).
    pub fn pending(&self) -> Option<&PendingUpdate> {
        self.stage.pending()
    }

    /// Our withheld proposal and its signatures (while open, or kept through a unilateral
    /// close).
    pub fn withheld(&self) -> Option<(&PendingUpdate, &Withheld)> {
        let pending = self.pending()?;
        match &pending.progress {
            Progress::Withheld(withheld) => Some((pending, withheld)),
            Progress::Proposed { .. } | Progress::CounterSigned { .. } => None,
        }
    }

    /// The peer's proposal we countersigned, with our countersignature (while open, or kept
    /// through a unilateral close).
    pub fn countersigned(&self) -> Option<(&PendingUpdate, Signature)> {
        let pending = self.pending()?;
        match &pending.progress {
            Progress::CounterSigned { countersignature } => Some((pending, *countersignature)),
            Progress::Proposed { .. } | Progress::Withheld(_) => None,
        }
    }

    /// The cooperative close, once proposed (it is kept to the end).
    pub fn closing(&self) -> Option<&CloseRecord> {
        match &self.stage {
            Stage::Closing { close } => Some(close),
            Stage::ForceClosing { close, .. } | Stage::Closed { close, .. } => close.as_ref(),
            Stage::Open { .. } => None,
        }
    }

    /// What is on chain, once an update was seen there (it is kept to the end).
    pub fn on_chain(&self) -> Option<&OnChain> {
        match &self.stage {
            Stage::ForceClosing { on_chain, .. } | Stage::Closed { on_chain, .. } => {
                on_chain.as_ref()
            }
            Stage::Open { .. } | Stage::Closing { .. } => None,
        }
    }

    pub(super) fn on_chain_mut(&mut self) -> Option<&mut OnChain> {
        match &mut self.stage {
            Stage::ForceClosing { on_chain, .. } | Stage::Closed { on_chain, .. } => {
                on_chain.as_mut()
            }
            Stage::Open { .. } | Stage::Closing { .. } => None,
        }
    }

    /// Ends the update under way (completed, or never to be published), in whatever stage.
    pub(super) fn clear_pending(&mut self) {
        match &mut self.stage {
            Stage::Open { pending } | Stage::ForceClosing { pending, .. } => *pending = None,
            Stage::Closing { .. } | Stage::Closed { .. } => {}
        }
    }

    /// Moves to [`Stage::ForceClosing`], keeping the update under way unless `keep_pending`
    /// is false, the cooperative close record, and `on_chain` if given (else the record of
    /// what is on chain so far).
    pub(super) fn force_closing(&mut self, keep_pending: bool, on_chain: Option<OnChain>) {
        let stage = core::mem::replace(&mut self.stage, Stage::Open { pending: None });
        let (pending, close, known) = stage.into_records();
        self.stage = Stage::ForceClosing {
            pending: pending.filter(|_| keep_pending),
            close,
            on_chain: on_chain.or(known),
        };
    }

    /// Moves to [`Stage::Closed`], keeping the cooperative close record and `on_chain` if
    /// given (else the record of what is on chain so far): an update under way can never be
    /// published now.
    pub(super) fn closed(&mut self, on_chain: Option<OnChain>) {
        let stage = core::mem::replace(&mut self.stage, Stage::Open { pending: None });
        let (_, close, known) = stage.into_records();
        self.stage = Stage::Closed {
            close,
            on_chain: on_chain.or(known),
        };
    }

    /// Reads a snapshot from its JSON, refusing another [`SNAPSHOT_VERSION`] by name before
    /// anything else is read.
    pub fn from_json(json: &str) -> Result<Snapshot, SnapshotError> {
        #[derive(Deserialize)]
        struct Versioned {
            version: u8,
        }
        let Versioned { version } = serde_json::from_str(json)?;
        if version == LOG_IN_JSON_VERSION {
            // The one change from version 4 is where the leaf hashes are kept: read them
            // from the JSON; the store writes them to their table on the next write.
            let mut value: serde_json::Value = serde_json::from_str(json)?;
            value["version"] = SNAPSHOT_VERSION.into();
            return Ok(serde_json::from_value(value)?);
        }
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::Version {
                found: version,
                supported: SNAPSHOT_VERSION,
            });
        }
        Ok(serde_json::from_str(json)?)
    }

    /// Whether this snapshot makes `msg` safe to send: it holds the signature or the nonce
    /// commitment the message carries. Drivers and tests use it to check persist-before-send.
    pub fn covers(&self, msg: &Message) -> bool {
        let own = |rec: &StateRecord| match self.side {
            Party::A => rec.sig_a,
            Party::S => rec.sig_s,
        };
        match msg {
            Message::Propose(m) => {
                self.pending().is_some_and(|p| {
                    p.is_ours() && p.proposer_nonce == m.nonce && p.body.number == m.state
                }) && self.next_nonce_session > 0
            }
            Message::CounterSign(m) => {
                self.countersigned()
                    .is_some_and(|(p, sig)| p.body.number == m.state && sig == m.signature)
                    || self
                        .complete
                        .as_ref()
                        .is_some_and(|c| c.body.number == m.state && own(c) == m.signature)
            }
            Message::Complete(m) => {
                self.complete.as_ref().is_some_and(|c| {
                    c.body.number == m.state && c.proposer_signature() == m.signature
                }) || self.withheld().is_some_and(|(p, w)| {
                    p.body.number == m.state && w.own_signature() == Some(m.signature)
                })
            }
            Message::CloseProposal(m) => self.closing().is_some_and(|c| {
                c.proposer == self.side && c.fee_sat == m.fee_sat && c.proposer_nonce == m.nonce
            }),
            Message::CloseAccept(m) => self.closing().is_some_and(|c| {
                let acceptor = match &c.progress {
                    CloseProgress::Proposed => return false,
                    CloseProgress::Accepted(acceptor) | CloseProgress::Signed { acceptor, .. } => {
                        acceptor
                    }
                };
                c.proposer != self.side
                    && acceptor.nonce == m.nonce
                    && acceptor.partial == m.partial_signature
            }),
            Message::CloseSigned(m) => self
                .closing()
                .is_some_and(|c| c.signature() == Some(m.signature)),
            _ => true,
        }
    }
}

/// Serde of a 66-byte MuSig2 public nonce as hex (serde has no arrays above 32).
mod close_nonce_hex {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        nonce: &[u8; 66],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(nonce))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<[u8; 66], D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = hex::decode(text.as_bytes()).map_err(D::Error::custom)?;
        <[u8; 66]>::try_from(bytes.as_slice())
            .map_err(|_| D::Error::custom("a close nonce is 66 bytes"))
    }
}

/// The compact encoding of a map of settlement leaf hashes: hex of 40-byte records, the state
/// (8 bytes, big-endian) then its leaf hash, in increasing state order. The reverse variant's
/// update proof carries its older settlements in it, and a version-4 snapshot carried
/// [`Snapshot::settlement_leaf_hashes`] in it.
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
        let mut text = String::with_capacity(map.len() * RECORD * 2);
        let mut push = |bytes: &[u8]| {
            for b in bytes {
                text.push(char::from(DIGITS[usize::from(b >> 4)]));
                text.push(char::from(DIGITS[usize::from(b & 0x0f)]));
            }
        };
        for (state, hash) in map {
            push(&state.to_be_bytes());
            push(hash);
        }
        serializer.serialize_str(&text)
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
            let (Ok(state), Ok(hash)) = (<[u8; 8]>::try_from(state), <[u8; 32]>::try_from(hash))
            else {
                return Err(D::Error::custom("leaf hash log record is not 8 + 32 bytes"));
            };
            let state = u64::from_be_bytes(state);
            if last.is_some_and(|l| l >= state) {
                return Err(D::Error::custom("leaf hash log states are not increasing"));
            }
            last = Some(state);
            map.insert(state, hash);
        }
        Ok(map)
    }

    /// [`deserialize`] into the shared form a snapshot holds.
    pub(crate) fn deserialize_shared<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<std::sync::Arc<BTreeMap<u64, [u8; 32]>>, D::Error> {
        deserialize(deserializer).map(std::sync::Arc::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::nonce::NonceSeed;

    type Result<T = ()> = core::result::Result<T, Box<dyn std::error::Error>>;

    fn offered() -> Result<Snapshot> {
        let key = SecretKey::from_bytes([1; 32])?;
        let terms = OpenTerms {
            capacity_sat: 100_000,
            push_sat: 0,
            shared_delay: 6,
            update_window: 1_000,
            payout_key: key.public_key(),
        };
        let secrets = ChannelSecrets {
            key,
            nonce_seed: NonceSeed::from_bytes([2; 32]),
        };
        let (channel, _) = Channel::open(secrets, ChannelId([9; 32]), terms, 100)?;
        Ok(channel.snapshot().clone())
    }

    #[test]
    fn a_snapshot_reads_back_from_its_json() -> Result {
        let snap = offered()?;
        assert_eq!(snap.phase(), Phase::Offered);
        let json = serde_json::to_string(&snap)?;
        assert_eq!(Snapshot::from_json(&json)?, snap);
        Ok(())
    }

    /// A snapshot of the previous format (a stored `phase` beside optional records) is
    /// refused by its version, before any field of the old shape is read.
    #[test]
    fn a_snapshot_of_another_version_is_refused_by_name() -> Result {
        let mut old = serde_json::to_value(offered()?)?;
        let fields = old.as_object_mut().ok_or("a snapshot is a JSON object")?;
        fields.insert("version".into(), 2.into());
        fields.remove("stage");
        for (name, value) in [
            ("phase", serde_json::json!("Offered")),
            ("pending", serde_json::Value::Null),
            ("closing", serde_json::Value::Null),
            ("on_chain", serde_json::Value::Null),
        ] {
            fields.insert(name.into(), value);
        }
        let json = serde_json::to_string(&old)?;
        assert!(
            matches!(
                Snapshot::from_json(&json),
                Err(SnapshotError::Version {
                    found: 2,
                    supported: SNAPSHOT_VERSION,
                })
            ),
            "an old snapshot is refused by its version"
        );
        // Through serde directly the refusal names the versions too.
        let refused = serde_json::from_str::<Snapshot>(&json).map(|_| ());
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains("snapshot version 2")),
            "{refused:?}"
        );
        Ok(())
    }

    #[test]
    fn a_withheld_signature_is_left_out_of_debug() -> Result {
        let key = SecretKey::from_bytes([3; 32])?;
        let withheld = Withheld {
            countersignature: key.sign(&[1; 32], &[0; 32]),
            own: OwnWithheld::Signature(key.sign(&[2; 32], &[0; 32])),
        };
        let printed = format!("{withheld:?}");
        assert!(printed.contains("<redacted>"), "{printed}");
        let hex_of = |sig: &Signature| hex::encode(sig.to_bytes());
        assert!(
            !printed.contains(&hex_of(&withheld.own_signature().unwrap())),
            "{printed}"
        );
        assert!(
            printed.contains(&hex_of(&withheld.countersignature)),
            "{printed}"
        );
        Ok(())
    }
}
