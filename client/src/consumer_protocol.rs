//! The "consumer" embedded protocol: what members put in JoinGroup metadata (their
//! subscription) and what the leader puts in SyncGroup (each member's assignment).
//!
//! ```text
//! bytes = [i16 version][ConsumerProtocolSubscription | ConsumerProtocolAssignment at version]
//! ```
//!
//! Members write version [`CONSUMER_PROTOCOL_VERSION`], which every client reads; on reading,
//! a newer version is decoded as the newest this library knows, as Java does (newer versions
//! only append fields).

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

/// The protocol type of consumer groups in JoinGroup.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";
/// The version this client writes.
pub const CONSUMER_PROTOCOL_VERSION: i16 = 0;

/// Encodes a subscription to `topics`.
pub fn encode_subscription(topics: &[String]) -> Bytes {
    let subscription = ConsumerProtocolSubscription::default().with_topics(
        topics
            .iter()
            .map(|topic| StrBytes::from_string(topic.clone()))
            .collect(),
    );
    encode_versioned(&subscription)
}

/// Decodes a member's subscription into its topic list.
pub fn decode_subscription(bytes: Bytes) -> Result<Vec<String>, String> {
    let subscription: ConsumerProtocolSubscription = decode_versioned(bytes)?;
    Ok(subscription
        .topics
        .iter()
        .map(|topic| topic.to_string())
        .collect())
}

/// Encodes an assignment (topic to partitions).
pub fn encode_assignment(assignment: &BTreeMap<String, Vec<i32>>) -> Bytes {
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        assignment
            .iter()
            .map(|(topic, partitions)| {
                AssignedPartitions::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partitions(partitions.clone())
            })
            .collect(),
    );
    encode_versioned(&assignment)
}

/// Decodes an assignment. An empty byte string (a member the leader gave nothing) is an
/// empty assignment.
pub fn decode_assignment(bytes: Bytes) -> Result<BTreeMap<String, Vec<i32>>, String> {
    if bytes.is_empty() {
        return Ok(BTreeMap::new());
    }
    let assignment: ConsumerProtocolAssignment = decode_versioned(bytes)?;
    let mut partitions_by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for assigned in assignment.assigned_partitions {
        partitions_by_topic
            .entry(assigned.topic.to_string())
            .or_default()
            .extend(assigned.partitions);
    }
    Ok(partitions_by_topic)
}

fn encode_versioned<M: Encodable>(message: &M) -> Bytes {
    let mut buffer = BytesMut::new();
    buffer.put_i16(CONSUMER_PROTOCOL_VERSION);
    message
        .encode(&mut buffer, CONSUMER_PROTOCOL_VERSION)
        .expect("consumer protocol messages at version 0 always encode");
    buffer.freeze()
}

fn decode_versioned<M: Decodable + Message>(mut bytes: Bytes) -> Result<M, String> {
    if bytes.len() < 2 {
        return Err("consumer protocol bytes shorter than the version".to_string());
    }
    let version = bytes.get_i16();
    if version < 0 {
        return Err(format!("negative consumer protocol version {version}"));
    }
    let version = version.min(M::VERSIONS.max);
    M::decode(&mut bytes, version).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_round_trips() {
        let topics = vec!["a".to_string(), "b".to_string()];
        let bytes = encode_subscription(&topics);
        assert_eq!(&bytes[..2], &[0, 0], "version prefix");
        assert_eq!(decode_subscription(bytes).expect("decodes"), topics);
    }

    #[test]
    fn assignment_round_trips() {
        let assignment =
            BTreeMap::from([("a".to_string(), vec![0, 2]), ("b".to_string(), vec![1])]);
        let bytes = encode_assignment(&assignment);
        assert_eq!(decode_assignment(bytes).expect("decodes"), assignment);
        assert!(decode_assignment(Bytes::new()).expect("empty").is_empty());
    }

    #[test]
    fn newer_versions_from_other_clients_decode() {
        // A Java consumer writes version 3 subscriptions with owned partitions and a rack.
        let subscription = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t")])
            .with_generation_id(4)
            .with_rack_id(Some(StrBytes::from_static_str("rack-1")));
        let mut buffer = BytesMut::new();
        buffer.put_i16(3);
        subscription.encode(&mut buffer, 3).expect("encodes");
        assert_eq!(
            decode_subscription(buffer.freeze()).expect("decodes"),
            vec!["t".to_string()]
        );
    }

    #[test]
    fn truncated_bytes_are_an_error() {
        assert!(decode_subscription(Bytes::from_static(&[0])).is_err());
        assert!(decode_assignment(Bytes::from_static(&[0, 0, 0])).is_err());
    }
}
