//! Age-encrypted asynchronous mailbox.
