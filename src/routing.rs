//! Routing (SPEC §5): compiled routes and the pure walk from an [`Event`] to the
//! deliveries it should produce. No I/O here, so every rule is unit-tested.

use regex::Regex;
use serde_json::Value;

use crate::config::{ConfigError, RouteConfig};
use crate::event::{scalar_string, Event, Status, FIELDS, SEVERITIES};

/// One condition on one field.
#[derive(Debug, Clone)]
pub enum Cond {
    /// Equal to any of these (a string is a list of one).
    AnyOf(Vec<String>),
    Regex(Regex),
    Not(Box<Cond>),
    /// A number at least / at most this (a value that is not a number never holds).
    Gte(f64),
    Lte(f64),
}

impl Cond {
    pub(crate) fn holds(&self, value: Option<&str>) -> bool {
        match self {
            Cond::AnyOf(list) => value.is_some_and(|v| list.iter().any(|x| x == v)),
            Cond::Regex(re) => value.is_some_and(|v| re.is_match(v)),
            Cond::Not(inner) => !inner.holds(value),
            Cond::Gte(n) => number(value).is_some_and(|v| v >= *n),
            Cond::Lte(n) => number(value).is_some_and(|v| v <= *n),
        }
    }

    pub(crate) fn compile(place: &str, v: &Value, errors: &mut Vec<ConfigError>) -> Option<Cond> {
        match v {
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match scalar_string(item) {
                        Some(s) => out.push(s),
                        None => errors.push(ConfigError::new(
                            format!("{place}[{i}]"),
                            "expected a string, number or boolean",
                        )),
                    }
                }
                Some(Cond::AnyOf(out))
            }
            Value::Object(m) if m.len() == 1 && m.contains_key("regex") => {
                let Some(Value::String(pat)) = m.get("regex") else {
                    errors.push(ConfigError::new(
                        format!("{place}.regex"),
                        "expected a string",
                    ));
                    return None;
                };
                match Regex::new(pat) {
                    Ok(re) => Some(Cond::Regex(re)),
                    Err(e) => {
                        errors.push(ConfigError::new(
                            format!("{place}.regex"),
                            format!("invalid regex: {}", first_line(&e.to_string())),
                        ));
                        None
                    }
                }
            }
            Value::Object(m) if m.len() == 1 && m.contains_key("not") => {
                let inner = m.get("not")?;
                Cond::compile(&format!("{place}.not"), inner, errors)
                    .map(|c| Cond::Not(Box::new(c)))
            }
            Value::Object(m)
                if m.len() == 1 && (m.contains_key("gte") || m.contains_key("lte")) =>
            {
                let (op, n) = m.iter().next()?;
                let Some(n) = n.as_f64() else {
                    errors.push(ConfigError::new(
                        format!("{place}.{op}"),
                        "expected a number",
                    ));
                    return None;
                };
                Some(if op == "gte" {
                    Cond::Gte(n)
                } else {
                    Cond::Lte(n)
                })
            }
            Value::Object(_) => {
                errors.push(ConfigError::new(
                    place,
                    "expected a string, a list, {regex: …}, {not: …}, {gte: N} or {lte: N}",
                ));
                None
            }
            Value::Null => {
                errors.push(ConfigError::new(place, "expected a value to match"));
                None
            }
            other => scalar_string(other).map(|s| Cond::AnyOf(vec![s])),
        }
    }
}

/// A field's value as a number, for `{gte: N}` / `{lte: N}`.
fn number(value: Option<&str>) -> Option<f64> {
    value.and_then(|v| v.trim().parse::<f64>().ok())
}

fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// What the route is, not where it stands: a hash of its `match` (in any key
    /// order), `to`, `template`, `channel` and `group.by` (see [`identity`]). A
    /// group's key starts with it, so a reload that moves the route (another route
    /// added above it, the list reordered) keeps its open groups taking its events,
    /// and no other route's events join them.
    pub id: String,
    pub conditions: Vec<(String, Cond)>,
    pub to: Vec<String>,
    pub template: Option<String>,
    pub channel: Option<String>,
    pub continue_: bool,
    /// `group`: the route's events are held and sent together (SPEC §10).
    pub group: Option<crate::group::GroupRule>,
}

impl Route {
    pub fn matches(&self, e: &Event) -> bool {
        self.conditions
            .iter()
            .all(|(field, cond)| cond.holds(e.field(field).as_deref()))
    }
}

/// One delivery the walk decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub destination: String,
    /// The template name (`default` when the route names none).
    pub template: String,
    /// Index of the route that produced it (for the route's `channel` override).
    pub route: usize,
}

/// Compiles the configured routes. `sources` are the configured sources' names
/// (a route on any other `source` can never match; empty: not checked);
/// `is_destination(name)` answers whether a destination exists (enabled or not);
/// `has_template(name)` whether templates of that name exist.
pub fn compile(
    routes: &[RouteConfig],
    sources: &[&str],
    is_destination: impl Fn(&str) -> bool,
    has_template: impl Fn(&str) -> bool,
) -> Result<Vec<Route>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        let place = format!("routes[{i}]");
        let mut conditions = Vec::new();
        for (field, v) in r.matches.iter().flatten() {
            let fplace = format!("{place}.match.{field}");
            if !field.starts_with("raw.") && !FIELDS.contains(&field.as_str()) {
                errors.push(ConfigError::new(
                    fplace.clone(),
                    format!("unknown field {field:?}; use a normalized field or raw.<path>"),
                ));
                continue;
            }
            if let Some(c) = Cond::compile(&fplace, v, &mut errors) {
                if let Some(allowed) = enumerated(field) {
                    check_values(&fplace, field, allowed, &c, &mut errors);
                } else if field == "source" && !sources.is_empty() {
                    check_values(&fplace, "source", sources, &c, &mut errors);
                }
                conditions.push((field.clone(), c));
            }
        }
        if r.to.is_empty() {
            errors.push(ConfigError::new(
                format!("{place}.to"),
                "needs at least one destination",
            ));
        }
        for (j, d) in r.to.iter().enumerate() {
            if !is_destination(d) {
                errors.push(ConfigError::new(
                    format!("{place}.to[{j}]"),
                    format!("unknown destination {d:?}"),
                ));
            }
        }
        if let Some(t) = &r.template {
            if !has_template(t) {
                errors.push(ConfigError::new(
                    format!("{place}.template"),
                    format!("no template named {t:?} (looked for {t}.<type>.hbs and {t}.<type>.json.hbs)"),
                ));
            }
        }
        let group = r.group.as_ref().and_then(|g| {
            crate::group::GroupRule::compile(&format!("{place}.group"), g, &mut errors)
        });
        out.push(Route {
            id: identity(r),
            conditions,
            to: r.to.clone(),
            template: r.template.clone(),
            channel: r.channel.clone(),
            continue_: r.continue_,
            group,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// [`Route::id`]: the first 16 hex digits of the SHA-256 of the route's `match`
/// (object keys sorted at every depth: they are a conjunction), `to`, `template`,
/// `channel` and `group.by`. Not `continue` (what it changes is which destinations
/// later routes keep, and a group's key has the destinations) nor `group.wait` and
/// `group.max`: a reload that changes those applies to groups opened from then on,
/// while a group already open keeps taking the route's events.
pub fn identity(r: &RouteConfig) -> String {
    use sha2::{Digest, Sha256};
    let ident = serde_json::json!({
        "match": r.matches.as_ref().map(|m| sorted(&Value::Object(m.clone()))),
        "to": r.to,
        "template": r.template,
        "channel": r.channel,
        "by": r.group.as_ref().map(|g| &g.by),
    });
    hex::encode(&Sha256::digest(ident.to_string().as_bytes())[..8])
}

/// `v` with every object's keys in order (`serde_json` keeps them as written).
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Every provider's name, and `hookrelay` for its own events (SPEC §9).
const PROVIDERS: &[&str] = &[
    "cloud66",
    "simplebackups",
    "centurylink",
    "generic",
    "hookrelay",
];

/// The values a field can take, for the fields that have a fixed set: a route
/// comparing one of them with anything else can never match.
pub(crate) fn enumerated(field: &str) -> Option<&'static [&'static str]> {
    match field {
        "status" => Some(Status::NAMES),
        "severity" => Some(SEVERITIES),
        "provider" => Some(PROVIDERS),
        _ => None,
    }
}

/// Reports each value of `cond` (also under `not`) that `field` never takes.
pub(crate) fn check_values(
    place: &str,
    field: &str,
    allowed: &[&str],
    cond: &Cond,
    errors: &mut Vec<ConfigError>,
) {
    match cond {
        Cond::AnyOf(values) => {
            for v in values.iter().filter(|v| !allowed.contains(&v.as_str())) {
                let hint = suggest(v, allowed)
                    .map(|s| format!("did you mean {s}? "))
                    .unwrap_or_default();
                errors.push(ConfigError::new(
                    place,
                    format!(
                        "{field} is never {v:?}, so this can never match; {hint}{field} is one of {}",
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Cond::Not(inner) => check_values(place, field, allowed, inner, errors),
        // A regex may well be meant to match several values; it is not second-guessed.
        // Numbers are compared with numeric fields only.
        Cond::Regex(_) | Cond::Gte(_) | Cond::Lte(_) => {}
    }
}

/// The allowed value `v` was most likely meant to be: one that starts the same
/// way (`crit` -> `critical`, `failed` -> `failure`) or is a small typo away.
pub fn suggest<'a>(v: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let v = v.trim().to_lowercase();
    if v.is_empty() {
        return None;
    }
    let prefix = |a: &str| v.chars().zip(a.chars()).take_while(|(x, y)| x == y).count();
    allowed
        .iter()
        .map(|a| (*a, prefix(a), edit_distance(&v, a)))
        .filter(|(a, p, d)| {
            *p >= 4.min(v.chars().count()).max(3).min(a.len()) || *d <= 1.max(a.len() / 3)
        })
        .min_by_key(|(_, p, d)| (std::cmp::Reverse(*p), *d))
        .map(|(a, _, _)| a)
}

/// Levenshtein distance, on characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(cur)
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// `check`'s warning for a route that names status `recovered`, or `missing`
/// while `watch.expect` watches backups, but whose `provider` or `event` keeps
/// out the backup watch's own events (`provider: hookrelay`, `event:
/// backup.recovered` / `backup.missing`): `match: { provider: cloud66, status:
/// [failure, missing] }` gets Cloud66's failures but never the missed backups or
/// recoveries of those same backups.
pub fn watch_warnings(s: &crate::config::Settings, warnings: &mut Vec<ConfigError>) {
    let mut watched = Vec::new();
    if s.watch.recovered {
        watched.push((Status::Recovered, "backup.recovered"));
    }
    if !s.watch.expect.is_empty() {
        watched.push((Status::Missing, "backup.missing"));
    }
    for (i, r) in s.routes.iter().enumerate() {
        let Some(m) = &r.matches else { continue };
        let cond = |field: &str| {
            m.get(field)
                .and_then(|v| Cond::compile(field, v, &mut Vec::new()))
        };
        let Some(Cond::AnyOf(statuses)) = cond("status") else {
            continue;
        };
        for (status, event) in &watched {
            if !statuses.iter().any(|v| v == status.as_str()) {
                continue;
            }
            let kept_out = [("provider", "hookrelay"), ("event", *event)]
                .into_iter()
                .find(|(f, v)| cond(f).is_some_and(|c| !c.holds(Some(v))));
            if let Some((field, value)) = kept_out {
                warnings.push(ConfigError::new(
                    format!("routes[{i}].match.{field}"),
                    format!(
                        "names status {}, but the backup watch's {} events have {field} \
                         {value:?}, so they never match this route; match on source \
                         (which they keep from the backup) instead of {field}",
                        status.as_str(),
                        if *status == Status::Recovered {
                            "recovered"
                        } else {
                            "missed-backup"
                        },
                    ),
                ));
            }
        }
    }
}

/// Whether events of one status can match a route, judged from the config alone
/// (for `check`'s warnings; see [`reaching`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// None can.
    Never,
    /// Some may, depending on fields the config cannot know.
    Maybe,
    /// Every one does.
    Always,
}

/// Whether events of status `status` can match route `r`. What every such event
/// has is known — its status and severity, and for `recovered` its provider
/// (`hookrelay`) and event (`backup.recovered`) — so conditions on those are
/// judged; any other condition may hold or not. A condition that does not
/// compile (an error `check` reports anyway) may hold.
pub fn reach(r: &RouteConfig, status: Status) -> Reach {
    let known = |field: &str| -> Option<&str> {
        match (field, status) {
            ("status", _) => Some(status.as_str()),
            ("severity", _) => Some(status.severity()),
            ("provider", Status::Recovered) => Some("hookrelay"),
            ("event", Status::Recovered) => Some("backup.recovered"),
            _ => None,
        }
    };
    let mut out = Reach::Always;
    for (field, v) in r.matches.iter().flatten() {
        let value = known(field);
        let cond = Cond::compile(field, v, &mut Vec::new());
        match (value, cond) {
            (Some(value), Some(c)) if !c.holds(Some(value)) => return Reach::Never,
            (Some(_), Some(_)) => {}
            _ => out = Reach::Maybe,
        }
    }
    out
}

/// Where events of any of `statuses` can first reach destination `dest`: the
/// smallest `(route, index in its to)` of a route naming `dest` that such an
/// event may match before a route it surely matches without `continue` ends
/// its walk. `None`: no such event can get there.
pub fn reaching(routes: &[RouteConfig], dest: &str, statuses: &[Status]) -> Option<(usize, usize)> {
    let mut first: Option<(usize, usize)> = None;
    for &status in statuses {
        for (i, r) in routes.iter().enumerate() {
            let m = reach(r, status);
            if m == Reach::Never {
                continue;
            }
            if let Some(j) = r.to.iter().position(|d| d == dest) {
                first = Some(first.map_or((i, j), |f| f.min((i, j))));
                break;
            }
            if m == Reach::Always && !r.continue_ {
                break;
            }
        }
    }
    first
}

/// The routes an event reaches and matches, in order: the walk stops after the
/// first matching route without `continue`.
pub fn walk(routes: &[Route], e: &Event) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        if r.matches(e) {
            out.push(i);
            if !r.continue_ {
                break;
            }
        }
    }
    out
}

/// Walks the routes in order. Each destination gets at most one delivery (from
/// the first route naming it); the first matching route without `continue` ends
/// the walk. `enabled(name)` filters out switched-off destinations.
pub fn plan(routes: &[Route], e: &Event, enabled: impl Fn(&str) -> bool) -> (bool, Vec<Planned>) {
    let walked = walk(routes, e);
    let mut out: Vec<Planned> = Vec::new();
    for &i in &walked {
        let r = &routes[i];
        for d in &r.to {
            if enabled(d) && !out.iter().any(|p| &p.destination == d) {
                out.push(Planned {
                    destination: d.clone(),
                    template: r.template.clone().unwrap_or_else(|| "default".into()),
                    route: i,
                });
            }
        }
    }
    (!walked.is_empty(), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn routes(yaml: Value) -> Vec<Route> {
        let cfgs: Vec<RouteConfig> = serde_json::from_value(yaml).unwrap();
        compile(&cfgs, &[], |_| true, |_| true).unwrap()
    }

    fn c66(env: &str, stack: &str, status: Status, event: &str) -> Event {
        Event {
            provider: "cloud66".into(),
            status,
            event: Some(event.into()),
            stack: Some(stack.into()),
            environment: Some(env.into()),
            raw: json!({"stack": {"cloud": "aws"}}),
            ..Default::default()
        }
    }

    fn dests(p: &[Planned]) -> Vec<&str> {
        p.iter().map(|p| p.destination.as_str()).collect()
    }

    #[test]
    fn numbers_compare_with_gte_and_lte() {
        let r = routes(json!([
            {"match": {"failures": {"gte": 3}}, "to": ["page"], "continue": true},
            {"match": {"failures": {"lte": 0}}, "to": ["fine"]},
            {"match": {"size_bytes": {"lte": 100}}, "to": ["small"]},
        ]));
        let mut e = c66("production", "app", Status::Failure, "managed_backup.fail");
        for (n, want) in [
            (0, vec!["fine"]),
            (2, vec![]),
            (3, vec!["page"]),
            (7, vec!["page"]),
        ] {
            e.failures = n;
            assert_eq!(dests(&plan(&r, &e, |_| true).1), want, "failures {n}");
        }
        // An absent field never holds.
        e.failures = 1;
        assert_eq!(dests(&plan(&r, &e, |_| true).1), Vec::<&str>::new());
        e.size_bytes = Some(50);
        assert_eq!(dests(&plan(&r, &e, |_| true).1), ["small"]);
        let bad: Vec<RouteConfig> =
            serde_json::from_value(json!([{"match": {"failures": {"gte": "x"}}, "to": ["a"]}]))
                .unwrap();
        let errs = compile(&bad, &[], |_| true, |_| true).unwrap_err();
        assert_eq!(errs[0].place, "routes[0].match.failures.gte");
    }

    #[test]
    fn the_spec_example_routes() {
        let r = routes(json!([
            {"match": {"status": ["failure", "missing"], "environment": "production"},
             "to": ["prod-slack", "dba-email"], "template": "backup_failed", "continue": true},
            {"match": {"stack": {"regex": "^billing-"}}, "to": ["billing-teams"]},
            {"match": {"raw.stack.cloud": "aws", "event": {"not": "backup.verification.failed"}},
             "to": ["ops-slack"]},
        ]));
        let all = |_: &str| true;

        // Production failure: first route continues, the billing route does not
        // match, the aws route matches.
        let e = c66("production", "app", Status::Failure, "managed_backup.fail");
        let (routed, p) = plan(&r, &e, all);
        assert!(routed);
        assert_eq!(dests(&p), ["prod-slack", "dba-email", "ops-slack"]);
        assert_eq!(p[0].template, "backup_failed");
        assert_eq!(p[2].template, "default");

        // `not` excludes the verification event.
        let e = c66(
            "staging",
            "app",
            Status::Failure,
            "backup.verification.failed",
        );
        assert_eq!(plan(&r, &e, all), (false, vec![]));

        // A billing stack stops at route 1 (no continue).
        let e = c66(
            "staging",
            "billing-eu",
            Status::Success,
            "managed_backup.success",
        );
        assert_eq!(dests(&plan(&r, &e, all).1), ["billing-teams"]);
    }

    #[test]
    fn one_delivery_per_destination_and_disabled_ones_skipped() {
        let r = routes(json!([
            {"to": ["a", "b"], "continue": true},
            {"match": {}, "to": ["b", "c"]},
        ]));
        let e = Event::default();
        assert_eq!(dests(&plan(&r, &e, |_| true).1), ["a", "b", "c"]);
        assert_eq!(dests(&plan(&r, &e, |d| d != "a").1), ["b", "c"]);
    }

    #[test]
    fn missing_fields_match_only_not() {
        let r = routes(json!([
            {"match": {"stack": {"not": "x"}}, "to": ["n"], "continue": true},
            {"match": {"stack": {"regex": ".*"}}, "to": ["r"], "continue": true},
            {"match": {"size_bytes": 5}, "to": ["s"]},
        ]));
        let mut e = Event::default();
        assert_eq!(dests(&plan(&r, &e, |_| true).1), ["n"]);
        e.size_bytes = Some(5);
        assert_eq!(dests(&plan(&r, &e, |_| true).1), ["n", "s"]);
    }

    #[test]
    fn a_route_is_known_by_what_it_is_not_where_it_stands() {
        let sb = json!({"match": {"source": "sb", "status": ["failure"]}, "to": ["ops"],
                        "group": {"wait": "5s"}});
        let db = json!({"match": {"source": "db"}, "to": ["dba"], "group": {"wait": "5s"}});
        let before = routes(json!([sb.clone()]));
        // A route added above it, and the list reordered.
        let after = routes(json!([db.clone(), sb.clone()]));
        let reordered = routes(json!([sb, db]));
        assert_eq!(before[0].id, after[1].id);
        assert_eq!(before[0].id, reordered[0].id);
        assert_ne!(after[0].id, after[1].id);
        let id = |r: Value| routes(json!([r]))[0].id.clone();
        let base = id(json!({"match": {"source": "sb", "status": "failure"}, "to": ["ops"]}));
        // The order of `match`'s keys, `continue`, `group.wait` and `group.max` do
        // not change what the route is.
        assert_eq!(
            base,
            id(
                json!({"match": {"status": "failure", "source": "sb"}, "to": ["ops"], "continue": true})
            )
        );
        let grouped = |g: Value| id(json!({"match": {"source": "sb"}, "to": ["ops"], "group": g}));
        assert_eq!(
            grouped(json!({"wait": "5s", "by": ["stack"]})),
            grouped(json!({"wait": "1m", "by": ["stack"], "max": 3}))
        );
        // Its `match`, `to`, `template`, `channel` and `group.by` do.
        for other in [
            json!({"match": {"source": "sb", "status": "missing"}, "to": ["ops"]}),
            json!({"match": {"source": "sb", "status": "failure"}, "to": ["ops", "dba"]}),
            json!({"match": {"source": "sb", "status": "failure"}, "to": ["ops"], "template": "t"}),
            json!({"match": {"source": "sb", "status": "failure"}, "to": ["ops"], "channel": "#x"}),
        ] {
            assert_ne!(base, id(other.clone()), "{other}");
        }
        assert_ne!(
            grouped(json!({"wait": "5s", "by": ["stack"]})),
            grouped(json!({"wait": "5s", "by": ["server"]}))
        );
    }

    #[test]
    fn compile_errors_name_their_place() {
        let cfgs: Vec<RouteConfig> = serde_json::from_value(json!([
            {"match": {"stak": "x", "stack": {"regex": "("}}, "to": ["prod-slak"], "template": "nope"},
            {"match": {"status": {"oops": 1}}, "to": ["ok"]},
        ]))
        .unwrap();
        let errs = compile(&cfgs, &[], |d| d == "ok", |t| t == "default").unwrap_err();
        let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        for want in [
            "routes[0].match.stak: unknown field",
            "routes[0].match.stack.regex: invalid regex",
            "routes[0].to[0]: unknown destination \"prod-slak\"",
            "routes[0].template: no template named \"nope\"",
            "routes[1].match.status: expected a string, a list",
        ] {
            assert!(
                lines.iter().any(|l| l.starts_with(want)),
                "{want} not in {lines:#?}"
            );
        }
    }

    #[test]
    fn a_route_on_a_source_that_is_not_configured_is_an_error() {
        let cfgs: Vec<RouteConfig> = serde_json::from_value(json!([
            {"match": {"source": "c66"}, "to": ["a"]},
            {"match": {"source": ["sb", "simplebackup"]}, "to": ["a"]},
            {"match": {"source": {"regex": "^s"}}, "to": ["a"]},
        ]))
        .unwrap();
        let errs = compile(&cfgs, &["c66", "simplebackups"], |_| true, |_| true).unwrap_err();
        let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].starts_with("routes[1].match.source: source is never \"sb\", so this can never match; source is one of c66, simplebackups"), "{lines:#?}");
        assert!(lines[1].contains("source is never \"simplebackup\", so this can never match; did you mean simplebackups?"), "{lines:#?}");
    }

    #[test]
    fn values_a_field_never_takes_are_errors_with_a_suggestion() {
        let cfgs: Vec<RouteConfig> = serde_json::from_value(json!([
            {"match": {"status": "failed"}, "to": ["a"]},
            {"match": {"severity": ["critical", "crit"]}, "to": ["a"]},
            {"match": {"provider": {"not": "cloud-66"}, "status": ["failure", "missing"]}, "to": ["a"]},
            {"match": {"status": "xyzzy", "stack": "failed", "severity": {"regex": "^crit"}}, "to": ["a"]},
        ]))
        .unwrap();
        let errs = compile(&cfgs, &[], |_| true, |_| true).unwrap_err();
        let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[0].starts_with("routes[0].match.status: status is never \"failed\", so this can never match; did you mean failure? status is one of success, failure, partial, missing, unknown, recovered"), "{lines:#?}");
        assert!(
            lines[1].starts_with("routes[1].match.severity: severity is never \"crit\""),
            "{lines:#?}"
        );
        assert!(lines[1].contains("did you mean critical?"), "{lines:#?}");
        assert!(
            lines[2].starts_with("routes[2].match.provider: provider is never \"cloud-66\""),
            "{lines:#?}"
        );
        assert!(lines[2].contains("did you mean cloud66?"), "{lines:#?}");
        assert!(
            lines[3].starts_with("routes[3].match.status: status is never \"xyzzy\""),
            "{lines:#?}"
        );
        assert!(!lines[3].contains("did you mean"), "{lines:#?}");
    }

    #[test]
    fn suggestions() {
        let st = Status::NAMES;
        assert_eq!(suggest("failed", st), Some("failure"));
        assert_eq!(suggest("FAIL", st), Some("failure"));
        assert_eq!(suggest("sucess", st), Some("success"));
        assert_eq!(suggest("missed", st), Some("missing"));
        assert_eq!(suggest("partial_success", st), Some("partial"));
        assert_eq!(suggest("ok", st), None);
        assert_eq!(suggest("warn", SEVERITIES), Some("warning"));
        assert_eq!(
            suggest("simplebackup", crate::config::SourceKind::NAMES),
            Some("simplebackups")
        );
        assert_eq!(suggest("", st), None);
    }

    #[test]
    fn the_walk_stops_at_a_matching_route_without_continue() {
        let r = routes(json!([
            {"match": {"status": "success"}, "to": ["a"]},
            {"match": {"status": "failure"}, "to": ["b"], "continue": true},
            {"match": {"status": "failure"}, "to": ["c"]},
            {"match": {"status": "failure"}, "to": ["d"]},
        ]));
        let e = Event {
            status: Status::Failure,
            ..Default::default()
        };
        assert_eq!(walk(&r, &e), [1, 2]);
        assert_eq!(dests(&plan(&r, &e, |_| true).1), ["b", "c"]);
    }
}
