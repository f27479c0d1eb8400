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
        self.snap.stage = Stage::Closing {
            close: CloseRecord {
                proposer: side,
                fee_sat,
                proposer_nonce: nonce.public(),
                txid: tx.compute_txid(),
                progress: CloseProgress::Proposed,
            },
        };
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
        match &self.snap.stage {
            Stage::Open { .. }
                if self.snap.phase() == Phase::Funded && self.snap.funding_confirmed => {}
            Stage::Closing { close } => match close.progress {
                CloseProgress::Signed { .. } => return Err(self.unexpected("close_proposal")),
                // Both proposed: A's close wins, as for updates.
                CloseProgress::Proposed if close.proposer == side && side == Party::A => {
                    return Err(ChannelError::ProposalCollision {
                        state: self.next_number().saturating_sub(1),
                    });
                }
                // The same proposal again (reconnection): the same answer.
                CloseProgress::Accepted(acceptor)
                    if close.proposer == peer
                        && close.proposer_nonce == m.nonce
                        && close.fee_sat == m.fee_sat =>
                {
                    let msg = Message::CloseAccept(CloseAccept {
                        channel_id: self.snap.channel_id,
                        nonce: acceptor.nonce,
                        partial_signature: acceptor.partial,
                    });
                    return Ok(self.commit(vec![msg], vec![]));
                }
                CloseProgress::Proposed | CloseProgress::Accepted(_) => {}
            },
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
        self.snap.stage = Stage::Closing {
            close: CloseRecord {
                proposer: peer,
                fee_sat: m.fee_sat,
                proposer_nonce: m.nonce,
                txid: tx.compute_txid(),
                progress: CloseProgress::Accepted(AcceptorShare {
                    nonce: ours,
                    partial,
                }),
            },
        };
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
        let mut closing = match &self.snap.stage {
            Stage::Closing { close }
                if close.proposer == side && close.progress == CloseProgress::Proposed =>
            {
                close.clone()
            }
            _ => return Err(self.unexpected("close_accept")),
        };
        let state = self.next_number().saturating_sub(1);
        let nonces = Self::close_nonces(side, closing.proposer_nonce, m.nonce);
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
        closing.progress = CloseProgress::Signed {
            acceptor: AcceptorShare {
                nonce: m.nonce,
                partial: m.partial_signature,
            },
            signature,
        };
        self.snap.stage = Stage::Closing { close: closing };
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
        let (mut closing, acceptor) = match &self.snap.stage {
            Stage::Closing { close } if close.proposer != side => match close.progress {
                CloseProgress::Accepted(acceptor) => (close.clone(), acceptor),
                CloseProgress::Signed { signature, .. } if signature == m.signature => {
                    return Ok(vec![])
                }
                CloseProgress::Signed { acceptor, .. } => (close.clone(), acceptor),
                CloseProgress::Proposed => return Err(self.unexpected("close_signed")),
            },
            _ => return Err(self.unexpected("close_signed")),
        };
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
        closing.progress = CloseProgress::Signed {
            acceptor,
            signature: m.signature,
        };
        self.snap.stage = Stage::Closing { close: closing };
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
        let Stage::Closing { close } = &self.snap.stage else {
            return Ok(vec![]);
        };
        if close.proposer != self.snap.side {
            return Ok(vec![]);
        }
        let mut close = close.clone();
        match close.progress {
            CloseProgress::Signed { signature, .. } => {
                let msg = Message::CloseSigned(CloseSigned {
                    channel_id: self.snap.channel_id,
                    signature,
                });
                return Ok(self.commit(vec![msg], vec![]));
            }
            CloseProgress::Proposed => {}
            // The proposer combines the acceptor's answer at once: never stored.
            CloseProgress::Accepted(_) => return Ok(vec![]),
        }
        let nonce = match self.close_nonce.take() {
            Some(nonce) => nonce,
            None => self.fresh_close_nonce(&close.txid.to_byte_array())?,
        };
        close.proposer_nonce = nonce.public();
        self.close_nonce = Some(nonce);
        let msg = Message::CloseProposal(CloseProposal {
            channel_id: self.snap.channel_id,
            fee_sat: close.fee_sat,
            nonce: close.proposer_nonce,
        });
        self.snap.stage = Stage::Closing { close };
        Ok(self.commit(vec![msg], vec![]))
    }

    // ---- on-chain PTLCs ----
}
