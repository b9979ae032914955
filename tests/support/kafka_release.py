"""The Kafka release that `make releases` builds (ansible/releases/kafka/), and a real Kafka node from it.

``KafkaNode`` is one JVM in KRaft mode, controller and broker together, on free loopback ports with a
small heap: started with the release's own bin/kafka-storage.sh and bin/kafka-server-start.sh, as the
Ansible role starts it, and stopped with SIGTERM (a controlled shutdown). The streaming services' tests
and the streaming benchmark run against it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import pathlib
import socket
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator, Sequence
from xml.etree import ElementTree

from tests.conftest import pick_free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
POM = ROOT / "ansible" / "releases" / "kafka" / "pom.xml"
RELEASES = ROOT / "build" / "releases"
QUIET = {"log_level": 3}  # librdkafka errors only
# One small node: a quarter GiB of heap and the serial collector leave the two cores to the tests.
HEAP_OPTS = "-Xms64m -Xmx256m"
JVM_OPTS = "-server -XX:+UseSerialGC -Djava.awt.headless=true"
# Settings of a single test node (the role writes the production ones): one replica of everything,
# groups that rebalance at once, a few partitions for the internal topics (fast to create), no topics
# created by accident (as in production: auto.create.topics.enable is off there too).
NODE_SETTINGS = {
    "num.partitions": 4,
    "default.replication.factor": 1,
    "min.insync.replicas": 1,
    "offsets.topic.replication.factor": 1,
    "offsets.topic.num.partitions": 4,
    "transaction.state.log.replication.factor": 1,
    "transaction.state.log.min.isr": 1,
    "transaction.state.log.num.partitions": 4,
    "share.coordinator.state.topic.replication.factor": 1,
    "share.coordinator.state.topic.min.isr": 1,
    "group.initial.rebalance.delay.ms": 0,
    "auto.create.topics.enable": "false",
    "unclean.leader.election.enable": "false",
    "num.network.threads": 2,
    "num.io.threads": 2,
}


class ReleaseMissing(RuntimeError):
    """The release is not built and could not be: the message says what to run."""


def release_name() -> str:
    """kafka_<scala>-<version>, from the pinned POM."""
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    properties = ElementTree.parse(POM).getroot().find("m:properties", namespace)
    version = properties.findtext("m:kafka.version", namespaces=namespace)
    scala = properties.findtext("m:scala.binary.version", namespaces=namespace)
    return f"kafka_{scala}-{version}"


def tarball() -> pathlib.Path:
    return RELEASES / f"{release_name()}.tgz"


def build() -> pathlib.Path:
    """Makes the tarball (nothing to do when it is newer than its sources), one process at a time. Only the
    file target: `make releases` also installs the Debian packages, which needs root."""
    RELEASES.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    with (RELEASES / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = subprocess.run(
            ["make", "--no-print-directory", "-s", str(tarball().relative_to(ROOT))],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0 or not tarball().exists():
        said = (result.stdout + result.stderr).strip().splitlines() or ["nothing"]
        reason = next((line for line in said if line.startswith("release build failed")), said[-1])
        raise ReleaseMissing(
            f"no Kafka release at {tarball().relative_to(ROOT)}: run `make releases` ({reason})"
        )
    return tarball()


def verified_sha512(path: pathlib.Path) -> str:
    """The tarball's SHA-512, checked against its .sha512 file as the role checks it."""
    published = (path.parent / f"{path.name}.sha512").read_text().split()
    actual = hashlib.sha512(path.read_bytes()).hexdigest()
    if published[:2] != [actual, path.name]:
        raise ReleaseMissing(f"{path} does not match {path.name}.sha512: run `make releases` again")
    return actual


def unpack(destination: pathlib.Path) -> pathlib.Path:
    """Builds the release if needed, verifies it and unpacks it into ``destination``; returns its home."""
    path = build()
    verified_sha512(path)
    with tarfile.open(path) as archive:
        archive.extractall(destination, filter="tar")
    return destination / release_name()


class KafkaNode:
    """A running single-node Kafka cluster on 127.0.0.1 (see the module docstring)."""

    def __init__(self, home: pathlib.Path, workdir: pathlib.Path, node_id: int = 1) -> None:
        self.home = home
        self.workdir = workdir
        self.node_id = node_id
        self.port = pick_free_port()
        self.controller_port = pick_free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.config = workdir / "server.properties"
        self.log_dir = workdir / "logs"
        self.process: subprocess.Popen | None = None
        self._admin = None

    @property
    def admin(self):
        """An AdminClient of this node (one, dropped before the node stops so that it does not retry)."""
        if self._admin is None:
            from confluent_kafka.admin import AdminClient

            self._admin = AdminClient({"bootstrap.servers": self.bootstrap, **QUIET})
        return self._admin

    @classmethod
    @contextlib.contextmanager
    def running(
        cls, home: pathlib.Path, workdir: pathlib.Path, node_id: int = 1, timeout_s: float = 120
    ) -> Iterator[KafkaNode]:
        """Formats, starts and waits for a node; stops it on the way out, also after a failure."""
        node = cls(home, workdir, node_id)
        try:
            node.start(timeout_s)
            yield node
        finally:
            node.stop()

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "LOG_DIR": str(self.log_dir),
            "KAFKA_HEAP_OPTS": HEAP_OPTS,
            "KAFKA_JVM_PERFORMANCE_OPTS": JVM_OPTS,
            "EXTRA_ARGS": "-name kafkaServer",  # no GC log
        }

    def start(self, timeout_s: float = 120) -> None:
        settings = {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            "controller.quorum.voters": f"{self.node_id}@127.0.0.1:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            **NODE_SETTINGS,
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        formatted = subprocess.run(
            [
                self.home / "bin" / "kafka-storage.sh",
                "format",
                "--config",
                self.config,
                "--cluster-id",
                cluster_id,
            ],
            env={**self._env(), "KAFKA_HEAP_OPTS": "-Xmx128m"},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if formatted.returncode != 0:
            raise RuntimeError(
                f"kafka-storage.sh format exited {formatted.returncode}: {formatted.stderr[-2000:]}"
            )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / "console.log").open("ab") as console:
            self.process = subprocess.Popen(
                # SIGTERM to the node if the test process dies first (setpriv, the scripts and the JVM are
                # one process: each execs the next).
                [
                    "setpriv",
                    "--pdeathsig",
                    "TERM",
                    "--",
                    self.home / "bin" / "kafka-server-start.sh",
                    self.config,
                ],
                env=self._env(),
                stdout=console,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_it_answers(timeout_s)

    def _wait_until_it_answers(self, timeout_s: float) -> None:
        """Until the port accepts connections (librdkafka would log every refusal), then until the broker
        serves metadata with itself in it (the controller has registered it)."""
        from confluent_kafka import KafkaException

        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"Kafka exited with {self.process.returncode} while starting:\n{self.log()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                if self.admin.list_topics(timeout=2).brokers:
                    return
            except (OSError, KafkaException):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Kafka did not answer on {self.bootstrap} within {timeout_s:g} s:\n{self.log()}"
                )
            time.sleep(0.2)

    def log(self, chars: int = 3000) -> str:
        path = self.log_dir / "server.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no server.log)"

    def stop(self, timeout_s: float = 60) -> int | None:
        """SIGTERM (a controlled shutdown), SIGKILL after ``timeout_s``; returns the exit status."""
        self._admin = None
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def create_topics(self, names: Sequence[str], partitions: int = 4, **config: str) -> None:
        """Creates the topics (one replica) and waits until each has a leader for every partition."""
        from confluent_kafka.admin import NewTopic

        futures = self.admin.create_topics(
            [NewTopic(name, partitions, 1, config=dict(config)) for name in names], operation_timeout=30
        )
        for future in futures.values():
            future.result(60)
        deadline = time.monotonic() + 30
        while True:
            topics = self.admin.list_topics(timeout=10).topics
            if all(
                name in topics
                and len(topics[name].partitions) == partitions
                and all(p.leader >= 0 for p in topics[name].partitions.values())
                for name in names
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"topics {list(names)} have no leaders after 30 s:\n{self.log()}")
            time.sleep(0.1)
