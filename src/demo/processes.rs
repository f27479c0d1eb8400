//! The child processes: starting and stopping nodes, the mailbox and the watchtower; their
//! control calls; injected crashes and the recovery from them; mining and waiting.

use super::*;

impl Demo {
    pub(super) fn node(&self, party: Party) -> &Node {
        &self.nodes[party.index()]
    }

    /// A control call. A query (`/v1/info`) to the party told to crash that dies meanwhile
    /// restarts it and asks again (once); other commands are not repeated, their callers
    /// decide.
    pub(super) fn call(
        &mut self,
        party: Party,
        path: &str,
        body: Value,
    ) -> Result<Value, DemoError> {
        match self.control.call(self.node(party), path, body.clone()) {
            Err(e) if path == "/v1/info" && self.crash_pending() == Some(party) => {
                if !self.recover_after_failed_call(party)? {
                    return Err(e);
                }
                self.control.call(self.node(party), path, body)
            }
            other => other,
        }
    }

    pub(super) fn info(&mut self, party: Party) -> Result<Value, DemoError> {
        self.call(party, "/v1/info", json!({}))
    }

    /// Starts the node of `party` (again) and waits until it wrote its `node.json`.
    pub(super) fn start_node(&mut self, party: Party) -> Result<(), DemoError> {
        let name = party.name();
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir)?;
        let node_file = dir.join("node.json");
        // A file left by the previous run of this node must not be taken for the new one.
        let _ = std::fs::remove_file(&node_file);
        let log = self.root.path().join(format!("{name}.log"));
        let log_file = OpenOptions::new().create(true).append(true).open(&log)?;
        self.runs[party.index()] += 1;
        let run = self.runs[party.index()];
        let mut command = own_process(&self.exe);
        command
            .args(["node", "run", "--role", party.role(), "--data-dir"])
            .arg(&dir)
            .args(["--network", self.args.network.as_str()])
            .args(["--electrum", &self.electrum, "--mailbox", &self.mailbox_url])
            .args(["--listen", "127.0.0.1:0"]);
        // A party restarted during the payment is armed from its first output on: it may
        // reach its point before a control call could arm it.
        if let Some(point) = self.armed_point(party) {
            command.args(["--crash-at", &point]);
            self.narrator
                .detail(format!("{name} is armed to SIGKILL itself at {point}"));
        }
        // A's channel must outlast a sale after A publishes an older state (PTLC delta plus
        // margin); B's channel must settle well inside the PTLC's lifetime.
        match party {
            Party::A => {
                let delay = if self.args.payer_cheats_while_pending {
                    PAYER_DELAY_FOR_LATE_SALE
                } else {
                    PAYER_DELAY
                };
                command.args(["--shared-delay", &delay.to_string()]);
                // Behind a relay, A's keepalive (a third of this) also shows a relay that
                // dropped A's last frame within seconds.
                if self.args.pos == Some(PosMode::OfflinePayer) {
                    command.args(["--idle-timeout-secs", "6"]);
                }
            }
            Party::S => {
                command
                    .args(["--shared-delay", &PAYEE_DELAY.to_string()])
                    .args(["--ptlc-delta", &PTLC_DELTA.to_string()])
                    .args(["--rpc-url", &self.chain.rpc_url(), "--rpc-cookie"])
                    .arg(self.chain.rpc_cookie_file());
            }
            Party::P => {
                command.args(["--shared-delay", &PAYEE_DELAY.to_string()]);
            }
            Party::B => {
                command.args(["--watchtower", &self.tower_url]);
            }
            // The other payees of `--pending` are offline only for a few blocks.
            Party::C | Party::D | Party::E => {}
        }
        command
            .env(
                "RUST_LOG",
                std::env::var("ASYNCPAY_DEMO_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file.try_clone()?);
        let mut child = command.spawn().map_err(|source| DemoError::Spawn {
            what: format!("starting node {name}"),
            source,
        })?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("stdout is piped");
        self.events
            .follow(stdout, log_file, party, run, self.narrator.started);
        self.children.add(name, child, log);
        let file: NodeFile = {
            let children = &mut self.children;
            wait_for(&format!("{name} to write node.json"), START_TIMEOUT, || {
                // Read first: a node armed to crash may already have died after writing it.
                let file = std::fs::read_to_string(&node_file)
                    .ok()
                    .and_then(|text| serde_json::from_str::<NodeFile>(&text).ok())
                    .filter(|file| file.pid == pid);
                if file.is_none() {
                    children.check_alive(name)?;
                }
                Ok(file)
            })?
        };
        let token = wait_for(
            &format!("{name} to write control.token"),
            START_TIMEOUT,
            || {
                Ok(std::fs::read_to_string(dir.join("control.token"))
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty()))
            },
        )?;
        let node = &mut self.nodes[party.index()];
        node.dir = dir;
        node.key = file.node_key.clone();
        self.narrator.detail(format!(
            "{name} ({}) pid {} key {}… peers at {}, control at {}",
            party.role(),
            file.pid,
            &file.node_key[..16.min(file.node_key.len())],
            file.peer_addr,
            file.control_url
        ));
        node.running = Some((file, token));
        Ok(())
    }

    /// Asks a node to stop and waits for its process to exit.
    pub(super) fn stop_node(&mut self, party: Party) -> Result<(), DemoError> {
        self.call(party, "/v1/stop", json!({}))?;
        self.children
            .wait_exit(party.name(), Duration::from_secs(30))?;
        self.nodes[party.index()].running = None;
        self.narrator.detail(format!("{} stopped", party.name()));
        Ok(())
    }

    pub(super) fn start_mailbox(&mut self) -> Result<(), DemoError> {
        self.narrator
            .detail(format!("work directory {}", self.root.path().display()));
        let dir = self.root.path().join("mailbox");
        std::fs::create_dir_all(&dir)?;
        let log = self.root.path().join("mailbox.log");
        let mut child = own_process(&self.exe)
            .args([
                "mailbox",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--json",
                "--data-dir",
            ])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log)?)
            .spawn()
            .map_err(|source| DemoError::Spawn {
                what: "starting the mailbox server".into(),
                source,
            })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        self.children.add("mailbox", child, log);
        // The server prints one line with its URL once it listens.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(START_TIMEOUT)
            .map_err(DemoError::MailboxSilent)?;
        let value: Value =
            serde_json::from_str(line.trim()).map_err(|source| DemoError::MailboxLine {
                line: line.clone(),
                source,
            })?;
        self.mailbox_url = value["listening"]
            .as_str()
            .ok_or_else(|| DemoError::Answer(format!("mailbox serve printed {line:?}")))?
            .to_string();
        let pid = self.children.started.last().map_or(0, |(_, pid)| *pid);
        self.narrator
            .detail(format!("mailbox pid {pid} at {}", self.mailbox_url));
        Ok(())
    }

    /// Starts B's watchtower and waits until it wrote its `tower.json`.
    /// The first two steps of every story: the mailbox server, then B's watchtower (`why`
    /// says what it is for in this story, if anything).
    pub(super) fn start_services(&mut self, why: &str) -> Result<(), DemoError> {
        self.begin(
            "mailbox",
            "start the mailbox server (asyncpay mailbox serve)",
        );
        self.start_mailbox()?;
        self.begin(
            "tower",
            format!("start B's watchtower (asyncpay watchtower serve){why}"),
        );
        self.start_tower()
    }

    pub(super) fn start_tower(&mut self) -> Result<(), DemoError> {
        let dir = self.root.path().join("watchtower");
        std::fs::create_dir_all(&dir)?;
        let log = self.root.path().join("watchtower.log");
        let child = own_process(&self.exe)
            .args([
                "watchtower",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&dir)
            .args(["--rpc-url", &self.chain.rpc_url(), "--rpc-cookie"])
            .arg(self.chain.rpc_cookie_file())
            .args(["--electrum", &self.electrum, "--poll-ms", "300"])
            .args(["--network", self.args.network.as_str()])
            .stdin(Stdio::null())
            .stdout(File::create(self.root.path().join("watchtower.out"))?)
            .stderr(File::create(&log)?)
            .spawn()
            .map_err(|source| DemoError::Spawn {
                what: "starting the watchtower".into(),
                source,
            })?;
        self.children.add("watchtower", child, log);
        let file = dir.join("tower.json");
        let info: Value = wait_for("the watchtower to write tower.json", START_TIMEOUT, || {
            self.children.check_alive("watchtower")?;
            Ok(std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok()))
        })?;
        self.tower_url = info["url"]
            .as_str()
            .ok_or_else(|| DemoError::Answer(format!("tower.json without url: {info}")))?
            .to_string();
        self.narrator
            .detail(format!("watchtower at {}", self.tower_url));
        Ok(())
    }

    /// The newest state of channel `channel_id` that `party` reported its watchtower holds.
    pub(super) fn tower_state(&self, party: Party, channel_id: &str) -> Option<u64> {
        self.events.all().iter().rev().find_map(|e| match &e.event {
            Reported::Node(NodeEvent::WatchtowerUpdated {
                channel_id: id,
                state,
                ..
            }) if e.party == party && hex::encode(id.0) == channel_id => Some(*state),
            _ => None,
        })
    }

    /// Mines `n` blocks, waits for electrs and for every running node to see the new tip.
    pub(super) fn mine(&mut self, n: u64) -> Result<u64, DemoError> {
        self.chain.mine(n)?;
        self.chain.wait_for_electrs_tip()?;
        let height = self.chain.height()?;
        for party in self.parties() {
            if self.node(party).running.is_none() {
                continue;
            }
            wait_for(
                &format!("{} to reach height {height}", party.name()),
                Duration::from_secs(self.args.timeout_secs),
                || {
                    let info = self.info(party)?;
                    Ok((info["height"].as_u64().unwrap_or(0) >= height).then_some(()))
                },
            )?;
        }
        Ok(height)
    }

    pub(super) fn begin(&mut self, name: &'static str, title: impl Into<String>) {
        self.narrator.begin(name, title);
    }

    /// Waits until `party`'s current process reports an event that `matches`. A party that
    /// dies at its injected crash point meanwhile is restarted, and the wait goes on for its
    /// new process.
    pub(super) fn await_event(
        &mut self,
        party: Party,
        what: &str,
        matches: impl Fn(&NodeEvent) -> bool,
    ) -> Result<(), DemoError> {
        let limit = Duration::from_secs(self.args.timeout_secs);
        let started = Instant::now();
        loop {
            let run = self.runs[party.index()];
            if self.events.any(party, run, &matches) {
                return Ok(());
            }
            if self.recover()? {
                continue;
            }
            self.alive_or_crashing(party)?;
            interrupted()?;
            if started.elapsed() > limit {
                return Err(DemoError::Timeout {
                    what: format!("{} to report {what}", party.name()),
                    limit,
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// The party told to crash (`--crash`) that has not yet died.
    pub(super) fn crash_pending(&self) -> Option<Party> {
        let c = self.crash.as_ref().filter(|c| c.fired_in.is_none())?;
        Party::ALL.into_iter().find(|p| p.name() == c.party)
    }

    /// The crash point to arm `party` with: it is the one told to crash, the payment is
    /// under way and it has not died yet.
    pub(super) fn armed_point(&self, party: Party) -> Option<String> {
        if !self.in_payment || self.crash_pending() != Some(party) {
            return None;
        }
        self.crash.as_ref().map(|c| c.point.clone())
    }

    /// Arms a running `party`'s injected crash point (see [`Demo::armed_point`]).
    pub(super) fn arm(&mut self, party: Party) -> Result<(), DemoError> {
        let Some(point) = self.armed_point(party) else {
            return Ok(());
        };
        self.call(party, "/v1/crash-at", json!({ "point": point }))?;
        self.narrator.detail(format!(
            "{} is armed to SIGKILL itself at {point}",
            party.name()
        ));
        Ok(())
    }

    /// Fails if `party`'s process has exited, unless it is the party told to crash (its
    /// death is handled by [`Demo::recover`]).
    pub(super) fn alive_or_crashing(&mut self, party: Party) -> Result<(), DemoError> {
        match self.children.check_alive(party.name()) {
            Err(_) if self.crash_pending() == Some(party) => Ok(()),
            other => other,
        }
    }

    /// After a control call to `party` failed: if it is the party told to crash, gives its
    /// process a moment to finish dying, then [`Demo::recover`]s it.
    pub(super) fn recover_after_failed_call(&mut self, party: Party) -> Result<bool, DemoError> {
        if self.crash_pending() != Some(party) {
            return Ok(false);
        }
        let started = Instant::now();
        while !self.children.exited(party.name())? && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(POLL);
        }
        self.recover()
    }

    /// If the party told to crash has died at its crash point, restarts it at once, as an
    /// operator's supervisor would. Returns whether it did. A death without the crash point
    /// reported is an error.
    pub(super) fn recover(&mut self) -> Result<bool, DemoError> {
        let Some(party) = self.crash_pending() else {
            return Ok(false);
        };
        if self.nodes[party.index()].running.is_none() || !self.children.exited(party.name())? {
            return Ok(false);
        }
        let run = self.runs[party.index()];
        // The report is read from the process's stdout by another thread.
        let reported = wait_for("the crash point report", Duration::from_secs(2), || {
            Ok(self
                .events
                .any(party, run, |e| matches!(e, NodeEvent::CrashPoint { .. }))
                .then_some(()))
        });
        if reported.is_err() {
            self.children.check_alive(party.name())?;
        }
        self.children
            .wait_exit(party.name(), Duration::from_secs(5))?;
        self.nodes[party.index()].running = None;
        let step = self.narrator.steps.last().map(|s| s.name.to_string());
        let at = self.narrator.started.elapsed().as_millis() as u64;
        let point = match self.crash.as_mut() {
            Some(c) => {
                c.fired_in = step;
                c.fired_at_ms = Some(at);
                c.point.clone()
            }
            None => String::new(),
        };
        self.narrator.detail(format!(
            "{} died by SIGKILL at {point}; restarting it from its data directory",
            party.name()
        ));
        self.start_node(party)?;
        Ok(true)
    }

    /// Waits until `party`'s current process reports a connection with `peer`.
    pub(super) fn await_connected(&mut self, party: Party, peer: Party) -> Result<(), DemoError> {
        let key = self.node(peer).key.clone();
        self.await_event(
            party,
            &format!("a connection to {}", peer.name()),
            |e| matches!(e, NodeEvent::Connected { peer } if peer.to_string() == key),
        )
    }

    /// `from` dials `to`'s peer address; `to` is first told to accept `from` (a node
    /// refuses peers it does not know).
    pub(super) fn connect(&mut self, from: Party, to: Party) -> Result<(), DemoError> {
        let addr = self
            .node(to)
            .running
            .as_ref()
            .map(|(f, _)| f.peer_addr.clone())
            .ok_or(DemoError::NotRunning(to.name()))?;
        self.connect_via(from, to, &addr, "Noise XX, both node keys checked")
    }

    /// `from` dials `to` at `addr` (its peer address, or a relay's); `to` is first told to
    /// accept `from`. `how` says what the connection is, for the narration.
    pub(super) fn connect_via(
        &mut self,
        from: Party,
        to: Party,
        addr: &str,
        how: &str,
    ) -> Result<(), DemoError> {
        self.call(to, "/v1/connect", json!({"node_key": self.node(from).key}))?;
        self.call(
            from,
            "/v1/connect",
            json!({"node_key": self.node(to).key, "addr": addr}),
        )?;
        self.await_connected(from, to)?;
        self.await_connected(to, from)?;
        self.narrator.detail(format!(
            "{} connected to {} at {addr} ({how})",
            from.name(),
            to.name()
        ));
        Ok(())
    }
}

impl Children {
    /// The transcript's `processes`: every child started, with its pid.
    pub(super) fn started_json(&self) -> Vec<Value> {
        self.started
            .iter()
            .map(|(name, pid)| json!({"name": name, "pid": pid}))
            .collect()
    }

    pub(super) fn add(&mut self, name: &str, child: Child, log: PathBuf) {
        self.started.push((name.to_string(), child.id()));
        self.procs.push(Proc {
            name: name.to_string(),
            child,
            log,
        });
    }

    pub(super) fn get_mut(&mut self, name: &str) -> Result<&mut Proc, DemoError> {
        self.procs
            .iter_mut()
            .find(|p| p.name == name)
            .ok_or_else(|| DemoError::NoProcess(name.to_string()))
    }

    /// Whether `name` has exited; an exit is reported with the tail of its log.
    pub(super) fn check_alive(&mut self, name: &str) -> Result<(), DemoError> {
        let proc = self.get_mut(name)?;
        if let Some(status) = proc.child.try_wait()? {
            return Err(DemoError::Exited {
                name: name.to_string(),
                status,
                log: proc.log.clone(),
                tail: tail(&proc.log, 20),
            });
        }
        Ok(())
    }

    /// Kills `name` (if it runs) and forgets it.
    pub(super) fn kill(&mut self, name: &str) {
        if let Some(index) = self.procs.iter().position(|p| p.name == name) {
            let mut proc = self.procs.remove(index);
            let _ = proc.child.kill();
            let _ = proc.child.wait();
        }
    }

    /// Whether `name` has exited (without reporting it as an error).
    pub(super) fn exited(&mut self, name: &str) -> Result<bool, DemoError> {
        Ok(self.get_mut(name)?.child.try_wait()?.is_some())
    }

    /// Waits for `name` to exit by itself; kills it after `limit`.
    pub(super) fn wait_exit(&mut self, name: &str, limit: Duration) -> Result<(), DemoError> {
        let started = Instant::now();
        let index = self
            .procs
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| DemoError::NoProcess(name.to_string()))?;
        loop {
            if self.procs[index].child.try_wait()?.is_some() {
                self.procs.remove(index);
                return Ok(());
            }
            if started.elapsed() > limit {
                let mut proc = self.procs.remove(index);
                let _ = proc.child.kill();
                let _ = proc.child.wait();
                return Err(DemoError::NotStopped {
                    name: name.to_string(),
                    limit,
                });
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for proc in &mut self.procs {
            let _ = proc.child.kill();
            let _ = proc.child.wait();
        }
    }
}

impl Control {
    pub(super) fn new() -> Result<Self, DemoError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // A fresh connection per request: a node's control server closes idle ones, and a
        // pooled connection it closed while the demo waited (for signet blocks, say) would
        // fail the next request.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(0)
            .build()?;
        Ok(Self { runtime, http })
    }

    /// POSTs `body` to `path` of a running node; an error answer becomes an error carrying
    /// the node's code and message.
    pub(super) fn call(&self, node: &Node, path: &str, body: Value) -> Result<Value, DemoError> {
        let (file, token) = node
            .running
            .as_ref()
            .ok_or(DemoError::NotRunning(node.party.name()))?;
        let url = format!("{}{path}", file.control_url.trim_end_matches('/'));
        self.runtime.block_on(async {
            let response = self
                .http
                .post(&url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .map_err(|source| DemoError::ControlUnreachable {
                    party: node.party.name(),
                    path: path.to_string(),
                    source,
                })?;
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let value: Value = if text.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(&text).map_err(|source| DemoError::ControlNotJson {
                    party: node.party.name(),
                    path: path.to_string(),
                    text: text.clone(),
                    source,
                })?
            };
            if !status.is_success() {
                return Err(DemoError::ControlRefused {
                    party: node.party.name(),
                    path: path.to_string(),
                    status,
                    error: value["error"].as_str().unwrap_or("?").to_string(),
                    message: value["message"].as_str().unwrap_or(&text).to_string(),
                });
            }
            Ok(value)
        })
    }
}

/// A child process of the demo: configured by its flags only, never by a configuration file
/// the user's environment names (`ASYNCPAY_CONFIG`), which would add the user's settings to
/// the demo's nodes.
pub(super) fn own_process(exe: &Path) -> Command {
    let mut command = Command::new(exe);
    command.env_remove("ASYNCPAY_CONFIG");
    command
}
