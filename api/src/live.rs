//! The live stream: ticks, candles, forecasts and alerts pushed to websocket clients
//! ([`crate::stream`]), filtered per connection by kind, exchange and symbol.
//!
//! A [`Hub`] is one broadcast channel. [`Hub::follow_kafka`] feeds it from the topics with a
//! tail consumer in a group of its own (it starts at the end and never commits), so any number
//! of API processes can serve the stream. A client too slow to keep up loses the oldest
//! messages, never blocks the others, and is told how many it missed (`{"kind":"lagged"}`).
//!
//! Each message is one JSON text frame: `{"kind":"candle","data":{…the record…}}`, with the
//! record exactly as on the topic (see `schemas/`).
//!
//! The websocket itself, and its limits, are in [`crate::stream`].

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::Result;
use axum::extract::ws::Utf8Bytes;
use rdkafka::Message as _;
use serde::Deserialize;
use tickcast_core::bus::KafkaSettings;
use tickcast_core::codec::Topics;
use tickcast_core::shutdown::Shutdown;
use tokio::sync::broadcast;

use crate::error::ApiError;

/// What a stream message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Tick,
    Candle,
    Forecast,
    Alert,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Tick, Kind::Candle, Kind::Forecast, Kind::Alert];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Tick => "tick",
            Kind::Candle => "candle",
            Kind::Forecast => "forecast",
            Kind::Alert => "alert",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        let s = s.trim();
        Kind::ALL
            .into_iter()
            .find(|k| s == k.name() || s.strip_suffix('s') == Some(k.name()))
    }
}

/// One message as sent to clients.
#[derive(Debug)]
pub struct Event {
    pub kind: Kind,
    pub exchange: String,
    pub symbol: String,
    /// The whole websocket text frame.
    pub text: Utf8Bytes,
}

/// The fan-out point.
#[derive(Debug, Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Event>>,
}

/// The fields every record carries that the filters need.
#[derive(Deserialize)]
struct Keys<'a> {
    #[serde(borrow)]
    exchange: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    symbol: std::borrow::Cow<'a, str>,
}

impl Hub {
    /// A hub that keeps up to `capacity` messages for slow clients.
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity.max(16)).0,
        }
    }

    /// Publishes one record (its JSON as on the topic). A record without `exchange` and
    /// `symbol` is dropped with an error: every tickcast record has them.
    pub fn publish(&self, kind: Kind, record: &str) -> Result<()> {
        let keys: Keys<'_> = serde_json::from_str(record)?;
        let text = format!(r#"{{"kind":"{}","data":{}}}"#, kind.name(), record.trim());
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(Arc::new(Event {
            kind,
            exchange: keys.exchange.into_owned(),
            symbol: keys.symbol.into_owned(),
            text: text.into(),
        }));
        Ok(())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Feeds the hub from the ticks, candles, forecasts and alerts topics until `shutdown`.
    /// The consumer's group is `<group_prefix>api-live-<pid>-<nanos>`: its own, so every API
    /// process sees every record.
    pub fn follow_kafka(
        &self,
        settings: &KafkaSettings,
        topics: &Topics,
        group_prefix: &str,
        mut shutdown: Shutdown,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let group = format!("{group_prefix}api-live-{}-{nanos}", std::process::id());
        let by_topic = [
            (topics.ticks(), Kind::Tick),
            (topics.candles(), Kind::Candle),
            (topics.forecasts(), Kind::Forecast),
            (topics.alerts(), Kind::Alert),
        ];
        let names: Vec<String> = by_topic.iter().map(|(t, _)| t.clone()).collect();
        let consumer = settings.tail_consumer(&group, &names)?;
        let hub = self.clone();
        Ok(tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    _ = shutdown.wait() => break,
                    m = consumer.recv() => m,
                };
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!("live stream: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        continue;
                    }
                };
                let Some(kind) = by_topic
                    .iter()
                    .find(|(t, _)| t == msg.topic())
                    .map(|(_, k)| *k)
                else {
                    continue;
                };
                let Some(Ok(text)) = msg.payload_view::<str>() else {
                    continue;
                };
                if let Err(e) = hub.publish(kind, text) {
                    tracing::debug!("live stream: skipping a {} record: {e}", kind.name());
                }
            }
        }))
    }
}

/// Filters of one connection.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Comma-separated kinds: `ticks`, `candles`, `forecasts`, `alerts` (default: all).
    #[param(
        pattern = r"^(ticks?|candles?|forecasts?|alerts?)(,(ticks?|candles?|forecasts?|alerts?))*$"
    )]
    pub kinds: Option<String>,
    /// Comma-separated canonical symbols, e.g. `BTC-USDT,ETH-USDT` (default: all).
    #[param(
        pattern = r"^[A-Z0-9]{1,16}(-[A-Z0-9]{1,16}){1,4}(,[A-Z0-9]{1,16}(-[A-Z0-9]{1,16}){1,4})*$"
    )]
    pub symbols: Option<String>,
    /// One exchange id (default: all).
    #[param(pattern = r"^[a-z0-9_]{1,32}$")]
    pub exchange: Option<String>,
}

/// Checked filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    kinds: BTreeSet<Kind>,
    symbols: BTreeSet<String>,
    exchange: Option<String>,
}

impl Filter {
    pub fn parse(p: &StreamParams) -> Result<Self, ApiError> {
        let list = |s: &Option<String>| -> Vec<String> {
            s.as_deref()
                .map(|s| {
                    s.split(',')
                        .map(|x| x.trim().to_string())
                        .filter(|x| !x.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut kinds = BTreeSet::new();
        for k in list(&p.kinds) {
            kinds.insert(Kind::parse(&k).ok_or_else(|| {
                ApiError::param(
                    "kinds",
                    format!("unknown kind `{k}`; known: ticks, candles, forecasts, alerts"),
                )
            })?);
        }
        if kinds.is_empty() {
            kinds.extend(Kind::ALL);
        }
        let mut symbols = BTreeSet::new();
        for s in list(&p.symbols) {
            crate::routes::symbol_param("symbols", &s)?;
            symbols.insert(s);
        }
        if let Some(e) = &p.exchange {
            crate::routes::exchange_param("exchange", e)?;
        }
        Ok(Self {
            kinds,
            symbols,
            exchange: p.exchange.clone(),
        })
    }

    /// The stream's first message: the filters as understood.
    pub fn hello(&self) -> serde_json::Value {
        let kinds: Vec<&str> = self.kinds.iter().map(|k| k.name()).collect();
        serde_json::json!({
            "kind": "hello",
            "data": {"kinds": kinds, "symbols": self.symbols, "exchange": self.exchange},
        })
    }

    pub fn accepts(&self, e: &Event) -> bool {
        self.kinds.contains(&e.kind)
            && (self.symbols.is_empty() || self.symbols.contains(&e.symbol))
            && self.exchange.as_ref().is_none_or(|x| *x == e.exchange)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(kinds: Option<&str>, symbols: Option<&str>, exchange: Option<&str>) -> StreamParams {
        StreamParams {
            kinds: kinds.map(String::from),
            symbols: symbols.map(String::from),
            exchange: exchange.map(String::from),
        }
    }

    #[test]
    fn filters_parse_and_match() {
        let hub = Hub::new(16);
        let mut rx = hub.subscribe();
        hub.publish(
            Kind::Candle,
            r#"{"exchange":"binance","symbol":"BTC-USDT","x":1}"#,
        )
        .expect("publish");
        let ev = rx.try_recv().expect("event");
        assert_eq!(
            ev.text.as_str(),
            r#"{"kind":"candle","data":{"exchange":"binance","symbol":"BTC-USDT","x":1}}"#
        );
        let all = Filter::parse(&p(None, None, None)).expect("all");
        assert!(all.accepts(&ev));
        let f = Filter::parse(&p(
            Some("forecasts,candle"),
            Some("ETH-USDT, BTC-USDT"),
            None,
        ))
        .expect("filter");
        assert!(f.accepts(&ev));
        assert!(
            !Filter::parse(&p(Some("ticks"), None, None))
                .expect("ticks")
                .accepts(&ev)
        );
        assert!(
            !Filter::parse(&p(None, Some("ETH-USDT"), None))
                .expect("eth")
                .accepts(&ev)
        );
        assert!(
            !Filter::parse(&p(None, None, Some("kraken")))
                .expect("kraken")
                .accepts(&ev)
        );
        let field = |r: Result<Filter, ApiError>| match r.expect_err("bad") {
            ApiError::BadParam { field, .. } => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(Filter::parse(&p(Some("bars"), None, None))), "kinds");
        assert_eq!(
            field(Filter::parse(&p(None, Some("btcusdt"), None))),
            "symbols"
        );
        assert_eq!(
            field(Filter::parse(&p(None, None, Some("Bin ance")))),
            "exchange"
        );
        assert!(hub.publish(Kind::Tick, r#"{"no":"keys"}"#).is_err());
        assert!(hub.publish(Kind::Tick, "not json").is_err());
    }
}
