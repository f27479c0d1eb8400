//! The node's side of the tower: send a channel's latest complete state, and the leaves the
//! tower lacks.
//!
//! ```no_run
//! # async fn demo(snapshot: asyncpay::protocol::channel::Snapshot) -> Result<(), asyncpay::tower::client::PushError> {
//! use asyncpay::tower::client::TowerClient;
//!
//! let tower = TowerClient::new("http://127.0.0.1:9911")?;
//! let seed = [7u8; 32];
//! // The first push after a start sends only the newest leaf; the tower asks for the rest.
//! let state = tower.push(&seed, &snapshot).await?;
//! assert_eq!(Some(state), snapshot.complete.as_ref().map(|r| r.body.number));
//! # Ok(()) }
//! ```

use std::time::Duration;

use serde_json::Value;

use super::{Appointment, TowerError, MAX_LEAVES_PER_APPOINTMENT};
use crate::protocol::channel::Snapshot;

/// What a push can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The URL does not parse.
    #[error("invalid tower url {0:?}")]
    InvalidUrl(String),
    /// The appointment cannot be built.
    #[error(transparent)]
    Build(#[from] TowerError),
    /// Transport failure.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// The tower refused the appointment.
    #[error("tower refused ({status}): {code}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The tower's error code.
        code: String,
        /// Its message.
        message: String,
    },
}

/// A tower's HTTP client.
#[derive(Debug, Clone)]
pub struct TowerClient {
    base: url::Url,
    http: reqwest::Client,
}

impl TowerClient {
    /// A client of the tower at `base` (e.g. `http://127.0.0.1:9911`).
    pub fn new(base: &str) -> Result<Self, PushError> {
        let base = url::Url::parse(base).map_err(|_| PushError::InvalidUrl(base.to_owned()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(TowerClient { base, http })
    }

    /// Sends the channel's latest complete state with the client key derived from `seed`;
    /// returns the state the tower holds. Sends the newest leaf first and, if the tower lacks
    /// older ones, those from the first it lacks.
    pub async fn push(&self, seed: &[u8; 32], snapshot: &Snapshot) -> Result<u64, PushError> {
        let key = Appointment::client_key(seed, &snapshot.channel_id);
        let latest = snapshot
            .complete
            .as_ref()
            .map(|r| r.body.number)
            .ok_or(TowerError::NothingToWatch)?;
        let url = self
            .base
            .join("v1/appointments")
            .map_err(|_| PushError::InvalidUrl(self.base.to_string()))?;
        // First only the newest leaf: a tower that lacks older ones says from which on.
        let mut from = latest;
        // Each round either ends or sends leaves the tower lacked, at least one.
        for _ in 0..=latest.saturating_add(2) {
            let to = latest.min(from.saturating_add(MAX_LEAVES_PER_APPOINTMENT - 1));
            let appointment = Appointment::new(&key, snapshot, from, to)?;
            let answer = self
                .http
                .post(url.clone())
                .json(&appointment)
                .send()
                .await?;
            let status = answer.status();
            let body: Value = answer.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                if to == latest {
                    return Ok(body["state"].as_u64().unwrap_or(latest));
                }
                from = to + 1;
                continue;
            }
            if status.as_u16() == 409 && body["error"] == "missing_leaves" {
                let asked = body["from"].as_u64().unwrap_or(0);
                if asked >= from {
                    break;
                }
                from = asked;
                continue;
            }
            return Err(PushError::Refused {
                status: status.as_u16(),
                code: body["error"].as_str().unwrap_or("unknown").to_owned(),
                message: body["message"].as_str().unwrap_or("").to_owned(),
            });
        }
        Err(PushError::Refused {
            status: 409,
            code: "missing_leaves".into(),
            message: "the tower keeps asking for leaves it was sent".into(),
        })
    }
}
