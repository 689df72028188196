//! The coordinator: routes requests to groups, owns the committed offsets, and keeps
//! the bounds that span groups.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::error::error_code;
use super::group_metadata::{
    join_error_response, sync_error_response, Group, GroupState, JoinParameters, Protocol, Waiter,
};
use super::offsets::{CommittedOffset, OffsetStore};
use super::subscription::CONSUMER_PROTOCOL_TYPE;
use super::{
    GroupConfig, GroupError, GroupOutput, OffsetRecord, ReplyToken, GROUPS_MAX,
    GROUP_COMMITTED_PARTITIONS_MAX, GROUP_ID_BYTES_MAX, GROUP_MEMBERS_MAX,
    GROUP_NAME_FIELD_BYTES_MAX, MEMBER_ASSIGNMENT_BYTES_MAX, MEMBER_ID_CLIENT_ID_BYTES_MAX,
    MEMBER_METADATA_BYTES_MAX, MEMBER_PROTOCOLS_MAX, OFFSETS_EXPIRY_GROUPS_MAX,
    REBALANCE_TIMEOUT_MS_MAX, TOPIC_NAME_BYTES_MAX,
};

/// The group type every group here has (ListGroups v5+).
const GROUP_TYPE_CLASSIC: &str = "classic";

/// An OffsetCommit checked against the group: the response to send once `records` are
/// durable, and the records to append to the offsets log (one per accepted partition).
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedCommit {
    pub response: OffsetCommitResponse,
    pub records: Vec<OffsetRecord>,
}

/// The classic group coordinator of a single broker owning all groups.
///
/// Equality compares the whole state, so tests can check that two runs with the same
/// inputs end in the same place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
    offsets: OffsetStore,
    /// Mixed into member ids so that two ids of one coordinator never collide, even if the
    /// driver repeats a seed.
    member_id_counter: u64,
    /// When the committed offsets were loaded: groups known only by their offsets have had
    /// no members here since then.
    loaded_at_ms: u64,
}

fn validate_group_id(group_id: &GroupId) -> Result<&str, GroupError> {
    let text = group_id.0.as_str();
    if text.is_empty() || text.len() > GROUP_ID_BYTES_MAX {
        return Err(GroupError::InvalidGroupId);
    }
    Ok(text)
}

fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// Cuts a string to at most `max_bytes` without splitting a character.
fn truncate_to_char_boundary(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> Self {
        config.assert_valid();
        Self {
            config,
            groups: BTreeMap::new(),
            offsets: OffsetStore::default(),
            member_id_counter: 0,
            loaded_at_ms: 0,
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// The state of a group as DescribeGroups would report it.
    pub fn group_state(&self, group_id: &str) -> GroupState {
        match self.groups.get(group_id) {
            Some(group) => group.state,
            None if self.offsets.has_group(group_id) => GroupState::Empty,
            None => GroupState::Dead,
        }
    }

    /// Groups known either by membership or by committed offsets.
    fn group_count(&self) -> usize {
        let offsets_only = self
            .offsets
            .group_ids()
            .filter(|group_id| !self.groups.contains_key(*group_id))
            .count();
        self.groups.len() + offsets_only
    }

    fn is_known_group(&self, group_id: &str) -> bool {
        self.groups.contains_key(group_id) || self.offsets.has_group(group_id)
    }

    /// `{client_id}-{uuid-like hex}`: the seed (drawn by the driver) makes ids differ
    /// across restarts, the counter makes them differ within one run.
    fn generate_member_id(&mut self, client_id: &str, member_id_seed: u64) -> String {
        self.member_id_counter += 1;
        let counter = self.member_id_counter;
        format!(
            "{}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            truncate_to_char_boundary(client_id, MEMBER_ID_CLIENT_ID_BYTES_MAX),
            member_id_seed >> 32,
            (member_id_seed >> 16) & 0xffff,
            member_id_seed & 0xffff,
            (counter >> 48) & 0xffff,
            counter & 0xffff_ffff_ffff,
        )
    }

    // ---- JoinGroup ----

    /// JoinGroup. The response for `token` is among the returned outputs or comes out
    /// of a later call (when the rebalance completes); other outputs answer other
    /// waiting requests.
    #[allow(clippy::too_many_arguments)]
    pub fn join_group(
        &mut self,
        now_ms: u64,
        token: ReplyToken,
        version: i16,
        request: JoinGroupRequest,
        client_id: &str,
        client_host: &str,
        member_id_seed: u64,
    ) -> Vec<GroupOutput> {
        let mut outputs = Vec::new();
        let waiter = Waiter { token, version };
        let member_id = request.member_id.as_str().to_owned();
        let result = self.join_group_checked(
            now_ms,
            waiter,
            &request,
            client_id,
            client_host,
            member_id_seed,
            &mut outputs,
        );
        if let Err(error) = result {
            outputs.push(GroupOutput::JoinResponse(
                token,
                join_error_response(version, error, &member_id),
            ));
        }
        outputs
    }

    #[allow(clippy::too_many_arguments)]
    fn join_group_checked(
        &mut self,
        now_ms: u64,
        waiter: Waiter,
        request: &JoinGroupRequest,
        client_id: &str,
        client_host: &str,
        member_id_seed: u64,
        outputs: &mut Vec<GroupOutput>,
    ) -> Result<(), GroupError> {
        let group_id = validate_group_id(&request.group_id)?.to_owned();
        let parameters = self.join_parameters(waiter.version, request, client_id, client_host)?;
        let member_id = request.member_id.as_str();
        if !self.groups.contains_key(&group_id) {
            if !member_id.is_empty() {
                return Err(GroupError::UnknownMemberId);
            }
            if !self.is_known_group(&group_id) && self.group_count() >= GROUPS_MAX {
                return Err(GroupError::CoordinatorNotAvailable);
            }
            self.groups
                .insert(group_id.clone(), Group::new(group_id.clone(), now_ms));
        }
        let config = self.config;
        if member_id.is_empty() {
            let new_member_id = self.generate_member_id(client_id, member_id_seed);
            let group = self.groups.get_mut(&group_id).expect("inserted above");
            group.join_new_member(&config, now_ms, waiter, parameters, new_member_id, outputs)
        } else {
            let group = self.groups.get_mut(&group_id).expect("checked above");
            group.join_existing_member(
                &config,
                now_ms,
                waiter,
                parameters,
                member_id.to_owned(),
                outputs,
            )
        }
    }

    fn join_parameters(
        &self,
        version: i16,
        request: &JoinGroupRequest,
        client_id: &str,
        client_host: &str,
    ) -> Result<JoinParameters, GroupError> {
        let session_timeout_ms = u64::try_from(request.session_timeout_ms)
            .map_err(|_| GroupError::InvalidSessionTimeout)?;
        if session_timeout_ms < self.config.session_timeout_ms_min
            || session_timeout_ms > self.config.session_timeout_ms_max
        {
            return Err(GroupError::InvalidSessionTimeout);
        }
        // JoinGroup v0 has no rebalance timeout; Kafka uses the session timeout.
        let rebalance_timeout_ms = match u64::try_from(request.rebalance_timeout_ms) {
            Ok(timeout_ms) if version >= 1 && timeout_ms > 0 => {
                timeout_ms.min(REBALANCE_TIMEOUT_MS_MAX)
            }
            _ => session_timeout_ms,
        };
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        let metadata_bytes: usize = request
            .protocols
            .iter()
            .map(|protocol| protocol.metadata.len())
            .sum();
        let names_too_long = request.protocol_type.len() > GROUP_NAME_FIELD_BYTES_MAX
            || request
                .protocols
                .iter()
                .any(|protocol| protocol.name.len() > GROUP_NAME_FIELD_BYTES_MAX)
            || request
                .group_instance_id
                .as_ref()
                .is_some_and(|instance| instance.len() > GROUP_NAME_FIELD_BYTES_MAX);
        if request.protocols.len() > MEMBER_PROTOCOLS_MAX
            || metadata_bytes > MEMBER_METADATA_BYTES_MAX
            || names_too_long
        {
            return Err(GroupError::InvalidRequest);
        }
        Ok(JoinParameters {
            version,
            session_timeout_ms,
            rebalance_timeout_ms,
            group_instance_id: request
                .group_instance_id
                .as_ref()
                .map(|instance| instance.as_str().to_owned()),
            protocol_type: request.protocol_type.as_str().to_owned(),
            protocols: request
                .protocols
                .iter()
                .map(|protocol| Protocol {
                    name: protocol.name.as_str().to_owned(),
                    metadata: protocol.metadata.clone(),
                })
                .collect(),
            client_id: client_id.to_owned(),
            client_host: client_host.to_owned(),
        })
    }

    // ---- SyncGroup ----

    /// SyncGroup. Followers wait for the leader: the response for `token` may come out of
    /// a later call.
    pub fn sync_group(
        &mut self,
        now_ms: u64,
        token: ReplyToken,
        version: i16,
        request: SyncGroupRequest,
    ) -> Vec<GroupOutput> {
        let mut outputs = Vec::new();
        if let Err(error) =
            self.sync_group_checked(now_ms, Waiter { token, version }, &request, &mut outputs)
        {
            outputs.push(GroupOutput::SyncResponse(token, sync_error_response(error)));
        }
        outputs
    }

    fn sync_group_checked(
        &mut self,
        now_ms: u64,
        waiter: Waiter,
        request: &SyncGroupRequest,
        outputs: &mut Vec<GroupOutput>,
    ) -> Result<(), GroupError> {
        let group_id = validate_group_id(&request.group_id)?;
        if request.assignments.len() > GROUP_MEMBERS_MAX
            || request
                .assignments
                .iter()
                .any(|assignment| assignment.assignment.len() > MEMBER_ASSIGNMENT_BYTES_MAX)
        {
            return Err(GroupError::InvalidRequest);
        }
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        let assignments: BTreeMap<String, Bytes> = request
            .assignments
            .iter()
            .map(|assignment| {
                (
                    assignment.member_id.as_str().to_owned(),
                    assignment.assignment.clone(),
                )
            })
            .collect();
        // Protocol type and name are only sent from v5 on.
        let (protocol_type, protocol_name) = if waiter.version >= 5 {
            (
                request.protocol_type.as_ref().map(|value| value.as_str()),
                request.protocol_name.as_ref().map(|value| value.as_str()),
            )
        } else {
            (None, None)
        };
        group.sync(
            now_ms,
            waiter,
            request.member_id.as_str(),
            request
                .group_instance_id
                .as_ref()
                .map(|value| value.as_str()),
            request.generation_id,
            protocol_type,
            protocol_name,
            assignments,
            outputs,
        )
    }

    // ---- Heartbeat ----

    /// Heartbeat, answered at once.
    pub fn heartbeat(
        &mut self,
        now_ms: u64,
        _version: i16,
        request: HeartbeatRequest,
    ) -> HeartbeatResponse {
        let result = validate_group_id(&request.group_id).and_then(|group_id| {
            let group = self
                .groups
                .get_mut(group_id)
                .ok_or(GroupError::UnknownMemberId)?;
            group.heartbeat(
                now_ms,
                request.member_id.as_str(),
                request
                    .group_instance_id
                    .as_ref()
                    .map(|value| value.as_str()),
                request.generation_id,
            )
        });
        HeartbeatResponse::default().with_error_code(error_code(result))
    }

    // ---- LeaveGroup ----

    /// LeaveGroup: v0-2 name one member in `member_id`, v3+ a batch in `members`. The
    /// response is immediate; the outputs answer requests of the members that left (and
    /// of the rest, if the rebalance completes at once).
    pub fn leave_group(
        &mut self,
        now_ms: u64,
        version: i16,
        request: LeaveGroupRequest,
    ) -> (LeaveGroupResponse, Vec<GroupOutput>) {
        let mut outputs = Vec::new();
        let leaving: Vec<MemberIdentity> = if version >= 3 {
            request.members.clone()
        } else {
            vec![MemberIdentity::default().with_member_id(request.member_id.clone())]
        };
        let group_id = match validate_group_id(&request.group_id) {
            Ok(group_id) => group_id.to_owned(),
            Err(error) => {
                return (
                    LeaveGroupResponse::default().with_error_code(error.code()),
                    outputs,
                )
            }
        };
        if leaving.len() > GROUP_MEMBERS_MAX {
            let response =
                LeaveGroupResponse::default().with_error_code(GroupError::InvalidRequest.code());
            return (response, outputs);
        }
        let config = self.config;
        let mut member_responses = Vec::new();
        for identity in &leaving {
            let result = match self.groups.get_mut(&group_id) {
                Some(group) => group.leave(
                    &config,
                    now_ms,
                    identity.member_id.as_str(),
                    identity
                        .group_instance_id
                        .as_ref()
                        .map(|value| value.as_str()),
                    &mut outputs,
                ),
                None => Err(GroupError::UnknownMemberId),
            };
            member_responses.push(
                MemberResponse::default()
                    .with_member_id(identity.member_id.clone())
                    .with_group_instance_id(identity.group_instance_id.clone())
                    .with_error_code(error_code(result)),
            );
        }
        let response = if version >= 3 {
            LeaveGroupResponse::default().with_members(member_responses)
        } else {
            // Before v3 the single member's outcome is the top-level error.
            LeaveGroupResponse::default().with_error_code(member_responses[0].error_code)
        };
        (response, outputs)
    }

    // ---- Timers ----

    /// Expires sessions and two-step joins, completes rebalances whose timeout passed,
    /// and forgets empty groups that hold no offsets.
    pub fn tick(&mut self, now_ms: u64) -> Vec<GroupOutput> {
        let mut outputs = Vec::new();
        let config = self.config;
        for group in self.groups.values_mut() {
            group.tick(&config, now_ms, &mut outputs);
        }
        let offsets = &self.offsets;
        self.groups.retain(|group_id, group| {
            group.state != GroupState::Empty
                || !group.pending_members.is_empty()
                || offsets.has_group(group_id)
        });
        self.assert_invariants();
        outputs
    }

    fn assert_invariants(&self) {
        for (group_id, group) in &self.groups {
            assert_eq!(&group.group_id, group_id);
            assert!(group.size() <= self.config.group_members_max);
            group.assert_invariants();
        }
        debug_assert!(self.group_count() <= GROUPS_MAX);
    }

    /// When `tick` must next be called, if anything is pending.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.groups
            .values()
            .filter_map(Group::next_deadline_ms)
            .min()
    }

    // ---- Administration ----

    pub fn describe_groups(
        &self,
        version: i16,
        request: &DescribeGroupsRequest,
    ) -> DescribeGroupsResponse {
        let groups = request
            .groups
            .iter()
            .map(|group_id| self.describe_group(version, group_id))
            .collect();
        DescribeGroupsResponse::default().with_groups(groups)
    }

    fn describe_group(&self, version: i16, group_id: &GroupId) -> DescribedGroup {
        let described = DescribedGroup::default().with_group_id(group_id.clone());
        if let Err(error) = validate_group_id(group_id) {
            return described.with_error_code(error.code());
        }
        let Some(group) = self.groups.get(group_id.0.as_str()) else {
            let state = self.group_state(group_id.0.as_str());
            // v6+ reports a missing group as an error; earlier versions as Dead.
            let error = if state == GroupState::Dead && version >= 6 {
                GroupError::GroupIdNotFound.code()
            } else {
                0
            };
            return described
                .with_error_code(error)
                .with_group_state(str_bytes(state.name()));
        };
        let stable = group.state == GroupState::Stable;
        let protocol_name = group.protocol_name.clone().unwrap_or_default();
        let members = group
            .members
            .values()
            .map(|member| {
                let described_member = DescribedGroupMember::default()
                    .with_member_id(str_bytes(&member.member_id))
                    .with_group_instance_id(member.group_instance_id.as_deref().map(str_bytes))
                    .with_client_id(str_bytes(&member.client_id))
                    .with_client_host(str_bytes(&member.client_host));
                // Metadata and assignment are only meaningful once the group is stable.
                if stable {
                    described_member
                        .with_member_metadata(
                            member
                                .protocols
                                .iter()
                                .find(|protocol| protocol.name == protocol_name)
                                .map(|protocol| protocol.metadata.clone())
                                .unwrap_or_default(),
                        )
                        .with_member_assignment(member.assignment.clone())
                } else {
                    described_member
                }
            })
            .collect();
        described
            .with_group_state(str_bytes(group.state.name()))
            .with_protocol_type(str_bytes(
                group.protocol_type.as_deref().unwrap_or_default(),
            ))
            .with_protocol_data(str_bytes(if stable { &protocol_name } else { "" }))
            .with_members(members)
    }

    /// ListGroups, with the state filter of v4+ and the type filter of v5+.
    pub fn list_groups(&self, version: i16, request: &ListGroupsRequest) -> ListGroupsResponse {
        let states: BTreeSet<String> = if version >= 4 {
            request
                .states_filter
                .iter()
                .map(|state| state.as_str().to_ascii_lowercase())
                .collect()
        } else {
            BTreeSet::new()
        };
        let type_matches = version < 5
            || request.types_filter.is_empty()
            || request
                .types_filter
                .iter()
                .any(|group_type| group_type.as_str().eq_ignore_ascii_case(GROUP_TYPE_CLASSIC));
        let mut listed: BTreeMap<&str, (GroupState, &str)> = BTreeMap::new();
        for group_id in self.offsets.group_ids() {
            listed.insert(group_id, (GroupState::Empty, ""));
        }
        for (group_id, group) in &self.groups {
            listed.insert(
                group_id,
                (
                    group.state,
                    group.protocol_type.as_deref().unwrap_or_default(),
                ),
            );
        }
        let groups = listed
            .into_iter()
            .filter(|_| type_matches)
            .filter(|(_, (state, _))| {
                states.is_empty() || states.contains(&state.name().to_ascii_lowercase())
            })
            .map(|(group_id, (state, protocol_type))| {
                ListedGroup::default()
                    .with_group_id(GroupId(str_bytes(group_id)))
                    .with_protocol_type(str_bytes(protocol_type))
                    .with_group_state(str_bytes(state.name()))
                    .with_group_type(str_bytes(GROUP_TYPE_CLASSIC))
            })
            .collect();
        ListGroupsResponse::default().with_groups(groups)
    }

    /// DeleteGroups: only Empty groups (or groups known only by their offsets) can be
    /// deleted. The deletion applies at once; the driver must make the returned
    /// tombstones durable before sending the response, so a restart does not resurrect
    /// the offsets.
    pub fn delete_groups(
        &mut self,
        _version: i16,
        request: &DeleteGroupsRequest,
    ) -> (DeleteGroupsResponse, Vec<OffsetRecord>) {
        let mut records = Vec::new();
        let mut results = Vec::new();
        for group_id in &request.groups_names {
            let result = self.delete_group(group_id);
            if result.is_ok() {
                records.push(OffsetRecord::GroupTombstone {
                    group_id: group_id.0.as_str().to_owned(),
                });
            }
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(group_id.clone())
                    .with_error_code(error_code(result)),
            );
        }
        (
            DeleteGroupsResponse::default().with_results(results),
            records,
        )
    }

    fn delete_group(&mut self, group_id: &GroupId) -> Result<(), GroupError> {
        let group_id = validate_group_id(group_id)?;
        if !self.is_known_group(group_id) {
            return Err(GroupError::GroupIdNotFound);
        }
        if let Some(group) = self.groups.get(group_id) {
            if group.state != GroupState::Empty {
                return Err(GroupError::NonEmptyGroup);
            }
        }
        self.groups.remove(group_id);
        self.offsets.apply(&OffsetRecord::GroupTombstone {
            group_id: group_id.to_owned(),
        });
        Ok(())
    }

    /// OffsetDelete: forgets some of a group's committed offsets, as Kafka does:
    /// - an Empty group, or one known only by its offsets: every partition asked for;
    /// - a consumer group with members: the partitions of topics none of them subscribes to.
    ///   The others get GROUP_SUBSCRIBED_TO_TOPIC; all of them do while the subscriptions are
    ///   not known (no protocol chosen yet, or one that cannot be read);
    /// - a group of another protocol type with members: NON_EMPTY_GROUP.
    ///
    /// An Empty group left without offsets is forgotten. The deletion applies at once; the
    /// driver must make the returned tombstones durable before it sends the response.
    pub fn offset_delete(
        &mut self,
        request: &OffsetDeleteRequest,
    ) -> (OffsetDeleteResponse, Vec<OffsetRecord>) {
        let refused = |error: GroupError| {
            (
                OffsetDeleteResponse::default().with_error_code(error.code()),
                Vec::new(),
            )
        };
        let group_id = match validate_group_id(&request.group_id) {
            Ok(group_id) => group_id.to_owned(),
            Err(error) => return refused(error),
        };
        if !self.is_known_group(&group_id) {
            return refused(GroupError::GroupIdNotFound);
        }
        // Which topics keep their offsets: `None` when the group's members do not matter.
        let protected: Option<Option<BTreeSet<String>>> = match self.groups.get(&group_id) {
            None => None,
            Some(group) => match group.state {
                GroupState::Dead => return refused(GroupError::GroupIdNotFound),
                GroupState::Empty => None,
                _ if group.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE) => {
                    Some(group.subscribed_topics())
                }
                _ => return refused(GroupError::NonEmptyGroup),
            },
        };
        let mut records = Vec::new();
        let mut topics = Vec::with_capacity(request.topics.len());
        for topic in &request.topics {
            let name = topic.name.0.as_str();
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for partition in &topic.partitions {
                let index = partition.partition_index;
                let result = if name.is_empty() || name.len() > TOPIC_NAME_BYTES_MAX || index < 0 {
                    Err(GroupError::UnknownTopicOrPartition)
                } else {
                    match &protected {
                        Some(None) => Err(GroupError::GroupSubscribedToTopic),
                        Some(Some(subscribed)) if subscribed.contains(name) => {
                            Err(GroupError::GroupSubscribedToTopic)
                        }
                        _ => Ok(()),
                    }
                };
                if result.is_ok() && self.offsets.get(&group_id, name, index).is_some() {
                    let tombstone = OffsetRecord::OffsetTombstone {
                        group_id: group_id.clone(),
                        topic: name.to_owned(),
                        partition: index,
                    };
                    self.offsets.apply(&tombstone);
                    records.push(tombstone);
                }
                partitions.push(
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(error_code(result)),
                );
            }
            topics.push(
                OffsetDeleteResponseTopic::default()
                    .with_name(topic.name.clone())
                    .with_partitions(partitions),
            );
        }
        let emptied = self.groups.get(&group_id).is_some_and(|group| {
            group.state == GroupState::Empty && group.pending_members.is_empty()
        });
        if emptied && !self.offsets.has_group(&group_id) {
            self.groups.remove(&group_id);
        }
        self.assert_invariants();
        (OffsetDeleteResponse::default().with_topics(topics), records)
    }

    // ---- Offsets ----

    /// Checks an OffsetCommit. Nothing changes until the driver has made `records`
    /// durable and calls `apply_offset_commit`; then it sends `response`.
    pub fn prepare_offset_commit(
        &self,
        _now_ms: u64,
        wall_ms: i64,
        _version: i16,
        request: &OffsetCommitRequest,
    ) -> PreparedCommit {
        let group_result = self.validate_commit(request);
        let group_id = request.group_id.0.as_str();
        let mut records = Vec::new();
        let mut new_partitions: BTreeSet<(&str, i32)> = BTreeSet::new();
        let mut topics = Vec::new();
        for topic in &request.topics {
            let mut partitions = Vec::new();
            for partition in &topic.partitions {
                let result = group_result
                    .and_then(|()| {
                        self.validate_partition(
                            group_id,
                            topic.name.0.as_str(),
                            partition.partition_index,
                            partition.committed_metadata.as_ref(),
                        )
                    })
                    .and_then(|()| {
                        if self
                            .offsets
                            .get(group_id, topic.name.0.as_str(), partition.partition_index)
                            .is_none()
                        {
                            new_partitions
                                .insert((topic.name.0.as_str(), partition.partition_index));
                        }
                        if self.offsets.partitions_count(group_id) + new_partitions.len()
                            > GROUP_COMMITTED_PARTITIONS_MAX
                        {
                            return Err(GroupError::InvalidCommitOffsetSize);
                        }
                        Ok(())
                    });
                if result.is_ok() {
                    records.push(OffsetRecord::Commit {
                        group_id: group_id.to_owned(),
                        topic: topic.name.0.as_str().to_owned(),
                        partition: partition.partition_index,
                        offset: partition.committed_offset,
                        leader_epoch: partition.committed_leader_epoch,
                        metadata: partition
                            .committed_metadata
                            .as_ref()
                            .map(|metadata| metadata.as_str().to_owned())
                            .unwrap_or_default(),
                        commit_timestamp_ms: Some(wall_ms),
                    });
                }
                partitions.push(
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(error_code(result)),
                );
            }
            topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(topic.name.clone())
                    .with_topic_id(topic.topic_id)
                    .with_partitions(partitions),
            );
        }
        PreparedCommit {
            response: OffsetCommitResponse::default().with_topics(topics),
            records,
        }
    }

    /// Kafka's generation and member checks for a commit.
    fn validate_commit(&self, request: &OffsetCommitRequest) -> Result<(), GroupError> {
        let group_id = validate_group_id(&request.group_id)?;
        let generation_id = request.generation_id_or_member_epoch;
        let member_id = request.member_id.as_str();
        let Some(group) = self.groups.get(group_id) else {
            if generation_id >= 0 {
                // A generation of a group this coordinator does not know: stale.
                return Err(GroupError::IllegalGeneration);
            }
            // A standalone consumer that only stores offsets here.
            if !self.is_known_group(group_id) && self.group_count() >= GROUPS_MAX {
                return Err(GroupError::CoordinatorNotAvailable);
            }
            return Ok(());
        };
        if group.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let instance = request
            .group_instance_id
            .as_ref()
            .map(|value| value.as_str());
        if group.is_static_member_fenced(instance, member_id) {
            return Err(GroupError::FencedInstanceId);
        }
        if generation_id < 0 && group.state == GroupState::Empty {
            return Ok(());
        }
        if group.state == GroupState::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        if !group.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if generation_id != group.generation_id {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }

    fn validate_partition(
        &self,
        _group_id: &str,
        topic: &str,
        partition: i32,
        metadata: Option<&StrBytes>,
    ) -> Result<(), GroupError> {
        if topic.is_empty() || topic.len() > TOPIC_NAME_BYTES_MAX || partition < 0 {
            return Err(GroupError::UnknownTopicOrPartition);
        }
        if metadata.is_some_and(|metadata| metadata.len() > self.config.offset_metadata_bytes_max) {
            return Err(GroupError::OffsetMetadataTooLarge);
        }
        Ok(())
    }

    /// Applies the records of a prepared commit once they are durable.
    pub fn apply_offset_commit(&mut self, records: &[OffsetRecord]) {
        for record in records {
            self.offsets.apply(record);
        }
    }

    /// Every committed offset as a commit record: a snapshot for the offsets log.
    pub fn offsets_snapshot(&self) -> Vec<OffsetRecord> {
        self.offsets.snapshot()
    }

    /// Replays the offsets log at start-up (or on taking over as coordinator), oldest first,
    /// at `now_ms` on the monotonic clock and `wall_ms` on the wall clock. A commit whose
    /// time the log does not hold (an older format) counts as made now; the next snapshot
    /// records that time.
    pub fn load_offset_records(
        &mut self,
        records: impl IntoIterator<Item = OffsetRecord>,
        now_ms: u64,
        wall_ms: i64,
    ) {
        self.loaded_at_ms = now_ms;
        for mut record in records {
            if let OffsetRecord::Commit {
                commit_timestamp_ms,
                ..
            } = &mut record
            {
                commit_timestamp_ms.get_or_insert(wall_ms);
            }
            self.offsets.apply(&record);
        }
    }

    /// Deletes the committed offsets of groups whose time is up, as Kafka's
    /// `offsets.retention.minutes` does, and returns the tombstones the driver must append
    /// to the offsets log. A group's offsets expire when both hold:
    /// - it has had no members for the retention period, on this coordinator's monotonic
    ///   clock. A group this coordinator has only known by its offsets (since it loaded them)
    ///   needs only the shorter of the retention period and the longest session timeout: the
    ///   members of a live group rejoin a new coordinator within a session timeout;
    /// - none of its offsets was committed within the retention period, by the wall clock
    ///   of the coordinators that took the commits.
    ///
    /// At most [`OFFSETS_EXPIRY_GROUPS_MAX`] groups per call.
    pub fn expire_offsets(&mut self, now_ms: u64, wall_ms: i64) -> Vec<OffsetRecord> {
        let retention_ms = self.config.offsets_retention_ms;
        let takeover_grace_ms = retention_ms.min(self.config.session_timeout_ms_max);
        let expired: Vec<String> = self
            .offsets
            .group_ids()
            .filter(|group_id| {
                let memberless_long_enough = match self.groups.get(group_id.as_str()) {
                    Some(group) => {
                        group.state == GroupState::Empty
                            && group.pending_members.is_empty()
                            && now_ms.saturating_sub(group.empty_since_ms) >= retention_ms
                    }
                    None => now_ms.saturating_sub(self.loaded_at_ms) >= takeover_grace_ms,
                };
                memberless_long_enough
                    && self
                        .offsets
                        .last_commit_ms(group_id)
                        .is_some_and(|last_commit_ms| {
                            i128::from(wall_ms) - i128::from(last_commit_ms)
                                >= i128::from(retention_ms)
                        })
            })
            .take(OFFSETS_EXPIRY_GROUPS_MAX)
            .cloned()
            .collect();
        let mut tombstones = Vec::with_capacity(expired.len());
        for group_id in expired {
            self.groups.remove(&group_id);
            let tombstone = OffsetRecord::GroupTombstone { group_id };
            self.offsets.apply(&tombstone);
            tombstones.push(tombstone);
        }
        self.assert_invariants();
        tombstones
    }

    /// OffsetFetch: v0-7 for one group, v8+ for several. Unknown partitions (and groups)
    /// give offset -1. `topics: None` (v2+) fetches every partition of the group.
    pub fn offset_fetch(&self, version: i16, request: &OffsetFetchRequest) -> OffsetFetchResponse {
        if version >= 8 {
            let groups = request
                .groups
                .iter()
                .map(|group| {
                    let wanted = group.topics.as_ref().map(|topics| {
                        topics
                            .iter()
                            .map(|topic| {
                                (
                                    topic.name.0.as_str().to_owned(),
                                    topic.partition_indexes.clone(),
                                )
                            })
                            .collect()
                    });
                    let (topics, error) = self.fetch_offsets(&group.group_id, wanted);
                    let topics = topics
                        .into_iter()
                        .map(|(name, partitions)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(TopicName(str_bytes(&name)))
                                .with_partitions(
                                    partitions
                                        .into_iter()
                                        .map(|(partition, committed)| {
                                            let (offset, leader_epoch, metadata) =
                                                committed_fields(committed);
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(partition)
                                                .with_committed_offset(offset)
                                                .with_committed_leader_epoch(leader_epoch)
                                                .with_metadata(Some(metadata))
                                        })
                                        .collect(),
                                )
                        })
                        .collect();
                    OffsetFetchResponseGroup::default()
                        .with_group_id(group.group_id.clone())
                        .with_topics(topics)
                        .with_error_code(error)
                })
                .collect();
            return OffsetFetchResponse::default().with_groups(groups);
        }
        let wanted = request.topics.as_ref().map(|topics| {
            topics
                .iter()
                .map(|topic| {
                    (
                        topic.name.0.as_str().to_owned(),
                        topic.partition_indexes.clone(),
                    )
                })
                .collect()
        });
        let (topics, error) = self.fetch_offsets(&request.group_id, wanted);
        let topics = topics
            .into_iter()
            .map(|(name, partitions)| {
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(str_bytes(&name)))
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|(partition, committed)| {
                                let (offset, leader_epoch, metadata) = committed_fields(committed);
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(partition)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(leader_epoch)
                                    .with_metadata(Some(metadata))
                            })
                            .collect(),
                    )
            })
            .collect();
        OffsetFetchResponse::default()
            .with_topics(topics)
            .with_error_code(error)
    }

    /// The committed offsets of the wanted partitions (all of the group's if `None`),
    /// grouped by topic, with the group-level error code.
    #[allow(clippy::type_complexity)]
    fn fetch_offsets(
        &self,
        group_id: &GroupId,
        wanted: Option<Vec<(String, Vec<i32>)>>,
    ) -> (Vec<(String, Vec<(i32, Option<&CommittedOffset>)>)>, i16) {
        let group_id = match validate_group_id(group_id) {
            Ok(group_id) => group_id,
            Err(error) => return (Vec::new(), error.code()),
        };
        let topics = match wanted {
            Some(wanted) => wanted
                .into_iter()
                .map(|(topic, partitions)| {
                    let committed = partitions
                        .into_iter()
                        .map(|partition| (partition, self.offsets.get(group_id, &topic, partition)))
                        .collect();
                    (topic, committed)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<&CommittedOffset>)>> =
                    BTreeMap::new();
                for ((topic, partition), committed) in
                    self.offsets.group(group_id).into_iter().flatten()
                {
                    by_topic
                        .entry(topic.clone())
                        .or_default()
                        .push((*partition, Some(committed)));
                }
                by_topic.into_iter().collect()
            }
        };
        (topics, 0)
    }
}

/// (offset, leader epoch, metadata) for a fetch answer; -1 and "" when nothing is
/// committed, as Kafka answers.
fn committed_fields(committed: Option<&CommittedOffset>) -> (i64, i32, StrBytes) {
    match committed {
        Some(committed) => (
            committed.offset,
            committed.leader_epoch,
            str_bytes(&committed.metadata),
        ),
        None => (-1, -1, StrBytes::default()),
    }
}
