//! The consumer: fetch positions, Fetch requests, offset resets, and group-driven assignment.
//!
//! ```text
//!  poll(timeout)
//!   ├─ subscribed?  rejoin if needed (group.rs), heartbeat if due
//!   ├─ positions:   committed offset (OffsetFetch) ─ else ─ ListOffsets earliest/latest
//!   ├─ Fetch:       one request per leader, concurrently; records below the position skipped
//!   │               OFFSET_OUT_OF_RANGE -> reset; NOT_LEADER... -> refresh metadata
//!   └─ records, in partition order then offset order
//! ```
//!
//! A history recorder can follow assignments through [`Consumer::assignment`],
//! [`Consumer::generation`] and the bounded event queue drained by
//! [`Consumer::drain_events`]. Offsets are committed only when asked ([`Consumer::commit`],
//! [`Consumer::commit_offsets`]); there is no auto-commit.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use crate::cluster::{is_stale_metadata, ClientConfig, Cluster};
use crate::connection::Connection;
use crate::error::{check_error_code, ClusterError, ConnectionError, ConsumeError};
use crate::group::{GroupConfig, GroupMember, TopicPartition};
use crate::records::decode_fetched;

/// The most events kept for [`Consumer::drain_events`]; older ones are dropped first.
pub const EVENTS_MAX: usize = 1_024;
/// Default longest time the broker holds a Fetch waiting for `fetch_min_bytes`.
pub const FETCH_MAX_WAIT_MS_DEFAULT: u64 = 500;
/// Default bytes the broker waits for before answering a Fetch.
pub const FETCH_MIN_BYTES_DEFAULT: i32 = 1;
/// Default bound on a whole Fetch response.
pub const FETCH_MAX_BYTES_DEFAULT: i32 = 16 * 1024 * 1024;
/// Default bound on one partition's data in a Fetch response.
pub const PARTITION_FETCH_MAX_BYTES_DEFAULT: i32 = 1024 * 1024;
/// ListOffsets timestamp meaning "the log start offset".
pub const EARLIEST_TIMESTAMP: i64 = -2;
/// ListOffsets timestamp meaning "the log end offset".
pub const LATEST_TIMESTAMP: i64 = -1;
/// Fetch isolation level: read uncommitted.
pub const READ_UNCOMMITTED: i8 = 0;

const _: () = assert!(PARTITION_FETCH_MAX_BYTES_DEFAULT <= FETCH_MAX_BYTES_DEFAULT);

/// Where to start when there is no valid position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// The log start offset.
    Earliest,
    /// The log end offset.
    Latest,
    /// Fail with [`ConsumeError::OffsetOutOfRange`].
    None,
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The group to join on [`Consumer::subscribe`] and to commit to; `None` for a consumer
    /// that only uses [`Consumer::assign`] and never commits.
    pub group: Option<GroupConfig>,
    /// Where to start without a committed offset, or after OFFSET_OUT_OF_RANGE.
    pub offset_reset: OffsetReset,
    /// Longest time the broker holds a Fetch.
    pub fetch_max_wait: Duration,
    /// Bytes the broker waits for before answering a Fetch.
    pub fetch_min_bytes: i32,
    /// Bound on a whole Fetch response.
    pub fetch_max_bytes: i32,
    /// Bound on one partition's data in a Fetch response.
    pub partition_fetch_max_bytes: i32,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            group: None,
            offset_reset: OffsetReset::Earliest,
            fetch_max_wait: Duration::from_millis(FETCH_MAX_WAIT_MS_DEFAULT),
            fetch_min_bytes: FETCH_MIN_BYTES_DEFAULT,
            fetch_max_bytes: FETCH_MAX_BYTES_DEFAULT,
            partition_fetch_max_bytes: PARTITION_FETCH_MAX_BYTES_DEFAULT,
        }
    }
}

/// One consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The key.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Option<Bytes>,
    /// The timestamp in milliseconds.
    pub timestamp: i64,
}

/// Something a history recorder may want to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerEvent {
    /// The consumer joined a generation and received these partitions.
    Assigned {
        /// The group generation id.
        generation_id: i32,
        /// This member's id.
        member_id: String,
        /// The partitions now owned.
        partitions: Vec<TopicPartition>,
    },
    /// The consumer gave up these partitions before rejoining or leaving.
    Revoked {
        /// The generation they belonged to.
        generation_id: i32,
        /// The partitions given up.
        partitions: Vec<TopicPartition>,
    },
    /// A position was reset by the offset reset policy.
    PositionReset {
        /// The partition.
        partition: TopicPartition,
        /// The new position.
        offset: i64,
    },
}

/// A Kafka consumer. Not shared between tasks: every method takes `&mut self`.
pub struct Consumer {
    cluster: Arc<Cluster>,
    config: ConsumerConfig,
    /// Assigned partitions and their positions (`None`: not resolved yet).
    positions: BTreeMap<TopicPartition, Option<i64>>,
    subscription: Option<Vec<String>>,
    group: Option<GroupMember>,
    events: VecDeque<ConsumerEvent>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Consumer")
            .field("positions", &self.positions)
            .field("subscription", &self.subscription)
            .field("group", &self.group)
            .finish()
    }
}

impl Consumer {
    /// Connects to the cluster.
    pub async fn connect(
        client: ClientConfig,
        config: ConsumerConfig,
    ) -> Result<Consumer, ConsumeError> {
        Ok(Consumer::new(Cluster::connect(client).await?, config))
    }

    /// A consumer over an existing cluster handle.
    pub fn new(cluster: Arc<Cluster>, config: ConsumerConfig) -> Consumer {
        let group = config
            .group
            .clone()
            .map(|group_config| GroupMember::new(Arc::clone(&cluster), group_config));
        Consumer {
            cluster,
            config,
            positions: BTreeMap::new(),
            subscription: None,
            group,
            events: VecDeque::new(),
        }
    }

    /// Consumes exactly these partitions (no group membership); positions start unresolved.
    pub fn assign(&mut self, partitions: Vec<TopicPartition>) {
        self.subscription = None;
        self.positions = partitions
            .into_iter()
            .map(|partition| (partition, None))
            .collect();
    }

    /// Joins the configured group on the next poll, subscribed to `topics`.
    pub fn subscribe(&mut self, topics: Vec<String>) -> Result<(), ConsumeError> {
        let group = self.group.as_mut().ok_or(ConsumeError::NoGroup)?;
        group.request_rejoin();
        self.subscription = Some(topics);
        Ok(())
    }

    /// Sets the next offset to fetch for an assigned partition.
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) -> Result<(), ConsumeError> {
        let position = self
            .positions
            .get_mut(&(topic.to_string(), partition))
            .ok_or_else(|| ConsumeError::NotAssigned {
                topic: topic.to_string(),
                partition,
            })?;
        *position = Some(offset);
        Ok(())
    }

    /// The next offset to fetch, if resolved.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.positions
            .get(&(topic.to_string(), partition))
            .copied()
            .flatten()
    }

    /// The assigned partitions, in order.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }

    /// The group generation id, when a member of a group.
    pub fn generation(&self) -> Option<i32> {
        let group = self.group.as_ref()?;
        (group.generation_id() >= 0).then_some(group.generation_id())
    }

    /// The group member id, when a member of a group.
    pub fn member_id(&self) -> Option<&str> {
        let group = self.group.as_ref()?;
        (!group.member_id().is_empty()).then_some(group.member_id())
    }

    /// Takes the events recorded since the last call, oldest first.
    pub fn drain_events(&mut self) -> Vec<ConsumerEvent> {
        self.events.drain(..).collect()
    }

    /// Fetches records, waiting up to `timeout` for some to arrive.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumedRecord>, ConsumeError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.maintain_membership().await?;
            self.resolve_positions().await?;
            let now = Instant::now();
            let remaining = deadline.saturating_duration_since(now);
            let wait = remaining.min(self.config.fetch_max_wait);
            let records = self.fetch_once(wait).await?;
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
        }
    }

    /// Commits the current position of every assigned partition.
    pub async fn commit(&mut self) -> Result<(), ConsumeError> {
        let offsets: BTreeMap<TopicPartition, i64> = self
            .positions
            .iter()
            .filter_map(|(partition, position)| Some((partition.clone(), (*position)?)))
            .collect();
        self.commit_offsets(offsets).await
    }

    /// Commits the given next-offsets-to-consume.
    pub async fn commit_offsets(
        &mut self,
        offsets: BTreeMap<TopicPartition, i64>,
    ) -> Result<(), ConsumeError> {
        let group = self.group.as_mut().ok_or(ConsumeError::NoGroup)?;
        group.commit(&offsets).await
    }

    /// The committed offsets of `partitions` (absent when nothing was committed).
    pub async fn committed(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, ConsumeError> {
        let group = self.group.as_mut().ok_or(ConsumeError::NoGroup)?;
        group.committed(partitions).await
    }

    /// Leaves the group (if a member) and drops the assignment.
    pub async fn close(mut self) {
        self.revoke_all();
        if let Some(group) = self.group.as_mut() {
            group.leave().await;
        }
    }

    async fn maintain_membership(&mut self) -> Result<(), ConsumeError> {
        let Some(topics) = self.subscription.clone() else {
            return Ok(());
        };
        let group = self.group.as_mut().expect("subscribe requires a group");
        group.heartbeat_if_due().await?;
        if !group.needs_rejoin() {
            return Ok(());
        }
        self.revoke_all();
        let group = self.group.as_mut().expect("subscribe requires a group");
        let joined = group.join(&topics).await?;
        self.positions = joined
            .assignment
            .iter()
            .map(|partition| (partition.clone(), None))
            .collect();
        self.push_event(ConsumerEvent::Assigned {
            generation_id: joined.generation_id,
            member_id: joined.member_id,
            partitions: joined.assignment,
        });
        Ok(())
    }

    fn revoke_all(&mut self) {
        if self.subscription.is_none() || self.positions.is_empty() {
            return;
        }
        let generation_id = self.group.as_ref().map_or(-1, GroupMember::generation_id);
        let partitions = self.assignment();
        self.positions.clear();
        self.push_event(ConsumerEvent::Revoked {
            generation_id,
            partitions,
        });
    }

    fn push_event(&mut self, event: ConsumerEvent) {
        if self.events.len() >= EVENTS_MAX {
            tracing::warn!("consumer event queue full; dropping the oldest event");
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Gives every partition without a position one: the committed offset, else the reset
    /// policy.
    async fn resolve_positions(&mut self) -> Result<(), ConsumeError> {
        let unresolved: Vec<TopicPartition> = self
            .positions
            .iter()
            .filter(|(_, position)| position.is_none())
            .map(|(partition, _)| partition.clone())
            .collect();
        if unresolved.is_empty() {
            return Ok(());
        }
        let committed = match self.group.as_mut() {
            Some(group) => group.committed(&unresolved).await?,
            None => BTreeMap::new(),
        };
        for partition in unresolved {
            let position = match committed.get(&partition) {
                Some(&offset) => offset,
                None => self.reset_offset(&partition, -1).await?,
            };
            self.positions.insert(partition, Some(position));
        }
        Ok(())
    }

    /// The offset the reset policy gives `partition`; `failed_offset` is for the error.
    async fn reset_offset(
        &mut self,
        partition: &TopicPartition,
        failed_offset: i64,
    ) -> Result<i64, ConsumeError> {
        let timestamp = match self.config.offset_reset {
            OffsetReset::Earliest => EARLIEST_TIMESTAMP,
            OffsetReset::Latest => LATEST_TIMESTAMP,
            OffsetReset::None => {
                return Err(ConsumeError::OffsetOutOfRange {
                    topic: partition.0.clone(),
                    partition: partition.1,
                    offset: failed_offset,
                })
            }
        };
        let offset = self.list_offset(partition, timestamp).await?;
        self.push_event(ConsumerEvent::PositionReset {
            partition: partition.clone(),
            offset,
        });
        Ok(offset)
    }

    /// The offset for `timestamp` (or [`EARLIEST_TIMESTAMP`] / [`LATEST_TIMESTAMP`]),
    /// retrying on stale metadata.
    pub async fn list_offset(
        &self,
        partition: &TopicPartition,
        timestamp: i64,
    ) -> Result<i64, ConsumeError> {
        let (topic, index) = (partition.0.as_str(), partition.1);
        let mut last_error = None;
        for _ in 0..crate::group::GROUP_ATTEMPTS_MAX {
            let attempt = async {
                let (_, connection) = self.cluster.leader_connection(topic, index).await?;
                let version = connection.version(ApiKey::ListOffsets)?;
                let request = list_offsets_request(topic, index, timestamp);
                let response = connection
                    .send(&request, version)
                    .await
                    .map_err(|error| (ConsumeError::from(error), Some(Arc::clone(&connection))));
                Ok::<_, ConsumeError>(response)
            }
            .await;
            let (error, connection) = match attempt {
                Ok(Ok(response)) => {
                    let result = response
                        .topics
                        .iter()
                        .flat_map(|topic_response| topic_response.partitions.iter())
                        .find(|partition_response| partition_response.partition_index == index);
                    match result.map(|found| (check_error_code(found.error_code), found.offset)) {
                        Some((Ok(()), offset)) => return Ok(offset),
                        Some((Err(error), _))
                            if is_stale_metadata(error) || error.is_retriable() =>
                        {
                            (ConsumeError::Cluster(ClusterError::Broker(error)), None)
                        }
                        Some((Err(error), _)) => {
                            return Err(ConsumeError::Broker {
                                operation: "ListOffsets",
                                error,
                            })
                        }
                        None => (
                            ConsumeError::Cluster(ClusterError::UnknownPartition {
                                topic: topic.to_string(),
                                partition: index,
                            }),
                            None,
                        ),
                    }
                }
                Ok(Err((error, connection))) => (error, connection),
                Err(error) => (error, None),
            };
            if let ConsumeError::Cluster(cluster_error) = &error {
                if !cluster_error.is_retriable() {
                    return Err(error);
                }
            }
            last_error = Some(error);
            self.cluster
                .recover(connection.as_ref(), &[topic.to_string()])
                .await;
            self.cluster.backoff().await;
        }
        Err(last_error.expect("at least one attempt was made"))
    }

    /// One round of Fetch requests, one per leader, sent concurrently.
    async fn fetch_once(&mut self, wait: Duration) -> Result<Vec<ConsumedRecord>, ConsumeError> {
        let plan = self.fetch_plan().await;
        if plan.is_empty() {
            tokio::time::sleep(wait).await;
            return Ok(Vec::new());
        }
        let mut in_flight = Vec::new();
        for (_, partitions) in plan {
            // Every plan entry holds at least one partition, all with the same connection.
            let connection = Arc::clone(&partitions[0].1);
            let positions: Vec<(TopicPartition, i64)> = partitions
                .into_iter()
                .map(|(partition, _, position)| (partition, position))
                .collect();
            let version = connection.version(ApiKey::Fetch)?;
            let request = fetch_request(&positions, wait, &self.config);
            let timeout = wait + connection.request_timeout();
            let task_connection = Arc::clone(&connection);
            let handle = tokio::spawn(async move {
                task_connection
                    .send_with_timeout(&request, version, timeout)
                    .await
            });
            in_flight.push((connection, positions, handle));
        }
        let mut records = Vec::new();
        let mut stale_topics: Vec<String> = Vec::new();
        for (connection, positions, handle) in in_flight {
            let result: Result<FetchResponse, ConnectionError> = match handle.await {
                Ok(result) => result,
                Err(join_error) => Err(ConnectionError::Closed {
                    address: connection.address().to_string(),
                    reason: format!("fetch task failed: {join_error}"),
                }),
            };
            match result {
                Ok(response) => {
                    self.absorb_fetch_response(
                        &response,
                        &positions,
                        &mut records,
                        &mut stale_topics,
                    )
                    .await?
                }
                Err(error) => {
                    tracing::debug!(%error, "fetch failed");
                    self.cluster.forget_connection(&connection).await;
                    stale_topics.extend(positions.iter().map(|(partition, _)| partition.0.clone()));
                }
            }
        }
        if !stale_topics.is_empty() {
            stale_topics.sort();
            stale_topics.dedup();
            self.cluster.recover(None, &stale_topics).await;
            self.cluster.backoff().await;
        }
        Ok(records)
    }

    /// Positioned partitions grouped by their leader's broker id.
    #[allow(clippy::type_complexity)]
    async fn fetch_plan(&mut self) -> BTreeMap<i32, Vec<(TopicPartition, Arc<Connection>, i64)>> {
        let mut plan: BTreeMap<i32, Vec<(TopicPartition, Arc<Connection>, i64)>> = BTreeMap::new();
        let positioned: Vec<(TopicPartition, i64)> = self
            .positions
            .iter()
            .filter_map(|(partition, position)| Some((partition.clone(), (*position)?)))
            .collect();
        let mut stale_topics = Vec::new();
        for (partition, position) in positioned {
            match self
                .cluster
                .leader_connection(&partition.0, partition.1)
                .await
            {
                Ok((leader, connection)) => plan
                    .entry(leader)
                    .or_default()
                    .push((partition, connection, position)),
                Err(error) => {
                    tracing::debug!(topic = %partition.0, partition = partition.1, %error, "no leader connection");
                    stale_topics.push(partition.0.clone());
                }
            }
        }
        if !stale_topics.is_empty() {
            stale_topics.sort();
            stale_topics.dedup();
            self.cluster.recover(None, &stale_topics).await;
        }
        plan
    }

    async fn absorb_fetch_response(
        &mut self,
        response: &FetchResponse,
        requested: &[(TopicPartition, i64)],
        records: &mut Vec<ConsumedRecord>,
        stale_topics: &mut Vec<String>,
    ) -> Result<(), ConsumeError> {
        if let Err(error) = check_error_code(response.error_code) {
            tracing::debug!(%error, "fetch failed as a whole");
            stale_topics.extend(requested.iter().map(|(partition, _)| partition.0.clone()));
            return Ok(());
        }
        for topic_response in &response.responses {
            let topic = topic_response.topic.to_string();
            for partition_data in &topic_response.partitions {
                let key = (topic.clone(), partition_data.partition_index);
                let Some(&(_, requested_position)) =
                    requested.iter().find(|(partition, _)| *partition == key)
                else {
                    continue;
                };
                if self.positions.get(&key) != Some(&Some(requested_position)) {
                    continue; // Reassigned or moved meanwhile.
                }
                match check_error_code(partition_data.error_code) {
                    Ok(()) => {}
                    Err(ResponseError::OffsetOutOfRange) => {
                        let offset = self.reset_offset(&key, requested_position).await?;
                        self.positions.insert(key, Some(offset));
                        continue;
                    }
                    Err(error) if is_stale_metadata(error) || error.is_retriable() => {
                        stale_topics.push(topic.clone());
                        continue;
                    }
                    Err(error) => {
                        return Err(ConsumeError::Broker {
                            operation: "Fetch",
                            error,
                        })
                    }
                }
                let Some(bytes) = partition_data.records.clone() else {
                    continue;
                };
                let fetched = decode_fetched(bytes, requested_position).map_err(|message| {
                    ConsumeError::CorruptBatch {
                        topic: topic.clone(),
                        partition: key.1,
                        message,
                    }
                })?;
                let mut next_position = requested_position;
                for record in fetched.records {
                    next_position = next_position.max(record.offset + 1);
                    records.push(ConsumedRecord {
                        topic: topic.clone(),
                        partition: key.1,
                        offset: record.offset,
                        key: record.key,
                        value: record.value,
                        timestamp: record.timestamp,
                    });
                }
                if let Some(next_offset) = fetched.next_offset {
                    next_position = next_position.max(next_offset);
                }
                self.positions.insert(key, Some(next_position));
            }
        }
        Ok(())
    }
}

/// Builds a sessionless Fetch request valid at every client version.
pub fn fetch_request(
    positions: &[(TopicPartition, i64)],
    wait: Duration,
    config: &ConsumerConfig,
) -> FetchRequest {
    let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    for ((topic, partition), position) in positions {
        topics.entry(topic.as_str()).or_default().push(
            FetchPartition::default()
                .with_partition(*partition)
                .with_fetch_offset(*position)
                .with_partition_max_bytes(config.partition_fetch_max_bytes),
        );
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(wait.as_millis().min(i32::MAX as u128) as i32)
        .with_min_bytes(config.fetch_min_bytes)
        .with_max_bytes(config.fetch_max_bytes)
        .with_isolation_level(READ_UNCOMMITTED)
        .with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

/// Builds a ListOffsets request for one partition, as a consumer (replica id -1).
pub fn list_offsets_request(topic: &str, partition: i32, timestamp: i64) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(READ_UNCOMMITTED)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)])])
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::{Decodable, Encodable};

    #[test]
    fn fetch_request_round_trips_at_every_client_version() {
        let positions = vec![
            (("a".to_string(), 0), 5),
            (("a".to_string(), 1), 7),
            (("b".to_string(), 0), 0),
        ];
        let request = fetch_request(
            &positions,
            Duration::from_millis(100),
            &ConsumerConfig::default(),
        );
        assert_eq!(request.topics.len(), 2);
        for version in 4..=12 {
            let mut buffer = bytes::BytesMut::new();
            request.encode(&mut buffer, version).expect("encodes");
            let decoded = FetchRequest::decode(&mut buffer.freeze(), version).expect("decodes");
            assert_eq!(decoded.topics, request.topics);
            assert_eq!(decoded.max_wait_ms, 100);
        }
    }

    #[test]
    fn list_offsets_request_round_trips_at_every_client_version() {
        let request = list_offsets_request("a", 2, EARLIEST_TIMESTAMP);
        for version in 1..=7 {
            let mut buffer = bytes::BytesMut::new();
            request.encode(&mut buffer, version).expect("encodes");
            let decoded =
                ListOffsetsRequest::decode(&mut buffer.freeze(), version).expect("decodes");
            assert_eq!(decoded, request);
        }
    }
}
