"""OffsetDelete (kafka-python's `delete_group_offsets`, what `kafka-consumer-groups
--delete-offsets` sends) against the real binary: a live consumer group keeps the offsets of
the topics it subscribes to and loses the others; once it is empty, all may go; the deletions
survive a restart."""

import pytest
from confluent_kafka import TopicPartition
from kafka import TopicPartition as KafkaPythonTopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import GroupIdNotFoundError, GroupSubscribedToTopicError, NoError

import clients

NO_OFFSET = -1001


def delete_offsets(broker, group_id, partitions):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        results = admin.delete_group_offsets(
            group_id, [KafkaPythonTopicPartition(topic, partition) for topic, partition in partitions])
    finally:
        admin.close()
    return {(tp.topic, tp.partition): error for tp, error in results.items()}


def test_offset_delete_spares_subscribed_topics_and_persists(broker):
    for topic in ("orders", "audit"):
        clients.create_topic(broker, topic, 1)
        producer = clients.producer(broker)
        acknowledged, failed = clients.produce_all(producer, topic, [(None, f"{topic}-{i}") for i in range(5)])
        assert not failed and len(acknowledged) == 5

    member = clients.consumer(broker, "deleting")
    member.subscribe(["orders"])
    try:
        assert len(clients.consume_exactly(member, 5)) == 5
        clients.commit_sync(member)
        # An offset for a topic the group does not subscribe to, committed by the member.
        member.commit(offsets=[TopicPartition("audit", 0, 3)], asynchronous=False)
        assert clients.committed_offsets(broker, "deleting", "orders", 1) == {0: 5}
        assert clients.committed_offsets(broker, "deleting", "audit", 1) == {0: 3}

        results = delete_offsets(broker, "deleting", [("orders", 0), ("audit", 0)])
        assert results == {("orders", 0): GroupSubscribedToTopicError, ("audit", 0): NoError}
        assert clients.committed_offsets(broker, "deleting", "orders", 1) == {0: 5}
        assert clients.committed_offsets(broker, "deleting", "audit", 1) == {0: NO_OFFSET}
    finally:
        member.close()

    # The group is empty now: its last offset can go too.
    assert delete_offsets(broker, "deleting", [("orders", 0)]) == {("orders", 0): NoError}
    assert clients.committed_offsets(broker, "deleting", "orders", 1) == {0: NO_OFFSET}
    with pytest.raises(GroupIdNotFoundError):
        delete_offsets(broker, "never-existed", [("orders", 0)])

    broker.restart()
    assert clients.committed_offsets(broker, "deleting", "orders", 1) == {0: NO_OFFSET}
    assert clients.committed_offsets(broker, "deleting", "audit", 1) == {0: NO_OFFSET}
    # A new member of the same group starts over from auto.offset.reset.
    again = clients.consumer(broker, "deleting")
    again.subscribe(["orders"])
    try:
        values = [m.value().decode() for m in clients.consume_exactly(again, 5)]
        assert values == [f"orders-{i}" for i in range(5)]
    finally:
        again.close()
