"""The inference worker as a real process against a real Kafka node (KRaft, from `make releases`) and the
development server: crash and restart, graceful shutdown, poison messages, metrics."""

from __future__ import annotations

import base64
import collections
import json

import numpy as np
import pytest
import requests

from tests.workloads.conftest import MODEL
from tests.workloads.serving.processes import ServiceProcess, start_service, wait_until
from tests.workloads.streaming.kafka import StreamKafka
from workloads.serving import payloads
from workloads.serving.client import RestClient, RetryPolicy
from workloads.streaming.inference_messages import request_message

pytestmark = [pytest.mark.xdist_group("kafka"), pytest.mark.slow]
MAX_BATCH = 8
POISON = {
    "not json": (b"{this is not json", "invalid_json"),
    "no request id": (json.dumps({"pixels": [[0] * 28] * 28}).encode(), "invalid_request"),
    "bad base64": (json.dumps({"request_id": "p-b64", "image_b64": "%%%"}).encode(), "invalid_request"),
    "wrong pixel shape": (
        json.dumps({"request_id": "p-shape", "pixels": [[0] * 27] * 28}).encode(),
        "invalid_request",
    ),
    "not an image": (request_message("p-image", image=b"these bytes are no image format"), "model_rejected"),
    "no value": (None, "invalid_request"),
}


def valid_requests(count: int, seed: int) -> dict[str, bytes]:
    """Half pixels (serving_default), half PNG (serving_bytes)."""
    images = payloads.synthetic_images(count, seed)
    return {
        f"r{seed}-{i}": request_message(f"r{seed}-{i}", pixels=image)
        if i % 2
        else request_message(f"r{seed}-{i}", image=payloads.encode_image(image))
        for i, image in enumerate(images)
    }


def start_worker(kafka: StreamKafka, dev_server, workdir, name: str) -> tuple[ServiceProcess, int]:
    ready = workdir / f"{name}.ready.json"
    worker = start_service(
        "infer-worker",
        [
            "--bootstrap-servers", kafka.bootstrap,
            "--requests-topic", kafka.names.requests,
            "--results-topic", kafka.names.results,
            "--dlq-topic", kafka.names.dlq,
            "--group-id", kafka.names.infer_group,
            "--server-url", dev_server.rest_url,
            "--max-batch-size", str(MAX_BATCH),
            "--max-batch-wait-ms", "20",
            "--metrics-port", "0",
            "--metrics-host", "127.0.0.1",
            "--ready-file", str(ready),
            # A killed member's partitions move after its session times out: keep that short here.
            "--kafka-config", "session.timeout.ms=6000", "heartbeat.interval.ms=500",
        ],
        workdir / f"{name}.log",
    )  # fmt: skip

    def ready_port():
        if not worker.alive():
            raise AssertionError(f"infer-worker exited {worker.process.returncode}:\n{worker.log()[-3000:]}")
        return json.loads(ready.read_text())["metrics_port"] if ready.exists() else None

    return worker, wait_until(ready_port, 60, f"{name} to start")


def results_by_id(records) -> collections.Counter:
    return collections.Counter(json.loads(r.value)["request_id"] for r in records)


def test_a_killed_worker_loses_no_request_and_repeats_at_most_one_batch(kafka, dev_server, tmp_path):
    valid = valid_requests(600, seed=1)
    stream = [(key.encode(), value) for key, value in valid.items()]
    for position, (value, _) in zip(range(37, 600, 97), POISON.values(), strict=False):
        stream.insert(position, (b"poison", value))  # poison spread through the stream
    kafka.produce(kafka.names.requests, stream)
    results = kafka.reader(kafka.names.results)

    worker, _ = start_worker(kafka, dev_server, tmp_path, "first")
    wait_until(lambda: results.poll(0.1) is not None and len(results.records) >= 80, 90, "80 results")
    worker.kill()  # SIGKILL: no chance to commit or flush anything
    results.poll(1.0)
    done_before_crash = len(set(results_by_id(results.records)))
    assert done_before_crash < len(valid), "the worker finished before the kill; the crash was not mid-stream"

    restarted, _ = start_worker(kafka, dev_server, tmp_path, "restarted")
    wait_until(
        lambda: results.poll(0.2) is not None and set(valid) <= set(results_by_id(results.records)),
        120,
        "a result for every request after the restart",
    )
    assert restarted.terminate() == 0, restarted.log()[-3000:]
    results.poll(0.5)

    counts = results_by_id(results.records)
    assert set(counts) == set(valid), f"missing results: {sorted(set(valid) - set(counts))[:10]}"
    duplicates = sum(counts.values()) - len(counts)
    assert duplicates <= MAX_BATCH, (
        f"{duplicates} duplicate results; at most one batch ({MAX_BATCH}) may repeat"
    )

    # Every result names the version that computed it and agrees with asking the server directly.
    client = RestClient(dev_server.rest_url, MODEL, retry=RetryPolicy(attempts=1))
    first = {json.loads(r.value)["request_id"]: json.loads(r.value) for r in results.records}
    assert {r["model_version"] for r in first.values()} == {2}
    images = payloads.synthetic_images(600, seed=1)
    direct = client.predict_images(images[:10], version=2)
    for index in range(10):
        result = first[f"r1-{index}"]
        assert result["signature"] == ("serving_default" if index % 2 else "serving_bytes")
        np.testing.assert_allclose(result["scores"], direct.scores[index], atol=1e-5)
        assert result["class_id"] == int(direct.class_ids[index])
    client.close()

    # Every poison message is in the dead-letter topic, with its reason and the original bytes.
    dead = kafka.reader(kafka.names.dlq)
    wait_until(
        lambda: dead.poll(0.2) is not None and len(dead.records) >= len(POISON), 30, "the dead letters"
    )
    letters = {
        (json.loads(r.value)["source"]["partition"], json.loads(r.value)["source"]["offset"]): r
        for r in dead.records
    }
    assert len(letters) == len(POISON)
    by_original = {json.loads(r.value)["original_b64"]: json.loads(r.value) for r in letters.values()}

    for case, (value, category) in POISON.items():
        letter = by_original[base64.b64encode(value or b"").decode()]
        assert letter["category"] == category, case
        assert letter["reason"], case
    image_letter = by_original[base64.b64encode(POISON["not an image"][0]).decode()]
    assert "Unknown image file format" in image_letter["reason"]
    assert image_letter["request_id"] == "p-image"


def scrape(port: int) -> dict[str, float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_sigterm_finishes_the_batch_and_a_restart_repeats_nothing(kafka, dev_server, tmp_path):
    valid = valid_requests(1000, seed=2)
    kafka.produce(kafka.names.requests, [(key.encode(), value) for key, value in valid.items()])
    results = kafka.reader(kafka.names.results)

    worker, _ = start_worker(kafka, dev_server, tmp_path, "first")
    wait_until(lambda: results.poll(0.1) is not None and len(results.records) >= 50, 90, "50 results")
    assert worker.terminate() == 0, worker.log()[-3000:]
    assert "stopped cleanly" in worker.log()
    results.poll(1.0)
    done_before = len(results.records)
    assert done_before < len(valid), "the worker finished before SIGTERM; the stop was not mid-stream"

    restarted, metrics_port = start_worker(kafka, dev_server, tmp_path, "restarted")
    wait_until(
        lambda: results.poll(0.2) is not None and set(valid) <= set(results_by_id(results.records)),
        120,
        "a result for every request",
    )

    def caught_up() -> dict[str, float] | None:
        samples = scrape(metrics_port)
        lags = [v for k, v in samples.items() if k.startswith("mlstack_infer_consumer_lag{partition=")]
        return samples if lags and not any(lags) else None

    samples = wait_until(
        caught_up, 30, "consumer lag gauges per partition, all 0 once everything is processed"
    )
    assert restarted.terminate() == 0, restarted.log()[-3000:]
    results.poll(0.5)

    counts = results_by_id(results.records)
    assert set(counts) == set(valid)
    assert sum(counts.values()) == len(valid), "a graceful stop commits its last batch: nothing may repeat"
    assert samples['mlstack_infer_messages_total{outcome="ok"}'] == len(valid) - done_before
    assert samples['mlstack_infer_messages_total{outcome="dead_letter"}'] == 0
    assert samples["mlstack_infer_batch_size_count"] >= (len(valid) - done_before) / MAX_BATCH
    assert samples["mlstack_infer_batch_size_sum"] == len(valid) - done_before
    assert (
        samples["mlstack_infer_request_duration_seconds_count"] == samples["mlstack_infer_batch_size_count"]
    )


def test_an_unreachable_model_server_is_retried_not_dead_lettered(kafka, dev_server, tmp_path, free_port):
    valid = valid_requests(20, seed=3)
    kafka.produce(kafka.names.requests, [(key.encode(), value) for key, value in valid.items()])

    class Nowhere:
        rest_url = f"http://127.0.0.1:{free_port}"

    worker, metrics_port = start_worker(kafka, Nowhere, tmp_path, "no-server")
    wait_until(
        lambda: scrape(metrics_port).get('mlstack_infer_messages_total{outcome="retried"}', 0) > 0,
        60,
        "the worker to retry",
    )
    assert scrape(metrics_port)['mlstack_infer_messages_total{outcome="dead_letter"}'] == 0
    assert worker.terminate() == 0, worker.log()[-3000:]
    # Nothing was committed: a worker with a server processes every request.
    results = kafka.reader(kafka.names.results)
    restarted, _ = start_worker(kafka, dev_server, tmp_path, "with-server")
    wait_until(
        lambda: results.poll(0.2) is not None and set(valid) <= set(results_by_id(results.records)),
        90,
        "every request once the server is there",
    )
    assert restarted.terminate() == 0
    assert kafka.reader(kafka.names.dlq).poll(1.0) == []
