//! From the roles to the channels: role inputs, and the channel commands their actions
//! become.

use super::*;

impl NodeCore {
    pub(super) fn role_input(&mut self, input: RoleIn, out: &mut Handled) -> Result<(), NodeError> {
        let actions: Vec<PaymentAction<(PaymentId, PaymentRecord)>> = match (&mut self.role, input)
        {
            (RoleMachine::Payer(p), RoleIn::Payer(i)) => typed_records(p.handle(i)?),
            (RoleMachine::Payer(p), RoleIn::Connected(peer)) => {
                typed_records(p.handle(PayerInput::PeerConnected { peer })?)
            }
            (RoleMachine::Lsp(l), RoleIn::Lsp(i)) => typed_records(l.handle(i)?),
            (RoleMachine::Lsp(l), RoleIn::Connected(peer)) => {
                typed_records(l.handle(LspInput::PeerConnected { peer })?)
            }
            (RoleMachine::Lsp(l), RoleIn::Block(height)) => {
                typed_records(l.handle(LspInput::Block { height })?)
            }
            (RoleMachine::Payee(p), RoleIn::Payee(i)) => typed_records(p.handle(i)?),
            (RoleMachine::Payee(p), RoleIn::Connected(peer)) => {
                typed_records(p.handle(PayeeInput::PeerConnected { peer })?)
            }
            (RoleMachine::Router(r), RoleIn::Router(i)) => typed_records(r.handle(i)?),
            (RoleMachine::Router(_), RoleIn::Connected(_)) => vec![],
            (_, RoleIn::Block(_)) => vec![],
            (_, input) => {
                return Err(NodeError::WrongRole {
                    what: input.name(),
                    role: input.role(),
                })
            }
        };
        for action in actions {
            match action {
                PaymentAction::Persist((payment_id, record)) => {
                    out.changes.payments.insert(payment_id, record);
                }
                PaymentAction::Send { to, message } => {
                    let what = message.name();
                    out.push(NodeOutput::Send {
                        to,
                        frame: PeerMessage::Payment(message).encode(),
                        what,
                    });
                }
                PaymentAction::Channel {
                    channel_id,
                    command,
                } => self.role_command(channel_id, command, out)?,
                PaymentAction::Revert {
                    channel_id,
                    abandoned_state,
                } => self.revert(channel_id, abandoned_state, out)?,
                PaymentAction::PostLetter {
                    payment_id,
                    payee,
                    letter,
                } => out.push(NodeOutput::PostLetter {
                    payment_id,
                    payee,
                    letter,
                }),
                PaymentAction::Event(e) => out.push(NodeOutput::PaymentEvent(e)),
            }
        }
        Ok(())
    }

    /// A role's command to a channel. An update (a PTLC added, fulfilled or failed) that
    /// finds the channel busy with another proposal waits its turn: many held sales resolve
    /// on one channel, and their updates come one after another, not at once. A refusal is
    /// reported to the role (see `run_command`).
    pub(super) fn role_command(
        &mut self,
        channel_id: ChannelId,
        command: Command,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        self.queue_or_run(channel_id, command, Notify::Role, out)
    }

    /// `role_command` for the reverse variant, whose machine hears of no refusal.
    pub(super) fn reverse_command(
        &mut self,
        channel_id: ChannelId,
        command: Command,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        self.queue_or_run(channel_id, command, Notify::Nobody, out)
    }

    fn queue_or_run(
        &mut self,
        channel_id: ChannelId,
        command: Command,
        notify: Notify,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        let update = matches!(
            command,
            Command::AddPtlc { .. } | Command::Fulfil { .. } | Command::Fail { .. }
        );
        let busy = self.channel_busy(&channel_id)
            || self.queued.get(&channel_id).is_some_and(|q| !q.is_empty());
        if update && busy {
            self.queued
                .entry(channel_id)
                .or_default()
                .push_back((command, notify));
            return Ok(());
        }
        self.run_command(channel_id, command, notify, out)
    }

    /// Gives the channel its queued updates while it has none under way (a refused one is
    /// reported to its role like any refusal, and the next one runs).
    pub(super) fn run_queued(
        &mut self,
        channel_id: ChannelId,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        loop {
            if self.channel_busy(&channel_id) {
                return Ok(());
            }
            let Some((command, notify)) =
                self.queued.get_mut(&channel_id).and_then(|q| q.pop_front())
            else {
                return Ok(());
            };
            self.run_command(channel_id, command, notify, out)?;
        }
    }

    /// On each block: a queued PTLC that could no longer be added in time (its channel
    /// busy for too long, say a payee that never completes an update) leaves the queue and
    /// is reported failed, so the sale it pays for is not stuck behind it.
    pub(super) fn expire_queued(
        &mut self,
        height: u32,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        let mut failed = vec![];
        for (channel_id, queue) in self.queued.iter_mut() {
            let Some(delay) = self
                .channels
                .get(channel_id)
                .and_then(|e| e.channel.snapshot().params.as_ref().map(|p| p.shared_delay))
            else {
                continue;
            };
            let soonest = height.saturating_add(2 * u32::from(delay));
            queue.retain(|(command, notify)| match command {
                Command::AddPtlc { point, expiry, .. } if expiry <= &soonest => {
                    failed.push((*channel_id, point.to_owned(), *notify));
                    false
                }
                _ => true,
            });
        }
        for (channel_id, point, notify) in failed {
            out.push(NodeOutput::Refused {
                peer: self.key.public_key(),
                error: format!(
                    "add_ptlc: channel {channel_id:?} stayed busy until the PTLC's expiry was too close"
                ),
            });
            if notify == Notify::Role {
                self.notify_refused(
                    channel_id,
                    Some(point),
                    false,
                    "expiry too close".into(),
                    out,
                )?;
            }
        }
        Ok(())
    }

    /// Whether the channel has a proposal under way (and so takes no new one).
    fn channel_busy(&self, channel_id: &ChannelId) -> bool {
        self.channels.get(channel_id).is_some_and(|e| {
            matches!(
                e.channel.phase(),
                Phase::Proposed | Phase::CounterSigned | Phase::Withheld
            )
        })
    }

    fn run_command(
        &mut self,
        channel_id: ChannelId,
        command: Command,
        notify: Notify,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        let what = format!("{command:?}");
        let failed_point = match &command {
            Command::AddPtlc { point, .. } => Some(*point),
            _ => None,
        };
        let transfer = matches!(
            command,
            Command::Transfer { .. } | Command::TransferEncrypted { .. }
        );
        let Err(e) = self.channel_input(channel_id, Input::Command(command), out) else {
            return Ok(());
        };
        out.push(NodeOutput::Refused {
            peer: self.key.public_key(),
            error: format!("{what}: {e}"),
        });
        match notify {
            Notify::Role => {
                self.notify_refused(channel_id, failed_point, transfer, e.to_string(), out)
            }
            Notify::Nobody => Ok(()),
        }
    }

    /// The role hears of a refused channel step, so its record does not wait forever for a
    /// step that will never come. (A payer's PTLC is a held sale's.)
    fn notify_refused(
        &mut self,
        channel_id: ChannelId,
        failed_point: Option<AdaptorPoint>,
        transfer: bool,
        reason: String,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        match (&self.role, failed_point) {
            (RoleMachine::Lsp(_), Some(point)) => {
                self.role_input(RoleIn::Lsp(LspInput::PtlcFailed { point }), out)
            }
            (RoleMachine::Router(_), Some(point)) => {
                self.role_input(RoleIn::Router(RouterInput::PtlcFailed { point }), out)
            }
            (RoleMachine::Payer(_), point) if transfer || point.is_some() => self.role_input(
                RoleIn::Payer(PayerInput::TransferRefused { channel_id, reason }),
                out,
            ),
            _ => Ok(()),
        }
    }

    /// Abandons the withheld state `abandoned_state` for good: the channel proposes the next
    /// state with the balances before it. If the payer is offline, the proposal is persisted
    /// and completes when it reconnects.
    pub(super) fn revert(
        &mut self,
        channel_id: ChannelId,
        abandoned_state: u64,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        let entry = self
            .channels
            .get(&channel_id)
            .ok_or(NodeError::UnknownChannel(channel_id))?;
        let pending = entry.channel.snapshot().pending();
        let withheld = pending.is_some_and(|p| {
            p.body.number == abandoned_state && !matches!(p.change, Change::Revert { .. })
        });
        if !withheld {
            // Already reverted, or never countersigned: nothing is left to abandon.
            return Ok(());
        }
        self.channel_input(channel_id, Input::Command(Command::Revert), out)
    }
}

/// Who hears of a queued or run channel command's refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Notify {
    /// The node's role (its records wait for the step).
    Role,
    /// Nobody: the reverse variant's machine, which resumes from its records.
    Nobody,
}

// One input at a time, never stored: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum RoleIn {
    Payer(PayerInput),
    Lsp(LspInput),
    Payee(PayeeInput),
    Router(RouterInput),
    Connected(PublicKey),
    Block(u32),
}

impl RoleIn {
    pub(super) fn name(&self) -> &'static str {
        match self {
            RoleIn::Payer(_) => "payer input",
            RoleIn::Lsp(_) => "lsp input",
            RoleIn::Payee(_) => "payee input",
            RoleIn::Router(_) => "router input",
            RoleIn::Connected(_) => "connected",
            RoleIn::Block(_) => "block",
        }
    }

    pub(super) fn role(&self) -> Role {
        match self {
            RoleIn::Payer(_) => Role::Payer,
            RoleIn::Lsp(_) => Role::Lsp,
            RoleIn::Router(_) => Role::Router,
            _ => Role::Payee,
        }
    }
}
