//! An in-process test network of nodes (payer A, LSP S, payee B, and a router P), each
//! driven by the one node driver ([`crate::node::driver::Driver`]) over an in-memory [`Io`].
//!
//! Frames between online nodes travel through an in-memory queue, delivered when the test
//! says ([`Network::pump`]); frames to or from an offline node are dropped, as a real
//! connection would drop them. A node that stops loses its core and restarts from what it
//! persisted (change sets written as JSON, as the SQLite store writes them). Letters go to
//! in-memory mailboxes. Funding transactions are not built unless a [`Funder`] pays each
//! funding script on a real chain: the opener reports a made-up outpoint, and the funding is
//! "confirmed" by feeding its txid to both nodes. Everything is deterministic: no clock, no
//! randomness beyond the seeds and ids the test gives.
//!
//! ```
//! use asyncpay::testing::{Network, A, B, S};
//!
//! let mut net = Network::new();
//! net.open(A, S, 1_000_000).unwrap();
//! net.open(S, B, 400_000).unwrap();
//! net.stop(B); // the payee is offline
//! let id = net.pay(20_000).unwrap(); // A posts its letter to B's mailbox
//! net.stop(A); // and goes offline too
//! net.start(B).unwrap();
//! net.fetch_letters(B).unwrap(); // B sells A's signature to S
//! assert_eq!(net.nodes[B].status(&id), Some("paid"));
//! ```

use std::collections::{BTreeMap, VecDeque};

use anyhow::{bail, Context};
use bitcoin::hashes::Hash as _;
use bitcoin::{OutPoint, ScriptBuf, Transaction, Txid};

use crate::crypto::keys::PublicKey;
use crate::node::core::{
    receipt_card, ChangeSet, NodeCommand, NodeCore, NodeError, NodeInput, NodeOutput,
    PaymentRecord, Records, Role, DEFAULT_ROUTER_POLICY,
};
pub use crate::node::driver::ready;
use crate::node::driver::{Driver, Io};
use crate::protocol::channel::{Phase, Snapshot, StateBody};
use crate::protocol::messages::ChannelId;
use crate::protocol::payment::{
    LspPayment, LspPolicy, PayeePayment, PayerPayment, PaymentId, ReversePayment, RouterPayment,
};

/// The chain height the network starts at.
pub const HEIGHT: u32 = 300;

/// The A–S channel's shared delay: the policy's PTLC delta plus the sale window margin, and
/// some blocks to spare.
pub const PAYER_DELAY: u16 = 48;

/// A–S's capacity in [`Network::paid_offline_on_chain`].
pub const A_S_CAPACITY: u64 = 1_000_000;
/// S–B's capacity in [`Network::paid_offline_on_chain`].
pub const S_B_CAPACITY: u64 = 400_000;

/// The LSP's fee and expiry policy in the network.
pub fn policy() -> LspPolicy {
    LspPolicy {
        fee_base_sat: 10,
        fee_ppm: 1_000,
        offer_lifetime: 144,
        ptlc_delta: 40,
    }
}

/// One node: its durable store and, while running, its core.
pub struct TestNode {
    /// Its name in transcripts: A, S, B or P.
    pub name: &'static str,
    /// Its secret seed (node key and channel keys derive from it).
    pub seed: [u8; 32],
    /// Its payment role.
    pub role: Role,
    /// Its core while it runs; `None` while it is stopped.
    pub core: Option<NodeCore>,
    /// Stored: its channels, with their peers.
    pub channels: BTreeMap<ChannelId, (PublicKey, Snapshot)>,
    /// Stored: its payment records, each as read back from the JSON a store writes.
    pub payments: BTreeMap<PaymentId, PaymentRecord>,
    /// Records of the reverse variant, likewise.
    pub reverse: BTreeMap<PaymentId, ReversePayment>,
    /// Its mailbox: letters posted to it and not yet handled.
    pub mailbox: Vec<Vec<u8>>,
    /// How many change sets it has written.
    pub persists: usize,
    /// Stop right after this many more persists (a crash at a persist point).
    pub crash_after: Option<usize>,
}

impl TestNode {
    /// A node with nothing stored yet, not running.
    fn empty(name: &'static str, seed: u8, role: Role) -> Self {
        TestNode {
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
            Role::Payer => Records::Payer(self.records(|r| match r {
                PaymentRecord::Payer(p) => Some(p.clone()),
                _ => None,
            })?),
            Role::Lsp => Records::Lsp(
                policy(),
                self.records(|r| match r {
                    PaymentRecord::Lsp(p) => Some(p.clone()),
                    _ => None,
                })?,
            ),
            Role::Payee => Records::Payee(self.records(|r| match r {
                PaymentRecord::Payee(p) => Some(p.clone()),
                _ => None,
            })?),
            Role::Router => Records::Router(
                DEFAULT_ROUTER_POLICY,
                self.records(|r| match r {
                    PaymentRecord::Router(p) => Some(p.clone()),
                    _ => None,
                })?,
            ),
        };
        let channels = self.channels.values().cloned().collect();
        let mut core = NodeCore::restore(self.seed, height, channels, records)?;
        core.restore_reverse(
            self.reverse
                .iter()
                .map(|(id, r)| (*id, r.clone()))
                .collect(),
        );
        self.core = Some(core);
        Ok(())
    }

    /// Its running core (panics if it is stopped).
    pub fn core(&self) -> &NodeCore {
        self.core.as_ref().expect("node is running")
    }

    /// Its node key.
    pub fn key(&self) -> PublicKey {
        crate::node::core::node_key(&self.seed).public_key()
    }

    /// The latest complete state of the channel with `peer`, from the durable store.
    pub fn state_with(&self, peer: PublicKey) -> Option<StateBody> {
        self.channels
            .values()
            .find(|(p, _)| *p == peer)
            .and_then(|(_, s)| s.complete.as_ref().map(|c| c.body.clone()))
    }

    /// The stored snapshot of its channel with `peer`.
    pub fn channel_with(&self, peer: PublicKey) -> Option<&Snapshot> {
        self.channels
            .values()
            .find(|(p, _)| *p == peer)
            .map(|(_, s)| s)
    }

    /// The stored record of a payment.
    pub fn payment(&self, id: &PaymentId) -> Option<&PaymentRecord> {
        self.payments.get(id)
    }

    /// The stored record of a payment this node pays.
    pub fn payer(&self, id: &PaymentId) -> Option<&PayerPayment> {
        match self.payments.get(id)? {
            PaymentRecord::Payer(p) => Some(p),
            _ => None,
        }
    }

    /// The stored record of a payment this node sells as LSP.
    pub fn lsp(&self, id: &PaymentId) -> Option<&LspPayment> {
        match self.payments.get(id)? {
            PaymentRecord::Lsp(p) => Some(p),
            _ => None,
        }
    }

    /// The stored record of a payment this node is paid.
    pub fn payee(&self, id: &PaymentId) -> Option<&PayeePayment> {
        match self.payments.get(id)? {
            PaymentRecord::Payee(p) => Some(p),
            _ => None,
        }
    }

    /// The stored record of a payment this node routes.
    pub fn router(&self, id: &PaymentId) -> Option<&RouterPayment> {
        match self.payments.get(id)? {
            PaymentRecord::Router(p) => Some(p),
            _ => None,
        }
    }

    /// The status name of a payment of the reverse variant, from the durable store.
    pub fn reverse_status(&self, id: &PaymentId) -> Option<&'static str> {
        self.reverse.get(id).map(|p| p.status.name())
    }

    /// The status name of a stored payment record (`posted`, `paid`, ...).
    pub fn status(&self, id: &PaymentId) -> Option<&'static str> {
        self.payments.get(id).map(PaymentRecord::status_name)
    }

    /// The stored records of the node's role, as `pick` takes them.
    fn records<R>(
        &self,
        pick: impl Fn(&PaymentRecord) -> Option<R>,
    ) -> anyhow::Result<Vec<(PaymentId, R)>> {
        self.payments
            .iter()
            .map(|(id, r)| {
                let record = pick(r).with_context(|| {
                    format!("{}: payment {id} is stored for another role", self.name)
                })?;
                Ok((*id, record))
            })
            .collect()
    }
}

/// `record` as a store reads it back: through its JSON, so that what a store could not
/// write or read back fails here too.
fn stored<R: serde::Serialize + serde::de::DeserializeOwned>(
    record: &impl serde::Serialize,
) -> Result<(serde_json::Value, R), MemError> {
    let value = serde_json::to_value(record).map_err(|e| MemError::Failed(e.into()))?;
    let back = serde_json::from_value(value.clone()).map_err(|e| MemError::Failed(e.into()))?;
    Ok((value, back))
}

/// Pays a funding script its capacity on a real chain; returns the confirmed output.
pub type Funder = Box<dyn FnMut(&bitcoin::ScriptBuf, u64) -> anyhow::Result<OutPoint>>;

/// The network.
pub struct Network {
    /// The nodes, indexed by [`A`], [`S`], [`B`] and [`P`].
    pub nodes: Vec<TestNode>,
    /// Frames in flight: (from, to, bytes).
    pub queue: VecDeque<(usize, usize, Vec<u8>)>,
    /// The chain height the nodes were last told.
    pub height: u32,
    /// Every transaction a node published, in order.
    pub broadcasts: Vec<Transaction>,
    /// What went where, one line per frame or letter.
    pub transcript: Vec<String>,
    /// Inputs a node refused, and why.
    pub refusals: Vec<String>,
    /// The next channel or payment id's distinguishing byte.
    pub next_id: u8,
    /// Pays a funding script its capacity on a real chain and returns the confirmed output;
    /// without it, funding outpoints are made up.
    pub funder: Option<Funder>,
    /// The funding outputs the funder made, by channel.
    pub funded: BTreeMap<ChannelId, OutPoint>,
    /// At every persist point: the node, and what its `ctl info` would show of its
    /// payments (`payments` and `reverse`, from `crate::node::views`).
    pub shown: Vec<(usize, serde_json::Value)>,
    /// Every payment record persisted, in order (secrets included).
    pub stored: Vec<serde_json::Value>,
}

/// The payer.
pub const A: usize = 0;
/// The LSP.
pub const S: usize = 1;
/// The payee.
pub const B: usize = 2;
/// The router, in a network made by [`Network::with_router`].
pub const P: usize = 3;

impl Network {
    /// A payer, an LSP and a payee, all running, no channels.
    pub fn new() -> Self {
        Self::at_height(HEIGHT)
    }

    /// The same, at chain height `height` (for scenarios on a real chain).
    pub fn at_height(height: u32) -> Self {
        let node = TestNode::empty;
        let mut sim = Network {
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

    #[cfg(feature = "regtest")]
    /// A payer, an LSP and a payee at `chain`'s height, whose channels are funded on it
    /// (the faucet pays each funding script, and the funding confirms).
    pub fn on_chain(chain: std::sync::Arc<crate::chain::regtest::Regtest>) -> anyhow::Result<Self> {
        let mut sim = Self::at_height(u32::try_from(chain.height()?)?);
        sim.funder = Some(Box::new(move |script, capacity| {
            let (outpoint, _) = chain.fund(script, bitcoin::Amount::from_sat(capacity))?;
            chain.confirm(&outpoint.txid)?;
            Ok(outpoint)
        }));
        Ok(sim)
    }

    #[cfg(feature = "regtest")]
    /// On `chain`: A–S ([`A_S_CAPACITY`]) and S–B ([`S_B_CAPACITY`]) funded on it; B goes offline,
    /// A pays it `amount_sat`, posts its letter and goes offline. Returns the network, A–S
    /// and the payment.
    pub fn paid_offline_on_chain(
        chain: std::sync::Arc<crate::chain::regtest::Regtest>,
        amount_sat: u64,
    ) -> anyhow::Result<(Self, ChannelId, PaymentId)> {
        let mut sim = Self::on_chain(chain)?;
        let a_s = sim.open(A, S, A_S_CAPACITY)?;
        sim.open(S, B, S_B_CAPACITY)?;
        let id = sim.pay_while_payee_offline(amount_sat)?;
        Ok((sim, a_s, id))
    }

    /// B goes offline; A pays it `amount_sat`, posts its letter and goes offline too.
    pub fn pay_while_payee_offline(&mut self, amount_sat: u64) -> anyhow::Result<PaymentId> {
        self.stop(B);
        let id = self.pay(amount_sat)?;
        if self.nodes[A].status(&id) != Some("posted") {
            bail!(
                "A's payment is {:?}, not posted: {:?}",
                self.nodes[A].status(&id),
                self.refusals
            );
        }
        self.stop(A);
        Ok(id)
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
        sim.nodes.push(TestNode::empty("P", 0x9e, Role::Router));
        sim.nodes[P].start(HEIGHT).expect("empty router starts");
        sim
    }

    /// A node's key.
    pub fn key(&self, node: usize) -> PublicKey {
        self.nodes[node].key()
    }

    /// Whether a node runs.
    pub fn online(&self, node: usize) -> bool {
        self.nodes[node].core.is_some()
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

    /// Feeds one input to a running node through the driver: its change set is written to
    /// the node's store, then its actions are carried out. A node that crashes at a persist
    /// point ([`TestNode::crash_after`]) stops right after that write.
    pub fn input(&mut self, node: usize, input: NodeInput) -> anyhow::Result<()> {
        let Some(core) = self.nodes[node].core.take() else {
            bail!("node {} is not running", self.nodes[node].name)
        };
        let peers: Vec<(PublicKey, &'static str, bool)> = (0..self.nodes.len())
            .map(|i| {
                let n = &self.nodes[i];
                (n.key(), n.name, i == node || n.core.is_some())
            })
            .collect();
        let mut mail = vec![];
        let Network {
            nodes,
            queue,
            broadcasts,
            transcript,
            refusals,
            funder,
            funded,
            shown,
            stored,
            ..
        } = self;
        let n = &mut nodes[node];
        let io = MemIo {
            me: node,
            peers: &peers,
            channels: &mut n.channels,
            payments: &mut n.payments,
            reverse: &mut n.reverse,
            persists: &mut n.persists,
            crash_after: &mut n.crash_after,
            queue,
            mail: &mut mail,
            broadcasts,
            transcript,
            refusals,
            funder: funder.as_mut(),
            funded,
            shown,
            stored,
        };
        let mut driver = Driver::new(core, io);
        let result = ready(driver.handle(input));
        let core = driver.core;
        for (to, bytes) in mail {
            self.nodes[to].mailbox.push(bytes);
        }
        match result {
            Ok(()) => {
                self.nodes[node].core = Some(core);
                Ok(())
            }
            Err(MemError::Crashed) => {
                self.stop(node);
                Ok(())
            }
            Err(MemError::Node(e)) => {
                self.nodes[node].core = Some(core);
                Err(e.into())
            }
            Err(MemError::Failed(e)) => {
                self.nodes[node].core = Some(core);
                Err(e)
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
            let from = self.key(from);
            match self.input(to, NodeInput::Frame { from, frame }) {
                Ok(()) => {}
                Err(e) if e.downcast_ref::<NodeError>().is_some() => self
                    .refusals
                    .push(format!("{} refused a frame: {e}", self.nodes[to].name)),
                Err(e) => return Err(e),
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

    /// Opens a channel with the given shared delay; see [`Network::open`].
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
                .map(|(_, s)| s.phase())
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
                receipts: receipt_card(&self.nodes[B].seed),
                hold_blocks: None,
                irrevocable: false,
            }),
        )?;
        self.pump()?;
        Ok(payment_id)
    }

    /// Adds a payee node named `name` (its seed made of `seed_byte`), running, no channels;
    /// returns its index.
    pub fn add_payee(&mut self, name: &'static str, seed_byte: u8) -> anyhow::Result<usize> {
        self.nodes
            .push(TestNode::empty(name, seed_byte, Role::Payee));
        let node = self.nodes.len() - 1;
        self.nodes[node].start(self.height)?;
        Ok(node)
    }

    /// Adds a payer node named `name` (its seed made of `seed_byte`), running, no channels;
    /// returns its index.
    pub fn add_payer(&mut self, name: &'static str, seed_byte: u8) -> anyhow::Result<usize> {
        self.nodes
            .push(TestNode::empty(name, seed_byte, Role::Payer));
        let node = self.nodes.len() - 1;
        self.nodes[node].start(self.height)?;
        Ok(node)
    }

    /// A pays `payee` `amount` through S as a held sale: a PTLC to S expiring
    /// `hold_blocks` from now holds the payment. Returns the payment id.
    pub fn pay_held(
        &mut self,
        payee: usize,
        amount_sat: u64,
        hold_blocks: u32,
    ) -> anyhow::Result<PaymentId> {
        self.pay_held_with(payee, amount_sat, hold_blocks, false)
    }

    /// [`Network::pay_held`], asking S for an offer A cannot cancel before its expiry if
    /// `irrevocable`.
    pub fn pay_held_with(
        &mut self,
        payee: usize,
        amount_sat: u64,
        hold_blocks: u32,
        irrevocable: bool,
    ) -> anyhow::Result<PaymentId> {
        let payment_id = PaymentId([0x70 + self.next_id; 32]);
        self.next_id += 1;
        let (lsp, payee_key) = (self.key(S), self.key(payee));
        self.input(
            A,
            NodeInput::Command(NodeCommand::Pay {
                payment_id,
                lsp,
                payee: payee_key,
                amount_sat,
                fee_sat: policy().fee_for(amount_sat),
                note: format!("held payment {}", self.next_id - 1),
                receipts: receipt_card(&self.nodes[payee].seed),
                hold_blocks: Some(hold_blocks),
                irrevocable,
            }),
        )?;
        self.pump()?;
        Ok(payment_id)
    }

    #[cfg(feature = "regtest")]
    /// Mines on `chain` one block at a time, feeding each to the running nodes, until one of
    /// them has broadcast the settlement of `update` (a spend of its output that is not an
    /// update); gives up once the chain reaches `limit`.
    pub fn mine_until_settlement(
        &mut self,
        chain: &crate::chain::regtest::Regtest,
        update: Txid,
        limit: u64,
    ) -> anyhow::Result<Transaction> {
        loop {
            if let Some(tx) = self.broadcasts.iter().find(|tx| {
                tx.input[0].previous_output.txid == update
                    && tx.lock_time.to_consensus_u32() < crate::tx::STATE_LOCKTIME_BASE
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

    /// Tells every running node of a block at `height`, then delivers what they send.
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

/// Why the in-memory driver stopped an input.
#[derive(Debug)]
enum MemError {
    /// The core refused a (follow-up) input.
    Node(NodeError),
    /// The node crashed at its persist point.
    Crashed,
    /// Something else failed (the funder, a letter to a node not in the network).
    Failed(anyhow::Error),
}

impl From<NodeError> for MemError {
    fn from(e: NodeError) -> Self {
        MemError::Node(e)
    }
}

/// The in-memory world of one node for one input: its store, and the wire, mailboxes and
/// chain of the network, borrowed.
struct MemIo<'a> {
    me: usize,
    /// Every node's key and name, and whether it is online.
    peers: &'a [(PublicKey, &'static str, bool)],
    channels: &'a mut BTreeMap<ChannelId, (PublicKey, Snapshot)>,
    payments: &'a mut BTreeMap<PaymentId, PaymentRecord>,
    reverse: &'a mut BTreeMap<PaymentId, ReversePayment>,
    persists: &'a mut usize,
    crash_after: &'a mut Option<usize>,
    queue: &'a mut VecDeque<(usize, usize, Vec<u8>)>,
    /// Letters posted, put in the mailboxes once the input is done.
    mail: &'a mut Vec<(usize, Vec<u8>)>,
    broadcasts: &'a mut Vec<Transaction>,
    transcript: &'a mut Vec<String>,
    refusals: &'a mut Vec<String>,
    funder: Option<&'a mut Funder>,
    funded: &'a mut BTreeMap<ChannelId, OutPoint>,
    shown: &'a mut Vec<(usize, serde_json::Value)>,
    stored: &'a mut Vec<serde_json::Value>,
}

impl MemIo<'_> {
    fn index_of(&self, key: &PublicKey) -> Result<usize, MemError> {
        self.peers
            .iter()
            .position(|(k, _, _)| k == key)
            .ok_or_else(|| MemError::Failed(anyhow::anyhow!("{key} is not in the network")))
    }

    fn name(&self) -> &'static str {
        self.peers[self.me].1
    }
}

impl Io for MemIo<'_> {
    type Error = MemError;

    fn persist(&mut self, changes: &ChangeSet, core: &NodeCore) -> Result<(), MemError> {
        for (id, (peer, snapshot)) in &changes.channels {
            self.channels.insert(*id, (*peer, (**snapshot).clone()));
        }
        for (id, record) in &changes.payments {
            let (value, back) = match record {
                PaymentRecord::Payer(r) => stored(r).map(|(v, b)| (v, PaymentRecord::Payer(b))),
                PaymentRecord::Lsp(r) => stored(r).map(|(v, b)| (v, PaymentRecord::Lsp(b))),
                PaymentRecord::Payee(r) => stored(r).map(|(v, b)| (v, PaymentRecord::Payee(b))),
                PaymentRecord::Router(r) => stored(r).map(|(v, b)| (v, PaymentRecord::Router(b))),
            }?;
            self.stored.push(value);
            self.payments.insert(*id, back);
        }
        for (id, record) in &changes.reverse {
            let (value, back) = stored(record)?;
            self.stored.push(value);
            self.reverse.insert(*id, back);
        }
        self.shown.push((
            self.me,
            serde_json::json!({
                "payments": crate::node::views::payments(core),
                "reverse": crate::node::views::reverse(core),
            }),
        ));
        *self.persists += 1;
        match self.crash_after.as_mut() {
            Some(0) => {
                *self.crash_after = None;
                Err(MemError::Crashed)
            }
            Some(left) => {
                *left -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn send(&mut self, to: PublicKey, frame: Vec<u8>, what: &'static str) -> bool {
        let Ok(to) = self.index_of(&to) else {
            let name = self.name();
            self.refusals
                .push(format!("{name} sent to a node not in the network"));
            return false;
        };
        let (_, peer, online) = self.peers[to];
        if !online {
            return false;
        }
        self.transcript
            .push(format!("{} -> {peer}: {what}", self.name()));
        self.queue.push_back((self.me, to, frame));
        true
    }

    async fn post_letter(
        &mut self,
        _payment_id: PaymentId,
        payee: PublicKey,
        bytes: Vec<u8>,
    ) -> Result<(), MemError> {
        let to = self.index_of(&payee)?;
        self.mail.push((to, bytes));
        let line = format!("{} -> mailbox of {}: letter", self.name(), self.peers[to].1);
        self.transcript.push(line);
        Ok(())
    }

    async fn post_reverse(
        &mut self,
        to: PublicKey,
        bytes: Vec<u8>,
        _contact: Option<serde_json::Value>,
    ) -> Result<(), MemError> {
        let to = self.index_of(&to)?;
        self.mail.push((to, bytes));
        let line = format!(
            "{} -> mailbox of {}: reverse letter",
            self.name(),
            self.peers[to].1
        );
        self.transcript.push(line);
        Ok(())
    }

    async fn broadcast(&mut self, tx: Transaction) {
        self.broadcasts.push(tx);
    }

    fn watch(&mut self, _outpoint: OutPoint) {}

    async fn build_funding(
        &mut self,
        channel_id: ChannelId,
        script_pubkey: ScriptBuf,
        capacity_sat: u64,
    ) -> Result<OutPoint, MemError> {
        Ok(match self.funder.as_mut() {
            Some(fund) => {
                let outpoint = fund(&script_pubkey, capacity_sat).map_err(MemError::Failed)?;
                self.funded.insert(channel_id, outpoint);
                outpoint
            }
            None => fake_outpoint(&channel_id),
        })
    }

    async fn publish_funding(&mut self, _channel_id: ChannelId) -> Result<(), MemError> {
        Ok(())
    }

    fn report(&mut self, event: NodeOutput) {
        if let NodeOutput::Refused { error, .. } = event {
            let line = format!("{}: {error}", self.name());
            self.refusals.push(line);
        }
    }
}

impl Default for Network {
    fn default() -> Self {
        Self::new()
    }
}

/// What `core` publishes when told to close `channel_id` alone: the update of its latest
/// complete state (for a core restored from an old copy, a stale one).
pub fn force_close(core: &mut NodeCore, channel_id: ChannelId) -> anyhow::Result<Transaction> {
    core.handle(NodeInput::Command(NodeCommand::ForceClose { channel_id }))?
        .actions
        .into_iter()
        .find_map(|o| match o {
            NodeOutput::Broadcast(tx) => Some(tx),
            _ => None,
        })
        .context("no update published")
}

/// The made-up funding outpoint of a channel funded without a [`Funder`].
pub fn fake_outpoint(channel: &ChannelId) -> OutPoint {
    OutPoint {
        txid: Txid::from_byte_array(channel.0),
        vout: 0,
    }
}
