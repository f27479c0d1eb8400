//! An in-process two-party channel network for tests: A and S exchange messages through
//! in-memory queues; every Persist is recorded; a party can be crashed at a persist point and
//! reloaded from its last persisted snapshot.
#![allow(dead_code)]

pub mod pair;

use std::collections::{HashMap, VecDeque};

use anyhow::{bail, Context};
use asyncpay::crypto::adaptor::AdaptorSecret;
use asyncpay::crypto::keys::SecretKey;
use asyncpay::crypto::nonce::NonceSeed;
use asyncpay::protocol::channel::{
    Action, ChainEvent, Channel, ChannelError, ChannelSecrets, Command, Event, Input, OpenTerms,
    Phase, Snapshot,
};
use asyncpay::protocol::messages::{ChannelId, Message};
use asyncpay::tx::Party;
use bitcoin::hashes::Hash as _;
use bitcoin::{OutPoint, Transaction, Txid};

pub const CAPACITY: u64 = 1_000_000;
pub const PUSH: u64 = 200_000;
pub const DELAY: u16 = 6;
pub const WINDOW: u32 = 1_000;
pub const HEIGHT: u32 = 200;

pub fn secrets(party: Party) -> ChannelSecrets {
    let b = match party {
        Party::A => 0x11,
        Party::S => 0x22,
    };
    ChannelSecrets {
        key: SecretKey::from_bytes([b; 32]).expect("valid scalar"),
        nonce_seed: NonceSeed::from_bytes([b + 1; 32]),
    }
}

pub fn payout(party: Party) -> asyncpay::crypto::keys::PublicKey {
    let b = match party {
        Party::A => 0x33,
        Party::S => 0x44,
    };
    SecretKey::from_bytes([b; 32])
        .expect("valid scalar")
        .public_key()
}

pub fn funding_outpoint() -> OutPoint {
    OutPoint {
        txid: Txid::from_byte_array([0xf0; 32]),
        vout: 0,
    }
}

/// A party: its live channel, its durable snapshot and what it sent.
pub struct Node {
    pub party: Party,
    pub channel: Option<Channel>,
    pub persisted: Option<Snapshot>,
    pub persists: usize,
    pub events: Vec<Event>,
    pub broadcasts: Vec<Transaction>,
    pub restarts: usize,
}

impl Node {
    fn new(party: Party) -> Self {
        Node {
            party,
            channel: None,
            persisted: None,
            persists: 0,
            events: vec![],
            broadcasts: vec![],
            restarts: 0,
        }
    }

    pub fn channel(&self) -> &Channel {
        self.channel.as_ref().expect("channel exists")
    }
}

/// Decides, at each persist point, whether the party crashes right after persisting.
pub trait CrashPolicy {
    fn crash(&mut self, party: Party, persist_index: usize) -> bool;
}

pub struct Never;

impl CrashPolicy for Never {
    fn crash(&mut self, _: Party, _: usize) -> bool {
        false
    }
}

pub struct Net<P: CrashPolicy> {
    pub a: Node,
    pub s: Node,
    pub to_a: VecDeque<Message>,
    pub to_s: VecDeque<Message>,
    pub policy: P,
    /// Every signature ever sent, by its nonce: a nonce must never sign two messages.
    pub signatures_by_nonce: HashMap<[u8; 32], [u8; 64]>,
    /// Every nonce committed in a proposal, with the state it was committed for.
    pub committed_nonces: HashMap<[u8; 32], (Party, u64)>,
    /// Every MuSig2 close nonce sent, with the partial signature it made (accepts only).
    pub close_nonces: HashMap<Vec<u8>, Option<[u8; 32]>>,
    /// Errors the channels returned for peer messages (stale duplicates after reconnection).
    pub refused: Vec<String>,
    pub crashes: usize,
}

impl<P: CrashPolicy> Net<P> {
    pub fn new(policy: P) -> Self {
        Net {
            a: Node::new(Party::A),
            s: Node::new(Party::S),
            to_a: VecDeque::new(),
            to_s: VecDeque::new(),
            policy,
            signatures_by_nonce: HashMap::new(),
            committed_nonces: HashMap::new(),
            close_nonces: HashMap::new(),
            refused: vec![],
            crashes: 0,
        }
    }

    pub fn node_ref(&self, party: Party) -> &Node {
        match party {
            Party::A => &self.a,
            Party::S => &self.s,
        }
    }

    pub fn node(&mut self, party: Party) -> &mut Node {
        match party {
            Party::A => &mut self.a,
            Party::S => &mut self.s,
        }
    }

    /// Opens the channel, funds it and confirms the funding.
    pub fn open(&mut self) -> anyhow::Result<()> {
        let terms = OpenTerms {
            capacity_sat: CAPACITY,
            push_sat: PUSH,
            shared_delay: DELAY,
            update_window: WINDOW,
            payout_key: payout(Party::A),
        };
        let (channel, actions) =
            Channel::open(secrets(Party::A), ChannelId([7; 32]), terms, HEIGHT)?;
        self.a.channel = Some(channel);
        self.run_actions(Party::A, actions)?;
        for _ in 0..20 {
            self.pump()?;
            let a = self.a.channel().snapshot();
            if a.phase() == Phase::Accepted {
                // The driver builds the funding transaction whenever it finds A accepted.
                self.input(
                    Party::A,
                    Input::Command(Command::FundingBuilt {
                        outpoint: funding_outpoint(),
                    }),
                )?;
                continue;
            }
            let s_funded = self
                .s
                .channel
                .as_ref()
                .is_some_and(|s| s.snapshot().phase() == Phase::Funded);
            if a.phase() == Phase::Funded && s_funded {
                for party in [Party::A, Party::S] {
                    self.input(
                        party,
                        Input::Chain(ChainEvent::Confirmed {
                            txid: funding_outpoint().txid,
                            height: HEIGHT,
                        }),
                    )?;
                }
                return Ok(());
            }
            self.reconnect()?;
        }
        bail!("channel never opened")
    }

    /// Tells a party that `tx` spent one of its outputs, confirmed at height `at`.
    pub fn spend(&mut self, party: Party, tx: &Transaction, at: u32) -> anyhow::Result<()> {
        self.input(
            party,
            Input::Chain(ChainEvent::Spend {
                tx: tx.clone(),
                confirmed_at: Some(at),
            }),
        )?;
        Ok(())
    }

    /// Feeds an input to a party and carries out its actions.
    pub fn input(&mut self, party: Party, input: Input) -> Result<(), ChannelError> {
        let node = self.node(party);
        let channel = node.channel.as_mut().expect("channel exists");
        let actions = channel.handle(input)?;
        self.run_actions(party, actions)
            .expect("driver invariants hold");
        Ok(())
    }

    /// Carries out actions in order; a crash after a persist drops the rest.
    pub fn run_actions(&mut self, party: Party, actions: Vec<Action>) -> anyhow::Result<()> {
        for action in actions {
            match action {
                Action::Persist(snapshot) => {
                    let node = self.node(party);
                    if let Some(old) = &node.persisted {
                        if snapshot.next_nonce_session < old.next_nonce_session {
                            bail!("{party:?}: nonce counter went backwards");
                        }
                    }
                    node.persisted = Some(*snapshot);
                    node.persists += 1;
                    let index = node.persists;
                    if self.policy.crash(party, index) {
                        self.crash(party)?;
                        return Ok(());
                    }
                }
                Action::Send(msg) => {
                    let node = self.node(party);
                    if msg.carries_commitment() {
                        let persisted = node
                            .persisted
                            .as_ref()
                            .context("signature sent before any persist")?;
                        if !persisted.covers(&msg) {
                            bail!(
                                "{party:?} sent {} not covered by its last persist",
                                msg.name()
                            );
                        }
                    }
                    self.check_nonces(party, &msg)?;
                    match party {
                        Party::A => self.to_s.push_back(msg),
                        Party::S => self.to_a.push_back(msg),
                    }
                }
                Action::Broadcast(tx) => self.node(party).broadcasts.push(tx),
                Action::Watch(_) => {}
                Action::Event(event) => self.node(party).events.push(event),
            }
        }
        Ok(())
    }

    fn check_nonces(&mut self, party: Party, msg: &Message) -> anyhow::Result<()> {
        let sig = match msg {
            Message::Propose(m) => {
                let r = m.nonce.to_xonly_bytes();
                if let Some(prev) = self.committed_nonces.insert(r, (party, m.state)) {
                    if prev != (party, m.state) {
                        bail!(
                            "nonce committed for two states: {prev:?} and {:?}",
                            (party, m.state)
                        );
                    }
                }
                return Ok(());
            }
            Message::CounterSign(m) => m.signature,
            Message::Complete(m) => m.signature,
            Message::CloseProposal(m) => {
                // A close nonce may be re-sent, but only by its owner in a proposal.
                let first = self.close_nonces.entry(m.nonce.to_vec()).or_insert(None);
                if first.is_some() {
                    bail!("{party:?} re-used an accept's close nonce in a proposal");
                }
                return Ok(());
            }
            Message::CloseAccept(m) => {
                // An accept's nonce signs exactly one partial signature.
                let first = self
                    .close_nonces
                    .entry(m.nonce.to_vec())
                    .or_insert(Some(m.partial_signature));
                if *first != Some(m.partial_signature) {
                    bail!("{party:?} re-used a close nonce for two partial signatures");
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        let bytes = sig.to_bytes();
        let mut r = [0u8; 32];
        r.copy_from_slice(&bytes[..32]);
        if let Some(prev) = self.signatures_by_nonce.insert(r, bytes) {
            if prev != bytes {
                bail!("{party:?} reused a nonce for two different signatures");
            }
        }
        Ok(())
    }

    /// Drops the party's channel, reloads it from its last persisted snapshot, loses what was
    /// in flight in both directions and reconnects.
    pub fn crash(&mut self, party: Party) -> anyhow::Result<()> {
        self.crashes += 1;
        let node = self.node(party);
        node.channel = None;
        node.restarts += 1;
        let Some(snapshot) = node.persisted.clone() else {
            // Crashed before anything was stored: the channel never existed for this party.
            self.to_a.clear();
            self.to_s.clear();
            return self.reconnect();
        };
        node.channel = Some(Channel::restore(secrets(party), snapshot)?);
        self.to_a.clear();
        self.to_s.clear();
        self.reconnect()
    }

    pub fn reconnect(&mut self) -> anyhow::Result<()> {
        for party in [Party::A, Party::S] {
            let node = self.node(party);
            if let Some(channel) = node.channel.as_mut() {
                let actions = channel.handle(Input::Connected)?;
                self.run_actions(party, actions)?;
            }
        }
        Ok(())
    }

    /// Delivers messages until both queues are empty. Refused messages are recorded (after
    /// a reconnection a duplicate may legitimately be refused as stale).
    pub fn pump(&mut self) -> anyhow::Result<()> {
        for _ in 0..10_000 {
            let (party, msg) = if let Some(msg) = self.to_s.pop_front() {
                (Party::S, msg)
            } else if let Some(msg) = self.to_a.pop_front() {
                (Party::A, msg)
            } else {
                return Ok(());
            };
            let Some(channel) = self.node(party).channel.as_mut() else {
                if let Message::Open(open) = &msg {
                    let (channel, actions) =
                        Channel::accept(secrets(Party::S), open, payout(Party::S), HEIGHT)?;
                    self.s.channel = Some(channel);
                    self.run_actions(Party::S, actions)?;
                }
                continue;
            };
            match channel.handle(Input::Message(msg)) {
                Ok(actions) => self.run_actions(party, actions)?,
                Err(e @ (ChannelError::WrongState { .. } | ChannelError::Unexpected { .. })) => {
                    self.refused.push(format!("{party:?}: {e}"))
                }
                Err(e) => bail!("{party:?} refused a message: {e}"),
            }
        }
        bail!("messages never stopped")
    }

    pub fn snapshot(&self, party: Party) -> &Snapshot {
        match party {
            Party::A => self.a.channel().snapshot(),
            Party::S => self.s.channel().snapshot(),
        }
    }
}

pub fn secret(b: u8) -> AdaptorSecret {
    AdaptorSecret::from_bytes([b; 32]).expect("valid scalar")
}
