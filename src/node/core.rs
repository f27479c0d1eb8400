//! The node's sans-io core: one node key, its channels and its payment role, wired together.
//!
//! [`NodeCore::handle`] takes a [`NodeInput`] (peer bytes, a connection, a block, a user
//! command, a letter from the mailbox) and returns [`NodeOutput`]s for the driver, in order.
//! Inside, channel events feed the payment role (a withheld signature becomes the payer's
//! request; a PTLC fulfilled on the S–B channel completes the payer's state at S), and payment
//! actions become channel commands. The driver stores each `Persist*` output durably before it
//! executes the next output.
//!
//! Peer frames carry one message each, tagged by layer: `0x01 ‖ channel message` or
//! `0x02 ‖ payment message`.

use std::collections::BTreeMap;

use bitcoin::{OutPoint, Transaction};
use serde::{Deserialize, Serialize};

use crate::crypto::adaptor::{AdaptorPoint, AdaptorSecret};
use crate::crypto::keys::{PublicKey, SecretKey};
use crate::crypto::nonce::NonceSeed;
use crate::mailbox::tagged_hash;
use crate::protocol::channel::{
    self, Channel, ChannelError, ChannelSecrets, Command, Event, Input, OpenTerms, Phase,
    PtlcRecord, Snapshot,
};
use crate::protocol::messages::{Change, ChannelId, Message};
use crate::protocol::payment::{
    reverse_ptlc_expiry, Action as PaymentAction, Entropy, Incoming, Lsp, LspInput, LspPayment,
    LspPolicy, LspStatus, Payee, PayeeInput, PayeePayment, PayeeStatus, Payer, PayerInput,
    PayerPayment, PayerStatus, PaymentError, PaymentEvent, PaymentId, PaymentMessage,
    PendingTransfer, Reverse, ReverseAction, ReverseInput, ReverseLetter, ReversePayment,
    ReverseStatus, RouteHint, Router, RouterInput, RouterPayment, RouterPolicy, RouterStatus,
    SaleLetter, UpdateProof,
};
use crate::tx::Party;

/// Frame tag of a channel message.
pub const TAG_CHANNEL: u8 = 1;
/// Frame tag of a payment message.
pub const TAG_PAYMENT: u8 = 2;

/// Which payment role a node plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
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
    /// A frame with no known tag.
    #[error("unknown frame tag {0}")]
    UnknownTag(u8),
    /// An empty frame.
    #[error("empty frame")]
    EmptyFrame,
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

/// What a node asks its driver to do.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum NodeOutput {
    /// Store a channel snapshot durably before the next output.
    PersistChannel {
        /// The peer.
        peer: PublicKey,
        /// The snapshot.
        snapshot: Box<Snapshot>,
    },
    /// Store a payment record (JSON of the role's record) durably before the next output.
    PersistPayment {
        /// The payment.
        payment_id: PaymentId,
        /// The record as JSON.
        record: serde_json::Value,
    },
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
    /// Store a record of the reverse variant durably before the next output.
    PersistReverse {
        /// The payment.
        payment_id: PaymentId,
        /// The record as JSON.
        record: serde_json::Value,
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
}

/// An input to [`NodeCore::handle`].
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
}

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
    role: RoleMachine,
    /// The reverse variant (payee offline), beside the role.
    reverse: Reverse,
    /// The last randomness the driver gave, mixed into channels opened or accepted later.
    entropy: [u8; 32],
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
            Records::Payee(r) => RoleMachine::Payee(Payee::restore(node_key(&seed), r)),
            Records::Router(policy, r) => RoleMachine::Router(Router::restore(policy, r)),
        };
        let mut node = NodeCore {
            key,
            seed,
            height,
            channels: BTreeMap::new(),
            role,
            reverse,
            entropy: [0; 32],
        };
        for (peer, snapshot) in channels {
            let id = snapshot.channel_id;
            let channel = Channel::restore(node.channel_secrets(&id), snapshot)
                .map_err(|_| NodeError::Restore(id))?;
            node.channels.insert(id, ChannelEntry { peer, channel });
        }
        Ok(node)
    }

    /// Loads the stored records of the reverse variant (see [`NodeOutput::PersistReverse`]).
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

    /// Our payout key for `channel`.
    pub fn payout_key(&self, channel: &ChannelId) -> PublicKey {
        derive_key(&self.seed, "payout-key", &channel.0).public_key()
    }

    /// Handles one input.
    pub fn handle(&mut self, input: NodeInput) -> Result<Vec<NodeOutput>, NodeError> {
        let mut out = Vec::new();
        match input {
            NodeInput::Frame { from, frame } => self.on_frame(from, frame, &mut out)?,
            NodeInput::Connected { peer } => {
                let ids: Vec<ChannelId> = self
                    .channels
                    .iter()
                    .filter(|(_, e)| e.peer == peer)
                    .map(|(id, _)| *id)
                    .collect();
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
            NodeInput::Letter { bytes } if SaleLetter::decode(&bytes).is_err() => {
                let letter = ReverseLetter::decode(&bytes)?;
                self.on_reverse_letter(letter, &mut out)?;
            }
            NodeInput::Letter { bytes } => {
                let height = self.height;
                let route_hint = self.route_hint(&bytes);
                self.role_input(
                    RoleIn::Payee(PayeeInput::Letter {
                        bytes,
                        height,
                        route_hint,
                    }),
                    &mut out,
                )?
            }
            NodeInput::Command(command) => self.on_command(command, &mut out)?,
            NodeInput::Started => {
                self.feed_windows(&mut out)?;
                self.resume_sales(&mut out)?;
                self.resume_purchases(&mut out)?;
                self.resume_forwards(&mut out)?;
                self.resume_reverse(&mut out)?;
                self.resume_settled(&mut out)?;
            }
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

    fn on_command(
        &mut self,
        command: NodeCommand,
        out: &mut Vec<NodeOutput>,
    ) -> Result<(), NodeError> {
        match command {
            NodeCommand::OpenChannel {
                peer,
                channel_id,
                capacity_sat,
                shared_delay,
            } => {
                let terms = OpenTerms {
                    capacity_sat,
                    push_sat: 0,
                    shared_delay,
                    update_window: 1_000,
                    payout_key: self.payout_key(&channel_id),
                };
                let (mut channel, actions) = Channel::open(
                    self.channel_secrets(&channel_id),
                    channel_id,
                    terms,
                    self.height,
                )?;
                channel.handle(Input::Randomness(self.entropy))?;
                self.channels
                    .insert(channel_id, ChannelEntry { peer, channel });
                self.route_channel(channel_id, actions, out)?;
            }
            NodeCommand::Pay {
                payment_id,
                lsp,
                payee,
                amount_sat,
                fee_sat,
                note,
            } => {
                let channel_id = self
                    .channels
                    .iter()
                    .find(|(_, e)| e.peer == lsp && e.channel.phase() == Phase::Funded)
                    .map(|(id, _)| *id)
                    .ok_or(NodeError::Payment(PaymentError::Mismatch {
                        field: "no usable channel with this lsp",
                    }))?;
                self.role_input(
                    RoleIn::Payer(PayerInput::Pay {
                        payment_id,
                        channel_id,
                        lsp,
                        payee,
                        amount_sat,
                        fee_sat,
                        note,
                    }),
                    out,
                )?;
            }
            NodeCommand::Receive {
                payment_id,
                lsp,
                payer,
                amount_sat,
                contact,
            } => self.reverse_input(
                ReverseInput::Receive {
                    payment_id,
                    lsp,
                    payer,
                    amount_sat,
                    contact,
                },
                out,
            )?,
            NodeCommand::Cancel { payment_id } => {
                self.role_input(RoleIn::Payer(PayerInput::Cancel { payment_id }), out)?
            }
            NodeCommand::ForceClose { channel_id } => {
                self.channel_input(channel_id, Input::Command(Command::ForceClose), out)?
            }
        }
        Ok(())
    }

    fn on_frame(
        &mut self,
        from: PublicKey,
        frame: Vec<u8>,
        out: &mut Vec<NodeOutput>,
    ) -> Result<(), NodeError> {
        let (&tag, body) = frame.split_first().ok_or(NodeError::EmptyFrame)?;
        match tag {
            TAG_CHANNEL => {
                let msg = Message::decode(body).map_err(ChannelError::from)?;
                let id = msg.channel_id();
                match self.channels.get(&id) {
                    Some(entry) if entry.peer != from => Err(NodeError::NotYourChannel {
                        channel: id,
                        peer: Box::new(from),
                    }),
                    Some(_) => self.channel_input(id, Input::Message(msg), out),
                    None => {
                        let Message::Open(open) = &msg else {
                            return Err(NodeError::UnknownChannel(id));
                        };
                        let (mut channel, actions) = Channel::accept(
                            self.channel_secrets(&id),
                            open,
                            self.payout_key(&id),
                            self.height,
                        )?;
                        channel.handle(Input::Randomness(self.entropy))?;
                        self.channels.insert(
                            id,
                            ChannelEntry {
                                peer: from,
                                channel,
                            },
                        );
                        self.route_channel(id, actions, out)
                    }
                }
            }
            TAG_PAYMENT => {
                let message = PaymentMessage::decode(body)?;
                match message {
                    PaymentMessage::ReceiveRequest {
                        payment_id,
                        amount_sat,
                        payer,
                    } => {
                        let channel = self
                            .channels
                            .iter()
                            .find(|(_, e)| e.peer == from && e.channel.snapshot().params.is_some())
                            .map(|(id, _)| *id);
                        let withheld = channel.and_then(|id| {
                            let e = &self.channels[&id];
                            let snap = e.channel.snapshot();
                            let pending = snap.pending.as_ref()?;
                            let ours = pending.proposer == snap.side
                                && matches!(pending.change, Change::Transfer { amount_sat: a } if a == amount_sat);
                            ours.then_some((pending.body.number, e.channel.pending_price_point()?))
                        });
                        let height = self.height;
                        return self.reverse_input(
                            ReverseInput::Request {
                                from,
                                payment_id,
                                amount_sat,
                                payer,
                                channel,
                                withheld,
                                height,
                            },
                            out,
                        );
                    }
                    PaymentMessage::ReceiveOffer(offer) => {
                        let pending = self.update_proof(&from, &offer.channel_id);
                        return self.reverse_input(
                            ReverseInput::Offer {
                                from,
                                offer,
                                pending,
                            },
                            out,
                        );
                    }
                    _ => {}
                }
                let input = match &self.role {
                    RoleMachine::Lsp(_) => {
                        let pending = self.pending_transfer(&from);
                        // An invoice is paid over our channel with its sender or, failing
                        // that, with the router its route hint names.
                        let hint = match &message {
                            PaymentMessage::Invoice(invoice) => invoice.route_hint,
                            _ => None,
                        };
                        let sender_channel = self
                            .funded_channel_with(&from)
                            .or_else(|| hint.and_then(|h| self.funded_channel_with(&h.router)));
                        RoleIn::Lsp(LspInput::Message {
                            from,
                            message,
                            pending,
                            sender_channel,
                        })
                    }
                    RoleMachine::Payer(_) => RoleIn::Payer(PayerInput::Message { from, message }),
                    RoleMachine::Payee(_) => RoleIn::Payee(PayeeInput::Message { from, message }),
                    RoleMachine::Router(_) => RoleIn::Router(RouterInput::Message {
                        from,
                        message,
                        routes: self.routes(),
                    }),
                };
                self.role_input(input, out)
            }
            other => Err(NodeError::UnknownTag(other)),
        }
    }

    /// Sales the LSP recorded as `selling` whose next step was cut by a stop: the payee's
    /// fulfilment is stored on the payee channel but the payer's state was not completed
    /// (the fulfilment is handed to the role again), or the PTLC never reached the payee
    /// channel (it is offered now).
    fn resume_sales(&mut self, out: &mut Vec<NodeOutput>) -> Result<(), NodeError> {
        let RoleMachine::Lsp(lsp) = &self.role else {
            return Ok(());
        };
        let mut fulfilled = vec![];
        let mut unsent = vec![];
        for (_, p) in lsp.payments() {
            // An offer stored by an older version, or whose channel step a stop cut: the
            // priced state is frozen in its channel again before anything else happens.
            if matches!(p.status, LspStatus::Offered | LspStatus::Selling { .. }) {
                let state = p.offer.state;
                let unpriced = self.channels.get(&p.offer.channel_id).is_some_and(|e| {
                    let snap = e.channel.snapshot();
                    snap.priced != Some(state)
                        && snap
                            .pending
                            .as_ref()
                            .is_some_and(|x| x.body.number == state)
                });
                if unpriced {
                    unsent.push((p.offer.channel_id, Command::Price { state }));
                }
            }
            let LspStatus::Selling {
                payee_channel,
                ptlc_expiry,
                forward,
                ..
            } = &p.status
            else {
                continue;
            };
            let Some(entry) = self.channels.get(payee_channel) else {
                continue;
            };
            let point = p.offer.point;
            if let Some(secret) = last_fulfilment(&entry.channel, point) {
                fulfilled.push(LspInput::PtlcFulfilled { point, secret });
                continue;
            }
            if never_offered(&entry.channel, point) {
                unsent.push((
                    *payee_channel,
                    Command::AddPtlc {
                        // Through a router, the PTLC carries its fee too.
                        amount_sat: forward
                            .as_ref()
                            .map_or(p.offer.amount_sat, |f| f.amount_in_sat),
                        point,
                        expiry: *ptlc_expiry,
                    },
                ));
            }
        }
        let inputs = fulfilled.into_iter().map(RoleIn::Lsp).collect();
        self.redo(inputs, unsent, out)
    }

    /// Reverse payments whose next step was cut by a stop: the payer recorded `buying` but its
    /// PTLC never reached A–S (offered now); the LSP fulfilled the payer's PTLC but never
    /// released the state on S–B (released now; B could also complete from the payer's
    /// hand-over).
    fn resume_reverse(&mut self, out: &mut Vec<NodeOutput>) -> Result<(), NodeError> {
        let me = self.key.public_key();
        let mut commands = vec![];
        let mut inputs = vec![];
        for (_, p) in self.reverse.payments() {
            match &p.status {
                ReverseStatus::Buying { offer, .. } if p.payer == me => {
                    // Fulfilled, but the stop came before the machine heard.
                    let fulfilled = self
                        .channels
                        .values()
                        .find_map(|e| last_fulfilment(&e.channel, offer.point));
                    if let Some(secret) = fulfilled {
                        inputs.push(ReverseInput::PtlcFulfilled {
                            point: offer.point,
                            secret,
                        });
                        continue;
                    }
                    let channel = self.channels.iter().find(|(_, e)| {
                        e.peer == offer.lsp && never_offered(&e.channel, offer.point)
                    });
                    let Some((id, e)) = channel else { continue };
                    let Some(params) = e.channel.snapshot().params.as_ref() else {
                        continue;
                    };
                    commands.push((
                        *id,
                        Command::AddPtlc {
                            amount_sat: offer.amount_sat.saturating_add(offer.fee_sat),
                            point: offer.point,
                            expiry: reverse_ptlc_expiry(self.height, params.shared_delay),
                        },
                    ));
                }
                ReverseStatus::Offered { offer } if p.payee == me => {
                    // The state completed, but the stop came before the machine heard.
                    let done = self.channels.get(&offer.channel_id).is_some_and(|e| {
                        e.channel.latest().is_some_and(|b| b.number >= offer.state)
                    });
                    if done {
                        inputs.push(ReverseInput::Completed {
                            lsp: p.lsp,
                            state: offer.state,
                        });
                    }
                }
                ReverseStatus::Offered { offer } if p.lsp == me => {
                    let paid = self
                        .channels
                        .values()
                        .any(|e| last_fulfilment(&e.channel, offer.point).is_some());
                    if let (true, Some((channel, _))) = (paid, self.own_withheld(offer.point)) {
                        commands.push((channel, Command::Release));
                        continue;
                    }
                    // The payer's PTLC is committed, but the stop came before the machine
                    // heard: it is handed over again.
                    let Some(own) = self.own_withheld(offer.point) else {
                        continue;
                    };
                    if let Some((channel_id, from, ptlc)) =
                        self.committed_to_us(offer.point, |_| true)
                    {
                        inputs.push(ReverseInput::PtlcOffered {
                            channel_id,
                            from,
                            ptlc_id: ptlc.id,
                            point: offer.point,
                            amount_sat: ptlc.amount_sat,
                            own: Some(own),
                        });
                    }
                }
                _ => {}
            }
        }
        for input in inputs {
            // What a restart finds is reported if refused; it never keeps the node down.
            if let Err(e) = self.reverse_input(input, out) {
                out.push(NodeOutput::Refused {
                    peer: me,
                    error: format!("resuming a reverse payment: {e}"),
                });
            }
        }
        self.redo(vec![], commands, out)
    }

    /// Hands the role the inputs a stop kept from it, then gives the channels the commands
    /// that never reached them (a refusal is reported, not fatal: the state may have moved).
    fn redo(
        &mut self,
        inputs: Vec<RoleIn>,
        commands: Vec<(ChannelId, Command)>,
        out: &mut Vec<NodeOutput>,
    ) -> Result<(), NodeError> {
        for input in inputs {
            self.role_input(input, out)?;
        }
        for (channel_id, command) in commands {
            let what = format!("{command:?}");
            if let Err(e) = self.channel_input(channel_id, Input::Command(command), out) {
                out.push(NodeOutput::Refused {
                    peer: self.key.public_key(),
                    error: format!("{what}: {e}"),
                });
            }
        }
        Ok(())
    }

    /// Forwards the router recorded whose next step was cut by a stop: S's PTLC is committed
    /// but the role never heard of it; the outgoing PTLC never reached its channel; or the
    /// outgoing PTLC was fulfilled but the incoming one was not.
    fn resume_forwards(&mut self, out: &mut Vec<NodeOutput>) -> Result<(), NodeError> {
        let RoleMachine::Router(router) = &self.role else {
            return Ok(());
        };
        let routes = self.routes();
        let mut inputs = vec![];
        let mut unsent = vec![];
        for (_, p) in router.payments() {
            let point = p.forward.point;
            match &p.status {
                RouterStatus::Announced => {
                    let committed = self.committed_to_us(point, |peer| *peer == p.from).map(
                        |(channel_id, peer, ptlc)| Incoming {
                            channel_id,
                            peer,
                            ptlc_id: ptlc.id,
                            point,
                            amount_sat: ptlc.amount_sat,
                            expiry: ptlc.expiry.height(),
                        },
                    );
                    inputs.extend(committed.map(|incoming| RouterInput::PtlcReceived {
                        incoming,
                        routes: routes.clone(),
                    }));
                }
                RouterStatus::Forwarding { outgoing, .. } => {
                    let Some(e) = self.channels.get(outgoing) else {
                        continue;
                    };
                    if let Some(secret) = last_fulfilment(&e.channel, point) {
                        inputs.push(RouterInput::PtlcFulfilled { point, secret });
                        continue;
                    }
                    if never_offered(&e.channel, point) {
                        unsent.push((
                            *outgoing,
                            Command::AddPtlc {
                                amount_sat: p.forward.amount_out_sat,
                                point,
                                expiry: p.forward.expiry_out,
                            },
                        ));
                    }
                }
                _ => {}
            }
        }
        let inputs = inputs.into_iter().map(RoleIn::Router).collect();
        self.redo(inputs, unsent, out)
    }

    /// Payments the payee recorded whose next step was cut by a stop: the LSP's PTLC is in a
    /// complete state but the role never heard of it; the payee fulfilled but the fulfilment
    /// never reached the channel; or the fulfilment completed but the role never heard.
    /// A payer that stopped between a channel's settlement and the void of its payments
    /// on that channel hears of the settlement again (the payer ignores a repeat).
    fn resume_settled(&mut self, out: &mut Vec<NodeOutput>) -> Result<(), NodeError> {
        if !matches!(self.role, RoleMachine::Payer(_)) {
            return Ok(());
        }
        let settled: Vec<(ChannelId, u64)> = self
            .channels
            .iter()
            .filter_map(|(id, e)| {
                let oc = e.channel.snapshot().on_chain.as_ref()?;
                oc.settlement_txid.map(|_| (*id, oc.state))
            })
            .collect();
        for (channel_id, state) in settled {
            self.role_input(
                RoleIn::Payer(PayerInput::ChannelSettled { channel_id, state }),
                out,
            )?;
        }
        Ok(())
    }

    fn resume_purchases(&mut self, out: &mut Vec<NodeOutput>) -> Result<(), NodeError> {
        let RoleMachine::Payee(payee) = &self.role else {
            return Ok(());
        };
        let me = self.key.public_key();
        let mut inputs = vec![];
        let mut fulfils = vec![];
        for (_, p) in payee.payments() {
            let point = p.invoice.point;
            match &p.status {
                PayeeStatus::Invoiced => {
                    let router = p.invoice.route_hint.map(|h| h.router);
                    let from_payer_side =
                        |peer: &PublicKey| *peer == p.invoice.lsp || Some(*peer) == router;
                    let offered = self.committed_to_us(point, from_payer_side).map(
                        |(channel_id, peer, ptlc)| PayeeInput::PtlcOffered {
                            channel_id,
                            peer,
                            ptlc_id: ptlc.id,
                            point,
                            amount_sat: ptlc.amount_sat,
                        },
                    );
                    inputs.extend(offered);
                }
                PayeeStatus::Fulfilled {
                    channel_id,
                    ptlc_id,
                } => {
                    let Some(e) = self.channels.get(channel_id) else {
                        continue;
                    };
                    let open = e
                        .channel
                        .latest()
                        .is_some_and(|b| b.ptlcs.iter().any(|x| x.id == *ptlc_id));
                    if !open {
                        inputs.push(PayeeInput::PtlcSettled { point });
                    } else if e.channel.phase() == Phase::Funded
                        && e.channel.snapshot().pending.is_none()
                    {
                        if let Ok(secret) = p.letter.check(&me) {
                            fulfils.push((
                                *channel_id,
                                Command::Fulfil {
                                    id: *ptlc_id,
                                    secret,
                                },
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        let inputs = inputs.into_iter().map(RoleIn::Payee).collect();
        self.redo(inputs, fulfils, out)
    }

    /// A payment the payer recorded as proposed whose transfer never reached its channel (the
    /// node stopped in between): the transfer is proposed now. A channel that holds the
    /// proposal resends it through the reestablishment instead.
    fn resume_proposals(
        &mut self,
        peer: PublicKey,
        out: &mut Vec<NodeOutput>,
    ) -> Result<(), NodeError> {
        let RoleMachine::Payer(payer) = &self.role else {
            return Ok(());
        };
        let lost: Vec<(ChannelId, u64)> = payer
            .payments()
            .filter(|(_, p)| p.lsp == peer && p.status == PayerStatus::Proposed)
            .filter(|(_, p)| {
                self.channels.get(&p.channel_id).is_some_and(|e| {
                    e.channel.phase() == Phase::Funded && e.channel.snapshot().pending.is_none()
                })
            })
            .map(|(_, p)| (p.channel_id, p.amount_sat.saturating_add(p.fee_sat)))
            .collect();
        // Signed and withheld, but the node stopped before the payer role heard of it.
        let withheld: Vec<PayerInput> = payer
            .payments()
            .filter(|(_, p)| p.lsp == peer && p.status == PayerStatus::Proposed)
            .filter_map(|(_, p)| {
                let e = self.channels.get(&p.channel_id)?;
                if e.channel.phase() != Phase::Withheld {
                    return None;
                }
                let pending = e.channel.snapshot().pending.as_ref()?;
                Some(PayerInput::SignatureWithheld {
                    channel_id: p.channel_id,
                    state: pending.body.number,
                    signature: pending.proposer_signature?,
                    point: e.channel.pending_price_point()?,
                })
            })
            .collect();
        for input in withheld {
            self.role_input(RoleIn::Payer(input), out)?;
        }
        for (channel_id, amount_sat) in lost {
            let command = Command::Transfer {
                amount_sat,
                withhold: true,
            };
            if let Err(e) = self.channel_input(channel_id, Input::Command(command), out) {
                out.push(NodeOutput::Refused {
                    peer: self.key.public_key(),
                    error: format!("transfer: {e}"),
                });
                self.role_input(
                    RoleIn::Payer(PayerInput::TransferRefused {
                        channel_id,
                        reason: e.to_string(),
                    }),
                    out,
                )?;
            }
        }
        Ok(())
    }

    /// Tells the LSP role the sale window of every channel being closed on chain, from the
    /// channels themselves. The window changes only with the chain, so this runs at start and
    /// on each block and spend, not on the payment messages' path.
    fn feed_windows(&mut self, out: &mut Vec<NodeOutput>) -> Result<(), NodeError> {
        if !matches!(self.role, RoleMachine::Lsp(_)) {
            return Ok(());
        }
        let windows: Vec<(ChannelId, u32)> = self
            .channels
            .iter()
            .filter_map(|(id, e)| Some((*id, e.channel.sale_window()?)))
            .collect();
        for (channel_id, deadline) in windows {
            self.role_input(
                RoleIn::Lsp(LspInput::PayerWindow {
                    channel_id,
                    deadline,
                }),
                out,
            )?;
        }
        Ok(())
    }

    /// Hands a letter of the reverse variant to the machine, with what it needs from the
    /// channels.
    fn on_reverse_letter(
        &mut self,
        letter: ReverseLetter,
        out: &mut Vec<NodeOutput>,
    ) -> Result<(), NodeError> {
        let input = match letter {
            ReverseLetter::PayRequest {
                offer,
                proof,
                payee_contact,
            } => {
                let channel = self.channels.iter().find_map(|(id, e)| {
                    let funded = e.peer == offer.lsp && e.channel.phase() == Phase::Funded;
                    let delay = e.channel.snapshot().params.as_ref()?.shared_delay;
                    funded.then_some((*id, delay))
                });
                ReverseInput::PayRequest {
                    offer,
                    proof,
                    payee_contact,
                    channel,
                    height: self.height,
                }
            }
            ReverseLetter::Handover {
                payment_id,
                lsp_signature,
            } => {
                let point = self.reverse.payments().find_map(|(id, p)| match &p.status {
                    ReverseStatus::Offered { offer } if *id == payment_id => Some(offer.point),
                    _ => None,
                });
                let channel = self
                    .channels
                    .iter()
                    .find(|(_, e)| point.is_some() && e.channel.pending_price_point() == point)
                    .map(|(id, _)| *id);
                ReverseInput::Handover {
                    payment_id,
                    lsp_signature,
                    channel,
                }
            }
        };
        self.reverse_input(input, out)
    }

    /// B's countersigned copy of `lsp`'s pending proposal on `channel`: what the payer needs
    /// to check and hold the update, and its price point.
    fn update_proof(
        &self,
        lsp: &PublicKey,
        channel: &ChannelId,
    ) -> Option<(UpdateProof, AdaptorPoint)> {
        let e = self.channels.get(channel).filter(|e| &e.peer == lsp)?;
        let snap = e.channel.snapshot();
        let pending = snap.pending.as_ref()?;
        if pending.proposer == snap.side {
            return None;
        }
        let proof = UpdateProof {
            params: snap.params.clone()?,
            lsp_side: pending.proposer,
            body: pending.body.clone(),
            lsp_nonce: pending.proposer_nonce,
            payee_signature: pending.countersignature?,
            funding_outpoint: snap.funding_outpoint?,
            older_settlements: snap
                .settlement_leaf_hashes
                .range(..pending.body.number)
                .map(|(state, hash)| (*state, *hash))
                .collect(),
        };
        Some((proof, e.channel.pending_price_point()?))
    }

    /// Our own withheld signature whose price point is `point`, as a scalar, and its channel.
    fn own_withheld(&self, point: AdaptorPoint) -> Option<(ChannelId, AdaptorSecret)> {
        self.channels.iter().find_map(|(id, e)| {
            let snap = e.channel.snapshot();
            let pending = snap.pending.as_ref()?;
            if pending.proposer != snap.side || e.channel.pending_price_point()? != point {
                return None;
            }
            let secret = AdaptorSecret::from_signature(&pending.proposer_signature?).ok()?;
            Some((*id, secret))
        })
    }

    fn reverse_input(
        &mut self,
        input: ReverseInput,
        out: &mut Vec<NodeOutput>,
    ) -> Result<(), NodeError> {
        for action in self.reverse.handle(input)? {
            match action {
                ReverseAction::Post {
                    to,
                    letter,
                    contact,
                } => out.push(NodeOutput::PostReverse {
                    to,
                    bytes: letter.encode(),
                    contact,
                }),
                ReverseAction::Payment(PaymentAction::Persist((payment_id, record))) => {
                    out.push(NodeOutput::PersistReverse {
                        payment_id,
                        record: serde_json::to_value(record).expect("records serialise"),
                    })
                }
                ReverseAction::Payment(PaymentAction::Send { to, message }) => {
                    let mut frame = vec![TAG_PAYMENT];
                    frame.extend(message.encode());
                    out.push(NodeOutput::Send {
                        to,
                        frame,
                        what: message.name(),
                    });
                }
                ReverseAction::Payment(PaymentAction::Channel {
                    channel_id,
                    command,
                }) => {
                    let what = format!("{command:?}");
                    if let Err(e) = self.channel_input(channel_id, Input::Command(command), out) {
                        out.push(NodeOutput::Refused {
                            peer: self.key.public_key(),
                            error: format!("{what}: {e}"),
                        });
                    }
                }
                ReverseAction::Watch(outpoint) => out.push(NodeOutput::Watch(outpoint)),
                ReverseAction::Payment(PaymentAction::Event(e)) => {
                    out.push(NodeOutput::PaymentEvent(e))
                }
                ReverseAction::Payment(_) => {}
            }
        }
        Ok(())
    }

    /// For a letter whose LSP we have no funded channel with: the last hop through the peer
    /// of one of our funded channels, which routes for us.
    fn route_hint(&self, letter: &[u8]) -> Option<RouteHint> {
        let lsp = SaleLetter::decode(letter).ok()?.offer.lsp;
        let routes = self.routes();
        if routes.iter().any(|(peer, _)| *peer == lsp) {
            return None;
        }
        routes
            .first()
            .map(|(router, _)| DEFAULT_ROUTER_POLICY.hint(*router))
    }

    /// A PTLC with `point` that a peer accepted by `from` offered us, in a complete state of
    /// our channel with it: the channel, the peer and the PTLC.
    fn committed_to_us(
        &self,
        point: AdaptorPoint,
        from: impl Fn(&PublicKey) -> bool,
    ) -> Option<(ChannelId, PublicKey, PtlcRecord)> {
        self.channels.iter().find_map(|(id, e)| {
            if !from(&e.peer) {
                return None;
            }
            let side = e.channel.snapshot().side;
            let ptlc = e
                .channel
                .latest()?
                .ptlcs
                .iter()
                .find(|x| x.point == point && x.offerer != side)?;
            Some((*id, e.peer, ptlc.clone()))
        })
    }

    /// Our funded channel with `peer`, if any (without listing every channel: S has many).
    fn funded_channel_with(&self, peer: &PublicKey) -> Option<ChannelId> {
        self.channels
            .iter()
            .find(|(_, e)| &e.peer == peer && e.channel.phase() == Phase::Funded)
            .map(|(id, _)| *id)
    }

    /// Our funded channels, by peer.
    fn routes(&self) -> Vec<(PublicKey, ChannelId)> {
        self.channels
            .iter()
            .filter(|(_, e)| e.channel.phase() == Phase::Funded)
            .map(|(id, e)| (e.peer, *id))
            .collect()
    }

    /// The withheld transfer the peer proposed on its channel with us, if any.
    fn pending_transfer(&self, peer: &PublicKey) -> Option<PendingTransfer> {
        self.channels.iter().find_map(|(id, e)| {
            // Only an open channel sells: once a state is on chain, no new offer.
            if &e.peer != peer || e.channel.phase() != Phase::CounterSigned {
                return None;
            }
            let snap = e.channel.snapshot();
            let pending = snap.pending.as_ref()?;
            let Change::Transfer { amount_sat } = pending.change else {
                return None;
            };
            // S cannot know whether A withholds; it only needs A's proposal countersigned.
            if pending.countersignature.is_none() || pending.proposer == snap.side {
                return None;
            }
            Some(PendingTransfer {
                channel_id: *id,
                state: pending.body.number,
                transfer_sat: amount_sat,
                price_point: e.channel.pending_price_point()?,
                shared_delay: snap.params.as_ref()?.shared_delay,
            })
        })
    }

    fn channel_input(
        &mut self,
        id: ChannelId,
        input: Input,
        out: &mut Vec<NodeOutput>,
    ) -> Result<(), NodeError> {
        let entry = self
            .channels
            .get_mut(&id)
            .ok_or(NodeError::UnknownChannel(id))?;
        let actions = entry.channel.handle(input)?;
        self.route_channel(id, actions, out)
    }

    fn route_channel(
        &mut self,
        id: ChannelId,
        actions: Vec<channel::Action>,
        out: &mut Vec<NodeOutput>,
    ) -> Result<(), NodeError> {
        let peer = self.channels[&id].peer;
        let side = self.channels[&id].channel.snapshot().side;
        for action in actions {
            match action {
                channel::Action::Persist(snapshot) => {
                    out.push(NodeOutput::PersistChannel { peer, snapshot })
                }
                channel::Action::Send(msg) => {
                    let mut frame = vec![TAG_CHANNEL];
                    frame.extend(msg.encode());
                    out.push(NodeOutput::Send {
                        to: peer,
                        frame,
                        what: msg.name(),
                    });
                }
                channel::Action::Broadcast(tx) => out.push(NodeOutput::Broadcast(tx)),
                channel::Action::Watch(o) => out.push(NodeOutput::Watch(o)),
                channel::Action::Event(event) => {
                    self.on_channel_event(id, peer, side, &event, out)?;
                    out.push(NodeOutput::ChannelEvent {
                        channel_id: id,
                        event,
                    });
                }
            }
        }
        Ok(())
    }

    fn on_channel_event(
        &mut self,
        id: ChannelId,
        peer: PublicKey,
        side: Party,
        event: &Event,
        out: &mut Vec<NodeOutput>,
    ) -> Result<(), NodeError> {
        match event {
            Event::Accepted {
                funding_script_pubkey,
                capacity_sat,
            } => out.push(NodeOutput::NeedFunding {
                channel_id: id,
                script_pubkey: funding_script_pubkey.clone(),
                capacity_sat: *capacity_sat,
            }),
            Event::ReadyToFund => out.push(NodeOutput::ReadyToFund { channel_id: id }),
            Event::SignatureWithheld {
                state, price_point, ..
            } if matches!(self.role, RoleMachine::Lsp(_)) => {
                let height = self.height;
                self.reverse_input(
                    ReverseInput::Withheld {
                        channel_id: id,
                        state: *state,
                        point: *price_point,
                        height,
                    },
                    out,
                )?
            }
            Event::SignatureWithheld {
                state,
                signature,
                price_point,
            } => self.role_input(
                RoleIn::Payer(PayerInput::SignatureWithheld {
                    channel_id: id,
                    state: *state,
                    signature: *signature,
                    point: *price_point,
                }),
                out,
            )?,
            Event::StateCompleted { change, state, .. } => {
                // A PTLC the peer offered us, now committed; a scalar the peer revealed.
                let offered = match change {
                    Change::AddPtlc { id: ptlc_id, .. } => self.channels[&id]
                        .channel
                        .latest()
                        .and_then(|b| b.ptlcs.iter().find(|p| p.id == *ptlc_id).cloned())
                        .filter(|p| p.offerer != side),
                    _ => None,
                };
                let revealed = match change {
                    Change::FulfilPtlc { secret, .. } => AdaptorSecret::from_bytes(secret.0).ok(),
                    _ => None,
                };
                let input = match (&self.role, offered, revealed) {
                    (RoleMachine::Payee(_), Some(p), _) => {
                        Some(RoleIn::Payee(PayeeInput::PtlcOffered {
                            channel_id: id,
                            peer,
                            ptlc_id: p.id,
                            point: p.point,
                            amount_sat: p.amount_sat,
                        }))
                    }
                    (RoleMachine::Router(_), Some(p), _) => {
                        Some(RoleIn::Router(RouterInput::PtlcReceived {
                            incoming: Incoming {
                                channel_id: id,
                                peer,
                                ptlc_id: p.id,
                                point: p.point,
                                amount_sat: p.amount_sat,
                                expiry: p.expiry.height(),
                            },
                            routes: self.routes(),
                        }))
                    }
                    (RoleMachine::Lsp(_), Some(p), _) => {
                        // Only the reverse variant pays S a PTLC: S may be selling its own
                        // withheld signature.
                        let own = self.own_withheld(p.point);
                        self.reverse_input(
                            ReverseInput::PtlcOffered {
                                channel_id: id,
                                from: peer,
                                ptlc_id: p.id,
                                point: p.point,
                                amount_sat: p.amount_sat,
                                own,
                            },
                            out,
                        )?;
                        None
                    }
                    (RoleMachine::Payee(_), _, Some(secret)) => {
                        let point = secret.adaptor_point();
                        Some(RoleIn::Payee(PayeeInput::PtlcSettled { point }))
                    }
                    (_, _, Some(secret)) => {
                        self.scalar_revealed(secret, out)?;
                        None
                    }
                    (RoleMachine::Payee(_), None, None)
                        if matches!(change, Change::Transfer { .. }) =>
                    {
                        self.reverse_input(
                            ReverseInput::Completed {
                                lsp: peer,
                                state: *state,
                            },
                            out,
                        )?;
                        None
                    }
                    _ => None,
                };
                if let Some(input) = input {
                    self.role_input(input, out)?;
                }
            }
            Event::Settled { state } => {
                if matches!(self.role, RoleMachine::Payer(_)) {
                    self.role_input(
                        RoleIn::Payer(PayerInput::ChannelSettled {
                            channel_id: id,
                            state: *state,
                        }),
                        out,
                    )?
                }
                // The other roles' records do not depend on which state settled: their
                // PTLCs are resolved output by output (`PtlcSecretLearned`).
            }
            Event::PtlcSecretLearned { secret, .. } => {
                // A PTLC we offered was claimed on chain: the secret that pays for what we
                // bought. The channel reports only PTLCs we offered.
                if let Ok(secret) = AdaptorSecret::from_bytes(secret.0) {
                    self.scalar_revealed(secret, out)?;
                }
            }
            Event::PtlcFailed { point, offerer, .. } => {
                // A PTLC we offered came back: the role may offer again or give up.
                if *offerer == side {
                    match &self.role {
                        RoleMachine::Lsp(_) => self
                            .role_input(RoleIn::Lsp(LspInput::PtlcFailed { point: *point }), out)?,
                        RoleMachine::Router(_) => self.role_input(
                            RoleIn::Router(RouterInput::PtlcFailed { point: *point }),
                            out,
                        )?,
                        // A payer's PTLC (reverse variant) stays bought or expires with the
                        // offer; a payee offers none.
                        RoleMachine::Payer(_) | RoleMachine::Payee(_) => {}
                    }
                }
            }
            // The channel refuses a new nonce for a state a role priced (`Command::Price`), so
            // a replaced nonce never voids an offer.
            Event::NonceReplaced { .. } => {}
            // The channel proposes a dropped change again once the peer's completes; a
            // payer's lost transfer is also proposed again on reconnection
            // (`resume_proposals`).
            Event::ProposalDropped { .. } => {}
            // A dropped change that no longer applies: the role that asked for it hears that
            // it was refused, as if the peer had refused it.
            Event::ProposalAbandoned { change, code } => match change {
                Change::AddPtlc { point, .. } => match &self.role {
                    RoleMachine::Lsp(_) => {
                        self.role_input(RoleIn::Lsp(LspInput::PtlcFailed { point: *point }), out)?
                    }
                    RoleMachine::Router(_) => self.role_input(
                        RoleIn::Router(RouterInput::PtlcFailed { point: *point }),
                        out,
                    )?,
                    // As for a failed PTLC: a payer's purchase PTLC expires with its offer.
                    RoleMachine::Payer(_) | RoleMachine::Payee(_) => {}
                },
                Change::Transfer { .. } => {
                    if let RoleMachine::Payer(_) = &self.role {
                        self.role_input(
                            RoleIn::Payer(PayerInput::TransferRefused {
                                channel_id: id,
                                reason: format!("channel error {code} when proposed again"),
                            }),
                            out,
                        )?
                    }
                }
                // The PTLC a fulfil or a failure concerned is already resolved, and a revert
                // or an open is never dropped: nothing waits on them.
                Change::FulfilPtlc { .. }
                | Change::FailPtlc { .. }
                | Change::Revert { .. }
                | Change::Open { .. } => {}
            },
            // For the user only: no role keeps a record of these.
            Event::FundingConfirmed
            | Event::ClosingForPtlc { .. }
            | Event::StaleUpdateAnswered { .. }
            | Event::CloseSigned { .. }
            | Event::ClosedCooperatively { .. } => {}
        }
        Ok(())
    }

    /// A scalar revealed by the payee of a PTLC: off chain by its fulfilment, or on chain by
    /// its claim. It pays for what the role bought with that PTLC: the LSP completes the
    /// payer's state, a router fulfils the PTLC it was paid by, a payer of the reverse
    /// variant holds the LSP's signature. A payee offers no PTLCs: nothing to do.
    fn scalar_revealed(
        &mut self,
        secret: AdaptorSecret,
        out: &mut Vec<NodeOutput>,
    ) -> Result<(), NodeError> {
        let point = secret.adaptor_point();
        match &self.role {
            RoleMachine::Lsp(_) => {
                self.role_input(RoleIn::Lsp(LspInput::PtlcFulfilled { point, secret }), out)
            }
            RoleMachine::Router(_) => self.role_input(
                RoleIn::Router(RouterInput::PtlcFulfilled { point, secret }),
                out,
            ),
            RoleMachine::Payer(_) => {
                self.reverse_input(ReverseInput::PtlcFulfilled { point, secret }, out)
            }
            RoleMachine::Payee(_) => Ok(()),
        }
    }

    fn role_input(&mut self, input: RoleIn, out: &mut Vec<NodeOutput>) -> Result<(), NodeError> {
        let actions: Vec<PaymentAction<(PaymentId, serde_json::Value)>> =
            match (&mut self.role, input) {
                (RoleMachine::Payer(p), RoleIn::Payer(i)) => json_records(p.handle(i)?),
                (RoleMachine::Payer(p), RoleIn::Connected(peer)) => {
                    json_records(p.handle(PayerInput::PeerConnected { peer })?)
                }
                (RoleMachine::Lsp(l), RoleIn::Lsp(i)) => json_records(l.handle(i)?),
                (RoleMachine::Lsp(l), RoleIn::Connected(peer)) => {
                    json_records(l.handle(LspInput::PeerConnected { peer })?)
                }
                (RoleMachine::Lsp(l), RoleIn::Block(height)) => {
                    json_records(l.handle(LspInput::Block { height })?)
                }
                (RoleMachine::Payee(p), RoleIn::Payee(i)) => json_records(p.handle(i)?),
                (RoleMachine::Payee(p), RoleIn::Connected(peer)) => {
                    json_records(p.handle(PayeeInput::PeerConnected { peer })?)
                }
                (RoleMachine::Router(r), RoleIn::Router(i)) => json_records(r.handle(i)?),
                (RoleMachine::Router(_), RoleIn::Connected(_)) => vec![],
                (_, RoleIn::Block(_)) => vec![],
                (_, input) => {
                    return Err(NodeError::WrongRole {
                        what: input.name(),
                        role: input.role(),
                    })
                }
            };
        for action in actions {
            match action {
                PaymentAction::Persist((payment_id, record)) => {
                    out.push(NodeOutput::PersistPayment { payment_id, record })
                }
                PaymentAction::Send { to, message } => {
                    let mut frame = vec![TAG_PAYMENT];
                    frame.extend(message.encode());
                    out.push(NodeOutput::Send {
                        to,
                        frame,
                        what: message.name(),
                    });
                }
                PaymentAction::Channel {
                    channel_id,
                    command,
                } => {
                    let what = format!("{command:?}");
                    let failed_point = match &command {
                        Command::AddPtlc { point, .. } => Some(*point),
                        _ => None,
                    };
                    let transfer = matches!(command, Command::Transfer { .. });
                    if let Err(e) = self.channel_input(channel_id, Input::Command(command), out) {
                        out.push(NodeOutput::Refused {
                            peer: self.key.public_key(),
                            error: format!("{what}: {e}"),
                        });
                        // The role hears of the refusal, so its record does not wait forever
                        // for a channel step that will never come.
                        match (&self.role, failed_point) {
                            (RoleMachine::Lsp(_), Some(point)) => {
                                self.role_input(RoleIn::Lsp(LspInput::PtlcFailed { point }), out)?
                            }
                            (RoleMachine::Router(_), Some(point)) => self.role_input(
                                RoleIn::Router(RouterInput::PtlcFailed { point }),
                                out,
                            )?,
                            (RoleMachine::Payer(_), None) if transfer => self.role_input(
                                RoleIn::Payer(PayerInput::TransferRefused {
                                    channel_id,
                                    reason: e.to_string(),
                                }),
                                out,
                            )?,
                            _ => {}
                        }
                    }
                }
                PaymentAction::Revert {
                    channel_id,
                    abandoned_state,
                } => self.revert(channel_id, abandoned_state, out)?,
                PaymentAction::PostLetter {
                    payment_id,
                    payee,
                    letter,
                } => out.push(NodeOutput::PostLetter {
                    payment_id,
                    payee,
                    letter,
                }),
                PaymentAction::Event(e) => out.push(NodeOutput::PaymentEvent(e)),
            }
        }
        Ok(())
    }

    /// Abandons the withheld state `abandoned_state` for good: the channel proposes the next
    /// state with the balances before it. If the payer is offline, the proposal is persisted
    /// and completes when it reconnects.
    fn revert(
        &mut self,
        channel_id: ChannelId,
        abandoned_state: u64,
        out: &mut Vec<NodeOutput>,
    ) -> Result<(), NodeError> {
        let entry = self
            .channels
            .get(&channel_id)
            .ok_or(NodeError::UnknownChannel(channel_id))?;
        let pending = entry.channel.snapshot().pending.as_ref();
        let withheld = pending.is_some_and(|p| {
            p.body.number == abandoned_state && !matches!(p.change, Change::Revert { .. })
        });
        if !withheld {
            // Already reverted, or never countersigned: nothing is left to abandon.
            return Ok(());
        }
        self.channel_input(channel_id, Input::Command(Command::Revert), out)
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
        .pending
        .as_ref()
        .is_some_and(|x| matches!(&x.change, Change::AddPtlc { point: q, .. } if *q == point));
    !in_latest && !in_pending && channel.phase() == Phase::Funded
}

// One input at a time, never stored: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum RoleIn {
    Payer(PayerInput),
    Lsp(LspInput),
    Payee(PayeeInput),
    Router(RouterInput),
    Connected(PublicKey),
    Block(u32),
}

impl RoleIn {
    fn name(&self) -> &'static str {
        match self {
            RoleIn::Payer(_) => "payer input",
            RoleIn::Lsp(_) => "lsp input",
            RoleIn::Payee(_) => "payee input",
            RoleIn::Router(_) => "router input",
            RoleIn::Connected(_) => "connected",
            RoleIn::Block(_) => "block",
        }
    }

    fn role(&self) -> Role {
        match self {
            RoleIn::Payer(_) => Role::Payer,
            RoleIn::Lsp(_) => Role::Lsp,
            RoleIn::Router(_) => Role::Router,
            _ => Role::Payee,
        }
    }
}

fn json_records<R: Serialize>(
    actions: Vec<PaymentAction<(PaymentId, R)>>,
) -> Vec<PaymentAction<(PaymentId, serde_json::Value)>> {
    actions
        .into_iter()
        .map(|a| match a {
            PaymentAction::Persist((id, r)) => PaymentAction::Persist((
                id,
                serde_json::to_value(r).expect("payment records serialise"),
            )),
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
