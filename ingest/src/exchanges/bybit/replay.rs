//! Bybit v5 spot's side of the trade stream: `{"op":"subscribe","args":["publicTrade.X",…]}` →
//! one `{"success":true,"ret_msg":"subscribe",…}` per request (at most 10 args), `{"op":"ping"}`
//! → the spot pong, and `publicTrade` snapshot frames. No REST backfill (see
//! `connector.rs`).

use super::connector::{ARGS_PER_REQUEST, TOPIC_PREFIX};
use crate::replay::sims::{ClientRequest, ExchangeSim, RestReply};
use crate::simulator::SimTrade;
use tickcast_core::codec::split_concatenated;
use tickcast_core::domain::Side;

/// The connection id the simulated server reports.
const CONN_ID: &str = "7e8f0c1a-3b2d-4c5e-9f60-1a2b3c4d5e6f";

#[derive(Debug, Clone, Copy, Default)]
pub struct BybitSim;

/// FNV-1a, for a stable per-symbol part of the simulated trade ids.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn reply(success: bool, ret_msg: &str, req_id: &serde_json::Value, op: &str) -> String {
    serde_json::json!({
        "success": success, "ret_msg": ret_msg, "conn_id": CONN_ID, "req_id": req_id, "op": op
    })
    .to_string()
}

impl ExchangeSim for BybitSim {
    fn name(&self) -> &'static str {
        "bybit"
    }

    /// A UUID-shaped id (`8-4-4-4-12` hex, version nibble 5 like Bybit's): the first parts hash
    /// the symbol, the last 48 bits are the sequential id, so ids are unique per symbol.
    fn trade_id(&self, t: &SimTrade) -> String {
        let h = fnv1a(t.symbol.as_bytes());
        format!(
            "{:08x}-{:04x}-5{:03x}-{:04x}-{:012x}",
            h >> 32,
            (h >> 16) & 0xffff,
            h & 0xfff,
            0x8000 | ((t.trade_id >> 48) & 0x3fff),
            t.trade_id & 0xffff_ffff_ffff,
        )
    }

    fn on_client_text(&self, text: &str) -> ClientRequest {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            return ClientRequest::Reject(vec![reply(
                false,
                "error:unmarshal request failed",
                &serde_json::Value::String(String::new()),
                "",
            )]);
        };
        let req_id = v
            .get("req_id")
            .cloned()
            .unwrap_or(serde_json::Value::String(String::new()));
        let op = v.get("op").and_then(|o| o.as_str()).unwrap_or_default();
        match op {
            "ping" => ClientRequest::Reply(vec![reply(true, "pong", &req_id, "ping")]),
            "subscribe" => {
                let args: Vec<&str> = v
                    .get("args")
                    .and_then(|a| a.as_array())
                    .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                    .unwrap_or_default();
                if args.is_empty() || args.len() > ARGS_PER_REQUEST {
                    let msg = format!("error:args size must be 1..={ARGS_PER_REQUEST}");
                    return ClientRequest::Reject(vec![reply(false, &msg, &req_id, op)]);
                }
                let mut symbols = Vec::new();
                for arg in args {
                    match arg.strip_prefix(TOPIC_PREFIX).and_then(split_concatenated) {
                        Some(s) => symbols.push(s),
                        None => {
                            let msg = format!("error:handler not found,topic:{arg}");
                            return ClientRequest::Reject(vec![reply(false, &msg, &req_id, op)]);
                        }
                    }
                }
                ClientRequest::Subscribe {
                    symbols,
                    replies: vec![reply(true, "subscribe", &req_id, op)],
                }
            }
            other => {
                let msg = format!("error:unsupported op `{other}`");
                ClientRequest::Reject(vec![reply(false, &msg, &req_id, other)])
            }
        }
    }

    fn trade_frame(&self, t: &SimTrade, event_ms: i64, _path: &str) -> String {
        let sym = t.symbol.replace('-', "");
        let side = if t.side == Side::Buy { "Buy" } else { "Sell" };
        format!(
            r#"{{"topic":"{TOPIC_PREFIX}{sym}","type":"snapshot","ts":{event_ms},"data":[{{"T":{},"s":"{sym}","S":"{side}","v":"{}","p":"{}","L":"ZeroPlusTick","i":"{}","BT":false}}]}}"#,
            t.ts_ms,
            t.size,
            t.price,
            self.trade_id(t),
        )
    }

    fn rest(&self, _path_and_query: &str, _happened: &[SimTrade]) -> Option<RestReply> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::connectors::{Connector as _, Decoded, FrameError};
    use crate::exchanges::bybit::connector::Bybit;
    use crate::simulator::{SimConfig, Simulator};

    #[test]
    fn frames_round_trip_through_the_connector() {
        let (sim, conn) = (BybitSim, Bybit);
        let cfg = SimConfig::default_symbols(3, 1_000);
        let mut ids = HashSet::new();
        for t in Simulator::new(&cfg).take(300) {
            let mut ticks = Vec::new();
            let r = conn.decode(&sim.trade_frame(&t, t.ts_ms + 1, "/"), 0, &mut ticks);
            assert_eq!(r, Ok(Decoded::Trades(1)));
            let tick = &ticks[0];
            assert_eq!(tick.symbol, t.symbol);
            assert_eq!(tick.trade_id, sim.trade_id(&t));
            assert_eq!(
                (tick.price, tick.size, tick.side, tick.ts_ms),
                (t.price, t.size, t.side, t.ts_ms)
            );
            assert!(ids.insert(tick.trade_id.clone()), "ids are unique");
        }
    }

    #[test]
    fn trade_ids_are_deterministic_and_uuid_shaped() {
        let t = SimTrade {
            symbol: "BTC-USDT".into(),
            trade_id: 42,
            price: rust_decimal::Decimal::ONE,
            size: rust_decimal::Decimal::ONE,
            side: Side::Buy,
            ts_ms: 0,
        };
        let id = BybitSim.trade_id(&t);
        assert_eq!(id, BybitSim.trade_id(&t.clone()));
        let parts: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{id}");
        assert!(id.ends_with("00000000002a"), "{id}");
        let eth = SimTrade {
            symbol: "ETH-USDT".into(),
            ..t
        };
        assert_ne!(BybitSim.trade_id(&eth), id);
    }

    #[test]
    fn subscriptions_are_acknowledged_in_the_connectors_terms() {
        let (sim, conn) = (BybitSim, Bybit);
        let symbols: Vec<String> = (0..23).map(|i| format!("C{i}-USDT")).collect();
        let mut got = Vec::new();
        let mut acks = 0;
        for req in conn.subscribe(&symbols) {
            let ClientRequest::Subscribe {
                symbols: some,
                replies,
            } = sim.on_client_text(&req)
            else {
                panic!("not a subscription: {req}");
            };
            got.extend(some);
            acks += replies
                .iter()
                .filter(|r| conn.decode(r, 0, &mut Vec::new()) == Ok(Decoded::Ack))
                .count();
        }
        assert_eq!(got, symbols);
        assert_eq!(acks, conn.expected_acks(&symbols));
        let ClientRequest::Reply(pong) = sim.on_client_text(r#"{"op":"ping"}"#) else {
            panic!("no pong");
        };
        assert_eq!(
            conn.decode(&pong[0], 0, &mut Vec::new()),
            Ok(Decoded::Skipped("pong"))
        );
        for bad in [
            "nope",
            r#"{"op":"subscribe","args":["orderbook.1.BTCUSDT"]}"#,
            r#"{"op":"subscribe","args":[]}"#,
            r#"{"op":"auth","args":[]}"#,
        ] {
            let ClientRequest::Reject(frames) = sim.on_client_text(bad) else {
                panic!("accepted {bad}");
            };
            assert!(matches!(
                conn.decode(&frames[0], 0, &mut Vec::new()),
                Err(FrameError::Exchange(_))
            ));
        }
        assert_eq!(sim.rest("/v5/market/recent-trade", &[]), None);
    }
}
