//! The committed offsets of every group, as last written to the offsets log.

use std::collections::BTreeMap;

use super::OffsetRecord;

/// One committed offset with what the client attached to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    /// The coordinator's wall-clock time of the commit, if known.
    pub commit_timestamp_ms: Option<i64>,
}

/// group id -> (topic, partition) -> committed offset. Ordered maps, so fetches of a whole
/// group and listings are deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OffsetStore {
    groups: BTreeMap<String, BTreeMap<(String, i32), CommittedOffset>>,
}

impl OffsetStore {
    /// Applies one durable record: last write wins, a group tombstone forgets the group, an
    /// offset tombstone one partition (and the group with its last partition).
    pub fn apply(&mut self, record: &OffsetRecord) {
        match record {
            OffsetRecord::Commit {
                group_id,
                topic,
                partition,
                offset,
                leader_epoch,
                metadata,
                commit_timestamp_ms,
            } => {
                self.groups.entry(group_id.clone()).or_default().insert(
                    (topic.clone(), *partition),
                    CommittedOffset {
                        offset: *offset,
                        leader_epoch: *leader_epoch,
                        metadata: metadata.clone(),
                        commit_timestamp_ms: *commit_timestamp_ms,
                    },
                );
            }
            OffsetRecord::GroupTombstone { group_id } => {
                self.groups.remove(group_id);
            }
            OffsetRecord::OffsetTombstone {
                group_id,
                topic,
                partition,
            } => {
                if let Some(partitions) = self.groups.get_mut(group_id) {
                    partitions.remove(&(topic.clone(), *partition));
                    if partitions.is_empty() {
                        self.groups.remove(group_id);
                    }
                }
            }
            // Marks where a snapshot ends; the snapshot's commits have been applied already.
            OffsetRecord::SnapshotComplete { .. } => {}
        }
    }

    /// Every committed offset as a commit record, in group, topic and partition order:
    /// replaying them into an empty store gives this store.
    pub fn snapshot(&self) -> Vec<OffsetRecord> {
        self.groups
            .iter()
            .flat_map(|(group_id, partitions)| {
                partitions
                    .iter()
                    .map(|((topic, partition), committed)| OffsetRecord::Commit {
                        group_id: group_id.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        offset: committed.offset,
                        leader_epoch: committed.leader_epoch,
                        metadata: committed.metadata.clone(),
                        commit_timestamp_ms: committed.commit_timestamp_ms,
                    })
            })
            .collect()
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

    /// The latest commit time among a group's offsets; `None` if the group has no offsets or
    /// the time of one of them is unknown (such a group is never old).
    pub fn last_commit_ms(&self, group_id: &str) -> Option<i64> {
        let partitions = self.groups.get(group_id)?;
        partitions
            .values()
            .map(|committed| committed.commit_timestamp_ms)
            .try_fold(i64::MIN, |latest, timestamp| Some(latest.max(timestamp?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One step of a history of the offsets log.
    #[derive(Debug, Clone)]
    enum Step {
        Commit {
            group: u8,
            partition: u8,
            offset: i64,
            timestamp_ms: Option<i64>,
        },
        DeleteGroup {
            group: u8,
        },
        DeleteOffset {
            group: u8,
            partition: u8,
        },
        /// The coordinator writes a snapshot of what it has (its store is the log's state).
        Snapshot,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (0u8..4, 0u8..3, 0i64..1_000, proptest::option::of(0i64..1_000))
                .prop_map(|(group, partition, offset, timestamp_ms)| {
                    Step::Commit { group, partition, offset, timestamp_ms }
                }),
            1 => (0u8..4).prop_map(|group| Step::DeleteGroup { group }),
            2 => (0u8..4, 0u8..3).prop_map(|(group, partition)| Step::DeleteOffset { group, partition }),
            1 => Just(Step::Snapshot),
        ]
    }

    fn replay<'a>(records: impl IntoIterator<Item = &'a OffsetRecord>) -> OffsetStore {
        let mut store = OffsetStore::default();
        for record in records {
            store.apply(record);
        }
        store
    }

    #[test]
    fn a_group_is_as_old_as_its_latest_commit_and_unknown_times_are_never_old() {
        let commit = |partition: i32, timestamp_ms: Option<i64>| OffsetRecord::Commit {
            group_id: "g".to_owned(),
            topic: "orders".to_owned(),
            partition,
            offset: 1,
            leader_epoch: 0,
            metadata: String::new(),
            commit_timestamp_ms: timestamp_ms,
        };
        let mut store = OffsetStore::default();
        assert_eq!(store.last_commit_ms("g"), None);
        store.apply(&commit(0, Some(500)));
        store.apply(&commit(1, Some(900)));
        store.apply(&commit(2, Some(100)));
        assert_eq!(store.last_commit_ms("g"), Some(900));
        store.apply(&commit(1, Some(200)));
        assert_eq!(store.last_commit_ms("g"), Some(500));
        store.apply(&commit(3, None));
        assert_eq!(store.last_commit_ms("g"), None);
    }

    proptest! {
        /// Cleanup keeps the log from a snapshot's start on: whatever was written before and
        /// after, replaying from there gives the offsets that replaying everything gives.
        #[test]
        fn replaying_from_the_latest_snapshot_equals_replaying_everything(
            steps in proptest::collection::vec(step(), 0..120),
        ) {
            let mut log: Vec<OffsetRecord> = Vec::new();
            let mut coordinator = OffsetStore::default();
            let mut latest_start = None;
            for step in steps {
                let written = match step {
                    Step::Commit { group, partition, offset, timestamp_ms } => {
                        vec![OffsetRecord::Commit {
                            group_id: format!("group-{group}"),
                            topic: "orders".to_owned(),
                            partition: i32::from(partition),
                            offset,
                            leader_epoch: 0,
                            metadata: String::new(),
                            commit_timestamp_ms: timestamp_ms,
                        }]
                    }
                    Step::DeleteGroup { group } => vec![OffsetRecord::GroupTombstone {
                        group_id: format!("group-{group}"),
                    }],
                    Step::DeleteOffset { group, partition } => vec![OffsetRecord::OffsetTombstone {
                        group_id: format!("group-{group}"),
                        topic: "orders".to_owned(),
                        partition: i32::from(partition),
                    }],
                    Step::Snapshot => {
                        let start_offset = log.len() as i64;
                        let mut records = coordinator.snapshot();
                        records.push(OffsetRecord::SnapshotComplete { start_offset });
                        latest_start = Some(start_offset as usize);
                        records
                    }
                };
                for record in written {
                    coordinator.apply(&record);
                    log.push(record);
                }
            }
            let everything = replay(&log);
            prop_assert_eq!(&everything, &coordinator);
            if let Some(start) = latest_start {
                // Any cut at or below the start is allowed (segments end where they end).
                for cut in [start, start / 2, 0] {
                    prop_assert_eq!(&replay(&log[cut..]), &everything, "cut at {}", cut);
                }
            }
            prop_assert_eq!(&replay(&coordinator.snapshot()), &coordinator);
        }
    }
}
