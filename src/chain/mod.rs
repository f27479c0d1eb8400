//! Chain drivers: the light-client wallet (BDK over electrs) of the channel parties, bitcoind's
//! RPC and the CPFP publisher, and (with the `regtest` feature, on by default) the regtest
//! harness (bitcoind, electrs) used by tests, the demo and benchmarks.
//!
//! | module | what it holds |
//! |---|---|
//! | [`wallet`] | BDK wallet: funding transactions, CPFP children, sync over Electrum |
//! | [`electrum`] | which Electrum server, over `tcp://` or TLS (`ssl://`, certificates checked) |
//! | [`rpc`] | bitcoind JSON-RPC; publishing alone or as a package at rising feerates |
//! | `network` | long-lived regtest or signet networks in a data directory (`asyncpay regtest up`, `signet up`) |
//! | `regtest` | a throwaway BIP118-enforcing bitcoind and electrs on free ports, with a faucet; on regtest or on a private signet |
//! | [`signet`] | BIP325: a private signet's challenge, block signer and miner |

pub mod electrum;
#[cfg(feature = "regtest")]
pub mod network;
#[cfg(feature = "regtest")]
pub mod regtest;
pub mod rpc;
pub mod signet;
pub mod wallet;
