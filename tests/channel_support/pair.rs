//! Two channel state machines wired through memory queues, for scenarios on a real chain:
//! unlike [`super::Net`], funding outpoints and heights come from the caller.

use std::collections::VecDeque;

use anyhow::{bail, ensure, Context};
use asyncpay::protocol::channel::{Action, ChainEvent, Channel, Command, Event, Input, OpenTerms};
use asyncpay::protocol::messages::{ChannelId, Message};
use asyncpay::tx::Party;
use bitcoin::{OutPoint, ScriptBuf, Transaction};

use super::{payout, secrets};

/// The P2TR script a party's settlement output pays to.
pub fn payout_script(party: Party) -> ScriptBuf {
    ScriptBuf::new_p2tr(
        &bitcoin::secp256k1::Secp256k1::verification_only(),
        payout(party).into(),
        None,
    )
}

impl Pair {
    /// Opens a channel at `height`: `fund` pays the funding script the capacity and returns
    /// the funding outpoint and the height it confirmed at.
    pub fn open(
        terms: OpenTerms,
        height: u32,
        fund: impl FnOnce(&ScriptBuf, u64) -> anyhow::Result<(OutPoint, u32)>,
    ) -> anyhow::Result<(Self, OutPoint)> {
        let capacity = terms.capacity_sat;
        let (a, actions) = Channel::open(secrets(Party::A), ChannelId([3; 32]), terms, height)?;
        let mut pair = Pair::new(a);
        pair.run(Party::A, actions)?;
        pair.pump(height)?;
        let script = pair
            .a
            .events
            .iter()
            .find_map(|e| match e {
                Event::Accepted {
                    funding_script_pubkey,
                    ..
                } => Some(funding_script_pubkey.clone()),
                _ => None,
            })
            .context("A reports the funding script")?;
        let (outpoint, confirmed_at) = fund(&script, capacity)?;
        pair.input(Party::A, Input::Command(Command::FundingBuilt { outpoint }))?;
        pair.pump(height)?;
        for party in [Party::A, Party::S] {
            pair.input(
                party,
                Input::Chain(ChainEvent::Confirmed {
                    txid: outpoint.txid,
                    height: confirmed_at,
                }),
            )?;
        }
        Ok((pair, outpoint))
    }

    /// Opens a channel on `chain` at its tip, A paying S `push_sat` at the open: the faucet
    /// pays the funding script and the funding confirms. Returns the pair, the funding
    /// outpoint and the tip after the funding.
    pub fn open_on(
        chain: &asyncpay::chain::regtest::Regtest,
        capacity_sat: u64,
        push_sat: u64,
        shared_delay: u16,
    ) -> anyhow::Result<(Self, OutPoint, u32)> {
        let height = u32::try_from(chain.height()?)?;
        let terms = OpenTerms {
            capacity_sat,
            push_sat,
            shared_delay,
            update_window: 1_000,
            payout_key: payout(Party::A),
        };
        let (mut pair, outpoint) = Pair::open(terms, height, |script, capacity| {
            let (outpoint, _) = chain.fund(script, bitcoin::Amount::from_sat(capacity))?;
            let at = u32::try_from(chain.confirm(&outpoint.txid)?)?;
            Ok((outpoint, at))
        })?;
        let tip = pair.tip(chain)?;
        Ok((pair, outpoint, tip))
    }

    /// A pair whose A side is `a` (just opened); S is created by the open message.
    pub fn new(a: Channel) -> Self {
        Pair {
            a: Side {
                channel: Some(a),
                ..Side::default()
            },
            s: Side::default(),
            to_a: VecDeque::new(),
            to_s: VecDeque::new(),
        }
    }
}

#[derive(Default)]
pub struct Side {
    pub channel: Option<Channel>,
    pub events: Vec<Event>,
    pub broadcasts: Vec<Transaction>,
    pub persisted: bool,
}

pub struct Pair {
    pub a: Side,
    pub s: Side,
    pub to_a: VecDeque<Message>,
    pub to_s: VecDeque<Message>,
}

impl Pair {
    pub fn side(&mut self, party: Party) -> &mut Side {
        match party {
            Party::A => &mut self.a,
            Party::S => &mut self.s,
        }
    }

    pub fn run(&mut self, party: Party, actions: Vec<Action>) -> anyhow::Result<()> {
        for action in actions {
            match action {
                Action::Persist(_) => self.side(party).persisted = true,
                Action::Send(msg) => {
                    ensure!(self.side(party).persisted, "sent before any persist");
                    match party {
                        Party::A => self.to_s.push_back(msg),
                        Party::S => self.to_a.push_back(msg),
                    }
                }
                Action::Broadcast(tx) => self.side(party).broadcasts.push(tx),
                Action::Watch(_) => {}
                Action::Event(e) => self.side(party).events.push(e),
            }
        }
        Ok(())
    }

    pub fn input(&mut self, party: Party, input: Input) -> anyhow::Result<()> {
        let channel = self.side(party).channel.as_mut().context("channel")?;
        let actions = channel.handle(input)?;
        self.run(party, actions)
    }

    pub fn pump(&mut self, height: u32) -> anyhow::Result<()> {
        for _ in 0..100 {
            let (party, msg) = if let Some(m) = self.to_s.pop_front() {
                (Party::S, m)
            } else if let Some(m) = self.to_a.pop_front() {
                (Party::A, m)
            } else {
                return Ok(());
            };
            if party == Party::S && self.s.channel.is_none() {
                let Message::Open(open) = &msg else {
                    bail!("S got {} before open", msg.name())
                };
                let (channel, actions) =
                    Channel::accept(secrets(Party::S), open, payout(Party::S), height)?;
                self.s.channel = Some(channel);
                self.run(Party::S, actions)?;
                continue;
            }
            self.input(party, Input::Message(msg))?;
        }
        bail!("messages never stopped")
    }

    /// Tells both parties the chain's tip; returns it.
    pub fn tip(&mut self, chain: &asyncpay::chain::regtest::Regtest) -> anyhow::Result<u32> {
        let height = u32::try_from(chain.height()?)?;
        for party in [Party::A, Party::S] {
            self.input(party, Input::Chain(ChainEvent::Block { height }))?;
        }
        Ok(height)
    }

    /// Tells `party` that `tx` spent one of its outpoints, confirmed at `at`.
    pub fn spent(&mut self, party: Party, tx: &Transaction, at: u32) -> anyhow::Result<()> {
        self.input(
            party,
            Input::Chain(ChainEvent::Spend {
                tx: tx.clone(),
                confirmed_at: Some(at),
            }),
        )
    }

    pub fn channel(&self, party: Party) -> &Channel {
        match party {
            Party::A => self.a.channel.as_ref(),
            Party::S => self.s.channel.as_ref(),
        }
        .expect("channel exists")
    }
}
