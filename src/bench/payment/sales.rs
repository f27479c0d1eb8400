//! What S stores per pending payment, and how many sales per second S completes with durable
//! storage.
//!
//! Setup (not timed) runs on one thread: K payers each open a channel to S and leave one
//! payment pending (offered, letter captured instead of posted); P payees each have one
//! channel from S. S's rows go to its SQLite store, the payees' to one shared store; the
//! payers keep their state in memory (they are offline during the sales and nothing of theirs
//! is measured).
//!
//! A sale, as measured: S receives B's invoice for an offered payment, persists it as
//! selling, adds the PTLC on S–B (S proposes, B countersigns, S completes), B fulfils it
//! (B proposes, S countersigns, B completes), S persists the sale and completes A's withheld
//! state U_{n+1} with the scalar. That is four inputs at S and seven rows persisted by S.
//! S runs on one thread with its own store; all payees run on a second thread; frames
//! between them go through in-memory queues (the transport is measured in the online part).
//! Each payee sells one payment at a time (a new invoice once it is paid), so at most P sales
//! are in flight.
//!
//! Then S is sharded ([`shards`]): for each number of workers W asked for (1 and 2 by
//! default), S's channels and records are split over W worker threads, each a core with S's
//! node key and a store of its own, and W runs its own payments' sales with group commit.
//! The payments of each run are set up with the others (K counts them all).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::floor::FloorSampler;
use super::{
    chain, fake_outpoint, policy, seed, summary, PaymentBenchError, AMOUNT_SAT, HEIGHT,
    PAYER_DELAY, SHARED_DELAY,
};
use crate::crypto::keys::PublicKey;
use crate::crypto::tally::{self, Tally};
use crate::node::core::{
    ChangeSet, Handled, NodeCommand, NodeCore, NodeInput, NodeOutput, PaymentRecord, Records,
};
use crate::node::driver::{self, ready, Io};
use crate::node::store::{Store, StoreError};
use crate::protocol::channel::Phase;
use crate::protocol::messages::ChannelId;
use crate::protocol::payment::PaymentId;
use crate::protocol::payment::{LspStatus, PayeeStatus};
use crate::protocol::wire::{peek_type, types, Layer};

mod shards;

use shards::{Route, ShardRun, ThreadTimes};

/// Options of the sales part.
pub struct SalesOptions {
    pub payees: usize,
    pub unbatched_sales: usize,
    pub sales: usize,
    pub max_batch: usize,
    /// The numbers of workers S is sharded over, one run each (see [`shards`]).
    pub workers: Vec<usize>,
    /// Sales of each of those runs.
    pub worker_sales: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Id {
    S,
    Payer(usize),
    Payee(usize),
}

/// The single-threaded network used to set up channels and pending payments.
struct Setup {
    s: NodeCore,
    payers: Vec<NodeCore>,
    payees: Vec<NodeCore>,
    index: HashMap<PublicKey, Id>,
    queue: VecDeque<(Id, Id, Vec<u8>)>,
    /// Letters per payee, with the index of the paying payer.
    letters: Vec<Vec<(usize, Vec<u8>)>>,
}

impl Setup {
    fn core(&mut self, id: Id) -> &mut NodeCore {
        match id {
            Id::S => &mut self.s,
            Id::Payer(i) => &mut self.payers[i],
            Id::Payee(j) => &mut self.payees[j],
        }
    }

    fn key(&self, id: Id) -> PublicKey {
        match id {
            Id::S => self.s.public_key(),
            Id::Payer(i) => self.payers[i].public_key(),
            Id::Payee(j) => self.payees[j].public_key(),
        }
    }

    /// Hands `input` to node `id` on the one driver, over [`SetupIo`].
    fn handle(
        &mut self,
        id: Id,
        input: NodeInput,
        stores: (&Store, &Store),
    ) -> Result<(), PaymentBenchError> {
        let core = match id {
            Id::S => &mut self.s,
            Id::Payer(i) => &mut self.payers[i],
            Id::Payee(j) => &mut self.payees[j],
        };
        let mut io = SetupIo {
            id,
            stores,
            index: &self.index,
            queue: &mut self.queue,
            letters: &mut self.letters,
            refused: None,
        };
        ready(driver::handle(core, &mut io, input))?;
        if let Some(error) = io.refused {
            return Err(PaymentBenchError::SetupRefused {
                node: format!("{id:?}"),
                error,
            });
        }
        Ok(())
    }

    fn pump(&mut self, stores: (&Store, &Store)) -> Result<(), PaymentBenchError> {
        while let Some((from, to, frame)) = self.queue.pop_front() {
            let from = self.key(from);
            self.handle(to, NodeInput::Frame { from, frame }, stores)?;
        }
        Ok(())
    }

    /// Opens and funds a channel from `opener` to `acceptor`.
    fn open(
        &mut self,
        opener: Id,
        acceptor: Id,
        channel_id: ChannelId,
        capacity_sat: u64,
        stores: (&Store, &Store),
    ) -> Result<(), PaymentBenchError> {
        let peer = self.key(acceptor);
        self.handle(
            opener,
            NodeInput::Command(NodeCommand::OpenChannel {
                peer,
                channel_id,
                capacity_sat,
                shared_delay: match opener {
                    Id::Payer(_) => PAYER_DELAY,
                    _ => SHARED_DELAY,
                },
            }),
            stores,
        )?;
        self.pump(stores)?;
        let txid = fake_outpoint(&channel_id).txid;
        for id in [opener, acceptor] {
            self.handle(
                id,
                NodeInput::Confirmed {
                    txid,
                    height: HEIGHT,
                },
                stores,
            )?;
        }
        self.pump(stores)?;
        for id in [opener, acceptor] {
            let phase = self
                .core(id)
                .channels()
                .get(&channel_id)
                .map(|e| e.channel.phase());
            if phase != Some(Phase::Funded) {
                return Err(PaymentBenchError::SetupChannel {
                    node: format!("{id:?}"),
                    phase,
                });
            }
        }
        Ok(())
    }
}

/// Sizes of S's store.
#[derive(Debug, Clone, Copy)]
struct DbBytes {
    file: i64,
    channel_rows: i64,
    payment_rows: i64,
    channels: i64,
    payments: i64,
}

/// Reads S's store from a second connection: the main file after a checkpoint folds the
/// write-ahead log into it, and the bytes of the stored rows.
fn db_bytes(path: &Path) -> Result<DbBytes, PaymentBenchError> {
    let db = rusqlite::Connection::open(path)?;
    db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let page_size: i64 = db.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let page_count: i64 = db.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let (snapshot_rows, channels): (i64, i64) = db.query_row(
        "SELECT COALESCE(SUM(length(CAST(id AS BLOB)) + length(CAST(peer AS BLOB))
                + length(CAST(snapshot AS BLOB))), 0), COUNT(*) FROM channels",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    // The channels' settlement leaf hashes, stored beside their snapshots: a channel's
    // rows are its snapshot and these.
    let leaf_rows: i64 = db.query_row(
        "SELECT COALESCE(SUM(length(channel) + 8 + length(hash)), 0) FROM leaf_hashes",
        [],
        |r| r.get(0),
    )?;
    let channel_rows = snapshot_rows + leaf_rows;
    let (payment_rows, payments): (i64, i64) = db.query_row(
        "SELECT COALESCE(SUM(length(CAST(id AS BLOB)) + length(CAST(record AS BLOB))), 0),
                COUNT(*) FROM payments",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(DbBytes {
        file: page_size * page_count,
        channel_rows,
        payment_rows,
        channels,
        payments,
    })
}

/// How S persists during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One input at a time: its change set in one transaction, then its frames (as
    /// `asyncpay node` does).
    Unbatched,
    /// Group commit: S takes every input queued (up to `max_batch`), hands them to its core
    /// in order, writes all their change sets in one transaction, and only then sends their
    /// frames.
    Batched { max_batch: usize },
}

#[derive(Debug, Default)]
struct Stats {
    inputs: u64,
    commits: u64,
    persists: u64,
    compute: Duration,
    persist: Duration,
    busy: Duration,
    sold: usize,
    paid: usize,
    frames_out: u64,
    dropped: u64,
    refusals: Vec<String>,
    window: Option<(Instant, Instant)>,
    /// Core time by kind of input frame: (inputs, time).
    by_kind: BTreeMap<&'static str, (u64, Duration)>,
    /// The curve operations counted in the core (S's thread only).
    ops: Tally,
    /// The thread's time on a CPU and waiting in the run queue for one, from its first
    /// input (S) or its start (the payees) to its end, if the kernel reports them (the
    /// floor's samples left out).
    cpu: Option<ThreadTimes>,
    /// S's floor, sampled between batches (see [`FloorSampler`]), when the run takes it.
    floor: Option<FloorSampler>,
    /// The wall-clock time the floor's samples took.
    floor_time: Duration,
    /// The thread's CPU time they took (what S's CPU figures leave out).
    floor_cpu: Duration,
}

/// One sample of S's floor: its wall-clock time and the thread's CPU time it took.
fn take_floor_sample(floor: &mut FloorSampler) -> (Duration, Duration) {
    let (t, cpu) = (Instant::now(), ThreadTimes::now());
    floor.sample();
    let wall = t.elapsed();
    let cpu = cpu.zip(ThreadTimes::now()).map_or(wall, |(before, after)| {
        after.on_cpu.saturating_sub(before.on_cpu)
    });
    (wall, cpu)
}

/// S takes a sample of its floor after every this many sales.
const FLOOR_SAMPLE_EVERY: usize = 16;

/// What kind of frame an input is, by its message type: the payment layer's (the invoice,
/// from a payee) or a channel message.
fn frame_kind(frame: &[u8]) -> &'static str {
    match peek_type(frame) {
        Some(t) if Layer::of(t) == Some(Layer::Payment) => "invoice",
        Some(types::PROPOSE) => "propose",
        Some(types::COUNTERSIGN) => "countersign",
        Some(types::COMPLETE) => "complete",
        _ => "other",
    }
}

impl Stats {
    fn core_time(&mut self, kind: &'static str, took: Duration) {
        self.compute += took;
        let entry = self.by_kind.entry(kind).or_default();
        entry.0 += 1;
        entry.1 += took;
    }
}

type Frame = (PublicKey, Vec<u8>);

/// The setup network's world of one node: rows to S's or the payees' store (inside the
/// caller's open transaction), frames to the in-memory queue, letters kept per payee.
struct SetupIo<'a> {
    id: Id,
    stores: (&'a Store, &'a Store),
    index: &'a HashMap<PublicKey, Id>,
    queue: &'a mut VecDeque<(Id, Id, Vec<u8>)>,
    letters: &'a mut Vec<Vec<(usize, Vec<u8>)>>,
    refused: Option<String>,
}

impl Io for SetupIo<'_> {
    type Error = PaymentBenchError;

    fn persist(&mut self, changes: &ChangeSet, _core: &NodeCore) -> Result<(), PaymentBenchError> {
        let store = match self.id {
            Id::S => self.stores.0,
            Id::Payee(_) => self.stores.1,
            // The payers are offline during the sales: their state stays in memory.
            Id::Payer(_) => return Ok(()),
        };
        Ok(write_rows(store, changes)?)
    }

    fn send(&mut self, to: PublicKey, frame: Vec<u8>, _what: &'static str) -> bool {
        match self.index.get(&to) {
            Some(to) => {
                self.queue.push_back((self.id, *to, frame));
                true
            }
            None => false,
        }
    }

    async fn post_letter(
        &mut self,
        _payment_id: PaymentId,
        payee: PublicKey,
        bytes: Vec<u8>,
    ) -> Result<(), PaymentBenchError> {
        let (Some(Id::Payee(j)), Id::Payer(i)) = (self.index.get(&payee).copied(), self.id) else {
            return Err(PaymentBenchError::LetterNotToPayee(format!(
                "{:?}",
                self.id
            )));
        };
        self.letters[j].push((i, bytes));
        Ok(())
    }

    async fn post_reverse(
        &mut self,
        _to: PublicKey,
        _bytes: Vec<u8>,
        _contact: Option<Value>,
    ) -> Result<(), PaymentBenchError> {
        Err(PaymentBenchError::Reverse)
    }

    async fn broadcast(&mut self, _tx: bitcoin::Transaction) {}

    fn watch(&mut self, _outpoint: bitcoin::OutPoint) {}

    async fn build_funding(
        &mut self,
        channel_id: ChannelId,
        _script_pubkey: bitcoin::ScriptBuf,
        _capacity_sat: u64,
    ) -> Result<bitcoin::OutPoint, PaymentBenchError> {
        Ok(fake_outpoint(&channel_id))
    }

    async fn publish_funding(&mut self, _channel_id: ChannelId) -> Result<(), PaymentBenchError> {
        Ok(())
    }

    fn report(&mut self, event: NodeOutput) {
        if let NodeOutput::Refused { error, .. } = event {
            self.refused.get_or_insert(error);
        }
    }
}

/// Writes a change set's rows to `store` one by one (inside the caller's transaction).
fn write_rows(store: &Store, changes: &ChangeSet) -> Result<(), StoreError> {
    for (peer, snapshot) in changes.channels.values() {
        store.put_channel(peer, snapshot)?;
    }
    for (id, record) in &changes.payments {
        store.put_payment(id, record)?;
    }
    Ok(())
}

/// The sales' world of S or of a payee: rows to the store (S: its own transaction per change
/// set; the payees: inside the round's open transaction), frames collected for the caller to
/// send once the rows are durable (or dropped when the recipient is offline), sales and
/// payments counted.
struct SalesIo<'a> {
    store: &'a Store,
    /// S: each change set in its own transaction. The payees: rows written inside the
    /// round's open transaction, which the caller commits before it sends.
    own_transaction: bool,
    online: &'a dyn Fn(&PublicKey) -> bool,
    stats: &'a mut Stats,
    out: Vec<Frame>,
}

impl Io for SalesIo<'_> {
    type Error = PaymentBenchError;

    fn persist(&mut self, changes: &ChangeSet, _core: &NodeCore) -> Result<(), PaymentBenchError> {
        let t = Instant::now();
        if self.own_transaction {
            self.store.commit(changes)?;
            self.stats.commits += 1;
        } else {
            write_rows(self.store, changes)?;
        }
        self.stats.persist += t.elapsed();
        self.stats.persists += changes.len() as u64;
        for record in changes.payments.values() {
            match record {
                PaymentRecord::Lsp(r) if matches!(r.status, LspStatus::Sold { .. }) => {
                    self.stats.sold += 1
                }
                PaymentRecord::Payee(r) if matches!(r.status, PayeeStatus::Paid) => {
                    self.stats.paid += 1
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn send(&mut self, to: PublicKey, frame: Vec<u8>, _what: &'static str) -> bool {
        if (self.online)(&to) {
            self.stats.frames_out += 1;
            self.out.push((to, frame));
            true
        } else {
            self.stats.dropped += 1;
            false
        }
    }

    async fn post_letter(
        &mut self,
        _payment_id: PaymentId,
        _payee: PublicKey,
        _bytes: Vec<u8>,
    ) -> Result<(), PaymentBenchError> {
        Err(PaymentBenchError::UnexpectedLetter)
    }

    async fn post_reverse(
        &mut self,
        _to: PublicKey,
        _bytes: Vec<u8>,
        _contact: Option<Value>,
    ) -> Result<(), PaymentBenchError> {
        Err(PaymentBenchError::Reverse)
    }

    async fn broadcast(&mut self, _tx: bitcoin::Transaction) {}

    fn watch(&mut self, _outpoint: bitcoin::OutPoint) {}

    async fn build_funding(
        &mut self,
        _channel_id: ChannelId,
        _script_pubkey: bitcoin::ScriptBuf,
        _capacity_sat: u64,
    ) -> Result<bitcoin::OutPoint, PaymentBenchError> {
        Err(PaymentBenchError::UnexpectedFunding)
    }

    async fn publish_funding(&mut self, _channel_id: ChannelId) -> Result<(), PaymentBenchError> {
        Ok(())
    }

    fn report(&mut self, event: NodeOutput) {
        if let NodeOutput::Refused { error, .. } = event {
            self.stats.refusals.push(error);
        }
    }
}

/// S's thread: handles frames from the payees until `expected` sales are durable.
#[allow(clippy::too_many_arguments)]
fn run_s(
    mut core: NodeCore,
    store: Store,
    mode: Mode,
    expected: usize,
    payees: HashSet<PublicKey>,
    rx: Receiver<Frame>,
    tx: Sender<Frame>,
    sample_floor: bool,
) -> Result<(NodeCore, Store, Stats), PaymentBenchError> {
    let mut stats = Stats {
        floor: sample_floor.then(FloorSampler::default),
        ..Stats::default()
    };
    let mut next_sample = FLOOR_SAMPLE_EVERY;
    let online = |k: &PublicKey| payees.contains(k);
    let mut first = None;
    let mut cpu_at_first = None;
    while stats.sold < expected {
        let input = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(input) => input,
            Err(RecvTimeoutError::Timeout) => {
                return Err(PaymentBenchError::SWaited {
                    sold: stats.sold,
                    expected,
                    refusals: stats.refusals,
                })
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(PaymentBenchError::PayeesStopped {
                    sold: stats.sold,
                    expected,
                    refusals: stats.refusals,
                })
            }
        };
        let busy = Instant::now();
        if first.is_none() {
            first = Some(busy);
            cpu_at_first = ThreadTimes::now();
        }
        let inputs = match mode {
            Mode::Unbatched => vec![input],
            Mode::Batched { max_batch } => {
                let mut inputs = vec![input];
                while inputs.len() < max_batch {
                    match rx.try_recv() {
                        Ok(more) => inputs.push(more),
                        Err(_) => break,
                    }
                }
                inputs
            }
        };
        // Group commit with the driver's pieces: each input through the core (timed by
        // kind), then all their changes in one transaction, then all their frames.
        stats.inputs += inputs.len() as u64;
        let mut all = Handled::default();
        for (from, frame) in inputs {
            let kind = frame_kind(&frame);
            let ops = tally::snapshot();
            let t = Instant::now();
            let handled = core.handle(NodeInput::Frame { from, frame });
            stats.core_time(kind, t.elapsed());
            stats.ops.add(&tally::snapshot().since(&ops));
            match handled {
                Ok(handled) => {
                    all.changes.merge(handled.changes);
                    all.actions.extend(handled.actions);
                }
                Err(e) => stats.refusals.push(e.to_string()),
            }
        }
        let mut io = SalesIo {
            store: &store,
            own_transaction: true,
            online: &online,
            stats: &mut stats,
            out: vec![],
        };
        ready(driver::carry_out(&mut core, &mut io, all))?;
        for f in io.out {
            let _ = tx.send(f);
        }
        stats.busy += busy.elapsed();
        if let Some(floor) = stats.floor.as_mut() {
            // One sample per FLOOR_SAMPLE_EVERY sales, however many a batch completes.
            while stats.sold >= next_sample {
                next_sample += FLOOR_SAMPLE_EVERY;
                let (wall, cpu) = take_floor_sample(floor);
                stats.floor_time += wall;
                stats.floor_cpu += cpu;
            }
        }
    }
    if let Some(first) = first {
        stats.window = Some((first, Instant::now()));
    }
    // A run shorter than the sampling interval still samples once.
    if let Some(floor) = stats.floor.as_mut().filter(|f| f.samples() == 0) {
        let (wall, cpu) = take_floor_sample(floor);
        stats.floor_time += wall;
        stats.floor_cpu += cpu;
    }
    stats.cpu = ThreadTimes::since(cpu_at_first).map(|cpu| ThreadTimes {
        on_cpu: cpu.on_cpu.saturating_sub(stats.floor_cpu),
        waiting: cpu.waiting,
    });
    Ok((core, store, stats))
}

/// The payees' thread: each payee invoices its next letter once the previous sale paid it.
/// The payees' rows go to one shared store with group commit, so that they cost S's disk as
/// little as possible.
fn run_payees(
    mut payees: Vec<NodeCore>,
    store: Store,
    mut letters: Vec<VecDeque<Vec<u8>>>,
    s_key: PublicKey,
    rx: Receiver<Frame>,
    to_s: Route,
) -> Result<(Vec<NodeCore>, Store, Stats), PaymentBenchError> {
    let cpu_at_start = ThreadTimes::now();
    let expected: usize = letters.iter().map(VecDeque::len).sum();
    let index: HashMap<PublicKey, usize> = payees
        .iter()
        .enumerate()
        .map(|(j, c)| (c.public_key(), j))
        .collect();
    let mut stats = Stats::default();
    let online = |k: &PublicKey| *k == s_key;
    let mut next: Vec<usize> = (0..payees.len()).collect();
    loop {
        let mut out = vec![];
        let mut inputs = vec![];
        if next.is_empty() {
            if stats.paid >= expected {
                break;
            }
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(frame) => inputs.push(frame),
                Err(_) => {
                    return Err(PaymentBenchError::PayeesWaited {
                        paid: stats.paid,
                        expected,
                        refusals: stats.refusals,
                    })
                }
            }
            while let Ok(frame) = rx.try_recv() {
                inputs.push(frame);
            }
        }
        let busy = Instant::now();
        // All payees' rows of this round in one transaction (written by the driver through
        // `SalesIo` inside it); their frames leave once it commits.
        store.batch(|_| {
            for (to, frame) in inputs {
                let j = *index.get(&to).ok_or(PaymentBenchError::UnknownPayee)?;
                stats.inputs += 1;
                let paid = stats.paid;
                let from = payees[j].public_key();
                let mut io = SalesIo {
                    store: &store,
                    own_transaction: false,
                    online: &online,
                    stats: &mut stats,
                    out: vec![],
                };
                let t = Instant::now();
                let result = ready(driver::handle(
                    &mut payees[j],
                    &mut io,
                    NodeInput::Frame { from: s_key, frame },
                ));
                let frames = io.out;
                stats.compute += t.elapsed();
                // Frames to S carry their sender.
                out.extend(frames.into_iter().map(|(_, f)| (from, f)));
                if let Err(e) = result {
                    stats.refusals.push(chain(&e));
                }
                if stats.paid > paid {
                    next.push(j);
                }
            }
            for j in next.drain(..) {
                if let Some(bytes) = letters[j].pop_front() {
                    stats.inputs += 1;
                    let from = payees[j].public_key();
                    let mut io = SalesIo {
                        store: &store,
                        own_transaction: false,
                        online: &online,
                        stats: &mut stats,
                        out: vec![],
                    };
                    let t = Instant::now();
                    ready(driver::handle(
                        &mut payees[j],
                        &mut io,
                        NodeInput::Letter { bytes },
                    ))?;
                    let frames = io.out;
                    stats.compute += t.elapsed();
                    out.extend(frames.into_iter().map(|(_, f)| (from, f)));
                }
            }
            Ok::<(), PaymentBenchError>(())
        })?;
        stats.commits += 1;
        for f in out {
            to_s.send(f)?;
        }
        stats.busy += busy.elapsed();
        if stats.paid >= expected {
            break;
        }
    }
    stats.cpu = ThreadTimes::since(cpu_at_start);
    Ok((payees, store, stats))
}

/// Runs the setup, the bytes measurement and both sale runs in `dir`.
pub fn run(dir: &Path, args: &SalesOptions) -> Result<Value, PaymentBenchError> {
    std::fs::create_dir_all(dir)?;
    let p = args.payees.max(1);
    let (u, b) = (args.unbatched_sales, args.sales);
    // The sharded runs sell payments of their own, after the unbatched and batched runs.
    let w_runs: Vec<usize> = if args.worker_sales > 0 {
        args.workers.clone()
    } else {
        vec![]
    };
    let k = u + b + w_runs.len() * args.worker_sales;
    if k == 0 {
        return Err(PaymentBenchError::NoSales);
    }
    let s_path = dir.join("s.db");
    let s_store = Store::open(&s_path)?;
    let p_store = Store::open(&dir.join("payees.db"))?;
    let entropy = |mut core: NodeCore| -> Result<NodeCore, PaymentBenchError> {
        let _ = core.handle(NodeInput::Entropy(rand::random()))?;
        Ok(core)
    };
    let payers = (0..k as u32)
        .map(|i| {
            entropy(NodeCore::restore(
                seed(0xa1, i),
                HEIGHT,
                vec![],
                Records::Payer(vec![]),
            )?)
        })
        .collect::<Result<Vec<_>, PaymentBenchError>>()?;
    let payees = (0..p as u32)
        .map(|j| {
            entropy(NodeCore::restore(
                seed(0xb1, j),
                HEIGHT,
                vec![],
                Records::Payee(vec![]),
            )?)
        })
        .collect::<Result<Vec<_>, PaymentBenchError>>()?;
    let mut setup = Setup {
        s: entropy(NodeCore::restore(
            seed(0x51, 0),
            HEIGHT,
            vec![],
            Records::Lsp(policy(), vec![]),
        )?)?,
        index: HashMap::new(),
        queue: VecDeque::new(),
        letters: vec![vec![]; p],
        payers,
        payees,
    };
    setup.index.insert(setup.s.public_key(), Id::S);
    for (i, c) in setup.payers.iter().enumerate() {
        setup.index.insert(c.public_key(), Id::Payer(i));
    }
    for (j, c) in setup.payees.iter().enumerate() {
        setup.index.insert(c.public_key(), Id::Payee(j));
    }

    let t_setup = Instant::now();
    const CHUNK: usize = 128;
    s_store.batch(|s| {
        p_store.batch(|pb| {
            for j in 0..p {
                setup.open(
                    Id::S,
                    Id::Payee(j),
                    ChannelId(seed(0xc4, j as u32)),
                    1_000_000_000,
                    (s, pb),
                )?;
            }
            Ok::<(), PaymentBenchError>(())
        })
    })?;
    for chunk in (0..k).collect::<Vec<_>>().chunks(CHUNK) {
        s_store.batch(|s| {
            p_store.batch(|pb| {
                for &i in chunk {
                    setup.open(
                        Id::Payer(i),
                        Id::S,
                        ChannelId(seed(0xc3, i as u32)),
                        1_000_000,
                        (s, pb),
                    )?;
                }
                Ok::<(), PaymentBenchError>(())
            })
        })?;
    }
    let before = db_bytes(&s_path)?;
    let s_key = setup.s.public_key();
    for chunk in (0..k).collect::<Vec<_>>().chunks(CHUNK) {
        s_store.batch(|s| {
            p_store.batch(|pb| {
                for &i in chunk {
                    let payee = setup.payees[i % p].public_key();
                    let receipts = setup.payees[i % p].receipt_slots((i / p) as u32, 1);
                    setup.handle(
                        Id::Payer(i),
                        NodeInput::Command(NodeCommand::Pay {
                            payment_id: PaymentId(seed(0x71, i as u32)),
                            lsp: s_key,
                            payee,
                            amount_sat: AMOUNT_SAT,
                            fee_sat: policy().fee_for(AMOUNT_SAT),
                            note: "bench".into(),
                            receipts,
                            hold_blocks: None,
                            irrevocable: false,
                        }),
                        (s, pb),
                    )?;
                    setup.pump((s, pb))?;
                }
                Ok::<(), PaymentBenchError>(())
            })
        })?;
    }
    let after = db_bytes(&s_path)?;
    let setup_secs = t_setup.elapsed().as_secs_f64();
    let offered = setup
        .s
        .payments_json()
        .iter()
        .filter(|(_, r)| r["status"]["status"] == "offered")
        .count();
    if offered != k || after.payments - before.payments != k as i64 {
        return Err(PaymentBenchError::Offers {
            offered,
            rows: after.payments - before.payments,
            payments: k,
        });
    }
    let per = |x: i64, y: i64| (x - y) as f64 / k as f64;
    let pending = json!({
        "pending_payments": k,
        "channels_at_s": after.channels,
        "row_bytes_per_pending": per(after.channel_rows + after.payment_rows, before.channel_rows + before.payment_rows),
        "payment_record_bytes_per_pending": per(after.payment_rows, before.payment_rows),
        "channel_snapshot_growth_per_pending": per(after.channel_rows, before.channel_rows),
        "file_bytes_per_pending": per(after.file, before.file),
        "file_bytes_before": before.file,
        "file_bytes_after": after.file,
        "snapshot_bytes_mean_before": before.channel_rows as f64 / before.channels.max(1) as f64,
        "snapshot_bytes_mean_after": after.channel_rows as f64 / after.channels.max(1) as f64,
    });

    // Letters per run: the first u payments sell unbatched, the rest with group commit.
    let baseline = Store::open(&dir.join("baseline.db"))?;
    let mut baseline_n = 0u32;
    let mut runs = vec![];
    // Per run: its name, S's core µs per sale, S's curve operations, sales.
    let mut floor_runs = vec![];
    let mut floor_sampler = FloorSampler::default();
    let Setup {
        s,
        payees,
        letters,
        index,
        ..
    } = setup;
    let (mut s, mut payees, mut s_store, mut p_store) = (s, payees, s_store, p_store);
    for (mode, range) in [
        (Mode::Unbatched, 0..u),
        (
            Mode::Batched {
                max_batch: args.max_batch.max(1),
            },
            u..u + b,
        ),
    ] {
        let count = range.len();
        if count == 0 {
            runs.push(Value::Null);
            continue;
        }
        let run_letters = letters_in(&letters, &range);
        let payee_keys: HashSet<PublicKey> = payees.iter().map(NodeCore::public_key).collect();
        let mut commit_ms = commit_sample(&baseline, &mut baseline_n, 40)?;
        let (to_s, s_rx) = std::sync::mpsc::channel::<Frame>();
        let (to_payees, p_rx) = std::sync::mpsc::channel::<Frame>();
        let route = Route::one(to_s, payee_keys.iter().copied());
        let s_thread = std::thread::Builder::new()
            .name("bench-s".into())
            .spawn(move || {
                let sample_floor = matches!(mode, Mode::Batched { .. });
                run_s(
                    s,
                    s_store,
                    mode,
                    count,
                    payee_keys,
                    s_rx,
                    to_payees,
                    sample_floor,
                )
            })?;
        let p_thread = std::thread::Builder::new()
            .name("bench-payees".into())
            .spawn(move || run_payees(payees, p_store, run_letters, s_key, p_rx, route))?;
        let s_result = s_thread
            .join()
            .map_err(|_| PaymentBenchError::Panicked("S thread"))?;
        let p_result = p_thread
            .join()
            .map_err(|_| PaymentBenchError::Panicked("payee thread"))?;
        let (s_core, s_st, mut s_stats) = s_result?;
        if let Some(sampled) = s_stats.floor.take() {
            floor_sampler = sampled;
        }
        let (p_cores, p_st, p_stats) = p_result?;
        (s, s_store, payees, p_store) = (s_core, s_st, p_cores, p_st);
        commit_ms.extend(commit_sample(&baseline, &mut baseline_n, 40)?);
        if !s_stats.refusals.is_empty() || !p_stats.refusals.is_empty() {
            return Err(PaymentBenchError::SalesRefused {
                s: s_stats.refusals,
                payees: p_stats.refusals,
            });
        }
        // Every payment of the run is sold at S, and S holds A's completed state 1.
        let lsp = s.lsp().ok_or(PaymentBenchError::Missing("S is an LSP"))?;
        for i in range.clone() {
            let id = PaymentId(seed(0x71, i as u32));
            let record = lsp
                .payment(&id)
                .ok_or(PaymentBenchError::Missing("payment at S"))?;
            let status = serde_json::to_value(&record.status)?;
            if status["status"] != "sold" {
                return Err(PaymentBenchError::NotSold {
                    payment: i,
                    status: status["status"].clone(),
                });
            }
            let channel = s
                .channels()
                .get(&record.offer.channel_id)
                .ok_or(PaymentBenchError::Missing("payer channel at S"))?;
            let state = channel
                .channel
                .snapshot()
                .complete
                .as_ref()
                .map(|c| c.body.number);
            if state != Some(1) {
                return Err(PaymentBenchError::PayerState { payer: i, state });
            }
        }
        let mut figures = sale_figures(mode, count, p, &s_stats, &p_stats, &commit_ms)?;
        // The floor's samples (on S's thread, between batches): left out of S's CPU
        // figures, inside the run's wall-clock window.
        figures["s_floor_sampling_ms"] = json!(s_stats.floor_time.as_secs_f64() * 1e3);
        floor_runs.push((
            match mode {
                Mode::Unbatched => "unbatched",
                Mode::Batched { .. } => "batched",
            },
            figures["s_core_us_per_sale"].as_f64().unwrap_or(f64::NAN),
            s_stats.ops,
            count as u64,
        ));
        runs.push(figures);
    }
    // Sampled on S's thread during the batched run (and timed alone right after, beside).
    let floor = super::floor::report(&floor_runs, &floor_sampler);

    // S sharded: the single S stops, and each run's workers take over S's channels from the
    // stores of the run before (see `shards`).
    drop(s);
    let mut previous = vec![s_store];
    let mut worker_runs = vec![];
    let mut start = u + b;
    for &workers in &w_runs {
        let range = start..start + args.worker_sales;
        start = range.end;
        let outcome = shards::run(
            &ShardRun {
                dir,
                workers,
                range,
                max_batch: args.max_batch,
                index: &index,
                s_key,
                letters: &letters,
            },
            &previous,
            payees,
            p_store,
            (&baseline, &mut baseline_n),
        )?;
        worker_runs.push(outcome.figures);
        (previous, payees, p_store) = (outcome.stores, outcome.payees, outcome.p_store);
    }
    Ok(json!({
        "setup_secs": setup_secs,
        "pending": pending,
        "unbatched": runs[0],
        "batched": runs[1],
        "target_sales_per_sec": 5000.0,
        "floor": floor,
        "workers": shards::report(worker_runs, args.worker_sales),
    }))
}

/// Durable single-row commits to `store` (a payment record of about the size S writes),
/// in milliseconds: the baseline, taken right before and right after each run.
fn commit_sample(store: &Store, next: &mut u32, n: usize) -> Result<Vec<f64>, PaymentBenchError> {
    let record = json!({ "status": { "status": "offered" }, "padding": "x".repeat(1200) });
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        *next += 1;
        let t = Instant::now();
        store.put_payment(&PaymentId(seed(0x95, *next)), &record)?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(lat)
}

fn sale_figures(
    mode: Mode,
    count: usize,
    payees: usize,
    s: &Stats,
    p: &Stats,
    commit_ms: &[f64],
) -> Result<Value, PaymentBenchError> {
    let (first, last) = s
        .window
        .ok_or(PaymentBenchError::Missing("no sale measured"))?;
    let secs = (last - first).as_secs_f64();
    let n = count as f64;
    let baseline = summary(commit_ms);
    let commits_per_sec = 1000.0 / baseline.mean;
    let commits_per_sale = s.commits as f64 / n;
    let us = |d: Duration| d.as_secs_f64() * 1e6 / n;
    Ok(json!({
        "mode": match mode { Mode::Unbatched => "unbatched", Mode::Batched { .. } => "batched" },
        "max_batch": match mode { Mode::Unbatched => 1, Mode::Batched { max_batch } => max_batch },
        "sales": count,
        "payees_in_flight": payees,
        "seconds": secs,
        "sales_per_sec": n / secs,
        "s_busy_secs": s.busy.as_secs_f64(),
        "s_capacity_sales_per_sec": n / s.busy.as_secs_f64(),
        "s_inputs_per_sale": s.inputs as f64 / n,
        "s_rows_per_sale": s.persists as f64 / n,
        "s_commits_per_sale": commits_per_sale,
        "sqlite_commit_around_run_ms": baseline.json(),
        "baseline_commits_per_sec": commits_per_sec,
        "fsync_bound_sales_per_sec": commits_per_sec / commits_per_sale,
        "ratio_to_baseline_commits": (n / secs) / commits_per_sec,
        "s_inputs_per_commit": s.inputs as f64 / s.commits.max(1) as f64,
        "s_core_us_per_sale": us(s.compute),
        "s_persist_us_per_sale": us(s.persist),
        "s_frames_out_per_sale": s.frames_out as f64 / n,
        "s_frames_to_offline_payers_per_sale": s.dropped as f64 / n,
        "s_curve_ops_per_sale": ops_per_sale(&s.ops, n),
        "s_core_us_per_input": s
            .by_kind
            .iter()
            .map(|(k, (count, took))| {
                (k.to_string(), json!(took.as_secs_f64() * 1e6 / (*count).max(1) as f64))
            })
            .collect::<serde_json::Map<_, _>>(),
        // The threads' time on a CPU (see `shards`), persistence included.
        "s_thread_cpu_us_per_sale": s.cpu.map(|c| us(c.on_cpu)),
        "payees_thread_cpu_us_per_sale": p.cpu.map(|c| us(c.on_cpu)),
        "payees_busy_secs": p.busy.as_secs_f64(),
        "payees_core_us_per_sale": us(p.compute),
        "payees_persist_us_per_sale": us(p.persist),
        "payees_commits_per_sale": p.commits as f64 / n,
    }))
}

/// Each payee's letters of the payments in `range`, in order: what one sale run sells.
pub(super) fn letters_in(
    letters: &[Vec<(usize, Vec<u8>)>],
    range: &std::ops::Range<usize>,
) -> Vec<VecDeque<Vec<u8>>> {
    letters
        .iter()
        .map(|l| {
            l.iter()
                .filter(|(i, _)| range.contains(i))
                .map(|(_, bytes)| bytes.clone())
                .collect()
        })
        .collect()
}

/// The curve operations a run counted, per sale, by name.
pub(super) fn ops_per_sale(ops: &Tally, sales: f64) -> serde_json::Map<String, Value> {
    ops.iter()
        .map(|(op, c)| (op.name().to_owned(), json!(c as f64 / sales)))
        .collect()
}
