//! Sans-io protocol state machines and peer messages.
//!
//! | module | what it holds |
//! |---|---|
//! | [`messages`] | the channel's peer messages and their strict, versioned binary encoding |
//! | [`channel`] | the eltoo channel state machine: open, PTLCs, updates, chain watching |
//!
//! Messages and states are described in `docs/protocol.md`.

pub mod channel;
pub mod messages;
mod transactions;
