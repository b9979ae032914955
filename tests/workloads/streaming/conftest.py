"""The streaming services' tests run against a real Kafka node: one per test session (per pytest-xdist
worker), from the release `make releases` builds, with fresh topics and consumer groups for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.kafka_release import KafkaNode
from tests.support.releases import KAFKA, required
from tests.workloads.streaming.kafka import StreamKafka


@pytest.fixture(scope="session")
def kafka_node(tmp_path_factory) -> Iterator[KafkaNode]:
    """Apache Kafka in KRaft mode (controller and broker in one JVM, 256 MiB heap) on free loopback ports,
    with a log directory of its own; stopped (SIGTERM) at the end of the session, also after a failure.

    The tarball is made (its make target) when it is missing or older than its sources; if that fails,
    every test that needs Kafka fails with one line naming `make releases` (never a silent skip).
    """
    home = required(KAFKA, tmp_path_factory.mktemp("kafka-release"))
    with KafkaNode.running(home, tmp_path_factory.mktemp("kafka-node")) as node:
        yield node


@pytest.fixture
def kafka(kafka_node) -> Iterator[StreamKafka]:
    """This test's own topics of both services (4 partitions each) and consumer group names
    (``kafka.names``), created on the session's node."""
    cluster = StreamKafka.fresh(kafka_node)
    yield cluster
    cluster.close()
