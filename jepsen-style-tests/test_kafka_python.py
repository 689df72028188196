"""kafka-python, a pure-Python client that chooses request versions from the broker's
ApiVersions answer, so it exercises different versions than librdkafka does."""

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

MESSAGE_COUNT = 500
SEND_TIMEOUT_S = 30
CONSUME_TIMEOUT_S = 60.0


def produce(broker, topic, values):
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    try:
        futures = [producer.send(topic, value=value.encode()) for value in values]
        metadata = [future.get(timeout=SEND_TIMEOUT_S) for future in futures]
    finally:
        producer.close(timeout=10)
    return [(record.partition, record.offset) for record in metadata]


def consume(consumer, count, timeout_s=CONSUME_TIMEOUT_S):
    received = []
    deadline = time.monotonic() + timeout_s
    while len(received) < count:
        assert time.monotonic() < deadline, f"consumed {len(received)} of {count} in {timeout_s}s"
        for records in consumer.poll(timeout_ms=500, max_records=count - len(received)).values():
            received.extend(records)
    return received


def test_round_trip(broker):
    topic = "kafka-python-round-trip"
    values = [f"kp-{index:04d}" for index in range(MESSAGE_COUNT)]
    positions = produce(broker, topic, values)
    assert positions == [(0, offset) for offset in range(MESSAGE_COUNT)]

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        records = consume(consumer, MESSAGE_COUNT)
    finally:
        consumer.close()
    assert [record.value.decode() for record in records] == values
    assert [record.offset for record in records] == list(range(MESSAGE_COUNT))


def test_group_consumer_commits_and_resumes(broker):
    topic = "kafka-python-group"
    group_id = "kafka-python-group"
    produce(broker, topic, [f"early-{index:04d}" for index in range(MESSAGE_COUNT)])

    def member():
        return KafkaConsumer(
            topic,
            bootstrap_servers=broker.bootstrap,
            group_id=group_id,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=10000,
            heartbeat_interval_ms=500,
        )

    first = member()
    try:
        records = consume(first, MESSAGE_COUNT)
        first.commit()
        assert first.committed(TopicPartition(topic, 0)) == MESSAGE_COUNT
    finally:
        first.close()
    assert [record.value.decode() for record in records] == [f"early-{index:04d}" for index in range(MESSAGE_COUNT)]

    # A new member of the same group sees only what was written after the commit.
    produce(broker, topic, [f"late-{index:02d}" for index in range(10)])
    second = member()
    try:
        records = consume(second, 10)
        extra = second.poll(timeout_ms=1000)
        second.commit()
    finally:
        second.close()
    assert [record.value.decode() for record in records] == [f"late-{index:02d}" for index in range(10)]
    assert not any(extra.values()), "the group re-read messages behind its committed offset"
