//! HTTP API wire types shared by the server and the client.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `POST /v1/messages` | outer envelope bytes (`application/octet-stream`) | [`PostResponse`], 201 stored / 200 duplicate |
//! | `POST /v1/mailboxes/{key}/challenge` | none | [`ChallengeResponse`] |
//! | `POST /v1/mailboxes/{key}/fetch` | [`FetchRequest`] | [`FetchResponse`] (long-polls up to `wait_secs`) |
//! | `POST /v1/mailboxes/{key}/ack` | [`AckRequest`] | [`AckResponse`] |
//! | `POST /v1/mailboxes/{key}/webhook` | [`WebhookRequest`] | [`WebhookResponse`] |
//! | `GET /v1/server-key` | none | [`ServerKeyResponse`] |
//! | `GET /v1/health` | none | `{"ok": true}` |
//!
//! `{key}` is the mailbox owner's x-only node key in hex. Every error is a JSON
//! [`ErrorBody`] whose `code` is one of [`ErrorCode`].
use serde::{Deserialize, Serialize};

/// Machine-readable error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request or envelope does not parse or fails a signature check (400).
    Malformed,
    /// The envelope exceeds the size limit (413).
    Oversized,
    /// The envelope's version is not supported (400).
    UnknownVersion,
    /// The envelope's expiry has passed (400).
    Expired,
    /// The mailbox is full (507).
    OverQuota,
    /// Missing, wrong, stale or replayed proof of key ownership (401).
    Unauthorized,
    /// Too many requests from this IP address or sender (429).
    RateLimited,
    /// The envelope id is already stored with different content (409).
    Conflict,
    /// No such route (404).
    NotFound,
    /// The server is shutting down or overloaded (503).
    Unavailable,
    /// The server failed (500).
    Internal,
}

impl ErrorCode {
    /// The HTTP status that carries this code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::Malformed | ErrorCode::UnknownVersion | ErrorCode::Expired => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::Oversized => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
            ErrorCode::OverQuota => 507,
        }
    }

    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::Oversized => "oversized",
            ErrorCode::UnknownVersion => "unknown_version",
            ErrorCode::Expired => "expired",
            ErrorCode::OverQuota => "over_quota",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Conflict => "conflict",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error detail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

/// JSON body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Answer to a post.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostResponse {
    /// Envelope id, hex.
    pub id: String,
    /// True when this id was already stored with the same content.
    pub duplicate: bool,
    /// Unix time the server first stored it.
    pub received_at: u64,
    /// Unix time the server will drop it (possibly earlier than requested).
    pub expires_at: u64,
}

/// A fresh challenge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeResponse {
    /// 32 random bytes, hex.
    pub challenge: String,
    /// Unix time after which it is refused.
    pub expires_at: u64,
}

/// Authenticated fetch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRequest {
    /// Challenge, hex.
    pub challenge: String,
    /// BIP340 signature over the fetch auth digest, hex.
    pub signature: String,
    /// Maximum number of messages.
    pub limit: u32,
    /// Seconds to wait for a message when the mailbox is empty (0 = do not wait).
    pub wait_secs: u32,
}

/// One stored message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireMessage {
    /// Envelope id, hex.
    pub id: String,
    /// Unix time stored.
    pub received_at: u64,
    /// Unix time it expires.
    pub expires_at: u64,
    /// The outer envelope, standard base64.
    pub envelope: String,
}

/// Messages in arrival order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchResponse {
    /// The messages.
    pub messages: Vec<WireMessage>,
}

/// Authenticated delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRequest {
    /// Challenge, hex.
    pub challenge: String,
    /// BIP340 signature over the ack auth digest, hex.
    pub signature: String,
    /// Envelope ids, hex.
    pub ids: Vec<String>,
}

/// Result of a delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckResponse {
    /// How many of the ids were present and are now gone.
    pub deleted: u64,
}

/// Authenticated webhook registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRequest {
    /// Challenge, hex.
    pub challenge: String,
    /// BIP340 signature over the webhook auth digest, hex.
    pub signature: String,
    /// URL to POST a [`WebhookNotification`] to, or none to clear.
    pub url: Option<String>,
}

/// Result of a webhook registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookResponse {
    /// The URL now registered.
    pub url: Option<String>,
}

/// What the server POSTs to a registered webhook (no content, only that mail is waiting).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookNotification {
    /// Always `"mailbox.message"`.
    pub event: String,
    /// Mailbox node key, hex.
    pub mailbox: String,
}

/// The key that signs the server's webhook calls (see [`super::webhook::verify_call`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerKeyResponse {
    /// BIP340 x-only public key, hex.
    pub server_key: String,
}
