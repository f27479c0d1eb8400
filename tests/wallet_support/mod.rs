//! Regtest channel scenarios with real wallets: a regtest node with electrs, one BDK wallet
//! per party, and a driver that runs two channel state machines the way a node process would:
//! messages travel as encoded bytes, every `Persist` is written (and fsynced) to a snapshot
//! file before the next action runs, blocks are scanned for watched outpoints, and every
//! transaction the channel asks to publish goes through the node's mempool with a CPFP child
//! paid by the publisher's wallet (`submitpackage`).
//!
//! A party can be killed right after any of its persists: its live channel is dropped with
//! whatever it had not yet done, the connection loses what was in flight, and it comes back
//! with [`Channel::restore`] from the snapshot file.
#![allow(dead_code)]

use std::collections::{BTreeSet, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context};
use asyncpay::chain::electrum::Electrum;
use asyncpay::chain::regtest::{Regtest, RegtestOptions};
use asyncpay::chain::wallet::{CpfpChild, FundingTx, Wallet, WalletSeed};
use asyncpay::crypto::keys::{PublicKey, SecretKey};
use asyncpay::crypto::nonce::NonceSeed;
use asyncpay::protocol::channel::{
    Action, ChainEvent, Channel, ChannelSecrets, Command, Event, Input, OpenTerms, Phase, Snapshot,
};
use asyncpay::protocol::messages::{ChannelId, Message};
use asyncpay::protocol::wire::{Decoded, PeerMessage};
use asyncpay::tx::Party;
use bitcoin::hashes::{sha256, Hash as _};
use bitcoin::{Amount, FeeRate, Network, OutPoint, ScriptBuf, Transaction, Txid};
use serde_json::{json, Value};

/// Blocks between an update's confirmation and its settlement.
pub const DELAY: u16 = 6;
/// Blocks ahead within which a PTLC must expire (unused by transfers).
pub const WINDOW: u32 = 1_000;
/// Feerate of funding transactions and CPFP packages.
pub fn feerate() -> FeeRate {
    FeeRate::from_sat_per_vb(2).expect("small feerate")
}

/// A regtest node with electrs, and its Electrum URL.
pub fn start_chain() -> (Regtest, String) {
    let chain = Regtest::start(RegtestOptions {
        electrs: true,
        ..Default::default()
    })
    .expect("BIP118-enforcing regtest node with electrs");
    let url = format!("tcp://{}", chain.electrum_url().expect("electrs runs"));
    (chain, url)
}

fn tagged(tag: &str, what: &str) -> [u8; 32] {
    sha256::Hash::hash(format!("asyncpay/test/{tag}/{what}").as_bytes()).to_byte_array()
}

/// Channel secrets of `side` in the channel named `tag`: distinct per channel and party.
pub fn secrets(tag: &str, side: Party) -> ChannelSecrets {
    ChannelSecrets {
        key: SecretKey::from_bytes(tagged(tag, &format!("{side:?}/key"))).expect("valid scalar"),
        nonce_seed: NonceSeed::from_bytes(tagged(tag, &format!("{side:?}/nonces"))),
    }
}

/// A BDK wallet in `dir`, funded from the faucet with `coins` and synced over electrs.
pub fn funded_wallet(
    chain: &Regtest,
    url: &str,
    dir: &Path,
    name: &str,
    coins: &[u64],
) -> anyhow::Result<Wallet> {
    let seed = WalletSeed::from_bytes(tagged(name, "wallet-seed"));
    let mut wallet =
        Wallet::create_or_load(dir.join(format!("{name}.sqlite")), &seed, Network::Regtest)?;
    let mut last = None;
    for &sats in coins {
        let address = wallet.new_address()?;
        let (outpoint, _) = chain.fund(&address.script_pubkey(), Amount::from_sat(sats))?;
        last = Some(outpoint.txid);
    }
    if let Some(txid) = last {
        chain.confirm(&txid)?;
    }
    chain.wait_for_electrs_tip()?;
    wallet.sync(&Electrum::new(url))?;
    ensure!(
        wallet.balance().confirmed == Amount::from_sat(coins.iter().sum()),
        "{name}'s wallet sees {} of its coins after a sync over electrs",
        wallet.balance().confirmed
    );
    Ok(wallet)
}

/// One package that went through `submitpackage`.
#[derive(Debug, Clone)]
pub struct Published {
    /// What the parent is.
    pub kind: &'static str,
    /// The parent.
    pub parent: Transaction,
    /// The child and its figures.
    pub child: CpfpChild,
}

impl Published {
    /// A line of figures for the report.
    pub fn report(&self) {
        println!(
            "CPFP | {} | parent {} vB | child {} vB | fee {} sat | package {} sat/vB |",
            self.kind,
            self.child.parent_vbytes,
            self.child.child_vbytes,
            self.child.fee.to_sat(),
            self.child.package_sat_per_vb(),
        );
    }
}

/// Submits `parent` with a CPFP child from `wallet` through `submitpackage` and records the
/// child in the wallet. Fails with the node's answer if the package is refused.
pub fn publish(
    chain: &Regtest,
    wallet: &mut Wallet,
    kind: &'static str,
    parent: &Transaction,
) -> anyhow::Result<Published> {
    let anchor = parent
        .output
        .iter()
        .position(|o| o.script_pubkey == ScriptBuf::new_p2a())
        .context("parent carries a pay-to-anchor output")?;
    let child = wallet.cpfp_child(parent, anchor as u32, feerate())?;
    let answer: Value = chain.submit_package(&[parent.clone(), child.tx.clone()])?;
    ensure!(
        answer["package_msg"] == "success",
        "node refused the {kind} package: {answer}"
    );
    wallet.record_broadcast(std::slice::from_ref(&child.tx))?;
    Ok(Published {
        kind,
        parent: parent.clone(),
        child,
    })
}

/// The unspent output at `outpoint` as the node sees it.
pub fn utxo(chain: &Regtest, outpoint: &OutPoint) -> anyhow::Result<Option<(Amount, ScriptBuf)>> {
    let v: Value = chain.rpc(
        "gettxout",
        &[json!(outpoint.txid.to_string()), json!(outpoint.vout)],
    )?;
    if v.is_null() {
        return Ok(None);
    }
    let sats = (v["value"].as_f64().context("value")? * 1e8).round() as u64;
    let spk = hex::decode(v["scriptPubKey"]["hex"].as_str().context("hex")?)?;
    Ok(Some((Amount::from_sat(sats), ScriptBuf::from_bytes(spk))))
}

/// A party: its channel (absent while killed), its snapshot file and what it did.
pub struct Peer {
    pub side: Party,
    pub tag: String,
    pub channel: Option<Channel>,
    pub store: PathBuf,
    pub persists: usize,
    pub events: Vec<Event>,
    pub broadcasts: Vec<Transaction>,
    pub watched: BTreeSet<OutPoint>,
    pub restarts: usize,
    /// The chain height this party has processed.
    pub scanned: u64,
    /// The payout key its wallet gave the channel.
    pub payout: PublicKey,
    /// Its wallet: funds the channel (A) and pays CPFP fees; receives the payout.
    pub wallet: Wallet,
}

/// Where a party keeps the settlement leaf hashes of its snapshot file.
fn log_path(store: &std::path::Path) -> std::path::PathBuf {
    store.with_extension("leaves")
}

impl Peer {
    pub fn channel(&self) -> &Channel {
        self.channel.as_ref().expect("party is running")
    }

    /// The last snapshot on disk, with its settlement leaf hashes (kept beside it, as a
    /// store keeps them: they are not in the snapshot's JSON).
    pub fn stored(&self) -> anyhow::Result<Snapshot> {
        let bytes = std::fs::read(&self.store)
            .with_context(|| format!("{:?} has a snapshot file", self.side))?;
        let mut snapshot: Snapshot = serde_json::from_slice(&bytes)?;
        let log = std::fs::read(log_path(&self.store))
            .with_context(|| format!("{:?} has a leaf hash file", self.side))?;
        snapshot.settlement_leaf_hashes = std::sync::Arc::new(serde_json::from_slice(&log)?);
        Ok(snapshot)
    }

    pub fn completed(&self) -> Vec<u64> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::StateCompleted { state, .. } => Some(*state),
                _ => None,
            })
            .collect()
    }

    pub fn has(&self, wanted: impl Fn(&Event) -> bool) -> bool {
        self.events.iter().any(wanted)
    }
}

/// Where a party is killed: right after its `at`-th persist (counted from its start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kill {
    pub side: Party,
    pub at: usize,
}

/// Two parties and the connection between them.
pub struct Pair {
    pub a: Peer,
    pub s: Peer,
    pub to_a: VecDeque<Vec<u8>>,
    pub to_s: VecDeque<Vec<u8>>,
    pub kill: Option<Kill>,
    /// Set when the kill happened.
    pub killed: Option<Kill>,
    /// Peer messages a party refused, with the reason.
    pub refused: Vec<String>,
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

impl Pair {
    /// A (opener) and S (acceptor) of the channel `tag`, with snapshot files in `dir` and
    /// payout keys from their wallets. A sends its open; S accepts; the driver waits at
    /// A's `Accepted` event (see [`Pair::fund`]).
    pub fn open(
        chain: &Regtest,
        dir: &Path,
        tag: &str,
        capacity_sat: u64,
        push_sat: u64,
        wallet_a: Wallet,
        wallet_s: Wallet,
    ) -> anyhow::Result<Pair> {
        let height = chain.height()?;
        let peer = |side: Party, mut wallet: Wallet| -> anyhow::Result<Peer> {
            Ok(Peer {
                side,
                tag: tag.to_string(),
                channel: None,
                store: dir.join(format!("{tag}-{side:?}.json")),
                persists: 0,
                events: vec![],
                broadcasts: vec![],
                watched: BTreeSet::new(),
                restarts: 0,
                scanned: height,
                payout: wallet.payout_key()?.0,
                wallet,
            })
        };
        let mut pair = Pair {
            a: peer(Party::A, wallet_a)?,
            s: peer(Party::S, wallet_s)?,
            to_a: VecDeque::new(),
            to_s: VecDeque::new(),
            kill: None,
            killed: None,
            refused: vec![],
        };
        let terms = OpenTerms {
            capacity_sat,
            push_sat,
            shared_delay: DELAY,
            update_window: WINDOW,
            payout_key: pair.a.payout,
        };
        let id = ChannelId(tagged(tag, "channel-id"));
        let (channel, actions) = Channel::open(secrets(tag, Party::A), id, terms, height as u32)?;
        pair.a.channel = Some(channel);
        pair.run(Party::A, actions)?;
        // S learns of the channel from A's open message.
        let bytes = pair.to_s.pop_front().context("A sent its open")?;
        let Decoded::Message(PeerMessage::Channel(Message::Open(open))) =
            PeerMessage::decode(&bytes)?
        else {
            bail!("A's first message is its open");
        };
        let (channel, actions) =
            Channel::accept(secrets(tag, Party::S), &open, pair.s.payout, height as u32)?;
        pair.s.channel = Some(channel);
        pair.run(Party::S, actions)?;
        pair.pump()?;
        Ok(pair)
    }

    /// On A's `Accepted` event its wallet builds the funding transaction; state 0 is signed;
    /// on `ReadyToFund` the wallet broadcasts it over electrs; a block confirms it and both
    /// parties see it. Returns the funding transaction.
    pub fn fund(&mut self, chain: &Regtest, url: &str) -> anyhow::Result<FundingTx> {
        let (script, capacity) = self
            .a
            .events
            .iter()
            .find_map(|e| match e {
                Event::Accepted {
                    funding_script_pubkey,
                    capacity_sat,
                } => Some((funding_script_pubkey.clone(), *capacity_sat)),
                _ => None,
            })
            .context("A's channel was accepted")?;
        let funding = self
            .a
            .wallet
            .build_funding(script, Amount::from_sat(capacity), feerate())?;
        self.input(
            Party::A,
            Input::Command(Command::FundingBuilt {
                outpoint: funding.outpoint(),
            }),
        )?;
        self.pump()?;
        ensure!(
            self.a.has(|e| *e == Event::ReadyToFund),
            "state 0 complete before funding"
        );
        let txid = self.a.wallet.broadcast(&Electrum::new(url), &funding.tx)?;
        ensure!(chain.in_mempool(&txid)?, "electrs relayed the funding");
        self.mine(chain, url, 1)?;
        for peer in [&self.a, &self.s] {
            ensure!(
                peer.has(|e| *e == Event::FundingConfirmed),
                "{:?} saw the funding confirm",
                peer.side
            );
        }
        Ok(funding)
    }

    pub fn peer(&mut self, side: Party) -> &mut Peer {
        match side {
            Party::A => &mut self.a,
            Party::S => &mut self.s,
        }
    }

    /// Feeds one input to a running party and carries out its actions.
    pub fn input(&mut self, side: Party, input: Input) -> anyhow::Result<()> {
        let channel = self
            .peer(side)
            .channel
            .as_mut()
            .context("party is running")?;
        let actions = channel.handle(input)?;
        self.run(side, actions)
    }

    /// Carries out actions in order; persists reach the disk before anything after them.
    fn run(&mut self, side: Party, actions: Vec<Action>) -> anyhow::Result<()> {
        for action in actions {
            match action {
                Action::Persist(snapshot) => {
                    let peer = self.peer(side);
                    // The leaf hashes first: a log ahead of its snapshot is harmless.
                    write_synced(
                        &log_path(&peer.store),
                        &serde_json::to_vec(&*snapshot.settlement_leaf_hashes)?,
                    )?;
                    write_synced(&peer.store, &serde_json::to_vec(&*snapshot)?)?;
                    peer.persists += 1;
                    let here = Kill {
                        side,
                        at: peer.persists,
                    };
                    if self.kill == Some(here) {
                        self.kill = None;
                        self.killed = Some(here);
                        let peer = self.peer(side);
                        peer.channel = None;
                        // The connection dies with the process: what was in flight is lost.
                        self.to_a.clear();
                        self.to_s.clear();
                        return Ok(());
                    }
                }
                Action::Send(msg) => {
                    if msg.carries_commitment() {
                        let stored = self.peer(side).stored()?;
                        ensure!(
                            stored.covers(&msg),
                            "{side:?} sent {} before persisting what makes it safe",
                            msg.name()
                        );
                    }
                    let bytes = PeerMessage::Channel(msg).encode();
                    match side {
                        Party::A => self.to_s.push_back(bytes),
                        Party::S => self.to_a.push_back(bytes),
                    }
                }
                Action::Broadcast(tx) => self.peer(side).broadcasts.push(tx),
                Action::Watch(outpoint) => {
                    self.peer(side).watched.insert(outpoint);
                }
                Action::Event(event) => self.peer(side).events.push(event),
            }
        }
        Ok(())
    }

    /// Delivers messages until both directions are empty; messages to a party that is down
    /// are lost. A refused message is recorded, not fatal.
    pub fn pump(&mut self) -> anyhow::Result<()> {
        for _ in 0..1_000 {
            let (side, bytes) = if let Some(b) = self.to_s.pop_front() {
                (Party::S, b)
            } else if let Some(b) = self.to_a.pop_front() {
                (Party::A, b)
            } else {
                return Ok(());
            };
            let Some(channel) = self.peer(side).channel.as_mut() else {
                continue;
            };
            match channel.handle(Input::PeerBytes(bytes)) {
                Ok(actions) => self.run(side, actions)?,
                Err(e) => self.refused.push(format!("{side:?}: {e}")),
            }
        }
        bail!("messages never stopped")
    }

    /// Brings a killed party back from its snapshot file.
    pub fn restart(&mut self, side: Party) -> anyhow::Result<()> {
        let peer = self.peer(side);
        ensure!(peer.channel.is_none(), "{side:?} is down");
        let snapshot = peer.stored()?;
        peer.channel = Some(Channel::restore(secrets(&peer.tag, side), snapshot)?);
        peer.restarts += 1;
        Ok(())
    }

    /// A new connection: both parties send their reestablish, then messages flow.
    pub fn reconnect(&mut self) -> anyhow::Result<()> {
        for side in [Party::A, Party::S] {
            if self.peer(side).channel.is_some() {
                self.input(side, Input::Connected)?;
            }
        }
        self.pump()
    }

    /// Mines `n` blocks, lets electrs and the wallets catch up, and feeds every new block to
    /// both parties: each transaction as `Confirmed`, spends of watched outpoints as `Spend`,
    /// then the height.
    pub fn mine(&mut self, chain: &Regtest, url: &str, n: u64) -> anyhow::Result<()> {
        chain.mine(n)?;
        chain.wait_for_electrs_tip()?;
        self.a.wallet.sync(&Electrum::new(url))?;
        self.s.wallet.sync(&Electrum::new(url))?;
        self.scan(chain)
    }

    /// Feeds the blocks each running party has not seen yet.
    pub fn scan(&mut self, chain: &Regtest) -> anyhow::Result<()> {
        let tip = chain.height()?;
        for side in [Party::A, Party::S] {
            if self.peer(side).channel.is_none() {
                continue;
            }
            let from = self.peer(side).scanned + 1;
            for height in from..=tip {
                let hash: bitcoin::BlockHash = chain.rpc("getblockhash", &[json!(height)])?;
                let block = chain.block(&hash)?;
                for tx in &block.txdata {
                    self.input(
                        side,
                        Input::Chain(ChainEvent::Confirmed {
                            txid: tx.compute_txid(),
                            height: height as u32,
                        }),
                    )?;
                    let spends_watched = tx
                        .input
                        .iter()
                        .any(|i| self.peer(side).watched.contains(&i.previous_output));
                    if spends_watched {
                        self.input(
                            side,
                            Input::Chain(ChainEvent::Spend {
                                tx: tx.clone(),
                                confirmed_at: Some(height as u32),
                            }),
                        )?;
                    }
                }
                self.input(
                    side,
                    Input::Chain(ChainEvent::Block {
                        height: height as u32,
                    }),
                )?;
                self.peer(side).scanned = height;
            }
        }
        Ok(())
    }

    /// The transactions `side` asked to publish since the last call.
    pub fn take_broadcasts(&mut self, side: Party) -> Vec<Transaction> {
        std::mem::take(&mut self.peer(side).broadcasts)
    }

    /// Runs a unilateral close by `side` to the end: its latest update and, after the shared
    /// delay, the settlement go through the mempool as CPFP packages paid by `wallet`; both
    /// parties see the settlement confirm. Returns the two packages.
    pub fn force_close(
        &mut self,
        chain: &Regtest,
        url: &str,
        side: Party,
    ) -> anyhow::Result<(Published, Published)> {
        self.input(side, Input::Command(Command::ForceClose))?;
        let update = match self.take_broadcasts(side).as_slice() {
            [tx] => tx.clone(),
            other => bail!("{side:?} asked to publish {} transactions", other.len()),
        };
        let update = publish(chain, &mut self.peer(side).wallet, "update U_n", &update)?;
        let mut settlement = None;
        for _ in 0..=DELAY {
            self.mine(chain, url, 1)?;
            if let Some(tx) = self.take_broadcasts(side).pop() {
                settlement = Some(tx);
                break;
            }
        }
        let settlement = settlement.context("settlement asked for within the delay")?;
        ensure!(
            chain.confirmations(&update.parent.compute_txid())? == u64::from(DELAY),
            "settlement is asked for exactly when it can enter the next block"
        );
        let settlement = publish(
            chain,
            &mut self.peer(side).wallet,
            "settlement SE_n",
            &settlement,
        )?;
        self.mine(chain, url, 1)?;
        ensure!(
            chain.confirmations(&settlement.parent.compute_txid())? == 1,
            "settlement confirmed"
        );
        Ok((update, settlement))
    }

    /// Ends the pair and hands back the wallets (A's, S's).
    pub fn into_wallets(self) -> (Wallet, Wallet) {
        (self.a.wallet, self.s.wallet)
    }

    /// Both parties' phase.
    pub fn phases(&self) -> (Phase, Phase) {
        (self.a.channel().phase(), self.s.channel().phase())
    }
}

/// The value paid to `script` by `tx`, checked against the node's UTXO set.
pub fn paid_to(chain: &Regtest, tx: &Transaction, script: &ScriptBuf) -> anyhow::Result<Amount> {
    let txid: Txid = tx.compute_txid();
    let mut total = Amount::ZERO;
    for (vout, out) in tx.output.iter().enumerate() {
        if &out.script_pubkey == script {
            let on_chain = utxo(
                chain,
                &OutPoint {
                    txid,
                    vout: vout as u32,
                },
            )?
            .context("payout is unspent on chain")?;
            ensure!(on_chain == (out.value, script.clone()), "node agrees");
            total += out.value;
        }
    }
    Ok(total)
}

/// The key-path P2TR script of a payout key (what the settlement pays).
pub fn payout_script(key: &PublicKey) -> ScriptBuf {
    ScriptBuf::new_p2tr(
        &bitcoin::secp256k1::Secp256k1::verification_only(),
        (*key).into(),
        None,
    )
}
