"""ListOffsets through confluent-kafka's `list_offsets` against the real binary: earliest,
latest, by timestamp, and the record with the largest timestamp (`OffsetSpec.max_timestamp`,
ListOffsets v7), with records whose timestamps producers set out of order; after DeleteRecords,
only the records from the new log start count."""

from confluent_kafka import TopicPartition
from confluent_kafka.admin import OffsetSpec

import clients

BASE_MS = 1_700_000_000_000
# The timestamp of each record, by offset: out of order, the largest twice (offsets 3 and 6).
TIMESTAMPS = [BASE_MS + 10, BASE_MS + 40, BASE_MS + 20, BASE_MS + 90, BASE_MS + 30,
              BASE_MS + 50, BASE_MS + 90, BASE_MS + 70]


def list_offset(admin, topic, spec):
    partition = TopicPartition(topic, 0)
    futures = admin.list_offsets({partition: spec}, request_timeout=clients.ADMIN_TIMEOUT_S)
    found = futures[partition].result(timeout=clients.ADMIN_TIMEOUT_S)
    return found.offset, found.timestamp


def test_list_offsets_finds_the_largest_timestamp_and_honours_the_log_start(broker):
    admin = clients.create_topic(broker, "stamped", 1)
    producer = clients.producer(broker, **{"linger.ms": 0})
    delivered = []
    for index, timestamp in enumerate(TIMESTAMPS):
        producer.produce("stamped", value=f"record-{index}", partition=0, timestamp=timestamp,
                         on_delivery=lambda error, message: delivered.append((error, message.offset())))
        # One batch per record: each is acknowledged before the next is sent.
        producer.flush(clients.TRANSFER_TIMEOUT_S)
    assert delivered == [(None, offset) for offset in range(len(TIMESTAMPS))]

    assert list_offset(admin, "stamped", OffsetSpec.earliest())[0] == 0
    assert list_offset(admin, "stamped", OffsetSpec.latest())[0] == len(TIMESTAMPS)
    # The first record at or after BASE_MS + 45 is offset 3 (BASE_MS + 90).
    assert list_offset(admin, "stamped", OffsetSpec.for_timestamp(BASE_MS + 45)) == (3, BASE_MS + 90)
    # The largest timestamp, at its earliest offset.
    assert list_offset(admin, "stamped", OffsetSpec.max_timestamp()) == (3, BASE_MS + 90)

    # After deleting the records below offset 4, the largest from there is offset 6.
    futures = admin.delete_records([TopicPartition("stamped", 0, 4)], request_timeout=clients.ADMIN_TIMEOUT_S)
    [future] = futures.values()
    assert future.result(timeout=clients.ADMIN_TIMEOUT_S).low_watermark == 4
    assert list_offset(admin, "stamped", OffsetSpec.earliest())[0] == 4
    assert list_offset(admin, "stamped", OffsetSpec.max_timestamp()) == (6, BASE_MS + 90)
    assert list_offset(admin, "stamped", OffsetSpec.for_timestamp(BASE_MS + 15)) == (4, BASE_MS + 30)
