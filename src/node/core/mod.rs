//! The node's sans-io core: one node key, its channels and its payment role, wired together.
//!
//! [`NodeCore::handle`] takes a [`NodeInput`] (peer bytes, a connection, a block, a user
//! command, a letter from the mailbox) and returns [`NodeOutput`]s for the driver, in order.
//! Inside, channel events feed the payment role (a withheld signature becomes the payer's
//! request; a PTLC fulfilled on the S–B channel completes the payer's state at S), and payment
//! actions become channel commands. What one input changed comes back as one [`ChangeSet`],
//! which the driver makes durable before it carries out any of the input's actions.
//!
//! A peer frame holds one [`PeerMessage`] in the wire encoding of [`crate::protocol::wire`]:
//! its type says whether it is a channel or a payment message. A message of an unknown odd
//! type (a later version's optional message) is ignored and reported as
//! [`NodeOutput::Ignored`].

use std::collections::BTreeMap;

use bitcoin::{OutPoint, Transaction};
use serde::{Deserialize, Serialize};

use crate::crypto::adaptor::{AdaptorPoint, AdaptorSecret};
use crate::crypto::keys::{PublicKey, SecretKey};
use crate::crypto::nonce::NonceSeed;
use crate::crypto::receipt::{ReceiptCard, ReceiptKeys};
use crate::crypto::tagged_hash;
use crate::protocol::channel::{
    self, Channel, ChannelError, ChannelSecrets, Command, Event, Input, OpenTerms, OwnWithheld,
    Phase, PtlcRecord, Snapshot, Stage,
};
use crate::protocol::messages::{Change, ChannelId, Message};
use crate::protocol::payment::{
    reverse_ptlc_expiry, Action as PaymentAction, Entropy, HeldPtlc, HeldTransfer, Hold, Incoming,
    LetterKind, Lsp, LspInput, LspPayment, LspPolicy, LspStatus, PayRequest, Payee, PayeeInput,
    PayeePayment, PayeeStatus, Payer, PayerInput, PayerPayment, PayerStatus, PaymentError,
    PaymentEvent, PaymentId, PaymentMessage, PendingTransfer, Reverse, ReverseAction, ReverseInput,
    ReverseLetter, ReversePayment, ReverseStatus, RouteHint, Router, RouterInput, RouterPayment,
    RouterPolicy, RouterStatus, SaleLetter, Share, UpdateProof,
};
use crate::protocol::wire::{Decoded, PeerMessage, WireError};
use crate::tx::Party;

mod channels;
use roles::Notify;
mod inputs;
mod io;
mod lsp;
mod payee;
mod payer;
mod recovery;
mod reverse;
mod roles;
mod router;

pub use io::{
    ChangeSet, ChannelEntry, Handled, NodeCommand, NodeError, NodeInput, NodeOutput, PaymentRecord,
    Role, UnknownRole, DEFAULT_ROUTER_POLICY,
};
use roles::RoleIn;

/// The role machine a node runs.
#[allow(clippy::large_enum_variant)]
enum RoleMachine {
    Payer(Payer),
    Lsp(Lsp),
    Payee(Payee),
    Router(Router),
}

/// One node: key, channels, payment role.
pub struct NodeCore {
    key: SecretKey,
    seed: [u8; 32],
    height: u32,
    channels: BTreeMap<ChannelId, ChannelEntry>,
    /// The ids of our channels with each peer (by x-only key bytes), in id order: a peer's
    /// message finds its channels without comparing its key with every channel's peer in
    /// constant time.
    by_peer: BTreeMap<[u8; 32], Vec<ChannelId>>,
    role: RoleMachine,
    /// The reverse variant (payee offline), beside the role.
    reverse: Reverse,
    /// The last randomness the driver gave, mixed into channels opened or accepted later.
    entropy: [u8; 32],
    /// The card epoch of our receipt slots ([`RECEIPT_EPOCH`] unless the node was restored
    /// from its seed: see [`NodeCore::set_receipt_epoch`]).
    receipt_epoch: u32,
    /// A role's channel updates that found their channel busy with another proposal, in
    /// order, run as soon as it is free (see `roles.rs`). Not stored: after a restart each
    /// role derives what it still owes its channels from its records.
    queued: BTreeMap<ChannelId, std::collections::VecDeque<(Command, Notify)>>,
}

impl core::fmt::Debug for NodeCore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NodeCore")
            .field("node", &self.key.public_key())
            .field("height", &self.height)
            .field("channels", &self.channels.len())
            .finish_non_exhaustive()
    }
}

/// Payment records of a role, as loaded from storage.
pub enum Records {
    /// Payer records.
    Payer(Vec<(PaymentId, PayerPayment)>),
    /// LSP records and policy.
    Lsp(LspPolicy, Vec<(PaymentId, LspPayment)>),
    /// Payee records.
    Payee(Vec<(PaymentId, PayeePayment)>),
    /// Router records and policy.
    Router(RouterPolicy, Vec<(PaymentId, RouterPayment)>),
}

impl NodeCore {
    /// A node from its secret seed (node key and channel keys derive from it), its stored
    /// channels (peer, snapshot) and payment records.
    pub fn restore(
        seed: [u8; 32],
        height: u32,
        channels: Vec<(PublicKey, Snapshot)>,
        records: Records,
    ) -> Result<Self, NodeError> {
        let key = node_key(&seed);
        // As an LSP, the reverse variant charges the same fee and offer lifetime.
        let (fee, lifetime) = match &records {
            Records::Lsp(policy, _) => (Some(*policy), policy.offer_lifetime),
            _ => (None, 0),
        };
        let reverse = Reverse::restore(
            node_key(&seed),
            move |amount| fee.map_or(0, |p| p.fee_for(amount)),
            lifetime,
            vec![],
        );
        let role = match records {
            Records::Payer(r) => RoleMachine::Payer(Payer::restore(key.public_key(), r)),
            Records::Lsp(policy, r) => {
                RoleMachine::Lsp(Lsp::restore(node_key(&seed), policy, height, r))
            }
            Records::Payee(r) => RoleMachine::Payee(Payee::restore(
                node_key(&seed),
                ReceiptKeys::from_seed(&seed),
                RECEIPT_EPOCH,
                r,
            )),
            Records::Router(policy, r) => RoleMachine::Router(Router::restore(policy, r)),
        };
        let mut node = NodeCore {
            key,
            seed,
            height,
            channels: BTreeMap::new(),
            by_peer: BTreeMap::new(),
            queued: BTreeMap::new(),
            role,
            reverse,
            entropy: [0; 32],
            receipt_epoch: RECEIPT_EPOCH,
        };
        for (peer, snapshot) in channels {
            let id = snapshot.channel_id;
            let channel = Channel::restore(node.channel_secrets(&id), snapshot)
                .map_err(|_| NodeError::Restore(id))?;
            node.add_channel(id, peer, channel);
        }
        Ok(node)
    }

    /// Keeps `channel` with `peer` under `id`.
    fn add_channel(&mut self, id: ChannelId, peer: PublicKey, channel: Channel) {
        let ids = self.by_peer.entry(peer.to_xonly_bytes()).or_default();
        if let Err(at) = ids.binary_search(&id) {
            ids.insert(at, id);
        }
        self.channels.insert(id, ChannelEntry { peer, channel });
    }

    /// Our channels with `peer`, in channel-id order.
    pub(super) fn channels_with<'a>(
        &'a self,
        peer: &PublicKey,
    ) -> impl Iterator<Item = (&'a ChannelId, &'a ChannelEntry)> + 'a {
        self.by_peer
            .get(&peer.to_xonly_bytes())
            .into_iter()
            .flatten()
            .filter_map(|id| self.channels.get_key_value(id))
    }

    /// Loads the stored records of the reverse variant (see [`ChangeSet::reverse`]).
    pub fn restore_reverse(&mut self, records: Vec<(PaymentId, ReversePayment)>) {
        let (fee, lifetime) = match &self.role {
            RoleMachine::Lsp(l) => (Some(*l.policy()), l.policy().offer_lifetime),
            _ => (None, 0),
        };
        self.reverse = Reverse::restore(
            node_key(&self.seed),
            move |amount| fee.map_or(0, |p| p.fee_for(amount)),
            lifetime,
            records,
        );
    }

    /// The reverse variant's payments.
    pub fn reverse_payments(&self) -> impl Iterator<Item = (&PaymentId, &ReversePayment)> {
        self.reverse.payments()
    }

    /// The node's public key.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// The node's role.
    pub fn role(&self) -> Role {
        match self.role {
            RoleMachine::Payer(_) => Role::Payer,
            RoleMachine::Lsp(_) => Role::Lsp,
            RoleMachine::Payee(_) => Role::Payee,
            RoleMachine::Router(_) => Role::Router,
        }
    }

    /// The channels.
    pub fn channels(&self) -> &BTreeMap<ChannelId, ChannelEntry> {
        &self.channels
    }

    /// Every outpoint a channel of this node watches, from the channels' snapshots: what a
    /// restarted driver must watch again (see [`Channel::watched`]).
    pub fn watched(&self) -> Vec<OutPoint> {
        self.channels
            .values()
            .flat_map(|e| e.channel.watched())
            .chain(self.reverse.held().map(|(proof, _)| proof.funding_outpoint))
            .collect()
    }

    /// The payment records, as JSON, for display.
    pub fn payments_json(&self) -> Vec<(PaymentId, serde_json::Value)> {
        fn all<'a, R: Serialize + 'a>(
            it: impl Iterator<Item = (&'a PaymentId, &'a R)>,
        ) -> Vec<(PaymentId, serde_json::Value)> {
            it.map(|(id, r)| (*id, serde_json::to_value(r).expect("records serialise")))
                .collect()
        }
        match &self.role {
            RoleMachine::Payer(p) => all(p.payments()),
            RoleMachine::Lsp(l) => all(l.payments()),
            RoleMachine::Payee(p) => all(p.payments()),
            RoleMachine::Router(r) => all(r.payments()),
        }
    }

    /// The payer role, if this node is a payer.
    pub fn payer(&self) -> Option<&Payer> {
        match &self.role {
            RoleMachine::Payer(p) => Some(p),
            _ => None,
        }
    }

    /// The LSP role, if this node is an LSP.
    pub fn lsp(&self) -> Option<&Lsp> {
        match &self.role {
            RoleMachine::Lsp(l) => Some(l),
            _ => None,
        }
    }

    /// The payee role, if this node is a payee.
    pub fn payee(&self) -> Option<&Payee> {
        match &self.role {
            RoleMachine::Payee(p) => Some(p),
            _ => None,
        }
    }

    /// The channel keys of `channel`, derived from the seed.
    fn channel_secrets(&self, channel: &ChannelId) -> ChannelSecrets {
        let key = derive_key(&self.seed, "channel-key", &channel.0);
        let nonce = tagged_hash("asyncpay/node/v1/channel-nonce", &[&self.seed, &channel.0]);
        ChannelSecrets {
            key,
            nonce_seed: NonceSeed::from_bytes(nonce),
        }
    }

    /// A sale letter to the payee role, at the current height; `reserved` for one the
    /// merchant's device accepted at the counter.
    fn payee_letter(
        &mut self,
        bytes: Vec<u8>,
        reserved: bool,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        let height = self.height;
        let route_hint = self.route_hint(&bytes);
        self.role_input(
            RoleIn::Payee(PayeeInput::Letter {
                bytes,
                height,
                route_hint,
                reserved,
            }),
            out,
        )
    }

    /// Our receipt slots, for our contact card: a payer encrypts its signature to one of
    /// them, and the payment's proof is our signature with it.
    ///
    /// The card lists the first [`RECEIPT_SLOTS`] slots that no fulfilment of ours spent
    /// yet: each payment paid uses one up, so a card issued later lists later slots.
    pub fn receipt_card(&self) -> ReceiptCard {
        let epoch = self.receipt_epoch;
        let spent = match &self.role {
            RoleMachine::Payee(payee) => payee.spent_slots(epoch),
            _ => Default::default(),
        };
        let free = (0..u32::MAX)
            .filter(|i| !spent.contains(i))
            .take(RECEIPT_SLOTS as usize);
        ReceiptKeys::from_seed(&self.seed).endorsed_card(epoch, free, &self.key)
    }

    /// Our receipt slots' card epoch: slots are derived from the seed, the epoch and the
    /// index, and a letter naming another epoch is refused. A node whose record of spent
    /// slots may be lost (restored from its seed, or from a copy of its data directory)
    /// takes a new epoch at random, so that no slot it may have spent before signs again.
    pub fn set_receipt_epoch(&mut self, epoch: u32) {
        self.receipt_epoch = epoch;
        if let RoleMachine::Payee(payee) = &mut self.role {
            payee.set_receipt_epoch(epoch);
        }
    }

    /// `count` of our receipt slots from index `from`: a card for one payer alone (the
    /// benchmarks hand each payer its own slots, as a slot-dispensing mailbox would).
    pub fn receipt_slots(&self, from: u32, count: u32) -> ReceiptCard {
        let indices = from..from.saturating_add(count);
        ReceiptKeys::from_seed(&self.seed).endorsed_card(self.receipt_epoch, indices, &self.key)
    }

    /// Our payout key for `channel`.
    pub fn payout_key(&self, channel: &ChannelId) -> PublicKey {
        derive_key(&self.seed, "payout-key", &channel.0).public_key()
    }

    /// Handles one input.
    ///
    /// Returns what the input changed, to be made durable first, and the actions to carry
    /// out once it is (see [`Handled`]).
    pub fn handle(&mut self, input: NodeInput) -> Result<Handled, NodeError> {
        let mut out = Handled::default();
        match input {
            NodeInput::Frame { from, frame } => self.on_frame(from, frame, &mut out)?,
            NodeInput::Connected { peer } => {
                let ids: Vec<ChannelId> = self.channels_with(&peer).map(|(id, _)| *id).collect();
                for id in ids {
                    self.channel_input(id, Input::Connected, &mut out)?;
                }
                self.resume_proposals(peer, &mut out)?;
                self.reverse_input(ReverseInput::Connected { peer }, &mut out)?;
                self.role_input(RoleIn::Connected(peer), &mut out)?;
            }
            NodeInput::Block { height } => {
                self.height = self.height.max(height);
                let ids: Vec<ChannelId> = self.channels.keys().copied().collect();
                for id in ids {
                    let input = Input::Chain(channel::ChainEvent::Block { height });
                    if let Err(e) = self.channel_input(id, input, &mut out) {
                        out.push(NodeOutput::Refused {
                            peer: self.key.public_key(),
                            error: e.to_string(),
                        });
                    }
                }
                self.feed_windows(&mut out)?;
                self.expire_queued(height, &mut out)?;
                self.role_input(RoleIn::Block(height), &mut out)?;
            }
            NodeInput::Confirmed { txid, height } => {
                let ids: Vec<ChannelId> = self.channels.keys().copied().collect();
                for id in ids {
                    let input = Input::Chain(channel::ChainEvent::Confirmed { txid, height });
                    // Channels ignore transactions that are not theirs.
                    let _ = self.channel_input(id, input, &mut out);
                }
            }
            NodeInput::Spend { tx, confirmed_at } => {
                let ids: Vec<ChannelId> = self.channels.keys().copied().collect();
                for id in ids {
                    let input = Input::Chain(channel::ChainEvent::Spend {
                        tx: tx.clone(),
                        confirmed_at,
                    });
                    let _ = self.channel_input(id, input, &mut out);
                }
                // As a payer holding an offline payee's complete update: an older state of
                // its channel is answered with it.
                // Each older update is answered on its own output, and that output is
                // watched in turn: S may publish a later (still older) update on top of it.
                let mut answered = false;
                for (proof, signature) in self.reverse.held() {
                    if let Some(answer) = proof.answer(signature, &tx) {
                        out.push(NodeOutput::Broadcast(answer));
                        answered = true;
                    }
                }
                if answered {
                    out.push(NodeOutput::Watch(OutPoint {
                        txid: tx.compute_txid(),
                        vout: 0,
                    }));
                }
                self.feed_windows(&mut out)?;
            }
            NodeInput::FundingBuilt {
                channel_id,
                outpoint,
            } => self.channel_input(
                channel_id,
                Input::Command(Command::FundingBuilt { outpoint }),
                &mut out,
            )?,
            NodeInput::LetterPosted { payment_id } => self.role_input(
                RoleIn::Payer(PayerInput::LetterPosted { payment_id }),
                &mut out,
            )?,
            NodeInput::Letter { bytes } if LetterKind::of(&bytes) == Some(LetterKind::Reverse) => {
                let letter = ReverseLetter::decode(&bytes)?;
                self.on_reverse_letter(letter, &mut out)?;
            }
            // A sale letter, or bytes that are no letter: the payee role says which.
            NodeInput::Letter { bytes } => self.payee_letter(bytes, false, &mut out)?,
            NodeInput::HandedLetter { bytes } => self.payee_letter(bytes, true, &mut out)?,
            NodeInput::Command(command) => self.on_command(command, &mut out)?,
            NodeInput::Started => self.resume(&mut out)?,
            NodeInput::Entropy(e) => {
                self.entropy = e;
                for entry in self.channels.values_mut() {
                    let _ = entry.channel.handle(Input::Randomness(e));
                }
                match &mut self.role {
                    RoleMachine::Lsp(l) => {
                        l.handle(LspInput::Entropy(Entropy(e)))?;
                    }
                    RoleMachine::Payee(p) => {
                        p.handle(PayeeInput::Entropy(Entropy(e)))?;
                    }
                    RoleMachine::Payer(_) | RoleMachine::Router(_) => {}
                }
            }
        }
        Ok(out)
    }
}

/// The scalar of the PTLC with `point` if fulfilling it is the channel's last complete change:
/// a fulfilment a stop may have kept from the role.
fn last_fulfilment(channel: &Channel, point: AdaptorPoint) -> Option<AdaptorSecret> {
    match &channel.snapshot().complete.as_ref()?.change {
        Change::FulfilPtlc { secret, .. } => AdaptorSecret::from_bytes(secret.0)
            .ok()
            .filter(|s| s.adaptor_point() == point),
        _ => None,
    }
}

/// Whether a PTLC with `point` is neither in the channel's latest state nor being added, on
/// a channel ready for an update: an offer a stop kept from reaching the channel.
fn never_offered(channel: &Channel, point: AdaptorPoint) -> bool {
    let in_latest = channel
        .latest()
        .is_some_and(|b| b.ptlcs.iter().any(|x| x.point == point));
    let in_pending = channel
        .snapshot()
        .pending()
        .is_some_and(|x| matches!(&x.change, Change::AddPtlc { point: q, .. } if *q == point));
    !in_latest && !in_pending && channel.phase() == Phase::Funded
}

fn typed_records<R: Into<PaymentRecord>>(
    actions: Vec<PaymentAction<(PaymentId, R)>>,
) -> Vec<PaymentAction<(PaymentId, PaymentRecord)>> {
    actions
        .into_iter()
        .map(|a| match a {
            PaymentAction::Persist((id, r)) => PaymentAction::Persist((id, r.into())),
            PaymentAction::Send { to, message } => PaymentAction::Send { to, message },
            PaymentAction::Channel {
                channel_id,
                command,
            } => PaymentAction::Channel {
                channel_id,
                command,
            },
            PaymentAction::Revert {
                channel_id,
                abandoned_state,
            } => PaymentAction::Revert {
                channel_id,
                abandoned_state,
            },
            PaymentAction::PostLetter {
                payment_id,
                payee,
                letter,
            } => PaymentAction::PostLetter {
                payment_id,
                payee,
                letter,
            },
            PaymentAction::Event(e) => PaymentAction::Event(e),
        })
        .collect()
}

/// The receipt slots a contact card lists.
pub const RECEIPT_SLOTS: u32 = 32;

/// The card epoch of the receipt slots of a node that was never restored. Slots are derived
/// from the seed, the epoch and the index; a payee refuses letters for another epoch
/// ([`NodeCore::set_receipt_epoch`]).
pub const RECEIPT_EPOCH: u32 = 0;

/// The receipt slots of the node with `seed` that was never restored (epoch
/// [`RECEIPT_EPOCH`]), as its first contact card lists them.
pub fn receipt_card(seed: &[u8; 32]) -> ReceiptCard {
    ReceiptKeys::from_seed(seed).endorsed_card(RECEIPT_EPOCH, 0..RECEIPT_SLOTS, &node_key(seed))
}

/// The node key derived from the seed.
pub fn node_key(seed: &[u8; 32]) -> SecretKey {
    derive_key(seed, "node-key", &[])
}

fn derive_key(seed: &[u8; 32], what: &str, extra: &[u8]) -> SecretKey {
    let mut counter = 0u8;
    loop {
        let bytes = tagged_hash(
            "asyncpay/node/v1/derive",
            &[seed, what.as_bytes(), extra, &[counter]],
        );
        if let Ok(key) = SecretKey::from_bytes(bytes) {
            return key;
        }
        counter = counter.wrapping_add(1);
    }
}
