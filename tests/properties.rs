//! Property tests: every provider's normalization (CenturyLink's text parser
//! included), `${VAR}` expansion, routing and the default templates, fed generated
//! and hostile values. Nothing may panic, JSON out must be valid JSON, and each
//! destination's escaping must hold.
//!
//! `cargo test` runs a bounded number of cases (64 per property);
//! `scripts/proptest-long.sh` runs many more (`PROPTEST_CASES`).

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use hookrelay::config::{self, RouteConfig, SourceConfig, SourceKind};
use hookrelay::event::{Event, Status};
use hookrelay::providers;
use hookrelay::routing;
use hookrelay::templates::{Body, Templates};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Cases per property: `PROPTEST_CASES` when set, else a bound that keeps
/// `cargo test` quick.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Text meant to break things: markup, JSON and template syntax, Slack control
/// sequences, control characters, quotes, non-ASCII, and the words the parsers
/// look for.
fn hostile() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "<",
        ">",
        "&",
        "\"",
        "'",
        "\\",
        "{{",
        "}}",
        "{{{stack}}}",
        "<!channel>",
        "<@U123>",
        "<http://evil|click>",
        "*",
        "_",
        "`",
        "\n",
        "\r",
        "\t",
        "\u{0}",
        "\u{1b}[31m",
        "\u{202e}",
        "é",
        "🙂",
        "💾",
        " - ",
        "  -  ",
        "-",
        "Status:",
        "Server:",
        "Account:",
        "FAILED",
        "SUCCESS",
        "PARTIAL_SUCCESS",
        "missed a backup expected at",
        "Finished Date/Time:",
        "Restore Point Id:",
        "2019-02-01 01:39:40 UTC",
        "</script>",
        "<script>alert(1)</script>",
        "${",
        "$$",
        "}",
        "]]>",
        "&amp;",
        "\u{fffd}",
    ]);
    prop_oneof![
        prop::collection::vec(pieces, 0..12).prop_map(|v| v.concat()),
        any::<String>(),
        "[ -~]{0,40}",
    ]
}

/// Arbitrary JSON, a few levels deep, with hostile strings.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        hostile().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Object keys: the ones providers read, and anything.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "event_type",
            "timestamp",
            "stack",
            "backup",
            "name",
            "environment",
            "server_uid",
            "database_name",
            "db_type",
            "backup_size",
            "verify_result",
            "backup_result",
            "account_name",
            "text",
            "status",
            "server",
            "account",
            "accountPolicyName",
            "finishedDate",
            "expectedDate",
            "restorePointId",
            "id",
            "finished_at",
            "type",
            "message",
        ])
        .prop_map(str::to_string),
        hostile(),
    ]
}

/// A payload: an object mixing the provider's real shape with generated values.
fn payload() -> impl Strategy<Value = Value> {
    let fixtures: Vec<Value> = [
        include_str!("fixtures/cloud66/backup.verification.failed.json"),
        include_str!("fixtures/cloud66/managed_backup.fail.json"),
        include_str!("fixtures/centurylink/failed.json"),
        include_str!("fixtures/centurylink/missing-text-only.json"),
        include_str!("fixtures/simplebackups/error.json"),
    ]
    .iter()
    .map(|s| serde_json::from_str(s).expect("fixture"))
    .collect();
    (
        prop::sample::select(fixtures),
        prop::collection::vec((key(), json_value()), 0..6),
        prop::collection::btree_map(key(), json_value(), 0..4),
    )
        .prop_map(|(mut base, overrides, extra)| {
            if let Value::Object(m) = &mut base {
                for (k, v) in overrides {
                    // Replace at the top or one level down, where providers read.
                    match m.get_mut("backup") {
                        Some(Value::Object(b)) if k.len() % 2 == 0 => {
                            b.insert(k, v);
                        }
                        _ => {
                            m.insert(k, v);
                        }
                    }
                }
            }
            let mut all = Map::new();
            all.extend(extra);
            if let Value::Object(m) = base {
                all.extend(m);
            }
            Value::Object(all)
        })
}

fn source(kind: SourceKind) -> SourceConfig {
    serde_json::from_value(json!({
        "kind": kind.as_str(),
        "fields": if kind == SourceKind::Generic {
            json!({"event": "/type", "status": "/status", "server": "/server",
                   "occurred_at": "/timestamp", "size_bytes": "/backup/backup_size",
                   "message": "/text"})
        } else {
            json!({})
        },
    }))
    .expect("source config")
}

const KINDS: [SourceKind; 4] = [
    SourceKind::Cloud66,
    SourceKind::Centurylink,
    SourceKind::Simplebackups,
    SourceKind::Generic,
];

fn normalize(kind: SourceKind, raw: Value) -> Event {
    let at = Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).single().unwrap();
    providers::normalize("src", &source(kind), raw, at)
}

/// Route sets the routing property got to walk (not refused at compile).
static COMPILED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The default templates, loaded once.
fn defaults() -> &'static Templates {
    static T: std::sync::OnceLock<Templates> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        Templates::load(std::path::Path::new("/nonexistent-hookrelay-templates"))
            .expect("the embedded defaults load")
    })
}

proptest! {
    #![proptest_config(config())]

    /// Any JSON, as any provider: no panic, the raw payload kept as it came, a
    /// status from the vocabulary, times as RFC 3339, and fields that serialize.
    #[test]
    fn normalization_never_panics_and_stays_in_its_vocabulary(
        raw in prop_oneof![payload(), json_value()],
        k in 0..4usize,
    ) {
        let e = normalize(KINDS[k], raw.clone());
        prop_assert_eq!(&e.raw, &raw);
        prop_assert!(Status::NAMES.contains(&e.status.as_str()));
        prop_assert_eq!(e.provider.as_str(), KINDS[k].as_str());
        if let Some(t) = &e.occurred_at {
            prop_assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{}", t);
        }
        let fields = serde_json::to_string(&Value::Object(e.fields_json())).unwrap();
        let back: Value = serde_json::from_str(&fields).unwrap();
        prop_assert!(back.is_object());
        if e.status == Status::Unknown && e.message.as_deref().is_some_and(|m| m.starts_with("Payload: ")) {
            prop_assert!(e.message.unwrap().chars().count() <= "Payload: ".len() + providers::EXCERPT_CHARS);
        }
    }

    /// CenturyLink's text-only payloads: any text never panics; a text written in
    /// CenturyLink's layout, with any spacing around `-`, gives its fields back.
    #[test]
    fn centurylink_text_parses_whatever_the_spacing(
        text in hostile(),
        server in "[A-Za-z0-9]{1,20}",
        account in "[A-Z]{1,8}",
        policy in "[A-Za-z0-9_]{1,24}( [A-Za-z0-9_]{1,8})?",
        status in prop::sample::select(vec!["FAILED", "SUCCESS", "PARTIAL_SUCCESS"]),
        left in " {0,3}",
        right in " {0,3}",
        secs in 0i64..4_000_000_000,
    ) {
        let _ = normalize(SourceKind::Centurylink, json!({ "text": text }));
        let when = Utc.timestamp_opt(secs, 0).single().unwrap();
        let sep = format!("{left}-{right}");
        let text = format!(
            "Status: {status}{sep}Account: {account}{sep}Server: {server}{sep}Account Policy Name: {policy}{sep}Restore Point Id: rp-1{sep}Finished Date/Time: {}",
            when.format("%Y-%m-%d %H:%M:%S UTC")
        );
        let e = normalize(SourceKind::Centurylink, json!({ "text": text }));
        prop_assert_eq!(e.event.as_deref(), Some(status));
        prop_assert_eq!(e.server.as_deref(), Some(server.as_str()));
        prop_assert_eq!(e.account.as_deref(), Some(account.as_str()));
        prop_assert_eq!(e.backup.as_deref(), Some(policy.as_str()));
        prop_assert_eq!(e.occurred_at, Some(providers::rfc3339(when)));

        let missed = format!(
            "{server} missed a backup expected at {} for policy [{policy}] with server policy id [x] and storage region [US EAST]",
            when.format("%Y-%m-%dT%H:%M:%SZ")
        );
        let e = normalize(SourceKind::Centurylink, json!({ "text": missed }));
        prop_assert_eq!(e.status, Status::Missing);
        prop_assert_eq!(e.server.as_deref(), Some(server.as_str()));
        prop_assert_eq!(e.backup.as_deref(), Some(policy.as_str()));
    }

    /// `${VAR}` expansion: any text is expanded or refused, never a panic; text
    /// without `$` is unchanged; a set variable expands to its value exactly, `$$`
    /// to `$`, and an unset one is an error that names the variable, not a value.
    #[test]
    fn variable_expansion(
        text in hostile(),
        name in "[A-Z_][A-Z0-9_]{0,12}",
        value in "[^\u{0}]{1,30}",
        plain in "[^$]{0,40}",
    ) {
        let env: BTreeMap<String, String> =
            [(name.clone(), value.clone())].into_iter().collect();
        let _ = config::expand(&text, &env);
        prop_assert_eq!(config::expand(&plain, &env).unwrap(), plain.clone());
        prop_assert_eq!(
            config::expand(&format!("{plain}${{{name}}}$${plain}"), &env).unwrap(),
            format!("{plain}{value}${plain}")
        );
        prop_assert_eq!(config::expand(&format!("${{{name}:-d}}"), &env).unwrap(), value.clone());
        prop_assert_eq!(config::expand(&format!("${{{name}:+on}}"), &env).unwrap(), "on");
        let unset = format!("{name}_UNSET");
        let err = config::expand(&format!("${{{unset}}}"), &env).unwrap_err();
        // It names the variable and nothing else: no value can leak through it.
        prop_assert_eq!(err, format!("environment variable {unset} is not set"));
        prop_assert_eq!(config::expand(&format!("${{{unset}:-d}}"), &env).unwrap(), "d");
    }

    /// Routing: any `match` compiles or is refused without a panic; the walk of any
    /// event gives each destination at most one delivery, only from routes that
    /// match, and stops at the first matching route without `continue`.
    #[test]
    fn routing_walks_any_routes_over_any_event(
        matches in prop::collection::vec(
            prop::collection::btree_map(
                prop_oneof![
                    4 => prop::sample::select(vec!["status", "severity", "provider", "stack", "server", "event", "raw.backup.db_type", "size_bytes"]).prop_map(str::to_string),
                    1 => "raw\\.[a-z_.]{1,12}",
                    1 => key(),
                ],
                prop_oneof![
                    1 => json_value(),
                    4 => prop::sample::select(vec!["failure", "success", "critical", "cloud66", "postgresql"]).prop_map(|s| json!(s)),
                    2 => "[a-z^$.*]{0,6}".prop_map(|r| json!({"regex": r})),
                    2 => prop::sample::select(vec!["failure", "missing", "info"]).prop_map(|s| json!({"not": s})),
                ],
                0..3,
            ),
            0..5,
        ),
        to in prop::collection::vec(prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..3), 5),
        conts in prop::collection::vec(any::<bool>(), 5),
        raw in payload(),
        k in 0..4usize,
    ) {
        let cfgs: Vec<RouteConfig> = matches
            .iter()
            .enumerate()
            .map(|(i, m)| RouteConfig {
                matches: Some(m.clone().into_iter().collect()),
                to: to[i].iter().map(|s| s.to_string()).collect(),
                template: None,
                channel: None,
                continue_: conts[i],
                group: None,
            })
            .collect();
        let Ok(routes) = routing::compile(&cfgs, &[], |_| true, |_| true) else {
            // Refused with errors, not a panic: that is all asked of a bad route.
            return Ok(());
        };
        COMPILED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let e = normalize(KINDS[k], raw);
        let walked = routing::walk(&routes, &e);
        let (routed, planned) = routing::plan(&routes, &e, |d| d != "c");
        prop_assert_eq!(routed, !walked.is_empty());
        for (n, &i) in walked.iter().enumerate() {
            prop_assert!(routes[i].matches(&e));
            if n + 1 < walked.len() {
                prop_assert!(routes[i].continue_);
            }
        }
        if let Some(&last) = walked.last() {
            if !routes[last].continue_ {
                // Nothing is walked past a stop, however much it matches.
                prop_assert!(walked.iter().all(|&i| i <= last));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &planned {
            prop_assert!(seen.insert(p.destination.clone()), "{} twice", p.destination);
            prop_assert!(p.destination != "c");
            prop_assert!(walked.contains(&p.route));
            prop_assert!(routes[p.route].to.contains(&p.destination));
        }
    }

    /// The default templates with hostile values in every field: every type
    /// renders, JSON bodies are valid JSON whose strings hold the values exactly,
    /// Slack text escapes `& < >`, and the HTML part escapes markup.
    #[test]
    fn default_templates_render_hostile_values_safely(
        values in prop::collection::vec(hostile(), 9),
        status in 0..5usize,
        size in prop::option::of(any::<u64>()),
        raw in json_value(),
    ) {
        let t = defaults();
        let s = |i: usize| Some(values[i].clone()).filter(|v| !v.trim().is_empty());
        let e = Event {
            source: values[0].clone(),
            provider: "cloud66".into(),
            event: s(1),
            status: Status::parse(Status::NAMES[status]).unwrap(),
            stack: s(2),
            environment: s(3),
            server: s(4),
            account: s(5),
            backup: s(6),
            database: s(7),
            size_bytes: size,
            occurred_at: Some("2024-05-06T07:08:09Z".into()),
            message: s(8),
            received_at: "2024-05-06T07:08:10Z".into(),
            raw,
            ..Default::default()
        };
        let ctx = e.template_context();
        for ty in hookrelay::destinations::type_names() {
            match t.render_body("default", ty, &ctx) {
                Ok(Body::Json(v)) => {
                    // Valid JSON already (it was parsed); it must also print as
                    // JSON that reads back, and a Slack body carries no live markup.
                    let text = v.to_string();
                    prop_assert!(serde_json::from_str::<Value>(&text).is_ok(), "{}", text);
                    let strs = strings(&v);
                    if ty == "slack" {
                        // mrkdwn: no value can ping, mention or forge a link.
                        for s in &strs {
                            prop_assert!(!s.contains('<') && !s.contains('>'), "{}", s);
                        }
                    }
                    if ty == "teams" {
                        if let Some(stack) = &e.stack {
                            prop_assert!(strs.iter().any(|s| s.contains(stack.as_str())), "{:?} not in {}", stack, text);
                        }
                    }
                }
                Ok(Body::Text(_)) => {}
                Err(err) => prop_assert!(false, "{} did not render: {}", ty, err),
            }
        }
        if let Some(html) = t.render_html("default", "email", &ctx).unwrap() {
            prop_assert!(!html.contains("<script>"), "{}", html);
            prop_assert!(!html.contains("<!channel>"), "{}", html);
        }
    }

    /// The default webhook body written without Handlebars is, byte for byte, what
    /// `default.webhook.json.hbs` renders: for any values in any field.
    #[test]
    fn the_direct_default_webhook_body_is_the_templates(
        values in prop::collection::vec(prop::option::of(hostile()), 16),
        status in 0..6usize,
        size in prop::option::of(any::<u64>()),
        failures in any::<u32>(),
        raw in json_value(),
        kind in 0..4usize,
        payload in payload(),
    ) {
        let t = defaults();
        let v = |i: usize| values[i].clone();
        let mut e = Event {
            source: v(0).unwrap_or_default(),
            provider: v(1).unwrap_or_default(),
            event: v(2),
            status: Status::parse(Status::NAMES[status]).unwrap(),
            stack: v(3),
            environment: v(4),
            server: v(5),
            account: v(6),
            backup: v(7),
            database: v(8),
            size_bytes: size,
            occurred_at: v(9),
            id: v(10),
            message: v(11),
            received_at: v(12).unwrap_or_default(),
            subject: v(13),
            failures,
            last_success_at: v(14),
            down_since: v(15),
            raw,
        };
        // Half the cases: a provider's own normalization of a real-shaped payload.
        if kind % 2 == 1 {
            e = normalize(KINDS[kind], payload);
        }
        let id = "0190f3c2-7a1b-7cc3-9a4e-2b5d1e6f7a80-7";
        let direct = t.default_webhook_json("default", &e, id);
        let mut ctx = e.template_context();
        ctx["delivery_id"] = json!(id);
        let rendered = t
            .render_json_text("default", "webhook", &handlebars::Context::from(ctx))
            .unwrap()
            .unwrap();
        prop_assert_eq!(direct.as_deref(), Some(rendered.as_str()));
    }
}

/// Every string in a JSON value.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        Value::Object(m) => m.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn the_long_run_script_exists_and_sets_the_case_count() {
    let script = include_str!("../scripts/proptest-long.sh");
    assert!(script.contains("PROPTEST_CASES"));
    // The bound in `cargo test` is what this file says unless overridden.
    if std::env::var("PROPTEST_CASES").is_err() {
        assert_eq!(config().cases, 64);
    }
}

#[test]
fn the_routing_property_walks_most_of_what_it_generates() {
    // Run the property here too, then check that most generated route sets
    // compiled, so the walk's assertions are really exercised.
    routing_walks_any_routes_over_any_event();
    let n = COMPILED.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        n * 4 >= config().cases as usize,
        "only {n} of {} compiled",
        config().cases
    );
}
