//! What [`NodeHandle::list_channels`](super::NodeHandle::list_channels) and
//! [`NodeHandle::list_payments`](super::NodeHandle::list_payments) (`ctl list-channels`,
//! `ctl list-payments`) answer: one typed entry per channel and per payment.
//!
//! A payment's entry is built from its view in [`crate::node::views`], never from the stored
//! record: no withheld signature, bought signature, PTLC secret or scalar is in it, whatever
//! the payment's state. A channel's entry holds balances, PTLCs (amount, point, expiry) and
//! the close under way, never a signature or a nonce.

use bitcoin::{OutPoint, ScriptBuf, Txid};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::crypto::adaptor::AdaptorPoint;
use crate::crypto::keys::PublicKey;
use crate::node::core::{ChannelEntry, NodeCore, Role};
use crate::node::views::{self, PaymentView};
use crate::protocol::channel::Phase;
use crate::protocol::messages::ChannelId;
use crate::protocol::payment::{PaymentId, ReversePayment, ReverseStatus};
use crate::protocol::transactions::payout_script;
use crate::tx::Party;

use super::events::hex_channel_id;

/// One channel of the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelDetails {
    /// The channel.
    #[serde(with = "hex_channel_id")]
    pub channel_id: ChannelId,
    /// The peer it is with.
    pub peer: PublicKey,
    /// Whether the peer is connected now.
    pub connected: bool,
    /// Our side: `A` if we opened it (and funded it), `S` if we accepted it.
    pub side: Party,
    /// Where it stands (`Funded` when it can update, `Closing`, `Closed`, ...).
    pub phase: Phase,
    /// Its capacity, once the terms are known.
    pub capacity_sat: Option<u64>,
    /// The funding output, once built.
    pub funding_outpoint: Option<OutPoint>,
    /// Whether the funding transaction confirmed.
    pub funding_confirmed: bool,
    /// The number of the latest complete state (0 once opened).
    pub state: Option<u64>,
    /// Our balance in the latest complete state (0 before state 0).
    pub to_self_sat: u64,
    /// The peer's balance in the latest complete state.
    pub to_peer_sat: u64,
    /// The PTLCs of the latest complete state, in output order.
    pub pending_ptlcs: Vec<PtlcDetails>,
    /// The number of the state under way (proposed, countersigned or withheld), if any.
    pub update_under_way: Option<u64>,
    /// The cooperative close under way or done, if any.
    pub close: Option<CloseDetails>,
    /// Where our balance is paid when the channel closes (key-path P2TR of our payout key).
    pub payout_script: Option<ScriptBuf>,
    /// Where the peer's balance is paid.
    pub peer_payout_script: Option<ScriptBuf>,
}

/// A PTLC of a channel's latest complete state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtlcDetails {
    /// Its number in the channel.
    pub id: u64,
    /// Whether we offered it (and take it back after its expiry), rather than the peer.
    pub offered_by_us: bool,
    /// Its amount.
    pub amount_sat: u64,
    /// The point whose discrete log claims it (public).
    pub point: AdaptorPoint,
    /// The height after which its offerer may take it back on chain.
    pub expiry: u32,
}

/// A channel's cooperative close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseDetails {
    /// The close transaction (known from the proposal on: the signature is not part of it).
    pub txid: Txid,
    /// Its fee, paid from the proposer's balance.
    pub fee_sat: u64,
    /// Whether we proposed it (and pay its fee).
    pub proposed_by_us: bool,
    /// Whether both signed it (then both parties publish it).
    pub signed: bool,
}

/// One payment of the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentDetails {
    /// The payment.
    pub payment_id: PaymentId,
    /// The part this node plays in it.
    pub role: Role,
    /// Whether it is a payment of the reverse variant (the payee asked, the payer buys the
    /// LSP's signature).
    pub reverse: bool,
    /// Its status name, as `ctl info` shows it (`posted`, `completed`, `sold`, `paid`, ...).
    pub status: String,
    /// What the payee receives.
    pub amount_sat: u64,
    /// What the LSP keeps (a router: what it keeps of the forward), once known.
    pub fee_sat: Option<u64>,
    /// Everything else `ctl info` shows of it: the record's view ([`crate::node::views`]),
    /// without any withheld or bought signature.
    pub record: Value,
}

/// The node's channels, as [`ChannelDetails`]; `connected` tells whether a peer is
/// connected.
pub fn list_channels(
    core: &NodeCore,
    connected: impl Fn(&PublicKey) -> bool,
) -> Vec<ChannelDetails> {
    core.channels()
        .iter()
        .map(|(id, entry)| channel_details(*id, entry, connected(&entry.peer)))
        .collect()
}

fn channel_details(channel_id: ChannelId, entry: &ChannelEntry, connected: bool) -> ChannelDetails {
    let snap = entry.channel.snapshot();
    let side = snap.side;
    let peer_side = match side {
        Party::A => Party::S,
        Party::S => Party::A,
    };
    let latest = entry.channel.latest();
    let (to_self_sat, to_peer_sat) =
        latest.map_or((0, 0), |b| (b.balance(side), b.balance(peer_side)));
    let pending_ptlcs = latest
        .map(|b| {
            b.ptlcs
                .iter()
                .map(|p| PtlcDetails {
                    id: p.id,
                    offered_by_us: p.offerer == side,
                    amount_sat: p.amount_sat,
                    point: p.point,
                    expiry: p.expiry.height(),
                })
                .collect()
        })
        .unwrap_or_default();
    let payout = |party: Party| {
        snap.params.as_ref().map(|p| {
            payout_script(match party {
                Party::A => &p.payout_a,
                Party::S => &p.payout_s,
            })
        })
    };
    ChannelDetails {
        channel_id,
        peer: entry.peer,
        connected,
        side,
        phase: entry.channel.phase(),
        capacity_sat: Some(
            snap.params
                .as_ref()
                .map_or(snap.terms.capacity_sat, |p| p.capacity_sat),
        ),
        funding_outpoint: snap.funding_outpoint,
        funding_confirmed: snap.funding_confirmed,
        state: latest.map(|b| b.number),
        to_self_sat,
        to_peer_sat,
        pending_ptlcs,
        update_under_way: snap.pending().map(|p| p.body.number),
        close: snap.closing().map(|c| CloseDetails {
            txid: c.txid,
            fee_sat: c.fee_sat,
            proposed_by_us: c.proposer == side,
            signed: c.signature().is_some(),
        }),
        payout_script: payout(side),
        peer_payout_script: payout(peer_side),
    }
}

/// The node's payments, as [`PaymentDetails`]: those of its role, then those of the
/// reverse variant.
pub fn list_payments(core: &NodeCore) -> Vec<PaymentDetails> {
    let mut out = Vec::new();
    let role = core.role();
    let entry = |id: &PaymentId, view: PaymentView<Value>, amount_sat, fee_sat| PaymentDetails {
        payment_id: *id,
        role,
        reverse: false,
        status: view.status.to_owned(),
        amount_sat,
        fee_sat,
        record: view.record,
    };
    if let Some(payer) = core.payer() {
        for (id, p) in payer.payments() {
            let view = as_json(views::payer_views(std::iter::once((id, p))));
            out.extend(view.map(|v| entry(id, v, p.amount_sat, Some(p.fee_sat))));
        }
    }
    if let Some(lsp) = core.lsp() {
        for (id, p) in lsp.payments() {
            let view = as_json(views::lsp_views(std::iter::once((id, p))));
            let (amount, fee) = (p.offer.amount_sat, p.offer.fee_sat);
            out.extend(view.map(|v| entry(id, v, amount, Some(fee))));
        }
    }
    if let Some(payee) = core.payee() {
        for (id, p) in payee.payments() {
            let view = as_json(views::payee_views(std::iter::once((id, p))));
            let (amount, fee) = (p.letter.offer.amount_sat, p.letter.offer.fee_sat);
            out.extend(view.map(|v| entry(id, v, amount, Some(fee))));
        }
    }
    if role == Role::Router {
        // A router's records hold forward terms and channel positions, no signature (as in
        // `views::payments`).
        for (id, record) in core.payments_json() {
            let forward = &record["forward"];
            let amount = forward["amount_out_sat"].as_u64().unwrap_or(0);
            let fee = forward["amount_in_sat"]
                .as_u64()
                .map(|inbound| inbound.saturating_sub(amount));
            out.push(PaymentDetails {
                payment_id: id,
                role,
                reverse: false,
                status: record["status"]["status"]
                    .as_str()
                    .unwrap_or("unknown")
                    .to_owned(),
                amount_sat: amount,
                fee_sat: fee,
                record,
            });
        }
    }
    let me = core.public_key();
    for (id, p) in core.reverse_payments() {
        let Some(view) = as_json(views::reverse_views(std::iter::once((id, p)))) else {
            continue;
        };
        out.push(PaymentDetails {
            payment_id: *id,
            role: reverse_role(p, &me),
            reverse: true,
            status: view.status.to_owned(),
            amount_sat: p.amount_sat,
            fee_sat: reverse_fee(&p.status),
            record: view.record,
        });
    }
    out
}

/// The one view of a one-payment list, its record as JSON.
fn as_json<R: Serialize>(views: Vec<PaymentView<R>>) -> Option<PaymentView<Value>> {
    let view = views.into_iter().next()?;
    Some(PaymentView {
        payment_id: view.payment_id,
        status: view.status,
        // A view is plain data: it always serialises.
        record: serde_json::to_value(&view.record).unwrap_or(Value::Null),
    })
}

fn reverse_role(p: &ReversePayment, me: &PublicKey) -> Role {
    if p.payee == *me {
        Role::Payee
    } else if p.lsp == *me {
        Role::Lsp
    } else {
        Role::Payer
    }
}

fn reverse_fee(status: &ReverseStatus) -> Option<u64> {
    match status {
        ReverseStatus::Offered { offer }
        | ReverseStatus::Buying { offer, .. }
        | ReverseStatus::Bought { offer, .. } => Some(offer.fee_sat),
        ReverseStatus::Requested | ReverseStatus::Paid => None,
    }
}
