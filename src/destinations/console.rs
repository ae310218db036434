//! `type: console`: prints the message to standard output. Always succeeds; for
//! trying routes and templates locally.

use super::Http;
use std::io::Write;

use async_trait::async_trait;

use serde::Deserialize;

use super::TextEscape;
use super::{Destination, DestinationSettings, Kind, Message, Request, SendError, Sent};
use crate::config::ConfigError;
use crate::templates::Body;

pub const KIND: Kind = Kind {
    name: "console",
    parse: super::parse_as::<ConsoleConfig>,
    templates: &[(
        "default.console.hbs",
        include_str!("../../templates/default.console.hbs"),
    )],
    text_escape: TextEscape::Plain,
    html_part: false,
};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {}

impl DestinationSettings for ConsoleConfig {
    fn type_name(&self) -> &'static str {
        KIND.name
    }

    fn check(&self, _place: &str, _errors: &mut Vec<ConfigError>) {}

    fn describe(&self) -> String {
        "standard output".into()
    }

    fn build(
        &self,
        _http: &Http,
        _timeout: std::time::Duration,
    ) -> std::sync::Arc<dyn Destination> {
        std::sync::Arc::new(Console::default())
    }
}

#[derive(Debug, Default)]
pub struct Console {}

/// The text a body prints as: the text itself, or the JSON body pretty-printed.
pub(crate) fn body_text(body: &Body) -> String {
    match body {
        Body::Text(t) => t.clone(),
        // Serializing a `Value` cannot fail; fall back to the compact form anyway.
        Body::Json(v) => serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()),
    }
}

#[async_trait]
impl Destination for Console {
    fn prepare(&self, msg: &Message) -> Result<Request, SendError> {
        Ok(Request::Console(body_text(&msg.body)))
    }

    async fn send(&self, req: &Request, _delivery_id: &str) -> Result<Sent, SendError> {
        let text = match req {
            Request::Console(t) => t.clone(),
            Request::JsonText(t) => t.trim_end().to_string(),
            Request::Json(v) => serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()),
            Request::Email { subject, text, .. } => format!("{subject}\n\n{text}"),
            Request::Nothing(reason) => return Ok(Sent::nothing(reason)),
        };
        // `println!` panics when stdout is closed; a console destination never fails.
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
        Ok(Sent {
            status: None,
            note: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destinations::test_support::ID;
    use serde_json::json;

    fn msg(body: Body) -> Message {
        Message {
            body,
            html: None,
            subject: None,
            channel: None,
        }
    }

    #[tokio::test]
    async fn prints_text_and_pretty_json() {
        let c = Console::default();
        let req = c.prepare(&msg(Body::Text("hello\nworld".into()))).unwrap();
        assert_eq!(req, Request::Console("hello\nworld".into()));
        assert_eq!(
            c.send(&req, ID).await.unwrap(),
            Sent {
                status: None,
                note: None
            }
        );

        let req = c.prepare(&msg(Body::Json(json!({"a": [1, 2]})))).unwrap();
        assert_eq!(
            req,
            Request::Console("{\n  \"a\": [\n    1,\n    2\n  ]\n}".into())
        );
        assert!(c.send(&req, ID).await.is_ok());
    }
}
