//! A running node, from inside the process that started it: [`start`](super::start) returns a
//! [`NodeHandle`] whose typed methods are the control API's requests, carried out by the same
//! driver (and in the same order) as requests arriving over HTTP.
//!
//! ```no_run
//! # async fn demo() -> Result<(), asyncpay::node::runtime::RuntimeError> {
//! use asyncpay::node::core::Role;
//! use asyncpay::node::runtime::{start, ChannelEvent, NodeConfig, NodeEvent};
//!
//! let lsp = start(NodeConfig::new(Role::Lsp, "/tmp/lsp", "tcp://127.0.0.1:60401", "http://127.0.0.1:8080")).await?;
//! let payer = start(NodeConfig::new(Role::Payer, "/tmp/payer", "tcp://127.0.0.1:60401", "http://127.0.0.1:8080")).await?;
//! lsp.connect(payer.info().node_key, None).await?;
//! payer.connect(lsp.info().node_key, Some(lsp.info().peer_addr)).await?;
//! let mut events = payer.events();
//! let channel = payer.open_channel(lsp.info().node_key, 1_000_000).await?;
//! // ... once the funding transaction confirmed and payments went through:
//! for c in payer.list_channels().await? {
//!     println!("{:?}: {} sat to us, {} to the peer", c.phase, c.to_self_sat, c.to_peer_sat);
//! }
//! let close = payer.close(channel).await?;
//! while let Ok(event) = events.recv().await {
//!     if let NodeEvent::Channel { what: ChannelEvent::ClosedCooperatively { txid }, .. } = event {
//!         assert_eq!(txid, close);
//!         break;
//!     }
//! }
//! payer.stop().await?;
//! lsp.stop().await?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;

use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::crypto::keys::PublicKey;
use crate::mailbox::keys::Contact;
use crate::protocol::messages::ChannelId;
use crate::protocol::payment::PaymentId;

use super::driver::Ev;
use super::events::Reporter;
use super::{ChannelDetails, NodeEvent, PaymentDetails, Request, RuntimeError};

/// Where a started node can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Its node key.
    pub node_key: PublicKey,
    /// Where it listens for peers.
    pub peer_addr: SocketAddr,
    /// Its control API (loopback HTTP, with the token in `control.token`).
    pub control_url: String,
}

/// A started node.
#[derive(Debug)]
pub struct NodeHandle {
    pub(super) events: mpsc::UnboundedSender<Ev>,
    pub(super) task: tokio::task::JoinHandle<Result<(), RuntimeError>>,
    pub(super) info: NodeInfo,
    pub(super) reporter: Reporter,
}

impl NodeHandle {
    /// Where the node can be reached.
    pub fn info(&self) -> &NodeInfo {
        &self.info
    }

    /// A new subscription to what the node reports from now on ([`NodeEvent`]s, in the
    /// order the node printed them): connections, messages sent, channel and payment events,
    /// letters posted, transactions published, refusals. A subscriber that falls more than
    /// [`super::EVENT_BUFFER`] events behind misses the oldest (`recv` says how many);
    /// `recv` ends with `Closed` once the node has stopped.
    pub fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.reporter.subscribe()
    }

    /// Carries out one control request; its JSON answer.
    pub async fn request(&self, request: Request) -> Result<Value, RuntimeError> {
        let (reply, answer) = oneshot::channel();
        self.events
            .send(Ev::Control {
                request: Box::new(request),
                reply,
            })
            .map_err(|_| RuntimeError::Stopped)?;
        match answer.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(reason)) => Err(RuntimeError::Refused { reason }),
            Err(_) => Err(RuntimeError::Stopped),
        }
    }

    /// Admits `node_key` as a peer and, given its address, dials it; fails if the first
    /// attempt does (the node keeps redialling).
    pub async fn connect(
        &self,
        node_key: PublicKey,
        addr: Option<SocketAddr>,
    ) -> Result<(), RuntimeError> {
        self.request(Request::Connect {
            node_key,
            addr: addr.map(|a| a.to_string()),
        })
        .await
        .map(drop)
    }

    /// Opens a channel to a connected peer, funded from the wallet.
    pub async fn open_channel(
        &self,
        peer: PublicKey,
        capacity_sat: u64,
    ) -> Result<ChannelId, RuntimeError> {
        let answer = self.request(Request::Open { peer, capacity_sat }).await?;
        let mut id = [0u8; 32];
        hex::decode_to_slice(answer["channel_id"].as_str().unwrap_or(""), &mut id)
            .map_err(|_| RuntimeError::Answer { answer })?;
        Ok(ChannelId(id))
    }

    /// Pays `amount_sat` to the payee of `contact` through `lsp`; the payee may be offline.
    pub async fn pay(
        &self,
        lsp: PublicKey,
        amount_sat: u64,
        contact: Contact,
        fee_sat: Option<u64>,
        note: Option<String>,
    ) -> Result<PaymentId, RuntimeError> {
        let answer = self
            .request(Request::Pay {
                lsp,
                amount_sat,
                contact,
                fee_sat,
                note,
                hold_blocks: None,
                irrevocable: false,
                hand_over: false,
            })
            .await?;
        payment_id(answer)
    }

    /// Reverse variant: asks to be paid `amount_sat` by the payer of `payer_contact`, who
    /// buys `lsp`'s signature while this node is offline.
    pub async fn receive(
        &self,
        lsp: PublicKey,
        amount_sat: u64,
        payer_contact: Contact,
    ) -> Result<PaymentId, RuntimeError> {
        let answer = self
            .request(Request::Receive {
                lsp,
                amount_sat,
                payer_contact,
            })
            .await?;
        payment_id(answer)
    }

    /// Cancels a payment not yet sold.
    pub async fn cancel(&self, payment_id: PaymentId) -> Result<(), RuntimeError> {
        self.request(Request::Cancel { payment_id }).await.map(drop)
    }

    /// Fetches and handles the letters in the node's mailbox; how many there were.
    pub async fn fetch(&self) -> Result<u64, RuntimeError> {
        let answer = self.request(Request::Fetch).await?;
        answer["letters"]
            .as_u64()
            .ok_or(RuntimeError::Answer { answer })
    }

    /// Publishes a channel's latest state on chain.
    pub async fn force_close(&self, channel_id: ChannelId) -> Result<(), RuntimeError> {
        self.request(Request::ForceClose { channel_id })
            .await
            .map(drop)
    }

    /// Closes a channel cooperatively at the default fee
    /// ([`super::DEFAULT_CLOSE_FEE_SAT`], from our balance): both parties sign one spend of
    /// the funding output paying each its balance of the last complete state, and both
    /// publish it once signed. Refused if the channel is unknown, not funded and confirmed,
    /// has an update under way or holds PTLCs. Returns the close transaction's id; its
    /// progress shows in [`list_channels`](Self::list_channels) and as
    /// [`ChannelEvent::CloseSigned`](super::ChannelEvent::CloseSigned) and
    /// [`ChannelEvent::ClosedCooperatively`](super::ChannelEvent::ClosedCooperatively).
    pub async fn close(&self, channel_id: ChannelId) -> Result<bitcoin::Txid, RuntimeError> {
        self.close_with_fee(channel_id, None).await
    }

    /// [`close`](Self::close) paying `fee_sat` (default
    /// [`super::DEFAULT_CLOSE_FEE_SAT`]) from our balance.
    pub async fn close_with_fee(
        &self,
        channel_id: ChannelId,
        fee_sat: Option<u64>,
    ) -> Result<bitcoin::Txid, RuntimeError> {
        let answer = self
            .request(Request::Close {
                channel_id,
                fee_sat,
            })
            .await?;
        answer["txid"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .ok_or(RuntimeError::Answer { answer })
    }

    /// Every channel of the node: peer, phase, funding output, latest state, balances,
    /// PTLCs, the close under way.
    pub async fn list_channels(&self) -> Result<Vec<ChannelDetails>, RuntimeError> {
        let answer = self.request(Request::ListChannels).await?;
        Ok(serde_json::from_value(answer)?)
    }

    /// Every payment of the node, with its role, status, amount and fee, and its record's
    /// view (never a withheld or bought signature).
    pub async fn list_payments(&self) -> Result<Vec<PaymentDetails>, RuntimeError> {
        let answer = self.request(Request::ListPayments).await?;
        Ok(serde_json::from_value(answer)?)
    }

    /// A new address of the node's wallet.
    pub async fn new_address(&self) -> Result<String, RuntimeError> {
        let answer = self.request(Request::Address).await?;
        answer["address"]
            .as_str()
            .map(str::to_owned)
            .ok_or(RuntimeError::Answer { answer })
    }

    /// The wallet's balance: (confirmed, pending) in sat.
    pub async fn balance(&self) -> Result<(u64, u64), RuntimeError> {
        let answer = self.request(Request::Balance).await?;
        match (
            answer["confirmed_sat"].as_u64(),
            answer["pending_sat"].as_u64(),
        ) {
            (Some(confirmed), Some(pending)) => Ok((confirmed, pending)),
            _ => Err(RuntimeError::Answer { answer }),
        }
    }

    /// Sends `amount_sat` (or, with `None`, everything the wallet can spend) from the wallet
    /// to `address` at `feerate_sat_vb` (default 2); the transaction's id.
    pub async fn withdraw(
        &self,
        address: &str,
        amount_sat: Option<u64>,
        feerate_sat_vb: Option<u64>,
    ) -> Result<bitcoin::Txid, RuntimeError> {
        let answer = self
            .request(Request::Withdraw {
                address: address.to_owned(),
                amount_sat,
                feerate_sat_vb,
            })
            .await?;
        answer["txid"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .ok_or(RuntimeError::Answer { answer })
    }

    /// The node's signed contact card.
    pub async fn contact(&self) -> Result<Contact, RuntimeError> {
        let answer = self
            .request(Request::Contact {
                amount_sat: None,
                description: None,
                expires_in_secs: None,
                lsp: None,
            })
            .await?;
        Ok(serde_json::from_value(answer)?)
    }

    /// The node's key, role, height, wallet balance, channels and payments (as `ctl info`).
    pub async fn status(&self) -> Result<Value, RuntimeError> {
        self.request(Request::Info).await
    }

    /// Stops the node and waits until it has.
    pub async fn stop(self) -> Result<(), RuntimeError> {
        self.request(Request::Stop).await?;
        self.wait().await
    }

    /// Waits until the node stops (`Request::Stop`, from here or from the control API).
    pub async fn wait(self) -> Result<(), RuntimeError> {
        self.task.await.map_err(|_| RuntimeError::Stopped)?
    }
}

fn payment_id(answer: Value) -> Result<PaymentId, RuntimeError> {
    answer["payment_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or(RuntimeError::Answer { answer })
}
