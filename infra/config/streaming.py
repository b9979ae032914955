"""The ``streaming`` setting: the Kafka-side services (inference workers, streaming ingestion)."""

from __future__ import annotations

from infra.config.fields import Fields, resources
from infra.config.settings import Streaming

# Keys that borrowed TF Serving's batching names for the inference worker's micro-batch.
RENAMED = {"maxBatchSize": "microBatchSize", "maxBatchWaitMs": "microBatchWaitMs"}


def read_streaming(top: Fields) -> Streaming:
    obj = top.obj("streaming", {})
    obj.refuse_renamed(RENAMED, "the inference worker's Kafka micro-batch, not TF Serving's batching")
    default = Streaming()
    streaming = Streaming(
        enabled=obj.boolean("enabled", default.enabled),
        infer_replicas=obj.integer("inferReplicas", default.infer_replicas, minimum=1),
        ingest_replicas=_one_ingester(obj),
        micro_batch_size=obj.integer("microBatchSize", default.micro_batch_size, minimum=1),
        # The worker refuses a wait of 0 (--max-batch-wait-ms must be greater than 0).
        micro_batch_wait_ms=obj.integer("microBatchWaitMs", default.micro_batch_wait_ms, minimum=1),
        shard_size=obj.integer("shardSize", default.shard_size, minimum=1),
        ingest_output=obj.string("ingestOutput", default.ingest_output, check=_ingest_output),
        resources=resources(obj, "resources", default.resources),
    )
    obj.done()
    return streaming


def _ingest_output(value: str) -> str | None:
    """Where the streaming pods can write: the cluster's HDFS, over RPC or WebHDFS (they mount no volume
    and hold no object-store credentials)."""
    if not value or value.startswith(("hdfs://", "webhdfs://")):
        return None
    return (
        f"{value!r} cannot be written from the streaming pods (no volume is mounted there and no object-store "
        "credentials are wired); use an hdfs:// or webhdfs:// URL, or leave it empty for the cluster's HDFS"
    )


def _one_ingester(obj: Fields) -> int:
    """stream-ingest's manifest is its commit log: a second writer of the same output would overwrite it."""
    replicas = obj.integer("ingestReplicas", Streaming().ingest_replicas, minimum=1)
    if replicas != 1:
        raise obj.fail(
            "ingestReplicas",
            f"{replicas} ingesters would write one output, whose manifest each rewrites (records lost or "
            "duplicated); use 1: one ingester reads every partition of the topic",
        )
    return replicas
