"""TF Serving's request metrics, under TF Serving's names, units, buckets and exposition format.

Dashboards and alerts are written once against these names (docs/interfaces.md) and work on TF
Serving in the cluster and on the development server here:

- ``:tensorflow:serving:request_count{model_name, status}`` (counter, status = canonical code name);
- ``:tensorflow:serving:request_latency{model_name, API, entrypoint}`` (histogram, microseconds);
- ``:tensorflow:serving:runtime_latency{model_name, API, runtime}`` (histogram, microseconds).

TF Serving writes counters without a ``_total`` suffix and histogram buckets of
``Exponential(10, 1.8, 33)`` microseconds (``servables/tensorflow/util.cc``), which
``prometheus_client`` cannot express, hence this small registry of its own.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

from workloads.serving.codes import Code

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
RUNTIME_LATENCY = ":tensorflow:serving:runtime_latency"
BUCKET_LIMITS: tuple[float, ...] = tuple(10 * 1.8**i for i in range(33))
RUNTIME = "TF2"  # the development server runs TF2 concrete functions


class _Histogram:
    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKET_LIMITS) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(BUCKET_LIMITS, value)] += 1
        self.total += value


class TfServingMetrics:
    """Thread-safe; ``render()`` writes the page TF Serving serves at /monitoring/prometheus/metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = defaultdict(int)
        self._request_latency: dict[tuple[str, str, str], _Histogram] = defaultdict(_Histogram)
        self._runtime_latency: dict[tuple[str, str, str], _Histogram] = defaultdict(_Histogram)

    def record_request(self, model_name: str, code: Code, api: str, entrypoint: str, micros: float) -> None:
        with self._lock:
            self._requests[(model_name, code.name)] += 1
            self._request_latency[(model_name, api, entrypoint)].observe(micros)

    def record_runtime(self, model_name: str, api: str, micros: float) -> None:
        with self._lock:
            self._runtime_latency[(model_name, api, RUNTIME)].observe(micros)

    def render(self) -> str:
        with self._lock:
            lines = [f"# TYPE {REQUEST_COUNT} counter"]
            for (model, status), count in sorted(self._requests.items()):
                lines.append(f'{REQUEST_COUNT}{{model_name="{_escape(model)}",status="{status}"}} {count}')
            for name, label_names, series in (
                (REQUEST_LATENCY, ("model_name", "API", "entrypoint"), self._request_latency),
                (RUNTIME_LATENCY, ("model_name", "API", "runtime"), self._runtime_latency),
            ):
                lines.append(f"# TYPE {name} histogram")
                for labels, histogram in sorted(series.items()):
                    lines += _histogram_lines(name, dict(zip(label_names, labels, strict=True)), histogram)
        return "\n".join(lines) + "\n"


def _histogram_lines(name: str, labels: dict[str, str], histogram: _Histogram) -> list[str]:
    label_text = ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())
    lines, cumulative = [], 0
    for index, count in enumerate(histogram.buckets):
        cumulative += count
        limit = f"{BUCKET_LIMITS[index]:g}" if index < len(BUCKET_LIMITS) else "+Inf"
        lines.append(f'{name}_bucket{{{label_text},le="{limit}"}} {cumulative}')
    lines.append(f"{name}_sum{{{label_text}}} {histogram.total!r}")
    lines.append(f"{name}_count{{{label_text}}} {cumulative}")
    return lines


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
