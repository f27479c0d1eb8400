//! The reverse variant: the payee B is the one offline. B and its LSP S agree on a state of
//! S–B paying B, S keeps its signature on it back, and a payer A buys that signature from S
//! with a PTLC on A–S. A then holds the complete update (S's signature, bought; B's, from
//! B's letter) and hands S's signature to B's mailbox; B, back online, completes the state
//! from it even if S never sends the completion itself.
//!
//! Steps and who takes them (one [`Reverse`] machine per node, beside its main role):
//!
//! 1. B → S `receive_request` (amount, payer). S proposes the transfer on S–B withholding its
//!    signature; B countersigns (the channel layer).
//! 2. S, told its signature is withheld, signs a [`PurchaseOffer`] for its price point
//!    (payee B, amount, fee) and sends it to B (`receive_offer`).
//! 3. B checks the offer against its channel (the point is the price point of S's pending
//!    proposal) and posts a [`ReverseLetter::PayRequest`] to A's mailbox: the offer and the
//!    [`UpdateProof`] (the state, S–B's parameters, S's committed nonce, B's signature). B
//!    may go offline.
//! 4. A checks S's signature on the offer and the proof (B's signature on the update, and
//!    that the offer's point is the price point of S's signature on it), and adds a PTLC of
//!    amount + fee locked to the point on A–S.
//! 5. S, once the PTLC is committed, fulfils it with its signature's scalar and releases the
//!    state on S–B (sends B its completing signature).
//! 6. A learns the scalar, so S's signature, verifies it, and posts a
//!    [`ReverseLetter::Handover`] to B's mailbox.
//! 7. B, back, completes state n+1 from S's completion or, failing that, from the hand-over.
//!
//! On the in-process network (`asyncpay::testing`), B asks S for a state paying it and
//! leaves; A buys S's signature and hands it to B's mailbox; B, back, is paid:
//!
//! ```
//! use asyncpay::protocol::payment::PaymentId;
//! use asyncpay::testing::{Network, A, B, S};
//!
//! let mut net = Network::new();
//! net.open(A, S, 1_000_000).unwrap();
//! net.open(S, B, 400_000).unwrap();
//! let id = PaymentId([7; 32]);
//! net.receive(id, 20_000).unwrap();
//! net.pump().unwrap();
//! assert_eq!(net.nodes[B].reverse_status(&id), Some("offered"));
//! net.stop(B);
//! net.fetch_letters(A).unwrap(); // A reads B's request and buys S's signature
//! assert_eq!(net.nodes[A].reverse_status(&id), Some("bought"));
//! net.start(B).unwrap();
//! net.pump().unwrap();
//! assert_eq!(net.nodes[B].reverse_status(&id), Some("paid"));
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::crypto::adaptor::{price_point, AdaptorPoint, AdaptorSecret};
use crate::crypto::keys::{PublicKey, SecretKey, Signature};
use crate::crypto::nonce::PublicNonce;
use crate::protocol::channel::{ChannelParams, Command, StateBody};
use crate::protocol::messages::ChannelId;
use crate::protocol::transactions::{signed_update, ChannelTxs, Spent};
use crate::tx::{Party, STATE_LOCKTIME_BASE};
use bitcoin::{OutPoint, Transaction};

use super::{
    Action, OfferTerms, PaymentError, PaymentEvent, PaymentId, PaymentMessage, PurchaseOffer,
};

/// The expiry of a payer's PTLC buying an LSP's signature: at least twice the payer
/// channel's shared delay ahead, as the channel requires, and some blocks more.
pub fn reverse_ptlc_expiry(height: u32, shared_delay: u16) -> u32 {
    height
        .saturating_add(2 * u32::from(shared_delay))
        .saturating_add(6)
}

/// What A needs to check that S's signature completes an update paying B, and to hold that
/// update: the state, the channel's parameters, S's committed nonce and B's signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProof {
    /// S–B's parameters.
    pub params: ChannelParams,
    /// Which side of S–B S is.
    pub lsp_side: Party,
    /// State n+1.
    pub body: StateBody,
    /// S's committed nonce for its signature on U_{n+1}.
    pub lsp_nonce: PublicNonce,
    /// B's signature on U_{n+1}.
    pub payee_signature: Signature,
    /// S–B's funding output: where to watch for an older state.
    pub funding_outpoint: OutPoint,
    /// The settlement leaf hash of every older state: spending an older update's output
    /// takes its control block, which names that hash.
    #[serde(default, with = "crate::protocol::channel::leaf_hash_log")]
    pub older_settlements: BTreeMap<u64, [u8; 32]>,
}

impl UpdateProof {
    fn key(&self, party: Party) -> PublicKey {
        match party {
            Party::A => self.params.key_a,
            Party::S => self.params.key_s,
        }
    }

    fn other(&self) -> Party {
        match self.lsp_side {
            Party::A => Party::S,
            Party::S => Party::A,
        }
    }

    /// U_{n+1}'s signature message, if B's signature verifies on it and `point` is the
    /// price point of S's signature on it.
    pub fn check(&self, point: &AdaptorPoint) -> Result<[u8; 32], PaymentError> {
        let m = ChannelTxs::new(&self.params)
            .update_sighash(&self.body)
            .map_err(|_| PaymentError::Mismatch {
                field: "update proof does not build",
            })?;
        self.key(self.other())
            .verify(&m, &self.payee_signature)
            .map_err(|_| PaymentError::Mismatch {
                field: "payee signature on the update",
            })?;
        let priced = price_point(&self.lsp_nonce, &self.key(self.lsp_side), &m).map_err(|_| {
            PaymentError::Mismatch {
                field: "price point",
            }
        })?;
        if &priced != point {
            return Err(PaymentError::Mismatch {
                field: "offer point is not the price of S's signature on the update",
            });
        }
        Ok(m)
    }

    /// U_{n+1}, fully signed and bound to the output of `published` if that is an older
    /// update of this channel: what a holder of the complete update publishes over it.
    pub fn answer(
        &self,
        lsp_signature: &Signature,
        published: &Transaction,
    ) -> Option<Transaction> {
        let locktime = published.lock_time.to_consensus_u32();
        let m = u64::from(locktime.checked_sub(STATE_LOCKTIME_BASE)?);
        if m >= self.body.number {
            return None;
        }
        // Only a state of this channel: it spends the funding output or an update output.
        let spends_channel = published
            .input
            .iter()
            .any(|i| i.previous_output == self.funding_outpoint || i.witness.len() == 4);
        if !spends_channel {
            return None;
        }
        let leaf = *self.older_settlements.get(&m)?;
        let (sig_a, sig_s) = match self.lsp_side {
            Party::A => (lsp_signature, &self.payee_signature),
            Party::S => (&self.payee_signature, lsp_signature),
        };
        let spent = Spent::Update {
            outpoint: OutPoint {
                txid: published.compute_txid(),
                vout: 0,
            },
            state: u32::try_from(m).ok()?,
            settlement_leaf_hash: leaf,
        };
        signed_update(
            &ChannelTxs::new(&self.params),
            &self.body,
            sig_a,
            sig_s,
            &spent,
        )
        .ok()
    }

    /// S's full signature from the bought scalar, if it verifies on U_{n+1}.
    pub fn lsp_signature(&self, secret: &AdaptorSecret) -> Option<Signature> {
        let m = ChannelTxs::new(&self.params)
            .update_sighash(&self.body)
            .ok()?;
        let signature = secret.to_signature(&self.lsp_nonce);
        self.key(self.lsp_side).verify(&m, &signature).ok()?;
        Some(signature)
    }
}

/// A letter of the reverse variant, in a mailbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReverseLetter {
    /// B → A: buy S's signature on the state paying B.
    PayRequest {
        /// S's offer.
        offer: Box<PurchaseOffer>,
        /// The update it completes.
        proof: Box<UpdateProof>,
        /// Where to hand S's signature over: B's mailbox contact card, opaque here.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payee_contact: Option<serde_json::Value>,
    },
    /// A → B: S's signature, bought.
    Handover {
        /// The payment.
        payment_id: PaymentId,
        /// S's signature on U_{n+1}.
        lsp_signature: Signature,
    },
}

impl ReverseLetter {
    /// Its kind byte, then JSON.
    pub fn encode(&self) -> Vec<u8> {
        super::LetterKind::Reverse
            .frame(serde_json::to_vec(self).expect("a letter always serialises"))
    }

    /// Strict parse; the kind byte must say reverse.
    pub fn decode(bytes: &[u8]) -> Result<Self, PaymentError> {
        let body = super::LetterKind::Reverse.strip(bytes)?;
        serde_json::from_slice(body).map_err(|e| PaymentError::Decode(e.to_string()))
    }
}

/// Where a reverse payment stands, at each of its parties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReverseStatus {
    /// B: asked S for the state.
    Requested,
    /// B: the request letter is in A's mailbox. S: the offer is out.
    Offered {
        /// S's offer.
        offer: PurchaseOffer,
    },
    /// A: paying S's PTLC.
    Buying {
        /// S's offer.
        offer: PurchaseOffer,
        /// The update.
        proof: Box<UpdateProof>,
    },
    /// A: holds the complete update, watches for B and handed S's signature to B. S: sold.
    Bought {
        /// S's offer.
        offer: PurchaseOffer,
        /// S's signature (at A; none at S).
        lsp_signature: Option<Signature>,
        /// The update (at A; none at S).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proof: Option<Box<UpdateProof>>,
    },
    /// B: state n+1 of S–B is complete.
    Paid,
}

impl ReverseStatus {
    /// A short name (the `status` tag of its serde form).
    pub fn name(&self) -> &'static str {
        match self {
            ReverseStatus::Requested => "requested",
            ReverseStatus::Offered { .. } => "offered",
            ReverseStatus::Buying { .. } => "buying",
            ReverseStatus::Bought { .. } => "bought",
            ReverseStatus::Paid => "paid",
        }
    }
}

/// One reverse payment at one party: the durable record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReversePayment {
    /// B (payee).
    pub payee: PublicKey,
    /// S (its LSP).
    pub lsp: PublicKey,
    /// A (payer).
    pub payer: PublicKey,
    /// What B receives.
    pub amount_sat: u64,
    /// B's mailbox contact card (opaque here), for the hand-over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payee_contact: Option<serde_json::Value>,
    /// Where it stands.
    pub status: ReverseStatus,
}

/// An input to [`Reverse::handle`]. The node core supplies what it reads from its channels.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum ReverseInput {
    /// B's user: ask `lsp` for a state paying `amount_sat`, to be bought by `payer`.
    Receive {
        /// A fresh id.
        payment_id: PaymentId,
        /// S.
        lsp: PublicKey,
        /// A.
        payer: PublicKey,
        /// The amount.
        amount_sat: u64,
        /// Our mailbox contact card, for A's hand-over (opaque here).
        contact: Option<serde_json::Value>,
    },
    /// S: B's request, with S's funded channel to B.
    Request {
        /// B.
        from: PublicKey,
        /// The payment.
        payment_id: PaymentId,
        /// The amount.
        amount_sat: u64,
        /// A.
        payer: PublicKey,
        /// S–B.
        channel: Option<ChannelId>,
        /// S's own transfer of `amount_sat` already withheld on S–B (S restarted after
        /// proposing it): its state and price point.
        withheld: Option<(u64, AdaptorPoint)>,
        /// Current height.
        height: u32,
    },
    /// The peer connected: B repeats a request S has not answered.
    Connected {
        /// The peer.
        peer: PublicKey,
    },
    /// S: its signature on S–B's pending transfer is withheld.
    Withheld {
        /// S–B.
        channel_id: ChannelId,
        /// The state.
        state: u64,
        /// The price point of S's signature.
        point: AdaptorPoint,
        /// Current height.
        height: u32,
    },
    /// B: S's offer, with B's pending state on the offer's channel (proof and price point).
    Offer {
        /// S.
        from: PublicKey,
        /// The offer.
        offer: PurchaseOffer,
        /// B's countersigned pending state: the proof A needs, and its price point.
        pending: Option<(UpdateProof, AdaptorPoint)>,
    },
    /// B, after a restart: its offered payment's letter to A may not have left before the
    /// stop; it is posted again from the record and B's pending state. Only the node's own
    /// recovery gives this input: an offer the peer sends again is ignored.
    ResumeOffer {
        /// The payment.
        payment_id: PaymentId,
        /// B's countersigned pending state on the offer's channel.
        pending: Option<(UpdateProof, AdaptorPoint)>,
    },
    /// A: a request letter, with A's funded channel to the offer's LSP, its shared delay and
    /// the height.
    PayRequest {
        /// S's offer.
        offer: Box<PurchaseOffer>,
        /// The update.
        proof: Box<UpdateProof>,
        /// B's contact card.
        payee_contact: Option<serde_json::Value>,
        /// A–S and its shared delay.
        channel: Option<(ChannelId, u16)>,
        /// Current height.
        height: u32,
    },
    /// S: a PTLC offered to it became committed; the scalar of its own withheld signature
    /// with that point, if it has one.
    PtlcOffered {
        /// The channel.
        channel_id: ChannelId,
        /// The peer that offered it.
        from: PublicKey,
        /// Its id.
        ptlc_id: u64,
        /// Its point.
        point: AdaptorPoint,
        /// Its amount.
        amount_sat: u64,
        /// S's withheld signature's scalar for `point`, and the channel holding it.
        own: Option<(ChannelId, AdaptorSecret)>,
    },
    /// A: its PTLC was fulfilled.
    PtlcFulfilled {
        /// The point.
        point: AdaptorPoint,
        /// The scalar.
        secret: AdaptorSecret,
    },
    /// B: S's signature handed over; with the S–B channel whose pending proposal it
    /// completes.
    Handover {
        /// The payment.
        payment_id: PaymentId,
        /// S's signature.
        lsp_signature: Signature,
        /// The channel.
        channel: Option<ChannelId>,
    },
    /// B: state `state` of channel `channel_id` with `lsp`, proposed by `lsp`, completed.
    Completed {
        /// S.
        lsp: PublicKey,
        /// The channel.
        channel_id: ChannelId,
        /// The state.
        state: u64,
    },
}

/// What the driver must do; a [`ReverseAction::Post`] is a letter for a node's mailbox.
// One at a time, never stored: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum ReverseAction {
    /// A payment action.
    Payment(Action<(PaymentId, ReversePayment)>),
    /// Post `letter` to `to`'s mailbox.
    Post {
        /// The recipient.
        to: PublicKey,
        /// The letter.
        letter: ReverseLetter,
        /// The recipient's contact card, when the letter brought it.
        contact: Option<serde_json::Value>,
    },
    /// Report spends of this outpoint (the payer watching the payee's channel).
    Watch(OutPoint),
}

/// The reverse machine of one node.
pub struct Reverse {
    key: SecretKey,
    fee: Box<dyn Fn(u64) -> u64 + Send>,
    offer_lifetime: u32,
    payments: BTreeMap<PaymentId, ReversePayment>,
    /// S: requests whose transfer is proposed on the channel, by channel.
    proposed: BTreeMap<ChannelId, (PaymentId, ReversePayment)>,
}

impl core::fmt::Debug for Reverse {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Reverse")
            .field("node", &self.key.public_key())
            .field("payments", &self.payments.len())
            .finish_non_exhaustive()
    }
}

fn pay(a: Action<(PaymentId, ReversePayment)>) -> ReverseAction {
    ReverseAction::Payment(a)
}

impl Reverse {
    /// The machine of the node with `key`, charging `fee(amount)` when it is an LSP, with its
    /// stored records.
    pub fn restore(
        key: SecretKey,
        fee: impl Fn(u64) -> u64 + Send + 'static,
        offer_lifetime: u32,
        records: Vec<(PaymentId, ReversePayment)>,
    ) -> Self {
        Reverse {
            key,
            fee: Box::new(fee),
            offer_lifetime,
            payments: records.into_iter().collect(),
            proposed: BTreeMap::new(),
        }
    }

    /// Every payment.
    pub fn payments(&self) -> impl Iterator<Item = (&PaymentId, &ReversePayment)> {
        self.payments.iter()
    }

    /// What this node holds as a payer for offline payees: each complete update and S's
    /// signature on it.
    pub fn held(&self) -> impl Iterator<Item = (&UpdateProof, &Signature)> {
        self.payments.values().filter_map(|p| match &p.status {
            ReverseStatus::Bought {
                lsp_signature: Some(signature),
                proof: Some(proof),
                ..
            } => Some((proof.as_ref(), signature)),
            _ => None,
        })
    }

    fn persist(&self, id: PaymentId) -> ReverseAction {
        pay(Action::Persist((id, self.payments[&id].clone())))
    }

    /// Handles one input. On error nothing changed.
    pub fn handle(&mut self, input: ReverseInput) -> Result<Vec<ReverseAction>, PaymentError> {
        let me = self.key.public_key();
        match input {
            ReverseInput::Receive {
                payment_id,
                lsp,
                payer,
                amount_sat,
                contact,
            } => {
                if self.payments.contains_key(&payment_id) {
                    return Err(PaymentError::DuplicatePayment(payment_id));
                }
                if amount_sat == 0 {
                    return Err(PaymentError::Amount("zero amount"));
                }
                self.payments.insert(
                    payment_id,
                    ReversePayment {
                        payee: me,
                        lsp,
                        payer,
                        amount_sat,
                        payee_contact: contact,
                        status: ReverseStatus::Requested,
                    },
                );
                Ok(vec![
                    self.persist(payment_id),
                    pay(Action::Send {
                        to: lsp,
                        message: PaymentMessage::ReceiveRequest {
                            payment_id,
                            amount_sat,
                            payer,
                        },
                    }),
                ])
            }
            ReverseInput::Request {
                from,
                payment_id,
                amount_sat,
                payer,
                channel,
                withheld,
                height,
            } => {
                if let Some(have) = self.payments.get(&payment_id) {
                    // B repeats a request S already answered: the same offer again.
                    return match &have.status {
                        ReverseStatus::Offered { offer } if have.payee == from => {
                            Ok(vec![pay(Action::Send {
                                to: from,
                                message: PaymentMessage::ReceiveOffer(offer.clone()),
                            })])
                        }
                        _ => Err(PaymentError::DuplicatePayment(payment_id)),
                    };
                }
                let channel = channel.ok_or(PaymentError::Mismatch {
                    field: "no channel to the payee",
                })?;
                if amount_sat == 0 {
                    return Err(PaymentError::Amount("zero amount"));
                }
                let record = ReversePayment {
                    payee: from,
                    lsp: me,
                    payer,
                    amount_sat,
                    payee_contact: None,
                    status: ReverseStatus::Requested,
                };
                self.proposed.insert(channel, (payment_id, record));
                if let Some((state, point)) = withheld {
                    // Proposed before a restart lost the request: offer it now.
                    return self.handle(ReverseInput::Withheld {
                        channel_id: channel,
                        state,
                        point,
                        height,
                    });
                }
                Ok(vec![pay(Action::Channel {
                    channel_id: channel,
                    command: Command::Transfer {
                        amount_sat,
                        withhold: true,
                    },
                })])
            }
            ReverseInput::Connected { peer } => Ok(self
                .payments
                .iter()
                .filter(|(_, p)| {
                    p.payee == me && p.lsp == peer && p.status == ReverseStatus::Requested
                })
                .map(|(id, p)| {
                    pay(Action::Send {
                        to: peer,
                        message: PaymentMessage::ReceiveRequest {
                            payment_id: *id,
                            amount_sat: p.amount_sat,
                            payer: p.payer,
                        },
                    })
                })
                .collect()),
            ReverseInput::Withheld {
                channel_id,
                state,
                point,
                height,
            } => {
                let Some((id, mut record)) = self.proposed.remove(&channel_id) else {
                    return Ok(vec![]);
                };
                let terms = OfferTerms {
                    payment_id: id,
                    lsp: me,
                    channel_id,
                    state,
                    amount_sat: record.amount_sat,
                    fee_sat: (self.fee)(record.amount_sat),
                    point,
                    payee: record.payee,
                    expiry: height.saturating_add(self.offer_lifetime),
                    held: None,
                    irrevocable: false,
                };
                let aux = crate::crypto::tagged_hash("asyncpay/payment/v1/reverse-aux", &[&id.0]);
                let offer = terms.sign(&self.key, &aux);
                record.status = ReverseStatus::Offered {
                    offer: offer.clone(),
                };
                let payee = record.payee;
                self.payments.insert(id, record);
                Ok(vec![
                    self.persist(id),
                    pay(Action::Send {
                        to: payee,
                        message: PaymentMessage::ReceiveOffer(offer),
                    }),
                ])
            }
            ReverseInput::Offer {
                from,
                offer,
                pending,
            } => {
                offer.verify()?;
                let id = offer.payment_id;
                let record = self
                    .payments
                    .get(&id)
                    .ok_or(PaymentError::UnknownPayment(id))?;
                if record.status != ReverseStatus::Requested {
                    return Ok(vec![]);
                }
                if from != record.lsp || offer.lsp != from {
                    return Err(PaymentError::WrongPeer {
                        what: "receive offer",
                        from: Box::new(from),
                        role: "lsp",
                    });
                }
                if offer.payee != me || offer.amount_sat != record.amount_sat {
                    return Err(PaymentError::Mismatch {
                        field: "offer terms",
                    });
                }
                let (proof, point) = pending.ok_or(PaymentError::NoPendingState {
                    state: offer.state,
                    transfer_sat: offer.amount_sat,
                })?;
                if point != offer.point || proof.body.number != offer.state {
                    return Err(PaymentError::Mismatch {
                        field: "offer point is not the price of S's pending proposal",
                    });
                }
                let post = pay_request(record, &offer, proof);
                let record = self.payments.get_mut(&id).expect("found");
                record.status = ReverseStatus::Offered { offer };
                // Recorded (the driver writes it before it posts anything), then posted: a
                // stop in between is resumed by posting it again.
                Ok(vec![self.persist(id), post])
            }
            ReverseInput::ResumeOffer {
                payment_id,
                pending,
            } => {
                let Some(record) = self.payments.get(&payment_id) else {
                    return Ok(vec![]);
                };
                let ReverseStatus::Offered { offer } = &record.status else {
                    return Ok(vec![]);
                };
                match pending {
                    // A ignores an offer it already has.
                    Some((proof, point))
                        if point == offer.point && proof.body.number == offer.state =>
                    {
                        Ok(vec![pay_request(record, offer, proof)])
                    }
                    // The state is no longer pending (completed or reverted): nothing to post.
                    _ => Ok(vec![]),
                }
            }
            ReverseInput::PayRequest {
                offer,
                proof,
                payee_contact,
                channel,
                height,
            } => {
                offer.verify()?;
                let id = offer.payment_id;
                if let Some(have) = self.payments.get(&id) {
                    return if matches!(&have.status, ReverseStatus::Buying { offer: o, .. } | ReverseStatus::Bought { offer: o, .. } if *o == *offer)
                    {
                        Ok(vec![])
                    } else {
                        Err(PaymentError::DuplicatePayment(id))
                    };
                }
                if height > offer.expiry {
                    return Err(PaymentError::Expired {
                        expiry: offer.expiry,
                        height,
                    });
                }
                proof.check(&offer.point)?;
                let (channel_id, delay) = channel.ok_or(PaymentError::Mismatch {
                    field: "no channel with the offer's lsp",
                })?;
                let amount = offer
                    .amount_sat
                    .checked_add(offer.fee_sat)
                    .ok_or(PaymentError::Amount("amount plus fee overflows"))?;
                let expiry = reverse_ptlc_expiry(height, delay);
                self.payments.insert(
                    id,
                    ReversePayment {
                        payee: offer.payee,
                        lsp: offer.lsp,
                        payer: me,
                        amount_sat: offer.amount_sat,
                        payee_contact,
                        status: ReverseStatus::Buying {
                            offer: offer.as_ref().clone(),
                            proof,
                        },
                    },
                );
                Ok(vec![
                    self.persist(id),
                    pay(Action::Channel {
                        channel_id,
                        command: Command::AddPtlc {
                            amount_sat: amount,
                            point: offer.point,
                            expiry,
                        },
                    }),
                ])
            }
            ReverseInput::PtlcOffered {
                channel_id,
                from,
                ptlc_id,
                point,
                amount_sat,
                own,
            } => {
                let Some((id, record)) = self
                    .payments
                    .iter()
                    .find(|(_, p)| matches!(&p.status, ReverseStatus::Offered { offer } if offer.point == point && p.lsp == me))
                    .map(|(id, p)| (*id, p.clone()))
                else {
                    return Ok(vec![]);
                };
                let ReverseStatus::Offered { offer } = record.status else {
                    unreachable!("matched above")
                };
                let (payee_channel, secret) = own.ok_or(PaymentError::NoPendingState {
                    state: offer.state,
                    transfer_sat: offer.amount_sat,
                })?;
                if amount_sat < offer.amount_sat.saturating_add(offer.fee_sat) {
                    return Err(PaymentError::Amount("ptlc pays less than amount and fee"));
                }
                let _ = from;
                let stored = self.payments.get_mut(&id).expect("found");
                stored.status = ReverseStatus::Bought {
                    offer,
                    lsp_signature: None,
                    proof: None,
                };
                // Paid the moment the scalar is out (S can claim the PTLC with it on chain):
                // the channel keeps the scalar for that claim first (the fulfilment may wait
                // behind another update), fulfils, then B gets its state.
                let kept = AdaptorSecret::from_bytes(secret.to_secret_bytes())
                    .expect("a secret's bytes parse");
                Ok(vec![
                    pay(Action::Channel {
                        channel_id,
                        command: Command::ProvideSecret {
                            id: ptlc_id,
                            secret: kept,
                        },
                    }),
                    pay(Action::Channel {
                        channel_id,
                        command: Command::Fulfil {
                            id: ptlc_id,
                            secret,
                        },
                    }),
                    pay(Action::Channel {
                        channel_id: payee_channel,
                        command: Command::Release,
                    }),
                    self.persist(id),
                    pay(Action::Event(PaymentEvent::Completed { payment_id: id })),
                ])
            }
            ReverseInput::PtlcFulfilled { point, secret } => {
                let Some(id) = self
                    .payments
                    .iter()
                    .find(|(_, p)| matches!(&p.status, ReverseStatus::Buying { offer, .. } if offer.point == point))
                    .map(|(id, _)| *id)
                else {
                    return Ok(vec![]);
                };
                let record = self.payments.get_mut(&id).expect("found");
                let ReverseStatus::Buying { offer, proof } = &record.status else {
                    unreachable!("matched above")
                };
                let lsp_signature = proof
                    .lsp_signature(&secret)
                    .ok_or(PaymentError::WrongScalar)?;
                let (payee, contact) = (record.payee, record.payee_contact.clone());
                let watch = proof.funding_outpoint;
                record.status = ReverseStatus::Bought {
                    offer: offer.clone(),
                    lsp_signature: Some(lsp_signature),
                    proof: Some(proof.clone()),
                };
                Ok(vec![
                    self.persist(id),
                    ReverseAction::Post {
                        to: payee,
                        letter: ReverseLetter::Handover {
                            payment_id: id,
                            lsp_signature,
                        },
                        contact,
                    },
                    // A watches S–B for B until B is back.
                    ReverseAction::Watch(watch),
                    pay(Action::Event(PaymentEvent::Completed { payment_id: id })),
                ])
            }
            ReverseInput::Handover {
                payment_id,
                lsp_signature,
                channel,
            } => {
                let record = self
                    .payments
                    .get(&payment_id)
                    .ok_or(PaymentError::UnknownPayment(payment_id))?;
                if !matches!(record.status, ReverseStatus::Offered { .. }) {
                    return Ok(vec![]);
                }
                let Some(channel_id) = channel else {
                    // S's completion came first: nothing left to complete.
                    return Ok(vec![]);
                };
                let secret = AdaptorSecret::from_signature(&lsp_signature)
                    .map_err(|_| PaymentError::WrongScalar)?;
                Ok(vec![pay(Action::Channel {
                    channel_id,
                    command: Command::CompleteWithSecret { secret },
                })])
            }
            ReverseInput::Completed {
                lsp,
                channel_id,
                state,
            } => {
                let Some(id) = self
                    .payments
                    .iter()
                    .find(|(_, p)| p.lsp == lsp && p.payee == me && matches!(&p.status, ReverseStatus::Offered { offer } if offer.state == state && offer.channel_id == channel_id))
                    .map(|(id, _)| *id)
                else {
                    return Ok(vec![]);
                };
                self.payments.get_mut(&id).expect("found").status = ReverseStatus::Paid;
                Ok(vec![
                    self.persist(id),
                    pay(Action::Event(PaymentEvent::Completed { payment_id: id })),
                ])
            }
        }
    }
}

/// B's letter asking the payer to buy S's signature on `offer`'s state.
fn pay_request(
    record: &ReversePayment,
    offer: &PurchaseOffer,
    proof: UpdateProof,
) -> ReverseAction {
    ReverseAction::Post {
        to: record.payer,
        letter: ReverseLetter::PayRequest {
            offer: Box::new(offer.clone()),
            proof: Box::new(proof),
            payee_contact: record.payee_contact.clone(),
        },
        contact: None,
    }
}
