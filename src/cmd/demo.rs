//! `tickcast demo`: every stage in one process on the embedded broker and SQLite, fed by the
//! replay exchange (simulated market: two hours of history at once, then live), with the API.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use tickcast::{PipelineConfig, StageKind, run_stage};
use tickcast_core::bus::{Cluster, KafkaSettings, Publisher};
use tickcast_core::codec::Topics;
use tickcast_core::embedded::EmbeddedBroker;
use tickcast_core::telemetry;
use tickcast_ingest::exchanges::binance::connector::Binance;
use tickcast_ingest::feed::{FeedOptions, run_feed};
use tickcast_ingest::replay::{ReplayOptions, ReplayServer};
use tickcast_ingest::simulator::SimConfig;
use tickcast_store as store;

use crate::args::{MAX_HISTORY_MINUTES, StageArgs, api_token};
use crate::signals::shutdown_on_signals;

/// A line on standard output that never stops the demo: with its reader gone (`tickcast demo |
/// head -3`, a test that read the URL and let go) `println!` would panic on the broken pipe.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = format!($($arg)*);
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }};
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address of the API and dashboard.
    #[arg(long, env = "TICKCAST_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// SQLite file (default: a fresh file in the temp directory, removed at exit).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Bearer token that authorises API mutations (alert rules), at least 16 characters; unset:
    /// read-only.
    #[arg(long, env = "TICKCAST_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// File holding the API token, instead of --api-token.
    #[arg(long, env = "TICKCAST_API_TOKEN_FILE")]
    pub api_token_file: Option<std::path::PathBuf>,
    /// Simulator seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Minutes of simulated history to stream at start-up.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(i64).range(0..=MAX_HISTORY_MINUTES))]
    pub history_minutes: i64,
    /// Seconds between status lines (0 = none).
    #[arg(long, default_value_t = 10)]
    pub status_every: u64,
    #[command(flatten)]
    pub stage: StageArgs,
}

pub async fn run(args: DemoArgs) -> Result<()> {
    // Settings first: a bad one stops here, before anything starts.
    let token = api_token(args.api_token.as_deref(), args.api_token_file.as_deref())?;
    let broker = Arc::new(EmbeddedBroker::start(1)?);
    let mut settings = KafkaSettings::new(broker.bootstrap());
    settings.session_timeout_ms = 6_000;
    let cluster = Cluster::Embedded(broker.clone(), settings.clone());
    let topics = Topics::default();
    cluster.ensure_topics(&topics.all()).await?;
    let mut cfg: PipelineConfig = args.stage.config(cluster, topics.clone())?;
    let topics_for_api = topics.clone();
    let (rules_changed, reload) = tickcast_alerts::reload_channel();
    cfg.alerts.reload = Some(reload);

    let (db_path, temporary) = match &args.db {
        Some(p) => (p.clone(), false),
        None => (
            std::env::temp_dir().join(format!("tickcast-demo-{}.db", std::process::id())),
            true,
        ),
    };
    let store = store::open(&format!("sqlite:{}", db_path.display())).await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| {
            format!(
                "binding {} (use --listen to pick another address)",
                args.listen
            )
        })?;

    let start_ms = tickcast_core::now_ms() - args.history_minutes.max(0) * 60_000;
    let sim = SimConfig::default_symbols(args.seed, start_ms);
    let symbols: Vec<String> = sim.symbols.iter().map(|(s, _)| s.clone()).collect();
    let replay = ReplayServer::bind(
        "127.0.0.1:0",
        ReplayOptions {
            live: true,
            history_to_first: true,
            ..ReplayOptions::new(sim)
        },
    )
    .await?;
    let feed_url = replay.url()?;

    let (trigger, signal) = shutdown_on_signals();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(replay.run(signal.clone()));
    if cfg.alerts.rules_file.is_none() {
        demo_rules(store.as_ref(), &cfg).await?;
    }
    for kind in [
        StageKind::Candles,
        StageKind::Forecast,
        StageKind::Alert,
        StageKind::Sink,
    ] {
        let (cfg, store, signal) = (cfg.clone(), store.clone(), signal.clone());
        tasks.spawn(async move { run_stage(kind, &cfg, Some(store), signal).await });
    }
    let publisher = Publisher::new(&settings)?;
    tasks.spawn(run_feed(
        Arc::new(Binance::trades()),
        FeedOptions::new(feed_url.clone(), symbols),
        publisher,
        topics,
        signal.clone(),
    ));
    let hub = tickcast_api::live::Hub::new(4096);
    hub.follow_kafka(&settings, &topics_for_api, "tickcast-", signal.clone())?;
    let status_store = store.clone();
    let state = tickcast_api::AppState::new(store)
        .with_rules_trigger(rules_changed)
        .with_token(token.as_deref())
        .with_live(hub)
        .with_broker(settings.clone());
    let addr = listener.local_addr()?;
    tasks.spawn(tickcast_api::serve(listener, state, signal.clone()));
    if args.status_every > 0 {
        tasks.spawn(status_lines(
            Duration::from_secs(args.status_every),
            status_store,
            signal.clone(),
        ));
    }

    say!(
        "tickcast demo is running (simulated market on {feed_url}, embedded broker, SQLite {})",
        db_path.display()
    );
    say!("  dashboard: http://{addr}/");
    say!(
        "  API:       http://{addr}/api/v1/forecasts/latest?symbol=BTC-USDT  (all routes: http://{addr}/openapi.json)"
    );
    say!("  metrics:   http://{addr}/metrics   (Ctrl-C to stop)");

    let mut first_error = None;
    while let Some(r) = tasks.join_next().await {
        let r = r.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = r {
            tracing::error!(error = %format!("{e:#}"), "demo task failed; stopping");
            first_error.get_or_insert(e);
            trigger.fire();
        }
    }
    drop(broker);
    if temporary {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db_path.display()));
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn total(c: &prometheus::IntCounterVec) -> u64 {
    use prometheus::core::Collector as _;
    c.collect()
        .iter()
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

async fn status_lines(
    every: Duration,
    store: Arc<dyn tickcast_store::Store>,
    mut signal: tickcast_core::shutdown::Shutdown,
) -> Result<()> {
    let mut last_trades = 0;
    loop {
        tokio::select! {
            _ = signal.wait() => return Ok(()),
            _ = tokio::time::sleep(every) => {}
        }
        let trades = total(&telemetry::FEED_TRADES);
        let rate = (trades - last_trades) as f64 / every.as_secs_f64();
        last_trades = trades;
        say!(
            "status: trades {trades} ({rate:.1}/s), candles {}, forecasts {}, alerts {}, rows written {}, dead letters {}{}",
            total(&telemetry::CANDLES),
            total(&telemetry::FORECASTS),
            total(&tickcast_alerts::metrics::EVENTS),
            total(&telemetry::SINK_ROWS),
            total(&telemetry::DEAD_LETTERS),
            scoreboard(store.as_ref()).await,
        );
    }
}

/// `, ensemble vs naive: rel. MAE 0.998 (h1) …, coverage 80/95 0.81/0.95` from the stored
/// rolling scores (means over series), or nothing before the first scores.
async fn scoreboard(store: &dyn tickcast_store::Store) -> String {
    let q = tickcast_store::AccuracyQuery {
        model: Some("ensemble".into()),
        limit: 10_000,
        ..Default::default()
    };
    let Ok(rows) = store.accuracy(&q).await else {
        return String::new();
    };
    let mut by_h: std::collections::BTreeMap<i32, (f64, usize)> = Default::default();
    let (mut c80, mut c95) = (0.0, 0.0);
    for r in &rows {
        if let Some(rel) = r.rel_mae {
            let e = by_h.entry(r.horizon).or_default();
            e.0 += rel;
            e.1 += 1;
        }
        c80 += r.coverage80;
        c95 += r.coverage95;
    }
    if rows.is_empty() || by_h.is_empty() {
        return String::new();
    }
    let rel: Vec<String> = by_h
        .iter()
        .map(|(h, (s, n))| format!("{:.3} (h{h})", s / *n as f64))
        .collect();
    let n = rows.len() as f64;
    format!(
        "; ensemble vs naive: rel. MAE {}, coverage 80/95 {:.2}/{:.2}",
        rel.join(" "),
        c80 / n,
        c95 / n
    )
}

/// Without `--alert-rules`, the demo watches every series with one anomaly rule per interval:
/// the close of a bar outside the 95% interval forecast for it one bar earlier (by the
/// ensemble, or the first model without one). Rules can be changed through the API.
async fn demo_rules(store: &dyn tickcast_store::Store, cfg: &PipelineConfig) -> Result<()> {
    let model = if cfg.ensemble {
        "ensemble".to_string()
    } else {
        cfg.models
            .first()
            .cloned()
            .unwrap_or_else(|| "naive".into())
    };
    let horizon = cfg.horizons.first().copied().unwrap_or(1);
    let mut rules = Vec::new();
    for iv in &cfg.candles.intervals {
        let spec = serde_json::json!({
            "id": format!("demo-outside-95-{iv}"),
            "interval": iv.to_string(),
            "model": model,
            "horizon": horizon,
            "kind": "anomaly",
            "band": 95,
            "cooldown": "5m",
            "description": "demo: the close left the 95% interval forecast for it",
        });
        rules.push(
            tickcast_alerts::Rule::from_json(spec.to_string().as_bytes())
                .map_err(|e| anyhow::anyhow!("demo rule: {}: {}", e.field, e.reason))?,
        );
    }
    store
        .replace_file_rules(&rules, tickcast_core::now_ms())
        .await
}
