//! Where the replay exchange's trades come from: the seeded simulator, a recorded trades CSV
//! (the format of `shared/data/trades/*.csv.gz`: `local_ts_ns,event_time_ms,trade_time_ms,
//! symbol,trade_id,price,qty,is_buyer_maker,…`), or a file of raw frames sent verbatim.

use std::io::{BufRead as _, BufReader, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use anyhow::{Context as _, Result, bail};
use rust_decimal::Decimal;

use crate::simulator::{SimConfig, SimTrade, Simulator};
use tickcast_core::codec::split_concatenated;
use tickcast_core::domain::Side;

/// What the replay exchange serves.
#[derive(Debug, Clone)]
pub enum Source {
    /// The seeded market simulator (endless).
    Simulator(SimConfig),
    /// A recorded trades CSV (`.csv` or `.csv.gz`), replayed in file order.
    TradesCsv(PathBuf),
    /// A JSONL file of recorded raw frames (`.gz` allowed): each non-empty line is sent
    /// verbatim to every subscribed connection. No REST history.
    Frames(PathBuf),
}

/// A plausible starting price for a simulated symbol (the simulator's defaults for BTC and
/// ETH, 100 for anything else).
pub fn start_price(symbol: &str) -> Decimal {
    match symbol.split('-').next() {
        Some("BTC") => Decimal::new(6_000_000, 2),
        Some("ETH") => Decimal::new(300_000, 2),
        Some("SOL") => Decimal::new(15_000, 2),
        _ => Decimal::new(10_000, 2),
    }
}

/// One thing that happens in the market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A trade, published at `event_ms`.
    Trade { trade: SimTrade, event_ms: i64 },
    /// A raw frame.
    Frame(String),
}

impl Item {
    /// Event time of a trade; frames have none.
    pub fn ts_ms(&self) -> Option<i64> {
        match self {
            Item::Trade { trade, .. } => Some(trade.ts_ms),
            Item::Frame(_) => None,
        }
    }
}

/// The items of a source, in order.
pub type Feed = Box<dyn Iterator<Item = Item> + Send>;

/// Opens a source: its items and, when finite, how many there are.
pub fn open(source: &Source) -> Result<(Feed, Option<u64>)> {
    match source {
        Source::Simulator(cfg) => Ok((
            Box::new(Simulator::new(cfg).map(|trade| Item::Trade {
                event_ms: trade.ts_ms + 1,
                trade,
            })),
            None,
        )),
        Source::TradesCsv(path) => {
            let items = read_trades_csv(reader(path)?)
                .with_context(|| format!("reading trades CSV {}", path.display()))?;
            let n = items.len() as u64;
            Ok((Box::new(items.into_iter()), Some(n)))
        }
        Source::Frames(path) => {
            let mut items = Vec::new();
            for line in BufReader::new(reader(path)?).lines() {
                let line = line.with_context(|| format!("reading frames {}", path.display()))?;
                if !line.trim().is_empty() {
                    items.push(Item::Frame(line));
                }
            }
            let n = items.len() as u64;
            Ok((Box::new(items.into_iter()), Some(n)))
        }
    }
}

fn reader(path: &Path) -> Result<Box<dyn Read + Send>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    })
}

/// `BTCUSDT` → `BTC-USDT`; futures suffixes (`BTCUSD_PERP`) are dropped.
fn canonical(raw: &str) -> Option<String> {
    split_concatenated(raw.split('_').next().unwrap_or(raw))
}

/// Parses a trades CSV with a header row; columns are found by name.
pub fn read_trades_csv(input: impl Read) -> Result<Vec<Item>> {
    let mut lines = BufReader::new(input).lines();
    let header = lines.next().context("empty file")??;
    let cols: Vec<&str> = header.trim().split(',').collect();
    let col = |name: &str| {
        cols.iter()
            .position(|c| *c == name)
            .with_context(|| format!("no `{name}` column"))
    };
    let (sym, id, price, qty, ts, maker) = (
        col("symbol")?,
        col("trade_id")?,
        col("price")?,
        col("qty")?,
        col("trade_time_ms")?,
        col("is_buyer_maker")?,
    );
    let event = col("event_time_ms").ok();
    let mut out = Vec::new();
    for (n, line) in lines.enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.trim().split(',').collect();
        let row = n + 2;
        let get = |i: usize| {
            f.get(i)
                .copied()
                .with_context(|| format!("row {row}: short"))
        };
        let raw = get(sym)?;
        let symbol =
            canonical(raw).with_context(|| format!("row {row}: unknown symbol `{raw}`"))?;
        let ts_ms: i64 = get(ts)?
            .parse()
            .with_context(|| format!("row {row}: time"))?;
        let event_ms = match event {
            Some(i) => get(i)?
                .parse()
                .with_context(|| format!("row {row}: event time"))?,
            None => ts_ms,
        };
        let side = match get(maker)? {
            "true" => Side::Sell,
            "false" => Side::Buy,
            other => bail!("row {row}: is_buyer_maker `{other}`"),
        };
        out.push(Item::Trade {
            trade: SimTrade {
                symbol,
                trade_id: get(id)?
                    .parse()
                    .with_context(|| format!("row {row}: trade_id"))?,
                price: Decimal::from_str(get(price)?)
                    .with_context(|| format!("row {row}: price"))?,
                size: Decimal::from_str(get(qty)?).with_context(|| format!("row {row}: qty"))?,
                side,
                ts_ms,
            },
            event_ms,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn trades_csv_keeps_every_digit() {
        let csv = "local_ts_ns,event_time_ms,trade_time_ms,symbol,trade_id,price,qty,is_buyer_maker,is_best_match\n\
                   1723161254087896568,1723161255343,1723161255342,BTCUSDT,3735683259,61837.63000000,0.02000000,true,true\n\
                   1723161254347673567,1723161255619,1723161255617,BTCUSD_PERP,7,61837.6,1,false,true\n";
        let items = read_trades_csv(csv.as_bytes()).unwrap();
        let Item::Trade { trade, event_ms } = &items[0] else {
            panic!("a trade")
        };
        assert_eq!(trade.symbol, "BTC-USDT");
        assert_eq!(trade.trade_id, 3735683259);
        assert_eq!(trade.price.to_string(), "61837.63000000");
        assert_eq!(trade.size.to_string(), "0.02000000");
        assert_eq!(
            (trade.side, trade.ts_ms, *event_ms),
            (Side::Sell, 1723161255342, 1723161255343)
        );
        let Item::Trade { trade, .. } = &items[1] else {
            panic!("a trade")
        };
        assert_eq!((trade.symbol.as_str(), trade.side), ("BTC-USD", Side::Buy));
    }

    #[test]
    fn bad_rows_are_errors_not_panics() {
        for csv in [
            "",
            "symbol,trade_id\n",
            "trade_time_ms,symbol,trade_id,price,qty,is_buyer_maker\n1,BTCUSDT,1,x,1,true\n",
            "trade_time_ms,symbol,trade_id,price,qty,is_buyer_maker\n1,BTCUSDT,1,1\n",
            "trade_time_ms,symbol,trade_id,price,qty,is_buyer_maker\n1,???,1,1,1,true\n",
            "trade_time_ms,symbol,trade_id,price,qty,is_buyer_maker\n1,BTCUSDT,1,1,1,maybe\n",
        ] {
            assert!(read_trades_csv(csv.as_bytes()).is_err(), "{csv}");
        }
    }
}
