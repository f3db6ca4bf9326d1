//! A seeded market simulator: a log-normal random walk per symbol on a 0.01 price grid, with
//! random sizes, sides and inter-trade gaps. The same seed gives the same trades, on every
//! platform (it uses its own SplitMix64 generator, not a library RNG whose stream may change).

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive as _;

use tickcast_core::domain::Side;
pub use tickcast_core::rng::Rng;

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// Canonical symbols (`BTC-USDT`) and their starting prices.
    pub symbols: Vec<(String, Decimal)>,
    /// Event time of the first trade, epoch ms.
    pub start_ms: i64,
    /// Mean gap between consecutive trades (all symbols together), ms.
    pub mean_gap_ms: u64,
    /// Volatility of log price per trade.
    pub sigma: f64,
}

impl SimConfig {
    /// BTC-USDT and ETH-USDT at plausible prices.
    pub fn default_symbols(seed: u64, start_ms: i64) -> Self {
        Self {
            seed,
            symbols: vec![
                ("BTC-USDT".to_string(), Decimal::new(6_000_000, 2)),
                ("ETH-USDT".to_string(), Decimal::new(300_000, 2)),
            ],
            start_ms,
            mean_gap_ms: 200,
            sigma: 0.0004,
        }
    }
}

/// One simulated trade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTrade {
    pub symbol: String,
    /// Sequential per symbol, from 1.
    pub trade_id: u64,
    pub price: Decimal,
    pub size: Decimal,
    pub side: Side,
    pub ts_ms: i64,
}

#[derive(Debug)]
struct SymbolSim {
    symbol: String,
    cents: i64,
    next_id: u64,
}

/// An endless, deterministic stream of trades.
#[derive(Debug)]
pub struct Simulator {
    rng: Rng,
    symbols: Vec<SymbolSim>,
    ts_ms: i64,
    mean_gap_ms: u64,
    sigma: f64,
}

impl Simulator {
    pub fn new(cfg: &SimConfig) -> Self {
        let symbols = cfg
            .symbols
            .iter()
            .map(|(s, p)| SymbolSim {
                symbol: s.clone(),
                cents: (p * Decimal::ONE_HUNDRED)
                    .round()
                    .to_i64()
                    .unwrap_or(1)
                    .max(1),
                next_id: 1,
            })
            .collect();
        Self {
            rng: Rng::new(cfg.seed),
            symbols,
            ts_ms: cfg.start_ms,
            mean_gap_ms: cfg.mean_gap_ms,
            sigma: cfg.sigma,
        }
    }
}

impl Iterator for Simulator {
    type Item = SimTrade;

    fn next(&mut self) -> Option<SimTrade> {
        if self.symbols.is_empty() {
            return None;
        }
        self.ts_ms += self.rng.below(2 * self.mean_gap_ms + 1) as i64;
        let i = self.rng.below(self.symbols.len() as u64) as usize;
        let step = (self.sigma * self.rng.normal()).exp();
        let side = if self.rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        // Sizes from 0.00001 up, heavy-tailed: exponential with mean ~0.05.
        let size_units = 1 + (-(1.0 - self.rng.unit()).ln() * 5_000.0) as i64;
        let s = &mut self.symbols[i];
        s.cents = ((s.cents as f64) * step).round().max(1.0) as i64;
        let trade = SimTrade {
            symbol: s.symbol.clone(),
            trade_id: s.next_id,
            price: Decimal::new(s.cents, 2),
            size: Decimal::new(size_units, 5),
            side,
            ts_ms: self.ts_ms,
        };
        s.next_id += 1;
        Some(trade)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_trades_and_ids_are_sequential() {
        let cfg = SimConfig::default_symbols(7, 1_700_000_000_000);
        let a: Vec<_> = Simulator::new(&cfg).take(500).collect();
        let b: Vec<_> = Simulator::new(&cfg).take(500).collect();
        assert_eq!(a, b);
        for sym in ["BTC-USDT", "ETH-USDT"] {
            let ids: Vec<u64> = a
                .iter()
                .filter(|t| t.symbol == sym)
                .map(|t| t.trade_id)
                .collect();
            assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
        }
        assert!(a.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
        assert_eq!(a[0].price.scale(), 2);
    }

    #[test]
    fn starting_price_is_respected() {
        let cfg = SimConfig::default_symbols(1, 0);
        let first = Simulator::new(&cfg)
            .find(|t| t.symbol == "BTC-USDT")
            .expect("a BTC trade");
        let p = first.price;
        assert!(
            p > Decimal::new(5_900_000, 2) && p < Decimal::new(6_100_000, 2),
            "{p}"
        );
    }
}
