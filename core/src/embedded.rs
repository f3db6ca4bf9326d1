//! The embedded broker: librdkafka's in-process mock cluster, reachable through an ordinary
//! `bootstrap.servers` string, so embedded mode runs exactly the production Kafka code.
//!
//! Quirks (see FINDINGS): no admin API (topics are created through the mock API), everything is
//! kept in memory, and the first group join waits `group.initial.rebalance.delay.ms` (3 s) unless
//! it is set to 0 through the mock handle, which this module does.
#![allow(unsafe_code)]

use std::ffi::CStr;

use anyhow::{Context as _, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::bindings as rdsys;
use rdkafka::producer::{BaseProducer, Producer as _};

/// An in-process Kafka-protocol broker that lives as long as this value.
pub struct EmbeddedBroker {
    // The mock cluster belongs to this client handle and dies with it.
    handle: BaseProducer,
    bootstrap: String,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}

impl EmbeddedBroker {
    /// Starts a mock cluster with `brokers` brokers.
    pub fn start(brokers: u32) -> Result<Self> {
        let handle: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", brokers.to_string())
            .create()
            .context("starting the embedded broker")?;
        // SAFETY: the handle is a live client created with test.mock.num.brokers, so it owns a
        // mock cluster; the pointer is only used while `handle` is alive (it is owned by self).
        let bootstrap = unsafe {
            let mcluster = rdsys::rd_kafka_handle_mock_cluster(handle.client().native_ptr());
            if mcluster.is_null() {
                bail!("librdkafka did not create a mock cluster");
            }
            rdsys::rd_kafka_mock_group_initial_rebalance_delay_ms(mcluster, 0);
            CStr::from_ptr(rdsys::rd_kafka_mock_cluster_bootstraps(mcluster))
                .to_string_lossy()
                .into_owned()
        };
        tracing::info!(%bootstrap, "embedded broker started");
        Ok(Self { handle, bootstrap })
    }

    /// The `bootstrap.servers` value for clients.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Creates a topic (a no-op if it exists with the same layout).
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        let cluster = self
            .handle
            .client()
            .mock_cluster()
            .context("mock cluster handle")?;
        cluster
            .create_topic(name, partitions, 1)
            .with_context(|| format!("creating topic {name} on the embedded broker"))
    }
}
