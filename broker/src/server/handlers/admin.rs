//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs
//! (changing settings is in `alter_configs.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::consensus::NodeId;
use crate::server::broker::{Broker, TopicError, TopicShape};
use crate::server::topic_config::describe_topic;

/// Kafka's ConfigResource types.
pub(super) const RESOURCE_TOPIC: i8 = 2;
pub(super) const RESOURCE_BROKER: i8 = 4;
/// Kafka's ConfigSource values.
const SOURCE_TOPIC_CONFIG: i8 = 1;
const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
const SOURCE_DEFAULT_CONFIG: i8 = 5;

pub(super) fn topic_error_code(error: &TopicError) -> ResponseError {
    match error {
        TopicError::AlreadyExists(_) => ResponseError::TopicAlreadyExists,
        TopicError::Unknown(_) => ResponseError::UnknownTopicOrPartition,
        TopicError::InvalidName(_) => ResponseError::InvalidTopicException,
        TopicError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        TopicError::InvalidConfig(_) => ResponseError::InvalidConfig,
        TopicError::InvalidReplicationFactor(..) => ResponseError::InvalidReplicationFactor,
        TopicError::InvalidAssignment(_) => ResponseError::InvalidReplicaAssignment,
        TopicError::NotApplied(_) => ResponseError::RequestTimedOut,
        TopicError::TooManyTopics => ResponseError::PolicyViolation,
        TopicError::Storage(_) => ResponseError::KafkaStorageError,
    }
}

fn message(error: &TopicError) -> Option<StrBytes> {
    Some(StrBytes::from_string(error.to_string()))
}

/// A topic's shape as CreateTopics asks for it: counts, or (as Kafka requires, with both
/// counts -1) a replica list per partition, indexed 0, 1, 2, ...
fn manual_assignment(wanted: &CreatableTopic) -> Result<TopicShape, TopicError> {
    if wanted.assignments.is_empty() {
        return Ok(TopicShape::Counts {
            partitions: wanted.num_partitions,
            replication_factor: wanted.replication_factor,
        });
    }
    if wanted.num_partitions != -1 || wanted.replication_factor != -1 {
        return Err(TopicError::InvalidAssignment(
            "with a replica assignment, the partition count and replication factor must be -1"
                .to_string(),
        ));
    }
    let mut assignments: Vec<_> = wanted.assignments.iter().collect();
    assignments.sort_by_key(|assignment| assignment.partition_index);
    let mut placement = Vec::with_capacity(assignments.len());
    for (expected, assignment) in assignments.into_iter().enumerate() {
        if assignment.partition_index != expected as i32 {
            return Err(TopicError::InvalidAssignment(format!(
                "partitions must be numbered from 0 without gaps; partition {expected} is missing"
            )));
        }
        let replicas = assignment
            .broker_ids
            .iter()
            .map(|broker| NodeId::try_from(broker.0))
            .collect::<Result<Vec<NodeId>, _>>()
            .map_err(|_| {
                TopicError::InvalidAssignment(format!("partition {expected}: a negative broker id"))
            })?;
        placement.push(replicas);
    }
    Ok(TopicShape::Assigned(placement))
}

pub async fn create_topics(
    broker: &Arc<Broker>,
    version: i16,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for wanted in request.topics {
        let name = wanted.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(wanted.name.clone());
        let mut configs = BTreeMap::new();
        for config in &wanted.configs {
            if let Some(value) = &config.value {
                configs.insert(config.name.to_string(), value.to_string());
            }
        }
        let created = match manual_assignment(&wanted) {
            Err(error) => Err(error),
            Ok(shape) => {
                broker
                    .create_topic(&name, shape, configs, request.validate_only)
                    .await
            }
        };
        results.push(match created {
            Ok(topic) => {
                let described = describe_topic(&topic.log_config, &topic.configs, topic.internal)
                    .into_iter()
                    .map(|(config_name, value, is_override)| {
                        CreatableTopicConfigs::default()
                            .with_name(StrBytes::from_static_str(config_name))
                            .with_value(Some(StrBytes::from_string(value)))
                            .with_config_source(if is_override {
                                SOURCE_TOPIC_CONFIG
                            } else {
                                SOURCE_DEFAULT_CONFIG
                            })
                    })
                    .collect();
                let partitions = if request.validate_only {
                    wanted.num_partitions
                } else {
                    topic.partition_count()
                };
                let replication_factor = topic
                    .placement
                    .first()
                    .map_or(1, |placement| placement.replicas.len() as i16);
                if version < 5 {
                    // Partition counts and configs are on the wire from version 5.
                    result
                } else {
                    result
                        .with_topic_id(if version >= 7 {
                            topic.id
                        } else {
                            uuid::Uuid::nil()
                        })
                        .with_num_partitions(partitions)
                        .with_replication_factor(replication_factor)
                        .with_configs(Some(described))
                }
            }
            Err(error) => result
                .with_error_code(topic_error_code(&error).code())
                .with_error_message(message(&error)),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub async fn delete_topics(
    broker: &Arc<Broker>,
    version: i16,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    // Versions 0-5 name topics in `topic_names`; version 6 in `topics`, by name or id.
    let mut targets: Vec<(Option<TopicName>, uuid::Uuid)> = request
        .topic_names
        .into_iter()
        .map(|name| (Some(name), uuid::Uuid::nil()))
        .collect();
    targets.extend(
        request
            .topics
            .into_iter()
            .map(|state| (state.name, state.topic_id)),
    );
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let resolved = match &name {
            Some(name) => Some(name.0.to_string()),
            None => broker.topic_by_id(&id).map(|topic| topic.name.clone()),
        };
        let result = DeletableTopicResult::default()
            .with_name(name.clone())
            .with_topic_id(id);
        let Some(resolved) = resolved else {
            responses.push(result.with_error_code(ResponseError::UnknownTopicId.code()));
            continue;
        };
        responses.push(match broker.delete_topic(&resolved).await {
            Ok(deleted_id) => result
                .with_name(Some(TopicName(StrBytes::from_string(resolved))))
                .with_topic_id(deleted_id),
            Err(error) => result
                .with_error_code(topic_error_code(&error).code())
                .with_error_message(message(&error)),
        });
    }
    for response in responses.iter_mut() {
        if version < 5 {
            response.error_message = None;
        }
        if version < 6 {
            response.topic_id = uuid::Uuid::nil();
        }
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub async fn create_partitions(
    broker: &Arc<Broker>,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for wanted in request.topics {
        let result = CreatePartitionsTopicResult::default().with_name(wanted.name.clone());
        let outcome = if wanted.assignments.is_some() {
            Err(TopicError::InvalidPartitions(
                "manual replica assignments are not supported".to_string(),
            ))
        } else {
            broker
                .add_partitions(&wanted.name.0, wanted.count, request.validate_only)
                .await
        };
        results.push(match outcome {
            Ok(()) => result,
            Err(error) => result
                .with_error_code(topic_error_code(&error).code())
                .with_error_message(message(&error)),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

fn config_entry(name: &str, value: String, source: i8) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_value(Some(StrBytes::from_string(value)))
        .with_config_source(source)
        .with_read_only(source != SOURCE_TOPIC_CONFIG && source != SOURCE_DEFAULT_CONFIG)
}

pub fn describe_configs(
    broker: &Arc<Broker>,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let wanted = |name: &str| {
                resource
                    .configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|key| key.as_str() == name))
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match resource.resource_type {
                RESOURCE_TOPIC => match broker.topic(&resource.resource_name) {
                    Some(topic) => result.with_configs(
                        describe_topic(&topic.log_config, &topic.configs, topic.internal)
                            .into_iter()
                            .filter(|(name, _, _)| wanted(name))
                            .map(|(name, value, is_override)| {
                                config_entry(
                                    name,
                                    value,
                                    if is_override {
                                        SOURCE_TOPIC_CONFIG
                                    } else {
                                        SOURCE_DEFAULT_CONFIG
                                    },
                                )
                            })
                            .collect(),
                    ),
                    None => result
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_error_message(Some(StrBytes::from_string(format!(
                            "unknown topic {}",
                            resource.resource_name.as_str()
                        )))),
                },
                RESOURCE_BROKER => {
                    let own_id = broker.identity.node_id.to_string();
                    if !resource.resource_name.is_empty()
                        && resource.resource_name.as_str() != own_id
                    {
                        return result
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(StrBytes::from_string(format!(
                                "this is broker {own_id}"
                            ))));
                    }
                    result.with_configs(
                        broker
                            .config
                            .describe()
                            .into_iter()
                            .filter(|(name, _)| wanted(name))
                            .map(|(name, value)| {
                                config_entry(name, value, SOURCE_STATIC_BROKER_CONFIG)
                            })
                            .collect(),
                    )
                }
                _ => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "only topic and broker configs are described",
                    ))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
