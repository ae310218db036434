//! Destinations: one file per type behind two traits. [`DestinationSettings`] is
//! a type's parsed `destinations.<name>` keys (it checks them, describes them for
//! `hookrelay check` and builds the sender); [`Destination`] turns a rendered
//! [`Message`] into the exact request it sends ([`Destination::prepare`], also what
//! `hookrelay render` prints) and sends it ([`Destination::send`]).
//!
//! Whether a failure is worth retrying is decided once, in [`classify_status`] and
//! [`classify_reqwest`], never per destination.
//!
//! Adding a destination: one file here (its config type, validation, request and
//! [`Kind`]), one line in [`KINDS`], its default templates in `templates/`, and a
//! test against a local server.

pub mod client;
pub mod console;
pub mod discord;
pub mod email;
pub mod google_chat;
pub mod mattermost;
pub mod ntfy;
pub mod pagerduty;
pub mod slack;
pub mod teams;
pub mod telegram;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::{ConfigError, RateLimit};
use crate::templates::Body;

/// Every destination type: its registration line.
pub const KINDS: &[Kind] = &[
    slack::KIND,
    teams::KIND,
    email::KIND,
    webhook::KIND,
    console::KIND,
    discord::KIND,
    pagerduty::KIND,
    telegram::KIND,
    mattermost::KIND,
    google_chat::KIND,
    ntfy::KIND,
];

/// The registration of one destination type.
pub struct Kind {
    /// The `type:` value.
    pub name: &'static str,
    /// Parses the type's own keys (the common ones already taken out), naming
    /// every error's key below the given place.
    pub parse: ParseFn,
    /// Its default templates, embedded in the binary: (file name, text).
    pub templates: &'static [(&'static str, &'static str)],
    /// How `{{x}}` is escaped in its text templates (`<name>.<type>.hbs`).
    pub text_escape: TextEscape,
    /// Text and an HTML part (`<name>.<type>.html.hbs`) instead of a JSON body.
    pub html_part: bool,
}

pub type ParseFn = fn(&str, Value, &mut Vec<ConfigError>) -> Option<Arc<dyn DestinationSettings>>;

/// The escaping of a destination's text templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEscape {
    /// No escaping: the destination shows text as it is.
    Plain,
    /// Slack mrkdwn: `&`, `<`, `>`.
    Slack,
    /// HTML.
    Html,
    /// Mattermost Markdown ([`mattermost::escape_markdown`]).
    Markdown,
}

/// The registration of `type: name`, if there is one.
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// The `type:` values, for error messages.
pub fn type_names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.name).collect()
}

/// A type's [`ParseFn`]: its config type deserialized strictly.
pub fn parse_as<T: DestinationSettings + DeserializeOwned + 'static>(
    place: &str,
    v: Value,
    errors: &mut Vec<ConfigError>,
) -> Option<Arc<dyn DestinationSettings>> {
    crate::config::parse_at::<T>(place, v, errors)
        .map(|x| Arc::new(x) as Arc<dyn DestinationSettings>)
}

/// A destination type's own keys, parsed. `Debug` never shows a secret.
pub trait DestinationSettings: std::fmt::Debug + Send + Sync {
    /// The `type:` value.
    fn type_name(&self) -> &'static str;
    /// What deserializing cannot check (URLs, addresses, combinations of keys);
    /// each error names its key below `place`, and never quotes a secret. Only
    /// called for an enabled destination.
    fn check(&self, place: &str, errors: &mut Vec<ConfigError>);
    /// What works today but should be changed (an endpoint its service retired
    /// or is retiring): `check` prints these and `serve` logs them, and neither
    /// refuses the config. Same rules as [`Self::check`]: each names its key
    /// below `place` and never quotes a secret.
    fn warnings(&self, _place: &str, _warnings: &mut Vec<ConfigError>) {}
    /// Where it sends, in a few words, for `hookrelay check`; never a secret.
    fn describe(&self) -> String;
    /// Builds the sender; `timeout` bounds each send.
    fn build(&self, http: &Http, timeout: Duration) -> Arc<dyn Destination>;
    /// The rate limit when `rate_limit` is not set (the service's own limit).
    fn default_rate_limit(&self) -> Option<RateLimit> {
        None
    }
    /// A one-line template rendered into [`Message::subject`] for every message:
    /// (its config key, its text).
    fn subject(&self) -> Option<(&'static str, &str)> {
        None
    }
    /// A channel template rendered into [`Message::channel`] when the delivery is
    /// planned: (its config key, its text). Only when [`Self::takes_channel`].
    fn channel(&self) -> Option<(&'static str, &str)> {
        None
    }
    /// Whether a route's `channel` applies to this destination.
    fn takes_channel(&self) -> bool {
        false
    }
}

/// Keys every destination type takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationCommon {
    #[serde(default = "yes", deserialize_with = "crate::config::de_bool")]
    pub enabled: bool,
    /// `N/s`, `N/min` or `N/h`; absent: the type's default.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    #[serde(
        default = "default_timeout",
        deserialize_with = "crate::config::de_duration"
    )]
    pub timeout: Duration,
}

fn yes() -> bool {
    true
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// One `destinations.<name>` entry.
#[derive(Debug, Clone)]
pub struct DestinationConfig {
    pub common: DestinationCommon,
    pub kind: Arc<dyn DestinationSettings>,
}

impl DestinationConfig {
    /// The effective rate limit: the configured one, else the type's default.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.common
            .rate_limit
            .or_else(|| self.kind.default_rate_limit())
    }
}

const COMMON_KEYS: &[&str] = &["enabled", "rate_limit", "timeout"];

/// Parses one `destinations.<name>` mapping at `place`, collecting every error.
pub fn parse_config(
    place: &str,
    v: Value,
    errors: &mut Vec<ConfigError>,
) -> Option<DestinationConfig> {
    let Value::Object(mut m) = v else {
        errors.push(ConfigError::new(place, "expected a mapping with a `type`"));
        return None;
    };
    let names = type_names().join(", ");
    let kind = match m.remove("type") {
        Some(Value::String(t)) => match kind(&t) {
            Some(k) => k,
            None => {
                errors.push(ConfigError::new(
                    format!("{place}.type"),
                    format!("unknown type {t:?}; expected one of {names}"),
                ));
                return None;
            }
        },
        Some(_) | None => {
            errors.push(ConfigError::new(
                format!("{place}.type"),
                format!("missing; expected one of {names}"),
            ));
            return None;
        }
    };
    let mut common = Map::new();
    for k in COMMON_KEYS {
        if let Some(v) = m.remove(*k) {
            common.insert((*k).to_string(), v);
        }
    }
    let common: Option<DestinationCommon> =
        crate::config::parse_at(place, Value::Object(common), errors);
    let settings = (kind.parse)(place, Value::Object(m), errors)?;
    // Checked also when a common key is wrong: a bad `rate_limit` must not hide
    // a bad URL next to it.
    if common.as_ref().is_none_or(|c| c.enabled) {
        settings.check(place, errors);
    }
    let common = common?;
    Some(DestinationConfig {
        common,
        kind: settings,
    })
}

/// Checks that `url` is an http(s) URL; the error never quotes it (webhook URLs
/// are credentials).
pub fn check_url(place: String, url: &str, errors: &mut Vec<ConfigError>) {
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
        Ok(_) => errors.push(ConfigError::new(
            place,
            "must be an http:// or https:// URL",
        )),
        Err(_) if url.is_empty() => errors.push(ConfigError::new(place, "is empty")),
        Err(e) => errors.push(ConfigError::new(place, format!("is not a valid URL ({e})"))),
    }
}

/// Checks that a header name is valid.
pub fn check_header_name(place: String, name: &str, errors: &mut Vec<ConfigError>) {
    if HeaderName::try_from(name).is_err() {
        errors.push(ConfigError::new(place, "is not a valid header name"));
    }
}

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
    /// A JSON POST whose body is this text as a JSON template rendered it
    /// (webhook; see [`Destination::sends_json_as_is`]).
    JsonText(String),
    Email {
        from: String,
        to: Vec<String>,
        subject: String,
        text: String,
        html: Option<String>,
    },
    /// A line (or lines) for standard output.
    Console(String),
    /// Nothing is sent, for this reason: the template chose to send nothing (a
    /// PagerDuty `event_action: none`, as the default one renders for an event
    /// of status `unknown`). Sending it ends the delivery at once, with the
    /// reason as its note; `render` and `send` print the reason.
    Nothing(String),
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
    /// Delivered, but not entirely as asked (an email recipient the server
    /// refused): recorded as the attempt's error and the delivery's `last_error`.
    pub note: Option<String>,
}

impl Sent {
    /// The end of a [`Request::Nothing`]: nothing went out, and the delivery's
    /// note says why (`not sent: <reason>`).
    pub fn nothing(reason: &str) -> Sent {
        Sent {
            status: None,
            note: Some(format!("not sent: {reason}")),
        }
    }
}

/// What a request does to an incident its destination keeps (PagerDuty's
/// `dedup_key`): such requests are sent in their events' order, and one whose
/// event is older than one already delivered for the key is not sent at all
/// (see `Store::begin_ordered`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderKey {
    pub key: String,
    /// What the request does there (`trigger`, `resolve`), for the record.
    pub action: String,
}

#[async_trait]
pub trait Destination: Send + Sync {
    /// The incident `req` belongs to, for a destination where an older message
    /// sent after a newer one would undo it (a trigger after a resolve).
    fn order_key(&self, _req: &Request) -> Option<OrderKey> {
        None
    }
    /// The exact request body for `msg`, shortened to the destination's limits.
    fn prepare(&self, msg: &Message) -> Result<Request, SendError>;
    /// [`prepare`](Self::prepare) of a message not needed afterwards (a
    /// delivery's): a destination that builds its request from the rendered body
    /// takes it instead of copying it.
    fn prepare_owned(&self, msg: Message) -> Result<Request, SendError> {
        self.prepare(&msg)
    }
    /// Whether a body from a JSON template is sent exactly as it rendered (the
    /// request is then a [`Request::JsonText`], prepared without [`prepare`](Self::prepare)).
    fn sends_json_as_is(&self) -> bool {
        false
    }
    /// Sends a prepared request once. `delivery_id` is the same on every attempt
    /// of one delivery; HTTP destinations send it as [`DELIVERY_ID_HEADER`] so a
    /// receiver can drop a repeat (delivery is at-least-once).
    async fn send(&self, req: &Request, delivery_id: &str) -> Result<Sent, SendError>;
    /// [`send`](Self::send) for an attempt of a stored delivery, which earlier
    /// attempts may have sent to some of its recipients: `reached` names them (as
    /// the store kept them), and they are not sent it again; those who take it
    /// now are added. Where one request reaches every recipient or none (every
    /// destination but email over SMTP), nothing is skipped.
    async fn send_unreached(
        &self,
        req: &Request,
        delivery_id: &str,
        reached: &mut Vec<String>,
    ) -> Result<Sent, SendError> {
        let _ = reached;
        self.send(req, delivery_id).await
    }
}

/// `User-Agent` of every HTTP request hookrelay sends.
pub const USER_AGENT: &str = concat!("hookrelay/", env!("CARGO_PKG_VERSION"));

/// The header carrying the delivery id on every HTTP request hookrelay sends.
pub const DELIVERY_ID_HEADER: &str = "Hookrelay-Delivery-Id";

/// The most of any response body hookrelay reads (SPEC §6): enough for an error
/// excerpt or a small JSON answer; a destination answering more cannot make a
/// worker hold it.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The HTTP client every destination shares, built when a send first needs it:
/// most sends go out through [`client`] and never do, and building it (TLS roots,
/// connection pool) costs a started server most of a megabyte before any alert.
/// Redirects are never followed: a 301/302/303 would be followed as a GET without
/// the body (the alert silently lost, recorded delivered) and a 307/308 would
/// carry the body and API keys to any host; [`classify_status`] reports a 3xx
/// with its `Location` instead.
#[derive(Clone, Default)]
pub struct Http(Arc<std::sync::OnceLock<reqwest::Client>>);

impl std::ops::Deref for Http {
    type Target = reqwest::Client;

    fn deref(&self) -> &reqwest::Client {
        self.0.get_or_init(new_http_client)
    }
}

impl Http {
    /// Whether the client has been built (see [`Http`]).
    pub fn built(&self) -> bool {
        self.0.get().is_some()
    }
}

/// See [`Http`].
pub fn http_client() -> Http {
    Http::default()
}

fn new_http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// The longest wait a destination may ask for with `Retry-After`.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How much of a response body an error message quotes, in characters.
const EXCERPT_CHARS: usize = 200;

/// Builds the destination for `cfg`. `http` is the shared client; `cfg.common.timeout`
/// bounds each send.
pub fn build(cfg: &DestinationConfig, http: &Http) -> Arc<dyn Destination> {
    cfg.kind.build(http, cfg.common.timeout)
}

/// The one place an HTTP answer is judged: 2xx is success; 5xx, 408 and 429 are
/// transient (with `Retry-After` read, in seconds or as an HTTP date, clamped to
/// 1h); every other status is permanent. `body` is quoted, shortened, in the error.
pub fn classify_status(status: u16, headers: &HeaderMap, body: &str) -> Result<Sent, SendError> {
    if (200..300).contains(&status) {
        return Ok(Sent {
            status: Some(status),
            note: None,
        });
    }
    if (300..400).contains(&status) {
        let location = headers
            .get(reqwest::header::LOCATION)
            .map(|l| excerpt(&String::from_utf8_lossy(l.as_bytes())))
            .filter(|l| !l.is_empty());
        let message = match location {
            Some(l) => format!(
                "HTTP {status} from destination: redirected to {l}; hookrelay does not \
                 follow redirects, set the destination's URL to where it points"
            ),
            None => format!(
                "HTTP {status} from destination: a redirect without a Location; \
                 hookrelay does not follow redirects"
            ),
        };
        return Err(SendError {
            transient: false,
            status: Some(status),
            retry_after: None,
            message,
        });
    }
    let transient = status >= 500 || status == 408 || status == 429;
    let retry_after = headers.get(RETRY_AFTER).and_then(parse_retry_after);
    let excerpt = excerpt(body);
    let message = if excerpt.is_empty() {
        format!("HTTP {status} from destination (empty body)")
    } else {
        format!("HTTP {status} from destination: {excerpt}")
    };
    Err(SendError {
        transient,
        status: Some(status),
        retry_after,
        message,
    })
}

/// Reads a `Retry-After` value: delay-seconds or an HTTP date (a date in the past
/// means "now"), clamped to [`MAX_RETRY_AFTER`]. Anything unreadable is ignored.
pub fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    let s = value.to_str().ok()?.trim();
    if s.is_empty() {
        return None;
    }
    let wait = if s.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "a very long time".
        Duration::from_secs(s.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(s).ok()?;
        let secs = at
            .signed_duration_since(chrono::Utc::now())
            .num_seconds()
            .max(0);
        Duration::from_secs(u64::try_from(secs).unwrap_or(0))
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// A response body made fit for one line of an error message: whitespace runs
/// collapsed, at most 200 characters, "…" when cut.
pub fn excerpt(body: &str) -> String {
    let one_line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    shorten(&one_line, EXCERPT_CHARS)
}

/// `s` cut to at most `max_chars` characters (not bytes), the last one a visible
/// "…" when anything was cut. Never splits a character.
pub fn shorten(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        None => s.to_string(),
        Some(_) if max_chars == 0 => String::new(),
        Some(_) => {
            // Byte offset of the (max_chars - 1)th character: keep what precedes it.
            let cut = s
                .char_indices()
                .nth(max_chars - 1)
                .map_or(s.len(), |(i, _)| i);
            let mut out = String::with_capacity(cut + 3);
            out.push_str(&s[..cut]);
            out.push('…');
            out
        }
    }
}

/// Timeouts and connection errors are transient; anything else reqwest reports
/// (a malformed URL, say) is permanent. The URL is never part of the message.
pub fn classify_reqwest(e: &reqwest::Error) -> SendError {
    let (transient, what) = if e.is_timeout() {
        (true, "timed out")
    } else if e.is_connect() {
        (true, "could not connect")
    } else if e.is_request() || e.is_body() {
        // The connection broke while the request or the answer was on the wire.
        (true, "connection failed")
    } else if e.is_builder() {
        (false, "could not build the request")
    } else if e.is_redirect() {
        (false, "too many or invalid redirects")
    } else if e.is_decode() {
        (false, "could not read the answer")
    } else {
        (false, "request failed")
    };
    // reqwest's own Display names the URL; the causes below it (hyper, io) do not.
    let mut cause = None;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = Some(s.to_string());
        source = s.source();
    }
    let mut message = match cause {
        _ if e.is_timeout() => format!("destination {what}"),
        Some(c) if !c.is_empty() => format!("destination {what}: {}", excerpt(&c)),
        _ => format!("destination {what}"),
    };
    if let Some(url) = e.url() {
        message = scrub(&message, url.as_str());
        if url.path().len() > 1 {
            message = scrub(&message, url.path());
        }
        if let Some(q) = url.query() {
            message = scrub(&message, q);
        }
    }
    SendError {
        transient,
        status: e.status().map(|s| s.as_u16()),
        retry_after: None,
        message,
    }
}

/// `message` with every occurrence of `secret` replaced by `***`.
pub(crate) fn scrub(message: &str, secret: &str) -> String {
    if secret.is_empty() {
        message.to_string()
    } else {
        message.replace(secret, "***")
    }
}

/// POSTs `body` as JSON with the destination's timeout, hookrelay's `User-Agent`
/// and the delivery id, plus `headers`; returns the status, headers and (at most
/// [`MAX_RESPONSE_BYTES`] of the) body text of the answer, or the classified
/// transport error. Sent with [`client`] unless a proxy is set (then `http`).
pub(crate) async fn post_json(
    http: &Http,
    url: &str,
    headers: HeaderMap,
    body: &Value,
    timeout: Duration,
    delivery_id: &str,
) -> Result<(u16, HeaderMap, String), SendError> {
    if !client::enabled() {
        return send_request(
            json_request(http, url, headers, body)?,
            timeout,
            delivery_id,
        )
        .await;
    }
    let bytes = serde_json::to_vec(body)
        .map_err(|e| SendError::permanent(format!("could not serialize the body: {e}")))?;
    let url = url::Url::parse(url).map_err(|e| {
        SendError::permanent(format!("destination could not build the request: {e}"))
    })?;
    post_json_bytes(
        &client::Target::new(&url)?,
        headers,
        bytes.into(),
        timeout,
        delivery_id,
    )
    .await
}

/// POSTs `bytes` (already JSON) to `target` with [`client`]: `headers` plus the
/// `Content-Type`, `User-Agent` and delivery id every JSON send carries.
pub(crate) async fn post_json_bytes(
    target: &client::Target,
    mut headers: HeaderMap,
    bytes: bytes::Bytes,
    timeout: Duration,
    delivery_id: &str,
) -> Result<(u16, HeaderMap, String), SendError> {
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    add_common_headers(&mut headers, delivery_id)?;
    client::exchange(target, reqwest::Method::POST, headers, bytes, timeout).await
}

/// `User-Agent`, `Accept` (unless set) and the delivery id.
fn add_common_headers(headers: &mut HeaderMap, delivery_id: &str) -> Result<(), SendError> {
    headers.insert(
        reqwest::header::USER_AGENT,
        HeaderValue::from_static(USER_AGENT),
    );
    if !headers.contains_key(reqwest::header::ACCEPT) {
        headers.insert(reqwest::header::ACCEPT, HeaderValue::from_static("*/*"));
    }
    let id = HeaderValue::from_str(delivery_id)
        .map_err(|_| SendError::permanent("the delivery id is not a valid header value"))?;
    headers.insert(HeaderName::from_static("hookrelay-delivery-id"), id);
    Ok(())
}

/// A JSON POST of `body` (serialized) with `headers`, not yet sent.
pub(crate) fn json_request(
    http: &Http,
    url: &str,
    headers: HeaderMap,
    body: &Value,
) -> Result<reqwest::RequestBuilder, SendError> {
    let bytes = serde_json::to_vec(body)
        .map_err(|e| SendError::permanent(format!("could not serialize the body: {e}")))?;
    Ok(json_bytes_request(http, url, headers, bytes))
}

/// A JSON POST of `bytes` (already JSON) with `headers`, not yet sent.
pub(crate) fn json_bytes_request(
    http: &Http,
    url: &str,
    headers: HeaderMap,
    bytes: Vec<u8>,
) -> reqwest::RequestBuilder {
    http.post(url)
        .headers(headers)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )
        .body(bytes)
}

/// Sends `req` with the timeout, `User-Agent` and delivery id every HTTP
/// destination uses, and reads at most [`MAX_RESPONSE_BYTES`] of the answer.
/// The request is built by the general client and sent with [`client`], unless
/// a proxy is set or its body is not in memory.
pub(crate) async fn send_request(
    req: reqwest::RequestBuilder,
    timeout: Duration,
    delivery_id: &str,
) -> Result<(u16, HeaderMap, String), SendError> {
    let req = req
        .header(reqwest::header::USER_AGENT, USER_AGENT)
        .header(DELIVERY_ID_HEADER, delivery_id);
    if !client::enabled() {
        return send_with_reqwest(req, timeout).await;
    }
    let (http, built) = req.build_split();
    let mut built = built.map_err(|e| classify_reqwest(&e))?;
    let bytes = match built.body().map(|b| b.as_bytes()) {
        None => bytes::Bytes::new(),
        Some(Some(b)) => bytes::Bytes::copy_from_slice(b),
        // A streamed body: only the general client sends those.
        Some(None) => {
            return send_with_reqwest(reqwest::RequestBuilder::from_parts(http, built), timeout)
                .await
        }
    };
    let target = client::Target::new(built.url())?;
    let mut headers = std::mem::take(built.headers_mut());
    add_common_headers(&mut headers, delivery_id)?;
    client::exchange(&target, built.method().clone(), headers, bytes, timeout).await
}

/// [`send_request`] with the general client (it honours proxies).
async fn send_with_reqwest(
    req: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<(u16, HeaderMap, String), SendError> {
    let mut resp = req
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| classify_reqwest(&e))?;
    let status = resp.status().as_u16();
    let resp_headers = resp.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| classify_reqwest(&e))? {
        let room = MAX_RESPONSE_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_RESPONSE_BYTES {
            // The rest is never read: dropping the response closes the connection.
            break;
        }
    }
    Ok((
        status,
        resp_headers,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

/// A failed answer's error in the service's own words: `HTTP 404 from Discord:
/// Unknown Webhook` + `suffix` when it `said` something (quoted as an excerpt),
/// else [`classify_status`]'s message with the service named instead of
/// "destination", + `suffix`. Whether it is worth retrying is left as it was.
pub(crate) fn in_words(
    mut e: SendError,
    service: &str,
    said: Option<&str>,
    suffix: &str,
) -> SendError {
    let status = e.status.map_or_else(String::new, |s| format!("HTTP {s} "));
    e.message = match said.map(str::trim).filter(|s| !s.is_empty()) {
        Some(said) => format!("{status}from {service}: {}{suffix}", excerpt(said)),
        None => format!(
            "{}{suffix}",
            e.message
                .replace("from destination", &format!("from {service}"))
        ),
    };
    e
}

/// Judges the answer to a send with the destination's own `classify`, and
/// scrubs every one of `secrets` (URL parts, keys, tokens) from the error, so a
/// service or proxy quoting the request cannot leak them.
pub(crate) fn judge(
    answer: Result<(u16, HeaderMap, String), SendError>,
    classify: impl FnOnce(u16, &HeaderMap, &str) -> Result<Sent, SendError>,
    secrets: &[&str],
) -> Result<Sent, SendError> {
    answer
        .and_then(|(status, headers, text)| classify(status, &headers, &text))
        .map_err(|mut e| {
            for secret in secrets {
                e.message = scrub(&e.message, secret);
            }
            e
        })
}

/// A POST of `body` judged by [`classify_status`].
pub(crate) async fn post_and_classify(
    http: &Http,
    url: &str,
    headers: HeaderMap,
    body: &Value,
    timeout: Duration,
    delivery_id: &str,
) -> Result<Sent, SendError> {
    let (status, headers, text) = post_json(http, url, headers, body, timeout, delivery_id).await?;
    classify_status(status, &headers, &text)
}

/// An `Authorization` value for HTTP basic auth (Mailgun's `api:<key>`, ntfy's
/// user and password).
pub(crate) fn basic_auth(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64_encode(format!("{user}:{password}").as_bytes())
    )
}

/// Standard base64 with padding (for basic auth).
fn base64_encode(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Whether `c` is a bidirectional embedding, override or isolate control
/// (U+202A–U+202E, U+2066–U+2069): in a chat message a payload holding one can
/// make text display in another order than it is written (a server name that reads
/// as "succeeded").
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether `s` holds a bidi control. Every one of them is encoded in UTF-8 as
/// `E2 80 AA..AE` or `E2 81 A6..A9`: a byte scan, not a decode of every character
/// of every string of every request body.
fn has_bidi(s: &str) -> bool {
    let b = s.as_bytes();
    b.contains(&0xE2)
        && b.windows(3).any(|w| {
            w[0] == 0xE2
                && ((w[1] == 0x80 && (0xAA..=0xAE).contains(&w[2]))
                    || (w[1] == 0x81 && (0xA6..=0xA9).contains(&w[2])))
        })
}

/// `s` without bidi controls ([`is_bidi_control`]).
pub fn strip_bidi(s: &str) -> String {
    s.chars().filter(|c| !is_bidi_control(*c)).collect()
}

/// Removes bidi controls from every string (and key) of a chat request body.
pub fn strip_bidi_json(v: &mut Value) {
    match v {
        Value::String(s) if has_bidi(s) => *s = strip_bidi(s),
        Value::Array(a) => a.iter_mut().for_each(strip_bidi_json),
        Value::Object(o) if o.keys().any(|k| k.chars().any(is_bidi_control)) => {
            *o = std::mem::take(o)
                .into_iter()
                .map(|(k, mut x)| {
                    strip_bidi_json(&mut x);
                    (strip_bidi(&k), x)
                })
                .collect();
        }
        Value::Object(o) => o.values_mut().for_each(strip_bidi_json),
        _ => {}
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers shared by the destinations' tests.

    use std::time::Duration;

    /// A local address nothing listens on: bind, read the port, drop the listener.
    pub fn refused_addr() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        format!("127.0.0.1:{port}")
    }

    pub fn client() -> super::Http {
        super::http_client()
    }

    /// The delivery id the destinations' tests send with.
    pub const ID: &str = "0193-test-delivery-7";

    pub const TIMEOUT: Duration = Duration::from_secs(5);

    /// A message whose body is the text `t`.
    pub fn text(t: &str) -> super::Message {
        super::Message {
            body: crate::templates::Body::Text(t.into()),
            html: None,
            subject: None,
            channel: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn two_hundreds_succeed() {
        for s in [200, 202, 204, 299] {
            assert_eq!(
                classify_status(s, &HeaderMap::new(), "ok").unwrap().status,
                Some(s)
            );
        }
    }

    #[test]
    fn server_errors_408_429_are_transient_others_permanent() {
        for s in [500, 502, 503, 504, 408, 429] {
            assert!(classify_status(s, &HeaderMap::new(), "")
                .unwrap_err()
                .is_transient());
        }
        for s in [400, 401, 403, 404, 410, 413, 301, 100] {
            let e = classify_status(s, &HeaderMap::new(), "").unwrap_err();
            assert!(e.is_permanent(), "{s}");
            assert_eq!(e.status, Some(s));
        }
    }

    #[test]
    fn message_quotes_a_short_excerpt() {
        let e = classify_status(404, &HeaderMap::new(), "no_service\n").unwrap_err();
        assert_eq!(e.message, "HTTP 404 from destination: no_service");
        let e = classify_status(500, &HeaderMap::new(), "").unwrap_err();
        assert_eq!(e.message, "HTTP 500 from destination (empty body)");
        let long = "é".repeat(1000);
        let e = classify_status(400, &HeaderMap::new(), &long).unwrap_err();
        let quoted = e
            .message
            .strip_prefix("HTTP 400 from destination: ")
            .unwrap();
        assert_eq!(quoted.chars().count(), 200);
        assert!(quoted.ends_with('…'));
    }

    #[test]
    fn retry_after_seconds_date_and_clamp() {
        let e = classify_status(429, &headers(&[("retry-after", "7")]), "").unwrap_err();
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        let e = classify_status(503, &headers(&[("retry-after", "99999")]), "").unwrap_err();
        assert_eq!(e.retry_after, Some(Duration::from_secs(3600)));
        let e = classify_status(
            503,
            &headers(&[("retry-after", "99999999999999999999999999")]),
            "",
        )
        .unwrap_err();
        assert_eq!(e.retry_after, Some(Duration::from_secs(3600)));
        let e = classify_status(429, &headers(&[("retry-after", "soon")]), "").unwrap_err();
        assert_eq!(e.retry_after, None);
        let past = "Sun, 06 Nov 1994 08:49:37 GMT";
        let e = classify_status(429, &headers(&[("retry-after", past)]), "").unwrap_err();
        assert_eq!(e.retry_after, Some(Duration::ZERO));
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let e = classify_status(429, &headers(&[("retry-after", &soon)]), "").unwrap_err();
        let got = e.retry_after.unwrap().as_secs();
        assert!((115..=120).contains(&got), "{got}");
        let far = (chrono::Utc::now() + chrono::Duration::days(3))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let e = classify_status(429, &headers(&[("retry-after", &far)]), "").unwrap_err();
        assert_eq!(e.retry_after, Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn basic_auth_is_base64_of_user_colon_password() {
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn base64_matches_the_rfc_examples() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(i.as_bytes()), o);
        }
    }

    #[test]
    fn shorten_counts_characters() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcd", 3), "ab…");
        assert_eq!(shorten("😀😀😀😀", 2), "😀…");
        assert_eq!(shorten("ab", 0), "");
        assert_eq!(shorten("", 0), "");
        let s = shorten(&"日本".repeat(3000), 3000);
        assert_eq!(s.chars().count(), 3000);
        assert!(s.ends_with('…'));
    }

    #[tokio::test]
    async fn refused_connection_is_transient_and_url_free() {
        let addr = test_support::refused_addr();
        let url = format!("http://{addr}/services/T000/B000/SECRETTOKEN?sig=hush");
        let e = test_support::client().post(&url).send().await.unwrap_err();
        let se = classify_reqwest(&e);
        assert!(se.is_transient(), "{se:?}");
        assert!(!se.message.contains("SECRETTOKEN"), "{}", se.message);
        assert!(!se.message.contains("hush"), "{}", se.message);
        assert!(!format!("{se:?}").contains("SECRETTOKEN"));
    }

    /// A destination parsed from its config keys, exactly as `relay.yaml` gives them.
    fn config(v: Value) -> DestinationConfig {
        let mut errors = Vec::new();
        let c = parse_config("destinations.x", v, &mut errors);
        assert_eq!(errors, vec![]);
        c.unwrap()
    }

    #[tokio::test]
    async fn build_wires_every_kind_with_its_timeout() {
        use serde_json::json;
        use wiremock::{matchers::method, Mock, MockServer, ResponseTemplate};

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
            .mount(&server)
            .await;
        let http = test_support::client();
        let msg = Message {
            body: Body::Text("hi".into()),
            html: None,
            subject: None,
            channel: None,
        };
        let url = server.uri();
        for v in [
            json!({"type": "slack", "webhook_url": url, "timeout": "200ms"}),
            json!({"type": "teams", "webhook_url": url, "timeout": "200ms"}),
            json!({"type": "webhook", "url": url, "timeout": "200ms"}),
        ] {
            let d = build(&config(v), &http);
            let req = d.prepare(&msg).unwrap();
            assert!(matches!(req, Request::Json(_)));
            let e = d.send(&req, test_support::ID).await.unwrap_err();
            assert!(e.is_transient(), "{e:?}");
        }
        let email = build(
            &config(json!({"type": "email", "smtp": "smtp://127.0.0.1:2525",
                "from": "a@b.test", "to": "c@d.test", "timeout": "1s"})),
            &http,
        );
        assert!(matches!(email.prepare(&msg), Ok(Request::Email { .. })));
        let console = build(&config(json!({"type": "console"})), &http);
        assert_eq!(console.prepare(&msg), Ok(Request::Console("hi".into())));
    }

    #[test]
    fn every_type_is_registered_once_with_its_templates() {
        let names = type_names();
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for k in KINDS {
            assert!(
                k.templates
                    .iter()
                    .any(|(f, _)| f.starts_with(&format!("default.{}.", k.name))),
                "{} has no default template",
                k.name
            );
        }
    }

    #[test]
    fn unknown_and_missing_types_name_the_known_ones() {
        let mut errors = Vec::new();
        assert!(parse_config("d", serde_json::json!({"type": "slak"}), &mut errors).is_none());
        assert!(parse_config("e", serde_json::json!({"url": "x"}), &mut errors).is_none());
        let all = type_names().join(", ");
        assert_eq!(
            errors,
            vec![
                ConfigError::new(
                    "d.type",
                    format!("unknown type \"slak\"; expected one of {all}")
                ),
                ConfigError::new("e.type", format!("missing; expected one of {all}")),
            ]
        );
    }

    #[test]
    fn a_redirect_is_permanent_and_names_its_location() {
        for status in [301, 302, 303, 307, 308] {
            let e = classify_status(
                status,
                &headers(&[("location", "https://hooks.example/new")]),
                "",
            )
            .unwrap_err();
            assert!(e.is_permanent());
            assert_eq!(e.status, Some(status));
            assert!(
                e.message
                    .contains("redirected to https://hooks.example/new"),
                "{}",
                e.message
            );
        }
        let e = classify_status(302, &HeaderMap::new(), "").unwrap_err();
        assert!(e.message.contains("without a Location"), "{}", e.message);
    }

    /// A server answering `status` with a body of `total` bytes; returns its
    /// address and how many bytes it managed to write before the client left.
    async fn endless_server(status: u16, total: usize) -> (String, tokio::task::JoinHandle<usize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {total}\r\n\r\n"
            );
            if s.write_all(head.as_bytes()).await.is_err() {
                return 0;
            }
            let chunk = vec![b'a'; 64 * 1024];
            let mut written = 0;
            while written < total {
                match s.write(&chunk[..chunk.len().min(total - written)]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => written += n,
                }
            }
            written
        });
        (addr, task)
    }

    #[tokio::test]
    async fn at_most_64_kib_of_an_answer_is_read() {
        const HUNDRED_MB: usize = 100 * 1024 * 1024;
        for status in [200, 500] {
            let (addr, written) = endless_server(status, HUNDRED_MB).await;
            let (got, _, body) = post_json(
                &test_support::client(),
                &format!("http://{addr}/"),
                HeaderMap::new(),
                &serde_json::json!({}),
                Duration::from_secs(30),
                test_support::ID,
            )
            .await
            .unwrap();
            assert_eq!(got, status);
            assert_eq!(body.len(), MAX_RESPONSE_BYTES);
            // The client stopped reading and closed: the server could not write it all.
            let written = written.await.unwrap();
            assert!(written < HUNDRED_MB / 2, "the server wrote {written} bytes");
        }
    }

    #[test]
    fn bidi_controls_are_removed_everywhere_in_a_body() {
        let mut v = serde_json::json!({
            "text": "a\u{202E}b\u{2066}c\u{2069}",
            "blocks": [{"k\u{202D}": ["\u{202A}x\u{202B}\u{202C}"]}],
            "n": 1,
            "keep": "עברית \u{200F} ✅"
        });
        strip_bidi_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"text": "abc", "blocks": [{"k": ["x"]}], "n": 1, "keep": "עברית \u{200F} ✅"})
        );
    }

    #[test]
    fn the_byte_scan_for_bidi_controls_agrees_with_the_characters() {
        // Every character from U+2000 to U+20FF (the bidi controls and their
        // neighbours, which share the lead byte), alone and among others.
        for c in (0x2000..0x2100).filter_map(char::from_u32) {
            for s in [c.to_string(), format!("ab{c}✅"), format!("✅{c}{c}x")] {
                assert_eq!(
                    has_bidi(&s),
                    s.chars().any(is_bidi_control),
                    "{:X}",
                    c as u32
                );
            }
        }
        assert!(!has_bidi("plain ascii, ✅ ❌ ⚠️ ⏰ ❓ …"));
    }

    /// A config of every type whose secrets all hold "SECRET", sending to `base`
    /// (`http://host:port`). A type missing here fails the test below.
    fn configs_with_secrets(base: &str) -> Vec<Value> {
        use serde_json::json;
        let hostport = base.trim_start_matches("http://");
        vec![
            json!({"type": "slack", "webhook_url": format!("{base}/services/T/B/SECRET")}),
            json!({"type": "slack", "token": "xoxb-SECRET", "channel": "#c", "api_url": base}),
            json!({"type": "teams", "webhook_url": format!("{base}/workflows/SECRET?sig=SECRET")}),
            json!({"type": "email", "smtp": format!("smtp://u:SECRET@{hostport}?tls=none"),
                   "from": "a@b.test", "to": ["c@d.test"]}),
            json!({"type": "webhook", "url": format!("{base}/in?key=SECRET"),
                   "headers": {"X-Api-Key": "SECRET"}}),
            json!({"type": "console"}),
            json!({"type": "discord", "webhook_url": format!("{base}/api/webhooks/1/SECRET")}),
            json!({"type": "pagerduty", "routing_key": "SECRETabcdefabcdefabcdefabcdefab",
                   "url": format!("{base}/v2/enqueue")}),
            json!({"type": "telegram", "token": "123456:SECRET", "chat_id": "-100123",
                   "api_url": base}),
            json!({"type": "mattermost", "webhook_url": format!("{base}/hooks/SECRETSECRETSECRET"),
                   "channel": "backups", "username": "hookrelay"}),
            json!({"type": "google_chat",
                   "webhook_url": format!("{base}/v1/spaces/AAAA/messages?key=SECRETkey&token=SECRETtoken")}),
            json!({"type": "ntfy", "url": format!("{base}/SECRETtopic"), "token": "tk_SECRET"}),
            json!({"type": "ntfy", "url": format!("{base}/SECRETtopic"), "user": "ops",
                   "password": "SECRET"}),
        ]
    }

    #[tokio::test]
    async fn secrets_stay_out_of_debug_check_and_errors_for_every_type() {
        let refused = format!("http://{}", test_support::refused_addr());
        let configs = configs_with_secrets(&refused);
        for k in KINDS {
            assert!(
                configs.iter().any(|c| c["type"] == k.name),
                "add a {} config to configs_with_secrets",
                k.name
            );
        }
        let http = test_support::client();
        let msg = test_support::text("hi");
        for v in configs {
            let cfg = config(v.clone());
            let shown = format!("{cfg:?} {}", cfg.kind.describe());
            assert!(!shown.contains("SECRET"), "{shown}");
            let d = build(&cfg, &http);
            let json_msg = Message {
                body: Body::Json(serde_json::json!({"event_action": "trigger",
                    "payload": {"summary": "s", "source": "x", "severity": "critical"}})),
                ..msg.clone()
            };
            let req = d.prepare(&msg).or_else(|_| d.prepare(&json_msg)).unwrap();
            if let Err(e) = d.send(&req, test_support::ID).await {
                let shown = format!("{e:?} {e}");
                assert!(!shown.contains("SECRET"), "{v}: {shown}");
            }
            // A broken value is named by its key, never quoted.
            let mut broken = v.clone();
            for key in ["webhook_url", "url", "smtp", "token", "routing_key"] {
                if let Some(x) = broken.get_mut(key) {
                    *x = serde_json::json!(format!("SECRET {}", x.as_str().unwrap()));
                }
            }
            let mut errors = Vec::new();
            parse_config("destinations.x", broken, &mut errors);
            let shown = format!("{errors:?}");
            assert!(!shown.contains("SECRET"), "{shown}");
        }
    }

    /// The default templates of Mattermost, Google Chat and ntfy say what
    /// happened, where the failure stands in its run, the fields and the
    /// provider's message, and sign a watch event as the backup watch's.
    #[test]
    fn chat_defaults_say_what_how_long_and_why() {
        use crate::templates::{sample_contexts, Templates};
        use serde_json::json;
        let t = Templates::load(std::path::Path::new("/nonexistent")).unwrap();
        let sample = |what: &str| {
            sample_contexts()
                .into_iter()
                .find(|(w, _)| w.contains(what))
                .map(|(_, v)| v)
                .unwrap()
        };
        let streak = "3rd failure in a row; last good backup 2 days ago";
        let sb = sample("simplebackups error");
        let Body::Text(mm) = t.render_body("default", "mattermost", &sb).unwrap() else {
            panic!()
        };
        assert!(
            mm.starts_with(&format!(
                "❌ **Backup failed: Acme Project on Acme Server**\n_{streak}_\n\n**Server:** Acme Server\n"
            )),
            "{mm}"
        );
        assert!(mm.contains("\n> Backup Acme Project failed\n"), "{mm}");
        let Body::Json(gc) = t.render_body("default", "google_chat", &sb).unwrap() else {
            panic!()
        };
        let card = &gc["cardsV2"][0]["card"];
        assert_eq!(
            gc["fallbackText"],
            "❌ Backup failed: Acme Project on Acme Server"
        );
        assert_eq!(card["header"]["title"], "❌ Backup failed");
        assert_eq!(card["header"]["subtitle"], "Acme Project on Acme Server");
        let rows = &card["sections"][0]["widgets"];
        assert_eq!(rows[0]["decoratedText"]["text"], format!("<b>{streak}</b>"));
        assert_eq!(rows[1]["decoratedText"]["topLabel"], "Server");
        let Body::Json(nt) = t.render_body("default", "ntfy", &sb).unwrap() else {
            panic!()
        };
        assert_eq!(nt["title"], "Backup failed: Acme Project on Acme Server");
        assert!(
            nt["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{streak}\n\nServer: Acme Server\n")),
            "{nt}"
        );
        assert_eq!(
            (nt["priority"].clone(), nt["tags"].clone()),
            (json!(5), json!(["rotating_light"]))
        );

        let missed = sample("missed backup found by the backup watch");
        let Body::Json(nt) = t.render_body("default", "ntfy", &missed).unwrap() else {
            panic!()
        };
        assert_eq!(
            (nt["priority"].clone(), nt["tags"].clone()),
            (json!(5), json!(["alarm_clock"]))
        );
        assert!(
            nt["message"].as_str().unwrap().ends_with(
                "\n\nbackup watch on source c66 · received 2025-09-04 18:38 UTC · hookrelay"
            ),
            "{nt}"
        );
        let recovered = sample("backup.recovered");
        let Body::Json(nt) = t.render_body("default", "ntfy", &recovered).unwrap() else {
            panic!()
        };
        assert_eq!(nt["title"], "Backup recovered: Acme Project on Acme Server");
        assert_eq!(
            (nt["priority"].clone(), nt["tags"].clone()),
            (json!(2), json!(["white_check_mark"]))
        );
        let Body::Text(mm) = t.render_body("default", "mattermost", &recovered).unwrap() else {
            panic!()
        };
        assert!(
            mm.starts_with("✅ **Backup recovered: Acme Project on Acme Server**\n\n"),
            "{mm}"
        );
        assert!(
            mm.contains("\n> Back after 3 failures, down 2 days\n"),
            "{mm}"
        );
    }

    #[tokio::test]
    async fn malformed_url_is_permanent() {
        let e = test_support::client()
            .post("not a url/SECRET")
            .send()
            .await
            .unwrap_err();
        let se = classify_reqwest(&e);
        assert!(se.is_permanent(), "{se:?}");
        assert!(!se.message.contains("SECRET"), "{}", se.message);
    }
}
