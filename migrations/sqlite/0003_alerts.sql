-- Alerts (issue 5): rules, their events, the alert stage's state and the webhook outbox,
-- SQLite dialect.

-- alert rules; spec is the rule as JSON (serde of tickcast_consumers::alerts::Rule).
-- source 'file': synced from the rule file at start-up; 'api': written through the API.
create table if not exists alert_rules (
    id         text   not null primary key,   -- user-chosen slug, [a-z0-9_-]{1,64}
    spec       text   not null,
    source     text   not null,               -- 'file' | 'api'
    updated_ms integer not null
);

-- one row per alert state transition; the id is deterministic (rule, series, model, horizon,
-- new state, ts_ms), so a redelivered input rewrites the same row.
create table if not exists alert_events (
    id        text             not null primary key,
    rule_id   text             not null,
    exchange  text             not null,
    symbol    text             not null,
    interval  text             not null,
    model     text             not null,
    horizon   integer          not null,
    state     text             not null,      -- 'pending' | 'firing' | 'resolved'
    ts_ms     integer          not null,      -- open time of the bar that moved the state
    value     real             not null,      -- what the rule compared
    threshold real             not null,
    message   text             not null
);
create index if not exists alert_events_by_ts on alert_events (ts_ms);
create index if not exists alert_events_by_rule on alert_events (rule_id, ts_ms);

-- the alert stage's state per consumer group and series (JSON: every rule instance's state
-- machine, forecast bands awaiting their target bar, recent closes).
create table if not exists alert_state (
    consumer   text   not null,
    exchange   text   not null,
    symbol     text   not null,
    interval   text   not null,
    state      text   not null,
    updated_ms integer not null,
    primary key (consumer, exchange, symbol, interval)
) without rowid;

-- webhook outbox: one row per event and endpoint, inserted once (never again after
-- delivery). status 'pending' (due at next_ms), 'delivered' (2xx), 'dead' (given up: the
-- dead-letter record, with the last error).
create table if not exists alert_deliveries (
    endpoint   text    not null,
    event_id   text    not null,
    ts_ms      integer not null,               -- the event's time, for ordering
    body       text    not null,               -- the exact JSON body that is signed and sent
    status     text    not null,
    attempts   integer not null,
    next_ms    integer not null,
    last_error text,
    updated_ms integer not null,
    primary key (endpoint, event_id)
) without rowid;
create index if not exists alert_deliveries_due on alert_deliveries (endpoint, status, next_ms);
