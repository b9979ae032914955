"""Serving benchmarks: the development server with request batching on vs off, and the Kafka
inference worker end to end. Everything runs as real processes on this machine, side by side.

Run: PYTHONPATH=$PWD .venv/bin/python -m tests.bench.run --only serving
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import time

from tests.workloads.serving.kafka import MockKafka
from tests.workloads.serving.processes import start_dev_server, start_service, wait_until
from tests.workloads.serving.savedmodels import make_test_savedmodel
from workloads.serving import loadtest, payloads
from workloads.serving.client import RestClient, RetryPolicy
from workloads.serving.inference_messages import request_message

MODEL = "fashion_mnist"
CONCURRENCY = 16
DURATION_S = 15.0
WORKER_MESSAGES = 4000
WORKER_BATCH = 32
INGEST_RECORDS = 5000  # the mock brokers keep about 5 MB per partition
INGEST_SHARD = 1024


def _serve_and_load(workdir: pathlib.Path, base: pathlib.Path, batching: bool, signature: str) -> dict:
    args = ["--model-base-path", str(base), "--grpc-port", "none"] + (
        ["--enable-batching"] if batching else []
    )
    server = start_dev_server(workdir / f"server-{batching}-{signature}", *args)
    try:
        client = RestClient(server.rest_url, MODEL, retry=RetryPolicy(attempts=1))
        images = payloads.synthetic_images(1, seed=1)
        if signature == "serving_bytes":
            encoded = [payloads.encode_image(images[0])]
            send = lambda c: c.predict_image_bytes(encoded)  # noqa: E731
        else:
            send = lambda c: c.predict_images(images)  # noqa: E731
        for _ in range(20):
            send(client)
        result = loadtest.run_load(
            client, send, loadtest.LoadSpec("closed", CONCURRENCY, duration_s=DURATION_S)
        )
        client.close()
        return loadtest.report(result)
    finally:
        server.terminate()


def _worker_throughput(workdir: pathlib.Path, base: pathlib.Path) -> tuple[float, int]:
    server = start_dev_server(
        workdir / "worker-server", "--model-base-path", str(base), "--grpc-port", "none"
    )
    kafka = MockKafka()
    requests_topic, results_topic = "mlstack.inference.requests", "mlstack.inference.results"
    kafka.create_topics(requests_topic, results_topic, "mlstack.inference.dlq")
    images = payloads.synthetic_images(WORKER_MESSAGES, seed=2)
    kafka.produce(
        requests_topic,
        (
            (
                f"b-{i}".encode(),
                request_message(f"b-{i}", pixels=image)
                if i % 2
                else request_message(f"b-{i}", image=payloads.encode_image(image)),
            )
            for i, image in enumerate(images)
        ),
    )
    reader = kafka.reader(results_topic)
    worker = start_service(
        "infer-worker",
        ["--bootstrap-servers", kafka.bootstrap, "--server-url", server.rest_url, "--max-batch-size", str(WORKER_BATCH),
         "--metrics-port", "none"],
        workdir / "worker.log",
    )  # fmt: skip
    try:
        arrivals: list[float] = []

        def done() -> bool:
            new = reader.poll(0.2)
            arrivals.extend([time.monotonic()] * len(new))
            return len(arrivals) >= WORKER_MESSAGES

        wait_until(done, 600, "every benchmark request to be answered")
        # Steady state: from the first result to the last (group join and model warm-up excluded).
        return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]), len(arrivals)
    finally:
        worker.terminate()
        server.terminate()
        reader.close()


def _ingest_throughput(workdir: pathlib.Path) -> tuple[float, int]:
    from workloads.serving.ingest_messages import record_message

    kafka = MockKafka()
    topic = "mlstack.ingest.images"
    kafka.create_topics(topic)
    images = payloads.synthetic_images(INGEST_RECORDS, seed=3)
    kafka.produce(
        topic,
        (
            (
                None,
                record_message(i % 10, pixels=image)
                if i % 2
                else record_message(i % 10, image=payloads.encode_image(image)),
            )
            for i, image in enumerate(images)
        ),
    )
    output = workdir / "ingest-shards"
    shutil.rmtree(output, ignore_errors=True)
    manifest = output / "manifest.json"
    ingester = start_service(
        "stream-ingest",
        ["--bootstrap-servers", kafka.bootstrap, "--output", str(output), "--shard-size", str(INGEST_SHARD),
         "--flush-interval-seconds", "1", "--metrics-port", "none"],
        workdir / "ingest.log",
    )  # fmt: skip
    try:
        progress: list[tuple[float, int]] = []

        def done() -> bool:
            records = json.loads(manifest.read_text())["records"] if manifest.exists() else 0
            if records and (not progress or records != progress[-1][1]):
                progress.append((time.monotonic(), records))
            return records >= INGEST_RECORDS

        wait_until(done, 600, "every benchmark record in the shards", interval=0.05)
        # Steady state: from the first committed shard to the last (group join excluded).
        (start, first), (end, last) = progress[0], progress[-1]
        return (last - first) / (end - start), last
    finally:
        ingester.terminate()


def run(workdir: pathlib.Path) -> str:
    load_before = os.getloadavg()[0]
    base = workdir / "models" / MODEL
    if not (base / "1").exists():
        make_test_savedmodel(base, 1, seed=1)
    rows = []
    measured = {}
    for signature in ("serving_default", "serving_bytes"):
        for batching in (False, True):
            report = _serve_and_load(workdir, base, batching, signature)
            measured[(signature, batching)] = report
            latency = report["latency_ms"]
            rows.append(
                f"| {signature} | {'on' if batching else 'off'} | {report['throughput_rps']:.0f} | "
                f"{latency['p50']:.1f} | {latency['p99']:.1f} | {report['requests'] - report['succeeded']} |"
            )
    ratios = []
    for signature in ("serving_default", "serving_bytes"):
        off, on = measured[(signature, False)], measured[(signature, True)]
        ratios.append(
            f"| {signature} | {on['throughput_rps'] / off['throughput_rps']:.2f}x | "
            f"{on['latency_ms']['p99'] / off['latency_ms']['p99']:.2f}x |"
        )
    rate, count = _worker_throughput(workdir, base)
    ingest_rate, ingested = _ingest_throughput(workdir)
    (workdir / "serving.json").write_text(
        json.dumps({f"{s}/{'on' if b else 'off'}": r for (s, b), r in measured.items()}, indent=1)
    )
    return "\n".join(
        [
            "## Serving: development server batching, inference worker, streaming ingestion",
            "",
            f"`serve-dev` over the test SavedModel (`make_test_savedmodel`), REST, {CONCURRENCY} closed-loop clients for "
            f"{DURATION_S:.0f} s per row, one image per request, client and server on the same machine. "
            "Batching uses the CPU profile of `tfs-config` (max 64 rows, 1 ms timeout).",
            "",
            "| signature | batching | throughput (req/s) | p50 (ms) | p99 (ms) | errors |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            f"Load average when the run started: {load_before:.1f} (the machine is shared). Requests are JSON over "
            "HTTP handled by Python threads on the same 2 cores as the clients; the model is tiny, so parsing and "
            "encoding dominate and batching (which saves model runs, not JSON work) gains little here. "
            "PNG requests are smaller than 784 JSON numbers, hence faster.",
            "",
            "| signature | throughput on/off | p99 on/off |",
            "| --- | ---: | ---: |",
            *ratios,
            "",
            f"`infer-worker` end to end (Kafka mock cluster -> worker -> serve-dev without batching -> Kafka), "
            f"{count} requests (half pixels, half PNG), micro-batches of up to {WORKER_BATCH}: "
            f"**{rate:.0f} messages/s** steady state (first to last result).",
            "",
            f"`stream-ingest` (Kafka mock cluster -> local shard directory), {ingested} records (half pixels, half "
            f"PNG), shards of {INGEST_SHARD}, each committed with its offsets: **{ingest_rate:.0f} records/s** "
            "steady state (first to last committed shard).",
        ]
    )
