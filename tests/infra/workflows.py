"""Argo objects as the controller expands them, for the schema checks, the policies and the scan.

A WorkflowTemplate embeds each trial's training job as JSON with ``{{...}}`` placeholders; filled with
the values of a sample submission (one grid point) it is the TFJob or PyTorchJob Argo creates. Each
container step becomes a pod of the template's pod-level settings and the step's container (Argo adds
its executor's init and wait containers, which the chart's values configure).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from workloads.workflow import argo
from workloads.workflow.search import Grid

ARGO_KINDS = ("WorkflowTemplate", "CronWorkflow", "Workflow")
SAMPLE_WORKFLOW = "train-select-serve-sample"
SAMPLE_DIGEST = "0" * 64
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
_KIND = re.compile(r'"kind":\s*"(\w+)"')
_FRAMEWORK_OF_KIND = {kind: framework for framework, (kind, _) in argo.FRAMEWORKS.items()}


class UnresolvedPlaceholder(ValueError):
    """A placeholder the sample submission gives no value for."""


def workflow_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The WorkflowSpec of a Workflow or WorkflowTemplate, or the one a CronWorkflow submits."""
    return obj["spec"]["workflowSpec"] if obj["kind"] == "CronWorkflow" else obj["spec"]


def sample_submission(framework: str) -> argo.Submission:
    """A submission of one grid point, as ``python -m workloads workflow`` would send it."""
    return argo.Submission(
        framework=framework,
        grid=Grid(("plain",), (0.001,), (64,)),
        epochs=1,
        seed=0,
        workers_per_trial=2,
        min_trials=1,
        parallelism=1,
    )


def sample_values(spec: dict[str, Any], framework: str) -> dict[str, str]:
    """What ``{{...}}`` resolves to in a trial: the template's defaults, the submission's arguments, the
    grid point's item, the dataset digest ingest outputs and the workflow's name."""
    submission = sample_submission(framework)
    (point,) = submission.points()
    defaults = {
        p["name"]: p["value"] for p in spec.get("arguments", {}).get("parameters", []) if "value" in p
    }
    parameters = {**defaults, **submission.arguments()}
    return {
        **{f"workflow.parameters.{name}": value for name, value in parameters.items()},
        **{f"inputs.parameters.{name}": value for name, value in point.item().items()},
        "inputs.parameters.dataset-digest": SAMPLE_DIGEST,
        "workflow.name": SAMPLE_WORKFLOW,
    }


def fill(text: str, values: dict[str, str]) -> str:
    """``text`` (JSON) with every placeholder replaced; a placeholder without a value raises."""

    def value(match: re.Match[str]) -> str:
        if match[1] not in values:
            raise UnresolvedPlaceholder(f"{{{{{match[1]}}}}} has no value in a submission")
        return json.dumps(values[match[1]])[1:-1]  # inside a JSON string, or a bare number

    return _PLACEHOLDER.sub(value, text)


def trial_jobs(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(template name, the training job Argo submits) for every resource step of ``obj``."""
    spec = workflow_spec(obj)
    jobs = []
    for template in spec.get("templates", []):
        manifest = template.get("resource", {}).get("manifest")
        if manifest is None:
            continue
        kind = _KIND.search(manifest)
        framework = _FRAMEWORK_OF_KIND[kind[1]] if kind else ""
        jobs.append((template["name"], json.loads(fill(manifest, sample_values(spec, framework)))))
    return jobs


def as_created(job: dict[str, Any]) -> dict[str, Any]:
    """The job as the API server holds it: ``generateName`` has become a name."""
    meta = job["metadata"]
    return {**job, "metadata": {**meta, "name": f"{meta['generateName']}{job['kind'].lower()}"}}


def step_pods(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(step name, pod template) of every container step: what Argo runs as the step's main container."""
    spec = workflow_spec(obj)
    for template in spec.get("templates", []):
        if "container" not in template:
            continue
        # Argo runs a step as its template's account, else the workflow's, with both levels' volumes.
        pod_spec = {
            "serviceAccountName": template.get(
                "serviceAccountName", spec.get("serviceAccountName", "default")
            ),
            "securityContext": spec.get("securityContext", {}),
            "containers": [{"name": "main", **template["container"]}],
            "volumes": [*spec.get("volumes", []), *template.get("volumes", [])],
        }
        # Argo gives each step pod the template's class, else the workflow's.
        priority = template.get("priorityClassName", spec.get("podPriorityClassName"))
        if priority:
            pod_spec["priorityClassName"] = priority
        yield template["name"], {"metadata": template.get("metadata", {}), "spec": pod_spec}
