-- Time partitions for the two tables that grow with time (see consumers/src/store/retention.rs):
-- `forecasts` by day of `base_ms`; `candles` by interval, then by span of `open_ms`. The sink
-- makes the partitions it needs as it writes and drops those past retention. Rows written
-- before this migration are moved into partitions by the first process that opens the store
-- after it (the `*_unpartitioned` tables, then dropped). The views that read the tables are
-- made again, unchanged.
drop view if exists candle_series, forecast_outcomes, latest_forecasts;

alter table candles rename to candles_unpartitioned;
alter table candles_unpartitioned rename constraint candles_pkey to candles_unpartitioned_pkey;
alter table forecasts rename to forecasts_unpartitioned;
alter table forecasts_unpartitioned rename constraint forecasts_pkey to forecasts_unpartitioned_pkey;
alter index forecasts_by_target rename to forecasts_unpartitioned_by_target;

create table candles (
    exchange  text    not null,
    symbol    text    not null,
    interval  text    not null,
    open_ms   bigint  not null,
    close_ms  bigint  not null,
    open      numeric not null,
    high      numeric not null,
    low       numeric not null,
    close     numeric not null,
    volume    numeric not null,
    trades    bigint  not null,
    primary key (exchange, symbol, interval, open_ms)
) partition by list (interval);

create table forecasts (
    exchange  text             not null,
    symbol    text             not null,
    interval  text             not null,
    model     text             not null,
    horizon   integer          not null,
    base_ms   bigint           not null,
    target_ms bigint           not null,
    last      double precision not null,
    point     double precision not null,
    lo80      double precision not null,
    hi80      double precision not null,
    lo95      double precision not null,
    hi95      double precision not null,
    primary key (exchange, symbol, interval, model, horizon, base_ms)
) partition by range (base_ms);

create index forecasts_by_target on forecasts (exchange, symbol, interval, target_ms);

-- As 0004_views.sql makes them.
create view candle_series as
select exchange, symbol, interval, open_ms, close_ms,
       to_timestamp(open_ms / 1000.0)  as "time",
       open::double precision          as open,
       high::double precision          as high,
       low::double precision           as low,
       close::double precision         as close,
       volume::double precision        as volume,
       trades
from candles;

create view forecast_outcomes as
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

create view latest_forecasts as
select distinct on (exchange, symbol, interval, model, horizon)
       exchange, symbol, interval, model, horizon, base_ms, target_ms,
       to_timestamp(base_ms / 1000.0)    as base_time,
       to_timestamp(target_ms / 1000.0)  as target_time,
       last, point, lo80, hi80, lo95, hi95,
       (point - last) / nullif(last, 0)  as change
from forecasts
order by exchange desc, symbol desc, interval desc, model desc, horizon desc, base_ms desc;
