//! The node: a sans-io core that ties channels and the payment role together
//! ([`core::NodeCore`]), and the process driver around it.
//!
//! | module | what it holds |
//! |---|---|
//! | [`core`] | the sans-io node: frames in, persist/send/broadcast/post outputs out |
//! | [`store`] | the node's SQLite store: snapshots, payments, peers, funding, contacts |
//! | [`views`] | what control answers show of payment records: never a withheld signature |

pub mod core;
pub mod driver;
pub mod files;
pub mod pos;
pub mod runtime;
pub mod store;
pub mod views;
