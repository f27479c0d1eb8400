//! BIP118 signature messages.
