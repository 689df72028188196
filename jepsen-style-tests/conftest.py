"""Fixtures that run the real `skiff` binary as a process for real Kafka clients.

Each test gets its own broker: a fresh temporary data directory, a free loopback port,
and `group.initial.rebalance.delay.ms=0` so consumer groups form without Kafka's default
three-second wait. The broker's stderr goes to a log file that is attached to the report
of a failing test. Tests can restart the broker on the same data directory, after a clean
SIGTERM or a SIGKILL, to check what survives.

    SKIFF_BIN   the broker binary (default: $CARGO_TARGET_DIR or target, then
                release/skiff; built with cargo when missing)
    RUST_LOG    passed through to the broker (default: info)
"""

import os
import pathlib
import signal
import socket
import subprocess
import time

import pytest

import kafka_wire

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

# How long a broker may take to accept connections and answer ApiVersions and Metadata
# after it is started (it may be recovering a log after SIGKILL).
BROKER_READY_TIMEOUT_S = 60.0
# How long a clean shutdown may take after SIGTERM before the test fails it.
BROKER_SHUTDOWN_TIMEOUT_S = 30.0
# How much of the broker log a failing test's report shows.
LOG_TAIL_LINES = 200
# A port chosen by `free_port` can be taken before the broker binds it (another process's
# outgoing connection may get it as its ephemeral port). A first start that fails that way
# is tried again on fresh ports, at most this many times in all.
FIRST_START_ATTEMPTS = 3


class PortTaken(RuntimeError):
    """The broker exited at start because one of its ports was already in use."""


def skiff_binary():
    configured = os.environ.get("SKIFF_BIN")
    if configured:
        path = pathlib.Path(configured)
        if not path.is_absolute():
            path = REPO_ROOT / path
        if not path.exists():
            pytest.exit(f"SKIFF_BIN={configured} does not exist", returncode=2)
        return path
    target_dir = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    path = target_dir / "release" / "skiff"
    if not path.exists():
        # Building here keeps `pytest jepsen-style-tests` usable on its own.
        subprocess.run(["cargo", "build", "--release", "-p", "skiff"], cwd=REPO_ROOT, check=True)
    return path


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Broker:
    """One `skiff` process and the directory and port it keeps across restarts."""

    def __init__(self, binary, data_dir, log_path, extra_args, node_id=1, port=None):
        self.node_id = node_id
        self.binary = binary
        self.data_dir = data_dir
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.process = None
        self.starts = 0

    @property
    def bootstrap(self):
        return f"{self.host}:{self.port}"

    def command(self):
        address = self.bootstrap
        return [
            str(self.binary),
            "--data-dir", str(self.data_dir),
            "--listeners", address,
            "--advertised-listeners", address,
            "--node-id", str(self.node_id),
            "--set", "group.initial.rebalance.delay.ms=0",
            *self.extra_args,
        ]

    def start(self):
        assert self.process is None or self.process.poll() is not None, "broker already running"
        self.starts += 1
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== start #{self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd=self.data_dir.parent,
            )
        self.wait_ready()
        return self

    def wait_ready(self):
        """Waits until the port accepts and ApiVersions and Metadata both answer."""
        deadline = time.monotonic() + BROKER_READY_TIMEOUT_S
        last_error = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_tail()
                kind = PortTaken if "Address already in use" in tail else RuntimeError
                raise kind(f"skiff exited with {self.process.returncode} while starting\n{tail}")
            try:
                error_code, ranges = kafka_wire.api_versions(self.host, self.port, api_version=0)
                if error_code == kafka_wire.ERROR_NONE and kafka_wire.API_KEY_API_VERSIONS in ranges:
                    if kafka_wire.metadata_broker_count(self.host, self.port) >= 1:
                        return
                last_error = f"ApiVersions error {error_code}"
            except Exception as error:  # noqa: BLE001 - any failure means "not ready yet"
                last_error = repr(error)
            time.sleep(0.1)
        raise RuntimeError(
            f"skiff not ready after {BROKER_READY_TIMEOUT_S}s (last error: {last_error})\n{self.log_tail()}"
        )

    def stop(self, sig=signal.SIGTERM):
        """Stops the broker with `sig` and returns its exit status.

        A SIGTERM that does not end the process in time is a failure (clean shutdown is
        part of the contract); the process is then killed so the test run can go on.
        """
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=BROKER_SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(
                f"skiff did not exit within {BROKER_SHUTDOWN_TIMEOUT_S}s of {sig.name}\n{self.log_tail()}"
            )

    def restart(self, sig=signal.SIGTERM):
        """Stops the broker with `sig` and starts it again on the same data dir and port."""
        status = self.stop(sig)
        self.start()
        return status

    def pid(self):
        return self.process.pid

    def log_tail(self, lines=LOG_TAIL_LINES):
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no broker log)"
        tail = text.splitlines()[-lines:]
        return f"---- {self.log_path} (last {len(tail)} lines) ----\n" + "\n".join(tail)


@pytest.fixture(scope="session")
def skiff_bin():
    return skiff_binary()


@pytest.fixture
def broker_factory(skiff_bin, tmp_path, request):
    """Returns `start(*extra_args)`, which starts one more broker for this test."""
    brokers = []
    request.node.skiff_brokers = brokers

    def start(*extra_args):
        index = len(brokers)
        data_dir = tmp_path / f"broker-{index}" / "data"
        data_dir.mkdir(parents=True)
        broker = Broker(skiff_bin, data_dir, tmp_path / f"broker-{index}" / "skiff.log", extra_args)
        brokers.append(broker)
        for attempt in range(1, FIRST_START_ATTEMPTS + 1):
            try:
                return broker.start()
            except PortTaken:
                if attempt == FIRST_START_ATTEMPTS:
                    raise
                broker.port = free_port()

    yield start
    for broker in brokers:
        if broker.process is not None and broker.process.poll() is None:
            broker.process.kill()
            broker.process.wait(timeout=10)


@pytest.fixture
def broker(broker_factory):
    return broker_factory()


class Cluster:
    """Brokers started as the members of one replicated cluster."""

    def __init__(self, brokers):
        self.brokers = brokers

    @property
    def bootstrap(self):
        return ",".join(broker.bootstrap for broker in self.brokers)

    def member(self, node_id):
        return next(broker for broker in self.brokers if broker.node_id == node_id)

    def running(self):
        return [broker for broker in self.brokers if broker.process and broker.process.poll() is None]


@pytest.fixture
def cluster_factory(skiff_bin, tmp_path, request):
    """Returns `start(size, *extra_args)`: a cluster of `size` brokers on free ports, each
    listing all of them in `controller.quorum.voters`."""
    brokers = []
    request.node.skiff_brokers = brokers

    def launch(size, extra_args, attempt):
        replication_ports = [free_port() for _ in range(size)]
        voters = ",".join(f"{node}@127.0.0.1:{port}" for node, port in zip(range(1, size + 1), replication_ports))
        members = []
        for node in range(1, size + 1):
            home = tmp_path / (f"node-{node}" if attempt == 1 else f"node-{node}-attempt-{attempt}")
            data_dir = home / "data"
            data_dir.mkdir(parents=True)
            args = ["--set", f"controller.quorum.voters={voters}", *extra_args]
            member = Broker(skiff_bin, data_dir, home / "skiff.log", args, node_id=node)
            brokers.append(member)
            members.append(member)
        # All at once: each waits for a quorum, which needs the others.
        for member in members:
            member.starts += 1
            env = dict(os.environ)
            env.setdefault("RUST_LOG", "info")
            with open(member.log_path, "ab") as log:
                member.process = subprocess.Popen(
                    member.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    env=env, cwd=member.data_dir.parent,
                )
        try:
            for member in members:
                member.wait_ready()
        except PortTaken:
            for member in members:
                if member.process.poll() is None:
                    member.process.kill()
                    member.process.wait(timeout=10)
            raise
        return Cluster(members)

    def start(size=3, *extra_args):
        for attempt in range(1, FIRST_START_ATTEMPTS + 1):
            try:
                return launch(size, extra_args, attempt)
            except PortTaken:
                if attempt == FIRST_START_ATTEMPTS:
                    raise

    yield start
    for broker in brokers:
        if broker.process is not None and broker.process.poll() is None:
            broker.process.kill()
            broker.process.wait(timeout=10)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attaches the broker logs to the report of a failing test."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for index, broker in enumerate(getattr(item, "skiff_brokers", [])):
            report.sections.append((f"skiff broker {index} log", broker.log_tail()))
