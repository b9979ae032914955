"""Namespaces with Pod Security labels, and NetworkPolicies: deny everything, then allow what is needed.

Each namespace gets a default-deny policy for ingress and egress, DNS to CoreDNS, and Prometheus
scrapes of its metrics ports; components add their own allows (clients of TF Serving, HDFS and Kafka on
the nodes, S3 over HTTPS) through the helpers below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from infra.specs import ports
from infra.specs.workload import labels
from workloads.workflow import argo

TRAINING = argo.NAMESPACE  # the workflows run where their templates are
SERVING = "mlstack-serving"
DATA = "mlstack-data"
MONITORING = "monitoring"
GPU = "nvidia-gpu"
KEDA = "keda"
ARGO = "mlstack-argo"
TRACKING = "mlstack-tracking"
# Where the Argo workflow controller serves its metrics (the chart's values set it, Prometheus scrapes it).
ARGO_CONTROLLER_METRICS = 9090
PROMETHEUS_POD = {"app.kubernetes.io/name": "prometheus"}
_NAMESPACE_NAME = "kubernetes.io/metadata.name"


@dataclasses.dataclass(frozen=True)
class NamespacePlan:
    name: str
    pod_security: str
    """Pod Security Standard enforced (``restricted`` unless the reason says otherwise)."""
    reason: str
    metrics_ports: tuple[int, ...] = ()
    """Ports Prometheus (in ``monitoring``) may scrape."""
    same_namespace: bool = False
    """Pods of the namespace talk to each other (training workers, the monitoring stack)."""


PLANS: dict[str, NamespacePlan] = {
    plan.name: plan
    for plan in (
        NamespacePlan(
            TRAINING,
            "restricted",
            "training pods run as non-root with no capabilities",
            (ports.TRAINING_METRICS,),
            same_namespace=True,
        ),
        NamespacePlan(
            SERVING, "restricted", "TF Serving runs as non-root with no capabilities", (ports.TFS_REST,)
        ),
        NamespacePlan(
            DATA,
            "restricted",
            "inference workers and stream ingestion run as non-root",
            (ports.INFER_METRICS, ports.INGEST_METRICS),
        ),
        NamespacePlan(
            MONITORING,
            "privileged",
            "node_exporter reads the host's /proc, /sys and root filesystem with hostNetwork and hostPID",
            same_namespace=True,
        ),
        NamespacePlan(
            GPU,
            "privileged",
            "the device plugin writes the kubelet's device-plugin socket (hostPath) and the DCGM exporter "
            "needs CAP_SYS_ADMIN for profiling counters",
            (ports.DCGM_EXPORTER,),
        ),
        NamespacePlan(
            ARGO,
            "restricted",
            "the Argo workflow controller and server run as non-root with no capabilities",
            (ARGO_CONTROLLER_METRICS,),
        ),
        NamespacePlan(
            TRACKING,
            "restricted",
            "the MLflow tracking server and its PostgreSQL run as non-root with no capabilities",
        ),
        NamespacePlan(
            KEDA,
            "baseline",
            "KEDA's chart pods are not all labelled for restricted; baseline is enforced, restricted warned",
            same_namespace=True,
        ),
    )
}


def namespace(plan: NamespacePlan, kubernetes_minor: str) -> dict[str, Any]:
    version = f"v{kubernetes_minor}"
    pod_security = {
        "pod-security.kubernetes.io/enforce": plan.pod_security,
        "pod-security.kubernetes.io/enforce-version": version,
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/audit-version": version,
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/warn-version": version,
    }
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": plan.name,
            "labels": {**labels(plan.name, "namespace"), **pod_security},
            "annotations": {"mlstack.io/pod-security-reason": plan.reason},
        },
    }


def policy(
    name: str,
    namespace: str,
    *,
    ingress: Sequence[dict[str, Any]] | None = None,
    egress: Sequence[dict[str, Any]] | None = None,
    pod_selector: dict[str, str] | None = None,
    pod_expressions: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A NetworkPolicy; a direction given as ``[]`` denies it, ``None`` leaves it to other policies.

    It applies to the pods with the ``pod_selector`` labels that match ``pod_expressions`` (all pods of
    the namespace when both are empty)."""
    types = [kind for kind, rules in (("Ingress", ingress), ("Egress", egress)) if rules is not None]
    spec: dict[str, Any] = {
        "podSelector": label_selector(pod_selector, pod_expressions),
        "policyTypes": types,
    }
    if ingress is not None:
        spec["ingress"] = list(ingress)
    if egress is not None:
        spec["egress"] = list(egress)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": labels(name, "network-policy")},
        "spec": spec,
    }


def tcp(*numbers: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": number} for number in numbers]


def label_selector(
    labels: dict[str, str] | None = None, expressions: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """A LabelSelector; an empty one selects everything."""
    selector: dict[str, Any] = {}
    if labels:
        selector["matchLabels"] = dict(labels)
    if expressions:
        selector["matchExpressions"] = [dict(expression) for expression in expressions]
    return selector


def namespace_peer(
    name: str, pod_labels: dict[str, str] | None = None, pod_expressions: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    peer: dict[str, Any] = {"namespaceSelector": {"matchLabels": {_NAMESPACE_NAME: name}}}
    if pod_labels or pod_expressions:
        peer["podSelector"] = label_selector(pod_labels, pod_expressions)
    return peer


def cidr_peer(cidr: str) -> dict[str, Any]:
    return {"ipBlock": {"cidr": cidr}}


def baseline_policies(plan: NamespacePlan) -> list[dict[str, Any]]:
    """Deny all, then DNS, same-namespace traffic and Prometheus scrapes as the plan says."""
    ns = plan.name
    policies = [
        policy("default-deny", ns, ingress=[], egress=[]),
        policy(
            "allow-dns",
            ns,
            egress=[
                {
                    "to": [namespace_peer("kube-system", {"k8s-app": "kube-dns"})],
                    "ports": [{"protocol": "UDP", "port": ports.DNS}, {"protocol": "TCP", "port": ports.DNS}],
                }
            ],
        ),
    ]
    if plan.same_namespace:
        same = [{"podSelector": {}}]
        policies.append(policy("allow-same-namespace", ns, ingress=[{"from": same}], egress=[{"to": same}]))
    if plan.metrics_ports:
        policies.append(
            policy(
                "allow-prometheus-scrape",
                ns,
                ingress=[
                    {"from": [namespace_peer(MONITORING, PROMETHEUS_POD)], "ports": tcp(*plan.metrics_ports)}
                ],
            )
        )
    return policies


def egress_to_nodes(name: str, namespace: str, node_cidr: str, node_ports: Iterable[int]) -> dict[str, Any]:
    """Egress to services that run on the nodes themselves (HDFS, Kafka, the API server)."""
    return policy(name, namespace, egress=[{"to": [cidr_peer(node_cidr)], "ports": tcp(*node_ports)}])


def egress_https(name: str, namespace: str) -> dict[str, Any]:
    """Egress to HTTPS anywhere (S3 and other object stores)."""
    return policy(name, namespace, egress=[{"to": [cidr_peer("0.0.0.0/0")], "ports": tcp(ports.HTTPS)}])
