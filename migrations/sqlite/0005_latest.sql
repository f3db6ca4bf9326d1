-- The newest forecast per series, model and horizon, kept by the sink in the same transaction
-- as `forecasts` (see the Postgres migration).
create table if not exists forecasts_latest (
    exchange  text    not null,
    symbol    text    not null,
    interval  text    not null,
    model     text    not null,
    horizon   integer not null,
    base_ms   integer not null,
    target_ms integer not null,
    last      real    not null,
    point     real    not null,
    lo80      real    not null,
    hi80      real    not null,
    lo95      real    not null,
    hi95      real    not null,
    primary key (exchange, symbol, interval, model, horizon)
) without rowid;

insert or ignore into forecasts_latest
select f.exchange, f.symbol, f.interval, f.model, f.horizon, f.base_ms, f.target_ms, f.last,
       f.point, f.lo80, f.hi80, f.lo95, f.hi95
from forecasts f
where f.base_ms = (select max(g.base_ms) from forecasts g
                   where g.exchange = f.exchange and g.symbol = f.symbol
                     and g.interval = f.interval and g.model = f.model
                     and g.horizon = f.horizon);
