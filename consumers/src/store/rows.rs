//! Row → domain mapping shared by both dialects (same column order and Rust types).

use std::str::FromStr as _;

use anyhow::{Context as _, Result};
use rust_decimal::Decimal;
use sqlx::{ColumnIndex, Database, Decode, Row, Type};
use tickcast_pipeline::domain::{Candle, Forecast, SCHEMA_VERSION};

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

pub(crate) fn forecast_from<R, DB>(row: &R) -> Result<Forecast>
where
    DB: Database,
    R: Row<Database = DB>,
    usize: ColumnIndex<R>,
    String: for<'r> Decode<'r, DB> + Type<DB>,
    i64: for<'r> Decode<'r, DB> + Type<DB>,
    i32: for<'r> Decode<'r, DB> + Type<DB>,
    f64: for<'r> Decode<'r, DB> + Type<DB>,
{
    Ok(Forecast {
        v: SCHEMA_VERSION,
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
    })
}
