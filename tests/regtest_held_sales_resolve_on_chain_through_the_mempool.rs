//! Held sales on the BIP118 regtest, node cores, channels funded on chain, every transaction
//! through the mempool (updates, settlements and PTLC claims as packages with a CPFP child on
//! their anchor, timeouts through `sendrawtransaction`), one block at a time. Every first
//! publication is lost: a transaction reaches the mempool only when its node publishes it
//! again at a later block, as it must until it confirms.
//!
//! - **S force-closes with payments pending.** A makes four held sales and cancels one; B
//!   sells two while A is offline; the fourth's payee never comes. S publishes its latest
//!   state: the settlement carries three PTLCs; S claims the two it bought (the claims reveal
//!   their scalars), A, back, takes both proofs from the chain and times the third out at its
//!   expiry. Every output pays what the states say.
//! - **A publishes an older state with payments pending.** A's backup from before the sales
//!   publishes state 0; S answers with its latest state the next block, whose settlement
//!   carries the PTLCs; S claims the two sold and A times out the third.
//! - **B claims on chain.** S goes away right after committing its PTLC to B; B's node claims
//!   it on chain at its deadline; S, back, takes the scalar from B's claim and collects A's
//!   held PTLC; A holds its proof.
//! - **A publishes its state behind an irrevocable offer.** After handing B an irrevocable
//!   letter, A publishes its latest state; B sells all the same, before or after the
//!   settlement confirms; S claims A's PTLC from the settlement and A takes its proof from
//!   the chain.

mod tx_support;

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{bail, ensure, Context};
use asyncpay::chain::regtest::Regtest;
use asyncpay::node::core::{NodeCommand, NodeCore, NodeInput, Records};
use asyncpay::protocol::channel::TIMEOUT_FEE_SAT;
use asyncpay::protocol::messages::ChannelId;
use asyncpay::protocol::payment::{PayerStatus, PaymentId};
use asyncpay::testing::*;
use asyncpay::tx::STATE_LOCKTIME_BASE;
use bitcoin::{OutPoint, Transaction, TxOut, Txid};

const CAPACITY: u64 = 1_000_000;
/// The held PTLCs expire this many blocks after the payment: long enough for S's offers to
/// outlive a few blocks (the claim deadline is 9 blocks before it, the PTLC delta 40 and the
/// sale window margin 2 more).
const HOLD: u32 = 62;
const DELAY: u16 = 6;

fn amount(i: usize) -> u64 {
    20_000 + 5_000 * i as u64
}

/// Publishes what the nodes broadcast, mines one block at a time, and tells the running
/// nodes of each block and of each of their transactions that confirmed.
struct Relay {
    chain: Arc<Regtest>,
    fees: bitcoin::secp256k1::Keypair,
    coins: Vec<(OutPoint, TxOut)>,
    seen: usize,
    pending: Vec<Transaction>,
    confirmed: Vec<(Transaction, u32)>,
    told: BTreeSet<Txid>,
    /// How many times the nodes published each transaction.
    sightings: std::collections::BTreeMap<Txid, usize>,
}

impl Relay {
    fn new(chain: Arc<Regtest>) -> Self {
        let fees = tx_support::keypair("held-sales-on-chain-fees");
        let coins = tx_support::fee_coins(&chain, &fees, 24);
        Relay {
            chain,
            fees,
            coins,
            seen: 0,
            pending: vec![],
            confirmed: vec![],
            told: BTreeSet::new(),
            sightings: Default::default(),
        }
    }

    /// Submits each transaction not yet in the mempool or the chain: with an anchor, as a
    /// package paying for it; otherwise alone. One not valid yet (a timelock) waits.
    fn publish(&mut self, sim: &mut Network) -> anyhow::Result<()> {
        for tx in &sim.broadcasts[self.seen..] {
            *self.sightings.entry(tx.compute_txid()).or_default() += 1;
            if !self
                .pending
                .iter()
                .any(|p| p.compute_txid() == tx.compute_txid())
            {
                self.pending.push(tx.clone());
            }
        }
        self.seen = sim.broadcasts.len();
        for tx in &self.pending {
            let txid = tx.compute_txid();
            if self.chain.in_mempool(&txid)? || self.chain.confirmations(&txid).unwrap_or(0) > 0 {
                continue;
            }
            // Every first publication is lost (never reaches a mempool): a transaction gets
            // in only once its node publishes it again, at a later block.
            if self.sightings.get(&txid).copied().unwrap_or(0) < 2 {
                continue;
            }
            let anchored = asyncpay::tx::anchor::find_anchor(tx).is_ok();
            let sent = if anchored {
                let coin = self.coins.last().cloned().context("fee coins left")?;
                let ok = tx_support::try_publish_using(&self.chain, tx, &self.fees, coin).is_ok();
                if ok {
                    self.coins.pop();
                }
                ok
            } else {
                self.chain.send_raw(tx).is_ok()
            };
            let _ = sent;
        }
        Ok(())
    }

    /// Publishes, mines one block, tells the nodes; returns the new height.
    fn block(&mut self, sim: &mut Network) -> anyhow::Result<u32> {
        self.publish(sim)?;
        self.chain.mine(1)?;
        let height = u32::try_from(self.chain.height()?)?;
        let mut newly = vec![];
        for tx in &self.pending {
            let txid = tx.compute_txid();
            if !self.told.contains(&txid) && self.chain.confirmations(&txid).unwrap_or(0) > 0 {
                newly.push(tx.clone());
                self.told.insert(txid);
            }
        }
        sim.block(height)?;
        for tx in newly {
            self.tell(sim, &tx, height)?;
            self.confirmed.push((tx, height));
        }
        self.publish(sim)?;
        Ok(height)
    }

    /// Every running node learns that `tx` confirmed at `height`.
    fn tell(&self, sim: &mut Network, tx: &Transaction, height: u32) -> anyhow::Result<()> {
        for node in 0..sim.nodes.len() {
            if sim.online(node) {
                sim.input(
                    node,
                    NodeInput::Spend {
                        tx: tx.clone(),
                        confirmed_at: Some(height),
                    },
                )?;
            }
        }
        sim.pump()
    }

    /// A node back online hears of everything that confirmed while it was away.
    fn catch_up(&self, sim: &mut Network) -> anyhow::Result<()> {
        for (tx, height) in self.confirmed.clone() {
            self.tell(sim, &tx, height)?;
        }
        Ok(())
    }

    /// Mines until `done` holds, at most `limit` blocks.
    fn until(
        &mut self,
        sim: &mut Network,
        limit: u32,
        what: &str,
        done: impl Fn(&Relay, &Network) -> bool,
    ) -> anyhow::Result<u32> {
        for _ in 0..limit {
            if done(self, sim) {
                return Ok(u32::try_from(self.chain.height()?)?);
            }
            self.block(sim)?;
        }
        bail!("{what}: not within {limit} blocks")
    }

    /// The confirmed transaction spending `outpoint`, if any.
    fn spender(&self, outpoint: &OutPoint) -> Option<&Transaction> {
        self.confirmed
            .iter()
            .map(|(tx, _)| tx)
            .find(|tx| tx.input.iter().any(|i| &i.previous_output == outpoint))
    }
}

struct Scene {
    relay: Relay,
    sim: Network,
    a_s: ChannelId,
    payments: Vec<PaymentId>,
    /// A's channels before the sales (state 0 of A–S): an old backup.
    backup: Vec<(
        asyncpay::crypto::keys::PublicKey,
        asyncpay::protocol::channel::Snapshot,
    )>,
}

/// A–S (delay 6) and S–B, S–C funded on chain; B and C offline; A pays B twice, C once and
/// B once more, as held sales, and cancels the last. Returns with A online.
fn three_held(chain: Arc<Regtest>) -> anyhow::Result<Scene> {
    let relay = Relay::new(chain.clone());
    let mut sim = Network::on_chain(chain)?;
    let a_s = sim.open_with_delay(A, S, CAPACITY, DELAY)?;
    let c = sim.add_payee("C", 0xc1)?;
    sim.open(S, B, 400_000)?;
    sim.open(S, c, 400_000)?;
    sim.stop(B);
    sim.stop(c);
    let backup = sim.nodes[A].channels.values().cloned().collect();
    let mut payments = vec![];
    for (i, payee) in [B, B, c, B].into_iter().enumerate() {
        let id = sim.pay_held(payee, amount(i), HOLD)?;
        ensure!(
            sim.nodes[A].status(&id) == Some("posted"),
            "payment {i}: {:?}",
            sim.refusals
        );
        payments.push(id);
    }
    sim.input(
        A,
        NodeInput::Command(NodeCommand::Cancel {
            payment_id: payments[3],
        }),
    )?;
    sim.pump()?;
    ensure!(sim.nodes[S].status(&payments[3]) == Some("cancelled"));
    ensure!(
        sim.nodes[S]
            .state_with(sim.key(A))
            .context("A–S")?
            .ptlcs
            .len()
            == 3
    );
    Ok(Scene {
        relay,
        sim,
        a_s,
        payments,
        backup,
    })
}

/// B, back, sells what is in its mailbox (payments 0 and 1).
fn b_sells(scene: &mut Scene) -> anyhow::Result<()> {
    scene.sim.start(B)?;
    scene.sim.fetch_letters(B)?;
    for id in &scene.payments[..2] {
        ensure!(
            scene.sim.nodes[S].status(id) == Some("sold"),
            "S bought payment {id}: {:?}",
            scene.sim.refusals
        );
    }
    ensure!(scene.sim.nodes[S].status(&scene.payments[2]) == Some("offered"));
    Ok(())
}

/// The settlement of A–S on chain: the confirmed spend of the update that spent `update`.
fn settlement_of(relay: &Relay, update: &Transaction) -> Option<Transaction> {
    let out = OutPoint {
        txid: update.compute_txid(),
        vout: 0,
    };
    relay
        .spender(&out)
        .filter(|tx| tx.lock_time.to_consensus_u32() < STATE_LOCKTIME_BASE)
        .cloned()
}

/// The settlement's PTLC outputs (by amount) are spent: the two sold by S's claims, the
/// unsold by A's timeout; A holds both proofs; every sat is where the states say.
fn check_resolved(scene: &mut Scene, update: &Transaction) -> anyhow::Result<()> {
    let settlement = settlement_of(&scene.relay, update).context("the settlement confirmed")?;
    let txid = settlement.compute_txid();
    let vout_of = |amount: u64| {
        settlement
            .output
            .iter()
            .position(|o| o.value.to_sat() == amount)
            .map(|v| OutPoint {
                txid,
                vout: v as u32,
            })
    };
    let fee = |a: u64| policy().fee_for(a);
    let s_key = scene.sim.key(S);
    for i in 0..3 {
        let out = vout_of(amount(i) + fee(amount(i))).context("a PTLC output per payment")?;
        let spend = scene.relay.spender(&out).context("each PTLC resolved")?;
        let paid = spend.output[0].value.to_sat();
        if i < 2 {
            // S's claim: the whole amount to S's payout (the anchor pays the fee).
            ensure!(paid == amount(i) + fee(amount(i)), "claim pays {paid}");
        } else {
            ensure!(
                paid == amount(i) + fee(amount(i)) - TIMEOUT_FEE_SAT,
                "A's timeout pays {paid}"
            );
        }
    }
    let _ = s_key;
    for (i, id) in scene.payments.iter().enumerate() {
        let status = &scene.sim.nodes[A].payer(id).context("A's record")?.status;
        match (i, status) {
            (0 | 1, PayerStatus::Paid { proof, .. } | PayerStatus::Completed { proof, .. }) => {
                proof
                    .verify(&scene.sim.key(B))
                    .map_err(|e| anyhow::anyhow!("proof {i}: {e}"))?;
            }
            // Cancelled, and timed out by A on chain.
            (2 | 3, PayerStatus::Void { .. }) => {}
            _ => bail!("payment {i} at A is {}", status.name()),
        }
    }
    let state = scene.sim.nodes[S]
        .state_with(scene.sim.key(A))
        .context("A–S")?;
    let sold: u64 = (0..2).map(|i| amount(i) + fee(amount(i))).sum();
    let pending = amount(2) + fee(amount(2));
    ensure!(
        state.to_a == CAPACITY - sold - pending && state.to_s == 0,
        "the settled state: {state:?}"
    );
    let outs = tx_support::unspent_amounts(&scene.relay.chain, &settlement);
    ensure!(outs.contains(&state.to_a), "A's balance paid: {outs:?}");
    Ok(())
}

#[test]
fn s_force_closes_with_held_sales_pending_and_every_output_resolves() -> anyhow::Result<()> {
    let chain = Arc::new(tx_support::start());
    let mut scene = three_held(chain)?;
    scene.sim.stop(A);
    b_sells(&mut scene)?;

    // A stays away; S publishes its latest state (the PTLCs of the three open sales).
    let broadcasts = scene.sim.broadcasts.len();
    scene.sim.input(
        S,
        NodeInput::Command(NodeCommand::ForceClose {
            channel_id: scene.a_s,
        }),
    )?;
    let update = scene.sim.broadcasts[broadcasts..]
        .iter()
        .find(|tx| tx.lock_time.to_consensus_u32() >= STATE_LOCKTIME_BASE)
        .cloned()
        .context("S publishes its latest update")?;
    resolve(&mut scene, &update)
}

/// From `update` on chain: S's node settles it and claims the two PTLCs it bought; A,
/// back, hears of the chain, takes its proofs and times the unsold PTLC out at its expiry.
fn resolve(scene: &mut Scene, update: &Transaction) -> anyhow::Result<()> {
    // The settlement's PTLC outputs (its anchor is spent by the package that paid for it,
    // its balances stay unspent).
    let ptlc_amounts: Vec<u64> = (0..3)
        .map(|i| amount(i) + policy().fee_for(amount(i)))
        .collect();
    let settled_and_claimed = |r: &Relay, spent_at_least: usize| {
        settlement_of(r, update).is_some_and(|se| {
            let txid = se.compute_txid();
            (0..se.output.len() as u32)
                .filter(|&vout| ptlc_amounts.contains(&se.output[vout as usize].value.to_sat()))
                .filter(|&vout| r.spender(&OutPoint { txid, vout }).is_some())
                .count()
                >= spent_at_least
        })
    };
    let limit = 4 * u32::from(DELAY) + 10;
    scene
        .relay
        .until(&mut scene.sim, limit, "S's claims confirm", |r, _| {
            settled_and_claimed(r, 2)
        })?;
    if !scene.sim.online(A) {
        scene.sim.start(A)?;
        scene.relay.catch_up(&mut scene.sim)?;
    }
    let expiry = HOLD + scene.sim.height;
    scene
        .relay
        .until(&mut scene.sim, expiry, "A's timeout confirms", |r, _| {
            settled_and_claimed(r, 3)
        })?;
    check_resolved(scene, update)
}

#[test]
fn a_publishing_an_older_state_is_answered_and_held_sales_resolve() -> anyhow::Result<()> {
    let chain = Arc::new(tx_support::start());
    let mut scene = three_held(chain)?;
    scene.sim.stop(A);
    b_sells(&mut scene)?;
    // A's backup from before the sales publishes state 0 of A–S.
    let mut backup = NodeCore::restore(
        scene.sim.nodes[A].seed,
        scene.sim.height,
        scene.backup.clone(),
        Records::Payer(vec![]),
    )?;
    let u0 = force_close(&mut backup, scene.a_s).context("the backup publishes U_0")?;
    ensure!(u0.lock_time.to_consensus_u32() == STATE_LOCKTIME_BASE);
    // Published twice, as a node would at two blocks (the relay loses every first one).
    scene.sim.broadcasts.push(u0.clone());
    scene.sim.broadcasts.push(u0.clone());
    // S answers with its latest state, on top of U_0.
    let u0_out = OutPoint {
        txid: u0.compute_txid(),
        vout: 0,
    };
    scene
        .relay
        .until(&mut scene.sim, u32::from(DELAY), "S answers U_0", |r, _| {
            r.spender(&u0_out).is_some()
        })?;
    let answer = scene
        .relay
        .spender(&u0_out)
        .cloned()
        .context("the answer")?;
    ensure!(
        answer.lock_time.to_consensus_u32() > STATE_LOCKTIME_BASE,
        "S's latest update overrides U_0, not U_0's settlement"
    );
    resolve(&mut scene, &answer)
}

/// B is paid on chain: S goes away right after committing its PTLC to B, before B's
/// fulfilment reaches it. B's node claims the PTLC on chain at its deadline; S, back, learns
/// the scalar from B's claim and collects A's held PTLC with it; A, back, holds its proof.
#[test]
fn b_claiming_on_chain_pays_the_held_sale_all_the_same() -> anyhow::Result<()> {
    use asyncpay::protocol::messages::{Change, Message};
    use asyncpay::protocol::wire::{Decoded, PeerMessage};

    let chain = Arc::new(tx_support::start());
    let mut relay = Relay::new(chain.clone());
    let mut sim = Network::on_chain(chain)?;
    sim.open_with_delay(A, S, CAPACITY, DELAY)?;
    let s_b = sim.open(S, B, 400_000)?;
    sim.stop(B);
    let id = sim.pay_held(B, amount(0), HOLD)?;
    ensure!(sim.nodes[A].status(&id) == Some("posted"));
    sim.stop(A);

    // B reads its letter; frames are delivered one by one until B proposes its fulfilment,
    // which S never gets: S stops.
    sim.start(B)?;
    let letter = sim.nodes[B].mailbox.remove(0);
    sim.input(B, NodeInput::Letter { bytes: letter })?;
    let mut cut = false;
    for _ in 0..200 {
        let Some((from, to, frame)) = sim.queue.pop_front() else {
            break;
        };
        let fulfil = matches!(
            PeerMessage::decode(&frame),
            Ok(Decoded::Message(PeerMessage::Channel(Message::Propose(p))))
                if matches!(p.change, Change::FulfilPtlc { .. })
        );
        if fulfil && from == B {
            cut = true;
            break;
        }
        let key = sim.key(from);
        sim.input(to, NodeInput::Frame { from: key, frame })?;
    }
    ensure!(cut, "B proposed its fulfilment");
    sim.stop(S);
    ensure!(
        sim.nodes[B].status(&id) == Some("fulfilled")
            || sim.nodes[B].status(&id) == Some("invoiced"),
        "B waits for its fulfilment: {:?}",
        sim.nodes[B].status(&id)
    );

    // B alone: at its PTLC's deadline its node publishes S–B's latest state, settles it and
    // claims the PTLC, revealing the scalar.
    let b_claims = |r: &Relay, sim: &Network| {
        let Some(channel) = sim.nodes[B].channels.get(&s_b) else {
            return false;
        };
        let Some(oc) = channel.1.on_chain() else {
            return false;
        };
        oc.settlement_txid.is_some()
            && r.confirmed.iter().any(|(tx, _)| {
                tx.input
                    .iter()
                    .any(|i| Some(i.previous_output.txid) == oc.settlement_txid)
            })
    };
    relay.until(&mut sim, 80, "B's claim confirms", b_claims)?;
    // B's claim pays it the PTLC's amount, and B's record says paid once it confirmed.
    let settlement = sim.nodes[B].channels[&s_b]
        .1
        .on_chain()
        .and_then(|oc| oc.settlement_txid)
        .context("S–B settled")?;
    let claim = relay
        .confirmed
        .iter()
        .map(|(tx, _)| tx)
        .find(|tx| {
            tx.input
                .iter()
                .any(|i| i.previous_output.txid == settlement)
        })
        .context("B's claim")?;
    ensure!(
        claim.output[0].value.to_sat() == amount(0),
        "B's claim pays B the PTLC's amount: {:?}",
        claim.output
    );
    ensure!(
        sim.nodes[B].status(&id) == Some("paid"),
        "B's record: {:?}",
        sim.nodes[B].status(&id)
    );

    // S comes back, hears of the chain and takes the scalar from B's claim: the sale is
    // made, and A's held PTLC is S's to collect.
    sim.start(S)?;
    relay.catch_up(&mut sim)?;
    ensure!(
        sim.nodes[S].status(&id) == Some("sold"),
        "S bought the scalar from the chain: {:?}",
        sim.nodes[S].status(&id)
    );
    // A, back, signs S's fulfilment and takes its proof.
    sim.start(A)?;
    sim.pump()?;
    let state = sim.nodes[S].state_with(sim.key(A)).context("A–S")?;
    let paid = amount(0) + policy().fee_for(amount(0));
    ensure!(
        state.ptlcs.is_empty() && state.to_s == paid && state.to_a == CAPACITY - paid,
        "S collected A's PTLC: {state:?}"
    );
    let status = &sim.nodes[A].payer(&id).context("A's record")?.status;
    let (PayerStatus::Paid { proof, .. } | PayerStatus::Completed { proof, .. }) = status else {
        bail!("A holds its proof: {}", status.name());
    };
    proof
        .verify(&sim.key(B))
        .map_err(|e| anyhow::anyhow!("A's proof: {e}"))?;
    Ok(())
}

/// A hands B an irrevocable letter, then publishes its latest state of A–S, as if that
/// voided the offer before B sells. B, back, sells all the same: S buys while A–S closes on
/// chain (its latest state, on chain, holds A's PTLC), claims the PTLC from the settlement
/// with the scalar, and A takes its proof from the chain.
#[test]
fn an_irrevocable_offer_is_sold_after_the_payer_publishes_its_state() -> anyhow::Result<()> {
    sold_after_the_payer_publishes(false)
}

/// The same, B coming back only after the settlement of A's state has confirmed: the PTLC
/// output is on chain, and S buys and claims it.
#[test]
fn an_irrevocable_offer_is_sold_after_the_payers_state_settled() -> anyhow::Result<()> {
    sold_after_the_payer_publishes(true)
}

fn sold_after_the_payer_publishes(settled: bool) -> anyhow::Result<()> {
    let chain = Arc::new(tx_support::start());
    let mut relay = Relay::new(chain.clone());
    let mut sim = Network::on_chain(chain)?;
    let a_s = sim.open_with_delay(A, S, CAPACITY, DELAY)?;
    sim.open(S, B, 400_000)?;
    sim.stop(B);
    let id = sim.pay_held_with(B, amount(0), HOLD, true)?;
    ensure!(
        sim.nodes[A].status(&id) == Some("posted"),
        "{:?}",
        sim.refusals
    );
    let n = sim.broadcasts.len();
    sim.input(
        A,
        NodeInput::Command(NodeCommand::ForceClose { channel_id: a_s }),
    )?;
    let update = sim.broadcasts[n..]
        .iter()
        .find(|tx| tx.lock_time.to_consensus_u32() >= STATE_LOCKTIME_BASE)
        .cloned()
        .context("A publishes its latest update")?;
    let update_txid = update.compute_txid();
    relay.until(&mut sim, u32::from(DELAY), "A's update confirms", |r, _| {
        r.confirmed
            .iter()
            .any(|(tx, _)| tx.compute_txid() == update_txid)
    })?;
    if settled {
        let limit = 2 * u32::from(DELAY) + 4;
        relay.until(&mut sim, limit, "the settlement confirms", |r, _| {
            settlement_of(r, &update).is_some()
        })?;
    }

    // B, back, sells: S buys while A–S is closing on chain.
    sim.start(B)?;
    sim.fetch_letters(B)?;
    ensure!(
        sim.nodes[S].status(&id) == Some("sold"),
        "S buys: {:?}",
        sim.refusals
    );
    ensure!(sim.nodes[B].status(&id) == Some("paid"));

    // S claims A's PTLC from the settlement with the scalar; A reads it from the claim.
    let ptlc_amount = amount(0) + policy().fee_for(amount(0));
    let claimed = |r: &Relay| {
        let se = settlement_of(r, &update)?;
        let txid = se.compute_txid();
        let vout = se
            .output
            .iter()
            .position(|o| o.value.to_sat() == ptlc_amount)?;
        r.spender(&OutPoint {
            txid,
            vout: vout as u32,
        })
        .cloned()
    };
    let limit = 4 * u32::from(DELAY) + 10;
    relay.until(&mut sim, limit, "S's claim confirms", |r, _| {
        claimed(r).is_some()
    })?;
    let claim = claimed(&relay).context("the claim")?;
    ensure!(
        claim.output[0].value.to_sat() == ptlc_amount,
        "S's claim takes the whole PTLC, not A's timeout: {claim:?}"
    );
    match &sim.nodes[A].payer(&id).context("A's record")?.status {
        PayerStatus::Paid { proof, .. } | PayerStatus::Completed { proof, .. } => proof
            .verify(&sim.key(B))
            .map_err(|e| anyhow::anyhow!("proof: {e}"))?,
        other => bail!("A's payment is {}", other.name()),
    }
    Ok(())
}
