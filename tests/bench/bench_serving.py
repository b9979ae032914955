"""Serving benchmarks: the development server with request batching on vs off, and the Kafka
inference worker end to end. Everything runs as real processes on this machine, side by side.

Run: PYTHONPATH=$PWD .venv/bin/python -m tests.bench.run --only serving
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import time

import requests

from tests.bench.bench_streaming import INGEST_SHARD, ingest_throughput
from tests.workloads.serving.processes import start_dev_server, start_service, wait_until
from tests.workloads.serving.savedmodels import make_test_savedmodel
from tests.workloads.streaming.kafka import MockKafka
from workloads.serving import loadtest, payloads
from workloads.serving.client import RestClient, RetryPolicy
from workloads.streaming.inference_messages import request_message

MODEL = "fashion_mnist"
CONCURRENCY = 16
DURATION_S = 8.0
ROUNDS = 3
SIGNATURES = ("serving_default", "serving_bytes")
WORKER_MESSAGES = 4000
WORKER_BATCH = 32


def _sender(signature: str):
    images = payloads.synthetic_images(1, seed=1)
    if signature == "serving_bytes":
        encoded = [payloads.encode_image(images[0])]
        return lambda client: client.predict_image_bytes(encoded)
    return lambda client: client.predict_images(images)


def _model_ms_per_request(rest_url: str) -> float:
    """Model run time per request served, from the server's own TF Serving metrics (a batch's run time
    is shared by the requests in it)."""
    text = requests.get(f"{rest_url}/monitoring/prometheus/metrics", timeout=10).text
    totals: dict[str, float] = {}
    for line in text.splitlines():
        for name in (":tensorflow:serving:runtime_latency_sum", ":tensorflow:serving:request_latency_count"):
            if line.startswith(name + "{"):
                totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return (
        totals[":tensorflow:serving:runtime_latency_sum"]
        / totals[":tensorflow:serving:request_latency_count"]
        / 1000
    )


def _batching_comparison(workdir: pathlib.Path, base: pathlib.Path) -> tuple[dict, dict]:
    """Both servers up at once; rounds alternate off/on so both see the same background load."""
    servers = {
        batching: start_dev_server(
            workdir / f"server-batching-{batching}",
            "--model-base-path",
            str(base),
            "--grpc-port",
            "none",
            *(["--enable-batching"] if batching else []),
        )
        for batching in (False, True)
    }
    try:
        clients = {
            b: RestClient(s.rest_url, MODEL, retry=RetryPolicy(attempts=1)) for b, s in servers.items()
        }
        runs: dict[tuple[str, bool], list[dict]] = {(sig, b): [] for sig in SIGNATURES for b in (False, True)}
        for signature in SIGNATURES:
            for client in clients.values():
                for _ in range(20):
                    _sender(signature)(client)
        for _ in range(ROUNDS):
            for signature in SIGNATURES:
                for batching, client in clients.items():
                    spec = loadtest.LoadSpec("closed", CONCURRENCY, duration_s=DURATION_S)
                    runs[(signature, batching)].append(
                        loadtest.report(loadtest.run_load(client, _sender(signature), spec))
                    )
        shares = {b: _model_ms_per_request(s.rest_url) for b, s in servers.items()}
        for client in clients.values():
            client.close()
        return runs, shares
    finally:
        for server in servers.values():
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
    kafka = MockKafka()
    kafka.create_topics("mlstack.ingest.images")
    _, rate, records = ingest_throughput(workdir, kafka, "mlstack.ingest.images")
    return rate, records


def run(workdir: pathlib.Path) -> str:
    load_before = os.getloadavg()[0]
    base = workdir / "models" / MODEL
    if not (base / "1").exists():
        make_test_savedmodel(base, 1, seed=1)
    runs, shares = _batching_comparison(workdir, base)
    (workdir / "serving.json").write_text(
        json.dumps({f"{s}/{'on' if b else 'off'}": r for (s, b), r in runs.items()}, indent=1)
    )

    def median(signature: str, batching: bool, key) -> float:
        return statistics.median(key(r) for r in runs[(signature, batching)])

    throughput = lambda r: r["throughput_rps"]  # noqa: E731
    p50, p99 = (lambda r: r["latency_ms"]["p50"]), (lambda r: r["latency_ms"]["p99"])
    rows, ratios = [], []
    for signature in SIGNATURES:
        for batching in (False, True):
            each = " / ".join(f"{throughput(r):.0f}" for r in runs[(signature, batching)])
            errors = sum(r["requests"] - r["succeeded"] for r in runs[(signature, batching)])
            rows.append(
                f"| {signature} | {'on' if batching else 'off'} | {median(signature, batching, throughput):.0f} | "
                f"{each} | {median(signature, batching, p50):.1f} | {median(signature, batching, p99):.1f} | {errors} |"
            )
        ratios.append(
            f"| {signature} | {median(signature, True, throughput) / median(signature, False, throughput):.2f}x | "
            f"{median(signature, True, p99) / median(signature, False, p99):.2f}x |"
        )
    rate, count = _worker_throughput(workdir, base)
    ingest_rate, ingested = _ingest_throughput(workdir)
    load_after = os.getloadavg()[0]
    return "\n".join(
        [
            "## Serving: development server batching, inference worker, streaming ingestion",
            "",
            f"Load average {load_before:.1f} -> {load_after:.1f} (the machine is shared).",
            "",
            f"`serve-dev` over the `plain` model as `workloads.workflow.export` exports it (untrained weights), REST, "
            f"{CONCURRENCY} closed-loop clients, one image per request, clients and server on the same 2 cores. "
            f"Two servers (batching off and on, the CPU profile of `tfs-config`: up to 64 rows, 1 ms timeout) run "
            f"side by side; {ROUNDS} rounds of {DURATION_S:.0f} s alternate between them. Medians of the rounds:",
            "",
            "| signature | batching | throughput (req/s) | per round | p50 (ms) | p99 (ms) | errors |",
            "| --- | --- | ---: | --- | ---: | ---: | ---: |",
            *rows,
            "",
            "| signature | throughput on/off | p99 on/off |",
            "| --- | ---: | ---: |",
            *ratios,
            "",
            f"Model run time per request served (the servers' own `runtime_latency` sum over their request count): "
            f"{shares[False]:.2f} ms without batching, {shares[True]:.2f} ms with it. Clients, JSON, HTTP and the "
            "model all share the same 2 cores, so what batching saves in model time shows in throughput only "
            "partly here.",
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
