"""The mlstack Prometheus rules, one group per area; ``GROUPS`` lists them in generation order."""

from __future__ import annotations

from collections.abc import Callable

from dashboards.rules import data, gpu, nodes, serving, training
from dashboards.rules.model import RuleGroup

GROUPS: tuple[Callable[[], RuleGroup], ...] = (
    gpu.group,
    nodes.group,
    training.group,
    serving.group,
    data.group,
)


def all_groups() -> list[RuleGroup]:
    return [make() for make in GROUPS]
