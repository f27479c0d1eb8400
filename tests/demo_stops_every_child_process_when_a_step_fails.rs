//! A demo that fails half-way (A asks to pay more than its channel holds, so the payment never
//! gets to "posted") exits with an error naming the step and leaves no mailbox or node process
//! running.

use std::process::Command;

#[test]
fn demo_stops_every_child_process_when_a_step_fails() {
    let output = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .args([
            "demo",
            "--json",
            "--amount-sat",
            "5000000",
            "--timeout-secs",
            "10",
        ])
        .output()
        .expect("run asyncpay demo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "an unpayable amount must fail:\n{stderr}"
    );
    assert!(output.stdout.is_empty(), "no transcript on failure");
    // The node refuses the payment outright, or accepts it and never gets it posted.
    assert!(
        stderr.contains("/v1/pay") || stderr.contains("payment status posted"),
        "the error names the step:\n{stderr}"
    );

    // The narration names the run's directory and every child's pid; no process of the run
    // (one that names the directory on its command line) may outlive the demo.
    let dir = stderr
        .lines()
        .find_map(|line| line.trim().strip_prefix("work directory "))
        .unwrap_or_else(|| panic!("no work directory in:\n{stderr}"))
        .to_string();
    assert!(
        !std::path::Path::new(&dir).exists(),
        "{dir} was not removed"
    );
    let pids: Vec<u32> = stderr
        .lines()
        .filter_map(|line| {
            let rest = line.split(" pid ").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect();
    assert_eq!(pids.len(), 4, "mailbox and three nodes started:\n{stderr}");
    for pid in pids {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .map(|c| c.contains(&dir))
            .unwrap_or(false);
        assert!(!alive, "process {pid} outlived the demo");
    }
}
