//! A, the payer: proposes the withheld state, obtains S's offer, leaves the signature in the
//! payee's mailbox, and collects the receipt when it returns.
//!
//! On the in-process network (`asyncpay::testing`, the one node driver over memory), A pays
//! an offline B and goes offline too; B sells later; A, back, completes with its receipt:
//!
//! ```
//! use asyncpay::testing::{policy, Network, A, B, S};
//!
//! let mut net = Network::new();
//! net.open(A, S, 1_000_000).unwrap();
//! net.open(S, B, 400_000).unwrap();
//! net.stop(B);
//! let id = net.pay(20_000).unwrap();
//! assert_eq!(net.nodes[A].status(&id), Some("posted")); // letter in B's mailbox
//! net.stop(A);
//! net.start(B).unwrap();
//! net.fetch_letters(B).unwrap();
//! net.start(A).unwrap();
//! net.pump().unwrap();
//! assert_eq!(net.nodes[A].status(&id), Some("completed"));
//! let a_s = net.nodes[A].state_with(net.key(S)).unwrap();
//! assert_eq!(a_s.to_a, 1_000_000 - 20_000 - policy().fee_for(20_000));
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::crypto::adaptor::{
    sells, AdaptorError, AdaptorPoint, AdaptorSecret, EncryptedSignature,
};
use crate::crypto::keys::{PublicKey, Signature};
use crate::crypto::receipt::{receipt_point, ReceiptCard, ReceiptSlot};
use crate::protocol::channel::Command;
use crate::protocol::messages::ChannelId;

use super::{
    receipt_message, same, Action, CancelOutcome, ForSale, HeldPtlc, PayRequest, PaymentError,
    PaymentEvent, PaymentId, PaymentMessage, ProofOfPayment, PurchaseOffer, Receipt, SaleLetter,
    Share, MAX_NOTE_LEN, PAYMENT_VERSION,
};

/// Where a payment stands at A.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
// A record per payment, read and stored one at a time: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum PayerStatus {
    /// The transfer is proposed on the channel; waiting for the withheld signature.
    Proposed,
    /// Signed and withheld (or, for a held sale, the PTLC is in a complete state); S was
    /// asked for an offer.
    Requested {
        /// The withheld state, or the state that added the held PTLC.
        state: u64,
        /// What B completes with its receipt signature into the thing for sale.
        #[serde(alias = "presignature")]
        sold: ForSale,
        /// The price point of the completed signature.
        point: AdaptorPoint,
        /// For a held sale: the PTLC.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        held: Option<HeldPtlc>,
    },
    /// S's offer arrived; the letter is being posted.
    Offered {
        /// The letter.
        letter: SaleLetter,
    },
    /// The letter is in B's mailbox; A may go offline.
    Posted {
        /// The letter (kept to re-post if needed).
        letter: SaleLetter,
    },
    /// A asked S to cancel.
    Cancelling {
        /// The letter.
        letter: SaleLetter,
    },
    /// B was paid: A's completed signature came back (S showed the completed state, or
    /// published it on chain), and A took B's receipt signature from it. S's receipt (B's
    /// invoice) has not come yet.
    Paid {
        /// The letter.
        letter: SaleLetter,
        /// B's signature on the receipt message.
        proof: ProofOfPayment,
    },
    /// B was paid: S's receipt holds B's signed invoice and the scalar, from which A took
    /// B's receipt signature.
    Completed {
        /// The receipt.
        receipt: Receipt,
        /// B's signature on the receipt message: anyone can check it with B's card.
        proof: ProofOfPayment,
    },
    /// Cancelled or expired before a sale, or refused by S.
    Void {
        /// What S said.
        reason: String,
        /// The letter, if one was made: should A's state still be completed with its
        /// signature (S saying "cancelled" and buying anyway), A takes its proof from it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        letter: Option<SaleLetter>,
    },
}

impl core::fmt::Debug for PayerStatus {
    // The signature in `Requested`/letters is what is for sale: never printed.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl PayerStatus {
    /// The number of the state whose signature is (or is about to be) for sale, while the
    /// payment can still complete; `Proposed` has no number yet and counts as newer than any.
    /// A held sale waits in a PTLC output, which a settlement does not end: `None`.
    fn for_sale(&self) -> Option<u64> {
        match self {
            PayerStatus::Proposed => Some(u64::MAX),
            PayerStatus::Requested { held: Some(_), .. } => None,
            PayerStatus::Requested { state, .. } => Some(*state),
            PayerStatus::Offered { letter }
            | PayerStatus::Posted { letter }
            | PayerStatus::Cancelling { letter } => {
                letter.offer.held.is_none().then_some(letter.offer.state)
            }
            PayerStatus::Paid { .. } | PayerStatus::Completed { .. } | PayerStatus::Void { .. } => {
                None
            }
        }
    }

    /// The sale letter, once made.
    pub fn letter(&self) -> Option<&SaleLetter> {
        match self {
            PayerStatus::Offered { letter }
            | PayerStatus::Posted { letter }
            | PayerStatus::Cancelling { letter }
            | PayerStatus::Paid { letter, .. } => Some(letter),
            PayerStatus::Void { letter, .. } => letter.as_ref(),
            PayerStatus::Proposed
            | PayerStatus::Requested { .. }
            | PayerStatus::Completed { .. } => None,
        }
    }

    /// A short name.
    pub fn name(&self) -> &'static str {
        match self {
            PayerStatus::Proposed => "proposed",
            PayerStatus::Requested { .. } => "requested",
            PayerStatus::Offered { .. } => "offered",
            PayerStatus::Posted { .. } => "posted",
            PayerStatus::Cancelling { .. } => "cancelling",
            PayerStatus::Paid { .. } => "paid",
            PayerStatus::Completed { .. } => "completed",
            PayerStatus::Void { .. } => "void",
        }
    }
}

/// One payment at A: the durable record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayerPayment {
    /// The A–S channel.
    pub channel_id: ChannelId,
    /// S's node key.
    pub lsp: PublicKey,
    /// B's node key.
    pub payee: PublicKey,
    /// What B receives.
    pub amount_sat: u64,
    /// What S keeps.
    pub fee_sat: u64,
    /// A note for B.
    pub note: String,
    /// The card epoch of B's receipt slot.
    pub receipt_epoch: u32,
    /// B's receipt slot this payment's signature is encrypted to.
    pub receipt_slot: ReceiptSlot,
    /// For a held sale: the share of its point and its PTLC's expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Hold>,
    /// Where it stands.
    pub status: PayerStatus,
}

/// A's choice for a held sale: the payment waits in a PTLC A offers S, locked to
/// T = a·G + Z, until `expiry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// a, fresh from the driver's randomness; secret until B completes it.
    pub share: Share,
    /// The PTLC's expiry height: A takes its amount back on chain from then on if S has not
    /// claimed it, and S sells only while it can still claim before then.
    pub expiry: u32,
    /// Ask S for an offer A cannot cancel before its expiry (for a letter handed to a
    /// merchant's offline device).
    #[serde(default)]
    pub irrevocable: bool,
}

impl PayerPayment {
    /// The receipt message B's slot signs for payment `id`.
    pub fn receipt_message(&self, id: &PaymentId) -> [u8; 32] {
        receipt_message(
            id,
            self.amount_sat,
            &self.payee,
            self.receipt_epoch,
            self.receipt_slot.index,
            &self.note,
        )
    }

    /// Z, the point of B's receipt signature for payment `id`: what A's signature on the
    /// withheld state is encrypted to.
    pub fn receipt_point(&self, id: &PaymentId) -> Result<AdaptorPoint, AdaptorError> {
        receipt_point(&self.receipt_slot, &self.receipt_message(id))
    }

    /// For a held sale: T = a·G + Z, the point of its PTLC.
    pub fn held_point(&self, id: &PaymentId) -> Option<AdaptorPoint> {
        let hold = self.hold.as_ref()?;
        let share = hold.share.secret().ok()?;
        self.receipt_point(id).ok()?.add_secret(&share).ok()
    }

    /// The request for S's offer, while the payment is `requested`.
    fn request(&self, payment_id: PaymentId) -> Option<PayerAction> {
        let PayerStatus::Requested { state, held, .. } = &self.status else {
            return None;
        };
        Some(Action::Send {
            to: self.lsp,
            message: PaymentMessage::Request(PayRequest {
                payment_id,
                channel_id: self.channel_id,
                state: *state,
                amount_sat: self.amount_sat,
                fee_sat: self.fee_sat,
                payee: self.payee,
                held: *held,
                irrevocable: self.hold.as_ref().is_some_and(|h| h.irrevocable),
            }),
        })
    }
}

/// An input to [`Payer::handle`].
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum PayerInput {
    /// The user pays.
    Pay {
        /// A fresh id (from the driver's randomness).
        payment_id: PaymentId,
        /// The channel with the LSP.
        channel_id: ChannelId,
        /// The LSP's node key.
        lsp: PublicKey,
        /// The payee's node key.
        payee: PublicKey,
        /// What the payee receives.
        amount_sat: u64,
        /// What the LSP keeps.
        fee_sat: u64,
        /// A note for the payee.
        note: String,
        /// The payee's receipt slots (from its checked contact card).
        receipts: ReceiptCard,
        /// A held sale (a PTLC to S per payment, many at once on one channel), or `None`
        /// for a withheld update (one at a time).
        hold: Option<Hold>,
    },
    /// The PTLC a held sale proposed is in a complete state of the channel.
    HeldPtlcAdded {
        /// The channel.
        channel_id: ChannelId,
        /// The state that added it.
        state: u64,
        /// The PTLC.
        ptlc: HeldPtlc,
        /// Its point.
        point: AdaptorPoint,
    },
    /// A PTLC A offered S was resolved: claimed with `secret` (S fulfilled it, or claimed it
    /// on chain), or, with `None`, failed back to A or timed out.
    HeldPtlcResolved {
        /// The channel.
        channel_id: ChannelId,
        /// Its point.
        point: AdaptorPoint,
        /// The scalar that claimed it.
        secret: Option<AdaptorSecret>,
    },
    /// The channel pre-signed A's proposal, encrypted to the payee's receipt point, and kept
    /// it back.
    SignatureEncrypted {
        /// The channel.
        channel_id: ChannelId,
        /// The state.
        state: u64,
        /// The pre-signature.
        presignature: EncryptedSignature,
        /// The point it is encrypted to.
        receipt_point: AdaptorPoint,
        /// The price point of the completed signature.
        point: AdaptorPoint,
    },
    /// The channel's withheld state `state` is complete with A's signature, which the payee
    /// completed from A's pre-signature (shown by S, or published on chain).
    PreSignatureCompleted {
        /// The channel.
        channel_id: ChannelId,
        /// The state.
        state: u64,
        /// A's completed signature on it.
        signature: Signature,
    },
    /// A payment message from a peer.
    Message {
        /// The authenticated sender.
        from: PublicKey,
        /// The message.
        message: PaymentMessage,
    },
    /// The driver posted the letter to the payee's mailbox.
    LetterPosted {
        /// The payment.
        payment_id: PaymentId,
    },
    /// The user cancels.
    Cancel {
        /// The payment.
        payment_id: PaymentId,
    },
    /// The channel refused the transfer a payment proposed (e.g. the balance does not cover
    /// amount plus fee): the payment is void and nothing was signed.
    TransferRefused {
        /// The channel.
        channel_id: ChannelId,
        /// Why, as the channel said it.
        reason: String,
    },
    /// The channel's settlement confirmed on chain at `state`: a payment whose withheld
    /// state is newer can never be completed, and is void.
    ChannelSettled {
        /// The channel.
        channel_id: ChannelId,
        /// The settled state.
        state: u64,
    },
    /// The LSP connected (A came back online).
    PeerConnected {
        /// The peer.
        peer: PublicKey,
    },
}

/// What A's driver must do.
pub type PayerAction = Action<(PaymentId, PayerPayment)>;

/// A's payment role.
pub struct Payer {
    key: PublicKey,
    payments: BTreeMap<PaymentId, PayerPayment>,
}

impl core::fmt::Debug for Payer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Payer")
            .field("node", &self.key)
            .field("payments", &self.payments.len())
            .finish()
    }
}

impl Payer {
    /// A payer with its node key and persisted records.
    pub fn restore(
        key: PublicKey,
        records: impl IntoIterator<Item = (PaymentId, PayerPayment)>,
    ) -> Self {
        Payer {
            key,
            payments: records.into_iter().collect(),
        }
    }

    /// One payment.
    pub fn payment(&self, id: &PaymentId) -> Option<&PayerPayment> {
        self.payments.get(id)
    }

    /// Every payment.
    pub fn payments(&self) -> impl Iterator<Item = (&PaymentId, &PayerPayment)> {
        self.payments.iter()
    }

    /// Handles one input. On error nothing changed.
    pub fn handle(&mut self, input: PayerInput) -> Result<Vec<PayerAction>, PaymentError> {
        match input {
            PayerInput::Pay {
                payment_id,
                channel_id,
                lsp,
                payee,
                amount_sat,
                fee_sat,
                note,
                receipts,
                hold,
            } => {
                if self.payments.contains_key(&payment_id) {
                    return Err(PaymentError::DuplicatePayment(payment_id));
                }
                if amount_sat == 0 {
                    return Err(PaymentError::Amount("zero amount"));
                }
                if note.len() > MAX_NOTE_LEN {
                    return Err(PaymentError::TooLarge {
                        len: note.len(),
                        max: MAX_NOTE_LEN,
                    });
                }
                let transfer = amount_sat
                    .checked_add(fee_sat)
                    .ok_or(PaymentError::Amount("amount plus fee overflows"))?;
                if self.in_flight(&channel_id).is_some() {
                    return Err(PaymentError::Unexpected {
                        what: "pay",
                        status: "another payment is being set up on this channel",
                    });
                }
                let receipt_slot = self.unused_slot(&payment_id, &payee, &receipts)?;
                let record = PayerPayment {
                    channel_id,
                    lsp,
                    payee,
                    amount_sat,
                    fee_sat,
                    note,
                    receipt_epoch: receipts.epoch,
                    receipt_slot,
                    hold,
                    status: PayerStatus::Proposed,
                };
                let receipt_point =
                    record
                        .receipt_point(&payment_id)
                        .map_err(|_| PaymentError::Mismatch {
                            field: "receipt slot (its point is at infinity)",
                        })?;
                let command = match &record.hold {
                    None => Command::TransferEncrypted {
                        amount_sat: transfer,
                        receipt_point,
                    },
                    Some(hold) => Command::AddPtlc {
                        amount_sat: transfer,
                        point: record
                            .held_point(&payment_id)
                            .ok_or(PaymentError::Mismatch {
                                field: "held share (zero, or the point is at infinity)",
                            })?,
                        expiry: hold.expiry,
                    },
                };
                self.payments.insert(payment_id, record.clone());
                // The share is stored before its point leaves in the PTLC.
                Ok(vec![
                    Action::Persist((payment_id, record)),
                    Action::Channel {
                        channel_id,
                        command,
                    },
                ])
            }
            // A refusal with no payment waiting for it (a purchase of the reverse variant, or
            // a repeat after a restart) is nothing of this role's.
            PayerInput::TransferRefused { channel_id, reason } => Ok(self
                .in_flight(&channel_id)
                .map(|id| self.void(id, reason))
                .unwrap_or_default()),
            PayerInput::SignatureEncrypted {
                channel_id,
                state,
                presignature,
                receipt_point,
                point,
            } => {
                let id = self
                    .in_flight(&channel_id)
                    .ok_or(PaymentError::Unexpected {
                        what: "withheld signature",
                        status: "no payment proposed on this channel",
                    })?;
                let record = self.payments.get_mut(&id).expect("found");
                if record.hold.is_some() || record.receipt_point(&id).ok() != Some(receipt_point) {
                    return Err(PaymentError::Mismatch {
                        field: "receipt point",
                    });
                }
                record.status = PayerStatus::Requested {
                    state,
                    sold: ForSale::Presignature(presignature),
                    point,
                    held: None,
                };
                let record = record.clone();
                let request = record.request(id).expect("requested");
                Ok(vec![Action::Persist((id, record)), request])
            }
            PayerInput::HeldPtlcAdded {
                channel_id,
                state,
                ptlc,
                point,
            } => {
                let Some(id) = self.in_flight(&channel_id) else {
                    // Heard again after a restart: the payment has moved on already.
                    return Ok(vec![]);
                };
                let record = self.payments.get_mut(&id).expect("found");
                let Some(hold) = &record.hold else {
                    return Ok(vec![]);
                };
                if record.held_point(&id) != Some(point) || hold.expiry != ptlc.expiry {
                    return Ok(vec![]);
                }
                record.status = PayerStatus::Requested {
                    state,
                    sold: ForSale::Share(hold.share.clone()),
                    point,
                    held: Some(ptlc),
                };
                let record = record.clone();
                let request = record.request(id).expect("requested");
                Ok(vec![Action::Persist((id, record)), request])
            }
            PayerInput::HeldPtlcResolved {
                channel_id,
                point,
                secret,
            } => self.on_held_resolved(channel_id, point, secret),
            PayerInput::PreSignatureCompleted {
                channel_id,
                state,
                signature,
            } => self.on_completed_signature(channel_id, state, signature),
            PayerInput::Message { from, message } => self.on_message(from, message),
            PayerInput::LetterPosted { payment_id } => {
                let record = self
                    .payments
                    .get_mut(&payment_id)
                    .ok_or(PaymentError::UnknownPayment(payment_id))?;
                let PayerStatus::Offered { letter } = &record.status else {
                    return Err(PaymentError::Unexpected {
                        what: "letter posted",
                        status: record.status.name(),
                    });
                };
                record.status = PayerStatus::Posted {
                    letter: letter.clone(),
                };
                Ok(vec![
                    Action::Persist((payment_id, record.clone())),
                    Action::Event(PaymentEvent::LetterPosted { payment_id }),
                ])
            }
            PayerInput::Cancel { payment_id } => {
                let record = self
                    .payments
                    .get_mut(&payment_id)
                    .ok_or(PaymentError::UnknownPayment(payment_id))?;
                let (PayerStatus::Offered { letter } | PayerStatus::Posted { letter }) =
                    &record.status
                else {
                    return Err(PaymentError::Unexpected {
                        what: "cancel",
                        status: record.status.name(),
                    });
                };
                // A's own promise to the payee, who may hold the letter already: not asked
                // of S at all (S would refuse it too).
                if letter.offer.irrevocable {
                    return Err(PaymentError::Irrevocable {
                        expiry: letter.offer.expiry,
                    });
                }
                record.status = PayerStatus::Cancelling {
                    letter: letter.clone(),
                };
                let record = record.clone();
                Ok(vec![
                    Action::Persist((payment_id, record.clone())),
                    Action::Send {
                        to: record.lsp,
                        message: PaymentMessage::Cancel { payment_id },
                    },
                ])
            }
            PayerInput::ChannelSettled { channel_id, state } => {
                let stranded: Vec<PaymentId> = self
                    .payments
                    .iter()
                    .filter(|(_, p)| p.channel_id == channel_id)
                    .filter(|(_, p)| p.status.for_sale().is_some_and(|n| n > state))
                    .map(|(id, _)| *id)
                    .collect();
                Ok(stranded
                    .into_iter()
                    .flat_map(|id| {
                        self.void(
                            id,
                            format!(
                                "the channel settled on chain at state {state} before a sale: \
                                 the state for sale can never be completed"
                            ),
                        )
                    })
                    .collect())
            }
            PayerInput::PeerConnected { peer } => Ok(self
                .payments
                .iter()
                .filter(|(_, p)| p.lsp == peer)
                .filter_map(|(id, p)| match &p.status {
                    PayerStatus::Cancelling { .. } => Some(Action::Send {
                        to: peer,
                        message: PaymentMessage::Cancel { payment_id: *id },
                    }),
                    // Stored before it was sent: the node may have stopped in between. S
                    // answers a repeated request with the same offer.
                    PayerStatus::Requested { .. } => p.request(*id),
                    // The letter may not have reached the mailbox; posting is idempotent.
                    PayerStatus::Offered { letter } => Some(Action::PostLetter {
                        payment_id: *id,
                        payee: p.payee,
                        letter: Box::new(letter.clone()),
                    }),
                    _ => None,
                })
                .collect()),
        }
    }

    /// Records `id` as void for `reason` (a refusal by the channel or by S).
    fn void(&mut self, id: PaymentId, reason: String) -> Vec<PayerAction> {
        let record = self.payments.get_mut(&id).expect("known payment");
        record.status = PayerStatus::Void {
            reason: reason.clone(),
            letter: record.status.letter().cloned(),
        };
        vec![
            Action::Persist((id, record.clone())),
            Action::Event(PaymentEvent::Refused {
                payment_id: id,
                reason,
            }),
        ]
    }

    /// The first slot of `card`, endorsed by `payee`, that no payment of ours to `payee`
    /// used (`card` may list a few slots handed to this payer only). A slot signs one message only; a slot another
    /// payer used first is refused by the payee, and the payment then fails without loss
    /// (see docs/proof-of-payment.md).
    fn unused_slot(
        &self,
        payment_id: &PaymentId,
        payee: &PublicKey,
        card: &ReceiptCard,
    ) -> Result<ReceiptSlot, PaymentError> {
        let used: std::collections::BTreeSet<u32> = self
            .payments
            .values()
            .filter(|p| &p.payee == payee && p.receipt_epoch == card.epoch)
            .map(|p| p.receipt_slot.index)
            .collect();
        // The search starts at a slot the (random) payment id picks: payers of one card (a
        // static offer many pay) do not all take its first slot, of which only one payment
        // can be paid. Only a slot the payee endorsed gives a proof anyone can check with its
        // node key.
        let n = card.slots.len().max(1);
        let start = u32::from_be_bytes([
            payment_id.0[0],
            payment_id.0[1],
            payment_id.0[2],
            payment_id.0[3],
        ]) as usize
            % n;
        card.slots[start..]
            .iter()
            .chain(&card.slots[..start])
            .find(|slot| !used.contains(&slot.index) && slot.endorsed_by(card.epoch, payee))
            .copied()
            .ok_or(PaymentError::NoReceiptSlot {
                slots: card.slots.len(),
            })
    }

    /// The payment being set up on `channel` (proposed, not yet signed).
    fn in_flight(&self, channel: &ChannelId) -> Option<PaymentId> {
        self.payments
            .iter()
            .find(|(_, p)| &p.channel_id == channel && p.status == PayerStatus::Proposed)
            .map(|(id, _)| *id)
    }

    fn on_message(
        &mut self,
        from: PublicKey,
        message: PaymentMessage,
    ) -> Result<Vec<PayerAction>, PaymentError> {
        let id = match &message {
            PaymentMessage::Offer(offer) => offer.payment_id,
            PaymentMessage::Receipt(r) => r.payment_id,
            PaymentMessage::Cancelled { payment_id, .. }
            | PaymentMessage::RequestRefused { payment_id, .. } => *payment_id,
            other => {
                return Err(PaymentError::Unexpected {
                    what: other.name(),
                    status: "any (payer)",
                })
            }
        };
        let record = self
            .payments
            .get(&id)
            .ok_or(PaymentError::UnknownPayment(id))?;
        if from != record.lsp {
            return Err(PaymentError::WrongPeer {
                what: message.name(),
                from: Box::new(from),
                role: "lsp",
            });
        }
        match message {
            PaymentMessage::Offer(offer) => self.on_offer(id, offer),
            PaymentMessage::Receipt(receipt) => self.on_receipt(id, receipt),
            PaymentMessage::Cancelled { outcome, .. } => self.on_cancelled(id, outcome),
            PaymentMessage::RequestRefused { reason, .. } => {
                let record = self.payments.get(&id).expect("found");
                if !matches!(record.status, PayerStatus::Requested { .. }) {
                    return Err(PaymentError::Unexpected {
                        what: "request refused",
                        status: record.status.name(),
                    });
                }
                Ok(self.void(id, reason))
            }
            _ => unreachable!("filtered above"),
        }
    }

    fn on_offer(
        &mut self,
        id: PaymentId,
        offer: PurchaseOffer,
    ) -> Result<Vec<PayerAction>, PaymentError> {
        offer.verify()?;
        let record = self.payments.get_mut(&id).expect("found");
        let PayerStatus::Requested {
            state,
            sold,
            point,
            held,
        } = &record.status
        else {
            // S resends open offers when A reconnects; one that was handled is a no-op.
            return match &record.status {
                PayerStatus::Offered { letter }
                | PayerStatus::Posted { letter }
                | PayerStatus::Cancelling { letter }
                | PayerStatus::Paid { letter, .. }
                    if letter.offer == offer =>
                {
                    Ok(vec![])
                }
                other => Err(PaymentError::Unexpected {
                    what: "offer",
                    status: other.name(),
                }),
            };
        };
        same(offer.lsp == record.lsp, "lsp")?;
        same(offer.channel_id == record.channel_id, "channel")?;
        same(offer.state == *state, "state")?;
        same(offer.amount_sat == record.amount_sat, "amount")?;
        same(offer.fee_sat == record.fee_sat, "fee")?;
        same(offer.payee == record.payee, "payee")?;
        same(offer.point == *point, "point")?;
        same(offer.held == *held, "held ptlc")?;
        // S makes an offer irrevocable only if A asked: an irrevocable offer takes A's right
        // to cancel.
        let asked = record.hold.as_ref().is_some_and(|h| h.irrevocable);
        same(offer.irrevocable == asked, "irrevocable")?;
        let letter = SaleLetter {
            version: PAYMENT_VERSION,
            offer,
            sold: sold.clone(),
            receipt_epoch: record.receipt_epoch,
            receipt_slot: record.receipt_slot.index,
            payer: self.key,
            note: record.note.clone(),
        };
        record.status = PayerStatus::Offered {
            letter: letter.clone(),
        };
        let payee = record.payee;
        Ok(vec![
            Action::Persist((id, record.clone())),
            Action::PostLetter {
                payment_id: id,
                payee,
                letter: Box::new(letter),
            },
        ])
    }

    fn on_receipt(
        &mut self,
        id: PaymentId,
        receipt: Receipt,
    ) -> Result<Vec<PayerAction>, PaymentError> {
        let record = self.payments.get_mut(&id).expect("found");
        let (letter, known) = match &record.status {
            PayerStatus::Offered { letter }
            | PayerStatus::Posted { letter }
            | PayerStatus::Cancelling { letter }
            | PayerStatus::Void {
                letter: Some(letter),
                ..
            } => (letter, None),
            // The proof came first, from the completed state: the receipt adds B's invoice.
            PayerStatus::Paid { letter, proof } => (letter, Some(proof.clone())),
            PayerStatus::Completed { receipt: have, .. } if have == &receipt => {
                // A resend: acknowledge again.
                return Ok(vec![Action::Send {
                    to: record.lsp,
                    message: PaymentMessage::ReceiptAck { payment_id: id },
                }]);
            }
            other => {
                return Err(PaymentError::Unexpected {
                    what: "receipt",
                    status: other.name(),
                })
            }
        };
        if receipt.payment_id != id {
            return Err(PaymentError::Mismatch {
                field: "payment_id",
            });
        }
        receipt.invoice.check_against(&letter.offer)?;
        let proof = match known {
            Some(proof) => proof,
            None => proof_of(id, record, letter, &receipt.scalar.0)?,
        };
        record.status = PayerStatus::Completed { receipt, proof };
        let lsp = record.lsp;
        Ok(vec![
            Action::Persist((id, record.clone())),
            Action::Send {
                to: lsp,
                message: PaymentMessage::ReceiptAck { payment_id: id },
            },
            Action::Event(PaymentEvent::Completed { payment_id: id }),
        ])
    }

    /// A's withheld state completed with the signature the payee made from A's
    /// pre-signature: B was paid, and A takes the proof from the signature's scalar.
    fn on_completed_signature(
        &mut self,
        channel_id: ChannelId,
        state: u64,
        signature: Signature,
    ) -> Result<Vec<PayerAction>, PaymentError> {
        let found = self
            .payments
            .iter_mut()
            .find_map(|(id, p)| match &p.status {
                // A void payment too: S answered a cancellation and completed the state anyway
                // (it can only have done so with the scalar, so B was paid); A holds its
                // proof all the same.
                PayerStatus::Offered { letter }
                | PayerStatus::Posted { letter }
                | PayerStatus::Cancelling { letter }
                | PayerStatus::Void {
                    letter: Some(letter),
                    ..
                } if p.channel_id == channel_id
                    && letter.offer.held.is_none()
                    && letter.offer.state == state =>
                {
                    let letter = letter.clone();
                    Some((*id, p, letter))
                }
                _ => None,
            });
        // Completed already (the receipt came first), or not a payment's state.
        let Some((id, record, letter)) = found else {
            return Ok(vec![]);
        };
        let proof = proof_of(id, record, &letter, &signature.s_bytes())?;
        record.status = PayerStatus::Paid { letter, proof };
        Ok(vec![
            Action::Persist((id, record.clone())),
            Action::Event(PaymentEvent::Paid { payment_id: id }),
        ])
    }

    /// A held sale's PTLC was claimed (B was paid: the proof comes from the scalar) or came
    /// back to A (the payment is void, if it was not already).
    fn on_held_resolved(
        &mut self,
        channel_id: ChannelId,
        point: AdaptorPoint,
        secret: Option<AdaptorSecret>,
    ) -> Result<Vec<PayerAction>, PaymentError> {
        let found = self.payments.iter_mut().find(|(_, p)| {
            p.channel_id == channel_id
                && match &p.status {
                    PayerStatus::Requested {
                        point: p,
                        held: Some(_),
                        ..
                    } => *p == point,
                    other => other
                        .letter()
                        .is_some_and(|l| l.offer.held.is_some() && l.offer.point == point),
                }
        });
        // A PTLC of the reverse variant, or a payment already resolved.
        let Some((&id, record)) = found else {
            return Ok(vec![]);
        };
        match (secret, &record.status) {
            (_, PayerStatus::Paid { .. } | PayerStatus::Completed { .. }) => Ok(vec![]),
            (Some(secret), status) => {
                // Fulfilled before the offer reached A: S sold all the same.
                let Some(letter) = status.letter().cloned() else {
                    return Err(PaymentError::Unexpected {
                        what: "held ptlc fulfilled",
                        status: status.name(),
                    });
                };
                let proof = proof_of(id, record, &letter, &secret.to_secret_bytes())?;
                record.status = PayerStatus::Paid { letter, proof };
                Ok(vec![
                    Action::Persist((id, record.clone())),
                    Action::Event(PaymentEvent::Paid { payment_id: id }),
                ])
            }
            (None, PayerStatus::Void { .. }) => Ok(vec![]),
            (None, _) => Ok(self.void(
                id,
                "the held ptlc came back to the payer: nothing was sold".to_owned(),
            )),
        }
    }

    fn on_cancelled(
        &mut self,
        id: PaymentId,
        outcome: CancelOutcome,
    ) -> Result<Vec<PayerAction>, PaymentError> {
        let record = self.payments.get_mut(&id).expect("found");
        match (&record.status, outcome) {
            (
                PayerStatus::Paid { .. } | PayerStatus::Completed { .. } | PayerStatus::Void { .. },
                _,
            ) => Ok(vec![]),
            (_, CancelOutcome::Cancelled | CancelOutcome::Expired) => {
                record.status = PayerStatus::Void {
                    reason: match outcome {
                        CancelOutcome::Expired => "expired",
                        _ => "cancelled",
                    }
                    .to_owned(),
                    letter: record.status.letter().cloned(),
                };
                Ok(vec![
                    Action::Persist((id, record.clone())),
                    Action::Event(PaymentEvent::Cancelled {
                        payment_id: id,
                        outcome,
                    }),
                ])
            }
            // An offer A did not make irrevocable cannot be refused as one.
            (PayerStatus::Cancelling { letter }, CancelOutcome::Irrevocable)
                if !letter.offer.irrevocable =>
            {
                Err(PaymentError::Mismatch {
                    field: "irrevocable",
                })
            }
            // The sale won the race (the receipt follows, or has come): the payment stands.
            (PayerStatus::Cancelling { letter }, outcome) => {
                record.status = PayerStatus::Posted {
                    letter: letter.clone(),
                };
                let reason = match outcome {
                    CancelOutcome::Irrevocable => "irrevocable",
                    _ => "sale_in_progress",
                };
                Ok(vec![
                    Action::Persist((id, record.clone())),
                    Action::Event(PaymentEvent::Refused {
                        payment_id: id,
                        reason: reason.to_owned(),
                    }),
                ])
            }
            (other, _) => Err(PaymentError::Unexpected {
                what: "cancelled",
                status: other.name(),
            }),
        }
    }
}

/// B's receipt signature, from the scalar S bought and A's pre-signature: the proof of
/// payment. A scalar that does not sell the offer's point, or does not complete the
/// pre-signature to B's receipt point, is refused (S must send the one it bought).
fn proof_of(
    id: PaymentId,
    record: &PayerPayment,
    letter: &SaleLetter,
    scalar: &[u8; 32],
) -> Result<ProofOfPayment, PaymentError> {
    let scalar = AdaptorSecret::from_bytes(*scalar).map_err(|_| PaymentError::WrongScalar)?;
    if !sells(&scalar, &letter.offer.point) {
        return Err(PaymentError::WrongScalar);
    }
    let receipt_point = record
        .receipt_point(&id)
        .map_err(|_| PaymentError::WrongScalar)?;
    let z = letter.sold.receipt_scalar(&receipt_point, &scalar)?;
    let proof = ProofOfPayment {
        payment_id: id,
        amount_sat: record.amount_sat,
        note: record.note.clone(),
        payee: record.payee,
        epoch: record.receipt_epoch,
        slot: record.receipt_slot,
        signature: z.to_signature(&record.receipt_slot.nonce),
    };
    proof
        .slot
        .key
        .verify(&proof.message(), &proof.signature)
        .map_err(|_| PaymentError::WrongScalar)?;
    Ok(proof)
}
