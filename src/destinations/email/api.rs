//! `type: email` with `api: {provider, key, domain, url}`: the same email (from,
//! to, subject, text, optional HTML) sent through a provider's HTTP API instead
//! of SMTP, in each provider's own request shape:
//!
//! * `sendgrid`: `POST /v3/mail/send`, `Authorization: Bearer <key>`, JSON with
//!   `personalizations`, `from`, `subject`, `content`; 202 is success, errors
//!   answer `{"errors": [{"message", "field"}]}`.
//! * `mailgun`: `POST /v3/<domain>/messages`, basic auth `api:<key>`, a form
//!   (`from`, `to` once per recipient, `subject`, `text`, `html`); 200 is success
//!   (`{"id", "message": "Queued. Thank you."}`), errors answer `{"message"}`.
//!   `url: https://api.eu.mailgun.net` for an EU domain.
//! * `postmark`: `POST /email`, `X-Postmark-Server-Token: <key>`, JSON with
//!   `From`, `To`, `Subject`, `TextBody`, `HtmlBody`; 200 with `ErrorCode: 0` is
//!   success; 422 (an invalid request: bad address, inactive recipient) is
//!   permanent, with Postmark's `ErrorCode` and `Message` in the error.
//!
//! Retry rules are the shared ones ([`classify_status`]): 429 and 5xx are retried,
//! other 4xx are permanent. The key never appears in an error or `Debug`.

use crate::destinations::Http;
use std::time::Duration;

use lettre::message::Mailbox;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::{json, Value};

use super::super::{classify_status, excerpt, send_request, SendError, Sent};
use crate::config::{ConfigError, Secret};

/// The email APIs hookrelay speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Sendgrid,
    Mailgun,
    Postmark,
}

impl Provider {
    /// How people write it (in `check` and errors).
    pub fn name(self) -> &'static str {
        match self {
            Provider::Sendgrid => "SendGrid",
            Provider::Mailgun => "Mailgun",
            Provider::Postmark => "Postmark",
        }
    }

    /// The public API base address.
    pub fn default_url(self) -> &'static str {
        match self {
            Provider::Sendgrid => "https://api.sendgrid.com",
            Provider::Mailgun => "https://api.mailgun.net",
            Provider::Postmark => "https://api.postmarkapp.com",
        }
    }
}

/// `api:` of an email destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub provider: Provider,
    /// The API key (SendGrid, Mailgun) or server token (Postmark).
    pub key: Secret,
    /// Mailgun only: the sending domain (`mg.example.com`).
    #[serde(default)]
    pub domain: Option<String>,
    /// The API's base address (an EU region, a proxy, a stand-in in tests).
    #[serde(default)]
    pub url: Option<String>,
}

impl ApiConfig {
    /// Checks the keys below `place` (`destinations.x.api`); never quotes the key.
    pub fn check(&self, place: &str, errors: &mut Vec<ConfigError>) {
        let key = self.key.expose();
        if key.trim().is_empty() {
            errors.push(ConfigError::new(format!("{place}.key"), "is empty"));
        } else if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            errors.push(ConfigError::new(
                format!("{place}.key"),
                "holds spaces or control characters",
            ));
        }
        match (self.provider, self.domain.as_deref()) {
            (Provider::Mailgun, None) => errors.push(ConfigError::new(
                format!("{place}.domain"),
                "is required with mailgun (the sending domain, e.g. mg.example.com)",
            )),
            (Provider::Mailgun, Some(d)) => {
                let ok = !d.is_empty()
                    && d.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
                if !ok {
                    errors.push(ConfigError::new(
                        format!("{place}.domain"),
                        format!("{:?} is not a domain name", excerpt(d)),
                    ));
                }
            }
            (p, Some(_)) => errors.push(ConfigError::new(
                format!("{place}.domain"),
                format!("only mailgun takes a domain, not {}", p.name()),
            )),
            (_, None) => {}
        }
        if let Some(url) = &self.url {
            super::super::check_url(format!("{place}.url"), url, errors);
        }
    }
}

/// Sends emails through one provider's API.
pub struct ApiSender {
    provider: Provider,
    key: Secret,
    domain: String,
    base: String,
    http: Http,
    timeout: Duration,
}

impl std::fmt::Debug for ApiSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSender")
            .field("provider", &self.provider)
            .field("key", &self.key)
            .field("domain", &self.domain)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// An address as the APIs take it: `(email, display name)`.
fn split_address(a: &str, what: &str) -> Result<(String, Option<String>), SendError> {
    let mb: Mailbox = a.parse().map_err(|_| {
        SendError::permanent(format!("{what} {:?} is not an email address", excerpt(a)))
    })?;
    Ok((mb.email.to_string(), mb.name.filter(|n| !n.is_empty())))
}

impl ApiSender {
    pub fn new(cfg: &ApiConfig, http: Http, timeout: Duration) -> ApiSender {
        ApiSender {
            provider: cfg.provider,
            key: cfg.key.clone(),
            domain: cfg.domain.clone().unwrap_or_default(),
            base: cfg
                .url
                .as_deref()
                .unwrap_or(cfg.provider.default_url())
                .trim_end_matches('/')
                .to_string(),
            http,
            timeout,
        }
    }

    fn secret_header(&self, value: &str) -> Result<HeaderValue, SendError> {
        let mut v = HeaderValue::from_str(value).map_err(|_| {
            SendError::permanent(format!(
                "the {} key is not valid in a header",
                self.provider.name()
            ))
        })?;
        v.set_sensitive(true);
        Ok(v)
    }

    /// Sends one email; the key is scrubbed from any error. `delivery_id` goes
    /// out as `Hookrelay-Delivery-Id`, as with every HTTP destination.
    pub async fn send(
        &self,
        from: &str,
        to: &[String],
        subject: &str,
        text: &str,
        html: Option<&str>,
        delivery_id: &str,
    ) -> Result<Sent, SendError> {
        if to.is_empty() {
            return Err(SendError::permanent("the email has no recipients"));
        }
        // Checked here for every provider, so a bad address is hookrelay's clear
        // error rather than the provider's 400.
        let sender = split_address(from, "sender")?;
        let recipients = to
            .iter()
            .map(|t| split_address(t, "recipient"))
            .collect::<Result<Vec<_>, _>>()?;
        let email = Email {
            from,
            to,
            subject,
            text,
            html,
            sender,
            recipients,
        };
        let req = match self.provider {
            Provider::Sendgrid => self.sendgrid(&email)?,
            Provider::Mailgun => self.mailgun(&email)?,
            Provider::Postmark => self.postmark(&email)?,
        };
        let answer = send_request(req, self.timeout, delivery_id).await;
        let provider = self.provider;
        super::super::judge(
            answer,
            |status, headers, body| provider.classify(status, headers, body),
            &[self.key.expose()],
        )
    }

    /// SendGrid: JSON, bearer key.
    fn sendgrid(&self, email: &Email<'_>) -> Result<reqwest::RequestBuilder, SendError> {
        let address = |(email, name): &(String, Option<String>)| match name {
            Some(n) => json!({"email": email, "name": n}),
            None => json!({"email": email}),
        };
        // text/plain must come first, then text/html.
        let mut content = vec![json!({"type": "text/plain", "value": email.text})];
        if let Some(h) = email.html {
            content.push(json!({"type": "text/html", "value": h}));
        }
        let body = json!({
            "personalizations": [{"to": email.recipients.iter().map(address).collect::<Vec<_>>()}],
            "from": address(&email.sender),
            "subject": email.subject,
            "content": content,
        });
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            self.secret_header(&format!("Bearer {}", self.key.expose()))?,
        );
        let url = format!("{}/v3/mail/send", self.base);
        super::super::json_request(&self.http, &url, headers, &body)
    }

    /// Mailgun: a form, basic auth `api:<key>`; it reads RFC 5322 addresses itself.
    fn mailgun(&self, email: &Email<'_>) -> Result<reqwest::RequestBuilder, SendError> {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("from", email.from);
        for t in email.to {
            form.append_pair("to", t);
        }
        form.append_pair("subject", email.subject);
        form.append_pair("text", email.text);
        if let Some(h) = email.html {
            form.append_pair("html", h);
        }
        let auth = super::super::basic_auth("api", self.key.expose());
        let url = format!("{}/v3/{}/messages", self.base, self.domain);
        Ok(self
            .http
            .post(&url)
            .header(AUTHORIZATION, self.secret_header(&auth)?)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(form.finish()))
    }

    /// Postmark: JSON, `X-Postmark-Server-Token`.
    fn postmark(&self, email: &Email<'_>) -> Result<reqwest::RequestBuilder, SendError> {
        let mut body = json!({
            "From": email.from,
            "To": email.to.join(", "),
            "Subject": email.subject,
            "TextBody": email.text,
        });
        if let Some(h) = email.html {
            body["HtmlBody"] = Value::String(h.to_string());
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            "X-Postmark-Server-Token",
            self.secret_header(self.key.expose())?,
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let url = format!("{}/email", self.base);
        super::super::json_request(&self.http, &url, headers, &body)
    }
}

impl Provider {
    /// Judges the provider's answer: [`classify_status`], in the provider's own
    /// words (see the module docs).
    fn classify(self, status: u16, headers: &HeaderMap, body: &str) -> Result<Sent, SendError> {
        let parsed = parse(body);
        let field = |k: &str| parsed.as_ref().and_then(|v| v.get(k));
        let said = match self {
            // {"errors": [{"message": "…", "field": "from"}]}
            Provider::Sendgrid => field("errors").and_then(Value::as_array).map(|errors| {
                errors
                    .iter()
                    .filter_map(|x| {
                        let m = x.get("message").and_then(Value::as_str)?;
                        Some(match x.get("field").and_then(Value::as_str) {
                            Some(f) => format!("{m} ({f})"),
                            None => m.to_string(),
                        })
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            }),
            // {"message": "'from' parameter is not a valid address. …"}; 401 is
            // the plain text "Forbidden".
            Provider::Mailgun => field("message").and_then(Value::as_str).map(str::to_string),
            // {"ErrorCode": 406, "Message": "…"}
            Provider::Postmark => {
                let message = field("Message").and_then(Value::as_str).unwrap_or_default();
                Some(match field("ErrorCode").and_then(Value::as_i64) {
                    Some(c) => format!("ErrorCode {c}: {message}"),
                    None => message.to_string(),
                })
            }
        };
        let words = |e| super::super::in_words(e, self.name(), said.as_deref(), "");
        match classify_status(status, headers, body) {
            // A Postmark 200 that still carries an error code sent nothing.
            Ok(_)
                if self == Provider::Postmark
                    && field("ErrorCode")
                        .and_then(Value::as_i64)
                        .is_some_and(|c| c != 0) =>
            {
                Err(words(SendError {
                    status: Some(status),
                    ..SendError::permanent("")
                }))
            }
            Ok(sent) => Ok(sent),
            Err(e) => Err(words(e)),
        }
    }
}

/// One email, as every provider's request is built from it.
struct Email<'a> {
    from: &'a str,
    to: &'a [String],
    subject: &'a str,
    text: &'a str,
    html: Option<&'a str>,
    /// `from` and `to`, checked and taken apart: (address, display name).
    sender: (String, Option<String>),
    recipients: Vec<(String, Option<String>)>,
}

fn parse(body: &str) -> Option<Value> {
    serde_json::from_str(body).ok()
}

#[cfg(test)]
mod tests {
    use super::super::super::test_support::{client, refused_addr, TIMEOUT};
    use super::*;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const KEY: &str = "SG.k3y-SECRET.value";

    fn sender(provider: Provider, url: String) -> ApiSender {
        let cfg = ApiConfig {
            provider,
            key: Secret::new(KEY),
            domain: (provider == Provider::Mailgun).then(|| "mg.example.test".to_string()),
            url: Some(url),
        };
        ApiSender::new(&cfg, client(), TIMEOUT)
    }

    const TO: [&str; 2] = ["ops@example.test", "Dev Team <dev@example.test>"];

    async fn send(s: &ApiSender, html: Option<&str>) -> Result<Sent, SendError> {
        let to: Vec<String> = TO.iter().map(|t| t.to_string()).collect();
        s.send(
            "Hookrelay <relay@example.test>",
            &to,
            "[FAILURE] Acme",
            "text ✅",
            html,
            "d-1",
        )
        .await
    }

    #[tokio::test]
    async fn sendgrid_gets_its_v3_shape_with_a_bearer_key() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v3/mail/send"))
            .and(header("authorization", format!("Bearer {KEY}").as_str()))
            .respond_with(ResponseTemplate::new(202))
            .expect(1)
            .mount(&server)
            .await;
        let s = sender(Provider::Sendgrid, format!("{}/", server.uri()));
        assert_eq!(send(&s, Some("<p>x</p>")).await.unwrap().status, Some(202));
        let got: Value =
            serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
        assert_eq!(
            got,
            json!({
                "personalizations": [{"to": [
                    {"email": "ops@example.test"},
                    {"email": "dev@example.test", "name": "Dev Team"}]}],
                "from": {"email": "relay@example.test", "name": "Hookrelay"},
                "subject": "[FAILURE] Acme",
                "content": [{"type": "text/plain", "value": "text ✅"},
                            {"type": "text/html", "value": "<p>x</p>"}]
            })
        );
        assert!(!format!("{s:?}").contains("SECRET"));
    }

    #[tokio::test]
    async fn sendgrid_errors_quote_its_messages() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(403).set_body_json(json!({"errors": [{
                "message": "The from address does not match a verified Sender Identity.",
                "field": "from", "help": null}]})))
            .mount(&server)
            .await;
        let e = send(&sender(Provider::Sendgrid, server.uri()), None)
            .await
            .unwrap_err();
        assert!(e.is_permanent());
        assert_eq!(
            e.message,
            "HTTP 403 from SendGrid: The from address does not match a verified Sender Identity. (from)"
        );
    }

    #[tokio::test]
    async fn mailgun_gets_a_form_with_basic_auth_on_its_domain() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v3/mg.example.test/messages"))
            .and(header(
                "authorization",
                super::super::super::basic_auth("api", KEY).as_str(),
            ))
            .and(header("content-type", "application/x-www-form-urlencoded"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "<20261130.1@mg.example.test>", "message": "Queued. Thank you."})))
            .expect(1)
            .mount(&server)
            .await;
        let s = sender(Provider::Mailgun, server.uri());
        assert_eq!(
            send(&s, Some("<p>&amp;</p>")).await.unwrap().status,
            Some(200)
        );
        let body = server.received_requests().await.unwrap()[0].body.clone();
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let want: Vec<(String, String)> = [
            ("from", "Hookrelay <relay@example.test>"),
            ("to", "ops@example.test"),
            ("to", "Dev Team <dev@example.test>"),
            ("subject", "[FAILURE] Acme"),
            ("text", "text ✅"),
            ("html", "<p>&amp;</p>"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(pairs, want);
    }

    #[tokio::test]
    async fn mailgun_errors_are_classified() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(401).set_body_string("Forbidden"))
            .mount(&server)
            .await;
        let e = send(&sender(Provider::Mailgun, server.uri()), None)
            .await
            .unwrap_err();
        assert!(e.is_permanent());
        assert_eq!(e.message, "HTTP 401 from Mailgun: Forbidden");

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(404).set_body_json(json!({
                "message": "Domain not found: mg.example.test"})))
            .mount(&server)
            .await;
        let e = send(&sender(Provider::Mailgun, server.uri()), None)
            .await
            .unwrap_err();
        assert!(e.is_permanent());
        assert_eq!(
            e.message,
            "HTTP 404 from Mailgun: Domain not found: mg.example.test"
        );

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "30"))
            .mount(&server)
            .await;
        let e = send(&sender(Provider::Mailgun, server.uri()), None)
            .await
            .unwrap_err();
        assert!(e.is_transient());
        assert_eq!(e.retry_after, Some(Duration::from_secs(30)));
    }

    #[tokio::test]
    async fn postmark_gets_its_shape_and_422_is_permanent_with_its_code() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/email"))
            .and(header("x-postmark-server-token", KEY))
            .and(header("accept", "application/json"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "To": "ops@example.test", "SubmittedAt": "2026-11-30T06:00:00Z",
                "MessageID": "b7bc2f4a-e38e-4336-af7d-e6c392c2f817",
                "ErrorCode": 0, "Message": "OK"})))
            .expect(1)
            .mount(&server)
            .await;
        let s = sender(Provider::Postmark, server.uri());
        assert_eq!(send(&s, Some("<p>x</p>")).await.unwrap().status, Some(200));
        let got: Value =
            serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
        assert_eq!(
            got,
            json!({"From": "Hookrelay <relay@example.test>",
                   "To": "ops@example.test, Dev Team <dev@example.test>",
                   "Subject": "[FAILURE] Acme", "TextBody": "text ✅", "HtmlBody": "<p>x</p>"})
        );

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(422).set_body_json(json!({
                "ErrorCode": 406,
                "Message": "You tried to send to recipient(s) that have been marked as inactive."})))
            .mount(&server)
            .await;
        let e = send(&sender(Provider::Postmark, server.uri()), None)
            .await
            .unwrap_err();
        assert!(e.is_permanent());
        assert_eq!(e.status, Some(422));
        assert_eq!(
            e.message,
            "HTTP 422 from Postmark: ErrorCode 406: You tried to send to recipient(s) that have been marked as inactive."
        );

        for (status, transient) in [(500, true), (503, true), (429, true), (401, false)] {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(status).set_body_json(json!({
                    "ErrorCode": 10, "Message": format!("token {KEY} refused")})))
                .mount(&server)
                .await;
            let e = send(&sender(Provider::Postmark, server.uri()), None)
                .await
                .unwrap_err();
            assert_eq!(e.is_transient(), transient, "{status}");
            assert!(!e.message.contains(KEY), "{}", e.message);
        }
    }

    #[tokio::test]
    async fn bad_addresses_and_a_down_api_are_told_apart() {
        let s = sender(Provider::Postmark, format!("http://{}", refused_addr()));
        let e = send(&s, None).await.unwrap_err();
        assert!(e.is_transient());
        assert!(!format!("{e:?}").contains("SECRET"));
        for p in [Provider::Sendgrid, Provider::Mailgun, Provider::Postmark] {
            let s = sender(p, format!("http://{}", refused_addr()));
            let e = s
                .send(
                    "not an address",
                    &["a@b.test".into()],
                    "s",
                    "t",
                    None,
                    "d-1",
                )
                .await
                .unwrap_err();
            assert!(e.is_permanent(), "{p:?}");
            assert!(e.message.contains("sender"), "{}", e.message);
        }
    }

    #[test]
    fn check_names_each_key() {
        let check = |v: Value| {
            let cfg: ApiConfig = serde_json::from_value(v).unwrap();
            let mut errors = Vec::new();
            cfg.check("destinations.m.api", &mut errors);
            errors
        };
        assert_eq!(
            check(json!({"provider": "mailgun", "key": "k"})),
            vec![ConfigError::new(
                "destinations.m.api.domain",
                "is required with mailgun (the sending domain, e.g. mg.example.com)"
            )]
        );
        assert_eq!(
            check(
                json!({"provider": "postmark", "key": "a SECRET", "domain": "x.test",
                         "url": "nope"})
            ),
            vec![
                ConfigError::new(
                    "destinations.m.api.key",
                    "holds spaces or control characters"
                ),
                ConfigError::new(
                    "destinations.m.api.domain",
                    "only mailgun takes a domain, not Postmark"
                ),
                ConfigError::new(
                    "destinations.m.api.url",
                    "is not a valid URL (relative URL without a base)"
                ),
            ]
        );
        assert_eq!(
            check(json!({"provider": "mailgun", "key": "k", "domain": "mg/../x"})),
            vec![ConfigError::new(
                "destinations.m.api.domain",
                "\"mg/../x\" is not a domain name"
            )]
        );
        assert_eq!(check(json!({"provider": "sendgrid", "key": "k"})), vec![]);
    }
}
