//! CenturyLink (Lumen) Simple Backup webhooks -> normalized event. Owns both payload
//! generations: the structured one (`status`, `server`, `accountPolicyName`,
//! `finishedDate`/`expectedDate`, …, plus a human `text`) and the older one that
//! carries only `text`, from which the same fields are parsed. Structured fields win
//! over what the text says.

use serde_json::Value;

use super::{parse_time, text_at};
use crate::event::{Event, Status};

/// The event name CenturyLink's payloads imply for a missed backup; they carry no
/// `status` of their own.
const MISSING: &str = "MISSING";

pub fn normalize(raw: &Value) -> Event {
    let text = text_at(raw, "/text");
    let parsed = text.as_deref().map(parse_text).unwrap_or_default();

    let expected = text_at(raw, "/expectedDate");
    // A structured payload with an expected date and no status is a missed backup.
    let event = text_at(raw, "/status")
        .or_else(|| expected.as_ref().map(|_| MISSING.to_string()))
        .or(parsed.status);
    let status = event.as_deref().map_or(Status::Unknown, status_of);

    let occurred_at = text_at(raw, "/finishedDate")
        .or(expected)
        .as_deref()
        .and_then(parse_time)
        .or_else(|| parsed.time.as_deref().and_then(parse_time));

    Event {
        event,
        status,
        server: text_at(raw, "/server").or(parsed.server),
        account: text_at(raw, "/account").or(parsed.account),
        backup: text_at(raw, "/accountPolicyName").or(parsed.policy),
        occurred_at,
        id: text_at(raw, "/restorePointId").or(parsed.restore_point),
        message: text,
        ..Event::default()
    }
}

/// CenturyLink's event names; unfamiliar ones stay unknown (the event string is
/// kept as given by the caller).
fn status_of(event: &str) -> Status {
    match event.trim().to_ascii_uppercase().as_str() {
        "FAILED" => Status::Failure,
        "PARTIAL_SUCCESS" => Status::Partial,
        "SUCCESS" => Status::Success,
        MISSING => Status::Missing,
        _ => Status::Unknown,
    }
}

/// What the `text` of a payload says, field by field.
#[derive(Debug, Default, PartialEq)]
struct TextFields {
    status: Option<String>,
    account: Option<String>,
    server: Option<String>,
    policy: Option<String>,
    restore_point: Option<String>,
    /// Finished (or, for a missed backup, expected) time, as written.
    time: Option<String>,
}

fn parse_text(text: &str) -> TextFields {
    parse_missed(text).unwrap_or_else(|| parse_labelled(text))
}

/// `<server> missed a backup expected at <time> for policy [<policy>] with …`
fn parse_missed(text: &str) -> Option<TextFields> {
    const MARK: &str = " missed a backup";
    let at = text.find(MARK)?;
    let server = text.get(..at).map(str::trim).filter(|s| !s.is_empty());
    let rest = text.get(at + MARK.len()..).unwrap_or("");
    let time = after(rest, "expected at ")
        .and_then(|s| s.split_whitespace().next())
        .map(str::to_string);
    let policy = after(rest, "for policy [")
        .and_then(|s| s.split(']').next())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Some(TextFields {
        status: Some(MISSING.to_string()),
        server: server.map(str::to_string),
        policy,
        time,
        ..TextFields::default()
    })
}

fn after<'a>(s: &'a str, marker: &str) -> Option<&'a str> {
    s.find(marker).and_then(|i| s.get(i + marker.len()..))
}

/// The labels of the `Status: … - Account: … - …` text. Values are found between
/// labels rather than by splitting on `-`, because the values themselves contain
/// dashes (uuids, dates, policy names) and the spacing around the separators varies.
const LABELS: &[&str] = &[
    "status:",
    "account:",
    "server:",
    "account policy name:",
    "restore point id:",
    "finished date/time:",
];

/// `Status: FAILED - Account: TEST - Server: … - Account Policy Name: … -
/// Restore Point Id: … - Finished Date/Time: 2018-12-20 01:39:38 UTC`, with any
/// spacing around the `-`, labels in any order, some possibly absent.
fn parse_labelled(text: &str) -> TextFields {
    // ASCII lowercasing keeps every byte offset, so positions found in `lower` are
    // valid in `text`; labels are ASCII, so those offsets are char boundaries.
    let lower = text.to_ascii_lowercase();

    // (label start, value start, label index) for each label that starts the text
    // or follows a `-` separator; a label word inside a value does not count.
    let mut found: Vec<(usize, usize, usize)> = Vec::new();
    for (idx, label) in LABELS.iter().enumerate() {
        let mut from = 0;
        while let Some(rel) = lower.get(from..).and_then(|s| s.find(label)) {
            let start = from + rel;
            let before = lower.get(..start).unwrap_or("").trim_end();
            if before.is_empty() || before.ends_with('-') {
                found.push((start, start + label.len(), idx));
                break;
            }
            from = start + label.len();
        }
    }
    found.sort_unstable();

    let mut out = TextFields::default();
    for (n, &(_, value_start, idx)) in found.iter().enumerate() {
        let value_end = found.get(n + 1).map_or(text.len(), |next| next.0);
        let value = text.get(value_start..value_end).unwrap_or("").trim();
        // The separator before the next label belongs to neither value.
        let value = value.strip_suffix('-').unwrap_or(value).trim();
        if value.is_empty() {
            continue;
        }
        let slot = match idx {
            0 => &mut out.status,
            1 => &mut out.account,
            2 => &mut out.server,
            3 => &mut out.policy,
            4 => &mut out.restore_point,
            _ => &mut out.time,
        };
        *slot = Some(value.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    struct Want {
        event: &'static str,
        status: Status,
        server: &'static str,
        account: Option<&'static str>,
        backup: &'static str,
        occurred_at: &'static str,
        id: Option<&'static str>,
    }

    fn check(raw: &Value, w: Want) {
        let e = normalize(raw);
        assert_eq!(e.event.as_deref(), Some(w.event));
        assert_eq!(e.status, w.status);
        assert_eq!(e.stack, None);
        assert_eq!(e.environment, None);
        assert_eq!(e.server.as_deref(), Some(w.server));
        assert_eq!(e.account.as_deref(), w.account);
        assert_eq!(e.backup.as_deref(), Some(w.backup));
        assert_eq!(e.database, None);
        assert_eq!(e.size_bytes, None);
        assert_eq!(e.occurred_at.as_deref(), Some(w.occurred_at));
        assert_eq!(e.id.as_deref(), w.id);
        assert_eq!(e.message.as_deref(), raw["text"].as_str());
        assert!(e.message.is_some());
    }

    #[test]
    fn failed_fixture_structured_fields_win() {
        let raw = fixture(include_str!("../../tests/fixtures/centurylink/failed.json"));
        check(
            &raw,
            Want {
                event: "FAILED",
                status: Status::Failure,
                server: "testServerId20190201013933",
                account: Some("TEST"),
                // The field says ...35, the text ...33: the field wins.
                backup: "TestAccountPolicyName20190201013935",
                occurred_at: "2019-02-01T01:39:40Z",
                id: Some("c56b1fd4-b566-4044-a696-0f1311ffdeee"),
            },
        );
    }

    #[test]
    fn failed_text_only_fixture() {
        let raw = fixture(include_str!(
            "../../tests/fixtures/centurylink/failed-text-only.json"
        ));
        check(
            &raw,
            Want {
                event: "FAILED",
                status: Status::Failure,
                server: "testServerId20190102013933",
                account: Some("TEST"),
                backup: "TestAccountPolicyName20190102013933",
                occurred_at: "2018-12-20T01:39:38Z",
                id: Some("3f68fa31-731e-4c77-bbc1-8892ec8667e4"),
            },
        );
    }

    #[test]
    fn missing_fixture() {
        let raw = fixture(include_str!(
            "../../tests/fixtures/centurylink/missing.json"
        ));
        check(
            &raw,
            Want {
                event: "MISSING",
                status: Status::Missing,
                server: "testServerId20181228013921",
                account: Some("TEST"),
                backup: "TestAccountPolicyName20181228013921",
                occurred_at: "2019-02-01T20:00:04.289Z",
                id: None,
            },
        );
    }

    #[test]
    fn missing_text_only_fixture() {
        let raw = fixture(include_str!(
            "../../tests/fixtures/centurylink/missing-text-only.json"
        ));
        check(
            &raw,
            Want {
                event: "MISSING",
                status: Status::Missing,
                server: "testServerId20181228013921",
                account: None,
                backup: "TestAccountPolicyName20181228013921",
                occurred_at: "2018-12-20T17:00:06.476Z",
                id: None,
            },
        );
    }

    #[test]
    fn partial_success_fixture() {
        let raw = fixture(include_str!(
            "../../tests/fixtures/centurylink/partial_success.json"
        ));
        check(
            &raw,
            Want {
                event: "PARTIAL_SUCCESS",
                status: Status::Partial,
                server: "IL1TESTWIND0803",
                account: Some("TEST"),
                backup: "andy-test-windows-20181019",
                occurred_at: "2019-02-01T01:05:00Z",
                id: Some("5e641ec2-24c1-40aa-a93a-d75e66f37d1220190131170408"),
            },
        );
    }

    #[test]
    fn partial_success_text_only_fixture() {
        let raw = fixture(include_str!(
            "../../tests/fixtures/centurylink/partial_success-text-only.json"
        ));
        check(
            &raw,
            Want {
                event: "PARTIAL_SUCCESS",
                status: Status::Partial,
                server: "IL1TESTWIND0803",
                account: Some("TEST"),
                backup: "ZZZ USERS",
                occurred_at: "2018-12-20T18:00:36Z",
                id: Some("5346562d-7d8c-47a6-a11f-fc1f5d0b269320190102125152"),
            },
        );
    }

    #[test]
    fn success_fixture() {
        let raw = fixture(include_str!(
            "../../tests/fixtures/centurylink/success.json"
        ));
        check(
            &raw,
            Want {
                event: "SUCCESS",
                status: Status::Success,
                server: "UC1BAADUBUN1605",
                account: Some("TEST"),
                backup: "TestAccountPolicyName20181228013921",
                occurred_at: "2019-02-01T21:23:57Z",
                id: Some("d46dc104-2119-4288-a59c-f04f59ffb1e920190201212354"),
            },
        );
    }

    #[test]
    fn success_text_only_fixture() {
        let raw = fixture(include_str!(
            "../../tests/fixtures/centurylink/success-text-only.json"
        ));
        check(
            &raw,
            Want {
                event: "SUCCESS",
                status: Status::Success,
                server: "TESTUBUNTUTEST",
                account: Some("TEST"),
                backup: "ZZZ etc",
                occurred_at: "2018-12-20T17:01:45Z",
                id: Some("aee021f6-e9d3-4c13-bff1-a9733bef753220190102170143"),
            },
        );
    }

    fn text_with_separator(sep: &str) -> String {
        [
            "Status: FAILED",
            "Account: TEST",
            "Server: srv-01",
            "Account Policy Name: andy-test-windows-20181019",
            "Restore Point Id: 3f68fa31-731e-4c77-bbc1-8892ec8667e4",
            "Finished Date/Time: 2018-12-20 01:39:38 UTC",
        ]
        .join(sep)
    }

    #[test]
    fn text_parses_whatever_the_spacing_around_dashes() {
        for sep in ["-", " -", "- ", " - ", "  -  ", "   -    ", "\t-\t"] {
            let raw = json!({ "text": text_with_separator(sep) });
            let e = normalize(&raw);
            assert_eq!(e.event.as_deref(), Some("FAILED"), "{sep:?}");
            assert_eq!(e.status, Status::Failure, "{sep:?}");
            assert_eq!(e.account.as_deref(), Some("TEST"), "{sep:?}");
            assert_eq!(e.server.as_deref(), Some("srv-01"), "{sep:?}");
            assert_eq!(
                e.backup.as_deref(),
                Some("andy-test-windows-20181019"),
                "{sep:?}"
            );
            assert_eq!(
                e.id.as_deref(),
                Some("3f68fa31-731e-4c77-bbc1-8892ec8667e4"),
                "{sep:?}"
            );
            assert_eq!(
                e.occurred_at.as_deref(),
                Some("2018-12-20T01:39:38Z"),
                "{sep:?}"
            );
        }
    }

    #[test]
    fn text_labels_in_other_order_or_missing() {
        let e = normalize(&json!({
            "text": "Server: a-b-c - Status: SUCCESS-Restore Point Id: x-y"
        }));
        assert_eq!(e.event.as_deref(), Some("SUCCESS"));
        assert_eq!(e.status, Status::Success);
        assert_eq!(e.server.as_deref(), Some("a-b-c"));
        assert_eq!(e.id.as_deref(), Some("x-y"));
        assert_eq!(e.account, None);
        assert_eq!(e.backup, None);
        assert_eq!(e.occurred_at, None);
    }

    #[test]
    fn label_words_inside_values_are_not_labels() {
        let e = normalize(&json!({
            "text": "Status: FAILED - Account Policy Name: Server: weird - Server: real"
        }));
        assert_eq!(e.backup.as_deref(), Some("Server: weird"));
        assert_eq!(e.server.as_deref(), Some("real"));
    }

    #[test]
    fn structured_payload_without_text() {
        let e = normalize(&json!({
            "status": "SUCCESS",
            "server": "s",
            "accountPolicyName": "p",
            "finishedDate": "2019-02-01 21:23:57 UTC"
        }));
        assert_eq!(e.status, Status::Success);
        assert_eq!(e.server.as_deref(), Some("s"));
        assert_eq!(e.backup.as_deref(), Some("p"));
        assert_eq!(e.occurred_at.as_deref(), Some("2019-02-01T21:23:57Z"));
        assert_eq!(e.message, None);
    }

    #[test]
    fn unfamiliar_status_is_kept_and_unknown() {
        let e = normalize(&json!({ "status": "RUNNING" }));
        assert_eq!(e.event.as_deref(), Some("RUNNING"));
        assert_eq!(e.status, Status::Unknown);
        let e = normalize(&json!({ "text": "Status: WEIRD - Account: A" }));
        assert_eq!(e.event.as_deref(), Some("WEIRD"));
        assert_eq!(e.status, Status::Unknown);
        assert_eq!(e.account.as_deref(), Some("A"));
    }

    #[test]
    fn unfamiliar_payloads_are_unknown() {
        for raw in [
            json!({"hello": 1}),
            json!([1, 2]),
            json!(3.5),
            json!(null),
            json!("Status: FAILED"),
            json!({"text": "hello world"}),
            json!({"text": ""}),
            json!({"text": "-"}),
            json!({"text": "Status:"}),
            json!({"text": "Status: - Account: -"}),
            json!({"text": " missed a backup"}),
            json!({"text": "x missed a backup expected at"}),
            json!({"text": "x missed a backup for policy [unterminated"}),
            json!({"text": "Ünïcødé — Status: ✓ - Server: ü"}),
        ] {
            let e = normalize(&raw);
            if raw
                .pointer("/text")
                .and_then(Value::as_str)
                .is_some_and(|t| t.contains("missed a backup"))
            {
                assert_eq!(e.status, Status::Missing, "{raw}");
            } else {
                assert_eq!(e.status, Status::Unknown, "{raw}");
            }
            assert_eq!(e.occurred_at, None, "{raw}");
        }
    }

    #[test]
    fn wrong_types_do_not_panic() {
        let e = normalize(&json!({
            "text": 5,
            "status": ["FAILED"],
            "account": 12,
            "server": null,
            "accountPolicyName": {"a": 1},
            "restorePointId": 77,
            "finishedDate": 1549003180
        }));
        assert_eq!(e.event, None);
        assert_eq!(e.status, Status::Unknown);
        assert_eq!(e.account.as_deref(), Some("12"));
        assert_eq!(e.server, None);
        assert_eq!(e.backup, None);
        assert_eq!(e.id.as_deref(), Some("77"));
        // A number where a date string is expected is still read as unix seconds.
        assert_eq!(e.occurred_at.as_deref(), Some("2019-02-01T06:39:40Z"));
        assert_eq!(e.message.as_deref(), Some("5"));

        let e = normalize(&json!({ "finishedDate": "yesterday", "status": "SUCCESS" }));
        assert_eq!(e.occurred_at, None);
        assert_eq!(e.status, Status::Success);
    }
}
