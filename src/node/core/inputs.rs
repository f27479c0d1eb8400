//! User commands and peer frames: what arrives from outside and where it goes.

use super::*;

impl NodeCore {
    pub(super) fn on_command(
        &mut self,
        command: NodeCommand,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        match command {
            NodeCommand::OpenChannel {
                peer,
                channel_id,
                capacity_sat,
                shared_delay,
            } => {
                let terms = OpenTerms {
                    capacity_sat,
                    push_sat: 0,
                    shared_delay,
                    update_window: 1_000,
                    payout_key: self.payout_key(&channel_id),
                };
                let (mut channel, actions) = Channel::open(
                    self.channel_secrets(&channel_id),
                    channel_id,
                    terms,
                    self.height,
                )?;
                channel.handle(Input::Randomness(self.entropy))?;
                self.add_channel(channel_id, peer, channel);
                self.route_channel(channel_id, actions, out)?;
            }
            NodeCommand::Pay {
                payment_id,
                lsp,
                payee,
                amount_sat,
                fee_sat,
                note,
                receipts,
                hold_blocks,
                irrevocable,
            } => {
                if irrevocable && hold_blocks.is_none() {
                    return Err(NodeError::Payment(PaymentError::Mismatch {
                        field: "irrevocable offers are held sales (give hold_blocks)",
                    }));
                }
                let channel_id = self
                    .channels_with(&lsp)
                    .find(|(_, e)| e.channel.phase() == Phase::Funded)
                    .map(|(id, _)| *id)
                    .ok_or(NodeError::Payment(PaymentError::Mismatch {
                        field: "no usable channel with this lsp",
                    }))?;
                self.role_input(
                    RoleIn::Payer(PayerInput::Pay {
                        payment_id,
                        channel_id,
                        lsp,
                        payee,
                        amount_sat,
                        fee_sat,
                        note,
                        receipts,
                        // The share is derived from the node's seed and the (random, never
                        // repeated) payment id: nobody else can compute it, and a payment id
                        // in use is refused, so no share serves two points.
                        hold: hold_blocks.map(|blocks| Hold {
                            share: Share(crate::crypto::tagged_hash(
                                "asyncpay/payment/v1/held-share",
                                &[&self.seed, &payment_id.0],
                            )),
                            expiry: self.height.saturating_add(blocks),
                            irrevocable,
                        }),
                    }),
                    out,
                )?;
            }
            NodeCommand::Receive {
                payment_id,
                lsp,
                payer,
                amount_sat,
                contact,
            } => self.reverse_input(
                ReverseInput::Receive {
                    payment_id,
                    lsp,
                    payer,
                    amount_sat,
                    contact,
                },
                out,
            )?,
            NodeCommand::Cancel { payment_id } => {
                self.role_input(RoleIn::Payer(PayerInput::Cancel { payment_id }), out)?
            }
            NodeCommand::ForceClose { channel_id } => {
                self.channel_input(channel_id, Input::Command(Command::ForceClose), out)?
            }
            NodeCommand::Close {
                channel_id,
                fee_sat,
            } => self.channel_input(channel_id, Input::Command(Command::Close { fee_sat }), out)?,
        }
        Ok(())
    }

    pub(super) fn on_frame(
        &mut self,
        from: PublicKey,
        frame: Vec<u8>,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        match PeerMessage::decode(&frame)? {
            Decoded::Message(PeerMessage::Channel(msg)) => self.on_channel_message(from, msg, out),
            Decoded::Message(PeerMessage::Payment(message)) => {
                self.on_payment_message(from, message, out)
            }
            Decoded::Ignored { message_type } => {
                out.push(NodeOutput::Ignored {
                    peer: from,
                    message_type,
                });
                Ok(())
            }
        }
    }

    fn on_channel_message(
        &mut self,
        from: PublicKey,
        msg: Message,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        let id = msg.channel_id();
        match self.channels.get(&id) {
            Some(entry) if entry.peer != from => Err(NodeError::NotYourChannel {
                channel: id,
                peer: Box::new(from),
            }),
            Some(_) => self.channel_input(id, Input::Message(msg), out),
            None => {
                let Message::Open(open) = &msg else {
                    return Err(NodeError::UnknownChannel(id));
                };
                let (mut channel, actions) = Channel::accept(
                    self.channel_secrets(&id),
                    open,
                    self.payout_key(&id),
                    self.height,
                )?;
                channel.handle(Input::Randomness(self.entropy))?;
                self.add_channel(id, from, channel);
                self.route_channel(id, actions, out)
            }
        }
    }

    fn on_payment_message(
        &mut self,
        from: PublicKey,
        message: PaymentMessage,
        out: &mut Handled,
    ) -> Result<(), NodeError> {
        match message {
            PaymentMessage::ReceiveRequest {
                payment_id,
                amount_sat,
                payer,
            } => {
                let channel = self
                    .channels_with(&from)
                    .find(|(_, e)| e.channel.snapshot().params.is_some())
                    .map(|(id, _)| *id);
                let withheld = channel.and_then(|id| {
                    let e = &self.channels[&id];
                    let snap = e.channel.snapshot();
                    let pending = snap.pending()?;
                    let ours = pending.is_ours()
                        && matches!(pending.change, Change::Transfer { amount_sat: a } if a == amount_sat);
                    ours.then_some((pending.body.number, e.channel.pending_price_point()?))
                });
                let height = self.height;
                return self.reverse_input(
                    ReverseInput::Request {
                        from,
                        payment_id,
                        amount_sat,
                        payer,
                        channel,
                        withheld,
                        height,
                    },
                    out,
                );
            }
            PaymentMessage::ReceiveOffer(offer) => {
                let pending = self.update_proof(&from, &offer.channel_id);
                return self.reverse_input(
                    ReverseInput::Offer {
                        from,
                        offer,
                        pending,
                    },
                    out,
                );
            }
            _ => {}
        }
        let input = match &self.role {
            RoleMachine::Lsp(_) => {
                let pending = self.pending_transfer(&from);
                let held = match &message {
                    PaymentMessage::Request(PayRequest {
                        held: Some(held),
                        channel_id,
                        ..
                    }) => self.held_transfer(&from, channel_id, held.id, false),
                    // An invoice for a held sale: the payer's PTLC must still be there.
                    PaymentMessage::Invoice(invoice) => self.held_of_invoice(&invoice.payment_id),
                    _ => None,
                };
                // An invoice is paid over our channel with its sender or, failing
                // that, with the router its route hint names.
                let hint = match &message {
                    PaymentMessage::Invoice(invoice) => invoice.route_hint,
                    _ => None,
                };
                let sender_channel = self
                    .updatable_channel_with(&from)
                    .or_else(|| hint.and_then(|h| self.updatable_channel_with(&h.router)));
                RoleIn::Lsp(LspInput::Message {
                    from,
                    message,
                    pending,
                    held,
                    sender_channel,
                })
            }
            RoleMachine::Payer(_) => RoleIn::Payer(PayerInput::Message { from, message }),
            RoleMachine::Payee(_) => RoleIn::Payee(PayeeInput::Message { from, message }),
            RoleMachine::Router(_) => RoleIn::Router(RouterInput::Message {
                from,
                message,
                routes: self.routes(),
            }),
        };
        self.role_input(input, out)
    }
}
