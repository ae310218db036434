//! Grouping (SPEC §10) from outside: a burst of failures is one Slack message
//! listing them, `by` splits groups, `max` sends a full group at once, a group of
//! one is an ordinary message, PagerDuty stays one alert per backup, and a group
//! held when the real binary is killed with -9 goes out once after the restart;
//! a reload that moves a grouped route keeps its open group with it.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

/// A SimpleBackups failure of backup `name` on `server`.
fn failure(id: u64, server: &str, name: &str) -> String {
    let mut v: Value = serde_json::from_str(&fixture("simplebackups/error.json")).unwrap();
    v["id"] = json!(id);
    v["server"]["name"] = json!(server);
    v["backup"]["name"] = json!(name);
    v.to_string()
}

async fn sink(status: u16) -> MockServer {
    let s = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status).set_body_string("ok"))
        .mount(&s)
        .await;
    s
}

fn config(dests: &str, route: &str) -> String {
    format!(
        "sources:\n  sb: {{ kind: simplebackups, dedup_window: 0s }}\nadmin: {{ token: {ADMIN} }}\n\
         watch: {{ recovered: false }}\ndestinations:\n{dests}\nroutes:\n{route}\n"
    )
}

async fn post(app: &TestApp, body: String) -> Value {
    let r = app.post("/hooks/sb", body, &[]).await;
    assert_eq!(r.status(), 202);
    r.json().await.unwrap()
}

/// Waits until every event's group has gone out and no delivery is pending: then
/// what the mock servers got is all they will get.
async fn settle(app: &TestApp, ids: &[String]) {
    for id in ids {
        let ok = wait_for(Duration::from_secs(30), || async {
            app.api(&format!("/api/events/{id}")).await["group"]["state"] == "sent"
        })
        .await;
        assert!(
            ok,
            "group of {id} not sent: {}",
            app.api(&format!("/api/events/{id}")).await
        );
    }
    app.wait_settled(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn a_burst_of_failures_is_one_slack_message_and_pagerduty_still_gets_each() {
    let slack = sink(200).await;
    let pd = sink(202).await;
    let app = spawn_app(&config(
        &format!(
            "  slack: {{ type: slack, webhook_url: \"{}/hook\" }}\n  pd: {{ type: pagerduty, routing_key: k, url: \"{}/enqueue\" }}",
            slack.uri(),
            pd.uri()
        ),
        "  - match: { status: [failure, missing] }\n    to: [slack, pd]\n    group: { wait: 3s, by: [status] }",
    ))
    .await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let answer = post(&app, failure(i + 1, "db-host", &format!("nightly-{i:02}"))).await;
        assert_eq!(answer["deliveries"], 2, "{answer}");
        ids.push(answer["event_id"].as_str().unwrap().to_string());
    }
    let got = wait_received(&slack, 1, Duration::from_secs(30)).await;
    settle(&app, &ids).await;
    let got_again = received_json(&slack).await;
    assert_eq!(
        got_again.len(),
        1,
        "one message for the burst: {got_again:#?}"
    );
    let text = all_text(&got[0]);
    assert!(text.contains("12 backups failed"), "{text}");
    for i in 0..12 {
        assert!(
            text.contains(&format!("nightly-{i:02} on db-host")),
            "{text}"
        );
    }
    // One incident per backup: PagerDuty is not grouped.
    let paged = wait_received(&pd, 12, Duration::from_secs(30)).await;
    let keys: std::collections::BTreeSet<String> = paged
        .iter()
        .map(|b| b["dedup_key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 12);

    // The group's Slack delivery belongs to its first event; the others say which
    // group they went out in.
    let first = app.api(&format!("/api/events/{}", ids[0])).await;
    let slack_deliveries: Vec<&Value> = first["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["destination"] == "slack")
        .collect();
    assert_eq!(slack_deliveries.len(), 1);
    assert_eq!(slack_deliveries[0]["state"], "delivered");
    assert_eq!(first["group"]["count"], 12);
    assert_eq!(first["group"]["first_event"], ids[0].as_str());
    let last = app.api(&format!("/api/events/{}", ids[11])).await;
    assert_eq!(last["group"]["first_event"], ids[0].as_str());
    assert_eq!(last["group"]["id"], first["group"]["id"]);
    assert!(last["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["destination"] == "pd"));
    // The web page says so too, and links to where the deliveries are.
    let cookie = crate::ui::sign_in(&app).await;
    let page = crate::ui::get(&app, &format!("/ui/events/{}", ids[11]), &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("One of 12 events a route grouped into one message, sent"),
        "{page}"
    );
    assert!(
        page.contains(&format!("href=\"/ui/events/{}\"", ids[0])),
        "{page}"
    );
}

#[tokio::test]
async fn by_splits_groups_and_a_full_group_goes_out_at_once() {
    let hook = sink(200).await;
    let app = spawn_app(&config(
        &format!("  hook: {{ type: webhook, url: \"{}/in\" }}", hook.uri()),
        // An hour's wait: only `max` can send these.
        "  - to: [hook]\n    group: { wait: 1h, by: [server], max: 3 }",
    ))
    .await;
    let mut ids = Vec::new();
    for (i, server) in ["a", "b", "a", "b", "a", "b", "a"].iter().enumerate() {
        let answer = post(&app, failure(i as u64 + 1, server, &format!("job-{i}"))).await;
        ids.push(answer["event_id"].as_str().unwrap().to_string());
    }
    // Three of server a and three of server b fill a group each; the seventh (a)
    // opens a new group that waits.
    let got = wait_received(&hook, 2, Duration::from_secs(30)).await;
    settle(&app, &ids[..6]).await;
    let got_again = received_json(&hook).await;
    assert_eq!(got_again.len(), 2, "{got_again:#?}");
    let mut servers: Vec<(u64, Vec<String>)> = got
        .iter()
        .map(|b| {
            let servers = b["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["server"].as_str().unwrap().to_string())
                .collect();
            (b["count"].as_u64().unwrap(), servers)
        })
        .collect();
    servers.sort();
    assert_eq!(
        servers,
        [
            (3, vec!["a".to_string(), "a".into(), "a".into()]),
            (3, vec!["b".to_string(), "b".into(), "b".into()])
        ]
    );
    // Oldest first.
    let a = got
        .iter()
        .find(|b| b["events"][0]["server"] == "a")
        .unwrap();
    let jobs: Vec<&str> = a["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["backup"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["job-0", "job-2", "job-4"]);
    let waiting = app.api(&format!("/api/events/{}", ids[6])).await;
    assert_eq!(waiting["group"]["state"], "open", "{waiting}");
    assert_eq!(waiting["group"]["count"], 1);
}

#[tokio::test]
async fn a_group_of_one_is_an_ordinary_message() {
    let grouped = sink(200).await;
    let plain = sink(200).await;
    let app = spawn_app(&config(
        &format!(
            "  grouped: {{ type: slack, webhook_url: \"{}/g\" }}\n  plain: {{ type: slack, webhook_url: \"{}/p\" }}",
            grouped.uri(),
            plain.uri()
        ),
        "  - to: [grouped]\n    group: { wait: 300ms }\n    continue: true\n  - to: [plain]",
    ))
    .await;
    let answer = post(&app, failure(1, "db-host", "nightly")).await;
    let id = answer["event_id"].as_str().unwrap().to_string();
    let g = wait_received(&grouped, 1, Duration::from_secs(30)).await;
    let p = wait_received(&plain, 1, Duration::from_secs(30)).await;
    settle(&app, &[id]).await;
    assert_eq!(g[0], p[0], "the same message as without grouping");
    assert!(all_text(&g[0]).contains("Backup failed: nightly on db-host"));
}

#[tokio::test]
async fn a_group_held_when_killed_goes_out_once_after_restart() {
    use crate::process::{free_port, Serve};
    let hook = sink(200).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("relay.yaml"),
        format!(
            "storage: {{ url: \"sqlite://data/hookrelay.db\" }}\nadmin: {{ token: {ADMIN} }}\n\
             watch: {{ recovered: false }}\n\
             sources:\n  sb: {{ kind: simplebackups, dedup_window: 0s }}\n\
             destinations:\n  hook: {{ type: webhook, url: \"{}/in\" }}\n\
             routes:\n  - to: [hook]\n    group: {{ wait: 4s }}\n",
            hook.uri()
        ),
    )
    .unwrap();
    let port = free_port();
    let s = Serve::start(dir.path(), port).await;
    let client = reqwest::Client::new();
    for i in 0..5 {
        let r = client
            .post(s.url("/hooks/sb"))
            .body(failure(i + 1, "db-host", &format!("job-{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    // Killed while the group waits: nothing was sent yet.
    s.kill9();
    assert!(received_json(&hook).await.is_empty());
    let s = Serve::start(dir.path(), port).await;
    let got = wait_received(&hook, 1, Duration::from_secs(30)).await;
    assert_eq!(got[0]["count"], 5, "{:#}", got[0]);
    let jobs: Vec<&str> = got[0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["backup"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["job-0", "job-1", "job-2", "job-3", "job-4"]);
    // Once: with nothing pending any more, nothing else comes.
    let settled = wait_for(Duration::from_secs(30), || async {
        let v: Value = client
            .get(s.url("/api/deliveries?state=pending"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["items"].as_array().is_some_and(|a| a.is_empty())
    })
    .await;
    assert!(settled);
    assert_eq!(received_json(&hook).await.len(), 1);
}

#[tokio::test]
async fn synthetic_recoveries_group_like_any_event() {
    let hook = sink(200).await;
    let app = spawn_app(&format!(
        "sources:\n  sb: {{ kind: simplebackups, dedup_window: 0s }}\nadmin: {{ token: {ADMIN} }}\n\
         destinations:\n  hook: {{ type: webhook, url: \"{}/in\" }}\n\
         routes:\n  - match: {{ status: recovered }}\n    to: [hook]\n    group: {{ wait: 5s }}\n",
        hook.uri()
    ))
    .await;
    // Two backups fail, then both succeed: two backup.recovered events.
    let mut ids = Vec::new();
    for (i, (file, name)) in [
        ("error.json", "db-a"),
        ("error.json", "db-b"),
        ("success.json", "db-a"),
        ("success.json", "db-b"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut v: Value =
            serde_json::from_str(&fixture(&format!("simplebackups/{file}"))).unwrap();
        v["id"] = json!(i + 1);
        v["backup"]["name"] = json!(name);
        let r = app.post("/hooks/sb", v.to_string(), &[]).await;
        assert_eq!(r.status(), 202);
        ids.push(
            r.json::<Value>().await.unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let got = wait_received(&hook, 1, Duration::from_secs(30)).await;
    app.wait_settled(Duration::from_secs(30)).await;
    assert_eq!(received_json(&hook).await.len(), 1);
    assert_eq!(got[0]["count"], 2, "{:#}", got[0]);
    assert!(
        all_text(&got[0]).contains("2 backups recovered"),
        "{:#}",
        got[0]
    );
    let events: Vec<&str> = got[0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["backup.recovered", "backup.recovered"]);
}

/// A group is its route's, wherever the route stands: after a reload that puts a
/// new route above a grouped one, the new route's events open their own group and
/// go to its destinations, and the moved route's events still join its open group.
#[tokio::test]
async fn a_reload_that_puts_a_route_above_a_grouped_one_keeps_each_group_with_its_route() {
    let ops = sink(200).await;
    let dba = sink(200).await;
    let app = spawn_app(&format!(
        "sources:\n  sb: {{ kind: simplebackups, dedup_window: 0s }}\n  db: {{ kind: simplebackups, dedup_window: 0s }}\n\
         admin: {{ token: {ADMIN} }}\nwatch: {{ recovered: false }}\n\
         destinations:\n  ops: {{ type: webhook, url: \"{}/ops\" }}\n  dba: {{ type: webhook, url: \"{}/dba\" }}\n\
         routes:\n  - match: {{ source: sb }}\n    to: [ops]\n    group: {{ wait: 5s }}\n",
        ops.uri(),
        dba.uri()
    ))
    .await;
    let id = |v: Value| v["event_id"].as_str().unwrap().to_string();
    let first = id(post(&app, failure(1, "web", "sb-first")).await);
    // The operator adds a route for the DBA team above it and reloads.
    let path = app._dir.path().join("relay.yaml");
    let cfg = std::fs::read_to_string(&path).unwrap().replace(
        "routes:\n",
        "routes:\n  - match: { source: db }\n    to: [dba]\n    group: { wait: 5s }\n",
    );
    std::fs::write(&path, cfg).unwrap();
    app.shared.reload().expect("reloads");
    let r = app
        .post("/hooks/db", failure(2, "pg", "db-only"), &[])
        .await;
    assert_eq!(r.status(), 202);
    let second = id(r.json().await.unwrap());
    let third = id(post(&app, failure(3, "web", "sb-second")).await);

    let ev = app.api(&format!("/api/events/{second}")).await;
    assert_ne!(
        ev["group"]["first_event"],
        first.as_str(),
        "joined the sb route's group: {ev}"
    );
    assert_eq!(ev["group"]["first_event"], second.as_str(), "{ev}");
    let ev = app.api(&format!("/api/events/{third}")).await;
    assert_eq!(
        (ev["group"]["first_event"].as_str(), &ev["group"]["count"]),
        (Some(first.as_str()), &json!(2)),
        "the sb route's event joins its open group: {ev}"
    );

    settle(&app, &[first, second, third]).await;
    let to_ops = received_json(&ops).await;
    let to_dba = received_json(&dba).await;
    assert_eq!(to_dba.len(), 1, "the DBA route's alert went to ops instead");
    assert_eq!(to_ops.len(), 1, "{to_ops:#?}");
    let backups = |v: &Value| -> Vec<String> {
        match v["events"].as_array() {
            Some(events) => events
                .iter()
                .map(|e| e["backup"].as_str().unwrap().to_string())
                .collect(),
            None => vec![v["backup"].as_str().unwrap().to_string()],
        }
    };
    assert_eq!(backups(&to_ops[0]), ["sb-first", "sb-second"]);
    assert_eq!(backups(&to_dba[0]), ["db-only"]);
}
