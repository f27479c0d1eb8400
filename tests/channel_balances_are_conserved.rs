//! Any sequence of transfers and PTLC adds, fulfils and fails, proposed by either party and
//! including refused ones, keeps to_a + to_s + Σ ptlcs equal to the capacity, and both
//! parties on the same state.

mod channel_support;

use asyncpay::protocol::channel::{Command, Input};
use asyncpay::tx::Party;
use channel_support::*;
use proptest::prelude::*;

/// Secrets are `[t; 32]`; `[0xff; 32]` exceeds the group order, so t stays below 255.
const MAX_T: u8 = 254;
#[derive(Debug, Clone)]
enum Op {
    Transfer(bool, u64),
    Add(bool, u64, u8),
    Fulfil(bool, usize),
    Fail(bool, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<bool>(), 0u64..900_000).prop_map(|(p, v)| Op::Transfer(p, v)),
        (any::<bool>(), 0u64..600_000, 1u8..=MAX_T).prop_map(|(p, v, t)| Op::Add(p, v, t)),
        (any::<bool>(), any::<usize>()).prop_map(|(p, i)| Op::Fulfil(p, i)),
        (any::<bool>(), any::<usize>()).prop_map(|(p, i)| Op::Fail(p, i)),
    ]
}

fn party(a: bool) -> Party {
    if a {
        Party::A
    } else {
        Party::S
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn balances_are_conserved(ops in prop::collection::vec(op(), 1..12)) {
        let mut net = Net::new(Never);
        net.open().expect("opens");
        for op in ops {
            let ptlcs = net.snapshot(Party::A).complete.as_ref().expect("state").body.ptlcs.clone();
            let (who, cmd) = match op {
                Op::Transfer(p, v) => (party(p), Command::Transfer { amount_sat: v, withhold: false }),
                Op::Add(p, v, t) => (party(p), Command::AddPtlc {
                    amount_sat: v,
                    point: secret(t).adaptor_point(),
                    expiry: HEIGHT + 3 * u32::from(DELAY),
                }),
                Op::Fulfil(p, i) | Op::Fail(p, i) => {
                    let Some(ptlc) = (!ptlcs.is_empty()).then(|| &ptlcs[i % ptlcs.len()]) else { continue };
                    let id = ptlc.id;
                    let cmd = if matches!(op, Op::Fulfil(..)) {
                        // Sometimes the right secret, sometimes not.
                        let t = (1u8..=MAX_T).find(|t| secret(*t).adaptor_point() == ptlc.point).expect("known point");
                        Command::Fulfil { id, secret: secret(if p { t } else { t % MAX_T + 1 }) }
                    } else {
                        Command::Fail { id }
                    };
                    (party(p), cmd)
                }
            };
            let _ = net.input(who, Input::Command(cmd));
            net.pump().expect("no refusals");
            for p in [Party::A, Party::S] {
                let body = &net.snapshot(p).complete.as_ref().expect("state").body;
                prop_assert_eq!(body.total(), CAPACITY);
            }
            prop_assert_eq!(&net.snapshot(Party::A).complete, &net.snapshot(Party::S).complete);
        }
    }
}
