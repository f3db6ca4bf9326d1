//! Filling gaps from an exchange's public REST trades endpoint: pages through
//! [`Connector::backfill_path`] / [`Connector::backfill_decode`] until the connector says the
//! range is covered, honouring rate limits (HTTP 429/418 with `Retry-After`).

use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::connectors::{BackfillQuery, Connector};
use tickcast_core::domain::Tick;

/// Pages fetched for one range at most.
const MAX_PAGES: usize = 200;
/// Retries of one page after a rate-limit answer.
const MAX_RETRIES: u32 = 3;

/// A REST client for one exchange.
#[derive(Debug, Clone)]
pub struct RestClient {
    http: reqwest::Client,
    base: String,
    /// Pause between pages, to stay well inside the exchange's request budget.
    pub page_pause: Duration,
}

impl RestClient {
    pub fn new(base: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("tickcast/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the REST client")?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            page_pause: Duration::from_millis(50),
        })
    }

    /// Fetches the trades of `symbol` with ids `from_id..=to_id` (`None`: up to the latest).
    /// Returns every trade the pages contained (the caller filters and de-duplicates).
    pub async fn fetch(
        &self,
        connector: &dyn Connector,
        symbol: &str,
        from_id: u64,
        to_id: Option<u64>,
        after_ms: i64,
    ) -> Result<Vec<Tick>> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for page in 0..MAX_PAGES {
            let q = BackfillQuery {
                symbol,
                from_id,
                to_id,
                after_ms,
                cursor: cursor.as_deref(),
            };
            let Some(path) = connector.backfill_path(&q) else {
                bail!("{} has no REST backfill", connector.info().name);
            };
            if page > 0 {
                tokio::time::sleep(self.page_pause).await;
            }
            let body = self.get(&path).await?;
            let next = connector
                .backfill_decode(&q, &body, tickcast_core::now_ms(), &mut out)
                .with_context(|| format!("decoding {path}"))?;
            match next {
                Some(c) if Some(c.as_str()) != cursor.as_deref() => cursor = Some(c),
                _ => return Ok(out),
            }
        }
        tracing::warn!(
            symbol,
            from_id,
            ?to_id,
            "backfill stopped after {MAX_PAGES} pages"
        );
        Ok(out)
    }

    async fn get(&self, path: &str) -> Result<String> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            let resp = self
                .http
                .get(&url)
                .send()
                .await
                .with_context(|| format!("GET {url}"))?;
            let status = resp.status();
            if (status.as_u16() == 429 || status.as_u16() == 418) && attempt < MAX_RETRIES {
                let wait = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map_or(Duration::from_secs(1 << attempt), Duration::from_secs)
                    .min(Duration::from_secs(30));
                tracing::warn!(%url, ?wait, "rate limited; waiting");
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            let body = resp
                .text()
                .await
                .with_context(|| format!("reading {url}"))?;
            if !status.is_success() {
                let shown: String = body.chars().take(200).collect();
                bail!("GET {url}: {status}: {shown}");
            }
            return Ok(body);
        }
    }
}
