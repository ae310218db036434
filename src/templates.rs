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

/// What templates see besides the event's fields: `delivery_id`, the same on every
/// attempt of one delivery (also sent as the `Hookrelay-Delivery-Id` header).
pub const DELIVERY_FIELDS: &[&str] = &["delivery_id"];

/// What `{{date x}}` uses when no format is given.
pub const DEFAULT_DATE_FORMAT: &str = "%Y-%m-%d %H:%M UTC";

/// The template name a route without `template:` uses, and the fallback for every type.
pub const DEFAULT_NAME: &str = "default";

/// The default templates, compiled into the binary so it runs with no templates
/// folder: each destination type registers its own ([`crate::destinations::Kind`]).
fn embedded() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    crate::destinations::KINDS.iter().flat_map(|k| k.templates)
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
    "upper", "lower", "default", "eq", "json", "bytes", "date", "emoji", "mrkdwn",
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
}

impl Mode {
    const ALL: [Mode; 4] = [Mode::Json, Mode::Slack, Mode::Html, Mode::Plain];

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
        let errors = check_names(&template, place);
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
        for (what, ctx) in sample_contexts() {
            if let Err(e) = self.render_key(key, &ctx) {
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
        if let Some(e) = check_names(&template, place).into_iter().next() {
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
        let key = self
            .body_key(name, ty)
            .or_else(|| self.body_key(DEFAULT_NAME, ty))
            .ok_or_else(|| {
                RenderError(format!(
                    "no template for {ty}: neither {name}.{ty}.json.hbs nor {name}.{ty}.hbs \
                     (nor the default ones) exists"
                ))
            })?;
        self.render_key(&key, ctx)
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
        let Some(place) = self.inline_places.get(key) else {
            return Err(RenderError(format!("no inline template named {key}")));
        };
        self.inline
            .render(key, ctx)
            .map(trim_newlines)
            .map_err(|e| RenderError(format!("{place}: {}", describe_render_error(&e))))
    }

    /// Renders one file template by registry key, leniently (missing values are
    /// empty), parsing JSON templates.
    fn render_key(&self, key: &str, ctx: &Value) -> Result<Body, RenderError> {
        let Some((mode, place)) = self.files.get(key) else {
            return Err(RenderError(format!("no template {key}.hbs")));
        };
        let text = self.registry(*mode).render(key, ctx).map_err(|e| {
            let at = match e.line_no {
                Some(line) => format!("{place}:{line}"),
                None => place.clone(),
            };
            RenderError(format!("{at}: {}", describe_render_error(&e)))
        })?;
        match mode {
            Mode::Json => serde_json::from_str(&text).map(Body::Json).map_err(|e| {
                RenderError(format!(
                    "{place}: the template did not render valid JSON ({e} in the output)"
                ))
            }),
            Mode::Html => Ok(Body::Text(text)),
            Mode::Slack | Mode::Plain => Ok(Body::Text(trim_newlines(text))),
        }
    }
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

/// Compiles a template; a syntax error names `place:line`.
fn compile(text: &str, key: &str, place: &str) -> Result<Template, ConfigError> {
    Template::compile_with_name(text, key.to_string()).map_err(|e| {
        use handlebars::TemplateErrorReason as T;
        let at = match e.pos() {
            Some((line, _)) => format!("{place}:{line}"),
            None => place.to_string(),
        };
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

// ---------------------------------------------------------------------------------
// Names: every variable a template reads must be a known field or under `raw.`.
// ---------------------------------------------------------------------------------

/// Walks the parsed template and reports every unknown field and unknown helper,
/// each at `place:line`. This is stricter than Handlebars' strict mode, which does
/// not look inside `{{#if x}}` or helper arguments and stops at the first miss.
fn check_names(template: &Template, place: &str) -> Vec<ConfigError> {
    let mut found = Vec::new();
    walk(template, 0, 1, &mut found);
    let mut seen = BTreeSet::new();
    found
        .into_iter()
        .filter(|f| seen.insert(f.clone()))
        .map(|(line, msg)| ConfigError::new(format!("{place}:{line}"), msg))
        .collect()
}

type Found = Vec<(usize, String)>;

/// `depth` counts the `#each` / `#with` blocks around: inside them names are
/// relative to a part of the payload we cannot know, so they are not checked.
fn walk(template: &Template, depth: usize, parent_line: usize, found: &mut Found) {
    for (i, el) in template.elements.iter().enumerate() {
        let line = template.mapping.get(i).map_or(parent_line, |m| m.0);
        match el {
            TemplateElement::Expression(ht) | TemplateElement::HtmlExpression(ht) => {
                check_call(
                    &ht.name,
                    &ht.params,
                    ht.hash.values(),
                    false,
                    depth,
                    line,
                    found,
                );
            }
            TemplateElement::HelperBlock(ht) => {
                check_call(
                    &ht.name,
                    &ht.params,
                    ht.hash.values(),
                    true,
                    depth,
                    line,
                    found,
                );
                let scoped = matches!(ht.name.as_name(), Some("each" | "with"));
                if let Some(t) = &ht.template {
                    walk(t, depth + usize::from(scoped), line, found);
                }
                if let Some(t) = &ht.inverse {
                    walk(t, depth, line, found);
                }
            }
            TemplateElement::DecoratorExpression(dt)
            | TemplateElement::DecoratorBlock(dt)
            | TemplateElement::PartialExpression(dt)
            | TemplateElement::PartialBlock(dt) => {
                // `{{#*inline "x"}}…{{/inline}}` and `{{> x}}`: the name is not a
                // variable; the arguments and the body are checked.
                for p in dt.params.iter().chain(dt.hash.values()) {
                    check_param(p, depth, line, found);
                }
                if let Some(t) = &dt.template {
                    walk(t, depth, line, found);
                }
            }
            _ => {}
        }
    }
}

fn is_helper(name: &str) -> bool {
    HELPERS.contains(&name) || BUILTIN_HELPERS.contains(&name)
}

fn check_call<'a>(
    name: &Parameter,
    params: &[Parameter],
    hash: impl Iterator<Item = &'a Parameter>,
    block: bool,
    depth: usize,
    line: usize,
    found: &mut Found,
) {
    let mut has_hash = false;
    for p in hash {
        has_hash = true;
        check_param(p, depth, line, found);
    }
    match name {
        Parameter::Name(_) | Parameter::Path(_) => {
            let n = name.as_name().unwrap_or_default();
            if !is_helper(n) {
                if block || !params.is_empty() || has_hash {
                    found.push((line, format!("unknown helper \"{n}\"")));
                } else {
                    check_path(n, depth, line, found);
                }
            }
        }
        Parameter::Subexpression(s) => check_subexpression(s.as_element(), depth, line, found),
        _ => {}
    }
    for p in params {
        check_param(p, depth, line, found);
    }
}

fn check_subexpression(el: &TemplateElement, depth: usize, line: usize, found: &mut Found) {
    if let TemplateElement::Expression(ht) | TemplateElement::HtmlExpression(ht) = el {
        check_call(
            &ht.name,
            &ht.params,
            ht.hash.values(),
            false,
            depth,
            line,
            found,
        );
    }
}

fn check_param(p: &Parameter, depth: usize, line: usize, found: &mut Found) {
    match p {
        Parameter::Name(_) | Parameter::Path(_) => {
            check_path(p.as_name().unwrap_or_default(), depth, line, found)
        }
        Parameter::Subexpression(s) => check_subexpression(s.as_element(), depth, line, found),
        _ => {}
    }
}

/// Checks one variable path such as `stack`, `raw.stack.name`, `@root.stack`,
/// `../stack` or `this`.
fn check_path(raw_path: &str, depth: usize, line: usize, found: &mut Found) {
    let mut s = raw_path.trim();
    let mut depth = depth;
    if let Some(rest) = s.strip_prefix("@root") {
        s = rest.trim_start_matches(['.', '/']);
        depth = 0;
    } else if s.starts_with('@') {
        return; // @index, @key, @first, @last
    }
    while let Some(rest) = s.strip_prefix("../") {
        s = rest;
        depth = depth.saturating_sub(1);
    }
    if depth > 0 {
        return;
    }
    for prefix in ["this.", "this/", "./"] {
        if let Some(rest) = s.strip_prefix(prefix) {
            s = rest;
        }
    }
    if s.is_empty() || s == "this" || s == "." {
        return;
    }
    let (first, rest) = if let Some(inner) = s.strip_prefix('[') {
        match inner.split_once(']') {
            Some((f, r)) => (f, r),
            None => (inner, ""),
        }
    } else {
        match s.find(['.', '/', '[']) {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        }
    };
    let rest = rest.trim_start_matches(['.', '/']);
    if first == "raw" {
        return;
    }
    if FIELDS.contains(&first) || DELIVERY_FIELDS.contains(&first) {
        if !rest.is_empty() {
            found.push((
                line,
                format!("field \"{first}\" is a plain value with no \"{rest}\" inside (the payload is under raw.)"),
            ));
        }
        return;
    }
    let message = match suggest(first) {
        Some(known) => format!("unknown field \"{first}\" (did you mean \"{known}\"?)"),
        None => format!(
            "unknown field \"{first}\" (known fields: {}, {}; the provider's payload is under raw.)",
            FIELDS.join(", "),
            DELIVERY_FIELDS.join(", ")
        ),
    };
    found.push((line, message));
}

/// The known field closest to a misspelling, if it is close.
fn suggest(name: &str) -> Option<&'static str> {
    FIELDS
        .iter()
        .chain(DELIVERY_FIELDS)
        .chain(std::iter::once(&"raw"))
        .map(|f| (edit_distance(name, f), *f))
        .filter(|(d, f)| *d <= 2 && *d < f.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, f)| f)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

// ---------------------------------------------------------------------------------
// Sample events: what every template must render at load time.
// ---------------------------------------------------------------------------------

/// Realistic contexts for every provider and outcome, one with every field null, and
/// one whose values hold characters that break JSON and markup.
pub fn sample_contexts() -> Vec<(&'static str, Value)> {
    let event = |f: &dyn Fn(&mut Event)| {
        let mut e = Event {
            received_at: "2025-09-04T18:38:02Z".into(),
            ..Default::default()
        };
        f(&mut e);
        let mut ctx = e.template_context();
        crate::relay::set_delivery_id(&mut ctx, "0190f3c2-7a1b-7cc3-9a4e-2b5d1e6f7a80-1");
        ctx
    };
    let cloud66 = event(&|e| {
        e.source = "c66".into();
        e.provider = "cloud66".into();
        e.event = Some("backup.verification.failed".into());
        e.status = Status::Failure;
        e.stack = Some("my-production-app".into());
        e.environment = Some("production".into());
        e.server = Some("server-abc123".into());
        e.account = Some("Production Team (team@example.com)".into());
        e.backup = Some("myapp_production".into());
        e.database = Some("postgresql".into());
        e.size_bytes = Some(1_024_000_000);
        e.occurred_at = Some("2025-09-04T18:37:59Z".into());
        e.message = Some("Cloud66 gave no reason for the failure. Verification result: \"Backup verified successfully\"; Backup result: \"Backup completed successfully\"".into());
        e.raw = json!({"timestamp": 1757011079, "event_type": "backup.verification.failed",
            "stack": {"name": "my-production-app", "environment": "production", "cloud": "aws"},
            "backup": {"db_type": "postgresql", "database_name": "myapp_production",
                       "backup_size": 1024000000}});
    });
    let simplebackups = event(&|e| {
        e.source = "sb".into();
        e.provider = "simplebackups".into();
        e.event = Some("error".into());
        e.status = Status::Failure;
        e.server = Some("Acme Server".into());
        e.backup = Some("Acme Project".into());
        e.occurred_at = Some("2021-10-10T10:10:10Z".into());
        e.id = Some("987655".into());
        e.message = Some("Backup Acme Project failed".into());
        e.raw = json!({"id": 987655, "type": "backup", "status": "error",
            "backup": {"id": 4101, "name": "Acme Project"}, "server": {"name": "Acme Server"}});
    });
    let centurylink_failed = event(&|e| {
        e.source = "ctl".into();
        e.provider = "centurylink".into();
        e.event = Some("FAILED".into());
        e.status = Status::Failure;
        e.server = Some("testServerId20190201013933".into());
        e.account = Some("TEST".into());
        e.backup = Some("TestAccountPolicyName20190201013935".into());
        e.occurred_at = Some("2019-02-01T01:39:40Z".into());
        e.id = Some("c56b1fd4-b566-4044-a696-0f1311ffdeee".into());
        e.message =
            Some("Status: FAILED - Account: TEST - Server: testServerId20190201013933".into());
        e.raw = json!({"text": "Status: FAILED - Account: TEST", "status": "FAILED"});
    });
    let centurylink_missing = event(&|e| {
        e.source = "ctl".into();
        e.provider = "centurylink".into();
        e.event = Some("MISSING".into());
        e.status = Status::Missing;
        e.server = Some("testServerId20181228013921".into());
        e.account = Some("TEST".into());
        e.backup = Some("TestAccountPolicyName20181228013921".into());
        e.occurred_at = Some("2019-02-01T20:00:04.289Z".into());
        e.message = Some(
            "testServerId20181228013921 missed a backup expected at 2019-02-01T20:00:04.289Z"
                .into(),
        );
        e.raw = json!({"text": "testServerId20181228013921 missed a backup"});
    });
    let success = event(&|e| {
        e.source = "sb".into();
        e.provider = "simplebackups".into();
        e.event = Some("success".into());
        e.status = Status::Success;
        e.server = Some("Acme Server".into());
        e.backup = Some("Acme Project".into());
        e.raw = json!({"status": "success"});
    });
    let partial = event(&|e| {
        e.source = "ctl".into();
        e.provider = "centurylink".into();
        e.event = Some("PARTIAL_SUCCESS".into());
        e.status = Status::Partial;
        e.server = Some("IL1TESTWIND0803".into());
        e.raw = json!("not even an object");
    });
    let generic = event(&|e| {
        e.source = "generic".into();
        e.provider = "generic".into();
        e.raw = json!({});
    });
    let hostile = event(&|e| {
        let nasty = "quote \" back\\slash <b>bold</b> & amp\nnew line\ttab ✅ 🚀 <!channel>";
        e.source = "src \"x\"".into();
        e.provider = "generic".into();
        e.event = Some(nasty.into());
        e.status = Status::Unknown;
        e.stack = Some(nasty.into());
        e.environment = Some(nasty.into());
        e.server = Some(nasty.into());
        e.account = Some(nasty.into());
        e.backup = Some(nasty.into());
        e.database = Some(nasty.into());
        e.occurred_at = Some(nasty.into());
        e.id = Some(nasty.into());
        e.message = Some(nasty.into());
        e.raw = json!({"text": nasty, "list": [1, null, {"a": nasty}]});
    });
    let mut all_null = serde_json::Map::new();
    for f in FIELDS {
        all_null.insert((*f).to_string(), Value::Null);
    }
    all_null.insert("raw".into(), Value::Null);
    all_null.insert("delivery_id".into(), Value::Null);

    vec![
        ("a cloud66 backup.verification.failed event", cloud66),
        ("a simplebackups error event", simplebackups),
        ("a centurylink FAILED event", centurylink_failed),
        ("a centurylink MISSING event", centurylink_missing),
        ("a simplebackups success event", success),
        ("a centurylink PARTIAL_SUCCESS event", partial),
        ("a generic event with few fields", generic),
        (
            "an event whose values hold quotes, markup and newlines",
            hostile,
        ),
        ("an event with every field null", Value::Object(all_null)),
    ]
}

// ---------------------------------------------------------------------------------
// Registries, escaping and helpers.
// ---------------------------------------------------------------------------------

fn new_registry(mode: Mode) -> Handlebars<'static> {
    let mut r = Handlebars::new();
    // Lenient at run time: a known-but-null field or a missing `raw.x` renders empty.
    // Names were checked at load time by `check_names`.
    r.set_strict_mode(false);
    match mode {
        Mode::Json => r.register_escape_fn(json_string_escape),
        Mode::Slack => r.register_escape_fn(slack_escape),
        Mode::Html => r.register_escape_fn(handlebars::html_escape),
        Mode::Plain => r.register_escape_fn(handlebars::no_escape),
    }
    register_helpers(&mut r, mode);
    r
}

/// JSON string escaping without the surrounding quotes.
pub fn json_string_escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or_default()
        .to_string()
}

/// What Slack requires escaped in message text: `&`, `<`, `>`.
pub fn slack_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

type ValueFn = fn(&[Value], &Helper<'_>, &Context) -> Value;

/// A helper computing a value; Handlebars escapes it in `{{…}}` (not in `{{{…}}}`)
/// and it composes in subexpressions.
struct ValueHelper(ValueFn);

impl HelperDef for ValueHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, handlebars::RenderError> {
        let args: Vec<Value> = h.params().iter().map(|p| p.value().clone()).collect();
        Ok(ScopedJson::Derived((self.0)(&args, h, ctx)))
    }
}

/// `{{json x}}`: a JSON literal, written as is in JSON templates (it *is* the JSON);
/// escaped like any value in text templates, so `{{json raw}}` in an HTML email is
/// still safe. `pretty=true` indents it.
struct JsonHelper {
    raw: bool,
}

impl HelperDef for JsonHelper {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let value = h.param(0).map_or(&Value::Null, |p| p.value());
        let pretty = h
            .hash_get("pretty")
            .is_some_and(|p| p.value().is_truthy(false));
        let text = if pretty {
            serde_json::to_string_pretty(value)
        } else {
            serde_json::to_string(value)
        }
        .unwrap_or_else(|_| "null".to_string());
        if self.raw || rc.is_disable_escape() {
            out.write(&text)?;
        } else {
            out.write(&(r.get_escape_fn())(&text))?;
        }
        Ok(())
    }
}

fn register_helpers(r: &mut Handlebars<'static>, mode: Mode) {
    let value_helpers: [(&str, ValueFn); 8] = [
        ("upper", |a, _, _| {
            Value::String(text_of(arg(a, 0)).to_uppercase())
        }),
        ("lower", |a, _, _| {
            Value::String(text_of(arg(a, 0)).to_lowercase())
        }),
        ("default", |a, _, _| helper_default(a)),
        ("eq", |a, _, _| Value::Bool(helper_eq(a))),
        ("bytes", |a, _, _| Value::String(format_bytes(arg(a, 0)))),
        ("date", |a, _, _| {
            let fmt = arg(a, 1).as_str().unwrap_or(DEFAULT_DATE_FORMAT);
            Value::String(format_date(arg(a, 0), fmt))
        }),
        ("emoji", |a, _, ctx| {
            let status = if a.is_empty() {
                ctx.data().get("status").unwrap_or(&Value::Null)
            } else {
                arg(a, 0)
            };
            Value::String(emoji(&text_of(status)).to_string())
        }),
        ("mrkdwn", |a, _, _| {
            Value::String(slack_escape(&text_of(arg(a, 0))))
        }),
    ];
    for (name, f) in value_helpers {
        r.register_helper(name, Box::new(ValueHelper(f)));
    }
    r.register_helper(
        "json",
        Box::new(JsonHelper {
            raw: mode == Mode::Json,
        }),
    );
}

fn arg(args: &[Value], i: usize) -> &Value {
    args.get(i).unwrap_or(&Value::Null)
}

/// A value as text: strings as they are, null as empty, anything else as JSON.
fn text_of(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// `{{default a b "n/a"}}`: the first argument that is neither null nor empty.
fn helper_default(args: &[Value]) -> Value {
    args.iter()
        .find(|v| match v {
            Value::Null => false,
            Value::String(s) => !s.is_empty(),
            _ => true,
        })
        .cloned()
        .unwrap_or(Value::Null)
}

/// `(eq a b)`: equal values; `(eq status "failure" "missing")` is true when the
/// first equals any of the others. A number equals its decimal string.
fn helper_eq(args: &[Value]) -> bool {
    let Some((first, rest)) = args.split_first() else {
        return false;
    };
    rest.iter().any(|other| {
        first == other || (is_scalar(first) && is_scalar(other) && text_of(first) == text_of(other))
    })
}

fn is_scalar(v: &Value) -> bool {
    matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

/// `{{bytes n}}`: `512 B`, `1.5 KiB`, `976.6 MiB` … up to TiB. Null renders empty;
/// anything that is not a non-negative number renders as it is.
pub fn format_bytes(v: &Value) -> String {
    let n = match v {
        Value::Null => return String::new(),
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let Some(n) = n.filter(|n| n.is_finite() && *n >= 0.0) else {
        return text_of(v);
    };
    if n < 1024.0 {
        return format!("{} B", n.round() as u64);
    }
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut value = n / 1024.0;
    let mut unit = 0;
    // Move up while the value would print as 1024.0 or more.
    while (value * 10.0).round() / 10.0 >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `{{date t "%Y-%m-%d %H:%M"}}`: `t` as RFC 3339, unix seconds (number or numeric
/// string) or `YYYY-MM-DD HH:MM:SS` read as UTC; formatted in UTC with chrono's
/// strftime syntax. Null renders empty; what cannot be read (or a bad format)
/// renders the input as it is.
pub fn format_date(v: &Value, fmt: &str) -> String {
    let Some(t) = parse_time(v) else {
        return text_of(v);
    };
    let mut out = String::new();
    match write!(out, "{}", t.format(fmt)) {
        Ok(()) => out,
        Err(_) => text_of(v),
    }
}

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::Number(n) => from_unix(n.as_f64()?),
        Value::String(s) => {
            let s = s.trim();
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
            {
                if let Ok(n) = s.parse::<f64>() {
                    return from_unix(n);
                }
            }
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Some(t.with_timezone(&Utc));
            }
            let naive = s
                .strip_suffix(" UTC")
                .or_else(|| s.strip_suffix('Z'))
                .unwrap_or(s);
            ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(naive, f).ok())
                .map(|t| t.and_utc())
        }
        _ => None,
    }
}

fn from_unix(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() || secs.abs() > 1e13 {
        return None;
    }
    let whole = secs.floor();
    let nanos = ((secs - whole) * 1e9).round().min(999_999_999.0) as u32;
    DateTime::from_timestamp(whole as i64, nanos)
}

/// `{{emoji status}}`: ✅ success, ❌ failure, ⚠️ partial, ⏰ missing (a backup that
/// did not happen on time), ❓ anything else. Without an argument, the event's own
/// status. Also reads the providers' own words (`error`, `FAILED`,
/// `PARTIAL_SUCCESS`, …), so `{{emoji raw.status}}` works too.
pub fn emoji(status: &str) -> &'static str {
    match status.trim().to_ascii_lowercase().as_str() {
        "success" | "succeeded" | "ok" | "verified" | "recovered" => "✅",
        "failure" | "failed" | "fail" | "error" => "❌",
        "partial" | "partial_success" | "warning" => "⚠️",
        "missing" | "missed" => "⏰",
        _ => "❓",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn defaults() -> Templates {
        Templates::load(Path::new("/nonexistent/hookrelay-templates")).expect("defaults load")
    }

    fn sample(what: &str) -> Value {
        sample_contexts()
            .into_iter()
            .find(|(w, _)| w.contains(what))
            .map(|(_, v)| v)
            .expect("sample exists")
    }

    fn render_text(t: &Templates, name: &str, ty: &str, ctx: &Value) -> String {
        match t.render_body(name, ty, ctx).expect("renders") {
            Body::Text(s) => s,
            Body::Json(v) => panic!("expected text, got {v}"),
        }
    }

    fn render_json(t: &Templates, name: &str, ty: &str, ctx: &Value) -> Value {
        match t.render_body(name, ty, ctx).expect("renders") {
            Body::Json(v) => v,
            Body::Text(s) => panic!("expected JSON, got {s}"),
        }
    }

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn inline(text: &str, ctx: &Value) -> String {
        let mut t = defaults();
        t.add_inline("k", text, "destinations.x.subject")
            .expect("valid");
        t.render_inline("k", ctx).unwrap()
    }

    // ---- helpers ----

    #[test]
    fn upper_and_lower() {
        let ctx = json!({"status": "failure", "n": 3, "nothing": null});
        assert_eq!(inline("{{upper status}}", &ctx), "FAILURE");
        assert_eq!(inline("{{lower \"ÀB\"}}", &ctx), "àb");
        assert_eq!(
            inline("{{upper raw.n}}|{{upper}}", &json!({"raw": {"n": 3}})),
            "3|"
        );
        assert_eq!(
            inline("[{{upper raw.nothing}}]", &json!({"raw": null})),
            "[]"
        );
    }

    #[test]
    fn default_takes_first_non_empty() {
        let ctx = json!({"stack": null, "server": "", "backup": "b"});
        assert_eq!(inline("{{default stack \"n/a\"}}", &ctx), "n/a");
        assert_eq!(inline("{{default stack server backup \"x\"}}", &ctx), "b");
        assert_eq!(inline("[{{default stack server}}]", &ctx), "[]");
        assert_eq!(inline("[{{default}}]", &ctx), "[]");
        assert_eq!(
            inline("{{default raw.n 1}}", &json!({"raw": {"n": 0}})),
            "0"
        );
    }

    #[test]
    fn eq_compares_and_never_fails() {
        let ctx = json!({"status": "failure", "size_bytes": 5});
        assert_eq!(
            inline("{{#if (eq status \"failure\")}}F{{else}}N{{/if}}", &ctx),
            "F"
        );
        assert_eq!(
            inline("{{#if (eq status \"success\")}}S{{else}}N{{/if}}", &ctx),
            "N"
        );
        assert_eq!(
            inline("{{#if (eq status \"success\" \"failure\")}}Y{{/if}}", &ctx),
            "Y"
        );
        assert_eq!(inline("{{#if (eq size_bytes \"5\")}}Y{{/if}}", &ctx), "Y");
        assert_eq!(inline("{{#if (eq status)}}Y{{else}}N{{/if}}", &ctx), "N");
        assert_eq!(inline("{{#if (eq)}}Y{{else}}N{{/if}}", &ctx), "N");
        assert_eq!(
            inline("{{#if (eq raw.a raw.b)}}Y{{/if}}", &json!({"raw": {}})),
            "Y"
        );
    }

    #[test]
    fn json_emits_literals() {
        let t = defaults();
        let ctx = json!({"stack": "a\"b", "size_bytes": 12, "raw": {"k": [1, null]}, "id": null});
        let mut t2 = t.clone();
        t2.add_inline(
            "k",
            "{{json stack}} {{json size_bytes}} {{json raw}} {{json id}} {{json}}",
            "k",
        )
        .unwrap();
        assert_eq!(
            t2.render_inline("k", &ctx).unwrap(),
            r#""a\"b" 12 {"k":[1,null]} null null"#
        );
        assert_eq!(
            inline("{{json raw pretty=true}}", &json!({"raw": {"a": 1}})),
            "{\n  \"a\": 1\n}"
        );
    }

    #[test]
    fn bytes_formats_binary_units() {
        assert_eq!(format_bytes(&json!(1024000000)), "976.6 MiB");
        assert_eq!(format_bytes(&json!(0)), "0 B");
        assert_eq!(format_bytes(&json!(1023)), "1023 B");
        assert_eq!(format_bytes(&json!(1024)), "1.0 KiB");
        assert_eq!(format_bytes(&json!(1536)), "1.5 KiB");
        assert_eq!(format_bytes(&json!(1048575)), "1.0 MiB");
        assert_eq!(format_bytes(&json!(5u64 * 1024 * 1024 * 1024)), "5.0 GiB");
        assert_eq!(format_bytes(&json!(3u64 << 40)), "3.0 TiB");
        assert_eq!(format_bytes(&json!(5000u64 << 40)), "5000.0 TiB");
        assert_eq!(format_bytes(&json!("2048")), "2.0 KiB");
        assert_eq!(format_bytes(&Value::Null), "");
        assert_eq!(format_bytes(&json!("lots")), "lots");
        assert_eq!(format_bytes(&json!(-5)), "-5");
        assert_eq!(format_bytes(&json!({"a": 1})), "{\"a\":1}");
        assert_eq!(inline("[{{bytes}}]", &json!({})), "[]");
    }

    #[test]
    fn date_reads_rfc3339_and_unix_seconds() {
        let f = "%Y-%m-%d %H:%M";
        assert_eq!(
            format_date(&json!("2025-09-04T18:37:59Z"), f),
            "2025-09-04 18:37"
        );
        assert_eq!(
            format_date(&json!("2025-09-04T20:37:59+02:00"), f),
            "2025-09-04 18:37"
        );
        assert_eq!(format_date(&json!(1757011079), f), "2025-09-04 18:37");
        assert_eq!(format_date(&json!("1757011079"), f), "2025-09-04 18:37");
        assert_eq!(format_date(&json!(1757011079.5), "%S%.3f"), "59.500");
        assert_eq!(
            format_date(&json!("2021-10-10 10:10:10"), f),
            "2021-10-10 10:10"
        );
        assert_eq!(
            format_date(&json!("2019-02-01 01:39:40 UTC"), f),
            "2019-02-01 01:39"
        );
        assert_eq!(
            format_date(&json!("2025-09-04T18:37:59Z"), DEFAULT_DATE_FORMAT),
            "2025-09-04 18:37 UTC"
        );
        assert_eq!(format_date(&Value::Null, f), "");
        assert_eq!(format_date(&json!("yesterday"), f), "yesterday");
        assert_eq!(format_date(&json!(1e300), f), "1e+300");
        assert_eq!(format_date(&json!([1]), f), "[1]");
        // A bad format never panics: the input comes back.
        assert_eq!(
            format_date(&json!("2025-09-04T18:37:59Z"), "%Q %"),
            "2025-09-04T18:37:59Z"
        );
        let ctx = json!({"occurred_at": "2025-09-04T18:37:59Z"});
        assert_eq!(inline("{{date occurred_at}}", &ctx), "2025-09-04 18:37 UTC");
        assert_eq!(inline("{{date occurred_at \"%H:%M\"}}", &ctx), "18:37");
        assert_eq!(
            inline("{{date occurred_at 42}}", &ctx),
            "2025-09-04 18:37 UTC"
        );
        assert_eq!(inline("[{{date}}]", &ctx), "[]");
    }

    #[test]
    fn emoji_by_status() {
        assert_eq!(emoji("success"), "✅");
        assert_eq!(emoji("failure"), "❌");
        assert_eq!(emoji("partial"), "⚠️");
        assert_eq!(emoji("missing"), "⏰");
        assert_eq!(emoji("unknown"), "❓");
        assert_eq!(emoji(""), "❓");
        assert_eq!(emoji("FAILED"), "❌");
        let ctx = json!({"status": "success"});
        assert_eq!(
            inline("{{emoji status}}{{emoji}}{{emoji 3}}", &ctx),
            "✅✅❓"
        );
    }

    #[test]
    fn helpers_survive_odd_arguments() {
        let ctx = json!({"raw": {"o": {"a": 1}, "l": [1, 2], "b": true, "n": null}});
        for h in HELPERS {
            for args in [
                "",
                " raw.o",
                " raw.l",
                " raw.b",
                " raw.n",
                " raw.o raw.l raw.b",
                " 1 2 3 4",
            ] {
                let text = format!("{{{{{h}{args}}}}}");
                let mut t = defaults();
                t.add_inline("k", &text, "k").unwrap();
                t.render_inline("k", &ctx).unwrap();
            }
        }
    }

    // ---- escaping ----

    const NASTY: &str = "quote \" back\\slash <b>bold</b> & amp\nnew line\ttab ✅ 🚀";

    fn nasty_ctx() -> Value {
        let mut e = Event {
            source: NASTY.into(),
            provider: "generic".into(),
            status: Status::Failure,
            received_at: "2025-09-04T18:38:02Z".into(),
            raw: json!({"text": NASTY}),
            ..Default::default()
        };
        for f in [
            &mut e.event,
            &mut e.stack,
            &mut e.environment,
            &mut e.server,
            &mut e.account,
            &mut e.backup,
            &mut e.database,
            &mut e.id,
            &mut e.message,
        ] {
            *f = Some(NASTY.into());
        }
        e.template_context()
    }

    fn strings_in(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| strings_in(x, out)),
            Value::Object(m) => m.values().for_each(|x| strings_in(x, out)),
            _ => {}
        }
    }

    #[test]
    fn json_defaults_stay_valid_and_round_trip() {
        let t = defaults();
        let ctx = nasty_ctx();
        for ty in ["teams", "webhook"] {
            let v = render_json(&t, "default", ty, &ctx);
            let mut strings = Vec::new();
            strings_in(&v, &mut strings);
            assert!(
                strings.iter().any(|s| s == NASTY),
                "{ty}: the exact value should appear in {v:#}"
            );
        }
        let v = render_json(&t, "default", "webhook", &ctx);
        assert_eq!(v["message"], NASTY);
        assert_eq!(v["raw"]["text"], NASTY);
        // Slack mrkdwn text gets & < > escaped for Slack, on top of valid JSON.
        let v = render_json(&t, "default", "slack", &ctx);
        let mut strings = Vec::new();
        strings_in(&v, &mut strings);
        assert!(strings.iter().any(|s| s == &slack_escape(NASTY)), "{v:#}");
        assert!(!strings.iter().any(|s| s.contains("<b>")), "{v:#}");
        // Even a value a helper passes through untouched (an unreadable date).
        let mut hostile = ctx.clone();
        hostile["occurred_at"] = json!("<!channel>");
        let v = render_json(&t, "default", "slack", &hostile);
        assert!(!v.to_string().contains("<!channel>"), "{v:#}");
    }

    #[test]
    fn text_escaping_follows_the_destination() {
        let dir = dir_with(&[
            ("x.slack.hbs", "{{message}}|{{{message}}}"),
            ("x.email.hbs", "{{message}}"),
            ("x.email.html.hbs", "<p>{{message}}</p>|{{{message}}}"),
            ("x.console.hbs", "{{message}}"),
            ("x.teams.hbs", "{{message}}"),
            (
                "x.webhook.json.hbs",
                "{\"m\": \"{{message}}\", \"r\": {{{json message}}}}",
            ),
        ]);
        let t = Templates::load(dir.path()).unwrap();
        let ctx = json!({"message": "a & <b> \"q\" 'x'"});
        assert_eq!(
            render_text(&t, "x", "slack", &ctx),
            "a &amp; &lt;b&gt; \"q\" 'x'|a & <b> \"q\" 'x'"
        );
        assert_eq!(render_text(&t, "x", "email", &ctx), "a & <b> \"q\" 'x'");
        assert_eq!(render_text(&t, "x", "console", &ctx), "a & <b> \"q\" 'x'");
        assert_eq!(render_text(&t, "x", "teams", &ctx), "a & <b> \"q\" 'x'");
        let html = t.render_html("x", "email", &ctx).unwrap().unwrap();
        assert!(
            html.starts_with("<p>a &amp; &lt;b&gt; &quot;q&quot;"),
            "{html}"
        );
        assert!(html.ends_with("|a & <b> \"q\" 'x'"), "{html}");
        let v = render_json(&t, "x", "webhook", &ctx);
        assert_eq!(
            v,
            json!({"m": "a & <b> \"q\" 'x'", "r": "a & <b> \"q\" 'x'"})
        );
    }

    #[test]
    fn json_helper_is_escaped_in_html() {
        let dir = dir_with(&[("x.email.hbs", "t"), ("x.email.html.hbs", "{{json raw}}")]);
        let t = Templates::load(dir.path()).unwrap();
        let html = t
            .render_html("x", "email", &json!({"raw": {"a": "<b>"}}))
            .unwrap();
        assert_eq!(
            html.as_deref(),
            Some("{&quot;a&quot;:&quot;&lt;b&gt;&quot;}")
        );
    }

    // ---- strict names ----

    #[test]
    fn misspelled_field_is_a_load_error_with_line() {
        let dir = dir_with(&[("bad.slack.hbs", "line one\n{{status}}\nstack: {{stak}}\n")]);
        let errs = Templates::load(dir.path()).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].place.ends_with("bad.slack.hbs:3"), "{errs:?}");
        assert!(
            errs[0].message.contains("unknown field \"stak\""),
            "{errs:?}"
        );
        assert!(
            errs[0].message.contains("did you mean \"stack\""),
            "{errs:?}"
        );
    }

    #[test]
    fn names_are_checked_inside_blocks_and_helpers() {
        for (text, bad) in [
            ("{{#if stak}}x{{/if}}", "stak"),
            ("{{upper sever}}", "sever"),
            ("{{#if (eq stauts \"failure\")}}x{{/if}}", "stauts"),
            ("{{#if status}}{{else}}{{envronment}}{{/if}}", "envronment"),
            ("{{default stack nope}}", "nope"),
        ] {
            let dir = dir_with(&[("n.console.hbs", text)]);
            let errs = Templates::load(dir.path()).unwrap_err();
            assert!(
                errs.iter()
                    .any(|e| e.message.contains(&format!("\"{bad}\""))),
                "{text}: {errs:?}"
            );
        }
        let dir = dir_with(&[("n.console.hbs", "{{uper status}}")]);
        let errs = Templates::load(dir.path()).unwrap_err();
        assert!(
            errs[0].message.contains("unknown helper \"uper\""),
            "{errs:?}"
        );
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let dir = dir_with(&[("s.email.hbs", "hello\n{{#if status}}\nnever closed\n")]);
        let errs = Templates::load(dir.path()).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        let place = &errs[0].place;
        assert!(
            place.contains("s.email.hbs:")
                && place.rsplit(':').next().unwrap().parse::<usize>().is_ok(),
            "{errs:?}"
        );
    }

    #[test]
    fn every_bad_file_is_reported() {
        let dir = dir_with(&[
            ("a.slack.hbs", "{{stak}}"),
            ("b.teams.json.hbs", "{\"text\": \"{{#if x}}\"}"),
            ("c.pager.hbs", "{{status}}"),
            ("notes.txt", "{{ignored}}"),
        ]);
        let errs = Templates::load(dir.path()).unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].place.ends_with("a.slack.hbs:1"));
        assert!(errs[1].place.contains("b.teams.json.hbs"));
        assert!(errs[2].place.ends_with("c.pager.hbs"));
        assert!(errs[2].message.contains("not a template name"), "{errs:?}");
    }

    #[test]
    fn invalid_json_output_is_a_load_error() {
        let dir = dir_with(&[("j.webhook.json.hbs", "{\"text\": \"{{{message}}}\"}")]);
        let errs = Templates::load(dir.path()).unwrap_err();
        assert!(errs[0].place.ends_with("j.webhook.json.hbs"), "{errs:?}");
        assert!(errs[0].message.contains("valid JSON"), "{errs:?}");
    }

    #[test]
    fn raw_paths_and_null_fields_are_fine() {
        let dir = dir_with(&[(
            "r.console.hbs",
            "{{raw.anything.deep}}|{{stack}}|{{#each raw.items}}{{name}}{{/each}}|{{@root.status}}",
        )]);
        let t = Templates::load(dir.path()).unwrap();
        let ctx = sample("simplebackups error");
        assert_eq!(render_text(&t, "r", "console", &ctx), "|||failure");
        let ctx =
            json!({"stack": "s", "status": "x", "raw": {"items": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(render_text(&t, "r", "console", &ctx), "|s|ab|x");
    }

    #[test]
    fn inline_templates_are_checked() {
        let mut t = defaults();
        t.add_inline("subject", DEFAULT_SUBJECT, "destinations.mail.subject")
            .unwrap();
        assert_eq!(
            t.render_inline("subject", &sample("cloud66")).unwrap(),
            "[FAILURE] cloud66 backup.verification.failed: myapp_production"
        );
        let e = t
            .add_inline("chan", "#backups-{{stak}}", "destinations.s.channel")
            .unwrap_err();
        assert_eq!(e.place, "destinations.s.channel");
        assert!(e.message.contains("unknown field \"stak\""), "{e:?}");
        let e = t
            .add_inline("x", "{{#if}}", "routes[0].channel")
            .unwrap_err();
        assert_eq!(e.place, "routes[0].channel");
        assert!(t.render_inline("chan", &json!({})).is_err());
    }

    // ---- override and fallback ----

    #[test]
    fn dir_overrides_embedded_and_falls_back_to_default() {
        let dir = dir_with(&[
            ("default.console.hbs", "custom {{status}}"),
            ("backup_failed.slack.hbs", "failed {{backup}}"),
        ]);
        let t = Templates::load(dir.path()).unwrap();
        let ctx = sample("cloud66");
        assert_eq!(
            render_text(&t, "default", "console", &ctx),
            "custom failure"
        );
        assert_eq!(
            render_text(&t, "backup_failed", "slack", &ctx),
            "failed myapp_production"
        );
        // No teams template for backup_failed: default's.
        let v = render_json(&t, "backup_failed", "teams", &ctx);
        assert_eq!(v["type"], "message");
        assert!(t.has_name("backup_failed"));
        assert!(t.has_name("default"));
        assert!(!t.has_name("nope"));
        // Email: backup_failed has no email text, so default's HTML part.
        assert!(t
            .render_html("backup_failed", "email", &ctx)
            .unwrap()
            .is_some());
        assert!(t.render_body("x", "pager", &ctx).is_err());
    }

    #[test]
    fn a_text_override_replaces_the_embedded_json_body() {
        // The default folder name, so places look like the embedded ones.
        let dir = dir_with(&[("default.slack.hbs", "{{emoji}} {{backup}}")]);
        let t = Templates::load(dir.path()).unwrap();
        let ctx = sample("cloud66");
        assert_eq!(
            render_text(&t, "default", "slack", &ctx),
            "❌ myapp_production"
        );
        assert_eq!(render_json(&t, "default", "teams", &ctx)["type"], "message");
    }

    #[test]
    fn email_html_belongs_to_the_text_template() {
        let dir = dir_with(&[("plain.email.hbs", "just text")]);
        let t = Templates::load(dir.path()).unwrap();
        let ctx = sample("cloud66");
        assert_eq!(render_text(&t, "plain", "email", &ctx), "just text");
        assert_eq!(t.render_html("plain", "email", &ctx).unwrap(), None);
    }

    // ---- the defaults read well ----

    #[test]
    fn defaults_render_for_every_sample() {
        let t = defaults();
        for (what, ctx) in sample_contexts() {
            for ty in crate::destinations::type_names() {
                t.render_body("default", ty, &ctx)
                    .unwrap_or_else(|e| panic!("{ty} for {what}: {e}"));
            }
            t.render_html("default", "email", &ctx).unwrap().unwrap();
        }
    }

    #[test]
    fn defaults_wording() {
        let t = defaults();
        let c66 = sample("cloud66");
        let slack = render_json(&t, "default", "slack", &c66);
        assert_eq!(
            slack["text"],
            "❌ Backup verification failed: myapp_production (postgresql) on my-production-app / production"
        );
        let console = render_text(&t, "default", "console", &c66);
        assert!(console.starts_with("❌ [CRITICAL] Backup verification failed: myapp_production (postgresql) on my-production-app / production: Cloud66 gave no reason for the failure. Verification result: \"Backup verified successfully\"; Backup result: \"Backup completed successfully\"\n"), "{console}");
        assert!(
            console.contains("976.6 MiB") && console.contains("2025-09-04 18:37 UTC"),
            "{console}"
        );

        let sb = sample("simplebackups error");
        let slack = render_json(&t, "default", "slack", &sb);
        assert_eq!(
            slack["text"],
            "❌ Backup failed: Acme Project on Acme Server"
        );
        let email = render_text(&t, "default", "email", &sb);
        assert!(!email.contains("Stack"), "{email}");
        assert!(email.contains("Server:       Acme Server\n"), "{email}");

        let missing = sample("MISSING");
        let teams = render_json(&t, "default", "teams", &missing);
        let title = &teams["attachments"][0]["content"]["body"][0];
        assert_eq!(
            title["text"],
            "⏰ Backup missed: TestAccountPolicyName20181228013921 on testServerId20181228013921"
        );
        assert_eq!(title["color"], "Attention");
        // A missed backup's time is when it was expected.
        let facts = teams["attachments"][0]["content"]["body"][1]["facts"].to_string();
        assert!(
            facts.contains(r#"{"title":"Expected at","value":"2019-02-01 20:00 UTC"}"#),
            "{facts}"
        );
        assert!(!facts.contains(r#""When""#), "{facts}");
        let console = render_text(&t, "default", "console", &missing);
        assert!(
            console.contains(" · expected at 2019-02-01 20:00 UTC"),
            "{console}"
        );
        let email = render_text(&t, "default", "email", &missing);
        assert!(
            email.contains("\nExpected at:  2019-02-01 20:00 UTC\n"),
            "{email}"
        );
        assert_eq!(teams["attachments"][0]["content"]["version"], "1.4");
        assert_eq!(teams["attachments"][0]["contentUrl"], Value::Null);
    }

    #[test]
    fn templates_can_be_shared_across_workers() {
        fn shared<T: Send + Sync + Clone>() {}
        shared::<Templates>();
    }

    #[test]
    #[ignore = "prints every default for every sample, for reading"]
    fn show_defaults() {
        let t = defaults();
        for (what, ctx) in sample_contexts() {
            println!("==================== {what}");
            for ty in crate::destinations::type_names() {
                match t.render_body("default", ty, &ctx).unwrap() {
                    Body::Json(v) => println!("--- {ty}\n{v:#}"),
                    Body::Text(s) => println!("--- {ty}\n{s}"),
                }
            }
            println!(
                "--- html\n{}",
                t.render_html("default", "email", &ctx).unwrap().unwrap()
            );
        }
    }
}
