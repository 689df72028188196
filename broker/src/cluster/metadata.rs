//! The cluster's metadata: records in the metadata quorum's log and the image they build.
//!
//! The controller (the metadata group's leader) proposes records; every broker applies them in
//! log order once committed, so every broker holds the same image. Records are JSON in the
//! value of one Kafka record each, in ordinary record batches: the metadata log is a partition
//! log like any other (`__cluster_metadata-0`).
//!
//! Raft group ids for partitions are allocated by the image itself (`next_group`), so they are
//! the same on every broker without being chosen by anyone in particular.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::consensus::GroupId;

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
    },
    DeleteTopic {
        name: String,
    },
    AddPartitions {
        name: String,
        count: i32,
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

/// A topic as the metadata log describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicImage {
    pub id: String,
    /// Partition `i`'s Raft group.
    pub groups: Vec<GroupId>,
    pub configs: BTreeMap<String, String>,
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
}

impl MetadataImage {
    pub fn new() -> Self {
        Self {
            topics: BTreeMap::new(),
            next_group: METADATA_GROUP + 1,
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
            } => {
                if self.topics.contains_key(name) {
                    return MetadataChange::Ignored {
                        reason: format!("topic {name} already exists"),
                    };
                }
                let groups = self.allocate(*partitions);
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        id: id.clone(),
                        groups,
                        configs: configs.clone(),
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
            MetadataRecord::AddPartitions { name, count } => {
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
                let added = self.allocate(count - current);
                self.topics
                    .get_mut(name)
                    .expect("checked above")
                    .groups
                    .extend(added);
                MetadataChange::TopicGrew {
                    name: name.clone(),
                    first_new: current,
                }
            }
        }
    }

    fn allocate(&mut self, count: i32) -> Vec<GroupId> {
        let count = u64::try_from(count.max(0)).expect("not negative");
        let groups = (self.next_group..self.next_group + count).collect();
        self.next_group += count;
        groups
    }
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
        }
    }

    #[test]
    fn group_ids_are_allocated_in_log_order_and_never_reused() {
        let mut image = MetadataImage::new();
        image.apply(&create("a", 2));
        image.apply(&create("b", 1));
        image.apply(&MetadataRecord::DeleteTopic {
            name: "a".to_string(),
        });
        image.apply(&MetadataRecord::AddPartitions {
            name: "b".to_string(),
            count: 3,
        });
        image.apply(&create("a", 1));
        assert_eq!(image.topics["b"].groups, vec![3, 4, 5]);
        assert_eq!(image.topics["a"].groups, vec![6]);
    }

    #[test]
    fn conflicting_records_change_nothing() {
        let mut image = MetadataImage::new();
        image.apply(&create("a", 2));
        let before = image.clone();
        assert!(matches!(
            image.apply(&create("a", 5)),
            MetadataChange::Ignored { .. }
        ));
        assert!(matches!(
            image.apply(&MetadataRecord::AddPartitions {
                name: "a".to_string(),
                count: 1
            }),
            MetadataChange::Ignored { .. }
        ));
        assert_eq!(image, before);
    }

    #[test]
    fn records_round_trip_through_json() {
        let record = create("orders", 3);
        assert_eq!(MetadataRecord::decode(&record.encode()), Ok(record));
        assert!(MetadataRecord::decode(b"{\"type\":\"unknown\"}").is_err());
    }
}
