#![allow(non_snake_case)]
//! A signer reserves, persists, drops and signs with committed nonces while crashing and
//! restarting at random points; no session id and no public nonce is ever handed out twice.

use std::collections::HashSet;

use asyncpay::crypto::keys::SecretKey;
use asyncpay::crypto::nonce::{NonceCounterStore, NonceError, NonceSeed, NonceSource};
use proptest::prelude::*;

/// A counter "on disk" that survives restarts and can be told to fail the next write.
#[derive(Debug, Default)]
struct Disk {
    next: u64,
    fail_next_write: bool,
    writes: Vec<u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("simulated write failure")]
struct WriteFailed;

impl NonceCounterStore for Disk {
    type Error = WriteFailed;

    fn load_next(&self) -> Result<u64, WriteFailed> {
        Ok(self.next)
    }

    fn persist_next(&mut self, next: u64) -> Result<(), WriteFailed> {
        if std::mem::take(&mut self.fail_next_write) {
            return Err(WriteFailed);
        }
        self.writes.push(next);
        self.next = next;
        Ok(())
    }
}

#[derive(Clone, Debug)]
enum Step {
    /// Reserve, persist, publish R and sign.
    CommitAndSign,
    /// Reserve, persist, publish R, then crash before signing.
    CommitThenCrash,
    /// Reserve and drop before persisting (the process died mid-reservation).
    ReserveThenDrop,
    /// Reserve; the counter write fails.
    FailedWrite,
    /// Restart: drop the in-memory source and reload from disk.
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::CommitAndSign),
        2 => Just(Step::CommitThenCrash),
        1 => Just(Step::ReserveThenDrop),
        1 => Just(Step::FailedWrite),
        2 => Just(Step::Restart),
    ]
}

proptest! {
    #[test]
    fn sessions_and_nonces_never_repeat(
        seed in any::<[u8; 32]>(),
        steps in prop::collection::vec(step(), 1..60),
        fixed_aux in any::<bool>(),
    ) {
        let x = SecretKey::from_bytes([0x21; 32]).expect("valid scalar");
        let X = x.public_key();
        let mut disk = Disk::default();
        let mut source = NonceSource::load(NonceSeed::from_bytes(seed), &disk).expect("infallible");
        let mut sessions = HashSet::new();
        let mut nonces = HashSet::new();
        for (i, step) in steps.iter().enumerate() {
            // With a fixed aux, freshness must come from the session id alone.
            let aux = if fixed_aux { [0u8; 32] } else { [i as u8; 32] };
            match step {
                Step::CommitAndSign | Step::CommitThenCrash => {
                    let nonce = source
                        .reserve(&X, &aux)
                        .expect("not exhausted")
                        .persist(&mut disk)
                        .expect("write succeeds");
                    prop_assert!(sessions.insert(nonce.session_id()), "session reused");
                    prop_assert!(nonces.insert(nonce.public_nonce()), "public nonce reused");
                    prop_assert!(disk.next > nonce.session_id().get(), "persisted before release");
                    if let Step::CommitAndSign = step {
                        let m = [i as u8; 32];
                        let sig = nonce.sign(&x, &m).expect("reserved for x");
                        prop_assert!(X.verify(&m, &sig).is_ok());
                    } else {
                        // The process dies: the secret nonce goes with it, the counter stays.
                        source = NonceSource::load(NonceSeed::from_bytes(seed), &disk)
                            .expect("infallible");
                    }
                }
                Step::ReserveThenDrop => {
                    // Reserved but never persisted: nothing may have left the process.
                    let _pending = source.reserve(&X, &aux).expect("not exhausted");
                }
                Step::FailedWrite => {
                    disk.fail_next_write = true;
                    let err = source
                        .reserve(&X, &aux)
                        .expect("not exhausted")
                        .persist(&mut disk)
                        .expect_err("write fails");
                    let is_persist_error = matches!(err, NonceError::Persist { .. });
                    prop_assert!(is_persist_error);
                }
                Step::Restart => {
                    source = NonceSource::load(NonceSeed::from_bytes(seed), &disk)
                        .expect("infallible");
                }
            }
            prop_assert_eq!(source.next_session().get(), disk.next);
        }
        // The stored counter only ever moved forward.
        prop_assert!(disk.writes.windows(2).all(|w| w[0] < w[1]));
    }
}

#[test]
fn restart_continues_after_the_last_persisted_session() {
    let x = SecretKey::from_bytes([0x22; 32]).expect("valid scalar");
    let mut disk = Disk::default();
    let mut source = NonceSource::load(NonceSeed::from_bytes([1; 32]), &disk).expect("infallible");
    let first = source
        .reserve(&x.public_key(), &[0; 32])
        .expect("not exhausted")
        .persist(&mut disk)
        .expect("write succeeds");
    let R1 = first.public_nonce();
    drop(source); // crash

    let mut source = NonceSource::load(NonceSeed::from_bytes([1; 32]), &disk).expect("infallible");
    let second = source
        .reserve(&x.public_key(), &[0; 32])
        .expect("not exhausted")
        .persist(&mut disk)
        .expect("write succeeds");
    assert_eq!(first.session_id().get(), 0);
    assert_eq!(second.session_id().get(), 1);
    assert_ne!(second.public_nonce(), R1);
}
