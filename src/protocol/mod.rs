//! Sans-io protocol state machines and peer messages.
