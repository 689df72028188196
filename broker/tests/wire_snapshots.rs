//! Snapshots of encoded responses for the main APIs: the exact bytes a client receives, pinned
//! so that a change to the wire format is a visible, reviewed diff.
//!
//! The broker runs on a simulated disk with a seeded random source, so cluster and topic ids and
//! every offset are the same on every run.

use std::sync::Arc;

mod support;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use skiff::log::encode_batch;
use skiff::server::connection::Peer;
use skiff::server::{handlers, Broker};
use skiff::wire::{encode_response, DecodedRequest};

fn broker() -> Arc<Broker> {
    support::simulated_broker(42)
}

/// Serves one request and renders the encoded response as hex, 32 bytes a line.
async fn exchange(
    broker: &Arc<Broker>,
    api_key: ApiKey,
    version: i16,
    body: RequestKind,
) -> String {
    let request = DecodedRequest {
        api_key,
        version,
        correlation_id: 7,
        client_id: "snapshot".to_string(),
        body,
    };
    let peer = Peer {
        address: "127.0.0.1:40000".parse().unwrap(),
    };
    let response = handlers::handle(broker, request, &peer)
        .await
        .expect("a response");
    let frame = encode_response(api_key, version, 7, &response).expect("encodes");
    frame
        .chunks(32)
        .map(|chunk| {
            chunk
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn batch(values: &[&str]) -> Bytes {
    let records: Vec<(Option<Bytes>, Option<Bytes>)> = values
        .iter()
        .map(|value| (None, Some(Bytes::copy_from_slice(value.as_bytes()))))
        .collect();
    encode_batch(&records, 1_700_000_000_000)
}

/// An acks=-1 Produce of one batch of `values` to partition 0 of `orders`.
fn produce_to_orders(values: &[&str]) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(topic_name("orders"))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(values))),
            ])])
}

/// A ListOffsets of `orders` for each `(partition, timestamp)`.
fn list_orders_offsets(wanted: &[(i32, i64)]) -> ListOffsetsRequest {
    let partitions = wanted
        .iter()
        .map(|&(partition, timestamp)| {
            list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)
        })
        .collect();
    ListOffsetsRequest::default().with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default()
            .with_name(topic_name("orders"))
            .with_partitions(partitions),
    ])
}

/// Creates the one-partition topic `orders`.
async fn create_orders(broker: &Arc<Broker>) {
    broker
        .create_topic(
            "orders",
            skiff::server::broker::TopicShape::Counts {
                partitions: 1,
                replication_factor: 1,
            },
            Default::default(),
            false,
        )
        .await
        .expect("topic created");
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

#[tokio::test]
async fn api_versions_response() {
    let broker = broker();
    let body = RequestKind::ApiVersions(ApiVersionsRequest::default());
    insta::assert_snapshot!(
        "api_versions_v3",
        exchange(&broker, ApiKey::ApiVersions, 3, body).await
    );
    let body = RequestKind::ApiVersions(ApiVersionsRequest::default());
    insta::assert_snapshot!(
        "api_versions_v0",
        exchange(&broker, ApiKey::ApiVersions, 0, body).await
    );
}

#[tokio::test]
async fn create_produce_fetch_and_list_offsets() {
    let broker = broker();
    let create = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(topic_name("orders"))
            .with_num_partitions(2)
            .with_replication_factor(1),
    ]);
    insta::assert_snapshot!(
        "create_topics_v7",
        exchange(
            &broker,
            ApiKey::CreateTopics,
            7,
            RequestKind::CreateTopics(create)
        )
        .await
    );

    let produce = produce_to_orders(&["apple", "banana", "cherry"]);
    insta::assert_snapshot!(
        "produce_v9",
        exchange(&broker, ApiKey::Produce, 9, RequestKind::Produce(produce)).await
    );

    let fetch = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(topic_name("orders"))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(1)
                .with_partition_max_bytes(1 << 20)])]);
    insta::assert_snapshot!(
        "fetch_v12",
        exchange(&broker, ApiKey::Fetch, 12, RequestKind::Fetch(fetch)).await
    );

    let list = list_orders_offsets(&[(0, -1), (1, -2)]);
    insta::assert_snapshot!(
        "list_offsets_v6",
        exchange(
            &broker,
            ApiKey::ListOffsets,
            6,
            RequestKind::ListOffsets(list)
        )
        .await
    );

    // v8: the record with the largest timestamp (-3, "cherry" at offset 2), and the earliest
    // local offset (-4), the log start here.
    let list = list_orders_offsets(&[(0, -3), (0, -4), (1, -3)]);
    insta::assert_snapshot!(
        "list_offsets_max_timestamp_v8",
        exchange(
            &broker,
            ApiKey::ListOffsets,
            8,
            RequestKind::ListOffsets(list)
        )
        .await
    );

    let metadata = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name("orders"))),
    ]));
    insta::assert_snapshot!(
        "metadata_v12",
        exchange(
            &broker,
            ApiKey::Metadata,
            12,
            RequestKind::Metadata(metadata)
        )
        .await
    );

    // Every replica here (the offsets topic's too), then only the ones asked for: partition 9
    // and the topic `missing` do not exist and are left out, as in Kafka.
    let every = DescribeLogDirsRequest::default().with_topics(None);
    insta::assert_snapshot!(
        "describe_log_dirs_v4",
        exchange(
            &broker,
            ApiKey::DescribeLogDirs,
            4,
            RequestKind::DescribeLogDirs(every)
        )
        .await
    );
    let some = DescribeLogDirsRequest::default().with_topics(Some(vec![
        describe_log_dirs_request::DescribableLogDirTopic::default()
            .with_topic(topic_name("orders"))
            .with_partitions(vec![0, 9]),
        describe_log_dirs_request::DescribableLogDirTopic::default()
            .with_topic(topic_name("missing"))
            .with_partitions(vec![0]),
    ]));
    insta::assert_snapshot!(
        "describe_log_dirs_v1",
        exchange(
            &broker,
            ApiKey::DescribeLogDirs,
            1,
            RequestKind::DescribeLogDirs(some)
        )
        .await
    );
    let size = broker.partition("orders", 0).expect("hosted").size_bytes();
    assert_eq!(size, batch(&["apple", "banana", "cherry"]).len() as u64);
}

#[tokio::test]
async fn delete_records_moves_the_log_start() {
    let broker = broker();
    create_orders(&broker).await;
    for values in [&["a", "b", "c"][..], &["d", "e"][..]] {
        let produce = produce_to_orders(values);
        exchange(&broker, ApiKey::Produce, 9, RequestKind::Produce(produce)).await;
    }
    // Offset 2 is inside the first batch; 9 is past the high watermark (5); partition 3 and
    // the offsets topic cannot be deleted from.
    let delete = |partition: i32, offset: i64, topic: &str| {
        delete_records_request::DeleteRecordsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![
                delete_records_request::DeleteRecordsPartition::default()
                    .with_partition_index(partition)
                    .with_offset(offset),
            ])
    };
    let request = DeleteRecordsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![
            delete(0, 2, "orders"),
            delete(3, 1, "orders"),
            delete(0, 0, "__consumer_offsets"),
        ]);
    insta::assert_snapshot!(
        "delete_records_v2",
        exchange(
            &broker,
            ApiKey::DeleteRecords,
            2,
            RequestKind::DeleteRecords(request)
        )
        .await
    );
    let partition = broker.partition("orders", 0).expect("hosted");
    assert_eq!(partition.log_start_offset(), 2);
    assert!(
        partition.read(1, 1 << 20).is_err(),
        "below the log start is out of range"
    );
    let (bytes, _, log_start) = partition.read(2, 1 << 20).expect("from the log start");
    assert_eq!(log_start, 2);
    assert!(!bytes.is_empty());
    // Past the high watermark: refused, nothing changes.
    let request = DeleteRecordsRequest::default().with_topics(vec![delete(0, 9, "orders")]);
    insta::assert_snapshot!(
        "delete_records_past_the_high_watermark_v0",
        exchange(
            &broker,
            ApiKey::DeleteRecords,
            0,
            RequestKind::DeleteRecords(request)
        )
        .await
    );
    // -1: everything consumers can read.
    let request = DeleteRecordsRequest::default().with_topics(vec![delete(0, -1, "orders")]);
    exchange(
        &broker,
        ApiKey::DeleteRecords,
        1,
        RequestKind::DeleteRecords(request),
    )
    .await;
    assert_eq!(partition.log_start_offset(), 5);
    assert_eq!(partition.offset_for_timestamp(0).expect("searched"), None);
}

#[tokio::test]
async fn coordinator_and_producer_id() {
    let broker = broker();
    let find = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("group-a"));
    insta::assert_snapshot!(
        "find_coordinator_v3",
        exchange(
            &broker,
            ApiKey::FindCoordinator,
            3,
            RequestKind::FindCoordinator(find)
        )
        .await
    );
    let init = InitProducerIdRequest::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
        .with_transaction_timeout_ms(60_000);
    insta::assert_snapshot!(
        "init_producer_id_v4",
        exchange(
            &broker,
            ApiKey::InitProducerId,
            4,
            RequestKind::InitProducerId(init)
        )
        .await
    );
}

#[tokio::test]
async fn alter_and_describe_topic_settings() {
    let broker = broker();
    create_orders(&broker).await;
    let alter = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("orders"))
            .with_configs(vec![
                incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_static_str("60000"))),
            ]),
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("1")),
    ]);
    insta::assert_snapshot!(
        "incremental_alter_configs_v1",
        exchange(
            &broker,
            ApiKey::IncrementalAlterConfigs,
            1,
            RequestKind::IncrementalAlterConfigs(alter)
        )
        .await
    );
    let topic = broker.topic("orders").expect("the topic");
    assert_eq!(topic.log_config.retention_ms, 60_000);
    assert_eq!(
        topic.configs.get("retention.ms").map(String::as_str),
        Some("60000")
    );

    let describe = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("orders"))
            .with_configuration_keys(Some(vec![
                StrBytes::from_static_str("retention.ms"),
                StrBytes::from_static_str("segment.ms"),
            ])),
    ]);
    insta::assert_snapshot!(
        "describe_configs_after_alter_v4",
        exchange(
            &broker,
            ApiKey::DescribeConfigs,
            4,
            RequestKind::DescribeConfigs(describe)
        )
        .await
    );
}
