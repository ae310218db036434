//! The web page's HTML, written with maud: checked at compile time, and every
//! value inserted with `(…)` is HTML-escaped (payload text included). Nothing
//! here is raw HTML from data. No scripts: links and plain forms do everything.

use std::collections::{BTreeMap, HashMap};

use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

use super::board::{Day, Subject, DAYS};
use crate::store::{DeliveryView, EventRecord, State};

/// What every page's header needs: the CSRF token of the sign-out form, when
/// signed in.
pub struct Chrome<'a> {
    pub csrf: Option<&'a str>,
    /// `board` or `log`: which tab is lit.
    pub tab: &'a str,
    pub now_ms: i64,
}

pub fn layout(title: &str, chrome: &Chrome, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="same-origin";
                title { (title) " · hookrelay" }
                link rel="stylesheet" href="/ui/style.css";
                link rel="icon" href="/ui/favicon.svg" type="image/svg+xml";
            }
            body {
                header.top {
                    a.brand href="/ui" { "hookrelay" }
                    @if let Some(csrf) = chrome.csrf {
                        nav {
                            a href="/ui" aria-current=[(chrome.tab == "board").then_some("page")] { "Backups" }
                            a href="/ui/events" aria-current=[(chrome.tab == "log").then_some("page")] { "Delivery log" }
                        }
                        form.signout method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

// ---- time ----

/// `2026-11-30 03:12:05 UTC`
pub fn exact(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// `3 h ago`, `in 20 min`, `just now`.
pub fn relative(ms: i64, now_ms: i64) -> String {
    let d = (now_ms - ms) / 1000;
    let a = d.abs();
    let span = if a < 45 {
        return "just now".into();
    } else if a < 3600 {
        format!("{} min", (a + 30) / 60)
    } else if a < 36 * 3600 {
        format!("{} h", (a + 1800) / 3600)
    } else {
        format!("{} d", (a + 43_200) / 86_400)
    };
    if d >= 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// A length of time: `<1 min`, `12 min`, `5 h`, `3 d`.
pub fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    if s < 60 {
        "<1 min".into()
    } else if s < 3600 {
        format!("{} min", s / 60)
    } else if s < 48 * 3600 {
        format!("{} h", s / 3600)
    } else {
        format!("{} d", s / 86_400)
    }
}

pub fn parse_ms(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// A time as "3 h ago", with the exact time on hover.
fn when(ms: Option<i64>, now_ms: i64) -> Markup {
    html! {
        @match ms {
            Some(ms) => time datetime=(crate::store::ms_to_rfc3339(ms)) title=(exact(ms)) { (relative(ms, now_ms)) },
            None => span.muted { "—" },
        }
    }
}

fn when_str(s: Option<&str>, now_ms: i64) -> Markup {
    match s.and_then(parse_ms) {
        Some(ms) => when(Some(ms), now_ms),
        None => html! { @if let Some(s) = s { (s) } @else { span.muted { "—" } } },
    }
}

// ---- bits ----

fn badge(kind: &str, text: &str) -> Markup {
    html! { span class={ "badge " (kind) } { (text) } }
}

/// An event status as a badge coloured by how bad it is.
fn status_badge(status: &str) -> Markup {
    let kind = match status {
        "success" | "recovered" => "good",
        "failure" | "missing" => "bad",
        "partial" => "warn",
        _ => "neutral",
    };
    badge(kind, status)
}

fn state_badge(state: State) -> Markup {
    let kind = match state {
        State::Delivered => "good",
        State::Dead => "bad",
        State::Pending => "neutral",
    };
    badge(kind, state.as_str())
}

fn join_some<'a>(parts: impl IntoIterator<Item = Option<&'a str>>) -> String {
    parts
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" · ")
}

fn options(name: &str, label: &str, choices: &[&str], chosen: Option<&str>) -> Markup {
    html! {
        label {
            span { (label) }
            select name=(name) {
                option value="" selected[chosen.is_none()] { "any" }
                @for c in choices {
                    option value=(c) selected[chosen == Some(*c)] { (c) }
                }
            }
        }
    }
}

// ---- board ----

pub struct BoardView<'a> {
    pub subjects: &'a [Subject],
    /// Subjects per state before filtering.
    pub counts: &'a BTreeMap<String, usize>,
    pub strips: &'a HashMap<String, [Day; DAYS]>,
    pub state: Option<&'a str>,
    pub source: Option<&'a str>,
    pub sources: &'a [&'a str],
}

pub fn board(v: &BoardView, chrome: &Chrome) -> Markup {
    let total: usize = v.counts.values().sum();
    let n = |s: &str| v.counts.get(s).copied().unwrap_or(0);
    let bad = n("failing") + n("missing");
    let now = chrome.now_ms;
    let body = html! {
        @if total == 0 {
            p.headline.neutral { "No backups reported yet." }
        } @else if bad == 0 {
            p.headline.good { "All " (total) " backups OK" }
        } @else {
            p.headline.bad { (bad) " of " (total) " backups need attention" }
        }
        ul.tally {
            @for (state, label) in [("failing", "failing"), ("missing", "missing"), ("new", "new"), ("ok", "ok")] {
                li class={ "st-" (state) @if n(state) == 0 { " zero" } } {
                    a href={ "/ui?state=" (state) } { strong { (n(state)) } " " (label) }
                }
            }
        }
        form.filters method="get" action="/ui" {
            (options("state", "State", &["failing", "missing", "new", "ok"], v.state))
            (options("source", "Source", v.sources, v.source))
            button type="submit" { "Filter" }
            @if v.state.is_some() || v.source.is_some() { a href="/ui" { "Show all" } }
        }
        @if v.subjects.is_empty() && total > 0 {
            p.muted { "No backup matches this filter." }
        } @else if !v.subjects.is_empty() {
            table.board {
                thead { tr {
                    th { "State" } th { "Backup" } th { "Last success" } th { "Failures in a row" }
                    th { "Next deadline" } th { "Last " (DAYS) " days" }
                } }
                tbody {
                    @for s in v.subjects {
                        (board_row(s, v.strips.get(&s.subject), now))
                    }
                }
            }
        }
    };
    layout("Backups", chrome, body)
}

fn board_row(s: &Subject, strip: Option<&[Day; DAYS]>, now: i64) -> Markup {
    let name = s
        .backup
        .as_deref()
        .filter(|b| !b.is_empty())
        .unwrap_or(&s.subject);
    let place = join_some([
        Some(s.source.as_str()),
        s.stack.as_deref(),
        s.server.as_deref(),
    ]);
    html! {
        tr class={ "st-" (s.state) } {
            td.statecell data-label="State" { span class={ "state st-" (s.state) } { (s.state) } }
            td.subject data-label="Backup" title=(s.subject) {
                @match &s.last_event_id {
                    Some(id) => a.name href={ "/ui/events/" (id) } { (name) },
                    None => span.name { (name) },
                }
                br;
                span.muted { (place) }
            }
            td data-label="Last success" {
                (when(s.last_success_at, now))
                @if s.last_success_at.is_none() { " never" }
            }
            td.num data-label="Failures in a row" {
                @if s.failures > 0 {
                    strong { (s.failures) }
                    @if let Some(d) = s.down_since {
                        br;
                        span.muted title={ "since " (exact(d)) } { "down " (span(now - d)) }
                    }
                } @else { span.muted { "0" } }
            }
            td data-label="Next deadline" { (when(s.next_deadline, now)) }
            td.strip data-label="Last 14 days" {
                @if let Some(days) = strip {
                    span.days role="img" aria-label=(strip_label(days)) {
                        @for d in days { span class={ "day " (d.class()) } title=(d.describe()) {} }
                    }
                    span.axis aria-hidden="true" { span { (DAYS - 1) " d ago" } span { "today" } }
                } @else {
                    span.days role="img" aria-label="no backup reported in 14 days" {
                        @for _ in 0..DAYS { span.day.none {} }
                    }
                    span.axis aria-hidden="true" { span { (DAYS - 1) " d ago" } span { "today" } }
                }
            }
        }
    }
}

fn strip_label(days: &[Day; DAYS]) -> String {
    let count = |c: &str| days.iter().filter(|d| d.class() == c).count();
    format!(
        "last {DAYS} days: {} ok, {} with a failure or miss, {} without a report",
        count("ok"),
        count("bad"),
        count("none")
    )
}

// ---- delivery log ----

pub struct LogView<'a> {
    pub events: &'a [EventRecord],
    pub status: Option<&'a str>,
    pub source: Option<&'a str>,
    pub delivery: Option<&'a str>,
    pub sources: &'a [&'a str],
    /// The query string of the next (older) page, if there is one.
    pub older: Option<String>,
    /// Whether this is a later page (offer the way back to the newest).
    pub paged: bool,
    pub newest: String,
}

pub const STATUSES: &[&str] = &[
    "failure",
    "missing",
    "partial",
    "unknown",
    "success",
    "recovered",
];

pub fn log(v: &LogView, chrome: &Chrome) -> Markup {
    let now = chrome.now_ms;
    let body = html! {
        h1 { "Delivery log" }
        form.filters method="get" action="/ui/events" {
            (options("status", "Status", STATUSES, v.status))
            (options("source", "Source", v.sources, v.source))
            (options("delivery", "Delivery", &["dead", "pending", "delivered"], v.delivery))
            button type="submit" { "Filter" }
            @if v.status.is_some() || v.source.is_some() || v.delivery.is_some() {
                a href="/ui/events" { "Show all" }
            }
        }
        @if v.events.is_empty() {
            p.muted { "No events." }
        } @else {
            table.log {
                thead { tr {
                    th { "Received" } th { "Status" } th { "Backup" } th { "Message" } th { "Deliveries" }
                } }
                tbody {
                    @for r in v.events { (log_row(r, now)) }
                }
            }
        }
        nav.paging {
            @if v.paged { a href={ "/ui/events" (v.newest) } { "← Newest" } }
            @if let Some(q) = &v.older { a href={ "/ui/events" (q) } { "Older →" } }
        }
    };
    layout("Delivery log", chrome, body)
}

fn log_row(r: &EventRecord, now: i64) -> Markup {
    let e = &r.event;
    let name = e
        .backup
        .as_deref()
        .or(e.event.as_deref())
        .unwrap_or("(no backup name)");
    let place = join_some([
        Some(e.source.as_str()),
        e.stack.as_deref(),
        e.server.as_deref(),
    ]);
    let count = |s: State| r.deliveries.iter().filter(|d| d.state == s).count();
    html! {
        tr class={ "ev-" (e.status.as_str()) } {
            td data-label="Received" { a href={ "/ui/events/" (r.id) } { (when_str(Some(&e.received_at), now)) } }
            td data-label="Status" { (status_badge(e.status.as_str())) }
            td.subject data-label="Backup" {
                a.name href={ "/ui/events/" (r.id) } { (name) } br;
                span.muted { (place) }
            }
            td.message data-label="Message" { (shorten(e.message.as_deref().unwrap_or(""), 160)) }
            td data-label="Deliveries" {
                @if r.deliveries.is_empty() {
                    span.muted { @if r.routed { "none" } @else { "unrouted" } }
                }
                @for (s, n) in [(State::Dead, count(State::Dead)), (State::Pending, count(State::Pending)), (State::Delivered, count(State::Delivered))] {
                    @if n > 0 { span class={ "count " (s.as_str()) } { (n) " " (s.as_str()) } " " }
                }
            }
        }
    }
}

fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

// ---- event ----

pub struct EventView<'a> {
    pub record: &'a EventRecord,
    /// The group a route held this event in (SPEC §10), if any.
    pub group: Option<&'a crate::group::GroupView>,
    pub csrf: &'a str,
    /// What the last button did ("Delivery 3 queued for retry.").
    pub flash: Option<&'a str>,
}

pub fn event(v: &EventView, chrome: &Chrome) -> Markup {
    let r = v.record;
    let e = &r.event;
    let now = chrome.now_ms;
    let name = e
        .backup
        .as_deref()
        .or(e.event.as_deref())
        .unwrap_or("Event");
    let fields = e.fields_json();
    let raw = serde_json::to_string_pretty(&e.raw).unwrap_or_default();
    let body = html! {
        @if let Some(f) = v.flash { p.flash role="status" { (f) } }
        div.eventhead {
            h1 { (status_badge(e.status.as_str())) " " (name) }
            p.muted { (join_some([Some(e.source.as_str()), e.stack.as_deref(), e.server.as_deref(), e.event.as_deref()])) }
            @if let Some(m) = e.message.as_deref().filter(|m| !m.is_empty()) { p.message { (m) } }
            p.muted {
                "Received " (when_str(Some(&e.received_at), now))
                @if let Some(o) = e.occurred_at.as_deref() { " · occurred " (when_str(Some(o), now)) }
                @if r.duplicates > 0 { " · " (r.duplicates) " duplicate(s) dropped" }
                " · id " code { (r.id) }
            }
            form.inline method="post" action={ "/ui/events/" (r.id) "/replay" } {
                input type="hidden" name="csrf" value=(v.csrf);
                @if crate::digest::is_digest(e) {
                    // A digest is not routed (see `replay_event`).
                    button type="submit" title="Send this digest again, as it was, to the destinations it went to" { "Send digest again" }
                } @else {
                    button type="submit" title="Route this event again with the current config and send new deliveries" { "Replay event" }
                }
            }
        }
        h2 { "Deliveries" }
        @if let Some(g) = v.group {
            p.muted {
                @if g.first_event == r.id { "First of " } @else { "One of " }
                (g.count) " events a route grouped into one message"
                @match g.state.as_str() {
                    "sent" => {
                        ", sent " (when_str(Some(&g.due_at), now))
                        @if g.first_event != r.id {
                            ": its deliveries are on " a href={ "/ui/events/" (g.first_event) } { "the group's first event" }
                        }
                    },
                    _ => { ", held until " (when_str(Some(&g.due_at), now)) },
                }
                "."
            }
        }
        @if r.deliveries.is_empty() {
            p.muted { @if r.routed { "No deliveries." } @else { "Unrouted: no route matched this event." } }
        }
        @for d in &r.deliveries { (delivery(d, &r.id, v.csrf, now)) }
        h2 { "Normalized event" }
        dl.fields {
            @for (k, val) in &fields {
                dt { (k) }
                dd { @match val {
                    Value::Null => span.muted { "—" },
                    Value::String(s) => (s),
                    other => (other.to_string()),
                } }
            }
        }
        h2 { "Payload as received" }
        pre.payload { code { (raw) } }
    };
    layout(name, chrome, body)
}

fn delivery(d: &DeliveryView, event_id: &str, csrf: &str, now: i64) -> Markup {
    html! {
        section class={ "delivery " (d.state.as_str()) } id={ "delivery-" (d.id) } {
            div.dhead {
                h3 { (d.destination) " " (state_badge(d.state)) }
                @if d.state == State::Dead {
                    form.inline method="post" action={ "/ui/deliveries/" (d.id) "/retry" } {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="event" value=(event_id);
                        button.primary type="submit" { "Retry delivery" }
                    }
                }
            }
            p.muted {
                "Delivery " (d.id) " · template " code { (d.template) } " · created " (when_str(Some(&d.created_at), now))
                @if let Some(n) = &d.next_attempt_at { " · next attempt " (when_str(Some(n), now)) }
            }
            // A delivered one with a last error ended without a request or with a
            // note (recipients refused, a PagerDuty event superseded or sending
            // nothing): what happened, not a failure.
            @if let Some(err) = &d.last_error {
                @if d.state == State::Delivered {
                    p.muted.delivered-note { "Note: " (err) }
                } @else {
                    p.error { "Last error: " (err) }
                }
            }
            @if d.attempts.is_empty() {
                p.muted { "No attempt yet." }
            } @else {
                table.attempts {
                    thead { tr { th { "#" } th { "When" } th { "HTTP" } th { "Result" } th { "Took" } } }
                    tbody {
                        @for (i, a) in d.attempts.iter().enumerate() {
                            tr {
                                td data-label="#" { (i + 1) }
                                td data-label="When" { (when_str(Some(&a.at), now)) }
                                td data-label="HTTP" { @match a.status { Some(s) => (s), None => span.muted { "—" } } }
                                td data-label="Result" {
                                    @match &a.error {
                                        // The attempt that ended a delivered one: done, with a note.
                                        Some(e) if d.state == State::Delivered && i + 1 == d.attempts.len() => span.muted { "ok — " (e) },
                                        Some(e) => span.error { (e) },
                                        None => "ok",
                                    }
                                }
                                td data-label="Took" { (a.duration_ms) " ms" }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---- sign-in and errors ----

pub fn login(csrf: &str, next: &str, error: Option<&str>, now_ms: i64) -> Markup {
    let chrome = Chrome {
        csrf: None,
        tab: "",
        now_ms,
    };
    let body = html! {
        form.login method="post" action="/ui/login" {
            h1 { "Sign in" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            label for="token" { "Admin token" }
            input #token type="password" name="token" autocomplete="current-password" required autofocus;
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="next" value=(next);
            button.primary type="submit" { "Sign in" }
            p.muted { "The " code { "admin.token" } " from relay.yaml." }
        }
    };
    layout("Sign in", &chrome, body)
}

pub fn error(message: &str, chrome: &Chrome) -> Markup {
    let body = html! {
        h1 { "Sorry" }
        p.error { (message) }
        p { a href="/ui" { "Back to the backups" } }
    };
    layout("Error", chrome, body)
}
