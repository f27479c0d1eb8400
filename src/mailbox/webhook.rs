//! Webhook targets: which URLs a mailbox server calls, so that a registered webhook cannot
//! make the server reach into its own host or network (server-side request forgery).
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
}
