//! The tower against adversaries: a forged or tampered appointment, a replay, an older
//! state, another state under the same number, junk the LSP registers under the payee's
//! hint with its own key (it knows the funding outpoint and both keys), arbitrary bytes, a
//! cooperative close, and its caps. None of them makes the tower panic, lose the payee's
//! latest state or answer with anything but it; a cooperative close opens nothing.

mod channel_support;
mod tower_support;

use anyhow::ensure;
use asyncpay::protocol::channel::Snapshot;
use asyncpay::tower::{hint, Appointment, Tower, TowerError, TowerEvent, TowerLimits};
use asyncpay::tx::{Party, STATE_LOCKTIME_BASE};
use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
use bitcoin::{Transaction, Witness};
use channel_support::{funding_outpoint, DELAY, HEIGHT};
use proptest::prelude::*;
use tower_support::{block, channel_at_state_2, force_close, SEED};

fn key(b: u8) -> Keypair {
    Keypair::from_secret_key(
        &Secp256k1::new(),
        &SecretKey::from_slice(&[b; 32]).expect("valid"),
    )
}

/// The payee's snapshot at state 2, the LSP's at state 2, and the LSP's copies of states 0
/// and 1.
fn states_with_copies() -> anyhow::Result<(Snapshot, Snapshot, Vec<Snapshot>)> {
    let (pair, copies) = channel_at_state_2()?;
    Ok((
        pair.channel(Party::A).snapshot().clone(),
        pair.channel(Party::S).snapshot().clone(),
        copies.to_vec(),
    ))
}

/// The payee's snapshot at state 2, the LSP's at state 2, and the LSP's copy of state 0.
fn states() -> anyhow::Result<(Snapshot, Snapshot, Snapshot)> {
    let (payee, lsp, copies) = states_with_copies()?;
    Ok((payee, lsp, copies[0].clone()))
}

#[test]
fn forged_stale_conflicting_and_replayed_appointments_change_nothing() -> anyhow::Result<()> {
    let (payee, _, lsp0) = states()?;
    let client = Appointment::client_key(&SEED, &payee.channel_id);
    let mut tower = Tower::new(TowerLimits::default());
    let good = Appointment::new(&client, &payee, 0, 2)?;

    // Tampered kit, leaves, state or key: the signature no longer verifies.
    let mut bad = good.clone();
    bad.kit[0] ^= 1;
    ensure!(tower.accept(bad) == Err(TowerError::BadSignature));
    let mut bad = good.clone();
    bad.leaves[5] ^= 1;
    ensure!(tower.accept(bad) == Err(TowerError::BadSignature));
    let mut bad = good.clone();
    bad.state = 7;
    ensure!(tower.accept(bad) == Err(TowerError::BadSignature));
    let mut bad = good.clone();
    bad.client = key(9).x_only_public_key().0.serialize();
    ensure!(tower.accept(bad) == Err(TowerError::BadSignature));
    ensure!(tower.is_empty());

    tower.accept(good.clone())?;
    // A replay changes nothing and stores nothing new.
    let again = tower.accept(good.clone())?;
    ensure!(again.leaves.is_empty() && again.record.state == 2);
    // An older state of the same channel is refused.
    let mut older = lsp0.clone();
    older.side = Party::A;
    let stale = Appointment::new(&client, &older, 0, 0)?;
    ensure!(
        tower.accept(stale)
            == Err(TowerError::Stale {
                state: 0,
                stored: 2
            })
    );
    // Another body under the same number is refused.
    let mut forged = payee.clone();
    if let Some(rec) = forged.complete.as_mut() {
        rec.body.to_a += 1;
        rec.body.to_s -= 1;
    }
    let conflicting = Appointment::new(&client, &forged, 2, 2)?;
    ensure!(tower.accept(conflicting) == Err(TowerError::Conflict { state: 2 }));
    // Leaves past the kit's state are refused.
    let mut past = Appointment::new(&client, &payee, 2, 2)?;
    past.state = 1;
    ensure!(tower.accept(past).is_err());
    ensure!(tower.len() == 1);
    Ok(())
}

#[test]
fn junk_the_lsp_registers_under_the_payees_hint_does_not_stop_the_answer() -> anyhow::Result<()> {
    let (payee, lsp, lsp0) = states()?;
    let mut tower = Tower::new(TowerLimits::default());
    tower.accept(Appointment::new(
        &Appointment::client_key(&SEED, &payee.channel_id),
        &payee,
        0,
        2,
    )?)?;
    // The LSP registers its own copy of state 0 (a valid kit: it knows the key) and a
    // garbage kit, under the payee's hint, with keys of its own.
    tower.accept(Appointment::new(&key(0x51), &lsp0, 0, 0)?)?;
    let mut garbage = Appointment::new(&key(0x52), &lsp, 0, 2)?;
    garbage.kit = vec![0xab; garbage.kit.len()];
    garbage.signature = vec![];
    let digest = bitcoin::secp256k1::Message::from_digest(garbage.digest());
    garbage.signature = Secp256k1::new()
        .sign_schnorr_no_aux_rand(&digest, &key(0x52))
        .as_ref()
        .to_vec();
    tower.accept(garbage)?;
    ensure!(tower.len() == 3);

    let u0 = force_close(lsp0, Party::S)?;
    let out = tower.block(HEIGHT + 5, &block(vec![u0.clone()]));
    let h = hint(&funding_outpoint());
    ensure!(out.events.contains(&TowerEvent::NotOpened { hint: h }));
    let answers: Vec<&Transaction> = out
        .broadcasts
        .iter()
        .filter(|tx| tx.lock_time.to_consensus_u32() == STATE_LOCKTIME_BASE + 2)
        .collect();
    ensure!(answers.len() == 1, "the payee's state 2 answers U_0");
    // The LSP's own record asks for nothing older than what is on chain: no U_k with k < 2
    // other than U_0 itself goes out, and no settlement before the delay.
    ensure!(out.broadcasts.len() == 1, "{:?}", out.broadcasts);
    // Once U_2 confirms, the LSP's state-0 record publishes no SE_0 (U_0's output is gone).
    let u2 = answers[0].clone();
    tower.block(HEIGHT + 6, &block(vec![u2]));
    for height in HEIGHT + 7..HEIGHT + 7 + u32::from(DELAY) {
        let out = tower.block(height, &block(vec![]));
        for tx in &out.broadcasts {
            ensure!(
                tx.input[0].previous_output.txid != u0.compute_txid(),
                "nothing spends U_0's output but U_2"
            );
        }
    }
    Ok(())
}

#[test]
fn a_cooperative_close_opens_nothing_and_ends_the_appointments() -> anyhow::Result<()> {
    let (payee, _, _) = states()?;
    let client = Appointment::client_key(&SEED, &payee.channel_id);
    let mut tower = Tower::new(TowerLimits::default());
    tower.accept(Appointment::new(&client, &payee, 0, 2)?)?;
    // A key-path spend of the funding output: one witness element, no update keys.
    let mut close = force_close(payee.clone(), Party::A)?;
    close.lock_time = bitcoin::absolute::LockTime::ZERO;
    close.input[0].witness = Witness::from_slice(&[[7u8; 64]]);
    let out = tower.block(HEIGHT + 3, &block(vec![close]));
    ensure!(
        out.events
            == vec![TowerEvent::ClosedCooperatively {
                hint: hint(&funding_outpoint())
            }]
    );
    ensure!(out.broadcasts.is_empty() && tower.breaches() == 0);
    ensure!(out.stored.iter().all(|s| s.record.breach.is_none()));
    ensure!(tower.accept(Appointment::new(&client, &payee, 0, 2)?) == Err(TowerError::Closing));
    Ok(())
}

#[test]
fn an_old_update_whose_leaf_the_tower_lacks_is_reported_not_answered_wrongly() -> anyhow::Result<()>
{
    let (payee, _, copies) = states_with_copies()?;
    let client = Appointment::client_key(&SEED, &payee.channel_id);
    let mut tower = Tower::new(TowerLimits::default());
    // Only state 0's leaf so far (the client was sending the rest when it went offline).
    tower.accept(Appointment::new(&client, &payee, 0, 0)?)?;
    let u1 = force_close(copies[1].clone(), Party::S)?;
    let out = tower.block(HEIGHT + 1, &block(vec![u1]));
    ensure!(
        out.broadcasts.is_empty(),
        "no answer without state 1's leaf"
    );
    ensure!(out.events.contains(&TowerEvent::Unanswerable {
        hint: hint(&funding_outpoint()),
        stale: 1
    }));
    // With the leaves complete, the next block answers.
    let mut tower2 = Tower::new(TowerLimits::default());
    tower2.accept(Appointment::new(&client, &payee, 0, 2)?)?;
    let u1 = force_close(copies[1].clone(), Party::S)?;
    let out = tower2.block(HEIGHT + 1, &block(vec![u1]));
    ensure!(out.broadcasts.len() == 1);
    Ok(())
}

#[test]
fn caps_refuse_more_channels_leaves_and_kit_bytes_than_configured() -> anyhow::Result<()> {
    let (payee, lsp, _) = states()?;
    let limits = TowerLimits {
        max_channels: 1,
        max_states: 2,
        max_leaves_per_appointment: 2,
        max_kit_bytes: 4096,
        max_total_leaves: 1_000,
    };
    let mut tower = Tower::new(limits);
    let client = Appointment::client_key(&SEED, &payee.channel_id);
    ensure!(matches!(
        tower.accept(Appointment::new(&client, &payee, 0, 2)?),
        Err(TowerError::TooManyLeaves { .. })
    ));
    ensure!(matches!(
        tower.accept(Appointment::new(&client, &payee, 1, 2)?),
        Err(TowerError::TooManyLeaves { .. })
    ));
    let limits = TowerLimits {
        max_channels: 1,
        ..TowerLimits::default()
    };
    let mut tower = Tower::new(limits);
    tower.accept(Appointment::new(&client, &payee, 0, 2)?)?;
    ensure!(
        tower.accept(Appointment::new(&key(3), &lsp, 0, 2)?)
            == Err(TowerError::Full { what: "channels" })
    );
    let mut tower = Tower::new(TowerLimits {
        max_kit_bytes: 100,
        ..TowerLimits::default()
    });
    ensure!(matches!(
        tower.accept(Appointment::new(&client, &payee, 0, 2)?),
        Err(TowerError::KitTooLarge { .. })
    ));
    // Leaves over all channels: two channels of three states each do not fit in five; the
    // refusal stores nothing, and the tower still holds the first channel's three.
    let mut tower = Tower::new(TowerLimits {
        max_total_leaves: 5,
        ..TowerLimits::default()
    });
    tower.accept(Appointment::new(&client, &payee, 0, 2)?)?;
    ensure!(
        tower.accept(Appointment::new(&key(4), &lsp, 0, 2)?)
            == Err(TowerError::Full { what: "leaves" })
    );
    ensure!(tower.len() == 1);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(7), ..ProptestConfig::default() })]

    /// Arbitrary appointment bytes never panic the decoder or the tower, and arbitrary
    /// blocks after it never panic the scan.
    #[test]
    fn arbitrary_appointments_and_blocks_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        state in any::<u64>(),
        from in any::<u64>(),
        kit in proptest::collection::vec(any::<u8>(), 0..300),
        leaves in proptest::collection::vec(any::<u8>(), 0..300),
        witness in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..6),
        locktime in any::<u32>(),
    ) {
        let mut tower = Tower::new(TowerLimits::default());
        let _ = serde_json::from_slice::<Appointment>(&bytes).map(|a| tower.accept(a));
        let signer = key(0x61);
        let mut a = Appointment {
            client: signer.x_only_public_key().0.serialize(),
            hint: hint(&funding_outpoint()),
            state,
            kit,
            leaves_from: from,
            leaves,
            signature: vec![],
        };
        let digest = bitcoin::secp256k1::Message::from_digest(a.digest());
        a.signature = Secp256k1::new().sign_schnorr_no_aux_rand(&digest, &signer).as_ref().to_vec();
        let _ = tower.accept(a);
        let tx = Transaction {
            version: bitcoin::transaction::Version(3),
            lock_time: bitcoin::absolute::LockTime::from_consensus(locktime),
            input: vec![bitcoin::TxIn {
                previous_output: funding_outpoint(),
                witness: Witness::from_slice(&witness),
                ..Default::default()
            }],
            output: vec![],
        };
        let out = tower.block(HEIGHT, &block(vec![tx]));
        prop_assert!(out.broadcasts.is_empty());
    }
}
