"""Just enough of the Kafka wire protocol, written by hand, to probe a broker directly.

The real clients hide framing; these helpers let a test send exactly the bytes it wants
(an oversized length, garbage, an ApiVersions request at a version nobody supports) and
read the raw answer. Only the request and response shapes the tests use are here:

    frame    = length:int32 payload                      (length excludes itself)
    header v1 = api_key:int16 api_version:int16 correlation_id:int32 client_id:string16
    header v2 = header v1 + tagged fields (one 0x00 byte when there are none)
    ApiVersions response (always read as v0, as Kafka answers an unsupported version):
      correlation_id:int32 error_code:int16 [api_key:int16 min:int16 max:int16]:int32 count
"""

import socket
import struct
import time

API_KEY_METADATA = 3
API_KEY_API_VERSIONS = 18
ERROR_NONE = 0
ERROR_UNSUPPORTED_VERSION = 35

# A response larger than this is not something these probes ever expect.
RESPONSE_BYTES_MAX = 16 * 1024 * 1024


class ConnectionClosed(Exception):
    """The broker closed the connection (or reset it) instead of answering."""


def connect(host, port, timeout_s=10.0):
    sock = socket.create_connection((host, port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def encode_string16(text):
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def encode_compact_string(text):
    data = text.encode()
    # Compact strings store length + 1 as an unsigned varint; these are always short.
    assert len(data) + 1 < 128
    return bytes([len(data) + 1]) + data


def request_header(api_key, api_version, correlation_id, client_id="skiff-tests", flexible=False):
    header = struct.pack(">hhi", api_key, api_version, correlation_id) + encode_string16(client_id)
    if flexible:
        header += b"\x00"  # no tagged fields
    return header


def frame(payload):
    return struct.pack(">i", len(payload)) + payload


def api_versions_request(api_version, correlation_id):
    """ApiVersions at any version; from v3 on the header and body are flexible."""
    flexible = api_version >= 3
    body = b""
    if flexible:
        body = encode_compact_string("skiff-tests") + encode_compact_string("0") + b"\x00"
    return frame(request_header(API_KEY_API_VERSIONS, api_version, correlation_id, flexible=flexible) + body)


def metadata_request_v0(correlation_id):
    # An empty topic array in v0 means "all topics".
    body = struct.pack(">i", 0)
    return frame(request_header(API_KEY_METADATA, 0, correlation_id) + body)


def recv_exactly(sock, count):
    chunks = []
    remaining = count
    while remaining:
        try:
            chunk = sock.recv(min(remaining, 1 << 20))
        except ConnectionResetError as error:
            raise ConnectionClosed(str(error)) from error
        if not chunk:
            raise ConnectionClosed("connection closed by the broker")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock):
    (length,) = struct.unpack(">i", recv_exactly(sock, 4))
    assert 0 <= length <= RESPONSE_BYTES_MAX, f"response length {length} is out of range"
    return recv_exactly(sock, length)


def parse_api_versions_v0(payload):
    """Returns (correlation_id, error_code, {api_key: (min, max)})."""
    correlation_id, error_code, count = struct.unpack_from(">ihi", payload, 0)
    assert 0 <= count < 1000, f"api key count {count} is out of range"
    offset = 10
    ranges = {}
    for _ in range(count):
        api_key, version_min, version_max = struct.unpack_from(">hhh", payload, offset)
        ranges[api_key] = (version_min, version_max)
        offset += 6
    return correlation_id, error_code, ranges


def api_versions(host, port, api_version=0, timeout_s=10.0):
    """Sends one ApiVersions request and returns (error_code, {api_key: (min, max)}).

    Versions 0 to 2 and the unsupported-version error answer share the v0 layout up to
    the key array, which is all this reads.
    """
    assert api_version <= 2 or api_version > 4, "v3/v4 use compact arrays; not parsed here"
    with connect(host, port, timeout_s) as sock:
        sock.sendall(api_versions_request(api_version, correlation_id=7))
        correlation_id, error_code, ranges = parse_api_versions_v0(recv_frame(sock))
    assert correlation_id == 7, f"correlation id {correlation_id} != 7"
    return error_code, ranges


def metadata_broker_count(host, port, timeout_s=10.0):
    """Sends Metadata v0 and returns the number of brokers it lists."""
    with connect(host, port, timeout_s) as sock:
        sock.sendall(metadata_request_v0(correlation_id=8))
        payload = recv_frame(sock)
    correlation_id, broker_count = struct.unpack_from(">ii", payload, 0)
    assert correlation_id == 8, f"correlation id {correlation_id} != 8"
    return broker_count


def partition_leaders(host, port, topic, timeout_s=10.0):
    """Asks this one broker (Metadata v0) about one topic: {partition: (leader, replicas)}.

    Client libraries send metadata requests to whichever broker they like; this asks the
    broker named, so tests can compare what each broker says."""
    body = struct.pack(">i", 1) + encode_string16(topic)
    with connect(host, port, timeout_s) as sock:
        sock.sendall(frame(request_header(API_KEY_METADATA, 0, 9) + body))
        payload = recv_frame(sock)
    offset = 0

    def take(fmt):
        nonlocal offset
        values = struct.unpack_from(fmt, payload, offset)
        offset += struct.calcsize(fmt)
        return values

    def take_string():
        nonlocal offset
        (length,) = take(">h")
        text = payload[offset:offset + max(length, 0)].decode()
        offset += max(length, 0)
        return text

    (correlation_id,) = take(">i")
    assert correlation_id == 9, f"correlation id {correlation_id} != 9"
    (broker_count,) = take(">i")
    for _ in range(broker_count):
        take(">i")
        take_string()
        take(">i")
    (topic_count,) = take(">i")
    found = {}
    for _ in range(topic_count):
        (error,) = take(">h")
        name = take_string()
        (partition_count,) = take(">i")
        for _ in range(partition_count):
            _error, partition, leader = take(">hii")
            (replica_count,) = take(">i")
            replicas = take(f">{replica_count}i")
            (isr_count,) = take(">i")
            take(f">{isr_count}i")
            if name == topic and error == 0:
                found[partition] = (leader, tuple(replicas))
    return found


def wait_closed(sock, timeout_s):
    """Reads until the broker closes the connection. Returns the bytes it sent first.

    Raises TimeoutError if the connection is still open after `timeout_s`.
    """
    deadline = time.monotonic() + timeout_s
    received = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"connection still open after {timeout_s}s")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return bytes(received)
        except socket.timeout as error:
            raise TimeoutError(f"connection still open after {timeout_s}s") from error
        if not chunk:
            return bytes(received)
        received += chunk
