"""Prometheus rules as data: recording rules, alerts that follow the kubernetes-mixin contract, groups.

An :class:`Alert` cannot be built without what an on-call engineer needs: a PascalCase name, an
explicit ``for``, a severity, a summary, a description and a runbook link (made from the name, so it
always points at that alert's section of docs/runbooks.md).
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
from typing import Any

from dashboards.params import DEPLOYMENT

SEVERITIES = ("info", "warning", "critical")
PASCAL_CASE = re.compile(r"^[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)*$")
# level:metric:operations (https://prometheus.io/docs/practices/rules/)
RECORDING_NAME = re.compile(r"^[a-z_]+:[A-Za-z_][A-Za-z0-9_]*:[a-z0-9_]+$")
DURATION = re.compile(r"^(?:\d+[smhdwy])+$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> int:
    """A Prometheus duration such as ``1h30m`` in seconds."""
    if not DURATION.match(duration):
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in re.findall(r"(\d+)([smhdwy])", duration))


def promql(text: str) -> str:
    """A multi-line PromQL literal, dedented and stripped, so builders can indent it with the code."""
    return textwrap.dedent(text).strip()


@dataclasses.dataclass(frozen=True)
class Recording:
    record: str
    expr: str
    labels: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not RECORDING_NAME.match(self.record):
            raise ValueError(f"recording rule {self.record!r} is not named level:metric:operations")

    def to_dict(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"record": self.record, "expr": self.expr}
        if self.labels:
            rule["labels"] = dict(self.labels)
        return rule


@dataclasses.dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str

    def __post_init__(self) -> None:
        if not PASCAL_CASE.match(self.name):
            raise ValueError(f"alert {self.name!r} is not PascalCase")
        if not DURATION.match(self.for_):
            raise ValueError(f"alert {self.name}: for={self.for_!r} is not a Prometheus duration")
        if self.severity not in SEVERITIES:
            raise ValueError(f"alert {self.name}: severity {self.severity!r} is not one of {SEVERITIES}")

    @property
    def runbook_url(self) -> str:
        return f"{DEPLOYMENT.runbook_base_url}#{self.name.lower()}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": self.runbook_url,
            },
        }


@dataclasses.dataclass(frozen=True)
class RuleGroup:
    """One rule group, written to ``dashboards/generated/prometheus/<name>.rules.yaml``.

    Recording rules come first: Prometheus evaluates a group's rules in order, so the alerts see
    the values recorded in the same evaluation.
    """

    name: str
    recordings: tuple[Recording, ...]
    alerts: tuple[Alert, ...]

    def alert(self, name: str) -> Alert:
        for alert in self.alerts:
            if alert.name == name:
                return alert
        raise KeyError(f"rule group {self.name} has no alert {name}")

    def to_dict(self) -> dict[str, Any]:
        rules = [rule.to_dict() for rule in self.recordings] + [alert.to_dict() for alert in self.alerts]
        return {"groups": [{"name": self.name, "rules": rules}]}
