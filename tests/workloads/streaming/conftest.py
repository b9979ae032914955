"""The streaming services' tests: a fresh mock Kafka cluster (tests/workloads/streaming/kafka.py) per test."""

from __future__ import annotations

import pytest

from tests.workloads.streaming.kafka import MockKafka
from workloads.streaming import kafka as topics


@pytest.fixture
def kafka() -> MockKafka:
    """A mock Kafka cluster with the topics of both services."""
    cluster = MockKafka()
    cluster.create_topics(topics.REQUESTS_TOPIC, topics.RESULTS_TOPIC, topics.DLQ_TOPIC, topics.INGEST_TOPIC)
    return cluster
