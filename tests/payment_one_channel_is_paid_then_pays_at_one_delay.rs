//! One wallet, one channel, one delay: W's channel with its LSP S (shared delay 6, as every
//! channel here) is first paid, while W is offline, by a payer X who buys S's signature on
//! the state paying W (the reverse variant); then W pays B from the same channel, as a held
//! sale, while B is offline. A withheld sale could not pay from that channel (S refuses a
//! payer channel whose delay is below its PTLC delta, `delay_too_short`); a held sale needs
//! no relation between the delays (docs/payment.md, "Held sales").

use asyncpay::node::core::{NodeCommand, NodeInput};
use asyncpay::protocol::payment::{PayerStatus, PaymentId};
use asyncpay::testing::*;

const DELAY: u16 = 6;
const RECEIVED: u64 = 30_000;
const PAID: u64 = 20_000;

#[test]
fn a_wallet_is_paid_on_its_channel_then_pays_from_it_at_the_same_delay() {
    let mut sim = Network::new();
    let w = A;
    let x = sim.add_payer("X", 0xd7).unwrap();
    // S opens W's channel (and so holds its balance): W starts with nothing on it.
    sim.open_with_delay(S, w, 500_000, DELAY).unwrap();
    sim.open_with_delay(x, S, 500_000, DELAY).unwrap();
    sim.open_with_delay(S, B, 400_000, DELAY).unwrap();

    // W asks to be paid by X and goes offline; X buys S's signature on W's state.
    let receive = PaymentId([0x51; 32]);
    let (lsp, payer) = (sim.key(S), sim.key(x));
    sim.input(
        w,
        NodeInput::Command(NodeCommand::Receive {
            payment_id: receive,
            lsp,
            payer,
            amount_sat: RECEIVED,
            contact: None,
        }),
    )
    .unwrap();
    sim.pump().unwrap();
    assert_eq!(
        sim.nodes[w].reverse_status(&receive),
        Some("offered"),
        "{:?}",
        sim.refusals
    );
    sim.stop(w);
    sim.fetch_letters(x).unwrap();
    assert!(sim.refusals.is_empty(), "{:?}", sim.refusals);
    assert_eq!(sim.nodes[x].reverse_status(&receive), Some("bought"));

    // W, back, holds the state paying it.
    sim.start(w).unwrap();
    sim.pump().unwrap();
    assert_eq!(sim.nodes[w].reverse_status(&receive), Some("paid"));
    // S opened the channel: S is its side A, W its side S.
    let paid_in = sim.nodes[w].state_with(sim.key(S)).unwrap();
    assert_eq!((paid_in.to_a, paid_in.to_s), (500_000 - RECEIVED, RECEIVED));
    assert_eq!(sim.nodes[S].state_with(sim.key(w)).unwrap(), paid_in);

    // Then W pays B from the same channel: a held sale, B offline until W has left.
    sim.stop(B);
    let pay = sim.pay_held(B, PAID, 60).unwrap();
    assert_eq!(
        sim.nodes[w].status(&pay),
        Some("posted"),
        "{:?}",
        sim.refusals
    );
    sim.stop(w);
    sim.start(B).unwrap();
    sim.fetch_letters(B).unwrap();
    assert_eq!(sim.nodes[S].status(&pay), Some("sold"));
    sim.start(w).unwrap();
    sim.pump().unwrap();
    let record = sim.nodes[w].payer(&pay).unwrap();
    let PayerStatus::Completed { proof, .. } = &record.status else {
        panic!("W's payment is {}", record.status.name());
    };
    proof.verify(&sim.key(B)).unwrap();
    let fee = policy().fee_for(PAID);
    let end = sim.nodes[S].state_with(sim.key(w)).unwrap();
    assert!(end.ptlcs.is_empty());
    assert_eq!(
        (end.to_a, end.to_s),
        (500_000 - RECEIVED + PAID + fee, RECEIVED - PAID - fee)
    );
    assert_eq!(sim.nodes[w].state_with(sim.key(S)).unwrap(), end);

    // The same payment as a withheld sale is refused on this channel.
    let withheld = sim.pay(PAID).unwrap();
    assert_eq!(sim.nodes[w].status(&withheld), Some("void"));
}
