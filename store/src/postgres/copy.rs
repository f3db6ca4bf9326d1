//! The Postgres sink's row writes: candles by `unnest`, forecasts by binary `COPY` into a
//! staging table.

use anyhow::{Context as _, Result};
use sqlx::{Postgres, Transaction};
use tickcast_core::domain::{Candle, Forecast};

use super::forecast_ids::RowIds;

pub(super) async fn upsert_candles(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[&Candle],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&Candle) -> String| rows.iter().map(|c| f(c)).collect::<Vec<String>>();
    sqlx::query(
        "insert into candles (exchange, symbol, interval, open_ms, close_ms, open, high, low, close, volume, trades)
         select * from unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],
                              $6::text[]::numeric[], $7::text[]::numeric[], $8::text[]::numeric[],
                              $9::text[]::numeric[], $10::text[]::numeric[], $11::bigint[])
         on conflict (exchange, symbol, interval, open_ms) do update set
           close_ms = excluded.close_ms, open = excluded.open, high = excluded.high, low = excluded.low,
           close = excluded.close, volume = excluded.volume, trades = excluded.trades",
    )
    .bind(col(|c| c.exchange.clone()))
    .bind(col(|c| c.symbol.clone()))
    .bind(col(|c| c.interval.clone()))
    .bind(rows.iter().map(|c| c.open_ms).collect::<Vec<_>>())
    .bind(rows.iter().map(|c| c.close_ms).collect::<Vec<_>>())
    .bind(col(|c| c.open.to_string()))
    .bind(col(|c| c.high.to_string()))
    .bind(col(|c| c.low.to_string()))
    .bind(col(|c| c.close.to_string()))
    .bind(col(|c| c.volume.to_string()))
    .bind(rows.iter().map(|c| c.trades as i64).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await
    .context("upserting candles")?;
    Ok(())
}

/// The values a stored forecast row takes from a newer delivery of its key (in
/// `forecast_rows`) or a newer forecast of its series (in `forecast_latest_rows`): every column
/// but the key, version 2's included (null from a version 1 forecast).
const NEWER_VALUES: &str = "target_ms = excluded.target_ms, last = excluded.last, \
    point = excluded.point, lo80 = excluded.lo80, hi80 = excluded.hi80, lo95 = excluded.lo95, \
    hi95 = excluded.hi95, q025 = excluded.q025, q05 = excluded.q05, q10 = excluded.q10, \
    q25 = excluded.q25, q50 = excluded.q50, q75 = excluded.q75, q90 = excluded.q90, \
    q95 = excluded.q95, q975 = excluded.q975, touch_alpha = excluded.touch_alpha, \
    touch_beta = excluded.touch_beta, model_version = excluded.model_version, \
    degraded = excluded.degraded";

/// The columns of a staged row, in [`copy_row`]'s order (named, so that a column a later
/// migration adds to `forecast_rows` stays null rather than breaking the `COPY`).
const COPY_COLUMNS: &str = "series, model, horizon, base_ms, target_ms, last, point, lo80, \
    hi80, lo95, hi95, q025, q05, q10, q25, q50, q75, q90, q95, q975, touch_alpha, touch_beta, \
    model_version, degraded";

/// Fields of a staged row.
const COPY_FIELDS: i16 = 24;

/// Bytes of a version 2 row in `COPY`'s binary format (a version 1 row takes fewer).
const COPY_ROW_BYTES: usize = 2 + 8 + 6 + 8 + 2 * 12 + 17 * 12 + 8 + 5;

/// Writes forecasts through Postgres's bulk path: binary `COPY` of their id rows (`ids`, one
/// per row: see [`super::forecast_ids`]) into a temporary staging table (one per connection,
/// emptied at commit), then from it one insert into `forecast_rows` and one upsert into
/// `forecast_latest_rows` (the newest per series, model and horizon). `rows` hold one row per
/// key.
///
/// The insert is plain, which costs about half an upsert: a row is stored twice only when a
/// forecast is delivered again under a new offset (a forecast stage that restarted from its
/// checkpoint). Then the insert fails on the key, is rolled back to its savepoint, and the batch
/// is upserted instead, the newer delivery winning as before.
pub(super) async fn write_forecasts(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[&Forecast],
    ids: &[RowIds],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    // `if not exists` notes every batch after the first; not worth a log line. One round trip.
    sqlx::Executor::execute(
        &mut **tx,
        "set local client_min_messages = warning;
         create temp table if not exists sink_forecast_rows (like forecast_rows)
           on commit delete rows",
    )
    .await
    .context("making the forecast staging table")?;
    let mut data = Vec::with_capacity(COPY_HEADER.len() + rows.len() * COPY_ROW_BYTES + 2);
    data.extend_from_slice(COPY_HEADER);
    for (f, id) in rows.iter().zip(ids) {
        copy_row(&mut data, f, id)?;
    }
    data.extend_from_slice(&(-1i16).to_be_bytes());
    let mut copy = tx
        .copy_in_raw(&format!(
            "copy sink_forecast_rows ({COPY_COLUMNS}) from stdin (format binary)"
        ))
        .await
        .context("staging forecasts")?;
    copy.send(data).await.context("staging forecasts")?;
    copy.finish().await.context("staging forecasts")?;
    sqlx::query("savepoint sink_plain")
        .execute(&mut **tx)
        .await?;
    let plain = sqlx::query("insert into forecast_rows select * from sink_forecast_rows")
        .execute(&mut **tx)
        .await;
    match plain {
        Ok(_) => {
            sqlx::query("release savepoint sink_plain")
                .execute(&mut **tx)
                .await?;
        }
        Err(e) if is_unique_violation(&e) => {
            sqlx::query("rollback to savepoint sink_plain")
                .execute(&mut **tx)
                .await?;
            sqlx::query(&format!(
                "insert into forecast_rows select * from sink_forecast_rows \
                 on conflict (series, model, horizon, base_ms) do update set {NEWER_VALUES}"
            ))
            .execute(&mut **tx)
            .await
            .context("upserting forecasts")?;
        }
        Err(e) => return Err(anyhow::Error::from(e).context("inserting forecasts")),
    }
    // Usually each series, model and horizon appears once in a batch: then no sort is needed
    // to keep its newest row.
    let once = {
        let mut seen =
            rustc_hash::FxHashSet::with_capacity_and_hasher(rows.len(), Default::default());
        rows.iter()
            .zip(ids)
            .all(|(f, id)| seen.insert((id.series, id.model, f.horizon)))
    };
    let (distinct, order) = if once {
        ("", "")
    } else {
        (
            "distinct on (series, model, horizon)",
            "order by series, model, horizon, base_ms desc",
        )
    };
    sqlx::query(&format!(
        "insert into forecast_latest_rows select {distinct} * from sink_forecast_rows {order} \
         on conflict (series, model, horizon) do update set base_ms = excluded.base_ms, \
           {NEWER_VALUES} where excluded.base_ms >= forecast_latest_rows.base_ms"
    ))
    .execute(&mut **tx)
    .await
    .context("upserting the latest forecasts")?;
    Ok(())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

/// `COPY … (format binary)`'s file header: signature, flags, header extension length.
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// One forecast as a tuple of `COPY`'s binary format, in [`COPY_COLUMNS`]' order: each field
/// its length, then its value in network byte order (floats bit for bit, so exactly); a field
/// a version 1 forecast lacks is null (length −1, no value).
fn copy_row(out: &mut Vec<u8>, f: &Forecast, ids: &RowIds) -> Result<()> {
    let horizon = i32::try_from(f.horizon)
        .with_context(|| format!("horizon {} does not fit a Postgres integer", f.horizon))?;
    out.extend_from_slice(&COPY_FIELDS.to_be_bytes());
    out.extend_from_slice(&4i32.to_be_bytes());
    out.extend_from_slice(&ids.series.to_be_bytes());
    out.extend_from_slice(&2i32.to_be_bytes());
    out.extend_from_slice(&ids.model.to_be_bytes());
    out.extend_from_slice(&4i32.to_be_bytes());
    out.extend_from_slice(&horizon.to_be_bytes());
    for x in [f.base_ms, f.target_ms] {
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&x.to_be_bytes());
    }
    let float = |out: &mut Vec<u8>, x: Option<f64>| match x {
        Some(x) => {
            out.extend_from_slice(&8i32.to_be_bytes());
            out.extend_from_slice(&x.to_bits().to_be_bytes());
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    };
    for x in [f.last, f.point, f.lo80, f.hi80, f.lo95, f.hi95] {
        float(out, Some(x));
    }
    for i in 0..9 {
        float(out, f.quantiles.map(|q| q[i]));
    }
    float(out, f.touch.map(|t| t.alpha));
    float(out, f.touch.map(|t| t.beta));
    match ids.version {
        Some(id) => {
            out.extend_from_slice(&4i32.to_be_bytes());
            out.extend_from_slice(&id.to_be_bytes());
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
    match f.degraded {
        Some(d) => {
            out.extend_from_slice(&1i32.to_be_bytes());
            out.push(u8::from(d));
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
    Ok(())
}
