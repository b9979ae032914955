"""librdkafka's mock cluster: real Kafka brokers (wire protocol, consumer groups, commits) on loopback.

There is no Kafka broker on the build machine (docs: /work/shared/ENVIRONMENT.md); this cluster lives
inside the test process's librdkafka and serves any confluent-kafka client, including the services
under test running as separate processes.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterable

QUIET = {"log_level": 3}  # errors only: the mock cluster is chatty


@dataclasses.dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    headers: tuple


class MockKafka:
    """Alive as long as this object is: the cluster belongs to its first producer."""

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

    def produce(self, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]) -> int:
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
        self._consumer.close()
