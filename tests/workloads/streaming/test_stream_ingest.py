"""Streaming ingestion as a real process against a real Kafka node (KRaft, from `make releases`): killed
mid-stream and restarted, the shards hold every record exactly once; records that retention deleted
while it was down are counted and reported; to S3 (moto_server on loopback), and training reads the
shards back from there."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests

from tests.workloads.serving.processes import start_service, wait_until
from tests.workloads.streaming.kafka import StreamKafka
from tests.workloads.support import run_workloads
from tests.workloads.test_storage_errors import error_line
from workloads.data import datasets
from workloads.data.shards import MANIFEST_NAME, ShardSet
from workloads.serving import payloads
from workloads.streaming.ingest_messages import record_message

SHARD_SIZE = 100
REJECTS = [b"{not json", json.dumps({"label": 99, "pixels": [[0] * 28] * 28}).encode(), None]


def indexed_records(count: int) -> list[tuple[bytes, bytes]]:
    """Record ``i`` carries ``i`` in its first four pixels and label ``i % 10``; half PNG, half pixels."""
    images = payloads.synthetic_images(count, seed=7)
    records = []
    for index, image in enumerate(images):
        image[0, :4] = np.frombuffer(index.to_bytes(4, "little"), np.uint8)
        value = (
            record_message(index % 10, image=payloads.encode_image(image))
            if index % 2
            else record_message(index % 10, pixels=image)
        )
        records.append((str(index).encode(), value))
    return records


def stored_indices(output: str) -> tuple[list[int], np.ndarray]:
    images, labels = ShardSet.open(output).read_all()
    indices = [int.from_bytes(image[0, :4].tobytes(), "little") for image in images]
    return indices, labels


def start_ingester(
    kafka: StreamKafka, output: str, workdir, name: str, *extra: str, topic: str | None = None
):
    ready = workdir / f"{name}.ready.json"
    service = start_service(
        "stream-ingest",
        [
            "--bootstrap-servers", kafka.bootstrap,
            "--topic", topic or kafka.names.ingest,
            "--group-id", kafka.names.ingest_group,
            "--output", output,
            "--shard-size", str(SHARD_SIZE),
            "--metrics-port", "0",
            "--metrics-host", "127.0.0.1",
            "--ready-file", str(ready),
            "--kafka-config", "session.timeout.ms=6000", "heartbeat.interval.ms=500",
            *extra,
        ],
        workdir / f"{name}.log",
    )  # fmt: skip
    metrics_port = service.wait_for_ready_file(ready, 120)["metrics_port"]
    return service, metrics_port


def manifest_records(directory) -> int:
    path = directory / MANIFEST_NAME
    return json.loads(path.read_text())["records"] if path.exists() else 0


@pytest.mark.xdist_group("ingest")
@pytest.mark.slow
def test_a_killed_ingester_resumes_and_stores_every_record_exactly_once(kafka, tmp_path):
    records = indexed_records(3000)
    stream = list(records)
    for position, value in zip((450, 1200, 2500), REJECTS, strict=True):
        stream.insert(position, (b"reject", value))
    kafka.produce(kafka.names.ingest, stream)
    output = tmp_path / "shards"

    first, _ = start_ingester(kafka, str(output), tmp_path, "first")
    wait_until(lambda: manifest_records(output) >= 5 * SHARD_SIZE, 120, "five committed shards")
    first.kill()  # SIGKILL: the open shard and maybe a shard file without its manifest entry are lost
    at_kill = manifest_records(output)
    assert at_kill < len(records), "ingestion finished before the kill; the crash was not mid-stream"

    second, metrics_port = start_ingester(
        kafka, str(output), tmp_path, "second", "--flush-interval-seconds", "1"
    )
    wait_until(lambda: manifest_records(output) == len(records), 120, "every record in the shards")
    metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    assert second.terminate() == 0, second.log()[-3000:]

    indices, labels = stored_indices(str(output))
    assert sorted(indices) == list(range(len(records))), "a record is missing or stored twice"
    assert all(label == index % 10 for index, label in zip(indices, labels, strict=True))
    manifest = json.loads((output / MANIFEST_NAME).read_text())
    next_offsets = manifest["shards"][-1]["metadata"]["kafka"]["next_offsets"]
    assert sum(next_offsets.values()) == len(stream), "the last shard's offsets cover the whole topic"
    assert all(name.startswith("shard-") for name in manifest_files(output)), "no orphan shard files left"
    assert f"mlstack_ingest_records_total {float(len(records) - at_kill)}" in metrics
    rejected = [
        json.loads(line) for line in (first.log() + second.log()).splitlines() if '"msg": "rejected' in line
    ]
    assert {r["category"] for r in rejected} == {"invalid_json", "invalid_record"}
    assert len({r["msg"].split(":")[0] for r in rejected}) == len(REJECTS), (
        "each reject is logged with its offset"
    )

    # A restart with nothing new to read changes nothing.
    third, _ = start_ingester(kafka, str(output), tmp_path, "third", "--flush-interval-seconds", "1")
    wait_until(lambda: "assigned partitions" in third.log(), 60, "the third ingester to be assigned")
    assert third.terminate() == 0
    assert json.loads((output / MANIFEST_NAME).read_text()) == manifest


def manifest_files(output) -> list[str]:
    listed = {entry["file"] for entry in json.loads((output / MANIFEST_NAME).read_text())["shards"]}
    present = {p.name for p in output.iterdir() if p.name != MANIFEST_NAME}
    assert present == listed, f"files not in the manifest: {sorted(present - listed)}"
    return sorted(present)


@pytest.mark.xdist_group("ingest")
@pytest.mark.slow
def test_ingestion_writes_shards_to_s3_and_training_reads_them_back(kafka, tmp_path, s3_bucket, s3_endpoint):
    """``s3_bucket`` (tests/workloads/conftest.py): moto_server on loopback, endpoint and test credentials in
    the environment the child processes inherit."""
    import boto3

    records = indexed_records(640)
    kafka.produce(kafka.names.ingest, records)
    output = f"s3://{s3_bucket}/stream/shards/train"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)

    def committed() -> int:
        try:
            body = s3.get_object(Bucket=s3_bucket, Key="stream/shards/train/manifest.json")["Body"].read()
        except s3.exceptions.NoSuchKey:
            return 0
        return json.loads(body)["records"]

    ingester, _ = start_ingester(
        kafka, output, tmp_path, "s3", "--s3-endpoint", s3_endpoint, "--flush-interval-seconds", "1"
    )
    wait_until(lambda: committed() == len(records), 120, "every record in S3")
    assert ingester.terminate() == 0, ingester.log()[-3000:]
    indices, _ = stored_indices(output)
    assert sorted(indices) == list(range(len(records)))

    trainer = start_service(
        "train",
        [
            "--data", output,
            "--output", str(tmp_path / "trained"),
            "--epochs", "1",
            "--batch-size", "64",
            "--s3-endpoint", s3_endpoint,
            "--cache-dir", str(tmp_path / "cache"),
            "--metrics-port", "0",
        ],
        tmp_path / "train.log",
    )  # fmt: skip
    assert trainer.process.wait(300) == 0, trainer.log()[-4000:]
    training = json.loads((tmp_path / "trained" / "training.json").read_text())
    assert training["data"] == output
    assert training["steps"] == len(records) // 64


@pytest.mark.xdist_group("ingest")
@pytest.mark.slow
def test_records_expired_by_retention_while_the_ingester_was_down_are_counted_and_reported(kafka, tmp_path):
    """Kafka deletes old records by moving a partition's log start offset; DeleteRecords moves it the same
    way on demand, so the real broker shows the ingester exactly what retention would."""
    topic = f"{kafka.names.ingest}.single"  # one partition: the offsets are the record numbers
    kafka.node.create_topics([topic], partitions=1)
    records = indexed_records(200)
    kafka.produce(topic, records[:40])
    output = tmp_path / "shards"

    first, _ = start_ingester(
        kafka, str(output), tmp_path, "first", "--flush-interval-seconds", "1", topic=topic
    )
    wait_until(lambda: manifest_records(output) == 40, 60, "the first 40 records in the shards")
    assert first.terminate() == 0, first.log()[-3000:]

    kafka.produce(topic, records[40:])  # offsets 40-199 while the ingester is down
    kafka.delete_records_before(topic, 0, 100)  # retention takes 40-99 before it is back

    second, metrics_port = start_ingester(
        kafka, str(output), tmp_path, "second", "--flush-interval-seconds", "1", topic=topic
    )
    wait_until(lambda: manifest_records(output) == 140, 60, "records 100-199 in the shards")
    metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    assert second.terminate() == 0, second.log()[-3000:]

    indices, _ = stored_indices(str(output))
    assert sorted(indices) == [*range(40), *range(100, 200)]
    assert 'mlstack_ingest_rejected_total{reason="expired"} 60.0' in metrics
    assert "60 records (offsets 40-99) were deleted by Kafka's retention" in second.log()


@pytest.mark.xdist_group("ingest")
@pytest.mark.slow
def test_a_batch_datasets_own_directory_is_refused_so_its_splits_stay_visible(kafka, tmp_path):
    dataset = tmp_path / "dataset"
    made = run_workloads(
        "ingest", "--output", str(dataset), "--synthetic-train", "8", "--synthetic-test", "8"
    )
    assert made.returncode == 0, made.stderr
    result = run_workloads(
        "stream-ingest", "--bootstrap-servers", kafka.bootstrap, "--topic", kafka.names.ingest,
        "--group-id", kafka.names.ingest_group, "--output", str(dataset), "--metrics-port", "0", timeout=120,
    )  # fmt: skip
    line = error_line(result)
    assert str(dataset) in line and "is a batch dataset" in line and f"{dataset}-stream/train/" in line
    assert not (dataset / MANIFEST_NAME).exists()
    assert datasets.check_splits(str(dataset), ("train", "test")).test == str(dataset / "test")
