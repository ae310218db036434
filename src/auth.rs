//! Who sent a webhook: tokens (`Authorization: Bearer …` or `?token=…`) and HMAC
//! signatures (SimpleBackups' `SB-Signature`, any header for generic sources),
//! checked on the raw body bytes before anything is parsed. Every comparison is
//! constant-time, and several secrets may be valid at once for key rotation.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::{Secret, SourceConfig, SourceKind};

/// SimpleBackups signs with this header.
pub const SB_SIGNATURE: &str = "SB-Signature";

/// Why a request was refused; the text is what the sender sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing token: send Authorization: Bearer <token> or ?token=<token>")]
    MissingToken,
    #[error("invalid token")]
    WrongToken,
    #[error("missing signature header {0}")]
    MissingSignature(String),
    #[error("invalid signature in header {0}")]
    WrongSignature(String),
}

impl AuthError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingToken | AuthError::WrongToken => "token",
            AuthError::MissingSignature(_) | AuthError::WrongSignature(_) => "signature",
        }
    }
}

/// The checks one source demands, precomputed from its config.
#[derive(Clone, Default)]
pub struct Verifier {
    tokens: Vec<Secret>,
    /// (header, prefix, one HMAC already keyed per secret)
    hmac: Option<(String, String, Vec<Hmac<Sha256>>)>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("tokens", &self.tokens)
            .field("hmac_header", &self.signature_header())
            .finish_non_exhaustive()
    }
}

/// Keyed once here; each request clones the keyed state instead of hashing the
/// key again.
fn keyed(secrets: Vec<Secret>) -> Vec<Hmac<Sha256>> {
    secrets
        .iter()
        // HMAC takes keys of any length; this never drops one.
        .filter_map(|s| Hmac::<Sha256>::new_from_slice(s.expose().as_bytes()).ok())
        .collect()
}

impl Verifier {
    pub fn new(cfg: &SourceConfig) -> Verifier {
        let tokens = cfg.token.clone().map(|t| t.into_vec()).unwrap_or_default();
        let hmac = match (&cfg.hmac, &cfg.secret) {
            (Some(h), _) => Some((
                h.header.clone(),
                h.prefix.clone(),
                keyed(h.secret.clone().into_vec()),
            )),
            (None, Some(s)) if cfg.kind == SourceKind::Simplebackups => Some((
                SB_SIGNATURE.to_string(),
                String::new(),
                keyed(s.clone().into_vec()),
            )),
            _ => None,
        };
        Verifier { tokens, hmac }
    }

    /// Whether this source checks anything at all.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty() && self.hmac.is_none()
    }

    /// The token check, which needs no body: done before the body is read.
    /// `bearer` holds the `Authorization` headers' values, `query` the `token`
    /// parameters as they stand in the URL, still percent-encoded. Every token
    /// presented must be valid: a wrong one next to a right one is refused, so a
    /// guess cannot ride along with a leaked URL (or the reverse). An
    /// `Authorization` header of another scheme is not a token.
    ///
    /// A `+` in the URL is a space to form decoding but stays a `+` when a token
    /// made by `openssl rand -base64` is pasted into the URL as it is: a
    /// parameter is valid when either reading of it is a token.
    pub fn check_token<'a>(
        &self,
        bearer: impl IntoIterator<Item = &'a str>,
        query: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), AuthError> {
        if self.tokens.is_empty() {
            return Ok(());
        }
        let from_header = bearer.into_iter().filter_map(|h| {
            let (scheme, rest) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
        let mut presented = 0usize;
        // Every candidate is compared with every token, so timing does not tell
        // which one matched or failed.
        let mut all_ok = subtle::Choice::from(1u8);
        let from_query = query.into_iter().map(|raw| {
            let literal = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
            let form = url::form_urlencoded::parse(format!("t={raw}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            (literal.into_owned(), Some(form))
        });
        let from_header = from_header.map(|h| (h.to_string(), None));
        for (g, alt) in from_header.chain(from_query) {
            presented += 1;
            let mut ok = subtle::Choice::from(0u8);
            for t in &self.tokens {
                ok |= g.as_bytes().ct_eq(t.expose().as_bytes());
                if let Some(alt) = &alt {
                    ok |= alt.as_bytes().ct_eq(t.expose().as_bytes());
                }
            }
            all_ok &= ok;
        }
        if presented == 0 {
            Err(AuthError::MissingToken)
        } else if bool::from(all_ok) {
            Ok(())
        } else {
            Err(AuthError::WrongToken)
        }
    }

    /// The signature header this source needs, if any.
    pub fn signature_header(&self) -> Option<&str> {
        self.hmac.as_ref().map(|(h, _, _)| h.as_str())
    }

    /// The HMAC check on the raw body. `header_value` is the signature header's
    /// value as received.
    pub fn check_signature(
        &self,
        header_value: Option<&str>,
        body: &[u8],
    ) -> Result<(), AuthError> {
        let Some((header, prefix, secrets)) = &self.hmac else {
            return Ok(());
        };
        let Some(value) = header_value else {
            return Err(AuthError::MissingSignature(header.clone()));
        };
        let value = value.trim();
        let hex_part = value.strip_prefix(prefix.as_str()).unwrap_or(value);
        // Lowercase hex per the contract; accept uppercase too, it is the same bytes.
        let mut given = [0u8; 32];
        if hex::decode_to_slice(hex_part, &mut given).is_err() {
            return Err(AuthError::WrongSignature(header.clone()));
        }
        let mut ok = false;
        for keyed in secrets {
            let mut mac = keyed.clone();
            mac.update(body);
            // verify_slice compares in constant time.
            ok |= mac.verify_slice(&given).is_ok();
        }
        if ok {
            Ok(())
        } else {
            Err(AuthError::WrongSignature(header.clone()))
        }
    }
}

/// Lowercase hex HMAC-SHA256 of `body` (what SimpleBackups sends); used by tests,
/// the benchmark and `render`'s hints.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Wrong admin tokens (the admin API's bearer, the web page's sign-in) counted per
/// client address: after [`WrongTokens::MAX`] within [`WrongTokens::WINDOW`], that
/// address is refused with 429 until the window ends, without the token being
/// compared — so guessing runs at ten tries a minute, and a blocked guesser learns
/// nothing. A right token clears the count.
#[derive(Default)]
pub struct WrongTokens {
    by_addr:
        std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (u32, std::time::Instant)>>,
}

impl WrongTokens {
    pub const MAX: u32 = 10;
    pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
    /// Addresses remembered at most; past it, expired windows are dropped first.
    const KEEP: usize = 10_000;

    /// How long `addr` must still wait, if it is blocked.
    pub fn blocked(&self, addr: Option<std::net::IpAddr>) -> Option<std::time::Duration> {
        let addr = addr?;
        let map = self.by_addr.lock().ok()?;
        let (count, since) = map.get(&addr)?;
        let left = Self::WINDOW.checked_sub(since.elapsed())?;
        (*count >= Self::MAX && !left.is_zero()).then_some(left)
    }

    pub fn failed(&self, addr: Option<std::net::IpAddr>) {
        let Some(addr) = addr else { return };
        let Ok(mut map) = self.by_addr.lock() else {
            return;
        };
        if map.len() >= Self::KEEP {
            map.retain(|_, (_, since)| since.elapsed() < Self::WINDOW);
            if map.len() >= Self::KEEP {
                // Still full of live windows: forget the oldest half rather than grow.
                let mut starts: Vec<std::time::Instant> = map.values().map(|v| v.1).collect();
                starts.sort();
                let cut = starts[starts.len() / 2];
                map.retain(|_, (_, since)| *since > cut);
            }
        }
        let entry = map.entry(addr).or_insert((0, std::time::Instant::now()));
        if entry.1.elapsed() >= Self::WINDOW {
            *entry = (0, std::time::Instant::now());
        }
        entry.0 += 1;
    }

    pub fn succeeded(&self, addr: Option<std::net::IpAddr>) {
        if let (Some(addr), Ok(mut map)) = (addr, self.by_addr.lock()) {
            map.remove(&addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HmacConfig, OneOrMany};

    fn source(kind: SourceKind) -> SourceConfig {
        SourceConfig {
            kind,
            token: None,
            secret: None,
            hmac: None,
            fields: Default::default(),
            dedup_window: std::time::Duration::from_secs(600),
        }
    }

    #[test]
    fn tokens_from_header_or_query_with_rotation() {
        let mut s = source(SourceKind::Cloud66);
        s.token = Some(OneOrMany::Many(vec![
            Secret::new("old"),
            Secret::new("new"),
        ]));
        let v = Verifier::new(&s);
        let none: [&str; 0] = [];
        assert_eq!(v.check_token(["Bearer new"], none), Ok(()));
        assert_eq!(v.check_token(["bearer old"], none), Ok(()));
        assert_eq!(v.check_token(none, ["old"]), Ok(()));
        assert_eq!(v.check_token(["Bearer new"], ["old"]), Ok(()));
        assert_eq!(v.check_token(none, none), Err(AuthError::MissingToken));
        assert_eq!(
            v.check_token(["Bearer nope"], none),
            Err(AuthError::WrongToken)
        );
        assert_eq!(
            v.check_token(["Basic old"], none),
            Err(AuthError::MissingToken)
        );
        assert_eq!(v.check_token(["Basic x"], ["new"]), Ok(()));
    }

    #[test]
    fn a_token_with_plus_slash_and_equals_pasted_into_the_url_as_it_is_is_taken() {
        let mut s = source(SourceKind::Cloud66);
        s.token = Some(OneOrMany::One(Secret::new("a+b/c==")));
        let v = Verifier::new(&s);
        let none: [&str; 0] = [];
        // As pasted, percent-encoded, and with the header.
        assert_eq!(v.check_token(none, ["a+b/c=="]), Ok(()));
        assert_eq!(v.check_token(none, ["a%2Bb%2Fc%3D%3D"]), Ok(()));
        assert_eq!(v.check_token(["Bearer a+b/c=="], none), Ok(()));
        // Neither reading of a wrong one is a token.
        assert_eq!(v.check_token(none, ["a b/c=="]), Err(AuthError::WrongToken));
        assert_eq!(
            v.check_token(none, ["a%20b/c=="]),
            Err(AuthError::WrongToken)
        );
        assert_eq!(v.check_token(none, ["a+b/c="]), Err(AuthError::WrongToken));
        // A token with a space is still taken in its form-encoded spelling.
        s.token = Some(OneOrMany::One(Secret::new("a b")));
        let v = Verifier::new(&s);
        assert_eq!(v.check_token(none, ["a+b"]), Ok(()));
        assert_eq!(v.check_token(none, ["a%20b"]), Ok(()));
        assert_eq!(v.check_token(none, ["a%2Bb"]), Err(AuthError::WrongToken));
    }

    #[test]
    fn a_wrong_token_next_to_a_right_one_is_refused() {
        let mut s = source(SourceKind::Cloud66);
        s.token = Some(OneOrMany::Many(vec![
            Secret::new("old"),
            Secret::new("new"),
        ]));
        let v = Verifier::new(&s);
        for (bearer, query) in [
            (vec!["Bearer nope"], vec!["new"]),
            (vec!["Bearer new"], vec!["nope"]),
            (vec![], vec!["new", "nope"]),
            (vec!["Bearer old", "Bearer nope"], vec![]),
            (vec!["Bearer new"], vec!["old", ""]),
        ] {
            assert_eq!(
                v.check_token(bearer.clone(), query.clone()),
                Err(AuthError::WrongToken),
                "{bearer:?} {query:?}"
            );
        }
        assert_eq!(v.check_token(["Bearer old"], ["new", "old"]), Ok(()));
    }

    #[test]
    fn simplebackups_signature_on_raw_bytes() {
        let mut s = source(SourceKind::Simplebackups);
        s.secret = Some(OneOrMany::Many(vec![Secret::new("k1"), Secret::new("k2")]));
        let v = Verifier::new(&s);
        let body = br#"{"id":1}"#;
        assert_eq!(v.check_signature(Some(&sign("k2", body)), body), Ok(()));
        assert_eq!(v.check_signature(Some(&sign("k1", body)), body), Ok(()));
        assert!(v.check_signature(Some(&sign("k3", body)), body).is_err());
        // One changed byte breaks it.
        assert!(v
            .check_signature(Some(&sign("k1", body)), br#"{"id":2}"#)
            .is_err());
        assert!(v.check_signature(Some("zz"), body).is_err());
        let good = sign("k1", body);
        let upper = good.to_uppercase();
        assert_eq!(v.check_signature(Some(&upper), body), Ok(()));
        for bad in [&good[..62], &format!("{good}00"), ""] {
            assert_eq!(
                v.check_signature(Some(bad), body),
                Err(AuthError::WrongSignature("SB-Signature".into())),
                "{bad}"
            );
        }
        assert_eq!(
            v.check_signature(None, body),
            Err(AuthError::MissingSignature("SB-Signature".into()))
        );
    }

    #[test]
    fn generic_hmac_with_prefix() {
        let mut s = source(SourceKind::Generic);
        s.hmac = Some(HmacConfig {
            header: "X-Hub-Signature-256".into(),
            secret: OneOrMany::One(Secret::new("gh")),
            prefix: "sha256=".into(),
        });
        let v = Verifier::new(&s);
        let body = b"{}";
        let good = format!("sha256={}", sign("gh", body));
        assert_eq!(v.signature_header(), Some("X-Hub-Signature-256"));
        assert_eq!(v.check_signature(Some(&good), body), Ok(()));
        assert!(v.check_signature(Some(&sign("other", body)), body).is_err());
    }

    #[test]
    fn ten_wrong_tokens_block_an_address_for_the_window_and_a_right_one_clears() {
        let w = WrongTokens::default();
        let a = Some("10.0.0.1".parse().unwrap());
        let b = Some("10.0.0.2".parse().unwrap());
        for _ in 0..WrongTokens::MAX - 1 {
            w.failed(a);
        }
        assert!(w.blocked(a).is_none());
        w.failed(a);
        let left = w.blocked(a).expect("blocked after MAX");
        assert!(left <= WrongTokens::WINDOW);
        assert!(w.blocked(b).is_none(), "another address is not");
        assert!(w.blocked(None).is_none());
        w.succeeded(a);
        assert!(w.blocked(a).is_none());
    }
}
