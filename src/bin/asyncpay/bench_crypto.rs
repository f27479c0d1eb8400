//! `asyncpay bench crypto`: rates of the signature operations the protocol uses, each
//! printed beside libsecp256k1's BIP340 sign and verify measured in the same run.
//!
//! Each operation runs in rounds of `--iterations` calls; the figure is the median rate over
//! `--rounds` rounds, which damps a noisy machine without hiding a real difference.

use std::hint::black_box;
use std::time::Instant;

use asyncpay::crypto::adaptor::{price_point, sells, AdaptorSecret, EncryptedSignature};
use asyncpay::crypto::bip118::{
    sighash, ApoKey, ApoScriptExt, ApoSighashType, LeafContext, SpentOutputs,
};
use asyncpay::crypto::keys::SecretKey;
use asyncpay::crypto::nonce::{MemoryCounterStore, NonceSeed, NonceSource};
use bitcoin::hashes::{sha256, Hash};
use bitcoin::script::Builder;
use bitcoin::secp256k1::{Keypair, Message, Secp256k1};
use bitcoin::{
    absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut,
};
use clap::Args;
use serde_json::json;

/// Options of `asyncpay bench crypto`.
#[derive(Args)]
pub struct BenchCryptoArgs {
    /// Calls per round.
    #[arg(long, default_value_t = 2_000)]
    iterations: u32,
    /// Rounds; the median round is reported.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

fn bytes(tag: &str, i: u32) -> [u8; 32] {
    sha256::Hash::hash(format!("{tag}/{i}").as_bytes()).to_byte_array()
}

/// Median calls per second of `op` over `rounds` rounds of `iterations` calls.
fn rate(iterations: u32, rounds: u32, mut op: impl FnMut(u32)) -> f64 {
    let mut rates: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for i in 0..iterations {
                op(i);
            }
            f64::from(iterations) / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
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

#[allow(non_snake_case)] // paper notation: X, R, T
pub fn run(args: BenchCryptoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.iterations > 0 && args.rounds > 0,
        "iterations and rounds must be positive"
    );
    let (n, r) = (args.iterations, args.rounds);
    let secp = Secp256k1::new();
    let x = SecretKey::from_bytes(bytes("offerer", 0))?;
    let kp = x.to_keypair(&secp);
    let (xonly, _) = kp.x_only_public_key();
    let X = x.public_key();
    let m = bytes("message", 0);
    let msg = Message::from_digest(m);
    let t = AdaptorSecret::from_bytes(bytes("secret", 0))?;
    let T = t.adaptor_point();

    // Baselines: libsecp256k1 BIP340.
    let lib_sig = secp.sign_schnorr_no_aux_rand(&msg, &kp);
    let lib_sign = rate(n, r, |i| {
        black_box(secp.sign_schnorr_with_aux_rand(&msg, &kp, &bytes("aux", i)));
    });
    let lib_verify = rate(n, r, |_| {
        black_box(secp.verify_schnorr(&lib_sig, &msg, &xonly)).expect("valid");
    });

    // Adaptor signatures (schnorr_fun).
    let encrypted = EncryptedSignature::encrypt(&x, &T, &m, &[7u8; 32]);
    let decrypted = encrypted.decrypt(&t, &X, &m)?;
    let encrypt = rate(n, r, |i| {
        black_box(EncryptedSignature::encrypt(&x, &T, &m, &bytes("aux", i)));
    });
    let verify = rate(n, r, |_| {
        black_box(encrypted.verify(&X, &T, &m)).expect("valid");
    });
    let decrypt = rate(n, r, |_| {
        black_box(encrypted.decrypt(&t, &X, &m)).expect("decrypts");
    });
    let recover = rate(n, r, |_| {
        black_box(encrypted.recover(&T, &decrypted)).expect("recovers");
    });

    // The price point of a committed nonce, and checking a sold scalar against it.
    let mut store = MemoryCounterStore::default();
    let mut source = NonceSource::load(NonceSeed::from_bytes(bytes("seed", 0)), &store)?;
    let nonce = source.reserve(&X, &[1u8; 32])?.persist(&mut store)?;
    let R = nonce.public_nonce();
    let T_price = price_point(&R, &X, &m)?;
    let s = AdaptorSecret::from_signature(&nonce.sign(&x, &m)?)?;
    anyhow::ensure!(
        sells(&s, &T_price),
        "price point does not match the signature"
    );
    let price = rate(n, r, |_| {
        black_box(price_point(&R, &X, &m)).expect("price point");
    });
    let check_sale = rate(n, r, |_| {
        black_box(sells(&s, &T_price));
    });

    // The BIP118 (APOAS) sighash of an update transaction.
    let other = Keypair::from_seckey_slice(&secp, &bytes("lsp", 0))?;
    let (update, leaf) = update_fixture(&kp, &other);
    let apo_sighash = rate(n, r, |_| {
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
    });

    // A full channel update, both sides in process, each persist fsynced to a temp dir.
    let updates = (n / 4).max(1);
    let durable = crate::bench_channel::measure(updates, true)?;
    let volatile = crate::bench_channel::measure(updates, false)?;

    let rows = [
        ("adaptor encrypt", encrypt, "libsecp sign", lib_sign),
        ("adaptor verify", verify, "libsecp verify", lib_verify),
        ("adaptor decrypt", decrypt, "libsecp sign", lib_sign),
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
    if args.json {
        let out: Vec<_> = rows
            .iter()
            .map(|(op, ops, base, base_ops)| {
                json!({"op": op, "per_sec": ops, "baseline": base, "baseline_per_sec": base_ops, "ratio": ops / base_ops})
            })
            .collect();
        println!(
            "{}",
            json!({"iterations": n, "rounds": r, "libsecp_sign_per_sec": lib_sign, "libsecp_verify_per_sec": lib_verify, "rows": out})
        );
    } else {
        println!("bench crypto: median of {r} rounds x {n} calls; baselines measured in this run");
        println!("  libsecp256k1 BIP340 sign    {lib_sign:>12.0} /s");
        println!("  libsecp256k1 BIP340 verify  {lib_verify:>12.0} /s");
        println!();
        println!(
            "  {:<34} {:>12} {:>16} {:>8}",
            "operation", "per second", "baseline", "ratio"
        );
        for (op, ops, base, base_ops) in rows {
            println!("  {op:<36} {ops:>12.0} {base:>16} {:>8.3}x", ops / base_ops);
        }
        println!();
        println!(
            "  channel update: {updates} transfers; {:.1} fsynced persists and {:.1} messages per update",
            durable.persists_per_update, durable.messages_per_update
        );
    }
    Ok(())
}
