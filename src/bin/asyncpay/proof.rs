//! `asyncpay proof`: check a proof of payment offline.

use std::path::PathBuf;

use anyhow::Context as _;
use asyncpay::mailbox::keys::VerifiedContact;
use asyncpay::protocol::payment::ProofOfPayment;
use clap::Subcommand;
use serde_json::json;

#[derive(Subcommand)]
pub enum ProofCmd {
    /// Check a proof of payment (as `asyncpay ctl proof` prints it) against the payee's
    /// signed contact card: the card's signature by the payee's node key, the receipt slot on
    /// the card, and the slot's BIP340 signature on the payment id, amount, payee, slot and
    /// note. Needs no chain, no node and no secret. Prints the checked payment as JSON and
    /// exits non-zero with the reason if the proof does not hold.
    Verify {
        /// The proof (JSON file).
        file: PathBuf,
        /// The payee's contact card (JSON file, as `asyncpay ctl contact` prints it).
        #[arg(long)]
        contact: PathBuf,
    },
}

pub fn run(command: ProofCmd) -> anyhow::Result<()> {
    match command {
        ProofCmd::Verify { file, contact } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let proof: ProofOfPayment = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a proof of payment", file.display()))?;
            let card = VerifiedContact::read_file(&contact)
                .with_context(|| format!("contact card {}", contact.display()))?;
            card.check_proof(&proof)
                .with_context(|| format!("the proof in {} does not hold", file.display()))?;
            let out = json!({
                "ok": true,
                "payment_id": proof.payment_id,
                "amount_sat": proof.amount_sat,
                "payee": proof.payee,
                "note": proof.note,
            });
            println!("{out}");
            Ok(())
        }
    }
}
