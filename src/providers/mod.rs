//! Providers: one file per backup provider, each turning a raw JSON payload into the
//! normalized [`Event`] of SPEC §4.
//!
//! Adding a provider: one file here, one `SourceKind` variant in `config.rs`, one
//! arm in [`normalize`], and a fixture in `tests/fixtures/`.

pub mod centurylink;
pub mod cloud66;
pub mod generic;
pub mod simplebackups;

use chrono::{DateTime, Datelike, NaiveDateTime, Utc};
use serde_json::Value;

use crate::config::{SourceConfig, SourceKind};
use crate::event::{scalar_string, Event, Status};

/// Normalized fields a `kind: generic` source may map with JSON Pointers.
pub const GENERIC_FIELDS: &[&str] = &[
    "event",
    "status",
    "stack",
    "environment",
    "server",
    "account",
    "backup",
    "database",
    "size_bytes",
    "occurred_at",
    "id",
    "message",
];

/// Normalizes `raw` as the source's provider would send it. Never fails: a payload
/// that does not look like the provider's still yields an event, with
/// `status: unknown` and whatever fields could be found.
pub fn normalize(
    source: &str,
    cfg: &SourceConfig,
    raw: Value,
    received_at: DateTime<Utc>,
) -> Event {
    let mut e = match cfg.kind {
        SourceKind::Cloud66 => cloud66::normalize(&raw),
        SourceKind::Centurylink => centurylink::normalize(&raw),
        SourceKind::Simplebackups => simplebackups::normalize(&raw),
        SourceKind::Generic => generic::normalize(&raw, &cfg.fields),
    };
    one_line(&mut e);
    e.source = source.to_string();
    e.provider = cfg.kind.as_str().to_string();
    e.received_at = rfc3339(received_at);
    if e.status == Status::Unknown && e.message.is_none() {
        // Nothing recognised and nothing to say: a short excerpt of what came,
        // so on-call has something to act on. Templates escape it like any value.
        e.message = Some(format!("Payload: {}", excerpt(&raw, EXCERPT_CHARS)));
    }
    e.raw = raw;
    e
}

/// Fields that name something hold one line: a newline (or any control character)
/// in a server or backup name would show as a line of its own in a text message —
/// `"db1\nStatus: success"` faking a field under a failure. Each run of control
/// characters becomes one space. `message` keeps its lines.
fn one_line(e: &mut Event) {
    for v in [
        &mut e.event,
        &mut e.stack,
        &mut e.environment,
        &mut e.server,
        &mut e.account,
        &mut e.backup,
        &mut e.database,
        &mut e.id,
        &mut e.occurred_at,
    ]
    .into_iter()
    .flatten()
    {
        if v.chars().any(char::is_control) {
            *v = v
                .split(char::is_control)
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
        }
    }
}

/// How much of an unrecognised payload its message quotes.
pub const EXCERPT_CHARS: usize = 300;

/// `v` as compact JSON, cut to `max` characters with a visible "…".
pub fn excerpt(v: &Value, max: usize) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    if s.chars().count() <= max {
        return s;
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// RFC 3339 in UTC with a `Z`, whole seconds unless the input had fractions.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    // chrono's RFC 3339 writer panics outside years 0..=9999; payload times can be
    // anything, so those fall back to a plain (signed-year) rendering instead.
    rfc3339_checked(t).unwrap_or_else(|| t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string())
}

/// [`rfc3339`] for times that came from a payload: `None` when the year cannot be
/// written as RFC 3339, so an absurd timestamp becomes "no time" rather than a
/// string nobody downstream can parse.
fn rfc3339_checked(t: DateTime<Utc>) -> Option<String> {
    if (0..=9999).contains(&t.year()) {
        Some(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    } else {
        None
    }
}

// Small readers shared by the providers. Each takes whatever JSON is there and
// answers `None` rather than failing, because a payload's shape is never trusted.

/// The value at a JSON Pointer as text: strings as they are, numbers and booleans
/// stringified (providers are loose about ids), empty strings, null, objects and
/// arrays as `None`.
pub(crate) fn text_at(v: &Value, pointer: &str) -> Option<String> {
    at(v, pointer).and_then(text_of)
}

/// [`Value::pointer`] without its allocation per segment: segments are only
/// copied when they hold an escape (`~0`, `~1`). Runs several times per webhook.
pub(crate) fn at<'a>(v: &'a Value, pointer: &str) -> Option<&'a Value> {
    if pointer.is_empty() {
        return Some(v);
    }
    let rest = pointer.strip_prefix('/')?;
    let mut cur = v;
    for seg in rest.split('/') {
        let unescaped;
        let key = if seg.contains('~') {
            unescaped = seg.replace("~1", "/").replace("~0", "~");
            unescaped.as_str()
        } else {
            seg
        };
        cur = match cur {
            Value::Object(m) => m.get(key)?,
            Value::Array(a) => {
                // As RFC 6901 (and `Value::pointer`): no sign, no leading zeros.
                if key.starts_with('+') || (key.starts_with('0') && key.len() != 1) {
                    return None;
                }
                a.get(key.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

/// [`text_at`] for a value already in hand.
pub(crate) fn text_of(v: &Value) -> Option<String> {
    scalar_string(v).filter(|s| !s.trim().is_empty())
}

/// A byte count from a non-negative integer, an integral float, or a numeric string.
pub(crate) fn size_of(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            // Integral floats such as `1024.0` are still sizes; anything negative,
            // fractional or beyond u64 is not.
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < 1.8e19)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
}

/// A time from unix seconds (number or digit string) or one of the textual forms
/// providers send, as RFC 3339 UTC. `None` when it cannot be read.
pub(crate) fn time_of(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(secs) => unix_seconds(secs, 0),
            None => n.as_f64().and_then(unix_float),
        },
        Value::String(s) => parse_time(s),
        _ => None,
    }
}

/// Parses the textual times seen in payloads, as RFC 3339 UTC:
/// RFC 3339 (`2019-02-01T20:00:04.289Z`), CenturyLink's `2019-02-01 01:39:40 UTC`,
/// zone-less `2021-10-10 10:10:10` (SimpleBackups; read as UTC), an explicit numeric
/// offset after a space, and unix seconds written as digits.
pub(crate) fn parse_time(s: &str) -> Option<String> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    plain_utc(s).or_else(|| parse_time_general(s))
}

fn parse_time_general(s: &str) -> Option<String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return rfc3339_checked(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f %z", "%Y-%m-%dT%H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return rfc3339_checked(t.with_timezone(&Utc));
        }
    }
    // Zone-less and `UTC`/`Z`-suffixed forms are all UTC.
    let naive = s
        .strip_suffix("UTC")
        .or_else(|| s.strip_suffix('Z'))
        .unwrap_or(s)
        .trim_end();
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive, fmt) {
            return rfc3339_checked(t.and_utc());
        }
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().ok().and_then(|secs| unix_seconds(secs, 0));
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return s.parse::<f64>().ok().and_then(unix_float);
    }
    None
}

/// `YYYY-MM-DD HH:MM:SS` exactly (SimpleBackups' form, read as UTC), without
/// chrono's format-string parser: it is the form most webhooks carry. Anything
/// else, including impossible dates, is left to the general parsers.
fn plain_utc(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    chrono::NaiveDate::from_ymd_opt(y as i32, mo, d)?.and_hms_opt(h, mi, sec)?;
    Some(format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{sec:02}Z"))
}

fn unix_seconds(secs: i64, nanos: u32) -> Option<String> {
    DateTime::from_timestamp(secs, nanos).and_then(rfc3339_checked)
}

fn unix_float(f: f64) -> Option<String> {
    // Out-of-range values are rejected here so the casts below are exact enough and
    // never saturate into a wrong-but-valid date.
    if !f.is_finite() || f.abs() > 1.0e13 {
        return None;
    }
    let secs = f.floor();
    let nanos = ((f - secs) * 1e9).round().min(999_999_999.0) as u32;
    unix_seconds(secs as i64, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn cfg(kind: SourceKind, fields: &[(&str, &str)]) -> SourceConfig {
        SourceConfig {
            kind,
            token: None,
            secret: None,
            hmac: None,
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            dedup_window: Duration::from_secs(600),
        }
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).single().unwrap()
    }

    #[test]
    fn names_hold_one_line_and_the_message_keeps_its_lines() {
        let raw = json!({
            "id": 7, "type": "backup", "status": "error",
            "server": {"name": "db1\nStatus: success"},
            "backup": {"name": "nightly\r\n\t\u{1b}[31mred"},
            "message": "line one\nline two"
        });
        let e = normalize("sb", &cfg(SourceKind::Simplebackups, &[]), raw, at());
        assert_eq!(e.server.as_deref(), Some("db1 Status: success"));
        assert_eq!(e.backup.as_deref(), Some("nightly [31mred"));
        assert_eq!(e.status, Status::Failure);
        let raw = json!({"status": "failure", "server": "a\nb", "message": "line one\nline two"});
        let e = normalize(
            "g",
            &cfg(
                SourceKind::Generic,
                &[
                    ("status", "/status"),
                    ("server", "/server"),
                    ("message", "/message"),
                ],
            ),
            raw,
            at(),
        );
        assert_eq!(e.server.as_deref(), Some("a b"));
        assert_eq!(e.message.as_deref(), Some("line one\nline two"));
    }

    #[test]
    fn plain_times_read_as_the_general_parser_reads_them() {
        for s in [
            "2021-10-10 10:10:10",
            "0000-01-01 00:00:00",
            "9999-12-31 23:59:59",
            "2024-02-29 12:00:00",
            "2023-02-29 12:00:00",
            "2021-13-01 00:00:00",
            "2021-10-10 24:00:00",
            "2021-10-10 23:59:60",
            "2021-1a-10 10:10:10",
            "2021-10-10T10:10:10",
            "2021-10-10 10:10:1",
        ] {
            assert_eq!(parse_time(s), parse_time_general(s), "{s}");
        }
        assert_eq!(
            plain_utc("2021-10-10 10:10:10").as_deref(),
            Some("2021-10-10T10:10:10Z")
        );
        assert_eq!(plain_utc("2021-10-10T10:10:10"), None);
    }

    #[test]
    fn pointer_reads_as_value_pointer_does() {
        let v = json!({
            "a": {"b": [10, {"c/d": 1, "e~f": 2, "": 3}]},
            "0": "zero",
            "list": ["x", "y"],
        });
        for p in [
            "",
            "/",
            "/a",
            "/a/b",
            "/a/b/0",
            "/a/b/1/c~1d",
            "/a/b/1/e~0f",
            "/a/b/1/",
            "/a/b/01",
            "/a/b/+1",
            "/a/b/2",
            "/a/b/x",
            "/0",
            "/list/1",
            "/list/-",
            "a",
            "/missing/deeper",
            "/a/b/0/c",
        ] {
            assert_eq!(super::at(&v, p), v.pointer(p), "{p:?}");
        }
    }

    #[test]
    fn sets_source_provider_received_at_and_raw() {
        let raw: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/simplebackups/error.json"
        ))
        .unwrap();
        let e = normalize(
            "sb-main",
            &cfg(SourceKind::Simplebackups, &[]),
            raw.clone(),
            at(),
        );
        assert_eq!(e.source, "sb-main");
        assert_eq!(e.provider, "simplebackups");
        assert_eq!(e.received_at, "2024-05-06T07:08:09Z");
        assert_eq!(e.raw, raw);
        assert_eq!(e.status, Status::Failure);
        assert_eq!(e.message.as_deref(), Some("Backup Acme Project failed"));
    }

    #[test]
    fn dispatches_on_kind() {
        let c66: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/cloud66/managed_backup.fail.json"
        ))
        .unwrap();
        let e = normalize("c", &cfg(SourceKind::Cloud66, &[]), c66, at());
        assert_eq!(e.provider, "cloud66");
        assert_eq!(e.stack.as_deref(), Some("my-production-app"));
        assert_eq!(e.status, Status::Failure);

        let ctl: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/centurylink/missing-text-only.json"
        ))
        .unwrap();
        let e = normalize("l", &cfg(SourceKind::Centurylink, &[]), ctl, at());
        assert_eq!(e.provider, "centurylink");
        assert_eq!(e.status, Status::Missing);

        let e = normalize(
            "g",
            &cfg(SourceKind::Generic, &[("status", "/r"), ("server", "/h")]),
            json!({"r": "errored", "h": "db-1"}),
            at(),
        );
        assert_eq!(e.provider, "generic");
        assert_eq!(e.source, "g");
        assert_eq!(e.status, Status::Failure);
        assert_eq!(e.server.as_deref(), Some("db-1"));
    }

    #[test]
    fn no_kind_panics_or_fails_on_odd_payloads() {
        let kinds = [
            SourceKind::Cloud66,
            SourceKind::Centurylink,
            SourceKind::Simplebackups,
            SourceKind::Generic,
        ];
        let payloads = [
            json!({"hello": 1}),
            json!([1, "two", null]),
            json!(12),
            json!(null),
            json!("text"),
            json!({"text": null, "status": {}, "backup": [], "stack": 1, "timestamp": []}),
        ];
        for kind in kinds {
            let c = cfg(kind, &[("status", "/hello"), ("occurred_at", "/0")]);
            for p in &payloads {
                let e = normalize("s", &c, p.clone(), at());
                assert_eq!(e.status, Status::Unknown, "{kind:?} {p}");
                assert_eq!(e.provider, kind.as_str());
                assert_eq!(&e.raw, p);
            }
        }
    }

    #[test]
    fn rfc3339_formats() {
        assert_eq!(rfc3339(at()), "2024-05-06T07:08:09Z");
        let ms = Utc
            .timestamp_millis_opt(1_549_051_204_289)
            .single()
            .unwrap();
        assert_eq!(rfc3339(ms), "2019-02-01T20:00:04.289Z");
        // Out of RFC 3339's year range: no panic, still a readable string.
        let far = DateTime::from_timestamp(253_402_300_800, 0).unwrap();
        assert_eq!(rfc3339(far), "+10000-01-01T00:00:00Z");
    }

    #[test]
    fn an_unrecognised_payload_says_what_came() {
        let raw = json!({"event": "backup.started", "note": "<!channel> & *bold*"});
        let e = normalize("c66", &cfg(SourceKind::Cloud66, &[]), raw, at());
        assert_eq!(e.status, Status::Unknown);
        assert_eq!(
            e.message.as_deref(),
            Some(r#"Payload: {"event":"backup.started","note":"<!channel> & *bold*"}"#)
        );
        let big = json!({"x": "y".repeat(1000)});
        let e = normalize("c66", &cfg(SourceKind::Cloud66, &[]), big, at());
        let m = e.message.unwrap();
        assert_eq!(m.chars().count(), "Payload: ".len() + EXCERPT_CHARS);
        assert!(m.ends_with('…'));
        // A recognised event keeps its own message.
        let sb: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/simplebackups/success.json"
        ))
        .unwrap();
        let e = normalize("sb", &cfg(SourceKind::Simplebackups, &[]), sb, at());
        assert!(!e.message.unwrap().starts_with("Payload"));
    }
}
