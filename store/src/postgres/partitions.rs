//! Postgres time partitions (see [`super::super::retention`]): made before a batch needs them, dropped
//! once past retention, and the rows of an unpartitioned table (written before migration 0007;
//! migration 0009 gives forecasts their ids) moved into them.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result, bail};
use sqlx::postgres::PgPool;
use tickcast_core::domain::{Candle, Forecast};
use tickcast_core::interval::Interval;

use crate::retention::{
    FORECAST_SPAN_MS, Retention, candle_span_ms, cutoff, interval_slug, span_start, utc_date,
};

/// One range partition to have.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Wanted {
    /// `None`: a partition of `forecast_rows`; else the candle interval.
    interval: Option<String>,
    start: i64,
    span: i64,
}

impl Wanted {
    fn parent(&self) -> String {
        match &self.interval {
            None => "forecast_rows".into(),
            Some(iv) => format!("candles_{}", interval_slug(iv)),
        }
    }
    fn name(&self) -> String {
        format!("{}_p{}", self.parent(), utc_date(self.start))
    }
}

/// The span of a candle interval's table (a label that does not parse gets daily spans).
fn span_of(interval: &str) -> i64 {
    Interval::parse(interval).map_or(FORECAST_SPAN_MS, |i| candle_span_ms(i.ms()))
}

/// A candle interval safe to name a table and to quote in SQL (`1m`, `15s`, `4h`).
fn checked_interval(interval: &str) -> Result<&str> {
    if interval.is_empty()
        || interval.len() > 16
        || !interval.chars().all(|c| c.is_ascii_alphanumeric())
    {
        bail!("candle interval {interval:?} cannot name a partition (letters and digits only)");
    }
    Ok(interval)
}

/// The partitions known to exist, so that a batch checks the catalog only for new spans.
#[derive(Debug, Clone, Default)]
pub struct Partitions {
    known: Arc<Mutex<HashSet<String>>>,
}

impl Partitions {
    /// Makes the partitions `candles` and `forecast_rows` need, each with the span after it (made
    /// ahead, so the next day's first batch finds its partition). Each is made in its own
    /// statement outside the batch's transaction; another process making the same one at the
    /// same time is not an error.
    pub async fn ensure(
        &self,
        pool: &PgPool,
        candles: &[&Candle],
        forecasts: &[&Forecast],
    ) -> Result<()> {
        let mut wanted: BTreeSet<Wanted> = BTreeSet::new();
        for f in forecasts {
            let start = span_start(f.base_ms, FORECAST_SPAN_MS);
            for s in [start, start.saturating_add(FORECAST_SPAN_MS)] {
                wanted.insert(Wanted {
                    interval: None,
                    start: s,
                    span: FORECAST_SPAN_MS,
                });
            }
        }
        for c in candles {
            let iv = checked_interval(&c.interval)?;
            let span = span_of(iv);
            let start = span_start(c.open_ms, span);
            for s in [start, start.saturating_add(span)] {
                wanted.insert(Wanted {
                    interval: Some(iv.to_string()),
                    start: s,
                    span,
                });
            }
        }
        let missing: Vec<Wanted> = {
            let known = self.known.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            wanted
                .into_iter()
                .filter(|w| !known.contains(&w.name()))
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let mut conn = pool.acquire().await?;
        for w in missing {
            make(&mut conn, &w).await?;
            self.known
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .insert(w.name());
        }
        Ok(())
    }

    /// Drops the partitions past retention at data clock `clock_ms`; returns their names.
    pub async fn drop_expired(
        &self,
        pool: &PgPool,
        policy: &Retention,
        clock_ms: i64,
    ) -> Result<Vec<String>> {
        let mut dropped = Vec::new();
        if let Some(cut) = cutoff(clock_ms, policy.forecasts_days) {
            dropped.extend(drop_before(pool, "forecast_rows", cut).await?);
        }
        // The interval tables of `candles`, and the interval each holds.
        let tables: Vec<(String, String)> = sqlx::query_as(
            "select c.relname::text, pg_get_expr(c.relpartbound, c.oid) \
             from pg_inherits i join pg_class c on c.oid = i.inhrelid \
             where i.inhparent = 'candles'::regclass",
        )
        .fetch_all(pool)
        .await?;
        for (table, bound) in tables {
            // FOR VALUES IN ('1m')
            let Some(interval) = bound.split('\'').nth(1) else {
                continue;
            };
            if let Some(cut) = cutoff(clock_ms, policy.candle_days(interval)) {
                dropped.extend(drop_before(pool, &table, cut).await?);
            }
        }
        if !dropped.is_empty()
            && let Ok(mut known) = self.known.lock()
        {
            for d in &dropped {
                known.remove(d);
            }
        }
        Ok(dropped)
    }
}

/// Makes one partition (and, for candles, its interval's table).
async fn make(conn: &mut sqlx::PgConnection, w: &Wanted) -> Result<()> {
    if let Some(iv) = &w.interval {
        let sql = format!(
            "create table if not exists \"{}\" partition of candles for values in ('{iv}') \
             partition by range (open_ms)",
            w.parent()
        );
        run_ddl(conn, &sql).await?;
    }
    let sql = format!(
        "create table if not exists \"{}\" partition of \"{}\" for values from ({}) to ({})",
        w.name(),
        w.parent(),
        w.start,
        w.start.saturating_add(w.span)
    );
    run_ddl(conn, &sql).await
}

/// Runs DDL that another process may be running at the same time: its "already exists" is not
/// an error.
async fn run_ddl(conn: &mut sqlx::PgConnection, sql: &str) -> Result<()> {
    match sqlx::query(sql).execute(&mut *conn).await {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("42P07" | "23505" | "42710")) =>
        {
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("making a partition: {sql}")),
    }
}

/// Drops the range partitions of `parent` that end at or before `cut`.
async fn drop_before(pool: &PgPool, parent: &str, cut: i64) -> Result<Vec<String>> {
    let parts: Vec<(String, String)> = sqlx::query_as(
        "select c.relname::text, pg_get_expr(c.relpartbound, c.oid) \
         from pg_inherits i join pg_class c on c.oid = i.inhrelid \
         where i.inhparent = $1::regclass",
    )
    .bind(format!("\"{parent}\""))
    .fetch_all(pool)
    .await?;
    let mut dropped = Vec::new();
    for (name, bound) in parts {
        // FOR VALUES FROM ('1796601600000') TO ('1796688000000')
        let Some(upper) = bound
            .rsplit("TO (")
            .next()
            .map(|s| s.trim_matches(|c: char| !c.is_ascii_digit() && c != '-'))
            .and_then(|s| s.parse::<i64>().ok())
        else {
            continue;
        };
        if upper <= cut {
            sqlx::query(&format!("drop table if exists \"{name}\""))
                .execute(pool)
                .await
                .with_context(|| format!("dropping partition {name}"))?;
            tracing::info!(partition = %name, "partition past retention dropped");
            dropped.push(name);
        }
    }
    Ok(dropped)
}

/// Moves the rows of tables left unpartitioned by migration 0007 into partitions, then drops
/// those tables, in one transaction under an advisory lock (every process that opens the store
/// tries; one does it). A no-op once done.
pub async fn adopt_unpartitioned(pool: &PgPool, partitions: &Partitions) -> Result<()> {
    // The usual start: nothing left to move, and no lock to take.
    let (any,): (bool,) = sqlx::query_as(
        "select to_regclass('candles_unpartitioned') is not null \
         or to_regclass('forecast_rows_unpartitioned') is not null",
    )
    .fetch_one(pool)
    .await?;
    if !any {
        return Ok(());
    }
    for (old, new) in [
        ("candles_unpartitioned", "candles"),
        ("forecast_rows_unpartitioned", "forecast_rows"),
    ] {
        let mut tx = pool.begin().await?;
        // "tickcast partitions", as a number.
        sqlx::query("select pg_advisory_xact_lock(7426180007)")
            .execute(&mut *tx)
            .await?;
        let (exists,): (bool,) = sqlx::query_as("select to_regclass($1) is not null")
            .bind(old)
            .fetch_one(&mut *tx)
            .await?;
        if !exists {
            tx.commit().await?;
            continue;
        }
        let mut wanted = Vec::new();
        if new == "candles" {
            let intervals: Vec<(String,)> =
                sqlx::query_as(&format!("select distinct interval from {old}"))
                    .fetch_all(&mut *tx)
                    .await?;
            for (iv,) in intervals {
                checked_interval(&iv)?;
                let span = span_of(&iv);
                let starts: Vec<(i64,)> = sqlx::query_as(&format!(
                    "select distinct open_ms - mod(open_ms, {span}) from {old} where interval = $1"
                ))
                .bind(&iv)
                .fetch_all(&mut *tx)
                .await?;
                for (start,) in starts {
                    wanted.push(Wanted {
                        interval: Some(iv.clone()),
                        start: span_start(start, span),
                        span,
                    });
                }
            }
        } else {
            let starts: Vec<(i64,)> = sqlx::query_as(&format!(
                "select distinct base_ms - mod(base_ms, {FORECAST_SPAN_MS}) from {old}"
            ))
            .fetch_all(&mut *tx)
            .await?;
            for (start,) in starts {
                wanted.push(Wanted {
                    interval: None,
                    start: span_start(start, FORECAST_SPAN_MS),
                    span: FORECAST_SPAN_MS,
                });
            }
        }
        for w in &wanted {
            make(&mut tx, w).await?;
        }
        let moved = sqlx::query(&format!(
            "insert into {new} select * from {old} on conflict do nothing"
        ))
        .execute(&mut *tx)
        .await
        .with_context(|| format!("moving {old} into partitions"))?
        .rows_affected();
        sqlx::query(&format!("drop table {old}"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if let Ok(mut k) = partitions.known.lock() {
            k.extend(wanted.iter().map(Wanted::name));
        }
        tracing::info!(
            table = new,
            rows = moved,
            partitions = wanted.len(),
            "rows moved into time partitions"
        );
    }
    Ok(())
}
