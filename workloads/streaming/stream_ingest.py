"""Streaming ingestion: image records from a Kafka topic appended to a shard directory, exactly once.

The shard directory's manifest is the single source of truth for what has been ingested. Every
committed shard records, in its manifest metadata, the topic and the next Kafka offset of every
partition *after* the records it and all earlier shards hold::

    "metadata": {"kafka": {"topic": "mlstack.ingest.images", "next_offsets": {"0": 812, "1": 790}}}

The shard file and the manifest that lists it with those offsets are one commit (the manifest is
written last; a shard file it does not list does not exist for readers and is removed on resume).
On start, and whenever partitions are assigned, the consumer is positioned at the offsets of the
last committed shard, so:

- records consumed but not yet committed when the process dies are consumed again (not lost);
- records already in a committed shard are never consumed again (not duplicated);
- a restart resumes where the last commit ended, whatever Kafka's own committed offsets say.

Kafka's consumer-group offsets are still committed after each shard, so Kafka tools show the
ingester's progress and lag. A shard is committed when it holds ``shard_size`` records, when no
shard was committed for ``flush_interval_s`` (a slow stream still lands), and on SIGTERM. Records that
can never be stored (not JSON, bad image, bad label) are counted, logged with their offsets and, with
``dlq_topic``, sent to a dead-letter topic. One ingester per shard directory.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from workloads.core import logs, storage
from workloads.core.errors import DataError
from workloads.streaming import ingest_messages
from workloads.streaming.inference_messages import PoisonMessage, dead_letter_message
from workloads.streaming.kafka import LagReporter

METRICS_PORT = 9412  # docs/interfaces.md, "Ports"

log = logging.getLogger(__name__)
KAFKA_KEY = "kafka"


@dataclasses.dataclass(frozen=True)
class IngestSettings:
    topic: str
    output: str
    shard_size: int
    num_classes: int = 10
    flush_interval_s: float = 30.0
    max_message_bytes: int = 1024 * 1024
    dlq_topic: str | None = None
    lag_interval_s: float = 5.0


class IngestMetrics:
    """Names from docs/interfaces.md, plus ``mlstack_ingest_rejected_total{reason}``."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        self.records = Counter("mlstack_ingest_records", "records appended to shards", registry=self.registry)
        self.shards = Counter(
            "mlstack_ingest_shards_committed",
            "shards committed with their Kafka offsets",
            registry=self.registry,
        )
        self.lag = Gauge(
            "mlstack_ingest_consumer_lag",
            "messages behind the high watermark",
            ["partition"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "mlstack_ingest_rejected",
            "records that cannot be stored, by reason",
            ["reason"],
            registry=self.registry,
        )


def _refuse_batch_dataset(url: str) -> None:
    """A batch dataset's own directory is not a stream's: a manifest there would hide its train/ and test/."""
    from workloads.data.shards import MANIFEST_NAME

    for split in ("train", "test"):
        if storage.exists(storage.join(url, split, MANIFEST_NAME)):
            raise DataError(
                url,
                f"is a batch dataset (it has {split}/); stream-ingest writes a shard directory of its own: "
                f"give one such as {url.rstrip('/')}-stream/train/",
            )


class StreamIngester:
    def __init__(
        self, settings: IngestSettings, consumer: Any, producer: Any | None, metrics: IngestMetrics
    ) -> None:
        from workloads.data.shards import ShardWriter

        self.settings = settings
        self.consumer = consumer
        self.producer = producer  # only for dead letters
        self.metrics = metrics
        _refuse_batch_dataset(settings.output)
        self.writer = ShardWriter(
            settings.output, shard_size=settings.shard_size, num_classes=settings.num_classes
        )
        self.committed_offsets = self._offsets_from_manifest()
        self._pending_offsets: dict[int, int] = {}
        self._oldest_pending = 0.0
        self._lag = LagReporter(metrics.lag, settings.lag_interval_s)
        self._delivery_errors: list[str] = []

    def _offsets_from_manifest(self) -> dict[int, int]:
        metadata = self.writer.last_metadata or {}
        kafka = metadata.get(KAFKA_KEY)
        if kafka is None:
            if self.writer.committed:
                raise DataError(
                    self.settings.output,
                    "holds shards that were not written by stream-ingest (no Kafka offsets in the manifest); "
                    "give an empty or stream-ingested directory",
                )
            return {}
        if kafka.get("topic") != self.settings.topic:
            raise DataError(
                self.settings.output,
                f"was ingested from topic {kafka.get('topic')!r}, not {self.settings.topic!r}; "
                "use one directory per topic",
            )
        return {int(partition): int(offset) for partition, offset in kafka["next_offsets"].items()}

    # The loop.
    def run(self, stop: threading.Event) -> None:
        self.consumer.subscribe([self.settings.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info(
            "ingesting %s into %s (%d records already there)",
            self.settings.topic,
            self.settings.output,
            self.writer.manifest.records,
            extra=logs.fields(resume_offsets=self.committed_offsets),
        )
        try:
            while not stop.is_set():
                batch = self.consumer.consume(min(self.writer.room, 500), 0.5)
                for message in batch:
                    self._take(message)
                if (
                    self.writer.pending
                    and time.monotonic() - self._oldest_pending >= self.settings.flush_interval_s
                ):
                    self.commit()
                self._lag.update(self.consumer)
            self.commit()  # SIGTERM: what has been consumed lands before exit
        finally:
            self.consumer.close()

    def _take(self, message: Any) -> None:
        if message.error():
            log.warning("consumer error: %s", message.error())
            return
        partition, offset = message.partition(), message.offset()
        if offset < self.committed_offsets.get(partition, 0):
            return  # already in a committed shard (a fetch that raced a rebalance)
        try:
            image, label = ingest_messages.parse_record(
                message.value(), self.settings.num_classes, self.settings.max_message_bytes
            )
        except PoisonMessage as poison:
            self._reject(message, poison)
        else:
            if not self.writer.pending:
                self._oldest_pending = time.monotonic()
            self.writer.append(image[None], [label])
        self._pending_offsets[partition] = offset + 1
        if self.writer.room == 0:
            self.commit()

    def _reject(self, message: Any, poison: PoisonMessage) -> None:
        self.metrics.rejected.labels(poison.category).inc()
        log.warning(
            "rejected %s[%d]@%d: %s",
            message.topic(),
            message.partition(),
            message.offset(),
            poison.reason,
            extra=logs.fields(category=poison.category),
        )
        if self.producer is not None and self.settings.dlq_topic:
            value = dead_letter_message(
                poison, message.value(), message.topic(), message.partition(), message.offset(), None
            )
            self.producer.produce(
                self.settings.dlq_topic, value=value, key=message.key(), on_delivery=self._on_delivery
            )

    def _on_delivery(self, error: Any, _message: Any) -> None:
        if error is not None:
            self._delivery_errors.append(str(error))

    # The commit: shard file, then the manifest with the offsets, then Kafka's group offsets.
    def commit(self) -> None:
        if not self._pending_offsets:
            return
        if self.producer is not None:
            remaining = self.producer.flush(30)
            if remaining or self._delivery_errors:
                raise DataError(
                    self.settings.dlq_topic or "",
                    f"dead letters not delivered ({self._delivery_errors[:3]}); nothing committed, the records "
                    "will be consumed again after a restart",
                )
        offsets = {**self.committed_offsets, **self._pending_offsets}
        records = self.writer.pending
        metadata = {
            KAFKA_KEY: {
                "topic": self.settings.topic,
                "next_offsets": {str(p): o for p, o in sorted(offsets.items())},
            },
            "committed_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        entry = self.writer.commit(metadata)
        if entry is None:
            # Only rejected records since the last shard: nothing to store. Their offsets are kept for
            # the next shard; after a crash before it they are rejected again (no records are lost).
            return
        self.committed_offsets, self._pending_offsets = offsets, {}
        self.metrics.records.inc(records)
        self.metrics.shards.inc()
        log.info(
            "committed %s: %d records",
            entry.file,
            records,
            extra=logs.fields(next_offsets=metadata[KAFKA_KEY]["next_offsets"]),
        )
        self._commit_group_offsets(offsets)

    def _commit_group_offsets(self, offsets: dict[int, int]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        assigned = {tp.partition for tp in self.consumer.assignment()}
        positions = [TopicPartition(self.settings.topic, p, o) for p, o in offsets.items() if p in assigned]
        if not positions:
            return
        try:
            self.consumer.commit(offsets=positions, asynchronous=False)
        except KafkaException as error:  # informational only: the manifest is what counts
            log.warning("could not commit group offsets (%s); the manifest holds the true position", error)

    # Partition changes.
    def _on_assign(self, consumer: Any, partitions: Sequence[Any]) -> None:
        from confluent_kafka import OFFSET_BEGINNING

        for partition in partitions:
            partition.offset = self.committed_offsets.get(partition.partition, OFFSET_BEGINNING)
            if partition.offset >= 0:
                self._check_retention(consumer, partition)
        consumer.assign(partitions)
        self._lag.assigned()
        log.info(
            "assigned partitions %s at the manifest's offsets",
            [p.partition for p in partitions],
            extra=logs.fields(offsets={p.partition: p.offset for p in partitions}),
        )

    def _check_retention(self, consumer: Any, partition: Any) -> None:
        """Records Kafka deleted (retention) before they were ingested cannot be read: say so loudly."""
        try:
            low, _high = consumer.get_watermark_offsets(partition, timeout=5, cached=False)
        except Exception as error:
            log.warning("cannot check partition %d for expired records: %s", partition.partition, error)
            return
        if partition.offset < low:
            expired = low - partition.offset
            self.metrics.rejected.labels("expired").inc(expired)
            log.error(
                "partition %d: %d records (offsets %d-%d) were deleted by Kafka's retention before they were "
                "ingested; resuming at %d. Keep the ingester running, or raise the topic's retention",
                partition.partition,
                expired,
                partition.offset,
                low - 1,
                low,
                extra=logs.fields(partition=partition.partition, expired=expired),
            )

    def _on_revoke(self, _consumer: Any, partitions: Sequence[Any]) -> None:
        self.commit()  # records consumed so far are complete: store them before the partitions move
        self._lag.revoked(partitions)
