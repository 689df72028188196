"""Hostile bytes on the wire: the broker must close the offending connection, keep
serving everyone else, and answer an unknown ApiVersions version the way Kafka does."""

import struct

import pytest

import kafka_wire

# How long the broker may take to notice a bad frame and close the connection.
CLOSE_TIMEOUT_S = 10.0


def assert_still_serves(broker):
    error_code, ranges = kafka_wire.api_versions(broker.host, broker.port, api_version=0)
    assert error_code == kafka_wire.ERROR_NONE
    assert kafka_wire.API_KEY_API_VERSIONS in ranges
    assert kafka_wire.metadata_broker_count(broker.host, broker.port) == 1
    assert broker.process.poll() is None, "the broker process exited"


def test_huge_frame_length_closes_connection(broker):
    with kafka_wire.connect(broker.host, broker.port) as sock:
        # 200 MiB: far beyond any sane request (Kafka's socket.request.max.bytes is
        # 100 MiB). The broker must refuse it from the length alone, not allocate it.
        sock.sendall(struct.pack(">i", 200 * 1024 * 1024) + b"\x00\x12\x00\x00" + b"\x00" * 60)
        kafka_wire.wait_closed(sock, CLOSE_TIMEOUT_S)
    assert_still_serves(broker)


@pytest.mark.parametrize(
    "payload",
    [
        # A negative length prefix.
        b"\xde\xad\xbe\xef" * 16,
        # A plausible length followed by a header naming no API (key 0x7a7a).
        struct.pack(">i", 28) + b"zzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        # A well-framed request whose client id length runs past the end of the frame.
        struct.pack(">i", 12) + struct.pack(">hhih", 18, 0, 1, 500) + b"ab",
    ],
    ids=["negative-length", "unknown-api-key", "truncated-header"],
)
def test_garbage_closes_connection(broker, payload):
    with kafka_wire.connect(broker.host, broker.port) as sock:
        sock.sendall(payload)
        kafka_wire.wait_closed(sock, CLOSE_TIMEOUT_S)
    assert_still_serves(broker)


def test_connection_closed_mid_frame_does_not_hurt(broker):
    # Half a frame, then the client goes away: the broker drops its partial read.
    with kafka_wire.connect(broker.host, broker.port) as sock:
        sock.sendall(struct.pack(">i", 1000) + b"\x00\x12")
    assert_still_serves(broker)


def test_api_versions_unsupported_version(broker):
    # Kafka answers an ApiVersions request it cannot parse with error 35 and, in the v0
    # layout every client can read, the range of ApiVersions versions it does support,
    # so the client can retry with one of them.
    error_code, ranges = kafka_wire.api_versions(broker.host, broker.port, api_version=99)
    assert error_code == kafka_wire.ERROR_UNSUPPORTED_VERSION, f"error code {error_code}"
    assert kafka_wire.API_KEY_API_VERSIONS in ranges, ranges
    version_min, version_max = ranges[kafka_wire.API_KEY_API_VERSIONS]
    assert version_min == 0 and 3 <= version_max < 99, ranges[kafka_wire.API_KEY_API_VERSIONS]
    assert_still_serves(broker)
