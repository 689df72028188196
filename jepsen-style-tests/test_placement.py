"""Replication factors below the cluster size: five brokers, topics with three replicas.

  1. five `skiff` processes form a cluster; a topic of 10 partitions is created with
     replication factor 3, another with the default (-1), another with a manual assignment;
  2. every broker, asked on its own, reports the same replicas and leader for each partition,
     including brokers that hold no replica of it;
  3. each broker keeps data only for the partitions placed on it;
  4. an idempotent acks=all producer writes in the background and the leader of partition 0
     is killed with SIGKILL: partition 0 fails over to one of its two other replicas.

Checked: placement (3 distinct replicas per partition, leaders and replicas spread evenly),
agreement between brokers, impossible replication factors and min.insync.replicas refused
with Kafka's error codes, and no acknowledged value lost or duplicated across the failover.
"""

import signal

from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic

import clients
import kafka_wire
from conftest import Cluster
from test_cluster import (
    FAILOVER_TIMEOUT_S,
    assert_each_acknowledged_once_where_acknowledged,
    read_all,
    wait_until,
)

BROKERS = 5
PARTITIONS = 10
REPLICAS = 3
BEFORE_KILL = 3000
AFTER_KILL = 300


def placement_seen_by(broker, topic):
    """{partition: (leader, replicas)} as this one broker reports it."""
    return kafka_wire.partition_leaders(broker.host, broker.port, topic)


def create(admin, topic):
    future = admin.create_topics([topic])[topic.topic]
    try:
        future.result(timeout=clients.ADMIN_TIMEOUT_S)
        return None
    except KafkaException as error:
        return error.args[0].name()


def test_three_replicas_on_five_brokers(cluster_factory):
    cluster = cluster_factory(BROKERS)
    admin = clients.admin(cluster)
    assert create(admin, NewTopic("placed", num_partitions=PARTITIONS, replication_factor=REPLICAS)) is None
    assert create(admin, NewTopic("defaulted", num_partitions=2)) is None
    assert create(admin, NewTopic("too-wide", num_partitions=1, replication_factor=6)) == "INVALID_REPLICATION_FACTOR"
    # acks=all commits on a majority of three: two.
    strict = NewTopic("too-strict", num_partitions=1, replication_factor=3, config={"min.insync.replicas": "3"})
    assert create(admin, strict) == "INVALID_CONFIG"
    met = NewTopic("min-two", num_partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})
    assert create(admin, met) is None
    # A manual assignment is kept as given, preferred leader first.
    assert create(admin, NewTopic("manual", num_partitions=3, replica_assignment=[[4, 5], [5, 1], [2, 3]])) is None
    for broken in ([[1, 1]], [[1, 9]], [[1, 2], [3]]):
        assert create(admin, NewTopic("broken", num_partitions=len(broken), replica_assignment=broken)) == "INVALID_REPLICA_ASSIGNMENT", broken
    # The broker answering may not have applied the new topic yet: an empty view is no answer.
    def manual_led():
        view = placement_seen_by(cluster.brokers[0], "manual")
        return len(view) == 3 and all(leader >= 0 for leader, _ in view.values())
    wait_until(manual_led, FAILOVER_TIMEOUT_S, "leaders for the manually assigned topic")
    manual = placement_seen_by(cluster.brokers[0], "manual")
    assert [manual[p][1] for p in range(3)] == [(4, 5), (5, 1), (2, 3)], manual

    # Every broker reports every partition with a live leader, and they all agree: brokers
    # without a replica name the leader their peers announced.
    def agreed():
        views = [placement_seen_by(broker, "placed") for broker in cluster.brokers]
        return (len(views[0]) == PARTITIONS
                and all(leader >= 0 for leader, _ in views[0].values())
                and all(view == views[0] for view in views))
    wait_until(agreed, FAILOVER_TIMEOUT_S, "all brokers to agree on every partition's leader")
    placement = placement_seen_by(cluster.brokers[0], "placed")
    hosted = {broker.node_id: 0 for broker in cluster.brokers}
    for leader, replicas in placement.values():
        assert len(set(replicas)) == REPLICAS, replicas
        assert leader in replicas
        for replica in replicas:
            hosted[replica] += 1
    assert sorted(hosted.values()) == [PARTITIONS * REPLICAS // BROKERS] * BROKERS, hosted
    preferred = sorted(replicas[0] for _, replicas in placement.values())
    assert preferred == sorted(list(range(1, BROKERS + 1)) * (PARTITIONS // BROKERS))
    defaulted = placement_seen_by(cluster.brokers[0], "defaulted")
    assert all(len(replicas) == 3 for _, replicas in defaulted.values()), defaulted

    # Data lives only where the metadata placed it: `placed-<partition>.g<group>` directories.
    for broker in cluster.brokers:
        directories = {d.name.split(".g")[0] for d in broker.data_dir.iterdir() if d.name.startswith("placed-")}
        expected = {f"placed-{p}" for p, (_, replicas) in placement.items() if broker.node_id in replicas}
        assert directories == expected, (broker.node_id, directories, expected)

    producer = clients.BackgroundProducer(
        cluster, "placed", "value", **{"enable.idempotence": True, "linger.ms": 2, "debug": "eos"})
    producer.start()
    try:
        wait_until(lambda: producer.acknowledged_count() >= BEFORE_KILL, clients.TRANSFER_TIMEOUT_S,
                   "acknowledgements before the kill")
        leader, replicas = placement_seen_by(cluster.brokers[0], "placed")[0]
        victim = cluster.member(leader)
        victim.stop(signal.SIGKILL)
        survivors = Cluster([b for b in cluster.brokers if b is not victim])
        # Asked of a broker that holds no replica of partition 0, which learns the new
        # leader from the leader's announcements.
        bystander = next(b for b in survivors.brokers if b.node_id not in replicas)
        at_kill = producer.acknowledged_count(partition=0)
        wait_until(lambda: producer.acknowledged_count(partition=0) >= at_kill + AFTER_KILL,
                   FAILOVER_TIMEOUT_S, "acknowledgements on the killed leader's partition")
        wait_until(lambda: placement_seen_by(bystander, "placed").get(0, (-1,))[0] not in (-1, leader),
                   FAILOVER_TIMEOUT_S, "metadata naming a new leader")
        new_leader = placement_seen_by(bystander, "placed")[0][0]
        assert new_leader in replicas, (new_leader, replicas)
    finally:
        producer.stop()

    assert not producer.failed, f"failed deliveries: {list(producer.failed.items())[:5]}"
    received = read_all(survivors, "placed", len(producer.acknowledged), partitions=PARTITIONS)
    assert_each_acknowledged_once_where_acknowledged(producer.acknowledged, received)
