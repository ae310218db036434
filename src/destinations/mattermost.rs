//! `type: mattermost`: a Mattermost incoming webhook (`https://<server>/hooks/<key>`),
//! which takes a Slack-like `{"text": …}` with optional `channel`, `username` and
//! `icon_url`.
//!
//! Text templates (`<name>.mattermost.hbs`) write Mattermost Markdown; payload
//! values are escaped by [`escape_markdown`] so a backup name cannot bold, link,
//! quote or mention: `@channel` in a payload pings nobody. A JSON template renders
//! the whole webhook body (attachments, props); the configured `channel`,
//! `username` and `icon_url` fill in what it leaves out.
//!
//! Mattermost keeps 16,383 characters of a post: a longer `text` is cut to fit and
//! ends in "… (truncated)".
//!
//! Mattermost answers `ok` (200) when it posted, and otherwise a JSON
//! `{"id": "web.incoming_webhook.…", "message": …, "status_code": N}`: 400 for a
//! payload it cannot take or a webhook that does not exist (deleted, or a wrong
//! URL), 404 for an unknown channel, 403 for a locked channel, 501 when incoming
//! webhooks are turned off on the server — all permanent, each reported with
//! Mattermost's own words and what to fix. Its rate limiter answers 429 with
//! `Retry-After` and `X-RateLimit-Reset` (seconds), honoured; 5xx is retried.
//!
//! The webhook URL is a credential: it is scrubbed from every error and never shown
//! by `Debug`, `check` or `render`.

use super::Http;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{classify_status, post_json, Destination, Message, Request};
use super::{DestinationSettings, Kind, SendError, Sent, TextEscape, MAX_RETRY_AFTER};
use crate::config::{ConfigError, Secret};
use crate::templates::Body;

pub const KIND: Kind = Kind {
    name: "mattermost",
    parse: super::parse_as::<MattermostConfig>,
    templates: &[(
        "default.mattermost.hbs",
        include_str!("../../templates/default.mattermost.hbs"),
    )],
    text_escape: TextEscape::Markdown,
    html_part: false,
};

/// The most characters Mattermost keeps of a post's text.
pub const MAX_TEXT: usize = 16_383;

/// What a shortened text ends with.
pub const TRUNCATED: &str = "… (truncated)";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MattermostConfig {
    /// `https://<server>/hooks/<key>`.
    pub webhook_url: Secret,
    /// Posts to this channel (its name, e.g. `backups` or `town-square`, or
    /// `@user` for a direct message) instead of the webhook's own; a template such
    /// as `backups-{{stack}}`. A route's `channel` overrides it.
    #[serde(default)]
    pub channel: Option<String>,
    /// Shown as the sender (needs "Enable integrations to override usernames").
    #[serde(default)]
    pub username: Option<String>,
    /// The sender's picture (needs "Enable integrations to override profile
    /// picture icons").
    #[serde(default)]
    pub icon_url: Option<String>,
}

impl DestinationSettings for MattermostConfig {
    fn type_name(&self) -> &'static str {
        KIND.name
    }

    fn check(&self, place: &str, errors: &mut Vec<ConfigError>) {
        super::check_url(
            format!("{place}.webhook_url"),
            self.webhook_url.expose(),
            errors,
        );
        if let Some(c) = &self.channel {
            if c.trim().is_empty() {
                errors.push(ConfigError::new(format!("{place}.channel"), "is empty"));
            }
        }
        if let Some(u) = &self.username {
            if u.trim().is_empty() || u.chars().count() > 64 {
                errors.push(ConfigError::new(
                    format!("{place}.username"),
                    "must be 1 to 64 characters",
                ));
            }
        }
        if let Some(u) = &self.icon_url {
            super::check_url(format!("{place}.icon_url"), u, errors);
        }
    }

    fn describe(&self) -> String {
        let mut s = String::from("incoming webhook");
        if let Some(c) = &self.channel {
            s.push_str(&format!(" to {c:?}"));
        }
        if let Some(u) = &self.username {
            s.push_str(&format!(", as {u:?}"));
        }
        s
    }

    fn build(&self, http: &Http, timeout: Duration) -> std::sync::Arc<dyn Destination> {
        std::sync::Arc::new(Mattermost {
            url: self.webhook_url.clone(),
            username: self.username.clone(),
            icon_url: self.icon_url.clone(),
            http: http.clone(),
            timeout,
        })
    }

    fn channel(&self) -> Option<(&'static str, &str)> {
        self.channel.as_deref().map(|c| ("channel", c))
    }

    /// A webhook may post to another channel than its own (unless it is locked to
    /// it, which Mattermost answers with 403).
    fn takes_channel(&self) -> bool {
        true
    }
}

pub struct Mattermost {
    url: Secret,
    username: Option<String>,
    icon_url: Option<String>,
    http: Http,
    timeout: Duration,
}

impl std::fmt::Debug for Mattermost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mattermost")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Mattermost {
    /// Shortens `text` and adds the configured channel, username and icon where
    /// the body has none.
    fn fill_in(&self, obj: &mut Map<String, Value>, channel: Option<&str>) {
        if let Some(Value::String(t)) = obj.get_mut("text") {
            *t = fit_text(t, MAX_TEXT);
        }
        if let Some(c) = channel.map(str::trim).filter(|c| !c.is_empty()) {
            obj.entry("channel").or_insert_with(|| json!(c));
        }
        if let Some(u) = &self.username {
            obj.entry("username").or_insert_with(|| json!(u));
        }
        if let Some(u) = &self.icon_url {
            obj.entry("icon_url").or_insert_with(|| json!(u));
        }
    }
}

/// Escapes a payload value for Mattermost Markdown: it shows as written and
/// cannot format, link or mention, with as few backslashes as that takes (a
/// phone's notification shows the text unrendered).
///
/// A backslash (which Mattermost removes when rendering) goes before `\`, `*`,
/// `` ` ``, `~`, `|`, `[` (no link can start) and `<` (no Slack-style `<!channel>`
/// or `<url|text>`, which Mattermost converts); before an `_` that could open or
/// close emphasis (not inside a word: `myapp_production` stays as it is); and
/// before what would start a heading, quote or list at the start of a line (`#`,
/// `>`, `-`, `+` followed by a space, `1.` followed by a space, a line of `=`).
/// An `@` that starts a word gets a zero-width space after it, so `@channel`,
/// `@here`, `@all` or `@someone` in a payload notify nobody, while
/// `team@example.com` is kept.
pub fn escape_markdown(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 8);
    // Where the current line's text starts, and whether nothing but spaces came yet.
    let mut line_start = true;
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| chars[j]);
        let next = chars.get(i + 1).copied();
        let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
        let space_or_end = next.is_none_or(char::is_whitespace);
        let escape = match c {
            '\\' | '*' | '`' | '~' | '|' | '[' | '<' => true,
            '_' => !(word(prev) && word(next)),
            '#' | '>' | '-' | '+' => line_start && (space_or_end || c == '#' || c == '>'),
            '=' => line_start,
            // "1. item": a number at a line's start, then ". ".
            '.' => {
                space_or_end
                    && prev.is_some_and(|p| p.is_ascii_digit())
                    && chars[..i]
                        .iter()
                        .rev()
                        .take_while(|c| **c != '\n')
                        .all(|c| c.is_ascii_digit() || *c == ' ')
            }
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
        if c == '@' && !word(prev) {
            out.push('\u{200B}');
        }
        if c == '\n' {
            line_start = true;
        } else if !c.is_whitespace() {
            line_start = false;
        }
    }
    out
}

/// `s` cut to at most `max` characters, ending in [`TRUNCATED`] when cut.
pub fn fit_text(s: &str, max: usize) -> String {
    if s.chars().nth(max).is_none() {
        return s.to_string();
    }
    let keep = max.saturating_sub(TRUNCATED.chars().count());
    let mut out: String = s.chars().take(keep).collect();
    out.push_str(TRUNCATED);
    out
}

/// `X-RateLimit-Reset`: seconds until the limit resets (Mattermost), or, from a
/// proxy that sends it so, the unix time it resets at.
fn rate_limit_reset(value: &HeaderValue) -> Option<Duration> {
    let n: u64 = value.to_str().ok()?.trim().parse().ok()?;
    let secs = if n > 1_000_000_000 {
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        n.saturating_sub(now)
    } else {
        n
    };
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// What to do about a Mattermost error id, in a few words.
fn hint(id: &str) -> Option<&'static str> {
    Some(match id {
        "web.incoming_webhook.invalid.app_error" => {
            "the webhook does not exist (deleted, or a wrong URL): create one and set webhook_url"
        }
        "web.incoming_webhook.disabled.app_error" => {
            "incoming webhooks are turned off on this server (System Console > Integrations > Integration Management)"
        }
        "web.incoming_webhook.channel.app_error" => "no such channel: check `channel`",
        "web.incoming_webhook.channel_locked.app_error" => {
            "the webhook is locked to its own channel: remove `channel` or unlock it"
        }
        "web.incoming_webhook.permissions.app_error" => {
            "the webhook's owner may not post in that channel"
        }
        "web.incoming_webhook.user.app_error" => "no such user for a direct message",
        "web.incoming_webhook.text.app_error" => "the message was empty: check the template",
        _ => return None,
    })
}

/// Judges Mattermost's answer (see the module docs).
fn classify(status: u16, headers: &HeaderMap, body: &str) -> Result<Sent, SendError> {
    let mut e = match classify_status(status, headers, body) {
        Ok(sent) => return Ok(sent),
        Err(e) => e,
    };
    if status == 429 && e.retry_after.is_none() {
        e.retry_after = headers.get("x-ratelimit-reset").and_then(rate_limit_reset);
    }
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let id = field("id");
    if id == Some("web.incoming_webhook.disabled.app_error") {
        // A 501: retrying cannot help until an administrator turns them on.
        e.transient = false;
    }
    let said = field("message");
    let suffix = match (said, id) {
        (Some(_), Some(id)) => match hint(id) {
            Some(h) => format!(" ({id}); {h}"),
            None => format!(" ({id})"),
        },
        _ => String::new(),
    };
    Err(super::in_words(e, "Mattermost", said, &suffix))
}

#[async_trait]
impl Destination for Mattermost {
    fn prepare(&self, msg: &Message) -> Result<Request, SendError> {
        let mut body = match &msg.body {
            Body::Text(t) => json!({ "text": t }),
            Body::Json(Value::Object(o)) => Value::Object(o.clone()),
            Body::Json(_) => {
                return Err(SendError::permanent(
                    "a Mattermost JSON template must render an object (a webhook body)",
                ))
            }
        };
        if let Some(obj) = body.as_object_mut() {
            self.fill_in(obj, msg.channel.as_deref());
        }
        super::strip_bidi_json(&mut body);
        Ok(Request::Json(body))
    }

    async fn send(&self, req: &Request, delivery_id: &str) -> Result<Sent, SendError> {
        let Request::Json(body) = req else {
            return Err(SendError::permanent("Mattermost takes JSON requests only"));
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
        // The webhook key is the URL's last segment (26 characters); an answer
        // could quote it, alone or in the path.
        let key = url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .filter(|k| k.len() >= 16)
            .unwrap_or_default();
        super::judge(answer, classify, &[url, key])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destinations::test_support::{client, text, ID, TIMEOUT};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const KEY: &str = "SECRETmxb3kq9iwtd7bxwq1r4h5y";

    fn mm(url: String) -> Mattermost {
        Mattermost {
            url: Secret::new(url),
            username: Some("hookrelay".into()),
            icon_url: None,
            http: client(),
            timeout: TIMEOUT,
        }
    }

    /// What Mattermost answers a failed webhook post.
    fn app_error(status: u16, id: &str, message: &str) -> ResponseTemplate {
        ResponseTemplate::new(status).set_body_json(json!({
            "id": id, "message": message, "detailed_error": "",
            "request_id": "hoan6o9ws7rp5xj7wu9rmysrte", "status_code": status}))
    }

    #[test]
    fn values_cannot_format_link_or_mention() {
        assert_eq!(escape_markdown("myapp_production"), "myapp_production");
        assert_eq!(
            escape_markdown("*bold* _it_ `code` ~~x~~ [a](b) <b> a|b \\ <!channel>"),
            "\\*bold\\* \\_it\\_ \\`code\\` \\~\\~x\\~\\~ \\[a](b) \\<b> a\\|b \\\\ \\<!channel>"
        );
        assert_eq!(
            escape_markdown("976.6 MiB, 3 > 2 - 1"),
            "976.6 MiB, 3 > 2 - 1"
        );
        assert_eq!(
            escape_markdown("@channel hi @here, mail team@example.com"),
            "@\u{200B}channel hi @\u{200B}here, mail team@example.com"
        );
        assert_eq!(
            escape_markdown("# x\n- y\n  + z\n1. one\n> q\n===\nv1.2 - 3\n-1"),
            "\\# x\n\\- y\n  \\+ z\n1\\. one\n\\> q\n\\===\nv1.2 - 3\n-1"
        );
        assert_eq!(
            escape_markdown("✅ 🚀 \"quoted\" & co"),
            "✅ 🚀 \"quoted\" & co"
        );
    }

    #[test]
    fn long_text_is_cut_with_a_clear_mark() {
        assert_eq!(fit_text("short", 10), "short");
        let cut = fit_text(&"é".repeat(20_000), MAX_TEXT);
        assert_eq!(cut.chars().count(), MAX_TEXT);
        assert!(
            cut.ends_with("é… (truncated)"),
            "{}",
            &cut[cut.len() - 30..]
        );
    }

    #[test]
    fn prepare_adds_channel_username_and_keeps_a_templates_own() {
        let d = Mattermost {
            icon_url: Some("https://example.com/i.png".into()),
            ..mm("https://mm.example/hooks/x".into())
        };
        let msg = Message {
            channel: Some("backups-prod".into()),
            ..text("**hi**\u{202E}")
        };
        assert_eq!(
            d.prepare(&msg).unwrap(),
            Request::Json(json!({"text": "**hi**", "channel": "backups-prod",
                "username": "hookrelay", "icon_url": "https://example.com/i.png"}))
        );
        let msg = Message {
            body: Body::Json(json!({"text": "x", "username": "other", "props": {"a": 1}})),
            ..text("")
        };
        assert_eq!(
            d.prepare(&msg).unwrap(),
            Request::Json(json!({"text": "x", "username": "other", "props": {"a": 1},
                "icon_url": "https://example.com/i.png"}))
        );
        let msg = Message {
            body: Body::Json(json!("x")),
            ..text("")
        };
        assert!(d.prepare(&msg).unwrap_err().is_permanent());
    }

    #[tokio::test]
    async fn posts_the_body_and_takes_ok() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(format!("/hooks/{KEY}")))
            .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
            .expect(1)
            .mount(&server)
            .await;
        let d = mm(format!("{}/hooks/{KEY}", server.uri()));
        let req = d.prepare(&text("hello")).unwrap();
        assert_eq!(d.send(&req, ID).await.unwrap().status, Some(200));
        let got = &server.received_requests().await.unwrap()[0];
        assert_eq!(got.headers.get("hookrelay-delivery-id").unwrap(), ID);
        let v: Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(v, json!({"text": "hello", "username": "hookrelay"}));
        assert!(!format!("{d:?}").contains(KEY));
    }

    #[tokio::test]
    async fn mattermost_errors_are_classified_with_its_words_and_without_the_key() {
        let server = MockServer::start().await;
        let cases = [
            (
                400,
                "web.incoming_webhook.invalid.app_error",
                "Invalid webhook.",
                "deleted",
            ),
            (
                400,
                "web.incoming_webhook.parse.app_error",
                "Unable to parse incoming data.",
                "Unable to parse",
            ),
            (
                404,
                "web.incoming_webhook.channel.app_error",
                "Couldn't find the channel.",
                "check `channel`",
            ),
            (
                403,
                "web.incoming_webhook.channel_locked.app_error",
                "This webhook is not permitted to post to the requested channel.",
                "locked",
            ),
            (
                501,
                "web.incoming_webhook.disabled.app_error",
                "Incoming webhooks have been disabled by the system admin.",
                "turned off",
            ),
        ];
        for (i, (status, id, message, _)) in cases.iter().enumerate() {
            Mock::given(path(format!("/{i}/hooks/{KEY}")))
                .respond_with(app_error(*status, id, message))
                .mount(&server)
                .await;
        }
        let req = Request::Json(json!({"text": "x"}));
        for (i, (status, id, message, says)) in cases.iter().enumerate() {
            let e = mm(format!("{}/{i}/hooks/{KEY}", server.uri()))
                .send(&req, ID)
                .await
                .unwrap_err();
            assert!(e.is_permanent(), "{status} {id}");
            assert_eq!(e.status, Some(*status));
            assert!(
                e.message
                    .starts_with(&format!("HTTP {status} from Mattermost: {message} ({id})")),
                "{}",
                e.message
            );
            assert!(e.message.contains(says), "{}", e.message);
        }

        // A proxy quoting the path it was asked for.
        Mock::given(path(format!("/echo/hooks/{KEY}")))
            .respond_with(
                ResponseTemplate::new(404)
                    .set_body_string(format!("404 page not found: /echo/hooks/{KEY}")),
            )
            .mount(&server)
            .await;
        let e = mm(format!("{}/echo/hooks/{KEY}", server.uri()))
            .send(&req, ID)
            .await
            .unwrap_err();
        assert!(e.is_permanent());
        assert!(!format!("{e:?}").contains(KEY), "{e:?}");

        Mock::given(path("/down"))
            .respond_with(ResponseTemplate::new(503).set_body_string("upstream down"))
            .mount(&server)
            .await;
        let e = mm(format!("{}/down", server.uri()))
            .send(&req, ID)
            .await
            .unwrap_err();
        assert!(e.is_transient());
        assert_eq!(e.message, "HTTP 503 from Mattermost: upstream down");
    }

    #[tokio::test]
    async fn a_429_waits_for_retry_after_or_the_rate_limit_reset() {
        let server = MockServer::start().await;
        Mock::given(path("/both"))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("Retry-After", "2")
                    .insert_header("X-RateLimit-Limit", "10")
                    .insert_header("X-RateLimit-Remaining", "0")
                    .insert_header("X-RateLimit-Reset", "9")
                    .set_body_string("limit exceeded\n"),
            )
            .mount(&server)
            .await;
        Mock::given(path("/reset"))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("X-RateLimit-Reset", "7")
                    .set_body_string("limit exceeded\n"),
            )
            .mount(&server)
            .await;
        let req = Request::Json(json!({"text": "x"}));
        let e = mm(format!("{}/both", server.uri()))
            .send(&req, ID)
            .await
            .unwrap_err();
        assert!(e.is_transient());
        assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
        assert_eq!(e.message, "HTTP 429 from Mattermost: limit exceeded");
        let e = mm(format!("{}/reset", server.uri()))
            .send(&req, ID)
            .await
            .unwrap_err();
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        let at = chrono::Utc::now().timestamp() + 30;
        let got = rate_limit_reset(&HeaderValue::from_str(&at.to_string()).unwrap())
            .unwrap()
            .as_secs();
        assert!((28..=30).contains(&got), "{got}");
    }
}
