//! The small ids that `forecast_rows` (migration 0009) keeps in place of a forecast's exchange,
//! symbol, interval and model, and (migration 0010) its model version: each name is stored once,
//! in `forecast_series`, `forecast_models` or `forecast_model_versions`, made the first time a
//! forecast carries it, and cached by the store, so a batch reads the catalog only for names it
//! has not seen.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap as HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow};
use sqlx::postgres::PgPool;
use tickcast_core::domain::Forecast;

type SeriesName = (String, String, String);

#[derive(Debug, Default)]
struct Known {
    /// exchange → symbol → interval → id (looked up by `&str`, no key built per row).
    series: HashMap<String, HashMap<String, HashMap<String, i32>>>,
    models: HashMap<String, i16>,
    /// Model version → id.
    versions: HashMap<String, i32>,
}

impl Known {
    fn series_id(&self, f: &Forecast) -> Option<i32> {
        self.series
            .get(&*f.exchange)?
            .get(&*f.symbol)?
            .get(&*f.interval)
            .copied()
    }
}

/// The ids of one forecast row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowIds {
    /// Of its exchange, symbol and interval.
    pub series: i32,
    pub model: i16,
    /// Of its model version; `None` for a version 1 forecast, which has none.
    pub version: Option<i32>,
}

/// The ids known to this store.
#[derive(Debug, Clone, Default)]
pub struct ForecastIds {
    known: Arc<Mutex<Known>>,
}

fn series_of(f: &Forecast) -> SeriesName {
    (
        f.exchange.to_string(),
        f.symbol.to_string(),
        f.interval.to_string(),
    )
}

impl ForecastIds {
    /// The ids of each row, in order; names not seen before are made (another process making
    /// the same name at the same time is not an error: both read its one id).
    pub async fn resolve(&self, pool: &PgPool, rows: &[&Forecast]) -> Result<Vec<RowIds>> {
        let (new_series, new_models, new_versions) = {
            let known = self.lock()?;
            let mut series = BTreeSet::new();
            let mut models = BTreeSet::new();
            let mut versions = BTreeSet::new();
            for f in rows {
                if known.series_id(f).is_none() {
                    series.insert(series_of(f));
                }
                if !known.models.contains_key(&*f.model) {
                    models.insert(f.model.to_string());
                }
                if let Some(v) = &f.model_version
                    && !known.versions.contains_key(&**v)
                {
                    versions.insert(v.to_string());
                }
            }
            (series, models, versions)
        };
        if !new_series.is_empty() {
            let mut cols: [Vec<String>; 3] = Default::default();
            for (e, s, i) in new_series {
                cols[0].push(e);
                cols[1].push(s);
                cols[2].push(i);
            }
            sqlx::query(
                "insert into forecast_series (exchange, symbol, interval) \
                 select * from unnest($1::text[], $2::text[], $3::text[]) on conflict do nothing",
            )
            .bind(&cols[0])
            .bind(&cols[1])
            .bind(&cols[2])
            .execute(pool)
            .await?;
            let got: Vec<(i32, String, String, String)> = sqlx::query_as(
                "select id, exchange, symbol, interval from forecast_series \
                 where (exchange, symbol, interval) in \
                   (select * from unnest($1::text[], $2::text[], $3::text[]))",
            )
            .bind(&cols[0])
            .bind(&cols[1])
            .bind(&cols[2])
            .fetch_all(pool)
            .await?;
            let mut known = self.lock()?;
            for (id, e, s, i) in got {
                known
                    .series
                    .entry(e)
                    .or_default()
                    .entry(s)
                    .or_default()
                    .insert(i, id);
            }
        }
        if !new_models.is_empty() {
            let names: Vec<String> = new_models.into_iter().collect();
            sqlx::query(
                "insert into forecast_models (name) select * from unnest($1::text[]) \
                 on conflict do nothing",
            )
            .bind(&names)
            .execute(pool)
            .await?;
            let got: Vec<(i16, String)> =
                sqlx::query_as("select id, name from forecast_models where name = any($1::text[])")
                    .bind(&names)
                    .fetch_all(pool)
                    .await?;
            let mut known = self.lock()?;
            for (id, name) in got {
                known.models.insert(name, id);
            }
        }
        if !new_versions.is_empty() {
            let names: Vec<String> = new_versions.into_iter().collect();
            sqlx::query(
                "insert into forecast_model_versions (name) select * from unnest($1::text[]) \
                 on conflict do nothing",
            )
            .bind(&names)
            .execute(pool)
            .await?;
            let got: Vec<(i32, String)> = sqlx::query_as(
                "select id, name from forecast_model_versions where name = any($1::text[])",
            )
            .bind(&names)
            .fetch_all(pool)
            .await?;
            let mut known = self.lock()?;
            for (id, name) in got {
                known.versions.insert(name, id);
            }
        }
        let known = self.lock()?;
        rows.iter()
            .map(|f| {
                let missing = || {
                    anyhow!(
                        "no id for forecast series {}/{}/{} model {} version {:?}",
                        f.exchange,
                        f.symbol,
                        f.interval,
                        f.model,
                        f.model_version
                    )
                };
                let series = known.series_id(f).ok_or_else(missing)?;
                let model = known.models.get(&*f.model).copied().ok_or_else(missing)?;
                let version = match &f.model_version {
                    Some(v) => Some(known.versions.get(&**v).copied().ok_or_else(missing)?),
                    None => None,
                };
                Ok(RowIds {
                    series,
                    model,
                    version,
                })
            })
            .collect()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Known>> {
        self.known
            .lock()
            .map_err(|_| anyhow!("forecast ids: poisoned"))
    }
}
