//! PLACEHOLDER: okx connector, to be written (see connectors/binance.rs for the model).

use std::time::Duration;

use super::{Connector, ConnectorInfo, Decoded, FrameError, Keepalive};
use crate::domain::Tick;

static OKX_INFO: ConnectorInfo = ConnectorInfo {
    name: "okx",
    exchange: "okx",
    ws_url: "wss://ws.okx.com:8443/ws/v5/public",
    rest_url: "https://www.okx.com",
    max_symbols_per_connection: 100,
    keepalive: Keepalive::ClientText {
        text: "ping",
        every: Duration::from_secs(20),
    },
    max_connection_age: None,
    sequential_ids: false,
};

#[derive(Debug, Clone, Copy, Default)]
pub struct Okx;

impl Connector for Okx {
    fn info(&self) -> &'static ConnectorInfo {
        &OKX_INFO
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
