//! The admin client: create and delete topics, change their settings, read metadata.
//!
//! ```text
//!  create_topics ──CreateTopics──> controller (or any broker, which forwards)
//!  set_topic_config ──IncrementalAlterConfigs──> controller (or any broker)
//!  wait_for_leaders ──Metadata (polled)──> every partition has a leader
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, DeleteTopicsRequest, IncrementalAlterConfigsRequest, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};

use crate::cluster::{ClientConfig, Cluster, ClusterMetadata};
use crate::connection::Connection;
use crate::error::{check_error_code, AdminError, ClusterError};

/// The most attempts of one admin request on retriable errors.
pub const ADMIN_ATTEMPTS_MAX: u32 = 10;
/// Kafka's ConfigResource type of a topic.
const RESOURCE_TOPIC: i8 = 2;
/// IncrementalAlterConfigs' SET operation.
const OPERATION_SET: i8 = 0;

/// How often [`Admin::wait_for_leaders`] polls metadata.
pub const LEADER_POLL_INTERVAL_MS: u64 = 50;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// The topic name.
    pub name: String,
    /// Its partition count.
    pub partitions: i32,
    /// Its replication factor.
    pub replication_factor: i16,
    /// Topic configuration overrides, e.g. `("min.insync.replicas", "2")`.
    pub configs: BTreeMap<String, String>,
}

impl NewTopic {
    /// A topic with no configuration overrides.
    pub fn new(name: &str, partitions: i32, replication_factor: i16) -> NewTopic {
        NewTopic {
            name: name.to_string(),
            partitions,
            replication_factor,
            configs: BTreeMap::new(),
        }
    }
}

/// Administrative operations.
#[derive(Debug, Clone)]
pub struct Admin {
    cluster: Arc<Cluster>,
}

impl Admin {
    /// Connects to the cluster.
    pub async fn connect(config: ClientConfig) -> Result<Admin, AdminError> {
        Ok(Admin {
            cluster: Cluster::connect(config).await?,
        })
    }

    /// An admin client over an existing cluster handle.
    pub fn new(cluster: Arc<Cluster>) -> Admin {
        Admin { cluster }
    }

    /// The cluster handle.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Creates one topic. Fails with [`AdminError::TopicAlreadyExists`] if it exists.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
    ) -> Result<(), AdminError> {
        let mut results = self
            .create_topics(&[NewTopic::new(name, partitions, replication_factor)])
            .await?;
        results
            .remove(name)
            .unwrap_or_else(|| Err(missing_result("create", name)))
    }

    /// Creates topics; returns each topic's outcome.
    pub async fn create_topics(
        &self,
        topics: &[NewTopic],
    ) -> Result<BTreeMap<String, Result<(), AdminError>>, AdminError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = create_topics_request(topics, self.timeout_ms());
            let Some((connection, response)) = self
                .send_attempt(ApiKey::CreateTopics, &request, attempt)
                .await?
            else {
                continue;
            };
            let not_controller = response
                .topics
                .iter()
                .any(|topic| topic.error_code == ResponseError::NotController.code());
            if not_controller && attempt < ADMIN_ATTEMPTS_MAX {
                self.retry_after(&connection).await;
                continue;
            }
            return Ok(response
                .topics
                .iter()
                .map(|topic| {
                    let name = topic.name.to_string();
                    let result = match check_error_code(topic.error_code) {
                        Ok(()) => Ok(()),
                        Err(ResponseError::TopicAlreadyExists) => {
                            Err(AdminError::TopicAlreadyExists {
                                topic: name.clone(),
                            })
                        }
                        Err(error) => Err(AdminError::Topic {
                            operation: "create",
                            topic: name.clone(),
                            error,
                            message: topic.error_message.as_deref().unwrap_or("").to_string(),
                        }),
                    };
                    (name, result)
                })
                .collect());
        }
    }

    /// Deletes topics; returns each topic's outcome.
    pub async fn delete_topics(
        &self,
        names: &[&str],
    ) -> Result<BTreeMap<String, Result<(), AdminError>>, AdminError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = DeleteTopicsRequest::default()
                .with_topic_names(
                    names
                        .iter()
                        .map(|name| TopicName(StrBytes::from_string(name.to_string())))
                        .collect(),
                )
                .with_timeout_ms(self.timeout_ms());
            let Some((connection, response)) = self
                .send_attempt(ApiKey::DeleteTopics, &request, attempt)
                .await?
            else {
                continue;
            };
            let not_controller = response
                .responses
                .iter()
                .any(|topic| topic.error_code == ResponseError::NotController.code());
            if not_controller && attempt < ADMIN_ATTEMPTS_MAX {
                self.retry_after(&connection).await;
                continue;
            }
            return Ok(response
                .responses
                .iter()
                .map(|topic| {
                    let name = topic
                        .name
                        .as_ref()
                        .map(|name| name.to_string())
                        .unwrap_or_default();
                    let result =
                        check_error_code(topic.error_code).map_err(|error| AdminError::Topic {
                            operation: "delete",
                            topic: name.clone(),
                            error,
                            message: topic.error_message.as_deref().unwrap_or("").to_string(),
                        });
                    (name, result)
                })
                .collect());
        }
    }

    /// Sets one of a topic's settings (IncrementalAlterConfigs SET), leaving the others as
    /// they are. Retried on retriable errors, a change the cluster did not apply in time
    /// included.
    pub async fn set_topic_config(
        &self,
        topic: &str,
        name: &str,
        value: &str,
    ) -> Result<(), AdminError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(StrBytes::from_string(topic.to_string()))
                    .with_configs(vec![AlterableConfig::default()
                        .with_name(StrBytes::from_string(name.to_string()))
                        .with_config_operation(OPERATION_SET)
                        .with_value(Some(StrBytes::from_string(value.to_string())))]),
            ]);
            let Some((connection, response)) = self
                .send_attempt(ApiKey::IncrementalAlterConfigs, &request, attempt)
                .await?
            else {
                continue;
            };
            let Some(result) = response.responses.first() else {
                return Err(missing_result("alter the settings of", topic));
            };
            match check_error_code(result.error_code) {
                Ok(()) => return Ok(()),
                Err(error) if error.is_retriable() && attempt < ADMIN_ATTEMPTS_MAX => {
                    self.retry_after(&connection).await;
                }
                Err(error) => {
                    return Err(AdminError::Topic {
                        operation: "alter the settings of",
                        topic: topic.to_string(),
                        error,
                        message: result.error_message.as_deref().unwrap_or("").to_string(),
                    })
                }
            }
        }
    }

    /// Fresh metadata for `topics` (`None`: every topic).
    pub async fn metadata(&self, topics: Option<&[String]>) -> Result<ClusterMetadata, AdminError> {
        self.cluster.refresh_metadata(topics).await?;
        Ok(self.cluster.metadata())
    }

    /// Polls metadata until every partition of `topic` has a leader, or `timeout` passes.
    pub async fn wait_for_leaders(&self, topic: &str, timeout: Duration) -> Result<(), AdminError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let topics = [topic.to_string()];
            if let Ok(metadata) = self.metadata(Some(&topics)).await {
                let ready = metadata.topics.get(topic).is_some_and(|topic_metadata| {
                    !topic_metadata.partitions.is_empty()
                        && topic_metadata
                            .partitions
                            .values()
                            .all(|partition| partition.leader_id >= 0)
                });
                if ready {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AdminError::Timeout {
                    what: format!("leaders of every partition of {topic}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(LEADER_POLL_INTERVAL_MS)).await;
        }
    }

    /// Sends one attempt of an admin request to the controller. `None`: a retriable
    /// transport error, waited out; the caller tries again.
    async fn send_attempt<R: Request>(
        &self,
        api_key: ApiKey,
        request: &R,
        attempt: u32,
    ) -> Result<Option<(Arc<Connection>, R::Response)>, AdminError> {
        let connection = self.controller_connection().await?;
        let version = connection.version(api_key)?;
        match connection.send(request, version).await {
            Ok(response) => Ok(Some((connection, response))),
            Err(error) if error.is_retriable() && attempt < ADMIN_ATTEMPTS_MAX => {
                self.retry_after(&connection).await;
                Ok(None)
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn controller_connection(&self) -> Result<Arc<Connection>, ClusterError> {
        let controller_id = self.cluster.metadata().controller_id;
        if let Some(controller_id) = controller_id {
            if let Ok(connection) = self.cluster.broker_connection(controller_id).await {
                return Ok(connection);
            }
        }
        self.cluster.any_connection().await
    }

    async fn retry_after(&self, connection: &Arc<Connection>) {
        self.cluster.recover(Some(connection), &[]).await;
        self.cluster.backoff().await;
    }

    fn timeout_ms(&self) -> i32 {
        let timeout = self.cluster.config().connection.request_timeout;
        timeout.as_millis().min(i32::MAX as u128) as i32
    }
}

/// Builds a CreateTopics request.
pub fn create_topics_request(topics: &[NewTopic], timeout_ms: i32) -> CreateTopicsRequest {
    use kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
    let topics = topics
        .iter()
        .map(|topic| {
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.name.clone())))
                .with_num_partitions(topic.partitions)
                .with_replication_factor(topic.replication_factor)
                .with_configs(
                    topic
                        .configs
                        .iter()
                        .map(|(name, value)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_string(name.clone()))
                                .with_value(Some(StrBytes::from_string(value.clone())))
                        })
                        .collect(),
                )
        })
        .collect();
    CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(timeout_ms)
}

fn missing_result(operation: &'static str, topic: &str) -> AdminError {
    AdminError::Topic {
        operation,
        topic: topic.to_string(),
        error: ResponseError::UnknownServerError,
        message: "the response did not mention the topic".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::{Decodable, Encodable};

    #[test]
    fn create_topics_request_round_trips() {
        let mut topic = NewTopic::new("events", 3, 2);
        topic
            .configs
            .insert("min.insync.replicas".to_string(), "2".to_string());
        let request = create_topics_request(&[topic], 5_000);
        for version in 2..=7 {
            let mut buffer = bytes::BytesMut::new();
            request.encode(&mut buffer, version).expect("encodes");
            let decoded =
                CreateTopicsRequest::decode(&mut buffer.freeze(), version).expect("decodes");
            assert_eq!(decoded, request);
        }
    }
}
