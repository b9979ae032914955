"""Append image records from a Kafka topic to a shard directory (local path, s3://, hdfs://,
webhdfs://), exactly once.

Each shard is committed together with the Kafka offsets it ends at (in the shard manifest), so a
crash neither loses nor duplicates records, and a restart resumes from the last committed shard.
A shard is committed when full (--shard-size), after --flush-interval-seconds without a commit, and
on SIGTERM. Run one ingester per output directory. Record format: docs/serving.md.

Example:
  python -m workloads stream-ingest --bootstrap-servers kafka:9092 \\
      --output hdfs://namenode:8020/mlstack/datasets/stream/shards/train/
"""

from __future__ import annotations

import dataclasses
import logging
import os

from workloads.core import logs, signals
from workloads.core.settings import at_most, non_empty, option, positive, tcp_port
from workloads.data.shards import DEFAULT_SHARD_SIZE
from workloads.streaming import kafka
from workloads.streaming.stream_ingest import METRICS_PORT

HELP = "append image records from Kafka to shards, exactly once (offsets committed with each shard)"
log = logging.getLogger(__name__)


# kw_only: the required --output follows the Kafka connection options, which all have defaults.
@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(kafka.KafkaOptions):
    output: str = option(help="shard directory to append to (path or URL); created if absent, resumed if not")
    group_id: str = option(
        kafka.STREAM_INGEST_GROUP,
        help="consumer group (its offsets show progress; the manifest is authoritative)",
        check=non_empty,
    )
    topic: str = option(kafka.INGEST_TOPIC, help="topic of image records", check=non_empty)
    shard_size: int = option(DEFAULT_SHARD_SIZE, help="records per shard", check=positive)
    flush_interval_seconds: float = option(
        30.0, help="commit a partial shard after this long without a commit", check=positive
    )
    num_classes: int = option(
        10, help="labels must be 0..num_classes-1", check=lambda v: positive(v) or at_most(256)(v)
    )
    dlq_topic: str | None = option(
        None, help="send records that cannot be stored here, with the reason (default: log and count them)"
    )
    max_message_bytes: int = option(1024 * 1024, help="larger records are rejected", check=positive)
    metrics_port: int | None = option(
        METRICS_PORT, help="Prometheus metrics port; 0 = any free port, none = off", check=tcp_port
    )
    metrics_host: str = option("0.0.0.0", help="address the metrics endpoint listens on")
    s3_endpoint: str | None = option(None, help="S3 endpoint URL for s3:// output (sets AWS_ENDPOINT_URL)")
    ready_file: str | None = option(None, help="write {metrics_port, pid} as JSON here once consuming")


def run(config: Config) -> int:
    from workloads.core import storage
    from workloads.streaming.stream_ingest import IngestMetrics, IngestSettings, StreamIngester

    storage.set_s3_endpoint(config.s3_endpoint)
    settings = IngestSettings(
        topic=config.topic,
        output=config.output,
        shard_size=config.shard_size,
        num_classes=config.num_classes,
        flush_interval_s=config.flush_interval_seconds,
        max_message_bytes=config.max_message_bytes,
        dlq_topic=config.dlq_topic,
    )
    metrics = IngestMetrics()
    stop = signals.stop_on_signals("the current batch")
    consumer = config.consumer(config.group_id)
    producer = config.producer() if config.dlq_topic else None
    ingester = StreamIngester(settings, consumer, producer, metrics)
    metrics_port = kafka.start_metrics_server(metrics.registry, config.metrics_host, config.metrics_port)
    kafka.write_ready_file(config.ready_file, metrics_port=metrics_port, pid=os.getpid())
    ingester.run(stop)
    log.info(
        "stopped cleanly: %d records in %d shards",
        ingester.writer.manifest.records,
        len(ingester.writer.committed),
        extra=logs.fields(output=config.output),
    )
    return 0
