//! The exchanges: one folder per exchange, and [`EXCHANGES`], the one table that names each
//! connector once. The connector names ([`NAMES`]), the connector lookup ([`connector`],
//! [`lookup`]) and the replay server lookup ([`sim`]) all come from that table.
//!
//! Each folder `exchanges/<exchange>/` holds one exchange's protocol from both ends:
//! - `connector.rs` — our client, a [`Connector`]: subscribe requests, frame → ticks,
//!   keepalive, symbol mapping, and the REST backfill; its unit tests are at its end;
//! - `replay.rs` — the server side the replay exchange speaks, an [`ExchangeSim`], tested by
//!   decoding what it writes with the connector;
//! - `fixtures/` — hand-written frames, `<name>.jsonl` (from the exchange's documented
//!   formats) and `<name>.bad.jsonl` (one undecodable line between two good ones) for each
//!   connector name, read by `tests/decode_cli.rs` and `ingest/tests/fuzz_parsers.rs`.
//!
//! What all exchanges share stays outside the folders: the [`Connector`] trait and its parsing
//! helpers in [`crate::connectors`], the [`ExchangeSim`] trait and its request helpers in
//! [`crate::replay::sims`]. The folders import those; only this file names the folders.
//!
//! Connector names, in the table's order (folder in brackets):
//! - `binance` — Binance spot `@trade` (raw and combined streams); `binance-agg` for `@aggTrade`
//!   (`binance/`).
//! - `coinbase` — Coinbase Advanced Trade `market_trades` (`coinbase/`).
//! - `coinbase-exchange` — Coinbase Exchange feed `matches` (its `side` is the maker's)
//!   (`coinbase/`).
//! - `kraken` — Kraken WebSocket v2 `trade` (`kraken/`).
//! - `bybit` — Bybit v5 `publicTrade` (spot) (`bybit/`).
//! - `okx` — OKX v5 `trades` (`okx/`).
//! - `bitstamp` — Bitstamp `live_trades` (`bitstamp/`).

pub mod binance;
pub mod bitstamp;
pub mod bybit;
pub mod coinbase;
pub mod kraken;
pub mod okx;

use crate::connectors::Connector;
use crate::replay::sims::ExchangeSim;

/// One connector name and both ends of its protocol.
#[derive(Debug, Clone, Copy)]
pub struct Exchange {
    /// Connector name used on the command line (`coinbase-exchange`).
    pub name: &'static str,
    /// Its folder under `ingest/src/exchanges/` (code and `fixtures/`): `coinbase`.
    pub folder: &'static str,
    /// Makes the connector (our client).
    pub connector: fn() -> Box<dyn Connector>,
    /// Makes the server side the replay exchange speaks.
    pub sim: fn() -> Box<dyn ExchangeSim>,
}

/// Every exchange connector, in the order `tickcast ingest --help` lists them.
pub const EXCHANGES: &[Exchange] = &[
    Exchange {
        name: "binance",
        folder: "binance",
        connector: || Box::new(binance::connector::Binance::trades()),
        sim: || Box::new(binance::replay::BinanceSim::trades()),
    },
    Exchange {
        name: "binance-agg",
        folder: "binance",
        connector: || Box::new(binance::connector::Binance::agg_trades()),
        sim: || Box::new(binance::replay::BinanceSim::agg_trades()),
    },
    Exchange {
        name: "coinbase",
        folder: "coinbase",
        connector: || Box::new(coinbase::connector::CoinbaseAdvanced),
        sim: || Box::new(coinbase::replay::CoinbaseAdvancedSim),
    },
    Exchange {
        name: "coinbase-exchange",
        folder: "coinbase",
        connector: || Box::new(coinbase::connector::CoinbaseExchange),
        sim: || Box::new(coinbase::replay::CoinbaseExchangeSim),
    },
    Exchange {
        name: "kraken",
        folder: "kraken",
        connector: || Box::new(kraken::connector::Kraken),
        sim: || Box::new(kraken::replay::KrakenSim),
    },
    Exchange {
        name: "bybit",
        folder: "bybit",
        connector: || Box::new(bybit::connector::Bybit),
        sim: || Box::new(bybit::replay::BybitSim),
    },
    Exchange {
        name: "okx",
        folder: "okx",
        connector: || Box::new(okx::connector::Okx),
        sim: || Box::new(okx::replay::OkxSim),
    },
    Exchange {
        name: "bitstamp",
        folder: "bitstamp",
        connector: || Box::new(bitstamp::connector::Bitstamp),
        sim: || Box::new(bitstamp::replay::BitstampSim),
    },
];

/// Every connector name, in the order of [`EXCHANGES`].
pub const NAMES: &[&str] = &{
    let mut names = [""; EXCHANGES.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = EXCHANGES[i].name;
        i += 1;
    }
    names
};

/// The table's entry for a connector name.
pub fn find(name: &str) -> Option<&'static Exchange> {
    EXCHANGES.iter().find(|e| e.name == name)
}

/// Looks a connector up by name.
pub fn connector(name: &str) -> Option<Box<dyn Connector>> {
    find(name).map(|e| (e.connector)())
}

/// The server side for a connector name.
pub fn sim(name: &str) -> Option<Box<dyn ExchangeSim>> {
    find(name).map(|e| (e.sim)())
}

/// Looks a connector up by name, with an error that lists the known names.
pub fn lookup(name: &str) -> Result<Box<dyn Connector>, String> {
    connector(name).ok_or_else(|| unknown(name))
}

/// The error for a name that is not in the table: it lists the known ones.
pub fn unknown(name: &str) -> String {
    format!("unknown exchange `{name}`; known: {}", NAMES.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_list_the_known_ones() {
        let err = lookup("mtgox").expect_err("unknown");
        assert_eq!(
            err,
            "unknown exchange `mtgox`; known: binance, binance-agg, coinbase, coinbase-exchange, \
             kraken, bybit, okx, bitstamp"
        );
        assert!(sim("mtgox").is_none());
        for name in NAMES {
            let c = lookup(name).expect("known");
            assert_eq!(c.info().name, *name);
        }
    }

    #[test]
    fn each_name_once_with_both_ends_and_its_fixtures() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/exchanges");
        for (i, e) in EXCHANGES.iter().enumerate() {
            assert_eq!(NAMES[i], e.name);
            assert!(!NAMES[..i].contains(&e.name), "{} twice", e.name);
            assert_eq!((e.connector)().info().name, e.name);
            assert_eq!((e.sim)().name(), e.name);
            for file in [format!("{}.jsonl", e.name), format!("{}.bad.jsonl", e.name)] {
                let path = dir.join(e.folder).join("fixtures").join(file);
                assert!(path.is_file(), "{} is missing", path.display());
            }
        }
    }
}
