//! Bearer-token checks: any token (or none) by default, HS256 JWTs under `--jwt-secret`.
//!
//! Tokens are compared and verified here and nowhere else; they are never logged or put on
//! spans, metrics or error bodies.
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The auth policy of one server.
#[derive(Clone)]
pub struct Auth {
    secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("jwt_required", &self.secret.is_some())
            .finish()
    }
}

/// Clock skew tolerated on `exp` and `nbf`, in seconds: the issuer's clock and ours may
/// differ a little, and a token minted a moment "in the future" or expiring as it travels
/// should not flap between 200 and 401. RFC 7519 §4.1.4/§4.1.5 allow "some small leeway,
/// usually no more than a few minutes"; 30 s covers NTP-synced hosts with room to spare.
pub const CLOCK_SKEW_LEEWAY_SECS: i64 = 30;

/// Why a token was refused. `Display` is the message NovaCron's API server gives (spec §4.2),
/// so clients matching on it keep working; [`AuthError::reason`] says precisely why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authorization header required")]
    Missing,
    #[error("authorization header must start with 'Bearer '")]
    NotBearer,
    #[error("token is required")]
    Empty,
    /// Not a JWT, not HS256, or a bad signature.
    #[error("invalid or expired token")]
    Invalid,
    /// No `exp` claim: every token must expire.
    #[error("invalid or expired token")]
    MissingExp,
    /// `exp` (plus the leeway) is in the past.
    #[error("invalid or expired token")]
    Expired,
    /// `nbf` (minus the leeway) is in the future.
    #[error("invalid or expired token")]
    NotYetValid,
    /// `exp` or `nbf` is not a number of seconds.
    #[error("invalid or expired token")]
    BadTimeClaim,
}

impl AuthError {
    /// What exactly is wrong and how to fix it (safe to show: it never contains the token).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => {
                "no Authorization header (or ?token= on WebSocket routes); send `Authorization: Bearer <jwt>`"
            }
            AuthError::NotBearer => {
                "the Authorization scheme is not Bearer; send `Authorization: Bearer <jwt>`"
            }
            AuthError::Empty => "the bearer token is empty; send `Authorization: Bearer <jwt>`",
            AuthError::Invalid => {
                "the token is not an HS256 JWT signed with the server's --jwt-secret"
            }
            AuthError::MissingExp => {
                "the token has no `exp` claim; tokens must expire: add `exp` (seconds since the epoch)"
            }
            AuthError::Expired => "the token expired (`exp` is in the past); mint a new one",
            AuthError::NotYetValid => {
                "the token is not valid yet (`nbf` is in the future); check the issuer's clock"
            }
            AuthError::BadTimeClaim => "`exp` and `nbf` must be numbers (seconds since the epoch)",
        }
    }
}

impl Auth {
    pub fn new(secret: Option<&str>) -> Auth {
        Auth {
            secret: secret.map(|s| s.as_bytes().to_vec()),
        }
    }

    /// Checks an `Authorization` header value and/or a `?token=` query value.
    pub fn check(&self, header: Option<&str>, query_token: Option<&str>) -> Result<(), AuthError> {
        let Some(secret) = &self.secret else {
            return Ok(());
        };
        let token = match (header, query_token) {
            (Some(h), _) => bearer_token(h)?,
            (None, Some(q)) => q.trim(),
            (None, None) => return Err(AuthError::Missing),
        };
        if token.is_empty() {
            return Err(AuthError::Empty);
        }
        verify_hs256(secret, token, chrono::Utc::now().timestamp())
    }
}

/// The credentials of `Bearer <token>`. The scheme is case-insensitive (RFC 7235 §2.1:
/// `bearer` and `BEARER` are `Bearer`) and separated from the token by one or more spaces.
fn bearer_token(header: &str) -> Result<&str, AuthError> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::NotBearer);
    }
    Ok(rest.trim_start_matches(' '))
}

/// Verifies an HS256 JWT's signature and its time claims against `now` (seconds since the
/// epoch): `exp` is required and must not have passed, `nbf`, when present, must have come,
/// both within [`CLOCK_SKEW_LEEWAY_SECS`].
pub fn verify_hs256(secret: &[u8], token: &str, now: i64) -> Result<(), AuthError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Invalid);
    };
    let header: serde_json::Value = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(AuthError::Invalid)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err(AuthError::Invalid);
    }
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| AuthError::Invalid)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| AuthError::Invalid)?;
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&sig).map_err(|_| AuthError::Invalid)?;
    // Claims are read only once the signature holds: a forger learns nothing from them.
    let claims: serde_json::Value = URL_SAFE_NO_PAD
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(AuthError::Invalid)?;
    // NumericDate may be fractional (RFC 7519 §2); f64 compares it without truncation.
    let now = now as f64;
    let leeway = CLOCK_SKEW_LEEWAY_SECS as f64;
    let exp = match claims.get("exp") {
        None => return Err(AuthError::MissingExp),
        Some(v) => v.as_f64().ok_or(AuthError::BadTimeClaim)?,
    };
    // RFC 7519 §4.1.4: valid only while now is before exp.
    if now >= exp + leeway {
        return Err(AuthError::Expired);
    }
    if let Some(v) = claims.get("nbf") {
        let nbf = v.as_f64().ok_or(AuthError::BadTimeClaim)?;
        // §4.1.5: valid from nbf on.
        if now + leeway < nbf {
            return Err(AuthError::NotYetValid);
        }
    }
    Ok(())
}

/// Signs `claims` as an HS256 JWT (tests and examples mint tokens with it).
pub fn sign_hs256(secret: &[u8], claims: &serde_json::Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let p = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    let s = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{h}.{p}.{s}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn roundtrip_and_rejections() {
        let t = sign_hs256(b"s3cret", &json!({"sub":"u1","exp": 2_000_000_000}));
        assert_eq!(verify_hs256(b"s3cret", &t, NOW), Ok(()));
        assert_eq!(verify_hs256(b"other", &t, NOW), Err(AuthError::Invalid));
        assert_eq!(
            verify_hs256(b"s3cret", &t, 2_100_000_000),
            Err(AuthError::Expired)
        );
        assert_eq!(
            verify_hs256(b"s3cret", "test-token-123", 0),
            Err(AuthError::Invalid)
        );
        let a = Auth::new(Some("s3cret"));
        assert_eq!(a.check(None, None), Err(AuthError::Missing));
        assert_eq!(a.check(Some("Basic x"), None), Err(AuthError::NotBearer));
        assert_eq!(a.check(Some("Bearerx"), None), Err(AuthError::NotBearer));
        assert_eq!(a.check(Some("Bearer "), None), Err(AuthError::Empty));
        assert_eq!(a.check(Some("Bearer"), None), Err(AuthError::Empty));
        assert_eq!(a.check(None, Some("")), Err(AuthError::Empty));
        assert!(Auth::new(None).check(None, None).is_ok());
    }

    #[test]
    fn time_claims_are_enforced_with_leeway() {
        let sign = |claims| sign_hs256(b"k", &claims);
        let leeway = CLOCK_SKEW_LEEWAY_SECS;
        let no_exp = sign(json!({"sub":"u"}));
        assert_eq!(verify_hs256(b"k", &no_exp, NOW), Err(AuthError::MissingExp));
        let exp = |e: i64| sign(json!({"sub":"u","exp": e}));
        assert_eq!(
            verify_hs256(b"k", &exp(NOW - 3600), NOW),
            Err(AuthError::Expired)
        );
        // within the leeway past exp: still accepted; at its end: expired
        assert_eq!(verify_hs256(b"k", &exp(NOW - leeway + 1), NOW), Ok(()));
        assert_eq!(
            verify_hs256(b"k", &exp(NOW - leeway), NOW),
            Err(AuthError::Expired)
        );
        let nbf = |n: i64| sign(json!({"sub":"u","exp": NOW + 3600, "nbf": n}));
        assert_eq!(
            verify_hs256(b"k", &nbf(NOW + 3600), NOW),
            Err(AuthError::NotYetValid)
        );
        assert_eq!(
            verify_hs256(b"k", &nbf(NOW + leeway + 1), NOW),
            Err(AuthError::NotYetValid)
        );
        assert_eq!(verify_hs256(b"k", &nbf(NOW + leeway), NOW), Ok(()));
        assert_eq!(verify_hs256(b"k", &nbf(NOW - 10), NOW), Ok(()));
        // fractional NumericDate, and non-numeric claims
        let frac = sign(json!({"sub":"u","exp": NOW as f64 + 0.5}));
        assert_eq!(verify_hs256(b"k", &frac, NOW), Ok(()));
        let text = sign(json!({"sub":"u","exp": "tomorrow"}));
        assert_eq!(verify_hs256(b"k", &text, NOW), Err(AuthError::BadTimeClaim));
        let text_nbf = sign(json!({"sub":"u","exp": NOW + 60, "nbf": "now"}));
        assert_eq!(
            verify_hs256(b"k", &text_nbf, NOW),
            Err(AuthError::BadTimeClaim)
        );
        // a forged token is Invalid whatever its claims say
        let forged = sign_hs256(b"other", &json!({"sub":"u"}));
        assert_eq!(verify_hs256(b"k", &forged, NOW), Err(AuthError::Invalid));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let a = Auth::new(Some("k"));
        let t = sign_hs256(
            b"k",
            &json!({"sub":"u","exp": chrono::Utc::now().timestamp() + 3600}),
        );
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            assert_eq!(
                a.check(Some(&format!("{scheme} {t}")), None),
                Ok(()),
                "{scheme}"
            );
        }
        assert_eq!(a.check(Some(&format!("Bearer   {t}")), None), Ok(()));
        assert_eq!(
            a.check(Some(&format!("Token {t}")), None),
            Err(AuthError::NotBearer)
        );
        // NovaCron's message stays the same; the reason tells the client which claim to fix
        assert_eq!(
            AuthError::MissingExp.to_string(),
            "invalid or expired token"
        );
        assert!(AuthError::MissingExp.reason().contains("`exp`"));
        assert!(AuthError::NotYetValid.reason().contains("`nbf`"));
    }
}
