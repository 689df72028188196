"""Small helpers around the confluent-kafka client shared by the tests.

Every loop here has a deadline: a broker that stops answering makes a test fail with a
message, never hang.
"""

import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# How long an admin operation (create, delete, alter) may take.
ADMIN_TIMEOUT_S = 30.0
# How long producing or consuming a test's messages may take in all.
TRANSFER_TIMEOUT_S = 120.0


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create_topic(broker, name, partitions):
    """Creates a topic through the AdminClient and waits until metadata shows it."""
    client = admin(broker)
    futures = client.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout=ADMIN_TIMEOUT_S)
    wait_for_partitions(client, name, partitions)
    return client


def create_replicated_topic(cluster, name, partitions, replicas):
    """Creates a topic with `replicas` replicas per partition and waits until metadata shows it."""
    client = admin(cluster)
    futures = client.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=replicas)])
    futures[name].result(timeout=ADMIN_TIMEOUT_S)
    wait_for_partitions(client, name, partitions)
    return client


def wait_for_partitions(client, topic, partitions, timeout_s=ADMIN_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    seen = None
    while time.monotonic() < deadline:
        metadata = client.list_topics(timeout=10)
        if topic in metadata.topics and metadata.topics[topic].error is None:
            seen = len(metadata.topics[topic].partitions)
            if seen == partitions:
                return
        time.sleep(0.1)
    raise AssertionError(f"topic {topic} has {seen} partitions in metadata, want {partitions}")


def producer(broker, **settings):
    config = {
        "bootstrap.servers": broker.bootstrap,
        "acks": "all",
        "linger.ms": 5,
        # A message that cannot be delivered in this long fails the test with its error.
        "message.timeout.ms": 60000,
    }
    config.update(settings)
    return Producer(config)


def produce_all(client, topic, messages, partition_of=None, timeout_s=TRANSFER_TIMEOUT_S):
    """Produces (key, value) pairs and waits for every delivery report.

    Returns (acknowledged, failed): acknowledged maps value -> (partition, offset) and
    failed maps value -> error. Values must be unique.
    """
    acknowledged = {}
    failed = {}

    problems = []

    def on_delivery(error, message):
        try:
            value = message.value().decode()
            if error is not None:
                failed[value] = error
            else:
                acknowledged[value] = (message.partition(), message.offset())
        except Exception as problem:  # noqa: BLE001 - reported after flush, not swallowed
            problems.append(f"{problem!r} (delivery error: {error})")

    total = 0
    for index, (key, value) in enumerate(messages):
        total += 1
        kwargs = {"key": key, "value": value, "on_delivery": on_delivery}
        if partition_of is not None:
            kwargs["partition"] = partition_of(index)
        while True:
            try:
                client.produce(topic, **kwargs)
                break
            except BufferError:
                # The local queue is full: serve delivery reports to make room.
                client.poll(0.1)
        client.poll(0)
    # Served with poll rather than one flush: confluent-kafka 2.16's flush has been seen to
    # raise a spurious SystemError ("returned NULL without setting an exception") after a
    # broker was killed; poll is retried on it, and every report is still accounted for.
    deadline = time.monotonic() + timeout_s
    while len(acknowledged) + len(failed) + len(problems) < total and time.monotonic() < deadline:
        try:
            client.poll(0.1)
        except SystemError:
            continue
    remaining = total - len(acknowledged) - len(failed) - len(problems)
    assert not problems, f"delivery reports could not be read: {problems[:5]}"
    assert remaining == 0, f"{remaining} messages still undelivered after {timeout_s}s"
    return acknowledged, failed


def consumer(broker, group_id, **settings):
    config = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        # Fail fast rather than wait out Kafka's 45 s default when a member vanishes.
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 500,
    }
    config.update(settings)
    return Consumer(config)


def read_retried(target, group_id, read, timeout_s, pause_s):
    """`read(consumer)` with a fresh consumer each attempt, retried on KafkaException until
    `timeout_s` (a cluster elects new leaders and coordinators after a restart)."""
    deadline = time.monotonic() + timeout_s
    while True:
        reader = consumer(target, group_id)
        try:
            return read(reader)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(pause_s)
        finally:
            reader.close()


def committed_offsets(target, group_id, topic, partitions, timeout_s=30):
    """A group's committed offsets by partition (librdkafka's -1001 where there is none),
    read without joining the group, retried while no coordinator is available (a cluster
    elects a new one after its coordinator restarts)."""
    def read(reader):
        found = reader.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    return read_retried(target, group_id, read, timeout_s, pause_s=0.5)


def poll_messages(client, max_messages=500, timeout_s=0.5):
    """One batch of messages, raising on any error other than end-of-partition."""
    batch = []
    for message in client.consume(num_messages=max_messages, timeout=timeout_s):
        error = message.error()
        if error is None:
            batch.append(message)
        elif error.code() != KafkaError._PARTITION_EOF:
            raise AssertionError(f"consumer error: {error}")
    return batch


def consume_exactly(client, count, timeout_s=TRANSFER_TIMEOUT_S):
    """Consumes until `count` messages have arrived; returns them in arrival order."""
    received = []
    deadline = time.monotonic() + timeout_s
    while len(received) < count:
        assert time.monotonic() < deadline, f"consumed {len(received)} of {count} messages in {timeout_s}s"
        received.extend(poll_messages(client, max_messages=min(1000, count - len(received))))
    return received


def commit_sync(client):
    """Commits the consumer's positions synchronously.

    librdkafka reports "no offset to commit" as an error when everything read is already
    committed; for these tests that is success.
    """
    try:
        client.commit(asynchronous=False)
    except KafkaException as error:
        if error.args[0].code() != KafkaError._NO_OFFSET:
            raise


class BackgroundProducer:
    """Writes unique values (`prefix` and a counter) on a thread of its own until stopped,
    recording each acknowledgement's (partition, offset) and each final failure."""

    def __init__(self, target, topic, prefix, **settings):
        self.producer = producer(target, **settings)
        self.topic = topic
        self.prefix = prefix
        self.acknowledged = {}
        self.failed = {}
        self.sent = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def on_delivery(self, error, message):
        value = message.value().decode()
        with self.lock:
            if error is not None:
                self.failed[value] = error
            else:
                self.acknowledged[value] = (message.partition(), message.offset())

    def acknowledged_count(self, partition=None):
        with self.lock:
            if partition is None:
                return len(self.acknowledged)
            return sum(1 for at in self.acknowledged.values() if at[0] == partition)

    def run(self):
        while not self.stopping.is_set():
            try:
                self.producer.produce(self.topic, value=f"{self.prefix}-{self.sent:07d}", on_delivery=self.on_delivery)
                self.sent += 1
            except BufferError:
                pass
            self.producer.poll(0.001)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=30)
        remaining = self.producer.flush(TRANSFER_TIMEOUT_S)
        assert remaining == 0, f"{remaining} in-flight messages neither acknowledged nor failed"


def produce_numbered(target, topic, count, prefix, value_bytes, **settings):
    """Produces `count` unique values of about `value_bytes` bytes and checks every one was
    acknowledged; returns value -> (partition, offset)."""
    client = producer(target, **settings)
    acknowledged, failed = produce_all(
        client, topic, [(None, f"{prefix}-{i:06d}-" + "x" * value_bytes) for i in range(count)])
    assert not failed and len(acknowledged) == count, f"{len(failed)} failed: {list(failed.values())[:3]}"
    return acknowledged


def watermarks(target, topic, timeout_s=30):
    """(log start, high watermark) of partition 0, retried while the partition has no leader
    yet (a cluster just after a broker restarted)."""
    return read_retried(target, f"{topic}-watermarks",
                        lambda reader: reader.get_watermark_offsets(TopicPartition(topic, 0), timeout=5),
                        timeout_s, pause_s=0.2)
