//! Lenient scalars: values from the environment arrive as strings, so numbers,
//! durations and lists also parse from their text.

use super::*;

pub(super) fn de_usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| serde::de::Error::custom(format!("expected a whole number, got {n}"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("expected a whole number, got {s:?}"))),
        other => Err(serde::de::Error::custom(format!(
            "expected a whole number, got {other}"
        ))),
    }
}

pub(crate) fn de_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::Null => Ok(false),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" | "" => Ok(false),
            _ => Err(serde::de::Error::custom(format!(
                "expected true or false, got {s:?}"
            ))),
        },
        other => Err(serde::de::Error::custom(format!(
            "expected true or false, got {other}"
        ))),
    }
}

/// `30s`, `10m`, `2h`, `1h 30m`, `500ms`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    humantime::parse_duration(t)
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 30s, 10m, 2h"))
}

pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => parse_duration(&s).map_err(serde::de::Error::custom),
        Value::Number(n) if n.as_u64().is_some() => {
            Ok(Duration::from_secs(n.as_u64().unwrap_or(0)))
        }
        other => Err(serde::de::Error::custom(format!(
            "expected a duration such as 30s, got {other}"
        ))),
    }
}

pub(super) fn de_durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let items = match Value::deserialize(d)? {
        Value::Array(a) => a,
        // From the environment: "5s,30s,2m".
        Value::String(s) => s
            .split(',')
            .map(|x| Value::String(x.trim().to_string()))
            .collect(),
        other => {
            return Err(serde::de::Error::custom(format!(
                "expected a list of durations, got {other}"
            )))
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => {
                parse_duration(&s).map_err(|m| serde::de::Error::custom(format!("[{i}]: {m}")))
            }
            Value::Number(n) if n.as_u64().is_some() => {
                Ok(Duration::from_secs(n.as_u64().unwrap_or(0)))
            }
            other => Err(serde::de::Error::custom(format!(
                "[{i}]: expected a duration, got {other}"
            ))),
        })
        .collect()
}

pub(crate) fn de_opt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?
        .filter(|s| !s.is_empty())
        .map(Secret))
}

pub(crate) fn de_string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(vec![s]),
        Value::Array(a) => a
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(serde::de::Error::custom(format!(
                    "expected a string, got {other}"
                ))),
            })
            .collect(),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or a list of strings, got {other}"
        ))),
    }
}
