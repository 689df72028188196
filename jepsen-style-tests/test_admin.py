"""The AdminClient's topic life cycle: create, describe configs, add partitions, delete."""

import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import ConfigResource, NewPartitions, NewTopic, ResourceType

import clients


def test_topic_life_cycle(broker):
    topic = "admin-topic"
    admin = clients.create_topic(broker, topic, 2)

    # Creating it again is refused with TOPIC_ALREADY_EXISTS, as Kafka does.
    again = admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    with pytest.raises(KafkaException) as refused:
        again[topic].result(timeout=clients.ADMIN_TIMEOUT_S)
    assert refused.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    # Describe the topic's configuration: Kafka lists every topic config with its value.
    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=clients.ADMIN_TIMEOUT_S)
    assert configs, "describe_configs returned no configuration entries"
    for name, entry in configs.items():
        assert entry.name == name

    # Grow to four partitions; the new ones take writes.
    admin.create_partitions([NewPartitions(topic, 4)])[topic].result(timeout=clients.ADMIN_TIMEOUT_S)
    clients.wait_for_partitions(admin, topic, 4)
    producer = clients.producer(broker)
    acknowledged, failed = clients.produce_all(
        producer, topic, [(None, f"p{partition}") for partition in range(4)], partition_of=lambda index: index
    )
    assert not failed
    assert {value: position[0] for value, position in acknowledged.items()} == {f"p{p}": p for p in range(4)}
    del producer

    # Delete it; it disappears from the metadata. list_topics() without a topic name
    # does not auto-create it again.
    admin.delete_topics([topic])[topic].result(timeout=clients.ADMIN_TIMEOUT_S)
    deadline = time.monotonic() + clients.ADMIN_TIMEOUT_S
    while topic in admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, f"{topic} still listed {clients.ADMIN_TIMEOUT_S}s after deletion"
        time.sleep(0.1)


def test_create_topics_with_explicit_partition_count(broker_factory):
    # num.partitions is the default for auto-created topics only.
    broker = broker_factory("--set", "num.partitions=3")
    producer = clients.producer(broker)
    acknowledged, failed = clients.produce_all(producer, "auto-created", [(None, "one")])
    assert not failed
    admin = clients.admin(broker)
    clients.wait_for_partitions(admin, "auto-created", 3)
    clients.create_topic(broker, "explicit", 5)
