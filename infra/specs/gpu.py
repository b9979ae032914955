"""GPU access on k3s: the ``nvidia`` RuntimeClass, the NVIDIA device plugin (with time-slicing or MIG
configuration) and the DCGM exporter, on the nodes labelled ``nvidia.com/gpu.present=true``.

The device plugin and the exporter are plain DaemonSets (the upstream static manifests' shape), so
every field is ours to validate. Both run as root, which the ``nvidia-gpu`` namespace allows and each
spec explains.
"""

from __future__ import annotations

import hashlib
from typing import Any

import yaml

from infra.specs import ports, versions
from infra.specs.namespaces import GPU
from infra.specs.workload import (
    GPU_NODE_LABEL,
    GPU_RESOURCE,
    GPU_RUNTIME_CLASS,
    GPU_TOLERATION,
    checkov_skips,
    image_checkov_skips,
    labels,
    metadata,
    pull_policy,
    selector,
)

DEVICE_PLUGIN = "nvidia-device-plugin"
DCGM_EXPORTER = "dcgm-exporter"
_CONFIG_DIR = "/etc/nvidia-device-plugin"
_GPU_NODES = {GPU_NODE_LABEL: "true"}
_ROOT_REASON = "runs as root: {why}; confined to the privileged nvidia-gpu namespace"


def runtime_class() -> dict[str, Any]:
    """``nvidia`` RuntimeClass; its scheduling rules also steer pods that use it onto GPU nodes.

    k3s (1.28+) installs a RuntimeClass of this name itself when it finds the NVIDIA container runtime;
    ``patchForce`` lets ours take over the fields it sets, with identical handler.
    """
    return {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {
            "name": GPU_RUNTIME_CLASS,
            "labels": labels(GPU_RUNTIME_CLASS, "gpu"),
            "annotations": {"pulumi.com/patchForce": "true"},
        },
        "handler": GPU_RUNTIME_CLASS,
        "scheduling": {"nodeSelector": dict(_GPU_NODES), "tolerations": [dict(GPU_TOLERATION)]},
    }


def device_plugin_config(strategy: str, replicas: int, mig_strategy: str) -> str:
    """The device plugin's config file (``version: v1``): MIG exposure and time-slicing."""
    config: dict[str, Any] = {
        "version": "v1",
        "flags": {"migStrategy": mig_strategy, "failOnInitError": True},
    }
    if strategy == "time-slicing":
        if replicas < 2:
            raise ValueError("time-slicing needs at least 2 replicas per GPU")
        config["sharing"] = {
            "timeSlicing": {
                # Pods keep asking for nvidia.com/gpu; each physical GPU is advertised `replicas` times.
                "renameByDefault": False,
                "failRequestsGreaterThanOne": True,
                "resources": [{"name": GPU_RESOURCE, "replicas": replicas}],
            }
        }
    elif strategy != "none":
        raise ValueError(f"unknown GPU sharing strategy {strategy!r}")
    return yaml.safe_dump(config, sort_keys=True)


def device_plugin(config_text: str) -> list[dict[str, Any]]:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(f"{DEVICE_PLUGIN}-config", GPU, "gpu"),
        "data": {"config.yaml": config_text},
    }
    container = {
        "name": DEVICE_PLUGIN,
        "image": versions.DEVICE_PLUGIN_IMAGE,
        "imagePullPolicy": pull_policy(versions.DEVICE_PLUGIN_IMAGE),
        "env": [
            {"name": "CONFIG_FILE", "value": f"{_CONFIG_DIR}/config.yaml"},
            {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
            {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "compute,utility"},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "200m", "memory": "128Mi"},
        },
        "volumeMounts": [
            {"name": "device-plugins", "mountPath": "/var/lib/kubelet/device-plugins"},
            {"name": "config", "mountPath": _CONFIG_DIR, "readOnly": True},
        ],
    }
    skips = {
        "CKV_K8S_23": _ROOT_REASON.format(why="the kubelet's device-plugin directory is owned by root"),
        "CKV_K8S_40": _ROOT_REASON.format(why="the kubelet's device-plugin directory is owned by root"),
        "CKV_K8S_8": "no HTTP endpoint; the kubelet re-registers the plugin over its gRPC socket",
        "CKV_K8S_9": "no HTTP endpoint; the kubelet re-registers the plugin over its gRPC socket",
        **image_checkov_skips(versions.DEVICE_PLUGIN_IMAGE),
    }
    daemon_set = _daemon_set(DEVICE_PLUGIN, container, config_text, skips)
    daemon_set["spec"]["template"]["spec"]["volumes"] = [
        {
            "name": "device-plugins",
            "hostPath": {"path": "/var/lib/kubelet/device-plugins", "type": "Directory"},
        },
        {"name": "config", "configMap": {"name": f"{DEVICE_PLUGIN}-config"}},
    ]
    return [config_map, daemon_set]


def dcgm_exporter() -> list[dict[str, Any]]:
    why = "DCGM's profiling counters need CAP_SYS_ADMIN"
    skips = {
        "CKV_K8S_23": _ROOT_REASON.format(why="the embedded DCGM host engine opens the GPU devices as root"),
        "CKV_K8S_40": _ROOT_REASON.format(why="the embedded DCGM host engine opens the GPU devices as root"),
        "CKV_K8S_25": why,
        "CKV_K8S_37": why,
        "CKV_K8S_39": why,
        **image_checkov_skips(versions.DCGM_EXPORTER_IMAGE),
    }
    daemon_set = _daemon_set(DCGM_EXPORTER, _dcgm_container(), "", skips)
    daemon_set["spec"]["template"]["spec"]["volumes"] = [
        {
            "name": "pod-resources",
            "hostPath": {"path": "/var/lib/kubelet/pod-resources", "type": "Directory"},
        },
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
    ]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(DCGM_EXPORTER, GPU, "gpu"),
        "spec": {
            "selector": selector(DCGM_EXPORTER),
            "ports": [
                {"name": "metrics", "port": ports.DCGM_EXPORTER, "targetPort": "metrics", "protocol": "TCP"}
            ],
        },
    }
    return [daemon_set, service]


def _dcgm_container() -> dict[str, Any]:
    return {
        "name": DCGM_EXPORTER,
        "image": versions.DCGM_EXPORTER_IMAGE,
        "imagePullPolicy": pull_policy(versions.DCGM_EXPORTER_IMAGE),
        "env": [
            {"name": "DCGM_EXPORTER_LISTEN", "value": f":{ports.DCGM_EXPORTER}"},
            # Label each GPU's metrics with the pod that holds it (through the kubelet's pod-resources socket).
            {"name": "DCGM_EXPORTER_KUBERNETES", "value": "true"},
            {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
        ],
        "ports": [{"name": "metrics", "containerPort": ports.DCGM_EXPORTER, "protocol": "TCP"}],
        "securityContext": {
            "runAsNonRoot": False,
            "runAsUser": 0,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]},
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "384Mi"},
            "limits": {"cpu": "500m", "memory": "768Mi"},
        },
        "readinessProbe": {"httpGet": {"path": "/health", "port": "metrics"}, "periodSeconds": 10},
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": "metrics"},
            "initialDelaySeconds": 45,
            "periodSeconds": 20,
        },
        "volumeMounts": [
            {"name": "pod-resources", "mountPath": "/var/lib/kubelet/pod-resources", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def _daemon_set(
    name: str, container: dict[str, Any], config_text: str, skips: dict[str, str]
) -> dict[str, Any]:
    annotations = (
        {"mlstack.io/config-sha256": hashlib.sha256(config_text.encode()).hexdigest()} if config_text else {}
    )
    pod_labels = labels(name, "gpu")
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {**metadata(name, GPU, "gpu"), "annotations": checkov_skips(skips)},
        "spec": {
            "selector": {"matchLabels": selector(name)},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": pod_labels, **({"annotations": annotations} if annotations else {})},
                "spec": {
                    "runtimeClassName": GPU_RUNTIME_CLASS,
                    "priorityClassName": "system-node-critical",
                    "automountServiceAccountToken": False,
                    "nodeSelector": dict(_GPU_NODES),
                    "tolerations": [dict(GPU_TOLERATION)],
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                },
            },
        },
    }
