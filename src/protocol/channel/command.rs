//! User commands: proposing a change, pricing, completing with a bought secret, reverting,
//! closing; and how a change applies to a state.

use super::message::Completion;
use super::*;

impl Channel {
    /// The state after `change` by `proposer` on the last complete state.
    pub(super) fn apply(
        &self,
        change: &Change,
        proposer: Party,
    ) -> Result<StateBody, ChannelError> {
        let params = self.params(change.kind())?;
        let number = self.next_number();
        let mut body = match (&self.snap.complete, change) {
            (None, Change::Open { .. }) => {
                let terms = &self.snap.terms;
                return Ok(StateBody {
                    number: 0,
                    to_a: terms.capacity_sat - terms.push_sat,
                    to_s: terms.push_sat,
                    ptlcs: vec![],
                });
            }
            (Some(_), Change::Open { .. }) => return Err(self.unexpected("open change")),
            (None, _) => return Err(self.unexpected(change.kind())),
            (Some(c), Change::Revert { abandoned }) => {
                // Exactly state n again, numbered past the abandoned n+1.
                let pending = self
                    .snap
                    .pending()
                    .filter(|p| !p.is_revert())
                    .or(self.snap.abandoned.as_ref())
                    .map(|p| p.body.number);
                if *abandoned != number || pending != Some(*abandoned) {
                    return Err(ChannelError::BadRevert {
                        abandoned: *abandoned,
                        pending,
                    });
                }
                let mut body = c.body.clone();
                body.number = number + 1;
                return Ok(body);
            }
            (Some(c), _) => c.body.clone(),
        };
        body.number = number;
        match change {
            // Both returned above.
            Change::Open { .. } | Change::Revert { .. } => {
                return Err(self.unexpected(change.kind()))
            }
            Change::Transfer { amount_sat } => {
                debit(&mut body, proposer, *amount_sat)?;
                *body.balance_mut(other(proposer)) += amount_sat;
            }
            Change::AddPtlc {
                id,
                amount_sat,
                point,
                expiry,
                claim_signature,
            } => {
                if body.ptlcs.len() >= MAX_PTLCS {
                    return Err(ChannelError::TooManyPtlcs {
                        count: body.ptlcs.len(),
                    });
                }
                let parity = match proposer {
                    Party::A => 0,
                    Party::S => 1,
                };
                // An id the peer used for an earlier PTLC is never taken again.
                let reused = proposer != self.snap.side && id / 2 < self.snap.peer_next_ptlc;
                if id % 2 != parity || reused || body.ptlcs.iter().any(|p| p.id == *id) {
                    return Err(ChannelError::BadPtlcId { id: *id });
                }
                let height = self.snap.height;
                let expiry = PtlcExpiry::checked_within(
                    height,
                    *expiry,
                    params.shared_delay,
                    height.saturating_add(params.update_window),
                )?;
                debit(&mut body, proposer, *amount_sat)?;
                let mut record = PtlcRecord {
                    id: *id,
                    offerer: proposer,
                    amount_sat: *amount_sat,
                    point: *point,
                    expiry,
                    claim_signature: claim_signature.clone(),
                    verified_claim: VerifiedClaim::default(),
                };
                // The peer's half of our claim must verify before we take the PTLC; the
                // record keeps the verified half for our claim. Our own half, which this
                // channel made (or stored, when a restart applies its own proposal again), is
                // the peer's to check.
                if proposer != self.snap.side {
                    let built = self.txs("add_ptlc")?;
                    let verified = built
                        .claim(&built.ptlc(&record))?
                        .verify_offerer_signature(claim_signature)?;
                    record.verified_claim = VerifiedClaim(Some(verified));
                }
                body.ptlcs.push(record);
            }
            Change::FulfilPtlc { id, secret } => {
                let at = find_ptlc(&body, *id, proposer, "fulfil")?;
                let t = AdaptorSecret::from_bytes(secret.0)
                    .map_err(|_| ChannelError::WrongSecret { id: *id })?;
                if !sells(&t, &body.ptlcs[at].point) {
                    return Err(ChannelError::WrongSecret { id: *id });
                }
                let ptlc = body.ptlcs.remove(at);
                *body.balance_mut(proposer) += ptlc.amount_sat;
            }
            Change::FailPtlc { id } => {
                let at = find_ptlc(&body, *id, proposer, "fail")?;
                let ptlc = body.ptlcs.remove(at);
                *body.balance_mut(ptlc.offerer) += ptlc.amount_sat;
            }
        }
        debug_assert_eq!(body.total(), params.capacity_sat, "balance conservation");
        Ok(body)
    }

    // ---- commands ----

    pub(super) fn on_command(&mut self, cmd: Command) -> Result<Vec<Action>, ChannelError> {
        let side = self.snap.side;
        match cmd {
            Command::FundingBuilt { outpoint } => {
                if self.snap.phase() != Phase::Accepted || side != Party::A {
                    return Err(self.unexpected("funding_built"));
                }
                self.propose(
                    Change::Open {
                        funding_outpoint: outpoint,
                    },
                    Withhold::No,
                )
            }
            Command::AddPtlc {
                amount_sat,
                point,
                expiry,
            } => {
                self.ready_to_update("add_ptlc")?;
                let id = self.snap.next_ptlc * 2 + side.index() as u64;
                let params = self.params("add_ptlc")?;
                // Check before signing anything so that a refused PTLC changes nothing.
                let checked = PtlcExpiry::checked_within(
                    self.snap.height,
                    expiry,
                    params.shared_delay,
                    self.snap.height.saturating_add(params.update_window),
                )?;
                let balance = self.latest().map_or(0, |b| b.balance(side));
                if amount_sat == 0 {
                    return Err(ChannelError::ZeroAmount);
                }
                if amount_sat > balance {
                    return Err(ChannelError::InsufficientBalance {
                        needed: amount_sat,
                        available: balance,
                    });
                }
                let built = self.txs("add_ptlc")?;
                let output = built.ptlc_output(side, point, amount_sat, checked);
                let claim = built.claim(&output)?;
                let aux = self.aux();
                let claim_signature = claim.encrypt_offerer_signature_with(&self.key, &aux);
                let change = Change::AddPtlc {
                    id,
                    amount_sat,
                    point,
                    expiry,
                    claim_signature,
                };
                self.apply(&change, side)?;
                self.snap.next_ptlc += 1;
                self.propose(change, Withhold::No)
            }
            Command::Fulfil { id, secret } => {
                self.ready_to_update("fulfil")?;
                // Revealing the secret off chain this late would let the offerer take it
                // and still time the PTLC out on chain.
                let late = self
                    .latest()
                    .and_then(|b| b.ptlcs.iter().find(|p| p.id == id))
                    .and_then(|p| Some((p.expiry.height(), self.ptlc_deadline(p)?)));
                if let Some((expiry, deadline)) = late {
                    if self.snap.height >= deadline {
                        // Keep the secret for the claim and publish the latest state now.
                        let before = self.snap.clone();
                        let mut actions = self.provide_secret(id, secret)?;
                        match self.force_close() {
                            Ok(closed) => actions.extend(closed),
                            Err(e) => {
                                self.snap = before;
                                return Err(e);
                            }
                        }
                        actions.push(Action::Event(Event::ClosingForPtlc { id, expiry }));
                        return Ok(actions);
                    }
                }
                let revealed = RevealedSecret(secret.to_secret_bytes());
                // Validated by the proposal; kept so that an on-chain claim can use it.
                self.snap.ptlc_secrets.insert(id, revealed.clone());
                let proposed = self.propose(
                    Change::FulfilPtlc {
                        id,
                        secret: revealed,
                    },
                    Withhold::No,
                );
                if proposed.is_err() {
                    self.snap.ptlc_secrets.remove(&id);
                }
                proposed
            }
            Command::ProvideSecret { id, secret } => self.provide_secret(id, secret),
            Command::Fail { id } => {
                self.ready_to_update("fail")?;
                self.propose(Change::FailPtlc { id }, Withhold::No)
            }
            Command::Transfer {
                amount_sat,
                withhold,
            } => {
                self.ready_to_update("transfer")?;
                let withhold = if withhold {
                    Withhold::Signature
                } else {
                    Withhold::No
                };
                self.propose(Change::Transfer { amount_sat }, withhold)
            }
            Command::TransferEncrypted {
                amount_sat,
                receipt_point,
            } => {
                self.ready_to_update("transfer")?;
                let withhold = Withhold::EncryptedTo(receipt_point);
                self.propose(Change::Transfer { amount_sat }, withhold)
            }
            Command::Release => {
                let Stage::Open {
                    pending:
                        Some(
                            pending @ PendingUpdate {
                                progress: Progress::Withheld(withheld),
                                ..
                            },
                        ),
                } = &self.snap.stage
                else {
                    return Err(self.unexpected("release"));
                };
                // A pre-signature cannot be released: only the payee can complete it.
                let Some(own) = withheld.own_signature() else {
                    return Err(self.unexpected("release"));
                };
                self.finish_own_proposal(pending.clone(), own, withheld.countersignature)
            }
            Command::Price { state } => {
                let pending = self
                    .snap
                    .pending()
                    .filter(|p| !p.is_revert())
                    .map(|p| p.body.number);
                let priceable = matches!(
                    self.snap.phase(),
                    Phase::CounterSigned | Phase::Withheld | Phase::ForceClosing
                );
                if !priceable || pending != Some(state) {
                    return Err(ChannelError::WrongState {
                        what: "price",
                        got: state,
                        expected: pending.unwrap_or_else(|| self.next_number()),
                    });
                }
                if self.snap.priced == Some(state) {
                    return Ok(vec![]);
                }
                self.snap.priced = Some(state);
                Ok(self.commit(vec![], vec![]))
            }
            Command::CompleteWithSecret { secret } => {
                let on_chain = matches!(self.snap.stage, Stage::ForceClosing { .. });
                // The peer's proposal we countersigned, also through a unilateral close.
                let (pending, countersignature) = match self.snap.countersigned() {
                    Some((p, countersignature)) if !p.is_revert() => (p.clone(), countersignature),
                    _ => {
                        if let Some(abandoned) = &self.snap.abandoned {
                            return Err(ChannelError::StateAbandoned {
                                state: abandoned.body.number,
                            });
                        }
                        return Err(self.unexpected("complete_with_secret"));
                    }
                };
                let signature = secret.to_signature(&pending.proposer_nonce);
                let state = pending.body.number;
                let bought = if self.snap.priced == Some(state) {
                    Completion::BoughtAtItsPrice
                } else {
                    Completion::Bought
                };
                // The peer's own signature, shown back: its proof that we bought it.
                let shown = Action::Send(Message::Complete(CompleteUpdate {
                    channel_id: self.snap.channel_id,
                    state,
                    signature,
                }));
                if !on_chain {
                    let mut actions =
                        self.complete_peer_proposal(pending, signature, countersignature, bought)?;
                    actions.push(shown);
                    return Ok(actions);
                }
                // Bought during a unilateral close: the completed state replaces the older
                // one on chain at once, and the peer is shown its signature too.
                let before = self.snap.clone();
                let mut actions =
                    self.complete_peer_proposal(pending, signature, countersignature, bought)?;
                actions.push(shown);
                match self.override_on_chain() {
                    Ok(Some(answer)) => actions.push(Action::Broadcast(answer)),
                    Ok(None) => {}
                    Err(e) => {
                        self.snap = before;
                        return Err(e);
                    }
                }
                Ok(actions)
            }
            Command::Revert => {
                let pending = match &self.snap.stage {
                    Stage::Open {
                        pending: Some(p @ PendingUpdate { progress, .. }),
                    } if !matches!(progress, Progress::Proposed { .. }) && !p.is_revert() => {
                        p.clone()
                    }
                    _ => return Err(self.unexpected("revert")),
                };
                let abandoned = pending.body.number;
                let before = self.snap.abandoned.replace(pending);
                // Our own revert is the role's decision: the price no longer holds.
                let priced = self.snap.priced.take();
                let proposed = self.propose(Change::Revert { abandoned }, Withhold::No);
                if proposed.is_err() {
                    self.snap.abandoned = before;
                    self.snap.priced = priced;
                }
                proposed
            }
            Command::Close { fee_sat } => self.propose_close(fee_sat),
            Command::ForceClose => self.force_close(),
        }
    }

    pub(super) fn ready_to_update(&self, what: &'static str) -> Result<(), ChannelError> {
        if self.snap.phase() != Phase::Funded || !self.snap.funding_confirmed {
            return Err(self.unexpected(what));
        }
        Ok(())
    }

    /// Proposes `change` with a fresh committed nonce: persist (counter, pending), then send.
    pub(super) fn propose(
        &mut self,
        change: Change,
        withhold: Withhold,
    ) -> Result<Vec<Action>, ChannelError> {
        if !matches!(self.snap.stage, Stage::Open { .. }) {
            return Err(self.unexpected(change.kind()));
        }
        let side = self.snap.side;
        let body = self.apply(&change, side)?;
        let sighash = self.txs("propose")?.update_sighash(&body)?;
        let nonce = self.fresh_nonce(&sighash)?;
        let proposer_nonce = committed_nonce(&nonce, withhold)?;
        let state = body.number;
        if let Change::Open { funding_outpoint } = change {
            self.snap.funding_outpoint = Some(funding_outpoint);
        }
        self.snap.stage = Stage::Open {
            pending: Some(PendingUpdate {
                body,
                change: change.clone(),
                proposer_nonce,
                progress: Progress::Proposed { withhold },
            }),
        };
        let msg = Message::Propose(ProposeUpdate {
            channel_id: self.snap.channel_id,
            state,
            change,
            nonce: proposer_nonce,
        });
        self.secret_nonce = Some(nonce);
        Ok(self.commit(vec![msg], vec![]))
    }

    /// Re-sends our pending proposal after a reconnection, with a fresh nonce if the old
    /// one was lost.
    pub(super) fn repropose(&mut self) -> Result<Vec<Action>, ChannelError> {
        let Stage::Open {
            pending:
                Some(PendingUpdate {
                    body,
                    change,
                    progress: progress @ Progress::Proposed { withhold },
                    ..
                }),
        } = &self.snap.stage
        else {
            return Err(self.unexpected("repropose"));
        };
        let (body, change, progress, withhold) =
            (body.clone(), change.clone(), progress.clone(), *withhold);
        let nonce = match self.secret_nonce.take() {
            Some(nonce) => nonce,
            None => {
                let sighash = self.txs("repropose")?.update_sighash(&body)?;
                self.fresh_nonce(&sighash)?
            }
        };
        let proposer_nonce = committed_nonce(&nonce, withhold)?;
        self.secret_nonce = Some(nonce);
        let msg = Message::Propose(ProposeUpdate {
            channel_id: self.snap.channel_id,
            state: body.number,
            change: change.clone(),
            nonce: proposer_nonce,
        });
        self.snap.stage = Stage::Open {
            pending: Some(PendingUpdate {
                body,
                change,
                proposer_nonce,
                progress,
            }),
        };
        Ok(self.commit(vec![msg], vec![]))
    }

    // ---- messages ----
}

/// The nonce a proposal commits to: R, or R + Z when the signature is to be encrypted to Z.
fn committed_nonce(nonce: &SecretNonce, withhold: Withhold) -> Result<PublicNonce, ChannelError> {
    Ok(match withhold {
        Withhold::EncryptedTo(receipt_point) => nonce.encrypted_public_nonce(&receipt_point)?,
        Withhold::No | Withhold::Signature => nonce.public_nonce(),
    })
}
