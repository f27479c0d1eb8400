//! The payee's glue: the channel events a payee needs, and what it picks up after a restart.
//!
//! A payee hears of the LSP's PTLC once it is committed (it fulfils it with the scalar it
//! sells), of its fulfilment settling, and, in the reverse variant, of the LSP's state that
//! pays it completing.
use super::channels::Seen;
use super::*;

impl NodeCore {
    pub(super) fn payee_channel_event(
        &mut self,
        seen: Seen,
        event: &Event,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        let id = seen.id;
        match event {
            Event::StateCompleted { change, state, .. } => {
                let input = match self.completed(&seen, change) {
                    (Some(p), _) => RoleIn::Payee(PayeeInput::PtlcOffered {
                        channel_id: id,
                        peer: seen.peer,
                        ptlc_id: p.id,
                        point: p.point,
                        amount_sat: p.amount_sat,
                    }),
                    (None, Some(secret)) => RoleIn::Payee(PayeeInput::PtlcSettled {
                        point: secret.adaptor_point(),
                    }),
                    // The reverse variant: the LSP's state paying us is complete.
                    (None, None)
                        if matches!(change, Change::Transfer { .. })
                            && self.proposed_by_peer(&seen) =>
                    {
                        return self.reverse_input(
                            ReverseInput::Completed {
                                lsp: seen.peer,
                                channel_id: id,
                                state: *state,
                            },
                            out,
                        )
                    }
                    (None, None) => return Ok(()),
                };
                self.role_input(input, out)
            }
            // A payee proposes no transfer: its channel withholds nothing.
            Event::SignatureWithheld { .. }
            | Event::SignatureEncrypted { .. }
            | Event::PreSignatureCompleted { .. } => Err(NodeError::WrongRole {
                what: "signature withheld",
                role: Role::Payer,
            }),
            // Paid on chain: our claim of the LSP's PTLC confirmed.
            Event::PtlcClaimed { point, .. } => self.role_input(
                RoleIn::Payee(PayeeInput::PtlcSettled { point: *point }),
                out,
            ),
            // A payee offers no PTLCs: none fails, none is claimed from it, none is dropped.
            Event::PtlcSecretLearned { .. }
            | Event::PtlcFailed { .. }
            | Event::ProposalAbandoned { .. }
            | Event::Settled { .. }
            | Event::ProposalDropped { .. }
            | Event::NonceReplaced { .. }
            | Event::Accepted { .. }
            | Event::ReadyToFund
            | Event::FundingConfirmed
            | Event::ClosingForPtlc { .. }
            | Event::StaleUpdateAnswered { .. }
            | Event::CloseSigned { .. }
            | Event::ClosedCooperatively { .. } => Ok(()),
        }
    }

    /// After a restart: the payments under way, then the reverse variant's steps.
    pub(super) fn resume_payee(&mut self, out: &mut Handled) -> Result<(), NodeError> {
        self.resume_purchases(out)?;
        self.resume_reverse(out)
    }

    /// Payments the payee recorded whose next step was cut by a stop: the LSP's PTLC is in a
    /// complete state but the role never heard of it; the payee fulfilled but the fulfilment
    /// never reached the channel; or the fulfilment completed but the role never heard.
    pub(super) fn resume_purchases(&mut self, out: &mut Handled) -> Result<(), NodeError> {
        let RoleMachine::Payee(payee) = &self.role else {
            return Ok(());
        };
        let receipts = ReceiptKeys::from_seed(&self.seed);
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
                        && e.channel.snapshot().pending().is_none()
                    {
                        if let Ok(secret) = p.letter.check(&self.key, &receipts) {
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
}
