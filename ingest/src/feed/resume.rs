//! Where a feed resumes after a restart: the last trade of each symbol already on the ticks
//! topic. Ingest seeds its tracker with them, so the first live trade (or, for a quiet symbol,
//! the catch-up after subscribing) reveals what happened while the process was down, and the
//! gap is filled from REST where ids are consecutive.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Message as _, Offset, TopicPartitionList};

use tickcast_core::bus::KafkaSettings;
use tickcast_core::codec;
use tickcast_core::domain::Tick;

/// Messages read per step back from a partition's end.
const STEP: i64 = 10_000;
/// Messages read per partition at most: a symbol not seen within them starts fresh.
pub const MAX_SCAN: i64 = 1_000_000;

/// The last trade of one symbol on the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastTrade {
    pub id: u64,
    pub ts_ms: i64,
}

/// The newest numeric trade id per symbol of `exchange` among `symbols` on `topic`, reading
/// each partition back from its end, [`STEP`] messages at a time, until every symbol is found or
/// [`MAX_SCAN`] messages were read. Blocking: call it off the async runtime.
pub fn last_trades(
    settings: &KafkaSettings,
    topic: &str,
    exchange: &str,
    symbols: &[String],
    timeout: Duration,
) -> Result<HashMap<String, LastTrade>> {
    let consumer: BaseConsumer = settings
        .client_config()
        .set("group.id", "tickcast-ingest-resume")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .context("creating the resume reader")?;
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| format!("reading metadata of {topic}"))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let wanted: HashSet<&str> = symbols.iter().map(String::as_str).collect();
    let mut found: HashMap<String, LastTrade> = HashMap::new();
    for partition in partitions {
        let (low, high) = tickcast_core::bus::watermarks(&consumer, topic, partition, timeout)
            .with_context(|| format!("reading the offsets of {topic}/{partition}"))?;
        let mut end = high;
        // Symbols found in this partition: newer windows are read first, so the first window
        // that has a symbol holds its newest trade.
        let mut here: HashSet<String> = HashSet::new();
        while end > low && high - end < MAX_SCAN && found.len() < wanted.len() {
            let start = (end - STEP).max(low);
            let mut window: HashMap<String, LastTrade> = HashMap::new();
            read_range(&consumer, topic, partition, start, end, timeout, |t| {
                if t.exchange != exchange || !wanted.contains(t.symbol.as_str()) {
                    return;
                }
                let Ok(id) = t.trade_id.parse::<u64>() else {
                    return;
                };
                let e = window
                    .entry(t.symbol)
                    .or_insert(LastTrade { id, ts_ms: t.ts_ms });
                if id > e.id {
                    *e = LastTrade { id, ts_ms: t.ts_ms };
                }
            })?;
            for (symbol, last) in window {
                if here.contains(&symbol) {
                    continue;
                }
                here.insert(symbol.clone());
                let e = found.entry(symbol).or_insert(last);
                if last.id > e.id {
                    *e = last;
                }
            }
            end = start;
        }
    }
    Ok(found)
}

/// Calls `f` with every tick in `[start, end)` of one partition.
fn read_range(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    start: i64,
    end: i64,
    timeout: Duration,
    mut f: impl FnMut(Tick),
) -> Result<()> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(start))?;
    consumer
        .assign(&tpl)
        .context("assigning a partition to read")?;
    let deadline = Instant::now() + timeout;
    let mut next = start;
    while next < end {
        if Instant::now() > deadline {
            anyhow::bail!(
                "reading {topic}/{partition} offsets {start}..{end}: timed out at {next}"
            );
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => return Err(e).context("reading the ticks topic"),
            Some(Ok(m)) => {
                next = m.offset() + 1;
                if m.offset() >= end {
                    break;
                }
                if let Ok(t) = codec::decode::<Tick>(m.payload().unwrap_or_default()) {
                    f(t);
                }
            }
        }
    }
    Ok(())
}
