//! Scale-out on one machine, against Apache Kafka and Postgres, every stage its own process:
//! one replay exchange → two ingesters on the same feed (every trade published twice) → one
//! candles stage → three forecast stages in one consumer group over six partitions → a sink.
//! One forecast process is killed with SIGKILL mid-stream, once it has checkpointed past the
//! GARCH warm-up; the other two take its partitions over, then it starts again and takes two
//! partitions back. At the end, exactly:
//! - the ticks topic holds every trade twice, and the candles (topic and Postgres) are those of
//!   one copy of the trades: the candles stage removed the duplicates;
//! - Postgres holds exactly one forecast per closed candle, model and horizon, each equal to
//!   what one uninterrupted stage computes from those candles; copies on the forecasts topic
//!   are byte-identical and all come from after the kill (no series was recomputed from its
//!   start);
//! - the killed process's series were restored, not retrained: they have GARCH forecasts for
//!   the bar right after their checkpoint (a fresh series needs 200 returns before its first).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Env, ForecastKey as Key, Mode, forecast_key as key, reference_forecasts};
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _, StreamConsumer};
use rust_decimal::Decimal;
use tickcast_core::codec;
use tickcast_core::domain::{Candle, Forecast, Tick};
use tickcast_core::shutdown;
use tickcast_ingest::replay::{ReplayOptions, ReplayServer};
use tickcast_ingest::simulator::SimConfig;
use tickcast_store::{CandleQuery, ForecastQuery, Store};

const PARTITIONS: i32 = 6;
/// Symbols to pick six from, one per partition of the default (CRC32) partitioner.
const CANDIDATES: [&str; 10] = [
    "BTC-USDT",
    "ETH-USDT",
    "SOL-USDT",
    "XRP-USDT",
    "ADA-USDT",
    "DOGE-USDT",
    "LTC-USDT",
    "AVAX-USDT",
    "LINK-USDT",
    "BNB-USDT",
];
const MODELS: &str = "naive,garch";
const HORIZONS: &str = "1,5";
const START_MS: i64 = 1_700_000_000_000;
const BAR: i64 = 60_000;
/// About 20 trades per symbol and minute: ~500 one-minute bars per symbol, none empty.
const TRADES: u64 = 60_000;
const MEAN_GAP_MS: u64 = 500;
/// Event time runs 600× real time: ten bars a second, ~50 s for the whole stream.
const SPEED: f64 = 600.0;
/// Real seconds before the first trade, for both ingesters to connect and subscribe.
const LEAD_SECS: f64 = 5.0;
/// The kill waits until every series is checkpointed this many bars in (GARCH needs 200).
const WARM_BARS: i64 = 250;

fn log(t0: Instant, what: &str) {
    eprintln!("[{:6.1}s] {what}", t0.elapsed().as_secs_f64());
}

/// CRC32 (IEEE), librdkafka's default partitioner hash.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & 0u32.wrapping_sub(crc & 1));
        }
    }
    !crc
}

fn partition_of(symbol: &str) -> i32 {
    (crc32(codec::key_of("binance", symbol).as_bytes()) % PARTITIONS as u32) as i32
}

/// Six symbols, one per partition.
fn symbols() -> Vec<String> {
    let mut by_partition: BTreeMap<i32, &str> = BTreeMap::new();
    for s in CANDIDATES {
        by_partition.entry(partition_of(s)).or_insert(s);
    }
    assert_eq!(
        by_partition.len(),
        PARTITIONS as usize,
        "candidates cover every partition"
    );
    by_partition.values().map(|s| s.to_string()).collect()
}

/// Child processes, killed (SIGKILL) when dropped so a failing test leaves none behind.
#[derive(Default)]
struct Procs(Vec<(String, Child)>);

impl Procs {
    fn spawn(&mut self, name: &str, env: &Env, args: &[&str]) -> usize {
        let child = Command::new(env!("CARGO_BIN_EXE_tickcast"))
            .args(args)
            .args(["--bootstrap", &env.settings().bootstrap])
            .args(["--topic-prefix", &env.topics.prefix])
            .args(["--partitions", &PARTITIONS.to_string()])
            .env(
                "RUST_LOG",
                // A copy arriving more than --dedup-retention-ms of event time after its window
                // closed is dead-lettered as a late tick, one warning each. The replay runs event
                // time far faster than the wall clock, so a lagging ingester's copies can be that
                // late here: expected, and noisy.
                std::env::var("TICKCAST_CHILD_LOG")
                    .unwrap_or_else(|_| "warn,tickcast_core::deadletter=error".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        self.0.push((name.to_string(), child));
        self.0.len() - 1
    }

    fn stage(&mut self, name: &str, env: &Env, stage: &str) -> usize {
        self.spawn(
            name,
            env,
            &[
                "run",
                "--stages",
                stage,
                "--group-prefix",
                &env.group_prefix,
                "--database-url",
                &env.database_url,
                "--models",
                MODELS,
                "--horizons",
                HORIZONS,
                "--checkpoint-secs",
                "0.5",
            ],
        )
    }

    /// SIGKILL: no final checkpoint, no final commit, no leaving the group.
    fn kill(&mut self, i: usize) {
        let (name, mut child) = std::mem::replace(&mut self.0[i], ("killed".into(), dummy()));
        child.kill().unwrap();
        child.wait().unwrap();
        eprintln!("{name} killed");
    }

    /// Fails if a process exited by itself.
    fn check_running(&mut self) {
        for (name, child) in self.0.iter_mut().filter(|(n, _)| n != "killed") {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("{name} exited: {status}");
            }
        }
    }
}

/// A placeholder for a killed process's slot: an exited `true`.
fn dummy() -> Child {
    let mut c = Command::new("true").spawn().unwrap();
    c.wait().unwrap();
    c
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Members of a consumer group and the partitions of `topic` each is assigned, when the group
/// is `Stable`.
async fn stable_members(
    bootstrap: &str,
    group: &str,
    topic: &str,
) -> Option<BTreeMap<String, Vec<i32>>> {
    let (bootstrap, group, topic) = (bootstrap.to_string(), group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        let list = client
            .fetch_group_list(Some(&group), Duration::from_secs(5))
            .ok()?;
        let g = list.groups().first()?;
        if g.state() != "Stable" {
            return None;
        }
        Some(
            g.members()
                .iter()
                .map(|m| (m.id().to_string(), parse_assignment(m.assignment(), &topic)))
                .collect(),
        )
    })
    .await
    .unwrap()
}

/// Partitions of `topic` in a consumer-protocol assignment: version (i16), then per topic its
/// name (i16 length + bytes) and partitions (i32 count + i32 each).
fn parse_assignment(bytes: Option<&[u8]>, topic: &str) -> Vec<i32> {
    let Some(b) = bytes.filter(|b| b.len() >= 6) else {
        return Vec::new();
    };
    let i16_at = |i: usize| i16::from_be_bytes([b[i], b[i + 1]]) as usize;
    let i32_at = |i: usize| i32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut out = Vec::new();
    let mut at = 2;
    for _ in 0..i32_at(at) {
        at += 4;
        let len = i16_at(at);
        let name = &b[at + 2..at + 2 + len];
        at += 2 + len;
        let n = i32_at(at);
        for p in 0..n as usize {
            if name == topic.as_bytes() {
                out.push(i32_at(at + 4 + 4 * p));
            }
        }
        at += 4 * n as usize;
    }
    out.sort();
    out
}

/// Waits until the group is stable with `members` members sharing all partitions, `per` each.
async fn wait_group(
    env: &Env,
    group: &str,
    members: usize,
    per: usize,
) -> BTreeMap<String, Vec<i32>> {
    let topic = env.topics.candles();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(m) = stable_members(&env.settings().bootstrap, group, &topic).await {
            let all: BTreeSet<i32> = m.values().flatten().copied().collect();
            if m.len() == members
                && m.values().all(|p| p.len() == per)
                && all.len() == PARTITIONS as usize
            {
                return m;
            }
            last = Some(m);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("group {group}: never stable with {members} members × {per} partitions; last {last:?}");
}

/// Every message of `topic` from the start: (partition, payload). Reads until `want` arrived
/// (or 60 s passed), then 2 s more to catch anything beyond.
async fn read_topic(env: &Env, topic: &str, want: usize) -> Vec<(i32, Vec<u8>)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &env.settings().bootstrap)
        .set(
            "group.id",
            common::unique(&format!("{}reader", env.group_prefix)),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let mut until = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut quiet = false;
    while let Ok(m) = tokio::time::timeout_at(until, consumer.recv()).await {
        let m = m.unwrap();
        out.push((m.partition(), m.payload().unwrap_or_default().to_vec()));
        if out.len() >= want && !quiet {
            quiet = true;
            until = tokio::time::Instant::now() + Duration::from_secs(2);
        }
    }
    out
}

async fn db_forecasts(store: &dyn Store, symbols: &[String]) -> Vec<Forecast> {
    let mut out = Vec::new();
    for s in symbols {
        for m in ["naive", "garch", "ensemble"] {
            let q = ForecastQuery {
                symbol: Some(s.clone()),
                model: Some(m.to_string()),
                limit: 10_000,
                ..Default::default()
            };
            let rows = store.forecasts(&q).await.unwrap();
            assert!(rows.len() < 10_000, "page limit reached");
            out.extend(rows);
        }
    }
    out
}

async fn db_candles(store: &dyn Store, symbols: &[String]) -> Vec<Candle> {
    let mut out = Vec::new();
    for s in symbols {
        let q = CandleQuery {
            symbol: Some(s.clone()),
            limit: 10_000,
            ..Default::default()
        };
        out.extend(store.candles(&q).await.unwrap());
    }
    out.sort_by(|a, b| (a.open_ms, &a.symbol).cmp(&(b.open_ms, &b.symbol)));
    out
}

/// Distinct records by `id`, asserting that copies are byte-identical; returns them with
/// the number of copies beyond the first.
fn dedup<T, K: Ord + std::fmt::Debug>(
    what: &str,
    msgs: &[(i32, Vec<u8>)],
    id: impl Fn(&T) -> K,
) -> (BTreeMap<K, (i32, T)>, BTreeMap<K, usize>)
where
    T: codec::Message,
{
    let mut first: BTreeMap<K, (i32, &[u8], T)> = BTreeMap::new();
    let mut copies: BTreeMap<K, usize> = BTreeMap::new();
    for (p, bytes) in msgs {
        let v: T = codec::decode(bytes).unwrap();
        let k = id(&v);
        match first.get(&k) {
            Some((p0, b0, _)) => {
                assert_eq!(
                    (p0, *b0),
                    (p, bytes.as_slice()),
                    "{what} {k:?}: a copy differs"
                );
                *copies.entry(k).or_default() += 1;
            }
            None => {
                first.insert(k, (*p, bytes, v));
            }
        }
    }
    let first = first
        .into_iter()
        .map(|(k, (p, _, v))| (k, (p, v)))
        .collect();
    (first, copies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_forecast_processes_one_killed_and_restarted_two_ingesters() {
    let Some(env) = Env::new(Mode::Real, "scaleout", PARTITIONS).await else {
        return;
    };
    let t0 = Instant::now();
    let symbols = symbols();
    let group = format!("{}forecast", env.group_prefix);
    let bar0 = START_MS - START_MS.rem_euclid(BAR);
    let warm_ms = bar0 + WARM_BARS * BAR;

    // The exchange: nothing happens for LEAD_SECS, then ten bars a second.
    let sim = SimConfig {
        seed: 7,
        symbols: symbols
            .iter()
            .map(|s| (s.clone(), tickcast_ingest::replay::source::start_price(s)))
            .collect(),
        start_ms: START_MS,
        mean_gap_ms: MEAN_GAP_MS,
        sigma: 0.0004,
    };
    let opts = ReplayOptions {
        total: Some(TRADES),
        live: true,
        speed: SPEED,
        live_from_ms: Some(START_MS - (LEAD_SECS * 1000.0 * SPEED) as i64),
        ..ReplayOptions::new(sim)
    };
    let replay = ReplayServer::bind("127.0.0.1:0", opts).await.unwrap();
    let url = replay.url().unwrap();
    let (sent, market) = (replay.sent(), replay.market());
    let (trigger, signal) = shutdown::channel();
    let replay_task = tokio::spawn(replay.run(signal));

    let mut procs = Procs::default();
    procs.stage("candles", &env, "candles");
    procs.stage("sink", &env, "sink");
    let mut forecast: Vec<usize> = (0..3)
        .map(|i| procs.stage(&format!("forecast-{i}"), &env, "forecast"))
        .collect();
    let joined = symbols.join(",");
    for i in 0..2 {
        let args = [
            "ingest",
            "--exchange",
            "binance",
            "--url",
            &url,
            "--symbols",
            &joined,
            // The replay's clock runs SPEED times faster than the wall.
            "--max-clock-skew-ms",
            "off",
            "--max-tick-age-ms",
            "off",
        ];
        procs.spawn(&format!("ingest-{i}"), &env, &args);
    }
    let both = common::eventually(Duration::from_secs(LEAD_SECS as u64), || {
        let n = sent.connections();
        async move { n >= 2 }
    })
    .await;
    assert!(
        both && market.is_empty(),
        "both ingesters must connect before the first trade"
    );
    log(t0, "two ingesters connected");

    // Kill one forecast process once every series is checkpointed past the warm-up.
    let consumer = group.clone();
    let series_keys: Vec<(String, String, String)> = symbols
        .iter()
        .map(|s| ("binance".to_string(), s.clone(), "1m".to_string()))
        .collect();
    let store = env.store.clone();
    let states = |store: std::sync::Arc<dyn Store>| {
        let (consumer, keys) = (consumer.clone(), series_keys.clone());
        async move {
            let rows = store.load_series_states(&consumer, &keys).await.unwrap();
            rows.into_iter()
                .map(|r| (r.symbol, r.last_open_ms))
                .collect::<BTreeMap<String, i64>>()
        }
    };
    let warm = common::eventually(Duration::from_secs(90), || {
        let s = states(store.clone());
        async move {
            let s = s.await;
            s.len() == PARTITIONS as usize && s.values().all(|&t| t >= warm_ms)
        }
    })
    .await;
    procs.check_running();
    assert!(warm, "no checkpoint past the warm-up for every series");
    let before = wait_group(&env, &group, 3, 2).await;
    procs.kill(forecast[1]);
    let restart_at = states(store.clone()).await;
    log(
        t0,
        &format!("killed forecast-1; assignment was {before:?}, checkpoints {restart_at:?}"),
    );

    // The survivors take its partitions over and carry its series on from the checkpoint.
    let after = wait_group(&env, &group, 2, 3).await;
    let gone: Vec<&String> = before.keys().filter(|m| !after.contains_key(*m)).collect();
    assert_eq!(
        gone.len(),
        1,
        "one member left: before {before:?}, after {after:?}"
    );
    let killed: Vec<String> = symbols
        .iter()
        .filter(|s| before[gone[0]].contains(&partition_of(s)))
        .cloned()
        .collect();
    assert_eq!(killed.len(), 2, "the killed process owned two series");
    log(
        t0,
        &format!("survivors own all partitions {after:?}; killed series {killed:?}"),
    );
    let moved_on = common::eventually(Duration::from_secs(30), || {
        let (s, killed, restart_at) = (states(store.clone()), killed.clone(), restart_at.clone());
        async move {
            let s = s.await;
            killed.iter().all(|k| s[k] > restart_at[k])
        }
    })
    .await;
    assert!(
        moved_on,
        "the survivors never checkpointed the killed process's series"
    );

    // Start it again: it takes two partitions back (the survivors give them up).
    forecast[1] = procs.stage("forecast-1 again", &env, "forecast");
    let again = wait_group(&env, &group, 3, 2).await;
    let new: Vec<&String> = again.keys().filter(|m| !after.contains_key(*m)).collect();
    assert_eq!(new.len(), 1, "one member joined: {again:?}");
    log(
        t0,
        &format!("restarted process owns partitions {:?}", again[new[0]]),
    );

    // The stream ends; wait for the store to hold everything.
    let ended = common::eventually(Duration::from_secs(120), || {
        let done = market.exhausted();
        async move { done }
    })
    .await;
    assert!(ended, "the replay never ran out");
    let trades = market.happened();
    assert_eq!(trades.len() as u64, TRADES);
    log(t0, "stream ended");
    let expected = common::closed_candles(trades.iter().cloned());
    let want = reference_forecasts(&expected, MODELS, &[1, 5]);
    let complete = common::eventually(Duration::from_secs(90), || {
        let store = store.clone();
        let (nc, nf) = (expected.len(), want.len());
        async move { store.row_counts().await.unwrap() == (nc as i64, nf as i64) }
    })
    .await;
    procs.check_running();
    let counts = store.row_counts().await.unwrap();
    assert!(
        complete,
        "store holds {counts:?}, want ({}, {})",
        expected.len(),
        want.len()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        store.row_counts().await.unwrap(),
        counts,
        "rows arrived after the end"
    );
    log(t0, &format!("store complete: {counts:?}"));

    // Ticks: every trade exactly twice, on its symbol's partition.
    let ticks = read_topic(&env, &env.topics.ticks(), 2 * trades.len()).await;
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (p, bytes) in &ticks {
        let t: Tick = codec::decode(bytes).unwrap();
        assert_eq!(
            *p,
            partition_of(&t.symbol),
            "tick {} on partition {p}",
            t.symbol
        );
        *seen.entry((t.symbol, t.trade_id)).or_default() += 1;
    }
    let ids: BTreeMap<(String, String), usize> = trades
        .iter()
        .map(|t| ((t.symbol.clone(), t.trade_id.to_string()), 2))
        .collect();
    assert!(
        seen == ids,
        "ticks are not every trade exactly twice ({} ticks)",
        ticks.len()
    );

    // Candles: one copy of the trades, one symbol per partition, on the topic and in Postgres.
    let msgs = read_topic(&env, &env.topics.candles(), expected.len()).await;
    let (candles, copies) = dedup::<Candle, _>("candle", &msgs, |c| (c.symbol.clone(), c.open_ms));
    assert!(copies.is_empty(), "candles published twice: {copies:?}");
    for (p, c) in candles.values() {
        assert_eq!(
            *p,
            partition_of(&c.symbol),
            "candle {} on partition {p}",
            c.symbol
        );
    }
    let mut got: Vec<Candle> = candles.into_values().map(|(_, c)| c).collect();
    got.sort_by(|a, b| (a.open_ms, &a.symbol).cmp(&(b.open_ms, &b.symbol)));
    assert_eq!(got.len(), expected.len(), "candle count on the topic");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e, "candle on the topic");
    }
    // The same, summed: volume and trade count of the closed windows are one copy's.
    let mut closed_until: BTreeMap<&str, i64> = BTreeMap::new();
    for c in &expected {
        let e = closed_until.entry(c.symbol.as_str()).or_default();
        *e = (*e).max(c.close_ms);
    }
    let in_closed: Vec<_> = trades
        .iter()
        .filter(|t| t.ts_ms < closed_until[t.symbol.as_str()])
        .collect();
    let volume: Decimal = in_closed.iter().map(|t| t.size).sum();
    assert_eq!(
        got.iter().map(|c| c.volume).sum::<Decimal>(),
        volume,
        "candle volume"
    );
    let n: u64 = got.iter().map(|c| c.trades).sum();
    assert_eq!(n, in_closed.len() as u64, "candle trade count");
    assert!(
        db_candles(&*store, &symbols).await == expected,
        "candles in Postgres"
    );

    // Forecasts: exactly the reference in Postgres; copies on the topic identical, all after
    // the kill.
    let rows = db_forecasts(&*store, &symbols).await;
    let mut db: BTreeMap<Key, Forecast> = BTreeMap::new();
    for f in rows {
        assert!(db.insert(key(&f), f).is_none(), "a forecast row twice");
    }
    let missing: Vec<&Key> = want.keys().filter(|k| !db.contains_key(*k)).collect();
    let extra: Vec<&Key> = db.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} missing, first {:?}",
        missing.len(),
        missing.first()
    );
    assert!(
        extra.is_empty(),
        "{} unexpected, first {:?}",
        extra.len(),
        extra.first()
    );
    for (k, f) in &db {
        assert_eq!(f, &want[k], "forecast {k:?} in Postgres");
    }
    let msgs = read_topic(&env, &env.topics.forecasts(), want.len()).await;
    let (published, copies) = dedup::<Forecast, _>("forecast", &msgs, key);
    assert!(
        published.keys().eq(want.keys()),
        "forecast keys on the topic"
    );
    for (k, (p, f)) in &published {
        assert_eq!(f, &want[k], "forecast {k:?} on the topic");
        assert_eq!(
            *p,
            partition_of(&f.symbol),
            "forecast {k:?} on partition {p}"
        );
    }
    let early: Vec<&Key> = copies.keys().filter(|k| k.3 <= warm_ms).collect();
    assert!(early.is_empty(), "copies from before the kill: {early:?}");

    // The killed process's series went on from their checkpoints, mid-stream, with GARCH.
    for s in &killed {
        let at = restart_at[s];
        let last = expected
            .iter()
            .filter(|c| &c.symbol == s)
            .map(|c| c.open_ms)
            .max()
            .unwrap();
        assert!(
            at >= warm_ms && at < last,
            "{s}: restart point {at} outside ({warm_ms}, {last})"
        );
        for h in [1, 5] {
            let k = (s.clone(), "garch".to_string(), h, at + BAR);
            assert!(
                db.contains_key(&k),
                "{s}: no GARCH forecast right after the restart point"
            );
        }
    }
    let n_copies: usize = copies.values().sum();
    log(
        t0,
        &format!(
            "{} trades ×2, {} candles, {} forecasts, {n_copies} identical copies",
            trades.len(),
            expected.len(),
            want.len()
        ),
    );
    drop(procs);
    trigger.fire();
    replay_task.await.unwrap().unwrap();
}
