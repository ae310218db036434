//! `type: google_chat`: a Google Chat space's incoming webhook
//! (`https://chat.googleapis.com/v1/spaces/<space>/messages?key=…&token=…`).
//!
//! The default template (`default.google_chat.json.hbs`) renders a `cardsV2`
//! card: a header with the status and what it is about, the event's fields as
//! labelled rows, the provider's message as a paragraph, and a `fallbackText` that
//! phones show in the notification. A card rather than `text`: labelled rows keep a
//! long server or backup name readable on a phone, and a card's text can be escaped
//! completely (its formatting is HTML: `{{mrkdwn x}}` escapes `& < >`), while
//! `text` has no escape for `*`, `_` or `<users/all>` (which notifies the whole
//! space). A text template (`<name>.google_chat.hbs`) is sent as `{"text": …}`
//! with `& < >` escaped, so a payload cannot mention or link.
//!
//! Google Chat takes 32,000 bytes a message: a longer body has its longest texts
//! shortened, each with a visible "…", until it fits. A space takes about one
//! message a second from a webhook (60 a minute), so that is the default
//! `rate_limit`.
//!
//! Google answers `{"error": {"code": N, "message": …, "status": "…"}}`: 429
//! `RESOURCE_EXHAUSTED` is retried (after `Retry-After` when it sends one, else the
//! retry schedule), 5xx retried, 400 `INVALID_ARGUMENT`, 401, 403 and 404 (the
//! webhook or space is gone) permanent; Google's message and status are quoted.
//!
//! The URL's `key` and `token` are credentials: they are scrubbed from every error
//! and never shown by `Debug`, `check` or `render`.

use super::Http;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{classify_status, post_json, shorten, Destination, Message};
use super::{DestinationSettings, Kind, Request, SendError, Sent, TextEscape};
use crate::config::{ConfigError, RateLimit, Secret};
use crate::templates::Body;

pub const KIND: Kind = Kind {
    name: "google_chat",
    parse: super::parse_as::<GoogleChatConfig>,
    templates: &[(
        "default.google_chat.json.hbs",
        include_str!("../../templates/default.google_chat.json.hbs"),
    )],
    text_escape: TextEscape::Slack,
    html_part: false,
};

/// The most bytes Google Chat takes of a message (its JSON body).
pub const MAX_BYTES: usize = 32_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleChatConfig {
    /// The space's webhook URL, `key` and `token` included.
    pub webhook_url: Secret,
}

impl DestinationSettings for GoogleChatConfig {
    fn type_name(&self) -> &'static str {
        KIND.name
    }

    fn check(&self, place: &str, errors: &mut Vec<ConfigError>) {
        let at = format!("{place}.webhook_url");
        let url = self.webhook_url.expose();
        super::check_url(at.clone(), url, errors);
        if let Ok(u) = url::Url::parse(url) {
            let has = |k: &str| u.query_pairs().any(|(q, v)| q == k && !v.is_empty());
            if u.host_str() == Some("chat.googleapis.com") && !(has("key") && has("token")) {
                errors.push(ConfigError::new(
                    at,
                    "lacks its `key` and `token` parameters: copy the whole URL from the space's Webhooks settings",
                ));
            }
        }
    }

    fn describe(&self) -> String {
        "space webhook".into()
    }

    fn build(&self, http: &Http, timeout: Duration) -> std::sync::Arc<dyn Destination> {
        std::sync::Arc::new(GoogleChat {
            url: self.webhook_url.clone(),
            http: http.clone(),
            timeout,
        })
    }

    /// A space takes 60 messages a minute from a webhook.
    fn default_rate_limit(&self) -> Option<RateLimit> {
        Some(RateLimit {
            count: 1,
            per: Duration::from_secs(1),
        })
    }
}

pub struct GoogleChat {
    url: Secret,
    http: Http,
    timeout: Duration,
}

impl std::fmt::Debug for GoogleChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleChat")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `s` cut to about `keep` characters with a visible "…", never inside an HTML
/// entity or tag (card text is HTML).
fn shorten_html(s: &str, keep: usize) -> String {
    let cut = shorten(s, keep);
    let Some(body) = cut.strip_suffix('…') else {
        return cut;
    };
    let mut body = body;
    if let Some(amp) = body.rfind('&') {
        if !body[amp..].contains(';') {
            body = &body[..amp];
        }
    }
    if let Some(lt) = body.rfind('<') {
        if !body[lt..].contains('>') {
            body = &body[..lt];
        }
    }
    format!("{body}…")
}

fn size(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(0, |b| b.len())
}

fn strings_mut<'a>(v: &'a mut Value, out: &mut Vec<&'a mut String>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter_mut().for_each(|x| strings_mut(x, out)),
        Value::Object(o) => o.values_mut().for_each(|x| strings_mut(x, out)),
        _ => {}
    }
}

/// Shortens the longest strings of `v` until it serializes to at most `max`
/// bytes (or nothing is left to shorten).
pub fn fit_bytes(v: &mut Value, max: usize) {
    // Each round shortens one string by at least the excess, so this ends; the
    // bound only guards against a body of thousands of tiny strings.
    for _ in 0..1_000 {
        let total = size(v);
        if total <= max {
            return;
        }
        let mut texts = Vec::new();
        strings_mut(v, &mut texts);
        let Some(longest) = texts.into_iter().max_by_key(|s| s.len()) else {
            return;
        };
        let chars = longest.chars().count();
        if chars <= 1 {
            return;
        }
        // Bytes to chars: cut at least the excess in bytes, counted as chars of
        // this string's average width (escapes make JSON longer than the text).
        let excess = total - max;
        let width = longest.len().div_ceil(chars).max(1);
        let drop = excess.div_ceil(width) + 1;
        *longest = shorten_html(longest, chars.saturating_sub(drop).max(1));
    }
}

/// Judges Google's answer: [`classify_status`], with Google's `error.message` and
/// `error.status` quoted.
fn classify(status: u16, headers: &HeaderMap, body: &str) -> Result<Sent, SendError> {
    let e = match classify_status(status, headers, body) {
        Ok(sent) => return Ok(sent),
        Err(e) => e,
    };
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let field = |k: &str| error.and_then(|x| x.get(k)).and_then(Value::as_str);
    let hint = match status {
        404 => "; the webhook or its space was deleted: create a webhook and set webhook_url",
        401 | 403 => "; the webhook's key or token is wrong, or the app may no longer post there",
        _ => "",
    };
    let said = field("message");
    let suffix = match (said, field("status")) {
        (Some(_), Some(s)) => format!(" ({s}){hint}"),
        _ => hint.to_string(),
    };
    Err(super::in_words(e, "Google Chat", said, &suffix))
}

#[async_trait]
impl Destination for GoogleChat {
    fn prepare(&self, msg: &Message) -> Result<Request, SendError> {
        let mut body = match &msg.body {
            Body::Text(t) => json!({ "text": t }),
            Body::Json(v @ Value::Object(_)) => v.clone(),
            Body::Json(_) => {
                return Err(SendError::permanent(
                    "a Google Chat JSON template must render an object (a message)",
                ))
            }
        };
        super::strip_bidi_json(&mut body);
        fit_bytes(&mut body, MAX_BYTES);
        Ok(Request::Json(body))
    }

    async fn send(&self, req: &Request, delivery_id: &str) -> Result<Sent, SendError> {
        let Request::Json(body) = req else {
            return Err(SendError::permanent("Google Chat takes JSON requests only"));
        };
        let url = self.url.expose();
        let answer = post_json(
            &self.http,
            url,
            HeaderMap::new(),
            body,
            self.timeout,
            delivery_id,
        )
        .await;
        // `key` and `token` are in the query; an answer could quote them, whole
        // or one by one.
        let parsed = url::Url::parse(url).ok();
        let mut secrets: Vec<String> = vec![url.to_string()];
        if let Some(u) = &parsed {
            secrets.extend(u.query().map(str::to_string));
            secrets.extend(
                u.query_pairs()
                    .map(|(_, v)| v.into_owned())
                    .filter(|v| v.len() >= 8),
            );
        }
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        super::judge(answer, classify, &secrets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destinations::test_support::{client, text, ID, TIMEOUT};
    use wiremock::matchers::{method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const KEY: &str = "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI";
    const TOKEN: &str = "SECRETo2hYg3kJ1-tK0cC2R8y7k5zPq6u9w0e4r3t2y1";

    fn gchat(base: &str) -> GoogleChat {
        GoogleChat {
            url: Secret::new(format!(
                "{base}/v1/spaces/AAAAx1/messages?key={KEY}&token={TOKEN}"
            )),
            http: client(),
            timeout: TIMEOUT,
        }
    }

    fn google_error(code: u16, status: &str, message: &str) -> ResponseTemplate {
        ResponseTemplate::new(code).set_body_json(json!({
            "error": {"code": code, "message": message, "status": status}}))
    }

    #[test]
    fn long_bodies_fit_32000_bytes_without_breaking_entities() {
        let d = gchat("https://chat.googleapis.com");
        let Request::Json(v) = d.prepare(&text(&"é".repeat(40_000))).unwrap() else {
            panic!()
        };
        assert!(size(&v) <= MAX_BYTES, "{}", size(&v));
        assert!(size(&v) > MAX_BYTES - 100, "{}", size(&v));
        assert!(v["text"].as_str().unwrap().ends_with('…'));

        let para = "a &amp; b &lt;c&gt; ".repeat(3_000);
        let card = json!({"cardsV2": [{"cardId": "x", "card": {
            "header": {"title": "❌ Backup failed"},
            "sections": [{"widgets": [{"textParagraph": {"text": para}},
                {"decoratedText": {"topLabel": "Server", "text": "db1"}}]}]}}]});
        let msg = Message {
            body: Body::Json(card),
            ..text("")
        };
        let Request::Json(v) = d.prepare(&msg).unwrap() else {
            panic!()
        };
        assert!(size(&v) <= MAX_BYTES);
        let w = &v["cardsV2"][0]["card"]["sections"][0]["widgets"];
        let p = w[0]["textParagraph"]["text"].as_str().unwrap();
        assert!(p.ends_with('…'));
        let before = p.trim_end_matches('…');
        assert!(
            before.ends_with(';')
                || before.ends_with(' ')
                || before.ends_with(|c: char| c.is_alphanumeric()),
            "{}",
            &before[before.len() - 10..]
        );
        assert_eq!(w[1]["decoratedText"]["text"], "db1");
        assert_eq!(
            v["cardsV2"][0]["card"]["header"]["title"],
            "❌ Backup failed"
        );
        assert_eq!(shorten_html("ab &amp; cd", 5), "ab …");
        assert_eq!(shorten_html("ab <b>cd</b>", 5), "ab …");
    }

    #[tokio::test]
    async fn posts_to_the_space_with_key_and_token() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/spaces/AAAAx1/messages"))
            .and(query_param("key", KEY))
            .and(query_param("token", TOKEN))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "name": "spaces/AAAAx1/messages/abc.abc", "text": "hi"})))
            .expect(1)
            .mount(&server)
            .await;
        let d = gchat(&server.uri());
        let req = d.prepare(&text("hi")).unwrap();
        assert_eq!(req, Request::Json(json!({"text": "hi"})));
        assert_eq!(d.send(&req, ID).await.unwrap().status, Some(200));
        let shown = format!("{d:?}");
        assert!(!shown.contains(TOKEN) && !shown.contains(KEY), "{shown}");
    }

    #[tokio::test]
    async fn googles_errors_are_classified_and_never_carry_the_key_or_token() {
        let req = Request::Json(json!({"text": "x"}));
        let cases = [
            (
                429,
                "RESOURCE_EXHAUSTED",
                "Resource has been exhausted (e.g. check quota).",
                true,
            ),
            (
                400,
                "INVALID_ARGUMENT",
                "Invalid JSON payload received. Unknown name \"cardsV3\": Cannot find field.",
                false,
            ),
            (404, "NOT_FOUND", "Requested entity was not found.", false),
            (
                403,
                "PERMISSION_DENIED",
                "The caller does not have permission",
                false,
            ),
            (
                503,
                "UNAVAILABLE",
                "The service is currently unavailable.",
                true,
            ),
        ];
        for (code, status, message, transient) in cases {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(google_error(code, status, message))
                .mount(&server)
                .await;
            let e = gchat(&server.uri()).send(&req, ID).await.unwrap_err();
            assert_eq!(e.is_transient(), transient, "{code}");
            assert_eq!(e.status, Some(code));
            assert!(
                e.message.starts_with(&format!(
                    "HTTP {code} from Google Chat: {} ({status})",
                    crate::destinations::excerpt(message)
                )),
                "{}",
                e.message
            );
        }

        // Retry-After when Google sends one.
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                google_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted.")
                    .insert_header("Retry-After", "3"),
            )
            .mount(&server)
            .await;
        let e = gchat(&server.uri()).send(&req, ID).await.unwrap_err();
        assert_eq!(e.retry_after, Some(Duration::from_secs(3)));

        // An answer quoting the request's URL.
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(google_error(
                400,
                "INVALID_ARGUMENT",
                &format!("Bad request for ?key={KEY}&token={TOKEN} and token {TOKEN}"),
            ))
            .mount(&server)
            .await;
        let e = gchat(&server.uri()).send(&req, ID).await.unwrap_err();
        let shown = format!("{e:?} {e}");
        assert!(!shown.contains(TOKEN) && !shown.contains(KEY), "{shown}");
    }

    #[test]
    fn check_wants_key_and_token_without_quoting_them() {
        let mut errors = Vec::new();
        super::super::parse_config(
            "destinations.g",
            json!({"type": "google_chat",
                "webhook_url": "https://chat.googleapis.com/v1/spaces/AAAA/messages?key=SECRETkey"}),
            &mut errors,
        );
        assert_eq!(
            errors,
            vec![ConfigError::new(
                "destinations.g.webhook_url",
                "lacks its `key` and `token` parameters: copy the whole URL from the space's Webhooks settings"
            )]
        );
    }
}
