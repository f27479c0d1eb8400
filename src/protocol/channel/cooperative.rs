//! The cooperative close: a MuSig2 key-path spend of the funding output, signed by both.

use super::*;

impl Channel {
    /// The last complete state, if it can be closed cooperatively, with the close paying
    /// `fee_sat` from `payer`'s balance.
    pub(super) fn close_tx(&self, payer: Party, fee_sat: u64) -> Result<Transaction, ChannelError> {
        let rec = self
            .snap
            .complete
            .as_ref()
            .ok_or(self.unexpected("close"))?;
        if !rec.body.ptlcs.is_empty() {
            return Err(ChannelError::PtlcsPending {
                count: rec.body.ptlcs.len(),
            });
        }
        let outpoint = self.snap.funding_outpoint.ok_or(self.unexpected("close"))?;
        self.txs("close")?
            .close(&rec.body, payer, fee_sat, outpoint)?
            .ok_or(ChannelError::InsufficientBalance {
                needed: fee_sat,
                available: rec.body.balance(payer),
            })
    }

    /// A fresh MuSig2 nonce for the close. Its session comes from the same persisted counter
    /// as the update nonces, advanced here; the public nonce must only leave through
    /// [`Channel::commit`].
    pub(super) fn fresh_close_nonce(&mut self, m: &[u8; 32]) -> Result<CloseNonce, ChannelError> {
        let reserved = self.fresh_nonce(m)?;
        let mut engine = sha256::Hash::engine();
        engine.input(b"asyncpay/close-session");
        engine.input(&self.snap.channel_id.0);
        engine.input(&reserved.session_id().get().to_be_bytes());
        engine.input(m);
        let session = sha256::Hash::from_engine(engine).to_byte_array();
        let aux = self.aux();
        let funding = self.txs("close")?.funding();
        Ok(CloseNonce::new(
            funding,
            &txs::keypair(&self.key),
            &session,
            &aux,
        ))
    }

    pub(super) fn propose_close(&mut self, fee_sat: u64) -> Result<Vec<Action>, ChannelError> {
        self.ready_to_update("close")?;
        let side = self.snap.side;
        let tx = self.close_tx(side, fee_sat)?;
        let nonce = self.fresh_close_nonce(&tx.compute_txid().to_byte_array())?;
        self.snap.closing = Some(CloseRecord {
            proposer: side,
            fee_sat,
            proposer_nonce: nonce.public().to_vec(),
            acceptor_nonce: None,
            acceptor_partial: None,
            signature: None,
            txid: tx.compute_txid(),
        });
        self.snap.phase = Phase::Closing;
        let msg = Message::CloseProposal(CloseProposal {
            channel_id: self.snap.channel_id,
            fee_sat,
            nonce: nonce.public(),
        });
        self.close_nonce = Some(nonce);
        Ok(self.commit(vec![msg], vec![]))
    }

    pub(super) fn close_nonces(
        proposer: Party,
        proposer_nonce: [u8; 66],
        acceptor_nonce: [u8; 66],
    ) -> [[u8; 66]; 2] {
        match proposer {
            Party::A => [proposer_nonce, acceptor_nonce],
            Party::S => [acceptor_nonce, proposer_nonce],
        }
    }

    pub(super) fn on_close_proposal(
        &mut self,
        m: CloseProposal,
    ) -> Result<Vec<Action>, ChannelError> {
        let side = self.snap.side;
        let peer = other(side);
        match (&self.snap.phase, &self.snap.closing) {
            (Phase::Funded, _) if self.snap.funding_confirmed => {}
            (Phase::Closing, Some(c)) if c.signature.is_none() => {
                if c.proposer == side && side == Party::A {
                    // Both proposed: A's close wins, as for updates.
                    return Err(ChannelError::ProposalCollision {
                        state: self.next_number().saturating_sub(1),
                    });
                }
                if c.proposer == peer
                    && CloseRecord::nonce(&c.proposer_nonce) == Some(m.nonce)
                    && c.fee_sat == m.fee_sat
                {
                    // The same proposal again (reconnection): the same answer.
                    if let (Some(nonce), Some(partial)) = (
                        c.acceptor_nonce.as_deref().and_then(CloseRecord::nonce),
                        c.acceptor_partial,
                    ) {
                        let msg = Message::CloseAccept(CloseAccept {
                            channel_id: self.snap.channel_id,
                            nonce,
                            partial_signature: partial,
                        });
                        return Ok(self.commit(vec![msg], vec![]));
                    }
                }
            }
            _ => return Err(self.unexpected("close_proposal")),
        }
        if schnorr_fun::binonce::Nonce::<schnorr_fun::fun::marker::Zero>::from_bytes(m.nonce)
            .is_none()
        {
            return Err(ChannelError::MalformedCloseNonce);
        }
        let tx = self.close_tx(peer, m.fee_sat)?;
        let nonce = self.fresh_close_nonce(&tx.compute_txid().to_byte_array())?;
        let ours = nonce.public();
        let nonces = Self::close_nonces(peer, m.nonce, ours);
        let funding = self.txs("close")?.funding().clone();
        let partial = close::partial_sign(
            &funding,
            &tx,
            side,
            &txs::keypair(&self.key),
            nonce,
            &nonces,
        )?;
        self.snap.closing = Some(CloseRecord {
            proposer: peer,
            fee_sat: m.fee_sat,
            proposer_nonce: m.nonce.to_vec(),
            acceptor_nonce: Some(ours.to_vec()),
            acceptor_partial: Some(partial),
            signature: None,
            txid: tx.compute_txid(),
        });
        self.snap.phase = Phase::Closing;
        // Our own close proposal, if any, lost the collision.
        self.close_nonce = None;
        let msg = Message::CloseAccept(CloseAccept {
            channel_id: self.snap.channel_id,
            nonce: ours,
            partial_signature: partial,
        });
        Ok(self.commit(vec![msg], vec![]))
    }

    pub(super) fn on_close_accept(&mut self, m: CloseAccept) -> Result<Vec<Action>, ChannelError> {
        let side = self.snap.side;
        let closing = match (&self.snap.phase, &self.snap.closing) {
            (Phase::Closing, Some(c)) if c.proposer == side && c.signature.is_none() => c.clone(),
            _ => return Err(self.unexpected("close_accept")),
        };
        let state = self.next_number().saturating_sub(1);
        let own_nonce =
            CloseRecord::nonce(&closing.proposer_nonce).ok_or(ChannelError::MalformedCloseNonce)?;
        let nonces = Self::close_nonces(side, own_nonce, m.nonce);
        let tx = self.close_tx(side, closing.fee_sat)?;
        let funding = self.txs("close")?.funding().clone();
        close::verify_partial(&funding, &tx, other(side), &m.partial_signature, &nonces).map_err(
            |_| ChannelError::InvalidSignature {
                what: "close_accept",
                state,
            },
        )?;
        let nonce = self
            .close_nonce
            .take()
            .ok_or(ChannelError::NonceLost { state })?;
        let own = close::partial_sign(
            &funding,
            &tx,
            side,
            &txs::keypair(&self.key),
            nonce,
            &nonces,
        )?;
        let partials = match side {
            Party::A => [own, m.partial_signature],
            Party::S => [m.partial_signature, own],
        };
        let signed = close::combine(&funding, &tx, &nonces, partials)?;
        let signature = signed.input[0]
            .witness
            .nth(0)
            .and_then(|w| <[u8; 64]>::try_from(w).ok())
            .map(Signature::from_bytes)
            .ok_or(ChannelError::InvalidSignature {
                what: "close",
                state,
            })?
            .map_err(|_| ChannelError::InvalidSignature {
                what: "close",
                state,
            })?;
        let c = self.snap.closing.as_mut().expect("checked above");
        c.acceptor_nonce = Some(m.nonce.to_vec());
        c.acceptor_partial = Some(m.partial_signature);
        c.signature = Some(signature);
        let txid = signed.compute_txid();
        let msg = Message::CloseSigned(CloseSigned {
            channel_id: self.snap.channel_id,
            signature,
        });
        Ok(self.commit(
            vec![msg],
            vec![
                Action::Broadcast(signed),
                Action::Event(Event::CloseSigned { txid }),
            ],
        ))
    }

    pub(super) fn on_close_signed(&mut self, m: CloseSigned) -> Result<Vec<Action>, ChannelError> {
        let side = self.snap.side;
        let closing = match (&self.snap.phase, &self.snap.closing) {
            (Phase::Closing, Some(c)) if c.proposer != side && c.acceptor_partial.is_some() => {
                c.clone()
            }
            _ => return Err(self.unexpected("close_signed")),
        };
        if closing.signature == Some(m.signature) {
            return Ok(vec![]);
        }
        let state = self.next_number().saturating_sub(1);
        let mut tx = self.close_tx(other(side), closing.fee_sat)?;
        let funding = self.txs("close")?.funding();
        let sighash = close::close_sighash(funding, &tx)?;
        let output_key = PublicKey::from(funding.spend_info().output_key().to_x_only_public_key());
        output_key
            .verify(&sighash, &m.signature)
            .map_err(|_| ChannelError::InvalidSignature {
                what: "close_signed",
                state,
            })?;
        tx.input[0].witness = bitcoin::Witness::from_slice(&[m.signature.to_bytes()]);
        let txid = tx.compute_txid();
        self.snap.closing.as_mut().expect("checked above").signature = Some(m.signature);
        Ok(self.commit(
            vec![],
            vec![
                Action::Broadcast(tx),
                Action::Event(Event::CloseSigned { txid }),
            ],
        ))
    }

    /// After a reconnection the proposer drives the close on: it re-sends its proposal (with
    /// a fresh nonce if its secret one died in a restart) or its aggregate signature.
    pub(super) fn reestablish_close(&mut self) -> Result<Vec<Action>, ChannelError> {
        let Some(closing) = self.snap.closing.clone() else {
            return Ok(vec![]);
        };
        if closing.proposer != self.snap.side {
            return Ok(vec![]);
        }
        if let Some(signature) = closing.signature {
            let msg = Message::CloseSigned(CloseSigned {
                channel_id: self.snap.channel_id,
                signature,
            });
            return Ok(self.commit(vec![msg], vec![]));
        }
        if self.close_nonce.is_none() {
            let nonce = self.fresh_close_nonce(&closing.txid.to_byte_array())?;
            let c = self.snap.closing.as_mut().expect("checked above");
            c.proposer_nonce = nonce.public().to_vec();
            self.close_nonce = Some(nonce);
        }
        let nonce = self
            .close_nonce
            .as_ref()
            .map(|n| n.public())
            .expect("set above");
        let msg = Message::CloseProposal(CloseProposal {
            channel_id: self.snap.channel_id,
            fee_sat: closing.fee_sat,
            nonce,
        });
        Ok(self.commit(vec![msg], vec![]))
    }

    // ---- on-chain PTLCs ----
}
