//! Loading: the file, `HOOKRELAY__…` overrides and `${VAR}` expansion into one tree,
//! then each section parsed on its own so every error is reported with its key.

use super::*;

/// Reads `path` (YAML), applies `HOOKRELAY__…` overrides from the process
/// environment, expands `${VAR}` and parses everything, collecting every error.
pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    load_with_env(path, &env)
}

/// [`load`] with an explicit environment (tests use this instead of `set_var`).
pub fn load_with_env(
    path: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Settings, ConfigErrors> {
    let (settings, errors) = load_partial(path, env)?;
    if errors.is_empty() {
        Ok(settings)
    } else {
        Err(ConfigErrors {
            file: path.display().to_string(),
            errors,
        })
    }
}

/// Everything that could be read from `path`, and every error found on the way.
/// The settings are partial when there are errors (a destination that does not
/// parse is left out and named in `invalid_destinations`), so the later checks
/// (routes, templates) can still run and report theirs in the same pass.
/// `Err` only when the file cannot be read or is not YAML at all.
pub fn load_partial(
    path: &Path,
    env: &BTreeMap<String, String>,
) -> Result<(Settings, Vec<ConfigError>), ConfigErrors> {
    let file = path.display().to_string();
    let fail = |errors: Vec<ConfigError>| ConfigErrors {
        file: file.clone(),
        errors,
    };
    if !path.exists() {
        return Err(fail(vec![ConfigError::new("", "file not found")]));
    }
    if path.is_dir() {
        return Err(fail(vec![ConfigError::new(
            "",
            "is a folder; name the config file in it (e.g. -c FOLDER/relay.yaml)",
        )]));
    }
    let overrides = config::Environment::with_prefix("HOOKRELAY")
        .prefix_separator("__")
        .separator("__")
        .source(Some(
            env.iter()
                .filter(|(k, _)| k.starts_with("HOOKRELAY__"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ));
    let built = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Yaml))
        .add_source(overrides)
        .build()
        .map_err(|e| fail(vec![ConfigError::new("", clean_config_error(&e))]))?;
    let mut tree: Value = built
        .try_deserialize()
        .map_err(|e| fail(vec![ConfigError::new("", clean_config_error(&e))]))?;
    let mut errors = Vec::new();
    expand_tree(&mut tree, "", env, &mut errors);
    // A value whose `${VAR}` could not be expanded is reported once, as that: not
    // again as, say, "is not a valid URL" for the unexpanded text.
    let unexpanded: BTreeSet<String> = errors.iter().map(|e| e.place.clone()).collect();
    let first = errors.len();
    let mut settings = parse_tree(tree, path, &mut errors);
    let later = errors.split_off(first);
    errors.extend(later.into_iter().filter(|e| !unexpanded.contains(&e.place)));
    resolve_paths(&mut settings);
    name_overrides(&mut errors, env);
    Ok((settings, errors))
}

/// An error at a key an environment override set names the variable too: the
/// file may not even hold that key.
fn name_overrides(errors: &mut [ConfigError], env: &BTreeMap<String, String>) {
    let overrides: Vec<(String, &str)> = env
        .keys()
        .filter_map(|k| {
            let path = k.strip_prefix("HOOKRELAY__")?;
            Some((path.to_lowercase().replace("__", "."), k.as_str()))
        })
        .collect();
    for e in errors.iter_mut() {
        let set_by = overrides.iter().find(|(place, _)| {
            e.place == *place
                || e.place
                    .strip_prefix(place.as_str())
                    .is_some_and(|rest| rest.starts_with(['.', '[']))
        });
        if let Some((_, var)) = set_by {
            e.message = format!("{} (set by the environment variable {var})", e.message);
        }
    }
}

pub(super) fn clean_config_error(e: &config::ConfigError) -> String {
    // The config crate already names the file for YAML syntax errors; keep its text
    // but never its Debug form, and name the file once where it names it twice
    // ("expected a map in relay.yaml in relay.yaml" for a file of only `---`).
    let text = e.to_string();
    // A key given twice comes in the YAML parser's Debug form:
    // `String("out"): duplicated key in mapping at byte 100 line 5 column 24 in f`.
    static DUPLICATE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"^(?:String|Integer|Real|Boolean)\("?(.*?)"?\): duplicated key in mapping at byte \d+ (line \d+ column \d+)( in .*)?$"#,
        )
        .expect("a valid regex")
    });
    if let Some(c) = DUPLICATE.captures(&text) {
        return format!(
            "the key {:?} is given twice in one mapping, at {}{} (each key may appear once: \
             keep one, or give the second another name)",
            &c[1],
            &c[2],
            c.get(3).map_or("", |m| m.as_str()),
        );
    }
    if let Some(at) = text.rfind(" in ") {
        if text[..at].ends_with(&text[at..]) {
            return text[..at].to_string();
        }
    }
    text
}

pub(super) const TOP_KEYS: &[&str] = &[
    "server",
    "storage",
    "templates",
    "admin",
    "delivery",
    "sources",
    "destinations",
    "routes",
    "watch",
    "digest",
];

pub(super) fn parse_tree(tree: Value, path: &Path, errors: &mut Vec<ConfigError>) -> Settings {
    let mut s = Settings {
        file: path.to_path_buf(),
        ..Default::default()
    };
    let mut top = match tree {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        _ => {
            errors.push(ConfigError::new("", "expected a mapping at the top level"));
            return s;
        }
    };
    let nothing_set = top.is_empty();
    for key in top.keys() {
        if !TOP_KEYS.contains(&key.as_str()) {
            errors.push(ConfigError::new(
                key.clone(),
                format!("unknown key; expected one of {}", TOP_KEYS.join(", ")),
            ));
        }
    }
    if let Some(v) = top.remove("server") {
        if let Some(x) = parse_at::<ServerSettings>("server", v, errors) {
            if let Err(why) = check_listen(&x.listen) {
                errors.push(ConfigError::new("server.listen", why));
            }
            s.server = x;
        }
    }
    if let Some(v) = top.remove("storage") {
        if let Some(x) = parse_at("storage", v, errors) {
            s.storage = x;
        }
    }
    if let Some(v) = top.remove("templates") {
        if let Some(x) = parse_at("templates", v, errors) {
            s.templates = x;
        }
    }
    if let Some(v) = top.remove("admin") {
        if let Some(x) = parse_at("admin", v, errors) {
            s.admin = x;
        }
    }
    if let Some(v) = top.remove("delivery") {
        if let Some(x) = parse_at::<DeliverySettings>("delivery", v, errors) {
            if x.retry_schedule.is_empty() {
                errors.push(ConfigError::new(
                    "delivery.retry_schedule",
                    "must list at least one duration",
                ));
            }
            if x.workers == 0 {
                errors.push(ConfigError::new("delivery.workers", "must be at least 1"));
            }
            s.delivery = x;
        }
    }
    let before = errors.len();
    let sources = match top.remove("sources") {
        Some(v) => mapping_at("sources", v, errors),
        None => Vec::new(),
    };
    // No source at all (an empty file, one of only comments, `sources: {}`):
    // every webhook would be refused as an unknown source, so the relay would
    // relay nothing. Not said again when `sources` is not a mapping.
    if sources.is_empty() && errors.len() == before {
        errors.push(ConfigError::new("sources", no_sources(nothing_set)));
    }
    for (name, item) in sources {
        let place = format!("sources.{name}");
        if let Some(src) = parse_at::<SourceConfig>(&place, item, errors) {
            check_source(&place, &src, errors);
            s.sources.insert(name, src);
        }
    }
    if let Some(v) = top.remove("destinations") {
        for (name, item) in mapping_at("destinations", v, errors) {
            let place = format!("destinations.{name}");
            match crate::destinations::parse_config(&place, item, errors) {
                Some(d) => {
                    s.destinations.insert(name, d);
                }
                None => {
                    s.invalid_destinations.insert(name);
                }
            }
        }
    }
    match top.remove("routes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                let place = format!("routes[{i}]");
                let lenient = lenient_route(&item);
                // A route that does not parse is kept from its readable parts, so
                // its destinations and template are still checked and the routes
                // after it keep their numbers.
                s.routes
                    .push(parse_at::<RouteConfig>(&place, item, errors).unwrap_or(lenient));
            }
        }
        Some(_) => errors.push(ConfigError::new("routes", "expected a list of routes")),
    }
    if let Some(v) = top.remove("watch") {
        if let Some(x) = parse_at("watch", v, errors) {
            s.watch = x;
        }
    }
    match top.remove("digest") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                if let Some(d) = parse_at::<DigestConfig>(&format!("digest[{i}]"), item, errors) {
                    s.digest.push(d);
                }
            }
        }
        Some(_) => errors.push(ConfigError::new(
            "digest",
            "expected a list, e.g. - { cron: \"0 8 * * *\", to: [ops-slack] }",
        )),
    }
    s
}

/// Why a config without sources is refused, and what to write instead.
fn no_sources(nothing_set: bool) -> String {
    let what = if nothing_set {
        "nothing is configured (the file is empty or only comments, and no HOOKRELAY__ variable sets a key)"
    } else {
        "no source is configured (in the file or by a HOOKRELAY__SOURCES__… variable)"
    };
    format!(
        "{what}, so hookrelay would refuse every webhook (404 unknown source); \
         add at least one, e.g. sources: {{ c66: {{ kind: cloud66, token: \"${{C66_TOKEN}}\" }} }}"
    )
}

/// The parts of a route that have the right shape, for a route that as a whole
/// does not parse (its errors are already reported).
pub(super) fn lenient_route(v: &Value) -> RouteConfig {
    let get = |k: &str| v.get(k);
    let text = |k: &str| get(k).and_then(Value::as_str).map(str::to_string);
    RouteConfig {
        matches: get("match").and_then(Value::as_object).cloned(),
        to: match get("to") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            // Not reported again as "needs at least one destination".
            _ => Vec::new(),
        },
        template: text("template"),
        channel: text("channel"),
        continue_: false,
        group: None,
    }
}

pub(super) fn mapping_at(
    place: &str,
    v: Value,
    errors: &mut Vec<ConfigError>,
) -> Vec<(String, Value)> {
    match v {
        Value::Object(m) => m.into_iter().collect(),
        Value::Null => Vec::new(),
        _ => {
            errors.push(ConfigError::new(place, "expected a mapping of names"));
            Vec::new()
        }
    }
}

/// Deserializes `v` as `T`, naming the exact key of any error below `place`.
pub(crate) fn parse_at<T: DeserializeOwned>(
    place: &str,
    v: Value,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    // A bare `key:` in YAML is null; treat it as an empty mapping so defaults apply.
    let v = if v.is_null() {
        Value::Object(Map::new())
    } else {
        v
    };
    match serde_path_to_error::deserialize::<_, T>(v) {
        Ok(x) => Some(x),
        Err(e) => {
            let inner = e.path().to_string();
            let at = if inner == "." || inner.is_empty() {
                place.to_string()
            } else {
                format!("{place}.{inner}")
            };
            errors.push(ConfigError::new(
                at,
                tidy_serde_message(&e.into_inner().to_string()),
            ));
            None
        }
    }
}

/// serde's messages end with " at line 0 column 0" for `Value` input; drop that.
pub(super) fn tidy_serde_message(msg: &str) -> String {
    let msg = match msg.find(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    msg.replace("unknown field", "unknown key")
}

pub(super) fn check_source(place: &str, s: &SourceConfig, errors: &mut Vec<ConfigError>) {
    if s.secret.is_some() && s.kind != SourceKind::Simplebackups {
        errors.push(ConfigError::new(
            format!("{place}.secret"),
            "only for kind simplebackups (SB-Signature); use `hmac` for other signatures",
        ));
    }
    if !s.fields.is_empty() && s.kind != SourceKind::Generic {
        errors.push(ConfigError::new(
            format!("{place}.fields"),
            "only for kind generic",
        ));
    }
    for (field, pointer) in &s.fields {
        if !crate::providers::GENERIC_FIELDS.contains(&field.as_str()) {
            errors.push(ConfigError::new(
                format!("{place}.fields.{field}"),
                format!(
                    "unknown field; expected one of {}",
                    crate::providers::GENERIC_FIELDS.join(", ")
                ),
            ));
        }
        if !pointer.is_empty() && !pointer.starts_with('/') {
            errors.push(ConfigError::new(
                format!("{place}.fields.{field}"),
                format!("{pointer:?} is not a JSON Pointer (it must start with /)"),
            ));
        }
    }
    for (key, list) in [("token", &s.token), ("secret", &s.secret)] {
        if let Some(list) = list {
            if list
                .clone()
                .into_vec()
                .iter()
                .any(|x| x.expose().is_empty())
            {
                errors.push(ConfigError::new(
                    format!("{place}.{key}"),
                    "must not be empty",
                ));
            }
        }
    }
    if let Some(h) = &s.hmac {
        if h.secret
            .clone()
            .into_vec()
            .iter()
            .any(|x| x.expose().is_empty())
        {
            errors.push(ConfigError::new(
                format!("{place}.hmac.secret"),
                "must not be empty",
            ));
        }
        if actix_web::http::header::HeaderName::try_from(h.header.as_str()).is_err() {
            errors.push(ConfigError::new(
                format!("{place}.hmac.header"),
                format!("{:?} is not a valid header name", h.header),
            ));
        }
    }
}

/// `host:port` (an IPv6 address in brackets), as `serve` binds it: caught by
/// `check` rather than when the server starts.
fn check_listen(listen: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "{why} in {listen:?}; expected host:port, e.g. 0.0.0.0:8080 or [::]:8080"
        ))
    };
    let Some((host, port)) = listen.rsplit_once(':') else {
        return bad("no port");
    };
    if host.is_empty() {
        return bad("no host");
    }
    if port.parse::<u16>().is_err() {
        return bad("not a port number");
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return bad("an IPv6 address needs brackets");
    }
    Ok(())
}
