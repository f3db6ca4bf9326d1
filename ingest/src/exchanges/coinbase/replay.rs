//! Coinbase's side of both trade feeds: the Exchange feed (`subscribe` with `channels` →
//! `subscriptions`, `match` frames) and Advanced Trade (`subscribe` with one `channel` →
//! `subscriptions`, `market_trades` frames), and the Exchange REST
//! `GET /products/{product_id}/trades?limit=&after=` (newest first, ids below `after`) that
//! both connectors backfill from. Both feeds write the MAKER's side: the opposite of the
//! simulated (taker) side.

use serde_json::{Value, json};

use crate::connectors::parse_canonical;
use crate::replay::sims::{
    ClientRequest, ExchangeSim, RestReply, path_only, query_param, rfc3339_micros,
};
use crate::simulator::SimTrade;
use tickcast_core::domain::Side;

#[derive(Debug, Clone, Copy, Default)]
pub struct CoinbaseAdvancedSim;

#[derive(Debug, Clone, Copy, Default)]
pub struct CoinbaseExchangeSim;

/// The maker's side, as Coinbase reports it, in `buy`/`sell` spelling.
fn maker_side(t: &SimTrade) -> &'static str {
    match t.side {
        Side::Buy => "sell",
        Side::Sell => "buy",
    }
}

/// Valid canonical product ids of a JSON array.
fn products(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.as_str().and_then(|s| parse_canonical(s).ok()))
                .collect()
        })
        .unwrap_or_default()
}

fn exchange_error(message: &str, reason: &str) -> String {
    json!({"type": "error", "message": message, "reason": reason}).to_string()
}

impl ExchangeSim for CoinbaseExchangeSim {
    fn name(&self) -> &'static str {
        "coinbase-exchange"
    }

    fn on_client_text(&self, text: &str) -> ClientRequest {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return ClientRequest::Reject(vec![exchange_error("Failed to subscribe", "bad JSON")]);
        };
        if v.get("type").and_then(Value::as_str) != Some("subscribe") {
            return ClientRequest::Reject(vec![exchange_error(
                "Failed to subscribe",
                "type must be subscribe",
            )]);
        }
        let top = products(v.get("product_ids"));
        let mut names = Vec::new();
        let mut symbols = Vec::new();
        for c in v
            .get("channels")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            // A channel is a name, or `{"name":…,"product_ids":[…]}`.
            let (name, own) = match c {
                Value::String(s) => (s.as_str(), top.clone()),
                _ => (
                    c.get("name").and_then(Value::as_str).unwrap_or_default(),
                    products(c.get("product_ids")),
                ),
            };
            if name == "matches" {
                symbols.extend(own.iter().cloned());
            }
            names.push(json!({"name": name, "product_ids": own}));
        }
        if symbols.is_empty() {
            return ClientRequest::Reject(vec![exchange_error(
                "Failed to subscribe",
                "no product ids for the matches channel",
            )]);
        }
        ClientRequest::Subscribe {
            symbols,
            replies: vec![json!({"type": "subscriptions", "channels": names}).to_string()],
        }
    }

    fn trade_frame(&self, t: &SimTrade, _event_ms: i64, _path: &str) -> String {
        json!({
            "type": "match",
            "trade_id": t.trade_id,
            "maker_order_id": "ac928c66-ca53-498f-9c13-a110027a60e8",
            "taker_order_id": "132fb6ae-456b-4654-b4e0-d681ac05cea1",
            "side": maker_side(t),
            "size": t.size.to_string(),
            "price": t.price.to_string(),
            "product_id": t.symbol,
            "sequence": t.trade_id,
            "time": rfc3339_micros(t.ts_ms),
        })
        .to_string()
    }

    fn heartbeat(&self) -> Option<String> {
        Some(
            json!({"type": "heartbeat", "sequence": 0, "last_trade_id": 0,
                   "product_id": "BTC-USD", "time": "2021-04-17T10:11:12.000000Z"})
            .to_string(),
        )
    }

    fn rest(&self, path_and_query: &str, happened: &[SimTrade]) -> Option<RestReply> {
        rest_trades(path_and_query, happened)
    }
}

impl ExchangeSim for CoinbaseAdvancedSim {
    fn name(&self) -> &'static str {
        "coinbase"
    }

    fn on_client_text(&self, text: &str) -> ClientRequest {
        let reject = |m: &str| {
            ClientRequest::Reject(vec![json!({"type": "error", "message": m}).to_string()])
        };
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return reject("failure to parse message");
        };
        if v.get("type").and_then(Value::as_str) != Some("subscribe") {
            return reject("unknown message type");
        }
        let symbols = products(v.get("product_ids"));
        let channel = v.get("channel").and_then(Value::as_str).unwrap_or_default();
        let ack = json!({
            "channel": "subscriptions", "client_id": "", "timestamp": "2023-02-09T20:32:51.000000Z",
            "sequence_num": 0, "events": [{"subscriptions": {channel: symbols}}],
        })
        .to_string();
        match channel {
            "market_trades" if !symbols.is_empty() => ClientRequest::Subscribe {
                symbols,
                replies: vec![ack],
            },
            "heartbeats" => ClientRequest::Reply(vec![ack]),
            _ => reject("failure to subscribe"),
        }
    }

    fn trade_frame(&self, t: &SimTrade, event_ms: i64, _path: &str) -> String {
        json!({
            "channel": "market_trades", "client_id": "", "timestamp": rfc3339_micros(event_ms),
            "sequence_num": t.trade_id,
            "events": [{"type": "update", "trades": [{
                "trade_id": t.trade_id.to_string(),
                "product_id": t.symbol,
                "price": t.price.to_string(),
                "size": t.size.to_string(),
                "side": maker_side(t).to_ascii_uppercase(),
                "time": rfc3339_micros(t.ts_ms),
            }]}],
        })
        .to_string()
    }

    fn heartbeat(&self) -> Option<String> {
        Some(
            json!({"channel": "heartbeats", "client_id": "", "timestamp": "2023-06-23T20:31:26.122969572Z",
                   "sequence_num": 0, "events": [{"current_time": "2023-06-23 20:31:56.121961769 +0000 UTC",
                   "heartbeat_counter": "1"}]})
            .to_string(),
        )
    }

    fn rest(&self, path_and_query: &str, happened: &[SimTrade]) -> Option<RestReply> {
        rest_trades(path_and_query, happened)
    }
}

/// `GET /products/{product_id}/trades?limit=N&after=ID`: newest first, ids below `after`.
fn rest_trades(path_and_query: &str, happened: &[SimTrade]) -> Option<RestReply> {
    let product = path_only(path_and_query)
        .strip_prefix("/products/")?
        .strip_suffix("/trades")?;
    let err = |m: &str| RestReply::bad_request(json!({"message": m}).to_string());
    let Ok(symbol) = parse_canonical(product) else {
        return Some(RestReply {
            status: 404,
            body: r#"{"message":"NotFound"}"#.into(),
        });
    };
    let limit = match query_param(path_and_query, "limit").map(|l| l.parse::<usize>()) {
        None => 1000,
        Some(Ok(l)) if (1..=1000).contains(&l) => l,
        Some(_) => return Some(err("Invalid limit")),
    };
    let after = match query_param(path_and_query, "after").map(|a| a.parse::<u64>()) {
        None => u64::MAX,
        Some(Ok(a)) => a,
        Some(Err(_)) => return Some(err("Invalid after")),
    };
    let rows: Vec<Value> = happened
        .iter()
        .rev()
        .filter(|t| t.symbol == symbol && t.trade_id < after)
        .take(limit)
        .map(|t| {
            json!({"time": rfc3339_micros(t.ts_ms), "trade_id": t.trade_id,
                   "price": t.price.to_string(), "size": t.size.to_string(), "side": maker_side(t)})
        })
        .collect();
    Some(RestReply::ok(Value::Array(rows).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::{BackfillQuery, Connector, Decoded};
    use crate::exchanges::coinbase::connector::{CoinbaseAdvanced, CoinbaseExchange};
    use crate::simulator::{SimConfig, Simulator};

    fn pairs() -> [(&'static dyn ExchangeSim, &'static dyn Connector); 2] {
        [
            (&CoinbaseExchangeSim, &CoinbaseExchange),
            (&CoinbaseAdvancedSim, &CoinbaseAdvanced),
        ]
    }

    #[test]
    fn frames_round_trip_through_the_connector() {
        let cfg = SimConfig::default_symbols(3, 1_700_000_000_000);
        for (sim, conn) in pairs() {
            for t in Simulator::new(&cfg).take(200) {
                let mut ticks = Vec::new();
                let r = conn.decode(&sim.trade_frame(&t, t.ts_ms + 1, "/"), 0, &mut ticks);
                assert_eq!(r, Ok(Decoded::Trades(1)), "{}", sim.name());
                let tick = &ticks[0];
                assert_eq!(tick.symbol, t.symbol);
                assert_eq!(tick.trade_id, sim.trade_id(&t));
                assert_eq!(
                    (tick.price, tick.size, tick.side, tick.ts_ms),
                    (t.price, t.size, t.side, t.ts_ms)
                );
            }
            let hb = sim.heartbeat().expect("a heartbeat");
            assert!(matches!(
                conn.decode(&hb, 0, &mut Vec::new()),
                Ok(Decoded::Skipped(_))
            ));
        }
    }

    #[test]
    fn subscriptions_are_acknowledged_in_the_connectors_terms() {
        let symbols = vec!["BTC-USD".to_string(), "ETH-USD".to_string()];
        for (sim, conn) in pairs() {
            let mut got = Vec::new();
            let mut acks = 0;
            for req in conn.subscribe(&symbols) {
                let replies = match sim.on_client_text(&req) {
                    ClientRequest::Subscribe { symbols, replies } => {
                        got.extend(symbols);
                        replies
                    }
                    ClientRequest::Reply(replies) => replies,
                    other => panic!("{req}: {other:?}"),
                };
                acks += replies
                    .iter()
                    .filter(|r| conn.decode(r, 0, &mut Vec::new()) == Ok(Decoded::Ack))
                    .count();
            }
            assert_eq!(got, symbols);
            assert_eq!(acks, conn.expected_acks(&symbols), "{}", sim.name());
            for bad in [
                "nope",
                r#"{"type":"subscribe","product_ids":[],"channel":"market_trades","channels":["matches"]}"#,
            ] {
                let ClientRequest::Reject(frames) = sim.on_client_text(bad) else {
                    panic!("{bad} accepted");
                };
                assert!(matches!(
                    conn.decode(&frames[0], 0, &mut Vec::new()),
                    Err(crate::connectors::FrameError::Exchange(_))
                ));
            }
        }
    }

    #[test]
    fn rest_backfill_serves_what_the_connector_asks_for() {
        let cfg = SimConfig::default_symbols(5, 1_700_000_000_000);
        let happened: Vec<SimTrade> = Simulator::new(&cfg).take(6000).collect();
        let n_eth = happened.iter().filter(|t| t.symbol == "ETH-USDT").count() as u64;
        for (sim, conn) in pairs() {
            for (from_id, to_id) in [(10, Some(2500)), (10, None), (n_eth, None), (7, Some(7))] {
                let mut got = Vec::new();
                let mut cursor: Option<String> = None;
                let mut pages = 0;
                loop {
                    let q = BackfillQuery {
                        symbol: "ETH-USDT",
                        from_id,
                        to_id,
                        after_ms: 0,
                        cursor: cursor.as_deref(),
                    };
                    let path = conn.backfill_path(&q).expect("coinbase backfills");
                    let reply = sim.rest(&path, &happened).expect("served");
                    assert_eq!(reply.status, 200, "{path}");
                    pages += 1;
                    match conn
                        .backfill_decode(&q, &reply.body, 0, &mut got)
                        .expect("decodes")
                    {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
                let mut ids: Vec<u64> = got
                    .iter()
                    .map(|t| t.trade_id.parse().expect("numeric"))
                    .filter(|&id| id >= from_id && to_id.is_none_or(|to| id <= to))
                    .collect();
                ids.sort_unstable();
                let want: Vec<u64> = (from_id..=to_id.unwrap_or(n_eth)).collect();
                assert_eq!(ids, want, "{from_id}..{to_id:?}");
                if to_id == Some(2500) {
                    assert!(pages >= 3, "several pages");
                    assert_eq!(got.len(), want.len(), "nothing fetched outside the range");
                }
            }
        }
        let s = CoinbaseExchangeSim;
        assert_eq!(s.rest("/products/ETH-USDT/candles", &happened), None);
        assert_eq!(
            s.rest("/products/NOPE/trades", &happened).map(|r| r.status),
            Some(404)
        );
        for bad in ["limit=0", "limit=1001", "after=x"] {
            let r = s.rest(&format!("/products/ETH-USDT/trades?{bad}"), &happened);
            assert_eq!(r.map(|r| r.status), Some(400), "{bad}");
        }
        let body = s
            .rest("/products/NOPE/trades", &happened)
            .expect("404")
            .body;
        let q = BackfillQuery {
            symbol: "NOPE",
            from_id: 1,
            to_id: None,
            after_ms: 0,
            cursor: None,
        };
        assert!(
            CoinbaseExchange
                .backfill_decode(&q, &body, 0, &mut Vec::new())
                .is_err()
        );
    }
}
