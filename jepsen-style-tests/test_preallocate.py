"""Preallocated segments (`log.preallocate`, topic `preallocate`, both off by default) against
the real binary: the next segment's file is written with zeros ahead of the roll and renamed
into place; a sealed segment's file ends with its last batch; a SIGKILL leaves the active
segment's zeros on disk, and the restart cuts them and keeps every acknowledged message."""

import glob
import os
import signal
import struct
import time

from confluent_kafka import TopicPartition
from confluent_kafka.admin import ConfigResource, NewTopic, ResourceType

import clients

SEGMENT_BYTES = 262144
SMALL_SEGMENTS = ("--set", f"log.segment.bytes={SEGMENT_BYTES}")
PREALLOCATE = ("--set", "log.preallocate=true")
SPARE = "spare.log.tmp"
# The 12 bytes before a v2 batch's own length field: base offset (8) and length (4).
BATCH_PREFIX = struct.Struct(">qi")
WAIT_S = 30


def batches_end(path):
    """Where the batches of a segment file end: the first position that does not start a
    batch (the file's end, or the first of the zeros after the last batch)."""
    with open(path, "rb") as segment:
        data = segment.read()
    position = 0
    while position + BATCH_PREFIX.size <= len(data):
        _base_offset, length = BATCH_PREFIX.unpack_from(data, position)
        if length <= 0 or position + BATCH_PREFIX.size + length > len(data):
            break
        position += BATCH_PREFIX.size + length
    return position, len(data)


def segment_files(directory):
    return sorted(glob.glob(os.path.join(directory, "*.log")))


def produce(broker, topic, count, prefix):
    return clients.produce_numbered(broker, topic, count, prefix, 1000, **{"batch.size": 16384, "linger.ms": 2})


def wait_until(condition, what):
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def active_is_preallocated(directory):
    end, length = batches_end(segment_files(directory)[-1])
    return length == SEGMENT_BYTES and end < length


def produce_until_active_is_preallocated(broker, topic, directory):
    """Produces a little at a time until the active segment is a spare renamed into place.
    Spares are written in the background, so the segment in use when a produce ends may still
    be one that grows its file; the next roll after a spare is ready takes it."""
    acknowledged = {}
    deadline = time.monotonic() + WAIT_S
    while not active_is_preallocated(directory):
        assert time.monotonic() < deadline, "the active segment never became a preallocated one"
        acknowledged.update(produce(broker, topic, 20, f"until-{len(acknowledged)}"))
    return acknowledged


def read_all(broker, topic):
    reader = clients.consumer(broker, f"{topic}-reader")
    reader.assign([TopicPartition(topic, 0, 0)])
    low, high = reader.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    received = clients.consume_exactly(reader, high - low)
    reader.close()
    return [message.value().decode() for message in received]


def preallocate_setting(admin, topic):
    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=clients.ADMIN_TIMEOUT_S)
    return configs["preallocate"].value


def test_segments_are_preallocated_cut_when_sealed_and_recovered_after_sigkill(broker_factory):
    broker = broker_factory(*SMALL_SEGMENTS, *PREALLOCATE)
    admin = clients.create_topic(broker, "pre", 1)
    assert preallocate_setting(admin, "pre") == "true"
    directory = os.path.join(broker.data_dir, "pre-0")

    # Half a segment in, a spare is written; the next roll renames it into place, so the
    # active segment's file is the spare's length, with zeros after its last batch. A segment
    # that grows its file is sealed early once a spare is ready.
    acknowledged = produce(broker, "pre", 500, "first")
    acknowledged.update(produce_until_active_is_preallocated(broker, "pre", directory))
    segments = segment_files(directory)
    assert len(segments) >= 3
    end, length = batches_end(segments[-1])
    with open(segments[-1], "rb") as active:
        active.seek(end)
        assert set(active.read()) == {0}, "after the last batch, only zeros"
    for sealed in segments[:-1]:
        end, length = batches_end(sealed)
        assert end == length, f"{sealed} holds {length - end} bytes after its last batch"

    # SIGKILL: no clean close cuts the zeros. The restart does, and keeps every message.
    broker.restart(signal.SIGKILL)
    assert not os.path.exists(os.path.join(directory, SPARE)), "a leftover spare is removed"
    for segment in segment_files(directory):
        end, length = batches_end(segment)
        assert end == length, f"{segment} still holds {length - end} bytes after its last batch"
    with open(broker.log_path, errors="replace") as log:
        assert "cutting the zeros after the last batch" in log.read()
    values = read_all(broker, "pre")
    assert sorted(values) == sorted(acknowledged), "every acknowledged message, once"
    assert values == sorted(values, key=lambda value: acknowledged[value][1]), "in offset order"

    # Appends after the restart go on, and a clean stop leaves no zeros either.
    acknowledged.update(produce(broker, "pre", 300, "third"))
    broker.restart(signal.SIGTERM)
    for segment in segment_files(directory):
        end, length = batches_end(segment)
        assert end == length, f"{segment} holds {length - end} bytes after a clean stop"
    assert sorted(read_all(broker, "pre")) == sorted(acknowledged)


def test_preallocation_off_by_default_and_on_for_one_topic(broker_factory):
    broker = broker_factory(*SMALL_SEGMENTS)
    admin = clients.create_topic(broker, "plain", 1)
    admin.create_topics([NewTopic("chosen", num_partitions=1, replication_factor=1,
                                  config={"preallocate": "true"})])["chosen"].result(
        timeout=clients.ADMIN_TIMEOUT_S)
    clients.wait_for_partitions(admin, "chosen", 1)
    assert preallocate_setting(admin, "plain") == "false"
    assert preallocate_setting(admin, "chosen") == "true"

    for topic in ("plain", "chosen"):
        produce(broker, topic, 500, "first")
    chosen = os.path.join(broker.data_dir, "chosen-0")
    produce_until_active_is_preallocated(broker, "chosen", chosen)

    plain = os.path.join(broker.data_dir, "plain-0")
    assert not os.path.exists(os.path.join(plain, SPARE))
    assert len(segment_files(plain)) >= 2
    for segment in segment_files(plain):
        end, length = batches_end(segment)
        assert end == length, "without preallocation a segment's file is its batches"
