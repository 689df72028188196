//! Opening replicas and applying committed metadata: the metadata image decides which topics
//! exist and where their partitions' replicas are; each broker opens a replica (and a Raft
//! node whose voters are the partition's replicas) for the partitions placed on it.

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use super::metadata::{
    all_voters_preferring, MetadataChange, MetadataRecord, METADATA_GROUP, METADATA_TOPIC,
};
use super::Cluster;
use crate::consensus::{GroupId, HardState, LogTerms, NodeId, RaftConfig, RaftNode};
use crate::log::LogConfig;
use crate::server::broker::{Placement, Topic, OFFSETS_TOPIC};
use crate::server::partition::{Partition, ReplicaLink};
use crate::server::topic_config::log_config_for_topic;
use crate::server::Broker;

/// Bytes read per step while applying the metadata log.
const METADATA_READ_BYTES: usize = 4 * 1024 * 1024;

/// Opens the metadata quorum's replica. Its log is never trimmed by retention.
pub fn open_metadata_replica(broker: &Arc<Broker>, cluster: &Arc<Cluster>) -> Result<(), String> {
    let log_config = LogConfig {
        retention_ms: -1,
        retention_bytes: -1,
        ..broker.config.log.clone()
    };
    let directory = broker.config.data_dir.join(format!("{METADATA_TOPIC}-0"));
    let placement = Placement {
        group: METADATA_GROUP,
        replicas: all_voters_preferring(&cluster.voter_ids(), METADATA_GROUP),
    };
    open_replica(
        broker,
        cluster,
        METADATA_TOPIC,
        0,
        directory,
        log_config,
        &placement,
    )
    .map(|_| ())
}

/// A partition's directory in cluster mode names its Raft group too: a topic deleted and
/// created again under the same name gets new directories, so replaying the metadata log
/// (create, delete, create) never confuses one incarnation's data with another's.
pub fn replica_directory(
    broker: &Broker,
    topic: &str,
    index: i32,
    group: GroupId,
) -> std::path::PathBuf {
    broker
        .config
        .data_dir
        .join(format!("{topic}-{index}.g{group}"))
}

fn open_replica(
    broker: &Arc<Broker>,
    cluster: &Arc<Cluster>,
    topic: &str,
    index: i32,
    directory: std::path::PathBuf,
    log_config: LogConfig,
    placement: &Placement,
) -> Result<Arc<Partition>, String> {
    let group = placement.group;
    let link = ReplicaLink {
        group,
        raft: cluster.raft.clone(),
    };
    let partition = Partition::open_replica(
        &broker.seams,
        topic,
        index,
        directory,
        log_config,
        broker.config.flush_policy,
        broker.data_visible.clone(),
        Some(link),
    )
    .map_err(|error| format!("{topic}-{index}: {error}"))?;
    let (hard_state, terms) = partition
        .recover_raft_state(broker.seams.disk.as_ref())
        .map_err(|error| format!("{topic}-{index}: {error}"))?;
    let node = raft_node(
        cluster,
        group,
        placement.replicas.clone(),
        hard_state,
        terms,
    );
    cluster
        .replicas
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .insert(group, partition.clone());
    cluster.raft.lock().insert(group, node);
    cluster.raft.wake.notify_one();
    Ok(partition)
}

/// A group's Raft node on this broker, recovering the given durable state. `voters` are the
/// group's replicas, preferred leader first.
pub fn raft_node(
    cluster: &Cluster,
    group: GroupId,
    voters: Vec<NodeId>,
    hard_state: HardState,
    terms: LogTerms,
) -> RaftNode {
    let seed = cluster.random_seed ^ group.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let config = RaftConfig::new(cluster.node_id, voters, seed);
    RaftNode::restart(config, hard_state, terms, cluster.raft.now_ms())
}

/// Applies the committed metadata records from `from_offset`; returns the next offset to apply.
pub fn apply_committed(
    broker: &Arc<Broker>,
    cluster: &Arc<Cluster>,
    from_offset: i64,
) -> Result<i64, String> {
    cluster.metadata_partition().for_each_committed_record(
        from_offset,
        METADATA_READ_BYTES,
        |record| {
            let Some(value) = record.value else {
                return Ok(());
            };
            match MetadataRecord::decode(&value) {
                Ok(decoded) => apply_record(broker, cluster, &decoded),
                Err(error) => {
                    tracing::warn!(offset = record.offset, %error, "skipping an unreadable metadata record");
                    Ok(())
                }
            }
        },
    )
}

fn apply_record(
    broker: &Arc<Broker>,
    cluster: &Arc<Cluster>,
    record: &MetadataRecord,
) -> Result<(), String> {
    let change = cluster
        .image
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .apply(record);
    match change {
        MetadataChange::Ignored { reason } => {
            tracing::debug!(%reason, "metadata record changed nothing");
        }
        MetadataChange::TopicGrew { name, first_new } => {
            let image = cluster.image();
            let topic = &image.topics[&name];
            let log_config = log_config_for_topic(&broker.log_defaults(&name), &topic.configs)
                .map_err(|error| format!("topic {name}: {error}"))?;
            let mut partitions: Vec<Option<Arc<Partition>>> = broker
                .topic(&name)
                .map(|existing| existing.partitions.clone())
                .unwrap_or_default();
            let placement: Vec<Placement> = topic
                .groups
                .iter()
                .zip(&topic.replicas)
                .map(|(group, replicas)| Placement {
                    group: *group,
                    replicas: replicas.clone(),
                })
                .collect();
            for (index, placed) in placement.iter().enumerate().skip(first_new as usize) {
                let index = index as i32;
                if !placed.replicas.contains(&cluster.node_id) {
                    partitions.push(None);
                    continue;
                }
                let directory = replica_directory(broker, &name, index, placed.group);
                let opened = open_replica(
                    broker,
                    cluster,
                    &name,
                    index,
                    directory,
                    log_config.clone(),
                    placed,
                );
                match opened {
                    Ok(partition) => partitions.push(Some(partition)),
                    // A replica whose log cannot be read (a failing disk) is left out until
                    // the next restart: this broker takes no part in its group, as if it were
                    // down for that partition, while the other replicas carry on. Failing the
                    // whole metadata record instead would leave the topic, and everything
                    // after it in the metadata log, unapplied here.
                    Err(error) => {
                        tracing::error!(%error,
                            "cannot open a replica; leaving it out until the broker restarts");
                        partitions.push(None);
                    }
                }
            }
            let id = Uuid::try_parse(&topic.id).unwrap_or_else(|_| Uuid::nil());
            tracing::info!(
                topic = %name,
                partitions = partitions.len(),
                hosted = partitions.iter().flatten().count(),
                "topic replicas open"
            );
            broker.install_replicated_topic(Topic {
                name: name.clone(),
                id,
                partitions,
                placement,
                configs: topic.configs.clone(),
                log_config,
                internal: name == OFFSETS_TOPIC,
            });
        }
        MetadataChange::TopicReconfigured { name } => {
            let image = cluster.image();
            let configs = image.topics[&name].configs.clone();
            match (
                broker.topic(&name),
                log_config_for_topic(&broker.log_defaults(&name), &configs),
            ) {
                (Some(topic), Ok(log_config)) => {
                    tracing::info!(topic = %name, ?configs, "topic settings changed");
                    broker.reconfigure_topic(Topic {
                        configs,
                        log_config,
                        ..(*topic).clone()
                    });
                }
                (None, _) => {
                    tracing::warn!(topic = %name, "settings changed for a topic this broker has not opened")
                }
                // Checked before it was proposed; a value this version refuses keeps the
                // settings it had rather than stopping the metadata log here.
                (Some(_), Err(error)) => {
                    tracing::error!(topic = %name, %error, "cannot apply the topic's new settings; keeping the old ones")
                }
            }
        }
        MetadataChange::LogStartRaised {
            name,
            partition,
            offset,
        } => match broker.partition(&name, partition) {
            Some(replica) => {
                tracing::info!(topic = %name, partition, offset, "log start raised by DeleteRecords");
                replica.raise_log_start_floor(offset);
            }
            None => {
                tracing::debug!(topic = %name, partition, "no replica here to raise the log start of")
            }
        },
        MetadataChange::TopicDeleted { name, groups } => {
            broker.forget_topic(&name);
            let removed: Vec<Arc<Partition>> = {
                let mut replicas = cluster
                    .replicas
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                groups
                    .iter()
                    .filter_map(|group| replicas.remove(group))
                    .collect()
            };
            {
                let mut raft = cluster.raft.lock();
                for group in &groups {
                    raft.remove(*group);
                }
            }
            let disk = broker.seams.disk.as_ref();
            for partition in removed {
                partition.retire_spares();
                if let Err(error) = disk.remove_dir_all(&partition.directory) {
                    tracing::warn!(directory = %partition.directory.display(), %error,
                        "could not remove a deleted partition's directory");
                }
            }
            if let Err(error) = disk.sync_dir(&broker.config.data_dir) {
                tracing::warn!(%error, "syncing the data directory after a deletion failed");
            }
            tracing::info!(topic = %name, "topic deleted");
        }
    }
    cluster.applied.send_modify(|count| *count += 1);
    Ok(())
}

/// The record creating the offsets topic, proposed by a controller that finds it missing.
pub fn offsets_topic_record(id: Uuid) -> MetadataRecord {
    MetadataRecord::CreateTopic {
        name: OFFSETS_TOPIC.to_string(),
        id: id.simple().to_string(),
        partitions: 1,
        configs: BTreeMap::new(),
        // Every broker holds the offsets: any of them can become the group coordinator.
        replicas: None,
    }
}
