//! The admin API: token, events with filters and paging, one event with its
//! deliveries and attempts, deliveries by state, retry and replay.

use std::time::Duration;

use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

#[tokio::test]
async fn the_admin_api_is_off_without_a_token_and_refuses_a_wrong_one() {
    let app = spawn_app("sources:\n  c: { kind: cloud66 }\n").await;
    let r = app.get("/api/events", Some("anything")).await;
    assert_eq!(r.status(), 404);
    let app = spawn_app(&format!(
        "sources:\n  c: {{ kind: cloud66 }}\nadmin: {{ token: {ADMIN} }}\n"
    ))
    .await;
    let r = app.get("/api/events", None).await;
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("admin token"));
    assert_eq!(app.get("/api/events", Some("wrong")).await.status(), 401);
    assert_eq!(app.get("/api/events", Some(ADMIN)).await.status(), 200);
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    assert_eq!(app.get("/readyz", None).await.status(), 200);
}

#[tokio::test]
async fn events_page_newest_first_and_filter_by_status() {
    // Only the events posted here (no backup.recovered after each success).
    let app = spawn_app(&format!(
        "sources:\n  sb: {{ kind: simplebackups, dedup_window: 0s }}\nadmin: {{ token: {ADMIN} }}\nwatch: {{ recovered: false }}\n"
    ))
    .await;
    let ids = post_events(&app, &["error", "success", "error", "success", "error"]).await;
    let page1 = app.api("/api/events?limit=2").await;
    let got: Vec<&str> = page1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[4].as_str(), ids[3].as_str()]);
    let next = page1["next"].as_str().unwrap();
    let page2 = app.api(&format!("/api/events?limit=2&before={next}")).await;
    let got: Vec<&str> = page2["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[2].as_str(), ids[1].as_str()]);
    let failures = app.api("/api/events?status=failure").await;
    assert_eq!(failures["items"].as_array().unwrap().len(), 3);
    assert!(failures["next"].is_null());
    let item = &failures["items"][0];
    assert_eq!(item["source"], "sb");
    assert_eq!(item["backup"], "Acme Project");
    assert_eq!(item["deliveries"]["pending"], 0);
    assert!(item["received_at"].as_str().unwrap().ends_with('Z'));
}

/// Posts the SimpleBackups fixtures named, returns their event ids in order.
async fn post_events(app: &TestApp, files: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for f in files {
        let r = app
            .post(
                "/hooks/sb",
                fixture(&format!("simplebackups/{f}.json")),
                &[],
            )
            .await;
        let v: Value = r.json().await.unwrap();
        ids.push(v["event_id"].as_str().unwrap().to_string());
    }
    ids
}

fn ids_of(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| match &e["id"] {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        })
        .collect()
}

/// A cursor whose event retention deleted pages from where that event was
/// (event ids are UUIDv7: they say when); one that cannot say is 410, a
/// malformed one 400. Never the first page again: a paging client would loop.
#[tokio::test]
async fn a_cursor_whose_event_is_gone_pages_from_where_it_was() {
    let app = spawn_app(&format!(
        "sources:\n  sb: {{ kind: simplebackups, dedup_window: 0s }}\nadmin: {{ token: {ADMIN} }}\nwatch: {{ recovered: false }}\n"
    ))
    .await;
    let ids = post_events(&app, &["error", "success", "error", "success", "error"]).await;
    // Ids no event has, just after ids[2] and just after the newest.
    let after = |id: &str| {
        let u = uuid::Uuid::parse_str(id).unwrap().as_u128() + 1;
        uuid::Uuid::from_u128(u).to_string()
    };
    let page = app
        .api(&format!("/api/events?limit=2&before={}", after(&ids[2])))
        .await;
    assert_eq!(ids_of(&page), vec![ids[2].clone(), ids[1].clone()]);
    assert_eq!(page["next"], ids[1].as_str());
    let page = app
        .api(&format!("/api/events?limit=2&before={}", after(&ids[4])))
        .await;
    assert_eq!(ids_of(&page), vec![ids[4].clone(), ids[3].clone()]);
    // Another spelling of a stored id (upper case, braces, no hyphens) pages from
    // that event, not from the top.
    let id = uuid::Uuid::parse_str(&ids[3]).unwrap();
    for spelled in [
        ids[3].to_uppercase(),
        format!("%7B{}%7D", ids[3]),
        id.simple().to_string(),
    ] {
        let page = app
            .api(&format!("/api/events?limit=2&before={spelled}"))
            .await;
        assert_eq!(
            ids_of(&page),
            vec![ids[2].clone(), ids[1].clone()],
            "{spelled}"
        );
    }

    let v4 = "6f1c9f4e-2b1a-4c3d-9e8f-0a1b2c3d4e5f";
    let r = app
        .get(&format!("/api/events?before={v4}"), Some(ADMIN))
        .await;
    assert_eq!(r.status(), 410);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no longer stored and its id does not say where it was"),
        "{v}"
    );
}

/// Every malformed parameter is a 400 with a JSON error naming what is
/// allowed, after the token is checked.
#[tokio::test]
async fn a_malformed_query_is_a_json_400_naming_what_is_allowed() {
    let app = spawn_app(&format!(
        "sources:\n  sb: {{ kind: simplebackups }}\nadmin: {{ token: {ADMIN} }}\n"
    ))
    .await;
    for (path, says) in [
        ("/api/events?limit=abc", "limit must be a whole number from 1 to 500, not \"abc\""),
        ("/api/events?limit=-1", "limit must be a whole number from 1 to 500, not \"-1\""),
        ("/api/events?limit=0", "limit must be a whole number from 1 to 500, not \"0\""),
        (
            "/api/events?status=bogus",
            "status must be one of success, failure, partial, missing, unknown, recovered, not \"bogus\"",
        ),
        (
            "/api/events?before=garbage",
            "before must be an event id (the next of the previous page), not \"garbage\"",
        ),
        ("/api/deliveries?limit=abc", "limit must be a whole number from 1 to 1000, not \"abc\""),
        (
            "/api/deliveries?state=bogus",
            "state must be one of pending, delivered, dead, not \"bogus\"",
        ),
        (
            "/api/deliveries?before=x",
            "before must be a delivery id (the next of the previous page), not \"x\"",
        ),
        (
            "/api/backups?state=bogus",
            "state must be one of ok, failing, missing, new, not \"bogus\"",
        ),
        ("/api/events?limit=1&limit=2", "the query string cannot be read: duplicate field `limit`"),
    ] {
        let r = app.get(path, Some(ADMIN)).await;
        assert_eq!(r.status(), 400, "{path}");
        assert_eq!(r.headers()["content-type"], "application/json", "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], says, "{path}");
        // Without the token, the token is what is wrong.
        assert_eq!(app.get(path, None).await.status(), 401, "{path}");
    }
    // More than the most is the most, not an error.
    assert_eq!(
        app.get("/api/events?limit=100000", Some(ADMIN))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn deliveries_page_newest_first_with_before() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hook)
        .await;
    let app = spawn_app(&format!(
        "sources:\n  sb: {{ kind: simplebackups, dedup_window: 0s }}\nadmin: {{ token: {ADMIN} }}\nwatch: {{ recovered: false }}\ndestinations:\n  hook: {{ type: webhook, url: \"{}/x\" }}\nroutes:\n  - to: [hook]\n",
        hook.uri()
    ))
    .await;
    post_events(&app, &["error", "success", "error", "success", "error"]).await;
    app.wait_settled(Duration::from_secs(10)).await;
    let all = app.api("/api/deliveries").await;
    let all = ids_of(&all);
    assert_eq!(all.len(), 5);
    assert!(
        all.windows(2)
            .all(|w| w[0].parse::<i64>().unwrap() > w[1].parse::<i64>().unwrap()),
        "newest first: {all:?}"
    );
    let mut seen = Vec::new();
    let mut path = "/api/deliveries?limit=2&state=delivered".to_string();
    for _ in 0..3 {
        let page = app.api(&path).await;
        seen.extend(ids_of(&page));
        match page["next"].as_i64() {
            Some(next) => path = format!("/api/deliveries?limit=2&state=delivered&before={next}"),
            None => break,
        }
    }
    assert_eq!(seen, all);
    let last = app
        .api(&format!("/api/deliveries?limit=2&before={}", all[3]))
        .await;
    assert_eq!(ids_of(&last), vec![all[4].clone()]);
    assert!(last["next"].is_null());
}

/// An app routing everything from a SimpleBackups source to `hook`.
async fn to_hook(hook: &MockServer) -> TestApp {
    spawn_app(&format!(
        "sources:\n  sb: {{ kind: simplebackups }}\nadmin: {{ token: {ADMIN} }}\ndestinations:\n  hook: {{ type: webhook, url: \"{}/x\" }}\nroutes:\n  - to: [hook]\n",
        hook.uri()
    ))
    .await
}

/// Posts the SimpleBackups error fixture; its event id.
async fn post_error(app: &TestApp) -> String {
    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    let v: Value = r.json().await.unwrap();
    v["event_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_dead_delivery_can_be_retried_and_an_event_replayed() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string("bad"))
        .up_to_n_times(1)
        .mount(&hook)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hook)
        .await;
    let app = to_hook(&hook).await;
    let id = post_error(&app).await;
    app.wait_settled(Duration::from_secs(5)).await;
    let e = app.api(&format!("/api/events/{id}")).await;
    let d = &e["deliveries"][0];
    assert_eq!(d["state"], "dead");
    assert_eq!(
        d["last_error"].as_str().unwrap(),
        "HTTP 400 from destination: bad"
    );
    let a = &d["attempts"][0];
    assert_eq!(a["status"], 400);
    assert!(a["duration_ms"].as_i64().is_some() && a["at"].as_str().is_some());

    let did = d["id"].as_i64().unwrap();
    let r = app
        .client
        .post(format!("{}/api/deliveries/{did}/retry", app.address))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_received(&hook, 2, Duration::from_secs(5)).await;
    app.wait_settled(Duration::from_secs(5)).await;
    let e = app.api(&format!("/api/events/{id}")).await;
    assert_eq!(e["deliveries"][0]["state"], "delivered");
    assert_eq!(e["deliveries"][0]["attempts"].as_array().unwrap().len(), 2);

    let r = app
        .client
        .post(format!("{}/api/events/{id}/replay", app.address))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["deliveries"], 1);
    wait_received(&hook, 3, Duration::from_secs(5)).await;
    let r = app
        .client
        .post(format!("{}/api/deliveries/99999/retry", app.address))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .client
        .post(format!("{}/api/events/nope/replay", app.address))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// A retry of a delivery that is not dead would send it twice: refused with 409.
#[tokio::test]
async fn a_delivery_that_is_not_dead_is_not_retried() {
    let hook = MockServer::start().await;
    // Slow to answer: the first send is still in flight when the retry comes.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(1500)))
        .mount(&hook)
        .await;
    let app = to_hook(&hook).await;
    let id = post_error(&app).await;
    let e = app.api(&format!("/api/events/{id}")).await;
    let did = e["deliveries"][0]["id"].as_i64().unwrap();
    let retry = || async {
        app.client
            .post(format!("{}/api/deliveries/{did}/retry", app.address))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
    };
    let r = retry().await;
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    let err = v["error"].as_str().unwrap();
    assert!(
        err.starts_with(&format!(
            "delivery {did} is pending; only a dead delivery is retried"
        )),
        "{err}"
    );
    app.wait_settled(Duration::from_secs(10)).await;
    let r = retry().await;
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"],
        format!("delivery {did} is delivered; only a dead delivery is retried (to send its event again, replay the event)")
    );
    app.wait_settled(Duration::from_secs(10)).await;
    assert_eq!(hook.received_requests().await.unwrap().len(), 1);
    let e = app.api(&format!("/api/events/{id}")).await;
    assert_eq!(e["deliveries"][0]["attempts"].as_array().unwrap().len(), 1);
}

/// A digest is not routed: replayed, it goes again to the destinations it went
/// to, with its template and as it was, and never to the routes' destinations.
/// hookrelay's `backup.recovered` is routed like when it was stored.
#[tokio::test]
async fn a_replayed_digest_goes_to_its_own_destinations_and_a_recovery_through_the_routes() {
    let (digests, alerts) = (MockServer::start().await, MockServer::start().await);
    for m in [&digests, &alerts] {
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200))
            .mount(m)
            .await;
    }
    let app = spawn_app_drained(&format!(
        "sources:\n  sb: {{ kind: simplebackups, dedup_window: 0s }}\nadmin: {{ token: {ADMIN} }}\n\
         destinations:\n  digests: {{ type: webhook, url: \"{}/d\" }}\n  alerts: {{ type: webhook, url: \"{}/a\" }}\n\
         routes:\n  - to: [alerts]\n\
         digest:\n  - {{ cron: \"* * * * *\", to: [digests] }}\n",
        digests.uri(),
        alerts.uri()
    ))
    .await;
    let shared = app.shared.clone();
    let mut clock = hookrelay::digest::Clock::default();
    let t0 = shared.store.clock_ms().await.unwrap();
    assert_eq!(
        hookrelay::digest::tick(&shared, &mut clock, t0)
            .await
            .unwrap(),
        0
    );
    for f in ["error", "success"] {
        let r = app
            .post(
                "/hooks/sb",
                fixture(&format!("simplebackups/{f}.json")),
                &[],
            )
            .await;
        assert_eq!(r.status(), 202);
    }
    let t1 = t0 + 2 * 60_000;
    assert_eq!(
        hookrelay::digest::tick(&shared, &mut clock, t1)
            .await
            .unwrap(),
        1
    );
    app.drain(3).await;
    let sent = received_json(&digests).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["event"], "digest");
    // Webhooks received: the error and the success, not the recovery.
    assert_eq!(sent[0]["received"], 2, "{}", sent[0]);
    // error, success, and hookrelay's backup.recovered.
    assert_eq!(received_json(&alerts).await.len(), 3);

    let replay = |id: String| {
        let app = &app;
        async move {
            let r = app
                .client
                .post(format!("{}/api/events/{id}/replay", app.address))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            let v: Value = r.json().await.unwrap();
            v["deliveries"].as_u64().unwrap()
        }
    };
    let list = app.api("/api/events?source=hookrelay").await;
    let digest_id = list["items"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(list["items"][0]["event"], "digest");
    assert_eq!(replay(digest_id.clone()).await, 1);
    app.drain(3).await;
    let sent = received_json(&digests).await;
    assert_eq!(sent.len(), 2);
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("delivery_id");
        v
    };
    assert_eq!(
        strip(sent[1].clone()),
        strip(sent[0].clone()),
        "the same digest"
    );
    assert_eq!(received_json(&alerts).await.len(), 3, "not routed");
    let e = app.api(&format!("/api/events/{digest_id}")).await;
    let d = e["deliveries"].as_array().unwrap();
    assert_eq!(d.len(), 2);
    assert!(d.iter().all(|d| d["destination"] == "digests"), "{e:#}");

    let list = app.api("/api/events?status=recovered").await;
    let recovered = &list["items"][0];
    assert_eq!(recovered["event"], "backup.recovered", "{list:#}");
    assert_eq!(
        replay(recovered["id"].as_str().unwrap().to_string()).await,
        1
    );
    app.drain(3).await;
    let got = received_json(&alerts).await;
    assert_eq!(got.len(), 4);
    assert_eq!(got[3]["event"], "backup.recovered", "{:#}", got[3]);
    assert_eq!(received_json(&digests).await.len(), 2);

    // The web page's button says what it does on each.
    let cookie = crate::ui::sign_in(&app).await;
    let page = |id: String| {
        let (app, cookie) = (&app, &cookie);
        async move {
            let r = crate::ui::get(app, &format!("/ui/events/{id}"), cookie).await;
            r.text().await.unwrap()
        }
    };
    let html = page(digest_id).await;
    assert!(html.contains(">Send digest again</button>"), "{html}");
    assert!(!html.contains("Replay event"));
    let html = page(recovered["id"].as_str().unwrap().to_string()).await;
    assert!(html.contains(">Replay event</button>"), "{html}");
}

#[tokio::test]
async fn ten_wrong_admin_tokens_from_one_address_block_it_for_a_minute() {
    let app = spawn_app(&format!(
        "sources:\n  c: {{ kind: cloud66 }}\nadmin: {{ token: {ADMIN} }}\n"
    ))
    .await;
    // A request without a token is not a guess and is not counted.
    for _ in 0..20 {
        assert_eq!(app.get("/api/events", None).await.status(), 401);
    }
    for i in 0..10 {
        let r = app.get("/api/events", Some(&format!("guess-{i}"))).await;
        assert_eq!(r.status(), 401, "guess {i}");
    }
    // Now even the right token is not compared: a guesser learns nothing.
    let r = app.get("/api/events", Some(ADMIN)).await;
    assert_eq!(r.status(), 429);
    let after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&after), "{after}");
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("too many wrong admin tokens from this address"),
        "{v}"
    );
}
