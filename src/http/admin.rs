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

#[derive(Deserialize)]
struct EventParams {
    limit: Option<usize>,
    status: Option<String>,
    source: Option<String>,
    before: Option<String>,
}

async fn list_events(
    req: HttpRequest,
    shared: web::Data<Shared>,
    q: web::Query<EventParams>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &shared)?;
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let items = shared
        .store
        .list_events(EventQuery {
            limit,
            status: q.status,
            source: q.source,
            before: q.before,
        })
        .await
        .map_err(|e| store_error(e, "event"))?;
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
    limit: Option<usize>,
}

async fn list_deliveries(
    req: HttpRequest,
    shared: web::Data<Shared>,
    q: web::Query<DeliveryParams>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &shared)?;
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(State::parse(s).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "state must be pending, delivered or dead",
            )
        })?),
    };
    let items = shared
        .store
        .list_deliveries(state, q.limit.unwrap_or(100).clamp(1, 1000))
        .await
        .map_err(|e| store_error(e, "delivery"))?;
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

#[derive(Deserialize)]
struct BackupParams {
    state: Option<String>,
}

/// `GET /api/backups`: every subject of the backup watch, worst first.
async fn list_backups(
    req: HttpRequest,
    shared: web::Data<Shared>,
    q: web::Query<BackupParams>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &shared)?;
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(SubjectState::parse(s).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "state must be ok, failing, missing or new",
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
