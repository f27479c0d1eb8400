//! The LSP's glue: the channel events an LSP needs, and what it picks up after a restart.
//!
//! An LSP hears of the scalar that pays for a sale (a fulfilment on the payee's channel, or
//! a claim on chain), of its PTLCs that failed, of the sale window of a payer channel being
//! closed, and, in the reverse variant, of its own withheld signature and the payer's PTLC
//! that buys it.
use super::channels::Seen;
use super::*;
use crate::protocol::channel::SALE_WINDOW_MARGIN;

impl NodeCore {
    pub(super) fn lsp_channel_event(
        &mut self,
        seen: Seen,
        event: &Event,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        let id = seen.id;
        match event {
            // The reverse variant: S withholds its own signature on B's state.
            Event::SignatureWithheld {
                state, price_point, ..
            } => {
                let height = self.height;
                self.reverse_input(
                    ReverseInput::Withheld {
                        channel_id: id,
                        state: *state,
                        point: *price_point,
                        height,
                    },
                    out,
                )
            }
            // An LSP's transfers (reverse variant) withhold a plain signature: it is sold to a
            // payer, not encrypted to a receipt.
            Event::SignatureEncrypted { .. } | Event::PreSignatureCompleted { .. } => {
                Err(NodeError::WrongRole {
                    what: "signature encrypted",
                    role: Role::Payer,
                })
            }
            Event::StateCompleted {
                change, fulfilled, ..
            } => match self.completed(&seen, change) {
                // Only the reverse variant pays S a PTLC: S may be selling its own withheld
                // signature.
                (Some(p), _) => {
                    let own = self.own_withheld(p.point);
                    self.reverse_input(
                        ReverseInput::PtlcOffered {
                            channel_id: id,
                            from: seen.peer,
                            ptlc_id: p.id,
                            point: p.point,
                            amount_sat: p.amount_sat,
                            own,
                        },
                        out,
                    )
                }
                (None, Some(secret)) => self.lsp_scalar_revealed(secret, *fulfilled, out),
                (None, None) => Ok(()),
            },
            // A PTLC we offered was claimed on chain: the secret that pays for the sale.
            Event::PtlcSecretLearned { secret, .. } => match AdaptorSecret::from_bytes(secret.0) {
                Ok(secret) => self.lsp_scalar_revealed(secret, None, out),
                Err(_) => Ok(()),
            },
            // A PTLC we offered came back: the role may offer again or give up.
            Event::PtlcFailed { point, offerer, .. } if *offerer == seen.side => {
                self.role_input(RoleIn::Lsp(LspInput::PtlcFailed { point: *point }), out)
            }
            // A payer's PTLC came back: a held sale still offered on it is void.
            Event::PtlcFailed { point, .. } => {
                self.role_input(RoleIn::Lsp(LspInput::HeldPtlcFailed { point: *point }), out)
            }
            // A dropped PTLC that no longer applies fails, as if the peer had refused it.
            Event::ProposalAbandoned { change, .. } => match change {
                Change::AddPtlc { point, .. } => {
                    self.role_input(RoleIn::Lsp(LspInput::PtlcFailed { point: *point }), out)
                }
                Change::Transfer { .. }
                | Change::FulfilPtlc { .. }
                | Change::FailPtlc { .. }
                | Change::Revert { .. }
                | Change::Open { .. } => Ok(()),
            },
            // The sale windows come from the channels on each block (`feed_windows`); PTLCs
            // are resolved output by output, not by which state settled.
            Event::Settled { .. }
            | Event::ProposalDropped { .. }
            | Event::NonceReplaced { .. }
            | Event::Accepted { .. }
            | Event::ReadyToFund
            | Event::FundingConfirmed
            | Event::ClosingForPtlc { .. }
            // Our claim on chain confirmed: the sale was recorded when the scalar was learnt.
            | Event::PtlcClaimed { .. }
            | Event::StaleUpdateAnswered { .. }
            | Event::CloseSigned { .. }
            | Event::ClosedCooperatively { .. } => Ok(()),
        }
    }

    /// The payee's scalar for a PTLC the LSP offered: it completes the payer's state.
    /// `checked`: the PTLC's point, when the channel checked that the scalar sells it (a
    /// fulfilment off chain); otherwise (a claim on chain) the point is t·G.
    fn lsp_scalar_revealed(
        &mut self,
        secret: AdaptorSecret,
        checked: Option<AdaptorPoint>,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        let point = checked.unwrap_or_else(|| secret.adaptor_point());
        self.role_input(RoleIn::Lsp(LspInput::PtlcFulfilled { point, secret }), out)
    }

    /// After a restart: the sale windows, the sales under way, then the reverse variant's
    /// steps.
    pub(super) fn resume_lsp(&mut self, out: &mut Handled) -> Result<(), NodeError> {
        self.feed_windows(out)?;
        self.resume_sales(out)?;
        self.resume_reverse(out)
    }

    /// Sales the LSP recorded as `selling` whose next step was cut by a stop: the payee's
    /// fulfilment is stored on the payee channel but the payer's state was not completed
    /// (the fulfilment is handed to the role again), or the PTLC never reached the payee
    /// channel (it is offered now).
    pub(super) fn resume_sales(&mut self, out: &mut Handled) -> Result<(), NodeError> {
        let RoleMachine::Lsp(lsp) = &self.role else {
            return Ok(());
        };
        let mut fulfilled = vec![];
        let mut unsent = vec![];
        let mut held_due = vec![];
        for (_, p) in lsp.payments() {
            // A held sale's PTLC still on the payer's channel after the sale or the void:
            // fulfil it with the scalar bought, or fail it back (the queue of updates that
            // waited for the channel was not stored).
            if let Some(held) = p.offer.held {
                let still_there = self.channels.get(&p.offer.channel_id).is_some_and(|e| {
                    e.channel.latest().is_some_and(|b| {
                        b.ptlcs
                            .iter()
                            .any(|x| x.id == held.id && x.point == p.offer.point)
                    }) && e
                        .channel
                        .snapshot()
                        .pending()
                        .is_none_or(|x| x.body.ptlcs.iter().any(|x| x.id == held.id))
                });
                match &p.status {
                    LspStatus::Sold { scalar, .. } if still_there => {
                        if let (Ok(a), Ok(b)) = (
                            AdaptorSecret::from_bytes(scalar.0),
                            AdaptorSecret::from_bytes(scalar.0),
                        ) {
                            held_due.push((
                                p.offer.channel_id,
                                Command::ProvideSecret {
                                    id: held.id,
                                    secret: a,
                                },
                            ));
                            held_due.push((
                                p.offer.channel_id,
                                Command::Fulfil {
                                    id: held.id,
                                    secret: b,
                                },
                            ));
                        }
                    }
                    LspStatus::Cancelled { .. } if still_there => {
                        held_due.push((p.offer.channel_id, Command::Fail { id: held.id }))
                    }
                    _ => {}
                }
            }
            // An offer stored by an older version, or whose channel step a stop cut: the
            // priced state is frozen in its channel again before anything else happens.
            if p.offer.held.is_none()
                && matches!(p.status, LspStatus::Offered | LspStatus::Selling { .. })
            {
                let state = p.offer.state;
                let unpriced = self.channels.get(&p.offer.channel_id).is_some_and(|e| {
                    let snap = e.channel.snapshot();
                    snap.priced != Some(state)
                        && snap.pending().is_some_and(|x| x.body.number == state)
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
        self.redo(inputs, unsent, out)?;
        for (channel_id, command) in held_due {
            self.role_command(channel_id, command, out)?;
        }
        Ok(())
    }

    /// Tells the LSP role the sale window of every channel being closed on chain, from the
    /// channels themselves. The window changes only with the chain, so this runs at start and
    /// on each block and spend, not on the payment messages' path.
    pub(super) fn feed_windows(&mut self, out: &mut Handled) -> Result<(), NodeError> {
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

    /// The PTLC `id` that `peer` offered us on `channel_id`, an open channel with it, as a
    /// held sale's request names it: in the latest complete state and in the update under
    /// way (none being removed), with no fulfil or fail of it waiting in the queue, and at a
    /// point no sale of the reverse variant uses. Otherwise `None`, and the request is
    /// refused.
    pub(super) fn held_transfer(
        &self,
        peer: &PublicKey,
        channel_id: &ChannelId,
        id: u64,
        selling: bool,
    ) -> Option<HeldTransfer> {
        let e = self.channels.get(channel_id)?;
        if &e.peer != peer {
            return None;
        }
        let snap = e.channel.snapshot();
        let latest = &snap.complete.as_ref()?.body;
        if !self.sellable(snap, latest.number, id, selling) {
            return None;
        }
        let ptlc = latest
            .ptlcs
            .iter()
            .find(|p| p.id == id && p.offerer != snap.side)?;
        let kept = snap.pending().is_none_or(|q| {
            q.body
                .ptlcs
                .iter()
                .any(|p| p.id == id && p.point == ptlc.point)
        });
        let queued = self.queued.get(channel_id).is_some_and(|q| {
            q.iter().any(|(c, _)| {
                matches!(c, Command::Fulfil { id: x, .. } | Command::Fail { id: x } if x == &id)
            })
        });
        let reverse = self.reverse.payments().any(|(_, p)| match &p.status {
            ReverseStatus::Offered { offer }
            | ReverseStatus::Buying { offer, .. }
            | ReverseStatus::Bought { offer, .. } => offer.point == ptlc.point,
            _ => false,
        });
        if !kept || queued || reverse {
            return None;
        }
        Some(HeldTransfer {
            channel_id: *channel_id,
            state: latest.number,
            ptlc: HeldPtlc {
                id,
                expiry: ptlc.expiry.height(),
            },
            amount_sat: ptlc.amount_sat,
            point: ptlc.point,
            shared_delay: snap.params.as_ref()?.shared_delay,
        })
    }

    /// Whether S may offer on (`selling`: sell) the payer's PTLC `id` of the channel
    /// `snap`, whose latest complete state is number `latest`, as far as the channel's stage
    /// goes. Only an open channel takes a new offer. An offer made before is still sold once
    /// the channel closes on chain, while what settles is S's latest state, which holds the
    /// PTLC, so that S claims the PTLC with the scalar it buys by the claim deadline its
    /// invoice check keeps (otherwise the payer could void an irrevocable offer by
    /// publishing a state): nothing on chain yet (S publishes its latest); S's latest state
    /// on chain or settled, the PTLC's output not yet spent; or an older state on chain that
    /// S's latest still overrides in time. Not after an older state settled.
    fn sellable(&self, snap: &Snapshot, latest: u64, id: u64, selling: bool) -> bool {
        match &snap.stage {
            Stage::Open { .. } => true,
            Stage::ForceClosing { .. } | Stage::Closed { .. } if selling => {
                let closing = matches!(snap.stage, Stage::ForceClosing { .. });
                let delay = snap
                    .params
                    .as_ref()
                    .map_or(0, |p| u32::from(p.shared_delay));
                match snap.on_chain() {
                    None => closing,
                    Some(oc) if oc.state == latest => {
                        !oc.spent_ptlcs.contains(&id) && !oc.resolved_ptlcs.contains(&id)
                    }
                    Some(oc) => {
                        closing
                            && oc.confirmed_at.is_none_or(|at| {
                                self.height.saturating_add(SALE_WINDOW_MARGIN)
                                    < at.saturating_add(delay)
                            })
                    }
                }
            }
            Stage::ForceClosing { .. } | Stage::Closed { .. } | Stage::Closing { .. } => false,
        }
    }

    /// For an invoice of a held sale: the payer's PTLC, if it is still there as the request
    /// found it (see `held_transfer`).
    pub(super) fn held_of_invoice(&self, payment_id: &PaymentId) -> Option<HeldTransfer> {
        let RoleMachine::Lsp(lsp) = &self.role else {
            return None;
        };
        let p = lsp.payment(payment_id)?;
        let held = p.offer.held?;
        self.held_transfer(&p.payer, &p.offer.channel_id, held.id, true)
    }
}
