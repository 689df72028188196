"""kcat (librdkafka's command-line client) against the real broker.

A hundred thousand lines go in through `kcat -P` and must come back through `kcat -C`
exactly: same count, same content, same order within the partition, offsets 0..n-1.
"""

import json
import subprocess

MESSAGE_COUNT = 100_000
KCAT_TIMEOUT_S = 180


def run_kcat(args, **kwargs):
    return subprocess.run(
        ["kcat", *args],
        capture_output=True,
        timeout=KCAT_TIMEOUT_S,
        **kwargs,
    )


def test_kcat_produce_then_consume_100k(broker, tmp_path):
    topic = "kcat-100k"
    lines = [f"message-{index:06d}-" + "x" * (index % 97) for index in range(MESSAGE_COUNT)]
    input_path = tmp_path / "input.txt"
    input_path.write_text("\n".join(lines) + "\n")

    produced = run_kcat(
        [
            "-P", "-b", broker.bootstrap, "-t", topic,
            # Every line must be acknowledged by the broker itself, not just queued.
            "-X", "acks=all",
            "-X", "linger.ms=5",
            "-X", "message.timeout.ms=60000",
            # -l: one message per line of the file (rather than one per file).
            "-l", str(input_path),
        ]
    )
    assert produced.returncode == 0, f"kcat -P failed: {produced.stderr.decode(errors='replace')}"
    assert b"failed" not in produced.stderr.lower(), produced.stderr.decode(errors="replace")

    # -e stops at the end of the partition; -f prints partition and offset with each value.
    consumed = run_kcat(
        [
            "-C", "-b", broker.bootstrap, "-t", topic,
            "-o", "beginning", "-e", "-q",
            "-f", "%p\t%o\t%s\n",
        ]
    )
    assert consumed.returncode == 0, f"kcat -C failed: {consumed.stderr.decode(errors='replace')}"
    records = [line.split("\t", 2) for line in consumed.stdout.decode().splitlines()]

    assert len(records) == MESSAGE_COUNT, f"consumed {len(records)} of {MESSAGE_COUNT}"
    assert {partition for partition, _, _ in records} == {"0"}, "auto-created topic should have 1 partition"
    offsets = [int(offset) for _, offset, _ in records]
    assert offsets == list(range(MESSAGE_COUNT)), "offsets are not 0..n-1 in order"
    values = [value for _, _, value in records]
    first_difference = next((i for i, (a, b) in enumerate(zip(values, lines)) if a != b), None)
    assert first_difference is None, (
        f"message {first_difference} differs: {values[first_difference]!r} != {lines[first_difference]!r}"
    )


def test_kcat_metadata_listing(broker):
    topic = "kcat-listed"
    # Producing one message auto-creates the topic.
    produced = run_kcat(["-P", "-b", broker.bootstrap, "-t", topic], input=b"hello\n")
    assert produced.returncode == 0, produced.stderr.decode(errors="replace")

    listing = run_kcat(["-L", "-b", broker.bootstrap, "-J"])
    assert listing.returncode == 0, listing.stderr.decode(errors="replace")
    metadata = json.loads(listing.stdout)

    brokers = metadata["brokers"]
    assert len(brokers) == 1, brokers
    assert brokers[0]["name"] == broker.bootstrap, brokers
    topics = {entry["topic"]: entry for entry in metadata["topics"]}
    assert topic in topics, sorted(topics)
    partitions = topics[topic]["partitions"]
    assert len(partitions) == 1, partitions
    assert partitions[0]["leader"] == brokers[0]["id"], partitions

    # The plain (human) listing works too.
    plain = run_kcat(["-L", "-b", broker.bootstrap, "-t", topic])
    assert plain.returncode == 0, plain.stderr.decode(errors="replace")
    assert f'topic "{topic}" with 1 partitions' in plain.stdout.decode(), plain.stdout.decode()
