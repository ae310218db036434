//! `type: webhook`: POSTs JSON to `url` with the configured `headers`.
//! A JSON template's body is sent exactly as it rendered (checked to be JSON);
//! `Body::Text(t)` as `{"text": t}`.

use super::Http;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{classify_status, json_bytes_request, post_json_bytes, send_request};
use super::{post_and_classify, Destination, DestinationSettings, Kind, Message, Request};
use super::{SendError, Sent, TextEscape};
use crate::config::{ConfigError, Secret};
use crate::templates::Body;

pub const KIND: Kind = Kind {
    name: "webhook",
    parse: super::parse_as::<WebhookConfig>,
    templates: &[(
        "default.webhook.json.hbs",
        include_str!("../../templates/default.webhook.json.hbs"),
    )],
    text_escape: TextEscape::Plain,
    html_part: false,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: Secret,
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
}

impl DestinationSettings for WebhookConfig {
    fn type_name(&self) -> &'static str {
        KIND.name
    }

    fn check(&self, place: &str, errors: &mut Vec<ConfigError>) {
        super::check_url(format!("{place}.url"), self.url.expose(), errors);
        for name in self.headers.keys() {
            super::check_header_name(format!("{place}.headers.{name}"), name, errors);
        }
    }

    fn describe(&self) -> String {
        "POST JSON".into()
    }

    fn build(&self, http: &Http, timeout: Duration) -> std::sync::Arc<dyn Destination> {
        std::sync::Arc::new(Webhook::new(self, http.clone(), timeout))
    }
}

pub struct Webhook {
    url: Secret,
    headers: Vec<(String, Secret)>,
    http: Http,
    timeout: Duration,
    /// `url` parsed and `headers` built once, not for every send; `None` if
    /// the configuration cannot give them (then each send says why).
    parsed: Option<(reqwest::Url, HeaderMap)>,
    /// Where [`client`](super::client) sends, from `parsed`'s URL.
    target: Option<super::client::Target>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Webhook {
    pub fn new(cfg: &WebhookConfig, http: Http, timeout: Duration) -> Webhook {
        let mut w = Webhook {
            url: cfg.url.clone(),
            headers: cfg
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            http,
            timeout,
            parsed: None,
            target: None,
        };
        w.parsed = reqwest::Url::parse(w.url.expose())
            .ok()
            .zip(w.header_map().ok());
        w.target = w
            .parsed
            .as_ref()
            .and_then(|(url, _)| super::client::Target::new(url).ok());
        w
    }

    /// The configured headers; values are marked sensitive (they often hold tokens)
    /// and never quoted in errors.
    fn header_map(&self) -> Result<HeaderMap, SendError> {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| SendError::permanent(format!("header name {name:?} is not valid")))?;
            let mut v = HeaderValue::from_str(value.expose()).map_err(|_| {
                SendError::permanent(format!("the value of header {name:?} is not valid"))
            })?;
            v.set_sensitive(true);
            map.append(n, v);
        }
        Ok(map)
    }
}

#[async_trait]
impl Destination for Webhook {
    fn prepare(&self, msg: &Message) -> Result<Request, SendError> {
        Ok(Request::Json(match &msg.body {
            Body::Json(v) => v.clone(),
            Body::Text(t) => json!({ "text": t }),
        }))
    }

    fn sends_json_as_is(&self) -> bool {
        true
    }

    async fn send(&self, req: &Request, delivery_id: &str) -> Result<Sent, SendError> {
        let body = match req {
            Request::Json(body) => {
                let headers = match &self.parsed {
                    Some((_, h)) => h.clone(),
                    None => self.header_map()?,
                };
                return post_and_classify(
                    &self.http,
                    self.url.expose(),
                    headers,
                    body,
                    self.timeout,
                    delivery_id,
                )
                .await;
            }
            Request::JsonText(text) => text,
            _ => {
                return Err(SendError::permanent(
                    "a webhook destination sends JSON requests only",
                ))
            }
        };
        if let (Some((_, headers)), Some(target), true) =
            (&self.parsed, &self.target, super::client::enabled())
        {
            let (status, headers, text) = post_json_bytes(
                target,
                headers.clone(),
                bytes::Bytes::copy_from_slice(body.as_bytes()),
                self.timeout,
                delivery_id,
            )
            .await?;
            return classify_status(status, &headers, &text);
        }
        let req = match &self.parsed {
            Some((url, headers)) => self
                .http
                .post(url.clone())
                .headers(headers.clone())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                )
                .body(body.clone()),
            None => json_bytes_request(
                &self.http,
                self.url.expose(),
                self.header_map()?,
                body.clone().into_bytes(),
            ),
        };
        let (status, headers, text) = send_request(req, self.timeout, delivery_id).await?;
        classify_status(status, &headers, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{client, refused_addr, text, TIMEOUT};
    use super::*;
    use crate::destinations::test_support::ID;
    use serde_json::Value;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn hook(url: String, headers: &[(&str, &str)], timeout: Duration) -> Webhook {
        let cfg = WebhookConfig {
            url: Secret::new(url),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), Secret::new(*v)))
                .collect::<BTreeMap<_, _>>(),
        };
        Webhook::new(&cfg, client(), timeout)
    }

    #[tokio::test]
    async fn credentials_in_the_url_are_sent_as_basic_auth() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/in"))
            // ops:p@ss w
            .and(header("authorization", "Basic b3BzOnBAc3Mgdw=="))
            .respond_with(ResponseTemplate::new(200))
            .mount(&server)
            .await;
        let url = server.uri().replace("http://", "http://ops:p%40ss%20w@") + "/in";
        let w = hook(url, &[], TIMEOUT);
        for req in [
            Request::JsonText("{}".into()),
            w.prepare(&text("hi")).unwrap(),
        ] {
            assert_eq!(w.send(&req, ID).await.unwrap().status, Some(200));
        }
        // A header of the user's own wins over the URL's credentials.
        let url = server.uri().replace("http://", "http://ops:wrong@") + "/in";
        let w = hook(url, &[("Authorization", "Basic b3BzOnBAc3Mgdw==")], TIMEOUT);
        let req = Request::JsonText("{}".into());
        assert_eq!(w.send(&req, ID).await.unwrap().status, Some(200));
    }

    #[tokio::test]
    async fn posts_json_with_custom_headers() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/hook"))
            .and(header("x-api-key", "k3y"))
            .and(header("content-type", "application/json; charset=utf-8"))
            .respond_with(ResponseTemplate::new(200))
            .expect(1)
            .mount(&server)
            .await;
        let w = hook(
            format!("{}/hook", server.uri()),
            &[("X-Api-Key", "k3y"), ("X-Other", "v")],
            TIMEOUT,
        );
        let t = "He said \"hi\" <b>bold</b> & co\nline 2 🎉\t\\";
        let req = w.prepare(&text(t)).unwrap();
        assert_eq!(req, Request::Json(json!({ "text": t })));
        assert_eq!(w.send(&req, ID).await.unwrap().status, Some(200));

        let got = &server.received_requests().await.unwrap()[0];
        let body: Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(body, json!({ "text": t }));
        assert_eq!(got.headers.get("x-other").unwrap(), "v");
        let ua = got.headers.get("user-agent").unwrap().to_str().unwrap();
        assert_eq!(ua, concat!("hookrelay/", env!("CARGO_PKG_VERSION")));
    }

    #[tokio::test]
    async fn json_body_is_sent_as_is() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&server)
            .await;
        let w = hook(server.uri(), &[], TIMEOUT);
        let v = json!({"status": "failed", "n": [1, 2, {"x": null}]});
        let req = w
            .prepare(&Message {
                body: Body::Json(v.clone()),
                ..text("")
            })
            .unwrap();
        assert_eq!(w.send(&req, ID).await.unwrap().status, Some(204));
        let got = &server.received_requests().await.unwrap()[0];
        assert_eq!(serde_json::from_slice::<Value>(&got.body).unwrap(), v);
    }

    #[tokio::test]
    async fn json_text_is_sent_exactly_as_rendered() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(header("content-type", "application/json; charset=utf-8"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&server)
            .await;
        let w = hook(server.uri(), &[("X-Api-Key", "k3y")], TIMEOUT);
        assert!(w.sends_json_as_is());
        let text = "{\n  \"b\": 1,\n  \"a\": [\"x\", null]\n}\n";
        let sent = w.send(&Request::JsonText(text.into()), ID).await.unwrap();
        assert_eq!(sent.status, Some(200));
        let got = &server.received_requests().await.unwrap()[0];
        assert_eq!(got.body, text.as_bytes());
        assert_eq!(got.headers.get("x-api-key").unwrap(), "k3y");
        assert_eq!(got.headers.get("hookrelay-delivery-id").unwrap(), ID);
    }

    #[tokio::test]
    async fn statuses_are_classified() {
        let server = MockServer::start().await;
        Mock::given(path("/500"))
            .respond_with(ResponseTemplate::new(500))
            .mount(&server)
            .await;
        Mock::given(path("/429"))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "7"))
            .mount(&server)
            .await;
        Mock::given(path("/401"))
            .respond_with(ResponseTemplate::new(401).set_body_string("bad key"))
            .mount(&server)
            .await;
        let req = Request::Json(json!({}));
        let e = hook(format!("{}/500", server.uri()), &[], TIMEOUT)
            .send(&req, ID)
            .await
            .unwrap_err();
        assert!(e.is_transient());
        let e = hook(format!("{}/429", server.uri()), &[], TIMEOUT)
            .send(&req, ID)
            .await
            .unwrap_err();
        assert!(e.is_transient());
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        let e = hook(format!("{}/401", server.uri()), &[], TIMEOUT)
            .send(&req, ID)
            .await
            .unwrap_err();
        assert!(e.is_permanent());
        assert_eq!(e.message, "HTTP 401 from destination: bad key");
    }

    #[tokio::test]
    async fn refused_and_slow_are_transient() {
        let w = hook(format!("http://{}/x/SECRET", refused_addr()), &[], TIMEOUT);
        let e = w.send(&Request::Json(json!({})), ID).await.unwrap_err();
        assert!(e.is_transient(), "{e:?}");
        assert!(!e.message.contains("SECRET"));

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
            .mount(&server)
            .await;
        let w = hook(server.uri(), &[], Duration::from_millis(200));
        let e = w.send(&Request::Json(json!({})), ID).await.unwrap_err();
        assert!(e.is_transient(), "{e:?}");
        assert!(e.message.contains("timed out"), "{}", e.message);
    }

    #[tokio::test]
    async fn bad_header_value_is_permanent_and_not_quoted() {
        let w = hook(
            "http://127.0.0.1:9/".into(),
            &[("X-Token", "sec\nret")],
            TIMEOUT,
        );
        let e = w.send(&Request::Json(json!({})), ID).await.unwrap_err();
        assert!(e.is_permanent());
        assert!(!e.message.contains("sec"), "{}", e.message);
        assert!(!format!("{w:?}").contains("sec"));
    }
}
