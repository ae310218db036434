use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn expands_variables_defaults_and_alternates() {
    let e = env(&[("A", "x"), ("EMPTY", "")]);
    assert_eq!(expand("${A}-${B:-d}", &e).unwrap(), "x-d");
    assert_eq!(expand("${A:+on}|${B:+on}", &e).unwrap(), "on|");
    assert_eq!(expand("$$HOME ${EMPTY:-z}", &e).unwrap(), "$HOME z");
    assert_eq!(
        expand("${MISSING}", &e).unwrap_err(),
        "environment variable MISSING is not set"
    );
    assert!(expand("${A", &e).is_err());
}

#[test]
fn rate_limits_parse() {
    assert_eq!(
        RateLimit::parse("1/s").unwrap(),
        RateLimit {
            count: 1,
            per: Duration::from_secs(1)
        }
    );
    assert_eq!(
        RateLimit::parse("30/min").unwrap().per,
        Duration::from_secs(60)
    );
    assert!(RateLimit::parse("0/s").is_err());
    assert!(RateLimit::parse("fast").is_err());
}

/// One source, for tests about other sections: a config without any is an error.
const SOURCE: &str = "sources: { g: { kind: generic } }\n";

fn load_str(yaml: &str, e: &[(&str, &str)]) -> Result<Settings, ConfigErrors> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("relay.yaml");
    std::fs::write(&p, yaml).unwrap();
    load_with_env(&p, &env(e))
}

#[test]
fn a_key_given_twice_is_named_in_words() {
    let err = load_str(
        "sources:\n  g: { kind: generic }\ndestinations:\n  out: { type: console }\n  out: { type: console }\n",
        &[],
    )
    .unwrap_err();
    let text = err.errors[0].to_string();
    assert!(
        text.starts_with("the key \"out\" is given twice in one mapping, at line 5 column"),
        "{text}"
    );
    assert!(text.contains("relay.yaml"), "{text}");
    assert!(!text.contains("String("), "{text}");
}

#[test]
fn every_error_is_reported_with_its_key() {
    let err = load_str(
        r#"
server: { listen: "127.0.0.1:0", colour: blue }
sources:
  a: { kind: cloud66, token: "${NOPE}" }
  b: { kind: nosuch }
destinations:
  d: { type: slak, webhook_url: "http://x" }
  e: { type: webhook, url: "http://x", extra: 1 }
routes:
  - { to: [d], continue: maybe }
"#,
        &[],
    )
    .unwrap_err();
    let lines: Vec<String> = err.errors.iter().map(|e| e.to_string()).collect();
    let want = [
        "server.colour: unknown key `colour`",
        "sources.a.token: environment variable NOPE is not set",
        "sources.b.kind: unknown variant `nosuch`",
        "destinations.d.type: unknown type \"slak\"",
        "destinations.e.extra: unknown key `extra`",
        "routes[0].continue: expected true or false",
    ];
    for w in want {
        assert!(
            lines.iter().any(|l| l.starts_with(w)),
            "missing {w:?} in {lines:#?}"
        );
    }
}

#[test]
fn environment_overrides_and_secrets_stay_hidden() {
    let s = load_str(
        &format!("{SOURCE}admin: {{ token: \"${{ADMIN}}\" }}\nserver: {{ max_body_bytes: 10 }}\n"),
        &[
            ("ADMIN", "hunter2"),
            ("HOOKRELAY__SERVER__MAX_BODY_BYTES", "2048"),
        ],
    )
    .unwrap();
    assert_eq!(s.server.max_body_bytes, 2048);
    assert_eq!(s.admin.token.as_ref().unwrap().expose(), "hunter2");
    assert!(!format!("{s:?}").contains("hunter2"));
}

#[test]
fn destinations_can_be_switched_on_by_a_variable() {
    let yaml = &format!(
        "{SOURCE}{}",
        r#"
destinations:
  s: { type: slack, enabled: "${SLACK_URL:+true}", webhook_url: "${SLACK_URL:-}" }
"#
    );
    let off = load_str(yaml, &[]).unwrap();
    assert!(!off.destinations["s"].common.enabled);
    let on = load_str(yaml, &[("SLACK_URL", "https://hooks.example/x")]).unwrap();
    assert!(on.destinations["s"].common.enabled);
    assert_eq!(on.destinations["s"].rate_limit().unwrap().count, 1);
}

#[test]
fn relative_paths_resolve_against_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("relay.yaml");
    std::fs::write(
        &p,
        format!("{SOURCE}storage: {{ url: \"sqlite://data/h.db\" }}\ntemplates: {{ dir: tpl }}\n"),
    )
    .unwrap();
    let s = load_with_env(&p, &env(&[])).unwrap();
    assert_eq!(s.templates.dir, dir.path().join("tpl"));
    assert_eq!(
        s.storage.url.expose(),
        format!("sqlite://{}", dir.path().join("data/h.db").display())
    );
    std::fs::write(
        &p,
        format!("{SOURCE}storage: {{ url: \"sqlite:///var/lib/h.db\" }}\ntemplates: {{ dir: /srv/tpl }}\n"),
    )
    .unwrap();
    let s = load_with_env(&p, &env(&[])).unwrap();
    assert_eq!(s.templates.dir, Path::new("/srv/tpl"));
    assert_eq!(s.storage.url.expose(), "sqlite:///var/lib/h.db");
    // The defaults are relative too.
    std::fs::write(&p, SOURCE).unwrap();
    let s = load_with_env(&p, &env(&[])).unwrap();
    assert_eq!(s.templates.dir, dir.path().join("templates"));
    assert!(s
        .storage
        .url
        .expose()
        .ends_with(&format!("{}/data/hookrelay.db", dir.path().display())));
}

#[test]
fn a_listen_address_that_cannot_be_bound_is_a_config_error() {
    for (listen, why) in [
        ("nope", "no port"),
        (":8080", "no host"),
        ("0.0.0.0:http", "not a port number"),
        ("0.0.0.0:70000", "not a port number"),
        ("::1:8080", "an IPv6 address needs brackets"),
        // `serve` binds the text as it is: a trailing space is no port.
        ("0.0.0.0:8080 ", "not a port number"),
    ] {
        let err = load_str(&format!("server: {{ listen: \"{listen}\" }}\n"), &[]).unwrap_err();
        let lines: Vec<String> = err.errors.iter().map(|e| e.to_string()).collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("server.listen: ") && l.contains(why)),
            "{listen}: {lines:#?}"
        );
    }
    for listen in ["0.0.0.0:8080", "localhost:8080", "[::]:8080", "127.0.0.1:0"] {
        let s = load_str(
            &format!("{SOURCE}server: {{ listen: \"{listen}\" }}\n"),
            &[],
        );
        assert!(s.is_ok(), "{listen}: {:?}", s.err());
    }
}

#[test]
fn a_folder_or_an_empty_yaml_document_is_named_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_with_env(dir.path(), &env(&[])).unwrap_err();
    assert!(
        err.to_string()
            .contains("is a folder; name the config file in it"),
        "{err}"
    );
    let p = dir.path().join("dash.yaml");
    std::fs::write(&p, "---\n").unwrap();
    let err = load_with_env(&p, &env(&[])).unwrap_err().to_string();
    assert_eq!(
        err.matches("dash.yaml").count(),
        2,
        "the header and the message, once each: {err}"
    );
}

#[test]
fn a_bad_common_key_does_not_hide_a_bad_url_of_the_same_destination() {
    let err = load_str(
        "destinations:\n  a: { type: webhook, url: \"not a url\", rate_limit: 5/fortnight }\n",
        &[],
    )
    .unwrap_err();
    let lines: Vec<String> = err.errors.iter().map(|e| e.to_string()).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("destinations.a.rate_limit: invalid rate limit")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("destinations.a.url: is not a valid URL")),
        "{lines:#?}"
    );
}

#[test]
fn an_error_in_a_value_an_environment_override_set_names_the_variable() {
    let err = load_str(
        "server: { listen: \"127.0.0.1:0\" }\n",
        &[("HOOKRELAY__SERVER__LISTEN", "nope")],
    )
    .unwrap_err();
    let lines: Vec<String> = err.errors.iter().map(|e| e.to_string()).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("server.listen: no port")
            && l.ends_with("(set by the environment variable HOOKRELAY__SERVER__LISTEN)")),
        "{lines:#?}"
    );
}

#[test]
fn a_config_without_sources_is_an_error_naming_the_file_and_sources() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("relay.yaml");
    let errors_of = |yaml: &str, e: &[(&str, &str)]| {
        std::fs::write(&p, yaml).unwrap();
        match load_with_env(&p, &env(e)) {
            Ok(_) => panic!("{yaml:?} loaded"),
            Err(err) => err.to_string(),
        }
    };
    // Nothing at all: 0 bytes, blank lines, only comments.
    for yaml in ["", "\n  \n\t\n", "# sources come later\n\n# more\n"] {
        let err = errors_of(yaml, &[]);
        assert!(
            err.starts_with(&format!("{}: 1 error", p.display())),
            "{err}"
        );
        assert!(
            err.contains("\n  sources: nothing is configured (the file is empty or only comments")
                && err.contains("hookrelay would refuse every webhook (404 unknown source)"),
            "{yaml:?}: {err}"
        );
    }
    // Other sections but no source, or an empty `sources`.
    for yaml in [
        "destinations:\n  out: { type: console }\nroutes:\n  - to: [out]\n",
        "sources:\n",
        "sources: {}\n",
    ] {
        let err = errors_of(yaml, &[]);
        assert!(
            err.contains("\n  sources: no source is configured (in the file or by a HOOKRELAY__SOURCES__… variable), so hookrelay would refuse every webhook"),
            "{yaml:?}: {err}"
        );
    }
    // `sources` that is not a mapping is said once, as that.
    let err = errors_of("sources: [c66]\n", &[]);
    assert!(
        err.starts_with(&format!("{}: 1 error", p.display())),
        "{err}"
    );
    assert!(
        err.contains("sources: expected a mapping of names"),
        "{err}"
    );
    // A source set by an override counts, even in an empty file.
    std::fs::write(&p, "").unwrap();
    let s = load_with_env(&p, &env(&[("HOOKRELAY__SOURCES__C66__KIND", "cloud66")])).unwrap();
    assert_eq!(s.sources["c66"].kind, SourceKind::Cloud66);
    // An override that sets something else does not.
    let err = errors_of("", &[("HOOKRELAY__SERVER__LISTEN", "127.0.0.1:0")]);
    assert!(err.contains("sources: no source is configured"), "{err}");
}

#[test]
fn teams_urls_on_retired_endpoints_are_warnings_that_do_not_quote_them() {
    let warnings_of = |dest: &str| {
        let s = load_str(&format!("{SOURCE}destinations:\n  t: {dest}\n"), &[])
            .unwrap_or_else(|e| panic!("{dest}: not an error: {e}"));
        let w: Vec<String> = s.warnings().iter().map(|w| w.to_string()).collect();
        for line in &w {
            assert!(!line.contains("SECRET"), "quotes the URL: {line}");
        }
        w
    };
    let o365 = "https://contoso.webhook.office.com/webhookb2/a@b/IncomingWebhook/c/d/V2SECRET";
    let w = warnings_of(&format!("{{ type: teams, webhook_url: \"{o365}\" }}"));
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].starts_with("destinations.t.webhook_url: is an Office 365 connector (Incoming Webhook) URL; Microsoft is retiring these")
            && w[0].contains("\"Send webhook alerts to a channel\"")
            && !w[0].contains("messagecard"),
        "{w:#?}"
    );
    // With the connector format, the advice is also to drop it.
    let w = warnings_of(&format!(
        "{{ type: teams, webhook_url: \"{o365}\", format: messagecard }}"
    ));
    assert!(w[0].contains("drop `format: messagecard`"), "{w:#?}");
    let w = warnings_of(
        "{ type: teams, webhook_url: \"https://outlook.office.com/webhook/a@b/IncomingWebhook/SECRET\" }",
    );
    assert!(
        w[0].starts_with("destinations.t.webhook_url: is an Office 365 connector URL of the old outlook.office.com form"),
        "{w:#?}"
    );
    // A logic.azure.com URL: a retired Power Automate one, or a working Logic App.
    let w = warnings_of(
        "{ type: teams, webhook_url: \"https://prod-01.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sig=SECRETSIG\" }",
    );
    assert!(
        w[0].starts_with("destinations.t.webhook_url: is a …logic.azure.com URL. If it is a Power Automate workflow")
            && w[0].contains("November 30, 2025")
            && w[0].contains("copy the new URL from its trigger")
            && w[0].contains("Azure Logic Apps trigger on logic.azure.com is not affected"),
        "{w:#?}"
    );
    // A disabled destination is warned about too: enabling it would not help.
    let w = warnings_of(
        "{ type: teams, enabled: false, webhook_url: \"https://prod-01.westus.logic.azure.com/workflows/abc?sig=SECRET\" }",
    );
    assert_eq!(w.len(), 1, "{w:#?}");
    // Current Workflows URLs, look-alikes elsewhere and other types: nothing.
    for dest in [
        "{ type: teams, webhook_url: \"https://x.environment.api.powerplatform.com/powerautomate/automations/direct/workflows/abc/triggers/manual/paths/invoke?sig=s\" }",
        "{ type: teams, webhook_url: \"http://127.0.0.1:9/webhookb2/x\", format: messagecard }",
        "{ type: teams, webhook_url: \"https://notlogic.azure.com.example/x\" }",
        "{ type: webhook, url: \"https://prod-01.westus.logic.azure.com/workflows/abc?sig=s\" }",
    ] {
        assert_eq!(warnings_of(dest), Vec::<String>::new(), "{dest}");
    }
}

/// A PagerDuty destination the routes can send failures but never a success nor
/// a recovery keeps every incident open: a warning at the route that pages,
/// judged on `status`/`severity`, the order of the walk and `watch.recovered`.
#[test]
fn routes_that_open_pagerduty_incidents_and_never_resolve_them_are_a_warning() {
    let warnings_of = |extra: &str, routes: &str| {
        let yaml = format!(
            "{SOURCE}destinations:\n  pager: {{ type: pagerduty, routing_key: \"SECRETKEY\" }}\n  \
             chat: {{ type: console }}\n{extra}routes:\n{routes}"
        );
        let s = load_str(&yaml, &[]).unwrap_or_else(|e| panic!("{routes}: not an error: {e}"));
        s.warnings()
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<String>>()
    };
    // The README's old grouping example: failures and misses only.
    let w = warnings_of(
        "",
        "  - match: { status: [failure, missing] }\n    to: [chat, pager]\n",
    );
    assert_eq!(
        w,
        [
            "routes[0].to[1]: sends failures to the PagerDuty destination \"pager\", but no route \
          can send it a success or a recovery (status success or recovered), so PagerDuty never \
          resolves the incidents it opens; add a route for them, e.g. \
          - { match: { status: [success, recovered] }, to: [pager] }"
        ]
    );
    assert!(!w[0].contains("SECRETKEY"));
    // Pages only on severity critical, or from the third failure: the same.
    let w = warnings_of("", "  - match: { severity: critical }\n    to: [pager]\n");
    assert_eq!(w.len(), 1, "{w:#?}");
    // A success stopped by an earlier route without `continue` never gets there.
    let w = warnings_of(
        "",
        "  - match: { status: [success, recovered] }\n    to: [chat]\n  - to: [pager]\n",
    );
    assert!(w[0].starts_with("routes[1].to[0]: "), "{w:#?}");
    // No recovered events: a route of failures and recoveries resolves nothing.
    let w = warnings_of(
        "watch: { recovered: false }\n",
        "  - match: { status: [failure, recovered] }\n    to: [pager]\n",
    );
    assert!(
        w[0].contains("watch.recovered is false")
            && w[0].ends_with("status: [success] }, to: [pager] }"),
        "{w:#?}"
    );
    // Recoveries are hookrelay's own events: a route on another provider never
    // gets them.
    let w = warnings_of(
        "",
        "  - match: { provider: cloud66, status: [failure, recovered] }\n    to: [pager]\n",
    );
    assert_eq!(w.len(), 2, "{w:#?}");
    assert!(w[0].starts_with("routes[0].to[0]: "), "{w:#?}");
    // ... and the route itself names a status it never gets.
    assert!(
        w[1].starts_with("routes[0].match.provider: names status recovered"),
        "{w:#?}"
    );
    // Routes that can bring a success or a recovery, and routes that never page:
    // nothing to say.
    for routes in [
        "  - to: [pager]\n",
        "  - match: { status: [failure, missing] }\n    to: [chat, pager]\n  - match: { status: [success, recovered] }\n    to: [pager]\n",
        "  - match: { status: [success, recovered] }\n    to: [chat]\n    continue: true\n  - to: [pager]\n",
        "  - match: { failures: { gte: 3 } }\n    to: [pager]\n",
        "  - match: { status: { not: success } }\n    to: [pager]\n",
        "  - match: { environment: production }\n    to: [pager]\n",
        "  - match: { status: unknown }\n    to: [pager]\n",
        "  - match: { status: [success, recovered] }\n    to: [pager]\n",
        "  - to: [chat]\n",
    ] {
        assert_eq!(warnings_of("", routes), Vec::<String>::new(), "{routes}");
    }
    // A digest resolves itself: PagerDuty given only digests is not warned about.
    assert_eq!(
        warnings_of(
            "digest:\n  - { cron: \"0 8 * * *\", to: [pager] }\n",
            "  - to: [chat]\n"
        ),
        Vec::<String>::new()
    );
}
