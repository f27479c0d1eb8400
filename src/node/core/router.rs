//! The router's glue: the channel events a router needs, and what it picks up after a
//! restart.
//!
//! A router hears of the LSP's PTLC once committed (it forwards it to the payee), of the
//! payee's scalar (it fulfils the incoming PTLC), and of its outgoing PTLCs that failed.
use super::channels::Seen;
use super::*;

impl NodeCore {
    pub(super) fn router_channel_event(
        &mut self,
        seen: Seen,
        event: &Event,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        match event {
            Event::StateCompleted { change, .. } => match self.completed(&seen, change) {
                (Some(p), _) => {
                    let routes = self.routes();
                    self.role_input(
                        RoleIn::Router(RouterInput::PtlcReceived {
                            incoming: Incoming {
                                channel_id: seen.id,
                                peer: seen.peer,
                                ptlc_id: p.id,
                                point: p.point,
                                amount_sat: p.amount_sat,
                                expiry: p.expiry.height(),
                            },
                            routes,
                        }),
                        out,
                    )
                }
                (None, Some(secret)) => self.router_scalar_revealed(secret, out),
                (None, None) => Ok(()),
            },
            // An outgoing PTLC claimed on chain: the secret that pays the incoming one.
            Event::PtlcSecretLearned { secret, .. } => match AdaptorSecret::from_bytes(secret.0) {
                Ok(secret) => self.router_scalar_revealed(secret, out),
                Err(_) => Ok(()),
            },
            Event::PtlcFailed { point, offerer, .. } if *offerer == seen.side => self.role_input(
                RoleIn::Router(RouterInput::PtlcFailed { point: *point }),
                out,
            ),
            Event::PtlcFailed { .. } => Ok(()),
            Event::ProposalAbandoned { change, .. } => match change {
                Change::AddPtlc { point, .. } => self.role_input(
                    RoleIn::Router(RouterInput::PtlcFailed { point: *point }),
                    out,
                ),
                Change::Transfer { .. }
                | Change::FulfilPtlc { .. }
                | Change::FailPtlc { .. }
                | Change::Revert { .. }
                | Change::Open { .. } => Ok(()),
            },
            // A router proposes no transfer: its channels withhold nothing.
            Event::SignatureWithheld { .. }
            | Event::SignatureEncrypted { .. }
            | Event::PreSignatureCompleted { .. } => Err(NodeError::WrongRole {
                what: "signature withheld",
                role: Role::Payer,
            }),
            Event::Settled { .. }
            | Event::ProposalDropped { .. }
            | Event::NonceReplaced { .. }
            | Event::Accepted { .. }
            | Event::ReadyToFund
            | Event::FundingConfirmed
            | Event::ClosingForPtlc { .. }
            // Our claim on chain confirmed: the forward settled when the scalar was learnt.
            | Event::PtlcClaimed { .. }
            | Event::StaleUpdateAnswered { .. }
            | Event::CloseSigned { .. }
            | Event::ClosedCooperatively { .. } => Ok(()),
        }
    }

    /// The payee's scalar for the outgoing PTLC: it fulfils the incoming one.
    fn router_scalar_revealed(
        &mut self,
        secret: AdaptorSecret,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        let point = secret.adaptor_point();
        self.role_input(
            RoleIn::Router(RouterInput::PtlcFulfilled { point, secret }),
            out,
        )
    }

    /// After a restart: the forwards under way, then the reverse variant's steps.
    pub(super) fn resume_router(&mut self, out: &mut Handled) -> Result<(), NodeError> {
        self.resume_forwards(out)?;
        self.resume_reverse(out)
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
}
