"""Event-driven inference: consume prediction requests from Kafka, micro-batch them through the model
server (TF Serving, or serve-dev here) and produce the results to Kafka.

At least once: offsets are committed only after the batch's results are produced and flushed, so a
crash replays at most one batch (results carry the request id; deduplicate on it). Messages that can
never succeed (not JSON, no request id, not an image, rejected by the model) go to the dead-letter
topic with the reason; the worker keeps going. An unreachable or busy model server is retried with
backoff, never dead-lettered. SIGTERM finishes the current batch, commits it and exits 0.
Message formats: docs/serving.md. Metrics at http://HOST:--metrics-port/metrics.

Example:
  python -m workloads infer-worker --bootstrap-servers kafka:9092 --server-url http://tf-serving:8501
  (a secured listener: --kafka-security-protocol SASL_SSL --kafka-credentials-dir DIR --kafka-ca-file FILE)
"""

from __future__ import annotations

import dataclasses
import logging

from workloads.core import logs, signals
from workloads.core.settings import non_empty, option, positive, tcp_port
from workloads.serving import tfs_config
from workloads.serving.client import RestClient, RetryPolicy
from workloads.streaming import kafka
from workloads.streaming.infer_worker import (
    METRICS_PORT,
    MICRO_BATCH_SIZE,
    MICRO_BATCH_WAIT_MS,
    InferenceWorker,
    WorkerMetrics,
    WorkerSettings,
)

HELP = "Kafka consumer that micro-batches prediction requests through the model server"
log = logging.getLogger(__name__)


def _rest_url(value: str) -> str | None:
    return (
        None
        if value.startswith(("http://", "https://"))
        else f"must be the REST base URL http(s)://HOST:PORT, got {value!r}"
    )


@dataclasses.dataclass(frozen=True)
class Config(kafka.KafkaOptions):
    group_id: str = option(
        kafka.INFER_WORKER_GROUP,
        help="consumer group; workers in one group share the partitions",
        check=non_empty,
    )
    requests_topic: str = option(kafka.REQUESTS_TOPIC, help="topic of prediction requests")
    results_topic: str = option(kafka.RESULTS_TOPIC, help="topic the results are written to")
    dlq_topic: str = option(kafka.DLQ_TOPIC, help="dead-letter topic for messages that can never succeed")
    server_url: str = option(
        f"http://127.0.0.1:{tfs_config.REST_PORT}",
        help=f"model server REST base URL (TF Serving's {tfs_config.REST_PORT})",
        check=_rest_url,
    )
    model_name: str = option(tfs_config.MODEL_NAME, help="model to ask", check=tfs_config.model_name_problem)
    model_label: str | None = option(
        None, help="pin requests to the version with this label (default: the latest)"
    )
    max_batch_size: int = option(MICRO_BATCH_SIZE, help="most requests per micro-batch", check=positive)
    max_batch_wait_ms: int = option(
        MICRO_BATCH_WAIT_MS, help="longest wait for a micro-batch to fill, in milliseconds", check=positive
    )
    request_timeout: float = option(
        10.0, help="seconds to wait for the model server per call", check=positive
    )
    version_refresh_seconds: float = option(
        10.0, help="how often to re-check which model version is latest", check=positive
    )
    max_message_bytes: int = option(4 * 1024 * 1024, help="larger requests are dead-lettered", check=positive)
    metrics_port: int | None = option(
        METRICS_PORT, help="Prometheus metrics port; 0 = any free port, none = off", check=tcp_port
    )
    metrics_host: str = option("0.0.0.0", help="address the metrics endpoint listens on")
    ready_file: str | None = option(None, help="write {metrics_port, pid} as JSON here once consuming")


def run(config: Config) -> int:
    import os

    settings = WorkerSettings(
        requests_topic=config.requests_topic,
        results_topic=config.results_topic,
        dlq_topic=config.dlq_topic,
        model_name=config.model_name,
        model_label=config.model_label,
        max_batch_size=config.max_batch_size,
        max_batch_wait_s=config.max_batch_wait_ms / 1000,
        max_message_bytes=config.max_message_bytes,
        version_refresh_s=config.version_refresh_seconds,
    )
    metrics = WorkerMetrics()
    stop = signals.stop_on_signals("the current batch")
    metrics_port = kafka.start_metrics_server(metrics.registry, config.metrics_host, config.metrics_port)
    consumer, producer = config.consumer(config.group_id), config.producer()
    # The worker retries an unavailable server itself, forever; the client tries once per call.
    client = RestClient(
        config.server_url, config.model_name, timeout_s=config.request_timeout, retry=RetryPolicy(attempts=1)
    )
    kafka.write_ready_file(config.ready_file, metrics_port=metrics_port, pid=os.getpid())
    log.info(
        "inference worker: %s -> %s -> %s (dead letters: %s)",
        config.requests_topic,
        config.server_url,
        config.results_topic,
        config.dlq_topic,
        extra=logs.fields(metrics_port=metrics_port, group_id=config.group_id),
    )
    with client:
        InferenceWorker(settings, consumer, producer, client, metrics).run(stop)
    log.info("stopped cleanly")
    return 0
