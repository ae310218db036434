//! Templates (SPEC §6): a Handlebars registry per escaping mode, the helpers, the
//! embedded defaults, and validation that names file and line (stub).

use std::path::Path;

use serde_json::Value;

use crate::config::ConfigError;

/// What a body template produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// From `<name>.<type>.json.hbs`: the whole request body, already valid JSON.
    Json(Value),
    /// From `<name>.<type>.hbs`: message text the destination wraps in its payload.
    Text(String),
}

/// A failed render, naming the template file and line.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

/// The default email subject when a destination sets none.
pub const DEFAULT_SUBJECT: &str =
    "[{{upper status}}] {{provider}} {{event}}: {{default backup server}}";

#[derive(Clone)]
pub struct Templates {}

impl Templates {
    /// The embedded defaults, overridden and extended by every `*.hbs` in `dir` (if
    /// it exists). Every template is parsed and checked against sample events of
    /// every provider in strict mode; all errors are returned, each naming
    /// `file:line`.
    pub fn load(_dir: &Path) -> Result<Templates, Vec<ConfigError>> {
        Ok(Templates {})
    }

    /// Registers a one-line template from the config (email `subject`, Slack
    /// `channel`) under `key`; errors name `place` (a config key).
    pub fn add_inline(&mut self, _key: &str, _text: &str, _place: &str) -> Result<(), ConfigError> {
        Ok(())
    }

    /// Whether any template file of this name exists (`<name>.*.hbs`).
    pub fn has_name(&self, _name: &str) -> bool {
        true
    }

    /// The body for a destination of type `ty`: `<name>.<ty>.json.hbs`, else
    /// `<name>.<ty>.hbs`; when `name` has neither, the same from `default`.
    pub fn render_body(&self, _name: &str, _ty: &str, _ctx: &Value) -> Result<Body, RenderError> {
        Ok(Body::Text(String::new()))
    }

    /// The optional HTML part of an email: `<name>.email.html.hbs` when `name` has an
    /// email template, else `default.email.html.hbs`.
    pub fn render_email_html(
        &self,
        _name: &str,
        _ctx: &Value,
    ) -> Result<Option<String>, RenderError> {
        Ok(None)
    }

    /// Renders a template registered with [`Templates::add_inline`].
    pub fn render_inline(&self, _key: &str, _ctx: &Value) -> Result<String, RenderError> {
        Ok(String::new())
    }
}
