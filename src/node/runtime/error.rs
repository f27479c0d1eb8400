//! What can stop the runtime or fail a control request.

use crate::chain::rpc::RpcError;
use crate::chain::wallet::WalletError;
use crate::mailbox::client::ClientError;
use crate::mailbox::keys::KeyError;
use crate::net::NetError;
use crate::node::core::NodeError;
use crate::node::files::FileError;
use crate::node::store::StoreError;
use crate::protocol::messages::ChannelId;
use crate::protocol::payment::PaymentId;
use crate::tower::client::PushError;

use super::request::RequestError;

/// Runtime failures. A failure while handling one event is reported and the node goes on;
/// a failure at start stops it.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A file of the data directory.
    #[error(transparent)]
    File(#[from] FileError),
    /// The node's store.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The wallet.
    #[error("wallet: {0}")]
    Wallet(#[from] WalletError),
    /// The sans-io core refused an input.
    #[error(transparent)]
    Core(#[from] NodeError),
    /// The peer transport.
    #[error("net: {0}")]
    Net(#[from] NetError),
    /// The mailbox.
    #[error("mailbox: {0}")]
    Mailbox(#[from] ClientError),
    /// A key or a contact card.
    #[error("key: {0}")]
    Key(#[from] KeyError),
    /// The payee's contact card lists no receipt slots (a version 1 card): a payment to it
    /// could give no proof of payment.
    #[error(
        "the payee's contact card lists no receipt slots (version 1): ask the payee for a \
         new card (`asyncpay ctl contact`)"
    )]
    NoReceiptSlots,
    /// No completed payment of ours with this id (only a payer holds proofs, once paid).
    #[error("no completed payment {0} of this node: a proof exists once the payment completed")]
    NoProof(crate::protocol::payment::PaymentId),
    /// bitcoind's RPC or a publication.
    #[error("rpc: {0}")]
    Rpc(#[from] RpcError),
    /// The Electrum server.
    #[error("electrum: {0}")]
    Electrum(#[from] bdk_electrum::electrum_client::Error),
    /// The Electrum URL is malformed.
    #[error(transparent)]
    ElectrumUrl(#[from] crate::chain::electrum::ElectrumUrlError),
    /// A watchtower's URL.
    #[error("watchtower: {0}")]
    Tower(#[from] PushError),
    /// A socket.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// JSON that should have parsed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A control request that does not parse.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// `--rpc-url` without `--rpc-cookie`, or the reverse.
    #[error("the RPC URL and the RPC cookie go together")]
    RpcConfig,
    /// A channel transaction must be published but no RPC was configured.
    #[error("no RPC configured: cannot submit a package")]
    NoRpc,
    /// The peer of an `open` is not connected.
    #[error("peer {0} is not connected")]
    NotConnected(bitcoin::secp256k1::XOnlyPublicKey),
    /// The payment was refused at once (e.g. above the channel's balance).
    #[error("payment {payment_id} refused: {reason}")]
    PaymentRefused {
        /// The payment.
        payment_id: PaymentId,
        /// Why.
        reason: String,
    },
    /// A channel's funding transaction was not stored.
    #[error("funding transaction of channel {0:?} was not stored")]
    NoFunding(ChannelId),
    /// The node refused a request, and said why.
    #[error("refused: {reason}")]
    Refused {
        /// The node's reason.
        reason: String,
    },
    /// The node answered a request with something its handle did not expect.
    #[error("unexpected answer: {answer}")]
    Answer {
        /// The answer.
        answer: serde_json::Value,
    },
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// The payee's static offer does not take this payment (expired, another amount, another
    /// LSP).
    #[error("offer: {0}")]
    Offer(#[from] crate::mailbox::keys::OfferError),
    /// No letter of this payment to hand over (not made with `hand_over`, or S's offer has
    /// not come yet).
    #[error("no letter to hand over for payment {payment_id}: {why}")]
    NoLetter {
        /// The payment.
        payment_id: PaymentId,
        /// Why.
        why: &'static str,
    },
    /// A letter that could not be sealed or opened.
    #[error("envelope: {0}")]
    Envelope(#[from] crate::mailbox::envelope::EnvelopeError),
    /// No contact card is stored for a letter's recipient.
    #[error("no contact stored for {0}")]
    NoContact(bitcoin::secp256k1::XOnlyPublicKey),
}
