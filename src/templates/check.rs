//! Load-time name checks: every variable a template reads must be a known field or
//! under `raw.`, and every helper must exist.

use super::*;

/// Walks the parsed template and reports every unknown field and unknown helper,
/// each at `place:line`. This is stricter than Handlebars' strict mode, which does
/// not look inside `{{#if x}}` or helper arguments and stops at the first miss.
pub(super) fn check_names(template: &Template, place: &str, names: Names) -> Vec<ConfigError> {
    let mut found = Found {
        items: Vec::new(),
        names,
        outer: None,
    };
    walk(template, 0, 1, &mut found);
    let mut seen = BTreeSet::new();
    found
        .items
        .into_iter()
        .filter(|f| seen.insert(f.clone()))
        .map(|(line, msg)| ConfigError::new(format!("{place}:{line}"), msg))
        .collect()
}

/// Which names a template may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Names {
    /// An event's (or a group's) message: the fields of §4, `delivery_id`,
    /// `count` and `events`.
    Event,
    /// A digest (templates named `digest…`): the digest's own fields.
    Digest,
    /// One event of a group's `events`, inside `{{#each events}}`: the fields
    /// of §4.
    GroupEvent,
    /// One backup of a digest's lists, inside `{{#each attention}}` (or
    /// `recovered`, `subjects`): an item of `/api/backups`.
    DigestItem,
}

impl Names {
    /// The names this kind of template reads at the top level, and whether each
    /// holds more inside (a list or an object).
    fn known(self) -> Vec<(&'static str, bool)> {
        match self {
            Names::Event => FIELDS
                .iter()
                .chain(DELIVERY_FIELDS)
                .map(|f| (*f, false))
                .chain(crate::group::GROUP_FIELDS.iter().map(|f| (*f, true)))
                .chain(std::iter::once(("raw", true)))
                .collect(),
            Names::Digest => crate::digest::FIELDS
                .iter()
                .map(|(f, inside)| (*f, *inside))
                .chain(DELIVERY_FIELDS.iter().map(|f| (*f, false)))
                .collect(),
            Names::GroupEvent => FIELDS
                .iter()
                .map(|f| (*f, false))
                .chain(std::iter::once(("raw", true)))
                .collect(),
            Names::DigestItem => crate::watch::SUBJECT_JSON_FIELDS
                .iter()
                .map(|f| (*f, false))
                .collect(),
        }
    }
}

/// What the walk found wrong, and which names it checks against.
pub(super) struct Found {
    items: Vec<(usize, String)>,
    names: Names,
    /// Inside `{{#each events}}`: the names of the message around it, which
    /// `@root.` and `../` read.
    outer: Option<Names>,
}

impl Found {
    fn push(&mut self, item: (usize, String)) {
        self.items.push(item);
    }
}

/// `depth` counts the `#each` / `#with` blocks around: inside them names are
/// relative to a part of the payload we cannot know, so they are not checked.
pub(super) fn walk(template: &Template, depth: usize, parent_line: usize, found: &mut Found) {
    for (i, el) in template.elements.iter().enumerate() {
        let line = template.mapping.get(i).map_or(parent_line, |m| m.0);
        match el {
            TemplateElement::Expression(ht) | TemplateElement::HtmlExpression(ht) => {
                check_call(
                    &ht.name,
                    &ht.params,
                    ht.hash.values(),
                    false,
                    depth,
                    line,
                    found,
                );
            }
            TemplateElement::HelperBlock(ht) => {
                check_call(
                    &ht.name,
                    &ht.params,
                    ht.hash.values(),
                    true,
                    depth,
                    line,
                    found,
                );
                let scoped = matches!(ht.name.as_name(), Some("each" | "with"));
                // `{{#each events as |e|}}` names its items `e`: not checked.
                let items = if depth == 0 && ht.block_param.is_none() {
                    each_items(ht.name.as_name(), &ht.params, found)
                } else {
                    None
                };
                match (&ht.template, items) {
                    // A group's events and a digest's backups: their names are known.
                    (Some(t), Some(items)) => {
                        let outer = std::mem::replace(&mut found.names, items);
                        found.outer = Some(outer);
                        walk(t, 0, line, found);
                        found.names = outer;
                        found.outer = None;
                    }
                    (Some(t), None) => walk(t, depth + usize::from(scoped), line, found),
                    (None, _) => {}
                }
                if let Some(t) = &ht.inverse {
                    walk(t, depth, line, found);
                }
            }
            TemplateElement::DecoratorExpression(dt)
            | TemplateElement::DecoratorBlock(dt)
            | TemplateElement::PartialExpression(dt)
            | TemplateElement::PartialBlock(dt) => {
                // `{{#*inline "x"}}…{{/inline}}` and `{{> x}}`: the name is not a
                // variable; the arguments and the body are checked.
                for p in dt.params.iter().chain(dt.hash.values()) {
                    check_param(p, depth, line, found);
                }
                // A digest's partials render one backup of its lists (`{{#each
                // attention}}{{> line}}{{/each}}`): names inside are the backup's.
                let scoped = found.names == Names::Digest;
                if let Some(t) = &dt.template {
                    walk(t, depth + usize::from(scoped), line, found);
                }
            }
            _ => {}
        }
    }
}

/// The names of each item of `{{#each events}}` in an event's message (a group's
/// members) and of `{{#each attention}}`, `recovered` or `subjects` in a digest.
fn each_items(name: Option<&str>, params: &[Parameter], found: &Found) -> Option<Names> {
    if found.outer.is_some() || name != Some("each") || params.len() != 1 {
        return None;
    }
    let p = params[0].as_name()?.trim();
    let p = p.strip_prefix("@root").unwrap_or(p);
    let p = p.trim_start_matches(['.', '/']);
    let list = p
        .strip_prefix("this")
        .unwrap_or(p)
        .trim_start_matches(['.', '/']);
    match (found.names, list) {
        (Names::Event, "events") => Some(Names::GroupEvent),
        (Names::Digest, "attention" | "recovered" | "subjects") => Some(Names::DigestItem),
        _ => None,
    }
}

pub(super) fn is_helper(name: &str) -> bool {
    HELPERS.contains(&name) || BUILTIN_HELPERS.contains(&name)
}

pub(super) fn check_call<'a>(
    name: &Parameter,
    params: &[Parameter],
    hash: impl Iterator<Item = &'a Parameter>,
    block: bool,
    depth: usize,
    line: usize,
    found: &mut Found,
) {
    let mut has_hash = false;
    for p in hash {
        has_hash = true;
        check_param(p, depth, line, found);
    }
    match name {
        Parameter::Name(_) | Parameter::Path(_) => {
            let n = name.as_name().unwrap_or_default();
            if n == "date" {
                check_date_format(params.get(1), line, found);
            }
            if !is_helper(n) {
                if block || !params.is_empty() || has_hash {
                    found.push((line, format!("unknown helper \"{n}\"")));
                } else {
                    check_path(n, depth, line, found);
                }
            }
        }
        Parameter::Subexpression(s) => check_subexpression(s.as_element(), depth, line, found),
        _ => {}
    }
    for p in params {
        check_param(p, depth, line, found);
    }
}

/// `{{date x "%d.%m.%Y"}}`: a format chrono cannot read renders the time
/// unformatted, so it is reported at load instead.
fn check_date_format(fmt: Option<&Parameter>, line: usize, found: &mut Found) {
    let Some(Parameter::Literal(Value::String(fmt))) = fmt else {
        return;
    };
    let bad =
        chrono::format::StrftimeItems::new(fmt).any(|i| matches!(i, chrono::format::Item::Error));
    if bad {
        found.push((
            line,
            format!(
                "date format {fmt:?} is not a strftime format chrono can read (e.g. \"%Y-%m-%d %H:%M UTC\")"
            ),
        ));
    }
}

pub(super) fn check_subexpression(
    el: &TemplateElement,
    depth: usize,
    line: usize,
    found: &mut Found,
) {
    if let TemplateElement::Expression(ht) | TemplateElement::HtmlExpression(ht) = el {
        check_call(
            &ht.name,
            &ht.params,
            ht.hash.values(),
            false,
            depth,
            line,
            found,
        );
    }
}

pub(super) fn check_param(p: &Parameter, depth: usize, line: usize, found: &mut Found) {
    match p {
        Parameter::Name(_) | Parameter::Path(_) => {
            check_path(p.as_name().unwrap_or_default(), depth, line, found)
        }
        Parameter::Subexpression(s) => check_subexpression(s.as_element(), depth, line, found),
        _ => {}
    }
}

/// Checks one variable path such as `stack`, `raw.stack.name`, `@root.stack`,
/// `../stack` or `this`.
pub(super) fn check_path(raw_path: &str, depth: usize, line: usize, found: &mut Found) {
    let mut s = raw_path.trim();
    let mut depth = depth;
    // Inside `{{#each events}}`, at `outer_at` levels up is the message around.
    let mut outer_at = found.outer.map(|_| depth + 1);
    if let Some(rest) = s.strip_prefix("@root") {
        s = rest.trim_start_matches(['.', '/']);
        depth = 0;
        outer_at = outer_at.map(|_| 0);
    } else if s.starts_with('@') {
        return; // @index, @key, @first, @last
    }
    while let Some(rest) = s.strip_prefix("../") {
        s = rest;
        depth = depth.saturating_sub(1);
        outer_at = outer_at.map(|n| n.saturating_sub(1));
    }
    if let (Some(0), Some(outer)) = (outer_at, found.outer) {
        // Checked against the message's names, as if outside the block.
        let inner = std::mem::replace(&mut found.names, outer);
        found.outer = None;
        check_path(s, 0, line, found);
        found.outer = Some(outer);
        found.names = inner;
        return;
    }
    if depth > 0 {
        return;
    }
    for prefix in ["this.", "this/", "./"] {
        if let Some(rest) = s.strip_prefix(prefix) {
            s = rest;
        }
    }
    if s.is_empty() || s == "this" || s == "." {
        return;
    }
    let (first, rest) = if let Some(inner) = s.strip_prefix('[') {
        match inner.split_once(']') {
            Some((f, r)) => (f, r),
            None => (inner, ""),
        }
    } else {
        match s.find(['.', '/', '[']) {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        }
    };
    let rest = rest.trim_start_matches(['.', '/']);
    let known = found.names.known();
    if let Some((_, inside)) = known.iter().find(|(f, _)| *f == first) {
        if !rest.is_empty() && !inside {
            let hint = if matches!(found.names, Names::Event | Names::GroupEvent) {
                " (the payload is under raw.)"
            } else {
                ""
            };
            found.push((
                line,
                format!("field \"{first}\" is a plain value with no \"{rest}\" inside{hint}"),
            ));
        }
        return;
    }
    let message = match suggest(first, &known) {
        Some(known) => format!("unknown field \"{first}\" (did you mean \"{known}\"?)"),
        None if found.names == Names::Digest => format!(
            "unknown field \"{first}\" (a digest template, named digest…, knows: {})",
            known.iter().map(|(f, _)| *f).collect::<Vec<_>>().join(", ")
        ),
        None if found.names == Names::GroupEvent => format!(
            "unknown field \"{first}\" (an event of a group's events has the fields: {}; the provider's payload is under raw.)",
            FIELDS.join(", ")
        ),
        None if found.names == Names::DigestItem => format!(
            "unknown field \"{first}\" (a backup of a digest's list has the fields: {})",
            crate::watch::SUBJECT_JSON_FIELDS.join(", ")
        ),
        None => format!(
            "unknown field \"{first}\" (known fields: {}, {}; in a group's message also {}; the provider's payload is under raw.)",
            FIELDS.join(", "),
            DELIVERY_FIELDS.join(", "),
            crate::group::GROUP_FIELDS.join(", ")
        ),
    };
    found.push((line, message));
}

/// The known field closest to a misspelling, if it is close.
pub(super) fn suggest(name: &str, known: &[(&'static str, bool)]) -> Option<&'static str> {
    known
        .iter()
        .map(|(f, _)| f)
        .map(|f| (edit_distance(name, f), *f))
        .filter(|(d, f)| *d <= 2 && *d < f.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, f)| f)
}

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
