//! Chain drivers: the regtest harness (bitcoind, electrs) used by tests, the demo and benchmarks.

pub mod regtest;
