//! Peer messages: the open handshake, proposals, countersignatures, completions (including
//! a withheld signature shown back as proof of purchase), collisions and reestablishment.

use super::*;

impl Channel {
    pub(super) fn on_message(&mut self, msg: Message) -> Result<Vec<Action>, ChannelError> {
        if msg.channel_id() != self.snap.channel_id {
            return Err(ChannelError::WrongChannel {
                got: msg.channel_id(),
                ours: self.snap.channel_id,
            });
        }
        match msg {
            Message::Accept(m) => self.on_accept(m),
            Message::Open(m) => {
                // A repeated open (the accept was lost): answer it again, once it matches.
                let same = self.snap.side == Party::S
                    && self.snap.phase() == Phase::Accepted
                    && self.open_message_matches(&m);
                if !same {
                    return Err(self.unexpected("open"));
                }
                Ok(vec![Action::Send(self.accept_message()?)])
            }
            Message::Propose(m) => self.on_propose(m),
            Message::CounterSign(m) => self.on_countersign(m),
            Message::Complete(m) => self.on_complete(m),
            Message::Reestablish(m) => self.on_reestablish(m),
            Message::CloseProposal(m) => self.on_close_proposal(m),
            Message::CloseAccept(m) => self.on_close_accept(m),
            Message::CloseSigned(m) => self.on_close_signed(m),
            Message::Error(_) => Ok(vec![]),
        }
    }

    pub(super) fn open_message_matches(&self, m: &OpenChannel) -> bool {
        let (t, Some(p)) = (&self.snap.terms, &self.snap.params) else {
            return false;
        };
        t.capacity_sat == m.capacity_sat
            && t.push_sat == m.push_sat
            && t.shared_delay == m.shared_delay
            && t.update_window == m.update_window
            && t.payout_key == m.payout_key
            && p.key_a == m.update_key
    }

    pub(super) fn on_accept(&mut self, m: AcceptChannel) -> Result<Vec<Action>, ChannelError> {
        let phase = self.snap.phase();
        if self.snap.side == Party::A && phase != Phase::Offered {
            // A repeated accept changes nothing once it matches what we hold.
            if let Some(p) = &self.snap.params {
                if p.key_s == m.update_key && p.payout_s == m.payout_key {
                    return Ok(vec![]);
                }
            }
        }
        if phase != Phase::Offered || self.snap.side != Party::A {
            return Err(self.unexpected("accept"));
        }
        let terms = self.snap.terms.clone();
        if m.update_key == self.snap.own_key {
            return Err(ChannelError::InvalidTerms {
                reason: "both parties use the same key",
            });
        }
        let params = ChannelParams {
            channel_id: self.snap.channel_id,
            capacity_sat: terms.capacity_sat,
            shared_delay: terms.shared_delay,
            update_window: terms.update_window,
            key_a: self.snap.own_key,
            key_s: m.update_key,
            payout_a: terms.payout_key,
            payout_s: m.payout_key,
        };
        let funding = txs::ChannelTxs::new(&params).funding().clone();
        self.snap.params = Some(params);
        Ok(self.commit(
            vec![],
            vec![Action::Event(Event::Accepted {
                funding_script_pubkey: funding.script_pubkey(),
                capacity_sat: terms.capacity_sat,
            })],
        ))
    }

    pub(super) fn on_propose(&mut self, m: ProposeUpdate) -> Result<Vec<Action>, ChannelError> {
        let peer = other(self.snap.side);
        let pending = match &self.snap.stage {
            Stage::Open { pending } => pending.clone(),
            Stage::Closing { .. } | Stage::ForceClosing { .. } | Stage::Closed { .. } => {
                return Err(self.unexpected("propose"))
            }
        };
        if let Change::Revert { abandoned } = m.change {
            // A countersigned state, ours or the peer's, may be given up.
            let revertible = pending.as_ref().is_some_and(|p| {
                p.countersignature().is_some() && p.body.number == abandoned && !p.is_revert()
            });
            if revertible && self.snap.priced == Some(abandoned) {
                return Err(ChannelError::Priced {
                    state: abandoned,
                    what: "revert",
                });
            }
            if revertible {
                return self.countersign_revert(m, abandoned);
            }
        }
        match pending {
            // Offered: nothing can be proposed before the parameters are agreed.
            None if self.snap.params.is_none() => return Err(self.unexpected("propose")),
            None => {}
            Some(PendingUpdate {
                progress: Progress::Proposed { withhold },
                body,
                change,
                ..
            }) => return self.on_colliding_proposal(m, body.number, change, withhold),
            Some(PendingUpdate {
                progress: Progress::CounterSigned { countersignature },
                body,
                change,
                proposer_nonce,
            }) => {
                if m.state != body.number {
                    return Err(ChannelError::WrongState {
                        what: "propose",
                        got: m.state,
                        expected: body.number,
                    });
                }
                if m.change != change {
                    return Err(ChannelError::ConflictingProposal { state: m.state });
                }
                // The same proposal again (reconnection): resend our stored signature, and
                // take the new nonce if the proposer had to make one.
                let mut others = vec![];
                if m.nonce != proposer_nonce && self.snap.priced == Some(m.state) {
                    return Err(ChannelError::Priced {
                        state: m.state,
                        what: "new nonce",
                    });
                }
                if m.nonce != proposer_nonce {
                    self.snap.stage = Stage::Open {
                        pending: Some(PendingUpdate {
                            body,
                            change,
                            proposer_nonce: m.nonce,
                            progress: Progress::CounterSigned { countersignature },
                        }),
                    };
                    others.push(Action::Event(Event::NonceReplaced { state: m.state }));
                }
                let msg = Message::CounterSign(CounterSignUpdate {
                    channel_id: self.snap.channel_id,
                    state: m.state,
                    signature: countersignature,
                });
                return Ok(self.commit(vec![msg], others));
            }
            Some(PendingUpdate {
                progress: Progress::Withheld(_),
                ..
            }) => return Err(self.unexpected("propose")),
        }
        let expected = self.next_number();
        if m.state != expected {
            return Err(ChannelError::WrongState {
                what: "propose",
                got: m.state,
                expected,
            });
        }
        if self.snap.complete.is_none() && !matches!(m.change, Change::Open { .. }) {
            return Err(self.unexpected(m.change.kind()));
        }
        if self.snap.complete.is_some() && !self.snap.funding_confirmed {
            return Err(self.unexpected(m.change.kind()));
        }
        let body = self.apply(&m.change, peer)?;
        self.countersign(m, body)
    }

    /// The peer proposed state `ours` too, while our proposal `change` of it waits for its
    /// countersignature.
    fn on_colliding_proposal(
        &mut self,
        m: ProposeUpdate,
        ours: u64,
        change: Change,
        withhold: Withhold,
    ) -> Result<Vec<Action>, ChannelError> {
        if m.state != ours {
            return Err(ChannelError::WrongState {
                what: "propose",
                got: m.state,
                expected: ours,
            });
        }
        // Both proposed the same state: A's proposal wins, except over a revert, which is
        // never dropped for a collision (it gives up a state a payment role decided to give
        // up; the peer countersigns it first).
        let our_revert = matches!(change, Change::Revert { .. });
        if self.snap.side == Party::A || our_revert {
            return Err(ChannelError::ProposalCollision { state: m.state });
        }
        // Validate theirs against the complete state before dropping ours.
        let body = self.apply(&m.change, other(self.snap.side))?;
        // Ours is proposed again once theirs completes (`repropose_dropped`).
        let before = self.snap.dropped.replace(DroppedProposal {
            change: change.clone(),
            withhold,
        });
        let mut actions = match self.countersign(m, body) {
            Ok(actions) => actions,
            Err(e) => {
                self.snap.dropped = before;
                return Err(e);
            }
        };
        self.secret_nonce = None;
        actions.push(Action::Event(Event::ProposalDropped { change }));
        Ok(actions)
    }

    /// The peer gives up the pending state `abandoned`: check the revert and countersign it.
    pub(super) fn countersign_revert(
        &mut self,
        m: ProposeUpdate,
        abandoned: u64,
    ) -> Result<Vec<Action>, ChannelError> {
        if m.state != abandoned + 1 {
            return Err(ChannelError::WrongState {
                what: "propose",
                got: m.state,
                expected: abandoned + 1,
            });
        }
        let body = self.apply(&m.change, other(self.snap.side))?;
        let before = self.snap.abandoned.take();
        self.snap.abandoned = self.snap.pending().cloned();
        let countersigned = self.countersign(m, body);
        if countersigned.is_err() {
            self.snap.abandoned = before;
        }
        countersigned
    }

    pub(super) fn countersign(
        &mut self,
        m: ProposeUpdate,
        body: StateBody,
    ) -> Result<Vec<Action>, ChannelError> {
        if !matches!(self.snap.stage, Stage::Open { .. }) {
            return Err(self.unexpected("propose"));
        }
        // What we sign is the state the message names, never another number.
        if body.number != m.state {
            return Err(ChannelError::WrongState {
                what: "propose",
                got: m.state,
                expected: body.number,
            });
        }
        let digests = self.txs("propose")?.digests(&body)?;
        let (sighash, leaf_hash) = (digests.sighash, digests.settlement_leaf_hash);
        let signature = self.sign_fresh(&sighash)?;
        if let Change::Open { funding_outpoint } = m.change {
            self.snap.funding_outpoint = Some(funding_outpoint);
        }
        std::sync::Arc::make_mut(&mut self.snap.settlement_leaf_hashes)
            .insert(body.number, leaf_hash);
        self.snap.stage = Stage::Open {
            pending: Some(PendingUpdate {
                body,
                change: m.change,
                proposer_nonce: m.nonce,
                progress: Progress::CounterSigned {
                    countersignature: signature,
                },
            }),
        };
        let msg = Message::CounterSign(CounterSignUpdate {
            channel_id: self.snap.channel_id,
            state: m.state,
            signature,
        });
        Ok(self.commit(vec![msg], vec![]))
    }

    pub(super) fn on_countersign(
        &mut self,
        m: CounterSignUpdate,
    ) -> Result<Vec<Action>, ChannelError> {
        let (mut pending, withhold) = match &self.snap.stage {
            Stage::Open {
                pending:
                    Some(
                        p @ PendingUpdate {
                            progress: Progress::Proposed { withhold },
                            ..
                        },
                    ),
            } => (p.clone(), *withhold),
            _ => return Err(self.unexpected("countersign")),
        };
        if m.state != pending.body.number {
            return Err(ChannelError::WrongState {
                what: "countersign",
                got: m.state,
                expected: pending.body.number,
            });
        }
        let txs = self.txs("countersign")?;
        let digests = txs.digests(&pending.body)?;
        let sighash = digests.sighash;
        txs.verify(other(self.snap.side), &sighash, &m.signature)
            .map_err(|_| ChannelError::InvalidSignature {
                what: "countersign",
                state: m.state,
            })?;
        let nonce = self
            .secret_nonce
            .take()
            .ok_or(ChannelError::NonceLost { state: m.state })?;
        let leaf_hash = digests.settlement_leaf_hash;
        std::sync::Arc::make_mut(&mut self.snap.settlement_leaf_hashes)
            .insert(pending.body.number, leaf_hash);
        let state = pending.body.number;
        let (own, event) = match withhold {
            Withhold::No => {
                let signature = nonce.sign(&self.key, &sighash)?;
                return self.finish_own_proposal(pending, signature, m.signature);
            }
            Withhold::Signature => {
                let signature = nonce.sign(&self.key, &sighash)?;
                let price_point =
                    price_point(&pending.proposer_nonce, &self.snap.own_key, &sighash)?;
                let event = Event::SignatureWithheld {
                    state,
                    signature,
                    price_point,
                };
                (OwnWithheld::Signature(signature), event)
            }
            Withhold::EncryptedTo(receipt_point) => {
                let presignature = nonce.encrypt(&self.key, &receipt_point, &sighash)?;
                let price_point =
                    price_point(&pending.proposer_nonce, &self.snap.own_key, &sighash)?;
                let event = Event::SignatureEncrypted {
                    state,
                    presignature: presignature.clone(),
                    receipt_point,
                    price_point,
                };
                let own = OwnWithheld::Encrypted {
                    presignature,
                    receipt_point,
                };
                (own, event)
            }
        };
        pending.progress = Progress::Withheld(Withheld {
            countersignature: m.signature,
            own,
        });
        self.snap.stage = Stage::Open {
            pending: Some(pending),
        };
        Ok(self.commit(vec![], vec![Action::Event(event)]))
    }

    /// Our proposal is signed by both (`own` is our signature, `peer` the countersignature):
    /// it becomes the complete state; send our signature.
    pub(super) fn finish_own_proposal(
        &mut self,
        pending: PendingUpdate,
        own: Signature,
        peer: Signature,
    ) -> Result<Vec<Action>, ChannelError> {
        let state = pending.body.number;
        let others = self.make_complete(pending, own, peer)?;
        let msg = Message::Complete(CompleteUpdate {
            channel_id: self.snap.channel_id,
            state,
            signature: own,
        });
        Ok(self.commit(vec![msg], others))
    }

    /// Records a fully signed state and returns the actions that follow from it.
    pub(super) fn make_complete(
        &mut self,
        pending: PendingUpdate,
        proposer_sig: Signature,
        other_sig: Signature,
    ) -> Result<Vec<Action>, ChannelError> {
        let proposer = pending.proposer(self.snap.side);
        let (sig_a, sig_s) = match proposer {
            Party::A => (proposer_sig, other_sig),
            Party::S => (other_sig, proposer_sig),
        };
        // The fulfilled PTLC is in the state this one replaces; its secret was checked
        // against its point when the change was applied.
        let fulfilled = match &pending.change {
            Change::FulfilPtlc { id, .. } => self
                .snap
                .complete
                .as_ref()
                .and_then(|c| c.body.ptlcs.iter().find(|p| p.id == *id))
                .map(|p| p.point),
            _ => None,
        };
        let event = Event::StateCompleted {
            state: pending.body.number,
            change: pending.change.clone(),
            to_a: pending.body.to_a,
            to_s: pending.body.to_s,
            fulfilled,
        };
        let first = self.snap.complete.is_none();
        // Our pre-signature, completed by the payee it was encrypted to and shown to us (by
        // the peer, or on chain): the completed signature is what the payer's proof of
        // payment is taken from.
        let encrypted = matches!(
            &pending.progress,
            Progress::Withheld(Withheld {
                own: OwnWithheld::Encrypted { .. },
                ..
            })
        );
        let bought = encrypted.then_some(Event::PreSignatureCompleted {
            state: pending.body.number,
            signature: proposer_sig,
        });
        let failed = match &pending.change {
            Change::FailPtlc { id } => self
                .snap
                .complete
                .as_ref()
                .and_then(|c| c.body.ptlcs.iter().find(|p| p.id == *id))
                .map(|p| Event::PtlcFailed {
                    id: p.id,
                    point: p.point,
                    offerer: p.offerer,
                }),
            _ => None,
        };
        if let Change::AddPtlc { id, .. } = &pending.change {
            if proposer != self.snap.side {
                self.snap.peer_next_ptlc = self.snap.peer_next_ptlc.max(id / 2 + 1);
            }
        }
        self.snap.complete = Some(StateRecord {
            body: pending.body,
            proposer,
            change: pending.change,
            sig_a,
            sig_s,
        });
        self.snap.clear_pending();
        self.snap.priced = None;
        let mut others = vec![Action::Event(event)];
        others.extend(bought.map(Action::Event));
        others.extend(failed.map(Action::Event));
        if first {
            if let Some(outpoint) = self.snap.funding_outpoint {
                others.push(Action::Watch(outpoint));
            }
            if self.snap.side == Party::A {
                others.push(Action::Event(Event::ReadyToFund));
            }
        }
        Ok(others)
    }

    pub(super) fn on_complete(&mut self, m: CompleteUpdate) -> Result<Vec<Action>, ChannelError> {
        if let Some(actions) = self.complete_abandoned(&m)? {
            return Ok(actions);
        }
        let open = matches!(self.snap.stage, Stage::Open { .. });
        match self.snap.pending().map(|p| (p, &p.progress)) {
            // Our withheld signature, shown back: the peer bought it (also during a
            // unilateral close, where the completed state overrides the one on chain).
            Some((pending, Progress::Withheld(withheld))) => {
                let (pending, withheld) = (pending.clone(), withheld.clone());
                return self.on_purchase_shown(pending, withheld, &m);
            }
            Some((pending, Progress::CounterSigned { countersignature })) if open => {
                if m.state != pending.body.number {
                    return Err(ChannelError::WrongState {
                        what: "complete",
                        got: m.state,
                        expected: pending.body.number,
                    });
                }
                let (pending, countersignature) = (pending.clone(), *countersignature);
                return self.complete_peer_proposal(
                    pending,
                    m.signature,
                    countersignature,
                    Completion::Shown,
                );
            }
            _ => {}
        }
        // Our own last proposal, shown to us again with our signature (a repeated proof of
        // purchase): nothing to do. A replayed completion of the peer's is refused below.
        if let Some(rec) = &self.snap.complete {
            if rec.proposer == self.snap.side
                && rec.body.number == m.state
                && rec.proposer_signature() == m.signature
            {
                return Ok(vec![]);
            }
        }
        if let Some(n) = self.complete_number() {
            if m.state <= n {
                return Err(ChannelError::WrongState {
                    what: "complete",
                    got: m.state,
                    expected: n + 1,
                });
            }
        }
        Err(self.unexpected("complete"))
    }

    /// The peer shows our own withheld signature: it bought it (from the payee it was sold
    /// to), so our withheld state is complete. Anything but that exact signature is refused:
    /// a withheld state is never completed on the peer's word.
    pub(super) fn on_purchase_shown(
        &mut self,
        pending: PendingUpdate,
        withheld: Withheld,
        m: &CompleteUpdate,
    ) -> Result<Vec<Action>, ChannelError> {
        let state = pending.body.number;
        if m.state != state {
            return Err(ChannelError::WrongState {
                what: "complete",
                got: m.state,
                expected: state,
            });
        }
        let shown = match &withheld.own {
            OwnWithheld::Signature(own) => m.signature == *own,
            // Only the payee could complete it: any valid signature of ours on the state with
            // the committed nonce R + Z is the completed pre-signature.
            OwnWithheld::Encrypted { presignature, .. } => {
                let sighash = self.txs("complete")?.update_sighash(&pending.body)?;
                m.signature.nonce() == presignature.nonce()
                    && self.snap.own_key.verify(&sighash, &m.signature).is_ok()
            }
        };
        if !shown {
            return Err(ChannelError::InvalidSignature {
                what: "complete",
                state,
            });
        }
        let before = self.snap.clone();
        let mut others = self.make_complete(pending, m.signature, withheld.countersignature)?;
        // Bought while an older state is on chain: the completed one goes over it.
        match self.override_on_chain() {
            Ok(answer) => others.extend(answer.map(Action::Broadcast)),
            Err(e) => {
                self.snap = before;
                return Err(e);
            }
        }
        Ok(self.commit(vec![], others))
    }

    /// Our revert crossed the peer's completing signature of the state it abandons: the
    /// signature wins (the state is paid for), our revert is dropped.
    pub(super) fn complete_abandoned(
        &mut self,
        m: &CompleteUpdate,
    ) -> Result<Option<Vec<Action>>, ChannelError> {
        // Our revert, proposed and not yet countersigned, of the peer's proposal we had
        // countersigned.
        let (
            Stage::Open {
                pending:
                    Some(
                        revert @ PendingUpdate {
                            progress: Progress::Proposed { .. },
                            ..
                        },
                    ),
            },
            Some(
                abandoned @ PendingUpdate {
                    progress: Progress::CounterSigned { countersignature },
                    ..
                },
            ),
        ) = (&self.snap.stage, &self.snap.abandoned)
        else {
            return Ok(None);
        };
        let crossed = revert.is_revert()
            && abandoned.body.number == m.state
            && self.complete_number().is_some_and(|n| n + 1 == m.state);
        if !crossed {
            return Ok(None);
        }
        let dropped = revert.change.clone();
        let (abandoned, countersignature) = (abandoned.clone(), *countersignature);
        let before = self.snap.abandoned.take();
        match self.complete_peer_proposal(
            abandoned,
            m.signature,
            countersignature,
            Completion::Shown,
        ) {
            Ok(mut actions) => {
                self.secret_nonce = None;
                actions.push(Action::Event(Event::ProposalDropped { change: dropped }));
                Ok(Some(actions))
            }
            Err(e) => {
                self.snap.abandoned = before;
                Err(e)
            }
        }
    }

    /// The peer's signature on its own proposal, received or bought: check and complete
    /// with our `countersignature`.
    pub(super) fn complete_peer_proposal(
        &mut self,
        pending: PendingUpdate,
        signature: Signature,
        countersignature: Signature,
        bought: Completion,
    ) -> Result<Vec<Action>, ChannelError> {
        let state = pending.body.number;
        if signature.nonce() != pending.proposer_nonce {
            return Err(ChannelError::NonceMismatch { state });
        }
        if bought != Completion::BoughtAtItsPrice {
            let txs = self.txs("complete")?;
            let sighash = txs.update_sighash(&pending.body)?;
            txs.verify(pending.proposer(self.snap.side), &sighash, &signature)
                .map_err(|_| ChannelError::InvalidSignature {
                    what: "complete",
                    state,
                })?;
        }
        let bought = bought != Completion::Shown;
        let others = self.make_complete(pending, signature, countersignature)?;
        self.snap.bought = bought.then_some(state);
        let mut actions = self.commit(vec![], others);
        actions.extend(self.repropose_dropped());
        Ok(actions)
    }

    /// Our proposal that lost a collision, proposed again now that the peer's completed: a
    /// role's change (a PTLC offered or fulfilled) is not lost to the timing of the peer's.
    /// If it no longer applies, it is reported dropped for good.
    pub(super) fn repropose_dropped(&mut self) -> Vec<Action> {
        if self.snap.phase() != Phase::Funded || !self.snap.funding_confirmed {
            return vec![];
        }
        let Some(dropped) = self.snap.dropped.take() else {
            return vec![];
        };
        match self.propose(dropped.change.clone(), dropped.withhold) {
            Ok(actions) => actions,
            // Stored without the dropped change before the role hears of it: a restart does
            // not give it up a second time.
            Err(e) => self.commit(
                vec![],
                vec![Action::Event(Event::ProposalAbandoned {
                    change: dropped.change,
                    code: e.code(),
                })],
            ),
        }
    }

    pub(super) fn on_reestablish(&mut self, m: Reestablish) -> Result<Vec<Action>, ChannelError> {
        let ours = self.next_number();
        let phase = self.snap.phase();
        // Only the proposer can be one state ahead (it completes first), and only until its
        // completing signature arrives.
        // A withheld signature may have been sold to the peer, which is then one ahead too.
        // A revert skips a state number, so the peer may be one past the pending state.
        let mut most = match self.snap.pending() {
            Some(p) if !p.is_ours() || phase == Phase::Withheld => p.body.number + 1,
            _ => ours,
        };
        if let (Phase::Proposed, Some(abandoned)) = (phase, &self.snap.abandoned) {
            // Our revert may have crossed the peer's completion of the abandoned state.
            most = most.max(abandoned.body.number + 1);
        }
        if m.next_state > most {
            return Err(ChannelError::PeerAhead {
                peer: m.next_state,
                ours,
            });
        }
        match phase {
            Phase::Proposed => {
                let mut actions = self.resend_complete_if_missing(m.next_state);
                actions.extend(self.repropose()?);
                Ok(actions)
            }
            // A peer one past our withheld state says it bought our signature. A number is no
            // proof: the state completes only when the peer shows the signature itself
            // ([`CompleteUpdate`] carrying it, which an honest buyer sends on reconnection).
            Phase::Withheld => Ok(vec![]),
            Phase::Funded | Phase::ForceClosing => {
                Ok(self.resend_complete_if_missing(m.next_state))
            }
            Phase::Closing => self.reestablish_close(),
            _ => Ok(vec![]),
        }
    }

    /// If the peer lacks our last complete state, send the proposer's signature on it: ours
    /// if we proposed it (the peer never got it), or the peer's own if we completed its
    /// withheld proposal with a bought signature (the proof of purchase; it tells the peer
    /// nothing it did not know).
    pub(super) fn resend_complete_if_missing(&mut self, peer_next: u64) -> Vec<Action> {
        let Some(rec) = self.snap.complete.clone() else {
            return vec![];
        };
        // The peer lacks our last state if it would sign that state next, or, for a revert
        // of ours, the state the revert skipped.
        let ours = rec.proposer == self.snap.side;
        let missing = peer_next == rec.body.number
            || (ours
                && matches!(rec.change, Change::Revert { abandoned } if peer_next == abandoned));
        // A bought state was shown to the peer when it connected (`Input::Connected`).
        if !missing || (!ours && self.snap.bought == Some(rec.body.number)) {
            return vec![];
        }
        let msg = self.complete_message(&rec);
        self.commit(vec![msg], vec![])
    }

    /// The [`CompleteUpdate`] of a complete state: its proposer's signature.
    pub(super) fn complete_message(&self, rec: &StateRecord) -> Message {
        Message::Complete(CompleteUpdate {
            channel_id: self.snap.channel_id,
            state: rec.body.number,
            signature: rec.proposer_signature(),
        })
    }

    // ---- cooperative close ----
}

/// How the peer's signature that completes its proposal reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Completion {
    /// The peer sent it: it is checked against the state's sighash.
    Shown,
    /// Bought with the scalar of its price point, for a state not priced by a payment role
    /// (or priced for another state): checked like a shown one.
    Bought,
    /// Bought for the state a payment role priced ([`Command::Price`]), with a t whose t·G
    /// is that price point T = R + e·P. Not checked again: (R, t) satisfies
    /// t·G = R + e·P, which is what verifying it would compute. T was computed from the
    /// proposer's committed nonce R and this very state (a priced state keeps its body and
    /// its nonce: the peer's revert and new nonce are refused until it completes), and the
    /// role hands t over only once t·G = T holds (checked on the payee's fulfilment, or t·G
    /// computed from a claim on chain). A byzantine payer or payee can change neither R, nor
    /// the state, nor t·G = T, so no input of theirs reaches this without that check.
    BoughtAtItsPrice,
}
