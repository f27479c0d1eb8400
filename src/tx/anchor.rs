//! CPFP children for transactions that carry a pay-to-anchor (P2A) output.
//!
//! Update, settlement and claim transactions pay no fee. Whoever publishes one attaches a
//! child that spends its anchor and one coin of the publisher's wallet, pays the fee for
//! both, and returns the rest as change; the two go to the node with `submitpackage`.
//!
//! - version 3 (a TRUC parent's child must be TRUC too; it may have one unconfirmed
//!   parent, so the fee coin must be confirmed, and stay below 1000 vB, which one anchor
//!   input, one key-path input and one output always do);
//! - input 0: the anchor, with an empty witness (P2A is a witness v1 program that anyone
//!   may spend); input 1: the fee coin, which the caller signs;
//! - output 0: change = anchor value + fee coin − fee.
//!
//! ```
//! use asyncpay::tx::anchor::{cpfp_child, package_fee, CHILD_VBYTES};
//! use bitcoin::{absolute, transaction::Version, Amount, OutPoint, ScriptBuf, Transaction, TxOut};
//!
//! let parent = Transaction {
//!     version: Version(3),
//!     lock_time: absolute::LockTime::ZERO,
//!     input: vec![],
//!     output: vec![asyncpay::tx::p2a_output(Amount::ZERO)],
//! };
//! let coin = TxOut { value: Amount::from_sat(10_000), script_pubkey: ScriptBuf::new_p2a() };
//! let fee = package_fee(&parent, CHILD_VBYTES, 2);
//! let child = cpfp_child(&parent, OutPoint::null(), &coin, ScriptBuf::new_p2a(), fee)?;
//! assert_eq!(child.output[0].value, Amount::from_sat(10_000) - fee);
//! # Ok::<(), asyncpay::tx::TxError>(())
//! ```

use bitcoin::transaction::Version;
use bitcoin::{absolute, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

use super::{dust_limit, TxError, TRUC_VERSION};

/// Virtual size of a child with one anchor input, one P2TR key-path input and one P2TR
/// output (measured on regtest, see docs/transactions.md).
pub const CHILD_VBYTES: u64 = 153;

/// The parent's P2A output and where it is.
pub fn find_anchor(parent: &Transaction) -> Result<(OutPoint, TxOut), TxError> {
    let txid = parent.compute_txid();
    parent
        .output
        .iter()
        .enumerate()
        .find(|(_, out)| out.script_pubkey == ScriptBuf::new_p2a())
        .map(|(vout, out)| {
            (
                OutPoint {
                    txid,
                    vout: vout as u32,
                },
                out.clone(),
            )
        })
        .ok_or(TxError::NoAnchor)
}

/// The fee a child must pay for the package (parent + child) to reach `sat_per_vb`.
pub fn package_fee(parent: &Transaction, child_vbytes: u64, sat_per_vb: u64) -> Amount {
    Amount::from_sat((parent.vsize() as u64 + child_vbytes) * sat_per_vb)
}

/// The unsigned CPFP child of `parent`: spends its anchor and `fee_coin` (worth
/// `fee_txout`), pays `fee`, sends the rest to `change`. Input 1 is the caller's to sign;
/// the prevouts for its sighash are `[anchor txout, fee_txout]`.
pub fn cpfp_child(
    parent: &Transaction,
    fee_coin: OutPoint,
    fee_txout: &TxOut,
    change: ScriptBuf,
    fee: Amount,
) -> Result<Transaction, TxError> {
    let (anchor, anchor_txout) = find_anchor(parent)?;
    let available = anchor_txout.value + fee_txout.value;
    let value = available
        .checked_sub(fee)
        .ok_or(TxError::InsufficientValue {
            needed: fee,
            available,
        })?;
    let limit = dust_limit(&change);
    if value < limit {
        return Err(TxError::Dust { value, limit });
    }
    let input = |previous_output| TxIn {
        previous_output,
        script_sig: ScriptBuf::new(),
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        witness: Witness::new(),
    };
    Ok(Transaction {
        version: Version(TRUC_VERSION),
        lock_time: absolute::LockTime::ZERO,
        input: vec![input(anchor), input(fee_coin)],
        output: vec![TxOut {
            value,
            script_pubkey: change,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::p2a_output;

    fn parent(anchor: Amount) -> Transaction {
        Transaction {
            version: Version(3),
            lock_time: absolute::LockTime::ZERO,
            input: vec![],
            output: vec![
                TxOut {
                    value: Amount::from_sat(5_000),
                    script_pubkey: ScriptBuf::new_op_return([1u8; 4]),
                },
                p2a_output(anchor),
            ],
        }
    }

    #[test]
    fn child_spends_the_anchor_and_collects_trimmed_value() {
        let p = parent(Amount::from_sat(700));
        let coin = TxOut {
            value: Amount::from_sat(1_000),
            script_pubkey: ScriptBuf::new_p2a(),
        };
        let child = cpfp_child(
            &p,
            OutPoint::null(),
            &coin,
            ScriptBuf::new_p2a(),
            Amount::from_sat(400),
        )
        .unwrap();
        assert_eq!(child.version, Version(3));
        assert_eq!(child.input[0].previous_output.vout, 1);
        assert_eq!(child.input[0].previous_output.txid, p.compute_txid());
        assert_eq!(child.output[0].value, Amount::from_sat(1_300));
    }

    #[test]
    fn refuses_missing_anchor_and_short_coins() {
        let mut p = parent(Amount::ZERO);
        let coin = TxOut {
            value: Amount::from_sat(1_000),
            script_pubkey: ScriptBuf::new_p2a(),
        };
        assert!(matches!(
            cpfp_child(
                &p,
                OutPoint::null(),
                &coin,
                ScriptBuf::new_p2a(),
                Amount::from_sat(2_000)
            ),
            Err(TxError::InsufficientValue { .. })
        ));
        assert!(matches!(
            cpfp_child(
                &p,
                OutPoint::null(),
                &coin,
                ScriptBuf::new_p2a(),
                Amount::from_sat(900)
            ),
            Err(TxError::Dust { .. })
        ));
        p.output.pop();
        assert_eq!(
            cpfp_child(
                &p,
                OutPoint::null(),
                &coin,
                ScriptBuf::new_p2a(),
                Amount::ZERO
            ),
            Err(TxError::NoAnchor)
        );
    }
}
