//! Transaction builders, one module per transaction kind.
//!
//! Every function here is pure: keys, amounts, outpoints and randomness come in as
//! arguments, transactions and sighashes come out. Nothing is broadcast or stored.
//! The formats are described in `docs/transactions.md`.
//!
//! # API summary
//!
//! | module | build | sign / finish |
//! |---|---|---|
//! | [`funding`] | [`Funding::new`](funding::Funding::new)`(ChannelKeys, value)`: the channel output's `script_pubkey`/`txout` | the funding transaction itself is the wallet's |
//! | [`update`] | [`Update::new`](update::Update::new)`(&Funding, n, &Settlement)`: U_n, unbound | [`Update::sighash`](update::Update::sighash) (APOAS\|ALL, the same for every binding) → both sign → [`Update::bind`](update::Update::bind)`(SpentChannel, sig_a, sig_s)` |
//! | [`settlement`] | [`Settlement::new`](settlement::Settlement::new)`(&Funding, n, shared_delay, SettlementTerms)`: SE_n, its covenant leaf | [`Settlement::bind`](settlement::Settlement::bind)`(update outpoint)`: no signatures needed |
//! | [`ptlc`] | [`Ptlc`](ptlc::Ptlc) (output), [`PtlcExpiry::checked`](ptlc::PtlcExpiry::checked) (the 2·shared_delay rule) | [`Claim`](ptlc::Claim): offerer's adaptor half in advance, payee finishes; [`extract_secret`](ptlc::extract_secret); [`Timeout`](ptlc::Timeout) |
//! | [`close`] | [`close::cooperative_close`]`(&Funding, outpoint, outputs)` | MuSig2: [`CloseNonce`](close::CloseNonce) → [`close::partial_sign`] → [`close::combine`] |
//! | [`anchor`] | [`anchor::cpfp_child`]`(parent, fee coin, change, fee)`: v3 child for `submitpackage` | the fee coin is the caller's to sign |
//!
//! State numbers: [`state_locktime`] gives TL(n) = 500 000 000 + n. Amounts are conserved
//! exactly: U_n and SE_n pay no fee (their P2A anchor is spent by a CPFP child), claim
//! spends pay no fee either, timeout and cooperative-close spends pay theirs from the value.
//!
//! # Fees
//!
//! Update, settlement and PTLC-claim transactions carry signatures that commit to all
//! outputs and are made long before they are published, so they cannot pick a fee.
//! They are version 3 (TRUC), pay zero fee and carry one pay-to-anchor (P2A) output; the
//! publisher attaches a version 3 child spending that anchor plus one of its own coins and
//! submits both with `submitpackage`. A zero-value anchor is ephemeral dust, which policy
//! accepts exactly because the parent pays no fee and the child spends it in the same
//! package. Transactions signed at publication time (PTLC timeout, cooperative close) pay
//! their fee out of the value they spend and go through `sendrawtransaction` alone.

use bitcoin::absolute::LockTime;
use bitcoin::key::XOnlyPublicKey;
use bitcoin::{Amount, ScriptBuf, TxOut};

pub mod anchor;
pub mod close;
pub mod funding;
pub mod ptlc;
pub mod settlement;
pub mod update;

pub use funding::{ChannelKeys, Funding, Party};
pub use ptlc::{Claim, Ptlc, PtlcExpiry, Timeout};
pub use settlement::{Settlement, SettlementTerms};
pub use update::{SpentChannel, Update};

/// TL(0): the first state number, a timestamp locktime long in the past.
pub const STATE_LOCKTIME_BASE: u32 = 500_000_000;

/// The largest state number n for which TL(n) is still a valid locktime.
pub const MAX_STATE: u32 = u32::MAX - STATE_LOCKTIME_BASE;

/// Version of every transaction that carries a P2A anchor (TRUC, BIP431).
pub const TRUC_VERSION: i32 = 3;

/// Why a transaction cannot be built or finished.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// TL(n) would not fit in a 32-bit locktime.
    #[error("state number {state} exceeds the largest state {MAX_STATE}")]
    StateTooLarge {
        /// The rejected state number.
        state: u64,
    },
    /// The outputs need more than the value being spent.
    #[error("outputs need {needed} but only {available} is available")]
    InsufficientValue {
        /// What the outputs (and fee) add up to.
        needed: Amount,
        /// The value being spent.
        available: Amount,
    },
    /// An output would be below its dust limit where dust is not allowed.
    #[error("output of {value} is below its dust limit {limit}")]
    Dust {
        /// The output's value.
        value: Amount,
        /// The smallest standard value for its script.
        limit: Amount,
    },
    /// The parent transaction has no pay-to-anchor output.
    #[error("transaction has no pay-to-anchor output")]
    NoAnchor,
    /// The settlement's outputs do not add up to the channel's value.
    #[error("settlement outputs add up to {outputs}, the channel holds {channel}")]
    Unbalanced {
        /// Sum of balances and PTLCs.
        outputs: Amount,
        /// The channel's value.
        channel: Amount,
    },
    /// The update output belongs to another settlement.
    #[error("update output of state {state} does not commit to this settlement")]
    WrongSettlement {
        /// State of the update output.
        state: u32,
    },
    /// An update may only spend the update output of an older state.
    #[error("update of state {state} cannot spend the update output of state {spent}")]
    NotNewer {
        /// The update's state.
        state: u32,
        /// The spent output's state.
        spent: u32,
    },
    /// A relative delay that BIP68 cannot express in blocks.
    #[error("shared delay {blocks} is zero or above 65535 blocks")]
    InvalidDelay {
        /// The rejected delay.
        blocks: u32,
    },
    /// A signature does not verify for the transaction it is meant for.
    #[error("{party} signature does not verify")]
    InvalidSignature {
        /// Whose signature it is.
        party: &'static str,
    },
    /// A MuSig2 nonce or partial signature is not well formed.
    #[error("malformed {what}")]
    Malformed {
        /// What was malformed.
        what: &'static str,
    },
    /// The signing key is not one of the channel's keys.
    #[error("signing key is not the channel key of party {party:?}")]
    WrongKey {
        /// The party the key was meant for.
        party: Party,
    },
    /// The BIP118 signature message cannot be computed.
    #[error(transparent)]
    Sighash(#[from] crate::crypto::bip118::Bip118Error),
    /// The BIP341 signature message cannot be computed.
    #[error("taproot sighash: {0}")]
    TaprootSighash(#[from] bitcoin::sighash::TaprootError),
    /// The key given to sign with is not the key the script expects.
    #[error("signing key is not the expected key {}", hex::encode(.expected))]
    KeyMismatch {
        /// The x-only key the script checks.
        expected: [u8; 32],
    },
    /// A MuSig2 secret nonce whose public half is not the one in the nonce list.
    #[error("secret nonce does not match the public nonce listed for party {party:?}")]
    NonceMismatch {
        /// The party whose nonce it was meant to be.
        party: Party,
    },
}

/// TL(n) = 500 000 000 + n, the nLockTime of U_n and the CLTV argument of the update leaf
/// that U_n's successors spend. A timestamp in 1985, so always satisfied.
pub fn state_locktime(n: u32) -> Result<LockTime, TxError> {
    n.checked_add(STATE_LOCKTIME_BASE)
        .map(LockTime::from_consensus)
        .ok_or(TxError::StateTooLarge { state: n.into() })
}

/// The BIP341 "nothing up my sleeve" key H (lift_x of SHA256 of G's uncompressed encoding):
/// internal key of outputs that must only be spent through their script leaves.
pub fn unspendable_internal_key() -> XOnlyPublicKey {
    const H: [u8; 32] = [
        0x50, 0x92, 0x9b, 0x74, 0xc1, 0xa0, 0x49, 0x54, 0xb7, 0x8b, 0x4b, 0x60, 0x35, 0xe9, 0x7a,
        0x5e, 0x07, 0x8a, 0x5a, 0x0f, 0x28, 0xec, 0x96, 0xd5, 0x47, 0xbf, 0xee, 0x9a, 0xce, 0x80,
        0x3a, 0xc0,
    ];
    // Parsed once: parsing takes a square root, and every update output and PTLC output
    // starts from H.
    static PARSED: std::sync::LazyLock<XOnlyPublicKey> = std::sync::LazyLock::new(|| {
        XOnlyPublicKey::from_slice(&H).expect("H is a curve point (BIP341)")
    });
    *PARSED
}

/// A pay-to-anchor output (`OP_1 <0x4e73>`) holding `value`.
pub fn p2a_output(value: Amount) -> TxOut {
    TxOut {
        value,
        script_pubkey: ScriptBuf::new_p2a(),
    }
}

/// The smallest value policy relays for an output with this script (3 sat/vB dust rule).
pub fn dust_limit(script_pubkey: &ScriptBuf) -> Amount {
    script_pubkey.minimal_non_dust()
}

pub(crate) use crate::crypto::secp;

/// A key pair with secret `[b; 32]`, for the unit tests of the builders.
#[cfg(test)]
pub(crate) fn test_keypair(b: u8) -> bitcoin::secp256k1::Keypair {
    bitcoin::secp256k1::Keypair::from_secret_key(
        &bitcoin::secp256k1::Secp256k1::new(),
        &bitcoin::secp256k1::SecretKey::from_slice(&[b; 32]).expect("1..=254 is a valid scalar"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_locktimes_are_timestamps_and_bounded() {
        assert_eq!(state_locktime(0).unwrap().to_consensus_u32(), 500_000_000);
        assert!(!state_locktime(7).unwrap().is_block_height());
        assert_eq!(
            state_locktime(MAX_STATE).unwrap().to_consensus_u32(),
            u32::MAX
        );
        assert!(matches!(
            state_locktime(MAX_STATE + 1),
            Err(TxError::StateTooLarge { .. })
        ));
    }

    #[test]
    fn nums_key_is_bip341_h() {
        assert_eq!(
            unspendable_internal_key().to_string(),
            "50929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0"
        );
    }

    #[test]
    fn errors_stay_small() {
        // Callers wrap TxError in their own errors; keep it well below clippy's 128 bytes.
        assert!(std::mem::size_of::<TxError>() <= 64);
    }

    #[test]
    fn anchor_script_is_p2a() {
        let out = p2a_output(Amount::ZERO);
        assert_eq!(out.script_pubkey.as_bytes(), &[0x51, 0x02, 0x4e, 0x73]);
        assert_eq!(dust_limit(&out.script_pubkey), Amount::from_sat(240));
    }
}
