"""Faults on the real data tier, as local processes from the releases `make releases` builds: a Kafka broker
SIGKILLed while a producer streams with acks=all loses no acknowledged record (RF 3, min ISR 2, the role's
durability settings); a DataNode SIGKILLed leaves every file readable; a restarted NameNode serves the same
data. Every wait is bounded."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.hadoop_release import HdfsCluster
from tests.support.kafka_release import QUIET, KafkaCluster
from tests.support.releases import HADOOP, KAFKA, required

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("data_tier_faults")]
TOPIC = "faults"
PARTITIONS = 3


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory) -> Iterator[KafkaCluster]:
    home = required(KAFKA, tmp_path_factory.mktemp("kafka"))
    with KafkaCluster.running(home, tmp_path_factory.mktemp("kafka-cluster")) as cluster:
        yield cluster


class Streaming:
    """A producer thread (acks=all, idempotent) sending numbered records until stopped; ``acked`` holds
    the numbers whose delivery the cluster confirmed."""

    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka import Producer

        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.timeout.ms": 60000,
                **QUIET,
            }
        )
        self.acked: set[int] = set()
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _delivered(self, error, message) -> None:
        if error is None:
            self.acked.add(int(message.value()))
        else:
            self.failed.append(str(error))

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            try:
                self.producer.produce(TOPIC, str(number).encode(), callback=self._delivered)
                number += 1
            except BufferError:
                self.producer.poll(0.05)
            self.producer.poll(0)
            if number % 50 == 0:
                time.sleep(0.005)  # a steady stream, not a flood the 2 cores spend all their time on

    def start(self) -> None:
        self._thread.start()

    def wait_for(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.acked) < count:
            assert time.monotonic() < deadline, f"only {len(self.acked)} of {count} records acknowledged"
            time.sleep(0.05)

    def stop(self, timeout_s: float = 60) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        assert self.producer.flush(timeout_s) == 0, "records still unacknowledged after the flush"


def consume_all(bootstrap: str, expected: int, timeout_s: float = 120) -> set[int]:
    """Every record of the topic, from the beginning, with a fresh group."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"faults-check-{os.getpid()}-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **QUIET,
        }
    )
    consumer.subscribe([TOPIC])
    seen: set[int] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=1):
                if message.error() is None:
                    seen.add(int(message.value()))
    finally:
        consumer.close()
    return seen


def test_a_broker_killed_while_a_producer_streams_with_acks_all_loses_no_acknowledged_record(kafka_cluster):
    from confluent_kafka.admin import NewTopic

    admin = kafka_cluster.nodes[0].admin
    created = admin.create_topics(
        [NewTopic(TOPIC, PARTITIONS, 3, config={"min.insync.replicas": "2"})], operation_timeout=30
    )
    created[TOPIC].result(60)
    stream = Streaming(kafka_cluster.bootstrap)
    stream.start()
    stream.wait_for(2000, timeout_s=90)
    leader = admin.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions[0].leader
    victim = next(node for node in kafka_cluster.nodes if node.node_id == leader)
    victim.kill()
    before_kill = len(stream.acked)
    stream.wait_for(before_kill + 2000, timeout_s=120)  # two in-sync replicas left: acks=all still succeeds
    stream.stop()
    assert not stream.failed, stream.failed[:5]
    survivor = next(node for node in kafka_cluster.nodes if node is not victim)
    remaining = ",".join(node.bootstrap for node in kafka_cluster.nodes if node is not victim)
    seen = consume_all(remaining, len(stream.acked))
    lost = stream.acked - seen
    assert not lost, f"{len(lost)} acknowledged records lost (e.g. {sorted(lost)[:10]}); {survivor.log()}"


def write_files(cluster: HdfsCluster, tmp_path, count: int = 3, size: int = 3_000_000) -> dict[str, str]:
    """``count`` files of random bytes put into HDFS; their SHA-256 by HDFS path."""
    digests = {}
    for index in range(count):
        local = tmp_path / f"file{index}.bin"
        local.write_bytes(os.urandom(size))
        put = cluster.hdfs("dfs", "-put", str(local), f"/file{index}.bin")
        assert put.returncode == 0, put.stderr
        digests[f"/file{index}.bin"] = hashlib.sha256(local.read_bytes()).hexdigest()
    return digests


def read_back(cluster: HdfsCluster, tmp_path, digests: dict[str, str]) -> dict[str, str]:
    back = {}
    for path in digests:
        local = tmp_path / f"back{path.replace('/', '_')}"
        local.unlink(missing_ok=True)
        got = cluster.hdfs("dfs", "-get", path, str(local))
        assert got.returncode == 0, got.stderr
        back[path] = hashlib.sha256(local.read_bytes()).hexdigest()
    return back


@pytest.fixture
def hdfs_home(tmp_path_factory):
    return required(HADOOP, tmp_path_factory.mktemp("hadoop"))


def test_files_stay_readable_when_a_datanode_is_killed(hdfs_home, tmp_path):
    with HdfsCluster.running(hdfs_home, tmp_path / "hdfs", datanodes=2) as cluster:
        digests = write_files(cluster, tmp_path)
        assert {cluster.hdfs("dfs", "-stat", "%r", path).stdout.strip() for path in digests} == {"2"}
        cluster.datanodes[0].kill()
        assert read_back(cluster, tmp_path, digests) == digests
        # The NameNode notices (heartbeats stop) within its recheck interval and still serves every file.
        deadline = time.monotonic() + 90
        while cluster.live_datanodes() != 1:
            assert time.monotonic() < deadline, "the NameNode still counts the killed DataNode as live"
            time.sleep(1)
        assert read_back(cluster, tmp_path, digests) == digests


def test_a_restarted_namenode_serves_the_same_data(hdfs_home, tmp_path):
    with HdfsCluster.running(hdfs_home, tmp_path / "hdfs", datanodes=1) as cluster:
        digests = write_files(cluster, tmp_path)
        cluster.restart_namenode()
        assert read_back(cluster, tmp_path, digests) == digests
        fsck = cluster.hdfs("fsck", "/")
        assert "is HEALTHY" in fsck.stdout, fsck.stdout[-2000:]
