"""Declares Kubernetes objects from plain spec dicts (``infra.specs``) as typed Pulumi resources."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

_KINDS: dict[tuple[str, str], Any] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Secret"): k8s.core.v1.Secret,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("v1", "ResourceQuota"): k8s.core.v1.ResourceQuota,
    ("v1", "LimitRange"): k8s.core.v1.LimitRange,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("scheduling.k8s.io/v1", "PriorityClass"): k8s.scheduling.v1.PriorityClass,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("apps/v1", "DaemonSet"): k8s.apps.v1.DaemonSet,
    ("apps/v1", "StatefulSet"): k8s.apps.v1.StatefulSet,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): k8s.autoscaling.v2.HorizontalPodAutoscaler,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
    ("node.k8s.io/v1", "RuntimeClass"): k8s.node.v1.RuntimeClass,
    ("discovery.k8s.io/v1", "EndpointSlice"): k8s.discovery.v1.EndpointSlice,
}
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def logical_name(prefix: str, spec: Mapping[str, Any]) -> str:
    """``<component>-<kind>-[<namespace>-]<name>``: unique and stable across runs."""
    meta = spec["metadata"]
    parts = [prefix, spec["kind"].lower(), meta.get("namespace"), meta["name"]]
    return "-".join(part for part in parts if part)


def is_typed(spec: Mapping[str, Any]) -> bool:
    """Whether the kind is built into Kubernetes (as opposed to a CRD that something must install)."""
    return (spec["apiVersion"], spec["kind"]) in _KINDS


def declare(prefix: str, spec: Mapping[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """One resource for one spec; kinds without a typed class (CRDs) become CustomResources."""
    api_version, kind = spec["apiVersion"], spec["kind"]
    name = logical_name(prefix, spec)
    fields = {key: value for key, value in spec.items() if key not in ("apiVersion", "kind")}
    resource_class = _KINDS.get((api_version, kind))
    if resource_class is None:
        return k8s.apiextensions.CustomResource(name, api_version=api_version, kind=kind, opts=opts, **fields)
    arguments = {_CAMEL.sub("_", key).lower(): value for key, value in fields.items()}
    return resource_class(name, opts=opts, **arguments)


def declare_all(
    prefix: str, specs: Iterable[Mapping[str, Any]], opts: pulumi.ResourceOptions
) -> list[pulumi.CustomResource]:
    return [declare(prefix, spec, opts) for spec in specs]
