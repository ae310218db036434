//! Grouping (SPEC §10): a route's `group: {wait, by, max}` holds its events and
//! sends each destination one message for the whole group.
//!
//! Held groups live in the store, never only in memory: the event's transaction
//! adds it to its open group (or opens one, due `wait` later), so `kill -9` while a
//! group waits loses nothing. [`run`] flushes due groups: in one transaction the
//! store marks a group sent and queues one delivery per destination on the
//! group's first event, so a group goes out once whichever process (replica) gets
//! to it, after any restart. The delivery loop renders such a delivery with
//! `count` and `events` ([`delivery_context`]).
//!
//! Decisions where the SPEC is silent (also in the README):
//! - the group's deliveries belong to its first event; `GET /api/events/{id}` of
//!   every member names the group (`group.first_event`, `count`, `state`);
//! - a duplicate (dedup) never joins a group; `continue` works as without groups:
//!   each route an event reaches holds it in that route's group, and a destination
//!   named by an earlier route keeps that route's delivery;
//! - PagerDuty destinations are never grouped: one incident per backup (the
//!   `dedup_key` is the subject), so a route's PagerDuty deliveries go out per
//!   event at once while its other destinations wait for the group;
//! - a group is keyed by its route's identity (a hash of what the route is, see
//!   `Route::id`) and the deliveries it sends, never by the route's index: a reload
//!   that reorders routes keeps each open group with its route;
//! - replaying an event sends it alone, at once;
//! - a group of one goes out as an ordinary delivery (no `count`/`events`).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::watch as signal;

use crate::config::{ConfigError, GroupConfig};
use crate::event::{Event, FIELDS};
use crate::startup::Shared;
use crate::store::{GroupJoin, NewDelivery, Store};

/// How often due groups are looked for.
const POLL: Duration = Duration::from_millis(250);
/// Groups flushed per pass.
const BATCH: usize = 100;

/// A route's compiled `group`.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRule {
    pub wait: Duration,
    pub by: Vec<String>,
    pub max: u32,
}

impl GroupRule {
    /// Compiles `group`, naming the place of every error (`routes[0].group.by[1]`).
    pub fn compile(place: &str, g: &GroupConfig, errors: &mut Vec<ConfigError>) -> Option<Self> {
        let before = errors.len();
        if g.wait.is_zero() {
            errors.push(ConfigError::new(
                format!("{place}.wait"),
                "must be more than 0s (leave `group` out to send each event at once)",
            ));
        }
        if g.max == 0 {
            errors.push(ConfigError::new(
                format!("{place}.max"),
                "must be at least 1",
            ));
        }
        for (i, f) in g.by.iter().enumerate() {
            if !f.starts_with("raw.") && !FIELDS.contains(&f.as_str()) {
                errors.push(ConfigError::new(
                    format!("{place}.by[{i}]"),
                    format!("unknown field {f:?}; use a normalized field or raw.<path>"),
                ));
            }
        }
        (errors.len() == before).then(|| GroupRule {
            wait: g.wait,
            by: g.by.clone(),
            max: u32::try_from(g.max).unwrap_or(u32::MAX),
        })
    }

    /// The group an event of a route joins: the route's identity ([`Route::id`],
    /// never its place in the list), the deliveries it gets there, and its `by`
    /// values. With the deliveries in the key, an event joins only a group that
    /// goes where it would go: one whose destination an earlier `continue` route
    /// took, or whose Slack channel (a template) renders otherwise, opens its own.
    ///
    /// Keys used to be `routes[<index>]…`: a group an older hookrelay left open
    /// under one still goes out when due (the flush reads `due_at`, never the
    /// key); new events open a group under the new key.
    ///
    /// [`Route::id`]: crate::routing::Route::id
    pub fn key(&self, route: &str, deliveries: &[NewDelivery], e: &Event) -> String {
        let values: Vec<String> = self
            .by
            .iter()
            .map(|f| e.field(f).unwrap_or_default())
            .collect();
        let mut h = Sha256::new();
        h.update(route.as_bytes());
        h.update([0x1f]);
        h.update(deliveries_json(deliveries).as_bytes());
        let id = hex::encode(&h.finalize()[..8]);
        // `\u{1f}` (unit separator) cannot be confused with a value's own `/`.
        format!("route:{id}\u{1f}{}", values.join("\u{1f}"))
    }

    /// The group `deliveries` (of the route whose [`Route::id`] is `route`) join.
    ///
    /// [`Route::id`]: crate::routing::Route::id
    pub fn join(&self, route: &str, e: &Event, deliveries: Vec<NewDelivery>) -> GroupJoin {
        GroupJoin {
            key: self.key(route, &deliveries, e),
            wait: self.wait,
            max: self.max,
            deliveries,
        }
    }
}

/// A group as `GET /api/events/{id}` shows it on each of its events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupView {
    pub id: i64,
    /// `open` (still taking events), `full` (reached `max`, about to go out) or
    /// `sent` (its deliveries are queued on `first_event`).
    pub state: String,
    pub count: u32,
    pub first_event: String,
    /// When it goes out (`open`, `full`) or went out (`sent`).
    pub due_at: String,
}

/// Flushes due groups about every [`POLL`] until stopped.
pub async fn run(shared: Arc<Shared>, mut stop: signal::Receiver<bool>) {
    loop {
        match flush(&shared).await {
            Ok(n) if n >= BATCH => continue,
            Ok(_) => {}
            Err(e) => log::error!("group: cannot send due groups: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Queues the deliveries of every due group (tests call this on an app built
/// without its loops). Returns how many groups went out.
pub async fn flush(shared: &Shared) -> crate::store::Result<usize> {
    let n = shared.store.flush_groups(BATCH).await?;
    if n > 0 {
        log::info!("group: {n} groups due, their deliveries queued");
        shared.notify.notify_waiters();
    }
    Ok(n)
}

/// The template context of a claimed delivery: the event's fields, and for a
/// group's delivery also `count` and `events` (every member, oldest first, each
/// with all its fields); a digest's delivery gets the digest's own context.
pub async fn delivery_context(
    store: &dyn Store,
    event: Event,
    group: Option<i64>,
) -> Result<Value, String> {
    if let Some(ctx) = crate::digest::context_of(&event) {
        return Ok(ctx);
    }
    let mut ctx = event.into_template_context();
    if let Some(id) = group {
        let events = store
            .group_events(id)
            .await
            .map_err(|e| format!("cannot read the events of group {id}: {e}"))?;
        if let Some(m) = ctx.as_object_mut() {
            m.insert("count".into(), events.len().into());
            m.insert(
                "events".into(),
                Value::Array(
                    events
                        .into_iter()
                        .map(Event::into_template_context)
                        .collect(),
                ),
            );
        }
    }
    Ok(ctx)
}

/// A group's deliveries as stored with it.
pub(crate) fn deliveries_json(d: &[NewDelivery]) -> String {
    Value::Array(
        d.iter()
            .map(|d| json!({"destination": d.destination, "template": d.template, "channel": d.channel}))
            .collect(),
    )
    .to_string()
}

/// The deliveries stored with a group.
pub(crate) fn parse_deliveries(text: &str) -> Vec<NewDelivery> {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| {
            Some(NewDelivery {
                destination: d.get("destination")?.as_str()?.to_string(),
                template: d.get("template")?.as_str()?.to_string(),
                channel: d.get("channel").and_then(Value::as_str).map(str::to_string),
            })
        })
        .collect()
}

/// What templates see besides the event's fields in a group's delivery.
pub const GROUP_FIELDS: &[&str] = &["count", "events"];

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(wait: &str, by: &[&str], max: usize) -> GroupConfig {
        serde_json::from_value(serde_json::json!({"wait": wait, "by": by, "max": max})).unwrap()
    }

    #[test]
    fn bad_settings_are_named_by_place() {
        let mut errors = Vec::new();
        assert!(GroupRule::compile(
            "routes[1].group",
            &cfg("0s", &["status", "stak"], 0),
            &mut errors
        )
        .is_none());
        let places: Vec<&str> = errors.iter().map(|e| e.place.as_str()).collect();
        assert_eq!(
            places,
            [
                "routes[1].group.wait",
                "routes[1].group.max",
                "routes[1].group.by[1]"
            ]
        );
    }

    #[test]
    fn every_default_template_lists_a_group_one_line_each_and_shortens_it() {
        let t = crate::templates::Templates::load(std::path::Path::new("/nonexistent")).unwrap();
        let (_, sample) = crate::templates::sample_contexts()
            .into_iter()
            .find(|(what, _)| what.starts_with("a group"))
            .unwrap();
        // A big group: 60 events, each its own backup.
        let mut big = sample.clone();
        let one = sample["events"][0].clone();
        let events: Vec<Value> = (0..60)
            .map(|i| {
                let mut e = one.clone();
                e["backup"] = json!(format!("db-{i:02}"));
                e
            })
            .collect();
        big["count"] = json!(events.len());
        big["events"] = Value::Array(events);
        for k in crate::destinations::KINDS {
            let body = |ctx: &Value| match t.render_body("default", k.name, ctx).unwrap() {
                crate::templates::Body::Json(v) => v.to_string(),
                crate::templates::Body::Text(s) => s,
            };
            if k.name == "pagerduty" {
                continue; // never grouped: one incident per backup
            }
            let text = body(&sample);
            assert!(text.contains("4 backups failed"), "{}: {text}", k.name);
            assert!(
                text.contains("Acme Project on Acme Server"),
                "{}: {text}",
                k.name
            );
            let text = body(&big);
            assert!(text.contains("60 backups failed"), "{}: {text}", k.name);
            assert!(text.contains("db-00"), "{}: {text}", k.name);
            // Those with room for 60 lines list them all.
            if !matches!(k.name, "email" | "console" | "webhook" | "mattermost") {
                assert!(
                    text.contains("more"),
                    "{} shows \"… and N more\": {text}",
                    k.name
                );
                assert!(!text.contains("db-59"), "{}: {text}", k.name);
            }
        }
    }

    #[test]
    fn the_key_is_the_route_the_deliveries_and_the_by_values() {
        let mut errors = Vec::new();
        let g =
            GroupRule::compile("g", &cfg("30s", &["status", "stack"], 50), &mut errors).unwrap();
        let e = |status, stack: Option<&str>| Event {
            status,
            stack: stack.map(str::to_string),
            ..Default::default()
        };
        let to = |dests: &[&str], channel: Option<&str>| -> Vec<NewDelivery> {
            dests
                .iter()
                .map(|d| NewDelivery {
                    destination: d.to_string(),
                    template: "default".into(),
                    channel: channel.map(str::to_string),
                })
                .collect()
        };
        let ops = to(&["ops"], None);
        use crate::event::Status::*;
        assert_eq!(
            g.key("r1", &ops, &e(Failure, Some("a"))),
            g.key("r1", &ops, &e(Failure, Some("a")))
        );
        assert_ne!(
            g.key("r1", &ops, &e(Failure, Some("a"))),
            g.key("r1", &ops, &e(Missing, Some("a")))
        );
        assert_ne!(
            g.key("r1", &ops, &e(Failure, Some("a"))),
            g.key("r1", &ops, &e(Failure, Some("b")))
        );
        // Another route.
        assert_ne!(
            g.key("r1", &ops, &e(Failure, Some("a"))),
            g.key("r2", &ops, &e(Failure, Some("a")))
        );
        // The same route, but fewer destinations (an earlier `continue` route took
        // one) or another Slack channel: another group.
        assert_ne!(
            g.key("r1", &to(&["ops", "dba"], None), &e(Failure, Some("a"))),
            g.key("r1", &to(&["dba"], None), &e(Failure, Some("a")))
        );
        assert_ne!(
            g.key("r1", &to(&["ops"], Some("#a")), &e(Failure, Some("a"))),
            g.key("r1", &to(&["ops"], Some("#b")), &e(Failure, Some("a")))
        );
        // No `by`: one group per route (and destinations).
        let one = GroupRule::compile("g", &cfg("30s", &[], 50), &mut errors).unwrap();
        assert_eq!(
            one.key("r1", &ops, &e(Failure, Some("a"))),
            one.key("r1", &ops, &e(Success, None))
        );
        // Never the old form, `routes[<index>]…`: a group left open under it is
        // not joined (it still goes out when due).
        assert!(one.key("r1", &ops, &e(Failure, None)).starts_with("route:"));
    }
}
