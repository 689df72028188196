//! The committed offsets of every group, as last written to the offsets log.

use std::collections::BTreeMap;

use super::OffsetRecord;

/// One committed offset with what the client attached to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// group id -> (topic, partition) -> committed offset. Ordered maps, so fetches of a whole
/// group and listings are deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OffsetStore {
    groups: BTreeMap<String, BTreeMap<(String, i32), CommittedOffset>>,
}

impl OffsetStore {
    /// Applies one durable record: last write wins, a tombstone forgets the group.
    pub fn apply(&mut self, record: &OffsetRecord) {
        match record {
            OffsetRecord::Commit {
                group_id,
                topic,
                partition,
                offset,
                leader_epoch,
                metadata,
            } => {
                self.groups.entry(group_id.clone()).or_default().insert(
                    (topic.clone(), *partition),
                    CommittedOffset {
                        offset: *offset,
                        leader_epoch: *leader_epoch,
                        metadata: metadata.clone(),
                    },
                );
            }
            OffsetRecord::GroupTombstone { group_id } => {
                self.groups.remove(group_id);
            }
        }
    }

    pub fn has_group(&self, group_id: &str) -> bool {
        self.groups.contains_key(group_id)
    }

    pub fn group(&self, group_id: &str) -> Option<&BTreeMap<(String, i32), CommittedOffset>> {
        self.groups.get(group_id)
    }

    pub fn get(&self, group_id: &str, topic: &str, partition: i32) -> Option<&CommittedOffset> {
        self.groups
            .get(group_id)?
            .get(&(topic.to_owned(), partition))
    }

    pub fn partitions_count(&self, group_id: &str) -> usize {
        self.groups.get(group_id).map_or(0, BTreeMap::len)
    }

    pub fn group_ids(&self) -> impl Iterator<Item = &String> {
        self.groups.keys()
    }
}
