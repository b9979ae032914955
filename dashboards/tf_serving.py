"""TF Serving's metric names and latency unit (docs/interfaces.md), as every board and rule reads them.

The development server exports the same names (``workloads.serving.dev.metrics``). The dashboards do not
import the workloads, so ``tests/dashboards/test_facts.py`` holds the two definitions equal.
"""

from __future__ import annotations

REQUEST_COUNT = ":tensorflow:serving:request_count"
"""Counter of requests, labels ``model_name`` and ``status`` (no ``_total`` suffix, as TF Serving writes it)."""
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
"""Histogram of request latency in microseconds, labels ``model_name``, ``API``, ``entrypoint``."""
RUNTIME_LATENCY = ":tensorflow:serving:runtime_latency"
"""Histogram of the model's own run time in microseconds, labels ``model_name``, ``API``, ``runtime``."""
MICROSECONDS = 1e6
"""TF Serving's latencies divided by this are seconds."""
