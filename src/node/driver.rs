//! The one node driver: it hands each input to the [`NodeCore`], makes what the input changed
//! durable, then carries out the input's actions in order through an [`Io`].
//!
//! ```text
//!   input ─> NodeCore::handle ─> Handled { changes, actions }
//!                                   │          │
//!              Io::persist(changes) ┘          └─> after the commit, in order:
//!              (one transaction)                   Io::send, post_letter, post_reverse,
//!                                                  broadcast, watch, build_funding, ...
//! ```
//!
//! Every node runs this loop: the process (`asyncpay node run`, [`super::runtime`]) with
//! SQLite, Noise connections, the mailbox over HTTP and the chain through Electrum and
//! bitcoind; the in-process test network ([`crate::testing`]) with memory for all of these;
//! the payment benchmark with SQLite and in-process links. Only the [`Io`] differs.
//!
//! Persist before send holds for an input as a whole: no action of an input is carried out
//! before all of its changes are durable. A follow-up input the driver feeds back (a funding
//! transaction built, a letter posted) is handled the same way before its actions join the
//! queue. [`Driver::handle_group`] extends the rule to several inputs at once (group commit):
//! their changes are written in one transaction, and only then do any of their actions go.

use std::collections::VecDeque;
use std::future::Future;

use bitcoin::{OutPoint, ScriptBuf, Transaction};

use super::core::{ChangeSet, Handled, NodeCore, NodeError, NodeInput, NodeOutput};
use crate::crypto::keys::PublicKey;
use crate::protocol::messages::ChannelId;
use crate::protocol::payment::PaymentId;

/// What a driver needs from the world around the node. Each method is one kind of action of
/// [`NodeOutput`]; the driver calls them in the order the core asked for them, and never
/// before the input's [`ChangeSet`] is durable.
#[allow(async_fn_in_trait)]
pub trait Io {
    /// The error of a failed action. A node error (a follow-up input the core refused)
    /// converts into it.
    type Error: From<NodeError>;

    /// Makes `changes` durable, all or nothing (one transaction). An error stops the input:
    /// none of its actions is carried out. `core` is the core after the input, for a
    /// persister that also shows or indexes it.
    fn persist(&mut self, changes: &ChangeSet, core: &NodeCore) -> Result<(), Self::Error>;

    /// Called before each action is carried out (a place for fault injection and
    /// observation); an error stops the input there.
    fn before(&mut self, action: &NodeOutput) -> Result<(), Self::Error> {
        let _ = action;
        Ok(())
    }

    /// Hands `frame` to the connection with `to`; returns whether `to` was connected. A frame
    /// for a peer that is not connected is dropped: the protocol resends what matters when
    /// the peer reconnects.
    fn send(&mut self, to: PublicKey, frame: Vec<u8>, what: &'static str) -> bool;

    /// Seals a sale letter to `payee`'s mailbox (at the contact stored for it) and posts it.
    async fn post_letter(
        &mut self,
        payment_id: PaymentId,
        payee: PublicKey,
        bytes: Vec<u8>,
    ) -> Result<(), Self::Error>;

    /// Seals a letter of the reverse variant to `to`'s mailbox, at `contact` if given, else
    /// at the contact stored for `to`, and posts it.
    async fn post_reverse(
        &mut self,
        to: PublicKey,
        bytes: Vec<u8>,
        contact: Option<serde_json::Value>,
    ) -> Result<(), Self::Error>;

    /// Publishes a channel transaction. A failure is the Io's to report: the channel
    /// publishes again at the next block while it matters.
    async fn broadcast(&mut self, tx: Transaction);

    /// Reports spends of `outpoint` from now on (as [`NodeInput::Spend`]).
    fn watch(&mut self, outpoint: OutPoint);

    /// Builds (does not publish) the funding transaction of `channel_id`, paying
    /// `capacity_sat` to `script_pubkey`; returns its funding output.
    async fn build_funding(
        &mut self,
        channel_id: ChannelId,
        script_pubkey: ScriptBuf,
        capacity_sat: u64,
    ) -> Result<OutPoint, Self::Error>;

    /// Publishes the funding transaction built for `channel_id` (its state 0 is complete).
    async fn publish_funding(&mut self, channel_id: ChannelId) -> Result<(), Self::Error>;

    /// Reports an event for the user: [`NodeOutput::ChannelEvent`],
    /// [`NodeOutput::PaymentEvent`], [`NodeOutput::Refused`] or [`NodeOutput::Ignored`].
    fn report(&mut self, event: NodeOutput);
}

/// A node core and the [`Io`] that carries out what it asks.
#[derive(Debug)]
pub struct Driver<I> {
    /// The core.
    pub core: NodeCore,
    /// Its world.
    pub io: I,
}

impl<I: Io> Driver<I> {
    /// A driver of `core` through `io`.
    pub fn new(core: NodeCore, io: I) -> Self {
        Driver { core, io }
    }

    /// See [`handle`].
    pub async fn handle(&mut self, input: NodeInput) -> Result<(), I::Error> {
        handle(&mut self.core, &mut self.io, input).await
    }

    /// See [`handle_group`].
    pub async fn handle_group(
        &mut self,
        inputs: impl IntoIterator<Item = NodeInput>,
    ) -> Result<Vec<Result<(), NodeError>>, I::Error> {
        handle_group(&mut self.core, &mut self.io, inputs).await
    }

    /// See [`carry_out`].
    pub async fn carry_out(&mut self, handled: Handled) -> Result<(), I::Error> {
        carry_out(&mut self.core, &mut self.io, handled).await
    }
}

/// Hands `input` to `core`, makes its changes durable, then carries out its actions through
/// `io`. A node error (the input refused) comes back before anything is written or done.
pub async fn handle<I: Io>(
    core: &mut NodeCore,
    io: &mut I,
    input: NodeInput,
) -> Result<(), I::Error> {
    let handled = core.handle(input)?;
    carry_out(core, io, handled).await
}

/// Group commit: hands every input to `core`, writes all their changes in one transaction,
/// then carries out all their actions in input order. Returns each input's refusal (a
/// refused input changed nothing and does nothing).
pub async fn handle_group<I: Io>(
    core: &mut NodeCore,
    io: &mut I,
    inputs: impl IntoIterator<Item = NodeInput>,
) -> Result<Vec<Result<(), NodeError>>, I::Error> {
    let mut all = Handled::default();
    let mut results = vec![];
    for input in inputs {
        match core.handle(input) {
            Ok(handled) => {
                all.changes.merge(handled.changes);
                all.actions.extend(handled.actions);
                results.push(Ok(()));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    carry_out(core, io, all).await?;
    Ok(results)
}

/// Makes `handled`'s changes durable, then carries out its actions in order (and those of
/// the follow-up inputs they lead to).
pub async fn carry_out<I: Io>(
    core: &mut NodeCore,
    io: &mut I,
    handled: Handled,
) -> Result<(), I::Error> {
    let mut queue = VecDeque::new();
    commit(core, io, handled, &mut queue)?;
    while let Some(action) = queue.pop_front() {
        io.before(&action)?;
        match action {
            NodeOutput::Send { to, frame, what } => {
                io.send(to, frame, what);
            }
            NodeOutput::Broadcast(tx) => io.broadcast(tx).await,
            NodeOutput::Watch(outpoint) => io.watch(outpoint),
            NodeOutput::NeedFunding {
                channel_id,
                script_pubkey,
                capacity_sat,
            } => {
                let outpoint = io
                    .build_funding(channel_id, script_pubkey, capacity_sat)
                    .await?;
                let more = core.handle(NodeInput::FundingBuilt {
                    channel_id,
                    outpoint,
                })?;
                commit(core, io, more, &mut queue)?;
            }
            NodeOutput::ReadyToFund { channel_id } => io.publish_funding(channel_id).await?,
            NodeOutput::PostLetter {
                payment_id,
                payee,
                letter,
            } => {
                io.post_letter(payment_id, payee, letter.encode()).await?;
                let more = core.handle(NodeInput::LetterPosted { payment_id })?;
                commit(core, io, more, &mut queue)?;
            }
            NodeOutput::PostReverse { to, bytes, contact } => {
                io.post_reverse(to, bytes, contact).await?
            }
            event @ (NodeOutput::ChannelEvent { .. }
            | NodeOutput::PaymentEvent(_)
            | NodeOutput::Refused { .. }
            | NodeOutput::Ignored { .. }) => io.report(event),
        }
    }
    Ok(())
}

/// Writes `handled`'s changes (if any), then queues its actions behind those already queued.
fn commit<I: Io>(
    core: &NodeCore,
    io: &mut I,
    handled: Handled,
    queue: &mut VecDeque<NodeOutput>,
) -> Result<(), I::Error> {
    if !handled.changes.is_empty() {
        io.persist(&handled.changes, core)?;
    }
    queue.extend(handled.actions);
    Ok(())
}

/// Runs a future that never waits, such as the driver's over an in-memory [`Io`] whose
/// methods are all ready at once (panics if it does wait).
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => unreachable!("the in-memory driver never waits"),
    }
}
