//! A small W3C WebDriver client for the web page's browser tests: Debian's
//! chromedriver on a free local port driving headless Chromium. Only what the
//! tests use; plain JSON over HTTP with the client the tests already have.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::wait_for;

/// A running chromedriver, stopped when dropped.
pub struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary(env: &str, candidates: &[&str]) -> String {
    if let Ok(p) = std::env::var(env) {
        return p;
    }
    candidates
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!(
                "{} not found: install Debian's chromium and chromium-driver \
                 (.ci/run does), or set {env}",
                candidates[0]
            )
        })
        .to_string()
}

impl Driver {
    pub async fn start() -> Driver {
        let exe = binary(
            "CHROMEDRIVER",
            &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
        );
        // A free port: bound by the OS, released for chromedriver to take.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(exe)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let ready = wait_for(Duration::from_secs(20), || async {
            match driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await
            {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            }
        })
        .await;
        assert!(ready, "chromedriver did not come up on port {port}");
        driver
    }

    /// A new headless browser; `javascript: false` turns scripts off for every
    /// page, as a person's browser with JavaScript disabled. The performance log
    /// records every request a page makes.
    pub async fn browser(&self, javascript: bool, width: u32, height: u32) -> Browser {
        let chromium = binary(
            "CHROMIUM",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        );
        let mut prefs = json!({});
        if !javascript {
            prefs["profile.managed_default_content_settings.javascript"] = json!(2);
        }
        let caps = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                        "--disable-gpu", "--no-first-run", "--disable-extensions",
                        "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--disable-default-apps", "--hide-scrollbars",
                        "--force-color-profile=srgb", "--lang=en-US",
                        format!("--window-size={width},{height}"),
                    ],
                    "prefs": prefs,
                },
                "goog:loggingPrefs": { "performance": "ALL" },
                // A page that hangs fails the test instead of stalling it.
                "timeouts": { "pageLoad": 30_000, "script": 30_000 },
            } }
        });
        let r: Value = self
            .http
            .post(format!("{}/session", self.base))
            .json(&caps)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("json");
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {r}"))
            .to_string();
        let b = Browser {
            http: self.http.clone(),
            url: format!("{}/session/{id}", self.base),
        };
        // Whether scripts really run: `<noscript>` content is in the page only
        // when they do not.
        b.goto("data:text/html,<noscript><p id=off>off</p></noscript>")
            .await;
        assert_eq!(
            b.find_all("#off").await.is_empty(),
            javascript,
            "JavaScript is not {}",
            if javascript { "on" } else { "off" }
        );
        b.requested_urls().await;
        b
    }
}

/// One browser session.
pub struct Browser {
    http: reqwest::Client,
    url: String,
}

/// An element reference.
pub type Element = String;

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("json");
        if v["value"].get("error").is_some() {
            panic!("webdriver {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn title(&self) -> String {
        self.call(reqwest::Method::GET, "/title", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Elements matching `css` inside `el`.
    pub async fn find_all_in(&self, el: &Element, css: &str) -> Vec<Element> {
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/element/{el}/elements"),
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn find(&self, css: &str) -> Element {
        self.find_all(css)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element {css}"))
    }

    pub async fn click(&self, el: &Element) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        )
        .await;
    }

    pub async fn type_into(&self, el: &Element, text: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// The text a person sees in an element.
    pub async fn text(&self, el: &Element) -> String {
        self.call(reqwest::Method::GET, &format!("/element/{el}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn attr(&self, el: &Element, name: &str) -> Option<String> {
        self.call(
            reqwest::Method::GET,
            &format!("/element/{el}/attribute/{name}"),
            None,
        )
        .await
        .as_str()
        .map(String::from)
    }

    /// The visible text of the whole page.
    pub async fn page_text(&self) -> String {
        let body = self.find("body").await;
        self.text(&body).await
    }

    pub async fn screenshot(&self, path: &std::path::Path) {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 screenshot"))
            .expect("valid base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot folder");
        }
        std::fs::write(path, png).expect("screenshot written");
    }

    /// Every URL the pages asked for since the last call (the performance log).
    pub async fn requested_urls(&self) -> Vec<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({ "type": "performance" })),
            )
            .await;
        let mut urls = Vec::new();
        for entry in v.as_array().into_iter().flatten() {
            let Some(msg) = entry["message"].as_str() else {
                continue;
            };
            let Ok(m) = serde_json::from_str::<Value>(msg) else {
                continue;
            };
            if m["message"]["method"] == "Network.requestWillBeSent" {
                if let Some(u) = m["message"]["params"]["request"]["url"].as_str() {
                    urls.push(u.to_string());
                }
            }
        }
        urls
    }

    /// Lays pages out as a phone of `width` CSS pixels would (Chromium's window
    /// cannot be made that narrow).
    pub async fn emulate_phone(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({
                "cmd": "Emulation.setDeviceMetricsOverride",
                "params": { "width": width, "height": height, "deviceScaleFactor": 1, "mobile": true },
            })),
        )
        .await;
    }

    pub async fn quit(self) {
        let _ = self.http.delete(&self.url).send().await;
    }
}
