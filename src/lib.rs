//! # asyncpay
//!
//! Asynchronous Lightning payments by *pay-for-signature* over eltoo (LN-Symmetry) channels.
//!
//! A payer pre-signs an eltoo channel update and goes offline; the payee, whenever it comes
//! online, sells that signature to the payer's LSP for a PTLC payment. The crate is organised
//! as a sans-io core (crypto, transaction builders, state machines, message types) surrounded
//! by drivers (regtest harness, mailbox server and client, peer transport, node loop).
//!
//! | module | what it holds |
//! |---|---|
//! | [`crypto`] | BIP118 signature messages and APO keys/signatures; BIP340 keys; adaptor signatures and price points; committed nonces |
//! | [`tx`] | transaction builders: funding, eltoo update and settlement, PTLC outputs and spends, close, anchors |
//! | [`protocol`] | sans-io state machines and peer messages |
//! | [`chain`] | regtest harness: a BIP118-enforcing bitcoind and electrs on free ports |
//! | [`log`] | the processes' `tracing` logs (`RUST_LOG`, text or JSON, stderr or a private file) |
//! | [`mailbox`] | age-encrypted asynchronous mailbox: envelopes, server, store, client |
//! | [`net`] | authenticated peer transport: Noise XX bound to node keys, encrypted frames over TCP |
//! | [`sim`] | seeded simulation of capital locked per payment against held-HTLC baselines |
//! | [`node`] | the node: sans-io core wiring channels to the payment role, and its driver |
//! | `testing` | (feature `testing`) an in-process test network of nodes on the one driver, in memory |
//! | [`tower`] | watchtower: sealed appointments, and the state machine that answers an old update with the latest and settles it |
//! | [`demo`] | the narrated regtest demo behind `asyncpay demo`: every party a process, driven through its control interface (feature `regtest`) |
//! | [`bench`](mod@bench) | the benchmarks behind `asyncpay bench` (crypto, channel updates, mailbox, capital, payment): figures beside baselines measured in the same run |
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bench;
pub mod chain;
pub mod config;
pub mod crypto;
#[cfg(feature = "regtest")]
pub mod demo;
pub mod log;
pub mod mailbox;
pub mod net;
pub mod node;
pub mod protocol;
pub mod sim;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tower;
pub mod tx;
