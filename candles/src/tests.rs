//! Known-answer tests of the candles stage: OHLCV, several intervals, empty windows and their
//! bound, idle close, de-duplication, late counting, and restarts from a committed snapshot at
//! every cut point of a stream.

use rust_decimal::Decimal;

use super::*;
use tickcast_core::codec;
use tickcast_core::domain::{SCHEMA_VERSION, Side};
use tickcast_core::stage::{Handler, Inbound};

const M: i64 = 60_000;

fn d(m: i64, s: u32) -> Decimal {
    Decimal::new(m, s)
}

fn tick_on(exchange: &str, symbol: &str, id: u64, price: i64, size: i64, ts_ms: i64) -> Tick {
    Tick {
        v: SCHEMA_VERSION,
        exchange: exchange.into(),
        symbol: symbol.into(),
        trade_id: id.to_string(),
        price: Decimal::new(price, 2),
        size: Decimal::new(size, 3),
        side: Side::Buy,
        ts_ms,
        ingested_ms: ts_ms,
    }
}

fn tick(symbol: &str, id: u64, price: i64, size: i64, ts_ms: i64) -> Tick {
    tick_on("binance", symbol, id, price, size, ts_ms)
}

fn opts(intervals: &[&str], lateness: i64) -> CandleOptions {
    let mut o = CandleOptions::new(intervals.iter().map(|i| Interval::parse(i).expect(i)));
    o.allowed_lateness_ms = lateness;
    o
}

fn builder(lateness: i64) -> CandleBuilder {
    CandleBuilder::new(opts(&["1m"], lateness), "candles")
}

/// Pushes ticks at offsets 0, 1, … of partition 0; returns what each did and the candles.
fn run(b: &mut CandleBuilder, ticks: &[Tick]) -> (Vec<Pushed>, Vec<Candle>) {
    let mut closed = Vec::new();
    let pushed = ticks
        .iter()
        .enumerate()
        .map(|(i, t)| b.push(t, ("ticks", 0, i as i64), &mut closed))
        .collect();
    (pushed, closed)
}

/// (symbol, interval, open_ms, open, high, low, close, volume, trades) in cents / millis.
type Row = (
    &'static str,
    &'static str,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    u64,
);

/// A candle's identity and exact values.
type Exact = (
    String,
    String,
    i64,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    u64,
);

fn rows(candles: &[Candle]) -> Vec<Exact> {
    candles
        .iter()
        .map(|c| {
            assert_eq!(
                c.close_ms - c.open_ms,
                Interval::parse(&c.interval).expect("label").ms()
            );
            (
                c.symbol.clone(),
                c.interval.clone(),
                c.open_ms,
                c.open,
                c.high,
                c.low,
                c.close,
                c.volume,
                c.trades,
            )
        })
        .collect()
}

fn expect(rows_: &[Row]) -> Vec<Exact> {
    rows_
        .iter()
        .map(|&(s, i, t, o, h, l, c, v, n)| {
            (
                s.to_string(),
                i.to_string(),
                t,
                d(o, 2),
                d(h, 2),
                d(l, 2),
                d(c, 2),
                d(v, 3),
                n,
            )
        })
        .collect()
}

#[test]
fn ohlcv_of_a_window_closes_when_the_watermark_passes() {
    let mut b = builder(0);
    let ticks = [
        tick("BTC-USDT", 1, 10_000, 1_000, 60_000),
        tick("BTC-USDT", 2, 10_500, 2_000, 70_000),
        tick("BTC-USDT", 3, 9_900, 500, 80_000),
        tick("BTC-USDT", 4, 10_100, 1_500, 119_999),
    ];
    let (pushed, closed) = run(&mut b, &ticks);
    assert!(pushed.iter().all(|p| *p == Pushed::Accepted));
    assert!(closed.is_empty(), "window still open at 119999");
    let mut closed = Vec::new();
    b.push(
        &tick("BTC-USDT", 5, 10_200, 1_000, 120_000),
        ("ticks", 0, 4),
        &mut closed,
    );
    assert_eq!(
        rows(&closed),
        expect(&[(
            "BTC-USDT", "1m", 60_000, 10_000, 10_500, 9_900, 10_100, 5_000, 4
        )])
    );
}

#[test]
fn duplicates_are_dropped_and_late_ticks_counted_exactly() {
    let mut b = builder(5_000);
    let t1 = tick("ETH-USDT", 1, 100, 1_000, 1_000);
    let ticks = [
        t1.clone(),
        t1.clone(),                              // duplicate
        tick("ETH-USDT", 2, 101, 1_000, 62_000), // watermark 57 s: window 0 still open
        tick("ETH-USDT", 3, 99, 1_000, 59_000),  // 3 s behind: on time
        tick("ETH-USDT", 3, 99, 1_000, 59_000),  // duplicate again
        tick("ETH-USDT", 4, 102, 1_000, 65_000), // watermark 60 s: window 0 closes
        tick("ETH-USDT", 5, 98, 1_000, 30_000),  // late
        tick("ETH-USDT", 1, 100, 1_000, 1_000),  // a copy from a closed window: still known
        tick("ETH-USDT", 6, 97, 1_000, 59_999),  // late
    ];
    let (pushed, closed) = run(&mut b, &ticks);
    let m1 = Interval::parse("1m").expect("1m");
    assert_eq!(
        pushed,
        vec![
            Pushed::Accepted,
            Pushed::Duplicate,
            Pushed::Accepted,
            Pushed::Accepted,
            Pushed::Duplicate,
            Pushed::Accepted,
            Pushed::Late(vec![m1]),
            Pushed::Duplicate,
            Pushed::Late(vec![m1]),
        ]
    );
    assert_eq!(
        rows(&closed),
        expect(&[("ETH-USDT", "1m", 0, 100, 100, 99, 99, 2_000, 2)])
    );
    let s = b.stats();
    assert_eq!(
        (s.accepted, s.duplicates, s.late_ticks, s.late_windows),
        (4, 3, 2, 2)
    );
}

#[test]
fn copies_of_closed_windows_are_duplicates_within_the_retention() {
    // Window [0, 60 s) closes at watermark 60 s; the copy of trade 1 arrives at watermark
    // 125 s, when the window ended 65 s before: kept for a retention above 65 s only.
    for (retention, expected) in [
        (0, Pushed::Late(vec![Interval::parse("1m").expect("1m")])),
        (
            60_000,
            Pushed::Late(vec![Interval::parse("1m").expect("1m")]),
        ),
        (
            65_000,
            Pushed::Late(vec![Interval::parse("1m").expect("1m")]),
        ),
        (65_001, Pushed::Duplicate),
        (CandleOptions::DEFAULT_DEDUP_RETENTION_MS, Pushed::Duplicate),
    ] {
        let mut o = opts(&["1m"], 0);
        o.dedup_retention_ms = retention;
        let mut b = CandleBuilder::new(o, "candles");
        let t1 = tick("BTC-USDT", 1, 100, 1_000, 1_000);
        let ticks = [
            t1.clone(),
            tick("BTC-USDT", 2, 101, 1_000, 61_000), // closes window 0
            tick("BTC-USDT", 3, 102, 1_000, 125_000),
            t1,
        ];
        let (pushed, closed) = run(&mut b, &ticks);
        assert_eq!(pushed[3], expected, "retention {retention}");
        // Either way window 0 holds trade 1 once.
        assert_eq!(
            rows(&closed),
            expect(&[
                ("BTC-USDT", "1m", 0, 100, 100, 100, 100, 1_000, 1),
                ("BTC-USDT", "1m", M, 101, 101, 101, 101, 1_000, 1),
            ]),
            "retention {retention}"
        );
        let s = b.stats();
        let dup = u64::from(expected == Pushed::Duplicate);
        assert_eq!((s.duplicates, s.late_ticks), (dup, 1 - dup));
    }
}

#[test]
fn several_intervals_are_built_side_by_side() {
    let mut b = CandleBuilder::new(opts(&["5m", "1m", "1m"], 0), "candles");
    assert_eq!(b.options().intervals.len(), 2, "sorted and de-duplicated");
    let ticks = [
        tick("BTC-USDT", 1, 100, 1_000, 10_000),
        tick("BTC-USDT", 2, 105, 1_000, 70_000),
        tick("BTC-USDT", 3, 95, 1_000, 130_000),
        tick("BTC-USDT", 4, 101, 1_000, 299_000),
        tick("BTC-USDT", 5, 110, 1_000, 300_000),
    ];
    let (_, closed) = run(&mut b, &ticks);
    // The window [180 s, 240 s) had no trade: an explicit empty 1m candle.
    assert_eq!(
        rows(&closed),
        expect(&[
            ("BTC-USDT", "1m", 0, 100, 100, 100, 100, 1_000, 1),
            ("BTC-USDT", "1m", M, 105, 105, 105, 105, 1_000, 1),
            ("BTC-USDT", "1m", 2 * M, 95, 95, 95, 95, 1_000, 1),
            ("BTC-USDT", "1m", 3 * M, 95, 95, 95, 95, 0, 0),
            ("BTC-USDT", "1m", 4 * M, 101, 101, 101, 101, 1_000, 1),
            ("BTC-USDT", "5m", 0, 100, 105, 95, 101, 4_000, 4),
        ])
    );
}

#[tokio::test]
async fn commit_waits_for_the_longest_interval() {
    let mut b = CandleBuilder::new(opts(&["1m", "1h"], 0), "candles");
    let batch: Vec<Inbound> = [
        tick("BTC-USDT", 1, 100, 1, 1_000),
        tick("BTC-USDT", 2, 100, 1, 61_000),
        tick("BTC-USDT", 3, 100, 1, 121_000),
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| Inbound {
        topic: "ticks".into(),
        partition: 0,
        offset: 40 + i as i64,
        key: None,
        payload: codec::encode(t),
    })
    .collect();
    let fx = b.handle(&batch).await.expect("handled");
    assert_eq!(fx.records.len(), 2, "two 1m windows closed");
    // The 1h window opened at offset 40 is still open.
    let plan = fx.commit.expect("plan");
    assert_eq!(plan[&("ticks".to_string(), 0)].offset, 40);
}

#[test]
fn empty_windows_repeat_the_previous_close_up_to_the_bound() {
    let mut o = opts(&["1m"], 0);
    o.max_empty_windows = 2;
    let mut b = CandleBuilder::new(o, "candles");
    let ticks = [
        tick("BTC-USDT", 1, 100, 1_000, 0),
        tick("BTC-USDT", 2, 103, 1_000, 30_000),
        tick("BTC-USDT", 3, 104, 2_000, 3 * M + 5), // gap of 2 windows: both filled
        tick("BTC-USDT", 4, 90, 1_000, 9 * M),      // gap of 5 windows: 2 filled, then counted
        tick("BTC-USDT", 5, 91, 1_000, 10 * M),
    ];
    let (_, closed) = run(&mut b, &ticks);
    assert_eq!(
        rows(&closed),
        expect(&[
            ("BTC-USDT", "1m", 0, 100, 103, 100, 103, 2_000, 2),
            ("BTC-USDT", "1m", M, 103, 103, 103, 103, 0, 0),
            ("BTC-USDT", "1m", 2 * M, 103, 103, 103, 103, 0, 0),
            ("BTC-USDT", "1m", 3 * M, 104, 104, 104, 104, 2_000, 1),
            ("BTC-USDT", "1m", 4 * M, 104, 104, 104, 104, 0, 0),
            ("BTC-USDT", "1m", 5 * M, 104, 104, 104, 104, 0, 0),
            ("BTC-USDT", "1m", 9 * M, 90, 90, 90, 90, 1_000, 1),
        ])
    );
    let s = b.stats();
    assert_eq!((s.candles, s.empty_candles, s.unfilled_gaps), (7, 4, 1));
    // Empty windows validate as candles.
    for c in &closed {
        assert_eq!(codec::decode::<Candle>(&codec::encode(c)).as_ref(), Ok(c));
    }
}

#[test]
fn no_empty_windows_before_the_first_trade_or_when_disabled() {
    let mut o = opts(&["1m"], 0);
    o.max_empty_windows = 0;
    let mut b = CandleBuilder::new(o, "candles");
    let (_, closed) = run(
        &mut b,
        &[
            tick("BTC-USDT", 1, 100, 1_000, 5 * M),
            tick("BTC-USDT", 2, 101, 1_000, 8 * M),
        ],
    );
    assert_eq!(closed.len(), 1);
    assert_eq!((b.stats().empty_candles, b.stats().unfilled_gaps), (0, 1));
}

/// Symbol A trades once; B carries the exchange watermark forward.
fn idle_run(
    b_times: &[i64],
    grace: i64,
    lateness: i64,
    max_empty: u32,
) -> (Vec<Candle>, CandleStats) {
    let mut o = opts(&["1m"], lateness);
    o.idle_grace_ms = Some(grace);
    o.max_empty_windows = max_empty;
    let mut b = CandleBuilder::new(o, "candles");
    let mut ticks = vec![tick("SOL-USDT", 1, 500, 1_000, 30_000)];
    for (i, &t) in b_times.iter().enumerate() {
        ticks.push(tick("BTC-USDT", 10 + i as u64, 100, 1_000, t));
    }
    let (_, closed) = run(&mut b, &ticks);
    let sol = closed
        .into_iter()
        .filter(|c| c.symbol == "SOL-USDT")
        .collect();
    (sol, b.stats().clone())
}

#[test]
fn an_idle_symbol_closes_once_its_exchange_is_past_end_plus_lateness_plus_grace() {
    // Window [0, 60 s) of SOL; lateness 5 s, grace 20 s: closes when BTC reaches 85 s.
    let (sol, _) = idle_run(&[40_000, 84_999], 20_000, 5_000, 10);
    assert!(sol.is_empty(), "84.999 s is not yet past 60 + 5 + 20");
    let (sol, stats) = idle_run(&[40_000, 85_000], 20_000, 5_000, 10);
    assert_eq!(
        rows(&sol),
        expect(&[("SOL-USDT", "1m", 0, 500, 500, 500, 500, 1_000, 1)])
    );
    assert_eq!(stats.idle_closed, 1);
    // Another exchange's ticks never close it.
    let mut o = opts(&["1m"], 0);
    o.idle_grace_ms = Some(0);
    let mut b = CandleBuilder::new(o, "candles");
    let (_, closed) = run(
        &mut b,
        &[
            tick("SOL-USDT", 1, 500, 1_000, 30_000),
            tick_on("coinbase", "BTC-USD", 2, 100, 1_000, 10 * M),
        ],
    );
    assert!(closed.is_empty(), "{closed:?}");
}

#[test]
fn idle_empty_windows_do_not_depend_on_how_the_watermark_moved() {
    // BTC steps minute by minute, or jumps at once; SOL's candles are the same: its trade
    // window, 3 empty windows (the bound), then nothing.
    let steps: Vec<i64> = (1..=12).map(|m| m * M + 1_000).collect();
    let (a, sa) = idle_run(&steps, 0, 0, 3);
    let (b, sb) = idle_run(&[12 * M + 1_000], 0, 0, 3);
    assert_eq!(rows(&a), rows(&b));
    assert_eq!(
        rows(&a),
        expect(&[
            ("SOL-USDT", "1m", 0, 500, 500, 500, 500, 1_000, 1),
            ("SOL-USDT", "1m", M, 500, 500, 500, 500, 0, 0),
            ("SOL-USDT", "1m", 2 * M, 500, 500, 500, 500, 0, 0),
            ("SOL-USDT", "1m", 3 * M, 500, 500, 500, 500, 0, 0),
        ])
    );
    assert_eq!((sa.unfilled_gaps, sb.unfilled_gaps), (1, 1));
}

#[test]
fn a_tick_late_for_one_interval_still_counts_in_the_longer_one() {
    let mut b = CandleBuilder::new(opts(&["1m", "5m"], 0), "candles");
    let ticks = [
        tick("BTC-USDT", 1, 100, 1_000, 10_000),
        tick("BTC-USDT", 2, 110, 1_000, 70_000), // closes 1m [0, 60 s)
        tick("BTC-USDT", 3, 90, 1_000, 20_000),  // late for 1m only
        tick("BTC-USDT", 3, 90, 1_000, 20_000),  // its duplicate: still known to the 5m window
        tick("BTC-USDT", 4, 100, 1_000, 300_000),
    ];
    let (pushed, closed) = run(&mut b, &ticks);
    assert_eq!(
        pushed[2],
        Pushed::Late(vec![Interval::parse("1m").expect("1m")])
    );
    assert_eq!(pushed[3], Pushed::Duplicate);
    let five: Vec<_> = closed.into_iter().filter(|c| c.interval == "5m").collect();
    assert_eq!(
        rows(&five),
        // The close is the latest trade by event time (70 s), not the late one read last.
        expect(&[("BTC-USDT", "5m", 0, 100, 110, 90, 110, 3_000, 3)])
    );
    let s = b.stats();
    assert_eq!((s.late_ticks, s.late_windows, s.duplicates), (1, 1, 1));
}

/// A stream with everything in it: two symbols interleaved, two intervals, a duplicate, late
/// ticks, gaps filled with empty windows, and an idle close.
fn mixed_stream() -> Vec<Tick> {
    let mut out = Vec::new();
    let mut id = 0u64;
    let mut push = |sym: &str, price: i64, ts: i64| {
        id += 1;
        out.push(tick(sym, id, price, 1_000 + id as i64, ts));
    };
    for k in 0..40i64 {
        let t = k * 17_000;
        push("BTC-USDT", 10_000 + (k * 37) % 200, t);
        if k % 3 == 0 && k < 25 {
            push("ETH-USDT", 3_000 + (k * 11) % 50, t + 500);
        }
        if k == 10 {
            push("BTC-USDT", 9_000, t - 70_000); // late for 1m
        }
        if k == 30 {
            push("ETH-USDT", 2_900, t - 120_000); // in a 1m window closed by the idle rule
        }
    }
    let dup = out[5].clone();
    out.insert(9, dup);
    out
}

fn restart_opts() -> CandleOptions {
    let mut o = opts(&["1m", "3m"], 2_000);
    o.idle_grace_ms = Some(45_000);
    o.max_empty_windows = 4;
    o
}

#[test]
fn a_restart_at_any_offset_emits_each_candle_once_and_whole() {
    let ticks = mixed_stream();
    let mut full = CandleBuilder::new(restart_opts(), "candles");
    let (full_pushed, full_closed) = run(&mut full, &ticks);
    let full_late = full_pushed
        .iter()
        .filter(|p| matches!(p, Pushed::Late(_)))
        .count();
    assert!(full.stats().empty_candles > 0 && full.stats().idle_closed > 0);
    assert!(full_late >= 2 && full.stats().duplicates == 1);
    for cut in 1..ticks.len() {
        let mut first = CandleBuilder::new(restart_opts(), "candles");
        let (p1, mut closed) = run(&mut first, &ticks[..cut]);
        let resume = first.resume("ticks", 0);
        let mut second = CandleBuilder::new(restart_opts(), "candles");
        second
            .restore("ticks", 0, resume.metadata.as_deref().unwrap_or(""))
            .expect("snapshot reads back");
        let mut late = p1.iter().filter(|p| matches!(p, Pushed::Late(_))).count();
        for (i, t) in ticks.iter().enumerate().skip(resume.offset as usize) {
            let p = second.push(t, ("ticks", 0, i as i64), &mut closed);
            if i < cut {
                assert!(
                    !matches!(p, Pushed::Late(_)),
                    "cut {cut}: re-read {i} counted late"
                );
            }
            late += usize::from(matches!(p, Pushed::Late(_)));
        }
        assert_eq!(rows(&closed), rows(&full_closed), "cut at {cut}");
        assert_eq!(late, full_late, "cut at {cut}");
    }
}

#[tokio::test]
async fn re_read_poison_and_emitted_windows_are_skipped_silently() {
    let mut b = builder(0);
    let batch = |offsets: std::ops::Range<i64>| -> Vec<Inbound> {
        let payloads: Vec<Vec<u8>> = vec![
            codec::encode(&tick("BTC-USDT", 1, 100, 1, 1_000)),
            codec::encode(&tick("ETH-USDT", 1, 100, 1, 2_000)),
            b"garbage".to_vec(),
            codec::encode(&tick("BTC-USDT", 2, 100, 1, 61_000)),
        ];
        offsets
            .map(|o| Inbound {
                topic: "ticks".into(),
                partition: 0,
                offset: 10 + o,
                key: None,
                payload: payloads[o as usize].clone(),
            })
            .collect()
    };
    let fx = b.handle(&batch(0..4)).await.expect("handled");
    assert_eq!(fx.records.len(), 1, "BTC's first window closed");
    assert_eq!(fx.dead.len(), 1);
    assert!(
        fx.dead[0].reason.contains("not valid JSON"),
        "{}",
        fx.dead[0].reason
    );
    // ETH's window (offset 11) is still open, so offset 11 is the next to read after a restart.
    let resume = fx.commit.expect("plan")[&("ticks".to_string(), 0)].clone();
    assert_eq!(resume.offset, 11);
    let mut again = builder(0);
    again.assigned("ticks", 0, resume.metadata.as_deref().unwrap_or(""));
    let fx = again.handle(&batch(1..4)).await.expect("handled");
    assert!(fx.records.is_empty() && fx.dead.is_empty(), "{:?}", fx.dead);
    assert_eq!(
        again.stats().replayed,
        0,
        "BTC 61 s opened a window that was open"
    );
    assert_eq!(again.open_windows(), 2);
}

#[test]
fn snapshots_read_back_and_stay_within_budget() {
    let mut o = opts(&["1m"], 0);
    o.idle_grace_ms = None;
    let mut b = CandleBuilder::new(o.clone(), "candles");
    let mut closed = Vec::new();
    let names: Vec<String> = (0..40).map(|i| format!("S{i:02}-USDT")).collect();
    for (i, n) in names.iter().enumerate() {
        b.push(
            &tick(n, 1, 100 + i as i64, 1_000, 1_000 + i as i64),
            ("ticks", 0, i as i64),
            &mut closed,
        );
        b.push(
            &tick(n, 2, 101, 1_000, 61_000 + i as i64 * 1_000),
            ("ticks", 0, 100 + i as i64),
            &mut closed,
        );
    }
    let text = b.resume("ticks", 0).metadata.expect("snapshot");
    assert!(text.starts_with("c1 n140 ebinance=100000 "), "{text}");
    assert!(text.contains(" sS00-USDT=39000"), "{text}");
    let part = snapshot::decode(&text, &b.specs, None).expect("reads");
    assert_eq!(part.replay_until, 140);
    assert_eq!(part.groups["binance"].symbols.len(), 40);
    assert_eq!(part.groups["binance"].symbols["S05-USDT"].own_wm, 66_000);
    // A small budget keeps the snapshot under it and counts what it left out.
    o.state_max_bytes = 300;
    b.opts = o;
    let text = b.resume("ticks", 0).metadata.expect("snapshot");
    assert!(text.len() <= 300, "{} bytes", text.len());
    assert!(b.stats().state_truncated >= 20, "{:?}", b.stats());
    // The symbols kept are those closest to the exchange watermark.
    assert!(text.contains(" sS39-USDT=0"), "{text}");
    for bad in [
        "x1 n1",
        "c1 n1 sA-B=0",
        "c1 q",
        "c1 ebinance=1 sA-B=x",
        "c1 ebinance=1 sA-B=_,1m:1",
    ] {
        assert!(
            snapshot::decode(bad, &b.specs, None).is_err(),
            "{bad} accepted"
        );
    }
}

/// A tick whose size would overflow its window's volume changes nothing and is refused with the
/// reason; the window goes on with the ticks around it.
#[test]
fn a_tick_that_would_overflow_a_window_is_refused_and_changes_nothing() {
    let mut b = builder(0);
    // Sizes near what decoding allowed before the size bound (2^96 − 1).
    let sized = |id: u64, price: i64, ts_ms: i64, size: Decimal| Tick {
        size,
        ..tick("BTC-USDT", id, price, 1, ts_ms)
    };
    let ticks = [
        sized(1, 100, 1_000, Decimal::MAX - Decimal::TEN),
        sized(2, 105, 2_000, Decimal::new(11, 0)),
        sized(3, 101, 3_000, Decimal::ONE),
        tick("BTC-USDT", 4, 100, 1, 61_000),
    ];
    let (pushed, candles) = run(&mut b, &ticks);
    assert_eq!(pushed[0], Pushed::Accepted);
    match &pushed[1] {
        Pushed::Rejected(why) => assert!(
            why.contains("volume of the 1m window at 0 would overflow"),
            "{why}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(pushed[2..], [Pushed::Accepted, Pushed::Accepted]);
    assert_eq!(b.stats().rejected, 1);
    assert_eq!(candles.len(), 1);
    let c = &candles[0];
    // The refused tick (price 1.05) is in neither the high nor the close nor the count.
    assert_eq!((c.open, c.high, c.close), (d(100, 2), d(101, 2), d(101, 2)));
    assert_eq!(c.volume, Decimal::MAX - Decimal::new(9, 0));
    assert_eq!(c.trades, 2);
}

/// The stage's handler dead-letters what decoding refuses (a size above the maximum, a time in
/// microseconds or `i64::MAX`) with the reason, and builds the same candles as without them.
#[tokio::test]
async fn poison_ticks_are_dead_lettered_and_the_rest_counts() {
    let good = [
        tick("BTC-USDT", 1, 100, 1, 1_000),
        tick("BTC-USDT", 2, 102, 1, 2_000),
        tick("BTC-USDT", 3, 100, 1, 61_000),
    ];
    let poison = |id: u64, size: &str, ts_ms: i64| -> Vec<u8> {
        let t = tick("BTC-USDT", id, 100, 1, ts_ms);
        let text = String::from_utf8(codec::encode(&t)).unwrap_or_default();
        text.replace("\"size\":\"0.001\"", &format!("\"size\":\"{size}\""))
            .into_bytes()
    };
    let payloads = vec![
        codec::encode(&good[0]),
        poison(10, "79228162514264337593543950335", 1_500),
        poison(11, "50000000000000000000000000000", 1_600),
        poison(12, "0.001", 1_700_000_000_000_000), // microseconds
        poison(13, "0.001", i64::MAX),
        poison(14, "1e20", 1_800),
        codec::encode(&good[1]),
        codec::encode(&good[2]),
    ];
    let batch: Vec<Inbound> = payloads
        .into_iter()
        .enumerate()
        .map(|(o, payload)| Inbound {
            topic: "ticks".into(),
            partition: 0,
            offset: o as i64,
            key: None,
            payload,
        })
        .collect();
    let mut b = builder(0);
    let fx = b.handle(&batch).await.expect("handled");
    let reasons: Vec<&str> = fx.dead.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(reasons.len(), 5, "{reasons:#?}");
    for (r, want) in reasons.iter().zip([
        "above the maximum",
        "above the maximum",
        "after 2200-01-01",
        "after 2200-01-01",
        "above the maximum",
    ]) {
        assert!(r.contains(want), "{r} lacks {want}");
    }
    let mut clean = builder(0);
    let (_, want) = run(&mut clean, &good);
    let got: Vec<Candle> = fx
        .records
        .iter()
        .map(|r| codec::decode(&r.payload).expect("a candle"))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        got.len(),
        1,
        "the first window closed, and nothing in the future opened"
    );
}

/// One input of the property test: a schema-valid tick (extreme prices, sizes and times
/// allowed), or a poison payload the stage must dead-letter.
#[derive(Debug, Clone)]
enum Input {
    Valid(Tick),
    Poison(Vec<u8>),
}

fn extreme_decimal() -> impl proptest::strategy::Strategy<Value = Decimal> {
    use proptest::prelude::*;
    // Mantissas up to 10^15 at scales 0..=18: from 10^-18 up to the maximum, never above.
    (1i64..=1_000_000_000_000_000, 0u32..=18).prop_map(|(m, s)| Decimal::new(m, s))
}

fn input() -> impl proptest::strategy::Strategy<Value = Input> {
    use proptest::prelude::*;
    let valid = (
        0usize..2,
        extreme_decimal(),
        extreme_decimal(),
        prop_oneof![0i64..=10 * M, 0i64..=tickcast_core::domain::MAX_EVENT_MS],
    )
        .prop_map(|(s, price, size, ts_ms)| {
            let mut t = tick(["BTC-USDT", "ETH-USDT"][s], 0, 1, 1, ts_ms);
            t.price = price;
            t.size = size;
            Input::Valid(t)
        });
    let poison = (0usize..7, 0i64..=10 * M).prop_map(|(k, ts)| {
        let t = tick("BTC-USDT", 0, 100, 1, ts);
        let text = String::from_utf8(codec::encode(&t)).unwrap_or_default();
        let text = match k {
            0 => text.replace(
                "\"size\":\"0.001\"",
                "\"size\":\"79228162514264337593543950335\"",
            ),
            1 => text.replace("\"size\":\"0.001\"", "\"size\":\"1000000000000000.1\""),
            2 => text.replace(
                &format!("\"ts_ms\":{ts}"),
                &format!("\"ts_ms\":{}", i64::MAX),
            ),
            3 => text.replace(&format!("\"ts_ms\":{ts}"), "\"ts_ms\":-1"),
            4 => text.replace("\"price\":\"1.00\"", "\"price\":\"0\""),
            5 => text.replace("\"price\":\"1.00\"", "\"price\":\"0.0000000000000000001\""),
            _ => "{\"v\":1,\"exchange\":\"binance\"".to_string(),
        };
        Input::Poison(text.into_bytes())
    });
    prop_oneof![4 => valid, 1 => poison]
}

fn payloads(inputs: &[Input], valid_only: bool) -> Vec<Inbound> {
    inputs
        .iter()
        .enumerate()
        .filter_map(|(i, x)| {
            let payload = match x {
                Input::Valid(t) => {
                    let mut t = t.clone();
                    t.trade_id = i.to_string();
                    codec::encode(&t)
                }
                Input::Poison(p) if !valid_only => p.clone(),
                Input::Poison(_) => return None,
            };
            Some(payload)
        })
        .enumerate()
        .map(|(o, payload)| Inbound {
            topic: "ticks".into(),
            partition: 0,
            offset: o as i64,
            key: None,
            payload,
        })
        .collect()
}

/// Candles and dead letters of `batch` handled in pieces of `split`.
fn handled(batch: &[Inbound], split: usize) -> (Vec<Vec<u8>>, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut b = CandleBuilder::new(opts(&["1m", "1h"], 0), "candles");
    let (mut records, mut dead) = (Vec::new(), 0);
    for piece in batch.chunks(split.max(1)) {
        let fx = rt.block_on(b.handle(piece)).expect("handled");
        records.extend(fx.records.into_iter().map(|r| r.payload));
        dead += fx.dead.len();
    }
    (records, dead)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Schema-valid but extreme ticks (prices and sizes from 10^-18 to the maximum, times up
    /// to 2200) mixed with poison, in batches of any size: no panic, every poison payload is
    /// dead-lettered, and the candles equal those of the valid ticks alone.
    #[test]
    fn extreme_and_poison_ticks_never_panic_and_the_valid_ones_decide(
        inputs in proptest::collection::vec(input(), 1..80),
        split in 1usize..30,
    ) {
        let all = payloads(&inputs, false);
        let valid = payloads(&inputs, true);
        let poison = all.len() - valid.len();
        let (got, dead) = handled(&all, split);
        let (want, dead_valid) = handled(&valid, valid.len().max(1));
        proptest::prop_assert_eq!(got, want);
        proptest::prop_assert_eq!(dead, poison + dead_valid);
    }
}
