//! Point of sale: a merchant's device that takes a payer's letter with no network, and one
//! that relays an offline payer's session to its LSP.
//!
//! - [`accept`] checks a sale letter handed to the merchant's device (a file or standard
//!   input stand in for QR or NFC) against the node's own keys and store, with no network,
//!   and queues it in the store's inbox: the node sells it the next time it runs (at once,
//!   if it is running). `asyncpay pos accept`.
//! - [`relay`] carries the bytes of a payer's connection to its LSP and back, for a payer
//!   whose phone has no connection of its own (`asyncpay pos relay`). The session is the
//!   payer's Noise session with the LSP, end to end: the relay sees its length and timing
//!   only, and any change it makes to a byte breaks the session (see "Point of sale" in
//!   docs/payment.md).
//!
//! What [`accept`] guarantees the merchant, and what it relies on, is [`Accepted::guarantee`].

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};

use crate::crypto::keys::PublicKey;
use crate::crypto::receipt::ReceiptKeys;
use crate::mailbox::envelope::{Envelope, EnvelopeError};
use crate::mailbox::keys::{KeyError, NodeKey};
use crate::node::core::node_key;
use crate::node::files::{load_seed, receipt_epoch, FileError};
use crate::node::store::{InboxLetter, Inboxed, Store, StoreError};
use crate::protocol::channel::{Snapshot, Stage};
use crate::protocol::payment::{
    Payee, PayeePayment, PayeeStatus, PaymentError, PaymentId, SaleLetter,
};
use crate::tx::Party;

/// The longest letter file `accept` reads: a sealed letter is a few kilobytes.
pub const MAX_ENVELOPE_LEN: usize = 64 * 1024;

/// The device assumes a block every this many seconds since its node last saw the chain:
/// eight minutes, faster than Bitcoin's ten-minute target, so that a day offline is
/// overestimated (180 blocks for 144 expected) rather than under.
const SECS_PER_BLOCK: u64 = 480;

/// Why a handed letter is refused. Nothing is stored.
#[derive(Debug, thiserror::Error)]
pub enum PosError {
    /// No node in the data directory (no seed, or a node that never ran).
    #[error("no node in {0}: run `asyncpay node run --data-dir` there once")]
    NoNode(std::path::PathBuf),
    /// A file of the data directory.
    #[error(transparent)]
    File(#[from] FileError),
    /// The node's store.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The node key.
    #[error("key: {0}")]
    Key(#[from] KeyError),
    /// Longer than any letter.
    #[error("{len} bytes is not a letter (at most {MAX_ENVELOPE_LEN})")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// Not a sealed envelope for this node, or one that does not open.
    #[error("not a letter sealed to this merchant: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The envelope is not signed by the payer the letter names.
    #[error("the envelope is not signed by the letter's payer")]
    Sender,
    /// The letter itself is refused: forged or other-merchant offer, a scalar that does not
    /// sell the point, a receipt slot spent, expired at the height the device assumes.
    #[error("letter refused: {0}")]
    Letter(#[from] PaymentError),
    /// The payer may cancel the offer before its expiry.
    #[error(
        "the offer is revocable: the payer could cancel it before you sell; ask for an \
         irrevocable letter (`ctl pay --irrevocable --hold-blocks N`)"
    )]
    Revocable,
    /// The letter pays another amount than the till asks.
    #[error("the letter pays {paid} sat, the sale is for {asked} sat")]
    Amount {
        /// What the letter's offer pays.
        paid: u64,
        /// What the merchant asked.
        asked: u64,
    },
    /// The merchant has no channel with the LSP of the offer: it could not sell.
    #[error("no channel with the offer's LSP {0}: this device could not sell the letter")]
    NoChannel(String),
    /// The offer expires too soon after the height the device assumes.
    #[error(
        "the offer expires at height {expiry}, {left} blocks after the height this device \
         assumes ({height}); it asks for at least {min_blocks}"
    )]
    TooSoon {
        /// The offer's last height.
        expiry: u32,
        /// The height the device assumes.
        height: u32,
        /// Blocks left.
        left: u32,
        /// Blocks asked for.
        min_blocks: u32,
    },
    /// Another letter names the same receipt slot of this merchant's card: only one of them
    /// could be paid.
    #[error(
        "receipt slot {slot} is taken by payment {by}: only one payment per slot can be paid; \
         the payer must pay again (its PTLC comes back at the offer's expiry)"
    )]
    SlotTaken {
        /// The slot.
        slot: u32,
        /// The payment that holds it.
        by: String,
    },
    /// Another letter for the same payment waits already.
    #[error("another letter for payment {0} waits already")]
    OtherLetter(PaymentId),
    /// The node has recorded no tip of the chain: the device cannot tell the height.
    #[error("the node has recorded no tip of the chain yet: run it once with its chain server")]
    NoTip,
    /// This letter was accepted before (by this device or another till of the merchant's
    /// node), or its payment is paid or refused already: it pays once.
    #[error("payment {0} was accepted before: a letter pays once")]
    AlreadyAccepted(PaymentId),
    /// The merchant's channel with the offer's LSP cannot carry the payment: not open, or
    /// the LSP's side holds less than the amount.
    #[error(
        "the channel with the offer's LSP cannot carry {amount_sat} sat now (open: {open}, the \
         LSP's balance {lsp_balance_sat} sat, less what it owes for letters waiting)"
    )]
    NoCapacity {
        /// The payment.
        amount_sat: u64,
        /// Whether the channel is open.
        open: bool,
        /// The LSP's balance in the channel's latest state.
        lsp_balance_sat: u64,
    },
}

/// A letter accepted offline, as `asyncpay pos accept` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    /// The payment.
    pub payment_id: PaymentId,
    /// What the LSP pays the merchant.
    pub amount_sat: u64,
    /// The payer's node key.
    pub payer: PublicKey,
    /// The LSP that signed the offer and will buy.
    pub lsp: PublicKey,
    /// The payer's note (signed by the receipt the sale gives the payer).
    pub note: String,
    /// The offer's last height.
    pub offer_expiry: u32,
    /// The last tip the node saw, and when (unix time).
    pub last_known_height: u32,
    /// The height the device assumes now: the last tip plus a block per eight minutes since.
    pub assumed_height: u32,
    /// Blocks from that height to the offer's expiry.
    pub blocks_left: u32,
    /// What the check guarantees and what it relies on.
    pub guarantee: &'static str,
}

/// What an accepted letter guarantees, in one sentence (docs/payment.md says it at length).
pub const GUARANTEE: &str = "checked offline: the LSP signed an irrevocable offer to pay this \
    merchant the amount for the scalar this letter and the merchant's receipt signature make, \
    that scalar sells the offer's point, the receipt slot it names is reserved for it, and the \
    channel with the LSP is open and can carry the amount now; the merchant is paid if it \
    sells before the offer's expiry and the LSP honours its signed offer then (the LSP's \
    honesty and liquidity are what this relies on, not the payer's)";

/// Checks the sealed letter `envelope` handed to the merchant node of `data_dir` and queues
/// it for the node to sell; touches no network. `amount_sat`: what the till asks (a letter
/// paying another amount is refused); `min_blocks`: how many blocks past the height the
/// device assumes (the last tip its node saw, plus a block per ten minutes since) the offer
/// must still run. `now`: unix time.
pub fn accept(
    data_dir: &Path,
    envelope: &[u8],
    amount_sat: u64,
    min_blocks: u32,
    now: u64,
) -> Result<Accepted, PosError> {
    if !data_dir.join("seed").exists() || !data_dir.join("node.db").exists() {
        return Err(PosError::NoNode(data_dir.to_path_buf()));
    }
    if envelope.len() > MAX_ENVELOPE_LEN {
        return Err(PosError::TooLarge {
            len: envelope.len(),
        });
    }
    let seed = load_seed(data_dir)?;
    let key = node_key(&seed);
    let mailbox_key = NodeKey::from_secret_bytes(key.to_secret_bytes())?;
    let sealed = Envelope::decode(envelope)?;
    let opened = sealed.open(&mailbox_key)?;
    let letter = SaleLetter::decode(&opened.payload)?;
    if opened.sender.map(PublicKey::from) != Some(letter.payer) {
        return Err(PosError::Sender);
    }
    let mut store = Store::open(&data_dir.join("node.db"))?;
    let channels: Vec<(PublicKey, Snapshot)> = store.channels()?;
    let seen = channels.iter().map(|(_, s)| s.height).max().unwrap_or(0);
    let (height, at) = store.tip()?.ok_or(PosError::NoTip)?;
    let since = u32::try_from(now.saturating_sub(at) / SECS_PER_BLOCK).unwrap_or(u32::MAX);
    let last_known_height = height.max(seen);
    let assumed_height = height.saturating_add(since).max(seen);
    let records = store.payments::<PayeePayment>()?;
    // A slot another payment took (its signature left in a fulfilment, or its letter,
    // accepted at the counter, waits), or that a letter invoiced to an LSP this node has an
    // open channel with may take first (its PTLC may come before this letter is drained):
    // only one payment per slot can be paid. A letter invoiced to an LSP without a channel
    // holds nothing (anyone can make those, and none of them can pay).
    let offer = &letter.offer;
    let open_with = |lsp: &PublicKey| {
        channels
            .iter()
            .any(|(peer, s)| peer == lsp && matches!(s.stage, Stage::Open { .. }))
    };
    let taken = records.iter().find(|(id, p)| {
        *id != offer.payment_id
            && p.letter.receipt_epoch == letter.receipt_epoch
            && p.letter.receipt_slot == letter.receipt_slot
            && (p.holds_slot()
                || (p.status == PayeeStatus::Invoiced && open_with(&p.letter.offer.lsp)))
    });
    // What the LSP owes for letters accepted at the counter that wait to be paid.
    let reserved_sat: u64 = records
        .iter()
        .filter(|(_, p)| p.reserved && p.status == PayeeStatus::Invoiced)
        .filter(|(_, p)| p.letter.offer.lsp == offer.lsp)
        .map(|(_, p)| p.letter.offer.amount_sat)
        .sum();
    if let Some((by, _)) = taken {
        return Err(PosError::SlotTaken {
            slot: letter.receipt_slot,
            by: by.to_string(),
        });
    }
    let payee = Payee::restore(
        key,
        ReceiptKeys::from_seed(&seed),
        receipt_epoch(data_dir)?,
        records,
    );
    if !payee.vet(&letter, assumed_height)? {
        return Err(PosError::AlreadyAccepted(offer.payment_id));
    }
    if !offer.irrevocable {
        return Err(PosError::Revocable);
    }
    if amount_sat != offer.amount_sat {
        return Err(PosError::Amount {
            paid: offer.amount_sat,
            asked: amount_sat,
        });
    }
    let (_, with_lsp) = channels
        .iter()
        .find(|(peer, _)| *peer == offer.lsp)
        .ok_or_else(|| PosError::NoChannel(offer.lsp.to_string()))?;
    let open = matches!(with_lsp.stage, Stage::Open { .. }) && with_lsp.funding_confirmed;
    let lsp_balance_sat = with_lsp.complete.as_ref().map_or(0, |c| {
        let lsp_side = match with_lsp.side {
            Party::A => Party::S,
            Party::S => Party::A,
        };
        c.body.balance(lsp_side)
    });
    if !open || lsp_balance_sat < offer.amount_sat.saturating_add(reserved_sat) {
        return Err(PosError::NoCapacity {
            amount_sat: offer.amount_sat,
            open,
            lsp_balance_sat,
        });
    }
    let left = offer.expiry.saturating_sub(assumed_height);
    if left < min_blocks {
        return Err(PosError::TooSoon {
            expiry: offer.expiry,
            height: assumed_height,
            left,
            min_blocks,
        });
    }
    let id = offer.payment_id.to_string();
    let inboxed = InboxLetter {
        epoch: letter.receipt_epoch,
        slot: letter.receipt_slot,
        lsp: offer.lsp.to_string(),
        amount_sat: offer.amount_sat,
    };
    // With the letters already waiting for the same LSP, in the inbox's transaction.
    let fits = |waiting: u64| {
        waiting
            .saturating_add(reserved_sat)
            .saturating_add(offer.amount_sat)
            <= lsp_balance_sat
    };
    match store.put_inbox(&id, &inboxed, envelope, fits)? {
        Inboxed::NoCapacity => {
            return Err(PosError::NoCapacity {
                amount_sat: offer.amount_sat,
                open,
                lsp_balance_sat,
            })
        }
        Inboxed::Added => {}
        Inboxed::Already => return Err(PosError::AlreadyAccepted(offer.payment_id)),
        Inboxed::OtherLetter => return Err(PosError::OtherLetter(offer.payment_id)),
        Inboxed::SlotTaken(by) => {
            return Err(PosError::SlotTaken {
                slot: letter.receipt_slot,
                by,
            })
        }
    }
    Ok(Accepted {
        payment_id: offer.payment_id,
        amount_sat: offer.amount_sat,
        payer: letter.payer,
        lsp: offer.lsp,
        note: letter.note.clone(),
        offer_expiry: offer.expiry,
        last_known_height,
        assumed_height,
        blocks_left: left,
        guarantee: GUARANTEE,
    })
}

/// Limits of a [`relay`].
#[derive(Debug, Clone, Copy)]
pub struct RelayLimits {
    /// Connections carried at once; more are closed at once.
    pub max_connections: usize,
    /// Connections carried at once from one IP address.
    pub max_per_ip: usize,
    /// A connection with no byte either way for this long, or a write that the other end
    /// does not take for this long, is closed.
    pub idle: Duration,
    /// A connection is closed this long after it was accepted, whatever it carries (a
    /// payment needs a few seconds).
    pub lifetime: Duration,
    /// Bytes carried per connection, both ways together; a connection past it is closed.
    pub max_bytes: u64,
    /// Fault injection, for tests of what a dishonest relay can do: `None` carries every
    /// byte as it came.
    pub fault: Option<Fault>,
}

/// What a dishonest relay does to the payer's bytes, once per connection, to the first
/// chunk it reads from the payer at or after `after_bytes` bytes (past the handshake).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// What it does.
    pub kind: FaultKind,
    /// How many of the payer's bytes it carries faithfully first.
    pub after_bytes: u64,
}

/// The faults a relay can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Flips one bit of the chunk.
    Corrupt,
    /// Drops the chunk.
    Drop,
    /// Sends the payer's previous chunk again before this one.
    Replay,
}

impl std::str::FromStr for Fault {
    type Err = String;

    /// `corrupt:N`, `drop:N` or `replay:N`, N the bytes carried faithfully first.
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, after) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected KIND:BYTES, e.g. corrupt:200"))?;
        let kind = match kind {
            "corrupt" => FaultKind::Corrupt,
            "drop" => FaultKind::Drop,
            "replay" => FaultKind::Replay,
            other => {
                return Err(format!(
                    "{other:?}: the faults are corrupt, drop and replay"
                ))
            }
        };
        let after_bytes = after
            .parse()
            .map_err(|_| format!("{after:?}: a number of bytes"))?;
        Ok(Fault { kind, after_bytes })
    }
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            max_connections: 8,
            max_per_ip: 2,
            idle: Duration::from_secs(60),
            lifetime: Duration::from_secs(600),
            max_bytes: 4 << 20,
            fault: None,
        }
    }
}

/// A relay's report of one connection it carried.
#[derive(Debug, Clone, Serialize)]
pub struct Carried {
    /// The payer's address as the relay saw it.
    pub from: String,
    /// Bytes from the payer to the LSP.
    pub up: u64,
    /// Bytes from the LSP to the payer.
    pub down: u64,
    /// Why it ended.
    pub end: String,
    /// The fault injected, if one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultKind>,
}

/// What a relay reports.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RelayEvent {
    /// A fault was injected (see [`RelayLimits::fault`]).
    Fault {
        /// The payer's address.
        from: String,
        /// What was done.
        kind: FaultKind,
        /// At which byte of the payer's stream.
        at_bytes: u64,
    },
    /// A connection ended.
    Carried(Carried),
    /// A connection was refused: over a limit, or accepting failed.
    Refused {
        /// The peer's address, if known.
        from: String,
        /// Why.
        reason: String,
    },
}

/// Carries each connection accepted on `listener` to `to` and back, byte for byte, within
/// `limits`, and calls `report` when one ends or a fault is injected. Runs until the task
/// is dropped.
pub async fn relay(
    listener: TcpListener,
    to: SocketAddr,
    limits: RelayLimits,
    report: impl Fn(RelayEvent) + Send + Sync + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let per_ip: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>> =
        Arc::default();
    let report = Arc::new(report);
    loop {
        // A failed accept (out of descriptors, a reset before accept) ends that attempt, not
        // the relay.
        let (payer, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                report(RelayEvent::Refused {
                    from: String::new(),
                    reason: format!("accept: {e}"),
                });
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            report(RelayEvent::Refused {
                from: from.to_string(),
                reason: "connection limit".into(),
            });
            continue;
        };
        let ip = from.ip();
        {
            let mut counts = per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = counts.entry(ip).or_default();
            if *n >= limits.max_per_ip {
                report(RelayEvent::Refused {
                    from: from.to_string(),
                    reason: "per-address connection limit".into(),
                });
                continue;
            }
            *n += 1;
        }
        let report = report.clone();
        let per_ip = per_ip.clone();
        tokio::spawn(async move {
            let from = from.to_string();
            let on_fault = |kind, at_bytes| {
                report(RelayEvent::Fault {
                    from: from.clone(),
                    kind,
                    at_bytes,
                })
            };
            let carried =
                match tokio::time::timeout(limits.lifetime, carry(payer, to, limits, &on_fault))
                    .await
                {
                    Ok(carried) => carried,
                    Err(_) => Carried {
                        from: String::new(),
                        up: 0,
                        down: 0,
                        end: "lifetime".into(),
                        fault: None,
                    },
                };
            report(RelayEvent::Carried(Carried {
                from: from.clone(),
                ..carried
            }));
            {
                let mut counts = per_ip.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(n) = counts.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        counts.remove(&ip);
                    }
                }
            }
            drop(permit);
        });
    }
}

async fn carry(
    payer: TcpStream,
    to: SocketAddr,
    limits: RelayLimits,
    on_fault: &(dyn Fn(FaultKind, u64) + Sync),
) -> Carried {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut carried = Carried {
        from: String::new(),
        up: 0,
        down: 0,
        end: String::new(),
        fault: None,
    };
    let mut previous_up: Vec<u8> = vec![];
    let lsp = match tokio::time::timeout(limits.idle, TcpStream::connect(to)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            carried.end = format!("dialling the LSP: {e}");
            return carried;
        }
        Err(_) => {
            carried.end = "dialling the LSP timed out".into();
            return carried;
        }
    };
    let (mut pr, mut pw) = payer.into_split();
    let (mut lr, mut lw) = lsp.into_split();
    let (mut up_buf, mut down_buf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        let step = tokio::time::timeout(limits.idle, async {
            tokio::select! {
                r = pr.read(&mut up_buf) => (true, r),
                r = lr.read(&mut down_buf) => (false, r),
            }
        })
        .await;
        let (up, read) = match step {
            Ok(x) => x,
            Err(_) => {
                carried.end = "idle".into();
                break;
            }
        };
        let n = match read {
            Ok(0) => {
                carried.end = if up { "payer closed" } else { "lsp closed" }.into();
                break;
            }
            Ok(n) => n,
            Err(e) => {
                carried.end = format!("read: {e}");
                break;
            }
        };
        let written = if up {
            let at = carried.up;
            carried.up += n as u64;
            let write = async {
                match limits.fault {
                    Some(f) if carried.fault.is_none() && at >= f.after_bytes => {
                        carried.fault = Some(f.kind);
                        on_fault(f.kind, at);
                        match f.kind {
                            FaultKind::Corrupt => {
                                up_buf[n - 1] ^= 1;
                                lw.write_all(&up_buf[..n]).await
                            }
                            FaultKind::Drop => Ok(()),
                            FaultKind::Replay => match lw.write_all(&previous_up).await {
                                Ok(()) => lw.write_all(&up_buf[..n]).await,
                                err => err,
                            },
                        }
                    }
                    _ => lw.write_all(&up_buf[..n]).await,
                }
            };
            let written = tokio::time::timeout(limits.idle, write)
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
            previous_up = up_buf[..n].to_vec();
            written
        } else {
            carried.down += n as u64;
            tokio::time::timeout(limits.idle, pw.write_all(&down_buf[..n]))
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
        };
        if let Err(e) = written {
            carried.end = format!("write: {e}");
            break;
        }
        if carried.up + carried.down > limits.max_bytes {
            carried.end = "byte limit".into();
            break;
        }
    }
    carried
}
