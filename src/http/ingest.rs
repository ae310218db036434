//! `POST /hooks/{source}`: check the sender, read the body within the limit,
//! verify its signature on the raw bytes, parse, normalize, route, and store the
//! event with its deliveries in one transaction before answering 202. This path
//! never calls a destination.

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::Value;

use super::ApiError;
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

/// `server.max_body_bytes`, fixed at start.
pub struct BodyLimit(pub usize);

fn reject(
    shared: &Shared,
    source: &str,
    reason: &str,
    status: StatusCode,
    msg: impl Into<String>,
) -> ApiError {
    shared.metrics.rejected(source, reason);
    let msg = msg.into();
    log::warn!("rejected webhook for source {source}: {msg}");
    ApiError::new(status, msg)
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

fn query_token(req: &HttpRequest) -> Option<String> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// The `{source}` of `/hooks/{source}`: one non-empty path segment.
fn source_name(req: &HttpRequest) -> Option<&str> {
    let name = req.match_info().unprocessed().strip_prefix('/')?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

pub async fn ingest(
    req: HttpRequest,
    mut payload: web::Payload,
    shared: web::Data<Shared>,
    limit: web::Data<BodyLimit>,
) -> Result<HttpResponse, ApiError> {
    let Some(name) = source_name(&req) else {
        return Ok(super::not_found().await);
    };
    if req.method() != Method::POST {
        return Ok(super::method_not_allowed().await);
    }
    let name = name.to_string();
    let relay = shared.relay.load_full();
    let Some(source) = relay.sources.get(&name) else {
        // Not labelled with the name: anyone could mint unbounded label values.
        return Err(reject(
            &shared,
            "(unknown)",
            "unknown_source",
            StatusCode::NOT_FOUND,
            format!("unknown source {name:?}"),
        ));
    };

    let header = |h: &str| req.headers().get(h).and_then(|v| v.to_str().ok());
    if let Err(e) = source
        .verifier
        .check_token(header("authorization"), query_token(&req).as_deref())
    {
        return Err(reject(
            &shared,
            &name,
            e.reason(),
            StatusCode::UNAUTHORIZED,
            e.to_string(),
        ));
    }

    let max = limit.0;
    let too_large = || {
        reject(
            &shared,
            &name,
            "too_large",
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is larger than {max} bytes"),
        )
    };
    let declared = header("content-length").and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(4096).min(max));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            reject(
                &shared,
                &name,
                "bad_body",
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        })?;
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }

    let sig_header = source.verifier.signature_header().map(str::to_string);
    if let Err(e) = source
        .verifier
        .check_signature(sig_header.as_deref().and_then(header), &body)
    {
        return Err(reject(
            &shared,
            &name,
            e.reason(),
            StatusCode::UNAUTHORIZED,
            e.to_string(),
        ));
    }

    let Ok(text) = std::str::from_utf8(&body) else {
        return Err(reject(
            &shared,
            &name,
            "bad_json",
            StatusCode::BAD_REQUEST,
            "body is not valid UTF-8",
        ));
    };
    let raw: Value = serde_json::from_str(text).map_err(|e| {
        reject(
            &shared,
            &name,
            "bad_json",
            StatusCode::BAD_REQUEST,
            format!("body is not valid JSON: {e}"),
        )
    })?;
    if !raw.is_object() {
        return Err(reject(
            &shared,
            &name,
            "bad_json",
            StatusCode::BAD_REQUEST,
            "body must be a JSON object",
        ));
    }
    if too_deep(&body, &raw) {
        return Err(reject(
            &shared,
            &name,
            "bad_json",
            StatusCode::BAD_REQUEST,
            format!("body is nested more than {MAX_DEPTH} levels deep"),
        ));
    }

    let mut event = crate::providers::normalize(&name, &source.cfg, raw, chrono::Utc::now());
    let (routed, deliveries) = relay.plan(&event);
    let key = dedup_key(&event, &body);
    let status = event.status.as_str();
    let summary = format!(
        "{} {} {}",
        event.provider,
        event.event.as_deref().unwrap_or("-"),
        status
    );
    // Stored as it came: `raw` is exactly this text, parsed.
    let new = NewEvent::new(
        &mut event,
        Some(text),
        key,
        source.cfg.dedup_window,
        routed,
        deliveries,
    );
    drop(event);
    let stored = match new {
        Ok(new) => {
            let _storing = shared.storing();
            shared.store.ingest(new).await
        }
        Err(e) => Err(e),
    };
    let stored = stored.map_err(|e| {
        log::error!("source {name}: cannot store the event: {e}");
        reject(
            &shared,
            &name,
            "storage",
            StatusCode::SERVICE_UNAVAILABLE,
            "the event could not be stored; try again",
        )
    })?;
    match stored {
        Ingested::Stored {
            event_id,
            deliveries,
        } => {
            shared.metrics.received(&name, status);
            if !routed {
                shared.metrics.unrouted(&name);
            }
            if deliveries > 0 {
                shared.notify.notify_waiters();
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
