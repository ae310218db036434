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

pub(super) type ValueFn = fn(&[Value], &Helper<'_>, &Context) -> Value;

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
        let args: Vec<Value> = h.params().iter().map(|p| p.value().clone()).collect();
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
    let value_helpers: [(&str, ValueFn); 8] = [
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

pub(super) fn arg(args: &[Value], i: usize) -> &Value {
    args.get(i).unwrap_or(&Value::Null)
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
pub(super) fn helper_default(args: &[Value]) -> Value {
    args.iter()
        .find(|v| match v {
            Value::Null => false,
            Value::String(s) => !s.is_empty(),
            _ => true,
        })
        .cloned()
        .unwrap_or(Value::Null)
}

/// `(eq a b)`: equal values; `(eq status "failure" "missing")` is true when the
/// first equals any of the others. A number equals its decimal string.
pub(super) fn helper_eq(args: &[Value]) -> bool {
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
        "failure" | "failed" | "fail" | "error" => "❌",
        "partial" | "partial_success" | "warning" => "⚠️",
        "missing" | "missed" => "⏰",
        _ => "❓",
    }
}
