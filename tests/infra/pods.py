"""Finds the pod templates inside the objects the program declares (workloads and training jobs)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet", "Job")
JOB_KINDS = {"TFJob": "tfReplicaSpecs", "PyTorchJob": "pytorchReplicaSpecs"}


def pod_templates(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(where, owning object, pod template) for every pod template."""
    for obj in objects:
        where = f"{obj['kind']} {obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
        if obj["kind"] in WORKLOAD_KINDS:
            yield where, obj, obj["spec"]["template"]
        elif obj["kind"] in JOB_KINDS:
            for replica_type, replica in obj["spec"][JOB_KINDS[obj["kind"]]].items():
                yield f"{where} {replica_type}", obj, replica["template"]


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]
