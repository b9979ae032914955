"""Renders what the program declares as Kubernetes manifests (multi-document YAML) for scanners."""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

from tests.infra.pods import JOB_KINDS, pod_templates
from tests.infra.program import ProgramRun


def scannable_objects(run: ProgramRun) -> list[dict[str, Any]]:
    """Every declared object, plus each TFJob/PyTorchJob replica's pod template as a Pod.

    Scanners know nothing of training-operator kinds; the pods the operator creates from these
    templates are what runs, so they are scanned as the Pods they become.
    """
    objects = list(run.kubernetes_objects())
    for where, owner, template in pod_templates([o for o in objects if o["kind"] in JOB_KINDS]):
        replica_type = where.split()[-1].lower()
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    **template["metadata"],
                    "name": f"{owner['metadata']['name']}-{replica_type}-0",
                    "namespace": owner["metadata"]["namespace"],
                },
                "spec": template["spec"],
            }
        )
    return objects


def write_manifests(run: ProgramRun, directory: pathlib.Path) -> pathlib.Path:
    path = directory / f"{run.stack}.yaml"
    path.write_text(yaml.safe_dump_all(scannable_objects(run), sort_keys=False))
    return path
