//! Sans-io protocol state machines and peer messages.
//!
//! | module | what it holds |
//! |---|---|
//! | [`messages`] | the channel's peer messages |
//! | [`channel`] | the eltoo channel state machine: open, PTLCs, updates, chain watching |
//! | [`payment`] | the async payment roles: payer, LSP and payee, and their messages |
//! | [`wire`] | the one wire encoding of every peer message: a type, then TLV records |
//!
//! Messages and states are described in `docs/protocol.md`.

pub mod channel;
pub mod messages;
pub mod payment;
pub(crate) mod transactions;
pub mod wire;
