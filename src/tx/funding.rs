//! The funding output: where a channel's coins sit until an update or a cooperative close
//! spends them.
//!
//! A P2TR output with
//! - internal key: the MuSig2 (BIP327 key aggregation, keys in the order A, S) aggregate of
//!   the two channel keys, for the cooperative close ([`crate::tx::close`]);
//! - one leaf, the update leaf `<0x01‖P_A> CHECKSIGVERIFY <0x01‖P_S> CHECKSIG`, which any
//!   update U_n spends with two ALL|ANYPREVOUTANYSCRIPT signatures.
//!
//! Why MuSig2 rather than a second two-key leaf: a cooperative close is the common way a
//! channel ends, and a key-path spend carries one 64-byte signature and nothing else,
//! against two signatures, a 68-byte script and a 65-byte control block for a leaf (the
//! table in docs/transactions.md has the measured difference). Nobody can tell the close
//! from a single-key payment. The price is one extra round (public nonces) when closing,
//! which the two parties, both online to agree the close anyway, pay once. schnorr_fun's
//! `musig` module computes BIP327's key aggregation and signing; the taproot tweak is
//! applied as an x-only tweak so that the aggregate signs for the output key itself.
//!
//! The same two keys serve the update leaf and the MuSig2 aggregate; the update
//! signatures are ordinary BIP340 signatures whose price point S can compute, which is what
//! the pay-for-signature protocol needs.
//!
//! ```
//! use asyncpay::tx::{ChannelKeys, Funding};
//! use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
//! use bitcoin::Amount;
//!
//! let secp = Secp256k1::new();
//! let key = |b| Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[b; 32]).unwrap());
//! let keys = ChannelKeys::new(key(1).x_only_public_key().0, key(2).x_only_public_key().0);
//! let funding = Funding::new(keys, Amount::from_sat(1_000_000));
//! assert!(funding.script_pubkey().is_p2tr());
//! assert_eq!(funding.txout().value, Amount::from_sat(1_000_000));
//! ```

use bitcoin::key::XOnlyPublicKey;
use bitcoin::script::Builder;
use bitcoin::secp256k1::{Secp256k1, Verification};
use bitcoin::taproot::{ControlBlock, LeafVersion, TaprootBuilder, TaprootSpendInfo};
use bitcoin::{Amount, ScriptBuf, TxOut};
use schnorr_fun::fun::{marker::*, Point, Scalar};
use schnorr_fun::musig::AggKey;

use crate::crypto::bip118::{ApoKey, ApoScriptExt};

/// One of the two channel parties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Party {
    /// A: the payer (in the async payment), first in every script and key list.
    A,
    /// S: the LSP, second in every script and key list.
    S,
}

impl Party {
    /// The position of this party's key in scripts and in the MuSig2 key list.
    pub fn index(self) -> usize {
        match self {
            Party::A => 0,
            Party::S => 1,
        }
    }
}

/// The two parties' channel keys (x-only, BIP340).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ChannelKeys {
    /// P_A.
    pub a: XOnlyPublicKey,
    /// P_S.
    pub s: XOnlyPublicKey,
}

impl ChannelKeys {
    /// The keys of A and S.
    pub fn new(a: XOnlyPublicKey, s: XOnlyPublicKey) -> Self {
        ChannelKeys { a, s }
    }

    /// The key of `party`.
    pub fn of(&self, party: Party) -> XOnlyPublicKey {
        match party {
            Party::A => self.a,
            Party::S => self.s,
        }
    }

    /// `<0x01‖P_A> CHECKSIGVERIFY <0x01‖P_S> CHECKSIG`, the funding output's only leaf.
    ///
    /// Witness: `<sig_S> <sig_A>`, A's signature on top because it is checked first.
    pub fn update_checks(&self) -> Builder {
        Builder::new()
            .push_apo_checksigverify(&ApoKey::Explicit(self.a))
            .push_apo_checksig(&ApoKey::Explicit(self.s))
    }

    /// The MuSig2 aggregate (BIP327 KeyAgg over [P_A, P_S]) before the taproot tweak.
    pub(crate) fn musig_key(&self) -> AggKey<EvenY> {
        let point = |x: &XOnlyPublicKey| {
            Point::<EvenY>::from_xonly_bytes(x.serialize())
                .expect("an XOnlyPublicKey is a valid x coordinate")
                .normalize()
        };
        musig()
            .new_agg_key(vec![point(&self.a), point(&self.s)])
            .into_xonly_key()
    }

    /// The untweaked MuSig2 aggregate key: the funding output's internal key.
    pub fn cooperative_key(&self) -> XOnlyPublicKey {
        XOnlyPublicKey::from_slice(&self.musig_key().agg_public_key().to_xonly_bytes())
            .expect("an aggregate key is a valid x coordinate")
    }
}

/// The MuSig2 context: BIP340 challenges; nonce RNGs seeded from the caller's session id
/// and randomness ([`crate::tx::close::CloseNonce`]).
pub(crate) fn musig(
) -> schnorr_fun::musig::MuSig<sha2::Sha256, schnorr_fun::nonce::Deterministic<sha2::Sha256>> {
    schnorr_fun::musig::new_with_deterministic_nonces::<sha2::Sha256>()
}

/// The funding output of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Funding {
    keys: ChannelKeys,
    value: Amount,
    leaf: ScriptBuf,
    spend_info: TaprootSpendInfo,
}

impl Funding {
    /// The funding output holding `value` for the channel between `keys`.
    pub fn new(keys: ChannelKeys, value: Amount) -> Self {
        Self::with_context(super::secp(), keys, value)
    }

    /// [`Funding::new`] with a caller's secp256k1 context.
    pub fn with_context<C: Verification>(
        secp: &Secp256k1<C>,
        keys: ChannelKeys,
        value: Amount,
    ) -> Self {
        let leaf = keys.update_checks().into_script();
        let spend_info = TaprootBuilder::new()
            .add_leaf(0, leaf.clone())
            .expect("one leaf at depth 0")
            .finalize(secp, keys.cooperative_key())
            .expect("a one-leaf tree is complete");
        Funding {
            keys,
            value,
            leaf,
            spend_info,
        }
    }

    /// The channel keys.
    pub fn keys(&self) -> &ChannelKeys {
        &self.keys
    }

    /// The channel's value: every update output carries exactly this amount.
    pub fn value(&self) -> Amount {
        self.value
    }

    /// The update leaf (no state lock: every U_n may spend the funding output).
    pub fn update_leaf(&self) -> &ScriptBuf {
        &self.leaf
    }

    /// The control block for spending through the update leaf.
    pub fn update_control_block(&self) -> ControlBlock {
        self.spend_info
            .control_block(&(self.leaf.clone(), LeafVersion::TapScript))
            .expect("the leaf is in the tree")
    }

    /// The taproot spend data (output key, tweak, merkle root).
    pub fn spend_info(&self) -> &TaprootSpendInfo {
        &self.spend_info
    }

    /// The P2TR script.
    pub fn script_pubkey(&self) -> ScriptBuf {
        ScriptBuf::new_p2tr_tweaked(self.spend_info.output_key())
    }

    /// The funding output the funding transaction must create.
    pub fn txout(&self) -> TxOut {
        TxOut {
            value: self.value,
            script_pubkey: self.script_pubkey(),
        }
    }

    /// The MuSig2 aggregate tweaked by the taproot commitment: signs for the output key.
    pub(crate) fn tweaked_musig_key(&self) -> AggKey<EvenY> {
        let tweak = Scalar::<Public, Zero>::from_bytes(self.spend_info.tap_tweak().to_byte_array())
            .expect("a tap tweak below the curve order (checked by finalize)");
        self.keys
            .musig_key()
            .tweak(tweak)
            .expect("the tweak is not the negated aggregate secret (finalize succeeded)")
    }
}

use bitcoin::hashes::Hash as _;

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::{Keypair, SecretKey};

    pub(crate) fn keys() -> ChannelKeys {
        let secp = Secp256k1::new();
        let key = |b| {
            Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[b; 32]).expect("scalar"))
                .x_only_public_key()
                .0
        };
        ChannelKeys::new(key(0xa1), key(0x55))
    }

    #[test]
    fn update_leaf_is_two_apo_keys() {
        let f = Funding::new(keys(), Amount::from_sat(100_000));
        let bytes = f.update_leaf().as_bytes();
        assert_eq!(bytes.len(), 70);
        assert_eq!(&bytes[..2], &[0x21, 0x01]);
        assert_eq!(bytes[34], 0xad); // OP_CHECKSIGVERIFY
        assert_eq!(&bytes[35..37], &[0x21, 0x01]);
        assert_eq!(bytes[69], 0xac); // OP_CHECKSIG
    }

    #[test]
    fn tweaked_musig_key_is_the_output_key() {
        let f = Funding::new(keys(), Amount::from_sat(100_000));
        let agg = f.tweaked_musig_key().agg_public_key().to_xonly_bytes();
        assert_eq!(
            agg,
            f.spend_info()
                .output_key()
                .to_x_only_public_key()
                .serialize()
        );
        assert_eq!(f.spend_info().internal_key(), f.keys().cooperative_key());
    }

    #[test]
    fn key_order_matters() {
        let k = keys();
        let swapped = ChannelKeys::new(k.s, k.a);
        assert_ne!(k.cooperative_key(), swapped.cooperative_key());
    }
}
