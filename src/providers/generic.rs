//! `kind: generic` sources -> normalized event. Owns reading each configured field
//! through its JSON Pointer (`fields: {server: /host/name, …}`) and folding the
//! common ways tools spell an outcome (`OK`, `errored`, `warning`, …) into a
//! [`Status`]. Fields not configured, or whose pointer finds nothing usable, stay
//! `None`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{at, size_of, text_of, time_of};
use crate::event::{Event, Status};

pub fn normalize(raw: &Value, fields: &BTreeMap<String, String>) -> Event {
    // An invalid pointer (say, missing its leading `/`) simply finds nothing;
    // config validation is where such mistakes are reported.
    let found = |name: &str| fields.get(name).and_then(|p| at(raw, p));
    let text = |name: &str| found(name).and_then(text_of);
    Event {
        event: text("event"),
        status: text("status")
            .as_deref()
            .map_or(Status::Unknown, fold_status),
        stack: text("stack"),
        environment: text("environment"),
        server: text("server"),
        account: text("account"),
        backup: text("backup"),
        database: text("database"),
        size_bytes: found("size_bytes").and_then(size_of),
        occurred_at: found("occurred_at").and_then(time_of),
        id: text("id"),
        message: text("message"),
        ..Event::default()
    }
}

/// The normalized vocabulary verbatim, else common words case-insensitively.
fn fold_status(s: &str) -> Status {
    if let Some(st) = Status::parse(s) {
        return st;
    }
    match s.trim().to_ascii_lowercase().as_str() {
        "fail" | "failed" | "failure" | "error" | "errored" => Status::Failure,
        "ok" | "success" | "succeeded" | "passed" | "completed" => Status::Success,
        "partial" | "partial_success" | "warning" => Status::Partial,
        "missing" | "missed" => Status::Missing,
        _ => Status::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn all_fields() -> BTreeMap<String, String> {
        map(&[
            ("event", "/kind"),
            ("status", "/result/state"),
            ("stack", "/app/name"),
            ("environment", "/app/env"),
            ("server", "/host/name"),
            ("account", "/owner"),
            ("backup", "/repository/name"),
            ("database", "/db/0"),
            ("size_bytes", "/stats/bytes"),
            ("occurred_at", "/at"),
            ("id", "/run_id"),
            ("message", "/result/log"),
        ])
    }

    #[test]
    fn maps_every_field_through_pointers() {
        let raw = json!({
            "kind": "backup.done",
            "result": {"state": "OK", "log": "all good"},
            "app": {"name": "shop", "env": "prod"},
            "host": {"name": "db-1"},
            "owner": "ops",
            "repository": {"name": "nightly"},
            "db": ["postgres", "redis"],
            "stats": {"bytes": "4096"},
            "at": "2024-03-01T10:00:00+02:00",
            "run_id": 31337,
            "a/b": {"c~d": "escaped"}
        });
        let e = normalize(&raw, &all_fields());
        assert_eq!(e.event.as_deref(), Some("backup.done"));
        assert_eq!(e.status, Status::Success);
        assert_eq!(e.stack.as_deref(), Some("shop"));
        assert_eq!(e.environment.as_deref(), Some("prod"));
        assert_eq!(e.server.as_deref(), Some("db-1"));
        assert_eq!(e.account.as_deref(), Some("ops"));
        assert_eq!(e.backup.as_deref(), Some("nightly"));
        assert_eq!(e.database.as_deref(), Some("postgres"));
        assert_eq!(e.size_bytes, Some(4096));
        assert_eq!(e.occurred_at.as_deref(), Some("2024-03-01T08:00:00Z"));
        assert_eq!(e.id.as_deref(), Some("31337"));
        assert_eq!(e.message.as_deref(), Some("all good"));

        // JSON Pointer escapes work as RFC 6901 says.
        let e = normalize(&raw, &map(&[("message", "/a~1b/c~0d")]));
        assert_eq!(e.message.as_deref(), Some("escaped"));
    }

    #[test]
    fn status_folding() {
        for (word, want) in [
            ("success", Status::Success),
            ("failure", Status::Failure),
            ("partial", Status::Partial),
            ("missing", Status::Missing),
            ("unknown", Status::Unknown),
            ("fail", Status::Failure),
            ("FAILED", Status::Failure),
            ("Failure", Status::Failure),
            ("error", Status::Failure),
            ("Errored", Status::Failure),
            ("ok", Status::Success),
            ("OK", Status::Success),
            ("SUCCESS", Status::Success),
            ("succeeded", Status::Success),
            ("Passed", Status::Success),
            ("completed", Status::Success),
            ("partial_success", Status::Partial),
            ("PARTIAL_SUCCESS", Status::Partial),
            ("Warning", Status::Partial),
            ("missed", Status::Missing),
            ("MISSING", Status::Missing),
            (" ok ", Status::Success),
            ("running", Status::Unknown),
            ("", Status::Unknown),
        ] {
            let e = normalize(&json!({ "s": word }), &map(&[("status", "/s")]));
            assert_eq!(e.status, want, "{word:?}");
        }
    }

    #[test]
    fn times_in_the_accepted_forms() {
        for (at, want) in [
            (json!(1549003180), Some("2019-02-01T06:39:40Z")),
            (json!(1549003180.5), Some("2019-02-01T06:39:40.500Z")),
            (json!("1549003180"), Some("2019-02-01T06:39:40Z")),
            (
                json!("2019-02-01 01:39:40 UTC"),
                Some("2019-02-01T01:39:40Z"),
            ),
            (
                json!("2019-02-01T20:00:04.289Z"),
                Some("2019-02-01T20:00:04.289Z"),
            ),
            (json!("2021-10-10 10:10:10"), Some("2021-10-10T10:10:10Z")),
            (json!("2021-10-10T10:10:10"), Some("2021-10-10T10:10:10Z")),
            (
                json!("2021-10-10 10:10:10 +0200"),
                Some("2021-10-10T08:10:10Z"),
            ),
            (json!("not a time"), None),
            (json!("2021-13-45 99:99:99"), None),
            (json!("99999999999999999999"), None),
            (json!(1e20), None),
            (json!(-1e20), None),
            (json!(253402300800_i64), None), // year 10000: not RFC 3339
            (json!(""), None),
            (json!(true), None),
            (json!({"t": 1}), None),
        ] {
            let e = normalize(&json!({ "t": at }), &map(&[("occurred_at", "/t")]));
            assert_eq!(e.occurred_at.as_deref(), want, "{at}");
        }
    }

    #[test]
    fn sizes_from_numbers_and_numeric_strings() {
        for (v, want) in [
            (json!(10), Some(10)),
            (json!("10"), Some(10)),
            (json!(" 10 "), Some(10)),
            (json!(10.0), Some(10)),
            (json!(10.5), None),
            (json!(-1), None),
            (json!("-1"), None),
            (json!("ten"), None),
            (json!(1e30), None),
            (json!(null), None),
            (json!([10]), None),
        ] {
            let e = normalize(&json!({ "n": v }), &map(&[("size_bytes", "/n")]));
            assert_eq!(e.size_bytes, want, "{v}");
        }
    }

    #[test]
    fn unmapped_bad_and_unknown_fields() {
        let raw = json!({"hello": 1, "arr": [1, 2], "obj": {}, "nul": null});
        let fields = map(&[
            ("event", "/nope"),
            ("status", "/arr"),
            ("server", "no-leading-slash"),
            ("backup", "/obj"),
            ("account", "/nul"),
            ("id", "/hello"),
            ("not_a_field", "/hello"),
        ]);
        let e = normalize(&raw, &fields);
        assert_eq!(e.event, None);
        assert_eq!(e.status, Status::Unknown);
        assert_eq!(e.server, None);
        assert_eq!(e.backup, None);
        assert_eq!(e.account, None);
        assert_eq!(e.id.as_deref(), Some("1"));

        for raw in [json!(null), json!([1]), json!(3), json!("x")] {
            let e = normalize(&raw, &all_fields());
            assert_eq!(e, Event::default());
        }
        assert_eq!(normalize(&raw, &BTreeMap::new()), Event::default());
    }
}
