"""The load generator against the development server: reports, plots, pacing and error accounting."""

from __future__ import annotations

import json
import pathlib

import pytest
from PIL import Image

from tests.workloads.conftest import MODEL
from workloads import cli
from workloads.serving import loadtest

pytestmark = [pytest.mark.xdist_group("dev_server"), pytest.mark.slow]


def run_loadtest(tmp_path, server_url: str, *args: str) -> tuple[int, dict]:
    out = tmp_path / "out"
    code = cli.main(
        [
            "loadtest",
            "--server-url",
            server_url,
            "--model-name",
            MODEL,
            "--output-dir",
            str(out),
            "--log-format",
            "text",
            *args,
        ]
    )
    return code, json.loads((out / "report.json").read_text())


def test_closed_loop_reports_every_request_and_draws_both_plots(dev_server, tmp_path):
    code, report = run_loadtest(
        tmp_path, dev_server.rest_url, "--concurrency", "4", "--requests", "60", "--duration", "60"
    )
    assert code == 0
    assert report["requests"] == report["succeeded"] == 60 and report["errors"] == {}
    latency = report["latency_ms"]
    assert 0 < latency["min"] <= latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert report["throughput_rps"] > 0 and report["mode"] == "closed" and report["concurrency"] == 4
    for name in ("latency_histogram.png", "latency_over_time.png"):
        with Image.open(tmp_path / "out" / name) as image:
            assert image.format == "PNG" and image.size[0] >= 400


def test_open_loop_sends_exactly_the_offered_arrivals(dev_server, tmp_path):
    code, report = run_loadtest(
        tmp_path,
        dev_server.grpc_url,
        "--mode",
        "open",
        "--rate",
        "40",
        "--duration",
        "1.5",
        "--signature",
        "serving_bytes",
    )
    assert code == 0
    assert report["requests"] == 60 and report["succeeded"] == 60
    assert report["offered_rate_rps"] == 40 and report["mode"] == "open"
    assert report["duration_s"] >= 60 / 40 * 0.95  # arrivals are paced, not sent as fast as possible


def test_failed_requests_are_counted_by_kind_and_fail_the_run(dev_server, tmp_path):
    code, report = run_loadtest(
        tmp_path,
        dev_server.rest_url,
        "--version",
        "7",
        "--requests",
        "10",
        "--warmup-requests",
        "0",
        "--concurrency",
        "2",
    )
    assert code == 1, "an error rate above --max-error-rate must fail the run"
    assert report["errors"] == {"404 NOT_FOUND": 10} and report["succeeded"] == 0
    assert report["latency_ms"] is None and report["error_rate"] == 1.0


def test_open_loop_latency_counts_from_the_scheduled_arrival():
    """When the server is slower than the arrival rate, waiting for a free client is latency too."""
    import time

    class SlowClient:
        pass

    def slow(_client):
        time.sleep(0.05)

    spec = loadtest.LoadSpec(mode="open", concurrency=1, rate=100, duration_s=0.2)
    result = loadtest.run_load(SlowClient(), slow, spec)
    latencies = [s.latency_s for s in result.samples]
    assert len(latencies) == 20
    # One client, 50 ms per request, a new arrival every 10 ms: the last one waited for all before it.
    assert latencies[-1] > 0.5 and latencies[0] < 0.2


def test_the_pipeline_ends_by_serving_the_promoted_model_over_both_protocols(model_base, tmp_path, capsys):
    from workloads.data import datasets
    from workloads.workflow import pipeline
    from workloads.workflow.serving_check import serve_promoted

    assert list(pipeline.STAGES)[-1] == "serve", "make demo must end by serving the model"
    datasets.ingest_synthetic(
        str(tmp_path / "data"), train_records=32, test_records=40, seed=0, shard_size=16
    )
    report = serve_promoted(str(model_base.parent), MODEL, str(tmp_path / "data" / "test"), tmp_path)
    summary = json.loads((tmp_path / "serving" / "serve-dev" / "serving.json").read_text())
    assert summary == report.summary
    assert (
        summary["images"] == 40 and summary["model_version"] == 2 and summary["grpc_reported_versions"] == [2]
    )
    assert summary["rest_grpc_agreement"] == 1.0, (
        "pixels over REST and PNG over gRPC must give the same classes"
    )
    assert summary["loadtest"]["succeeded"] > 0 and summary["loadtest"]["errors"] == {}
    assert all(pathlib.Path(p).exists() for p in report.artifacts().values())
    assert "served fashion_mnist version 2" in capsys.readouterr().out
