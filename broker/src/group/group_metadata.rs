//! One classic group: its members and the rebalance state machine (Kafka's
//! `GroupMetadata` plus the per-group half of `GroupCoordinator`).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::subscription::subscribed_topics;
use super::{GroupConfig, GroupError, GroupOutput, ReplyToken};

/// The classic group states, as Kafka names them (the names appear in DescribeGroups and
/// ListGroups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupState {
    /// No members; the group may still have committed offsets.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// The join is complete; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// The group does not exist (reported for unknown groups).
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// One protocol a member offers (for consumers: an assignor with its subscription).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

/// The validated fields of a JoinGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinParameters {
    pub version: i16,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub group_instance_id: Option<String>,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    pub client_id: String,
    pub client_host: String,
}

/// A request waiting for its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Waiter {
    pub token: ReplyToken,
    pub version: i16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    /// This member's assignment of the current generation (empty until the leader syncs).
    pub assignment: Bytes,
    pub awaiting_join: Option<Waiter>,
    pub awaiting_sync: Option<Waiter>,
    /// When the member is removed unless it heartbeats. Not applied while it waits for a
    /// JoinGroup response: the rebalance timeout governs that wait.
    pub session_deadline_ms: u64,
}

impl Member {
    fn metadata_for(&self, protocol_name: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|protocol| protocol.name == protocol_name)
            .map(|protocol| protocol.metadata.clone())
            .unwrap_or_default()
    }

    fn supports(&self, protocol_name: &str) -> bool {
        self.protocols
            .iter()
            .any(|protocol| protocol.name == protocol_name)
    }
}

/// The state of an ongoing PreparingRebalance phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rebalance {
    /// When the join phase completes even if some members have not rejoined.
    deadline_ms: u64,
    /// For the first rebalance of an empty group: the latest the initial delay may be
    /// extended to as new members arrive. Such a rebalance only completes at its deadline.
    initial_delay_limit_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub group_id: String,
    pub state: GroupState,
    /// When the group last became Empty (meaningful while it is): its offsets expire only
    /// after it has been Empty for the retention period.
    pub empty_since_ms: u64,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// group.instance.id -> member id of the static members.
    pub static_members: BTreeMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the deadline for the member to
    /// join with them.
    pub pending_members: BTreeMap<String, u64>,
    rebalance: Option<Rebalance>,
}

/// Where a response field is nullable only from some version on, fill it with the empty
/// string below that version, since encoding null there is an error.
fn nullable_string(version: i16, nullable_from: i16, value: Option<&str>) -> Option<StrBytes> {
    match value {
        Some(text) => Some(StrBytes::from_string(text.to_owned())),
        None if version >= nullable_from => None,
        None => Some(StrBytes::default()),
    }
}

pub(crate) fn join_error_response(
    version: i16,
    error: GroupError,
    member_id: &str,
) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(error.code())
        .with_generation_id(-1)
        .with_protocol_name(nullable_string(version, 7, None))
        .with_member_id(StrBytes::from_string(member_id.to_owned()))
}

pub(crate) fn sync_error_response(error: GroupError) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(error.code())
}

impl Group {
    pub fn new(group_id: String, now_ms: u64) -> Self {
        Self {
            group_id,
            state: GroupState::Empty,
            empty_since_ms: now_ms,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            rebalance: None,
        }
    }

    /// Members plus members-to-be of the two-step join, for the size limit.
    /// Every topic a member of this consumer group subscribes to, or `None` when that is
    /// not known: no protocol chosen yet, or a subscription that cannot be read.
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        let protocol_name = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            topics.extend(subscribed_topics(&member.metadata_for(protocol_name))?);
        }
        Some(topics)
    }

    pub fn size(&self) -> usize {
        self.members.len() + self.pending_members.len()
    }

    /// A static member presenting a member id other than the one that owns its
    /// group.instance.id is a zombie of an older incarnation.
    pub fn is_static_member_fenced(
        &self,
        group_instance_id: Option<&str>,
        member_id: &str,
    ) -> bool {
        match group_instance_id.and_then(|instance| self.static_members.get(instance)) {
            Some(owner) => owner != member_id,
            None => false,
        }
    }

    /// Whether a member offering `protocols` of `protocol_type` can be in the group:
    /// the type matches and at least one protocol is supported by every other member.
    pub fn supports_protocols(
        &self,
        protocol_type: &str,
        protocols: &[Protocol],
        except_member: Option<&str>,
    ) -> bool {
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|member| Some(member.member_id.as_str()) != except_member)
            .collect();
        if others.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|protocol| others.iter().all(|member| member.supports(&protocol.name)))
    }

    // ---- JoinGroup ----

    /// A member joining with an empty member id (`new_member_id` was generated for it).
    pub fn join_new_member(
        &mut self,
        config: &GroupConfig,
        now_ms: u64,
        waiter: Waiter,
        parameters: JoinParameters,
        new_member_id: String,
        outputs: &mut Vec<GroupOutput>,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if !self.supports_protocols(&parameters.protocol_type, &parameters.protocols, None) {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        if let Some(instance) = parameters.group_instance_id.clone() {
            if let Some(old_member_id) = self.static_members.get(&instance).cloned() {
                self.replace_static_member(
                    config,
                    now_ms,
                    waiter,
                    parameters,
                    &old_member_id,
                    new_member_id,
                    outputs,
                );
                return Ok(());
            }
        }
        if self.size() >= config.group_members_max {
            return Err(GroupError::GroupMaxSizeReached);
        }
        if parameters.version >= 4 && parameters.group_instance_id.is_none() {
            // Two-step join: the member must come back with this id, so a client that
            // never saw the response does not leave an orphan member behind.
            let deadline_ms = now_ms + parameters.session_timeout_ms;
            self.pending_members
                .insert(new_member_id.clone(), deadline_ms);
            outputs.push(GroupOutput::JoinResponse(
                waiter.token,
                join_error_response(waiter.version, GroupError::MemberIdRequired, &new_member_id),
            ));
            return Ok(());
        }
        self.add_member_and_rebalance(config, now_ms, waiter, parameters, new_member_id, outputs);
        Ok(())
    }

    /// A member joining with a member id.
    pub fn join_existing_member(
        &mut self,
        config: &GroupConfig,
        now_ms: u64,
        waiter: Waiter,
        parameters: JoinParameters,
        member_id: String,
        outputs: &mut Vec<GroupOutput>,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if !self.supports_protocols(
            &parameters.protocol_type,
            &parameters.protocols,
            Some(&member_id),
        ) {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        if self.pending_members.remove(&member_id).is_some() {
            self.add_member_and_rebalance(config, now_ms, waiter, parameters, member_id, outputs);
            return Ok(());
        }
        if self.is_static_member_fenced(parameters.group_instance_id.as_deref(), &member_id) {
            return Err(GroupError::FencedInstanceId);
        }
        let Some(member) = self.members.get(&member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        let unchanged = member.protocols == parameters.protocols;
        let is_leader = self.leader_id.as_deref() == Some(member_id.as_str());
        match self.state {
            GroupState::Empty | GroupState::Dead => return Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                self.update_member_and_rebalance(
                    config, now_ms, waiter, parameters, &member_id, outputs,
                );
            }
            GroupState::CompletingRebalance if unchanged => {
                // A retry of a join whose response was lost: repeat the current generation.
                let response =
                    self.current_join_response(waiter.version, &member_id, is_leader, false);
                self.touch_session(now_ms, &member_id);
                outputs.push(GroupOutput::JoinResponse(waiter.token, response));
            }
            GroupState::Stable if unchanged && !is_leader => {
                let response = self.current_join_response(waiter.version, &member_id, false, false);
                self.touch_session(now_ms, &member_id);
                outputs.push(GroupOutput::JoinResponse(waiter.token, response));
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member_and_rebalance(
                    config, now_ms, waiter, parameters, &member_id, outputs,
                );
            }
        }
        Ok(())
    }

    fn add_member_and_rebalance(
        &mut self,
        config: &GroupConfig,
        now_ms: u64,
        waiter: Waiter,
        parameters: JoinParameters,
        member_id: String,
        outputs: &mut Vec<GroupOutput>,
    ) {
        assert!(!self.members.contains_key(&member_id));
        if self.members.is_empty() {
            self.protocol_type = Some(parameters.protocol_type.clone());
        }
        if let Some(instance) = &parameters.group_instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member_id.clone());
        }
        let member = Member {
            member_id: member_id.clone(),
            group_instance_id: parameters.group_instance_id,
            client_id: parameters.client_id,
            client_host: parameters.client_host,
            session_timeout_ms: parameters.session_timeout_ms,
            rebalance_timeout_ms: parameters.rebalance_timeout_ms,
            protocol_type: parameters.protocol_type,
            protocols: parameters.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(waiter),
            awaiting_sync: None,
            session_deadline_ms: now_ms + parameters.session_timeout_ms,
        };
        self.members.insert(member_id, member);
        if let Some(rebalance) = &mut self.rebalance {
            if let Some(limit_ms) = rebalance.initial_delay_limit_ms {
                // A new member during the initial delay: wait a little longer for more.
                rebalance.deadline_ms = (now_ms + config.initial_rebalance_delay_ms).min(limit_ms);
            }
        }
        self.maybe_prepare_rebalance(config, now_ms, outputs);
        self.assert_invariants();
    }

    fn update_member_and_rebalance(
        &mut self,
        config: &GroupConfig,
        now_ms: u64,
        waiter: Waiter,
        parameters: JoinParameters,
        member_id: &str,
        outputs: &mut Vec<GroupOutput>,
    ) {
        let member = self
            .members
            .get_mut(member_id)
            .expect("caller checked membership");
        member.protocols = parameters.protocols;
        member.session_timeout_ms = parameters.session_timeout_ms;
        member.rebalance_timeout_ms = parameters.rebalance_timeout_ms;
        member.client_id = parameters.client_id;
        member.client_host = parameters.client_host;
        if let Some(previous) = member.awaiting_join.replace(waiter) {
            // Every token is answered once: the superseded request gets told to rejoin.
            outputs.push(GroupOutput::JoinResponse(
                previous.token,
                join_error_response(previous.version, GroupError::RebalanceInProgress, member_id),
            ));
        }
        self.maybe_prepare_rebalance(config, now_ms, outputs);
        self.assert_invariants();
    }

    /// A static member restarted with a new member id: it takes over the old member's
    /// place (and assignment). Kafka avoids a rebalance when nothing changed.
    #[allow(clippy::too_many_arguments)]
    fn replace_static_member(
        &mut self,
        config: &GroupConfig,
        now_ms: u64,
        waiter: Waiter,
        parameters: JoinParameters,
        old_member_id: &str,
        new_member_id: String,
        outputs: &mut Vec<GroupOutput>,
    ) {
        let mut member = self
            .members
            .remove(old_member_id)
            .expect("static map points at a member");
        // The old incarnation's outstanding requests are fenced.
        if let Some(previous) = member.awaiting_join.take() {
            outputs.push(GroupOutput::JoinResponse(
                previous.token,
                join_error_response(
                    previous.version,
                    GroupError::FencedInstanceId,
                    old_member_id,
                ),
            ));
        }
        if let Some(previous) = member.awaiting_sync.take() {
            outputs.push(GroupOutput::SyncResponse(
                previous.token,
                sync_error_response(GroupError::FencedInstanceId),
            ));
        }
        let unchanged = member.protocols == parameters.protocols;
        member.member_id = new_member_id.clone();
        self.members.insert(new_member_id.clone(), member);
        let instance = parameters.group_instance_id.clone().expect("static join");
        self.static_members.insert(instance, new_member_id.clone());
        if self.leader_id.as_deref() == Some(old_member_id) {
            self.leader_id = Some(new_member_id.clone());
        }
        if self.state == GroupState::Stable && unchanged {
            // KIP-814: from v9 a rejoining static leader gets the members but is told to
            // skip the assignment; older leaders are answered as followers, which keeps
            // the current assignment just the same.
            let is_leader = self.leader_id.as_deref() == Some(new_member_id.as_str());
            let skip_assignment = is_leader && waiter.version >= 9;
            let response = self.current_join_response(
                waiter.version,
                &new_member_id,
                skip_assignment,
                skip_assignment,
            );
            self.touch_session(now_ms, &new_member_id);
            outputs.push(GroupOutput::JoinResponse(waiter.token, response));
            self.assert_invariants();
            return;
        }
        self.update_member_and_rebalance(
            config,
            now_ms,
            waiter,
            parameters,
            &new_member_id,
            outputs,
        );
    }

    /// The JoinGroup response for the current generation; the leader gets the members.
    fn current_join_response(
        &self,
        version: i16,
        member_id: &str,
        include_members: bool,
        skip_assignment: bool,
    ) -> JoinGroupResponse {
        let protocol_name = self.protocol_name.as_deref().unwrap_or_default();
        let members = if include_members {
            self.members
                .values()
                .map(|member| {
                    JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(member.member_id.clone()))
                        .with_group_instance_id(
                            member.group_instance_id.clone().map(StrBytes::from_string),
                        )
                        .with_metadata(member.metadata_for(protocol_name))
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinGroupResponse::default()
            .with_generation_id(self.generation_id)
            .with_protocol_type(self.protocol_type.clone().map(StrBytes::from_string))
            .with_protocol_name(nullable_string(version, 7, self.protocol_name.as_deref()))
            .with_leader(StrBytes::from_string(
                self.leader_id.clone().unwrap_or_default(),
            ))
            .with_skip_assignment(skip_assignment)
            .with_member_id(StrBytes::from_string(member_id.to_owned()))
            .with_members(members)
    }

    // ---- Rebalance ----

    fn maybe_prepare_rebalance(
        &mut self,
        config: &GroupConfig,
        now_ms: u64,
        outputs: &mut Vec<GroupOutput>,
    ) {
        match self.state {
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(config, now_ms, outputs)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now_ms, outputs),
            GroupState::Dead => {}
        }
    }

    fn prepare_rebalance(
        &mut self,
        config: &GroupConfig,
        now_ms: u64,
        outputs: &mut Vec<GroupOutput>,
    ) {
        if self.state == GroupState::CompletingRebalance {
            self.propagate_sync_error(GroupError::RebalanceInProgress, outputs);
        }
        let rebalance_timeout_ms = self
            .members
            .values()
            .map(|member| member.rebalance_timeout_ms)
            .max()
            .unwrap_or(0);
        self.rebalance = Some(if self.state == GroupState::Empty {
            let limit_ms = now_ms + rebalance_timeout_ms.max(config.initial_rebalance_delay_ms);
            Rebalance {
                deadline_ms: (now_ms + config.initial_rebalance_delay_ms).min(limit_ms),
                initial_delay_limit_ms: Some(limit_ms),
            }
        } else {
            Rebalance {
                deadline_ms: now_ms + rebalance_timeout_ms,
                initial_delay_limit_ms: None,
            }
        });
        self.state = GroupState::PreparingRebalance;
        self.try_complete_join(now_ms, outputs);
    }

    fn propagate_sync_error(&mut self, error: GroupError, outputs: &mut Vec<GroupOutput>) {
        for member in self.members.values_mut() {
            member.assignment = Bytes::new();
            if let Some(waiter) = member.awaiting_sync.take() {
                outputs.push(GroupOutput::SyncResponse(
                    waiter.token,
                    sync_error_response(error),
                ));
            }
        }
    }

    fn try_complete_join(&mut self, now_ms: u64, outputs: &mut Vec<GroupOutput>) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let rebalance = self.rebalance.expect("PreparingRebalance has a rebalance");
        let all_joined = self.pending_members.is_empty()
            && self
                .members
                .values()
                .all(|member| member.awaiting_join.is_some());
        let waits_for_delay = rebalance.initial_delay_limit_ms.is_some();
        if rebalance.deadline_ms <= now_ms || (all_joined && !waits_for_delay) {
            self.complete_join(now_ms, outputs);
        }
    }

    /// Ends the join phase: members that did not rejoin are removed, the generation
    /// advances, and every waiting JoinGroup is answered.
    fn complete_join(&mut self, now_ms: u64, outputs: &mut Vec<GroupOutput>) {
        assert_eq!(self.state, GroupState::PreparingRebalance);
        let not_rejoined: Vec<String> = self
            .members
            .values()
            .filter(|member| member.awaiting_join.is_none())
            .map(|member| member.member_id.clone())
            .collect();
        for member_id in not_rejoined {
            self.forget_member(&member_id);
        }
        self.rebalance = None;
        self.generation_id = self.generation_id.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.empty_since_ms = now_ms;
            self.protocol_name = None;
            self.leader_id = None;
            self.assert_invariants();
            return;
        }
        self.protocol_name = Some(self.select_protocol());
        self.state = GroupState::CompletingRebalance;
        let leader_id = self
            .leader_id
            .clone()
            .expect("a group with members has a leader");
        let member_ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in member_ids {
            let is_leader = member_id == leader_id;
            let member = self.members.get_mut(&member_id).expect("listed above");
            let waiter = member
                .awaiting_join
                .take()
                .expect("not-rejoined members were removed");
            member.assignment = Bytes::new();
            member.session_deadline_ms = now_ms + member.session_timeout_ms;
            let response = self.current_join_response(waiter.version, &member_id, is_leader, false);
            outputs.push(GroupOutput::JoinResponse(waiter.token, response));
        }
        self.assert_invariants();
    }

    /// Kafka's vote: among protocols every member supports, each member votes for the
    /// first it lists; most votes wins, ties go to the leader's preference order.
    fn select_protocol(&self) -> String {
        let leader_id = self
            .leader_id
            .as_ref()
            .expect("a group with members has a leader");
        let leader = &self.members[leader_id];
        let candidates: Vec<&str> = leader
            .protocols
            .iter()
            .map(|protocol| protocol.name.as_str())
            .filter(|name| self.members.values().all(|member| member.supports(name)))
            .collect();
        assert!(
            !candidates.is_empty(),
            "joins are checked for a common protocol"
        );
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            let choice = member
                .protocols
                .iter()
                .map(|protocol| protocol.name.as_str())
                .find(|name| candidates.contains(name))
                .expect("every member supports every candidate");
            *votes.entry(choice).or_default() += 1;
        }
        let mut best = candidates[0];
        for candidate in &candidates {
            if votes.get(candidate).copied().unwrap_or(0) > votes.get(best).copied().unwrap_or(0) {
                best = candidate;
            }
        }
        best.to_owned()
    }

    /// Removes a member without triggering anything; the caller decides what follows.
    fn forget_member(&mut self, member_id: &str) -> Option<Member> {
        let member = self.members.remove(member_id)?;
        if let Some(instance) = &member.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        if self.leader_id.as_deref() == Some(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        Some(member)
    }

    /// Removes a member that left or expired, answering its waiting requests, and
    /// rebalances the rest (Kafka's `removeMemberAndUpdateGroup`).
    pub fn remove_member(
        &mut self,
        config: &GroupConfig,
        now_ms: u64,
        member_id: &str,
        outputs: &mut Vec<GroupOutput>,
    ) {
        let member = self
            .forget_member(member_id)
            .expect("caller checked membership");
        if let Some(waiter) = member.awaiting_join {
            outputs.push(GroupOutput::JoinResponse(
                waiter.token,
                join_error_response(waiter.version, GroupError::UnknownMemberId, member_id),
            ));
        }
        if let Some(waiter) = member.awaiting_sync {
            outputs.push(GroupOutput::SyncResponse(
                waiter.token,
                sync_error_response(GroupError::UnknownMemberId),
            ));
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(config, now_ms, outputs)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now_ms, outputs),
            GroupState::Empty | GroupState::Dead => {}
        }
        self.assert_invariants();
    }

    // ---- SyncGroup ----

    /// Returns the immediate error, if any; otherwise the response is among `outputs`
    /// now or later.
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        now_ms: u64,
        waiter: Waiter,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: BTreeMap<String, Bytes>,
        outputs: &mut Vec<GroupOutput>,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if self.is_static_member_fenced(group_instance_id, member_id) {
            return Err(GroupError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if generation_id != self.generation_id {
            return Err(GroupError::IllegalGeneration);
        }
        if protocol_type.is_some_and(|value| Some(value) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|value| Some(value) != self.protocol_name.as_deref())
        {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            GroupState::Stable => {
                self.touch_session(now_ms, member_id);
                let response =
                    self.sync_response(waiter.version, &self.members[member_id].assignment);
                outputs.push(GroupOutput::SyncResponse(waiter.token, response));
                Ok(())
            }
            GroupState::CompletingRebalance => {
                self.touch_session(now_ms, member_id);
                let member = self.members.get_mut(member_id).expect("checked above");
                if let Some(previous) = member.awaiting_sync.replace(waiter) {
                    outputs.push(GroupOutput::SyncResponse(
                        previous.token,
                        sync_error_response(GroupError::RebalanceInProgress),
                    ));
                }
                if self.leader_id.as_deref() == Some(member_id) {
                    self.complete_sync(assignments, outputs);
                }
                self.assert_invariants();
                Ok(())
            }
        }
    }

    fn sync_response(&self, version: i16, assignment: &Bytes) -> SyncGroupResponse {
        let mut response = SyncGroupResponse::default().with_assignment(assignment.clone());
        if version >= 5 {
            response = response
                .with_protocol_type(self.protocol_type.clone().map(StrBytes::from_string))
                .with_protocol_name(self.protocol_name.clone().map(StrBytes::from_string));
        }
        response
    }

    /// The leader's assignment arrived: store it and answer every waiting member.
    fn complete_sync(
        &mut self,
        mut assignments: BTreeMap<String, Bytes>,
        outputs: &mut Vec<GroupOutput>,
    ) {
        assert_eq!(self.state, GroupState::CompletingRebalance);
        for member in self.members.values_mut() {
            // Members the leader left out get an empty assignment, as in Kafka.
            member.assignment = assignments.remove(&member.member_id).unwrap_or_default();
        }
        self.state = GroupState::Stable;
        let waiting: Vec<(Waiter, Bytes)> = self
            .members
            .values_mut()
            .filter_map(|member| {
                member
                    .awaiting_sync
                    .take()
                    .map(|waiter| (waiter, member.assignment.clone()))
            })
            .collect();
        for (waiter, assignment) in waiting {
            let response = self.sync_response(waiter.version, &assignment);
            outputs.push(GroupOutput::SyncResponse(waiter.token, response));
        }
    }

    // ---- Heartbeat ----

    pub fn heartbeat(
        &mut self,
        now_ms: u64,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if self.is_static_member_fenced(group_instance_id, member_id) {
            return Err(GroupError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if generation_id != self.generation_id {
            return Err(GroupError::IllegalGeneration);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                self.touch_session(now_ms, member_id);
                Err(GroupError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.touch_session(now_ms, member_id);
                Ok(())
            }
        }
    }

    fn touch_session(&mut self, now_ms: u64, member_id: &str) {
        let member = self
            .members
            .get_mut(member_id)
            .expect("caller checked membership");
        member.session_deadline_ms = now_ms + member.session_timeout_ms;
    }

    // ---- LeaveGroup ----

    /// One member of a LeaveGroup request.
    pub fn leave(
        &mut self,
        config: &GroupConfig,
        now_ms: u64,
        member_id: &str,
        group_instance_id: Option<&str>,
        outputs: &mut Vec<GroupOutput>,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let target = match group_instance_id {
            Some(instance) => {
                let Some(owner) = self.static_members.get(instance).cloned() else {
                    return Err(GroupError::UnknownMemberId);
                };
                // An empty member id means "whoever holds this instance id" (admin use).
                if !member_id.is_empty() && owner != member_id {
                    return Err(GroupError::FencedInstanceId);
                }
                owner
            }
            None => {
                if self.pending_members.remove(member_id).is_some() {
                    self.try_complete_join(now_ms, outputs);
                    return Ok(());
                }
                if !self.members.contains_key(member_id) {
                    return Err(GroupError::UnknownMemberId);
                }
                member_id.to_owned()
            }
        };
        self.remove_member(config, now_ms, &target, outputs);
        Ok(())
    }

    // ---- Timers ----

    pub fn next_deadline_ms(&self) -> Option<u64> {
        let sessions = self
            .members
            .values()
            .filter(|member| member.awaiting_join.is_none())
            .map(|member| member.session_deadline_ms);
        let pending = self.pending_members.values().copied();
        let rebalance = self.rebalance.map(|rebalance| rebalance.deadline_ms);
        sessions.chain(pending).chain(rebalance).min()
    }

    pub fn tick(&mut self, config: &GroupConfig, now_ms: u64, outputs: &mut Vec<GroupOutput>) {
        let expired_pending: Vec<String> = self
            .pending_members
            .iter()
            .filter(|(_, deadline_ms)| **deadline_ms <= now_ms)
            .map(|(member_id, _)| member_id.clone())
            .collect();
        for member_id in expired_pending {
            self.pending_members.remove(&member_id);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|member| member.awaiting_join.is_none() && member.session_deadline_ms <= now_ms)
            .map(|member| member.member_id.clone())
            .collect();
        for member_id in expired {
            // An earlier removal may have completed a join that refreshed this session.
            let still_expired = self.members.get(&member_id).is_some_and(|member| {
                member.awaiting_join.is_none() && member.session_deadline_ms <= now_ms
            });
            if still_expired {
                self.remove_member(config, now_ms, &member_id, outputs);
            }
        }
        self.try_complete_join(now_ms, outputs);
        self.assert_invariants();
    }

    pub fn assert_invariants(&self) {
        assert!(self.members.len() <= super::GROUP_MEMBERS_MAX);
        assert_eq!(
            self.rebalance.is_some(),
            self.state == GroupState::PreparingRebalance
        );
        match &self.leader_id {
            Some(leader) => assert!(self.members.contains_key(leader)),
            None => assert!(self.members.is_empty()),
        }
        for (instance, member_id) in &self.static_members {
            let member = self
                .members
                .get(member_id)
                .expect("static map points at a member");
            assert_eq!(member.group_instance_id.as_deref(), Some(instance.as_str()));
        }
        for (member_id, member) in &self.members {
            assert_eq!(&member.member_id, member_id);
            if self.state != GroupState::PreparingRebalance {
                assert!(member.awaiting_join.is_none());
            }
            if self.state != GroupState::CompletingRebalance {
                assert!(member.awaiting_sync.is_none());
            }
        }
        if self.state == GroupState::Empty {
            assert!(self.members.is_empty());
        }
    }
}
