//! Sample events: what every template must render at load time.

use super::*;

/// Realistic contexts for every provider and outcome, one with every field null, and
/// one whose values hold characters that break JSON and markup.
pub fn sample_contexts() -> Vec<(&'static str, Value)> {
    let event = |f: &dyn Fn(&mut Event)| {
        let mut e = Event {
            received_at: "2025-09-04T18:38:02Z".into(),
            ..Default::default()
        };
        f(&mut e);
        let mut ctx = e.template_context();
        crate::relay::set_delivery_id(&mut ctx, "0190f3c2-7a1b-7cc3-9a4e-2b5d1e6f7a80-1");
        ctx
    };
    let cloud66 = event(&|e| {
        e.source = "c66".into();
        e.provider = "cloud66".into();
        e.event = Some("backup.verification.failed".into());
        e.status = Status::Failure;
        e.stack = Some("my-production-app".into());
        e.environment = Some("production".into());
        e.server = Some("server-abc123".into());
        e.account = Some("Production Team (team@example.com)".into());
        e.backup = Some("myapp_production".into());
        e.database = Some("postgresql".into());
        e.size_bytes = Some(1_024_000_000);
        e.occurred_at = Some("2025-09-04T18:37:59Z".into());
        e.message = Some("Cloud66 gave no reason for the failure. Verification result: \"Backup verified successfully\"; Backup result: \"Backup completed successfully\"".into());
        e.raw = json!({"timestamp": 1757011079, "event_type": "backup.verification.failed",
            "stack": {"name": "my-production-app", "environment": "production", "cloud": "aws"},
            "backup": {"db_type": "postgresql", "database_name": "myapp_production",
                       "backup_size": 1024000000}});
    });
    let simplebackups = event(&|e| {
        e.source = "sb".into();
        e.provider = "simplebackups".into();
        e.event = Some("error".into());
        e.status = Status::Failure;
        e.server = Some("Acme Server".into());
        e.backup = Some("Acme Project".into());
        e.occurred_at = Some("2021-10-10T10:10:10Z".into());
        e.id = Some("987655".into());
        e.message = Some("Backup Acme Project failed".into());
        // The third failure in a row of a watched backup (SPEC §9).
        e.failures = 3;
        e.last_success_at = Some("2025-09-02T17:05:00Z".into());
        e.down_since = Some("2025-09-03T17:04:00Z".into());
        e.raw = json!({"id": 987655, "type": "backup", "status": "error",
            "backup": {"id": 4101, "name": "Acme Project"}, "server": {"name": "Acme Server"}});
    });
    let centurylink_failed = event(&|e| {
        e.source = "ctl".into();
        e.provider = "centurylink".into();
        e.event = Some("FAILED".into());
        e.status = Status::Failure;
        e.server = Some("testServerId20190201013933".into());
        e.account = Some("TEST".into());
        e.backup = Some("TestAccountPolicyName20190201013935".into());
        e.occurred_at = Some("2019-02-01T01:39:40Z".into());
        e.id = Some("c56b1fd4-b566-4044-a696-0f1311ffdeee".into());
        e.message =
            Some("Status: FAILED - Account: TEST - Server: testServerId20190201013933".into());
        e.raw = json!({"text": "Status: FAILED - Account: TEST", "status": "FAILED"});
    });
    let centurylink_missing = event(&|e| {
        e.source = "ctl".into();
        e.provider = "centurylink".into();
        e.event = Some("MISSING".into());
        e.status = Status::Missing;
        e.server = Some("testServerId20181228013921".into());
        e.account = Some("TEST".into());
        e.backup = Some("TestAccountPolicyName20181228013921".into());
        e.occurred_at = Some("2019-02-01T20:00:04.289Z".into());
        e.message = Some(
            "testServerId20181228013921 missed a backup expected at 2019-02-01T20:00:04.289Z"
                .into(),
        );
        e.raw = json!({"text": "testServerId20181228013921 missed a backup"});
    });
    let success = event(&|e| {
        e.source = "sb".into();
        e.provider = "simplebackups".into();
        e.event = Some("success".into());
        e.status = Status::Success;
        e.server = Some("Acme Server".into());
        e.backup = Some("Acme Project".into());
        e.raw = json!({"status": "success"});
    });
    let partial = event(&|e| {
        e.source = "ctl".into();
        e.provider = "centurylink".into();
        e.event = Some("PARTIAL_SUCCESS".into());
        e.status = Status::Partial;
        e.server = Some("IL1TESTWIND0803".into());
        e.raw = json!("not even an object");
    });
    let missed = event(&|e| {
        e.source = "c66".into();
        e.provider = "hookrelay".into();
        e.event = Some("backup.missing".into());
        e.status = Status::Missing;
        e.stack = Some("my-production-app".into());
        e.environment = Some("production".into());
        e.server = Some("server-abc123".into());
        e.backup = Some("myapp_production".into());
        e.occurred_at = Some("2025-09-04T18:04:00Z".into());
        e.message = Some(
            "No successful backup since 2025-09-03 17:04 UTC; expected every 24h (+1h grace)"
                .into(),
        );
        e.failures = 1;
        e.last_success_at = Some("2025-09-03T17:04:00Z".into());
        e.down_since = Some("2025-09-04T18:04:00Z".into());
        e.raw = json!({"subject": "c66/my-production-app/server-abc123/myapp_production",
            "deadline": "2025-09-04T18:04:00Z", "expected": "every 24h (+1h grace)"});
    });
    let recovered = event(&|e| {
        e.source = "sb".into();
        e.provider = "hookrelay".into();
        e.event = Some("backup.recovered".into());
        e.status = Status::Recovered;
        e.server = Some("Acme Server".into());
        e.backup = Some("Acme Project".into());
        e.occurred_at = Some("2025-09-04T18:38:02Z".into());
        e.message = Some("Back after 3 failures, down 2 days".into());
        e.failures = 3;
        e.last_success_at = Some("2025-09-02T17:05:00Z".into());
        e.down_since = Some("2025-09-02T18:00:00Z".into());
        e.raw = json!({"subject": "sb/Acme Server/Acme Project", "failures": 3});
    });
    let generic = event(&|e| {
        e.source = "generic".into();
        e.provider = "generic".into();
        e.raw = json!({});
    });
    let hostile = event(&|e| {
        let nasty = "quote \" back\\slash <b>bold</b> & amp\nnew line\ttab ✅ 🚀 <!channel>";
        e.source = "src \"x\"".into();
        e.provider = "generic".into();
        e.event = Some(nasty.into());
        e.status = Status::Unknown;
        e.stack = Some(nasty.into());
        e.environment = Some(nasty.into());
        e.server = Some(nasty.into());
        e.account = Some(nasty.into());
        e.backup = Some(nasty.into());
        e.database = Some(nasty.into());
        e.occurred_at = Some(nasty.into());
        e.id = Some(nasty.into());
        e.message = Some(nasty.into());
        e.raw = json!({"text": nasty, "list": [1, null, {"a": nasty}]});
    });
    // A group (SPEC §10): the first event's fields, `count` and every event; one
    // member's values break JSON and markup.
    let mut group = cloud66.clone();
    let members = [&cloud66, &simplebackups, &centurylink_missing, &hostile];
    group["count"] = json!(members.len());
    group["events"] = Value::Array(members.iter().map(|m| (*m).clone()).collect());
    let mut all_null = serde_json::Map::new();
    for f in FIELDS {
        all_null.insert((*f).to_string(), Value::Null);
    }
    all_null.insert("raw".into(), Value::Null);
    all_null.insert("delivery_id".into(), Value::Null);

    vec![
        ("a cloud66 backup.verification.failed event", cloud66),
        ("a simplebackups error event", simplebackups),
        ("a centurylink FAILED event", centurylink_failed),
        ("a centurylink MISSING event", centurylink_missing),
        ("a simplebackups success event", success),
        ("a centurylink PARTIAL_SUCCESS event", partial),
        ("a missed backup found by the backup watch", missed),
        ("a backup.recovered after three failures", recovered),
        ("a generic event with few fields", generic),
        (
            "an event whose values hold quotes, markup and newlines",
            hostile,
        ),
        ("an event with every field null", Value::Object(all_null)),
        ("a group of four events", group),
    ]
}
