//! Forecast-threshold alerting: rules evaluated on forecasts (and on the candles that close
//! their target bars), Prometheus-style state machines with `for`, hysteresis and cooldown,
//! one event per transition with a deterministic id, delivered to `tickcast.alerts.v1`, the
//! store (`alert_events`) and signed webhooks.
//!
//! Layout:
//! - [`rule`] — [`Rule`], [`RuleSet`]: the rule format (JSON and YAML), validation that names
//!   the field; defined beside the domain types (`tickcast_core::alert_rule`), below the
//!   store that keeps rules.
//! - [`machine`] — one instance's state machine (inactive → pending → firing → resolved).
//! - [`engine`] — rules × series: evaluations, remembered forecast bands, deterministic ids.
//! - [`stage`] — the stage-runner [`Handler`](tickcast_core::stage::Handler) with
//!   checkpoints and rule reloads.
//! - [`webhook`] — the webhook outbox deliverer: HMAC signatures, retries, dead letters.
//! - [`metrics`] — alert counters.
//!
//! [`run`] wires them: rule file → store, one deliverer per webhook, the stage.

pub mod engine;
pub mod machine;
pub mod metrics;
pub mod stage;
pub use tickcast_core::alert_rule as rule;
pub mod webhook;

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use tickcast_core::bus::KafkaSettings;
use tickcast_core::shutdown::Shutdown;
use tickcast_core::stage::StageOptions;

pub use rule::{Rule, RuleError, RuleSet, RuleSpec};
pub use stage::{AlertSettings, AlertStage, ReloadTrigger, ReloadWatch, reload_channel};
/// One alert state transition, as published on `tickcast.alerts.v1`, stored in
/// `alert_events` and posted to webhooks.
pub use tickcast_core::domain::{Alert as AlertEvent, AlertState};
pub use webhook::{Deliverer, Secret, WebhookSettings};

use tickcast_store::AlertStore;

/// Everything the alert stage needs besides Kafka and the store.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    pub settings: AlertSettings,
    /// A YAML rule file synced into the store at start-up (see [`load_rule_file`]).
    pub rules_file: Option<std::path::PathBuf>,
    pub webhooks: Vec<WebhookSettings>,
    /// Reload the rules at once when signalled (an API in the same process).
    pub reload: Option<ReloadWatch>,
}

/// Reads and validates a rule file and makes it the store's `file` rules. Returns how many
/// rules it holds.
pub async fn load_rule_file(store: &dyn AlertStore, path: &Path) -> Result<usize> {
    let set = RuleSet::from_yaml_file(path)?;
    store
        .replace_file_rules(&set.rules, tickcast_core::now_ms())
        .await
        .with_context(|| format!("storing the rules of {}", path.display()))?;
    tracing::info!(file = %path.display(), rules = set.rules.len(), "alert rules read from file");
    Ok(set.rules.len())
}

/// Runs the alert stage until `shutdown`: syncs the rule file into the store, starts one
/// webhook deliverer per endpoint, runs the stage over `opts.inputs` (use
/// [`AlertSettings::inputs`]), then stops the deliverers.
pub async fn run(
    kafka: &KafkaSettings,
    opts: StageOptions,
    cfg: AlertConfig,
    store: Arc<dyn AlertStore>,
    shutdown: Shutdown,
) -> Result<()> {
    if let Some(path) = &cfg.rules_file {
        load_rule_file(store.as_ref(), path).await?;
    }
    let mut handler = AlertStage::new(cfg.settings, store.clone());
    if let Some(r) = cfg.reload {
        handler = handler.with_reload_signal(r);
    }
    let mut deliverers = tokio::task::JoinSet::new();
    for w in cfg.webhooks {
        let d = Deliverer::new(store.clone(), w)?;
        handler = handler.with_webhook(d.handle());
        deliverers.spawn(d.run(shutdown.clone()));
    }
    let result = tickcast_core::stage::run(kafka, opts, handler, shutdown).await;
    if result.is_err() {
        deliverers.abort_all();
    }
    while deliverers.join_next().await.is_some() {}
    result
}
