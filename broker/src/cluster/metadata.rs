//! The cluster's metadata: records in the metadata quorum's log and the image they build.
//!
//! The controller (the metadata group's leader) proposes records; every broker applies them in
//! log order once committed, so every broker holds the same image. Records are JSON in the
//! value of one Kafka record each, in ordinary record batches: the metadata log is a partition
//! log like any other (`__cluster_metadata-0`).
//!
//! Raft group ids for partitions are allocated by the image itself (`next_group`), so they are
//! the same on every broker without being chosen by anyone in particular. Replica placement is
//! chosen by the broker that proposes a topic (see [`place_replicas`]) and written into the
//! record, so every broker agrees on it too. The first replica of a partition is its preferred
//! leader.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::consensus::{GroupId, NodeId};

/// The metadata quorum's Raft group.
pub const METADATA_GROUP: GroupId = 0;
/// The metadata log's directory name, as KRaft's.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// One change to the cluster's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    CreateTopic {
        name: String,
        /// Hex, as in `topics.json`.
        id: String,
        partitions: i32,
        configs: BTreeMap<String, String>,
        /// Each partition's replicas, preferred leader first. Absent: every voter (the
        /// placement of records written before replication factors below the cluster size).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replicas: Option<Vec<Vec<NodeId>>>,
    },
    DeleteTopic {
        name: String,
    },
    AddPartitions {
        name: String,
        count: i32,
        /// The new partitions' replicas, as in `CreateTopic`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replicas: Option<Vec<Vec<NodeId>>>,
    },
    /// Replaces a topic's setting overrides with `configs`, if they are still `previous`: a
    /// proposal retried after a newer change committed does not undo it.
    AlterTopicConfigs {
        name: String,
        previous: BTreeMap<String, String>,
        configs: BTreeMap<String, String>,
    },
    /// DeleteRecords: raises a partition's log start to `offset` on every replica (never
    /// lowers it).
    DeleteRecords {
        name: String,
        partition: i32,
        offset: i64,
    },
}

impl MetadataRecord {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("metadata records serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|error| error.to_string())
    }
}

/// Replicas for `count` partitions starting at partition `first`: `replication_factor`
/// consecutive voters (in id order) from a starting voter that moves by one per partition, so
/// leaders (the first replica) and followers spread evenly. `spread` (a hash of the topic
/// name) picks where the first partition starts, so many small topics do not all put their
/// leaders on the same broker.
pub fn place_replicas(
    voters: &[NodeId],
    first: i32,
    count: i32,
    replication_factor: usize,
    spread: u64,
) -> Vec<Vec<NodeId>> {
    let mut sorted = voters.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert!(
        (1..=sorted.len()).contains(&replication_factor),
        "a replication factor between 1 and the voter count"
    );
    let n = sorted.len() as u64;
    (first.max(0)..first.max(0) + count.max(0))
        .map(|partition| {
            let start = spread.wrapping_add(partition as u64) % n;
            (0..replication_factor as u64)
                .map(|k| sorted[((start + k) % n) as usize])
                .collect()
        })
        .collect()
}

/// A topic as the metadata log describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicImage {
    pub id: String,
    /// Partition `i`'s Raft group.
    pub groups: Vec<GroupId>,
    /// Partition `i`'s replicas, preferred leader first.
    pub replicas: Vec<Vec<NodeId>>,
    pub configs: BTreeMap<String, String>,
    /// Partition `i`'s log start as DeleteRecords set it; absent where it never did.
    pub log_start_offsets: BTreeMap<i32, i64>,
}

/// What applying one record changed, for the broker to act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataChange {
    /// Open (or create) these partitions of this topic, `first_new` onwards.
    TopicGrew {
        name: String,
        first_new: i32,
    },
    TopicDeleted {
        name: String,
        groups: Vec<GroupId>,
    },
    /// The topic's setting overrides changed.
    TopicReconfigured {
        name: String,
    },
    /// DeleteRecords raised a partition's log start.
    LogStartRaised {
        name: String,
        partition: i32,
        offset: i64,
    },
    /// The record could not apply (a duplicate create racing another); nothing changed.
    Ignored {
        reason: String,
    },
}

/// Every topic, as of the last applied record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetadataImage {
    pub topics: BTreeMap<String, TopicImage>,
    next_group: GroupId,
    /// The cluster's voters, for records that name no placement.
    voters: Vec<NodeId>,
}

impl MetadataImage {
    pub fn new(voters: Vec<NodeId>) -> Self {
        let mut voters = voters;
        voters.sort_unstable();
        Self {
            topics: BTreeMap::new(),
            next_group: METADATA_GROUP + 1,
            voters,
        }
    }

    /// Applies one committed record. Deterministic: every broker reaches the same image.
    pub fn apply(&mut self, record: &MetadataRecord) -> MetadataChange {
        match record {
            MetadataRecord::CreateTopic {
                name,
                id,
                partitions,
                configs,
                replicas,
            } => {
                if self.topics.contains_key(name) {
                    return MetadataChange::Ignored {
                        reason: format!("topic {name} already exists"),
                    };
                }
                if let Err(reason) = self.check_placement(replicas.as_deref(), *partitions) {
                    return MetadataChange::Ignored { reason };
                }
                let groups = self.allocate(*partitions);
                let replicas = self.placement(replicas.as_deref(), &groups);
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        id: id.clone(),
                        groups,
                        replicas,
                        configs: configs.clone(),
                        log_start_offsets: BTreeMap::new(),
                    },
                );
                MetadataChange::TopicGrew {
                    name: name.clone(),
                    first_new: 0,
                }
            }
            MetadataRecord::DeleteTopic { name } => match self.topics.remove(name) {
                Some(topic) => MetadataChange::TopicDeleted {
                    name: name.clone(),
                    groups: topic.groups,
                },
                None => MetadataChange::Ignored {
                    reason: format!("topic {name} does not exist"),
                },
            },
            MetadataRecord::AddPartitions {
                name,
                count,
                replicas,
            } => {
                let current = match self.topics.get(name) {
                    Some(topic) => topic.groups.len() as i32,
                    None => {
                        return MetadataChange::Ignored {
                            reason: format!("topic {name} does not exist"),
                        }
                    }
                };
                if *count <= current {
                    return MetadataChange::Ignored {
                        reason: format!("topic {name} already has {current} partitions"),
                    };
                }
                if let Err(reason) = self.check_placement(replicas.as_deref(), count - current) {
                    return MetadataChange::Ignored { reason };
                }
                let added = self.allocate(count - current);
                let added_replicas = self.placement(replicas.as_deref(), &added);
                let topic = self.topics.get_mut(name).expect("checked above");
                topic.groups.extend(added);
                topic.replicas.extend(added_replicas);
                MetadataChange::TopicGrew {
                    name: name.clone(),
                    first_new: current,
                }
            }
            MetadataRecord::AlterTopicConfigs {
                name,
                previous,
                configs,
            } => match self.topics.get_mut(name) {
                None => MetadataChange::Ignored {
                    reason: format!("topic {name} does not exist"),
                },
                Some(topic) if topic.configs != *previous => MetadataChange::Ignored {
                    reason: format!("the settings of topic {name} changed since this proposal"),
                },
                Some(topic) => {
                    topic.configs = configs.clone();
                    MetadataChange::TopicReconfigured { name: name.clone() }
                }
            },
            MetadataRecord::DeleteRecords {
                name,
                partition,
                offset,
            } => {
                let Some(topic) = self.topics.get_mut(name) else {
                    return MetadataChange::Ignored {
                        reason: format!("topic {name} does not exist"),
                    };
                };
                if *partition < 0 || *partition as usize >= topic.groups.len() || *offset < 0 {
                    return MetadataChange::Ignored {
                        reason: format!("no partition {partition} of {name}, or offset {offset}"),
                    };
                }
                let start = topic.log_start_offsets.entry(*partition).or_insert(0);
                if *offset <= *start {
                    return MetadataChange::Ignored {
                        reason: format!("{name}-{partition} already starts at {start}"),
                    };
                }
                *start = *offset;
                MetadataChange::LogStartRaised {
                    name: name.clone(),
                    partition: *partition,
                    offset: *offset,
                }
            }
        }
    }

    /// A named placement must give every partition distinct replicas, all of them voters.
    fn check_placement(&self, replicas: Option<&[Vec<NodeId>]>, count: i32) -> Result<(), String> {
        let Some(replicas) = replicas else {
            return Ok(());
        };
        if replicas.len() != count.max(0) as usize {
            return Err(format!(
                "{} replica lists for {count} partitions",
                replicas.len()
            ));
        }
        for list in replicas {
            let mut sorted = list.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if list.is_empty()
                || sorted.len() != list.len()
                || !list.iter().all(|node| self.voters.contains(node))
            {
                return Err(format!("replica list {list:?} is not distinct voters"));
            }
        }
        Ok(())
    }

    /// The placement a record names, or every voter with group `g` preferring the voter at
    /// `g mod n`: the placement of records that name none.
    fn placement(&self, replicas: Option<&[Vec<NodeId>]>, groups: &[GroupId]) -> Vec<Vec<NodeId>> {
        match replicas {
            Some(replicas) => replicas.to_vec(),
            None => groups
                .iter()
                .map(|group| all_voters_preferring(&self.voters, *group))
                .collect(),
        }
    }

    fn allocate(&mut self, count: i32) -> Vec<GroupId> {
        let count = u64::try_from(count.max(0)).expect("not negative");
        let groups = (self.next_group..self.next_group + count).collect();
        self.next_group += count;
        groups
    }
}

/// Every voter, starting from the one at `group mod n`: the metadata group's and the
/// fully replicated groups' placement.
pub fn all_voters_preferring(voters: &[NodeId], group: GroupId) -> Vec<NodeId> {
    let mut sorted = voters.to_vec();
    sorted.sort_unstable();
    let n = sorted.len().max(1) as u64;
    let start = ((group % n) as usize).min(sorted.len());
    sorted.rotate_left(start);
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str, partitions: i32) -> MetadataRecord {
        MetadataRecord::CreateTopic {
            name: name.to_string(),
            id: "00".repeat(16),
            partitions,
            configs: BTreeMap::new(),
            replicas: None,
        }
    }

    #[test]
    fn group_ids_are_allocated_in_log_order_and_never_reused() {
        let mut image = MetadataImage::new(vec![1, 2, 3]);
        image.apply(&create("a", 2));
        image.apply(&create("b", 1));
        image.apply(&MetadataRecord::DeleteTopic {
            name: "a".to_string(),
        });
        image.apply(&MetadataRecord::AddPartitions {
            name: "b".to_string(),
            count: 3,
            replicas: None,
        });
        image.apply(&create("a", 1));
        assert_eq!(image.topics["b"].groups, vec![3, 4, 5]);
        assert_eq!(image.topics["a"].groups, vec![6]);
    }

    #[test]
    fn conflicting_records_change_nothing() {
        let mut image = MetadataImage::new(vec![1, 2, 3]);
        image.apply(&create("a", 2));
        let before = image.clone();
        assert!(matches!(
            image.apply(&create("a", 5)),
            MetadataChange::Ignored { .. }
        ));
        assert!(matches!(
            image.apply(&MetadataRecord::AddPartitions {
                name: "a".to_string(),
                count: 1,
                replicas: None,
            }),
            MetadataChange::Ignored { .. }
        ));
        assert_eq!(image, before);
    }

    #[test]
    fn delete_records_only_raises_the_log_start_of_a_partition_that_exists() {
        let mut image = MetadataImage::new(vec![1, 2, 3]);
        image.apply(&create("a", 2));
        let delete = |name: &str, partition: i32, offset: i64| MetadataRecord::DeleteRecords {
            name: name.to_string(),
            partition,
            offset,
        };
        assert_eq!(
            image.apply(&delete("a", 1, 40)),
            MetadataChange::LogStartRaised {
                name: "a".to_string(),
                partition: 1,
                offset: 40,
            }
        );
        let before = image.clone();
        for ignored in [
            delete("a", 1, 40),
            delete("a", 1, 12),
            delete("a", 2, 5),
            delete("a", -1, 5),
            delete("b", 0, 5),
        ] {
            assert!(matches!(
                image.apply(&ignored),
                MetadataChange::Ignored { .. }
            ));
        }
        assert_eq!(image, before);
        assert_eq!(
            image.topics["a"].log_start_offsets,
            BTreeMap::from([(1, 40)])
        );
        let decoded = MetadataRecord::decode(&delete("a", 0, 7).encode()).unwrap();
        assert_eq!(decoded, delete("a", 0, 7));
    }

    #[test]
    fn a_settings_change_applies_only_over_the_settings_it_started_from() {
        let mut image = MetadataImage::new(vec![1, 2, 3]);
        image.apply(&create("a", 1));
        let settings = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect()
        };
        let first = MetadataRecord::AlterTopicConfigs {
            name: "a".to_string(),
            previous: BTreeMap::new(),
            configs: settings(&[("retention.ms", "1000")]),
        };
        let second = MetadataRecord::AlterTopicConfigs {
            name: "a".to_string(),
            previous: settings(&[("retention.ms", "1000")]),
            configs: settings(&[("segment.bytes", "1048576")]),
        };
        assert_eq!(
            image.apply(&first),
            MetadataChange::TopicReconfigured {
                name: "a".to_string()
            }
        );
        image.apply(&second);
        // The first proposal, retried after the second committed, must not undo it.
        assert!(matches!(
            image.apply(&first),
            MetadataChange::Ignored { .. }
        ));
        assert_eq!(
            image.topics["a"].configs,
            settings(&[("segment.bytes", "1048576")])
        );
        let unknown = MetadataRecord::AlterTopicConfigs {
            name: "b".to_string(),
            previous: BTreeMap::new(),
            configs: BTreeMap::new(),
        };
        assert!(matches!(
            image.apply(&unknown),
            MetadataChange::Ignored { .. }
        ));
        assert_eq!(MetadataRecord::decode(&second.encode()), Ok(second));
    }

    #[test]
    fn records_round_trip_through_json() {
        let record = create("orders", 3);
        assert_eq!(MetadataRecord::decode(&record.encode()), Ok(record));
        assert!(MetadataRecord::decode(b"{\"type\":\"unknown\"}").is_err());
    }

    #[test]
    fn placement_spreads_leaders_and_replicas_evenly() {
        let voters = [5, 1, 4, 2, 3];
        let placed = place_replicas(&voters, 0, 10, 3, 7);
        let mut leaders = BTreeMap::new();
        let mut hosted = BTreeMap::new();
        for replicas in &placed {
            let mut distinct = replicas.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), 3, "{replicas:?}");
            assert!(replicas.iter().all(|node| voters.contains(node)));
            *leaders.entry(replicas[0]).or_insert(0) += 1;
            for node in replicas {
                *hosted.entry(*node).or_insert(0) += 1;
            }
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2; 5]);
        assert_eq!(hosted.values().copied().collect::<Vec<_>>(), vec![6; 5]);
        // Partitions added later continue the rotation where the first ones stopped.
        assert_eq!(place_replicas(&voters, 3, 1, 3, 7)[0], placed[3]);
    }

    #[test]
    fn named_placements_are_kept_and_bad_ones_change_nothing() {
        let mut image = MetadataImage::new(vec![1, 2, 3]);
        let placed = MetadataRecord::CreateTopic {
            name: "a".to_string(),
            id: "00".repeat(16),
            partitions: 2,
            configs: BTreeMap::new(),
            replicas: Some(vec![vec![2], vec![3, 1]]),
        };
        image.apply(&placed);
        assert_eq!(image.topics["a"].replicas, vec![vec![2], vec![3, 1]]);
        let before = image.clone();
        for bad in [
            vec![vec![1, 1]],
            vec![vec![9]],
            vec![vec![]],
            vec![vec![1], vec![2]],
        ] {
            let grow = MetadataRecord::AddPartitions {
                name: "a".to_string(),
                count: 3,
                replicas: Some(bad.clone()),
            };
            assert!(
                matches!(image.apply(&grow), MetadataChange::Ignored { .. }),
                "{bad:?}"
            );
            assert_eq!(image, before);
        }
        image.apply(&create("b", 3));
        assert_eq!(
            image.topics["b"].replicas,
            vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]],
            "records naming no placement put every voter on every partition"
        );
    }
}
