//! `tickcast healthcheck`: GET a URL and exit 0 on a 2xx answer, 1 otherwise (for container
//! health checks).

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The URL to check, e.g. http://127.0.0.1:8080/readyz.
    #[arg(default_value = "http://127.0.0.1:8080/readyz")]
    pub url: String,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 3.0)]
    pub timeout_secs: f64,
}

pub async fn run(args: HealthcheckArgs) -> Result<()> {
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
