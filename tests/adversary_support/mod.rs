//! An adversarial harness in the shape of LDK's `chanmon_consistency`: honest node cores
//! against a byzantine adversary that controls every other party, with the honest parties'
//! safety invariants checked after every step.
//!
//! The adversary is built from real protocol objects with its own valid keys: each of its
//! parties is a [`NodeCore`] (and, for commands the core does not expose, a [`Channel`]
//! restored from that party's persisted snapshot), so everything it sends is well-formed and
//! validly signed. Around them sits a mutation layer ([`Op`]): frames from the adversary to an
//! honest node are held until the adversary decides what to do with each (deliver in order,
//! reorder, duplicate, drop, replay any earlier one), and the adversary can lie in
//! `Reestablish`, propose reverts and re-propose with other nonces at any time, send payment
//! messages at any time, roll its own parties back to older snapshots, publish any state it
//! holds on chain, mine blocks, and crash the honest node, which restarts from what it
//! persisted.
//!
//! Frames between two honest nodes, and from honest nodes to the adversary's, travel in
//! order on a faithful wire (the adversary sees everything it is sent).
//!
//! The adversary can also run the reverse variant (its payee asks the honest LSP for a state
//! paying it, its payer buys the LSP's signature), stack stale states on chain (each later
//! update spending its last one), and restore the honest node from an old backup (its whole
//! store some persists ago).
//!
//! The invariants (each a function with its own message); an honest node that panics on any
//! input is a violation too (counterparty input must never panic):
//!
//! 1. [`Watcher::check_withheld_kept`]: no withheld signature leaves its honest owner except
//!    inside the letter to the payee (or once the adversary knows it anyway: a letter it
//!    fetched, a scalar an honest payee sold it; or, in the reverse variant, once the LSP is
//!    paid for it: a PTLC for its point is committed to the LSP).
//! 2. [`World::check_lsp_pays_only_for_what_it_can_complete`]: an honest LSP never has a PTLC
//!    out for a sale whose payer state it could not complete with that price point.
//! 3. [`World::check_settlement_model`]: the balance the chain would give the honest party
//!    (eltoo: the highest-numbered state either side can publish wins; the adversary picks
//!    which, and whether each PTLC secret is revealed) is never below what it started with,
//!    less what a payer consented to by posting a letter; a stale state the adversary
//!    publishes is answered by the next block (the channel answers at once and publishes
//!    again at every block until the answer is moot).
//! 4. [`Watcher::check_nonce`]: no nonce is used by the honest party for two different
//!    messages, across restarts and old backups.
//!
//! What the model leaves out: time (PTLC expiries, sale windows and BIP68 delays are not
//! checked against heights: a PTLC secret revealed counts as revealed in time), fees and
//! the mempool (every publication is valid; only the adversary's own updates are published
//! by its choice), settlements and PTLC claims on chain (the outcome is the state that
//! wins, with its PTLCs valued by who can claim them), and cooperative closes.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use asyncpay::crypto::adaptor::{AdaptorPoint, AdaptorSecret};
use asyncpay::crypto::keys::{PublicKey, SecretKey};
use asyncpay::crypto::nonce::{NonceSeed, PublicNonce};
use asyncpay::crypto::receipt::ReceiptKeys;
use asyncpay::crypto::tagged_hash;
use asyncpay::node::core::{
    node_key, receipt_card, ChangeSet, NodeCommand, NodeCore, NodeError, NodeInput, NodeOutput,
    Records, Role, DEFAULT_ROUTER_POLICY,
};
use asyncpay::node::driver::ready;
use asyncpay::node::driver::{Driver, Io};
use asyncpay::protocol::channel::{
    Action, Channel, ChannelSecrets, Command, Input, Phase, Progress, Snapshot, Stage, StateBody,
};
use asyncpay::protocol::messages::{
    Change, ChannelId, Message, ProposeUpdate, Reestablish as ReestablishMsg, RevealedSecret,
};
use asyncpay::protocol::payment::{
    CancelOutcome, ForSale, Forward, HeldPtlc, InvoiceTerms, LspStatus, PayRequest, PaymentId,
    PaymentMessage, Receipt, SaleLetter,
};
use asyncpay::protocol::wire::{Decoded, PeerMessage};
use asyncpay::tx::Party;
use bitcoin::{OutPoint, Transaction};

/// The chain height every scenario starts at.
// The network's height, the payer's channel delay and the LSP's terms are those of the
// in-process test network.
pub use asyncpay::testing::{fake_outpoint, policy, HEIGHT, PAYER_DELAY};

/// A broken invariant (or a harness failure), with what happened before it.
pub type Violation = String;

/// One party: its durable store and, while running, its core.
pub struct Node {
    pub name: &'static str,
    pub seed: [u8; 32],
    pub role: Role,
    pub honest: bool,
    pub core: Option<NodeCore>,
    pub channels: BTreeMap<ChannelId, (PublicKey, Snapshot)>,
    pub payments: BTreeMap<PaymentId, serde_json::Value>,
    pub reverse: BTreeMap<PaymentId, serde_json::Value>,
    pub mailbox: Vec<Vec<u8>>,
    /// Every channel snapshot the party persisted, oldest first: what the adversary's parties
    /// roll back to or publish, and the honest node's old backups.
    pub history: Vec<(PublicKey, Snapshot)>,
    /// An honest node's whole store after each of its persists: its old backups.
    pub backups: Vec<Backup>,
    /// Stop right after this many more persists (a crash at a persist point).
    pub crash_after: Option<usize>,
    /// Payment ids this party started, in order.
    pub started_payments: Vec<PaymentId>,
}

impl Node {
    fn new(name: &'static str, seed: u8, role: Role, honest: bool) -> Self {
        Node {
            name,
            seed: [seed; 32],
            role,
            honest,
            core: None,
            channels: BTreeMap::new(),
            payments: BTreeMap::new(),
            reverse: BTreeMap::new(),
            mailbox: vec![],
            history: vec![],
            backups: vec![],
            crash_after: None,
            started_payments: vec![],
        }
    }

    fn start(&mut self, height: u32) -> Result<(), Violation> {
        let records = match self.role {
            Role::Payer => Records::Payer(parse(&self.payments)?),
            Role::Lsp => Records::Lsp(policy(), parse(&self.payments)?),
            Role::Payee => Records::Payee(parse(&self.payments)?),
            Role::Router => Records::Router(DEFAULT_ROUTER_POLICY, parse(&self.payments)?),
        };
        let channels = self.channels.values().cloned().collect();
        let mut core = NodeCore::restore(self.seed, height, channels, records)
            .map_err(|e| format!("{} does not restore from its store: {e}", self.name))?;
        core.restore_reverse(parse(&self.reverse)?);
        self.core = Some(core);
        Ok(())
    }

    pub fn key(&self) -> PublicKey {
        node_key(&self.seed).public_key()
    }

    pub fn core(&self) -> &NodeCore {
        self.core.as_ref().expect("node is running")
    }

    /// The status of a payment, from the durable store.
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
) -> Result<Vec<(PaymentId, R)>, Violation> {
    records
        .iter()
        .map(|(id, v)| {
            serde_json::from_value(v.clone())
                .map(|r| (*id, r))
                .map_err(|e| format!("stored record does not parse: {e}"))
        })
        .collect()
}

/// A copy of a node's whole store.
#[derive(Clone)]
pub struct Backup {
    pub channels: BTreeMap<ChannelId, (PublicKey, Snapshot)>,
    pub payments: BTreeMap<PaymentId, serde_json::Value>,
    pub reverse: BTreeMap<PaymentId, serde_json::Value>,
}

/// The node core's key derivation (`src/node/core.rs`), so that the adversary can drive its
/// own channels directly with the keys its cores use.
fn derive_key(seed: &[u8; 32], what: &str, extra: &[u8]) -> SecretKey {
    let mut counter = 0u8;
    loop {
        let bytes = tagged_hash(
            "asyncpay/node/v1/derive",
            &[seed, what.as_bytes(), extra, &[counter]],
        );
        if let Ok(key) = SecretKey::from_bytes(bytes) {
            return key;
        }
        counter = counter.wrapping_add(1);
    }
}

/// The secrets the node core gives `channel` of the node with `seed`.
pub fn channel_secrets(seed: &[u8; 32], channel: &ChannelId) -> ChannelSecrets {
    ChannelSecrets {
        key: derive_key(seed, "channel-key", &channel.0),
        nonce_seed: NonceSeed::from_bytes(tagged_hash(
            "asyncpay/node/v1/channel-nonce",
            &[seed, &channel.0],
        )),
    }
}

/// A frame between two parties.
#[derive(Clone, Debug)]
pub struct Frame {
    pub from: usize,
    pub to: usize,
    pub bytes: Vec<u8>,
}

impl Frame {
    fn describe(&self, nodes: &[Node]) -> String {
        format!(
            "{} -> {}: {}",
            nodes[self.from].name,
            nodes[self.to].name,
            describe_frame(&self.bytes)
        )
    }
}

/// A short description of a frame, for transcripts (never the bytes of a signature).
pub fn describe_frame(bytes: &[u8]) -> String {
    match PeerMessage::decode(bytes) {
        Ok(Decoded::Message(PeerMessage::Channel(m))) => match m {
            Message::Propose(m) => format!("propose {} {}", m.state, m.change.kind()),
            Message::CounterSign(m) => format!("countersign {}", m.state),
            Message::Complete(m) => format!("complete {}", m.state),
            Message::Reestablish(m) => format!("reestablish next {}", m.next_state),
            m => m.name().to_owned(),
        },
        Ok(Decoded::Message(PeerMessage::Payment(m))) => m.name().to_owned(),
        Ok(Decoded::Ignored { message_type }) => format!("ignored type {message_type}"),
        Err(e) => format!("bad frame ({e})"),
    }
}

/// The channel message a frame holds, if it holds one.
fn channel_message(frame: &[u8]) -> Option<Message> {
    match PeerMessage::decode(frame) {
        Ok(Decoded::Message(PeerMessage::Channel(m))) => Some(m),
        _ => None,
    }
}

fn channel_frame(msg: &Message) -> Vec<u8> {
    PeerMessage::Channel(msg.clone()).encode()
}

fn payment_frame(msg: &PaymentMessage) -> Vec<u8> {
    PeerMessage::Payment(msg.clone()).encode()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn body_identity(channel: &ChannelId, body: &StateBody) -> String {
    // What an update signature signs is the transaction: a PTLC's claim signature (the
    // offerer's adaptor half, which a restarted offerer makes anew) is no part of it, so two
    // bodies that differ only there are one message, and one nonce may sign it again.
    let mut signed = serde_json::to_value(body).expect("bodies serialise");
    if let Some(ptlcs) = signed["ptlcs"].as_array_mut() {
        for p in ptlcs {
            if let Some(p) = p.as_object_mut() {
                p.remove("claim_signature");
            }
        }
    }
    format!(
        "state {} of channel {} ({signed})",
        body.number,
        hex::encode(&channel.0[..4]),
    )
}

/// What the harness knows about one honest node: what left it, what it holds.
#[derive(Default)]
pub struct Watcher {
    pub name: &'static str,
    /// Withheld signature scalars the node has held, with their channel and state.
    pub withheld: BTreeMap<[u8; 32], (ChannelId, u64)>,
    /// The state each withheld signature completes.
    pub withheld_bodies: BTreeMap<[u8; 32], StateBody>,
    /// States whose signature by this node left it (the adversary may complete and publish
    /// them), by channel.
    pub published: BTreeMap<ChannelId, Vec<StateBody>>,
    /// Every public nonce the node sent, with what it signs.
    pub nonces: BTreeMap<[u8; 32], String>,
    /// What a payer agreed to lose: amount + fee of each payment whose letter it posted.
    pub consented: BTreeMap<PaymentId, u64>,
    /// Points whose discrete log the node was told (a letter, a fulfilment).
    pub known_points: BTreeSet<AdaptorPoint>,
    /// Every state number the node ever gave up by a revert, by channel.
    pub abandoned: BTreeMap<ChannelId, BTreeSet<u64>>,
    /// The node's channel snapshots as last persisted (what a signature it sends signs).
    pub view: BTreeMap<ChannelId, Snapshot>,
    /// Its wealth in the settlement model when the adversary started.
    pub floor: Option<u64>,
    /// The node was restored from an old backup: it may have lost newer states (eltoo
    /// cannot help that), so only invariants 1 and 4 still hold for it.
    pub restored_old_backup: bool,
}

impl Watcher {
    fn note_snapshot(&mut self, snap: &Snapshot) {
        let id = snap.channel_id;
        for p in snap.pending().into_iter().chain(snap.abandoned.as_ref()) {
            // A signature withheld as a pre-signature encrypted to a payee's receipt point is
            // not known to the node itself (only the payee can complete it): nothing to leak.
            if let Some(sig) = snap_withheld_signature(&p.progress) {
                self.withheld.insert(sig.s_bytes(), (id, p.body.number));
                self.withheld_bodies.insert(sig.s_bytes(), p.body.clone());
                // The node knows its own scalar: a PTLC paying for it is claimable.
                if let Ok(s) = AdaptorSecret::from_signature(&sig) {
                    self.known_points.insert(s.adaptor_point());
                }
            }
        }
        if let Some(a) = &snap.abandoned {
            self.abandoned.entry(id).or_default().insert(a.body.number);
        }
        self.view.insert(id, snap.clone());
    }

    /// The state body numbered `state` that the node holds on `channel` (pending first).
    fn body(&self, channel: &ChannelId, state: u64) -> Option<StateBody> {
        let snap = self.view.get(channel)?;
        snap.pending()
            .into_iter()
            .chain(snap.abandoned.iter())
            .map(|p| &p.body)
            .chain(snap.complete.iter().map(|c| &c.body))
            .find(|b| b.number == state)
            .cloned()
    }

    /// Invariant 1: `bytes`, about to leave the node as `what`, carry none of its withheld
    /// signature scalars that the adversary does not already know.
    pub fn check_withheld_kept(
        &self,
        bytes: &[u8],
        what: &str,
        adversary_knows: &BTreeSet<[u8; 32]>,
    ) -> Result<(), Violation> {
        if skipped(1) {
            return Ok(());
        }
        for (s, (channel, state)) in &self.withheld {
            // Known to the adversary already, or paid for: in the reverse variant the LSP is
            // paid once a PTLC for its scalar's point is committed to it (it can claim it on
            // chain with the scalar), and it then fulfils it and releases its signature.
            if adversary_knows.contains(s) || self.paid_for(s) {
                continue;
            }
            if contains(bytes, s) || contains(bytes, hex::encode(s).as_bytes()) {
                return Err(format!(
                    "invariant 1 (a withheld signature leaves only in the letter) broken: {} \
                     sent its withheld signature on state {state} of channel {} in {what}, \
                     which the adversary did not know",
                    self.name,
                    hex::encode(&channel.0[..4])
                ));
            }
        }
        Ok(())
    }

    /// Whether a PTLC for the point of withheld scalar `s` is committed to the node: a
    /// complete state of one of its channels holds one its peer offered.
    fn paid_for(&self, s: &[u8; 32]) -> bool {
        let Ok(secret) = AdaptorSecret::from_bytes(*s) else {
            return false;
        };
        let point = secret.adaptor_point();
        self.view.values().any(|snap| {
            snap.complete.as_ref().is_some_and(|c| {
                c.body
                    .ptlcs
                    .iter()
                    .any(|p| p.point == point && p.offerer != snap.side)
            })
        })
    }

    /// Invariant 4: the nonce `r` the node made public signs `identity` and nothing else.
    pub fn check_nonce(&mut self, r: [u8; 32], identity: String) -> Result<(), Violation> {
        if skipped(4) {
            return Ok(());
        }
        match self.nonces.get(&r) {
            Some(before) if *before != identity => Err(format!(
                "invariant 4 (no nonce is used twice) broken: {} used nonce {} for {before} \
                 and again for {identity}",
                self.name,
                hex::encode(&r[..8])
            )),
            Some(_) => Ok(()),
            None => {
                self.nonces.insert(r, identity);
                Ok(())
            }
        }
    }

    fn publish(&mut self, channel: ChannelId, body: StateBody) {
        let list = self.published.entry(channel).or_default();
        if !list.contains(&body) {
            list.push(body);
        }
    }

    /// A channel message the node is sending: its nonces and the states it signs.
    fn note_channel_message(&mut self, msg: &Message) -> Result<(), Violation> {
        let channel = msg.channel_id();
        let (state, r, signs) = match msg {
            Message::Propose(m) => (m.state, m.nonce.to_xonly_bytes(), false),
            Message::CounterSign(m) => (m.state, m.signature.nonce().to_xonly_bytes(), true),
            Message::Complete(m) => (m.state, m.signature.nonce().to_xonly_bytes(), true),
            _ => return Ok(()),
        };
        // A `Complete` may show the peer its own signature back (proof of a purchase): only
        // signatures by this node's key are its nonces.
        if let Message::Complete(_) = msg {
            let snap = self.view.get(&channel);
            let side = snap.map(|s| s.side);
            let proposer = snap.and_then(|s| {
                s.pending()
                    .into_iter()
                    .filter(|p| p.body.number == state)
                    .map(|p| p.proposer(s.side))
                    .chain(
                        s.complete
                            .iter()
                            .filter(|c| c.body.number == state)
                            .map(|c| c.proposer),
                    )
                    .next()
            });
            if proposer.is_some() && proposer != side {
                return Ok(());
            }
        }
        let body = self.body(&channel, state).ok_or_else(|| {
            format!(
                "{} sent {} for state {state} of a channel whose persisted snapshot does not \
                 hold that state (persist before send)",
                self.name,
                msg.name()
            )
        })?;
        self.check_nonce(r, body_identity(&channel, &body))?;
        if signs {
            self.publish(channel, body);
        }
        Ok(())
    }

    /// A payment message the node is sending: the nonces of what it signs itself.
    fn note_payment_message(
        &mut self,
        me: &PublicKey,
        msg: &PaymentMessage,
    ) -> Result<(), Violation> {
        match msg {
            PaymentMessage::Offer(o) | PaymentMessage::ReceiveOffer(o) if &o.lsp == me => self
                .check_nonce(
                    o.signature.nonce().to_xonly_bytes(),
                    format!("offer {}", hex::encode(o.terms.digest())),
                ),
            PaymentMessage::Invoice(i) if &i.payee == me => self.check_nonce(
                i.signature.nonce().to_xonly_bytes(),
                format!("invoice {}", hex::encode(i.terms.digest())),
            ),
            _ => Ok(()),
        }
    }
}

/// A published transaction.
#[derive(Clone, Debug)]
pub struct Published {
    pub tx: Transaction,
    pub confirmed_at: Option<u32>,
    /// Who published it.
    pub by: usize,
}

/// One adversarial operation (a step).
#[derive(Clone, Debug)]
pub enum Op {
    /// Deliver the oldest held frame.
    Deliver,
    /// Deliver every held frame in order, and what they bring about (a cooperative stretch).
    DeliverAll,
    /// Deliver a held frame out of order.
    DeliverAt(u8),
    /// Deliver the oldest held frame and keep it held (it arrives again later).
    Duplicate,
    /// Drop the oldest held frame.
    Drop,
    /// Deliver again a frame the adversary sent before.
    Replay(u16),
    /// A link between the adversary and an honest node drops and comes back.
    Reconnect(u8),
    /// `Reestablish` with a made-up next state, picked around the honest node's own.
    LieReestablish { link: u8, lie: u8 },
    /// `Reestablish` with exactly this next state.
    Reestablish { link: u8, next_state: u64 },
    /// Propose `Revert` on a link: with the adversary's real channel if it can, else made up.
    ProposeRevert { link: u8, lie: u8 },
    /// The adversary's last proposal on a link again, with another nonce.
    NewNonce(u8),
    /// The adversary's last proposal on a link for the next state number, with another nonce.
    ShiftedProposal(u8),
    /// A payment message from the adversary.
    PaymentMessage { link: u8, kind: u8, pick: u8 },
    /// The adversary's parties act as the protocol lets them (pay, cancel, fetch letters).
    AdversaryActs(u8),
    /// The honest user acts (pay, cancel, fetch letters).
    HonestActs(u8),
    /// One of the adversary's parties goes back to an older snapshot of a channel.
    Rollback { link: u8, pick: u16 },
    /// The adversary publishes a state it holds.
    Publish {
        link: u8,
        pick: u16,
        confirmed: bool,
    },
    /// Blocks arrive: a few, or (for 248 and above) sixty.
    Mine(u8),
    /// The honest node's last broadcast confirms.
    ConfirmHonest,
    /// The honest node crashes after this many persists (0: now) and restarts from its store.
    Crash(u8),
    /// The honest node is restored from an old backup (its whole store as it was a number of
    /// persists ago) and restarts: it must still never reuse a nonce.
    RestoreOldBackup(u16),
}

/// A link: an honest node's channel with one of the adversary's parties.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    pub honest: usize,
    pub adversary: usize,
    pub channel: ChannelId,
}

/// The network: honest nodes, the adversary's nodes, the wire, the chain.
pub struct World {
    pub nodes: Vec<Node>,
    pub height: u32,
    /// Frames from the adversary's nodes to honest nodes, held for the adversary's decision.
    pub held: VecDeque<Frame>,
    /// Every frame the adversary's nodes addressed to an honest node (replay material).
    pub sent_to_honest: Vec<Frame>,
    /// Frames delivered in order: between honest nodes, to the adversary's nodes, and among
    /// the adversary's nodes.
    pub wire: VecDeque<Frame>,
    pub watchers: BTreeMap<usize, Watcher>,
    /// Signature scalars the adversary learned legitimately.
    pub adversary_knows: BTreeSet<[u8; 32]>,
    /// What was published on chain, in order.
    pub chain: Vec<Published>,
    /// Updates the adversary published, by channel (one each: a second would conflict).
    /// (each on top of the one before, with a higher state number: eltoo lets any later
    /// update spend an earlier one's output).
    pub adversary_published: BTreeMap<ChannelId, Vec<Transaction>>,
    /// Since which height an honest node owes an answer to a stale state (it holds a newer
    /// one and has not published it): it must have answered once a block has passed.
    pub answer_due: BTreeMap<(usize, ChannelId), u32>,
    pub links: Vec<Link>,
    pub steps: u64,
    pub transcript: Vec<String>,
    next_id: u8,
    nonce_counter: u64,
}

/// The amounts payments use.
const AMOUNTS: [u64; 4] = [50_000, 1_000, 123_456, 20_000];

/// Why the world's driver stopped an input.
#[derive(Debug)]
pub enum Halt {
    /// The core refused the input (or a follow-up): logged, as a driver logs it.
    Refused(NodeError),
    /// The node crashed at its persist point.
    Crashed,
    /// An invariant broke (the violation is in [`WorldIo::violation`]).
    Violation,
}

impl From<NodeError> for Halt {
    fn from(e: NodeError) -> Self {
        Halt::Refused(e)
    }
}

/// The world as one node's [`Io`]: the node's core is out of the world while it runs.
struct WorldIo<'a> {
    world: &'a mut World,
    node: usize,
    violation: Option<Violation>,
}

impl WorldIo<'_> {
    fn check(&mut self, result: Result<(), Violation>) -> Result<(), Halt> {
        result.map_err(|v| {
            self.violation = Some(v);
            Halt::Violation
        })
    }

    fn honest(&self) -> bool {
        self.world.nodes[self.node].honest
    }
}

impl Io for WorldIo<'_> {
    type Error = Halt;

    fn persist(&mut self, changes: &ChangeSet, _core: &NodeCore) -> Result<(), Halt> {
        let node = self.node;
        if self.honest() {
            let w = self
                .world
                .watchers
                .get_mut(&node)
                .expect("honest nodes are watched");
            for (_, snapshot) in changes.channels.values() {
                w.note_snapshot(snapshot);
            }
        }
        let n = &mut self.world.nodes[node];
        for (id, (peer, snapshot)) in &changes.channels {
            n.history.push((*peer, (**snapshot).clone()));
            n.channels.insert(*id, (*peer, (**snapshot).clone()));
        }
        for (id, record) in &changes.payments {
            n.payments.insert(
                *id,
                serde_json::to_value(record).expect("records serialise"),
            );
        }
        for (id, record) in &changes.reverse {
            n.reverse.insert(
                *id,
                serde_json::to_value(record).expect("records serialise"),
            );
        }
        if self.world.persisted(node) {
            return Err(Halt::Crashed);
        }
        Ok(())
    }

    fn before(&mut self, action: &NodeOutput) -> Result<(), Halt> {
        if self.honest() {
            let observed = self.world.observe(self.node, action);
            self.check(observed)?;
        }
        Ok(())
    }

    fn send(&mut self, to: PublicKey, frame: Vec<u8>, _what: &'static str) -> bool {
        let Some(to) = self.world.index_of(&to) else {
            let name = self.world.nodes[self.node].name;
            self.violation = Some(format!("{name} sent to an unknown node"));
            return false;
        };
        self.world.send(Frame {
            from: self.node,
            to,
            bytes: frame,
        });
        true
    }

    async fn post_letter(
        &mut self,
        payment_id: PaymentId,
        payee: PublicKey,
        bytes: Vec<u8>,
    ) -> Result<(), Halt> {
        if let Some(to) = self.world.index_of(&payee) {
            self.world.nodes[to].mailbox.push(bytes);
        }
        let name = self.world.nodes[self.node].name;
        self.world
            .transcript
            .push(format!("{name} posted the letter of {payment_id}"));
        Ok(())
    }

    async fn post_reverse(
        &mut self,
        to: PublicKey,
        bytes: Vec<u8>,
        _contact: Option<serde_json::Value>,
    ) -> Result<(), Halt> {
        if let Some(to) = self.world.index_of(&to) {
            self.world.nodes[to].mailbox.push(bytes);
        }
        Ok(())
    }

    async fn broadcast(&mut self, tx: Transaction) {
        // What the adversary's parties would publish goes nowhere: the adversary publishes
        // what it chooses (`Op::Publish`).
        if !self.honest() {
            return;
        }
        // Published again (a retry): the chain holds it once.
        let txid = tx.compute_txid();
        if !self.world.chain.iter().any(|p| p.tx.compute_txid() == txid) {
            self.world.chain.push(Published {
                tx,
                confirmed_at: None,
                by: self.node,
            });
        }
    }

    fn watch(&mut self, _outpoint: OutPoint) {}

    async fn build_funding(
        &mut self,
        channel_id: ChannelId,
        _script_pubkey: bitcoin::ScriptBuf,
        _capacity_sat: u64,
    ) -> Result<OutPoint, Halt> {
        Ok(fake_outpoint(&channel_id))
    }

    async fn publish_funding(&mut self, _channel_id: ChannelId) -> Result<(), Halt> {
        Ok(())
    }

    fn report(&mut self, event: NodeOutput) {
        if let NodeOutput::Refused { error, .. } = event {
            let name = self.world.nodes[self.node].name;
            self.world.transcript.push(format!("{name}: {error}"));
        }
    }
}

impl World {
    fn new(nodes: Vec<Node>) -> Self {
        let mut world = World {
            nodes,
            height: HEIGHT,
            held: VecDeque::new(),
            sent_to_honest: vec![],
            wire: VecDeque::new(),
            watchers: BTreeMap::new(),
            adversary_knows: BTreeSet::new(),
            chain: vec![],
            adversary_published: BTreeMap::new(),
            answer_due: BTreeMap::new(),
            links: vec![],
            steps: 0,
            transcript: vec![],
            next_id: 1,
            nonce_counter: 0,
        };
        for i in 0..world.nodes.len() {
            if world.nodes[i].honest {
                world.watchers.insert(
                    i,
                    Watcher {
                        name: world.nodes[i].name,
                        ..Watcher::default()
                    },
                );
            }
            world.nodes[i].start(HEIGHT).expect("empty nodes start");
        }
        world
    }

    pub fn index(&self, name: &str) -> usize {
        (0..self.nodes.len())
            .find(|&i| self.nodes[i].name == name)
            .expect("node exists")
    }

    pub fn key(&self, node: usize) -> PublicKey {
        self.nodes[node].key()
    }

    fn index_of(&self, key: &PublicKey) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| self.key(i) == *key)
    }

    fn honest(&self) -> Vec<usize> {
        self.watchers.keys().copied().collect()
    }

    // ---- scenarios ----

    /// An honest payer A against a byzantine LSP S and payee B.
    pub fn payer_vs_byzantine_lsp() -> Self {
        let mut w = World::new(vec![
            Node::new("A", 0xa1, Role::Payer, true),
            Node::new("S", 0x51, Role::Lsp, false),
            Node::new("B", 0xb1, Role::Payee, false),
        ]);
        w.open(0, 1, 1_000_000, PAYER_DELAY);
        w.open(1, 2, 400_000, 6);
        w.begin();
        w
    }

    /// An honest LSP S against a byzantine payer A; the payee B is byzantine too, or honest.
    pub fn lsp_vs_byzantine_payer(honest_payee: bool) -> Self {
        let mut w = World::new(vec![
            Node::new("A", 0xa1, Role::Payer, false),
            Node::new("S", 0x51, Role::Lsp, true),
            Node::new("B", 0xb1, Role::Payee, honest_payee),
        ]);
        w.open(0, 1, 1_000_000, PAYER_DELAY);
        w.open(1, 2, 400_000, 6);
        w.begin();
        w
    }

    /// An honest payee B against a byzantine LSP S (and payer A).
    pub fn payee_vs_byzantine_lsp() -> Self {
        let mut w = World::new(vec![
            Node::new("A", 0xa1, Role::Payer, false),
            Node::new("S", 0x51, Role::Lsp, false),
            Node::new("B", 0xb1, Role::Payee, true),
        ]);
        w.open(0, 1, 1_000_000, PAYER_DELAY);
        w.open(1, 2, 400_000, 6);
        w.begin();
        w
    }

    /// An honest router P between a byzantine LSP S and payee B (and payer A).
    pub fn router_vs_byzantine_neighbours() -> Self {
        let mut w = World::new(vec![
            Node::new("A", 0xa1, Role::Payer, false),
            Node::new("S", 0x51, Role::Lsp, false),
            Node::new("B", 0xb1, Role::Payee, false),
            Node::new("P", 0x9e, Role::Router, true),
        ]);
        w.open(0, 1, 1_000_000, PAYER_DELAY);
        w.open(1, 3, 400_000, 6);
        w.open(3, 2, 400_000, 6);
        w.begin();
        w
    }

    /// Opens a funded channel faithfully (every held frame is delivered).
    fn open(&mut self, opener: usize, acceptor: usize, capacity_sat: u64, shared_delay: u16) {
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
        )
        .expect("open");
        self.settle().expect("open settles");
        let txid = fake_outpoint(&channel_id).txid;
        for node in [opener, acceptor] {
            let height = self.height;
            self.input(node, NodeInput::Confirmed { txid, height })
                .expect("funding confirms");
        }
        self.settle().expect("funding settles");
        for node in [opener, acceptor] {
            let phase = self.nodes[node]
                .channels
                .get(&channel_id)
                .map(|(_, s)| s.phase());
            assert_eq!(
                phase,
                Some(Phase::Funded),
                "{} after the open",
                self.nodes[node].name
            );
        }
        for (honest, adversary) in [(opener, acceptor), (acceptor, opener)] {
            if self.nodes[honest].honest && !self.nodes[adversary].honest {
                self.links.push(Link {
                    honest,
                    adversary,
                    channel: channel_id,
                });
            }
        }
    }

    /// The adversary starts: every honest node's wealth is its floor.
    fn begin(&mut self) {
        for h in self.honest() {
            let wealth = self.wealth(h);
            self.watchers.get_mut(&h).expect("honest").floor = Some(wealth);
        }
        self.transcript
            .push("-- the adversary starts --".to_owned());
    }

    // ---- running nodes ----

    /// Feeds one input to a running node and carries out its outputs. A refused input is
    /// recorded, as a driver logs it; only a broken invariant is an error.
    pub fn input(&mut self, node: usize, input: NodeInput) -> Result<(), Violation> {
        let Some(core) = self.nodes[node].core.take() else {
            return Ok(());
        };
        let what = describe_input(&input);
        // The node runs on the one driver, over an Io that is this world: its store, the
        // wire the adversary controls, the chain, and the watchers that check every action
        // of an honest node before it is carried out.
        let mut driver = Driver::new(
            core,
            WorldIo {
                world: self,
                node,
                violation: None,
            },
        );
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let result = ready(driver.handle(input));
            (result, driver)
        }));
        let (result, driver) = match handled {
            Ok(handled) => handled,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                if self.nodes[node].honest {
                    return Err(format!(
                        "the honest node {} panicked on {what}: {message} (counterparty \
                         input must never panic)",
                        self.nodes[node].name
                    ));
                }
                // One of the adversary's parties broke itself: it restarts from its store.
                self.transcript.push(format!(
                    "{} (adversary) panicked: {message}",
                    self.nodes[node].name
                ));
                return self.nodes[node].start(self.height);
            }
        };
        let Driver { core, io } = driver;
        if let Some(violation) = io.violation {
            return Err(violation);
        }
        match result {
            Ok(()) => self.nodes[node].core = Some(core),
            Err(Halt::Crashed) => {}
            Err(Halt::Violation) => unreachable!("a violation is kept in the io"),
            Err(Halt::Refused(e)) => {
                self.nodes[node].core = Some(core);
                self.transcript
                    .push(format!("{} refused: {e}", self.nodes[node].name));
            }
        }
        Ok(())
    }

    /// What an honest node's output tells the watcher; invariants 1 and 4 are checked here,
    /// before the output is carried out.
    fn observe(&mut self, node: usize, output: &NodeOutput) -> Result<(), Violation> {
        let me = self.key(node);
        // A held sale's share leaves the payer only in the letter to the payee (a mailbox
        // post, not a frame): with the payee's receipt signature it is the sold scalar.
        let shares: Vec<[u8; 32]> = self.nodes[node]
            .core
            .as_ref()
            .and_then(|c| c.payer())
            .map(|p| {
                p.payments()
                    .filter_map(|(_, r)| r.hold.as_ref().map(|h| h.share.0))
                    .collect()
            })
            .unwrap_or_default();
        let bytes = match output {
            NodeOutput::Send { frame, .. } => Some(frame.clone()),
            NodeOutput::Broadcast(tx) => Some(bitcoin::consensus::encode::serialize(tx)),
            NodeOutput::Refused { error, .. } => Some(error.as_bytes().to_vec()),
            _ => None,
        };
        if let Some(bytes) = bytes {
            if shares
                .iter()
                .any(|a| contains(&bytes, a) || contains(&bytes, hex::encode(a).as_bytes()))
            {
                return Err(format!(
                    "invariant 1 broken: {} sent a held sale's share outside its letter",
                    self.nodes[node].name
                ));
            }
        }
        let w = self
            .watchers
            .get_mut(&node)
            .expect("honest nodes are watched");
        match output {
            NodeOutput::Send {
                frame, what, to, ..
            } => {
                // The reverse variant's sale: the node fulfils a PTLC the peer offered it in a
                // complete state with its own withheld scalar. That is what was paid for.
                if let Some(s) = sold_scalar(w, frame) {
                    self.adversary_knows.insert(s);
                }
                let paid: Vec<[u8; 32]> = w
                    .withheld
                    .keys()
                    .filter(|s| w.paid_for(s) && contains(frame, *s))
                    .copied()
                    .collect();
                self.adversary_knows.extend(paid);
                w.check_withheld_kept(frame, &format!("a {what} frame"), &self.adversary_knows)?;
                // A withheld scalar that left (sold, or known to the adversary anyway): the
                // adversary can complete and publish its state.
                let gone: Vec<[u8; 32]> = w
                    .withheld
                    .keys()
                    .filter(|s| contains(frame, *s) || contains(frame, hex::encode(s).as_bytes()))
                    .copied()
                    .collect();
                for s in gone {
                    if let (Some((channel, _)), Some(body)) = (
                        w.withheld.get(&s).copied(),
                        w.withheld_bodies.get(&s).cloned(),
                    ) {
                        w.publish(channel, body);
                    }
                }
                match PeerMessage::decode(frame) {
                    Ok(Decoded::Message(PeerMessage::Channel(msg))) => {
                        w.note_channel_message(&msg)?;
                    }
                    Ok(Decoded::Message(PeerMessage::Payment(msg))) => {
                        w.note_payment_message(&me, &msg)?;
                    }
                    _ => {}
                }
                // What an honest node sends the adversary, the adversary knows (an honest
                // payee selling the payer's scalar, say).
                let to_adversary = self.index_of(to).is_some_and(|i| !self.nodes[i].honest);
                if to_adversary {
                    let scalars: Vec<[u8; 32]> = self
                        .watchers
                        .values()
                        .flat_map(|w| w.withheld.keys().copied())
                        .filter(|s| {
                            contains(frame, s) || contains(frame, hex::encode(s).as_bytes())
                        })
                        .collect();
                    self.adversary_knows.extend(scalars);
                }
            }
            NodeOutput::Broadcast(tx) => {
                let bytes = bitcoin::consensus::encode::serialize(tx);
                w.check_withheld_kept(&bytes, "a broadcast transaction", &self.adversary_knows)?;
            }
            NodeOutput::PostReverse { bytes, .. } => {
                w.check_withheld_kept(bytes, "a reverse letter", &self.adversary_knows)?;
            }
            NodeOutput::Refused { error, .. } => {
                w.check_withheld_kept(error.as_bytes(), "a refusal", &self.adversary_knows)?;
            }
            NodeOutput::PostLetter {
                payment_id, letter, ..
            } => {
                // The one way a withheld signature may leave: the letter to the payee. The
                // payer has consented to the state it completes.
                let offer = &letter.offer;
                w.consented
                    .insert(*payment_id, offer.amount_sat.saturating_add(offer.fee_sat));
                // A held sale's letter carries a share, not a signature: its state is
                // complete already.
                if let ForSale::Presignature(presignature) = &letter.sold {
                    let body = w.body(&offer.channel_id, offer.state).ok_or_else(|| {
                        format!(
                            "{} posted a letter for state {} it does not hold",
                            w.name, offer.state
                        )
                    })?;
                    w.check_nonce(
                        presignature.nonce().to_xonly_bytes(),
                        body_identity(&offer.channel_id, &body),
                    )?;
                    w.publish(offer.channel_id, body);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Counts a persist of `node`; returns whether the node crashes at it.
    fn persisted(&mut self, node: usize) -> bool {
        let n = &mut self.nodes[node];
        if n.honest {
            n.backups.push(Backup {
                channels: n.channels.clone(),
                payments: n.payments.clone(),
                reverse: n.reverse.clone(),
            });
        }
        if let Some(left) = n.crash_after.as_mut() {
            if *left == 0 {
                n.crash_after = None;
                n.core = None;
                self.transcript.push(format!("{} crashed", n.name));
                return true;
            }
            *left -= 1;
        }
        false
    }

    fn send(&mut self, frame: Frame) {
        let (from_honest, to_honest) = (self.nodes[frame.from].honest, self.nodes[frame.to].honest);
        if !from_honest && to_honest {
            self.sent_to_honest.push(frame.clone());
            self.held.push_back(frame);
        } else {
            self.wire.push_back(frame);
        }
    }

    /// Delivers one frame to its recipient (if it is running).
    fn deliver(&mut self, frame: Frame) -> Result<(), Violation> {
        if self.nodes[frame.to].core.is_none() {
            return Ok(());
        }
        self.transcript.push(frame.describe(&self.nodes));
        if let Some(w) = self.watchers.get_mut(&frame.to) {
            learn_points(w, &frame.bytes);
        }
        let from = self.key(frame.from);
        self.input(
            frame.to,
            NodeInput::Frame {
                from,
                frame: frame.bytes,
            },
        )
    }

    /// Delivers the wire until it is empty.
    fn pump(&mut self) -> Result<(), Violation> {
        for _ in 0..100_000 {
            let Some(frame) = self.wire.pop_front() else {
                return Ok(());
            };
            self.deliver(frame)?;
        }
        Err("the wire did not settle".to_owned())
    }

    /// Delivers everything, held frames included, in order, until nothing moves.
    pub fn settle(&mut self) -> Result<(), Violation> {
        for _ in 0..1_000 {
            self.pump()?;
            let Some(frame) = self.held.pop_front() else {
                return Ok(());
            };
            self.deliver(frame)?;
        }
        Err("the network did not settle".to_owned())
    }

    /// Both ends of a connection learn of it.
    pub fn connect(&mut self, x: usize, y: usize) -> Result<(), Violation> {
        let (kx, ky) = (self.key(x), self.key(y));
        self.input(x, NodeInput::Connected { peer: ky })?;
        self.input(y, NodeInput::Connected { peer: kx })?;
        Ok(())
    }

    /// Starts a stopped node from its store, re-watches the chain and reconnects it.
    fn restart(&mut self, node: usize) -> Result<(), Violation> {
        self.nodes[node].start(self.height)?;
        if let Some(w) = self.watchers.get_mut(&node) {
            w.view = self.nodes[node]
                .channels
                .values()
                .map(|(_, s)| (s.channel_id, s.clone()))
                .collect();
        }
        self.transcript.push(format!(
            "{} restarted from its store",
            self.nodes[node].name
        ));
        self.input(node, NodeInput::Started)?;
        // A restarted driver hands the channels every spend of what they watch again.
        for p in self.chain.clone() {
            self.input(
                node,
                NodeInput::Spend {
                    tx: p.tx,
                    confirmed_at: p.confirmed_at,
                },
            )?;
        }
        for other in 0..self.nodes.len() {
            if other != node && self.nodes[other].core.is_some() {
                self.connect(node, other)?;
            }
        }
        Ok(())
    }

    // ---- the adversary's and the users' moves ----

    fn link(&self, pick: u8) -> Link {
        self.links[usize::from(pick) % self.links.len()]
    }

    fn honest_snapshot(&self, link: &Link) -> Option<&Snapshot> {
        self.nodes[link.honest]
            .core
            .as_ref()?
            .channels()
            .get(&link.channel)
            .map(|e| e.channel.snapshot())
    }

    /// A fresh public nonce nobody can sign with (the adversary makes it up).
    fn made_up_nonce(&mut self) -> PublicNonce {
        loop {
            self.nonce_counter += 1;
            let bytes = tagged_hash(
                "harness/made-up-nonce",
                &[&self.nonce_counter.to_be_bytes()],
            );
            if let Ok(key) = SecretKey::from_bytes(bytes) {
                let x = key.public_key().to_xonly_bytes();
                return PublicNonce::from_xonly_bytes(x);
            }
        }
    }

    /// Sends a frame from the adversary straight to an honest node (not held).
    fn forge(&mut self, from: usize, to: usize, bytes: Vec<u8>) -> Result<(), Violation> {
        let frame = Frame { from, to, bytes };
        self.sent_to_honest.push(frame.clone());
        self.deliver(frame)
    }

    /// Runs a channel command on the adversary's own channel, outside its core (which has
    /// no such command): the channel restored from the party's store with its real keys.
    /// The party's core restarts from the new snapshot. Returns whether the channel took it.
    fn adversary_channel_command(
        &mut self,
        party: usize,
        channel: ChannelId,
        command: Command,
    ) -> Result<bool, Violation> {
        let Some((peer, snap)) = self.nodes[party].channels.get(&channel).cloned() else {
            return Ok(false);
        };
        let mut ch = Channel::restore(channel_secrets(&self.nodes[party].seed, &channel), snap)
            .map_err(|e| format!("the adversary's channel does not restore: {e}"))?;
        let Ok(actions) = ch.handle(Input::Command(command)) else {
            return Ok(false);
        };
        let to = self.index_of(&peer).expect("peer exists");
        let mut sends = vec![];
        for action in actions {
            match action {
                Action::Persist(s) => {
                    let n = &mut self.nodes[party];
                    n.history.push((peer, (*s).clone()));
                    n.channels.insert(channel, (peer, *s));
                }
                Action::Send(msg) => sends.push(channel_frame(&msg)),
                _ => {}
            }
        }
        self.nodes[party].start(self.height)?;
        for bytes in sends {
            self.send(Frame {
                from: party,
                to,
                bytes,
            });
        }
        Ok(true)
    }

    /// Applies one operation and checks every honest node's invariants.
    pub fn step(&mut self, op: &Op) -> Result<(), Violation> {
        self.steps += 1;
        self.transcript
            .push(format!("== step {}: {op:?}", self.steps));
        self.apply(op)?;
        self.pump()?;
        // A crashed honest node restarts from its store at once (and again, if a pending
        // crash point hits while it restarts).
        for _ in 0..8 {
            let down: Vec<usize> = self
                .honest()
                .into_iter()
                .filter(|&h| self.nodes[h].core.is_none())
                .collect();
            if down.is_empty() {
                break;
            }
            for h in down {
                self.restart(h)?;
                self.pump()?;
            }
        }
        self.check()
    }

    fn apply(&mut self, op: &Op) -> Result<(), Violation> {
        match *op {
            Op::Deliver => {
                if let Some(f) = self.held.pop_front() {
                    self.deliver(f)?;
                }
            }
            Op::DeliverAll => {
                for _ in 0..64 {
                    self.pump()?;
                    let Some(f) = self.held.pop_front() else {
                        break;
                    };
                    self.deliver(f)?;
                }
            }
            Op::DeliverAt(i) => {
                if !self.held.is_empty() {
                    let i = usize::from(i) % self.held.len();
                    let f = self.held.remove(i).expect("in range");
                    self.deliver(f)?;
                }
            }
            Op::Duplicate => {
                if let Some(f) = self.held.front().cloned() {
                    self.deliver(f)?;
                }
            }
            Op::Drop => {
                if let Some(f) = self.held.pop_front() {
                    self.transcript
                        .push(format!("dropped {}", f.describe(&self.nodes)));
                }
            }
            Op::Replay(i) => {
                if !self.sent_to_honest.is_empty() {
                    let i = usize::from(i) % self.sent_to_honest.len();
                    let f = self.sent_to_honest[i].clone();
                    self.deliver(f)?;
                }
            }
            Op::Reconnect(l) => {
                if !self.links.is_empty() {
                    let link = self.link(l);
                    self.connect(link.honest, link.adversary)?;
                }
            }
            Op::LieReestablish { link, lie } => {
                if self.links.is_empty() {
                    return Ok(());
                }
                let link = self.link(link);
                let Some(snap) = self.honest_snapshot(&link) else {
                    return Ok(());
                };
                let next = snap.complete.as_ref().map_or(0, |c| c.body.number + 1);
                let pending = snap.pending().map_or(next, |p| p.body.number);
                let candidates = [
                    next,
                    next + 1,
                    next + 2,
                    pending + 1,
                    pending + 2,
                    next.saturating_sub(1),
                    next + 3,
                    0,
                    u64::MAX,
                    u64::from(lie),
                ];
                let next_state = candidates[usize::from(lie) % candidates.len()];
                let msg = Message::Reestablish(ReestablishMsg {
                    channel_id: link.channel,
                    next_state,
                });
                self.forge(link.adversary, link.honest, channel_frame(&msg))?;
            }
            Op::Reestablish { link, next_state } => {
                if self.links.is_empty() {
                    return Ok(());
                }
                let link = self.link(link);
                let msg = Message::Reestablish(ReestablishMsg {
                    channel_id: link.channel,
                    next_state,
                });
                self.forge(link.adversary, link.honest, channel_frame(&msg))?;
            }
            Op::ProposeRevert { link, lie } => {
                if self.links.is_empty() {
                    return Ok(());
                }
                let link = self.link(link);
                // The adversary's real channel first: a revert it can complete.
                if lie % 2 == 0
                    && self.adversary_channel_command(
                        link.adversary,
                        link.channel,
                        Command::Revert,
                    )?
                {
                    if let Some(f) = self.held.pop_back() {
                        self.deliver(f)?;
                    }
                    return Ok(());
                }
                let Some(snap) = self.honest_snapshot(&link) else {
                    return Ok(());
                };
                let next = snap.complete.as_ref().map_or(0, |c| c.body.number + 1);
                let pending = snap.pending().map_or(next, |p| p.body.number);
                let abandoned =
                    [pending, next, pending + 1, next.saturating_sub(1)][usize::from(lie / 2) % 4];
                let nonce = self.made_up_nonce();
                let msg = Message::Propose(ProposeUpdate {
                    channel_id: link.channel,
                    state: abandoned + 1,
                    change: Change::Revert { abandoned },
                    nonce,
                });
                self.forge(link.adversary, link.honest, channel_frame(&msg))?;
            }
            Op::NewNonce(l) | Op::ShiftedProposal(l) => {
                if self.links.is_empty() {
                    return Ok(());
                }
                let shift = u64::from(matches!(op, Op::ShiftedProposal(_)));
                let link = self.link(l);
                let last = self.sent_to_honest.iter().rev().find_map(|f| {
                    if f.from != link.adversary || f.to != link.honest {
                        return None;
                    }
                    match channel_message(&f.bytes) {
                        Some(Message::Propose(m)) if m.channel_id == link.channel => Some(m),
                        _ => None,
                    }
                });
                if let Some(mut m) = last {
                    m.nonce = self.made_up_nonce();
                    m.state += shift;
                    self.forge(
                        link.adversary,
                        link.honest,
                        channel_frame(&Message::Propose(m)),
                    )?;
                }
            }
            Op::PaymentMessage { link, kind, pick } => self.payment_message(link, kind, pick)?,
            Op::AdversaryActs(k) => self.adversary_acts(k)?,
            Op::HonestActs(k) => self.honest_acts(k)?,
            Op::Rollback { link, pick } => {
                if self.links.is_empty() {
                    return Ok(());
                }
                let link = self.link(link);
                let older: Vec<(PublicKey, Snapshot)> = self.nodes[link.adversary]
                    .history
                    .iter()
                    .filter(|(_, s)| s.channel_id == link.channel)
                    .cloned()
                    .collect();
                if older.is_empty() {
                    return Ok(());
                }
                let (peer, snap) = older[usize::from(pick) % older.len()].clone();
                let n = &mut self.nodes[link.adversary];
                n.channels.insert(link.channel, (peer, snap));
                n.start(self.height)?;
                self.connect(link.honest, link.adversary)?;
            }
            Op::Publish {
                link,
                pick,
                confirmed,
            } => {
                if self.links.is_empty() {
                    return Ok(());
                }
                let link = self.link(link);
                // Rarer than the other moves: a published state ends the channel's updates
                // for the rest of the run.
                if pick % 3 != 0 {
                    return Ok(());
                }
                // A later publication goes on top of the adversary's last one, with a higher
                // state (a lower one could not spend it).
                let below = self
                    .adversary_published
                    .get(&link.channel)
                    .and_then(|v| v.last())
                    .map(|tx| (update_state(tx), tx.compute_txid()));
                // An output a confirmed transaction already spends (the honest party's answer)
                // cannot be spent again: no valid publication on top of it.
                if let Some((_, txid)) = below {
                    let out = OutPoint { txid, vout: 0 };
                    let spent = self.chain.iter().any(|p| {
                        p.confirmed_at.is_some()
                            && p.tx.input.iter().any(|i| i.previous_output == out)
                    });
                    if spent {
                        return Ok(());
                    }
                }
                let states: Vec<(PublicKey, Snapshot)> = self.nodes[link.adversary]
                    .history
                    .iter()
                    .chain(self.nodes[link.adversary].channels.values())
                    .filter(|(_, s)| {
                        s.channel_id == link.channel
                            && s.complete.as_ref().is_some_and(|c| {
                                below.is_none_or(|(m, _)| {
                                    c.body.number > m && s.settlement_leaf_hashes.contains_key(&m)
                                })
                            })
                    })
                    .cloned()
                    .collect();
                if states.is_empty() {
                    return Ok(());
                }
                let (peer, mut snap) = states[usize::from(pick / 3) % states.len()].clone();
                // Open with nothing under way, or with the older state `below` on chain (the
                // one this state's update spends).
                snap.stage = match below {
                    None => Stage::Open { pending: None },
                    Some((m, txid)) => Stage::ForceClosing {
                        pending: None,
                        close: None,
                        on_chain: Some(
                            serde_json::from_value(serde_json::json!({
                                "state": m,
                                "outpoint": OutPoint { txid, vout: 0 },
                                "confirmed_at": null,
                                "settlement_broadcast": false,
                                "settlement_txid": null,
                                "resolved_ptlcs": [],
                            }))
                            .map_err(|e| format!("harness: on-chain record: {e}"))?,
                        ),
                    },
                };
                let seed = self.nodes[link.adversary].seed;
                let mut core = NodeCore::restore(
                    seed,
                    self.height,
                    vec![(peer, snap)],
                    Records::Payer(vec![]),
                )
                .map_err(|e| format!("the adversary's old state does not restore: {e}"))?;
                let outputs = core
                    .handle(NodeInput::Command(NodeCommand::ForceClose {
                        channel_id: link.channel,
                    }))
                    .map_err(|e| format!("the adversary cannot publish its state: {e}"))?;
                let Some(tx) = outputs.actions.into_iter().find_map(|o| match o {
                    NodeOutput::Broadcast(tx) => Some(tx),
                    _ => None,
                }) else {
                    return Ok(());
                };
                let confirmed_at = confirmed.then_some(self.height);
                self.transcript.push(format!(
                    "{} published the update of state {} ({})",
                    self.nodes[link.adversary].name,
                    tx.lock_time
                        .to_consensus_u32()
                        .saturating_sub(asyncpay::tx::STATE_LOCKTIME_BASE),
                    if confirmed {
                        "confirmed"
                    } else {
                        "in the mempool"
                    }
                ));
                self.adversary_published
                    .entry(link.channel)
                    .or_default()
                    .push(tx.clone());
                self.on_chain(tx, confirmed_at, link.adversary)?;
            }
            Op::Mine(k) => {
                // Mostly a few blocks; now and then enough for offers and PTLCs to near
                // their expiry.
                let blocks = if k >= 248 { 60 } else { k % 8 + 1 };
                for _ in 0..blocks {
                    self.height += 1;
                    let height = self.height;
                    for node in 0..self.nodes.len() {
                        self.input(node, NodeInput::Block { height })?;
                    }
                }
            }
            Op::ConfirmHonest => {
                let last = self
                    .chain
                    .iter()
                    .rposition(|p| self.nodes[p.by].honest && p.confirmed_at.is_none());
                if let Some(i) = last {
                    let tx = self.chain[i].tx.clone();
                    let by = self.chain[i].by;
                    self.chain[i].confirmed_at = Some(self.height);
                    let height = self.height;
                    self.feed_spend(tx.clone(), Some(height))?;
                    self.transcript.push(format!(
                        "{}'s {} confirmed",
                        self.nodes[by].name,
                        tx.compute_txid()
                    ));
                }
            }
            Op::RestoreOldBackup(pick) => {
                let honest = self.honest();
                let h = honest[usize::from(pick) % honest.len()];
                let n = &mut self.nodes[h];
                if n.backups.is_empty() {
                    return Ok(());
                }
                // Counted back from the newest: 0 is the store as it is.
                let back = usize::from(pick) % n.backups.len();
                let backup = n.backups[n.backups.len() - 1 - back].clone();
                self.transcript.push(format!(
                    "{} restored from the backup of {back} persists ago",
                    n.name
                ));
                n.channels = backup.channels;
                n.payments = backup.payments;
                n.reverse = backup.reverse;
                n.core = None;
                self.watchers
                    .get_mut(&h)
                    .expect("honest")
                    .restored_old_backup = true;
            }
            Op::Crash(k) => {
                let honest = self.honest();
                let h = honest[usize::from(k) % honest.len()];
                if k < 64 {
                    self.nodes[h].core = None;
                    self.transcript
                        .push(format!("{} crashed", self.nodes[h].name));
                } else {
                    self.nodes[h].crash_after = Some(usize::from(k % 4));
                }
            }
        }
        Ok(())
    }

    /// A transaction appears on chain: every running node hears of it.
    fn on_chain(
        &mut self,
        tx: Transaction,
        confirmed_at: Option<u32>,
        by: usize,
    ) -> Result<(), Violation> {
        self.chain.push(Published {
            tx: tx.clone(),
            confirmed_at,
            by,
        });
        self.feed_spend(tx, confirmed_at)
    }

    fn feed_spend(&mut self, tx: Transaction, confirmed_at: Option<u32>) -> Result<(), Violation> {
        for node in 0..self.nodes.len() {
            self.input(
                node,
                NodeInput::Spend {
                    tx: tx.clone(),
                    confirmed_at,
                },
            )?;
            if let Some(h) = confirmed_at {
                self.input(
                    node,
                    NodeInput::Confirmed {
                        txid: tx.compute_txid(),
                        height: h,
                    },
                )?;
            }
        }
        Ok(())
    }

    fn payment_message(&mut self, link: u8, kind: u8, pick: u8) -> Result<(), Violation> {
        if self.links.is_empty() {
            return Ok(());
        }
        let link = self.link(link);
        let (h, a) = (link.honest, link.adversary);
        let Some(core) = self.nodes[h].core.as_ref() else {
            return Ok(());
        };
        // Payment ids and offers the adversary may know of, from every party's records.
        let mut offers = vec![];
        if let Some(lsp) = core.lsp() {
            offers.extend(lsp.payments().map(|(_, p)| p.offer.clone()));
        }
        for n in &self.nodes {
            if let Some(lsp) = n.core.as_ref().and_then(|c| c.lsp()) {
                offers.extend(lsp.payments().map(|(_, p)| p.offer.clone()));
            }
        }
        let mut ids: Vec<PaymentId> = offers.iter().map(|o| o.payment_id).collect();
        for n in &self.nodes {
            ids.extend(n.payments.keys().copied());
        }
        if ids.is_empty() {
            return Ok(());
        }
        let payment_id = ids[usize::from(pick) % ids.len()];
        let offer = offers.iter().find(|o| o.payment_id == payment_id).cloned();
        let a_key = derive_key(&self.nodes[a].seed, "node-key", &[]);
        let msg = match kind % 10 {
            0 => PaymentMessage::Cancel { payment_id },
            1 => PaymentMessage::ReceiptAck { payment_id },
            2 => PaymentMessage::Cancelled {
                payment_id,
                outcome: [
                    CancelOutcome::Cancelled,
                    CancelOutcome::SaleInProgress,
                    CancelOutcome::Sold,
                    CancelOutcome::Expired,
                    CancelOutcome::Irrevocable,
                ][usize::from(pick) % 5],
            },
            3 => PaymentMessage::RequestRefused {
                payment_id,
                reason: "made_up".to_owned(),
            },
            4 => PaymentMessage::InvoiceRefused {
                payment_id,
                reason: "made_up".to_owned(),
            },
            // An invoice for the offer, signed by the adversary's party (valid when it is
            // the offer's payee).
            5 | 6 => {
                let Some(offer) = offer else { return Ok(()) };
                let terms = InvoiceTerms::for_offer(&offer, a_key.public_key(), None);
                PaymentMessage::Invoice(terms.sign(&a_key, &[kind; 32]))
            }
            // A receipt whose invoice the adversary's party signed, before any sale.
            7 => {
                let Some(offer) = offer else { return Ok(()) };
                let payee = self
                    .index_of(&offer.payee)
                    .filter(|&i| !self.nodes[i].honest)
                    .unwrap_or(a);
                let payee_key = derive_key(&self.nodes[payee].seed, "node-key", &[]);
                let invoice = InvoiceTerms::for_offer(&offer, payee_key.public_key(), None)
                    .sign(&payee_key, &[7; 32]);
                // Its scalar is made up too: it sells no point, and yields no proof of payment.
                PaymentMessage::Receipt(Receipt {
                    payment_id,
                    invoice,
                    scalar: RevealedSecret([kind; 32]),
                })
            }
            // A request for an offer on whatever the honest node's channel has pending, for
            // any payee and amount, with a fresh payment id or a known one.
            9 => {
                let Some(snap) = self.honest_snapshot(&link) else {
                    return Ok(());
                };
                let state = snap.pending().map_or(
                    snap.complete.as_ref().map_or(0, |c| c.body.number + 1),
                    |p| p.body.number,
                );
                let amount_sat = AMOUNTS[usize::from(pick) % AMOUNTS.len()];
                let payee = self.key(usize::from(pick / 4) % self.nodes.len());
                let payment_id = if pick % 2 == 0 {
                    PaymentId([pick ^ 0x5a; 32])
                } else {
                    payment_id
                };
                PaymentMessage::Request(PayRequest {
                    payment_id,
                    channel_id: link.channel,
                    state,
                    amount_sat,
                    fee_sat: policy().fee_for(amount_sat),
                    payee,
                    // Now and then naming a PTLC as a held sale's, which S must find in its
                    // latest state, offered by this payer, for amount plus fee.
                    held: (pick % 3 == 0).then_some(HeldPtlc {
                        id: u64::from(pick % 4),
                        expiry: u32::from(pick) * 7,
                    }),
                    // Now and then irrevocable, held or not: S offers an irrevocable offer
                    // only on a held sale.
                    irrevocable: pick % 5 == 0,
                })
            }
            // A forward asking a router to pay out more than it takes in.
            _ => {
                let Some(offer) = offer else { return Ok(()) };
                PaymentMessage::Forward(Forward {
                    payment_id,
                    point: offer.point,
                    amount_in_sat: offer.amount_sat,
                    amount_out_sat: offer.amount_sat + u64::from(pick) * 100,
                    expiry_out: self.height + 20,
                    next: offer.payee,
                })
            }
        };
        self.forge(a, h, payment_frame(&msg))
    }

    fn pay(&mut self, payer: usize, amount_pick: u8) -> Result<(), Violation> {
        let Some(lsp) = (0..self.nodes.len()).find(|&i| self.nodes[i].role == Role::Lsp) else {
            return Ok(());
        };
        let Some(payee) = (0..self.nodes.len()).find(|&i| self.nodes[i].role == Role::Payee) else {
            return Ok(());
        };
        let amount_sat = AMOUNTS[usize::from(amount_pick) % AMOUNTS.len()];
        let payment_id = PaymentId([0x70u8.wrapping_add(self.next_id); 32]);
        self.next_id = self.next_id.wrapping_add(1);
        self.nodes[payer].started_payments.push(payment_id);
        let receipts = receipt_card(&self.nodes[payee].seed);
        let (lsp, payee) = (self.key(lsp), self.key(payee));
        self.input(
            payer,
            NodeInput::Command(NodeCommand::Pay {
                payment_id,
                lsp,
                payee,
                amount_sat,
                fee_sat: policy().fee_for(amount_sat),
                note: "harness".into(),
                receipts,
                // Half the payments are held sales (a PTLC to the LSP each).
                hold_blocks: ((usize::from(amount_pick) / AMOUNTS.len()) % 2 == 1).then_some(400),
                // Half of those irrevocable: the payer's cancellation is refused until the
                // offer expires.
                irrevocable: (usize::from(amount_pick) / AMOUNTS.len()) % 4 == 3,
            }),
        )
    }

    /// The payee asks for a state paying it, to be bought by the payer (reverse variant).
    fn receive(&mut self, payee: usize, amount_pick: u8) -> Result<(), Violation> {
        let Some(lsp) = (0..self.nodes.len()).find(|&i| self.nodes[i].role == Role::Lsp) else {
            return Ok(());
        };
        let Some(payer) = (0..self.nodes.len()).find(|&i| self.nodes[i].role == Role::Payer) else {
            return Ok(());
        };
        let amount_sat = AMOUNTS[usize::from(amount_pick) % AMOUNTS.len()];
        let payment_id = PaymentId([0x30u8.wrapping_add(self.next_id); 32]);
        self.next_id = self.next_id.wrapping_add(1);
        let (lsp, payer) = (self.key(lsp), self.key(payer));
        self.input(
            payee,
            NodeInput::Command(NodeCommand::Receive {
                payment_id,
                lsp,
                payer,
                amount_sat,
                contact: None,
            }),
        )
    }

    fn cancel(&mut self, payer: usize) -> Result<(), Violation> {
        if let Some(&payment_id) = self.nodes[payer].started_payments.last() {
            self.input(
                payer,
                NodeInput::Command(NodeCommand::Cancel { payment_id }),
            )?;
        }
        Ok(())
    }

    /// The payee reads its mailbox. Letters stay until handled (as with the mailbox server).
    fn fetch_letters(&mut self, payee: usize) -> Result<(), Violation> {
        let letters = std::mem::take(&mut self.nodes[payee].mailbox);
        let seed = self.nodes[payee].seed;
        let (key, receipts) = (node_key(&seed), ReceiptKeys::from_seed(&seed));
        for bytes in letters {
            // The payee completes the letter's pre-signature with its receipt signature.
            let scalar = SaleLetter::decode(&bytes)
                .ok()
                .and_then(|letter| letter.check(&key, &receipts).ok());
            if let (Some(w), Some(s)) = (self.watchers.get_mut(&payee), &scalar) {
                w.known_points.insert(s.adaptor_point());
            }
            if !self.nodes[payee].honest {
                // The adversary reads the letter: it knows the scalar from now on.
                if let Some(s) = &scalar {
                    self.adversary_knows.insert(s.to_secret_bytes());
                }
            }
            self.input(payee, NodeInput::Letter { bytes })?;
        }
        Ok(())
    }

    fn adversary_acts(&mut self, k: u8) -> Result<(), Violation> {
        let adversary: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| !self.nodes[i].honest)
            .collect();
        let party = adversary[usize::from(k / 4) % adversary.len()];
        match (self.nodes[party].role, k % 4) {
            (Role::Payer, 0 | 1) => self.pay(party, k / 8),
            (Role::Payer, 2) => self.cancel(party),
            // The reverse variant: the payer reads the payee's request and buys.
            (Role::Payer, 3) => self.fetch_letters(party),
            // The reverse variant: the payee asks its LSP for a state paying it.
            (Role::Payee, 3) => self.receive(party, k / 16),
            (Role::Payee, _) => self.fetch_letters(party),
            _ => {
                // Any party: reconnect to everyone.
                for other in 0..self.nodes.len() {
                    if other != party {
                        self.connect(party, other)?;
                    }
                }
                Ok(())
            }
        }
    }

    fn honest_acts(&mut self, k: u8) -> Result<(), Violation> {
        let honest = self.honest();
        let h = honest[usize::from(k) % honest.len()];
        match self.nodes[h].role {
            Role::Payer if k % 3 != 2 => self.pay(h, k / 3),
            Role::Payer => self.cancel(h),
            Role::Payee => self.fetch_letters(h),
            _ => Ok(()),
        }
    }

    // ---- invariants ----

    /// Every honest node's invariants (1 and 4 are checked as frames leave).
    pub fn check(&mut self) -> Result<(), Violation> {
        for h in self.honest() {
            self.note_answers_due(h);
            if self.watchers[&h].restored_old_backup {
                continue;
            }
            if !skipped(2) {
                self.check_lsp_pays_only_for_what_it_can_complete(h)?;
            }
            if !skipped(3) {
                self.check_settlement_model(h)?;
            }
            if !skipped(5) {
                self.check_irrevocable_kept(h)?;
            }
        }
        Ok(())
    }

    /// Invariant 5: an honest LSP never voids an irrevocable offer before its expiry (the
    /// payee may hold the letter already and count on the sale).
    pub fn check_irrevocable_kept(&self, h: usize) -> Result<(), Violation> {
        let Some(lsp) = self.nodes[h].core.as_ref().and_then(|c| c.lsp()) else {
            return Ok(());
        };
        for (id, p) in lsp.payments() {
            let voided = p.status
                == LspStatus::Cancelled {
                    outcome: CancelOutcome::Cancelled,
                };
            if p.offer.irrevocable && voided && self.height <= p.offer.expiry {
                return Err(format!(
                    "invariant 5 broken: {} voided the irrevocable offer of payment {id} at \
                     height {}, before its expiry {}",
                    self.watchers[&h].name, self.height, p.offer.expiry
                ));
            }
        }
        Ok(())
    }

    /// Option states of an honest channel: its latest complete state and every state its
    /// signature left on with a higher number.
    fn states_out(&self, h: usize, channel: &ChannelId) -> Vec<StateBody> {
        let w = &self.watchers[&h];
        let Some(core) = self.nodes[h].core.as_ref() else {
            return vec![];
        };
        let Some(c) = core
            .channels()
            .get(channel)
            .and_then(|e| e.channel.latest())
        else {
            return vec![];
        };
        let mut out = vec![c.clone()];
        if let Some(p) = w.published.get(channel) {
            out.extend(p.iter().filter(|b| b.number > c.number).cloned());
        }
        out
    }

    /// Invariant 2: an honest LSP has a PTLC out (in a state the payee side can publish)
    /// for a sale only while it can complete the payer's state with the scalar it buys:
    /// the A–S pending state is the offer's state, with the offer's price point, not
    /// reverted; or that state is complete already and was never given up.
    pub fn check_lsp_pays_only_for_what_it_can_complete(&self, h: usize) -> Result<(), Violation> {
        let Some(core) = self.nodes[h].core.as_ref() else {
            return Ok(());
        };
        let Some(lsp) = core.lsp() else {
            return Ok(());
        };
        let w = &self.watchers[&h];
        for (id, p) in lsp.payments() {
            let t = p.offer.point;
            let state = p.offer.state;
            let out = core.channels().iter().any(|(cid, e)| {
                *cid != p.offer.channel_id
                    && self.states_out(h, cid).iter().any(|b| {
                        b.ptlcs
                            .iter()
                            .any(|x| x.point == t && x.offerer == e.channel.snapshot().side)
                    })
            });
            let sold = matches!(p.status, LspStatus::Sold { .. });
            if !out && !sold {
                continue;
            }
            let Some(e) = core.channels().get(&p.offer.channel_id) else {
                return Err(format!("LSP sells on a channel it does not have ({id})"));
            };
            let snap = e.channel.snapshot();
            // A held sale: the LSP collects by claiming the payer's PTLC, which must be in its
            // latest complete state for amount plus fee at the offer's point, or already
            // claimable with the scalar it kept.
            if let Some(held) = p.offer.held {
                let want = p.offer.amount_sat.saturating_add(p.offer.fee_sat);
                let holds = snap.complete.as_ref().is_some_and(|c| {
                    c.body.ptlcs.iter().any(|x| {
                        x.id == held.id
                            && x.offerer != snap.side
                            && x.point == t
                            && x.amount_sat >= want
                    })
                });
                let kept = sold && snap.ptlc_secrets.contains_key(&held.id);
                if !(holds || kept) {
                    return Err(format!(
                        "invariant 2 broken: {} has {} for held payment {id}, but its latest \
                         state holds no PTLC {} of the payer at the offer's point for {want}",
                        w.name,
                        if out { "a PTLC out" } else { "recorded a sale" },
                        held.id,
                    ));
                }
                continue;
            }
            let completable = snap.pending().is_some_and(|q| {
                q.body.number == state
                    && !q.is_ours()
                    && q.countersignature().is_some()
                    && !matches!(q.change, Change::Revert { .. })
            }) && e.channel.pending_price_point() == Some(t);
            let given_up = w
                .abandoned
                .get(&p.offer.channel_id)
                .is_some_and(|a| a.contains(&state));
            let completed = snap
                .complete
                .as_ref()
                .is_some_and(|c| c.body.number >= state)
                && !given_up;
            if !(completable || completed) {
                let pending = snap.pending().map(|q| {
                    format!(
                        "pending state {} ({}) priced at {}",
                        q.body.number,
                        q.change.kind(),
                        if e.channel.pending_price_point() == Some(t) {
                            "the offer's point"
                        } else {
                            "another point"
                        }
                    )
                });
                return Err(format!(
                    "invariant 2 (the LSP pays only for what it can complete) broken: {} has \
                     {} for payment {id} (status {}), but cannot complete state {state} of \
                     the payer's channel: {}, latest complete state {:?}, given up: {given_up}",
                    w.name,
                    if out { "a PTLC out" } else { "recorded a sale" },
                    serde_json::to_value(&p.status)
                        .ok()
                        .and_then(|v| v["status"].as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    pending.unwrap_or_else(|| "nothing pending".to_owned()),
                    snap.complete.as_ref().map(|c| c.body.number),
                ));
            }
        }
        Ok(())
    }

    /// Whether the honest node knows the discrete log of `t`.
    fn knows(&self, h: usize, t: &AdaptorPoint) -> bool {
        self.watchers[&h].known_points.contains(t)
    }

    /// The honest node's wealth in the settlement model: eltoo makes the highest-numbered
    /// state either side publishes win, so on each channel the honest node publishes the
    /// best state it can complete and the adversary answers with whichever state of a higher
    /// number it can publish (any whose honest signature left the node) is worst for it; the
    /// adversary also picks which PTLC secrets get revealed (the node's incoming PTLCs count
    /// only if the secret is revealed or known, its outgoing ones only if not revealed, and
    /// a pending state of the peer's completes only if its price point's secret is revealed).
    pub fn wealth(&self, h: usize) -> u64 {
        let Some(core) = self.nodes[h].core.as_ref() else {
            return 0;
        };
        struct Lane {
            side: Party,
            states: Vec<StateBody>,
            completable: Option<(AdaptorPoint, StateBody)>,
        }
        let mut lanes = vec![];
        let mut points = BTreeSet::new();
        for (id, e) in core.channels() {
            let snap = e.channel.snapshot();
            let Some(c) = snap.complete.as_ref() else {
                continue;
            };
            let completable = snap
                .pending()
                .filter(|p| {
                    !p.is_ours()
                        && p.countersignature().is_some()
                        && p.body.number == c.body.number + 1
                        && !matches!(p.change, Change::Revert { .. })
                })
                .and_then(|p| Some((e.channel.pending_price_point()?, p.body.clone())));
            let mut states = vec![c.body.clone()];
            if let Some(p) = self.watchers[&h].published.get(id) {
                states.extend(p.iter().filter(|b| b.number > c.body.number).cloned());
            }
            for b in states.iter().chain(completable.iter().map(|(_, b)| b)) {
                points.extend(b.ptlcs.iter().map(|x| x.point));
            }
            points.extend(completable.iter().map(|(t, _)| *t));
            lanes.push(Lane {
                side: snap.side,
                states,
                completable,
            });
        }
        // A held sale's point whose letter never left the honest payer: nobody but the payer
        // knows its share, so no one can reveal its scalar (the payee's receipt signature
        // alone does not open it).
        let sealed: BTreeSet<AdaptorPoint> = core
            .payer()
            .map(|payer| {
                payer
                    .payments()
                    .filter(|(id, _)| !self.watchers[&h].consented.contains_key(id))
                    .filter_map(|(id, p)| p.held_point(id))
                    .collect()
            })
            .unwrap_or_default();
        let unknown: Vec<AdaptorPoint> = points
            .into_iter()
            .filter(|t| !self.knows(h, t) && !sealed.contains(t))
            .take(12)
            .collect();
        let mut worst = u64::MAX;
        for mask in 0u32..(1 << unknown.len()) {
            let revealed = |t: &AdaptorPoint| {
                self.knows(h, t)
                    || unknown
                        .iter()
                        .position(|u| u == t)
                        .is_some_and(|i| mask >> i & 1 == 1)
            };
            let value = |b: &StateBody, side: Party| -> u64 {
                b.balance(side)
                    + b.ptlcs
                        .iter()
                        .filter(|x| (x.offerer != side) == revealed(&x.point))
                        .map(|x| x.amount_sat)
                        .sum::<u64>()
            };
            let mut total = 0u64;
            for lane in &lanes {
                let c = &lane.states[0];
                let mut mine = vec![c.clone()];
                if let Some((t, b)) = &lane.completable {
                    if revealed(t) {
                        mine.push(b.clone());
                    }
                }
                let best = mine
                    .iter()
                    .map(|m| {
                        lane.states
                            .iter()
                            .filter(|s| s.number > m.number)
                            .chain(std::iter::once(m))
                            .map(|s| value(s, lane.side))
                            .min()
                            .expect("one state at least")
                    })
                    .max()
                    .expect("one state at least");
                total += best;
            }
            worst = worst.min(total);
        }
        worst
    }

    /// Invariant 3: the settlement model never gives the honest node less than it started
    /// with (a payer: less what it consented to by posting letters), and every stale state
    /// the adversary published was answered with a newer one.
    pub fn check_settlement_model(&self, h: usize) -> Result<(), Violation> {
        let w = &self.watchers[&h];
        let Some(floor) = w.floor else {
            return Ok(());
        };
        let consented: u64 = w.consented.values().sum();
        let floor = floor.saturating_sub(consented);
        let wealth = self.wealth(h);
        if wealth < floor {
            return Err(format!(
                "invariant 3 (the chain gives the honest party at least its due) broken: {} \
                 would get {wealth} sat on chain against {floor} sat due ({consented} sat \
                 consented to by letters); its channels: {}",
                w.name,
                self.describe_channels(h)
            ));
        }
        for (&(node, channel), &since) in &self.answer_due {
            if node == h && self.height > since {
                return Err(format!(
                    "invariant 3 (the chain gives the honest party at least its due) broken: \
                     the adversary published an older state of channel {} and {} holds a \
                     newer one, but has not answered it {} block(s) later",
                    hex::encode(&channel.0[..4]),
                    w.name,
                    self.height - since
                ));
            }
        }
        Ok(())
    }

    /// The stale states `h` must still answer: an update the adversary published of a state
    /// older than `h`'s latest, not yet spent by a transaction of `h`'s. The channel answers
    /// at once, and publishes again at every block until it is moot.
    fn note_answers_due(&mut self, h: usize) {
        let Some(core) = self.nodes[h].core.as_ref() else {
            return;
        };
        let mut due = vec![];
        for (channel, stale) in self
            .adversary_published
            .iter()
            .flat_map(|(c, txs)| txs.iter().map(move |tx| (c, tx)))
        {
            let Some(e) = core.channels().get(channel) else {
                continue;
            };
            let m = update_state(stale);
            // Only the adversary's last update on a channel can still settle: an earlier
            // one is spent by it.
            let last = self.adversary_published[channel].last() == Some(stale);
            if !last {
                continue;
            }
            let latest = e.channel.latest().map_or(0, |b| b.number);
            let stale_txid = stale.compute_txid();
            let answered = self.chain.iter().any(|p| {
                p.by == h
                    && p.tx
                        .input
                        .iter()
                        .any(|i| i.previous_output.txid == stale_txid)
            });
            due.push(((h, *channel), latest > m && !answered));
        }
        for (key, owed) in due {
            if owed {
                self.answer_due.entry(key).or_insert(self.height);
            } else {
                self.answer_due.remove(&key);
            }
        }
    }

    fn describe_channels(&self, h: usize) -> String {
        let Some(core) = self.nodes[h].core.as_ref() else {
            return String::new();
        };
        let w = &self.watchers[&h];
        core.channels()
            .iter()
            .map(|(id, e)| {
                let s = e.channel.snapshot();
                format!(
                    "[{} {:?} as {:?}: complete {:?}, pending {:?}, published above: {:?}]",
                    hex::encode(&id.0[..2]),
                    s.phase(),
                    s.side,
                    s.complete.as_ref().map(|c| (
                        c.body.number,
                        c.body.to_a,
                        c.body.to_s,
                        c.body.ptlcs.len()
                    )),
                    s.pending().map(|p| (p.body.number, p.change.kind())),
                    w.published
                        .get(id)
                        .map(|v| v
                            .iter()
                            .map(|b| (b.number, b.to_a, b.to_s))
                            .collect::<Vec<_>>())
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The last lines of the transcript, for a failure message.
    pub fn tail(&self, lines: usize) -> String {
        let start = self.transcript.len().saturating_sub(lines);
        self.transcript[start..].join("\n")
    }
}

/// Whether invariant `n` is switched off for this run (`ASYNCPAY_HARNESS_SKIP=3` or `=2,3`):
/// a diagnostic aid to see which other invariant catches a counterexample. CI sets nothing.
pub fn skipped(n: u8) -> bool {
    std::env::var("ASYNCPAY_HARNESS_SKIP")
        .map(|v| v.split(',').any(|x| x.trim() == n.to_string()))
        .unwrap_or(false)
}

/// What an input is, for a failure message (cheap: no bytes are printed).
fn describe_input(input: &NodeInput) -> String {
    match input {
        NodeInput::Frame { frame, .. } => format!("a frame ({})", describe_frame(frame)),
        NodeInput::Connected { .. } => "a connection".to_owned(),
        NodeInput::Block { height } => format!("block {height}"),
        NodeInput::Confirmed { .. } => "a confirmation".to_owned(),
        NodeInput::Spend { .. } => "a spend".to_owned(),
        NodeInput::FundingBuilt { .. } => "funding built".to_owned(),
        NodeInput::LetterPosted { .. } => "letter posted".to_owned(),
        NodeInput::Letter { .. } => "a letter".to_owned(),
        NodeInput::HandedLetter { .. } => "a letter handed over".to_owned(),
        NodeInput::Command(c) => format!("command {c:?}"),
        NodeInput::Entropy(_) => "entropy".to_owned(),
        NodeInput::Started => "start".to_owned(),
    }
}

/// The state number of an update transaction (its locktime).
fn update_state(tx: &Transaction) -> u64 {
    u64::from(
        tx.lock_time
            .to_consensus_u32()
            .saturating_sub(asyncpay::tx::STATE_LOCKTIME_BASE),
    )
}

/// The node's own withheld scalar, if `frame` fulfils with it a PTLC that its peer offered it
/// for that scalar's point in a complete state (the reverse variant's sale).
fn sold_scalar(w: &Watcher, frame: &[u8]) -> Option<[u8; 32]> {
    let Some(Message::Propose(ProposeUpdate {
        channel_id,
        change: Change::FulfilPtlc { id, secret },
        ..
    })) = channel_message(frame)
    else {
        return None;
    };
    if !w.withheld.contains_key(&secret.0) {
        return None;
    }
    let point = AdaptorSecret::from_bytes(secret.0).ok()?.adaptor_point();
    let snap = w.view.get(&channel_id)?;
    let paid = snap
        .complete
        .as_ref()?
        .body
        .ptlcs
        .iter()
        .any(|p| p.id == id && p.point == point && p.offerer != snap.side);
    paid.then_some(secret.0)
}

/// Points whose discrete log a frame delivered to an honest node reveals to it (a PTLC
/// fulfilment).
fn learn_points(w: &mut Watcher, bytes: &[u8]) {
    if let Some(Message::Propose(ProposeUpdate {
        change: Change::FulfilPtlc { secret, .. },
        ..
    })) = channel_message(bytes)
    {
        if let Ok(s) = AdaptorSecret::from_bytes(secret.0) {
            w.known_points.insert(s.adaptor_point());
        }
    }
}

/// Runs `ops` on a fresh scenario; returns the number of steps taken and the milestones
/// reached, or the first broken invariant with the transcript's end.
pub fn run_ops(make: fn() -> World, ops: &[Op]) -> Result<(u64, BTreeSet<String>), String> {
    let mut world = make();
    for op in ops {
        if let Err(v) = world.step(op) {
            return Err(format!("{v}\n-- last steps --\n{}", world.tail(40)));
        }
    }
    Ok((world.steps, world.milestones()))
}

impl World {
    /// How far the protocol got: every payment status any party stored ("lsp: sold"), and
    /// whether a state was published or an honest node restarted. A run that never reaches
    /// a sale tests little; the scenarios print how many cases reached each.
    pub fn milestones(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for n in &self.nodes {
            for record in n.payments.values() {
                if let Some(status) = record.pointer("/status/status").and_then(|s| s.as_str()) {
                    let who = if n.honest { "honest" } else { "adversary's" };
                    out.insert(format!("{who} {:?}: {status}", n.role).to_lowercase());
                }
            }
        }
        for n in &self.nodes {
            for record in n.reverse.values() {
                if let Some(status) = record.pointer("/status/status").and_then(|s| s.as_str()) {
                    let who = if n.honest { "honest" } else { "adversary's" };
                    out.insert(format!("{who} {:?} (reverse): {status}", n.role).to_lowercase());
                }
            }
        }
        if !self.adversary_published.is_empty() {
            out.insert("stale state published".to_owned());
        }
        if self.adversary_published.values().any(|v| v.len() > 1) {
            out.insert("stale state published on top of another".to_owned());
        }
        if self
            .transcript
            .iter()
            .any(|l| l.ends_with("restarted from its store"))
        {
            out.insert("honest node restarted".to_owned());
        }
        if self.watchers.values().any(|w| w.restored_old_backup) {
            out.insert("honest node restored from an old backup".to_owned());
        }
        out
    }
}

/// The node's own withheld signature in `progress`, when it holds it complete.
fn snap_withheld_signature(progress: &Progress) -> Option<asyncpay::crypto::keys::Signature> {
    match progress {
        Progress::Withheld(withheld) => withheld.own_signature(),
        Progress::Proposed { .. } | Progress::CounterSigned { .. } => None,
    }
}
