//! Router P's role: forwards S's PTLC to the payee with the same point, and the payee's
//! scalar back to S.
//!
//! When the payee has no channel with the LSP, its invoice names a router and the router's
//! terms ([`super::RouteHint`]). S then sends the router a [`Forward`] and adds a PTLC on
//! S–P carrying `amount + fee` with its own expiry; the router offers a PTLC with the same
//! point, `amount` and `expiry_out` on P–B once S's PTLC is part of a complete state. When
//! the payee fulfils on P–B, the router has the scalar and fulfils S's PTLC with it, and S
//! learns it as in the direct flow. The router checks that it keeps its fee and that the
//! incoming PTLC outlives the outgoing one by its `expiry_delta` (time to claim the incoming
//! PTLC on chain after learning the scalar); otherwise it fails the incoming PTLC.
//!
//! On the in-process network (`asyncpay::testing`), B has a channel with P only; S pays it
//! through P with the same point:
//!
//! ```
//! use asyncpay::testing::{Network, A, B, P, S};
//!
//! let mut net = Network::with_router();
//! net.open(A, S, 1_000_000).unwrap();
//! net.open(S, P, 400_000).unwrap();
//! net.open(P, B, 400_000).unwrap();
//! net.stop(B);
//! let id = net.pay(20_000).unwrap();
//! net.stop(A);
//! net.start(B).unwrap();
//! net.fetch_letters(B).unwrap();
//! assert_eq!(net.nodes[P].status(&id), Some("settled"));
//! assert_eq!(net.nodes[B].status(&id), Some("paid"));
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::crypto::adaptor::{sells, AdaptorPoint, AdaptorSecret};
use crate::crypto::keys::PublicKey;
use crate::protocol::channel::Command;
use crate::protocol::messages::ChannelId;

use super::{Action, Forward, PaymentError, PaymentId, PaymentMessage, RouteHint};

/// A router's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterPolicy {
    /// What it keeps per forwarded payment.
    pub fee_sat: u64,
    /// Blocks between the incoming PTLC's expiry and the outgoing one's it requires.
    pub expiry_delta: u32,
}

impl RouterPolicy {
    /// The hint a payee behind this router puts in its invoice.
    pub fn hint(&self, router: PublicKey) -> RouteHint {
        RouteHint {
            router,
            fee_sat: self.fee_sat,
            expiry_delta: self.expiry_delta,
        }
    }
}

/// Where a forwarded payment stands at the router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RouterStatus {
    /// S asked to forward; its PTLC is not yet in a complete state.
    Announced,
    /// S's PTLC is committed and the PTLC to the next node was offered.
    Forwarding {
        /// The channel with S and S's PTLC on it.
        incoming: (ChannelId, u64),
        /// The channel with the next node.
        outgoing: ChannelId,
    },
    /// The next node fulfilled; S's PTLC was fulfilled with the same scalar.
    Settled {
        /// The channel with S and S's PTLC on it.
        incoming: (ChannelId, u64),
    },
    /// Not forwarded (terms not met, or the next hop refused): S's PTLC is failed back.
    Failed {
        /// Why.
        reason: String,
    },
}

impl RouterStatus {
    /// A short name (the `status` tag of its serde form).
    pub fn name(&self) -> &'static str {
        match self {
            RouterStatus::Announced => "announced",
            RouterStatus::Forwarding { .. } => "forwarding",
            RouterStatus::Settled { .. } => "settled",
            RouterStatus::Failed { .. } => "failed",
        }
    }
}

/// One forwarded payment at the router: the durable record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterPayment {
    /// What S asked.
    pub forward: Forward,
    /// Who asked (the incoming PTLC must come from it).
    pub from: PublicKey,
    /// Where it stands.
    pub status: RouterStatus,
}

/// A PTLC offered to the router, in a complete state of one of its channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming {
    /// The channel.
    pub channel_id: ChannelId,
    /// The peer that offered it.
    pub peer: PublicKey,
    /// Its id in the channel.
    pub ptlc_id: u64,
    /// Its point.
    pub point: AdaptorPoint,
    /// Its amount.
    pub amount_sat: u64,
    /// Its expiry height.
    pub expiry: u32,
}

/// An input to [`Router::handle`].
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum RouterInput {
    /// A payment message from a peer.
    Message {
        /// The authenticated sender.
        from: PublicKey,
        /// The message.
        message: PaymentMessage,
        /// The router's funded channels by peer.
        routes: Vec<(PublicKey, ChannelId)>,
    },
    /// A PTLC offered to the router became part of a complete state.
    PtlcReceived {
        /// The PTLC.
        incoming: Incoming,
        /// The router's funded channels by peer.
        routes: Vec<(PublicKey, ChannelId)>,
    },
    /// A PTLC the router offered was fulfilled (the fulfilment is in a complete state).
    PtlcFulfilled {
        /// Its point.
        point: AdaptorPoint,
        /// The scalar.
        secret: AdaptorSecret,
    },
    /// The channel refused the PTLC the router tried to offer.
    PtlcFailed {
        /// Its point.
        point: AdaptorPoint,
    },
}

/// What the router's driver must do.
pub type RouterAction = Action<(PaymentId, RouterPayment)>;

/// The router's role.
pub struct Router {
    policy: RouterPolicy,
    payments: BTreeMap<PaymentId, RouterPayment>,
    /// Committed incoming PTLCs whose [`Forward`] has not arrived yet (in memory: after a
    /// restart the node hands the channels' PTLCs over again).
    unmatched: BTreeMap<AdaptorPoint, Incoming>,
}

impl core::fmt::Debug for Router {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Router")
            .field("policy", &self.policy)
            .field("payments", &self.payments.len())
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router with its stored records.
    pub fn restore(policy: RouterPolicy, records: Vec<(PaymentId, RouterPayment)>) -> Self {
        Router {
            policy,
            payments: records.into_iter().collect(),
            unmatched: BTreeMap::new(),
        }
    }

    /// Every payment.
    pub fn payments(&self) -> impl Iterator<Item = (&PaymentId, &RouterPayment)> {
        self.payments.iter()
    }

    /// The policy.
    pub fn policy(&self) -> &RouterPolicy {
        &self.policy
    }

    /// Handles one input. On error nothing changed.
    pub fn handle(&mut self, input: RouterInput) -> Result<Vec<RouterAction>, PaymentError> {
        match input {
            RouterInput::Message {
                from,
                message,
                routes,
            } => {
                let PaymentMessage::Forward(forward) = message else {
                    return Err(PaymentError::Unexpected {
                        what: message.name(),
                        status: "any (router)",
                    });
                };
                self.on_forward(from, forward, &routes)
            }
            RouterInput::PtlcReceived { incoming, routes } => {
                let Some(id) = self.by_point(&incoming.point) else {
                    self.unmatched.insert(incoming.point, incoming);
                    return Ok(vec![]);
                };
                Ok(self.forward(id, incoming, &routes))
            }
            RouterInput::PtlcFulfilled { point, secret } => {
                if !sells(&secret, &point) {
                    return Err(PaymentError::WrongScalar);
                }
                let Some(id) = self.by_point(&point) else {
                    return Ok(vec![]);
                };
                let record = self.payments.get_mut(&id).expect("found");
                let RouterStatus::Forwarding { incoming, .. } = record.status else {
                    // Already settled (the incoming fulfilment completing) or failed.
                    return Ok(vec![]);
                };
                record.status = RouterStatus::Settled { incoming };
                // The fulfilment is stored on the incoming channel before the payment is
                // recorded settled: a stop in between finds it still forwarding and the
                // outgoing fulfilment on its channel, and fulfils again.
                Ok(vec![
                    Action::Channel {
                        channel_id: incoming.0,
                        command: Command::Fulfil {
                            id: incoming.1,
                            secret,
                        },
                    },
                    Action::Persist((id, record.clone())),
                ])
            }
            RouterInput::PtlcFailed { point } => {
                let Some(id) = self.by_point(&point) else {
                    return Ok(vec![]);
                };
                let record = self.payments.get_mut(&id).expect("found");
                let RouterStatus::Forwarding { incoming, .. } = record.status else {
                    return Ok(vec![]);
                };
                Ok(self.fail(id, incoming, "next hop refused the ptlc"))
            }
        }
    }

    fn by_point(&self, point: &AdaptorPoint) -> Option<PaymentId> {
        self.payments
            .iter()
            .find(|(_, p)| &p.forward.point == point)
            .map(|(id, _)| *id)
    }

    fn on_forward(
        &mut self,
        from: PublicKey,
        forward: Forward,
        routes: &[(PublicKey, ChannelId)],
    ) -> Result<Vec<RouterAction>, PaymentError> {
        let id = forward.payment_id;
        if let Some(have) = self.payments.get(&id) {
            // S repeats a forward it stored before sending: a no-op.
            return if have.forward == forward && have.from == from {
                Ok(vec![])
            } else {
                Err(PaymentError::DuplicatePayment(id))
            };
        }
        if self.by_point(&forward.point).is_some() {
            return Err(PaymentError::Mismatch {
                field: "point already forwarded",
            });
        }
        let record = RouterPayment {
            forward,
            from,
            status: RouterStatus::Announced,
        };
        let point = record.forward.point;
        self.payments.insert(id, record.clone());
        let mut actions = vec![Action::Persist((id, record))];
        if let Some(incoming) = self.unmatched.remove(&point) {
            actions.extend(self.forward(id, incoming, routes));
        }
        Ok(actions)
    }

    /// The incoming PTLC of an announced payment is committed: offer the outgoing one, or
    /// fail the incoming one if the terms are not met.
    fn forward(
        &mut self,
        id: PaymentId,
        incoming: Incoming,
        routes: &[(PublicKey, ChannelId)],
    ) -> Vec<RouterAction> {
        let policy = self.policy;
        let record = self.payments.get_mut(&id).expect("announced");
        if record.status != RouterStatus::Announced {
            return vec![];
        }
        let f = record.forward.clone();
        let at = (incoming.channel_id, incoming.ptlc_id);
        let refused = if incoming.peer != record.from {
            Some("ptlc from another peer than the one that asked")
        } else if incoming.amount_sat < f.amount_out_sat.saturating_add(policy.fee_sat) {
            Some("incoming ptlc does not cover amount and fee")
        } else if incoming.expiry < f.expiry_out.saturating_add(policy.expiry_delta) {
            Some("incoming ptlc expires too soon after the outgoing one")
        } else {
            None
        };
        if let Some(reason) = refused {
            return self.fail(id, at, reason);
        }
        let Some(&(_, outgoing)) = routes.iter().find(|(peer, _)| *peer == f.next) else {
            return self.fail(id, at, "no channel to the next node");
        };
        record.status = RouterStatus::Forwarding {
            incoming: at,
            outgoing,
        };
        vec![
            Action::Persist((id, record.clone())),
            Action::Channel {
                channel_id: outgoing,
                command: Command::AddPtlc {
                    amount_sat: f.amount_out_sat,
                    point: f.point,
                    expiry: f.expiry_out,
                },
            },
        ]
    }

    fn fail(
        &mut self,
        id: PaymentId,
        incoming: (ChannelId, u64),
        reason: &str,
    ) -> Vec<RouterAction> {
        let record = self.payments.get_mut(&id).expect("known");
        record.status = RouterStatus::Failed {
            reason: reason.to_owned(),
        };
        vec![
            Action::Persist((id, record.clone())),
            Action::Channel {
                channel_id: incoming.0,
                command: Command::Fail { id: incoming.1 },
            },
        ]
    }

    /// Status names, for display.
    pub fn status_name(status: &RouterStatus) -> &'static str {
        status.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::SecretKey;

    fn key(b: u8) -> PublicKey {
        SecretKey::from_bytes([b; 32]).expect("scalar").public_key()
    }

    fn point() -> AdaptorPoint {
        AdaptorSecret::from_bytes([7; 32])
            .expect("scalar")
            .adaptor_point()
    }

    const POLICY: RouterPolicy = RouterPolicy {
        fee_sat: 10,
        expiry_delta: 14,
    };

    fn forward() -> Forward {
        Forward {
            payment_id: PaymentId([1; 32]),
            point: point(),
            amount_in_sat: 1_010,
            amount_out_sat: 1_000,
            expiry_out: 300,
            next: key(3),
        }
    }

    fn incoming(amount_sat: u64, expiry: u32, peer: PublicKey) -> Incoming {
        Incoming {
            channel_id: ChannelId([8; 32]),
            peer,
            ptlc_id: 5,
            point: point(),
            amount_sat,
            expiry,
        }
    }

    fn routes() -> Vec<(PublicKey, ChannelId)> {
        vec![(key(3), ChannelId([9; 32]))]
    }

    /// Forward first, then the committed incoming PTLC; returns the router's actions.
    fn run(incoming: Incoming) -> (Router, Vec<RouterAction>) {
        let mut router = Router::restore(POLICY, vec![]);
        let stored = router
            .handle(RouterInput::Message {
                from: key(2),
                message: PaymentMessage::Forward(forward()),
                routes: routes(),
            })
            .expect("forward accepted");
        assert!(matches!(stored.as_slice(), [Action::Persist(_)]));
        let actions = router
            .handle(RouterInput::PtlcReceived {
                incoming,
                routes: routes(),
            })
            .expect("ptlc handled");
        (router, actions)
    }

    fn failed_back(actions: &[RouterAction]) -> bool {
        matches!(
            actions,
            [
                Action::Persist((
                    _,
                    RouterPayment {
                        status: RouterStatus::Failed { .. },
                        ..
                    }
                )),
                Action::Channel {
                    command: Command::Fail { id: 5 },
                    ..
                }
            ]
        )
    }

    #[test]
    fn forwards_when_fee_and_expiry_delta_are_kept_and_settles_back() {
        let (mut router, actions) = run(incoming(1_010, 314, key(2)));
        assert!(matches!(
            &actions[1],
            Action::Channel { channel_id, command: Command::AddPtlc { amount_sat: 1_000, expiry: 300, .. } }
                if *channel_id == ChannelId([9; 32])
        ));
        // A wrong scalar is refused; the right one fulfils the incoming PTLC once.
        let wrong = AdaptorSecret::from_bytes([6; 32]).expect("scalar");
        assert!(router
            .handle(RouterInput::PtlcFulfilled {
                point: point(),
                secret: wrong
            })
            .is_err());
        let settled = router
            .handle(RouterInput::PtlcFulfilled {
                point: point(),
                secret: AdaptorSecret::from_bytes([7; 32]).expect("scalar"),
            })
            .expect("fulfilled");
        assert!(matches!(
            &settled[0],
            Action::Channel {
                command: Command::Fulfil { id: 5, .. },
                ..
            }
        ));
        let again = router
            .handle(RouterInput::PtlcFulfilled {
                point: point(),
                secret: AdaptorSecret::from_bytes([7; 32]).expect("scalar"),
            })
            .expect("repeat");
        assert!(again.is_empty(), "fulfilled once");
    }

    #[test]
    fn fails_back_a_ptlc_short_of_the_fee_or_the_delta_or_from_another_peer() {
        assert!(failed_back(&run(incoming(1_009, 314, key(2))).1), "fee");
        assert!(
            failed_back(&run(incoming(1_010, 313, key(2))).1),
            "expiry delta"
        );
        assert!(failed_back(&run(incoming(1_010, 314, key(4))).1), "peer");
    }

    #[test]
    fn a_ptlc_before_its_forward_waits_for_it() {
        let mut router = Router::restore(POLICY, vec![]);
        let early = router
            .handle(RouterInput::PtlcReceived {
                incoming: incoming(1_010, 314, key(2)),
                routes: routes(),
            })
            .expect("kept");
        assert!(early.is_empty());
        let actions = router
            .handle(RouterInput::Message {
                from: key(2),
                message: PaymentMessage::Forward(forward()),
                routes: routes(),
            })
            .expect("forward");
        assert!(matches!(
            &actions[..],
            [
                Action::Persist(_),
                Action::Persist(_),
                Action::Channel {
                    command: Command::AddPtlc { .. },
                    ..
                }
            ]
        ));
    }
}
