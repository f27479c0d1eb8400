//! The reverse variant's glue (payee offline: the payer buys the LSP's signature), and the
//! lookups of channels and routes the roles share.

use super::*;

impl NodeCore {
    /// Hands a letter of the reverse variant to the machine, with what it needs from the
    /// channels.
    pub(super) fn on_reverse_letter(
        &mut self,
        letter: ReverseLetter,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        let input = match letter {
            ReverseLetter::PayRequest {
                offer,
                proof,
                payee_contact,
            } => {
                let channel = self.channels_with(&offer.lsp).find_map(|(id, e)| {
                    let funded = e.channel.phase() == Phase::Funded;
                    let delay = e.channel.snapshot().params.as_ref()?.shared_delay;
                    funded.then_some((*id, delay))
                });
                ReverseInput::PayRequest {
                    offer,
                    proof,
                    payee_contact,
                    channel,
                    height: self.height,
                }
            }
            ReverseLetter::Handover {
                payment_id,
                lsp_signature,
            } => {
                let point = self.reverse.payments().find_map(|(id, p)| match &p.status {
                    ReverseStatus::Offered { offer } if *id == payment_id => Some(offer.point),
                    _ => None,
                });
                let channel = self
                    .channels
                    .iter()
                    .find(|(_, e)| point.is_some() && e.channel.pending_price_point() == point)
                    .map(|(id, _)| *id);
                ReverseInput::Handover {
                    payment_id,
                    lsp_signature,
                    channel,
                }
            }
        };
        self.reverse_input(input, out)
    }

    /// B's countersigned copy of `lsp`'s pending proposal on `channel`: what the payer needs
    /// to check and hold the update, and its price point.
    pub(super) fn update_proof(
        &self,
        lsp: &PublicKey,
        channel: &ChannelId,
    ) -> Option<(UpdateProof, AdaptorPoint)> {
        let e = self.channels.get(channel).filter(|e| &e.peer == lsp)?;
        let snap = e.channel.snapshot();
        let (pending, payee_signature) = snap.countersigned()?;
        let proof = UpdateProof {
            params: snap.params.clone()?,
            lsp_side: pending.proposer(snap.side),
            body: pending.body.clone(),
            lsp_nonce: pending.proposer_nonce,
            payee_signature,
            funding_outpoint: snap.funding_outpoint?,
            older_settlements: snap
                .settlement_leaf_hashes
                .range(..pending.body.number)
                .map(|(state, hash)| (*state, *hash))
                .collect(),
        };
        Some((proof, e.channel.pending_price_point()?))
    }

    /// Our own withheld signature whose price point is `point`, as a scalar, and its channel.
    pub(super) fn own_withheld(&self, point: AdaptorPoint) -> Option<(ChannelId, AdaptorSecret)> {
        self.channels.iter().find_map(|(id, e)| {
            let snap = e.channel.snapshot();
            let (_, withheld) = snap.withheld()?;
            if e.channel.pending_price_point()? != point {
                return None;
            }
            let secret = AdaptorSecret::from_signature(&withheld.own_signature()?).ok()?;
            Some((*id, secret))
        })
    }

    pub(super) fn reverse_input(
        &mut self,
        input: ReverseInput,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        for action in self.reverse.handle(input)? {
            match action {
                ReverseAction::Post {
                    to,
                    letter,
                    contact,
                } => out.push(NodeOutput::PostReverse {
                    to,
                    bytes: letter.encode(),
                    contact,
                }),
                ReverseAction::Payment(PaymentAction::Persist((payment_id, record))) => {
                    out.changes.reverse.insert(payment_id, record);
                }
                ReverseAction::Payment(PaymentAction::Send { to, message }) => {
                    let what = message.name();
                    out.push(NodeOutput::Send {
                        to,
                        frame: PeerMessage::Payment(message).encode(),
                        what,
                    });
                }
                ReverseAction::Payment(PaymentAction::Channel {
                    channel_id,
                    command,
                }) => {
                    // Through the queue: the channel may be busy with another update.
                    self.reverse_command(channel_id, command, out)?;
                }
                ReverseAction::Watch(outpoint) => out.push(NodeOutput::Watch(outpoint)),
                ReverseAction::Payment(PaymentAction::Event(e)) => {
                    out.push(NodeOutput::PaymentEvent(e))
                }
                ReverseAction::Payment(_) => {}
            }
        }
        Ok(())
    }

    /// For a letter whose LSP we have no funded channel with: the last hop through the peer
    /// of one of our funded channels, which routes for us.
    pub(super) fn route_hint(&self, letter: &[u8]) -> Option<RouteHint> {
        let lsp = SaleLetter::decode(letter).ok()?.offer.lsp;
        let routes = self.routes();
        if routes.iter().any(|(peer, _)| *peer == lsp) {
            return None;
        }
        routes
            .first()
            .map(|(router, _)| DEFAULT_ROUTER_POLICY.hint(*router))
    }

    /// A PTLC with `point` that a peer accepted by `from` offered us, in a complete state of
    /// our channel with it: the channel, the peer and the PTLC.
    pub(super) fn committed_to_us(
        &self,
        point: AdaptorPoint,
        from: impl Fn(&PublicKey) -> bool,
    ) -> Option<(ChannelId, PublicKey, PtlcRecord)> {
        self.channels.iter().find_map(|(id, e)| {
            if !from(&e.peer) {
                return None;
            }
            let side = e.channel.snapshot().side;
            let ptlc = e
                .channel
                .latest()?
                .ptlcs
                .iter()
                .find(|x| x.point == point && x.offerer != side)?;
            Some((*id, e.peer, ptlc.clone()))
        })
    }

    /// Our funded channel with `peer` that can take an update now or after the one under way
    /// (an update that finds it busy waits its turn: see `role_command`).
    pub(super) fn updatable_channel_with(&self, peer: &PublicKey) -> Option<ChannelId> {
        self.channels_with(peer)
            .find(|(_, e)| {
                e.channel.snapshot().funding_confirmed
                    && matches!(
                        e.channel.phase(),
                        Phase::Funded | Phase::Proposed | Phase::CounterSigned | Phase::Withheld
                    )
            })
            .map(|(id, _)| *id)
    }

    /// Our funded channels, by peer.
    pub(super) fn routes(&self) -> Vec<(PublicKey, ChannelId)> {
        self.channels
            .iter()
            .filter(|(_, e)| e.channel.phase() == Phase::Funded)
            .map(|(id, e)| (e.peer, *id))
            .collect()
    }

    /// The withheld transfer the peer proposed on its channel with us, if any.
    pub(super) fn pending_transfer(&self, peer: &PublicKey) -> Option<PendingTransfer> {
        self.channels_with(peer).find_map(|(id, e)| {
            // Only an open channel sells: once a state is on chain, no new offer.
            if e.channel.phase() != Phase::CounterSigned {
                return None;
            }
            let snap = e.channel.snapshot();
            // S cannot know whether A withholds; it only needs A's proposal countersigned.
            let (pending, _) = snap.countersigned()?;
            let Change::Transfer { amount_sat } = pending.change else {
                return None;
            };
            Some(PendingTransfer {
                channel_id: *id,
                state: pending.body.number,
                transfer_sat: amount_sat,
                price_point: e.channel.pending_price_point()?,
                shared_delay: snap.params.as_ref()?.shared_delay,
            })
        })
    }

    /// Reverse payments whose next step was cut by a stop: the payer recorded `buying` but its
    /// PTLC never reached A–S (offered now); the LSP fulfilled the payer's PTLC but never
    /// released the state on S–B (released now; B could also complete from the payer's
    /// hand-over).
    pub(super) fn resume_reverse(&mut self, out: &mut Handled) -> Result<(), NodeError> {
        let me = self.key.public_key();
        let mut commands = vec![];
        let mut inputs = vec![];
        for (id, p) in self.reverse.payments() {
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
                    let channel = self
                        .channels_with(&offer.lsp)
                        .find(|(_, e)| never_offered(&e.channel, offer.point));
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
                            channel_id: offer.channel_id,
                            state: offer.state,
                        });
                    } else {
                        // The letter to the payer may not have left before the stop: it is
                        // posted again (the payer ignores an offer it already has).
                        inputs.push(ReverseInput::ResumeOffer {
                            payment_id: *id,
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
        self.redo_reverse(commands, out)
    }
}
