//! Every advertised API answers a request at every advertised version with a response that the
//! codec can encode at that version. A field set that a version lacks makes the encoder fail,
//! which a client would see as a dropped connection; this test finds such fields before a
//! client does.

use std::sync::Arc;

mod support;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use skiff::log::encode_batch;
use skiff::server::connection::Peer;
use skiff::server::{handlers, Broker};
use skiff::wire::{encode_response, supported_versions, DecodedRequest};

fn broker() -> Arc<Broker> {
    support::simulated_broker(1)
}

fn name(text: &str) -> TopicName {
    TopicName(StrBytes::from_string(text.to_string()))
}

fn one_record_batch() -> Bytes {
    encode_batch(
        &[(
            Some(Bytes::from_static(b"key")),
            Some(Bytes::from_static(b"value")),
        )],
        1_700_000_000_000,
    )
}

/// A representative request of each served API: one that succeeds where that is cheap.
fn request_for(api_key: ApiKey) -> RequestKind {
    let topic = "orders";
    match api_key {
        ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ApiKey::Metadata => {
            RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(name(topic))),
                metadata_request::MetadataRequestTopic::default().with_name(Some(name("missing"))),
            ])))
        }
        ApiKey::Produce => RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(1000)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(name(topic))
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(one_record_batch())),
                        produce_request::PartitionProduceData::default()
                            .with_index(9)
                            .with_records(Some(one_record_batch())),
                    ])]),
        ),
        ApiKey::Fetch => RequestKind::Fetch(
            FetchRequest::default()
                .with_max_bytes(1 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(name(topic))
                    .with_partitions(vec![
                        fetch_request::FetchPartition::default()
                            .with_partition(0)
                            .with_partition_max_bytes(1 << 20),
                        fetch_request::FetchPartition::default()
                            .with_partition(1)
                            .with_fetch_offset(99)
                            .with_partition_max_bytes(1 << 20),
                    ])]),
        ),
        ApiKey::ListOffsets => {
            RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(name(topic))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-1),
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(0),
                    ]),
            ]))
        }
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(
            OffsetForLeaderEpochRequest::default().with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(name(topic))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(-1)
                            .with_leader_epoch(0),
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(7)
                            .with_leader_epoch(0),
                    ]),
            ]),
        ),
        ApiKey::CreateTopics => {
            RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(name("created"))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
                create_topics_request::CreatableTopic::default()
                    .with_name(name(topic))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ]))
        }
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(
            DeleteTopicsRequest::default().with_topic_names(vec![name("missing")]),
        ),
        ApiKey::CreatePartitions => {
            RequestKind::CreatePartitions(CreatePartitionsRequest::default().with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(name(topic))
                    .with_count(1),
            ]))
        }
        ApiKey::DescribeConfigs => {
            RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("orders")),
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(StrBytes::from_static_str("1")),
            ]))
        }
        ApiKey::InitProducerId => RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(
            FindCoordinatorRequest::default()
                .with_key(StrBytes::from_static_str("group"))
                .with_coordinator_keys(vec![StrBytes::from_static_str("group")]),
        ),
        ApiKey::JoinGroup => RequestKind::JoinGroup(JoinGroupRequest::default()),
        ApiKey::SyncGroup => RequestKind::SyncGroup(SyncGroupRequest::default()),
        ApiKey::Heartbeat => RequestKind::Heartbeat(HeartbeatRequest::default()),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(LeaveGroupRequest::default()),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(OffsetCommitRequest::default()),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(OffsetFetchRequest::default()),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(DescribeGroupsRequest::default()),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(DeleteGroupsRequest::default()),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("group")))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(name(topic))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default(),
                        ]),
                ]),
        ),
        ApiKey::AlterConfigs => {
            RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("orders"))
                    .with_configs(vec![alter_configs_request::AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_value(Some(StrBytes::from_static_str("60000")))]),
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(StrBytes::from_static_str("1")),
            ]))
        }
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("orders"))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_static_str("segment.ms"))
                            .with_config_operation(0)
                            .with_value(Some(StrBytes::from_static_str("3600000"))),
                    ]),
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("missing")),
            ]),
        ),
        ApiKey::DescribeLogDirs => {
            RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default().with_topics(Some(vec![
                describe_log_dirs_request::DescribableLogDirTopic::default()
                    .with_topic(name(topic))
                    .with_partitions(vec![1, 7]),
            ])))
        }
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(
            DeleteRecordsRequest::default()
                .with_timeout_ms(1000)
                .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                    .with_name(name(topic))
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(0),
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(5)
                            .with_offset(3),
                    ])]),
        ),
        other => panic!("{other:?} is advertised but has no request in this test"),
    }
}

#[tokio::test]
async fn every_served_version_encodes() {
    let broker = broker();
    broker
        .create_topic(
            "orders",
            skiff::server::broker::TopicShape::Counts {
                partitions: 2,
                replication_factor: 1,
            },
            Default::default(),
            false,
        )
        .await
        .expect("topic created");
    let peer = Peer {
        address: "127.0.0.1:40000".parse().unwrap(),
    };
    let mut checked = 0;
    for api_key in ApiKey::iter() {
        let Some(range) = supported_versions(api_key) else {
            continue;
        };
        for version in range.min..=range.max {
            let request = DecodedRequest {
                api_key,
                version,
                correlation_id: 1,
                client_id: "test".to_string(),
                body: request_for(api_key),
            };
            let response = handlers::handle(&broker, request, &peer)
                .await
                .expect("answered");
            if let Err(error) = encode_response(api_key, version, 1, &response) {
                panic!("{api_key:?} v{version} does not encode: {error:#}\n{response:?}");
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} API versions were checked");
}
