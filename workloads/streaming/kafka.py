"""What the Kafka services (``infer-worker``, ``stream-ingest``) share: client settings, consumer lag and
the metrics endpoint. confluent-kafka and prometheus-client are imported here only."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from workloads.core.fsutil import atomic_write_text
from workloads.core.settings import option

log = logging.getLogger(__name__)

# The topics and consumer groups of the streaming services (docs/interfaces.md, "Names"): the services'
# defaults, the Pulumi program's container args and the Ansible role's topic list all use these.
REQUESTS_TOPIC = "mlstack.inference.requests"
RESULTS_TOPIC = "mlstack.inference.results"
DLQ_TOPIC = "mlstack.inference.dlq"
INGEST_TOPIC = "mlstack.ingest.images"
INFER_WORKER_GROUP = "mlstack-infer-worker"
STREAM_INGEST_GROUP = "mlstack-stream-ingest"


def check_kafka_settings(items: tuple[str, ...]) -> str | None:
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            return f"each Kafka setting is KEY=VALUE (librdkafka names, e.g. security.protocol=SSL), got {item!r}"
    return None


def settings_option() -> Any:
    """The ``--kafka-config KEY=VALUE`` flag of both services (librdkafka settings, masked in logs)."""
    return option(
        (),
        help="extra librdkafka settings KEY=VALUE (security.protocol=SSL, sasl.*)",
        check=check_kafka_settings,
        secret=True,
    )


def kafka_settings(items: Sequence[str]) -> dict[str, str]:
    return {key.strip(): value for key, _, value in (item.partition("=") for item in items)}


def consumer_settings(bootstrap: str, group_id: str, extra: Mapping[str, str]) -> dict[str, Any]:
    """Offsets are committed by the service, after its output is durable; nothing automatic."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        **extra,
    }


def producer_settings(bootstrap: str, extra: Mapping[str, str]) -> dict[str, Any]:
    """Idempotent (acks=all, no duplicates from the producer's own retries)."""
    return {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5, **extra}


def consumer_lag(consumer, timeout_s: float = 2.0) -> dict[int, int]:
    """Messages behind the high watermark, per assigned partition (from the consumer's position)."""
    assignment = consumer.assignment()
    if not assignment:
        return {}
    positions = consumer.position(assignment)
    unknown = [p for p in positions if p.offset < 0]  # nothing fetched yet: start from the commit
    committed = (
        {p.partition: p.offset for p in consumer.committed(unknown, timeout=timeout_s)} if unknown else {}
    )
    lags = {}
    for position in positions:
        low, high = consumer.get_watermark_offsets(position, timeout=timeout_s, cached=False)
        offset = position.offset if position.offset >= 0 else committed.get(position.partition, -1)
        lags[position.partition] = max(high - (offset if offset >= 0 else low), 0)
    return lags


class LagReporter:
    """Keeps a ``{partition}`` lag gauge current, at most every ``interval_s``; never raises."""

    def __init__(self, gauge, interval_s: float = 5.0) -> None:
        self.gauge = gauge
        self.interval_s = interval_s
        self._checked = 0.0

    def update(self, consumer) -> None:
        now = time.monotonic()
        if now - self._checked < self.interval_s:
            return
        try:
            lags = consumer_lag(consumer)
        except Exception as error:  # metrics must never stop the service
            log.debug("consumer lag unavailable: %s", error)
            return
        if lags:  # none while the group is still assigning partitions: try again next time
            self._checked = now
        for partition, lag in lags.items():
            self.gauge.labels(str(partition)).set(lag)

    def assigned(self) -> None:
        self._checked = 0.0  # measure the new assignment at the next update

    def revoked(self, partitions: Sequence[Any]) -> None:
        self._checked = 0.0
        for partition in partitions:
            with contextlib.suppress(KeyError):  # never had a sample
                self.gauge.remove(str(partition.partition))


def start_metrics_server(registry, host: str, port: int | None) -> int | None:
    """Serves ``registry`` at http://host:port/metrics; returns the bound port (0 picks a free one)."""
    if port is None:
        return None
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server.server_port


def write_ready_file(path: str | None, **fields: Any) -> None:
    if path:
        atomic_write_text(path, json.dumps(fields))
