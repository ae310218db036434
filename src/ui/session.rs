//! Sign-in state of the web page: a signed session cookie and CSRF tokens.
//!
//! Nothing is kept on the server. The signing key is derived from `admin.token`,
//! so every replica accepts the same cookie, a restart signs nobody out, and
//! changing the token signs everyone out. The cookie holds an expiry time and a
//! random nonce with their HMAC, never the token. A form's CSRF token is the HMAC
//! of the session's nonce: only a page this server rendered for this session can
//! carry it. The sign-in form, which has no session yet, is tied the same way to a
//! short-lived cookie set with the form.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const SESSION_COOKIE: &str = "hookrelay_session";
pub const LOGIN_COOKIE: &str = "hookrelay_login";
/// How long a sign-in lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// How long the sign-in form may stay open before it must be loaded again.
pub const LOGIN_TTL: Duration = Duration::from_secs(3600);

/// The key that signs cookies and CSRF tokens.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(***)")
    }
}

/// A valid session read from its cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub nonce: String,
    /// Unix seconds.
    pub expires: i64,
}

impl Key {
    pub fn from_admin_token(token: &str) -> Key {
        let mut mac = HmacSha256::new_from_slice(token.as_bytes()).expect("any key length");
        mac.update(b"hookrelay web page session key v1");
        Key(mac.finalize().into_bytes().into())
    }

    fn mac(&self, parts: &[&str]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("any key length");
        for p in parts {
            // Length-prefixed, so no two different lists sign alike.
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p.as_bytes());
        }
        mac
    }

    fn sign(&self, parts: &[&str]) -> String {
        hex::encode(self.mac(parts).finalize().into_bytes())
    }

    fn verify(&self, parts: &[&str], given_hex: &str) -> bool {
        match hex::decode(given_hex) {
            Ok(given) => self.mac(parts).verify_slice(&given).is_ok(),
            Err(_) => false,
        }
    }

    /// A session cookie's value: `expires.nonce.mac`. Public so tests can make
    /// expired and forged ones.
    pub fn session_value(&self, expires: i64, nonce: &str) -> String {
        let exp = expires.to_string();
        format!("{exp}.{nonce}.{}", self.sign(&["session", &exp, nonce]))
    }

    /// A new session's cookie value, valid for [`SESSION_TTL`] from `now` (unix s).
    pub fn new_session(&self, now: i64) -> String {
        self.session_value(now + SESSION_TTL.as_secs() as i64, &new_nonce())
    }

    /// The session a cookie value holds, if it is signed with this key and has
    /// not expired at `now` (unix s).
    pub fn check_session(&self, value: &str, now: i64) -> Option<Session> {
        let mut it = value.splitn(3, '.');
        let (exp, nonce, mac) = (it.next()?, it.next()?, it.next()?);
        if !self.verify(&["session", exp, nonce], mac) {
            return None;
        }
        let expires: i64 = exp.parse().ok()?;
        (now < expires).then(|| Session {
            nonce: nonce.to_string(),
            expires,
        })
    }

    /// The CSRF token forms of this session carry.
    pub fn csrf(&self, session: &Session) -> String {
        self.sign(&["csrf", &session.nonce])
    }

    pub fn check_csrf(&self, session: &Session, given: &str) -> bool {
        self.verify(&["csrf", &session.nonce], given)
    }

    /// The sign-in form's cookie value (`expires.nonce`) and the CSRF token the
    /// form carries with it.
    pub fn new_login(&self, now: i64) -> (String, String) {
        let value = format!("{}.{}", now + LOGIN_TTL.as_secs() as i64, new_nonce());
        let token = self.sign(&["login", &value]);
        (value, token)
    }

    /// Whether a sign-in form's CSRF token belongs to its unexpired cookie.
    pub fn check_login(&self, cookie: &str, given: &str, now: i64) -> bool {
        let fresh = cookie
            .split_once('.')
            .and_then(|(exp, _)| exp.parse::<i64>().ok())
            .is_some_and(|exp| now < exp);
        fresh && self.verify(&["login", cookie], given)
    }
}

/// 128 random bits, hex. Not a secret: the MAC is what cannot be forged.
fn new_nonce() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// A `Set-Cookie` value for the web page: only sent to `/ui`, unreadable by
/// scripts, never sent along with a request another site starts. `Secure` when the
/// page was reached over HTTPS (a plain-HTTP setup would otherwise never sign in).
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/ui; Max-Age={}; HttpOnly; SameSite=Strict{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_valid_until_it_expires_and_only_with_its_own_signature() {
        let key = Key::from_admin_token("t0ken");
        let v = key.new_session(1_000);
        let s = key.check_session(&v, 1_000).expect("valid");
        assert_eq!(s.expires, 1_000 + SESSION_TTL.as_secs() as i64);
        assert!(key.check_session(&v, s.expires).is_none(), "expired");
        assert!(Key::from_admin_token("other")
            .check_session(&v, 1_000)
            .is_none());
        // A later expiry with the old signature.
        let (_, rest) = v.split_once('.').unwrap();
        assert!(key
            .check_session(&format!("99999999999.{rest}"), 1_000)
            .is_none());
        assert!(key.check_session("", 1_000).is_none());
        assert!(key.check_session("1.2.zz", 0).is_none());
        assert!(!v.contains("t0ken"));
    }

    #[test]
    fn csrf_tokens_belong_to_one_session_and_login_tokens_to_one_form() {
        let key = Key::from_admin_token("t0ken");
        let a = key.check_session(&key.new_session(0), 0).unwrap();
        let b = key.check_session(&key.new_session(0), 0).unwrap();
        assert!(key.check_csrf(&a, &key.csrf(&a)));
        assert!(!key.check_csrf(&b, &key.csrf(&a)));
        assert!(!key.check_csrf(&a, ""));
        let (cookie, token) = key.new_login(0);
        assert!(key.check_login(&cookie, &token, 0));
        assert!(!key.check_login(&cookie, &token, LOGIN_TTL.as_secs() as i64));
        let (other, _) = key.new_login(0);
        assert!(!key.check_login(&other, &token, 0));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let h = "a=1; hookrelay_session=x.y.z;b=2";
        assert_eq!(cookie(h, SESSION_COOKIE), Some("x.y.z"));
        assert_eq!(cookie(h, "b"), Some("2"));
        assert_eq!(cookie(h, "c"), None);
    }
}
