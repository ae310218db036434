use super::*;
use std::fs;

fn defaults() -> Templates {
    Templates::load(Path::new("/nonexistent/hookrelay-templates")).expect("defaults load")
}

fn sample(what: &str) -> Value {
    sample_contexts()
        .into_iter()
        .find(|(w, _)| w.contains(what))
        .map(|(_, v)| v)
        .expect("sample exists")
}

fn render_text(t: &Templates, name: &str, ty: &str, ctx: &Value) -> String {
    match t.render_body(name, ty, ctx).expect("renders") {
        Body::Text(s) => s,
        Body::Json(v) => panic!("expected text, got {v}"),
    }
}

fn render_json(t: &Templates, name: &str, ty: &str, ctx: &Value) -> Value {
    match t.render_body(name, ty, ctx).expect("renders") {
        Body::Json(v) => v,
        Body::Text(s) => panic!("expected JSON, got {s}"),
    }
}

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn inline(text: &str, ctx: &Value) -> String {
    let mut t = defaults();
    t.add_inline("k", text, "destinations.x.subject")
        .expect("valid");
    t.render_inline("k", ctx).unwrap()
}

// ---- helpers ----

#[test]
fn upper_and_lower() {
    let ctx = json!({"status": "failure", "n": 3, "nothing": null});
    assert_eq!(inline("{{upper status}}", &ctx), "FAILURE");
    assert_eq!(inline("{{lower \"ÀB\"}}", &ctx), "àb");
    assert_eq!(
        inline("{{upper raw.n}}|{{upper}}", &json!({"raw": {"n": 3}})),
        "3|"
    );
    assert_eq!(
        inline("[{{upper raw.nothing}}]", &json!({"raw": null})),
        "[]"
    );
}

#[test]
fn default_takes_first_non_empty() {
    let ctx = json!({"stack": null, "server": "", "backup": "b"});
    assert_eq!(inline("{{default stack \"n/a\"}}", &ctx), "n/a");
    assert_eq!(inline("{{default stack server backup \"x\"}}", &ctx), "b");
    assert_eq!(inline("[{{default stack server}}]", &ctx), "[]");
    assert_eq!(inline("[{{default}}]", &ctx), "[]");
    assert_eq!(
        inline("{{default raw.n 1}}", &json!({"raw": {"n": 0}})),
        "0"
    );
}

#[test]
fn eq_compares_and_never_fails() {
    let ctx = json!({"status": "failure", "size_bytes": 5});
    assert_eq!(
        inline("{{#if (eq status \"failure\")}}F{{else}}N{{/if}}", &ctx),
        "F"
    );
    assert_eq!(
        inline("{{#if (eq status \"success\")}}S{{else}}N{{/if}}", &ctx),
        "N"
    );
    assert_eq!(
        inline("{{#if (eq status \"success\" \"failure\")}}Y{{/if}}", &ctx),
        "Y"
    );
    assert_eq!(inline("{{#if (eq size_bytes \"5\")}}Y{{/if}}", &ctx), "Y");
    assert_eq!(inline("{{#if (eq status)}}Y{{else}}N{{/if}}", &ctx), "N");
    assert_eq!(inline("{{#if (eq)}}Y{{else}}N{{/if}}", &ctx), "N");
    assert_eq!(
        inline("{{#if (eq raw.a raw.b)}}Y{{/if}}", &json!({"raw": {}})),
        "Y"
    );
}

#[test]
fn json_emits_literals() {
    let t = defaults();
    let ctx = json!({"stack": "a\"b", "size_bytes": 12, "raw": {"k": [1, null]}, "id": null});
    let mut t2 = t.clone();
    t2.add_inline(
        "k",
        "{{json stack}} {{json size_bytes}} {{json raw}} {{json id}} {{json}}",
        "k",
    )
    .unwrap();
    assert_eq!(
        t2.render_inline("k", &ctx).unwrap(),
        r#""a\"b" 12 {"k":[1,null]} null null"#
    );
    assert_eq!(
        inline("{{json raw pretty=true}}", &json!({"raw": {"a": 1}})),
        "{\n  \"a\": 1\n}"
    );
}

#[test]
fn bytes_formats_binary_units() {
    assert_eq!(format_bytes(&json!(1024000000)), "976.6 MiB");
    assert_eq!(format_bytes(&json!(0)), "0 B");
    assert_eq!(format_bytes(&json!(1023)), "1023 B");
    assert_eq!(format_bytes(&json!(1024)), "1.0 KiB");
    assert_eq!(format_bytes(&json!(1536)), "1.5 KiB");
    assert_eq!(format_bytes(&json!(1048575)), "1.0 MiB");
    assert_eq!(format_bytes(&json!(5u64 * 1024 * 1024 * 1024)), "5.0 GiB");
    assert_eq!(format_bytes(&json!(3u64 << 40)), "3.0 TiB");
    assert_eq!(format_bytes(&json!(5000u64 << 40)), "5000.0 TiB");
    assert_eq!(format_bytes(&json!("2048")), "2.0 KiB");
    assert_eq!(format_bytes(&Value::Null), "");
    assert_eq!(format_bytes(&json!("lots")), "lots");
    assert_eq!(format_bytes(&json!(-5)), "-5");
    assert_eq!(format_bytes(&json!({"a": 1})), "{\"a\":1}");
    assert_eq!(inline("[{{bytes}}]", &json!({})), "[]");
}

#[test]
fn date_reads_rfc3339_and_unix_seconds() {
    let f = "%Y-%m-%d %H:%M";
    assert_eq!(
        format_date(&json!("2025-09-04T18:37:59Z"), f),
        "2025-09-04 18:37"
    );
    assert_eq!(
        format_date(&json!("2025-09-04T20:37:59+02:00"), f),
        "2025-09-04 18:37"
    );
    assert_eq!(format_date(&json!(1757011079), f), "2025-09-04 18:37");
    assert_eq!(format_date(&json!("1757011079"), f), "2025-09-04 18:37");
    assert_eq!(format_date(&json!(1757011079.5), "%S%.3f"), "59.500");
    assert_eq!(
        format_date(&json!("2021-10-10 10:10:10"), f),
        "2021-10-10 10:10"
    );
    assert_eq!(
        format_date(&json!("2019-02-01 01:39:40 UTC"), f),
        "2019-02-01 01:39"
    );
    assert_eq!(
        format_date(&json!("2025-09-04T18:37:59Z"), DEFAULT_DATE_FORMAT),
        "2025-09-04 18:37 UTC"
    );
    assert_eq!(format_date(&Value::Null, f), "");
    assert_eq!(format_date(&json!("yesterday"), f), "yesterday");
    assert_eq!(format_date(&json!(1e300), f), "1e+300");
    assert_eq!(format_date(&json!([1]), f), "[1]");
    // A bad format never panics: the input comes back.
    assert_eq!(
        format_date(&json!("2025-09-04T18:37:59Z"), "%Q %"),
        "2025-09-04T18:37:59Z"
    );
    let ctx = json!({"occurred_at": "2025-09-04T18:37:59Z"});
    assert_eq!(inline("{{date occurred_at}}", &ctx), "2025-09-04 18:37 UTC");
    assert_eq!(inline("{{date occurred_at \"%H:%M\"}}", &ctx), "18:37");
    assert_eq!(
        inline("{{date occurred_at 42}}", &ctx),
        "2025-09-04 18:37 UTC"
    );
    assert_eq!(inline("[{{date}}]", &ctx), "[]");
}

#[test]
fn emoji_by_status() {
    assert_eq!(emoji("success"), "✅");
    assert_eq!(emoji("failure"), "❌");
    assert_eq!(emoji("partial"), "⚠️");
    assert_eq!(emoji("missing"), "⏰");
    assert_eq!(emoji("unknown"), "❓");
    assert_eq!(emoji(""), "❓");
    assert_eq!(emoji("FAILED"), "❌");
    let ctx = json!({"status": "success"});
    assert_eq!(
        inline("{{emoji status}}{{emoji}}{{emoji 3}}", &ctx),
        "✅✅❓"
    );
}

#[test]
fn helpers_survive_odd_arguments() {
    let ctx = json!({"raw": {"o": {"a": 1}, "l": [1, 2], "b": true, "n": null}});
    for h in HELPERS {
        for args in [
            "",
            " raw.o",
            " raw.l",
            " raw.b",
            " raw.n",
            " raw.o raw.l raw.b",
            " 1 2 3 4",
        ] {
            let text = format!("{{{{{h}{args}}}}}");
            let mut t = defaults();
            t.add_inline("k", &text, "k").unwrap();
            t.render_inline("k", &ctx).unwrap();
        }
    }
}

// ---- escaping ----

const NASTY: &str = "quote \" back\\slash <b>bold</b> & amp\nnew line\ttab ✅ 🚀";

fn nasty_ctx() -> Value {
    let mut e = Event {
        source: NASTY.into(),
        provider: "generic".into(),
        status: Status::Failure,
        received_at: "2025-09-04T18:38:02Z".into(),
        raw: json!({"text": NASTY}),
        ..Default::default()
    };
    for f in [
        &mut e.event,
        &mut e.stack,
        &mut e.environment,
        &mut e.server,
        &mut e.account,
        &mut e.backup,
        &mut e.database,
        &mut e.id,
        &mut e.message,
    ] {
        *f = Some(NASTY.into());
    }
    e.template_context()
}

fn strings_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings_in(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings_in(x, out)),
        _ => {}
    }
}

#[test]
fn json_defaults_stay_valid_and_round_trip() {
    let t = defaults();
    let ctx = nasty_ctx();
    for ty in ["teams", "webhook"] {
        let v = render_json(&t, "default", ty, &ctx);
        let mut strings = Vec::new();
        strings_in(&v, &mut strings);
        assert!(
            strings.iter().any(|s| s == NASTY),
            "{ty}: the exact value should appear in {v:#}"
        );
    }
    let v = render_json(&t, "default", "webhook", &ctx);
    assert_eq!(v["message"], NASTY);
    assert_eq!(v["raw"]["text"], NASTY);
    // Slack mrkdwn text gets & < > escaped for Slack, on top of valid JSON.
    let v = render_json(&t, "default", "slack", &ctx);
    let mut strings = Vec::new();
    strings_in(&v, &mut strings);
    assert!(strings.iter().any(|s| s == &slack_escape(NASTY)), "{v:#}");
    assert!(!strings.iter().any(|s| s.contains("<b>")), "{v:#}");
    // Even a value a helper passes through untouched (an unreadable date).
    let mut hostile = ctx.clone();
    hostile["occurred_at"] = json!("<!channel>");
    let v = render_json(&t, "default", "slack", &hostile);
    assert!(!v.to_string().contains("<!channel>"), "{v:#}");
}

#[test]
fn text_escaping_follows_the_destination() {
    let dir = dir_with(&[
        ("x.slack.hbs", "{{message}}|{{{message}}}"),
        ("x.email.hbs", "{{message}}"),
        ("x.email.html.hbs", "<p>{{message}}</p>|{{{message}}}"),
        ("x.console.hbs", "{{message}}"),
        ("x.teams.hbs", "{{message}}"),
        (
            "x.webhook.json.hbs",
            "{\"m\": \"{{message}}\", \"r\": {{{json message}}}}",
        ),
    ]);
    let t = Templates::load(dir.path()).unwrap();
    let ctx = json!({"message": "a & <b> \"q\" 'x'"});
    assert_eq!(
        render_text(&t, "x", "slack", &ctx),
        "a &amp; &lt;b&gt; \"q\" 'x'|a & <b> \"q\" 'x'"
    );
    assert_eq!(render_text(&t, "x", "email", &ctx), "a & <b> \"q\" 'x'");
    assert_eq!(render_text(&t, "x", "console", &ctx), "a & <b> \"q\" 'x'");
    assert_eq!(render_text(&t, "x", "teams", &ctx), "a & <b> \"q\" 'x'");
    let html = t.render_html("x", "email", &ctx).unwrap().unwrap();
    assert!(
        html.starts_with("<p>a &amp; &lt;b&gt; &quot;q&quot;"),
        "{html}"
    );
    assert!(html.ends_with("|a & <b> \"q\" 'x'"), "{html}");
    let v = render_json(&t, "x", "webhook", &ctx);
    assert_eq!(
        v,
        json!({"m": "a & <b> \"q\" 'x'", "r": "a & <b> \"q\" 'x'"})
    );
}

#[test]
fn json_helper_is_escaped_in_html() {
    let dir = dir_with(&[("x.email.hbs", "t"), ("x.email.html.hbs", "{{json raw}}")]);
    let t = Templates::load(dir.path()).unwrap();
    let html = t
        .render_html("x", "email", &json!({"raw": {"a": "<b>"}}))
        .unwrap();
    assert_eq!(
        html.as_deref(),
        Some("{&quot;a&quot;:&quot;&lt;b&gt;&quot;}")
    );
}

#[test]
fn a_block_never_closed_is_named_at_the_line_that_opens_it() {
    let dir = dir_with(&[(
        "x.slack.hbs",
        "{{!-- {{#if nope}} in a comment --}}\n{{#*inline \"row\"}}{{server}}{{/inline}}\n\
         {{#each events}}\n{{#if server}}on {{server}}\n{{/each}}\nend\n",
    )]);
    let errs = Templates::load(dir.path()).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    // Closed by the outer block's end: the inner one is named.
    assert!(errs[0].place.ends_with("x.slack.hbs:4"), "{errs:?}");
    assert!(
        errs[0].message.starts_with("\"{{#if}}\" is never closed"),
        "{errs:?}"
    );
    let dir = dir_with(&[(
        "x.slack.hbs",
        "{{#*inline \"row\"}}{{server}}{{/inline}}\n{{#if server}}on {{server}}\nline\nend\n",
    )]);
    let errs = Templates::load(dir.path()).unwrap_err();
    assert!(errs[0].place.ends_with("x.slack.hbs:2"), "{errs:?}");
    assert_eq!(
        errs[0].message, "\"{{#if}}\" is never closed (add \"{{/if}}\")",
        "{errs:?}"
    );
}

// ---- strict names ----

#[test]
fn names_inside_a_digests_lists_are_a_backups_fields() {
    let dir = dir_with(&[(
        "digest.slack.hbs",
        "{{summary}}\n{{#each attention}}{{subject}} {{state}} {{@root.schedule}}{{/each}}\n\
         {{#each recovered}}{{subjct}}{{/each}}\n",
    )]);
    let errs = Templates::load(dir.path()).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].place.ends_with("digest.slack.hbs:3"), "{errs:?}");
    assert!(
        errs[0]
            .message
            .contains("unknown field \"subjct\" (did you mean \"subject\"?)"),
        "{errs:?}"
    );
}

#[test]
fn names_inside_each_events_are_an_events_fields() {
    let dir = dir_with(&[(
        "grp.slack.hbs",
        "{{count}}\n{{#each events}}{{server}} {{raw.x}} {{../count}} {{@root.delivery_id}}\n         {{servr}} {{../stak}} {{count}}\n{{#each raw.items}}{{anything}} {{../server}}{{/each}}{{/each}}\n",
    )]);
    let errs = Templates::load(dir.path()).unwrap_err();
    let got: Vec<(String, String)> = errs
        .iter()
        .map(|e| {
            (
                e.place.rsplit('/').next().unwrap().to_string(),
                e.message.clone(),
            )
        })
        .collect();
    assert_eq!(got.len(), 3, "{got:#?}");
    // Items named by a block parameter are not checked (nor refused).
    let dir = dir_with(&[(
        "grp.slack.hbs",
        "{{#each events as |ev|}}{{ev.server}}{{/each}}\n",
    )]);
    assert!(Templates::load(dir.path()).is_ok());
    assert!(
        got[0].0 == "grp.slack.hbs:3"
            && got[0]
                .1
                .contains("unknown field \"servr\" (did you mean \"server\"?)"),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|(_, m)| m.contains("unknown field \"stak\"")),
        "{got:#?}"
    );
    // `count` is the group's, not an event's.
    assert!(
        got.iter()
            .any(|(_, m)| m.contains("unknown field \"count\"")),
        "{got:#?}"
    );
}

#[test]
fn misspelled_field_is_a_load_error_with_line() {
    let dir = dir_with(&[("bad.slack.hbs", "line one\n{{status}}\nstack: {{stak}}\n")]);
    let errs = Templates::load(dir.path()).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].place.ends_with("bad.slack.hbs:3"), "{errs:?}");
    assert!(
        errs[0].message.contains("unknown field \"stak\""),
        "{errs:?}"
    );
    assert!(
        errs[0].message.contains("did you mean \"stack\""),
        "{errs:?}"
    );
}

#[test]
fn names_are_checked_inside_blocks_and_helpers() {
    for (text, bad) in [
        ("{{#if stak}}x{{/if}}", "stak"),
        ("{{upper sever}}", "sever"),
        ("{{#if (eq stauts \"failure\")}}x{{/if}}", "stauts"),
        ("{{#if status}}{{else}}{{envronment}}{{/if}}", "envronment"),
        ("{{default stack nope}}", "nope"),
    ] {
        let dir = dir_with(&[("n.console.hbs", text)]);
        let errs = Templates::load(dir.path()).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.message.contains(&format!("\"{bad}\""))),
            "{text}: {errs:?}"
        );
    }
    let dir = dir_with(&[("n.console.hbs", "{{uper status}}")]);
    let errs = Templates::load(dir.path()).unwrap_err();
    assert!(
        errs[0].message.contains("unknown helper \"uper\""),
        "{errs:?}"
    );
}

#[test]
fn a_date_format_chrono_cannot_read_is_reported_at_load_with_its_line() {
    let dir = dir_with(&[(
        "d.console.hbs",
        "{{headline}}\nat {{date received_at \"%d.%m.%Y %Q\"}}\n",
    )]);
    let errs = Templates::load(dir.path()).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].place.ends_with("d.console.hbs:2"), "{errs:?}");
    assert!(
        errs[0].message.contains("date format \"%d.%m.%Y %Q\""),
        "{errs:?}"
    );
    // Readable formats, and the default, load.
    let dir = dir_with(&[(
        "d.console.hbs",
        "{{date received_at \"%d.%m.%Y %H:%M\"}} {{date occurred_at}} {{#if (date received_at \"%F\")}}x{{/if}}",
    )]);
    assert!(Templates::load(dir.path()).is_ok());
}

#[test]
fn syntax_error_names_file_and_line() {
    let dir = dir_with(&[("s.email.hbs", "hello\n{{#if status}}\nnever closed\n")]);
    let errs = Templates::load(dir.path()).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    let place = &errs[0].place;
    assert!(
        place.contains("s.email.hbs:")
            && place.rsplit(':').next().unwrap().parse::<usize>().is_ok(),
        "{errs:?}"
    );
}

#[test]
fn every_bad_file_is_reported() {
    let dir = dir_with(&[
        ("a.slack.hbs", "{{stak}}"),
        ("b.teams.json.hbs", "{\"text\": \"{{#if x}}\"}"),
        ("c.pager.hbs", "{{status}}"),
        ("notes.txt", "{{ignored}}"),
    ]);
    let errs = Templates::load(dir.path()).unwrap_err();
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(errs[0].place.ends_with("a.slack.hbs:1"));
    assert!(errs[1].place.contains("b.teams.json.hbs"));
    assert!(errs[2].place.ends_with("c.pager.hbs"));
    assert!(errs[2].message.contains("not a template name"), "{errs:?}");
}

#[test]
fn invalid_json_output_is_a_load_error() {
    let dir = dir_with(&[("j.webhook.json.hbs", "{\"text\": \"{{{message}}}\"}")]);
    let errs = Templates::load(dir.path()).unwrap_err();
    assert!(errs[0].place.ends_with("j.webhook.json.hbs"), "{errs:?}");
    assert!(errs[0].message.contains("valid JSON"), "{errs:?}");
}

#[test]
fn raw_paths_and_null_fields_are_fine() {
    let dir = dir_with(&[(
        "r.console.hbs",
        "{{raw.anything.deep}}|{{stack}}|{{#each raw.items}}{{name}}{{/each}}|{{@root.status}}",
    )]);
    let t = Templates::load(dir.path()).unwrap();
    let ctx = sample("simplebackups error");
    assert_eq!(render_text(&t, "r", "console", &ctx), "|||failure");
    let ctx =
        json!({"stack": "s", "status": "x", "raw": {"items": [{"name": "a"}, {"name": "b"}]}});
    assert_eq!(render_text(&t, "r", "console", &ctx), "|s|ab|x");
}

#[test]
fn inline_templates_are_checked() {
    let mut t = defaults();
    t.add_inline("subject", DEFAULT_SUBJECT, "destinations.mail.subject")
        .unwrap();
    assert_eq!(
        t.render_inline("subject", &sample("cloud66")).unwrap(),
        "[FAILURE] cloud66 backup.verification.failed: myapp_production"
    );
    let e = t
        .add_inline("chan", "#backups-{{stak}}", "destinations.s.channel")
        .unwrap_err();
    assert_eq!(e.place, "destinations.s.channel");
    assert!(e.message.contains("unknown field \"stak\""), "{e:?}");
    let e = t
        .add_inline("x", "{{#if}}", "routes[0].channel")
        .unwrap_err();
    assert_eq!(e.place, "routes[0].channel");
    assert!(t.render_inline("chan", &json!({})).is_err());
}

// ---- override and fallback ----

#[test]
fn dir_overrides_embedded_and_falls_back_to_default() {
    let dir = dir_with(&[
        ("default.console.hbs", "custom {{status}}"),
        ("backup_failed.slack.hbs", "failed {{backup}}"),
    ]);
    let t = Templates::load(dir.path()).unwrap();
    let ctx = sample("cloud66");
    assert_eq!(
        render_text(&t, "default", "console", &ctx),
        "custom failure"
    );
    assert_eq!(
        render_text(&t, "backup_failed", "slack", &ctx),
        "failed myapp_production"
    );
    // No teams template for backup_failed: default's.
    let v = render_json(&t, "backup_failed", "teams", &ctx);
    assert_eq!(v["type"], "message");
    assert!(t.has_name("backup_failed"));
    assert!(t.has_name("default"));
    assert!(!t.has_name("nope"));
    // Email: backup_failed has no email text, so default's HTML part.
    assert!(t
        .render_html("backup_failed", "email", &ctx)
        .unwrap()
        .is_some());
    assert!(t.render_body("x", "pager", &ctx).is_err());
}

#[test]
fn a_text_override_replaces_the_embedded_json_body() {
    // The default folder name, so places look like the embedded ones.
    let dir = dir_with(&[("default.slack.hbs", "{{emoji}} {{backup}}")]);
    let t = Templates::load(dir.path()).unwrap();
    let ctx = sample("cloud66");
    assert_eq!(
        render_text(&t, "default", "slack", &ctx),
        "❌ myapp_production"
    );
    assert_eq!(render_json(&t, "default", "teams", &ctx)["type"], "message");
}

#[test]
fn email_html_belongs_to_the_text_template() {
    let dir = dir_with(&[("plain.email.hbs", "just text")]);
    let t = Templates::load(dir.path()).unwrap();
    let ctx = sample("cloud66");
    assert_eq!(render_text(&t, "plain", "email", &ctx), "just text");
    assert_eq!(t.render_html("plain", "email", &ctx).unwrap(), None);
}

// ---- the defaults read well ----

#[test]
fn defaults_render_for_every_sample() {
    let t = defaults();
    for (what, ctx) in sample_contexts() {
        for ty in crate::destinations::type_names() {
            t.render_body("default", ty, &ctx)
                .unwrap_or_else(|e| panic!("{ty} for {what}: {e}"));
        }
        t.render_html("default", "email", &ctx).unwrap().unwrap();
    }
}

#[test]
fn defaults_wording() {
    let t = defaults();
    let c66 = sample("cloud66");
    let slack = render_json(&t, "default", "slack", &c66);
    assert_eq!(
        slack["text"],
        "❌ Backup verification failed: myapp_production (postgresql) on my-production-app / production"
    );
    let console = render_text(&t, "default", "console", &c66);
    assert!(console.starts_with("❌ [CRITICAL] Backup verification failed: myapp_production (postgresql) on my-production-app / production: Cloud66 gave no reason for the failure. Verification result: \"Backup verified successfully\"; Backup result: \"Backup completed successfully\"\n"), "{console}");
    assert!(
        console.contains("976.6 MiB") && console.contains("2025-09-04 18:37 UTC"),
        "{console}"
    );

    let sb = sample("simplebackups error");
    let slack = render_json(&t, "default", "slack", &sb);
    assert_eq!(
        slack["text"],
        "❌ Backup failed: Acme Project on Acme Server"
    );
    // The third failure in a row says so, and how long since the last good one
    // (reckoned from when hookrelay received it, so every retry says the same).
    let streak = "3rd failure in a row; last good backup 2 days ago";
    let blocks = slack["blocks"].to_string();
    assert!(
        blocks.contains(&format!(
            "*Backup failed: Acme Project on Acme Server*\\n{streak}"
        )),
        "{blocks}"
    );
    let email = render_text(&t, "default", "email", &sb);
    assert!(
        email.starts_with(&format!(
            "❌ Backup failed: Acme Project on Acme Server\n{streak}\n"
        )),
        "{email}"
    );
    let pd = render_json(&t, "default", "pagerduty", &sb);
    assert_eq!(
        pd["payload"]["summary"],
        format!(
            "❌ Backup failed: Acme Project on Acme Server: Backup Acme Project failed ({streak})"
        )
    );
    let discord = render_json(&t, "default", "discord", &sb);
    assert_eq!(
        discord["embeds"][0]["description"],
        format!("**{streak}**\n\nBackup Acme Project failed")
    );
    let html = t.render_html("default", "email", &sb).unwrap().unwrap();
    assert!(html.contains(&format!(">{streak}</p>")), "{html}");
    for ty in ["console", "telegram"] {
        let text = render_text(&t, "default", ty, &sb);
        assert!(text.contains(streak), "{ty}: {text}");
    }
    let teams = render_json(&t, "default", "teams", &sb);
    assert_eq!(
        teams["attachments"][0]["content"]["body"][1]["text"],
        streak
    );

    // A miss found by the watch: what was expected and since when nothing came.
    let missed = sample("missed backup found by the backup watch");
    let email = render_text(&t, "default", "email", &missed);
    assert!(email.starts_with("⏰ Backup missed: myapp_production on my-production-app / production\nLast good backup 25 hours ago\n"), "{email}");
    assert!(
        email.contains("Expected at:  2025-09-04 18:04 UTC\n"),
        "{email}"
    );
    assert!(
        email.contains(
            "No successful backup since 2025-09-03 17:04 UTC; expected every 24h (+1h grace)"
        ),
        "{email}"
    );

    // A recovery is headed as one, and says how long it was down.
    let recovered = sample("backup.recovered");
    let slack = render_json(&t, "default", "slack", &recovered);
    assert_eq!(
        slack["text"],
        "✅ Backup recovered: Acme Project on Acme Server"
    );
    let console = render_text(&t, "default", "console", &recovered);
    assert!(console.starts_with("✅ [INFO] Backup recovered: Acme Project on Acme Server: Back after 3 failures, down 2 days\n"), "{console}");

    // Without the subject's history (failures 0, as in `hookrelay render`) nothing
    // is claimed about it.
    let email = render_text(&t, "default", "email", &sample("centurylink FAILED"));
    assert!(!email.contains("good backup"), "{email}");

    let email = render_text(&t, "default", "email", &sb);
    assert!(!email.contains("Stack"), "{email}");
    assert!(email.contains("Server:       Acme Server\n"), "{email}");

    let missing = sample("MISSING");
    let teams = render_json(&t, "default", "teams", &missing);
    let title = &teams["attachments"][0]["content"]["body"][0];
    assert_eq!(
        title["text"],
        "⏰ Backup missed: TestAccountPolicyName20181228013921 on testServerId20181228013921"
    );
    assert_eq!(title["color"], "Attention");
    // A missed backup's time is when it was expected.
    let facts = teams["attachments"][0]["content"]["body"][1]["facts"].to_string();
    assert!(
        facts.contains(r#"{"title":"Expected at","value":"2019-02-01 20:00 UTC"}"#),
        "{facts}"
    );
    assert!(!facts.contains(r#""When""#), "{facts}");
    let console = render_text(&t, "default", "console", &missing);
    assert!(
        console.contains(" · expected at 2019-02-01 20:00 UTC"),
        "{console}"
    );
    let email = render_text(&t, "default", "email", &missing);
    assert!(
        email.contains("\nExpected at:  2019-02-01 20:00 UTC\n"),
        "{email}"
    );
    assert_eq!(teams["attachments"][0]["content"]["version"], "1.4");
    assert_eq!(teams["attachments"][0]["contentUrl"], Value::Null);
}

#[test]
fn templates_can_be_shared_across_workers() {
    fn shared<T: Send + Sync + Clone>() {}
    shared::<Templates>();
}

#[test]
fn ordinals_durations_and_streaks() {
    let ord = |n: u64| helpers::ordinal(&json!(n));
    assert_eq!(
        [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111, 112].map(ord),
        [
            "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st",
            "111th", "112th"
        ]
    );
    assert_eq!(helpers::ordinal(&json!("x")), "");
    let at = |s: &str| parse_time(&json!(s));
    assert_eq!(
        helpers::since(&json!("2025-09-02T17:05:00Z"), at("2025-09-04T18:38:02Z")),
        "2 days"
    );
    assert_eq!(
        helpers::since(&json!("2025-09-04T13:00:00Z"), at("2025-09-04T18:38:02Z")),
        "5 hours"
    );
    assert_eq!(helpers::since(&Value::Null, at("2025-09-04T18:38:02Z")), "");
    let ctx = |status: &str, failures: u32, last: Value| {
        json!({"status": status, "subject": "sb/a", "failures": failures,
            "last_success_at": last, "received_at": "2025-09-04T18:38:02Z"})
    };
    let last = json!("2025-09-04T12:00:00Z");
    assert_eq!(
        helpers::streak(&ctx("failure", 1, last.clone())),
        "Last good backup 6 hours ago"
    );
    assert_eq!(
        helpers::streak(&ctx("partial", 2, last.clone())),
        "2nd failure in a row; last good backup 6 hours ago"
    );
    assert_eq!(
        helpers::streak(&ctx("missing", 4, Value::Null)),
        "4th miss or failure in a row; no good backup seen by hookrelay yet"
    );
    assert_eq!(helpers::streak(&ctx("failure", 1, Value::Null)), "");
    assert_eq!(helpers::streak(&ctx("success", 0, last.clone())), "");
    assert_eq!(helpers::streak(&ctx("recovered", 3, last.clone())), "");
    assert_eq!(helpers::streak(&ctx("failure", 0, last)), "");
}

#[test]
#[ignore = "prints every default for every sample, for reading"]
fn show_defaults() {
    let t = defaults();
    for (what, ctx) in sample_contexts() {
        println!("==================== {what}");
        for ty in crate::destinations::type_names() {
            match t.render_body("default", ty, &ctx).unwrap() {
                Body::Json(v) => println!("--- {ty}\n{v:#}"),
                Body::Text(s) => println!("--- {ty}\n{s}"),
            }
        }
        println!(
            "--- html\n{}",
            t.render_html("default", "email", &ctx).unwrap().unwrap()
        );
    }
}

#[test]
fn a_json_body_as_text_is_what_the_parsed_body_is() {
    let dir = dir_with(&[
        ("plain.webhook.hbs", "{{backup}}"),
        ("dup.webhook.json.hbs", "{\"a\": 1, \"b\": {{json backup}}}"),
    ]);
    let t = Templates::load(dir.path()).unwrap();
    let mut contexts = sample_contexts();
    contexts.push(("nasty", nasty_ctx()));
    for (what, ctx) in &contexts {
        for name in ["default", "dup"] {
            let hctx = Context::from(ctx.clone());
            let text = t
                .render_json_text(name, "webhook", &hctx)
                .expect("renders")
                .expect("a JSON template");
            let sent: Value = serde_json::from_str(&text).expect("valid JSON");
            assert_eq!(
                sent,
                render_json(&t, name, "webhook", ctx),
                "{name}: {what}"
            );
        }
        // A text template has no JSON text: the destination wraps it.
        let plain = t.render_json_text("plain", "webhook", &Context::from(ctx.clone()));
        assert_eq!(plain.expect("renders"), None);
    }
}

#[test]
fn a_json_body_as_text_that_is_not_json_is_an_error_naming_the_file() {
    let dir = dir_with(&[("odd.webhook.json.hbs", "{\"a\": {{backup}}}")]);
    // Loading renders the samples, whose backup names are not JSON: a load error.
    assert!(Templates::load(dir.path()).is_err());
    let mut t = defaults();
    t.files.insert(
        "odd.webhook.json".into(),
        (Mode::Json, "templates/odd.webhook.json.hbs".into()),
    );
    t.registries[Mode::Json.index()]
        .register_template_string("odd.webhook.json", "{\"a\": {{backup}}}")
        .unwrap();
    let e = t
        .render_json_text("odd", "webhook", &Context::from(sample("cloud66")))
        .unwrap_err();
    assert!(
        e.0.starts_with("templates/odd.webhook.json.hbs: "),
        "{}",
        e.0
    );
    assert!(e.0.contains("valid JSON"), "{}", e.0);
}

// ---- the default webhook body written directly (fast.rs) ----

/// What Handlebars renders from `default.webhook.json.hbs` for `e`, with the
/// context a delivery builds.
fn webhook_by_template(t: &Templates, name: &str, e: &Event, id: &str) -> String {
    let mut ctx = e.clone().into_template_context();
    crate::relay::set_delivery_id(&mut ctx, id);
    t.render_json_text(name, "webhook", &Context::from(ctx))
        .expect("renders")
        .expect("a JSON template")
}

/// Every payload in `tests/fixtures/`, normalized as at ingest by its provider,
/// with the backup watch's fields as a run of failures would give them.
fn fixture_events() -> Vec<(String, Event)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    for provider in ["cloud66", "centurylink", "simplebackups"] {
        let cfg: crate::config::SourceConfig =
            serde_json::from_value(json!({"kind": provider, "token": "t"})).unwrap();
        let mut files: Vec<_> = fs::read_dir(dir.join(provider))
            .unwrap()
            .map(|f| f.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let raw: Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
            let at = DateTime::parse_from_rfc3339("2025-09-04T18:38:02.123Z")
                .unwrap()
                .with_timezone(&Utc);
            let mut e = crate::providers::normalize(provider, &cfg, raw, at);
            if e.status != Status::Success {
                e.failures = 2;
                e.last_success_at = Some("2025-09-02T17:05:00Z".into());
                e.down_since = Some("2025-09-03T17:04:00Z".into());
            }
            out.push((file.display().to_string(), e));
        }
    }
    assert!(out.len() >= 12, "the fixtures are there: {}", out.len());
    out
}

/// The sample events (not the group, not the all-null context), read back from
/// their contexts, and events whose values stress escaping and the headline.
fn odd_events() -> Vec<(String, Event)> {
    let mut out: Vec<(String, Event)> = sample_contexts()
        .into_iter()
        .filter(|(_, ctx)| ctx.get("events").is_none())
        .filter_map(|(what, ctx)| Some((what.to_string(), serde_json::from_value(ctx).ok()?)))
        .collect();
    assert!(out.len() >= 10, "samples read back: {}", out.len());
    let odd = "\"\\/\u{0}\u{1f}\u{7f}\u{2028}\u{2029}\r\n\t</script> ✅ 🚀 <!channel> {{x}}";
    for (i, status) in Status::NAMES.iter().enumerate() {
        let s = |n: usize| match (i + n) % 3 {
            0 => None,
            1 => Some(String::new()),
            _ => Some(format!("{odd} {n}")),
        };
        out.push((
            format!("odd values, {status}"),
            Event {
                source: format!("{odd} source"),
                provider: if i % 2 == 0 { odd.into() } else { String::new() },
                event: s(0),
                status: Status::parse(status).unwrap(),
                stack: s(1),
                environment: s(2),
                server: s(3),
                account: s(4),
                backup: s(5),
                database: s(6),
                size_bytes: [None, Some(0), Some(u64::MAX)][i % 3],
                occurred_at: s(7),
                id: s(8),
                message: s(9),
                received_at: odd.into(),
                subject: s(10),
                failures: [0, 1, u32::MAX][i % 3],
                last_success_at: s(11),
                down_since: s(12),
                raw: json!({"z": 1, "a": [1.5, -0.0, 1e300, 18446744073709551615u64, -9223372036854775808i64],
                    "nested": {"k": odd, "": null, "t": true}, odd: [odd]}),
            },
        ));
    }
    out.push((
        "a verification that failed, nothing else".into(),
        Event {
            event: Some("backup.verification.failed".into()),
            status: Status::Failure,
            raw: json!([]),
            ..Default::default()
        },
    ));
    out.push(("an empty event".into(), Event::default()));
    out
}

#[test]
fn fast_webhook_body_is_the_templates_bytes() {
    let t = defaults();
    let mut events = fixture_events();
    events.extend(odd_events());
    for (i, (what, e)) in events.iter().enumerate() {
        let id = format!("0190f3c2-7a1b-7cc3-9a4e-2b5d1e6f7a80-{i}");
        for name in ["default", "no-such-template"] {
            let fast = t
                .default_webhook_json(name, e, &id)
                .unwrap_or_else(|| panic!("{what}: the default body applies"));
            assert_eq!(fast, webhook_by_template(&t, name, e, &id), "{what}");
        }
    }
}

#[test]
fn fast_webhook_body_from_raw_text_is_the_trees_bytes() {
    // `raw` still as stored text (a claimed delivery's) is written exactly as
    // the tree parsed from it, whatever the text's layout.
    let t = defaults();
    let wide: String = format!(
        "{{{}}}",
        (0..100)
            .map(|i| format!("\"k{i}\": {i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut texts: Vec<String> = fixture_events()
        .into_iter()
        .map(|(_, e)| serde_json::to_string_pretty(&e.raw).unwrap())
        .collect();
    texts.extend(
        [
            r#" { "b" : 1 , "a" : [ 1 , 2.50 , -0 , 1e5 , 1.5E-7 , 18446744073709551616 , -9223372036854775808 , 0.1 , 123456789012345678901234567890 ] } "#,
            r#"{"s": "\u00e9\/\t\"q\" \\ \ud83d\ude00 \u0001", "n": null, "t": true, "f": false}"#,
            r#"{"nested": {"deeper": {"x": [[], {}, [{}], {"y": []}]}}, "e": {}, "l": []}"#,
            r#"{"k\u0065y": 1, "key": 2}"#,
            r#"{"status": "error", "a": {"status": 1, "status": 2}, "status": "success"}"#,
            r#"{"x": {"a": 1}, "y": {"a": 2}, "a": 3}"#,
            r#"[1, "two", {"three": 3}]"#,
            r#""just a string""#,
            "42",
            "null",
            "{}",
        ]
        .map(String::from),
    );
    texts.push(wide);
    let (_, base) = fixture_events().remove(0);
    for (i, text) in texts.iter().enumerate() {
        let raw: Value = serde_json::from_str(text).unwrap();
        let parsed = Event {
            raw,
            ..base.clone()
        };
        let head = Event {
            raw: Value::Null,
            ..base.clone()
        };
        let id = format!("d-{i}");
        let want = t.default_webhook_json("default", &parsed, &id).unwrap();
        let got = t
            .default_webhook_json_with("default", &head, Some(text), &id)
            .unwrap();
        assert_eq!(got, want, "{text}");
    }
    // Not JSON: no body (the delivery then ends dead, with the parse error).
    for bad in ["{\"a\":", "{\"a\": 1} x", ""] {
        assert_eq!(
            t.default_webhook_json_with("default", &base, Some(bad), "d"),
            None,
            "{bad}"
        );
    }
}

#[test]
fn fast_webhook_body_only_while_the_embedded_template_is_in_force() {
    let (_, e) = fixture_events().remove(0);
    // A folder file of the default body (JSON or text) takes its place.
    for file in ["default.webhook.json.hbs", "default.webhook.hbs"] {
        let dir = dir_with(&[(file, "{\"text\": {{json backup}}}")]);
        let t = Templates::load(dir.path()).unwrap();
        assert_eq!(t.default_webhook_json("default", &e, "d-1"), None, "{file}");
    }
    // A template of its own for the webhook type; another type's file changes nothing.
    let dir = dir_with(&[
        ("mine.webhook.json.hbs", "{\"b\": {{json backup}}}"),
        ("mine.slack.json.hbs", "{\"text\": {{json backup}}}"),
        ("other.slack.json.hbs", "{\"text\": {{json backup}}}"),
    ]);
    let t = Templates::load(dir.path()).unwrap();
    assert_eq!(t.default_webhook_json("mine", &e, "d-1"), None);
    let fast = t
        .default_webhook_json("other", &e, "d-1")
        .expect("default body");
    assert_eq!(fast, webhook_by_template(&t, "other", &e, "d-1"));
    // A digest's body is the digest template's.
    let digest = Event {
        source: crate::digest::SOURCE.into(),
        provider: crate::digest::SOURCE.into(),
        event: Some(crate::digest::EVENT.into()),
        ..Default::default()
    };
    assert_eq!(
        defaults().default_webhook_json("default", &digest, "d-1"),
        None
    );
}

#[test]
fn the_default_webhook_body_is_pretty_json_with_every_field() {
    // What a receiver gets: the fields in the documented order, raw last.
    let t = defaults();
    let (_, e) = fixture_events().remove(0);
    let text = t.default_webhook_json("default", &e, "d-1").unwrap();
    assert!(text.starts_with("{\n  \"text\": \"❌ Backup"), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys[0], "text");
    assert_eq!(keys[keys.len() - 1], "raw");
    assert_eq!(v["raw"], e.raw);
    assert_eq!(v["delivery_id"], "d-1");
}
