//! Row → domain mapping shared by both dialects (same column order and Rust types).

use std::str::FromStr as _;

use anyhow::{Context as _, Result, bail};
use rust_decimal::Decimal;
use sqlx::{ColumnIndex, Database, Decode, Row, Type};
use tickcast_core::domain::{Candle, FORECAST_VERSION, Forecast, SCHEMA_VERSION, TouchCalibration};

use super::checkpoints::AccuracyRow;

fn decimal<R>(row: &R, i: usize) -> Result<Decimal>
where
    R: Row,
    usize: ColumnIndex<R>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    let s: String = row.try_get(i)?;
    Decimal::from_str(&s).with_context(|| format!("stored decimal `{s}`"))
}

pub(crate) fn candle_from<R, DB>(row: &R) -> Result<Candle>
where
    DB: Database,
    R: Row<Database = DB>,
    usize: ColumnIndex<R>,
    String: for<'r> Decode<'r, DB> + Type<DB>,
    i64: for<'r> Decode<'r, DB> + Type<DB>,
{
    Ok(Candle {
        v: SCHEMA_VERSION,
        exchange: row.try_get(0)?,
        symbol: row.try_get(1)?,
        interval: row.try_get(2)?,
        open_ms: row.try_get(3)?,
        close_ms: row.try_get(4)?,
        open: decimal(row, 5)?,
        high: decimal(row, 6)?,
        low: decimal(row, 7)?,
        close: decimal(row, 8)?,
        volume: decimal(row, 9)?,
        trades: row.try_get::<i64, _>(10)?.max(0) as u64,
    })
}

/// The schema version of a stored forecast without version 2's fields.
const FORECAST_V1: u32 = 1;

/// A forecast from a row of `exchange, symbol, interval, model, horizon, base_ms, target_ms,
/// last, point, lo80, hi80, lo95, hi95`, the nine quantiles, `touch_alpha, touch_beta,
/// model_version, degraded`: version 2 when the row has version 2's fields, version 1 (with
/// none of them) when they are all null. A row with some of them but not all is an error.
pub(crate) fn forecast_from<R, DB>(row: &R) -> Result<Forecast>
where
    DB: Database,
    R: Row<Database = DB>,
    usize: ColumnIndex<R>,
    String: for<'r> Decode<'r, DB> + Type<DB>,
    i64: for<'r> Decode<'r, DB> + Type<DB>,
    i32: for<'r> Decode<'r, DB> + Type<DB>,
    f64: for<'r> Decode<'r, DB> + Type<DB>,
    bool: for<'r> Decode<'r, DB> + Type<DB>,
{
    let mut quantiles = [None; 9];
    for (i, q) in quantiles.iter_mut().enumerate() {
        *q = row.try_get::<Option<f64>, _>(13 + i)?;
    }
    let alpha: Option<f64> = row.try_get(22)?;
    let beta: Option<f64> = row.try_get(23)?;
    let model_version: Option<String> = row.try_get(24)?;
    let degraded: Option<bool> = row.try_get(25)?;
    let mut f = Forecast {
        v: FORECAST_V1,
        exchange: row.try_get::<String, _>(0)?.into(),
        symbol: row.try_get::<String, _>(1)?.into(),
        interval: row.try_get::<String, _>(2)?.into(),
        model: row.try_get::<String, _>(3)?.into(),
        horizon: row.try_get::<i32, _>(4)?.max(0) as u32,
        base_ms: row.try_get(5)?,
        target_ms: row.try_get(6)?,
        last: row.try_get(7)?,
        point: row.try_get(8)?,
        lo80: row.try_get(9)?,
        hi80: row.try_get(10)?,
        lo95: row.try_get(11)?,
        hi95: row.try_get(12)?,
        quantiles: None,
        touch: None,
        model_version: None,
        degraded: None,
    };
    let present = quantiles.iter().filter(|q| q.is_some()).count()
        + [alpha, beta].iter().filter(|x| x.is_some()).count()
        + usize::from(model_version.is_some())
        + usize::from(degraded.is_some());
    match (present, alpha, beta, model_version, degraded) {
        (0, ..) => {}
        (13, Some(alpha), Some(beta), Some(version), Some(degraded)) => {
            f.v = FORECAST_VERSION;
            f.quantiles = Some(quantiles.map(|q| q.unwrap_or_default()));
            f.touch = Some(TouchCalibration { alpha, beta });
            f.model_version = Some(version.into());
            f.degraded = Some(degraded);
        }
        _ => bail!(
            "stored forecast {}/{}/{} {} h{} at {} has {present} of version 2's 13 fields \
             (all or none expected)",
            f.exchange,
            f.symbol,
            f.interval,
            f.model,
            f.horizon,
            f.base_ms
        ),
    }
    Ok(f)
}

/// An accuracy row from a row of `ACCURACY_SQL` (`super::ACCURACY_SQL`).
pub(crate) fn accuracy_from<R, DB>(row: &R) -> Result<AccuracyRow>
where
    DB: Database,
    R: Row<Database = DB>,
    usize: ColumnIndex<R>,
    String: for<'r> Decode<'r, DB> + Type<DB>,
    i64: for<'r> Decode<'r, DB> + Type<DB>,
    i32: for<'r> Decode<'r, DB> + Type<DB>,
    f64: for<'r> Decode<'r, DB> + Type<DB>,
{
    Ok(AccuracyRow {
        exchange: row.try_get(0)?,
        symbol: row.try_get(1)?,
        interval: row.try_get(2)?,
        model: row.try_get(3)?,
        horizon: row.try_get(4)?,
        ts_ms: row.try_get(5)?,
        n: row.try_get(6)?,
        mae: row.try_get(7)?,
        rmse: row.try_get(8)?,
        mase: row.try_get(9)?,
        rel_mae: row.try_get(10)?,
        coverage80: row.try_get(11)?,
        coverage95: row.try_get(12)?,
        winkler95: row.try_get(13)?,
        directional_accuracy: row.try_get(14)?,
        crps: row.try_get(15)?,
        crps_rel: row.try_get(16)?,
        pit_max_err: row.try_get(17)?,
        touch_brier: row.try_get(18)?,
        touch_brier_rel: row.try_get(19)?,
        touch_ece: row.try_get(20)?,
    })
}
