//! An attacker on one address opens more connections to the real mailbox server
//! (`asyncpay mailbox serve`) than its per-address cap, each holding a partial request:
//! those beyond the cap are closed at once, the held ones are closed by the server when its
//! header timeout ends, one that stalls in its body is closed after the body timeout, and
//! all the while a legitimate client on another address gets its health checks and a
//! `mailbox send` answered within a second. Descriptors and memory stay bounded and come
//! back afterwards.
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const PER_IP: usize = 32;
const ATTACK: usize = 100;
const HEADER_TIMEOUT: Duration = Duration::from_millis(2_000);
const BODY_TIMEOUT: Duration = Duration::from_millis(2_000);

struct Server {
    child: Child,
    url: String,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path) -> Server {
    start_with(dir, 256)
}

fn start_with(dir: &std::path::Path, max_connections: usize) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .args(["mailbox", "serve", "--listen", "127.0.0.1:0", "--json"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--max-connections", &max_connections.to_string()])
        .args(["--max-connections-per-ip", &PER_IP.to_string()])
        .args([
            "--header-timeout-ms",
            &HEADER_TIMEOUT.as_millis().to_string(),
        ])
        .args(["--body-timeout-ms", &BODY_TIMEOUT.as_millis().to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let url = serde_json::from_str::<serde_json::Value>(&line).expect("json")["listening"]
        .as_str()
        .expect("url")
        .to_owned();
    let addr = url.trim_start_matches("http://").parse().expect("address");
    Server { child, url, addr }
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A connection from `source` (another loopback address than the legitimate client's).
async fn from(source: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(to).await
}

/// Waits until the server closes `stream` (or 15 s pass); returns when, after `start`.
async fn closed_after(mut stream: TcpStream, start: Instant) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    let deadline = Duration::from_secs(15);
    loop {
        match tokio::time::timeout(
            deadline.saturating_sub(start.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            // hyper may answer a timed-out request before it closes; keep reading to the end.
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

fn asyncpay(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .args(args)
        .output()
        .expect("binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_caps_are_refused_and_held_ones_time_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let pid = server.child.id();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    // Warm up: the first request creates the store's read connections.
    let health = format!("{}/v1/health", server.url);
    assert!(http
        .get(&health)
        .send()
        .await
        .expect("health")
        .status()
        .is_success());
    let fds_start = fds(pid);
    let rss_start = rss_kib(pid);

    // A payee contact and a payer key for the legitimate `mailbox send`.
    let p = |p: &std::path::Path| p.to_str().expect("utf-8 path").to_owned();
    let payer_key = dir.path().join("payer.key");
    let payee_key = dir.path().join("payee.key");
    assert!(asyncpay(&["mailbox", "keygen", "--out", &p(&payer_key), "--json"]).0);
    assert!(asyncpay(&["mailbox", "keygen", "--out", &p(&payee_key), "--json"]).0);
    let contact = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .args([
            "mailbox",
            "contact",
            "--key",
            &p(&payee_key),
            "--url",
            &server.url,
        ])
        .output()
        .expect("contact");
    let contact_file = dir.path().join("payee.contact.json");
    std::fs::write(&contact_file, &contact.stdout).expect("write contact");

    // The attack: ATTACK connections from 127.0.0.2, each with half a request line and
    // headers; and one from 127.0.0.3 that sends its headers and stalls in its body.
    let attack_start = Instant::now();
    let mut watchers = Vec::new();
    for _ in 0..ATTACK {
        let mut stream = from([127, 0, 0, 2], server.addr).await.expect("connect");
        // A refused connection may already be closed; the write then fails, which is fine.
        let _ = stream
            .write_all(b"POST /v1/messages HTTP/1.1\r\nHost: mailbox\r\nX-Partial: ")
            .await;
        watchers.push(tokio::spawn(closed_after(stream, attack_start)));
    }
    let mut stalled = from([127, 0, 0, 3], server.addr).await.expect("connect");
    stalled
        .write_all(
            b"POST /v1/messages HTTP/1.1\r\nHost: mailbox\r\nContent-Length: 1000\r\n\r\npartial",
        )
        .await
        .expect("headers sent");
    let stalled_start = Instant::now();
    let stalled = tokio::spawn(closed_after(stalled, stalled_start));

    // Throughout the hold: the legitimate client (127.0.0.1) is served within a second.
    let mut health_times = Vec::new();
    let mut send_time = None;
    let mut fds_during = 0;
    while attack_start.elapsed() < HEADER_TIMEOUT - Duration::from_millis(300) {
        fds_during = fds_during.max(fds(pid));
        let t = Instant::now();
        let answer = http
            .get(&health)
            .send()
            .await
            .expect("health during the attack");
        assert!(answer.status().is_success());
        health_times.push(t.elapsed());
        if send_time.is_none() {
            let t = Instant::now();
            let contact_path = p(&contact_file);
            let payer_path = p(&payer_key);
            let (ok, err) = tokio::task::spawn_blocking(move || {
                asyncpay(&[
                    "mailbox",
                    "send",
                    "--to-contact",
                    &contact_path,
                    "--from",
                    &payer_path,
                    "--message",
                    "still served",
                    "--json",
                ])
            })
            .await
            .expect("send task");
            assert!(ok, "mailbox send during the attack failed: {err}");
            send_time = Some(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_during = rss_kib(pid);

    let mut refused = 0;
    let mut held = Vec::new();
    for watcher in watchers {
        let closed = watcher
            .await
            .expect("watcher")
            .expect("the server closes every attacking connection within 15 s");
        if closed < HEADER_TIMEOUT / 2 {
            refused += 1;
        } else {
            held.push(closed);
        }
    }
    let stalled_closed = stalled
        .await
        .expect("watcher")
        .expect("the server closes a stalled body");
    let health_max = health_times.iter().max().copied().unwrap_or_default();
    let send_time = send_time.expect("a send was made during the attack");

    // The server's descriptors and memory come back once the attack is over.
    let settle = Instant::now();
    while fds(pid) > fds_start + 2 && settle.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fds_end = fds(pid);
    let rss_end = rss_kib(pid);

    println!(
        "MAILBOX_CAPS per-address cap {PER_IP}, attacking connections {ATTACK}: refused at once {refused}, held {}",
        held.len()
    );
    println!(
        "MAILBOX_CAPS held connections closed after {:?}..{:?} (header timeout {HEADER_TIMEOUT:?})",
        held.iter().min().copied().unwrap_or_default(),
        held.iter().max().copied().unwrap_or_default()
    );
    println!(
        "MAILBOX_CAPS stalled body closed after {stalled_closed:?} (body timeout {BODY_TIMEOUT:?})"
    );
    println!(
        "MAILBOX_CAPS during the attack: {} health checks, slowest {health_max:?}; mailbox send (a process) {send_time:?}",
        health_times.len()
    );
    println!(
        "MAILBOX_CAPS descriptors: start {fds_start}, most during {fds_during}, end {fds_end}; RSS KiB: start {rss_start}, during {rss_during}, end {rss_end}"
    );

    assert_eq!(held.len(), PER_IP, "exactly the per-address cap is held");
    assert_eq!(refused, ATTACK - PER_IP);
    for closed in &held {
        assert!(
            *closed >= HEADER_TIMEOUT - Duration::from_millis(200)
                && *closed <= HEADER_TIMEOUT + Duration::from_secs(3),
            "held connection closed after {closed:?}"
        );
    }
    assert!(
        stalled_closed >= BODY_TIMEOUT - Duration::from_millis(200)
            && stalled_closed <= BODY_TIMEOUT + Duration::from_secs(3),
        "stalled body closed after {stalled_closed:?}"
    );
    assert!(health_max < Duration::from_secs(1), "{health_max:?}");
    assert!(send_time < Duration::from_secs(1), "{send_time:?}");
    assert!(
        fds_during <= fds_start + PER_IP + 8,
        "{fds_during} descriptors"
    );
    assert!(fds_end <= fds_start + 2, "{fds_end} descriptors");
    assert!(
        rss_end <= rss_start + 16 * 1024,
        "RSS {rss_start} -> {rss_end} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_total_cap_the_oldest_idle_connections_make_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_with(dir.path(), 40);
    let start = Instant::now();
    // 32 from one address (its cap) and 20 from another, all holding half a request: 52
    // for a total cap of 40, so the 12 oldest are dropped as the newest arrive.
    let mut watchers = Vec::new();
    for i in 0..52 {
        let source = if i < 32 {
            [127, 0, 0, 2]
        } else {
            [127, 0, 0, 3]
        };
        let mut stream = from(source, server.addr).await.expect("connect");
        let _ = stream
            .write_all(b"GET /v1/health HTTP/1.1\r\nHost: m")
            .await;
        watchers.push(tokio::spawn(closed_after(stream, start)));
    }
    // With the cap full of held connections, a legitimate client still gets in: the oldest
    // held one makes room.
    let http = reqwest::Client::new();
    let t = Instant::now();
    let answer = http
        .get(format!("{}/v1/health", server.url))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("health check with the cap full");
    assert!(answer.status().is_success());
    let health = t.elapsed();
    let mut dropped = 0;
    let mut held = 0;
    for watcher in watchers {
        let closed = watcher.await.expect("watcher").expect("closed within 15 s");
        if closed < HEADER_TIMEOUT / 2 {
            dropped += 1;
        } else {
            held += 1;
        }
    }
    println!(
        "MAILBOX_CAPS total cap 40, 52 held connections from two addresses: {dropped} oldest dropped, {held} held to the header timeout; a health check meanwhile took {health:?}"
    );
    assert_eq!(
        dropped, 13,
        "12 for the attack's own connections, 1 for the health check"
    );
    assert_eq!(held, 39);
    assert!(health < Duration::from_secs(1), "{health:?}");
}
