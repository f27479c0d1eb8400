//! What the demo reports: the narration, the nodes' events, the checks, the summary tables
//! and the sequence diagram.

use super::*;

impl Narrator {
    pub(super) fn new() -> Self {
        Self {
            started: Instant::now(),
            steps: Vec::new(),
            current: None,
        }
    }

    pub(super) fn begin(&mut self, name: &'static str, title: impl Into<String>) {
        self.end();
        let title = title.into();
        let n = self.steps.len() + 1;
        eprintln!(
            "[{:>6.1}s] {n:>2}. {title}",
            self.started.elapsed().as_secs_f64()
        );
        let started = self.started.elapsed();
        self.steps.push(Step {
            n,
            name,
            title,
            started_ms: started.as_millis() as u64,
            started_us: started.as_micros() as u64,
            duration_ms: 0,
            details: Vec::new(),
        });
        self.current = Some((Instant::now(), n - 1));
    }

    pub(super) fn detail(&mut self, text: impl Into<String>) {
        let text = text.into();
        eprintln!("            {text}");
        if let Some((_, i)) = self.current {
            self.steps[i].details.push(text);
        }
    }

    pub(super) fn end(&mut self) {
        if let Some((at, i)) = self.current.take() {
            self.steps[i].duration_ms = at.elapsed().as_millis() as u64;
        }
    }
}

/// Prints the refusals and errors the processes logged, so that a failed run says why.
pub(super) fn report_problems(dir: &Path) {
    for name in ["A", "S", "B", "P", "mailbox"] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                l.contains("refused") || l.contains("error") || l.contains("panicked")
            })
            .collect();
        if lines.is_empty() {
            continue;
        }
        eprintln!("{name} reported:");
        for line in &lines[lines.len().saturating_sub(5)..] {
            eprintln!("    {line}");
        }
    }
}

pub(super) fn check(what: &str, expected: Value, actual: Value) -> Check {
    Check {
        what: what.to_string(),
        ok: expected == actual,
        expected,
        actual,
    }
}

impl Events {
    /// Copies every line of `stdout` to `log` and records its JSON events, on a thread.
    pub(super) fn follow(
        &self,
        stdout: ChildStdout,
        mut log: File,
        party: Party,
        run: u32,
        t0: Instant,
    ) {
        let events = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let at = t0.elapsed();
                let _ = writeln!(log, "{line}");
                // Lines that are no event (a panic message, say) stay in the log only.
                if let Ok(event) = serde_json::from_str::<NodeEvent>(&line) {
                    events.push(at, party, run, Reported::Node(event));
                }
            }
        });
    }

    pub(super) fn push(&self, at: Duration, party: Party, run: u32, event: Reported) {
        let mut all = self.0.lock().expect("events lock");
        let index = all.partition_point(|e| e.at <= at);
        all.insert(
            index,
            Seen {
                at,
                party,
                run,
                event,
            },
        );
    }

    /// Whether `party`'s process `run` reported a node event that `matches`.
    pub(super) fn any(&self, party: Party, run: u32, matches: impl Fn(&NodeEvent) -> bool) -> bool {
        self.0.lock().expect("events lock").iter().any(|e| {
            e.party == party && e.run == run && matches!(&e.event, Reported::Node(n) if matches(n))
        })
    }

    pub(super) fn all(&self) -> Vec<Seen> {
        self.0.lock().expect("events lock").clone()
    }
}

/// The steps that have messages, each with its messages in order: what the sequence diagram
/// shows, one note per step.
pub(crate) fn diagram_steps<'a>(
    steps: &'a [Step],
    messages: &'a [Msg],
) -> Vec<(&'a Step, Vec<&'a Msg>)> {
    steps
        .iter()
        .filter_map(|step| {
            let msgs: Vec<&Msg> = messages.iter().filter(|m| m.step == step.n).collect();
            (!msgs.is_empty()).then_some((step, msgs))
        })
        .collect()
}

/// The mermaid sequence diagram of the messages, one note per step.
pub(crate) fn mermaid(steps: &[Step], messages: &[Msg]) -> String {
    let mut out = String::from("sequenceDiagram\n");
    for (name, label) in PARTICIPANTS {
        out.push_str(&format!("    participant {name} as {label}\n"));
    }
    let (first, last) = (PARTICIPANTS[0].0, PARTICIPANTS[PARTICIPANTS.len() - 1].0);
    for (step, msgs) in diagram_steps(steps, messages) {
        out.push_str(&format!(
            "    Note over {first},{last}: {}. {}\n",
            step.n,
            step.title.replace(';', ",")
        ));
        for m in msgs {
            out.push_str(&format!(
                "    {}->>{}: {}\n",
                m.from,
                m.to,
                m.what.replace(';', ",")
            ));
        }
    }
    out
}

impl Transcript {
    /// Whether every check the demo made on its outcome passed.
    pub fn ok(&self) -> bool {
        self.ok
    }

    /// The summary `asyncpay demo` prints without `--json`: the outcome, tables of the
    /// balances, transactions, steps and checks, the total time and the mermaid diagram.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let t = self;
        let mut out = String::new();
        let outcome = if t.status["lsp"] == "cancelled" {
            format!(
                "A's payment of {} sat to B was cancelled before a sale: nothing moved",
                t.amount_sat
            )
        } else {
            format!(
                "A paid B {} sat through S (fee {} sat)",
                t.amount_sat, t.fee_sat
            )
        };
        let _ = writeln!(out, "\n{outcome}; payment {}\n", t.payment_id);
        let _ = writeln!(
            out,
            "| channel | party | before (sat) | after (sat) | change |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|");
        for b in &t.balances {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:+} |",
                b.channel, b.party, b.before_sat, b.after_sat, b.change_sat
            );
        }
        let _ = writeln!(out, "\n| transaction | txid | confirmed at |");
        let _ = writeln!(out, "|---|---|---:|");
        for tx in &t.txids {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                tx.what,
                tx.txid,
                tx.confirmed_at
                    .map(|h| h.to_string())
                    .unwrap_or_else(|| "-".into())
            );
        }
        let _ = writeln!(out, "\n| step | what | took (ms) |");
        let _ = writeln!(out, "|---:|---|---:|");
        for s in &t.steps {
            let _ = writeln!(out, "| {} | {} | {} |", s.n, s.title, s.duration_ms);
        }
        let _ = writeln!(out, "\n| check | expected | actual | |");
        let _ = writeln!(out, "|---|---|---|---|");
        for c in &t.checks {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                c.what,
                c.expected,
                c.actual,
                if c.ok { "ok" } else { "FAILED" }
            );
        }
        let _ = writeln!(out, "\ntotal {:.1} s\n", t.total_ms as f64 / 1000.0);
        let _ = writeln!(out, "```mermaid\n{}```", t.mermaid);
        out
    }
}
