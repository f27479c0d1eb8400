//! From the channels to the roles: channel actions carried out, channel events handed to
//! the role that needs them, matched exhaustively.

use super::*;

impl NodeCore {
    pub(super) fn channel_input(
        &mut self,
        id: ChannelId,
        input: Input,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        let entry = self
            .channels
            .get_mut(&id)
            .ok_or(NodeError::UnknownChannel(id))?;
        let actions = entry.channel.handle(input)?;
        self.route_channel(id, actions, out)
    }

    pub(super) fn route_channel(
        &mut self,
        id: ChannelId,
        actions: Vec<channel::Action>,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        let peer = self.channels[&id].peer;
        let side = self.channels[&id].channel.snapshot().side;
        for action in actions {
            match action {
                channel::Action::Persist(snapshot) => out.persist_channel(peer, snapshot),
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

    pub(super) fn on_channel_event(
        &mut self,
        id: ChannelId,
        peer: PublicKey,
        side: Party,
        event: &Event,
        out: &mut Handled,
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
    pub(super) fn scalar_revealed(
        &mut self,
        secret: AdaptorSecret,
        out: &mut Handled,
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
}
