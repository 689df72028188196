//! ListOffsets: the earliest offset, the latest (the high watermark), the first offset at or
//! after a timestamp, or the record with the largest timestamp (v7).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::server::broker::{Broker, Replica};
use crate::server::partition::PartitionError;

/// The special timestamps of ListOffsets.
const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;
/// From v7: the offset and timestamp of the record with the largest timestamp.
const MAX_TIMESTAMP: i64 = -3;
/// From v8: the earliest offset kept on the broker's own disk, which here is all of the log.
const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;

pub fn list_offsets(
    broker: &Arc<Broker>,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|wanted| {
            let topic = broker.topic(&wanted.name.0);
            let partitions = wanted
                .partitions
                .into_iter()
                .map(|asked| {
                    let replica = topic.as_ref().map_or(Replica::NoSuchPartition, |topic| {
                        topic.replica(asked.partition_index)
                    });
                    let partition = match replica {
                        Replica::Here(partition) => Some(partition),
                        Replica::Elsewhere | Replica::NoSuchPartition => None,
                    };
                    let epoch = partition.map_or(0, |partition| {
                        i32::try_from(partition.leadership().term).unwrap_or(i32::MAX)
                    });
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(asked.partition_index)
                        // Leader epochs exist on the wire from version 4.
                        .with_leader_epoch(if version >= 4 { epoch } else { -1 });
                    let Some(partition) = partition else {
                        let error = match replica {
                            Replica::Elsewhere => ResponseError::NotLeaderOrFollower,
                            _ => ResponseError::UnknownTopicOrPartition,
                        };
                        return response
                            .with_error_code(error.code())
                            .with_offset(-1)
                            .with_timestamp(-1);
                    };
                    let current_epoch = if version >= 4 {
                        asked.current_leader_epoch
                    } else {
                        -1
                    };
                    if let Some(refusal) = partition.read_refusal(broker.node_id(), current_epoch) {
                        return response
                            .with_error_code(refusal.code())
                            .with_offset(-1)
                            .with_timestamp(-1);
                    }
                    match asked.timestamp {
                        LATEST_TIMESTAMP => response
                            .with_offset(partition.high_watermark())
                            .with_timestamp(-1),
                        EARLIEST_TIMESTAMP => response
                            .with_offset(partition.log_start_offset())
                            .with_timestamp(-1),
                        EARLIEST_LOCAL_TIMESTAMP if version >= 8 => response
                            .with_offset(partition.log_start_offset())
                            .with_timestamp(-1),
                        MAX_TIMESTAMP if version >= 7 => {
                            with_found(response, partition.offset_of_max_timestamp())
                        }
                        timestamp if timestamp >= 0 => {
                            with_found(response, partition.offset_for_timestamp(timestamp))
                        }
                        _ => response
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_offset(-1)
                            .with_timestamp(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(wanted.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// The answer to a search in the log: the record found, -1 for none, or a storage error.
fn with_found(
    response: ListOffsetsPartitionResponse,
    found: Result<Option<(i64, i64)>, PartitionError>,
) -> ListOffsetsPartitionResponse {
    match found {
        Ok(Some((offset, timestamp))) => response.with_offset(offset).with_timestamp(timestamp),
        Ok(None) => response.with_offset(-1).with_timestamp(-1),
        Err(error) => {
            tracing::warn!(%error, "offset lookup failed");
            response
                .with_error_code(ResponseError::KafkaStorageError.code())
                .with_offset(-1)
                .with_timestamp(-1)
        }
    }
}
