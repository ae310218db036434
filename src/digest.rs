//! The digest (SPEC §10): at each scheduled time (`cron` + `tz`, DST as Debian
//! cron does it, reusing the watch's schedule maths) one summary of every backup
//! is stored as an event of its own and delivered to `to`, not routed.
//!
//! Exactly once per scheduled time: the digest is stored with a dedup key made of
//! its schedule and the scheduled time, so a second process (a replica, or this
//! one after a restart) storing the same digest gets a duplicate and queues
//! nothing; once stored, its deliveries are ordinary deliveries (retried, kept
//! across restarts). Each schedule's last run is recorded in the store in the
//! digest's transaction (a row of its own, which retention keeps while the
//! schedule is configured: see `Store::prune_digest_runs`), so a
//! scheduled time that passed while hookrelay was stopped is sent once after it
//! starts (only the latest one, if several passed), however long the schedule's
//! period and however many other digests came since. A schedule never sent before
//! starts counting when hookrelay starts with it, so a new digest does not go out
//! at once for a time before it existed.
//!
//! The digest's template context is kept as the stored event's `raw`, so a retry
//! sends the same digest, and the delivery loop renders it with [`context_of`].

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::watch as signal;

use crate::config::{ConfigError, DigestConfig};
use crate::event::{Event, Status};
use crate::startup::Shared;
use crate::store::{ms_to_rfc3339, EventQuery, Ingested, NewDelivery, NewEvent, Store};
use crate::watch::{next_run, Subject, SubjectState};

/// The `event` of a stored digest (its `provider` and `source` are `hookrelay`).
pub const EVENT: &str = "digest";
/// The `source` digests are stored under.
pub const SOURCE: &str = "hookrelay";
/// A repeat of one digest within this is a duplicate (longer than any schedule's
/// gap between runs that matters here: a repeat comes within seconds).
const DEDUP_WINDOW: Duration = Duration::from_secs(7 * 86_400);
/// Digests stored with this dedup-key prefix are not counted as webhooks received.
pub const DEDUP_PREFIX: &str = "digest:";
/// How many of the newest stored digests are looked at to find a schedule's last,
/// in a database from before each schedule's last run was recorded.
const LOOK_BACK: usize = 200;

/// The embedded default digest templates (`digest.<type>.hbs`), one set for every
/// destination type; a file of the same name in `templates.dir` replaces one.
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "digest.console.hbs",
        include_str!("../templates/digest.console.hbs"),
    ),
    (
        "digest.discord.json.hbs",
        include_str!("../templates/digest.discord.json.hbs"),
    ),
    (
        "digest.email.hbs",
        include_str!("../templates/digest.email.hbs"),
    ),
    (
        "digest.email.html.hbs",
        include_str!("../templates/digest.email.html.hbs"),
    ),
    (
        "digest.google_chat.json.hbs",
        include_str!("../templates/digest.google_chat.json.hbs"),
    ),
    (
        "digest.mattermost.hbs",
        include_str!("../templates/digest.mattermost.hbs"),
    ),
    (
        "digest.ntfy.json.hbs",
        include_str!("../templates/digest.ntfy.json.hbs"),
    ),
    (
        "digest.pagerduty.json.hbs",
        include_str!("../templates/digest.pagerduty.json.hbs"),
    ),
    (
        "digest.slack.json.hbs",
        include_str!("../templates/digest.slack.json.hbs"),
    ),
    (
        "digest.teams.json.hbs",
        include_str!("../templates/digest.teams.json.hbs"),
    ),
    (
        "digest.telegram.hbs",
        include_str!("../templates/digest.telegram.hbs"),
    ),
    (
        "digest.webhook.json.hbs",
        include_str!("../templates/digest.webhook.json.hbs"),
    ),
];

/// What a digest template may read at its top level, and whether each holds more
/// inside (a list).
pub const FIELDS: &[(&str, bool)] = &[
    ("summary", false),
    ("status", false),
    ("total", false),
    ("ok", false),
    ("failing", false),
    ("missing", false),
    ("new", false),
    ("attention", true),
    ("recovered", true),
    ("subjects", true),
    ("received", false),
    ("delivered", false),
    ("dead", false),
    ("since", false),
    ("scheduled_at", false),
    ("schedule", false),
    ("provider", false),
    ("source", false),
    ("event", false),
    ("message", false),
    ("key", false),
];

/// One compiled `digest` entry.
#[derive(Debug, Clone)]
pub struct Digest {
    pub index: usize,
    pub cron: Box<croner::Cron>,
    pub cron_text: String,
    pub tz: chrono_tz::Tz,
    pub to: Vec<String>,
    pub template: String,
    /// Its identity across restarts and replicas: schedule, zone, destinations
    /// and template. Changing any of them starts a new schedule.
    pub key: String,
}

impl Digest {
    /// "0 8 * * * (Europe/Berlin)".
    pub fn describe(&self) -> String {
        format!("{} ({})", self.cron_text, self.tz)
    }

    /// The latest run at or before `now`, if one came after `after`.
    pub fn due(&self, after: i64, now: i64) -> Option<i64> {
        let mut t = next_run(&self.cron, self.tz, after).filter(|t| *t <= now)?;
        // Several runs passed (hookrelay was stopped): only the latest is sent.
        for _ in 0..100_000 {
            match next_run(&self.cron, self.tz, t) {
                Some(n) if n <= now => t = n,
                _ => break,
            }
        }
        Some(t)
    }
}

/// Compiles `digest`, naming the place of every error. `dest_type(name)` is the
/// type of a configured destination; `has_body(template, type)` whether that
/// template has a body for that type.
pub fn compile(
    list: &[DigestConfig],
    dest_type: impl Fn(&str) -> Option<&'static str>,
    is_invalid_destination: impl Fn(&str) -> bool,
    has_body: impl Fn(&str, &str) -> bool,
) -> Result<Vec<Digest>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for (i, d) in list.iter().enumerate() {
        let place = format!("digest[{i}]");
        let before = errors.len();
        let cron = match croner::Cron::from_str(d.cron.trim()) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.push(ConfigError::new(
                    format!("{place}.cron"),
                    format!("cannot read {:?} as a cron expression: {e}", d.cron),
                ));
                None
            }
        };
        let tz = match d.tz.as_deref() {
            None => chrono_tz::UTC,
            Some(name) => chrono_tz::Tz::from_str(name.trim()).unwrap_or_else(|_| {
                errors.push(ConfigError::new(
                    format!("{place}.tz"),
                    format!(
                        "unknown time zone {name:?}; expected a name such as UTC or Europe/Berlin"
                    ),
                ));
                chrono_tz::UTC
            }),
        };
        if d.to.is_empty() {
            errors.push(ConfigError::new(
                format!("{place}.to"),
                "needs at least one destination",
            ));
        }
        if !d.template.starts_with(crate::templates::DIGEST_PREFIX) {
            errors.push(ConfigError::new(
                format!("{place}.template"),
                format!(
                    "a digest template's name starts with \"{}\" (its files are {0}….<type>.hbs); {:?} does not",
                    crate::templates::DIGEST_PREFIX,
                    d.template
                ),
            ));
        }
        for (j, name) in d.to.iter().enumerate() {
            match dest_type(name) {
                Some(ty) => {
                    if d.template.starts_with(crate::templates::DIGEST_PREFIX)
                        && !has_body(&d.template, ty)
                    {
                        errors.push(ConfigError::new(
                            format!("{place}.to[{j}]"),
                            format!(
                                "no digest template for {name:?} ({ty}): neither {t}.{ty}.hbs nor {t}.{ty}.json.hbs exists",
                                t = d.template
                            ),
                        ));
                    }
                }
                None if is_invalid_destination(name) => {}
                None => errors.push(ConfigError::new(
                    format!("{place}.to[{j}]"),
                    format!("unknown destination {name:?}"),
                )),
            }
        }
        if errors.len() > before {
            continue;
        }
        let Some(cron) = cron else { continue };
        out.push(Digest {
            index: i,
            cron: Box::new(cron),
            cron_text: d.cron.trim().to_string(),
            tz,
            key: format!("{}|{}|{}|{}", d.cron.trim(), tz, d.to.join(","), d.template),
            to: d.to.clone(),
            template: d.template.clone(),
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// A stored digest's template context (kept as its `raw`), if `e` is a digest.
pub fn context_of(e: &Event) -> Option<Value> {
    is_digest(e).then(|| e.raw.clone())
}

/// Whether `e` is a stored digest (its `raw` is the digest's context).
pub fn is_digest(e: &Event) -> bool {
    e.provider == SOURCE && e.source == SOURCE && e.event.as_deref() == Some(EVENT)
}

/// What the digest counts besides the subjects: since the previous digest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Webhooks (events) received.
    pub received: u64,
    /// Alerts (deliveries) delivered.
    pub delivered: u64,
    /// Alerts (deliveries) that gave up.
    pub dead: u64,
}

/// The digest's template context: counts first, then the subjects that need
/// attention (failing or missing, worst first), those that recovered, every
/// subject, and the traffic since the previous digest.
pub fn build_context(
    digest: &Digest,
    subjects: &[Subject],
    recovered: &BTreeSet<String>,
    counts: Counts,
    since: i64,
    scheduled: i64,
) -> Value {
    let count = |s: SubjectState| subjects.iter().filter(|x| x.state == s).count();
    let (ok, failing, missing, new) = (
        count(SubjectState::Ok),
        count(SubjectState::Failing),
        count(SubjectState::Missing),
        count(SubjectState::New),
    );
    let total = subjects.len();
    let mut summary = if total == 0 {
        "No backups have reported yet".to_string()
    } else {
        format!(
            "{ok} of {total} backup{} OK",
            if total == 1 { "" } else { "s" }
        )
    };
    for (n, what) in [(failing, "failing"), (missing, "missing"), (new, "new")] {
        if n > 0 {
            summary.push_str(&format!(" · {n} {what}"));
        }
    }
    let status = if total > 0 && ok == total {
        "success"
    } else {
        "failure"
    };
    let items: Vec<Value> = subjects.iter().map(Subject::to_json).collect();
    let attention: Vec<Value> = subjects
        .iter()
        .zip(&items)
        .filter(|(s, _)| matches!(s.state, SubjectState::Failing | SubjectState::Missing))
        .map(|(_, v)| v.clone())
        .collect();
    let back: Vec<Value> = subjects
        .iter()
        .zip(&items)
        .filter(|(s, _)| s.state == SubjectState::Ok && recovered.contains(&s.key))
        .map(|(_, v)| v.clone())
        .collect();
    json!({
        "summary": summary,
        "message": format!("Backup digest: {summary}"),
        "status": status,
        "total": total,
        "ok": ok,
        "failing": failing,
        "missing": missing,
        "new": new,
        "attention": attention,
        "recovered": back,
        "subjects": items,
        "received": counts.received,
        "delivered": counts.delivered,
        "dead": counts.dead,
        "since": ms_to_rfc3339(since),
        "scheduled_at": ms_to_rfc3339(scheduled),
        "schedule": digest.describe(),
        "provider": SOURCE,
        "source": SOURCE,
        "event": EVENT,
        "key": digest.key,
    })
}

/// The scheduled time of the last digest of `key`: as recorded with it; for a
/// database from before that record, the newest of its stored digests.
async fn last_sent(store: &dyn Store, key: &str) -> crate::store::Result<Option<i64>> {
    if let Some(at) = store.last_digest(key).await? {
        return Ok(Some(at));
    }
    let q = EventQuery {
        limit: LOOK_BACK,
        source: Some(SOURCE.into()),
        ..Default::default()
    };
    for r in store.list_events(q).await? {
        let Some(ctx) = context_of(&r.event) else {
            continue;
        };
        if ctx.get("key").and_then(Value::as_str) == Some(key) {
            let at = ctx
                .get("scheduled_at")
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis());
            if at.is_some() {
                return Ok(at);
            }
        }
    }
    Ok(None)
}

/// Where each schedule counts from: its last digest (read from the store once,
/// then kept here), or, when none was ever stored, when this process first saw it.
#[derive(Debug, Default)]
pub struct Clock {
    last: HashMap<String, i64>,
}

/// Sends every digest due at `now` (unix ms, the store's clock; tests pass the
/// time they want). Returns how many were stored by this call.
pub async fn tick(shared: &Shared, clock: &mut Clock, now: i64) -> crate::store::Result<usize> {
    let relay = shared.relay.load_full();
    let mut sent = 0;
    for d in &relay.digests {
        let since = match clock.last.get(&d.key) {
            Some(t) => *t,
            None => {
                let t = last_sent(shared.store.as_ref(), &d.key)
                    .await?
                    .unwrap_or(now);
                clock.last.insert(d.key.clone(), t);
                t
            }
        };
        let Some(scheduled) = d.due(since, now) else {
            continue;
        };
        // Stored here or, as a duplicate, by another process: sent either way.
        if store_digest(shared, &relay, d, since, scheduled, now).await? {
            sent += 1;
        }
        clock.last.insert(d.key.clone(), scheduled);
    }
    Ok(sent)
}

/// Builds and stores one digest with its deliveries; false if another process
/// (or an earlier run) already stored it.
async fn store_digest(
    shared: &Shared,
    relay: &crate::relay::Relay,
    d: &Digest,
    since: i64,
    scheduled: i64,
    now: i64,
) -> crate::store::Result<bool> {
    let store = shared.store.as_ref();
    let subjects = store.list_subjects(None).await?;
    let recovered: BTreeSet<String> = store
        .outcomes_since(since)
        .await?
        .into_iter()
        // Up to its own scheduled time, as the counts: later ones are the next's.
        .filter(|o| o.status == Status::Recovered.as_str() && o.received_ms < scheduled)
        .map(|o| o.subject)
        .collect();
    // Up to its own scheduled time: what comes after is the next digest's.
    let counts = store.digest_counts(since, scheduled).await?;
    let ctx = build_context(d, &subjects, &recovered, counts, since, scheduled);
    let mut e = event_for(&ctx, scheduled, now);
    let deliveries =
        d.to.iter()
            .filter(|name| {
                relay
                    .destinations
                    .get(*name)
                    .is_some_and(|x| x.cfg.common.enabled)
            })
            .map(|name| NewDelivery {
                destination: name.clone(),
                template: d.template.clone(),
                channel: None,
            })
            .collect();
    let mut new = NewEvent::new(
        &mut e,
        None,
        format!("{DEDUP_PREFIX}{}:{scheduled}", d.key),
        DEDUP_WINDOW,
        true,
        deliveries,
    )?;
    new.digest_run = Some((d.key.clone(), scheduled));
    match store.ingest(new).await? {
        Ingested::Stored {
            event_id,
            deliveries,
        } => {
            log::info!(
                "digest {} for {}: {}; event {event_id}, {deliveries} deliveries",
                d.describe(),
                ms_to_rfc3339(scheduled),
                ctx["summary"].as_str().unwrap_or_default()
            );
            Ok(true)
        }
        Ingested::Duplicate { .. } | Ingested::Skipped => Ok(false),
    }
}

/// The event a digest is stored as: `provider`/`source` `hookrelay`, `event`
/// `digest`, its status, summary and scheduled time; `raw` is its context.
pub fn event_for(ctx: &Value, scheduled: i64, now: i64) -> Event {
    let s = |k: &str| ctx.get(k).and_then(Value::as_str).map(str::to_string);
    Event {
        source: SOURCE.into(),
        provider: SOURCE.into(),
        event: Some(EVENT.into()),
        status: Status::parse(&s("status").unwrap_or_default()).unwrap_or(Status::Unknown),
        message: s("summary"),
        occurred_at: Some(ms_to_rfc3339(scheduled)),
        received_at: ms_to_rfc3339(now),
        raw: ctx.clone(),
        ..Default::default()
    }
}

/// Sends due digests about every second until stopped.
pub async fn run(shared: Arc<Shared>, mut stop: signal::Receiver<bool>) {
    let mut clock = Clock::default();
    loop {
        if !shared.relay.load().digests.is_empty() {
            let r = match shared.store.clock_ms().await {
                Ok(now) => tick(&shared, &mut clock, now).await,
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                log::error!("digest: cannot send due digests: {e}");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Sample digests every digest template must render at load time (and that
/// `hookrelay render --digest` shows).
pub fn sample_contexts() -> Vec<(&'static str, Value)> {
    let digest = Digest {
        index: 0,
        cron: Box::new(croner::Cron::from_str("0 8 * * *").expect("a valid cron")),
        cron_text: "0 8 * * *".into(),
        tz: chrono_tz::Europe::Berlin,
        to: vec!["ops-slack".into()],
        template: "digest".into(),
        key: "sample".into(),
    };
    let at = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .unwrap_or_default()
    };
    let now = at("2026-11-30T07:00:00Z");
    let since = at("2026-11-29T07:00:00Z");
    let subject = |key: &str, state, failures, fields: &[(&str, &str)], last_ok: Option<i64>| {
        let fields: Map<String, Value> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        Subject {
            key: key.into(),
            state,
            failures,
            last_event_at: Some(now - 5 * 3_600_000),
            last_success_at: last_ok,
            down_since: (failures > 0).then_some(now - 29 * 3_600_000),
            next_deadline: Some(now + 19 * 3_600_000),
            rule: None,
            fields: std::sync::Arc::new(fields),
        }
    };
    let mut many = vec![
        subject(
            "c66/my-production-app/server-abc123/myapp_production",
            SubjectState::Missing,
            2,
            &[
                ("source", "c66"),
                ("stack", "my-production-app"),
                ("environment", "production"),
                ("server", "server-abc123"),
                ("backup", "myapp_production"),
            ],
            Some(now - 53 * 3_600_000),
        ),
        subject(
            "sb/Acme Server/Acme Project",
            SubjectState::Failing,
            3,
            &[
                ("source", "sb"),
                ("server", "Acme Server"),
                ("backup", "Acme Project"),
            ],
            Some(now - 77 * 3_600_000),
        ),
    ];
    for i in 0..40 {
        many.push(subject(
            &format!("ctl/VA1TEST-DB{i:02}/nightly-db"),
            SubjectState::Ok,
            0,
            &[
                ("source", "ctl"),
                ("server", &format!("VA1TEST-DB{i:02}")),
                ("backup", "nightly-db"),
            ],
            Some(now - 5 * 3_600_000),
        ));
    }
    let recovered: BTreeSet<String> = ["ctl/VA1TEST-DB07/nightly-db".to_string()].into();
    let counts = Counts {
        received: 87,
        delivered: 12,
        dead: 1,
    };
    let all_ok: Vec<Subject> = many
        .iter()
        .filter(|s| s.state == SubjectState::Ok)
        .cloned()
        .collect();
    let nasty = "quote \" back\\slash <b>bold</b> & amp\nnew line ✅ <!channel>";
    let hostile = vec![subject(
        nasty,
        SubjectState::Failing,
        1,
        &[("source", nasty), ("server", nasty), ("backup", nasty)],
        None,
    )];
    vec![
        (
            "a digest with 42 backups, one failing and one missing",
            build_context(&digest, &many, &recovered, counts, since, now),
        ),
        (
            "a digest with every backup OK",
            build_context(
                &digest,
                &all_ok,
                &BTreeSet::new(),
                Counts::default(),
                since,
                now,
            ),
        ),
        (
            "a digest with no backups yet",
            build_context(
                &digest,
                &[],
                &BTreeSet::new(),
                Counts::default(),
                since,
                now,
            ),
        ),
        (
            "a digest whose values hold quotes, markup and newlines",
            build_context(&digest, &hostile, &BTreeSet::new(), counts, since, now),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(cron: &str, tz: Option<&str>, to: &[&str], template: &str) -> DigestConfig {
        DigestConfig {
            cron: cron.into(),
            tz: tz.map(str::to_string),
            to: to.iter().map(|s| s.to_string()).collect(),
            template: template.into(),
        }
    }

    fn at(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn check_names_every_bad_setting_by_place() {
        let list = [
            cfg("0 8 * *", Some("Europe/Berln"), &["ops", "nope"], "digest"),
            cfg("0 8 * * *", None, &[], "daily"),
            cfg("0 8 * * *", None, &["mail"], "digest-short"),
        ];
        let err = compile(
            &list,
            |n| match n {
                "ops" => Some("slack"),
                "mail" => Some("email"),
                _ => None,
            },
            |_| false,
            |t, ty| t == "digest" || (t == "digest-short" && ty == "slack"),
        )
        .unwrap_err();
        let places: Vec<&str> = err.iter().map(|e| e.place.as_str()).collect();
        assert_eq!(
            places,
            [
                "digest[0].cron",
                "digest[0].tz",
                "digest[0].to[1]",
                "digest[1].to",
                "digest[1].template",
                "digest[2].to[0]"
            ],
            "{err:?}"
        );
    }

    #[test]
    fn the_latest_passed_run_is_due_once() {
        let d = compile(
            &[cfg("0 8 * * *", Some("Europe/Berlin"), &["ops"], "digest")],
            |_| Some("slack"),
            |_| false,
            |_, _| true,
        )
        .unwrap()
        .remove(0);
        let last = at("2026-11-29T07:00:00Z");
        assert_eq!(d.due(last, at("2026-11-30T06:59:59Z")), None);
        assert_eq!(
            d.due(last, at("2026-11-30T07:00:00Z")),
            Some(at("2026-11-30T07:00:00Z"))
        );
        // Stopped over three runs: only the latest.
        assert_eq!(
            d.due(last, at("2026-12-02T09:00:00Z")),
            Some(at("2026-12-02T07:00:00Z"))
        );
        // After the summer change 08:00 Berlin is 06:00 UTC.
        assert_eq!(
            d.due(at("2026-03-28T07:00:00Z"), at("2026-03-29T06:00:00Z")),
            Some(at("2026-03-29T06:00:00Z"))
        );
    }

    #[test]
    fn every_destination_type_has_a_default_digest_that_reads_counts_first() {
        let t = crate::templates::Templates::load(std::path::Path::new("/nonexistent")).unwrap();
        let (_, ctx) = sample_contexts().remove(0);
        for k in crate::destinations::KINDS {
            assert!(t.has_body("digest", k.name), "no digest.{}.hbs", k.name);
            let body = match t.render_body("digest", k.name, &ctx).unwrap() {
                crate::templates::Body::Json(v) => v.to_string(),
                crate::templates::Body::Text(s) => s,
            };
            let counts = body.find("40 of 42 backups OK").expect(k.name);
            let failing = body.find("sb/Acme Server/Acme Project").expect(k.name);
            assert!(counts < failing, "{}: {body}", k.name);
        }
    }

    #[test]
    fn the_summary_counts_first() {
        let (_, ctx) = sample_contexts().remove(0);
        assert_eq!(
            ctx["summary"],
            "40 of 42 backups OK · 1 failing · 1 missing"
        );
        assert_eq!(ctx["status"], "failure");
        let attention: Vec<&str> = ctx["attention"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["state"].as_str().unwrap())
            .collect();
        assert_eq!(attention, ["missing", "failing"]);
        assert_eq!(
            ctx["recovered"][0]["subject"],
            "ctl/VA1TEST-DB07/nightly-db"
        );
        let (_, ok) = sample_contexts().remove(1);
        assert_eq!(ok["summary"], "40 of 40 backups OK");
        assert_eq!(ok["status"], "success");
    }
}
