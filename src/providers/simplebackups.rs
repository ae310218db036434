//! SimpleBackups webhooks -> normalized event. Owns the reading of SimpleBackups'
//! flat payload (`id`, `status`, `finished_at`, `backup`, `server`), the folding of
//! its `success`/`error` status, and the one-line message it lacks
//! ("Backup Acme Project failed").

use serde_json::Value;

use super::{at, text_at, time_of};
use crate::event::{Event, Status};

pub fn normalize(raw: &Value) -> Event {
    let event = text_at(raw, "/status");
    let status = event.as_deref().map_or(Status::Unknown, status_of);
    let backup = text_at(raw, "/backup/name");
    let message = message_for(backup.as_deref(), event.as_deref(), status);
    Event {
        event,
        status,
        server: text_at(raw, "/server/name"),
        backup,
        occurred_at: at(raw, "/finished_at").and_then(time_of),
        id: text_at(raw, "/id"),
        message,
        ..Event::default()
    }
}

/// SimpleBackups says `success` or `error`; `failure`/`failed` are accepted too in
/// case the wording drifts. Anything else is unknown.
fn status_of(s: &str) -> Status {
    match s.trim().to_ascii_lowercase().as_str() {
        "success" => Status::Success,
        "error" | "failure" | "failed" => Status::Failure,
        _ => Status::Unknown,
    }
}

/// SimpleBackups sends no human text, so alerts get one built from the backup name
/// (or plain "Backup" when the payload has none). A payload with neither a name nor
/// a status gets no message rather than an empty-sounding one.
fn message_for(backup: Option<&str>, event: Option<&str>, status: Status) -> Option<String> {
    let subject = backup.map_or_else(|| "Backup".to_string(), |n| format!("Backup {n}"));
    match (status, event) {
        (Status::Success, _) => Some(format!("{subject} succeeded")),
        (Status::Failure, _) => Some(format!("{subject} failed")),
        (_, Some(other)) => Some(format!("{subject} reported status {other}")),
        (_, None) if backup.is_some() => Some(format!("{subject} reported no status")),
        (_, None) => None,
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
    fn error_fixture() {
        let raw = fixture(include_str!(
            "../../tests/fixtures/simplebackups/error.json"
        ));
        let e = normalize(&raw);
        assert_eq!(e.event.as_deref(), Some("error"));
        assert_eq!(e.status, Status::Failure);
        assert_eq!(e.stack, None);
        assert_eq!(e.environment, None);
        assert_eq!(e.server.as_deref(), Some("Acme Server"));
        assert_eq!(e.account, None);
        assert_eq!(e.backup.as_deref(), Some("Acme Project"));
        assert_eq!(e.database, None);
        assert_eq!(e.size_bytes, None);
        assert_eq!(e.occurred_at.as_deref(), Some("2021-10-10T10:10:10Z"));
        assert_eq!(e.id.as_deref(), Some("987655"));
        assert_eq!(e.message.as_deref(), Some("Backup Acme Project failed"));
    }

    #[test]
    fn success_fixture() {
        let raw = fixture(include_str!(
            "../../tests/fixtures/simplebackups/success.json"
        ));
        let e = normalize(&raw);
        assert_eq!(e.event.as_deref(), Some("success"));
        assert_eq!(e.status, Status::Success);
        assert_eq!(e.stack, None);
        assert_eq!(e.environment, None);
        assert_eq!(e.server.as_deref(), Some("Acme Server"));
        assert_eq!(e.account, None);
        assert_eq!(e.backup.as_deref(), Some("Acme Project"));
        assert_eq!(e.database, None);
        assert_eq!(e.size_bytes, None);
        assert_eq!(e.occurred_at.as_deref(), Some("2021-12-12T12:21:12Z"));
        assert_eq!(e.id.as_deref(), Some("987654"));
        assert_eq!(e.message.as_deref(), Some("Backup Acme Project succeeded"));
    }

    #[test]
    fn messages_without_a_backup_name() {
        let e = normalize(&json!({"status": "error"}));
        assert_eq!(e.message.as_deref(), Some("Backup failed"));
        let e = normalize(&json!({"status": "success", "backup": {"name": null}}));
        assert_eq!(e.message.as_deref(), Some("Backup succeeded"));
        let e = normalize(&json!({"status": "running", "backup": {"name": "B"}}));
        assert_eq!(e.status, Status::Unknown);
        assert_eq!(
            e.message.as_deref(),
            Some("Backup B reported status running")
        );
        let e = normalize(&json!({"backup": {"name": "B"}}));
        assert_eq!(e.message.as_deref(), Some("Backup B reported no status"));
    }

    #[test]
    fn unfamiliar_payloads_are_unknown() {
        for raw in [
            json!({"hello": 1}),
            json!([{"status": "success"}]),
            json!(0),
            json!(null),
            json!(true),
        ] {
            let e = normalize(&raw);
            assert_eq!(e.status, Status::Unknown, "{raw}");
            assert_eq!(e.event, None);
            assert_eq!(e.id, None);
            assert_eq!(e.message, None);
        }
    }

    #[test]
    fn wrong_types_do_not_panic() {
        let e = normalize(&json!({
            "id": [1],
            "status": 500,
            "finished_at": "10/10/2021",
            "backup": "Acme",
            "server": {"name": 42}
        }));
        assert_eq!(e.id, None);
        assert_eq!(e.event.as_deref(), Some("500"));
        assert_eq!(e.status, Status::Unknown);
        assert_eq!(e.occurred_at, None);
        assert_eq!(e.backup, None);
        assert_eq!(e.server.as_deref(), Some("42"));
        assert_eq!(e.message.as_deref(), Some("Backup reported status 500"));

        let e = normalize(&json!({"id": 1.5, "status": "SUCCESS", "finished_at": null}));
        assert_eq!(e.id.as_deref(), Some("1.5"));
        assert_eq!(e.status, Status::Success);
        assert_eq!(e.occurred_at, None);
    }
}
