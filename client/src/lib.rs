//! # skiff-client
//!
//! A pure-Rust Kafka client for Skiff's deterministic simulator (madsim), its real-cluster
//! tests and its benchmarks. It speaks the Kafka wire protocol through `kafka-protocol`, runs
//! on real tokio normally and on madsim's simulated runtime and network under
//! `RUSTFLAGS="--cfg madsim"`, reads no wall clock except record timestamps (which madsim
//! simulates), and draws no randomness: the only seed is the producer's partitioner seed.
//!
//! ```text
//!            Admin            Producer                    Consumer
//!              │        send / send_batch         assign | subscribe, poll, commit
//!              │     (partitioner, sequences)        │            │
//!              │               │                  fetch      group.rs (Join/Sync/
//!              │               │                     │       Heartbeat/OffsetCommit)
//!              └───────────────┴─────────┬───────────┴────────────┘
//!                                        ▼
//!                 Cluster: metadata (brokers, leaders), one Connection per broker
//!                                        ▼
//!          Connection: ApiVersions handshake, framing, pipelined requests by correlation id,
//!                      a timeout on every request
//!                                        ▼
//!                               TCP (tokio or madsim)
//! ```
//!
//! ## Tutorial
//!
//! ```no_run
//! use std::time::Duration;
//! use bytes::Bytes;
//! use skiff_client::{Admin, ClientConfig, Consumer, ConsumerConfig, GroupConfig, Producer, ProducerConfig};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let client = ClientConfig::new(["127.0.0.1:9092"]);
//!
//! // Create a topic and wait until every partition has a leader.
//! let admin = Admin::connect(client.clone()).await?;
//! admin.create_topic("events", 3, 1).await?;
//! admin.wait_for_leaders("events", Duration::from_secs(10)).await?;
//!
//! // Produce: idempotent with acks=all by default; the key picks the partition (murmur2).
//! let producer = Producer::new(admin.cluster().clone(), ProducerConfig::default()).await?;
//! let written = producer
//!     .send("events", None, Some(Bytes::from("key")), Some(Bytes::from("value")))
//!     .await?;
//! println!("written at {}-{}@{}", written.topic, written.partition, written.offset);
//!
//! // Consume as a member of a group, then commit what was read.
//! let mut consumer = Consumer::connect(
//!     client,
//!     ConsumerConfig { group: Some(GroupConfig::new("readers")), ..ConsumerConfig::default() },
//! )
//! .await?;
//! consumer.subscribe(vec!["events".to_string()])?;
//! let records = consumer.poll(Duration::from_secs(5)).await?;
//! println!("read {} records in generation {:?}", records.len(), consumer.generation());
//! consumer.commit().await?;
//! consumer.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! Every operation returns its own error enum ([`ProduceError`], [`ConsumeError`],
//! [`AdminError`]); transport failures ([`ConnectionError`]) are kept apart from broker error
//! codes (`kafka_protocol::error::ResponseError`), because after a timeout a write may or may
//! not have happened.

pub mod accumulator;
pub mod admin;
pub mod assignor;
pub mod cluster;
pub mod connection;
pub mod consumer;
pub mod consumer_protocol;
pub mod error;
pub mod group;
pub mod partitioner;
pub mod producer;
pub mod records;
pub mod sequence;
pub mod versions;
pub mod wire;

pub use admin::{Admin, NewTopic};
pub use cluster::{ClientConfig, Cluster, ClusterMetadata, PartitionMetadata, TopicMetadata};
pub use connection::{Connection, ConnectionConfig};
pub use consumer::{ConsumedRecord, Consumer, ConsumerConfig, ConsumerEvent, OffsetReset};
pub use error::{AdminError, ClusterError, ConnectionError, ConsumeError, ProduceError};
pub use group::{GroupConfig, TopicPartition};
pub use kafka_protocol::error::ResponseError;
pub use producer::{
    Acks, Producer, ProducerConfig, ProducerIdentity, RecordMetadata, RecordTimestamp,
};
pub use records::KeyValue;

#[cfg(test)]
mod tests {
    use super::*;

    fn is_send_and_sync<T: Send + Sync>() {}
    fn is_send<T: Send>(_: &T) {}

    #[test]
    fn clients_can_be_shared_between_tasks() {
        is_send_and_sync::<Producer>();
        is_send_and_sync::<Admin>();
        is_send_and_sync::<Cluster>();
        is_send_and_sync::<Connection>();
    }

    /// Compiles only if the futures can be handed to `tokio::spawn`.
    #[allow(dead_code)]
    fn futures_can_be_spawned(producer: &Producer, consumer: &mut Consumer, admin: &Admin) {
        is_send(&producer.send("t", None, None, None));
        is_send(&producer.send_batch("t", 0, Vec::new()));
        is_send(&admin.create_topic("t", 1, 1));
        is_send(&consumer.poll(std::time::Duration::ZERO));
        is_send(&consumer.commit());
    }
}
