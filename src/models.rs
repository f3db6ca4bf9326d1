//! The model registry: every forecasting model by name, and the forecast stage built from a
//! list of names. Used by `tickcast run`, `tickcast demo` and `tickcast backtest`, so all three
//! run exactly the same models.

use anyhow::{Result, anyhow, bail};
use tickcast_consumers::forecast::Forecaster;
use tickcast_consumers::forecast::calibrated::{Calibrated, CalibrationSettings};
use tickcast_consumers::forecast::ensemble::{self, EnsembleSettings};
use tickcast_consumers::forecast::ets::{EtsModel, EtsSettings};
use tickcast_consumers::forecast::garch_model::{GarchModel, GarchSettings};
use tickcast_consumers::forecast::naive::Naive;
use tickcast_consumers::forecast::stage::{ENSEMBLE, ForecastStage};
use tickcast_consumers::forecast::trend::{TrendModel, TrendSettings};

/// Every model name, in the order the stage runs them.
pub const KNOWN: &[&str] = &["naive", "garch", "ets", "trend"];

/// Models run when none are named.
pub const DEFAULT: &str = "naive,garch,ets,trend";

/// One model by name, uncalibrated.
pub fn model(name: &str) -> Result<Box<dyn Forecaster>> {
    match name.trim() {
        "naive" => Ok(Box::new(Naive::default())),
        "garch" => Ok(Box::new(GarchModel::new(GarchSettings::default()))),
        "ets" => Ok(Box::new(EtsModel::new(EtsSettings::default()))),
        "trend" => Ok(Box::new(TrendModel::new(TrendSettings::default()))),
        other => Err(anyhow!(
            "unknown model `{other}`; known: {}",
            KNOWN.join(", ")
        )),
    }
}

/// Checks a list of model names: known, not repeated, and `naive` present when the ensemble
/// is on (it always includes naive). `ensemble` itself is not a model name.
pub fn check(names: &[String], with_ensemble: bool) -> Result<()> {
    if names.is_empty() {
        bail!("no models: name at least one of {}", KNOWN.join(", "));
    }
    for (i, n) in names.iter().enumerate() {
        if n.trim() == ENSEMBLE {
            bail!("`ensemble` is not a model to list: it is on unless --no-ensemble");
        }
        model(n)?;
        if names[..i].iter().any(|m| m.trim() == n.trim()) {
            bail!("model `{}` listed twice", n.trim());
        }
    }
    if with_ensemble && !names.iter().any(|n| n.trim() == ensemble::NAIVE) {
        bail!(
            "the ensemble needs the naive model: add `naive` to the models or pass --no-ensemble"
        );
    }
    Ok(())
}

/// The forecast stage for these models: each model's intervals calibrated online unless
/// `calibrate` is false, plus the ensemble when asked.
pub fn stage(
    names: &[String],
    horizons: &[u32],
    with_ensemble: bool,
    calibrate: bool,
    topic: &str,
) -> Result<ForecastStage> {
    check(names, with_ensemble)?;
    let mut models = Vec::with_capacity(names.len());
    for n in names {
        let m = model(n)?;
        models.push(if calibrate {
            Box::new(Calibrated::new(m, CalibrationSettings::default())) as Box<dyn Forecaster>
        } else {
            m
        });
    }
    let stage = ForecastStage::new(models, horizons.to_vec(), topic);
    Ok(if with_ensemble {
        stage.with_ensemble(EnsembleSettings::default())
    } else {
        stage
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_with_clear_errors() {
        let v = |s: &str| s.split(',').map(String::from).collect::<Vec<_>>();
        assert!(check(&v("naive,garch"), true).is_ok());
        assert!(check(&v("garch"), false).is_ok());
        let err =
            |names: &str, ens: bool| format!("{:#}", check(&v(names), ens).expect_err("error"));
        assert!(err("garch", true).contains("needs the naive model"));
        assert!(
            err("naive,arima", true)
                .contains("unknown model `arima`; known: naive, garch, ets, trend")
        );
        assert!(err("naive,naive", true).contains("listed twice"));
        assert!(err("naive,ensemble", true).contains("not a model to list"));
        assert!(check(&[], false).is_err());
    }
}
