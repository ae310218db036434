//! What every destination shares, through the running app: the delivery id on
//! every attempt, redirects refused, bidi controls kept out of chat text, and the
//! Teams legacy format.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const C66: &str = "sources:\n  c66: { kind: cloud66 }\n";

async fn post_c66(app: &TestApp, body: &str) -> Value {
    let r = app.post("/hooks/c66", body.to_string(), &[]).await;
    assert_eq!(r.status(), 202);
    r.json().await.unwrap()
}

async fn event(app: &TestApp, id: &Value) -> Value {
    app.api(&format!("/api/events/{}", id.as_str().unwrap()))
        .await
}

fn c66_with(f: impl FnOnce(&mut Value)) -> String {
    let mut v: Value =
        serde_json::from_str(&fixture("cloud66/backup.verification.failed.json")).unwrap();
    f(&mut v);
    v.to_string()
}

/// A Slack mock that takes every message.
async fn slack_ok() -> MockServer {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    slack
}

/// An app routing the Cloud66 source to a webhook (`hook`) and Slack (`slack`).
async fn to_webhook_and_slack(hook: &MockServer, slack: &MockServer) -> TestApp {
    spawn_app(&format!(
        "{C66}admin: {{ token: {ADMIN} }}\ndestinations:\n  w: {{ type: webhook, url: \"{}/in\" }}\n  s: {{ type: slack, webhook_url: \"{}/hook\" }}\nroutes:\n  - to: [w, s]\n",
        hook.uri(),
        slack.uri()
    ))
    .await
}

#[tokio::test]
async fn every_attempt_of_a_delivery_carries_the_same_delivery_id() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .mount(&hook)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hook)
        .await;
    let slack = slack_ok().await;
    let app = to_webhook_and_slack(&hook, &slack).await;
    let v = post_c66(&app, &fixture("cloud66/backup.verification.failed.json")).await;
    app.wait_settled(Duration::from_secs(10)).await;
    let event_id = v["event_id"].as_str().unwrap();

    let reqs = hook.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 3);
    let ids: Vec<&str> = reqs
        .iter()
        .map(|r| {
            r.headers
                .get("hookrelay-delivery-id")
                .unwrap()
                .to_str()
                .unwrap()
        })
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert!(ids[0].starts_with(event_id), "{} vs {event_id}", ids[0]);
    // The default webhook body carries it too, for receivers that only see bodies.
    let body: Value = serde_json::from_slice(&reqs[2].body).unwrap();
    assert_eq!(body["delivery_id"], ids[0]);

    // Another delivery of the same event has its own id.
    let s = slack.received_requests().await.unwrap();
    let other = s[0].headers.get("hookrelay-delivery-id").unwrap();
    assert!(other.to_str().unwrap().starts_with(event_id));
    assert_ne!(other.to_str().unwrap(), ids[0]);
}

#[tokio::test]
async fn a_redirect_is_a_failure_naming_its_location_and_is_never_followed() {
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&elsewhere)
        .await;
    let mut yaml = format!("{C66}admin: {{ token: {ADMIN} }}\ndestinations:\n");
    let mut servers = Vec::new();
    for status in [301, 302, 303, 307, 308] {
        let s = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(status)
                    .insert_header("Location", format!("{}/moved/{status}", elsewhere.uri())),
            )
            .mount(&s)
            .await;
        yaml.push_str(&format!(
            "  r{status}: {{ type: webhook, url: \"{}/hook\", headers: {{ X-Api-Key: k3y }} }}\n",
            s.uri()
        ));
        servers.push(s);
    }
    yaml.push_str("routes:\n  - to: [r301, r302, r303, r307, r308]\n");
    let app = spawn_app(&yaml).await;
    let v = post_c66(&app, &fixture("cloud66/backup.verification.failed.json")).await;
    app.wait_settled(Duration::from_secs(10)).await;
    let e = event(&app, &v["event_id"]).await;
    let deliveries = e["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 5);
    for d in deliveries {
        let status: u16 = d["destination"].as_str().unwrap()[1..].parse().unwrap();
        assert_eq!(d["state"], "dead", "{d}");
        assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "{d}");
        assert_eq!(d["attempts"][0]["status"], status);
        let err = d["last_error"].as_str().unwrap();
        let location = format!("{}/moved/{status}", elsewhere.uri());
        assert!(err.contains(&location), "{err}");
        assert!(err.contains("does not follow redirects"), "{err}");
    }
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn bidi_controls_from_payloads_never_reach_chat_text() {
    let chat = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&chat)
        .await;
    let app = spawn_app(&format!(
        "{C66}destinations:\n  s: {{ type: slack, webhook_url: \"{0}/slack\", rate_limit: 100/s }}\n  t: {{ type: teams, webhook_url: \"{0}/teams\" }}\n  w: {{ type: webhook, url: \"{0}/hook\" }}\nroutes:\n  - to: [s, t, w]\n",
        chat.uri()
    ))
    .await;
    // "db-\u{202E}deliaf\u{202C}" displays as "db-failed" reversed into "deliaf".
    let sneaky = "db-\u{202E}deliaf\u{202C} \u{2066}x\u{2069} \u{202A}\u{202B}\u{202D}";
    post_c66(&app, &c66_with(|v| v["stack"]["name"] = json!(sneaky))).await;
    let got = wait_received(&chat, 3, Duration::from_secs(10)).await;
    let reqs = chat.received_requests().await.unwrap();
    let bidi = |s: &str| {
        s.chars()
            .any(|c| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
    };
    for (r, body) in reqs.iter().zip(&got) {
        let text = all_text(body);
        if r.url.path() == "/hook" {
            // A webhook receiver gets the data as it came.
            assert!(text.contains(sneaky), "{text}");
        } else {
            assert!(!bidi(&text), "{}: {text}", r.url.path());
            assert!(text.contains("db-deliaf x"), "{}: {text}", r.url.path());
        }
    }
}

#[tokio::test]
async fn teams_messagecard_gets_a_message_card_with_the_default_template() {
    let teams = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("1"))
        .mount(&teams)
        .await;
    let app = spawn_app(&format!(
        "{C66}destinations:\n  t: {{ type: teams, webhook_url: \"{}/webhookb2/x\", format: messagecard }}\nroutes:\n  - to: [t]\n",
        teams.uri()
    ))
    .await;
    post_c66(&app, &fixture("cloud66/backup.verification.failed.json")).await;
    let got = wait_received(&teams, 1, Duration::from_secs(10)).await;
    let card = &got[0];
    assert_eq!(card["@type"], "MessageCard", "{card:#}");
    assert_eq!(card["@context"], "https://schema.org/extensions");
    assert!(card.get("attachments").is_none(), "{card:#}");
    let title = card["title"].as_str().unwrap();
    assert!(
        title.starts_with("❌ Backup verification failed"),
        "{title}"
    );
    assert_eq!(card["summary"], card["title"]);
    assert_eq!(card["themeColor"], "B42318");
    let facts = card["sections"][0]["facts"].as_array().unwrap();
    let names: Vec<&str> = facts.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"Stack") && names.contains(&"Status"),
        "{names:?}"
    );
}

/// The general HTTP client is built only when a send needs it (a proxy, an email
/// API): a server whose webhook and chat sends go out on hookrelay's own
/// connections never builds it, and does not pay its memory at start.
#[tokio::test]
async fn webhook_and_chat_sends_never_build_the_general_http_client() {
    // With a proxy set, every send goes through the general client on purpose.
    let proxies = ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"];
    if proxies
        .iter()
        .any(|v| std::env::var_os(v).is_some() || std::env::var_os(v.to_lowercase()).is_some())
    {
        eprintln!("skipped: a proxy is set in the environment");
        return;
    }
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hook)
        .await;
    let slack = slack_ok().await;
    let app = to_webhook_and_slack(&hook, &slack).await;
    assert!(!app.shared.http.built(), "built at start");
    post_c66(&app, &fixture("cloud66/backup.verification.failed.json")).await;
    let settled = app.wait_settled(Duration::from_secs(10)).await;
    assert_eq!(
        hook.received_requests().await.unwrap().len(),
        1,
        "{settled}"
    );
    assert_eq!(
        slack.received_requests().await.unwrap().len(),
        1,
        "{settled}"
    );
    assert!(!app.shared.http.built(), "built by a send");
}
