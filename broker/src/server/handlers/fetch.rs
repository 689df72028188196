//! Fetch: read whole batches below the high watermark, long-polling until `min_bytes` are
//! available or `max_wait_ms` passes.
//!
//! Fetch sessions (KIP-227) are declined by answering session id 0, which tells a client to send
//! full fetch requests; that is always correct, only less compact.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};

use crate::log::LogError;
use crate::server::broker::{Broker, Replica};
use crate::server::partition::PartitionError;

/// The longest a fetch may wait for data; longer requests are cut to this.
pub const FETCH_WAIT_MS_MAX: u64 = 30_000;
/// The most bytes one fetch response carries, whatever the client asks.
pub const FETCH_RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Partitions one fetch request may name.
pub const FETCH_PARTITIONS_MAX: usize = 10_000;

fn partition_data(index: i32, error: ResponseError) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(error.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(Bytes::new()))
}

/// Reads every requested partition once. Returns the response and the bytes it carries.
fn read_once(
    broker: &Broker,
    request: &FetchRequest,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let response_budget = (request.max_bytes.max(0) as usize).min(FETCH_RESPONSE_BYTES_MAX);
    let mut total = 0usize;
    let mut any_error = false;
    let mut topics = Vec::with_capacity(request.topics.len());
    for fetch_topic in request.topics.iter() {
        let topic = broker.topic(&fetch_topic.topic.0);
        let mut partitions = Vec::with_capacity(fetch_topic.partitions.len());
        for wanted in fetch_topic.partitions.iter() {
            let index = wanted.partition;
            let partition = match topic.as_ref().map(|topic| topic.replica(index)) {
                Some(Replica::Here(partition)) => partition,
                Some(Replica::Elsewhere) => {
                    any_error = true;
                    partitions.push(partition_data(index, ResponseError::NotLeaderOrFollower));
                    continue;
                }
                None | Some(Replica::NoSuchPartition) => {
                    any_error = true;
                    partitions.push(partition_data(
                        index,
                        ResponseError::UnknownTopicOrPartition,
                    ));
                    continue;
                }
            };
            let node = broker.node_id();
            if let Some(refusal) = partition.read_refusal(node, wanted.current_leader_epoch) {
                any_error = true;
                partitions.push(partition_data(index, refusal));
                continue;
            }
            let remaining = response_budget.saturating_sub(total);
            let limit = (wanted.partition_max_bytes.max(0) as usize).min(remaining);
            if limit == 0 && total > 0 {
                // The response is full; the client fetches this partition next time.
                let high_watermark = partition.high_watermark();
                partitions.push(
                    PartitionData::default()
                        .with_partition_index(index)
                        .with_high_watermark(high_watermark)
                        .with_last_stable_offset(high_watermark)
                        .with_log_start_offset(partition.log_start_offset())
                        .with_records(Some(Bytes::new())),
                );
                continue;
            }
            match partition.read(wanted.fetch_offset, limit.max(1)) {
                Ok((mut records, high_watermark, log_start)) => {
                    // Only the first partition with data may exceed the budget (one whole
                    // batch, so a large batch can always make progress).
                    if total > 0 && records.len() > remaining {
                        records = Bytes::new();
                    }
                    total += records.len();
                    partitions.push(
                        PartitionData::default()
                            .with_partition_index(index)
                            .with_high_watermark(high_watermark)
                            .with_last_stable_offset(high_watermark)
                            .with_log_start_offset(log_start)
                            .with_records(Some(records)),
                    );
                }
                Err(error) => {
                    any_error = true;
                    let code = match &error {
                        PartitionError::Log(LogError::OffsetOutOfRange { .. }) => {
                            ResponseError::OffsetOutOfRange
                        }
                        _ => {
                            tracing::warn!(topic = %partition.topic, partition = index, %error, "fetch failed");
                            ResponseError::KafkaStorageError
                        }
                    };
                    let mut data = partition_data(index, code);
                    data.high_watermark = partition.high_watermark();
                    data.log_start_offset = partition.log_start_offset();
                    partitions.push(data);
                }
            }
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(fetch_topic.topic.clone())
                .with_partitions(partitions),
        );
    }
    (topics, total, any_error)
}

/// Serves Fetch.
pub async fn fetch(broker: &Arc<Broker>, version: i16, request: FetchRequest) -> FetchResponse {
    let partition_count: usize = request
        .topics
        .iter()
        .map(|topic| topic.partitions.len())
        .sum();
    if partition_count > FETCH_PARTITIONS_MAX {
        return FetchResponse::default().with_error_code(ResponseError::InvalidRequest.code());
    }
    if request.session_epoch > 0 {
        // Incremental fetches need a session, and this broker never grants one.
        return FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code());
    }
    let wait = Duration::from_millis((request.max_wait_ms.max(0) as u64).min(FETCH_WAIT_MS_MAX));
    let deadline = broker.seams.clock.now() + wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    loop {
        // Register for wake-ups before reading, so an append between the read and the wait
        // is not missed.
        let notified = broker.data_visible.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (mut topics, total, any_error) = read_once(broker, &request);
        if version < 5 {
            // The log start offset is on the wire from version 5.
            for partition in topics
                .iter_mut()
                .flat_map(|topic| topic.partitions.iter_mut())
            {
                partition.log_start_offset = -1;
            }
        }
        let expired = broker.seams.clock.now() >= deadline;
        if total >= min_bytes.max(1) || any_error || expired {
            return FetchResponse::default()
                .with_session_id(0)
                .with_responses(topics);
        }
        tokio::select! {
            biased;
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}
