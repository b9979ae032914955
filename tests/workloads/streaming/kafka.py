"""Kafka for the streaming services' tests and benchmarks.

``StreamKafka``: fresh topics and consumer group names of both services on a real Kafka node
(tests/support/kafka_release.py, the release `make releases` builds), one set per test, so that tests
share the node and nothing else. ``MockKafka``: librdkafka's mock cluster, which lives inside the test
process's librdkafka; kept for the benchmark's side-by-side comparison. Both serve any confluent-kafka
client, including the services under test running as separate processes.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterable

from workloads.streaming import kafka as services

QUIET = {"log_level": 3}  # librdkafka errors only
PARTITIONS = 4  # as the mock cluster creates them


@dataclasses.dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    headers: tuple


@dataclasses.dataclass(frozen=True)
class Names:
    """The topics and consumer groups of both services (the services' defaults, or one test's own)."""

    requests: str = services.REQUESTS_TOPIC
    results: str = services.RESULTS_TOPIC
    dlq: str = services.DLQ_TOPIC
    ingest: str = services.INGEST_TOPIC
    infer_group: str = services.INFER_WORKER_GROUP
    ingest_group: str = services.STREAM_INGEST_GROUP

    @classmethod
    def unique(cls) -> Names:
        """The defaults with one random suffix: ``mlstack.inference.requests.3fa2b1c0`` and so on."""
        suffix = uuid.uuid4().hex[:8]
        return cls(**{f.name: f"{f.default}.{suffix}" for f in dataclasses.fields(cls)})

    @property
    def topics(self) -> tuple[str, ...]:
        return (self.requests, self.results, self.dlq, self.ingest)


class KafkaClients:
    """Producing and reading test records, on whatever cluster ``bootstrap`` names."""

    bootstrap: str

    def produce(self, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]) -> int:
        """Idempotent (acks=all) producer; returns the count once every record is acknowledged."""
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True, **QUIET})
        count = 0
        for key, value in records:
            producer.produce(topic, key=key, value=value)
            producer.poll(0)
            count += 1
        remaining = producer.flush(30)
        if remaining:
            raise RuntimeError(f"{remaining} test records were not delivered to {topic}")
        return count

    def reader(self, topic: str) -> TopicReader:
        return TopicReader(self.bootstrap, topic)


class StreamKafka(KafkaClients):
    """One test's topics (``names``, 4 partitions each) on a real Kafka node; ``close`` closes its readers."""

    def __init__(self, node, names: Names) -> None:
        self.node = node
        self.bootstrap = node.bootstrap
        self.names = names
        self._readers: list[TopicReader] = []

    @classmethod
    def fresh(cls, node) -> StreamKafka:
        names = Names.unique()
        node.create_topics(names.topics, PARTITIONS)
        return cls(node, names)

    def reader(self, topic: str) -> TopicReader:
        reader = super().reader(topic)
        self._readers.append(reader)
        return reader

    def delete_records_before(self, topic: str, partition: int, offset: int) -> None:
        """Moves the partition's log start to ``offset``: what retention does to old segments."""
        from confluent_kafka import TopicPartition

        futures = self.node.admin.delete_records([TopicPartition(topic, partition, offset)])
        for future in futures.values():
            future.result(30)

    def close(self) -> None:
        for reader in self._readers:
            reader.close()


class MockKafka(KafkaClients):
    """librdkafka's mock cluster; alive as long as this object is (it belongs to its first producer)."""

    def __init__(self, brokers: int = 3) -> None:
        from confluent_kafka import Producer

        self._owner = Producer({"test.mock.num.brokers": brokers, "bootstrap.servers": "", **QUIET})
        metadata = self._owner.list_topics(timeout=10)
        self.bootstrap = ",".join(f"{b.host}:{b.port}" for b in metadata.brokers.values())

    def create_topics(self, *names: str) -> None:
        """The mock brokers create a topic (4 partitions) when its metadata is first asked for."""
        for name in names:
            topic = self._owner.list_topics(topic=name, timeout=10).topics[name]
            if topic.error is not None or not topic.partitions:
                raise RuntimeError(f"cannot create topic {name}: {topic.error}")


class TopicReader:
    """Reads a whole topic from the beginning, by partition assignment (no consumer group)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"reader-{uuid.uuid4()}",
                "enable.auto.commit": False,
                **QUIET,
            }
        )
        partitions = self._consumer.list_topics(topic=topic, timeout=10).topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self.records: list[Record] = []
        self._closed = False

    def poll(self, seconds: float = 0.5) -> list[Record]:
        """Everything that arrived within ``seconds``; also appended to ``records``."""
        deadline = time.monotonic() + seconds
        new = []
        while (remaining := deadline - time.monotonic()) > 0:
            for message in self._consumer.consume(500, min(remaining, 0.2)):
                if message.error():
                    continue
                new.append(
                    Record(
                        message.key(),
                        message.value(),
                        message.partition(),
                        message.offset(),
                        tuple(message.headers() or ()),
                    )
                )
        self.records += new
        return new

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._consumer.close()
