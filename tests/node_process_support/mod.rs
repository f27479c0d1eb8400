//! Real `asyncpay node run` processes, for tests that attack a node from outside: its peer
//! port, its control API, its data directory. None of them needs a chain: the node's wallet
//! syncs from [`FakeElectrum`], an Electrum server that knows only the regtest genesis block.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use asyncpay::crypto::keys::PublicKey;
use serde_json::{json, Value};

/// An Electrum server on a free loopback port whose chain is the regtest genesis block and
/// whose scripts have no history: enough for a node to start, sync an empty wallet and poll.
pub struct FakeElectrum {
    pub url: String,
}

impl FakeElectrum {
    pub fn start() -> FakeElectrum {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("tcp://{}", listener.local_addr().expect("addr"));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || serve_electrum(stream));
            }
        });
        FakeElectrum { url }
    }
}

fn serve_electrum(stream: std::net::TcpStream) {
    let genesis = bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Regtest);
    let header = bitcoin::consensus::encode::serialize_hex(&genesis.header);
    let answer = |request: &Value| -> Value {
        let id = request["id"].clone();
        let result = match request["method"].as_str().unwrap_or("") {
            "server.version" => json!(["fake-electrum", "1.4"]),
            "server.ping" | "blockchain.scripthash.subscribe" => Value::Null,
            "blockchain.headers.subscribe" => json!({"height": 0, "hex": header}),
            "blockchain.block.header" => json!(header),
            "blockchain.block.headers" => json!({"count": 1, "hex": header, "max": 2016}),
            "blockchain.scripthash.get_history" | "blockchain.scripthash.listunspent" => json!([]),
            "blockchain.estimatefee" => json!(0.0001),
            "blockchain.relayfee" => json!(0.00001),
            other => {
                return json!({"jsonrpc": "2.0", "id": id,
                    "error": {"code": -32601, "message": format!("fake electrum: no {other}")}})
            }
        };
        json!({"jsonrpc": "2.0", "id": id, "result": result})
    };
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        let Ok(request) = serde_json::from_str::<Value>(&line) else {
            return;
        };
        let reply = match &request {
            Value::Array(batch) => Value::Array(batch.iter().map(answer).collect()),
            single => answer(single),
        };
        if writeln!(writer, "{reply}").is_err() {
            return;
        }
    }
}

/// A running node process.
pub struct Node {
    pub child: Child,
    pub dir: PathBuf,
    pub info: Value,
    pub log: PathBuf,
}

impl Node {
    /// Starts `asyncpay node run --role ROLE` in `dir` with `extra` arguments and waits
    /// until it has written its `node.json`.
    pub fn start(electrum: &FakeElectrum, dir: &Path, role: &str, extra: &[&str]) -> Node {
        std::fs::create_dir_all(dir.parent().expect("parent")).expect("parent dir");
        let log = dir.with_extension("log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
            .args(["node", "run", "--role", role, "--data-dir"])
            .arg(dir)
            .args(["--electrum", &electrum.url])
            // No mailbox is used by these tests; nothing listens there.
            .args(["--mailbox", "http://127.0.0.1:9"])
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("node starts");
        let pid = child.id();
        let start = Instant::now();
        let info = loop {
            let info = std::fs::read_to_string(dir.join("node.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .filter(|v| v["pid"].as_u64() == Some(u64::from(pid)));
            if let Some(info) = info {
                break info;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "node did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Node {
            child,
            dir: dir.to_owned(),
            info,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn key(&self) -> PublicKey {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(
            self.info["node_key"].as_str().expect("node_key"),
            &mut bytes,
        )
        .expect("hex key");
        PublicKey::from_xonly_bytes(bytes).expect("key")
    }

    pub fn peer_addr(&self) -> std::net::SocketAddr {
        self.info["peer_addr"]
            .as_str()
            .expect("peer_addr")
            .parse()
            .expect("address")
    }

    pub fn control_url(&self) -> String {
        self.info["control_url"]
            .as_str()
            .expect("control_url")
            .to_owned()
    }

    /// `asyncpay ctl --data-dir DIR raw COMMAND ARGS`: exit success, stdout, stderr.
    pub fn ctl(&self, command: &str, args: &Value) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
            .args(["ctl", "--data-dir"])
            .arg(&self.dir)
            .arg("raw")
            .arg(command)
            .arg(args.to_string())
            .output()
            .expect("ctl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Open file descriptors of the process.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// The JSON events the node logged on stderr so far.
    pub fn logged(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `probe` every 20 ms until it returns `Some`, at most `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
