//! A node's data directory is 0700 and every file holding secrets 0600 (`node.db` with its
//! WAL and SHM files, `wallet.sqlite`, `seed`, `control.token`, the log `node.log`, which holds
//! the node's events); the control API refuses a request without the right token before it
//! reads the body; `ctl info` shows no secret.
mod node_process_support;

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use node_process_support::*;
use serde_json::json;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn files_are_private_and_the_token_is_checked_first() {
    let electrum = FakeElectrum::start();
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("payer");
    let node = Node::start(&electrum, &dir, "payer", &[]);

    assert_eq!(mode(&dir), 0o700, "data directory");
    let mut report = vec![format!("dir {:o}", mode(&dir))];
    for file in [
        "node.db",
        "node.db-wal",
        "node.db-shm",
        "wallet.sqlite",
        "seed",
        "receipt-epoch",
        "control.token",
        "node.json",
        "node.log",
    ] {
        let path = dir.join(file);
        if !path.exists() && (file.ends_with("-wal") || file.ends_with("-shm")) {
            continue;
        }
        assert_eq!(mode(&path), 0o600, "{file}");
        report.push(format!("{file} {:o}", mode(&path)));
    }
    println!("NODE_FILES {}", report.join(", "));
    // The node logs what it reports through `tracing` into its log file.
    let log = std::fs::read_to_string(dir.join("node.log")).expect("node.log");
    assert!(
        log.contains("\"event\":\"ready\""),
        "the log holds the node's events: {log}"
    );

    // Without the right token: refused at once. The request announces a 4 MiB body and
    // sends none of it; the answer comes all the same, so the body was never waited for.
    let control: std::net::SocketAddr = node
        .control_url()
        .trim_start_matches("http://")
        .parse()
        .expect("control address");
    for auth in [
        "",
        "Authorization: Bearer wrong\r\n",
        "Authorization: Bearer \r\n",
    ] {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(control).expect("control connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        write!(
            stream,
            "POST /v1/info HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\n{auth}Content-Length: 4194304\r\n\r\n"
        )
        .expect("request head");
        let mut answer = [0u8; 12];
        stream
            .read_exact(&mut answer)
            .expect("an answer without the body");
        assert_eq!(&answer, b"HTTP/1.1 401", "{auth:?}");
    }
    println!("NODE_FILES control API answered 401 to 3 unauthorised requests without reading their bodies");

    let (ok, info, err) = node.ctl("info", &json!({}));
    assert!(ok, "{err}");
    let info: serde_json::Value = serde_json::from_str(&info).expect("json");
    assert!(info["payments"].is_array(), "{info}");
    let seed = std::fs::read_to_string(dir.join("seed")).expect("seed");
    let token = std::fs::read_to_string(dir.join("control.token")).expect("token");
    let text = info.to_string();
    assert!(!text.contains(seed.trim()) && !text.contains(token.trim()));
}
