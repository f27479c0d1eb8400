//! What goes into a channel (commands, chain events, inputs) and what comes out (events,
//! actions).

use super::*;

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
    /// Pay the peer outright, keeping back a signature that is made only as a pre-signature
    /// encrypted to `receipt_point` (reported in [`Event::SignatureEncrypted`]): the payee
    /// that holds the receipt signature completes and sells it, and whoever sees the sold
    /// scalar learns the receipt signature (proof of payment). It can never be released.
    TransferEncrypted {
        /// Amount.
        amount_sat: u64,
        /// Z, the payee's receipt point for this payment.
        receipt_point: AdaptorPoint,
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
    pub(super) fn name(&self) -> &'static str {
        match self {
            Command::FundingBuilt { .. } => "funding_built",
            Command::AddPtlc { .. } => "add_ptlc",
            Command::Fulfil { .. } => "fulfil",
            Command::Fail { .. } => "fail",
            Command::Transfer { .. } => "transfer",
            Command::TransferEncrypted { .. } => "transfer_encrypted",
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
        /// For a fulfilled PTLC ([`Change::FulfilPtlc`]): its point, which the change's
        /// secret was checked to sell (t·G = T) when the change was applied, so that the
        /// role that paid for it need not compute t·G again.
        fulfilled: Option<AdaptorPoint>,
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
    /// We pre-signed our proposal encrypted to a receipt point and keep it back: hand the
    /// pre-signature to the payee, which completes it with its receipt signature.
    SignatureEncrypted {
        /// The state.
        state: u64,
        /// Our pre-signature on U_state.
        presignature: EncryptedSignature,
        /// Z, the receipt point it is encrypted to.
        receipt_point: AdaptorPoint,
        /// The price point of the completed signature.
        price_point: AdaptorPoint,
    },
    /// Our pre-signature on `state` was completed (by the payee it was encrypted to) and
    /// the state is complete: `signature` is our completed signature, from which the payer
    /// takes the payee's receipt signature.
    PreSignatureCompleted {
        /// The state.
        state: u64,
        /// Our completed signature on it.
        signature: Signature,
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
    /// A PTLC was failed back to its offerer in a complete state, or its offerer timed it
    /// out on chain: whatever it paid for was not bought through it.
    PtlcFailed {
        /// The PTLC.
        id: u64,
        /// Its point.
        point: AdaptorPoint,
        /// Who offered it.
        offerer: Party,
    },
    /// Our claim of a PTLC the peer offered us confirmed on chain: we were paid.
    PtlcClaimed {
        /// The PTLC.
        id: u64,
        /// Its point.
        point: AdaptorPoint,
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
                fulfilled,
            } => f
                .debug_struct("StateCompleted")
                .field("state", state)
                .field("change", change)
                .field("to_a", to_a)
                .field("to_s", to_s)
                .field("fulfilled", fulfilled)
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
            Event::SignatureEncrypted {
                state,
                receipt_point,
                price_point,
                ..
            } => f
                .debug_struct("SignatureEncrypted")
                .field("state", state)
                .field("presignature", &"<redacted>")
                .field("receipt_point", receipt_point)
                .field("price_point", price_point)
                .finish(),
            Event::PreSignatureCompleted { state, .. } => f
                .debug_struct("PreSignatureCompleted")
                .field("state", state)
                .finish_non_exhaustive(),
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
            Event::PtlcClaimed { id, point } => f
                .debug_struct("PtlcClaimed")
                .field("id", id)
                .field("point", point)
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
    /// Store this snapshot durably before executing any later action, with its settlement
    /// leaf hashes ([`Snapshot::settlement_leaf_hashes`]), which its serde form leaves out:
    /// `node::store` appends them to a table of their own. [`Channel::restore`] refuses a
    /// snapshot whose log does not reach its complete state.
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
