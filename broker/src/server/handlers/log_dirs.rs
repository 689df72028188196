//! DescribeLogDirs: the partition replicas this broker keeps in its data directory, with their
//! sizes on disk, and the size and free space of the volume holding it (v4). Operators' tools
//! (`kafka-log-dirs --describe`, admin UIs) read topic sizes from it, asking every broker.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::server::broker::Broker;
use crate::server::partition::Partition;

/// Which partitions a request asks about: `None` for every one this broker holds.
type Selection = Option<BTreeMap<String, BTreeSet<i32>>>;

fn selection(request: &DescribeLogDirsRequest) -> Selection {
    let topics = request.topics.as_ref()?;
    let mut wanted: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for topic in topics {
        wanted
            .entry(topic.topic.0.to_string())
            .or_default()
            .extend(topic.partitions.iter().copied());
    }
    Some(wanted)
}

/// One replica as DescribeLogDirs reports it. The lag is Kafka's: how far the replica's log
/// end is behind the high watermark it knows (0 on a leader, or a follower that has caught up).
fn describe_partition(partition: &Partition) -> DescribeLogDirsPartition {
    let lag = (partition.high_watermark() - partition.log_end_offset()).max(0);
    DescribeLogDirsPartition::default()
        .with_partition_index(partition.index)
        .with_partition_size(i64::try_from(partition.size_bytes()).unwrap_or(i64::MAX))
        .with_offset_lag(lag)
        .with_is_future_key(false)
}

pub fn describe_log_dirs(
    broker: &Broker,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let wanted = selection(&request);
    let mut topics = Vec::new();
    for topic in broker.topics() {
        let partitions_wanted = match &wanted {
            None => None,
            Some(wanted) => match wanted.get(&topic.name) {
                Some(partitions) => Some(partitions),
                None => continue,
            },
        };
        let partitions: Vec<DescribeLogDirsPartition> = topic
            .hosted()
            .filter(|partition| {
                partitions_wanted.is_none_or(|wanted| wanted.contains(&partition.index))
            })
            .map(|partition| describe_partition(partition))
            .collect();
        if !partitions.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.name.clone())))
                    .with_partitions(partitions),
            );
        }
    }
    let data_dir = &broker.config.data_dir;
    // -1 is the protocol's "unknown"; the volume's size is a convenience, never a reason to
    // fail the whole answer.
    let (total_bytes, usable_bytes) = match broker.seams.disk.space(data_dir) {
        Ok(space) => (
            i64::try_from(space.total_bytes).unwrap_or(i64::MAX),
            i64::try_from(space.usable_bytes).unwrap_or(i64::MAX),
        ),
        Err(error) => {
            tracing::debug!(%error, dir = %data_dir.display(), "volume size unknown");
            (-1, -1)
        }
    };
    let result = DescribeLogDirsResult::default()
        .with_error_code(0)
        .with_log_dir(StrBytes::from_string(data_dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(total_bytes)
        .with_usable_bytes(usable_bytes);
    DescribeLogDirsResponse::default()
        .with_error_code(0)
        .with_results(vec![result])
}
