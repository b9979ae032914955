"""Draws a dashboard's time series panels from real Prometheus data into a small PNG (matplotlib).

No Grafana server installs here, so the README shows these pictures instead: the same panels, the
same queries (with ``$__rate_interval`` and variables filled in as Grafana would), the same legend
formats and units, drawn from :func:`tests.dashboards.rig.live.check_queries` results.
"""

from __future__ import annotations

import math
import pathlib
import re
from collections.abc import Sequence
from typing import Any

from tests.dashboards.rig.live import QueryResult

MAX_PANELS = 6
MAX_SERIES = 8
_LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def legend(legend_format: str, labels: dict[str, str]) -> str:
    """Grafana's legend format: ``{{label}}`` replaced by the series' value; ``__auto`` lists the labels."""
    if legend_format in ("", "__auto"):
        shown = {k: v for k, v in labels.items() if k != "__name__"}
        return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or labels.get("__name__", "value")
    return _LEGEND_LABEL.sub(lambda m: labels.get(m.group(1), ""), legend_format).strip()


def _scale(value: float, steps: Sequence[tuple[float, str]], digits: int) -> str:
    for factor, suffix in steps:
        if abs(value) >= factor:
            return f"{value / factor:.{digits}g}{suffix}"
    return f"{value:.{digits}g}"


_BYTES = [(2**40, " TiB"), (2**30, " GiB"), (2**20, " MiB"), (2**10, " KiB")]
_SI = [(1e9, "G"), (1e6, "M"), (1e3, "k")]


def format_value(value: float, unit: str, digits: int = 3) -> str:
    """A tick label in Grafana's units (the subset mlstack's dashboards use), ``digits`` significant digits."""
    if math.isnan(value):
        return ""
    if unit == "percentunit":
        return f"{value * 100:.{digits + 1}g}%"
    if unit == "percent":
        return f"{value:.{digits + 1}g}%"
    if unit == "s":
        return f"{value * 1000:.{digits}g} ms" if 0 < abs(value) < 1 else f"{value:.{digits}g} s"
    if unit in ("bytes", "Bps"):
        scaled = _scale(value, _BYTES, digits)
        return scaled + (" B" if abs(value) < 1024 else "") + ("/s" if unit == "Bps" else "")
    if unit == "mbytes":
        return _scale(value * 2**20, _BYTES, digits)
    suffix = {"celsius": " °C", "watt": " W", "reqps": " req/s", "ops": " ops/s"}.get(unit, "")
    return _scale(value, _SI, digits) + suffix


def tick_labels(values: Sequence[float], unit: str) -> list[str]:
    """Labels for an axis's ticks, with as many digits as it takes to tell them apart (a narrow range,
    such as a disk that is 70.79% then 70.80% full, would otherwise repeat one label)."""
    labels: list[str] = []
    for digits in range(3, 9):
        labels = [format_value(value, unit, digits) for value in values]
        if len(set(labels)) == len(labels):
            break
    return labels


def draw(
    title: str,
    panels: Sequence[tuple[dict[str, Any], Sequence[QueryResult]]],
    output: pathlib.Path,
    start: float,
    end: float,
) -> pathlib.Path:
    """One PNG of ``panels`` (Grafana panel JSON and its queries' results), two per row, all over the
    time range [start, end] (unix seconds), shown as seconds since ``start``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    shown = list(panels)[:MAX_PANELS]
    if not shown:
        raise ValueError(f"{title}: no panel with data to draw")
    rows = math.ceil(len(shown) / 2)
    figure, axes = pyplot.subplots(rows, 2, figsize=(11, 2.6 * rows + 0.5), dpi=80, squeeze=False)
    for axis in axes.flat[len(shown) :]:
        axis.set_visible(False)
    for axis, (panel, results) in zip(axes.flat, shown, strict=False):
        _draw_panel(axis, panel, results, start, end)
    figure.suptitle(title, fontsize=12, x=0.01, ha="left")
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, format="png", metadata={"Software": None})
    pyplot.close(figure)
    return output


def _draw_panel(
    axis: Any, panel: dict[str, Any], results: Sequence[QueryResult], start: float, end: float
) -> None:
    """One panel on ``axis``: its series, title, unit and scale as Grafana draws them."""
    from matplotlib.ticker import NullFormatter

    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    scale = defaults.get("custom", {}).get("scaleDistribution", {})
    if scale.get("type") == "log":
        axis.set_yscale("log", base=scale.get("log", 10))
    _plot_series(axis, panel, results, start)
    axis.set_title(panel["title"], fontsize=10, loc="left")
    axis.yaxis.set_major_formatter(_unit_formatter(defaults.get("unit", "short")))
    if scale.get("type") == "log":
        axis.yaxis.set_minor_formatter(NullFormatter())  # decades only, as Grafana labels a log axis
    axis.tick_params(labelsize=7)
    axis.set_xlim(0, end - start)
    axis.set_xlabel("seconds", fontsize=7)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=6, loc="upper left", framealpha=0.6)


def _plot_series(axis: Any, panel: dict[str, Any], results: Sequence[QueryResult], start: float) -> None:
    """At most :data:`MAX_SERIES` lines, named by their query's legend format, over seconds since ``start``."""
    drawn = 0
    for result in results:
        target = next(t for t in panel["targets"] if t["refId"] == result.expression.ref)
        for series in result.series:
            if drawn >= MAX_SERIES:
                break
            points = [(float(t) - start, float(v)) for t, v in series["values"]]
            axis.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                linewidth=1.2,
                label=legend(target.get("legendFormat", ""), series["metric"]),
            )
            drawn += 1


def _unit_formatter(unit: str) -> Any:
    """A matplotlib tick formatter writing values in Grafana's ``unit``."""
    from matplotlib.ticker import Formatter

    class UnitFormatter(Formatter):
        def __call__(self, value: float, pos: int | None = None) -> str:
            return format_value(value, unit)

        def format_ticks(self, values: Sequence[float]) -> list[str]:
            return tick_labels(values, unit)

    return UnitFormatter()
