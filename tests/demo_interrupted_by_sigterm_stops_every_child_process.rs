//! A demo told to stop with SIGTERM while its nodes run (as `kill` or a CI timeout would)
//! exits with an error, removes its work directory and leaves no mailbox, watchtower or
//! node process of its run behind.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn demo_interrupted_by_sigterm_stops_every_child_process() {
    let mut demo = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .args(["demo", "--json", "--timeout-secs", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run asyncpay demo");
    let stderr = demo.stderr.take().expect("stderr is piped");
    // Read the narration until the three nodes have started, then keep draining it.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = vec![];
    let started = Instant::now();
    let mut nodes = 0;
    while nodes < 3 {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("the demo never started its nodes:\n{}", lines.join("\n")));
        if line.contains(" pid ") && line.contains("peers at") {
            nodes += 1;
        }
        lines.push(line);
        assert!(started.elapsed() < Duration::from_secs(180), "too slow");
    }
    let status = Command::new("kill")
        .args(["-TERM", &demo.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let waited = Instant::now();
    let exit = loop {
        if let Some(exit) = demo.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "the demo did not stop within 60 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
        lines.push(line);
    }
    let text = lines.join("\n");
    assert!(!exit.success(), "an interrupted demo fails:\n{text}");
    assert!(text.contains("SIGTERM"), "it says why:\n{text}");

    let dir = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("work directory "))
        .unwrap_or_else(|| panic!("no work directory in:\n{text}"))
        .to_string();
    assert!(
        !std::path::Path::new(&dir).exists(),
        "{dir} was not removed"
    );
    let pids: Vec<u32> = text
        .lines()
        .filter_map(|line| {
            let rest = line.split(" pid ").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect();
    assert!(pids.len() >= 4, "mailbox and three nodes started:\n{text}");
    for pid in pids {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .map(|c| c.contains(&dir))
            .unwrap_or(false);
        assert!(!alive, "process {pid} outlived the demo");
    }
}
