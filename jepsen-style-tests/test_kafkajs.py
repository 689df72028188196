"""kafkajs, the pure-JavaScript Kafka client, against the real binary: topic administration
(DeleteRecords too), an idempotent producer, and a consumer group of two that rebalances when
one member leaves, commits, and resumes from its committed offsets after a broker restart.
kafkajs speaks older protocol versions than librdkafka (Produce v7, Fetch v11, JoinGroup v5)
and implements the group protocol itself, so it exercises paths the other clients do not.

The client runs as `node kafkajs/client.js`, one operation per process; `scripts/test-all`
installs Node.js and the pinned kafkajs (`kafkajs/package-lock.json`) when missing."""

import json
import os
import subprocess
from pathlib import Path

CLIENT = Path(__file__).parent / "kafkajs" / "client.js"
OPERATION_TIMEOUT_S = 120


def kafkajs(*args):
    environment = {**os.environ, "KAFKAJS_NO_PARTITIONER_WARNING": "1"}
    result = subprocess.run(["node", str(CLIENT), *args], capture_output=True, text=True,
                            timeout=OPERATION_TIMEOUT_S, env=environment)
    assert result.returncode == 0, f"kafkajs {args[0]} failed:\n{result.stderr[-4000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_kafkajs_administers_topics(broker):
    result = kafkajs("admin", broker.bootstrap, "kafkajs-admin")
    assert result["created"]
    assert result["before"] == {"value": "86400000", "isDefault": False}
    assert result["after"] == {"value": "3600000", "isDefault": False}, "AlterConfigs did not apply"
    assert result["partitions"] == 4 and result["offsets"] == 4
    assert result["trimmed"] == {"low": "2", "high": "5"}, "DeleteRecords did not move the log start"
    assert result["deleted"]


def test_kafkajs_group_rebalances_commits_and_resumes_after_a_restart(broker):
    first = kafkajs("group-of-two", broker.bootstrap, "kafkajs-orders", "kafkajs-group", "1000", "300", "first")
    assert sorted(first["values"]) == sorted(f"first-{i}" for i in range(1000))
    assert first["duplicates"] == 0
    assert first["left"], "the second member never left"
    assert first["byMember"]["leaves"] > 0, "the member that left read nothing before it left"
    assert first["assigned"]["stays"] == [0, 1], "the remaining member did not take over both partitions"

    broker.restart()
    assert kafkajs("produce", broker.bootstrap, "kafkajs-orders", "500", "second") == {"acknowledged": 500}
    resumed = kafkajs("consume", broker.bootstrap, "kafkajs-orders", "kafkajs-group", "500")
    # Only the new values: the group resumed from its committed offsets, so nothing it had
    # read (and committed) before the restart comes again, and nothing new is missing.
    assert sorted(resumed["values"]) == sorted(f"second-{i}" for i in range(500))
    assert resumed["duplicates"] == 0
