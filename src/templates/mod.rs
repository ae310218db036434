//! Templates (SPEC §6): one Handlebars registry per escaping mode, the helpers, the
//! embedded defaults, and load-time validation that names file and line.
//!
//! A template's escaping follows from its file name: `<name>.<type>.json.hbs` renders
//! a whole JSON request body, so `{{x}}` is JSON-string-escaped; `<name>.slack.hbs`
//! escapes `& < >` for Slack; `<name>.email.html.hbs` escapes HTML; every other text
//! template is not escaped. `{{{x}}}` is raw everywhere.
//!
//! Names are checked when templates are loaded, not when an alert is due: every
//! variable a template reads must be a normalized field (`crate::event::FIELDS`) or
//! under `raw.`, every helper must exist, and every template must render (and a JSON
//! template must render valid JSON) for sample events of every provider. At run time
//! rendering is lenient, so a payload lacking some `raw.x` still gets its alert out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, NaiveDateTime, Utc};
use handlebars::template::{Parameter, TemplateElement};
use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, JsonTruthy, Output, RenderContext,
    ScopedJson, Template,
};
use serde_json::{json, Value};

use crate::config::ConfigError;
use crate::destinations::TextEscape;
use crate::event::{Event, Status, FIELDS};

mod check;
mod fast;
mod helpers;
mod samples;
#[cfg(test)]
mod tests;

use check::*;
use helpers::*;
pub use helpers::{emoji, format_bytes, format_date, json_string_escape, slack_escape};
pub use samples::sample_contexts;

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

/// The default email subject when a destination sets none: an event's, a
/// group's ("[FAILURE] 12 backup alerts: db1 … and 11 more") or a digest's.
pub const DEFAULT_SUBJECT: &str = "{{#if (and (eq provider \"hookrelay\") (eq event \"digest\"))}}{{emoji status}} {{message}}\
     {{else if events}}[{{upper status}}] {{count}} backup alerts: {{default backup server}} {{more count 1}}\
     {{else}}[{{upper status}}] {{provider}} {{event}}: {{default backup server}}{{/if}}";

/// What templates see besides the event's fields: `delivery_id`, the same on every
/// attempt of one delivery (also sent as the `Hookrelay-Delivery-Id` header).
pub const DELIVERY_FIELDS: &[&str] = &["delivery_id"];

/// Templates whose name starts with this render digests (SPEC §10), not events:
/// they are checked against the digest's fields and rendered against sample
/// digests.
pub const DIGEST_PREFIX: &str = "digest";

/// Which names a template of this name reads.
fn names_of(name: &str) -> Names {
    if name.starts_with(DIGEST_PREFIX) {
        Names::Digest
    } else {
        Names::Event
    }
}

/// What `{{date x}}` uses when no format is given.
pub const DEFAULT_DATE_FORMAT: &str = "%Y-%m-%d %H:%M UTC";

/// The template name a route without `template:` uses, and the fallback for every type.
pub const DEFAULT_NAME: &str = "default";

/// The default templates, compiled into the binary so it runs with no templates
/// folder: each destination type registers its own ([`crate::destinations::Kind`]).
fn embedded() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    crate::destinations::KINDS
        .iter()
        .flat_map(|k| k.templates)
        .chain(crate::digest::TEMPLATES)
}

/// Where embedded defaults say they come from in errors.
const EMBEDDED_DIR: &str = "templates";

/// The helpers Handlebars itself provides, next to ours (see [`register_helpers`]).
const BUILTIN_HELPERS: &[&str] = &[
    "if", "unless", "each", "with", "lookup", "raw", "log", "eq", "ne", "gt", "gte", "lt", "lte",
    "and", "or", "not", "len",
];

/// The helpers hookrelay adds.
pub const HELPERS: &[&str] = &[
    "upper", "lower", "default", "eq", "json", "bytes", "date", "emoji", "mrkdwn", "ordinal",
    "since", "streak", "headline", "more",
];

/// How a template's `{{values}}` are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Inside a JSON document: JSON string escaping, without the quotes.
    Json,
    /// Slack message text: `&`, `<`, `>`.
    Slack,
    /// The HTML part of an email.
    Html,
    /// Everything else: no escaping.
    Plain,
    /// Mattermost Markdown: see `destinations::mattermost::escape_markdown`.
    Markdown,
}

impl Mode {
    const ALL: [Mode; 5] = [
        Mode::Json,
        Mode::Slack,
        Mode::Html,
        Mode::Plain,
        Mode::Markdown,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// A template file name taken apart: `<name>.<type>[.json|.html].hbs`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileName {
    name: String,
    /// The registry key: the file name without `.hbs`.
    key: String,
    mode: Mode,
}

fn parse_file_name(file: &str) -> Option<FileName> {
    let key = file.strip_suffix(".hbs")?;
    let (rest, variant) = if let Some(r) = key.strip_suffix(".json") {
        (r, Some("json"))
    } else if let Some(r) = key.strip_suffix(".html") {
        (r, Some("html"))
    } else {
        (key, None)
    };
    let (name, ty) = rest.rsplit_once('.')?;
    let kind = crate::destinations::kind(ty)?;
    if name.is_empty() {
        return None;
    }
    // A type with an HTML part takes text and HTML templates; any other type a
    // JSON body or text.
    let mode = match (variant, kind.html_part) {
        (Some("html"), true) => Mode::Html,
        (Some(_), true) | (Some("html"), false) => return None,
        (Some(_), false) => Mode::Json,
        (None, _) => match kind.text_escape {
            TextEscape::Plain => Mode::Plain,
            TextEscape::Slack => Mode::Slack,
            TextEscape::Html => Mode::Html,
            TextEscape::Markdown => Mode::Markdown,
        },
    };
    Some(FileName {
        name: name.to_string(),
        key: key.to_string(),
        mode,
    })
}

/// The loaded templates: what `load` found, checked, ready to render.
#[derive(Clone)]
pub struct Templates {
    /// One registry per [`Mode`], indexed by `Mode::index`.
    registries: Vec<Handlebars<'static>>,
    /// One-line templates from the config (subject, channel); never escaped.
    inline: Handlebars<'static>,
    /// Registry key (`default.slack.json`) -> (mode, file path shown in errors).
    files: BTreeMap<String, (Mode, String)>,
    /// Inline key -> the config key shown in errors.
    inline_places: BTreeMap<String, String>,
    names: BTreeSet<String>,
    /// Whether `default.webhook.json` is the embedded file (no folder file took
    /// its place), so [`Templates::default_webhook_json`] may write it directly.
    embedded_webhook: bool,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .field("inline", &self.inline_places.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Templates {
    fn empty() -> Templates {
        Templates {
            registries: Mode::ALL.iter().map(|m| new_registry(*m)).collect(),
            inline: new_registry(Mode::Plain),
            files: BTreeMap::new(),
            inline_places: BTreeMap::new(),
            names: BTreeSet::new(),
            embedded_webhook: false,
        }
    }

    fn registry(&self, mode: Mode) -> &Handlebars<'static> {
        &self.registries[mode.index()]
    }

    /// The embedded defaults, overridden and extended by every `*.hbs` in `dir` (if
    /// it exists). Every template is parsed, its names checked (see
    /// [`check_names`]) and rendered against sample events of every provider; all
    /// errors are returned, each naming `file:line` where a line is known.
    ///
    /// Files in `dir` that do not end in `.hbs` (a README, `.gitkeep`) and
    /// sub-folders are ignored; a missing `dir` is not an error. A folder file for
    /// `<name>.<type>` replaces the embedded body of that name and type whether it is
    /// JSON or text (so `default.slack.hbs` takes over from the embedded
    /// `default.slack.json.hbs`).
    pub fn load(dir: &Path) -> Result<Templates, Vec<ConfigError>> {
        let mut errors = Vec::new();
        // File name -> (place prefix, text, embedded). Files from `dir` replace
        // embedded ones.
        let mut sources: BTreeMap<String, (String, String, bool)> = embedded()
            .map(|(file, text)| {
                (
                    file.to_string(),
                    (format!("{EMBEDDED_DIR}/{file}"), text.to_string(), true),
                )
            })
            .collect();

        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = match entry {
                        Ok(e) => e,
                        Err(e) => {
                            errors.push(ConfigError::new(
                                dir.display().to_string(),
                                format!("cannot list the templates folder: {e}"),
                            ));
                            continue;
                        }
                    };
                    let file = entry.file_name().to_string_lossy().into_owned();
                    let path = entry.path();
                    let place = path.display().to_string();
                    if !file.ends_with(".hbs") || file.starts_with('.') || path.is_dir() {
                        continue;
                    }
                    match std::fs::read_to_string(&path) {
                        Ok(text) => {
                            sources.insert(file, (place, text, false));
                        }
                        Err(e) => errors.push(ConfigError::new(
                            place,
                            format!("cannot read the template: {e}"),
                        )),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(ConfigError::new(
                dir.display().to_string(),
                format!("cannot read the templates folder: {e}"),
            )),
        }

        // A folder file for `<name>.<type>` (JSON or text) replaces the embedded body
        // of the other kind too: otherwise an embedded `default.slack.json.hbs` would
        // silently win over a user's `default.slack.hbs`.
        let body_of = |file: &str| {
            parse_file_name(file)
                .filter(|f| f.mode != Mode::Html)
                .map(|f| f.key.trim_end_matches(".json").to_string())
        };
        let from_dir: BTreeSet<String> = sources
            .iter()
            .filter(|(_, (_, _, embedded))| !embedded)
            .filter_map(|(file, _)| body_of(file))
            .collect();
        sources.retain(|file, (_, _, embedded)| {
            !(*embedded && body_of(file).is_some_and(|b| from_dir.contains(&b)))
        });

        let mut templates = Templates::empty();
        for (file, (place, text, _)) in &sources {
            if let Err(mut errs) = templates.add_file(file, place, text) {
                errors.append(&mut errs);
            }
        }
        templates.embedded_webhook = sources
            .get(&format!("{}.hbs", fast::KEY))
            .is_some_and(|(_, _, embedded)| *embedded);
        if errors.is_empty() {
            Ok(templates)
        } else {
            Err(errors)
        }
    }

    /// Parses, checks and registers one template file.
    fn add_file(&mut self, file: &str, place: &str, text: &str) -> Result<(), Vec<ConfigError>> {
        let Some(parsed) = parse_file_name(file) else {
            return Err(vec![ConfigError::new(
                place,
                format!(
                    "\"{file}\" is not a template name: expected <name>.<type>.hbs, \
                     <name>.<type>.json.hbs or <name>.email.html.hbs, with type one of {}",
                    crate::destinations::type_names().join(", ")
                ),
            )]);
        };
        let template = compile(text, &parsed.key, place).map_err(|e| vec![e])?;
        let errors = check_names(&template, place, names_of(&parsed.name));
        if !errors.is_empty() {
            return Err(errors);
        }
        self.registries[parsed.mode.index()].register_template(&parsed.key, template);
        self.files
            .insert(parsed.key.clone(), (parsed.mode, place.to_string()));
        if let Err(e) = self.check_renders(&parsed.key) {
            self.registries[parsed.mode.index()].unregister_template(&parsed.key);
            self.files.remove(&parsed.key);
            return Err(vec![e]);
        }
        self.names.insert(parsed.name);
        Ok(())
    }

    /// Renders a registered file template against every sample event; the first
    /// failure is the error.
    fn check_renders(&self, key: &str) -> Result<(), ConfigError> {
        let (_, place) = &self.files[key];
        let name = key.split('.').next().unwrap_or_default();
        let samples = match names_of(name) {
            // A whole template is never one event of a group.
            Names::Event | Names::GroupEvent | Names::DigestItem => sample_contexts(),
            Names::Digest => crate::digest::sample_contexts(),
        };
        for (what, ctx) in samples {
            if let Err(e) = self.render_key(key, &Context::from(ctx)) {
                // Already names the file and line; say which sample broke it.
                let (at, msg) = split_place(&e.0, place);
                return Err(ConfigError::new(at, format!("{msg} (for {what})")));
            }
        }
        Ok(())
    }

    /// Registers a one-line template from the config (email `subject`, Slack
    /// `channel`) under `key`; errors name `place` (a config key).
    pub fn add_inline(&mut self, key: &str, text: &str, place: &str) -> Result<(), ConfigError> {
        let template = compile(text, key, place).map_err(|mut e| {
            // A config value has no lines worth naming; the key is the place.
            e.place = place.to_string();
            e
        })?;
        if let Some(e) = check_names(&template, place, Names::Event)
            .into_iter()
            .next()
        {
            return Err(ConfigError::new(place, e.message));
        }
        self.inline.register_template(key, template);
        self.inline_places
            .insert(key.to_string(), place.to_string());
        for (what, ctx) in sample_contexts() {
            if let Err(e) = self.inline.render(key, &ctx) {
                self.inline.unregister_template(key);
                self.inline_places.remove(key);
                return Err(ConfigError::new(
                    place,
                    format!("{} (for {what})", describe_render_error(&e)),
                ));
            }
        }
        Ok(())
    }

    /// Whether any template file of this name exists (`<name>.*.hbs`).
    pub fn has_name(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// The body for a destination of type `ty`: `<name>.<ty>.json.hbs`, else
    /// `<name>.<ty>.hbs`; when `name` has neither, the same from `default`.
    pub fn render_body(&self, name: &str, ty: &str, ctx: &Value) -> Result<Body, RenderError> {
        self.render_body_in(name, ty, &Context::from(ctx.clone()))
    }

    /// [`render_body`](Self::render_body) with the context already wrapped: one
    /// delivery renders its body, HTML part and subject from one context, and
    /// handlebars would copy a plain `Value` for each.
    pub fn render_body_in(&self, name: &str, ty: &str, ctx: &Context) -> Result<Body, RenderError> {
        let key = self.resolved_body_key(name, ty)?;
        self.render_key(&key, ctx)
    }

    /// The body for `ty` as the text its JSON template rendered, checked to be
    /// valid JSON but not parsed into a tree; `None` when the body comes from a
    /// text template (`<name>.<ty>.hbs`). For a destination that sends a JSON body
    /// as it is (webhook), parsing it and serializing it again would only cost time.
    pub fn render_json_text(
        &self,
        name: &str,
        ty: &str,
        ctx: &Context,
    ) -> Result<Option<String>, RenderError> {
        let key = self.resolved_body_key(name, ty)?;
        let Some((mode, place)) = self.files.get(&key) else {
            return Err(RenderError(format!("no template {key}.hbs")));
        };
        if *mode != Mode::Json {
            return Ok(None);
        }
        let text = self.render_text(&key, *mode, place, ctx)?;
        serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(|e| not_json(place, &e))?;
        Ok(Some(text))
    }

    /// The body of `name`'s webhook template for one event (not a group's, not a
    /// digest's), written without Handlebars when that template is the embedded
    /// `default.webhook.json.hbs`: the same bytes it renders (see `fast.rs`).
    /// `None` when another template applies.
    pub fn default_webhook_json(&self, name: &str, e: &Event, delivery_id: &str) -> Option<String> {
        self.default_webhook_json_with(name, e, None, delivery_id)
    }

    /// [`default_webhook_json`](Self::default_webhook_json) for an event whose
    /// `raw` is still the stored JSON text `raw_text` (see
    /// `store::parse_stored_event`); `None` also when that text is not JSON.
    pub fn default_webhook_json_with(
        &self,
        name: &str,
        e: &Event,
        raw_text: Option<&str>,
        delivery_id: &str,
    ) -> Option<String> {
        let ty = crate::destinations::webhook::KIND.name;
        if !self.embedded_webhook
            || crate::digest::is_digest(e)
            || self.resolved_body_key(name, ty).ok()?.as_str() != fast::KEY
        {
            return None;
        }
        fast::default_webhook_body(e, raw_text, delivery_id)
    }

    fn resolved_body_key(&self, name: &str, ty: &str) -> Result<String, RenderError> {
        self.body_key(name, ty)
            .or_else(|| self.body_key(DEFAULT_NAME, ty))
            .ok_or_else(|| {
                RenderError(format!(
                    "no template for {ty}: neither {name}.{ty}.json.hbs nor {name}.{ty}.hbs \
                     (nor the default ones) exists"
                ))
            })
    }

    /// The file a body for `ty` under `name` comes from (`name`'s, else
    /// `default`'s), as errors name it.
    pub fn body_place(&self, name: &str, ty: &str) -> Option<&str> {
        let key = self
            .body_key(name, ty)
            .or_else(|| self.body_key(DEFAULT_NAME, ty))?;
        self.files.get(&key).map(|(_, place)| place.as_str())
    }

    /// Whether `name` has its own body for type `ty` (no fallback to `default`).
    pub fn has_body(&self, name: &str, ty: &str) -> bool {
        self.body_key(name, ty).is_some()
    }

    fn body_key(&self, name: &str, ty: &str) -> Option<String> {
        [format!("{name}.{ty}.json"), format!("{name}.{ty}")]
            .into_iter()
            .find(|k| self.files.contains_key(k))
    }

    /// The optional HTML part of a type with one (email): `<name>.<ty>.html.hbs`
    /// when `name` has a body template for `ty`, else `default.<ty>.html.hbs`.
    pub fn render_html(
        &self,
        name: &str,
        ty: &str,
        ctx: &Value,
    ) -> Result<Option<String>, RenderError> {
        self.render_html_in(name, ty, &Context::from(ctx.clone()))
    }

    /// [`render_html`](Self::render_html) with the context already wrapped.
    pub fn render_html_in(
        &self,
        name: &str,
        ty: &str,
        ctx: &Context,
    ) -> Result<Option<String>, RenderError> {
        let owner = if self.body_key(name, ty).is_some() {
            name
        } else {
            DEFAULT_NAME
        };
        let key = format!("{owner}.{ty}.html");
        if !self.files.contains_key(&key) {
            return Ok(None);
        }
        match self.render_key(&key, ctx)? {
            Body::Text(s) => Ok(Some(s)),
            Body::Json(v) => Ok(Some(v.to_string())),
        }
    }

    /// Renders a template registered with [`Templates::add_inline`].
    pub fn render_inline(&self, key: &str, ctx: &Value) -> Result<String, RenderError> {
        self.render_inline_in(key, &Context::from(ctx.clone()))
    }

    /// [`render_inline`](Self::render_inline) with the context already wrapped.
    pub fn render_inline_in(&self, key: &str, ctx: &Context) -> Result<String, RenderError> {
        let Some(place) = self.inline_places.get(key) else {
            return Err(RenderError(format!("no inline template named {key}")));
        };
        self.inline
            .render_with_context(key, ctx)
            .map(trim_newlines)
            .map_err(|e| RenderError(format!("{place}: {}", describe_render_error(&e))))
    }

    /// Renders one file template by registry key, leniently (missing values are
    /// empty), parsing JSON templates.
    fn render_key(&self, key: &str, ctx: &Context) -> Result<Body, RenderError> {
        let Some((mode, place)) = self.files.get(key) else {
            return Err(RenderError(format!("no template {key}.hbs")));
        };
        let text = self.render_text(key, *mode, place, ctx)?;
        match mode {
            Mode::Json => serde_json::from_str(&text)
                .map(Body::Json)
                .map_err(|e| not_json(place, &e)),
            Mode::Html => Ok(Body::Text(text)),
            Mode::Slack | Mode::Plain | Mode::Markdown => Ok(Body::Text(trim_newlines(text))),
        }
    }
}

impl Templates {
    /// Renders one file template by registry key to its text.
    fn render_text(
        &self,
        key: &str,
        mode: Mode,
        place: &str,
        ctx: &Context,
    ) -> Result<String, RenderError> {
        self.registry(mode)
            .render_with_context(key, ctx)
            .map_err(|e| {
                let at = match e.line_no {
                    Some(line) => format!("{place}:{line}"),
                    None => place.to_string(),
                };
                RenderError(format!("{at}: {}", describe_render_error(&e)))
            })
    }
}

fn not_json(place: &str, e: &serde_json::Error) -> RenderError {
    RenderError(format!(
        "{place}: the template did not render valid JSON ({e} in the output)"
    ))
}

/// Text bodies lose the newline(s) the template file ends with.
fn trim_newlines(s: String) -> String {
    let trimmed = s.trim_end_matches(['\n', '\r']);
    if trimmed.len() == s.len() {
        s
    } else {
        trimmed.to_string()
    }
}

/// Splits `"<place>[:line]: message"` produced by `render_key` back apart.
fn split_place(msg: &str, place: &str) -> (String, String) {
    if let Some(rest) = msg.strip_prefix(place) {
        if let Some((line, m)) = rest.strip_prefix(':').and_then(|r| r.split_once(": ")) {
            if line.chars().all(|c| c.is_ascii_digit()) && !line.is_empty() {
                return (format!("{place}:{line}"), m.to_string());
            }
        }
        if let Some(m) = rest.strip_prefix(": ") {
            return (place.to_string(), m.to_string());
        }
    }
    (place.to_string(), msg.to_string())
}

fn describe_render_error(e: &handlebars::RenderError) -> String {
    use handlebars::RenderErrorReason as R;
    match e.reason() {
        R::HelperNotFound(h) => format!("unknown helper \"{h}\""),
        R::PartialNotFound(p) => format!("unknown partial \"{p}\""),
        R::MissingVariable(Some(p)) => format!("unknown field \"{p}\""),
        other => other.to_string(),
    }
}

/// The innermost block opened (`{{#name …}}`, `{{#*inline …}}`) and never
/// closed, with its line, if any; comments are skipped.
fn unclosed_block(text: &str) -> Option<(usize, String)> {
    static TAG: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?s)\{\{!--.*?--\}\}|\{\{!.*?\}\}|\{\{~?\s*(#\*?|/)\s*([^\s}~()]+)")
            .expect("a valid regex")
    });
    // (line, `#`-less opening as written, name).
    let mut open: Vec<(usize, String, &str)> = Vec::new();
    for c in TAG.captures_iter(text) {
        let (Some(kind), Some(name)) = (c.get(1), c.get(2)) else {
            continue;
        };
        let line = text[..kind.start()].matches('\n').count() + 1;
        if kind.as_str() == "/" {
            if open.last().is_some_and(|(_, _, n)| *n == name.as_str()) {
                open.pop();
            } else {
                // Closes an outer block: the inner one was never closed.
                break;
            }
        } else {
            let star = kind.as_str().trim_start_matches('#');
            open.push((line, format!("{star}{}", name.as_str()), name.as_str()));
        }
    }
    open.pop().map(|(line, shown, _)| (line, shown))
}

/// Compiles a template; a syntax error names `place:line`.
fn compile(text: &str, key: &str, place: &str) -> Result<Template, ConfigError> {
    Template::compile_with_name(text, key.to_string()).map_err(|e| {
        use handlebars::TemplateErrorReason as T;
        let at = match e.pos() {
            Some((line, _)) => format!("{place}:{line}"),
            None => place.to_string(),
        };
        // The parser reports a block never closed at the end of the file: name the
        // line that opens it instead.
        if matches!(e.reason(), T::InvalidSyntax(_)) {
            if let Some((line, name)) = unclosed_block(text) {
                return ConfigError::new(
                    format!("{place}:{line}"),
                    format!(
                        "\"{{{{#{name}}}}}\" is never closed (add \"{{{{/{}}}}}\")",
                        name.trim_start_matches('*')
                    ),
                );
            }
        }
        let message = match e.reason() {
            T::MismatchingClosedHelper(open, close) => {
                format!("\"{{{{#{open}}}}}\" is closed by \"{{{{/{close}}}}}\"")
            }
            T::MismatchingClosedDecorator(open, close) => {
                format!("\"{{{{#*{open}}}}}\" is closed by \"{{{{/{close}}}}}\"")
            }
            T::InvalidSyntax(_) => {
                "invalid Handlebars syntax (an unclosed block or a stray {{ or }}?)".to_string()
            }
            T::InvalidParam(p) => format!("invalid parameter \"{p}\""),
            T::NestedSubexpression => "nested subexpressions are not supported".to_string(),
            other => other.to_string(),
        };
        ConfigError::new(at, message)
    })
}
