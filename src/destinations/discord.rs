//! `type: discord`: a Discord channel webhook, called with `?wait=true` so Discord
//! answers with the stored message (an error when it did not store it).
//!
//! Bodies are kept within Discord's limits rather than rejected: `content` 2,000
//! characters; at most 10 embeds; in an embed, title 256, description 4,096, 25
//! fields of name 256 and value 1,024, footer 2,048, author 256; and 6,000
//! characters across all embeds (the longest texts are shortened first). Shortened
//! strings end in a visible "…". `allowed_mentions` is empty unless the template
//! sets it, so a payload holding `@everyone` pings nobody.
//!
//! The URL Discord hands out (`https://discord.com/api/webhooks/<id>/<token>`) has
//! no API version, and Discord serves such paths as its default API, v6, whose 429
//! gives `Retry-After` and `retry_after` in *milliseconds*. hookrelay sends to the
//! same webhook at `/api/v10/webhooks/…` (also for a `/api/v6/` or `/api/v7/`
//! path), where both are seconds, as they are read here; other paths are kept.
//!
//! Discord answers a 429 with `{"retry_after": 1.5, "global": false, …}` (seconds,
//! a float) and usually `Retry-After`; both are read and the longer wait honoured.
//! A 404 (Unknown Webhook: it was deleted) and other 4xx are permanent. A 400
//! "Invalid Form Body" (code 50035) names the refused fields in `errors`; the
//! recorded error keeps the first few as `embeds.0.url: Not a well formed URL.`.

use super::Http;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{classify_status, post_json, shorten, Destination, Message};
use super::{DestinationSettings, Kind, Request, SendError, Sent, TextEscape, MAX_RETRY_AFTER};
use crate::config::{ConfigError, Secret};
use crate::templates::Body;

pub const KIND: Kind = Kind {
    name: "discord",
    parse: super::parse_as::<DiscordConfig>,
    templates: &[(
        "default.discord.json.hbs",
        include_str!("../../templates/default.discord.json.hbs"),
    )],
    text_escape: TextEscape::Plain,
    html_part: false,
};

/// Discord's limits, in characters.
pub const MAX_CONTENT: usize = 2_000;
pub const MAX_EMBEDS: usize = 10;
pub const MAX_EMBEDS_TOTAL: usize = 6_000;
pub const MAX_TITLE: usize = 256;
pub const MAX_DESCRIPTION: usize = 4_096;
pub const MAX_FIELDS: usize = 25;
pub const MAX_FIELD_NAME: usize = 256;
pub const MAX_FIELD_VALUE: usize = 1_024;
pub const MAX_FOOTER: usize = 2_048;
pub const MAX_AUTHOR: usize = 256;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// `https://discord.com/api/webhooks/<id>/<token>`.
    pub webhook_url: Secret,
    /// Shown as the sender instead of the webhook's own name.
    #[serde(default)]
    pub username: Option<String>,
}

impl DestinationSettings for DiscordConfig {
    fn type_name(&self) -> &'static str {
        KIND.name
    }

    fn check(&self, place: &str, errors: &mut Vec<ConfigError>) {
        super::check_url(
            format!("{place}.webhook_url"),
            self.webhook_url.expose(),
            errors,
        );
        if let Some(u) = &self.username {
            if u.trim().is_empty() || u.chars().count() > 80 {
                errors.push(ConfigError::new(
                    format!("{place}.username"),
                    "must be 1 to 80 characters",
                ));
            }
        }
    }

    fn describe(&self) -> String {
        match &self.username {
            Some(u) => format!("channel webhook, as {u:?}"),
            None => "channel webhook".into(),
        }
    }

    fn build(&self, http: &Http, timeout: Duration) -> std::sync::Arc<dyn Destination> {
        std::sync::Arc::new(Discord {
            url: self.webhook_url.clone(),
            username: self.username.clone(),
            http: http.clone(),
            timeout,
        })
    }
}

pub struct Discord {
    url: Secret,
    username: Option<String>,
    http: Http,
    timeout: Duration,
}

impl std::fmt::Debug for Discord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discord")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The API version hookrelay speaks to Discord: 429 waits in seconds (v8 on).
const API_VERSION: &str = "v10";

/// The URL a message is posted to: the webhook URL on Discord's versioned path
/// (see the module docs) with `wait=true` added (other parameters, such as
/// `thread_id`, kept).
fn send_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if let Some(path) = versioned_path(u.path()) {
                u.set_path(&path);
            }
            let others: Vec<(String, String)> = u
                .query_pairs()
                .filter(|(k, _)| k != "wait")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            u.query_pairs_mut()
                .clear()
                .extend_pairs(others)
                .append_pair("wait", "true");
            u.to_string()
        }
        // Config validation refuses such URLs; sending will fail clearly.
        Err(_) => url.to_string(),
    }
}

/// `/api/webhooks/…`, `/api/v6/webhooks/…` or `/api/v7/webhooks/…` (rate limits
/// in milliseconds) as `/api/v10/webhooks/…`; `None` for any other path (v8 and
/// on, a stand-in's own path).
fn versioned_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/api/")?;
    let rest = match rest.split_once('/') {
        Some((version, tail)) if old_version(version) => tail,
        _ => rest,
    };
    rest.starts_with("webhooks/")
        .then(|| format!("/api/{API_VERSION}/{rest}"))
}

/// `v6`, `v7` and older: versions whose 429 waits are milliseconds.
fn old_version(segment: &str) -> bool {
    segment
        .strip_prefix('v')
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| n < 8)
}

fn shorten_at(obj: &mut Map<String, Value>, key: &str, max: usize) {
    if let Some(Value::String(s)) = obj.get_mut(key) {
        if s.chars().nth(max).is_some() {
            *s = shorten(s, max);
        }
    }
}

/// The strings of one embed that count toward the 6,000-character total.
fn embed_texts(e: &mut Value) -> Vec<&mut String> {
    let mut out = Vec::new();
    let Some(o) = e.as_object_mut() else {
        return out;
    };
    for (k, v) in o.iter_mut() {
        match (k.as_str(), v) {
            ("title" | "description", Value::String(s)) => out.push(s),
            ("footer", Value::Object(f)) => {
                if let Some(Value::String(s)) = f.get_mut("text") {
                    out.push(s);
                }
            }
            ("author", Value::Object(a)) => {
                if let Some(Value::String(s)) = a.get_mut("name") {
                    out.push(s);
                }
            }
            ("fields", Value::Array(fields)) => {
                for f in fields.iter_mut().filter_map(Value::as_object_mut) {
                    for (fk, fv) in f.iter_mut() {
                        if let ("name" | "value", Value::String(s)) = (fk.as_str(), fv) {
                            out.push(s);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Shortens a Discord message body to Discord's limits (see the module docs).
pub fn fit_limits(v: &mut Value) {
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    shorten_at(obj, "content", MAX_CONTENT);
    let Some(Value::Array(embeds)) = obj.get_mut("embeds") else {
        return;
    };
    embeds.truncate(MAX_EMBEDS);
    for e in embeds.iter_mut().filter_map(Value::as_object_mut) {
        shorten_at(e, "title", MAX_TITLE);
        shorten_at(e, "description", MAX_DESCRIPTION);
        if let Some(Value::Object(f)) = e.get_mut("footer") {
            shorten_at(f, "text", MAX_FOOTER);
        }
        if let Some(Value::Object(a)) = e.get_mut("author") {
            shorten_at(a, "name", MAX_AUTHOR);
        }
        if let Some(Value::Array(fields)) = e.get_mut("fields") {
            fields.truncate(MAX_FIELDS);
            for f in fields.iter_mut().filter_map(Value::as_object_mut) {
                shorten_at(f, "name", MAX_FIELD_NAME);
                shorten_at(f, "value", MAX_FIELD_VALUE);
            }
        }
    }
    // The total: shorten the longest text until all embeds fit.
    loop {
        let mut texts: Vec<&mut String> = embeds.iter_mut().flat_map(embed_texts).collect();
        let total: usize = texts.iter().map(|s| s.chars().count()).sum();
        if total <= MAX_EMBEDS_TOTAL {
            return;
        }
        let Some(longest) = texts.iter_mut().max_by_key(|s| s.chars().count()) else {
            return;
        };
        let len = longest.chars().count();
        if len <= 1 {
            return;
        }
        let keep = len.saturating_sub(total - MAX_EMBEDS_TOTAL).max(1);
        **longest = shorten(longest, keep);
    }
}

/// Judges Discord's answer: [`classify_status`], with a 429's JSON `retry_after`
/// (seconds) honoured and Discord's own `message` quoted.
fn classify(status: u16, headers: &HeaderMap, body: &str) -> Result<Sent, SendError> {
    let mut e = match classify_status(status, headers, body) {
        Ok(sent) => return Ok(sent),
        Err(e) => e,
    };
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    if status == 429 {
        let from_body = parsed
            .as_ref()
            .and_then(|v| v.get("retry_after"))
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(MAX_RETRY_AFTER.as_secs_f64())));
        e.retry_after = match (e.retry_after, from_body) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    let said = parsed
        .as_ref()
        .and_then(|v| v.get("message"))
        .and_then(Value::as_str);
    let code = parsed
        .as_ref()
        .and_then(|v| v.get("code"))
        .and_then(Value::as_i64)
        .filter(|_| said.is_some())
        .map(|c| format!(" (code {c})"))
        .unwrap_or_default();
    let hint = if status == 404 {
        "; the webhook was deleted or its URL is wrong"
    } else {
        ""
    };
    let fields = parsed
        .as_ref()
        .and_then(|v| v.get("errors"))
        .map(field_errors)
        .filter(|f| !f.is_empty())
        .map(|f| format!(": {f}"))
        .unwrap_or_default();
    Err(super::in_words(
        e,
        "Discord",
        said,
        &format!("{code}{fields}{hint}"),
    ))
}

/// How many refused fields an error names.
const MAX_FIELD_ERRORS: usize = 3;

/// Discord's `errors` object flattened to `embeds.0.url: Not a well formed URL.`,
/// at most [`MAX_FIELD_ERRORS`] of them (`; ` between, then "and N more"), each
/// shortened. Reads the `_errors: [{code, message}]` leaves of API v8 on and the
/// `field: ["message"]` lists of older versions.
fn field_errors(errors: &Value) -> String {
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut Vec<String>) {
        let at = |path: &[String]| {
            if path.is_empty() {
                "body".to_string()
            } else {
                path.join(".")
            }
        };
        match v {
            Value::Object(o) => {
                for (k, v) in o {
                    if k == "_errors" {
                        for e in v.as_array().into_iter().flatten() {
                            let said = e
                                .get("message")
                                .and_then(Value::as_str)
                                .or_else(|| e.get("code").and_then(Value::as_str))
                                .or_else(|| e.as_str());
                            if let Some(said) = said {
                                out.push(format!("{}: {said}", at(path)));
                            }
                        }
                    } else {
                        path.push(k.clone());
                        walk(v, path, out);
                        path.pop();
                    }
                }
            }
            Value::Array(a) if a.iter().all(Value::is_string) => {
                for said in a.iter().filter_map(Value::as_str) {
                    out.push(format!("{}: {said}", at(path)));
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    path.push(i.to_string());
                    walk(v, path, out);
                    path.pop();
                }
            }
            Value::String(said) => out.push(format!("{}: {said}", at(path))),
            _ => {}
        }
    }
    let mut all = Vec::new();
    walk(errors, &mut Vec::new(), &mut all);
    let more = all.len().saturating_sub(MAX_FIELD_ERRORS);
    let mut shown: Vec<String> = all
        .iter()
        .take(MAX_FIELD_ERRORS)
        .map(|e| super::excerpt(e))
        .collect();
    if more > 0 {
        shown.push(format!("and {more} more"));
    }
    shown.join("; ")
}

#[async_trait]
impl Destination for Discord {
    fn prepare(&self, msg: &Message) -> Result<Request, SendError> {
        let mut body = match &msg.body {
            Body::Text(t) => json!({ "content": t }),
            Body::Json(v) if v.is_object() => v.clone(),
            Body::Json(_) => {
                return Err(SendError::permanent(
                    "a Discord message body must be a JSON object",
                ))
            }
        };
        if let Some(obj) = body.as_object_mut() {
            if let Some(u) = &self.username {
                obj.entry("username").or_insert_with(|| json!(u));
            }
            // Nobody is pinged by what a payload says.
            obj.entry("allowed_mentions")
                .or_insert_with(|| json!({ "parse": [] }));
        }
        super::strip_bidi_json(&mut body);
        fit_limits(&mut body);
        Ok(Request::Json(body))
    }

    async fn send(&self, req: &Request, delivery_id: &str) -> Result<Sent, SendError> {
        let Request::Json(body) = req else {
            return Err(SendError::permanent("Discord takes JSON requests only"));
        };
        let url = send_url(self.url.expose());
        let answer = post_json(
            &self.http,
            &url,
            HeaderMap::new(),
            body,
            self.timeout,
            delivery_id,
        )
        .await;
        // The webhook token is in the URL; an answer could quote it.
        super::judge(answer, classify, &[self.url.expose(), &url])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destinations::test_support::{client, text, ID, TIMEOUT};
    use wiremock::matchers::{method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn discord(url: String) -> Discord {
        let cfg = DiscordConfig {
            webhook_url: Secret::new(url),
            username: Some("hookrelay".into()),
        };
        Discord {
            url: cfg.webhook_url.clone(),
            username: cfg.username.clone(),
            http: client(),
            timeout: TIMEOUT,
        }
    }

    /// What Discord answers a `wait=true` post: the stored message.
    fn stored(body: &Value) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "1234567890", "type": 0, "channel_id": "42",
            "content": body.get("content").cloned().unwrap_or(json!("")),
            "embeds": body.get("embeds").cloned().unwrap_or(json!([])),
            "webhook_id": "99",
        }))
    }

    #[tokio::test]
    async fn posts_to_api_v10_with_wait_true_and_delivery_id() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api/v10/webhooks/99/SECRETTOKEN"))
            .and(query_param("wait", "true"))
            .and(query_param("thread_id", "7"))
            .respond_with(stored(&json!({"content": "x"})))
            .expect(1)
            .mount(&server)
            .await;
        let d = discord(format!(
            "{}/api/webhooks/99/SECRETTOKEN?thread_id=7",
            server.uri()
        ));
        let req = d.prepare(&text("Backup failed @everyone")).unwrap();
        assert_eq!(
            req,
            Request::Json(
                json!({"content": "Backup failed @everyone", "username": "hookrelay",
                "allowed_mentions": {"parse": []}})
            )
        );
        assert_eq!(d.send(&req, ID).await.unwrap().status, Some(200));
        let got = &server.received_requests().await.unwrap()[0];
        assert_eq!(got.headers.get("hookrelay-delivery-id").unwrap(), ID);
        assert!(!format!("{d:?}").contains("SECRETTOKEN"));
    }

    #[tokio::test]
    async fn a_429_waits_for_discords_retry_after_and_404_is_dead() {
        let server = MockServer::start().await;
        Mock::given(path("/limited"))
            .respond_with(ResponseTemplate::new(429).set_body_json(json!({
                "message": "You are being rate limited.", "retry_after": 2.5, "global": false
            })))
            .mount(&server)
            .await;
        Mock::given(path("/both"))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("Retry-After", "1")
                    .set_body_json(json!({"message": "You are being rate limited.",
                        "retry_after": 3.25, "global": true})),
            )
            .mount(&server)
            .await;
        Mock::given(path("/gone/SECRETTOKEN"))
            .respond_with(
                ResponseTemplate::new(404)
                    .set_body_json(json!({"message": "Unknown Webhook", "code": 10015})),
            )
            .mount(&server)
            .await;
        Mock::given(path("/empty"))
            .respond_with(
                ResponseTemplate::new(400).set_body_json(
                    json!({"message": "Cannot send an empty message", "code": 50006}),
                ),
            )
            .mount(&server)
            .await;
        let req = Request::Json(json!({"content": "x"}));

        let e = discord(format!("{}/limited", server.uri()))
            .send(&req, ID)
            .await
            .unwrap_err();
        assert!(e.is_transient());
        assert_eq!(e.retry_after, Some(Duration::from_millis(2_500)));
        assert_eq!(
            e.message,
            "HTTP 429 from Discord: You are being rate limited."
        );

        let e = discord(format!("{}/both", server.uri()))
            .send(&req, ID)
            .await
            .unwrap_err();
        assert_eq!(e.retry_after, Some(Duration::from_millis(3_250)));

        let e = discord(format!("{}/gone/SECRETTOKEN", server.uri()))
            .send(&req, ID)
            .await
            .unwrap_err();
        assert!(e.is_permanent());
        assert_eq!(e.status, Some(404));
        assert!(
            e.message.contains("Unknown Webhook (code 10015)"),
            "{}",
            e.message
        );
        assert!(e.message.contains("deleted"), "{}", e.message);
        assert!(!e.message.contains("SECRETTOKEN"));

        let e = discord(format!("{}/empty", server.uri()))
            .send(&req, ID)
            .await
            .unwrap_err();
        assert!(e.is_permanent());
        assert!(e.message.contains("empty message"), "{}", e.message);
    }

    #[tokio::test]
    async fn long_messages_are_shortened_and_discord_takes_them() {
        // A stand-in that refuses what Discord refuses.
        struct DiscordLimits;
        impl wiremock::Respond for DiscordLimits {
            fn respond(&self, r: &wiremock::Request) -> ResponseTemplate {
                let v: Value = serde_json::from_slice(&r.body).unwrap();
                let chars = |s: &Value| s.as_str().map_or(0, |s| s.chars().count());
                let embeds = v["embeds"].as_array().cloned().unwrap_or_default();
                let mut total = 0;
                let mut ok = chars(&v["content"]) <= MAX_CONTENT && embeds.len() <= MAX_EMBEDS;
                for e in &embeds {
                    ok &= chars(&e["title"]) <= MAX_TITLE
                        && chars(&e["description"]) <= MAX_DESCRIPTION;
                    total += chars(&e["title"]) + chars(&e["description"]);
                    for f in e["fields"].as_array().into_iter().flatten() {
                        ok &= chars(&f["value"]) <= MAX_FIELD_VALUE
                            && chars(&f["name"]) <= MAX_FIELD_NAME;
                        total += chars(&f["name"]) + chars(&f["value"]);
                    }
                    total += chars(&e["footer"]["text"]);
                }
                if ok && total <= MAX_EMBEDS_TOTAL {
                    stored(&v)
                } else {
                    ResponseTemplate::new(400).set_body_json(json!({"code": 50035,
                        "message": "Invalid Form Body", "errors": {}}))
                }
            }
        }
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(DiscordLimits)
            .mount(&server)
            .await;
        let d = discord(server.uri());

        let req = d.prepare(&text(&"é".repeat(5_000))).unwrap();
        let Request::Json(v) = &req else { panic!() };
        let content = v["content"].as_str().unwrap();
        assert_eq!(content.chars().count(), MAX_CONTENT);
        assert!(content.ends_with('…'));
        d.send(&req, ID).await.unwrap();

        let embed = |i: usize| {
            json!({"title": format!("{i}{}", "t".repeat(300)), "description": "d".repeat(5_000),
                "fields": (0..30).map(|j| json!({"name": format!("n{j}"), "value": "v".repeat(2_000), "inline": true})).collect::<Vec<_>>(),
                "footer": {"text": "f".repeat(3_000)}})
        };
        let body = json!({"embeds": (0..12).map(embed).collect::<Vec<_>>()});
        let req = d
            .prepare(&Message {
                body: Body::Json(body),
                ..text("")
            })
            .unwrap();
        let Request::Json(v) = &req else { panic!() };
        assert_eq!(v["embeds"].as_array().unwrap().len(), MAX_EMBEDS);
        assert_eq!(
            v["embeds"][0]["fields"].as_array().unwrap().len(),
            MAX_FIELDS
        );
        assert!(v["embeds"][0]["title"].as_str().unwrap().starts_with("0t"));
        assert!(v["embeds"][0]["description"]
            .as_str()
            .unwrap()
            .ends_with('…'));
        assert_eq!(d.send(&req, ID).await.unwrap().status, Some(200));
    }

    #[test]
    fn sent_to_the_versioned_path_with_wait_added_once() {
        assert_eq!(
            send_url("https://discord.com/api/webhooks/1/t"),
            "https://discord.com/api/v10/webhooks/1/t?wait=true"
        );
        assert_eq!(
            send_url("https://discord.com/api/webhooks/1/t?wait=false&thread_id=5"),
            "https://discord.com/api/v10/webhooks/1/t?thread_id=5&wait=true"
        );
        // Versions whose waits are milliseconds move to v10; v8 and on stay.
        assert_eq!(
            send_url("https://discordapp.com/api/v6/webhooks/1/t"),
            "https://discordapp.com/api/v10/webhooks/1/t?wait=true"
        );
        assert_eq!(
            send_url("https://discord.com/api/v9/webhooks/1/t?thread_id=5"),
            "https://discord.com/api/v9/webhooks/1/t?thread_id=5&wait=true"
        );
        assert_eq!(
            send_url("https://discord.com/api/v10/webhooks/1/t"),
            "https://discord.com/api/v10/webhooks/1/t?wait=true"
        );
        // Not a Discord webhook path (a relay, a stand-in): as written.
        assert_eq!(
            send_url("https://relay.example/discord/webhooks/1/t"),
            "https://relay.example/discord/webhooks/1/t?wait=true"
        );
        assert_eq!(
            send_url("https://relay.example/api/vx/webhooks/1/t"),
            "https://relay.example/api/vx/webhooks/1/t?wait=true"
        );
    }

    #[test]
    fn a_refused_form_names_the_fields_discord_refused() {
        let e = |body: Value| {
            classify(400, &HeaderMap::new(), &body.to_string())
                .unwrap_err()
                .message
        };
        // API v10, as Discord documents its form errors.
        assert_eq!(
            e(
                json!({"code": 50035, "message": "Invalid Form Body", "errors": {
                "embeds": {"0": {"url": {"_errors": [
                    {"code": "URL_TYPE_INVALID_URL", "message": "Not a well formed URL."}]}}}}})
            ),
            "HTTP 400 from Discord: Invalid Form Body (code 50035): \
             embeds.0.url: Not a well formed URL."
        );
        // Several: the first three, then how many more.
        let many: Map<String, Value> = (0..5)
            .map(|i| {
                (
                    format!("f{i}"),
                    json!({"_errors": [{"code": "BASE_TYPE_REQUIRED",
                        "message": "This field is required"}]}),
                )
            })
            .collect();
        assert_eq!(
            e(json!({"code": 50035, "message": "Invalid Form Body", "errors": many})),
            "HTTP 400 from Discord: Invalid Form Body (code 50035): \
             f0: This field is required; f1: This field is required; \
             f2: This field is required; and 2 more"
        );
        // The older shape (field: [messages]) and none at all.
        assert_eq!(
            e(json!({"code": 50035, "message": "Invalid Form Body",
                "errors": {"content": ["Must be 2000 or fewer in length."]}})),
            "HTTP 400 from Discord: Invalid Form Body (code 50035): \
             content: Must be 2000 or fewer in length."
        );
        assert_eq!(
            e(json!({"code": 50035, "message": "Invalid Form Body", "errors": {}})),
            "HTTP 400 from Discord: Invalid Form Body (code 50035)"
        );
    }
}
