//! A byzantine payee stalls its channel with S: it never countersigns S's first PTLC, so
//! every later update of S–B waits in S's queue. A sale whose PTLC waits there is not held
//! forever: once that PTLC could no longer be added in time (its expiry fewer than twice the
//! channel's delay ahead), S drops it from the queue and the sale is open again (`offered`),
//! so it can expire or be cancelled as usual.

use asyncpay::node::core::NodeInput;
use asyncpay::protocol::messages::Message;
use asyncpay::protocol::wire::{Decoded, PeerMessage};
use asyncpay::testing::*;

#[test]
fn a_queued_ptlc_whose_expiry_comes_too_close_leaves_the_queue_and_reopens_the_sale() {
    let mut sim = Network::new();
    sim.open(A, S, 1_000_000).unwrap();
    sim.open(S, B, 400_000).unwrap();
    sim.stop(B);
    let first = sim.pay_held(B, 20_000, 400).unwrap();
    let second = sim.pay_held(B, 30_000, 400).unwrap();
    sim.start(B).unwrap();
    // B reads both letters; every frame is delivered but B's countersignature of S's PTLC.
    for letter in std::mem::take(&mut sim.nodes[B].mailbox) {
        sim.input(B, NodeInput::Letter { bytes: letter }).unwrap();
    }
    for _ in 0..200 {
        let Some((from, to, frame)) = sim.queue.pop_front() else {
            break;
        };
        let stalled = from == B
            && matches!(
                PeerMessage::decode(&frame),
                Ok(Decoded::Message(PeerMessage::Channel(
                    Message::CounterSign(_)
                )))
            );
        if stalled {
            continue;
        }
        let key = sim.key(from);
        sim.input(to, NodeInput::Frame { from: key, frame })
            .unwrap();
    }
    // Both invoices were accepted: one PTLC is proposed (and stalled), one waits.
    assert_eq!(sim.nodes[S].status(&first), Some("selling"));
    assert_eq!(sim.nodes[S].status(&second), Some("selling"));

    // Blocks pass: the waiting PTLC's expiry (the LSP's PTLC delta ahead) comes within twice
    // S–B's delay; S drops it and the sale reopens. The stalled one stays S's to resolve on
    // chain, as any PTLC a peer stalls.
    let delta = policy().ptlc_delta;
    let mut height = sim.height;
    for _ in 0..delta {
        height += 1;
        sim.block(height).unwrap();
        if sim.nodes[S].status(&second) == Some("offered") {
            break;
        }
    }
    assert_eq!(
        sim.nodes[S].status(&second),
        Some("offered"),
        "the queued sale reopened by height {height}"
    );
    assert_eq!(sim.nodes[S].status(&first), Some("selling"));
}
