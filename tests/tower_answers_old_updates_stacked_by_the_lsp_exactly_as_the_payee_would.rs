//! The tower, in process, against two real channel state machines: the payee side (A here)
//! sends its latest state to the tower and goes silent; the LSP (S) publishes its copy of
//! state 0, then stacks its state 1 on top. From the blocks alone the tower opens the kit,
//! answers each older update with U_2 and, after the shared delay, publishes SE_2. Every
//! transaction it publishes is the very transaction (same txid) the payee's own channel
//! would publish, and the tower survives a restart from its store in the middle.

mod channel_support;
mod tower_support;

use anyhow::{ensure, Context};
use asyncpay::protocol::channel::{ChainEvent, Channel, Command, Input};
use asyncpay::tower::{hint, Appointment, Tower, TowerError, TowerEvent, TowerLimits, TowerStore};
use asyncpay::tx::Party;
use bitcoin::OutPoint;
use channel_support::{funding_outpoint, secrets, DELAY, HEIGHT};
use tower_support::{block, broadcast_of, channel_at_state_2, state, SEED};

#[test]
fn tower_answers_each_stacked_old_update_and_settles_like_the_payee() -> anyhow::Result<()> {
    let (mut pair, [copy0, copy1]) = channel_at_state_2()?;
    let snap = pair.channel(Party::A).snapshot().clone();
    let key = Appointment::client_key(&SEED, &snap.channel_id);
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("tower.sqlite");
    let mut tower = Tower::new(TowerLimits::default());

    // The client's first push carries only the newest leaf; the tower asks for the rest.
    let first = Appointment::new(&key, &snap, 2, 2)?;
    ensure!(tower.accept(first) == Err(TowerError::MissingLeaves { from: 0 }));
    let stored = tower.accept(Appointment::new(&key, &snap, 0, 2)?)?;
    ensure!(stored.record.state == 2 && stored.leaves.len() == 3);
    TowerStore::open(&db)?.save(&[stored], Some(HEIGHT))?;

    // S publishes its copy of state 0: U_0 on the funding output, confirmed at h0.
    let mut old0 = Channel::restore(secrets(Party::S), copy0)?;
    let u0 = broadcast_of(old0.handle(Input::Command(Command::ForceClose))?).context("U_0")?;
    ensure!(state(&u0) == 0 && u0.input[0].previous_output == funding_outpoint());
    let h0 = HEIGHT + 10;
    let out = tower.block(h0, &block(vec![u0.clone()]));
    TowerStore::open(&db)?.save(&out.stored, Some(h0))?;
    ensure!(
        out.events.contains(&TowerEvent::Opened {
            hint: hint(&funding_outpoint()),
            state: 0,
            latest: 2
        }),
        "{:?}",
        out.events
    );
    let answer = out
        .broadcasts
        .first()
        .context("the tower answers U_0")?
        .clone();
    // The payee's own channel, told of U_0, would publish the same transaction.
    pair.spent(Party::A, &u0, h0)?;
    let own = pair.a.broadcasts.last().context("A answers U_0")?.clone();
    ensure!(answer.compute_txid() == own.compute_txid());
    let u0_out = OutPoint {
        txid: u0.compute_txid(),
        vout: 0,
    };
    ensure!(answer.input[0].previous_output == u0_out && state(&answer) == 2);

    // The tower restarts from its store.
    let store = TowerStore::open(&db)?;
    let mut tower = Tower::restore(TowerLimits::default(), store.load()?);
    ensure!(tower.breaches() == 1);

    // Before the answer confirms, S stacks its state 1 on U_0 (its old copy at state 1 answers
    // U_0 as an honest node would).
    let mut old1 = Channel::restore(secrets(Party::S), copy1)?;
    old1.handle(Input::Chain(ChainEvent::Block { height: h0 }))?;
    let u1 = broadcast_of(old1.handle(Input::Chain(ChainEvent::Spend {
        tx: u0.clone(),
        confirmed_at: Some(h0),
    }))?)
    .context("U_1 on U_0")?;
    ensure!(state(&u1) == 1 && u1.input[0].previous_output == u0_out);
    let h1 = h0 + 1;
    let out = tower.block(h1, &block(vec![u1.clone()]));
    let answer = out
        .broadcasts
        .first()
        .context("the tower answers U_1")?
        .clone();
    pair.spent(Party::A, &u1, h1)?;
    let own = pair.a.broadcasts.last().context("A answers U_1")?.clone();
    ensure!(answer.compute_txid() == own.compute_txid());
    ensure!(answer.input[0].previous_output.txid == u1.compute_txid() && state(&answer) == 2);

    // U_2 confirms; nothing to publish until the shared delay has passed.
    let h2 = h1 + 1;
    let out = tower.block(h2, &block(vec![answer.clone()]));
    ensure!(out.broadcasts.is_empty(), "{:?}", out.broadcasts);
    pair.spent(Party::A, &answer, h2)?;
    let mut settlement = None;
    for h in h2 + 1..h2 + u32::from(DELAY) + 2 {
        let out = tower.block(h, &block(vec![]));
        let n = pair.a.broadcasts.len();
        pair.input(Party::A, Input::Chain(ChainEvent::Block { height: h }))?;
        let own = pair.a.broadcasts.get(n).cloned();
        match (out.broadcasts.first(), own) {
            (Some(ours), Some(theirs)) => {
                ensure!(ours.compute_txid() == theirs.compute_txid(), "same SE_2");
                settlement = Some(ours.clone());
                break;
            }
            (None, None) => {}
            (ours, theirs) => anyhow::bail!("at {h}: tower {ours:?}, payee {theirs:?}"),
        }
    }
    let se2 = settlement.context("the tower publishes SE_2")?;
    let to_a = pair.channel(Party::A).latest().context("state")?.to_a;
    ensure!(se2.output[0].value.to_sat() == to_a);

    // SE_2 confirms: done, nothing more is published.
    let out = tower.block(h2 + 20, &block(vec![se2.clone()]));
    ensure!(out
        .events
        .iter()
        .any(|e| matches!(e, TowerEvent::Settled { state: 2, .. })));
    ensure!(tower.breaches() == 0);
    let out = tower.block(h2 + 21, &block(vec![]));
    ensure!(out.broadcasts.is_empty());
    Ok(())
}
