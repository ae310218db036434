//! Settings: `relay.yaml` plus `HOOKRELAY__SECTION__KEY` environment overrides,
//! `${VAR}` / `${VAR:-default}` / `${VAR:+word}` expansion in every string, and
//! typed, strict parsing (unknown keys are errors).
//!
//! Loading never stops at the first mistake: each source, destination and route is
//! parsed on its own so `hookrelay check` can list every error, each naming its key
//! (`routes[2].to[0]: …`). Values that came from the environment are wrapped in
//! [`Secret`] where they may hold credentials, so no `Debug` print or error shows them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// Where `-c` points when neither the flag nor `$HOOKRELAY_CONFIG` is given.
pub const DEFAULT_CONFIG: &str = "relay.yaml";

/// One configuration mistake, with the place it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// A key path such as `routes[2].to[0]`, or a file such as `templates/x.hbs:4`.
    pub place: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(place: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            place: place.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.place.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.place, self.message)
        }
    }
}

/// Every mistake found in one config file (and the templates it names).
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    pub file: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "{}: {} error{}",
            self.file,
            n,
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// A string that may hold a credential. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `secret: x` or, for key rotation, `secret: [old, new]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(Secret),
    Many(Vec<Secret>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<Secret> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

pub use crate::destinations::{DestinationCommon, DestinationConfig};

/// The whole of `relay.yaml`, typed.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub server: ServerSettings,
    pub storage: StorageSettings,
    pub templates: TemplateSettings,
    pub admin: AdminSettings,
    pub delivery: DeliverySettings,
    pub sources: BTreeMap<String, SourceConfig>,
    pub destinations: BTreeMap<String, DestinationConfig>,
    pub routes: Vec<RouteConfig>,
    pub watch: WatchSettings,
    /// `digest` (SPEC §10): scheduled summaries, compiled and checked by `digest`.
    pub digest: Vec<DigestConfig>,
    /// The config file. Relative paths in it (`templates.dir`, the SQLite file of
    /// `storage.url`) are resolved against its folder, not the current directory,
    /// so `hookrelay -c /etc/hookrelay/relay.yaml` works from anywhere.
    pub file: PathBuf,
    /// Destinations the file declares but that could not be parsed: routes naming
    /// them are not also reported as naming an unknown destination.
    pub invalid_destinations: BTreeSet<String>,
}

impl Settings {
    /// The folder relative paths are resolved against: the config file's, absolute.
    pub fn base_dir(&self) -> PathBuf {
        base_dir(&self.file)
    }
}

/// The absolute folder of `file` (the current directory for a bare file name).
fn base_dir(file: &Path) -> PathBuf {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// `p` itself when absolute, else `p` under `base`.
fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Resolves the relative paths of `s` against the config file's folder: the
/// templates folder and a `sqlite://` file. Other URLs are left as they are.
fn resolve_paths(s: &mut Settings) {
    let base = s.base_dir();
    s.templates.dir = resolve(&base, &s.templates.dir);
    let url = s.storage.url.expose();
    if let Some(path) = url.strip_prefix("sqlite://") {
        if !path.is_empty() && path != ":memory:" && !Path::new(path).is_absolute() {
            let abs = resolve(&base, Path::new(path));
            s.storage.url = Secret::new(format!("sqlite://{}", abs.display()));
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub listen: String,
    #[serde(deserialize_with = "de_usize")]
    pub max_body_bytes: usize,
    /// Time a client has to send a request's headers, and again its body; a
    /// slower one gets 408 and the connection is closed.
    #[serde(deserialize_with = "de_duration")]
    pub read_timeout: Duration,
    /// Bytes of bodies not yet authenticated (signature not yet checked, or an
    /// open source) held at once, all connections together; past it, 503.
    #[serde(deserialize_with = "de_usize")]
    pub max_unauthenticated_bytes: usize,
    /// Open connections at once; more wait to be accepted. Also capped below the
    /// process's file-descriptor limit, so storage and deliveries keep theirs.
    #[serde(deserialize_with = "de_usize")]
    pub max_connections: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "0.0.0.0:8080".into(),
            max_body_bytes: 1024 * 1024,
            read_timeout: Duration::from_secs(10),
            max_unauthenticated_bytes: 16 * 1024 * 1024,
            max_connections: 4096,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    pub url: Secret,
    /// Finished events older than this are deleted; zero keeps everything.
    #[serde(deserialize_with = "de_duration")]
    pub retention: Duration,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            url: Secret::new("sqlite://data/hookrelay.db"),
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplateSettings {
    pub dir: PathBuf,
}

impl Default for TemplateSettings {
    fn default() -> Self {
        TemplateSettings {
            dir: PathBuf::from("templates"),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    #[serde(deserialize_with = "de_opt_secret")]
    pub token: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    #[serde(deserialize_with = "de_durations")]
    pub retry_schedule: Vec<Duration>,
    #[serde(deserialize_with = "de_duration")]
    pub max_age: Duration,
    /// Concurrent sends per destination.
    #[serde(deserialize_with = "de_usize")]
    pub workers: usize,
    /// How long a claimed delivery is this process's to send; after that another
    /// process (or this one) sends it again.
    #[serde(deserialize_with = "de_duration")]
    pub lease: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            retry_schedule: [5, 30, 120, 600, 1800, 3600]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            max_age: Duration::from_secs(24 * 3600),
            workers: 8,
            lease: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Cloud66,
    Simplebackups,
    Centurylink,
    Generic,
}

impl SourceKind {
    /// Every kind, as `kind:` and the `provider` field spell them.
    pub const NAMES: &'static [&'static str] =
        &["cloud66", "simplebackups", "centurylink", "generic"];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Cloud66 => "cloud66",
            SourceKind::Simplebackups => "simplebackups",
            SourceKind::Centurylink => "centurylink",
            SourceKind::Generic => "generic",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacConfig {
    pub header: String,
    pub secret: OneOrMany,
    #[serde(default)]
    pub prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub kind: SourceKind,
    #[serde(default)]
    pub token: Option<OneOrMany>,
    /// SimpleBackups' `SB-Signature` HMAC secret.
    #[serde(default)]
    pub secret: Option<OneOrMany>,
    #[serde(default)]
    pub hmac: Option<HmacConfig>,
    /// `kind: generic`: normalized field name -> JSON Pointer into the payload.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    #[serde(default = "default_dedup", deserialize_with = "de_duration")]
    pub dedup_window: Duration,
}

fn default_dedup() -> Duration {
    Duration::from_secs(600)
}

/// `N/s`, `N/min`, `N/h`: at most `count` sends in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per: Duration,
}

impl RateLimit {
    pub fn parse(s: &str) -> Result<RateLimit, String> {
        let bad = || format!("invalid rate limit {s:?}: expected N/s, N/min or N/h");
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(bad());
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(RateLimit { count, per })
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RateLimit::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Field name (or `raw.<path>`) -> string, list, `{regex: …}` or `{not: …}`.
    /// Compiled and checked by `routing`.
    #[serde(default, rename = "match")]
    pub matches: Option<Map<String, Value>>,
    #[serde(deserialize_with = "de_string_list")]
    pub to: Vec<String>,
    #[serde(default)]
    pub template: Option<String>,
    /// Overrides the Slack bot destination's `channel` for this route.
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default, rename = "continue", deserialize_with = "de_bool")]
    pub continue_: bool,
    /// Holds the route's events for `wait` and sends them as one message
    /// (SPEC §10); compiled and checked by `group`.
    #[serde(default)]
    pub group: Option<GroupConfig>,
}

/// A route's `group: {wait, by, max}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// How long the first event of a group waits for others.
    #[serde(default = "default_group_wait", deserialize_with = "de_duration")]
    pub wait: Duration,
    /// Events with the same values of these fields share a group (none: one group
    /// per route).
    #[serde(default, deserialize_with = "de_string_list")]
    pub by: Vec<String>,
    /// A group this full goes out at once.
    #[serde(default = "default_group_max", deserialize_with = "de_usize")]
    pub max: usize,
}

fn default_group_wait() -> Duration {
    Duration::from_secs(30)
}

fn default_group_max() -> usize {
    50
}

/// One `digest` entry: when, where, with which templates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestConfig {
    pub cron: String,
    #[serde(default)]
    pub tz: Option<String>,
    #[serde(deserialize_with = "de_string_list")]
    pub to: Vec<String>,
    #[serde(default = "default_digest_template")]
    pub template: String,
}

fn default_digest_template() -> String {
    "digest".into()
}

/// `watch` (SPEC §9): what a subject is and when a backup is overdue. The
/// `expect` rules are compiled and checked by `watch`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchSettings {
    /// The fields whose non-empty values, joined by `/`, name a subject.
    #[serde(deserialize_with = "de_string_list")]
    pub by: Vec<String>,
    /// A `backup.recovered` event after the first success that ends a bad run.
    #[serde(deserialize_with = "de_bool")]
    pub recovered: bool,
    pub expect: Vec<ExpectConfig>,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            by: ["source", "stack", "server", "backup"]
                .map(String::from)
                .to_vec(),
            recovered: true,
            expect: Vec::new(),
        }
    }
}

/// One `watch.expect` rule: `every` (+ `grace`) or `cron` (+ `tz`, `grace`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectConfig {
    /// Which subjects, with the keys and values of a route's `match`.
    #[serde(default, rename = "match")]
    pub matches: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub every: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub grace: Duration,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub remind: Option<Duration>,
    #[serde(default)]
    pub cron: Option<String>,
    #[serde(default)]
    pub tz: Option<String>,
}

pub(crate) fn de_opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => de_duration(v).map(Some).map_err(serde::de::Error::custom),
    }
}

// ---------------------------------------------------------------------------
// Loading

/// Reads `path` (YAML), applies `HOOKRELAY__…` overrides from the process
/// environment, expands `${VAR}` and parses everything, collecting every error.
pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    load_with_env(path, &env)
}

/// [`load`] with an explicit environment (tests use this instead of `set_var`).
pub fn load_with_env(
    path: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Settings, ConfigErrors> {
    let (settings, errors) = load_partial(path, env)?;
    if errors.is_empty() {
        Ok(settings)
    } else {
        Err(ConfigErrors {
            file: path.display().to_string(),
            errors,
        })
    }
}

/// Everything that could be read from `path`, and every error found on the way.
/// The settings are partial when there are errors (a destination that does not
/// parse is left out and named in `invalid_destinations`), so the later checks
/// (routes, templates) can still run and report theirs in the same pass.
/// `Err` only when the file cannot be read or is not YAML at all.
pub fn load_partial(
    path: &Path,
    env: &BTreeMap<String, String>,
) -> Result<(Settings, Vec<ConfigError>), ConfigErrors> {
    let file = path.display().to_string();
    let fail = |errors: Vec<ConfigError>| ConfigErrors {
        file: file.clone(),
        errors,
    };
    if !path.exists() {
        return Err(fail(vec![ConfigError::new("", "file not found")]));
    }
    let overrides = config::Environment::with_prefix("HOOKRELAY")
        .prefix_separator("__")
        .separator("__")
        .source(Some(
            env.iter()
                .filter(|(k, _)| k.starts_with("HOOKRELAY__"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ));
    let built = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Yaml))
        .add_source(overrides)
        .build()
        .map_err(|e| fail(vec![ConfigError::new("", clean_config_error(&e))]))?;
    let mut tree: Value = built
        .try_deserialize()
        .map_err(|e| fail(vec![ConfigError::new("", clean_config_error(&e))]))?;
    let mut errors = Vec::new();
    expand_tree(&mut tree, "", env, &mut errors);
    // A value whose `${VAR}` could not be expanded is reported once, as that: not
    // again as, say, "is not a valid URL" for the unexpanded text.
    let unexpanded: BTreeSet<String> = errors.iter().map(|e| e.place.clone()).collect();
    let first = errors.len();
    let mut settings = parse_tree(tree, path, &mut errors);
    let later = errors.split_off(first);
    errors.extend(later.into_iter().filter(|e| !unexpanded.contains(&e.place)));
    resolve_paths(&mut settings);
    Ok((settings, errors))
}

fn clean_config_error(e: &config::ConfigError) -> String {
    // The config crate already names the file for YAML syntax errors; keep its text
    // but never its Debug form.
    e.to_string()
}

const TOP_KEYS: &[&str] = &[
    "server",
    "storage",
    "templates",
    "admin",
    "delivery",
    "sources",
    "destinations",
    "routes",
    "watch",
    "digest",
];

fn parse_tree(tree: Value, path: &Path, errors: &mut Vec<ConfigError>) -> Settings {
    let mut s = Settings {
        file: path.to_path_buf(),
        ..Default::default()
    };
    let mut top = match tree {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        _ => {
            errors.push(ConfigError::new("", "expected a mapping at the top level"));
            return s;
        }
    };
    for key in top.keys() {
        if !TOP_KEYS.contains(&key.as_str()) {
            errors.push(ConfigError::new(
                key.clone(),
                format!("unknown key; expected one of {}", TOP_KEYS.join(", ")),
            ));
        }
    }
    if let Some(v) = top.remove("server") {
        if let Some(x) = parse_at("server", v, errors) {
            s.server = x;
        }
    }
    if let Some(v) = top.remove("storage") {
        if let Some(x) = parse_at("storage", v, errors) {
            s.storage = x;
        }
    }
    if let Some(v) = top.remove("templates") {
        if let Some(x) = parse_at("templates", v, errors) {
            s.templates = x;
        }
    }
    if let Some(v) = top.remove("admin") {
        if let Some(x) = parse_at("admin", v, errors) {
            s.admin = x;
        }
    }
    if let Some(v) = top.remove("delivery") {
        if let Some(x) = parse_at::<DeliverySettings>("delivery", v, errors) {
            if x.retry_schedule.is_empty() {
                errors.push(ConfigError::new(
                    "delivery.retry_schedule",
                    "must list at least one duration",
                ));
            }
            if x.workers == 0 {
                errors.push(ConfigError::new("delivery.workers", "must be at least 1"));
            }
            s.delivery = x;
        }
    }
    if let Some(v) = top.remove("sources") {
        for (name, item) in mapping_at("sources", v, errors) {
            let place = format!("sources.{name}");
            if let Some(src) = parse_at::<SourceConfig>(&place, item, errors) {
                check_source(&place, &src, errors);
                s.sources.insert(name, src);
            }
        }
    }
    if let Some(v) = top.remove("destinations") {
        for (name, item) in mapping_at("destinations", v, errors) {
            let place = format!("destinations.{name}");
            match crate::destinations::parse_config(&place, item, errors) {
                Some(d) => {
                    s.destinations.insert(name, d);
                }
                None => {
                    s.invalid_destinations.insert(name);
                }
            }
        }
    }
    match top.remove("routes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                let place = format!("routes[{i}]");
                let lenient = lenient_route(&item);
                // A route that does not parse is kept from its readable parts, so
                // its destinations and template are still checked and the routes
                // after it keep their numbers.
                s.routes
                    .push(parse_at::<RouteConfig>(&place, item, errors).unwrap_or(lenient));
            }
        }
        Some(_) => errors.push(ConfigError::new("routes", "expected a list of routes")),
    }
    if let Some(v) = top.remove("watch") {
        if let Some(x) = parse_at("watch", v, errors) {
            s.watch = x;
        }
    }
    match top.remove("digest") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                if let Some(d) = parse_at::<DigestConfig>(&format!("digest[{i}]"), item, errors) {
                    s.digest.push(d);
                }
            }
        }
        Some(_) => errors.push(ConfigError::new(
            "digest",
            "expected a list, e.g. - { cron: \"0 8 * * *\", to: [ops-slack] }",
        )),
    }
    s
}

/// The parts of a route that have the right shape, for a route that as a whole
/// does not parse (its errors are already reported).
fn lenient_route(v: &Value) -> RouteConfig {
    let get = |k: &str| v.get(k);
    let text = |k: &str| get(k).and_then(Value::as_str).map(str::to_string);
    RouteConfig {
        matches: get("match").and_then(Value::as_object).cloned(),
        to: match get("to") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            // Not reported again as "needs at least one destination".
            _ => Vec::new(),
        },
        template: text("template"),
        channel: text("channel"),
        continue_: false,
        group: None,
    }
}

fn mapping_at(place: &str, v: Value, errors: &mut Vec<ConfigError>) -> Vec<(String, Value)> {
    match v {
        Value::Object(m) => m.into_iter().collect(),
        Value::Null => Vec::new(),
        _ => {
            errors.push(ConfigError::new(place, "expected a mapping of names"));
            Vec::new()
        }
    }
}

/// Deserializes `v` as `T`, naming the exact key of any error below `place`.
pub(crate) fn parse_at<T: DeserializeOwned>(
    place: &str,
    v: Value,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    // A bare `key:` in YAML is null; treat it as an empty mapping so defaults apply.
    let v = if v.is_null() {
        Value::Object(Map::new())
    } else {
        v
    };
    match serde_path_to_error::deserialize::<_, T>(v) {
        Ok(x) => Some(x),
        Err(e) => {
            let inner = e.path().to_string();
            let at = if inner == "." || inner.is_empty() {
                place.to_string()
            } else {
                format!("{place}.{inner}")
            };
            errors.push(ConfigError::new(
                at,
                tidy_serde_message(&e.into_inner().to_string()),
            ));
            None
        }
    }
}

/// serde's messages end with " at line 0 column 0" for `Value` input; drop that.
fn tidy_serde_message(msg: &str) -> String {
    let msg = match msg.find(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    msg.replace("unknown field", "unknown key")
}

fn check_source(place: &str, s: &SourceConfig, errors: &mut Vec<ConfigError>) {
    if s.secret.is_some() && s.kind != SourceKind::Simplebackups {
        errors.push(ConfigError::new(
            format!("{place}.secret"),
            "only for kind simplebackups (SB-Signature); use `hmac` for other signatures",
        ));
    }
    if !s.fields.is_empty() && s.kind != SourceKind::Generic {
        errors.push(ConfigError::new(
            format!("{place}.fields"),
            "only for kind generic",
        ));
    }
    for (field, pointer) in &s.fields {
        if !crate::providers::GENERIC_FIELDS.contains(&field.as_str()) {
            errors.push(ConfigError::new(
                format!("{place}.fields.{field}"),
                format!(
                    "unknown field; expected one of {}",
                    crate::providers::GENERIC_FIELDS.join(", ")
                ),
            ));
        }
        if !pointer.is_empty() && !pointer.starts_with('/') {
            errors.push(ConfigError::new(
                format!("{place}.fields.{field}"),
                format!("{pointer:?} is not a JSON Pointer (it must start with /)"),
            ));
        }
    }
    for (key, list) in [("token", &s.token), ("secret", &s.secret)] {
        if let Some(list) = list {
            if list
                .clone()
                .into_vec()
                .iter()
                .any(|x| x.expose().is_empty())
            {
                errors.push(ConfigError::new(
                    format!("{place}.{key}"),
                    "must not be empty",
                ));
            }
        }
    }
    if let Some(h) = &s.hmac {
        if h.secret
            .clone()
            .into_vec()
            .iter()
            .any(|x| x.expose().is_empty())
        {
            errors.push(ConfigError::new(
                format!("{place}.hmac.secret"),
                "must not be empty",
            ));
        }
        if actix_web::http::header::HeaderName::try_from(h.header.as_str()).is_err() {
            errors.push(ConfigError::new(
                format!("{place}.hmac.header"),
                format!("{:?} is not a valid header name", h.header),
            ));
        }
    }
}

// ---------------------------------------------------------------------------
// ${VAR} expansion

/// Expands `${VAR}`, `${VAR:-default}` and `${VAR:+word}` in every string of the
/// tree; `$$` is a literal `$`. An unset variable without a default is an error
/// naming the key, never the value.
fn expand_tree(
    v: &mut Value,
    place: &str,
    env: &BTreeMap<String, String>,
    errors: &mut Vec<ConfigError>,
) {
    match v {
        Value::String(s) => match expand(s, env) {
            Ok(x) => *s = x,
            Err(msg) => errors.push(ConfigError::new(place, msg)),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_tree(item, &format!("{place}[{i}]"), env, errors);
            }
        }
        Value::Object(m) => {
            for (k, item) in m.iter_mut() {
                let p = if place.is_empty() {
                    k.clone()
                } else {
                    format!("{place}.{k}")
                };
                expand_tree(item, &p, env, errors);
            }
        }
        _ => {}
    }
}

/// Expands one string; see [`expand_tree`].
pub fn expand(s: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    if !s.contains('$') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unclosed ${ in value".to_string())?;
            let expr = &body[..end];
            out.push_str(&expand_one(expr, env)?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn expand_one(expr: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let (name, op, word) = if let Some((n, w)) = expr.split_once(":-") {
        (n, Some('-'), w)
    } else if let Some((n, w)) = expr.split_once(":+") {
        (n, Some('+'), w)
    } else {
        (expr, None, "")
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("invalid variable reference ${{{expr}}}"));
    }
    let val = env.get(name).filter(|v| !v.is_empty());
    match (op, val) {
        (None, Some(v)) => Ok(v.clone()),
        (None, None) => Err(format!("environment variable {name} is not set")),
        (Some('-'), Some(v)) => Ok(v.clone()),
        (Some('-'), None) => Ok(word.to_string()),
        (Some(_), Some(_)) => Ok(word.to_string()),
        (Some(_), None) => Ok(String::new()),
    }
}

// ---------------------------------------------------------------------------
// Lenient scalars: values from the environment arrive as strings.

fn de_usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| serde::de::Error::custom(format!("expected a whole number, got {n}"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("expected a whole number, got {s:?}"))),
        other => Err(serde::de::Error::custom(format!(
            "expected a whole number, got {other}"
        ))),
    }
}

pub(crate) fn de_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::Null => Ok(false),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" | "" => Ok(false),
            _ => Err(serde::de::Error::custom(format!(
                "expected true or false, got {s:?}"
            ))),
        },
        other => Err(serde::de::Error::custom(format!(
            "expected true or false, got {other}"
        ))),
    }
}

/// `30s`, `10m`, `2h`, `1h 30m`, `500ms`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    humantime::parse_duration(t)
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 30s, 10m, 2h"))
}

pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => parse_duration(&s).map_err(serde::de::Error::custom),
        Value::Number(n) if n.as_u64().is_some() => {
            Ok(Duration::from_secs(n.as_u64().unwrap_or(0)))
        }
        other => Err(serde::de::Error::custom(format!(
            "expected a duration such as 30s, got {other}"
        ))),
    }
}

fn de_durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let items = match Value::deserialize(d)? {
        Value::Array(a) => a,
        // From the environment: "5s,30s,2m".
        Value::String(s) => s
            .split(',')
            .map(|x| Value::String(x.trim().to_string()))
            .collect(),
        other => {
            return Err(serde::de::Error::custom(format!(
                "expected a list of durations, got {other}"
            )))
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => {
                parse_duration(&s).map_err(|m| serde::de::Error::custom(format!("[{i}]: {m}")))
            }
            Value::Number(n) if n.as_u64().is_some() => {
                Ok(Duration::from_secs(n.as_u64().unwrap_or(0)))
            }
            other => Err(serde::de::Error::custom(format!(
                "[{i}]: expected a duration, got {other}"
            ))),
        })
        .collect()
}

pub(crate) fn de_opt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?
        .filter(|s| !s.is_empty())
        .map(Secret))
}

pub(crate) fn de_string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(vec![s]),
        Value::Array(a) => a
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(serde::de::Error::custom(format!(
                    "expected a string, got {other}"
                ))),
            })
            .collect(),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or a list of strings, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expands_variables_defaults_and_alternates() {
        let e = env(&[("A", "x"), ("EMPTY", "")]);
        assert_eq!(expand("${A}-${B:-d}", &e).unwrap(), "x-d");
        assert_eq!(expand("${A:+on}|${B:+on}", &e).unwrap(), "on|");
        assert_eq!(expand("$$HOME ${EMPTY:-z}", &e).unwrap(), "$HOME z");
        assert_eq!(
            expand("${MISSING}", &e).unwrap_err(),
            "environment variable MISSING is not set"
        );
        assert!(expand("${A", &e).is_err());
    }

    #[test]
    fn rate_limits_parse() {
        assert_eq!(
            RateLimit::parse("1/s").unwrap(),
            RateLimit {
                count: 1,
                per: Duration::from_secs(1)
            }
        );
        assert_eq!(
            RateLimit::parse("30/min").unwrap().per,
            Duration::from_secs(60)
        );
        assert!(RateLimit::parse("0/s").is_err());
        assert!(RateLimit::parse("fast").is_err());
    }

    fn load_str(yaml: &str, e: &[(&str, &str)]) -> Result<Settings, ConfigErrors> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("relay.yaml");
        std::fs::write(&p, yaml).unwrap();
        load_with_env(&p, &env(e))
    }

    #[test]
    fn every_error_is_reported_with_its_key() {
        let err = load_str(
            r#"
server: { listen: "127.0.0.1:0", colour: blue }
sources:
  a: { kind: cloud66, token: "${NOPE}" }
  b: { kind: nosuch }
destinations:
  d: { type: slak, webhook_url: "http://x" }
  e: { type: webhook, url: "http://x", extra: 1 }
routes:
  - { to: [d], continue: maybe }
"#,
            &[],
        )
        .unwrap_err();
        let lines: Vec<String> = err.errors.iter().map(|e| e.to_string()).collect();
        let want = [
            "server.colour: unknown key `colour`",
            "sources.a.token: environment variable NOPE is not set",
            "sources.b.kind: unknown variant `nosuch`",
            "destinations.d.type: unknown type \"slak\"",
            "destinations.e.extra: unknown key `extra`",
            "routes[0].continue: expected true or false",
        ];
        for w in want {
            assert!(
                lines.iter().any(|l| l.starts_with(w)),
                "missing {w:?} in {lines:#?}"
            );
        }
    }

    #[test]
    fn environment_overrides_and_secrets_stay_hidden() {
        let s = load_str(
            "admin: { token: \"${ADMIN}\" }\nserver: { max_body_bytes: 10 }\n",
            &[
                ("ADMIN", "hunter2"),
                ("HOOKRELAY__SERVER__MAX_BODY_BYTES", "2048"),
            ],
        )
        .unwrap();
        assert_eq!(s.server.max_body_bytes, 2048);
        assert_eq!(s.admin.token.as_ref().unwrap().expose(), "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn destinations_can_be_switched_on_by_a_variable() {
        let yaml = r#"
destinations:
  s: { type: slack, enabled: "${SLACK_URL:+true}", webhook_url: "${SLACK_URL:-}" }
"#;
        let off = load_str(yaml, &[]).unwrap();
        assert!(!off.destinations["s"].common.enabled);
        let on = load_str(yaml, &[("SLACK_URL", "https://hooks.example/x")]).unwrap();
        assert!(on.destinations["s"].common.enabled);
        assert_eq!(on.destinations["s"].rate_limit().unwrap().count, 1);
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("relay.yaml");
        std::fs::write(
            &p,
            "storage: { url: \"sqlite://data/h.db\" }\ntemplates: { dir: tpl }\n",
        )
        .unwrap();
        let s = load_with_env(&p, &env(&[])).unwrap();
        assert_eq!(s.templates.dir, dir.path().join("tpl"));
        assert_eq!(
            s.storage.url.expose(),
            format!("sqlite://{}", dir.path().join("data/h.db").display())
        );
        std::fs::write(
            &p,
            "storage: { url: \"sqlite:///var/lib/h.db\" }\ntemplates: { dir: /srv/tpl }\n",
        )
        .unwrap();
        let s = load_with_env(&p, &env(&[])).unwrap();
        assert_eq!(s.templates.dir, Path::new("/srv/tpl"));
        assert_eq!(s.storage.url.expose(), "sqlite:///var/lib/h.db");
        // The defaults are relative too.
        std::fs::write(&p, "").unwrap();
        let s = load_with_env(&p, &env(&[])).unwrap();
        assert_eq!(s.templates.dir, dir.path().join("templates"));
        assert!(s
            .storage
            .url
            .expose()
            .ends_with(&format!("{}/data/hookrelay.db", dir.path().display())));
    }
}
