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

mod de;
mod env;
mod load;
#[cfg(test)]
mod tests;

pub use de::*;
pub use env::*;
pub use load::*;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OneOrMany {
    One(Secret),
    Many(Vec<Secret>),
}

/// An unquoted number or `true` is refused in words: YAML reads `token: 0123` as
/// the number 123, so taking it as text could change the credential.
const NOT_TEXT: &str =
    "write the credential in quotes (e.g. \"12345\") so it is read as text, exactly as written";

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(Secret::new(v)))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(Secret(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<OneOrMany, E> {
                Err(E::custom(format!("is the number {v}; {NOT_TEXT}")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<OneOrMany, E> {
                Err(E::custom(format!("is the number {v}; {NOT_TEXT}")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<OneOrMany, E> {
                Err(E::custom(format!("is the number {v}; {NOT_TEXT}")))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<OneOrMany, E> {
                Err(E::custom(format!("is {v}, not text; {NOT_TEXT}")))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(one) = seq.next_element::<OneOrMany>()? {
                    match one {
                        OneOrMany::One(s) => out.push(s),
                        OneOrMany::Many(_) => return Err(serde::de::Error::custom(
                            "a list inside the list; give the credentials as one list of strings",
                        )),
                    }
                }
                Ok(OneOrMany::Many(out))
            }
        }
        d.deserialize_any(V)
    }
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

    /// What this config should change although it works (a retired endpoint,
    /// routes that open PagerDuty incidents and never resolve them): printed by
    /// `check`, logged by `serve` at start and on reload; never a reason to
    /// refuse it.
    pub fn warnings(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        for (name, d) in &self.destinations {
            d.kind.warnings(&format!("destinations.{name}"), &mut out);
        }
        crate::destinations::pagerduty::route_warnings(self, &mut out);
        crate::routing::watch_warnings(self, &mut out);
        out
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
            // Sends to one destination at once. A drain is bound by round trips
            // and wake-ups per send, not the destination: 32 at once gathers four
            // times as many records per commit and claims four times as many rows
            // per read as 8 (bench/README.md, 2026-11-30).
            workers: 32,
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
    /// Whether this provider's events never carry `field` (CenturyLink and
    /// SimpleBackups know no stack or environment).
    pub fn never_sets(self, field: &str) -> bool {
        matches!(self, SourceKind::Centurylink | SourceKind::Simplebackups)
            && matches!(field, "stack" | "environment")
    }

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
