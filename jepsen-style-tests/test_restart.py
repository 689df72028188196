"""What survives a broker restart: acknowledged messages and committed group offsets.

The history of each run is simple enough to check exactly:

  1. an idempotent producer writes FIRST_BATCH messages over PARTITIONS partitions, all
     acknowledged (acks=all: under the default sync policy, only after fsync);
  2. a group member consumes CONSUMED_BEFORE_RESTART of them, commits synchronously
     and leaves the group;
  3. the broker is stopped with SIGTERM (clean) or SIGKILL (no chance to flush anything),
     and, for SIGKILL, while a second producer is still writing;
  4. the broker restarts on the same data directory and port;
  5. a new member of the same group must start exactly at the committed offsets and read
     every remaining acknowledged message, then a SECOND_BATCH written after the restart.

Checked: every acknowledged message is present after the restart; the group resumes at
its committed offsets, so with the synchronous commit no message is read twice; offsets
stay dense. Messages in flight at the SIGKILL and not acknowledged may or may not survive
(and may be duplicated by a non-idempotent retry): at-least-once allows both.
"""

import signal
import time

import pytest
from confluent_kafka import TopicPartition

import clients

PARTITIONS = 2
FIRST_BATCH = 2000
CONSUMED_BEFORE_RESTART = 900
SECOND_BATCH = 500
# How long the in-flight producer keeps writing while the broker is killed and restarted.
IN_FLIGHT_WINDOW_S = 1.0


def read_everything(broker, topic, group_id, expected_minimum):
    """Reads every partition from offset 0 without committing (a separate group)."""
    reader = clients.consumer(broker, group_id)
    reader.assign([TopicPartition(topic, partition, 0) for partition in range(PARTITIONS)])
    try:
        received = clients.consume_exactly(reader, expected_minimum)
        # Drain whatever else is there (in-flight messages that survived).
        while True:
            batch = clients.poll_messages(reader, timeout_s=1.0)
            if not batch:
                break
            received.extend(batch)
    finally:
        reader.close()
    return received


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_restart_keeps_acknowledged_messages_and_committed_offsets(broker, stop_signal):
    topic = "restart"
    group_id = "restart-group"
    clients.create_topic(broker, topic, PARTITIONS)

    # 1. The first batch, every message acknowledged.
    producer = clients.producer(broker, **{"enable.idempotence": True})
    first_batch = [(None, f"first-{index:05d}") for index in range(FIRST_BATCH)]
    acknowledged, failed = clients.produce_all(
        producer, topic, first_batch, partition_of=lambda index: index % PARTITIONS
    )
    assert not failed and len(acknowledged) == FIRST_BATCH
    del producer

    # 2. Consume part of it and commit synchronously, then leave the group.
    member = clients.consumer(broker, group_id)
    member.subscribe([topic])
    consumed_before = clients.consume_exactly(member, CONSUMED_BEFORE_RESTART)
    clients.commit_sync(member)
    committed_before = {
        entry.partition: entry.offset
        for entry in member.committed(
            [TopicPartition(topic, partition) for partition in range(PARTITIONS)], timeout=10
        )
    }
    member.close()
    positions_before = {(message.partition(), message.offset()) for message in consumed_before}
    for partition in range(PARTITIONS):
        read = [offset for p, offset in positions_before if p == partition]
        want = max(read) + 1 if read else -1001  # -1001: no committed offset
        assert committed_before[partition] == want, f"partition {partition} committed {committed_before}"

    # 3 and 4. Stop the broker (with writes in flight for SIGKILL) and restart it.
    background = None
    if stop_signal == signal.SIGKILL:
        # Not idempotent: its retries after the kill may duplicate, which is allowed for
        # messages whose acknowledgement the kill cut off.
        background = clients.BackgroundProducer(
            broker, topic, "in-flight", **{"enable.idempotence": False, "retries": 1000000})
        background.start()
        time.sleep(IN_FLIGHT_WINDOW_S)
    status = broker.restart(stop_signal)
    if stop_signal == signal.SIGTERM:
        assert status == 0, f"skiff exited with {status} after SIGTERM\n{broker.log_tail()}"
    if background is not None:
        background.stop()
        assert background.acknowledged, "the in-flight producer got no acknowledgement at all"

    # 5. The group resumes from its committed offsets and reads the rest, then a batch
    # written after the restart.
    producer = clients.producer(broker, **{"enable.idempotence": True})
    second_batch = [(None, f"second-{index:05d}") for index in range(SECOND_BATCH)]
    acknowledged_after, failed_after = clients.produce_all(
        producer, topic, second_batch, partition_of=lambda index: index % PARTITIONS
    )
    assert not failed_after and len(acknowledged_after) == SECOND_BATCH

    in_flight_acknowledged = set(background.acknowledged) if background else set()
    member = clients.consumer(broker, group_id)
    member.subscribe([topic])
    expected_after = FIRST_BATCH - CONSUMED_BEFORE_RESTART + SECOND_BATCH + len(in_flight_acknowledged)
    try:
        consumed_after = clients.consume_exactly(member, expected_after)
        # Anything beyond the acknowledged messages: duplicates or surviving unacked ones.
        while True:
            batch = clients.poll_messages(member, timeout_s=1.0)
            if not batch:
                break
            consumed_after.extend(batch)
        clients.commit_sync(member)
    finally:
        member.close()

    # The new member started exactly at the committed offsets.
    first_offset_after = {}
    for message in consumed_after:
        first_offset_after.setdefault(message.partition(), message.offset())
    for partition, offset in first_offset_after.items():
        assert offset == max(committed_before[partition], 0), (
            f"partition {partition} resumed at {offset}, committed was {committed_before[partition]}"
        )

    # Exactly once across the restart, by position and by value for the first batch.
    positions_after = [(message.partition(), message.offset()) for message in consumed_after]
    assert len(positions_after) == len(set(positions_after)), "a position was delivered twice after restart"
    assert not positions_before & set(positions_after), "messages consumed before the commit were read again"
    values_before = [message.value().decode() for message in consumed_before]
    values_after = [message.value().decode() for message in consumed_after]
    first_values = values_before + [value for value in values_after if value.startswith("first-")]
    assert sorted(first_values) == sorted(value for _, value in first_batch), (
        "first batch: some acknowledged message is missing or read twice"
    )
    second_values = [value for value in values_after if value.startswith("second-")]
    assert sorted(second_values) == sorted(value for _, value in second_batch)
    missing_in_flight = in_flight_acknowledged - set(values_after)
    assert not missing_in_flight, (
        f"{len(missing_in_flight)} messages acknowledged before SIGKILL were lost, "
        f"e.g. {sorted(missing_in_flight)[:5]}"
    )
    unexpected = [value for value in values_after if not value.startswith(("first-", "second-", "in-flight-"))]
    assert not unexpected, f"values nobody produced: {unexpected[:5]}"

    # The log itself is intact: dense offsets from 0 in every partition.
    everything = read_everything(broker, topic, "restart-auditor", FIRST_BATCH + SECOND_BATCH)
    for partition in range(PARTITIONS):
        offsets = [message.offset() for message in everything if message.partition() == partition]
        assert offsets == list(range(len(offsets))), f"partition {partition} offsets are not dense from 0"
