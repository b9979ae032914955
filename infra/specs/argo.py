"""Argo Workflows on the platform: the chart's values, the allows of its namespace, and what workflows
may do in the training namespace.

- The controller watches only the training namespace (``--namespaced --managed-namespace``). The chart
  can scope its RBAC only to its own namespace, so the controller keeps the chart's ClusterRole (with
  ConfigMap writes, for the memoization caches) and uses it in the training namespace alone.
- The server runs with ``--auth-mode=client``: every request carries the caller's own Kubernetes token
  and the API server's RBAC decides, so the server grants nobody anything (``--auth-mode=server`` would
  act with the server's own account for anyone who reaches it). It serves HTTPS on a ClusterIP Service,
  reached with ``kubectl port-forward``; nothing exposes it.
- Every step of a workflow runs as ``workflow-runner``: it may create, follow and clean up training jobs,
  read pods and report step outputs (``workflowtaskresults``), nothing else. The step pods (not the
  trials' training pods) may reach the API server and TF Serving's REST port.
"""

from __future__ import annotations

from typing import Any

from infra.specs import ports, training, workflow
from infra.specs.monitoring import RELEASE as PROMETHEUS_RELEASE
from infra.specs.namespaces import (
    ARGO,
    ARGO_CONTROLLER_METRICS,
    SERVING,
    TRAINING,
    cidr_peer,
    egress_to_nodes,
    namespace_peer,
    policy,
    tcp,
)
from infra.specs.workload import container_security_context, metadata, resources
from workloads.workflow import argo as contract

RELEASE = "argo-workflows"
API_GROUP = contract.API_VERSION.split("/")[0]
RUNNER = workflow.SERVICE_ACCOUNT
# The pods Argo runs for a workflow's steps carry the workflow's label; the trials' training pods carry
# it too (for `argo logs`), and are told apart by the training job's label.
STEP_PODS = (
    {"key": workflow.WORKFLOW_LABEL, "operator": "Exists"},
    {"key": training.JOB_LABEL, "operator": "DoesNotExist"},
)
_RUNTIME_DEFAULT = {"seccompProfile": {"type": "RuntimeDefault"}}


def chart_values() -> dict[str, Any]:
    """Values of the argo-workflows chart (``infra.specs.versions.ARGO_WORKFLOWS``)."""
    watch_training_only = ["--namespaced", "--managed-namespace", TRAINING]
    return {
        # The chart's own (minimal) CRDs: the full ones come from a hook Job that downloads them, which an
        # air-gapped install cannot run. The tests hold every object to Argo's full schema instead.
        "crds": {"install": True, "full": False, "keep": True},
        # Who may submit is rbac.trainingSubmitters; the built-in admin/edit/view roles are not extended.
        "createAggregateRoles": False,
        # The runner's service account and Role are the program's (runner_objects), not the chart's.
        "workflow": {"serviceAccount": {"create": False}, "rbac": {"create": False}},
        "controller": {
            "workflowNamespaces": [TRAINING],
            "extraArgs": watch_training_only,
            # Memoization caches are ConfigMaps the controller creates and updates.
            "rbac": {"writeConfigMaps": True},
            "clusterWorkflowTemplates": {"enabled": False},
            "metricsConfig": {"enabled": True, "port": ARGO_CONTROLLER_METRICS},
            "serviceMonitor": {"enabled": True, "additionalLabels": {"release": PROMETHEUS_RELEASE}},
            "podSecurityContext": _pod_security_context(),
            "securityContext": _container_security_context(),
            "resources": resources("500m", "512Mi"),
        },
        # The init and wait containers Argo adds to every step pod, and the main one of resource steps.
        "executor": {
            "securityContext": _container_security_context(),
            "resources": resources("100m", "128Mi"),
        },
        "server": {
            "authModes": ["client"],
            "secure": True,
            "extraArgs": watch_training_only,
            "clusterWorkflowTemplates": {"enabled": False},
            "podSecurityContext": _pod_security_context(),
            "securityContext": _container_security_context(),
            "resources": resources("250m", "256Mi"),
        },
    }


def _pod_security_context() -> dict[str, Any]:
    return {"runAsNonRoot": True, **_RUNTIME_DEFAULT}


def _container_security_context() -> dict[str, Any]:
    """mlstack's container security context, as the user the chart's image (or the pod) says: non-root."""
    context = {key: value for key, value in container_security_context().items() if key != "runAsUser"}
    return {**context, **_RUNTIME_DEFAULT}


def namespace_policies(node_cidr: str) -> list[dict[str, Any]]:
    """The controller and the server call the API server; nothing calls them but Prometheus (baseline)."""
    return [egress_to_nodes("allow-api-server", ARGO, node_cidr, (ports.K3S_API,))]


def step_pods_peer() -> dict[str, Any]:
    """The workflow's step pods in the training namespace, as a NetworkPolicy peer."""
    return namespace_peer(TRAINING, pod_expressions=STEP_PODS)


def runner_objects(node_cidr: str) -> list[dict[str, Any]]:
    """The runner's service account and Role, and where its step pods may connect."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(RUNNER, TRAINING, "workflow")},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata(RUNNER, TRAINING, "workflow"),
            "rules": runner_rules(),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata(RUNNER, TRAINING, "workflow"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": RUNNER},
            "subjects": [{"kind": "ServiceAccount", "name": RUNNER, "namespace": TRAINING}],
        },
        policy(
            "allow-workflow-steps",
            TRAINING,
            pod_expressions=STEP_PODS,
            egress=[
                # The executor reports outputs and resource steps create and follow the trials' jobs.
                {"to": [cidr_peer(node_cidr)], "ports": tcp(ports.K3S_API)},
                # verify-serving asks TF Serving what it serves.
                {"to": [namespace_peer(SERVING)], "ports": tcp(ports.TFS_REST)},
            ],
        ),
    ]


def runner_rules() -> list[dict[str, Any]]:
    """What the steps need: a resource step's verbs on training jobs, pod status, and step outputs."""
    return [
        {
            "apiGroups": [training.API_GROUP],
            "resources": training.JOB_RESOURCES,
            "verbs": ["create", "get", "list", "watch", "patch", "delete"],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [API_GROUP], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]},
    ]
