//! What `ctl info` shows of a payment: typed views built from the stored records, holding
//! only what the operator may read. A withheld signature (the payer's on its update, which
//! the payee sells), the payee's signature on a reverse update and the LSP signature a payer
//! bought are never part of a view, whatever the state; the stored records keep them, the
//! answers do not. Offers and invoices are signed statements their makers send to others,
//! so they appear whole.

use crate::crypto::adaptor::AdaptorPoint;
use crate::crypto::keys::PublicKey;
use crate::node::core::{NodeCore, Role};
use crate::protocol::messages::ChannelId;
use crate::protocol::payment::{
    CancelOutcome, Forward, Invoice, LspPayment, LspStatus, PayeePayment, PayeeStatus,
    PayerPayment, PayerStatus, PaymentId, ProofOfPayment, PurchaseOffer, ReversePayment,
    ReverseStatus, UpdateProof,
};
use serde::Serialize;

/// One payment in `ctl info`: its id, its status name and the view of its record.
#[derive(Debug, Serialize)]
pub struct PaymentView<R> {
    /// The payment.
    pub payment_id: String,
    /// The status name (`record.status.status`).
    pub status: &'static str,
    /// What may be shown of the record.
    pub record: R,
}

impl<R> PaymentView<R> {
    fn new(id: &PaymentId, status: &'static str, record: R) -> Self {
        Self {
            payment_id: id.to_string(),
            status,
            record,
        }
    }
}

/// A sale letter without the signature it carries.
#[derive(Debug, Serialize)]
pub struct LetterView<'a> {
    /// Encoding version.
    pub version: u8,
    /// S's offer.
    pub offer: &'a PurchaseOffer,
    /// A's node key.
    pub payer: PublicKey,
    /// A's note.
    pub note: &'a str,
}

impl<'a> From<&'a crate::protocol::payment::SaleLetter> for LetterView<'a> {
    fn from(letter: &'a crate::protocol::payment::SaleLetter) -> Self {
        Self {
            version: letter.version,
            offer: &letter.offer,
            payer: letter.payer,
            note: &letter.note,
        }
    }
}

/// A payer's record.
#[derive(Debug, Serialize)]
pub struct PayerView<'a> {
    /// The A–S channel.
    pub channel_id: String,
    /// S.
    pub lsp: PublicKey,
    /// B.
    pub payee: PublicKey,
    /// What B receives.
    pub amount_sat: u64,
    /// What S keeps.
    pub fee_sat: u64,
    /// The note for B.
    pub note: &'a str,
    /// Where it stands.
    pub status: PayerStatusView<'a>,
}

/// [`PayerStatus`] without the withheld signature.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PayerStatusView<'a> {
    /// Proposed on the channel.
    Proposed,
    /// Signed and withheld; S was asked for an offer.
    Requested {
        /// The withheld state.
        state: u64,
        /// The signature's price point (public: S computes it).
        point: AdaptorPoint,
    },
    /// S's offer arrived.
    Offered {
        /// The letter, less its signature.
        letter: LetterView<'a>,
    },
    /// The letter is in B's mailbox.
    Posted {
        /// The letter, less its signature.
        letter: LetterView<'a>,
    },
    /// A asked S to cancel.
    Cancelling {
        /// The letter, less its signature.
        letter: LetterView<'a>,
    },
    /// B was paid (A holds the proof); S's receipt has not come yet.
    Paid {
        /// The letter, less its pre-signature.
        letter: LetterView<'a>,
        /// The proof of payment.
        proof: &'a ProofOfPayment,
    },
    /// B was paid.
    Completed {
        /// B's signed invoice, from S's receipt (the receipt's scalar is left out).
        invoice: &'a Invoice,
        /// The proof of payment: B's receipt signature, checkable with B's contact card.
        proof: &'a ProofOfPayment,
    },
    /// Cancelled, expired or refused.
    Void {
        /// Why.
        reason: &'a str,
    },
}

impl<'a> From<&'a PayerPayment> for PayerView<'a> {
    fn from(p: &'a PayerPayment) -> Self {
        let status = match &p.status {
            PayerStatus::Proposed => PayerStatusView::Proposed,
            PayerStatus::Requested { state, point, .. } => PayerStatusView::Requested {
                state: *state,
                point: *point,
            },
            PayerStatus::Offered { letter } => PayerStatusView::Offered {
                letter: letter.into(),
            },
            PayerStatus::Posted { letter } => PayerStatusView::Posted {
                letter: letter.into(),
            },
            PayerStatus::Cancelling { letter } => PayerStatusView::Cancelling {
                letter: letter.into(),
            },
            PayerStatus::Paid { letter, proof } => PayerStatusView::Paid {
                letter: letter.into(),
                proof,
            },
            PayerStatus::Completed { receipt, proof } => PayerStatusView::Completed {
                invoice: &receipt.invoice,
                proof,
            },
            PayerStatus::Void { reason, .. } => PayerStatusView::Void { reason },
        };
        Self {
            channel_id: hex::encode(p.channel_id.0),
            lsp: p.lsp,
            payee: p.payee,
            amount_sat: p.amount_sat,
            fee_sat: p.fee_sat,
            note: &p.note,
            status,
        }
    }
}

impl PayerStatusView<'_> {
    fn name(&self) -> &'static str {
        match self {
            PayerStatusView::Proposed => "proposed",
            PayerStatusView::Requested { .. } => "requested",
            PayerStatusView::Offered { .. } => "offered",
            PayerStatusView::Posted { .. } => "posted",
            PayerStatusView::Cancelling { .. } => "cancelling",
            PayerStatusView::Paid { .. } => "paid",
            PayerStatusView::Completed { .. } => "completed",
            PayerStatusView::Void { .. } => "void",
        }
    }
}

/// A payee's record: the letter without A's signature (the scalar B sells).
#[derive(Debug, Serialize)]
pub struct PayeeView<'a> {
    /// The letter, less its signature.
    pub letter: LetterView<'a>,
    /// B's invoice.
    pub invoice: &'a Invoice,
    /// Where it stands (no secret in any state).
    pub status: &'a PayeeStatus,
}

fn payee_status_name(status: &PayeeStatus) -> &'static str {
    match status {
        PayeeStatus::Invoiced => "invoiced",
        PayeeStatus::Fulfilled { .. } => "fulfilled",
        PayeeStatus::Paid => "paid",
        PayeeStatus::Refused { .. } => "refused",
    }
}

/// An LSP's record: the offer S signed and the invoice it accepted.
#[derive(Debug, Serialize)]
pub struct LspView<'a> {
    /// S's signed offer.
    pub offer: &'a PurchaseOffer,
    /// A.
    pub payer: PublicKey,
    /// Where it stands.
    pub status: LspStatusView<'a>,
}

/// [`LspStatus`], field by field.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LspStatusView<'a> {
    /// Offered.
    Offered,
    /// Selling to the payee.
    Selling {
        /// The invoice.
        invoice: &'a Invoice,
        /// The S–B channel.
        payee_channel: String,
        /// The PTLC's expiry.
        ptlc_expiry: u32,
        /// The forward asked of a router.
        #[serde(skip_serializing_if = "Option::is_none")]
        forward: Option<&'a Forward>,
    },
    /// Sold.
    Sold {
        /// The invoice.
        invoice: &'a Invoice,
        /// The payer acknowledged the receipt.
        receipt_acked: bool,
    },
    /// Cancelled.
    Cancelled {
        /// Why.
        outcome: CancelOutcome,
    },
}

impl<'a> From<&'a LspPayment> for LspView<'a> {
    fn from(p: &'a LspPayment) -> Self {
        let status = match &p.status {
            LspStatus::Offered => LspStatusView::Offered,
            LspStatus::Selling {
                invoice,
                payee_channel,
                ptlc_expiry,
                forward,
            } => LspStatusView::Selling {
                invoice,
                payee_channel: channel_hex(payee_channel),
                ptlc_expiry: *ptlc_expiry,
                forward: forward.as_deref(),
            },
            LspStatus::Sold {
                invoice,
                receipt_acked,
                ..
            } => LspStatusView::Sold {
                invoice,
                receipt_acked: *receipt_acked,
            },
            LspStatus::Cancelled { outcome } => LspStatusView::Cancelled { outcome: *outcome },
        };
        Self {
            offer: &p.offer,
            payer: p.payer,
            status,
        }
    }
}

impl LspStatusView<'_> {
    fn name(&self) -> &'static str {
        match self {
            LspStatusView::Offered => "offered",
            LspStatusView::Selling { .. } => "selling",
            LspStatusView::Sold { .. } => "sold",
            LspStatusView::Cancelled { .. } => "cancelled",
        }
    }
}

fn channel_hex(id: &ChannelId) -> String {
    hex::encode(id.0)
}

/// A reverse payment's record, without B's signature on the update and S's bought one.
#[derive(Debug, Serialize)]
pub struct ReverseView<'a> {
    /// B.
    pub payee: PublicKey,
    /// S.
    pub lsp: PublicKey,
    /// A.
    pub payer: PublicKey,
    /// What B receives.
    pub amount_sat: u64,
    /// Where it stands.
    pub status: ReverseStatusView<'a>,
}

/// The public part of an [`UpdateProof`]: which state of which channel.
#[derive(Debug, Serialize)]
pub struct ProofView {
    /// The state number.
    pub state: u64,
    /// S–B's funding output.
    pub funding_outpoint: String,
}

impl From<&UpdateProof> for ProofView {
    fn from(p: &UpdateProof) -> Self {
        Self {
            state: p.body.number,
            funding_outpoint: p.funding_outpoint.to_string(),
        }
    }
}

/// [`ReverseStatus`] without signatures other than S's offer.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReverseStatusView<'a> {
    /// B asked S.
    Requested,
    /// The offer is out.
    Offered {
        /// S's offer.
        offer: &'a PurchaseOffer,
    },
    /// A is paying S's PTLC.
    Buying {
        /// S's offer.
        offer: &'a PurchaseOffer,
        /// Which update.
        proof: ProofView,
    },
    /// Bought.
    Bought {
        /// S's offer.
        offer: &'a PurchaseOffer,
        /// Whether this party holds S's signature (never the signature itself).
        holds_lsp_signature: bool,
        /// Which update (at A).
        #[serde(skip_serializing_if = "Option::is_none")]
        proof: Option<ProofView>,
    },
    /// B is paid.
    Paid,
}

impl<'a> From<&'a ReversePayment> for ReverseView<'a> {
    fn from(p: &'a ReversePayment) -> Self {
        let status = match &p.status {
            ReverseStatus::Requested => ReverseStatusView::Requested,
            ReverseStatus::Offered { offer } => ReverseStatusView::Offered { offer },
            ReverseStatus::Buying { offer, proof } => ReverseStatusView::Buying {
                offer,
                proof: proof.as_ref().into(),
            },
            ReverseStatus::Bought {
                offer,
                lsp_signature,
                proof,
            } => ReverseStatusView::Bought {
                offer,
                holds_lsp_signature: lsp_signature.is_some(),
                proof: proof.as_deref().map(ProofView::from),
            },
            ReverseStatus::Paid => ReverseStatusView::Paid,
        };
        Self {
            payee: p.payee,
            lsp: p.lsp,
            payer: p.payer,
            amount_sat: p.amount_sat,
            status,
        }
    }
}

impl ReverseStatusView<'_> {
    fn name(&self) -> &'static str {
        match self {
            ReverseStatusView::Requested => "requested",
            ReverseStatusView::Offered { .. } => "offered",
            ReverseStatusView::Buying { .. } => "buying",
            ReverseStatusView::Bought { .. } => "bought",
            ReverseStatusView::Paid => "paid",
        }
    }
}

/// The views of a payer's payments.
pub fn payer_views<'a>(
    it: impl Iterator<Item = (&'a PaymentId, &'a PayerPayment)>,
) -> Vec<PaymentView<PayerView<'a>>> {
    it.map(|(id, p)| {
        let view = PayerView::from(p);
        PaymentView::new(id, view.status.name(), view)
    })
    .collect()
}

/// The views of an LSP's payments.
pub fn lsp_views<'a>(
    it: impl Iterator<Item = (&'a PaymentId, &'a LspPayment)>,
) -> Vec<PaymentView<LspView<'a>>> {
    it.map(|(id, p)| {
        let view = LspView::from(p);
        PaymentView::new(id, view.status.name(), view)
    })
    .collect()
}

/// The views of a payee's payments.
pub fn payee_views<'a>(
    it: impl Iterator<Item = (&'a PaymentId, &'a PayeePayment)>,
) -> Vec<PaymentView<PayeeView<'a>>> {
    it.map(|(id, p)| {
        let view = PayeeView {
            letter: (&p.letter).into(),
            invoice: &p.invoice,
            status: &p.status,
        };
        PaymentView::new(id, payee_status_name(&p.status), view)
    })
    .collect()
}

/// The views of reverse payments.
pub fn reverse_views<'a>(
    it: impl Iterator<Item = (&'a PaymentId, &'a ReversePayment)>,
) -> Vec<PaymentView<ReverseView<'a>>> {
    it.map(|(id, p)| {
        let view = ReverseView::from(p);
        PaymentView::new(id, view.status.name(), view)
    })
    .collect()
}

/// The `payments` list of `ctl info`: the views of this node's payments, whatever its role.
pub fn payments(core: &NodeCore) -> serde_json::Value {
    let value = match core.role() {
        Role::Payer => serde_json::to_value(payer_views(
            core.payer().into_iter().flat_map(|p| p.payments()),
        )),
        Role::Lsp => {
            serde_json::to_value(lsp_views(core.lsp().into_iter().flat_map(|l| l.payments())))
        }
        Role::Payee => serde_json::to_value(payee_views(
            core.payee().into_iter().flat_map(|p| p.payments()),
        )),
        // A router's records hold forward terms and channel positions, no signature.
        Role::Router => Ok(serde_json::Value::Array(
            core.payments_json()
                .into_iter()
                .map(|(id, record)| {
                    serde_json::json!({
                        "payment_id": id.to_string(),
                        "status": record["status"]["status"],
                        "record": record,
                    })
                })
                .collect(),
        )),
    };
    value.unwrap_or(serde_json::Value::Null)
}

/// The `reverse` list of `ctl info`: the views of this node's reverse payments.
pub fn reverse(core: &NodeCore) -> serde_json::Value {
    serde_json::to_value(reverse_views(core.reverse_payments())).unwrap_or(serde_json::Value::Null)
}

/// The secrets a stored payment record (as JSON) holds, which no view may show: the
/// payer's withheld pre-signature or a held sale's share (in its `requested` status, in
/// every letter and, for the share, in the payment's `hold`), the payee's signature on a
/// reverse update, the LSP signature a payer bought and the scalar S bought (in its sale
/// record and the payer's receipt). For checks such as "this answer shows none of what the
/// store holds".
pub fn stored_secrets(record: &serde_json::Value) -> Vec<String> {
    fn walk(value: &serde_json::Value, parent: &str, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    let secret = match key.as_str() {
                        "signature" => parent == "letter" || parent == "status",
                        "presignature" => ["letter", "status", "sold"].contains(&parent),
                        "share" => parent == "sold" || parent == "hold",
                        "payee_signature" | "lsp_signature" | "scalar" => true,
                        _ => false,
                    };
                    // A pre-signature is an object whose scalar part is the secret.
                    let text = inner.as_str().or_else(|| inner["s_hat"].as_str());
                    if let (true, Some(text)) = (secret, text) {
                        out.push(text.to_owned());
                    }
                    walk(inner, key, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, parent, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(record, "", &mut out);
    out
}
