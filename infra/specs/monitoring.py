"""Monitoring: kube-prometheus-stack values for k3s, ServiceMonitors, and the dashboards and alert
rules generated under ``dashboards/generated/`` turned into ConfigMaps and PrometheusRules.

k3s runs the controller manager, scheduler and kube-proxy inside its own process with metrics bound
to localhost, and embeds etcd, so the chart's scrape jobs for them (and their alerts) are disabled
here instead of reporting permanently-down targets.

The data-tier daemons run on the nodes under systemd, outside Kubernetes: their JMX exporter agents
(:data:`NODE_DAEMON_EXPORTERS`) are scraped through a ``ScrapeConfig`` with the nodes' addresses as
static targets (:func:`scrape_config`), not through a selector-less Service with an EndpointSlice and
a ServiceMonitor. The chart's Prometheus discovers ServiceMonitor targets through the ``Endpoints``
role (``serviceDiscoveryRole`` unset), which never sees a hand-written EndpointSlice (Kubernetes
mirrors Endpoints into EndpointSlices, not back), and hand-written Endpoints are deprecated since
Kubernetes 1.33; a ScrapeConfig names each target directly, with its node's name as a label, and needs
no ClusterIP. kube-prometheus-stack 87.15.0 ships its CRD (prometheus-operator v0.92.1,
``monitoring.coreos.com/v1alpha1``); the values below make its Prometheus select every ScrapeConfig.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from collections.abc import Sequence
from typing import Any

import yaml

from infra.specs import ports
from infra.specs.namespaces import MONITORING
from infra.specs.workload import labels

RELEASE = "kube-prometheus-stack"
PROMETHEUS_URL = f"http://{RELEASE}-prometheus.{MONITORING}.svc.cluster.local:9090"
GRAFANA_ADMIN_SECRET = "grafana-admin"
DASHBOARD_LABEL = "grafana_dashboard"
DASHBOARD_LABEL_VALUE = "1"
CONFIG_MAP_LIMIT = 1_000_000  # bytes; the API server rejects larger ConfigMaps (1 MiB including metadata)
_NAME_CHARS = re.compile(r"[^a-z0-9-]+")


class ContentError(ValueError):
    """A generated dashboard or rule file that cannot be deployed; the message names the file."""


def _resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> dict[str, Any]:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu_limit, "memory": memory_limit}}


def kube_prometheus_stack_values(retention: str = "15d", storage: str = "50Gi") -> dict[str, Any]:
    """Chart values: k3s-appropriate scrape jobs, sized components, our objects picked up everywhere."""
    return {
        "crds": {"enabled": True},
        "defaultRules": {
            "create": True,
            "rules": {
                "etcd": False,
                "kubeControllerManager": False,
                "kubeSchedulerAlerting": False,
                "kubeSchedulerRecording": False,
                "kubeProxy": False,
            },
        },
        "kubeEtcd": {"enabled": False},
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeProxy": {"enabled": False},
        "coreDns": {"enabled": True},
        "kubelet": {"enabled": True},
        "prometheusOperator": {"resources": _resources("100m", "128Mi", "500m", "256Mi")},
        "prometheus": {
            "prometheusSpec": {
                "retention": retention,
                # Select ServiceMonitors, PodMonitors and rules from every namespace, not only the chart's.
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
                "probeSelectorNilUsesHelmValues": False,
                # ...and ScrapeConfigs (the node daemons' exporters) without the chart's release label.
                "scrapeConfigSelectorNilUsesHelmValues": False,
                "resources": _resources("500m", "2Gi", "2", "4Gi"),
                "storageSpec": {
                    "volumeClaimTemplate": {
                        "spec": {
                            # k3s's bundled local-path provisioner.
                            "storageClassName": "local-path",
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": storage}},
                        }
                    }
                },
            }
        },
        "alertmanager": {"alertmanagerSpec": {"resources": _resources("50m", "64Mi", "200m", "128Mi")}},
        "grafana": {
            "admin": {
                "existingSecret": GRAFANA_ADMIN_SECRET,
                "userKey": "admin-user",
                "passwordKey": "admin-password",
            },
            "sidecar": {
                "dashboards": {
                    "enabled": True,
                    "label": DASHBOARD_LABEL,
                    "labelValue": DASHBOARD_LABEL_VALUE,
                    "searchNamespace": MONITORING,
                },
                "resources": _resources("50m", "64Mi", "200m", "128Mi"),
            },
            "resources": _resources("100m", "128Mi", "500m", "512Mi"),
        },
        "kube-state-metrics": {"resources": _resources("50m", "64Mi", "200m", "256Mi")},
        "prometheus-node-exporter": {"resources": _resources("50m", "32Mi", "200m", "64Mi")},
    }


def service_monitor(
    name: str,
    namespace: str,
    service_labels: dict[str, str],
    port: str,
    path: str = "/metrics",
    interval: str = "30s",
    target_labels: Sequence[str] = (),
    honor_labels: bool = False,
) -> dict[str, Any]:
    """A ServiceMonitor for the Services in ``namespace`` that carry ``service_labels``. ``honor_labels``
    keeps the labels a target exports over the scrape's own (an exporter that reports other pods, such
    as DCGM's ``namespace`` and ``pod`` of the pod using each GPU)."""
    endpoint: dict[str, Any] = {"port": port, "path": path, "interval": interval}
    if honor_labels:
        endpoint["honorLabels"] = True
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": name, "namespace": namespace, "labels": labels(name, "monitoring")},
        "spec": {
            "selector": {"matchLabels": dict(service_labels)},
            "namespaceSelector": {"matchNames": [namespace]},
            "endpoints": [endpoint],
            **({"podTargetLabels": list(target_labels)} if target_labels else {}),
        },
    }


@dataclasses.dataclass(frozen=True)
class NodeDaemonExporter:
    """A Prometheus exporter that a daemon on the nodes serves: every node in one of ``groups`` (Ansible
    inventory groups) listens on ``port``; ``job`` is the Prometheus job label of its series."""

    job: str
    groups: tuple[str, ...]
    port: int


# The roles' JMX exporter agents (metric names: docs/interfaces.md). Every Kafka node runs one, broker or
# controller; of the HDFS daemons only the NameNode does (the hdfs role has no DataNode exporter).
NODE_DAEMON_EXPORTERS = (
    NodeDaemonExporter("kafka-jmx", ("kafka_brokers", "kafka_controllers"), ports.KAFKA_JMX_EXPORTER),
    NodeDaemonExporter("hdfs-jmx", ("hdfs_namenodes",), ports.HDFS_JMX_EXPORTER),
)
NODE_LABEL = "node"
"""Label carrying the node's name on the node daemons' series (``instance`` is ``address:port``, as
node_exporter's)."""


def scrape_config(job: str, targets: Sequence[tuple[str, Any]], interval: str = "30s") -> dict[str, Any]:
    """A ScrapeConfig of static targets: ``targets`` are ``(node name, "address:port")`` pairs (the address
    may be a Pulumi output). Prometheus labels each target's series with ``job``, ``instance`` (the
    address) and :data:`NODE_LABEL`."""
    if not targets:
        raise ValueError(f"{job}: a scrape config needs at least one target")
    return {
        "apiVersion": "monitoring.coreos.com/v1alpha1",
        "kind": "ScrapeConfig",
        "metadata": {"name": job, "namespace": MONITORING, "labels": labels(job, "monitoring")},
        "spec": {
            "jobName": job,
            "metricsPath": "/metrics",
            "scheme": "HTTP",
            "scrapeInterval": interval,
            "staticConfigs": [
                {"targets": [target], "labels": {NODE_LABEL: node}} for node, target in targets
            ],
        },
    }


@dataclasses.dataclass(frozen=True)
class Dashboard:
    path: pathlib.Path
    name: str
    text: str


@dataclasses.dataclass(frozen=True)
class RuleFile:
    path: pathlib.Path
    name: str
    groups: list[dict[str, Any]]


def object_name(prefix: str, stem: str) -> str:
    """A DNS-1123 name for a file's object: lower-case, ``-`` for anything else, at most 63 characters."""
    cleaned = _NAME_CHARS.sub("-", stem.lower()).strip("-")
    return f"{prefix}-{cleaned}"[:63].rstrip("-")


def load_dashboards(directory: pathlib.Path) -> list[Dashboard]:
    """Every ``*.json`` under ``directory`` (none when it does not exist), validated."""
    dashboards = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        text = path.read_text(encoding="utf-8")
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ContentError(
                f"{path}: not valid JSON ({error}); regenerate it with `python -m dashboards`"
            ) from error
        if not isinstance(document, dict) or "panels" not in document:
            raise ContentError(f"{path}: not a Grafana dashboard (a JSON object with 'panels')")
        if len(text.encode()) > CONFIG_MAP_LIMIT:
            raise ContentError(
                f"{path}: {len(text.encode())} bytes is over the ConfigMap limit of {CONFIG_MAP_LIMIT}"
            )
        dashboards.append(Dashboard(path, object_name("grafana-dashboard", path.stem), text))
    _unique_names(dashboards)
    return dashboards


def load_rule_files(directory: pathlib.Path) -> list[RuleFile]:
    """Every ``*.rules.yaml`` under ``directory`` (Prometheus rule-file format), validated."""
    rule_files = []
    for path in sorted(directory.glob("*.rules.yaml")) if directory.is_dir() else []:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise ContentError(f"{path}: not valid YAML ({error})") from error
        groups = document.get("groups") if isinstance(document, dict) else None
        if not isinstance(groups, list) or not groups:
            raise ContentError(f"{path}: a Prometheus rule file needs a non-empty 'groups' list")
        for index, group in enumerate(groups):
            if (
                not isinstance(group, dict)
                or not group.get("name")
                or not isinstance(group.get("rules"), list)
            ):
                raise ContentError(f"{path}: groups[{index}] needs a 'name' and a 'rules' list")
        stem = path.name.removesuffix(".rules.yaml")
        rule_files.append(RuleFile(path, object_name("mlstack", stem), groups))
    _unique_names(rule_files)
    return rule_files


def _unique_names(items: Sequence[Dashboard] | Sequence[RuleFile]) -> None:
    seen: dict[str, pathlib.Path] = {}
    for item in items:
        if item.name in seen:
            raise ContentError(
                f"{item.path} and {seen[item.name]} map to the same object name {item.name!r}; rename one"
            )
        seen[item.name] = item.path


def dashboard_config_map(dashboard: Dashboard) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": dashboard.name,
            "namespace": MONITORING,
            "labels": {**labels(dashboard.name, "dashboard"), DASHBOARD_LABEL: DASHBOARD_LABEL_VALUE},
        },
        "data": {dashboard.path.name: dashboard.text},
    }


def prometheus_rule(rule_file: RuleFile) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": rule_file.name,
            "namespace": MONITORING,
            "labels": labels(rule_file.name, "alerting"),
        },
        "spec": {"groups": rule_file.groups},
    }
