//! OffsetsForLeaderEpoch (KIP-101/KIP-320): where a leader epoch ends in the leader's log.
//!
//! A consumer that sees a partition's leader epoch change asks the new leader where the epoch
//! of its last fetched record ends; if that is below its position, its log was truncated
//! under it. In Skiff a replica's log only ever loses entries above the commit index, and
//! consumers read below it, so the answer is a check that always passes for them; it is served
//! so that clients can validate positions as they do against Kafka. The epochs are the Raft
//! terms the replica's log holds (see `LogTerms::epoch_end`).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::server::broker::{Broker, Replica};

/// Kafka's "no such epoch" answer.
const UNDEFINED_EPOCH: i32 = -1;
const UNDEFINED_OFFSET: i64 = -1;
/// Partitions one request may name.
pub const LEADER_EPOCH_PARTITIONS_MAX: usize = 10_000;

fn refused(partition: i32, error: ResponseError) -> EpochEndOffset {
    EpochEndOffset::default()
        .with_partition(partition)
        .with_error_code(error.code())
        .with_leader_epoch(UNDEFINED_EPOCH)
        .with_end_offset(UNDEFINED_OFFSET)
}

pub fn offsets_for_leader_epoch(
    broker: &Arc<Broker>,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut budget = LEADER_EPOCH_PARTITIONS_MAX;
    let topics = request
        .topics
        .into_iter()
        .map(|wanted| {
            let topic = broker.topic(&wanted.topic.0);
            let partitions = wanted
                .partitions
                .into_iter()
                .map(|asked| {
                    if budget == 0 {
                        return refused(asked.partition, ResponseError::PolicyViolation);
                    }
                    budget -= 1;
                    let replica = topic.as_ref().map_or(Replica::NoSuchPartition, |topic| {
                        topic.replica(asked.partition)
                    });
                    let partition = match replica {
                        Replica::Here(partition) => partition,
                        Replica::Elsewhere => {
                            return refused(asked.partition, ResponseError::NotLeaderOrFollower)
                        }
                        Replica::NoSuchPartition => {
                            return refused(asked.partition, ResponseError::UnknownTopicOrPartition)
                        }
                    };
                    if let Some(refusal) =
                        partition.read_refusal(broker.node_id(), asked.current_leader_epoch)
                    {
                        return refused(asked.partition, refusal);
                    }
                    let (epoch, end_offset) = partition
                        .epoch_end_offset(asked.leader_epoch)
                        .unwrap_or((UNDEFINED_EPOCH, UNDEFINED_OFFSET));
                    EpochEndOffset::default()
                        .with_partition(asked.partition)
                        .with_leader_epoch(epoch)
                        .with_end_offset(end_offset)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(wanted.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
