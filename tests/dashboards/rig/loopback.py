"""A real Prometheus and node_exporter on 127.0.0.1, for the integration test and the dashboard snapshots.

Both are the Debian packages' binaries (``prometheus``, ``prometheus-node-exporter``), started on
free ports with a generated configuration and a temporary storage directory, and stopped (by their
own process ids) when the ``with`` block ends. Prometheus scrapes every second and evaluates the
generated rule files every second, so a few seconds of real traffic give every panel data.

Every scrape job finds its targets in a file (Prometheus's file-based service discovery), so a
target that starts later, on a port only known once it runs (a training worker on ``--metrics-port 0``),
joins the running Prometheus the way a new pod joins through Kubernetes discovery:
:meth:`Prometheus.set_targets`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

import yaml

SCRAPE_INTERVAL_SECONDS = 1
# What Grafana's $__rate_interval becomes at this scrape interval: four scrapes.
RATE_INTERVAL = f"{4 * SCRAPE_INTERVAL_SECONDS}s"


class LoopbackError(RuntimeError):
    """A process would not start or answer; the message carries the end of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise LoopbackError(f"{name} is not installed: run `make system-deps` (Debian package {name})")
    return path


def _log_tail(path: pathlib.Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_http(url: str, process: subprocess.Popen[bytes], log: pathlib.Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LoopbackError(f"{process.args[0]} exited with {process.returncode}:\n{_log_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise LoopbackError(f"{url} did not answer within {timeout:.0f}s:\n{_log_tail(log)}")


@contextlib.contextmanager
def _process(args: Sequence[str], log: pathlib.Path, ready_url: str, timeout: float) -> Iterator[None]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as output:
        process = subprocess.Popen(list(args), stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_http(ready_url, process, log, timeout)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def node_exporter(workdir: pathlib.Path, timeout: float = 20) -> Iterator[str]:
    """Runs node_exporter on a free loopback port; yields its ``host:port``."""
    address = f"127.0.0.1:{free_port()}"
    args = [
        _binary("prometheus-node-exporter"),
        f"--web.listen-address={address}",
        # Debian enables the systemd collector, which needs the system bus; none in a build container.
        "--no-collector.systemd",
    ]
    with _process(args, workdir / "node_exporter.log", f"http://{address}/metrics", timeout):
        yield address


@dataclasses.dataclass(frozen=True)
class ScrapeJob:
    """One Prometheus job: its name (the ``job`` label), its first ``host:port`` targets (more can
    come later, see :meth:`Prometheus.set_targets`) and the path its targets serve metrics on."""

    name: str
    targets: Sequence[str] = ()
    metrics_path: str = "/metrics"


def _write_targets(path: pathlib.Path, targets: Sequence[str]) -> None:
    """A file_sd target file, replaced atomically so Prometheus never reads half of one."""
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps([{"targets": sorted(targets)}]), encoding="utf-8")
    staging.replace(path)


class Prometheus:
    """Client for the HTTP API of a running Prometheus."""

    def __init__(self, url: str, targets_dir: pathlib.Path | None = None) -> None:
        self.url = url
        self.targets_dir = targets_dir

    def set_targets(self, job: str, targets: Sequence[str]) -> None:
        """Replaces the targets of ``job`` (one of the jobs it was started with); Prometheus follows within a second."""
        path = self.targets_dir / f"{job}.json" if self.targets_dir else None
        if path is None or not path.exists():
            raise LoopbackError(f"Prometheus at {self.url} has no scrape job {job!r} with a target file")
        _write_targets(path, targets)

    def api(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise LoopbackError(f"Prometheus /api/v1/{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        return self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}")[
            "result"
        ]

    def metric_names(self) -> set[str]:
        return set(self.api("label/__name__/values"))

    def targets(self) -> list[dict[str, Any]]:
        return self.api("targets")["activeTargets"]

    def rule_groups(self) -> list[dict[str, Any]]:
        return self.api("rules")["groups"]

    def wait_for_targets(self, instances: Sequence[str], timeout: float = 30) -> None:
        """Until every target in ``instances`` (``host:port``) was scraped successfully twice (rates need two samples)."""
        deadline = time.monotonic() + timeout
        wanted = set(instances)
        pattern = "|".join(sorted(wanted))
        while True:
            samples = self.query(f'count_over_time(up{{instance=~"{pattern}"}}[1m]) >= 2 and up == 1')
            if {sample["metric"]["instance"] for sample in samples} >= wanted:
                return
            if time.monotonic() > deadline:
                states = {t["scrapeUrl"]: (t["health"], t.get("lastError")) for t in self.targets()}
                raise LoopbackError(f"targets {sorted(wanted)} not up within {timeout:.0f}s: {states}")
            time.sleep(0.25)

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")


def prometheus_config(
    jobs: Sequence[ScrapeJob], rule_files: Sequence[pathlib.Path], targets_dir: pathlib.Path
) -> dict[str, Any]:
    """Scrape and evaluate every second; each job reads its targets from ``targets_dir/<job>.json``."""
    interval = f"{SCRAPE_INTERVAL_SECONDS}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": job.name,
                "metrics_path": job.metrics_path,
                # Prometheus watches the file; the refresh interval is only the fallback.
                "file_sd_configs": [
                    {"files": [str(targets_dir / f"{job.name}.json")], "refresh_interval": interval}
                ],
            }
            for job in jobs
        ],
    }


@contextlib.contextmanager
def prometheus(
    workdir: pathlib.Path,
    jobs: Sequence[ScrapeJob],
    rule_files: Sequence[pathlib.Path] = (),
    timeout: float = 30,
) -> Iterator[Prometheus]:
    """Runs Prometheus on a free loopback port, scraping ``jobs`` (plus itself as job ``prometheus``)."""
    port = free_port()
    jobs = [ScrapeJob("prometheus", [f"127.0.0.1:{port}"]), *jobs]
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise LoopbackError(f"scrape job names must differ: {names}")
    targets_dir = workdir / "targets"
    targets_dir.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        _write_targets(targets_dir / f"{job.name}.json", job.targets)
    config = prometheus_config(jobs, rule_files, targets_dir)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=True), encoding="utf-8")
    check = subprocess.run(
        [_binary("promtool"), "check", "config", str(config_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        raise LoopbackError(f"{config_path}: promtool check config failed:\n{check.stdout}{check.stderr}")
    args = [
        _binary("prometheus"),
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1h",
        "--log.level=warn",
    ]
    url = f"http://127.0.0.1:{port}"
    # /-/ready answers 503 until the TSDB is open and the rules are loaded.
    with _process(args, workdir / "prometheus.log", f"{url}/-/ready", timeout):
        yield Prometheus(url, targets_dir)
