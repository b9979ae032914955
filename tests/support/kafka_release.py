"""The Kafka release that `make releases` builds (ansible/releases/kafka/), and a real Kafka node from it.

``KafkaNode`` is one JVM in KRaft mode, controller and broker together, on free loopback ports with a
small heap: started with the release's own bin/kafka-storage.sh and bin/kafka-server-start.sh, as the
Ansible role starts it, and stopped with SIGTERM (a controlled shutdown). The streaming services' tests
and the streaming benchmark run against it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pathlib
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from tests.conftest import pick_free_port
from tests.support import daemons

QUIET = {"log_level": 3}  # librdkafka errors only
# One small node: a quarter GiB of heap and the serial collector leave the two cores to the tests.
HEAP_OPTS = "-Xms64m -Xmx256m"
# Starts of a new single node on fresh ports when another server took its port first.
BIND_ATTEMPTS = 3
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
    # The log cleaner's dedupe buffer is 128 MiB by default, half this heap: a node started while the
    # machine was busy failed with OutOfMemoryError allocating it (measured on a clean-clone run).
    "log.cleaner.dedupe.buffer.size": 16 * 1024 * 1024,
}


def new_cluster_id() -> str:
    """A KRaft cluster id, as kafka-storage.sh random-uuid prints it."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class KafkaNode:
    """A running single-node Kafka cluster on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self, home: pathlib.Path, workdir: pathlib.Path, node_id: int = 1, jvm_opts: str = ""
    ) -> None:
        self.home = home
        # More JVM options of the node (not of kafka-storage.sh), after KAFKA_OPTS: e.g. the JMX exporter agent.
        self.jvm_opts = jvm_opts
        self.workdir = workdir
        self.node_id = node_id
        self.port = pick_free_port()
        self.controller_port = pick_free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        # A cluster of one unless KafkaCluster sets these (the same id and voters on every node).
        self.cluster_id = new_cluster_id()
        self.voters = f"{node_id}@127.0.0.1:{self.controller_port}"
        self.settings = dict(NODE_SETTINGS)
        # For a node with the role's security settings: librdkafka settings of its own clients (security
        # protocol, SCRAM user, CA) and more kafka-storage.sh format arguments (--add-scram ...).
        self.client_config: dict[str, str] = {}
        self.format_args: list[str] = []
        self.config = workdir / "server.properties"
        self.log_dir = workdir / "logs"
        self.process: subprocess.Popen | None = None
        self._admin = None

    @property
    def admin(self):
        """An AdminClient of this node (one, dropped before the node stops so that it does not retry)."""
        if self._admin is None:
            from confluent_kafka.admin import AdminClient

            self._admin = AdminClient({"bootstrap.servers": self.bootstrap, **QUIET, **self.client_config})
        return self._admin

    @classmethod
    @contextlib.contextmanager
    def running(
        cls, home: pathlib.Path, workdir: pathlib.Path, timeout_s: float = 120, **options: Any
    ) -> Iterator[KafkaNode]:
        """Formats, starts and waits for a node (``options`` as for the constructor); stops it on the way
        out, also after a failure."""
        node = cls(home, workdir, **options)
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
        """Launches the node and waits for it. A new single node whose port was taken between picking it
        and binding it (another test's server picked the same free port) starts again on new ports."""
        retry = (
            not (self.workdir / "data").exists()
            and self.voters == f"{self.node_id}@127.0.0.1:{self.controller_port}"
        )
        for attempt in range(1, BIND_ATTEMPTS + 1):
            self.launch(timeout_s)
            try:
                self.wait_until_ready(timeout_s)
                return
            except RuntimeError:
                if not retry or attempt == BIND_ATTEMPTS or not self._lost_a_port():
                    raise
            self.stop()
            shutil.rmtree(self.workdir / "data", ignore_errors=True)
            self.port, self.controller_port = pick_free_port(), pick_free_port()
            self.bootstrap = f"127.0.0.1:{self.port}"
            self.voters = f"{self.node_id}@127.0.0.1:{self.controller_port}"

    def _lost_a_port(self) -> bool:
        console = self.log_dir / "console.log"
        return console.exists() and "Address already in use" in console.read_text(errors="replace")

    def launch(self, timeout_s: float = 120) -> None:
        """Formats the storage (once: a restarted node keeps its data) and starts the JVM, not waiting."""
        settings = {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            "controller.quorum.voters": self.voters,
            "controller.listener.names": "CONTROLLER",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            **self.settings,
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        formatted = subprocess.run(
            [
                self.home / "bin" / "kafka-storage.sh",
                "format",
                "--config",
                self.config,
                f"--cluster-id={self.cluster_id}",
                "--ignore-formatted",
                *self.format_args,
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
        self.process = daemons.launch(
            [self.home / "bin" / "kafka-server-start.sh", self.config],
            {**self._env(), "KAFKA_OPTS": f"{os.environ.get('KAFKA_OPTS', '')} {self.jvm_opts}".strip()},
            self.log_dir / "console.log",
        )

    def wait_until_ready(self, timeout_s: float) -> None:
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

    def kill(self) -> None:
        """SIGKILL: the node dies without a controlled shutdown, as on a power cut."""
        self._admin = None
        daemons.kill(self.process)

    def stop(self, timeout_s: float = 60) -> int | None:
        """SIGTERM (a controlled shutdown), SIGKILL after ``timeout_s``; returns the exit status."""
        self._admin = None
        return daemons.stop(self.process, timeout_s)

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


# Settings of a three-node test cluster: what the role sets in production for durability (every record on
# three nodes, acknowledged once two have it), the rest as for a single node.
CLUSTER_SETTINGS = {
    **NODE_SETTINGS,
    "default.replication.factor": 3,
    "min.insync.replicas": 2,
    "offsets.topic.replication.factor": 3,
    "transaction.state.log.replication.factor": 3,
    "transaction.state.log.min.isr": 2,
    "share.coordinator.state.topic.replication.factor": 3,
    "share.coordinator.state.topic.min.isr": 2,
}


class KafkaCluster:
    """Three KafkaNodes (each controller and broker) forming one KRaft quorum on 127.0.0.1."""

    def __init__(self, home: pathlib.Path, workdir: pathlib.Path, size: int = 3) -> None:
        self.nodes = [
            KafkaNode(home, workdir / f"node{index}", node_id=index) for index in range(1, size + 1)
        ]
        cluster_id = new_cluster_id()
        voters = ",".join(f"{node.node_id}@127.0.0.1:{node.controller_port}" for node in self.nodes)
        for node in self.nodes:
            node.cluster_id, node.voters, node.settings = cluster_id, voters, dict(CLUSTER_SETTINGS)
        self.bootstrap = ",".join(node.bootstrap for node in self.nodes)

    @classmethod
    @contextlib.contextmanager
    def running(
        cls, home: pathlib.Path, workdir: pathlib.Path, timeout_s: float = 180
    ) -> Iterator[KafkaCluster]:
        """Starts every node (a quorum needs a majority up, so all start before any is waited for) and
        waits until each broker serves metadata; stops them on the way out, also after a failure."""
        cluster = cls(home, workdir)
        try:
            for node in cluster.nodes:
                node.launch(timeout_s)
            for node in cluster.nodes:
                node.wait_until_ready(timeout_s)
            yield cluster
        finally:
            cluster.stop()

    def stop(self) -> None:
        """SIGTERM to every node at once: one by one, the last would wait for a quorum that is gone."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes:
            node.stop(timeout_s=20)
