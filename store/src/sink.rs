//! What the sink stage asks of the store: write a batch and its offsets in one transaction,
//! read and forget stored offsets, and apply retention.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context as _, Result};
use async_trait::async_trait;
use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Type};
use tickcast_core::domain::{Candle, Forecast};

use super::dialect::{Backend, Dialect, SqlStore, Value};
use super::retention::{Retention, RetentionReport};

/// Where a record came from: (topic, partition, offset).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A sink batch: rows with their source positions, and the next offsets they complete.
#[derive(Debug, Default, Clone)]
pub struct SinkBatch {
    pub candles: Vec<(Pos, Candle)>,
    pub forecasts: Vec<(Pos, Forecast)>,
    /// Next offset per (topic, partition) once this batch is written.
    pub offsets: BTreeMap<(String, i32), i64>,
}

/// What a write did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteSummary {
    pub candles: usize,
    pub forecasts: usize,
    /// Records skipped because the stored offsets show they were written before.
    pub skipped: usize,
}

/// The sink stage's store.
#[async_trait]
pub trait SinkStore: Backend {
    /// Upserts the rows and advances `consumer`'s offsets in one transaction. Rows whose offset
    /// is below the stored next offset were written before and are skipped.
    async fn write_batch(&self, consumer: &str, batch: &SinkBatch) -> Result<WriteSummary>;
    /// Removes what is past `policy`'s retention at data clock `clock_ms`
    /// ([`super::retention::data_clock`]): Postgres drops whole time partitions, SQLite deletes
    /// in batches. `forecasts_latest`, the accuracy scores and the other tables are not touched.
    async fn apply_retention(&self, policy: &Retention, clock_ms: i64) -> Result<RetentionReport>;
    /// Stored next offsets of a consumer.
    async fn offsets(&self, consumer: &str) -> Result<BTreeMap<(String, i32), i64>>;
    /// Drops a consumer's stored offset of one partition (its topic was recreated), so the sink
    /// writes that partition from the broker's offsets again.
    async fn forget_offset(&self, consumer: &str, topic: &str, partition: i32) -> Result<()>;
}

const OFFSETS: &str =
    "select topic, partition, next_offset from consumer_offsets where consumer = $1";

const FORGET_OFFSET: &str =
    "delete from consumer_offsets where consumer = $1 and topic = $2 and partition = $3";

#[async_trait]
impl<D> SinkStore for SqlStore<D>
where
    D: Dialect,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> D::Arguments<'q>: IntoArguments<'q, D>,
    usize: ColumnIndex<D::Row>,
    for<'q> &'q str: Encode<'q, D> + Type<D>,
    String: Value<D>,
    i32: Value<D>,
    i64: Value<D>,
{
    async fn write_batch(&self, consumer: &str, batch: &SinkBatch) -> Result<WriteSummary> {
        let all_candles: Vec<&Candle> = batch.candles.iter().map(|(_, c)| c).collect();
        let all_forecasts: Vec<&Forecast> = batch.forecasts.iter().map(|(_, f)| f).collect();
        D::prepare_batch(self, &all_candles, &all_forecasts).await?;
        let mut tx = self.begin_write().await?;
        let stored: Vec<(String, i32, i64)> = sqlx::query_as(D::STORED_OFFSETS)
            .bind(consumer)
            .fetch_all(&mut *tx)
            .await?;
        let stored: HashMap<(String, i32), i64> = offset_map(stored);
        let (candles, skipped_c) = fresh(&batch.candles, &stored, candle_key);
        let (forecasts, skipped_f) = fresh(&batch.forecasts, &stored, forecast_key);
        D::write_rows(self, &mut tx, &candles, &forecasts).await?;
        for ((topic, partition), next) in &batch.offsets {
            sqlx::query(D::ADVANCE_OFFSET)
                .bind(consumer)
                .bind(topic)
                .bind(partition)
                .bind(next)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await.context("committing sink batch")?;
        Ok(WriteSummary {
            candles: candles.len(),
            forecasts: forecasts.len(),
            skipped: skipped_c + skipped_f,
        })
    }

    async fn apply_retention(&self, policy: &Retention, clock_ms: i64) -> Result<RetentionReport> {
        D::apply_retention(self, policy, clock_ms).await
    }

    async fn offsets(&self, consumer: &str) -> Result<BTreeMap<(String, i32), i64>> {
        let rows = sqlx::query_as(OFFSETS)
            .bind(consumer)
            .fetch_all(&self.pool)
            .await?;
        Ok(offset_map(rows))
    }

    async fn forget_offset(&self, consumer: &str, topic: &str, partition: i32) -> Result<()> {
        sqlx::query(FORGET_OFFSET)
            .bind(consumer)
            .bind(topic)
            .bind(partition)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// `(topic, partition, next_offset)` rows → a map keyed by (topic, partition).
fn offset_map<M: FromIterator<((String, i32), i64)>>(rows: Vec<(String, i32, i64)>) -> M {
    rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect()
}

/// Keeps the rows not yet written (offset ≥ stored next offset), de-duplicated by natural key
/// with the latest offset winning, in offset order.
fn fresh<'a, T, K: std::hash::Hash + Eq>(
    rows: &'a [(Pos, T)],
    stored: &HashMap<(String, i32), i64>,
    key: impl Fn(&'a T) -> K,
) -> (Vec<&'a T>, usize) {
    // Fx: the keys are a few short strings and numbers, hashed once per row of every batch.
    let mut latest: rustc_hash::FxHashMap<K, (&'a Pos, &'a T)> =
        rustc_hash::FxHashMap::with_capacity_and_hasher(rows.len(), Default::default());
    let mut skipped = 0;
    for (pos, row) in rows {
        let done = stored
            .iter()
            .any(|((t, p), next)| *p == pos.partition && *t == pos.topic && pos.offset < *next);
        if done {
            skipped += 1;
            continue;
        }
        match latest.entry(key(row)) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                if e.get().0 <= pos {
                    e.insert((pos, row));
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert((pos, row));
            }
        }
    }
    let mut out: Vec<(&Pos, &T)> = latest.into_values().collect();
    out.sort_by(|a, b| a.0.cmp(b.0));
    (out.into_iter().map(|(_, r)| r).collect(), skipped)
}

/// The natural key of a candle row.
fn candle_key(c: &Candle) -> (&str, &str, &str, i64) {
    (&c.exchange, &c.symbol, &c.interval, c.open_ms)
}

/// The natural key of a forecast row.
fn forecast_key(f: &Forecast) -> (&str, &str, &str, &str, u32, i64) {
    (
        &f.exchange,
        &f.symbol,
        &f.interval,
        &f.model,
        f.horizon,
        f.base_ms,
    )
}
