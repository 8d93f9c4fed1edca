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

/// Why a token was refused (the message NovaCron's API server gives, spec §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authorization header required")]
    Missing,
    #[error("authorization header must start with 'Bearer '")]
    NotBearer,
    #[error("invalid or expired token")]
    Invalid,
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
            (Some(h), _) => h.strip_prefix("Bearer ").ok_or(AuthError::NotBearer)?,
            (None, Some(q)) => q,
            (None, None) => return Err(AuthError::Missing),
        };
        verify_hs256(secret, token.trim(), chrono::Utc::now().timestamp())
    }
}

/// Verifies an HS256 JWT's signature and, when present, its `exp` (seconds) against `now`.
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
    let claims: serde_json::Value = URL_SAFE_NO_PAD
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(AuthError::Invalid)?;
    if let Some(exp) = claims.get("exp") {
        match exp.as_f64() {
            Some(exp) if (now as f64) < exp => {}
            _ => return Err(AuthError::Invalid),
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

    #[test]
    fn roundtrip_and_rejections() {
        let t = sign_hs256(b"s3cret", &json!({"sub":"u1","exp": 2_000_000_000}));
        assert_eq!(verify_hs256(b"s3cret", &t, 1_700_000_000), Ok(()));
        assert_eq!(
            verify_hs256(b"other", &t, 1_700_000_000),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            verify_hs256(b"s3cret", &t, 2_100_000_000),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            verify_hs256(b"s3cret", "test-token-123", 0),
            Err(AuthError::Invalid)
        );
        let a = Auth::new(Some("s3cret"));
        assert_eq!(a.check(None, None), Err(AuthError::Missing));
        assert_eq!(a.check(Some("Basic x"), None), Err(AuthError::NotBearer));
        assert!(Auth::new(None).check(None, None).is_ok());
    }
}
