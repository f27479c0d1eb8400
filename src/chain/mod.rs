//! Chain drivers: the regtest harness.
