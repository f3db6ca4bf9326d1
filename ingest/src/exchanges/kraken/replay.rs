//! Kraken's side of WebSocket v2: a `status` greeting, `subscribe` → one ack per symbol,
//! `ping` → `pong`, `{"channel":"heartbeat"}`, `trade` frames with JSON-number prices, and
//! `GET /0/public/Trades?pair=XBTUSD&since=<ns>&count=N` (oldest first, trades after `since`,
//! `last` = the newest row's time in ns).

use serde_json::{Value, json};

use crate::replay::sims::{
    ClientRequest, ExchangeSim, RestReply, path_only, query_param, rfc3339_micros,
};
use crate::simulator::SimTrade;
use tickcast_core::codec::split_concatenated;
use tickcast_core::domain::Side;

#[derive(Debug, Clone, Copy, Default)]
pub struct KrakenSim;

const TIMES: (&str, &str) = ("2023-09-25T09:04:31.742599Z", "2023-09-25T09:04:31.742648Z");

fn side(t: &SimTrade) -> &'static str {
    match t.side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

/// `XBTUSD` → `BTC-USD` (REST asset codes XBT and XDG, renamed before splitting: `XBTUSD`
/// would otherwise split as `XB` + `TUSD`).
fn symbol_of_pair(pair: &str) -> Option<String> {
    let mut upper = pair.to_ascii_uppercase().replace('/', "");
    for (old, new) in [("XBT", "BTC"), ("XDG", "DOGE")] {
        if let Some(rest) = upper.strip_prefix(old) {
            upper = format!("{new}{rest}");
        }
        if let Some(rest) = upper.strip_suffix(old) {
            upper = format!("{rest}{new}");
        }
    }
    split_concatenated(&upper)
}

impl ExchangeSim for KrakenSim {
    fn name(&self) -> &'static str {
        "kraken"
    }

    fn greeting(&self) -> Vec<String> {
        vec![
            r#"{"channel":"status","type":"update","data":[{"version":"2.0.0","system":"online","api_version":"v2","connection_id":1}]}"#
                .into(),
        ]
    }

    fn on_client_text(&self, text: &str) -> ClientRequest {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return ClientRequest::Reject(vec![
                json!({"error": "Malformed request", "success": false, "time_in": TIMES.0, "time_out": TIMES.1}).to_string(),
            ]);
        };
        let req_id = v.get("req_id").cloned().unwrap_or(Value::Null);
        let method = v.get("method").and_then(Value::as_str).unwrap_or_default();
        let fail = |error: &str| {
            ClientRequest::Reject(vec![
                json!({"error": error, "method": method, "req_id": req_id, "success": false,
                       "time_in": TIMES.0, "time_out": TIMES.1})
                .to_string(),
            ])
        };
        match method {
            "ping" => ClientRequest::Reply(vec![
                json!({"method": "pong", "req_id": req_id, "time_in": TIMES.0, "time_out": TIMES.1})
                    .to_string(),
            ]),
            "subscribe" => {
                let params = v.get("params");
                if params
                    .and_then(|p| p.get("channel"))
                    .and_then(Value::as_str)
                    != Some("trade")
                {
                    return fail("Channel not found");
                }
                let natives: Vec<&str> = params
                    .and_then(|p| p.get("symbol"))
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut symbols = Vec::new();
                let mut replies = Vec::new();
                for native in natives {
                    let Some((base, quote)) = native.split_once('/') else {
                        return fail(&format!("Currency pair not supported {native}"));
                    };
                    symbols.push(format!("{base}-{quote}"));
                    replies.push(
                        json!({"method": "subscribe", "req_id": req_id,
                               "result": {"channel": "trade", "snapshot": false, "symbol": native},
                               "success": true, "time_in": TIMES.0, "time_out": TIMES.1})
                        .to_string(),
                    );
                }
                if symbols.is_empty() {
                    return fail("Missing symbol");
                }
                ClientRequest::Subscribe { symbols, replies }
            }
            _ => fail("Method not found"),
        }
    }

    fn trade_frame(&self, t: &SimTrade, _event_ms: i64, _path: &str) -> String {
        // Decimals' Display writes a plain number: exactly what goes into the JSON number.
        format!(
            r#"{{"channel":"trade","type":"update","data":[{{"symbol":"{}","side":"{}","price":{},"qty":{},"ord_type":"market","trade_id":{},"timestamp":"{}"}}]}}"#,
            t.symbol.replacen('-', "/", 1),
            side(t),
            t.price,
            t.size,
            t.trade_id,
            rfc3339_micros(t.ts_ms),
        )
    }

    fn heartbeat(&self) -> Option<String> {
        Some(r#"{"channel":"heartbeat"}"#.into())
    }

    fn rest(&self, path_and_query: &str, happened: &[SimTrade]) -> Option<RestReply> {
        if path_only(path_and_query) != "/0/public/Trades" {
            return None;
        }
        let err = |e: &str| RestReply::ok(json!({"error": [e]}).to_string());
        let pair = query_param(path_and_query, "pair").unwrap_or_default();
        let Some(symbol) = symbol_of_pair(&pair) else {
            return Some(err("EQuery:Unknown asset pair"));
        };
        let since = match query_param(path_and_query, "since").map(|s| s.parse::<i128>()) {
            None => 0,
            Some(Ok(s)) => s,
            Some(Err(_)) => return Some(err("EGeneral:Invalid arguments:since")),
        };
        let count = match query_param(path_and_query, "count").map(|c| c.parse::<usize>()) {
            None => 1000,
            Some(Ok(c)) if (1..=1000).contains(&c) => c,
            Some(_) => return Some(err("EGeneral:Invalid arguments:count")),
        };
        // Unique, increasing ns times: the trade's ms plus its rank within that ms, in µs.
        let mut prev = (i64::MIN, 0i128);
        let mut rows = Vec::new();
        let mut last = since;
        for t in happened.iter().filter(|t| t.symbol == symbol) {
            let rank = if t.ts_ms == prev.0 { prev.1 + 1 } else { 0 };
            prev = (t.ts_ms, rank);
            let ns = i128::from(t.ts_ms) * 1_000_000 + rank.min(999) * 1000;
            if ns <= since || rows.len() == count {
                continue;
            }
            let time = format!(
                "{}.{:09}",
                ns.div_euclid(1_000_000_000),
                ns.rem_euclid(1_000_000_000)
            );
            let s = if t.side == Side::Buy { "b" } else { "s" };
            rows.push(format!(
                r#"["{}","{}",{time},"{s}","m","",{}]"#,
                t.price, t.size, t.trade_id
            ));
            last = ns;
        }
        Some(RestReply::ok(format!(
            r#"{{"error":[],"result":{{"{pair}":[{}],"last":"{last}"}}}}"#,
            rows.join(",")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::{BackfillQuery, Connector as _, Decoded, FrameError, Keepalive};
    use crate::exchanges::kraken::connector::Kraken;
    use crate::simulator::{SimConfig, Simulator};

    #[test]
    fn frames_round_trip_through_the_connector() {
        let cfg = SimConfig::default_symbols(3, 1_700_000_000_000);
        let sim = KrakenSim;
        for t in Simulator::new(&cfg).take(200) {
            let mut ticks = Vec::new();
            let r = Kraken.decode(&sim.trade_frame(&t, t.ts_ms + 1, "/v2"), 0, &mut ticks);
            assert_eq!(r, Ok(Decoded::Trades(1)));
            let tick = &ticks[0];
            assert_eq!(tick.symbol, t.symbol);
            assert_eq!(tick.trade_id, sim.trade_id(&t));
            assert_eq!(
                (tick.price, tick.size, tick.side, tick.ts_ms),
                (t.price, t.size, t.side, t.ts_ms)
            );
            assert_eq!(tick.price.to_string(), t.price.to_string());
        }
        for frame in sim.greeting().iter().chain(sim.heartbeat().iter()) {
            assert!(matches!(
                Kraken.decode(frame, 0, &mut Vec::new()),
                Ok(Decoded::Skipped(_))
            ));
        }
    }

    #[test]
    fn subscriptions_are_acknowledged_in_the_connectors_terms() {
        let sim = KrakenSim;
        let symbols = vec![
            "BTC-USD".to_string(),
            "ETH-USD".to_string(),
            "SOL-EUR".to_string(),
        ];
        let [req] = Kraken.subscribe(&symbols).try_into().expect("one request");
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
            .filter(|r| Kraken.decode(r, 0, &mut Vec::new()) == Ok(Decoded::Ack))
            .count();
        assert_eq!(acks, Kraken.expected_acks(&symbols));
        let Keepalive::ClientText { text: ping, .. } = Kraken.info().keepalive else {
            panic!("kraken pings with a text frame");
        };
        let ClientRequest::Reply(pong) = sim.on_client_text(ping) else {
            panic!("no pong");
        };
        assert_eq!(
            Kraken.decode(&pong[0], 0, &mut Vec::new()),
            Ok(Decoded::Skipped("pong"))
        );
        for bad in [
            "nope",
            r#"{"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"]}}"#,
            r#"{"method":"subscribe","params":{"channel":"trade","symbol":["BTCUSD"]}}"#,
            r#"{"method":"fly"}"#,
        ] {
            let ClientRequest::Reject(frames) = sim.on_client_text(bad) else {
                panic!("{bad} accepted");
            };
            assert!(matches!(
                Kraken.decode(&frames[0], 0, &mut Vec::new()),
                Err(FrameError::Exchange(_))
            ));
        }
    }

    #[test]
    fn rest_backfill_serves_what_the_connector_asks_for() {
        let cfg = SimConfig::default_symbols(5, 1_700_000_000_000);
        let happened: Vec<SimTrade> = Simulator::new(&cfg).take(6000).collect();
        let eth: Vec<&SimTrade> = happened.iter().filter(|t| t.symbol == "ETH-USDT").collect();
        let n_eth = eth.len() as u64;
        for (from_id, to_id) in [(10, Some(2500)), (10, None), (n_eth, None), (1, Some(1))] {
            let after_ms = if from_id > 1 {
                eth[from_id as usize - 2].ts_ms
            } else {
                0
            };
            let mut got = Vec::new();
            let mut cursor: Option<String> = None;
            let mut pages = 0;
            loop {
                let q = BackfillQuery {
                    symbol: "ETH-USDT",
                    from_id,
                    to_id,
                    after_ms,
                    cursor: cursor.as_deref(),
                };
                let path = Kraken.backfill_path(&q).expect("kraken backfills");
                let reply = KrakenSim.rest(&path, &happened).expect("served");
                pages += 1;
                match Kraken
                    .backfill_decode(&q, &reply.body, 0, &mut got)
                    .expect("decodes")
                {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            let ids: Vec<u64> = got
                .iter()
                .map(|t| t.trade_id.parse().expect("numeric"))
                .filter(|&id| id >= from_id && to_id.is_none_or(|to| id <= to))
                .collect();
            let want: Vec<u64> = (from_id..=to_id.unwrap_or(n_eth)).collect();
            assert_eq!(ids, want, "{from_id}..{to_id:?}");
            if to_id == Some(2500) {
                assert!(pages >= 3, "several pages");
            }
        }
        assert_eq!(
            KrakenSim.rest("/0/public/Depth?pair=XBTUSD", &happened),
            None
        );
        let q = BackfillQuery {
            symbol: "ETH-USDT",
            from_id: 1,
            to_id: None,
            after_ms: 0,
            cursor: None,
        };
        for bad in ["pair=NOPE", "pair=ETHUSDT&since=x", "pair=ETHUSDT&count=0"] {
            let r = KrakenSim
                .rest(&format!("/0/public/Trades?{bad}"), &happened)
                .expect("served");
            assert!(
                matches!(
                    Kraken.backfill_decode(&q, &r.body, 0, &mut Vec::new()),
                    Err(FrameError::Exchange(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(symbol_of_pair("XBTUSD").as_deref(), Some("BTC-USD"));
        assert_eq!(symbol_of_pair("XDGXBT").as_deref(), Some("DOGE-BTC"));
    }
}
