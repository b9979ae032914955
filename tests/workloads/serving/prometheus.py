"""A real Prometheus (Debian package) scraping one target, for metric-name contract tests."""

from __future__ import annotations

import contextlib
import pathlib
import subprocess
from collections.abc import Callable, Iterator

import requests

from tests.workloads.serving.processes import wait_until


@contextlib.contextmanager
def running_prometheus(
    workdir: pathlib.Path, port: int, target: str, metrics_path: str
) -> Iterator[Callable[[str], float | None]]:
    """Yields ``query(promql) -> value of the first sample, or None`` while Prometheus scrapes ``target``."""
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: target\n"
        f"    metrics_path: {metrics_path}\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/api/v1/query"

    def query(promql: str) -> float | None:
        try:
            answer = requests.get(url, params={"query": promql}, timeout=5).json()
        except (requests.RequestException, ValueError):
            return None
        result = answer.get("data", {}).get("result", [])
        return float(result[0]["value"][1]) if result else None

    try:
        wait_until(lambda: query("up") is not None or process.poll() is not None, 60, "Prometheus to start")
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited: {(workdir / 'prometheus.log').read_text()[-2000:]}")
        yield query
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
