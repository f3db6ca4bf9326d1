//! `tickcast run`: stream stages (candles, forecast, alert, sink) against Kafka, each a task of
//! this process, until Ctrl-C or SIGTERM.

use anyhow::{Context as _, Result, bail};
use clap::Args;
use tickcast::{StageKind, run_stage};
use tickcast_core::codec::Topics;
use tickcast_store as store;

use crate::args::{KafkaArgs, MetricsArgs, StageArgs};
use crate::signals::shutdown_on_signals;

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

pub async fn run(args: RunArgs) -> Result<()> {
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
