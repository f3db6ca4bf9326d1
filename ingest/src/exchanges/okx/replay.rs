//! OKX v5's side of the trade stream: `{"op":"subscribe","args":[{"channel":"trades",…}]}` →
//! one `{"event":"subscribe","arg":…}` per arg, the text `ping` → the text `pong`, and
//! `trades` pushes in the post-2023 form (with `count` and `seqId`). No REST backfill (see
//! `connector.rs`).

use super::connector::CHANNEL;
use crate::replay::sims::{ClientRequest, ExchangeSim, RestReply};
use crate::simulator::SimTrade;
use tickcast_core::domain::Side;

const CONN_ID: &str = "a4d3ae55";

#[derive(Debug, Clone, Copy, Default)]
pub struct OkxSim;

fn error(code: &str, msg: &str) -> ClientRequest {
    ClientRequest::Reject(vec![
        serde_json::json!({"event": "error", "code": code, "msg": msg, "connId": CONN_ID})
            .to_string(),
    ])
}

impl ExchangeSim for OkxSim {
    fn name(&self) -> &'static str {
        "okx"
    }

    fn on_client_text(&self, text: &str) -> ClientRequest {
        if text == "ping" {
            return ClientRequest::Reply(vec!["pong".into()]);
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            return error("60012", &format!("Invalid request: {text}"));
        };
        if v.get("op").and_then(|o| o.as_str()) != Some("subscribe") {
            return error("60012", &format!("Invalid request: {text}"));
        }
        let Some(args) = v
            .get("args")
            .and_then(|a| a.as_array())
            .filter(|a| !a.is_empty())
        else {
            return error("60012", &format!("Invalid request: {text}"));
        };
        let mut symbols = Vec::new();
        let mut replies = Vec::new();
        for arg in args {
            let channel = arg.get("channel").and_then(|c| c.as_str());
            let inst = arg.get("instId").and_then(|i| i.as_str());
            match (channel, inst) {
                (Some(CHANNEL), Some(inst)) if tickcast_core::codec::check_symbol(inst).is_ok() => {
                    symbols.push(inst.to_string());
                    replies.push(
                        serde_json::json!({"event": "subscribe", "arg": arg, "connId": CONN_ID})
                            .to_string(),
                    );
                }
                _ => {
                    return error(
                        "60018",
                        &format!("Wrong URL or channel:{arg} doesn't exist."),
                    );
                }
            }
        }
        ClientRequest::Subscribe { symbols, replies }
    }

    fn trade_frame(&self, t: &SimTrade, _event_ms: i64, _path: &str) -> String {
        let side = if t.side == Side::Buy { "buy" } else { "sell" };
        format!(
            r#"{{"arg":{{"channel":"{CHANNEL}","instId":"{sym}"}},"data":[{{"instId":"{sym}","tradeId":"{}","px":"{}","sz":"{}","side":"{side}","ts":"{}","count":"1","seqId":{}}}]}}"#,
            self.trade_id(t),
            t.price,
            t.size,
            t.ts_ms,
            t.trade_id,
            sym = t.symbol,
        )
    }

    fn rest(&self, _path_and_query: &str, _happened: &[SimTrade]) -> Option<RestReply> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::{Connector as _, Decoded, FrameError};
    use crate::exchanges::okx::connector::Okx;
    use crate::simulator::{SimConfig, Simulator};

    #[test]
    fn frames_round_trip_through_the_connector() {
        let (sim, conn) = (OkxSim, Okx);
        let cfg = SimConfig::default_symbols(3, 1_000);
        for t in Simulator::new(&cfg).take(200) {
            let mut ticks = Vec::new();
            let r = conn.decode(
                &sim.trade_frame(&t, t.ts_ms + 1, "/ws/v5/public"),
                0,
                &mut ticks,
            );
            assert_eq!(r, Ok(Decoded::Trades(1)));
            let tick = &ticks[0];
            assert_eq!(tick.symbol, t.symbol);
            assert_eq!(tick.trade_id, sim.trade_id(&t));
            assert_eq!(
                (tick.price, tick.size, tick.side, tick.ts_ms),
                (t.price, t.size, t.side, t.ts_ms)
            );
        }
    }

    #[test]
    fn subscriptions_are_acknowledged_in_the_connectors_terms() {
        let (sim, conn) = (OkxSim, Okx);
        let symbols = vec!["BTC-USDT".to_string(), "ETH-USDT".to_string()];
        let [req] = conn.subscribe(&symbols).try_into().expect("one request");
        let ClientRequest::Subscribe {
            symbols: got,
            replies,
        } = sim.on_client_text(&req)
        else {
            panic!("not a subscription");
        };
        assert_eq!(got, symbols);
        let acks = replies
            .iter()
            .filter(|r| conn.decode(r, 0, &mut Vec::new()) == Ok(Decoded::Ack))
            .count();
        assert_eq!(acks, conn.expected_acks(&symbols));
        let keepalive = match conn.info().keepalive {
            crate::connectors::Keepalive::ClientText { text, .. } => text,
            other => panic!("{other:?}"),
        };
        let ClientRequest::Reply(pong) = sim.on_client_text(keepalive) else {
            panic!("no pong");
        };
        assert_eq!(
            conn.decode(&pong[0], 0, &mut Vec::new()),
            Ok(Decoded::Skipped("pong"))
        );
        for bad in [
            "nope",
            r#"{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}"#,
            r#"{"op":"subscribe","args":[{"channel":"trades","instId":"btc_usdt"}]}"#,
            r#"{"op":"subscribe","args":[]}"#,
            r#"{"op":"login","args":[]}"#,
        ] {
            let ClientRequest::Reject(frames) = sim.on_client_text(bad) else {
                panic!("accepted {bad}");
            };
            assert!(matches!(
                conn.decode(&frames[0], 0, &mut Vec::new()),
                Err(FrameError::Exchange(_))
            ));
        }
        assert_eq!(sim.rest("/api/v5/market/history-trades", &[]), None);
    }
}
