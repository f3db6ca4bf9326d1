//! Conformance of the connectors on the real exchange recordings in
//! `<shared>/fixtures/exchanges/` (see its `PROVENANCE.md`). `<shared>` is `$TICKCAST_SHARED`,
//! else `<repo>/../shared`; when neither exists the tests say so and pass, but when
//! `TICKCAST_SHARED` is set every recording listed below must be there.
//!
//! Every file is mapped either to a connector (with the number of trades PROVENANCE counts) or
//! to the reason no connector reads it. For mapped files: no decode errors, every frame is
//! trades, an ack or an explicit skip, the trades are exactly those an independent reading of
//! the raw JSON finds (same ids in order, price and size `to_string()` equal to the wire text,
//! taker side), and the per-exchange properties PROVENANCE states hold.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use tickcast_core::domain::{Side, Tick};
use tickcast_ingest::connectors::Decoded;

/// How a recording is read.
#[derive(Debug, Clone, Copy)]
enum Use {
    /// Decoded with this connector; `trades` ticks expected.
    Connector {
        name: &'static str,
        format: Format,
        trades: usize,
    },
    Skipped(&'static str),
}

/// Which independent reading of the raw JSON gives the expected trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    BinanceTrade,
    BinanceAggTrade,
    CoinbaseExchange,
    Okx,
    Bitstamp,
}

const NO_KRAKEN_V1: &str = "Kraken spot WebSocket v1: the kraken connector reads v2 only";
const NO_KRAKEN_FUTURES: &str = "Kraken Futures: no connector for that exchange";
const NO_BYBIT_LEGACY: &str = "Bybit legacy (pre-v5) realtime API: the bybit connector reads v5";
const NO_GEMINI: &str = "Gemini: no connector for that exchange";
const NO_KUCOIN: &str = "KuCoin: no connector for that exchange";
const NO_BITMEX: &str = "BitMEX: no connector for that exchange";

/// Every recording. Trade counts are PROVENANCE's "individual trades", except the Coinbase
/// matches+ticker file: PROVENANCE counts its 107 `ticker` frames too, which repeat the 107
/// `match`/`last_match` trades (same trade ids); the connector reads `matches`, so 107 (the test
/// also checks 107 + ticker frames = PROVENANCE's 214).
fn table() -> Vec<(&'static str, Use)> {
    use Format::*;
    use Use::*;
    let c = |name, format, trades| Connector {
        name,
        format,
        trades,
    };
    vec![
        (
            "binance/spot_trade_btcusdt_2024-08-08.jsonl",
            c("binance", BinanceTrade, 2000),
        ),
        (
            "binance/spot_mixed_streams_btcusdt_2024-08-08.jsonl",
            c("binance", BinanceTrade, 1286),
        ),
        (
            "binance/spot_aggtrade_multi_2021-04-04.jsonl",
            c("binance-agg", BinanceAggTrade, 1910),
        ),
        (
            "binance/spot_combined_all_streams_2021-10-11.jsonl",
            c("binance-agg", BinanceAggTrade, 2),
        ),
        (
            "binance/usdm_futures_trade_btcusdt_2024-08-08.jsonl",
            c("binance", BinanceTrade, 500),
        ),
        (
            "coinbase/exchange_matches_ticker_2021-04-17.jsonl",
            c("coinbase-exchange", CoinbaseExchange, COINBASE_MATCHES),
        ),
        (
            "coinbase/exchange_level2_2021-04-17.jsonl",
            c("coinbase-exchange", CoinbaseExchange, 0),
        ),
        (
            "kraken/spot_v1_trade_2021-04-17.jsonl",
            Skipped(NO_KRAKEN_V1),
        ),
        (
            "kraken/spot_v1_trade_2021-04-05.jsonl",
            Skipped(NO_KRAKEN_V1),
        ),
        (
            "kraken/spot_v1_ticker_2021-04-17.jsonl",
            Skipped(NO_KRAKEN_V1),
        ),
        (
            "kraken/spot_v1_book1000_checksum_2021-04-17.jsonl",
            Skipped(NO_KRAKEN_V1),
        ),
        (
            "kraken/futures_trade_2021-07-22.jsonl",
            Skipped(NO_KRAKEN_FUTURES),
        ),
        (
            "bybit/legacy_usdt_perp_trade_2021-04-17.jsonl",
            Skipped(NO_BYBIT_LEGACY),
        ),
        ("okx/v5_trades_conn1_2021-07-22.jsonl", c("okx", Okx, 36)),
        ("okx/v5_trades_conn2_2021-07-22.jsonl", c("okx", Okx, 36)),
        ("okx/v5_trades_conn3_2021-07-22.jsonl", c("okx", Okx, 36)),
        ("okx/v5_trades_2022-02-27.jsonl", c("okx", Okx, 19)),
        (
            "gemini/v2_marketdata_l2_trades_2021-06-23.jsonl",
            Skipped(NO_GEMINI),
        ),
        (
            "bitstamp/live_trades_2022-01-04.jsonl",
            c("bitstamp", Bitstamp, 10),
        ),
        ("kucoin/spot_match_2021-04-25.jsonl", Skipped(NO_KUCOIN)),
        ("bitmex/trade_table_2021-04-17.jsonl", Skipped(NO_BITMEX)),
    ]
}

/// `match` + `last_match` frames of the Coinbase matches+ticker recording.
const COINBASE_MATCHES: usize = 107;
/// PROVENANCE's "individual trades" of that file (matches and tickers).
const COINBASE_PROVENANCE_COUNT: usize = 214;

/// The recordings directory, or `None` (skip) when no shared checkout exists.
fn recordings() -> Option<PathBuf> {
    let (dir, required) = match std::env::var_os("TICKCAST_SHARED") {
        Some(d) => (PathBuf::from(d), true),
        None => (
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"),
            false,
        ),
    };
    let dir = dir.join("fixtures/exchanges");
    if dir.is_dir() {
        Some(dir)
    } else if required {
        panic!(
            "TICKCAST_SHARED is set but {} does not exist",
            dir.display()
        );
    } else {
        eprintln!(
            "shared_conformance: skipped, no recordings at {} (set TICKCAST_SHARED)",
            dir.display()
        );
        None
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// One trade as the raw JSON states it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    id: String,
    price: String,
    size: String,
    side: Side,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn side_word(s: &str) -> Side {
    match s.to_ascii_lowercase().as_str() {
        "buy" => Side::Buy,
        "sell" => Side::Sell,
        other => panic!("side `{other}`"),
    }
}

fn flip(s: Side) -> Side {
    match s {
        Side::Buy => Side::Sell,
        Side::Sell => Side::Buy,
    }
}

/// The trades of one frame, read straight from its JSON (no connector code involved).
fn expected(format: Format, frame: &str) -> Vec<Expected> {
    let v: Value = serde_json::from_str(frame).unwrap();
    match format {
        Format::BinanceTrade | Format::BinanceAggTrade => {
            let d = v.get("data").unwrap_or(&v);
            let (event, id) = if format == Format::BinanceTrade {
                ("trade", "t")
            } else {
                ("aggTrade", "a")
            };
            if d["e"] != event {
                return vec![];
            }
            vec![Expected {
                id: text(&d[id]),
                price: text(&d["p"]),
                size: text(&d["q"]),
                // `m`: the buyer is the maker, so the taker sold.
                side: if d["m"] == true {
                    Side::Sell
                } else {
                    Side::Buy
                },
            }]
        }
        Format::CoinbaseExchange => match v["type"].as_str() {
            Some("match" | "last_match") => vec![Expected {
                id: text(&v["trade_id"]),
                price: text(&v["price"]),
                size: text(&v["size"]),
                // `side` is the maker's.
                side: flip(side_word(v["side"].as_str().unwrap())),
            }],
            _ => vec![],
        },
        Format::Okx => {
            if v["arg"]["channel"] != "trades" || !v["data"].is_array() {
                return vec![];
            }
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| Expected {
                    id: text(&t["tradeId"]),
                    price: text(&t["px"]),
                    size: text(&t["sz"]),
                    side: side_word(t["side"].as_str().unwrap()),
                })
                .collect()
        }
        Format::Bitstamp => {
            if v["event"] != "trade" {
                return vec![];
            }
            let d = &v["data"];
            vec![Expected {
                id: text(&d["id"]),
                price: text(&d["price_str"]),
                size: text(&d["amount_str"]),
                side: match d["type"].as_u64() {
                    Some(0) => Side::Buy,
                    Some(1) => Side::Sell,
                    other => panic!("bitstamp type {other:?}"),
                },
            }]
        }
    }
}

/// What decoding one recording gave.
#[derive(Debug, Default)]
struct Outcome {
    ticks: Vec<Tick>,
    acks: usize,
    skipped: BTreeMap<&'static str, usize>,
    problems: Vec<String>,
    /// Trades the raw reading found.
    raw_trades: usize,
}

fn decode_file(file: &str, path: &Path, name: &str, format: Format) -> Outcome {
    let connector = tickcast_ingest::exchanges::connector(name).unwrap();
    let exchange = connector.info().exchange;
    let mut o = Outcome::default();
    let mut expected_total = 0;
    for (i, frame) in lines(path).iter().enumerate() {
        let line = i + 1;
        let want = expected(format, frame);
        expected_total += want.len();
        let mut out = Vec::new();
        let r = connector.decode(frame, 1, &mut out);
        let problem = match (&r, want.len()) {
            (Ok(Decoded::Trades(n)), w) if *n == w && out.len() == w && w > 0 => None,
            (Ok(Decoded::Ack), 0) => {
                o.acks += 1;
                None
            }
            (Ok(Decoded::Skipped(why)), 0) => {
                *o.skipped.entry(why).or_default() += 1;
                None
            }
            (r, w) => Some(format!(
                "line {line}: decode gave {r:?} with {} ticks; the frame holds {w} trades",
                out.len()
            )),
        };
        if let Some(p) = problem {
            if o.problems.len() < 5 {
                o.problems.push(format!("{file} {p}"));
            }
            continue;
        }
        for (t, w) in out.iter().zip(&want) {
            let got = (
                t.trade_id.as_str(),
                t.price.to_string(),
                t.size.to_string(),
                t.side,
            );
            let wanted = (w.id.as_str(), w.price.clone(), w.size.clone(), w.side);
            let wrong = got != wanted || t.exchange != exchange || t.ingested_ms != 1;
            if wrong && o.problems.len() < 5 {
                o.problems.push(format!(
                    "{file} line {line}: tick (id, price, size, side) {got:?}, raw frame says {wanted:?} (exchange {})",
                    t.exchange
                ));
            }
        }
        o.ticks.extend(out);
    }
    o.raw_trades = expected_total;
    o
}

fn print_table(dir: &Path) {
    eprintln!("shared recordings in {}:", dir.display());
    for (file, u) in table() {
        match u {
            Use::Connector { name, trades, .. } => {
                eprintln!("  {file:<56} -> {name} ({trades} trades)")
            }
            Use::Skipped(why) => eprintln!("  {file:<56} -> skipped: {why}"),
        }
    }
}

#[test]
fn every_recording_is_mapped_and_present() {
    let Some(dir) = recordings() else { return };
    print_table(&dir);
    let mapped: BTreeSet<&str> = table().iter().map(|(f, _)| *f).collect();
    let mut on_disk = BTreeSet::new();
    for exchange in std::fs::read_dir(&dir).unwrap() {
        let exchange = exchange.unwrap().path();
        if !exchange.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&exchange).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "jsonl") {
                on_disk.insert(f.strip_prefix(&dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let on_disk: BTreeSet<&str> = on_disk.iter().map(String::as_str).collect();
    let unmapped: Vec<_> = on_disk.difference(&mapped).collect();
    let missing: Vec<_> = mapped.difference(&on_disk).collect();
    assert!(
        unmapped.is_empty(),
        "recordings with no mapping: {unmapped:?}"
    );
    assert!(missing.is_empty(), "recordings missing: {missing:?}");
    let provenance = std::fs::read_to_string(dir.join("PROVENANCE.md")).unwrap();
    for f in &mapped {
        assert!(
            provenance.contains(&format!("`{f}`")),
            "{f} in PROVENANCE.md"
        );
    }
}

/// All mapped recordings; failures of every file are listed together.
#[test]
fn mapped_recordings_decode_exactly() {
    let Some(dir) = recordings() else { return };
    let mut failures = Vec::new();
    for (file, u) in table() {
        let Use::Connector {
            name,
            format,
            trades,
        } = u
        else {
            continue;
        };
        let o = decode_file(file, &dir.join(file), name, format);
        assert_eq!(
            o.raw_trades, trades,
            "{file}: the raw reading disagrees with PROVENANCE (a bug in this test)"
        );
        eprintln!(
            "  {file:<56} {name}: {} ticks, {} acks, skipped {:?}, {} problem(s)",
            o.ticks.len(),
            o.acks,
            o.skipped,
            o.problems.len()
        );
        failures.extend(o.problems);
        if o.ticks.len() != trades {
            failures.push(format!(
                "{file}: {} ticks, PROVENANCE counts {trades}",
                o.ticks.len()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn binance_trade_ids_are_contiguous() {
    let Some(dir) = recordings() else { return };
    let file = "binance/spot_trade_btcusdt_2024-08-08.jsonl";
    let o = decode_file(file, &dir.join(file), "binance", Format::BinanceTrade);
    assert!(o.problems.is_empty(), "{:?}", o.problems);
    let ids: Vec<u64> = o
        .ticks
        .iter()
        .map(|t| t.trade_id.parse().unwrap())
        .collect();
    assert_eq!(ids, (3_735_683_259..=3_735_685_258).collect::<Vec<u64>>());
    assert!(o.ticks.iter().all(|t| t.symbol == "BTC-USDT"));
}

#[test]
fn binance_non_trade_streams_are_skipped_explicitly() {
    let Some(dir) = recordings() else { return };
    for (file, name, format, skipped) in [
        (
            "binance/spot_mixed_streams_btcusdt_2024-08-08.jsonl",
            "binance",
            Format::BinanceTrade,
            3000 - 1286,
        ),
        (
            "binance/spot_combined_all_streams_2021-10-11.jsonl",
            "binance-agg",
            Format::BinanceAggTrade,
            265 - 2,
        ),
    ] {
        let o = decode_file(file, &dir.join(file), name, format);
        assert!(o.problems.is_empty(), "{:?}", o.problems);
        assert_eq!(o.acks, 0, "{file}");
        assert_eq!(
            o.skipped.values().sum::<usize>(),
            skipped,
            "{file}: {:?}",
            o.skipped
        );
    }
}

#[test]
fn coinbase_exchange_taker_side_matches_the_ticker_side() {
    let Some(dir) = recordings() else { return };
    let file = "coinbase/exchange_matches_ticker_2021-04-17.jsonl";
    let path = dir.join(file);
    let o = decode_file(file, &path, "coinbase-exchange", Format::CoinbaseExchange);
    assert!(o.problems.is_empty(), "{:?}", o.problems);
    // `ticker` frames carry the taker side of the last trade.
    let mut ticker_side = BTreeMap::new();
    for frame in lines(&path) {
        let v: Value = serde_json::from_str(&frame).unwrap();
        if v["type"] == "ticker" {
            ticker_side.insert(
                (text(&v["product_id"]), text(&v["trade_id"])),
                side_word(v["side"].as_str().unwrap()),
            );
        }
    }
    assert_eq!(
        COINBASE_MATCHES + ticker_side.len(),
        COINBASE_PROVENANCE_COUNT,
        "PROVENANCE counts matches and tickers"
    );
    let mut pairs = 0;
    for t in &o.ticks {
        if let Some(side) = ticker_side.get(&(t.symbol.clone(), t.trade_id.clone())) {
            assert_eq!(t.side, *side, "taker side of {} {}", t.symbol, t.trade_id);
            pairs += 1;
        }
    }
    assert_eq!(pairs, 107, "matches with a ticker of the same trade id");
}

#[test]
fn okx_redundant_connections_give_the_same_36_trades() {
    let Some(dir) = recordings() else { return };
    let mut sets = Vec::new();
    for n in 1..=3 {
        let file = format!("okx/v5_trades_conn{n}_2021-07-22.jsonl");
        let path = dir.join(&file);
        let o = decode_file(&file, &path, "okx", Format::Okx);
        assert!(o.problems.is_empty(), "{:?}", o.problems);
        let ticks: BTreeSet<(String, String)> = o
            .ticks
            .iter()
            .map(|t| (t.symbol.clone(), t.trade_id.clone()))
            .collect();
        // The raw (instId, tradeId) pairs, for the count.
        let mut raw = BTreeSet::new();
        for frame in lines(&path) {
            let v: Value = serde_json::from_str(&frame).unwrap();
            for t in v["data"].as_array().into_iter().flatten() {
                raw.insert((text(&t["instId"]), text(&t["tradeId"])));
            }
        }
        assert_eq!(raw.len(), 36, "{file}: raw unique trades");
        assert_eq!(ticks.len(), 36, "{file}: unique (symbol, trade_id) ticks");
        sets.push(ticks);
    }
    assert_eq!(sets[0], sets[1]);
    assert_eq!(sets[1], sets[2]);
}
