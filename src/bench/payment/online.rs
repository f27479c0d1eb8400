//! Payee online → paid on loopback. A, S and B are node cores, each on its own thread with
//! its own tokio runtime and its own durable SQLite store, talking over the authenticated
//! peer transport (Noise XX bound to node keys) on loopback TCP; A leaves its letter in a
//! mailbox server on loopback. The chain is not involved: the bench feeds each core the
//! funding confirmation a chain would, as the in-process tests do.
//!
//! Every node reports what it does (inputs handled, rows persisted, frames sent, mailbox
//! requests) as timestamped [`Note`]s to the orchestrator, which cuts each payment into steps
//! and counts its frames from these notes.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::node::{Cmd, Commit, Kind, NodeHandle, Note, Spec, Who};
use super::relay::DelayRelay;
use super::{
    fake_outpoint, policy, seed, summary, PaymentBenchError, Summary, AMOUNT_SAT, HEIGHT,
    PAYER_DELAY, SHARED_DELAY,
};
use crate::bench::mailbox::ServerThread;
use crate::crypto::keys::PublicKey;
use crate::mailbox::keys::{Contact, NodeKey};
use crate::mailbox::server::ServerConfig;
use crate::mailbox::unix_now;
use crate::net::{connect, Allow, Listener};
use crate::node::core::{node_key, NodeCommand, NodeCore, NodeInput, Records, Role};
use crate::node::store::Store;
use crate::protocol::channel::Phase;
use crate::protocol::messages::ChannelId;
use crate::protocol::payment::PaymentId;
use crate::protocol::wire::Layer;

/// Steps of one payment, in milliseconds.
#[derive(Debug, Default, Clone)]
struct Steps {
    values: BTreeMap<&'static str, f64>,
}

/// The steps of the online latency, in order, each with what it covers (also described in
/// `asyncpay bench payment --help` and docs/benchmarks.md); the report's `latency_ms` has
/// one entry per step and one for `total`.
pub const STEPS: [(&str, &str); 9] = [
    (
        "connect",
        "B dials S (TCP, Noise XX, node-key binding) and B's core handles the connection",
    ),
    (
        "mailbox_fetch",
        "B's challenge + fetch requests to the mailbox server",
    ),
    ("decrypt", "B opens the age envelope"),
    (
        "letter",
        "B checks the letter (S's offer signature, s_A·G = T), persists its invoice, sends it",
    ),
    ("invoice_to_s", "the invoice frame reaches S's driver"),
    (
        "ptlc_add",
        "S accepts the invoice and adds the PTLC on S–B (propose, countersign, complete) until B holds it in a complete state",
    ),
    (
        "fulfil",
        "B fulfils the PTLC (propose, countersign, complete) until S has B's completion",
    ),
    (
        "complete_a",
        "S persists the sale and completes A's U_{n+1} with the scalar",
    ),
    ("b_paid_at", "time from B online to B's record persisted as paid"),
];

/// The three node keys.
#[derive(Debug, Clone, Copy)]
struct Keys {
    a: PublicKey,
    s: PublicKey,
    b: PublicKey,
}

impl Keys {
    fn of(&self, who: Who) -> PublicKey {
        match who {
            Who::A => self.a,
            Who::S => self.s,
            Who::B => self.b,
        }
    }
}

/// Counts of one phase of a payment on one link.
#[derive(Debug, Default, Clone, PartialEq)]
struct PhaseCount {
    channel: u32,
    payment: u32,
    mailbox_requests: u32,
    bytes: usize,
    /// The longest chain of frames each sent in answer to the one before.
    hops: u32,
    names: Vec<String>,
}

impl PhaseCount {
    /// Counts the frames delivered between `x` and `y` among `notes`. A frame's hop depth
    /// is one more than that of the frame whose handling sent it (one if a command, a letter
    /// or a connection sent it); frames on a connection arrive in the order they were sent,
    /// so the receiver's sequence number names the sender's frame.
    fn from_notes(notes: &[Note], (x, y): (Who, Who), keys: &Keys) -> Self {
        let mut c = PhaseCount::default();
        let (kx, ky) = (keys.of(x), keys.of(y));
        let mut sent: Vec<&Note> = notes
            .iter()
            .filter(|n| matches!(n.kind, Kind::Sent { seq: Some(_), .. }))
            .collect();
        sent.sort_by_key(|n| n.t);
        let mut depth: HashMap<(PublicKey, PublicKey, u64), u32> = HashMap::new();
        for n in sent {
            let Kind::Sent {
                to,
                message_type,
                name,
                bytes,
                seq: Some(seq),
                cause,
            } = &n.kind
            else {
                continue;
            };
            let from = keys.of(n.who);
            if !((from, *to) == (kx, ky) || (from, *to) == (ky, kx)) {
                continue;
            }
            let d = 1 + cause
                .and_then(|(cf, cs)| depth.get(&(cf, from, cs)).copied())
                .unwrap_or(0);
            depth.insert((from, *to, *seq), d);
            c.hops = c.hops.max(d);
            match message_type.and_then(Layer::of) {
                Some(Layer::Channel) => c.channel += 1,
                Some(Layer::Payment) => c.payment += 1,
                None => {}
            }
            c.bytes += bytes;
            c.names.push(format!(
                "{:?}->{:?} {name}",
                n.who,
                if n.who == x { y } else { x }
            ));
        }
        for n in notes {
            if let Kind::Mailbox { requests, .. } = n.kind {
                if n.who == x || n.who == y {
                    c.mailbox_requests += requests;
                }
            }
        }
        c
    }

    /// Two phases one after the other.
    fn then(&self, next: &PhaseCount) -> PhaseCount {
        PhaseCount {
            channel: self.channel + next.channel,
            payment: self.payment + next.payment,
            mailbox_requests: self.mailbox_requests + next.mailbox_requests,
            bytes: self.bytes + next.bytes,
            hops: self.hops + next.hops,
            names: self.names.iter().chain(&next.names).cloned().collect(),
        }
    }

    fn json(&self) -> Value {
        json!({
            "channel_messages": self.channel,
            "payment_messages": self.payment,
            "peer_messages": self.channel + self.payment,
            "mailbox_requests": self.mailbox_requests,
            "peer_bytes": self.bytes,
            "peer_hops": self.hops,
            "peer_round_trips": f64::from(self.hops) / 2.0,
            "frames": self.names,
        })
    }
}

/// The orchestrator: node handles and the notes they report.
struct Net {
    a: NodeHandle,
    s: NodeHandle,
    b: NodeHandle,
    notes: mpsc::UnboundedReceiver<Note>,
    log: Vec<Note>,
}

impl Net {
    /// Waits for a note matching `f` among those from index `from` on.
    async fn wait_note(
        &mut self,
        from: usize,
        what: &'static str,
        f: impl Fn(&Note) -> bool,
    ) -> Result<Note, PaymentBenchError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut i = from;
        loop {
            while i < self.log.len() {
                if f(&self.log[i]) {
                    return Ok(self.log[i].clone());
                }
                i += 1;
            }
            match tokio::time::timeout_at(deadline, self.notes.recv()).await {
                Ok(Some(note)) => self.log.push(note),
                Ok(None) => return Err(PaymentBenchError::NodesStopped(what)),
                Err(_) => {
                    return Err(PaymentBenchError::NoteTimeout {
                        what,
                        refusals: self.refusals(),
                    })
                }
            }
        }
    }

    /// Takes in every note already reported.
    fn drain(&mut self) {
        while let Ok(note) = self.notes.try_recv() {
            self.log.push(note);
        }
    }

    fn refusals(&self) -> Vec<String> {
        self.log
            .iter()
            .filter_map(|n| match &n.kind {
                Kind::Refused(e) => Some(format!("{:?}: {e}", n.who)),
                _ => None,
            })
            .collect()
    }

    /// Opens a funded channel from `opener` to `acceptor` (both connected).
    async fn open(
        &self,
        opener: Who,
        acceptor: Who,
        id: ChannelId,
    ) -> Result<(), PaymentBenchError> {
        let (o, acc) = (self.node(opener), self.node(acceptor));
        o.input(NodeInput::Command(NodeCommand::OpenChannel {
            peer: acc.key,
            channel_id: id,
            capacity_sat: 100_000_000,
            shared_delay: if opener == Who::A {
                PAYER_DELAY
            } else {
                SHARED_DELAY
            },
        }))
        .await?;
        let state0 = move |core: &NodeCore| {
            core.channels()
                .get(&id)
                .is_some_and(|e| e.channel.snapshot().complete.is_some())
        };
        o.wait_for("state 0 at the opener", state0).await?;
        acc.wait_for("state 0 at the acceptor", state0).await?;
        let txid = fake_outpoint(&id).txid;
        for n in [o, acc] {
            n.input(NodeInput::Confirmed {
                txid,
                height: HEIGHT,
            })
            .await?;
        }
        let funded = move |core: &NodeCore| {
            core.channels()
                .get(&id)
                .is_some_and(|e| e.channel.phase() == Phase::Funded)
        };
        o.wait_for("funded at the opener", funded).await?;
        acc.wait_for("funded at the acceptor", funded).await?;
        Ok(())
    }

    fn node(&self, who: Who) -> &NodeHandle {
        match who {
            Who::A => &self.a,
            Who::S => &self.s,
            Who::B => &self.b,
        }
    }
}

/// One measured payment.
struct Measured {
    steps: Steps,
    a_return: PhaseCount,
    a_pay: PhaseCount,
    b_part: PhaseCount,
    /// Over B's window: core time, persist time and persists at S and B, mailbox time.
    compute_ms: f64,
    persist_ms: f64,
    persists_s: u32,
    persists_b: u32,
    commits_s: u32,
    commits_b: u32,
    persists_a: u32,
    mailbox_ms: f64,
}

/// What the online part reports.
pub struct OnlineFigures {
    pub json: Value,
}

/// Options of the online part.
pub struct OnlineOptions {
    pub payments: usize,
    pub warmup: usize,
    pub baseline_rounds: usize,
    /// A round-trip time to add on B's links (to S and to the mailbox), and the payments
    /// measured over it (after the warm-up).
    pub rtt: Option<(Duration, usize)>,
}

/// Runs the online part in `dir`.
pub fn run(dir: &Path, args: &OnlineOptions) -> Result<OnlineFigures, PaymentBenchError> {
    std::fs::create_dir_all(dir)?;
    let mut config = ServerConfig::new(dir.join("mailbox"));
    config.ip_rate_per_sec = f64::INFINITY;
    config.ip_burst = f64::INFINITY;
    config.sender_rate_per_sec = f64::INFINITY;
    config.sender_burst = f64::INFINITY;
    let mut server = ServerThread::start(config)?;
    let url = server.url.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Both commit modes run side by side, one payment each in turn, so that a change in the
    // disk's speed during the run weighs on both alike.
    let total = args.warmup + args.payments;
    let result = runtime.block_on(async {
        let mut sessions = vec![];
        for commit in [Commit::PerRow, Commit::PerInput] {
            let sub = dir.join(commit.name());
            std::fs::create_dir_all(&sub)?;
            sessions.push(Session::start(&sub, &url, commit, None).await?);
        }
        for i in 0..=total {
            for session in &mut sessions {
                let name = session.commit.name();
                session.step(i, total).await.map_err(|source| {
                    PaymentBenchError::OnlinePayment {
                        payment: i,
                        commit: name,
                        source: Box::new(source),
                    }
                })?;
            }
        }
        let mut json = json!({});
        for session in sessions {
            let name = session.commit.name();
            json[name] = session.finish(args.warmup, total).await?;
        }
        if let Some((rtt, payments)) = args.rtt {
            json["per_input_rtt"] = over_link(dir, &url, rtt, args.warmup, payments).await?;
        }
        Ok::<Value, PaymentBenchError>(json)
    });
    let mut json = match result {
        Ok(json) => json,
        Err(e) => {
            server.stop();
            return Err(e);
        }
    };
    server.stop();
    json["noise_round_trip"] = noise_round_trip(args.baseline_rounds)?;
    Ok(OnlineFigures { json })
}

/// One set of nodes A, S, B under one commit mode, paying one payment per [`Session::step`].
struct Session {
    commit: Commit,
    /// B's links to S and to the mailbox go through relays adding this round-trip time.
    link: Option<Link>,
    net: Net,
    keys: Keys,
    measured: Vec<Measured>,
    pending_return: Option<(PaymentId, usize)>,
    /// A store beside the nodes' where the baseline commits go, between payments.
    baseline: Store,
    baseline_ms: Vec<f64>,
    /// B's node (never run: its seed gives B's receipt slots, one per payment).
    b_receipts: NodeCore,
}

/// B's wide-area link: relays in front of S's peer port and of the mailbox server.
struct Link {
    rtt: Duration,
    to_s: DelayRelay,
    _to_mailbox: DelayRelay,
}

impl Session {
    async fn start(
        dir: &Path,
        url: &str,
        commit: Commit,
        rtt: Option<Duration>,
    ) -> Result<Self, PaymentBenchError> {
        let (notes_tx, notes) = mpsc::unbounded_channel();
        let (sa, ss, sb) = (seed(0xa0, 0), seed(0x50, 0), seed(0xb0, 0));
        let (ka, kb) = (node_key(&sa).public_key(), node_key(&sb).public_key());
        let spec = |who, seed, role, name: &str, allow| Spec {
            who,
            seed,
            role,
            db: dir.join(name),
            mailbox_url: url.to_owned(),
            listen_allow: allow,
            commit,
        };
        let s = NodeHandle::spawn(
            spec(Who::S, ss, Role::Lsp, "s.db", Some(vec![ka, kb])),
            notes_tx.clone(),
        )?;
        let a = NodeHandle::spawn(
            spec(Who::A, sa, Role::Payer, "a.db", None),
            notes_tx.clone(),
        )?;
        // Over a link with a round-trip time, B reaches S and the mailbox through relays
        // that hold each byte half of it in each direction.
        let link = match rtt {
            Some(rtt) => {
                let mailbox: std::net::SocketAddr = url
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .parse()
                    .map_err(|_| PaymentBenchError::Missing("a mailbox URL of host:port"))?;
                Some(Link {
                    rtt,
                    to_s: DelayRelay::start(s.addr()?, rtt / 2)?,
                    _to_mailbox: DelayRelay::start(mailbox, rtt / 2)?,
                })
            }
            None => None,
        };
        let b_url = match &link {
            Some(link) => format!("http://{}", link._to_mailbox.addr),
            None => url.to_owned(),
        };
        let mut b_spec = spec(Who::B, sb, Role::Payee, "b.db", None);
        b_spec.mailbox_url = b_url;
        let b = NodeHandle::spawn(b_spec, notes_tx)?;
        let net = Net {
            a,
            s,
            b,
            notes,
            log: vec![],
        };
        let keys = Keys {
            a: net.a.key,
            s: net.s.key,
            b: net.b.key,
        };

        // Channels A–S (A opens) and S–B (S opens), funded by fiat.
        net.a.connect(&net.s).await?;
        net.open(Who::A, Who::S, ChannelId(seed(0xc1, 0))).await?;
        match &link {
            Some(link) => net.b.connect_via(link.to_s.addr, net.s.key).await?,
            None => net.b.connect(&net.s).await?,
        }
        net.open(Who::S, Who::B, ChannelId(seed(0xc2, 0))).await?;
        let b_mailbox = NodeKey::from_secret_bytes(node_key(&sb).to_secret_bytes())
            .map_err(|e| PaymentBenchError::MailboxKey("mailbox key", e))?;
        let contact = Contact::sign(&b_mailbox, url, unix_now())
            .verify()
            .map_err(|e| PaymentBenchError::MailboxKey("contact", e))?;
        let (reply, answer) = oneshot::channel();
        net.a.send(Cmd::Contact {
            payee: keys.b,
            contact,
            reply,
        })?;
        answer.await?;
        net.b.disconnect(keys.s).await?;
        net.s.wait_disconnected(keys.b).await?;
        Ok(Session {
            commit,
            link,
            net,
            keys,
            measured: vec![],
            pending_return: None,
            baseline: Store::open(&dir.join("baseline.db"))?,
            baseline_ms: vec![],
            b_receipts: NodeCore::restore(sb, 0, vec![], Records::Payee(vec![]))?,
        })
    }

    /// Payment `i`: A returns (if it left) and collects the receipt of payment `i - 1`; then,
    /// unless `i == total`, A pays and leaves, and B comes online and sells.
    async fn step(&mut self, i: usize, total: usize) -> Result<(), PaymentBenchError> {
        let keys = self.keys;
        let (ka, ks, kb) = (keys.a, keys.s, keys.b);
        let b_to_s = self.link.as_ref().map(|l| l.to_s.addr);
        let net = &mut self.net;
        let start = net.log.len();
        if i > 0 {
            net.a.connect(&net.s).await?;
        }
        if let Some((prev, _)) = self.pending_return {
            net.wait_note(start, "S to see A's receipt ack", |n| {
                n.who == Who::S
                    && matches!(&n.kind, Kind::Payment { id, receipt_acked: true, .. } if *id == prev)
            })
            .await?;
            // State 0 opened the channel; payment k completed state k + 1.
            let state = i as u64;
            net.a
                .wait_for("A's channel to reach the paid state", move |core| {
                    core.channels().values().any(|e| {
                        e.peer == ks
                            && e.channel.phase() == Phase::Funded
                            && e.channel
                                .snapshot()
                                .complete
                                .as_ref()
                                .map(|c| c.body.number)
                                == Some(state)
                    })
                })
                .await?;
        }
        settle(net).await;
        let return_notes = net.log[start..].to_vec();
        if let Some((_, index)) = self.pending_return.take() {
            self.measured[index].a_return =
                PhaseCount::from_notes(&return_notes, (Who::A, Who::S), &keys);
        }
        if i == total {
            return Ok(());
        }

        // A pays and goes offline once its letter is in B's mailbox.
        let payment_id = PaymentId(seed(0x70, i as u32));
        let start = net.log.len();
        net.a
            .input(NodeInput::Command(NodeCommand::Pay {
                payment_id,
                lsp: ks,
                payee: kb,
                amount_sat: AMOUNT_SAT,
                fee_sat: policy().fee_for(AMOUNT_SAT),
                note: "bench".into(),
                receipts: self.b_receipts.receipt_slots(i as u32, 1),
                hold_blocks: None,
                irrevocable: false,
            }))
            .await?;
        net.wait_note(start, "A's letter to be posted", |n| {
            n.who == Who::A
                && matches!(&n.kind, Kind::Payment { id, status, .. } if *id == payment_id && status == "posted")
        })
        .await?;
        settle(net).await;
        let pay_notes = net.log[start..].to_vec();
        net.a.disconnect(ks).await?;
        net.s.wait_disconnected(ka).await?;

        // B comes online: connects to S, fetches its mailbox and sells A's signature.
        let start = net.log.len();
        let t0 = Instant::now();
        match b_to_s {
            Some(addr) => net.b.connect_via(addr, ks).await?,
            None => net.b.connect(&net.s).await?,
        }
        let letters = net.b.fetch().await?;
        if letters != 1 {
            return Err(PaymentBenchError::Letters(letters));
        }
        let state = (i as u64) + 1;
        let done = net
            .wait_note(start, "S to complete A's state", |n| {
                n.who == Who::S
                    && matches!(&n.kind, Kind::Channel { peer, complete, .. } if *peer == ka && *complete == Some(state))
            })
            .await?;
        let t_end = done.t;
        net.wait_note(start, "B to be paid", |n| {
            n.who == Who::B
                && matches!(&n.kind, Kind::Payment { id, status, .. } if *id == payment_id && status == "paid")
        })
        .await?;
        net.wait_note(start, "B's mailbox ack", |n| {
            n.who == Who::B && matches!(&n.kind, Kind::Mailbox { what: "ack", .. })
        })
        .await?;
        settle(net).await;
        let b_notes = net.log[start..].to_vec();
        net.b.disconnect(ks).await?;
        net.s.wait_disconnected(kb).await?;

        let refusals = net.refusals();
        if !refusals.is_empty() {
            return Err(PaymentBenchError::Refused {
                payment: i,
                refusals,
            });
        }
        let mut m = analyse(&b_notes, t0, t_end, payment_id, &keys)?;
        m.a_pay = PhaseCount::from_notes(&pay_notes, (Who::A, Who::S), &keys);
        m.persists_a = count_persists(&pay_notes, Who::A);
        self.measured.push(m);
        self.pending_return = Some((payment_id, self.measured.len() - 1));

        // The baseline, under the disk's conditions of this very moment.
        let record = json!({ "status": { "status": "offered" }, "padding": "x".repeat(1200) });
        for k in 0..3u32 {
            let t = Instant::now();
            self.baseline
                .put_payment(&PaymentId(seed(0x96, i as u32 * 3 + k)), &record)?;
            self.baseline_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(())
    }

    /// Checks that every payment sold at S, paid B and completed at A; stops the nodes.
    async fn finish(mut self, warmup: usize, total: usize) -> Result<Value, PaymentBenchError> {
        let count = |status: &'static str| {
            move |core: &NodeCore| {
                json!(core
                    .payments_json()
                    .iter()
                    .filter(|(_, r)| r["status"]["status"] == status)
                    .count())
            }
        };
        let net = &mut self.net;
        let sold = net.s.query(count("sold")).await?;
        let paid = net.b.query(count("paid")).await?;
        let completed = net.a.query(count("completed")).await?;
        for (who, n) in [
            ("S sold", &sold),
            ("B paid", &paid),
            ("A completed", &completed),
        ] {
            if n.as_u64() != Some(total as u64) {
                return Err(PaymentBenchError::Incomplete {
                    commit: self.commit.name(),
                    who,
                    count: n.clone(),
                    total,
                });
            }
        }
        for node in [&mut net.a, &mut net.s, &mut net.b] {
            node.stop()?;
        }
        let mut figures = report(&self.measured[warmup..], total)?;
        figures["sqlite_commit_between_payments_ms"] = summary(&self.baseline_ms).json();
        Ok(figures)
    }
}

/// The per-input session again with `rtt` added on B's links: its figures, the RTT, and each
/// step's p50 latency divided by the RTT (how many round trips the step costs).
async fn over_link(
    dir: &Path,
    url: &str,
    rtt: Duration,
    warmup: usize,
    payments: usize,
) -> Result<Value, PaymentBenchError> {
    let sub = dir.join("per_input_rtt");
    std::fs::create_dir_all(&sub)?;
    let mut session = Session::start(&sub, url, Commit::PerInput, Some(rtt)).await?;
    let total = warmup + payments.max(1);
    for i in 0..=total {
        session
            .step(i, total)
            .await
            .map_err(|source| PaymentBenchError::OnlinePayment {
                payment: i,
                commit: "per_input_rtt",
                source: Box::new(source),
            })?;
    }
    let rtt_ms = session
        .link
        .as_ref()
        .map_or(0.0, |l| l.rtt.as_secs_f64() * 1000.0);
    let mut figures = session.finish(warmup, total).await?;
    let mut over = serde_json::Map::new();
    if let Some(steps) = figures["latency_ms"].as_object() {
        for (step, s) in steps {
            over.insert(
                step.clone(),
                json!(s["p50"].as_f64().unwrap_or(0.0) / rtt_ms),
            );
        }
    }
    figures["rtt_ms"] = json!(rtt_ms);
    figures["p50_over_rtt"] = Value::Object(over);
    Ok(figures)
}

/// Lets in-flight notes arrive (outside timed windows only).
async fn settle(net: &mut Net) {
    tokio::time::sleep(Duration::from_millis(3)).await;
    net.drain();
}

fn count_persists(notes: &[Note], who: Who) -> u32 {
    notes
        .iter()
        .filter(|n| n.who == who && matches!(n.kind, Kind::Channel { .. } | Kind::Payment { .. }))
        .count() as u32
}

fn analyse(
    notes: &[Note],
    t0: Instant,
    t_end: Instant,
    payment_id: PaymentId,
    keys: &Keys,
) -> Result<Measured, PaymentBenchError> {
    let ks = keys.s;
    let find = |what: &'static str, f: &dyn Fn(&Note) -> bool| {
        notes
            .iter()
            .find(|n| f(n))
            .cloned()
            .ok_or(PaymentBenchError::NoNote(what))
    };
    let mark = |who: Who, name: &'static str| {
        move |n: &Note| n.who == who && matches!(n.kind, Kind::Mark(m) if m == name)
    };
    let status_in = |who: Who, want: &'static str| {
        move |n: &Note| {
            n.who == who
                && matches!(&n.kind, Kind::Payment { id, status, .. } if *id == payment_id && status == want)
        }
    };
    let t_in = |n: &Note| match n.kind {
        Kind::Payment { t_in, .. } | Kind::Channel { t_in, .. } => t_in,
        _ => n.t,
    };
    let fetch_start = find("fetch start", &mark(Who::B, "fetch_start"))?.t;
    let fetched = find("mailbox fetch", &|n: &Note| {
        n.who == Who::B && matches!(n.kind, Kind::Mailbox { what: "fetch", .. })
    })?;
    let opened = find("letter opened", &mark(Who::B, "opened"))?.t;
    let invoice_sent = find("invoice sent", &|n: &Note| {
        n.who == Who::B
            && matches!(n.kind, Kind::Sent { name: "invoice", seq: Some(_), to, .. } if to == ks)
    })?
    .t;
    let selling = t_in(&find("S selling", &status_in(Who::S, "selling"))?);
    let fulfilled = t_in(&find("B fulfilled", &status_in(Who::B, "fulfilled"))?);
    let sold = t_in(&find("S sold", &status_in(Who::S, "sold"))?);
    let paid = find("B paid", &status_in(Who::B, "paid"))?.t;
    let ms = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64() * 1000.0;
    let mut steps = Steps::default();
    let v = &mut steps.values;
    v.insert("connect", ms(t0, fetch_start));
    v.insert("mailbox_fetch", ms(fetch_start, fetched.t));
    v.insert("decrypt", ms(fetched.t, opened));
    v.insert("letter", ms(opened, invoice_sent));
    v.insert("invoice_to_s", ms(invoice_sent, selling));
    v.insert("ptlc_add", ms(selling, fulfilled));
    v.insert("fulfil", ms(fulfilled, sold));
    v.insert("complete_a", ms(sold, t_end));
    v.insert("b_paid_at", ms(t0, paid));
    v.insert("total", ms(t0, t_end));

    let mut compute = Duration::ZERO;
    let mut persist = Duration::ZERO;
    let (mut persists_s, mut persists_b, mut commits_s, mut commits_b) = (0, 0, 0, 0);
    let mut mailbox = Duration::ZERO;
    for n in notes {
        match &n.kind {
            Kind::Handled {
                t_in,
                compute: c,
                persist: p,
                persists,
                commits,
            } if *t_in >= t0 && *t_in <= t_end && matches!(n.who, Who::S | Who::B) => {
                compute += *c;
                persist += *p;
                if n.who == Who::S {
                    persists_s += persists;
                    commits_s += commits;
                } else {
                    persists_b += persists;
                    commits_b += commits;
                }
            }
            Kind::Mailbox {
                what: "fetch",
                took,
                ..
            } => mailbox += *took,
            _ => {}
        }
    }
    Ok(Measured {
        steps,
        a_return: PhaseCount::default(),
        a_pay: PhaseCount::default(),
        b_part: PhaseCount::from_notes(notes, (Who::B, Who::S), keys),
        compute_ms: compute.as_secs_f64() * 1000.0,
        persist_ms: persist.as_secs_f64() * 1000.0,
        persists_s,
        persists_b,
        commits_s,
        commits_b,
        persists_a: 0,
        mailbox_ms: mailbox.as_secs_f64() * 1000.0,
    })
}

fn report(measured: &[Measured], total: usize) -> Result<Value, PaymentBenchError> {
    let first = measured
        .first()
        .ok_or(PaymentBenchError::Missing("no payment measured"))?;
    let mut steps = serde_json::Map::new();
    let mut names: Vec<&str> = STEPS.iter().map(|(n, _)| *n).collect();
    names.push("total");
    for name in names {
        let values: Vec<f64> = measured
            .iter()
            .map(|m| m.steps.values.get(name).copied().unwrap_or(0.0))
            .collect();
        steps.insert(name.to_owned(), summary(&values).json());
    }
    let mean =
        |f: &dyn Fn(&Measured) -> f64| measured.iter().map(f).sum::<f64>() / measured.len() as f64;
    let total_ms = mean(&|m| m.steps.values["total"]);
    let compute_ms = mean(&|m| m.compute_ms);
    let persist_ms = mean(&|m| m.persist_ms);
    let mailbox_ms = mean(&|m| m.mailbox_ms + m.steps.values["decrypt"]);
    // Counts must not vary between payments: each is the protocol's, not a sample.
    for m in measured {
        for (what, x, y) in [
            ("A's return", &m.a_return, &first.a_return),
            ("A's payment", &m.a_pay, &first.a_pay),
            ("B's part", &m.b_part, &first.b_part),
        ] {
            if (x.channel, x.payment, x.mailbox_requests)
                != (y.channel, y.payment, y.mailbox_requests)
            {
                return Err(PaymentBenchError::CountsDiffer {
                    what,
                    this: format!("{x:?}"),
                    first: format!("{y:?}"),
                });
            }
        }
    }
    let summary_total = summary(
        &measured
            .iter()
            .map(|m| m.steps.values["total"])
            .collect::<Vec<_>>(),
    );
    Ok(json!({
        "payments": measured.len(),
        "payments_run": total,
        "latency_ms": Value::Object(steps),
        "target_p50_ms": 20.0,
        "target_met": summary_total.p50 < 20.0,
        "attribution_mean_ms": {
            "total": total_ms,
            "core_compute": compute_ms,
            "sqlite_persist": persist_ms,
            "mailbox_and_decrypt": mailbox_ms,
            "network_and_scheduling": total_ms - compute_ms - persist_ms - mailbox_ms,
        },
        "persists_in_window": {
            "s": first.persists_s,
            "b": first.persists_b,
            "s_commits": first.commits_s,
            "b_commits": first.commits_b,
        },
        "persists_a_pay": first.persists_a,
        "messages": {
            "a_pays": first.a_pay.json(),
            "a_returns": first.a_return.json(),
            "a_total": first.a_pay.then(&first.a_return).json(),
            "b_sells": first.b_part.json(),
        },
    }))
}

/// The baseline: a 64-byte message and its echo over one loopback Noise connection, the
/// two ends on their own threads and runtimes as the nodes are.
fn noise_round_trip(rounds: usize) -> Result<Value, PaymentBenchError> {
    let server_key = Arc::new(node_key(&seed(0xe0, 0)));
    let client_key = node_key(&seed(0xe1, 0));
    let server_pub = server_key.public_key();
    let client_pub = client_key.public_key();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || -> Result<(), PaymentBenchError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let listener =
                Listener::bind("127.0.0.1:0", server_key, Allow::keys([client_pub])).await?;
            if addr_tx.send(listener.local_addr()?).is_err() {
                // The measuring side has given up.
                return Ok(());
            }
            let mut conn = listener.accept().await?;
            while let Ok(message) = conn.recv().await {
                conn.send(&message).await?;
            }
            Ok(())
        })
    });
    let addr = addr_rx.recv().map_err(PaymentBenchError::EchoServer)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (handshake, mut rtts) = runtime.block_on(async move {
        let t = Instant::now();
        let mut conn = connect(addr, &client_key, server_pub).await?;
        let handshake = t.elapsed().as_secs_f64() * 1000.0;
        let message = [0x5au8; 64];
        let mut rtts = Vec::with_capacity(rounds);
        for _ in 0..rounds.max(1) {
            let t = Instant::now();
            conn.send(&message).await?;
            let echo = conn.recv().await?;
            rtts.push(t.elapsed().as_secs_f64() * 1000.0);
            if echo != message {
                return Err(PaymentBenchError::EchoDiffers);
            }
        }
        conn.shutdown().await?;
        Ok::<_, PaymentBenchError>((handshake, rtts))
    })?;
    server
        .join()
        .map_err(|_| PaymentBenchError::Panicked("echo server"))??;
    rtts.sort_by(f64::total_cmp);
    let s: Summary = summary(&rtts);
    Ok(json!({
        "rounds": rtts.len(),
        "round_trip_ms": s.json(),
        "connect_ms": handshake,
    }))
}
