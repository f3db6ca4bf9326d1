//! The feed core's gap work: filling gaps in consecutive trade ids from the exchange's REST
//! endpoint once their grace period is over, retrying what is still missing, and catching up
//! quiet symbols after a reconnect.

use std::collections::HashSet;

use anyhow::Result;
use tokio::time::Instant;

use super::backfill::RestClient;
use super::tracker::{Admit, Gap, Tracker};
use super::{Core, GAP_ATTEMPTS};
use tickcast_core::domain::Tick;
use tickcast_core::telemetry;

impl Core {
    /// Fills the gaps whose grace period is over.
    pub(super) async fn fill_gaps(&mut self, now: Instant) -> Result<()> {
        let due = now
            .checked_sub(self.opts.gap_grace)
            .unwrap_or(now)
            .into_std();
        let gaps = self.tracker.take_due(due);
        let clipped = std::mem::take(&mut self.tracker.clipped);
        let counts = telemetry::FEED_GAP_TRADES.clone();
        counts
            .with_label_values(&[self.name, "unfilled"])
            .inc_by(clipped);
        for gap in gaps {
            if gap.attempts == 0 {
                telemetry::FEED_GAPS.with_label_values(&[self.name]).inc();
                counts
                    .with_label_values(&[self.name, "missing"])
                    .inc_by(gap.len());
            }
            let Some(rest) = self.rest.clone() else {
                counts
                    .with_label_values(&[self.name, "unfilled"])
                    .inc_by(gap.len());
                continue;
            };
            self.fill_one(&rest, gap).await?;
        }
        let released = self.release_held();
        self.publish(released, Vec::new()).await
    }

    /// Routes one admitted trade so that the ticks topic carries each symbol's trades in id
    /// order and a backfill is not late for the candles stage: a new trade of a symbol with
    /// ids missing before it, and any trade of a symbol with trades already held, is held
    /// until the symbol's gaps are filled or given up; everything else passes to `out`. Only
    /// feeds that backfill (consecutive ids) hold trades.
    pub(super) fn pass_in_order(&mut self, t: Tick, admit: Admit, out: &mut Vec<Tick>) {
        let hold = match admit {
            Admit::Duplicate => return,
            Admit::Filled => self.held.contains_key(&t.symbol),
            Admit::New => {
                self.rest.is_some()
                    && (self.tracker.has_gap(&t.symbol) || self.held.contains_key(&t.symbol))
            }
        };
        if hold {
            self.held_count += 1;
            self.held.entry(t.symbol.clone()).or_default().push(t);
        } else {
            out.push(t);
        }
    }

    /// The held trades of symbols with no gap left, in order; all of them once more than
    /// `max_buffered_ticks` are held (the gap's trades then arrive late, and the candles stage
    /// dead-letters them).
    pub(super) fn release_held(&mut self) -> Vec<Tick> {
        if self.held.is_empty() {
            return Vec::new();
        }
        let all = self.held_count > self.opts.max_buffered_ticks;
        if all {
            tracing::warn!(
                feed = self.name,
                held = self.held_count,
                "too many trades held behind gaps; publishing them before the gaps are filled"
            );
        }
        let ready: Vec<String> = self
            .held
            .keys()
            .filter(|s| all || !self.tracker.has_gap(s))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for s in ready {
            if let Some(mut ticks) = self.held.remove(&s) {
                self.held_count -= ticks.len();
                // Fills join the held trades in the order they came: put them in id order.
                ticks.sort_by_key(|t| t.trade_id.parse::<u64>().unwrap_or(u64::MAX));
                out.extend(ticks);
            }
        }
        out
    }

    async fn fill_one(&mut self, rest: &RestClient, gap: Gap) -> Result<()> {
        let mut want: HashSet<u64> = (gap.from..=gap.to).collect();
        let fetched = rest
            .fetch(
                &*self.connector,
                &gap.symbol,
                gap.from,
                Some(gap.to),
                gap.after_ms,
            )
            .await;
        let filled = match fetched {
            Ok(ticks) => {
                let now = std::time::Instant::now();
                let mut out = Vec::new();
                for t in ticks.into_iter().filter(|t| t.symbol == gap.symbol) {
                    let inside = t
                        .trade_id
                        .parse::<u64>()
                        .ok()
                        .filter(|id| want.contains(id));
                    let admit = match inside {
                        Some(id) => Tracker::admit_fill(&mut want, id),
                        None => self.admit(&t, now),
                    };
                    self.pass_in_order(t, admit, &mut out);
                }
                out
            }
            Err(e) => {
                tracing::warn!(feed = self.name, symbol = %gap.symbol, from = gap.from, to = gap.to, error = %format!("{e:#}"), "backfill failed");
                Vec::new()
            }
        };
        let n_filled = gap.len() - want.len() as u64;
        telemetry::FEED_GAP_TRADES
            .with_label_values(&[self.name, "filled"])
            .inc_by(n_filled);
        if n_filled > 0 {
            tracing::info!(feed = self.name, symbol = %gap.symbol, from = gap.from, to = gap.to, filled = n_filled, "gap filled from REST");
        }
        self.publish(filled, Vec::new()).await?;
        if want.is_empty() {
            return Ok(());
        }
        if gap.attempts + 1 >= GAP_ATTEMPTS {
            tracing::warn!(feed = self.name, symbol = %gap.symbol, missing = want.len(), "giving up on a gap");
            telemetry::FEED_GAP_TRADES
                .with_label_values(&[self.name, "unfilled"])
                .inc_by(want.len() as u64);
            return Ok(());
        }
        for (from, to) in runs(want) {
            self.tracker.restore(Gap {
                from,
                to,
                noticed: std::time::Instant::now(),
                attempts: gap.attempts + 1,
                ..gap.clone()
            });
        }
        Ok(())
    }

    /// After a reconnect: symbols without a trade since may have missed some at the end.
    pub(super) async fn catch_up(&mut self) -> Result<()> {
        let Some(rest) = self.rest.clone() else {
            return Ok(());
        };
        for (symbol, next, after_ms) in self.tracker.quiet_since_reconnect() {
            match rest
                .fetch(&*self.connector, &symbol, next, None, after_ms)
                .await
            {
                Ok(ticks) => {
                    let now = std::time::Instant::now();
                    let mut new: Vec<Tick> = Vec::new();
                    for t in ticks.into_iter().filter(|t| t.symbol == symbol) {
                        let admit = self.admit(&t, now);
                        self.pass_in_order(t, admit, &mut new);
                    }
                    if !new.is_empty() {
                        tracing::info!(feed = self.name, %symbol, trades = new.len(), "caught up after reconnect");
                        telemetry::FEED_GAP_TRADES
                            .with_label_values(&[self.name, "filled"])
                            .inc_by(new.len() as u64);
                    }
                    self.publish(new, Vec::new()).await?;
                }
                Err(e) => {
                    tracing::warn!(feed = self.name, %symbol, error = %format!("{e:#}"), "catch-up failed")
                }
            }
        }
        Ok(())
    }
}

/// Sorted ids → runs of consecutive ids.
fn runs(ids: HashSet<u64>) -> Vec<(u64, u64)> {
    let mut v: Vec<u64> = ids.into_iter().collect();
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for id in v {
        match out.last_mut() {
            Some((_, to)) if *to + 1 == id => *to = id,
            _ => out.push((id, id)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_group_consecutive_ids() {
        let ids: HashSet<u64> = [9, 3, 4, 5, 7].into_iter().collect();
        assert_eq!(runs(ids), vec![(3, 5), (7, 7), (9, 9)]);
    }
}
