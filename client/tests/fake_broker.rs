//! End-to-end tests of the client against a small in-process fake broker.
//!
//! The fake broker is one node that keeps partitions as lists of record batches, checks
//! idempotent sequence numbers, and runs a consumer group of one member at a time. It exists
//! to exercise the client's wire paths (handshake, pipelining, retries, group joins) while
//! the real broker is built. The tests run on real tokio; under `--cfg madsim` one test runs
//! the broker and the client on two simulated nodes.

// Under madsim only the simulated-network test is compiled, leaving helpers unused.
#![cfg_attr(madsim, allow(unused_imports, dead_code))]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;
use skiff_client::versions::CLIENT_API_VERSIONS;
use skiff_client::wire::encode_response;
use skiff_client::{
    Admin, ClientConfig, Connection, ConnectionConfig, Consumer, ConsumerConfig, GroupConfig,
    Producer, ProducerConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A stored batch: its base offset, the offset after it, and its bytes.
type StoredBatch = (i64, i64, Bytes);

/// The fake broker's state.
#[derive(Default)]
struct State {
    host: String,
    port: u16,
    topics: BTreeMap<String, i32>,
    /// Batches per partition, each with its base offset rewritten.
    logs: BTreeMap<(String, i32), Vec<StoredBatch>>,
    log_ends: BTreeMap<(String, i32), i64>,
    /// (epoch, next sequence) per producer id and partition.
    next_sequences: BTreeMap<(i64, String, i32), (i16, i32)>,
    next_producer_id: i64,
    /// Append the next produce but close the connection instead of answering.
    drop_next_produce_response: bool,
    /// Never answer requests of this API (the connection stays open).
    silent_api: Option<ApiKey>,
    /// OffsetCommit requests received, answered or not.
    offset_commits_received: u32,
    next_member: u32,
    generation: i32,
    committed: BTreeMap<(String, i32), i64>,
}

type Shared = Arc<Mutex<State>>;

#[cfg(not(madsim))]
async fn start_fake_broker() -> (String, Shared) {
    start_fake_broker_at("127.0.0.1:0").await
}

/// Starts the fake broker on `bind` ("ip:port"), advertising the bound ip and port.
async fn start_fake_broker_at(bind: &str) -> (String, Shared) {
    let listener = TcpListener::bind(bind).await.expect("binds");
    let address = listener.local_addr().expect("has an address");
    let state: Shared = Arc::new(Mutex::new(State {
        host: address.ip().to_string(),
        port: address.port(),
        ..State::default()
    }));
    let accept_state = Arc::clone(&state);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve(stream, Arc::clone(&accept_state)));
        }
    });
    (address.to_string(), state)
}

async fn serve(mut stream: TcpStream, state: Shared) {
    loop {
        let mut length = [0_u8; 4];
        if stream.read_exact(&mut length).await.is_err() {
            return;
        }
        let mut frame = vec![0_u8; i32::from_be_bytes(length) as usize];
        if stream.read_exact(&mut frame).await.is_err() {
            return;
        }
        let mut frame = Bytes::from(frame);
        let header = decode_request_header_from_buffer(&mut frame).expect("header decodes");
        let api_key = ApiKey::try_from(header.request_api_key).expect("known api");
        let version = header.request_api_version;
        let wait = fetch_wait(api_key, version, &frame);
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
        {
            let mut shared = state.lock().expect("not poisoned");
            if api_key == ApiKey::OffsetCommit {
                shared.offset_commits_received += 1;
            }
            if shared.silent_api == Some(api_key) {
                continue;
            }
        }
        let response = handle(&state, api_key, version, header.correlation_id, frame);
        match response {
            Some(bytes) => {
                // madsim buffers writes until a flush.
                if stream.write_all(&bytes).await.is_err() || stream.flush().await.is_err() {
                    return;
                }
            }
            None => return, // Close the connection without answering.
        }
    }
}

/// An empty fetch is held for its max wait, as a broker does, bounded for the tests' sake.
fn fetch_wait(api_key: ApiKey, version: i16, frame: &Bytes) -> Option<Duration> {
    if api_key != ApiKey::Fetch {
        return None;
    }
    let request = FetchRequest::decode(&mut frame.clone(), version).expect("fetch decodes");
    Some(Duration::from_millis(
        request.max_wait_ms.clamp(0, 20) as u64
    ))
}

fn respond<R: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Option<Bytes> {
    Some(encode_response(api_key, version, correlation_id, body).expect("response encodes"))
}

fn name(value: &str) -> TopicName {
    TopicName(StrBytes::from_string(value.to_string()))
}

fn handle(
    state: &Shared,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    mut body: Bytes,
) -> Option<Bytes> {
    let mut state = state.lock().expect("not poisoned");
    match api_key {
        ApiKey::ApiVersions => {
            let api_keys = CLIENT_API_VERSIONS
                .iter()
                .map(|&(key, _, _)| {
                    let valid = key.valid_versions();
                    ApiVersion::default()
                        .with_api_key(key as i16)
                        .with_min_version(valid.min)
                        .with_max_version(valid.max)
                })
                .collect();
            respond(
                api_key,
                version,
                correlation_id,
                &ApiVersionsResponse::default().with_api_keys(api_keys),
            )
        }
        ApiKey::Metadata => {
            let request = MetadataRequest::decode(&mut body, version).expect("decodes");
            let names: Vec<String> = match request.topics {
                Some(topics) => topics
                    .iter()
                    .filter_map(|topic| topic.name.as_ref().map(|n| n.to_string()))
                    .collect(),
                None => state.topics.keys().cloned().collect(),
            };
            let topics = names
                .iter()
                .map(|topic| match state.topics.get(topic) {
                    None => MetadataResponseTopic::default()
                        .with_name(Some(name(topic)))
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                    Some(&count) => MetadataResponseTopic::default()
                        .with_name(Some(name(topic)))
                        .with_partitions(
                            (0..count)
                                .map(|index| {
                                    MetadataResponsePartition::default()
                                        .with_partition_index(index)
                                        .with_leader_id(BrokerId(0))
                                        .with_replica_nodes(vec![BrokerId(0)])
                                        .with_isr_nodes(vec![BrokerId(0)])
                                })
                                .collect(),
                        ),
                })
                .collect();
            let response = MetadataResponse::default()
                .with_brokers(vec![MetadataResponseBroker::default()
                    .with_node_id(BrokerId(0))
                    .with_host(StrBytes::from_string(state.host.clone()))
                    .with_port(i32::from(state.port))])
                .with_controller_id(BrokerId(0))
                .with_topics(topics);
            respond(api_key, version, correlation_id, &response)
        }
        ApiKey::CreateTopics => {
            let request = CreateTopicsRequest::decode(&mut body, version).expect("decodes");
            let results = request
                .topics
                .iter()
                .map(|topic| {
                    let exists = state.topics.contains_key(topic.name.as_str());
                    state
                        .topics
                        .entry(topic.name.to_string())
                        .or_insert(topic.num_partitions);
                    let code = if exists {
                        ResponseError::TopicAlreadyExists.code()
                    } else {
                        0
                    };
                    CreatableTopicResult::default()
                        .with_name(topic.name.clone())
                        .with_error_code(code)
                })
                .collect();
            respond(
                api_key,
                version,
                correlation_id,
                &CreateTopicsResponse::default().with_topics(results),
            )
        }
        ApiKey::InitProducerId => {
            state.next_producer_id += 1;
            let response = InitProducerIdResponse::default()
                .with_producer_id(ProducerId(state.next_producer_id))
                .with_producer_epoch(0);
            respond(api_key, version, correlation_id, &response)
        }
        ApiKey::Produce => {
            let request = ProduceRequest::decode(&mut body, version).expect("decodes");
            let mut responses = Vec::new();
            for topic in &request.topic_data {
                let mut partitions = Vec::new();
                for partition in &topic.partition_data {
                    let batch = partition.records.clone().expect("has records");
                    let (code, base_offset) =
                        append(&mut state, topic.name.as_str(), partition.index, batch);
                    partitions.push(
                        PartitionProduceResponse::default()
                            .with_index(partition.index)
                            .with_error_code(code)
                            .with_base_offset(base_offset),
                    );
                }
                responses.push(
                    TopicProduceResponse::default()
                        .with_name(topic.name.clone())
                        .with_partition_responses(partitions),
                );
            }
            if std::mem::take(&mut state.drop_next_produce_response) {
                return None;
            }
            respond(
                api_key,
                version,
                correlation_id,
                &ProduceResponse::default().with_responses(responses),
            )
        }
        ApiKey::Fetch => {
            let request = FetchRequest::decode(&mut body, version).expect("decodes");
            let responses = request
                .topics
                .iter()
                .map(|topic| {
                    let partitions = topic
                        .partitions
                        .iter()
                        .map(|partition| {
                            fetch_partition(
                                &state,
                                topic.topic.as_str(),
                                partition.partition,
                                partition.fetch_offset,
                            )
                        })
                        .collect();
                    FetchableTopicResponse::default()
                        .with_topic(topic.topic.clone())
                        .with_partitions(partitions)
                })
                .collect();
            respond(
                api_key,
                version,
                correlation_id,
                &FetchResponse::default().with_responses(responses),
            )
        }
        ApiKey::ListOffsets => {
            let request = ListOffsetsRequest::decode(&mut body, version).expect("decodes");
            let topics = request
                .topics
                .iter()
                .map(|topic| {
                    let partitions = topic
                        .partitions
                        .iter()
                        .map(|partition| {
                            let end = state
                                .log_ends
                                .get(&(topic.name.to_string(), partition.partition_index))
                                .copied()
                                .unwrap_or(0);
                            let offset = if partition.timestamp == -2 { 0 } else { end };
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(partition.partition_index)
                                .with_offset(offset)
                        })
                        .collect();
                    ListOffsetsTopicResponse::default()
                        .with_name(topic.name.clone())
                        .with_partitions(partitions)
                })
                .collect();
            respond(
                api_key,
                version,
                correlation_id,
                &ListOffsetsResponse::default().with_topics(topics),
            )
        }
        ApiKey::FindCoordinator => {
            let response = FindCoordinatorResponse::default()
                .with_node_id(BrokerId(0))
                .with_host(StrBytes::from_string(state.host.clone()))
                .with_port(i32::from(state.port));
            respond(api_key, version, correlation_id, &response)
        }
        ApiKey::JoinGroup => {
            let request = JoinGroupRequest::decode(&mut body, version).expect("decodes");
            if request.member_id.is_empty() && version >= 4 {
                state.next_member += 1;
                let response = JoinGroupResponse::default()
                    .with_error_code(ResponseError::MemberIdRequired.code())
                    .with_member_id(StrBytes::from_string(format!(
                        "member-{}",
                        state.next_member
                    )));
                return respond(api_key, version, correlation_id, &response);
            }
            state.generation += 1;
            let member_id = request.member_id.clone();
            let response = JoinGroupResponse::default()
                .with_generation_id(state.generation)
                .with_protocol_name(Some(request.protocols[0].name.clone()))
                .with_leader(member_id.clone())
                .with_member_id(member_id.clone())
                .with_members(vec![JoinGroupResponseMember::default()
                    .with_member_id(member_id)
                    .with_metadata(request.protocols[0].metadata.clone())]);
            respond(api_key, version, correlation_id, &response)
        }
        ApiKey::SyncGroup => {
            let request = SyncGroupRequest::decode(&mut body, version).expect("decodes");
            let assignment = request
                .assignments
                .iter()
                .find(|assignment| assignment.member_id == request.member_id)
                .map(|assignment| assignment.assignment.clone())
                .unwrap_or_default();
            respond(
                api_key,
                version,
                correlation_id,
                &SyncGroupResponse::default().with_assignment(assignment),
            )
        }
        ApiKey::Heartbeat => respond(
            api_key,
            version,
            correlation_id,
            &HeartbeatResponse::default(),
        ),
        ApiKey::LeaveGroup => respond(
            api_key,
            version,
            correlation_id,
            &LeaveGroupResponse::default(),
        ),
        ApiKey::OffsetCommit => {
            let request = OffsetCommitRequest::decode(&mut body, version).expect("decodes");
            let topics = request
                .topics
                .iter()
                .map(|topic| {
                    let partitions = topic
                        .partitions
                        .iter()
                        .map(|partition| {
                            state.committed.insert(
                                (topic.name.to_string(), partition.partition_index),
                                partition.committed_offset,
                            );
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(partition.partition_index)
                        })
                        .collect();
                    OffsetCommitResponseTopic::default()
                        .with_name(topic.name.clone())
                        .with_partitions(partitions)
                })
                .collect();
            respond(
                api_key,
                version,
                correlation_id,
                &OffsetCommitResponse::default().with_topics(topics),
            )
        }
        ApiKey::OffsetFetch => {
            let request = OffsetFetchRequest::decode(&mut body, version).expect("decodes");
            let topics = request
                .topics
                .unwrap_or_default()
                .iter()
                .map(|topic| {
                    let partitions = topic
                        .partition_indexes
                        .iter()
                        .map(|&index| {
                            let offset = state
                                .committed
                                .get(&(topic.name.to_string(), index))
                                .copied()
                                .unwrap_or(-1);
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(index)
                                .with_committed_offset(offset)
                        })
                        .collect();
                    OffsetFetchResponseTopic::default()
                        .with_name(topic.name.clone())
                        .with_partitions(partitions)
                })
                .collect();
            respond(
                api_key,
                version,
                correlation_id,
                &OffsetFetchResponse::default().with_topics(topics),
            )
        }
        other => panic!("the fake broker does not handle {other:?}"),
    }
}

/// Appends a batch after checking its producer sequence; returns (error code, base offset).
fn append(state: &mut State, topic: &str, partition: i32, batch: Bytes) -> (i16, i64) {
    let info =
        RecordBatchDecoder::decode_batch_info(&mut batch.clone()).expect("batch header decodes");
    let info = &info[0];
    if info.producer_id >= 0 {
        // Kafka's rules: an older epoch is fenced, a newer epoch starts at sequence 0, and
        // within an epoch sequences are contiguous.
        let key = (info.producer_id, topic.to_string(), partition);
        let (epoch, expected) = state
            .next_sequences
            .get(&key)
            .copied()
            .unwrap_or((info.producer_epoch, 0));
        if info.producer_epoch < epoch {
            return (ResponseError::InvalidProducerEpoch.code(), -1);
        }
        let expected = if info.producer_epoch > epoch {
            0
        } else {
            expected
        };
        if info.base_sequence < expected {
            return (ResponseError::DuplicateSequenceNumber.code(), -1);
        }
        if info.base_sequence > expected {
            return (ResponseError::OutOfOrderSequenceNumber.code(), -1);
        }
        state
            .next_sequences
            .insert(key, (info.producer_epoch, expected + info.record_count));
    }
    let key = (topic.to_string(), partition);
    let base_offset = state.log_ends.get(&key).copied().unwrap_or(0);
    let mut stored = BytesMut::from(&batch[..]);
    stored[0..8].copy_from_slice(&base_offset.to_be_bytes());
    let next = base_offset + i64::from(info.record_count);
    state
        .logs
        .entry(key.clone())
        .or_default()
        .push((base_offset, next, stored.freeze()));
    state.log_ends.insert(key, next);
    (0, base_offset)
}

fn fetch_partition(state: &State, topic: &str, partition: i32, fetch_offset: i64) -> PartitionData {
    let key = (topic.to_string(), partition);
    let end = state.log_ends.get(&key).copied().unwrap_or(0);
    if fetch_offset > end {
        return PartitionData::default()
            .with_partition_index(partition)
            .with_error_code(ResponseError::OffsetOutOfRange.code());
    }
    let mut records = BytesMut::new();
    for (_, next, batch) in state.logs.get(&key).map(Vec::as_slice).unwrap_or_default() {
        if *next > fetch_offset {
            records.extend_from_slice(batch);
        }
    }
    PartitionData::default()
        .with_partition_index(partition)
        .with_high_watermark(end)
        .with_records(Some(records.freeze()))
}

fn client_config(address: &str) -> ClientConfig {
    let mut config = ClientConfig::new([address]);
    config.connection.request_timeout = Duration::from_secs(5);
    config.retry_backoff = Duration::from_millis(10);
    config
}

fn values(records: &[skiff_client::ConsumedRecord]) -> Vec<String> {
    records
        .iter()
        .map(|record| {
            String::from_utf8_lossy(record.value.as_ref().expect("has a value")).into_owned()
        })
        .collect()
}

async fn poll_until(consumer: &mut Consumer, count: usize) -> Vec<skiff_client::ConsumedRecord> {
    let mut all = Vec::new();
    for _ in 0..50 {
        all.extend(
            consumer
                .poll(Duration::from_millis(100))
                .await
                .expect("polls"),
        );
        if all.len() >= count {
            break;
        }
    }
    all
}

#[cfg(not(madsim))]
#[tokio::test]
async fn concurrent_requests_are_pipelined_on_one_connection() {
    let (address, _) = start_fake_broker().await;
    let connection = Arc::new(
        Connection::connect(&address, &ConnectionConfig::default())
            .await
            .expect("connects"),
    );
    let version = connection.version(ApiKey::Metadata).expect("negotiated");
    assert_eq!(version, 12);
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let connection = Arc::clone(&connection);
        tasks.push(tokio::spawn(async move {
            let request = MetadataRequest::default().with_topics(None);
            connection.send(&request, version).await
        }));
    }
    for task in tasks {
        let response = task
            .await
            .expect("task completes")
            .expect("request succeeds");
        assert_eq!(response.brokers.len(), 1);
    }
    assert!(!connection.is_closed());
}

#[cfg(not(madsim))]
#[tokio::test]
async fn produced_records_are_consumed_back_in_order() {
    let (address, _) = start_fake_broker().await;
    let admin = Admin::connect(client_config(&address))
        .await
        .expect("admin connects");
    admin.create_topic("events", 2, 1).await.expect("creates");
    assert!(matches!(
        admin.create_topic("events", 2, 1).await,
        Err(skiff_client::AdminError::TopicAlreadyExists { .. })
    ));
    admin
        .wait_for_leaders("events", Duration::from_secs(5))
        .await
        .expect("leaders");
    let producer = Producer::new(admin.cluster().clone(), ProducerConfig::default())
        .await
        .expect("producer");
    assert!(producer.identity().is_some());
    let records = (0..10)
        .map(|index| (None, Some(Bytes::from(format!("v{index}")))))
        .collect();
    assert_eq!(
        producer
            .send_batch("events", 0, records)
            .await
            .expect("batch"),
        0
    );
    let single = producer
        .send("events", Some(0), None, Some(Bytes::from("v10")))
        .await
        .expect("send");
    assert_eq!(single.offset, 10);
    let keyed = producer
        .send(
            "events",
            None,
            Some(Bytes::from("21")),
            Some(Bytes::from("k")),
        )
        .await
        .expect("keyed");
    // murmur2("21") is -973932308; its positive part is even, so partition 0 of 2.
    assert_eq!(keyed.partition, 0);
    assert_eq!(keyed.offset, 11);

    let mut consumer = Consumer::new(admin.cluster().clone(), ConsumerConfig::default());
    consumer.assign(vec![("events".to_string(), 0), ("events".to_string(), 1)]);
    let read = poll_until(&mut consumer, 12).await;
    let mut expected: Vec<String> = (0..=10).map(|index| format!("v{index}")).collect();
    expected.push("k".to_string());
    assert_eq!(values(&read), expected);
    assert_eq!(
        read.iter().map(|record| record.offset).collect::<Vec<_>>(),
        (0..12).collect::<Vec<i64>>()
    );
    assert_eq!(consumer.position("events", 0), Some(12));

    consumer.seek("events", 0, 5).expect("assigned");
    let again = poll_until(&mut consumer, 7).await;
    assert_eq!(again.first().map(|record| record.offset), Some(5));
}

#[cfg(not(madsim))]
#[tokio::test]
async fn a_lost_produce_response_is_retried_without_duplicating() {
    let (address, state) = start_fake_broker().await;
    let admin = Admin::connect(client_config(&address))
        .await
        .expect("admin connects");
    admin.create_topic("t", 1, 1).await.expect("creates");
    let producer = Producer::new(admin.cluster().clone(), ProducerConfig::default())
        .await
        .expect("producer");
    producer
        .send("t", Some(0), None, Some(Bytes::from("a")))
        .await
        .expect("first");
    state
        .lock()
        .expect("not poisoned")
        .drop_next_produce_response = true;
    // Appended, but the response is lost; the retry with the same sequence is a duplicate.
    producer
        .send("t", Some(0), None, Some(Bytes::from("b")))
        .await
        .expect("retried");
    producer
        .send("t", Some(0), None, Some(Bytes::from("c")))
        .await
        .expect("third");
    assert_eq!(
        state.lock().expect("not poisoned").log_ends[&("t".to_string(), 0)],
        3
    );

    let mut consumer = Consumer::new(admin.cluster().clone(), ConsumerConfig::default());
    consumer.assign(vec![("t".to_string(), 0)]);
    assert_eq!(
        values(&poll_until(&mut consumer, 3).await),
        vec!["a", "b", "c"]
    );
}

#[cfg(not(madsim))]
#[tokio::test]
async fn a_group_member_is_assigned_everything_and_resumes_from_its_commit() {
    let (address, _) = start_fake_broker().await;
    let admin = Admin::connect(client_config(&address))
        .await
        .expect("admin connects");
    admin.create_topic("g", 3, 1).await.expect("creates");
    let producer = Producer::new(admin.cluster().clone(), ProducerConfig::default())
        .await
        .expect("producer");
    for partition in 0..3 {
        let records = (0..4)
            .map(|index| (None, Some(Bytes::from(format!("{partition}-{index}")))))
            .collect();
        producer
            .send_batch("g", partition, records)
            .await
            .expect("batch");
    }
    let config = ConsumerConfig {
        group: Some(GroupConfig::new("readers")),
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(admin.cluster().clone(), config.clone());
    consumer
        .subscribe(vec!["g".to_string()])
        .expect("has a group");
    let read = poll_until(&mut consumer, 12).await;
    assert_eq!(read.len(), 12);
    assert_eq!(consumer.assignment().len(), 3);
    assert_eq!(consumer.generation(), Some(1));
    assert_eq!(consumer.member_id(), Some("member-1"));
    let events = consumer.drain_events();
    assert!(
        matches!(&events[0], skiff_client::ConsumerEvent::Assigned { generation_id: 1, partitions, .. } if partitions.len() == 3)
    );
    // Commit only two records of partition 0, then close.
    consumer
        .commit_offsets(BTreeMap::from([(("g".to_string(), 0), 2)]))
        .await
        .expect("commits");
    consumer.close().await;

    let mut second = Consumer::new(admin.cluster().clone(), config);
    second
        .subscribe(vec!["g".to_string()])
        .expect("has a group");
    let read = poll_until(&mut second, 10).await;
    let partition_zero: Vec<i64> = read
        .iter()
        .filter(|record| record.partition == 0)
        .map(|record| record.offset)
        .collect();
    assert_eq!(partition_zero, vec![2, 3]);
    assert_eq!(second.generation(), Some(2));
}

#[cfg(not(madsim))]
#[tokio::test]
async fn an_unanswered_commit_is_reported_unknown_and_not_retried() {
    let (address, state) = start_fake_broker().await;
    let mut config = client_config(&address);
    config.connection.request_timeout = Duration::from_millis(200);
    let admin = Admin::connect(config).await.expect("admin connects");
    admin.create_topic("c", 1, 1).await.expect("creates");
    let config = ConsumerConfig {
        group: Some(GroupConfig::new("committers")),
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(admin.cluster().clone(), config);
    state.lock().expect("not poisoned").silent_api = Some(ApiKey::OffsetCommit);
    let error = consumer
        .commit_offsets(BTreeMap::from([(("c".to_string(), 0), 1)]))
        .await
        .expect_err("no answer");
    assert!(
        matches!(
            error,
            skiff_client::ConsumeError::CommitOutcomeUnknown { .. }
        ),
        "{error}"
    );
    // Sent once: a retry could be overtaken by the unanswered request arriving late.
    assert_eq!(
        state.lock().expect("not poisoned").offset_commits_received,
        1
    );
    state.lock().expect("not poisoned").silent_api = None;
    consumer
        .commit_offsets(BTreeMap::from([(("c".to_string(), 0), 2)]))
        .await
        .expect("commits once answered");
    assert_eq!(
        state.lock().expect("not poisoned").committed[&("c".to_string(), 0)],
        2
    );
}

#[cfg(not(madsim))]
#[tokio::test]
async fn an_unreachable_bootstrap_is_an_error() {
    // Bind and drop a listener to get a port with nothing listening.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let address = listener.local_addr().expect("address").to_string();
    drop(listener);
    let error = Admin::connect(client_config(&address))
        .await
        .expect_err("nothing listens");
    assert!(error.to_string().contains("no broker reachable"), "{error}");
}

#[cfg(not(madsim))]
#[tokio::test]
async fn an_unanswered_request_times_out_and_closes_the_connection() {
    let (address, state) = start_fake_broker().await;
    let connection = Connection::connect(&address, &ConnectionConfig::default())
        .await
        .expect("connects");
    state.lock().expect("not poisoned").silent_api = Some(ApiKey::Metadata);
    let version = connection.version(ApiKey::Metadata).expect("negotiated");
    let request = MetadataRequest::default().with_topics(None);
    let error = connection
        .send_with_timeout(&request, version, Duration::from_millis(50))
        .await
        .expect_err("no answer");
    assert!(
        matches!(
            error,
            skiff_client::ConnectionError::Timeout {
                api_key: ApiKey::Metadata,
                ..
            }
        ),
        "{error}"
    );
    assert!(connection.is_closed());
    let error = connection
        .send(&request, version)
        .await
        .expect_err("closed");
    assert!(
        matches!(error, skiff_client::ConnectionError::Closed { .. }),
        "{error}"
    );
}

#[cfg(not(madsim))]
#[tokio::test]
async fn an_out_of_order_sequence_stops_the_producer() {
    let (address, state) = start_fake_broker().await;
    let admin = Admin::connect(client_config(&address))
        .await
        .expect("admin connects");
    admin.create_topic("t", 1, 1).await.expect("creates");
    let producer = Producer::new(admin.cluster().clone(), ProducerConfig::default())
        .await
        .expect("producer");
    producer
        .send("t", Some(0), None, Some(Bytes::from("a")))
        .await
        .expect("first");
    let identity = producer.identity().expect("idempotent");
    // The broker forgets the first batch, so the producer's next sequence (1) leaves a gap.
    state.lock().expect("not poisoned").next_sequences.insert(
        (identity.producer_id, "t".to_string(), 0),
        (identity.producer_epoch, 0),
    );
    let error = producer
        .send("t", Some(0), None, Some(Bytes::from("b")))
        .await
        .expect_err("out of order");
    assert!(
        matches!(error, skiff_client::ProduceError::OutOfOrderSequence { .. }),
        "{error}"
    );
    let error = producer
        .send("t", Some(0), None, Some(Bytes::from("c")))
        .await
        .expect_err("stopped");
    assert!(
        matches!(error, skiff_client::ProduceError::ProducerFailed { .. }),
        "{error}"
    );
}

#[cfg(not(madsim))]
#[tokio::test]
async fn acks_zero_sends_without_waiting() {
    let (address, state) = start_fake_broker().await;
    let admin = Admin::connect(client_config(&address))
        .await
        .expect("admin connects");
    admin.create_topic("t", 1, 1).await.expect("creates");
    let config = ProducerConfig {
        acks: skiff_client::Acks::None,
        idempotence: false,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(admin.cluster().clone(), config)
        .await
        .expect("producer");
    let written = producer
        .send("t", Some(0), None, Some(Bytes::from("a")))
        .await
        .expect("sent");
    assert_eq!(written.offset, -1);
    let mut consumer = Consumer::new(admin.cluster().clone(), ConsumerConfig::default());
    consumer.assign(vec![("t".to_string(), 0)]);
    assert_eq!(values(&poll_until(&mut consumer, 1).await), vec!["a"]);
    assert!(producer.identity().is_none());
    drop(state);
}

/// The producer, the assigned consumer and the group consumer on madsim's simulated network:
/// the broker on one node, the client on another.
#[cfg(madsim)]
#[tokio::test]
async fn the_client_works_on_the_simulated_network() {
    let runtime = madsim::runtime::Handle::current();
    let broker_node = runtime
        .create_node()
        .name("broker")
        .ip("10.0.0.1".parse().expect("an ip"))
        .build();
    let client_node = runtime
        .create_node()
        .name("client")
        .ip("10.0.0.2".parse().expect("an ip"))
        .build();
    broker_node
        .spawn(async {
            // The accept loop runs on this node for the rest of the test.
            start_fake_broker_at("10.0.0.1:9092").await;
        })
        .await
        .expect("broker starts");
    client_node
        .spawn(async {
            let admin = Admin::connect(client_config("10.0.0.1:9092"))
                .await
                .expect("admin connects");
            admin.create_topic("sim", 2, 1).await.expect("creates");
            let producer = Producer::new(admin.cluster().clone(), ProducerConfig::default())
                .await
                .expect("producer");
            let records = (0..5)
                .map(|index| (None, Some(Bytes::from(format!("v{index}")))))
                .collect();
            producer.send_batch("sim", 1, records).await.expect("batch");
            let mut consumer = Consumer::new(
                admin.cluster().clone(),
                ConsumerConfig {
                    group: Some(GroupConfig::new("sim-readers")),
                    ..ConsumerConfig::default()
                },
            );
            consumer
                .subscribe(vec!["sim".to_string()])
                .expect("has a group");
            let read = poll_until(&mut consumer, 5).await;
            assert_eq!(values(&read), vec!["v0", "v1", "v2", "v3", "v4"]);
            consumer.commit().await.expect("commits");
            consumer.close().await;
        })
        .await
        .expect("client scenario completes");
}

/// A clogged link delays packets rather than dropping them; every request must still end
/// with an error in bounded simulated time, and the client must recover once it heals.
#[cfg(madsim)]
#[tokio::test]
async fn requests_fail_in_bounded_time_across_a_partition_and_recover() {
    let runtime = madsim::runtime::Handle::current();
    let broker_node = runtime
        .create_node()
        .name("broker")
        .ip("10.0.0.1".parse().expect("an ip"))
        .build();
    let client_node = runtime
        .create_node()
        .name("client")
        .ip("10.0.0.2".parse().expect("an ip"))
        .build();
    let broker_id = broker_node.id();
    broker_node
        .spawn(async {
            start_fake_broker_at("10.0.0.1:9092").await;
        })
        .await
        .expect("broker starts");
    client_node
        .spawn(async move {
            let mut config = client_config("10.0.0.1:9092");
            config.connection.connect_timeout = Duration::from_secs(1);
            config.connection.request_timeout = Duration::from_secs(1);
            let admin = Admin::connect(config).await.expect("admin connects");
            admin.create_topic("p", 1, 1).await.expect("creates");
            let producer_config = ProducerConfig {
                request_timeout: Duration::from_secs(1),
                retries_max: 2,
                ..ProducerConfig::default()
            };
            let producer = Producer::new(admin.cluster().clone(), producer_config)
                .await
                .expect("producer");
            producer
                .send("p", Some(0), None, Some(Bytes::from("before")))
                .await
                .expect("sent before the partition");

            let network = madsim::net::NetSim::current();
            network.clog_node(broker_id);
            let started = tokio::time::Instant::now();
            let result = producer
                .send("p", Some(0), None, Some(Bytes::from("during")))
                .await;
            let elapsed = started.elapsed();
            let error = result.expect_err("a clogged broker cannot acknowledge");
            assert!(error.is_indeterminate(), "{error}");
            assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");

            network.unclog_node(broker_id);
            producer
                .send("p", Some(0), None, Some(Bytes::from("after")))
                .await
                .expect("sent after healing");
            let mut consumer = Consumer::new(admin.cluster().clone(), ConsumerConfig::default());
            consumer.assign(vec![("p".to_string(), 0)]);
            let mut read = values(&poll_until(&mut consumer, 2).await);
            // Drain anything else that is there.
            read.extend(values(
                &consumer
                    .poll(Duration::from_millis(200))
                    .await
                    .expect("polls"),
            ));
            // "during" had an unknown outcome: it may be written, but never after "after",
            // because the new epoch fences its late copies.
            let with_during = vec!["before", "during", "after"];
            let without_during = vec!["before", "after"];
            assert!(read == with_during || read == without_during, "{read:?}");
        })
        .await
        .expect("client scenario completes");
}

#[cfg(not(madsim))]
#[tokio::test]
async fn concurrent_sends_within_the_linger_time_share_a_batch() {
    let (address, state) = start_fake_broker().await;
    let admin = Admin::connect(client_config(&address))
        .await
        .expect("admin connects");
    admin.create_topic("l", 1, 1).await.expect("creates");
    let config = ProducerConfig {
        linger: Duration::from_millis(20),
        batch_records_max: 4,
        ..ProducerConfig::default()
    };
    let producer = Arc::new(
        Producer::new(admin.cluster().clone(), config)
            .await
            .expect("producer"),
    );
    let mut tasks = Vec::new();
    for index in 0..10 {
        let producer = Arc::clone(&producer);
        tasks.push(tokio::spawn(async move {
            producer
                .send("l", Some(0), None, Some(Bytes::from(format!("v{index}"))))
                .await
        }));
    }
    let mut offsets = Vec::new();
    for task in tasks {
        offsets.push(task.await.expect("task completes").expect("sent").offset);
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (0..10).collect::<Vec<i64>>());
    let batches = state.lock().expect("not poisoned").logs[&("l".to_string(), 0)].len();
    // Ten records, at most four per batch: three batches (4 + 4 + 2).
    assert_eq!(batches, 3);
}
