//! Backup watch (SPEC §9): subjects, their states, deadlines and the synthetic
//! `backup.missing` / `backup.recovered` events.
//!
//! The pure part lives here: compiling `watch` (with the places of its errors),
//! the subject key of an event, the state transition one outcome makes
//! ([`apply`]), deadline maths for `every` and `cron` rules (DST as Debian cron
//! does it), and the synthetic events' wording. The storage backends call
//! [`apply`] inside the transaction that stores the event, so a subject's state
//! never disagrees with the log; the scanner ([`run`]) claims due deadlines
//! through the store, which stores each `backup.missing` with its deliveries in
//! the same transaction as the claim.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::watch as signal;

use crate::config::{ConfigError, ExpectConfig, SourceKind, WatchSettings};
use crate::event::{Event, Status, FIELDS};
use crate::routing::Cond;
use crate::startup::Shared;
use crate::store::{ms_to_rfc3339, NewEvent, Recovery, WatchUpdate};

/// The fields of the latest provider event a subject keeps, to name it in
/// `/api/backups` and to fill its synthetic events.
pub const SUBJECT_FIELDS: &[&str] = &[
    "source",
    "provider",
    "stack",
    "environment",
    "server",
    "account",
    "backup",
    "database",
];

/// The keys of an item of `GET /api/backups` and of a digest's lists.
pub const SUBJECT_JSON_FIELDS: &[&str] = &[
    "subject",
    "state",
    "source",
    "stack",
    "environment",
    "server",
    "account",
    "backup",
    "last_event_at",
    "last_success_at",
    "failures",
    "down_since",
    "next_deadline",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectState {
    Ok,
    Failing,
    Missing,
    New,
}

impl SubjectState {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectState::Ok => "ok",
            SubjectState::Failing => "failing",
            SubjectState::Missing => "missing",
            SubjectState::New => "new",
        }
    }

    pub fn parse(s: &str) -> Option<SubjectState> {
        Some(match s {
            "ok" => SubjectState::Ok,
            "failing" => SubjectState::Failing,
            "missing" => SubjectState::Missing,
            "new" => SubjectState::New,
            _ => return None,
        })
    }

    /// Worst first: missing, failing, new, ok.
    pub fn rank(self) -> u8 {
        match self {
            SubjectState::Missing => 0,
            SubjectState::Failing => 1,
            SubjectState::New => 2,
            SubjectState::Ok => 3,
        }
    }

    pub const ALL: [SubjectState; 4] = [
        SubjectState::Ok,
        SubjectState::Failing,
        SubjectState::Missing,
        SubjectState::New,
    ];
}

/// One subject as stored. Times are unix milliseconds of the store's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    pub key: String,
    pub state: SubjectState,
    pub failures: u32,
    pub last_event_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub down_since: Option<i64>,
    pub next_deadline: Option<i64>,
    /// The fingerprint of the `expect` rule its deadline was reckoned with.
    pub rule: Option<String>,
    /// [`SUBJECT_FIELDS`] of its latest provider event. Shared: a subject is
    /// copied on every webhook (from the cache, into the new state), its fields
    /// only change when an event brings new ones.
    pub fields: Arc<Map<String, Value>>,
}

impl Subject {
    fn fresh(key: &str) -> Subject {
        Subject {
            key: key.to_string(),
            state: SubjectState::New,
            failures: 0,
            last_event_at: None,
            last_success_at: None,
            down_since: None,
            next_deadline: None,
            rule: None,
            fields: Arc::default(),
        }
    }

    /// A subject an `expect` rule watches before any event of it arrived: new,
    /// with the rule's first deadline from `now` and the rule's own fields.
    pub fn pinned(key: &str, fields: &Map<String, Value>, rule: &Rule, now: i64) -> Subject {
        Subject {
            next_deadline: Some(rule.deadline_after(now)),
            rule: Some(rule.fingerprint.clone()),
            fields: Arc::new(fields.clone()),
            ..Subject::fresh(key)
        }
    }

    /// An item of `GET /api/backups` (its keys: [`SUBJECT_JSON_FIELDS`]).
    pub fn to_json(&self) -> Value {
        let t = |v: Option<i64>| {
            v.map(|ms| Value::String(ms_to_rfc3339(ms)))
                .unwrap_or(Value::Null)
        };
        let f = |k: &str| self.fields.get(k).cloned().unwrap_or(Value::Null);
        serde_json::json!({
            "subject": self.key,
            "state": self.state,
            "source": f("source"),
            "stack": f("stack"),
            "environment": f("environment"),
            "server": f("server"),
            "account": f("account"),
            "backup": f("backup"),
            "last_event_at": t(self.last_event_at),
            "last_success_at": t(self.last_success_at),
            "failures": self.failures,
            "down_since": t(self.down_since),
            "next_deadline": t(self.next_deadline),
        })
    }

    /// An event carrying the subject's fields, for matching `expect` rules.
    pub fn as_event(&self) -> Event {
        let s = |k: &str| {
            self.fields
                .get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Event {
            source: s("source").unwrap_or_default(),
            provider: s("provider").unwrap_or_default(),
            stack: s("stack"),
            environment: s("environment"),
            server: s("server"),
            account: s("account"),
            backup: s("backup"),
            database: s("database"),
            subject: Some(self.key.clone()),
            ..Default::default()
        }
    }
}

/// Sorts subjects worst first (missing, failing, new, ok), the longest down first,
/// then by key.
pub fn sort_worst_first(subjects: &mut [Subject]) {
    subjects.sort_by(|a, b| {
        (a.state.rank(), a.down_since.unwrap_or(i64::MAX), &a.key).cmp(&(
            b.state.rank(),
            b.down_since.unwrap_or(i64::MAX),
            &b.key,
        ))
    });
}

/// When a success is due.
#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Cron {
        cron: Box<croner::Cron>,
        text: String,
        tz: chrono_tz::Tz,
    },
}

/// A compiled `watch.expect` rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub index: usize,
    pub conditions: Vec<(String, Cond)>,
    pub schedule: Schedule,
    pub grace: Duration,
    pub remind: Option<Duration>,
    /// Its settings as text: a reload recomputes the deadlines of the subjects
    /// whose rule's fingerprint changed, and only those.
    pub fingerprint: String,
    /// The subject it names when its `match` gives a plain value for every `by`
    /// field: (key, fields).
    pub pinned: Option<(String, Map<String, Value>)>,
    /// The part of its fingerprint that names its `match` (after its place).
    pub match_key: String,
}

/// A field a stored subject keeps, or its key.
fn kept(field: &str) -> bool {
    field == "subject" || SUBJECT_FIELDS.contains(&field)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Rule {
    pub fn matches(&self, e: &Event) -> bool {
        self.conditions
            .iter()
            .all(|(field, cond)| cond.holds(e.field(field).as_deref()))
    }

    /// Whether its conditions on the fields a subject keeps (and its key) hold;
    /// the others are not looked at.
    fn holds_on_kept(&self, e: &Event) -> bool {
        self.conditions
            .iter()
            .filter(|(field, _)| kept(field))
            .all(|(field, cond)| cond.holds(e.field(field).as_deref()))
    }

    /// Whether every condition is on a field a subject keeps (or its key): only
    /// then can a subject be judged on it outright (`{not: staging}` on a
    /// `raw.` field would hold on the payload a subject does not have).
    fn only_on_kept(&self) -> bool {
        self.conditions.iter().all(|(field, _)| kept(field))
    }

    /// The deadline for a success, counting from `base` (unix ms): `every` +
    /// `grace` later, or the next cron run after it + `grace`.
    pub fn deadline_after(&self, base: i64) -> i64 {
        let due = match &self.schedule {
            Schedule::Every(every) => base.saturating_add(ms(*every)),
            Schedule::Cron { cron, tz, .. } => {
                next_run(cron, *tz, base).unwrap_or(i64::MAX - ms(self.grace))
            }
        };
        due.saturating_add(ms(self.grace))
    }

    /// "every 24h (+1h grace)" / "by each run of `0 2 * * *` (Europe/Berlin) + 2h grace".
    pub fn describe(&self) -> String {
        let grace = if self.grace.is_zero() {
            String::new()
        } else {
            format!(" (+{} grace)", human(self.grace))
        };
        match &self.schedule {
            Schedule::Every(every) => format!("expected every {}{grace}", human(*every)),
            Schedule::Cron { text, tz, .. } => {
                format!("expected after each run of \"{text}\" ({tz}){grace}")
            }
        }
    }
}

/// A duration as people write it in the config: `24h`, `30m`, `2s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s > 0 && s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// The first run of `cron` strictly after `after` (unix ms), in `tz`, as Debian
/// cron runs it across DST changes. A fixed-time job (no `*` in its minute or
/// hour field, as `30 2 * * *`): a run whose local time falls in a skipped hour
/// happens at once when the clock jumps (the first valid instant after the gap);
/// a run in a repeated hour happens once, at its first occurrence. A job with
/// `*` in its minute or hour (`15 * * * *`, `*/10 2 * * *`, `@hourly`) runs by
/// the clock as it reads after the change: runs in a skipped hour are not made
/// up, and the repeated hour's runs happen again.
pub fn next_run(cron: &croner::Cron, tz: chrono_tz::Tz, after: i64) -> Option<i64> {
    if cron.pattern.minutes.from_wildcard || cron.pattern.hours.from_wildcard {
        next_wildcard_run(cron, tz, after)
    } else {
        next_fixed_run(cron, tz, after)
    }
}

/// [`next_run`] for a fixed-time job.
fn next_fixed_run(cron: &croner::Cron, tz: chrono_tz::Tz, after: i64) -> Option<i64> {
    let after_utc = DateTime::<Utc>::from_timestamp_millis(after)?;
    // Wall-clock times are searched as if they were UTC (no gaps, no repeats),
    // then placed in the zone.
    let mut local = after_utc.with_timezone(&tz).naive_local();
    for _ in 0..1000 {
        let as_utc = Utc.from_utc_datetime(&local);
        let next = cron.find_next_occurrence(&as_utc, false).ok()?.naive_utc();
        let at = place(tz, next)?;
        if at > after {
            return Some(at);
        }
        // The earlier of a repeated hour's two instants (already past), or a
        // gap's run moved before `after`: look further.
        local = next;
    }
    None
}

/// [`next_run`] for a job with `*` in its minute or hour: every instant whose
/// wall-clock time matches (none in a gap, both in a repeated hour), the
/// earliest one after `after`.
fn next_wildcard_run(cron: &croner::Cron, tz: chrono_tz::Tz, after: i64) -> Option<i64> {
    use chrono::{LocalResult, Offset};
    let after_utc = DateTime::<Utc>::from_timestamp_millis(after)?;
    let offset = |t: DateTime<Utc>| {
        tz.offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc()
    };
    // When the clock goes back soon, wall-clock times up to the step before the
    // present one come again: start the search that far back.
    let back = (offset(after_utc) - offset(after_utc + chrono::Duration::days(1))).max(0);
    let mut local =
        after_utc.with_timezone(&tz).naive_local() - chrono::Duration::seconds(i64::from(back));
    let mut best: Option<i64> = None;
    for _ in 0..100_000 {
        let as_utc = Utc.from_utc_datetime(&local);
        let Ok(next) = cron.find_next_occurrence(&as_utc, false) else {
            return best;
        };
        let next = next.naive_utc();
        let instants = match tz.from_local_datetime(&next) {
            LocalResult::Single(t) => vec![t.timestamp_millis()],
            LocalResult::Ambiguous(a, b) => vec![a.timestamp_millis(), b.timestamp_millis()],
            // In the skipped hour: not made up.
            LocalResult::None => Vec::new(),
        };
        // Later wall-clock times start no earlier: nothing can beat `best`.
        if let (Some(b), Some(first)) = (best, instants.iter().min()) {
            if *first > b {
                return best;
            }
        }
        for t in instants.into_iter().filter(|t| *t > after) {
            best = Some(best.map_or(t, |b| b.min(t)));
        }
        local = next;
    }
    best
}

/// A wall-clock time in `tz` as unix ms: the first of two in a repeated hour; in
/// a skipped hour, the instant the clock jumps to (the gap's end).
fn place(tz: chrono_tz::Tz, local: NaiveDateTime) -> Option<i64> {
    use chrono::LocalResult;
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.timestamp_millis()),
        LocalResult::Ambiguous(a, _) => Some(a.timestamp_millis()),
        // Gaps are whole minutes (at most a few hours): the first valid minute.
        LocalResult::None => (1..=24 * 60).find_map(|m| {
            match tz.from_local_datetime(&(local + chrono::Duration::minutes(m))) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.timestamp_millis()),
                LocalResult::None => None,
            }
        }),
    }
}

/// `watch`, compiled.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    pub by: Vec<String>,
    pub recovered: bool,
    pub rules: Vec<Arc<Rule>>,
    /// The configured sources (none known: a config that did not compile).
    pub sources: Option<BTreeSet<String>>,
}

impl Watch {
    /// Compiles `watch`, naming the place of every error
    /// (`watch.expect[1].cron: …`).
    ///
    /// `sources` (name → kind) let a rule pin its subject without naming a `by`
    /// field its source's provider never sets: a CenturyLink or SimpleBackups
    /// backup has no `stack`, so `{source: ctl, server: DB01, backup: nightly}`
    /// names one subject under the default `by`.
    pub fn compile(
        s: &WatchSettings,
        sources: &BTreeMap<String, SourceFields>,
    ) -> Result<Watch, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if s.by.is_empty() {
            errors.push(ConfigError::new("watch.by", "needs at least one field"));
        }
        for (i, f) in s.by.iter().enumerate() {
            if !f.starts_with("raw.") && !FIELDS.contains(&f.as_str()) {
                errors.push(ConfigError::new(
                    format!("watch.by[{i}]"),
                    format!("unknown field {f:?}; use a normalized field or raw.<path>"),
                ));
            }
        }
        let mut rules = Vec::new();
        for (i, x) in s.expect.iter().enumerate() {
            if let Some(r) = compile_rule(i, x, &s.by, sources, &mut errors) {
                rules.push(Arc::new(r));
            }
        }
        if errors.is_empty() {
            Ok(Watch {
                by: s.by.clone(),
                recovered: s.recovered,
                rules,
                sources: Some(sources.keys().cloned().collect()),
            })
        } else {
            Err(errors)
        }
    }

    /// The subject key: the `by` fields' non-empty values joined by `/`.
    pub fn subject_key(&self, e: &Event) -> String {
        let parts: Vec<String> = self
            .by
            .iter()
            .filter_map(|f| e.field(f))
            .filter(|v| !v.is_empty())
            .collect();
        parts.join("/")
    }

    /// The first `expect` rule whose `match` the event meets.
    pub fn rule_for(&self, e: &Event) -> Option<&Arc<Rule>> {
        self.rules.iter().find(|r| r.matches(e))
    }

    /// The `expect` rule watching a stored subject under this config.
    ///
    /// A subject keeps only [`SUBJECT_FIELDS`] of its latest event, so a rule
    /// that matches on anything else (`raw.…`, `event`, `status`) cannot be
    /// judged from it again: the rule chosen when that event was stored (the same
    /// place and `match`, its schedule, grace or remind possibly changed since)
    /// stands while its conditions on the kept fields still hold. A rule that
    /// meets the kept fields outright and comes first still wins, as it would
    /// have at ingest.
    ///
    /// None for a subject no event can reach any more (see [`Self::reaches`]).
    pub fn rule_of(&self, s: &Subject) -> Option<&Arc<Rule>> {
        if !self.reaches(s) {
            return None;
        }
        let e = s.as_event();
        // Recognised by its `match` alone (the first rule with it), so rules
        // added or removed before it do not lose it.
        let chosen = |r: &Rule| {
            s.rule
                .as_deref()
                .and_then(|f| f.split_once('|'))
                .is_some_and(|(_, rest)| rest.starts_with(&r.match_key))
        };
        self.rules
            .iter()
            .find(|r| (r.only_on_kept() && r.matches(&e)) || (chosen(r) && r.holds_on_kept(&e)))
    }

    /// Whether events can still arrive under the subject's key: its source is
    /// configured, and its kept fields give its key under the current `by`. A
    /// subject left behind when `by` changed, or its source was renamed or
    /// removed, is not watched: its backup reports under another key, or cannot
    /// report at all. (A `by` naming a field subjects do not keep, `raw.…`, is
    /// taken as reaching.)
    pub fn reaches(&self, s: &Subject) -> bool {
        let source = s.fields.get("source").and_then(Value::as_str);
        if let (Some(known), Some(source)) = (&self.sources, source) {
            if !known.contains(source) {
                return false;
            }
        }
        if !self.by.iter().all(|f| SUBJECT_FIELDS.contains(&f.as_str())) {
            return true;
        }
        self.subject_key(&s.as_event()) == s.key
    }
}

fn compile_rule(
    i: usize,
    x: &ExpectConfig,
    by: &[String],
    sources: &BTreeMap<String, SourceFields>,
    errors: &mut Vec<ConfigError>,
) -> Option<Rule> {
    let place = format!("watch.expect[{i}]");
    let before = errors.len();
    let mut conditions = Vec::new();
    let mut plain: Map<String, Value> = Map::new();
    for (field, v) in x.matches.iter().flatten() {
        let fplace = format!("{place}.match.{field}");
        if !field.starts_with("raw.") && !FIELDS.contains(&field.as_str()) {
            errors.push(ConfigError::new(
                fplace,
                format!("unknown field {field:?}; use a normalized field or raw.<path>"),
            ));
            continue;
        }
        if let Some(c) = Cond::compile(&fplace, v, errors) {
            // Checked as a route's are: a value its field never takes (a source
            // not configured, `status: failed`) would watch nothing, silently.
            if let Some(allowed) = crate::routing::enumerated(field) {
                crate::routing::check_values(&fplace, field, allowed, &c, errors);
            } else if field == "source" && !sources.is_empty() {
                let names: Vec<&str> = sources.keys().map(String::as_str).collect();
                crate::routing::check_values(&fplace, "source", &names, &c, errors);
            }
            if let (Value::String(_) | Value::Number(_) | Value::Bool(_), Some(s)) =
                (v, crate::event::scalar_string(v))
            {
                plain.insert(field.clone(), Value::String(s));
            }
            conditions.push((field.clone(), c));
        }
    }
    let tz = match x.tz.as_deref() {
        None => chrono_tz::UTC,
        Some(name) => {
            match chrono_tz::Tz::from_str(name.trim()) {
                Ok(tz) => tz,
                Err(_) => {
                    errors.push(ConfigError::new(
                    format!("{place}.tz"),
                    format!("unknown time zone {name:?}; expected a name such as UTC or Europe/Berlin"),
                ));
                    chrono_tz::UTC
                }
            }
        }
    };
    let schedule = match (&x.every, &x.cron) {
        (Some(_), Some(_)) => {
            errors.push(ConfigError::new(
                &place,
                "give either `every` or `cron`, not both",
            ));
            None
        }
        (None, None) => {
            errors.push(ConfigError::new(
                &place,
                "needs `every` (e.g. every: 24h) or `cron` (e.g. cron: \"0 2 * * *\")",
            ));
            None
        }
        (Some(every), None) => {
            if every.is_zero() {
                errors.push(ConfigError::new(
                    format!("{place}.every"),
                    "must be more than 0s",
                ));
            }
            if x.tz.is_some() {
                errors.push(ConfigError::new(
                    format!("{place}.tz"),
                    "only goes with `cron`",
                ));
            }
            Some(Schedule::Every(*every))
        }
        (None, Some(text)) => match croner::Cron::from_str(text.trim()) {
            Ok(cron) => Some(Schedule::Cron {
                cron: Box::new(cron),
                text: text.trim().to_string(),
                tz,
            }),
            Err(e) => {
                errors.push(ConfigError::new(
                    format!("{place}.cron"),
                    format!("cannot read {text:?} as a cron expression: {e}"),
                ));
                None
            }
        },
    };
    if x.remind.is_some_and(|r| r.is_zero()) {
        errors.push(ConfigError::new(
            format!("{place}.remind"),
            "must be more than 0s",
        ));
    }
    if errors.len() > before {
        return None;
    }
    let source = plain
        .get("source")
        .and_then(Value::as_str)
        .and_then(|name| sources.get(name));
    let never_set = |f: &str| source.is_some_and(|s| s.never_sets(f));
    let pinned = by
        .iter()
        .all(|f| plain.contains_key(f) || never_set(f))
        .then(|| {
            let values: Vec<String> = by
                .iter()
                .filter_map(|f| plain.get(f).and_then(Value::as_str))
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .collect();
            let fields = plain
                .iter()
                .filter(|(k, _)| SUBJECT_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (values.join("/"), fields)
        });
    let match_key = format!(
        "{:?}|",
        x.matches
            .as_ref()
            .map(|m| serde_json::to_string(m).unwrap_or_default()),
    );
    Some(Rule {
        index: i,
        conditions,
        schedule: schedule?,
        grace: x.grace,
        remind: x.remind,
        fingerprint: format!(
            "{i}|{match_key}{:?}|{:?}|{:?}|{:?}|{:?}",
            x.every, x.grace, x.remind, x.cron, x.tz
        ),
        pinned,
        match_key,
    })
}

/// What one outcome did to its subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub subject: Subject,
    /// The event's backup-watch fields: failures (this event included), the
    /// previous success, when the current bad run began.
    pub failures: u32,
    pub last_success_at: Option<i64>,
    pub down_since: Option<i64>,
    /// A success that ended a bad run: (how many failures and misses, since when).
    pub recovered: Option<(u32, Option<i64>)>,
}

/// The state transition one outcome makes (SPEC §9's table), at `now` (unix ms,
/// the store's clock). `fields`: the event's subject fields (none for hookrelay's
/// own events, which keep the subject's). `rule`: the `expect` rule watching it.
/// `claimed`: this is the `backup.missing` of a claimed deadline (then the next
/// deadline is the reminder, if any).
pub fn apply(
    prev: Option<&Subject>,
    key: &str,
    fields: Option<&Arc<Map<String, Value>>>,
    status: Status,
    now: i64,
    rule: Option<&Rule>,
    claimed: bool,
) -> Applied {
    let first = prev.is_none();
    let mut s = prev.cloned().unwrap_or_else(|| Subject::fresh(key));
    // A provider's event: hookrelay's own keep the subject's fields and times.
    if let Some(f) = fields {
        s.fields = Arc::clone(f);
        s.last_event_at = Some(now);
    }
    let previous_success = s.last_success_at;
    let mut recovered = None;
    let fingerprint = rule.map(|r| r.fingerprint.clone());
    let rule_changed = !first && s.rule != fingerprint;
    match status {
        Status::Success | Status::Recovered => {
            if matches!(s.state, SubjectState::Failing | SubjectState::Missing) && s.failures > 0 {
                recovered = Some((s.failures, s.down_since));
            }
            s.state = SubjectState::Ok;
            s.failures = 0;
            s.down_since = None;
            s.last_success_at = Some(now);
            s.next_deadline = rule.map(|r| r.deadline_after(now));
        }
        Status::Failure | Status::Partial | Status::Missing => {
            s.state = if status == Status::Missing {
                SubjectState::Missing
            } else {
                SubjectState::Failing
            };
            s.failures = s.failures.saturating_add(1);
            s.down_since.get_or_insert(now);
            if claimed {
                s.next_deadline = rule
                    .and_then(|r| r.remind)
                    .map(|r| now.saturating_add(ms(r)));
            } else if first || rule_changed {
                s.next_deadline = rule.map(|r| r.deadline_after(s.last_success_at.unwrap_or(now)));
            }
        }
        // An unknown never changes another state.
        Status::Unknown => {
            if first || rule_changed {
                s.next_deadline = rule.map(|r| r.deadline_after(s.last_success_at.unwrap_or(now)));
            }
        }
    }
    s.rule = fingerprint;
    Applied {
        failures: s.failures,
        last_success_at: previous_success,
        down_since: s.down_since,
        recovered,
        subject: s,
    }
}

/// The subject `e` belongs to, its fields and rule, for the store to update in
/// the event's transaction; the event gets its backup-watch fields from `prev`
/// (the subject as read before routing).
pub fn prepare(watch: &Watch, e: &mut Event, prev: Option<&Subject>, now: i64) -> WatchUpdate {
    let key = watch.subject_key(e);
    let rule = watch.rule_for(e).cloned();
    // The subject's own map when nothing changed: shared, not copied, down to the
    // store's write (which then leaves the fields as they are).
    let fresh = subject_fields(e);
    let fields = match prev {
        Some(p) if *p.fields == fresh => Arc::clone(&p.fields),
        _ => Arc::new(fresh),
    };
    let applied = apply(
        prev,
        &key,
        Some(&fields),
        e.status,
        now,
        rule.as_deref(),
        false,
    );
    set_fields(e, &key, &applied);
    WatchUpdate {
        key,
        fields: Some(fields),
        rule,
        at: Some(now),
        claim: None,
        recovered: None,
    }
}

/// Reads the event's subject, sets the event's backup-watch fields and says what
/// the store is to do to the subject. A success (with `recovered` on) carries how
/// to build its `backup.recovered` (routed like any event): whether it ends a bad
/// run is decided in the store's transaction, on the subject as it is there.
pub async fn subject_for(
    relay: &Arc<crate::relay::Relay>,
    store: &dyn crate::store::Store,
    e: &mut Event,
) -> crate::store::Result<WatchUpdate> {
    let key = relay.watch.subject_key(e);
    let prev = store.get_subject(&key).await?;
    // The subject's times are the events' own `received_at`, so an event's
    // `last_success_at` is exactly the previous success's `received_at`.
    let now = chrono::DateTime::parse_from_rfc3339(&e.received_at)
        .map(|t| t.timestamp_millis())
        .unwrap_or_else(|_| crate::store::now_ms());
    let mut update = prepare(&relay.watch, e, prev.as_ref(), now);
    if relay.watch.recovered && e.status == Status::Success {
        let success = subject_part(e);
        let relay = Arc::clone(relay);
        update.recovered = Some(Recovery::new(move |failures, down_since, last_success| {
            let mut r = recovered_event(&success, failures, down_since, now);
            r.last_success_at = last_success.map(ms_to_rfc3339);
            let (routed, deliveries, groups) = relay.plan_grouped(&r);
            let mut new = NewEvent::new(
                &mut r,
                None,
                String::new(),
                Duration::ZERO,
                routed,
                deliveries,
            )?;
            new.groups = groups;
            Ok(new)
        }));
    }
    Ok(update)
}

/// Sets the event's backup-watch fields.
pub fn set_fields(e: &mut Event, key: &str, a: &Applied) {
    e.subject = Some(key.to_string());
    e.failures = a.failures;
    e.last_success_at = a.last_success_at.map(ms_to_rfc3339);
    e.down_since = a.down_since.map(ms_to_rfc3339);
}

/// [`SUBJECT_FIELDS`] of an event.
pub fn subject_fields(e: &Event) -> Map<String, Value> {
    SUBJECT_FIELDS
        .iter()
        .filter_map(|f| e.field(f).map(|v| (f.to_string(), Value::String(v))))
        .collect()
}

/// "2 days", "3 hours", "5 minutes", "40 seconds": how long, in the largest unit.
pub fn ago(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (n, unit) = if s >= 2 * 86_400 {
        (s / 86_400, "day")
    } else if s >= 2 * 3600 {
        (s / 3600, "hour")
    } else if s >= 2 * 60 {
        (s / 60, "minute")
    } else {
        (s, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn utc_minutes(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// What a watch rule needs to know of a configured source: which fields its
/// events can carry. A generic source carries only the fields it maps.
#[derive(Debug, Clone)]
pub struct SourceFields {
    pub kind: SourceKind,
    /// `kind: generic`: the normalized fields its `fields` maps.
    pub mapped: BTreeSet<String>,
}

impl SourceFields {
    pub fn new(kind: SourceKind, mapped: impl IntoIterator<Item = String>) -> SourceFields {
        SourceFields {
            kind,
            mapped: mapped.into_iter().collect(),
        }
    }

    /// Whether this source's events never carry `field`.
    fn never_sets(&self, field: &str) -> bool {
        match self.kind {
            // The fields a generic source takes only from its `fields` map
            // (`source`, `provider` and `raw.…` are always there).
            SourceKind::Generic => {
                crate::providers::GENERIC_FIELDS.contains(&field) && !self.mapped.contains(field)
            }
            k => k.never_sets(field),
        }
    }
}

/// The dedup-key prefix of a stored `backup.missing` (its subject and deadline
/// follow). Neither it nor a `backup.recovered` is a webhook received, which the
/// digest counts.
pub const MISSING_PREFIX: &str = "missing:";

/// The dedup-key prefix of a `backup.recovered` stored on SQLite (the id of the
/// success that ended the bad run follows); PostgreSQL stores it with an empty key.
pub const RECOVERED_PREFIX: &str = "recovered:";

/// The synthetic `backup.missing` for a subject whose deadline passed.
pub fn missing_event(s: &Subject, rule: Option<&Rule>, deadline: i64, now: i64) -> Event {
    let mut e = s.as_event();
    e.provider = "hookrelay".into();
    e.event = Some("backup.missing".into());
    e.status = Status::Missing;
    e.occurred_at = Some(ms_to_rfc3339(deadline));
    e.received_at = ms_to_rfc3339(now);
    let since = match s.last_success_at {
        Some(t) => format!("No successful backup since {}", utc_minutes(t)),
        None => format!(
            "No successful backup since hookrelay began watching{}",
            s.last_event_at
                .map(|t| format!(" (last event {})", utc_minutes(t)))
                .unwrap_or_default()
        ),
    };
    let expected = rule
        .map(|r| format!("; {}", r.describe()))
        .unwrap_or_default();
    e.message = Some(format!("{since}{expected}"));
    e.raw = serde_json::json!({
        "subject": s.key,
        "deadline": ms_to_rfc3339(deadline),
        "expected": rule.map(|r| r.describe()),
    });
    e
}

/// The synthetic `backup.recovered` that follows `success`: it ended a run of
/// `failures` failures and misses that began at `down_since`.
pub fn recovered_event(success: &Event, failures: u32, down_since: Option<i64>, now: i64) -> Event {
    let mut e = subject_part(success);
    e.provider = "hookrelay".into();
    e.event = Some("backup.recovered".into());
    e.status = Status::Recovered;
    e.failures = failures;
    e.down_since = down_since.map(ms_to_rfc3339);
    e.occurred_at = Some(ms_to_rfc3339(now));
    e.received_at = ms_to_rfc3339(now);
    let noun = if failures == 1 { "failure" } else { "failures" };
    let down = down_since
        .map(|t| format!(", down {}", ago(now - t)))
        .unwrap_or_default();
    e.message = Some(format!("Back after {failures} {noun}{down}"));
    e.raw = serde_json::json!({ "subject": e.subject, "failures": failures });
    e
}

/// What a `backup.recovered` takes from its success: whose it is.
fn subject_part(success: &Event) -> Event {
    Event {
        source: success.source.clone(),
        stack: success.stack.clone(),
        environment: success.environment.clone(),
        server: success.server.clone(),
        account: success.account.clone(),
        backup: success.backup.clone(),
        database: success.database.clone(),
        subject: success.subject.clone(),
        last_success_at: success.last_success_at.clone(),
        ..Default::default()
    }
}

/// Checks due deadlines about every second (and after a reload) until stopped:
/// each due one is claimed in the transaction that stores its `backup.missing`,
/// so it fires once, whichever process claims it, after any restart.
pub async fn run(shared: Arc<Shared>, mut stop: signal::Receiver<bool>) {
    let mut synced: Option<usize> = None;
    loop {
        let relay = shared.relay.load_full();
        // Pinned subjects and changed rules, once per loaded config.
        let generation = Arc::as_ptr(&relay) as usize;
        if synced != Some(generation) {
            match sync(&shared, &relay.watch).await {
                Ok(()) => synced = Some(generation),
                Err(e) => log::error!("watch: cannot update subjects for the config: {e}"),
            }
        }
        if let Err(e) = scan(&shared).await {
            log::error!("watch: cannot check deadlines: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shared.reloaded.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

/// Creates the subjects pinned by `expect` rules and recomputes the deadlines of
/// subjects whose rule changed.
async fn sync(shared: &Shared, watch: &Watch) -> crate::store::Result<()> {
    for r in &watch.rules {
        if let Some((key, fields)) = &r.pinned {
            shared.store.watch_subject(key, fields, r.clone()).await?;
        }
    }
    for s in shared.store.list_subjects(None).await? {
        let rule = watch.rule_of(&s);
        if s.rule.as_deref() != rule.map(|r| r.fingerprint.as_str()) {
            shared.store.set_rule(&s.key, rule.cloned()).await?;
        }
    }
    Ok(())
}

/// Fires every due deadline.
pub async fn scan(shared: &Shared) -> crate::store::Result<usize> {
    let mut fired = 0;
    let due = shared.store.due_subjects(100).await?;
    for s in due {
        let Some(deadline) = s.next_deadline else {
            continue;
        };
        let relay = shared.relay.load_full();
        if !relay.watch.reaches(&s) {
            // Left behind by a change of `by` or of its source, and not yet
            // cleared (the config's sync failed, or a reload came in between):
            // no backup.missing for it.
            shared.store.set_rule(&s.key, None).await?;
            continue;
        }
        let rule = relay.watch.rule_of(&s).cloned();
        let now = crate::store::now_ms();
        let mut e = missing_event(&s, rule.as_deref(), deadline, now);
        let applied = apply(
            Some(&s),
            &s.key,
            None,
            Status::Missing,
            now,
            rule.as_deref(),
            true,
        );
        set_fields(&mut e, &s.key, &applied);
        let (routed, deliveries, groups) = relay.plan_grouped(&e);
        let mut new = NewEvent::new(
            &mut e,
            None,
            format!("{MISSING_PREFIX}{}:{deadline}", s.key),
            Duration::ZERO,
            routed,
            deliveries,
        )?;
        new.groups = groups;
        new.watch = Some(WatchUpdate {
            key: s.key.clone(),
            fields: None,
            rule,
            at: None,
            claim: Some(deadline),
            recovered: None,
        });
        if let crate::store::Ingested::Stored {
            event_id,
            deliveries,
        } = shared.store.ingest(new).await?
        {
            fired += 1;
            shared.metrics.received(
                s.fields.get("source").and_then(Value::as_str).unwrap_or(""),
                "missing",
            );
            log::info!(
                "backup missing: {} (deadline {}): event {event_id}, {deliveries} deliveries",
                s.key,
                ms_to_rfc3339(deadline)
            );
        }
    }
    Ok(fired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(text: &str, tz: &str) -> (croner::Cron, chrono_tz::Tz) {
        (
            croner::Cron::from_str(text).unwrap(),
            chrono_tz::Tz::from_str(tz).unwrap(),
        )
    }

    fn at(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn a_run_in_the_skipped_hour_happens_when_the_clock_jumps() {
        // Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let (c, tz) = cron("30 2 * * *", "Europe/Berlin");
        let next = next_run(&c, tz, at("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(ms_to_rfc3339(next), "2026-03-29T01:00:00Z");
        // And the day after, at 02:30 CEST again.
        let after = next_run(&c, tz, next).unwrap();
        assert_eq!(ms_to_rfc3339(after), "2026-03-30T00:30:00Z");
    }

    #[test]
    fn a_run_in_the_repeated_hour_happens_once() {
        // Europe/Berlin, 2026-10-25: 03:00 CEST goes back to 02:00 CET (01:00 UTC).
        let (c, tz) = cron("30 2 * * *", "Europe/Berlin");
        let first = next_run(&c, tz, at("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(ms_to_rfc3339(first), "2026-10-25T00:30:00Z");
        // Not again at 02:30 CET (01:30 UTC) the same night: the next day.
        let second = next_run(&c, tz, first).unwrap();
        assert_eq!(ms_to_rfc3339(second), "2026-10-26T01:30:00Z");
    }

    #[test]
    fn an_hourly_cron_keeps_every_real_hour_across_the_changes() {
        // Europe/Berlin, 2026-10-25: 03:00 CEST goes back to 02:00 CET (01:00 UTC).
        let (c, tz) = cron("15 * * * *", "Europe/Berlin");
        let mut t = at("2026-10-24T23:00:00Z");
        let mut runs = Vec::new();
        for _ in 0..4 {
            t = next_run(&c, tz, t).unwrap();
            runs.push(ms_to_rfc3339(t));
        }
        // 01:15 CEST, 02:15 CEST, 02:15 CET again (the repeated hour runs again, as
        // Debian cron runs a job with `*` in its hour), 03:15 CET.
        assert_eq!(
            runs,
            [
                "2026-10-24T23:15:00Z",
                "2026-10-25T00:15:00Z",
                "2026-10-25T01:15:00Z",
                "2026-10-25T02:15:00Z"
            ]
        );
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC). 01:15 CET, then
        // 03:15 CEST: 02:15 does not exist and is not made up.
        let mut t = at("2026-03-28T23:30:00Z");
        let mut runs = Vec::new();
        for _ in 0..3 {
            t = next_run(&c, tz, t).unwrap();
            runs.push(ms_to_rfc3339(t));
        }
        assert_eq!(
            runs,
            [
                "2026-03-29T00:15:00Z",
                "2026-03-29T01:15:00Z",
                "2026-03-29T02:15:00Z"
            ]
        );
    }

    /// The review's reproduction: from 00:15 UTC on either change day, the next
    /// run of `15 * * * *` in Berlin is an hour on, as Debian cron runs it.
    #[test]
    fn an_hourly_cron_runs_by_the_new_local_time_across_dst() {
        let (c, tz) = cron("15 * * * *", "Europe/Berlin");
        let spring = next_run(&c, tz, at("2026-03-29T00:15:00Z")).unwrap();
        let autumn = next_run(&c, tz, at("2026-10-25T00:15:00Z")).unwrap();
        assert_eq!(
            (ms_to_rfc3339(spring), ms_to_rfc3339(autumn)),
            (
                "2026-03-29T01:15:00Z".to_string(),
                "2026-10-25T01:15:00Z".to_string()
            )
        );
    }

    #[test]
    fn a_wildcard_in_the_minute_counts_too_and_ranges_do_not() {
        let tz = chrono_tz::Europe::Berlin;
        let runs = |text: &str, from: &str, n: usize| {
            let c = croner::Cron::from_str(text).unwrap();
            let mut t = at(from);
            (0..n)
                .map(|_| {
                    t = next_run(&c, tz, t).unwrap();
                    ms_to_rfc3339(t)
                })
                .collect::<Vec<_>>()
        };
        // `*/30 2 * * *`: every half hour of 02:xx, both passes in autumn, none in spring.
        assert_eq!(
            runs("*/30 2 * * *", "2026-10-24T12:00:00Z", 5),
            [
                "2026-10-25T00:00:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T01:30:00Z",
                "2026-10-26T01:00:00Z"
            ]
        );
        assert_eq!(
            runs("*/30 2 * * *", "2026-03-28T12:00:00Z", 2),
            ["2026-03-30T00:00:00Z", "2026-03-30T00:30:00Z"]
        );
        // `0,30 2 * * *` has no `*`: a fixed-time job, made up once at the jump.
        assert_eq!(
            runs("0,30 2 * * *", "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z"]
        );
        // `@hourly` is `0 * * * *`, a wildcard job.
        assert_eq!(
            runs("@hourly", "2026-10-25T00:30:00Z", 2),
            ["2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z"]
        );
    }

    /// A wildcard job runs at every minute whose local wall-clock time matches:
    /// checked minute by minute around each change, in zones that step by an
    /// hour either way and by half an hour (Lord Howe).
    #[test]
    fn a_wildcard_job_runs_at_every_instant_its_local_time_matches() {
        for (zone, days) in [
            (
                "Europe/Berlin",
                ["2026-03-28T20:00:00Z", "2026-10-24T20:00:00Z"],
            ),
            (
                "America/New_York",
                ["2026-03-08T04:00:00Z", "2026-11-01T03:00:00Z"],
            ),
            (
                "Australia/Lord_Howe",
                ["2026-04-04T12:00:00Z", "2026-10-03T12:00:00Z"],
            ),
        ] {
            let tz = chrono_tz::Tz::from_str(zone).unwrap();
            for text in ["15 * * * *", "*/20 * * * *", "*/10 1-3 * * *", "45 * * * *"] {
                let c = croner::Cron::from_str(text).unwrap();
                let matches = |t: i64| {
                    let local = DateTime::<Utc>::from_timestamp_millis(t)
                        .unwrap()
                        .with_timezone(&tz)
                        .naive_local();
                    c.is_time_matching(&Utc.from_utc_datetime(&local)).unwrap()
                };
                for day in days {
                    let start = at(day);
                    for step in 0..(12 * 60 / 7) {
                        let after = start + step * 7 * 60_000;
                        let want = (1..=2 * 24 * 60)
                            .map(|m| after - after % 60_000 + m * 60_000)
                            .find(|t| matches(*t));
                        assert_eq!(
                            next_run(&c, tz, after),
                            want,
                            "{text} in {zone} after {}",
                            ms_to_rfc3339(after)
                        );
                    }
                }
            }
        }
    }

    fn watch(yaml: &str) -> std::result::Result<Watch, Vec<ConfigError>> {
        let s: WatchSettings = serde_json::from_str(yaml).unwrap();
        let sources = [
            (
                "ctl".to_string(),
                SourceFields::new(SourceKind::Centurylink, []),
            ),
            (
                "c66".to_string(),
                SourceFields::new(SourceKind::Cloud66, []),
            ),
            (
                "gen".to_string(),
                SourceFields::new(SourceKind::Generic, ["server".into(), "backup".into()]),
            ),
        ]
        .into();
        Watch::compile(&s, &sources)
    }

    /// A stored subject of `c66` with the given key and kept fields, reckoned
    /// with `rule` (a fingerprint).
    fn stored(key: &str, fields: &[(&str, &str)], rule: Option<&str>) -> Subject {
        Subject {
            rule: rule.map(str::to_string),
            fields: Arc::new(
                fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                    .collect(),
            ),
            ..Subject::fresh(key)
        }
    }

    #[test]
    fn a_subject_keeps_a_rule_it_cannot_be_judged_on_again() {
        let fields = [("source", "c66"), ("stack", "app"), ("backup", "db")];
        let w = watch(
            r#"{"expect": [{"match": {"source": "c66", "raw.cloud": "aws"}, "every": "1h"}]}"#,
        )
        .unwrap();
        let raw_rule = w.rules[0].fingerprint.clone();
        // Chosen at ingest on the whole event: it stands after a reload.
        let s = stored("c66/app/db", &fields, Some(&raw_rule));
        assert_eq!(w.rule_of(&s).map(|r| r.index), Some(0));
        // Never chosen for this subject: not taken on the kept fields alone.
        assert!(w.rule_of(&stored("c66/app/db", &fields, None)).is_none());
        // The same rule with another schedule: the new settings apply.
        let w2 = watch(
            r#"{"expect": [{"match": {"source": "c66", "raw.cloud": "aws"}, "every": "2h"}]}"#,
        )
        .unwrap();
        let r = w2.rule_of(&s).expect("the rule of the same match");
        assert_ne!(r.fingerprint, raw_rule);
        // Its conditions on kept fields must still hold.
        let w3 = watch(
            r#"{"expect": [{"match": {"source": "c66", "stack": "other", "raw.cloud": "aws"}, "every": "1h"}]}"#,
        )
        .unwrap();
        let s3 = stored("c66/app/db", &fields, Some(&w3.rules[0].fingerprint));
        assert!(w3.rule_of(&s3).is_none());
        // A rule judged on kept fields that comes first wins, as at ingest.
        let w4 = watch(
            r#"{"expect": [{"match": {"source": "c66"}, "every": "3h"}, {"match": {"source": "c66", "raw.cloud": "aws"}, "every": "1h"}]}"#,
        )
        .unwrap();
        let s4 = stored("c66/app/db", &fields, Some(&w4.rules[1].fingerprint));
        assert_eq!(w4.rule_of(&s4).map(|r| r.index), Some(0));
    }

    #[test]
    fn a_rule_on_fields_a_subject_does_not_keep_is_not_judged_outright() {
        let fields = [("source", "c66"), ("stack", "app"), ("backup", "db")];
        // `not: staging` would hold on the payload a subject does not have.
        let w = watch(
            r#"{"expect": [{"match": {"source": "c66", "raw.env": {"not": "staging"}}, "every": "1h"}, {"match": {"source": "c66"}, "every": "1d"}]}"#,
        )
        .unwrap();
        let s = stored("c66/app/db", &fields, Some(&w.rules[1].fingerprint));
        assert_eq!(w.rule_of(&s).map(|r| r.index), Some(1));
        // A rule added before a raw rule: its subjects keep it, by its match.
        let one = watch(
            r#"{"expect": [{"match": {"source": "c66", "raw.cloud": "aws"}, "every": "1h"}]}"#,
        )
        .unwrap();
        let s = stored("c66/app/db", &fields, Some(&one.rules[0].fingerprint));
        let two = watch(
            r#"{"expect": [{"match": {"source": "ctl"}, "every": "1h"}, {"match": {"source": "c66", "raw.cloud": "aws"}, "every": "1h"}]}"#,
        )
        .unwrap();
        let r = two.rule_of(&s).expect("still watched");
        assert_eq!(r.index, 1);
        assert_ne!(r.fingerprint, one.rules[0].fingerprint, "reckoned again");
    }

    #[test]
    fn an_items_keys_are_subject_json_fields() {
        let s = stored("c66/app/db", &[("source", "c66")], None);
        let v = s.to_json();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = SUBJECT_JSON_FIELDS.to_vec();
        let mut got = keys.clone();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn a_subject_no_event_can_reach_is_not_watched() {
        let fields = [("source", "c66"), ("stack", "app"), ("backup", "db")];
        let w = watch(r#"{"expect": [{"match": {"source": "c66"}, "every": "1h"}]}"#).unwrap();
        assert!(w.rule_of(&stored("c66/app/db", &fields, None)).is_some());
        // `by` changed since: its backup reports under another key now.
        let narrower =
            watch(r#"{"by": ["source", "backup"], "expect": [{"match": {"source": "c66"}, "every": "1h"}]}"#)
                .unwrap();
        let s = stored("c66/app/db", &fields, None);
        assert!(!narrower.reaches(&s));
        assert!(narrower.rule_of(&s).is_none());
        assert!(narrower.reaches(&stored("c66/db", &fields, None)));
        // Its source is gone (renamed or removed).
        let gone = [("source", "old"), ("stack", "app"), ("backup", "db")];
        assert!(!w.reaches(&stored("old/app/db", &gone, None)));
        // A `by` on a field subjects do not keep cannot be judged: reaching.
        let by_raw =
            watch(r#"{"by": ["source", "raw.job"], "expect": [{"match": {"source": "c66"}, "every": "1h"}]}"#)
                .unwrap();
        assert!(by_raw.reaches(&stored("c66/j1", &fields, None)));
    }

    #[test]
    fn errors_name_their_place() {
        let e = watch(
            r#"{"expect": [{"every": "1h"}, {"cron": "61 2 * * *", "tz": "Mars/Olympus"}, {"match": {"nope": "x"}, "every": "1h", "cron": "0 2 * * *"}]}"#,
        )
        .unwrap_err();
        let places: Vec<&str> = e.iter().map(|e| e.place.as_str()).collect();
        assert_eq!(
            places,
            [
                "watch.expect[1].tz",
                "watch.expect[1].cron",
                "watch.expect[2].match.nope",
                "watch.expect[2]"
            ],
            "{e:?}"
        );
    }

    #[test]
    fn a_rule_matching_a_value_its_field_never_takes_is_an_error_as_in_a_route() {
        let e = watch(
            r#"{"expect": [
            {"match": {"source": "cloud66", "environment": "production"}, "every": "24h"},
            {"match": {"source": "ctl", "status": "failed"}, "every": "1h"},
            {"match": {"source": {"regex": "^c"}, "status": "failure"}, "every": "1h"}]}"#,
        )
        .unwrap_err();
        let lines: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[0].starts_with("watch.expect[0].match.source: source is never \"cloud66\", so this can never match; source is one of c66, ctl"),
            "{lines:#?}"
        );
        assert!(
            lines[1].starts_with("watch.expect[1].match.status: status is never \"failed\"")
                && lines[1].contains("did you mean failure?"),
            "{lines:#?}"
        );
    }

    #[test]
    fn a_rule_naming_every_by_field_pins_its_subject() {
        let w = watch(
            r#"{"by": ["source", "server", "backup"], "expect": [
            {"match": {"source": "ctl", "server": "DB01", "backup": "nightly"}, "every": "2s"},
            {"match": {"source": "ctl"}, "every": "2s"}]}"#,
        )
        .unwrap();
        assert_eq!(w.rules[0].pinned.as_ref().unwrap().0, "ctl/DB01/nightly");
        assert!(w.rules[1].pinned.is_none());
    }

    #[test]
    fn a_by_field_the_sources_provider_never_sets_need_not_be_named_to_pin() {
        // The default `by` has `stack`; CenturyLink never sets it, Cloud66 does.
        let w = watch(
            r#"{"expect": [
            {"match": {"source": "ctl", "server": "DB01", "backup": "nightly"}, "every": "2s"},
            {"match": {"source": "c66", "server": "s1", "backup": "db"}, "every": "2s"}]}"#,
        )
        .unwrap();
        assert_eq!(w.rules[0].pinned.as_ref().unwrap().0, "ctl/DB01/nightly");
        assert!(w.rules[1].pinned.is_none());
        // A generic source carries only the fields it maps: no `stack` here.
        let w = watch(
            r#"{"expect": [{"match": {"source": "gen", "server": "s1", "backup": "nb"}, "every": "2s"}]}"#,
        )
        .unwrap();
        assert_eq!(w.rules[0].pinned.as_ref().unwrap().0, "gen/s1/nb");
    }

    #[test]
    fn failures_count_and_reset_and_a_success_after_them_recovers() {
        let w = watch(r#"{"expect": [{"every": "10s", "grace": "1s"}]}"#).unwrap();
        let r = w.rules[0].as_ref();
        let a = apply(None, "k", None, Status::Success, 1_000, Some(r), false);
        assert_eq!(a.subject.state, SubjectState::Ok);
        assert_eq!(a.subject.next_deadline, Some(12_000));
        assert_eq!(a.recovered, None);
        let b = apply(
            Some(&a.subject),
            "k",
            None,
            Status::Failure,
            2_000,
            Some(r),
            false,
        );
        assert_eq!(
            (b.failures, b.down_since, b.last_success_at),
            (1, Some(2_000), Some(1_000))
        );
        // A failure does not move the deadline: a success is due.
        assert_eq!(b.subject.next_deadline, Some(12_000));
        let c = apply(
            Some(&b.subject),
            "k",
            None,
            Status::Unknown,
            3_000,
            Some(r),
            false,
        );
        assert_eq!(
            c.subject.state,
            SubjectState::Failing,
            "unknown changes nothing"
        );
        let d = apply(
            Some(&c.subject),
            "k",
            None,
            Status::Missing,
            12_500,
            Some(r),
            true,
        );
        assert_eq!((d.subject.state, d.failures), (SubjectState::Missing, 2));
        assert_eq!(d.subject.next_deadline, None, "no remind: nothing repeats");
        let e = apply(
            Some(&d.subject),
            "k",
            None,
            Status::Success,
            20_000,
            Some(r),
            false,
        );
        assert_eq!(e.recovered, Some((2, Some(2_000))));
        assert_eq!((e.failures, e.down_since), (0, None));
        assert_eq!(e.subject.next_deadline, Some(31_000));
        let f = apply(
            Some(&e.subject),
            "k",
            None,
            Status::Success,
            21_000,
            Some(r),
            false,
        );
        assert_eq!(f.recovered, None, "only after a bad run");
    }

    #[test]
    fn only_unknowns_so_far_is_new() {
        let a = apply(None, "k", None, Status::Unknown, 1, None, false);
        assert_eq!(a.subject.state, SubjectState::New);
        assert_eq!(a.subject.next_deadline, None);
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(ago(2 * 86_400_000 + 5_000), "2 days");
        assert_eq!(ago(90 * 60_000), "90 minutes");
        assert_eq!(ago(1_000), "1 second");
        assert_eq!(human(Duration::from_secs(86_400)), "24h");
        assert_eq!(human(Duration::from_secs(2)), "2s");
    }
}
