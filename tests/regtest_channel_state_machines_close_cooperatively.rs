//! Two channel state machines (A and S, in process, messages through memory queues) open a
//! channel funded from the regtest faucet, make a transfer, and close cooperatively through
//! `Command::Close`: the close both of them broadcast goes through `sendrawtransaction`,
//! confirms, and pays each party its balance of the last state, the fee from the proposer's.

mod channel_support;
mod tx_support;

use std::collections::VecDeque;

use anyhow::{bail, ensure, Context};
use asyncpay::protocol::channel::{
    Action, ChainEvent, Channel, Command, Event, Input, OpenTerms, Phase,
};
use asyncpay::protocol::messages::{ChannelId, Message};
use asyncpay::tx::Party;
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction};
use channel_support::{payout, secrets};

const CAPACITY: u64 = 500_000;
const PUSH: u64 = 50_000;
const PAID: u64 = 60_000;
const FEE: u64 = 400;

#[derive(Default)]
struct Side {
    channel: Option<Channel>,
    events: Vec<Event>,
    broadcasts: Vec<Transaction>,
    persisted: bool,
}

struct Pair {
    a: Side,
    s: Side,
    to_a: VecDeque<Message>,
    to_s: VecDeque<Message>,
}

impl Pair {
    fn side(&mut self, party: Party) -> &mut Side {
        match party {
            Party::A => &mut self.a,
            Party::S => &mut self.s,
        }
    }

    fn run(&mut self, party: Party, actions: Vec<Action>) -> anyhow::Result<()> {
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

    fn input(&mut self, party: Party, input: Input) -> anyhow::Result<()> {
        let channel = self.side(party).channel.as_mut().context("channel")?;
        let actions = channel.handle(input)?;
        self.run(party, actions)
    }

    fn pump(&mut self, height: u32) -> anyhow::Result<()> {
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

    fn channel(&self, party: Party) -> &Channel {
        match party {
            Party::A => self.a.channel.as_ref(),
            Party::S => self.s.channel.as_ref(),
        }
        .expect("channel exists")
    }
}

fn payout_script(party: Party) -> ScriptBuf {
    ScriptBuf::new_p2tr(
        &bitcoin::secp256k1::Secp256k1::verification_only(),
        payout(party).into(),
        None,
    )
}

#[test]
fn channel_state_machines_open_transfer_and_close_cooperatively() -> anyhow::Result<()> {
    let chain = tx_support::start();
    let height = u32::try_from(chain.height()?)?;
    let terms = OpenTerms {
        capacity_sat: CAPACITY,
        push_sat: PUSH,
        shared_delay: tx_support::SHARED_DELAY,
        update_window: 1_000,
        payout_key: payout(Party::A),
    };
    let (a, actions) = Channel::open(secrets(Party::A), ChannelId([3; 32]), terms, height)?;
    let mut pair = Pair {
        a: Side {
            channel: Some(a),
            ..Side::default()
        },
        s: Side::default(),
        to_a: VecDeque::new(),
        to_s: VecDeque::new(),
    };
    pair.run(Party::A, actions)?;
    pair.pump(height)?;

    // A's wallet (the faucet here) pays the funding script the channel asked for.
    let script = pair
        .a
        .events
        .iter()
        .find_map(|e| match e {
            Event::Accepted {
                funding_script_pubkey,
                capacity_sat,
            } if *capacity_sat == CAPACITY => Some(funding_script_pubkey.clone()),
            _ => None,
        })
        .context("A reports the funding script")?;
    let (outpoint, _) = chain.fund(&script, Amount::from_sat(CAPACITY))?;
    pair.input(Party::A, Input::Command(Command::FundingBuilt { outpoint }))?;
    pair.pump(height)?;
    let confirmed_at = u32::try_from(chain.confirm(&outpoint.txid)?)?;
    for party in [Party::A, Party::S] {
        pair.input(
            party,
            Input::Chain(ChainEvent::Confirmed {
                txid: outpoint.txid,
                height: confirmed_at,
            }),
        )?;
    }

    pair.input(
        Party::A,
        Input::Command(Command::Transfer {
            amount_sat: PAID,
            withhold: false,
        }),
    )?;
    pair.pump(height)?;
    let latest = pair.channel(Party::S).latest().context("state 1")?.clone();
    ensure!(latest.number == 1 && latest.to_s == PUSH + PAID);

    pair.input(Party::A, Input::Command(Command::Close { fee_sat: FEE }))?;
    pair.pump(height)?;
    let close = pair.a.broadcasts.last().cloned().context("A broadcasts")?;
    ensure!(
        pair.s.broadcasts.last() == Some(&close),
        "S broadcasts the same close"
    );
    ensure!(close.input[0].previous_output == outpoint);

    let txid = chain.send_raw(&close)?;
    chain.confirm(&txid)?;
    let to_a = CAPACITY - PUSH - PAID - FEE;
    assert_eq!(
        tx_support::utxo(&chain, &OutPoint { txid, vout: 0 }),
        Some((Amount::from_sat(to_a), payout_script(Party::A)))
    );
    assert_eq!(
        tx_support::utxo(&chain, &OutPoint { txid, vout: 1 }),
        Some((Amount::from_sat(PUSH + PAID), payout_script(Party::S)))
    );
    assert_eq!(tx_support::utxo(&chain, &outpoint), None);

    let close_height = u32::try_from(chain.height()?)?;
    for party in [Party::A, Party::S] {
        pair.input(
            party,
            Input::Chain(ChainEvent::Spend {
                tx: close.clone(),
                confirmed_at: Some(close_height),
            }),
        )?;
        assert_eq!(pair.channel(party).phase(), Phase::Closed);
    }
    Ok(())
}
