"""The demo's last step: serve the promoted model through ``serve-dev`` and send it requests.

Starts the development server as a user would (``python -m workloads serve-dev``), then asks it over
REST (``serving_default``, pixels) and over gRPC (``serving_bytes``, the same images as PNG files),
compares the two, measures accuracy on held-out images, runs a short load test with plots, and stops
the server. Everything it did is in ``<workdir>/serving.json``; the commands to do it by hand are
printed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
from typing import Any

import numpy as np

from workloads.core import fsutil
from workloads.core.errors import WorkloadError
from workloads.serving import loadtest, payloads
from workloads.serving.client import RetryPolicy, make_client
from workloads.serving.dev.process import start_dev_server

log = logging.getLogger(__name__)
CHUNK = 100  # images per predict request
DEMO_IMAGES = 500  # held-out images the demo sends


@dataclasses.dataclass(frozen=True)
class ServeReport:
    summary: dict[str, Any]
    report_path: pathlib.Path
    plots: list[pathlib.Path]

    def artifacts(self) -> dict[str, str]:
        return {
            "serve-dev answers and load test (serving.json)": str(self.report_path),
            "load test plots": str(self.plots[0].parent),
        }


@dataclasses.dataclass(frozen=True)
class _Answers:
    """What the server answered: classes over REST (pixels) and gRPC (PNG bytes), and a load test."""

    version: int
    over_rest: np.ndarray
    over_grpc: np.ndarray
    grpc_versions: list[int]
    load: loadtest.LoadResult


def serve_and_query(
    model_base_path: str,
    model_name: str,
    images: np.ndarray,
    labels: np.ndarray,
    workdir: pathlib.Path,
    *,
    load_seconds: float = 5.0,
) -> ServeReport:
    """``images`` uint8 ``[N, 28, 28]`` with their ``labels``; ``model_base_path`` holds ``<model_name>/<v>/``."""
    base = f"{model_base_path.rstrip('/')}/{model_name}"
    server = start_dev_server(
        workdir, "--model-base-path", base, "--model-name", model_name, "--enable-batching"
    )
    try:
        answers = _ask(server.rest_url, server.grpc_url, model_name, images, load_seconds)
        load = loadtest.report(
            answers.load, target=server.rest_url, signature="serving_default", batch_size=1
        )
        plots = loadtest.plot(answers.load, workdir / "loadtest", "serve-dev, closed loop, 8 clients")
    finally:
        code = server.terminate()
    if code != 0:
        raise WorkloadError(f"serve-dev exited with {code} on SIGTERM; see {server.log_path}")
    summary = {
        "model_name": model_name,
        "model_version": answers.version,
        "images": len(images),
        "accuracy_rest_pixels": round(float(np.mean(answers.over_rest == labels)), 4),
        "accuracy_grpc_png": round(float(np.mean(answers.over_grpc == labels)), 4),
        "rest_grpc_agreement": round(float(np.mean(answers.over_rest == answers.over_grpc)), 4),
        "grpc_reported_versions": answers.grpc_versions,
        "loadtest": load,
        "repeat_by_hand": [
            f"python -m workloads serve-dev --model-base-path {base} --model-name {model_name}",
            f"curl -s localhost:8501/v1/models/{model_name}",
            "python -m workloads predict --synthetic 4 --signature serving_bytes",
            "python -m workloads loadtest --concurrency 8 --duration 10",
        ],
    }
    path = workdir / "serving.json"
    fsutil.atomic_write_text(path, json.dumps(summary, indent=1))
    return ServeReport(summary, path, plots)


def _ask(rest_url: str, grpc_url: str, model_name: str, images: np.ndarray, load_seconds: float) -> _Answers:
    retry = RetryPolicy(attempts=3)
    with (
        make_client(rest_url, model_name, retry=retry) as rest,
        make_client(grpc_url, model_name, retry=retry) as grpc,
    ):
        version = rest.latest_available_version()
        chunks = range(0, len(images), CHUNK)
        over_rest = np.concatenate(
            [rest.predict_images(images[i : i + CHUNK], version=version).class_ids for i in chunks]
        )
        encoded = [payloads.encode_image(image) for image in images]
        grpc_answers = [grpc.predict_image_bytes(encoded[i : i + CHUNK]) for i in chunks]
        sample = images[:1]
        load = loadtest.run_load(
            rest,
            lambda client: client.predict_images(sample),
            loadtest.LoadSpec("closed", 8, duration_s=load_seconds),
        )
    return _Answers(
        version,
        over_rest,
        np.concatenate([a.class_ids for a in grpc_answers]),
        sorted({a.model_version for a in grpc_answers}),
        load,
    )


def describe(report: ServeReport) -> str:
    s, load = report.summary, report.summary["loadtest"]
    latency = load["latency_ms"] or {}
    return (
        f"serve-dev served {s['model_name']} version {s['model_version']}: accuracy {s['accuracy_rest_pixels']:.4f} "
        f"on {s['images']} held-out images over REST (pixels), {s['accuracy_grpc_png']:.4f} over gRPC (PNG bytes), "
        f"the two agree on {100 * s['rest_grpc_agreement']:.1f}%; load test: {load['throughput_rps']:.0f} req/s, "
        f"p99 {latency.get('p99', float('nan')):.1f} ms, {sum(load['errors'].values())} errors"
    )


def serve_promoted(
    model_base_path: str, model_name: str, test_url: str, workdir: pathlib.Path
) -> ServeReport:
    """The pipeline's last stage: the promoted model through serve-dev, asked over REST and gRPC."""
    from workloads.data.shards import ShardCache, ShardSet

    images, labels = ShardSet.open(test_url, cache=ShardCache()).read_all()
    count = min(len(images), DEMO_IMAGES)
    report = serve_and_query(
        model_base_path,
        model_name,
        np.asarray(images[:count]),
        np.asarray(labels[:count]),
        workdir / "serving" / "serve-dev",
    )
    print(describe(report), flush=True)
    return report
