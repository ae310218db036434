//! The web page in a real browser: Debian's headless Chromium driven through
//! chromedriver. Sign in, read the board, open a failing backup's event, press
//! Retry on its dead delivery and see it delivered, all with JavaScript off; a
//! payload holding `<script>` shows as text; no request leaves for another
//! origin. Screenshots land in `target/tmp/ui/` to be looked at.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;
use crate::ui::config;
use crate::ui_webdriver::{Browser, Driver};

const DAY_MS: i64 = 86_400_000;
const XSS: &str = "<script>document.title='pwned'</script>";

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui")
}

struct Scenario {
    app: TestApp,
    mock: MockServer,
    /// Today's failure of the production database backup.
    failing_event: String,
    /// A success whose message is a script.
    xss_event: String,
}

fn payload(file: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(&fixture(file)).unwrap();
    edit(&mut v);
    v.to_string()
}

async fn post(app: &TestApp, source: &str, body: String) -> String {
    let r = app.post(&format!("/hooks/{source}"), body, &[]).await;
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Four backups with two weeks of history. Events are posted oldest day first
/// and then moved back to their day in the database, with their subjects' times
/// (received_at is hookrelay's own clock, which a test cannot set through HTTP).
async fn scenario() -> Scenario {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string("invalid_payload"))
        .mount(&mock)
        .await;
    let app = spawn_app(&config(&mock.uri())).await;
    let db = rusqlite::Connection::open(app._dir.path().join("hookrelay.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut failing_event = String::new();
    let mut xss_event = String::new();
    for ago in (0..14i64).rev() {
        let mut ids = Vec::new();
        // Acme files: every day but one.
        if ago != 5 {
            ids.push(
                post(
                    &app,
                    "sb",
                    payload("simplebackups/success.json", |v| v["id"] = json!(100 + ago)),
                )
                .await,
            );
        }
        // The production database: failed nine days ago and today.
        let status = if ago == 0 || ago == 9 {
            "fail"
        } else {
            "success"
        };
        let id = post(
            &app,
            "c66",
            payload("cloud66/managed_backup.fail.json", |v| {
                v["event_type"] = json!(format!("managed_backup.{status}"));
                if status == "fail" {
                    v["backup"]["backup_result"] =
                        json!("pg_dump: error: connection to server lost");
                }
            }),
        )
        .await;
        if ago == 0 {
            failing_event = id.clone();
        }
        ids.push(id);
        // The CenturyLink nightly: failed the last two days, missed today.
        let ctl = match ago {
            0 => "centurylink/missing.json",
            1 | 2 => "centurylink/failed.json",
            _ => "centurylink/success.json",
        };
        ids.push(
            post(
                &app,
                "ctl",
                payload(ctl, |v| {
                    let m = v.as_object_mut().unwrap();
                    m.remove("text");
                    m.insert("server".into(), json!("VA1PROD-DB01"));
                    m.insert("accountPolicyName".into(), json!("nightly-db"));
                    m.insert("restorePointId".into(), json!(format!("rp-{ago}")));
                }),
            )
            .await,
        );
        // Staging, with a script for a name: every other day.
        if ago % 2 == 0 {
            let id = post(
                &app,
                "c66",
                payload("cloud66/managed_backup.fail.json", |v| {
                    v["event_type"] = json!("managed_backup.success");
                    v["stack"]["name"] = json!("my-staging-app");
                    v["stack"]["environment"] = json!("staging");
                    v["backup"]["database_name"] = json!("myapp_staging");
                    v["backup"]["backup_result"] = json!(XSS);
                    v["backup"]["verify_result"] = json!(XSS);
                }),
            )
            .await;
            xss_event = id.clone();
            ids.push(id);
        }
        if ago > 0 {
            let shift = ago * DAY_MS;
            for id in ids {
                // Its subject's times (the board's last success, down since) are
                // this event's: moved back with it. SET reads the row as it was.
                db.execute(
                    "UPDATE subjects SET
                       last_success_at = CASE WHEN last_success_at = last_event_at
                         THEN last_success_at - ?1 ELSE last_success_at END,
                       down_since = CASE WHEN down_since = last_event_at
                         THEN down_since - ?1 ELSE down_since END,
                       last_event_at = last_event_at - ?1
                     WHERE key = (SELECT json_extract(event, '$.subject') FROM events WHERE id = ?2)",
                    rusqlite::params![shift, id],
                )
                .unwrap();
                db.execute(
                    "UPDATE events SET received_at = received_at - ?1,
                       event = json_set(event, '$.received_at',
                         strftime('%Y-%m-%dT%H:%M:%SZ', (received_at - ?1) / 1000, 'unixepoch'))
                     WHERE id = ?2",
                    rusqlite::params![shift, id],
                )
                .unwrap();
            }
        }
    }
    app.wait_settled(Duration::from_secs(20)).await;
    Scenario {
        app,
        mock,
        failing_event,
        xss_event,
    }
}

async fn sign_in(b: &Browser, app: &TestApp, page: &str) {
    b.goto(&format!("{}{page}", app.address)).await;
    assert!(
        b.current_url().await.contains("/ui/login?next="),
        "not sent to sign in: {}",
        b.current_url().await
    );
    let token = b.find("#token").await;
    b.type_into(&token, ADMIN).await;
    b.click(&b.find("form.login button").await).await;
    wait_url(b, &format!("{}{page}", app.address)).await;
}

/// Waits until the browser is at `url` (or, with a `*` at its end, at a URL
/// starting with what comes before): a click may return before the page it
/// leads to (or the redirect answering a form) is in.
async fn wait_url(b: &Browser, url: &str) {
    let there = wait_for(Duration::from_secs(10), || async {
        let at = b.current_url().await;
        match url.strip_suffix('*') {
            Some(prefix) => at.starts_with(prefix),
            None => at == url,
        }
    })
    .await;
    assert!(there, "not at {url}: {}", b.current_url().await);
}

/// Reloads until `css` matches, or fails after `within`.
async fn wait_for_element(b: &Browser, url: &str, css: &str, within: Duration) -> bool {
    wait_for(within, || async {
        b.goto(url).await;
        !b.find_all(css).await.is_empty()
    })
    .await
}

fn assert_same_origin(urls: &[String], app: &TestApp) {
    assert!(
        urls.iter().any(|u| u.ends_with("/ui/style.css")),
        "the request log is empty: {urls:?}"
    );
    let foreign: Vec<&String> = urls
        .iter()
        .filter(|u| !u.starts_with(&format!("{}/", app.address)))
        .collect();
    assert!(foreign.is_empty(), "requests to other origins: {foreign:?}");
}

#[tokio::test]
async fn in_a_real_browser_the_board_tells_what_fails_and_retry_delivers() {
    let s = scenario().await;
    let app = &s.app;
    let driver = Driver::start().await;

    // ---- JavaScript off: the whole on-call path ----
    let b = driver.browser(false, 1280, 760).await;
    sign_in(&b, app, "/ui").await;
    let headline = b.text(&b.find(".headline").await).await;
    assert_eq!(headline, "2 of 4 backups need attention");
    let rows = b.find_all("table.board tbody tr").await;
    let first: Vec<String> = {
        let mut v = Vec::new();
        for r in &rows {
            v.push(b.attr(r, "class").await.unwrap_or_default());
        }
        v
    };
    assert_eq!(
        first,
        ["st-missing", "st-failing", "st-ok", "st-ok"],
        "worst first"
    );
    let failing = b.find("tr.st-failing").await;
    let text = b.text(&failing).await;
    assert!(
        text.contains("FAILING") && text.contains("myapp_production"),
        "{text}"
    );
    assert!(
        text.contains("c66 · my-production-app · server-abc123"),
        "{text}"
    );
    let mut strip = Vec::new();
    for d in b.find_all("tr.st-failing .day").await {
        strip.push(b.attr(&d, "class").await.unwrap());
    }
    let mut expect = vec!["day ok"; 14];
    expect[4] = "day bad"; // nine days ago
    expect[13] = "day bad"; // today
    assert_eq!(strip, expect);
    let missing = b.text(&b.find("tr.st-missing").await).await;
    assert!(
        missing.contains("MISSING") && missing.contains("nightly-db"),
        "{missing}"
    );
    assert!(missing.contains('3'), "three failures in a row: {missing}");
    let mut acme = Vec::new();
    for row in b.find_all("tr.st-ok").await {
        if b.text(&row).await.contains("Acme Project") {
            for d in b.find_all_in(&row, ".day").await {
                acme.push(b.attr(&d, "class").await.unwrap());
            }
        }
    }
    assert_eq!(acme.len(), 14);
    assert_eq!(acme[8], "day none", "no event five days ago: {acme:?}");
    assert_eq!(acme[13], "day ok");
    b.screenshot(&shots().join("board.png")).await;

    // Open the failing backup's event.
    b.click(&b.find("tr.st-failing a.name").await).await;
    let event_url = format!("{}/ui/events/{}", app.address, s.failing_event);
    wait_url(&b, &event_url).await;
    let dead = b.find("section.delivery.dead").await;
    let text = b.text(&dead).await;
    assert!(text.contains("ops-hook") && text.contains("400"), "{text}");
    assert!(
        text.contains("invalid_payload"),
        "the last error is shown: {text}"
    );
    b.screenshot(&shots().join("event.png")).await;

    // The receiver is fixed; Retry delivers.
    s.mock.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&s.mock)
        .await;
    b.click(&b.find("section.delivery.dead button.primary").await)
        .await;
    // The form's answer is a redirect back here with a note.
    wait_url(&b, &format!("{event_url}?retried=*")).await;
    assert!(b
        .text(&b.find(".flash").await)
        .await
        .contains("queued for retry"));
    assert!(
        wait_for_element(
            &b,
            &event_url,
            "section.delivery.delivered",
            Duration::from_secs(10)
        )
        .await,
        "the retried delivery never showed as delivered"
    );
    let got = wait_received(&s.mock, 1, Duration::from_secs(5)).await;
    assert!(all_text(&got[0]).contains("myapp_production"), "{got:?}");
    let text = b.text(&b.find("section.delivery.delivered").await).await;
    assert!(text.contains("200"), "the second attempt is listed: {text}");
    assert!(
        b.find_all("section.delivery button").await.is_empty(),
        "no Retry once delivered"
    );
    assert_same_origin(&b.requested_urls().await, app);
    b.quit().await;

    // ---- JavaScript on: a script in a payload stays text ----
    let b = driver.browser(true, 1280, 900).await;
    let page = format!("/ui/events/{}", s.xss_event);
    sign_in(&b, app, &page).await;
    // Run, the script would have renamed the page.
    assert_eq!(b.title().await, "myapp_staging · hookrelay");
    assert!(
        b.find_all("script").await.is_empty(),
        "no script element in the page"
    );
    assert_eq!(b.text(&b.find(".eventhead .message").await).await, XSS);
    assert!(b
        .page_text()
        .await
        .contains(&format!("\"backup_result\": \"{XSS}\"")));
    b.goto(&format!("{}/ui", app.address)).await;
    assert!(b.find_all("script").await.is_empty());
    assert_same_origin(&b.requested_urls().await, app);
    b.quit().await;

    // A phone: the same board, for a person to look at.
    let b = driver.browser(false, 800, 1100).await;
    sign_in(&b, app, "/ui").await;
    b.emulate_phone(390, 1100).await;
    b.goto(&format!("{}/ui", app.address)).await;
    b.screenshot(&shots().join("board-phone.png")).await;
    b.quit().await;
}
