//! `type: teams`: a Power Automate Workflows webhook (`format: adaptivecard`, the
//! default) or a legacy Office 365 connector (`format: messagecard`).
//!
//! Teams takes at most about 28 KB per message: the serialized payload is kept at
//! or under [`MAX_PAYLOAD_BYTES`] by shortening the longest string values (ending
//! them in "…"); structural strings (`type`, `version`, `$schema`, …) are never
//! touched.

use super::Http;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use serde::Deserialize;

use super::{post_and_classify, Destination, DestinationSettings, Kind, Message, Request};
use super::{SendError, Sent, TextEscape};
use crate::config::{ConfigError, Secret};
use crate::templates::Body;

pub const KIND: Kind = Kind {
    name: "teams",
    parse: super::parse_as::<TeamsConfig>,
    templates: &[(
        "default.teams.json.hbs",
        include_str!("../../templates/default.teams.json.hbs"),
    )],
    text_escape: TextEscape::Plain,
    html_part: false,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TeamsFormat {
    #[default]
    Adaptivecard,
    Messagecard,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsConfig {
    pub webhook_url: Secret,
    #[serde(default)]
    pub format: TeamsFormat,
}

impl DestinationSettings for TeamsConfig {
    fn type_name(&self) -> &'static str {
        KIND.name
    }

    fn check(&self, place: &str, errors: &mut Vec<ConfigError>) {
        let url = self.webhook_url.expose();
        super::check_url(format!("{place}.webhook_url"), url, errors);
    }

    fn warnings(&self, place: &str, warnings: &mut Vec<ConfigError>) {
        if let Some(why) = retired_endpoint(self.webhook_url.expose(), self.format) {
            warnings.push(ConfigError::new(format!("{place}.webhook_url"), why));
        }
    }

    fn describe(&self) -> String {
        format!("{:?} webhook", self.format).to_lowercase()
    }

    fn build(&self, http: &Http, timeout: Duration) -> std::sync::Arc<dyn Destination> {
        std::sync::Arc::new(Teams::new(self, http.clone(), timeout))
    }
}

/// What to do about a `webhook_url` on an endpoint Microsoft retired or is
/// retiring, or `None`. Never quotes the URL (it carries its signature). A
/// warning, not an error: an Azure Logic Apps trigger shares the host of the
/// retired Power Automate URLs and still works, and a connector still posting
/// today should not stop hookrelay from starting.
fn retired_endpoint(url: &str, format: TeamsFormat) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let host = u.host_str()?.to_ascii_lowercase();
    let path = u.path();
    let on = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
    // Both connector forms get the same advice: a workflow, and the Adaptive
    // Card hookrelay sends by default.
    let workflow = if format == TeamsFormat::Messagecard {
        "In Teams, create a workflow from the template \"Send webhook alerts to a channel\" \
         (trigger \"When a Teams webhook request is received\"), put its URL here and drop \
         `format: messagecard`: a workflow takes the Adaptive Card hookrelay sends by default"
    } else {
        "In Teams, create a workflow from the template \"Send webhook alerts to a channel\" \
         (trigger \"When a Teams webhook request is received\") and put its URL here"
    };
    if on("webhook.office.com") && path.starts_with("/webhookb2/") {
        return Some(format!(
            "is an Office 365 connector (Incoming Webhook) URL; Microsoft is retiring these \
             connectors in Teams (announced for the end of 2025), and from then on nothing \
             posted here reaches the channel. {workflow}."
        ));
    }
    if (on("outlook.office.com") || on("outlook.office365.com")) && path.starts_with("/webhook/") {
        return Some(format!(
            "is an Office 365 connector URL of the old outlook.office.com form, which Microsoft \
             replaced with …webhook.office.com URLs in 2021 and stopped taking once connector \
             URLs had to be updated (January 2025); the connectors themselves are being \
             retired too. {workflow}."
        ));
    }
    if on("logic.azure.com") {
        return Some(
            "is a …logic.azure.com URL. If it is a Power Automate workflow (the Teams \
             Workflows app), Microsoft moved these to …environment.api.powerplatform.com URLs \
             and stopped taking the old ones after November 30, 2025: open the workflow in \
             Power Automate and copy the new URL from its trigger. An Azure Logic Apps \
             trigger on logic.azure.com is not affected; for one, ignore this warning."
                .to_string(),
        );
    }
    None
}

/// The largest serialized payload sent, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 28_000;

/// Keys whose string values are structure, not content.
const PROTECTED_KEYS: &[&str] = &[
    "type",
    "@type",
    "@context",
    "$schema",
    "version",
    "contentType",
    "contentUrl",
    "url",
    "id",
    "style",
    "size",
    "weight",
    "color",
];

pub struct Teams {
    url: Secret,
    format: TeamsFormat,
    http: Http,
    timeout: Duration,
}

impl std::fmt::Debug for Teams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Teams")
            .field("url", &self.url)
            .field("format", &self.format)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Teams {
    pub fn new(cfg: &TeamsConfig, http: Http, timeout: Duration) -> Teams {
        Teams {
            url: cfg.webhook_url.clone(),
            format: cfg.format,
            http,
            timeout,
        }
    }
}

/// The Workflows envelope around one Adaptive Card (version 1.4, the highest
/// Workflows accept; `contentUrl` must be present).
pub fn adaptive_card(text: &str) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [{"type": "TextBlock", "text": text, "wrap": true}],
            },
        }],
    })
}

/// A legacy connector MessageCard; `summary` is the first non-empty line.
pub fn message_card(text: &str) -> Value {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    let summary = super::shorten(first.unwrap_or("hookrelay alert"), 200);
    json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": summary,
        "text": text,
    })
}

/// `v` as a MessageCard: a MessageCard as it is; an Adaptive Card (alone or in
/// the Workflows envelope) with its first TextBlock as the title (its `color` as
/// the theme colour), its FactSets as facts and its other TextBlocks as text; any
/// other JSON by its `text`, else as JSON text.
pub fn to_message_card(v: &Value) -> Value {
    if v.get("@type").and_then(Value::as_str) == Some("MessageCard") {
        return v.clone();
    }
    let card = if v.get("type").and_then(Value::as_str) == Some("AdaptiveCard") {
        Some(v)
    } else {
        v.pointer("/attachments/0/content")
            .filter(|c| c.get("type").and_then(Value::as_str) == Some("AdaptiveCard"))
    };
    let Some(card) = card else {
        return match v.get("text").and_then(Value::as_str) {
            Some(t) => message_card(t),
            None => message_card(&v.to_string()),
        };
    };
    let mut texts: Vec<(String, Option<String>)> = Vec::new();
    let mut facts = Vec::new();
    collect_card(
        card.get("body").unwrap_or(&Value::Null),
        &mut texts,
        &mut facts,
    );
    let mut texts = texts.into_iter();
    let (title, color) = texts
        .next()
        .unwrap_or_else(|| ("hookrelay alert".into(), None));
    let rest: Vec<String> = texts.map(|(t, _)| t).collect();
    let mut section = serde_json::Map::new();
    if !facts.is_empty() {
        section.insert("facts".into(), Value::Array(facts));
    }
    if !rest.is_empty() {
        section.insert("text".into(), Value::String(rest.join("\n\n")));
    }
    let mut out = json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": super::shorten(&title, 200),
        "title": title,
    });
    let theme = match color.as_deref() {
        Some("Attention") => Some("B42318"),
        Some("Good") => Some("067647"),
        Some("Warning") => Some("B54708"),
        _ => None,
    };
    if let Some(t) = theme {
        out["themeColor"] = json!(t);
    }
    if !section.is_empty() {
        out["sections"] = json!([section]);
    }
    out
}

/// Gathers TextBlocks (text, color) and FactSet facts of an Adaptive Card body,
/// in order, looking inside containers and columns.
fn collect_card(v: &Value, texts: &mut Vec<(String, Option<String>)>, facts: &mut Vec<Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect_card(i, texts, facts)),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("TextBlock") => {
                if let Some(t) = o.get("text").and_then(Value::as_str) {
                    let color = o.get("color").and_then(Value::as_str).map(str::to_string);
                    texts.push((t.to_string(), color));
                }
            }
            Some("FactSet") => {
                for f in o
                    .get("facts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    facts.push(json!({
                        "name": f.get("title").cloned().unwrap_or(Value::Null),
                        "value": f.get("value").cloned().unwrap_or(Value::Null),
                    }));
                }
            }
            _ => {
                for key in ["items", "columns", "body"] {
                    if let Some(x) = o.get(key) {
                        collect_card(x, texts, facts);
                    }
                }
            }
        },
        _ => {}
    }
}

/// The length of `s` once serialized as a JSON string, without the quotes.
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

fn serialized_len(v: &Value) -> usize {
    // Counted, not written: the body is serialized again when it is sent.
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, v) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// Visits every content string (not under a protected key) in document order.
fn for_each_string(v: &mut Value, key: Option<&str>, f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::String(s) if !key.is_some_and(|k| PROTECTED_KEYS.contains(&k)) => f(s),
        Value::Array(a) => a.iter_mut().for_each(|x| for_each_string(x, None, f)),
        Value::Object(o) => o
            .iter_mut()
            .for_each(|(k, x)| for_each_string(x, Some(k), f)),
        _ => {}
    }
}

/// Shortens the longest strings of `v` until it serializes to at most `max_bytes`.
/// Returns whether it fits.
pub fn fit_payload(v: &mut Value, max_bytes: usize) -> bool {
    loop {
        let size = serialized_len(v);
        if size <= max_bytes {
            return true;
        }
        let excess = size - max_bytes;
        // The longest content string, by serialized length.
        let (mut best, mut best_len, mut i) = (None, 0, 0);
        for_each_string(v, None, &mut |s| {
            let len: usize = s.chars().map(escaped_len).sum();
            if len > best_len {
                best = Some(i);
                best_len = len;
            }
            i += 1;
        });
        // "…" is 3 bytes: nothing shorter than that can be shortened.
        let Some(best) = best.filter(|_| best_len > 3) else {
            return false;
        };
        let keep = best_len.saturating_sub(excess + 3);
        let mut i = 0;
        for_each_string(v, None, &mut |s| {
            if i == best {
                let mut used = 0;
                let cut = s
                    .char_indices()
                    .find(|&(_, c)| {
                        used += escaped_len(c);
                        used > keep
                    })
                    .map_or(s.len(), |(at, _)| at);
                s.truncate(cut);
                s.push('…');
            }
            i += 1;
        });
    }
}

#[async_trait]
impl Destination for Teams {
    fn prepare(&self, msg: &Message) -> Result<Request, SendError> {
        self.prepare_owned(msg.clone())
    }

    fn prepare_owned(&self, msg: Message) -> Result<Request, SendError> {
        let mut body = match (msg.body, self.format) {
            (Body::Json(v), TeamsFormat::Adaptivecard) => v,
            // A legacy connector shows only MessageCards: any other body (the
            // default template's Adaptive Card included) is turned into one.
            (Body::Json(v), TeamsFormat::Messagecard) => to_message_card(&v),
            (Body::Text(t), TeamsFormat::Adaptivecard) => adaptive_card(&t),
            (Body::Text(t), TeamsFormat::Messagecard) => message_card(&t),
        };
        super::strip_bidi_json(&mut body);
        if !fit_payload(&mut body, MAX_PAYLOAD_BYTES) {
            return Err(SendError::permanent(format!(
                "the Teams payload is {} bytes even with every text shortened; Teams takes at most {MAX_PAYLOAD_BYTES}",
                serialized_len(&body)
            )));
        }
        Ok(Request::Json(body))
    }

    async fn send(&self, req: &Request, delivery_id: &str) -> Result<Sent, SendError> {
        let Request::Json(body) = req else {
            return Err(SendError::permanent("Teams takes JSON requests only"));
        };
        post_and_classify(
            &self.http,
            self.url.expose(),
            HeaderMap::new(),
            body,
            self.timeout,
            delivery_id,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{client, refused_addr, text, TIMEOUT};
    use super::*;
    use crate::destinations::test_support::ID;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn teams(url: String, format: TeamsFormat, timeout: Duration) -> Teams {
        let cfg = TeamsConfig {
            webhook_url: Secret::new(url),
            format,
        };
        Teams::new(&cfg, client(), timeout)
    }

    async fn answering(status: u16) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status))
            .mount(&server)
            .await;
        server
    }

    #[tokio::test]
    async fn workflows_adaptive_card_is_delivered() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/workflows/abc"))
            .and(header("content-type", "application/json; charset=utf-8"))
            .respond_with(ResponseTemplate::new(202))
            .expect(1)
            .mount(&server)
            .await;
        let t = "Backup \"db\" <b>failed</b> & more\nline 2 ✅";
        let tm = teams(
            format!("{}/workflows/abc", server.uri()),
            TeamsFormat::Adaptivecard,
            TIMEOUT,
        );
        let req = tm.prepare(&text(t)).unwrap();
        assert_eq!(tm.send(&req, ID).await.unwrap().status, Some(202));
        let got = &server.received_requests().await.unwrap()[0];
        let body: Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(
            body,
            json!({"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","contentUrl":null,"content":{"$schema":"http://adaptivecards.io/schemas/adaptive-card.json","type":"AdaptiveCard","version":"1.4","body":[{"type":"TextBlock","text":t,"wrap":true}]}}]})
        );
    }

    #[tokio::test]
    async fn message_card_and_json_bodies() {
        let server = answering(200).await;
        let tm = teams(server.uri(), TeamsFormat::Messagecard, TIMEOUT);
        let req = tm.prepare(&text("\nFirst line\nsecond")).unwrap();
        tm.send(&req, ID).await.unwrap();
        let got = &server.received_requests().await.unwrap()[0];
        assert_eq!(
            serde_json::from_slice::<Value>(&got.body).unwrap(),
            json!({"@type":"MessageCard","@context":"https://schema.org/extensions","summary":"First line","text":"\nFirst line\nsecond"})
        );

        // A template's own MessageCard is sent as it is.
        let json_msg = |v: &Value| Message {
            body: Body::Json(v.clone()),
            ..text("")
        };
        let own = json!({"@type": "MessageCard", "text": "mine", "sections": []});
        assert_eq!(tm.prepare(&json_msg(&own)).unwrap(), Request::Json(own));

        // An Adaptive Card (what the default template renders) becomes a MessageCard.
        let card = json!({"type": "message", "attachments": [{"contentType": "x", "content": {
            "type": "AdaptiveCard", "version": "1.4", "body": [
                {"type": "TextBlock", "text": "❌ Backup failed", "color": "Attention"},
                {"type": "Container", "items": [{"type": "FactSet", "facts": [
                    {"title": "Server", "value": "db-1"}]}]},
                {"type": "TextBlock", "text": "disk full"},
                {"type": "TextBlock", "text": "via hookrelay"}]}}]});
        assert_eq!(
            tm.prepare(&json_msg(&card)).unwrap(),
            Request::Json(json!({
                "@type": "MessageCard",
                "@context": "https://schema.org/extensions",
                "summary": "❌ Backup failed",
                "title": "❌ Backup failed",
                "themeColor": "B42318",
                "sections": [{"facts": [{"name": "Server", "value": "db-1"}],
                              "text": "disk full\n\nvia hookrelay"}],
            }))
        );

        // Any other JSON: its `text`, else the JSON itself, never lost.
        let Request::Json(other) = tm.prepare(&json_msg(&json!({"a": 1}))).unwrap() else {
            panic!()
        };
        assert_eq!(other["@type"], "MessageCard");
        assert_eq!(other["text"], r#"{"a":1}"#);

        // The adaptive card format sends JSON bodies as they are.
        let ac = teams(server.uri(), TeamsFormat::Adaptivecard, TIMEOUT);
        assert_eq!(ac.prepare(&json_msg(&card)).unwrap(), Request::Json(card));
    }

    #[tokio::test]
    async fn errors_are_classified() {
        for (status, transient) in [(500, true), (503, true), (400, false), (404, false)] {
            let server = answering(status).await;
            let e = teams(server.uri(), TeamsFormat::Adaptivecard, TIMEOUT)
                .send(&Request::Json(json!({})), ID)
                .await
                .unwrap_err();
            assert_eq!(e.is_transient(), transient, "{status}");
        }
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "99999"))
            .mount(&server)
            .await;
        let e = teams(server.uri(), TeamsFormat::Adaptivecard, TIMEOUT)
            .send(&Request::Json(json!({})), ID)
            .await
            .unwrap_err();
        assert!(e.is_transient());
        assert_eq!(e.retry_after, Some(Duration::from_secs(3600)));

        let tm = teams(
            format!("http://{}/workflows/SECRET", refused_addr()),
            TeamsFormat::Adaptivecard,
            TIMEOUT,
        );
        let e = tm.send(&Request::Json(json!({})), ID).await.unwrap_err();
        assert!(e.is_transient());
        assert!(!e.message.contains("SECRET"));
        assert!(!format!("{tm:?}").contains("SECRET"));

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(202).set_delay(Duration::from_secs(3)))
            .mount(&server)
            .await;
        let e = teams(
            server.uri(),
            TeamsFormat::Adaptivecard,
            Duration::from_millis(200),
        )
        .send(&Request::Json(json!({})), ID)
        .await
        .unwrap_err();
        assert!(e.is_transient());
    }

    #[test]
    fn oversized_payloads_are_shortened_to_28_kb() {
        let tm = teams(
            "http://127.0.0.1:9".into(),
            TeamsFormat::Adaptivecard,
            TIMEOUT,
        );
        // Escapes and multi-byte characters count as what they serialize to.
        let t = "\"quoted\"\n<b>&</b> 日本 🎉 ".repeat(3_000);
        let Request::Json(v) = tm.prepare(&text(&t)).unwrap() else {
            panic!()
        };
        let bytes = serde_json::to_vec(&v).unwrap().len();
        assert!(bytes <= MAX_PAYLOAD_BYTES, "{bytes}");
        assert!(
            bytes > MAX_PAYLOAD_BYTES - 100,
            "shortened too much: {bytes}"
        );
        let out = v["attachments"][0]["content"]["body"][0]["text"]
            .as_str()
            .unwrap();
        assert!(out.ends_with('…'));
        assert!(t.starts_with(out.trim_end_matches('…')));
        assert_eq!(v["attachments"][0]["content"]["version"], "1.4");

        // Several long strings: the longest go first, structure stays.
        let body: Vec<Value> = (0..4)
            .map(|i| json!({"type": "TextBlock", "text": "x".repeat(10_000 + i)}))
            .collect();
        let mut v = json!({"type": "message", "body": body});
        assert!(fit_payload(&mut v, MAX_PAYLOAD_BYTES));
        assert!(serde_json::to_vec(&v).unwrap().len() <= MAX_PAYLOAD_BYTES);
        assert_eq!(v["body"][3]["type"], "TextBlock");

        // Small payloads are untouched.
        let mut small = adaptive_card("hi");
        assert!(fit_payload(&mut small, MAX_PAYLOAD_BYTES));
        assert_eq!(small, adaptive_card("hi"));
    }

    #[test]
    fn impossible_fit_is_an_error_not_a_panic() {
        let many: Vec<Value> = (0..20_000).map(|_| json!({"type": "x"})).collect();
        let tm = teams(
            "http://127.0.0.1:9".into(),
            TeamsFormat::Adaptivecard,
            TIMEOUT,
        );
        let e = tm
            .prepare(&Message {
                body: Body::Json(json!({ "body": many })),
                ..text("")
            })
            .unwrap_err();
        assert!(e.is_permanent());
        let mut v = json!({"a": "ab", "b": [null, 1, true]});
        assert!(!fit_payload(&mut v, 3));
    }
}
