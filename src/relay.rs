//! The loaded relay: settings turned into what the server runs — sources with
//! their verifiers, destinations built, routes compiled, templates loaded. Built
//! once at start and again on every reload; `check`, `render` and `send` use the
//! same code, so what `check` accepts is exactly what `serve` runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::auth::Verifier;
use crate::config::{self, ConfigError, ConfigErrors, DestinationConfig, Settings, SourceConfig};
use crate::destinations::{self, Destination, Message, Request};
use crate::event::Event;
use crate::routing::{self, Route};
use crate::store::{GroupJoin, NewDelivery};
use crate::templates::Templates;
use crate::watch::Watch;

pub struct Source {
    pub cfg: SourceConfig,
    pub verifier: Verifier,
}

pub struct Dest {
    pub cfg: DestinationConfig,
    pub sender: Arc<dyn Destination>,
}

impl Dest {
    pub fn type_name(&self) -> &'static str {
        self.cfg.kind.type_name()
    }
}

pub struct Relay {
    pub settings: Settings,
    pub sources: BTreeMap<String, Source>,
    pub destinations: BTreeMap<String, Dest>,
    pub routes: Vec<Route>,
    pub templates: Templates,
    pub watch: Watch,
    pub digests: Vec<crate::digest::Digest>,
}

fn subject_key(dest: &str) -> String {
    format!("dest:{dest}:subject")
}
fn dest_channel_key(dest: &str) -> String {
    format!("dest:{dest}:channel")
}
fn route_channel_key(i: usize) -> String {
    format!("route:{i}:channel")
}

impl Relay {
    /// Reads the config file and builds the relay from it, reporting every error
    /// of every section at once: those of the file (keys, `${VAR}`, sources,
    /// destinations) and those found building (routes, templates), even when the
    /// file already had some.
    pub fn load(
        path: &Path,
        env: &BTreeMap<String, String>,
        http: &crate::destinations::Http,
    ) -> Result<Relay, ConfigErrors> {
        let (settings, mut errors) = config::load_partial(path, env)?;
        let built = Relay::build(settings, http);
        match built {
            Ok(relay) if errors.is_empty() => return Ok(relay),
            Ok(_) => {}
            Err(e) => errors.extend(e.errors),
        }
        Err(ConfigErrors {
            file: path.display().to_string(),
            errors,
        })
    }

    /// Validates everything the settings name and builds the relay, or returns
    /// every error found.
    pub fn build(
        settings: Settings,
        http: &crate::destinations::Http,
    ) -> Result<Relay, ConfigErrors> {
        let mut errors = Vec::new();
        let mut templates = match Templates::load(&settings.templates.dir) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.extend(e);
                None
            }
        };
        let mut destinations = BTreeMap::new();
        for (name, cfg) in &settings.destinations {
            if let Some(t) = templates.as_mut() {
                let inline = [
                    (subject_key(name), cfg.kind.subject()),
                    (dest_channel_key(name), cfg.kind.channel()),
                ];
                for (key, template) in inline {
                    if let Some((config_key, text)) = template {
                        let place = format!("destinations.{name}.{config_key}");
                        if let Err(err) = t.add_inline(&key, text, &place) {
                            errors.push(err);
                        }
                    }
                }
            }
            destinations.insert(
                name.clone(),
                Dest {
                    cfg: cfg.clone(),
                    sender: destinations::build(cfg, http),
                },
            );
        }
        for (i, r) in settings.routes.iter().enumerate() {
            if let (Some(ch), Some(t)) = (&r.channel, templates.as_mut()) {
                let place = format!("routes[{i}].channel");
                if let Err(err) = t.add_inline(&route_channel_key(i), ch, &place) {
                    errors.push(err);
                }
                for (j, d) in r.to.iter().enumerate() {
                    if let Some(dest) = settings.destinations.get(d) {
                        if !dest.kind.takes_channel() {
                            errors.push(ConfigError::new(
                                format!("routes[{i}].to[{j}]"),
                                format!("{d:?} does not take `channel`: only Slack (with a bot token) and Mattermost destinations do"),
                            ));
                        }
                    }
                }
            }
        }
        let source_names: Vec<&str> = settings.sources.keys().map(String::as_str).collect();
        let routes = match routing::compile(
            &settings.routes,
            &source_names,
            |d| settings.destinations.contains_key(d) || settings.invalid_destinations.contains(d),
            |t| templates.as_ref().is_none_or(|x| x.has_name(t)),
        ) {
            Ok(r) => r,
            Err(e) => {
                errors.extend(e);
                Vec::new()
            }
        };
        if let Some(t) = templates.as_ref() {
            errors.extend(check_requests(t, &destinations, &routes));
        }
        let kinds = settings
            .sources
            .iter()
            .map(|(name, s)| {
                let fields = crate::watch::SourceFields::new(s.kind, s.fields.keys().cloned());
                (name.clone(), fields)
            })
            .collect();
        let watch = match Watch::compile(&settings.watch, &kinds) {
            Ok(w) => w,
            Err(e) => {
                errors.extend(e);
                Watch::default()
            }
        };
        let digests = match crate::digest::compile(
            &settings.digest,
            |d| settings.destinations.get(d).map(|x| x.kind.type_name()),
            |d| settings.invalid_destinations.contains(d),
            |t, ty| templates.as_ref().is_none_or(|x| x.has_body(t, ty)),
        ) {
            Ok(d) => d,
            Err(e) => {
                errors.extend(e);
                Vec::new()
            }
        };
        if let Some(t) = templates.as_ref() {
            errors.extend(check_digest_requests(t, &destinations, &digests));
        }
        let sources = settings
            .sources
            .iter()
            .map(|(name, cfg)| {
                (
                    name.clone(),
                    Source {
                        cfg: cfg.clone(),
                        verifier: Verifier::new(cfg),
                    },
                )
            })
            .collect();
        match templates {
            Some(templates) if errors.is_empty() => Ok(Relay {
                settings,
                sources,
                destinations,
                routes,
                templates,
                watch,
                digests,
            }),
            _ => Err(ConfigErrors {
                file: settings.file.display().to_string(),
                errors,
            }),
        }
    }

    fn enabled(&self, dest: &str) -> bool {
        self.destinations
            .get(dest)
            .is_some_and(|d| d.cfg.common.enabled)
    }

    /// The deliveries this event should get: (routed, deliveries). Slack bot
    /// channels are rendered here so a queued delivery keeps its channel.
    pub fn plan(&self, e: &Event) -> (bool, Vec<NewDelivery>) {
        let (routed, planned) = routing::plan(&self.routes, e, |d| self.enabled(d));
        (routed, self.deliveries(planned.iter(), e))
    }

    fn deliveries<'a>(
        &self,
        planned: impl Iterator<Item = &'a routing::Planned> + Clone,
        e: &Event,
    ) -> Vec<NewDelivery> {
        // Only channels are rendered here; skip building the context (a copy of the
        // whole payload) on the ingest path when no destination takes one.
        let needs_ctx = planned.clone().any(|p| {
            self.destinations
                .get(&p.destination)
                .is_some_and(|d| d.cfg.kind.takes_channel())
        });
        let ctx = if needs_ctx {
            e.template_context()
        } else {
            serde_json::Value::Null
        };
        planned
            .map(|p| {
                let channel = self.channel_for(&p.destination, p.route, &ctx);
                NewDelivery {
                    destination: p.destination.clone(),
                    template: p.template.clone(),
                    channel,
                }
            })
            .collect()
    }

    /// [`plan`](Self::plan) with grouping (SPEC §10): the deliveries of routes
    /// with `group` become group joins, held until the group is due, except to
    /// PagerDuty, which keeps one incident per backup (see `group`). Returns
    /// (routed, deliveries now, groups to join).
    pub fn plan_grouped(&self, e: &Event) -> (bool, Vec<NewDelivery>, Vec<GroupJoin>) {
        let (routed, planned) = routing::plan(&self.routes, e, |d| self.enabled(d));
        let deliveries = self.deliveries(planned.iter(), e);
        if !planned.iter().any(|p| self.routes[p.route].group.is_some()) {
            return (routed, deliveries, Vec::new());
        }
        let mut now = Vec::new();
        let mut held: Vec<(usize, Vec<NewDelivery>)> = Vec::new();
        for (p, d) in planned.iter().zip(deliveries) {
            let groups = self.routes[p.route].group.is_some()
                && self
                    .destinations
                    .get(&d.destination)
                    .is_some_and(|x| x.type_name() != "pagerduty");
            if !groups {
                now.push(d);
            } else if let Some((_, v)) = held.iter_mut().find(|(r, _)| *r == p.route) {
                v.push(d);
            } else {
                held.push((p.route, vec![d]));
            }
        }
        let joins = held
            .into_iter()
            .filter_map(|(route, d)| {
                let rule = self.routes[route].group.as_ref()?;
                Some(rule.join(&self.routes[route].id, e, d))
            })
            .collect();
        (routed, now, joins)
    }

    fn channel_for(&self, dest: &str, route: usize, ctx: &serde_json::Value) -> Option<String> {
        let d = self.destinations.get(dest)?;
        if !d.cfg.kind.takes_channel() {
            return None;
        }
        let configured = d.cfg.kind.channel().map(|(_, c)| c.to_string());
        let key = if self.routes.get(route).is_some_and(|r| r.channel.is_some()) {
            route_channel_key(route)
        } else if configured.is_some() {
            dest_channel_key(dest)
        } else {
            return None;
        };
        match self.templates.render_inline(&key, ctx) {
            Ok(c) if !c.trim().is_empty() => Some(c.trim().to_string()),
            Ok(_) => configured,
            Err(e) => {
                log::warn!("channel for {dest}: {e}; using the configured channel");
                configured
            }
        }
    }

    /// The request of one event's delivery when it needs no template context: a
    /// webhook destination with the embedded default body, written directly
    /// ([`Templates::default_webhook_json`]); `None` for anything else, which
    /// [`prepare`](Self::prepare) renders. `raw_text`: `event.raw` as JSON text
    /// not parsed yet, if so (see [`Templates::default_webhook_json_with`]).
    pub fn prepare_direct(
        &self,
        dest_name: &str,
        template: &str,
        event: &Event,
        raw_text: Option<&str>,
        delivery_id: &str,
    ) -> Option<(Arc<dyn Destination>, Request)> {
        let dest = self.destinations.get(dest_name)?;
        if dest.type_name() != destinations::webhook::KIND.name || !dest.sender.sends_json_as_is() {
            return None;
        }
        let text =
            self.templates
                .default_webhook_json_with(template, event, raw_text, delivery_id)?;
        Some((dest.sender.clone(), Request::JsonText(text)))
    }

    /// Renders the message for one delivery and prepares the exact request.
    pub fn prepare(
        &self,
        dest_name: &str,
        template: &str,
        channel: Option<&str>,
        ctx: serde_json::Value,
    ) -> Result<(Arc<dyn Destination>, Request), String> {
        let dest = self
            .destinations
            .get(dest_name)
            .ok_or_else(|| format!("destination {dest_name:?} is not configured"))?;
        let ctx = handlebars::Context::from(ctx);
        if dest.sender.sends_json_as_is() {
            // The JSON template's text is the body: no tree built from it, copied
            // and serialized again for every delivery.
            let text = self
                .templates
                .render_json_text(template, dest.type_name(), &ctx)
                .map_err(|x| x.to_string())?;
            if let Some(text) = text {
                return Ok((dest.sender.clone(), Request::JsonText(text)));
            }
        }
        let msg = render_message(&self.templates, dest_name, dest, template, channel, &ctx)?;
        let req = dest.sender.prepare_owned(msg).map_err(|x| x.message)?;
        Ok((dest.sender.clone(), req))
    }
}

/// The rendered message of one delivery: body, HTML part and subject.
fn render_message(
    templates: &Templates,
    dest_name: &str,
    dest: &Dest,
    template: &str,
    channel: Option<&str>,
    ctx: &handlebars::Context,
) -> Result<Message, String> {
    let ty = dest.type_name();
    let body = templates
        .render_body_in(template, ty, ctx)
        .map_err(|x| x.to_string())?;
    let html = if destinations::kind(ty).is_some_and(|k| k.html_part) {
        templates
            .render_html_in(template, ty, ctx)
            .map_err(|x| x.to_string())?
    } else {
        None
    };
    let subject = match dest.cfg.kind.subject() {
        Some(_) => Some(
            templates
                .render_inline_in(&subject_key(dest_name), ctx)
                .map_err(|x| x.to_string())?,
        ),
        None => None,
    };
    Ok(Message {
        body,
        html,
        subject,
        channel: channel.map(str::to_string),
    })
}

/// Builds, for every sample event, the request each enabled destination would
/// send with each template a route gives it (`default` when no route names one),
/// so a template the destination cannot send (a text body for PagerDuty, a JSON
/// array for Telegram, a trigger without a summary) is an error at `check` and
/// start-up rather than a dead delivery. Rendering itself was checked when the
/// templates were loaded (with file and line); this names the file, the
/// destination and the sample that failed.
fn check_requests(
    templates: &Templates,
    destinations: &BTreeMap<String, Dest>,
    routes: &[Route],
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let samples = crate::templates::sample_contexts();
    for (name, dest) in destinations {
        if !dest.cfg.common.enabled {
            continue;
        }
        let mut used: Vec<&str> = routes
            .iter()
            .filter(|r| r.to.iter().any(|d| d == name))
            .map(|r| {
                r.template
                    .as_deref()
                    .unwrap_or(crate::templates::DEFAULT_NAME)
            })
            .collect();
        if used.is_empty() {
            used.push(crate::templates::DEFAULT_NAME);
        }
        used.sort_unstable();
        used.dedup();
        let ty = dest.type_name();
        for template in used {
            let failed = samples.iter().find_map(|(what, ctx)| {
                let ctx = handlebars::Context::from(ctx.clone());
                let result = render_message(templates, name, dest, template, None, &ctx)
                    .and_then(|msg| dest.sender.prepare(&msg).map_err(|e| e.message));
                result.err().map(|e| (what, e))
            });
            if let Some((what, e)) = failed {
                let place = templates
                    .body_place(template, ty)
                    .map_or_else(|| format!("destinations.{name}"), str::to_string);
                errors.push(ConfigError::new(
                    place,
                    format!("destination {name:?} ({ty}) cannot send it: {e} (for {what})"),
                ));
            }
        }
    }
    errors
}

/// [`check_requests`] for digests: each `to` destination must be able to send
/// every sample digest with the digest's template.
fn check_digest_requests(
    templates: &Templates,
    destinations: &BTreeMap<String, Dest>,
    digests: &[crate::digest::Digest],
) -> Vec<ConfigError> {
    let samples = crate::digest::sample_contexts();
    let mut errors = Vec::new();
    for d in digests {
        for (j, name) in d.to.iter().enumerate() {
            let Some(dest) = destinations.get(name).filter(|x| x.cfg.common.enabled) else {
                continue;
            };
            let failed = samples.iter().find_map(|(what, ctx)| {
                let ctx = handlebars::Context::from(ctx.clone());
                render_message(templates, name, dest, &d.template, None, &ctx)
                    .and_then(|msg| dest.sender.prepare(&msg).map_err(|e| e.message))
                    .err()
                    .map(|e| (what, e))
            });
            if let Some((what, e)) = failed {
                errors.push(ConfigError::new(
                    format!("digest[{}].to[{j}]", d.index),
                    format!(
                        "destination {name:?} ({}) cannot send the digest: {e} (for {what})",
                        dest.type_name()
                    ),
                ));
            }
        }
    }
    errors
}

/// The id of one delivery, the same on every attempt (and across restarts and
/// replicas): its event's id and its row. Sent as `Hookrelay-Delivery-Id` and
/// seen by templates as `delivery_id`, so a receiver can drop a repeat.
pub fn delivery_id(event_id: &str, delivery: i64) -> String {
    format!("{event_id}-{delivery}")
}

/// Makes `delivery_id` visible to templates (`{{delivery_id}}`).
pub fn set_delivery_id(ctx: &mut serde_json::Value, delivery_id: &str) {
    if let Some(m) = ctx.as_object_mut() {
        m.insert("delivery_id".into(), delivery_id.into());
    }
}

/// The duplicate key: the provider's own event id where it has one, else SHA-256
/// of the raw body.
pub fn dedup_key(e: &Event, body: &[u8]) -> String {
    match &e.id {
        Some(id) => format!("id:{id}"),
        None => format!("sha256:{}", hex::encode(Sha256::digest(body))),
    }
}
