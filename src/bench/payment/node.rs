//! The node drivers of the online part: each node core on its own thread and runtime, with
//! its store, its peer connections and its mailbox client, reporting what it does as
//! timestamped [`Note`]s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{chain, fake_outpoint, policy, PaymentBenchError, HEIGHT};
use crate::crypto::keys::{PublicKey, SecretKey};
use crate::mailbox::client::MailboxClient;
use crate::mailbox::keys::{NodeKey, VerifiedContact};
use crate::net::{connect, Allow, Connection, Listener};
use crate::node::core::{node_key, ChangeSet, NodeCore, NodeInput, NodeOutput, Records, Role};
use crate::node::driver::{Driver, Io};
use crate::node::store::Store;
use crate::protocol::messages::ChannelId;
use crate::protocol::payment::PaymentId;

/// Which node a note comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Who {
    A,
    S,
    B,
}

/// Something a node did, and when.
#[derive(Debug, Clone)]
pub(super) struct Note {
    pub(super) who: Who,
    pub(super) t: Instant,
    pub(super) kind: Kind,
}

#[derive(Debug, Clone)]
pub(super) enum Kind {
    /// One input handled: when it arrived, time in the core, time persisting, rows persisted.
    Handled {
        t_in: Instant,
        compute: Duration,
        persist: Duration,
        persists: u32,
        commits: u32,
    },
    /// A payment record was persisted (note time: after the write) for an input that
    /// arrived at `t_in`.
    Payment {
        t_in: Instant,
        id: PaymentId,
        status: String,
        receipt_acked: bool,
    },
    /// A channel snapshot was persisted.
    Channel {
        t_in: Instant,
        peer: PublicKey,
        complete: Option<u64>,
    },
    /// A frame handed to a live connection's writer as its `seq`-th frame, or dropped
    /// (`seq` is `None`) because the peer is not connected; `cause` is the frame whose
    /// handling sent it.
    Sent {
        to: PublicKey,
        /// The message's type ([`crate::protocol::wire::peek_type`]).
        message_type: Option<u16>,
        name: &'static str,
        bytes: usize,
        seq: Option<u64>,
        cause: Option<(PublicKey, u64)>,
    },
    /// A mailbox operation: HTTP requests made and time taken.
    Mailbox {
        what: &'static str,
        requests: u32,
        took: Duration,
    },
    Mark(&'static str),
    Refused(String),
}

pub(super) type Query = Box<dyn FnOnce(&NodeCore) -> Value + Send>;

pub(super) enum Cmd {
    Connect {
        addr: SocketAddr,
        peer: PublicKey,
        reply: oneshot::Sender<Result<(), PaymentBenchError>>,
    },
    Disconnect {
        peer: PublicKey,
        reply: oneshot::Sender<()>,
    },
    Input {
        input: NodeInput,
        reply: oneshot::Sender<Result<(), PaymentBenchError>>,
    },
    Contact {
        payee: PublicKey,
        contact: VerifiedContact,
        reply: oneshot::Sender<()>,
    },
    Fetch {
        reply: oneshot::Sender<Result<usize, PaymentBenchError>>,
    },
    Query {
        f: Query,
        reply: oneshot::Sender<Value>,
    },
    /// Whether a connection to `peer` is up.
    IsConnected {
        peer: PublicKey,
        reply: oneshot::Sender<bool>,
    },
    Stop,
}

pub(super) enum Ev {
    Cmd(Cmd),
    Frame {
        from: PublicKey,
        frame: Vec<u8>,
        t: Instant,
        seq: u64,
    },
    Accepted(Connection),
    Closed {
        peer: PublicKey,
        conn: u64,
    },
}

pub(super) struct Spec {
    pub(super) who: Who,
    pub(super) seed: [u8; 32],
    pub(super) role: Role,
    pub(super) db: PathBuf,
    pub(super) mailbox_url: String,
    pub(super) listen_allow: Option<Vec<PublicKey>>,
    pub(super) commit: Commit,
}

/// The orchestrator's handle on a node thread.
pub(super) struct NodeHandle {
    pub(super) key: PublicKey,
    events: mpsc::UnboundedSender<Ev>,
    addr: Option<SocketAddr>,
    thread: Option<std::thread::JoinHandle<Result<(), PaymentBenchError>>>,
}

impl NodeHandle {
    pub(super) fn spawn(
        spec: Spec,
        notes: mpsc::UnboundedSender<Note>,
    ) -> Result<Self, PaymentBenchError> {
        let key = node_key(&spec.seed).public_key();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let name = format!("bench-{:?}", spec.who);
        let thread = std::thread::Builder::new().name(name).spawn(
            move || -> Result<(), PaymentBenchError> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let (tx, rx) = mpsc::unbounded_channel();
                    let driver = match Node::start(spec, tx.clone(), notes).await {
                        Ok((driver, addr)) => {
                            let _ = ready_tx.send(Ok((tx, addr)));
                            driver
                        }
                        Err(e) => {
                            // The error goes to the spawner, which keeps no handle on this
                            // thread when its node did not start.
                            let _ = ready_tx.send(Err(e));
                            return Ok(());
                        }
                    };
                    driver.run(rx).await
                })
            },
        )?;
        let (events, addr) = ready_rx
            .recv()
            .map_err(PaymentBenchError::NodeThreadEnded)?
            .map_err(|e| PaymentBenchError::NodeStart(Box::new(e)))?;
        Ok(NodeHandle {
            key,
            events,
            addr,
            thread: Some(thread),
        })
    }

    pub(super) fn send(&self, cmd: Cmd) -> Result<(), PaymentBenchError> {
        self.events
            .send(Ev::Cmd(cmd))
            .map_err(|_| PaymentBenchError::NodeStopped)
    }

    pub(super) async fn connect(&self, to: &NodeHandle) -> Result<(), PaymentBenchError> {
        let addr = to.addr()?;
        self.connect_via(addr, to.key).await
    }

    /// Where this node listens for peers.
    pub(super) fn addr(&self) -> Result<SocketAddr, PaymentBenchError> {
        self.addr
            .ok_or(PaymentBenchError::Missing("peer does not listen"))
    }

    /// Dials `peer` at `addr` (its listener, or a relay in front of it).
    pub(super) async fn connect_via(
        &self,
        addr: SocketAddr,
        peer: PublicKey,
    ) -> Result<(), PaymentBenchError> {
        let to_key = peer;
        let (reply, answer) = oneshot::channel();
        self.send(Cmd::Connect {
            addr,
            peer: to_key,
            reply,
        })?;
        answer.await?
    }

    pub(super) async fn disconnect(&self, peer: PublicKey) -> Result<(), PaymentBenchError> {
        let (reply, answer) = oneshot::channel();
        self.send(Cmd::Disconnect { peer, reply })?;
        Ok(answer.await?)
    }

    pub(super) async fn input(&self, input: NodeInput) -> Result<(), PaymentBenchError> {
        let (reply, answer) = oneshot::channel();
        self.send(Cmd::Input { input, reply })?;
        answer.await?
    }

    pub(super) async fn fetch(&self) -> Result<usize, PaymentBenchError> {
        let (reply, answer) = oneshot::channel();
        self.send(Cmd::Fetch { reply })?;
        answer.await?
    }

    pub(super) async fn query(
        &self,
        f: impl FnOnce(&NodeCore) -> Value + Send + 'static,
    ) -> Result<Value, PaymentBenchError> {
        let (reply, answer) = oneshot::channel();
        self.send(Cmd::Query {
            f: Box::new(f),
            reply,
        })?;
        Ok(answer.await?)
    }

    /// Polls until this node has no connection to `peer` (it saw the other end close).
    pub(super) async fn wait_disconnected(&self, peer: PublicKey) -> Result<(), PaymentBenchError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (reply, answer) = oneshot::channel();
            self.send(Cmd::IsConnected { peer, reply })?;
            if !answer.await? {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(PaymentBenchError::Timeout("a disconnection"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Polls `f` until it answers `true` (setup steps only: never inside a timed window).
    pub(super) async fn wait_for(
        &self,
        what: &'static str,
        f: impl Fn(&NodeCore) -> bool + Send + Sync + Clone + 'static,
    ) -> Result<(), PaymentBenchError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let f = f.clone();
            if self.query(move |core| Value::Bool(f(core))).await? == Value::Bool(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(PaymentBenchError::Timeout(what));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub(super) fn stop(&mut self) -> Result<(), PaymentBenchError> {
        let _ = self.events.send(Ev::Cmd(Cmd::Stop));
        if let Some(thread) = self.thread.take() {
            thread
                .join()
                .map_err(|_| PaymentBenchError::Panicked("node thread"))??;
        }
        Ok(())
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Time and rows of one input, accumulated while the driver carries it out.
#[derive(Default)]
pub(super) struct Acc {
    persist: Duration,
    mailbox: Duration,
    persists: u32,
    commits: u32,
}

/// How a node's [`Io`] makes a change set durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Commit {
    /// Each row of the change set is its own SQLite commit (the frames still leave after
    /// all of them): what the node paid before change sets.
    PerRow,
    /// The whole change set in one transaction, as `asyncpay node` does.
    PerInput,
}

impl Commit {
    pub(super) fn name(self) -> &'static str {
        match self {
            Commit::PerRow => "per_row",
            Commit::PerInput => "per_input",
        }
    }
}

/// A live connection: its id, its writer's queue, frames sent on it, its reader task.
pub(super) struct Link {
    id: u64,
    writer: mpsc::UnboundedSender<Vec<u8>>,
    sent: u64,
    reader: tokio::task::JoinHandle<()>,
}

/// A bench node: the one node driver over [`BenchIo`].
pub(super) struct Node {
    driver: Driver<BenchIo>,
}

/// The bench's world of one node: its SQLite store, Noise connections on loopback, the
/// mailbox over HTTP; no chain (funding outpoints are made up). Everything it does is
/// reported as a timestamped [`Note`].
pub(super) struct BenchIo {
    who: Who,
    store: Store,
    commit: Commit,
    secret: Arc<SecretKey>,
    mailbox_key: Arc<NodeKey>,
    mailbox: MailboxClient,
    contacts: HashMap<PublicKey, VerifiedContact>,
    writers: HashMap<PublicKey, Link>,
    next_conn: u64,
    events: mpsc::UnboundedSender<Ev>,
    notes: mpsc::UnboundedSender<Note>,
    /// The frame being handled, as (sender, its sequence number on the connection).
    cause: Option<(PublicKey, u64)>,
    /// When the input being handled arrived.
    t_in: Instant,
    acc: Acc,
}

impl BenchIo {
    fn note(&self, kind: Kind) {
        let _ = self.notes.send(Note {
            who: self.who,
            t: Instant::now(),
            kind,
        });
    }
}

impl Io for BenchIo {
    type Error = PaymentBenchError;

    fn persist(&mut self, changes: &ChangeSet, _core: &NodeCore) -> Result<(), PaymentBenchError> {
        if !changes.reverse.is_empty() {
            return Err(PaymentBenchError::Reverse);
        }
        let t = Instant::now();
        match self.commit {
            Commit::PerInput => {
                self.store.commit(changes)?;
                self.acc.commits += 1;
            }
            Commit::PerRow => {
                for (peer, snapshot) in changes.channels.values() {
                    self.store.put_channel(peer, snapshot)?;
                }
                for (id, record) in &changes.payments {
                    self.store.put_payment(id, record)?;
                }
                self.acc.commits += changes.len() as u32;
            }
        }
        self.acc.persist += t.elapsed();
        self.acc.persists += changes.len() as u32;
        // Noted once durable.
        let t_in = self.t_in;
        for (peer, snapshot) in changes.channels.values() {
            self.note(Kind::Channel {
                t_in,
                peer: *peer,
                complete: snapshot.complete.as_ref().map(|c| c.body.number),
            });
        }
        for (id, record) in &changes.payments {
            let record = serde_json::to_value(record)?;
            self.note(Kind::Payment {
                t_in,
                id: *id,
                status: record["status"]["status"].as_str().unwrap_or("").to_owned(),
                receipt_acked: record["status"]["receipt_acked"] == Value::Bool(true),
            });
        }
        Ok(())
    }

    fn send(&mut self, to: PublicKey, frame: Vec<u8>, what: &'static str) -> bool {
        let (message_type, bytes) = (crate::protocol::wire::peek_type(&frame), frame.len());
        let seq = match self.writers.get_mut(&to) {
            Some(link) if link.writer.send(frame).is_ok() => {
                link.sent += 1;
                Some(link.sent)
            }
            _ => None,
        };
        self.note(Kind::Sent {
            to,
            message_type,
            name: what,
            bytes,
            seq,
            cause: self.cause,
        });
        seq.is_some()
    }

    async fn post_letter(
        &mut self,
        _payment_id: PaymentId,
        payee: PublicKey,
        bytes: Vec<u8>,
    ) -> Result<(), PaymentBenchError> {
        let contact = self
            .contacts
            .get(&payee)
            .ok_or(PaymentBenchError::Missing("no contact for the payee"))?;
        let t = Instant::now();
        self.mailbox
            .send(
                contact,
                Some(&self.mailbox_key),
                bytes,
                Duration::from_secs(3600),
            )
            .await?;
        let took = t.elapsed();
        self.acc.mailbox += took;
        self.note(Kind::Mailbox {
            what: "post",
            requests: 1,
            took,
        });
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
            self.note(Kind::Refused(error));
        }
    }
}

impl Node {
    async fn start(
        spec: Spec,
        events: mpsc::UnboundedSender<Ev>,
        notes: mpsc::UnboundedSender<Note>,
    ) -> Result<(Self, Option<SocketAddr>), PaymentBenchError> {
        let store = Store::open(&spec.db)?;
        let records = match spec.role {
            Role::Payer => Records::Payer(vec![]),
            Role::Lsp => Records::Lsp(policy(), vec![]),
            Role::Payee => Records::Payee(vec![]),
            Role::Router => Records::Router(crate::node::core::DEFAULT_ROUTER_POLICY, vec![]),
        };
        let core = NodeCore::restore(spec.seed, HEIGHT, vec![], records)?;
        let secret = Arc::new(node_key(&spec.seed));
        let mailbox_key = NodeKey::from_secret_bytes(secret.to_secret_bytes())
            .map_err(|e| PaymentBenchError::MailboxKey("mailbox key", e))?;
        let addr = match spec.listen_allow {
            Some(allow) => {
                let listener =
                    Listener::bind("127.0.0.1:0", secret.clone(), Allow::keys(allow)).await?;
                let addr = listener.local_addr()?;
                let events = events.clone();
                tokio::spawn(async move {
                    loop {
                        match listener.accept().await {
                            Ok(conn) => {
                                if events.send(Ev::Accepted(conn)).is_err() {
                                    return;
                                }
                            }
                            Err(e) => tracing::info!("refused a peer: {e}"),
                        }
                    }
                });
                Some(addr)
            }
            None => None,
        };
        let io = BenchIo {
            who: spec.who,
            store,
            commit: spec.commit,
            secret,
            mailbox_key: Arc::new(mailbox_key),
            mailbox: MailboxClient::new(&spec.mailbox_url)?,
            contacts: HashMap::new(),
            writers: HashMap::new(),
            next_conn: 0,
            events,
            notes,
            cause: None,
            t_in: Instant::now(),
            acc: Acc::default(),
        };
        let mut node = Node {
            driver: Driver::new(core, io),
        };
        node.input(Instant::now(), NodeInput::Entropy(rand::random()))
            .await?;
        Ok((node, addr))
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Ev>) -> Result<(), PaymentBenchError> {
        while let Some(ev) = rx.recv().await {
            match ev {
                Ev::Frame {
                    from,
                    frame,
                    t,
                    seq,
                } => {
                    self.driver.io.cause = Some((from, seq));
                    let result = self.input(t, NodeInput::Frame { from, frame }).await;
                    self.driver.io.cause = None;
                    if let Err(e) = result {
                        self.driver.io.note(Kind::Refused(chain(&e)));
                    }
                }
                Ev::Accepted(conn) => self.register(conn).await?,
                Ev::Closed { peer, conn } => {
                    let writers = &mut self.driver.io.writers;
                    if writers.get(&peer).map(|l| l.id) == Some(conn) {
                        writers.remove(&peer);
                    }
                }
                Ev::Cmd(Cmd::Stop) => break,
                Ev::Cmd(cmd) => self.command(cmd).await?,
            }
        }
        Ok(())
    }

    async fn command(&mut self, cmd: Cmd) -> Result<(), PaymentBenchError> {
        let io = &mut self.driver.io;
        match cmd {
            Cmd::Connect { addr, peer, reply } => {
                let result = match connect(addr, &io.secret, peer).await {
                    Ok(conn) => {
                        io.note(Kind::Mark("connected"));
                        self.register(conn).await
                    }
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(result);
            }
            Cmd::Disconnect { peer, reply } => {
                // Dropping the writer half-closes the connection, so the peer sees the end;
                // stopping the reader means nothing more arrives here: the node is offline.
                if let Some(link) = io.writers.remove(&peer) {
                    link.reader.abort();
                }
                let _ = reply.send(());
            }
            Cmd::Input { input, reply } => {
                let result = self.input(Instant::now(), input).await;
                let _ = reply.send(result);
            }
            Cmd::Contact {
                payee,
                contact,
                reply,
            } => {
                io.contacts.insert(payee, contact);
                let _ = reply.send(());
            }
            Cmd::Fetch { reply } => {
                let result = self.fetch().await;
                let _ = reply.send(result);
            }
            Cmd::Query { f, reply } => {
                let _ = reply.send(f(&self.driver.core));
            }
            Cmd::IsConnected { peer, reply } => {
                let _ = reply.send(io.writers.contains_key(&peer));
            }
            Cmd::Stop => {}
        }
        Ok(())
    }

    async fn register(&mut self, conn: Connection) -> Result<(), PaymentBenchError> {
        let io = &mut self.driver.io;
        io.next_conn += 1;
        let id = io.next_conn;
        let peer = conn.peer();
        let (mut reader, mut writer) = conn.into_split();
        let (wtx, mut wrx) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            while let Some(frame) = wrx.recv().await {
                if writer.send(&frame).await.is_err() {
                    return;
                }
            }
            let _ = writer.shutdown().await;
        });
        let events = io.events.clone();
        let reader = tokio::spawn(async move {
            let mut seq = 0;
            while let Ok(frame) = reader.recv().await {
                let t = Instant::now();
                seq += 1;
                let ev = Ev::Frame {
                    from: peer,
                    frame,
                    t,
                    seq,
                };
                if events.send(ev).is_err() {
                    return;
                }
            }
            let _ = events.send(Ev::Closed { peer, conn: id });
        });
        io.writers.insert(
            peer,
            Link {
                id,
                writer: wtx,
                sent: 0,
                reader,
            },
        );
        self.input(Instant::now(), NodeInput::Connected { peer })
            .await
    }

    /// Handles one input on the driver, and notes where its time went: the core, the
    /// commits, the mailbox.
    pub(super) async fn input(
        &mut self,
        t_in: Instant,
        input: NodeInput,
    ) -> Result<(), PaymentBenchError> {
        self.driver.io.t_in = t_in;
        self.driver.io.acc = Acc::default();
        let t = Instant::now();
        let outcome = self.driver.handle(input).await;
        let total = t.elapsed();
        let io = &mut self.driver.io;
        let acc = std::mem::take(&mut io.acc);
        io.note(Kind::Handled {
            t_in,
            compute: total.saturating_sub(acc.persist + acc.mailbox),
            persist: acc.persist,
            persists: acc.persists,
            commits: acc.commits,
        });
        outcome
    }

    /// Fetches the mailbox, opens and handles each letter; the acknowledgement (deletion)
    /// runs in its own task, off the payment's path.
    pub(super) async fn fetch(&mut self) -> Result<usize, PaymentBenchError> {
        let io = &mut self.driver.io;
        io.note(Kind::Mark("fetch_start"));
        let t = Instant::now();
        let messages = io
            .mailbox
            .fetch(&io.mailbox_key, 32, Duration::ZERO)
            .await?;
        io.note(Kind::Mailbox {
            what: "fetch",
            requests: 2,
            took: t.elapsed(),
        });
        let mut ids = vec![];
        for message in &messages {
            let io = &self.driver.io;
            let opened = message
                .open(&io.mailbox_key)
                .map_err(PaymentBenchError::Letter)?;
            io.note(Kind::Mark("opened"));
            self.input(
                Instant::now(),
                NodeInput::Letter {
                    bytes: opened.payload,
                },
            )
            .await?;
            ids.push(message.id);
        }
        if !ids.is_empty() {
            let io = &self.driver.io;
            let (client, key, notes, who) = (
                io.mailbox.clone(),
                io.mailbox_key.clone(),
                io.notes.clone(),
                io.who,
            );
            tokio::spawn(async move {
                let t = Instant::now();
                let kind = match client.ack(&key, &ids).await {
                    Ok(_) => Kind::Mailbox {
                        what: "ack",
                        requests: 2,
                        took: t.elapsed(),
                    },
                    Err(e) => Kind::Refused(format!("ack: {e}")),
                };
                let _ = notes.send(Note {
                    who,
                    t: Instant::now(),
                    kind,
                });
            });
        }
        Ok(messages.len())
    }
}
