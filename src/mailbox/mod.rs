//! Age-encrypted asynchronous mailbox.
//!
//! A payer that is about to go offline leaves its pre-signed update for the payee in the
//! payee's mailbox on an always-online server (typically an LSP). The server stores only
//! ciphertext; only the payee can read or delete it; the payee is woken as soon as it
//! comes online.
//!
//! | module | role | I/O |
//! |---|---|---|
//! | [`keys`] | node key (BIP340), derived age identity, signed [`keys::Contact`] | key files only |
//! | [`envelope`] | versioned envelope format: seal, encode, decode, open | none |
//! | [`auth`] | challenge–response proofs of mailbox ownership | none |
//! | [`limits`] | token-bucket rate limits | none |
//! | [`proxy`] | the client address behind a trusted reverse proxy | none |
//! | [`api`] | HTTP wire types and error codes | none |
//! | [`store`] | SQLite store with group commit | disk |
//! | [`server`] | axum HTTP server, expiry sweeper, wake-ups, webhooks | network, disk |
//! | [`client`] | async HTTP client for senders and recipients | network |
//! | [`webhook`] | which webhook targets the server may call (no internal addresses); the server key that signs each call, and [`webhook::verify_call`] for receivers | name resolution, key file |
//!
//! The full format and protocol are written up in `docs/mailbox.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use asyncpay::mailbox::client::MailboxClient;
//! use asyncpay::mailbox::keys::{Contact, NodeKey};
//! use std::time::Duration;
//!
//! let payee = NodeKey::generate();
//! let payer = NodeKey::generate();
//! // The payee publishes a signed contact; the payer checks it.
//! let contact = Contact::sign(&payee, "http://127.0.0.1:8080", 1_700_000_000).verify()?;
//!
//! let client = MailboxClient::new(&contact.mailbox_url)?;
//! client.send(&contact, Some(&payer), b"pre-signed update".to_vec(), Duration::from_secs(86_400)).await?;
//!
//! // Later, the payee comes online and long-polls for up to 30 s.
//! let received = client.fetch(&payee, 100, Duration::from_secs(30)).await?;
//! for message in &received {
//!     let opened = message.open(&payee)?;
//!     println!("{} bytes from {:?}", opened.payload.len(), opened.sender);
//! }
//! client.ack(&payee, &received.iter().map(|m| m.id).collect::<Vec<_>>()).await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod auth;
pub mod client;
pub mod envelope;
pub mod keys;
pub mod limits;
pub mod proxy;
pub mod server;
pub mod store;
pub mod webhook;

/// Current unix time in seconds (drivers only; the pure modules take time as input).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
