//! An in-process network of node cores (payer A, LSP S, payee B) for payment tests.
//!
//! Frames between online nodes travel through an in-memory queue; frames to or from an
//! offline node are dropped, as a real connection would be. A node that stops loses its
//! in-memory core and restarts from what it persisted. Letters go to an in-memory mailbox.
//! Funding transactions are not built: the opener reports a made-up outpoint, and the funding
//! is "confirmed" by feeding its txid to every node.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};

use anyhow::{bail, Context};
use asyncpay::crypto::keys::PublicKey;
use asyncpay::node::core::{
    NodeCommand, NodeCore, NodeInput, NodeOutput, Records, Role, DEFAULT_ROUTER_POLICY,
};
use asyncpay::protocol::channel::{Phase, Snapshot, StateBody};
use asyncpay::protocol::messages::ChannelId;
use asyncpay::protocol::payment::{LspPolicy, PaymentId};
use bitcoin::hashes::Hash as _;
use bitcoin::{OutPoint, Transaction, Txid};

pub const HEIGHT: u32 = 300;

/// The A–S channel's shared delay: the policy's PTLC delta plus the sale window margin, and
/// some blocks to spare.
pub const PAYER_DELAY: u16 = 48;

/// A–S's capacity in [`Sim::paid_offline_on_chain`].
pub const A_S_CAPACITY: u64 = 1_000_000;
/// S–B's capacity in [`Sim::paid_offline_on_chain`].
pub const S_B_CAPACITY: u64 = 400_000;

pub fn policy() -> LspPolicy {
    LspPolicy {
        fee_base_sat: 10,
        fee_ppm: 1_000,
        offer_lifetime: 144,
        ptlc_delta: 40,
    }
}

/// One node: its durable store and, while running, its core.
pub struct SimNode {
    pub name: &'static str,
    pub seed: [u8; 32],
    pub role: Role,
    pub core: Option<NodeCore>,
    pub channels: BTreeMap<ChannelId, (PublicKey, Snapshot)>,
    pub payments: BTreeMap<PaymentId, serde_json::Value>,
    /// Records of the reverse variant.
    pub reverse: BTreeMap<PaymentId, serde_json::Value>,
    pub mailbox: Vec<Vec<u8>>,
    pub persists: usize,
    /// Stop right after this many more persists (a crash at a persist point).
    pub crash_after: Option<usize>,
}

impl SimNode {
    /// A node with nothing stored yet, not running.
    fn empty(name: &'static str, seed: u8, role: Role) -> Self {
        SimNode {
            name,
            seed: [seed; 32],
            role,
            core: None,
            channels: BTreeMap::new(),
            payments: BTreeMap::new(),
            reverse: BTreeMap::new(),
            mailbox: vec![],
            persists: 0,
            crash_after: None,
        }
    }

    fn start(&mut self, height: u32) -> anyhow::Result<()> {
        let records = match self.role {
            Role::Payer => Records::Payer(parse(&self.payments)?),
            Role::Lsp => Records::Lsp(policy(), parse(&self.payments)?),
            Role::Payee => Records::Payee(parse(&self.payments)?),
            Role::Router => Records::Router(DEFAULT_ROUTER_POLICY, parse(&self.payments)?),
        };
        let channels = self.channels.values().cloned().collect();
        let mut core = NodeCore::restore(self.seed, height, channels, records)?;
        core.restore_reverse(parse(&self.reverse)?);
        self.core = Some(core);
        Ok(())
    }

    pub fn core(&self) -> &NodeCore {
        self.core.as_ref().expect("node is running")
    }

    pub fn key(&self) -> PublicKey {
        asyncpay::node::core::node_key(&self.seed).public_key()
    }

    /// The latest complete state of the channel with `peer`, from the durable store.
    pub fn state_with(&self, peer: PublicKey) -> Option<StateBody> {
        self.channels
            .values()
            .find(|(p, _)| *p == peer)
            .and_then(|(_, s)| s.complete.as_ref().map(|c| c.body.clone()))
    }

    pub fn channel_with(&self, peer: PublicKey) -> Option<&Snapshot> {
        self.channels
            .values()
            .find(|(p, _)| *p == peer)
            .map(|(_, s)| s)
    }

    pub fn payment(&self, id: &PaymentId) -> Option<&serde_json::Value> {
        self.payments.get(id)
    }

    /// The status of a payment of the reverse variant, from the durable store.
    pub fn reverse_status(&self, id: &PaymentId) -> Option<String> {
        self.reverse.get(id).and_then(|p| {
            p.pointer("/status/status")
                .and_then(|s| s.as_str())
                .map(str::to_owned)
        })
    }

    pub fn status(&self, id: &PaymentId) -> Option<String> {
        self.payments.get(id).and_then(|p| {
            p.pointer("/status/status")
                .and_then(|s| s.as_str())
                .map(str::to_owned)
        })
    }
}

fn parse<R: serde::de::DeserializeOwned>(
    records: &BTreeMap<PaymentId, serde_json::Value>,
) -> anyhow::Result<Vec<(PaymentId, R)>> {
    records
        .iter()
        .map(|(id, v)| Ok((*id, serde_json::from_value(v.clone())?)))
        .collect()
}

/// Pays a funding script its capacity on a real chain; returns the confirmed output.
pub type Funder = Box<dyn FnMut(&bitcoin::ScriptBuf, u64) -> anyhow::Result<OutPoint>>;

/// The network.
pub struct Sim {
    pub nodes: Vec<SimNode>,
    pub queue: VecDeque<(usize, usize, Vec<u8>)>,
    pub height: u32,
    pub broadcasts: Vec<Transaction>,
    pub transcript: Vec<String>,
    pub refusals: Vec<String>,
    pub next_id: u8,
    /// Pays a funding script its capacity on a real chain and returns the confirmed output;
    /// without it, funding outpoints are made up.
    pub funder: Option<Funder>,
    /// The funding outputs the funder made, by channel.
    pub funded: BTreeMap<ChannelId, OutPoint>,
    /// At every persist point: the node, and what its `ctl info` would show of its
    /// payments (`payments` and `reverse`, from `asyncpay::node::views`).
    pub shown: Vec<(usize, serde_json::Value)>,
    /// Every payment record persisted, in order (secrets included).
    pub stored: Vec<serde_json::Value>,
}

pub const A: usize = 0;
pub const S: usize = 1;
pub const B: usize = 2;
/// The router, in a network made by [`Sim::with_router`].
pub const P: usize = 3;

impl Sim {
    /// A payer, an LSP and a payee, all running, no channels.
    pub fn new() -> Self {
        Self::at_height(HEIGHT)
    }

    /// The same, at chain height `height` (for scenarios on a real chain).
    pub fn at_height(height: u32) -> Self {
        let node = SimNode::empty;
        let mut sim = Sim {
            nodes: vec![
                node("A", 0xa1, Role::Payer),
                node("S", 0x51, Role::Lsp),
                node("B", 0xb1, Role::Payee),
            ],
            queue: VecDeque::new(),
            height,
            broadcasts: vec![],
            transcript: vec![],
            refusals: vec![],
            next_id: 1,
            funder: None,
            funded: BTreeMap::new(),
            shown: vec![],
            stored: vec![],
        };
        for i in 0..3 {
            sim.nodes[i].start(height).expect("empty nodes start");
        }
        sim
    }

    /// A payer, an LSP and a payee at `chain`'s height, whose channels are funded on it
    /// (the faucet pays each funding script, and the funding confirms).
    pub fn on_chain(
        chain: std::sync::Arc<asyncpay::chain::regtest::Regtest>,
    ) -> anyhow::Result<Self> {
        let mut sim = Self::at_height(u32::try_from(chain.height()?)?);
        sim.funder = Some(Box::new(move |script, capacity| {
            let (outpoint, _) = chain.fund(script, bitcoin::Amount::from_sat(capacity))?;
            chain.confirm(&outpoint.txid)?;
            Ok(outpoint)
        }));
        Ok(sim)
    }

    /// On `chain`: A–S ([`A_S_CAPACITY`]) and S–B ([`S_B_CAPACITY`]) funded on it; B goes offline,
    /// A pays it `amount_sat`, posts its letter and goes offline. Returns the network, A–S
    /// and the payment.
    pub fn paid_offline_on_chain(
        chain: std::sync::Arc<asyncpay::chain::regtest::Regtest>,
        amount_sat: u64,
    ) -> anyhow::Result<(Self, ChannelId, PaymentId)> {
        let mut sim = Self::on_chain(chain)?;
        let a_s = sim.open(A, S, A_S_CAPACITY)?;
        sim.open(S, B, S_B_CAPACITY)?;
        sim.stop(B);
        let id = sim.pay(amount_sat)?;
        if sim.nodes[A].status(&id).as_deref() != Some("posted") {
            bail!("A's payment is {:?}, not posted", sim.nodes[A].status(&id));
        }
        sim.stop(A);
        Ok((sim, a_s, id))
    }

    /// B asks S for a state paying it `amount_sat`, to be bought by A (reverse variant).
    pub fn receive(&mut self, payment_id: PaymentId, amount_sat: u64) -> anyhow::Result<()> {
        let (lsp, payer) = (self.key(S), self.key(A));
        self.input(
            B,
            NodeInput::Command(NodeCommand::Receive {
                payment_id,
                lsp,
                payer,
                amount_sat,
                contact: None,
            }),
        )
    }

    /// A payer, an LSP, a payee and a router P, all running, no channels.
    pub fn with_router() -> Self {
        let mut sim = Self::new();
        sim.nodes.push(SimNode::empty("P", 0x9e, Role::Router));
        sim.nodes[P].start(HEIGHT).expect("empty router starts");
        sim
    }

    pub fn key(&self, node: usize) -> PublicKey {
        self.nodes[node].key()
    }

    pub fn online(&self, node: usize) -> bool {
        self.nodes[node].core.is_some()
    }

    fn index_of(&self, key: &PublicKey) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| self.key(i) == *key)
    }

    /// Stops a node: its in-memory state is gone.
    pub fn stop(&mut self, node: usize) {
        self.nodes[node].core = None;
        self.queue
            .retain(|(from, to, _)| *from != node && *to != node);
    }

    /// Starts a node from its store and reconnects it to every online node.
    pub fn start(&mut self, node: usize) -> anyhow::Result<()> {
        self.nodes[node].start(self.height)?;
        self.input(node, NodeInput::Started)?;
        for other in 0..self.nodes.len() {
            if other != node && self.online(other) {
                self.connect(node, other)?;
            }
        }
        Ok(())
    }

    /// Both sides learn of a (re)connection.
    pub fn connect(&mut self, x: usize, y: usize) -> anyhow::Result<()> {
        let (kx, ky) = (self.key(x), self.key(y));
        self.input(x, NodeInput::Connected { peer: ky })?;
        self.input(y, NodeInput::Connected { peer: kx })?;
        Ok(())
    }

    /// Feeds one input to a running node and carries out its outputs.
    pub fn input(&mut self, node: usize, input: NodeInput) -> anyhow::Result<()> {
        let Some(core) = self.nodes[node].core.as_mut() else {
            bail!("node {} is not running", self.nodes[node].name)
        };
        let outputs = core.handle(input)?;
        self.run(node, outputs)
    }

    fn run(&mut self, node: usize, outputs: Vec<NodeOutput>) -> anyhow::Result<()> {
        for output in outputs {
            if self.nodes[node].core.is_none() {
                // Crashed mid-list: the rest never happens.
                return Ok(());
            }
            match output {
                NodeOutput::PersistChannel { peer, snapshot } => {
                    let n = &mut self.nodes[node];
                    n.channels.insert(snapshot.channel_id, (peer, *snapshot));
                    self.persisted(node);
                }
                NodeOutput::PersistPayment { payment_id, record } => {
                    self.stored.push(record.clone());
                    self.nodes[node].payments.insert(payment_id, record);
                    self.persisted(node);
                }
                NodeOutput::PersistReverse { payment_id, record } => {
                    self.stored.push(record.clone());
                    self.nodes[node].reverse.insert(payment_id, record);
                    self.persisted(node);
                }
                NodeOutput::PostReverse { to, bytes, .. } => {
                    let Some(to) = self.index_of(&to) else {
                        bail!("letter to an unknown node")
                    };
                    self.nodes[to].mailbox.push(bytes);
                    self.transcript.push(format!(
                        "{} -> mailbox of {}: reverse letter",
                        self.nodes[node].name, self.nodes[to].name
                    ));
                }
                NodeOutput::Send { to, frame, what } => {
                    let Some(to) = self.index_of(&to) else {
                        bail!("send to an unknown node")
                    };
                    if self.online(to) {
                        self.transcript.push(format!(
                            "{} -> {}: {what}",
                            self.nodes[node].name, self.nodes[to].name
                        ));
                        self.queue.push_back((node, to, frame));
                    }
                }
                NodeOutput::Broadcast(tx) => self.broadcasts.push(tx),
                NodeOutput::Watch(_) => {}
                NodeOutput::NeedFunding {
                    channel_id,
                    script_pubkey,
                    capacity_sat,
                } => {
                    let outpoint = match self.funder.as_mut() {
                        Some(fund) => {
                            let outpoint = fund(&script_pubkey, capacity_sat)?;
                            self.funded.insert(channel_id, outpoint);
                            outpoint
                        }
                        None => fake_outpoint(&channel_id),
                    };
                    let outputs = self.nodes[node].core.as_mut().expect("running").handle(
                        NodeInput::FundingBuilt {
                            channel_id,
                            outpoint,
                        },
                    )?;
                    self.run(node, outputs)?;
                }
                NodeOutput::ReadyToFund { .. } => {}
                NodeOutput::PostLetter {
                    payment_id,
                    payee,
                    letter,
                } => {
                    let Some(to) = self.index_of(&payee) else {
                        bail!("letter to an unknown node")
                    };
                    self.nodes[to].mailbox.push(letter.encode());
                    self.transcript.push(format!(
                        "{} -> mailbox of {}: letter",
                        self.nodes[node].name, self.nodes[to].name
                    ));
                    let outputs = self.nodes[node]
                        .core
                        .as_mut()
                        .expect("running")
                        .handle(NodeInput::LetterPosted { payment_id })?;
                    self.run(node, outputs)?;
                }
                NodeOutput::ChannelEvent { .. } | NodeOutput::PaymentEvent(_) => {}
                NodeOutput::Refused { error, .. } => self
                    .refusals
                    .push(format!("{}: {error}", self.nodes[node].name)),
            }
        }
        Ok(())
    }

    fn persisted(&mut self, node: usize) {
        if let Some(core) = self.nodes[node].core.as_ref() {
            let shown = serde_json::json!({
                "payments": asyncpay::node::views::payments(core),
                "reverse": asyncpay::node::views::reverse(core),
            });
            self.shown.push((node, shown));
        }
        let n = &mut self.nodes[node];
        n.persists += 1;
        if let Some(left) = n.crash_after.as_mut() {
            if *left == 0 {
                n.crash_after = None;
                self.stop(node);
            } else {
                *left -= 1;
            }
        }
    }

    /// Delivers queued frames until none is left; refused frames are recorded.
    pub fn pump(&mut self) -> anyhow::Result<()> {
        for _ in 0..10_000 {
            let Some((from, to, frame)) = self.queue.pop_front() else {
                return Ok(());
            };
            if !self.online(to) || !self.online(from) {
                continue;
            }
            let from_key = self.key(from);
            let core = self.nodes[to].core.as_mut().expect("online");
            match core.handle(NodeInput::Frame {
                from: from_key,
                frame,
            }) {
                Ok(outputs) => self.run(to, outputs)?,
                Err(e) => self
                    .refusals
                    .push(format!("{} refused a frame: {e}", self.nodes[to].name)),
            }
        }
        bail!("the network did not settle")
    }

    /// The payee fetches its letters. As with the mailbox server, a letter is deleted only
    /// once handled: if the node stops while handling one, it stays for the next fetch.
    pub fn fetch_letters(&mut self, node: usize) -> anyhow::Result<()> {
        while let Some(bytes) = self.nodes[node].mailbox.first().cloned() {
            if let Err(e) = self.input(node, NodeInput::Letter { bytes }) {
                self.refusals.push(format!("letter refused: {e}"));
            }
            if !self.online(node) {
                return Ok(());
            }
            self.nodes[node].mailbox.remove(0);
        }
        self.pump()
    }

    /// Opens a funded channel from `opener` to `acceptor`.
    /// Opens a channel; the payer's channel replaces an older published state for
    /// [`PAYER_DELAY`] blocks (long enough for a sale), the others for 6.
    pub fn open(
        &mut self,
        opener: usize,
        acceptor: usize,
        capacity_sat: u64,
    ) -> anyhow::Result<ChannelId> {
        let delay = if opener == A { PAYER_DELAY } else { 6 };
        self.open_with_delay(opener, acceptor, capacity_sat, delay)
    }

    pub fn open_with_delay(
        &mut self,
        opener: usize,
        acceptor: usize,
        capacity_sat: u64,
        shared_delay: u16,
    ) -> anyhow::Result<ChannelId> {
        let channel_id = ChannelId([self.next_id; 32]);
        self.next_id += 1;
        let peer = self.key(acceptor);
        self.input(
            opener,
            NodeInput::Command(NodeCommand::OpenChannel {
                peer,
                channel_id,
                capacity_sat,
                shared_delay,
            }),
        )?;
        self.pump()?;
        let txid = self
            .funded
            .get(&channel_id)
            .map_or(fake_outpoint(&channel_id).txid, |o| o.txid);
        for node in [opener, acceptor] {
            self.input(
                node,
                NodeInput::Confirmed {
                    txid,
                    height: self.height,
                },
            )?;
        }
        self.pump()?;
        for node in [opener, acceptor] {
            let phase = self.nodes[node]
                .channels
                .get(&channel_id)
                .map(|(_, s)| s.phase)
                .context("channel stored")?;
            if phase != Phase::Funded {
                bail!("channel at {} is {phase:?}", self.nodes[node].name);
            }
        }
        Ok(channel_id)
    }

    /// A pays B `amount` through S; returns the payment id.
    pub fn pay(&mut self, amount_sat: u64) -> anyhow::Result<PaymentId> {
        let payment_id = PaymentId([0x70 + self.next_id; 32]);
        self.next_id += 1;
        let (lsp, payee) = (self.key(S), self.key(B));
        self.input(
            A,
            NodeInput::Command(NodeCommand::Pay {
                payment_id,
                lsp,
                payee,
                amount_sat,
                fee_sat: policy().fee_for(amount_sat),
                note: "for the coffee".into(),
            }),
        )?;
        self.pump()?;
        Ok(payment_id)
    }

    /// Mines on `chain` one block at a time, feeding each to the running nodes, until one of
    /// them has broadcast the settlement of `update` (a spend of its output that is not an
    /// update); gives up once the chain reaches `limit`.
    pub fn mine_until_settlement(
        &mut self,
        chain: &asyncpay::chain::regtest::Regtest,
        update: Txid,
        limit: u64,
    ) -> anyhow::Result<Transaction> {
        loop {
            if let Some(tx) = self.broadcasts.iter().find(|tx| {
                tx.input[0].previous_output.txid == update
                    && tx.lock_time.to_consensus_u32() < asyncpay::tx::STATE_LOCKTIME_BASE
            }) {
                return Ok(tx.clone());
            }
            if chain.height()? >= limit {
                bail!("no settlement of {update} by height {limit}");
            }
            chain.mine(1)?;
            self.block(u32::try_from(chain.height()?)?)?;
        }
    }

    pub fn block(&mut self, height: u32) -> anyhow::Result<()> {
        self.height = height;
        for node in 0..self.nodes.len() {
            if self.online(node) {
                self.input(node, NodeInput::Block { height })?;
            }
        }
        self.pump()
    }
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

/// What `core` publishes when told to close `channel_id` alone: the update of its latest
/// complete state (for a core restored from an old copy, a stale one).
pub fn force_close(core: &mut NodeCore, channel_id: ChannelId) -> anyhow::Result<Transaction> {
    core.handle(NodeInput::Command(NodeCommand::ForceClose { channel_id }))?
        .into_iter()
        .find_map(|o| match o {
            NodeOutput::Broadcast(tx) => Some(tx),
            _ => None,
        })
        .context("no update published")
}

pub fn fake_outpoint(channel: &ChannelId) -> OutPoint {
    OutPoint {
        txid: Txid::from_byte_array(channel.0),
        vout: 0,
    }
}
