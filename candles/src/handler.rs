//! The candles stage as a [`Handler`]: decode each tick, push it, dead-letter what cannot count,
//! and resume each partition at its oldest held tick with the state snapshot beside it.

use std::collections::BTreeMap;

use anyhow::Result;

use super::snapshot::{self, SnapshotError};
use super::{CandleBuilder, Pushed};
use tickcast_core::bus::OutRecord;
use tickcast_core::codec::{self, Message as _};
use tickcast_core::deadletter::DeadLetter;
use tickcast_core::domain::Tick;
use tickcast_core::stage::{Effects, Handler, Inbound, Resume};
use tickcast_core::telemetry;

impl CandleBuilder {
    /// Replaces a partition's state by the snapshot committed with its offset (`""`: none, start
    /// fresh). A snapshot that cannot be read also starts fresh, with a warning.
    pub fn restore(
        &mut self,
        topic: &str,
        partition: i32,
        metadata: &str,
    ) -> Result<(), SnapshotError> {
        self.forget(topic, partition);
        if metadata.is_empty() {
            return Ok(());
        }
        let part = snapshot::decode(metadata, &self.specs, self.opts.idle_grace_ms)?;
        self.parts.push(((topic.to_string(), partition), part));
        Ok(())
    }

    /// Drops a partition's state (it was revoked).
    pub fn forget(&mut self, topic: &str, partition: i32) {
        self.parts
            .retain(|((t, p), _)| !(t == topic && *p == partition));
    }

    /// Where a partition resumes: the offset of its oldest tick still held in an open window
    /// (else one past the last offset read), with the state snapshot to commit beside it.
    pub fn resume(&mut self, topic: &str, partition: i32) -> Resume {
        let grace = self.opts.idle_grace_ms;
        let budget = self.opts.state_max_bytes;
        self.part_mut(topic, partition);
        let Some((_, part)) = self
            .parts
            .iter()
            .find(|((t, p), _)| t == topic && *p == partition)
        else {
            return Resume::at(0); // unreachable: part_mut created it
        };
        let offset = part
            .held_offset()
            .map_or(part.next_offset, |h| h.min(part.next_offset));
        let (text, dropped) = snapshot::encode(part, &self.specs, grace, budget);
        if dropped > 0 {
            self.stats.state_truncated += dropped;
            telemetry::CANDLE_STATE_TRUNCATED
                .with_label_values(&["candles"])
                .inc_by(dropped);
            tracing::warn!(
                topic,
                partition,
                dropped,
                budget,
                "candle state over its budget: entries left out of the commit (raise \
                 --candle-state-max-bytes and the broker's offset.metadata.max.bytes)"
            );
        }
        Resume {
            offset,
            metadata: Some(text),
        }
    }
}

fn late_reason(tick: &Tick, late: &[tickcast_core::interval::Interval]) -> String {
    let labels: Vec<String> = late.iter().map(ToString::to_string).collect();
    format!(
        "late tick: window of {} already closed ({})",
        tick.ts_ms,
        labels.join(",")
    )
}

impl Handler for CandleBuilder {
    async fn handle(&mut self, batch: &[Inbound]) -> Result<Effects> {
        let mut closed = Vec::new();
        let mut dead = Vec::new();
        for m in batch {
            let tick: Tick = match codec::decode(&m.payload) {
                Ok(t) => t,
                Err(e) => {
                    // Below the restored offset it was dead-lettered before the restart.
                    if !self.note_offset(&m.topic, m.partition, m.offset) {
                        dead.push(DeadLetter::new(
                            "candles",
                            &m.topic,
                            m.partition,
                            m.offset,
                            e.to_string(),
                            &m.payload,
                        ));
                    }
                    continue;
                }
            };
            let reason = match self.push(&tick, (&m.topic, m.partition, m.offset), &mut closed) {
                Pushed::Late(late) => late_reason(&tick, &late),
                Pushed::Rejected(why) => why,
                Pushed::Accepted | Pushed::Duplicate | Pushed::Replayed => continue,
            };
            dead.push(DeadLetter::new(
                "candles",
                &m.topic,
                m.partition,
                m.offset,
                reason,
                &m.payload,
            ));
        }
        let mut partitions: Vec<(&str, i32)> = Vec::new();
        for m in batch {
            if !partitions.contains(&(m.topic.as_str(), m.partition)) {
                partitions.push((&m.topic, m.partition));
            }
        }
        let commit: BTreeMap<(String, i32), Resume> = partitions
            .into_iter()
            .map(|(t, p)| ((t.to_string(), p), self.resume(t, p)))
            .collect();
        telemetry::OPEN_WINDOWS
            .with_label_values(&["candles"])
            .set(self.open_windows() as i64);
        let records = closed
            .iter()
            .map(|c| {
                telemetry::CANDLES.with_label_values(&[&c.exchange]).inc();
                OutRecord {
                    topic: self.output_topic.clone(),
                    key: c.key(),
                    payload: codec::encode(c),
                }
            })
            .collect();
        Ok(Effects {
            records,
            dead,
            commit: Some(commit),
        })
    }

    fn restores_state(&self) -> bool {
        true
    }

    fn assigned(&mut self, topic: &str, partition: i32, metadata: &str) {
        if let Err(e) = self.restore(topic, partition, metadata) {
            tracing::warn!(topic, partition, error = %e, "candle state unreadable: starting fresh");
        }
    }

    fn revoked(&mut self, topic: &str, partition: i32) {
        self.forget(topic, partition);
    }
}
