//! S sharded over worker threads: one node identity (one node key), its channels partitioned
//! over W workers, each worker a [`NodeCore`] with its shard's channels and payment records
//! and a SQLite store of its own.
//!
//! **Routing.** Every channel of S belongs to exactly one shard, and all of S's channels with
//! one peer belong to the same shard, so a frame goes to the worker that owns the channel by
//! its sender's key ([`Route`]). The payee's S–B channel and the channels of every payer
//! whose payments that payee sells are on one shard (payee j on shard j mod W; payer i's
//! payment is sold by payee i mod P, so payer i's channel is on that payee's shard): a sale
//! touches one shard only. **Cross-shard sales (a payer on one shard, its payee on another)
//! are not built**; the report says so (`cross_shard_sales`). They would need a hand-off
//! between workers (S–B adds the PTLC on one, A's state completes on the other) with each
//! side's rows durable before the other acts.
//!
//! **Stores.** One SQLite store per shard. SQLite takes one writer at a time per database,
//! so workers sharing one store would take turns at its write lock and fsync one after the
//! other; with a store each, every worker group-commits on its own. No row of a sale is in
//! two stores (a sale never crosses shards), so no transaction needs to span two files. Each
//! run's shards are set up by reading S's rows (from the single store, or from the shards of
//! the run before), writing each shard's rows to its store, and restoring each worker's core
//! from its own store, as a node restarts.
//!
//! A restored core pays once per channel for what the single S's channels, set up in the
//! same process, already hold: its first use of a channel decodes the channel's points and
//! builds libsecp256k1 contexts again (`s_curve_ops_per_sale` shows the extra
//! `point_decode` and `libsecp_context`). Every payer's channel is used once, so this is
//! in the workers' per-sale figures and not in the unbatched and batched runs': it is what
//! S pays to sell payments pending from before a restart.
//!
//! **Persist before send.** Each worker runs the same loop as the unsharded S (`run_s`, group
//! commit through the node's driver): it hands its queued inputs to its core, writes all
//! their change sets in one transaction of its own store, and only then sends their frames.
//! W = 1 runs through this module too, so the W = 1 and W = 2 figures differ only in W.
//!
//! **Nonces.** A channel's signing key and its nonce seed are derived from the node's seed
//! *and the channel id*, and the nonce's session counter is in the channel's snapshot
//! ([`crate::crypto::nonce`]: k = H(nonce seed, session, signer key, aux)). A nonce is
//! therefore used only by the core that owns the channel, advancing a counter that core
//! persists before the public nonce leaves; two shards with the same node key hold
//! different channels, so they derive from different nonce seeds and sign with different
//! keys. The partition is checked: a channel found in two shards' stores stops the run
//! ([`PaymentBenchError::ChannelInTwoShards`]). A channel moves between the runs only
//! through its stored snapshot (its counter past every nonce sent), after its old worker
//! stopped, with no proposal of S's pending. Node-key signatures (S's offers, not made
//! during sales) use BIP340 synthetic nonces, H(key, aux, message): a message signed by two
//! shards gets the same nonce and the same signature, different messages different nonces.
//!
//! **Figures** (`sales.workers`): per W, the sales per second (sales over the time from the
//! first input at any worker to the durable end of the last sale), and per worker its
//! thread's CPU time per sale (`thread_cpu_us_per_sale`; their sum over the sales,
//! `s_thread_cpu_us_per_sale`): the kernel's count of the thread's time on a CPU
//! (`/proc/thread-self/schedstat`), so time waiting for a core does not count, and
//! persistence (serialising rows, SQLite) does. `s_core_us_per_sale` is, as in the other
//! runs and in `sales.floor`, the wall time in the core only. Beside them the payees' thread
//! CPU time per sale (`payees_thread_cpu_us_per_sale`; all payees on one thread, sharing
//! the machine's cores with the workers).
//!
//! The projection: one core running one worker completes `s_sales_per_sec_per_core` =
//! 1e6 / `s_thread_cpu_us_per_sale` sales per second when its counterparties run elsewhere,
//! so N cores project to N times that (as long as the disk takes `s_commits_per_sale` ×
//! sales/s group commits); where the payees share the cores,
//! `sales_per_sec_per_core_with_payees` = 1e6 / (`s_thread_cpu_us_per_sale` +
//! `payees_thread_cpu_us_per_sale`) per core, and `cpu_bound_here_sales_per_sec` is that
//! times this machine's cores (what the run could reach with every core to itself). The
//! payees cost about what S costs per sale (they check S's offer, sign the invoice,
//! countersign and fulfil), so on two cores two workers cannot double the rate: the figure
//! to carry to more cores is S's CPU per sale, not the measured rate.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{
    commit_sample, policy, run_payees, run_s, seed, Frame, Id, Mode, PaymentBenchError, Stats,
    HEIGHT,
};
use crate::crypto::keys::PublicKey;
use crate::crypto::tally::Tally;
use crate::node::core::{NodeCore, NodeInput, Records};
use crate::node::store::Store;
use crate::protocol::channel::Snapshot;
use crate::protocol::messages::ChannelId;
use crate::protocol::payment::{LspPayment, PaymentId};

/// A thread's time on a CPU and waiting in the run queue for one, as the kernel counts them
/// (Linux: `/proc/thread-self/schedstat`, nanoseconds).
#[derive(Debug, Clone, Copy)]
pub(super) struct ThreadTimes {
    pub(super) on_cpu: Duration,
    pub(super) waiting: Duration,
}

impl ThreadTimes {
    /// The calling thread's times so far, if the kernel reports them.
    pub(super) fn now() -> Option<Self> {
        let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        let mut fields = text.split_whitespace().map(str::parse::<u64>);
        let on_cpu = fields.next()?.ok()?;
        let waiting = fields.next()?.ok()?;
        Some(ThreadTimes {
            on_cpu: Duration::from_nanos(on_cpu),
            waiting: Duration::from_nanos(waiting),
        })
    }

    /// The calling thread's times since `start`.
    pub(super) fn since(start: Option<Self>) -> Option<Self> {
        let (start, now) = (start?, Self::now()?);
        Some(ThreadTimes {
            on_cpu: now.on_cpu.saturating_sub(start.on_cpu),
            waiting: now.waiting.saturating_sub(start.waiting),
        })
    }
}

/// Where a payee's frame for S goes: to the worker that owns the payee's channel with S.
pub(super) struct Route {
    workers: Vec<Sender<Frame>>,
    shard_of: HashMap<PublicKey, usize>,
}

impl Route {
    /// Every payee's frames to the one S.
    pub(super) fn one(to_s: Sender<Frame>, payees: impl IntoIterator<Item = PublicKey>) -> Self {
        Route {
            workers: vec![to_s],
            shard_of: payees.into_iter().map(|k| (k, 0)).collect(),
        }
    }

    /// Sends `frame` (its sender's key, its bytes) to the worker that owns the sender's
    /// channel. A worker that has stopped has all its sales: the frame does not matter.
    pub(super) fn send(&self, frame: Frame) -> Result<(), PaymentBenchError> {
        let shard = *self
            .shard_of
            .get(&frame.0)
            .ok_or(PaymentBenchError::UnknownPayee)?;
        let _ = self.workers[shard].send(frame);
        Ok(())
    }
}

/// Which shard owns what, for W workers and P payees.
#[derive(Debug, Clone, Copy)]
struct Partition {
    workers: usize,
    payees: usize,
}

impl Partition {
    fn of_payee(&self, j: usize) -> usize {
        j % self.workers
    }

    /// Payer i's payment is sold by payee i mod P: its channel goes to that payee's shard.
    fn of_payer(&self, i: usize) -> usize {
        self.of_payee(i % self.payees)
    }

    fn of(&self, id: Id) -> Option<usize> {
        match id {
            Id::Payee(j) => Some(self.of_payee(j)),
            Id::Payer(i) => Some(self.of_payer(i)),
            Id::S => None,
        }
    }
}

/// What a sharded run needs from the sales' setup.
pub(super) struct ShardRun<'a> {
    /// The run's stores go here.
    pub(super) dir: &'a Path,
    /// Worker threads (shards).
    pub(super) workers: usize,
    /// The payers whose payments sell in this run.
    pub(super) range: Range<usize>,
    /// Most inputs a worker hands its core per group commit.
    pub(super) max_batch: usize,
    /// Every node's key, for the partition.
    pub(super) index: &'a HashMap<PublicKey, Id>,
    /// S's node key.
    pub(super) s_key: PublicKey,
    /// Letters per payee, with the index of the paying payer.
    pub(super) letters: &'a [Vec<(usize, Vec<u8>)>],
}

/// S's state: every channel (by id, with its peer) and payment record.
struct Rows {
    channels: HashMap<ChannelId, (PublicKey, Snapshot)>,
    payments: Vec<(PaymentId, LspPayment)>,
}

/// Reads S's rows from `stores` (S's store, or the shards' stores of the run before). A
/// channel in two stores was owned by two cores at once: its nonces are no longer safe.
fn read_rows(stores: &[Store]) -> Result<Rows, PaymentBenchError> {
    let mut rows = Rows {
        channels: HashMap::new(),
        payments: vec![],
    };
    let mut payments = HashSet::new();
    for store in stores {
        for (peer, snapshot) in store.channels()? {
            let id = snapshot.channel_id;
            if rows.channels.insert(id, (peer, snapshot)).is_some() {
                return Err(PaymentBenchError::ChannelInTwoShards(hex::encode(id.0)));
            }
        }
        for (id, record) in store.payments::<LspPayment>()? {
            if !payments.insert(id) {
                return Err(PaymentBenchError::PaymentInTwoShards(id.to_string()));
            }
            rows.payments.push((id, record));
        }
    }
    Ok(rows)
}

/// The file of worker `k`'s store in a run with `w` workers (in the sales' directory).
fn store_name(w: usize, k: usize) -> String {
    format!("s-w{w}-shard{k}.db")
}

/// One worker's shard: its store, its core, its payees and the sales it is to complete.
struct Shard {
    store: Store,
    core: NodeCore,
    payees: HashSet<PublicKey>,
    channels: usize,
    expected: usize,
}

/// Writes each shard's rows to a store of its own and restores each worker's core from it.
fn split(run: &ShardRun<'_>, part: Partition, rows: Rows) -> Result<Vec<Shard>, PaymentBenchError> {
    let w = part.workers;
    let shard_of = |key: &PublicKey| {
        run.index
            .get(key)
            .and_then(|id| part.of(*id))
            .ok_or(PaymentBenchError::Missing(
                "a row of S with an unknown peer",
            ))
    };
    let mut channels: Vec<Vec<(PublicKey, Snapshot)>> = (0..w).map(|_| vec![]).collect();
    for (_, (peer, snapshot)) in rows.channels {
        channels[shard_of(&peer)?].push((peer, snapshot));
    }
    let mut payments: Vec<Vec<(PaymentId, LspPayment)>> = (0..w).map(|_| vec![]).collect();
    for (id, record) in rows.payments {
        payments[shard_of(&record.payer)?].push((id, record));
    }
    let mut shards = vec![];
    for (k, (channels, payments)) in channels.into_iter().zip(payments).enumerate() {
        let store = Store::open(&run.dir.join(store_name(w, k)))?;
        store.batch(|s| {
            for (peer, snapshot) in &channels {
                s.put_channel(peer, snapshot)?;
            }
            for (id, record) in &payments {
                s.put_payment(id, record)?;
            }
            Ok::<(), PaymentBenchError>(())
        })?;
        // The worker starts from its own store, as S's process does after a restart.
        let mut core = NodeCore::restore(
            seed(0x51, 0),
            HEIGHT,
            store.channels()?,
            Records::Lsp(policy(), store.payments()?),
        )?;
        let _ = core.handle(NodeInput::Entropy(rand::random()))?;
        if core.public_key() != run.s_key {
            return Err(PaymentBenchError::Missing("a worker with S's node key"));
        }
        let payees = run
            .index
            .iter()
            .filter(|(_, id)| matches!(id, Id::Payee(j) if part.of_payee(*j) == k))
            .map(|(key, _)| *key)
            .collect();
        shards.push(Shard {
            store,
            core,
            payees,
            channels: channels.len(),
            expected: run.range.clone().filter(|i| part.of_payer(*i) == k).count(),
        });
    }
    Ok(shards)
}

/// What a run leaves for the next: S's shard stores, the payees and their store.
pub(super) struct ShardOutcome {
    pub(super) figures: Value,
    pub(super) stores: Vec<Store>,
    pub(super) payees: Vec<NodeCore>,
    pub(super) p_store: Store,
}

/// Runs the sales of `run.range` on `run.workers` workers, S's state read from `previous`.
pub(super) fn run(
    run: &ShardRun<'_>,
    previous: &[Store],
    payees: Vec<NodeCore>,
    p_store: Store,
    baseline: (&Store, &mut u32),
) -> Result<ShardOutcome, PaymentBenchError> {
    let part = Partition {
        workers: run.workers.max(1),
        payees: payees.len(),
    };
    if part.workers > part.payees {
        return Err(PaymentBenchError::Workers {
            workers: part.workers,
            payees: part.payees,
        });
    }
    let t_split = Instant::now();
    let shards = split(run, part, read_rows(previous)?)?;
    let split_secs = t_split.elapsed().as_secs_f64();
    let count = run.range.len();
    let run_letters = super::letters_in(run.letters, &run.range);
    let (baseline, baseline_n) = baseline;
    let mut commit_ms = commit_sample(baseline, baseline_n, 40)?;

    let (to_payees, p_rx) = std::sync::mpsc::channel::<Frame>();
    let mut route = Route {
        workers: vec![],
        shard_of: HashMap::new(),
    };
    let mut threads = vec![];
    let mut layout = vec![];
    for (k, shard) in shards.into_iter().enumerate() {
        let (to_s, s_rx) = std::sync::mpsc::channel::<Frame>();
        route.workers.push(to_s);
        route
            .shard_of
            .extend(shard.payees.iter().map(|key| (*key, k)));
        layout.push((shard.channels, shard.payees.len(), shard.expected));
        let tx = to_payees.clone();
        let mode = Mode::Batched {
            max_batch: run.max_batch.max(1),
        };
        threads.push(
            std::thread::Builder::new()
                .name(format!("bench-s-worker{k}"))
                .spawn(move || {
                    run_s(
                        shard.core,
                        shard.store,
                        mode,
                        shard.expected,
                        shard.payees,
                        s_rx,
                        tx,
                        false,
                    )
                })?,
        );
    }
    drop(to_payees);
    let s_key = run.s_key;
    let p_thread = std::thread::Builder::new()
        .name("bench-payees".into())
        .spawn(move || run_payees(payees, p_store, run_letters, s_key, p_rx, route))?;
    let mut results = vec![];
    for t in threads {
        results.push(
            t.join()
                .map_err(|_| PaymentBenchError::Panicked("S worker thread"))?,
        );
    }
    let p_result = p_thread
        .join()
        .map_err(|_| PaymentBenchError::Panicked("payee thread"))?;
    let mut workers = vec![];
    for r in results {
        workers.push(r?);
    }
    let (payees, p_store, p_stats) = p_result?;
    commit_ms.extend(commit_sample(baseline, baseline_n, 40)?);
    let refusals: Vec<String> = workers
        .iter()
        .flat_map(|(_, _, st)| st.refusals.iter().cloned())
        .collect();
    if !refusals.is_empty() || !p_stats.refusals.is_empty() {
        return Err(PaymentBenchError::SalesRefused {
            s: refusals,
            payees: p_stats.refusals,
        });
    }

    // Every payment of the run is durably sold in its shard's store, which also holds the
    // payer's channel at the completed state 1.
    let mut sold_in_store = vec![0usize; part.workers];
    for (k, (_, store, _)) in workers.iter().enumerate() {
        let records: HashMap<PaymentId, LspPayment> = store.payments()?.into_iter().collect();
        let channels: HashMap<ChannelId, Snapshot> = store
            .channels()?
            .into_iter()
            .map(|(_, s)| (s.channel_id, s))
            .collect();
        for i in run.range.clone().filter(|i| part.of_payer(*i) == k) {
            let record = records
                .get(&PaymentId(seed(0x71, i as u32)))
                .ok_or(PaymentBenchError::Missing("payment in its shard's store"))?;
            let status = serde_json::to_value(&record.status)?;
            if status["status"] != "sold" {
                return Err(PaymentBenchError::NotSold {
                    payment: i,
                    status: status["status"].clone(),
                });
            }
            let state = channels
                .get(&record.offer.channel_id)
                .and_then(|c| c.complete.as_ref())
                .map(|c| c.body.number);
            if state != Some(1) {
                return Err(PaymentBenchError::PayerState { payer: i, state });
            }
            sold_in_store[k] += 1;
        }
    }

    let figures = figures(
        part,
        count,
        &layout,
        &workers,
        &p_stats,
        &sold_in_store,
        &commit_ms,
        split_secs,
    )?;
    Ok(ShardOutcome {
        figures,
        stores: workers.into_iter().map(|(_, store, _)| store).collect(),
        payees,
        p_store,
    })
}

/// The figures of one run: sales per second, and per worker and for the payees the time
/// per sale.
#[allow(clippy::too_many_arguments)]
fn figures(
    part: Partition,
    count: usize,
    layout: &[(usize, usize, usize)],
    workers: &[(NodeCore, Store, Stats)],
    p: &Stats,
    sold_in_store: &[usize],
    commit_ms: &[f64],
    split_secs: f64,
) -> Result<Value, PaymentBenchError> {
    let first = workers
        .iter()
        .filter_map(|(_, _, s)| s.window.map(|w| w.0))
        .min();
    let last = workers
        .iter()
        .filter_map(|(_, _, s)| s.window.map(|w| w.1))
        .max();
    let (Some(first), Some(last)) = (first, last) else {
        return Err(PaymentBenchError::Missing("no sale measured"));
    };
    let secs = (last - first).as_secs_f64();
    let n = count as f64;
    let per = |d: Duration, sales: usize| d.as_secs_f64() * 1e6 / sales.max(1) as f64;
    // Without the kernel's count of a thread's CPU time (not Linux) the CPU figures are null.
    let mut s_cpu = Some(Duration::ZERO);
    let s_core: Duration = workers.iter().map(|(_, _, s)| s.compute).sum();
    let mut shards = vec![];
    for (k, ((_, _, st), &(channels, payees, expected))) in workers.iter().zip(layout).enumerate() {
        s_cpu = s_cpu.zip(st.cpu).map(|(sum, cpu)| sum + cpu.on_cpu);
        let window = st.window.map(|(a, b)| (b - a).as_secs_f64());
        shards.push(json!({
            "shard": k,
            "store": store_name(part.workers, k),
            "channels": channels,
            "payees": payees,
            "sales": expected,
            "sold": st.sold,
            "sold_in_store": sold_in_store[k],
            "seconds": window,
            "sales_per_sec": window.map(|w| st.sold as f64 / w),
            "thread_cpu_us_per_sale": st.cpu.map(|c| per(c.on_cpu, st.sold)),
            "run_queue_wait_secs": st.cpu.map(|c| c.waiting.as_secs_f64()),
            "busy_secs": st.busy.as_secs_f64(),
            "core_us_per_sale": per(st.compute, st.sold),
            "persist_us_per_sale": per(st.persist, st.sold),
            "inputs_per_sale": st.inputs as f64 / st.sold.max(1) as f64,
            "commits_per_sale": st.commits as f64 / st.sold.max(1) as f64,
            "inputs_per_commit": st.inputs as f64 / st.commits.max(1) as f64,
        }));
    }
    let s_cpu_us = s_cpu.map(|d| d.as_secs_f64() * 1e6 / n);
    let p_cpu_us = p.cpu.map(|c| c.on_cpu.as_secs_f64() * 1e6 / n);
    let both = s_cpu_us.zip(p_cpu_us).map(|(s, p)| s + p);
    let commits: u64 = workers.iter().map(|(_, _, s)| s.commits).sum();
    // The curve operations the workers' cores did, as the other runs count them.
    let mut ops = Tally::default();
    for (_, _, st) in workers {
        ops.add(&st.ops);
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).ok();
    Ok(json!({
        "workers": part.workers,
        "sales": count,
        "payees_in_flight": part.payees,
        "seconds": secs,
        "sales_per_sec": n / secs,
        "s_thread_cpu_us_per_sale": s_cpu_us,
        "s_core_us_per_sale": s_core.as_secs_f64() * 1e6 / n,
        "s_commits_per_sale": commits as f64 / n,
        "s_curve_ops_per_sale": super::ops_per_sale(&ops, n),
        "payees_thread_cpu_us_per_sale": p_cpu_us,
        "payees_core_us_per_sale": per(p.compute, count),
        "payees_persist_us_per_sale": per(p.persist, count),
        "payees_run_queue_wait_secs": p.cpu.map(|c| c.waiting.as_secs_f64()),
        "projection": {
            "s_sales_per_sec_per_core": s_cpu_us.map(|s| 1e6 / s),
            "sales_per_sec_per_core_with_payees": both.map(|b| 1e6 / b),
            "cores": cores,
            "cpu_bound_here_sales_per_sec": cores.zip(both).map(|(c, b)| c as f64 * 1e6 / b),
        },
        "sqlite_commit_around_run_ms": super::summary(commit_ms).json(),
        "split_secs": split_secs,
        "shards": shards,
    }))
}

/// The `sales.workers` object: every run, and what the runs say together.
pub(super) fn report(runs: Vec<Value>, sales_per_run: usize) -> Value {
    let rate = |w: u64| {
        runs.iter()
            .find(|r| r["workers"] == w)
            .and_then(|r| r["sales_per_sec"].as_f64())
    };
    json!({
        "cross_shard_sales": "not built",
        "partition": "payee j's S-B channel on shard j mod W; payer i's channel on the shard \
            of payee i mod P, the payee that sells its payment: a sale touches one shard",
        "stores": "one SQLite store per shard",
        "sales_per_run": sales_per_run,
        "speedup_2_over_1": rate(1).zip(rate(2)).map(|(one, two)| two / one),
        "runs": runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payer_and_the_payee_that_sells_its_payment_share_a_shard() {
        for workers in 1..=4 {
            for payees in workers..=9 {
                let part = Partition { workers, payees };
                for i in 0..100 {
                    assert_eq!(part.of_payer(i), part.of_payee(i % payees));
                    assert!(part.of_payer(i) < workers);
                }
                // Every shard has a payee, so every shard sells.
                let used: HashSet<usize> = (0..payees).map(|j| part.of_payee(j)).collect();
                assert_eq!(used.len(), workers);
            }
        }
    }

    #[test]
    fn a_busy_thread_counts_cpu_time() {
        let start = ThreadTimes::now();
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        if let Some(times) = ThreadTimes::since(start) {
            assert!(times.on_cpu > Duration::ZERO, "{times:?}");
            assert!(times.on_cpu <= t.elapsed() + Duration::from_millis(5));
        } else {
            // Only where the kernel does not report it: the bench then says so.
            assert!(std::fs::metadata("/proc/thread-self/schedstat").is_err());
        }
    }
}
