//! Chain drivers: the regtest harness (bitcoind, electrs) used by tests, the demo and
//! benchmarks, and the light-client wallet (BDK over electrs) of the channel parties.

pub mod regtest;
pub mod rpc;
pub mod wallet;
