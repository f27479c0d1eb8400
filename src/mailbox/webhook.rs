//! Webhooks: which URLs a mailbox server calls, and how a receiver knows a call came from
//! that server.
//!
//! **Targets.** A registered webhook must not make the server reach into its own host or
//! network (server-side request forgery).
//!
//! A webhook URL must be `https` and its host must resolve only to public addresses:
//! loopback, private (RFC 1918), carrier-grade NAT, link-local (the cloud metadata address
//! `169.254.169.254` among them), unique-local, unspecified, multicast, broadcast and
//! documentation addresses are refused, also when written as a decimal integer
//! (`2130706433`), an IPv4-mapped IPv6 address or a name (`localhost`). The check runs when
//! the webhook is registered and again at every call, and the call goes to exactly the
//! addresses that call's check resolved (pinned), so a name that resolves elsewhere later
//! (DNS rebinding) is caught. Redirects are never followed.
//!
//! ```
//! use std::net::IpAddr;
//! use asyncpay::mailbox::webhook::is_public;
//!
//! assert!(!is_public("127.0.0.1".parse::<IpAddr>().unwrap()));
//! assert!(!is_public("169.254.169.254".parse::<IpAddr>().unwrap()));
//! assert!(!is_public("::ffff:10.0.0.1".parse::<IpAddr>().unwrap()));
//! assert!(!is_public("fd00::1".parse::<IpAddr>().unwrap()));
//! assert!(is_public("93.184.215.14".parse::<IpAddr>().unwrap()));
//! ```
//!
//! **Signed calls.** The server holds a long-term [`ServerKey`] (BIP340, in
//! `DATA_DIR/server-key`) and signs every call: the [`TIMESTAMP_HEADER`] carries the unix
//! time of the call in decimal, the [`SIGNATURE_HEADER`] a BIP340 signature, hex, over
//! [`call_digest`]`(timestamp, body)` = `tagged_hash("asyncpay/mailbox/v1/webhook-call",
//! timestamp(u64 big-endian) ‖ body)`, where `body` is the exact bytes of the request body.
//! A receiver that pinned the server's public key (`GET /v1/server-key`) checks a call with
//! [`verify_call`]:
//!
//! ```
//! use asyncpay::mailbox::webhook::{verify_call, ServerKey, WebhookCallError};
//!
//! let server = ServerKey::from_secret_bytes([3u8; 32])?;
//! let body = br#"{"event":"mailbox.message","mailbox":"ab.."}"#;
//! let call = server.sign_call(1_800_000_000, body);
//! // The receiver has the header values, the body and its pinned copy of the key.
//! let (timestamp, signature) = (call.timestamp_header(), call.signature_header());
//! let key = server.public_key();
//! verify_call(&key, &timestamp, body, &signature, 1_800_000_030, 300)?;
//! // A changed body, or the same call ten minutes later, is refused.
//! assert!(verify_call(&key, &timestamp, b"{}", &signature, 1_800_000_030, 300).is_err());
//! assert!(matches!(
//!     verify_call(&key, &timestamp, body, &signature, 1_800_000_600, 300),
//!     Err(WebhookCallError::Stale { .. })
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use crate::crypto::keys::{PublicKey, SecretKey, Signature};
use crate::crypto::tagged_hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What webhook targets a server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WebhookPolicy {
    /// Accept `http://` URLs (tests only: the notification then travels in clear).
    pub allow_http: bool,
    /// Accept hosts that resolve to loopback or private addresses (tests only).
    pub allow_private: bool,
}

/// Why a webhook URL is refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookUrlError {
    /// Not a URL.
    #[error("webhook url does not parse: {0}")]
    Malformed(#[from] url::ParseError),
    /// Longer than the server accepts.
    #[error("webhook url is longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// Not https (or http where the policy allows it).
    #[error("webhook url must be https, not {scheme}")]
    Scheme {
        /// The scheme given.
        scheme: String,
    },
    /// Credentials in the URL.
    #[error("webhook url must not carry a user name or password")]
    Credentials,
    /// No host.
    #[error("webhook url has no host")]
    NoHost,
    /// The host does not resolve.
    #[error("webhook host {host} does not resolve: {source}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// The host resolves to no address at all.
    #[error("webhook host {host} resolves to no address")]
    NoAddress {
        /// The host.
        host: String,
    },
    /// The host resolves to an address the server must not call.
    #[error("webhook host {host} resolves to {addr}, which is not a public address")]
    Forbidden {
        /// The host.
        host: String,
        /// The refused address.
        addr: IpAddr,
    },
}

/// A webhook URL that passed the checks, with the addresses it resolved to.
#[derive(Debug, Clone)]
pub struct CheckedTarget {
    /// The parsed URL.
    pub url: reqwest::Url,
    /// The host as written in the URL (a name, or an address literal).
    pub host: String,
    /// Every address the host resolved to; all passed the policy.
    pub addrs: Vec<SocketAddr>,
}

/// Whether `ip` is an address a server may call on behalf of an anonymous client.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            is_public_v6(v6)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        // "this network" 0.0.0.0/8
        || a == 0
        // carrier-grade NAT 100.64.0.0/10
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments 192.0.0.0/24
        || (a == 192 && b == 0 && c == 0)
        // benchmarking 198.18.0.0/15
        || (a == 198 && (b == 18 || b == 19))
        // reserved 240.0.0.0/4
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // unique local fc00::/7
        || (segments[0] & 0xfe00) == 0xfc00
        // link local fe80::/10
        || (segments[0] & 0xffc0) == 0xfe80
        // site local (deprecated) fec0::/10
        || (segments[0] & 0xffc0) == 0xfec0
        // documentation 2001:db8::/32
        || (segments[0] == 0x2001 && segments[1] == 0x0db8)
        // IPv4-compatible (deprecated) ::a.b.c.d and NAT64 64:ff9b::/96 embed IPv4 addresses
        || (segments[..6] == [0, 0, 0, 0, 0, 0])
        || (segments[0] == 0x64 && segments[1] == 0xff9b))
}

/// Parses `url` and checks its form against `policy` (no name resolution).
pub fn parse(
    url: &str,
    max_len: usize,
    policy: WebhookPolicy,
) -> Result<reqwest::Url, WebhookUrlError> {
    if url.len() > max_len {
        return Err(WebhookUrlError::TooLong { max: max_len });
    }
    let parsed = reqwest::Url::parse(url)?;
    match parsed.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        other => {
            return Err(WebhookUrlError::Scheme {
                scheme: other.to_owned(),
            })
        }
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(WebhookUrlError::Credentials);
    }
    if parsed.host().is_none() {
        return Err(WebhookUrlError::NoHost);
    }
    Ok(parsed)
}

/// Parses `url`, resolves its host and checks every address against `policy`.
///
/// The URL parser already turns `2130706433`, `0x7f.1` and the like into the addresses they
/// denote, so every spelling of an address is checked as that address.
pub async fn check(
    url: &str,
    max_len: usize,
    policy: WebhookPolicy,
) -> Result<CheckedTarget, WebhookUrlError> {
    let parsed = parse(url, max_len, policy)?;
    let port = parsed.port_or_known_default().unwrap_or(443);
    let (host, addrs): (String, Vec<SocketAddr>) = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => (ip.to_string(), vec![SocketAddr::new(ip.into(), port)]),
        Some(url::Host::Ipv6(ip)) => (ip.to_string(), vec![SocketAddr::new(ip.into(), port)]),
        Some(url::Host::Domain(name)) => {
            let name = name.to_owned();
            let addrs = tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|source| WebhookUrlError::Resolve {
                    host: name.clone(),
                    source,
                })?
                .collect();
            (name, addrs)
        }
        None => return Err(WebhookUrlError::NoHost),
    };
    if addrs.is_empty() {
        return Err(WebhookUrlError::NoAddress { host });
    }
    if !policy.allow_private {
        if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
            return Err(WebhookUrlError::Forbidden {
                host,
                addr: bad.ip(),
            });
        }
    }
    Ok(CheckedTarget {
        url: parsed,
        host,
        addrs,
    })
}

/// Tag of the hash a server signs for each webhook call.
pub const CALL_TAG: &str = "asyncpay/mailbox/v1/webhook-call";
/// Header carrying the call's unix time in seconds, decimal.
pub const TIMESTAMP_HEADER: &str = "x-asyncpay-timestamp";
/// Header carrying the BIP340 signature over [`call_digest`], 128 hex characters.
pub const SIGNATURE_HEADER: &str = "x-asyncpay-signature";
/// File in the server's data directory that holds its secret key (64 hex characters).
pub const SERVER_KEY_FILE: &str = "server-key";
/// A receiver's suggested bound on the distance between a call's timestamp and its own
/// clock, in seconds: wide enough for unsynchronised clocks and a slow call, narrow enough
/// that an old captured call cannot be played again much later.
pub const DEFAULT_MAX_SKEW_SECS: u64 = 300;

/// The 32-byte message a server signs for a call made at `timestamp` (unix seconds) with
/// request body `body`: `tagged_hash(CALL_TAG, timestamp(u64 big-endian) ‖ body)`.
pub fn call_digest(timestamp: u64, body: &[u8]) -> [u8; 32] {
    tagged_hash(CALL_TAG, &[&timestamp.to_be_bytes(), body])
}

/// Why a webhook call is not accepted as coming from the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookCallError {
    /// The timestamp header is not a decimal unix time.
    #[error("webhook timestamp {0:?} is not a decimal unix time")]
    MalformedTimestamp(String),
    /// The signature header is not a 64-byte BIP340 signature in hex.
    #[error("webhook signature is not 128 hex characters of a bip340 signature")]
    MalformedSignature,
    /// The timestamp is further from the receiver's clock than it allows (an old call
    /// played again, or a clock far off).
    #[error("webhook timestamp {timestamp} is more than {max_skew_secs} s from now ({now})")]
    Stale {
        /// The call's timestamp.
        timestamp: u64,
        /// The receiver's clock.
        now: u64,
        /// The distance allowed.
        max_skew_secs: u64,
    },
    /// The signature does not verify under the key for this timestamp and body: another
    /// key signed it, or the timestamp or body was changed.
    #[error("webhook signature does not verify under server key {}", hex::encode(.server_key))]
    BadSignature {
        /// The key the call was checked against, x-only (the bytes, not a
        /// [`PublicKey`], keep the error small).
        server_key: [u8; 32],
    },
}

/// Checks a webhook call: `timestamp` and `signature` are the values of the
/// [`TIMESTAMP_HEADER`] and [`SIGNATURE_HEADER`] as received, `body` the exact request body
/// bytes, `server_key` the receiver's pinned copy of the server's key, `now` the receiver's
/// unix time. The timestamp must be within `max_skew_secs` of `now` either way.
///
/// A call that passes came from the holder of `server_key` with this body, at about this
/// time. Within the skew window the same call can be delivered again (a webhook is a
/// wake-up, so that costs one extra fetch); a receiver that must see each call once keeps
/// the signatures it accepted for `2 * max_skew_secs`. It should also check that the body's
/// `mailbox` is its own.
pub fn verify_call(
    server_key: &PublicKey,
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now: u64,
    max_skew_secs: u64,
) -> Result<(), WebhookCallError> {
    let malformed_time =
        || WebhookCallError::MalformedTimestamp(timestamp.chars().take(32).collect());
    // Digits only: `u64::from_str` would also take a sign.
    if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed_time());
    }
    let timestamp: u64 = timestamp.parse().map_err(|_| malformed_time())?;
    let mut bytes = [0u8; 64];
    hex::decode_to_slice(signature, &mut bytes)
        .map_err(|_| WebhookCallError::MalformedSignature)?;
    let signature =
        Signature::from_bytes(bytes).map_err(|_| WebhookCallError::MalformedSignature)?;
    if timestamp.abs_diff(now) > max_skew_secs {
        return Err(WebhookCallError::Stale {
            timestamp,
            now,
            max_skew_secs,
        });
    }
    server_key
        .verify(&call_digest(timestamp, body), &signature)
        .map_err(|_| WebhookCallError::BadSignature {
            server_key: server_key.to_xonly_bytes(),
        })
}

/// A server's long-term webhook signing key. `Debug` shows only the public key.
#[derive(Debug)]
pub struct ServerKey(SecretKey);

/// A signed call: what goes into the two headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedCall {
    /// Unix seconds the call was signed at.
    pub timestamp: u64,
    /// The signature over [`call_digest`].
    pub signature: Signature,
}

impl SignedCall {
    /// The [`TIMESTAMP_HEADER`] value.
    pub fn timestamp_header(&self) -> String {
        self.timestamp.to_string()
    }

    /// The [`SIGNATURE_HEADER`] value.
    pub fn signature_header(&self) -> String {
        hex::encode(self.signature.to_bytes())
    }
}

/// Why the server key cannot be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum ServerKeyError {
    /// The key file could not be read or written.
    #[error("server key file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The key file does not hold a 32-byte secret in hex.
    #[error("server key file {} does not hold a 32-byte hex secret key", path.display())]
    BadKeyFile {
        /// The file.
        path: PathBuf,
    },
}

impl ServerKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        loop {
            let bytes = zeroize::Zeroizing::new(rand::random::<[u8; 32]>());
            if let Ok(key) = SecretKey::from_bytes(*bytes) {
                return ServerKey(key);
            }
        }
    }

    /// The key with this 32-byte secret.
    pub fn from_secret_bytes(secret: [u8; 32]) -> Result<Self, crate::crypto::keys::KeyError> {
        SecretKey::from_bytes(secret).map(ServerKey)
    }

    /// Reads `dir/server-key`, or, if there is none, creates one with a fresh key (mode 0600
    /// on Unix, written to a temporary file and renamed, so a crash never leaves half a
    /// key). Also says whether it was created.
    pub fn load_or_create(dir: &Path) -> Result<(Self, bool), ServerKeyError> {
        let path = dir.join(SERVER_KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let text = zeroize::Zeroizing::new(text);
                warn_if_readable_by_others(&path);
                let mut secret = zeroize::Zeroizing::new([0u8; 32]);
                hex::decode_to_slice(text.trim(), &mut secret[..])
                    .map_err(|_| ServerKeyError::BadKeyFile { path: path.clone() })?;
                let key = SecretKey::from_bytes(*secret)
                    .map_err(|_| ServerKeyError::BadKeyFile { path: path.clone() })?;
                Ok((ServerKey(key), false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                key.write_new(&path)?;
                Ok((key, true))
            }
            Err(source) => Err(ServerKeyError::Io { path, source }),
        }
    }

    fn write_new(&self, path: &Path) -> Result<(), ServerKeyError> {
        use std::io::Write;
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let io = |source| ServerKeyError::Io {
            path: path.to_owned(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(io)?;
        let hex = zeroize::Zeroizing::new(hex::encode(self.0.to_secret_bytes()));
        let written = file
            .write_all(hex.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        if let Some(dir) = path.parent() {
            // The rename itself is durable once the directory is.
            if let Ok(dir) = std::fs::File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }

    /// The public key receivers pin.
    pub fn public_key(&self) -> PublicKey {
        self.0.public_key()
    }

    /// Signs a call made at `timestamp` (unix seconds) with exactly `body`.
    pub fn sign_call(&self, timestamp: u64, body: &[u8]) -> SignedCall {
        SignedCall {
            timestamp,
            signature: self
                .0
                .sign(&call_digest(timestamp, body), &rand::random::<[u8; 32]>()),
        }
    }
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "server key file is readable by others: chmod 600 it");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for text in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd12:3456::1",
            "fc00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            let ip: IpAddr = text.parse().expect("address");
            assert!(!is_public(ip), "{text} must not be public");
        }
        for text in ["1.1.1.1", "93.184.215.14", "2606:4700:4700::1111"] {
            let ip: IpAddr = text.parse().expect("address");
            assert!(is_public(ip), "{text} is public");
        }
    }

    #[test]
    fn decimal_and_hex_hosts_parse_to_the_address_they_denote() {
        let url = parse("https://2130706433/x", 2048, WebhookPolicy::default()).expect("parses");
        assert_eq!(url.host_str(), Some("127.0.0.1"));
        let url = parse("https://0x7f.1/x", 2048, WebhookPolicy::default()).expect("parses");
        assert_eq!(url.host_str(), Some("127.0.0.1"));
    }

    fn signed() -> (ServerKey, SignedCall, &'static [u8]) {
        let key = ServerKey::from_secret_bytes([5u8; 32]).expect("valid secret");
        let body: &[u8] = br#"{"event":"mailbox.message","mailbox":"00"}"#;
        let call = key.sign_call(1_800_000_000, body);
        (key, call, body)
    }

    #[test]
    fn a_signed_call_verifies_within_the_skew() {
        let (key, call, body) = signed();
        let (t, sig) = (call.timestamp_header(), call.signature_header());
        for now in [1_800_000_000 - 300, 1_800_000_000, 1_800_000_300] {
            verify_call(&key.public_key(), &t, body, &sig, now, 300).expect("verifies");
        }
        // Upper-case hex is the same signature.
        verify_call(
            &key.public_key(),
            &t,
            body,
            &sig.to_uppercase(),
            1_800_000_000,
            300,
        )
        .expect("verifies");
    }

    #[test]
    fn changed_body_timestamp_or_key_is_refused() {
        let (key, call, body) = signed();
        let (t, sig) = (call.timestamp_header(), call.signature_header());
        let server_key = key.public_key();
        let bad = |r: Result<(), WebhookCallError>| {
            let server_key = server_key.to_xonly_bytes();
            assert_eq!(r, Err(WebhookCallError::BadSignature { server_key }));
        };
        let mut changed = body.to_vec();
        changed[10] ^= 1;
        bad(verify_call(
            &server_key,
            &t,
            &changed,
            &sig,
            1_800_000_000,
            300,
        ));
        bad(verify_call(
            &server_key,
            &t,
            &body[..body.len() - 1],
            &sig,
            1_800_000_000,
            300,
        ));
        bad(verify_call(
            &server_key,
            "1800000001",
            body,
            &sig,
            1_800_000_000,
            300,
        ));
        let other = ServerKey::from_secret_bytes([6u8; 32]).expect("valid secret");
        let r = verify_call(&other.public_key(), &t, body, &sig, 1_800_000_000, 300);
        assert_eq!(
            r,
            Err(WebhookCallError::BadSignature {
                server_key: other.public_key().to_xonly_bytes()
            })
        );
        // Another key's signature over the same call.
        let forged = other.sign_call(1_800_000_000, body).signature_header();
        bad(verify_call(
            &server_key,
            &t,
            body,
            &forged,
            1_800_000_000,
            300,
        ));
        // The digest binds the timestamp to the body: moving bytes between them fails.
        assert_ne!(call_digest(1, b"\x02"), call_digest(0x102, b""));
    }

    #[test]
    fn stale_or_future_timestamps_are_refused() {
        let (key, call, body) = signed();
        let (t, sig) = (call.timestamp_header(), call.signature_header());
        for now in [1_800_000_000 - 301, 1_800_000_301, 0, u64::MAX] {
            let r = verify_call(&key.public_key(), &t, body, &sig, now, 300);
            assert!(
                matches!(r, Err(WebhookCallError::Stale { .. })),
                "{now}: {r:?}"
            );
        }
    }

    #[test]
    fn malformed_headers_are_refused_without_panicking() {
        let (key, call, body) = signed();
        let (t, sig) = (call.timestamp_header(), call.signature_header());
        let k = key.public_key();
        for bad_t in [
            "",
            "+1800000000",
            "-1",
            " 1800000000",
            "1.8e9",
            "99999999999999999999999",
        ] {
            let r = verify_call(&k, bad_t, body, &sig, 1_800_000_000, 300);
            assert!(
                matches!(r, Err(WebhookCallError::MalformedTimestamp(_))),
                "{bad_t:?}: {r:?}"
            );
        }
        let s_too_large = format!("{}{}", &sig[..64], "ff".repeat(32));
        for bad_sig in [
            String::new(),
            sig[..126].to_owned(),
            format!("{sig}00"),
            "zz".repeat(64),
            s_too_large,
        ] {
            let r = verify_call(&k, &t, body, &bad_sig, 1_800_000_000, 300);
            assert_eq!(r, Err(WebhookCallError::MalformedSignature), "{bad_sig:?}");
        }
        // An R that is no curve point's x parses (it is not lifted) and verifies under no key.
        let not_on_curve = format!("{}{}", "ff".repeat(32), &sig[64..]);
        let r = verify_call(&k, &t, body, &not_on_curve, 1_800_000_000, 300);
        assert!(
            matches!(r, Err(WebhookCallError::BadSignature { .. })),
            "{r:?}"
        );
    }

    #[test]
    fn server_key_is_created_once_private_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, created) = ServerKey::load_or_create(dir.path()).expect("created");
        assert!(created);
        let (again, created) = ServerKey::load_or_create(dir.path()).expect("loaded");
        assert!(!created);
        assert_eq!(first.public_key(), again.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SERVER_KEY_FILE))
                .expect("key file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("dir").count(),
            1,
            "no temporary file left"
        );
        std::fs::write(dir.path().join(SERVER_KEY_FILE), "not hex\n").expect("overwrite");
        assert!(matches!(
            ServerKey::load_or_create(dir.path()),
            Err(ServerKeyError::BadKeyFile { .. })
        ));
        assert!(!format!("{first:?}").contains(&hex::encode(first.0.to_secret_bytes())));
    }
}
