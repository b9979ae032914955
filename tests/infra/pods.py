"""Finds the pod templates inside the objects the program declares: workloads, training jobs, and the
Argo workflow templates' step pods and trial jobs (``tests.infra.workflows``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tests.infra import workflows

WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet", "Job")
JOB_KINDS = {"TFJob": "tfReplicaSpecs", "PyTorchJob": "pytorchReplicaSpecs"}
# Every pod of a workflow step mounts its service account's token, with this reason.
STEP_POD_TOKEN = (
    "Argo's executor in every step pod reports the step's outputs (workflowtaskresults) and a resource "
    "step creates and follows its training job through the API, as the workflow runner"
)


def object_name(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return meta.get("name") or meta.get("generateName", "")


def pod_templates(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(where, owning object, pod template) for every pod template."""
    for obj in objects:
        where = f"{obj['kind']} {obj['metadata'].get('namespace', '')}/{object_name(obj)}"
        if obj["kind"] in WORKLOAD_KINDS:
            yield where, obj, obj["spec"]["template"]
        elif obj["kind"] in JOB_KINDS:
            for replica_type, replica in obj["spec"][JOB_KINDS[obj["kind"]]].items():
                yield f"{where} {replica_type}", obj, replica["template"]
        elif obj["kind"] in workflows.ARGO_KINDS:
            for step, template in workflows.step_pods(obj):
                yield f"{where} step {step}", obj, template
            yield from pod_templates([workflows.as_created(job) for _, job in workflows.trial_jobs(obj)])


def is_step_pod(where: str) -> bool:
    return " step " in where


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]
