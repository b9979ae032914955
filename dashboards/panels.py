"""Shared building blocks of every mlstack dashboard, on top of grafana-foundation-sdk's builders.

Every dashboard gets the same datasource variable, every panel reads from it, every query gets a
stable refId, and panel ids are numbered in layout order, so the generated JSON only changes when a
builder does. Dashboards describe *what* to show (titles, queries, units); this module decides *how*.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Sequence

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_models

DATASOURCE_VARIABLE = "datasource"
DATASOURCE = dashboard_models.DataSourceRef(type_val="prometheus", uid=f"${{{DATASOURCE_VARIABLE}}}")
# Grafana's grid is 24 columns wide.
GRID_WIDTH = 24


@dataclasses.dataclass(frozen=True)
class Query:
    """One PromQL query of a panel; ``legend`` is Grafana's legend format (``{{label}}`` placeholders)."""

    expr: str
    legend: str = "__auto"


@dataclasses.dataclass(frozen=True)
class Graph:
    """A time series panel; ``log_scale`` draws the y axis in powers of ten (for values that span decades)."""

    title: str
    description: str
    queries: Sequence[Query]
    unit: str = "short"
    stacked: bool = False
    min: float | None = None
    max: float | None = None
    width: int = 12
    log_scale: bool = False

    def __post_init__(self) -> None:
        if self.log_scale and self.min is not None and self.min <= 0:
            raise ValueError(f"panel {self.title!r}: a log scale cannot start at {self.min}")


@dataclasses.dataclass(frozen=True)
class Stat:
    """A single-number panel; ``thresholds`` are (from value, colour) pairs above a green base."""

    title: str
    description: str
    query: Query
    unit: str = "short"
    thresholds: Sequence[tuple[float, str]] = ()
    width: int = 6


@dataclasses.dataclass(frozen=True)
class Row:
    title: str
    panels: Sequence[Graph | Stat]


@dataclasses.dataclass(frozen=True)
class Variable:
    """A multi-value query variable; ``All`` matches any value (``.*``), so queries use ``=~"$name"``."""

    name: str
    label: str
    query: str


@dataclasses.dataclass(frozen=True)
class Board:
    """A whole dashboard: a stable ``uid`` (also its file name), rows of panels and its variables."""

    uid: str
    title: str
    description: str
    rows: Sequence[Row]
    variables: Sequence[Variable] = ()
    tags: Sequence[str] = ("mlstack",)


def _targets(queries: Sequence[Query]) -> list[prometheus.Dataquery]:
    if len(queries) > len(string.ascii_uppercase):
        raise ValueError("a panel holds at most 26 queries")
    return [
        prometheus.Dataquery()
        .expr(query.expr)
        .legend_format(query.legend)
        .ref_id(ref)
        .range()
        .datasource(DATASOURCE)
        for ref, query in zip(string.ascii_uppercase, queries, strict=False)
    ]


def _graph(spec: Graph, panel_id: int, height: int) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(DATASOURCE)
        .targets(_targets(spec.queries))
        .unit(spec.unit)
        .height(height)
        .span(spec.width)
        .line_width(1)
        .fill_opacity(10)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    if spec.log_scale:
        panel = panel.scale_distribution(
            common_builders.ScaleDistributionConfig().type(common.ScaleDistribution.LOG).log(10)
        )
    if spec.stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    if spec.min is not None:
        panel = panel.min(spec.min)
    if spec.max is not None:
        panel = panel.max(spec.max)
    return panel


def _stat(spec: Stat, panel_id: int, height: int) -> stat.Panel:
    steps = [dashboard_models.Threshold(value=None, color="green")]
    steps += [dashboard_models.Threshold(value=value, color=color) for value, color in spec.thresholds]
    return (
        stat.Panel()
        .id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(DATASOURCE)
        .targets(_targets([spec.query]))
        .unit(spec.unit)
        .height(height)
        .span(spec.width)
        .thresholds(
            dashboard_builders.ThresholdsConfig().mode(dashboard_models.ThresholdsMode.ABSOLUTE).steps(steps)
        )
    )


def _variables(
    board: Board,
) -> list[dashboard_builders.DatasourceVariable | dashboard_builders.QueryVariable]:
    variables: list[dashboard_builders.DatasourceVariable | dashboard_builders.QueryVariable] = [
        dashboard_builders.DatasourceVariable(DATASOURCE_VARIABLE).label("Data source").type("prometheus")
    ]
    for variable in board.variables:
        variables.append(
            dashboard_builders.QueryVariable(variable.name)
            .label(variable.label)
            .datasource(DATASOURCE)
            .query(variable.query)
            .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
    return variables


def build(board: Board) -> dashboard_models.Dashboard:
    """The sdk's Dashboard for ``board``: rows in order, panels laid out left to right, ids from 1."""
    builder = (
        dashboard_builders.Dashboard(board.title)
        .uid(board.uid)
        .description(board.description)
        .tags(list(board.tags))
        .editable()
        .timezone("browser")
        .time("now-6h", "now")
        .refresh("30s")
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .variables(_variables(board))
    )
    panel_id = 0
    for row in board.rows:
        width = sum(panel.width for panel in row.panels)
        if width % GRID_WIDTH:
            raise ValueError(
                f"{board.uid}: row {row.title!r} panels span {width} columns, not whole rows of 24"
            )
        panel_id += 1
        # An expanded row: its panels follow it at the top level (Grafana nests only collapsed rows' panels).
        builder = builder.with_row(dashboard_builders.Row(row.title).id(panel_id).collapsed(False))
        for spec in row.panels:
            panel_id += 1
            if isinstance(spec, Graph):
                builder = builder.with_panel(_graph(spec, panel_id, height=8))
            else:
                builder = builder.with_panel(_stat(spec, panel_id, height=4))
    return builder.build()


def to_json(board: Board) -> str:
    """Deterministic JSON of ``board`` (sorted keys, two-space indent, trailing newline)."""
    return JSONEncoder(sort_keys=True, indent=2).encode(build(board)) + "\n"
