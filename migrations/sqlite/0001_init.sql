-- tickcast schema, SQLite dialect: the same tables and keys as migrations/postgres.
-- Decimal prices and sizes are stored as their exact text; times are epoch milliseconds (UTC).

-- one row per exchange, symbol, interval and window start.
create table if not exists candles (
    exchange  text    not null,
    symbol    text    not null,
    interval  text    not null,
    open_ms   integer not null,
    close_ms  integer not null,
    open      text    not null,
    high      text    not null,
    low       text    not null,
    close     text    not null,
    volume    text    not null,
    trades    integer not null,
    primary key (exchange, symbol, interval, open_ms)
) without rowid;

-- one row per series, model, horizon and base bar.
create table if not exists forecasts (
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
    primary key (exchange, symbol, interval, model, horizon, base_ms)
) without rowid;

create index if not exists forecasts_by_target on forecasts (exchange, symbol, interval, target_ms);

-- the next offset to read per consumer, topic and partition.
create table if not exists consumer_offsets (
    consumer    text    not null,
    topic       text    not null,
    partition   integer not null,
    next_offset integer not null,
    updated_at  text    not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    primary key (consumer, topic, partition)
) without rowid;
