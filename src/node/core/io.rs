//! The node core's inputs, outputs, commands and errors.

use super::*;

/// Which payment role a node plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A: pays while going offline.
    Payer,
    /// S: the always-online LSP.
    Lsp,
    /// B: is paid whenever it comes online.
    Payee,
    /// P: forwards the LSP's PTLC to a payee that has no channel with the LSP.
    Router,
}

impl Role {
    /// Every role, in the order of a payment.
    pub const ALL: [Role; 4] = [Role::Payer, Role::Lsp, Role::Router, Role::Payee];

    /// Its name: `payer`, `lsp`, `payee` or `router`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Payer => "payer",
            Role::Lsp => "lsp",
            Role::Payee => "payee",
            Role::Router => "router",
        }
    }
}

impl core::fmt::Display for Role {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A role name that is none of `payer`, `lsp`, `payee`, `router`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: payer, lsp, payee or router")]
pub struct UnknownRole(pub String);

impl core::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// The router terms a payee names in its invoice when it is reached through its channel
/// peer, and the terms a router node forwards on: a fee, and an expiry delta of at least
/// twice a 6-block shared delay plus the sale window margin.
pub const DEFAULT_ROUTER_POLICY: RouterPolicy = RouterPolicy {
    fee_sat: 10,
    expiry_delta: 14,
};

/// Errors of the node core. None of them changes state.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A channel refused the input.
    #[error("channel: {0}")]
    Channel(#[from] ChannelError),
    /// The payment role refused the input.
    #[error("payment: {0}")]
    Payment(#[from] PaymentError),
    /// A frame that is not a peer message.
    #[error("wire: {0}")]
    Wire(#[from] WireError),
    /// No such channel.
    #[error("unknown channel {0:?}")]
    UnknownChannel(ChannelId),
    /// A message on a channel that belongs to another peer.
    #[error("channel {channel:?} does not belong to peer {peer}")]
    NotYourChannel {
        /// The channel.
        channel: ChannelId,
        /// The sender.
        peer: Box<PublicKey>,
    },
    /// The command needs another role.
    #[error("{what} needs the {role:?} role")]
    WrongRole {
        /// The command.
        what: &'static str,
        /// The role it needs.
        role: Role,
    },
    /// A snapshot that cannot be restored.
    #[error("stored channel {0:?} does not restore")]
    Restore(ChannelId),
}

/// A channel with the peer it belongs to.
pub struct ChannelEntry {
    /// The peer's node key.
    pub peer: PublicKey,
    /// The channel.
    pub channel: Channel,
}

/// A payment record of the node's role, as the role keeps it.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
pub enum PaymentRecord {
    /// A payer's record.
    Payer(PayerPayment),
    /// An LSP's record.
    Lsp(LspPayment),
    /// A payee's record.
    Payee(PayeePayment),
    /// A router's record.
    Router(RouterPayment),
}

impl PaymentRecord {
    /// The name of the payment's status (`posted`, `selling`, `paid`, ...), the `status`
    /// tag of the record's serde form.
    pub fn status_name(&self) -> &'static str {
        match self {
            PaymentRecord::Payer(p) => p.status.name(),
            PaymentRecord::Lsp(p) => p.status.name(),
            PaymentRecord::Payee(p) => p.status.name(),
            PaymentRecord::Router(p) => p.status.name(),
        }
    }
}

impl From<PayerPayment> for PaymentRecord {
    fn from(r: PayerPayment) -> Self {
        PaymentRecord::Payer(r)
    }
}
impl From<LspPayment> for PaymentRecord {
    fn from(r: LspPayment) -> Self {
        PaymentRecord::Lsp(r)
    }
}
impl From<PayeePayment> for PaymentRecord {
    fn from(r: PayeePayment) -> Self {
        PaymentRecord::Payee(r)
    }
}
impl From<RouterPayment> for PaymentRecord {
    fn from(r: RouterPayment) -> Self {
        PaymentRecord::Router(r)
    }
}

/// Everything one input changed that must be durable before any of its actions is carried
/// out: the driver writes the whole set in one transaction (persist before send holds for
/// the input as a whole). A record changed twice by one input is in the set once, as it was
/// last.
#[derive(Debug, Default)]
pub struct ChangeSet {
    /// Channel snapshots, with the peer each channel belongs to.
    pub channels: BTreeMap<ChannelId, (PublicKey, Box<Snapshot>)>,
    /// Payment records of the node's role.
    pub payments: BTreeMap<PaymentId, PaymentRecord>,
    /// Records of the reverse variant.
    pub reverse: BTreeMap<PaymentId, ReversePayment>,
}

impl ChangeSet {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.payments.is_empty() && self.reverse.is_empty()
    }

    /// How many records changed.
    pub fn len(&self) -> usize {
        self.channels.len() + self.payments.len() + self.reverse.len()
    }

    /// Adds `later` on top of this set: a record in both is kept as `later` has it.
    pub fn merge(&mut self, later: ChangeSet) {
        self.channels.extend(later.channels);
        self.payments.extend(later.payments);
        self.reverse.extend(later.reverse);
    }
}

/// What [`NodeCore::handle`] returns for one input: the change set to write first, then the
/// actions to carry out in order.
#[derive(Debug, Default)]
#[must_use = "the changes must be persisted and the actions carried out"]
pub struct Handled {
    /// What must be durable before any action.
    pub changes: ChangeSet,
    /// What to do, in order, once the changes are durable.
    pub actions: Vec<NodeOutput>,
}

impl Handled {
    pub(super) fn push(&mut self, action: NodeOutput) {
        self.actions.push(action);
    }

    pub(super) fn persist_channel(&mut self, peer: PublicKey, snapshot: Box<Snapshot>) {
        self.changes
            .channels
            .insert(snapshot.channel_id, (peer, snapshot));
    }
}

/// What a node asks its driver to do once the input's [`ChangeSet`] is durable.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum NodeOutput {
    /// Send a frame to a peer (dropped if it is not connected; the protocol resends on
    /// reconnection).
    Send {
        /// The peer.
        to: PublicKey,
        /// The frame.
        frame: Vec<u8>,
        /// The message's name, for transcripts.
        what: &'static str,
    },
    /// Publish a transaction.
    Broadcast(Transaction),
    /// Report spends of this outpoint.
    Watch(OutPoint),
    /// The opener must build a funding transaction paying `script_pubkey` the capacity.
    NeedFunding {
        /// The channel.
        channel_id: ChannelId,
        /// The funding script.
        script_pubkey: bitcoin::ScriptBuf,
        /// The capacity.
        capacity_sat: u64,
    },
    /// State 0 is complete: broadcast the funding transaction built for this channel.
    ReadyToFund {
        /// The channel.
        channel_id: ChannelId,
    },
    /// Seal and post a letter to the payee's mailbox, then report
    /// [`NodeInput::LetterPosted`].
    PostLetter {
        /// The payment.
        payment_id: PaymentId,
        /// The payee.
        payee: PublicKey,
        /// The letter.
        letter: Box<SaleLetter>,
    },
    /// Post a letter of the reverse variant to `to`'s mailbox.
    PostReverse {
        /// The recipient.
        to: PublicKey,
        /// The letter's bytes.
        bytes: Vec<u8>,
        /// The recipient's contact card, when the node learnt it from a letter.
        contact: Option<serde_json::Value>,
    },
    /// A channel event, for the user.
    ChannelEvent {
        /// The channel.
        channel_id: ChannelId,
        /// The event.
        event: Event,
    },
    /// A payment event, for the user.
    PaymentEvent(PaymentEvent),
    /// A peer input was refused (logged; state unchanged).
    Refused {
        /// The peer.
        peer: PublicKey,
        /// Why.
        error: String,
    },
    /// A peer sent a message of an unknown odd type, which a later version may send to
    /// peers that understand it: ignored (logged; state unchanged).
    Ignored {
        /// The peer.
        peer: PublicKey,
        /// The message's type.
        message_type: u16,
    },
}

/// An input to [`NodeCore::handle`].
// Inputs are handled one at a time and moved, not stored in bulk.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum NodeInput {
    /// A frame from an authenticated peer.
    Frame {
        /// The peer.
        from: PublicKey,
        /// The frame.
        frame: Vec<u8>,
    },
    /// A peer connected.
    Connected {
        /// The peer.
        peer: PublicKey,
    },
    /// A new tip.
    Block {
        /// Its height.
        height: u32,
    },
    /// A transaction confirmed.
    Confirmed {
        /// Its txid.
        txid: bitcoin::Txid,
        /// Its block height.
        height: u32,
    },
    /// A watched outpoint was spent.
    Spend {
        /// The spending transaction.
        tx: Transaction,
        /// Its block height, if confirmed.
        confirmed_at: Option<u32>,
    },
    /// The wallet built the funding transaction of an opening channel.
    FundingBuilt {
        /// The channel.
        channel_id: ChannelId,
        /// Its funding output.
        outpoint: OutPoint,
    },
    /// A letter posted for a payment.
    LetterPosted {
        /// The payment.
        payment_id: PaymentId,
    },
    /// A decrypted letter from our mailbox.
    Letter {
        /// Its payload.
        bytes: Vec<u8>,
    },
    /// A sale letter the merchant's device accepted at the counter (`asyncpay pos accept`):
    /// its receipt slot is reserved for it (see [`PayeeInput::Letter`]).
    HandedLetter {
        /// Its payload.
        bytes: Vec<u8>,
    },
    /// A user command.
    Command(NodeCommand),
    /// Fresh randomness.
    Entropy([u8; 32]),
    /// The node has just been restored from its store: it redoes the steps a stop may have
    /// cut between two persists.
    Started,
}

/// What a user can ask a node.
#[derive(Debug)]
pub enum NodeCommand {
    /// Open a channel to `peer` as its opener.
    OpenChannel {
        /// The peer.
        peer: PublicKey,
        /// The channel id (random, from the driver).
        channel_id: ChannelId,
        /// Capacity.
        capacity_sat: u64,
        /// Blocks between an update confirming and its settlement.
        shared_delay: u16,
    },
    /// Pay `payee` `amount_sat` through the channel with `lsp` (payer).
    Pay {
        /// A fresh id.
        payment_id: PaymentId,
        /// The LSP.
        lsp: PublicKey,
        /// The payee.
        payee: PublicKey,
        /// Amount.
        amount_sat: u64,
        /// Fee for the LSP.
        fee_sat: u64,
        /// A note for the payee.
        note: String,
        /// The payee's receipt slots, from its checked contact card.
        receipts: ReceiptCard,
        /// A held sale: the payment waits in a PTLC to the LSP expiring this many blocks
        /// from now (at most the channel's update window), so that many payments can wait
        /// on one channel; `None` withholds a state update instead (one at a time).
        hold_blocks: Option<u32>,
        /// For a held sale: ask for an offer A cannot cancel before its expiry.
        irrevocable: bool,
    },
    /// Be paid `amount_sat` by `payer` while offline (reverse variant): ask `lsp` for a state
    /// paying us whose LSP signature `payer` buys.
    Receive {
        /// A fresh id.
        payment_id: PaymentId,
        /// Our LSP.
        lsp: PublicKey,
        /// Who pays.
        payer: PublicKey,
        /// Amount.
        amount_sat: u64,
        /// Our mailbox contact card, for the payer's hand-over.
        contact: Option<serde_json::Value>,
    },
    /// Cancel a payment (payer).
    Cancel {
        /// The payment.
        payment_id: PaymentId,
    },
    /// Publish the latest state of a channel.
    ForceClose {
        /// The channel.
        channel_id: ChannelId,
    },
    /// Close a channel cooperatively on its last complete state (which must hold no PTLC):
    /// both parties sign one key-path spend of the funding output paying each its balance,
    /// `fee_sat` out of ours.
    Close {
        /// The channel.
        channel_id: ChannelId,
        /// The close transaction's fee, paid from our balance.
        fee_sat: u64,
    },
}
