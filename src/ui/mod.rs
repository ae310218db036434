//! The web page (SPEC §11) under `/ui`: the backups board, the delivery log and
//! the event page with Retry and Replay. 404 unless `admin.token` is set.
//!
//! Rendered on the server (see `pages`); no scripts, so it works with JavaScript
//! off. Sign-in with the admin token gives a signed session cookie (see
//! `session`); every form carries a CSRF token; the Content-Security-Policy lets
//! the page load nothing but its own stylesheet and icon.

pub mod board;
mod pages;
pub mod session;

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError, Scope};
use chrono::{Days, Utc};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use self::pages::Chrome;
use self::session::{Key, Session, LOGIN_COOKIE, LOGIN_TTL, SESSION_COOKIE, SESSION_TTL};
use crate::startup::Shared;
use crate::store::{EventQuery, State, StoreError};

/// Nothing from another origin; no scripts at all; forms post only here; never
/// framed.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLE: &str = include_str!("style.css");
const FAVICON: &str = include_str!("favicon.svg");
/// Events a page of the delivery log shows.
const PAGE: usize = 50;

pub fn scope() -> Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::scope("/ui")
        .wrap(
            DefaultHeaders::new()
                .add(("Content-Security-Policy", CSP))
                .add(("X-Content-Type-Options", "nosniff"))
                .add(("X-Frame-Options", "DENY"))
                .add(("Referrer-Policy", "same-origin"))
                .add(("Cache-Control", "no-store")),
        )
        .route("", web::get().to(board_page))
        .route("/", web::get().to(board_page))
        .route("/login", web::get().to(login_form))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout))
        .route("/events", web::get().to(log_page))
        .route("/events/{id}", web::get().to(event_page))
        .route("/events/{id}/replay", web::post().to(replay))
        .route("/deliveries/{id}/retry", web::post().to(retry))
        .route("/style.css", web::get().to(style))
        .route("/favicon.svg", web::get().to(favicon))
        .default_service(web::to(unknown))
}

#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// `admin.token` is not set: the page does not exist.
    #[error("no such endpoint")]
    Disabled,
    #[error("sign in first")]
    SignIn { next: String },
    #[error(
        "This form has expired or did not come from this page. Load the page again and retry."
    )]
    Csrf,
    #[error("No such {0}.")]
    NotFound(&'static str),
    #[error("{0}")]
    BadRequest(String),
    /// A button whose action no longer applies (a retry of a delivery that is no
    /// longer dead: another tab or the API got there first).
    #[error("{0}")]
    Conflict(String),
    #[error("Storage is not usable right now; try again in a moment.")]
    Storage,
}

impl UiError {
    fn store(e: StoreError, what: &'static str) -> UiError {
        match e {
            StoreError::NotFound => UiError::NotFound(what),
            StoreError::NotDead { id, state } => UiError::Conflict(format!(
                "Delivery {id} is {}: only a dead delivery is retried. Load the event again to see where it is.",
                state.as_str()
            )),
            e => {
                log::error!("web page: {e}");
                UiError::Storage
            }
        }
    }
}

impl ResponseError for UiError {
    fn status_code(&self) -> StatusCode {
        match self {
            UiError::Disabled | UiError::NotFound(_) => StatusCode::NOT_FOUND,
            UiError::SignIn { .. } => StatusCode::SEE_OTHER,
            UiError::Csrf => StatusCode::FORBIDDEN,
            UiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            UiError::Conflict(_) => StatusCode::CONFLICT,
            UiError::Storage => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            // Exactly what any unknown path answers.
            UiError::Disabled => crate::http::error_json(StatusCode::NOT_FOUND, "no such endpoint"),
            UiError::SignIn { next } => see_other(&format!("/ui/login?next={}", encode(next))),
            e => {
                let chrome = Chrome {
                    csrf: None,
                    tab: "",
                    now_ms: Utc::now().timestamp_millis(),
                };
                html(self.status_code(), pages::error(&e.to_string(), &chrome))
            }
        }
    }
}

fn html(status: StatusCode, markup: maud::Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Where to go after signing in: only a page of this site under `/ui`.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if (n == "/ui" || n.starts_with("/ui/") || n.starts_with("/ui?"))
                && !n.contains("//")
                && !n.contains('\\')
                && !n.starts_with("/ui/login") =>
        {
            n.to_string()
        }
        _ => "/ui".to_string(),
    }
}

fn shared(req: &HttpRequest) -> &Shared {
    req.app_data::<web::Data<Shared>>()
        .expect("Shared is registered with the app")
}

/// The signing key, or `Disabled` without `admin.token`.
fn key(req: &HttpRequest) -> Result<Key, UiError> {
    let relay = shared(req).relay.load();
    let token = relay
        .settings
        .admin
        .token
        .as_ref()
        .ok_or(UiError::Disabled)?;
    Ok(Key::from_admin_token(token.expose()))
}

fn cookie_value(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| session::cookie(h, name).map(str::to_string))
}

fn now_s() -> i64 {
    Utc::now().timestamp()
}

fn secure(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}

/// A signed-in request.
pub struct Authed {
    key: Key,
    session: Session,
}

impl Authed {
    fn csrf(&self) -> String {
        self.key.csrf(&self.session)
    }

    /// Refuses a form whose CSRF token is not this session's.
    fn check(&self, given: &str) -> Result<(), UiError> {
        if self.key.check_csrf(&self.session, given) {
            Ok(())
        } else {
            Err(UiError::Csrf)
        }
    }
}

impl FromRequest for Authed {
    type Error = UiError;
    type Future = Ready<Result<Authed, UiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authed(req))
    }
}

fn authed(req: &HttpRequest) -> Result<Authed, UiError> {
    let key = key(req)?;
    let session = cookie_value(req, SESSION_COOKIE)
        .and_then(|v| key.check_session(&v, now_s()))
        .ok_or_else(|| UiError::SignIn {
            // After signing in, back to the page asked for (a form's target
            // is no page: back to the board).
            next: if req.method() == actix_web::http::Method::GET {
                safe_next(Some(&req.uri().to_string()))
            } else {
                "/ui".into()
            },
        })?;
    Ok(Authed { key, session })
}

fn chrome<'a>(csrf: &'a str, tab: &'a str) -> Chrome<'a> {
    Chrome {
        csrf: Some(csrf),
        tab,
        now_ms: Utc::now().timestamp_millis(),
    }
}

async fn unknown(req: HttpRequest) -> Result<HttpResponse, UiError> {
    key(&req)?;
    Err(UiError::NotFound("page"))
}

async fn style(req: HttpRequest) -> Result<HttpResponse, UiError> {
    key(&req)?;
    Ok(HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "max-age=3600"))
        .body(STYLE))
}

async fn favicon(req: HttpRequest) -> Result<HttpResponse, UiError> {
    key(&req)?;
    Ok(HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header((header::CACHE_CONTROL, "max-age=3600"))
        .body(FAVICON))
}

// ---- sign-in ----

#[derive(Deserialize)]
struct NextParam {
    next: Option<String>,
}

fn login_response(
    req: &HttpRequest,
    key: &Key,
    status: StatusCode,
    next: &str,
    error: Option<&str>,
) -> HttpResponse {
    let (cookie, token) = key.new_login(now_s());
    let markup = pages::login(&token, next, error, Utc::now().timestamp_millis());
    let mut res = html(status, markup);
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(
        LOGIN_COOKIE,
        &cookie,
        LOGIN_TTL,
        secure(req),
    )) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

async fn login_form(req: HttpRequest, q: web::Query<NextParam>) -> Result<HttpResponse, UiError> {
    let key = key(&req)?;
    let next = safe_next(q.next.as_deref());
    if authed(&req).is_ok() {
        return Ok(see_other(&next));
    }
    Ok(login_response(&req, &key, StatusCode::OK, &next, None))
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

async fn login(req: HttpRequest, form: web::Form<LoginForm>) -> Result<HttpResponse, UiError> {
    let key = key(&req)?;
    let next = safe_next(form.next.as_deref());
    let form_ok =
        cookie_value(&req, LOGIN_COOKIE).is_some_and(|c| key.check_login(&c, &form.csrf, now_s()));
    if !form_ok {
        return Ok(login_response(
            &req,
            &key,
            StatusCode::FORBIDDEN,
            &next,
            Some("The sign-in form had expired. Enter the token again."),
        ));
    }
    let addr = req.peer_addr().map(|a| a.ip());
    let wrong_tokens = &shared(&req).wrong_tokens;
    if let Some(left) = wrong_tokens.blocked(addr) {
        let mut res = login_response(
            &req,
            &key,
            StatusCode::TOO_MANY_REQUESTS,
            &next,
            Some(&format!(
                "Too many wrong tokens from this address. Try again in {} seconds.",
                left.as_secs() + 1
            )),
        );
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(left.as_secs() + 1));
        return Ok(res);
    }
    let relay = shared(&req).relay.load();
    let right = relay
        .settings
        .admin
        .token
        .as_ref()
        .is_some_and(|t| bool::from(form.token.as_bytes().ct_eq(t.expose().as_bytes())));
    if !right {
        wrong_tokens.failed(addr);
        log::warn!("web page: sign-in with a wrong admin token");
        return Ok(login_response(
            &req,
            &key,
            StatusCode::UNAUTHORIZED,
            &next,
            Some("That is not the admin token."),
        ));
    }
    wrong_tokens.succeeded(addr);
    let mut res = see_other(&next);
    let secure = secure(&req);
    for c in [
        session::set_cookie(
            SESSION_COOKIE,
            &key.new_session(now_s()),
            SESSION_TTL,
            secure,
        ),
        session::set_cookie(LOGIN_COOKIE, "", std::time::Duration::ZERO, secure),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(res)
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    req: HttpRequest,
    auth: Authed,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, UiError> {
    auth.check(&form.csrf)?;
    let mut res = see_other("/ui/login");
    let c = session::set_cookie(SESSION_COOKIE, "", std::time::Duration::ZERO, secure(&req));
    if let Ok(v) = HeaderValue::from_str(&c) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(res)
}

// ---- pages ----

/// A filter from a query string: an empty value (the form's "any") is none.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn source_names(shared: &Shared) -> Vec<String> {
    shared.relay.load().sources.keys().cloned().collect()
}

#[derive(Deserialize)]
struct BoardParams {
    state: Option<String>,
    source: Option<String>,
}

async fn board_page(
    auth: Authed,
    shared: web::Data<Shared>,
    q: web::Query<BoardParams>,
) -> Result<HttpResponse, UiError> {
    let today = Utc::now().date_naive();
    let since = (today - Days::new(board::DAYS as u64 - 1))
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis())
        .unwrap_or(0);
    let outcomes = shared
        .store
        .outcomes_since(since)
        .await
        .map_err(|e| UiError::store(e, "event"))?;
    let stored = shared
        .store
        .list_subjects(None)
        .await
        .map_err(|e| UiError::store(e, "event"))?;
    let strips = board::strips(&outcomes, today);
    let mut subjects = board::from_store(&stored, &outcomes);
    board::sort_worst_first(&mut subjects);
    let counts = board::counts(&subjects);
    let state = given(&q.state);
    let source = given(&q.source);
    subjects.retain(|s| state.is_none_or(|x| s.state == x) && source.is_none_or(|x| s.source == x));
    let names = source_names(&shared);
    let sources: Vec<&str> = names.iter().map(String::as_str).collect();
    let csrf = auth.csrf();
    let view = pages::BoardView {
        subjects: &subjects,
        counts: &counts,
        strips: &strips,
        state,
        source,
        sources: &sources,
    };
    Ok(html(
        StatusCode::OK,
        pages::board(&view, &chrome(&csrf, "board")),
    ))
}

#[derive(Deserialize)]
struct LogParams {
    status: Option<String>,
    source: Option<String>,
    delivery: Option<String>,
    before: Option<String>,
}

async fn log_page(
    auth: Authed,
    shared: web::Data<Shared>,
    q: web::Query<LogParams>,
) -> Result<HttpResponse, UiError> {
    let status = given(&q.status);
    let source = given(&q.source);
    let delivery = given(&q.delivery);
    let before = given(&q.before);
    let state = match delivery {
        None => None,
        Some(d) => Some(State::parse(d).ok_or_else(|| {
            UiError::BadRequest("Delivery must be pending, delivered or dead.".into())
        })?),
    };
    // Checked as the admin API checks them: an unknown status would list
    // nothing, as if no event had it.
    if let Some(s) = status {
        if crate::event::Status::parse(s).is_none() {
            return Err(UiError::BadRequest(format!(
                "Status must be one of {}.",
                crate::event::Status::NAMES.join(", ")
            )));
        }
    }
    // Any spelling of an event id, written as stored (see the admin API).
    let before = match before {
        Some(b) => Some(
            uuid::Uuid::parse_str(b)
                .map(|id| id.hyphenated().to_string())
                .map_err(|_| UiError::BadRequest("“Older” takes the id of an event.".into()))?,
        ),
        None => None,
    };
    let query = EventQuery {
        limit: PAGE,
        status: status.map(String::from),
        source: source.map(String::from),
        before: before.clone(),
    };
    let events = match state {
        Some(s) => shared.store.list_events_with_delivery(query, s).await,
        None => shared.store.list_events(query).await,
    }
    .map_err(|e| UiError::store(e, "event"))?;
    // The filters, kept on every page link.
    let filters = [
        ("status", status),
        ("source", source),
        ("delivery", delivery),
    ];
    let link = |before: Option<&str>| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in filters {
            if let Some(v) = v {
                s.append_pair(k, v);
            }
        }
        if let Some(b) = before {
            s.append_pair("before", b);
        }
        let s = s.finish();
        if s.is_empty() {
            s
        } else {
            format!("?{s}")
        }
    };
    let older = (events.len() == PAGE)
        .then(|| events.last().map(|r| link(Some(&r.id))))
        .flatten();
    let names = source_names(&shared);
    let sources: Vec<&str> = names.iter().map(String::as_str).collect();
    let csrf = auth.csrf();
    let view = pages::LogView {
        events: &events,
        status,
        source,
        delivery,
        sources: &sources,
        older,
        paged: before.is_some(),
        newest: link(None),
    };
    Ok(html(
        StatusCode::OK,
        pages::log(&view, &chrome(&csrf, "log")),
    ))
}

#[derive(Deserialize)]
struct EventParams {
    retried: Option<i64>,
    replayed: Option<usize>,
}

async fn event_page(
    auth: Authed,
    shared: web::Data<Shared>,
    id: web::Path<String>,
    q: web::Query<EventParams>,
) -> Result<HttpResponse, UiError> {
    let record = shared
        .store
        .get_event(&id)
        .await
        .map_err(|e| UiError::store(e, "event"))?;
    let group = shared
        .store
        .group_of(&record.id)
        .await
        .map_err(|e| UiError::store(e, "event"))?;
    let flash = match (q.retried, q.replayed) {
        (Some(d), _) => Some(format!("Delivery {d} queued for retry.")),
        (_, Some(n)) => Some(format!("Event replayed: {n} new deliveries queued.")),
        _ => None,
    };
    let csrf = auth.csrf();
    let view = pages::EventView {
        record: &record,
        group: group.as_ref(),
        csrf: &csrf,
        flash: flash.as_deref(),
    };
    Ok(html(
        StatusCode::OK,
        pages::event(&view, &chrome(&csrf, "log")),
    ))
}

#[derive(Deserialize)]
struct RetryForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    event: String,
}

async fn retry(
    auth: Authed,
    shared: web::Data<Shared>,
    id: web::Path<String>,
    form: web::Form<RetryForm>,
) -> Result<HttpResponse, UiError> {
    auth.check(&form.csrf)?;
    let id: i64 = id.parse().map_err(|_| UiError::NotFound("delivery"))?;
    crate::http::admin::retry_delivery(&shared, id, "the web page")
        .await
        .map_err(|e| UiError::store(e, "delivery"))?;
    Ok(see_other(&format!(
        "/ui/events/{}?retried={id}#delivery-{id}",
        encode(&form.event)
    )))
}

async fn replay(
    auth: Authed,
    shared: web::Data<Shared>,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, UiError> {
    auth.check(&form.csrf)?;
    let (id, n) = crate::http::admin::replay_event(&shared, &id, "the web page")
        .await
        .map_err(|e| UiError::store(e, "event"))?;
    Ok(see_other(&format!(
        "/ui/events/{}?replayed={n}",
        encode(&id)
    )))
}
