//! The one API error type. 4xx bodies say exactly what was wrong; 5xx bodies hide details,
//! which are logged instead.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to a client.
#[derive(Debug)]
pub enum ApiError {
    /// A request parameter is invalid.
    BadParam { field: String, reason: String },
    /// The request could not be parsed at all.
    BadRequest(String),
    /// Anything on our side.
    Internal(anyhow::Error),
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn param(field: &str, reason: impl Into<String>) -> Self {
        Self::BadParam {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::Internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::BadParam { field, reason } => {
                let msg = format!("invalid `{field}`: {reason}");
                (
                    StatusCode::BAD_REQUEST,
                    Json(Body {
                        error: &msg,
                        field: Some(&field),
                    }),
                )
                    .into_response()
            }
            ApiError::BadRequest(msg) => (
                StatusCode::BAD_REQUEST,
                Json(Body {
                    error: &msg,
                    field: None,
                }),
            )
                .into_response(),
            ApiError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "request failed");
                let body = Body {
                    error: "internal error",
                    field: None,
                };
                (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
            }
        }
    }
}
