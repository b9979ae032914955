"""Shared pieces of every pod this program builds: labels, security contexts, resources, GPU access.

Every container runs as a non-root user with no capabilities, no privilege escalation, a read-only
root filesystem and the runtime's default seccomp profile, unless its spec says otherwise (and why).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PART_OF = "mlstack"
# The user the project's images create and every mlstack pod runs as (docs/interfaces.md), also the
# HDFS user the pods act as (ansible's hdfs_workloads_user owns the directories they write).
NON_ROOT_UID = 10001
WORKLOAD_USER = "mlstack"
# The shard cache under the writable /tmp (the image's default is under the read-only home).
SHARD_CACHE_DIR = "/tmp/cache/shards"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_RUNTIME_CLASS = "nvidia"
GPU_NODE_LABEL = "nvidia.com/gpu.present"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
CHECKOV_SKIP = "checkov.io/skip"


def labels(name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
    }


def selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": PART_OF}


def metadata(name: str, namespace: str | None, component: str, **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels(name, component)}
    if namespace:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def checkov_skips(reasons: Mapping[str, str]) -> dict[str, str]:
    """checkov's in-manifest suppressions (``checkov.io/skipN: CHECK=reason``), each with its reason."""
    annotations = {}
    for index, (check, reason) in enumerate(sorted(reasons.items()), 1):
        if not reason.strip():
            raise ValueError(f"suppressing {check} needs a reason")
        annotations[f"{CHECKOV_SKIP}{index}"] = f"{check}={reason}"
    return annotations


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": NON_ROOT_UID,
        "runAsGroup": NON_ROOT_UID,
        "fsGroup": NON_ROOT_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": NON_ROOT_UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def resources(cpu: str, memory: str, gpus: int = 0) -> dict[str, Any]:
    """Requests equal to limits: Guaranteed QoS, so a busy neighbour cannot starve training or serving."""
    amounts: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if gpus:
        amounts[GPU_RESOURCE] = str(gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def gpu_pod_fields() -> dict[str, Any]:
    """What a pod needs to run on a GPU node: the nvidia runtime and tolerance of the GPU taint."""
    return {"runtimeClassName": GPU_RUNTIME_CLASS, "tolerations": [dict(GPU_TOLERATION)]}


def scratch_volumes(memory_backed_shm: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Writable /tmp (the root filesystem is read-only) and, for multi-process frameworks, /dev/shm."""
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    if memory_backed_shm:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    return volumes, mounts


def workload_env() -> list[dict[str, str]]:
    """The environment of every workloads container: caches on the writable /tmp, the HDFS user."""
    return [
        {"name": "HOME", "value": "/tmp"},
        {"name": "MLSTACK_CACHE_DIR", "value": SHARD_CACHE_DIR},
        {"name": "HADOOP_USER_NAME", "value": WORKLOAD_USER},
    ]


def pull_policy(image: str) -> str:
    """``Always`` for tags (a tag can move, and the kubelet re-checks registry credentials); a digest
    cannot change, so a cached copy is the same image."""
    return "IfNotPresent" if "@sha256:" in image else "Always"


def image_checkov_skips(*images: str) -> dict[str, str]:
    """checkov suppressions that follow from how ``images`` are pinned, with the reason for each."""
    if all("@sha256:" in image for image in images):
        return {"CKV_K8S_15": "pinned by digest: a cached copy is the same image, so IfNotPresent is safe"}
    return {
        "CKV_K8S_43": "pinned by release tag from stack config; set mlstack:imageDigests (or mirror and pin) "
        "to pin by digest"
    }
