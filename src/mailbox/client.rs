//! Async HTTP client for the mailbox: senders post, recipients fetch (with long-poll) and
//! acknowledge, proving key ownership by challenge and signature.
//!
//! ```no_run
//! # async fn demo(payee: asyncpay::mailbox::keys::NodeKey) -> Result<(), asyncpay::mailbox::client::ClientError> {
//! use asyncpay::mailbox::client::MailboxClient;
//! use std::time::Duration;
//!
//! let client = MailboxClient::new("http://127.0.0.1:8080")?;
//! // Wait up to 30 s for mail; answers as soon as something arrives.
//! let messages = client.fetch(&payee, 100, Duration::from_secs(30)).await?;
//! let ids: Vec<_> = messages.iter().map(|m| m.id).collect();
//! client.ack(&payee, &ids).await?;
//! # Ok(()) }
//! ```
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use bitcoin::secp256k1::{schnorr, XOnlyPublicKey};
use serde::de::DeserializeOwned;

use super::api::{
    AckRequest, AckResponse, ChallengeResponse, ErrorBody, ErrorCode, FetchRequest, FetchResponse,
    PostResponse, WebhookRequest, WebhookResponse,
};
use super::auth::{sign_request, Challenge, Issued, Operation};
use super::envelope::{seal_for, Envelope, EnvelopeError, EnvelopeId, Opened};
use super::keys::{NodeKey, VerifiedContact};

/// Client failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL does not parse.
    #[error("invalid mailbox url {0:?}")]
    InvalidUrl(String),
    /// Transport failure (connect, timeout, body).
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with a JSON error.
    #[error("server refused ({status} {code}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Machine-readable code.
        code: ErrorCode,
        /// Server's explanation.
        message: String,
    },
    /// The server answered with an unexpected status and no JSON error.
    #[error("unexpected http status {0}")]
    UnexpectedStatus(u16),
    /// A response field is malformed.
    #[error("malformed server response: {0}")]
    BadResponse(&'static str),
    /// Sealing an envelope failed.
    #[error("envelope: {0}")]
    Envelope(#[from] EnvelopeError),
}

impl ClientError {
    /// The server's error code, if the server refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A message as fetched: metadata plus raw envelope bytes (decoded on demand, so one bad
/// entry never hides the others).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedMessage {
    /// Envelope id.
    pub id: EnvelopeId,
    /// When the server stored it.
    pub received_at: u64,
    /// When the server will drop it.
    pub expires_at: u64,
    /// Outer envelope bytes.
    pub raw: Vec<u8>,
}

impl FetchedMessage {
    /// Decodes the outer envelope.
    pub fn envelope(&self) -> Result<Envelope, EnvelopeError> {
        Envelope::decode(&self.raw)
    }

    /// Decodes, decrypts and verifies the letter, and checks the id the server reported.
    pub fn open(&self, key: &NodeKey) -> Result<Opened, EnvelopeError> {
        let envelope = self.envelope()?;
        if envelope.id != self.id {
            return Err(EnvelopeError::Mismatch("envelope id"));
        }
        envelope.open(key)
    }
}

/// What [`MailboxClient::fetch_and_open`] found: each message with its opened letter, or
/// why it did not open, and how many of them were acknowledged.
#[derive(Debug)]
pub struct FetchedMail {
    /// The messages, in the server's order.
    pub messages: Vec<(FetchedMessage, Result<Opened, EnvelopeError>)>,
    /// How many of the opened ones the server deleted (0 without `ack`).
    pub acked: u64,
}

impl FetchedMail {
    /// What `asyncpay mailbox fetch --json` prints: `{"messages": [...], "acked": n}`, each
    /// message with its metadata and its payload (hex, and as text if it is UTF-8), or the
    /// reason it did not open.
    pub fn to_json(&self) -> serde_json::Value {
        let messages: Vec<_> = self
            .messages
            .iter()
            .map(|(m, opened)| match opened {
                Ok(opened) => serde_json::json!({
                    "id": m.id.to_string(),
                    "received_at": m.received_at,
                    "expires_at": m.expires_at,
                    "created_at": opened.created_at,
                    "sender": opened.sender.map(|s| s.to_string()),
                    "payload_hex": hex::encode(&opened.payload),
                    "payload_text": core::str::from_utf8(&opened.payload).ok(),
                }),
                Err(e) => serde_json::json!({"id": m.id.to_string(), "error": e.to_string()}),
            })
            .collect();
        serde_json::json!({"messages": messages, "acked": self.acked})
    }
}

/// What [`MailboxClient::send`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// Id of the envelope.
    pub id: EnvelopeId,
    /// Size of the envelope on the wire.
    pub envelope_bytes: usize,
    /// The server's receipt.
    pub receipt: PostResponse,
}

/// HTTP client for one mailbox server.
#[derive(Clone, Debug)]
pub struct MailboxClient {
    base: String,
    http: reqwest::Client,
}

fn now_secs() -> u64 {
    super::unix_now()
}

impl MailboxClient {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Self::with_http(base_url, http)
    }

    /// A client reusing an existing `reqwest::Client` (connection pool).
    pub fn with_http(base_url: &str, http: reqwest::Client) -> Result<Self, ClientError> {
        let parsed = reqwest::Url::parse(base_url)
            .map_err(|_| ClientError::InvalidUrl(base_url.to_owned()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientError::InvalidUrl(base_url.to_owned()));
        }
        Ok(MailboxClient {
            base: base_url.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, ClientError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response.json::<T>().await?);
        }
        let bytes = response.bytes().await?;
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(ClientError::Api {
                status: status.as_u16(),
                code: body.error.code,
                message: body.error.message,
            }),
            Err(_) => Err(ClientError::UnexpectedStatus(status.as_u16())),
        }
    }

    /// Posts raw envelope bytes. Returns once the server has made the message durable.
    pub async fn post_bytes(&self, envelope: Vec<u8>) -> Result<PostResponse, ClientError> {
        let response = self
            .http
            .post(format!("{}/v1/messages", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .timeout(Duration::from_secs(60))
            .body(envelope)
            .send()
            .await?;
        Self::decode(response).await
    }

    /// Posts an envelope.
    pub async fn post(&self, envelope: &Envelope) -> Result<PostResponse, ClientError> {
        self.post_bytes(envelope.encode()).await
    }

    /// Seals `payload` for `to` under a fresh id, signs and stamps it with `from` if given,
    /// and posts it with the given time to live.
    pub async fn send(
        &self,
        to: &VerifiedContact,
        from: Option<&NodeKey>,
        payload: Vec<u8>,
        ttl: Duration,
    ) -> Result<Sent, ClientError> {
        self.send_with_id(to, from, EnvelopeId::random(), payload, ttl)
            .await
    }

    /// Like [`send`](Self::send) with a caller-chosen id, so a retry after a lost answer is
    /// stored once.
    pub async fn send_with_id(
        &self,
        to: &VerifiedContact,
        from: Option<&NodeKey>,
        id: EnvelopeId,
        payload: Vec<u8>,
        ttl: Duration,
    ) -> Result<Sent, ClientError> {
        let envelope = seal_for(
            to,
            from,
            id,
            payload,
            now_secs(),
            ttl.as_secs(),
            from.is_some(),
        )?;
        let bytes = envelope.encode();
        let envelope_bytes = bytes.len();
        let receipt = self.post_bytes(bytes).await?;
        Ok(Sent {
            id,
            envelope_bytes,
            receipt,
        })
    }

    /// The key that signs the server's webhook calls (`GET /v1/server-key`). A receiver
    /// fetches it once over https and pins it; see [`super::webhook::verify_call`].
    pub async fn server_key(&self) -> Result<crate::crypto::keys::PublicKey, ClientError> {
        let response = self
            .http
            .get(format!("{}/v1/server-key", self.base))
            .timeout(Duration::from_secs(30))
            .send()
            .await?;
        let body: super::api::ServerKeyResponse = Self::decode(response).await?;
        let mut x = [0u8; 32];
        hex::decode_to_slice(&body.server_key, &mut x)
            .map_err(|_| ClientError::BadResponse("server key is not 32 hex bytes"))?;
        crate::crypto::keys::PublicKey::from_xonly_bytes(x)
            .map_err(|_| ClientError::BadResponse("server key is not an x-only public key"))
    }

    /// Asks for a fresh single-use challenge for `mailbox`.
    pub async fn challenge(&self, mailbox: &XOnlyPublicKey) -> Result<Issued, ClientError> {
        let response = self
            .http
            .post(format!("{}/v1/mailboxes/{}/challenge", self.base, mailbox))
            .timeout(Duration::from_secs(30))
            .send()
            .await?;
        let body: ChallengeResponse = Self::decode(response).await?;
        let mut challenge = [0u8; 32];
        hex::decode_to_slice(&body.challenge, &mut challenge)
            .map_err(|_| ClientError::BadResponse("challenge is not 32 hex bytes"))?;
        Ok(Issued {
            challenge,
            expires_at: body.expires_at,
        })
    }

    /// Fetches with an explicit proof (no challenge round trip); for callers that manage
    /// proofs themselves.
    pub async fn fetch_with_proof(
        &self,
        mailbox: &XOnlyPublicKey,
        challenge: &Challenge,
        signature: &schnorr::Signature,
        limit: u32,
        wait_secs: u32,
    ) -> Result<Vec<FetchedMessage>, ClientError> {
        let request = FetchRequest {
            challenge: hex::encode(challenge),
            signature: signature.to_string(),
            limit,
            wait_secs,
        };
        let response = self
            .http
            .post(format!("{}/v1/mailboxes/{}/fetch", self.base, mailbox))
            .timeout(Duration::from_secs(wait_secs as u64 + 30))
            .json(&request)
            .send()
            .await?;
        let body: FetchResponse = Self::decode(response).await?;
        let b64 = base64::engine::general_purpose::STANDARD;
        body.messages
            .into_iter()
            .map(|m| {
                Ok(FetchedMessage {
                    id: EnvelopeId::from_str(&m.id)
                        .map_err(|_| ClientError::BadResponse("message id is not 16 hex bytes"))?,
                    received_at: m.received_at,
                    expires_at: m.expires_at,
                    raw: b64
                        .decode(&m.envelope)
                        .map_err(|_| ClientError::BadResponse("envelope is not base64"))?,
                })
            })
            .collect()
    }

    /// Fetches up to `limit` messages from `key`'s mailbox, waiting up to `wait` (whole
    /// seconds) for the first one when the mailbox is empty.
    pub async fn fetch(
        &self,
        key: &NodeKey,
        limit: u32,
        wait: Duration,
    ) -> Result<Vec<FetchedMessage>, ClientError> {
        let mailbox = key.public();
        let issued = self.challenge(&mailbox).await?;
        let wait_secs = u32::try_from(wait.as_secs()).unwrap_or(u32::MAX);
        let op = Operation::Fetch { limit, wait_secs };
        let sig = sign_request(key, &issued.challenge, &op);
        self.fetch_with_proof(&mailbox, &issued.challenge, &sig, limit, wait_secs)
            .await
    }

    /// Fetches like [`MailboxClient::fetch`], opens each message with `key` and, if `ack`,
    /// deletes the ones that opened (a message that does not open stays for another look).
    pub async fn fetch_and_open(
        &self,
        key: &NodeKey,
        limit: u32,
        wait: Duration,
        ack: bool,
    ) -> Result<FetchedMail, ClientError> {
        let fetched = self.fetch(key, limit, wait).await?;
        let messages: Vec<_> = fetched
            .into_iter()
            .map(|m| {
                let opened = m.open(key);
                (m, opened)
            })
            .collect();
        let opened_ids: Vec<EnvelopeId> = messages
            .iter()
            .filter(|(_, opened)| opened.is_ok())
            .map(|(m, _)| m.id)
            .collect();
        let acked = if ack && !opened_ids.is_empty() {
            self.ack(key, &opened_ids).await?
        } else {
            0
        };
        Ok(FetchedMail { messages, acked })
    }

    /// Deletes with an explicit proof.
    pub async fn ack_with_proof(
        &self,
        mailbox: &XOnlyPublicKey,
        challenge: &Challenge,
        signature: &schnorr::Signature,
        ids: &[EnvelopeId],
    ) -> Result<u64, ClientError> {
        let request = AckRequest {
            challenge: hex::encode(challenge),
            signature: signature.to_string(),
            ids: ids.iter().map(|id| id.to_string()).collect(),
        };
        let response = self
            .http
            .post(format!("{}/v1/mailboxes/{}/ack", self.base, mailbox))
            .timeout(Duration::from_secs(60))
            .json(&request)
            .send()
            .await?;
        let body: AckResponse = Self::decode(response).await?;
        Ok(body.deleted)
    }

    /// Deletes the given messages from `key`'s mailbox; returns how many were there.
    pub async fn ack(&self, key: &NodeKey, ids: &[EnvelopeId]) -> Result<u64, ClientError> {
        let mailbox = key.public();
        let issued = self.challenge(&mailbox).await?;
        let op = Operation::Ack { ids: ids.to_vec() };
        let sig = sign_request(key, &issued.challenge, &op);
        self.ack_with_proof(&mailbox, &issued.challenge, &sig, ids)
            .await
    }

    /// Registers (or with `None` clears) the URL the server POSTs to when mail arrives.
    pub async fn set_webhook(
        &self,
        key: &NodeKey,
        url: Option<&str>,
    ) -> Result<Option<String>, ClientError> {
        let mailbox = key.public();
        let issued = self.challenge(&mailbox).await?;
        let url = url.map(str::to_owned);
        let op = Operation::SetWebhook { url: url.clone() };
        let sig = sign_request(key, &issued.challenge, &op);
        let request = WebhookRequest {
            challenge: hex::encode(issued.challenge),
            signature: sig.to_string(),
            url,
        };
        let response = self
            .http
            .post(format!("{}/v1/mailboxes/{}/webhook", self.base, mailbox))
            .timeout(Duration::from_secs(30))
            .json(&request)
            .send()
            .await?;
        let body: WebhookResponse = Self::decode(response).await?;
        Ok(body.url)
    }
}
