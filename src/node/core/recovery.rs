//! After a restart: each role picks up what it had under way from the stored channels and
//! payments (`resume_payer`, `resume_lsp`, `resume_payee`, `resume_router`, each in its
//! role's file, and `resume_reverse` for the reverse variant); `redo` is their common step.

use super::*;

impl NodeCore {
    /// After a restart, each role picks up what it had under way (in its own file).
    pub(super) fn resume(&mut self, out: &mut Handled) -> Result<(), NodeError> {
        match self.role {
            RoleMachine::Payer(_) => self.resume_payer(out),
            RoleMachine::Lsp(_) => self.resume_lsp(out),
            RoleMachine::Payee(_) => self.resume_payee(out),
            RoleMachine::Router(_) => self.resume_router(out),
        }
    }

    /// Hands the role the inputs a stop kept from it, then gives the channels the commands
    /// that never reached them (a refusal is reported, not fatal: the state may have moved).
    pub(super) fn redo(
        &mut self,
        inputs: Vec<RoleIn>,
        commands: Vec<(ChannelId, Command)>,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        for input in inputs {
            self.role_input(input, out)?;
        }
        // Through the queue (several may wait for one channel); a refusal is reported to
        // the role like any refusal.
        for (channel_id, command) in commands {
            self.role_command(channel_id, command, out)?;
        }
        Ok(())
    }

    /// `redo` for the reverse variant: its commands go through the queue too, and a refusal
    /// is reported (the machine picks its steps up from its records at the next start).
    pub(super) fn redo_reverse(
        &mut self,
        commands: Vec<(ChannelId, Command)>,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        for (channel_id, command) in commands {
            self.reverse_command(channel_id, command, out)?;
        }
        Ok(())
    }
}
