-- Read-only views for Grafana and ad-hoc SQL (issue 5): forecasts beside what happened, the
-- newest forecast per series, rolling accuracy beside naive's, alert events with their rule.
-- Each view has a `time` column (timestamptz) so a Grafana query can select it as is; filter
-- big tables on their epoch-millisecond columns (`target_ms`, `open_ms`), which are indexed.

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
create or replace view candle_series as
select exchange, symbol, interval, open_ms, close_ms,
       to_timestamp(open_ms / 1000.0)  as "time",
       open::double precision          as open,
       high::double precision          as high,
       low::double precision           as low,
       close::double precision         as close,
       volume::double precision        as volume,
       trades
from candles;

-- every forecast beside the actual close of its target bar (null until that bar is stored);
-- `time` = target bar open. inside80/inside95: the actual lay inside the interval (bounds
-- included); winkler95: the Winkler score of the 95% interval (width, plus 2/0.05 times the
-- miss; null until scored); naive_abs_error: the error naive (last close) made on the same bar.
create or replace view forecast_outcomes as
select f.exchange, f.symbol, f.interval, f.model, f.horizon, f.base_ms, f.target_ms,
       to_timestamp(f.target_ms / 1000.0)  as "time",
       to_timestamp(f.base_ms / 1000.0)    as base_time,
       f.last, f.point, f.lo80, f.hi80, f.lo95, f.hi95,
       a.actual,
       a.actual - f.point                  as error,
       abs(a.actual - f.point)             as abs_error,
       abs(a.actual - f.last)              as naive_abs_error,
       a.actual between f.lo80 and f.hi80  as inside80,
       a.actual between f.lo95 and f.hi95  as inside95,
       case when a.actual is not null then
           (f.hi95 - f.lo95) + 40 * (greatest(f.lo95 - a.actual, 0) + greatest(a.actual - f.hi95, 0))
       end                                 as winkler95
from forecasts f
left join lateral (
    select c.close::double precision as actual
    from candles c
    where c.exchange = f.exchange and c.symbol = f.symbol and c.interval = f.interval
      and c.open_ms = f.target_ms
) a on true;

-- the newest forecast per series, model and horizon; change = (point − last) / last.
create or replace view latest_forecasts as
select distinct on (exchange, symbol, interval, model, horizon)
       exchange, symbol, interval, model, horizon, base_ms, target_ms,
       to_timestamp(base_ms / 1000.0)    as base_time,
       to_timestamp(target_ms / 1000.0)  as target_time,
       last, point, lo80, hi80, lo95, hi95,
       (point - last) / nullif(last, 0)  as change
from forecasts
order by exchange desc, symbol desc, interval desc, model desc, horizon desc, base_ms desc;

-- rolling accuracy with naive's MAE on the same series and horizon beside it; mae_vs_naive =
-- mae / naive_mae (1 for naive itself; null without a naive row or when naive's MAE is 0).
create or replace view accuracy_vs_naive as
select a.exchange, a.symbol, a.interval, a.model, a.horizon, a.ts_ms,
       to_timestamp(a.ts_ms / 1000.0)   as "time",
       a.n, a.mae, a.rmse, a.mase, a.rel_mae, a.coverage80, a.coverage95, a.winkler95,
       a.directional_accuracy,
       nv.mae                            as naive_mae,
       a.mae / nullif(nv.mae, 0)         as mae_vs_naive
from accuracy a
left join accuracy nv
  on nv.exchange = a.exchange and nv.symbol = a.symbol and nv.interval = a.interval
 and nv.horizon = a.horizon and nv.model = 'naive';

-- alert events with their rule (null where the rule was deleted since); `time` = ts_ms.
create or replace view alert_log as
select e.id, e.rule_id, e.exchange, e.symbol, e.interval, e.model, e.horizon, e.state,
       e.ts_ms, to_timestamp(e.ts_ms / 1000.0) as "time",
       e.value, e.threshold, e.message,
       r.spec   as rule_spec,
       r.source as rule_source
from alert_events e
left join alert_rules r on r.id = e.rule_id;

-- the current state of every rule instance (rule and series): its newest event. At equal
-- times the later state of pending → firing → resolved wins.
create or replace view alert_current as
select distinct on (rule_id, exchange, symbol, interval, model, horizon)
       rule_id, exchange, symbol, interval, model, horizon, state, ts_ms,
       to_timestamp(ts_ms / 1000.0) as "time",
       value, threshold, message
from alert_events
order by rule_id, exchange, symbol, interval, model, horizon, ts_ms desc,
         case state when 'resolved' then 3 when 'firing' then 2 else 1 end desc;
