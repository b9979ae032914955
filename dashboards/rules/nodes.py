"""Node alerts on node_exporter and Prometheus's own ``up`` series."""

from __future__ import annotations

from dashboards.params import THRESHOLDS, Thresholds
from dashboards.rules.model import Alert, RuleGroup
from dashboards.selectors import NODE_EXPORTER


def group(t: Thresholds = THRESHOLDS) -> RuleGroup:
    """The group at thresholds ``t`` (the integration test evaluates alerts at other thresholds live)."""
    return RuleGroup(
        name="mlstack-nodes",
        recordings=(),
        alerts=(
            Alert(
                "NodeDown",
                f"up{{{NODE_EXPORTER}}} == 0",
                for_=t.node_down_for,
                severity="critical",
                summary="Prometheus cannot scrape a node.",
                description=(
                    "node_exporter on {{ $labels.instance }} has not answered Prometheus for "
                    f"{t.node_down_for}: the node is down, unreachable or its exporter stopped."
                ),
            ),
        ),
    )
