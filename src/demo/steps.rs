//! The demo's building blocks: funding, channels, payment statuses and the checks made on
//! the way.

use super::*;

impl Demo {
    pub(super) fn payment_status(
        &mut self,
        party: Party,
        payment_id: &str,
    ) -> Result<Option<String>, DemoError> {
        let info = self.info(party)?;
        Ok(info[self.ledger()]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["payment_id"].as_str() == Some(payment_id))
            .and_then(|p| p["status"].as_str().map(str::to_string)))
    }

    pub(super) fn payment_record(
        &mut self,
        party: Party,
        payment_id: &str,
    ) -> Result<Value, DemoError> {
        let info = self.info(party)?;
        info[self.ledger()]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["payment_id"].as_str() == Some(payment_id))
            .map(|p| p["record"].clone())
            .ok_or_else(|| {
                DemoError::Answer(format!("{} has no payment {payment_id}", party.name()))
            })
    }

    /// Waits until `party` reports `payment_id` with status `want`; a status in `stop` ends
    /// the wait with an error. A party that dies at its injected crash point meanwhile is
    /// restarted.
    pub(super) fn await_status(
        &mut self,
        party: Party,
        payment_id: &str,
        want: &str,
        stop: &[&str],
    ) -> Result<(), DemoError> {
        let name = party.name();
        let limit = Duration::from_secs(self.args.timeout_secs);
        let started = Instant::now();
        let mut last = None;
        loop {
            self.recover()?;
            self.alive_or_crashing(party)?;
            match self.payment_status(party, payment_id) {
                Ok(status) if status.as_deref() == Some(want) => break,
                Ok(Some(s)) if stop.contains(&s.as_str()) => {
                    return Err(DemoError::PaymentEnded {
                        party: name,
                        status: s,
                        want: want.to_string(),
                    });
                }
                Ok(status) => last = status,
                // Died while answering: the next turn restarts it.
                Err(_) if self.crash_pending() == Some(party) => {}
                Err(e) => return Err(e),
            }
            interrupted()?;
            if started.elapsed() > limit {
                return Err(DemoError::Timeout {
                    what: format!(
                        "{name} to report payment status {want}; last status at {name}: {last:?}"
                    ),
                    limit,
                });
            }
            std::thread::sleep(POLL);
        }
        self.check_no_secret_shown(party)?;
        self.narrator.detail(format!("{name}: payment {want}"));
        Ok(())
    }

    /// A's proof of payment, from its control API, checked by `asyncpay proof verify` in a
    /// separate process against B's contact card; and the same proof claiming one satoshi
    /// more, which must be refused.
    pub(super) fn check_proof(&mut self, payment_id: &str) -> Result<ProofReport, DemoError> {
        let contact = self
            .b_contact
            .clone()
            .ok_or_else(|| DemoError::Answer("B's contact card was not taken".into()))?;
        self.check_proof_with(payment_id, &contact)
    }

    /// [`Demo::check_proof`] against the contact card `contact` of the payment's payee.
    pub(super) fn check_proof_with(
        &mut self,
        payment_id: &str,
        contact: &Value,
    ) -> Result<ProofReport, DemoError> {
        let proof = self.call(Party::A, "/v1/proof", json!({ "payment_id": payment_id }))?;
        let dir = self
            .root
            .path()
            .join("proof")
            .join(&payment_id[..16.min(payment_id.len())]);
        std::fs::create_dir_all(&dir)?;
        let card = dir.join("payee-contact.json");
        std::fs::write(&card, serde_json::to_vec_pretty(&contact)?)?;
        let verify = |name: &str, value: &Value| -> Result<std::process::Output, DemoError> {
            let file = dir.join(name);
            std::fs::write(&file, serde_json::to_vec_pretty(value)?)?;
            Ok(std::process::Command::new(&self.exe)
                .args(["proof", "verify"])
                .arg(&file)
                .arg("--contact")
                .arg(&card)
                .env_remove("ASYNCPAY_CONFIG")
                .output()?)
        };
        let genuine = verify("proof.json", &proof)?;
        let mut other = proof.clone();
        let amount = other["amount_sat"]
            .as_u64()
            .ok_or_else(|| DemoError::Answer(format!("/v1/proof answered {proof}")))?;
        other["amount_sat"] = json!(amount + 1);
        let forged = verify("proof-other-amount.json", &other)?;
        let refusal = String::from_utf8_lossy(&forged.stderr).trim().to_owned();
        self.narrator.detail(format!(
            "A's proof of payment: B's receipt signature on payment {}…, {amount} sat;              `asyncpay proof verify` {} it, and {} a copy claiming {} sat",
            &payment_id[..16.min(payment_id.len())],
            if genuine.status.success() { "accepts" } else { "REFUSES" },
            if forged.status.success() { "ACCEPTS" } else { "refuses" },
            amount + 1
        ));
        Ok(ProofReport {
            proof,
            verified: genuine.status.success(),
            other_amount_refused: !forged.status.success(),
            refusal,
        })
    }

    /// `ctl info` of `party` must show none of the secrets its store holds (the withheld
    /// and bought signatures of its payments): checked at every payment status the demo
    /// waits for, so in every state a payment passes through.
    pub(super) fn check_no_secret_shown(&mut self, party: Party) -> Result<(), DemoError> {
        let db = self.node(party).dir.join("node.db");
        let secrets = {
            let conn = rusqlite::Connection::open_with_flags(
                &db,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?;
            conn.busy_timeout(Duration::from_secs(5))?;
            let mut secrets = Vec::new();
            for table in ["payments", "reverse"] {
                let mut stmt = conn.prepare(&format!("SELECT record FROM {table}"))?;
                let records = stmt.query_map([], |row| row.get::<_, String>(0))?;
                for record in records {
                    let record: Value = serde_json::from_str(&record?)?;
                    secrets.extend(crate::node::views::stored_secrets(&record));
                }
            }
            secrets
        };
        // A party that dies at its injected crash point meanwhile is restarted by the
        // caller's next wait; there is no answer to check then.
        let Ok(info) = self.info(party) else {
            return Ok(());
        };
        let shown = info.to_string();
        if let Some(secret) = secrets.iter().find(|s| shown.contains(s.as_str())) {
            return Err(DemoError::SecretShown {
                party: party.name(),
                prefix: secret[..secret.len().min(8)].to_string(),
            });
        }
        Ok(())
    }

    /// Waits until S's revert of A–S (state 2, with state 0's balances) is complete at A and
    /// at S.
    pub(super) fn await_revert(&mut self, as_id: &str) -> Result<(), DemoError> {
        let limit = Duration::from_secs(self.args.timeout_secs);
        wait_for(
            "A–S to reach the revert (state 2) at A and S",
            limit,
            || {
                let a = self.channel(Party::A, as_id)?;
                let s = self.channel(Party::S, as_id)?;
                Ok(
                    (a["state"].as_u64() == Some(2) && s["state"].as_u64() == Some(2))
                        .then_some(()),
                )
            },
        )?;
        let (a, s) = (
            self.own_balance(Party::A, as_id)?,
            self.own_balance(Party::S, as_id)?,
        );
        self.narrator.detail(format!(
            "S reverted A–S to state 2 with state 0's balances: A {a} / S {s} sat"
        ));
        Ok(())
    }

    /// Waits until B reports its invoice refused, and checks S's reason code.
    pub(super) fn await_refusal(
        &mut self,
        payment_id: &str,
        reason: &str,
    ) -> Result<(), DemoError> {
        self.await_status(Party::B, payment_id, "refused", &["paid"])?;
        let record = self.payment_record(Party::B, payment_id)?;
        let said = record["status"]["reason"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        self.narrator
            .detail(format!("S refused B's invoice: {said}"));
        if said != reason {
            return Err(DemoError::RefusedFor {
                reason: reason.to_string(),
                record,
            });
        }
        Ok(())
    }

    /// The channel `channel_id` as `party` reports it.
    pub(super) fn channel(&mut self, party: Party, channel_id: &str) -> Result<Value, DemoError> {
        let info = self.info(party)?;
        info["channels"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["channel_id"].as_str() == Some(channel_id))
            .cloned()
            .ok_or_else(|| {
                DemoError::Answer(format!("{} has no channel {channel_id}", party.name()))
            })
    }

    pub(super) fn own_balance(&mut self, party: Party, channel_id: &str) -> Result<u64, DemoError> {
        let c = self.channel(party, channel_id)?;
        c["to_self_sat"].as_u64().ok_or_else(|| {
            DemoError::Answer(format!(
                "{}: channel without to_self_sat: {c}",
                party.name()
            ))
        })
    }

    /// Funds a node's wallet from the faucet through the mempool; returns the txid.
    /// Pays each of `parties`' wallets [`WALLET_FUNDS_SAT`] from the faucet, mines a block
    /// and waits until each wallet sees its coins; returns the block's height.
    pub(super) fn fund_wallets(&mut self, parties: &[Party]) -> Result<u64, DemoError> {
        for &party in parties {
            let txid = self.fund_wallet(party, Amount::from_sat(WALLET_FUNDS_SAT))?;
            self.txids.push(TxRecord {
                what: format!("faucet to {}'s wallet", party.name()),
                txid: txid.to_string(),
                confirmed_at: None,
            });
        }
        let height = self.mine(1)?;
        for record in &mut self.txids {
            record.confirmed_at = Some(height);
        }
        for &party in parties {
            wait_for(
                &format!("{}'s wallet to see its coins", party.name()),
                Duration::from_secs(self.args.timeout_secs),
                || {
                    let info = self.info(party)?;
                    Ok((info["wallet_sat"].as_u64() == Some(WALLET_FUNDS_SAT)).then_some(()))
                },
            )?;
        }
        Ok(height)
    }

    pub(super) fn fund_wallet(&mut self, party: Party, amount: Amount) -> Result<Txid, DemoError> {
        let answer = self.call(party, "/v1/address", json!({}))?;
        let text = answer["address"].as_str().ok_or_else(|| {
            DemoError::Answer(format!("{}: /v1/address answered {answer}", party.name()))
        })?;
        let address = text
            .parse::<Address<NetworkUnchecked>>()?
            .require_network(self.args.network.bitcoin_network())?;
        let (outpoint, _) = self.chain.fund(&address.script_pubkey(), amount)?;
        self.narrator.detail(format!(
            "faucet pays {} {} sat at {address}: {}",
            party.name(),
            amount.to_sat(),
            outpoint.txid
        ));
        Ok(outpoint.txid)
    }

    /// Opens a channel from `opener` to `acceptor`, waits until both hold the signed state 0
    /// and the funding transaction is in the mempool, and confirms it.
    pub(super) fn open_channel(
        &mut self,
        opener: Party,
        acceptor: Party,
        capacity_sat: u64,
        label: &'static str,
    ) -> Result<(String, Txid), DemoError> {
        let answer = self.call(
            opener,
            "/v1/open",
            json!({"peer": self.node(acceptor).key, "capacity_sat": capacity_sat}),
        )?;
        let channel_id = answer["channel_id"]
            .as_str()
            .ok_or_else(|| DemoError::Answer(format!("/v1/open answered {answer}")))?
            .to_string();
        self.narrator.detail(format!(
            "{} opens {label} ({capacity_sat} sat): channel {channel_id}",
            opener.name()
        ));
        let mut funding: Option<Txid> = None;
        for party in [opener, acceptor] {
            let outpoint: String = {
                let children = &mut self.children;
                let control = &self.control;
                let node = &self.nodes[party.index()];
                wait_for(
                    &format!("{} to hold the signed state 0 of {label}", party.name()),
                    Duration::from_secs(self.args.timeout_secs),
                    || {
                        children.check_alive(party.name())?;
                        let info = control.call(node, "/v1/info", json!({}))?;
                        let channel = info["channels"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .find(|c| c["channel_id"].as_str() == Some(channel_id.as_str()));
                        Ok(channel.and_then(|c| {
                            let funded = c["phase"]
                                .as_str()
                                .is_some_and(|p| p.eq_ignore_ascii_case("funded"));
                            let outpoint = c["funding_outpoint"].as_str()?;
                            funded.then(|| outpoint.to_string())
                        }))
                    },
                )?
            };
            let txid: Txid = outpoint
                .split(':')
                .next()
                .unwrap_or_default()
                .parse()
                .map_err(|source| DemoError::FundingOutpoint {
                    outpoint: outpoint.clone(),
                    source,
                })?;
            if funding.is_some_and(|t| t != txid) {
                return Err(DemoError::FundingMismatch(label));
            }
            funding = Some(txid);
        }
        let txid = funding.expect("set in the loop");
        {
            let chain = &self.chain;
            let children = &mut self.children;
            wait_for(
                &format!("the funding transaction of {label} in the mempool"),
                Duration::from_secs(self.args.timeout_secs),
                || {
                    children.check_alive(opener.name())?;
                    Ok(chain.in_mempool(&txid)?.then_some(()))
                },
            )?;
        }
        let height = self.chain.confirm(&txid)?;
        self.chain.wait_for_electrs_tip()?;
        for party in [opener, acceptor] {
            self.await_event(party, &format!("{label} funding confirmed"), |e| {
                matches!(e, NodeEvent::Channel { channel_id: id, what: ChannelEvent::FundingConfirmed }
                    if hex::encode(id.0) == channel_id)
            })?;
        }
        self.narrator.detail(format!(
            "funding transaction {txid} confirmed at height {height}; both sides saw it"
        ));
        self.txids.push(TxRecord {
            what: format!("{label} funding"),
            txid: txid.to_string(),
            confirmed_at: Some(height),
        });
        Ok((channel_id, txid))
    }

    /// Puts a bogus letter made from A's genuine one in B's mailbox, sealed to B's contact by
    /// a key of the adversary's own.
    pub(super) fn post_bogus_letter(
        &mut self,
        kind: Adversary,
        letter: &Value,
        contact: &Value,
    ) -> Result<(), DemoError> {
        let mut bogus = letter.clone();
        match kind {
            Adversary::WrongScalar => {
                // A valid pre-signature, but not on U_1, not by A's channel key and not
                // encrypted to B's receipt point: completed, it does not sell the point.
                let key = crate::crypto::keys::SecretKey::from_bytes(rand::random())
                    .map_err(DemoError::AdversaryKey)?;
                let to = crate::crypto::adaptor::AdaptorSecret::from_bytes(rand::random())
                    .map_err(|e| DemoError::Answer(e.to_string()))?
                    .adaptor_point();
                let pre = crate::crypto::adaptor::EncryptedSignature::encrypt(
                    &key, &to, &[7; 32], &[0; 32],
                );
                bogus["sold"] = json!({ "presignature": serde_json::to_value(pre)? });
            }
            Adversary::TamperedOffer => {
                let amount = bogus["offer"]["terms"]["amount_sat"]
                    .as_u64()
                    .ok_or_else(|| DemoError::Answer("A's letter has no offer amount".into()))?;
                bogus["offer"]["terms"]["amount_sat"] = json!(amount + 1);
            }
            Adversary::ReplayedLetter => {}
        }
        let card: crate::mailbox::keys::Contact = serde_json::from_value(contact.clone())?;
        let to = card.verify().map_err(DemoError::Contact)?;
        let client = crate::mailbox::client::MailboxClient::new(&self.mailbox_url)?;
        let sender = crate::mailbox::keys::NodeKey::generate();
        let bytes = crate::protocol::payment::LetterKind::Sale.frame(serde_json::to_vec(&bogus)?);
        self.control.runtime.block_on(client.send(
            &to,
            Some(&sender),
            bytes,
            Duration::from_secs(3600),
        ))?;
        self.narrator.detail(format!(
            "an adversary put a {} letter in B's mailbox",
            match kind {
                Adversary::WrongScalar => "wrong-scalar",
                Adversary::TamperedOffer => "tampered-offer",
                Adversary::ReplayedLetter => "replayed",
            }
        ));
        self.adversary = Some(AdversaryReport {
            kind,
            letters_fetched: 0,
            refused_by_b: false,
            refusal: None,
        });
        Ok(())
    }

    /// Where the nodes list this run's payment in `info`: the main flow's payments, or the
    /// reverse variant's.
    pub(super) fn ledger(&self) -> &'static str {
        if self.args.reverse {
            "reverse"
        } else {
            "payments"
        }
    }

    /// The reverse variant's payment: B asks, leaves; A buys; B returns. Returns the payment
    /// id and S's fee.
    pub(super) fn reverse_payment(&mut self) -> Result<(String, u64), DemoError> {
        let amount = self.args.amount_sat;
        self.in_payment = true;
        self.begin(
            "receive",
            format!(
                "B asks S for a state paying it {amount} sat, leaves S's offer in A's mailbox and goes offline"
            ),
        );
        let payer_contact = self.call(Party::A, "/v1/contact", json!({}))?;
        let answer = self.call(
            Party::B,
            "/v1/receive",
            json!({"lsp": self.node(Party::S).key, "payer_contact": payer_contact, "amount_sat": amount}),
        )?;
        let payment_id = answer["payment_id"]
            .as_str()
            .ok_or_else(|| DemoError::Answer(format!("/v1/receive answered {answer}")))?
            .to_string();
        self.narrator.detail(format!("payment {payment_id}"));
        self.await_status(Party::B, &payment_id, "offered", &[])?;
        self.await_status(Party::S, &payment_id, "offered", &[])?;
        let record = self.payment_record(Party::S, &payment_id)?;
        let fee = record["status"]["offer"]["terms"]["fee_sat"]
            .as_u64()
            .ok_or_else(|| DemoError::Answer("S's record has no offer fee".into()))?;
        self.narrator.detail(format!(
            "S proposed state 1 of S–B paying B, kept its signature back and offered it for \
             {amount} + {fee} sat; B countersigned and posted the offer to A's mailbox"
        ));
        self.stop_node(Party::B)?;

        self.begin(
            "buy",
            "A fetches B's request and buys S's signature with a PTLC on A–S",
        );
        let asked = self.narrator.started.elapsed();
        let fetched = self.call(Party::A, "/v1/fetch", json!({}))?;
        let run = self.runs[Party::A.index()];
        self.events.push(asked, Party::A, run, Reported::Fetched);
        self.narrator
            .detail(format!("A fetched {} letter(s)", fetched["letters"]));
        self.await_status(Party::A, &payment_id, "bought", &[])?;
        self.await_status(Party::S, &payment_id, "bought", &[])?;
        self.narrator.detail(
            "S fulfilled A's PTLC with its signature's scalar and released state 1 of S–B; A \
             holds the complete update and handed S's signature to B's mailbox",
        );

        self.begin("return", "B comes back online and has its state");
        self.start_node(Party::B)?;
        self.await_connected(Party::B, Party::S)?;
        let asked = self.narrator.started.elapsed();
        let fetched = self.call(Party::B, "/v1/fetch", json!({}))?;
        let run = self.runs[Party::B.index()];
        self.events.push(asked, Party::B, run, Reported::Fetched);
        self.narrator.detail(format!(
            "B reconnected to S and fetched {} letter(s) (A's hand-over)",
            fetched["letters"]
        ));
        self.await_status(Party::B, &payment_id, "paid", &[])?;
        Ok((payment_id, fee))
    }

    /// The parties of this run: A, S, B, and the router P when routed.
    /// The transcript's `nodes`: each started node's name, role and key.
    pub(super) fn node_keys(&self) -> Vec<Value> {
        self.nodes
            .iter()
            .filter(|n| !n.key.is_empty())
            .map(|n| json!({"name": n.party.name(), "role": n.party.role(), "node_key": n.key}))
            .collect()
    }

    pub(super) fn parties(&self) -> Vec<Party> {
        let extra_payees = [Party::C, Party::D, Party::E];
        Party::ALL
            .into_iter()
            .filter(|p| *p != Party::P || self.args.routed)
            .filter(|p| {
                !extra_payees.contains(p)
                    || self.args.pending.is_some()
                    || (*p == Party::C && self.args.pos == Some(PosMode::OfflineMerchant))
            })
            .collect()
    }

    /// The channels that carry S's payment to B, each with its opener (who pays) and
    /// acceptor: S–B, or S–P and P–B through the router.
    pub(super) fn hops(&self) -> Vec<(&'static str, Party, Party)> {
        if self.args.routed {
            vec![("S–P", Party::S, Party::P), ("P–B", Party::P, Party::B)]
        } else {
            vec![("S–B", Party::S, Party::B)]
        }
    }

    /// Whether the payment is undone before a sale (`--cancel`, `--lsp-never-pays`).
    pub(super) fn unwound(&self) -> bool {
        self.args.cancel || self.args.lsp_never_pays
    }

    /// A–S's latest state after the payment: 1 (the sold state), or 2 when it was undone (the
    /// revert to state 0's balances).
    pub(super) fn latest_state(&self) -> u32 {
        if self.unwound() {
            2
        } else {
            1
        }
    }

    /// The messages of the run, in order: peer messages the nodes delivered, letters posted
    /// to and fetched from the mailbox. Each belongs to the step during which it happened.
    pub(super) fn messages(&self) -> Vec<Msg> {
        let name_of = |key: &PublicKey| {
            let key = key.to_string();
            self.nodes
                .iter()
                .find(|n| n.key == key)
                .map_or("?", |n| n.party.name())
        };
        let steps = &self.narrator.steps;
        self.events
            .all()
            .into_iter()
            .filter_map(|seen| {
                let from = seen.party.name();
                let (from, to, what) = match &seen.event {
                    Reported::Node(NodeEvent::MessageSent {
                        to,
                        message,
                        delivered: true,
                    }) => (from, name_of(to), message.clone()),
                    Reported::Node(NodeEvent::LetterPosted { to, .. }) => {
                        let to = to.as_ref().map_or("B", name_of);
                        (from, "mailbox", format!("letter (age-encrypted to {to})"))
                    }
                    Reported::Fetched => ("mailbox", from, "letter".into()),
                    Reported::OnChain(what) => (from, "chain", what.clone()),
                    Reported::Node(_) => return None,
                };
                let at_ms = seen.at.as_secs_f64() * 1000.0;
                let at_us = seen.at.as_micros() as u64;
                let step = steps
                    .iter()
                    .rev()
                    .find(|s| s.started_us <= at_us)
                    .map_or(0, |s| s.n);
                Some(Msg {
                    step,
                    at_ms: (at_ms * 1000.0).round() / 1000.0,
                    from: from.to_string(),
                    to: to.to_string(),
                    what,
                })
            })
            .collect()
    }
}

/// The transcript's balance rows: `(channel, channel id, party)` with its balance before and
/// after, in the same order.
pub(super) fn balance_rows(
    rows: &[(&'static str, String, &'static str)],
    before: &[u64],
    after: &[u64],
) -> Vec<Balance> {
    rows.iter()
        .zip(before.iter().zip(after.iter()))
        .map(|((channel, id, party), (b, a))| Balance {
            channel,
            channel_id: id.to_string(),
            party,
            before_sat: *b,
            after_sat: *a,
            change_sat: *a as i64 - *b as i64,
        })
        .collect()
}

/// The channels of a story with one payer: A–S (A funds it) and S's channel to each payee
/// (S funds it), opened by [`Demo::open_star`].
pub(super) struct Star {
    /// A–S: its id and funding txid.
    pub(super) payer: (String, Txid),
    /// Each payee, its channel's label (`S–B`), id and funding txid.
    pub(super) payees: Vec<(Party, &'static str, String, Txid)>,
}

impl Star {
    /// Each channel's two balances, in the order of [`Star::rows`]: A and S on A–S, then S
    /// and the payee on each payee's channel.
    pub(super) fn balances(&self, demo: &mut Demo) -> Result<Vec<u64>, DemoError> {
        let mut out = vec![
            demo.own_balance(Party::A, &self.payer.0)?,
            demo.own_balance(Party::S, &self.payer.0)?,
        ];
        for (payee, _, id, _) in &self.payees {
            out.push(demo.own_balance(Party::S, id)?);
            out.push(demo.own_balance(*payee, id)?);
        }
        Ok(out)
    }

    /// The balance rows' (channel, id, party), in the order of [`Star::balances`].
    pub(super) fn rows(&self) -> Vec<(&'static str, String, &'static str)> {
        let mut rows = vec![
            ("A–S", self.payer.0.clone(), "A"),
            ("A–S", self.payer.0.clone(), "S"),
        ];
        for (payee, label, id, _) in &self.payees {
            rows.push((label, id.clone(), "S"));
            rows.push((label, id.clone(), payee.name()));
        }
        rows
    }

    /// The checks of a story in which A spent `spent` sat on A–S and each payee received
    /// `received(payee)` on its channel: each side's change (from `balances`, the rows of
    /// [`Star::rows`]) and each channel's capacity conserved (from `after`).
    pub(super) fn balance_checks(
        &self,
        spent: u64,
        received: impl Fn(Party) -> u64,
        balances: &[Balance],
        after: &[u64],
    ) -> Vec<Check> {
        let mut checks = vec![
            check(
                "A's change in A–S",
                json!(-(spent as i64)),
                json!(balances[0].change_sat),
            ),
            check(
                "S's change in A–S",
                json!(spent as i64),
                json!(balances[1].change_sat),
            ),
            check(
                "A–S capacity conserved",
                json!(AS_CAPACITY_SAT),
                json!(after[0] + after[1]),
            ),
        ];
        for (k, (payee, label, _, _)) in self.payees.iter().enumerate() {
            let got = received(*payee) as i64;
            checks.extend([
                check(
                    &format!("S's change in {label}"),
                    json!(-got),
                    json!(balances[2 + 2 * k].change_sat),
                ),
                check(
                    &format!("{}'s change in {label}", payee.name()),
                    json!(got),
                    json!(balances[3 + 2 * k].change_sat),
                ),
                check(
                    &format!("{label} capacity conserved"),
                    json!(SB_CAPACITY_SAT),
                    json!(after[2 + 2 * k] + after[3 + 2 * k]),
                ),
            ]);
        }
        checks
    }

    /// The transcript's `channels`.
    pub(super) fn channels_json(&self) -> Vec<Value> {
        let mut channels = vec![
            json!({"name": "A–S", "channel_id": self.payer.0, "opener": "A", "capacity_sat": AS_CAPACITY_SAT, "funding_txid": self.payer.1.to_string()}),
        ];
        for (_, label, id, txid) in &self.payees {
            channels.push(json!({"name": label, "channel_id": id, "opener": "S", "capacity_sat": SB_CAPACITY_SAT, "funding_txid": txid.to_string()}));
        }
        channels
    }
}

impl Demo {
    /// Opens A–S (A funds it) and S's channel to each of `payees` (S funds them, labelled
    /// `S–<payee>`).
    pub(super) fn open_star(&mut self, payees: &[Party]) -> Result<Star, DemoError> {
        let payer = self.open_channel(Party::A, Party::S, AS_CAPACITY_SAT, "A–S")?;
        let mut opened = vec![];
        for &payee in payees {
            let label = match payee {
                Party::B => "S–B",
                Party::C => "S–C",
                Party::D => "S–D",
                Party::E => "S–E",
                Party::A | Party::S | Party::P => "S–?",
            };
            let (id, txid) = self.open_channel(Party::S, payee, SB_CAPACITY_SAT, label)?;
            opened.push((payee, label, id, txid));
        }
        Ok(Star {
            payer,
            payees: opened,
        })
    }
}
