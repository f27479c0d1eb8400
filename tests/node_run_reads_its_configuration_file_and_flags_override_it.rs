//! `asyncpay --config FILE node run` takes its settings from the file's `[node]` table: a node
//! started with no flag at all runs with the file's role, data directory, Electrum server and
//! mailbox. A flag given beside the file wins over it, and `ASYNCPAY_CONFIG` names the file
//! as `--config` does. A key that names no flag, or a table no command has, stops the command
//! with an error that names it; without any file, `node run` still requires its flags.
mod node_process_support;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use node_process_support::FakeElectrum;
use serde_json::Value;

fn config(dir: &Path, electrum: &FakeElectrum, extra: &str) -> std::path::PathBuf {
    let path = dir.with_extension("toml");
    let text = format!(
        "[node]\nrole = \"payee\"\ndata-dir = {:?}\nelectrum = {:?}\n\
         mailbox = \"http://127.0.0.1:9\"\nlisten = \"127.0.0.1:0\"\n{extra}",
        dir.display().to_string(),
        electrum.url
    );
    std::fs::write(&path, text).expect("write the config");
    path
}

/// Waits for the node of `child` to write its `node.json` in `dir`; returns it.
fn started(child: &mut Child, dir: &Path) -> Value {
    let begun = Instant::now();
    loop {
        let info = std::fs::read_to_string(dir.join("node.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .filter(|v| v["pid"].as_u64() == Some(u64::from(child.id())));
        if let Some(info) = info {
            return info;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the node exited with {status}");
        }
        assert!(
            begun.elapsed() < Duration::from_secs(60),
            "the node did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn(args: &[&str], env: Option<&Path>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_asyncpay"));
    command
        .args(args)
        .env_remove("ASYNCPAY_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(path) = env {
        command.env("ASYNCPAY_CONFIG", path);
    }
    command.spawn().expect("asyncpay runs")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .args(args)
        .env_remove("ASYNCPAY_CONFIG")
        .output()
        .expect("asyncpay runs")
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn node_run_reads_its_configuration_file_and_flags_override_it() {
    let electrum = FakeElectrum::start();
    let root = tempfile::tempdir().expect("tempdir");

    // Everything from the file.
    let dir = root.path().join("from-file");
    let file = config(&dir, &electrum, "");
    let file_arg = file.to_str().expect("utf-8 path");
    let mut child = spawn(&["--config", file_arg, "node", "run"], None);
    let info = started(&mut child, &dir);
    assert_eq!(info["role"], "payee", "the file's role");
    stop(child);

    // A flag wins over the file; the file named by ASYNCPAY_CONFIG, `--config=` style too.
    let other = root.path().join("flag-wins");
    let other_arg = other.to_str().expect("utf-8 path");
    let mut child = spawn(
        &["node", "run", "--role", "lsp", "--data-dir", other_arg],
        Some(&file),
    );
    // Its node.json, with its pid, is in the flag's data directory.
    let info = started(&mut child, &other);
    assert_eq!(info["role"], "lsp", "the flag's role");
    stop(child);
    let equals = format!("--config={file_arg}");
    let mut child = spawn(&[&equals, "node", "run", "--role", "payer"], None);
    assert_eq!(started(&mut child, &dir)["role"], "payer");
    stop(child);

    // Mistakes are named, not ignored.
    for (extra, named) in [
        ("shared_dely = 12\n", "shared-dely"),
        ("[mailbx]\nlisten = \"127.0.0.1:0\"\n", "[mailbx]"),
        ("ptlc-delta = 1.5\n", "ptlc-delta"),
    ] {
        let bad = config(&root.path().join("bad"), &electrum, extra);
        let out = run(&["--config", bad.to_str().expect("utf-8"), "node", "run"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} is refused");
        assert!(stderr.contains(named), "{extra:?}: {stderr}");
    }
    let missing = run(&["--config", "/nonexistent/asyncpay.toml", "node", "run"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/asyncpay.toml"));

    // Without a file, the flags are required as before.
    let bare = run(&["node", "run"]);
    assert!(!bare.status.success());
    assert!(String::from_utf8_lossy(&bare.stderr).contains("--role"));
}
