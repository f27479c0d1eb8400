//! `asyncpay bench crypto`: rates of the signature operations the protocol uses, each
//! beside libsecp256k1's BIP340 sign and verify measured in the same run.
//!
//! Each operation runs in rounds of `iterations` calls; the figure is the median rate over
//! `rounds` rounds, which damps a noisy machine without hiding a real difference. The rounds
//! of all operations and baselines are interleaved, so that a change in the machine's load
//! during the run affects each alike.
//!
//! Adaptor decryption is measured as the PTLC claim does it, on an encrypted signature
//! verified when the PTLC was accepted (`VerifiedEncryptedSignature::decrypt`: t·G = T and
//! an addition), beside libsecp256k1's signing. Decrypting one nobody verified checks the
//! result with a full BIP340 verification, so that row compares with libsecp256k1's
//! verification.
//!
//! ```
//! use asyncpay::bench::crypto::measure;
//!
//! let figures = measure(4, 1)?;
//! assert_eq!(figures.rows.len(), 10);
//! assert!(figures.render().contains("adaptor encrypt"));
//! assert_eq!(figures.to_json()["rounds"], 1);
//! # Ok::<(), asyncpay::bench::BenchError>(())
//! ```

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Instant;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::script::Builder;
use bitcoin::secp256k1::{Keypair, Message, Secp256k1};
use bitcoin::{
    absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut,
};
use serde_json::{json, Value};

use super::channel::{self, ChannelFigures};
use super::BenchError;
use crate::crypto::adaptor::{price_point, sells, AdaptorSecret, EncryptedSignature};
use crate::crypto::bip118::{
    sighash, ApoKey, ApoScriptExt, ApoSighashType, LeafContext, SpentOutputs,
};
use crate::crypto::keys::SecretKey;
use crate::crypto::nonce::{MemoryCounterStore, NonceSeed, NonceSource};

/// One measured operation beside its baseline.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// The operation.
    pub op: &'static str,
    /// Its median rate, calls per second.
    pub per_sec: f64,
    /// The libsecp256k1 operation it is compared with.
    pub baseline: &'static str,
    /// The baseline's median rate, calls per second.
    pub baseline_per_sec: f64,
}

/// What `asyncpay bench crypto` prints.
#[derive(Debug, Clone)]
pub struct CryptoFigures {
    /// Calls per round.
    pub iterations: u32,
    /// Rounds; each figure is the median round.
    pub rounds: u32,
    /// libsecp256k1's BIP340 signing rate.
    pub libsecp_sign_per_sec: f64,
    /// libsecp256k1's BIP340 verification rate.
    pub libsecp_verify_per_sec: f64,
    /// Each operation beside its baseline.
    pub rows: Vec<Row>,
    /// The 1-sat transfers of the channel-update rows.
    pub channel_updates: u32,
    /// The channel updates with every persist fsynced.
    pub channel_durable: ChannelFigures,
}

impl CryptoFigures {
    /// The figures as one JSON object (what `--json` prints).
    pub fn to_json(&self) -> Value {
        let out: Vec<_> = self
            .rows
            .iter()
            .map(|row| {
                let (op, ops, base, base_ops) =
                    (row.op, row.per_sec, row.baseline, row.baseline_per_sec);
                json!({"op": op, "per_sec": ops, "baseline": base, "baseline_per_sec": base_ops, "ratio": ops / base_ops})
            })
            .collect();
        let (n, r) = (self.iterations, self.rounds);
        let (lib_sign, lib_verify) = (self.libsecp_sign_per_sec, self.libsecp_verify_per_sec);
        json!({"iterations": n, "rounds": r, "libsecp_sign_per_sec": lib_sign, "libsecp_verify_per_sec": lib_verify, "rows": out})
    }

    /// The figures as a text table, one line per operation.
    pub fn render(&self) -> String {
        let (n, r) = (self.iterations, self.rounds);
        let (lib_sign, lib_verify) = (self.libsecp_sign_per_sec, self.libsecp_verify_per_sec);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "bench crypto: median of {r} rounds x {n} calls; baselines measured in this run"
        );
        let _ = writeln!(out, "  libsecp256k1 BIP340 sign    {lib_sign:>12.0} /s");
        let _ = writeln!(out, "  libsecp256k1 BIP340 verify  {lib_verify:>12.0} /s");
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  {:<34} {:>12} {:>16} {:>8}",
            "operation", "per second", "baseline", "ratio"
        );
        for row in &self.rows {
            let (op, ops, base, base_ops) =
                (row.op, row.per_sec, row.baseline, row.baseline_per_sec);
            let _ = writeln!(
                out,
                "  {op:<36} {ops:>12.0} {base:>16} {:>8.3}x",
                ops / base_ops
            );
        }
        let _ = writeln!(out);
        let (updates, durable) = (self.channel_updates, &self.channel_durable);
        let _ = writeln!(
            out,
            "  channel update: {updates} transfers; {:.1} fsynced persists and {:.1} messages per update",
            durable.persists_per_update, durable.messages_per_update
        );
        out
    }
}

fn bytes(tag: &str, i: u32) -> [u8; 32] {
    sha256::Hash::hash(format!("{tag}/{i}").as_bytes()).to_byte_array()
}

/// Median calls per second of each of `ops` over `rounds` rounds of `iterations` calls.
///
/// The rounds are interleaved: each round times every operation in turn. On a shared
/// machine whose load changes during the run, a change then falls on every operation alike
/// rather than on whichever one was being timed, and the ratios between them hold.
fn rates<const N: usize>(
    iterations: u32,
    rounds: u32,
    mut ops: [&mut dyn FnMut(u32); N],
) -> [f64; N] {
    let mut samples: [Vec<f64>; N] = std::array::from_fn(|_| Vec::new());
    for _ in 0..rounds {
        for (op, samples) in ops.iter_mut().zip(samples.iter_mut()) {
            let start = Instant::now();
            for i in 0..iterations {
                op(i);
            }
            samples.push(f64::from(iterations) / start.elapsed().as_secs_f64());
        }
    }
    samples.map(|mut rates| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    })
}

/// An eltoo-style update transaction and its two-key APO leaf, to time a real sighash.
fn update_fixture(a: &Keypair, s: &Keypair) -> (Transaction, ScriptBuf) {
    let leaf = Builder::new()
        .push_apo_checksigverify(&ApoKey::Explicit(a.x_only_public_key().0))
        .push_apo_checksig(&ApoKey::Explicit(s.x_only_public_key().0))
        .into_script();
    let tx = Transaction {
        version: transaction::Version(3),
        lock_time: absolute::LockTime::from_consensus(500_000_042),
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: ScriptBuf::new(),
            sequence: Sequence(0xffff_fffd),
            witness: Default::default(),
        }],
        output: vec![
            TxOut {
                value: Amount::from_sat(1_000_000),
                script_pubkey: ScriptBuf::from_bytes([&[0x51u8, 0x20][..], &[0x42u8; 32]].concat()),
            },
            TxOut {
                value: Amount::ZERO,
                script_pubkey: ScriptBuf::from_bytes(vec![0x51, 0x02, 0x4e, 0x73]),
            },
        ],
    };
    (tx, leaf)
}

/// Measures every operation: `rounds` rounds of `iterations` calls each, and
/// `iterations / 4` channel updates with and without fsync.
#[allow(non_snake_case)] // paper notation: X, R, T
pub fn measure(iterations: u32, rounds: u32) -> Result<CryptoFigures, BenchError> {
    if iterations == 0 || rounds == 0 {
        return Err(BenchError::NoRounds);
    }
    let (n, r) = (iterations, rounds);
    let secp = Secp256k1::new();
    let x = SecretKey::from_bytes(bytes("offerer", 0))?;
    let kp = x.to_keypair(&secp);
    let (xonly, _) = kp.x_only_public_key();
    let X = x.public_key();
    let m = bytes("message", 0);
    let msg = Message::from_digest(m);
    let t = AdaptorSecret::from_bytes(bytes("secret", 0))?;
    let T = t.adaptor_point();

    // Fixtures. Baselines: libsecp256k1 BIP340. Adaptor signatures: schnorr_fun's scheme on
    // libsecp256k1's curve arithmetic.
    let lib_sig = secp.sign_schnorr_no_aux_rand(&msg, &kp);
    let encrypted = EncryptedSignature::encrypt(&x, &T, &m, &[7u8; 32]);
    let verified = encrypted.verify(&X, &T, &m)?;
    let decrypted = verified.decrypt(&t)?;
    // The price point of a committed nonce, and checking a sold scalar against it.
    let mut store = MemoryCounterStore::default();
    let mut source = NonceSource::load(NonceSeed::from_bytes(bytes("seed", 0)), &store)?;
    let nonce = source.reserve(&X, &[1u8; 32])?.persist(&mut store)?;
    let R = nonce.public_nonce();
    let T_price = price_point(&R, &X, &m)?;
    let s = AdaptorSecret::from_signature(&nonce.sign(&x, &m)?)?;
    if !sells(&s, &T_price) {
        return Err(BenchError::PricePoint);
    }
    // The BIP118 (APOAS) sighash of an update transaction.
    let other = Keypair::from_seckey_slice(&secp, &bytes("lsp", 0))?;
    let (update, leaf) = update_fixture(&kp, &other);

    let [lib_sign, lib_verify, encrypt, verify, decrypt, decrypt_unverified, recover, price, check_sale, apo_sighash] =
        rates(
            n,
            r,
            [
                &mut |i| {
                    black_box(secp.sign_schnorr_with_aux_rand(&msg, &kp, &bytes("aux", i)));
                },
                &mut |_| {
                    black_box(secp.verify_schnorr(&lib_sig, &msg, &xonly)).expect("valid");
                },
                &mut |i| {
                    black_box(EncryptedSignature::encrypt(&x, &T, &m, &bytes("aux", i)));
                },
                &mut |_| {
                    black_box(encrypted.verify(&X, &T, &m)).expect("valid");
                },
                &mut |_| {
                    black_box(verified.decrypt(&t)).expect("decrypts");
                },
                &mut |_| {
                    black_box(encrypted.decrypt(&t, &X, &m)).expect("decrypts");
                },
                &mut |_| {
                    black_box(encrypted.recover(&T, &decrypted)).expect("recovers");
                },
                &mut |_| {
                    black_box(price_point(&R, &X, &m)).expect("price point");
                },
                &mut |_| {
                    black_box(sells(&s, &T_price));
                },
                &mut |_| {
                    black_box(
                        sighash(
                            &update,
                            0,
                            SpentOutputs::Unknown,
                            ApoSighashType::AllPlusAnyPrevoutAnyScript,
                            &LeafContext::new(&leaf),
                            None,
                        )
                        .expect("sighash"),
                    );
                },
            ],
        );

    // A full channel update, both sides in process, each persist fsynced to a temp dir.
    let updates = (n / 4).max(1);
    let durable = channel::measure(updates, true)?;
    let volatile = channel::measure(updates, false)?;

    let rows = [
        ("adaptor encrypt", encrypt, "libsecp sign", lib_sign),
        ("adaptor verify", verify, "libsecp verify", lib_verify),
        ("adaptor decrypt", decrypt, "libsecp sign", lib_sign),
        (
            "adaptor decrypt, unverified",
            decrypt_unverified,
            "libsecp verify",
            lib_verify,
        ),
        ("adaptor recover", recover, "libsecp sign", lib_sign),
        (
            "price point T = R + e·P",
            price,
            "libsecp verify",
            lib_verify,
        ),
        (
            "sale check s·G == T",
            check_sale,
            "libsecp verify",
            lib_verify,
        ),
        (
            "BIP118 APOAS sighash (update tx)",
            apo_sighash,
            "libsecp sign",
            lib_sign,
        ),
        (
            "channel update, both sides, fsync",
            durable.updates_per_sec,
            "libsecp sign",
            lib_sign,
        ),
        (
            "channel update, both sides, no fsync",
            volatile.updates_per_sec,
            "libsecp sign",
            lib_sign,
        ),
    ];
    Ok(CryptoFigures {
        iterations: n,
        rounds: r,
        libsecp_sign_per_sec: lib_sign,
        libsecp_verify_per_sec: lib_verify,
        rows: rows
            .into_iter()
            .map(|(op, per_sec, baseline, baseline_per_sec)| Row {
                op,
                per_sec,
                baseline,
                baseline_per_sec,
            })
            .collect(),
        channel_updates: updates,
        channel_durable: durable,
    })
}
