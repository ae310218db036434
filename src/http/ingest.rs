//! `POST /hooks/{source}`: check the sender's token before reading anything
//! more, read the body within the size and time limits (and, while it is not yet
//! authenticated, within a budget shared by all connections), verify its signature
//! on the raw bytes, parse, normalize, route, and store the event with its
//! deliveries in one transaction before answering 202. This path never calls a
//! destination.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::web::{Bytes, BytesMut};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::Value;

use crate::auth::AuthError;
use crate::config::ServerSettings;
use crate::relay::dedup_key;
use crate::startup::Shared;
use crate::store::{Ingested, NewEvent};

/// The answer to a webhook (serialized straight from this, no JSON tree).
#[derive(serde::Serialize)]
struct Answer<'a> {
    event_id: &'a str,
    deliveries: usize,
    duplicate: bool,
}

/// Why a webhook was refused. The text is the one sentence the sender reads.
#[derive(Debug, thiserror::Error)]
enum IngestError {
    #[error("unknown source {0:?}")]
    UnknownSource(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the body did not arrive within {0:?}")]
    Timeout(Duration),
    #[error("too many webhooks are arriving at once; try again")]
    Busy,
    #[error("cannot read the body: {0}")]
    BadBody(String),
    #[error("body is not valid UTF-8")]
    NotUtf8,
    #[error("body is not valid JSON: {0}")]
    BadJson(serde_json::Error),
    #[error("body must be a JSON object")]
    NotObject,
    #[error("body is nested more than {MAX_DEPTH} levels deep")]
    TooDeep,
    #[error("the event could not be stored; try again")]
    Storage,
}

impl IngestError {
    fn status(&self) -> StatusCode {
        match self {
            IngestError::UnknownSource(_) => StatusCode::NOT_FOUND,
            IngestError::Auth(_) => StatusCode::UNAUTHORIZED,
            IngestError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            IngestError::Busy | IngestError::Storage => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::BadBody(_)
            | IngestError::NotUtf8
            | IngestError::BadJson(_)
            | IngestError::NotObject
            | IngestError::TooDeep => StatusCode::BAD_REQUEST,
        }
    }

    /// The `reason` label of `hookrelay_events_rejected_total`.
    fn reason(&self) -> &'static str {
        match self {
            IngestError::UnknownSource(_) => "unknown_source",
            IngestError::Auth(e) => e.reason(),
            IngestError::TooLarge(_) => "too_large",
            IngestError::Timeout(_) => "timeout",
            IngestError::Busy => "busy",
            IngestError::BadBody(_) => "bad_body",
            IngestError::NotUtf8
            | IngestError::BadJson(_)
            | IngestError::NotObject
            | IngestError::TooDeep => "bad_json",
            IngestError::Storage => "storage",
        }
    }

    /// Refused before the whole body was read: the connection is closed after the
    /// answer rather than kept to read (or drain) the rest.
    fn body_unread(&self) -> bool {
        matches!(
            self,
            IngestError::UnknownSource(_)
                | IngestError::Auth(AuthError::MissingToken | AuthError::WrongToken)
                | IngestError::TooLarge(_)
                | IngestError::Timeout(_)
                | IngestError::Busy
                | IngestError::BadBody(_)
        )
    }
}

/// Longest source name echoed in an error or a log line; anything may be posted
/// as a name, and a 40 KB one must not come back whole.
const MAX_NAME_ECHO: usize = 64;

fn shorten(name: &str) -> String {
    match name.char_indices().nth(MAX_NAME_ECHO) {
        Some((at, _)) => format!("{}… ({} bytes)", &name[..at], name.len()),
        None => name.to_string(),
    }
}

/// Limits fixed at start: body size, read deadline, and the memory bodies not
/// yet authenticated may hold between them.
pub struct Limits {
    max_body: usize,
    read_timeout: Duration,
    unauthenticated: ByteBudget,
}

impl Limits {
    pub fn new(cfg: &ServerSettings) -> Limits {
        Limits {
            max_body: cfg.max_body_bytes,
            read_timeout: cfg.read_timeout,
            unauthenticated: ByteBudget(AtomicUsize::new(cfg.max_unauthenticated_bytes)),
        }
    }

    /// `Retry-After` for a 503 past the budget: by then every body holding it now
    /// has arrived or been cut off.
    fn retry_after(&self) -> u64 {
        self.read_timeout.as_secs_f64().ceil().max(1.0) as u64
    }
}

/// Bytes still free for unauthenticated bodies. Taken as bytes arrive (never
/// from a declared `Content-Length`), given back when the body is authenticated
/// or the request ends.
struct ByteBudget(AtomicUsize);

/// One request's share of the [`ByteBudget`], returned on drop.
struct Held<'a> {
    budget: &'a ByteBudget,
    bytes: usize,
}

impl Held<'_> {
    /// Takes `n` more bytes, or refuses without taking any.
    fn grow(&mut self, n: usize) -> bool {
        let taken = self
            .budget
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(n)
            })
            .is_ok();
        if taken {
            self.bytes += n;
        }
        taken
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.0.fetch_add(self.bytes, Ordering::AcqRel);
    }
}

/// Deeper bodies are refused: stored inside its event, a body must still parse
/// (serde_json stops at 128 levels) for its alert to be sent.
const MAX_DEPTH: usize = 100;

fn too_deep(body: &[u8], raw: &Value) -> bool {
    fn depth(v: &Value) -> usize {
        match v {
            Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
            Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    // Depth cannot exceed the number of opening brackets: most bodies stop here.
    body.iter().filter(|&&b| b == b'{' || b == b'[').count() > MAX_DEPTH && depth(raw) > MAX_DEPTH
}

/// The body as hookrelay takes it: UTF-8 (a byte order mark before it is
/// dropped), a JSON object, nested at most [`MAX_DEPTH`] levels. Returns the text
/// stored as `raw` and its tree.
fn parse_body(body: &[u8]) -> Result<(&str, Value), IngestError> {
    let text = std::str::from_utf8(body).map_err(|_| IngestError::NotUtf8)?;
    // Some senders put a UTF-8 byte order mark before the JSON.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let raw: Value = serde_json::from_str(text).map_err(IngestError::BadJson)?;
    if !raw.is_object() {
        return Err(IngestError::NotObject);
    }
    if too_deep(text.as_bytes(), &raw) {
        return Err(IngestError::TooDeep);
    }
    Ok((text, raw))
}

/// A payload file for `render` and `send`, refused as `serve` would refuse it:
/// the error and the status `serve` would answer.
pub(crate) fn check_payload(body: &[u8], max_body: usize) -> Result<Value, (String, u16)> {
    let refuse = |e: IngestError| (e.to_string(), e.status().as_u16());
    if body.len() > max_body {
        return Err(refuse(IngestError::TooLarge(max_body)));
    }
    parse_body(body).map(|(_, raw)| raw).map_err(refuse)
}

/// Every `token` parameter of the query (each one is checked), as written in
/// the URL: `check_token` decodes it, reading a `+` both as itself and as a space.
fn query_tokens(req: &HttpRequest) -> Vec<&str> {
    req.query_string()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| {
            url::form_urlencoded::parse(format!("{k}=").as_bytes())
                .next()
                .is_some_and(|(k, _)| k == "token")
        })
        .map(|(_, v)| v)
        .collect()
}

/// The `{source}` of `/hooks/{source}`: one non-empty path segment.
fn source_name(req: &HttpRequest) -> Option<&str> {
    let name = req.match_info().unprocessed().strip_prefix('/')?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// Reads the body: at most `max_body` bytes, all of it within `read_timeout`,
/// each chunk counted against the budget when `held` is given. Memory follows
/// what arrives: a body that came in one piece is used as it is, a longer one
/// grows as it comes.
async fn read_body(
    payload: &mut web::Payload,
    limits: &Limits,
    mut held: Option<&mut Held<'_>>,
) -> Result<Bytes, IngestError> {
    let deadline = tokio::time::Instant::now() + limits.read_timeout;
    let mut first = Bytes::new();
    let mut rest: Option<BytesMut> = None;
    let mut len = 0usize;
    loop {
        let next = tokio::time::timeout_at(deadline, payload.next())
            .await
            .map_err(|_| IngestError::Timeout(limits.read_timeout))?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| IngestError::BadBody(e.to_string()))?;
        len += chunk.len();
        if len > limits.max_body {
            return Err(IngestError::TooLarge(limits.max_body));
        }
        if let Some(held) = held.as_deref_mut() {
            if !held.grow(chunk.len()) {
                return Err(IngestError::Busy);
            }
        }
        if let Some(buf) = rest.as_mut() {
            buf.extend_from_slice(&chunk);
        } else if first.is_empty() {
            first = chunk;
        } else {
            let mut buf = BytesMut::with_capacity(len);
            buf.extend_from_slice(&first);
            buf.extend_from_slice(&chunk);
            first = Bytes::new();
            rest = Some(buf);
        }
    }
    Ok(rest.map_or(first, BytesMut::freeze))
}

pub async fn ingest(
    req: HttpRequest,
    mut payload: web::Payload,
    shared: web::Data<Shared>,
    limits: web::Data<Limits>,
) -> HttpResponse {
    let Some(name) = source_name(&req) else {
        return super::not_found(payload).await;
    };
    if req.method() != Method::POST {
        return super::method_not_allowed(payload).await;
    }
    match accept(&req, name, &mut payload, &shared, &limits).await {
        Ok(answer) => answer,
        Err(e) => {
            let unread = e.body_unread();
            let res = refuse(&shared, &limits, name, e);
            if unread {
                super::closing(res, payload)
            } else {
                res
            }
        }
    }
}

/// The one place a refusal is counted, logged and answered.
fn refuse(shared: &Shared, limits: &Limits, name: &str, e: IngestError) -> HttpResponse {
    let known = !matches!(e, IngestError::UnknownSource(_));
    // Unknown names are not labels: anyone could mint unbounded label values.
    shared
        .metrics
        .rejected(if known { name } else { "(unknown)" }, e.reason());
    log::warn!("rejected webhook for source {}: {e}", shorten(name));
    let mut res = super::error_json(e.status(), &e.to_string());
    if matches!(e, IngestError::Busy) {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(limits.retry_after()));
    }
    res
}

async fn accept(
    req: &HttpRequest,
    name: &str,
    payload: &mut web::Payload,
    shared: &Shared,
    limits: &Limits,
) -> Result<HttpResponse, IngestError> {
    let relay = shared.relay.load_full();
    let Some(source) = relay.sources.get(name) else {
        return Err(IngestError::UnknownSource(shorten(name)));
    };

    let headers = req.headers();
    let bearer = headers
        .get_all(header::AUTHORIZATION)
        .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok());
    let query = query_tokens(req);
    source.verifier.check_token(bearer, query)?;

    let max = limits.max_body;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(IngestError::TooLarge(max));
    }
    // A token proves the sender before the body is read; otherwise (a signature
    // to check on the body, or an open source) the body is read unauthenticated
    // and counts against the shared budget until it is proven.
    let verifier = &source.verifier;
    let proven_by_token = verifier.signature_header().is_none() && !verifier.is_open();
    let mut held = (!proven_by_token).then_some(Held {
        budget: &limits.unauthenticated,
        bytes: 0,
    });
    let body = read_body(payload, limits, held.as_mut()).await?;

    let sig_value = verifier
        .signature_header()
        .and_then(|h| headers.get(h))
        .and_then(|v| v.to_str().ok());
    verifier.check_signature(sig_value, &body)?;
    if !verifier.is_open() {
        // Authenticated: this body no longer counts against the budget.
        drop(held.take());
    }

    let (text, raw) = parse_body(&body)?;

    let mut event = crate::providers::normalize(name, &source.cfg, raw, chrono::Utc::now());
    // The subject as it is now, for the event's backup-watch fields (which routes
    // may match on). The store applies the event to the subject again inside its
    // transaction, so the subject's own row is always right, and so is whether
    // the event ends a bad run (its `backup.recovered`, decided there); two
    // events of one subject at the same moment may both carry the same `failures`.
    let watch = crate::watch::subject_for(&relay, shared.store.as_ref(), &mut event)
        .await
        .map_err(|e| {
            log::error!("source {name}: cannot read the event's subject: {e}");
            IngestError::Storage
        })?;
    let (routed, deliveries, groups) = relay.plan_grouped(&event);
    let key = dedup_key(&event, text.as_bytes());
    let status = event.status.as_str();
    // For the log lines below; not made when they are not written.
    let summary = if log::log_enabled!(log::Level::Info) {
        format!(
            "{} {} {}",
            event.provider,
            event.event.as_deref().unwrap_or("-"),
            status
        )
    } else {
        String::new()
    };
    // Stored as it came: `raw` is exactly this text, parsed.
    let new = NewEvent::new(
        &mut event,
        Some(text),
        key,
        source.cfg.dedup_window,
        routed,
        deliveries,
    )
    .map(|mut new| {
        new.watch = Some(watch);
        new.groups = groups;
        new
    });
    drop(event);
    let stored = match new {
        Ok(new) => shared.store.ingest(new).await,
        Err(e) => Err(e),
    };
    let stored = stored.map_err(|e| {
        log::error!("source {name}: cannot store the event: {e}");
        IngestError::Storage
    })?;
    match stored {
        Ingested::Stored {
            event_id,
            deliveries,
        } => {
            shared.metrics.received(name, status);
            if !routed {
                shared.metrics.unrouted(name);
            }
            log::info!(
                "accepted event {event_id} from {name}: {summary}, {deliveries} deliveries{}",
                if routed { "" } else { " (matched no route)" }
            );
            Ok(HttpResponse::Accepted().json(Answer {
                event_id: &event_id,
                deliveries,
                duplicate: false,
            }))
        }
        // Only hookrelay's own `backup.missing` claims a deadline.
        Ingested::Skipped => Err(IngestError::Storage),
        Ingested::Duplicate { event_id } => {
            log::info!("duplicate of event {event_id} from {name}: {summary}; no new deliveries");
            Ok(HttpResponse::Ok().json(Answer {
                event_id: &event_id,
                deliveries: 0,
                duplicate: true,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_shortened_on_a_character_boundary() {
        assert_eq!(shorten("cloud66"), "cloud66");
        let exact = "é".repeat(MAX_NAME_ECHO);
        assert_eq!(shorten(&exact), exact);
        let long = "é".repeat(20_000);
        assert_eq!(
            shorten(&long),
            format!("{}… (40000 bytes)", "é".repeat(MAX_NAME_ECHO))
        );
    }
}
