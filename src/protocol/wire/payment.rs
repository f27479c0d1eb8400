//! The records of the payment messages (listed in `docs/payment.md`).
//!
//! An offer's and an invoice's records are the same wherever they travel: an `offer` or
//! `receive_offer` message is the offer's stream, an `invoice` message the invoice's, and a
//! `receipt` holds the invoice's stream nested in one record.

use super::tlv::{truncate_utf8, Field, TlvReader, TlvWriter};
use super::types::*;
use super::WireError;
use crate::protocol::payment::{
    CancelOutcome, Forward, HeldPtlc, Invoice, InvoiceTerms, OfferTerms, PayRequest, PaymentId,
    PaymentMessage, PurchaseOffer, Receipt, RouteHint, MAX_REASON_LEN,
};

const NAMES: [(u16, &str); 12] = [
    (REQUEST, "request"),
    (OFFER, "offer"),
    (INVOICE, "invoice"),
    (INVOICE_REFUSED, "invoice_refused"),
    (CANCEL, "cancel"),
    (CANCELLED, "cancelled"),
    (RECEIPT, "receipt"),
    (RECEIPT_ACK, "receipt_ack"),
    (REQUEST_REFUSED, "request_refused"),
    (FORWARD, "forward"),
    (RECEIVE_REQUEST, "receive_request"),
    (RECEIVE_OFFER, "receive_offer"),
];

impl Field for PaymentId {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
    fn get(field: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
        Ok(PaymentId(super::tlv::exact(field, bytes)?))
    }
}

/// One byte: 0 cancelled, 1 sale in progress, 2 sold, 3 expired, 4 irrevocable.
impl Field for CancelOutcome {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(match self {
            CancelOutcome::Cancelled => 0,
            CancelOutcome::SaleInProgress => 1,
            CancelOutcome::Sold => 2,
            CancelOutcome::Expired => 3,
            CancelOutcome::Irrevocable => 4,
        });
    }
    fn get(field: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
        match u8::get(field, bytes)? {
            0 => Ok(CancelOutcome::Cancelled),
            1 => Ok(CancelOutcome::SaleInProgress),
            2 => Ok(CancelOutcome::Sold),
            3 => Ok(CancelOutcome::Expired),
            4 => Ok(CancelOutcome::Irrevocable),
            _ => Err(WireError::InvalidField {
                field,
                reason: "not a cancel outcome (0 to 4)",
            }),
        }
    }
}

pub(super) fn message_type(msg: &PaymentMessage) -> u16 {
    match msg {
        PaymentMessage::Request(_) => REQUEST,
        PaymentMessage::Offer(_) => OFFER,
        PaymentMessage::Invoice(_) => INVOICE,
        PaymentMessage::InvoiceRefused { .. } => INVOICE_REFUSED,
        PaymentMessage::Cancel { .. } => CANCEL,
        PaymentMessage::Cancelled { .. } => CANCELLED,
        PaymentMessage::Receipt(_) => RECEIPT,
        PaymentMessage::ReceiptAck { .. } => RECEIPT_ACK,
        PaymentMessage::RequestRefused { .. } => REQUEST_REFUSED,
        PaymentMessage::Forward(_) => FORWARD,
        PaymentMessage::ReceiveRequest { .. } => RECEIVE_REQUEST,
        PaymentMessage::ReceiveOffer(_) => RECEIVE_OFFER,
    }
}

pub(super) fn encode(msg: &PaymentMessage) -> Vec<u8> {
    let mut w = TlvWriter::with_prefix(&message_type(msg).to_be_bytes());
    match msg {
        PaymentMessage::Request(m) => {
            w.field(0, &m.payment_id)
                .field(2, &m.channel_id)
                .field(4, &m.state)
                .field(6, &m.amount_sat)
                .field(8, &m.fee_sat)
                .field(10, &m.payee);
            encode_held(&mut w, 12, m.held.as_ref());
            encode_flag(&mut w, 14, m.irrevocable);
        }
        PaymentMessage::Offer(offer) | PaymentMessage::ReceiveOffer(offer) => {
            encode_offer(&mut w, offer)
        }
        PaymentMessage::Invoice(invoice) => encode_invoice(&mut w, invoice),
        PaymentMessage::InvoiceRefused { payment_id, reason }
        | PaymentMessage::RequestRefused { payment_id, reason } => {
            w.field(0, payment_id)
                .record(2, truncate_utf8(reason, MAX_REASON_LEN).as_bytes());
        }
        PaymentMessage::Cancel { payment_id } | PaymentMessage::ReceiptAck { payment_id } => {
            w.field(0, payment_id);
        }
        PaymentMessage::Cancelled {
            payment_id,
            outcome,
        } => {
            w.field(0, payment_id).field(2, outcome);
        }
        PaymentMessage::Receipt(m) => {
            w.field(0, &m.payment_id)
                .nested(2, |w| encode_invoice(w, &m.invoice))
                .field(4, &m.scalar);
        }
        PaymentMessage::Forward(m) => {
            w.field(0, &m.payment_id)
                .field(2, &m.point)
                .field(4, &m.amount_in_sat)
                .field(6, &m.amount_out_sat)
                .field(8, &m.expiry_out)
                .field(10, &m.next);
        }
        PaymentMessage::ReceiveRequest {
            payment_id,
            amount_sat,
            payer,
        } => {
            w.field(0, payment_id).field(2, amount_sat).field(4, payer);
        }
    }
    w.into_bytes()
}

fn encode_offer(w: &mut TlvWriter, offer: &PurchaseOffer) {
    let t = &offer.terms;
    w.field(0, &t.payment_id)
        .field(2, &t.lsp)
        .field(4, &t.channel_id)
        .field(6, &t.state)
        .field(8, &t.amount_sat)
        .field(10, &t.fee_sat)
        .field(12, &t.point)
        .field(14, &t.payee)
        .field(16, &t.expiry)
        .field(18, &offer.signature);
    encode_held(w, 20, t.held.as_ref());
    encode_flag(w, 22, t.irrevocable);
}

/// A flag set is an empty record; a flag not set is no record.
fn encode_flag(w: &mut TlvWriter, record_type: u64, set: bool) {
    if set {
        w.record(record_type, &[]);
    }
}

fn decode_flag(
    r: &mut TlvReader<'_>,
    record_type: u64,
    field: &'static str,
) -> Result<bool, WireError> {
    match r.record(record_type)? {
        None => Ok(false),
        Some([]) => Ok(true),
        Some(_) => Err(WireError::InvalidField {
            field,
            reason: "a flag is an empty record",
        }),
    }
}

fn encode_held(w: &mut TlvWriter, record_type: u64, held: Option<&HeldPtlc>) {
    if let Some(held) = held {
        w.nested(record_type, |w| {
            w.field(0, &held.id).field(2, &held.expiry);
        });
    }
}

fn decode_held(
    r: &mut TlvReader<'_>,
    record_type: u64,
    name: &'static str,
) -> Result<Option<HeldPtlc>, WireError> {
    match r.optional_nested(record_type, name)? {
        Some(mut inner) => {
            let held = HeldPtlc {
                id: inner.required(0, "id")?,
                expiry: inner.required(2, "expiry")?,
            };
            inner.finish()?;
            Ok(Some(held))
        }
        None => Ok(None),
    }
}

fn encode_invoice(w: &mut TlvWriter, invoice: &Invoice) {
    let t = &invoice.terms;
    w.field(0, &t.payment_id)
        .field(2, &t.point)
        .field(4, &t.amount_sat)
        .field(6, &t.payee)
        .field(8, &t.lsp);
    if let Some(hint) = &t.route_hint {
        w.nested(10, |w| {
            w.field(0, &hint.router)
                .field(2, &hint.fee_sat)
                .field(4, &hint.expiry_delta);
        });
    }
    w.field(12, &invoice.signature);
}

/// The payment message of type `message_type`, or `None` if the type is not a payment
/// message's.
pub(super) fn decode(message_type: u16, body: &[u8]) -> Result<Option<PaymentMessage>, WireError> {
    let Some(&(_, name)) = NAMES.iter().find(|(t, _)| *t == message_type) else {
        return Ok(None);
    };
    let mut r = TlvReader::checked(name, body)?;
    let msg = match message_type {
        REQUEST => PaymentMessage::Request(PayRequest {
            payment_id: r.required(0, "payment_id")?,
            channel_id: r.required(2, "channel_id")?,
            state: r.required(4, "state")?,
            amount_sat: r.required(6, "amount_sat")?,
            fee_sat: r.required(8, "fee_sat")?,
            payee: r.required(10, "payee")?,
            held: decode_held(&mut r, 12, "held")?,
            irrevocable: decode_flag(&mut r, 14, "irrevocable")?,
        }),
        OFFER => PaymentMessage::Offer(decode_offer(&mut r)?),
        RECEIVE_OFFER => PaymentMessage::ReceiveOffer(decode_offer(&mut r)?),
        INVOICE => PaymentMessage::Invoice(decode_invoice(&mut r)?),
        INVOICE_REFUSED => PaymentMessage::InvoiceRefused {
            payment_id: r.required(0, "payment_id")?,
            reason: r.text(2, "reason", MAX_REASON_LEN)?,
        },
        REQUEST_REFUSED => PaymentMessage::RequestRefused {
            payment_id: r.required(0, "payment_id")?,
            reason: r.text(2, "reason", MAX_REASON_LEN)?,
        },
        CANCEL => PaymentMessage::Cancel {
            payment_id: r.required(0, "payment_id")?,
        },
        RECEIPT_ACK => PaymentMessage::ReceiptAck {
            payment_id: r.required(0, "payment_id")?,
        },
        CANCELLED => PaymentMessage::Cancelled {
            payment_id: r.required(0, "payment_id")?,
            outcome: r.required(2, "outcome")?,
        },
        RECEIPT => PaymentMessage::Receipt(Receipt {
            payment_id: r.required(0, "payment_id")?,
            invoice: {
                let mut inner = r.required_nested(2, "invoice")?;
                let invoice = decode_invoice(&mut inner)?;
                inner.finish()?;
                invoice
            },
            scalar: r.required(4, "scalar")?,
        }),
        FORWARD => PaymentMessage::Forward(Forward {
            payment_id: r.required(0, "payment_id")?,
            point: r.required(2, "point")?,
            amount_in_sat: r.required(4, "amount_in_sat")?,
            amount_out_sat: r.required(6, "amount_out_sat")?,
            expiry_out: r.required(8, "expiry_out")?,
            next: r.required(10, "next")?,
        }),
        RECEIVE_REQUEST => PaymentMessage::ReceiveRequest {
            payment_id: r.required(0, "payment_id")?,
            amount_sat: r.required(2, "amount_sat")?,
            payer: r.required(4, "payer")?,
        },
        _ => unreachable!("every type in NAMES has a decoder"),
    };
    r.finish()?;
    Ok(Some(msg))
}

fn decode_offer(r: &mut TlvReader<'_>) -> Result<PurchaseOffer, WireError> {
    let terms = OfferTerms {
        payment_id: r.required(0, "payment_id")?,
        lsp: r.required(2, "lsp")?,
        channel_id: r.required(4, "channel_id")?,
        state: r.required(6, "state")?,
        amount_sat: r.required(8, "amount_sat")?,
        fee_sat: r.required(10, "fee_sat")?,
        point: r.required(12, "point")?,
        payee: r.required(14, "payee")?,
        expiry: r.required(16, "expiry")?,
        held: None,
        irrevocable: false,
    };
    let signature = r.required(18, "signature")?;
    let held = decode_held(r, 20, "held")?;
    let irrevocable = decode_flag(r, 22, "irrevocable")?;
    Ok(PurchaseOffer {
        terms: OfferTerms {
            held,
            irrevocable,
            ..terms
        },
        signature,
    })
}

fn decode_invoice(r: &mut TlvReader<'_>) -> Result<Invoice, WireError> {
    Ok(Invoice {
        terms: InvoiceTerms {
            payment_id: r.required(0, "payment_id")?,
            point: r.required(2, "point")?,
            amount_sat: r.required(4, "amount_sat")?,
            payee: r.required(6, "payee")?,
            lsp: r.required(8, "lsp")?,
            route_hint: match r.optional_nested(10, "route_hint")? {
                Some(mut hint) => {
                    let decoded = RouteHint {
                        router: hint.required(0, "router")?,
                        fee_sat: hint.required(2, "fee_sat")?,
                        expiry_delta: hint.required(4, "expiry_delta")?,
                    };
                    hint.finish()?;
                    Some(decoded)
                }
                None => None,
            },
        },
        signature: r.required(12, "signature")?,
    })
}
