//! `asyncpay demo --pending N`: N held sales wait on one A–S channel at once.
//!
//! A pays four payees (B, C, D, E), N payments in turn, each a held sale (`ctl pay
//! --hold-blocks`): a PTLC to S in a complete state of its own. The payees are offline. A
//! cancels two payments and goes offline; B, C and D come online in a shuffled order and
//! sell; E comes only after S's offers to it have expired, and is refused. A, back, receives
//! its receipts while S fulfils the sold PTLCs and fails the others back, one update after
//! another. Every balance must end exact and each completed payment's proof is checked by a
//! separate `asyncpay proof verify` process against its payee's contact card.

use super::*;

/// The held PTLCs expire this many blocks after each payment: the claim deadline is the
/// payer channel's delay and 3 blocks before it, and S's offers end a PTLC delta before
/// that, so a few blocks after the payments (which the late payee waits out).
const HOLD_BLOCKS: u32 = 2 * PAYER_DELAY as u32 + 16;

/// The payees, in the order payments are made to them (payment i goes to `i % 4`).
const PAYEES: [Party; 4] = [Party::B, Party::C, Party::D, Party::E];

/// The order in which the payees come online: a fixed shuffle, so that runs compare; E,
/// last, comes after its offers expired.
const ARRIVALS: [Party; 4] = [Party::D, Party::B, Party::C, Party::E];

/// The payments A cancels (by index) before it goes offline.
const CANCELLED: [usize; 2] = [1, 6];

/// One payment of a `--pending` run, as the transcript shows it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct PendingPayment {
    index: usize,
    payment_id: String,
    payee: &'static str,
    amount_sat: u64,
    fee_sat: u64,
    /// `sold`, `cancelled` or `expired`: what the demo made happen.
    outcome: &'static str,
    /// The statuses the parties ended with.
    payer_status: Option<String>,
    lsp_status: Option<String>,
    payee_status: Option<String>,
    /// For a sold payment: A's proof and what `asyncpay proof verify` said.
    #[serde(skip_serializing_if = "Option::is_none")]
    proof: Option<ProofReport>,
}

impl Demo {
    /// The whole `--pending` run; the caller cleans up.
    pub(super) fn play_pending(&mut self) -> Result<Transcript, DemoError> {
        let count = self.args.pending.unwrap_or(16);
        // Small and all different: up to 32 fit A's side of A–S and each payee's channel.
        let amount_of = |i: usize| 10_000 + 1_000 * i as u64;

        self.start_services("")?;
        self.begin(
            "nodes",
            "start payer A, LSP S and payees B, C, D, E (asyncpay node run)",
        );
        for party in self.parties() {
            self.start_node(party)?;
        }

        self.begin("fund", "fund A's and S's wallets from the faucet");
        self.fund_wallets(&[Party::A, Party::S])?;

        self.begin("connect", "A and the payees connect to S");
        self.connect(Party::A, Party::S)?;
        for payee in PAYEES {
            self.connect(payee, Party::S)?;
        }

        self.begin(
            "open",
            "open A–S (A funds) and S–B, S–C, S–D, S–E (S funds)",
        );
        let star = self.open_star(&PAYEES)?;
        let as_id = star.payer.0.clone();
        let before = star.balances(self)?;

        self.begin(
            "contacts",
            "the payees publish their contact cards and go offline",
        );
        let mut contacts = vec![];
        for payee in PAYEES {
            contacts.push(self.call(payee, "/v1/contact", json!({}))?);
            self.stop_node(payee)?;
        }

        self.begin(
            "pay",
            format!(
                "A makes {count} held sales to B, C, D and E on its one channel with S, each a \
                 PTLC to S expiring in {HOLD_BLOCKS} blocks"
            ),
        );
        let mut payments = vec![];
        for i in 0..count {
            let payee = i % PAYEES.len();
            let amount = amount_of(i);
            let answer = self.call(
                Party::A,
                "/v1/pay",
                json!({
                    "lsp": self.node(Party::S).key,
                    "contact": contacts[payee],
                    "amount_sat": amount,
                    "hold_blocks": HOLD_BLOCKS,
                    "note": format!("pending payment {i}"),
                }),
            )?;
            let id = answer["payment_id"]
                .as_str()
                .ok_or_else(|| DemoError::Answer(format!("/v1/pay answered {answer}")))?
                .to_string();
            self.await_status(Party::A, &id, "posted", &["void"])?;
            let fee = self.payment_record(Party::A, &id)?["fee_sat"]
                .as_u64()
                .ok_or_else(|| DemoError::Answer("A's payment record has no fee_sat".into()))?;
            payments.push((id, payee, amount, fee));
        }
        let channel = self.channel(Party::S, &as_id)?;
        let waiting = channel["ptlcs"].as_u64().unwrap_or(0);
        self.narrator.detail(format!(
            "{waiting} PTLCs wait side by side in state {} of A–S; each letter is in its \
             payee's mailbox",
            channel["state"]
        ));

        self.begin(
            "cancel",
            format!("A cancels payments {CANCELLED:?}: S fails their PTLCs back at once"),
        );
        for &i in CANCELLED.iter().filter(|&&i| i < count) {
            let id = payments[i].0.clone();
            self.call(Party::A, "/v1/cancel", json!({ "payment_id": id }))?;
            self.await_status(Party::S, &id, "cancelled", &["selling", "sold"])?;
            self.await_status(Party::A, &id, "void", &["completed"])?;
        }
        self.stop_node(Party::A)?;

        let mut late_refusals: Vec<String> = vec![];
        let expiry = payments
            .iter()
            .find(|(_, payee, _, _)| PAYEES[*payee] == Party::E)
            .map(|(id, _, _, _)| self.payment_record(Party::S, id))
            .transpose()?
            .and_then(|r| r["offer"]["terms"]["expiry"].as_u64());
        for payee in ARRIVALS {
            if payee == Party::E {
                if let Some(expiry) = expiry {
                    self.begin(
                        "expire",
                        format!("S's offers to E expire at height {expiry}; E is still away"),
                    );
                    let height = self.chain.height()?;
                    let blocks = (expiry + 1).saturating_sub(height);
                    self.mine(blocks)?;
                    self.narrator.detail(format!("mined {blocks} blocks"));
                }
            }
            self.begin(
                "sell",
                format!(
                    "{} comes online, fetches its letters and sells",
                    payee.name()
                ),
            );
            self.start_node(payee)?;
            self.await_connected(payee, Party::S)?;
            let fetched = self.call(payee, "/v1/fetch", json!({}))?;
            self.narrator.detail(format!(
                "{} fetched {} letter(s)",
                payee.name(),
                fetched["letters"]
            ));
            let mine: Vec<(usize, String)> = payments
                .iter()
                .enumerate()
                .filter(|(i, (_, p, _, _))| PAYEES[*p] == payee && !CANCELLED.contains(i))
                .map(|(i, (id, _, _, _))| (i, id.clone()))
                .collect();
            if payee == Party::E {
                // E checks each offer's expiry itself: it refuses the letters and invoices
                // nothing; S voided the offers at their expiry.
                let log = self.root.path().join("E.log");
                let limit = Duration::from_secs(self.args.timeout_secs);
                let refusals = wait_for("E to refuse its expired letters", limit, || {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    let refused: Vec<String> = text
                        .lines()
                        .filter_map(|l| match serde_json::from_str::<NodeEvent>(l) {
                            Ok(NodeEvent::LetterRefused { error }) => Some(error),
                            _ => None,
                        })
                        .collect();
                    Ok((refused.len() >= mine.len()).then_some(refused))
                })?;
                for (_, id) in &mine {
                    self.await_status(Party::S, id, "cancelled", &["selling", "sold"])?;
                }
                self.narrator.detail(format!(
                    "E refused {} letter(s): {}",
                    refusals.len(),
                    refusals.first().map_or("", String::as_str)
                ));
                late_refusals = refusals;
            } else {
                for (_, id) in &mine {
                    self.await_status(payee, id, "paid", &["refused"])?;
                    self.await_status(Party::S, id, "sold", &["cancelled"])?;
                }
            }
        }

        self.begin(
            "receipts",
            "A comes back: S fulfils the sold PTLCs and fails the others back, one update \
             after another; A receives its receipts",
        );
        self.start_node(Party::A)?;
        self.await_connected(Party::A, Party::S)?;
        let mut report = vec![];
        for (i, (id, p, amount, fee)) in payments.iter().enumerate() {
            let payee = PAYEES[*p];
            let outcome = if CANCELLED.contains(&i) {
                "cancelled"
            } else if payee == Party::E {
                "expired"
            } else {
                "sold"
            };
            let want = if outcome == "sold" {
                "completed"
            } else {
                "void"
            };
            self.await_status(Party::A, id, want, &[])?;
            let proof = if outcome == "sold" {
                let contact = contacts[*p].clone();
                Some(self.check_proof_with(id, &contact)?)
            } else {
                None
            };
            report.push(PendingPayment {
                index: i,
                payment_id: id.clone(),
                payee: payee.name(),
                amount_sat: *amount,
                fee_sat: *fee,
                outcome,
                payer_status: self.payment_status(Party::A, id)?,
                lsp_status: self.payment_status(Party::S, id)?,
                payee_status: self.payment_status(payee, id)?,
                proof,
            });
        }
        let limit = Duration::from_secs(self.args.timeout_secs);
        let resolved = wait_for("every PTLC of A–S to be resolved", limit, || {
            let c = self.channel(Party::A, &as_id)?;
            Ok((c["ptlcs"] == 0 && c["phase"] == "Funded").then_some(()))
        });
        if let Err(e) = resolved {
            let a = self.channel(Party::A, &as_id)?;
            let s = self.channel(Party::S, &as_id)?;
            return Err(DemoError::Answer(format!("{e}: A's channel {a}; S's {s}")));
        }
        let after = star.balances(self)?;

        self.begin("stop", "stop every node");
        for party in self.parties() {
            if self.node(party).running.is_some() {
                self.stop_node(party)?;
            }
        }
        self.narrator.end();

        let sold: Vec<&PendingPayment> = report.iter().filter(|p| p.outcome == "sold").collect();
        let spent: u64 = sold.iter().map(|p| p.amount_sat + p.fee_sat).sum();
        let rows = star.rows();
        let balances = balance_rows(&rows, &before, &after);
        let received = |payee: Party| -> u64 {
            sold.iter()
                .filter(|p| p.payee == payee.name())
                .map(|p| p.amount_sat)
                .sum()
        };
        let mut checks = vec![check(
            "PTLCs waiting at once on A–S",
            json!(count),
            json!(waiting),
        )];
        checks.extend(star.balance_checks(spent, received, &balances, &after));
        for p in &report {
            let (payer, lsp, payee) = match p.outcome {
                "sold" => ("completed", "sold", "paid"),
                _ => ("void", "cancelled", ""),
            };
            checks.push(check(
                &format!("payment {} ({}) payer status", p.index, p.outcome),
                json!(payer),
                json!(p.payer_status),
            ));
            checks.push(check(
                &format!("payment {} ({}) lsp status", p.index, p.outcome),
                json!(lsp),
                json!(p.lsp_status),
            ));
            if p.outcome == "sold" {
                checks.push(check(
                    &format!("payment {} ({}) payee status", p.index, p.outcome),
                    json!(payee),
                    json!(p.payee_status),
                ));
            }
            if let Some(proof) = &p.proof {
                checks.push(check(
                    &format!(
                        "payment {}: proof verifies with {}'s card",
                        p.index, p.payee
                    ),
                    json!(true),
                    json!(proof.verified),
                ));
                checks.push(check(
                    &format!("payment {}: a proof for another amount is refused", p.index),
                    json!(true),
                    json!(proof.other_amount_refused),
                ));
            }
        }
        let expired = report.iter().filter(|p| p.outcome == "expired").count();
        checks.push(check(
            "E refused each expired letter (offer expired)",
            json!(expired),
            json!(late_refusals
                .iter()
                .filter(|e| e.contains("expired"))
                .count()),
        ));
        let fee_sat = report.iter().map(|p| p.fee_sat).sum();
        let status = json!({
            "variant": "held sales",
            "sold": sold.len(),
            "cancelled": report.iter().filter(|p| p.outcome == "cancelled").count(),
            "expired": expired,
        });
        Ok(self.transcript(Story {
            amount_sat: report.iter().map(|p| p.amount_sat).sum(),
            fee_sat,
            payment_id: report
                .first()
                .map(|p| p.payment_id.clone())
                .unwrap_or_default(),
            status,
            channels: star.channels_json(),
            balances,
            checks,
            enforcement: None,
            proof: None,
            pending: Some(report),
            pos: None,
        }))
    }
}
