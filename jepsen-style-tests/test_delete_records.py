"""DeleteRecords against the real binary: confluent-kafka's and kafka-python's `delete_records`
move a partition's log start forward. Records below it are gone for every client (a consumer
starting from the beginning starts there, ListOffsets' earliest says so), the segments wholly
below it are deleted by the next retention pass, and the new start survives a SIGKILL; on a
cluster it holds on every replica, so a new leader keeps it."""

import glob
import os
import signal
import time

import pytest
from confluent_kafka import OFFSET_END, KafkaError, KafkaException, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.structs import TopicPartition as KafkaPythonTopicPartition

import clients

WAIT_S = 30
SMALL_SEGMENTS = ("--set", "log.segment.bytes=16384", "--set", "log.retention.check.interval.ms=300")


def wait_until(condition, what):
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def produce(target, topic, count, prefix):
    return clients.produce_numbered(target, topic, count, prefix, 300, **{"batch.size": 4096, "linger.ms": 2})


def delete_with_confluent(target, topic, offset):
    admin = clients.admin(target)
    futures = admin.delete_records([TopicPartition(topic, 0, offset)],
                                   operation_timeout=WAIT_S, request_timeout=WAIT_S)
    [future] = futures.values()
    return future.result(timeout=WAIT_S).low_watermark


def only_segments_from(directory, start):
    """Whether the first segment of `directory` holds `start` and no earlier segment is left."""
    bases = sorted(int(os.path.basename(path)[:20]) for path in glob.glob(os.path.join(directory, "*.log")))
    return bases[0] <= start and (len(bases) == 1 or bases[1] > start)


def first_offset_from_the_beginning(target, topic, group):
    """The offset a new consumer group starting from the earliest record reads first."""
    reader = clients.consumer(target, group)
    reader.subscribe([topic])
    try:
        [first] = clients.consume_exactly(reader, 1)
        return first.offset()
    finally:
        reader.close()


def test_deleted_records_are_gone_for_clients_and_their_segments_for_the_disk(broker_factory):
    broker = broker_factory(*SMALL_SEGMENTS)
    clients.create_topic(broker, "trimmed", 1)
    acknowledged = produce(broker, "trimmed", 400, "first")
    offsets = sorted(offset for _, offset in acknowledged.values())
    assert offsets == list(range(400))
    directory = os.path.join(broker.data_dir, "trimmed-0")
    segments_before = len(glob.glob(os.path.join(directory, "*.log")))
    assert segments_before >= 6

    # confluent-kafka: up to offset 250 (any offset: mid-batch too).
    assert delete_with_confluent(broker, "trimmed", 250) == 250
    assert clients.watermarks(broker, "trimmed") == (250, 400)
    assert first_offset_from_the_beginning(broker, "trimmed", "from-the-start") == 250

    # A consumer positioned below the start is out of range: it resets to the new start.
    reader = clients.consumer(broker, "assigned", **{"auto.offset.reset": "earliest"})
    reader.assign([TopicPartition("trimmed", 0, 10)])
    [first] = clients.consume_exactly(reader, 1)
    assert first.offset() == 250
    reader.close()

    # The segments wholly below the start go at the next retention pass; the one holding
    # offset 250 stays.
    wait_until(lambda: only_segments_from(directory, 250), "the segments below the log start to be deleted")

    # Refusals: past the high watermark, and the offsets topic.
    with pytest.raises(KafkaException) as refused:
        delete_with_confluent(broker, "trimmed", 401)
    assert refused.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
    assert clients.watermarks(broker, "trimmed") == (250, 400), "a refused deletion changes nothing"

    # kafka-python, then a SIGKILL: the start survives, and OFFSET_END deletes what was read.
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    result = admin.delete_records({KafkaPythonTopicPartition("trimmed", 0): 300})
    admin.close()
    [(partition, outcome)] = result.items()
    assert outcome["low_watermark"] == 300, outcome
    broker.restart(signal.SIGKILL)
    assert clients.watermarks(broker, "trimmed") == (300, 400)
    assert delete_with_confluent(broker, "trimmed", OFFSET_END) == 400
    produce(broker, "trimmed", 10, "after")
    assert first_offset_from_the_beginning(broker, "trimmed", "after-everything") == 400


def test_a_cluster_keeps_the_log_start_when_the_leader_changes(cluster_factory):
    cluster = cluster_factory(3, *SMALL_SEGMENTS)
    admin = clients.create_replicated_topic(cluster, "shared", 1, 3)
    produce(cluster, "shared", 300, "replicated")
    low, high = clients.watermarks(cluster, "shared")
    assert high >= 300
    target = low + 120
    assert delete_with_confluent(cluster, "shared", target) == target
    for broker in cluster.brokers:
        [directory] = glob.glob(os.path.join(broker.data_dir, "shared-0.g*"))
        wait_until(lambda: only_segments_from(directory, target),
                   f"node {broker.node_id} to delete its segments below the log start")

    leader_id = admin.list_topics("shared", timeout=10).topics["shared"].partitions[0].leader
    cluster.member(leader_id).stop(signal.SIGKILL)

    def new_leader_keeps_the_start():
        metadata = admin.list_topics("shared", timeout=10).topics["shared"].partitions[0]
        if metadata.leader in (-1, leader_id):
            return False
        return clients.watermarks(cluster, "shared")[0] == target
    wait_until(new_leader_keeps_the_start, "a new leader that starts at the deleted offset")
    assert first_offset_from_the_beginning(cluster, "shared", "after-failover") == target
