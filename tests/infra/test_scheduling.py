"""Priorities, quotas and container defaults as the program declares them for the example stacks: every
pod of ours names a declared priority class in the intended order, and what the stack itself runs fits
the quota of its namespace (computed from the declared objects, not from the settings)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from infra.config import settings
from infra.config.checks import amount
from infra.specs import scheduling
from infra.specs.namespaces import DATA, SERVING, TRAINING
from tests.infra.pods import containers, is_step_pod, pod_templates
from tests.infra.program import ProgramRun

pytestmark = pytest.mark.xdist_group(name="infra-program")

# Which class each of our pods must carry: online inference first, then training, then batch work.
INTENDED = {
    "Deployment mlstack-serving/tf-serving": scheduling.SERVING_PRIORITY,
    "Deployment mlstack-data/infer-worker": scheduling.SERVING_PRIORITY,
    "Deployment mlstack-data/stream-ingest": scheduling.BATCH_PRIORITY,
}


def intended(where: str) -> scheduling.Priority:
    if where in INTENDED:
        return INTENDED[where]
    if is_step_pod(where):
        return scheduling.BATCH_PRIORITY
    if where.split()[0] in ("TFJob", "PyTorchJob"):
        return scheduling.TRAINING_PRIORITY
    raise AssertionError(f"{where}: no intended priority class; add it to INTENDED")


def test_priority_classes_put_serving_before_training_before_batch(run: ProgramRun):
    classes = {obj["metadata"]["name"]: obj for obj in run.objects_of_kind("PriorityClass")}
    order = [classes[p.name]["value"] for p in scheduling.PRIORITIES]
    assert order == sorted(order, reverse=True) and len(set(order)) == 3
    assert not any(obj["globalDefault"] for obj in classes.values()), "other software keeps priority 0"
    assert classes[scheduling.BATCH_PRIORITY.name]["preemptionPolicy"] == "Never"


def test_every_workload_pod_names_its_intended_declared_priority_class(run: ProgramRun):
    objects = run.kubernetes_objects()
    declared = {obj["metadata"]["name"] for obj in objects if obj["kind"] == "PriorityClass"}
    checked = 0
    for where, owner, template in pod_templates(objects):
        if owner["metadata"].get("namespace") not in (TRAINING, SERVING, DATA):
            continue
        name = template["spec"].get("priorityClassName")
        assert name in declared, f"{where}: priorityClassName {name!r} is not declared"
        assert name == intended(where).name, where
        checked += 1
    assert checked >= 5


def test_each_workload_namespace_has_its_quota_and_container_defaults(run: ProgramRun):
    for kind in ("ResourceQuota", "LimitRange"):
        namespaces = sorted(obj["metadata"]["namespace"] for obj in run.objects_of_kind(kind))
        assert namespaces == sorted(scheduling.BUDGET_NAMESPACES.values()), kind
    assert set(scheduling.BUDGET_NAMESPACES) == set(settings.DEFAULT_BUDGETS)


def test_what_the_stack_runs_fits_the_quota_of_its_namespace(run: ProgramRun):
    """Deployments at their most (an HPA's max or a ScaledObject's, plus a rollout's surge)."""
    objects = run.kubernetes_objects()
    quotas = {
        obj["metadata"]["namespace"]: obj["spec"]["hard"] for obj in run.objects_of_kind("ResourceQuota")
    }
    peaks = _autoscaled_maxima(objects)
    used: dict[str, dict[str, Decimal]] = {}
    for _, owner, template in pod_templates(objects):
        namespace = owner["metadata"].get("namespace")
        if owner["kind"] != "Deployment" or namespace not in quotas:
            continue
        pods = peaks.get(owner["metadata"]["name"], owner["spec"].get("replicas", 1)) + _surge(owner)
        totals = used.setdefault(namespace, {"pods": Decimal(0)})
        totals["pods"] += pods
        for container in containers(template):
            for resource, value in container["resources"]["requests"].items():
                totals[resource] = totals.get(resource, Decimal(0)) + pods * amount(str(value))
    assert set(used) >= {SERVING}
    for namespace, totals in used.items():
        hard = quotas[namespace]
        for resource, total in totals.items():
            limit = hard["pods"] if resource == "pods" else hard[f"requests.{resource}"]
            assert total <= amount(limit), f"{namespace}: {resource} {total} > quota {limit}"


def _autoscaled_maxima(objects: list[dict]) -> dict[str, int]:
    maxima = {}
    for obj in objects:
        if obj["kind"] == "HorizontalPodAutoscaler":
            maxima[obj["spec"]["scaleTargetRef"]["name"]] = obj["spec"]["maxReplicas"]
        elif obj["kind"] == "ScaledObject":
            maxima[obj["spec"]["scaleTargetRef"]["name"]] = obj["spec"]["maxReplicaCount"]
    return maxima


def _surge(deployment: dict) -> int:
    strategy = deployment["spec"].get("strategy", {"type": "RollingUpdate"})
    if strategy["type"] == "Recreate":
        return 0
    return int(strategy.get("rollingUpdate", {}).get("maxSurge", 1))
