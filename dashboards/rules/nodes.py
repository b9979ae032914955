"""Node alerts on node_exporter and Prometheus's own ``up`` series."""

from __future__ import annotations

from dashboards.params import DEPLOYMENT, THRESHOLDS, Thresholds
from dashboards.rules.model import Alert, RuleGroup


def group(t: Thresholds = THRESHOLDS) -> RuleGroup:
    """The group at thresholds ``t`` (the integration test evaluates alerts at other thresholds live)."""
    node = f'job="{DEPLOYMENT.node_exporter_job}"'
    return RuleGroup(
        name="mlstack-nodes",
        recordings=(),
        alerts=(
            Alert(
                "NodeDown",
                f"up{{{node}}} == 0",
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
