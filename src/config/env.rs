//! `${VAR}` expansion: `${VAR}`, `${VAR:-default}`, `${VAR:+word}` in every string.

use super::*;

/// Expands `${VAR}`, `${VAR:-default}` and `${VAR:+word}` in every string of the
/// tree; `$$` is a literal `$`. An unset variable without a default is an error
/// naming the key, never the value.
pub(super) fn expand_tree(
    v: &mut Value,
    place: &str,
    env: &BTreeMap<String, String>,
    errors: &mut Vec<ConfigError>,
) {
    match v {
        Value::String(s) => match expand(s, env) {
            Ok(x) => *s = x,
            Err(msg) => errors.push(ConfigError::new(place, msg)),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_tree(item, &format!("{place}[{i}]"), env, errors);
            }
        }
        Value::Object(m) => {
            for (k, item) in m.iter_mut() {
                let p = if place.is_empty() {
                    k.clone()
                } else {
                    format!("{place}.{k}")
                };
                expand_tree(item, &p, env, errors);
            }
        }
        _ => {}
    }
}

/// Expands one string; see [`expand_tree`].
pub fn expand(s: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    if !s.contains('$') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unclosed ${ in value".to_string())?;
            let expr = &body[..end];
            out.push_str(&expand_one(expr, env)?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

pub(super) fn expand_one(expr: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let (name, op, word) = if let Some((n, w)) = expr.split_once(":-") {
        (n, Some('-'), w)
    } else if let Some((n, w)) = expr.split_once(":+") {
        (n, Some('+'), w)
    } else {
        (expr, None, "")
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("invalid variable reference ${{{expr}}}"));
    }
    let val = env.get(name).filter(|v| !v.is_empty());
    match (op, val) {
        (None, Some(v)) => Ok(v.clone()),
        (None, None) => Err(format!("environment variable {name} is not set")),
        (Some('-'), Some(v)) => Ok(v.clone()),
        (Some('-'), None) => Ok(word.to_string()),
        (Some(_), Some(_)) => Ok(word.to_string()),
        (Some(_), None) => Ok(String::new()),
    }
}
