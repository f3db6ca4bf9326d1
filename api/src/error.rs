//! The one API error type. 4xx bodies say exactly what was wrong (and name the field when one
//! parameter is at fault); 5xx bodies hide details, which are logged instead.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to a client.
#[derive(Debug)]
pub enum ApiError {
    /// A request parameter is invalid.
    BadParam {
        field: String,
        reason: String,
    },
    /// The request could not be parsed at all.
    BadRequest(String),
    /// No or a wrong bearer token.
    Unauthorized(String),
    /// The operation is not allowed here (e.g. mutations without a configured token).
    Forbidden(String),
    NotFound(String),
    MethodNotAllowed(String),
    /// The request body is over the size limit.
    TooLarge(String),
    /// A dependency (store, broker, live stream) is not available.
    Unavailable(String),
    /// Anything on our side.
    Internal(anyhow::Error),
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What was wrong.
    pub error: String,
    /// The parameter or body field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn param(field: &str, reason: impl Into<String>) -> Self {
        Self::BadParam {
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadParam { .. } | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A query string that did not deserialise: a 400 naming the parameter when the message
/// says which (`unknown field `x``, or `x: invalid digit…`).
pub fn query_error(e: &axum::extract::rejection::QueryRejection) -> ApiError {
    let text = e.body_text();
    let detail = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    if let Some(rest) = detail.strip_prefix("unknown field `")
        && let Some((name, _)) = rest.split_once('`')
    {
        return ApiError::param(name, format!("unknown parameter ({detail})"));
    }
    if let Some((name, reason)) = detail.split_once(": ")
        && !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return ApiError::param(name, reason);
    }
    ApiError::BadRequest(text)
}

impl From<anyhow::Error> for ApiError {
    /// A store that cannot be reached is a 503 that says so; anything else a 500.
    fn from(e: anyhow::Error) -> Self {
        match tickcast_store::unavailable(&e) {
            Some(why) => Self::Unavailable(format!("the store is unavailable: {why}")),
            None => Self::Internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (error, field) = match self {
            ApiError::BadParam { field, reason } => {
                (format!("invalid `{field}`: {reason}"), Some(field))
            }
            ApiError::BadRequest(m)
            | ApiError::Unauthorized(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::MethodNotAllowed(m)
            | ApiError::TooLarge(m)
            | ApiError::Unavailable(m) => (m, None),
            ApiError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "request failed");
                ("internal error".to_string(), None)
            }
        };
        let mut resp = (status, Json(ErrorBody { error, field })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}
