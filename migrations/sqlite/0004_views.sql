-- Read-only views (issue 5), SQLite dialect: the same views, columns and meaning as
-- migrations/postgres/0004_views.sql. `time` is ISO-8601 text (UTC) here; booleans are 0/1.

-- The alert tables as migration 0003 creates them (same statements, `if not exists`): a no-op
-- after 0003, and this migration still applies where 0003 has not run yet.
create table if not exists alert_rules (
    id         text    not null primary key,
    spec       text    not null,
    source     text    not null,
    updated_ms bigint  not null
);
create table if not exists alert_events (
    id        text    not null primary key,
    rule_id   text    not null,
    exchange  text    not null,
    symbol    text    not null,
    interval  text    not null,
    model     text    not null,
    horizon   integer not null,
    state     text    not null,
    ts_ms     bigint  not null,
    value     double precision not null,
    threshold double precision not null,
    message   text    not null
);
create index if not exists alert_events_by_ts on alert_events (ts_ms);

-- candles with float prices and `time` = bar open.
create view if not exists candle_series as
select exchange, symbol, interval, open_ms, close_ms,
       strftime('%Y-%m-%dT%H:%M:%fZ', open_ms / 1000.0, 'unixepoch') as "time",
       cast(open as real)   as open,
       cast(high as real)   as high,
       cast(low as real)    as low,
       cast(close as real)  as close,
       cast(volume as real) as volume,
       trades
from candles;

-- every forecast beside the actual close of its target bar (null until that bar is stored).
create view if not exists forecast_outcomes as
select exchange, symbol, interval, model, horizon, base_ms, target_ms,
       strftime('%Y-%m-%dT%H:%M:%fZ', target_ms / 1000.0, 'unixepoch') as "time",
       strftime('%Y-%m-%dT%H:%M:%fZ', base_ms / 1000.0, 'unixepoch')   as base_time,
       last, point, lo80, hi80, lo95, hi95,
       actual,
       actual - point                  as error,
       abs(actual - point)             as abs_error,
       abs(actual - last)              as naive_abs_error,
       actual between lo80 and hi80    as inside80,
       actual between lo95 and hi95    as inside95,
       (hi95 - lo95) + 40 * (max(lo95 - actual, 0) + max(actual - hi95, 0)) as winkler95
from (
    select f.*,
           (select cast(c.close as real) from candles c
             where c.exchange = f.exchange and c.symbol = f.symbol and c.interval = f.interval
               and c.open_ms = f.target_ms) as actual
    from forecasts f
);

-- the newest forecast per series, model and horizon; change = (point − last) / last.
create view if not exists latest_forecasts as
select exchange, symbol, interval, model, horizon, base_ms, target_ms,
       strftime('%Y-%m-%dT%H:%M:%fZ', base_ms / 1000.0, 'unixepoch')   as base_time,
       strftime('%Y-%m-%dT%H:%M:%fZ', target_ms / 1000.0, 'unixepoch') as target_time,
       last, point, lo80, hi80, lo95, hi95,
       (point - last) / nullif(last, 0) as change
from (
    select f.*, row_number() over (
               partition by exchange, symbol, interval, model, horizon order by base_ms desc
           ) as newest
    from forecasts f
)
where newest = 1;

-- rolling accuracy with naive's MAE on the same series and horizon beside it.
create view if not exists accuracy_vs_naive as
select a.exchange, a.symbol, a.interval, a.model, a.horizon, a.ts_ms,
       strftime('%Y-%m-%dT%H:%M:%fZ', a.ts_ms / 1000.0, 'unixepoch') as "time",
       a.n, a.mae, a.rmse, a.mase, a.rel_mae, a.coverage80, a.coverage95, a.winkler95,
       a.directional_accuracy,
       nv.mae                     as naive_mae,
       a.mae / nullif(nv.mae, 0)  as mae_vs_naive
from accuracy a
left join accuracy nv
  on nv.exchange = a.exchange and nv.symbol = a.symbol and nv.interval = a.interval
 and nv.horizon = a.horizon and nv.model = 'naive';

-- alert events with their rule (null where the rule was deleted since).
create view if not exists alert_log as
select e.id, e.rule_id, e.exchange, e.symbol, e.interval, e.model, e.horizon, e.state,
       e.ts_ms, strftime('%Y-%m-%dT%H:%M:%fZ', e.ts_ms / 1000.0, 'unixepoch') as "time",
       e.value, e.threshold, e.message,
       r.spec   as rule_spec,
       r.source as rule_source
from alert_events e
left join alert_rules r on r.id = e.rule_id;

-- the current state of every rule instance (rule and series): its newest event.
create view if not exists alert_current as
select rule_id, exchange, symbol, interval, model, horizon, state, ts_ms,
       strftime('%Y-%m-%dT%H:%M:%fZ', ts_ms / 1000.0, 'unixepoch') as "time",
       value, threshold, message
from (
    select e.*, row_number() over (
               partition by rule_id, exchange, symbol, interval, model, horizon
               order by ts_ms desc,
                        case state when 'resolved' then 3 when 'firing' then 2 else 1 end desc
           ) as newest
    from alert_events e
)
where newest = 1;
