//! Decode throughput per connector (criterion; elements = frames, and separately trades):
//! Binance `@trade` frames raw and combined, every other connector on frames its simulator
//! writes, and the real recordings in `../shared` when present
//! (`binance/spot_trade_btcusdt_2024-08-08.jsonl` is the reference). Each group also times a
//! plain `serde_json::from_str::<Value>` of the same frames, the cost of "just parsing JSON".
//!
//! `cargo bench -p tickcast-ingest --bench decode` (or `scripts/bench-decode.sh` for a table).

use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tickcast_ingest::connectors::Decoded;
use tickcast_ingest::exchanges::{self, NAMES};
use tickcast_ingest::simulator::{SimConfig, Simulator};

const SIM_FRAMES: usize = 2000;

/// One benchmark input: a connector and its frames.
struct Input {
    label: String,
    connector: &'static str,
    frames: Vec<String>,
}

fn sim_inputs() -> Vec<Input> {
    let trades: Vec<_> = Simulator::new(&SimConfig::default_symbols(42, 1_700_000_000_000))
        .take(SIM_FRAMES)
        .collect();
    let mut out = Vec::new();
    for name in NAMES {
        let Some(sim) = exchanges::sim(name) else {
            continue;
        };
        let paths: &[&str] = if name.starts_with("binance") {
            &["/ws", "/stream"]
        } else {
            &["/ws"]
        };
        for path in paths {
            let frames: Vec<String> = trades
                .iter()
                .map(|t| sim.trade_frame(t, t.ts_ms + 1, path))
                .filter(|f| !f.is_empty())
                .collect();
            if frames.is_empty() {
                eprintln!("decode bench: {name}: its simulator writes no frames yet, skipped");
                continue;
            }
            let kind = if *path == "/stream" {
                "combined"
            } else {
                "raw"
            };
            out.push(Input {
                label: format!("sim/{name}/{kind}"),
                connector: name,
                frames,
            });
        }
    }
    out
}

fn shared_inputs() -> Vec<Input> {
    let dir = std::env::var_os("TICKCAST_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
        .join("fixtures/exchanges");
    let files = [
        (
            "binance/spot_trade_btcusdt_2024-08-08.jsonl",
            "binance",
            "binance-trade-ref",
        ),
        (
            "binance/spot_aggtrade_multi_2021-04-04.jsonl",
            "binance-agg",
            "binance-aggtrade",
        ),
        (
            "coinbase/exchange_matches_ticker_2021-04-17.jsonl",
            "coinbase-exchange",
            "coinbase-exchange",
        ),
        ("okx/v5_trades_conn1_2021-07-22.jsonl", "okx", "okx"),
        (
            "bitstamp/live_trades_2022-01-04.jsonl",
            "bitstamp",
            "bitstamp",
        ),
    ];
    let mut out = Vec::new();
    for (file, connector, label) in files {
        let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
            eprintln!(
                "decode bench: {} not found, skipped",
                dir.join(file).display()
            );
            continue;
        };
        out.push(Input {
            label: format!("shared/{label}"),
            connector,
            frames: text
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
        });
    }
    out
}

/// Trades in `frames` according to the connector; `None` when it cannot decode them all.
fn count_trades(connector: &str, frames: &[String]) -> Option<u64> {
    let c = exchanges::connector(connector)?;
    let mut out = Vec::new();
    let mut n = 0;
    for f in frames {
        out.clear();
        match c.decode(f, 0, &mut out) {
            Ok(Decoded::Trades(k)) => n += k as u64,
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    Some(n)
}

fn bench(c: &mut Criterion) {
    let mut inputs = sim_inputs();
    inputs.extend(shared_inputs());
    for input in &inputs {
        let Some(trades) = count_trades(input.connector, &input.frames) else {
            eprintln!(
                "decode bench: {}: connector `{}` does not decode these frames yet, skipped",
                input.label, input.connector
            );
            continue;
        };
        let connector = exchanges::connector(input.connector).expect("known connector");
        let frames = &input.frames;
        // Frames per second (with the JSON-only baseline), then trades per second.
        for (unit, elements) in [("frames", frames.len() as u64), ("trades", trades)] {
            if elements == 0 {
                continue;
            }
            let mut g = c.benchmark_group(format!("{}/{unit}", input.label));
            g.throughput(Throughput::Elements(elements));
            g.bench_function(BenchmarkId::new("decode", input.connector), |b| {
                let mut out = Vec::with_capacity(64);
                b.iter(|| {
                    for f in frames {
                        out.clear();
                        let _ = std::hint::black_box(connector.decode(f, 0, &mut out));
                    }
                });
            });
            if unit == "frames" {
                g.bench_function("serde_json_value", |b| {
                    b.iter(|| {
                        for f in frames {
                            let _ =
                                std::hint::black_box(serde_json::from_str::<serde_json::Value>(f));
                        }
                    });
                });
            }
            g.finish();
        }
    }
}

fn config() -> Criterion {
    let secs = |var: &str, default: u64| {
        std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(Duration::from_secs(default), Duration::from_secs_f64)
    };
    Criterion::default()
        .warm_up_time(secs("DECODE_BENCH_WARMUP_S", 1))
        .measurement_time(secs("DECODE_BENCH_MEASURE_S", 3))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench
}
criterion_main!(benches);
