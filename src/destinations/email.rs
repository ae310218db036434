//! `type: email`: SMTP via lettre, or a provider's HTTP API (`api:`, see
//! [`api`]). Exactly one transport: `smtp` or `api`.
//!
//! `smtp` is `smtp://[user:pass@]host[:port][?tls=opportunistic|required|none]` or
//! `smtps://[user:pass@]host[:port]`:
//!
//! * `smtp://` (port 587 unless given) upgrades with STARTTLS when the server offers
//!   it and goes on in plain text when it does not (`?tls=opportunistic`, the
//!   default); `?tls=required` refuses to go on without STARTTLS; `?tls=none` never
//!   tries.
//! * `smtps://` (port 465 unless given) speaks TLS from the first byte.
//!
//! User and password are percent-decoded; AUTH is used when they are given.
//! `tls_ca_file` (PEM) adds the CA of an internal mail relay to the public roots
//! for STARTTLS and `smtps://`; it is read when the config is loaded. A server
//! certificate that is still not trusted fails permanently, naming `tls_ca_file`.
//!
//! Each send opens its own connection (alerts are rare; no connection outlives the
//! send or the runtime that made it) and is bounded as a whole by the destination
//! `timeout`. It speaks SMTP command by command rather than through lettre's
//! transport, which drops the whole message on any refused recipient: here each
//! `RCPT TO` is judged alone (see `judge`), so one stale address neither keeps
//! the email from the others nor goes unnamed. A `Body::Json` is sent as its pretty-printed JSON text rather than
//! refused: an alert with an odd body beats a lost alert.

pub mod api;

use super::Http;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::authentication::DEFAULT_MECHANISMS;
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, Tls, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::Address;

use serde::Deserialize;

use super::{excerpt, scrub, Destination, DestinationSettings, Kind, Message, Request};
use super::{SendError, Sent, TextEscape};
use crate::config::{de_opt_secret, de_string_list, ConfigError, Secret};
use crate::templates::DEFAULT_SUBJECT;

pub const KIND: Kind = Kind {
    name: "email",
    parse: super::parse_as::<EmailConfig>,
    templates: &[
        (
            "default.email.hbs",
            include_str!("../../templates/default.email.hbs"),
        ),
        (
            "default.email.html.hbs",
            include_str!("../../templates/default.email.html.hbs"),
        ),
    ],
    text_escape: TextEscape::Plain,
    html_part: true,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `smtp://[user:pass@]host[:port][?tls=required|none]` or `smtps://…`.
    #[serde(default, deserialize_with = "de_opt_secret")]
    pub smtp: Option<Secret>,
    /// A provider's HTTP API instead of SMTP.
    #[serde(default)]
    pub api: Option<api::ApiConfig>,
    /// A PEM file with the CA (or CAs) of an internal mail relay, trusted in
    /// addition to the public roots.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    pub from: String,
    #[serde(deserialize_with = "de_string_list")]
    pub to: Vec<String>,
    /// A template; default `[{{upper status}}] {{provider}} {{event}} …`.
    #[serde(default)]
    pub subject: Option<String>,
}

impl DestinationSettings for EmailConfig {
    fn type_name(&self) -> &'static str {
        KIND.name
    }

    fn warnings(&self, place: &str, warnings: &mut Vec<ConfigError>) {
        let url = self
            .smtp
            .as_ref()
            .and_then(|s| SmtpUrl::parse(s.expose()).ok());
        if let Some(hint) = url.and_then(|u| u.scheme_hint()) {
            warnings.push(ConfigError::new(format!("{place}.smtp"), hint));
        }
    }

    fn check(&self, place: &str, errors: &mut Vec<ConfigError>) {
        match (&self.smtp, &self.api) {
            (Some(smtp), None) => match SmtpUrl::parse(smtp.expose()) {
                Err(msg) => errors.push(ConfigError::new(format!("{place}.smtp"), msg)),
                Ok(url) => {
                    if let Some(path) = &self.tls_ca_file {
                        let at = format!("{place}.tls_ca_file");
                        if url.tls == SmtpTls::None {
                            errors.push(ConfigError::new(
                                at,
                                "has no effect with ?tls=none (no TLS is spoken)",
                            ));
                        } else if let Err(msg) = load_ca(path) {
                            errors.push(ConfigError::new(at, msg));
                        }
                    }
                }
            },
            (None, Some(api)) => {
                api.check(&format!("{place}.api"), errors);
                if self.tls_ca_file.is_some() {
                    errors.push(ConfigError::new(
                        format!("{place}.tls_ca_file"),
                        "applies to `smtp` only; the email APIs use public certificates",
                    ));
                }
            }
            (Some(_), Some(_)) => errors.push(ConfigError::new(
                place,
                "give either `smtp` or `api`, not both",
            )),
            (None, None) => errors.push(ConfigError::new(
                place,
                "needs `smtp` (a mail server URL) or `api` (provider sendgrid, mailgun or postmark)",
            )),
        }
        if self.to.is_empty() {
            errors.push(ConfigError::new(
                format!("{place}.to"),
                "needs at least one address",
            ));
        }
        for (i, addr) in self.to.iter().enumerate() {
            if addr.parse::<Mailbox>().is_err() {
                errors.push(ConfigError::new(
                    format!("{place}.to[{i}]"),
                    format!("{addr:?} is not an email address"),
                ));
            }
        }
        if self.from.parse::<Mailbox>().is_err() {
            errors.push(ConfigError::new(
                format!("{place}.from"),
                format!("{:?} is not an email address", self.from),
            ));
        }
    }

    fn describe(&self) -> String {
        match &self.api {
            Some(api) => format!(
                "to {} via the {} API",
                self.to.join(", "),
                api.provider.name()
            ),
            None => format!("to {}", self.to.join(", ")),
        }
    }

    fn build(&self, http: &Http, timeout: Duration) -> std::sync::Arc<dyn Destination> {
        std::sync::Arc::new(Email::with_http(self, http.clone(), timeout))
    }

    fn subject(&self) -> Option<(&'static str, &str)> {
        Some((
            "subject",
            self.subject.as_deref().unwrap_or(DEFAULT_SUBJECT),
        ))
    }
}

/// The subject when the caller rendered none.
pub const FALLBACK_SUBJECT: &str = "hookrelay alert";

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// `?tls=none`: plain text throughout.
    None,
    /// `smtp://` (default): STARTTLS when offered, else plain.
    Opportunistic,
    /// `?tls=required`: STARTTLS or fail.
    Required,
    /// `smtps://`: implicit TLS.
    Wrapper,
}

/// A parsed `smtp://` / `smtps://` URL. `Debug` never shows the password.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpUrl {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub user: Option<String>,
    pub password: Option<Secret>,
}

impl SmtpUrl {
    /// The advice for a scheme that does not fit its port as mail servers use
    /// it: 465 speaks TLS from the first byte (`smtps://`), 587 and 25 start in
    /// plain text and upgrade with STARTTLS (`smtp://`). Mixed up, the
    /// connection hangs or fails with a TLS record error that says neither.
    pub fn scheme_hint(&self) -> Option<String> {
        match (self.tls, self.port) {
            (SmtpTls::Wrapper, 587 | 25) => Some(format!(
                "port {} usually starts in plain text and upgrades with STARTTLS: use smtp://{}:{}",
                self.port, self.host, self.port
            )),
            (SmtpTls::Opportunistic | SmtpTls::Required, 465) => Some(format!(
                "port 465 usually speaks TLS from the start: use smtps://{}:465",
                self.host
            )),
            _ => None,
        }
    }

    /// `e` (a failure before the server answered with a status) with the scheme
    /// to use added, when the way it failed is how a scheme that does not fit
    /// the port fails: no greeting at all over `smtp://` (the server waits for
    /// TLS first), or a TLS record error over `smtps://` (it answered in plain
    /// text). `silent`: the connection timed out without a greeting.
    fn with_scheme_hint(&self, mut e: SendError, silent: bool) -> SendError {
        if e.status.is_some() {
            return e;
        }
        let (host, port) = (&self.host, self.port);
        let hint = match self.tls {
            SmtpTls::Wrapper if e.message.contains("corrupt message") => Some(format!(
                "the server answered in plain text: if it starts in plain text and upgrades \
                 with STARTTLS (as ports 587 and 25 usually do), use smtp://{host}:{port}"
            )),
            SmtpTls::Opportunistic | SmtpTls::Required if silent => Some(format!(
                "if it speaks TLS from the start (as port 465 usually does), use \
                 smtps://{host}:{port}"
            )),
            _ => None,
        };
        if let Some(hint) = hint {
            e.message = format!("{}; {hint}", e.message);
        }
        e
    }

    /// Parses `smtp://[user:pass@]host[:port][?tls=required|none]` or `smtps://…`.
    /// The error never contains the password.
    pub fn parse(s: &str) -> Result<SmtpUrl, String> {
        // `url`'s errors describe the problem without quoting the input.
        let url =
            url::Url::parse(s.trim()).map_err(|e| format!("is not a valid SMTP URL ({e})"))?;
        let (mut tls, default_port) = match url.scheme() {
            "smtp" => (SmtpTls::Opportunistic, 587),
            "smtps" => (SmtpTls::Wrapper, 465),
            // Not quoted: without `://`, whatever precedes a colon reads as a scheme.
            _ => {
                return Err("must start with smtp:// (STARTTLS) or smtps:// (implicit TLS)".into())
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err("has no host".into()),
        };
        let port = url.port().unwrap_or(default_port);
        if port == 0 {
            return Err("has port 0".into());
        }
        if !matches!(url.path(), "" | "/") {
            return Err("must not have a path".into());
        }
        if url.fragment().is_some() {
            return Err("must not have a #fragment".into());
        }
        for (key, value) in url.query_pairs() {
            match (key.as_ref(), url.scheme()) {
                ("tls", "smtps") => {
                    return Err("takes no ?tls= with smtps:// (always implicit TLS)".into())
                }
                ("tls", _) => {
                    tls = match value.to_ascii_lowercase().as_str() {
                        "opportunistic" => SmtpTls::Opportunistic,
                        "required" => SmtpTls::Required,
                        "none" => SmtpTls::None,
                        _ => {
                            return Err(format!(
                                "has tls={:?}; use required, opportunistic or none",
                                excerpt(&value)
                            ))
                        }
                    }
                }
                (other, _) => {
                    return Err(format!(
                        "has unknown parameter {:?}; only tls= is understood",
                        excerpt(other)
                    ))
                }
            }
        }
        let user = percent_decode(url.username()).map_err(|e| format!("user {e}"))?;
        let password = match url.password() {
            Some(p) => Some(percent_decode(p).map_err(|e| format!("password {e}"))?),
            None => None,
        };
        let (user, password) = match (user.is_empty(), password) {
            (true, None) => (None, None),
            (false, Some(p)) => (Some(user), Some(Secret::new(p))),
            (false, None) => return Err("has a user but no password".into()),
            (true, Some(_)) => return Err("has a password but no user".into()),
        };
        Ok(SmtpUrl {
            host,
            port,
            tls,
            user,
            password,
        })
    }

    /// How the connection is protected; `ca` (PEM) is trusted besides the public
    /// roots.
    fn tls(&self, ca: Option<&[u8]>) -> Result<Tls, SendError> {
        let params = || {
            let mut b = TlsParameters::builder(self.host.clone());
            if let Some(pem) = ca {
                let cert = Certificate::from_pem(pem).map_err(|e| {
                    SendError::permanent(format!("could not read tls_ca_file: {e}"))
                })?;
                b = b.add_root_certificate(cert);
            }
            b.build()
                .map_err(|e| SendError::permanent(format!("could not set up TLS: {e}")))
        };
        Ok(match self.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Opportunistic => Tls::Opportunistic(params()?),
            SmtpTls::Required => Tls::Required(params()?),
            SmtpTls::Wrapper => Tls::Wrapper(params()?),
        })
    }
}

/// Reads a PEM file of CA certificates; the error says what is wrong with it.
pub fn load_ca(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = String::from_utf8_lossy(&pem)
        .matches("-----BEGIN CERTIFICATE-----")
        .count();
    if certs == 0 {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Certificate::from_pem(&pem)
        .map_err(|e| format!("{} is not a readable PEM certificate: {e}", path.display()))?;
    Ok(pem)
}

/// `%XX` decoding of a URL's user or password (which must then be UTF-8).
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("has a malformed %-escape")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "is not UTF-8 once %-decoded".to_string())
}

/// The certificate error behind a failed TLS handshake, if that is what failed:
/// rustls reports it inside the `io::Error` lettre's connection error carries.
fn certificate_error<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::CertificateError> {
    let mut next = Some(e);
    while let Some(err) = next {
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::InvalidCertificate(c)) = tls {
            return Some(c);
        }
        next = err.source();
    }
    None
}

/// Judges a lettre error: SMTP 4xx transient, 5xx permanent; connection, I/O,
/// and timeout failures transient; a certificate the client does not trust
/// (unknown issuer, wrong name, expired) permanent, since only a configuration
/// change (`tls_ca_file`, the server's certificate) can fix it; client-side
/// refusals (STARTTLS required but not offered, no usable AUTH mechanism)
/// permanent. `password` is scrubbed.
pub fn classify_smtp(e: &lettre::transport::smtp::Error, password: Option<&str>) -> SendError {
    if let Some(cert) = certificate_error(e) {
        let message = format!(
            "the mail server's TLS certificate was not trusted ({cert:?}); if an internal CA \
             signed it, set tls_ca_file to that CA's PEM file"
        );
        return SendError::permanent(password.map_or(message.clone(), |p| scrub(&message, p)));
    }
    let status = e.status().map(u16::from);
    let transient = if e.is_permanent() {
        false
    } else if e.is_transient() {
        true
    } else {
        !e.is_client()
    };
    let detail = excerpt(&e.to_string());
    let message = match status {
        Some(code) => {
            // The server's own words, without lettre's "permanent error (535): ".
            let said = std::error::Error::source(e).map_or(detail, |s| excerpt(&s.to_string()));
            format!("SMTP {code} from the mail server: {said}")
        }
        None if e.is_timeout() => format!("the mail server timed out: {detail}"),
        None if e.is_client() => format!("could not send the email: {detail}"),
        None => format!("could not talk to the mail server: {detail}"),
    };
    SendError {
        transient,
        status,
        retry_after: None,
        message: password.map_or(message.clone(), |p| scrub(&message, p)),
    }
}

/// What the mail server made of one message's recipients.
#[derive(Debug, Default)]
struct Conversation {
    /// Took the message (`RCPT` and then `DATA` answered 2xx).
    accepted: Vec<String>,
    /// Refused at `RCPT TO`, with the error naming the server's reply.
    refused: Vec<(String, SendError)>,
    /// The reply to the message's data, when it was sent.
    status: Option<u16>,
}

/// One SMTP session sending `body` from `from` to each of `rcpts`, recipient by
/// recipient: a recipient the server refuses is left out instead of failing the
/// others. An error here concerns the whole message (connection, TLS, AUTH,
/// `MAIL FROM`, `DATA`), without the URL's password.
async fn converse(
    smtp: &SmtpUrl,
    tls: Tls,
    from: Option<&Address>,
    rcpts: &[Address],
    body: &[u8],
    timeout: Duration,
    greeted: &std::sync::atomic::AtomicBool,
) -> Result<Conversation, SendError> {
    let password = smtp.password.as_ref().map(Secret::expose);
    let fail = |e: lettre::transport::smtp::Error| classify_smtp(&e, password);
    let hello = ClientId::default();
    let wrapper = match &tls {
        Tls::Wrapper(p) => Some(p.clone()),
        _ => None,
    };
    let mut conn = AsyncSmtpConnection::connect_tokio1(
        (smtp.host.as_str(), smtp.port),
        Some(timeout),
        &hello,
        wrapper,
        None,
    )
    .await
    .map_err(fail)?;
    greeted.store(true, std::sync::atomic::Ordering::Relaxed);
    match tls {
        Tls::Opportunistic(p) if conn.can_starttls() => {
            conn.starttls(p, &hello).await.map_err(fail)?
        }
        Tls::Required(p) => conn.starttls(p, &hello).await.map_err(fail)?,
        _ => {}
    }
    if let (Some(u), Some(p)) = (&smtp.user, &smtp.password) {
        let credentials = Credentials::new(u.clone(), p.expose().to_string());
        conn.auth(DEFAULT_MECHANISMS, &credentials)
            .await
            .map_err(fail)?;
    }
    // As lettre's own transport does: SMTPUTF8 for non-ASCII addresses, 8BITMIME
    // for a non-ASCII body, each only if the server offers it.
    let mut options = Vec::new();
    let non_ascii = from.is_some_and(|a| !AsRef::<str>::as_ref(a).is_ascii())
        || rcpts.iter().any(|a| !AsRef::<str>::as_ref(a).is_ascii());
    if non_ascii {
        if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
            return Err(SendError::permanent(
                "could not send the email: an address is not ASCII and the mail server does \
                 not support SMTPUTF8",
            ));
        }
        options.push(MailParameter::SmtpUtfEight);
    }
    if !body.is_ascii() {
        if !conn.server_info().supports_feature(Extension::EightBitMime) {
            return Err(SendError::permanent(
                "could not send the email: it is not ASCII and the mail server does not \
                 support 8BITMIME",
            ));
        }
        options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    conn.command(Mail::new(from.cloned(), options))
        .await
        .map_err(fail)?;
    let mut out = Conversation::default();
    for rcpt in rcpts {
        match conn.command(Rcpt::new(rcpt.clone(), Vec::new())).await {
            Ok(_) => out.accepted.push(rcpt.to_string()),
            // The server answered about this address: the others go on.
            Err(e) if e.status().is_some() => out.refused.push((rcpt.to_string(), fail(e))),
            // No answer (connection lost, garbage): nothing can go on.
            Err(e) => return Err(fail(e)),
        }
    }
    if !out.accepted.is_empty() {
        conn.command(Data).await.map_err(fail)?;
        let reply = conn.message(body).await.map_err(fail)?;
        out.status = Some(u16::from(reply.code()));
    }
    // The message is the server's now (or nobody's): QUIT on the side, so a server
    // slow to answer it cannot turn a sent email into a timeout and a second copy.
    tokio::spawn(async move {
        let _ = tokio::time::timeout(timeout, conn.quit()).await;
    });
    Ok(out)
}

/// `refused x@y: SMTP 550 from the mail server: 5.1.1 no such user; refused …`
fn refusals<'a>(refused: impl Iterator<Item = &'a (String, SendError)>) -> String {
    refused
        .map(|(addr, e)| format!("refused {addr}: {}", e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The outcome of a send in which the server answered each recipient: `reached`
/// took the message on earlier attempts, `now` is this one; the recipients it
/// reached are added to `reached`.
///
/// * Every recipient took it: delivered.
/// * Some refused permanently (5xx), none for now: delivered to the others, the
///   refused ones named in the attempt's note; all refused permanently: dead,
///   each named.
/// * Some refused for now (4xx): retried, and the retry goes to those only (the
///   store keeps `reached` with the delivery); the error names who has the
///   message and who does not.
fn judge(reached: &mut Vec<String>, now: Conversation) -> Result<Sent, SendError> {
    let Conversation {
        accepted,
        refused,
        status,
    } = now;
    reached.extend(accepted);
    let delivered = &*reached;
    let (transient, permanent): (Vec<_>, Vec<_>) =
        refused.iter().partition(|(_, e)| e.is_transient());
    if let Some((_, first)) = transient.first() {
        let mut message = String::new();
        if !delivered.is_empty() {
            message = format!("delivered to {}; ", delivered.join(", "));
        }
        message.push_str(&format!(
            "not yet to {}",
            transient
                .iter()
                .map(|(addr, e)| format!("{addr}: {}", e.message))
                .collect::<Vec<_>>()
                .join("; ")
        ));
        if !permanent.is_empty() {
            message = format!("{message}; {}", refusals(permanent.into_iter()));
        }
        return Err(SendError {
            transient: true,
            status: first.status,
            retry_after: None,
            message,
        });
    }
    if delivered.is_empty() {
        let status = permanent.first().and_then(|(_, e)| e.status);
        return Err(SendError {
            transient: false,
            status,
            retry_after: None,
            message: format!(
                "every recipient was refused: {}",
                refusals(permanent.into_iter())
            ),
        });
    }
    let note = (!permanent.is_empty()).then(|| {
        format!(
            "delivered to {}; {} (not retried)",
            delivered.join(", "),
            refusals(permanent.into_iter())
        )
    });
    Ok(Sent { status, note })
}

/// How an [`Email`] leaves: a mail server or a provider's API.
#[derive(Debug)]
enum Transport {
    Smtp {
        url: Result<SmtpUrl, String>,
        /// `tls_ca_file`, read when built.
        ca: Option<Result<Vec<u8>, String>>,
    },
    Api(api::ApiSender),
}

#[derive(Debug)]
pub struct Email {
    transport: Transport,
    from: String,
    to: Vec<String>,
    timeout: Duration,
}

impl Email {
    /// An email destination with its own HTTP client (tests).
    #[cfg(test)]
    pub(crate) fn new(cfg: &EmailConfig, timeout: Duration) -> Email {
        Email::with_http(cfg, Http::default(), timeout)
    }

    /// `http` sends API requests (SMTP does not use it).
    pub fn with_http(cfg: &EmailConfig, http: Http, timeout: Duration) -> Email {
        let transport = match (&cfg.api, &cfg.smtp) {
            (Some(a), _) => Transport::Api(api::ApiSender::new(a, http, timeout)),
            (None, smtp) => Transport::Smtp {
                url: smtp.as_ref().map_or_else(
                    || Err("is not set".to_string()),
                    |s| SmtpUrl::parse(s.expose()),
                ),
                ca: cfg.tls_ca_file.as_deref().map(load_ca),
            },
        };
        Email {
            transport,
            from: cfg.from.clone(),
            to: cfg.to.clone(),
            timeout,
        }
    }

    /// The email. Its `Message-ID` (mail servers such as Gmail's refuse a
    /// message without one) is a new UUID at the sender's domain: unique across
    /// databases and installations, as mail clients take two messages with one
    /// id for copies of one.
    fn message(
        from: &str,
        to: &[String],
        subject: &str,
        text: &str,
        html: Option<&str>,
    ) -> Result<lettre::Message, SendError> {
        let mailbox = |a: &str, what: &str| {
            a.parse::<Mailbox>().map_err(|_| {
                SendError::permanent(format!("{what} {:?} is not an email address", excerpt(a)))
            })
        };
        let sender = mailbox(from, "sender")?;
        let message_id = format!("<{}@{}>", uuid::Uuid::now_v7(), sender.email.domain());
        let mut b = lettre::Message::builder()
            .from(sender)
            .message_id(Some(message_id))
            .subject(subject);
        if to.is_empty() {
            return Err(SendError::permanent("the email has no recipients"));
        }
        for t in to {
            b = b.to(mailbox(t, "recipient")?);
        }
        let built = match html {
            Some(h) => b.multipart(MultiPart::alternative_plain_html(
                text.to_string(),
                h.to_string(),
            )),
            None => b.header(ContentType::TEXT_PLAIN).body(text.to_string()),
        };
        built.map_err(|e| SendError::permanent(format!("could not build the email: {e}")))
    }
}

#[async_trait]
impl Destination for Email {
    fn prepare(&self, msg: &Message) -> Result<Request, SendError> {
        let subject = msg
            .subject
            .as_deref()
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| FALLBACK_SUBJECT.to_string());
        Ok(Request::Email {
            from: self.from.clone(),
            to: self.to.clone(),
            subject,
            text: super::console::body_text(&msg.body),
            html: msg.html.clone(),
        })
    }

    async fn send(&self, req: &Request, delivery_id: &str) -> Result<Sent, SendError> {
        self.send_unreached(req, delivery_id, &mut Vec::new()).await
    }

    /// Over SMTP, the addresses in `reached` are left out of the envelope (the
    /// `To:` header still lists everyone), and those the server takes now are
    /// added. The HTTP APIs take a message for every address or none: they send to
    /// all of them and leave `reached` as it is.
    async fn send_unreached(
        &self,
        req: &Request,
        delivery_id: &str,
        reached: &mut Vec<String>,
    ) -> Result<Sent, SendError> {
        let Request::Email {
            from,
            to,
            subject,
            text,
            html,
        } = req
        else {
            return Err(SendError::permanent(
                "an email destination sends emails only",
            ));
        };
        let (smtp, ca) = match &self.transport {
            Transport::Api(sender) => {
                return sender
                    .send(from, to, subject, text, html.as_deref(), delivery_id)
                    .await
            }
            Transport::Smtp { url, ca } => (url, ca),
        };
        let smtp = smtp
            .as_ref()
            .map_err(|e| SendError::permanent(format!("the smtp URL {e}")))?;
        let ca = match ca {
            None => None,
            Some(Ok(pem)) => Some(pem.as_slice()),
            Some(Err(e)) => return Err(SendError::permanent(format!("tls_ca_file: {e}"))),
        };
        let email = Email::message(from, to, subject, text, html.as_deref())?;
        let tls = smtp.tls(ca)?;
        let rcpts: Vec<Address> = email
            .envelope()
            .to()
            .iter()
            .filter(|a| !reached.iter().any(|e| e == AsRef::<str>::as_ref(a)))
            .cloned()
            .collect();
        if rcpts.is_empty() {
            // Every recipient took it on earlier attempts.
            return Ok(Sent {
                status: None,
                note: None,
            });
        }
        let body = email.formatted();
        let greeted = std::sync::atomic::AtomicBool::new(false);
        let conversation = converse(
            smtp,
            tls,
            email.envelope().from(),
            &rcpts,
            &body,
            self.timeout,
            &greeted,
        );
        let now = match tokio::time::timeout(self.timeout, conversation).await {
            Ok(r) => r.map_err(|e| {
                // lettre's own connect timeout: no greeting either.
                let silent = !greeted.load(std::sync::atomic::Ordering::Relaxed)
                    && e.message.contains("timed out");
                smtp.with_scheme_hint(e, silent)
            })?,
            Err(_) if !greeted.load(std::sync::atomic::Ordering::Relaxed) => {
                return Err(smtp.with_scheme_hint(
                    SendError::transient(format!(
                        "the mail server sent no greeting within {:?}",
                        self.timeout
                    )),
                    true,
                ))
            }
            Err(_) => {
                return Err(smtp.with_scheme_hint(
                    SendError::transient(format!(
                        "the mail server did not accept the email within {:?}",
                        self.timeout
                    )),
                    false,
                ))
            }
        };
        let result = judge(reached, now);
        if let Ok(Sent {
            note: Some(note), ..
        }) = &result
        {
            log::warn!("delivery {delivery_id}: email {note}");
        }
        result
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::destinations::test_support::ID;
    use crate::templates::Body;
    use serde_json::Value;
    use std::io::{BufRead, BufReader, Lines};
    use std::process::{Child, ChildStdout, Command, Stdio};

    /// A running `tests/support/smtp_sink.py`; killed when dropped.
    pub(crate) struct SmtpSink {
        child: Child,
        lines: Lines<BufReader<ChildStdout>>,
        pub port: u16,
    }

    impl SmtpSink {
        /// Starts the sink on a free port; `auth` makes it require that user and
        /// password.
        pub(crate) fn start(auth: Option<(&str, &str)>) -> SmtpSink {
            match auth {
                Some((u, p)) => SmtpSink::start_with(&["--user", u, "--password", p]),
                None => SmtpSink::start_with(&[]),
            }
        }

        /// Starts the sink with its command-line options (see smtp_sink.py).
        pub(crate) fn start_with(args: &[&str]) -> SmtpSink {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py");
            let mut cmd = Command::new("python3");
            cmd.arg(script)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .args(args);
            let mut child = cmd.spawn().expect("python3 must be installed");
            let stdout = child.stdout.take().expect("piped stdout");
            let mut sink = SmtpSink {
                child,
                lines: BufReader::new(stdout).lines(),
                port: 0,
            };
            let first = sink.lines.next().and_then(Result::ok).unwrap_or_default();
            sink.port = first.trim().parse().unwrap_or_else(|_| {
                panic!("smtp_sink.py did not start (is aiosmtpd installed?): {first:?}")
            });
            sink
        }

        /// The next message received, as the sink's JSON line (blocks).
        pub(crate) fn next_message(&mut self) -> Value {
            let line = self
                .lines
                .next()
                .expect("smtp sink ended")
                .expect("read from smtp sink");
            serde_json::from_str(&line).expect("smtp sink prints JSON")
        }
    }

    impl Drop for SmtpSink {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn email_dest(smtp: &str, timeout: Duration) -> Email {
        let cfg = EmailConfig {
            smtp: Some(Secret::new(smtp)),
            api: None,
            tls_ca_file: None,
            from: "Hookrelay <relay@example.test>".into(),
            to: vec![
                "ops@example.test".into(),
                "Dev Team <dev@example.test>".into(),
            ],
            subject: None,
        };
        Email::new(&cfg, timeout)
    }

    fn msg(text: &str, html: Option<&str>, subject: Option<&str>) -> Message {
        Message {
            body: Body::Text(text.into()),
            html: html.map(str::to_string),
            subject: subject.map(str::to_string),
            channel: None,
        }
    }

    #[test]
    fn parses_schemes_ports_and_tls_modes() {
        let u = SmtpUrl::parse("smtp://mail.example.com").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.tls, u.user, u.password),
            ("mail.example.com", 587, SmtpTls::Opportunistic, None, None)
        );
        let u = SmtpUrl::parse("smtps://mail.example.com").unwrap();
        assert_eq!((u.port, u.tls), (465, SmtpTls::Wrapper));
        let u = SmtpUrl::parse("smtp://mail.example.com:25?tls=none").unwrap();
        assert_eq!((u.port, u.tls), (25, SmtpTls::None));
        let u = SmtpUrl::parse("smtp://mail.example.com?tls=required").unwrap();
        assert_eq!((u.port, u.tls), (587, SmtpTls::Required));
        let u = SmtpUrl::parse("smtp://h/?tls=opportunistic").unwrap();
        assert_eq!(u.tls, SmtpTls::Opportunistic);
        let u = SmtpUrl::parse("smtps://h:2465").unwrap();
        assert_eq!(u.port, 2465);
        let u = SmtpUrl::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!(u.host, "127.0.0.1");
        let u = SmtpUrl::parse("smtp://[::1]:2525").unwrap();
        assert_eq!(u.host, "::1");
    }

    #[test]
    fn credentials_are_percent_decoded_and_hidden() {
        let u = SmtpUrl::parse("smtp://me%40example.com:p%40ss%3Aw%2Fo%C3%A9rd@h:587").unwrap();
        assert_eq!(u.user.as_deref(), Some("me@example.com"));
        assert_eq!(u.password.as_ref().unwrap().expose(), "p@ss:w/oérd");
        assert!(!format!("{u:?}").contains("p@ss"));
        assert!(!format!("{u:?}").contains("p%40ss"));
    }

    #[test]
    fn bad_urls_are_rejected_without_the_password() {
        for bad in [
            "http://u:hunter2@h",
            "smtp://u:hunter2@",
            "smtp://u:hunter2@h:99999",
            "smtp://u:hunter2@h:0",
            "smtp://u:hunter2@h/path",
            "smtp://u:hunter2@h?tls=maybe",
            "smtp://u:hunter2@h?foo=bar",
            "smtp://u:hunter2@h#frag",
            "smtps://u:hunter2@h?tls=none",
            "smtp://:hunter2@h",
            "smtp://u:hunter2%zz@h",
            "smtp://u:hunter2%ff@h",
            "hunter2",
            "hunter2:x@h",
            "",
        ] {
            let e = SmtpUrl::parse(bad).expect_err(bad);
            assert!(!e.contains("hunter2"), "{bad}: {e}");
        }
        assert!(SmtpUrl::parse("smtp://u@h").is_err());
    }

    #[test]
    fn prepare_takes_subject_html_and_text() {
        let d = email_dest("smtp://127.0.0.1:2525", Duration::from_secs(5));
        let req = d
            .prepare(&msg("body", Some("<p>body</p>"), Some("Backup\nfailed ")))
            .unwrap();
        assert_eq!(
            req,
            Request::Email {
                from: "Hookrelay <relay@example.test>".into(),
                to: vec![
                    "ops@example.test".into(),
                    "Dev Team <dev@example.test>".into()
                ],
                subject: "Backup failed".into(),
                text: "body".into(),
                html: Some("<p>body</p>".into()),
            }
        );
        let Request::Email { subject, text, .. } = d
            .prepare(&Message {
                body: Body::Json(serde_json::json!({"a": 1})),
                ..msg("", None, Some("  "))
            })
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(subject, FALLBACK_SUBJECT);
        assert_eq!(text, "{\n  \"a\": 1\n}");
    }

    #[tokio::test]
    async fn sends_multipart_email_with_auth_to_a_real_server() {
        let mut sink = SmtpSink::start(Some(("relay", "s3cr@t")));
        let d = email_dest(
            &format!("smtp://relay:s3cr%40t@127.0.0.1:{}", sink.port),
            Duration::from_secs(10),
        );
        let text = "Backup of db-1 failed.\nSee the log.\nÜnïcödé ✅ 日本";
        let html = "<p>Backup of <b>db-1</b> failed &amp; more.</p><p>Ünïcödé ✅</p>";
        let req = d
            .prepare(&msg(text, Some(html), Some("[FAILED] db-1 backup ✅")))
            .unwrap();
        let sent = d.send(&req, ID).await.unwrap();
        assert_eq!(sent.status, Some(250));

        let got = sink.next_message();
        assert_eq!(got["mail_from"], "relay@example.test");
        assert_eq!(
            got["rcpt_tos"],
            serde_json::json!(["ops@example.test", "dev@example.test"])
        );
        assert_eq!(got["subject"], "[FAILED] db-1 backup ✅");
        let data = got["data"].as_str().unwrap();
        assert!(data.contains("multipart/alternative"), "{data}");
        assert!(
            data.contains("From: Hookrelay <relay@example.test>"),
            "{data}"
        );
        let parts = got["parts"].as_array().unwrap();
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert_eq!(parts[0]["content_type"], "text/plain");
        assert_eq!(parts[1]["content_type"], "text/html");
        let norm = |v: &Value| v.as_str().unwrap().replace("\r\n", "\n");
        assert_eq!(norm(&parts[0]["content"]).trim_end(), text);
        assert_eq!(norm(&parts[1]["content"]).trim_end(), html);
    }

    #[tokio::test]
    async fn sends_plain_text_without_auth() {
        let mut sink = SmtpSink::start(None);
        let d = email_dest(
            &format!("smtp://127.0.0.1:{}?tls=none", sink.port),
            Duration::from_secs(10),
        );
        let req = d.prepare(&msg("just text", None, None)).unwrap();
        d.send(&req, ID).await.unwrap();
        let got = sink.next_message();
        assert_eq!(got["subject"], FALLBACK_SUBJECT);
        let parts = got["parts"].as_array().unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0]["content_type"], "text/plain");
        assert_eq!(
            parts[0]["content"].as_str().unwrap().trim_end(),
            "just text"
        );
        assert!(got["data"].as_str().unwrap().contains("charset=utf-8"));
    }

    /// One recipient refused for now (452), one for good (550), one taking it:
    /// the first attempt reaches the one, names the others and is retried; the
    /// retry, given who was reached (as the store keeps it), goes to the two not
    /// yet reached only, the 452 one takes it, and the 550 one is named in the
    /// note of a delivered send.
    #[tokio::test]
    async fn each_recipient_is_judged_alone_and_a_retry_skips_those_reached() {
        let mut sink = SmtpSink::start_with(&[
            "--refuse",
            "gone@example.test=550 5.1.1 no such user",
            "--refuse-once",
            "full@example.test=452 4.2.2 mailbox full",
        ]);
        let cfg = EmailConfig {
            smtp: Some(Secret::new(format!("smtp://127.0.0.1:{}", sink.port))),
            api: None,
            tls_ca_file: None,
            from: "relay@example.test".into(),
            to: vec![
                "ops@example.test".into(),
                "Gone <gone@example.test>".into(),
                "full@example.test".into(),
            ],
            subject: None,
        };
        let d = Email::new(&cfg, Duration::from_secs(10));
        let req = d.prepare(&msg("x", None, None)).unwrap();
        let mut reached = Vec::new();
        let e = d.send_unreached(&req, ID, &mut reached).await.unwrap_err();
        assert!(e.is_transient(), "{e:?}");
        assert_eq!(e.status, Some(452));
        assert_eq!(reached, ["ops@example.test"]);
        assert_eq!(
            e.message,
            "delivered to ops@example.test; not yet to full@example.test: SMTP 452 from the \
             mail server: 4.2.2 mailbox full; refused gone@example.test: SMTP 550 from the \
             mail server: 5.1.1 no such user"
        );
        assert_eq!(
            sink.next_message()["rcpt_tos"],
            serde_json::json!(["ops@example.test"])
        );

        let sent = d.send_unreached(&req, ID, &mut reached).await.unwrap();
        assert_eq!(sent.status, Some(250));
        assert_eq!(reached, ["ops@example.test", "full@example.test"]);
        assert_eq!(
            sent.note.as_deref(),
            Some(
                "delivered to ops@example.test, full@example.test; refused gone@example.test: \
                 SMTP 550 from the mail server: 5.1.1 no such user (not retried)"
            )
        );
        let got = sink.next_message();
        assert_eq!(got["rcpt_tos"], serde_json::json!(["full@example.test"]));
        // The header still shows everyone it was addressed to.
        let data = got["data"].as_str().unwrap();
        assert!(data.contains("gone@example.test"), "{data}");

        // Every recipient reached already (the 550 one too, say): nothing is sent
        // (the next message the sink gets is the next delivery's).
        let mut all = vec![
            "ops@example.test".to_string(),
            "gone@example.test".to_string(),
            "full@example.test".to_string(),
        ];
        let sent = d.send_unreached(&req, ID, &mut all).await.unwrap();
        assert_eq!((sent.status, sent.note), (None, None));

        // Another delivery starts afresh: ops gets it again, gone is refused again.
        let sent = d.send(&req, "another-delivery").await.unwrap();
        assert!(sent.note.unwrap().contains("refused gone@example.test"));
        assert_eq!(
            sink.next_message()["rcpt_tos"],
            serde_json::json!(["ops@example.test", "full@example.test"])
        );
    }

    #[tokio::test]
    async fn every_recipient_refused_is_permanent_and_names_each() {
        let sink = SmtpSink::start_with(&[
            "--refuse",
            "ops@example.test=550 5.1.1 no such user",
            "--refuse",
            "dev@example.test=553 5.7.1 relaying denied",
        ]);
        let d = email_dest(
            &format!("smtp://127.0.0.1:{}", sink.port),
            Duration::from_secs(10),
        );
        let req = d.prepare(&msg("x", None, None)).unwrap();
        let e = d.send(&req, ID).await.unwrap_err();
        assert!(e.is_permanent(), "{e:?}");
        assert_eq!(e.status, Some(550));
        assert_eq!(
            e.message,
            "every recipient was refused: refused ops@example.test: SMTP 550 from the mail \
             server: 5.1.1 no such user; refused dev@example.test: SMTP 553 from the mail \
             server: 5.7.1 relaying denied"
        );
    }

    #[tokio::test]
    async fn wrong_password_is_permanent_and_not_quoted() {
        let sink = SmtpSink::start(Some(("relay", "right")));
        let d = email_dest(
            &format!("smtp://relay:wr0ngpass@127.0.0.1:{}", sink.port),
            Duration::from_secs(10),
        );
        let req = d.prepare(&msg("x", None, None)).unwrap();
        let e = d.send(&req, ID).await.unwrap_err();
        assert!(e.is_permanent(), "{e:?}");
        assert_eq!(e.status, Some(535));
        assert_eq!(
            e.message,
            "SMTP 535 from the mail server: 5.7.8 Authentication credentials invalid"
        );
        assert!(!e.message.contains("wr0ngpass"));
        assert!(!format!("{e:?} {d:?}").contains("wr0ngpass"));
    }

    #[tokio::test]
    async fn starttls_required_but_not_offered_is_permanent() {
        let sink = SmtpSink::start(None);
        let d = email_dest(
            &format!("smtp://127.0.0.1:{}?tls=required", sink.port),
            Duration::from_secs(10),
        );
        let req = d.prepare(&msg("x", None, None)).unwrap();
        let e = d.send(&req, ID).await.unwrap_err();
        assert!(e.is_permanent(), "{e:?}");
    }

    #[tokio::test]
    async fn server_down_is_transient() {
        let addr = super::super::test_support::refused_addr();
        let d = email_dest(&format!("smtp://relay:pw@{addr}"), Duration::from_secs(5));
        let req = d.prepare(&msg("x", None, None)).unwrap();
        let e = d.send(&req, ID).await.unwrap_err();
        assert!(e.is_transient(), "{e:?}");
        assert_eq!(e.status, None);
    }

    #[tokio::test]
    async fn silent_server_times_out_transiently() {
        // Accepts the connection, never greets.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let (_s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let d = email_dest(
            &format!("smtp://127.0.0.1:{port}?tls=none"),
            Duration::from_millis(300),
        );
        let req = d.prepare(&msg("x", None, None)).unwrap();
        let e = d.send(&req, ID).await.unwrap_err();
        assert!(e.is_transient(), "{e:?}");
        hold.abort();
    }

    /// `destinations.m` parsed and checked as `relay.yaml` gives it.
    fn check(v: Value) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        super::super::parse_config("destinations.m", v, &mut errors);
        errors
    }

    #[test]
    fn exactly_one_transport_and_tls_ca_file_only_where_it_applies() {
        let base = |extra: Value| {
            let mut v = serde_json::json!({"type": "email", "from": "a@b.test", "to": "c@d.test"});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        let api = serde_json::json!({"provider": "postmark", "key": "pm-SECRET"});
        assert_eq!(
            check(base(
                serde_json::json!({"smtp": "smtp://u:hunter2@h", "api": api})
            )),
            vec![ConfigError::new(
                "destinations.m",
                "give either `smtp` or `api`, not both"
            )]
        );
        assert_eq!(
            check(base(serde_json::json!({"smtp": ""}))),
            vec![ConfigError::new(
                "destinations.m",
                "needs `smtp` (a mail server URL) or `api` (provider sendgrid, mailgun or postmark)"
            )]
        );
        assert_eq!(check(base(serde_json::json!({"api": api}))), vec![]);
        assert_eq!(
            check(base(
                serde_json::json!({"api": api, "tls_ca_file": "/x.pem"})
            )),
            vec![ConfigError::new(
                "destinations.m.tls_ca_file",
                "applies to `smtp` only; the email APIs use public certificates"
            )]
        );
        let errors = check(base(
            serde_json::json!({"api": {"provider": "sendmail", "key": "k"}}),
        ));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].message.contains("sendgrid"), "{errors:?}");

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let errors = check(base(
            serde_json::json!({"smtp": "smtps://h", "tls_ca_file": missing}),
        ));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].place, "destinations.m.tls_ca_file");
        assert!(errors[0].message.starts_with("cannot read "), "{errors:?}");
        let not_pem = dir.path().join("ca.der");
        std::fs::write(&not_pem, b"\x30\x82garbage").unwrap();
        let errors = check(base(
            serde_json::json!({"smtp": "smtps://h", "tls_ca_file": not_pem}),
        ));
        assert!(
            errors[0]
                .message
                .ends_with("holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
            "{errors:?}"
        );
        assert_eq!(
            check(base(
                serde_json::json!({"smtp": "smtp://h?tls=none", "tls_ca_file": not_pem})
            )),
            vec![ConfigError::new(
                "destinations.m.tls_ca_file",
                "has no effect with ?tls=none (no TLS is spoken)"
            )]
        );
    }

    #[test]
    fn api_keys_stay_out_of_debug_describe_and_errors() {
        let mut errors = Vec::new();
        let c = super::super::parse_config(
            "destinations.m",
            serde_json::json!({"type": "email", "from": "a@b.test", "to": ["c@d.test"],
                "api": {"provider": "mailgun", "key": "key-SECRET", "domain": "mg.b.test"}}),
            &mut errors,
        )
        .unwrap();
        assert_eq!(errors, vec![]);
        assert_eq!(c.kind.describe(), "to c@d.test via the Mailgun API");
        let email = Email::with_http(
            &serde_json::from_value(serde_json::json!({"from": "a@b.test", "to": ["c@d.test"],
                "api": {"provider": "mailgun", "key": "key-SECRET", "domain": "mg.b.test"}}))
            .unwrap(),
            Http::default(),
            Duration::from_secs(1),
        );
        assert!(!format!("{c:?} {email:?}").contains("SECRET"));
    }

    #[tokio::test]
    async fn bad_addresses_and_bad_url_are_permanent() {
        let cfg = EmailConfig {
            smtp: Some(Secret::new("smtp://u:pw@127.0.0.1:9")),
            api: None,
            tls_ca_file: None,
            from: "not an address".into(),
            to: vec!["x@y.test".into()],
            subject: None,
        };
        let d = Email::new(&cfg, Duration::from_secs(1));
        let req = d.prepare(&msg("x", None, None)).unwrap();
        assert!(d.send(&req, ID).await.unwrap_err().is_permanent());

        let d = email_dest("ftp://u:hunter2@h", Duration::from_secs(1));
        let req = d.prepare(&msg("x", None, None)).unwrap();
        let e = d.send(&req, ID).await.unwrap_err();
        assert!(e.is_permanent());
        assert!(!e.message.contains("hunter2"));
    }
}
