//! S, the LSP: makes offers on withheld states, buys the signature from the payee, and orders
//! every sale against the payer's cancellation.
//!
//! On the in-process network (`asyncpay::testing`), S offers on A's withheld state, then buys
//! the signature from B with a PTLC and completes A's state with the scalar:
//!
//! ```
//! use asyncpay::testing::{policy, Network, A, B, S};
//!
//! let mut net = Network::new();
//! net.open(A, S, 1_000_000).unwrap();
//! net.open(S, B, 400_000).unwrap();
//! net.stop(B);
//! let id = net.pay(20_000).unwrap();
//! assert_eq!(net.nodes[S].status(&id), Some("offered"));
//! net.stop(A);
//! net.start(B).unwrap();
//! net.fetch_letters(B).unwrap();
//! assert_eq!(net.nodes[S].status(&id), Some("sold"));
//! let a_s = net.nodes[S].state_with(net.key(A)).unwrap();
//! assert_eq!((a_s.number, a_s.to_s), (1, 20_000 + policy().fee_for(20_000)));
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::crypto::adaptor::{AdaptorPoint, AdaptorSecret};
use crate::crypto::keys::{PublicKey, SecretKey};
use crate::protocol::channel::{Command, SALE_WINDOW_MARGIN};
use crate::protocol::messages::{ChannelId, RevealedSecret};

use super::{
    Action, CancelOutcome, Entropy, Forward, HeldPtlc, Invoice, OfferTerms, PayRequest,
    PaymentError, PaymentEvent, PaymentId, PaymentMessage, PurchaseOffer, Receipt,
};

/// The latest expiry of a PTLC S may offer when it must know the scalar by `deadline`.
///
/// Unless the payee resolves the PTLC off chain, S's channel goes on chain shared_delay +
/// M + 1 blocks before the expiry (`Channel::ptlc_due`, M = [`SALE_WINDOW_MARGIN`] blocks
/// for the update and the settlement to be mined), so the PTLC output is on chain by the
/// expiry. The payee's claim has no timelock; S's timeout (nLockTime = expiry) is published
/// at the expiry, valid from the next block, and given M blocks to be mined. A later claim
/// no longer finds the output, so the scalar is on chain, or the PTLC taken back, by the
/// expiry + M. (Had S waited for the expiry to go on chain, a stalling payee could claim up
/// to shared_delay + 2 blocks after it, racing the timeout.)
fn last_safe_expiry(deadline: u32) -> u32 {
    deadline.saturating_sub(SALE_WINDOW_MARGIN)
}

/// The withheld state on the channel with the requesting payer, as the channel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingTransfer {
    /// The channel.
    pub channel_id: ChannelId,
    /// The withheld state.
    pub state: u64,
    /// What it moves from the payer to S.
    pub transfer_sat: u64,
    /// The price point of the payer's withheld signature.
    pub price_point: AdaptorPoint,
    /// The channel's shared delay: how long an older state published by the payer stays
    /// open to being replaced, and so how long a sale may take.
    pub shared_delay: u16,
}

/// A PTLC the requesting payer offered S in the latest complete state of their channel, as
/// the channel reports it: what a held sale's request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldTransfer {
    /// The channel.
    pub channel_id: ChannelId,
    /// The latest complete state.
    pub state: u64,
    /// The PTLC.
    pub ptlc: HeldPtlc,
    /// Its amount.
    pub amount_sat: u64,
    /// Its point.
    pub point: AdaptorPoint,
    /// The channel's shared delay: S must publish the latest state and settle it before it
    /// can claim the PTLC on chain, which takes that many blocks and a margin.
    pub shared_delay: u16,
}

impl HeldTransfer {
    /// The height from which S must claim the PTLC on chain (its claim must confirm before
    /// the payer's timeout is valid): a PTLC S offers the payee must expire by then.
    pub fn claim_deadline(&self) -> u32 {
        self.ptlc
            .expiry
            .saturating_sub(u32::from(self.shared_delay) + SALE_WINDOW_MARGIN + 1)
    }
}

/// S's terms for offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LspPolicy {
    /// Fixed part of the fee.
    pub fee_base_sat: u64,
    /// Proportional part, parts per million of the amount.
    pub fee_ppm: u64,
    /// Blocks an offer stays open.
    pub offer_lifetime: u32,
    /// Blocks from an accepted invoice to the expiry of the PTLC paying it; at least twice
    /// the S–B channel's shared_delay (the channel refuses less).
    pub ptlc_delta: u32,
}

impl LspPolicy {
    /// The fee S asks for paying `amount_sat`.
    pub fn fee_for(&self, amount_sat: u64) -> u64 {
        self.fee_base_sat + amount_sat.saturating_mul(self.fee_ppm) / 1_000_000
    }
}

/// Where an offer stands at S.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LspStatus {
    /// Offered; waiting for the payee's invoice or the payer's cancellation.
    Offered,
    /// The payee's invoice was accepted and a PTLC to it is under way; the sale can no longer
    /// be cancelled.
    Selling {
        /// The invoice.
        invoice: Invoice,
        /// The S–B channel carrying the PTLC.
        payee_channel: ChannelId,
        /// The PTLC's expiry.
        ptlc_expiry: u32,
        /// When B is reached through a router: what the router was asked to forward.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        forward: Option<Box<Forward>>,
    },
    /// The PTLC was fulfilled: S learnt the scalar and completed the payer's state.
    Sold {
        /// The invoice, the payer's receipt.
        invoice: Invoice,
        /// The scalar bought, for the receipt (the payer takes its proof of payment from it).
        scalar: RevealedSecret,
        /// The payer acknowledged the receipt.
        receipt_acked: bool,
    },
    /// The offer is void and the payer's withheld state reverted.
    Cancelled {
        /// Why.
        outcome: CancelOutcome,
    },
}

impl LspStatus {
    /// A short name (the `status` tag of its serde form).
    pub fn name(&self) -> &'static str {
        match self {
            LspStatus::Offered => "offered",
            LspStatus::Selling { .. } => "selling",
            LspStatus::Sold { .. } => "sold",
            LspStatus::Cancelled { .. } => "cancelled",
        }
    }
}

/// One payment at S: the durable record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LspPayment {
    /// The signed offer.
    pub offer: PurchaseOffer,
    /// The payer's node key.
    pub payer: PublicKey,
    /// For a held sale: the height from which S must claim the payer's PTLC on chain; every
    /// PTLC S offers for the sale expires by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_deadline: Option<u32>,
    /// Where it stands.
    pub status: LspStatus,
}

/// An input to [`Lsp::handle`].
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum LspInput {
    /// A payment message from a peer.
    Message {
        /// The authenticated sender.
        from: PublicKey,
        /// The message.
        message: PaymentMessage,
        /// For a request: the withheld state of the channel with the sender, if any.
        pending: Option<PendingTransfer>,
        /// For a held sale's request, or an invoice of a held sale: the payer's PTLC, if it
        /// is in the latest complete state of their channel and not being removed.
        held: Option<HeldTransfer>,
        /// For an invoice: the funded channel S pays it over: with the sender, or else with
        /// the router its route hint names.
        sender_channel: Option<ChannelId>,
    },
    /// A PTLC S offered was fulfilled: the payee revealed `secret`.
    ///
    /// The caller hands over only a `secret` with t·G = `point`: the channel checks it when
    /// it applies the payee's fulfilment (and reports the point with the completed state),
    /// and the point of a secret learnt otherwise (a claim on chain, a stored fulfilment
    /// after a restart) is computed from it. The role does not check it again.
    PtlcFulfilled {
        /// The PTLC's point.
        point: AdaptorPoint,
        /// Its discrete log: `secret`·G = `point`.
        secret: AdaptorSecret,
    },
    /// A PTLC S offered was failed or could not be added.
    PtlcFailed {
        /// The PTLC's point.
        point: AdaptorPoint,
    },
    /// A PTLC a payer offered S was failed back to it (a held sale S voided, or one it
    /// refused): an offer still open on it can never be collected and is void.
    HeldPtlcFailed {
        /// The PTLC's point.
        point: AdaptorPoint,
    },
    /// A peer connected: S resends what it owes it.
    PeerConnected {
        /// The peer.
        peer: PublicKey,
    },
    /// A new tip.
    Block {
        /// Its height.
        height: u32,
    },
    /// The payer's channel was force-closed on an older state: S must publish the completed
    /// state by `deadline` (the last height before the old state's settlement can confirm).
    PayerWindow {
        /// The channel.
        channel_id: ChannelId,
        /// The last height at which S can still publish.
        deadline: u32,
    },
    /// Fresh randomness for signatures.
    Entropy(Entropy),
}

/// What S's driver must do.
pub type LspAction = Action<(PaymentId, LspPayment)>;

/// S's payment role. Holds every payment it knows; a driver restores it with
/// [`Lsp::restore`] from the persisted records.
pub struct Lsp {
    key: SecretKey,
    policy: LspPolicy,
    height: u32,
    entropy: [u8; 32],
    payments: BTreeMap<PaymentId, LspPayment>,
    /// Payment ids by price point (one point, one payment).
    by_point: BTreeMap<AdaptorPoint, PaymentId>,
    /// Channels force-closed on an older state, with their publication deadline.
    windows: BTreeMap<ChannelId, u32>,
}

impl core::fmt::Debug for Lsp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Lsp")
            .field("node", &self.key.public_key())
            .field("height", &self.height)
            .field("payments", &self.payments.len())
            .finish_non_exhaustive()
    }
}

impl Lsp {
    /// An LSP with its node key, policy and persisted records.
    pub fn restore(
        key: SecretKey,
        policy: LspPolicy,
        height: u32,
        records: impl IntoIterator<Item = (PaymentId, LspPayment)>,
    ) -> Self {
        let payments: BTreeMap<_, _> = records.into_iter().collect();
        let by_point = payments
            .iter()
            .map(|(id, p)| (p.offer.point, *id))
            .collect();
        Lsp {
            key,
            policy,
            height,
            entropy: [0; 32],
            payments,
            by_point,
            windows: BTreeMap::new(),
        }
    }

    /// One payment.
    pub fn payment(&self, id: &PaymentId) -> Option<&LspPayment> {
        self.payments.get(id)
    }

    /// Every payment.
    pub fn payments(&self) -> impl Iterator<Item = (&PaymentId, &LspPayment)> {
        self.payments.iter()
    }

    /// The policy.
    pub fn policy(&self) -> &LspPolicy {
        &self.policy
    }

    /// Handles one input. On error nothing changed.
    pub fn handle(&mut self, input: LspInput) -> Result<Vec<LspAction>, PaymentError> {
        match input {
            LspInput::Message {
                from,
                message,
                pending,
                held,
                sender_channel,
            } => match message {
                PaymentMessage::Request(req) => Ok(self.on_request(from, req, pending, held)),
                PaymentMessage::Invoice(invoice) => {
                    Ok(self.on_invoice(from, invoice, sender_channel, held))
                }
                PaymentMessage::Cancel { payment_id } => self.on_cancel(from, payment_id),
                PaymentMessage::ReceiptAck { payment_id } => self.on_receipt_ack(from, payment_id),
                other => Err(PaymentError::Unexpected {
                    what: other.name(),
                    status: "any (lsp)",
                }),
            },
            LspInput::PtlcFulfilled { point, secret } => self.on_fulfilled(point, secret),
            LspInput::PtlcFailed { point } => self.on_failed(point),
            LspInput::HeldPtlcFailed { point } => Ok(self.on_held_failed(point)),
            LspInput::PeerConnected { peer } => Ok(self.on_connected(peer)),
            LspInput::Block { height } => Ok(self.on_block(height)),
            LspInput::PayerWindow {
                channel_id,
                deadline,
            } => {
                self.windows.insert(channel_id, deadline);
                Ok(vec![])
            }
            LspInput::Entropy(e) => {
                self.entropy = e.0;
                Ok(vec![])
            }
        }
    }

    fn aux(&mut self, what: &[u8]) -> [u8; 32] {
        let aux = crate::crypto::tagged_hash("asyncpay/payment/v1/aux", &[&self.entropy, what]);
        self.entropy = aux;
        aux
    }

    fn on_request(
        &mut self,
        from: PublicKey,
        req: PayRequest,
        pending: Option<PendingTransfer>,
        held: Option<HeldTransfer>,
    ) -> Vec<LspAction> {
        // The payer repeats a request it stored before sending (it stopped in between, or
        // the offer was lost): the same request gets the same offer, nothing new is signed.
        if let Some(record) = self.payments.get(&req.payment_id) {
            let t = &record.offer.terms;
            let same = record.payer == from
                && t.channel_id == req.channel_id
                && t.state == req.state
                && t.amount_sat == req.amount_sat
                && t.fee_sat == req.fee_sat
                && t.payee == req.payee
                && t.held == req.held
                && t.irrevocable == req.irrevocable;
            if same && record.status == LspStatus::Offered {
                return vec![Action::Send {
                    to: from,
                    message: PaymentMessage::Offer(record.offer.clone()),
                }];
            }
        }
        let checked = match req.held {
            // A withheld state is voided by the payer's force close of its older state: no
            // offer on one can promise the payee anything until its expiry.
            None if req.irrevocable => Err(PaymentError::Mismatch {
                field: "irrevocable offers are held sales",
            }),
            None => self.check_request(&from, &req, pending).map(|point| {
                (
                    point,
                    self.height.saturating_add(self.policy.offer_lifetime),
                    None,
                )
            }),
            Some(_) => self.check_held_request(&from, &req, held),
        };
        match checked {
            Ok((point, expiry, claim_deadline)) => {
                let terms = OfferTerms {
                    payment_id: req.payment_id,
                    lsp: self.key.public_key(),
                    channel_id: req.channel_id,
                    state: req.state,
                    amount_sat: req.amount_sat,
                    fee_sat: req.fee_sat,
                    point,
                    payee: req.payee,
                    expiry,
                    held: req.held,
                    irrevocable: req.irrevocable,
                };
                let aux = self.aux(&req.payment_id.0);
                let offer = terms.sign(&self.key, &aux);
                let record = LspPayment {
                    offer: offer.clone(),
                    payer: from,
                    claim_deadline,
                    status: LspStatus::Offered,
                };
                self.payments.insert(req.payment_id, record.clone());
                self.by_point.insert(point, req.payment_id);
                let mut actions = vec![];
                if req.held.is_none() {
                    // The channel holds the priced state before the offer leaves: the payer
                    // can no longer revert it or change its nonce behind the offer. (A held
                    // sale's PTLC is in a complete state: only S can fail it.)
                    actions.push(Action::Channel {
                        channel_id: req.channel_id,
                        command: Command::Price { state: req.state },
                    });
                }
                actions.extend([
                    Action::Persist((req.payment_id, record)),
                    Action::Send {
                        to: from,
                        message: PaymentMessage::Offer(offer),
                    },
                    Action::Event(PaymentEvent::Offered {
                        payment_id: req.payment_id,
                        point,
                    }),
                ]);
                actions
            }
            Err(error) => {
                let mut actions = vec![Action::Send {
                    to: from,
                    message: PaymentMessage::RequestRefused {
                        payment_id: req.payment_id,
                        reason: error.code().to_owned(),
                    },
                }];
                // A withheld state that no offer will ever cover is reverted at once, so the
                // payer's balance is not left committed to it. A replayed request for a
                // payment already offered leaves that offer's state alone.
                if let (Some(p), false) = (pending, self.payments.contains_key(&req.payment_id)) {
                    if !self.by_point.contains_key(&p.price_point) {
                        actions.push(Action::Revert {
                            channel_id: p.channel_id,
                            abandoned_state: p.state,
                        });
                    }
                }
                // Likewise a held PTLC no offer covers goes back to the payer.
                if let (Some(h), false) = (held, self.payments.contains_key(&req.payment_id)) {
                    if !self.by_point.contains_key(&h.point) {
                        actions.push(Action::Channel {
                            channel_id: h.channel_id,
                            command: Command::Fail { id: h.ptlc.id },
                        });
                    }
                }
                actions
            }
        }
    }

    /// What every request must satisfy: a new id, an amount, a payee that is neither party,
    /// the LSP's fee. Returns amount plus fee.
    fn check_common(&self, from: &PublicKey, req: &PayRequest) -> Result<u64, PaymentError> {
        if self.payments.contains_key(&req.payment_id) {
            return Err(PaymentError::DuplicatePayment(req.payment_id));
        }
        if req.amount_sat == 0 {
            return Err(PaymentError::Amount("zero amount"));
        }
        if &req.payee == from || req.payee == self.key.public_key() {
            return Err(PaymentError::Mismatch { field: "payee" });
        }
        let transfer_sat = req
            .amount_sat
            .checked_add(req.fee_sat)
            .ok_or(PaymentError::Amount("amount plus fee overflows"))?;
        if req.fee_sat < self.policy.fee_for(req.amount_sat) {
            return Err(PaymentError::Amount("fee below the LSP's policy"));
        }
        Ok(transfer_sat)
    }

    fn check_request(
        &self,
        from: &PublicKey,
        req: &PayRequest,
        pending: Option<PendingTransfer>,
    ) -> Result<AdaptorPoint, PaymentError> {
        let transfer_sat = self.check_common(from, req)?;
        let missing = PaymentError::NoPendingState {
            state: req.state,
            transfer_sat,
        };
        let pending = pending.ok_or(missing.clone())?;
        if pending.channel_id != req.channel_id
            || pending.state != req.state
            || pending.transfer_sat != transfer_sat
        {
            return Err(missing);
        }
        if self.by_point.contains_key(&pending.price_point) {
            return Err(PaymentError::Mismatch {
                field: "price point already offered",
            });
        }
        // By construction no PTLC of a sale outlives S's window. S pays B at h with a PTLC
        // expiring at X = h + Δ (Δ = ptlc_delta) and learns the scalar by X + M at the latest
        // (`last_safe_expiry`). If the payer publishes its older state U_n at once, it confirms
        // at h + 1 at the earliest, so its settlement is valid from h + 1 + D_A and S's
        // window (`Channel::sale_window`: the last height to publish the completed state and
        // still have M blocks for it to be mined) ends at h + D_A − M. X + M ≤ h + D_A − M
        // holds for every h when D_A ≥ Δ + 2·M.
        let needed = self
            .policy
            .ptlc_delta
            .saturating_add(2 * SALE_WINDOW_MARGIN);
        if u32::from(pending.shared_delay) < needed {
            return Err(PaymentError::DelayTooShort {
                shared_delay: pending.shared_delay,
                needed,
            });
        }
        Ok(pending.price_point)
    }

    /// A held sale's request: the PTLC it names is the payer's, in S's latest complete state,
    /// carries amount plus fee to the point of no other offer, and leaves time to sell. The
    /// offer's point, its expiry (no later than the last height at which a PTLC to the payee
    /// still resolves before S must claim on chain) and that claim deadline.
    fn check_held_request(
        &self,
        from: &PublicKey,
        req: &PayRequest,
        held: Option<HeldTransfer>,
    ) -> Result<(AdaptorPoint, u32, Option<u32>), PaymentError> {
        let transfer_sat = self.check_common(from, req)?;
        let missing = PaymentError::NoPendingState {
            state: req.state,
            transfer_sat,
        };
        let held = held.ok_or(missing.clone())?;
        if held.channel_id != req.channel_id
            || Some(held.ptlc) != req.held
            || held.amount_sat != transfer_sat
            || held.state < req.state
        {
            return Err(missing);
        }
        if self.by_point.contains_key(&held.point) {
            return Err(PaymentError::Mismatch {
                field: "price point already offered",
            });
        }
        // S may have to pay the payee at the offer's last height; the PTLC it offers then
        // must be resolved, on chain in the worst case (`last_safe_expiry`), by the height from
        // which S must claim the payer's PTLC on chain.
        let deadline = held.claim_deadline();
        let last_expiry = last_safe_expiry(deadline);
        let last_invoice = last_expiry.saturating_sub(self.policy.ptlc_delta);
        if last_invoice < self.height || last_expiry < self.policy.ptlc_delta {
            return Err(PaymentError::WindowClosed {
                ptlc_expiry: self.height.saturating_add(self.policy.ptlc_delta),
                last_safe: last_expiry,
            });
        }
        let expiry = last_invoice.min(self.height.saturating_add(self.policy.offer_lifetime));
        Ok((held.point, expiry, Some(deadline)))
    }

    fn on_invoice(
        &mut self,
        from: PublicKey,
        invoice: Invoice,
        sender_channel: Option<ChannelId>,
        held: Option<HeldTransfer>,
    ) -> Vec<LspAction> {
        let id = invoice.payment_id;
        match self.check_invoice(&from, &invoice, sender_channel, held) {
            Ok(Some((payee_channel, ptlc_expiry, forward))) => {
                let record = self.payments.get_mut(&id).expect("checked");
                record.status = LspStatus::Selling {
                    invoice: invoice.clone(),
                    payee_channel,
                    ptlc_expiry,
                    forward: forward.clone().map(Box::new),
                };
                let record = record.clone();
                let mut actions = vec![Action::Persist((id, record.clone()))];
                // The router hears what to forward before the PTLC reaches it.
                let amount_sat = match (&forward, invoice.route_hint) {
                    (Some(f), Some(hint)) => {
                        actions.push(Action::Send {
                            to: hint.router,
                            message: PaymentMessage::Forward(f.clone()),
                        });
                        f.amount_in_sat
                    }
                    _ => record.offer.amount_sat,
                };
                actions.push(Action::Channel {
                    channel_id: payee_channel,
                    command: Command::AddPtlc {
                        amount_sat,
                        point: record.offer.point,
                        expiry: ptlc_expiry,
                    },
                });
                actions
            }
            // A replay of the invoice already being paid: nothing to do.
            Ok(None) => vec![],
            Err(error) => {
                let mut actions = vec![Action::Send {
                    to: from,
                    message: PaymentMessage::InvoiceRefused {
                        payment_id: id,
                        reason: error.code().to_owned(),
                    },
                }];
                if let PaymentError::Expired { .. } = error {
                    actions.extend(self.expire(id));
                }
                actions
            }
        }
    }

    /// The channel to pay over, the PTLC's expiry and, through a router, what it is asked to
    /// forward; `Ok(None)` for a replay of the invoice under way.
    #[allow(clippy::type_complexity)]
    fn check_invoice(
        &self,
        from: &PublicKey,
        invoice: &Invoice,
        sender_channel: Option<ChannelId>,
        held: Option<HeldTransfer>,
    ) -> Result<Option<(ChannelId, u32, Option<Forward>)>, PaymentError> {
        let record = self
            .payments
            .get(&invoice.payment_id)
            .ok_or(PaymentError::UnknownPayment(invoice.payment_id))?;
        if from != &record.offer.payee {
            return Err(PaymentError::WrongPeer {
                what: "invoice",
                from: Box::new(*from),
                role: "payee",
            });
        }
        invoice.check_against(&record.offer)?;
        match &record.status {
            LspStatus::Offered => {}
            LspStatus::Selling { invoice: under, .. } if under == invoice => return Ok(None),
            // Voided at its expiry or by A: B hears which, not just that the offer is gone.
            LspStatus::Cancelled {
                outcome: CancelOutcome::Expired,
            } => {
                return Err(PaymentError::Expired {
                    expiry: record.offer.expiry,
                    height: self.height,
                })
            }
            LspStatus::Cancelled {
                outcome: CancelOutcome::Cancelled,
            } => return Err(PaymentError::Cancelled),
            other => {
                return Err(PaymentError::Unexpected {
                    what: "invoice",
                    status: other.name(),
                })
            }
        }
        if self.height > record.offer.expiry {
            return Err(PaymentError::Expired {
                expiry: record.offer.expiry,
                height: self.height,
            });
        }
        // A held sale is paid for only while the payer's PTLC is still there as offered.
        if let Some(want) = record.offer.held {
            let there = held.is_some_and(|h| {
                h.ptlc == want
                    && h.point == record.offer.point
                    && h.channel_id == record.offer.channel_id
                    && h.amount_sat == record.offer.amount_sat.saturating_add(record.offer.fee_sat)
            });
            if !there {
                return Err(PaymentError::NoPendingState {
                    state: record.offer.state,
                    transfer_sat: record.offer.amount_sat.saturating_add(record.offer.fee_sat),
                });
            }
        }
        let payee_channel = sender_channel.ok_or(PaymentError::Mismatch {
            field: "no channel to the payee",
        })?;
        let ptlc_expiry = self.height.saturating_add(self.policy.ptlc_delta);
        // Buying is only safe if S learns the scalar while it can still publish the completed
        // state: the PTLC must resolve before the payer's old state can settle.
        // A held sale: the PTLC must resolve before S has to claim the payer's on chain.
        let held_deadline = record.claim_deadline;
        let window = match record.offer.held {
            None => self.windows.get(&record.offer.channel_id).copied(),
            Some(_) => held_deadline,
        };
        // S learns the scalar by the PTLC's expiry + M at the latest (`last_safe_expiry`), which
        // must not be after the window.
        if let Some(deadline) = window {
            let last_safe = last_safe_expiry(deadline);
            if ptlc_expiry > last_safe {
                return Err(PaymentError::WindowClosed {
                    ptlc_expiry,
                    last_safe,
                });
            }
        }
        // Through a router: S pays the router's fee out of its own, and the router's PTLC to
        // B must leave it its expiry delta and still be in the future.
        let forward = match invoice.route_hint {
            None => None,
            Some(hint) => {
                if hint.fee_sat > record.offer.fee_sat {
                    return Err(PaymentError::Amount("router fee above the LSP's fee"));
                }
                let expiry_out = ptlc_expiry.saturating_sub(hint.expiry_delta);
                if expiry_out <= self.height.saturating_add(SALE_WINDOW_MARGIN) {
                    return Err(PaymentError::Mismatch {
                        field: "router expiry delta leaves no time for the last hop",
                    });
                }
                Some(Forward {
                    payment_id: invoice.payment_id,
                    point: record.offer.point,
                    amount_in_sat: record.offer.amount_sat.saturating_add(hint.fee_sat),
                    amount_out_sat: record.offer.amount_sat,
                    expiry_out,
                    next: invoice.payee,
                })
            }
        };
        Ok(Some((payee_channel, ptlc_expiry, forward)))
    }

    /// `secret`·G = `point` holds (see [`LspInput::PtlcFulfilled`]): the completion of the
    /// payer's state it commands relies on it.
    fn on_fulfilled(
        &mut self,
        point: AdaptorPoint,
        secret: AdaptorSecret,
    ) -> Result<Vec<LspAction>, PaymentError> {
        // A PTLC fulfilled on one of S's channels that is not a sale of S's (S was paid, in
        // the reverse variant): nothing for this role.
        let Some(&id) = self.by_point.get(&point) else {
            return Ok(vec![]);
        };
        let record = self.payments.get_mut(&id).expect("indexed");
        if matches!(record.status, LspStatus::Sold { .. }) {
            // Heard twice (off chain, then from a claim on chain, or after a restart).
            return Ok(vec![]);
        }
        let LspStatus::Selling { invoice, .. } = &record.status else {
            return Err(PaymentError::Unexpected {
                what: "ptlc fulfilled",
                status: record.status.name(),
            });
        };
        let invoice = invoice.clone();
        record.status = LspStatus::Sold {
            invoice: invoice.clone(),
            scalar: RevealedSecret(secret.to_secret_bytes()),
            receipt_acked: false,
        };
        let scalar = RevealedSecret(secret.to_secret_bytes());
        let record = record.clone();
        // The payer's state is completed (and stored) before the sale is recorded: a restart
        // in between finds the sale still `selling` and the fulfilment on the payee channel,
        // and completes it again (see `NodeInput::Started`). A held sale: the channel keeps
        // the scalar to claim the payer's PTLC on chain if need be, then fulfils it off
        // chain (when the payer is next online).
        let mut actions = match record.offer.held {
            None => vec![Action::Channel {
                channel_id: record.offer.channel_id,
                command: Command::CompleteWithSecret { secret },
            }],
            Some(held) => {
                let again = AdaptorSecret::from_bytes(secret.to_secret_bytes())
                    .expect("a secret's bytes parse");
                vec![
                    Action::Channel {
                        channel_id: record.offer.channel_id,
                        command: Command::ProvideSecret {
                            id: held.id,
                            secret: again,
                        },
                    },
                    Action::Channel {
                        channel_id: record.offer.channel_id,
                        command: Command::Fulfil {
                            id: held.id,
                            secret,
                        },
                    },
                ]
            }
        };
        actions.extend([
            Action::Persist((id, record.clone())),
            Action::Send {
                to: record.payer,
                message: PaymentMessage::Receipt(Receipt {
                    payment_id: id,
                    invoice,
                    scalar,
                }),
            },
            Action::Event(PaymentEvent::Completed { payment_id: id }),
        ]);
        Ok(actions)
    }

    fn on_failed(&mut self, point: AdaptorPoint) -> Result<Vec<LspAction>, PaymentError> {
        // A PTLC fulfilled on one of S's channels that is not a sale of S's (S was paid, in
        // the reverse variant): nothing for this role.
        let Some(&id) = self.by_point.get(&point) else {
            return Ok(vec![]);
        };
        let record = self.payments.get_mut(&id).expect("indexed");
        let LspStatus::Selling { invoice, .. } = &record.status else {
            // A PTLC that never went out, or a repeat: nothing is under way to undo.
            return Ok(vec![]);
        };
        let payee = invoice.payee;
        // The payee may invoice again while the offer lasts.
        record.status = LspStatus::Offered;
        let record = record.clone();
        Ok(vec![
            Action::Persist((id, record)),
            Action::Send {
                to: payee,
                message: PaymentMessage::InvoiceRefused {
                    payment_id: id,
                    reason: "ptlc_failed".to_owned(),
                },
            },
        ])
    }

    /// A payer's PTLC came back to it: an offer on it that is still open is void (nothing
    /// was bought; the payer's node voids its payment from the same failure).
    fn on_held_failed(&mut self, point: AdaptorPoint) -> Vec<LspAction> {
        let Some(&id) = self.by_point.get(&point) else {
            return vec![];
        };
        let record = self.payments.get_mut(&id).expect("indexed");
        if record.offer.held.is_none() || record.status != LspStatus::Offered {
            return vec![];
        }
        record.status = LspStatus::Cancelled {
            outcome: CancelOutcome::Cancelled,
        };
        vec![
            Action::Persist((id, record.clone())),
            Action::Event(PaymentEvent::Cancelled {
                payment_id: id,
                outcome: CancelOutcome::Cancelled,
            }),
        ]
    }

    /// The payment `id`, if `from` is its payer.
    fn payer_record(
        &self,
        id: PaymentId,
        from: PublicKey,
        what: &'static str,
    ) -> Result<&LspPayment, PaymentError> {
        let record = self
            .payments
            .get(&id)
            .ok_or(PaymentError::UnknownPayment(id))?;
        if from != record.payer {
            return Err(PaymentError::WrongPeer {
                what,
                from: Box::new(from),
                role: "payer",
            });
        }
        Ok(record)
    }

    fn on_cancel(
        &mut self,
        from: PublicKey,
        id: PaymentId,
    ) -> Result<Vec<LspAction>, PaymentError> {
        let record = self.payer_record(id, from, "cancel")?;
        let reply = |outcome| Action::Send {
            to: from,
            message: PaymentMessage::Cancelled {
                payment_id: id,
                outcome,
            },
        };
        Ok(match &record.status {
            // The payee may hold the letter already and count on the sale: the offer stands
            // until its expiry, when `on_block` voids it.
            LspStatus::Offered
                if record.offer.irrevocable && self.height <= record.offer.expiry =>
            {
                vec![reply(CancelOutcome::Irrevocable)]
            }
            LspStatus::Offered => {
                let mut actions = self.void(id, CancelOutcome::Cancelled);
                actions.push(reply(CancelOutcome::Cancelled));
                actions
            }
            LspStatus::Selling { .. } => vec![reply(CancelOutcome::SaleInProgress)],
            LspStatus::Sold {
                invoice, scalar, ..
            } => vec![
                reply(CancelOutcome::Sold),
                Action::Send {
                    to: from,
                    message: PaymentMessage::Receipt(Receipt {
                        payment_id: id,
                        invoice: invoice.clone(),
                        scalar: scalar.clone(),
                    }),
                },
            ],
            LspStatus::Cancelled { outcome } => vec![reply(*outcome)],
        })
    }

    fn on_receipt_ack(
        &mut self,
        from: PublicKey,
        id: PaymentId,
    ) -> Result<Vec<LspAction>, PaymentError> {
        self.payer_record(id, from, "receipt ack")?;
        let record = self.payments.get_mut(&id).expect("checked");
        match &mut record.status {
            LspStatus::Sold { receipt_acked, .. } if !*receipt_acked => {
                *receipt_acked = true;
                Ok(vec![Action::Persist((id, record.clone()))])
            }
            LspStatus::Sold { .. } => Ok(vec![]),
            other => Err(PaymentError::Unexpected {
                what: "receipt ack",
                status: other.name(),
            }),
        }
    }

    fn on_connected(&mut self, peer: PublicKey) -> Vec<LspAction> {
        let mut actions = vec![];
        // A forward stored but perhaps never sent (S stopped in between): the router
        // ignores a repeat.
        for record in self.payments.values() {
            if let LspStatus::Selling {
                forward: Some(f),
                invoice,
                ..
            } = &record.status
            {
                if invoice.route_hint.is_some_and(|h| h.router == peer) {
                    actions.push(Action::Send {
                        to: peer,
                        message: PaymentMessage::Forward(f.as_ref().clone()),
                    });
                }
            }
        }
        for (id, record) in &self.payments {
            if record.payer != peer {
                continue;
            }
            match &record.status {
                LspStatus::Sold {
                    invoice,
                    scalar,
                    receipt_acked: false,
                } => actions.push(Action::Send {
                    to: peer,
                    message: PaymentMessage::Receipt(Receipt {
                        payment_id: *id,
                        invoice: invoice.clone(),
                        scalar: scalar.clone(),
                    }),
                }),
                LspStatus::Offered => actions.push(Action::Send {
                    to: peer,
                    message: PaymentMessage::Offer(record.offer.clone()),
                }),
                // An expiry happens while the payer is away; it learns of it on return. (The
                // payer ignores repeats; there is no acknowledgement yet, so this is resent
                // on every reconnection.)
                LspStatus::Cancelled {
                    outcome: CancelOutcome::Expired,
                } => actions.push(Action::Send {
                    to: peer,
                    message: PaymentMessage::Cancelled {
                        payment_id: *id,
                        outcome: CancelOutcome::Expired,
                    },
                }),
                _ => {}
            }
        }
        actions
    }

    fn on_block(&mut self, height: u32) -> Vec<LspAction> {
        self.height = self.height.max(height);
        let expired: Vec<PaymentId> = self
            .payments
            .iter()
            .filter(|(_, p)| p.status == LspStatus::Offered && p.offer.expiry < self.height)
            .map(|(id, _)| *id)
            .collect();
        expired.into_iter().flat_map(|id| self.expire(id)).collect()
    }

    fn expire(&mut self, id: PaymentId) -> Vec<LspAction> {
        match self.payments.get(&id) {
            Some(p) if p.status == LspStatus::Offered => {
                let payer = p.payer;
                let mut actions = self.void(id, CancelOutcome::Expired);
                actions.push(Action::Send {
                    to: payer,
                    message: PaymentMessage::Cancelled {
                        payment_id: id,
                        outcome: CancelOutcome::Expired,
                    },
                });
                actions
            }
            _ => vec![],
        }
    }

    /// Voids an offered payment: persisted first, then the payer's state is reverted (or its
    /// held PTLC failed back to it).
    fn void(&mut self, id: PaymentId, outcome: CancelOutcome) -> Vec<LspAction> {
        let record = self.payments.get_mut(&id).expect("caller checked");
        record.status = LspStatus::Cancelled { outcome };
        let record = record.clone();
        let channel_id = record.offer.channel_id;
        vec![
            Action::Persist((id, record.clone())),
            match record.offer.held {
                None => Action::Revert {
                    channel_id,
                    abandoned_state: record.offer.state,
                },
                Some(held) => Action::Channel {
                    channel_id,
                    command: Command::Fail { id: held.id },
                },
            },
            Action::Event(PaymentEvent::Cancelled {
                payment_id: id,
                outcome,
            }),
        ]
    }
}
