"""A three-broker cluster under real clients and real faults.

  1. three `skiff` processes form a cluster (`controller.quorum.voters`); a topic is created
     through the AdminClient with replication factor 3;
  2. an idempotent confluent-kafka producer (acks=all) writes unique values in the background;
  3. the leader of a partition is killed with SIGKILL while it writes;
  4. the producer must keep getting acknowledgements (librdkafka finds the new leader through
     NOT_LEADER_OR_FOLLOWER and metadata, by itself);
  5. the killed broker restarts and catches up.

Checked: every acknowledged value is readable afterwards, exactly once (idempotence), at the
offset its acknowledgement named; acknowledgements continued after the kill; the restarted
broker rejoins (listed in metadata) and, once it leads a partition, serves the same data.
"""

import logging
import signal
import subprocess
import time

from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from confluent_kafka.admin import NewTopic

import clients
from conftest import Cluster as conftest_cluster

PARTITIONS = 3
REPLICAS = 3
# Acknowledged values wanted before and after the kill.
BEFORE_KILL = 3000
AFTER_KILL = 3000
# How long a failover may take before the test calls it stuck (elections take 1-2 s).
FAILOVER_TIMEOUT_S = 60.0


def wait_until(condition, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


# One admin client per cluster: the tests poll metadata often, and each client holds threads
# and connections until it is garbage-collected.
_admins = {}


def admin_of(cluster):
    if cluster.bootstrap not in _admins:
        _admins[cluster.bootstrap] = clients.admin(cluster)
    return _admins[cluster.bootstrap]


def leader_of(cluster, topic, partition):
    """The partition's leader as the cluster reports it; -1 while unknown."""
    metadata = admin_of(cluster).list_topics(topic, timeout=10)
    described = metadata.topics.get(topic)
    if described is None or partition not in described.partitions:
        return -1
    return described.partitions[partition].leader


def read_all(cluster, topic, expected, partitions=PARTITIONS):
    """Reads every partition from the start until `expected` values arrived (plus a drain)."""
    reader = clients.consumer(cluster, "cluster-reader")
    reader.assign([TopicPartition(topic, partition, 0) for partition in range(partitions)])
    try:
        received = clients.consume_exactly(reader, expected)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            received.extend(clients.poll_messages(reader))
        return received
    finally:
        reader.close()


def assert_each_acknowledged_once_where_acknowledged(acknowledged, received):
    """Every acknowledged value was read exactly once, at the (partition, offset) its
    acknowledgement named."""
    positions = {}
    for message in received:
        value = message.value().decode()
        at = (message.partition(), message.offset())
        assert value not in positions, (
            f"{value} read twice: at (partition, offset) {positions[value]} and {at}; "
            f"acknowledged at {acknowledged.get(value)}"
        )
        positions[value] = at
    missing = [value for value in acknowledged if value not in positions]
    assert not missing, f"{len(missing)} acknowledged values lost, e.g. {missing[:5]}"
    moved = [v for v, at in acknowledged.items() if positions[v] != at]
    assert not moved, f"values read at other offsets than acknowledged, e.g. {moved[:5]}"


def test_three_brokers_fail_over_without_losing_acknowledged_writes(cluster_factory):
    cluster = cluster_factory(3)
    admin = clients.admin(cluster)
    futures = admin.create_topics([NewTopic("replicated", num_partitions=PARTITIONS, replication_factor=REPLICAS)])
    futures["replicated"].result(timeout=clients.ADMIN_TIMEOUT_S)
    wait_until(
        lambda: all(leader_of(cluster, "replicated", p) >= 0 for p in range(PARTITIONS)),
        FAILOVER_TIMEOUT_S,
        "a leader for every partition",
    )
    metadata = admin.list_topics("replicated", timeout=10)
    assert sorted(metadata.brokers) == [1, 2, 3]
    assert all(len(p.replicas) == REPLICAS for p in metadata.topics["replicated"].partitions.values())

    producer = clients.BackgroundProducer(
        cluster, "replicated", "value", **{"enable.idempotence": True, "linger.ms": 2})
    producer.start()
    try:
        wait_until(lambda: producer.acknowledged_count() >= BEFORE_KILL, clients.TRANSFER_TIMEOUT_S, "acknowledgements before the kill")
        victim = cluster.member(leader_of(cluster, "replicated", 0))
        victim.stop(signal.SIGKILL)
        # Partition 0 lost its leader: its acknowledgements resume only after a failover.
        acknowledged_at_kill = producer.acknowledged_count(partition=0)
        wait_until(
            lambda: producer.acknowledged_count(partition=0) >= acknowledged_at_kill + AFTER_KILL // PARTITIONS,
            FAILOVER_TIMEOUT_S,
            "acknowledgements on the killed leader's partition",
        )
        # Metadata names the new leader once the survivors stop listing the dead broker.
        wait_until(
            lambda: leader_of(cluster, "replicated", 0) not in (-1, victim.node_id),
            FAILOVER_TIMEOUT_S,
            "metadata naming a new leader",
        )
    finally:
        producer.stop()

    # Idempotence with acks=all: nothing fails for good, every value is acknowledged once.
    assert not producer.failed, f"failed deliveries: {list(producer.failed.items())[:5]}"
    received = read_all(cluster, "replicated", len(producer.acknowledged))
    assert_each_acknowledged_once_where_acknowledged(producer.acknowledged, received)

    # The killed broker restarts and catches up. Then another broker is killed: the two left
    # (one of them the restarted one) must still hold every acknowledged value and accept
    # writes, which they can only if the restarted broker caught up.
    victim.start()
    wait_until(lambda: sorted(admin_of(cluster).list_topics(timeout=10).brokers) == [1, 2, 3],
               FAILOVER_TIMEOUT_S, "the restarted broker in metadata")
    # Leadership moves back to preferred leaders: the restarted broker leads again.
    wait_until(
        lambda: any(leader_of(cluster, "replicated", p) == victim.node_id for p in range(PARTITIONS)),
        FAILOVER_TIMEOUT_S,
        "the restarted broker to lead a partition again",
    )
    second_victim = next(b for b in cluster.brokers if b.node_id != victim.node_id)
    second_victim.stop(signal.SIGKILL)
    survivors = [b for b in cluster.brokers if b is not second_victim]
    later = clients.producer(conftest_cluster(survivors), **{"enable.idempotence": True})
    acknowledged_later, failed_later = clients.produce_all(
        later, "replicated", [(None, f"later-{index:05d}") for index in range(1000)])
    assert not failed_later and len(acknowledged_later) == 1000
    everything = read_all(cluster, "replicated", len(producer.acknowledged) + 1000)
    values = [message.value().decode() for message in everything]
    assert len(values) == len(set(values)), "a value was read twice"
    missing = set(producer.acknowledged) | set(acknowledged_later)
    missing.difference_update(values)
    assert not missing, f"{len(missing)} acknowledged values missing with a restarted replica in the quorum"


def test_group_resumes_from_committed_offsets_after_the_coordinator_dies(cluster_factory):
    cluster = cluster_factory(3)
    admin = clients.admin(cluster)
    admin.create_topics([NewTopic("grouped", num_partitions=2, replication_factor=3)])["grouped"].result(
        timeout=clients.ADMIN_TIMEOUT_S)
    writer = clients.producer(cluster, **{"enable.idempotence": True})
    acknowledged, failed = clients.produce_all(writer, "grouped", [(None, f"g-{i:05d}") for i in range(2000)])
    assert not failed and len(acknowledged) == 2000

    member = clients.consumer(cluster, "resumers")
    member.subscribe(["grouped"])
    first = clients.consume_exactly(member, 1000)
    clients.commit_sync(member)
    member.close()

    coordinator = leader_of(cluster, "__consumer_offsets", 0)
    assert coordinator >= 0
    cluster.member(coordinator).stop(signal.SIGKILL)

    successor = clients.consumer(cluster, "resumers")
    successor.subscribe(["grouped"])
    try:
        rest = clients.consume_exactly(successor, 2000 - len(first))
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            rest.extend(clients.poll_messages(successor))
    finally:
        successor.close()
    seen = [m.value().decode() for m in first] + [m.value().decode() for m in rest]
    assert len(seen) == len(set(seen)), "the group re-read committed messages after the coordinator moved"
    assert set(seen) == set(acknowledged)


def test_clean_shutdown_hands_leadership_over(cluster_factory):
    cluster = cluster_factory(3)
    admin = clients.admin(cluster)
    admin.create_topics([NewTopic("handover", num_partitions=1, replication_factor=3)])["handover"].result(
        timeout=clients.ADMIN_TIMEOUT_S)
    wait_until(lambda: leader_of(cluster, "handover", 0) >= 0, FAILOVER_TIMEOUT_S, "a leader")
    leader = cluster.member(leader_of(cluster, "handover", 0))
    assert leader.stop(signal.SIGTERM) == 0
    # The hand-over happened before the process exited: the others already agree on a leader.
    new_leader = leader_of(cluster, "handover", 0)
    assert new_leader not in (-1, leader.node_id)


def test_kcat_round_trip_through_any_broker(cluster_factory, tmp_path):
    cluster = cluster_factory(3)
    values = [f"line-{index}" for index in range(20000)]
    first, second, third = cluster.brokers
    subprocess.run(
        ["kcat", "-b", first.bootstrap, "-P", "-t", "kcat-cluster", "-X", "acks=all"],
        input="\n".join(values) + "\n", text=True, check=True, timeout=120,
    )
    out = subprocess.run(
        ["kcat", "-b", third.bootstrap, "-C", "-t", "kcat-cluster", "-o", "beginning", "-e", "-q"],
        capture_output=True, text=True, check=True, timeout=120,
    )
    assert out.stdout.splitlines() == values


def test_a_consumer_reads_through_a_failover_once_and_in_order(cluster_factory):
    """A consumer polling while the leader dies validates its position with the new leader
    (OffsetForLeaderEpoch, as librdkafka does on a leader epoch change) and goes on: every
    value once, in offset order, nothing skipped."""
    cluster = cluster_factory(3)
    admin = clients.admin(cluster)
    admin.create_topics([NewTopic("followed", num_partitions=1, replication_factor=3)])["followed"].result(
        timeout=clients.ADMIN_TIMEOUT_S)
    wait_until(lambda: leader_of(cluster, "followed", 0) >= 0, FAILOVER_TIMEOUT_S, "a leader")
    writer = clients.producer(cluster, **{"enable.idempotence": True})
    before, failed = clients.produce_all(writer, "followed", [(None, f"f-{i:05d}") for i in range(1000)])
    assert not failed

    sent_requests = []

    class RequestLog(logging.Handler):
        def emit(self, record):
            sent_requests.append(record.getMessage())

    logger = logging.getLogger("followed-consumer")
    logger.addHandler(RequestLog())
    logger.setLevel(logging.DEBUG)
    reader = clients.consumer(cluster, "followers", debug="protocol", logger=logger)
    reader.assign([TopicPartition("followed", 0, 0)])
    try:
        received = clients.consume_exactly(reader, 1000)
        victim = cluster.member(leader_of(cluster, "followed", 0))
        victim.stop(signal.SIGKILL)
        after, failed = clients.produce_all(writer, "followed", [(None, f"f-{i:05d}") for i in range(1000, 2000)])
        assert not failed
        received.extend(clients.consume_exactly(reader, 1000))
    finally:
        reader.close()
    values = [message.value().decode() for message in received]
    assert values == [f"f-{i:05d}" for i in range(2000)], "values skipped, repeated or out of order"
    offsets = [message.offset() for message in received]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    assert {**before, **after} == {m.value().decode(): (0, m.offset()) for m in received}
    assert any("Sent OffsetForLeaderEpochRequest" in line for line in sent_requests), \
        "the consumer never validated its position with the new leader"


def test_a_replica_behind_the_leaders_retention_starts_over_at_its_log_start(cluster_factory):
    """A follower is down while the others write more than retention keeps: the segments it
    needs next are gone. Back up, it is sent the leader's log start, drops its log and
    catches up from there; then, with the other follower killed, it is the one that makes
    acks=all writes commit."""
    cluster = cluster_factory(3, "--set", "log.retention.check.interval.ms=300")
    admin = clients.admin(cluster)
    configs = {"segment.bytes": "16384", "retention.bytes": "65536"}
    admin.create_topics([NewTopic("trimmed", num_partitions=1, replication_factor=3, config=configs)])[
        "trimmed"].result(timeout=clients.ADMIN_TIMEOUT_S)
    wait_until(lambda: leader_of(cluster, "trimmed", 0) >= 0, FAILOVER_TIMEOUT_S, "a leader")
    leader = leader_of(cluster, "trimmed", 0)
    lagging, other = [b for b in cluster.brokers if b.node_id != leader]
    lagging.stop(signal.SIGKILL)

    # Batches must fit the small segments (a batch never spans two).
    small_batches = {"enable.idempotence": True, "batch.size": 8192}
    writer = clients.producer(conftest_cluster([b for b in cluster.brokers if b is not lagging]),
                              **small_batches)
    acknowledged, failed = clients.produce_all(
        writer, "trimmed", [(None, f"t-{i:06d}-" + "x" * 100) for i in range(6000)])
    assert not failed

    reader = clients.consumer(cluster, "trimmed-watermarks")
    try:
        wait_until(lambda: reader.get_watermark_offsets(TopicPartition("trimmed", 0), timeout=5)[0] > 0,
                   FAILOVER_TIMEOUT_S, "retention to delete the first segments")
    finally:
        reader.close()

    lagging.start()
    # Only the restarted replica can complete a quorum once the other follower is gone, and it
    # can only do so after starting over at the leader's log start.
    wait_until(lambda: "starting over at its log start" in lagging.log_tail(200),
               FAILOVER_TIMEOUT_S, "the lagging replica to start over")
    time.sleep(2)
    other.stop(signal.SIGKILL)
    later = clients.producer(conftest_cluster([b for b in cluster.brokers if b is not other]),
                             **small_batches)
    acknowledged_later, failed_later = clients.produce_all(
        later, "trimmed", [(None, f"later-{i:05d}") for i in range(500)])
    assert not failed_later and len(acknowledged_later) == 500
    reader = clients.consumer(conftest_cluster([b for b in cluster.brokers if b is not other]), "trimmed-reader")
    reader.assign([TopicPartition("trimmed", 0, OFFSET_BEGINNING)])
    try:
        received = clients.consume_exactly(reader, 500)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            received.extend(clients.poll_messages(reader))
    finally:
        reader.close()
    values = [m.value().decode() for m in received]
    assert set(acknowledged_later) <= set(values), "acks=all writes committed with the restarted replica are missing"
    assert len(values) == len(set(values))
    offsets = [m.offset() for m in received]
    assert offsets == sorted(offsets) and offsets[0] > 0, "reading starts at the log start, after retention"
