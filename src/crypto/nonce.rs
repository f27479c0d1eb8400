//! Nonce handling that makes reuse impossible by construction.
