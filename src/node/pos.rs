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
use crate::node::files::{load_seed, private_file, receipt_epoch, FileError};
use crate::node::store::{Store, StoreError};
use crate::protocol::channel::Snapshot;
use crate::protocol::payment::{Payee, PayeePayment, PaymentError, PaymentId, SaleLetter};

/// Why a handed letter is refused. Nothing is stored.
#[derive(Debug, thiserror::Error)]
pub enum PosError {
    /// No node seed in the data directory.
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
    /// Not a sealed envelope for this node, or one that does not open.
    #[error("not a letter sealed to this merchant: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The envelope is not signed by the payer the letter names.
    #[error("the envelope is not signed by the letter's payer")]
    Sender,
    /// The letter itself is refused: forged or other-merchant offer, a scalar that does not
    /// sell the point, a receipt slot spent, expired at the last height the node saw.
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
    /// The offer expires too soon after the last height the node saw.
    #[error(
        "the offer expires at height {expiry}, {left} blocks after the last height this \
         device saw ({height}); it asks for at least {min_blocks}"
    )]
    TooSoon {
        /// The offer's last height.
        expiry: u32,
        /// The last height the node saw.
        height: u32,
        /// Blocks left.
        left: u32,
        /// Blocks asked for.
        min_blocks: u32,
    },
}

/// A letter accepted offline, as `asyncpay pos accept` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    /// The payment.
    pub payment_id: PaymentId,
    /// `false` if the device held this letter already (accepting it twice is one payment).
    pub new: bool,
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
    /// The last height the node saw (its channels'), the device's only clock.
    pub last_known_height: u32,
    /// Blocks from that height to the offer's expiry.
    pub blocks_left: u32,
    /// What the check guarantees and what it relies on.
    pub guarantee: &'static str,
}

/// What an accepted letter guarantees, in one sentence (docs/payment.md says it at length).
pub const GUARANTEE: &str = "checked offline: the LSP signed an irrevocable offer to pay this \
    merchant the amount for the scalar this letter and the merchant's receipt signature make, \
    and that scalar sells the offer's point; the merchant is paid if it sells before the \
    offer's expiry and the LSP honours its signed offer then (the LSP's honesty and liquidity \
    are what this relies on, not the payer's)";

/// Checks the sealed letter `envelope` handed to the merchant node of `data_dir` and queues
/// it for the node to sell; touches no network. `amount_sat`: what the till asks (refused if
/// the letter pays another amount); `min_blocks`: how many blocks past the last height the
/// node saw the offer must still run.
pub fn accept(
    data_dir: &Path,
    envelope: &[u8],
    amount_sat: Option<u64>,
    min_blocks: u32,
) -> Result<Accepted, PosError> {
    if !data_dir.join("seed").exists() {
        return Err(PosError::NoNode(data_dir.to_path_buf()));
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
    private_file(&data_dir.join("node.db"))?;
    let store = Store::open(&data_dir.join("node.db"))?;
    let channels: Vec<(PublicKey, Snapshot)> = store.channels()?;
    let height = channels.iter().map(|(_, s)| s.height).max().unwrap_or(0);
    let payee = Payee::restore(
        key,
        ReceiptKeys::from_seed(&seed),
        receipt_epoch(data_dir)?,
        store.payments::<PayeePayment>()?,
    );
    let new = payee.vet(&letter, height)?;
    let offer = &letter.offer;
    if !offer.irrevocable {
        return Err(PosError::Revocable);
    }
    if let Some(asked) = amount_sat {
        if asked != offer.amount_sat {
            return Err(PosError::Amount {
                paid: offer.amount_sat,
                asked,
            });
        }
    }
    if !channels.iter().any(|(peer, _)| *peer == offer.lsp) {
        return Err(PosError::NoChannel(offer.lsp.to_string()));
    }
    let left = offer.expiry.saturating_sub(height);
    if left < min_blocks {
        return Err(PosError::TooSoon {
            expiry: offer.expiry,
            height,
            left,
            min_blocks,
        });
    }
    store.put_inbox(&hex::encode(sealed.id.0), envelope)?;
    Ok(Accepted {
        payment_id: offer.payment_id,
        new,
        amount_sat: offer.amount_sat,
        payer: letter.payer,
        lsp: offer.lsp,
        note: letter.note.clone(),
        offer_expiry: offer.expiry,
        last_known_height: height,
        blocks_left: left,
        guarantee: GUARANTEE,
    })
}

/// Limits of a [`relay`].
#[derive(Debug, Clone, Copy)]
pub struct RelayLimits {
    /// Connections carried at once; more are closed at once.
    pub max_connections: usize,
    /// A connection with no byte either way for this long is closed.
    pub idle: Duration,
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
            idle: Duration::from_secs(60),
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
    let report = Arc::new(report);
    loop {
        let (payer, from) = listener.accept().await?;
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(payer);
            continue;
        };
        let report = report.clone();
        tokio::spawn(async move {
            let from = from.to_string();
            let on_fault = |kind, at_bytes| {
                report(RelayEvent::Fault {
                    from: from.clone(),
                    kind,
                    at_bytes,
                })
            };
            let carried = carry(payer, to, limits, &on_fault).await;
            report(RelayEvent::Carried(Carried {
                from: from.clone(),
                ..carried
            }));
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
            .inspect(|_| previous_up = up_buf[..n].to_vec())
        } else {
            carried.down += n as u64;
            pw.write_all(&down_buf[..n]).await
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
