//! DeleteRecords under the `interval` flush policy: the high watermark there can be ahead of
//! the last fsync, so the broker makes the records below the new log start durable before it
//! records the start. After a machine crash the log still reaches the start, and records
//! appended afterwards are never hidden behind it.

use std::path::PathBuf;
use std::sync::Arc;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use skiff::config::{BrokerConfig, FlushPolicy};
use skiff::io::{Clock, Random, SimDisk};
use skiff::log::encode_batch;
use skiff::server::broker::TopicShape;
use skiff::server::connection::Peer;
use skiff::server::{handlers, Broker, Seams};
use skiff::wire::DecodedRequest;

fn open(disk: &SimDisk) -> Arc<Broker> {
    let config = BrokerConfig {
        data_dir: PathBuf::from("/data"),
        // No timed fsync during the test: only what the broker syncs on purpose is durable.
        flush_policy: FlushPolicy::Interval {
            interval_ms: 3_600_000,
        },
        ..BrokerConfig::default()
    };
    let seams = Seams {
        disk: Arc::new(disk.clone()),
        clock: Clock::new(),
        random: Random::from_seed(5),
    };
    Broker::open(config, seams).expect("the data directory opens")
}

async fn serve(broker: &Arc<Broker>, api_key: ApiKey, version: i16, body: RequestKind) {
    let request = DecodedRequest {
        api_key,
        version,
        correlation_id: 1,
        client_id: "test".to_string(),
        body,
    };
    let peer = Peer {
        address: "127.0.0.1:40000".parse().unwrap(),
    };
    handlers::handle(broker, request, &peer)
        .await
        .expect("answered");
}

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str("events"))
}

#[tokio::test]
async fn the_records_below_a_new_log_start_are_synced_first() {
    let disk = SimDisk::new();
    let broker = open(&disk);
    let shape = TopicShape::Counts {
        partitions: 1,
        replication_factor: 1,
    };
    broker
        .create_topic("events", shape, Default::default(), false)
        .await
        .expect("created");
    let records: Vec<_> = (0..5)
        .map(|index| (None, Some(bytes::Bytes::from(format!("record-{index}")))))
        .collect();
    let produce = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(topic_name())
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(encode_batch(&records, 1_700_000_000_000))),
            ])]);
    serve(&broker, ApiKey::Produce, 9, RequestKind::Produce(produce)).await;
    let partition = broker.partition("events", 0).expect("hosted");
    assert_eq!(partition.high_watermark(), 5);
    assert_eq!(
        partition.durable_end_offset(),
        0,
        "acknowledged before any fsync"
    );

    let delete = DeleteRecordsRequest::default().with_topics(vec![
        delete_records_request::DeleteRecordsTopic::default()
            .with_name(topic_name())
            .with_partitions(vec![
                delete_records_request::DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(3),
            ]),
    ]);
    serve(
        &broker,
        ApiKey::DeleteRecords,
        2,
        RequestKind::DeleteRecords(delete),
    )
    .await;
    assert_eq!(partition.log_start_offset(), 3);
    assert!(partition.durable_end_offset() >= 3);

    drop(partition);
    drop(broker);
    disk.crash_losing_everything_unsynced();
    let broker = open(&disk);
    let partition = broker.partition("events", 0).expect("hosted");
    assert!(
        partition.log_end_offset() >= 3,
        "the log reaches its recorded start"
    );
    assert_eq!(partition.log_start_offset(), 3);
    assert_eq!(partition.log_start_floor(), 3);
}
