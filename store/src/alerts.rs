//! What the alert stage, its webhook outbox and the API's rule and event routes ask of the
//! store: the alert tables (`migrations/*/0003_alerts.sql`) of rules, events, the alert
//! stage's per-series state, and the outbox. The SQL reads alike in both dialects except the
//! claim of due deliveries ([`Dialect::CLAIM_DELIVERIES`]).

use anyhow::{Result, anyhow};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Type};
use tickcast_core::domain::{Alert as AlertEvent, AlertState, SCHEMA_VERSION};

use super::dialect::{Backend, Dialect, Nullable, SqlStore, Value};
use super::queries::clamp_limit;
use tickcast_core::alert_rule::Rule;

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

const RULES_SQL: &str = "select id, spec, source, updated_ms from alert_rules order by id";
const RULE_SQL: &str = "select id, spec, source, updated_ms from alert_rules where id = $1";
/// Upserts a rule; a row whose spec and source are unchanged is left as it is.
const PUT_RULE_SQL: &str = "insert into alert_rules (id, spec, source, updated_ms) \
    values ($1, $2, $3, $4) on conflict (id) do update set spec = excluded.spec, \
    source = excluded.source, updated_ms = excluded.updated_ms \
    where alert_rules.spec <> excluded.spec or alert_rules.source <> excluded.source";
const RULE_EXISTS_SQL: &str = "select count(*) from alert_rules where id = $1";
const DELETE_RULE_SQL: &str = "delete from alert_rules where id = $1 returning id";
const FILE_RULE_IDS_SQL: &str = "select id from alert_rules where source = 'file'";

const UPSERT_EVENT_SQL: &str = "insert into alert_events (id, rule_id, exchange, \
    symbol, interval, model, horizon, state, ts_ms, value, threshold, message) \
    values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) on conflict (id) do update set \
    rule_id = excluded.rule_id, exchange = excluded.exchange, symbol = excluded.symbol, \
    interval = excluded.interval, model = excluded.model, horizon = excluded.horizon, \
    state = excluded.state, ts_ms = excluded.ts_ms, value = excluded.value, \
    threshold = excluded.threshold, message = excluded.message";

const EVENTS_SQL: &str = "select id, rule_id, exchange, symbol, interval, model, \
    horizon, state, ts_ms, value, threshold, message from alert_events \
    where (cast($1 as text) is null or rule_id = $1) and (cast($2 as text) is null or exchange = $2) \
    and (cast($3 as text) is null or symbol = $3) and (cast($4 as text) is null or state = $4) \
    and (cast($5 as bigint) is null or ts_ms >= $5) and (cast($6 as bigint) is null or ts_ms < $6) \
    order by ts_ms desc, id limit $7";

const ENQUEUE_SQL: &str = "insert into alert_deliveries (endpoint, event_id, ts_ms, \
    body, status, attempts, next_ms, last_error, updated_ms) \
    values ($1, $2, $3, $4, 'pending', 0, $5, null, $5) on conflict (endpoint, event_id) do nothing";

const SAVE_STATE_SQL: &str = "insert into alert_state (consumer, exchange, symbol, \
    interval, state, updated_ms) values ($1, $2, $3, $4, $5, $6) \
    on conflict (consumer, exchange, symbol, interval) do update set state = excluded.state, \
    updated_ms = excluded.updated_ms";
const LOAD_STATE_SQL: &str = "select exchange, symbol, interval, state from alert_state \
    where consumer = $1 and exchange = $2 and symbol = $3 and interval = $4";

/// Records a try's outcome; a delivered row keeps the error of its last failed try, if any.
const FINISH_SQL: &str = "update alert_deliveries set status = $3, attempts = $4, \
    next_ms = $5, last_error = coalesce($6, last_error), updated_ms = $7 \
    where endpoint = $1 and event_id = $2";
const NEXT_DUE_SQL: &str =
    "select min(next_ms) from alert_deliveries where endpoint = $1 and status = 'pending'";
const DELIVERIES_SQL: &str = "select endpoint, event_id, status, attempts, next_ms, \
    last_error, updated_ms from alert_deliveries \
    where (cast($1 as text) is null or endpoint = $1) and (cast($2 as text) is null or status = $2) \
    order by ts_ms, event_id, endpoint limit $3";

/// A row of [`EVENTS_SQL`].
type EventTuple = (
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

fn event_from(t: EventTuple) -> anyhow::Result<AlertEvent> {
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

/// `(id, spec, source, updated_ms)` → a row; `None` (logged) when the spec does not parse.
fn rule_from(t: (String, String, String, i64)) -> Option<AlertRuleRow> {
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

type DeliveryTuple = (String, String, String, i32, i64, Option<String>, i64);

fn delivery_from(t: DeliveryTuple) -> DeliveryRow {
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

/// The alert stage's, the webhook outbox's and the API's store.
#[async_trait]
pub trait AlertStore: Backend {
    /// Every alert rule, ordered by id. A row whose spec does not parse is skipped (logged).
    async fn alert_rules(&self) -> Result<Vec<AlertRuleRow>>;
    /// One alert rule.
    async fn alert_rule(&self, id: &str) -> Result<Option<AlertRuleRow>>;
    /// Creates or replaces a rule (by id); true when it was created.
    async fn put_alert_rule(&self, row: &AlertRuleRow) -> Result<bool>;
    /// Deletes a rule; true when it existed.
    async fn delete_alert_rule(&self, id: &str) -> Result<bool>;
    /// Makes the rules of source `file` exactly `rules` (a rule file read at start-up):
    /// upserts them, deletes file rules no longer in it. Rules of source `api` with other ids
    /// are left alone; one with the same id as a file rule is replaced by it.
    async fn replace_file_rules(&self, rules: &[Rule], now_ms: i64) -> Result<()>;
    /// Alert events, newest first.
    async fn alert_events(&self, q: &AlertEventQuery) -> Result<Vec<AlertEvent>>;
    /// Writes an alert-stage checkpoint of consumer group `consumer` in one transaction.
    async fn save_alert_checkpoint(&self, consumer: &str, cp: &AlertCheckpoint) -> Result<()>;
    /// The alert-stage states of the given series (exchange, symbol, interval) that exist.
    async fn load_alert_states(
        &self,
        consumer: &str,
        keys: &[(String, String, String)],
    ) -> Result<Vec<AlertSeriesState>>;
    /// Claims up to `limit` deliveries of `endpoint` due at `now_ms`, oldest event first; each
    /// is not due again for `lease_ms` unless finished.
    async fn claim_deliveries(
        &self,
        endpoint: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<DeliveryJob>>;
    /// Records the result of one try.
    async fn finish_delivery(
        &self,
        endpoint: &str,
        event_id: &str,
        outcome: &DeliveryOutcome,
        now_ms: i64,
    ) -> Result<()>;
    /// When the next pending delivery of `endpoint` is due.
    async fn next_delivery_ms(&self, endpoint: &str) -> Result<Option<i64>>;
    /// Outbox rows, oldest event first.
    async fn alert_deliveries(&self, q: &DeliveryQuery) -> Result<Vec<DeliveryRow>>;
}

#[async_trait]
impl<D> AlertStore for SqlStore<D>
where
    D: Dialect,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> D::Arguments<'q>: IntoArguments<'q, D>,
    usize: ColumnIndex<D::Row>,
    for<'q> &'q str: Encode<'q, D> + Type<D>,
    String: Value<D>,
    i32: Value<D>,
    i64: Value<D>,
    f64: Value<D>,
{
    async fn alert_rules(&self) -> Result<Vec<AlertRuleRow>> {
        let rows: Vec<(String, String, String, i64)> =
            sqlx::query_as(RULES_SQL).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().filter_map(rule_from).collect())
    }

    async fn alert_rule(&self, id: &str) -> Result<Option<AlertRuleRow>> {
        let row: Option<(String, String, String, i64)> = sqlx::query_as(RULE_SQL)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Ok(None),
            Some(t) => {
                let id = t.0.clone();
                Ok(Some(rule_from(t).ok_or_else(|| {
                    anyhow!("stored alert rule `{id}` does not parse")
                })?))
            }
        }
    }

    async fn put_alert_rule(&self, row: &AlertRuleRow) -> Result<bool> {
        let spec = serde_json::to_string(&row.rule)?;
        let mut tx = self.begin_write().await?;
        let (n,): (i64,) = sqlx::query_as(RULE_EXISTS_SQL)
            .bind(&row.rule.id)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(PUT_RULE_SQL)
            .bind(&row.rule.id)
            .bind(&spec)
            .bind(&row.source)
            .bind(row.updated_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n == 0)
    }

    async fn delete_alert_rule(&self, id: &str) -> Result<bool> {
        let gone: Option<(String,)> = sqlx::query_as(DELETE_RULE_SQL)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(gone.is_some())
    }

    async fn replace_file_rules(&self, rules: &[Rule], now_ms: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let old: Vec<(String,)> = sqlx::query_as(FILE_RULE_IDS_SQL)
            .fetch_all(&mut *tx)
            .await?;
        for (id,) in old {
            if !rules.iter().any(|r| r.id == id) {
                sqlx::query(DELETE_RULE_SQL)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for r in rules {
            sqlx::query(PUT_RULE_SQL)
                .bind(&r.id)
                .bind(serde_json::to_string(r)?)
                .bind(SOURCE_FILE)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn alert_events(&self, q: &AlertEventQuery) -> Result<Vec<AlertEvent>> {
        let rows: Vec<EventTuple> = sqlx::query_as(EVENTS_SQL)
            .bind(Nullable(q.rule_id.as_ref()))
            .bind(Nullable(q.exchange.as_ref()))
            .bind(Nullable(q.symbol.as_ref()))
            .bind(Nullable(q.state.map(AlertState::as_str)))
            .bind(Nullable(q.from_ms))
            .bind(Nullable(q.to_ms))
            .bind(clamp_limit(q.limit))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(event_from).collect()
    }

    async fn save_alert_checkpoint(&self, consumer: &str, cp: &AlertCheckpoint) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for e in &cp.events {
            sqlx::query(UPSERT_EVENT_SQL)
                .bind(&e.id)
                .bind(&e.rule)
                .bind(&e.exchange)
                .bind(&e.symbol)
                .bind(&e.interval)
                .bind(&e.model)
                .bind(e.horizon as i32)
                .bind(e.state.as_str())
                .bind(e.ts_ms)
                .bind(e.value)
                .bind(e.threshold)
                .bind(&e.message)
                .execute(&mut *tx)
                .await?;
            if cp.endpoints.is_empty() {
                continue;
            }
            let body = String::from_utf8(tickcast_core::codec::encode(e))?;
            for endpoint in &cp.endpoints {
                sqlx::query(ENQUEUE_SQL)
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
            sqlx::query(SAVE_STATE_SQL)
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

    async fn load_alert_states(
        &self,
        consumer: &str,
        keys: &[(String, String, String)],
    ) -> Result<Vec<AlertSeriesState>> {
        let rows: Vec<(String, String, String, String)> =
            self.row_per_series(LOAD_STATE_SQL, consumer, keys).await?;
        Ok(rows
            .into_iter()
            .map(|(exchange, symbol, interval, state)| AlertSeriesState {
                exchange,
                symbol,
                interval,
                state,
            })
            .collect())
    }

    async fn claim_deliveries(
        &self,
        endpoint: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<DeliveryJob>> {
        let mut rows: Vec<(String, String, i32, i64)> = sqlx::query_as(D::CLAIM_DELIVERIES)
            .bind(endpoint)
            .bind(now_ms)
            .bind(now_ms.saturating_add(lease_ms))
            .bind(limit.max(1))
            .fetch_all(&self.pool)
            .await?;
        rows.sort_by(|a, b| (a.3, &a.0).cmp(&(b.3, &b.0)));
        Ok(rows
            .into_iter()
            .map(|(event_id, body, attempts, _)| DeliveryJob {
                event_id,
                body,
                attempts,
            })
            .collect())
    }

    async fn finish_delivery(
        &self,
        endpoint: &str,
        event_id: &str,
        outcome: &DeliveryOutcome,
        now_ms: i64,
    ) -> Result<()> {
        use DeliveryOutcome as O;
        use DeliveryStatus as S;
        let (status, attempts, next_ms, error) = match outcome {
            O::Delivered { attempts } => (S::Delivered, *attempts, now_ms, None),
            O::Retry {
                attempts,
                next_ms,
                error,
            } => (S::Pending, *attempts, *next_ms, Some(error.as_str())),
            O::Dead { attempts, error } => (S::Dead, *attempts, now_ms, Some(error.as_str())),
        };
        sqlx::query(FINISH_SQL)
            .bind(endpoint)
            .bind(event_id)
            .bind(status.as_str())
            .bind(attempts)
            .bind(next_ms)
            .bind(Nullable(error))
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn next_delivery_ms(&self, endpoint: &str) -> Result<Option<i64>> {
        let (next,): (Option<i64>,) = sqlx::query_as(NEXT_DUE_SQL)
            .bind(endpoint)
            .fetch_one(&self.pool)
            .await?;
        Ok(next)
    }

    async fn alert_deliveries(&self, q: &DeliveryQuery) -> Result<Vec<DeliveryRow>> {
        let rows: Vec<DeliveryTuple> = sqlx::query_as(DELIVERIES_SQL)
            .bind(Nullable(q.endpoint.as_ref()))
            .bind(Nullable(q.status.map(DeliveryStatus::as_str)))
            .bind(clamp_limit(q.limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(delivery_from).collect())
    }
}
