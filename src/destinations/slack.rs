//! `type: slack`: an incoming webhook (`webhook_url`) or a bot token (`token` +
//! `channel`, `chat.postMessage`).
//!
//! Bodies are shortened to Slack's limits rather than rejected: section text 3,000
//! characters, each section field 2,000, header text 150, at most 50 blocks (the
//! 50th says how many were left out), top-level `text` 40,000. Shortened strings end
//! in a visible "…".

use super::Http;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::{json, Map, Value};

use serde::Deserialize;

use super::{classify_status, excerpt, post_json, shorten, Destination, Message, Request};
use super::{DestinationSettings, Kind, SendError, Sent, TextEscape};
use crate::config::{de_opt_secret, ConfigError, RateLimit, Secret};
use crate::templates::Body;

pub const KIND: Kind = Kind {
    name: "slack",
    parse: super::parse_as::<SlackConfig>,
    templates: &[(
        "default.slack.json.hbs",
        include_str!("../../templates/default.slack.json.hbs"),
    )],
    text_escape: TextEscape::Slack,
    html_part: false,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Incoming webhook URL.
    #[serde(default, deserialize_with = "de_opt_secret")]
    pub webhook_url: Option<Secret>,
    /// Bot token for `chat.postMessage`.
    #[serde(default, deserialize_with = "de_opt_secret")]
    pub token: Option<Secret>,
    /// Channel (a template, e.g. `#backups-{{stack}}`), with a bot token.
    #[serde(default)]
    pub channel: Option<String>,
    /// Slack's Web API base; changed only to point at a stand-in.
    #[serde(default = "default_slack_api")]
    pub api_url: String,
}

fn default_slack_api() -> String {
    "https://slack.com/api".into()
}

impl DestinationSettings for SlackConfig {
    fn type_name(&self) -> &'static str {
        KIND.name
    }

    fn check(&self, place: &str, errors: &mut Vec<ConfigError>) {
        match (&self.webhook_url, &self.token) {
            (Some(u), None) => {
                super::check_url(format!("{place}.webhook_url"), u.expose(), errors);
                if self.channel.is_some() {
                    errors.push(ConfigError::new(
                        format!("{place}.channel"),
                        "needs a bot `token`; an incoming webhook posts to its own channel",
                    ));
                }
            }
            (None, Some(t)) => {
                if t.expose().is_empty() {
                    errors.push(ConfigError::new(format!("{place}.token"), "is empty"));
                }
                if self.channel.is_none() {
                    errors.push(ConfigError::new(
                        format!("{place}.channel"),
                        "is required with a bot `token`",
                    ));
                }
                super::check_url(format!("{place}.api_url"), &self.api_url, errors);
            }
            (Some(_), Some(_)) => errors.push(ConfigError::new(
                place,
                "give either `webhook_url` or `token`, not both",
            )),
            (None, None) => errors.push(ConfigError::new(
                place,
                "needs `webhook_url` (incoming webhook) or `token` (bot, chat.postMessage)",
            )),
        }
    }

    fn describe(&self) -> String {
        if self.token.is_some() || self.channel.is_some() {
            format!(
                "chat.postMessage to {}",
                self.channel.as_deref().unwrap_or("?")
            )
        } else {
            "incoming webhook".into()
        }
    }

    fn build(&self, http: &Http, timeout: Duration) -> std::sync::Arc<dyn Destination> {
        std::sync::Arc::new(Slack::new(self, http.clone(), timeout))
    }

    /// Slack's documented limit for incoming webhooks: one message a second.
    fn default_rate_limit(&self) -> Option<RateLimit> {
        self.webhook_url.as_ref().map(|_| RateLimit {
            count: 1,
            per: Duration::from_secs(1),
        })
    }

    fn channel(&self) -> Option<(&'static str, &str)> {
        if self.takes_channel() {
            self.channel.as_deref().map(|c| ("channel", c))
        } else {
            None
        }
    }

    /// Only a bot token chooses its channel; a webhook posts to its own.
    fn takes_channel(&self) -> bool {
        self.token.is_some()
    }
}

/// Slack's limits, in characters.
pub const MAX_TEXT: usize = 40_000;
pub const MAX_SECTION_TEXT: usize = 3_000;
pub const MAX_FIELD_TEXT: usize = 2_000;
pub const MAX_HEADER_TEXT: usize = 150;
pub const MAX_BLOCKS: usize = 50;

/// `chat.postMessage` errors worth retrying; every other `ok: false` is permanent.
const TRANSIENT_API_ERRORS: &[&str] = &[
    "ratelimited",
    "service_unavailable",
    "internal_error",
    "fatal_error",
    "request_timeout",
];

enum Mode {
    Webhook(Secret),
    Bot {
        token: Secret,
        channel: Option<String>,
        api_url: String,
    },
    /// Neither (config validation prevents it): every send fails permanently.
    Unconfigured,
}

pub struct Slack {
    mode: Mode,
    http: Http,
    timeout: Duration,
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.mode {
            Mode::Webhook(_) => "webhook",
            Mode::Bot { .. } => "bot",
            Mode::Unconfigured => "unconfigured",
        };
        f.debug_struct("Slack")
            .field("mode", &mode)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Slack {
    pub fn new(cfg: &SlackConfig, http: Http, timeout: Duration) -> Slack {
        let mode = match (&cfg.webhook_url, &cfg.token) {
            (Some(url), _) => Mode::Webhook(url.clone()),
            (None, Some(token)) => Mode::Bot {
                token: token.clone(),
                channel: cfg.channel.clone(),
                api_url: cfg.api_url.trim_end_matches('/').to_string(),
            },
            (None, None) => Mode::Unconfigured,
        };
        Slack {
            mode,
            http,
            timeout,
        }
    }
}

/// Shortens a Slack message body to Slack's limits (see the module docs).
pub fn fit_limits(v: &mut Value) {
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    if let Some(Value::String(t)) = obj.get_mut("text") {
        shorten_in_place(t, MAX_TEXT);
    }
    if let Some(Value::Array(blocks)) = obj.get_mut("blocks") {
        fit_blocks(blocks);
    }
    if let Some(Value::Array(attachments)) = obj.get_mut("attachments") {
        for a in attachments {
            if let Some(Value::Array(blocks)) = a.get_mut("blocks") {
                fit_blocks(blocks);
            }
            if let Some(Value::String(t)) = a.get_mut("text") {
                shorten_in_place(t, MAX_TEXT);
            }
        }
    }
}

fn fit_blocks(blocks: &mut Vec<Value>) {
    if blocks.len() > MAX_BLOCKS {
        let left_out = blocks.len() - (MAX_BLOCKS - 1);
        blocks.truncate(MAX_BLOCKS - 1);
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("… {left_out} more blocks left out")}],
        }));
    }
    for block in blocks {
        let limit = match block.get("type").and_then(Value::as_str) {
            Some("header") => MAX_HEADER_TEXT,
            _ => MAX_SECTION_TEXT,
        };
        if let Some(Value::String(t)) = block.get_mut("text").and_then(|t| t.get_mut("text")) {
            shorten_in_place(t, limit);
        }
        if let Some(Value::Array(fields)) = block.get_mut("fields") {
            for f in fields {
                if let Some(Value::String(t)) = f.get_mut("text") {
                    shorten_in_place(t, MAX_FIELD_TEXT);
                }
            }
        }
        // Context elements share the section limit.
        if let Some(Value::Array(elements)) = block.get_mut("elements") {
            for e in elements {
                if let Some(Value::String(t)) = e.get_mut("text") {
                    shorten_in_place(t, MAX_SECTION_TEXT);
                }
            }
        }
    }
}

fn shorten_in_place(s: &mut String, max_chars: usize) {
    if s.chars().nth(max_chars).is_some() {
        *s = shorten(s, max_chars);
    }
}

/// Judges a `chat.postMessage` answer: HTTP first, then Slack's `ok`.
fn classify_api(status: u16, headers: &HeaderMap, body: &str) -> Result<Sent, SendError> {
    let sent = classify_status(status, headers, body)?;
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    match parsed
        .as_ref()
        .and_then(|v| v.get("ok"))
        .and_then(Value::as_bool)
    {
        Some(true) => Ok(sent),
        Some(false) => {
            let error = parsed
                .as_ref()
                .and_then(|v| v.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("unknown_error");
            let transient = TRANSIENT_API_ERRORS.contains(&error);
            let retry_after = headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(super::parse_retry_after);
            let details = parsed.as_ref().map(api_details).unwrap_or_default();
            Err(SendError {
                transient,
                status: Some(status),
                retry_after,
                message: format!("Slack refused the message: {}{details}", excerpt(error)),
            })
        }
        // Not Slack's API answering (a proxy page, say): try again later.
        None => Err(SendError {
            transient: true,
            status: Some(status),
            retry_after: None,
            message: format!(
                "HTTP {status} from Slack without an `ok` field: {}",
                excerpt(body)
            ),
        }),
    }
}

/// How many of Slack's detail messages an error keeps.
const MAX_DETAILS: usize = 3;

/// What Slack says beyond the error code, as `: blocks.0.text: must be more than
/// 0 characters` (empty when nothing): its `response_metadata.messages` (`[ERROR]
/// … [json-pointer:/blocks/0/text]`, warnings left out), or the older top-level
/// `errors`; at most [`MAX_DETAILS`] (`; ` between, then "and N more"), each
/// shortened.
fn api_details(answer: &Value) -> String {
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    let mut said = strings(answer.pointer("/response_metadata/messages"));
    said.retain(|m| !m.starts_with("[WARN]"));
    if said.is_empty() {
        said = strings(answer.get("errors"));
    }
    let said: Vec<String> = said
        .iter()
        .map(|m| {
            let m = m.strip_prefix("[ERROR]").unwrap_or(m).trim();
            // "… [json-pointer:/blocks/0/text]" as "blocks.0.text: …".
            match m
                .strip_suffix(']')
                .and_then(|m| m.rsplit_once("[json-pointer:"))
            {
                Some((text, pointer)) => {
                    let at = pointer.trim_start_matches('/').replace('/', ".");
                    format!(
                        "{}: {}",
                        if at.is_empty() { "body" } else { &at },
                        text.trim()
                    )
                }
                None => m.to_string(),
            }
        })
        .filter(|m| !m.is_empty())
        .collect();
    if said.is_empty() {
        return String::new();
    }
    let more = said.len().saturating_sub(MAX_DETAILS);
    let mut shown: Vec<String> = said.iter().take(MAX_DETAILS).map(|m| excerpt(m)).collect();
    if more > 0 {
        shown.push(format!("and {more} more"));
    }
    format!(": {}", shown.join("; "))
}

#[async_trait]
impl Destination for Slack {
    fn prepare(&self, msg: &Message) -> Result<Request, SendError> {
        self.prepare_owned(msg.clone())
    }

    fn prepare_owned(&self, msg: Message) -> Result<Request, SendError> {
        let mut body = match (msg.body, &self.mode) {
            (Body::Text(t), _) => json!({ "text": t }),
            (Body::Json(v), Mode::Webhook(_)) => v,
            (Body::Json(v), _) => {
                if !v.is_object() {
                    return Err(SendError::permanent(
                        "a Slack bot message body must be a JSON object",
                    ));
                }
                v
            }
        };
        if let Mode::Bot { channel, .. } = &self.mode {
            let channel = msg
                .channel
                .as_deref()
                .filter(|c| !c.trim().is_empty())
                .or(channel.as_deref())
                .ok_or_else(|| SendError::permanent("no Slack channel to post to"))?;
            if let Some(obj) = body.as_object_mut() {
                // Keep `channel` first, as people write it.
                let mut with_channel = Map::new();
                with_channel.insert("channel".into(), Value::String(channel.trim().into()));
                for (k, v) in std::mem::take(obj) {
                    if k != "channel" {
                        with_channel.insert(k, v);
                    }
                }
                *obj = with_channel;
            }
        }
        super::strip_bidi_json(&mut body);
        fit_limits(&mut body);
        Ok(Request::Json(body))
    }

    async fn send(&self, req: &Request, delivery_id: &str) -> Result<Sent, SendError> {
        let Request::Json(body) = req else {
            return Err(SendError::permanent("Slack takes JSON requests only"));
        };
        match &self.mode {
            Mode::Webhook(url) => {
                let (status, headers, text) = post_json(
                    &self.http,
                    url.expose(),
                    HeaderMap::new(),
                    body,
                    self.timeout,
                    delivery_id,
                )
                .await?;
                classify_status(status, &headers, &text)
            }
            Mode::Bot { token, api_url, .. } => {
                let mut headers = HeaderMap::new();
                let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .map_err(|_| SendError::permanent("the Slack token is not a valid header"))?;
                auth.set_sensitive(true);
                headers.insert(AUTHORIZATION, auth);
                let url = format!("{api_url}/chat.postMessage");
                let (status, headers, text) =
                    post_json(&self.http, &url, headers, body, self.timeout, delivery_id).await?;
                classify_api(status, &headers, &text).map_err(|mut e| {
                    e.message = super::scrub(&e.message, token.expose());
                    e
                })
            }
            Mode::Unconfigured => Err(SendError::permanent(
                "Slack destination has neither webhook_url nor token",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{client, refused_addr, TIMEOUT};
    use super::*;
    use crate::destinations::test_support::ID;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn webhook(url: String, timeout: Duration) -> Slack {
        let cfg = SlackConfig {
            webhook_url: Some(Secret::new(url)),
            token: None,
            channel: None,
            api_url: "https://slack.com/api".into(),
        };
        Slack::new(&cfg, client(), timeout)
    }

    fn bot(api_url: String) -> Slack {
        let cfg = SlackConfig {
            webhook_url: None,
            token: Some(Secret::new("xoxb-SECRET")),
            channel: Some("#fallback".into()),
            api_url,
        };
        Slack::new(&cfg, client(), TIMEOUT)
    }

    fn msg(body: Body) -> Message {
        Message {
            body,
            html: None,
            subject: None,
            channel: None,
        }
    }

    async fn server_answering(status: u16, body: &str) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_string(body))
            .mount(&server)
            .await;
        server
    }

    async fn received(server: &MockServer) -> Value {
        let reqs = server.received_requests().await.unwrap();
        serde_json::from_slice(&reqs.last().unwrap().body).unwrap()
    }

    #[tokio::test]
    async fn webhook_text_is_wrapped_and_delivered() {
        let server = server_answering(200, "ok").await;
        let s = webhook(format!("{}/services/T/B/X", server.uri()), TIMEOUT);
        let t = "Backup *failed* on \"db-1\" <b>&</b>\nsecond line 🔥 \u{1}";
        let req = s.prepare(&msg(Body::Text(t.into()))).unwrap();
        assert_eq!(req, Request::Json(json!({ "text": t })));
        assert_eq!(s.send(&req, ID).await.unwrap().status, Some(200));
        assert_eq!(received(&server).await, json!({ "text": t }));
        let reqs = server.received_requests().await.unwrap();
        assert_eq!(reqs[0].url.path(), "/services/T/B/X");
        assert!(reqs[0].headers.get("authorization").is_none());
    }

    #[tokio::test]
    async fn webhook_block_kit_is_sent_as_is() {
        let server = server_answering(200, "ok").await;
        let s = webhook(server.uri(), TIMEOUT);
        let v = json!({"text": "fallback", "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}
        ]});
        let req = s.prepare(&msg(Body::Json(v.clone()))).unwrap();
        s.send(&req, ID).await.unwrap();
        assert_eq!(received(&server).await, v);
    }

    #[tokio::test]
    async fn webhook_errors_are_classified() {
        let server = server_answering(404, "no_service").await;
        let e = webhook(server.uri(), TIMEOUT)
            .send(&Request::Json(json!({"text": "x"})), ID)
            .await
            .unwrap_err();
        assert!(e.is_permanent());
        assert_eq!(e.status, Some(404));
        assert_eq!(e.message, "HTTP 404 from destination: no_service");

        let server = server_answering(400, "invalid_payload").await;
        let e = webhook(server.uri(), TIMEOUT)
            .send(&Request::Json(json!({"text": "x"})), ID)
            .await
            .unwrap_err();
        assert!(e.is_permanent());
        assert!(e.message.contains("invalid_payload"));

        for status in [500, 503] {
            let server = server_answering(status, "").await;
            let e = webhook(server.uri(), TIMEOUT)
                .send(&Request::Json(json!({"text": "x"})), ID)
                .await
                .unwrap_err();
            assert!(e.is_transient());
            assert_eq!(e.status, Some(status));
        }

        for (value, secs) in [("7", 7), ("99999", 3600)] {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", value))
                .mount(&server)
                .await;
            let e = webhook(server.uri(), TIMEOUT)
                .send(&Request::Json(json!({"text": "x"})), ID)
                .await
                .unwrap_err();
            assert!(e.is_transient());
            assert_eq!(e.retry_after, Some(Duration::from_secs(secs)));
        }
    }

    #[tokio::test]
    async fn webhook_refused_and_slow_are_transient_without_url() {
        let s = webhook(
            format!("http://{}/services/T/B/SECRET", refused_addr()),
            TIMEOUT,
        );
        let e = s
            .send(&Request::Json(json!({"text": "x"})), ID)
            .await
            .unwrap_err();
        assert!(e.is_transient());
        assert!(!e.message.contains("SECRET"), "{}", e.message);
        assert!(!format!("{s:?}").contains("SECRET"));

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
            .mount(&server)
            .await;
        let s = webhook(server.uri(), Duration::from_millis(200));
        let e = s
            .send(&Request::Json(json!({"text": "x"})), ID)
            .await
            .unwrap_err();
        assert!(e.is_transient(), "{e:?}");
    }

    #[tokio::test]
    async fn bot_posts_with_bearer_and_channel() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api/chat.postMessage"))
            .and(header("authorization", "Bearer xoxb-SECRET"))
            .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"ok":true}"#))
            .expect(2)
            .mount(&server)
            .await;
        let s = bot(format!("{}/api/", server.uri()));

        let mut m = msg(Body::Text("hello & <you>".into()));
        m.channel = Some("#backups-prod".into());
        let req = s.prepare(&m).unwrap();
        assert_eq!(
            req,
            Request::Json(json!({"channel": "#backups-prod", "text": "hello & <you>"}))
        );
        assert_eq!(s.send(&req, ID).await.unwrap().status, Some(200));
        assert_eq!(
            received(&server).await,
            json!({"channel": "#backups-prod", "text": "hello & <you>"})
        );

        // A Json body gets the (fallback) channel merged in, overriding its own.
        let v = json!({"channel": "#ignored", "text": "t", "blocks": []});
        let req = s.prepare(&msg(Body::Json(v))).unwrap();
        s.send(&req, ID).await.unwrap();
        assert_eq!(
            received(&server).await,
            json!({"channel": "#fallback", "text": "t", "blocks": []})
        );
        assert!(!format!("{s:?}").contains("SECRET"));
    }

    #[tokio::test]
    async fn bot_ok_false_is_a_failure() {
        let server = server_answering(200, r#"{"ok":false,"error":"channel_not_found"}"#).await;
        let s = bot(server.uri());
        let req = s.prepare(&msg(Body::Text("x".into()))).unwrap();
        let e = s.send(&req, ID).await.unwrap_err();
        assert!(e.is_permanent());
        assert_eq!(e.message, "Slack refused the message: channel_not_found");

        let server = server_answering(200, r#"{"ok":false,"error":"ratelimited"}"#).await;
        let e = bot(server.uri()).send(&req, ID).await.unwrap_err();
        assert!(e.is_transient());

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("Retry-After", "7")
                    .set_body_string(r#"{"ok":false,"error":"ratelimited"}"#),
            )
            .mount(&server)
            .await;
        let e = bot(server.uri()).send(&req, ID).await.unwrap_err();
        assert!(e.is_transient());
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));

        let server = server_answering(200, "<html>proxy</html>").await;
        let e = bot(server.uri()).send(&req, ID).await.unwrap_err();
        assert!(e.is_transient());
    }

    #[test]
    fn a_refusal_keeps_what_slack_said_was_wrong() {
        let e = |body: Value| {
            classify_api(200, &HeaderMap::new(), &body.to_string())
                .unwrap_err()
                .message
        };
        assert_eq!(
            e(json!({"ok": false, "error": "invalid_blocks", "response_metadata": {
                "messages": ["[ERROR] must be more than 0 characters [json-pointer:/blocks/0/text/text]"]}})),
            "Slack refused the message: invalid_blocks: blocks.0.text.text: must be more than 0 characters"
        );
        // Warnings are left out; the older `errors` list is read too.
        assert_eq!(
            e(json!({"ok": false, "error": "invalid_attachments",
                "errors": ["missing required field: alt_text [json-pointer:/attachments/0/blocks/0]"],
                "response_metadata": {"messages": ["[WARN] A Content-Type HTTP header was presented but did not declare a charset"]}})),
            "Slack refused the message: invalid_attachments: attachments.0.blocks.0: missing required field: alt_text"
        );
        assert_eq!(
            e(json!({"ok": false, "error": "channel_not_found"})),
            "Slack refused the message: channel_not_found"
        );
        let many: Vec<String> = (0..5)
            .map(|i| format!("[ERROR] unsupported type [json-pointer:/blocks/{i}/type]"))
            .collect();
        assert_eq!(
            e(json!({"ok": false, "error": "invalid_blocks",
                "response_metadata": {"messages": many}})),
            "Slack refused the message: invalid_blocks: blocks.0.type: unsupported type; \
             blocks.1.type: unsupported type; blocks.2.type: unsupported type; and 2 more"
        );
    }

    #[tokio::test]
    async fn bot_refused_is_transient_and_token_free() {
        let s = bot(format!("http://{}", refused_addr()));
        let req = s.prepare(&msg(Body::Text("x".into()))).unwrap();
        let e = s.send(&req, ID).await.unwrap_err();
        assert!(e.is_transient());
        assert!(!e.message.contains("SECRET"));
    }

    #[test]
    fn bot_json_body_must_be_an_object() {
        let s = bot("http://127.0.0.1:9".into());
        let e = s.prepare(&msg(Body::Json(json!([1])))).unwrap_err();
        assert!(e.is_permanent());
    }

    #[test]
    fn long_texts_are_shortened_to_the_limits() {
        let s = webhook("http://127.0.0.1:9".into(), TIMEOUT);
        let long = "é".repeat(5_000);
        let mut blocks: Vec<Value> = (0..60)
            .map(
                |i| json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("b{i}")}}),
            )
            .collect();
        blocks[0] = json!({"type": "section", "text": {"type": "mrkdwn", "text": long},
            "fields": [{"type": "mrkdwn", "text": "f".repeat(2_500)}, {"type": "plain_text", "text": "ok"}]});
        blocks[1] =
            json!({"type": "header", "text": {"type": "plain_text", "text": "h".repeat(200)}});
        let v = json!({"text": "t".repeat(45_000), "blocks": blocks});
        let Request::Json(out) = s.prepare(&msg(Body::Json(v))).unwrap() else {
            panic!("not JSON")
        };
        let blocks = out["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 50);
        let section = blocks[0]["text"]["text"].as_str().unwrap();
        assert_eq!(section.chars().count(), 3_000);
        assert!(section.ends_with('…'));
        assert!(section.starts_with("éé"));
        let field = blocks[0]["fields"][0]["text"].as_str().unwrap();
        assert_eq!(field.chars().count(), 2_000);
        assert!(field.ends_with('…'));
        assert_eq!(blocks[0]["fields"][1]["text"], "ok");
        assert_eq!(
            blocks[1]["text"]["text"].as_str().unwrap().chars().count(),
            150
        );
        assert_eq!(blocks[48]["text"]["text"], "b48");
        assert_eq!(
            blocks[49]["elements"][0]["text"],
            "… 11 more blocks left out"
        );
        let text = out["text"].as_str().unwrap();
        assert_eq!(text.chars().count(), 40_000);
        assert!(text.ends_with('…'));

        // Plain text bodies too.
        let Request::Json(out) = s.prepare(&msg(Body::Text("😀".repeat(50_000)))).unwrap() else {
            panic!("not JSON")
        };
        let text = out["text"].as_str().unwrap();
        assert_eq!(text.chars().count(), 40_000);
        assert!(text.ends_with('…'));
    }

    #[test]
    fn odd_shapes_do_not_panic() {
        let s = webhook("http://127.0.0.1:9".into(), TIMEOUT);
        for v in [
            json!(null),
            json!("str"),
            json!({"blocks": "x"}),
            json!({"blocks": [1, null, {"text": 5}, {"fields": [1]}, {"text": {"text": null}}]}),
            json!({"attachments": [1, {"blocks": [{"text": {"text": "x"}}]}]}),
        ] {
            assert!(s.prepare(&msg(Body::Json(v))).is_ok());
        }
    }
}
