//! Bitstamp's side of the trade stream: `bts:subscribe` to `live_trades_<pair>` → one
//! `bts:subscription_succeeded`, `bts:heartbeat` → its success reply, and `trade` events with
//! both the JSON-number and the exact-text price and amount. Trade ids are the simulator's
//! per-symbol ids (real Bitstamp ids are global across pairs). No REST backfill (see
//! `connector.rs`).

use super::connector::CHANNEL_PREFIX;
use crate::replay::sims::{ClientRequest, ExchangeSim, RestReply};
use crate::simulator::SimTrade;
use tickcast_core::codec::split_concatenated;
use tickcast_core::domain::Side;

#[derive(Debug, Clone, Copy, Default)]
pub struct BitstampSim;

fn bts_error(message: &str) -> ClientRequest {
    ClientRequest::Reject(vec![
        serde_json::json!({"event": "bts:error", "channel": "", "data": {"code": null, "message": message}})
            .to_string(),
    ])
}

impl ExchangeSim for BitstampSim {
    fn name(&self) -> &'static str {
        "bitstamp"
    }

    fn on_client_text(&self, text: &str) -> ClientRequest {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            return bts_error("Bad request.");
        };
        let channel = v
            .pointer("/data/channel")
            .and_then(|c| c.as_str())
            .unwrap_or_default();
        let ack = |event: &str| {
            serde_json::json!({"event": event, "channel": channel, "data": {}}).to_string()
        };
        match v.get("event").and_then(|e| e.as_str()) {
            Some("bts:heartbeat") => ClientRequest::Reply(vec![
                r#"{"event":"bts:heartbeat","channel":"","data":{"status":"success"}}"#.into(),
            ]),
            Some("bts:subscribe") => {
                match channel
                    .strip_prefix(CHANNEL_PREFIX)
                    .filter(|pair| {
                        pair.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                    })
                    .and_then(split_concatenated)
                {
                    Some(symbol) => ClientRequest::Subscribe {
                        symbols: vec![symbol],
                        replies: vec![ack("bts:subscription_succeeded")],
                    },
                    None => bts_error("Bad subscription string."),
                }
            }
            Some("bts:unsubscribe") => {
                ClientRequest::Reply(vec![ack("bts:unsubscription_succeeded")])
            }
            _ => bts_error("Bad request."),
        }
    }

    fn trade_frame(&self, t: &SimTrade, _event_ms: i64, _path: &str) -> String {
        let kind = if t.side == Side::Buy { 0 } else { 1 };
        // The taker's order is the newer one, with the larger id.
        let (older, newer) = (
            t.trade_id.saturating_mul(2),
            t.trade_id.saturating_mul(2).saturating_add(1),
        );
        let (buy, sell) = if t.side == Side::Buy {
            (newer, older)
        } else {
            (older, newer)
        };
        format!(
            r#"{{"data":{{"id":{},"timestamp":"{}","amount":{size},"amount_str":"{size}","price":{price},"price_str":"{price}","type":{kind},"microtimestamp":"{}","buy_order_id":{buy},"sell_order_id":{sell}}},"channel":"{CHANNEL_PREFIX}{}","event":"trade"}}"#,
            self.trade_id(t),
            t.ts_ms.div_euclid(1000),
            t.ts_ms.saturating_mul(1000),
            t.symbol.replace('-', "").to_ascii_lowercase(),
            size = t.size,
            price = t.price,
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
    use crate::exchanges::bitstamp::connector::Bitstamp;
    use crate::simulator::{SimConfig, Simulator};

    #[test]
    fn frames_round_trip_through_the_connector() {
        let (sim, conn) = (BitstampSim, Bitstamp);
        let cfg = SimConfig::default_symbols(3, 1_000);
        for t in Simulator::new(&cfg).take(200) {
            let frame = sim.trade_frame(&t, t.ts_ms + 1, "/");
            assert!(
                serde_json::from_str::<serde_json::Value>(&frame).is_ok(),
                "{frame}"
            );
            let mut ticks = Vec::new();
            let r = conn.decode(&frame, 0, &mut ticks);
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
        let (sim, conn) = (BitstampSim, Bitstamp);
        let symbols = vec!["BTC-USD".to_string(), "ETH-USDT".to_string()];
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
        let keepalive = match conn.info().keepalive {
            crate::connectors::Keepalive::ClientText { text, .. } => text,
            other => panic!("{other:?}"),
        };
        let ClientRequest::Reply(pong) = sim.on_client_text(keepalive) else {
            panic!("no heartbeat reply");
        };
        assert_eq!(
            conn.decode(&pong[0], 0, &mut Vec::new()),
            Ok(Decoded::Skipped("heartbeat reply"))
        );
        for bad in [
            "nope",
            r#"{"event":"bts:subscribe","data":{"channel":"order_book_btcusd"}}"#,
            r#"{"event":"bts:subscribe","data":{"channel":"live_trades_BTC-USD"}}"#,
            r#"{"event":"bts:subscribe"}"#,
            r#"{"event":"bts:login"}"#,
        ] {
            let ClientRequest::Reject(frames) = sim.on_client_text(bad) else {
                panic!("accepted {bad}");
            };
            assert!(matches!(
                conn.decode(&frames[0], 0, &mut Vec::new()),
                Err(FrameError::Exchange(_))
            ));
        }
        assert_eq!(sim.rest("/api/v2/transactions/btcusd/", &[]), None);
    }
}
