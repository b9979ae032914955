"""Load generation against a TF Serving endpoint: closed loop or open loop, with a JSON report and plots.

- **closed loop**: ``concurrency`` clients, each sending its next request as soon as the previous one
  answers. Throughput is whatever the server sustains at that concurrency; latency is per request.
- **open loop**: requests *arrive* at a constant ``rate`` whether or not earlier ones have answered,
  as independent users do. Latency is measured from the scheduled arrival time, so time spent waiting
  for a free client when the server falls behind counts too (no coordinated omission).

The report gives throughput, p50/p95/p99/max latency of successful requests and errors by kind; the
plots are a latency histogram and latency over time (errors marked). This is what autoscaling
experiments are judged with, so the numbers come from the client side, like a user's.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import pathlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np

from workloads.serving.client import ModelServerClient, ServingError

Mode = Literal["closed", "open"]


@dataclasses.dataclass(frozen=True)
class LoadSpec:
    mode: Mode = "closed"
    concurrency: int = 8  # closed: clients; open: most requests in flight at once
    rate: float = 50.0  # open: arrivals per second
    duration_s: float = 10.0
    max_requests: int | None = None  # stop after this many, if it comes before the duration

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.mode == "open" and self.rate <= 0:
            raise ValueError(f"open-loop rate must be greater than 0, got {self.rate}")
        if self.duration_s <= 0:
            raise ValueError(f"duration must be greater than 0, got {self.duration_s}")
        if self.max_requests is not None and self.max_requests < 1:
            raise ValueError(f"max requests must be at least 1, got {self.max_requests}")


@dataclasses.dataclass(frozen=True)
class Sample:
    sent_s: float  # (scheduled) send time, seconds after the start
    latency_s: float
    error: str | None  # None = success; else the kind, e.g. "503 UNAVAILABLE"


@dataclasses.dataclass(frozen=True)
class LoadResult:
    spec: LoadSpec
    samples: list[Sample]
    wall_s: float
    started_at: str


Request = Callable[[ModelServerClient], Any]


def run_load(
    client: ModelServerClient, send: Request, spec: LoadSpec, progress: Callable[[int], None] | None = None
) -> LoadResult:
    """Drives ``send(client)`` under ``spec``; ``client`` must be thread-safe (both of ours are)."""
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    runner = _closed_loop if spec.mode == "closed" else _open_loop
    start = time.perf_counter()
    samples = runner(client, send, spec, start, progress or (lambda _: None))
    wall = time.perf_counter() - start
    return LoadResult(spec, sorted(samples, key=lambda s: s.sent_s), wall, started_at)


def _timed(client: ModelServerClient, send: Request, sent_at: float, start: float) -> Sample:
    try:
        send(client)
        error = None
    except ServingError as failure:
        error = (
            " ".join(
                p for p in (str(failure.http_status or ""), failure.code.name if failure.code else "") if p
            )
            or "error"
        )
    except Exception as failure:  # the load generator reports failures; it does not die of them
        error = type(failure).__name__
    return Sample(sent_at - start, time.perf_counter() - sent_at, error)


def _closed_loop(client, send, spec: LoadSpec, start: float, progress) -> list[Sample]:
    deadline = start + spec.duration_s
    budget = [spec.max_requests if spec.max_requests is not None else math.inf]
    lock = threading.Lock()
    results: list[list[Sample]] = [[] for _ in range(spec.concurrency)]

    def user(index: int) -> None:
        while time.perf_counter() < deadline:
            with lock:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            results[index].append(_timed(client, send, time.perf_counter(), start))
            progress(1)

    threads = [threading.Thread(target=user, args=(i,), name=f"load-{i}") for i in range(spec.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [sample for per_user in results for sample in per_user]


def _open_loop(client, send, spec: LoadSpec, start: float, progress) -> list[Sample]:
    total = math.floor(spec.duration_s * spec.rate)
    if spec.max_requests is not None:
        total = min(total, spec.max_requests)
    samples: list[Sample] = []
    lock = threading.Lock()

    def arrive(scheduled: float) -> None:
        sample = _timed(client, send, scheduled, start)
        with lock:
            samples.append(sample)
        progress(1)

    with ThreadPoolExecutor(max_workers=spec.concurrency, thread_name_prefix="load") as pool:
        for index in range(total):
            scheduled = start + index / spec.rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(arrive, scheduled)
    return samples


def report(result: LoadResult, **context: Any) -> dict[str, Any]:
    """The JSON report; ``context`` (target, signature ...) is copied in as is."""
    spec = result.spec
    ok = np.array([s.latency_s for s in result.samples if s.error is None]) * 1000
    errors: dict[str, int] = {}
    for sample in result.samples:
        if sample.error is not None:
            errors[sample.error] = errors.get(sample.error, 0) + 1
    count = len(result.samples)
    latency = (
        {
            "p50": _round(np.percentile(ok, 50)),
            "p95": _round(np.percentile(ok, 95)),
            "p99": _round(np.percentile(ok, 99)),
            "max": _round(ok.max()),
            "mean": _round(ok.mean()),
            "min": _round(ok.min()),
        }
        if ok.size
        else None
    )
    return {
        **context,
        "mode": spec.mode,
        "concurrency": spec.concurrency,
        "offered_rate_rps": spec.rate if spec.mode == "open" else None,
        "started_at": result.started_at,
        "duration_s": _round(result.wall_s),
        "requests": count,
        "succeeded": int(ok.size),
        "errors": dict(sorted(errors.items())),
        "error_rate": _round(sum(errors.values()) / count if count else 0.0, 4),
        "throughput_rps": _round(ok.size / result.wall_s if result.wall_s else 0.0),
        "latency_ms": latency,
    }


def plot(result: LoadResult, out_dir: pathlib.Path, title: str) -> list[pathlib.Path]:
    """``latency_histogram.png`` and ``latency_over_time.png`` in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    good = [s for s in result.samples if s.error is None]
    bad = [s for s in result.samples if s.error is not None]
    paths = [out_dir / "latency_histogram.png", out_dir / "latency_over_time.png"]
    for path, draw in zip(paths, (_draw_histogram, _draw_over_time), strict=True):
        figure, axis = plt.subplots(figsize=(8, 4.5))
        draw(axis, good, bad, title)
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
    return paths


def _latencies_ms(samples: list[Sample]) -> np.ndarray:
    return np.array([s.latency_s * 1000 for s in samples])


def _draw_histogram(axis: Any, good: list[Sample], _bad: list[Sample], title: str) -> None:
    latencies = _latencies_ms(good)
    if latencies.size:
        axis.hist(latencies, bins=min(60, max(10, latencies.size // 20)), color="#4c72b0")
        for quantile, style in ((50, "-"), (95, "--"), (99, ":")):
            value = np.percentile(latencies, quantile)
            axis.axvline(value, color="black", linestyle=style, label=f"p{quantile} {value:.1f} ms")
        axis.legend()
    axis.set_xlabel("latency (ms)")
    axis.set_ylabel("requests")
    axis.set_title(f"{title}: latency of {latencies.size} successful requests")


def _draw_over_time(axis: Any, good: list[Sample], bad: list[Sample], title: str) -> None:
    if good:
        axis.scatter([s.sent_s for s in good], _latencies_ms(good), s=4, alpha=0.5, label="success")
        windows = _windowed_percentiles(good)
        if windows:
            times, p50, p99 = zip(*windows, strict=True)
            axis.plot(times, p50, color="black", label="p50 per second")
            axis.plot(times, p99, color="#dd8452", label="p99 per second")
    if bad:
        axis.scatter(
            [s.sent_s for s in bad],
            _latencies_ms(bad),
            s=10,
            marker="x",
            color="red",
            label=f"errors ({len(bad)})",
        )
    axis.set_xlabel("time since start (s)")
    axis.set_ylabel("latency (ms)")
    axis.set_title(f"{title}: latency over time")
    if good or bad:
        axis.legend()


def _windowed_percentiles(samples: list[Sample]) -> list[tuple[float, float, float]]:
    by_second: dict[int, list[float]] = {}
    for sample in samples:
        by_second.setdefault(int(sample.sent_s), []).append(sample.latency_s * 1000)
    return [
        (second + 0.5, float(np.percentile(values, 50)), float(np.percentile(values, 99)))
        for second, values in sorted(by_second.items())
    ]


def _round(value: float, digits: int = 3) -> float:
    return round(float(value), digits)
