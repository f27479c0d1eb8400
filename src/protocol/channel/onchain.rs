//! The chain side: force close, answering older updates, settlement, PTLC claims and
//! timeouts, and publishing again what must still confirm.

use super::*;

impl Channel {
    pub(super) fn provide_secret(
        &mut self,
        id: u64,
        secret: AdaptorSecret,
    ) -> Result<Vec<Action>, ChannelError> {
        let rec = self
            .snap
            .complete
            .as_ref()
            .ok_or(self.unexpected("provide_secret"))?;
        let ptlc = rec
            .body
            .ptlcs
            .iter()
            .find(|p| p.id == id)
            .ok_or(ChannelError::UnknownPtlc { id })?;
        if ptlc.offerer == self.snap.side {
            return Err(ChannelError::NotPayee { id, what: "claim" });
        }
        if !sells(&secret, &ptlc.point) {
            return Err(ChannelError::WrongSecret { id });
        }
        self.snap
            .ptlc_secrets
            .insert(id, RevealedSecret(secret.to_secret_bytes()));
        match self.resolve_ptlcs() {
            Ok(others) => Ok(self.commit(vec![], others)),
            Err(e) => {
                self.snap.ptlc_secrets.remove(&id);
                Err(e)
            }
        }
    }

    /// The PTLC outputs of our settlement once it confirmed, with where they are.
    pub(super) fn settled_ptlcs(&self) -> Result<Vec<(PtlcRecord, OutPoint)>, ChannelError> {
        let (Some(oc), Some(rec)) = (self.snap.on_chain(), &self.snap.complete) else {
            return Ok(vec![]);
        };
        let Some(txid) = oc.settlement_txid else {
            return Ok(vec![]);
        };
        if oc.state != rec.body.number || rec.body.ptlcs.is_empty() {
            return Ok(vec![]);
        }
        let settlement = self.txs("settled_ptlcs")?.settlement(&rec.body)?;
        Ok(rec
            .body
            .ptlcs
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let vout = settlement.ptlc_vout(i)?;
                Some((p.clone(), OutPoint { txid, vout }))
            })
            .collect())
    }

    /// Claims (we are paid and know the secret) and timeouts (we offered and the expiry has
    /// come) of settled PTLC outputs not yet resolved, recorded as resolved.
    pub(super) fn resolve_ptlcs(&mut self) -> Result<Vec<Action>, ChannelError> {
        let mut others = vec![];
        let mut resolved = vec![];
        for (ptlc, outpoint) in self.settled_ptlcs()? {
            let done = self
                .snap
                .on_chain()
                .is_some_and(|oc| oc.resolved_ptlcs.contains(&ptlc.id));
            if done {
                continue;
            }
            if let Some(tx) = self.ptlc_resolution(&ptlc, outpoint)? {
                others.push(Action::Broadcast(tx));
                resolved.push(ptlc.id);
            }
        }
        if let Some(oc) = self.snap.on_chain_mut() {
            oc.resolved_ptlcs.extend(resolved);
        }
        Ok(others)
    }

    /// What takes a settled PTLC output for us now, if anything: the claim of one we are
    /// paid by whose secret we know, or the timeout of one we offered once its expiry is
    /// reached (its nLockTime is the expiry: valid in the next block).
    pub(super) fn ptlc_resolution(
        &mut self,
        ptlc: &PtlcRecord,
        outpoint: OutPoint,
    ) -> Result<Option<Transaction>, ChannelError> {
        if ptlc.offerer != self.snap.side {
            let Some(secret) = self.snap.ptlc_secrets.get(&ptlc.id) else {
                return Ok(None);
            };
            let t = AdaptorSecret::from_bytes(secret.0)
                .map_err(|_| ChannelError::WrongSecret { id: ptlc.id })?;
            let aux = self.aux();
            let built = self.txs("claim")?;
            let claim = built.claim(&built.ptlc(ptlc))?;
            // The peer's half as verified when we accepted the PTLC; after a restart that
            // check is not in the record (it is never stored), so it is made again here.
            let verified = match ptlc.verified_claim() {
                Some(verified) => verified.clone(),
                None => claim.verify_offerer_signature(&ptlc.claim_signature)?,
            };
            let tx =
                claim.finish_verified(outpoint, &verified, &t, &txs::keypair(&self.key), &aux)?;
            return Ok(Some(tx));
        }
        if self.snap.height < ptlc.expiry.height() {
            return Ok(None);
        }
        let aux = self.aux();
        let built = self.txs("timeout")?;
        let timeout = crate::tx::Timeout::new(
            &built.ptlc(ptlc),
            outpoint,
            built.payout(self.snap.side).clone(),
            bitcoin::Amount::from_sat(TIMEOUT_FEE_SAT),
        )?;
        Ok(Some(timeout.sign(&txs::keypair(&self.key), &aux)?))
    }

    /// A spend of one of our settled PTLC outputs: a claim of a PTLC we offered reveals its
    /// secret.
    pub(super) fn on_ptlc_spend(
        &mut self,
        tx: &Transaction,
        confirmed_at: Option<u32>,
    ) -> Result<Option<Vec<Action>>, ChannelError> {
        let settled = self.settled_ptlcs()?;
        let Some((ptlc, _)) = settled
            .into_iter()
            .find(|(_, outpoint)| tx.input.iter().any(|i| i.previous_output == *outpoint))
        else {
            return Ok(None);
        };
        let mut others = vec![];
        let mut reported = false;
        let output = self.txs("ptlc_spend")?.ptlc(&ptlc);
        let timeout_leaf = output.timeout_leaf();
        let by_timeout = tx.input.iter().any(|i| {
            i.witness
                .taproot_leaf_script()
                .is_some_and(|leaf| leaf.script == timeout_leaf.as_script())
        });
        let already = self
            .snap
            .on_chain()
            .is_some_and(|oc| oc.reported_ptlcs.contains(&ptlc.id));
        // Our claim of a PTLC we are paid by confirmed (a spend not by the offerer's
        // timeout): reported once, for the role that waits to be paid.
        if ptlc.offerer != self.snap.side
            && self.snap.ptlc_secrets.contains_key(&ptlc.id)
            && !by_timeout
            && confirmed_at.is_some()
            && !already
        {
            reported = true;
            others.push(Action::Event(Event::PtlcClaimed {
                id: ptlc.id,
                point: ptlc.point,
            }));
        }
        if ptlc.offerer == self.snap.side && !self.snap.ptlc_secrets.contains_key(&ptlc.id) {
            if let Ok(t) = crate::tx::ptlc::extract_secret(&output, &ptlc.claim_signature, tx) {
                let secret = RevealedSecret(t.to_secret_bytes());
                self.snap.ptlc_secrets.insert(ptlc.id, secret.clone());
                others.push(Action::Event(Event::PtlcSecretLearned {
                    id: ptlc.id,
                    secret,
                }));
            } else {
                // Our own timeout took it back, as a fail would have off chain: reported
                // once it is confirmed (in the mempool the peer's claim can still replace
                // it) and only for a spend by the timeout leaf itself.
                if by_timeout && confirmed_at.is_some() && !already {
                    reported = true;
                    others.push(Action::Event(Event::PtlcFailed {
                        id: ptlc.id,
                        point: ptlc.point,
                        offerer: ptlc.offerer,
                    }));
                }
            }
        }
        // Settled PTLC outputs exist only once an update is on chain.
        let Some(oc) = self.snap.on_chain_mut() else {
            return Err(self.unexpected("ptlc_spend"));
        };
        if reported {
            oc.reported_ptlcs.push(ptlc.id);
        }
        let news = !oc.spent_ptlcs.contains(&ptlc.id);
        if news {
            oc.spent_ptlcs.push(ptlc.id);
        }
        if !oc.resolved_ptlcs.contains(&ptlc.id) {
            oc.resolved_ptlcs.push(ptlc.id);
        } else if others.is_empty() && !news {
            return Ok(Some(vec![]));
        }
        Ok(Some(self.commit(vec![], others)))
    }

    // ---- chain ----

    pub(super) fn force_close(&mut self) -> Result<Vec<Action>, ChannelError> {
        let rec = self
            .snap
            .complete
            .clone()
            .ok_or(self.unexpected("force_close"))?;
        let outpoint = self
            .snap
            .funding_outpoint
            .ok_or(self.unexpected("force_close"))?;
        let spent = match self.snap.on_chain() {
            Some(oc) if oc.state < rec.body.number => {
                let leaf = self
                    .snap
                    .settlement_leaf_hashes
                    .get(&oc.state)
                    .copied()
                    .ok_or(ChannelError::UnknownOnChainState { state: oc.state })?;
                txs::Spent::Update {
                    outpoint: oc.outpoint,
                    state: u32::try_from(oc.state)
                        .map_err(|_| ChannelError::UnknownOnChainState { state: oc.state })?,
                    settlement_leaf_hash: leaf,
                }
            }
            Some(_) => return Ok(vec![]),
            None => txs::Spent::Funding(outpoint),
        };
        let tx = self.latest_update(&spent)?;
        self.snap.force_closing(true, None);
        Ok(self.commit(vec![], vec![Action::Broadcast(tx)]))
    }

    /// What we must still get confirmed, published again: our latest update while none is
    /// seen on chain after we closed; our answer to an older update on chain; our settlement
    /// while it is unconfirmed. Nothing changes state, so nothing is persisted.
    pub(super) fn rebroadcast(&mut self) -> Result<Vec<Action>, ChannelError> {
        if let Some(oc) = self.snap.on_chain() {
            if oc.settlement_txid.is_some() {
                // Settled: every PTLC output we took and have not seen spent, again.
                let pending: Vec<u64> = oc
                    .resolved_ptlcs
                    .iter()
                    .filter(|id| !oc.spent_ptlcs.contains(id))
                    .copied()
                    .collect();
                let mut actions = vec![];
                for (ptlc, outpoint) in self.settled_ptlcs()? {
                    if pending.contains(&ptlc.id) {
                        if let Some(tx) = self.ptlc_resolution(&ptlc, outpoint)? {
                            actions.push(Action::Broadcast(tx));
                        }
                    }
                }
                return Ok(actions);
            }
        }
        let Some(rec) = &self.snap.complete else {
            return Ok(vec![]);
        };
        match (self.snap.on_chain(), self.snap.phase()) {
            (None, Phase::ForceClosing) => {
                let outpoint = self
                    .snap
                    .funding_outpoint
                    .ok_or(self.unexpected("rebroadcast"))?;
                let tx = self.latest_update(&txs::Spent::Funding(outpoint))?;
                Ok(vec![Action::Broadcast(tx)])
            }
            (Some(oc), _) if oc.settlement_txid.is_none() => {
                if oc.state < rec.body.number {
                    return Ok(self
                        .override_on_chain()?
                        .map(Action::Broadcast)
                        .into_iter()
                        .collect());
                }
                if oc.settlement_broadcast && oc.state == rec.body.number {
                    let tx =
                        txs::bound_settlement(self.txs("rebroadcast")?, &rec.body, oc.outpoint)?;
                    return Ok(vec![Action::Broadcast(tx)]);
                }
                Ok(vec![])
            }
            _ => Ok(vec![]),
        }
    }

    pub(super) fn on_chain(&mut self, event: ChainEvent) -> Result<Vec<Action>, ChannelError> {
        match event {
            ChainEvent::Block { height } => {
                if height <= self.snap.height {
                    return Ok(vec![]);
                }
                let before = self.snap.height;
                self.snap.height = height;
                let mut others = vec![];
                let mut settle = false;
                let settlement =
                    match (self.snap.on_chain(), &self.snap.complete, &self.snap.params) {
                        (Some(oc), Some(rec), Some(params)) => oc.confirmed_at.and_then(|at| {
                            let ready = height + 1 >= at + u32::from(params.shared_delay);
                            (oc.state == rec.body.number && ready && !oc.settlement_broadcast).then(
                                || {
                                    let built =
                                        self.txs.get_or_init(|| txs::ChannelTxs::new(params));
                                    txs::bound_settlement(built, &rec.body, oc.outpoint)
                                },
                            )
                        }),
                        _ => None,
                    };
                match settlement {
                    Some(Ok(tx)) => {
                        others.push(Action::Broadcast(tx));
                        settle = true;
                    }
                    Some(Err(e)) => {
                        self.snap.height = before;
                        return Err(e.into());
                    }
                    None => {}
                }
                let resolved = self.snap.on_chain().map(|oc| oc.resolved_ptlcs.clone());
                match self.resolve_ptlcs() {
                    Ok(actions) => others.extend(actions),
                    Err(e) => {
                        self.snap.height = before;
                        if let (Some(oc), Some(resolved)) = (self.snap.on_chain_mut(), resolved) {
                            oc.resolved_ptlcs = resolved;
                        }
                        return Err(e);
                    }
                }
                if let Some(ptlc) = self.ptlc_due(height).cloned() {
                    let closed = self
                        .force_close()
                        .inspect_err(|_| self.snap.height = before)?;
                    others.push(Action::Event(Event::ClosingForPtlc {
                        id: ptlc.id,
                        expiry: ptlc.expiry.height(),
                    }));
                    // `force_close` persisted; what follows is reported after it.
                    let mut actions = closed;
                    actions.extend(others);
                    return Ok(actions);
                }
                if others.is_empty() {
                    // The height is re-fed after a restart; no need to persist it alone.
                    // What we published and have not yet seen on chain is published again
                    // (a dropped or outbid broadcast is retried every block until moot).
                    return self
                        .rebroadcast()
                        .inspect_err(|_| self.snap.height = before);
                }
                if let Some(oc) = self.snap.on_chain_mut() {
                    oc.settlement_broadcast |= settle;
                }
                Ok(self.commit(vec![], others))
            }
            ChainEvent::Confirmed { txid, .. } => {
                let is_funding = self.snap.funding_outpoint.is_some_and(|o| o.txid == txid);
                if is_funding && !self.snap.funding_confirmed {
                    self.snap.funding_confirmed = true;
                    return Ok(self.commit(vec![], vec![Action::Event(Event::FundingConfirmed)]));
                }
                Ok(vec![])
            }
            ChainEvent::Spend { tx, confirmed_at } => self.on_spend(tx, confirmed_at),
        }
    }

    pub(super) fn on_spend(
        &mut self,
        tx: Transaction,
        confirmed_at: Option<u32>,
    ) -> Result<Vec<Action>, ChannelError> {
        if let Some(actions) = self.on_ptlc_spend(&tx, confirmed_at)? {
            return Ok(actions);
        }
        // The update we know is on chain, again: news only when it has just confirmed. (It
        // spends an outpoint we no longer watch once it is the one on chain.)
        if let Some(oc) = self.snap.on_chain_mut() {
            if oc.outpoint.txid == tx.compute_txid() {
                if oc.confirmed_at.is_none() && confirmed_at.is_some() {
                    oc.confirmed_at = confirmed_at;
                    return Ok(self.commit(vec![], vec![]));
                }
                return Ok(vec![]);
            }
        }
        let watched: Vec<OutPoint> = self
            .snap
            .funding_outpoint
            .into_iter()
            .chain(self.snap.on_chain().map(|oc| oc.outpoint))
            .collect();
        let Some(input) = tx
            .input
            .iter()
            .find(|i| watched.contains(&i.previous_output))
        else {
            return Ok(vec![]);
        };
        let locktime = tx.lock_time.to_consensus_u32();
        let is_update = locktime >= STATE_LOCKTIME_BASE && input.witness.len() == 4;
        if !is_update {
            // Our cooperative close, confirmed.
            if let Some(c) = self.snap.closing() {
                let txid = tx.compute_txid();
                if c.txid == txid && confirmed_at.is_some() && self.snap.phase() != Phase::Closed {
                    self.snap.closed(None);
                    return Ok(self.commit(
                        vec![],
                        vec![Action::Event(Event::ClosedCooperatively { txid })],
                    ));
                }
            }
            // A settlement of the on-chain state (leaf + control block) or a close.
            let settling = self.snap.on_chain().filter(|oc| {
                input.previous_output == oc.outpoint
                    && confirmed_at.is_some()
                    && oc.settlement_txid.is_none()
            });
            if let Some(oc) = settling {
                let state = oc.state;
                let settled = OnChain {
                    settlement_txid: Some(tx.compute_txid()),
                    ..oc.clone()
                };
                let before = self.snap.clone();
                // A state after the settled one can never be published now.
                self.snap.closed(Some(settled));
                let resolved = self.settled_ptlcs().and_then(|settled| {
                    let mut others: Vec<Action> = settled
                        .into_iter()
                        .map(|(_, outpoint)| Action::Watch(outpoint))
                        .collect();
                    others.push(Action::Event(Event::Settled { state }));
                    others.extend(self.resolve_ptlcs()?);
                    Ok(others)
                });
                return match resolved {
                    Ok(others) => Ok(self.commit(vec![], others)),
                    Err(e) => {
                        // Nothing changed: forget the settlement again.
                        self.snap = before;
                        Err(e)
                    }
                };
            }
            return Ok(vec![]);
        }
        let m = u64::from(locktime - STATE_LOCKTIME_BASE);
        let params = self.params("spend")?.clone();
        let mut others = vec![];
        // A state we countersigned (or withheld) whose missing signature is now public.
        if let Some(pending) = self.snap.pending().cloned() {
            if pending.body.number == m && self.complete_number().is_none_or(|n| n < m) {
                let (sig_a, sig_s) = (witness_sig(input, 1), witness_sig(input, 0));
                let proposer = pending.proposer(self.snap.side);
                let proposer_sig = match proposer {
                    Party::A => sig_a,
                    Party::S => sig_s,
                };
                // Our own signature carries the nonce we committed to (R, or R + Z for a
                // pre-signature): we made no other signature on this state.
                let committed = proposer != self.snap.side
                    || proposer_sig.is_some_and(|sig| sig.nonce() == pending.proposer_nonce);
                if let (Some(sig), true) = (proposer_sig, committed) {
                    let digests = self.txs("spend")?.digests(&pending.body)?;
                    if key_of(&params, proposer)
                        .verify(&digests.sighash, &sig)
                        .is_ok()
                    {
                        let other_sig = match proposer {
                            Party::A => sig_s,
                            Party::S => sig_a,
                        };
                        if let Some(other_sig) = other_sig {
                            // Signed on chain: the state is ours to answer from now on, also
                            // if we never signed it ourselves (our key signed it elsewhere:
                            // a restored copy of this node, say).
                            std::sync::Arc::make_mut(&mut self.snap.settlement_leaf_hashes)
                                .entry(pending.body.number)
                                .or_insert(digests.settlement_leaf_hash);
                            others.extend(self.make_complete(pending, sig, other_sig)?);
                        }
                    }
                }
            }
        }
        let rec = self.snap.complete.clone().ok_or(self.unexpected("spend"))?;
        let latest = rec.body.number;
        if m > latest {
            return Err(ChannelError::UnknownOnChainState { state: m });
        }
        let outpoint = OutPoint {
            txid: tx.compute_txid(),
            vout: 0,
        };
        let already = self
            .snap
            .on_chain()
            .is_some_and(|oc| oc.outpoint == outpoint);
        // A restarted driver hands every spend it finds to the channel again. An older update
        // than the one known to be on chain is history (the known one spends it or conflicts
        // with it).
        if let Some(oc) = self.snap.on_chain() {
            let history = m < oc.state && (oc.confirmed_at.is_some() || confirmed_at.is_none());
            if history {
                return Ok(if others.is_empty() {
                    others
                } else {
                    self.commit(vec![], others)
                });
            }
        }
        // The peer's withheld proposal one past our latest state stays: its signature may
        // still be sold, and then the completed state overrides what is on chain as long as
        // that state's settlement has not confirmed (see `Channel::sale_window`).
        let sellable = self.sellable_on_chain(latest);
        self.secret_nonce = None;
        if !already {
            others.push(Action::Watch(outpoint));
        }
        let settlement_broadcast = self
            .snap
            .on_chain()
            .is_some_and(|oc| oc.outpoint == outpoint && oc.settlement_broadcast);
        self.snap.force_closing(
            sellable,
            Some(OnChain {
                state: m,
                outpoint,
                confirmed_at,
                settlement_broadcast,
                settlement_txid: None,
                resolved_ptlcs: vec![],
                spent_ptlcs: vec![],
                reported_ptlcs: vec![],
            }),
        );
        if m < latest && !already {
            let answer = self
                .override_on_chain()?
                .ok_or(ChannelError::UnknownOnChainState { state: m })?;
            others.push(Action::Broadcast(answer));
            others.push(Action::Event(Event::StaleUpdateAnswered {
                stale: m,
                latest,
            }));
        }
        Ok(self.commit(vec![], others))
    }
}
