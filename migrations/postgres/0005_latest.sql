-- The newest forecast per series, model and horizon, kept by the sink in the same transaction
-- as `forecasts`, so `GET /api/v1/forecasts/latest` reads a few hundred rows instead of
-- scanning the history.
create table if not exists forecasts_latest (
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
    primary key (exchange, symbol, interval, model, horizon)
);

insert into forecasts_latest
select distinct on (exchange, symbol, interval, model, horizon)
       exchange, symbol, interval, model, horizon, base_ms, target_ms, last, point,
       lo80, hi80, lo95, hi95
from forecasts
order by exchange, symbol, interval, model, horizon, base_ms desc
on conflict do nothing;
