//! `type: pagerduty`: PagerDuty Events API v2 (`POST /v2/enqueue`).
//!
//! The body template (`<name>.pagerduty.json.hbs`) renders the whole event but the
//! `routing_key`, which is added only when it is sent (so `hookrelay render` never
//! prints it). The default template sends `event_action: trigger` for failure,
//! partial and missing, `resolve` for success and recovered, with `dedup_key` =
//! the event's `subject`: the incident a failure opened is closed by the next good
//! backup of the same job. An event of status `unknown` (a Cloud66
//! `backup.started`, a payload hookrelay could not read) neither opens nor closes
//! an incident: the template renders `event_action: none` with a `reason`, nothing
//! is sent, and the delivery ends `delivered` with the note `not sent: <reason>`
//! (SPEC §6 pages for failure, partial and missing only).
//!
//! What is sent is made to fit PagerDuty's rules rather than be refused: `summary`
//! is cut to 1,024 characters with a visible "…", a `dedup_key` longer than 255
//! characters is shortened to a stable one (its start and a hash of the whole), a
//! `timestamp` that is not RFC 3339 is left out, and a resolve or acknowledge
//! carries only its key (PagerDuty reads nothing else). A body without a valid
//! `event_action` or (for a trigger) `summary`, `source` and `severity` is a
//! template mistake: a permanent error that says which.
//!
//! Events of one `dedup_key` reach PagerDuty in the order hookrelay received
//! them: a delivery is not sent while another of its key is being sent, and one
//! whose event is older than one PagerDuty already got for the key is not sent at
//! all (a trigger retried after the resolve of a later success would reopen the
//! incident for a good backup): it ends delivered with the note "not sent:
//! superseded by …" (see `order_key`, `Store::begin_ordered`).
//!
//! PagerDuty answers 202 when it took the event, 400 with a JSON `message` and
//! `errors` list when it will never take it (permanent; both quoted in the error),
//! 429 when a service gets too many events (retried), 5xx (retried).

use super::Http;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{classify_status, post_json, shorten, Destination, Message, Request};
use super::{DestinationSettings, Kind, SendError, Sent, TextEscape};
use crate::config::{ConfigError, Secret};
use crate::templates::Body;

pub const KIND: Kind = Kind {
    name: "pagerduty",
    parse: super::parse_as::<PagerDutyConfig>,
    templates: &[(
        "default.pagerduty.json.hbs",
        include_str!("../../templates/default.pagerduty.json.hbs"),
    )],
    text_escape: TextEscape::Plain,
    html_part: false,
};

/// PagerDuty's public Events API v2 endpoint.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// PagerDuty's limits, in characters.
pub const MAX_SUMMARY: usize = 1_024;
pub const MAX_DEDUP_KEY: usize = 255;

const ACTIONS: &[&str] = &["trigger", "acknowledge", "resolve"];
/// hookrelay's own `event_action`: send nothing (with the template's `reason`).
const NONE: &str = "none";
/// The reason of an `event_action: none` without one.
const NO_REASON: &str = "the PagerDuty template set \"event_action\" to none";
/// How much of a template's `reason` is kept, in characters.
const MAX_REASON: usize = 500;
const SEVERITIES: &[&str] = &["critical", "error", "warning", "info"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// The Integration Key of an Events API v2 integration (or an event
    /// orchestration's routing key).
    pub routing_key: Secret,
    /// The enqueue endpoint; changed for a proxy or a stand-in.
    #[serde(default = "default_url")]
    pub url: String,
}

fn default_url() -> String {
    DEFAULT_URL.into()
}

impl DestinationSettings for PagerDutyConfig {
    fn type_name(&self) -> &'static str {
        KIND.name
    }

    fn check(&self, place: &str, errors: &mut Vec<ConfigError>) {
        let key = self.routing_key.expose();
        if key.trim().is_empty() {
            errors.push(ConfigError::new(format!("{place}.routing_key"), "is empty"));
        } else if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            // Usually a pasted key with a trailing newline; never quoted.
            errors.push(ConfigError::new(
                format!("{place}.routing_key"),
                "holds spaces or control characters",
            ));
        }
        super::check_url(format!("{place}.url"), &self.url, errors);
    }

    fn describe(&self) -> String {
        if self.url == DEFAULT_URL {
            "Events API v2".into()
        } else {
            "Events API v2 (custom url)".into()
        }
    }

    fn build(&self, http: &Http, timeout: Duration) -> std::sync::Arc<dyn Destination> {
        std::sync::Arc::new(PagerDuty::new(self, http.clone(), timeout))
    }
}

/// `check`'s warning for a PagerDuty destination that the routes can send
/// failures, partial or missed backups (which open incidents) but no success nor
/// recovery (which close them): every incident hookrelay opens would stay open.
/// Judged on each route's `status` and `severity` (see [`crate::routing::reach`])
/// and the order of the walk; `watch.recovered: false` leaves only successes.
/// Named at the first route that sends it a trigger. Disabled destinations are
/// judged too: enabling one would not fix its routes.
pub fn route_warnings(s: &crate::config::Settings, warnings: &mut Vec<ConfigError>) {
    use crate::event::Status;
    use crate::routing::reaching;
    let resolves: &[Status] = if s.watch.recovered {
        &[Status::Success, Status::Recovered]
    } else {
        &[Status::Success]
    };
    for (name, d) in &s.destinations {
        if d.kind.type_name() != KIND.name {
            continue;
        }
        let triggers = [Status::Failure, Status::Partial, Status::Missing];
        let Some((i, j)) = reaching(&s.routes, name, &triggers) else {
            continue;
        };
        if reaching(&s.routes, name, resolves).is_some() {
            continue;
        }
        let (what, example) = if s.watch.recovered {
            (
                "a success or a recovery (status success or recovered)",
                "success, recovered",
            )
        } else {
            (
                "a success (status success; watch.recovered is false, so there is no \
                 recovered event)",
                "success",
            )
        };
        warnings.push(ConfigError::new(
            format!("routes[{i}].to[{j}]"),
            format!(
                "sends failures to the PagerDuty destination {name:?}, but no route can \
                 send it {what}, so PagerDuty never resolves the incidents it opens; \
                 add a route for them, e.g. - {{ match: {{ status: [{example}] }}, to: [{name}] }}"
            ),
        ));
    }
}

pub struct PagerDuty {
    routing_key: Secret,
    url: String,
    http: Http,
    timeout: Duration,
}

impl std::fmt::Debug for PagerDuty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagerDuty")
            .field("routing_key", &self.routing_key)
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl PagerDuty {
    pub fn new(cfg: &PagerDutyConfig, http: Http, timeout: Duration) -> PagerDuty {
        PagerDuty {
            routing_key: cfg.routing_key.clone(),
            url: cfg.url.clone(),
            http,
            timeout,
        }
    }
}

/// A `dedup_key` within PagerDuty's 255 characters. A longer one keeps its start
/// and ends with a hash of the whole, so one subject always maps to one key and
/// two long subjects sharing a start do not collide.
pub fn fit_dedup_key(key: &str) -> String {
    if key.chars().count() <= MAX_DEDUP_KEY {
        return key.to_string();
    }
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    let hash = &hash[..16];
    let head: String = key.chars().take(MAX_DEDUP_KEY - hash.len() - 1).collect();
    format!("{head}#{hash}")
}

fn template_error(what: &str) -> SendError {
    SendError::permanent(format!("the PagerDuty template {what}"))
}

/// Checks the rendered event and fits it to PagerDuty's limits (module docs);
/// `event_action: none` is [`Request::Nothing`] with the template's `reason`.
fn fit_event(v: &Value) -> Result<Request, SendError> {
    let Value::Object(obj) = v else {
        return Err(template_error("must render a JSON object"));
    };
    let action = obj
        .get("event_action")
        .and_then(Value::as_str)
        .filter(|a| ACTIONS.contains(a) || *a == NONE)
        .ok_or_else(|| {
            template_error(
                "must set \"event_action\" to trigger, acknowledge or resolve \
                 (or none, to send nothing)",
            )
        })?;
    if action == NONE {
        let reason = obj
            .get("reason")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map_or_else(|| NO_REASON.to_string(), |r| shorten(r, MAX_REASON));
        return Ok(Request::Nothing(reason));
    }
    let dedup_key = obj
        .get("dedup_key")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(fit_dedup_key);
    let mut out = Map::new();
    out.insert("event_action".into(), action.into());
    if action != "trigger" {
        let key = dedup_key
            .ok_or_else(|| template_error(&format!("must set \"dedup_key\" to {action}")))?;
        out.insert("dedup_key".into(), key.into());
        return Ok(Request::Json(Value::Object(out)));
    }
    if let Some(key) = dedup_key {
        out.insert("dedup_key".into(), key.into());
    }
    let mut payload = match obj.get("payload") {
        Some(Value::Object(p)) => p.clone(),
        _ => {
            return Err(template_error(
                "must render a \"payload\" object for a trigger",
            ))
        }
    };
    let summary = payload
        .get("summary")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| template_error("must set a non-empty \"payload.summary\""))?;
    let summary = shorten(summary, MAX_SUMMARY);
    payload.insert("summary".into(), summary.into());
    let source_ok = payload
        .get("source")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.trim().is_empty());
    if !source_ok {
        return Err(template_error("must set a non-empty \"payload.source\""));
    }
    let severity_ok = payload
        .get("severity")
        .and_then(Value::as_str)
        .is_some_and(|s| SEVERITIES.contains(&s));
    if !severity_ok {
        return Err(template_error(
            "must set \"payload.severity\" to critical, error, warning or info",
        ));
    }
    // PagerDuty refuses the whole event for a timestamp it cannot read; the
    // alert matters more than its time.
    let readable = |t: &Value| {
        t.as_str()
            .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok())
    };
    if payload.get("timestamp").is_some_and(|t| !readable(t)) {
        payload.remove("timestamp");
    }
    out.insert("payload".into(), Value::Object(payload));
    // Everything else the template wrote at the top level (client, links, images).
    for (k, v) in obj {
        if !matches!(
            k.as_str(),
            "event_action" | "dedup_key" | "payload" | "routing_key"
        ) {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(Request::Json(Value::Object(out)))
}

/// Judges PagerDuty's answer: any 2xx is success (it answers 202); otherwise the
/// status decides (400 permanent, 429 and 5xx retried) and the error quotes
/// PagerDuty's own `message` and `errors`.
fn classify(status: u16, headers: &HeaderMap, body: &str) -> Result<Sent, SendError> {
    classify_status(status, headers, body).map_err(|e| {
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        let message = parsed
            .as_ref()
            .and_then(|v| v.get("message"))
            .and_then(Value::as_str);
        let errors: Vec<&str> = parsed
            .as_ref()
            .and_then(|v| v.get("errors"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut said = message.unwrap_or("").to_string();
        if !errors.is_empty() {
            if !said.is_empty() {
                said.push_str(": ");
            }
            said.push_str(&errors.join("; "));
        }
        super::in_words(e, "PagerDuty", Some(&said), "")
    })
}

#[async_trait]
impl Destination for PagerDuty {
    fn prepare(&self, msg: &Message) -> Result<Request, SendError> {
        match &msg.body {
            Body::Json(v) => {
                let mut req = fit_event(v)?;
                // The summary is read on phones; bidi controls could reorder it.
                if let Request::Json(event) = &mut req {
                    super::strip_bidi_json(event);
                }
                Ok(req)
            }
            // Text cannot say whether to trigger or resolve, nor for which job; a
            // success sent as a trigger would page someone for a good backup.
            Body::Text(_) => Err(template_error(
                "must be a JSON body (<name>.pagerduty.json.hbs): text cannot say \
                 whether to trigger or resolve",
            )),
        }
    }

    /// The `dedup_key`: a trigger retried after the resolve of a later success
    /// would leave an incident open for a good backup (module docs).
    fn order_key(&self, req: &Request) -> Option<super::OrderKey> {
        let Request::Json(Value::Object(event)) = req else {
            return None;
        };
        let text = |k: &str| event.get(k).and_then(Value::as_str).map(str::to_string);
        Some(super::OrderKey {
            key: text("dedup_key")?,
            action: text("event_action")?,
        })
    }

    async fn send(&self, req: &Request, delivery_id: &str) -> Result<Sent, SendError> {
        if let Request::Nothing(reason) = req {
            log::info!("delivery {delivery_id}: nothing sent to PagerDuty: {reason}");
            return Ok(Sent::nothing(reason));
        }
        let Request::Json(Value::Object(event)) = req else {
            return Err(SendError::permanent("PagerDuty takes JSON objects only"));
        };
        // routing_key first, as PagerDuty's own examples write it.
        let mut body = Map::new();
        body.insert(
            "routing_key".into(),
            self.routing_key.expose().to_string().into(),
        );
        for (k, v) in event {
            if k != "routing_key" {
                body.insert(k.clone(), v.clone());
            }
        }
        let key = self.routing_key.expose();
        let answer = post_json(
            &self.http,
            &self.url,
            HeaderMap::new(),
            &Value::Object(body),
            self.timeout,
            delivery_id,
        )
        .await;
        super::judge(answer, classify, &[key])
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{client, refused_addr, TIMEOUT};
    use super::*;
    use serde_json::json;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const KEY: &str = "R0UTINGKEYR0UTINGKEYR0UTINGKEY12";

    fn pd(url: String) -> PagerDuty {
        let cfg = PagerDutyConfig {
            routing_key: Secret::new(KEY),
            url,
        };
        PagerDuty::new(&cfg, client(), TIMEOUT)
    }

    fn json_msg(v: Value) -> Message {
        Message {
            body: Body::Json(v),
            html: None,
            subject: None,
            channel: None,
        }
    }

    fn trigger() -> Value {
        json!({
            "event_action": "trigger",
            "dedup_key": "sb/Acme Server/Acme Project",
            "payload": {"summary": "Backup failed", "source": "Acme Server",
                        "severity": "critical", "timestamp": "2021-10-10T10:10:10Z"},
            "client": "hookrelay"
        })
    }

    #[test]
    fn prepare_keeps_a_valid_trigger_and_never_adds_the_key() {
        let d = pd(DEFAULT_URL.into());
        let Request::Json(v) = d.prepare(&json_msg(trigger())).unwrap() else {
            panic!()
        };
        assert_eq!(v, trigger());
        assert!(!v.to_string().contains(KEY));
    }

    #[test]
    fn resolve_carries_only_its_key() {
        let d = pd(DEFAULT_URL.into());
        let mut v = trigger();
        v["event_action"] = json!("resolve");
        let Request::Json(out) = d.prepare(&json_msg(v)).unwrap() else {
            panic!()
        };
        assert_eq!(
            out,
            json!({"event_action": "resolve", "dedup_key": "sb/Acme Server/Acme Project"})
        );
        let e = d
            .prepare(&json_msg(
                json!({"event_action": "resolve", "dedup_key": " "}),
            ))
            .unwrap_err();
        assert!(e.is_permanent());
        assert!(e.message.contains("dedup_key"), "{}", e.message);
    }

    #[test]
    fn long_summary_and_dedup_key_are_fitted_and_bad_timestamps_dropped() {
        let d = pd(DEFAULT_URL.into());
        let mut v = trigger();
        v["payload"]["summary"] = json!("é".repeat(3_000));
        v["payload"]["timestamp"] = json!("yesterday-ish");
        let long_key = "k".repeat(400);
        v["dedup_key"] = json!(long_key);
        let Request::Json(out) = d.prepare(&json_msg(v.clone())).unwrap() else {
            panic!()
        };
        let summary = out["payload"]["summary"].as_str().unwrap();
        assert_eq!(summary.chars().count(), 1_024);
        assert!(summary.ends_with('…'));
        assert!(out["payload"].get("timestamp").is_none());
        let key = out["dedup_key"].as_str().unwrap();
        assert_eq!(key.chars().count(), 255);
        // Stable: the same subject always gives the same key; another does not.
        assert_eq!(key, fit_dedup_key(&long_key));
        assert_ne!(key, fit_dedup_key(&format!("{long_key}x")));
        assert_eq!(fit_dedup_key("short"), "short");
    }

    /// `event_action: none` is no request: sending it asks nothing of PagerDuty
    /// and ends with a note saying why (the template's reason, else a default).
    #[tokio::test]
    async fn event_action_none_sends_nothing_and_says_why() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(202))
            .expect(0)
            .mount(&server)
            .await;
        let d = pd(format!("{}/v2/enqueue", server.uri()));
        let req = d
            .prepare(&json_msg(json!({
                "event_action": "none", "reason": " status unknown ",
                "payload": {"summary": "ignored"}})))
            .unwrap();
        assert_eq!(req, Request::Nothing("status unknown".into()));
        let sent = d
            .send(&req, crate::destinations::test_support::ID)
            .await
            .unwrap();
        assert_eq!(
            sent,
            Sent {
                status: None,
                note: Some("not sent: status unknown".into())
            }
        );
        let req = d
            .prepare(&json_msg(json!({"event_action": "none"})))
            .unwrap();
        assert_eq!(
            req,
            Request::Nothing("the PagerDuty template set \"event_action\" to none".into())
        );
    }

    /// The default template (SPEC §6): trigger for failure, partial and missing,
    /// resolve for success and recovered, and nothing for unknown.
    #[test]
    fn the_default_template_pages_only_for_failure_partial_and_missing() {
        let t = crate::templates::Templates::load(std::path::Path::new("/nonexistent")).unwrap();
        let d = pd(DEFAULT_URL.into());
        let mut seen = std::collections::BTreeSet::new();
        for (what, ctx) in crate::templates::sample_contexts() {
            let Some(status) = ctx["status"].as_str().map(str::to_string) else {
                continue;
            };
            let body = t.render_body("default", "pagerduty", &ctx).unwrap();
            let msg = Message {
                body,
                html: None,
                subject: None,
                channel: None,
            };
            let req = d.prepare(&msg).unwrap();
            let action = match &req {
                Request::Json(v) => v["event_action"].as_str().unwrap().to_string(),
                Request::Nothing(reason) => {
                    assert!(
                        reason.starts_with("status unknown")
                            && reason.contains("neither opens nor closes an incident"),
                        "{what}: {reason}"
                    );
                    "nothing".into()
                }
                other => panic!("{what}: {other:?}"),
            };
            let want = match status.as_str() {
                "failure" | "partial" | "missing" => "trigger",
                "success" | "recovered" => "resolve",
                "unknown" => "nothing",
                s => panic!("{what}: status {s}"),
            };
            assert_eq!(action, want, "{what} ({status})");
            seen.insert(status);
        }
        assert_eq!(seen.len(), 6, "every status has a sample: {seen:?}");
    }

    #[test]
    fn template_mistakes_are_permanent_and_say_what() {
        let d = pd(DEFAULT_URL.into());
        let cases = [
            (json!([1]), "JSON object"),
            (json!({"event_action": "page"}), "event_action"),
            (json!({"event_action": "trigger"}), "payload"),
            (
                json!({"event_action": "trigger", "payload": {"summary": "", "source": "s", "severity": "info"}}),
                "summary",
            ),
            (
                json!({"event_action": "trigger", "payload": {"summary": "x", "severity": "info"}}),
                "source",
            ),
            (
                json!({"event_action": "trigger", "payload": {"summary": "x", "source": "s", "severity": "high"}}),
                "severity",
            ),
        ];
        for (v, what) in cases {
            let e = d.prepare(&json_msg(v.clone())).unwrap_err();
            assert!(e.is_permanent());
            assert!(e.message.contains(what), "{v}: {}", e.message);
        }
        let e = d
            .prepare(&super::super::test_support::text("hi"))
            .unwrap_err();
        assert!(e.is_permanent());
        assert!(e.message.contains(".pagerduty.json.hbs"), "{}", e.message);
    }

    #[tokio::test]
    async fn sends_the_event_with_the_routing_key() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v2/enqueue"))
            .respond_with(ResponseTemplate::new(202).set_body_json(json!({
                "status": "success", "message": "Event processed",
                "dedup_key": "sb/Acme Server/Acme Project"})))
            .expect(1)
            .mount(&server)
            .await;
        let d = pd(format!("{}/v2/enqueue", server.uri()));
        let req = d.prepare(&json_msg(trigger())).unwrap();
        assert_eq!(
            d.send(&req, crate::destinations::test_support::ID)
                .await
                .unwrap()
                .status,
            Some(202)
        );
        let got: Value =
            serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
        let mut want = trigger();
        want["routing_key"] = json!(KEY);
        assert_eq!(got, want);
        assert!(!format!("{d:?}").contains(KEY));
    }

    #[tokio::test]
    async fn pagerduty_errors_are_classified_and_quoted_without_the_key() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": [format!("Length of 'routing_key' is incorrect ({KEY})")]})))
            .mount(&server)
            .await;
        let d = pd(server.uri());
        let req = d.prepare(&json_msg(trigger())).unwrap();
        let e = d
            .send(&req, crate::destinations::test_support::ID)
            .await
            .unwrap_err();
        assert!(e.is_permanent());
        assert_eq!(e.status, Some(400));
        assert_eq!(
            e.message,
            "HTTP 400 from PagerDuty: Event object is invalid: Length of 'routing_key' is incorrect (***)"
        );

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(429).set_body_json(json!({
                "status": "throttle exceeded",
                "message": "Requests for this service are arriving too quickly. Please retry later."})))
            .mount(&server)
            .await;
        let e = pd(server.uri())
            .send(&req, crate::destinations::test_support::ID)
            .await
            .unwrap_err();
        assert!(e.is_transient());
        assert_eq!(e.status, Some(429));
        assert!(e.message.contains("arriving too quickly"), "{}", e.message);

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&server)
            .await;
        let e = pd(server.uri())
            .send(&req, crate::destinations::test_support::ID)
            .await
            .unwrap_err();
        assert!(e.is_transient());
        assert_eq!(e.message, "HTTP 503 from PagerDuty (empty body)");

        let d = pd(format!("http://{}/v2/enqueue", refused_addr()));
        let e = d
            .send(&req, crate::destinations::test_support::ID)
            .await
            .unwrap_err();
        assert!(e.is_transient());
        assert!(!format!("{e:?}").contains(KEY));
    }

    #[test]
    fn check_names_the_key_without_quoting_it() {
        let mut errors = Vec::new();
        let cfg = PagerDutyConfig {
            routing_key: Secret::new("abc def SECRETPART\n"),
            url: "ftp://x".into(),
        };
        cfg.check("destinations.pager", &mut errors);
        assert_eq!(
            errors,
            vec![
                ConfigError::new(
                    "destinations.pager.routing_key",
                    "holds spaces or control characters"
                ),
                ConfigError::new(
                    "destinations.pager.url",
                    "must be an http:// or https:// URL"
                ),
            ]
        );
        assert!(!format!("{cfg:?} {}", cfg.describe()).contains("SECRETPART"));
    }
}
