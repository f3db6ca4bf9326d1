-- Forecast-stage checkpoints and rolling accuracy (issue 4), SQLite dialect.

-- each series' model, scorer and ensemble state, per consumer group; last_open_ms is the newest
-- candle folded in, so a redelivered candle is recognised and skipped.
create table if not exists series_state (
    consumer     text        not null,
    exchange     text        not null,
    symbol       text        not null,
    interval     text        not null,
    last_open_ms integer not null,
    state        blob    not null,
    updated_at   text    not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    primary key (consumer, exchange, symbol, interval)
) without rowid;

-- parameters a model shares across series (e.g. LSTM weights), per consumer group.
create table if not exists model_state (
    consumer   text        not null,
    model      text        not null,
    state      blob    not null,
    updated_at text    not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    primary key (consumer, model)
) without rowid;

-- the latest rolling score per series, model and horizon (exponentially weighted; see the
-- forecast scorer). Ratios are null where undefined (e.g. a flat series).
create table if not exists accuracy (
    exchange             text             not null,
    symbol               text             not null,
    interval             text             not null,
    model                text             not null,
    horizon              integer          not null,
    ts_ms                integer not null,
    n                    integer not null,
    mae                  real    not null,
    rmse                 real    not null,
    mase                 real,
    rel_mae              real,
    coverage80           real    not null,
    coverage95           real    not null,
    winkler95            real    not null,
    directional_accuracy real,
    primary key (exchange, symbol, interval, model, horizon)
) without rowid;
