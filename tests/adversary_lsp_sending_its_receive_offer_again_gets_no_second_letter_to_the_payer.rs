//! The reverse variant: a byzantine LSP S sends B its offer again (the same frame, as often
//! as it likes). B records the offer once and posts its request letter to A once: a repeated
//! offer from the peer makes B post nothing more (only B's own recovery after a restart posts
//! the letter again, and only while the state is still pending).

use asyncpay::node::core::NodeInput;
use asyncpay::protocol::payment::PaymentId;
use asyncpay::testing::*;

#[test]
fn lsp_replaying_its_offer_gets_no_second_letter() {
    let mut net = Network::new();
    net.open(A, S, 1_000_000).unwrap();
    net.open(S, B, 400_000).unwrap();
    let id = PaymentId([0x31; 32]);
    net.receive(id, 20_000).unwrap();
    // Deliver every frame, each one from S to B three times.
    let mut replayed = 0;
    while let Some((from, to, frame)) = net.queue.pop_front() {
        let times = if (from, to) == (S, B) { 3 } else { 1 };
        replayed += times - 1;
        for _ in 0..times {
            let sender = net.key(from);
            let _ = net.input(
                to,
                NodeInput::Frame {
                    from: sender,
                    frame: frame.clone(),
                },
            );
        }
    }
    assert!(replayed > 0, "S sent B frames to replay");
    assert_eq!(net.nodes[B].reverse_status(&id), Some("offered"));
    assert_eq!(
        net.nodes[A].mailbox.len(),
        1,
        "one letter to A, however often S offers"
    );

    // B's restart while the state is pending posts the letter again (A ignores a repeat).
    net.stop(B);
    net.start(B).unwrap();
    net.pump().unwrap();
    assert_eq!(net.nodes[A].mailbox.len(), 2, "B's recovery posts it again");
}
