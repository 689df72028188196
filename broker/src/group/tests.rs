//! Scenario tests of the coordinator with explicit times, and a model-based proptest of
//! the committed offsets.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, GroupId, HeartbeatRequest, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use proptest::prelude::*;

use super::*;

const GROUP: &str = "orders-consumers";
const SESSION_TIMEOUT_MS: i32 = 10_000;
const REBALANCE_TIMEOUT_MS: i32 = 30_000;
const INITIAL_DELAY_MS: u64 = 100;
/// Static members need v5+ (group.instance.id); dynamic members join at v3 here so that
/// scenarios skip the two-step join, which has its own test.
const JOIN_VERSION: i16 = 5;
const JOIN_VERSION_DYNAMIC: i16 = 3;
/// The wall-clock time the tests' coordinators commit at, unless a test moves it.
const COMMIT_WALL_MS: i64 = 1_700_000_000_000;

fn code(error: ResponseError) -> i16 {
    error.code()
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn coordinator() -> GroupCoordinator {
    GroupCoordinator::new(GroupConfig {
        initial_rebalance_delay_ms: INITIAL_DELAY_MS,
        session_timeout_ms_min: 1_000,
        ..GroupConfig::default()
    })
}

fn join_request(
    member_id: &str,
    instance: Option<&str>,
    metadata: &'static [u8],
) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(text(GROUP)))
        .with_session_timeout_ms(SESSION_TIMEOUT_MS)
        .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
        .with_member_id(text(member_id))
        .with_group_instance_id(instance.map(text))
        .with_protocol_type(text("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(Bytes::from_static(metadata)),
            JoinGroupRequestProtocol::default()
                .with_name(text("roundrobin"))
                .with_metadata(Bytes::from_static(metadata)),
        ])
}

fn join(
    coordinator: &mut GroupCoordinator,
    now_ms: u64,
    token: ReplyToken,
    member_id: &str,
    instance: Option<&str>,
) -> Vec<GroupOutput> {
    let version = if instance.is_some() {
        JOIN_VERSION
    } else {
        JOIN_VERSION_DYNAMIC
    };
    coordinator.join_group(
        now_ms,
        token,
        version,
        join_request(member_id, instance, b"subscription"),
        "client",
        "/10.0.0.1",
        0xdead_beef_0000_0000 | token,
    )
}

fn join_response(outputs: &[GroupOutput], token: ReplyToken) -> JoinGroupResponse {
    let found: Vec<&JoinGroupResponse> = outputs
        .iter()
        .filter_map(|output| match output {
            GroupOutput::JoinResponse(output_token, response) if *output_token == token => {
                Some(response)
            }
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 1, "token {token} answered once in {outputs:?}");
    found[0].clone()
}

fn sync_response(outputs: &[GroupOutput], token: ReplyToken) -> SyncGroupResponse {
    let found: Vec<&SyncGroupResponse> = outputs
        .iter()
        .filter_map(|output| match output {
            GroupOutput::SyncResponse(output_token, response) if *output_token == token => {
                Some(response)
            }
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 1, "token {token} answered once in {outputs:?}");
    found[0].clone()
}

fn sync(
    coordinator: &mut GroupCoordinator,
    now_ms: u64,
    token: ReplyToken,
    member_id: &str,
    generation_id: i32,
    assignments: &[(&str, &'static [u8])],
) -> Vec<GroupOutput> {
    let request = SyncGroupRequest::default()
        .with_group_id(GroupId(text(GROUP)))
        .with_generation_id(generation_id)
        .with_member_id(text(member_id))
        .with_assignments(
            assignments
                .iter()
                .map(|(member, assignment)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(text(member))
                        .with_assignment(Bytes::from_static(assignment))
                })
                .collect(),
        );
    coordinator.sync_group(now_ms, token, 5, request)
}

fn heartbeat(
    coordinator: &mut GroupCoordinator,
    now_ms: u64,
    member_id: &str,
    generation_id: i32,
) -> i16 {
    heartbeat_static(coordinator, now_ms, member_id, None, generation_id)
}

fn heartbeat_static(
    coordinator: &mut GroupCoordinator,
    now_ms: u64,
    member_id: &str,
    instance: Option<&str>,
    generation_id: i32,
) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(GroupId(text(GROUP)))
        .with_generation_id(generation_id)
        .with_member_id(text(member_id))
        .with_group_instance_id(instance.map(text));
    coordinator.heartbeat(now_ms, 4, request).error_code
}

/// A stable group of two members: (first member id = leader, second member id).
fn stable_group_of_two(coordinator: &mut GroupCoordinator) -> (String, String) {
    assert!(join(coordinator, 0, 1, "", None).is_empty());
    assert_eq!(
        coordinator.group_state(GROUP),
        GroupState::PreparingRebalance
    );
    assert_eq!(coordinator.next_deadline_ms(), Some(INITIAL_DELAY_MS));
    assert!(join(coordinator, 10, 2, "", None).is_empty());
    // The second member extends the initial delay.
    assert_eq!(coordinator.next_deadline_ms(), Some(10 + INITIAL_DELAY_MS));
    assert!(coordinator.tick(100).is_empty());
    let outputs = coordinator.tick(110);
    assert_eq!(outputs.len(), 2);
    let first = join_response(&outputs, 1);
    let second = join_response(&outputs, 2);
    assert_eq!(first.error_code, 0);
    assert_eq!(first.generation_id, 1);
    assert_eq!(second.generation_id, 1);
    assert_eq!(
        first.protocol_name.as_ref().map(|name| name.as_str()),
        Some("range")
    );
    let leader = first.member_id.as_str().to_owned();
    let follower = second.member_id.as_str().to_owned();
    assert!(leader.starts_with("client-"));
    assert_ne!(leader, follower);
    assert_eq!(first.leader.as_str(), leader);
    assert_eq!(second.leader.as_str(), leader);
    assert_eq!(first.members.len(), 2, "the leader gets the member list");
    assert!(second.members.is_empty(), "followers do not");
    assert_eq!(
        first.members[0].metadata,
        Bytes::from_static(b"subscription")
    );
    assert_eq!(
        coordinator.group_state(GROUP),
        GroupState::CompletingRebalance
    );

    // Followers wait for the leader's assignment.
    assert!(sync(coordinator, 120, 3, &follower, 1, &[]).is_empty());
    let outputs = sync(
        coordinator,
        130,
        4,
        &leader,
        1,
        &[(&leader, b"p0"), (&follower, b"p1")],
    );
    assert_eq!(outputs.len(), 2);
    assert_eq!(
        sync_response(&outputs, 4).assignment,
        Bytes::from_static(b"p0")
    );
    assert_eq!(
        sync_response(&outputs, 3).assignment,
        Bytes::from_static(b"p1")
    );
    assert_eq!(
        sync_response(&outputs, 3)
            .protocol_name
            .as_ref()
            .map(|name| name.as_str()),
        Some("range")
    );
    assert_eq!(coordinator.group_state(GROUP), GroupState::Stable);
    (leader, follower)
}

#[test]
fn two_members_join_sync_and_heartbeat() {
    let mut coordinator = coordinator();
    let (leader, follower) = stable_group_of_two(&mut coordinator);
    assert_eq!(heartbeat(&mut coordinator, 1_000, &leader, 1), 0);
    assert_eq!(heartbeat(&mut coordinator, 1_000, &follower, 1), 0);
    assert_eq!(
        heartbeat(&mut coordinator, 1_000, &follower, 0),
        code(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        heartbeat(&mut coordinator, 1_000, "stranger", 1),
        code(ResponseError::UnknownMemberId)
    );
    // A sync in the stable state returns the stored assignment.
    let outputs = sync(&mut coordinator, 1_000, 9, &follower, 1, &[]);
    assert_eq!(
        sync_response(&outputs, 9).assignment,
        Bytes::from_static(b"p1")
    );
    assert_eq!(
        coordinator.next_deadline_ms(),
        Some(1_000 + SESSION_TIMEOUT_MS as u64)
    );
}

#[test]
fn a_third_member_triggers_a_rebalance_everyone_rejoins() {
    let mut coordinator = coordinator();
    let (leader, follower) = stable_group_of_two(&mut coordinator);
    assert!(join(&mut coordinator, 1_000, 10, "", None).is_empty());
    assert_eq!(
        coordinator.group_state(GROUP),
        GroupState::PreparingRebalance
    );
    assert_eq!(
        heartbeat(&mut coordinator, 1_100, &leader, 1),
        code(ResponseError::RebalanceInProgress)
    );
    assert_eq!(
        heartbeat(&mut coordinator, 1_100, &follower, 1),
        code(ResponseError::RebalanceInProgress)
    );
    assert!(join(&mut coordinator, 1_200, 11, &leader, None).is_empty());
    // The last member to rejoin completes the join at once.
    let outputs = join(&mut coordinator, 1_300, 12, &follower, None);
    assert_eq!(outputs.len(), 3);
    for token in [10, 11, 12] {
        let response = join_response(&outputs, token);
        assert_eq!(response.error_code, 0);
        assert_eq!(response.generation_id, 2);
        assert_eq!(response.leader.as_str(), leader);
    }
    assert_eq!(join_response(&outputs, 11).members.len(), 3);
    assert_eq!(
        coordinator.group_state(GROUP),
        GroupState::CompletingRebalance
    );
    // An old-generation heartbeat is now illegal.
    assert_eq!(
        heartbeat(&mut coordinator, 1_400, &follower, 1),
        code(ResponseError::IllegalGeneration)
    );
}

#[test]
fn join_v4_requires_a_member_id_first() {
    let mut coordinator = coordinator();
    let request = join_request("", None, b"subscription");
    let outputs = coordinator.join_group(0, 1, 4, request, "client", "/10.0.0.1", 7);
    let response = join_response(&outputs, 1);
    assert_eq!(response.error_code, code(ResponseError::MemberIdRequired));
    let member_id = response.member_id.as_str().to_owned();
    assert!(member_id.starts_with("client-"));
    assert_eq!(coordinator.group_state(GROUP), GroupState::Empty);
    let request = join_request(&member_id, None, b"subscription");
    assert!(coordinator
        .join_group(5, 2, 4, request, "client", "/10.0.0.1", 8)
        .is_empty());
    let outputs = coordinator.tick(5 + INITIAL_DELAY_MS);
    let response = join_response(&outputs, 2);
    assert_eq!(response.error_code, 0);
    assert_eq!(response.member_id.as_str(), member_id);
    assert_eq!(response.generation_id, 1);
}

#[test]
fn an_unused_two_step_member_id_expires() {
    let mut coordinator = coordinator();
    let request = join_request("", None, b"subscription");
    let outputs = coordinator.join_group(0, 1, 4, request, "client", "/10.0.0.1", 7);
    let member_id = join_response(&outputs, 1).member_id.as_str().to_owned();
    assert_eq!(
        coordinator.next_deadline_ms(),
        Some(SESSION_TIMEOUT_MS as u64)
    );
    assert!(coordinator.tick(SESSION_TIMEOUT_MS as u64).is_empty());
    assert_eq!(coordinator.group_state(GROUP), GroupState::Dead);
    let request = join_request(&member_id, None, b"subscription");
    let outputs = coordinator.join_group(20_000, 2, 4, request, "client", "/10.0.0.1", 8);
    assert_eq!(
        join_response(&outputs, 2).error_code,
        code(ResponseError::UnknownMemberId)
    );
}

#[test]
fn a_member_leaving_triggers_a_rebalance() {
    let mut coordinator = coordinator();
    let (leader, follower) = stable_group_of_two(&mut coordinator);
    let request = LeaveGroupRequest::default()
        .with_group_id(GroupId(text(GROUP)))
        .with_members(vec![
            MemberIdentity::default().with_member_id(text(&follower)),
            MemberIdentity::default().with_member_id(text("stranger")),
        ]);
    let (response, outputs) = coordinator.leave_group(1_000, 3, request);
    assert!(outputs.is_empty());
    assert_eq!(response.error_code, 0);
    assert_eq!(response.members[0].error_code, 0);
    assert_eq!(
        response.members[1].error_code,
        code(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        coordinator.group_state(GROUP),
        GroupState::PreparingRebalance
    );
    assert_eq!(
        heartbeat(&mut coordinator, 1_100, &leader, 1),
        code(ResponseError::RebalanceInProgress)
    );
    let outputs = join(&mut coordinator, 1_200, 20, &leader, None);
    let response = join_response(&outputs, 20);
    assert_eq!(response.generation_id, 2);
    assert_eq!(response.members.len(), 1);

    // v0-2: a single member, its error at the top level.
    let request = LeaveGroupRequest::default()
        .with_group_id(GroupId(text(GROUP)))
        .with_member_id(text(&follower));
    let (response, _) = coordinator.leave_group(1_300, 1, request);
    assert_eq!(response.error_code, code(ResponseError::UnknownMemberId));
}

#[test]
fn the_last_member_leaving_empties_the_group() {
    let mut coordinator = coordinator();
    let (leader, follower) = stable_group_of_two(&mut coordinator);
    for member in [&leader, &follower] {
        let request = LeaveGroupRequest::default()
            .with_group_id(GroupId(text(GROUP)))
            .with_member_id(text(member));
        let (response, _) = coordinator.leave_group(1_000, 2, request);
        assert_eq!(response.error_code, 0);
    }
    assert_eq!(coordinator.group_state(GROUP), GroupState::Empty);
}

#[test]
fn session_expiry_removes_the_member_and_rebalances() {
    let mut coordinator = coordinator();
    let (leader, follower) = stable_group_of_two(&mut coordinator);
    // Sessions were last refreshed by the syncs at 120 (follower) and 130 (leader).
    assert_eq!(heartbeat(&mut coordinator, 5_000, &leader, 1), 0);
    let follower_deadline_ms = 120 + SESSION_TIMEOUT_MS as u64;
    assert_eq!(coordinator.next_deadline_ms(), Some(follower_deadline_ms));
    assert!(coordinator.tick(follower_deadline_ms - 1).is_empty());
    assert_eq!(coordinator.group_state(GROUP), GroupState::Stable);
    assert!(coordinator.tick(follower_deadline_ms).is_empty());
    assert_eq!(
        coordinator.group_state(GROUP),
        GroupState::PreparingRebalance
    );
    assert_eq!(
        heartbeat(&mut coordinator, 10_200, &follower, 1),
        code(ResponseError::UnknownMemberId)
    );
    let outputs = join(&mut coordinator, 10_300, 30, &leader, None);
    let response = join_response(&outputs, 30);
    assert_eq!(response.generation_id, 2);
    assert_eq!(response.members.len(), 1);
}

#[test]
fn rebalance_timeout_drops_a_member_that_did_not_rejoin() {
    let mut coordinator = coordinator();
    let (leader, follower) = stable_group_of_two(&mut coordinator);
    assert!(join(&mut coordinator, 1_000, 40, "", None).is_empty());
    assert!(join(&mut coordinator, 1_100, 41, &leader, None).is_empty());
    // The follower keeps heartbeating but never rejoins.
    let deadline_ms = 1_000 + REBALANCE_TIMEOUT_MS as u64;
    let mut now_ms = 1_000;
    while now_ms + 5_000 < deadline_ms {
        now_ms += 5_000;
        assert_eq!(
            heartbeat(&mut coordinator, now_ms, &follower, 1),
            code(ResponseError::RebalanceInProgress)
        );
        assert!(coordinator.tick(now_ms).is_empty());
    }
    assert_eq!(coordinator.next_deadline_ms(), Some(deadline_ms));
    let outputs = coordinator.tick(deadline_ms);
    assert_eq!(outputs.len(), 2);
    assert_eq!(join_response(&outputs, 41).members.len(), 2);
    assert_eq!(join_response(&outputs, 40).generation_id, 2);
    assert_eq!(
        heartbeat(&mut coordinator, deadline_ms, &follower, 2),
        code(ResponseError::UnknownMemberId)
    );
}

#[test]
fn a_static_member_restart_keeps_its_assignment_without_a_rebalance() {
    let mut coordinator = coordinator();
    assert!(join(&mut coordinator, 0, 1, "", Some("instance-a")).is_empty());
    assert!(join(&mut coordinator, 0, 2, "", None).is_empty());
    let outputs = coordinator.tick(INITIAL_DELAY_MS);
    let static_id = join_response(&outputs, 1).member_id.as_str().to_owned();
    let dynamic_id = join_response(&outputs, 2).member_id.as_str().to_owned();
    let leader = join_response(&outputs, 1).leader.as_str().to_owned();
    assert_eq!(leader, static_id);
    sync(&mut coordinator, 200, 3, &dynamic_id, 1, &[]);
    let outputs = sync(
        &mut coordinator,
        200,
        4,
        &static_id,
        1,
        &[(&static_id, b"a"), (&dynamic_id, b"b")],
    );
    assert_eq!(
        sync_response(&outputs, 3).assignment,
        Bytes::from_static(b"b")
    );

    // The static member restarts: a new member id, the same metadata.
    let outputs = join(&mut coordinator, 1_000, 5, "", Some("instance-a"));
    let response = join_response(&outputs, 5);
    assert_eq!(response.error_code, 0);
    assert_eq!(response.generation_id, 1);
    let new_id = response.member_id.as_str().to_owned();
    assert_ne!(new_id, static_id);
    assert_eq!(
        response.leader.as_str(),
        new_id,
        "leadership moves to the new id"
    );
    assert!(
        !response.skip_assignment,
        "v5 leaders are answered as followers"
    );
    assert!(response.members.is_empty());
    assert_eq!(coordinator.group_state(GROUP), GroupState::Stable);
    // The old incarnation is fenced; the new one gets the old assignment.
    assert_eq!(
        heartbeat_static(&mut coordinator, 1_100, &static_id, Some("instance-a"), 1),
        code(ResponseError::FencedInstanceId)
    );
    let outputs = sync(&mut coordinator, 1_100, 6, &new_id, 1, &[]);
    assert_eq!(
        sync_response(&outputs, 6).assignment,
        Bytes::from_static(b"a")
    );
    assert_eq!(heartbeat(&mut coordinator, 1_200, &dynamic_id, 1), 0);
    // A static rejoin with changed metadata does rebalance.
    let request = join_request("", Some("instance-a"), b"new-subscription");
    let outputs = coordinator.join_group(1_300, 7, JOIN_VERSION, request, "client", "/h", 99);
    assert!(outputs.is_empty());
    assert_eq!(
        coordinator.group_state(GROUP),
        GroupState::PreparingRebalance
    );
}

#[test]
fn group_max_size_and_inconsistent_protocols_are_rejected() {
    let mut coordinator = GroupCoordinator::new(GroupConfig {
        initial_rebalance_delay_ms: INITIAL_DELAY_MS,
        session_timeout_ms_min: 1_000,
        group_members_max: 1,
        ..GroupConfig::default()
    });
    assert!(join(&mut coordinator, 0, 1, "", None).is_empty());
    let outputs = join(&mut coordinator, 0, 2, "", None);
    assert_eq!(
        join_response(&outputs, 2).error_code,
        code(ResponseError::GroupMaxSizeReached)
    );
    let request = join_request("", None, b"x").with_protocol_type(text("connect"));
    let outputs = coordinator.join_group(0, 3, JOIN_VERSION, request, "client", "/h", 1);
    assert_eq!(
        join_response(&outputs, 3).error_code,
        code(ResponseError::InconsistentGroupProtocol)
    );
    let request = join_request("", None, b"x").with_session_timeout_ms(10);
    let outputs = coordinator.join_group(0, 4, JOIN_VERSION, request, "client", "/h", 1);
    assert_eq!(
        join_response(&outputs, 4).error_code,
        code(ResponseError::InvalidSessionTimeout)
    );
}

fn commit_request(
    member_id: &str,
    generation_id: i32,
    offsets: &[(&str, i32, i64)],
) -> OffsetCommitRequest {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (topic, partition, offset) in offsets {
        topics.entry(topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset)
                .with_committed_metadata(Some(text("meta"))),
        );
    }
    OffsetCommitRequest::default()
        .with_group_id(GroupId(text(GROUP)))
        .with_generation_id_or_member_epoch(generation_id)
        .with_member_id(text(member_id))
        .with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(text(topic)))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

fn commit_errors(prepared: &PreparedCommit) -> Vec<i16> {
    prepared
        .response
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| partition.error_code)
        })
        .collect()
}

/// A stable group of two whose leader committed offset 9 for partition 0 of topic `t`.
fn stable_group_that_committed(coordinator: &mut GroupCoordinator) -> (String, String) {
    let (leader, follower) = stable_group_of_two(coordinator);
    let prepared = coordinator.prepare_offset_commit(
        200,
        COMMIT_WALL_MS,
        8,
        &commit_request(&leader, 1, &[("t", 0, 9)]),
    );
    assert_eq!(commit_errors(&prepared), vec![0]);
    coordinator.apply_offset_commit(&prepared.records);
    (leader, follower)
}

fn fetch_one(coordinator: &GroupCoordinator, group_id: &str, topic: &str, partition: i32) -> i64 {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(text(group_id)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(text(topic)))
            .with_partition_indexes(vec![partition])]));
    let response = coordinator.offset_fetch(7, &request);
    assert_eq!(response.error_code, 0);
    response.topics[0].partitions[0].committed_offset
}

#[test]
fn offset_commit_is_validated_against_the_generation() {
    let mut coordinator = coordinator();
    let (leader, _follower) = stable_group_of_two(&mut coordinator);
    let stale = coordinator.prepare_offset_commit(
        1_000,
        COMMIT_WALL_MS,
        8,
        &commit_request(&leader, 0, &[("t", 0, 5)]),
    );
    assert_eq!(
        commit_errors(&stale),
        vec![code(ResponseError::IllegalGeneration)]
    );
    assert!(stale.records.is_empty());
    let stranger = coordinator.prepare_offset_commit(
        1_000,
        COMMIT_WALL_MS,
        8,
        &commit_request("stranger", 1, &[("t", 0, 5)]),
    );
    assert_eq!(
        commit_errors(&stranger),
        vec![code(ResponseError::UnknownMemberId)]
    );
    let simple = coordinator.prepare_offset_commit(
        1_000,
        COMMIT_WALL_MS,
        8,
        &commit_request("", -1, &[("t", 0, 5)]),
    );
    assert_eq!(
        commit_errors(&simple),
        vec![code(ResponseError::UnknownMemberId)]
    );

    let good = coordinator.prepare_offset_commit(
        1_000,
        COMMIT_WALL_MS,
        8,
        &commit_request(&leader, 1, &[("t", 0, 5), ("t", 1, 7)]),
    );
    assert_eq!(commit_errors(&good), vec![0, 0]);
    assert_eq!(good.records.len(), 2);
    // Nothing is visible until the records are durable and applied.
    assert_eq!(fetch_one(&coordinator, GROUP, "t", 0), -1);
    coordinator.apply_offset_commit(&good.records);
    assert_eq!(fetch_one(&coordinator, GROUP, "t", 0), 5);
    assert_eq!(fetch_one(&coordinator, GROUP, "t", 1), 7);

    // During a rebalance the current generation may still commit; once the join
    // completes, commits wait for the sync.
    join(&mut coordinator, 2_000, 50, "", None);
    let during = coordinator.prepare_offset_commit(
        2_000,
        COMMIT_WALL_MS,
        8,
        &commit_request(&leader, 1, &[("t", 0, 6)]),
    );
    assert_eq!(commit_errors(&during), vec![0]);
    coordinator.tick(2_000 + REBALANCE_TIMEOUT_MS as u64);
    assert_eq!(
        coordinator.group_state(GROUP),
        GroupState::CompletingRebalance
    );
    let completing = coordinator.prepare_offset_commit(
        40_000,
        COMMIT_WALL_MS,
        8,
        &commit_request(&leader, 2, &[("t", 0, 6)]),
    );
    assert_eq!(
        commit_errors(&completing),
        vec![code(ResponseError::RebalanceInProgress)]
    );

    let too_large = "x".repeat(OFFSET_METADATA_BYTES_MAX + 1);
    let mut request = commit_request("", -1, &[("t", 0, 1)]);
    request.group_id = GroupId(text("standalone"));
    request.topics[0].partitions[0].committed_metadata = Some(text(&too_large));
    let prepared = coordinator.prepare_offset_commit(40_000, COMMIT_WALL_MS, 8, &request);
    assert_eq!(
        commit_errors(&prepared),
        vec![code(ResponseError::OffsetMetadataTooLarge)]
    );
}

#[test]
fn standalone_consumers_commit_with_generation_minus_one() {
    let mut coordinator = coordinator();
    let prepared = coordinator.prepare_offset_commit(
        0,
        COMMIT_WALL_MS,
        8,
        &commit_request("", -1, &[("t", 3, 42)]),
    );
    assert_eq!(commit_errors(&prepared), vec![0]);
    coordinator.apply_offset_commit(&prepared.records);
    assert_eq!(fetch_one(&coordinator, GROUP, "t", 3), 42);
    assert_eq!(coordinator.group_state(GROUP), GroupState::Empty);
    let stale = GroupCoordinator::new(GroupConfig::default()).prepare_offset_commit(
        0,
        COMMIT_WALL_MS,
        8,
        &commit_request("member", 3, &[("t", 3, 42)]),
    );
    assert_eq!(
        commit_errors(&stale),
        vec![code(ResponseError::IllegalGeneration)]
    );
}

#[test]
fn offset_fetch_handles_unknown_partitions_all_topics_and_batches() {
    let mut coordinator = coordinator();
    let prepared = coordinator.prepare_offset_commit(
        0,
        COMMIT_WALL_MS,
        8,
        &commit_request("", -1, &[("a", 0, 1), ("b", 2, 3)]),
    );
    coordinator.apply_offset_commit(&prepared.records);
    assert_eq!(fetch_one(&coordinator, GROUP, "a", 1), -1);
    assert_eq!(fetch_one(&coordinator, "other-group", "a", 0), -1);

    let all = coordinator.offset_fetch(
        7,
        &OffsetFetchRequest::default()
            .with_group_id(GroupId(text(GROUP)))
            .with_topics(None),
    );
    let flattened: Vec<(String, i32, i64)> = all
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| {
                (
                    topic.name.0.as_str().to_owned(),
                    partition.partition_index,
                    partition.committed_offset,
                )
            })
        })
        .collect();
    assert_eq!(
        flattened,
        vec![("a".to_owned(), 0, 1), ("b".to_owned(), 2, 3)]
    );

    let request = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(text(GROUP)))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(TopicName(text("b")))
                .with_partition_indexes(vec![2, 5])])),
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(text("nobody")))
            .with_topics(None),
    ]);
    let response = coordinator.offset_fetch(8, &request);
    assert_eq!(response.groups.len(), 2);
    let offsets: Vec<i64> = response.groups[0].topics[0]
        .partitions
        .iter()
        .map(|partition| partition.committed_offset)
        .collect();
    assert_eq!(offsets, vec![3, -1]);
    assert!(response.groups[1].topics.is_empty());
}

#[test]
fn delete_groups_only_deletes_empty_groups_and_their_offsets() {
    let mut coordinator = coordinator();
    let (leader, follower) = stable_group_that_committed(&mut coordinator);
    let request = DeleteGroupsRequest::default()
        .with_groups_names(vec![GroupId(text(GROUP)), GroupId(text("missing"))]);
    let (response, records) = coordinator.delete_groups(2, &request);
    assert_eq!(
        response.results[0].error_code,
        code(ResponseError::NonEmptyGroup)
    );
    assert_eq!(
        response.results[1].error_code,
        code(ResponseError::GroupIdNotFound)
    );
    assert!(records.is_empty());

    for member in [&leader, &follower] {
        let request = LeaveGroupRequest::default()
            .with_group_id(GroupId(text(GROUP)))
            .with_member_id(text(member));
        coordinator.leave_group(300, 0, request);
    }
    assert_eq!(coordinator.group_state(GROUP), GroupState::Empty);
    let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(text(GROUP))]);
    let (response, records) = coordinator.delete_groups(2, &request);
    assert_eq!(response.results[0].error_code, 0);
    assert_eq!(
        records,
        vec![OffsetRecord::GroupTombstone {
            group_id: GROUP.to_owned()
        }]
    );
    assert_eq!(fetch_one(&coordinator, GROUP, "t", 0), -1);
    assert_eq!(coordinator.group_state(GROUP), GroupState::Dead);
    let (response, _) = coordinator.delete_groups(2, &request);
    assert_eq!(
        response.results[0].error_code,
        code(ResponseError::GroupIdNotFound)
    );
}

fn offset_delete_request(group_id: &str, partitions: &[(&str, i32)]) -> OffsetDeleteRequest {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        topics.entry(topic).or_default().push(*partition);
    }
    OffsetDeleteRequest::default()
        .with_group_id(GroupId(text(group_id)))
        .with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetDeleteRequestTopic::default()
                        .with_name(TopicName(text(topic)))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|partition| {
                                    OffsetDeleteRequestPartition::default()
                                        .with_partition_index(partition)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

fn offset_delete_errors(response: &OffsetDeleteResponse) -> Vec<(String, i32, i16)> {
    response
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| {
                (
                    topic.name.0.as_str().to_owned(),
                    partition.partition_index,
                    partition.error_code,
                )
            })
        })
        .collect()
}

/// A consumer-protocol subscription to `topics`, as a client sends it in JoinGroup.
fn subscription(topics: &[&str]) -> Bytes {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Encodable;
    let mut bytes = bytes::BytesMut::new();
    bytes.extend_from_slice(&1i16.to_be_bytes());
    ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|topic| text(topic)).collect())
        .encode(&mut bytes, 1)
        .unwrap();
    bytes.freeze()
}

#[test]
fn offset_delete_spares_the_topics_a_live_consumer_group_subscribes_to() {
    let mut coordinator = coordinator();
    let mut request = join_request("", None, b"");
    for protocol in request.protocols.iter_mut() {
        protocol.metadata = subscription(&["orders"]);
    }
    assert!(coordinator
        .join_group(
            0,
            1,
            JOIN_VERSION_DYNAMIC,
            request,
            "client",
            "/10.0.0.1",
            7
        )
        .is_empty());
    let outputs = coordinator.tick(INITIAL_DELAY_MS);
    let member = join_response(&outputs, 1).member_id.as_str().to_owned();
    assert_eq!(
        sync(&mut coordinator, 150, 2, &member, 1, &[(&member, b"all")]).len(),
        1
    );
    assert_eq!(coordinator.group_state(GROUP), GroupState::Stable);
    let prepared = coordinator.prepare_offset_commit(
        200,
        COMMIT_WALL_MS,
        8,
        &commit_request(
            &member,
            1,
            &[("orders", 0, 5), ("audit", 0, 6), ("audit", 1, 7)],
        ),
    );
    assert_eq!(commit_errors(&prepared), vec![0, 0, 0]);
    coordinator.apply_offset_commit(&prepared.records);

    let (response, records) = coordinator.offset_delete(&offset_delete_request(
        GROUP,
        &[("orders", 0), ("audit", 0), ("audit", 2)],
    ));
    assert_eq!(response.error_code, 0);
    assert_eq!(
        offset_delete_errors(&response),
        vec![
            ("audit".to_owned(), 0, 0),
            ("audit".to_owned(), 2, 0),
            (
                "orders".to_owned(),
                0,
                code(ResponseError::GroupSubscribedToTopic)
            ),
        ]
    );
    assert_eq!(
        records,
        vec![OffsetRecord::OffsetTombstone {
            group_id: GROUP.to_owned(),
            topic: "audit".to_owned(),
            partition: 0,
        }],
        "only a partition that had an offset gets a tombstone"
    );
    assert_eq!(fetch_one(&coordinator, GROUP, "audit", 0), -1);
    assert_eq!(fetch_one(&coordinator, GROUP, "audit", 1), 7);
    assert_eq!(fetch_one(&coordinator, GROUP, "orders", 0), 5);

    // Once the member has left, the group is Empty and every offset may go; the group,
    // left with none, is forgotten.
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(text(GROUP)))
        .with_member_id(text(&member));
    coordinator.leave_group(300, 0, leave);
    assert_eq!(coordinator.group_state(GROUP), GroupState::Empty);
    let (response, records) = coordinator.offset_delete(&offset_delete_request(
        GROUP,
        &[("orders", 0), ("audit", 1)],
    ));
    assert!(offset_delete_errors(&response)
        .iter()
        .all(|(_, _, error)| *error == 0));
    assert_eq!(records.len(), 2);
    assert_eq!(coordinator.group_state(GROUP), GroupState::Dead);
    let (response, _) = coordinator.offset_delete(&offset_delete_request(GROUP, &[("orders", 0)]));
    assert_eq!(response.error_code, code(ResponseError::GroupIdNotFound));
}

#[test]
fn offset_delete_refuses_a_live_group_of_another_protocol_or_unreadable_subscriptions() {
    // The test members' metadata is not a consumer subscription: nothing can be deleted
    // while they are in the group.
    let mut coordinator = coordinator();
    stable_group_that_committed(&mut coordinator);
    let (response, records) = coordinator.offset_delete(&offset_delete_request(GROUP, &[("t", 0)]));
    assert_eq!(
        offset_delete_errors(&response),
        vec![(
            "t".to_owned(),
            0,
            code(ResponseError::GroupSubscribedToTopic)
        )]
    );
    assert!(records.is_empty());
    assert_eq!(fetch_one(&coordinator, GROUP, "t", 0), 9);

    let mut connect = JoinGroupRequest::default()
        .with_group_id(GroupId(text("connect-workers")))
        .with_session_timeout_ms(SESSION_TIMEOUT_MS)
        .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
        .with_protocol_type(text("connect"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(text("sessioned"))
            .with_metadata(Bytes::from_static(b"worker"))]);
    connect.member_id = text("");
    assert!(coordinator
        .join_group(
            0,
            9,
            JOIN_VERSION_DYNAMIC,
            connect,
            "client",
            "/10.0.0.1",
            8
        )
        .is_empty());
    let (response, records) =
        coordinator.offset_delete(&offset_delete_request("connect-workers", &[("t", 0)]));
    assert_eq!(response.error_code, code(ResponseError::NonEmptyGroup));
    assert!(records.is_empty());
}

#[test]
fn describe_and_list_groups() {
    let mut coordinator = coordinator();
    let (leader, _follower) = stable_group_of_two(&mut coordinator);
    let prepared = coordinator.prepare_offset_commit(0, COMMIT_WALL_MS, 8, &{
        let mut request = commit_request("", -1, &[("t", 0, 1)]);
        request.group_id = GroupId(text("offsets-only"));
        request
    });
    coordinator.apply_offset_commit(&prepared.records);

    let request = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(text(GROUP)), GroupId(text("missing"))]);
    let response = coordinator.describe_groups(5, &request);
    let described = &response.groups[0];
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!(described.protocol_type.as_str(), "consumer");
    assert_eq!(described.protocol_data.as_str(), "range");
    assert_eq!(described.members.len(), 2);
    let leader_member = described
        .members
        .iter()
        .find(|member| member.member_id.as_str() == leader)
        .unwrap();
    assert_eq!(leader_member.member_assignment, Bytes::from_static(b"p0"));
    assert_eq!(leader_member.client_host.as_str(), "/10.0.0.1");
    assert_eq!(response.groups[1].group_state.as_str(), "Dead");
    assert_eq!(response.groups[1].error_code, 0);
    let response = coordinator.describe_groups(6, &request);
    assert_eq!(
        response.groups[1].error_code,
        code(ResponseError::GroupIdNotFound)
    );

    let listed = coordinator.list_groups(4, &ListGroupsRequest::default());
    let names: Vec<(&str, &str)> = listed
        .groups
        .iter()
        .map(|group| (group.group_id.0.as_str(), group.group_state.as_str()))
        .collect();
    assert_eq!(names, vec![("offsets-only", "Empty"), (GROUP, "Stable")]);
    let filtered = coordinator.list_groups(
        4,
        &ListGroupsRequest::default().with_states_filter(vec![text("empty")]),
    );
    assert_eq!(filtered.groups.len(), 1);
    assert_eq!(filtered.groups[0].group_id.0.as_str(), "offsets-only");
    let consumer_type = coordinator.list_groups(
        5,
        &ListGroupsRequest::default().with_types_filter(vec![text("consumer")]),
    );
    assert!(consumer_type.groups.is_empty());
}

#[test]
fn a_superseded_join_is_answered_once() {
    let mut coordinator = coordinator();
    let (leader, follower) = stable_group_of_two(&mut coordinator);
    assert!(join(&mut coordinator, 1_000, 60, &leader, None).is_empty());
    let outputs = join(&mut coordinator, 1_100, 61, &leader, None);
    assert_eq!(
        join_response(&outputs, 60).error_code,
        code(ResponseError::RebalanceInProgress)
    );
    let outputs = join(&mut coordinator, 1_200, 62, &follower, None);
    assert_eq!(join_response(&outputs, 61).generation_id, 2);
    assert_eq!(join_response(&outputs, 62).generation_id, 2);
}

// ---- Model-based test of the committed offsets ----

#[derive(Debug, Clone)]
enum OffsetOperation {
    Commit {
        group: u8,
        topic: u8,
        partition: i32,
        offset: i64,
    },
    Fetch {
        group: u8,
    },
    Delete {
        group: u8,
    },
    DeleteOffset {
        group: u8,
        topic: u8,
        partition: i32,
    },
    Reload,
    /// Both clocks move on.
    Advance {
        ms: u64,
    },
    Expire,
}

fn offset_operation() -> impl Strategy<Value = OffsetOperation> {
    prop_oneof![
        6 => (0u8..3, 0u8..2, 0i32..3, 0i64..1_000).prop_map(|(group, topic, partition, offset)| OffsetOperation::Commit { group, topic, partition, offset }),
        3 => (0u8..3).prop_map(|group| OffsetOperation::Fetch { group }),
        1 => (0u8..3).prop_map(|group| OffsetOperation::Delete { group }),
        2 => (0u8..3, 0u8..2, 0i32..3).prop_map(|(group, topic, partition)| OffsetOperation::DeleteOffset { group, topic, partition }),
        1 => Just(OffsetOperation::Reload),
        2 => (0u64..600).prop_map(|ms| OffsetOperation::Advance { ms }),
        2 => Just(OffsetOperation::Expire),
    ]
}

/// The model's committed offsets: group -> (topic, partition) -> (offset, committed at).
type ModelOffsets = BTreeMap<u8, BTreeMap<(String, i32), (i64, u64)>>;

/// Offsets expire quickly; a coordinator that loaded them waits the shorter session time.
const MODEL_RETENTION_MS: u64 = 1_000;
const MODEL_SESSION_MAX_MS: u64 = 400;

fn expiring_coordinator() -> GroupCoordinator {
    GroupCoordinator::new(GroupConfig {
        session_timeout_ms_min: 100,
        session_timeout_ms_max: MODEL_SESSION_MAX_MS,
        offsets_retention_ms: MODEL_RETENTION_MS,
        ..GroupConfig::default()
    })
}

fn group_name(group: u8) -> String {
    format!("group-{group}")
}

fn fetch_all(coordinator: &GroupCoordinator, group: u8) -> BTreeMap<(String, i32), i64> {
    let request =
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(text(&group_name(group))))
            .with_topics(None)]);
    let response = coordinator.offset_fetch(8, &request);
    response.groups[0]
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| {
                (
                    (topic.name.0.as_str().to_owned(), partition.partition_index),
                    partition.committed_offset,
                )
            })
        })
        .collect()
}

proptest! {
    #[test]
    fn committed_offsets_match_a_model(operations in proptest::collection::vec(offset_operation(), 1..60)) {
        let mut coordinator = expiring_coordinator();
        // The offsets log as the driver would store it: encoded (key, value) pairs.
        let mut log: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut model: ModelOffsets = BTreeMap::new();
        let offsets_of = |model: &ModelOffsets, group: u8| {
            model.get(&group).map(|partitions| {
                partitions.iter().map(|(key, (offset, _))| (key.clone(), *offset)).collect()
            }).unwrap_or_default()
        };
        // The model's clocks: monotonic `now_ms`, wall = COMMIT_WALL_MS + now_ms. Every group
        // here is a standalone consumer's, without members.
        let mut now_ms: u64 = 0;
        let wall = |now_ms: u64| COMMIT_WALL_MS + now_ms as i64;
        let mut loaded_at_ms: u64 = 0;
        for operation in operations {
            match operation {
                OffsetOperation::Commit { group, topic, partition, offset } => {
                    let topic = format!("topic-{topic}");
                    let mut request = commit_request("", -1, &[(&topic, partition, offset)]);
                    request.group_id = GroupId(text(&group_name(group)));
                    let prepared = coordinator.prepare_offset_commit(now_ms, wall(now_ms), 8, &request);
                    prop_assert_eq!(commit_errors(&prepared), vec![0]);
                    log.extend(prepared.records.iter().map(OffsetRecord::encode));
                    coordinator.apply_offset_commit(&prepared.records);
                    model.entry(group).or_default().insert((topic, partition), (offset, now_ms));
                }
                OffsetOperation::Advance { ms } => now_ms += ms,
                OffsetOperation::Expire => {
                    let tombstones = coordinator.expire_offsets(now_ms, wall(now_ms));
                    let grace_over = now_ms - loaded_at_ms >= MODEL_RETENTION_MS.min(MODEL_SESSION_MAX_MS);
                    // A group is as old as the newest of the commits it still has.
                    let expected: Vec<OffsetRecord> = model
                        .iter()
                        .filter(|(_, partitions)| {
                            let newest = partitions.values().map(|(_, at)| *at).max().expect("no empty groups");
                            grace_over && now_ms - newest >= MODEL_RETENTION_MS
                        })
                        .map(|(group, _)| OffsetRecord::GroupTombstone { group_id: group_name(*group) })
                        .collect();
                    prop_assert_eq!(&tombstones, &expected);
                    for tombstone in &tombstones {
                        let OffsetRecord::GroupTombstone { group_id } = tombstone else { unreachable!() };
                        model.retain(|group, _| group_name(*group) != *group_id);
                    }
                    log.extend(tombstones.iter().map(OffsetRecord::encode));
                }
                OffsetOperation::Fetch { group } => {
                    prop_assert_eq!(fetch_all(&coordinator, group), offsets_of(&model, group));
                }
                OffsetOperation::DeleteOffset { group, topic, partition } => {
                    let topic = format!("topic-{topic}");
                    let request = offset_delete_request(&group_name(group), &[(&topic, partition)]);
                    let (response, records) = coordinator.offset_delete(&request);
                    match model.get_mut(&group) {
                        None => {
                            prop_assert_eq!(response.error_code, code(ResponseError::GroupIdNotFound));
                            prop_assert!(records.is_empty());
                        }
                        Some(partitions) => {
                            prop_assert_eq!(response.error_code, 0);
                            prop_assert_eq!(response.topics[0].partitions[0].error_code, 0);
                            let had = partitions.remove(&(topic.clone(), partition)).is_some();
                            prop_assert_eq!(records.len(), usize::from(had));
                            if partitions.is_empty() {
                                model.remove(&group);
                            }
                        }
                    }
                    log.extend(records.iter().map(OffsetRecord::encode));
                }
                OffsetOperation::Delete { group } => {
                    let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(text(&group_name(group)))]);
                    let (response, records) = coordinator.delete_groups(2, &request);
                    let expected = if model.remove(&group).is_some() { 0 } else { code(ResponseError::GroupIdNotFound) };
                    prop_assert_eq!(response.results[0].error_code, expected);
                    log.extend(records.iter().map(OffsetRecord::encode));
                }
                OffsetOperation::Reload => {
                    coordinator = expiring_coordinator();
                    let records: Vec<OffsetRecord> = log
                        .iter()
                        .map(|(key, value)| OffsetRecord::decode(key, value).expect("written by encode"))
                        .collect();
                    coordinator.load_offset_records(records, now_ms, wall(now_ms));
                    loaded_at_ms = now_ms;
                }
            }
        }
        for group in 0..3 {
            prop_assert_eq!(fetch_all(&coordinator, group), offsets_of(&model, group));
        }
    }
}

// ---- Model-free state machine test: liveness of replies and timer sanity ----

#[derive(Debug, Clone)]
enum ClientOperation {
    Join { client: usize },
    Sync { client: usize },
    Heartbeat { client: usize },
    Leave { client: usize },
    Restart { client: usize },
    Advance { elapsed_ms: u64 },
}

fn client_operation() -> impl Strategy<Value = ClientOperation> {
    prop_oneof![
        4 => (0usize..3).prop_map(|client| ClientOperation::Join { client }),
        3 => (0usize..3).prop_map(|client| ClientOperation::Sync { client }),
        2 => (0usize..3).prop_map(|client| ClientOperation::Heartbeat { client }),
        1 => (0usize..3).prop_map(|client| ClientOperation::Leave { client }),
        1 => (0usize..3).prop_map(|client| ClientOperation::Restart { client }),
        3 => (0u64..15_000).prop_map(|elapsed_ms| ClientOperation::Advance { elapsed_ms }),
    ]
}

#[derive(Debug, Clone, Default)]
struct Client {
    member_id: String,
    generation_id: i32,
    /// The members to assign, if this client was told it leads the generation.
    members_to_assign: Vec<String>,
}

/// Client 2 is static; the others are dynamic and use the two-step join.
fn client_instance(client: usize) -> Option<&'static str> {
    (client == 2).then_some("instance-2")
}

struct Harness {
    coordinator: GroupCoordinator,
    clients: Vec<Client>,
    now_ms: u64,
    next_token: ReplyToken,
    /// Tokens handed in and not yet answered, with the client that sent them.
    outstanding: BTreeMap<ReplyToken, usize>,
}

impl Harness {
    fn absorb(&mut self, outputs: Vec<GroupOutput>) -> Result<(), TestCaseError> {
        for output in outputs {
            let client = self.outstanding.remove(&output.token());
            prop_assert!(
                client.is_some(),
                "token {} answered twice or never asked",
                output.token()
            );
            let client = &mut self.clients[client.unwrap()];
            if let GroupOutput::JoinResponse(_, response) = output {
                if response.error_code == 0
                    || response.error_code == code(ResponseError::MemberIdRequired)
                {
                    client.member_id = response.member_id.as_str().to_owned();
                }
                if response.error_code == 0 {
                    client.generation_id = response.generation_id;
                    client.members_to_assign = response
                        .members
                        .iter()
                        .map(|member| member.member_id.as_str().to_owned())
                        .collect();
                }
                if response.error_code == code(ResponseError::UnknownMemberId)
                    || response.error_code == code(ResponseError::FencedInstanceId)
                {
                    client.member_id.clear();
                }
            }
        }
        Ok(())
    }

    fn token(&mut self, client: usize) -> ReplyToken {
        self.next_token += 1;
        self.outstanding.insert(self.next_token, client);
        self.next_token
    }

    fn apply(&mut self, operation: ClientOperation) -> Result<(), TestCaseError> {
        match operation {
            ClientOperation::Join { client } => {
                let token = self.token(client);
                let instance = client_instance(client);
                let version = if instance.is_some() { 5 } else { 4 };
                let request =
                    join_request(&self.clients[client].member_id, instance, b"subscription");
                let outputs = self.coordinator.join_group(
                    self.now_ms,
                    token,
                    version,
                    request,
                    "client",
                    "/h",
                    token,
                );
                self.absorb(outputs)?;
            }
            ClientOperation::Sync { client } => {
                let token = self.token(client);
                let state = self.clients[client].clone();
                let assignments: Vec<(String, &'static [u8])> = state
                    .members_to_assign
                    .iter()
                    .map(|member| (member.clone(), &b"assigned"[..]))
                    .collect();
                let borrowed: Vec<(&str, &'static [u8])> = assignments
                    .iter()
                    .map(|(member, bytes)| (member.as_str(), *bytes))
                    .collect();
                let outputs = sync(
                    &mut self.coordinator,
                    self.now_ms,
                    token,
                    &state.member_id,
                    state.generation_id,
                    &borrowed,
                );
                self.absorb(outputs)?;
            }
            ClientOperation::Heartbeat { client } => {
                let state = &self.clients[client];
                heartbeat_static(
                    &mut self.coordinator,
                    self.now_ms,
                    &state.member_id.clone(),
                    client_instance(client),
                    state.generation_id,
                );
            }
            ClientOperation::Leave { client } => {
                let request = LeaveGroupRequest::default()
                    .with_group_id(GroupId(text(GROUP)))
                    .with_members(vec![MemberIdentity::default()
                        .with_member_id(text(&self.clients[client].member_id))
                        .with_group_instance_id(client_instance(client).map(text))]);
                let (_, outputs) = self.coordinator.leave_group(self.now_ms, 3, request);
                self.absorb(outputs)?;
                self.clients[client] = Client::default();
            }
            ClientOperation::Restart { client } => self.clients[client] = Client::default(),
            ClientOperation::Advance { elapsed_ms } => {
                self.now_ms += elapsed_ms;
                let outputs = self.coordinator.tick(self.now_ms);
                self.absorb(outputs)?;
                if let Some(deadline_ms) = self.coordinator.next_deadline_ms() {
                    prop_assert!(
                        deadline_ms > self.now_ms,
                        "tick left a deadline in the past"
                    );
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #[test]
    fn every_request_is_answered_exactly_once(operations in proptest::collection::vec(client_operation(), 1..80)) {
        let mut harness = Harness {
            coordinator: coordinator(),
            clients: vec![Client::default(); 3],
            now_ms: 0,
            next_token: 0,
            outstanding: BTreeMap::new(),
        };
        let mut twin = Harness {
            coordinator: coordinator(),
            clients: vec![Client::default(); 3],
            now_ms: 0,
            next_token: 0,
            outstanding: BTreeMap::new(),
        };
        for operation in operations {
            harness.apply(operation.clone())?;
            twin.apply(operation)?;
        }
        // Determinism: the same inputs give the same state.
        prop_assert_eq!(&harness.coordinator, &twin.coordinator);
        // With every client gone quiet, timeouts must answer everything still waiting.
        for _ in 0..10 {
            harness.apply(ClientOperation::Advance { elapsed_ms: 100_000 })?;
        }
        prop_assert!(harness.outstanding.is_empty(), "unanswered: {:?}", harness.outstanding);
        prop_assert_eq!(harness.coordinator.next_deadline_ms(), None);
    }
}

// ---- Every response encodes at the version its request came with ----

fn assert_encodes<T: kafka_protocol::protocol::Encodable>(message: &T, version: i16, what: &str) {
    let mut buffer = bytes::BytesMut::new();
    if let Err(error) = message.encode(&mut buffer, version) {
        panic!("{what} does not encode at v{version}: {error}");
    }
}

fn assert_outputs_encode(outputs: &[GroupOutput], join_version: i16, sync_version: i16) {
    for output in outputs {
        match output {
            GroupOutput::JoinResponse(_, response) => {
                assert_encodes(response, join_version, "JoinGroupResponse")
            }
            GroupOutput::SyncResponse(_, response) => {
                assert_encodes(response, sync_version, "SyncGroupResponse")
            }
        }
    }
}

/// A join at `version` with an empty member id, doing the two-step join where the
/// version requires it. Returns the outputs so far and the token of the pending join.
fn join_at(
    coordinator: &mut GroupCoordinator,
    version: i16,
    token: ReplyToken,
    instance: Option<&str>,
) -> (Vec<GroupOutput>, ReplyToken) {
    let request = join_request("", instance, b"m");
    let outputs = coordinator.join_group(0, token, version, request, "client", "/h", token);
    if version < 4 || instance.is_some() {
        return (outputs, token);
    }
    let response = join_response(&outputs, token);
    assert_eq!(response.error_code, code(ResponseError::MemberIdRequired));
    let mut all = outputs.clone();
    let request = join_request(response.member_id.as_str(), None, b"m");
    all.extend(coordinator.join_group(0, token + 1, version, request, "client", "/h", token + 1));
    (all, token + 1)
}

#[test]
fn responses_encode_at_every_version() {
    for join_version in 0..=9i16 {
        let sync_version = join_version.min(5);
        let mut coordinator = coordinator();
        let instance = (join_version >= 5).then_some("instance-s");
        let (mut outputs, first_token) = join_at(&mut coordinator, join_version, 1, instance);
        let (second, second_token) = join_at(&mut coordinator, join_version, 3, None);
        outputs.extend(second);
        outputs.extend(coordinator.tick(INITIAL_DELAY_MS));
        assert_outputs_encode(&outputs, join_version, sync_version);
        let first = join_response(&outputs, first_token);
        let follower = join_response(&outputs, second_token);
        assert_eq!(first.error_code, 0, "v{join_version}");
        let leader_id = first.member_id.as_str().to_owned();
        let follower_id = follower.member_id.as_str().to_owned();

        let mut outputs = sync(&mut coordinator, 200, 10, &follower_id, 1, &[]);
        outputs.extend(sync(
            &mut coordinator,
            200,
            11,
            &leader_id,
            1,
            &[(&leader_id, b"a"), (&follower_id, b"b")],
        ));
        assert_eq!(outputs.len(), 2);
        assert_outputs_encode(&outputs, join_version, sync_version);
        if let Some(instance) = instance {
            // A static leader restart answered without a rebalance.
            let outputs = coordinator.join_group(
                300,
                12,
                join_version,
                join_request("", Some(instance), b"m"),
                "client",
                "/h",
                12,
            );
            assert_eq!(join_response(&outputs, 12).error_code, 0);
            assert_eq!(
                join_response(&outputs, 12).skip_assignment,
                join_version >= 9
            );
            assert_outputs_encode(&outputs, join_version, sync_version);
        }
        let heartbeat = coordinator.heartbeat(
            400,
            join_version.min(4),
            HeartbeatRequest::default().with_group_id(GroupId(text(GROUP))),
        );
        assert_encodes(&heartbeat, join_version.min(4), "HeartbeatResponse");
    }

    let mut coordinator = coordinator();
    let (leader, follower) = stable_group_of_two(&mut coordinator);
    for version in 2..=9i16 {
        let mut request = commit_request(&leader, 1, &[("t", 0, 5), ("t", 1, 6)]);
        request.topics[0].partitions[0].committed_leader_epoch = 3;
        let prepared = coordinator.prepare_offset_commit(500, COMMIT_WALL_MS, version, &request);
        assert_encodes(&prepared.response, version, "OffsetCommitResponse");
        coordinator.apply_offset_commit(&prepared.records);
    }
    for version in 1..=9i16 {
        let topics = Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(text("t")))
            .with_partition_indexes(vec![0, 1, 2])]);
        let request = if version >= 8 {
            OffsetFetchRequest::default().with_groups(vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(text(GROUP)))
                    .with_topics(None),
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(text("other")))
                    .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                        .with_name(TopicName(text("t")))
                        .with_partition_indexes(vec![0])])),
            ])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(text(GROUP)))
                .with_topics(topics)
        };
        assert_encodes(
            &coordinator.offset_fetch(version, &request),
            version,
            "OffsetFetchResponse",
        );
    }
    let describe = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(text(GROUP)), GroupId(text("missing"))]);
    for version in 0..=6i16 {
        assert_encodes(
            &coordinator.describe_groups(version, &describe),
            version,
            "DescribeGroupsResponse",
        );
    }
    for version in 0..=5i16 {
        assert_encodes(
            &coordinator.list_groups(version, &ListGroupsRequest::default()),
            version,
            "ListGroupsResponse",
        );
    }
    for version in 0..=5i16 {
        let request = if version >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(text(GROUP)))
                .with_members(vec![
                    MemberIdentity::default().with_member_id(text("stranger"))
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(text(GROUP)))
                .with_member_id(text("stranger"))
        };
        let (response, outputs) = coordinator.leave_group(600, version, request);
        assert!(outputs.is_empty());
        assert_encodes(&response, version, "LeaveGroupResponse");
    }
    let _ = follower;
    for version in 0..=2i16 {
        let request = DeleteGroupsRequest::default()
            .with_groups_names(vec![GroupId(text(GROUP)), GroupId(text("missing"))]);
        assert_encodes(
            &coordinator.delete_groups(version, &request).0,
            version,
            "DeleteGroupsResponse",
        );
    }
}

// ---- Expiry of committed offsets (offsets.retention.minutes) ----

const RETENTION_MS: u64 = 60_000;

fn coordinator_with_retention(session_timeout_ms_max: u64) -> GroupCoordinator {
    GroupCoordinator::new(GroupConfig {
        initial_rebalance_delay_ms: INITIAL_DELAY_MS,
        session_timeout_ms_min: 1_000,
        session_timeout_ms_max,
        offsets_retention_ms: RETENTION_MS,
        ..GroupConfig::default()
    })
}

fn tombstone(group_id: &str) -> OffsetRecord {
    OffsetRecord::GroupTombstone {
        group_id: group_id.to_owned(),
    }
}

#[test]
fn offsets_expire_once_the_group_has_been_empty_and_uncommitted_for_the_retention() {
    let mut coordinator = coordinator_with_retention(1_800_000);
    let (leader, follower) = stable_group_of_two(&mut coordinator);
    let commit = coordinator.prepare_offset_commit(
        1_000,
        COMMIT_WALL_MS,
        8,
        &commit_request(&leader, 1, &[("t", 0, 5)]),
    );
    coordinator.apply_offset_commit(&commit.records);
    // With members, however old the commit, nothing expires.
    let far_wall = COMMIT_WALL_MS + 10 * RETENTION_MS as i64;
    assert_eq!(coordinator.expire_offsets(40_000, far_wall), vec![]);
    for member in [&leader, &follower] {
        let request = LeaveGroupRequest::default()
            .with_group_id(GroupId(text(GROUP)))
            .with_member_id(text(member));
        coordinator.leave_group(50_000, 2, request);
    }
    assert_eq!(coordinator.group_state(GROUP), GroupState::Empty);
    // Empty since 50 s: not for the whole retention yet.
    assert_eq!(coordinator.expire_offsets(109_999, far_wall), vec![]);
    // Empty long enough, but committed within the retention by the wall clock.
    let recent_wall = COMMIT_WALL_MS + RETENTION_MS as i64 - 1;
    assert_eq!(coordinator.expire_offsets(110_000, recent_wall), vec![]);
    assert_eq!(fetch_one(&coordinator, GROUP, "t", 0), 5);
    let due_wall = COMMIT_WALL_MS + RETENTION_MS as i64;
    assert_eq!(
        coordinator.expire_offsets(110_000, due_wall),
        vec![tombstone(GROUP)]
    );
    assert_eq!(fetch_one(&coordinator, GROUP, "t", 0), -1);
    assert_eq!(coordinator.group_state(GROUP), GroupState::Dead);
    assert_eq!(coordinator.expire_offsets(200_000, far_wall), vec![]);
}

#[test]
fn a_new_coordinator_expires_idle_groups_after_a_session_timeout_and_dates_untimed_commits_at_load()
{
    let session_timeout_ms_max = 20_000;
    let mut coordinator = coordinator_with_retention(session_timeout_ms_max);
    let commit = |group_id: &str, commit_timestamp_ms| OffsetRecord::Commit {
        group_id: group_id.to_owned(),
        topic: "t".to_owned(),
        partition: 0,
        offset: 7,
        leader_epoch: 0,
        metadata: String::new(),
        commit_timestamp_ms,
    };
    let loaded_wall = COMMIT_WALL_MS + 100_000;
    coordinator.load_offset_records(
        vec![
            commit("timed", Some(COMMIT_WALL_MS)),
            commit("untimed", None),
        ],
        5_000,
        loaded_wall,
    );
    // The snapshot records the load time for the commit that had none.
    assert!(coordinator
        .offsets_snapshot()
        .contains(&commit("untimed", Some(loaded_wall))));
    // Members of a live group would rejoin within a session timeout of the load.
    let grace_end = 5_000 + session_timeout_ms_max;
    assert_eq!(
        coordinator.expire_offsets(grace_end - 1, loaded_wall + 10 * RETENTION_MS as i64),
        vec![]
    );
    let wall = loaded_wall + RETENTION_MS as i64 - 1;
    assert_eq!(
        coordinator.expire_offsets(grace_end, wall),
        vec![tombstone("timed")]
    );
    assert_eq!(
        coordinator.expire_offsets(grace_end, wall + 1),
        vec![tombstone("untimed")]
    );
}

#[test]
fn a_member_joining_keeps_the_offsets_of_a_group_known_only_by_them() {
    let mut coordinator = coordinator_with_retention(20_000);
    coordinator.load_offset_records(
        vec![OffsetRecord::Commit {
            group_id: GROUP.to_owned(),
            topic: "t".to_owned(),
            partition: 0,
            offset: 3,
            leader_epoch: 0,
            metadata: String::new(),
            commit_timestamp_ms: Some(COMMIT_WALL_MS),
        }],
        0,
        COMMIT_WALL_MS + 10 * RETENTION_MS as i64,
    );
    let (_leader, _follower) = stable_group_of_two(&mut coordinator);
    assert_eq!(
        coordinator.expire_offsets(100_000, COMMIT_WALL_MS + 10 * RETENTION_MS as i64),
        vec![]
    );
    assert_eq!(fetch_one(&coordinator, GROUP, "t", 0), 3);
}
