//! Dead letters: inputs a stage could not process, with the reason, produced to
//! `tickcast.deadletter.v1` so nothing is lost and the stage goes on.

use serde::{Deserialize, Serialize};

use crate::bus::OutRecord;

/// A message that could not be processed.
///
/// ```json
/// {"v":1,"stage":"candles","source":"tickcast.ticks.v1","partition":0,"offset":17,
///  "reason":"invalid field `price`: 0 is not > 0","payload":"{\"v\":1,…}"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetter {
    pub v: u32,
    pub stage: String,
    /// Topic (or feed, for ingest) the input came from.
    pub source: String,
    pub partition: i32,
    pub offset: i64,
    pub reason: String,
    /// The input, lossily decoded as UTF-8.
    pub payload: String,
}

impl DeadLetter {
    pub fn new(
        stage: &str,
        source: &str,
        partition: i32,
        offset: i64,
        reason: impl Into<String>,
        payload: &[u8],
    ) -> Self {
        let dl = Self::quiet(stage, source, partition, offset, reason, payload);
        tracing::warn!(stage, source, partition, offset, reason = %dl.reason, "dead letter");
        dl
    }

    /// Like [`DeadLetter::new`] without the log line, for callers that rate-limit their logs.
    pub fn quiet(
        stage: &str,
        source: &str,
        partition: i32,
        offset: i64,
        reason: impl Into<String>,
        payload: &[u8],
    ) -> Self {
        let reason = reason.into();
        Self {
            v: crate::domain::SCHEMA_VERSION,
            stage: stage.to_string(),
            source: source.to_string(),
            partition,
            offset,
            reason,
            payload: String::from_utf8_lossy(payload).into_owned(),
        }
    }

    pub fn into_record(self, topic: &str) -> OutRecord {
        OutRecord {
            topic: topic.into(),
            key: format!("{}:{}", self.stage, self.source).into(),
            payload: serde_json::to_vec(&self).unwrap_or_default(),
        }
    }
}
