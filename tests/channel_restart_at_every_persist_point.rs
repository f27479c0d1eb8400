//! A seeded in-process simulation of A and S: a fixed script of transfers and PTLC adds,
//! fulfils and fails, run once without crashes to count the persist points, then once per
//! (party, persist point) with that party crashed right after that persist (dropped and
//! reloaded from its last snapshot, in-flight messages lost, reconnected), and finally under
//! seeded random multi-crash schedules. Every run must end with both parties on the same
//! state with the expected balances, no nonce signing two messages, and no signature or
//! nonce sent that its sender's last persisted snapshot does not hold.

mod channel_support;

use anyhow::{bail, ensure, Context};
use asyncpay::protocol::channel::{Command, Input, Phase};
use asyncpay::tx::Party;
use channel_support::*;

#[derive(Clone, Copy, Debug)]
enum Op {
    Transfer(Party, u64),
    Add(Party, u64, u8),
    Fulfil(u8),
    Fail(u8),
}

fn script() -> Vec<Op> {
    vec![
        Op::Transfer(Party::A, 10_000),
        Op::Add(Party::A, 50_000, 1),
        Op::Add(Party::S, 30_000, 2),
        Op::Fulfil(1),
        Op::Transfer(Party::S, 7_000),
        Op::Fail(2),
        Op::Add(Party::A, 20_000, 3),
        Op::Fulfil(3),
    ]
}

/// Expected (to_a, to_s) after the script.
fn model(ops: &[Op]) -> (u64, u64) {
    let (mut a, mut s) = (CAPACITY - PUSH, PUSH);
    let mut ptlcs: Vec<(u8, Party, u64)> = vec![];
    for op in ops {
        match *op {
            Op::Transfer(Party::A, v) => (a, s) = (a - v, s + v),
            Op::Transfer(Party::S, v) => (a, s) = (a + v, s - v),
            Op::Add(p, v, tag) => {
                match p {
                    Party::A => a -= v,
                    Party::S => s -= v,
                }
                ptlcs.push((tag, p, v));
            }
            Op::Fulfil(tag) | Op::Fail(tag) => {
                let at = ptlcs.iter().position(|x| x.0 == tag).expect("added before");
                let (_, offerer, v) = ptlcs.remove(at);
                let to_offerer = matches!(op, Op::Fail(_));
                match (offerer, to_offerer) {
                    (Party::A, true) | (Party::S, false) => a += v,
                    _ => s += v,
                }
            }
        }
    }
    (a, s)
}

/// Runs the script under `policy`.
fn run<P: CrashPolicy>(policy: P) -> anyhow::Result<Net<P>> {
    let mut net = Net::new(policy);
    net.open()?;
    let mut offerers = std::collections::HashMap::new();
    for op in script() {
        settle(&mut net)?;
        let (party, command) = match op {
            Op::Transfer(p, v) => (
                p,
                Command::Transfer {
                    amount_sat: v,
                    withhold: false,
                },
            ),
            Op::Add(p, v, tag) => {
                offerers.insert(tag, p);
                (
                    p,
                    Command::AddPtlc {
                        amount_sat: v,
                        point: secret(tag).adaptor_point(),
                        expiry: HEIGHT + 2 * u32::from(DELAY) + 50,
                    },
                )
            }
            Op::Fulfil(tag) | Op::Fail(tag) => {
                let offerer = offerers[&tag];
                let payee = if offerer == Party::A {
                    Party::S
                } else {
                    Party::A
                };
                let point = secret(tag).adaptor_point();
                let id = net
                    .snapshot(payee)
                    .complete
                    .as_ref()
                    .and_then(|c| c.body.ptlcs.iter().find(|p| p.point == point))
                    .map(|p| p.id)
                    .context("ptlc present")?;
                let command = match op {
                    Op::Fulfil(_) => Command::Fulfil {
                        id,
                        secret: secret(tag),
                    },
                    _ => Command::Fail { id },
                };
                (payee, command)
            }
        };
        net.input(party, Input::Command(command))?;
        net.pump()?;
    }
    settle(&mut net)?;
    Ok(net)
}

/// Reconnects until both parties are idle on the same complete state.
fn settle<P: CrashPolicy>(net: &mut Net<P>) -> anyhow::Result<()> {
    for _ in 0..20 {
        net.pump()?;
        let (a, s) = (net.snapshot(Party::A), net.snapshot(Party::S));
        if a.phase() == Phase::Funded && s.phase() == Phase::Funded && a.complete == s.complete {
            return Ok(());
        }
        net.reconnect()?;
    }
    bail!(
        "parties never converged: A {:?}, S {:?}",
        net.snapshot(Party::A).phase(),
        net.snapshot(Party::S).phase()
    )
}

fn check<P: CrashPolicy>(net: &Net<P>) -> anyhow::Result<()> {
    let (a, s) = (net.snapshot(Party::A), net.snapshot(Party::S));
    let (ca, cs) = (
        a.complete.as_ref().context("A has a state")?,
        s.complete.as_ref().context("S has a state")?,
    );
    ensure!(ca.body == cs.body, "parties disagree on the state");
    ensure!(ca.body.total() == CAPACITY, "balance not conserved");
    ensure!(ca.body.ptlcs.is_empty(), "ptlcs left over");
    ensure!(
        (ca.body.to_a, ca.body.to_s) == model(&script()),
        "balances {:?} differ from the model {:?}",
        (ca.body.to_a, ca.body.to_s),
        model(&script())
    );
    Ok(())
}

struct CrashAt {
    party: Party,
    index: usize,
}

impl CrashPolicy for CrashAt {
    fn crash(&mut self, party: Party, index: usize) -> bool {
        party == self.party && index == self.index
    }
}

#[test]
fn every_single_crash_point_resumes_with_the_right_balances() -> anyhow::Result<()> {
    let clean = run(Never)?;
    check(&clean)?;
    let points = [(Party::A, clean.a.persists), (Party::S, clean.s.persists)];
    assert!(
        points.iter().all(|(_, n)| *n > 10),
        "the script persists often"
    );
    let mut crashed = 0;
    for (party, count) in points {
        for index in 1..=count {
            let net = run(CrashAt { party, index })
                .with_context(|| format!("crash of {party:?} at persist {index}"))?;
            check(&net).with_context(|| format!("crash of {party:?} at persist {index}"))?;
            crashed += net.crashes;
        }
    }
    assert!(crashed > 20, "crashes happened: {crashed}");
    Ok(())
}

/// xorshift64: a tiny deterministic generator for the crash schedule.
struct Seeded {
    state: u64,
    left: usize,
}

impl CrashPolicy for Seeded {
    fn crash(&mut self, _: Party, _: usize) -> bool {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        if self.left > 0 && self.state % 4 == 0 {
            self.left -= 1;
            return true;
        }
        false
    }
}

#[test]
fn seeded_multi_crash_schedules_resume_with_the_right_balances() -> anyhow::Result<()> {
    for seed in 1..=40u64 {
        let net = run(Seeded {
            state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            left: 6,
        })
        .with_context(|| format!("seed {seed}"))?;
        check(&net).with_context(|| format!("seed {seed}"))?;
    }
    Ok(())
}
