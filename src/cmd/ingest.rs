//! `tickcast ingest`: which exchanges and symbols to stream, from flags, the environment and a
//! config file (flags and environment win over the file), then one feed set per exchange.
//!
//! ```toml
//! # tickcast.toml
//! [ingest]
//! stale_after_secs = 30     # reconnect when a feed is silent this long
//! backfill = true           # fill gaps in trade ids from the exchange's REST endpoint
//!
//! [[ingest.feeds]]
//! exchange = "binance"
//! symbols = ["BTC-USDT", "ETH-USDT"]
//!
//! [[ingest.feeds]]
//! exchange = "coinbase"
//! symbols = ["BTC-USD"]
//! # url = "wss://advanced-trade-ws.coinbase.com"    # default: the exchange's own
//! # rest_url = "https://api.exchange.coinbase.com"
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use clap::Args;
use tickcast_core::bus::Publisher;
use tickcast_core::codec::Topics;
use tickcast_ingest::connectors::{self, Connector};
use tickcast_ingest::exchanges;
use tickcast_ingest::feed::{FeedOptions, resume, run_ingest};

use crate::args::{EventWindowArgs, KafkaArgs, MetricsArgs};
use crate::config::file::{self as config_file, FeedSection, IngestSection};
use crate::signals::shutdown_on_signals;

/// The `--exchange` help, naming every connector in the exchange table's order.
fn exchange_help() -> String {
    format!(
        "Exchange connectors, comma-separated: {}",
        exchanges::NAMES.join(", ")
    )
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[arg(
        long = "exchange",
        help = exchange_help(),
        visible_alias = "exchanges",
        env = "TICKCAST__INGEST__EXCHANGES",
        value_delimiter = ','
    )]
    pub exchanges: Vec<String>,
    /// Canonical symbols (BTC-USDT), comma-separated; `EXCHANGE:SYMBOL` (coinbase:BTC-USD)
    /// limits one symbol to one exchange.
    #[arg(long, env = "TICKCAST__INGEST__SYMBOLS", value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// Websocket URL, with a single exchange (e.g. the replay exchange's `ws://127.0.0.1:9443/ws`).
    #[arg(long, env = "TICKCAST_FEED_URL")]
    pub url: Option<String>,
    /// REST base URL for gap backfill (default: the exchange's, or the websocket URL's host).
    #[arg(long, env = "TICKCAST_REST_URL")]
    pub rest_url: Option<String>,
    /// Reconnect when a feed is silent this many seconds.
    #[arg(long, env = "TICKCAST__INGEST__STALE_AFTER_SECS")]
    pub stale_after_secs: Option<u64>,
    /// Do not fill gaps from REST.
    #[arg(long, env = "TICKCAST__INGEST__NO_BACKFILL")]
    pub no_backfill: bool,
    /// Ticks held at most while Kafka is slow or away (about 300 bytes each); beyond them the
    /// feed is not read until Kafka acknowledges again, and the trades missed meanwhile are
    /// backfilled from REST where the exchange numbers them consecutively.
    #[arg(long, env = "TICKCAST_MAX_BUFFERED_TICKS", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub max_buffered_ticks: u64,
    #[command(flatten)]
    pub window: EventWindowArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// One exchange to stream.
#[derive(Debug)]
pub struct FeedSpec {
    pub connector: Arc<dyn Connector>,
    pub opts: FeedOptions,
}

/// Works out the feeds: flags/environment when they name exchanges or symbols, else the file's
/// feeds, else Binance BTC-USDT and ETH-USDT.
pub fn resolve(args: &IngestArgs, file: &IngestSection) -> Result<Vec<FeedSpec>, String> {
    let from_flags = !args.exchanges.is_empty() || !args.symbols.is_empty();
    let mut feeds: Vec<FeedSection> = if from_flags {
        feeds_from_flags(args)?
    } else if !file.feeds.is_empty() {
        file.feeds
            .iter()
            .map(|f| FeedSection {
                exchange: f.exchange.clone(),
                symbols: f.symbols.clone(),
                url: f.url.clone(),
                rest_url: f.rest_url.clone(),
            })
            .collect()
    } else {
        vec![FeedSection {
            exchange: "binance".into(),
            symbols: vec!["BTC-USDT".into(), "ETH-USDT".into()],
            url: None,
            rest_url: None,
        }]
    };
    if args.url.is_some() || args.rest_url.is_some() {
        if feeds.len() != 1 {
            return Err("--url/--rest-url need exactly one exchange".into());
        }
        feeds[0].url = args.url.clone().or(feeds[0].url.take());
        feeds[0].rest_url = args.rest_url.clone().or(feeds[0].rest_url.take());
    }
    let stale = args.stale_after_secs.or(file.stale_after_secs);
    let backfill = !args.no_backfill && file.backfill.unwrap_or(true);
    let mut seen = std::collections::HashSet::new();
    feeds
        .into_iter()
        .map(|f| {
            let connector: Arc<dyn Connector> = Arc::from(exchanges::lookup(f.exchange.trim())?);
            if !seen.insert(connector.info().name) {
                return Err(format!("exchange `{}` is listed twice", f.exchange));
            }
            let symbols = f
                .symbols
                .iter()
                .map(|s| connectors::parse_canonical(s))
                .collect::<Result<Vec<String>, String>>()?;
            if symbols.is_empty() {
                return Err(format!("no symbols for exchange `{}`", f.exchange));
            }
            let url = f.url.unwrap_or_else(|| connector.info().ws_url.to_string());
            let mut opts = FeedOptions::new(url, symbols);
            opts.rest_url = f.rest_url;
            opts.backfill = backfill;
            opts.event_window = args.window.window();
            opts.max_buffered_ticks = args.max_buffered_ticks as usize;
            if let Some(s) = stale {
                if s == 0 {
                    return Err("stale_after_secs must be > 0".into());
                }
                opts.stale_after = Duration::from_secs(s);
            }
            Ok(FeedSpec { connector, opts })
        })
        .collect()
}

fn feeds_from_flags(args: &IngestArgs) -> Result<Vec<FeedSection>, String> {
    let exchanges: Vec<String> = if args.exchanges.is_empty() {
        vec!["binance".into()]
    } else {
        args.exchanges
            .iter()
            .map(|e| e.trim().to_string())
            .collect()
    };
    for e in &exchanges {
        exchanges::lookup(e)?;
    }
    let mut feeds: Vec<FeedSection> = exchanges
        .iter()
        .map(|e| FeedSection {
            exchange: e.clone(),
            symbols: Vec::new(),
            url: None,
            rest_url: None,
        })
        .collect();
    for s in args
        .symbols
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        match s.split_once(':') {
            Some((ex, sym)) => {
                let feed = feeds.iter_mut().find(|f| f.exchange == ex).ok_or_else(|| {
                    format!(
                        "symbol `{s}` names exchange `{ex}`, which is not in --exchange ({})",
                        exchanges.join(",")
                    )
                })?;
                feed.symbols.push(sym.to_string());
            }
            None => feeds.iter_mut().for_each(|f| f.symbols.push(s.to_string())),
        }
    }
    if let Some(f) = feeds.iter().find(|f| f.symbols.is_empty()) {
        return Err(format!(
            "no symbols for exchange `{}`: pass --symbols BASE-QUOTE or {}:BASE-QUOTE",
            f.exchange, f.exchange
        ));
    }
    Ok(feeds)
}

/// The last trade per symbol already on the ticks topic, for a feed whose exchange numbers
/// its trades consecutively and is backfilled (others cannot tell what they missed).
async fn resume_points(
    settings: &tickcast_core::bus::KafkaSettings,
    topics: &Topics,
    feed: &FeedSpec,
) -> Result<std::collections::HashMap<String, resume::LastTrade>> {
    let info = feed.connector.info();
    if !(info.sequential_ids && feed.opts.backfill) {
        return Ok(Default::default());
    }
    let (settings, topic, exchange, symbols) = (
        settings.clone(),
        topics.ticks(),
        info.name.to_string(),
        feed.opts.symbols.clone(),
    );
    let started = std::time::Instant::now();
    let found = tokio::task::spawn_blocking(move || {
        resume::last_trades(
            &settings,
            &topic,
            &exchange,
            &symbols,
            Duration::from_secs(30),
        )
    })
    .await
    .context("reading where to resume")?
    .context("reading the last trades on the ticks topic")?;
    tracing::info!(
        exchange = info.name,
        symbols = found.len(),
        ms = started.elapsed().as_millis() as u64,
        "resume points read from the ticks topic"
    );
    Ok(found)
}

/// `tickcast ingest`.
pub async fn run(args: IngestArgs) -> Result<()> {
    let file = config_file::load(args.kafka.config.as_ref())?;
    let mut feeds = resolve(&args, &file.ingest).map_err(|e| anyhow!("{e}"))?;
    let topics = Topics::new(&args.kafka.topic_prefix);
    let cluster = args.kafka.cluster_with(&file)?;
    cluster.ensure_topics(&topics.all()).await?;
    for f in &mut feeds {
        f.opts.resume_from = resume_points(cluster.settings(), &topics, f).await?;
    }
    let publisher = Publisher::new(cluster.settings())?;
    let (_trigger, signal) = shutdown_on_signals();
    args.metrics.spawn(signal.clone()).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for f in feeds {
        println!(
            "ingesting {} {} from {}",
            f.connector.info().name,
            f.opts.symbols.join(","),
            f.opts.url
        );
        tasks.spawn(run_ingest(
            f.connector,
            f.opts,
            publisher.clone(),
            topics.clone(),
            signal.clone(),
        ));
    }
    while let Some(r) = tasks.join_next().await {
        r.context("ingest task panicked")??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn args(argv: &[&str]) -> IngestArgs {
        #[derive(Debug, clap::Parser)]
        struct T {
            #[command(flatten)]
            a: IngestArgs,
        }
        let mut full = vec!["t"];
        full.extend_from_slice(argv);
        T::try_parse_from(full).expect("parses").a
    }

    fn summary(feeds: &[FeedSpec]) -> Vec<(String, Vec<String>, String)> {
        feeds
            .iter()
            .map(|f| {
                (
                    f.connector.info().name.to_string(),
                    f.opts.symbols.clone(),
                    f.opts.url.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn flags_name_exchanges_and_symbols() {
        let a = args(&[
            "--exchange",
            "binance,coinbase",
            "--symbols",
            "btc-usdt,coinbase:ETH-USD",
        ]);
        let feeds = resolve(&a, &IngestSection::default()).expect("valid");
        assert_eq!(
            summary(&feeds),
            vec![
                (
                    "binance".into(),
                    vec!["BTC-USDT".into()],
                    "wss://stream.binance.com:9443/ws".into()
                ),
                (
                    "coinbase".into(),
                    vec!["BTC-USDT".into(), "ETH-USD".into()],
                    "wss://advanced-trade-ws.coinbase.com".into()
                ),
            ]
        );
    }

    #[test]
    fn the_file_is_used_when_flags_are_silent_and_flags_win_when_not() {
        let file: config_file::ConfigFile = toml::from_str(
            r#"
            [ingest]
            stale_after_secs = 7
            backfill = false
            [[ingest.feeds]]
            exchange = "kraken"
            symbols = ["BTC-USD"]
            [[ingest.feeds]]
            exchange = "okx"
            symbols = ["BTC-USDT", "ETH-USDT-SWAP"]
            url = "ws://127.0.0.1:1/ws"
            "#,
        )
        .expect("valid toml");
        let feeds = resolve(&args(&[]), &file.ingest).expect("valid");
        assert_eq!(feeds.len(), 2);
        assert_eq!(feeds[1].opts.symbols, vec!["BTC-USDT", "ETH-USDT-SWAP"]);
        assert_eq!(feeds[1].opts.url, "ws://127.0.0.1:1/ws");
        assert_eq!(feeds[0].opts.stale_after, Duration::from_secs(7));
        assert!(!feeds[0].opts.backfill);
        let feeds = resolve(
            &args(&["--exchange", "bybit", "--symbols", "SOL-USDT"]),
            &file.ingest,
        )
        .expect("valid");
        assert_eq!(summary(&feeds)[0].0, "bybit");
        assert_eq!(feeds.len(), 1);
    }

    #[test]
    fn nothing_given_means_binance_btc_and_eth() {
        let feeds = resolve(&args(&[]), &IngestSection::default()).expect("valid");
        assert_eq!(summary(&feeds)[0].1, vec!["BTC-USDT", "ETH-USDT"]);
    }

    #[test]
    fn mistakes_get_clear_errors() {
        let cases: [(&[&str], &str); 6] = [
            (
                &["--exchange", "mtgox", "--symbols", "BTC-USD"],
                "unknown exchange `mtgox`; known: binance",
            ),
            (
                &["--symbols", "BTCUSDT"],
                "`BTCUSDT` is not a canonical BASE-QUOTE symbol",
            ),
            (
                &["--exchange", "binance,okx", "--symbols", "okx:BTC-USDT"],
                "no symbols for exchange `binance`",
            ),
            (
                &["--exchange", "binance", "--symbols", "kraken:BTC-USD"],
                "names exchange `kraken`, which is not in --exchange",
            ),
            (
                &[
                    "--exchange",
                    "binance,kraken",
                    "--symbols",
                    "BTC-USD",
                    "--url",
                    "ws://x",
                ],
                "--url/--rest-url need exactly one exchange",
            ),
            (
                &["--exchange", "okx,okx", "--symbols", "BTC-USDT"],
                "exchange `okx` is listed twice",
            ),
        ];
        for (argv, want) in cases {
            let err = resolve(&args(argv), &IngestSection::default()).expect_err("invalid");
            assert!(err.contains(want), "{argv:?}: {err}");
        }
        let bad: Result<config_file::ConfigFile, _> =
            toml::from_str("[ingest]\nfeeds = [{ exchange = \"okx\", symbol = [] }]");
        assert!(
            bad.expect_err("unknown field")
                .to_string()
                .contains("symbol")
        );
    }
}
