//! S's floor per sale: the elliptic-curve operations the protocol requires of S for one
//! sale, each timed with libsecp256k1 on S's thread during the sales ([`FloorSampler`]),
//! against the core time S spends per sale.
//!
//! A sale at S (four inputs): B's invoice arrives for an offered payment; S adds a PTLC to
//! B on S–B (S proposes U_{n+1}, B countersigns, S completes); B fulfils it (B proposes
//! U_{n+2} with the scalar t, S countersigns, B completes); S completes A's withheld state
//! with t. [`REQUIRED`] lists what of that needs the curve, and why; [`DONE_TODAY`] what the
//! implementation does per sale today, by [`Op`] as [`crate::crypto::tally`] counts it at
//! S, with what of it is not required (the optimisation targets). The sales count the
//! operations on S's thread, so a change of the code that changes them shows in the report
//! (`counted_per_sale` next to `expected_per_sale`) and fails the bench's test.
//!
//! Operations with no libsecp256k1 call of their own are timed as their cheapest
//! decomposition into libsecp256k1 calls ([`Call`]); none is timed with this crate's own
//! implementation (secp256kfun, which is slower).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash as _;
use bitcoin::key::{TapTweak, UntweakedPublicKey};
use bitcoin::secp256k1::{Keypair, Message, PublicKey, Scalar, Secp256k1, SecretKey};
use bitcoin::taproot::TapNodeHash;
use serde_json::{json, Value};

use crate::crypto::tally::{Op, Tally};

/// A libsecp256k1 call (of the `bitcoin::secp256k1` crate the project uses) that the floor's
/// operations are timed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Call {
    /// `Secp256k1::sign_schnorr_with_aux_rand`: BIP340 signing (k·G, challenge, s).
    SignSchnorr,
    /// `Secp256k1::verify_schnorr` with a parsed x-only key.
    VerifySchnorr,
    /// `XOnlyPublicKey::add_tweak`: P + t·G for a given scalar t.
    AddTweak,
    /// `UntweakedPublicKey::tap_tweak` (BIP341): the tagged hash of the key and merkle root,
    /// then P + t·G.
    TapTweak,
    /// `PublicKey::combine`: a point addition.
    Combine,
    /// `PublicKey::from_secret_key`: t·G.
    FromSecretKey,
}

impl Call {
    const ALL: [Call; 6] = [
        Call::SignSchnorr,
        Call::VerifySchnorr,
        Call::AddTweak,
        Call::TapTweak,
        Call::Combine,
        Call::FromSecretKey,
    ];

    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Call::SignSchnorr => "sign_schnorr",
            Call::VerifySchnorr => "verify_schnorr",
            Call::AddTweak => "add_tweak",
            Call::TapTweak => "tap_tweak",
            Call::Combine => "combine",
            Call::FromSecretKey => "from_secret_key",
        }
    }
}

/// One curve operation the protocol requires of S per sale.
#[derive(Debug, Clone, Copy)]
pub struct FloorOp {
    /// Short name.
    pub name: &'static str,
    /// How many per sale.
    pub count: u64,
    /// Why the protocol needs it.
    pub why: &'static str,
    /// The libsecp256k1 calls one of them is timed as (their sum).
    pub calls: &'static [Call],
    /// The [`Op`] it is counted as at S today.
    pub counted_as: Op,
}

/// The curve operations the protocol requires of S for one sale. MuSig2 is not among them:
/// the update leaf checks two BIP118 keys, and MuSig2 only aggregates the funding key (once
/// per channel) and signs a cooperative close.
pub const REQUIRED: &[FloorOp] = &[
    FloorOp {
        name: "verify_invoice",
        count: 1,
        why: "B's signed invoice is the receipt S hands A and the terms (point, amount) S \
              locks a PTLC for: an unchecked signature could be a receipt A refuses and terms \
              B never asked for",
        calls: &[Call::VerifySchnorr],
        counted_as: Op::Verify,
    },
    FloorOp {
        name: "ptlc_internal_key",
        count: 1,
        why: "the PTLC output is keyed to T (internal key H + h(T)·G, no key path): S needs \
              its output key for the settlement it signs and the claim it pre-signs",
        calls: &[Call::AddTweak],
        counted_as: Op::LibsecpContext,
    },
    FloorOp {
        name: "ptlc_output_key",
        count: 1,
        why: "the PTLC output's taproot tweak commits to its success and timeout leaves; \
              SE_{n+1} pays to it",
        calls: &[Call::TapTweak],
        counted_as: Op::LibsecpContext,
    },
    FloorOp {
        name: "claim_adaptor_signature",
        count: 1,
        why: "B fulfils only if it can claim on chain: the PTLC carries S's signature on B's \
              claim encrypted to T (k·G, R + T, s = k + e·x)",
        calls: &[Call::SignSchnorr, Call::Combine],
        counted_as: Op::AdaptorEncrypt,
    },
    FloorOp {
        name: "settlement_covenant_signature",
        count: 2,
        why: "each new state's settlement (SE_{n+1} with the PTLC, SE_{n+2} without) is \
              fixed by a signature of the covenant key 1·G in its leaf, which U's output \
              commits to: S needs it to build U and so the sighash it signs",
        calls: &[Call::SignSchnorr],
        counted_as: Op::LibsecpContext,
    },
    FloorOp {
        name: "update_output_key",
        count: 2,
        why: "U_{n+1}'s and U_{n+2}'s output taproot tweak commits to the update leaf and \
              the settlement leaf; the sighash S signs covers it",
        calls: &[Call::TapTweak],
        counted_as: Op::LibsecpContext,
    },
    FloorOp {
        name: "update_signature",
        count: 2,
        why: "B holds a new state only with S's signature: S's on U_{n+1} (nonce k·G \
              committed in its proposal, s after B's countersignature) and its \
              countersignature on U_{n+2}",
        calls: &[Call::SignSchnorr],
        counted_as: Op::NonceCommit,
    },
    FloorOp {
        name: "verify_update_signature",
        count: 2,
        why: "B's countersignature on U_{n+1} and B's signature on U_{n+2}: otherwise S \
              would take as its latest a state it cannot publish",
        calls: &[Call::VerifySchnorr],
        counted_as: Op::Verify,
    },
    FloorOp {
        name: "secret_sells_point",
        count: 1,
        why: "S countersigns U_{n+2}, which pays B the PTLC, only for the t with t·G = T; as \
              T = R + e·X_A (computed at the offer), that makes (R, t) A's valid signature, so \
              completing A's state needs no curve operation more",
        calls: &[Call::FromSecretKey],
        counted_as: Op::SecretToPoint,
    },
];

/// What S does per sale today, by counted [`Op`]: how many, how many of them [`REQUIRED`]
/// asks for, and what the others are. Ops S does not do per sale are 0.
pub const DONE_TODAY: &[(Op, u64, u64, &str)] = &[
    (Op::Verify, 3, 3, ""),
    (Op::AdaptorEncrypt, 1, 1, ""),
    (Op::AdaptorVerify, 0, 0, ""),
    (Op::NonceCommit, 2, 2, ""),
    (Op::NonceSign, 2, 2, ""),
    (Op::SecretToPoint, 1, 1, ""),
    (Op::KeyFromSecret, 0, 0, ""),
    (Op::KeyToLibsecp, 0, 0, ""),
    (
        Op::PointDecode,
        3,
        0,
        "3 wire decodings (the invoice's T, payee key and LSP key) of values S compares \
         with what it holds (signatures and nonces are kept as their bytes)",
    ),
    (Op::LibsecpContext, 9, 9, ""),
];

/// Distinct inputs the floor's calls cycle through: a sale never verifies one signature
/// twice, and a call repeated on one input lets the branch predictor learn the digits of
/// its scalars, which the variable-time calls (verification, tweaks) branch on.
const INPUTS: usize = 64;

/// One set of inputs for every [`Call`].
struct Inputs {
    keypair: Keypair,
    xonly: bitcoin::secp256k1::XOnlyPublicKey,
    msg: Message,
    sig: bitcoin::secp256k1::schnorr::Signature,
    point: PublicKey,
    other: PublicKey,
    tweak: Scalar,
    root: TapNodeHash,
    secret: SecretKey,
}

fn inputs(secp: &Secp256k1<bitcoin::secp256k1::All>) -> Vec<Inputs> {
    let hash = |tag: &str, i: usize| crate::crypto::tagged_hash(tag, &[&(i as u64).to_be_bytes()]);
    let key = |tag: &str, i: usize| {
        SecretKey::from_slice(&hash(tag, i)).expect("a hash is a valid scalar but with 2^-128 odds")
    };
    (0..INPUTS)
        .map(|i| {
            let keypair = Keypair::from_secret_key(secp, &key("floor/signer", i));
            let (xonly, _) = keypair.x_only_public_key();
            let msg = Message::from_digest(hash("floor/message", i));
            Inputs {
                keypair,
                xonly,
                msg,
                sig: secp.sign_schnorr_with_aux_rand(&msg, &keypair, &hash("floor/aux", i)),
                point: PublicKey::from_secret_key(secp, &key("floor/point", i)),
                other: PublicKey::from_secret_key(secp, &key("floor/other", i)),
                tweak: Scalar::from_be_bytes(key("floor/tweak", i).secret_bytes())
                    .expect("a secret key is below the curve order"),
                root: TapNodeHash::from_byte_array(hash("floor/root", i)),
                secret: key("floor/secret", i),
            }
        })
        .collect()
}

/// Makes `call` once on `input`, for the timer.
fn make(secp: &Secp256k1<bitcoin::secp256k1::All>, call: Call, input: &Inputs, aux: &[u8; 32]) {
    match call {
        Call::SignSchnorr => {
            black_box(secp.sign_schnorr_with_aux_rand(black_box(&input.msg), &input.keypair, aux));
        }
        Call::VerifySchnorr => {
            black_box(secp.verify_schnorr(black_box(&input.sig), &input.msg, &input.xonly))
                .expect("valid signature");
        }
        Call::AddTweak => {
            black_box(black_box(input.xonly).add_tweak(secp, &input.tweak)).expect("valid tweak");
        }
        Call::TapTweak => {
            let internal: UntweakedPublicKey = black_box(input.xonly);
            black_box(internal.tap_tweak(secp, Some(input.root)));
        }
        Call::Combine => {
            black_box(black_box(input.point).combine(&input.other)).expect("not the infinity");
        }
        Call::FromSecretKey => {
            black_box(PublicKey::from_secret_key(secp, black_box(&input.secret)));
        }
    }
}

/// The floor's calls timed on S's thread between its batches during a sale run: each call
/// once per sample, on the next set of inputs. Timed there, the floor meets what S's core
/// time meets (the thread, the caches S's other work leaves, the payees on the other core,
/// the machine's speed at that moment), rather than a loop on an idle machine before or
/// after. The run reports the time the samples took, which its CPU figures leave out.
pub struct FloorSampler {
    secp: Secp256k1<bitcoin::secp256k1::All>,
    inputs: Vec<Inputs>,
    next: usize,
    times: Vec<(Call, Vec<f64>)>,
}

impl std::fmt::Debug for FloorSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FloorSampler")
            .field("samples", &self.samples())
            .finish()
    }
}

impl Default for FloorSampler {
    fn default() -> Self {
        let secp = Secp256k1::new();
        let inputs = inputs(&secp);
        FloorSampler {
            secp,
            inputs,
            next: 0,
            times: Call::ALL.iter().map(|c| (*c, vec![])).collect(),
        }
    }
}

impl FloorSampler {
    /// Times each call once.
    pub fn sample(&mut self) {
        let input = &self.inputs[self.next % INPUTS];
        let mut aux = [0u8; 32];
        aux[..8].copy_from_slice(&(self.next as u64).to_be_bytes());
        self.next += 1;
        for (call, times) in &mut self.times {
            let t = Instant::now();
            make(&self.secp, *call, input, &aux);
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }

    /// How many samples were taken.
    pub fn samples(&self) -> usize {
        self.next
    }

    /// Each call's median time, in microseconds (none before a sample).
    fn medians(&self) -> Option<Vec<(Call, f64)>> {
        if self.next == 0 {
            return None;
        }
        Some(
            self.times
                .iter()
                .map(|(call, times)| {
                    let mut sorted = times.clone();
                    sorted.sort_by(f64::total_cmp);
                    (*call, sorted[sorted.len() / 2])
                })
                .collect(),
        )
    }
}

/// The mean time of `f`, in microseconds: the median over batches of the batch means, so
/// that other work on the machine during a batch moves the figure little.
fn time_us(mut f: impl FnMut()) -> f64 {
    const BATCH: u32 = 32;
    const MIN_BATCHES: usize = 9;
    const BUDGET: Duration = Duration::from_millis(40);
    for _ in 0..BATCH {
        f();
    }
    let mut means = vec![];
    let start = Instant::now();
    while means.len() < MIN_BATCHES || start.elapsed() < BUDGET {
        let t = Instant::now();
        for _ in 0..BATCH {
            f();
        }
        means.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(BATCH));
    }
    means.sort_by(f64::total_cmp);
    means[means.len() / 2]
}

/// Each [`Call`] timed in a loop of its own on this thread, over the same distinct inputs,
/// in microseconds: the figure on a machine doing nothing else, for comparison.
fn time_calls_alone() -> Vec<(Call, f64)> {
    let secp = Secp256k1::new();
    let inputs = inputs(&secp);
    Call::ALL
        .iter()
        .map(|call| {
            let mut i = 0usize;
            let us = time_us(|| {
                i += 1;
                let mut aux = [0u8; 32];
                aux[..8].copy_from_slice(&(i as u64).to_be_bytes());
                make(&secp, *call, &inputs[i % INPUTS], &aux);
            });
            (*call, us)
        })
        .collect()
}

/// The floor, timed now, against S's core time per sale of each sale run (`(run name, core
/// µs per sale, S's operations counted per sale)`); the figure compared is the last run's
/// (the batched one when there is one).
pub fn report(runs: &[(&'static str, f64, Tally, u64)], sampled: &FloorSampler) -> Value {
    let alone = time_calls_alone();
    let (calls, timed) = match sampled.medians() {
        Some(medians) => (
            medians,
            format!(
                "on S's thread between its batches during the last sale run: the median of {} \
                 samples of each call",
                sampled.samples()
            ),
        ),
        None => (
            alone.clone(),
            "in a loop after the sales (no sample was taken during them)".to_owned(),
        ),
    };
    let us_of = |call: Call| {
        calls
            .iter()
            .find(|(c, _)| *c == call)
            .map_or(f64::NAN, |(_, us)| *us)
    };
    let ops: Vec<Value> = REQUIRED
        .iter()
        .map(|op| {
            let us_each: f64 = op.calls.iter().map(|c| us_of(*c)).sum();
            json!({
                "name": op.name,
                "count": op.count,
                "us_each": us_each,
                "why": op.why,
                "libsecp256k1": op.calls.iter().map(|c| c.name()).collect::<Vec<_>>().join(" + "),
            })
        })
        .collect();
    let floor: f64 = ops
        .iter()
        .map(|o| o["count"].as_f64().unwrap_or(0.0) * o["us_each"].as_f64().unwrap_or(0.0))
        .sum();
    let by_run: serde_json::Map<String, Value> = runs
        .iter()
        .map(|(name, core_us, tally, sales)| {
            let n = (*sales).max(1) as f64;
            let counted: serde_json::Map<String, Value> = tally
                .iter()
                .map(|(op, c)| (op.name().to_owned(), json!(c as f64 / n)))
                .collect();
            (
                (*name).to_owned(),
                json!({
                    "s_cpu_us_per_sale": core_us,
                    "floor_ratio": floor / core_us,
                    "counted_per_sale": counted,
                }),
            )
        })
        .collect();
    let (run, cpu) = runs
        .last()
        .map_or(("none", f64::NAN), |(name, us, _, _)| (*name, *us));
    let done_today: Vec<Value> = DONE_TODAY
        .iter()
        .map(|(op, expected, required, extra)| {
            let counted: Vec<Value> = runs
                .iter()
                .map(|(_, _, tally, sales)| json!(tally.get(*op) as f64 / (*sales).max(1) as f64))
                .collect();
            json!({
                "op": op.name(),
                "expected_per_sale": expected,
                "required_per_sale": required,
                "counted_per_sale": counted.last().cloned().unwrap_or(Value::Null),
                "not_required": extra,
            })
        })
        .collect();
    json!({
        "floor_us_per_sale": floor,
        "s_cpu_us_per_sale": cpu,
        "s_cpu_is": format!("sales.{run}.s_core_us_per_sale: S's time in its core per sale, persistence excluded"),
        "floor_ratio": floor / cpu,
        "floor_ops": ops,
        "libsecp256k1_us": calls
            .iter()
            .map(|(c, us)| (c.name().to_owned(), json!(us)))
            .collect::<serde_json::Map<_, _>>(),
        "libsecp256k1_timed": timed,
        "libsecp256k1_us_alone": alone
            .iter()
            .map(|(c, us)| (c.name().to_owned(), json!(us)))
            .collect::<serde_json::Map<_, _>>(),
        "by_run": by_run,
        "done_today": done_today,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_required_op_is_counted_today() {
        for op in REQUIRED {
            assert!(
                DONE_TODAY.iter().any(|(o, _, _, _)| *o == op.counted_as),
                "{}",
                op.name
            );
        }
        // What the floor asks of each counted kind is what DONE_TODAY says is required;
        // the tweaks and covenant signatures are counted as context uses with the
        // verifications (and nonce signs pair with nonce commits).
        for (op, today, required, _) in DONE_TODAY {
            assert!(required <= today, "{op:?}");
            let floor: u64 = REQUIRED
                .iter()
                .filter(|f| f.counted_as == *op)
                .map(|f| f.count)
                .sum();
            let floor = match op {
                Op::LibsecpContext => {
                    floor
                        + REQUIRED
                            .iter()
                            .filter(|f| f.counted_as == Op::Verify)
                            .map(|f| f.count)
                            .sum::<u64>()
                }
                Op::NonceSign => REQUIRED
                    .iter()
                    .filter(|f| f.counted_as == Op::NonceCommit)
                    .map(|f| f.count)
                    .sum(),
                _ => floor,
            };
            assert_eq!(floor, *required, "{op:?}");
        }
    }

    #[test]
    fn the_floor_is_timed() {
        let mut sampler = FloorSampler::default();
        sampler.sample();
        let r = report(&[("batched", 1000.0, Tally::default(), 1)], &sampler);
        let floor = r["floor_us_per_sale"].as_f64().expect("a number");
        assert!(floor > 0.0 && floor.is_finite());
        assert_eq!(r["floor_ratio"].as_f64(), Some(floor / 1000.0));
        assert_eq!(
            r["floor_ops"].as_array().map(Vec::len),
            Some(REQUIRED.len())
        );
    }
}
