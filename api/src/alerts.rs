//! `/api/v1/alerts`: alert rules (read by anyone; created, replaced and deleted with the bearer
//! token) and alert events. A rule change is picked up by the alert stage at its next reload
//! (every `--alert-reload-ms`, or at once when the stage runs in the same process).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tickcast_alerts::{Rule, RuleSpec};
use tickcast_core::domain::{Alert, AlertState};
use tickcast_store::{AlertEventQuery, AlertRuleRow, SOURCE_API};

use crate::AppState;
use crate::error::{ApiError, ErrorBody, query_error};
use crate::routes::{Page, exchange_param, limit_param, symbol_param};

/// A stored rule.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RuleOut {
    pub rule: RuleSpec,
    /// `file` (from `--alert-rules`, replaced at each start) or `api`.
    pub source: String,
    pub updated_ms: i64,
}

impl From<AlertRuleRow> for RuleOut {
    fn from(r: AlertRuleRow) -> Self {
        Self {
            rule: r.rule.into(),
            source: r.source,
            updated_ms: r.updated_ms,
        }
    }
}

/// `GET /api/v1/alerts/rules` — every rule, ordered by id.
#[utoipa::path(get, path = "/api/v1/alerts/rules", tag = "alerts",
    responses((status = 200, body = Page<RuleOut>)))]
pub async fn list_rules(State(state): State<AppState>) -> Result<Json<Page<RuleOut>>, ApiError> {
    let data: Vec<RuleOut> = state
        .store
        .alert_rules()
        .await?
        .into_iter()
        .map(RuleOut::from)
        .collect();
    Ok(Json(Page::new(data)))
}

fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::param("id", "must match [a-z0-9_-]{1,64}"))
    }
}

/// `GET /api/v1/alerts/rules/{id}`.
#[utoipa::path(get, path = "/api/v1/alerts/rules/{id}", tag = "alerts",
    params(("id" = String, Path, description = "Rule id", pattern = "^[a-z0-9_-]{1,64}$")),
    responses((status = 200, body = RuleOut), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_rule(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RuleOut>, ApiError> {
    check_id(&id)?;
    let row = state
        .store
        .alert_rule(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no alert rule `{id}`")))?;
    Ok(Json(row.into()))
}

/// `PUT /api/v1/alerts/rules/{id}` — creates (201) or replaces (200) a rule; the body's `id`
/// must equal the path's. Needs the bearer token.
#[utoipa::path(put, path = "/api/v1/alerts/rules/{id}", tag = "alerts",
    params(("id" = String, Path, description = "Rule id", pattern = "^[a-z0-9_-]{1,64}$")),
    request_body = RuleSpec,
    security(("bearer" = [])),
    responses((status = 200, body = RuleOut, description = "replaced"),
        (status = 201, body = RuleOut, description = "created"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn put_rule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    state.auth.check(&headers)?;
    check_id(&id)?;
    let rule = Rule::from_json(&body).map_err(|e| ApiError::param(&e.field, e.reason))?;
    if rule.id != id {
        return Err(ApiError::param(
            "id",
            format!("the body's id `{}` differs from the path's `{id}`", rule.id),
        ));
    }
    let row = AlertRuleRow {
        rule,
        source: SOURCE_API.to_string(),
        updated_ms: tickcast_core::now_ms(),
    };
    let created = state.store.put_alert_rule(&row).await?;
    state.notify_rules_changed();
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(RuleOut::from(row))).into_response())
}

/// `DELETE /api/v1/alerts/rules/{id}` — 204, or 404 when there is no such rule. Needs the
/// bearer token.
#[utoipa::path(delete, path = "/api/v1/alerts/rules/{id}", tag = "alerts",
    params(("id" = String, Path, description = "Rule id", pattern = "^[a-z0-9_-]{1,64}$")),
    security(("bearer" = [])),
    responses((status = 204, description = "deleted"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn delete_rule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    state.auth.check(&headers)?;
    check_id(&id)?;
    if state.store.delete_alert_rule(&id).await? {
        state.notify_rules_changed();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no alert rule `{id}`")))
    }
}

/// Filters of `GET /api/v1/alerts/events`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Rule id.
    #[param(pattern = r"^[a-z0-9_-]{1,64}$")]
    pub rule: Option<String>,
    #[param(pattern = r"^[a-z0-9_]{1,32}$")]
    pub exchange: Option<String>,
    #[param(pattern = r"^[A-Z0-9]{1,16}(-[A-Z0-9]{1,16}){1,4}$")]
    pub symbol: Option<String>,
    pub state: Option<AlertState>,
    /// Inclusive lower bound on `ts_ms`.
    pub from: Option<i64>,
    /// Exclusive upper bound on `ts_ms`.
    pub to: Option<i64>,
    /// Page size, 1–10000 (default 500).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
}

/// `GET /api/v1/alerts/events` — alert events, newest first.
#[utoipa::path(get, path = "/api/v1/alerts/events", tag = "alerts", params(EventParams),
    responses((status = 200, body = Page<Alert>), (status = 400, body = ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    q: Result<Query<EventParams>, QueryRejection>,
) -> Result<Json<Page<Alert>>, ApiError> {
    let p = q.map(|Query(p)| p).map_err(|e| query_error(&e))?;
    if let Some(r) = &p.rule {
        check_id(r).map_err(|_| ApiError::param("rule", "must match [a-z0-9_-]{1,64}"))?;
    }
    if let Some(e) = &p.exchange {
        exchange_param("exchange", e)?;
    }
    if let Some(s) = &p.symbol {
        symbol_param("symbol", s)?;
    }
    let limit = limit_param(p.limit)?;
    let data = state
        .store
        .alert_events(&AlertEventQuery {
            rule_id: p.rule,
            exchange: p.exchange,
            symbol: p.symbol,
            state: p.state,
            from_ms: p.from,
            to_ms: p.to,
            limit,
        })
        .await?;
    Ok(Json(Page::new(data)))
}
