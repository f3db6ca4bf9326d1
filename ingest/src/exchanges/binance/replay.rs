//! Binance's side of the trade stream: `SUBSCRIBE` → `{"result":null,"id":N}`, `@trade` /
//! `@aggTrade` events (wrapped in `{"stream":…,"data":…}` on `/stream` connections), and
//! `GET /api/v3/historicalTrades` / `/api/v3/aggTrades` for backfill.

use super::connector::stream_symbol;
use crate::replay::sims::{ClientRequest, ExchangeSim, RestReply, path_only, query_param};
use crate::simulator::SimTrade;
use tickcast_core::codec::split_concatenated;
use tickcast_core::domain::Side;

#[derive(Debug, Clone, Copy)]
pub struct BinanceSim {
    agg: bool,
}

impl BinanceSim {
    pub fn trades() -> Self {
        Self { agg: false }
    }
    pub fn agg_trades() -> Self {
        Self { agg: true }
    }
    fn suffix(&self) -> &'static str {
        if self.agg { "@aggTrade" } else { "@trade" }
    }
    /// `btcusdt@trade` → `BTC-USDT` when the stream type matches.
    fn symbol_of_stream(&self, stream: &str) -> Option<String> {
        split_concatenated(stream.strip_suffix(self.suffix())?)
    }
}

/// The event Binance sends for one trade.
pub fn trade_event(t: &SimTrade, event_ms: i64, agg: bool) -> String {
    let sym = stream_symbol(&t.symbol).to_ascii_uppercase();
    let maker = t.side == Side::Sell;
    if agg {
        format!(
            r#"{{"e":"aggTrade","E":{event_ms},"s":"{sym}","a":{id},"p":"{}","q":"{}","f":{id},"l":{id},"T":{},"m":{maker},"M":true}}"#,
            t.price,
            t.size,
            t.ts_ms,
            id = t.trade_id,
        )
    } else {
        format!(
            r#"{{"e":"trade","E":{event_ms},"s":"{sym}","t":{},"p":"{}","q":"{}","T":{},"m":{maker},"M":true}}"#,
            t.trade_id, t.price, t.size, t.ts_ms,
        )
    }
}

impl ExchangeSim for BinanceSim {
    fn name(&self) -> &'static str {
        if self.agg { "binance-agg" } else { "binance" }
    }

    fn symbols_in_path(&self, path: &str) -> Vec<String> {
        query_param(path, "streams")
            .map(|s| {
                s.split('/')
                    .filter_map(|stream| self.symbol_of_stream(stream))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn on_client_text(&self, text: &str) -> ClientRequest {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            return ClientRequest::Reject(vec![
                r#"{"code":3,"msg":"Invalid JSON: expected value at line 1 column 1"}"#.into(),
            ]);
        };
        let id = v.get("id").cloned().unwrap_or(serde_json::Value::Null);
        match v.get("method").and_then(|m| m.as_str()) {
            Some("SUBSCRIBE") => {
                let params = v.get("params").and_then(|p| p.as_array());
                let symbols: Option<Vec<String>> = params.map(|ps| {
                    ps.iter()
                        .filter_map(|p| p.as_str().and_then(|s| self.symbol_of_stream(s)))
                        .collect()
                });
                match symbols {
                    Some(symbols) if !symbols.is_empty() => ClientRequest::Subscribe {
                        symbols,
                        replies: vec![serde_json::json!({"result": null, "id": id}).to_string()],
                    },
                    _ => ClientRequest::Reject(vec![
                        serde_json::json!({"error": {"code": 2, "msg": "Invalid request: no streams"}, "id": id})
                            .to_string(),
                    ]),
                }
            }
            Some("LIST_SUBSCRIPTIONS") => {
                ClientRequest::Reply(vec![serde_json::json!({"result": [], "id": id}).to_string()])
            }
            _ => ClientRequest::Reject(vec![
                serde_json::json!({"error": {"code": 2, "msg": "Invalid request: unknown method"}, "id": id})
                    .to_string(),
            ]),
        }
    }

    fn trade_frame(&self, t: &SimTrade, event_ms: i64, path: &str) -> String {
        let body = trade_event(t, event_ms, self.agg);
        if path.starts_with("/stream") {
            format!(
                r#"{{"stream":"{}{}","data":{body}}}"#,
                stream_symbol(&t.symbol),
                self.suffix()
            )
        } else {
            body
        }
    }

    fn rest(&self, path_and_query: &str, happened: &[SimTrade]) -> Option<RestReply> {
        let want = if self.agg {
            "/api/v3/aggTrades"
        } else {
            "/api/v3/historicalTrades"
        };
        if path_only(path_and_query) != want {
            return None;
        }
        let err = |msg: &str| {
            RestReply::bad_request(serde_json::json!({"code": -1100, "msg": msg}).to_string())
        };
        let Some(symbol) =
            query_param(path_and_query, "symbol").and_then(|s| split_concatenated(&s))
        else {
            return Some(RestReply::bad_request(
                r#"{"code":-1121,"msg":"Invalid symbol."}"#.into(),
            ));
        };
        let limit = match query_param(path_and_query, "limit").map(|l| l.parse::<usize>()) {
            None => 500,
            Some(Ok(l)) if (1..=1000).contains(&l) => l,
            Some(_) => return Some(err("Illegal characters found in parameter 'limit'")),
        };
        let from = match query_param(path_and_query, "fromId").map(|f| f.parse::<u64>()) {
            None => None,
            Some(Ok(f)) => Some(f),
            Some(Err(_)) => return Some(err("Illegal characters found in parameter 'fromId'")),
        };
        let of_symbol = happened.iter().filter(|t| t.symbol == symbol);
        let rows: Vec<&SimTrade> = match from {
            Some(from) => of_symbol
                .filter(|t| t.trade_id >= from)
                .take(limit)
                .collect(),
            None => {
                let all: Vec<&SimTrade> = of_symbol.collect();
                all[all.len().saturating_sub(limit)..].to_vec()
            }
        };
        let body: Vec<String> = rows
            .iter()
            .map(|t| {
                let maker = t.side == Side::Sell;
                if self.agg {
                    format!(
                        r#"{{"a":{id},"p":"{}","q":"{}","f":{id},"l":{id},"T":{},"m":{maker},"M":true}}"#,
                        t.price,
                        t.size,
                        t.ts_ms,
                        id = t.trade_id
                    )
                } else {
                    format!(
                        r#"{{"id":{},"price":"{}","qty":"{}","quoteQty":"{}","time":{},"isBuyerMaker":{maker},"isBestMatch":true}}"#,
                        t.trade_id,
                        t.price,
                        t.size,
                        t.price * t.size,
                        t.ts_ms
                    )
                }
            })
            .collect();
        Some(RestReply::ok(format!("[{}]", body.join(","))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::{BackfillQuery, Connector as _, Decoded};
    use crate::exchanges::binance::connector::Binance;
    use crate::simulator::{SimConfig, Simulator};

    #[test]
    fn frames_round_trip_through_the_connector() {
        let cfg = SimConfig::default_symbols(3, 1_000);
        for (sim, conn) in [
            (BinanceSim::trades(), Binance::trades()),
            (BinanceSim::agg_trades(), Binance::agg_trades()),
        ] {
            for path in ["/ws", "/stream?streams=btcusdt@trade"] {
                for t in Simulator::new(&cfg).take(200) {
                    let mut ticks = Vec::new();
                    let r = conn.decode(&sim.trade_frame(&t, t.ts_ms + 1, path), 0, &mut ticks);
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
        }
    }

    #[test]
    fn subscriptions_are_acknowledged_in_the_connectors_terms() {
        let (sim, conn) = (BinanceSim::trades(), Binance::trades());
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
        assert!(matches!(
            sim.on_client_text("nope"),
            ClientRequest::Reject(_)
        ));
        assert_eq!(
            sim.symbols_in_path("/stream?streams=btcusdt@trade/ethusdt@trade/xrpusdt@depth"),
            symbols
        );
    }

    #[test]
    fn rest_backfill_serves_what_the_connector_asks_for() {
        let cfg = SimConfig::default_symbols(5, 1_000);
        let happened: Vec<SimTrade> = Simulator::new(&cfg).take(3000).collect();
        let (sim, conn) = (BinanceSim::trades(), Binance::trades());
        let mut got = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = BackfillQuery {
                symbol: "ETH-USDT",
                from_id: 10,
                to_id: None,
                after_ms: 0,
                cursor: cursor.as_deref(),
            };
            let path = conn.backfill_path(&q).expect("binance backfills");
            let reply = sim.rest(&path, &happened).expect("served");
            assert_eq!(reply.status, 200);
            let next = conn
                .backfill_decode(&q, &reply.body, 0, &mut got)
                .expect("decodes");
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let want: Vec<String> = happened
            .iter()
            .filter(|t| t.symbol == "ETH-USDT" && t.trade_id >= 10)
            .map(|t| t.trade_id.to_string())
            .collect();
        assert!(want.len() > 1000, "spans more than one page");
        let ids: Vec<String> = got.iter().map(|t| t.trade_id.clone()).collect();
        assert_eq!(ids, want);
        assert_eq!(sim.rest("/api/v3/klines", &happened), None);
        assert_eq!(
            sim.rest("/api/v3/historicalTrades?symbol=NOPE", &happened)
                .map(|r| r.status),
            Some(400)
        );
    }
}
