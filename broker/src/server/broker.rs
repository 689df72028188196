//! The broker's shared state: its settings, seams, topics and partitions, and the services the
//! request handlers use. Handlers hold an `Arc<Broker>`.
//!
//! Locks are `std` locks held only for in-memory work, never across an `.await`; changes to the
//! topic catalogue, which do disk I/O, are serialized by an async mutex of their own.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use tokio::sync::Notify;
use uuid::Uuid;

use super::data_dir::{self, DataDirError, DataDirIdentity, TopicRecord};
use super::groups::GroupService;
use super::partition::Partition;
use super::topic_config::{check_min_insync_replicas, log_config_for_topic, validate_topic_name};
use crate::cluster::metadata::place_replicas;
use crate::cluster::{Cluster, MetadataRecord};
use crate::config::BrokerConfig;
use crate::consensus::{GroupId, NodeId};
use crate::io::{tasks, Clock, Disk, Random};
use crate::log::{LogConfig, LogError};
use crate::producer::ProducerIdAllocator;

/// Partitions a topic may have; bounds memory and the tasks a single request can create.
pub const TOPIC_PARTITIONS_MAX: i32 = 10_000;
/// Topics a broker holds.
pub const TOPICS_MAX: usize = 100_000;
/// The internal topic that stores committed group offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The seams a broker runs on.
#[derive(Clone)]
pub struct Seams {
    pub disk: Arc<dyn Disk>,
    pub clock: Clock,
    pub random: Random,
}

/// A topic and its partitions on this broker.
#[derive(Clone)]
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    /// Partition `i`'s replica on this broker; `None` where this broker holds no replica of
    /// it (a cluster whose topic has fewer replicas than brokers).
    pub partitions: Vec<Option<Arc<Partition>>>,
    /// Cluster mode: partition `i`'s Raft group and replicas. Empty on a single broker.
    pub placement: Vec<Placement>,
    pub configs: BTreeMap<String, String>,
    /// The broker's log defaults with this topic's overrides applied.
    pub log_config: LogConfig,
    pub internal: bool,
}

/// Where one partition lives in a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub group: GroupId,
    /// Preferred leader first.
    pub replicas: Vec<NodeId>,
}

/// What this broker has of one partition of a topic.
pub enum Replica<'a> {
    Here(&'a Arc<Partition>),
    /// The partition exists; other brokers hold its replicas.
    Elsewhere,
    NoSuchPartition,
}

impl Topic {
    pub fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }

    pub fn replica(&self, index: i32) -> Replica<'_> {
        match usize::try_from(index)
            .ok()
            .and_then(|index| self.partitions.get(index))
        {
            Some(Some(partition)) => Replica::Here(partition),
            Some(None) => Replica::Elsewhere,
            None => Replica::NoSuchPartition,
        }
    }

    /// The partitions this broker holds a replica of, in index order.
    pub fn hosted(&self) -> impl Iterator<Item = &Arc<Partition>> {
        self.partitions.iter().flatten()
    }
}

/// Partition `i`'s replicas, preferred leader first.
pub type Assignment = Vec<Vec<NodeId>>;

/// The partitions and replicas of a topic to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicShape {
    /// Counts, each -1 for the broker's default; replicas placed by the broker.
    Counts {
        partitions: i32,
        replication_factor: i16,
    },
    /// CreateTopics' manual assignment.
    Assigned(Assignment),
}

impl TopicShape {
    pub const DEFAULT: TopicShape = TopicShape::Counts {
        partitions: -1,
        replication_factor: -1,
    };
}

/// Why a topic operation failed, in Kafka's terms.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("topic `{0}` already exists")]
    AlreadyExists(String),
    #[error("unknown topic `{0}`")]
    Unknown(String),
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("replication factor {0} is not possible: it must be between 1 and the number of brokers ({1}), or -1 for default.replication.factor")]
    InvalidReplicationFactor(i16, usize),
    #[error("invalid replica assignment: {0}")]
    InvalidAssignment(String),
    #[error("the cluster did not apply the change: {0}")]
    NotApplied(String),
    #[error("too many topics (at most {TOPICS_MAX})")]
    TooManyTopics,
    #[error("storage error: {0}")]
    Storage(String),
}

impl From<LogError> for TopicError {
    fn from(error: LogError) -> Self {
        TopicError::Storage(error.to_string())
    }
}

impl From<DataDirError> for TopicError {
    fn from(error: DataDirError) -> Self {
        TopicError::Storage(error.to_string())
    }
}

/// The broker's shared state.
pub struct Broker {
    pub config: BrokerConfig,
    pub seams: Seams,
    pub identity: DataDirIdentity,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serializes catalogue changes (create, delete, add partitions).
    catalogue: tokio::sync::Mutex<()>,
    /// Woken whenever a high watermark moves, for long-polling fetches.
    pub data_visible: Arc<Notify>,
    /// Stops each partition's syncer when its topic goes away or the broker stops.
    syncer_stops: Mutex<BTreeMap<(String, i32), Arc<Notify>>>,
    /// The consumer group coordinator and its driver.
    pub groups: GroupService,
    producer_ids: Mutex<ProducerIdAllocator>,
    /// Serializes producer id reservations, which write a checkpoint.
    pub producer_id_reservation: tokio::sync::Mutex<()>,
    /// Set in cluster mode once the cluster member has started.
    pub cluster: OnceLock<Arc<Cluster>>,
}

fn hex_id(id: &Uuid) -> String {
    id.simple().to_string()
}

impl Broker {
    /// Opens the data directory and every topic in it. Blocking: call before serving.
    pub fn open(config: BrokerConfig, seams: Seams) -> Result<Arc<Self>, TopicError> {
        let root = config.data_dir.clone();
        let identity =
            data_dir::open_data_dir(seams.disk.as_ref(), &root, config.node_id, &seams.random)?;
        let producer_id_limit = data_dir::load_producer_id_limit(seams.disk.as_ref(), &root)?;
        let config_for_groups = config.clone();
        let clock_origin = seams.clock.now();
        let broker = Arc::new(Self {
            config,
            seams,
            identity,
            topics: RwLock::new(BTreeMap::new()),
            catalogue: tokio::sync::Mutex::new(()),
            data_visible: Arc::new(Notify::new()),
            syncer_stops: Mutex::new(BTreeMap::new()),
            groups: GroupService::new(&config_for_groups, clock_origin),
            producer_ids: Mutex::new(ProducerIdAllocator::recover(producer_id_limit)),
            producer_id_reservation: tokio::sync::Mutex::new(()),
            cluster: OnceLock::new(),
        });
        if broker.config.is_clustered() {
            // Topics come from the metadata quorum once the cluster member starts.
            return Ok(broker);
        }
        let records = data_dir::load_topics(broker.seams.disk.as_ref(), &root)?;
        broker.remove_orphan_partitions(&records)?;
        for (name, record) in &records {
            let id = Uuid::try_parse(&record.id).map_err(|_| {
                TopicError::Storage(format!("topic {name} has a bad id in topics.json"))
            })?;
            let topic =
                broker.open_topic(name, id, record.partitions, record.configs.clone(), 0)?;
            for (&index, &offset) in &record.log_start_offsets {
                if let Some(Some(partition)) = usize::try_from(index)
                    .ok()
                    .and_then(|index| topic.partitions.get(index))
                {
                    partition.raise_log_start_floor(offset);
                }
            }
            broker.install(topic);
        }
        if !records.contains_key(OFFSETS_TOPIC) {
            let topic =
                broker.open_topic(OFFSETS_TOPIC, broker.new_topic_id(), 1, BTreeMap::new(), 0)?;
            let mut catalogue = records.clone();
            catalogue.insert(OFFSETS_TOPIC.to_string(), Self::record_of(&topic));
            data_dir::store_topics(broker.seams.disk.as_ref(), &root, &catalogue)?;
            broker.install(topic);
        }
        Ok(broker)
    }

    /// The producer id allocator.
    pub fn producer_ids(&self) -> std::sync::MutexGuard<'_, ProducerIdAllocator> {
        self.producer_ids
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn new_topic_id(&self) -> Uuid {
        Uuid::from_bytes(self.seams.random.uuid_bytes())
    }

    fn record_of(topic: &Topic) -> TopicRecord {
        let log_start_offsets = topic
            .partitions
            .iter()
            .enumerate()
            .filter_map(|(index, partition)| {
                let floor = partition.as_ref()?.log_start_floor();
                (floor > 0).then_some((index as i32, floor))
            })
            .collect();
        TopicRecord {
            id: hex_id(&topic.id),
            partitions: topic.partitions.len() as i32,
            configs: topic.configs.clone(),
            log_start_offsets,
        }
    }

    /// Partition directories that the catalogue does not list are left over from a topic
    /// creation or deletion interrupted by a crash; the catalogue is the truth.
    fn remove_orphan_partitions(
        &self,
        records: &BTreeMap<String, TopicRecord>,
    ) -> Result<(), TopicError> {
        let root = &self.config.data_dir;
        let disk = self.seams.disk.as_ref();
        let entries = disk
            .list(root)
            .map_err(|error| TopicError::Storage(error.to_string()))?;
        for entry in entries.iter().filter(|entry| entry.is_dir) {
            let listed = entry
                .name
                .rsplit_once('-')
                .is_some_and(|(topic, partition)| {
                    partition.parse::<i32>().is_ok_and(|partition| {
                        records
                            .get(topic)
                            .is_some_and(|record| partition >= 0 && partition < record.partitions)
                    })
                });
            let is_offsets = entry.name == format!("{OFFSETS_TOPIC}-0");
            if !listed && !is_offsets {
                tracing::warn!(directory = %entry.name, "removing a partition directory not in the topic catalogue");
                disk.remove_dir_all(&root.join(&entry.name))
                    .map_err(|error| TopicError::Storage(error.to_string()))?;
            }
        }
        disk.sync_dir(root)
            .map_err(|error| TopicError::Storage(error.to_string()))
    }

    /// Opens partitions `first_new..partitions` of a topic (all of them when 0).
    fn open_topic(
        &self,
        name: &str,
        id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
        first_new: i32,
    ) -> Result<Topic, TopicError> {
        let log_config = log_config_for_topic(&self.log_defaults(name), &configs)
            .map_err(TopicError::InvalidConfig)?;
        let mut opened = Vec::with_capacity(partitions as usize);
        for index in first_new..partitions {
            let directory = data_dir::partition_directory(&self.config.data_dir, name, index);
            opened.push(Some(Partition::open(
                &self.seams,
                name,
                index,
                directory,
                log_config.clone(),
                self.config.flush_policy,
                self.data_visible.clone(),
            )?));
        }
        Ok(Topic {
            name: name.to_string(),
            id,
            partitions: opened,
            placement: Vec::new(),
            configs,
            log_config,
            internal: name == OFFSETS_TOPIC,
        })
    }

    /// The log settings a topic's overrides apply to: the broker's, except for the offsets
    /// topic's segment size (`offsets.topic.segment.bytes`).
    pub fn log_defaults(&self, topic: &str) -> LogConfig {
        let mut defaults = self.config.log.clone();
        if topic == OFFSETS_TOPIC {
            defaults.segment_bytes = self.config.offsets_segment_bytes;
        }
        defaults
    }

    /// Makes a topic visible and starts its partitions' syncers.
    fn install(&self, topic: Topic) {
        let topic = Arc::new(topic);
        for partition in topic.hosted() {
            self.start_syncer(partition);
        }
        self.topics
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(topic.name.clone(), topic);
    }

    fn start_syncer(&self, partition: &Arc<Partition>) {
        let stop = Arc::new(Notify::new());
        self.syncer_stops
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert((partition.topic.clone(), partition.index), stop.clone());
        tasks::spawn(partition.clone().run_syncer(self.seams.disk.clone(), stop));
    }

    fn stop_syncer(&self, topic: &str, index: i32) {
        let stop = self
            .syncer_stops
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(&(topic.to_string(), index));
        if let Some(stop) = stop {
            stop.notify_one();
        }
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(name)
            .cloned()
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .values()
            .find(|topic| topic.id == *id)
            .cloned()
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let topic = self.topic(topic)?;
        usize::try_from(index)
            .ok()
            .and_then(|index| topic.partitions.get(index).cloned().flatten())
    }

    /// Every topic, in name order.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn catalogue_records(&self) -> BTreeMap<String, TopicRecord> {
        self.topics()
            .iter()
            .map(|topic| (topic.name.clone(), Self::record_of(topic)))
            .collect()
    }

    /// Creates a topic. Partition logs are created first and the catalogue written last, so a
    /// crash in between leaves orphan directories that the next start removes.
    pub async fn create_topic(
        self: &Arc<Self>,
        name: &str,
        shape: TopicShape,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        let _guard = self.catalogue.lock().await;
        validate_topic_name(name).map_err(TopicError::InvalidName)?;
        if name.starts_with("__") && name != OFFSETS_TOPIC && self.topic(name).is_none() {
            tracing::debug!(
                topic = name,
                "creating a topic with an internal-looking name"
            );
        }
        if self.topic(name).is_some() {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        let (partitions, replicas, assignment) = self.topic_shape(shape)?;
        log_config_for_topic(&self.config.log, &configs).map_err(TopicError::InvalidConfig)?;
        check_min_insync_replicas(&configs, replicas).map_err(TopicError::InvalidConfig)?;
        if self.topics().len() >= TOPICS_MAX {
            return Err(TopicError::TooManyTopics);
        }
        if validate_only {
            let topic = Topic {
                name: name.to_string(),
                id: Uuid::nil(),
                partitions: Vec::new(),
                placement: Vec::new(),
                configs,
                log_config: self.config.log.clone(),
                internal: false,
            };
            return Ok(Arc::new(topic));
        }
        if let Some(cluster) = self.cluster.get() {
            let id = self.new_topic_id();
            let placement = assignment.unwrap_or_else(|| {
                place_replicas(
                    &cluster.voter_ids(),
                    0,
                    partitions,
                    replicas,
                    u64::from(crc32c::crc32c(name.as_bytes())),
                )
            });
            let record = MetadataRecord::CreateTopic {
                name: name.to_string(),
                id: hex_id(&id),
                partitions,
                configs,
                replicas: Some(placement),
            };
            cluster
                .change_metadata(record, |image| image.topics.contains_key(name))
                .await
                .map_err(TopicError::NotApplied)?;
            return self
                .topic(name)
                .ok_or_else(|| TopicError::Unknown(name.to_string()));
        }
        let broker = self.clone();
        let id = self.new_topic_id();
        let name_owned = name.to_string();
        let topic = tasks::run_blocking(move || -> Result<Topic, TopicError> {
            let topic = broker.open_topic(&name_owned, id, partitions, configs, 0)?;
            let mut records = broker.catalogue_records();
            records.insert(name_owned.clone(), Self::record_of(&topic));
            data_dir::store_topics(
                broker.seams.disk.as_ref(),
                &broker.config.data_dir,
                &records,
            )?;
            Ok(topic)
        })
        .await?;
        tracing::info!(topic = name, partitions, "topic created");
        self.install(topic);
        self.topic(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))
    }

    /// (partitions, replication factor, explicit placement) of a topic to create, checked.
    fn topic_shape(
        &self,
        shape: TopicShape,
    ) -> Result<(i32, usize, Option<Assignment>), TopicError> {
        let brokers = self.config.cluster_size();
        match shape {
            TopicShape::Counts {
                partitions,
                replication_factor,
            } => {
                let partitions = if partitions == -1 {
                    self.config.default_partitions
                } else {
                    partitions
                };
                if !(1..=TOPIC_PARTITIONS_MAX).contains(&partitions) {
                    return Err(TopicError::InvalidPartitions(format!(
                        "partition count {partitions} must be between 1 and {TOPIC_PARTITIONS_MAX}"
                    )));
                }
                let replicas = match replication_factor {
                    -1 => self.config.replication_factor_default(),
                    wanted if wanted >= 1 && wanted as usize <= brokers => wanted as usize,
                    wanted => return Err(TopicError::InvalidReplicationFactor(wanted, brokers)),
                };
                Ok((partitions, replicas, None))
            }
            TopicShape::Assigned(assignment) => {
                let members: Vec<NodeId> = match self.cluster.get() {
                    Some(cluster) => cluster.voter_ids(),
                    None => vec![self.node_id()],
                };
                let partitions = assignment.len();
                if !(1..=TOPIC_PARTITIONS_MAX as usize).contains(&partitions) {
                    return Err(TopicError::InvalidPartitions(format!(
                        "{partitions} partitions assigned; between 1 and {TOPIC_PARTITIONS_MAX} are possible"
                    )));
                }
                let replicas = assignment[0].len();
                for (index, list) in assignment.iter().enumerate() {
                    let mut distinct = list.clone();
                    distinct.sort_unstable();
                    distinct.dedup();
                    if list.is_empty()
                        || list.len() != replicas
                        || distinct.len() != list.len()
                        || !list.iter().all(|node| members.contains(node))
                    {
                        return Err(TopicError::InvalidAssignment(format!(
                            "partition {index}: replicas {list:?} must be {replicas} distinct brokers of {members:?}"
                        )));
                    }
                }
                Ok((partitions as i32, replicas, Some(assignment)))
            }
        }
    }

    /// Deletes a topic: removed from the catalogue first, then its directories.
    pub async fn delete_topic(self: &Arc<Self>, name: &str) -> Result<Uuid, TopicError> {
        let _guard = self.catalogue.lock().await;
        let topic = self
            .topic(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        if topic.internal {
            return Err(TopicError::InvalidName(format!(
                "internal topic {name} cannot be deleted"
            )));
        }
        if let Some(cluster) = self.cluster.get() {
            let record = MetadataRecord::DeleteTopic {
                name: name.to_string(),
            };
            cluster
                .change_metadata(record, |image| !image.topics.contains_key(name))
                .await
                .map_err(TopicError::NotApplied)?;
            return Ok(topic.id);
        }
        let mut records = self.catalogue_records();
        records.remove(name);
        for partition in topic.hosted() {
            partition.retire_spares();
        }
        let broker = self.clone();
        let topic_for_io = topic.clone();
        tasks::run_blocking(move || -> Result<(), TopicError> {
            let disk = broker.seams.disk.as_ref();
            data_dir::store_topics(disk, &broker.config.data_dir, &records)?;
            for partition in topic_for_io.hosted() {
                if let Err(error) = disk.remove_dir_all(&partition.directory) {
                    tracing::warn!(directory = %partition.directory.display(), %error,
                        "could not remove a deleted partition's directory; the next start will");
                }
            }
            disk.sync_dir(Path::new(&broker.config.data_dir))
                .map_err(|error| TopicError::Storage(error.to_string()))
        })
        .await?;
        self.topics
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(name);
        for partition in topic.hosted() {
            self.stop_syncer(name, partition.index);
        }
        tracing::info!(topic = name, "topic deleted");
        Ok(topic.id)
    }

    /// Raises a topic's partition count.
    pub async fn add_partitions(
        self: &Arc<Self>,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _guard = self.catalogue.lock().await;
        let topic = self
            .topic(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(TopicError::InvalidPartitions(format!(
                "topic {name} has {current} partitions; the new count {count} must be larger"
            )));
        }
        if count > TOPIC_PARTITIONS_MAX {
            return Err(TopicError::InvalidPartitions(format!(
                "at most {TOPIC_PARTITIONS_MAX} partitions"
            )));
        }
        if validate_only {
            return Ok(());
        }
        if let Some(cluster) = self.cluster.get() {
            // New partitions keep the topic's replication factor.
            let replication_factor = topic
                .placement
                .first()
                .map_or(1, |placement| placement.replicas.len());
            let placement = place_replicas(
                &cluster.voter_ids(),
                current,
                count - current,
                replication_factor,
                u64::from(crc32c::crc32c(name.as_bytes())),
            );
            let record = MetadataRecord::AddPartitions {
                name: name.to_string(),
                count,
                replicas: Some(placement),
            };
            return cluster
                .change_metadata(record, |image| {
                    image
                        .topics
                        .get(name)
                        .is_some_and(|topic| topic.groups.len() as i32 >= count)
                })
                .await
                .map_err(TopicError::NotApplied);
        }
        let broker = self.clone();
        let topic_for_io = topic.clone();
        let grown = tasks::run_blocking(move || -> Result<Topic, TopicError> {
            let added = broker.open_topic(
                &topic_for_io.name,
                topic_for_io.id,
                count,
                topic_for_io.configs.clone(),
                current,
            )?;
            let mut partitions = topic_for_io.partitions.clone();
            partitions.extend(added.partitions);
            let grown = Topic {
                partitions,
                ..added
            };
            let mut records = broker.catalogue_records();
            records.insert(grown.name.clone(), Self::record_of(&grown));
            data_dir::store_topics(
                broker.seams.disk.as_ref(),
                &broker.config.data_dir,
                &records,
            )?;
            Ok(grown)
        })
        .await?;
        for partition in grown.hosted().skip(current as usize) {
            self.start_syncer(partition);
        }
        self.topics
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(name.to_string(), Arc::new(grown));
        Ok(())
    }

    /// DeleteRecords: raises a partition's log start to `offset`, which the caller checked is
    /// at most the high watermark. Durable (in the catalogue, or committed to the metadata log
    /// and applied here) before this returns; a lower or equal offset changes nothing.
    pub async fn raise_log_start(
        self: &Arc<Self>,
        name: &str,
        index: i32,
        offset: i64,
    ) -> Result<(), TopicError> {
        if let Some(cluster) = self.cluster.get() {
            let record = MetadataRecord::DeleteRecords {
                name: name.to_string(),
                partition: index,
                offset,
            };
            return cluster
                .change_metadata(record, |image| {
                    image.topics.get(name).is_none_or(|topic| {
                        topic.log_start_offsets.get(&index).copied().unwrap_or(0) >= offset
                    })
                })
                .await
                .map_err(TopicError::NotApplied);
        }
        let _guard = self.catalogue.lock().await;
        let partition = self
            .partition(name, index)
            .ok_or_else(|| TopicError::Unknown(format!("{name}-{index}")))?;
        if offset <= partition.log_start_floor() {
            return Ok(());
        }
        // Everything below the new start is made durable first. Under the interval policy the
        // high watermark can be ahead of the last fsync; without this, a machine crash could
        // take the log end back below the recorded start, and records appended after the
        // restart at those offsets would be hidden behind it.
        if !partition.sync_once(&self.seams.disk).await {
            return Err(TopicError::Storage(format!(
                "{name}-{index} is offline after a storage error"
            )));
        }
        // In the catalogue, synced, before any client sees the new start: a restart keeps it.
        let mut records = self.catalogue_records();
        if let Some(record) = records.get_mut(name) {
            record.log_start_offsets.insert(index, offset);
        }
        let broker = self.clone();
        tasks::run_blocking(move || {
            data_dir::store_topics(
                broker.seams.disk.as_ref(),
                &broker.config.data_dir,
                &records,
            )
        })
        .await?;
        partition.raise_log_start_floor(offset);
        Ok(())
    }

    /// Replaces a topic's setting overrides with `configs` (AlterConfigs and
    /// IncrementalAlterConfigs): checked as CreateTopics checks them, stored in the catalogue or
    /// the metadata log, and applied to the topic's open partitions. A change to
    /// `segment.bytes` or `segment.ms` takes effect at the next append, retention at the next
    /// retention pass.
    pub async fn alter_topic_configs(
        self: &Arc<Self>,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _guard = self.catalogue.lock().await;
        let topic = self
            .topic(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        if topic.internal {
            return Err(TopicError::InvalidConfig(format!(
                "{name} is internal: its settings are the broker's (offsets.* settings)"
            )));
        }
        log_config_for_topic(&self.log_defaults(name), &configs)
            .map_err(TopicError::InvalidConfig)?;
        let replicas = topic
            .placement
            .first()
            .map_or(1, |placement| placement.replicas.len());
        check_min_insync_replicas(&configs, replicas).map_err(TopicError::InvalidConfig)?;
        if validate_only || configs == topic.configs {
            return Ok(());
        }
        if let Some(cluster) = self.cluster.get() {
            let previous = topic.configs.clone();
            let record = MetadataRecord::AlterTopicConfigs {
                name: name.to_string(),
                previous: previous.clone(),
                configs: configs.clone(),
            };
            // Done once the image has these settings, or once it has settings that are neither
            // these nor the ones this change started from: another change won the race.
            cluster
                .change_metadata(record, |image| {
                    image
                        .topics
                        .get(name)
                        .is_none_or(|topic| topic.configs == configs || topic.configs != previous)
                })
                .await
                .map_err(TopicError::NotApplied)?;
            return match cluster.image().topics.get(name) {
                Some(applied) if applied.configs == configs => Ok(()),
                Some(_) => Err(TopicError::NotApplied(format!(
                    "the settings of {name} were changed by another request meanwhile; read them and retry"
                ))),
                None => Err(TopicError::Unknown(name.to_string())),
            };
        }
        let log_config = log_config_for_topic(&self.log_defaults(name), &configs)
            .map_err(TopicError::InvalidConfig)?;
        let altered = Topic {
            configs,
            log_config,
            ..(*topic).clone()
        };
        let broker = self.clone();
        let record = Self::record_of(&altered);
        let topic_name = name.to_string();
        tasks::run_blocking(move || -> Result<(), TopicError> {
            let mut records = broker.catalogue_records();
            records.insert(topic_name, record);
            data_dir::store_topics(
                broker.seams.disk.as_ref(),
                &broker.config.data_dir,
                &records,
            )?;
            Ok(())
        })
        .await?;
        tracing::info!(topic = name, configs = ?altered.configs, "topic settings changed");
        self.reconfigure_topic(altered);
        Ok(())
    }

    /// Swaps in a topic whose settings changed and hands its log settings to its partitions.
    pub fn reconfigure_topic(&self, topic: Topic) {
        for partition in topic.hosted() {
            partition.update_config(topic.log_config.clone());
        }
        self.topics
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(topic.name.clone(), Arc::new(topic));
    }

    /// Finds a topic, creating it with the default partition count when auto-creation is on.
    pub async fn topic_or_auto_create(
        self: &Arc<Self>,
        name: &str,
        allow: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        if let Some(topic) = self.topic(name) {
            return Ok(topic);
        }
        if !(allow && self.config.auto_create_topics) {
            return Err(TopicError::Unknown(name.to_string()));
        }
        match self
            .create_topic(name, TopicShape::DEFAULT, BTreeMap::new(), false)
            .await
        {
            Ok(topic) => Ok(topic),
            // Another request created it first.
            Err(TopicError::AlreadyExists(_)) => self
                .topic(name)
                .ok_or_else(|| TopicError::Unknown(name.to_string())),
            Err(error) => Err(error),
        }
    }

    /// This broker's node id, as the Raft groups know it.
    pub fn node_id(&self) -> u64 {
        u64::try_from(self.config.node_id).unwrap_or(0)
    }

    /// Cluster mode: makes a topic (new, or grown) visible as the metadata log describes it.
    pub fn install_replicated_topic(&self, topic: Topic) {
        self.topics
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(topic.name.clone(), Arc::new(topic));
        self.data_visible.notify_waiters();
    }

    /// Cluster mode: a deleted topic disappears from requests.
    pub fn forget_topic(&self, name: &str) {
        self.topics
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(name);
    }

    /// Whether this broker coordinates consumer groups now: always for a single broker; in a
    /// cluster, the leader of the offsets partition once it has loaded the committed offsets.
    pub fn is_group_coordinator(&self) -> bool {
        self.cluster.get().is_none() || self.groups.is_serving()
    }

    /// Where clients find the group coordinator: (node id, host, port).
    pub fn group_coordinator(&self) -> Option<(i32, String, u16)> {
        let Some(cluster) = self.cluster.get() else {
            return Some((
                self.identity.node_id,
                self.config.advertised_host.clone(),
                self.config.advertised_port,
            ));
        };
        let leader = self.partition(OFFSETS_TOPIC, 0)?.leadership().leader?;
        cluster
            .live_brokers()
            .into_iter()
            .find(|live| live.node_id == leader)
            .map(|live| (live.node_id as i32, live.host, live.port))
    }

    /// Applies retention to every partition.
    pub fn apply_retention(&self) {
        let now = self.seams.clock.wall_ms();
        for topic in self.topics() {
            for partition in topic.hosted() {
                // The offsets log keeps every committed offset: it is cleaned below its latest
                // snapshot instead of by time and size.
                let cleaned = if topic.name == OFFSETS_TOPIC {
                    super::offsets_cleanup::clean(self, partition)
                } else {
                    partition.apply_retention(self.seams.disk.as_ref(), now)
                };
                match cleaned {
                    Ok(0) => {}
                    Ok(deleted) => {
                        tracing::info!(topic = %topic.name, partition = partition.index, deleted, "retention deleted segments")
                    }
                    Err(error) => {
                        tracing::warn!(topic = %topic.name, partition = partition.index, %error, "retention failed")
                    }
                }
            }
        }
    }

    /// Syncs every partition and stops the syncers: the last step of a clean shutdown.
    pub async fn flush_all(&self) {
        for topic in self.topics() {
            for partition in topic.hosted() {
                if !partition.flush(&self.seams.disk).await {
                    tracing::error!(topic = %topic.name, partition = partition.index, "final sync failed");
                }
                partition.close().await;
                self.stop_syncer(&topic.name, partition.index);
            }
        }
    }
}
