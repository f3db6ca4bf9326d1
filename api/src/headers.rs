//! What every answer carries whatever route made it: `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy: no-referrer` on all; the framework's own plain-text rejections (413 from the
//! body limit) answered as JSON like every other error. The dashboard page adds its
//! Content-Security-Policy and X-Frame-Options itself ([`crate::dashboard::index`]).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};

use crate::error::ApiError;

/// Adds the headers every answer carries, and turns a non-JSON 413 into the API's JSON error.
pub fn harden(resp: Response, body_limit: usize) -> Response {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let mut resp = if resp.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        ApiError::TooLarge(format!(
            "request body larger than the limit of {body_limit} bytes"
        ))
        .into_response()
    } else {
        resp
    };
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}
