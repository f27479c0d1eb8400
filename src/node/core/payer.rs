//! The payer's glue: the channel events a payer needs, and what it picks up after a restart.
//!
//! A payer hears of the signature its channel withheld (the letter's content), of the
//! settlement of a channel (payments on it end), and of a transfer its channel dropped; as a
//! payer of the reverse variant, of the scalar that pays for the LSP's signature it bought.
use super::channels::Seen;
use super::*;

impl NodeCore {
    pub(super) fn payer_channel_event(
        &mut self,
        seen: Seen,
        event: &Event,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        let id = seen.id;
        match event {
            Event::SignatureEncrypted {
                state,
                presignature,
                receipt_point,
                price_point,
            } => self.role_input(
                RoleIn::Payer(PayerInput::SignatureEncrypted {
                    channel_id: id,
                    state: *state,
                    presignature: presignature.clone(),
                    receipt_point: *receipt_point,
                    point: *price_point,
                }),
                out,
            ),
            Event::PreSignatureCompleted { state, signature } => self.role_input(
                RoleIn::Payer(PayerInput::PreSignatureCompleted {
                    channel_id: id,
                    state: *state,
                    signature: *signature,
                }),
                out,
            ),
            // A payer's transfers are encrypted to the payee's receipt point; a plain
            // withheld signature is not one of its payments.
            Event::SignatureWithheld { .. } => Err(NodeError::WrongRole {
                what: "signature withheld",
                role: Role::Lsp,
            }),
            Event::StateCompleted { change, state, .. } => {
                // A held sale's PTLC (ours) is in a complete state: S can be asked to offer.
                if let Change::AddPtlc {
                    id: ptlc_id,
                    point,
                    expiry,
                    ..
                } = change
                {
                    let ours = self.channels[&id].channel.latest().is_some_and(|b| {
                        b.ptlcs
                            .iter()
                            .any(|p| p.id == *ptlc_id && p.offerer == seen.side)
                    });
                    if ours {
                        return self.role_input(
                            RoleIn::Payer(PayerInput::HeldPtlcAdded {
                                channel_id: id,
                                state: *state,
                                ptlc: HeldPtlc {
                                    id: *ptlc_id,
                                    expiry: *expiry,
                                },
                                point: *point,
                            }),
                            out,
                        );
                    }
                }
                // The reverse variant, a payer's node being paid on its channel: the LSP's
                // state paying us is complete (the machine ignores any other transfer).
                if matches!(change, Change::Transfer { .. }) && self.proposed_by_peer(&seen) {
                    return self.reverse_input(
                        ReverseInput::Completed {
                            lsp: seen.peer,
                            channel_id: id,
                            state: *state,
                        },
                        out,
                    );
                }
                match self.completed(&seen, change) {
                    // S claimed a held sale's PTLC, or (reverse variant) the LSP's signature
                    // we bought is paid for.
                    (_, Some(secret)) => self.payer_scalar_revealed(id, secret, out),
                    // A payer is offered no PTLC it acts on.
                    (_, None) => Ok(()),
                }
            }
            Event::Settled { state } => self.role_input(
                RoleIn::Payer(PayerInput::ChannelSettled {
                    channel_id: id,
                    state: *state,
                }),
                out,
            ),
            Event::PtlcSecretLearned { secret, .. } => match AdaptorSecret::from_bytes(secret.0) {
                Ok(secret) => self.payer_scalar_revealed(id, secret, out),
                Err(_) => Ok(()),
            },
            // A held sale's PTLC came back: nothing was sold through it.
            Event::PtlcFailed { point, offerer, .. } if *offerer == seen.side => self.role_input(
                RoleIn::Payer(PayerInput::HeldPtlcResolved {
                    channel_id: id,
                    point: *point,
                    secret: None,
                }),
                out,
            ),
            Event::ProposalAbandoned { change, code } => match change {
                Change::Transfer { .. } => self.role_input(
                    RoleIn::Payer(PayerInput::TransferRefused {
                        channel_id: id,
                        reason: format!("channel error {code} when proposed again"),
                    }),
                    out,
                ),
                // A held sale's PTLC that no longer applies: the payment is refused. (A
                // purchase PTLC of the reverse variant expires with its offer.)
                Change::AddPtlc { point, .. } if self.holds(point) => self.role_input(
                    RoleIn::Payer(PayerInput::TransferRefused {
                        channel_id: id,
                        reason: format!("channel error {code} when proposed again"),
                    }),
                    out,
                ),
                Change::AddPtlc { .. }
                | Change::FulfilPtlc { .. }
                | Change::FailPtlc { .. }
                | Change::Revert { .. }
                | Change::Open { .. } => Ok(()),
            },
            // A payer's PTLC (reverse variant) stays bought or expires with the offer; a lost
            // transfer is proposed again on reconnection (`resume_proposals`); a replaced
            // nonce never voids an offer (the channel refuses one for a priced state); a
            // PTLC the LSP offered us is none of a payer's.
            Event::PtlcFailed { .. }
            | Event::ProposalDropped { .. }
            | Event::NonceReplaced { .. }
            | Event::Accepted { .. }
            | Event::ReadyToFund
            | Event::FundingConfirmed
            | Event::ClosingForPtlc { .. }
            // Our claim on chain confirmed: a payer is paid no PTLC but in the reverse variant, whose state it holds already.
            | Event::PtlcClaimed { .. }
            | Event::StaleUpdateAnswered { .. }
            | Event::CloseSigned { .. }
            | Event::ClosedCooperatively { .. } => Ok(()),
        }
    }

    /// A scalar revealed for a PTLC the payer offered: S claimed a held sale's PTLC (the
    /// payer takes its proof from it), or, in the reverse variant, it pays for the LSP's
    /// signature the payer bought. Each ignores a point that is not its own.
    fn payer_scalar_revealed(
        &mut self,
        channel_id: ChannelId,
        secret: AdaptorSecret,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        let point = secret.adaptor_point();
        if self.holds(&point) {
            return self.role_input(
                RoleIn::Payer(PayerInput::HeldPtlcResolved {
                    channel_id,
                    point,
                    secret: Some(secret),
                }),
                out,
            );
        }
        self.reverse_input(ReverseInput::PtlcFulfilled { point, secret }, out)
    }

    /// Whether `point` is the PTLC point of one of the payer's held sales.
    fn holds(&self, point: &AdaptorPoint) -> bool {
        let RoleMachine::Payer(payer) = &self.role else {
            return false;
        };
        payer
            .payments()
            .any(|(id, p)| p.hold.is_some() && p.held_point(id).as_ref() == Some(point))
    }

    /// After a restart: the settlements the payer may not have heard of, then the reverse
    /// variant's steps.
    pub(super) fn resume_payer(&mut self, out: &mut Handled) -> Result<(), NodeError> {
        self.resume_reverse(out)?;
        self.resume_settled(out)
    }

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
                let oc = e.channel.snapshot().on_chain()?;
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
        // A held sale whose PTLC completed before the stop but whose role never heard of it,
        // or whose PTLC never reached the channel.
        let mut held_inputs = vec![];
        let mut held_lost = vec![];
        for (id, p) in payer.payments() {
            let (Some(hold), PayerStatus::Proposed, true) = (&p.hold, &p.status, p.lsp == peer)
            else {
                continue;
            };
            let (Some(e), Some(point)) = (self.channels.get(&p.channel_id), p.held_point(id))
            else {
                continue;
            };
            let snap = e.channel.snapshot();
            let ours = |b: &channel::StateBody| {
                b.ptlcs
                    .iter()
                    .find(|x| x.point == point && x.offerer == snap.side)
                    .map(|x| x.id)
            };
            if let Some(c) = &snap.complete {
                if let Some(ptlc_id) = ours(&c.body) {
                    held_inputs.push(PayerInput::HeldPtlcAdded {
                        channel_id: p.channel_id,
                        state: c.body.number,
                        ptlc: HeldPtlc {
                            id: ptlc_id,
                            expiry: hold.expiry,
                        },
                        point,
                    });
                    continue;
                }
            }
            // Not already proposed (the reestablishment resends that): proposed now, or
            // after the update under way.
            let proposed = snap
                .pending()
                .is_some_and(|q| q.body.ptlcs.iter().any(|x| x.point == point));
            if !proposed {
                held_lost.push((
                    p.channel_id,
                    Command::AddPtlc {
                        amount_sat: p.amount_sat.saturating_add(p.fee_sat),
                        point,
                        expiry: hold.expiry,
                    },
                ));
            }
        }
        let lost: Vec<(ChannelId, u64, AdaptorPoint)> = payer
            .payments()
            .filter(|(_, p)| p.hold.is_none())
            .filter(|(_, p)| p.lsp == peer && p.status == PayerStatus::Proposed)
            .filter(|(_, p)| {
                self.channels.get(&p.channel_id).is_some_and(|e| {
                    e.channel.phase() == Phase::Funded && e.channel.snapshot().pending().is_none()
                })
            })
            .filter_map(|(id, p)| {
                let transfer = p.amount_sat.saturating_add(p.fee_sat);
                Some((p.channel_id, transfer, p.receipt_point(id).ok()?))
            })
            .collect();
        // Signed and withheld, but the node stopped before the payer role heard of it.
        let withheld: Vec<PayerInput> = payer
            .payments()
            .filter(|(_, p)| p.hold.is_none())
            .filter(|(_, p)| p.lsp == peer && p.status == PayerStatus::Proposed)
            .filter_map(|(_, p)| {
                let e = self.channels.get(&p.channel_id)?;
                if e.channel.phase() != Phase::Withheld {
                    return None;
                }
                let (pending, withheld) = e.channel.snapshot().withheld()?;
                let OwnWithheld::Encrypted {
                    presignature,
                    receipt_point,
                } = &withheld.own
                else {
                    return None;
                };
                Some(PayerInput::SignatureEncrypted {
                    channel_id: p.channel_id,
                    state: pending.body.number,
                    presignature: presignature.clone(),
                    receipt_point: *receipt_point,
                    point: e.channel.pending_price_point()?,
                })
            })
            .collect();
        for input in withheld.into_iter().chain(held_inputs) {
            self.role_input(RoleIn::Payer(input), out)?;
        }
        for (channel_id, command) in held_lost {
            self.role_command(channel_id, command, out)?;
        }
        for (channel_id, amount_sat, receipt_point) in lost {
            let command = Command::TransferEncrypted {
                amount_sat,
                receipt_point,
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
}
