//! `asyncpay demo --pos offline-merchant|offline-payer`: paying at a shop when one side has
//! no connection (docs/payment.md, "Point of sale").
//!
//! Both start from merchant B's static offer (`ctl contact --amount-sat --description
//! --expires-in-secs --lsp`, a signed contact card of version 3), which A pays as a held
//! sale whose sealed letter A keeps to hand over (`ctl pay --hand-over`, `ctl letter`)
//! instead of posting it to a mailbox.
//!
//! - **offline-merchant**: B's device is offline. A asks S for an irrevocable offer
//!   (`--irrevocable`), hands the letter over and tries to cancel (its node refuses until
//!   the offer's expiry; S would too), then leaves. B's device checks the letter with no network (`asyncpay
//!   pos accept`, a separate process on B's data directory while B's node is stopped): it
//!   also refuses the letter tampered with, for another amount, and at another merchant's
//!   device (C). B comes online and sells; A, back, holds its proof of payment.
//! - **offline-payer**: A's phone has no connection of its own: its session with S runs
//!   through B's device (`asyncpay pos relay`, a separate process), from the channel's
//!   opening on. A pays while three dishonest relays take the honest one's place in turn,
//!   each corrupting, dropping or replaying A's bytes: S reports the broken frame and drops
//!   the connection, nothing of A's payment reaches S, and the payment waits. Then the
//!   honest relay is back, the payment goes on, B (online) takes the letter at the counter
//!   and sells at once, and A holds its proof.
//!
//! Every balance must end exact, and the proof is checked by `asyncpay proof verify` against
//! B's static offer.

use std::sync::mpsc::Receiver;

use super::processes::own_process;
use super::*;

/// Which story `--pos` tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PosMode {
    /// The merchant's device is offline; the payer hands it a letter.
    OfflineMerchant,
    /// The payer's phone is offline; the merchant's device relays its session to S.
    OfflinePayer,
}

impl PosMode {
    fn name(self) -> &'static str {
        match self {
            PosMode::OfflineMerchant => "offline-merchant",
            PosMode::OfflinePayer => "offline-payer",
        }
    }
}

/// The held PTLC of a point-of-sale payment expires this many blocks after it is made (the
/// offer runs until the claim deadline, the payer channel's delay and 3 blocks before it,
/// less a PTLC delta).
const POS_HOLD_BLOCKS: u32 = 2 * PAYER_DELAY as u32 + 16;

/// The static offer's lifetime.
const OFFER_SECS: u64 = 3600;

/// How a connection through the relay is narrated.
const RELAYED: &str = "through B's relay; Noise XX end to end, the relay carries ciphertext";

/// What the coffee costs.
const PRICE_SAT: u64 = 21_000;

/// A dishonest relay's fault hits the first chunk A sends at or after this many bytes of a
/// connection: past A's two Noise XX handshake messages (a 2-byte length and a 32-byte
/// ephemeral key; a 2-byte length, the 48-byte encrypted static key, the 96-byte key
/// binding and its 16-byte tag), so in one of A's first transport frames.
const FAULT_AFTER_BYTES: u64 = (2 + 32) + (2 + 48 + 96 + 16);

/// What the point-of-sale run showed, beside the transcript's usual fields.
#[derive(Debug, Clone, Serialize)]
pub(super) struct PosReport {
    mode: &'static str,
    /// B's static offer (its contact card of version 3).
    offer: Value,
    /// What `asyncpay pos accept` printed, or why it refused, per attempt.
    accepts: Vec<PosAttempt>,
    /// What A's cancellation got (offline-merchant).
    #[serde(skip_serializing_if = "Option::is_none")]
    cancel: Option<String>,
    /// The dishonest relays' faults and what S said of each (offline-payer).
    faults: Vec<FaultReport>,
}

/// One run of `asyncpay pos accept`.
#[derive(Debug, Clone, Serialize)]
pub(super) struct PosAttempt {
    what: String,
    accepted: bool,
    output: String,
}

/// One dishonest relay and what it caused.
#[derive(Debug, Clone, Serialize)]
pub(super) struct FaultReport {
    kind: String,
    /// The relay's report of the fault.
    injected: Value,
    /// S's report of the broken connection (`disconnected`), if it came.
    lsp_saw: Option<String>,
    /// PTLCs on A–S at S after the fault (nothing of A's payment may have arrived).
    ptlcs_after: u64,
    /// A's payment after the fault: still waiting to reach S.
    payer_status: Option<String>,
}

/// A relay process and the lines it prints.
struct RelayProc {
    name: String,
    lines: Receiver<String>,
}

impl Demo {
    /// The whole `--pos` run; the caller cleans up.
    pub(super) fn play_pos(&mut self, mode: PosMode) -> Result<Transcript, DemoError> {
        let merchant_offline = mode == PosMode::OfflineMerchant;
        self.start_services("")?;
        let parties = self.parties();
        self.begin(
            "nodes",
            format!(
                "start payer A, LSP S and merchant B{} (asyncpay node run)",
                if merchant_offline {
                    ", and C, another merchant"
                } else {
                    ""
                }
            ),
        );
        for &party in &parties {
            self.start_node(party)?;
        }
        self.begin("fund", "fund A's and S's wallets from the faucet");
        self.fund_wallets(&[Party::A, Party::S])?;

        let mut relay = None;
        let mut relay_addr = String::new();
        if merchant_offline {
            self.begin("connect", "A and the merchants connect to S");
            self.connect(Party::A, Party::S)?;
        } else {
            self.begin(
                "relay",
                "B's device relays A's connection to S (asyncpay pos relay): A's phone has \
                 no other way to S",
            );
            let (r, addr) = self.start_relay("relay", None, "127.0.0.1:0")?;
            relay = Some(r);
            relay_addr = addr;
            self.connect_via(Party::A, Party::S, &relay_addr, RELAYED)?;
        }
        let merchants: Vec<Party> = parties
            .iter()
            .copied()
            .filter(|p| ![Party::A, Party::S].contains(p))
            .collect();
        for &m in &merchants {
            self.connect(m, Party::S)?;
        }
        self.begin(
            "open",
            if merchant_offline {
                "open A–S (A funds), S–B and S–C (S funds)"
            } else {
                "open A–S (A funds) and S–B (S funds)"
            },
        );
        let star = self.open_star(&merchants)?;
        let as_id = star.payer.0.clone();
        let before = star.balances(self)?;

        self.begin(
            "offer",
            format!(
                "B's till shows a static offer: {PRICE_SAT} sat for \"a coffee\", for an \
                 hour, sold to S only (ctl contact --amount-sat --description \
                 --expires-in-secs --lsp)"
            ),
        );
        let s_key = self.node(Party::S).key.clone();
        let offer = self.call(
            Party::B,
            "/v1/contact",
            json!({"amount_sat": PRICE_SAT, "description": "a coffee", "expires_in_secs": OFFER_SECS, "lsp": s_key}),
        )?;
        let mut accepts = vec![];
        let mut faults = vec![];
        let mut cancel = None;
        let mut cancel_statuses = None;
        if merchant_offline {
            self.stop_node(Party::C)?;
            self.stop_node(Party::B)?;
            self.narrator
                .detail("B's device goes offline (and so does C's)".to_string());
        } else {
            // A's phone loses its way to S for a moment: the honest relay goes away.
            let honest = relay.take().expect("started above");
            self.children.kill(&honest.name);
        }

        self.begin(
            "pay",
            format!(
                "A pays B's offer as an irrevocable held sale whose letter it hands over \
                 (ctl pay --hold-blocks {POS_HOLD_BLOCKS} --irrevocable --hand-over)"
            ),
        );
        let refused_amount = self.call(
            Party::A,
            "/v1/pay",
            json!({"lsp": s_key, "contact": offer, "amount_sat": PRICE_SAT + 1, "hold_blocks": POS_HOLD_BLOCKS, "hand_over": true}),
        );
        let refused_amount = match refused_amount {
            Ok(answer) => {
                return Err(DemoError::Answer(format!(
                    "A paid B's offer for another amount: {answer}"
                )))
            }
            Err(e) => e.to_string(),
        };
        self.narrator.detail(format!(
            "A's node refuses to pay the offer {} sat: {refused_amount}",
            PRICE_SAT + 1
        ));
        let answer = self.call(
            Party::A,
            "/v1/pay",
            json!({"lsp": s_key, "contact": offer, "amount_sat": PRICE_SAT, "hold_blocks": POS_HOLD_BLOCKS, "irrevocable": true, "hand_over": true}),
        )?;
        let id = answer["payment_id"]
            .as_str()
            .ok_or_else(|| DemoError::Answer(format!("/v1/pay answered {answer}")))?
            .to_string();
        let fee = answer["fee_sat"].as_u64().unwrap_or(0);
        if !merchant_offline {
            self.begin(
                "faults",
                "while A's payment waits to reach S, three dishonest relays take the honest \
                 one's place in turn, corrupting, dropping and replaying A's bytes: S drops \
                 each broken session and applies nothing of it",
            );
            for kind in ["corrupt", "drop", "replay"] {
                faults.push(self.fault_round(kind, &relay_addr, &as_id, &id)?);
            }
            let (r, _) = self.start_relay("relay-honest", None, &relay_addr)?;
            relay = Some(r);
            // A dials at once, not after the backoff its failed redials built up.
            self.connect_via(Party::A, Party::S, &relay_addr, RELAYED)?;
            self.narrator.detail(
                "the honest relay is back; A reconnects through it and its payment goes on"
                    .to_string(),
            );
        }
        self.await_status(Party::A, &id, "posted", &["void"])?;
        let letter = self.call(Party::A, "/v1/letter", json!({ "payment_id": id }))?;
        let envelope = letter["envelope"]
            .as_str()
            .ok_or_else(|| DemoError::Answer(format!("/v1/letter answered {letter}")))?
            .to_string();
        let letter_file = self.root.path().join("letter.hex");
        std::fs::write(&letter_file, &envelope)?;
        self.narrator.detail(format!(
            "A's sealed letter, {} bytes, written to {} (the stand-in for QR or NFC)",
            envelope.len() / 2,
            letter_file.display()
        ));

        if merchant_offline {
            self.begin(
                "cancel",
                "A tries to cancel: refused, the offer is irrevocable until its expiry",
            );
            // A's node keeps its own promise; S would refuse the cancellation too.
            let said = self.call(Party::A, "/v1/cancel", json!({ "payment_id": id }));
            cancel = Some(match said {
                Ok(answer) => format!("accepted: {answer}"),
                Err(e) if e.to_string().contains("irrevocable") => {
                    "refused: irrevocable".to_string()
                }
                Err(e) => format!("refused otherwise: {e}"),
            });
            self.narrator.detail(format!(
                "A's cancellation: {}",
                cancel.as_deref().unwrap_or_default()
            ));
            cancel_statuses = Some((
                self.payment_status(Party::A, &id)?,
                self.payment_status(Party::S, &id)?,
            ));
            self.stop_node(Party::A)?;
            self.narrator.detail("A leaves the shop (its node stops)");

            self.begin(
                "accept",
                "B's offline device checks the letter with no network (asyncpay pos accept): \
                 a tampered copy, another amount and another merchant's device are refused",
            );
            let mut tampered = envelope.clone().into_bytes();
            let mid = tampered.len() / 2;
            tampered[mid] = if tampered[mid] == b'0' { b'1' } else { b'0' };
            let tampered_file = self.root.path().join("letter-tampered.hex");
            std::fs::write(&tampered_file, &tampered)?;
            let price = PRICE_SAT.to_string();
            let other_price = (PRICE_SAT + 1).to_string();
            for (what, party, file, amount) in [
                (
                    "a copy with one byte changed",
                    Party::B,
                    &tampered_file,
                    &price,
                ),
                (
                    "at a till asking another amount",
                    Party::B,
                    &letter_file,
                    &other_price,
                ),
                (
                    "at another merchant's device (C)",
                    Party::C,
                    &letter_file,
                    &price,
                ),
                ("the letter", Party::B, &letter_file, &price),
            ] {
                accepts.push(self.pos_accept(what, party, file, amount)?);
            }
        } else {
            self.begin(
                "accept",
                "B's device, online, takes the letter at the counter (asyncpay pos accept) \
                 and its node sells at once",
            );
            let price = PRICE_SAT.to_string();
            accepts.push(self.pos_accept("the letter", Party::B, &letter_file, &price)?);
        }

        self.begin("sell", "B sells A's letter to S and is paid");
        if merchant_offline {
            self.start_node(Party::B)?;
            self.await_connected(Party::B, Party::S)?;
            // C, back online too, so that its channel's balance can be read.
            self.start_node(Party::C)?;
        }
        self.await_status(Party::B, &id, "paid", &["refused"])?;
        self.await_status(Party::S, &id, "sold", &["cancelled"])?;

        self.begin(
            "receipt",
            if merchant_offline {
                "A comes back: S fulfils A's PTLC and hands A its receipt"
            } else {
                "S fulfils A's PTLC through the relay and hands A its receipt at once"
            },
        );
        if merchant_offline {
            self.start_node(Party::A)?;
            self.await_connected(Party::A, Party::S)?;
        }
        self.await_status(Party::A, &id, "completed", &["void"])?;
        let proof = self.check_proof_with(&id, &offer)?;
        let limit = Duration::from_secs(self.args.timeout_secs);
        wait_for("A's PTLC to S to be fulfilled", limit, || {
            let c = self.channel(Party::A, &as_id)?;
            Ok((c["ptlcs"] == 0 && c["phase"] == "Funded").then_some(()))
        })?;
        let after = star.balances(self)?;
        // B's watchtower holds the state that pays B (it is pushed each new state).
        let sb = star
            .payees
            .iter()
            .find(|(p, ..)| *p == Party::B)
            .map(|(_, _, id, _)| id.clone())
            .ok_or_else(|| DemoError::Answer("B has a channel".into()))?;
        let b_state = self.channel(Party::B, &sb)?["state"].as_u64();
        let tower_state = wait_for("B's watchtower to hold B's latest state", limit, || {
            Ok(self
                .tower_state(Party::B, &sb)
                .filter(|s| Some(*s) == b_state)
                .map(Some))
        })
        .unwrap_or_else(|_| self.tower_state(Party::B, &sb));
        let status = json!({
            "variant": format!("point of sale, {}", mode.name()),
            "payer": self.payment_status(Party::A, &id)?,
            "lsp": self.payment_status(Party::S, &id)?,
            "payee": self.payment_status(Party::B, &id)?,
        });

        self.begin("stop", "stop every node and the relay");
        for party in self.parties() {
            if self.node(party).running.is_some() {
                self.stop_node(party)?;
            }
        }
        if let Some(r) = relay {
            self.children.kill(&r.name);
        }
        self.narrator.end();

        let spent = PRICE_SAT + fee;
        let rows = star.rows();
        let balances = balance_rows(&rows, &before, &after);
        let mut checks = vec![
            check("payer status", json!("completed"), status["payer"].clone()),
            check("lsp status", json!("sold"), status["lsp"].clone()),
            check("payee status", json!("paid"), status["payee"].clone()),
        ];
        let received = |payee: Party| if payee == Party::B { PRICE_SAT } else { 0 };
        checks.extend(star.balance_checks(spent, received, &balances, &after));
        checks.extend([
            check(
                "B's watchtower holds B's latest state",
                json!(b_state),
                json!(tower_state),
            ),
            check(
                "proof of payment verifies with B's static offer",
                json!(true),
                json!(proof.verified),
            ),
            check(
                "a proof for another amount is refused",
                json!(true),
                json!(proof.other_amount_refused),
            ),
            check(
                "the proof names the offer's description",
                json!("a coffee"),
                proof.proof["note"].clone(),
            ),
            check(
                "A refuses to pay the static offer another amount",
                json!(true),
                json!(refused_amount.contains("offer")),
            ),
        ]);
        for attempt in &accepts {
            checks.push(check(
                &format!("pos accept: {}", attempt.what),
                json!(attempt.what == "the letter"),
                json!(attempt.accepted),
            ));
        }
        if let Some(said) = &cancel {
            checks.push(check(
                "A's cancellation of the irrevocable offer",
                json!("refused: irrevocable"),
                json!(said),
            ));
        }
        if let Some((payer, lsp)) = &cancel_statuses {
            checks.push(check(
                "after the cancellation: A's payment posted, S's offer open",
                json!(["posted", "offered"]),
                json!([payer, lsp]),
            ));
        }
        for f in &faults {
            checks.push(check(
                &format!(
                    "relay that {}s A's bytes: S reports the broken frame",
                    f.kind
                ),
                json!(true),
                json!(f.lsp_saw.is_some()),
            ));
            checks.push(check(
                &format!(
                    "relay that {}s A's bytes: S applied nothing of A's payment",
                    f.kind
                ),
                json!(0),
                json!(f.ptlcs_after),
            ));
            checks.push(check(
                &format!(
                    "relay that {}s A's bytes: A's payment waits, not lost",
                    f.kind
                ),
                json!("proposed"),
                json!(f.payer_status),
            ));
        }
        Ok(self.transcript(Story {
            amount_sat: PRICE_SAT,
            fee_sat: fee,
            payment_id: id,
            status,
            channels: star.channels_json(),
            balances,
            checks,
            enforcement: None,
            proof: Some(proof),
            pending: None,
            pos: Some(PosReport {
                mode: mode.name(),
                offer,
                accepts,
                cancel,
                faults,
            }),
        }))
    }

    /// Starts `asyncpay pos relay` to S's peer address on `listen`, with `fault` if given;
    /// returns it and the address it listens on.
    fn start_relay(
        &mut self,
        name: &str,
        fault: Option<&str>,
        listen: &str,
    ) -> Result<(RelayProc, String), DemoError> {
        let to = self
            .node(Party::S)
            .running
            .as_ref()
            .map(|(f, _)| f.peer_addr.clone())
            .ok_or(DemoError::NotRunning("S"))?;
        let log = self.root.path().join(format!("{name}.log"));
        let mut command = own_process(&self.exe);
        command.args(["pos", "relay", "--listen", listen, "--to", &to]);
        if let Some(fault) = fault {
            command.args(["--fault", fault]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log)?)
            .spawn()
            .map_err(|source| DemoError::Spawn {
                what: format!("starting {name}"),
                source,
            })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        self.children.add(name, child, log);
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(START_TIMEOUT)
            .map_err(|_| DemoError::Answer(format!("{name} printed nothing")))?;
        let value: Value = serde_json::from_str(&first)?;
        let addr = value["listen"]
            .as_str()
            .ok_or_else(|| DemoError::Answer(format!("{name} printed {first}")))?
            .to_string();
        self.narrator.detail(format!(
            "{name} listens at {addr}, carrying to S at {to}{}",
            fault.map_or(String::new(), |f| format!(", injecting {f}"))
        ));
        Ok((
            RelayProc {
                name: name.to_string(),
                lines,
            },
            addr,
        ))
    }

    /// One dishonest relay on the honest one's address: A redials through it, the relay
    /// breaks A's bytes, S must drop the session and apply nothing.
    fn fault_round(
        &mut self,
        kind: &str,
        addr: &str,
        as_id: &str,
        payment_id: &str,
    ) -> Result<FaultReport, DemoError> {
        let name = format!("relay-{kind}");
        let disconnects_before = self.disconnects(Party::S);
        let (relay, _) =
            self.start_relay(&name, Some(&format!("{kind}:{FAULT_AFTER_BYTES}")), addr)?;
        // A redials S's stored address by itself; a connect makes it try at once.
        self.call(
            Party::A,
            "/v1/connect",
            json!({"node_key": self.node(Party::S).key, "addr": addr}),
        )?;
        let limit = Duration::from_secs(self.args.timeout_secs);
        let injected = wait_for(&format!("{name} to inject its fault"), limit, || {
            Ok(relay
                .lines
                .try_iter()
                .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
                .find(|v| v["event"] == "fault"))
        })?;
        // A drop breaks the session only when A sends again: S may hear nothing wrong
        // until the next frame, which A's pings bring within the wait.
        let lsp_saw = wait_for(
            &format!("S to drop the session {name} broke"),
            limit,
            || {
                Ok(self
                    .disconnects(Party::S)
                    .into_iter()
                    .skip(disconnects_before.len())
                    .find(|r| r.contains("authentication") || r.contains("frame")))
            },
        )
        .ok();
        self.children.kill(&name);
        let ptlcs_after = self.channel(Party::S, as_id)?["ptlcs"]
            .as_u64()
            .unwrap_or(0);
        let payer_status = self.payment_status(Party::A, payment_id)?;
        self.narrator.detail(format!(
            "{name}: {}; S: {}",
            injected,
            lsp_saw.as_deref().unwrap_or("nothing seen")
        ));
        Ok(FaultReport {
            kind: kind.to_string(),
            injected,
            lsp_saw,
            ptlcs_after,
            payer_status,
        })
    }

    /// The reasons of every `disconnected` report in `party`'s log so far.
    fn disconnects(&self, party: Party) -> Vec<String> {
        let log = self.root.path().join(format!("{}.log", party.name()));
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| match serde_json::from_str::<NodeEvent>(l) {
                Ok(NodeEvent::Disconnected { reason, .. }) => Some(reason),
                _ => None,
            })
            .collect()
    }

    /// Runs `asyncpay pos accept` on `party`'s data directory for the letter in `file`, the
    /// till asking `amount` sat.
    fn pos_accept(
        &mut self,
        what: &str,
        party: Party,
        file: &Path,
        amount: &str,
    ) -> Result<PosAttempt, DemoError> {
        let dir = self.root.path().join(party.name());
        let output = own_process(&self.exe)
            .args(["pos", "accept", "--data-dir"])
            .arg(&dir)
            .args(["--amount-sat", amount])
            .arg(file)
            .env("RUST_BACKTRACE", "0")
            .env("RUST_LIB_BACKTRACE", "0")
            .output()?;
        let accepted = output.status.success();
        let text = if accepted {
            String::from_utf8_lossy(&output.stdout).trim().to_string()
        } else {
            String::from_utf8_lossy(&output.stderr).trim().to_string()
        };
        self.narrator.detail(format!(
            "{} pos accept, {what}: {}",
            party.name(),
            if accepted {
                "accepted".to_string()
            } else {
                format!("refused ({})", text.lines().next().unwrap_or(""))
            }
        ));
        Ok(PosAttempt {
            what: what.to_string(),
            accepted,
            output: text,
        })
    }
}
