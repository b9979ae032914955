"""Checks on the generated files: what the test suite (and a reviewer) holds every dashboard and rule to.

Every check reads the files other layers load, not the builders, and returns a list of problems, each
starting with the file and naming the alert, panel or metric at fault; an empty list means it passed.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from dashboards import promql
from dashboards.rules.model import DURATION, PASCAL_CASE, RECORDING_NAME, SEVERITIES

REQUIRED_ANNOTATIONS = ("summary", "description", "runbook_url")
GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


@dataclasses.dataclass(frozen=True)
class Expression:
    """One PromQL expression and where it lives (``origin`` names the panel, variable or rule)."""

    file: pathlib.Path
    origin: str
    expr: str
    kind: str  # "query" (PromQL), "variable" (a Grafana variable query) or "rule"
    panel: int | None = None
    ref: str | None = None


def load_rule_file(path: pathlib.Path) -> list[dict[str, Any]]:
    """The groups of a Prometheus rule file; raises ValueError naming the file when it is not one."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        raise ValueError(f"{path}: not a Prometheus rule file (no top-level 'groups' list)")
    return data["groups"]


def alerts(path: pathlib.Path) -> list[dict[str, Any]]:
    return [rule for group in load_rule_file(path) for rule in group.get("rules", []) if "alert" in rule]


def rule_contract_problems(path: pathlib.Path) -> list[str]:
    """The kubernetes-mixin contract: PascalCase alerts with ``for``, ``severity``, summary, description,
    runbook_url; recording rules named level:metric:operations."""
    problems = []
    for group in load_rule_file(path):
        for rule in group.get("rules", []):
            if "record" in rule:
                if not RECORDING_NAME.match(str(rule["record"])):
                    problems.append(
                        f"{path}: recording rule {rule['record']}: not named level:metric:operations"
                    )
                continue
            name = rule.get("alert", "<unnamed rule>")
            where = f"{path}: alert {name}"
            if not PASCAL_CASE.match(str(name)):
                problems.append(f"{where}: name is not PascalCase")
            if not DURATION.match(str(rule.get("for", ""))):
                problems.append(f"{where}: no explicit 'for' duration")
            severity = (rule.get("labels") or {}).get("severity")
            if severity not in SEVERITIES:
                problems.append(
                    f"{where}: label severity={severity!r}, expected one of {', '.join(SEVERITIES)}"
                )
            annotations = rule.get("annotations") or {}
            problems += [
                f"{where}: missing annotation {key}"
                for key in REQUIRED_ANNOTATIONS
                if not annotations.get(key)
            ]
    return problems


def promtool_check_rules(paths: Sequence[pathlib.Path]) -> list[str]:
    """``promtool check rules`` on each file; a failure quotes promtool's own message for that file."""
    problems = []
    for path in paths:
        result = subprocess.run(
            ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
        )
        if result.returncode != 0:
            problems.append(
                f"{path}: promtool check rules failed:\n{(result.stdout + result.stderr).strip()}"
            )
    return problems


def rule_expressions(path: pathlib.Path) -> list[Expression]:
    return [
        Expression(
            path,
            f"{'alert' if 'alert' in rule else 'recording rule'} {rule.get('alert') or rule.get('record')}",
            rule["expr"],
            "rule",
        )
        for group in load_rule_file(path)
        for rule in group.get("rules", [])
        if "expr" in rule
    ]


def recording_rule_names(paths: Iterable[pathlib.Path]) -> set[str]:
    return {
        rule["record"]
        for path in paths
        for group in load_rule_file(path)
        for rule in group.get("rules", [])
        if "record" in rule
    }


def load_dashboard(path: pathlib.Path) -> dict[str, Any]:
    try:
        board = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON: {error}") from error
    if not isinstance(board, dict) or not isinstance(board.get("panels"), list):
        raise ValueError(f"{path}: not a Grafana dashboard (no 'panels' list)")
    return board


def _all_panels(panels: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _all_panels(panel.get("panels") or [])


def dashboard_expressions(path: pathlib.Path) -> list[Expression]:
    """Every panel target's PromQL and every Prometheus query variable of a dashboard file."""
    board = load_dashboard(path)
    found = []
    for panel in _all_panels(board["panels"]):
        for target in panel.get("targets") or []:
            if "expr" in target:
                origin = f"panel {panel.get('id')} {panel.get('title')!r} query {target.get('refId')}"
                found.append(
                    Expression(path, origin, target["expr"], "query", panel.get("id"), target.get("refId"))
                )
    for variable in (board.get("templating") or {}).get("list") or []:
        if variable.get("type") == "query":
            query = variable.get("query")
            text = query.get("query") if isinstance(query, dict) else query
            found.append(Expression(path, f"variable {variable.get('name')}", str(text), "variable"))
    return found


def metric_names(expression: Expression) -> set[str]:
    if expression.kind == "variable":
        return promql.variable_query_metric_names(expression.expr)
    return promql.metric_names(expression.expr)


def unknown_metric_problems(expressions: Iterable[Expression], known: Mapping[str, str]) -> list[str]:
    """Every metric name an expression reads must be known (:func:`dashboards.catalog.known_metrics`)."""
    problems = []
    for expression in expressions:
        try:
            names = metric_names(expression)
        except promql.PromQLError as error:
            problems.append(f"{expression.file}: {expression.origin}: {error}")
            continue
        problems += [
            f"{expression.file}: {expression.origin}: unknown metric {name} (not a recording rule, not in "
            "docs/interfaces.md, not scraped from a real exporter here, not in dashboards/exporters/*.txt)"
            for name in sorted(names - known.keys())
        ]
    return problems


def substitute_variables(expr: str, rate_interval: str) -> str:
    """A dashboard query as Prometheus would receive it: ``$__rate_interval`` -> ``rate_interval``, and every
    other variable -> ``.+``: any value, as when one is selected, but the label must exist. (Grafana's
    "All" is ``.*``, which also matches a series *without* the label, so a typo in a label name would
    still return data.)"""

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        return rate_interval if name == "__rate_interval" else ".+"

    return GRAFANA_VARIABLE.sub(value, expr)


def promtool_check_queries(expressions: Sequence[Expression], rate_interval: str = "5m") -> list[str]:
    """Prometheus's own parser on every dashboard query: each becomes a recording rule in a temporary
    file that ``promtool check rules`` reads; a failure names the dashboard and panel."""
    queries = [expression for expression in expressions if expression.kind == "query"]
    if not queries:
        return []
    records = {f"dashboard_query_{index}": expression for index, expression in enumerate(queries)}
    groups = {
        "groups": [
            {
                "name": "dashboard-queries",
                "rules": [
                    {"record": record, "expr": substitute_variables(expression.expr, rate_interval)}
                    for record, expression in records.items()
                ],
            }
        ]
    }
    with tempfile.TemporaryDirectory(prefix="mlstack-queries-") as tmp:
        path = pathlib.Path(tmp) / "queries.rules.yaml"
        path.write_text(yaml.safe_dump(groups), encoding="utf-8")
        result = subprocess.run(
            ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
        )
    if result.returncode == 0:
        return []
    output = result.stdout + result.stderr
    problems = [
        f"{expression.file}: {expression.origin}: promtool cannot parse {expression.expr!r}: "
        + " ".join(line.strip() for line in output.splitlines() if f'"{record}"' in line)
        for record, expression in records.items()
        if re.search(rf'"{record}"', output)
    ]
    return problems or [f"promtool check rules failed on the dashboard queries:\n{output.strip()}"]


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_anchors(markdown: str) -> set[str]:
    return {github_anchor(match) for match in re.findall(r"^#{1,6} (.+)$", markdown, re.M)}


def runbook_problems(rule_files: Iterable[pathlib.Path], runbooks: pathlib.Path) -> list[str]:
    """Every alert's runbook_url points at a heading of ``runbooks`` (by its anchor)."""
    anchors = runbook_anchors(runbooks.read_text(encoding="utf-8"))
    problems = []
    for path in rule_files:
        for alert in alerts(path):
            url = (alert.get("annotations") or {}).get("runbook_url", "")
            page, _, fragment = url.partition("#")
            if not page.endswith(runbooks.name) or not fragment:
                problems.append(
                    f"{path}: alert {alert['alert']}: runbook_url {url!r} does not point into {runbooks.name}"
                )
            elif fragment not in anchors:
                problems.append(f"{path}: alert {alert['alert']}: {runbooks} has no section #{fragment}")
    return problems


def promtool_test_coverage(test_files: Iterable[pathlib.Path]) -> dict[str, set[str]]:
    """``{alertname: {"firing", "not firing"}}``: which kinds of case the promtool tests hold for each alert."""
    coverage: dict[str, set[str]] = {}
    for path in test_files:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for test in data.get("tests") or []:
            for case in test.get("alert_rule_test") or []:
                kind = "firing" if case.get("exp_alerts") else "not firing"
                coverage.setdefault(case["alertname"], set()).add(kind)
    return coverage


def promtool_coverage_problems(
    rule_files: Iterable[pathlib.Path], test_files: Sequence[pathlib.Path]
) -> list[str]:
    """Every alert needs a promtool case where it fires and one where it does not."""
    coverage = promtool_test_coverage(test_files)
    return [
        f"{path}: alert {alert['alert']}: no promtool test case where it is {kind}"
        for path in rule_files
        for alert in alerts(path)
        for kind in ("firing", "not firing")
        if kind not in coverage.get(alert["alert"], set())
    ]


def promtool_test_rules(test_file: pathlib.Path) -> str | None:
    """Runs ``promtool test rules``; returns its report when a case fails, None when all pass."""
    result = subprocess.run(
        ["promtool", "test", "rules", test_file.name],
        cwd=test_file.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return None if result.returncode == 0 else f"{test_file}:\n{(result.stdout + result.stderr).strip()}"
