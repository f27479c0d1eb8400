//! What a channel stores: parameters, states, the pending update, on-chain progress, and the
//! snapshot that holds them all.

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
    pub(super) fn nonce(bytes: &[u8]) -> Option<[u8; 66]> {
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
