"""Renders what the program declares as Kubernetes manifests (multi-document YAML) for scanners."""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

from infra.specs.workload import CHECKOV_SKIP
from tests.infra.pods import STEP_POD_TOKEN, WORKLOAD_KINDS, is_step_pod, object_name, pod_templates
from tests.infra.program import ProgramRun


def scannable_objects(run: ProgramRun) -> list[dict[str, Any]]:
    """Every declared object, plus each pod template inside a custom kind as a Pod: the replicas of the
    training jobs, and the step pods and trial jobs' replicas of the Argo workflow templates.

    Scanners know nothing of these kinds; the pods their controllers create from the templates are what
    runs, so they are scanned as the Pods they become.
    """
    objects = list(run.kubernetes_objects())
    for where, owner, template in pod_templates(objects):
        if owner["kind"] in WORKLOAD_KINDS:
            continue
        suffix = where.split()[-1].lower()
        annotations = dict(template["metadata"].get("annotations", {}))
        if is_step_pod(where):  # the one exception Argo's executor brings, with its reason
            index = 1 + sum(key.startswith(CHECKOV_SKIP) for key in annotations)
            annotations[f"{CHECKOV_SKIP}{index}"] = f"CKV_K8S_38={STEP_POD_TOKEN}"
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    **template["metadata"],
                    "name": f"{object_name(owner)}-{suffix}-0",
                    "namespace": owner["metadata"]["namespace"],
                    **({"annotations": annotations} if annotations else {}),
                },
                "spec": template["spec"],
            }
        )
    return objects


def write_manifests(run: ProgramRun, directory: pathlib.Path) -> pathlib.Path:
    path = directory / f"{run.stack}.yaml"
    path.write_text(yaml.safe_dump_all(scannable_objects(run), sort_keys=False))
    return path
