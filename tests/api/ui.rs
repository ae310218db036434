//! The web page over plain HTTP: off without an admin token, sign-in, the
//! session cookie, CSRF, the Content-Security-Policy, escaping, the delivery
//! log's filters and paging. The browser tests are in `ui_browser.rs`.

use std::time::Duration;

use hookrelay::ui::session::Key;
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

/// A config with an admin token, sources of every kind (no tokens: tests post
/// freely) and failures routed to a webhook at `mock`.
pub fn config(mock: &str) -> String {
    format!(
        "admin: {{ token: {ADMIN} }}
sources:
  c66: {{ kind: cloud66, dedup_window: 0s }}
  sb: {{ kind: simplebackups, dedup_window: 0s }}
  ctl: {{ kind: centurylink, dedup_window: 0s }}
destinations:
  ops-hook: {{ type: webhook, url: \"{mock}/hook\" }}
routes:
  - match: {{ status: [failure, missing, partial] }}
    to: [ops-hook]
"
    )
}

/// A client that shows redirects instead of following them.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The value of cookie `name` among a response's `Set-Cookie` headers, with the
/// whole header.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<(String, String)> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| {
            let (kv, _) = h.split_once(';').unwrap_or((h, ""));
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| (v.to_string(), h.to_string()))
        })
}

/// The first `name="csrf" value="…"` of a page.
pub fn csrf_of(html: &str) -> String {
    let re = regex::Regex::new(r#"name="csrf" value="([0-9a-f]+)""#).unwrap();
    re.captures(html)
        .unwrap_or_else(|| panic!("no csrf field in {html}"))[1]
        .to_string()
}

/// Signs in over HTTP; returns the `Cookie` header value to send.
pub async fn sign_in(app: &TestApp) -> String {
    let c = client();
    let form = c
        .get(format!("{}/ui/login", app.address))
        .send()
        .await
        .unwrap();
    let (login, _) = set_cookie(&form, "hookrelay_login").expect("login cookie");
    let csrf = csrf_of(&form.text().await.unwrap());
    let r = c
        .post(format!("{}/ui/login", app.address))
        .header("Cookie", format!("hookrelay_login={login}"))
        .form(&[("token", ADMIN), ("csrf", &csrf), ("next", "/ui")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let (session, _) = set_cookie(&r, "hookrelay_session").expect("session cookie");
    format!("hookrelay_session={session}")
}

pub async fn get(app: &TestApp, path: &str, cookie: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", app.address))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap()
}

async fn post(app: &TestApp, path: &str, cookie: &str, form: &[(&str, &str)]) -> reqwest::Response {
    client()
        .post(format!("{}{path}", app.address))
        .header("Cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap()
}

/// Posts a Cloud66 failure whose delivery the mock refuses for good (400): the
/// delivery ends dead. Returns the event id and the delivery id.
pub async fn dead_delivery(app: &TestApp) -> (String, i64) {
    let r = app
        .post(
            "/hooks/c66",
            fixture("cloud66/managed_backup.fail.json"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_settled(Duration::from_secs(10)).await;
    let v = app.api(&format!("/api/events/{id}")).await;
    assert_eq!(v["deliveries"][0]["state"], "dead", "{v}");
    (id, v["deliveries"][0]["id"].as_i64().unwrap())
}

async fn refusing_mock() -> MockServer {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string("invalid_payload"))
        .mount(&mock)
        .await;
    mock
}

#[tokio::test]
async fn the_web_page_is_not_there_without_an_admin_token() {
    let app = spawn_app("sources:\n  c: { kind: cloud66 }\n").await;
    for path in ["/ui", "/ui/", "/ui/login", "/ui/events", "/ui/style.css"] {
        let r = get(&app, path, "").await;
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = client()
        .post(format!("{}/ui/login", app.address))
        .form(&[("token", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn without_a_session_every_page_sends_the_browser_to_sign_in() {
    let mock = refusing_mock().await;
    let app = spawn_app(&config(&mock.uri())).await;
    let (event, delivery) = dead_delivery(&app).await;
    for (path, next) in [
        ("/ui", "%2Fui"),
        (
            "/ui/events?status=failure",
            "%2Fui%2Fevents%3Fstatus%3Dfailure",
        ),
        (
            &format!("/ui/events/{event}"),
            &format!("%2Fui%2Fevents%2F{event}"),
        ),
    ] {
        let r = get(&app, path, "").await;
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(
            r.headers()["location"],
            format!("/ui/login?next={next}").as_str()
        );
    }
    // A form posted without a session changes nothing.
    let r = post(&app, &format!("/ui/deliveries/{delivery}/retry"), "", &[]).await;
    assert_eq!(r.status(), 303);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/ui/login"));
    let v = app.api(&format!("/api/events/{event}")).await;
    assert_eq!(v["deliveries"][0]["state"], "dead");
    // The sign-in page itself is open, and sends nowhere but this site.
    let r = get(&app, "/ui/login?next=https://evil.example/", "").await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"name="next" value="/ui""#), "{html}");
}

#[tokio::test]
async fn signing_in_gives_an_expiring_http_only_strict_cookie_that_is_not_the_token() {
    let app = spawn_app(&config("http://127.0.0.1:9")).await;
    let c = client();
    let form = c
        .get(format!("{}/ui/login", app.address))
        .send()
        .await
        .unwrap();
    let (login, _) = set_cookie(&form, "hookrelay_login").unwrap();
    let csrf = csrf_of(&form.text().await.unwrap());

    // A wrong token: refused, said so, no session.
    let r = c
        .post(format!("{}/ui/login", app.address))
        .header("Cookie", format!("hookrelay_login={login}"))
        .form(&[
            ("token", "not-the-token"),
            ("csrf", &csrf),
            ("next", "/ui/events"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(set_cookie(&r, "hookrelay_session").is_none());
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("That is not the admin token."));

    // The right token without the form's cookie (a form posted from elsewhere).
    let r = c
        .post(format!("{}/ui/login", app.address))
        .form(&[("token", ADMIN), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(set_cookie(&r, "hookrelay_session").is_none());

    // The right token with the form: signed in, back where it was going.
    let r = c
        .post(format!("{}/ui/login", app.address))
        .header("Cookie", format!("hookrelay_login={login}"))
        .form(&[("token", ADMIN), ("csrf", &csrf), ("next", "/ui/events")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/events");
    let (session, header) = set_cookie(&r, "hookrelay_session").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
        assert!(header.contains(attr), "{attr} missing: {header}");
    }
    assert!(!session.contains(ADMIN) && !header.contains(ADMIN));
    let r = get(&app, "/ui/events", &format!("hookrelay_session={session}")).await;
    assert_eq!(r.status(), 200);

    // Signing out clears the cookie.
    let html = r.text().await.unwrap();
    let r = post(
        &app,
        "/ui/logout",
        &format!("hookrelay_session={session}"),
        &[("csrf", &csrf_of(&html))],
    )
    .await;
    assert_eq!(r.status(), 303);
    let (cleared, header) = set_cookie(&r, "hookrelay_session").unwrap();
    assert_eq!(cleared, "");
    assert!(header.contains("Max-Age=0"));
}

#[tokio::test]
async fn expired_forged_and_foreign_session_cookies_are_refused() {
    let app = spawn_app(&config("http://127.0.0.1:9")).await;
    let now = chrono::Utc::now().timestamp();
    let key = Key::from_admin_token(ADMIN);
    let good = key.session_value(now + 600, "n1");
    let (head, mac) = good.rsplit_once('.').unwrap();
    let flipped = format!(
        "{head}.{}{}",
        if mac.starts_with('0') { '1' } else { '0' },
        &mac[1..]
    );
    for (what, value) in [
        ("expired", key.session_value(now - 1, "n1")),
        ("tampered", flipped),
        (
            "longer life, old signature",
            format!("{}.n1.{mac}", now + 99_999),
        ),
        (
            "another token's",
            Key::from_admin_token("other").session_value(now + 600, "n1"),
        ),
        ("the token itself", ADMIN.to_string()),
    ] {
        let r = get(&app, "/ui", &format!("hookrelay_session={value}")).await;
        assert_eq!(r.status(), 303, "{what} cookie accepted");
    }
    let r = get(&app, "/ui", &format!("hookrelay_session={good}")).await;
    assert_eq!(r.status(), 200, "a valid cookie is accepted");
}

#[tokio::test]
async fn a_form_without_its_csrf_token_is_refused_and_changes_nothing() {
    let mock = refusing_mock().await;
    let app = spawn_app(&config(&mock.uri())).await;
    let (event, delivery) = dead_delivery(&app).await;
    let cookie = sign_in(&app).await;
    let other = sign_in(&app).await;
    let page = get(&app, &format!("/ui/events/{event}"), &cookie).await;
    let html = page.text().await.unwrap();
    let csrf = csrf_of(&html);
    let other_csrf = csrf_of(
        &get(&app, &format!("/ui/events/{event}"), &other)
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_ne!(csrf, other_csrf);
    let retry = format!("/ui/deliveries/{delivery}/retry");
    let replay = format!("/ui/events/{event}/replay");
    for (path, form) in [
        (&retry, vec![("event", event.as_str())]),
        (&retry, vec![("csrf", ""), ("event", event.as_str())]),
        (
            &retry,
            vec![("csrf", other_csrf.as_str()), ("event", event.as_str())],
        ),
        (&replay, vec![]),
        (&replay, vec![("csrf", other_csrf.as_str())]),
        (&"/ui/logout".to_string(), vec![]),
    ] {
        let r = post(&app, path, &cookie, &form).await;
        assert_eq!(r.status(), 403, "{path} {form:?}");
    }
    let v = app.api(&format!("/api/events/{event}")).await;
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 1, "no replay");
    assert_eq!(v["deliveries"][0]["state"], "dead", "no retry");
    assert_eq!(v["deliveries"][0]["attempts"].as_array().unwrap().len(), 1);

    // With its token, the same forms work: Retry sends again, Replay adds one
    // (the destination takes them now).
    mock.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&mock)
        .await;
    let r = post(&app, &retry, &cookie, &[("csrf", &csrf), ("event", &event)]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        format!("/ui/events/{event}?retried={delivery}#delivery-{delivery}").as_str()
    );
    let r = post(&app, &replay, &cookie, &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        format!("/ui/events/{event}?replayed=1").as_str()
    );
    app.wait_settled(Duration::from_secs(10)).await;
    let v = app.api(&format!("/api/events/{event}")).await;
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 2);
    assert_eq!(v["deliveries"][0]["attempts"].as_array().unwrap().len(), 2);
    let html = get(&app, &format!("/ui/events/{event}?replayed=1"), &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Event replayed: 1 new deliveries queued."));
    // Delivered now: the same form again (a second tab) is refused, not resent.
    let r = post(&app, &retry, &cookie, &[("csrf", &csrf), ("event", &event)]).await;
    assert_eq!(r.status(), 409);
    let html = r.text().await.unwrap();
    assert!(
        html.contains(&format!(
            "Delivery {delivery} is delivered: only a dead delivery is retried."
        )),
        "{html}"
    );
    let v = app.api(&format!("/api/events/{event}")).await;
    assert_eq!(v["deliveries"][0]["attempts"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn pages_carry_a_strict_csp_and_show_payload_values_as_text() {
    let app = spawn_app(&config("http://127.0.0.1:9")).await;
    let mut payload: Value = serde_json::from_str(&fixture("simplebackups/success.json")).unwrap();
    payload["backup"]["name"] = json!("<script>alert('backup')</script>");
    payload["note"] = json!("\"><img src=x onerror=alert(1)> & <b>bold</b>");
    let r = app.post("/hooks/sb", payload.to_string(), &[]).await;
    let id = r.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    let cookie = sign_in(&app).await;
    let links = regex::Regex::new(r#"(?:href|src)="([^"]*)""#).unwrap();
    for path in [
        "/ui".to_string(),
        "/ui/events".to_string(),
        format!("/ui/events/{id}"),
        "/ui/login".to_string(),
    ] {
        let r = get(&app, &path, &cookie).await;
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(
            csp,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
            "{path}"
        );
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        let html = r.text().await.unwrap();
        for raw in ["<script", "<img", "<b>", " style=", "onerror=alert(1)>"] {
            assert!(!html.contains(raw), "{path} holds {raw}");
        }
        // Only this site's own stylesheet and icon are referenced.
        for link in links.captures_iter(&html) {
            let url = &link[1];
            assert!(
                url.starts_with('/') && !url.starts_with("//"),
                "{path}: {url}"
            );
        }
    }
    let html = get(&app, &format!("/ui/events/{id}"), &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("&lt;script&gt;alert('backup')&lt;/script&gt;"));
    assert!(
        html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt; &amp; &lt;b&gt;bold&lt;/b&gt;")
    );
    let css = get(&app, "/ui/style.css", "").await;
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
}

#[tokio::test]
async fn the_delivery_log_filters_by_status_source_and_delivery_state_and_pages() {
    let mock = refusing_mock().await;
    let app = spawn_app(&config(&mock.uri())).await;
    let (dead_event, _) = dead_delivery(&app).await;
    let mut ids = Vec::new();
    for i in 0..55 {
        let mut p: Value = serde_json::from_str(&fixture("simplebackups/success.json")).unwrap();
        p["id"] = json!(1000 + i);
        p["backup"]["name"] = json!(format!("nightly-{i:02}"));
        let r = app.post("/hooks/sb", p.to_string(), &[]).await;
        ids.push(
            r.json::<Value>().await.unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let cookie = sign_in(&app).await;
    let events_on = |html: &str| -> Vec<String> {
        regex::Regex::new(r#"<a class="name" href="/ui/events/([^"]+)""#)
            .unwrap()
            .captures_iter(html)
            .map(|c| c[1].to_string())
            .collect()
    };

    let page1 = get(&app, "/ui/events", &cookie).await.text().await.unwrap();
    let got = events_on(&page1);
    assert_eq!(got.len(), 50);
    assert_eq!(got[0], ids[54], "newest first");
    let older = regex::Regex::new(r#"href="(/ui/events\?before=[^"]+)""#)
        .unwrap()
        .captures(&page1)
        .expect("a link to older events")[1]
        .to_string();
    let page2 = get(&app, &older, &cookie).await.text().await.unwrap();
    let got2 = events_on(&page2);
    assert_eq!(got2.len(), 6);
    assert_eq!(got2[4], ids[0]);
    assert_eq!(got2[5], dead_event);
    assert!(page2.contains("Newest"));
    assert!(!page2.contains("Older"));

    for (query, expect) in [
        ("?delivery=dead", vec![dead_event.clone()]),
        ("?status=failure", vec![dead_event.clone()]),
        ("?status=failure&source=sb", vec![]),
        ("?source=c66&delivery=", vec![dead_event.clone()]),
        ("?delivery=delivered", vec![]),
    ] {
        let html = get(&app, &format!("/ui/events{query}"), &cookie)
            .await
            .text()
            .await
            .unwrap();
        assert_eq!(events_on(&html), expect, "{query}");
    }
    let r = get(&app, "/ui/events?delivery=lost", &cookie).await;
    assert_eq!(r.status(), 400);
    // As the admin API: an unknown status or a malformed cursor is a 400 page,
    // not an empty list; another spelling of a stored id pages from it.
    let r = get(&app, "/ui/events?status=bogus", &cookie).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Status must be one of"));
    let r = get(&app, "/ui/events?before=garbage", &cookie).await;
    assert_eq!(r.status(), 400);
    let upper = format!("/ui/events?before={}", ids[5].to_uppercase());
    let html = get(&app, &upper, &cookie).await.text().await.unwrap();
    assert_eq!(events_on(&html)[0], ids[4], "{upper}");
    let r = get(&app, "/ui/events/no-such-event", &cookie).await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn sign_in_is_refused_for_a_minute_after_ten_wrong_tokens() {
    let app = spawn_app(&config("http://127.0.0.1:9")).await;
    let c = client();
    let attempt = |token: &'static str| {
        let c = c.clone();
        let address = app.address.clone();
        async move {
            let form = c.get(format!("{address}/ui/login")).send().await.unwrap();
            let (login, _) = set_cookie(&form, "hookrelay_login").unwrap();
            let csrf = csrf_of(&form.text().await.unwrap());
            c.post(format!("{address}/ui/login"))
                .header("Cookie", format!("hookrelay_login={login}"))
                .form(&[("token", token), ("csrf", &csrf), ("next", "/ui")])
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..10 {
        assert_eq!(attempt("not-the-token").await.status(), 401);
    }
    let r = attempt(ADMIN).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert!(set_cookie(&r, "hookrelay_session").is_none());
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Too many wrong tokens from this address. Try again in "),
        "{html}"
    );
    // The admin API shares the count.
    assert_eq!(app.get("/api/events", Some(ADMIN)).await.status(), 429);
}

/// The board is the backup watch's view (`/api/backups`): a backup an `expect`
/// rule names shows before it ever reported, with its next deadline; a backup
/// that failed leads; a digest (hookrelay's own summary event) is no backup.
#[tokio::test]
async fn the_board_shows_every_watched_backup_with_its_deadline_and_no_digest() {
    let app = spawn_app(&format!(
        "{}watch:\n  by: [source, server, backup]\n  expect:\n    - match: {{ source: ctl, server: VA1TEST-DB02, backup: nightly-db }}\n      every: 24h\n\
         digest:\n  - {{ cron: \"* * * * *\", to: [ops-hook] }}\n",
        config("http://127.0.0.1:9")
    ))
    .await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    let mut clock = hookrelay::digest::Clock::default();
    let t0 = app.shared.store.clock_ms().await.unwrap();
    hookrelay::digest::tick(&app.shared, &mut clock, t0)
        .await
        .unwrap();
    let stored = hookrelay::digest::tick(&app.shared, &mut clock, t0 + 120_000)
        .await
        .unwrap();
    assert_eq!(stored, 1, "a digest event is stored");
    let cookie = sign_in(&app).await;
    // The watch writes the pinned subject within a second of start.
    let shown = wait_for(Duration::from_secs(20), || async {
        let page = get(&app, "/ui", &cookie).await.text().await.unwrap();
        page.contains("nightly-db")
    })
    .await;
    let html = get(&app, "/ui", &cookie).await.text().await.unwrap();
    assert!(shown, "the pinned backup is on the board: {html}");
    let pinned = html.find("title=\"ctl/VA1TEST-DB02/nightly-db\"").unwrap();
    let failing = html.find("title=\"sb/Acme Server/Acme Project\"").unwrap();
    assert!(failing < pinned, "worst first");
    // Its row: never succeeded, and a deadline a day ahead.
    let row = &html[pinned..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("never"), "{row}");
    assert!(row.contains("<time datetime="), "a next deadline: {row}");
    assert!(
        !html.contains("title=\"hookrelay\""),
        "no digest row: {html}"
    );
}
