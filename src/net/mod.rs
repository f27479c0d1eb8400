//! Authenticated peer transport: nodes that know each other by node key talk over TCP.
//!
//! A connection is a Noise XX session (X25519, ChaCha20-Poly1305, SHA-256, from the `snow`
//! crate) bound to the two ends' node keys: inside the encrypted channel each end sends its
//! BIP340 node key and a signature over a tagged hash of the Noise handshake hash
//! ([`handshake`]). The connecting side names the node key it expects; the listening side
//! lets in only the keys its [`Allow`] permits. Messages of up to [`MAX_MESSAGE_LEN`] bytes
//! travel as length-prefixed encrypted frames ([`frame`]). docs/transport.md gives the
//! reasons behind each choice.
//!
//! ```
//! use std::sync::Arc;
//! use asyncpay::crypto::keys::SecretKey;
//! use asyncpay::net::{connect, Allow, Listener};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), asyncpay::net::NetError> {
//! let lsp = Arc::new(SecretKey::from_bytes([1u8; 32]).expect("valid key"));
//! let payer = SecretKey::from_bytes([2u8; 32]).expect("valid key");
//! let lsp_key = lsp.public_key();
//!
//! let listener = Listener::bind("127.0.0.1:0", lsp, Allow::keys([payer.public_key()])).await?;
//! let addr = listener.local_addr()?;
//! let server = tokio::spawn(async move {
//!     let mut conn = listener.accept().await?;
//!     let request = conn.recv().await?;
//!     conn.send(&[request.as_slice(), b" pong"].concat()).await?;
//!     Ok::<_, asyncpay::net::NetError>(conn.peer())
//! });
//!
//! let mut conn = connect(addr, &payer, lsp_key).await?;
//! assert_eq!(conn.peer(), lsp_key);
//! conn.send(b"ping").await?;
//! assert_eq!(conn.recv().await?, b"ping pong");
//!
//! // Split, e.g. to read and write from two tasks.
//! let (mut reader, mut writer) = conn.into_split();
//! writer.shutdown().await?;
//! assert!(matches!(reader.recv().await, Err(asyncpay::net::NetError::Closed)));
//!
//! assert_eq!(server.await.expect("server task")?, payer.public_key());
//! # Ok(())
//! # }
//! ```
//!
//! A peer that is not on the allow-list, that claims a key it cannot sign for, or that is
//! not the node the caller expected is refused with a typed [`NetError`]; so is a peer that
//! sends garbage, oversized or truncated frames, or stays silent past the handshake timeout.

use std::time::Duration;

use crate::crypto::keys::{KeyError, PublicKey};

mod admission;
mod connection;
pub mod frame;
pub mod handshake;
pub mod http;

pub use admission::{Admission, Admissions, Admitted, CapSlot, ConnectionCaps, Superseded};
pub use connection::{
    connect, connect_with, initiate_on, respond_on, Allow, Connection, ConnectionReader,
    ConnectionWriter, Incoming, Listener, NetConfig,
};
pub use frame::MAX_MESSAGE_LEN;

/// Transport failures. Keys are boxed to keep the error, and every `Result` that carries
/// it, small.
/// After any error other than [`NetError::MessageTooLarge`] on send,
/// the connection is unusable and should be dropped.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Socket failure.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The handshake did not finish in time.
    #[error("handshake did not finish within {after:?}")]
    HandshakeTimeout {
        /// The configured limit.
        after: Duration,
    },
    /// The peer's first handshake message did not arrive in time.
    #[error("no handshake message within {after:?}")]
    FirstMessageTimeout {
        /// The configured limit.
        after: Duration,
    },
    /// The listener hung up after our binding instead of answering with its own: it does
    /// not admit our node key (or it is over a connection limit).
    #[error("refused by the listener: it does not admit our node key")]
    Refused,
    /// The peer closed the stream cleanly between messages.
    #[error("connection closed by peer")]
    Closed,
    /// The stream ended inside a frame or inside a multi-frame message.
    #[error(
        "connection closed mid-frame or mid-message ({buffered} bytes of an unfinished frame held)"
    )]
    Truncated {
        /// Bytes of an unfinished frame that had arrived (0 when frames were complete but
        /// the message they carried was not).
        buffered: usize,
    },
    /// A length prefix above what this phase accepts.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The announced length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A length prefix too short to hold an authentication tag.
    #[error("frame of {len} bytes is shorter than the minimum of {min}")]
    FrameTooShort {
        /// The announced length.
        len: usize,
        /// The minimum in force.
        min: usize,
    },
    /// The Noise handshake failed (a malformed handshake message, a failed DH or
    /// decryption), or encryption failed.
    #[error("noise: {0}")]
    Noise(#[source] snow::Error),
    /// A Noise handshake message carried a payload; ours never do.
    #[error("handshake message carries an unexpected {len}-byte payload")]
    UnexpectedHandshakePayload {
        /// Payload length.
        len: usize,
    },
    /// A transport frame failed authentication (tampered, reordered or not from this session).
    #[error("frame {frame} failed authentication")]
    Decrypt {
        /// The frame's position in its direction of the stream.
        frame: u64,
    },
    /// A message longer than [`MAX_MESSAGE_LEN`], to send or announced by the peer.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// The message's (announced) length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The first frame of a message is too short to hold the message length.
    #[error("message header missing: first frame holds {len} bytes")]
    MissingMessageHeader {
        /// Plaintext length of that frame.
        len: usize,
    },
    /// The frames of a message hold more bytes than its header announced.
    #[error("message announced {declared} bytes, frames carried {received}")]
    MessageOverrun {
        /// Length from the header.
        declared: usize,
        /// Bytes carried so far.
        received: usize,
    },
    /// An empty frame in the middle of a message.
    #[error("empty frame inside a message of {declared} bytes ({received} received)")]
    EmptyContinuation {
        /// Length from the header.
        declared: usize,
        /// Bytes carried so far.
        received: usize,
    },
    /// The peer's binding message has the wrong length.
    #[error("binding message of {len} bytes, expected 96")]
    MalformedBinding {
        /// Its length.
        len: usize,
    },
    /// The peer's binding holds a key or signature that does not parse.
    #[error("binding holds an invalid key or signature: {0}")]
    InvalidPeerKey(#[source] Box<KeyError>),
    /// The peer's binding signature does not verify: it claims a key it cannot sign for.
    #[error("peer claims node key {claimed} but cannot sign for it")]
    BadBindingSignature {
        /// The key it claimed.
        claimed: Box<PublicKey>,
    },
    /// The listener's allow-list does not permit this (proven) peer key.
    #[error("peer {peer} is not permitted")]
    UnknownPeer {
        /// The peer's proven key.
        peer: Box<PublicKey>,
    },
    /// The listener is not the node the connecting side expected.
    #[error("expected peer {expected}, the listener claims {claimed}")]
    UnexpectedPeer {
        /// The key the caller asked for.
        expected: Box<PublicKey>,
        /// The key the listener's binding named.
        claimed: Box<PublicKey>,
    },
}
