"""confluent-kafka (librdkafka) producers and consumer groups against the real broker."""

import time

from confluent_kafka import TopicPartition

import clients

IDEMPOTENT_MESSAGE_COUNT = 5000
GROUP_MESSAGE_COUNT = 4000
GROUP_PARTITIONS = 4
# How long a consumer group may take to form or rebalance.
REBALANCE_TIMEOUT_S = 60.0


def test_idempotent_producer_all_acknowledged(broker):
    topic = "idempotent"
    producer = clients.producer(broker, **{"enable.idempotence": True, "acks": "all"})
    messages = [(f"key-{index % 13}", f"value-{index:05d}") for index in range(IDEMPOTENT_MESSAGE_COUNT)]
    acknowledged, failed = clients.produce_all(producer, topic, messages)

    assert not failed, f"{len(failed)} deliveries failed, e.g. {next(iter(failed.items()))}"
    assert len(acknowledged) == IDEMPOTENT_MESSAGE_COUNT
    # One partition (auto-created), so offsets are exactly 0..n-1 in send order: the
    # idempotent producer neither drops nor duplicates nor reorders.
    assert {partition for partition, _ in acknowledged.values()} == {0}
    offsets = [acknowledged[value][1] for _, value in messages]
    assert offsets == list(range(IDEMPOTENT_MESSAGE_COUNT)), "acknowledged offsets are not 0..n-1 in send order"

    consumer = clients.consumer(broker, "idempotent-reader")
    consumer.subscribe([topic])
    try:
        received = clients.consume_exactly(consumer, IDEMPOTENT_MESSAGE_COUNT)
    finally:
        consumer.close()
    assert [message.value().decode() for message in received] == [value for _, value in messages]


def wait_for(condition, what, timeout_s, poll):
    """Calls `poll()` until `condition()` holds; both run on this thread."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
        poll()


class Member:
    """One consumer-group member and everything it consumed and was assigned."""

    def __init__(self, broker, group_id, topic, name):
        self.name = name
        self.assignment = set()
        self.ever_assigned = set()
        self.consumed = []  # (partition, offset, value)
        self.consumer = clients.consumer(broker, group_id, **{"client.id": name})
        self.consumer.subscribe([topic], on_assign=self.on_assign, on_revoke=self.on_revoke)
        self.closed = False

    def on_assign(self, consumer, partitions):
        self.assignment = {partition.partition for partition in partitions}
        self.ever_assigned |= self.assignment

    def on_revoke(self, consumer, partitions):
        # Commit what was processed before the partitions move to another member, so
        # the new owner starts exactly where this one stopped.
        clients.commit_sync(consumer)
        self.assignment = set()

    def poll(self):
        batch = clients.poll_messages(self.consumer, timeout_s=0.2)
        for message in batch:
            self.consumed.append((message.partition(), message.offset(), message.value().decode()))
        if batch:
            # Synchronous commits make the exactly-once check exact.
            clients.commit_sync(self.consumer)
        return len(batch)

    def close(self):
        if not self.closed:
            self.closed = True
            self.consumer.close()


def test_consumer_group_two_members_then_takeover(broker):
    topic = "group-topic"
    group_id = "two-members"
    admin = clients.create_topic(broker, topic, GROUP_PARTITIONS)

    first = Member(broker, group_id, topic, "member-a")
    second = Member(broker, group_id, topic, "member-b")
    members = [first, second]

    def poll_all():
        for member in members:
            if not member.closed:
                member.poll()

    try:
        # Both members join before anything is produced, so no message is read during
        # the first rebalance and every message is read by a member that then commits.
        wait_for(
            lambda: first.assignment and second.assignment
            and first.assignment | second.assignment == set(range(GROUP_PARTITIONS))
            and not first.assignment & second.assignment,
            "both members to share all partitions",
            REBALANCE_TIMEOUT_S,
            poll_all,
        )

        producer = clients.producer(broker)
        messages = [(None, f"group-{index:05d}") for index in range(GROUP_MESSAGE_COUNT)]
        acknowledged, failed = clients.produce_all(
            producer, topic, messages, partition_of=lambda index: index % GROUP_PARTITIONS
        )
        assert not failed and len(acknowledged) == GROUP_MESSAGE_COUNT

        def total_consumed():
            return sum(len(member.consumed) for member in members)

        wait_for(
            lambda: total_consumed() >= GROUP_MESSAGE_COUNT // 2,
            "half the messages",
            clients.TRANSFER_TIMEOUT_S,
            poll_all,
        )
        assert first.consumed and second.consumed, "both members should have consumed while sharing"

        # The first member commits what it read and leaves; the second must take over
        # every partition and continue from the first one's committed offsets.
        clients.commit_sync(first.consumer)
        first.close()
        wait_for(
            lambda: second.assignment == set(range(GROUP_PARTITIONS)) and total_consumed() >= GROUP_MESSAGE_COUNT,
            "the remaining member to own all partitions and read every message",
            REBALANCE_TIMEOUT_S + clients.TRANSFER_TIMEOUT_S,
            poll_all,
        )
        # Give a duplicate, if the broker would serve one, a chance to show up.
        for _ in range(5):
            second.poll()

        consumed = first.consumed + second.consumed
        positions = [(partition, offset) for partition, offset, _ in consumed]
        duplicates = len(positions) - len(set(positions))
        assert duplicates == 0, f"{duplicates} messages were consumed twice"
        assert {value for _, _, value in consumed} == {value for _, value in messages}
        assert {(partition, offset) for partition, offset in acknowledged.values()} == set(positions)
        for member in members:
            assert member.ever_assigned, f"{member.name} never got a partition"

        # The group's committed offsets now stand at the end of every partition.
        committed = second.consumer.committed(
            [TopicPartition(topic, partition) for partition in range(GROUP_PARTITIONS)], timeout=10
        )
        expected = GROUP_MESSAGE_COUNT // GROUP_PARTITIONS
        assert [entry.offset for entry in committed] == [expected] * GROUP_PARTITIONS
    finally:
        for member in members:
            member.close()
        del admin
