"""Checks the generated dashboards and rules against a real, running Prometheus.

Given a Prometheus that scrapes whatever runs here (node_exporter, itself, and the workloads of
:mod:`tests.dashboards.rig.scenario`: the training workers, the development server, the Kafka services,
the JMX exporters of the Kafka node and the HDFS NameNode) and evaluates the generated rules, this module
sorts every dashboard query:

- **data**: all its metrics exist in this Prometheus, and ``query_range`` returned samples;
- **no data**: all its metrics exist here, yet the query matched nothing (a wrong label, job or
  unit): a failure;
- **not here**: it reads a metric nothing here exports (DCGM, kube-state-metrics, or a
  workload that was not run); such names are checked against the committed lists instead, and a
  name that a source running here *should* export is a failure.

It also checks that every rule was evaluated without error, and that every recording rule whose
inputs exist here recorded something.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import time
from collections.abc import Iterable, Mapping, Sequence

from dashboards import contract
from tests.dashboards.rig.loopback import RATE_INTERVAL, Prometheus


@dataclasses.dataclass(frozen=True)
class QueryResult:
    expression: contract.Expression
    status: str  # "data", "no data", "not here"
    missing: frozenset[str] = frozenset()
    series: tuple[dict, ...] = ()

    def describe(self) -> str:
        where = f"{self.expression.file.name}: {self.expression.origin}"
        if self.status == "not here":
            return f"{where}: not checked live, no exporter here has {', '.join(sorted(self.missing))}"
        return f"{where}: {self.status} for {self.expression.expr!r}"


def has_samples(series: Iterable[dict]) -> bool:
    return any(not math.isnan(float(value)) for one in series for _, value in one["values"])


def check_queries(
    prometheus: Prometheus,
    expressions: Sequence[contract.Expression],
    start: float,
    end: float,
    step: float = 1,
) -> list[QueryResult]:
    """Runs every dashboard query whose metrics all exist in ``prometheus`` over [start, end]."""
    present = prometheus.metric_names()
    results = []
    for expression in expressions:
        if expression.kind != "query":
            continue
        missing = frozenset(contract.metric_names(expression) - present)
        if missing:
            results.append(QueryResult(expression, "not here", missing))
            continue
        query = contract.substitute_variables(expression.expr, RATE_INTERVAL)
        series = tuple(prometheus.query_range(query, start, end, step))
        results.append(QueryResult(expression, "data" if has_samples(series) else "no data", series=series))
    return results


def expected_here_problems(results: Iterable[QueryResult], expected: Mapping[str, set[str]]) -> list[str]:
    """A query skipped for lacking a metric that a source running here should export is a failure.

    ``expected`` maps a source (e.g. "node_exporter") to the names it exports here.
    """
    problems = []
    for result in results:
        for source, names in expected.items():
            for name in sorted(result.missing & names):
                problems.append(
                    f"{result.expression.file.name}: {result.expression.origin}: {source} runs here and exports "
                    f"{name}, but Prometheus has no such series (scrape failed or wrong job?)"
                )
    return problems


def wait_for_rule_evaluations(
    prometheus: Prometheus, evaluations: int = 2, timeout: float = 30
) -> list[dict]:
    """Waits until every loaded rule group has been evaluated ``evaluations`` more times; returns the groups."""
    deadline = time.monotonic() + timeout
    first = {group["name"]: group.get("lastEvaluation") for group in prometheus.rule_groups()}
    seen: dict[str, set[str]] = {name: set() for name in first}
    while True:
        groups = prometheus.rule_groups()
        for group in groups:
            seen.setdefault(group["name"], set()).add(group.get("lastEvaluation", ""))
        if all(len(stamps - {first.get(name)}) >= evaluations for name, stamps in seen.items()):
            return groups
        if time.monotonic() > deadline:
            raise TimeoutError(f"rule groups not evaluated {evaluations} times within {timeout:.0f}s: {seen}")
        time.sleep(0.25)


def rule_problems(groups: Sequence[dict], rule_files: Sequence[pathlib.Path], present: set[str]) -> list[str]:
    """Every generated group is loaded, every rule evaluates cleanly, and recording rules whose inputs
    exist here recorded a series."""
    problems = []
    loaded = {group["name"]: group for group in groups}
    for path in rule_files:
        for group in contract.load_rule_file(path):
            live = loaded.get(group["name"])
            if live is None:
                problems.append(f"{path.name}: group {group['name']} is not loaded by Prometheus")
                continue
            for rule in live["rules"]:
                name = rule["name"]
                if rule.get("health") != "ok" or rule.get("lastError"):
                    problems.append(
                        f"{path.name}: rule {name}: health {rule.get('health')}: {rule.get('lastError')}"
                    )
            for rule in group["rules"]:
                if "record" not in rule:
                    continue
                inputs = contract.metric_names(
                    contract.Expression(path, rule["record"], rule["expr"], "rule")
                )
                if inputs <= present and rule["record"] not in present:
                    problems.append(
                        f"{path.name}: recording rule {rule['record']}: its inputs exist here but it recorded nothing"
                    )
    return problems


def alert_states(groups: Sequence[dict]) -> dict[str, list[dict]]:
    """``{alert name: its active alerts}`` (each with ``labels`` and ``state``: pending or firing)."""
    return {
        rule["name"]: rule.get("alerts") or []
        for group in groups
        for rule in group["rules"]
        if rule.get("type") == "alerting"
    }
