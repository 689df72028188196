//! Consumer group APIs: routed to the coordinator through its driver (`server::groups`).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::group::GroupOutput;
use crate::server::broker::Broker;
use crate::server::connection::Peer;
use crate::server::groups;

/// Group requests reaching a broker that does not coordinate groups now: the client finds
/// the coordinator again.
const NOT_COORDINATOR: i16 = ResponseError::NotCoordinator.code();

/// FindCoordinator key types.
const KEY_TYPE_GROUP: i8 = 0;

fn now_ms(broker: &Broker) -> u64 {
    broker.groups.now_ms(broker.seams.clock.now())
}

pub fn find_coordinator(
    broker: &Arc<Broker>,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let coordinator = broker.group_coordinator();
    let (node, host, port) = match &coordinator {
        Some((node, host, port)) => (
            BrokerId(*node),
            StrBytes::from_string(host.clone()),
            i32::from(*port),
        ),
        None => (BrokerId(-1), StrBytes::from_static_str(""), -1),
    };
    let unsupported = request.key_type != KEY_TYPE_GROUP;
    let error = if unsupported || coordinator.is_none() {
        ResponseError::CoordinatorNotAvailable.code()
    } else {
        0
    };
    // Error messages are on the wire from version 1.
    let message = (version >= 1 && error != 0).then(|| {
        StrBytes::from_static_str(if unsupported {
            "only group coordinators exist; transactions are not supported"
        } else {
            "no group coordinator is elected yet"
        })
    });
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(node)
                    .with_host(host.clone())
                    .with_port(port)
                    .with_error_code(error)
                    .with_error_message(message.clone())
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    FindCoordinatorResponse::default()
        .with_error_code(error)
        .with_error_message(message)
        .with_node_id(node)
        .with_host(host)
        .with_port(port)
}

pub async fn join_group(
    broker: &Arc<Broker>,
    version: i16,
    request: JoinGroupRequest,
    client_id: &str,
    peer: &Peer,
) -> JoinGroupResponse {
    if !broker.is_group_coordinator() {
        return JoinGroupResponse::default().with_error_code(NOT_COORDINATOR);
    }
    let service = &broker.groups;
    let (token, receiver) = service.register();
    let seed = broker.seams.random.next_u64();
    let host = peer.address.ip().to_string();
    let outputs = service.coordinator().join_group(
        now_ms(broker),
        token,
        version,
        request,
        client_id,
        &host,
        seed,
    );
    service.deliver(outputs);
    match receiver.await {
        Ok(GroupOutput::JoinResponse(_, response)) => response,
        _ => JoinGroupResponse::default()
            .with_error_code(ResponseError::CoordinatorNotAvailable.code()),
    }
}

pub async fn sync_group(
    broker: &Arc<Broker>,
    version: i16,
    request: SyncGroupRequest,
) -> SyncGroupResponse {
    if !broker.is_group_coordinator() {
        return SyncGroupResponse::default().with_error_code(NOT_COORDINATOR);
    }
    let service = &broker.groups;
    let (token, receiver) = service.register();
    let outputs = service
        .coordinator()
        .sync_group(now_ms(broker), token, version, request);
    service.deliver(outputs);
    match receiver.await {
        Ok(GroupOutput::SyncResponse(_, response)) => response,
        _ => SyncGroupResponse::default()
            .with_error_code(ResponseError::CoordinatorNotAvailable.code()),
    }
}

pub fn heartbeat(
    broker: &Arc<Broker>,
    version: i16,
    request: HeartbeatRequest,
) -> HeartbeatResponse {
    if !broker.is_group_coordinator() {
        return HeartbeatResponse::default().with_error_code(NOT_COORDINATOR);
    }
    broker
        .groups
        .coordinator()
        .heartbeat(now_ms(broker), version, request)
}

pub fn leave_group(
    broker: &Arc<Broker>,
    version: i16,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    if !broker.is_group_coordinator() {
        return LeaveGroupResponse::default().with_error_code(NOT_COORDINATOR);
    }
    let (response, outputs) =
        broker
            .groups
            .coordinator()
            .leave_group(now_ms(broker), version, request);
    broker.groups.deliver(outputs);
    response
}

pub async fn offset_commit(
    broker: &Arc<Broker>,
    version: i16,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    if !broker.is_group_coordinator() {
        let topics = request
            .topics
            .iter()
            .map(|topic| {
                offset_commit_response::OffsetCommitResponseTopic::default()
                    .with_name(topic.name.clone())
                    .with_partitions(
                        topic
                            .partitions
                            .iter()
                            .map(|partition| {
                                offset_commit_response::OffsetCommitResponsePartition::default()
                                    .with_partition_index(partition.partition_index)
                                    .with_error_code(NOT_COORDINATOR)
                            })
                            .collect(),
                    )
            })
            .collect();
        return OffsetCommitResponse::default().with_topics(topics);
    }
    let _writing = broker.groups.offsets_writes.read().await;
    let prepared = broker.groups.coordinator().prepare_offset_commit(
        now_ms(broker),
        broker.seams.clock.wall_ms(),
        version,
        &request,
    );
    let mut response = prepared.response;
    if let Err(error) = groups::persist(broker, &prepared.records).await {
        tracing::warn!(%error, "could not persist committed offsets");
        for topic in response.topics.iter_mut() {
            for partition in topic.partitions.iter_mut() {
                if partition.error_code == 0 {
                    partition.error_code = ResponseError::CoordinatorNotAvailable.code();
                }
            }
        }
        return response;
    }
    broker
        .groups
        .coordinator()
        .apply_offset_commit(&prepared.records);
    response
}

pub fn offset_fetch(
    broker: &Arc<Broker>,
    version: i16,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    if !broker.is_group_coordinator() {
        if version >= 8 {
            let groups = request
                .groups
                .iter()
                .map(|group| {
                    offset_fetch_response::OffsetFetchResponseGroup::default()
                        .with_group_id(group.group_id.clone())
                        .with_error_code(NOT_COORDINATOR)
                })
                .collect();
            return OffsetFetchResponse::default().with_groups(groups);
        }
        // Versions 0 and 1 carry the error per partition only; clients of those versions
        // re-find the coordinator on any error.
        return OffsetFetchResponse::default().with_error_code(if version >= 2 {
            NOT_COORDINATOR
        } else {
            0
        });
    }
    broker.groups.coordinator().offset_fetch(version, &request)
}

pub fn list_groups(
    broker: &Arc<Broker>,
    version: i16,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    broker.groups.coordinator().list_groups(version, &request)
}

pub fn describe_groups(
    broker: &Arc<Broker>,
    version: i16,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    if !broker.is_group_coordinator() {
        let groups = request
            .groups
            .iter()
            .map(|group| {
                describe_groups_response::DescribedGroup::default()
                    .with_group_id(group.clone())
                    .with_error_code(NOT_COORDINATOR)
            })
            .collect();
        return DescribeGroupsResponse::default().with_groups(groups);
    }
    broker
        .groups
        .coordinator()
        .describe_groups(version, &request)
}

pub async fn delete_groups(
    broker: &Arc<Broker>,
    version: i16,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    if !broker.is_group_coordinator() {
        let results = request
            .groups_names
            .iter()
            .map(|group| {
                delete_groups_response::DeletableGroupResult::default()
                    .with_group_id(group.clone())
                    .with_error_code(NOT_COORDINATOR)
            })
            .collect();
        return DeleteGroupsResponse::default().with_results(results);
    }
    // The coordinator forgets the groups at once; the tombstones must be durable before the
    // client hears of it, or a restart would bring the offsets back.
    let _writing = broker.groups.offsets_writes.read().await;
    let (mut response, records) = broker.groups.coordinator().delete_groups(version, &request);
    if let Err(error) = groups::persist(broker, &records).await {
        tracing::warn!(%error, "could not persist group deletions");
        for result in response.results.iter_mut() {
            if result.error_code == 0 {
                result.error_code = ResponseError::CoordinatorNotAvailable.code();
            }
        }
    }
    response
}

pub async fn offset_delete(
    broker: &Arc<Broker>,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    if !broker.is_group_coordinator() {
        return OffsetDeleteResponse::default().with_error_code(NOT_COORDINATOR);
    }
    // As with DeleteGroups: the offsets are gone at once, and the tombstones must be durable
    // before the client hears of it.
    let _writing = broker.groups.offsets_writes.read().await;
    let (mut response, records) = broker.groups.coordinator().offset_delete(&request);
    if let Err(error) = groups::persist(broker, &records).await {
        tracing::warn!(%error, "could not persist offset deletions");
        response = OffsetDeleteResponse::default()
            .with_error_code(ResponseError::CoordinatorNotAvailable.code());
    }
    response
}
