//! `type: telegram`: the Bot API's `sendMessage` (`<api_url>/bot<token>/sendMessage`)
//! to `chat_id`, in HTML parse mode.
//!
//! Text templates (`<name>.telegram.hbs`) write Telegram HTML: the template's own
//! tags (`<b>`, `<i>`, `<code>`, `<blockquote>`) are kept, and values are escaped
//! exactly as Telegram asks, `&`, `<` and `>` only (the three entities Slack's text
//! needs too, hence [`TextEscape::Slack`]). A JSON template renders the whole
//! `sendMessage` body; `chat_id` is always the configured one.
//!
//! Telegram takes 4,096 characters of text once its tags are parsed; a longer
//! message is cut to fit with a visible "…", never inside a tag or an entity, and
//! the tags still open at the cut are closed. Lengths are counted in UTF-16 units,
//! as Telegram counts them (an emoji outside the BMP is two).
//!
//! The bot token is part of the URL path: every error is scrubbed of it, and
//! neither `Debug`, `check` nor `render` shows it.
//!
//! Telegram answers `{"ok": false, "error_code": N, "description": "…",
//! "parameters": {…}}`: 429 carries `parameters.retry_after` (seconds), honoured
//! like `Retry-After`; a group that became a supergroup answers 400 with
//! `parameters.migrate_to_chat_id`, reported as the new id to configure; any other
//! 4xx (bad chat, parse error, blocked bot, wrong token) is permanent; 5xx is
//! retried.

use super::Http;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Map, Value};

use super::{classify_status, excerpt, post_json, Destination, Message, Request};
use super::{DestinationSettings, Kind, SendError, Sent, TextEscape, MAX_RETRY_AFTER};
use crate::config::{ConfigError, Secret};
use crate::templates::Body;

pub const KIND: Kind = Kind {
    name: "telegram",
    parse: super::parse_as::<TelegramConfig>,
    templates: &[(
        "default.telegram.hbs",
        include_str!("../../templates/default.telegram.hbs"),
    )],
    text_escape: TextEscape::Slack,
    html_part: false,
};

/// Telegram's limit on a message's text, in UTF-16 units after parsing.
pub const MAX_TEXT: usize = 4_096;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// The bot token from @BotFather (`123456789:AA…`).
    pub token: Secret,
    /// A chat id (`-1001234567890`) or a public channel's `@username`.
    #[serde(deserialize_with = "de_chat_id")]
    pub chat_id: String,
    /// The Bot API's base address; changed for a local Bot API server or a
    /// stand-in.
    #[serde(default = "default_api_url")]
    pub api_url: String,
}

fn default_api_url() -> String {
    "https://api.telegram.org".into()
}

/// `chat_id: -1001234567890` (a YAML number) or `"-100…"` / `"@channel"`.
fn de_chat_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s.trim().to_string()),
        Value::Number(n) if n.is_i64() => Ok(n.to_string()),
        _ => Err(serde::de::Error::custom(
            "expected a chat id (-1001234567890) or @channelusername",
        )),
    }
}

impl DestinationSettings for TelegramConfig {
    fn type_name(&self) -> &'static str {
        KIND.name
    }

    fn check(&self, place: &str, errors: &mut Vec<ConfigError>) {
        // A bot token is `<bot id>:<secret>`; say what is wrong without quoting it.
        let token = self.token.expose();
        let shaped = token.split_once(':').is_some_and(|(id, rest)| {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
        if token.is_empty() {
            errors.push(ConfigError::new(format!("{place}.token"), "is empty"));
        } else if !shaped {
            errors.push(ConfigError::new(
                format!("{place}.token"),
                "is not a bot token (expected <bot id>:<secret>, as @BotFather gives it)",
            ));
        }
        let id = &self.chat_id;
        let numeric = id
            .strip_prefix('-')
            .unwrap_or(id)
            .bytes()
            .all(|b| b.is_ascii_digit())
            && !id.trim_start_matches('-').is_empty();
        let username = id.strip_prefix('@').is_some_and(|u| {
            !u.is_empty() && u.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
        if !numeric && !username {
            errors.push(ConfigError::new(
                format!("{place}.chat_id"),
                format!(
                    "{:?} is not a chat id (-1001234567890) or @channelusername",
                    excerpt(id)
                ),
            ));
        }
        super::check_url(format!("{place}.api_url"), &self.api_url, errors);
    }

    fn describe(&self) -> String {
        format!("sendMessage to chat {}", self.chat_id)
    }

    fn build(&self, http: &Http, timeout: Duration) -> std::sync::Arc<dyn Destination> {
        std::sync::Arc::new(Telegram::new(self, http.clone(), timeout))
    }
}

pub struct Telegram {
    token: Secret,
    chat_id: String,
    api_url: String,
    http: Http,
    timeout: Duration,
}

impl std::fmt::Debug for Telegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telegram")
            .field("token", &self.token)
            .field("chat_id", &self.chat_id)
            .field("api_url", &self.api_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Telegram {
    pub fn new(cfg: &TelegramConfig, http: Http, timeout: Duration) -> Telegram {
        Telegram {
            token: cfg.token.clone(),
            chat_id: cfg.chat_id.clone(),
            api_url: cfg.api_url.trim_end_matches('/').to_string(),
            http,
            timeout,
        }
    }

    /// The chat id as Telegram's examples send it: a number when it is one.
    fn chat_id_value(&self) -> Value {
        self.chat_id
            .parse::<i64>()
            .map_or_else(|_| Value::String(self.chat_id.clone()), Value::from)
    }
}

/// One piece of Telegram HTML: a tag, an entity or a character.
enum Piece<'a> {
    Tag(&'a str),
    Text(&'a str),
}

/// Splits the next piece off `s` (not empty).
fn next_piece(s: &str) -> (Piece<'_>, &str) {
    if s.starts_with('<') {
        if let Some(end) = s.find('>') {
            return (Piece::Tag(&s[..=end]), &s[end + 1..]);
        }
    }
    if s.starts_with('&') {
        // `&amp;`, `&#39;`, `&#x1F600;`: short, letters, digits and `#` only.
        if let Some(end) = s.get(..12).unwrap_or(s).find(';') {
            let name = &s[1..end];
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'#') {
                return (Piece::Text(&s[..=end]), &s[end + 1..]);
            }
        }
    }
    let n = s.chars().next().map_or(1, char::len_utf8);
    (Piece::Text(&s[..n]), &s[n..])
}

/// How many UTF-16 units a text piece shows as (an entity is one character).
fn units(piece: &str) -> usize {
    if piece.len() > 1 && piece.starts_with('&') && piece.ends_with(';') {
        1
    } else {
        piece.encode_utf16().count()
    }
}

/// What Telegram counts of HTML text: everything but tags, an entity as one.
pub fn visible_len(html: &str) -> usize {
    let mut rest = html;
    let mut n = 0;
    while !rest.is_empty() {
        let (piece, r) = next_piece(rest);
        if let Piece::Text(t) = piece {
            n += units(t);
        }
        rest = r;
    }
    n
}

/// Telegram HTML cut to at most `max` visible UTF-16 units: whole tags and
/// entities only, a visible "…" at the cut, and the tags open there closed.
pub fn fit_html(html: &str, max: usize) -> String {
    if visible_len(html) <= max {
        return html.to_string();
    }
    let budget = max.saturating_sub(1);
    let mut out = String::new();
    let mut open: Vec<String> = Vec::new();
    let mut used = 0;
    let mut rest = html;
    while !rest.is_empty() {
        let (piece, r) = next_piece(rest);
        match piece {
            Piece::Tag(tag) => {
                let inner = tag.trim_start_matches('<').trim_end_matches('>');
                if let Some(name) = inner.strip_prefix('/') {
                    let name = name.trim().to_ascii_lowercase();
                    if let Some(i) = open.iter().rposition(|o| *o == name) {
                        open.truncate(i);
                    }
                } else {
                    let name = inner
                        .split(|c: char| c.is_whitespace() || c == '/')
                        .next()
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    if !name.is_empty() {
                        open.push(name);
                    }
                }
                out.push_str(tag);
            }
            Piece::Text(t) => {
                let n = units(t);
                if used + n > budget {
                    break;
                }
                used += n;
                out.push_str(t);
            }
        }
        rest = r;
    }
    out.push('…');
    for name in open.iter().rev() {
        out.push_str("</");
        out.push_str(name);
        out.push('>');
    }
    out
}

/// Plain text cut to at most `max` UTF-16 units, "…" at the cut.
fn fit_plain(s: &str, max: usize) -> String {
    if s.encode_utf16().count() <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        if used + c.len_utf16() > max.saturating_sub(1) {
            break;
        }
        used += c.len_utf16();
        out.push(c);
    }
    out.push('…');
    out
}

/// Judges a Bot API answer (see the module docs). `chat_id` names the chat in the
/// supergroup message.
fn classify(
    status: u16,
    headers: &HeaderMap,
    body: &str,
    chat_id: &str,
) -> Result<Sent, SendError> {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let field = |k: &str| parsed.as_ref().and_then(|v| v.get(k));
    let param = |k: &str| field("parameters").and_then(|p| p.get(k));
    let ok = field("ok").and_then(Value::as_bool);
    if (200..300).contains(&status) {
        return match ok {
            Some(true) => Ok(Sent {
                status: Some(status),
                note: None,
            }),
            // A proxy's page, not the Bot API: try again later.
            _ => Err(SendError {
                transient: true,
                status: Some(status),
                retry_after: None,
                message: format!(
                    "HTTP {status} from Telegram without \"ok\": true: {}",
                    excerpt(body)
                ),
            }),
        };
    }
    let Err(mut e) = classify_status(status, headers, body) else {
        // Only 2xx succeeds there, and 2xx was judged above.
        return Ok(Sent {
            status: Some(status),
            note: None,
        });
    };
    if let Some(new_id) = param("migrate_to_chat_id").and_then(Value::as_i64) {
        e.transient = false;
        e.message = format!(
            "Telegram: chat {chat_id} was upgraded to a supergroup; set chat_id to {new_id}"
        );
        return Err(e);
    }
    if let Some(secs) = param("retry_after").and_then(Value::as_u64) {
        e.retry_after = Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let said = field("description").and_then(Value::as_str);
    Err(super::in_words(e, "Telegram", said, ""))
}

#[async_trait]
impl Destination for Telegram {
    fn prepare(&self, msg: &Message) -> Result<Request, SendError> {
        let mut body = Map::new();
        body.insert("chat_id".into(), self.chat_id_value());
        match &msg.body {
            Body::Text(t) => {
                body.insert("text".into(), fit_html(t, MAX_TEXT).into());
                body.insert("parse_mode".into(), "HTML".into());
                // A link in a payload value should not unfurl into a preview card.
                body.insert("link_preview_options".into(), json!({"is_disabled": true}));
            }
            Body::Json(Value::Object(obj)) => {
                for (k, v) in obj {
                    if k != "chat_id" {
                        body.insert(k.clone(), v.clone());
                    }
                }
                let html = body.get("parse_mode").and_then(Value::as_str) == Some("HTML");
                if let Some(Value::String(t)) = body.get_mut("text") {
                    *t = if html {
                        fit_html(t, MAX_TEXT)
                    } else {
                        fit_plain(t, MAX_TEXT)
                    };
                }
            }
            Body::Json(_) => {
                return Err(SendError::permanent(
                    "a Telegram JSON template must render an object (a sendMessage body)",
                ))
            }
        }
        // A payload's bidi controls could make a line read as something else.
        let mut body = Value::Object(body);
        super::strip_bidi_json(&mut body);
        Ok(Request::Json(body))
    }

    async fn send(&self, req: &Request, delivery_id: &str) -> Result<Sent, SendError> {
        let Request::Json(body) = req else {
            return Err(SendError::permanent("Telegram takes JSON requests only"));
        };
        let token = self.token.expose();
        let url = format!("{}/bot{token}/sendMessage", self.api_url);
        let answer = post_json(
            &self.http,
            &url,
            HeaderMap::new(),
            body,
            self.timeout,
            delivery_id,
        )
        .await;
        // The token is in the URL: whatever an error quotes (a cause naming the
        // URL, a proxy echoing the path), it must not carry it.
        super::judge(
            answer,
            |status, headers, text| classify(status, headers, text, &self.chat_id),
            &[token],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{client, refused_addr, text, TIMEOUT};
    use super::*;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const TOKEN: &str = "123456789:AAHsecretSECRETsecret_-x";

    fn tg(api_url: String) -> Telegram {
        let cfg = TelegramConfig {
            token: Secret::new(TOKEN),
            chat_id: "-1001234567890".into(),
            api_url,
        };
        Telegram::new(&cfg, client(), TIMEOUT)
    }

    async fn answering(status: u16, body: Value) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&server)
            .await;
        server
    }

    #[test]
    fn text_is_sent_as_html_to_the_chat() {
        let d = tg("https://api.telegram.org".into());
        let req = d
            .prepare(&text("<b>hi</b> &amp;\u{202E} bye\u{2066}"))
            .unwrap();
        assert_eq!(
            req,
            Request::Json(json!({
                "chat_id": -1001234567890_i64,
                "text": "<b>hi</b> &amp; bye",
                "parse_mode": "HTML",
                "link_preview_options": {"is_disabled": true}
            }))
        );
        let cfg = TelegramConfig {
            token: Secret::new(TOKEN),
            chat_id: "@backups".into(),
            api_url: "https://api.telegram.org".into(),
        };
        let Request::Json(v) = Telegram::new(&cfg, client(), TIMEOUT)
            .prepare(&text("x"))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(v["chat_id"], "@backups");
    }

    #[test]
    fn json_bodies_keep_their_keys_but_not_their_chat() {
        let d = tg("https://api.telegram.org".into());
        let m = Message {
            body: Body::Json(json!({"chat_id": 1, "text": "😀".repeat(3_000),
                "disable_notification": true})),
            ..text("")
        };
        let Request::Json(v) = d.prepare(&m).unwrap() else {
            panic!()
        };
        assert_eq!(v["chat_id"], -1001234567890_i64);
        assert_eq!(v["disable_notification"], true);
        let t = v["text"].as_str().unwrap();
        assert_eq!(t.encode_utf16().count(), 4_095, "2,047 emoji and the …");
        assert!(t.ends_with('…'));
        let m = Message {
            body: Body::Json(json!([1])),
            ..text("")
        };
        assert!(d.prepare(&m).unwrap_err().is_permanent());
    }

    #[test]
    fn long_html_is_cut_between_tags_and_entities_and_closed() {
        assert_eq!(visible_len("<b>a&amp;b</b>\n😀"), 6);
        assert_eq!(fit_html("<b>short</b>", 10), "<b>short</b>");
        // Cut inside <b><i>: both closed, innermost first; the entity is whole.
        assert_eq!(
            fit_html("<b>ab<i>c&amp;d</i>e</b>f", 5),
            "<b>ab<i>c&amp;…</i></b>"
        );
        assert_eq!(
            fit_html("<blockquote>x &lt;y&gt; z</blockquote>", 4),
            "<blockquote>x &lt;…</blockquote>"
        );
        // A real message: every tag balanced, 4,096 units, the "…" visible.
        let line = "<b>Server:</b> db &amp; co &lt;1&gt; 😀\n";
        let long = format!("<i>{}</i>", line.repeat(500));
        let fitted = fit_html(&long, MAX_TEXT);
        assert!(visible_len(&fitted) <= MAX_TEXT);
        assert!(visible_len(&fitted) >= MAX_TEXT - 2);
        assert!(
            fitted.ends_with("…</i>") || fitted.ends_with("…</b></i>"),
            "{}",
            &fitted[fitted.len() - 40..]
        );
        assert_eq!(
            fitted.matches("<b>").count(),
            fitted.matches("</b>").count()
        );
        assert!(!fitted.contains("&am…") && !fitted.contains("<…"));
        let d = tg("https://api.telegram.org".into());
        let Request::Json(v) = d.prepare(&text(&long)).unwrap() else {
            panic!()
        };
        assert_eq!(v["text"], fitted);
    }

    #[tokio::test]
    async fn sends_to_the_bot_path_and_takes_ok_true() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(format!("/bot{TOKEN}/sendMessage")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "ok": true, "result": {"message_id": 42, "chat": {"id": -1001234567890_i64}}})))
            .expect(1)
            .mount(&server)
            .await;
        let d = tg(format!("{}/", server.uri()));
        let req = d.prepare(&text("hello")).unwrap();
        assert_eq!(
            d.send(&req, crate::destinations::test_support::ID)
                .await
                .unwrap()
                .status,
            Some(200)
        );
        let got: Value =
            serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
        let Request::Json(sent) = req else { panic!() };
        assert_eq!(got, sent);
        assert!(!format!("{d:?}").contains("AAHsecret"));
    }

    #[tokio::test]
    async fn telegram_errors_are_classified_and_never_carry_the_token() {
        let req = Request::Json(json!({"chat_id": 1, "text": "x"}));

        let s = answering(
            429,
            json!({"ok": false, "error_code": 429,
            "description": "Too Many Requests: retry after 17",
            "parameters": {"retry_after": 17}}),
        )
        .await;
        let e = tg(s.uri())
            .send(&req, crate::destinations::test_support::ID)
            .await
            .unwrap_err();
        assert!(e.is_transient());
        assert_eq!(e.retry_after, Some(Duration::from_secs(17)));
        assert_eq!(
            e.message,
            "HTTP 429 from Telegram: Too Many Requests: retry after 17"
        );

        let s = answering(
            400,
            json!({"ok": false, "error_code": 400,
            "description": "Bad Request: group chat was upgraded to a supergroup chat",
            "parameters": {"migrate_to_chat_id": -1009876543210_i64}}),
        )
        .await;
        let e = tg(s.uri())
            .send(&req, crate::destinations::test_support::ID)
            .await
            .unwrap_err();
        assert!(e.is_permanent());
        assert_eq!(
            e.message,
            "Telegram: chat -1001234567890 was upgraded to a supergroup; set chat_id to -1009876543210"
        );

        for (status, description) in [
            (400, "Bad Request: chat not found"),
            (
                400,
                "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 0",
            ),
            (401, "Unauthorized"),
            (403, "Forbidden: bot was kicked from the supergroup chat"),
        ] {
            let s = answering(
                status,
                json!({"ok": false, "error_code": status,
                "description": description}),
            )
            .await;
            let e = tg(s.uri())
                .send(&req, crate::destinations::test_support::ID)
                .await
                .unwrap_err();
            assert!(e.is_permanent(), "{status}");
            assert_eq!(
                e.message,
                format!("HTTP {status} from Telegram: {description}")
            );
        }

        let s = answering(
            502,
            json!({"ok": false, "error_code": 502,
            "description": "Bad Gateway"}),
        )
        .await;
        assert!(tg(s.uri())
            .send(&req, crate::destinations::test_support::ID)
            .await
            .unwrap_err()
            .is_transient());

        // A proxy answering 200 with its own page: not delivered, try again.
        let s = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_string("<html>captive</html>"))
            .mount(&s)
            .await;
        assert!(tg(s.uri())
            .send(&req, crate::destinations::test_support::ID)
            .await
            .unwrap_err()
            .is_transient());

        // A server echoing the path it was asked for, and one nobody answers.
        let s = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(404)
                    .set_body_string(format!("no route for /bot{TOKEN}/sendMessage")),
            )
            .mount(&s)
            .await;
        let e = tg(s.uri())
            .send(&req, crate::destinations::test_support::ID)
            .await
            .unwrap_err();
        assert!(e.is_permanent());
        assert!(!format!("{e:?}").contains("AAHsecret"), "{e:?}");
        let e = tg(format!("http://{}", refused_addr()))
            .send(&req, crate::destinations::test_support::ID)
            .await
            .unwrap_err();
        assert!(e.is_transient());
        assert!(!format!("{e:?}").contains("AAHsecret"), "{e:?}");
    }

    #[test]
    fn check_explains_bad_tokens_and_chats_without_quoting_the_token() {
        let parse = |v: Value| {
            let mut errors = Vec::new();
            let c = super::super::parse_config("destinations.tg", v, &mut errors);
            (c, errors)
        };
        let (c, errors) = parse(json!({"type": "telegram", "token": TOKEN, "chat_id": -100123}));
        assert_eq!(errors, vec![]);
        assert_eq!(c.unwrap().kind.describe(), "sendMessage to chat -100123");
        let (_, errors) = parse(json!({"type": "telegram", "token": "AAHsecret nope",
            "chat_id": "backups", "api_url": "ftp://x"}));
        assert_eq!(
            errors,
            vec![
                ConfigError::new(
                    "destinations.tg.token",
                    "is not a bot token (expected <bot id>:<secret>, as @BotFather gives it)"
                ),
                ConfigError::new(
                    "destinations.tg.chat_id",
                    "\"backups\" is not a chat id (-1001234567890) or @channelusername"
                ),
                ConfigError::new(
                    "destinations.tg.api_url",
                    "must be an http:// or https:// URL"
                ),
            ]
        );
        let (c, _) = parse(json!({"type": "telegram", "token": TOKEN, "chat_id": "@ops"}));
        assert!(!format!("{:?}", c.unwrap()).contains("AAHsecret"));
    }
}
