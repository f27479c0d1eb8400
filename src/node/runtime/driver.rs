//! The driver: one task that owns the node core and carries out its outputs in order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bdk_electrum::electrum_client::{self, ElectrumApi};
use bitcoin::{Amount, FeeRate, OutPoint, Transaction, Txid};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::chain::electrum::Electrum;
use crate::chain::rpc::Rpc;
use crate::chain::wallet::Wallet;
use crate::crypto::keys::PublicKey;
use crate::mailbox::client::MailboxClient;
use crate::mailbox::envelope::{seal_for, Envelope, EnvelopeId};
use crate::mailbox::keys::{Contact, NodeKey, VerifiedContact};
use crate::net::{Allow, Listener};
use crate::node::core::{
    node_key, ChangeSet, NodeCore, NodeInput, NodeOutput, Records, Role, DEFAULT_ROUTER_POLICY,
};
use crate::node::driver::{Driver, Io};
use crate::node::files::{load_seed, private_dir, private_file, receipt_epoch, write_private};
use crate::node::store::Store;
use crate::protocol::channel::Snapshot;
use crate::protocol::messages::ChannelId;
use crate::protocol::payment::PaymentId;

use super::events::{NodeEvent, Reporter};
use super::handle::{NodeHandle, NodeInfo};
use super::peers::spawn_connection;
use super::request::Request;
use super::towers::spawn_tower_pusher;
use super::{emit, lsp_policy, now, warn, CrashPoint, NodeConfig, RuntimeError};

/// How long a sale letter waits for its payee, in a mailbox or handed over: a week.
const LETTER_LIFETIME_SECS: u64 = 7 * 24 * 3600;

pub(super) enum Ev {
    Frame {
        from: PublicKey,
        frame: Vec<u8>,
    },
    Connected {
        peer: PublicKey,
        conn: u64,
        writer: mpsc::UnboundedSender<Vec<u8>>,
    },
    Disconnected {
        peer: PublicKey,
        conn: u64,
    },
    Control {
        request: Box<Request>,
        reply: oneshot::Sender<Result<Value, String>>,
    },
    Tick,
}

/// The process's side of the [`Io`]: SQLite, Noise connections, the mailbox over HTTP, the
/// chain through Electrum and bitcoind, watchtowers.
pub(super) struct RuntimeIo {
    pub(super) store: Store,
    pub(super) wallet: Wallet,
    pub(super) mailbox_key: NodeKey,
    pub(super) mailbox: MailboxClient,
    pub(super) electrum: Electrum,
    pub(super) rpc: Option<Rpc>,
    pub(super) writers: HashMap<PublicKey, (u64, mpsc::UnboundedSender<Vec<u8>>)>,
    /// The redial loop of each peer we dial; a new `ctl connect` replaces the old loop.
    pub(super) dialers: HashMap<PublicKey, tokio::task::AbortHandle>,
    /// How long a peer connection may stay silent.
    pub(super) idle: Duration,
    pub(super) allow: Arc<RwLock<HashSet<PublicKey>>>,
    pub(super) events: mpsc::UnboundedSender<Ev>,
    pub(super) next_conn: u64,
    pub(super) shared_delay: u16,
    pub(super) height: u32,
    /// Watched outpoints and the spends already handed to the core: (txid, confirmed).
    pub(super) watches: BTreeMap<OutPoint, HashSet<(Txid, bool)>>,
    pub(super) funding: HashMap<ChannelId, Transaction>,
    pub(super) stop: bool,
    pub(super) node_secret: Arc<crate::crypto::keys::SecretKey>,
    /// The Electrum connection, kept between polls; dropped on error and reopened.
    pub(super) chain: Option<electrum_client::Client>,
    /// Fault injection (`ctl crash-at`): where to die, and the persists seen since armed.
    pub(super) crash: Option<(CrashPoint, u64)>,
    /// How often each transaction was submitted, by [`crate::chain::rpc::escalation_key`] (the same state bound
    /// to another input counts as the same): a transaction the channel publishes again (it is
    /// not confirmed yet) goes out with a child at a higher feerate each time.
    pub(super) attempts: HashMap<bitcoin::hashes::sha256::Hash, u32>,
    /// The watchtowers' pushers, and the newest state of each channel handed to them.
    pub(super) towers: (
        Vec<mpsc::UnboundedSender<Snapshot>>,
        HashMap<ChannelId, u64>,
    ),
    /// Prints each report and hands it to the handle's subscribers.
    pub(super) reporter: Reporter,
}

/// Runs a node until it is told to stop (`Request::Stop`): opens its stores and wallet,
/// listens for peers, serves the control API on loopback, polls the chain, and hands every
/// event to the core. Must run on a multi-threaded tokio runtime (the wallet and the
/// Electrum client block; they run under `block_in_place`).
pub async fn run(config: NodeConfig) -> Result<(), RuntimeError> {
    start(config).await?.wait().await
}

/// Starts a node (as [`run`] does) and returns once it is ready: its stores and wallet are
/// open, it listens for peers and serves its control API, and `node.json` is written. The
/// driver goes on in a task of its own until it is told to stop; the handle carries requests
/// to it.
pub async fn start(config: NodeConfig) -> Result<NodeHandle, RuntimeError> {
    let args = &config;
    private_dir(&args.data_dir)?;
    let seed = load_seed(&args.data_dir)?;
    // The stores hold withheld signatures, PTLC secrets and the wallet: created 0600 before
    // SQLite opens them (SQLite gives its WAL and SHM files the database file's mode).
    private_file(&args.data_dir.join("node.db"))?;
    private_file(&args.data_dir.join("wallet.sqlite"))?;
    let store = Store::open(&args.data_dir.join("node.db"))?;
    let records = match args.role {
        Role::Payer => Records::Payer(store.payments()?),
        Role::Lsp => Records::Lsp(lsp_policy(args.ptlc_delta), store.payments()?),
        Role::Payee => Records::Payee(store.payments()?),
        Role::Router => Records::Router(DEFAULT_ROUTER_POLICY, store.payments()?),
    };
    let wallet_seed = super::wallet_seed(&seed);
    let mut wallet = tokio::task::block_in_place(|| -> Result<Wallet, RuntimeError> {
        let mut w = Wallet::create_or_load(
            args.data_dir.join("wallet.sqlite"),
            &wallet_seed,
            args.network,
        )?;
        args.electrum.validate()?;
        w.sync(&args.electrum)?;
        Ok(w)
    })?;
    let height = wallet.tip_height();
    // What an offline device of this node knows of the chain (`pos accept`).
    store.put_tip(height, now())?;
    let mut core = NodeCore::restore(seed, height, store.channels()?, records)?;
    core.set_receipt_epoch(receipt_epoch(&args.data_dir)?);
    core.restore_reverse(store.reverse_payments()?);
    let node_secret = Arc::new(node_key(&seed));
    let mailbox_key = NodeKey::from_secret_bytes(node_secret.to_secret_bytes())?;
    let rpc = args
        .rpc
        .as_ref()
        .map(|(url, cookie)| Rpc::new(url.clone(), cookie.clone()));
    let _ = &mut wallet;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let known: HashSet<PublicKey> = store.peers()?.into_iter().map(|(k, _)| k).collect();
    let allow = Arc::new(RwLock::new(known));
    let allow_fn = || {
        let allow = allow.clone();
        Allow::from_fn(move |k| allow.read().map(|s| s.contains(k)).unwrap_or(false))
    };
    // Peers that dial us keep our address: a restarted node listens where it did before,
    // unless told otherwise. If another process took that port meanwhile (an ephemeral port
    // is free for anyone once we stop), the node listens where it was told instead and says
    // so: peers that dial it must learn the new address, peers it dials are not affected.
    let addr_file = args.data_dir.join("peer.addr");
    let previous: Option<std::net::SocketAddr> = match std::fs::read_to_string(&addr_file) {
        Ok(text) if args.listen.port() == 0 => text.trim().parse().ok(),
        _ => None,
    };
    let listener = match previous {
        Some(addr) => match Listener::bind(addr, node_secret.clone(), allow_fn()).await {
            Ok(listener) => listener,
            Err(e) => {
                warn(
                    json!({"event": "listen_moved", "previous": addr.to_string(), "error": e.to_string()}),
                );
                Listener::bind(args.listen, node_secret.clone(), allow_fn()).await?
            }
        },
        None => Listener::bind(args.listen, node_secret.clone(), allow_fn()).await?,
    };
    let peer_addr = listener.local_addr()?;
    write_private(&addr_file, peer_addr.to_string().as_bytes())?;

    let core_watches: BTreeMap<OutPoint, HashSet<(Txid, bool)>> = core
        .watched()
        .into_iter()
        .map(|o| (o, HashSet::new()))
        .collect();
    let reporter = Reporter::new();
    let mut node = Node::new(
        core,
        RuntimeIo {
            store,
            wallet,
            mailbox_key,
            mailbox: MailboxClient::new(&args.mailbox)?,
            electrum: args.electrum.clone(),
            rpc,
            writers: HashMap::new(),
            dialers: HashMap::new(),
            idle: args.idle_timeout.max(Duration::from_secs(1)),
            allow,
            events: tx.clone(),
            next_conn: 0,
            shared_delay: args.shared_delay(),
            height,
            // The watches announced before a restart are rebuilt from the channels; without them
            // a restarted node would miss a stale state published while it was away.
            watches: core_watches,
            funding: HashMap::new(),
            stop: false,
            node_secret,
            chain: None,
            crash: args.crash_at.clone().map(|p| (p, 0)),
            attempts: HashMap::new(),
            towers: (
                args.watchtowers
                    .iter()
                    .map(|url| spawn_tower_pusher(url, seed, reporter.clone()))
                    .collect::<Result<_, RuntimeError>>()?,
                HashMap::new(),
            ),
            reporter: reporter.clone(),
        },
    );

    // Accept peers: every handshake runs in its own task, within the caps of `Admission`
    // (a silent socket cannot hold the door for anyone else).
    {
        let tx = tx.clone();
        let mut admissions = listener.serve(args.admission);
        let idle = args.idle_timeout.max(Duration::from_secs(1));
        let reporter = reporter.clone();
        tokio::spawn(async move {
            // Ends with the driver: the listener and what this task holds (the reporter
            // among them, so that the event streams close) do not outlive a stopped node.
            loop {
                let admitted = tokio::select! {
                    admitted = admissions.next() => admitted,
                    _ = tx.closed() => None,
                };
                let Some(admitted) = admitted else { break };
                let _ = tx.send(Ev::Tick);
                spawn_connection(
                    admitted.connection,
                    tx.clone(),
                    None,
                    Some(admitted.superseded),
                    idle,
                    reporter.clone(),
                );
            }
        });
    }
    // Dial known peers.
    for (key, addr) in node.io.store.peers()? {
        if let Some(addr) = addr {
            node.io.dial(key, addr, None);
        }
    }
    // Control server.
    let token = hex::encode(rand::random::<[u8; 16]>());
    write_private(&args.data_dir.join("control.token"), token.as_bytes())?;
    let control = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let control_addr = control.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/v1/{command}",
            axum::routing::post(super::control::control_handler),
        )
        .with_state(super::control::ControlState {
            token: Arc::new(token),
            events: tx.clone(),
        });
    // The server shuts down gracefully after the event loop ends, so the answer to `stop`
    // (and to any other request in flight) reaches its caller before the process exits.
    let (control_stop, control_stopped) = oneshot::channel::<()>();
    // Loopback only, but a local process could still hold connections open: the same
    // header, body and connection limits as the mailbox server.
    let control_limits = crate::net::http::HttpLimits {
        max_connections: 64,
        max_connections_per_ip: 64,
        ..Default::default()
    };
    let control_server = tokio::spawn(crate::net::http::serve(
        control,
        app,
        control_limits,
        async {
            let _ = control_stopped.await;
        },
    ));
    // Chain poller.
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if tx.send(Ev::Tick).is_err() {
                    return;
                }
            }
        });
    }
    let info = json!({
        "node_key": node.core.public_key().to_string(),
        "peer_addr": peer_addr.to_string(),
        "control_url": format!("http://{control_addr}"),
        "role": args.role,
        "pid": std::process::id(),
    });
    write_private(
        &args.data_dir.join("node.json"),
        info.to_string().as_bytes(),
    )?;
    emit(json!({"event": "ready", "node": info}));

    let entropy: [u8; 32] = rand::random();
    let outputs = node.core.handle(NodeInput::Entropy(entropy))?;
    node.carry_out(outputs).await?;
    let outputs = node.core.handle(NodeInput::Started)?;
    node.carry_out(outputs).await?;
    let handle_info = NodeInfo {
        node_key: node.core.public_key(),
        peer_addr,
        control_url: format!("http://{control_addr}"),
    };
    let data_dir = args.data_dir.clone();
    let task = tokio::spawn(async move {
        let mut last_poll = Instant::now() - Duration::from_secs(10);
        while let Some(ev) = rx.recv().await {
            if let Err(e) = node.on_event(ev, &mut last_poll).await {
                tracing::warn!("{e:#}");
                node.io.reporter.report(NodeEvent::Error {
                    message: format!("{e:#}"),
                });
            }
            if node.io.stop {
                break;
            }
        }
        let _ = std::fs::remove_file(data_dir.join("node.json"));
        // Requests still queued are answered "stopping" as their reply channels drop.
        drop(rx);
        let _ = control_stop.send(());
        if tokio::time::timeout(Duration::from_secs(5), control_server)
            .await
            .is_err()
        {
            tracing::warn!("control server did not finish its answers within 5 s");
        }
        Ok(())
    });
    Ok(NodeHandle {
        events: tx,
        task,
        info: handle_info,
        reporter,
    })
}

impl Node {
    async fn on_event(&mut self, ev: Ev, last_poll: &mut Instant) -> Result<(), RuntimeError> {
        match ev {
            Ev::Frame { from, frame } => match self.core.handle(NodeInput::Frame { from, frame }) {
                Ok(outputs) => self.carry_out(outputs).await?,
                Err(e) => self.io.reporter.report(NodeEvent::Refused {
                    peer: from,
                    error: e.to_string(),
                }),
            },
            Ev::Connected { peer, conn, writer } => {
                self.io.next_conn = self.io.next_conn.max(conn);
                self.io.writers.insert(peer, (conn, writer));
                self.io.reporter.report(NodeEvent::Connected { peer });
                let outputs = self.core.handle(NodeInput::Connected { peer })?;
                self.carry_out(outputs).await?;
            }
            Ev::Disconnected { peer, conn } => {
                if self.io.writers.get(&peer).is_some_and(|(c, _)| *c == conn) {
                    self.io.writers.remove(&peer);
                }
            }
            Ev::Control { request, reply } => match *request {
                Request::Connect { node_key, addr } => {
                    self.io.connect_command(node_key, addr, reply)
                }
                request => {
                    let result = self.control(request).await;
                    let _ = reply.send(result.map_err(|e| e.to_string()));
                }
            },
            Ev::Tick => {
                if last_poll.elapsed() >= Duration::from_millis(250) {
                    *last_poll = Instant::now();
                    // Letters handed over are sold while the chain server is away too.
                    let polled = self.poll_chain().await;
                    let drained = self.drain_inbox().await;
                    // New states reach the watchtower whatever failed above.
                    self.feed_tower();
                    polled?;
                    drained?;
                }
                self.feed_tower();
            }
        }
        Ok(())
    }

    /// Hands every channel whose complete state is newer than what the pusher has to the
    /// watchtower's pusher. The core stored the state before it reached the snapshot.
    fn feed_tower(&mut self) {
        let (pushers, handed) = &mut self.io.towers;
        if pushers.is_empty() {
            return;
        }
        for (id, entry) in self.core.channels() {
            let snapshot = entry.channel.snapshot();
            let Some(number) = snapshot.complete.as_ref().map(|r| r.body.number) else {
                continue;
            };
            if snapshot.funding_outpoint.is_none() || handed.get(id) == Some(&number) {
                continue;
            }
            handed.insert(*id, number);
            for pusher in pushers.iter() {
                let _ = pusher.send(snapshot.clone());
            }
        }
    }

    pub(super) async fn fetch_letters(&mut self) -> Result<usize, RuntimeError> {
        // Letters accepted at the counter first: their slots are reserved before any mailbox
        // letter naming them is handled.
        self.drain_inbox().await?;
        let messages = self
            .io
            .mailbox
            .fetch(&self.io.mailbox_key, 32, Duration::from_secs(0))
            .await?;
        let mut handled = vec![];
        for message in &messages {
            let opened = message.open(&self.io.mailbox_key);
            self.take_letter(opened, false).await?;
            // Stored (or refused for good) before it is deleted from the mailbox.
            handled.push(message.id);
        }
        if !handled.is_empty() {
            self.io.mailbox.ack(&self.io.mailbox_key, &handled).await?;
        }
        Ok(handled.len())
    }

    /// Handles the letters handed to this node (`asyncpay pos accept` queues them in the
    /// store's inbox, also while the node runs), as letters from its mailbox.
    pub(super) async fn drain_inbox(&mut self) -> Result<usize, RuntimeError> {
        let waiting = self.io.store.inbox()?;
        for (payment, bytes) in &waiting {
            let opened = Envelope::decode(bytes).and_then(|e| e.open(&self.io.mailbox_key));
            self.take_letter(opened, true).await?;
            // Stored (or refused for good) before it leaves the inbox.
            self.io.store.delete_inbox(payment)?;
        }
        Ok(waiting.len())
    }

    /// Hands an opened letter to the core (`handed`: accepted at the counter), or reports
    /// why it was refused.
    async fn take_letter(
        &mut self,
        opened: Result<crate::mailbox::envelope::Opened, crate::mailbox::envelope::EnvelopeError>,
        handed: bool,
    ) -> Result<(), RuntimeError> {
        match opened {
            Ok(opened) => match self.core.handle(if handed {
                NodeInput::HandedLetter {
                    bytes: opened.payload,
                }
            } else {
                NodeInput::Letter {
                    bytes: opened.payload,
                }
            }) {
                Ok(outputs) => self.carry_out(outputs).await?,
                Err(e) => self.io.reporter.report(NodeEvent::LetterRefused {
                    error: e.to_string(),
                }),
            },
            Err(e) => self.io.reporter.report(NodeEvent::LetterRefused {
                error: format!("{e:?}"),
            }),
        }
        Ok(())
    }

    async fn poll_chain(&mut self) -> Result<(), RuntimeError> {
        let client = match self.io.chain.take() {
            Some(client) => client,
            None => tokio::task::block_in_place(|| self.io.electrum.connect())?,
        };
        self.poll_chain_with(&client).await?;
        // Kept only while it works: an error above drops it and the next poll reconnects.
        self.io.chain = Some(client);
        Ok(())
    }

    async fn poll_chain_with(
        &mut self,
        client: &electrum_client::Client,
    ) -> Result<(), RuntimeError> {
        let electrum = self.io.electrum.clone();
        let tip = tokio::task::block_in_place(|| client.block_headers_subscribe())?;
        // The answer above is the tip; drop the queued notifications so they do not pile up.
        while client.block_headers_pop_raw()?.is_some() {}
        let height = u32::try_from(tip.height).unwrap_or(u32::MAX);
        if height != self.io.height {
            self.io.height = height;
            tokio::task::block_in_place(|| self.io.wallet.sync(&electrum))?;
            let outputs = self.core.handle(NodeInput::Block { height })?;
            self.carry_out(outputs).await?;
            // What an offline device of this node knows of the chain (`pos accept`).
            self.io.store.put_tip(height, now())?;
        }
        // Funding confirmations.
        let unconfirmed: Vec<OutPoint> = self
            .core
            .channels()
            .values()
            .filter_map(|e| {
                let s = e.channel.snapshot();
                (!s.funding_confirmed)
                    .then_some(s.funding_outpoint)
                    .flatten()
            })
            .collect();
        for outpoint in unconfirmed {
            if let Some(h) = confirmed_height(client, &outpoint.txid)? {
                let outputs = self.core.handle(NodeInput::Confirmed {
                    txid: outpoint.txid,
                    height: h,
                })?;
                self.carry_out(outputs).await?;
            }
        }
        // Spends of watched outpoints.
        let watched: Vec<OutPoint> = self.io.watches.keys().copied().collect();
        for outpoint in watched {
            let Ok(parent) = tokio::task::block_in_place(|| client.transaction_get(&outpoint.txid))
            else {
                continue;
            };
            let Some(out) = parent.output.get(outpoint.vout as usize) else {
                continue;
            };
            let history =
                tokio::task::block_in_place(|| client.script_get_history(&out.script_pubkey))?;
            for item in history {
                let confirmed_at = u32::try_from(item.height).ok().filter(|h| *h > 0);
                // Each spend goes to the core once when seen and once when confirmed: an old
                // spend handed over again would look like a new stale state to the channel.
                let seen_key = (item.tx_hash, confirmed_at.is_some());
                let fresh = self
                    .io
                    .watches
                    .get_mut(&outpoint)
                    .map(|seen| seen.insert(seen_key))
                    .unwrap_or(false);
                if !fresh {
                    continue;
                }
                let tx = tokio::task::block_in_place(|| client.transaction_get(&item.tx_hash))?;
                if tx.input.iter().any(|i| i.previous_output == outpoint) {
                    let outputs = self.core.handle(NodeInput::Spend { tx, confirmed_at })?;
                    self.carry_out(outputs).await?;
                }
            }
        }
        Ok(())
    }
}

/// The process's node: the one driver over the process's I/O.
pub(super) type Node = Driver<RuntimeIo>;

impl Io for RuntimeIo {
    type Error = RuntimeError;

    /// One SQLite transaction per change set.
    fn persist(&mut self, changes: &ChangeSet, _core: &NodeCore) -> Result<(), RuntimeError> {
        self.store.commit(changes)?;
        self.crash_after_persist();
        Ok(())
    }

    fn before(&mut self, action: &NodeOutput) -> Result<(), RuntimeError> {
        self.crash_before(action);
        Ok(())
    }

    fn send(&mut self, to: PublicKey, frame: Vec<u8>, what: &'static str) -> bool {
        let delivered = match self.writers.get(&to) {
            Some((_, w)) => w.send(frame).is_ok(),
            None => false,
        };
        self.reporter.report(NodeEvent::MessageSent {
            to,
            message: what.to_owned(),
            delivered,
        });
        delivered
    }

    async fn post_letter(
        &mut self,
        payment_id: PaymentId,
        payee: PublicKey,
        bytes: Vec<u8>,
    ) -> Result<(), RuntimeError> {
        let id = payment_id.to_string();
        match self.store.handed(&id)? {
            // Sealed as for the mailbox, kept for the payer to hand over (`ctl letter`).
            // Sealed once: a repeat after a restart hands the same envelope.
            Some(None) => {
                let envelope = self.seal(&payee, bytes)?;
                self.store.put_handed(&id, &envelope.encode())?;
            }
            Some(Some(_)) => {}
            None => self.post(&payee, None, bytes).await?,
        }
        self.reporter.report(NodeEvent::LetterPosted {
            payment_id: Some(payment_id),
            to: None,
        });
        Ok(())
    }

    async fn post_reverse(
        &mut self,
        to: PublicKey,
        bytes: Vec<u8>,
        contact: Option<Value>,
    ) -> Result<(), RuntimeError> {
        self.post(&to, contact, bytes).await?;
        self.reporter.report(NodeEvent::LetterPosted {
            payment_id: None,
            to: Some(to),
        });
        Ok(())
    }

    async fn broadcast(&mut self, tx: Transaction) {
        if let Err(e) = self.publish(&tx).await {
            self.reporter.report(NodeEvent::BroadcastFailed {
                txid: tx.compute_txid(),
                error: format!("{e:#}"),
            });
        }
    }

    fn watch(&mut self, outpoint: OutPoint) {
        self.watches.entry(outpoint).or_default();
    }

    async fn build_funding(
        &mut self,
        channel_id: ChannelId,
        script_pubkey: bitcoin::ScriptBuf,
        capacity_sat: u64,
    ) -> Result<OutPoint, RuntimeError> {
        let funding = tokio::task::block_in_place(|| {
            self.wallet.build_funding(
                script_pubkey,
                Amount::from_sat(capacity_sat),
                FeeRate::from_sat_per_vb(2).expect("small feerate"),
            )
        })?;
        self.store.put_funding(&channel_id, &funding.tx)?;
        let outpoint = funding.outpoint();
        self.funding.insert(channel_id, funding.tx);
        Ok(outpoint)
    }

    async fn publish_funding(&mut self, channel_id: ChannelId) -> Result<(), RuntimeError> {
        let tx = match self.funding.get(&channel_id) {
            Some(tx) => tx.clone(),
            None => self
                .store
                .funding(&channel_id)?
                .ok_or(RuntimeError::NoFunding(channel_id))?,
        };
        let electrum = self.electrum.clone();
        let txid = tokio::task::block_in_place(|| self.wallet.broadcast(&electrum, &tx))?;
        self.reporter
            .report(NodeEvent::FundingBroadcast { channel_id, txid });
        Ok(())
    }

    fn report(&mut self, event: NodeOutput) {
        match event {
            NodeOutput::ChannelEvent { channel_id, event } => {
                self.reporter.channel(channel_id, &event)
            }
            NodeOutput::PaymentEvent(what) => self.reporter.report(NodeEvent::Payment { what }),
            NodeOutput::Refused { peer, error } => {
                self.reporter.report(NodeEvent::Refused { peer, error })
            }
            NodeOutput::Ignored { peer, message_type } => self
                .reporter
                .report(NodeEvent::Ignored { peer, message_type }),
            other => warn(json!({"event": "unexpected_report", "what": format!("{other:?}")})),
        }
    }
}

impl RuntimeIo {
    /// A letter to `to` sealed for its stored contact and signed by this node, as the
    /// mailbox client seals it, kept a week.
    fn seal(&self, to: &PublicKey, bytes: Vec<u8>) -> Result<Envelope, RuntimeError> {
        Ok(seal_for(
            &self.contact(to, None)?,
            Some(&self.mailbox_key),
            EnvelopeId::random(),
            bytes,
            now(),
            LETTER_LIFETIME_SECS,
            false,
        )?)
    }

    /// `to`'s contact card, `card` if given, else the one stored for it; verified.
    fn contact(
        &self,
        to: &PublicKey,
        card: Option<Value>,
    ) -> Result<VerifiedContact, RuntimeError> {
        let contact: Contact = match card {
            Some(card) => serde_json::from_value(card)?,
            None => serde_json::from_str(
                &self
                    .store
                    .contact(to)?
                    .ok_or(RuntimeError::NoContact((*to).into()))?,
            )?,
        };
        Ok(contact.verify()?)
    }

    /// Seals `bytes` to `to`'s mailbox: to the contact card given, or else the one stored
    /// for `to`. (`&mut self`: the driver is `Send` but not `Sync`, and this future holds it
    /// across the post.)
    async fn post(
        &mut self,
        to: &PublicKey,
        card: Option<Value>,
        bytes: Vec<u8>,
    ) -> Result<(), RuntimeError> {
        let verified = self.contact(to, card)?;
        self.mailbox
            .send(
                &verified,
                Some(&self.mailbox_key),
                bytes,
                Duration::from_secs(LETTER_LIFETIME_SECS),
            )
            .await?;
        Ok(())
    }

    /// Dies before `output` if the armed crash point is there.
    fn crash_before(&self, output: &NodeOutput) {
        let hit = match (&self.crash, output) {
            (Some((CrashPoint::Send(want), _)), NodeOutput::Send { what, .. }) => want == what,
            (Some((CrashPoint::PostLetter, _)), NodeOutput::PostLetter { .. }) => true,
            _ => false,
        };
        if hit {
            self.freeze();
        }
    }

    fn crash_after_persist(&mut self) {
        if let Some((CrashPoint::Persist(n), seen)) = &mut self.crash {
            *seen += 1;
            if *seen == *n {
                self.freeze();
            }
        }
    }

    /// Reports the crash point and dies by SIGKILL on the spot: no destructor runs, nothing
    /// is flushed or closed in order, exactly as if the machine had killed it.
    fn freeze(&self) -> ! {
        use std::io::Write as _;
        let point = self
            .crash
            .as_ref()
            .map_or_else(String::new, |(p, _)| p.to_string());
        self.reporter.report(NodeEvent::CrashPoint { point });
        let _ = std::io::stdout().flush();
        let pid = std::process::id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status();
        // Only reached if no `kill` program could be run.
        std::process::abort()
    }

    /// Channel transactions with a P2A anchor pay no fee: they go out as a package with a
    /// CPFP child from the wallet through `submitpackage` (needs the node's RPC), at a
    /// feerate that rises each time the channel publishes the same transaction again. A
    /// transaction without an anchor (a PTLC timeout) pays its own fee and goes out through
    /// `sendrawtransaction`.
    async fn publish(&mut self, tx: &Transaction) -> Result<(), RuntimeError> {
        let Some(rpc) = self.rpc.clone() else {
            return Err(RuntimeError::NoRpc);
        };
        let txid = tx.compute_txid();
        let attempt = {
            let n = self
                .attempts
                .entry(crate::chain::rpc::escalation_key(tx))
                .or_insert(0);
            *n += 1;
            *n - 1
        };
        let published = crate::chain::rpc::publish(&rpc, &mut self.wallet, tx, attempt).await?;
        let feerate = match published {
            crate::chain::rpc::Published::Alone => None,
            crate::chain::rpc::Published::Package { feerate_sat_vb } => Some(feerate_sat_vb),
        };
        self.reporter.report(NodeEvent::TransactionPublished {
            txid,
            attempt,
            feerate_sat_vb: feerate,
        });
        Ok(())
    }
}

fn confirmed_height(
    client: &electrum_client::Client,
    txid: &Txid,
) -> Result<Option<u32>, RuntimeError> {
    let Ok(tx) = tokio::task::block_in_place(|| client.transaction_get(txid)) else {
        return Ok(None);
    };
    let Some(out) = tx.output.first() else {
        return Ok(None);
    };
    let history = tokio::task::block_in_place(|| client.script_get_history(&out.script_pubkey))?;
    Ok(history
        .iter()
        .find(|h| &h.tx_hash == txid && h.height > 0)
        .map(|h| h.height as u32))
}
