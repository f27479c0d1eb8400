//! The control server: loopback HTTP, one bearer token, one request at a time handed to the
//! driver.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::driver::Ev;
use super::request::Request;

#[derive(Clone)]
pub(super) struct ControlState {
    pub(super) token: Arc<String>,
    pub(super) events: mpsc::UnboundedSender<Ev>,
}

/// Largest control request body.
const MAX_CONTROL_BODY: usize = 1024 * 1024;

pub(super) async fn control_handler(
    State(state): State<ControlState>,
    axum::extract::Path(command): axum::extract::Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> impl IntoResponse {
    // The token is checked before a byte of the body is read, and compared in constant time.
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| {
            use subtle::ConstantTimeEq as _;
            bool::from(t.as_bytes().ct_eq(state.token.as_bytes()))
        });
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "unauthorized", "message": "bad or missing control token"})),
        );
    }
    let args = match axum::body::to_bytes(body, MAX_CONTROL_BODY).await {
        Ok(bytes) if bytes.is_empty() => Value::Null,
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(value) => value,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": "malformed", "message": format!("arguments: {e}")})),
                )
            }
        },
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "malformed", "message": format!("body: {e}")})),
            )
        }
    };
    let request = match Request::parse(&command, args) {
        Ok(request) => request,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "malformed", "message": e.to_string()})),
            )
        }
    };
    let (reply, answer) = oneshot::channel();
    if state
        .events
        .send(Ev::Control {
            request: Box::new(request),
            reply,
        })
        .is_err()
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "stopping", "message": "the node is stopping"})),
        );
    }
    match answer.await {
        Ok(Ok(value)) => (StatusCode::OK, Json(value)),
        Ok(Err(message)) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "refused", "message": message})),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "stopping", "message": "the node is stopping"})),
        ),
    }
}
