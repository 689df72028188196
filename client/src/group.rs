//! Membership of a consumer group with the classic protocol, and offset commits.
//!
//! ```text
//!  FindCoordinator ─> JoinGroup ─(MEMBER_ID_REQUIRED: rejoin with the given id)─> JoinGroup
//!        │                                   │ leader: range-assign every member's topics
//!        │                                   ▼
//!        │                              SyncGroup ─> this member's assignment
//!        ▼
//!  Heartbeat every interval ── REBALANCE_IN_PROGRESS / ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID
//!                              ──> rejoin on the next poll
//!  OffsetCommit / OffsetFetch / LeaveGroup go to the coordinator too.
//! ```
//!
//! NOT_COORDINATOR and COORDINATOR_NOT_AVAILABLE make the member look the coordinator up
//! again; every loop here is bounded by [`GROUP_ATTEMPTS_MAX`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use crate::assignor::{assign_range, RANGE_ASSIGNOR_NAME};
use crate::cluster::{BrokerAddress, Cluster};
use crate::connection::Connection;
use crate::consumer_protocol::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription,
    CONSUMER_PROTOCOL_TYPE,
};
use crate::error::{check_error_code, ClusterError, ConsumeError};

/// The most attempts of one group operation (a join, a commit, a coordinator lookup).
pub const GROUP_ATTEMPTS_MAX: u32 = 20;
/// Generation id used by commits from a consumer that is not a group member.
pub const NO_GENERATION: i32 = -1;
/// Offset reported by OffsetFetch when nothing was committed.
pub const NO_COMMITTED_OFFSET: i64 = -1;
/// Default session timeout.
pub const SESSION_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Default rebalance timeout (how long the coordinator waits for members to rejoin).
pub const REBALANCE_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// Default heartbeat interval.
pub const HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 1_000;

const _: () = assert!(HEARTBEAT_INTERVAL_MS_DEFAULT * 3 <= SESSION_TIMEOUT_MS_DEFAULT);

/// A topic and a partition.
pub type TopicPartition = (String, i32);

/// Group settings.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// The group id.
    pub group_id: String,
    /// Time without heartbeats after which the coordinator removes this member.
    pub session_timeout: Duration,
    /// Time the coordinator waits for members to rejoin during a rebalance.
    pub rebalance_timeout: Duration,
    /// Time between heartbeats (sent from `poll`, so poll at least this often).
    pub heartbeat_interval: Duration,
}

impl GroupConfig {
    /// A configuration with default timeouts.
    pub fn new(group_id: &str) -> GroupConfig {
        GroupConfig {
            group_id: group_id.to_string(),
            session_timeout: Duration::from_millis(SESSION_TIMEOUT_MS_DEFAULT),
            rebalance_timeout: Duration::from_millis(REBALANCE_TIMEOUT_MS_DEFAULT),
            heartbeat_interval: Duration::from_millis(HEARTBEAT_INTERVAL_MS_DEFAULT),
        }
    }
}

/// The result of a completed join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedGeneration {
    /// The generation id.
    pub generation_id: i32,
    /// This member's id.
    pub member_id: String,
    /// Whether this member was the leader that computed the assignment.
    pub is_leader: bool,
    /// The partitions assigned to this member.
    pub assignment: Vec<TopicPartition>,
}

/// One member of a consumer group.
pub struct GroupMember {
    cluster: Arc<Cluster>,
    config: GroupConfig,
    member_id: String,
    generation_id: i32,
    coordinator: Option<Arc<Connection>>,
    last_heartbeat: Option<Instant>,
    needs_rejoin: bool,
}

impl std::fmt::Debug for GroupMember {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GroupMember")
            .field("group_id", &self.config.group_id)
            .field("member_id", &self.member_id)
            .field("generation_id", &self.generation_id)
            .finish()
    }
}

impl GroupMember {
    /// A member that has not joined yet.
    pub fn new(cluster: Arc<Cluster>, config: GroupConfig) -> GroupMember {
        GroupMember {
            cluster,
            config,
            member_id: String::new(),
            generation_id: NO_GENERATION,
            coordinator: None,
            last_heartbeat: None,
            needs_rejoin: true,
        }
    }

    /// The group id.
    pub fn group_id(&self) -> &str {
        &self.config.group_id
    }

    /// The member id ("" before the first join).
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The current generation id, or [`NO_GENERATION`].
    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    /// Whether the member must (re)join before consuming.
    pub fn needs_rejoin(&self) -> bool {
        self.needs_rejoin
    }

    /// Asks for a rejoin on the next poll.
    pub fn request_rejoin(&mut self) {
        self.needs_rejoin = true;
    }

    /// Joins the group subscribed to `topics` and returns the new generation.
    pub async fn join(&mut self, topics: &[String]) -> Result<JoinedGeneration, ConsumeError> {
        let mut last_reason = String::new();
        for _ in 0..GROUP_ATTEMPTS_MAX {
            match self.join_once(topics).await {
                Ok(Some(joined)) => {
                    self.needs_rejoin = false;
                    self.last_heartbeat = Some(Instant::now());
                    return Ok(joined);
                }
                Ok(None) => {}
                Err(error) => {
                    last_reason = error.to_string();
                    if !is_retriable_group_error(&error) {
                        return Err(error);
                    }
                    self.cluster.backoff().await;
                }
            }
        }
        Err(ConsumeError::JoinFailed {
            group_id: self.config.group_id.clone(),
            reason: last_reason,
        })
    }

    /// One JoinGroup (and SyncGroup) round; `Ok(None)` means "join again at once".
    async fn join_once(
        &mut self,
        topics: &[String],
    ) -> Result<Option<JoinedGeneration>, ConsumeError> {
        let coordinator = self.coordinator().await?;
        let version = coordinator.version(ApiKey::JoinGroup)?;
        let mut request = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.config.group_id.clone())))
            .with_session_timeout_ms(duration_ms(self.config.session_timeout))
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_protocol_type(StrBytes::from_static_str(CONSUMER_PROTOCOL_TYPE))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str(RANGE_ASSIGNOR_NAME))
                .with_metadata(encode_subscription(topics))]);
        if version >= 1 {
            request = request.with_rebalance_timeout_ms(duration_ms(self.config.rebalance_timeout));
        }
        // The coordinator holds JoinGroup until every member has rejoined.
        let timeout = self.config.rebalance_timeout + coordinator.request_timeout();
        let response = self
            .send_to_coordinator(&coordinator, &request, version, timeout)
            .await?;
        match check_error_code(response.error_code) {
            Ok(()) => {}
            Err(ResponseError::MemberIdRequired) => {
                self.member_id = response.member_id.to_string();
                return Ok(None);
            }
            Err(ResponseError::UnknownMemberId) => {
                self.member_id.clear();
                return Ok(None);
            }
            Err(ResponseError::RebalanceInProgress) => return Ok(None),
            Err(error) => return Err(self.coordinator_error(error, "JoinGroup")),
        }
        self.member_id = response.member_id.to_string();
        self.generation_id = response.generation_id;
        let is_leader = response.leader == response.member_id;
        let assignments = if is_leader {
            self.leader_assignments(&response).await?
        } else {
            Vec::new()
        };
        let Some(assignment) = self.sync(&coordinator, assignments).await? else {
            return Ok(None);
        };
        let mut partitions: Vec<TopicPartition> = Vec::new();
        for (topic, indexes) in assignment {
            partitions.extend(
                indexes
                    .into_iter()
                    .map(|partition| (topic.clone(), partition)),
            );
        }
        tracing::debug!(
            group_id = %self.config.group_id,
            member_id = %self.member_id,
            generation_id = self.generation_id,
            is_leader,
            ?partitions,
            "joined group"
        );
        Ok(Some(JoinedGeneration {
            generation_id: self.generation_id,
            member_id: self.member_id.clone(),
            is_leader,
            assignment: partitions,
        }))
    }

    /// The leader's work: decode every member's subscription and range-assign.
    async fn leader_assignments(
        &self,
        response: &JoinGroupResponse,
    ) -> Result<Vec<SyncGroupRequestAssignment>, ConsumeError> {
        let mut subscriptions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for member in &response.members {
            let topics = decode_subscription(member.metadata.clone()).unwrap_or_else(|error| {
                tracing::warn!(member_id = %member.member_id, %error, "undecodable subscription");
                Vec::new()
            });
            subscriptions.insert(member.member_id.to_string(), topics);
        }
        let mut all_topics: Vec<String> = subscriptions.values().flatten().cloned().collect();
        all_topics.sort();
        all_topics.dedup();
        self.cluster.refresh_metadata(Some(&all_topics)).await?;
        let metadata = self.cluster.metadata();
        let partition_counts: BTreeMap<String, i32> = all_topics
            .iter()
            .filter_map(|topic| {
                let topic_metadata = metadata.topics.get(topic)?;
                Some((topic.clone(), topic_metadata.partitions.len() as i32))
            })
            .filter(|(_, count)| *count > 0)
            .collect();
        let assignment = assign_range(&subscriptions, &partition_counts);
        Ok(assignment
            .iter()
            .map(|(member_id, partitions)| {
                SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member_id.clone()))
                    .with_assignment(encode_assignment(partitions))
            })
            .collect())
    }

    /// SyncGroup; `Ok(None)` means the group started another rebalance.
    async fn sync(
        &mut self,
        coordinator: &Arc<Connection>,
        assignments: Vec<SyncGroupRequestAssignment>,
    ) -> Result<Option<BTreeMap<String, Vec<i32>>>, ConsumeError> {
        let version = coordinator.version(ApiKey::SyncGroup)?;
        let mut request = SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.config.group_id.clone())))
            .with_generation_id(self.generation_id)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_assignments(assignments);
        if version >= 5 {
            request = request
                .with_protocol_type(Some(StrBytes::from_static_str(CONSUMER_PROTOCOL_TYPE)))
                .with_protocol_name(Some(StrBytes::from_static_str(RANGE_ASSIGNOR_NAME)));
        }
        let timeout = self.config.rebalance_timeout + coordinator.request_timeout();
        let response = self
            .send_to_coordinator(coordinator, &request, version, timeout)
            .await?;
        match check_error_code(response.error_code) {
            Ok(()) => {}
            Err(ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration) => {
                return Ok(None)
            }
            Err(ResponseError::UnknownMemberId) => {
                self.member_id.clear();
                return Ok(None);
            }
            Err(error) => return Err(self.coordinator_error(error, "SyncGroup")),
        }
        let assignment =
            decode_assignment(response.assignment).map_err(|message| ConsumeError::JoinFailed {
                group_id: self.config.group_id.clone(),
                reason: format!("undecodable assignment: {message}"),
            })?;
        Ok(Some(assignment))
    }

    /// Sends a heartbeat if the interval has passed. Rebalance errors set
    /// [`GroupMember::needs_rejoin`] rather than failing.
    pub async fn heartbeat_if_due(&mut self) -> Result<(), ConsumeError> {
        if self.needs_rejoin {
            return Ok(());
        }
        let due = self
            .last_heartbeat
            .is_none_or(|last| last.elapsed() >= self.config.heartbeat_interval);
        if !due {
            return Ok(());
        }
        let coordinator = self.coordinator().await?;
        let version = coordinator.version(ApiKey::Heartbeat)?;
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.config.group_id.clone())))
            .with_generation_id(self.generation_id)
            .with_member_id(StrBytes::from_string(self.member_id.clone()));
        let timeout = coordinator.request_timeout();
        let response = self
            .send_to_coordinator(&coordinator, &request, version, timeout)
            .await?;
        self.last_heartbeat = Some(Instant::now());
        match check_error_code(response.error_code) {
            Ok(()) => Ok(()),
            Err(error) => {
                self.absorb_membership_error(error);
                if is_membership_error(error) {
                    Ok(())
                } else {
                    Err(self.coordinator_error(error, "Heartbeat"))
                }
            }
        }
    }

    /// Commits `offsets` (the next offset to consume per partition) for the current
    /// generation, or as a non-member when this member never joined. Errors the broker
    /// answered with are retried where Kafka says so; a request that got no answer is not
    /// (see [`ConsumeError::CommitOutcomeUnknown`]).
    pub async fn commit(
        &mut self,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), ConsumeError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut last_error = None;
        for _ in 0..GROUP_ATTEMPTS_MAX {
            match self.commit_once(offsets).await {
                Ok(()) => return Ok(()),
                Err(error) if is_retriable_group_error(&error) => {
                    last_error = Some(error);
                    self.cluster.backoff().await;
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.expect("at least one attempt was made"))
    }

    async fn commit_once(
        &mut self,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), ConsumeError> {
        let coordinator = self.coordinator().await?;
        let version = coordinator.version(ApiKey::OffsetCommit)?;
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for ((topic, partition), offset) in offsets {
            topics.entry(topic.as_str()).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(*offset),
            );
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.config.group_id.clone())))
            .with_generation_id_or_member_epoch(self.generation_id)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let timeout = coordinator.request_timeout();
        let response = self
            .send_to_coordinator(&coordinator, &request, version, timeout)
            .await
            .map_err(|error| ConsumeError::CommitOutcomeUnknown {
                reason: error.to_string(),
            })?;
        let first_error = response
            .topics
            .iter()
            .flat_map(|topic| topic.partitions.iter())
            .find_map(|partition| check_error_code(partition.error_code).err());
        match first_error {
            None => Ok(()),
            Some(error) if is_membership_error(error) => {
                self.absorb_membership_error(error);
                Err(ConsumeError::RebalanceNeeded { error })
            }
            Some(error) => Err(self.coordinator_error(error, "OffsetCommit")),
        }
    }

    /// The committed offsets of `partitions`; partitions without a commit are absent.
    pub async fn committed(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, ConsumeError> {
        let mut last_error = None;
        for _ in 0..GROUP_ATTEMPTS_MAX {
            match self.committed_once(partitions).await {
                Ok(committed) => return Ok(committed),
                Err(error) if is_retriable_group_error(&error) => {
                    last_error = Some(error);
                    self.cluster.backoff().await;
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.expect("at least one attempt was made"))
    }

    async fn committed_once(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, ConsumeError> {
        let coordinator = self.coordinator().await?;
        let version = coordinator.version(ApiKey::OffsetFetch)?;
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in partitions {
            topics.entry(topic.as_str()).or_default().push(*partition);
        }
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.config.group_id.clone())))
            .with_topics(Some(
                topics
                    .into_iter()
                    .map(|(topic, indexes)| {
                        OffsetFetchRequestTopic::default()
                            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                            .with_partition_indexes(indexes)
                    })
                    .collect(),
            ));
        let timeout = coordinator.request_timeout();
        let response = self
            .send_to_coordinator(&coordinator, &request, version, timeout)
            .await?;
        if let Err(error) = check_error_code(response.error_code) {
            return Err(self.coordinator_error(error, "OffsetFetch"));
        }
        let mut committed = BTreeMap::new();
        for topic in &response.topics {
            for partition in &topic.partitions {
                if let Err(error) = check_error_code(partition.error_code) {
                    return Err(self.coordinator_error(error, "OffsetFetch"));
                }
                if partition.committed_offset != NO_COMMITTED_OFFSET {
                    committed.insert(
                        (topic.name.to_string(), partition.partition_index),
                        partition.committed_offset,
                    );
                }
            }
        }
        Ok(committed)
    }

    /// Leaves the group (best effort: errors are logged, not returned).
    pub async fn leave(&mut self) {
        if self.member_id.is_empty() {
            return;
        }
        let result = async {
            let coordinator = self.coordinator().await?;
            let version = coordinator.version(ApiKey::LeaveGroup)?;
            let member_id = StrBytes::from_string(self.member_id.clone());
            let mut request = LeaveGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(self.config.group_id.clone())));
            request = if version >= 3 {
                request.with_members(vec![MemberIdentity::default().with_member_id(member_id)])
            } else {
                request.with_member_id(member_id)
            };
            let timeout = coordinator.request_timeout();
            self.send_to_coordinator(&coordinator, &request, version, timeout)
                .await
        }
        .await;
        if let Err(error) = result {
            tracing::debug!(%error, "LeaveGroup failed");
        }
        self.member_id.clear();
        self.generation_id = NO_GENERATION;
        self.needs_rejoin = true;
    }

    async fn coordinator(&mut self) -> Result<Arc<Connection>, ConsumeError> {
        if let Some(coordinator) = &self.coordinator {
            if !coordinator.is_closed() {
                return Ok(Arc::clone(coordinator));
            }
        }
        self.coordinator = None;
        let connection = self.cluster.any_connection().await?;
        let version = connection.version(ApiKey::FindCoordinator)?;
        let mut request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(self.config.group_id.clone()));
        if version >= 1 {
            request = request.with_key_type(0);
        }
        let response = match connection.send(&request, version).await {
            Ok(response) => response,
            Err(error) => {
                self.cluster.forget_connection(&connection).await;
                return Err(error.into());
            }
        };
        if let Err(error) = check_error_code(response.error_code) {
            return Err(ConsumeError::Cluster(ClusterError::Broker(error)));
        }
        let address = BrokerAddress {
            broker_id: response.node_id.0,
            host: response.host.to_string(),
            port: response.port,
        };
        // A connection of its own, as Java's consumer does: a broker serves one connection's
        // requests in order, and the coordinator holds JoinGroup and SyncGroup until the
        // rebalance completes, which would stall every other request on a shared connection.
        let coordinator = Arc::new(
            Connection::connect(&address.address(), &self.cluster.config().connection).await?,
        );
        self.coordinator = Some(Arc::clone(&coordinator));
        Ok(coordinator)
    }

    async fn send_to_coordinator<R: kafka_protocol::protocol::Request>(
        &mut self,
        coordinator: &Arc<Connection>,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, ConsumeError> {
        match coordinator
            .send_with_timeout(request, version, timeout)
            .await
        {
            Ok(response) => Ok(response),
            Err(error) => {
                self.coordinator = None;
                coordinator.close(format!("coordinator request failed: {error}"));
                Err(error.into())
            }
        }
    }

    /// Maps a coordinator-level error, forgetting the coordinator when it moved.
    fn coordinator_error(&mut self, error: ResponseError, operation: &'static str) -> ConsumeError {
        if matches!(
            error,
            ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable
        ) {
            self.coordinator = None;
        }
        ConsumeError::Broker { operation, error }
    }

    fn absorb_membership_error(&mut self, error: ResponseError) {
        if !is_membership_error(error) {
            return;
        }
        if error == ResponseError::UnknownMemberId {
            self.member_id.clear();
            self.generation_id = NO_GENERATION;
        }
        self.needs_rejoin = true;
    }
}

/// Errors that mean "this member must rejoin the group".
pub fn is_membership_error(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::RebalanceInProgress
            | ResponseError::IllegalGeneration
            | ResponseError::UnknownMemberId
    )
}

fn is_retriable_group_error(error: &ConsumeError) -> bool {
    match error {
        ConsumeError::Cluster(error) => error.is_retriable(),
        ConsumeError::Broker { error, .. } => {
            error.is_retriable()
                || matches!(
                    error,
                    ResponseError::NotCoordinator
                        | ResponseError::CoordinatorNotAvailable
                        | ResponseError::CoordinatorLoadInProgress
                        | ResponseError::UnstableOffsetCommit
                )
        }
        _ => false,
    }
}

fn duration_ms(duration: Duration) -> i32 {
    duration.as_millis().min(i32::MAX as u128) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_errors_are_recognized() {
        assert!(is_membership_error(ResponseError::RebalanceInProgress));
        assert!(is_membership_error(ResponseError::IllegalGeneration));
        assert!(is_membership_error(ResponseError::UnknownMemberId));
        assert!(!is_membership_error(ResponseError::NotCoordinator));
    }

    #[test]
    fn coordinator_moves_are_retriable() {
        let error = ConsumeError::Broker {
            operation: "OffsetCommit",
            error: ResponseError::NotCoordinator,
        };
        assert!(is_retriable_group_error(&error));
        let error = ConsumeError::RebalanceNeeded {
            error: ResponseError::IllegalGeneration,
        };
        assert!(!is_retriable_group_error(&error));
    }
}
