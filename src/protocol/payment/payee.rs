//! B, the payee: opens sale letters, invoices the LSP for the price point, and fulfils the
//! PTLC that pays it with the scalar it sells.
//!
//! On the in-process network (`asyncpay::testing`), B comes online after A left, fetches A's
//! letter and is paid on its channel with S:
//!
//! ```
//! use asyncpay::testing::{Network, A, B, S};
//!
//! let mut net = Network::new();
//! net.open(A, S, 1_000_000).unwrap();
//! net.open(S, B, 400_000).unwrap();
//! net.stop(B);
//! let id = net.pay(20_000).unwrap();
//! net.stop(A);
//! net.start(B).unwrap();
//! assert_eq!(net.nodes[B].mailbox.len(), 1);
//! net.fetch_letters(B).unwrap();
//! assert_eq!(net.nodes[B].status(&id), Some("paid"));
//! let s_b = net.nodes[B].state_with(net.key(S)).unwrap();
//! assert_eq!((s_b.to_a, s_b.to_s), (400_000 - 20_000, 20_000));
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::crypto::adaptor::AdaptorPoint;
use crate::crypto::keys::{PublicKey, SecretKey};
use crate::crypto::receipt::ReceiptKeys;
use crate::protocol::channel::Command;
use crate::protocol::messages::ChannelId;

use super::{
    Action, Entropy, Invoice, InvoiceTerms, PaymentError, PaymentEvent, PaymentId, PaymentMessage,
    RouteHint, SaleLetter,
};

/// Where a payment stands at B.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PayeeStatus {
    /// The invoice was sent to the LSP.
    Invoiced,
    /// The LSP's PTLC arrived and B fulfilled it.
    Fulfilled {
        /// The S–B channel.
        channel_id: ChannelId,
        /// The PTLC.
        ptlc_id: u64,
    },
    /// The fulfilment is part of a complete channel state: B is paid.
    Paid,
    /// The LSP refused the invoice.
    Refused {
        /// Its reason code.
        reason: String,
    },
}

impl PayeeStatus {
    /// A short name (the `status` tag of its serde form).
    pub fn name(&self) -> &'static str {
        match self {
            PayeeStatus::Invoiced => "invoiced",
            PayeeStatus::Fulfilled { .. } => "fulfilled",
            PayeeStatus::Paid => "paid",
            PayeeStatus::Refused { .. } => "refused",
        }
    }
}

/// One payment at B: the durable record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayeePayment {
    /// The letter.
    pub letter: SaleLetter,
    /// B's invoice.
    pub invoice: Invoice,
    /// Where it stands.
    pub status: PayeeStatus,
    /// Accepted at the counter (see [`PayeeInput::Letter`]): its slot is reserved while it
    /// is invoiced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reserved: bool,
}

/// An input to [`Payee::handle`].
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum PayeeInput {
    /// A letter from the mailbox, already decrypted.
    Letter {
        /// Its bytes.
        bytes: Vec<u8>,
        /// The current height.
        height: u32,
        /// The last hop to name in the invoice when B has no channel with the LSP.
        route_hint: Option<RouteHint>,
        /// A letter the merchant's device accepted at the counter, checked offline
        /// (`asyncpay pos accept`): its receipt slot is reserved for it while it waits, so
        /// that no other letter naming the slot can be paid first and void it.
        reserved: bool,
    },
    /// A payment message from a peer.
    Message {
        /// The authenticated sender.
        from: PublicKey,
        /// The message.
        message: PaymentMessage,
    },
    /// A PTLC to B became part of a complete state on a channel with an LSP.
    PtlcOffered {
        /// The channel.
        channel_id: ChannelId,
        /// The peer on that channel.
        peer: PublicKey,
        /// The PTLC.
        ptlc_id: u64,
        /// Its point.
        point: AdaptorPoint,
        /// Its amount.
        amount_sat: u64,
    },
    /// B's fulfilment of a PTLC is part of a complete state.
    PtlcSettled {
        /// The PTLC's point.
        point: AdaptorPoint,
    },
    /// An LSP connected: B resends open invoices.
    PeerConnected {
        /// The peer.
        peer: PublicKey,
    },
    /// Fresh randomness for signatures.
    Entropy(Entropy),
}

/// What B's driver must do.
pub type PayeeAction = Action<(PaymentId, PayeePayment)>;

/// B's payment role.
pub struct Payee {
    key: SecretKey,
    receipts: ReceiptKeys,
    receipt_epoch: u32,
    entropy: [u8; 32],
    payments: BTreeMap<PaymentId, PayeePayment>,
}

impl core::fmt::Debug for Payee {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Payee")
            .field("node", &self.key.public_key())
            .field("payments", &self.payments.len())
            .finish_non_exhaustive()
    }
}

impl PayeePayment {
    /// Whether this payment's receipt slot is taken: its signature left in a fulfilment
    /// (fulfilled, paid), or the letter, accepted at the counter, waits to be paid.
    pub fn holds_slot(&self) -> bool {
        match self.status {
            PayeeStatus::Fulfilled { .. } | PayeeStatus::Paid => true,
            PayeeStatus::Invoiced => self.reserved,
            PayeeStatus::Refused { .. } => false,
        }
    }
}

impl Payee {
    /// A payee with its node key, its receipt keys and card epoch, and persisted records.
    ///
    /// The records are also the durable list of spent receipt slots: a letter is recorded
    /// before anything derived from its slot's signature leaves the payee.
    pub fn restore(
        key: SecretKey,
        receipts: ReceiptKeys,
        receipt_epoch: u32,
        records: impl IntoIterator<Item = (PaymentId, PayeePayment)>,
    ) -> Self {
        Payee {
            key,
            receipts,
            receipt_epoch,
            entropy: [0; 32],
            payments: records.into_iter().collect(),
        }
    }

    /// Takes a new card epoch: letters naming slots of another epoch are refused from now on.
    pub fn set_receipt_epoch(&mut self, epoch: u32) {
        self.receipt_epoch = epoch;
    }

    /// One payment.
    pub fn payment(&self, id: &PaymentId) -> Option<&PayeePayment> {
        self.payments.get(id)
    }

    /// Every payment.
    pub fn payments(&self) -> impl Iterator<Item = (&PaymentId, &PayeePayment)> {
        self.payments.iter()
    }

    /// Handles one input. On error nothing changed.
    pub fn handle(&mut self, input: PayeeInput) -> Result<Vec<PayeeAction>, PaymentError> {
        match input {
            PayeeInput::Letter {
                bytes,
                height,
                route_hint,
                reserved,
            } => self.on_letter(&bytes, height, route_hint, reserved),
            PayeeInput::Message { from, message } => self.on_message(from, message),
            PayeeInput::PtlcOffered {
                channel_id,
                peer,
                ptlc_id,
                point,
                amount_sat,
            } => self.on_ptlc(channel_id, peer, ptlc_id, point, amount_sat),
            PayeeInput::PtlcSettled { point } => {
                let Some((id, record)) = self
                    .payments
                    .iter_mut()
                    .find(|(_, p)| p.invoice.point == point)
                else {
                    return Ok(vec![]);
                };
                if !matches!(record.status, PayeeStatus::Fulfilled { .. }) {
                    return Ok(vec![]);
                }
                record.status = PayeeStatus::Paid;
                let id = *id;
                Ok(vec![
                    Action::Persist((id, record.clone())),
                    Action::Event(PaymentEvent::Completed { payment_id: id }),
                ])
            }
            // Invoices of an earlier card epoch are not sent again: their PTLCs would be
            // failed (see `on_ptlc`).
            PayeeInput::PeerConnected { peer } => Ok(self
                .payments
                .values()
                .filter(|p| p.status == PayeeStatus::Invoiced && p.invoice.lsp == peer)
                .filter(|p| p.letter.receipt_epoch == self.receipt_epoch)
                .map(|p| Action::Send {
                    to: peer,
                    message: PaymentMessage::Invoice(p.invoice.clone()),
                })
                .collect()),
            PayeeInput::Entropy(e) => {
                self.entropy = e.0;
                Ok(vec![])
            }
        }
    }

    fn on_letter(
        &mut self,
        bytes: &[u8],
        height: u32,
        route_hint: Option<RouteHint>,
        reserved: bool,
    ) -> Result<Vec<PayeeAction>, PaymentError> {
        let letter = SaleLetter::decode(bytes)?;
        let id = letter.offer.payment_id;
        if !self.vet(&letter, height)? {
            // The same letter, from the mailbox first and now accepted at the counter: its
            // slot is reserved from now on.
            let record = self.payments.get_mut(&id).expect("vet found it");
            if reserved && !record.reserved && record.status == PayeeStatus::Invoiced {
                record.reserved = true;
                return Ok(vec![Action::Persist((id, record.clone()))]);
            }
            return Ok(vec![]);
        }
        let aux = crate::crypto::tagged_hash("asyncpay/payment/v1/aux", &[&self.entropy, &id.0]);
        self.entropy = aux;
        let invoice = InvoiceTerms::for_offer(&letter.offer, self.key.public_key(), route_hint)
            .sign(&self.key, &aux);
        let record = PayeePayment {
            letter,
            invoice: invoice.clone(),
            status: PayeeStatus::Invoiced,
            reserved,
        };
        self.payments.insert(id, record.clone());
        Ok(vec![
            Action::Persist((id, record.clone())),
            Action::Send {
                to: invoice.lsp,
                message: PaymentMessage::Invoice(invoice),
            },
            Action::Event(PaymentEvent::Invoiced {
                payment_id: id,
                amount_sat: record.letter.offer.amount_sat,
            }),
        ])
    }

    /// Every check B makes of a letter before it invoices, changing nothing: the letter
    /// names a slot of B's card epoch that no other payment spent, S signed its offer to B,
    /// what it sells completes (with B's receipt signature) to the discrete log of the
    /// offer's point, and the offer has not expired at `height`. `Ok(false)` for a letter B
    /// holds already (the same letter twice is one payment); another letter with the id of
    /// one B holds is refused. What `asyncpay pos accept` checks offline.
    pub fn vet(&self, letter: &SaleLetter, height: u32) -> Result<bool, PaymentError> {
        let id = letter.offer.payment_id;
        // A slot's signature leaves B once only (in the scalar of one fulfilment): a letter
        // naming a slot already spent, or a slot of another card epoch, is refused. One
        // naming a slot that another letter only invoiced is accepted: whichever is paid
        // first spends it, and the other's PTLC is failed (`on_ptlc`). An invoice spends
        // nothing, so letters under offers of an LSP that never pays cannot use up B's slots.
        if let Some(refusal) = self.slot_refusal(letter, id) {
            return Err(refusal);
        }
        // Completing the pre-signature computes the slot's signature on this letter's
        // message, but nothing derived from it leaves unless the letter is recorded.
        letter.check(&self.key, &self.receipts)?;
        if let Some(have) = self.payments.get(&id) {
            return if &have.letter == letter {
                Ok(false)
            } else {
                Err(PaymentError::DuplicatePayment(id))
            };
        }
        if height > letter.offer.expiry {
            return Err(PaymentError::Expired {
                expiry: letter.offer.expiry,
                height,
            });
        }
        Ok(true)
    }

    /// Why the scalar of payment `id`'s `letter` must never leave B, if it must not: the
    /// letter names a slot of another card epoch than B's (B was restored since: its record
    /// of the slots it spent then may be gone), or a slot whose signature another payment's
    /// fulfilment carried already.
    fn slot_refusal(&self, letter: &SaleLetter, id: PaymentId) -> Option<PaymentError> {
        if letter.receipt_epoch != self.receipt_epoch {
            return Some(PaymentError::ReceiptEpoch {
                epoch: letter.receipt_epoch,
                current: self.receipt_epoch,
            });
        }
        // A letter accepted at the counter holds its slot while it waits to be paid: the
        // merchant counts on it, so no other letter on the slot may be paid first.
        self.payments
            .iter()
            .find(|(other, p)| {
                **other != id
                    && p.letter.receipt_epoch == letter.receipt_epoch
                    && p.letter.receipt_slot == letter.receipt_slot
                    && p.holds_slot()
            })
            .map(|(used_by, _)| PaymentError::ReceiptSlotUsed {
                epoch: letter.receipt_epoch,
                slot: letter.receipt_slot,
                used_by: *used_by,
            })
    }

    /// The receipt slots of `epoch` that a payment holds (a fulfilment spent it, or a
    /// letter accepted at the counter waits with it): a new card leaves them out.
    pub fn spent_slots(&self, epoch: u32) -> std::collections::BTreeSet<u32> {
        self.payments
            .values()
            .filter(|p| p.letter.receipt_epoch == epoch)
            .filter(|p| p.holds_slot())
            .map(|p| p.letter.receipt_slot)
            .collect()
    }

    fn on_message(
        &mut self,
        from: PublicKey,
        message: PaymentMessage,
    ) -> Result<Vec<PayeeAction>, PaymentError> {
        let PaymentMessage::InvoiceRefused { payment_id, reason } = message else {
            return Err(PaymentError::Unexpected {
                what: message.name(),
                status: "any (payee)",
            });
        };
        let record = self
            .payments
            .get_mut(&payment_id)
            .ok_or(PaymentError::UnknownPayment(payment_id))?;
        if from != record.invoice.lsp {
            return Err(PaymentError::WrongPeer {
                what: "invoice refused",
                from: Box::new(from),
                role: "lsp",
            });
        }
        if record.status != PayeeStatus::Invoiced {
            return Ok(vec![]);
        }
        record.status = PayeeStatus::Refused {
            reason: reason.clone(),
        };
        Ok(vec![
            Action::Persist((payment_id, record.clone())),
            Action::Event(PaymentEvent::Refused { payment_id, reason }),
        ])
    }

    fn on_ptlc(
        &mut self,
        channel_id: ChannelId,
        peer: PublicKey,
        ptlc_id: u64,
        point: AdaptorPoint,
        amount_sat: u64,
    ) -> Result<Vec<PayeeAction>, PaymentError> {
        let (id, record) = self
            .payments
            .iter_mut()
            .find(|(_, p)| p.invoice.point == point)
            .ok_or(PaymentError::Mismatch {
                field: "no invoice for this point",
            })?;
        let id = *id;
        let router = record.invoice.route_hint.map(|h| h.router);
        if peer != record.invoice.lsp && Some(peer) != router {
            return Err(PaymentError::WrongPeer {
                what: "ptlc",
                from: Box::new(peer),
                role: "lsp or its router",
            });
        }
        if amount_sat < record.invoice.amount_sat {
            return Err(PaymentError::Amount("ptlc pays less than the invoice"));
        }
        match record.status {
            PayeeStatus::Invoiced | PayeeStatus::Refused { .. } => {}
            ref other => {
                return Err(PaymentError::Unexpected {
                    what: "ptlc",
                    status: other.name(),
                })
            }
        }
        let letter = record.letter.clone();
        // A scalar that must never leave B (`slot_refusal`): the PTLC is failed back.
        if let Some(reason) = self.slot_refusal(&letter, id) {
            let record = self.payments.get_mut(&id).expect("found above");
            record.status = PayeeStatus::Refused {
                reason: reason.code().to_owned(),
            };
            return Ok(vec![
                Action::Persist((id, record.clone())),
                Action::Channel {
                    channel_id,
                    command: Command::Fail { id: ptlc_id },
                },
                Action::Event(PaymentEvent::Refused {
                    payment_id: id,
                    reason: reason.to_string(),
                }),
            ]);
        }
        let secret = letter.check(&self.key, &self.receipts)?;
        let record = self.payments.get_mut(&id).expect("found above");
        record.status = PayeeStatus::Fulfilled {
            channel_id,
            ptlc_id,
        };
        Ok(vec![
            Action::Persist((id, record.clone())),
            Action::Channel {
                channel_id,
                command: Command::Fulfil {
                    id: ptlc_id,
                    secret,
                },
            },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::adaptor::{AdaptorSecret, EncryptedSignature};
    use crate::crypto::receipt::receipt_point;
    use crate::protocol::payment::{receipt_message, ForSale, OfferTerms, PAYMENT_VERSION};
    use bitcoin::secp256k1;

    const AMOUNT: u64 = 10_000;

    /// A letter for receipt slot `slot` under an offer by `lsp`, whose pre-signature B
    /// completes (T = a·G + Z, ŝ = a).
    fn letter(lsp: &SecretKey, payee: &PublicKey, receipts: &ReceiptKeys, id: u8) -> SaleLetter {
        let payment_id = PaymentId([id; 32]);
        let slot = receipts.slot(0, 0);
        let m = receipt_message(&payment_id, AMOUNT, payee, 0, 0, "");
        let z = secp256k1::PublicKey::from(receipt_point(&slot, &m).unwrap());
        let a = [id; 32];
        let a_g = secp256k1::PublicKey::from(AdaptorSecret::from_bytes(a).unwrap().adaptor_point());
        let offer = OfferTerms {
            payment_id,
            lsp: lsp.public_key(),
            channel_id: ChannelId([1; 32]),
            state: 1,
            amount_sat: AMOUNT,
            fee_sat: 0,
            point: AdaptorPoint::from(a_g.combine(&z).unwrap()),
            payee: *payee,
            expiry: 1_000,
            held: None,
            irrevocable: false,
        }
        .sign(lsp, &[0; 32]);
        let mut pre = [0u8; 65];
        pre[..32].copy_from_slice(&lsp.public_key().to_xonly_bytes());
        pre[32..64].copy_from_slice(&a);
        SaleLetter {
            version: PAYMENT_VERSION,
            offer,
            sold: ForSale::Presignature(EncryptedSignature::from_bytes(&pre).unwrap()),
            receipt_epoch: 0,
            receipt_slot: 0,
            payer: lsp.public_key(),
            note: String::new(),
        }
    }

    /// Whether `actions` fulfil PTLC `id`, and whether they fail it.
    fn fulfils_and_fails(actions: &[PayeeAction], id: u64) -> (bool, bool) {
        let commands = actions.iter().filter_map(|a| match a {
            Action::Channel { command, .. } => Some(command),
            _ => None,
        });
        let (mut fulfils, mut fails) = (false, false);
        for command in commands {
            fulfils |= matches!(command, Command::Fulfil { id: i, .. } if *i == id);
            fails |= matches!(command, Command::Fail { id: i } if *i == id);
        }
        (fulfils, fails)
    }

    /// Two letters naming one slot are both invoiced; the first PTLC fulfilled spends the
    /// slot, the other's PTLC is failed back (its scalar would carry a second signature with
    /// the slot's nonce), and a third letter naming the slot is refused.
    #[test]
    fn a_slot_is_spent_by_the_first_fulfilment_only() {
        let key = SecretKey::from_bytes([2; 32]).unwrap();
        let payee = key.public_key();
        let lsp = SecretKey::from_bytes([3; 32]).unwrap();
        let mut b = Payee::restore(key, ReceiptKeys::from_seed(&[4; 32]), 0, vec![]);
        let receipts = ReceiptKeys::from_seed(&[4; 32]);
        let (one, two) = (
            letter(&lsp, &payee, &receipts, 1),
            letter(&lsp, &payee, &receipts, 2),
        );
        for l in [&one, &two] {
            let bytes = l.encode();
            b.handle(PayeeInput::Letter {
                bytes,
                height: 10,
                route_hint: None,
                reserved: false,
            })
            .unwrap();
        }
        let ptlc = |letter: &SaleLetter, id: u64| PayeeInput::PtlcOffered {
            channel_id: ChannelId([9; 32]),
            peer: lsp.public_key(),
            ptlc_id: id,
            point: letter.offer.point,
            amount_sat: AMOUNT,
        };
        let first = b.handle(ptlc(&two, 7)).unwrap();
        assert_eq!(fulfils_and_fails(&first, 7), (true, false));
        let second = b.handle(ptlc(&one, 8)).unwrap();
        assert_eq!(fulfils_and_fails(&second, 8), (false, true));
        assert_eq!(
            b.payment(&one.offer.payment_id).unwrap().status,
            PayeeStatus::Refused {
                reason: "receipt_slot_used".into()
            }
        );
        let third = letter(&lsp, &payee, &receipts, 3);
        let err = b
            .handle(PayeeInput::Letter {
                bytes: third.encode(),
                height: 10,
                route_hint: None,
                reserved: false,
            })
            .unwrap_err();
        assert_eq!(err.code(), "receipt_slot_used");
        assert_eq!(b.spent_slots(0).into_iter().collect::<Vec<_>>(), vec![0]);
    }

    /// A letter invoiced before the node took a new card epoch (it was restored: its record
    /// of spent slots may be older than its last fulfilment) is never fulfilled: its PTLC
    /// is failed back, and its invoice is not sent again.
    #[test]
    fn a_letter_of_an_earlier_epoch_is_never_fulfilled() {
        let key = SecretKey::from_bytes([2; 32]).unwrap();
        let payee = key.public_key();
        let lsp = SecretKey::from_bytes([3; 32]).unwrap();
        let receipts = ReceiptKeys::from_seed(&[4; 32]);
        let mut b = Payee::restore(key, ReceiptKeys::from_seed(&[4; 32]), 0, vec![]);
        let one = letter(&lsp, &payee, &receipts, 1);
        b.handle(PayeeInput::Letter {
            bytes: one.encode(),
            height: 10,
            route_hint: None,
            reserved: false,
        })
        .unwrap();
        b.set_receipt_epoch(5);
        let resent = b
            .handle(PayeeInput::PeerConnected {
                peer: lsp.public_key(),
            })
            .unwrap();
        assert!(resent.is_empty(), "{resent:?}");
        let actions = b
            .handle(PayeeInput::PtlcOffered {
                channel_id: ChannelId([9; 32]),
                peer: lsp.public_key(),
                ptlc_id: 3,
                point: one.offer.point,
                amount_sat: AMOUNT,
            })
            .unwrap();
        assert_eq!(fulfils_and_fails(&actions, 3), (false, true));
        assert_eq!(
            b.payment(&one.offer.payment_id).unwrap().status,
            PayeeStatus::Refused {
                reason: "receipt_epoch".into()
            }
        );
    }
}
