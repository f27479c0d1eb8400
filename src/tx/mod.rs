//! Transaction builders, one module per transaction kind.
