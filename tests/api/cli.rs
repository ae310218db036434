//! The `hookrelay` binary: check, render, send, exit codes.

use std::process::{Command, Output};

use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::FIXTURES;

const BIN: &str = env!("CARGO_BIN_EXE_hookrelay");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn run(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    crate::helpers::run_hookrelay(dir, args, env)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_shipped_config_checks_clean_with_no_environment() {
    let out = run(REPO.as_ref(), &["check"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.starts_with("relay.yaml: ok"), "{s}");
    assert!(s.contains("stdout"), "{s}");
    assert!(s.contains("[disabled]"), "{s}");
    // Secrets from the environment never appear.
    let out = run(
        REPO.as_ref(),
        &["check"],
        &[(
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/SECRETPART",
        )],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("SECRETPART"));
}

/// The shipped `relay.yaml` with its commented `watch:` example switched on: it
/// names the shipped sources, so it checks clean, and `check` lists its rules
/// (with the subject the second one pins).
#[test]
fn the_shipped_watch_example_uncommented_checks_clean_and_is_listed() {
    let shipped = std::fs::read_to_string(format!("{REPO}/relay.yaml")).unwrap();
    let mut out = Vec::new();
    let mut in_watch = false;
    for line in shipped.lines() {
        if line.starts_with("# watch:") {
            in_watch = true;
        } else if line.trim().is_empty() {
            in_watch = false;
        }
        let line = if in_watch {
            line.strip_prefix("# ").unwrap_or(line)
        } else {
            line
        };
        out.push(line);
    }
    let yaml = out.join("\n");
    assert!(
        yaml.contains("\nwatch:\n"),
        "the example is still there: {yaml}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("relay.yaml"), &yaml).unwrap();
    let out = run(dir.path(), &["check"], &[]);
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{s}{}", text(&out.stderr));
    assert!(
        s.contains("backup watch (2 rules, subjects by source, stack, server, backup):"),
        "{s}"
    );
    assert!(s.contains("[0] source=cloud66 environment=production: expected every 24h (+1h grace), reminds every 12h"), "{s}");
    assert!(
        s.contains("watches centurylink/VA1TEST-DB01/nightly-db from start"),
        "{s}"
    );
    // Its routes get the watch's own events too (no warning that they cannot).
    assert!(!s.contains("warning"), "{s}");
}

/// A route that names status `missing` or `recovered` but matches on `provider`
/// (or `event`) keeps out the backup watch's own events (`provider: hookrelay`):
/// `check` says so, at the condition, and exits 0.
#[test]
fn check_warns_when_a_route_keeps_out_the_backup_watchs_events() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("relay.yaml"),
        "storage: { url: \"sqlite://data/h.db\" }\nsources:\n  c66: { kind: cloud66 }\n\
         destinations:\n  out: { type: console }\n\
         routes:\n  - match: { provider: cloud66, status: [failure, missing, recovered] }\n    to: [out]\n\
         watch:\n  expect:\n    - match: { source: c66 }\n      every: 24h\n",
    )
    .unwrap();
    let out = run(dir.path(), &["check"], &[]);
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{s}{}", text(&out.stderr));
    assert!(s.starts_with("relay.yaml: ok, 2 warnings\n"), "{s}");
    for what in ["recovered", "missed-backup"] {
        assert!(
            s.contains(&format!(
                "routes[0].match.provider: names status {}, but the backup watch's {what} events \
                 have provider \"hookrelay\", so they never match this route; match on source",
                if what == "recovered" {
                    "recovered"
                } else {
                    "missing"
                }
            )),
            "{s}"
        );
    }
}

/// `render` and `send` refuse a payload as `serve` would (too deep, too large, not
/// an object), saying what `serve` would answer, instead of rendering it.
#[test]
fn render_refuses_what_serve_refuses_and_says_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("relay.yaml"),
        "server: { max_body_bytes: 2000 }\nsources:\n  g: { kind: generic }\n",
    )
    .unwrap();
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(101), "]".repeat(101));
    let big = format!("{{\"a\":\"{}\"}}", "x".repeat(3000));
    for (name, body, want) in [
        (
            "deep.json",
            deep.as_str(),
            "nested more than 100 levels deep (hookrelay serve would answer 400)",
        ),
        (
            "big.json",
            big.as_str(),
            "larger than 2000 bytes (hookrelay serve would answer 413)",
        ),
        (
            "list.json",
            "[1]",
            "must be a JSON object (hookrelay serve would answer 400)",
        ),
    ] {
        std::fs::write(dir.path().join(name), body).unwrap();
        let out = run(dir.path(), &["render", "--source", "g", name], &[]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{name}: {err}");
    }
    std::fs::write(
        dir.path().join("ok.json"),
        "\u{feff}{\"status\":\"failed\"}",
    )
    .unwrap();
    let out = run(dir.path(), &["render", "--source", "g", "ok.json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn check_lists_every_error_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    std::fs::write(
        dir.path().join("templates/failed.slack.hbs"),
        "line one\nline two\nline three\n{{stak}}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("relay.yaml"),
        r#"
sources:
  a: { kind: cloud66, token: "${MISSING_TOKEN}" }
destinations:
  ops: { type: slack, webhook_url: "https://hooks.slack.com/services/T/B/TOPSECRET" }
  pager: { type: webhook, url: "${PAGER_URL}" }
routes:
  - to: [ops]
  - to: [ops]
  - match: { status: failure }
    to: [prod-slak]
"#,
    )
    .unwrap();
    // Every error of every section in one run: the environment's, the routes' and
    // the templates', even though the file itself already has errors.
    let out = run(dir.path(), &["check"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for want in [
        "sources.a.token: environment variable MISSING_TOKEN is not set",
        "destinations.pager.url: environment variable PAGER_URL is not set",
        "routes[2].to[0]: unknown destination \"prod-slak\"",
        "templates/failed.slack.hbs:4: unknown field \"stak\"",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(!err.contains("TOPSECRET"), "{err}");
    // The unset variable is reported once, not again as a bad URL.
    assert!(!err.contains("destinations.pager.url: is not"), "{err}");
    assert!(err.contains(": 4 errors"), "{err}");
}

#[test]
fn check_reports_a_broken_destination_an_unknown_key_and_the_routes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("relay.yaml"),
        r#"
colour: blue
sources:
  c66: { kind: cloud66 }
destinations:
  prod-slack: { type: slack, webhook_url: "${SLACK_URL}" }
  teams: { type: teams, webhook_url: "https://example.com/x", colour: red }
routes:
  - match: { status: failed }
    to: [prod-slack]
  - match: { severity: crit }
    to: [teams]
    continue: maybe
  - to: [prod-slak]
"#,
    )
    .unwrap();
    let out = run(dir.path(), &["check"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for want in [
        "colour: unknown key",
        "destinations.prod-slack.webhook_url: environment variable SLACK_URL is not set",
        "destinations.teams.colour: unknown key",
        "routes[0].match.status: status is never \"failed\", so this can never match; did you mean failure?",
        "routes[1].continue: expected true or false",
        "routes[1].match.severity: severity is never \"crit\", so this can never match; did you mean critical?",
        "routes[2].to[0]: unknown destination \"prod-slak\"",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    // Destinations that exist but are broken are not also "unknown".
    assert!(!err.contains("unknown destination \"prod-slack\""), "{err}");
    assert!(!err.contains("unknown destination \"teams\""), "{err}");
    assert!(err.contains(": 7 errors"), "{err}");
    // `serve` refuses the same file with the same list.
    let out = run(dir.path(), &["serve"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("routes[2].to[0]: unknown destination"));
}

#[test]
fn relative_paths_follow_the_config_file_not_the_current_directory() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(conf.join("tpl")).unwrap();
    std::fs::write(conf.join("tpl/default.console.hbs"), "{{stak}}\n").unwrap();
    std::fs::write(
        conf.join("relay.yaml"),
        "sources: { g: { kind: generic } }\ntemplates: { dir: tpl }\ndestinations:\n  out: { type: console }\nroutes:\n  - to: [out]\n",
    )
    .unwrap();
    // Run from elsewhere: the templates are still found, and the error names them
    // by their full path.
    let out = run(dir.path(), &["check", "-c", "conf/relay.yaml"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    let want = format!(
        "{}:1: unknown field \"stak\"",
        conf.canonicalize()
            .unwrap()
            .join("tpl/default.console.hbs")
            .display()
    );
    assert!(err.contains(&want), "missing {want:?} in:\n{err}");

    std::fs::write(conf.join("tpl/default.console.hbs"), "{{stack}}\n").unwrap();
    let out = run(dir.path(), &["check", "-c", "conf/relay.yaml"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains(&format!(
            "overridden by {}",
            conf.canonicalize().unwrap().join("tpl").display()
        )),
        "{s}"
    );
    let base = conf.canonicalize().unwrap();
    assert!(
        s.contains(&format!(
            "storage: SQLite {}/data/hookrelay.db\n",
            base.display()
        )),
        "{s}"
    );
    assert!(
        s.contains(&format!(
            "relative paths are resolved against {} (the config file's folder)",
            base.display()
        )),
        "{s}"
    );
}

#[test]
fn render_prints_the_event_routes_and_exact_bodies_and_sends_nothing() {
    let path = format!("{FIXTURES}/centurylink/failed-text-only.json");
    let out = run(
        REPO.as_ref(),
        &["render", "--source", "centurylink", &path],
        &[("TEAMS_WORKFLOW_URL", "http://127.0.0.1:9/never")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("\"server\": \"testServerId20190102013933\""),
        "{s}"
    );
    assert!(s.contains("\"status\": \"failure\""), "{s}");
    assert!(
        s.contains("routes[3] -> ops-slack (disabled), teams, email (disabled)"),
        "{s}"
    );
    assert!(
        s.contains("delivery to teams (teams, template default)"),
        "{s}"
    );
    assert!(s.contains("\"version\": \"1.4\""), "{s}");

    // A production failure: routes[2] has no `continue`, so routes[3], which also
    // matches, delivers nothing and is not listed as a matching route.
    let c66 = format!("{FIXTURES}/cloud66/managed_backup.fail.json");
    let out = run(REPO.as_ref(), &["render", "--source", "cloud66", &c66], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("  routes[0] -> stdout\n"), "{s}");
    assert!(s.contains("  routes[2] -> prod-slack (disabled)"), "{s}");
    assert!(!s.contains("routes[3] ->"), "{s}");
    assert!(
        s.contains("also matching but not reached: routes[3]; routes[2] ends the walk"),
        "{s}"
    );

    let out = run(REPO.as_ref(), &["render", "--source", "nosuch", &path], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unknown source \"nosuch\""));
    let out = run(
        REPO.as_ref(),
        &["render", "--source", "centurylink", "/nonexistent.json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let out = run(REPO.as_ref(), &["render"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(REPO.as_ref(), &["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("hookrelay "));
    let out = run(REPO.as_ref(), &["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    for cmd in ["serve", "check", "render", "send"] {
        assert!(text(&out.stdout).contains(cmd));
    }
}

#[tokio::test]
async fn send_delivers_once_and_exits_3_when_a_delivery_fails() {
    let ok = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&ok)
        .await;
    let bad = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&bad)
        .await;
    let path = format!("{FIXTURES}/simplebackups/error.json");
    let (o, b) = (ok.uri(), bad.uri());
    let out = tokio::task::spawn_blocking(move || {
        run(
            REPO.as_ref(),
            &["send", "--source", "simplebackups", &path],
            &[("SLACK_WEBHOOK_URL", &format!("{o}/h"))],
        )
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("=> delivered"));
    assert_eq!(ok.received_requests().await.unwrap().len(), 1);

    let path = format!("{FIXTURES}/simplebackups/error.json");
    let out = tokio::task::spawn_blocking(move || {
        run(
            REPO.as_ref(),
            &["send", "--source", "simplebackups", &path],
            &[("SLACK_WEBHOOK_URL", &format!("{b}/h"))],
        )
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stdout).contains("=> failed (transient)"),
        "{}",
        text(&out.stdout)
    );
}

/// Runs the binary as a user who may not write to `dir`: as root, the binary runs
/// as `nobody` (setpriv); otherwise `dir` is made read-only for us.
fn run_unprivileged(dir: &std::path::Path, args: &[&str]) -> Output {
    use std::os::unix::fs::PermissionsExt;
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| text(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if is_root {
        // `nobody` must reach the binary: a copy in the (world-readable) folder.
        let bin = dir.join("hookrelay");
        std::fs::copy(BIN, &bin).unwrap();
        for p in [dir, bin.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(args)
            .current_dir("/")
            .env_remove("HOOKRELAY_CONFIG")
            .output()
            .expect("setpriv runs")
    } else {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        let out = Command::new(BIN)
            .args(args)
            .current_dir("/")
            .env_remove("HOOKRELAY_CONFIG")
            .output()
            .expect("binary runs");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        out
    }
}

#[test]
fn a_storage_folder_hookrelay_may_not_write_is_named_with_permission_denied() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("relay.yaml");
    std::fs::write(
        &conf,
        "sources: { g: { kind: generic } }\nserver: { listen: \"127.0.0.1:0\" }\n",
    )
    .unwrap();
    let out = run_unprivileged(dir.path(), &["serve", "-c", conf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    // The relative default (data/hookrelay.db) resolved against the config folder,
    // named in full, and the cause said plainly.
    let want = format!(
        "cannot create the folder {} for the SQLite database: permission denied",
        dir.path().join("data").display()
    );
    assert!(err.contains(&want), "missing {want:?} in:\n{err}");
}

#[test]
fn serve_reports_a_broken_template_before_touching_storage() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    std::fs::write(
        dir.path().join("templates/default.console.hbs"),
        "{{stak}}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("relay.yaml"),
        "sources: { g: { kind: generic } }\nserver: { listen: \"127.0.0.1:0\" }\ndestinations:\n  out: { type: console }\nroutes:\n  - to: [out]\n",
    )
    .unwrap();
    let out = run(dir.path(), &["serve"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("templates/default.console.hbs:1: unknown field \"stak\""),
        "{err}"
    );
    // No database was created for a relay that cannot run.
    assert!(!dir.path().join("data").exists(), "{err}");
}

#[test]
fn check_names_the_place_of_a_bad_cron_expression_or_time_zone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("relay.yaml"),
        r#"
sources:
  c: { kind: cloud66 }
watch:
  expect:
    - match: { source: c }
      every: 24h
    - match: { source: c, environment: production }
      cron: "0 25 * * *"
      tz: Europe/Berlin
    - match: { source: c, stack: app }
      cron: "0 2 * * *"
      tz: Europe/Berlln
"#,
    )
    .unwrap();
    let out = run(dir.path(), &["check"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for want in [
        "watch.expect[1].cron: cannot read \"0 25 * * *\" as a cron expression",
        "watch.expect[2].tz: unknown time zone \"Europe/Berlln\"",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(err.contains(": 2 errors"), "{err}");
}

#[test]
fn check_refuses_a_config_without_sources_naming_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for yaml in [
        "",
        "# nothing yet\n",
        "destinations:\n  out: { type: console }\n",
    ] {
        std::fs::write(dir.path().join("relay.yaml"), yaml).unwrap();
        let out = run(dir.path(), &["check"], &[]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{yaml:?}: {}",
            text(&out.stdout)
        );
        let err = text(&out.stderr);
        assert!(err.starts_with("relay.yaml: 1 error\n  sources: "), "{err}");
        assert!(
            err.contains("hookrelay would refuse every webhook (404 unknown source)"),
            "{err}"
        );
        // `serve` does not start accepting nothing.
        let out = run(dir.path(), &["serve"], &[]);
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains("  sources: "));
    }
    // A source from the environment is enough.
    std::fs::write(dir.path().join("relay.yaml"), "").unwrap();
    let out = run(
        dir.path(),
        &["check"],
        &[("HOOKRELAY__SOURCES__C66__KIND", "cloud66")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("sources (1):\n  c66 "));
}

#[test]
fn check_warns_about_retired_teams_urls_without_failing_or_quoting_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("relay.yaml"),
        "sources:\n  c66: { kind: cloud66 }\ndestinations:\n  \
         old: { type: teams, webhook_url: \"${OLD_URL}\" }\n  \
         flow: { type: teams, webhook_url: \"https://prod-01.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=${SIG}\" }\n\
         routes:\n  - to: [old, flow]\n",
    )
    .unwrap();
    let env = [
        (
            "OLD_URL",
            "https://contoso.webhook.office.com/webhookb2/a@b/IncomingWebhook/c/d/V2SECRETPART",
        ),
        ("SIG", "SECRETSIG"),
    ];
    let out = run(dir.path(), &["check"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.starts_with("relay.yaml: ok, 2 warnings\nwarnings (2):\n  destinations.flow.webhook_url: is a …logic.azure.com URL. If it is a Power Automate workflow"),
        "{s}"
    );
    assert!(
        s.contains(
            "\n  destinations.old.webhook_url: is an Office 365 connector (Incoming Webhook) URL"
        ),
        "{s}"
    );
    assert!(!s.contains("SECRET"), "{s}");
    // With an error as well, both are printed, and the exit code is the error's.
    let yaml = std::fs::read_to_string(dir.path().join("relay.yaml")).unwrap();
    std::fs::write(
        dir.path().join("relay.yaml"),
        yaml.replace("to: [old, flow]", "to: [old, flow, nosuch]"),
    )
    .unwrap();
    let out = run(dir.path(), &["check"], &env);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("routes[0].to[2]: unknown destination \"nosuch\""),
        "{err}"
    );
    assert!(
        err.contains("warnings (2):\n  destinations.flow.webhook_url: "),
        "{err}"
    );
    assert!(!err.contains("SECRET"), "{err}");
}
