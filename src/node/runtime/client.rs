//! A client of a running node's control API, found through the node's data directory: what
//! `asyncpay ctl` sends its requests with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// How long a control request may take (a `pay` or `open` waits for the peer).
const TIMEOUT: Duration = Duration::from_secs(120);

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The data directory has no readable `node.json`: no node runs there.
    #[error("no running node in {}", dir.display())]
    NotRunning {
        /// The data directory.
        dir: PathBuf,
        /// Why `node.json` could not be read.
        source: std::io::Error,
    },
    /// `node.json` is not JSON.
    #[error(transparent)]
    NodeFile(serde_json::Error),
    /// `node.json` names no control URL.
    #[error("node.json lacks control_url")]
    NoControlUrl,
    /// `control.token` could not be read.
    #[error(transparent)]
    Token(std::io::Error),
    /// The node did not answer.
    #[error("node at {url} does not answer")]
    Unreachable {
        /// The node's control URL.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The node refused the request.
    #[error("{command} failed ({status}): {message}")]
    Refused {
        /// The request's command.
        command: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The node's message (`no message` if it gave none).
        message: String,
    },
}

/// The control API of the node running in a data directory, read from its `node.json`
/// (the control URL) and `control.token` (the bearer token).
///
/// ```no_run
/// # async fn demo() -> Result<(), asyncpay::node::runtime::ControlError> {
/// use asyncpay::node::runtime::ControlClient;
///
/// let node = ControlClient::open(std::path::Path::new("node-data"))?;
/// let info = node.call("info", &serde_json::json!({})).await?;
/// println!("{}", info["node_key"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ControlClient {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl ControlClient {
    /// The client of the node whose data directory is `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, ControlError> {
        let bytes = std::fs::read(data_dir.join("node.json")).map_err(|source| {
            ControlError::NotRunning {
                dir: data_dir.to_path_buf(),
                source,
            }
        })?;
        let info: Value = serde_json::from_slice(&bytes).map_err(ControlError::NodeFile)?;
        let token =
            std::fs::read_to_string(data_dir.join("control.token")).map_err(ControlError::Token)?;
        let url = info["control_url"]
            .as_str()
            .ok_or(ControlError::NoControlUrl)?
            .to_string();
        Ok(Self {
            url,
            token: token.trim().to_string(),
            http: reqwest::Client::new(),
        })
    }

    /// Sends `command` (`POST /v1/<command>`, see [`super::COMMANDS`]) with its JSON fields
    /// `args`; the node's answer.
    pub async fn call(&self, command: &str, args: &Value) -> Result<Value, ControlError> {
        let url = &self.url;
        let response = self
            .http
            .post(format!("{url}/v1/{command}"))
            .bearer_auth(&self.token)
            .json(args)
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|source| ControlError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(ControlError::Refused {
                command: command.to_string(),
                status,
                message: body["message"].as_str().unwrap_or("no message").to_string(),
            });
        }
        Ok(body)
    }
}
