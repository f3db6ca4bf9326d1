//! Command-line interface: subcommands, their flags and the environment variables behind them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use tickcast::{PipelineConfig, StageKind, run_stage};
use tickcast_consumers::store;
use tickcast_consumers::store::retention::Retention;
use tickcast_pipeline::bus::{Cluster, KafkaSettings};
use tickcast_pipeline::candles::CandleOptions;
use tickcast_pipeline::codec::Topics;
use tickcast_pipeline::interval::Interval;
use tickcast_pipeline::shutdown::{self, Shutdown, ShutdownTrigger};

/// Live crypto trades → candles → calibrated forecasts.
#[derive(Debug, Parser)]
#[command(name = "tickcast", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything in one process: embedded broker, SQLite, simulated market, API.
    Demo(crate::demo::DemoArgs),
    /// Run stream stages (candles, forecast, sink) against Kafka.
    Run(RunArgs),
    /// Stream an exchange's public trades into Kafka.
    Ingest(crate::ingest_cmd::IngestArgs),
    /// Serve a local exchange simulator (any connector's protocol, REST backfill, faults).
    Replay(crate::replay_cmd::ReplayArgs),
    /// Score the forecast models on a candle file, against the naive forecast.
    Backtest(crate::backtest_cmd::BacktestArgs),
    /// Pre-train the LSTM forecaster on candle files and write its checkpoint.
    Train(crate::train_cmd::TrainArgs),
    /// Serve the HTTP API.
    Api(ApiArgs),
    /// Apply database migrations and exit.
    Migrate(DbArgs),
    /// Decode raw exchange frames (one per line) into ticks as JSON lines.
    Decode(crate::decode::DecodeArgs),
    /// Create the topics (if missing) and exit.
    Topics(KafkaArgs),
    /// GET a URL and exit 0 on a 2xx answer, 1 otherwise (for container health checks).
    Healthcheck(HealthcheckArgs),
    /// Print every subcommand's settings: flag, environment variable, default.
    ConfigReference(ConfigReferenceArgs),
}

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The URL to check, e.g. http://127.0.0.1:8080/readyz.
    #[arg(default_value = "http://127.0.0.1:8080/readyz")]
    pub url: String,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 3.0)]
    pub timeout_secs: f64,
}

#[derive(Debug, Clone, Args)]
pub struct ConfigReferenceArgs {
    /// One JSON object per setting instead of a Markdown table.
    #[arg(long)]
    pub json: bool,
}

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
    pub properties: Vec<crate::config_file::KafkaProperty>,
    /// Config file (TOML): a `[kafka]` table of librdkafka properties, and `tickcast ingest`'s
    /// `[ingest]` feeds.
    #[arg(long, env = "TICKCAST_CONFIG")]
    pub config: Option<std::path::PathBuf>,
}

impl KafkaArgs {
    /// The cluster, with the properties of the config file, the environment and the flags.
    pub fn cluster(&self) -> Result<Cluster> {
        self.cluster_with(&crate::config_file::load(self.config.as_ref())?)
    }

    /// [`KafkaArgs::cluster`] with the config file already read.
    pub fn cluster_with(&self, file: &crate::config_file::ConfigFile) -> Result<Cluster> {
        let mut s = KafkaSettings::new(&self.bootstrap);
        s.partitions = self.partitions;
        s.replication = self.replication;
        for (k, v) in
            crate::config_file::kafka_properties(file, std::env::vars(), &self.properties)?
        {
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

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Stages to run in this process.
    #[arg(long, env = "TICKCAST_STAGES", value_delimiter = ',', required = true)]
    pub stages: Vec<StageKind>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Database for the sink (required with `--stages sink`). TLS:
    /// `?sslmode=verify-full&sslrootcert=ca.pem`. `DATABASE_URL_FILE` reads the URL from a file,
    /// libpq's `PGPASSFILE` gives the password apart.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    #[command(flatten)]
    pub stage: StageArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
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
            if let Err(e) = tickcast_pipeline::telemetry::serve_metrics(listener, signal).await {
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
    #[arg(long, env = "TICKCAST_MODELS", value_delimiter = ',', default_value = tickcast::models::DEFAULT)]
    pub models: Vec<String>,
    /// Do not publish the `ensemble` forecast.
    #[arg(long, env = "TICKCAST_NO_ENSEMBLE")]
    pub no_ensemble: bool,
    /// The LSTM's device: `flex` (CPU) or `wgpu` (GPU; needs a build with `--features wgpu`,
    /// the `tickcast:gpu` image; falls back to `flex` with a warning when the build lacks it or
    /// no adapter works).
    #[arg(long, env = "TICKCAST_LSTM_DEVICE", default_value = "flex")]
    pub lstm_device: tickcast_lstm::DeviceChoice,
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
        tickcast::models::check(&self.models, !self.no_ensemble)?;
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
            let mut w = tickcast_consumers::alerts::WebhookSettings::new(
                "default",
                url.clone(),
                tickcast_consumers::alerts::Secret::new(self.alert_webhook_secret.clone()),
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

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Address to listen on.
    #[arg(long, env = "TICKCAST_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Serve no live websocket stream and do not check the broker in /readyz (the API then
    /// needs only the database).
    #[arg(long, env = "TICKCAST_API_NO_LIVE")]
    pub no_live: bool,
    /// Bearer token that authorises mutations (alert rules), at least 16 characters. Unset:
    /// mutations are refused. Never logged.
    #[arg(long, env = "TICKCAST_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// File holding the API token (a Docker or Kubernetes secret), instead of --api-token.
    #[arg(long, env = "TICKCAST_API_TOKEN_FILE")]
    pub api_token_file: Option<std::path::PathBuf>,
    /// How long answers of /api/v1/forecasts/latest are reused, in milliseconds (0: never).
    #[arg(long, env = "TICKCAST_LATEST_CACHE_MS", default_value_t = 500)]
    pub latest_cache_ms: u64,
    /// Consumer group prefix (the live stream's group is `<prefix>api-live-<pid>-…`).
    #[arg(long, env = "TICKCAST_GROUP_PREFIX", default_value = "tickcast-")]
    pub group_prefix: String,
    /// Milliseconds a client may take to send a request's headers (also how long an idle
    /// kept-alive connection stays open); the connection is closed beyond.
    #[arg(long, env = "TICKCAST_API_HEADER_TIMEOUT_MS", default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub api_header_timeout_ms: u64,
    /// Most connections served at once, websocket streams among them; more are answered 503.
    #[arg(long, env = "TICKCAST_API_MAX_CONNECTIONS", default_value_t = 512,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub api_max_connections: u64,
    /// Most live websocket streams open at once; more are answered 503.
    #[arg(long, env = "TICKCAST_API_MAX_STREAMS", default_value_t = 256,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub api_max_streams: u64,
    /// Origins besides the API's own whose pages may open the live stream, comma-separated
    /// (e.g. `https://grafana.example.com`); requests without an Origin header are always allowed.
    #[arg(long, env = "TICKCAST_API_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub api_allowed_origins: Vec<String>,
    /// Seconds between the server's pings on the live stream; a client silent for three is closed.
    #[arg(long, env = "TICKCAST_API_STREAM_PING_SECS", default_value_t = 20,
        value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub api_stream_ping_secs: u64,
}

impl ApiArgs {
    /// The connection and stream limits the flags ask for; a bad origin is an error naming it.
    pub fn limits(&self) -> Result<(tickcast_api::Limits, tickcast_api::stream::StreamLimits)> {
        let origins = tickcast_api::origin::AllowList::parse(&self.api_allowed_origins)
            .map_err(|e| anyhow::anyhow!("--api-allowed-origins: {e}"))?;
        let limits = tickcast_api::Limits {
            header_timeout: Duration::from_millis(self.api_header_timeout_ms),
            max_connections: usize::try_from(self.api_max_connections)?,
            ..tickcast_api::Limits::default()
        };
        let stream = tickcast_api::stream::StreamLimits {
            max_streams: usize::try_from(self.api_max_streams)?,
            ping_every: Duration::from_secs(self.api_stream_ping_secs),
            origins,
        };
        Ok((limits, stream))
    }
}

/// Fires the returned signal on Ctrl-C or SIGTERM.
pub fn shutdown_on_signals() -> (Arc<ShutdownTrigger>, Shutdown) {
    let (trigger, signal) = shutdown::channel();
    let trigger = Arc::new(trigger);
    let t = trigger.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        t.fire();
                        return;
                    }
                };
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        t.fire();
    });
    (trigger, signal)
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Run(args) => run_stages(args).await,
        Command::Ingest(args) => crate::ingest_cmd::run(args).await,
        Command::Replay(args) => crate::replay_cmd::run(args).await,
        Command::Backtest(args) => crate::backtest_cmd::run(args),
        Command::Train(args) => crate::train_cmd::run(args),
        Command::Api(args) => api(args).await,
        Command::Decode(args) => crate::decode::run(args),
        Command::Topics(kafka) => {
            let topics = Topics::new(&kafka.topic_prefix);
            kafka.cluster()?.ensure_topics(&topics.all()).await?;
            println!("topics ready: {}", topics.all().join(", "));
            Ok(())
        }
        Command::Healthcheck(args) => healthcheck(&args).await,
        Command::ConfigReference(args) => {
            print!("{}", crate::reference::render(args.json));
            Ok(())
        }
        Command::Migrate(db) => {
            let s = store::open(&db.database_url).await?;
            println!("migrations applied ({})", s.backend());
            Ok(())
        }
    }
}

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

async fn healthcheck(args: &HealthcheckArgs) -> Result<()> {
    let timeout = Duration::from_secs_f64(args.timeout_secs.clamp(0.1, 300.0));
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let resp = client
        .get(&args.url)
        .send()
        .await
        .with_context(|| format!("GET {}", args.url))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        bail!("GET {}: {}", args.url, resp.status())
    }
}

async fn run_stages(args: RunArgs) -> Result<()> {
    let topics = Topics::new(&args.kafka.topic_prefix);
    let cluster = args.kafka.cluster()?;
    cluster.ensure_topics(&topics.all()).await?;
    let cfg = args.stage.config(cluster, topics)?;
    let needs_store =
        args.stages.contains(&StageKind::Sink) || args.stages.contains(&StageKind::Alert);
    let wants_store = needs_store || args.stages.contains(&StageKind::Forecast);
    let (_trigger, signal) = shutdown_on_signals();
    let store = match &args.database_url {
        Some(url) if wants_store => Some(store::open_waiting(url, &mut signal.clone()).await?),
        None if needs_store => bail!("--stages sink and alert need --database-url or DATABASE_URL"),
        _ => None,
    };
    args.metrics.spawn(signal.clone()).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for kind in args.stages {
        let (cfg, store, signal) = (cfg.clone(), store.clone(), signal.clone());
        tasks.spawn(async move { run_stage(kind, &cfg, store, signal).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.context("stage task panicked")??;
    }
    Ok(())
}

async fn api(args: ApiArgs) -> Result<()> {
    let token = api_token(args.api_token.as_deref(), args.api_token_file.as_deref())?;
    let (limits, stream_limits) = args.limits()?;
    let (_trigger, signal) = shutdown_on_signals();
    let store = store::open_waiting(&args.db.database_url, &mut signal.clone()).await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    println!("tickcast API at http://{}", listener.local_addr()?);
    let mut state = tickcast_api::AppState::new(store)
        .with_token(token.as_deref())
        .with_latest_ttl(Duration::from_millis(args.latest_cache_ms))
        .with_limits(limits)
        .with_stream_limits(stream_limits);
    if !args.no_live {
        let cluster = args.kafka.cluster()?;
        let hub = tickcast_api::live::Hub::new(4096);
        hub.follow_kafka(
            cluster.settings(),
            &Topics::new(&args.kafka.topic_prefix),
            &args.group_prefix,
            signal.clone(),
        )?;
        state = state.with_live(hub).with_broker(cluster.settings().clone());
    }
    tickcast_api::serve(listener, state, signal).await
}
