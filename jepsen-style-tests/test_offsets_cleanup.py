"""The offsets log stays small without losing a committed offset.

`__consumer_offsets` is not subject to time or size retention: the group coordinator
writes a snapshot of every committed offset once segments have been sealed since the last
one, and each broker deletes the sealed segments below the latest complete snapshot. Here
the segments are 1 KiB and retention is 1 ms, so retention alone would delete a quiet
group's only commit within a second; the group must still find its offsets after many
other commits, cleanup passes and a restart, and a deleted group must stay deleted.

In a cluster every broker cleans its own replica of the offsets log, acting only on a
snapshot its quorum has committed; after a rolling restart the coordinator, wherever it
lands, loads the same offsets from its cleaned replica.
"""

import time

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import ConfigResource, ResourceType

import clients

PARTITIONS = 3
BUSY_COMMITS = 300
CLEANUP_TIMEOUT_S = 30
# -1001: librdkafka's "no committed offset".
NO_OFFSET = -1001


def committed(broker, group_id, topic, partitions):
    return clients.committed_offsets(broker, group_id, topic, partitions)


def commit(broker, group_id, offsets):
    """Commits without joining the group, as a client managing its own assignment does."""
    client = clients.consumer(broker, group_id)
    try:
        client.commit(offsets=offsets, asynchronous=False)
    finally:
        client.close()


CLEANUP_SETTINGS = (
    "--set", "offsets.topic.segment.bytes=1024",
    "--set", "log.retention.ms=1",
    "--set", "log.retention.check.interval.ms=200",
)


def offsets_segments(broker):
    """Base offsets of the offsets log's segments, from their file names (a cluster member's
    replica directory carries its Raft group's number: `__consumer_offsets-0.g1`)."""
    return sorted(
        int(path.stem)
        for directory in broker.data_dir.glob("__consumer_offsets-0*")
        for path in directory.glob("*.log")
    )


def write_offsets(target, topic):
    """A quiet group commits once, another commits and is deleted, and a busy group fills
    many segments. Returns the busy group's last offsets and the segments written."""
    commit(target, "quiet", [TopicPartition(topic, p, 40 + p) for p in range(PARTITIONS)])
    commit(target, "gone", [TopicPartition(topic, 0, 7)])
    admin = clients.admin(target)
    admin.delete_consumer_groups(["gone"], request_timeout=10)["gone"].result(timeout=15)
    client = clients.consumer(target, "busy")
    try:
        for i in range(BUSY_COMMITS):
            client.commit(offsets=[TopicPartition(topic, i % PARTITIONS, i)], asynchronous=False)
    finally:
        client.close()
    return {p: max(i for i in range(BUSY_COMMITS) if i % PARTITIONS == p) for p in range(PARTITIONS)}


def wait_for_cleanup(broker):
    """Waits until the broker's offsets log lost its first segments and holds only a few."""
    deadline = time.monotonic() + CLEANUP_TIMEOUT_S
    while True:
        segments = offsets_segments(broker)
        if segments and segments[0] > 0 and len(segments) <= 4:
            return
        assert time.monotonic() < deadline, (
            f"node {broker.node_id}: the offsets log still has segments {segments[:10]} "
            f"(of {len(segments)}) after {CLEANUP_TIMEOUT_S}s\n{broker.log_tail()}"
        )
        time.sleep(0.2)


def check_offsets(target, topic, expected_busy, when):
    assert committed(target, "quiet", topic, PARTITIONS) == {p: 40 + p for p in range(PARTITIONS)}, when
    assert committed(target, "busy", topic, PARTITIONS) == expected_busy, when
    assert committed(target, "gone", topic, PARTITIONS) == {p: NO_OFFSET for p in range(PARTITIONS)}, when


@pytest.mark.parametrize("flush_policy", ["sync", "interval"])
def test_committed_offsets_outlive_the_segments_they_were_written_to(broker_factory, flush_policy):
    broker = broker_factory(*CLEANUP_SETTINGS, "--set", f"log.flush.policy={flush_policy}")
    topic = "offsets-cleanup"
    clients.create_topic(broker, topic, PARTITIONS)
    expected_busy = write_offsets(broker, topic)
    # The commits alone filled many segments, and each retention pass deletes only whole
    # ones: seeing few left (the first gone) means cleanup ran and kept up.
    wait_for_cleanup(broker)
    check_offsets(broker, topic, expected_busy, "before restart")
    broker.restart()
    check_offsets(broker, topic, expected_busy, "after restart")

    # Described as Kafka describes it: compacted (later records supersede earlier ones), with
    # its own segment size.
    resource = ConfigResource(ResourceType.TOPIC, "__consumer_offsets")
    admin = clients.admin(broker)
    configs = admin.describe_configs([resource])[resource].result(timeout=clients.ADMIN_TIMEOUT_S)
    assert configs["cleanup.policy"].value == "compact"
    assert configs["segment.bytes"].value == "1024"


def test_every_replica_of_the_offsets_log_is_cleaned(cluster_factory):
    cluster = cluster_factory(3, *CLEANUP_SETTINGS)
    topic = "offsets-cleanup"
    clients.create_topic(cluster, topic, PARTITIONS)
    expected_busy = write_offsets(cluster, topic)
    for member in cluster.brokers:
        wait_for_cleanup(member)
    check_offsets(cluster, topic, expected_busy, "before restarts")
    for member in cluster.brokers:
        member.restart()
    check_offsets(cluster, topic, expected_busy, "after a rolling restart")
