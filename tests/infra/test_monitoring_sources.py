"""Every metric an alert or a dashboard reads comes from a scrape target the stack declares.

For each example stack the program runs under mocks; its scrape targets are read from what it
declares (ServiceMonitors, ScrapeConfigs the chart's Prometheus selects, and the kube-prometheus-stack
release's own components as its values leave them), and ``SOURCES`` says which names each target's
exporter serves: the workloads' own Prometheus registries, the committed exporter lists
(``dashboards/exporters/``, which tests/ansible/test_jmx_exporter.py holds to the real JMX agents),
node_exporter's ``node_`` namespace. Every PromQL expression under ``dashboards/generated/`` is parsed
and each name must come from a declared target or a recording rule. Also: the node daemons' targets
are the inventory's hosts on the roles' exporter ports, Prometheus may reach them, and the labels the
queries group by exist on their series.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import yaml

from dashboards import catalog, contract, tf_serving
from dashboards.contract import Expression
from infra.specs import monitoring, namespaces, ports
from tests.dashboards.test_facts import registry_series
from tests.infra.program import ROOT, ProgramRun
from workloads.streaming.infer_worker import WorkerMetrics
from workloads.streaming.stream_ingest import IngestMetrics
from workloads.training.metrics import TrainingMetrics

pytestmark = pytest.mark.xdist_group(name="infra-program")
GENERATED = ROOT / "dashboards" / "generated"
Target = tuple[str, str]  # (kind, name): a ServiceMonitor's, a ScrapeConfig's or a chart component's
CHART = "kube-prometheus-stack"
HISTOGRAM = ("_bucket", "_sum", "_count")
EVERY_TARGET = {"up"}  # Prometheus writes it for every target it scrapes
SCRAPE_LABELS = {"job", "instance", monitoring.NODE_LABEL}


def _tf_serving_series() -> set[str]:
    """TF Serving's names as the boards read them (test_facts.py holds them to the development server's)."""
    histograms = (tf_serving.REQUEST_LATENCY, tf_serving.RUNTIME_LATENCY)
    return {tf_serving.REQUEST_COUNT, *(name + suffix for name in histograms for suffix in HISTOGRAM)}


def _listed(exporter: str) -> Callable[[str], bool]:
    return lambda name: name in catalog.exporter_lists()[exporter]


def _served(series: Callable[[], set[str]]) -> Callable[[str], bool]:
    return lambda name: name in series()


SOURCES: dict[Target, Callable[[str], bool]] = {
    ("ServiceMonitor", "training-workers"): _served(
        lambda: registry_series(TrainingMetrics(run="r", framework="tensorflow", rank=0).registry)
    ),
    ("ServiceMonitor", "infer-worker"): _served(lambda: registry_series(WorkerMetrics().registry)),
    ("ServiceMonitor", "stream-ingest"): _served(lambda: registry_series(IngestMetrics().registry)),
    ("ServiceMonitor", "tf-serving"): _served(_tf_serving_series),
    ("ServiceMonitor", "dcgm-exporter"): _listed("dcgm-exporter"),
    # The node daemons' JMX exporters: the lists are named after the job.
    **{("ScrapeConfig", e.job): _listed(e.job) for e in monitoring.NODE_DAEMON_EXPORTERS},
    (CHART, "kube-state-metrics"): _listed("kube-state-metrics"),
    (CHART, "prometheus-node-exporter"): lambda name: name.startswith("node_"),
    (CHART, "prometheus"): _listed("prometheus"),
}


def chart_values(run: ProgramRun) -> dict[str, Any]:
    (release,) = [r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["chart"] == CHART]
    return release.inputs["values"]


def _enabled(values: dict[str, Any], *path: str) -> bool:
    for key in path[:-1]:
        values = values.get(key) or {}
    return values.get(path[-1], True) is not False


def declared_targets(run: ProgramRun) -> set[Target]:
    """What the stack's Prometheus scrapes: ServiceMonitors (selected in every namespace), ScrapeConfigs when
    the chart's Prometheus selects them (no release label on ours), and the chart's enabled exporters."""
    values = chart_values(run)
    spec = values["prometheus"]["prometheusSpec"]
    targets: set[Target] = set()
    if spec.get("serviceMonitorSelectorNilUsesHelmValues") is False:
        targets |= {("ServiceMonitor", m["metadata"]["name"]) for m in run.objects_of_kind("ServiceMonitor")}
    if spec.get("scrapeConfigSelectorNilUsesHelmValues") is False:
        targets |= {("ScrapeConfig", c["spec"]["jobName"]) for c in run.objects_of_kind("ScrapeConfig")}
    chart = {
        "kube-state-metrics": _enabled(values, "kubeStateMetrics", "enabled"),
        "prometheus-node-exporter": _enabled(values, "nodeExporter", "enabled"),
        "prometheus": _enabled(values, "prometheus", "serviceMonitor", "selfMonitor"),
    }
    return targets | {(CHART, name) for name, on in chart.items() if on}


def generated_expressions() -> list[Expression]:
    return [
        e for p in sorted(GENERATED.glob("grafana/*.json")) for e in contract.dashboard_expressions(p)
    ] + [e for p in sorted(GENERATED.glob("prometheus/*.rules.yaml")) for e in contract.rule_expressions(p)]


def unsourced(expressions: Iterable[Expression], targets: set[Target]) -> list[str]:
    """``file: origin: name`` for every name no declared target serves and no recording rule records."""
    recorded = contract.recording_rule_names(sorted(GENERATED.glob("prometheus/*.rules.yaml")))
    problems = []
    for expression in expressions:
        for name in sorted(contract.metric_names(expression) - recorded):
            sources = [t for t in targets if t in SOURCES and SOURCES[t](name)]
            if not sources and not (name in EVERY_TARGET and targets):
                problems.append(f"{expression.file.name}: {expression.origin}: {name}")
    return problems


def test_every_alert_and_panel_reads_only_names_a_declared_target_serves(run: ProgramRun):
    expressions = generated_expressions()
    assert any(e.kind == "rule" for e in expressions) and any(e.kind == "query" for e in expressions)
    problems = unsourced(expressions, declared_targets(run))
    assert not problems, "no scrape target of the stack serves:\n" + "\n".join(problems)


def test_a_name_only_an_undeclared_target_serves_is_reported(run: ProgramRun):
    """The check above can fail: without the JMX ScrapeConfigs every Kafka and HDFS name has no source."""
    targets = {t for t in declared_targets(run) if t[0] != "ScrapeConfig"}
    reported = {p.rsplit(": ", 1)[1] for p in unsourced(generated_expressions(), targets)}
    lists = catalog.exporter_lists()
    read = set().union(*(contract.metric_names(e) for e in generated_expressions()))
    assert reported == read & (lists["kafka-jmx"] | lists["hdfs-jmx"])


def test_a_scrape_config_without_targets_is_refused():
    with pytest.raises(ValueError, match="kafka-jmx: a scrape config needs at least one target"):
        monitoring.scrape_config("kafka-jmx", [])


def test_every_declared_target_has_an_entry_in_the_sources_table(run: ProgramRun):
    unknown = declared_targets(run) - SOURCES.keys()
    assert not unknown, f"add these targets and what they serve to SOURCES: {sorted(unknown)}"


def test_the_node_daemons_exporters_are_scraped_on_every_inventory_host_that_runs_them(run: ProgramRun):
    inventory = yaml.safe_load(run.exports["inventory"][0])["all"]
    configs = {c["spec"]["jobName"]: c for c in run.objects_of_kind("ScrapeConfig")}
    for exporter in monitoring.NODE_DAEMON_EXPORTERS:
        hosts = {h for g in exporter.groups for h in (inventory["children"].get(g) or {}).get("hosts") or {}}
        assert hosts, f"the example stack has no host in {exporter.groups}"
        expected = {(h, f"{inventory['hosts'][h]['cluster_address']}:{exporter.port}") for h in hosts}
        static = configs[exporter.job]["spec"]["staticConfigs"]
        assert configs[exporter.job]["metadata"]["namespace"] == namespaces.MONITORING
        assert {(s["labels"][monitoring.NODE_LABEL], t) for s in static for t in s["targets"]} == expected


@pytest.mark.parametrize(
    ("role", "variable", "port"),
    [
        ("kafka", "kafka_jmx_exporter_port", ports.KAFKA_JMX_EXPORTER),
        ("hdfs", "hdfs_jmx_exporter_port", ports.HDFS_JMX_EXPORTER),
    ],
)
def test_the_exporter_ports_are_the_roles_defaults(role, variable, port):
    defaults = yaml.safe_load((ROOT / "ansible" / "roles" / role / "defaults" / "main.yml").read_text())
    assert defaults[variable] == port, f"ansible/roles/{role} {variable} is not infra.specs.ports' {port}"


def _egress_allows(policy: dict[str, Any], pod: dict[str, str], address: str, port: int) -> bool:
    spec = policy["spec"]
    if "Egress" not in spec.get("policyTypes", []):
        return False
    if not spec["podSelector"].get("matchLabels", {}).items() <= pod.items():
        return False
    for rule in spec.get("egress") or []:
        peers = rule.get("to") or [{"ipBlock": {"cidr": "0.0.0.0/0"}}]
        reaches = any(
            "ipBlock" in peer
            and ipaddress.ip_address(address) in ipaddress.ip_network(peer["ipBlock"]["cidr"])
            and not any(
                ipaddress.ip_address(address) in ipaddress.ip_network(e)
                for e in peer["ipBlock"].get("except", [])
            )
            for peer in peers
        )
        opens = not rule.get("ports") or any(
            p.get("port") == port and p.get("protocol", "TCP") == "TCP" for p in rule["ports"]
        )
        if reaches and opens:
            return True
    return False


def test_prometheus_may_reach_every_node_daemon_target(run: ProgramRun):
    policies = [
        p for p in run.objects_of_kind("NetworkPolicy") if p["metadata"]["namespace"] == namespaces.MONITORING
    ]
    targets = [
        t
        for c in run.objects_of_kind("ScrapeConfig")
        for s in c["spec"]["staticConfigs"]
        for t in s["targets"]
    ]
    assert targets
    for target in targets:
        address, port = target.rsplit(":", 1)
        assert any(_egress_allows(p, namespaces.PROMETHEUS_POD, address, int(port)) for p in policies), target


def _grouping_labels(expr: str) -> set[str]:
    return {
        label.strip() for group in re.findall(r"\bby\s*\(([^)]*)\)", expr) for label in group.split(",")
    } - {""}


def test_queries_on_the_node_daemons_group_by_labels_their_scrape_gives():
    """The JMX rules give the daemons' series no labels of their own (docs/interfaces.md): a query can group
    them only by the labels the ScrapeConfig gives (job, instance, node)."""
    lists = catalog.exporter_lists()
    jmx = set().union(*(lists[e.job] for e in monitoring.NODE_DAEMON_EXPORTERS))
    checked = 0
    for expression in generated_expressions():
        if contract.metric_names(expression) & jmx:
            checked += 1
            extra = _grouping_labels(expression.expr) - SCRAPE_LABELS
            assert not extra, f"{expression.file.name}: {expression.origin}: groups by {sorted(extra)}"
    assert checked >= 5
