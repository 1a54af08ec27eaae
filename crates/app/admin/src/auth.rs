//! Who may call the admin API: bearer tokens with roles.
//!
//! A request authenticates with `Authorization: Bearer <token>`. The token is hashed with
//! SHA-256 and the digest compared, in constant time, with every configured digest: the
//! config holds digests only, and comparing digests of the whole token leaks nothing
//! about how much of a guess was right. The token set sits behind an [`ArcSwap`] so that
//! a config reload swaps it without a lock on the request path, which is how a token is
//! revoked while Sidelight runs.
//!
//! Tokens are never logged; the name of the token's holder (the principal) is.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use base64::Engine;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::body::ProxyBody;
pub use crate::config::Role;
use crate::config::{AdminConfig, ConfigError, TokenConfig};
use crate::error::json_error;

/// Who is calling: the holder of a valid token, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `name`, for logs and audit records.
    pub name: String,
    /// The token's role.
    pub role: Role,
}

/// One configured token, ready to compare.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Credential {
    name: String,
    role: Role,
    digest: [u8; 32],
    expires: Option<SystemTime>,
    revoked: bool,
}

/// The access rules in force: the tokens and whether `/metrics` needs one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    credentials: Vec<Credential>,
    pub metrics_token_required: bool,
}

impl AccessPolicy {
    /// The policy of `admin`: its tokens and those of its `tokens_file` (read here).
    pub fn from_config(admin: &AdminConfig) -> Result<Self, ConfigError> {
        let credentials = admin
            .all_tokens()?
            .iter()
            .map(credential)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            credentials,
            metrics_token_required: admin.metrics_token_required,
        })
    }

    /// How many tokens are configured (revoked and expired ones included).
    pub fn token_count(&self) -> usize {
        self.credentials.len()
    }

    /// Whether the tokens (not the metrics rule) differ from `other`'s.
    pub fn tokens_differ(&self, other: &AccessPolicy) -> bool {
        self.credentials != other.credentials
    }
}

fn credential(token: &TokenConfig) -> Result<Credential, ConfigError> {
    // The entries were validated by `all_tokens`; these errors only guard the invariant.
    let invalid = |field: &str, message: &str| ConfigError::Invalid {
        key: format!("admin.tokens ({}).{field}", token.name),
        message: message.to_owned(),
    };
    let mut digest = [0u8; 32];
    hex::decode_to_slice(&token.sha256, &mut digest)
        .map_err(|_| invalid("sha256", "must be 64 hex digits"))?;
    let expires = match &token.expires {
        Some(text) => Some(
            crate::config::parse_rfc3339(text)
                .ok_or_else(|| invalid("expires", "must be an RFC 3339 time"))?,
        ),
        None => None,
    };
    Ok(Credential {
        name: token.name.clone(),
        role: token.role,
        digest,
        expires,
        revoked: token.revoked,
    })
}

/// Checks requests against the access policy in force, which a reload may swap.
pub struct Auth {
    policy: ArcSwap<AccessPolicy>,
}

/// Why a request was refused: the answer's status and code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NoTokensConfigured,
    Missing,
    Malformed,
    Unknown,
    Revoked,
    Expired,
    Forbidden,
}

impl Auth {
    pub fn new(policy: AccessPolicy) -> Self {
        Self {
            policy: ArcSwap::from_pointee(policy),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<AccessPolicy> {
        self.policy.load_full()
    }

    /// Puts `policy` in force for every request from now on.
    pub fn replace(&self, policy: AccessPolicy) {
        self.policy.store(Arc::new(policy));
    }

    /// The principal behind `headers`' bearer token if it has at least the role
    /// `needed`; otherwise the answer to send: 401 (no, a malformed, an unknown, a revoked
    /// or an expired token, or no tokens configured at all) or 403 (a role too low).
    /// `path` is only for the log line.
    // The error is the answer itself, sent at once by the caller: boxing it would only add
    // an allocation to every refused request.
    #[allow(clippy::result_large_err)]
    pub fn authorize(
        &self,
        headers: &HeaderMap,
        needed: Role,
        path: &str,
    ) -> Result<Principal, Response<ProxyBody>> {
        self.check(headers, needed, SystemTime::now())
            .map_err(|(refusal, name)| {
                match (refusal, &name) {
                    // Probes and browsers without a token are routine; guessing is not.
                    (Refusal::Missing | Refusal::NoTokensConfigured, _) => {
                        tracing::debug!(path, reason = refusal.code(), "admin request refused");
                    }
                    (_, Some(principal)) => tracing::warn!(
                        path,
                        %principal,
                        reason = refusal.code(),
                        needed = %needed,
                        "admin request refused"
                    ),
                    (_, None) => {
                        tracing::warn!(path, reason = refusal.code(), "admin request refused");
                    }
                }
                refusal.response(needed, name.as_deref())
            })
    }

    /// The decision, apart from logging and the answer, at time `now`. On refusal, the
    /// reason and, when the token was recognised, its holder's name.
    fn check(
        &self,
        headers: &HeaderMap,
        needed: Role,
        now: SystemTime,
    ) -> Result<Principal, (Refusal, Option<String>)> {
        if self.policy.load().credentials.is_empty() {
            return Err((Refusal::NoTokensConfigured, None));
        }
        let token = bearer_token(headers).map_err(|refusal| (refusal, None))?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.check_digest(&digest, needed, now)
    }

    /// The decision for a token known by its SHA-256 `digest`.
    fn check_digest(
        &self,
        digest: &[u8; 32],
        needed: Role,
        now: SystemTime,
    ) -> Result<Principal, (Refusal, Option<String>)> {
        let policy = self.policy.load();
        if policy.credentials.is_empty() {
            return Err((Refusal::NoTokensConfigured, None));
        }
        // Every digest is compared, so the time taken says nothing about which matched.
        let mut found = None;
        for credential in &policy.credentials {
            if bool::from(credential.digest.ct_eq(digest)) {
                found = Some(credential);
            }
        }
        let credential = found.ok_or((Refusal::Unknown, None))?;
        let refuse = |refusal| Err((refusal, Some(credential.name.clone())));
        if credential.revoked {
            return refuse(Refusal::Revoked);
        }
        if credential.expires.is_some_and(|expires| now >= expires) {
            return refuse(Refusal::Expired);
        }
        if credential.role < needed {
            return refuse(Refusal::Forbidden);
        }
        Ok(Principal {
            name: credential.name.clone(),
            role: credential.role,
        })
    }

    /// The console's sign-in: the principal behind a token typed into a form (any role),
    /// with the token's digest, which the session keeps instead of the token. On refusal,
    /// a sentence for the sign-in page. Logged like a refused API call: the holder's
    /// name when the token is known, never the token.
    pub fn sign_in(&self, token: &str) -> Result<(Principal, [u8; 32]), &'static str> {
        let token = token.trim();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("enter an admin token");
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        match self.check_digest(&digest, Role::Viewer, SystemTime::now()) {
            Ok(principal) => Ok((principal, digest)),
            Err((refusal, name)) => {
                match &name {
                    Some(principal) => tracing::warn!(
                        %principal,
                        reason = refusal.code(),
                        "console sign-in refused"
                    ),
                    None => tracing::warn!(reason = refusal.code(), "console sign-in refused"),
                }
                Err(match refusal {
                    Refusal::NoTokensConfigured => {
                        "no admin tokens are configured, so nobody can sign in: create one with \
                         `sidelight token new`"
                    }
                    Refusal::Revoked => "this token has been revoked",
                    Refusal::Expired => "this token has expired",
                    _ => "this token is not valid",
                })
            }
        }
    }

    /// The principal behind a signed-in session's token `digest` under the policy in
    /// force now: a reload that revokes or removes the token, or its expiry, ends the
    /// session, and a changed role applies at once.
    pub fn session_principal(&self, digest: &[u8; 32]) -> Option<Principal> {
        self.check_digest(digest, Role::Viewer, SystemTime::now())
            .ok()
    }
}

/// The token of a single `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Result<&str, Refusal> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(Refusal::Missing)?;
    if values.next().is_some() {
        return Err(Refusal::Malformed);
    }
    let value = value.to_str().map_err(|_| Refusal::Malformed)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(Refusal::Malformed)?;
    let token = token.trim();
    // The scheme is case-insensitive (RFC 9110); the token is any visible ASCII without
    // spaces, so that tokens made elsewhere than `sidelight token new` work too.
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Refusal::Malformed);
    }
    Ok(token)
}

impl Refusal {
    fn code(self) -> &'static str {
        match self {
            Refusal::NoTokensConfigured => "no_tokens_configured",
            Refusal::Missing | Refusal::Malformed | Refusal::Unknown => "unauthorized",
            Refusal::Revoked => "token_revoked",
            Refusal::Expired => "token_expired",
            Refusal::Forbidden => "forbidden",
        }
    }

    fn response(self, needed: Role, name: Option<&str>) -> Response<ProxyBody> {
        let holder = name.map(|n| format!("token `{n}`")).unwrap_or_default();
        let (status, message, challenge) = match self {
            Refusal::NoTokensConfigured => (
                StatusCode::UNAUTHORIZED,
                "the admin API has no tokens configured, so it lets nobody in: create one \
                 with `sidelight token new --name NAME --role admin`, add the [[admin.tokens]] \
                 entry it prints to the config, and reload or restart"
                    .to_owned(),
                r#"Bearer realm="sidelight""#,
            ),
            Refusal::Missing => (
                StatusCode::UNAUTHORIZED,
                "this endpoint needs a token: send `Authorization: Bearer <token>`".to_owned(),
                r#"Bearer realm="sidelight""#,
            ),
            Refusal::Malformed => (
                StatusCode::UNAUTHORIZED,
                "the Authorization header must be one `Bearer <token>`".to_owned(),
                r#"Bearer realm="sidelight", error="invalid_request""#,
            ),
            Refusal::Unknown => (
                StatusCode::UNAUTHORIZED,
                "the token is not valid".to_owned(),
                r#"Bearer realm="sidelight", error="invalid_token""#,
            ),
            Refusal::Revoked => (
                StatusCode::UNAUTHORIZED,
                format!("{holder} has been revoked"),
                r#"Bearer realm="sidelight", error="invalid_token", error_description="revoked""#,
            ),
            Refusal::Expired => (
                StatusCode::UNAUTHORIZED,
                format!("{holder} has expired"),
                r#"Bearer realm="sidelight", error="invalid_token", error_description="expired""#,
            ),
            Refusal::Forbidden => (
                StatusCode::FORBIDDEN,
                format!("this endpoint needs the `{needed}` role or higher; {holder} is not"),
                r#"Bearer realm="sidelight", error="insufficient_scope""#,
            ),
        };
        let mut response = json_error(status, self.code(), &message);
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        response
    }
}

/// A new admin token: 32 bytes from the operating system's generator, base64url, with a
/// `sl_` prefix that secret scanners and people recognise.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "sl_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The hex SHA-256 of `token`: what `[[admin.tokens]] sha256` holds.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;

    fn token(name: &str, role: Role, secret: &str) -> TokenConfig {
        TokenConfig {
            name: name.to_owned(),
            role,
            sha256: token_sha256(secret),
            expires: None,
            revoked: false,
        }
    }

    fn auth(tokens: Vec<TokenConfig>) -> Auth {
        let admin = AdminConfig {
            tokens,
            ..AdminConfig::default()
        };
        Auth::new(AccessPolicy::from_config(&admin).unwrap())
    }

    fn bearer(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn a_token_is_known_by_its_digest_and_its_role_decides() {
        let auth = auth(vec![
            token("ann", Role::Viewer, "ann-secret"),
            token("ops", Role::Admin, "ops-secret"),
        ]);
        let now = SystemTime::now();
        let ann = auth.check(&bearer("Bearer ann-secret"), Role::Viewer, now);
        assert_eq!(ann.unwrap().name, "ann");
        let refused = auth.check(&bearer("Bearer ann-secret"), Role::Auditor, now);
        assert_eq!(
            refused.unwrap_err(),
            (Refusal::Forbidden, Some("ann".to_owned()))
        );
        let ops = auth.check(&bearer("bearer  ops-secret "), Role::Admin, now);
        assert_eq!(ops.unwrap().role, Role::Admin);
        for (headers, refusal) in [
            (HeaderMap::new(), Refusal::Missing),
            (bearer("ops-secret"), Refusal::Malformed),
            (bearer("Basic b3BzOnNlY3JldA=="), Refusal::Malformed),
            (bearer("Bearer "), Refusal::Malformed),
            (bearer("Bearer ops-secreT"), Refusal::Unknown),
        ] {
            let refused = auth.check(&headers, Role::Viewer, now).unwrap_err();
            assert_eq!(refused, (refusal, None), "{headers:?}");
        }
    }

    #[test]
    fn revoked_and_expired_tokens_are_refused_by_name() {
        let mut old = token("old", Role::Admin, "old-secret");
        old.expires = Some("2026-01-01T00:00:00Z".to_owned());
        let mut gone = token("gone", Role::Admin, "gone-secret");
        gone.revoked = true;
        let auth = auth(vec![old, gone]);
        let before = crate::config::parse_rfc3339("2025-12-31T23:59:59Z").unwrap();
        let after = before + Duration::from_secs(1);
        let old = bearer("Bearer old-secret");
        assert!(auth.check(&old, Role::Admin, before).is_ok());
        assert_eq!(
            auth.check(&old, Role::Viewer, after).unwrap_err().0,
            Refusal::Expired
        );
        let gone = auth.check(&bearer("Bearer gone-secret"), Role::Viewer, before);
        assert_eq!(
            gone.unwrap_err(),
            (Refusal::Revoked, Some("gone".to_owned()))
        );
    }

    #[test]
    fn no_tokens_lets_nobody_in() {
        let auth = auth(Vec::new());
        let refused = auth.check(&bearer("Bearer anything"), Role::Viewer, SystemTime::now());
        assert_eq!(refused.unwrap_err().0, Refusal::NoTokensConfigured);
        let response = Refusal::NoTokensConfigured.response(Role::Viewer, None);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    #[test]
    fn new_tokens_are_random_and_hash_to_their_entry() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("sl_") && a.len() == 3 + 43, "{a}");
        assert_eq!(
            token_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
