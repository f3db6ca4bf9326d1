//! What the forecast stage asks of the store: its checkpoints (series states, models' shared
//! parameters, rolling scores), written in one transaction and read back at start-up.

use anyhow::Result;
use async_trait::async_trait;
use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Type};

use super::dialect::{Backend, Dialect, Nullable, SqlStore, Value};

/// One series' forecast-stage checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesCheckpoint {
    pub exchange: String,
    pub symbol: String,
    pub interval: String,
    /// Open time of the newest candle folded into `state`.
    pub last_open_ms: i64,
    pub state: Vec<u8>,
}

/// The latest rolling score of one series, model and horizon.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct AccuracyRow {
    pub exchange: String,
    pub symbol: String,
    pub interval: String,
    pub model: String,
    pub horizon: i32,
    /// Open time of the bar scored last.
    pub ts_ms: i64,
    pub n: i64,
    pub mae: f64,
    pub rmse: f64,
    pub mase: Option<f64>,
    pub rel_mae: Option<f64>,
    pub coverage80: f64,
    pub coverage95: f64,
    pub winkler95: f64,
    pub directional_accuracy: Option<f64>,
    /// Mean CRPS of the nine quantiles, and over naive's on the same points.
    pub crps: Option<f64>,
    pub crps_rel: Option<f64>,
    /// The largest |share of outcomes at or below q_τ − τ| over the nine quantiles.
    pub pit_max_err: Option<f64>,
    /// Brier score of the touch probabilities at ±1 and ±2 spreads, over the trailing base
    /// rate's, and their expected calibration error (10 bins).
    pub touch_brier: Option<f64>,
    pub touch_brier_rel: Option<f64>,
    pub touch_ece: Option<f64>,
}

/// What the forecast stage writes at a checkpoint, in one transaction.
#[derive(Debug, Default, Clone)]
pub struct Checkpoint {
    pub series: Vec<SeriesCheckpoint>,
    /// (model, shared parameters).
    pub models: Vec<(String, Vec<u8>)>,
    pub accuracy: Vec<AccuracyRow>,
}

/// The forecast stage's store.
#[async_trait]
pub trait CheckpointStore: Backend {
    /// Writes a forecast-stage checkpoint of consumer group `consumer` in one transaction.
    async fn save_checkpoint(&self, consumer: &str, cp: &Checkpoint) -> Result<()>;
    /// The checkpoints of the given series (exchange, symbol, interval) that exist.
    async fn load_series_states(
        &self,
        consumer: &str,
        keys: &[(String, String, String)],
    ) -> Result<Vec<SeriesCheckpoint>>;
    /// Every model's shared parameters stored for `consumer`.
    async fn load_model_states(&self, consumer: &str) -> Result<Vec<(String, Vec<u8>)>>;
}

const SAVE_SERIES: &str = "insert into series_state \
    (consumer, exchange, symbol, interval, last_open_ms, state) values ($1, $2, $3, $4, $5, $6) \
    on conflict (consumer, exchange, symbol, interval) do update set \
    last_open_ms = excluded.last_open_ms, state = excluded.state, updated_at = excluded.updated_at";

const LOAD_SERIES: &str = "select exchange, symbol, interval, last_open_ms, state \
    from series_state where consumer = $1 and exchange = $2 and symbol = $3 and interval = $4";

const SAVE_MODEL: &str = "insert into model_state (consumer, model, state) \
    values ($1, $2, $3) on conflict (consumer, model) do update set \
    state = excluded.state, updated_at = excluded.updated_at";

const LOAD_MODELS: &str = "select model, state from model_state where consumer = $1 order by model";

const SAVE_ACCURACY: &str = "insert into accuracy (exchange, symbol, interval, \
    model, horizon, ts_ms, n, mae, rmse, mase, rel_mae, coverage80, coverage95, winkler95, \
    directional_accuracy, crps, crps_rel, pit_max_err, touch_brier, touch_brier_rel, touch_ece) \
    values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
    $20, $21) \
    on conflict (exchange, symbol, interval, model, horizon) do update set ts_ms = excluded.ts_ms, \
    n = excluded.n, mae = excluded.mae, rmse = excluded.rmse, mase = excluded.mase, \
    rel_mae = excluded.rel_mae, coverage80 = excluded.coverage80, \
    coverage95 = excluded.coverage95, winkler95 = excluded.winkler95, \
    directional_accuracy = excluded.directional_accuracy, crps = excluded.crps, \
    crps_rel = excluded.crps_rel, pit_max_err = excluded.pit_max_err, \
    touch_brier = excluded.touch_brier, touch_brier_rel = excluded.touch_brier_rel, \
    touch_ece = excluded.touch_ece";

#[async_trait]
impl<D> CheckpointStore for SqlStore<D>
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
    Vec<u8>: Value<D>,
{
    async fn save_checkpoint(&self, consumer: &str, cp: &Checkpoint) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for s in &cp.series {
            sqlx::query(SAVE_SERIES)
                .bind(consumer)
                .bind(&s.exchange)
                .bind(&s.symbol)
                .bind(&s.interval)
                .bind(s.last_open_ms)
                .bind(&s.state)
                .execute(&mut *tx)
                .await?;
        }
        for (model, state) in &cp.models {
            sqlx::query(SAVE_MODEL)
                .bind(consumer)
                .bind(model)
                .bind(state)
                .execute(&mut *tx)
                .await?;
        }
        for a in &cp.accuracy {
            sqlx::query(SAVE_ACCURACY)
                .bind(&a.exchange)
                .bind(&a.symbol)
                .bind(&a.interval)
                .bind(&a.model)
                .bind(a.horizon)
                .bind(a.ts_ms)
                .bind(a.n)
                .bind(a.mae)
                .bind(a.rmse)
                .bind(Nullable(a.mase))
                .bind(Nullable(a.rel_mae))
                .bind(a.coverage80)
                .bind(a.coverage95)
                .bind(a.winkler95)
                .bind(Nullable(a.directional_accuracy))
                .bind(Nullable(a.crps))
                .bind(Nullable(a.crps_rel))
                .bind(Nullable(a.pit_max_err))
                .bind(Nullable(a.touch_brier))
                .bind(Nullable(a.touch_brier_rel))
                .bind(Nullable(a.touch_ece))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn load_series_states(
        &self,
        consumer: &str,
        keys: &[(String, String, String)],
    ) -> Result<Vec<SeriesCheckpoint>> {
        let rows: Vec<(String, String, String, i64, Vec<u8>)> =
            self.row_per_series(LOAD_SERIES, consumer, keys).await?;
        Ok(rows
            .into_iter()
            .map(
                |(exchange, symbol, interval, last_open_ms, state)| SeriesCheckpoint {
                    exchange,
                    symbol,
                    interval,
                    last_open_ms,
                    state,
                },
            )
            .collect())
    }

    async fn load_model_states(&self, consumer: &str) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(sqlx::query_as(LOAD_MODELS)
            .bind(consumer)
            .fetch_all(&self.pool)
            .await?)
    }
}
