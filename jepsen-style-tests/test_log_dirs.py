"""DescribeLogDirs against the real binary, through kafka-python's `describe_log_dirs` (what
`kafka-log-dirs --describe` and admin UIs send): each broker lists the partition replicas in
its data directory with their sizes on disk, and the size and free space of its volume."""

import glob
import os
import time

from kafka.admin import KafkaAdminClient

import clients

WAIT_S = 30


def wait_until(condition, what):
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def describe_log_dirs(target, topic_partitions=None):
    admin = KafkaAdminClient(bootstrap_servers=target.bootstrap)
    try:
        return {entry["broker"]: entry["log_dirs"] for entry in admin.describe_log_dirs(topic_partitions)}
    finally:
        admin.close()


def partition_sizes(log_dir, topic):
    return {partition["partition_index"]: partition["partition_size"]
            for described in log_dir["topics"] if described["name"] == topic
            for partition in described["partitions"]}


def bytes_on_disk(directory):
    return sum(os.path.getsize(path) for path in glob.glob(os.path.join(directory, "*.log")))


def produce(target, topic, count, partition):
    producer = clients.producer(target)
    acknowledged, failed = clients.produce_all(
        producer, topic, [(None, f"{topic}-{i:05d}-" + "x" * 200) for i in range(count)],
        partition_of=lambda _index: partition)
    assert not failed and len(acknowledged) == count


def test_a_broker_reports_its_replicas_sizes_and_its_volume(broker):
    clients.create_topic(broker, "sized", 2)
    produce(broker, "sized", 500, partition=0)

    described = describe_log_dirs(broker)
    assert list(described) == [1]
    [log_dir] = described[1]
    assert log_dir["error_code"] == 0
    assert log_dir["log_dir"] == str(broker.data_dir)
    sizes = partition_sizes(log_dir, "sized")
    assert sizes == {0: bytes_on_disk(os.path.join(broker.data_dir, "sized-0")), 1: 0}
    assert sizes[0] > 500 * 200, "at least the values themselves"
    for described_topic in log_dir["topics"]:
        for partition in described_topic["partitions"]:
            assert partition["offset_lag"] == 0 and partition["is_future_key"] is False
    volume = os.statvfs(broker.data_dir)
    assert log_dir["total_bytes"] == volume.f_blocks * volume.f_frsize
    assert 0 < log_dir["usable_bytes"] <= log_dir["total_bytes"]

    # Only what was asked for: an unknown partition and an unknown topic are left out.
    filtered = describe_log_dirs(broker, {"sized": [1, 7], "missing": [0]})
    [log_dir] = filtered[1]
    assert [topic["name"] for topic in log_dir["topics"]] == ["sized"]
    assert partition_sizes(log_dir, "sized") == {1: 0}


def test_every_broker_of_a_cluster_reports_its_own_replica(cluster_factory):
    cluster = cluster_factory(3)
    clients.create_replicated_topic(cluster, "spread", 1, 3)
    produce(cluster, "spread", 300, partition=0)

    def replica_directory(broker):
        [found] = glob.glob(os.path.join(broker.data_dir, "spread-0.g*"))
        return found

    def replicas_agree():
        described = describe_log_dirs(cluster, ["spread"])
        if sorted(described) != [1, 2, 3]:
            return False
        for broker in cluster.brokers:
            [log_dir] = described[broker.node_id]
            [topic] = log_dir["topics"]
            [partition] = topic["partitions"]
            if partition["offset_lag"] != 0:
                return False
            if partition["partition_size"] != bytes_on_disk(replica_directory(broker)):
                return False
        return True

    # Followers catch up on their own time; once they have, every broker reports its own
    # replica, the size of its own files, and no lag.
    wait_until(replicas_agree, "every replica to report its size with no lag")
