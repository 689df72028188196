//! Metadata: the live brokers, and each topic's partitions with their replicas, leaders and
//! epochs (a single broker leads everything, at epoch 0). In a cluster, a partition's leader
//! is what its Raft group says where this broker holds a replica, and what the leader's own
//! hellos claim elsewhere.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::server::broker::{Broker, Replica, Topic, TopicError};

/// Topics one Metadata request may name.
pub const METADATA_TOPICS_MAX: usize = 10_000;

fn describe_topic(broker: &Broker, version: i16, topic: &Topic) -> MetadataResponseTopic {
    let node = BrokerId(broker.identity.node_id);
    let cluster = broker.cluster.get();
    let live: Vec<i32> = match cluster {
        Some(cluster) => cluster
            .live_brokers()
            .iter()
            .map(|live| live.node_id as i32)
            .collect(),
        None => vec![node.0],
    };
    let partitions = (0..topic.partition_count())
        .map(|index| {
            let placement = topic.placement.get(index as usize);
            let replicas: Vec<BrokerId> = match placement {
                Some(placement) => placement
                    .replicas
                    .iter()
                    .map(|replica| BrokerId(*replica as i32))
                    .collect(),
                None => vec![node],
            };
            // (leader, epoch, this broker's replica is offline)
            let (leader, epoch, offline_here) = match (topic.replica(index), cluster, placement) {
                (Replica::Here(partition), _, _) if partition.is_replicated() => {
                    let leadership = partition.leadership();
                    (
                        leadership.leader.map(|leader| leader as i32),
                        leadership.term,
                        partition.is_offline(),
                    )
                }
                (Replica::Here(partition), _, _) => (Some(node.0), 0, partition.is_offline()),
                (_, Some(cluster), Some(placement)) => {
                    match cluster.heard_leader_of(placement.group) {
                        Some((leader, term)) => (Some(leader as i32), term, false),
                        None => (None, 0, false),
                    }
                }
                _ => (None, 0, false),
            };
            let leader = BrokerId(leader.filter(|leader| live.contains(leader)).unwrap_or(-1));
            let error = if offline_here && leader == node {
                ResponseError::KafkaStorageError.code()
            } else if leader.0 < 0 {
                ResponseError::LeaderNotAvailable.code()
            } else {
                0
            };
            let epoch = i32::try_from(epoch).unwrap_or(i32::MAX);
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(index)
                .with_leader_id(leader)
                .with_leader_epoch(if version >= 7 { epoch } else { -1 })
                .with_isr_nodes(
                    replicas
                        .iter()
                        .copied()
                        .filter(|replica| live.contains(&replica.0))
                        .collect(),
                )
                .with_replica_nodes(replicas)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(if version >= 10 {
            topic.id
        } else {
            uuid::Uuid::nil()
        })
        .with_is_internal(version >= 1 && topic.internal)
        .with_partitions(partitions)
}

fn missing_topic(name: TopicName, error: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(name))
        .with_error_code(error.code())
}

pub async fn metadata(
    broker: &Arc<Broker>,
    version: i16,
    request: MetadataRequest,
) -> MetadataResponse {
    // Version 0 asks for every topic with an empty list; later versions with a null one.
    let every_topic = match &request.topics {
        None => true,
        Some(topics) => topics.is_empty() && version == 0,
    };
    // Versions before 4 had no flag and always auto-created.
    let allow_auto_create = version < 4 || request.allow_auto_topic_creation;
    let topics = if every_topic {
        broker
            .topics()
            .iter()
            .map(|topic| describe_topic(broker, version, topic))
            .collect()
    } else {
        let wanted = request.topics.unwrap_or_default();
        let mut described = Vec::with_capacity(wanted.len().min(METADATA_TOPICS_MAX));
        for asked in wanted.into_iter().take(METADATA_TOPICS_MAX) {
            let Some(name) = asked.name else {
                let by_id = broker.topic_by_id(&asked.topic_id);
                described.push(match by_id {
                    Some(topic) => describe_topic(broker, version, &topic),
                    None => MetadataResponseTopic::default()
                        .with_topic_id(asked.topic_id)
                        .with_error_code(ResponseError::UnknownTopicId.code()),
                });
                continue;
            };
            described.push(
                match broker
                    .topic_or_auto_create(&name.0, allow_auto_create)
                    .await
                {
                    Ok(topic) => describe_topic(broker, version, &topic),
                    Err(TopicError::InvalidName(_)) => {
                        missing_topic(name, ResponseError::InvalidTopicException)
                    }
                    Err(TopicError::Unknown(_)) => {
                        missing_topic(name, ResponseError::UnknownTopicOrPartition)
                    }
                    Err(error) => {
                        tracing::warn!(%error, "auto-creating a topic failed");
                        missing_topic(name, ResponseError::LeaderNotAvailable)
                    }
                },
            );
        }
        described
    };
    let (brokers, cluster_id, controller) = match broker.cluster.get() {
        Some(cluster) => (
            cluster
                .live_brokers()
                .into_iter()
                .map(|live| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(live.node_id as i32))
                        .with_host(StrBytes::from_string(live.host))
                        .with_port(i32::from(live.port))
                })
                .collect(),
            cluster.cluster_id.clone(),
            // Any broker forwards topic changes to the active controller, so before one is
            // elected this broker names itself rather than leave admin clients waiting.
            cluster
                .controller()
                .map_or(broker.identity.node_id, |controller| controller as i32),
        ),
        None => (
            vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(broker.identity.node_id))
                .with_host(StrBytes::from_string(broker.config.advertised_host.clone()))
                .with_port(i32::from(broker.config.advertised_port))],
            broker.identity.cluster_id.clone(),
            broker.identity.node_id,
        ),
    };
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id((version >= 2).then(|| StrBytes::from_string(cluster_id)))
        .with_controller_id(BrokerId(if version >= 1 { controller } else { -1 }))
        .with_topics(topics)
}
