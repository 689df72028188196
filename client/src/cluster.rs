//! The cluster as the client sees it: brokers, topic layout, partition leaders, and one
//! connection per broker.
//!
//! ```text
//!  bootstrap "host:port" list ──Metadata──> ClusterMetadata { brokers, topics, leaders }
//!                                                  │
//!      leader_connection(topic, partition) ────────┴──> connections[broker id] (lazily opened)
//! ```
//!
//! Metadata is refreshed on demand: callers refresh after NOT_LEADER_OR_FOLLOWER,
//! UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE or a transport failure, and the cluster
//! drops a broker's connection once it has failed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::connection::{Connection, ConnectionConfig};
use crate::error::{check_error_code, ClusterError};

/// The default pause before retrying after a retriable failure.
pub const RETRY_BACKOFF_MS_DEFAULT: u64 = 100;

/// Settings shared by every client built on a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// "host:port" addresses to learn the cluster from; any one reachable broker suffices.
    pub bootstrap_servers: Vec<String>,
    /// Settings of each broker connection.
    pub connection: ConnectionConfig,
    /// Pause before retrying after a retriable failure.
    pub retry_backoff: Duration,
    /// Whether Metadata requests may auto-create topics (brokers may ignore it).
    pub allow_auto_topic_creation: bool,
}

impl ClientConfig {
    /// A configuration with defaults for everything but the bootstrap list.
    pub fn new<S: Into<String>>(bootstrap_servers: impl IntoIterator<Item = S>) -> Self {
        ClientConfig {
            bootstrap_servers: bootstrap_servers.into_iter().map(Into::into).collect(),
            connection: ConnectionConfig::default(),
            retry_backoff: Duration::from_millis(RETRY_BACKOFF_MS_DEFAULT),
            allow_auto_topic_creation: false,
        }
    }
}

/// Where a broker listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// The broker id.
    pub broker_id: i32,
    /// Its advertised host.
    pub host: String,
    /// Its advertised port.
    pub port: i32,
}

impl BrokerAddress {
    /// "host:port".
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// The partition index.
    pub partition: i32,
    /// The leader's broker id, or -1 when there is none.
    pub leader_id: i32,
    /// The leader epoch, or -1 when the broker does not report it.
    pub leader_epoch: i32,
    /// Broker ids of all replicas.
    pub replicas: Vec<i32>,
    /// Broker ids of the in-sync replicas.
    pub in_sync_replicas: Vec<i32>,
    /// The partition-level error the broker reported, if any.
    pub error: Option<ResponseError>,
}

/// One topic's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// The topic name.
    pub name: String,
    /// The topic-level error the broker reported, if any.
    pub error: Option<ResponseError>,
    /// Its partitions by index.
    pub partitions: BTreeMap<i32, PartitionMetadata>,
}

/// A snapshot of everything the client knows about the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// Brokers by id.
    pub brokers: BTreeMap<i32, BrokerAddress>,
    /// The controller's broker id, if reported.
    pub controller_id: Option<i32>,
    /// Topics by name (only those asked about, or all after a full refresh).
    pub topics: BTreeMap<String, TopicMetadata>,
}

impl ClusterMetadata {
    /// Merges a Metadata response: brokers are replaced, the returned topics are replaced,
    /// other topics are kept. A topic reported as unknown is removed.
    pub fn apply(&mut self, response: &MetadataResponse) {
        self.brokers = response
            .brokers
            .iter()
            .map(|broker| {
                let address = BrokerAddress {
                    broker_id: broker.node_id.0,
                    host: broker.host.to_string(),
                    port: broker.port,
                };
                (broker.node_id.0, address)
            })
            .collect();
        self.controller_id = (response.controller_id.0 >= 0).then_some(response.controller_id.0);
        for topic in &response.topics {
            let Some(name) = &topic.name else { continue };
            let error = check_error_code(topic.error_code).err();
            if error == Some(ResponseError::UnknownTopicOrPartition) {
                self.topics.remove(name.as_str());
                continue;
            }
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let metadata = PartitionMetadata {
                        partition: partition.partition_index,
                        leader_id: partition.leader_id.0,
                        leader_epoch: partition.leader_epoch,
                        replicas: partition.replica_nodes.iter().map(|id| id.0).collect(),
                        in_sync_replicas: partition.isr_nodes.iter().map(|id| id.0).collect(),
                        error: check_error_code(partition.error_code).err(),
                    };
                    (partition.partition_index, metadata)
                })
                .collect();
            let metadata = TopicMetadata {
                name: name.to_string(),
                error,
                partitions,
            };
            self.topics.insert(name.to_string(), metadata);
        }
    }

    /// The leader of a partition, as far as this snapshot knows.
    pub fn leader(&self, topic: &str, partition: i32) -> Result<i32, ClusterError> {
        let topic_metadata = self
            .topics
            .get(topic)
            .ok_or_else(|| ClusterError::UnknownTopic {
                topic: topic.to_string(),
            })?;
        let partition_metadata = topic_metadata.partitions.get(&partition).ok_or_else(|| {
            ClusterError::UnknownPartition {
                topic: topic.to_string(),
                partition,
            }
        })?;
        if partition_metadata.leader_id < 0 {
            return Err(ClusterError::LeaderNotAvailable {
                topic: topic.to_string(),
                partition,
            });
        }
        Ok(partition_metadata.leader_id)
    }
}

/// Connections and metadata shared by the admin client, producers and consumers.
///
/// A broker serves the requests of one connection in order, so clients sharing a `Cluster`
/// share that queue: a consumer's Fetch held for `max_wait` delays the others' requests on
/// the same broker. Give each consumer its own `Cluster` ([`crate::Consumer::connect`]) when
/// they stand for separate processes; group coordinator requests always use a connection of
/// their own.
pub struct Cluster {
    config: ClientConfig,
    metadata: Mutex<ClusterMetadata>,
    /// Open connections by broker id.
    connections: Mutex<BTreeMap<i32, Arc<Connection>>>,
    /// One lock per broker id, held while connecting to it, so that a slow or unreachable
    /// broker delays only the requests meant for it.
    connecting: Mutex<BTreeMap<i32, Arc<tokio::sync::Mutex<()>>>>,
    bootstrap_connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Cluster")
            .field("bootstrap_servers", &self.config.bootstrap_servers)
            .finish()
    }
}

impl Cluster {
    /// Connects to the first reachable bootstrap broker and loads the broker list.
    pub async fn connect(config: ClientConfig) -> Result<Arc<Cluster>, ClusterError> {
        assert!(
            !config.bootstrap_servers.is_empty(),
            "at least one bootstrap server is needed"
        );
        let cluster = Arc::new(Cluster {
            config,
            metadata: Mutex::new(ClusterMetadata::default()),
            connections: Mutex::new(BTreeMap::new()),
            connecting: Mutex::new(BTreeMap::new()),
            bootstrap_connection: tokio::sync::Mutex::new(None),
        });
        cluster.refresh_metadata(Some(&[])).await?;
        Ok(cluster)
    }

    /// The configuration this cluster was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// A copy of the current metadata.
    pub fn metadata(&self) -> ClusterMetadata {
        lock(&self.metadata).clone()
    }

    /// Refreshes metadata for `topics` (`None`: every topic), trying brokers in turn.
    pub async fn refresh_metadata(&self, topics: Option<&[String]>) -> Result<(), ClusterError> {
        let connection = self.any_connection().await?;
        let version = connection.version(ApiKey::Metadata)?;
        let request = metadata_request(topics, version, self.config.allow_auto_topic_creation);
        let response = match connection.send(&request, version).await {
            Ok(response) => response,
            Err(error) => {
                self.forget_connection(&connection).await;
                return Err(error.into());
            }
        };
        lock(&self.metadata).apply(&response);
        Ok(())
    }

    /// The metadata of one topic, refreshing once if it is unknown or has partitions
    /// without a leader.
    pub async fn topic_metadata(&self, topic: &str) -> Result<TopicMetadata, ClusterError> {
        let cached = lock(&self.metadata).topics.get(topic).cloned();
        if let Some(metadata) = cached {
            if metadata
                .partitions
                .values()
                .all(|partition| partition.leader_id >= 0)
            {
                return Ok(metadata);
            }
        }
        self.refresh_metadata(Some(&[topic.to_string()])).await?;
        lock(&self.metadata)
            .topics
            .get(topic)
            .cloned()
            .ok_or_else(|| ClusterError::UnknownTopic {
                topic: topic.to_string(),
            })
    }

    /// The number of partitions of `topic`, refreshing metadata if it is unknown.
    pub async fn partition_count(&self, topic: &str) -> Result<i32, ClusterError> {
        let metadata = self.topic_metadata(topic).await?;
        if metadata.partitions.is_empty() {
            return Err(ClusterError::UnknownTopic {
                topic: topic.to_string(),
            });
        }
        Ok(metadata.partitions.len() as i32)
    }

    /// The leader of a partition according to cached metadata, refreshing once when unknown.
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<i32, ClusterError> {
        let cached = lock(&self.metadata).leader(topic, partition);
        match cached {
            Ok(leader) => Ok(leader),
            Err(_) => {
                self.refresh_metadata(Some(&[topic.to_string()])).await?;
                lock(&self.metadata).leader(topic, partition)
            }
        }
    }

    /// A connection to the leader of a partition, with the leader's broker id.
    pub async fn leader_connection(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(i32, Arc<Connection>), ClusterError> {
        let leader = self.leader(topic, partition).await?;
        Ok((leader, self.broker_connection(leader).await?))
    }

    /// Records the address of a broker learnt outside Metadata (e.g. from FindCoordinator).
    pub fn add_broker(&self, broker: BrokerAddress) {
        lock(&self.metadata)
            .brokers
            .insert(broker.broker_id, broker);
    }

    /// The open connection to `broker_id`, opening one if needed.
    pub async fn broker_connection(&self, broker_id: i32) -> Result<Arc<Connection>, ClusterError> {
        if let Some(connection) = self.open_connection(broker_id) {
            return Ok(connection);
        }
        let connect_lock = Arc::clone(
            lock(&self.connecting)
                .entry(broker_id)
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(()))),
        );
        let _connecting = connect_lock.lock().await;
        // Another task may have connected while this one waited for the lock.
        if let Some(connection) = self.open_connection(broker_id) {
            return Ok(connection);
        }
        let address = lock(&self.metadata)
            .brokers
            .get(&broker_id)
            .map(BrokerAddress::address)
            .ok_or(ClusterError::UnknownBroker { broker_id })?;
        let connection = Arc::new(Connection::connect(&address, &self.config.connection).await?);
        lock(&self.connections).insert(broker_id, Arc::clone(&connection));
        Ok(connection)
    }

    fn open_connection(&self, broker_id: i32) -> Option<Arc<Connection>> {
        let connections = lock(&self.connections);
        let connection = connections.get(&broker_id)?;
        (!connection.is_closed()).then(|| Arc::clone(connection))
    }

    /// Drops a failed connection so the next use reconnects.
    pub async fn forget_connection(&self, connection: &Arc<Connection>) {
        connection.close("forgotten after a failure".to_string());
        lock(&self.connections).retain(|_, open| !Arc::ptr_eq(open, connection));
        let mut bootstrap = self.bootstrap_connection.lock().await;
        if bootstrap
            .as_ref()
            .is_some_and(|open| Arc::ptr_eq(open, connection))
        {
            *bootstrap = None;
        }
    }

    /// A connection to any broker: an open one if there is one, else the known brokers and
    /// then the bootstrap list, in order.
    pub async fn any_connection(&self) -> Result<Arc<Connection>, ClusterError> {
        let open = lock(&self.connections)
            .values()
            .find(|open| !open.is_closed())
            .cloned();
        if let Some(connection) = open {
            return Ok(connection);
        }
        let broker_ids: Vec<i32> = lock(&self.metadata).brokers.keys().copied().collect();
        let mut last_error = "no broker known".to_string();
        for broker_id in broker_ids {
            match self.broker_connection(broker_id).await {
                Ok(connection) => return Ok(connection),
                Err(error) => last_error = error.to_string(),
            }
        }
        let mut bootstrap = self.bootstrap_connection.lock().await;
        if let Some(connection) = bootstrap.as_ref() {
            if !connection.is_closed() {
                return Ok(Arc::clone(connection));
            }
        }
        for address in &self.config.bootstrap_servers {
            match Connection::connect(address, &self.config.connection).await {
                Ok(connection) => {
                    let connection = Arc::new(connection);
                    *bootstrap = Some(Arc::clone(&connection));
                    return Ok(connection);
                }
                Err(error) => last_error = error.to_string(),
            }
        }
        Err(ClusterError::NoBrokerReachable { last_error })
    }

    /// Reacts to a failed request: drops the connection on transport errors and refreshes
    /// metadata for `topics` (best effort) so the next attempt finds the new leader.
    pub async fn recover(&self, connection: Option<&Arc<Connection>>, topics: &[String]) {
        if let Some(connection) = connection {
            if connection.is_closed() {
                self.forget_connection(connection).await;
            }
        }
        if let Err(error) = self.refresh_metadata(Some(topics)).await {
            tracing::debug!(%error, "metadata refresh failed");
        }
    }

    /// Sleeps for the configured retry backoff.
    pub async fn backoff(&self) {
        tokio::time::sleep(self.config.retry_backoff).await;
    }
}

/// Builds a Metadata request valid at `version`.
pub fn metadata_request(
    topics: Option<&[String]>,
    version: i16,
    allow_auto_topic_creation: bool,
) -> MetadataRequest {
    let topics = topics.map(|names| {
        names
            .iter()
            .map(|name| {
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
            })
            .collect()
    });
    let mut request = MetadataRequest::default().with_topics(topics);
    if version >= 4 {
        request = request.with_allow_auto_topic_creation(allow_auto_topic_creation);
    }
    request
}

/// Whether a broker error means the client's metadata is stale.
pub fn is_stale_metadata(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::NotLeaderOrFollower
            | ResponseError::UnknownTopicOrPartition
            | ResponseError::LeaderNotAvailable
            | ResponseError::FencedLeaderEpoch
            | ResponseError::UnknownLeaderEpoch
            | ResponseError::NotCoordinator
            | ResponseError::CoordinatorNotAvailable
    )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update of the metadata is a whole-value replacement, so a poisoned lock still
    // holds a consistent snapshot.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::BrokerId;

    fn response() -> MetadataResponse {
        let partition = |index: i32, leader: i32| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(BrokerId(leader))
                .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
        };
        MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(1))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(9092)])
            .with_controller_id(BrokerId(1))
            .with_topics(vec![MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("events"))))
                .with_partitions(vec![partition(0, 1), partition(1, -1)])])
    }

    #[test]
    fn apply_records_brokers_topics_and_leaders() {
        let mut metadata = ClusterMetadata::default();
        metadata.apply(&response());
        assert_eq!(metadata.brokers[&1].address(), "127.0.0.1:9092");
        assert_eq!(metadata.controller_id, Some(1));
        assert_eq!(metadata.leader("events", 0).expect("has a leader"), 1);
        assert!(matches!(
            metadata.leader("events", 1),
            Err(ClusterError::LeaderNotAvailable { .. })
        ));
        assert!(matches!(
            metadata.leader("events", 2),
            Err(ClusterError::UnknownPartition { .. })
        ));
        assert!(matches!(
            metadata.leader("other", 0),
            Err(ClusterError::UnknownTopic { .. })
        ));
    }

    #[test]
    fn unknown_topic_in_a_response_removes_it() {
        let mut metadata = ClusterMetadata::default();
        metadata.apply(&response());
        let gone = MetadataResponse::default().with_topics(vec![MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("events"))))
            .with_error_code(ResponseError::UnknownTopicOrPartition.code())]);
        metadata.apply(&gone);
        assert!(metadata.topics.is_empty());
    }

    #[test]
    fn metadata_request_encodes_at_every_client_version() {
        use kafka_protocol::protocol::Encodable;
        for version in 1..=12 {
            let request = metadata_request(Some(&["a".to_string()]), version, false);
            let mut buffer = bytes::BytesMut::new();
            request.encode(&mut buffer, version).expect("encodes");
        }
    }
}
