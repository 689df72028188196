"""Changing a topic's settings while it runs, against the real binary: IncrementalAlterConfigs
(confluent-kafka's `incremental_alter_configs`, kafka-python's `alter_configs`) and
AlterConfigs (confluent-kafka's `alter_configs`). The new settings take effect on the running
partitions, show in DescribeConfigs and survive a restart; on a cluster, every replica applies
them."""

import glob
import os
import signal
import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewTopic, ResourceType)
from kafka.admin import ConfigResource as KafkaPythonConfigResource
from kafka.admin import ConfigResourceType, KafkaAdminClient

import clients

RETENTION_CHECK = ("--set", "log.retention.check.interval.ms=300")
SMALL_BATCHES = {"batch.size": 8192, "linger.ms": 5}
WAIT_S = 30


def wait_until(condition, what, timeout_s=WAIT_S):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def describe(admin, topic):
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([resource])[resource].result(timeout=clients.ADMIN_TIMEOUT_S)


def alter(admin, resource, entries):
    return admin.incremental_alter_configs([ConfigResource(resource[0], resource[1], incremental_configs=entries)])


def alter_topic(admin, topic, entries):
    futures = alter(admin, (ResourceType.TOPIC, topic), entries)
    for future in futures.values():
        future.result(timeout=clients.ADMIN_TIMEOUT_S)


def segment_files(directory):
    return sorted(glob.glob(os.path.join(directory, "*.log")))


def produce_kilobytes(target, topic, count, prefix):
    producer = clients.producer(target, **SMALL_BATCHES)
    acknowledged, failed = clients.produce_all(
        producer, topic, [(None, f"{prefix}-{i:06d}-" + "x" * 1000) for i in range(count)])
    assert not failed and len(acknowledged) == count
    return acknowledged


def watermarks(target, topic):
    return clients.watermarks(target, topic, WAIT_S)


def log_start(target, topic):
    return watermarks(target, topic)[0]


def test_settings_change_on_a_running_topic_and_survive_a_restart(broker_factory):
    broker = broker_factory(*RETENTION_CHECK)
    admin = clients.create_topic(broker, "resized", 1)
    directory = os.path.join(broker.data_dir, "resized-0")
    produce_kilobytes(broker, "resized", 200, "before")
    assert len(segment_files(directory)) == 1, "the default segment.bytes holds it all in one segment"

    # Smaller segments and a size limit: later writes roll every 16 KiB and retention deletes
    # the oldest segments, the first one (written under the old settings) included.
    alter_topic(admin, "resized", [
        ConfigEntry("segment.bytes", "16384", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.bytes", "65536", incremental_operation=AlterConfigOpType.SET),
    ])
    configs = describe(admin, "resized")
    for name, value in [("segment.bytes", "16384"), ("retention.bytes", "65536")]:
        assert configs[name].value == value
        assert configs[name].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    produce_kilobytes(broker, "resized", 300, "after")
    wait_until(lambda: log_start(broker, "resized") >= 200, "retention to delete the segments it no longer keeps")
    wait_until(lambda: len(segment_files(directory)) <= 8, "segments beyond retention.bytes to go")

    # DELETE puts a setting back to the broker's default.
    alter_topic(admin, "resized", [
        ConfigEntry("retention.bytes", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    configs = describe(admin, "resized")
    assert configs["retention.bytes"].value == "-1"
    assert configs["retention.bytes"].source == ConfigSource.DEFAULT_CONFIG.value

    # Refused, with Kafka's error codes: an unknown setting, a bad value, a broker setting.
    for entries in ([ConfigEntry("no.such.setting", "1", incremental_operation=AlterConfigOpType.SET)],
                    [ConfigEntry("segment.bytes", "12", incremental_operation=AlterConfigOpType.SET)],
                    [ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.APPEND)]):
        with pytest.raises(KafkaException) as refused:
            alter_topic(admin, "resized", entries)
        assert refused.value.args[0].code() == KafkaError.INVALID_CONFIG, entries
    futures = alter(admin, (ResourceType.BROKER, "1"), [
        ConfigEntry("log.retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    for future in futures.values():
        with pytest.raises(KafkaException) as refused:
            future.result(timeout=clients.ADMIN_TIMEOUT_S)
        assert refused.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert describe(admin, "resized")["segment.bytes"].value == "16384", "a refused change changes nothing"
    del admin

    broker.restart()
    admin = clients.admin(broker)
    configs = describe(admin, "resized")
    assert configs["segment.bytes"].value == "16384"
    assert configs["segment.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    before = len(segment_files(directory))
    produce_kilobytes(broker, "resized", 100, "restarted")
    assert len(segment_files(directory)) >= before + 4, "segment.bytes still applies after the restart"


# The legacy API is what this test is about.
@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")
def test_alter_configs_replaces_the_whole_set_and_kafka_python_alters_incrementally(broker):
    clients.create_topic(broker, "replaced", 1)
    admin = clients.admin(broker)
    alter_topic(admin, "replaced", [
        ConfigEntry("segment.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])

    # AlterConfigs (confluent-kafka's legacy alter_configs) is not incremental: a setting it
    # does not list goes back to the default.
    resource = ConfigResource(ResourceType.TOPIC, "replaced", set_config={"retention.ms": "120000"})
    admin.alter_configs([resource])[resource].result(timeout=clients.ADMIN_TIMEOUT_S)
    configs = describe(admin, "replaced")
    assert configs["retention.ms"].value == "120000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["segment.ms"].source == ConfigSource.DEFAULT_CONFIG.value

    # kafka-python's alter_configs sends IncrementalAlterConfigs to a broker that has it.
    kafka_python = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        kafka_python.alter_configs([
            KafkaPythonConfigResource(ConfigResourceType.TOPIC, "replaced", configs={"max.message.bytes": "4096"})])
    finally:
        kafka_python.close()
    configs = describe(admin, "replaced")
    assert configs["max.message.bytes"].value == "4096"
    assert configs["retention.ms"].value == "120000", "an incremental change keeps the other overrides"

    # The new max.message.bytes applies to the running partition.
    producer = clients.producer(broker)
    acknowledged, failed = clients.produce_all(producer, "replaced", [(None, "y" * 8000)])
    assert not acknowledged, "a batch over the new max.message.bytes was accepted"
    assert [error.code() for error in failed.values()] == [KafkaError.MSG_SIZE_TOO_LARGE]


def test_a_cluster_applies_new_settings_on_every_replica(cluster_factory):
    cluster = cluster_factory(3, *RETENTION_CHECK)
    admin = clients.admin(cluster)
    admin.create_topics([NewTopic("shared", num_partitions=1, replication_factor=3)])[
        "shared"].result(timeout=clients.ADMIN_TIMEOUT_S)
    clients.wait_for_partitions(admin, "shared", 1)
    alter_topic(admin, "shared", [
        ConfigEntry("segment.bytes", "16384", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.bytes", "65536", incremental_operation=AlterConfigOpType.SET),
    ])
    produce_kilobytes(cluster, "shared", 400, "replicated")

    def replica_directory(broker):
        found = glob.glob(os.path.join(broker.data_dir, "shared-0.g*"))
        assert len(found) == 1, found
        return found[0]

    for broker in cluster.brokers:
        # Every replica rolls at the new size and deletes what retention no longer keeps.
        wait_until(lambda: 4 <= len(segment_files(replica_directory(broker))) <= 8,
                   f"node {broker.node_id} to keep only the segments retention.bytes allows")

    # A restarted broker rebuilds the settings from the metadata log: it too rolls the
    # writes made after its restart at 16 KiB (at the default size they would all go into
    # one segment).
    restarted = cluster.brokers[0]
    restarted.restart(signal.SIGKILL)
    configs = describe(clients.admin(cluster), "shared")
    assert configs["segment.bytes"].value == "16384"
    written_before = watermarks(cluster, "shared")[1]
    produce_kilobytes(cluster, "shared", 100, "after-restart")

    def rolled_after_restart():
        files = segment_files(replica_directory(restarted))
        newest = int(os.path.basename(files[-1]).split(".")[0])
        return newest > written_before and all(os.path.getsize(f) <= 16384 for f in files)

    wait_until(rolled_after_restart, "the restarted replica to roll the new writes at 16 KiB")
