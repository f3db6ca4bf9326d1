-- tickcast schema, Postgres dialect. Every table has a natural primary key so that every write
-- is an upsert and a redelivered batch changes nothing. Times are epoch milliseconds (UTC).

-- one row per exchange, symbol, interval and window start.
create table if not exists candles (
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
);

-- one row per series, model, horizon and base bar (the last closed bar the forecast used).
create table if not exists forecasts (
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
);

create index if not exists forecasts_by_target on forecasts (exchange, symbol, interval, target_ms);

-- the next offset to read per consumer, topic and partition; written in the same
-- transaction as the rows it covers.
create table if not exists consumer_offsets (
    consumer    text        not null,
    topic       text        not null,
    partition   integer     not null,
    next_offset bigint      not null,
    updated_at  timestamptz not null default now(),
    primary key (consumer, topic, partition)
);
