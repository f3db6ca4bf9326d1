-- Indexes for retention's batched deletes (consumers/src/store/retention.rs): forecasts by base
-- bar time, candles by interval and open time.
create index if not exists forecasts_by_base on forecasts (base_ms);
create index if not exists candles_by_interval_open on candles (interval, open_ms);
