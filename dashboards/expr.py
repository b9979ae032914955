"""PromQL fragments that dashboards and rules share, so a query shape is written once.

Selectors are passed as PromQL text (``'{run=~"$run"}'``); windows default to Grafana's
``$__rate_interval``, which adapts to the scrape interval and the zoom level; rules pass a fixed one.
"""

from __future__ import annotations

from collections.abc import Sequence

RATE_INTERVAL = "$__rate_interval"


def sum_by(labels: Sequence[str]) -> str:
    """``sum by (a, b) `` or, with no labels, ``sum``; an argument in parentheses follows."""
    return f"sum by ({', '.join(labels)}) " if labels else "sum"


def sum_rate(metric: str, selector: str = "", labels: Sequence[str] = (), window: str = RATE_INTERVAL) -> str:
    """Per-second rate of a counter, summed over everything but ``labels``."""
    return f"{sum_by(labels)}(rate({metric}{selector}[{window}]))"


def quantile(
    q: float,
    histogram: str,
    selector: str = "",
    labels: Sequence[str] = (),
    window: str = RATE_INTERVAL,
    divide_by: float | None = None,
) -> str:
    """The ``q`` quantile of a histogram (``histogram`` without ``_bucket``), per ``labels``.

    ``divide_by`` converts units, e.g. 1e6 for TF Serving's microseconds to seconds.
    """
    buckets = sum_rate(f"{histogram}_bucket", selector, [*labels, "le"], window)
    result = f"histogram_quantile({q}, {buckets})"
    return f"{result} / {divide_by:g}" if divide_by else result


def mean(histogram: str, selector: str = "", labels: Sequence[str] = (), window: str = RATE_INTERVAL) -> str:
    """Mean observation of a histogram over the window, per ``labels``."""
    return f"{sum_rate(f'{histogram}_sum', selector, labels, window)} / {sum_rate(f'{histogram}_count', selector, labels, window)}"


def ratio_or_zero(part: str, whole: str) -> str:
    """``part / whole`` that reads 0 rather than nothing when ``part`` has no series (no errors yet)."""
    return f"({part} or {whole} * 0) / {whole}"
