"""Streaming ingestion on a real Kafka node against librdkafka's mock cluster, same records, same run.

The real node is Apache Kafka from `make releases` (KRaft, controller and broker in one JVM, 256 MiB heap,
one replica: tests/support/kafka_release.py); the mock cluster lives inside this process's librdkafka.
For each: the test producer loads the records (idempotent, acks=all), then `stream-ingest` reads them into
a local shard directory, committing each shard with its offsets.

Run: PYTHONPATH=$PWD .venv/bin/python -m tests.bench.run --only streaming
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
import time

from tests.support import kafka_release
from tests.support.releases import KAFKA
from tests.workloads.serving.processes import start_service, wait_until
from tests.workloads.streaming.kafka import KafkaClients, MockKafka, StreamKafka
from workloads.serving import payloads

INGEST_RECORDS = 5000  # about 3 MB per partition: the mock brokers keep about 5 MB of each
INGEST_SHARD = 1024


def ingest_throughput(workdir: pathlib.Path, kafka: KafkaClients, topic: str) -> tuple[float, float, int]:
    """Producer records/s, stream-ingest steady records/s (first to last committed shard), records."""
    from workloads.streaming.ingest_messages import record_message

    images = payloads.synthetic_images(INGEST_RECORDS, seed=3)
    # Keyed, so that the records spread evenly over the partitions: the mock brokers keep only about 5 MB
    # of each and silently drop older records beyond that (the sticky partitioner of unkeyed records can
    # put most of them into one partition).
    messages = [
        (
            str(i).encode(),
            record_message(i % 10, pixels=image)
            if i % 2
            else record_message(i % 10, image=payloads.encode_image(image)),
        )
        for i, image in enumerate(images)
    ]
    began = time.monotonic()
    kafka.produce(topic, messages)
    produce_rate = len(messages) / (time.monotonic() - began)
    output = workdir / "ingest-shards"
    shutil.rmtree(output, ignore_errors=True)
    manifest = output / "manifest.json"
    ingester = start_service(
        "stream-ingest",
        ["--bootstrap-servers", kafka.bootstrap, "--topic", topic, "--output", str(output),
         "--shard-size", str(INGEST_SHARD), "--flush-interval-seconds", "1", "--metrics-port", "none"],
        workdir / "ingest.log",
    )  # fmt: skip
    try:
        progress: list[tuple[float, int]] = []

        def done() -> bool:
            records = json.loads(manifest.read_text())["records"] if manifest.exists() else 0
            if records and (not progress or records != progress[-1][1]):
                progress.append((time.monotonic(), records))
            return records >= INGEST_RECORDS

        wait_until(done, 180, "every benchmark record in the shards", interval=0.05)
        (start, first), (end, last) = progress[0], progress[-1]
        return produce_rate, (last - first) / (end - start), last
    finally:
        ingester.terminate()


def run(workdir: pathlib.Path) -> str:
    load_before = os.getloadavg()[0]
    results = {}
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        home = KAFKA.unpack(pathlib.Path(scratch))
        began = time.monotonic()
        with kafka_release.KafkaNode.running(home, pathlib.Path(scratch) / "node") as node:
            started_s = time.monotonic() - began
            kafka = StreamKafka.fresh(node)
            results["real"] = ingest_throughput(workdir / "real", kafka, kafka.names.ingest)
            kafka.close()
    mock = MockKafka()
    mock.create_topics("mlstack.ingest.images")
    results["mock"] = ingest_throughput(workdir / "mock", mock, "mlstack.ingest.images")
    load_after = os.getloadavg()[0]
    (workdir / "streaming.json").write_text(json.dumps(results, indent=1))
    (real_produce, real_ingest, real_count), (mock_produce, mock_ingest, mock_count) = (
        results["real"],
        results["mock"],
    )
    return "\n".join(
        [
            "## Streaming ingestion: a real Kafka node against the mock cluster",
            "",
            f"Load average {load_before:.1f} -> {load_after:.1f} (the machine is shared).",
            "",
            f"{INGEST_RECORDS} records (half pixels, half PNG) in a topic of 4 partitions, loaded by an idempotent "
            f"producer (acks=all), then read by `stream-ingest` into a local shard directory, shards of {INGEST_SHARD} "
            "records, each committed with its offsets. The real node is Apache Kafka from `make releases` (KRaft, "
            f"one JVM with a 256 MiB heap, one replica; it answered {started_s:.1f} s after its start); the mock "
            "cluster is librdkafka's, inside the benchmark process.",
            "",
            "| Kafka | producer records/s | `stream-ingest` records/s (steady) | records |",
            "| --- | ---: | ---: | ---: |",
            f"| Apache Kafka {KAFKA.name.split('-')[-1]} (real node) | {real_produce:,.0f} | "
            f"{real_ingest:,.0f} | {real_count} |",
            f"| librdkafka mock cluster | {mock_produce:,.0f} | {mock_ingest:,.0f} | {mock_count} |",
            f"| real / mock | {real_produce / mock_produce:.2f}x | {real_ingest / mock_ingest:.2f}x | |",
            "",
            "Steady state is from the first committed shard to the last (group join excluded). The mock cluster "
            "keeps its log in memory inside the benchmark process; the real node appends every batch to its log "
            "directory and answers from another process, a JVM on the same two cores. `stream-ingest` parses, "
            "validates and stores every record itself, which the broker does not change.",
        ]
    )
