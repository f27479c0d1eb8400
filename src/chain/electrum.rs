//! Which Electrum server a wallet or a node talks to, and how.
//!
//! A server is named by a URL: `tcp://host:port` (or `host:port`) in the clear, as a local
//! electrs is reached, or `ssl://host:port` over TLS, as a public server is. Over TLS the
//! server's certificate is checked against the Web PKI roots (`webpki-roots`) and the host
//! name in the URL. A self-signed server (your own electrs behind a TLS terminator, say) fails
//! that check: [`Electrum::accept_invalid_certs`] turns it off, after which the wallet trusts
//! whatever answers at that address, as over `tcp://`. What a wallet learns from any Electrum
//! server is checked no further than BDK checks it (the server can hide transactions, not
//! invent spendable coins for a channel: funding and channel transactions are published and
//! watched through the node's own bitcoind where it has one).
//!
//! ```
//! use asyncpay::chain::electrum::Electrum;
//!
//! let public = Electrum::new("ssl://electrum.example.org:50002");
//! assert!(public.is_tls() && !public.accepts_invalid_certs());
//! let own = Electrum::new("ssl://127.0.0.1:50002").accept_invalid_certs(true);
//! assert!(own.accepts_invalid_certs());
//! assert!(Electrum::new("127.0.0.1:50001").validate().is_ok());
//! assert!(Electrum::new("http://127.0.0.1:50001").validate().is_err());
//! ```

use core::fmt;
use std::time::Duration;

use bdk_electrum::electrum_client::{self, ConfigBuilder};

/// How long one Electrum request may take before it fails.
pub const ELECTRUM_TIMEOUT: Duration = Duration::from_secs(30);

/// An Electrum server and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub struct Electrum {
    url: String,
    accept_invalid_certs: bool,
}

/// Why an Electrum URL is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElectrumUrlError {
    /// The scheme is neither `tcp://` nor `ssl://`.
    #[error("electrum url {url:?}: the scheme must be tcp:// or ssl://")]
    Scheme {
        /// The URL given.
        url: String,
    },
    /// No `host:port` after the scheme.
    #[error("electrum url {url:?}: expected host:port")]
    Address {
        /// The URL given.
        url: String,
    },
}

impl Electrum {
    /// The server at `url`; over TLS its certificate is checked.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            accept_invalid_certs: false,
        }
    }

    /// Over TLS, accept any certificate (a self-signed server reached over a path the
    /// operator trusts). No effect over `tcp://`.
    pub fn accept_invalid_certs(mut self, accept: bool) -> Self {
        self.accept_invalid_certs = accept;
        self
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the connection is over TLS (`ssl://`).
    pub fn is_tls(&self) -> bool {
        self.url.starts_with("ssl://")
    }

    /// Whether any certificate is accepted over TLS.
    pub fn accepts_invalid_certs(&self) -> bool {
        self.accept_invalid_certs
    }

    /// Checks the URL's form (`tcp://host:port`, `ssl://host:port` or `host:port`) without
    /// connecting.
    pub fn validate(&self) -> Result<(), ElectrumUrlError> {
        let rest = match self.url.split_once("://") {
            Some(("tcp" | "ssl", rest)) => rest,
            Some(_) => {
                return Err(ElectrumUrlError::Scheme {
                    url: self.url.clone(),
                })
            }
            None => self.url.as_str(),
        };
        let address = || ElectrumUrlError::Address {
            url: self.url.clone(),
        };
        let (host, port) = rest.rsplit_once(':').ok_or_else(address)?;
        if host.is_empty() || port.parse::<u16>().is_err() || rest.contains('/') {
            return Err(address());
        }
        Ok(())
    }

    /// A connection to the server, with [`ELECTRUM_TIMEOUT`] on each request.
    pub fn connect(&self) -> Result<electrum_client::Client, electrum_client::Error> {
        self.validate()
            .map_err(|e| electrum_client::Error::Message(e.to_string()))?;
        let config = ConfigBuilder::new()
            .timeout(Some(ELECTRUM_TIMEOUT))
            .validate_domain(!self.accept_invalid_certs)
            .build();
        electrum_client::Client::from_config(&self.url, config)
    }
}

impl fmt::Debug for Electrum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// The URL, marked when any certificate is accepted.
impl fmt::Display for Electrum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)?;
        if self.is_tls() && self.accept_invalid_certs {
            f.write_str(" (any certificate accepted)")?;
        }
        Ok(())
    }
}

impl From<&str> for Electrum {
    fn from(url: &str) -> Self {
        Electrum::new(url)
    }
}

impl From<String> for Electrum {
    fn from(url: String) -> Self {
        Electrum::new(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_before_connecting() {
        for good in [
            "tcp://127.0.0.1:50001",
            "ssl://electrum.example.org:50002",
            "127.0.0.1:50001",
            "ssl://[::1]:50002",
        ] {
            assert_eq!(Electrum::new(good).validate(), Ok(()), "{good}");
        }
        for bad in [
            "http://127.0.0.1:50001",
            "ssl://",
            "tcp://host",
            "tcp://host:port",
            "tcp://:50001",
            "ssl://host:50002/path",
            "",
        ] {
            assert!(Electrum::new(bad).validate().is_err(), "{bad}");
            assert!(Electrum::new(bad).connect().is_err(), "{bad}");
        }
    }

    #[test]
    fn certificates_are_checked_unless_accepted_and_the_display_says_so() {
        let checked = Electrum::new("ssl://127.0.0.1:1");
        assert!(checked.is_tls() && !checked.accepts_invalid_certs());
        assert_eq!(checked.to_string(), "ssl://127.0.0.1:1");
        let any = checked.accept_invalid_certs(true);
        assert_eq!(
            any.to_string(),
            "ssl://127.0.0.1:1 (any certificate accepted)"
        );
        let plain = Electrum::new("tcp://127.0.0.1:1").accept_invalid_certs(true);
        assert_eq!(plain.to_string(), "tcp://127.0.0.1:1");
    }
}
