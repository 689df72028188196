//! Metadata: the one broker, and each topic's partitions led by it.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::server::broker::{Broker, Topic, TopicError};

/// Topics one Metadata request may name.
pub const METADATA_TOPICS_MAX: usize = 10_000;

fn describe_topic(broker: &Broker, version: i16, topic: &Topic) -> MetadataResponseTopic {
    let node = BrokerId(broker.identity.node_id);
    let partitions = topic
        .partitions
        .iter()
        .map(|partition| {
            let error = if partition.is_offline() {
                ResponseError::KafkaStorageError.code()
            } else {
                0
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(partition.index)
                .with_leader_id(node)
                .with_leader_epoch(if version >= 7 { 0 } else { -1 })
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
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
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(broker.identity.node_id))
            .with_host(StrBytes::from_string(broker.config.advertised_host.clone()))
            .with_port(i32::from(broker.config.advertised_port))])
        .with_cluster_id(
            (version >= 2).then(|| StrBytes::from_string(broker.identity.cluster_id.clone())),
        )
        .with_controller_id(BrokerId(if version >= 1 {
            broker.identity.node_id
        } else {
            -1
        }))
        .with_topics(topics)
}
