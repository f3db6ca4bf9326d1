//! The argument groups and argument rules several subcommands share, each defined once: how to
//! reach Kafka ([`KafkaArgs`]), the database ([`DbArgs`]), the metrics listener
//! ([`MetricsArgs`]), the stream stages' tuning ([`StageArgs`]), the event-time window of a
//! trade ([`EventWindowArgs`]) and the API token ([`api_token`]). Nothing here knows the
//! subcommands (`crate::cmd`) that use it.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use tickcast::PipelineConfig;
use tickcast_candles::CandleOptions;
use tickcast_core::bus::{Cluster, KafkaSettings};
use tickcast_core::codec::Topics;
use tickcast_core::domain::EventWindow;
use tickcast_core::interval::Interval;
use tickcast_core::shutdown::Shutdown;
use tickcast_store::retention::Retention;

use crate::config::file::{self as config_file, ConfigFile, KafkaProperty};

/// How to reach Kafka and name topics.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "TICKCAST_KAFKA_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap: String,
    /// Partitions for topics created at start-up.
    #[arg(long, env = "TICKCAST_KAFKA_PARTITIONS", default_value_t = 3)]
    pub partitions: i32,
    /// Replication factor for topics created at start-up.
    #[arg(long, env = "TICKCAST_KAFKA_REPLICATION", default_value_t = 1)]
    pub replication: i32,
    /// Prefix for every topic name.
    #[arg(long, env = "TICKCAST_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,
    /// A librdkafka property for every Kafka client, `NAME=VALUE` (repeatable), e.g.
    /// `security.protocol=SASL_SSL`. Also from the config file's `[kafka]` table and from
    /// `TICKCAST_KAFKA_PROPERTY_<NAME>` variables (`sasl.username` →
    /// `TICKCAST_KAFKA_PROPERTY_SASL_USERNAME`; a `_FILE` suffix reads the value from a file).
    /// Secrets belong in those files, not on the command line.
    #[arg(long = "kafka-property", value_name = "NAME=VALUE")]
    pub properties: Vec<KafkaProperty>,
    /// Config file (TOML): a `[kafka]` table of librdkafka properties, and `tickcast ingest`'s
    /// `[ingest]` feeds.
    #[arg(long, env = "TICKCAST_CONFIG")]
    pub config: Option<std::path::PathBuf>,
}

impl KafkaArgs {
    /// The cluster, with the properties of the config file, the environment and the flags.
    pub fn cluster(&self) -> Result<Cluster> {
        self.cluster_with(&config_file::load(self.config.as_ref())?)
    }

    /// [`KafkaArgs::cluster`] with the config file already read.
    pub fn cluster_with(&self, file: &ConfigFile) -> Result<Cluster> {
        let mut s = KafkaSettings::new(&self.bootstrap);
        s.partitions = self.partitions;
        s.replication = self.replication;
        for (k, v) in config_file::kafka_properties(file, std::env::vars(), &self.properties)? {
            s.set_property(k, v);
        }
        Ok(Cluster::Kafka(s))
    }
}

/// The database.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// `postgres://user@host/db` or `sqlite:path.db`. TLS: `?sslmode=verify-full&sslrootcert=ca.pem`
    /// (also `sslcert`, `sslkey`). `DATABASE_URL_FILE` reads the URL from a file; libpq's
    /// `PGPASSFILE` gives the password apart.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
}

/// Where a process without the API serves its Prometheus metrics.
#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Serve `GET /metrics` on this address (e.g. 0.0.0.0:9100); off when unset.
    #[arg(long, env = "TICKCAST_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
}

impl MetricsArgs {
    /// Binds the metrics listener (an error names the address) and serves it until `signal`.
    pub async fn spawn(&self, signal: Shutdown) -> Result<()> {
        let Some(addr) = &self.metrics_addr else {
            return Ok(());
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding --metrics-addr {addr}"))?;
        println!("metrics at http://{}/metrics", listener.local_addr()?);
        tokio::spawn(async move {
            if let Err(e) = tickcast_api::health::serve_metrics(listener, signal).await {
                tracing::error!(error = %format!("{e:#}"), "metrics server stopped");
            }
        });
        Ok(())
    }
}

/// Stage tuning shared by `run` and `demo`.
#[derive(Debug, Clone, Args)]
pub struct StageArgs {
    /// Candle intervals built side by side (e.g. 1s,1m,1h).
    #[arg(
        long,
        alias = "interval",
        env = "TICKCAST_INTERVALS",
        value_delimiter = ',',
        default_value = "1m",
        value_parser = Interval::parse
    )]
    pub intervals: Vec<Interval>,
    /// How late (event time, ms) a tick may arrive and still count in its window.
    #[arg(long, env = "TICKCAST_ALLOWED_LATENESS_MS", default_value_t = 0)]
    pub allowed_lateness_ms: i64,
    /// Most explicit empty candles (trades = 0, OHLC = previous close) per gap; 0: none.
    #[arg(long, env = "TICKCAST_MAX_EMPTY_WINDOWS", default_value_t = CandleOptions::DEFAULT_MAX_EMPTY_WINDOWS)]
    pub max_empty_windows: u32,
    /// How far (ms) the exchange's watermark must pass an idle symbol's window before it
    /// closes; `off`: only a symbol's own ticks close its windows.
    #[arg(long, env = "TICKCAST_IDLE_GRACE_MS", default_value = "60000", value_parser = parse_grace)]
    pub idle_grace_ms: IdleGrace,
    /// Byte budget of the candle state committed with each offset (keep it under the broker's
    /// `offset.metadata.max.bytes`, 4096 by default).
    #[arg(long, env = "TICKCAST_CANDLE_STATE_MAX_BYTES", default_value_t = CandleOptions::DEFAULT_STATE_MAX_BYTES)]
    pub candle_state_max_bytes: usize,
    /// How long (event time, ms) the trade ids of a closed window are remembered, so that a
    /// late copy of a counted trade (a lagging second ingester, a reconnect's re-sends) is
    /// dropped as a duplicate instead of counted late.
    #[arg(
        long,
        env = "TICKCAST_DEDUP_RETENTION_MS",
        default_value_t = CandleOptions::DEFAULT_DEDUP_RETENTION_MS,
        value_parser = clap::value_parser!(i64).range(0..)
    )]
    pub dedup_retention_ms: i64,
    /// Forecast horizons in bars.
    #[arg(
        long,
        env = "TICKCAST_HORIZONS",
        value_delimiter = ',',
        default_value = "1,5,15"
    )]
    pub horizons: Vec<u32>,
    /// Consumer group prefix; groups are `<prefix><stage>`.
    #[arg(long, env = "TICKCAST_GROUP_PREFIX", default_value = "tickcast-")]
    pub group_prefix: String,
    /// Forecasting models (the `ensemble` of them is added unless --no-ensemble).
    #[arg(long, env = "TICKCAST_MODELS", value_delimiter = ',', default_value = tickcast_forecast::models::DEFAULT)]
    pub models: Vec<String>,
    /// Do not publish the `ensemble` forecast.
    #[arg(long, env = "TICKCAST_NO_ENSEMBLE")]
    pub no_ensemble: bool,
    /// The LSTM's device: `flex` (CPU) or `wgpu` (GPU; needs a build with `--features wgpu`,
    /// the `tickcast:gpu` image; falls back to `flex` with a warning when the build lacks it or
    /// no adapter works).
    #[arg(long, env = "TICKCAST_LSTM_DEVICE", default_value = "flex")]
    pub lstm_device: tickcast_forecast::models::lstm::DeviceChoice,
    /// Alert rules (YAML, see monitoring/alerts.example.yaml) synced into the database at
    /// start-up; rules can also be managed through the API.
    #[arg(long, env = "TICKCAST_ALERT_RULES")]
    pub alert_rules: Option<std::path::PathBuf>,
    /// Webhook that receives every alert event (JSON POST, signed with HMAC-SHA256).
    #[arg(long, env = "TICKCAST_ALERT_WEBHOOK_URL")]
    pub alert_webhook_url: Option<String>,
    /// Secret of the webhook signature header `X-Tickcast-Signature: sha256=<hex>`. Never logged.
    /// `TICKCAST_ALERT_WEBHOOK_SECRET_FILE` reads it from a file.
    #[arg(
        long,
        env = "TICKCAST_ALERT_WEBHOOK_SECRET",
        hide_env_values = true,
        default_value = ""
    )]
    pub alert_webhook_secret: String,
    /// Send webhook alerts unsigned when no secret is set (without it, a webhook URL with an
    /// empty secret is refused at start: receivers could not tell our alerts from anyone's).
    #[arg(long, env = "TICKCAST_ALERT_WEBHOOK_UNSIGNED")]
    pub alert_webhook_unsigned: bool,
    /// Tries per event before it becomes a dead letter.
    #[arg(long, env = "TICKCAST_ALERT_WEBHOOK_MAX_TRIES", default_value_t = 8)]
    pub alert_webhook_max_tries: u32,
    /// Backoff after the first failed try, doubling per try.
    #[arg(
        long,
        env = "TICKCAST_ALERT_WEBHOOK_BACKOFF_MS",
        default_value_t = 1000
    )]
    pub alert_webhook_backoff_ms: u64,
    #[arg(
        long,
        env = "TICKCAST_ALERT_WEBHOOK_MAX_BACKOFF_MS",
        default_value_t = 300_000
    )]
    pub alert_webhook_max_backoff_ms: u64,
    /// How often the alert stage re-reads its rules from the database.
    #[arg(long, env = "TICKCAST_ALERT_RELOAD_MS", default_value_t = 5000)]
    pub alert_reload_ms: u64,
    /// Seconds between forecast-stage checkpoints to the database.
    #[arg(long, env = "TICKCAST_CHECKPOINT_SECS", default_value_t = 30.0)]
    pub checkpoint_secs: f64,
    /// When a topic's end on the broker lies below the offset the sink stored in the database
    /// (the topic was recreated), drop the stored offset and write the partition from the
    /// broker's offsets. Without it the sink stops and names the partitions.
    #[arg(long, env = "TICKCAST_SINK_FORGET_OFFSETS_AHEAD")]
    pub sink_forget_offsets_ahead: bool,
    /// How long the sink keeps rows, counted back from the newest bar written:
    /// `forecasts=DAYS` and `INTERVAL=DAYS` for candles, `keep` for no limit (e.g.
    /// `forecasts=30d,1s=7d,1m=365d,1h=keep`). Unlisted: forecasts 30 days; candles below one
    /// minute 7 days, below one hour 365 days, longer kept. `keep-all` keeps everything.
    /// Postgres drops whole time partitions; SQLite deletes in batches.
    #[arg(long, env = "TICKCAST_RETENTION", default_value = "forecasts=30d", value_parser = parse_retention)]
    pub retention: Retention,
}

fn parse_retention(s: &str) -> Result<Retention, String> {
    if s.trim() == "keep-all" {
        return Ok(Retention::keep_all());
    }
    Retention::parse(s)
}

impl StageArgs {
    pub fn config(&self, cluster: Cluster, topics: Topics) -> Result<PipelineConfig> {
        if self.horizons.is_empty() || self.horizons.contains(&0) {
            bail!("--horizons must list bar counts ≥ 1, e.g. 1,5,15");
        }
        let mut cfg = PipelineConfig::new(cluster, topics);
        cfg.candles = CandleOptions::new(self.intervals.iter().copied());
        cfg.candles.allowed_lateness_ms = self.allowed_lateness_ms.max(0);
        cfg.candles.max_empty_windows = self.max_empty_windows;
        cfg.candles.idle_grace_ms = self.idle_grace_ms.0;
        cfg.candles.state_max_bytes = self.candle_state_max_bytes;
        cfg.candles.dedup_retention_ms = self.dedup_retention_ms;
        cfg.horizons = self.horizons.clone();
        cfg.group_prefix = self.group_prefix.clone();
        tickcast_forecast::models::check(&self.models, !self.no_ensemble)?;
        cfg.models = self.models.iter().map(|m| m.trim().to_string()).collect();
        cfg.ensemble = !self.no_ensemble;
        cfg.lstm_device = self.lstm_device;
        if !(self.checkpoint_secs.is_finite() && self.checkpoint_secs > 0.0) {
            bail!("--checkpoint-secs must be a positive number of seconds");
        }
        cfg.checkpoint_every = Duration::from_secs_f64(self.checkpoint_secs);
        cfg.sink_forget_offsets_ahead = self.sink_forget_offsets_ahead;
        cfg.retention = self.retention.clone();
        cfg.alerts.rules_file = self.alert_rules.clone();
        cfg.alerts.reload_every = Duration::from_millis(self.alert_reload_ms.max(100));
        if let Some(url) = self
            .alert_webhook_url
            .as_ref()
            .filter(|u| !u.trim().is_empty())
        {
            if self.alert_webhook_max_tries == 0 {
                bail!("--alert-webhook-max-tries must be at least 1");
            }
            if self.alert_webhook_secret.is_empty() && !self.alert_webhook_unsigned {
                bail!(
                    "--alert-webhook-url is set but the webhook secret is empty, so receivers \
                     could not verify the alerts: set TICKCAST_ALERT_WEBHOOK_SECRET \
                     (--alert-webhook-secret), or pass --alert-webhook-unsigned \
                     (TICKCAST_ALERT_WEBHOOK_UNSIGNED=true) to send them unsigned"
                );
            }
            let mut w = tickcast_alerts::WebhookSettings::new(
                "default",
                url.clone(),
                tickcast_alerts::Secret::new(self.alert_webhook_secret.clone()),
            );
            w.max_tries = self.alert_webhook_max_tries;
            w.backoff_base = Duration::from_millis(self.alert_webhook_backoff_ms);
            w.backoff_max = Duration::from_millis(self.alert_webhook_max_backoff_ms);
            cfg.alerts.webhooks = vec![w];
        }
        Ok(cfg)
    }
}

/// `--idle-grace-ms`: milliseconds, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleGrace(pub Option<i64>);

fn parse_grace(s: &str) -> Result<IdleGrace, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(IdleGrace(None));
    }
    match s.parse::<i64>() {
        Ok(ms) if ms >= 0 => Ok(IdleGrace(Some(ms))),
        _ => Err(format!("`{s}`: expected milliseconds ≥ 0 or `off`")),
    }
}

/// How far a trade's time may lie from its receive time (`tickcast ingest`, `tickcast decode`).
#[derive(Debug, Clone, Args)]
pub struct EventWindowArgs {
    /// Largest lead of a trade's time over its receive time, in milliseconds, or `off`. Trades
    /// further ahead (a time in microseconds, a clock far off) are dead-lettered. Set `off` to
    /// ingest from `tickcast replay --speed` above 1, whose clock runs ahead of the wall.
    #[arg(long, env = "TICKCAST_MAX_CLOCK_SKEW_MS", default_value = "60000", value_parser = parse_ms_or_off)]
    pub max_clock_skew_ms: MsOrOff,
    /// Largest age of a trade when received, in milliseconds, or `off`. Older trades (a time
    /// in seconds lands in 1970) are dead-lettered. Backfilled trades are as old as the outage
    /// they fill, hence the 7-day default.
    #[arg(long, env = "TICKCAST_MAX_TICK_AGE_MS", default_value = "604800000", value_parser = parse_ms_or_off)]
    pub max_tick_age_ms: MsOrOff,
}

impl EventWindowArgs {
    pub fn window(&self) -> EventWindow {
        EventWindow {
            max_age_ms: self.max_tick_age_ms.0,
            max_skew_ms: self.max_clock_skew_ms.0,
        }
    }
}

/// Milliseconds, or `off` (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsOrOff(pub Option<i64>);

pub fn parse_ms_or_off(s: &str) -> Result<MsOrOff, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(MsOrOff(None));
    }
    match s.trim().parse::<i64>() {
        Ok(ms) if ms >= 0 => Ok(MsOrOff(Some(ms))),
        _ => Err(format!("`{s}`: expected milliseconds ≥ 0 or `off`")),
    }
}

/// The longest simulated history `--history-minutes` accepts (`tickcast replay`, `tickcast
/// demo`): ten years.
pub const MAX_HISTORY_MINUTES: i64 = 10 * 366 * 24 * 60;

/// The shortest API token accepted: shorter ones can be guessed.
pub const MIN_API_TOKEN_CHARS: usize = 16;

/// The API token from `--api-token` or the file `--api-token-file` names (surrounding
/// whitespace, a trailing newline among it, dropped), refused when both are given or when it is
/// shorter than [`MIN_API_TOKEN_CHARS`]. `None` (mutations disabled) when neither is set or the
/// token is empty.
pub fn api_token(flag: Option<&str>, file: Option<&std::path::Path>) -> Result<Option<String>> {
    let token = match (flag.filter(|t| !t.trim().is_empty()), file) {
        (Some(_), Some(_)) => bail!("give the API token once: --api-token or --api-token-file"),
        (Some(t), None) => t.trim().to_string(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the API token file {}", path.display()))?
            .trim()
            .to_string(),
        (None, None) => return Ok(None),
    };
    if token.is_empty() {
        return Ok(None);
    }
    let n = token.chars().count();
    if n < MIN_API_TOKEN_CHARS {
        bail!(
            "the API token has {n} characters; at least {MIN_API_TOKEN_CHARS} are needed \
             (for example `openssl rand -hex 16`)"
        );
    }
    Ok(Some(token))
}
