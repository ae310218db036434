//! The admin API (SPEC §7) under `/api`: 404 unless `admin.token` is set, 401
//! without `Authorization: Bearer <admin.token>`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, Scope};
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::startup::Shared;
use crate::store::{event_summary, DeliveryView, EventQuery, NewDelivery, State, StoreError};
use crate::watch::SubjectState;

pub fn scope() -> Scope {
    web::scope("/api")
        .route("/events", web::get().to(list_events))
        .route("/events/{id}", web::get().to(get_event))
        .route("/events/{id}/replay", web::post().to(replay))
        .route("/deliveries", web::get().to(list_deliveries))
        .route("/deliveries/{id}/retry", web::post().to(retry))
        .route("/backups", web::get().to(list_backups))
        .default_service(web::to(unknown))
}

fn authorize(req: &HttpRequest, shared: &Shared) -> Result<(), ApiError> {
    let relay = shared.relay.load();
    let Some(token) = relay.settings.admin.token.as_ref() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such endpoint"));
    };
    let addr = req.peer_addr().map(|a| a.ip());
    if let Some(left) = shared.wrong_tokens.blocked(addr) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many wrong admin tokens from this address; try again in {} s",
                left.as_secs() + 1
            ),
        )
        .retry_after(left));
    }
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) {
        shared.wrong_tokens.succeeded(addr);
        Ok(())
    } else {
        if !given.is_empty() {
            shared.wrong_tokens.failed(addr);
        }
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token: send Authorization: Bearer <admin.token>",
        ))
    }
}

fn store_error(e: StoreError, what: &str) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::new(StatusCode::NOT_FOUND, format!("no such {what}")),
        e @ StoreError::NotDead { .. } => ApiError::new(
            StatusCode::CONFLICT,
            format!("{e} (to send its event again, replay the event)"),
        ),
        e => {
            log::error!("admin api: {e}");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage is not usable")
        }
    }
}

async fn unknown(req: HttpRequest, shared: web::Data<Shared>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &shared)?;
    Err(ApiError::new(StatusCode::NOT_FOUND, "no such endpoint"))
}

/// The query string as `T`, read after the token is checked (a caller without
/// it learns nothing about the parameters); a malformed one is a 400 with a JSON
/// error like every other refusal.
fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| {
            let why = match e {
                actix_web::error::QueryPayloadError::Deserialize(e) => e.to_string(),
                e => e.to_string(),
            };
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the query string cannot be read: {why}"),
            )
        })
}

/// `limit`: a whole number from 1 up; more than `max` is taken as `max`.
fn limit(given: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    match given {
        None => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n.min(max)),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("limit must be a whole number from 1 to {max}, not {s:?}"),
            )),
        },
    }
}

#[derive(Deserialize)]
struct EventParams {
    limit: Option<String>,
    status: Option<String>,
    source: Option<String>,
    before: Option<String>,
}

async fn list_events(
    req: HttpRequest,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &shared)?;
    let q: EventParams = query(&req)?;
    let limit = limit(q.limit.as_deref(), 50, 500)?;
    if let Some(s) = q.status.as_deref() {
        if crate::event::Status::parse(s).is_none() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "status must be one of {}, not {s:?}",
                    crate::event::Status::NAMES.join(", ")
                ),
            ));
        }
    }
    // Stored ids are lowercase and hyphenated; any other spelling of one (upper
    // case, braces, no hyphens) is written that way before it is looked up.
    let before = match q.before.as_deref() {
        Some(b) => match uuid::Uuid::parse_str(b) {
            Ok(id) => Some(id.hyphenated().to_string()),
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "before must be an event id (the next of the previous page), not {b:?}"
                    ),
                ))
            }
        },
        None => None,
    };
    let items = shared
        .store
        .list_events(EventQuery {
            limit,
            status: q.status,
            source: q.source,
            before,
        })
        .await
        .map_err(|e| match e {
            // An id that does not say when its event was: nowhere to page from.
            StoreError::NotFound => ApiError::new(
                StatusCode::GONE,
                "the event before names is no longer stored and its id does not say where it was; start again without before",
            ),
            e => store_error(e, "event"),
        })?;
    let next = (items.len() == limit)
        .then(|| items.last().map(|r| r.id.clone()))
        .flatten();
    let items: Vec<Value> = items.iter().map(event_summary).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "next": next })))
}

async fn get_event(
    req: HttpRequest,
    shared: web::Data<Shared>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &shared)?;
    let r = shared
        .store
        .get_event(&id)
        .await
        .map_err(|e| store_error(e, "event"))?;
    let group = shared
        .store
        .group_of(&r.id)
        .await
        .map_err(|e| store_error(e, "event"))?;
    let mut event = r.event.fields_json();
    event.insert("raw".into(), r.event.raw.clone());
    Ok(HttpResponse::Ok().json(json!({
        "id": r.id,
        "event": event,
        "routed": r.routed,
        "duplicates": r.duplicates,
        "deliveries": r.deliveries,
        "group": group,
    })))
}

#[derive(Deserialize)]
struct DeliveryParams {
    state: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

async fn list_deliveries(
    req: HttpRequest,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &shared)?;
    let q: DeliveryParams = query(&req)?;
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(State::parse(s).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("state must be one of pending, delivered, dead, not {s:?}"),
            )
        })?),
    };
    let limit = limit(q.limit.as_deref(), 100, 1000)?;
    let before = match q.before.as_deref() {
        None => None,
        Some(b) => Some(b.parse::<i64>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("before must be a delivery id (the next of the previous page), not {b:?}"),
            )
        })?),
    };
    let items = shared
        .store
        .list_deliveries_before(state, limit, before)
        .await
        .map_err(|e| store_error(e, "delivery"))?;
    let next = (items.len() == limit)
        .then(|| items.last().map(|d| d.id))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "next": next })))
}

#[derive(Deserialize)]
struct BackupParams {
    state: Option<String>,
}

/// `GET /api/backups`: every subject of the backup watch, worst first.
async fn list_backups(
    req: HttpRequest,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &shared)?;
    let q: BackupParams = query(&req)?;
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(SubjectState::parse(s).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("state must be one of ok, failing, missing, new, not {s:?}"),
            )
        })?),
    };
    let items: Vec<Value> = shared
        .store
        .list_subjects(state)
        .await
        .map_err(|e| store_error(e, "subject"))?
        .iter()
        .map(|s| s.to_json())
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

async fn retry(
    req: HttpRequest,
    shared: web::Data<Shared>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &shared)?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "no such delivery"))?;
    retry_delivery(&shared, id, "the admin API")
        .await
        .map_err(|e| store_error(e, "delivery"))?;
    Ok(HttpResponse::Accepted().json(json!({ "delivery_id": id, "state": "pending" })))
}

/// Makes a dead delivery pending and due now, and wakes the workers; a pending
/// or delivered one is refused ([`StoreError::NotDead`]): it would be sent
/// twice. `by` names who asked, for the log (the admin API, the web page).
pub(crate) async fn retry_delivery(shared: &Shared, id: i64, by: &str) -> Result<(), StoreError> {
    shared.store.retry_delivery(id).await?;
    shared.notify.notify_waiters();
    log::info!("delivery {id}: retry requested through {by}");
    Ok(())
}

async fn replay(
    req: HttpRequest,
    shared: web::Data<Shared>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &shared)?;
    let (id, n) = replay_event(&shared, &id, "the admin API")
        .await
        .map_err(|e| store_error(e, "event"))?;
    Ok(HttpResponse::Accepted().json(json!({ "event_id": id, "deliveries": n })))
}

/// Routes the stored event again with the current config and queues new
/// deliveries (the old ones stay as they are). A digest is not routed (its
/// destinations are the digest's `to`): it is sent again, as it was, to the
/// destinations it went to with the template it used, those still configured
/// and enabled. hookrelay's `backup.missing` and `backup.recovered` are routed
/// like when they were stored. Returns the event id and how many deliveries
/// were queued.
pub(crate) async fn replay_event(
    shared: &Shared,
    id: &str,
    by: &str,
) -> Result<(String, usize), StoreError> {
    let r = shared.store.get_event(id).await?;
    let relay = shared.relay.load_full();
    let deliveries = if crate::digest::is_digest(&r.event) {
        digest_again(&relay, &r.deliveries)
    } else {
        relay.plan(&r.event).1
    };
    let n = shared.store.add_deliveries(&r.id, deliveries).await?;
    shared.notify.notify_waiters();
    log::info!("event {}: replayed through {by}, {n} deliveries", r.id);
    Ok((r.id, n))
}

/// A digest's deliveries again: each (destination, template) it was sent to
/// once, if that destination is still configured and enabled.
fn digest_again(relay: &crate::relay::Relay, sent: &[DeliveryView]) -> Vec<NewDelivery> {
    let mut again: Vec<NewDelivery> = Vec::new();
    for d in sent {
        let enabled = relay
            .destinations
            .get(&d.destination)
            .is_some_and(|x| x.cfg.common.enabled);
        let seen = again
            .iter()
            .any(|a| a.destination == d.destination && a.template == d.template);
        if enabled && !seen {
            again.push(NewDelivery {
                destination: d.destination.clone(),
                template: d.template.clone(),
                channel: None,
            });
        }
    }
    again
}
