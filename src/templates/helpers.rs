//! Registries, escaping and the helpers hookrelay adds.

use super::*;

pub(super) fn new_registry(mode: Mode) -> Handlebars<'static> {
    let mut r = Handlebars::new();
    // Lenient at run time: a known-but-null field or a missing `raw.x` renders empty.
    // Names were checked at load time by `check_names`.
    r.set_strict_mode(false);
    match mode {
        Mode::Json => r.register_escape_fn(json_string_escape),
        Mode::Slack => r.register_escape_fn(slack_escape),
        Mode::Html => r.register_escape_fn(handlebars::html_escape),
        Mode::Plain => r.register_escape_fn(handlebars::no_escape),
        Mode::Markdown => r.register_escape_fn(crate::destinations::mattermost::escape_markdown),
    }
    register_helpers(&mut r, mode);
    r
}

/// JSON string escaping without the surrounding quotes.
pub fn json_string_escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or_default()
        .to_string()
}

/// What Slack requires escaped in message text: `&`, `<`, `>`.
pub fn slack_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

pub(super) type ValueFn = fn(&[&Value], &Helper<'_>, &Context) -> Value;

/// A helper computing a value; Handlebars escapes it in `{{…}}` (not in `{{{…}}}`)
/// and it composes in subexpressions.
pub(super) struct ValueHelper(ValueFn);

impl HelperDef for ValueHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, handlebars::RenderError> {
        // Borrowed: the values stay in the context (or in the parameters).
        let args: Vec<&Value> = h.params().iter().map(|p| p.value()).collect();
        Ok(ScopedJson::Derived((self.0)(&args, h, ctx)))
    }
}

/// `{{json x}}`: a JSON literal, written as is in JSON templates (it *is* the JSON);
/// escaped like any value in text templates, so `{{json raw}}` in an HTML email is
/// still safe. `pretty=true` indents it.
pub(super) struct JsonHelper {
    raw: bool,
}

impl HelperDef for JsonHelper {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let value = h.param(0).map_or(&Value::Null, |p| p.value());
        let pretty = h
            .hash_get("pretty")
            .is_some_and(|p| p.value().is_truthy(false));
        let text = if pretty {
            serde_json::to_string_pretty(value)
        } else {
            serde_json::to_string(value)
        }
        .unwrap_or_else(|_| "null".to_string());
        if self.raw || rc.is_disable_escape() {
            out.write(&text)?;
        } else {
            out.write(&(r.get_escape_fn())(&text))?;
        }
        Ok(())
    }
}

pub(super) fn register_helpers(r: &mut Handlebars<'static>, mode: Mode) {
    let value_helpers: [(&str, ValueFn); 13] = [
        ("upper", |a, _, _| {
            Value::String(text_of(arg(a, 0)).to_uppercase())
        }),
        ("lower", |a, _, _| {
            Value::String(text_of(arg(a, 0)).to_lowercase())
        }),
        ("default", |a, _, _| helper_default(a)),
        ("eq", |a, _, _| Value::Bool(helper_eq(a))),
        ("bytes", |a, _, _| Value::String(format_bytes(arg(a, 0)))),
        ("date", |a, _, _| {
            let fmt = arg(a, 1).as_str().unwrap_or(DEFAULT_DATE_FORMAT);
            Value::String(format_date(arg(a, 0), fmt))
        }),
        ("emoji", |a, _, ctx| {
            let status = if a.is_empty() {
                ctx.data().get("status").unwrap_or(&Value::Null)
            } else {
                arg(a, 0)
            };
            Value::String(emoji(&text_of(status)).to_string())
        }),
        ("mrkdwn", |a, _, _| {
            Value::String(slack_escape(&text_of(arg(a, 0))))
        }),
        ("ordinal", |a, _, _| Value::String(ordinal(arg(a, 0)))),
        ("since", |a, _, _| {
            let until = match arg(a, 1) {
                Value::Null => Some(Utc::now()),
                v => parse_time(v),
            };
            Value::String(since(arg(a, 0), until))
        }),
        ("streak", |_, _, ctx| Value::String(streak(ctx.data()))),
        ("headline", |_, _, ctx| Value::String(headline(ctx.data()))),
        ("more", |a, _, _| Value::String(helper_more(a))),
    ];
    for (name, f) in value_helpers {
        r.register_helper(name, Box::new(ValueHelper(f)));
    }
    r.register_helper(
        "json",
        Box::new(JsonHelper {
            raw: mode == Mode::Json,
        }),
    );
}

pub(super) fn arg<'a>(args: &[&'a Value], i: usize) -> &'a Value {
    args.get(i).copied().unwrap_or(&Value::Null)
}

/// A value as text: strings as they are, null as empty, anything else as JSON.
pub(super) fn text_of(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// `{{default a b "n/a"}}`: the first argument that is neither null nor empty.
pub(super) fn helper_default(args: &[&Value]) -> Value {
    args.iter()
        .find(|v| match v {
            Value::Null => false,
            Value::String(s) => !s.is_empty(),
            _ => true,
        })
        .map(|v| (*v).clone())
        .unwrap_or(Value::Null)
}

/// `(eq a b)`: equal values; `(eq status "failure" "missing")` is true when the
/// first equals any of the others. A number equals its decimal string.
pub(super) fn helper_eq(args: &[&Value]) -> bool {
    let Some((first, rest)) = args.split_first() else {
        return false;
    };
    rest.iter().any(|other| {
        first == other || (is_scalar(first) && is_scalar(other) && text_of(first) == text_of(other))
    })
}

pub(super) fn is_scalar(v: &Value) -> bool {
    matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

/// `{{bytes n}}`: `512 B`, `1.5 KiB`, `976.6 MiB` … up to TiB. Null renders empty;
/// anything that is not a non-negative number renders as it is.
pub fn format_bytes(v: &Value) -> String {
    let n = match v {
        Value::Null => return String::new(),
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let Some(n) = n.filter(|n| n.is_finite() && *n >= 0.0) else {
        return text_of(v);
    };
    if n < 1024.0 {
        return format!("{} B", n.round() as u64);
    }
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut value = n / 1024.0;
    let mut unit = 0;
    // Move up while the value would print as 1024.0 or more.
    while (value * 10.0).round() / 10.0 >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `{{date t "%Y-%m-%d %H:%M"}}`: `t` as RFC 3339, unix seconds (number or numeric
/// string) or `YYYY-MM-DD HH:MM:SS` read as UTC; formatted in UTC with chrono's
/// strftime syntax. Null renders empty; what cannot be read (or a bad format)
/// renders the input as it is.
pub fn format_date(v: &Value, fmt: &str) -> String {
    let Some(t) = parse_time(v) else {
        return text_of(v);
    };
    let mut out = String::new();
    match write!(out, "{}", t.format(fmt)) {
        Ok(()) => out,
        Err(_) => text_of(v),
    }
}

pub(super) fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::Number(n) => from_unix(n.as_f64()?),
        Value::String(s) => {
            let s = s.trim();
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
            {
                if let Ok(n) = s.parse::<f64>() {
                    return from_unix(n);
                }
            }
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Some(t.with_timezone(&Utc));
            }
            let naive = s
                .strip_suffix(" UTC")
                .or_else(|| s.strip_suffix('Z'))
                .unwrap_or(s);
            ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(naive, f).ok())
                .map(|t| t.and_utc())
        }
        _ => None,
    }
}

pub(super) fn from_unix(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() || secs.abs() > 1e13 {
        return None;
    }
    let whole = secs.floor();
    let nanos = ((secs - whole) * 1e9).round().min(999_999_999.0) as u32;
    DateTime::from_timestamp(whole as i64, nanos)
}

/// `{{emoji status}}`: ✅ success, ❌ failure, ⚠️ partial, ⏰ missing (a backup that
/// did not happen on time), ❓ anything else. Without an argument, the event's own
/// status. Also reads the providers' own words (`error`, `FAILED`,
/// `PARTIAL_SUCCESS`, …), so `{{emoji raw.status}}` works too.
pub fn emoji(status: &str) -> &'static str {
    match status.trim().to_ascii_lowercase().as_str() {
        "success" | "succeeded" | "ok" | "verified" | "recovered" => "✅",
        "failure" | "failed" | "fail" | "error" | "failing" => "❌",
        "partial" | "partial_success" | "warning" => "⚠️",
        "missing" | "missed" => "⏰",
        _ => "❓",
    }
}

/// `{{ordinal failures}}`: 1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, …; empty for
/// anything that is not a whole number.
pub fn ordinal(v: &Value) -> String {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    let Some(n) = n else {
        return String::new();
    };
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// `{{since last_success_at received_at}}`: how long from the first time to the
/// second (now without one) in its largest unit — "2 days", "5 hours"; empty when
/// either is missing or unreadable. Templates reckon from the event's own
/// `received_at`, so every retry of a delivery says the same.
pub fn since(from: &Value, until: Option<DateTime<Utc>>) -> String {
    match (parse_time(from), until) {
        (Some(from), Some(until)) => crate::watch::ago((until - from).num_milliseconds()),
        _ => String::new(),
    }
}

/// `{{streak}}`: where a bad outcome stands in its subject's run, in words —
/// "3rd failure in a row; last good backup 2 days ago", "Last good backup 5 hours
/// ago", "2nd failure in a row; no good backup seen by hookrelay yet" — for `failure`, `partial` and
/// `missing` events that carry their subject's history; empty for anything else (a recovery says how long it was
/// down in its `message`).
pub fn streak(ctx: &Value) -> String {
    let field = |k: &str| ctx.get(k).unwrap_or(&Value::Null);
    let status = text_of(field("status"));
    let failures = field("failures").as_u64().unwrap_or(0);
    // Stored events of a bad outcome count at least themselves; 0 means the
    // subject's history is not known (`hookrelay render`, a hand-made context).
    if !matches!(status.as_str(), "failure" | "partial" | "missing")
        || text_of(field("subject")).is_empty()
        || failures == 0
    {
        return String::new();
    }
    let mut parts = Vec::new();
    if failures >= 2 {
        let what = if status == "missing" {
            "miss or failure"
        } else {
            "failure"
        };
        parts.push(format!("{} {what} in a row", ordinal(field("failures"))));
    }
    let received = parse_time(field("received_at"));
    let last_good = since(field("last_success_at"), received);
    if !last_good.is_empty() {
        parts.push(format!("last good backup {last_good} ago"));
    } else if failures >= 2 {
        // Said only of a run: a first failure of a backup hookrelay has just begun
        // to watch knows too little to claim anything about its past.
        parts.push("no good backup seen by hookrelay yet".to_string());
    }
    let text = parts.join("; ");
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

/// `{{headline}}`: what happened and to which backup, in one line — "Backup
/// verification failed: myapp_production (postgresql) on my-production-app /
/// production". The words follow the status and, where they matter, the event
/// type (a failed *verification* is not a failed backup).
pub fn headline(ctx: &Value) -> String {
    headline_of(&|k| text_of(ctx.get(k).unwrap_or(&Value::Null)))
}

/// [`headline`] from any source of the fields' text (empty when missing): the
/// context's values, or an event's fields for the default webhook body.
pub(super) fn headline_of(field: &dyn Fn(&str) -> String) -> String {
    let event = field("event");
    let mut line = match field("status").as_str() {
        "failure" if event == "backup.verification.failed" => "Backup verification failed".into(),
        "failure" => "Backup failed".into(),
        "missing" => "Backup missed".into(),
        "partial" => "Backup partially succeeded".into(),
        "success" if event == "backup.verification.verified" => "Backup verified".into(),
        "success" => "Backup succeeded".into(),
        "recovered" => "Backup recovered".into(),
        _ if !event.is_empty() => format!("Backup event {event}"),
        _ => format!("Unrecognised payload on source {}", field("source")),
    };
    let (backup, database) = (field("backup"), field("database"));
    if !backup.is_empty() {
        let _ = write!(line, ": {backup}");
        if !database.is_empty() {
            let _ = write!(line, " ({database})");
        }
    } else if !database.is_empty() {
        let _ = write!(line, ": {database}");
    }
    let (stack, environment, server) = (field("stack"), field("environment"), field("server"));
    if !stack.is_empty() {
        let _ = write!(line, " on {stack}");
        if !environment.is_empty() {
            let _ = write!(line, " / {environment}");
        }
    } else if !server.is_empty() {
        let _ = write!(line, " on {server}");
    }
    line
}

/// `{{more count 15}}`: "… and 7 more" when a list of `count` shows only its first
/// 15 (a group shortened to a destination's limits), else empty.
pub(super) fn helper_more(args: &[&Value]) -> String {
    let n = |v: &Value| match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Array(a) => Some(a.len() as u64),
        _ => None,
    };
    match (n(arg(args, 0)), n(arg(args, 1))) {
        (Some(count), Some(shown)) if count > shown => format!("… and {} more", count - shown),
        _ => String::new(),
    }
}
