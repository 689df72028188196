"""Committed offsets of groups nobody uses any more expire, as with Kafka's
`offsets.retention.minutes`; the offsets of a group with a live member never do.

The broker runs with a 3 s retention (`offsets.retention.ms`, the finer-grained form of the
setting) checked every 200 ms. Three groups commit offset 10:
- `abandoned` consumes as a member of the group, commits and leaves;
- `standalone` commits without ever joining (a client that manages its own assignment);
- `standing` consumes as a member, commits once, and then stays in the group without
  committing again.
Once the retention has passed, the first two have no committed offsets and `standing` still
has its own. After a restart the expired offsets stay gone: their deletion was made durable.

In a cluster the coordinator (the leader of `__consumer_offsets`) expires them the same way,
and the deletion is replicated: it holds after a rolling restart, wherever the coordinator
lands.
"""

import time

from confluent_kafka import TopicPartition

from confluent_kafka.admin import NewTopic

import clients

RETENTION_MS = 3000
SETTINGS = (
    "--set", f"offsets.retention.ms={RETENTION_MS}",
    "--set", "offsets.retention.check.interval.ms=200",
)
TOPIC = "expiring"
MESSAGES = 10
# -1001: librdkafka's "no committed offset".
NO_OFFSET = -1001


def committed(target, group_id):
    return clients.committed_offsets(target, group_id, TOPIC, 1)[0]


def produce_messages(target):
    producer = clients.producer(target)
    acknowledged, failed = clients.produce_all(
        producer, TOPIC, [(None, f"m-{i}") for i in range(MESSAGES)]
    )
    assert not failed and len(acknowledged) == MESSAGES


def commit_standalone(target):
    """Commits without joining the group."""
    client = clients.consumer(target, "standalone")
    try:
        client.commit(offsets=[TopicPartition(TOPIC, 0, MESSAGES)], asynchronous=False)
    finally:
        client.close()


def consume_and_commit(broker, group_id):
    """Joins the group, reads every message, commits synchronously; returns the member."""
    member = clients.consumer(broker, group_id)
    member.subscribe([TOPIC])
    clients.consume_exactly(member, MESSAGES)
    clients.commit_sync(member)
    return member


def test_offsets_of_unused_groups_expire_and_a_live_group_keeps_its_own(broker_factory):
    broker = broker_factory(*SETTINGS)
    clients.create_topic(broker, TOPIC, 1)
    produce_messages(broker)

    consume_and_commit(broker, "abandoned").close()
    standing = consume_and_commit(broker, "standing")
    commit_standalone(broker)
    for group_id in ["abandoned", "standing", "standalone"]:
        assert committed(broker, group_id) == MESSAGES, group_id

    # Past the retention, with the standing member polling (and so heartbeating) throughout.
    deadline = time.monotonic() + RETENTION_MS / 1000 + 2.0
    while time.monotonic() < deadline:
        assert standing.poll(0.2) is None
    assert committed(broker, "abandoned") == NO_OFFSET, broker.log_tail()
    assert committed(broker, "standalone") == NO_OFFSET, broker.log_tail()
    assert committed(broker, "standing") == MESSAGES, broker.log_tail()
    assert "deleted the committed offsets of groups" in broker.log_tail(lines=400)
    standing.close()

    broker.restart()
    assert committed(broker, "abandoned") == NO_OFFSET
    assert committed(broker, "standalone") == NO_OFFSET


def test_expired_offsets_stay_deleted_across_a_rolling_restart(cluster_factory):
    cluster = cluster_factory(3, *SETTINGS)
    admin = clients.admin(cluster)
    admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=3)])[TOPIC].result(
        timeout=clients.ADMIN_TIMEOUT_S
    )
    clients.wait_for_partitions(admin, TOPIC, 1)
    produce_messages(cluster)
    consume_and_commit(cluster, "abandoned").close()
    commit_standalone(cluster)
    # At least past every message (a replicated log may hold records of its own as well).
    assert committed(cluster, "abandoned") >= MESSAGES

    deadline = time.monotonic() + RETENTION_MS / 1000 + 30
    while committed(cluster, "abandoned") != NO_OFFSET or committed(cluster, "standalone") != NO_OFFSET:
        assert time.monotonic() < deadline, "the offsets did not expire\n" + "\n".join(
            member.log_tail() for member in cluster.brokers
        )
        time.sleep(0.5)

    for member in cluster.brokers:
        member.restart()
    assert committed(cluster, "abandoned") == NO_OFFSET
    assert committed(cluster, "standalone") == NO_OFFSET
