//! `tickcast topics`: create the topics (if missing) and exit.

use anyhow::Result;
use tickcast_core::codec::Topics;

use crate::args::KafkaArgs;

pub async fn run(kafka: KafkaArgs) -> Result<()> {
    let topics = Topics::new(&kafka.topic_prefix);
    kafka.cluster()?.ensure_topics(&topics.all()).await?;
    println!("topics ready: {}", topics.all().join(", "));
    Ok(())
}
