//! Three nodes started in process on the regtest (payer A, LSP S, payee B; a mailbox server
//! beside them) are driven only through their typed handles: A opens A–S and S opens S–B
//! (each funding transaction through the mempool, then mined), A pays B 50,000 sat through
//! S. `list_channels` then shows each channel at each end with its latest state number and
//! exact balances and no PTLC left; `list_payments` shows the payment at each node with its
//! role, status, amount and fee, and none of the signatures the nodes' stores hold; each
//! node's event stream delivered the payment's events in order. Then A closes A–S and B
//! closes S–B cooperatively: each close reaches the mempool, is mined, both ends see their
//! channel closed, and the close pays each side its balance, the fee out of the proposer's.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use asyncpay::chain::regtest::{Regtest, RegtestOptions};
use asyncpay::mailbox::server::{MailboxServer, ServerConfig};
use asyncpay::node::core::Role;
use asyncpay::node::runtime::{
    start, ChannelDetails, ChannelEvent, NodeConfig, NodeEvent, NodeHandle, PaymentDetails,
    RuntimeError,
};
use asyncpay::protocol::channel::Phase;
use asyncpay::protocol::messages::ChannelId;
use asyncpay::protocol::payment::{PaymentEvent, PaymentId};
use asyncpay::tx::Party;
use bitcoin::{Address, Amount, Network, Txid};
use tokio::sync::broadcast;

const WALLET_SAT: u64 = 2_000_000;
const AS_CAPACITY: u64 = 1_000_000;
const SB_CAPACITY: u64 = 400_000;
const AMOUNT: u64 = 50_000;
/// The LSP's policy: 100 sat plus 1,000 ppm.
const FEE: u64 = 150;
const CLOSE_FEE: u64 = asyncpay::node::runtime::DEFAULT_CLOSE_FEE_SAT;
const LIMIT: Duration = Duration::from_secs(90);

/// A node's handle, its event stream and every event it delivered so far.
struct Node {
    name: &'static str,
    handle: NodeHandle,
    events: broadcast::Receiver<NodeEvent>,
    seen: Vec<NodeEvent>,
}

impl Node {
    async fn start(name: &'static str, config: NodeConfig) -> Node {
        let handle = start(config).await.expect("node starts");
        let events = handle.events();
        Node {
            name,
            handle,
            events,
            seen: vec![],
        }
    }

    /// Receives events until one matches `want`; every event received is kept in `seen`.
    async fn until_event(&mut self, what: &str, want: impl Fn(&NodeEvent) -> bool) -> NodeEvent {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Ok(event)) => event,
                Ok(Err(e)) => panic!("{}: event stream: {e}", self.name),
                Err(_) => panic!("{}: no event {what} within {LIMIT:?}", self.name),
            };
            self.seen.push(event.clone());
            if want(&event) {
                return event;
            }
        }
    }

    /// Takes the events delivered but not yet received into `seen`.
    fn drain(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            self.seen.push(event);
        }
    }

    async fn channel(&self, id: ChannelId) -> ChannelDetails {
        self.handle
            .list_channels()
            .await
            .expect("list_channels")
            .into_iter()
            .find(|c| c.channel_id == id)
            .unwrap_or_else(|| panic!("{} lists channel {id:?}", self.name))
    }

    async fn until_channel(
        &self,
        id: ChannelId,
        what: &str,
        want: impl Fn(&ChannelDetails) -> bool,
    ) -> ChannelDetails {
        let started = Instant::now();
        loop {
            let channel = self.channel(id).await;
            if want(&channel) {
                return channel;
            }
            assert!(
                started.elapsed() < LIMIT,
                "{}: {what}; the channel stays {channel:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn payment(&self, id: PaymentId) -> Option<PaymentDetails> {
        self.handle
            .list_payments()
            .await
            .expect("list_payments")
            .into_iter()
            .find(|p| p.payment_id == id)
    }

    async fn until_status(&self, id: PaymentId, status: &str) -> PaymentDetails {
        let started = Instant::now();
        loop {
            let payment = self.payment(id).await;
            if let Some(p) = payment.as_ref().filter(|p| p.status == status) {
                return p.clone();
            }
            assert!(
                started.elapsed() < LIMIT,
                "{}: payment status {status}; it stays {payment:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The payment events of `id` delivered so far, in order.
    fn payment_events(&self, id: PaymentId) -> Vec<PaymentEvent> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                NodeEvent::Payment { what } if e.payment_id() == Some(id) => Some(what.clone()),
                _ => None,
            })
            .collect()
    }

    /// The channel events of `id` delivered so far, in order.
    fn channel_events(&self, id: ChannelId) -> Vec<ChannelEvent> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                NodeEvent::Channel { channel_id, what } if *channel_id == id => Some(what.clone()),
                _ => None,
            })
            .collect()
    }
}

async fn fund(chain: &Regtest, node: &Node) {
    let address: Address<bitcoin::address::NetworkUnchecked> = node
        .handle
        .new_address()
        .await
        .expect("address")
        .parse()
        .expect("an address");
    let address = address.require_network(Network::Regtest).expect("regtest");
    chain
        .fund(&address.script_pubkey(), Amount::from_sat(WALLET_SAT))
        .expect("the faucet pays");
}

async fn until_balance(node: &Node, confirmed: u64) {
    let started = Instant::now();
    loop {
        let balance = node.handle.balance().await.expect("balance");
        if balance.0 == confirmed {
            return;
        }
        assert!(
            started.elapsed() < LIMIT,
            "{}: wallet stays at {balance:?}",
            node.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn until_in_mempool(chain: &Regtest, txid: &Txid, what: &str) {
    let started = Instant::now();
    while !chain.in_mempool(txid).expect("mempool") {
        assert!(
            started.elapsed() < LIMIT,
            "{what} {txid} never reached the mempool"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `opener` opens a channel to `acceptor`; both hold state 0, the funding transaction goes
/// through the mempool and is mined, and both see it confirmed.
async fn open(chain: &Regtest, opener: &Node, acceptor: &Node, capacity: u64) -> ChannelId {
    let id = opener
        .handle
        .open_channel(acceptor.handle.info().node_key, capacity)
        .await
        .expect("opens");
    let mut funding = None;
    for node in [opener, acceptor] {
        let c = node
            .until_channel(id, "state 0 signed", |c| {
                c.phase == Phase::Funded && c.funding_outpoint.is_some()
            })
            .await;
        let outpoint = c.funding_outpoint.expect("checked");
        assert!(funding.is_none_or(|f| f == outpoint), "one funding output");
        funding = Some(outpoint);
    }
    let txid = funding.expect("set").txid;
    until_in_mempool(chain, &txid, "the funding transaction").await;
    chain.confirm(&txid).expect("confirms");
    chain.wait_for_electrs_tip().expect("electrs follows");
    for node in [opener, acceptor] {
        node.until_channel(id, "funding confirmed", |c| c.funding_confirmed)
            .await;
    }
    id
}

/// `proposer` closes `id`; the close reaches the mempool, is mined, both ends see the
/// channel closed, and its outputs pay each side its balance, the fee out of the
/// proposer's. Returns the close's txid.
async fn close(chain: &Regtest, proposer: &mut Node, acceptor: &mut Node, id: ChannelId) -> Txid {
    let before = proposer.channel(id).await;
    let proposer_name = proposer.name;
    let txid = proposer
        .handle
        .close(id)
        .await
        .expect("the close is proposed");
    for node in [&mut *proposer, &mut *acceptor] {
        node.until_event("close signed", |e| {
            matches!(e, NodeEvent::Channel { channel_id, what: ChannelEvent::CloseSigned { txid: t } } if *channel_id == id && *t == txid)
        })
        .await;
    }
    until_in_mempool(chain, &txid, "the close").await;
    chain.mine(1).expect("mines");
    chain.wait_for_electrs_tip().expect("electrs follows");
    assert!(chain.confirmations(&txid).expect("confirmations") >= 1);
    for node in [&mut *proposer, &mut *acceptor] {
        node.until_event("closed cooperatively", |e| {
            matches!(e, NodeEvent::Channel { channel_id, what: ChannelEvent::ClosedCooperatively { txid: t } } if *channel_id == id && *t == txid)
        })
        .await;
        let c = node.channel(id).await;
        assert_eq!(c.phase, Phase::Closed, "{}", node.name);
        let close = c.close.expect("the close is listed");
        assert_eq!(close.txid, txid);
        assert!(close.signed);
        assert_eq!(close.fee_sat, CLOSE_FEE);
        assert_eq!(close.proposed_by_us, node.name == proposer_name);
    }
    let tx = chain.transaction(&txid).expect("the close is known");
    let funding = before.funding_outpoint.expect("funded");
    assert_eq!(tx.input.len(), 1);
    assert_eq!(tx.input[0].previous_output, funding);
    let paid = |script| {
        tx.output
            .iter()
            .filter(|o| Some(&o.script_pubkey) == script)
            .map(|o| o.value.to_sat())
            .sum::<u64>()
    };
    let (to_proposer, to_acceptor) = (
        paid(before.payout_script.as_ref()),
        paid(before.peer_payout_script.as_ref()),
    );
    assert_eq!(to_proposer, before.to_self_sat - CLOSE_FEE);
    assert_eq!(to_acceptor, before.to_peer_sat);
    assert_eq!(tx.output.len(), 2);
    let capacity = before.capacity_sat.expect("capacity");
    assert_eq!(
        to_proposer + to_acceptor + CLOSE_FEE,
        capacity,
        "nothing else left"
    );
    println!(
        "CLOSE {}: {txid} pays {} {to_proposer} sat and {} {to_acceptor} sat, fee {CLOSE_FEE} sat",
        proposer.name, proposer.name, acceptor.name
    );
    txid
}

#[test]
fn a_paid_payment_is_listed_streamed_in_order_and_its_channels_close_cooperatively() {
    let chain = Regtest::start(RegtestOptions {
        electrs: true,
        ..RegtestOptions::default()
    })
    .expect("regtest with electrs");
    let root = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut mailbox_config = ServerConfig::new(root.path().join("mailbox"));
        mailbox_config.listen = "127.0.0.1:0".parse().expect("addr");
        std::fs::create_dir_all(&mailbox_config.data_dir).expect("mailbox dir");
        let mailbox = MailboxServer::start(mailbox_config)
            .await
            .expect("mailbox starts");
        let electrum = chain.electrum_url().expect("electrum url");
        let config = |role, name: &str| NodeConfig {
            rpc: Some((chain.rpc_url(), chain.rpc_cookie_file().to_path_buf())),
            ..NodeConfig::new(role, root.path().join(name), electrum.clone(), mailbox.url())
        };
        let mut a = Node::start("A", config(Role::Payer, "a")).await;
        let mut s = Node::start("S", config(Role::Lsp, "s")).await;
        let mut b = Node::start("B", config(Role::Payee, "b")).await;
        let (a_key, s_key, b_key) = (
            a.handle.info().node_key,
            s.handle.info().node_key,
            b.handle.info().node_key,
        );

        for node in [&a, &s] {
            fund(&chain, node).await;
        }
        chain.mine(1).expect("mine");
        for node in [&a, &s] {
            until_balance(node, WALLET_SAT).await;
        }
        s.handle.connect(a_key, None).await.expect("S admits A");
        s.handle.connect(b_key, None).await.expect("S admits B");
        let s_addr = Some(s.handle.info().peer_addr);
        a.handle.connect(s_key, s_addr).await.expect("A dials S");
        b.handle.connect(s_key, s_addr).await.expect("B dials S");

        let as_id = open(&chain, &a, &s, AS_CAPACITY).await;
        let sb_id = open(&chain, &s, &b, SB_CAPACITY).await;

        // A pays B through S; B reads A's letter from its mailbox.
        let contact = b.handle.contact().await.expect("B's card");
        let payment = a
            .handle
            .pay(s_key, AMOUNT, contact, None, None)
            .await
            .expect("A pays");
        a.until_status(payment, "posted").await;
        assert_eq!(b.handle.fetch().await.expect("B fetches"), 1);
        for (node, done) in [(&mut a, "completed"), (&mut s, "sold"), (&mut b, "paid")] {
            node.until_event("payment completed", |e| {
                matches!(e, NodeEvent::Payment { what: PaymentEvent::Completed { payment_id } } if *payment_id == payment)
            })
            .await;
            node.until_status(payment, done).await;
        }

        // The channels, at each end: latest state, balances to the satoshi, no PTLC left.
        let (a_after, s_after_as) = (a.channel(as_id).await, s.channel(as_id).await);
        assert_eq!(
            (a_after.side, a_after.peer, a_after.state),
            (Party::A, s_key, Some(1))
        );
        assert_eq!(
            (a_after.to_self_sat, a_after.to_peer_sat),
            (AS_CAPACITY - AMOUNT - FEE, AMOUNT + FEE)
        );
        assert_eq!(
            (s_after_as.side, s_after_as.peer, s_after_as.state),
            (Party::S, a_key, Some(1))
        );
        assert_eq!(
            (s_after_as.to_self_sat, s_after_as.to_peer_sat),
            (AMOUNT + FEE, AS_CAPACITY - AMOUNT - FEE)
        );
        let (s_after_sb, b_after) = (s.channel(sb_id).await, b.channel(sb_id).await);
        // S–B: state 0, the PTLC to B (1), its fulfilment (2).
        assert_eq!((s_after_sb.side, s_after_sb.state), (Party::A, Some(2)));
        assert_eq!(
            (s_after_sb.to_self_sat, s_after_sb.to_peer_sat),
            (SB_CAPACITY - AMOUNT, AMOUNT)
        );
        assert_eq!(
            (b_after.side, b_after.peer, b_after.state),
            (Party::S, s_key, Some(2))
        );
        assert_eq!(
            (b_after.to_self_sat, b_after.to_peer_sat),
            (AMOUNT, SB_CAPACITY - AMOUNT)
        );
        for c in [&a_after, &s_after_as, &s_after_sb, &b_after] {
            assert_eq!(c.phase, Phase::Funded);
            assert!(c.funding_confirmed && c.connected);
            assert!(c.pending_ptlcs.is_empty() && c.update_under_way.is_none());
            assert!(c.close.is_none());
        }
        assert_eq!(s.handle.list_channels().await.expect("list").len(), 2);

        // The payment at each node: role, status, amount, fee; no stored signature shown.
        for (node, role, status) in [
            (&a, Role::Payer, "completed"),
            (&s, Role::Lsp, "sold"),
            (&b, Role::Payee, "paid"),
        ] {
            let listed = node.handle.list_payments().await.expect("list_payments");
            assert_eq!(listed.len(), 1, "{}: {listed:?}", node.name);
            let p = &listed[0];
            assert_eq!(p.payment_id, payment);
            assert_eq!((p.role, p.reverse), (role, false), "{}", node.name);
            assert_eq!(p.status, status, "{}", node.name);
            assert_eq!((p.amount_sat, p.fee_sat), (AMOUNT, Some(FEE)), "{}", node.name);
            let shown = serde_json::to_string(&listed).expect("serialises");
            let secrets = stored_secrets(&root.path().join(node.name.to_lowercase()));
            // B's record keeps A's letter, withheld signature and all.
            assert!(role != Role::Payee || !secrets.is_empty(), "B's store holds A's signature");
            for secret in &secrets {
                assert!(!shown.contains(secret.as_str()), "{}: {shown}", node.name);
            }
        }

        // The payment's events, in the order each node delivered them.
        for node in [&mut a, &mut s, &mut b] {
            node.drain();
        }
        // A hears its completed signature (`paid`, the proof in hand) and S's receipt
        // (`completed`) in the order they arrive: the receipt may come first.
        let mut events = a.payment_events(payment);
        events.retain(|e| *e != PaymentEvent::Paid { payment_id: payment });
        assert_eq!(
            events,
            vec![
                PaymentEvent::LetterPosted { payment_id: payment },
                PaymentEvent::Completed { payment_id: payment },
            ]
        );
        let posted = a
            .seen
            .iter()
            .position(|e| *e == NodeEvent::LetterPosted { payment_id: Some(payment), to: None })
            .expect("A reported its letter posted");
        let completed = a
            .seen
            .iter()
            .position(|e| matches!(e, NodeEvent::Payment { what: PaymentEvent::Completed { .. } }))
            .expect("A reported the payment completed");
        assert!(posted < completed);
        let s_events = s.payment_events(payment);
        assert_eq!(s_events.len(), 2, "{s_events:?}");
        assert!(matches!(s_events[0], PaymentEvent::Offered { payment_id, .. } if payment_id == payment));
        assert_eq!(s_events[1], PaymentEvent::Completed { payment_id: payment });
        assert_eq!(
            b.payment_events(payment),
            vec![
                PaymentEvent::Invoiced { payment_id: payment, amount_sat: AMOUNT },
                PaymentEvent::Completed { payment_id: payment },
            ]
        );
        // The channel states behind it, with their balances, as each node completed them.
        let completed_states = |node: &Node, id| -> Vec<(u64, String, u64, u64)> {
            node.channel_events(id)
                .into_iter()
                .filter_map(|e| match e {
                    ChannelEvent::StateCompleted { state, change, to_a, to_s } => Some((state, change, to_a, to_s)),
                    _ => None,
                })
                .collect()
        };
        for node in [&a, &s] {
            assert_eq!(
                completed_states(node, as_id),
                vec![
                    (0, "open".to_owned(), AS_CAPACITY, 0),
                    (1, "transfer".to_owned(), AS_CAPACITY - AMOUNT - FEE, AMOUNT + FEE),
                ],
                "{}",
                node.name
            );
        }
        for node in [&s, &b] {
            assert_eq!(
                completed_states(node, sb_id),
                vec![
                    (0, "open".to_owned(), SB_CAPACITY, 0),
                    (1, "add_ptlc".to_owned(), SB_CAPACITY - AMOUNT, 0),
                    (2, "fulfil_ptlc".to_owned(), SB_CAPACITY - AMOUNT, AMOUNT),
                ],
                "{}",
                node.name
            );
        }
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for node in [&a, &s, &b] {
            for e in &node.seen {
                let value = serde_json::to_value(e).expect("serialises");
                *kinds.entry(format!("{} {}", node.name, value["event"].as_str().unwrap_or("?"))).or_default() += 1;
            }
        }
        println!("EVENTS delivered: {kinds:?}");

        // A close of a channel the node does not have is refused.
        let refused = a.handle.close(ChannelId([0x77; 32])).await;
        assert!(matches!(refused, Err(RuntimeError::Refused { .. })), "{refused:?}");

        // A closes A–S (A pays the fee); B closes S–B (B, the acceptor, pays it).
        close(&chain, &mut a, &mut s, as_id).await;
        close(&chain, &mut b, &mut s, sb_id).await;

        for node in [a, s, b] {
            tokio::time::timeout(Duration::from_secs(20), node.handle.stop())
                .await
                .expect("stops in time")
                .expect("stops cleanly");
        }
        mailbox.shutdown().await.expect("mailbox stops");
    });
}

/// The signatures the payment records in a node's store hold (withheld or bought), which
/// no answer may show.
fn stored_secrets(dir: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(
        dir.join("node.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("node.db");
    conn.busy_timeout(Duration::from_secs(5)).expect("timeout");
    let mut out = Vec::new();
    for table in ["payments", "reverse"] {
        let mut stmt = conn
            .prepare(&format!("SELECT record FROM {table}"))
            .expect("table");
        let records = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .expect("records");
        for record in records {
            let record: serde_json::Value =
                serde_json::from_str(&record.expect("row")).expect("json");
            out.extend(asyncpay::node::views::stored_secrets(&record));
        }
    }
    out
}
