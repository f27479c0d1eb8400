//! A node's seed is written down as a 24-word BIP39 mnemonic (`asyncpay node mnemonic`) and
//! restored from it into an empty data directory (`asyncpay node restore`, words on standard
//! input): the restored node has the same node key and the same wallet descriptors, which a
//! running node also answers (public ones only) on its control API. A wrong word, a short
//! mnemonic and a restore over an existing seed are refused.

mod node_process_support;

use std::io::Write as _;
use std::process::{Command, Stdio};

use node_process_support::{FakeElectrum, Node};
use serde_json::{json, Value};

fn asyncpay(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("asyncpay runs");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    let out = child.wait_with_output().expect("asyncpay ends");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn descriptors(dir: &std::path::Path, private: bool) -> Value {
    let dir = dir.to_str().expect("utf-8 path");
    let mut args = vec!["node", "descriptors", "--data-dir", dir];
    if private {
        args.push("--private");
    }
    let (ok, out, err) = asyncpay(&args, None);
    assert!(ok, "{err}");
    serde_json::from_str(&out).expect("json")
}

#[test]
fn a_node_restored_from_its_mnemonic_is_the_same_node_with_the_same_wallet() {
    let root = tempfile::tempdir().expect("tempdir");
    let (original, restored) = (root.path().join("original"), root.path().join("restored"));
    let original_dir = original.to_str().expect("utf-8");

    let (ok, words, err) = asyncpay(&["node", "mnemonic", "--data-dir", original_dir], None);
    assert!(ok, "{err}");
    assert_eq!(words.split(' ').count(), 24, "{words}");
    assert!(
        err.contains("controls"),
        "a warning goes with the words: {err}"
    );

    // Refusals: a changed word (the checksum fails), 12 words, an existing seed.
    let mut changed: Vec<&str> = words.split(' ').collect();
    changed[3] = if changed[3] == "zoo" {
        "abandon"
    } else {
        "zoo"
    };
    let twelve = words.split(' ').take(12).collect::<Vec<_>>().join(" ");
    for (bad, why) in [(changed.join(" "), "a changed word"), (twelve, "12 words")] {
        let dir = root.path().join("bad");
        let (ok, _, err) = asyncpay(
            &[
                "node",
                "restore",
                "--data-dir",
                dir.to_str().expect("utf-8"),
            ],
            Some(&bad),
        );
        assert!(!ok, "{why} is refused");
        assert!(err.contains("mnemonic"), "{why}: {err}");
        assert!(!dir.join("seed").exists(), "{why}: nothing written");
    }
    let (ok, _, err) = asyncpay(
        &["node", "restore", "--data-dir", original_dir],
        Some(&words),
    );
    assert!(!ok && err.contains("overwrite"), "{err}");

    // The restore: same seed, same node key, same descriptors.
    let (ok, out, err) = asyncpay(
        &[
            "node",
            "restore",
            "--data-dir",
            restored.to_str().expect("utf-8"),
        ],
        Some(&format!("  {words}\n")),
    );
    assert!(ok, "{err}");
    let restored_answer: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        std::fs::read_to_string(original.join("seed")).expect("seed"),
        std::fs::read_to_string(restored.join("seed")).expect("seed")
    );
    for private in [false, true] {
        assert_eq!(
            descriptors(&original, private),
            descriptors(&restored, private)
        );
    }
    let public = descriptors(&original, false);
    let private = descriptors(&original, true);
    for (kind, text) in [("public", &public), ("private", &private)] {
        let ext = text["external"].as_str().expect("external");
        assert!(ext.starts_with("tr(") && ext.contains('#'), "{kind}: {ext}");
    }
    assert!(public["external"].as_str().unwrap().contains("tpub"));
    assert!(
        !public.to_string().contains("tprv"),
        "no private key in {public}"
    );
    assert!(private["external"].as_str().unwrap().contains("tprv"));

    // The running node answers its public descriptors (never the private ones) and has the
    // restored key.
    let electrum = FakeElectrum::start();
    let node = Node::start(&electrum, &restored, "payee", &[]);
    assert_eq!(restored_answer["node_key"], node.key().to_string());
    let (ok, out, err) = node.ctl("descriptors", &json!({}));
    assert!(ok, "{err}");
    let answered: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(answered, public);

    // The restored node's store has no record of the receipt slots the original spent: it
    // took a new card epoch at random, and its card lists slots of that epoch only (a letter
    // naming a slot of the original's cards is refused, so no slot signs twice).
    let epoch = restored_answer["receipt_epoch"].as_u64().expect("an epoch");
    assert_ne!(epoch, 0, "the original's epoch is 0");
    let (ok, out, err) = node.ctl("contact", &json!({}));
    assert!(ok, "{err}");
    let card: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(card["version"], 2, "{card}");
    assert_eq!(card["receipts"]["epoch"].as_u64(), Some(epoch), "{card}");
    // `node new-receipt-epoch` gives it another one (after restoring a copy of the files).
    drop(node);
    let (ok, out, err) = asyncpay(
        &[
            "node",
            "new-receipt-epoch",
            "--data-dir",
            restored.to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(ok, "{err}");
    let renewed: Value = serde_json::from_str(&out).expect("json");
    assert_ne!(renewed["receipt_epoch"].as_u64(), Some(epoch));
    let (ok, _, err) = asyncpay(
        &[
            "node",
            "new-receipt-epoch",
            "--data-dir",
            "/nonexistent/dir",
        ],
        None,
    );
    assert!(
        !ok && err.contains("seed"),
        "a directory without a seed: {err}"
    );
}
