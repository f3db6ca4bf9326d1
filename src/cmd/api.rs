//! `tickcast api`: the HTTP API (and its live websocket stream, fed from Kafka) over the
//! database, until Ctrl-C or SIGTERM.

use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use tickcast_core::codec::Topics;
use tickcast_store as store;

use crate::args::{DbArgs, KafkaArgs, api_token};
use crate::signals::shutdown_on_signals;

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

pub async fn run(args: ApiArgs) -> Result<()> {
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
