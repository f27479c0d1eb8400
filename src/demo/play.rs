//! The story itself, step by step.

use super::*;

impl Demo {
    /// The whole run; the caller cleans up.
    pub(super) fn play(&mut self) -> Result<Transcript, DemoError> {
        let amount = self.args.amount_sat;

        self.start_services(": B will be offline longer than its channel's delay")?;

        let routed = self.args.routed;
        self.begin(
            "nodes",
            if routed {
                "start payer A, LSP S, router P and payee B (asyncpay node run)"
            } else {
                "start payer A, LSP S and payee B (asyncpay node run)"
            },
        );
        for party in self.parties() {
            self.start_node(party)?;
        }

        self.begin("fund", "fund the wallets from the faucet");
        let parties = self.parties();
        let height = self.fund_wallets(&parties)?;
        self.narrator.detail(format!(
            "confirmed at height {height}; each wallet holds {WALLET_FUNDS_SAT} sat"
        ));

        self.begin(
            "connect",
            if routed {
                "A, B and P connect to S, B to P, over authenticated loopback TCP"
            } else {
                "A and B connect to S over authenticated loopback TCP"
            },
        );
        self.connect(Party::A, Party::S)?;
        self.connect(Party::B, Party::S)?;
        if routed {
            self.connect(Party::P, Party::S)?;
            self.connect(Party::B, Party::P)?;
        }

        let hops = self.hops();
        let names: Vec<String> = hops
            .iter()
            .map(|(label, opener, _)| format!("{label} ({} funds)", opener.name()))
            .collect();
        self.begin(
            "open",
            format!(
                "open and confirm the channels A–S (A funds) and {}",
                names.join(" and ")
            ),
        );
        let (as_id, as_txid) = self.open_channel(Party::A, Party::S, AS_CAPACITY_SAT, "A–S")?;
        // Each channel of the payee side: label, id, funding txid, opener, acceptor.
        let mut payee_side = vec![];
        for (label, opener, acceptor) in hops {
            let (id, txid) = self.open_channel(opener, acceptor, SB_CAPACITY_SAT, label)?;
            payee_side.push((label, id, txid, opener, acceptor));
        }
        let balances_of = |demo: &mut Demo| -> Result<Vec<u64>, DemoError> {
            let mut out = vec![
                demo.own_balance(Party::A, &as_id)?,
                demo.own_balance(Party::S, &as_id)?,
            ];
            for (_, id, _, opener, acceptor) in &payee_side {
                out.push(demo.own_balance(*opener, id)?);
                out.push(demo.own_balance(*acceptor, id)?);
            }
            Ok(out)
        };
        let describe = |b: &[u64]| {
            let mut text = format!("A–S: A {} / S {} sat", b[0], b[1]);
            for (i, (label, _, _, opener, acceptor)) in payee_side.iter().enumerate() {
                text.push_str(&format!(
                    "; {label}: {} {} / {} {} sat",
                    opener.name(),
                    b[2 + 2 * i],
                    acceptor.name(),
                    b[3 + 2 * i]
                ));
            }
            text
        };
        let before = balances_of(self)?;
        self.narrator.detail(describe(&before));

        let (payment_id, fee, backup) = if self.args.reverse {
            let (payment_id, fee) = self.reverse_payment()?;
            (payment_id, fee, None)
        } else {
            self.begin(
                "contact",
                "B publishes its mailbox contact and goes offline",
            );
            let contact = self.call(Party::B, "/v1/contact", json!({}))?;
            self.b_contact = Some(contact.clone());
            self.narrator.detail(format!(
                "contact: node {}…, mailbox {}",
                contact["node_key"]
                    .as_str()
                    .map(|k| &k[..16.min(k.len())])
                    .unwrap_or("?"),
                contact["mailbox_url"].as_str().unwrap_or("?")
            ));
            self.stop_node(Party::B)?;

            self.begin(
                "pay",
                format!("A pays B {amount} sat through S, posts its letter and goes offline"),
            );
            self.in_payment = true;
            self.arm(Party::A)?;
            self.arm(Party::S)?;
            if routed {
                self.arm(Party::P)?;
            }
            let paid = self.call(
                Party::A,
                "/v1/pay",
                json!({"lsp": self.node(Party::S).key, "contact": contact, "amount_sat": amount}),
            );
            let payment_id = match paid {
                Ok(answer) => answer["payment_id"]
                    .as_str()
                    .ok_or_else(|| DemoError::Answer(format!("/v1/pay answered {answer}")))?
                    .to_string(),
                // A died while paying: its payment is in its store; it resumes after a restart.
                Err(e) => {
                    if !self.recover_after_failed_call(Party::A)? {
                        return Err(e);
                    }
                    let info = self.info(Party::A)?;
                    info["payments"]
                        .as_array()
                        .and_then(|p| p.first())
                        .and_then(|p| p["payment_id"].as_str())
                        .ok_or_else(|| {
                            DemoError::Answer(
                                "A restarted without the payment it was making".into(),
                            )
                        })?
                        .to_string()
                }
            };
            self.narrator.detail(format!("payment {payment_id}"));
            self.await_status(Party::A, &payment_id, "posted", &["void", "cancelling"])?;
            self.await_status(Party::S, &payment_id, "offered", &["cancelled"])?;
            let record = self.payment_record(Party::A, &payment_id)?;
            let fee = record["fee_sat"]
                .as_u64()
                .ok_or_else(|| DemoError::Answer("A's payment record has no fee_sat".into()))?;
            if let Some(kind) = self.args.adversary {
                // `ctl info` never shows A's withheld signature: the adversary takes the
                // letter from A's own store, as one who got hold of A's files would.
                let letter = stored_letter(&self.node(Party::A).dir, &payment_id)?;
                self.post_bogus_letter(kind, &letter, &contact)?;
            }
            self.narrator.detail(format!(
                "S offered {amount} sat to B for A's signature, fee {fee} sat; the letter is in B's mailbox"
            ));
            let held = self.own_balance(Party::S, &as_id)?;
            self.narrator.detail(format!(
                "nothing has moved yet: S's balance in A–S is still {held} sat"
            ));
            self.stop_node(Party::A)?;
            let backup = Backup::take(&self.node(Party::A).dir)?;
            self.narrator.detail(format!(
                "A's backup as it went offline: A–S at state {}",
                backup.state(&as_id).map_or("?".into(), |n| n.to_string())
            ));
            let stale = if self.args.payer_cheats_while_pending {
                self.begin(
                    "stale",
                    "A's backup publishes the stale state 0 while A's signature on state 1 is for sale",
                );
                let stale = self.publish_stale(&backup, &as_id)?;
                let limit = Duration::from_secs(self.args.timeout_secs);
                wait_for("S to see the stale state", limit, || {
                    let c = self.channel(Party::S, &as_id)?;
                    Ok((c["phase"] == "ForceClosing").then_some(()))
                })?;
                self.narrator.detail(
                    "S saw U_0 confirm; it keeps its countersigned state 1 while the sale window \
                     is open",
                );
                Some(stale)
            } else {
                None
            };

            if self.args.cancel {
                self.begin(
                    "cancel",
                    "A comes back before B sells and cancels the payment",
                );
                self.start_node(Party::A)?;
                self.await_connected(Party::A, Party::S)?;
                self.narrator.detail("A reconnected to S");
                self.call(Party::A, "/v1/cancel", json!({ "payment_id": payment_id }))?;
                self.await_status(Party::S, &payment_id, "cancelled", &["selling", "sold"])?;
                self.await_status(Party::A, &payment_id, "void", &["completed"])?;
                self.await_revert(&as_id)?;
            }

            if self.args.lsp_never_pays {
                self.begin("gone", "S goes offline before B comes online");
                self.stop_node(Party::S)?;
            }
            self.begin(
                "sell",
                if self.args.cancel {
                    "B comes online, fetches the letter and invoices S, which refuses: the offer is cancelled"
                } else if self.args.lsp_never_pays {
                    "B comes online, fetches the letter and invoices S, which is not there"
                } else {
                    "B comes online, fetches the letter and sells A's signature to S"
                },
            );
            self.start_node(Party::B)?;
            if !self.args.lsp_never_pays {
                // B redials the peers it knows by itself.
                self.await_connected(Party::B, Party::S)?;
                self.narrator.detail("B reconnected to S");
            }
            let asked = self.narrator.started.elapsed();
            let fetched = match self.call(Party::B, "/v1/fetch", json!({})) {
                Ok(fetched) => fetched,
                // B died while handling the letter: the mailbox still holds it.
                Err(e) => {
                    if !self.recover_after_failed_call(Party::B)? {
                        return Err(e);
                    }
                    self.await_connected(Party::B, Party::S)?;
                    self.call(Party::B, "/v1/fetch", json!({}))?
                }
            };
            self.events.push(
                asked,
                Party::B,
                self.runs[Party::B.index()],
                Reported::Fetched,
            );
            self.narrator
                .detail(format!("B fetched {} letter(s)", fetched["letters"]));
            if let Some(report) = self.adversary.as_mut() {
                report.letters_fetched = fetched["letters"].as_u64().unwrap_or(0);
            }
            if self.args.lsp_never_pays {
                self.await_status(Party::B, &payment_id, "invoiced", &["paid", "refused"])?;
                let record = self.payment_record(Party::B, &payment_id)?;
                let expiry = record["letter"]["offer"]["terms"]["expiry"]
                    .as_u64()
                    .ok_or_else(|| {
                        DemoError::Answer(format!("B's record has no offer expiry: {record}"))
                    })?;
                self.narrator.detail(format!(
                    "B keeps its scalar: without a PTLC nothing can complete A's state 1; the \
                     offer expires at height {expiry}"
                ));

                self.begin(
                    "expire",
                    "the offer expires with S away; S comes back and refuses B's invoice",
                );
                let height = self.chain.height()?;
                let blocks = (expiry + 1).saturating_sub(height);
                self.mine(blocks)?;
                self.narrator.detail(format!(
                    "mined {blocks} blocks: height {} is past the expiry",
                    expiry + 1
                ));
                self.start_node(Party::S)?;
                self.await_status(Party::S, &payment_id, "cancelled", &["selling", "sold"])?;
                self.await_refusal(&payment_id, "expired")?;

                self.begin(
                    "unwind",
                    "A comes back online: its payment is void and A–S is reverted",
                );
                self.start_node(Party::A)?;
                self.await_connected(Party::A, Party::S)?;
                self.narrator.detail("A reconnected to S");
                self.await_status(Party::A, &payment_id, "void", &["completed"])?;
                self.await_revert(&as_id)?;
            } else if self.args.cancel {
                self.await_refusal(&payment_id, "cancelled")?;
            } else {
                self.await_status(Party::B, &payment_id, "paid", &["refused"])?;
                if self.adversary.is_some() {
                    let log =
                        std::fs::read_to_string(self.root.path().join("B.log")).unwrap_or_default();
                    let refusal =
                        log.lines()
                            .find_map(|l| match serde_json::from_str::<NodeEvent>(l) {
                                Ok(NodeEvent::LetterRefused { error }) => Some(error),
                                _ => None,
                            });
                    let refused = refusal.is_some();
                    if let Some(report) = self.adversary.as_mut() {
                        report.refused_by_b = refused;
                        report.refusal = refusal;
                    }
                    self.narrator.detail(if refused {
                        "B refused the bogus letter and sold the genuine one"
                    } else {
                        "B handled the repeated letter once"
                    });
                }
                self.await_status(Party::S, &payment_id, "sold", &["cancelled"])?;
                if let Some(stale) = &stale {
                    let limit = Duration::from_secs(self.args.timeout_secs);
                    let over = wait_for("S's U_1 spending U_0", limit, || {
                        spender(&self.chain, stale.txid)
                    })?;
                    self.chain_event(Party::S, "U_1 spends U_0".into());
                    self.narrator.detail(format!(
                        "S completed U_1 with the scalar and published it over U_0 at once: {} \
                         (in the mempool)",
                        over.compute_txid()
                    ));
                }

                self.begin("receipt", "A comes back online and receives its receipt");
                self.start_node(Party::A)?;
                self.await_connected(Party::A, Party::S)?;
                self.narrator.detail("A reconnected to S");
                self.await_status(Party::A, &payment_id, "completed", &["void"])?;
            }
            (payment_id, fee, Some((backup, stale)))
        };
        let after = balances_of(self)?;
        self.narrator.detail(describe(&after));
        let mut status = json!({
            "payer": self.payment_status(Party::A, &payment_id)?,
            "lsp": self.payment_status(Party::S, &payment_id)?,
            "payee": self.payment_status(Party::B, &payment_id)?,
        });
        if self.args.reverse {
            status["variant"] = json!("payee offline");
        }
        if routed {
            status["router"] = json!(self.payment_status(Party::P, &payment_id)?);
        }
        let proof = if status["payer"] == "completed" {
            Some(self.check_proof(&payment_id)?)
        } else {
            None
        };

        self.in_payment = false;
        if let Some(c) = &self.crash {
            match &c.fired_in {
                Some(step) => self.narrator.detail(format!(
                    "{} died at {} in step {step}, restarted, and the payment completed",
                    c.party, c.point
                )),
                None => self.narrator.detail(format!(
                    "{} never reached {}: nothing was killed",
                    c.party, c.point
                )),
            }
        }

        // B's latest state of its LSP channel reached its watchtower before B leaves.
        let b_channel = payee_side
            .last()
            .map(|(_, id, _, _, _)| id.clone())
            .ok_or_else(|| DemoError::Answer("B has a channel".into()))?;
        let b_state = self.channel(Party::B, &b_channel)?["state"].as_u64();
        let timeout = Duration::from_secs(self.args.timeout_secs);
        let tower_state = wait_for("B's watchtower to hold B's latest state", timeout, || {
            Ok(self
                .tower_state(Party::B, &b_channel)
                .filter(|s| Some(*s) == b_state)
                .map(Some))
        })
        .unwrap_or_else(|_| self.tower_state(Party::B, &b_channel));
        self.narrator.detail(format!(
            "B's watchtower holds state {} of B's channel",
            tower_state.map_or("none".into(), |s| s.to_string())
        ));

        self.begin("offline", "A and B go offline; S stays online");
        self.stop_node(Party::A)?;
        self.stop_node(Party::B)?;
        if routed {
            self.stop_node(Party::P)?;
        }

        let enforcement = match (&backup, self.args.no_epilogue) {
            (Some((backup, Some(stale))), false) => {
                Some(self.override_and_settle(stale, backup, &as_id, after[0], after[1])?)
            }
            (Some((backup, None)), false) => {
                Some(self.epilogue(backup, &as_id, after[0], after[1])?)
            }
            _ => None,
        };

        self.begin("stop", "stop S");
        self.stop_node(Party::S)?;
        self.narrator.end();

        let mut rows = vec![("A–S", as_id.clone(), "A"), ("A–S", as_id.clone(), "S")];
        for (label, id, _, opener, acceptor) in &payee_side {
            rows.push((label, id.clone(), opener.name()));
            rows.push((label, id.clone(), acceptor.name()));
        }
        let balances = balance_rows(&rows, &before, &after);
        // With --cancel nothing moves anywhere.
        let moved = !self.unwound();
        let paid = if moved { (amount + fee) as i64 } else { 0 };
        // What crosses each payee-side channel: the router's fee too on S–P.
        let router_fee = crate::node::core::DEFAULT_ROUTER_POLICY.fee_sat;
        let crossing = |i: usize| -> i64 {
            if !moved {
                0
            } else if routed && i == 0 {
                (amount + router_fee) as i64
            } else {
                amount as i64
            }
        };
        let (payer_done, lsp_done, payee_done) = if self.args.reverse {
            ("bought", "bought", "paid")
        } else if self.unwound() {
            ("void", "cancelled", "refused")
        } else {
            ("completed", "sold", "paid")
        };
        let mut checks = vec![
            check("payer status", json!(payer_done), status["payer"].clone()),
            check("lsp status", json!(lsp_done), status["lsp"].clone()),
            check("payee status", json!(payee_done), status["payee"].clone()),
            check(
                "A's change in A–S",
                json!(-paid),
                json!(balances[0].change_sat),
            ),
            check(
                "S's change in A–S",
                json!(paid),
                json!(balances[1].change_sat),
            ),
            check(
                "A–S capacity conserved",
                json!(AS_CAPACITY_SAT),
                json!(after[0] + after[1]),
            ),
        ];
        for (i, (label, _, _, opener, acceptor)) in payee_side.iter().enumerate() {
            checks.push(check(
                &format!("{}'s change in {label}", opener.name()),
                json!(-crossing(i)),
                json!(balances[2 + 2 * i].change_sat),
            ));
            checks.push(check(
                &format!("{}'s change in {label}", acceptor.name()),
                json!(crossing(i)),
                json!(balances[3 + 2 * i].change_sat),
            ));
            checks.push(check(
                &format!("{label} capacity conserved"),
                json!(SB_CAPACITY_SAT),
                json!(after[2 + 2 * i] + after[3 + 2 * i]),
            ));
        }
        if let Some(p) = &proof {
            checks.push(check(
                "proof of payment verifies with B's card",
                json!(true),
                json!(p.verified),
            ));
            checks.push(check(
                "a proof for another amount is refused",
                json!(true),
                json!(p.other_amount_refused),
            ));
        }
        checks.push(check(
            "B's watchtower holds B's latest state",
            json!(b_state),
            json!(tower_state),
        ));
        if routed {
            checks.push(check(
                "router status",
                json!("settled"),
                status["router"].clone(),
            ));
        }
        if let Some(e) = &enforcement {
            let latest = self.latest_state();
            checks.push(check(
                "S raised its feerate after miners passed over its first package",
                json!(true),
                json!(e.bumped_sat_vb[1] > e.bumped_sat_vb[0]),
            ));
            checks.push(check(
                &format!("stale U_0 confirmed, then overridden by U_{latest}"),
                json!([0, latest]),
                json!([e.stale_state, e.override_state]),
            ));
            checks.push(check(
                &format!("settlement pays A its state-{latest} balance"),
                json!(after[0]),
                json!(e.settled_to_a),
            ));
            checks.push(check(
                &format!("settlement pays S its state-{latest} balance"),
                json!(after[1]),
                json!(e.settled_to_s),
            ));
        }
        let mut channels = vec![
            json!({"name": "A–S", "channel_id": as_id, "opener": "A", "capacity_sat": AS_CAPACITY_SAT, "funding_txid": as_txid.to_string()}),
        ];
        for (label, id, txid, opener, _) in &payee_side {
            channels.push(json!({"name": label, "channel_id": id, "opener": opener.name(), "capacity_sat": SB_CAPACITY_SAT, "funding_txid": txid.to_string()}));
        }
        Ok(self.transcript(Story {
            amount_sat: amount,
            fee_sat: fee,
            payment_id,
            status,
            channels,
            balances,
            checks,
            enforcement,
            proof,
            pending: None,
            pos: None,
        }))
    }
}
