"""Offline schema validation of what the program declares.

Core Kubernetes objects: ``kubernetes-validate --strict`` schemas for the stack's Kubernetes version.
TFJob and PyTorchJob: the training operator's own API models (the ``kubeflow-training`` package), walked
field by field so an unknown field, a wrong type or a missing required field fails, with the pod
templates inside checked as core ``PodTemplate`` objects.
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
from kubeflow.training import models as kubeflow_models

_PRIMITIVES = {
    "str": str,
    "int": int,
    "bool": bool,
    "float": (int, float),
    "object": object,
    "Quantity": (str, int, float),
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
