//! From the channels to the roles: channel actions carried out, channel events handed to
//! the role that needs them, matched exhaustively.

use super::*;

/// Where a channel event happened: the channel, its peer, and our side of it.
pub(super) struct Seen {
    pub(super) id: ChannelId,
    pub(super) peer: PublicKey,
    pub(super) side: Party,
}

impl NodeCore {
    pub(super) fn channel_input(
        &mut self,
        id: ChannelId,
        input: Input,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        let entry = self
            .channels
            .get_mut(&id)
            .ok_or(NodeError::UnknownChannel(id))?;
        let actions = entry.channel.handle(input)?;
        self.route_channel(id, actions, out)?;
        self.run_queued(id, out)
    }

    pub(super) fn route_channel(
        &mut self,
        id: ChannelId,
        actions: Vec<channel::Action>,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        let peer = self.channels[&id].peer;
        let side = self.channels[&id].channel.snapshot().side;
        for action in actions {
            match action {
                channel::Action::Persist(snapshot) => out.persist_channel(peer, snapshot),
                channel::Action::Send(msg) => {
                    let what = msg.name();
                    out.push(NodeOutput::Send {
                        to: peer,
                        frame: PeerMessage::Channel(msg).encode(),
                        what,
                    });
                }
                channel::Action::Broadcast(tx) => out.push(NodeOutput::Broadcast(tx)),
                channel::Action::Watch(o) => out.push(NodeOutput::Watch(o)),
                channel::Action::Event(event) => {
                    self.on_channel_event(id, peer, side, &event, out)?;
                    out.push(NodeOutput::ChannelEvent {
                        channel_id: id,
                        event,
                    });
                }
            }
        }
        Ok(())
    }

    /// What a channel event asks of the node: funding for the opener; everything else is
    /// the role's, and each role's glue (`payer.rs`, `lsp.rs`, `payee.rs`, `router.rs`)
    /// matches every event exhaustively.
    pub(super) fn on_channel_event(
        &mut self,
        id: ChannelId,
        peer: PublicKey,
        side: Party,
        event: &Event,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        let seen = Seen { id, peer, side };
        match event {
            Event::Accepted {
                funding_script_pubkey,
                capacity_sat,
            } => {
                out.push(NodeOutput::NeedFunding {
                    channel_id: id,
                    script_pubkey: funding_script_pubkey.clone(),
                    capacity_sat: *capacity_sat,
                });
                Ok(())
            }
            Event::ReadyToFund => {
                out.push(NodeOutput::ReadyToFund { channel_id: id });
                Ok(())
            }
            _ => match self.role {
                RoleMachine::Payer(_) => self.payer_channel_event(seen, event, out),
                RoleMachine::Lsp(_) => self.lsp_channel_event(seen, event, out),
                RoleMachine::Payee(_) => self.payee_channel_event(seen, event, out),
                RoleMachine::Router(_) => self.router_channel_event(seen, event, out),
            },
        }
    }

    /// Whether the peer proposed the channel's latest complete state (a transfer paying us).
    pub(super) fn proposed_by_peer(&self, seen: &Seen) -> bool {
        self.channels[&seen.id]
            .channel
            .snapshot()
            .complete
            .as_ref()
            .is_some_and(|c| c.proposer != seen.side)
    }

    /// What a completed change brings: a PTLC the peer offered us, now committed, or a
    /// scalar the peer revealed by fulfilling one of ours.
    pub(super) fn completed(
        &self,
        seen: &Seen,
        change: &Change,
    ) -> (Option<PtlcRecord>, Option<AdaptorSecret>) {
        let offered = match change {
            Change::AddPtlc { id: ptlc_id, .. } => self.channels[&seen.id]
                .channel
                .latest()
                .and_then(|b| b.ptlcs.iter().find(|p| p.id == *ptlc_id).cloned())
                .filter(|p| p.offerer != seen.side),
            _ => None,
        };
        let revealed = match change {
            Change::FulfilPtlc { secret, .. } => AdaptorSecret::from_bytes(secret.0).ok(),
            _ => None,
        };
        (offered, revealed)
    }
}
