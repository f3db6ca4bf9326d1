-- Version 2 forecasts (schemas/forecast.v2.json), SQLite dialect: the columns of
-- migrations/postgres/0010_forecast_v2.sql, at the end of `forecasts` and `forecasts_latest`.
-- All null in the rows of version 1 forecasts, so a row reads back as the version it was.
--
-- The nine quantiles and the touch calibration have no declared type (no affinity): SQLite
-- writes a whole-number value of a REAL column as an integer, which turns −0.0 into 0; a
-- column without affinity keeps the double the sink binds, bit for bit. `degraded` is 0 or 1.
alter table forecasts add column q025;
alter table forecasts add column q05;
alter table forecasts add column q10;
alter table forecasts add column q25;
alter table forecasts add column q50;
alter table forecasts add column q75;
alter table forecasts add column q90;
alter table forecasts add column q95;
alter table forecasts add column q975;
alter table forecasts add column touch_alpha;
alter table forecasts add column touch_beta;
alter table forecasts add column model_version text;
alter table forecasts add column degraded integer;

alter table forecasts_latest add column q025;
alter table forecasts_latest add column q05;
alter table forecasts_latest add column q10;
alter table forecasts_latest add column q25;
alter table forecasts_latest add column q50;
alter table forecasts_latest add column q75;
alter table forecasts_latest add column q90;
alter table forecasts_latest add column q95;
alter table forecasts_latest add column q975;
alter table forecasts_latest add column touch_alpha;
alter table forecasts_latest add column touch_beta;
alter table forecasts_latest add column model_version text;
alter table forecasts_latest add column degraded integer;

-- The scores of version 2's fields (see the Postgres migration); null where undefined.
alter table accuracy add column crps real;
alter table accuracy add column crps_rel real;
alter table accuracy add column pit_max_err real;
alter table accuracy add column touch_brier real;
alter table accuracy add column touch_brier_rel real;
alter table accuracy add column touch_ece real;
