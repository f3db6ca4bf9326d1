//! Bearer-token authorisation of mutations. The token comes from configuration
//! (`TICKCAST_API_TOKEN`), is compared in constant time and is never logged or echoed. Without
//! a configured token every mutation is refused (403), so an API started without one is
//! read-only rather than open.

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use subtle::ConstantTimeEq as _;

use crate::error::ApiError;

/// The configured token, if any.
#[derive(Clone, Default)]
pub struct Auth {
    token: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Auth {
    /// `None` or an empty string: mutations disabled.
    pub fn new(token: Option<&str>) -> Self {
        Self {
            token: token
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| Arc::from(t.as_bytes())),
        }
    }

    /// Whether mutations can be authorised at all.
    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    /// Checks `Authorization: Bearer <token>`.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(want) = &self.token else {
            return Err(ApiError::Forbidden(
                "mutations are disabled: the server has no API token configured \
                 (set TICKCAST_API_TOKEN)"
                    .into(),
            ));
        };
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Err(ApiError::Unauthorized(
                "missing `Authorization: Bearer <token>` header".into(),
            ));
        };
        let got = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .ok_or_else(|| {
                ApiError::Unauthorized("the `Authorization` header is not `Bearer <token>`".into())
            })?;
        // `ct_eq` on slices of different lengths returns false without comparing contents, so
        // only the length can leak; the token's length is not a secret worth more.
        if bool::from(got.as_bytes().ct_eq(want)) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized("invalid bearer token".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(v: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = v {
            h.insert(AUTHORIZATION, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    fn status(r: Result<(), ApiError>) -> u16 {
        match r {
            Ok(()) => 200,
            Err(e) => e.status().as_u16(),
        }
    }

    #[test]
    fn tokens_are_checked() {
        let a = Auth::new(Some("s3cret"));
        assert!(a.enabled());
        assert_eq!(status(a.check(&headers(Some("Bearer s3cret")))), 200);
        assert_eq!(status(a.check(&headers(Some("bearer s3cret")))), 200);
        assert_eq!(status(a.check(&headers(None))), 401);
        assert_eq!(status(a.check(&headers(Some("Bearer s3cre")))), 401);
        assert_eq!(status(a.check(&headers(Some("Bearer s3cret2")))), 401);
        assert_eq!(status(a.check(&headers(Some("Basic s3cret")))), 401);
        assert_eq!(status(a.check(&headers(Some("s3cret")))), 401);
        let off = Auth::new(Some("  "));
        assert!(!off.enabled());
        assert_eq!(status(off.check(&headers(Some("Bearer x")))), 403);
        assert!(!format!("{a:?}").contains("s3cret"));
    }
}
