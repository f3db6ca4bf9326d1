//! Webhook delivery of alert events: a durable outbox in the store (`alert_deliveries`) and one
//! [`Deliverer`] task per endpoint, so delivery never blocks the stage.
//!
//! - The stage queues every event for every endpoint in the same transaction as its
//!   checkpoint (insert-if-absent by (endpoint, event id)), then wakes the deliverers.
//! - A deliverer claims one due row at a time, oldest first, with a lease that covers that one
//!   try (so a crashed try is retried, and two deliverers — two alert processes — never send
//!   the same row at once however slow the endpoint), POSTs the event's JSON, and records the
//!   outcome:
//!   - 2xx: `delivered`, never sent again;
//!   - a network error, timeout, 408, 429 or 5xx: tried again after an exponential backoff
//!     (`base × 2^(tries − 1)`, capped, with a deterministic per-event jitter of up to −50%)
//!     until `max_tries`;
//!   - any other status (a 4xx no retry can help), or the last try failing: `dead`, with the
//!     error: the dead-letter record, kept in the store (and counted in
//!     `tickcast_dead_letters_total{stage="alert-webhook"}`).
//! - Every request carries `X-Tickcast-Signature: sha256=<hex HMAC-SHA256 of the body>` and
//!   `X-Tickcast-Event-Id`. Receivers deduplicate by the event id: an event is sent again only
//!   when a try's outcome was lost (a crash between the 2xx and its record).
//! - Each endpoint has its own deliverer task, so a slow or dead endpoint holds up no other.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};
use tickcast_core::shutdown::Shutdown;
use tickcast_core::telemetry;
use tokio::sync::Notify;

use tickcast_store::{AlertStore, DeliveryJob, DeliveryOutcome};

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "X-Tickcast-Signature";
/// The header carrying the event id.
pub const EVENT_ID_HEADER: &str = "X-Tickcast-Event-Id";

/// A secret whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature header against the body, in constant time.
pub fn verify(secret: &Secret, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = mac(secret);
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

fn mac(secret: &Secret) -> Hmac<Sha256> {
    use hmac::digest::KeyInit;
    // HMAC takes keys of any length, so this never falls back.
    <Hmac<Sha256> as KeyInit>::new_from_slice(secret.bytes())
        .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()))
}

/// One endpoint.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The endpoint's name in the outbox (stable across restarts: changing it queues events
    /// anew under the new name).
    pub name: String,
    pub url: String,
    pub secret: Secret,
    /// Backoff after the first failed try; doubles per try.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Tries in all (≥ 1) before the delivery is dead.
    pub max_tries: u32,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Longest wait between two looks at the outbox when nothing wakes the deliverer.
    pub poll: Duration,
    /// Tries per pass at most (each claims its own delivery) before the deliverer looks at its
    /// wake-ups and shutdown again.
    pub batch: i64,
}

impl WebhookSettings {
    /// Defaults: 1 s base backoff doubling to at most 5 min, 8 tries, 10 s timeout.
    pub fn new(name: impl Into<String>, url: impl Into<String>, secret: Secret) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            secret,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            max_tries: 8,
            timeout: Duration::from_secs(10),
            poll: Duration::from_secs(1),
            batch: 100,
        }
    }

    /// The wait after the `tries`-th failed try of `event_id`.
    pub fn backoff(&self, event_id: &str, tries: u32) -> Duration {
        let base = self.backoff_base.as_millis() as u64;
        let shift = tries.saturating_sub(1).min(32);
        let full = base
            .saturating_mul(1u64 << shift)
            .min(self.backoff_max.as_millis() as u64);
        // Spread retries of many events: up to half of the wait off, the same for the same
        // event and try.
        let h = Sha256::digest(format!("{event_id}:{tries}").as_bytes());
        let frac = f64::from(u16::from_be_bytes([h[0], h[1]])) / 65_536.0;
        Duration::from_millis(full - (full as f64 * 0.5 * frac) as u64)
    }
}

/// What the stage needs to queue events for an endpoint and wake its deliverer.
#[derive(Debug, Clone)]
pub struct WebhookHandle {
    pub name: String,
    pub wake: Arc<Notify>,
}

/// What one pass over the outbox did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassSummary {
    pub delivered: usize,
    pub retried: usize,
    pub dead: usize,
}

impl PassSummary {
    pub fn tries(&self) -> usize {
        self.delivered + self.retried + self.dead
    }
}

/// Delivers one endpoint's outbox.
#[derive(Debug)]
pub struct Deliverer {
    store: Arc<dyn AlertStore>,
    settings: WebhookSettings,
    client: reqwest::Client,
    wake: Arc<Notify>,
}

/// How one try ended.
enum Try {
    Ok,
    Retryable(String),
    Fatal(String),
}

impl Deliverer {
    pub fn new(store: Arc<dyn AlertStore>, settings: WebhookSettings) -> Result<Self> {
        // Redirects are not followed: the signed body goes to the configured URL only, and a
        // 3xx is a failed try that names where it pointed.
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the webhook HTTP client")?;
        Ok(Self {
            store,
            settings,
            client,
            wake: Arc::new(Notify::new()),
        })
    }

    pub fn handle(&self) -> WebhookHandle {
        WebhookHandle {
            name: self.settings.name.clone(),
            wake: self.wake.clone(),
        }
    }

    /// Tries due deliveries once each, oldest first, up to `batch` of them; each is claimed
    /// just before its try, with a lease for that try alone.
    pub async fn pass(&self) -> Result<PassSummary> {
        let s = &self.settings;
        // The lease outlasts a try, so a slow try is not claimed twice.
        let lease = (s.timeout.as_millis() as i64).saturating_mul(2) + 1_000;
        let mut sum = PassSummary::default();
        for _ in 0..s.batch.max(1) {
            let now = tickcast_core::now_ms();
            let Some(job) = self
                .store
                .claim_deliveries(&s.name, now, lease, 1)
                .await?
                .pop()
            else {
                break;
            };
            let outcome = self.try_once(&job).await;
            let attempts = job.attempts + 1;
            let outcome = match outcome {
                Try::Ok => {
                    sum.delivered += 1;
                    DeliveryOutcome::Delivered { attempts }
                }
                Try::Retryable(error) if (attempts as u32) < s.max_tries => {
                    sum.retried += 1;
                    let wait = s.backoff(&job.event_id, attempts as u32);
                    tracing::debug!(endpoint = %s.name, event = %job.event_id, attempts, error = %error, wait_ms = wait.as_millis() as u64, "webhook try failed; will retry");
                    DeliveryOutcome::Retry {
                        attempts,
                        next_ms: tickcast_core::now_ms() + wait.as_millis() as i64,
                        error,
                    }
                }
                Try::Retryable(error) | Try::Fatal(error) => {
                    sum.dead += 1;
                    tracing::warn!(endpoint = %s.name, event = %job.event_id, attempts, error = %error, "webhook delivery dead");
                    telemetry::DEAD_LETTERS
                        .with_label_values(&["alert-webhook"])
                        .inc();
                    DeliveryOutcome::Dead { attempts, error }
                }
            };
            self.store
                .finish_delivery(&s.name, &job.event_id, &outcome, tickcast_core::now_ms())
                .await?;
        }
        for (n, label) in [
            (sum.delivered, "delivered"),
            (sum.retried, "retry"),
            (sum.dead, "dead"),
        ] {
            if n > 0 {
                super::metrics::WEBHOOK_TRIES
                    .with_label_values(&[label])
                    .inc_by(n as u64);
            }
        }
        Ok(sum)
    }

    async fn try_once(&self, job: &DeliveryJob) -> Try {
        let s = &self.settings;
        let body = job.body.clone().into_bytes();
        let mut req = self
            .client
            .post(&s.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(EVENT_ID_HEADER, &job.event_id);
        // An empty secret means unsigned (the command line allows it only when asked to).
        if !s.secret.bytes().is_empty() {
            req = req.header(SIGNATURE_HEADER, sign(&s.secret, &body));
        }
        let sent = req.body(body).send().await;
        match sent {
            Err(e) => Try::Retryable(format!("request failed: {e}")),
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    Try::Ok
                } else if status.is_redirection() {
                    let to = resp
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("(no Location)")
                        .to_string();
                    tracing::warn!(endpoint = %s.name, %status, location = %to, "webhook redirected: not followed");
                    Try::Retryable(format!("HTTP {status} to {to}: redirects are not followed"))
                } else if status.is_server_error()
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                {
                    Try::Retryable(format!("HTTP {status}"))
                } else {
                    Try::Fatal(format!("HTTP {status}"))
                }
            }
        }
    }

    /// Delivers until `shutdown`: a pass whenever woken by the stage, when the next retry is
    /// due, or every `poll`. Store errors are logged and retried after `poll`.
    pub async fn run(self, mut shutdown: Shutdown) {
        tracing::info!(endpoint = %self.settings.name, "webhook deliverer started");
        loop {
            let wait = match self.pass().await {
                Ok(sum) if sum.tries() as i64 >= self.settings.batch => Duration::ZERO,
                Ok(_) => self.until_next_due().await,
                Err(e) => {
                    tracing::warn!(endpoint = %self.settings.name, error = %e, "webhook outbox");
                    self.settings.poll
                }
            };
            if wait.is_zero() {
                if shutdown.is_fired() {
                    break;
                }
                continue;
            }
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!(endpoint = %self.settings.name, "webhook deliverer stopped");
    }

    async fn until_next_due(&self) -> Duration {
        let poll = self.settings.poll;
        match self.store.next_delivery_ms(&self.settings.name).await {
            Ok(Some(next)) => {
                let ms = (next - tickcast_core::now_ms()).max(1) as u64;
                poll.min(Duration::from_millis(ms))
            }
            _ => poll,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_a_known_vector() {
        // RFC 4231 test case 2.
        let secret = Secret::new("Jefe");
        let sig = sign(&secret, b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify(&secret, b"what do ya want for nothing?", &sig));
        assert!(!verify(&secret, b"what do ya want for nothing!", &sig));
        assert!(!verify(
            &Secret::new("jefe"),
            b"what do ya want for nothing?",
            &sig
        ));
        assert!(!verify(&secret, b"x", "md5=00"));
        assert_eq!(format!("{secret:?}"), "Secret(***)");
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_bounded_jitter() {
        let mut s = WebhookSettings::new("x", "http://127.0.0.1:1/", Secret::new("k"));
        s.backoff_base = Duration::from_millis(1_000);
        s.backoff_max = Duration::from_millis(10_000);
        for (tries, full) in [
            (1, 1_000u64),
            (2, 2_000),
            (3, 4_000),
            (4, 8_000),
            (5, 10_000),
            (40, 10_000),
        ] {
            let d = s.backoff("ev", tries).as_millis() as u64;
            assert!(
                d > full / 2 && d <= full,
                "try {tries}: {d} not in ({}, {full}]",
                full / 2
            );
            assert_eq!(
                s.backoff("ev", tries),
                s.backoff("ev", tries),
                "deterministic"
            );
        }
    }
}
