//! PLACEHOLDER: bitstamp connector, to be written (see connectors/binance.rs for the model).

use std::time::Duration;

use super::{Connector, ConnectorInfo, Decoded, FrameError, Keepalive};
use crate::domain::Tick;

static BITSTAMP_INFO: ConnectorInfo = ConnectorInfo {
    name: "bitstamp",
    exchange: "bitstamp",
    ws_url: "wss://ws.bitstamp.net",
    rest_url: "https://www.bitstamp.net",
    max_symbols_per_connection: 100,
    keepalive: Keepalive::ClientText {
        text: r#"{"event":"bts:heartbeat"}"#,
        every: Duration::from_secs(20),
    },
    max_connection_age: None,
    sequential_ids: false,
};

#[derive(Debug, Clone, Copy, Default)]
pub struct Bitstamp;

impl Connector for Bitstamp {
    fn info(&self) -> &'static ConnectorInfo {
        &BITSTAMP_INFO
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
