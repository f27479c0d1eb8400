//! What a running node reports, typed: [`NodeHandle::events`](super::NodeHandle::events)
//! subscribes to a stream of [`NodeEvent`]s, the same reports the node prints as JSON lines
//! (what happened on stdout, what went wrong on stderr). Each event's serde form is its
//! JSON line, so whoever reads a node's output (the demo, a test, a script) parses the lines
//! back into `NodeEvent`s rather than picking at JSON values.
//!
//! No event carries a secret: a withheld signature, a PTLC's secret or a scalar never
//! leaves the node through a report (a channel event that carries one is reported without
//! it).
//!
//! ```no_run
//! # async fn demo(node: asyncpay::node::runtime::NodeHandle) {
//! use asyncpay::node::runtime::NodeEvent;
//! use asyncpay::protocol::payment::PaymentEvent;
//!
//! let mut events = node.events();
//! while let Ok(event) = events.recv().await {
//!     if let NodeEvent::Payment { what: PaymentEvent::Completed { payment_id } } = event {
//!         println!("payment {payment_id} completed");
//!     }
//! }
//! # }
//! ```

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast;

use crate::crypto::adaptor::AdaptorPoint;
use crate::crypto::keys::PublicKey;
use crate::protocol::channel::Event;
use crate::protocol::messages::ChannelId;
use crate::protocol::payment::{PaymentEvent, PaymentId};
use crate::tx::Party;

/// How many events a subscriber may fall behind before it misses some (its next `recv`
/// then says how many it lost, `RecvError::Lagged`).
pub const EVENT_BUFFER: usize = 1024;

/// One report of a running node. The variants and fields are those of the node's JSON
/// lines (`"event": "connected"`, ...), which are this type's serde form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum NodeEvent {
    /// A peer connection is up (stdout).
    Connected {
        /// The peer.
        peer: PublicKey,
    },
    /// A peer connection ended (stderr).
    Disconnected {
        /// The peer.
        peer: PublicKey,
        /// Why.
        reason: String,
    },
    /// Dialling a peer failed; the node tries again after `retry_in_ms` (stderr).
    DialFailed {
        /// The peer.
        peer: PublicKey,
        /// Where it was dialled.
        addr: String,
        /// Whether the peer refused our key.
        refused: bool,
        /// Why.
        error: String,
        /// When the next attempt is made.
        retry_in_ms: u64,
    },
    /// A peer message was handed to its connection, or dropped because the peer is not
    /// connected (the protocol sends it again on reconnection) (stdout).
    #[serde(rename = "send")]
    MessageSent {
        /// The peer.
        to: PublicKey,
        /// The message's name (`propose`, `countersign`, `offer`, ...).
        message: String,
        /// Whether a connection took it.
        delivered: bool,
    },
    /// Something happened on a channel (stdout).
    Channel {
        /// The channel.
        #[serde(with = "hex_channel_id")]
        channel_id: ChannelId,
        /// What.
        what: ChannelEvent,
    },
    /// Something happened to a payment (stdout).
    Payment {
        /// What.
        what: PaymentEvent,
    },
    /// A letter is in its recipient's mailbox: a payer's sale letter (with its payment) or
    /// a letter of the reverse variant (with its recipient) (stdout).
    LetterPosted {
        /// The payment of a sale letter.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payment_id: Option<PaymentId>,
        /// The recipient of a letter of the reverse variant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<PublicKey>,
    },
    /// A letter fetched from the node's mailbox was refused (stderr).
    LetterRefused {
        /// Why.
        error: String,
    },
    /// The funding transaction of a channel this node opened was broadcast (stdout).
    FundingBroadcast {
        /// The channel.
        #[serde(with = "hex_channel_id")]
        channel_id: ChannelId,
        /// The funding transaction.
        txid: bitcoin::Txid,
    },
    /// A channel transaction was published: alone, or as a package with a CPFP child at
    /// `feerate_sat_vb` (stdout).
    TransactionPublished {
        /// The transaction.
        txid: bitcoin::Txid,
        /// How many times it was published before.
        attempt: u32,
        /// The child's feerate, for a package.
        feerate_sat_vb: Option<u64>,
    },
    /// Publishing a channel transaction failed (stderr).
    BroadcastFailed {
        /// The transaction.
        txid: bitcoin::Txid,
        /// Why.
        error: String,
    },
    /// Coins left the wallet for an address (stdout).
    Withdrawn {
        /// The transaction.
        txid: bitcoin::Txid,
        /// The address.
        to: String,
    },
    /// A watchtower holds a channel's state (stdout).
    WatchtowerUpdated {
        /// The tower's URL.
        tower: String,
        /// The channel.
        #[serde(with = "hex_channel_id")]
        channel_id: ChannelId,
        /// The state the tower holds.
        state: u64,
    },
    /// Pushing a channel's state to a watchtower failed; it is retried (stderr).
    WatchtowerFailed {
        /// The tower's URL.
        tower: String,
        /// The channel.
        #[serde(with = "hex_channel_id")]
        channel_id: ChannelId,
        /// The state pushed.
        state: Option<u64>,
        /// Why.
        error: String,
    },
    /// A peer's input was refused; nothing changed (stderr).
    Refused {
        /// The peer.
        peer: PublicKey,
        /// Why.
        error: String,
    },
    /// A peer sent a message of an unknown odd type (a later version's optional message);
    /// it was ignored (stdout).
    Ignored {
        /// The peer.
        peer: PublicKey,
        /// The message's type.
        message_type: u16,
    },
    /// Handling an input failed; the node goes on (stderr).
    Error {
        /// What failed.
        message: String,
    },
    /// The node reached the crash point it was started with and kills itself by SIGKILL
    /// right after this line (stdout; crash tests only, see `asyncpay node run --crash-at`).
    CrashPoint {
        /// The point, as given on the command line.
        point: String,
    },
}

impl NodeEvent {
    /// Whether this reports something that went wrong (printed on stderr).
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            NodeEvent::Disconnected { .. }
                | NodeEvent::DialFailed { .. }
                | NodeEvent::LetterRefused { .. }
                | NodeEvent::BroadcastFailed { .. }
                | NodeEvent::WatchtowerFailed { .. }
                | NodeEvent::Refused { .. }
                | NodeEvent::Error { .. }
        )
    }

    /// The payment this event is about, if any.
    pub fn payment_id(&self) -> Option<PaymentId> {
        match self {
            NodeEvent::Payment { what } => Some(match what {
                PaymentEvent::LetterPosted { payment_id }
                | PaymentEvent::Offered { payment_id, .. }
                | PaymentEvent::Invoiced { payment_id, .. }
                | PaymentEvent::Completed { payment_id }
                | PaymentEvent::Paid { payment_id }
                | PaymentEvent::Cancelled { payment_id, .. }
                | PaymentEvent::Refused { payment_id, .. } => *payment_id,
            }),
            NodeEvent::LetterPosted { payment_id, .. } => *payment_id,
            _ => None,
        }
    }
}

/// A channel event, without the secrets some of them carry: what
/// [`NodeEvent::Channel`] reports of a [`crate::protocol::channel::Event`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChannelEvent {
    /// The acceptor's keys arrived; the opener builds the funding transaction.
    Accepted {
        /// The capacity.
        capacity_sat: u64,
    },
    /// State 0 is complete: the opener broadcasts the funding transaction.
    ReadyToFund,
    /// The funding transaction confirmed; the channel can update.
    FundingConfirmed,
    /// A state is complete.
    StateCompleted {
        /// Its number.
        state: u64,
        /// What it changed: `open`, `transfer`, `add_ptlc`, `fulfil_ptlc`, `fail_ptlc` or
        /// `revert` (a fulfilment's secret is not shown).
        change: String,
        /// A's (the opener's) balance.
        to_a: u64,
        /// S's (the acceptor's) balance.
        to_s: u64,
    },
    /// Our proposal lost a collision; it is proposed again once the peer's completes.
    ProposalDropped {
        /// What it proposed.
        change: String,
    },
    /// A proposal that lost a collision no longer applies and was given up.
    ProposalAbandoned {
        /// What it proposed.
        change: String,
        /// Why ([`crate::protocol::channel::ChannelError::code`]).
        code: u16,
    },
    /// We signed our proposal and keep the signature back (it is not shown).
    SignatureWithheld {
        /// The state.
        state: u64,
        /// The signature's price point (public).
        price_point: AdaptorPoint,
    },
    /// We pre-signed our proposal encrypted to a payee's receipt point and keep it back (the
    /// pre-signature is not shown).
    SignatureEncrypted {
        /// The state.
        state: u64,
        /// The payee's receipt point it is encrypted to.
        receipt_point: AdaptorPoint,
        /// The completed signature's price point (public).
        price_point: AdaptorPoint,
    },
    /// Our pre-signature on `state` came back completed by the payee (the payer's proof of
    /// payment is taken from it).
    PreSignatureCompleted {
        /// The state.
        state: u64,
    },
    /// The peer re-proposed a pending state with a new nonce.
    NonceReplaced {
        /// The state.
        state: u64,
    },
    /// The peer published a stale update; we answered with the latest.
    StaleUpdateAnswered {
        /// The stale state.
        stale: u64,
        /// Ours.
        latest: u64,
    },
    /// A PTLC is about to run out of time off chain: the latest state goes on chain.
    ClosingForPtlc {
        /// The PTLC.
        id: u64,
        /// Its expiry.
        expiry: u32,
    },
    /// A PTLC was failed back to its offerer.
    PtlcFailed {
        /// The PTLC.
        id: u64,
        /// Its point.
        point: AdaptorPoint,
        /// Who offered it.
        offerer: Party,
    },
    /// Our claim of a PTLC we were paid by confirmed on chain.
    PtlcClaimed {
        /// The PTLC.
        id: u64,
    },
    /// A PTLC's secret became known on chain (it is not shown).
    PtlcSecretLearned {
        /// The PTLC.
        id: u64,
    },
    /// The cooperative close is signed and published.
    CloseSigned {
        /// The close transaction.
        txid: bitcoin::Txid,
    },
    /// The cooperative close confirmed: the channel is closed.
    ClosedCooperatively {
        /// The close transaction.
        txid: bitcoin::Txid,
    },
    /// The settlement confirmed: balances paid out.
    Settled {
        /// The settled state.
        state: u64,
    },
}

impl From<&Event> for ChannelEvent {
    fn from(event: &Event) -> Self {
        match event {
            Event::Accepted { capacity_sat, .. } => ChannelEvent::Accepted {
                capacity_sat: *capacity_sat,
            },
            Event::ReadyToFund => ChannelEvent::ReadyToFund,
            Event::FundingConfirmed => ChannelEvent::FundingConfirmed,
            Event::StateCompleted {
                state,
                change,
                to_a,
                to_s,
                ..
            } => ChannelEvent::StateCompleted {
                state: *state,
                change: change.kind().to_owned(),
                to_a: *to_a,
                to_s: *to_s,
            },
            Event::ProposalDropped { change } => ChannelEvent::ProposalDropped {
                change: change.kind().to_owned(),
            },
            Event::ProposalAbandoned { change, code } => ChannelEvent::ProposalAbandoned {
                change: change.kind().to_owned(),
                code: *code,
            },
            Event::SignatureWithheld {
                state, price_point, ..
            } => ChannelEvent::SignatureWithheld {
                state: *state,
                price_point: *price_point,
            },
            Event::SignatureEncrypted {
                state,
                receipt_point,
                price_point,
                ..
            } => ChannelEvent::SignatureEncrypted {
                state: *state,
                receipt_point: *receipt_point,
                price_point: *price_point,
            },
            Event::PreSignatureCompleted { state, .. } => {
                ChannelEvent::PreSignatureCompleted { state: *state }
            }
            Event::NonceReplaced { state } => ChannelEvent::NonceReplaced { state: *state },
            Event::StaleUpdateAnswered { stale, latest } => ChannelEvent::StaleUpdateAnswered {
                stale: *stale,
                latest: *latest,
            },
            Event::ClosingForPtlc { id, expiry } => ChannelEvent::ClosingForPtlc {
                id: *id,
                expiry: *expiry,
            },
            Event::PtlcFailed { id, point, offerer } => ChannelEvent::PtlcFailed {
                id: *id,
                point: *point,
                offerer: *offerer,
            },
            Event::PtlcClaimed { id, .. } => ChannelEvent::PtlcClaimed { id: *id },
            Event::PtlcSecretLearned { id, .. } => ChannelEvent::PtlcSecretLearned { id: *id },
            Event::CloseSigned { txid } => ChannelEvent::CloseSigned { txid: *txid },
            Event::ClosedCooperatively { txid } => {
                ChannelEvent::ClosedCooperatively { txid: *txid }
            }
            Event::Settled { state } => ChannelEvent::Settled { state: *state },
        }
    }
}

/// Prints each report as its JSON line and hands it to the subscribers of
/// [`NodeHandle::events`](super::NodeHandle::events).
#[derive(Debug, Clone)]
pub(super) struct Reporter {
    sender: broadcast::Sender<NodeEvent>,
}

impl Reporter {
    pub(super) fn new() -> Self {
        Self {
            sender: broadcast::channel(EVENT_BUFFER).0,
        }
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.sender.subscribe()
    }

    /// Prints `event` (its serde form: stdout, or stderr for a failure) and publishes it.
    pub(super) fn report(&self, event: NodeEvent) {
        let line = serde_json::to_value(&event)
            .unwrap_or_else(|e| json!({"event": "error", "message": e.to_string()}));
        if event.is_failure() {
            super::warn(line);
        } else {
            super::emit(line);
        }
        self.publish(event);
    }

    /// A channel event, as much of it as [`ChannelEvent`] keeps (never a secret).
    pub(super) fn channel(&self, channel_id: ChannelId, event: &Event) {
        self.report(NodeEvent::Channel {
            channel_id,
            what: event.into(),
        });
    }

    fn publish(&self, event: NodeEvent) {
        // No subscriber is no error: the node reports to whoever listens.
        let _ = self.sender.send(event);
    }
}

/// A channel id as 64 hex characters, as the JSON lines and `ctl` show it.
pub(crate) mod hex_channel_id {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::protocol::messages::ChannelId;

    pub fn serialize<S: Serializer>(id: &ChannelId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(id.0))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ChannelId, D::Error> {
        let text = String::deserialize(d)?;
        let mut id = [0u8; 32];
        hex::decode_to_slice(&text, &mut id)
            .map_err(|e| serde::de::Error::custom(format!("channel id {text:?}: {e}")))?;
        Ok(ChannelId(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn key(b: u8) -> PublicKey {
        crate::crypto::keys::SecretKey::from_bytes([b; 32])
            .expect("key")
            .public_key()
    }

    /// Each typed event's serde form is, byte for byte, the JSON line the node printed
    /// before the events were typed (the demo and the tests parse those lines).
    #[test]
    fn every_event_prints_the_line_it_always_printed() {
        let (peer, id) = (key(1), ChannelId([7; 32]));
        let txid: bitcoin::Txid =
            "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
                .parse()
                .expect("txid");
        let payment_id = PaymentId([9; 32]);
        let cases: Vec<(NodeEvent, Value)> = vec![
            (
                NodeEvent::Connected { peer },
                json!({"event": "connected", "peer": peer.to_string()}),
            ),
            (
                NodeEvent::Disconnected {
                    peer,
                    reason: "closed by the peer".into(),
                },
                json!({"event": "disconnected", "peer": peer.to_string(), "reason": "closed by the peer"}),
            ),
            (
                NodeEvent::DialFailed {
                    peer,
                    addr: "127.0.0.1:9".into(),
                    refused: true,
                    error: "refused".into(),
                    retry_in_ms: 300,
                },
                json!({
                    "event": "dial_failed",
                    "peer": peer.to_string(),
                    "addr": "127.0.0.1:9",
                    "refused": true,
                    "error": "refused",
                    "retry_in_ms": 300u64,
                }),
            ),
            (
                NodeEvent::MessageSent {
                    to: peer,
                    message: "propose".into(),
                    delivered: false,
                },
                json!({"event": "send", "to": peer.to_string(), "message": "propose", "delivered": false}),
            ),
            (
                NodeEvent::Payment {
                    what: PaymentEvent::Completed { payment_id },
                },
                json!({"event": "payment", "what": PaymentEvent::Completed { payment_id }}),
            ),
            (
                NodeEvent::LetterPosted {
                    payment_id: Some(payment_id),
                    to: None,
                },
                json!({"event": "letter_posted", "payment_id": payment_id.to_string()}),
            ),
            (
                NodeEvent::LetterPosted {
                    payment_id: None,
                    to: Some(peer),
                },
                json!({"event": "letter_posted", "to": peer.to_string()}),
            ),
            (
                NodeEvent::LetterRefused {
                    error: "bad".into(),
                },
                json!({"event": "letter_refused", "error": "bad"}),
            ),
            (
                NodeEvent::FundingBroadcast {
                    channel_id: id,
                    txid,
                },
                json!({"event": "funding_broadcast", "channel_id": hex::encode(id.0), "txid": txid.to_string()}),
            ),
            (
                NodeEvent::TransactionPublished {
                    txid,
                    attempt: 0,
                    feerate_sat_vb: None,
                },
                json!({"event": "transaction_published", "txid": txid.to_string(), "attempt": 0u32, "feerate_sat_vb": Option::<u64>::None}),
            ),
            (
                NodeEvent::TransactionPublished {
                    txid,
                    attempt: 2,
                    feerate_sat_vb: Some(12),
                },
                json!({"event": "transaction_published", "txid": txid.to_string(), "attempt": 2u32, "feerate_sat_vb": Some(12u64)}),
            ),
            (
                NodeEvent::BroadcastFailed {
                    txid,
                    error: "no".into(),
                },
                json!({"event": "broadcast_failed", "txid": txid.to_string(), "error": "no"}),
            ),
            (
                NodeEvent::Withdrawn {
                    txid,
                    to: "bcrt1q".into(),
                },
                json!({"event": "withdrawn", "txid": txid.to_string(), "to": "bcrt1q"}),
            ),
            (
                NodeEvent::WatchtowerUpdated {
                    tower: "http://t".into(),
                    channel_id: id,
                    state: 3,
                },
                json!({"event": "watchtower_updated", "tower": "http://t", "channel_id": hex::encode(id.0), "state": 3u64}),
            ),
            (
                NodeEvent::WatchtowerFailed {
                    tower: "http://t".into(),
                    channel_id: id,
                    state: None,
                    error: "down".into(),
                },
                json!({"event": "watchtower_failed", "tower": "http://t", "channel_id": hex::encode(id.0), "state": Option::<u64>::None, "error": "down"}),
            ),
            (
                NodeEvent::Refused {
                    peer,
                    error: "bad".into(),
                },
                json!({"event": "refused", "peer": peer.to_string(), "error": "bad"}),
            ),
            (
                NodeEvent::Ignored {
                    peer,
                    message_type: 0x7fff,
                },
                json!({"event": "ignored", "peer": peer.to_string(), "message_type": 0x7fff}),
            ),
            (
                NodeEvent::Error {
                    message: "oops".into(),
                },
                json!({"event": "error", "message": "oops"}),
            ),
            (
                NodeEvent::CrashPoint {
                    point: "persist:3".into(),
                },
                json!({"event": "crash_point", "point": "persist:3"}),
            ),
            (
                NodeEvent::Channel {
                    channel_id: id,
                    what: ChannelEvent::FundingConfirmed,
                },
                json!({"event": "channel", "channel_id": hex::encode(id.0), "what": {"kind": "funding_confirmed"}}),
            ),
        ];
        for (event, line) in cases {
            let typed = serde_json::to_value(&event).expect("serialises");
            assert_eq!(typed.to_string(), line.to_string(), "{event:?}");
            let back: NodeEvent = serde_json::from_value(typed).expect("parses back");
            assert_eq!(back, event);
        }
    }

    /// A channel event that carries a secret is reported without it, in its line and in
    /// the typed event.
    #[test]
    fn channel_events_never_carry_a_secret() {
        use crate::protocol::messages::{Change, RevealedSecret};
        let secret = RevealedSecret([0x5a; 32]);
        let hex_secret = hex::encode(secret.0);
        let event = Event::PtlcSecretLearned {
            id: 4,
            secret: secret.clone(),
        };
        let typed = ChannelEvent::from(&event);
        assert_eq!(typed, ChannelEvent::PtlcSecretLearned { id: 4 });
        let completed = Event::StateCompleted {
            state: 2,
            change: Change::FulfilPtlc { id: 4, secret },
            to_a: 1,
            to_s: 2,
            fulfilled: None,
        };
        for e in [&event, &completed] {
            let text = serde_json::to_string(&NodeEvent::Channel {
                channel_id: ChannelId([1; 32]),
                what: e.into(),
            })
            .expect("serialises");
            assert!(!text.contains(&hex_secret), "{text}");
            assert!(!text.contains("90, 90, 90"), "{text}");
        }
        assert_eq!(
            ChannelEvent::from(&completed),
            ChannelEvent::StateCompleted {
                state: 2,
                change: "fulfil_ptlc".into(),
                to_a: 1,
                to_s: 2
            }
        );
    }
}
