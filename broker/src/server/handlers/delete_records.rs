//! DeleteRecords: moves partitions' log start forward, as `kafka-delete-records` and the admin
//! clients' `deleteRecords` do. Records below the new start are gone for every client at once
//! (Fetch gets OFFSET_OUT_OF_RANGE, ListOffsets' earliest is the new start); the segments wholly
//! below it are deleted by the next retention pass (`log.retention.check.interval.ms`).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::server::broker::{Broker, Replica, TopicError};

/// The offset meaning "the high watermark": delete every record consumers can read.
const HIGH_WATERMARK: i64 = -1;

pub async fn delete_records(
    broker: &Arc<Broker>,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for wanted in request.topics {
        let mut partitions = Vec::with_capacity(wanted.partitions.len());
        for asked in wanted.partitions {
            let result =
                delete_below(broker, &wanted.name.0, asked.partition_index, asked.offset).await;
            let (low_watermark, error_code) = match result {
                Ok(low_watermark) => (low_watermark, 0),
                Err(error) => {
                    tracing::debug!(topic = %wanted.name.0, partition = asked.partition_index,
                        offset = asked.offset, ?error, "DeleteRecords refused");
                    (-1, error.code())
                }
            };
            partitions.push(
                DeleteRecordsPartitionResult::default()
                    .with_partition_index(asked.partition_index)
                    .with_low_watermark(low_watermark)
                    .with_error_code(error_code),
            );
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(wanted.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

/// Raises one partition's log start to `offset` (or to the high watermark for -1) and returns
/// the log start after it: the request's low watermark.
async fn delete_below(
    broker: &Arc<Broker>,
    topic_name: &str,
    index: i32,
    offset: i64,
) -> Result<i64, ResponseError> {
    let topic = broker
        .topic(topic_name)
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    if topic.internal {
        // The offsets topic's history is the group coordinator's state.
        return Err(ResponseError::InvalidTopicException);
    }
    let partition = match topic.replica(index) {
        Replica::Here(partition) => partition.clone(),
        Replica::Elsewhere => return Err(ResponseError::NotLeaderOrFollower),
        Replica::NoSuchPartition => return Err(ResponseError::UnknownTopicOrPartition),
    };
    if let Some(refusal) = partition.read_refusal(broker.node_id(), -1) {
        return Err(refusal);
    }
    if partition.is_offline() {
        return Err(ResponseError::KafkaStorageError);
    }
    // Kafka's rule: only what consumers can read may be deleted.
    let high_watermark = partition.high_watermark();
    let target = if offset == HIGH_WATERMARK {
        high_watermark
    } else {
        offset
    };
    if target < 0 || target > high_watermark {
        return Err(ResponseError::OffsetOutOfRange);
    }
    match broker.raise_log_start(topic_name, index, target).await {
        Ok(()) => Ok(partition.log_start_offset()),
        Err(TopicError::Unknown(_)) => Err(ResponseError::UnknownTopicOrPartition),
        Err(TopicError::NotApplied(_)) => Err(ResponseError::RequestTimedOut),
        Err(_) => Err(ResponseError::KafkaStorageError),
    }
}
