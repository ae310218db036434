//! `type: email`: SMTP via lettre (stub).

/// A parsed `smtp://` / `smtps://` URL.
#[derive(Debug, Clone)]
pub struct SmtpUrl {}

impl SmtpUrl {
    /// Parses `smtp://[user:pass@]host[:port][?tls=required|none]` or `smtps://…`.
    /// The error never contains the password.
    pub fn parse(_s: &str) -> Result<SmtpUrl, String> {
        Ok(SmtpUrl {})
    }
}
