//! The alert tables (`migrations/*/0003_alerts.sql`): rules, events, the alert stage's
//! per-series state, and the webhook outbox. Types, SQL and method bodies shared by both
//! dialects (the SQL is written so that Postgres and SQLite read it alike).

use serde::{Deserialize, Serialize};
use tickcast_pipeline::domain::{AlertState, SCHEMA_VERSION};

use crate::alerts::rule::Rule;
use tickcast_pipeline::domain::Alert as AlertEvent;

/// Where a stored rule came from.
pub const SOURCE_FILE: &str = "file";
pub const SOURCE_API: &str = "api";

/// A rule as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRuleRow {
    pub rule: Rule,
    /// [`SOURCE_FILE`] or [`SOURCE_API`].
    pub source: String,
    pub updated_ms: i64,
}

/// Filters for alert-event reads. Newest `limit` events first (`ts_ms` descending, then id).
#[derive(Debug, Default, Clone)]
pub struct AlertEventQuery {
    pub rule_id: Option<String>,
    pub exchange: Option<String>,
    pub symbol: Option<String>,
    /// `pending`, `firing` or `resolved`.
    pub state: Option<AlertState>,
    /// Inclusive lower bound on `ts_ms`.
    pub from_ms: Option<i64>,
    /// Exclusive upper bound on `ts_ms`.
    pub to_ms: Option<i64>,
    pub limit: i64,
}

/// The alert stage's state of one series (JSON of the engine's series state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSeriesState {
    pub exchange: String,
    pub symbol: String,
    pub interval: String,
    pub state: String,
}

/// What the alert stage writes at a checkpoint, in one transaction: its events (upserted by
/// id), one outbox row per event and webhook endpoint (inserted only if absent, so an event
/// is never queued again once delivered), and the state of the series that changed.
#[derive(Debug, Default, Clone)]
pub struct AlertCheckpoint {
    pub events: Vec<AlertEvent>,
    /// Webhook endpoint names every event is queued for.
    pub endpoints: Vec<String>,
    pub series: Vec<AlertSeriesState>,
    /// Wall-clock time of the checkpoint (deliveries are due from then).
    pub now_ms: i64,
}

/// Where a webhook delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its (next) try at `next_ms`.
    Pending,
    /// The endpoint answered 2xx; never sent again.
    Delivered,
    /// Given up after the last try (or a response no retry can help): the dead-letter record.
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "dead" => Some(DeliveryStatus::Dead),
            _ => None,
        }
    }
}

/// A delivery claimed for one try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryJob {
    pub event_id: String,
    /// The exact JSON body (signed as is).
    pub body: String,
    /// Tries made before this one.
    pub attempts: i32,
}

/// The result of one try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered {
        attempts: i32,
    },
    Retry {
        attempts: i32,
        next_ms: i64,
        error: String,
    },
    Dead {
        attempts: i32,
        error: String,
    },
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub endpoint: String,
    pub event_id: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_ms: i64,
    /// The error of the last failed try (kept once delivered).
    pub last_error: Option<String>,
    pub updated_ms: i64,
}

/// Filters for outbox reads, oldest event first.
#[derive(Debug, Default, Clone)]
pub struct DeliveryQuery {
    pub endpoint: Option<String>,
    pub status: Option<DeliveryStatus>,
    pub limit: i64,
}

pub(crate) const RULES_SQL: &str =
    "select id, spec, source, updated_ms from alert_rules order by id";
pub(crate) const RULE_SQL: &str =
    "select id, spec, source, updated_ms from alert_rules where id = $1";
/// Upserts a rule; a row whose spec and source are unchanged is left as it is.
pub(crate) const PUT_RULE_SQL: &str = "insert into alert_rules (id, spec, source, updated_ms) \
    values ($1, $2, $3, $4) on conflict (id) do update set spec = excluded.spec, \
    source = excluded.source, updated_ms = excluded.updated_ms \
    where alert_rules.spec <> excluded.spec or alert_rules.source <> excluded.source";
pub(crate) const RULE_EXISTS_SQL: &str = "select count(*) from alert_rules where id = $1";
pub(crate) const DELETE_RULE_SQL: &str = "delete from alert_rules where id = $1";
pub(crate) const FILE_RULE_IDS_SQL: &str = "select id from alert_rules where source = 'file'";

pub(crate) const UPSERT_EVENT_SQL: &str = "insert into alert_events (id, rule_id, exchange, \
    symbol, interval, model, horizon, state, ts_ms, value, threshold, message) \
    values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) on conflict (id) do update set \
    rule_id = excluded.rule_id, exchange = excluded.exchange, symbol = excluded.symbol, \
    interval = excluded.interval, model = excluded.model, horizon = excluded.horizon, \
    state = excluded.state, ts_ms = excluded.ts_ms, value = excluded.value, \
    threshold = excluded.threshold, message = excluded.message";

pub(crate) const EVENTS_SQL: &str = "select id, rule_id, exchange, symbol, interval, model, \
    horizon, state, ts_ms, value, threshold, message from alert_events \
    where (cast($1 as text) is null or rule_id = $1) and (cast($2 as text) is null or exchange = $2) \
    and (cast($3 as text) is null or symbol = $3) and (cast($4 as text) is null or state = $4) \
    and (cast($5 as bigint) is null or ts_ms >= $5) and (cast($6 as bigint) is null or ts_ms < $6) \
    order by ts_ms desc, id limit $7";

pub(crate) const ENQUEUE_SQL: &str = "insert into alert_deliveries (endpoint, event_id, ts_ms, \
    body, status, attempts, next_ms, last_error, updated_ms) \
    values ($1, $2, $3, $4, 'pending', 0, $5, null, $5) on conflict (endpoint, event_id) do nothing";

pub(crate) const SAVE_STATE_SQL: &str = "insert into alert_state (consumer, exchange, symbol, \
    interval, state, updated_ms) values ($1, $2, $3, $4, $5, $6) \
    on conflict (consumer, exchange, symbol, interval) do update set state = excluded.state, \
    updated_ms = excluded.updated_ms";
pub(crate) const LOAD_STATE_SQL: &str = "select exchange, symbol, interval, state from alert_state \
    where consumer = $1 and exchange = $2 and symbol = $3 and interval = $4";

/// Claims up to `$4` due deliveries of endpoint `$1` at `$2` by moving their next try to `$3`
/// (a lease: a claim that is never finished is tried again after it).
pub(crate) const CLAIM_SQL_PG: &str = "update alert_deliveries set next_ms = $3, updated_ms = $2 \
    where (endpoint, event_id) in (select endpoint, event_id from alert_deliveries \
    where endpoint = $1 and status = 'pending' and next_ms <= $2 order by ts_ms, event_id limit $4 \
    for update skip locked) returning event_id, body, attempts, ts_ms";
pub(crate) const CLAIM_SQL_SQLITE: &str = "update alert_deliveries set next_ms = $3, updated_ms = $2 \
    where (endpoint, event_id) in (select endpoint, event_id from alert_deliveries \
    where endpoint = $1 and status = 'pending' and next_ms <= $2 order by ts_ms, event_id limit $4) \
    returning event_id, body, attempts, ts_ms";

/// Records a try's outcome; a delivered row keeps the error of its last failed try, if any.
pub(crate) const FINISH_SQL: &str = "update alert_deliveries set status = $3, attempts = $4, \
    next_ms = $5, last_error = coalesce($6, last_error), updated_ms = $7 \
    where endpoint = $1 and event_id = $2";
pub(crate) const NEXT_DUE_SQL: &str =
    "select min(next_ms) from alert_deliveries where endpoint = $1 and status = 'pending'";
pub(crate) const DELIVERIES_SQL: &str = "select endpoint, event_id, status, attempts, next_ms, \
    last_error, updated_ms from alert_deliveries \
    where (cast($1 as text) is null or endpoint = $1) and (cast($2 as text) is null or status = $2) \
    order by ts_ms, event_id, endpoint limit $3";

/// A row of [`EVENTS_SQL`].
pub(crate) type EventTuple = (
    String,
    String,
    String,
    String,
    String,
    String,
    i32,
    String,
    i64,
    f64,
    f64,
    String,
);

pub(crate) fn event_from(t: EventTuple) -> anyhow::Result<AlertEvent> {
    let state = match t.7.as_str() {
        "pending" => AlertState::Pending,
        "firing" => AlertState::Firing,
        "resolved" => AlertState::Resolved,
        s => anyhow::bail!("alert event {}: unknown state `{s}`", t.0),
    };
    Ok(AlertEvent {
        v: SCHEMA_VERSION,
        id: t.0,
        rule: t.1,
        exchange: t.2,
        symbol: t.3,
        interval: t.4,
        model: t.5,
        horizon: t.6.max(0) as u32,
        state,
        ts_ms: t.8,
        value: t.9,
        threshold: t.10,
        message: t.11,
    })
}

pub(crate) fn state_text(s: AlertState) -> &'static str {
    s.as_str()
}

/// `(id, spec, source, updated_ms)` → a row; `None` (logged) when the spec does not parse.
pub(crate) fn rule_from(t: (String, String, String, i64)) -> Option<AlertRuleRow> {
    match serde_json::from_str::<Rule>(&t.1) {
        Ok(rule) => Some(AlertRuleRow {
            rule,
            source: t.2,
            updated_ms: t.3,
        }),
        Err(e) => {
            tracing::error!(rule = %t.0, error = %e, "stored alert rule does not parse; ignored");
            None
        }
    }
}

pub(crate) type DeliveryTuple = (String, String, String, i32, i64, Option<String>, i64);

pub(crate) fn delivery_from(t: DeliveryTuple) -> DeliveryRow {
    DeliveryRow {
        endpoint: t.0,
        event_id: t.1,
        status: DeliveryStatus::parse(&t.2).unwrap_or(DeliveryStatus::Pending),
        attempts: t.3,
        next_ms: t.4,
        last_error: t.5,
        updated_ms: t.6,
    }
}

/// Inherent `…_in` methods behind every alert method of [`super::Store`], one text for both
/// dialects (each store's trait impl delegates to them). `$claim` is the dialect's claim
/// statement.
macro_rules! alert_methods {
    ($claim:expr) => {
        async fn alert_rules_in(&self) -> anyhow::Result<Vec<$crate::store::AlertRuleRow>> {
            let rows: Vec<(String, String, String, i64)> =
                sqlx::query_as($crate::store::alerts::RULES_SQL)
                    .fetch_all(&self.pool)
                    .await?;
            Ok(rows
                .into_iter()
                .filter_map($crate::store::alerts::rule_from)
                .collect())
        }

        async fn alert_rule_in(
            &self,
            id: &str,
        ) -> anyhow::Result<Option<$crate::store::AlertRuleRow>> {
            let row: Option<(String, String, String, i64)> =
                sqlx::query_as($crate::store::alerts::RULE_SQL)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
            match row {
                None => Ok(None),
                Some(t) => {
                    let id = t.0.clone();
                    Ok(Some($crate::store::alerts::rule_from(t).ok_or_else(
                        || anyhow::anyhow!("stored alert rule `{id}` does not parse"),
                    )?))
                }
            }
        }

        async fn put_alert_rule_in(
            &self,
            row: &$crate::store::AlertRuleRow,
        ) -> anyhow::Result<bool> {
            let spec = serde_json::to_string(&row.rule)?;
            let mut tx = $crate::store::WriteTx::begin_write(&self.pool).await?;
            let (n,): (i64,) = sqlx::query_as($crate::store::alerts::RULE_EXISTS_SQL)
                .bind(&row.rule.id)
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query($crate::store::alerts::PUT_RULE_SQL)
                .bind(&row.rule.id)
                .bind(&spec)
                .bind(&row.source)
                .bind(row.updated_ms)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(n == 0)
        }

        async fn delete_alert_rule_in(&self, id: &str) -> anyhow::Result<bool> {
            let r = sqlx::query($crate::store::alerts::DELETE_RULE_SQL)
                .bind(id)
                .execute(&self.pool)
                .await?;
            Ok(r.rows_affected() > 0)
        }

        async fn replace_file_rules_in(
            &self,
            rules: &[$crate::alerts::rule::Rule],
            now_ms: i64,
        ) -> anyhow::Result<()> {
            let mut tx = $crate::store::WriteTx::begin_write(&self.pool).await?;
            let old: Vec<(String,)> = sqlx::query_as($crate::store::alerts::FILE_RULE_IDS_SQL)
                .fetch_all(&mut *tx)
                .await?;
            for (id,) in old {
                if !rules.iter().any(|r| r.id == id) {
                    sqlx::query($crate::store::alerts::DELETE_RULE_SQL)
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            for r in rules {
                sqlx::query($crate::store::alerts::PUT_RULE_SQL)
                    .bind(&r.id)
                    .bind(serde_json::to_string(r)?)
                    .bind($crate::store::alerts::SOURCE_FILE)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }

        async fn alert_events_in(
            &self,
            q: &$crate::store::AlertEventQuery,
        ) -> anyhow::Result<Vec<tickcast_pipeline::domain::Alert>> {
            let rows: Vec<$crate::store::alerts::EventTuple> =
                sqlx::query_as($crate::store::alerts::EVENTS_SQL)
                    .bind(&q.rule_id)
                    .bind(&q.exchange)
                    .bind(&q.symbol)
                    .bind(q.state.map($crate::store::alerts::state_text))
                    .bind(q.from_ms)
                    .bind(q.to_ms)
                    .bind($crate::store::clamp_limit(q.limit))
                    .fetch_all(&self.pool)
                    .await?;
            rows.into_iter()
                .map($crate::store::alerts::event_from)
                .collect()
        }

        async fn save_alert_checkpoint_in(
            &self,
            consumer: &str,
            cp: &$crate::store::AlertCheckpoint,
        ) -> anyhow::Result<()> {
            let mut tx = $crate::store::WriteTx::begin_write(&self.pool).await?;
            for e in &cp.events {
                sqlx::query($crate::store::alerts::UPSERT_EVENT_SQL)
                    .bind(&e.id)
                    .bind(&e.rule)
                    .bind(&e.exchange)
                    .bind(&e.symbol)
                    .bind(&e.interval)
                    .bind(&e.model)
                    .bind(e.horizon as i32)
                    .bind($crate::store::alerts::state_text(e.state))
                    .bind(e.ts_ms)
                    .bind(e.value)
                    .bind(e.threshold)
                    .bind(&e.message)
                    .execute(&mut *tx)
                    .await?;
                if cp.endpoints.is_empty() {
                    continue;
                }
                let body = String::from_utf8(tickcast_pipeline::codec::encode(e))?;
                for endpoint in &cp.endpoints {
                    sqlx::query($crate::store::alerts::ENQUEUE_SQL)
                        .bind(endpoint)
                        .bind(&e.id)
                        .bind(e.ts_ms)
                        .bind(&body)
                        .bind(cp.now_ms)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            for s in &cp.series {
                sqlx::query($crate::store::alerts::SAVE_STATE_SQL)
                    .bind(consumer)
                    .bind(&s.exchange)
                    .bind(&s.symbol)
                    .bind(&s.interval)
                    .bind(&s.state)
                    .bind(cp.now_ms)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }

        async fn load_alert_states_in(
            &self,
            consumer: &str,
            keys: &[(String, String, String)],
        ) -> anyhow::Result<Vec<$crate::store::AlertSeriesState>> {
            let mut out = Vec::new();
            for (exchange, symbol, interval) in keys {
                let row: Option<(String, String, String, String)> =
                    sqlx::query_as($crate::store::alerts::LOAD_STATE_SQL)
                        .bind(consumer)
                        .bind(exchange)
                        .bind(symbol)
                        .bind(interval)
                        .fetch_optional(&self.pool)
                        .await?;
                if let Some((exchange, symbol, interval, state)) = row {
                    out.push($crate::store::AlertSeriesState {
                        exchange,
                        symbol,
                        interval,
                        state,
                    });
                }
            }
            Ok(out)
        }

        async fn claim_deliveries_in(
            &self,
            endpoint: &str,
            now_ms: i64,
            lease_ms: i64,
            limit: i64,
        ) -> anyhow::Result<Vec<$crate::store::DeliveryJob>> {
            let mut rows: Vec<(String, String, i32, i64)> = sqlx::query_as($claim)
                .bind(endpoint)
                .bind(now_ms)
                .bind(now_ms.saturating_add(lease_ms))
                .bind(limit.max(1))
                .fetch_all(&self.pool)
                .await?;
            rows.sort_by(|a, b| (a.3, &a.0).cmp(&(b.3, &b.0)));
            Ok(rows
                .into_iter()
                .map(|(event_id, body, attempts, _)| $crate::store::DeliveryJob {
                    event_id,
                    body,
                    attempts,
                })
                .collect())
        }

        async fn finish_delivery_in(
            &self,
            endpoint: &str,
            event_id: &str,
            outcome: &$crate::store::DeliveryOutcome,
            now_ms: i64,
        ) -> anyhow::Result<()> {
            use $crate::store::{DeliveryOutcome as O, DeliveryStatus as S};
            let (status, attempts, next_ms, error) = match outcome {
                O::Delivered { attempts } => (S::Delivered, *attempts, now_ms, None),
                O::Retry {
                    attempts,
                    next_ms,
                    error,
                } => (S::Pending, *attempts, *next_ms, Some(error.as_str())),
                O::Dead { attempts, error } => (S::Dead, *attempts, now_ms, Some(error.as_str())),
            };
            sqlx::query($crate::store::alerts::FINISH_SQL)
                .bind(endpoint)
                .bind(event_id)
                .bind(status.as_str())
                .bind(attempts)
                .bind(next_ms)
                .bind(error)
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
            Ok(())
        }

        async fn next_delivery_ms_in(&self, endpoint: &str) -> anyhow::Result<Option<i64>> {
            let (next,): (Option<i64>,) = sqlx::query_as($crate::store::alerts::NEXT_DUE_SQL)
                .bind(endpoint)
                .fetch_one(&self.pool)
                .await?;
            Ok(next)
        }

        async fn alert_deliveries_in(
            &self,
            q: &$crate::store::DeliveryQuery,
        ) -> anyhow::Result<Vec<$crate::store::DeliveryRow>> {
            let rows: Vec<$crate::store::alerts::DeliveryTuple> =
                sqlx::query_as($crate::store::alerts::DELIVERIES_SQL)
                    .bind(&q.endpoint)
                    .bind(q.status.map(|s| s.as_str()))
                    .bind($crate::store::clamp_limit(q.limit))
                    .fetch_all(&self.pool)
                    .await?;
            Ok(rows
                .into_iter()
                .map($crate::store::alerts::delivery_from)
                .collect())
        }
    };
}
pub(crate) use alert_methods;
