//! How the driver answers each control request: the one match over [`Request`], carried
//! out on the task that owns the core.

use bitcoin::{Amount, FeeRate, Txid};
use serde_json::{json, Value};

use crate::crypto::keys::PublicKey;
use crate::mailbox::keys::{Contact, StaticOffer};
use crate::node::core::{NodeCommand, NodeError, NodeInput};
use crate::protocol::messages::ChannelId;
use crate::protocol::payment::{PayerStatus, PaymentId};
use crate::tx::Party;

use super::driver::Node;
use super::request::Request;
use super::{
    emit, list_channels, list_payments, lsp_policy, now, NodeEvent, RuntimeError,
    DEFAULT_CLOSE_FEE_SAT,
};

impl Node {
    pub(super) async fn control(&mut self, request: Request) -> Result<Value, RuntimeError> {
        let entropy: [u8; 32] = rand::random();
        let outputs = self.core.handle(NodeInput::Entropy(entropy))?;
        self.carry_out(outputs).await?;
        match request {
            Request::Info => Ok(self.info()),
            Request::Address => {
                let address = tokio::task::block_in_place(|| self.io.wallet.new_address())?;
                Ok(json!({ "address": address.to_string() }))
            }
            Request::Descriptors => {
                let (external, internal) = self.io.wallet.public_descriptors();
                Ok(json!({ "external": external, "internal": internal }))
            }
            Request::Balance => {
                let balance = self.io.wallet.balance();
                Ok(json!({
                    "confirmed_sat": balance.confirmed.to_sat(),
                    "pending_sat": (balance.trusted_pending + balance.untrusted_pending).to_sat(),
                }))
            }
            Request::Withdraw {
                address,
                amount_sat,
                feerate_sat_vb,
            } => {
                let address = address
                    .parse::<bitcoin::Address<bitcoin::address::NetworkUnchecked>>()
                    .map_err(|e| RuntimeError::Refused {
                        reason: format!("address {address:?}: {e}"),
                    })?
                    .require_network(self.io.wallet.network())
                    .map_err(|e| RuntimeError::Refused {
                        reason: format!("address: {e}"),
                    })?;
                let feerate = FeeRate::from_sat_per_vb(feerate_sat_vb.unwrap_or(2)).ok_or(
                    RuntimeError::Refused {
                        reason: "feerate out of range".into(),
                    },
                )?;
                let electrum = self.io.electrum.clone();
                let txid = tokio::task::block_in_place(|| -> Result<Txid, RuntimeError> {
                    let tx = self.io.wallet.withdraw(
                        address.script_pubkey(),
                        amount_sat.map(Amount::from_sat),
                        feerate,
                    )?;
                    Ok(self.io.wallet.broadcast(&electrum, &tx)?)
                })?;
                self.io.reporter.report(NodeEvent::Withdrawn {
                    txid,
                    to: address.to_string(),
                });
                Ok(json!({ "txid": txid.to_string() }))
            }
            // Answered by `connect_command` without waiting in the queue.
            Request::Connect { .. } => Ok(json!({})),
            Request::Open { peer, capacity_sat } => {
                if !self.io.writers.contains_key(&peer) {
                    return Err(RuntimeError::NotConnected(peer.into()));
                }
                let channel_id = ChannelId(rand::random());
                let outputs = self
                    .core
                    .handle(NodeInput::Command(NodeCommand::OpenChannel {
                        peer,
                        channel_id,
                        capacity_sat,
                        shared_delay: self.io.shared_delay,
                    }))?;
                self.carry_out(outputs).await?;
                Ok(json!({ "channel_id": hex::encode(channel_id.0) }))
            }
            Request::Contact {
                amount_sat,
                description,
                expires_in_secs,
                lsp,
            } => {
                let issued_at = now();
                let offer = StaticOffer {
                    amount_sat,
                    description,
                    expires_at: expires_in_secs.map(|s| issued_at.saturating_add(s)),
                    lsp,
                };
                let contact = Contact::sign_offer(
                    &self.io.mailbox_key,
                    self.io.mailbox.base_url(),
                    issued_at,
                    Some(self.core.receipt_card()),
                    (offer != StaticOffer::default()).then_some(offer),
                )?;
                Ok(serde_json::to_value(contact)?)
            }
            Request::Pay {
                lsp,
                amount_sat,
                contact,
                fee_sat,
                note,
                hold_blocks,
                irrevocable,
                hand_over,
            } => {
                let verified = contact.verify()?;
                let payee = PublicKey::from(verified.node_key);
                let receipts = verified.receipts.ok_or(RuntimeError::NoReceiptSlots)?;
                // A static offer: paid as it says, or not at all; its description is the
                // letter's note (signed by the receipt) unless the payer writes one.
                let note = match &verified.offer {
                    Some(offer) => {
                        offer.check(amount_sat, &lsp, now())?;
                        note.or_else(|| offer.description.clone())
                    }
                    None => note,
                };
                self.io
                    .store
                    .put_contact(&payee, &serde_json::to_string(&contact)?)?;
                let fee_sat = fee_sat.unwrap_or_else(|| lsp_policy(0).fee_for(amount_sat));
                let payment_id = PaymentId(rand::random());
                if hand_over {
                    // Before the core can ask for the letter to be posted.
                    self.io.store.put_hand_over(&payment_id.to_string())?;
                }
                let outputs = self.core.handle(NodeInput::Command(NodeCommand::Pay {
                    payment_id,
                    lsp,
                    payee,
                    amount_sat,
                    fee_sat,
                    note: note.unwrap_or_default(),
                    receipts,
                    hold_blocks,
                    irrevocable,
                }))?;
                self.carry_out(outputs).await?;
                // A transfer the channel refused (e.g. above the balance) leaves the payment
                // void at once: the caller hears why instead of polling a payment that waits.
                let void_reason = self.core.payer().and_then(|p| {
                    p.payments()
                        .find(|(id, _)| **id == payment_id)
                        .and_then(|(_, r)| match &r.status {
                            PayerStatus::Void { reason, .. } => Some(reason.clone()),
                            _ => None,
                        })
                });
                if let Some(reason) = void_reason {
                    return Err(RuntimeError::PaymentRefused { payment_id, reason });
                }
                Ok(json!({ "payment_id": payment_id.to_string(), "fee_sat": fee_sat }))
            }
            Request::Letter { payment_id } => {
                let no_letter = |why| RuntimeError::NoLetter { payment_id, why };
                match self.io.store.handed(&payment_id.to_string())? {
                    None => Err(no_letter("the payment posts its letter to the mailbox")),
                    Some(None) => Err(no_letter("the LSP's offer has not come yet")),
                    Some(Some(envelope)) => Ok(json!({
                        "payment_id": payment_id.to_string(),
                        "envelope": hex::encode(envelope),
                    })),
                }
            }
            Request::Receive {
                lsp,
                amount_sat,
                payer_contact,
            } => {
                // Reverse variant: be paid while offline by a payer buying our LSP's signature.
                let verified = payer_contact.verify()?;
                let payer = PublicKey::from(verified.node_key);
                self.io
                    .store
                    .put_contact(&payer, &serde_json::to_string(&payer_contact)?)?;
                let own = Contact::sign(&self.io.mailbox_key, self.io.mailbox.base_url(), now());
                let payment_id = PaymentId(rand::random());
                let outputs = self.core.handle(NodeInput::Command(NodeCommand::Receive {
                    payment_id,
                    lsp,
                    payer,
                    amount_sat,
                    contact: Some(serde_json::to_value(own)?),
                }))?;
                self.carry_out(outputs).await?;
                Ok(json!({ "payment_id": payment_id.to_string() }))
            }
            Request::Cancel { payment_id } => {
                let outputs = self
                    .core
                    .handle(NodeInput::Command(NodeCommand::Cancel { payment_id }))?;
                self.carry_out(outputs).await?;
                Ok(json!({}))
            }
            Request::Proof { payment_id } => {
                let record = self
                    .core
                    .payer()
                    .and_then(|p| p.payment(&payment_id))
                    .ok_or(RuntimeError::NoProof(payment_id))?;
                match &record.status {
                    PayerStatus::Paid { proof, .. } | PayerStatus::Completed { proof, .. } => {
                        Ok(serde_json::to_value(proof)?)
                    }
                    _ => Err(RuntimeError::NoProof(payment_id)),
                }
            }
            Request::Fetch => {
                let n = self.fetch_letters().await?;
                Ok(json!({ "letters": n }))
            }
            Request::ForceClose { channel_id } => {
                let outputs = self
                    .core
                    .handle(NodeInput::Command(NodeCommand::ForceClose { channel_id }))?;
                self.carry_out(outputs).await?;
                Ok(json!({}))
            }
            Request::Close {
                channel_id,
                fee_sat,
            } => {
                let fee_sat = fee_sat.unwrap_or(DEFAULT_CLOSE_FEE_SAT);
                let outputs = self.core.handle(NodeInput::Command(NodeCommand::Close {
                    channel_id,
                    fee_sat,
                }))?;
                self.carry_out(outputs).await?;
                // The close's txid is fixed by the proposal (the signature is witness data).
                let txid = self
                    .core
                    .channels()
                    .get(&channel_id)
                    .and_then(|e| e.channel.snapshot().closing())
                    .map(|c| c.txid)
                    .ok_or(RuntimeError::Core(NodeError::UnknownChannel(channel_id)))?;
                Ok(json!({ "txid": txid.to_string(), "fee_sat": fee_sat }))
            }
            Request::ListChannels => {
                let writers = &self.io.writers;
                let channels = list_channels(&self.core, |peer| writers.contains_key(peer));
                Ok(serde_json::to_value(channels)?)
            }
            Request::ListPayments => Ok(serde_json::to_value(list_payments(&self.core))?),
            Request::Stop => {
                self.io.stop = true;
                Ok(json!({}))
            }
            Request::CrashAt { point } => {
                emit(json!({"event": "crash_armed", "point": point.to_string()}));
                self.io.crash = Some((point, 0));
                Ok(json!({}))
            }
        }
    }

    fn info(&self) -> Value {
        let channels: Vec<Value> = self
            .core
            .channels()
            .iter()
            .map(|(id, e)| {
                let snap = e.channel.snapshot();
                let (state, to_self, to_peer) = match e.channel.latest() {
                    Some(body) => {
                        let other = match snap.side {
                            Party::A => Party::S,
                            Party::S => Party::A,
                        };
                        (
                            Some(body.number),
                            body.balance(snap.side),
                            body.balance(other),
                        )
                    }
                    None => (None, 0, 0),
                };
                json!({
                    "channel_id": hex::encode(id.0),
                    "peer": e.peer.to_string(),
                    "phase": format!("{:?}", e.channel.phase()),
                    "funding_outpoint": snap.funding_outpoint.map(|o| o.to_string()),
                    "state": state,
                    "to_self_sat": to_self,
                    "to_peer_sat": to_peer,
                    "ptlcs": e.channel.latest().map_or(0, |b| b.ptlcs.len()),
                    "connected": self.io.writers.contains_key(&e.peer),
                })
            })
            .collect();
        // Typed views, never the stored records: no withheld signature leaves the node.
        let payments = crate::node::views::payments(&self.core);
        let reverse = crate::node::views::reverse(&self.core);
        let balance = self.io.wallet.balance();
        json!({
            "node_key": self.core.public_key().to_string(),
            "role": self.core.role(),
            "height": self.io.height,
            "wallet_sat": balance.confirmed.to_sat(),
            "wallet_pending_sat": (balance.trusted_pending + balance.untrusted_pending).to_sat(),
            "channels": channels,
            "payments": payments,
            "reverse": reverse,
        })
    }
}
