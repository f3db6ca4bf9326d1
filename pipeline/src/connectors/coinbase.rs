//! PLACEHOLDER: coinbase connector, to be written (see connectors/binance.rs for the model).

use std::time::Duration;

use super::{Connector, ConnectorInfo, Decoded, FrameError, Keepalive};
use crate::domain::Tick;

static COINBASEADVANCED_INFO: ConnectorInfo = ConnectorInfo {
    name: "coinbase",
    exchange: "coinbase",
    ws_url: "wss://advanced-trade-ws.coinbase.com",
    rest_url: "https://api.exchange.coinbase.com",
    max_symbols_per_connection: 100,
    keepalive: Keepalive::ClientPing {
        every: Duration::from_secs(20),
    },
    max_connection_age: None,
    sequential_ids: true,
};

#[derive(Debug, Clone, Copy, Default)]
pub struct CoinbaseAdvanced;

impl Connector for CoinbaseAdvanced {
    fn info(&self) -> &'static ConnectorInfo {
        &COINBASEADVANCED_INFO
    }
    fn native_symbol(&self, canonical: &str) -> String {
        canonical.to_string()
    }
    fn subscribe(&self, _symbols: &[String]) -> Vec<String> {
        Vec::new()
    }
    fn expected_acks(&self, _symbols: &[String]) -> usize {
        0
    }
    fn decode(
        &self,
        _frame: &str,
        _received_ms: i64,
        _out: &mut Vec<Tick>,
    ) -> Result<Decoded, FrameError> {
        Err(FrameError::Unrecognised("connector not written yet".into()))
    }
}

static COINBASEEXCHANGE_INFO: ConnectorInfo = ConnectorInfo {
    name: "coinbase-exchange",
    exchange: "coinbase",
    ws_url: "wss://ws-feed.exchange.coinbase.com",
    rest_url: "https://api.exchange.coinbase.com",
    max_symbols_per_connection: 100,
    keepalive: Keepalive::ClientPing {
        every: Duration::from_secs(20),
    },
    max_connection_age: None,
    sequential_ids: true,
};

#[derive(Debug, Clone, Copy, Default)]
pub struct CoinbaseExchange;

impl Connector for CoinbaseExchange {
    fn info(&self) -> &'static ConnectorInfo {
        &COINBASEEXCHANGE_INFO
    }
    fn native_symbol(&self, canonical: &str) -> String {
        canonical.to_string()
    }
    fn subscribe(&self, _symbols: &[String]) -> Vec<String> {
        Vec::new()
    }
    fn expected_acks(&self, _symbols: &[String]) -> usize {
        0
    }
    fn decode(
        &self,
        _frame: &str,
        _received_ms: i64,
        _out: &mut Vec<Tick>,
    ) -> Result<Decoded, FrameError> {
        Err(FrameError::Unrecognised("connector not written yet".into()))
    }
}
