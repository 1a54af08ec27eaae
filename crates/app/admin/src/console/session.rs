//! Console sessions, cookies, CSRF tokens and form bodies.
//!
//! A session is a random 256-bit id from the operating system's generator, sent only as
//! an `HttpOnly; SameSite=Strict` cookie scoped to `/console`. The server keeps the
//! SHA-256 of the id (so that a look-up's timing says nothing about a guessed id), the
//! SHA-256 of the token that signed in (never the token: each request re-checks it
//! against the tokens in force, so revoking the token ends the session), a CSRF token
//! for the session's forms, and an absolute expiry. The store is in memory and bounded:
//! a restart signs everybody out, which for an admin console is the safe default.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use http::Response;
use http::header::{self, HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::{Auth, Principal};
use crate::body::ProxyBody;

/// The session cookie.
pub(crate) const SESSION_COOKIE: &str = "sidelight_session";
/// The sign-in form's CSRF cookie (double submit: there is no session yet to hold it).
pub(crate) const LOGIN_COOKIE: &str = "sidelight_login";
/// How long a session lasts from sign-in, whatever its activity: a working day.
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// How long the sign-in form stays usable.
pub(crate) const LOGIN_FORM_LIFETIME: Duration = Duration::from_secs(3600);
/// The most sessions kept at once; past it the oldest is dropped. Bounds memory against
/// a holder of a valid token who signs in in a loop.
const MAX_SESSIONS: usize = 1024;

/// A message for the next page a session sees (after a form's redirect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Flash {
    /// Whether it reports a success (else a refusal).
    pub(crate) ok: bool,
    pub(crate) text: String,
}

struct Session {
    /// The SHA-256 of the token that signed in.
    token_digest: [u8; 32],
    csrf: String,
    created: Instant,
    flash: Option<Flash>,
}

/// A live session, as a request sees it.
#[derive(Debug, Clone)]
pub(crate) struct SessionRef {
    /// The store's key: the SHA-256 of the cookie's id.
    pub(crate) key: [u8; 32],
    pub(crate) token_digest: [u8; 32],
    pub(crate) csrf: String,
}

/// The signed-in sessions.
#[derive(Default)]
pub(crate) struct Sessions {
    inner: Mutex<HashMap<[u8; 32], Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

/// 32 bytes from the operating system's generator, base64url: session ids and CSRF
/// tokens.
pub(crate) fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn key_of(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

// === impl Sessions ===

impl Sessions {
    /// A new session for the holder of the token whose digest is `token_digest`; returns
    /// the cookie's id.
    pub(crate) fn create(&self, token_digest: [u8; 32]) -> Result<String, getrandom::Error> {
        let id = random_token()?;
        let csrf = random_token()?;
        let now = Instant::now();
        let mut sessions = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|_, s| now.duration_since(s.created) < SESSION_LIFETIME);
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            key_of(&id),
            Session {
                token_digest,
                csrf,
                created: now,
                flash: None,
            },
        );
        Ok(id)
    }

    /// The live session whose id is `id`; an expired one is removed.
    pub(crate) fn find(&self, id: &str) -> Option<SessionRef> {
        let key = key_of(id);
        let mut sessions = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let session = sessions.get(&key)?;
        if session.created.elapsed() >= SESSION_LIFETIME {
            sessions.remove(&key);
            return None;
        }
        Some(SessionRef {
            key,
            token_digest: session.token_digest,
            csrf: session.csrf.clone(),
        })
    }

    /// Ends a session.
    pub(crate) fn remove(&self, key: &[u8; 32]) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// Leaves a message for the session's next page.
    pub(crate) fn set_flash(&self, key: &[u8; 32], flash: Flash) {
        if let Some(s) = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(key)
        {
            s.flash = Some(flash);
        }
    }

    /// Takes the message left for this page, if any.
    pub(crate) fn take_flash(&self, key: &[u8; 32]) -> Option<Flash> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(key)
            .and_then(|s| s.flash.take())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value for `name`, scoped to the console; `max_age` zero deletes it.
pub(crate) fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{name}={value}; Max-Age={}; Path=/console; HttpOnly; SameSite=Strict{secure}",
        max_age.as_secs()
    )
}

pub(crate) use crate::query::{field, parse_form, percent_encode};

/// The console's state on the admin listener.
#[derive(Debug)]
pub struct Console {
    pub(crate) sessions: Sessions,
    /// Whether the admin listener serves TLS: cookies then carry `Secure`.
    pub(crate) secure: bool,
}

/// Who a console request comes from, by its cookies.
pub(crate) enum Visitor {
    /// A live session, and who holds it now.
    SignedIn(SessionRef, Principal),
    /// A session cookie that no longer leads to a session (expired, revoked, signed
    /// out elsewhere, or from before a restart).
    Stale,
    /// No session cookie.
    Anonymous,
}

/// The one place that decides a request's session and sets or clears its cookies.
impl Console {
    pub fn new(secure: bool) -> Self {
        Self {
            sessions: Sessions::default(),
            secure,
        }
    }

    /// Who sent `headers`. A session whose token was revoked or expired since sign-in
    /// ends here.
    pub(crate) fn visitor(&self, headers: &HeaderMap, auth: &Auth) -> Visitor {
        let Some(id) = cookie(headers, SESSION_COOKIE) else {
            return Visitor::Anonymous;
        };
        let Some(session) = self.sessions.find(id) else {
            return Visitor::Stale;
        };
        match auth.session_principal(&session.token_digest) {
            Some(principal) => Visitor::SignedIn(session, principal),
            None => {
                self.sessions.remove(&session.key);
                Visitor::Stale
            }
        }
    }

    /// The sign-in form's CSRF token: the one its cookie carries, or a new one (then
    /// `true`: the answer must set the cookie with [`Console::set_login_token`]).
    pub(crate) fn login_token(
        &self,
        headers: &HeaderMap,
    ) -> Result<(String, bool), getrandom::Error> {
        let existing = cookie(headers, LOGIN_COOKIE).filter(|v| {
            v.len() == 43
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        match existing {
            Some(v) => Ok((v.to_owned(), false)),
            None => random_token().map(|v| (v, true)),
        }
    }

    /// Sets the sign-in form's CSRF cookie.
    pub(crate) fn set_login_token(&self, response: &mut Response<ProxyBody>, token: &str) {
        add_cookie(
            response,
            &set_cookie(LOGIN_COOKIE, token, LOGIN_FORM_LIFETIME, self.secure),
        );
    }

    /// The CSRF token a sign-in form must carry: its cookie's.
    pub(crate) fn expected_login_token(headers: &HeaderMap) -> Option<String> {
        cookie(headers, LOGIN_COOKIE).map(str::to_owned)
    }

    /// Starts a session for the token with `digest`: its cookie replaces the sign-in
    /// form's.
    pub(crate) fn start_session(
        &self,
        response: &mut Response<ProxyBody>,
        digest: [u8; 32],
    ) -> Result<(), getrandom::Error> {
        let id = self.sessions.create(digest)?;
        add_cookie(
            response,
            &set_cookie(SESSION_COOKIE, &id, SESSION_LIFETIME, self.secure),
        );
        add_cookie(
            response,
            &set_cookie(LOGIN_COOKIE, "", Duration::ZERO, self.secure),
        );
        Ok(())
    }

    /// Ends `session` (if any) and clears its cookie.
    pub(crate) fn end_session(
        &self,
        response: &mut Response<ProxyBody>,
        session: Option<&SessionRef>,
    ) {
        if let Some(session) = session {
            self.sessions.remove(&session.key);
        }
        add_cookie(
            response,
            &set_cookie(SESSION_COOKIE, "", Duration::ZERO, self.secure),
        );
    }
}

fn add_cookie(response: &mut Response<ProxyBody>, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn sessions_are_found_by_id_and_end() {
        let sessions = Sessions::default();
        let id = sessions.create([7; 32]).unwrap();
        assert_eq!(id.len(), 43, "32 random bytes, base64url");
        let found = sessions.find(&id).unwrap();
        assert_eq!(found.token_digest, [7; 32]);
        assert!(sessions.find("not-the-id").is_none());
        sessions.set_flash(
            &found.key,
            Flash {
                ok: true,
                text: "done".to_owned(),
            },
        );
        assert_eq!(sessions.take_flash(&found.key).unwrap().text, "done");
        assert!(sessions.take_flash(&found.key).is_none());
        sessions.remove(&found.key);
        assert!(sessions.find(&id).is_none());
    }

    #[test]
    fn the_store_is_bounded() {
        let sessions = Sessions::default();
        let first = sessions.create([1; 32]).unwrap();
        for _ in 0..MAX_SESSIONS {
            sessions.create([2; 32]).unwrap();
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(sessions.find(&first).is_none(), "the oldest was dropped");
    }

    #[test]
    fn cookies_forms_and_encoding() {
        let mut headers = HeaderMap::new();
        headers.append(
            http::header::COOKIE,
            "a=1; sidelight_session=xyz".parse().unwrap(),
        );
        headers.append(http::header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
        let form = parse_form(b"csrf=a%2Bb&reason=too+high&outcome=").unwrap();
        assert_eq!(field(&form, "csrf"), Some("a+b"));
        assert_eq!(field(&form, "reason"), Some("too high"));
        assert_eq!(field(&form, "outcome"), Some(""));
        assert!(parse_form(b"x=%zz").is_none());
        assert_eq!(percent_encode("a b/c~"), "a%20b%2Fc~");
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("", ""));
        let set = set_cookie(SESSION_COOKIE, "v", SESSION_LIFETIME, true);
        assert_eq!(
            set,
            "sidelight_session=v; Max-Age=28800; Path=/console; HttpOnly; SameSite=Strict; Secure"
        );
    }
}
