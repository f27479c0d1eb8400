//! Client addresses behind a trusted reverse proxy (pure: no I/O).
//!
//! Behind a TLS-terminating proxy every connection comes from the proxy, so the per-address
//! limits would put every client in one bucket. The operator names the proxies it runs
//! ([`TrustedProxy`], an address or a CIDR range); from those peers, and only from those,
//! the server believes the forwarding header. The chain of addresses in it is read from the
//! right (the hop nearest the server) leftwards, skipping addresses that are themselves
//! trusted proxies; the first other address is the client. Anything to its left was written
//! by the client and is never read. From any other peer the header is ignored, so a client
//! cannot pick its own bucket; a header from a trusted proxy that does not parse, or names
//! only proxies, yields the proxy's own address (or the left-most proxy's).
//!
//! ```
//! use std::net::IpAddr;
//! use asyncpay::mailbox::proxy::{client_addr, ClientAddr, ForwardedHeader, TrustedProxy};
//! use axum::http::HeaderMap;
//!
//! let trusted: Vec<TrustedProxy> = vec!["127.0.0.1".parse()?, "10.0.0.0/8".parse()?];
//! let ip = |s: &str| s.parse::<IpAddr>().unwrap();
//! let mut headers = HeaderMap::new();
//! // The client wrote "6.6.6.6"; nginx appended the address it saw, then a second proxy
//! // inside 10.0.0.0/8 appended its own peer.
//! headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.2.3".parse()?);
//! let from_proxy = client_addr(ip("127.0.0.1"), &headers, &trusted, ForwardedHeader::XForwardedFor);
//! assert_eq!(from_proxy.ip(), ip("203.0.113.7"));
//!
//! // The same header from a peer that is not a trusted proxy is ignored.
//! let direct = client_addr(ip("198.51.100.1"), &headers, &trusted, ForwardedHeader::XForwardedFor);
//! assert_eq!(direct, ClientAddr::Peer(ip("198.51.100.1")));
//!
//! // A malformed header from a trusted proxy counts against the proxy.
//! headers.insert("x-forwarded-for", "not an address".parse()?);
//! let bad = client_addr(ip("127.0.0.1"), &headers, &trusted, ForwardedHeader::XForwardedFor);
//! assert_eq!(bad, ClientAddr::Unreadable { proxy: ip("127.0.0.1") });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use axum::http::HeaderMap;

/// Most hops of a forwarding chain walked before the header is given up as unreadable (a
/// real chain of trusted proxies is a handful long).
pub const MAX_HOPS: usize = 32;

/// An address or CIDR range of reverse proxies whose forwarding header is believed:
/// `127.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`. An IPv4-mapped IPv6 address
/// (`::ffff:10.0.0.1`) is matched as the IPv4 address it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TrustedProxy {
    network: IpAddr,
    prefix: u8,
}

/// Why a trusted-proxy address or range does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustedProxyError {
    /// Not an IP address, or an address with a `/prefix`.
    #[error("{0:?} is not an ip address or cidr range (such as 10.0.0.0/8)")]
    Malformed(String),
    /// The prefix is longer than the address.
    #[error("prefix /{prefix} is longer than the {bits} bits of {network}")]
    PrefixTooLong {
        /// The range's address.
        network: IpAddr,
        /// The prefix given.
        prefix: u8,
        /// Bits in the address.
        bits: u8,
    },
}

impl TrustedProxy {
    /// The range of addresses sharing the first `prefix` bits of `network` (host bits are
    /// cleared).
    pub fn new(network: IpAddr, prefix: u8) -> Result<Self, TrustedProxyError> {
        let network = network.to_canonical();
        let bits = match network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix > bits {
            return Err(TrustedProxyError::PrefixTooLong {
                network,
                prefix,
                bits,
            });
        }
        let network = match network {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(prefix))),
        };
        Ok(TrustedProxy { network, prefix })
    }

    /// One address.
    pub fn single(ip: IpAddr) -> Self {
        let ip = ip.to_canonical();
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        TrustedProxy {
            network: ip,
            prefix,
        }
    }

    /// Whether `ip` is inside the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                u32::from(a) & mask32(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                u128::from(a) & mask128(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for TrustedProxy {
    type Err = TrustedProxyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || TrustedProxyError::Malformed(s.to_owned());
        match s.trim().split_once('/') {
            None => Ok(Self::single(s.trim().parse().map_err(|_| malformed())?)),
            Some((addr, prefix)) => {
                let addr: IpAddr = addr.parse().map_err(|_| malformed())?;
                if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(malformed());
                }
                let prefix: u8 = prefix.parse().map_err(|_| malformed())?;
                // A mapped address with a /prefix counts the prefix over 128 bits; keep the
                // rule simple and ask for the IPv4 form instead.
                if addr.to_canonical() != addr {
                    return Err(malformed());
                }
                Self::new(addr, prefix)
            }
        }
    }
}

impl fmt::Display for TrustedProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Whether `ip` is one of the `trusted` proxies.
pub fn is_trusted(trusted: &[TrustedProxy], ip: IpAddr) -> bool {
    trusted.iter().any(|t| t.contains(ip))
}

/// The header a trusted proxy writes the client's address into.
///
/// Only one is read: a proxy that sets one usually passes the other through from the
/// client untouched, so reading both would let a client choose its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx `$proxy_add_x_forwarded_for`, Caddy,
    /// haproxy `option forwardfor`).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name, lower case.
    pub fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

impl FromStr for ForwardedHeader {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(ForwardedHeader::XForwardedFor),
            "forwarded" => Ok(ForwardedHeader::Forwarded),
            _ => Err(format!("{s:?} is neither x-forwarded-for nor forwarded")),
        }
    }
}

impl fmt::Display for ForwardedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whose address a request is counted against, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAddr {
    /// The connection's peer: not a trusted proxy, or a trusted proxy that sent no
    /// forwarding header (its own requests, health checks).
    Peer(IpAddr),
    /// The address a trusted proxy forwarded.
    Forwarded {
        /// The client.
        client: IpAddr,
        /// The proxy the connection came from.
        proxy: IpAddr,
    },
    /// A trusted proxy's header that does not parse or names no client: the proxy's own
    /// address.
    Unreadable {
        /// The proxy the connection came from.
        proxy: IpAddr,
    },
}

impl ClientAddr {
    /// The address the limits and logs use.
    pub fn ip(&self) -> IpAddr {
        match *self {
            ClientAddr::Peer(ip) => ip,
            ClientAddr::Forwarded { client, .. } => client,
            ClientAddr::Unreadable { proxy } => proxy,
        }
    }
}

/// The client address of a request from `peer` with `headers`: see the module docs. Every
/// per-address limit and log of the mailbox server goes through this.
pub fn client_addr(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[TrustedProxy],
    header: ForwardedHeader,
) -> ClientAddr {
    let peer = peer.to_canonical();
    if !is_trusted(trusted, peer) {
        return ClientAddr::Peer(peer);
    }
    let mut values = headers.get_all(header.name()).iter().peekable();
    if values.peek().is_none() {
        return ClientAddr::Peer(peer);
    }
    let unreadable = ClientAddr::Unreadable { proxy: peer };
    // Several header lines form one list, in order.
    let mut lines = Vec::new();
    for value in values {
        match value.to_str() {
            Ok(text) => lines.push(text),
            Err(_) => return unreadable,
        }
    }
    let hops = lines.iter().rev().flat_map(|line| line.rsplit(','));
    let mut leftmost_proxy = None;
    for (walked, hop) in hops.enumerate() {
        if walked >= MAX_HOPS {
            return unreadable;
        }
        let parsed = match header {
            ForwardedHeader::XForwardedFor => parse_node(hop.trim()),
            ForwardedHeader::Forwarded => forwarded_for(hop).and_then(parse_node),
        };
        let Some(ip) = parsed else {
            return unreadable;
        };
        if !is_trusted(trusted, ip) {
            return ClientAddr::Forwarded {
                client: ip,
                proxy: peer,
            };
        }
        leftmost_proxy = Some(ip);
    }
    match leftmost_proxy {
        // Every hop is a trusted proxy: the request began at the left-most one.
        Some(client) => ClientAddr::Forwarded {
            client,
            proxy: peer,
        },
        None => unreadable,
    }
}

/// The `for=` value of one RFC 7239 forwarded-element (`for=1.2.3.4;proto=https`), unquoted.
fn forwarded_for(element: &str) -> Option<&str> {
    let value = element.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then_some(value.trim())
    })?;
    let value = match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => value,
    };
    // Escapes are legal in a quoted string but never needed for an address.
    (!value.contains(['"', '\\'])).then_some(value)
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]`
/// or `[2001:db8::1]:443`. `unknown`, obfuscated identifiers (`_hidden`) and anything else
/// are none.
fn parse_node(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<Ipv6Addr>()
        .ok()
        .map(|ip| IpAddr::V6(ip).to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                axum::http::HeaderValue::from_bytes(v.as_bytes()).expect("value"),
            );
        }
        map
    }

    fn proxies() -> Vec<TrustedProxy> {
        vec![
            "127.0.0.1".parse().expect("proxy"),
            "10.0.0.0/8".parse().expect("range"),
            "fd00::/8".parse().expect("v6 range"),
        ]
    }

    fn xff(peer: &str, values: &[&str]) -> ClientAddr {
        client_addr(
            ip(peer),
            &headers("x-forwarded-for", values),
            &proxies(),
            ForwardedHeader::XForwardedFor,
        )
    }

    #[test]
    fn ranges_parse_and_match() {
        let r: TrustedProxy = "10.1.2.3/8".parse().expect("range");
        assert_eq!(r.to_string(), "10.0.0.0/8");
        assert!(r.contains(ip("10.255.0.1")));
        assert!(r.contains(ip("::ffff:10.0.0.1")));
        assert!(!r.contains(ip("11.0.0.1")));
        assert!(!r.contains(ip("fd00::1")));
        let all: TrustedProxy = "0.0.0.0/0".parse().expect("all v4");
        assert!(all.contains(ip("1.2.3.4")));
        let one: TrustedProxy = "::ffff:127.0.0.1".parse().expect("mapped");
        assert!(one.contains(ip("127.0.0.1")));
        let v6: TrustedProxy = "2001:db8::/32".parse().expect("v6");
        assert!(v6.contains(ip("2001:db8:1::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        for bad in [
            "",
            "x",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "::ffff:10.0.0.0/104",
        ] {
            assert!(
                bad.parse::<TrustedProxy>().is_err(),
                "{bad:?} must not parse"
            );
        }
    }

    #[test]
    fn untrusted_peer_header_is_ignored() {
        assert_eq!(
            xff("203.0.113.9", &["1.2.3.4"]),
            ClientAddr::Peer(ip("203.0.113.9"))
        );
        assert_eq!(
            xff("::ffff:203.0.113.9", &["garbage"]),
            ClientAddr::Peer(ip("203.0.113.9"))
        );
    }

    #[test]
    fn right_most_untrusted_hop_is_the_client() {
        let forwarded = |client: &str| ClientAddr::Forwarded {
            client: ip(client),
            proxy: ip("127.0.0.1"),
        };
        assert_eq!(xff("127.0.0.1", &["1.2.3.4"]), forwarded("1.2.3.4"));
        assert_eq!(
            xff("127.0.0.1", &["9.9.9.9, 1.2.3.4, 10.0.0.7"]),
            forwarded("1.2.3.4")
        );
        // Several header lines are one list; what the client wrote (left) is not read.
        assert_eq!(
            xff(
                "127.0.0.1",
                &["not an address, 9.9.9.9", "1.2.3.4", "fd00::2"]
            ),
            forwarded("1.2.3.4")
        );
        assert_eq!(
            xff("127.0.0.1", &["[2001:db8::5]:443"]),
            forwarded("2001:db8::5")
        );
        assert_eq!(xff("127.0.0.1", &["1.2.3.4:5678"]), forwarded("1.2.3.4"));
        assert_eq!(xff("127.0.0.1", &["::ffff:1.2.3.4"]), forwarded("1.2.3.4"));
        // Only proxies: the left-most one.
        assert_eq!(
            xff("127.0.0.1", &["10.0.0.1, 10.0.0.2"]),
            forwarded("10.0.0.1")
        );
        // No header: the proxy itself.
        assert_eq!(xff("127.0.0.1", &[]), ClientAddr::Peer(ip("127.0.0.1")));
    }

    #[test]
    fn unreadable_headers_fall_back_to_the_proxy() {
        let unreadable = ClientAddr::Unreadable {
            proxy: ip("127.0.0.1"),
        };
        for bad in [
            "",
            " ",
            "1.2.3.4,",
            "unknown",
            "1.2.3.4.5",
            "[1.2.3.4]",
            "1.2.3.4 5.6.7.8",
        ] {
            assert_eq!(xff("127.0.0.1", &[bad]), unreadable, "{bad:?}");
        }
        let long = vec!["10.0.0.1"; MAX_HOPS + 1].join(",");
        assert_eq!(xff("127.0.0.1", &[&long]), unreadable);
        let mut map = HeaderMap::new();
        map.insert(
            "x-forwarded-for",
            axum::http::HeaderValue::from_bytes(b"1.2.3.4\xff").expect("opaque value"),
        );
        let got = client_addr(
            ip("127.0.0.1"),
            &map,
            &proxies(),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(got, unreadable);
    }

    #[test]
    fn forwarded_header_is_read_when_chosen() {
        let read = |values: &[&str]| {
            client_addr(
                ip("127.0.0.1"),
                &headers("forwarded", values),
                &proxies(),
                ForwardedHeader::Forwarded,
            )
        };
        let forwarded = |client: &str| ClientAddr::Forwarded {
            client: ip(client),
            proxy: ip("127.0.0.1"),
        };
        assert_eq!(
            read(&["for=9.9.9.9, For=\"[2001:db8::17]:4711\";proto=https;by=10.0.0.1"]),
            forwarded("2001:db8::17")
        );
        assert_eq!(read(&["proto=https;for=1.2.3.4"]), forwarded("1.2.3.4"));
        let unreadable = ClientAddr::Unreadable {
            proxy: ip("127.0.0.1"),
        };
        for bad in [
            "for=unknown",
            "for=_hidden",
            "proto=https",
            "for=\"1.2.3.4",
            "for=",
        ] {
            assert_eq!(read(&[bad]), unreadable, "{bad:?}");
        }
        // With X-Forwarded-For chosen, a Forwarded header is not read, and the other way
        // round.
        let both = {
            let mut map = headers("forwarded", &["for=1.2.3.4"]);
            map.insert("x-forwarded-for", "5.6.7.8".parse().expect("value"));
            map
        };
        let xff_read = client_addr(
            ip("127.0.0.1"),
            &both,
            &proxies(),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(xff_read, forwarded("5.6.7.8"));
        let fwd_read = client_addr(
            ip("127.0.0.1"),
            &both,
            &proxies(),
            ForwardedHeader::Forwarded,
        );
        assert_eq!(fwd_read, forwarded("1.2.3.4"));
    }
}
