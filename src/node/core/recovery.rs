//! After a restart: what each role had under way is picked up again from the stored
//! channels and payments.

use super::*;

impl NodeCore {
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
    pub(super) fn resume_reverse(&mut self, out: &mut Handled) -> Result<(), NodeError> {
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
                    } else {
                        // The letter to the payer may not have left before the stop: it is
                        // posted again (the payer ignores an offer it already has).
                        inputs.push(ReverseInput::Offer {
                            from: p.lsp,
                            offer: offer.clone(),
                            pending: self.update_proof(&p.lsp, &offer.channel_id),
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
    pub(super) fn redo(
        &mut self,
        inputs: Vec<RoleIn>,
        commands: Vec<(ChannelId, Command)>,
        out: &mut Handled,
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
    pub(super) fn resume_forwards(&mut self, out: &mut Handled) -> Result<(), NodeError> {
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
    pub(super) fn resume_settled(&mut self, out: &mut Handled) -> Result<(), NodeError> {
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

    pub(super) fn resume_purchases(&mut self, out: &mut Handled) -> Result<(), NodeError> {
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
    pub(super) fn resume_proposals(
        &mut self,
        peer: PublicKey,
        out: &mut Handled,
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
}
