//! Produce: validate each batch, append it (deduplicating idempotent retries), then wait until
//! it is durable under the flush policy before answering acks=1/-1.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;

use crate::consensus::Term;
use crate::log::record_batch;
use crate::server::broker::{Broker, Replica, TopicError};
use crate::server::partition::{AppendOutcome, Partition, PartitionError};

/// The longest a producer may ask the broker to wait for durability.
pub const PRODUCE_TIMEOUT_MS_MAX: u64 = 5 * 60 * 1000;

/// What one partition's append came to, before waiting for durability.
/// The partition, the end offset an acknowledgement waits for, and the leader term the
/// appends hold in.
type AckWait = (Arc<Partition>, i64, Option<Term>);

struct PartitionAppend {
    response: PartitionProduceResponse,
    /// What to wait for, when something was appended (or found already appended).
    wait: Option<AckWait>,
}

fn failed(index: i32, error: ResponseError, message: impl Into<String>) -> PartitionAppend {
    PartitionAppend {
        response: PartitionProduceResponse::default()
            .with_index(index)
            .with_error_code(error.code())
            .with_base_offset(-1)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(-1)
            .with_error_message(Some(StrBytes::from_string(message.into()))),
        wait: None,
    }
}

/// Maps a refused append to Kafka's error code.
fn partition_error_code(error: &PartitionError) -> ResponseError {
    match error {
        PartitionError::Producer(producer) => ResponseError::try_from_code(producer.code())
            .unwrap_or(ResponseError::UnknownServerError),
        PartitionError::Log(log) => log.kafka_error(),
        PartitionError::Offline(_) => ResponseError::KafkaStorageError,
        PartitionError::NotLeader { .. } => ResponseError::NotLeaderOrFollower,
        PartitionError::Replication(_) => ResponseError::KafkaStorageError,
    }
}

/// Validates and appends one partition's records.
fn append_partition(
    broker: &Broker,
    partition: Arc<Partition>,
    records: &[u8],
    max_message_bytes: u32,
) -> PartitionAppend {
    let index = partition.index;
    let wall_ms = broker.seams.clock.wall_ms();
    let mut first_offset: Option<i64> = None;
    // The end of what this request must wait for: its own appends and any duplicates.
    let mut last_appended: Option<i64> = None;
    let mut wait_term: Option<Option<Term>> = None;
    for batch in record_batch::split_batches(records) {
        let batch = match batch {
            Ok(batch) => batch,
            Err(error) => return failed(index, error.kafka_error(), error.to_string()),
        };
        if batch.len() > max_message_bytes as usize {
            return failed(
                index,
                ResponseError::MessageTooLarge,
                format!(
                    "batch of {} bytes exceeds max.message.bytes {max_message_bytes}",
                    batch.len()
                ),
            );
        }
        let header = match record_batch::validate(batch) {
            Ok(header) => header,
            Err(error) => {
                tracing::warn!(topic = %partition.topic, partition = index, %error, "refused a corrupt batch");
                return failed(index, error.kafka_error(), error.to_string());
            }
        };
        if header.is_transactional() || header.is_control() {
            return failed(
                index,
                ResponseError::InvalidRecord,
                "transactional batches are not supported",
            );
        }
        let appended = partition.append_in_term(batch, &header, wall_ms);
        if let Ok((_, term)) = &appended {
            // The first batch's term: should a later batch of the request land in another
            // term, the wait then fails and the client retries the whole request.
            wait_term.get_or_insert(*term);
        }
        match appended.map(|(outcome, _)| outcome) {
            Ok(AppendOutcome::Appended(info)) => {
                first_offset.get_or_insert(info.base_offset);
                last_appended = Some(info.last_offset);
            }
            Ok(AppendOutcome::Duplicate {
                base_offset,
                last_offset,
            }) => {
                // The retry is answered with the original batch's offsets, but only once that
                // batch is durable: the original append may still be waiting for its sync.
                first_offset.get_or_insert(base_offset);
                last_appended =
                    Some(last_appended.map_or(last_offset, |last| last.max(last_offset)));
            }
            Err(error) => return failed(index, partition_error_code(&error), error.to_string()),
        }
    }
    let Some(base_offset) = first_offset else {
        return failed(
            index,
            ResponseError::InvalidRecord,
            "the request carried no record batch",
        );
    };
    PartitionAppend {
        response: PartitionProduceResponse::default()
            .with_index(index)
            .with_base_offset(base_offset)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(partition.log_start_offset()),
        wait: last_appended.map(|last| (partition, last + 1, wait_term.flatten())),
    }
}

/// Serves Produce. Returns `None` for acks=0, which Kafka never answers.
pub async fn produce(
    broker: &Arc<Broker>,
    version: i16,
    request: ProduceRequest,
) -> Option<ProduceResponse> {
    append(broker, version, request).await.finish().await
}

/// A Produce request whose batches are in the log, waiting to be answered.
pub struct AppendedProduce {
    version: i16,
    acks: i16,
    timeout: Duration,
    topics: Vec<TopicProduceResponse>,
    /// (partition slot, topic slot, what to wait for).
    waits: Vec<(usize, usize, AckWait)>,
}

/// The first half of Produce: validates and appends every batch, in request order. A connection
/// runs this before it reads its next request, so batches land in the order they were sent;
/// the wait for durability ([`AppendedProduce::finish`]) may overlap with later requests.
pub async fn append(
    broker: &Arc<Broker>,
    version: i16,
    request: ProduceRequest,
) -> AppendedProduce {
    let acks = request.acks;
    let mut topics = Vec::with_capacity(request.topic_data.len());
    let mut waits = Vec::new();
    for topic_data in request.topic_data {
        let name = topic_data.name.0.to_string();
        let topic = broker.topic_or_auto_create(&name, true).await;
        let mut responses = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            let index = data.index;
            let outcome = if !matches!(acks, -1..=1) {
                failed(
                    index,
                    ResponseError::InvalidRequiredAcks,
                    "acks must be 0, 1 or -1",
                )
            } else if request.transactional_id.is_some() {
                failed(
                    index,
                    ResponseError::TransactionalIdAuthorizationFailed,
                    "transactions are not supported",
                )
            } else {
                match (&topic, data.records) {
                    (Err(TopicError::Unknown(_)), _) | (Err(TopicError::InvalidName(_)), _) => {
                        failed(
                            index,
                            ResponseError::UnknownTopicOrPartition,
                            format!("unknown topic {name}"),
                        )
                    }
                    (Err(error), _) => {
                        failed(index, ResponseError::KafkaStorageError, error.to_string())
                    }
                    (Ok(_), None) => failed(index, ResponseError::InvalidRecord, "no records"),
                    (Ok(topic), Some(records)) => match topic.replica(index) {
                        Replica::NoSuchPartition => failed(
                            index,
                            ResponseError::UnknownTopicOrPartition,
                            format!("{name} has no partition {index}"),
                        ),
                        Replica::Elsewhere => failed(
                            index,
                            ResponseError::NotLeaderOrFollower,
                            format!("this broker holds no replica of {name}-{index}"),
                        ),
                        Replica::Here(partition)
                            if acks == -1 && partition.quorum_unreachable() =>
                        {
                            failed(
                                index,
                                ResponseError::NotEnoughReplicas,
                                "the leader has not heard from a majority of the replicas lately",
                            )
                        }
                        Replica::Here(partition) => append_partition(
                            broker,
                            partition.clone(),
                            &records,
                            topic.log_config.max_message_bytes,
                        ),
                    },
                }
            };
            if let Some(wait) = outcome.wait {
                waits.push((responses.len(), topics.len(), wait));
            }
            responses.push(outcome.response);
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_partition_responses(responses),
        );
    }
    AppendedProduce {
        version,
        acks,
        timeout: Duration::from_millis(
            (request.timeout_ms.max(0) as u64).min(PRODUCE_TIMEOUT_MS_MAX),
        ),
        topics,
        waits,
    }
}

impl AppendedProduce {
    /// The second half of Produce: waits until the appended batches are durable under the flush
    /// policy and builds the response. `None` for acks=0, which Kafka never answers.
    pub async fn finish(self) -> Option<ProduceResponse> {
        let AppendedProduce {
            version,
            acks,
            timeout,
            mut topics,
            waits,
        } = self;
        if acks == 0 {
            return None;
        }
        {
            for (partition_slot, topic_slot, (partition, end_offset, term)) in waits {
                let response: &mut PartitionProduceResponse =
                    &mut topics[topic_slot].partition_responses[partition_slot];
                match partition
                    .wait_acknowledgeable(end_offset, acks, timeout, term)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        response.error_code = ResponseError::RequestTimedOut.code();
                        response.error_message = Some(StrBytes::from_static_str(
                            "not durable within the request timeout",
                        ));
                    }
                    Err(error) => {
                        response.error_code = partition_error_code(&error).code();
                        response.error_message = Some(StrBytes::from_string(error.to_string()));
                    }
                }
            }
        }
        for partition in topics
            .iter_mut()
            .flat_map(|topic| topic.partition_responses.iter_mut())
        {
            fit_to_version(partition, version);
        }
        Some(ProduceResponse::default().with_responses(topics))
    }
}

/// Clears fields that do not exist at the negotiated version: the codec refuses to encode a
/// field its version lacks.
fn fit_to_version(partition: &mut PartitionProduceResponse, version: i16) {
    if version < 5 {
        partition.log_start_offset = -1;
    }
    if version < 8 {
        partition.error_message = None;
    }
}
