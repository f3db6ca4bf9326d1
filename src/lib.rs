//! Wiring shared by the `tickcast` binary and the end-to-end tests: which stage reads which
//! topic, under which consumer group, with which handler (the models from
//! [`tickcast_forecast::models`]). No logic of its own.

/// mimalloc for the binary and everything else linking this crate (tests, benchmarks), so the
/// benchmarks measure the allocator the product runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use tickcast_alerts as alerts;
use tickcast_candles::{CandleBuilder, CandleOptions};
use tickcast_core::bus::Cluster;
use tickcast_core::codec::Topics;
use tickcast_core::interval::Interval;
use tickcast_core::shutdown::Shutdown;
use tickcast_core::stage::{self, StageOptions};
use tickcast_forecast::models;
use tickcast_forecast::stage::CheckpointSettings;
use tickcast_sink::Sink;
use tickcast_store::Store;

/// A stream stage this binary can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StageKind {
    Candles,
    Forecast,
    Alert,
    Sink,
}

impl StageKind {
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Candles => "candles",
            StageKind::Forecast => "forecast",
            StageKind::Alert => "alert",
            StageKind::Sink => "sink",
        }
    }
}

/// Settings every stage shares.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub cluster: Cluster,
    pub topics: Topics,
    /// Consumer groups are `<group_prefix><stage>`.
    pub group_prefix: String,
    /// Candle intervals, lateness, empty-window and idle policies (see
    /// [`tickcast_candles`]).
    pub candles: CandleOptions,
    pub horizons: Vec<u32>,
    /// Forecasting models (see [`models::KNOWN`]).
    pub models: Vec<String>,
    /// Publish the `ensemble` forecast too.
    pub ensemble: bool,
    /// The LSTM's device.
    pub lstm_device: tickcast_forecast::models::lstm::DeviceChoice,
    /// Time between forecast-stage checkpoints (when the stage has a store).
    pub checkpoint_every: Duration,
    pub max_batch: usize,
    pub linger: Duration,
    /// The alert stage's rule file, webhooks and reload period.
    pub alerts: AlertOptions,
    /// When the broker is behind the offsets the sink stored (a recreated topic), drop the
    /// stored ones and write from the broker's, instead of stopping.
    pub sink_forget_offsets_ahead: bool,
    /// How long the sink keeps rows.
    pub retention: tickcast_store::retention::Retention,
    /// How often the sink applies retention.
    pub retention_every: Duration,
}

/// Settings of the alert stage.
#[derive(Debug, Clone)]
pub struct AlertOptions {
    /// YAML rules synced into the store at start-up.
    pub rules_file: Option<std::path::PathBuf>,
    pub webhooks: Vec<alerts::WebhookSettings>,
    /// How often the stage re-reads the rules from the store.
    pub reload_every: Duration,
    /// Reload at once when an API in the same process changes a rule.
    pub reload: Option<alerts::ReloadWatch>,
}

impl Default for AlertOptions {
    fn default() -> Self {
        Self {
            rules_file: None,
            webhooks: Vec::new(),
            reload_every: Duration::from_secs(5),
            reload: None,
        }
    }
}

impl PipelineConfig {
    pub fn new(cluster: Cluster, topics: Topics) -> Self {
        Self {
            cluster,
            topics,
            group_prefix: "tickcast-".to_string(),
            candles: CandleOptions::new([Interval::from_ms(60_000)]),
            horizons: vec![1, 5, 15],
            models: models::DEFAULT.split(',').map(String::from).collect(),
            ensemble: true,
            lstm_device: tickcast_forecast::models::lstm::DeviceChoice::Flex,
            checkpoint_every: Duration::from_secs(30),
            max_batch: 5_000,
            linger: Duration::from_millis(20),
            alerts: AlertOptions::default(),
            sink_forget_offsets_ahead: false,
            retention: tickcast_store::retention::Retention::default(),
            retention_every: tickcast_sink::RETENTION_EVERY,
        }
    }

    pub fn group(&self, stage: StageKind) -> String {
        format!("{}{}", self.group_prefix, stage.name())
    }

    fn options(&self, stage: StageKind, inputs: Vec<String>) -> StageOptions {
        StageOptions {
            name: stage.name().to_string(),
            group: self.group(stage),
            inputs,
            deadletter_topic: self.topics.deadletter(),
            max_batch: self.max_batch,
            linger: self.linger,
        }
    }
}

/// Runs one stage until shutdown. The sink needs a store.
pub async fn run_stage(
    kind: StageKind,
    cfg: &PipelineConfig,
    store: Option<Arc<dyn Store>>,
    shutdown: Shutdown,
) -> Result<()> {
    let settings = cfg.cluster.settings();
    let t = &cfg.topics;
    match kind {
        StageKind::Candles => {
            let handler = CandleBuilder::new(cfg.candles.clone(), t.candles());
            stage::run(
                settings,
                cfg.options(kind, vec![t.ticks()]),
                handler,
                shutdown,
            )
            .await
        }
        StageKind::Forecast => {
            let mut handler = models::stage(
                &cfg.models,
                &cfg.horizons,
                cfg.ensemble,
                true,
                models::Options {
                    live: true,
                    device: cfg.lstm_device,
                },
                &t.forecasts(),
            )?;
            match store {
                Some(store) => {
                    handler = handler.with_checkpoints(CheckpointSettings {
                        store,
                        consumer: cfg.group(kind),
                        every: cfg.checkpoint_every,
                    })
                }
                None => tracing::warn!(
                    "forecast stage without a database: model state lives in memory only and warms up again after a restart"
                ),
            }
            stage::run(
                settings,
                cfg.options(kind, vec![t.candles()]),
                handler,
                shutdown,
            )
            .await
        }
        StageKind::Alert => {
            let Some(store) = store else {
                bail!("the alert stage needs a database (--database-url or DATABASE_URL)")
            };
            let mut settings = alerts::AlertSettings::new(t, cfg.group(kind));
            settings.reload_every = cfg.alerts.reload_every;
            let inputs = settings.inputs();
            alerts::run(
                cfg.cluster.settings(),
                cfg.options(kind, inputs),
                alerts::AlertConfig {
                    settings,
                    rules_file: cfg.alerts.rules_file.clone(),
                    webhooks: cfg.alerts.webhooks.clone(),
                    reload: cfg.alerts.reload.clone(),
                },
                store,
                shutdown,
            )
            .await
        }
        StageKind::Sink => {
            let Some(store) = store else {
                bail!("the sink stage needs a database (--database-url)")
            };
            let group = cfg.group(kind);
            tickcast_sink::check_offsets(settings, &*store, &group, cfg.sink_forget_offsets_ahead)
                .await?;
            let handler = Sink::new(store, group, t.clone())
                .with_retention(cfg.retention.clone(), cfg.retention_every);
            stage::run(
                settings,
                cfg.options(kind, Sink::inputs(t)),
                handler,
                shutdown,
            )
            .await
        }
    }
}
