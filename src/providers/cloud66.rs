//! Cloud66 backup webhooks -> normalized event. Owns the reading of Cloud66's
//! `event_type` (e.g. `managed_backup.fail`, `backup.verification.failed`), the
//! `stack` and `backup` objects and the unix-seconds `timestamp`, and the folding of
//! the event type's suffix into a [`Status`].

use serde_json::Value;

use super::{at, size_of, text_at, time_of};
use crate::event::{Event, Status};

pub fn normalize(raw: &Value) -> Event {
    let event = text_at(raw, "/event_type");
    let status = event.as_deref().map_or(Status::Unknown, status_of);
    // Verification events report on the verification, not on the original backup
    // run, so their message is the verify result.
    let is_verification = event
        .as_deref()
        .is_some_and(|e| e.to_ascii_lowercase().contains("verif"));
    let verify = ("Verification result", text_at(raw, "/backup/verify_result"));
    let backup = ("Backup result", text_at(raw, "/backup/backup_result"));
    let parts: Vec<(&str, String)> = if is_verification {
        vec![verify, backup]
    } else {
        vec![backup]
    }
    .into_iter()
    .filter_map(|(label, v)| v.map(|v| (label, v)))
    .collect();
    let message = explain(status, &parts);
    Event {
        event,
        status,
        stack: text_at(raw, "/stack/name"),
        environment: text_at(raw, "/stack/environment"),
        server: text_at(raw, "/backup/server_uid"),
        account: text_at(raw, "/stack/account_name"),
        backup: text_at(raw, "/backup/database_name"),
        database: text_at(raw, "/backup/db_type"),
        size_bytes: at(raw, "/backup/backup_size").and_then(size_of),
        occurred_at: at(raw, "/timestamp").and_then(time_of),
        message,
        ..Event::default()
    }
}

/// The message: the field that speaks about the event (the verify result for a
/// verification, else the backup result) as it is. On a failure, when there is more
/// than one field or the text reads as a success (Cloud66 sends
/// `backup.verification.failed` with "Backup verified successfully"), every field
/// is labelled and quoted, the one about the event first, so an alert never seems
/// to contradict itself; and when none of them gives a reason, that is said.
fn explain(status: Status, parts: &[(&str, String)]) -> Option<String> {
    let (_, first) = parts.first()?;
    if status != Status::Failure || (parts.len() == 1 && !reads_as_success(first)) {
        return Some(first.clone());
    }
    let labelled: Vec<String> = parts
        .iter()
        .map(|(label, v)| format!("{label}: \"{v}\""))
        .collect();
    let none_explains = parts.iter().all(|(_, v)| reads_as_success(v));
    Some(format!(
        "{}{}",
        if none_explains {
            "Cloud66 gave no reason for the failure. "
        } else {
            ""
        },
        labelled.join("; ")
    ))
}

/// Whether a provider's text says things went well ("Backup completed
/// successfully") rather than what went wrong.
fn reads_as_success(text: &str) -> bool {
    let t = text.to_lowercase();
    let good = [
        "success",
        "succeeded",
        "completed",
        "verified",
        "passed",
        "ok",
    ];
    let bad = [
        "fail",
        "error",
        "not ",
        "unable",
        "cannot",
        "could not",
        "invalid",
        "corrupt",
        "missing",
        "abort",
        "timed out",
        "timeout",
        "denied",
        "mismatch",
    ];
    good.iter().any(|g| t.contains(g)) && !bad.iter().any(|b| t.contains(b))
}

/// Cloud66 names outcomes by the last segment of the event type; anything we do
/// not recognise (including event types with no outcome) stays unknown.
fn status_of(event_type: &str) -> Status {
    let e = event_type.trim().to_ascii_lowercase();
    if e.ends_with(".fail") || e.ends_with(".failed") {
        Status::Failure
    } else if e.ends_with(".success") || e.ends_with(".succeeded") || e.ends_with(".verified") {
        Status::Success
    } else {
        Status::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn managed_backup_fail_fixture() {
        let raw = fixture(include_str!(
            "../../tests/fixtures/cloud66/managed_backup.fail.json"
        ));
        let e = normalize(&raw);
        assert_eq!(e.event.as_deref(), Some("managed_backup.fail"));
        assert_eq!(e.status, Status::Failure);
        assert_eq!(e.stack.as_deref(), Some("my-production-app"));
        assert_eq!(e.environment.as_deref(), Some("production"));
        assert_eq!(e.server.as_deref(), Some("server-abc123"));
        assert_eq!(
            e.account.as_deref(),
            Some("Production Team (team@example.com)")
        );
        assert_eq!(e.backup.as_deref(), Some("myapp_production"));
        assert_eq!(e.database.as_deref(), Some("postgresql"));
        assert_eq!(e.size_bytes, Some(1_024_000_000));
        assert_eq!(e.occurred_at.as_deref(), Some("2025-09-04T18:37:59Z"));
        assert_eq!(e.id, None);
        // A failure whose only text reads as a success: labelled, and said to be no reason.
        assert_eq!(
            e.message.as_deref(),
            Some("Cloud66 gave no reason for the failure. Backup result: \"Backup completed successfully\"")
        );
    }

    #[test]
    fn verification_failed_fixture() {
        let raw = fixture(include_str!(
            "../../tests/fixtures/cloud66/backup.verification.failed.json"
        ));
        let e = normalize(&raw);
        assert_eq!(e.event.as_deref(), Some("backup.verification.failed"));
        assert_eq!(e.status, Status::Failure);
        assert_eq!(e.stack.as_deref(), Some("my-production-app"));
        assert_eq!(e.environment.as_deref(), Some("production"));
        assert_eq!(e.server.as_deref(), Some("server-abc123"));
        assert_eq!(
            e.account.as_deref(),
            Some("Production Team (team@example.com)")
        );
        assert_eq!(e.backup.as_deref(), Some("myapp_production"));
        assert_eq!(e.database.as_deref(), Some("postgresql"));
        assert_eq!(e.size_bytes, Some(1_024_000_000));
        assert_eq!(e.occurred_at.as_deref(), Some("2025-09-04T18:37:59Z"));
        assert_eq!(e.id, None);
        // Verification events lead with the verify result; on a failure whose
        // fields read as successes, each is labelled so the alert does not
        // contradict itself.
        assert_eq!(
            e.message.as_deref(),
            Some("Cloud66 gave no reason for the failure. Verification result: \"Backup verified successfully\"; Backup result: \"Backup completed successfully\"")
        );
    }

    #[test]
    fn event_type_suffixes() {
        for (t, s) in [
            ("managed_backup.fail", Status::Failure),
            ("backup.failed", Status::Failure),
            ("backup.success", Status::Success),
            ("managed_backup.succeeded", Status::Success),
            ("backup.verification.verified", Status::Success),
            ("backup.started", Status::Unknown),
            ("fail", Status::Unknown),
            ("", Status::Unknown),
        ] {
            let e = normalize(&json!({ "event_type": t }));
            assert_eq!(e.status, s, "{t}");
        }
    }

    #[test]
    fn unfamiliar_payloads_are_unknown() {
        for raw in [
            json!({"hello": 1}),
            json!([1, 2, 3]),
            json!(42),
            json!(null),
            json!("managed_backup.fail"),
        ] {
            let e = normalize(&raw);
            assert_eq!(e.status, Status::Unknown);
            assert_eq!(e.event, None);
            assert_eq!(e.stack, None);
            assert_eq!(e.occurred_at, None);
        }
    }

    #[test]
    fn wrong_types_do_not_panic() {
        let raw = json!({
            "timestamp": "not a time",
            "event_type": 7,
            "stack": ["a"],
            "backup": {
                "server_uid": 99,
                "database_name": null,
                "db_type": {"x": 1},
                "backup_size": "2048",
                "backup_result": ["no"]
            }
        });
        let e = normalize(&raw);
        assert_eq!(e.event.as_deref(), Some("7"));
        assert_eq!(e.status, Status::Unknown);
        assert_eq!(e.stack, None);
        assert_eq!(e.server.as_deref(), Some("99"));
        assert_eq!(e.backup, None);
        assert_eq!(e.database, None);
        assert_eq!(e.size_bytes, Some(2048));
        assert_eq!(e.occurred_at, None);
        assert_eq!(e.message, None);

        for ts in [json!(-1.5e300), json!(1e300), json!(i64::MAX), json!(-1)] {
            let e = normalize(&json!({ "timestamp": ts, "backup": {"backup_size": -5} }));
            assert_eq!(e.size_bytes, None);
            // -1 is a real (if odd) time; the huge ones are not.
            if ts == json!(-1) {
                assert_eq!(e.occurred_at.as_deref(), Some("1969-12-31T23:59:59Z"));
            } else {
                assert_eq!(e.occurred_at, None);
            }
        }
    }

    #[test]
    fn failure_messages_lead_with_the_field_that_explains_them() {
        let e = normalize(&json!({
            "event_type": "backup.verification.failed",
            "backup": {"verify_result": "Checksum mismatch in table users", "backup_result": "Backup completed successfully"}
        }));
        assert_eq!(
            e.message.as_deref(),
            Some("Verification result: \"Checksum mismatch in table users\"; Backup result: \"Backup completed successfully\"")
        );
        // One field that explains the failure: as it is.
        let e = normalize(&json!({
            "event_type": "managed_backup.fail",
            "backup": {"backup_result": "pg_dump: error: connection refused"}
        }));
        assert_eq!(
            e.message.as_deref(),
            Some("pg_dump: error: connection refused")
        );
        // Successes keep the provider's text as it is.
        let e = normalize(&json!({
            "event_type": "backup.verification.verified",
            "backup": {"verify_result": "Backup verified successfully", "backup_result": "Backup completed successfully"}
        }));
        assert_eq!(e.message.as_deref(), Some("Backup verified successfully"));
        assert!(reads_as_success("Backup completed successfully"));
        assert!(!reads_as_success("Backup failed: not enough space"));
        assert!(!reads_as_success("Nothing"));
    }
}
