//! Request handlers, one file per API family, and the dispatch table that routes to them.

pub mod admin;
pub mod alter_configs;
pub mod delete_records;
pub mod fetch;
pub mod groups;
pub mod leader_epoch;
pub mod list_offsets;
pub mod log_dirs;
pub mod metadata;
pub mod produce;
pub mod producer_id;

use std::sync::Arc;

use kafka_protocol::messages::{RequestKind, ResponseKind};

use super::broker::Broker;
use super::connection::Peer;
use crate::wire::{api_versions_response, DecodedRequest};

/// Serves one decoded request. `None` means the request gets no response (acks=0 produce).
pub async fn handle(
    broker: &Arc<Broker>,
    request: DecodedRequest,
    peer: &Peer,
) -> Option<ResponseKind> {
    let version = request.version;
    let client_id = request.client_id;
    let response = match request.body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions_response(0)),
        RequestKind::Metadata(body) => {
            ResponseKind::Metadata(metadata::metadata(broker, version, body).await)
        }
        RequestKind::Produce(body) => {
            ResponseKind::Produce(produce::produce(broker, version, body).await?)
        }
        RequestKind::Fetch(body) => ResponseKind::Fetch(fetch::fetch(broker, version, body).await),
        RequestKind::ListOffsets(body) => {
            ResponseKind::ListOffsets(list_offsets::list_offsets(broker, version, body))
        }
        RequestKind::OffsetForLeaderEpoch(body) => {
            ResponseKind::OffsetForLeaderEpoch(leader_epoch::offsets_for_leader_epoch(broker, body))
        }
        RequestKind::CreateTopics(body) => {
            ResponseKind::CreateTopics(admin::create_topics(broker, version, body).await)
        }
        RequestKind::DeleteTopics(body) => {
            ResponseKind::DeleteTopics(admin::delete_topics(broker, version, body).await)
        }
        RequestKind::CreatePartitions(body) => {
            ResponseKind::CreatePartitions(admin::create_partitions(broker, body).await)
        }
        RequestKind::DescribeConfigs(body) => {
            ResponseKind::DescribeConfigs(admin::describe_configs(broker, body))
        }
        RequestKind::AlterConfigs(body) => {
            ResponseKind::AlterConfigs(alter_configs::alter_configs(broker, body).await)
        }
        RequestKind::IncrementalAlterConfigs(body) => ResponseKind::IncrementalAlterConfigs(
            alter_configs::incremental_alter_configs(broker, body).await,
        ),
        RequestKind::InitProducerId(body) => {
            ResponseKind::InitProducerId(producer_id::init_producer_id(broker, body).await)
        }
        RequestKind::FindCoordinator(body) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(broker, version, body))
        }
        RequestKind::JoinGroup(body) => ResponseKind::JoinGroup(
            groups::join_group(broker, version, body, &client_id, peer).await,
        ),
        RequestKind::SyncGroup(body) => {
            ResponseKind::SyncGroup(groups::sync_group(broker, version, body).await)
        }
        RequestKind::Heartbeat(body) => {
            ResponseKind::Heartbeat(groups::heartbeat(broker, version, body))
        }
        RequestKind::LeaveGroup(body) => {
            ResponseKind::LeaveGroup(groups::leave_group(broker, version, body))
        }
        RequestKind::OffsetCommit(body) => {
            ResponseKind::OffsetCommit(groups::offset_commit(broker, version, body).await)
        }
        RequestKind::OffsetFetch(body) => {
            ResponseKind::OffsetFetch(groups::offset_fetch(broker, version, body))
        }
        RequestKind::ListGroups(body) => {
            ResponseKind::ListGroups(groups::list_groups(broker, version, body))
        }
        RequestKind::DescribeGroups(body) => {
            ResponseKind::DescribeGroups(groups::describe_groups(broker, version, body))
        }
        RequestKind::DeleteGroups(body) => {
            ResponseKind::DeleteGroups(groups::delete_groups(broker, version, body).await)
        }
        RequestKind::DeleteRecords(body) => {
            ResponseKind::DeleteRecords(delete_records::delete_records(broker, body).await)
        }
        RequestKind::DescribeLogDirs(body) => {
            ResponseKind::DescribeLogDirs(log_dirs::describe_log_dirs(broker, body))
        }
        RequestKind::OffsetDelete(body) => {
            ResponseKind::OffsetDelete(groups::offset_delete(broker, body).await)
        }
        other => {
            // The decoder only admits APIs listed in the version table, and each has an arm
            // above; reaching here means the two disagree.
            unreachable!("no handler for an advertised API: {other:?}")
        }
    };
    Some(response)
}
