"""The contract every generated dashboard and rule is held to, and the failures a bad input gets."""

import dataclasses
import json
import re

import pytest

from dashboards import catalog, contract, params
from dashboards.panels import DATASOURCE_VARIABLE

from .conftest import DASHBOARD_FILES, ROOT, RULE_FILES, RUNBOOKS, require_binary

STABLE_UIDS = {"mlstack-gpu-nodes", "mlstack-training", "mlstack-serving", "mlstack-data"}
# Exporters of the cluster whose names are checked against committed lists (kafka-jmx and hdfs-jmx also run
# here, in the live rig and tests/ansible/test_jmx_exporter.py, which check the lists against the real agents).
CLUSTER_ONLY_LISTS = ("dcgm-exporter", "kube-state-metrics", "kafka-jmx", "hdfs-jmx")
# Alerts the issue asks for, so none can silently disappear.
REQUIRED_ALERTS = {
    "GpuXidErrors",
    "GpuTooHot",
    "GpuIdleWhileTraining",
    "TrainingStalled",
    "TrainingCheckpointTooOld",
    "ServingLatencyP99OverBudget",
    "ServingErrorRateHigh",
    "ServingHpaPinnedAtMax",
    "KafkaUnderReplicatedPartitions",
    "KafkaConsumerLagHigh",
    "HdfsCapacityLow",
    "HdfsMissingBlocks",
    "NodeDown",
}


def alert_names():
    return {alert["alert"] for path in RULE_FILES for alert in contract.alerts(path)}


def interfaces_section() -> str:
    text = (ROOT / "docs/interfaces.md").read_text()
    return text.split("## Exporter metrics the dashboards rely on", 1)[1]


# --- alerts and rules ------------------------------------------------------------------------------


def test_every_alert_the_issue_asks_for_exists():
    missing = REQUIRED_ALERTS - alert_names()
    assert not missing, missing


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_every_rule_follows_the_kubernetes_mixin_contract(rule_file):
    assert contract.rule_contract_problems(rule_file) == []


def test_promtool_accepts_every_generated_rule_file():
    require_binary("promtool")
    assert contract.promtool_check_rules(RULE_FILES) == []


def test_every_alert_has_a_runbook_section():
    assert contract.runbook_problems(RULE_FILES, RUNBOOKS) == []


def test_every_threshold_parameter_is_named_in_the_runbooks():
    text = RUNBOOKS.read_text()
    missing = [field.name for field in dataclasses.fields(params.Thresholds) if f"`{field.name}`" not in text]
    assert not missing, f"{RUNBOOKS} does not mention parameters {missing}"


def test_every_recording_rule_is_used_by_an_alert_or_a_dashboard(all_expressions):
    used = set().union(*(contract.metric_names(e) for e in all_expressions))
    unused = contract.recording_rule_names(RULE_FILES) - used
    assert not unused, f"recording rules nothing reads: {sorted(unused)}"


# --- dashboards ------------------------------------------------------------------------------------


def test_dashboard_uids_are_the_stable_ones_other_layers_link_to():
    assert {json.loads(p.read_text())["uid"] for p in DASHBOARD_FILES} == STABLE_UIDS


@pytest.mark.parametrize("dashboard", DASHBOARD_FILES, ids=lambda p: p.name)
def test_every_panel_and_query_reads_the_datasource_variable(dashboard):
    board = json.loads(dashboard.read_text())
    variables = board["templating"]["list"]
    assert variables[0]["type"] == "datasource" and variables[0]["name"] == DATASOURCE_VARIABLE
    assert variables[0]["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), f"{dashboard}: duplicate panel ids"
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        refs = [panel["datasource"]] + [target["datasource"] for target in panel["targets"]]
        assert all(ref == {"type": "prometheus", "uid": "${datasource}"} for ref in refs), panel["title"]
        assert panel["targets"], f"{dashboard}: panel {panel['title']!r} has no query"


def test_every_dashboard_rate_uses_rate_interval(all_expressions):
    for expression in all_expressions:
        if expression.kind != "query":
            continue
        windows = re.findall(r"\b(?:rate|irate)\([^\[]*\[([^\]]+)\]", expression.expr)
        assert all(window == "$__rate_interval" for window in windows), (
            f"{expression.origin}: {expression.expr}"
        )


def test_promtool_parses_every_dashboard_query(all_expressions):
    require_binary("promtool")
    assert contract.promtool_check_queries(all_expressions) == []


# --- metric names ----------------------------------------------------------------------------------


def known(node_exporter_names):
    return catalog.known_metrics(
        contract.recording_rule_names(RULE_FILES), {"node_exporter": node_exporter_names}
    )


def test_every_metric_a_dashboard_or_rule_reads_is_known(all_expressions, node_exporter_names):
    problems = contract.unknown_metric_problems(all_expressions, known(node_exporter_names))
    assert not problems, "\n".join(problems)


def test_every_cluster_only_metric_used_is_documented_in_interfaces(all_expressions):
    lists = catalog.exporter_lists()
    cluster_only = set().union(*(lists[name] for name in CLUSTER_ONLY_LISTS))
    used = set().union(*(contract.metric_names(e) for e in all_expressions)) & cluster_only
    section = interfaces_section()
    undocumented = sorted(name for name in used if f"`{name}`" not in section)
    assert not undocumented, f"docs/interfaces.md does not list {undocumented}"


def test_every_jmx_contract_name_has_its_mbean_in_interfaces():
    section = interfaces_section()
    lists = catalog.exporter_lists()
    for name in sorted(lists["kafka-jmx"] | lists["hdfs-jmx"]):
        rows = [line for line in section.splitlines() if line.startswith(f"| `{name}` |")]
        assert any("pattern:" in row or "as above" in row for row in rows), (
            f"no JMX exporter rule row for {name}"
        )


def test_the_workloads_metric_tables_are_read_from_interfaces():
    names = catalog.interfaces_metrics()
    assert {"mlstack_train_steps_total", "mlstack_train_step_duration_seconds_bucket"} <= names
    assert {
        ":tensorflow:serving:request_latency_bucket",
        ":tensorflow:serving:request_latency_count",
    } <= names
    assert "mlstack_infer_messages_total" in names and "mlstack_infer_batch_size" not in names


def test_exposition_names_reads_sample_names_not_comments():
    text = '# HELP a_total help\n# TYPE a_total counter\na_total{x="1"} 3\nb 1.5\nc_bucket{le="+Inf"} 2\n'
    assert catalog.exposition_names(text) == {"a_total", "b", "c_bucket"}


# --- bad input: the suite fails naming the file and the name ---------------------------------------


def test_an_alert_missing_an_annotation_is_reported_with_file_and_alert(tmp_path):
    bad = tmp_path / "bad.rules.yaml"
    bad.write_text(
        "groups:\n- name: bad\n  rules:\n"
        "  - alert: DiskAlmostFull\n    expr: up == 0\n    for: 5m\n    labels: {severity: warning}\n"
        "    annotations: {summary: s, runbook_url: 'https://x/runbooks.md#diskalmostfull'}\n"
        "  - alert: no_pascal\n    expr: up == 0\n    labels: {severity: page}\n"
        "  - record: not_level_metric_operation\n    expr: up\n"
    )
    assert contract.rule_contract_problems(bad) == [
        f"{bad}: alert DiskAlmostFull: missing annotation description",
        f"{bad}: alert no_pascal: name is not PascalCase",
        f"{bad}: alert no_pascal: no explicit 'for' duration",
        f"{bad}: alert no_pascal: label severity='page', expected one of info, warning, critical",
        f"{bad}: alert no_pascal: missing annotation summary",
        f"{bad}: alert no_pascal: missing annotation description",
        f"{bad}: alert no_pascal: missing annotation runbook_url",
        f"{bad}: recording rule not_level_metric_operation: not named level:metric:operations",
    ]


def test_a_rule_file_with_a_syntax_error_is_reported_with_file_and_rule(tmp_path):
    require_binary("promtool")
    bad = tmp_path / "broken.rules.yaml"
    bad.write_text(
        "groups:\n- name: broken\n  rules:\n  - alert: Broken\n    expr: sum(rate(up[5m])\n    for: 1m\n"
    )
    problems = contract.promtool_check_rules([bad])
    assert len(problems) == 1
    assert problems[0].startswith(f"{bad}: promtool check rules failed")
    assert '"Broken"' in problems[0] and "unclosed left parenthesis" in problems[0]


def test_a_file_that_is_not_yaml_or_not_rules_is_reported_with_its_name(tmp_path):
    not_yaml = tmp_path / "a.rules.yaml"
    not_yaml.write_text("groups: [unclosed\n")
    with pytest.raises(ValueError, match=f"{not_yaml}: not valid YAML"):
        contract.rule_contract_problems(not_yaml)
    not_rules = tmp_path / "b.rules.yaml"
    not_rules.write_text("rules: []\n")
    with pytest.raises(ValueError, match=f"{not_rules}: not a Prometheus rule file"):
        contract.rule_contract_problems(not_rules)


def test_an_alert_without_a_runbook_section_is_reported(tmp_path):
    rules = tmp_path / "r.rules.yaml"
    rules.write_text(
        "groups:\n- name: r\n  rules:\n  - alert: UndocumentedAlert\n    expr: up == 0\n    for: 1m\n"
        "    annotations: {runbook_url: 'https://example.org/docs/runbooks.md#undocumentedalert'}\n"
    )
    assert contract.runbook_problems([rules], RUNBOOKS) == [
        f"{rules}: alert UndocumentedAlert: {RUNBOOKS} has no section #undocumentedalert"
    ]


def test_a_dashboard_query_on_an_unknown_metric_is_reported_with_file_panel_and_name(
    tmp_path, node_exporter_names
):
    board = json.loads(DASHBOARD_FILES[0].read_text())
    panel = next(p for p in board["panels"] if p["type"] == "timeseries")
    panel["targets"][0]["expr"] = "rate(node_cpu_secnds_total[$__rate_interval])"
    bad = tmp_path / "typo.json"
    bad.write_text(json.dumps(board))
    problems = contract.unknown_metric_problems(
        contract.dashboard_expressions(bad), known(node_exporter_names)
    )
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{bad}: panel {panel['id']} {panel['title']!r} query A: unknown metric node_cpu_secnds_total"
    )


def test_a_dashboard_query_prometheus_cannot_parse_is_reported_with_file_and_panel(tmp_path):
    require_binary("promtool")
    board = json.loads(DASHBOARD_FILES[0].read_text())
    panel = next(p for p in board["panels"] if p["type"] == "timeseries")
    panel["targets"][0]["expr"] = "sum by (instance (rate(up[$__rate_interval]))"
    bad = tmp_path / "unparsable.json"
    bad.write_text(json.dumps(board))
    problems = contract.promtool_check_queries(contract.dashboard_expressions(bad))
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{bad}: panel {panel['id']} {panel['title']!r} query A: promtool cannot parse"
    )


def test_a_metric_list_with_a_bad_name_is_reported_with_file_and_line(tmp_path):
    (tmp_path / "exporter.txt").write_text("# comment\ngood_name\nbad-name\n")
    with pytest.raises(
        catalog.CatalogError, match=r"exporter.txt:3: 'bad-name' is not a Prometheus metric name"
    ):
        catalog.exporter_lists(tmp_path)


@pytest.mark.parametrize("dashboard", DASHBOARD_FILES, ids=lambda p: p.name)
def test_multi_value_variables_are_matched_with_regex_operators(dashboard):
    board = json.loads(dashboard.read_text())
    names = [v["name"] for v in board["templating"]["list"] if v["type"] == "query"]
    for expression in contract.dashboard_expressions(dashboard):
        for name in names:
            uses = re.findall(rf'(=~|!~|=|!=)\s*"\${name}"', expression.expr)
            assert all(op in ("=~", "!~") for op in uses), (
                f"{expression.origin}: ${name} needs =~ (All is .*)"
            )
            assert expression.expr.count(f"${name}") == len(uses), (
                f"{expression.origin}: ${name} outside a matcher"
            )


def test_variables_become_a_value_that_requires_the_label():
    # Grafana's "All" (.*) also matches series without the label, which would hide a label-name typo.
    assert contract.substitute_variables('up{run=~"$run"}[$__rate_interval]', "4s") == 'up{run=~".+"}[4s]'
