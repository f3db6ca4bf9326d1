//! PLACEHOLDER: the bybit protocol server side, to be written (see sims/binance.rs).

use super::{ClientRequest, ExchangeSim, RestReply};
use crate::simulator::SimTrade;

#[derive(Debug, Clone, Copy, Default)]
pub struct BybitSim;

impl ExchangeSim for BybitSim {
    fn name(&self) -> &'static str {
        "bybit"
    }
    fn on_client_text(&self, _text: &str) -> ClientRequest {
        ClientRequest::Ignore
    }
    fn trade_frame(&self, _t: &SimTrade, _event_ms: i64, _path: &str) -> String {
        String::new()
    }
    fn rest(&self, _path_and_query: &str, _happened: &[SimTrade]) -> Option<RestReply> {
        None
    }
}
