-- Forecast-stage checkpoints and rolling accuracy (issue 4).

-- each series' model, scorer and ensemble state, per consumer group; last_open_ms is the newest
-- candle folded in, so a redelivered candle is recognised and skipped.
create table if not exists series_state (
    consumer     text        not null,
    exchange     text        not null,
    symbol       text        not null,
    interval     text        not null,
    last_open_ms bigint      not null,
    state        bytea       not null,
    updated_at   timestamptz not null default now(),
    primary key (consumer, exchange, symbol, interval)
);

-- parameters a model shares across series (e.g. LSTM weights), per consumer group.
create table if not exists model_state (
    consumer   text        not null,
    model      text        not null,
    state      bytea       not null,
    updated_at timestamptz not null default now(),
    primary key (consumer, model)
);

-- the latest rolling score per series, model and horizon (exponentially weighted; see the
-- forecast scorer). Ratios are null where undefined (e.g. a flat series).
create table if not exists accuracy (
    exchange             text             not null,
    symbol               text             not null,
    interval             text             not null,
    model                text             not null,
    horizon              integer          not null,
    ts_ms                bigint           not null,
    n                    bigint           not null,
    mae                  double precision not null,
    rmse                 double precision not null,
    mase                 double precision,
    rel_mae              double precision,
    coverage80           double precision not null,
    coverage95           double precision not null,
    winkler95            double precision not null,
    directional_accuracy double precision,
    primary key (exchange, symbol, interval, model, horizon)
);
