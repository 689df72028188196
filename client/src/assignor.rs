//! The range assignor: the group leader's partition assignment, as Java's `RangeAssignor`.
//!
//! For each topic, the members subscribed to it are sorted by member id and the partitions
//! are cut into contiguous ranges; the first `partitions % members` members get one extra.
//!
//! ```text
//! topic t, 5 partitions, members a b:   a -> t0 t1 t2    b -> t3 t4
//! ```

use std::collections::{BTreeMap, BTreeSet};

/// The protocol name of this assignor in JoinGroup and SyncGroup.
pub const RANGE_ASSIGNOR_NAME: &str = "range";

/// Assigns partitions: `subscriptions` maps member id to subscribed topics,
/// `partition_counts` maps topic to its partition count (topics missing from it are
/// skipped). Every member appears in the result, possibly with nothing.
pub fn assign_range(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut members_by_topic: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (member_id, topics) in subscriptions {
        for topic in topics {
            members_by_topic
                .entry(topic.as_str())
                .or_default()
                .insert(member_id.as_str());
        }
    }
    let mut assignment: BTreeMap<String, BTreeMap<String, Vec<i32>>> = subscriptions
        .keys()
        .map(|member_id| (member_id.clone(), BTreeMap::new()))
        .collect();
    for (topic, members) in members_by_topic {
        let Some(&partition_count) = partition_counts.get(topic) else {
            continue;
        };
        let member_count = members.len() as i32;
        let per_member = partition_count / member_count;
        let with_extra = partition_count % member_count;
        for (index, member_id) in members.into_iter().enumerate() {
            let index = index as i32;
            let start = per_member * index + index.min(with_extra);
            let length = per_member + i32::from(index < with_extra);
            if length == 0 {
                continue;
            }
            assignment
                .get_mut(member_id)
                .expect("every subscribed member has an entry")
                .insert(topic.to_string(), (start..start + length).collect());
        }
    }
    assignment
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscriptions(entries: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        entries
            .iter()
            .map(|(member, topics)| {
                (
                    member.to_string(),
                    topics.iter().map(|topic| topic.to_string()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn uneven_partitions_give_the_first_members_one_extra() {
        let counts = BTreeMap::from([("t".to_string(), 5)]);
        let assignment = assign_range(&subscriptions(&[("b", &["t"]), ("a", &["t"])]), &counts);
        assert_eq!(assignment["a"]["t"], vec![0, 1, 2]);
        assert_eq!(assignment["b"]["t"], vec![3, 4]);
    }

    #[test]
    fn each_topic_is_ranged_independently_over_its_subscribers() {
        let counts = BTreeMap::from([("t".to_string(), 2), ("u".to_string(), 3)]);
        let assignment = assign_range(
            &subscriptions(&[("a", &["t", "u"]), ("b", &["u"]), ("c", &["t", "u"])]),
            &counts,
        );
        assert_eq!(assignment["a"]["t"], vec![0]);
        assert_eq!(assignment["c"]["t"], vec![1]);
        assert_eq!(assignment["a"]["u"], vec![0]);
        assert_eq!(assignment["b"]["u"], vec![1]);
        assert_eq!(assignment["c"]["u"], vec![2]);
        assert!(!assignment["b"].contains_key("t"));
    }

    #[test]
    fn more_members_than_partitions_leaves_some_empty() {
        let counts = BTreeMap::from([("t".to_string(), 1)]);
        let assignment = assign_range(&subscriptions(&[("a", &["t"]), ("b", &["t"])]), &counts);
        assert_eq!(assignment["a"]["t"], vec![0]);
        assert!(assignment["b"].is_empty());
    }

    #[test]
    fn every_partition_is_assigned_exactly_once() {
        let counts = BTreeMap::from([("t".to_string(), 17)]);
        for member_count in 1..9 {
            let names: Vec<String> = (0..member_count).map(|index| format!("m{index}")).collect();
            let subscriptions: BTreeMap<String, Vec<String>> = names
                .iter()
                .map(|name| (name.clone(), vec!["t".to_string()]))
                .collect();
            let assignment = assign_range(&subscriptions, &counts);
            let mut all: Vec<i32> = assignment
                .values()
                .flat_map(|topics| topics.get("t").cloned().unwrap_or_default())
                .collect();
            all.sort_unstable();
            assert_eq!(all, (0..17).collect::<Vec<i32>>());
        }
    }
}
