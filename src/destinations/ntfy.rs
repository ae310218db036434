//! `type: ntfy`: a push notification through an ntfy server (ntfy.sh or your
//! own), to the topic of `url` (`https://ntfy.sh/our-backups`).
//!
//! hookrelay publishes as JSON: a POST to the server's root (the topic URL
//! without its last segment, so a server under a path prefix works) with
//! `{"topic": …, "title": …, "message": …, "priority": …, "tags": […]}` (the
//! topic added when sending, so `render` does not show it). JSON
//! rather than the headers form because a title with an emoji or an accented
//! server name is UTF-8, which HTTP headers do not carry reliably, and because a
//! template can then set any of ntfy's fields (`click`, `actions`, `markdown`).
//!
//! The default template (`default.ntfy.json.hbs`) gives priority 5 (max: a long
//! vibration, a pop-over) to a failed or missed backup (severity `critical`), 3 to
//! a partial or unknown one (`warning`), 2 to a success or a recovery (`info`),
//! and an emoji tag (`rotating_light`, `alarm_clock`, `warning`,
//! `white_check_mark`, `grey_question`) that ntfy shows before the title. A text
//! template (`<name>.ntfy.hbs`) becomes the `message`, with ntfy's default
//! priority. The configured topic always wins over a template's.
//!
//! ntfy keeps 4,096 bytes of a message by default (more becomes an attachment, or
//! is refused): a longer `message` is cut to fit with a visible "…"; so is a
//! title over 256 characters.
//!
//! Auth: `token` (an access token, sent as `Authorization: Bearer`) or `user` and
//! `password` (basic auth); both secrets. ntfy answers errors as
//! `{"code": 42901, "http": 429, "error": "limit reached: too many requests", …}`:
//! 429 is retried (after `Retry-After` if sent, else the retry schedule), 5xx
//! retried; 401, 403 (the topic is reserved or the token lacks write access) and
//! 413 (too large) are permanent; ntfy's own error and code are quoted.
//!
//! On a public server the topic name is the only thing keeping others from
//! reading it: `check` and `Debug` show only the host, and neither `render` nor
//! an error the topic.

use super::Http;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{classify_status, post_json, shorten, Destination, Message};
use super::{DestinationSettings, Kind, Request, SendError, Sent, TextEscape};
use crate::config::{de_opt_secret, ConfigError, Secret};
use crate::templates::Body;

pub const KIND: Kind = Kind {
    name: "ntfy",
    parse: super::parse_as::<NtfyConfig>,
    templates: &[(
        "default.ntfy.json.hbs",
        include_str!("../../templates/default.ntfy.json.hbs"),
    )],
    text_escape: TextEscape::Plain,
    html_part: false,
};

/// ntfy's default message size limit, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4_096;
/// A title longer than this is cut (ntfy shows one or two lines of it).
pub const MAX_TITLE: usize = 256;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NtfyConfig {
    /// The topic's URL: `https://ntfy.sh/<topic>` or `https://<your server>/<topic>`.
    pub url: Secret,
    /// An access token (`tk_…`).
    #[serde(default, deserialize_with = "de_opt_secret")]
    pub token: Option<Secret>,
    /// Basic auth, with `password`.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default, deserialize_with = "de_opt_secret")]
    pub password: Option<Secret>,
}

/// The topic URL taken apart: (the server root to POST to, the topic).
fn split_topic(url: &str) -> Option<(String, String)> {
    let u = url::Url::parse(url).ok()?;
    if u.query().is_some() || u.fragment().is_some() {
        return None;
    }
    let path = u.path().trim_end_matches('/');
    let (prefix, topic) = path.rsplit_once('/')?;
    let valid = !topic.is_empty()
        && topic.len() <= 64
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return None;
    }
    let mut root = u.clone();
    root.set_path(&format!("{prefix}/"));
    Some((root.to_string(), topic.to_string()))
}

impl DestinationSettings for NtfyConfig {
    fn type_name(&self) -> &'static str {
        KIND.name
    }

    fn check(&self, place: &str, errors: &mut Vec<ConfigError>) {
        let at = format!("{place}.url");
        let before = errors.len();
        super::check_url(at.clone(), self.url.expose(), errors);
        if errors.len() == before && split_topic(self.url.expose()).is_none() {
            errors.push(ConfigError::new(
                at,
                "must be a topic URL, https://<server>/<topic> (a topic is 1 to 64 letters, digits, _ or -; no query)",
            ));
        }
        match (&self.token, &self.user, &self.password) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => errors.push(ConfigError::new(
                place,
                "give either `token` or `user` and `password`, not both",
            )),
            (None, Some(_), None) => errors.push(ConfigError::new(
                format!("{place}.password"),
                "is required with `user`",
            )),
            (None, None, Some(_)) => errors.push(ConfigError::new(
                format!("{place}.user"),
                "is required with `password`",
            )),
            _ => {}
        }
    }

    fn describe(&self) -> String {
        let host = url::Url::parse(self.url.expose())
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| "?".into());
        let auth = match (&self.token, &self.user) {
            (Some(_), _) => ", with a token",
            (None, Some(_)) => ", with a user and password",
            _ => "",
        };
        format!("topic on {host}{auth}")
    }

    fn build(&self, http: &Http, timeout: Duration) -> std::sync::Arc<dyn Destination> {
        let (root, topic) = split_topic(self.url.expose()).unwrap_or_default();
        let auth = match (&self.token, &self.user, &self.password) {
            (Some(t), _, _) => Some(Secret::new(format!("Bearer {}", t.expose()))),
            (None, Some(u), Some(p)) => Some(Secret::new(super::basic_auth(u, p.expose()))),
            _ => None,
        };
        std::sync::Arc::new(Ntfy {
            root: Secret::new(root),
            topic: Secret::new(topic),
            auth,
            http: http.clone(),
            timeout,
        })
    }
}

pub struct Ntfy {
    root: Secret,
    topic: Secret,
    /// The whole `Authorization` value.
    auth: Option<Secret>,
    http: Http,
    timeout: Duration,
}

impl std::fmt::Debug for Ntfy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ntfy")
            .field("topic", &self.topic)
            .field("auth", &self.auth.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `s` cut to at most `max` bytes (on a character boundary) with a visible "…".
fn fit_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

/// Judges ntfy's answer: [`classify_status`], with ntfy's `error` and `code`
/// quoted.
fn classify(status: u16, headers: &HeaderMap, body: &str) -> Result<Sent, SendError> {
    let e = match classify_status(status, headers, body) {
        Ok(sent) => return Ok(sent),
        Err(e) => e,
    };
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(Value::as_str);
    let code = parsed
        .as_ref()
        .and_then(|v| v.get("code"))
        .and_then(Value::as_i64)
        .map(|c| format!(" (code {c})"))
        .unwrap_or_default();
    let hint = match status {
        401 => "; the token or password is wrong, or the topic needs one",
        403 => {
            "; this user or token may not publish to the topic (or it is reserved by someone else)"
        }
        413 => "; the message is larger than the server takes",
        _ => "",
    };
    let suffix = match error {
        Some(_) => format!("{code}{hint}"),
        None => hint.to_string(),
    };
    Err(super::in_words(e, "ntfy", error, &suffix))
}

#[async_trait]
impl Destination for Ntfy {
    fn prepare(&self, msg: &Message) -> Result<Request, SendError> {
        let mut body: Map<String, Value> = match &msg.body {
            Body::Text(t) => {
                let mut m = Map::new();
                m.insert("message".into(), json!(t));
                m
            }
            Body::Json(Value::Object(o)) => o.clone(),
            Body::Json(_) => {
                return Err(SendError::permanent(
                    "an ntfy JSON template must render an object (a publish body)",
                ))
            }
        };
        // The topic is added when sending: `render` does not show it.
        body.remove("topic");
        if let Some(Value::String(m)) = body.get_mut("message") {
            *m = fit_bytes(m, MAX_MESSAGE_BYTES);
        }
        if let Some(Value::String(t)) = body.get_mut("title") {
            *t = shorten(t, MAX_TITLE);
        }
        // ntfy refuses a priority outside 1..=5 or given as text it cannot read.
        if let Some(p) = body.get("priority") {
            let n = p
                .as_i64()
                .or_else(|| p.as_str().and_then(|s| s.trim().parse().ok()));
            match n {
                Some(n) => {
                    body.insert("priority".into(), json!(n.clamp(1, 5)));
                }
                None => {
                    body.remove("priority");
                }
            }
        }
        let mut body = Value::Object(body);
        super::strip_bidi_json(&mut body);
        Ok(Request::Json(body))
    }

    async fn send(&self, req: &Request, delivery_id: &str) -> Result<Sent, SendError> {
        let Request::Json(body) = req else {
            return Err(SendError::permanent("ntfy takes JSON requests only"));
        };
        let mut body = body.clone();
        if let Some(obj) = body.as_object_mut() {
            obj.insert("topic".into(), json!(self.topic.expose()));
        }
        let mut headers = HeaderMap::new();
        if let Some(a) = &self.auth {
            let mut v = HeaderValue::from_str(a.expose()).map_err(|_| {
                SendError::permanent("the ntfy token or password is not a valid header value")
            })?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let answer = post_json(
            &self.http,
            self.root.expose(),
            headers,
            &body,
            self.timeout,
            delivery_id,
        )
        .await;
        // The topic, and the token or the base64 of user:password.
        let credential = self
            .auth
            .as_ref()
            .and_then(|a| a.expose().split_once(' '))
            .map_or("", |(_, c)| c);
        super::judge(answer, classify, &[self.topic.expose(), credential])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destinations::test_support::{client, text, ID, TIMEOUT};
    use wiremock::matchers::{body_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const TOPIC: &str = "backups-SECRETtopic";
    const TOKEN: &str = "tk_SECRETAgQdq7mVBoFD37zQVN29RhuMzNIz2";

    fn ntfy(url: &str, token: Option<&str>) -> Ntfy {
        let (root, topic) = split_topic(url).unwrap();
        Ntfy {
            root: Secret::new(root),
            topic: Secret::new(topic),
            auth: token.map(|t| Secret::new(format!("Bearer {t}"))),
            http: client(),
            timeout: TIMEOUT,
        }
    }

    #[test]
    fn topic_urls_are_split_into_root_and_topic() {
        assert_eq!(
            split_topic("https://ntfy.sh/our-backups"),
            Some(("https://ntfy.sh/".into(), "our-backups".into()))
        );
        assert_eq!(
            split_topic("https://example.com/ntfy/ops_backups/"),
            Some(("https://example.com/ntfy/".into(), "ops_backups".into()))
        );
        assert_eq!(split_topic("https://ntfy.sh/"), None);
        assert_eq!(split_topic("https://ntfy.sh/a?x=1"), None);
        assert_eq!(split_topic("https://ntfy.sh/a b"), None);
    }

    #[test]
    fn prepare_sets_the_topic_and_keeps_within_ntfys_limits() {
        let d = ntfy("https://ntfy.sh/backups", None);
        assert_eq!(
            d.prepare(&text("hello")).unwrap(),
            Request::Json(json!({"message": "hello"}))
        );
        let msg = Message {
            body: Body::Json(json!({"topic": "elsewhere", "title": "t".repeat(300),
                "message": "é".repeat(3_000), "priority": "9", "tags": ["warning"]})),
            ..text("")
        };
        let Request::Json(v) = d.prepare(&msg).unwrap() else {
            panic!()
        };
        assert!(v.get("topic").is_none(), "added when sending");
        assert_eq!(v["priority"], 5);
        assert_eq!(v["title"].as_str().unwrap().chars().count(), MAX_TITLE);
        let m = v["message"].as_str().unwrap();
        assert!(m.len() <= MAX_MESSAGE_BYTES && m.len() > MAX_MESSAGE_BYTES - 4);
        assert!(m.ends_with('…'));
        let msg = Message {
            body: Body::Json(json!({"message": "x", "priority": "high"})),
            ..text("")
        };
        let Request::Json(v) = d.prepare(&msg).unwrap() else {
            panic!()
        };
        assert!(v.get("priority").is_none());
    }

    #[tokio::test]
    async fn publishes_json_to_the_root_with_the_token() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/"))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .and(body_json(json!({"topic": TOPIC, "message": "hi"})))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "sPs71M8A2T", "time": 1_764_480_000, "event": "message",
                "topic": TOPIC, "message": "hi"})))
            .expect(1)
            .mount(&server)
            .await;
        let d = ntfy(&format!("{}/{TOPIC}", server.uri()), Some(TOKEN));
        let req = d.prepare(&text("hi")).unwrap();
        assert_eq!(d.send(&req, ID).await.unwrap().status, Some(200));
        let shown = format!("{d:?} {req:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }

    #[tokio::test]
    async fn ntfys_errors_are_classified_with_its_words() {
        let cases = [
            (429, 42901, "limit reached: too many requests", true),
            (401, 40101, "unauthorized", false),
            (403, 40301, "forbidden", false),
            (413, 41301, "request entity too large", false),
            (507, 50701, "insufficient storage", true),
        ];
        let req = Request::Json(json!({"topic": TOPIC, "message": "x"}));
        for (status, code, error, transient) in cases {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(status).set_body_json(json!({
                    "code": code, "http": status, "error": error,
                    "link": "https://ntfy.sh/docs/publish/#limitations"})))
                .mount(&server)
                .await;
            let e = ntfy(&format!("{}/{TOPIC}", server.uri()), Some(TOKEN))
                .send(&req, ID)
                .await
                .unwrap_err();
            assert_eq!(e.is_transient(), transient, "{status}");
            assert!(
                e.message
                    .starts_with(&format!("HTTP {status} from ntfy: {error} (code {code})")),
                "{}",
                e.message
            );
        }
        // An answer naming the topic and the token.
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(403).set_body_json(json!({
                "code": 40301, "http": 403,
                "error": format!("forbidden: {TOPIC} with {TOKEN}")})))
            .mount(&server)
            .await;
        let e = ntfy(&format!("{}/{TOPIC}", server.uri()), Some(TOKEN))
            .send(&req, ID)
            .await
            .unwrap_err();
        assert!(!format!("{e:?}").contains("SECRET"), "{e:?}");
    }

    #[test]
    fn check_explains_urls_and_auth() {
        let parse = |v: Value| {
            let mut errors = Vec::new();
            let c = super::super::parse_config("destinations.n", v, &mut errors);
            (c, errors)
        };
        let (c, errors) = parse(json!({"type": "ntfy", "url": "https://ntfy.sh/backups",
            "user": "ops", "password": "SECRET"}));
        assert_eq!(errors, vec![]);
        assert_eq!(
            c.unwrap().kind.describe(),
            "topic on ntfy.sh, with a user and password"
        );
        let (_, errors) = parse(json!({"type": "ntfy", "url": "https://ntfy.sh/",
            "token": "tk_x", "user": "ops"}));
        assert_eq!(
            errors,
            vec![
                ConfigError::new(
                    "destinations.n.url",
                    "must be a topic URL, https://<server>/<topic> (a topic is 1 to 64 letters, digits, _ or -; no query)"
                ),
                ConfigError::new(
                    "destinations.n",
                    "give either `token` or `user` and `password`, not both"
                ),
            ]
        );
    }
}
