//! The CLI as a node would use it: keygen, contact, send, fetch and ack with `--json`,
//! against a server started with `asyncpay mailbox serve`.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn asyncpay(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .args(args)
        .output()
        .expect("binary runs");
    assert!(
        out.status.success(),
        "asyncpay {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json output")
}

#[test]
fn cli_send_fetch_ack_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .args([
            "mailbox",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--json",
            "--data-dir",
        ])
        .arg(&data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = serde_json::from_str::<serde_json::Value>(&line).unwrap()["listening"]
        .as_str()
        .unwrap()
        .to_owned();

    let payer_key = dir.path().join("payer.key");
    let payee_key = dir.path().join("payee.key");
    let p = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let payer = asyncpay(&["mailbox", "keygen", "--out", &p(&payer_key), "--json"]);
    asyncpay(&["mailbox", "keygen", "--out", &p(&payee_key), "--json"]);
    let contact = asyncpay(&["mailbox", "contact", "--key", &p(&payee_key), "--url", &url]);
    let contact_file = dir.path().join("payee.contact.json");
    std::fs::write(&contact_file, contact.to_string()).unwrap();

    let sent = asyncpay(&[
        "mailbox",
        "send",
        "--to-contact",
        &p(&contact_file),
        "--from",
        &p(&payer_key),
        "--message",
        "hello payee",
        "--json",
    ]);
    let id = sent["id"].as_str().unwrap().to_owned();
    assert_eq!(sent["duplicate"], false);

    let fetched = asyncpay(&[
        "mailbox",
        "fetch",
        "--server",
        &url,
        "--key",
        &p(&payee_key),
        "--json",
    ]);
    let messages = fetched["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["id"], id.as_str());
    assert_eq!(messages[0]["payload_text"], "hello payee");
    assert_eq!(messages[0]["sender"], payer["node_key"]);

    let acked = asyncpay(&[
        "mailbox",
        "ack",
        "--server",
        &url,
        "--key",
        &p(&payee_key),
        &id,
        "--json",
    ]);
    assert_eq!(acked["deleted"], 1);
    let fetched = asyncpay(&[
        "mailbox",
        "fetch",
        "--server",
        &url,
        "--key",
        &p(&payee_key),
        "--json",
    ]);
    assert!(fetched["messages"].as_array().unwrap().is_empty());

    // SIGTERM: the server shuts down gracefully and exits cleanly.
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    let status = server.wait().unwrap();
    assert!(status.success(), "graceful exit, got {status:?}");
}
