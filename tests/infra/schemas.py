"""Offline schema validation of what the program declares.

Core Kubernetes objects: ``kubernetes-validate --strict`` schemas for the stack's Kubernetes version.
TFJob and PyTorchJob: the training operator's own API models (the ``kubeflow-training`` package), walked
field by field so an unknown field, a wrong type or a missing required field fails, with the pod
templates inside checked as core ``PodTemplate`` objects.
Argo's WorkflowTemplate, CronWorkflow and Workflow: Hera's models (generated from Argo's schema), made
strict: pydantic ignores unknown fields and converts types, so the object must also survive the round
trip through the model unchanged. The trial job a template embeds is checked as a training job.
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pydantic
from hera.workflows.models.io.argoproj.workflow.v1alpha1 import CronWorkflow, Workflow, WorkflowTemplate
from kubeflow.training import models as kubeflow_models

from infra.config import SUPPORTED_KUBERNETES_MINORS
from tests.infra.workflows import UnresolvedPlaceholder, trial_jobs

_PRIMITIVES = {
    "str": str,
    "int": int,
    "bool": bool,
    "float": (int, float),
    "object": object,
    "Quantity": (str, int, float),
}


_ARGO_MODELS: dict[str, type[pydantic.BaseModel]] = {
    "WorkflowTemplate": WorkflowTemplate,
    "CronWorkflow": CronWorkflow,
    "Workflow": Workflow,
}


class SchemaError(ValueError):
    pass


def validate_core(obj: dict[str, Any], kubernetes_minor: str) -> None:
    try:
        kubernetes_validate.validate(obj, kubernetes_minor, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = "/".join(str(p) for p in error.path)
        raise SchemaError(f"{obj['kind']} {obj['metadata'].get('name')}: {path}: {error.message}") from error


def validate_training_job(obj: dict[str, Any], kubernetes_minor: str) -> None:
    model = {"TFJob": "KubeflowOrgV1TFJob", "PyTorchJob": "KubeflowOrgV1PyTorchJob"}[obj["kind"]]
    _check(obj, model, obj["kind"], kubernetes_minor)


def _check(value: Any, type_name: str, path: str, minor: str) -> None:
    if value is None:
        return
    if type_name in _PRIMITIVES:
        expected = _PRIMITIVES[type_name]
        if isinstance(value, bool) and type_name != "bool" and type_name != "object":
            raise SchemaError(f"{path}: expected {type_name}, got a boolean")
        if not isinstance(value, expected):
            raise SchemaError(f"{path}: expected {type_name}, got {type(value).__name__}")
        return
    if match := re.fullmatch(r"list\[(.+)\]", type_name):
        if not isinstance(value, list):
            raise SchemaError(f"{path}: expected a list")
        for index, item in enumerate(value):
            _check(item, match[1], f"{path}[{index}]", minor)
        return
    if match := re.fullmatch(r"dict\(str, (.+)\)", type_name):
        if not isinstance(value, dict):
            raise SchemaError(f"{path}: expected an object")
        for key, item in value.items():
            _check(item, match[1], f"{path}.{key}", minor)
        return
    if type_name == "V1ObjectMeta":
        validate_core({"apiVersion": "v1", "kind": "ConfigMap", "metadata": value}, minor)
        return
    if type_name == "V1PodTemplateSpec":
        validate_core(
            {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"}, "template": value},
            minor,
        )
        return
    model = getattr(kubeflow_models, type_name, None)
    if model is None:
        raise SchemaError(f"{path}: no model for type {type_name}")
    if not isinstance(value, dict):
        raise SchemaError(f"{path}: expected an object ({type_name})")
    fields = {json_key: attribute for attribute, json_key in model.attribute_map.items()}
    unknown = set(value) - set(fields)
    if unknown:
        raise SchemaError(
            f"{path}: unknown fields {sorted(unknown)} for {type_name}; known: {sorted(fields)}"
        )
    for json_key, item in value.items():
        _check(item, model.openapi_types[fields[json_key]], f"{path}.{json_key}", minor)
    try:  # the generated model raises on missing required fields
        model(**{fields[key]: item for key, item in value.items()})
    except ValueError as error:
        raise SchemaError(f"{path}: {error}") from error


def validate_argo(obj: dict[str, Any], kubernetes_minor: str = SUPPORTED_KUBERNETES_MINORS[-1]) -> None:
    """Validates an Argo object strictly, and each training job it embeds (filled in as Argo would)."""
    where = f"{obj['kind']} {obj['metadata'].get('name') or obj['metadata'].get('generateName')}"
    try:
        model = _ARGO_MODELS[obj["kind"]].model_validate(obj)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"])
        raise SchemaError(f"{where}: {path.lstrip('.')}: {first['msg']}") from error
    difference = first_difference(obj, model.model_dump(by_alias=True, exclude_none=True, mode="json"))
    if difference:
        raise SchemaError(f"{where}: {difference}")
    try:
        jobs = trial_jobs(obj)
    except UnresolvedPlaceholder as error:
        raise SchemaError(f"{where}: trial manifest: {error}") from error
    for template, job in jobs:
        try:
            validate_training_job(job, kubernetes_minor)
        except SchemaError as error:
            raise SchemaError(f"{where}: template {template}: {error}") from error


def first_difference(given: Any, parsed: Any, path: str = "") -> str | None:
    """The first path where ``given`` and its round trip through the model differ, and how."""
    if isinstance(given, dict) and isinstance(parsed, dict):
        for key in given:
            if key not in parsed:
                return f"{path}{key}: not in the schema (unknown or misspelt field)"
            if found := first_difference(given[key], parsed[key], f"{path}{key}."):
                return found
        extra = [key for key in parsed if key not in given]
        return f"{path}{extra[0]}: added by the model" if extra else None
    if isinstance(given, list) and isinstance(parsed, list) and len(given) == len(parsed):
        for index, (item, parsed_item) in enumerate(zip(given, parsed, strict=True)):
            if found := first_difference(item, parsed_item, f"{path.rstrip('.')}[{index}]."):
                return found
        return None
    if _same_scalar(given, parsed):
        return None
    return f"{path.rstrip('.')}: {given!r} ({type(given).__name__}) is read as {parsed!r} ({type(parsed).__name__})"


def _same_scalar(given: Any, parsed: Any) -> bool:
    numbers = (int, float)
    if isinstance(given, numbers) and isinstance(parsed, numbers) and not isinstance(given, bool):
        return not isinstance(parsed, bool) and given == parsed
    return type(given) is type(parsed) and given == parsed
