"""Event-driven inference (the book's ch. 4.4): Kafka requests -> model server -> Kafka results.

One loop, one batch at a time:

1. consume up to ``max_batch_size`` requests, waiting at most ``max_batch_wait_ms`` (a micro-batch);
2. validate each; a message that can never succeed is a *poison message* and goes to the dead-letter
   topic with the reason, and the worker carries on;
3. send the valid requests to the model server in one predict call per signature, pinned to an
   explicit model version (resolved from the server's model status, so every result names the
   version that computed it; TF Serving's REST predict answer does not say). A 4xx for a batch is
   isolated request by request, so only the guilty request is dead-lettered. A busy, down or slow
   server is retried with backoff, indefinitely: those requests are not poison;
4. produce results and dead letters, flush, check every delivery, and only then commit the batch's
   offsets. A crash anywhere before the commit replays the batch: at-least-once, with duplicates
   bounded by one batch per crash. Results carry the request id for deduplication.

SIGTERM finishes the current batch, commits it and leaves the consumer group.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from workloads.core import logs
from workloads.core.errors import WorkloadError
from workloads.serving import tensors
from workloads.serving.client import (
    IMAGE_BYTES_INPUT,
    IMAGES_INPUT,
    ModelServerClient,
    Prediction,
    ServingError,
)
from workloads.streaming import inference_messages as messages
from workloads.streaming.inference_messages import InferenceRequest, PoisonMessage
from workloads.streaming.kafka import LagReporter

log = logging.getLogger(__name__)

# The micro-batch a worker sends to the model server by default: the CLI flags and the stack's
# streaming.microBatchSize / streaming.microBatchWaitMs take these.
MICRO_BATCH_SIZE = 32
MICRO_BATCH_WAIT_MS = 50
METRICS_PORT = 9411  # docs/interfaces.md, "Ports"


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    requests_topic: str
    results_topic: str
    dlq_topic: str
    model_name: str
    model_label: str | None = None
    max_batch_size: int = MICRO_BATCH_SIZE
    max_batch_wait_s: float = MICRO_BATCH_WAIT_MS / 1000
    max_message_bytes: int = 4 * 1024 * 1024
    version_refresh_s: float = 10.0
    lag_interval_s: float = 5.0
    flush_timeout_s: float = 30.0
    max_backoff_s: float = 5.0


class DeliveryError(WorkloadError):
    """Results could not be written to Kafka; nothing was committed, so the batch will be replayed."""


class WorkerMetrics:
    """The inference worker's Prometheus metrics (names from docs/interfaces.md); no extra labels."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.messages = Counter(
            "mlstack_infer_messages", "requests consumed, by outcome", ["outcome"], registry=self.registry
        )
        self.batch_size = Histogram(
            "mlstack_infer_batch_size",
            "requests per micro-batch sent to the model server",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.lag = Gauge(
            "mlstack_infer_consumer_lag",
            "messages behind the high watermark",
            ["partition"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "mlstack_infer_dead_letters",
            "messages sent to the dead-letter topic",
            ["reason"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "mlstack_infer_request_duration_seconds",
            "model server round trip per micro-batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        for outcome in ("ok", "dead_letter", "retried"):
            self.messages.labels(outcome)


@dataclasses.dataclass
class _Outcome:
    message: Any
    request: InferenceRequest | None = None
    prediction: tuple[int, np.ndarray, int] | None = None  # (version, scores, class id)
    poison: PoisonMessage | None = None


class InferenceWorker:
    def __init__(
        self,
        settings: WorkerSettings,
        consumer: Any,
        producer: Any,
        client: ModelServerClient,
        metrics: WorkerMetrics,
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self.producer = producer
        self.client = client
        self.metrics = metrics
        self._version: int | None = None
        self._version_checked = 0.0
        self._lag = LagReporter(metrics.lag, settings.lag_interval_s)
        self._delivery_errors: list[str] = []

    # The loop.
    def run(self, stop: threading.Event) -> None:
        self.consumer.subscribe(
            [self.settings.requests_topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        log.info(
            "consuming %s",
            self.settings.requests_topic,
            extra=logs.fields(topic=self.settings.requests_topic),
        )
        try:
            while not stop.is_set():
                batch = self.consumer.consume(self.settings.max_batch_size, self.settings.max_batch_wait_s)
                if batch:
                    self.process(batch, stop)
                self._lag.update(self.consumer)
        finally:
            self.consumer.close()  # leaves the group at once, so partitions move without a session timeout
            self.producer.flush(self.settings.flush_timeout_s)

    def process(self, batch: Sequence[Any], stop: threading.Event) -> bool:
        """One micro-batch, end to end; returns False when stopped before its offsets were committed."""
        outcomes = []
        for message in batch:
            if message.error():
                log.warning("consumer error: %s", message.error())
                continue
            outcome = _Outcome(message)
            try:
                outcome.request = messages.parse_request(message.value(), self.settings.max_message_bytes)
            except PoisonMessage as poison:
                outcome.poison = poison
            outcomes.append(outcome)
        pending = [o for o in outcomes if o.request is not None]
        for signature in sorted({o.request.signature for o in pending}):
            group = [o for o in pending if o.request.signature == signature]
            if not self._infer(group, stop):
                log.info("stopping with %d uncommitted requests; they will be consumed again", len(batch))
                return False
        self._publish(outcomes)
        self._commit(batch)
        return True

    # Inference.
    def _infer(self, group: list[_Outcome], stop: threading.Event) -> bool:
        """Fills each outcome's prediction or poison; False if stopped while the server was unavailable."""
        backoff = 0.1
        while True:
            try:
                version = self._model_version()
                started = time.perf_counter()
                prediction = self._predict([o.request for o in group], version)
                self.metrics.request_duration.observe(time.perf_counter() - started)
                self.metrics.batch_size.observe(len(group))
                for outcome, scores, class_id in zip(
                    group, prediction.scores, prediction.class_ids, strict=True
                ):
                    outcome.prediction = (version, scores, int(class_id))
                return True
            except ServingError as error:
                if error.http_status == 404:  # the version was unloaded (a promotion): ask again
                    self._version = None
                elif (
                    error.http_status is not None
                    and 400 <= error.http_status < 500
                    and error.http_status != 429
                ):
                    return self._isolate(group, error, stop)
                self.metrics.messages.labels("retried").inc(len(group))
                log.warning(
                    "model server unavailable, retrying %d requests in %.1f s: %s",
                    len(group),
                    backoff,
                    error,
                    extra=logs.fields(requests=len(group)),
                )
            if stop.wait(backoff):
                return False
            backoff = min(backoff * 2, self.settings.max_backoff_s)

    def _isolate(self, group: list[_Outcome], error: ServingError, stop: threading.Event) -> bool:
        """The server rejected the batch: find which requests it rejects alone."""
        if len(group) == 1:
            group[0].poison = PoisonMessage("model_rejected", f"the model server answered: {error.message}")
            return True
        return all(self._infer([outcome], stop) for outcome in group)

    def _predict(self, requests: list[InferenceRequest], version: int) -> Prediction:
        if requests[0].image is not None:
            inputs = {IMAGE_BYTES_INPUT: tensors.to_string_array([r.image for r in requests])}
        else:
            inputs = {IMAGES_INPUT: np.stack([r.pixels for r in requests])}
        return self.client.predict(inputs, signature=requests[0].signature, version=version)

    def _model_version(self) -> int:
        """The version to pin requests to: the latest AVAILABLE one (or the label's), refreshed periodically."""
        now = time.monotonic()
        if self._version is None or now - self._version_checked > self.settings.version_refresh_s:
            label = self.settings.model_label
            statuses = self.client.model_status(label=label)
            available = [s.version for s in statuses if s.state == "AVAILABLE"]
            if not available:
                raise ServingError(
                    f"status of {self.settings.model_name}",
                    "no version is AVAILABLE",
                    retryable=True,
                    http_status=503,
                )
            version = max(available)
            if version != self._version:
                log.info(
                    "predicting with %s version %d",
                    self.settings.model_name,
                    version,
                    extra=logs.fields(version=version),
                )
            self._version, self._version_checked = version, now
        return self._version

    # Output and commit.
    def _publish(self, outcomes: list[_Outcome]) -> None:
        for outcome in outcomes:
            message = outcome.message
            if outcome.poison is not None:
                request_id = outcome.request.request_id if outcome.request else None
                value = messages.dead_letter_message(
                    outcome.poison,
                    message.value(),
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    request_id,
                )
                self._produce(
                    self.settings.dlq_topic,
                    message.key(),
                    value,
                    [("mlstack-dlq-reason", outcome.poison.category)],
                )
                self.metrics.dead_letters.labels(outcome.poison.category).inc()
                self.metrics.messages.labels("dead_letter").inc()
                log.warning(
                    "dead-lettered %s[%d]@%d: %s",
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    outcome.poison.reason,
                    extra=logs.fields(category=outcome.poison.category),
                )
            else:
                version, scores, class_id = outcome.prediction
                value = messages.result_message(
                    outcome.request, self.settings.model_name, version, scores, class_id
                )
                self._produce(self.settings.results_topic, outcome.request.request_id.encode(), value)
                self.metrics.messages.labels("ok").inc()
        remaining = self.producer.flush(self.settings.flush_timeout_s)
        if remaining or self._delivery_errors:
            errors, self._delivery_errors = self._delivery_errors, []
            raise DeliveryError(
                f"{remaining} results not delivered within {self.settings.flush_timeout_s:g} s, delivery errors: "
                f"{errors[:3]}; offsets not committed, the batch will be processed again after a restart"
            )

    def _produce(self, topic: str, key: bytes | None, value: bytes, headers: list | None = None) -> None:
        while True:
            try:
                self.producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=self._on_delivery
                )
                return
            except BufferError:  # the local queue is full: let deliveries drain, then retry
                self.producer.poll(0.5)

    def _on_delivery(self, error: Any, _message: Any) -> None:
        if error is not None:
            self._delivery_errors.append(str(error))

    def _commit(self, batch: Sequence[Any]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        next_offsets: dict[tuple[str, int], int] = {}
        for message in batch:
            if not message.error():
                key = (message.topic(), message.partition())
                next_offsets[key] = max(next_offsets.get(key, 0), message.offset() + 1)
        if not next_offsets:
            return
        offsets = [
            TopicPartition(topic, partition, offset) for (topic, partition), offset in next_offsets.items()
        ]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as error:  # e.g. the partitions moved to another worker meanwhile
            log.warning(
                "commit failed (%s); these requests will be processed again: duplicates, not losses", error
            )

    # Partition changes.
    def _on_assign(self, _consumer: Any, _partitions: Sequence[Any]) -> None:
        self._lag.assigned()

    def _on_revoke(self, _consumer: Any, partitions: Sequence[Any]) -> None:
        self._lag.revoked(partitions)
