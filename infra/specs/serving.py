"""TF Serving: Deployment, Service, PodDisruptionBudget, autoscaling (HPA on CPU, or a KEDA
ScaledObject on a Prometheus query), ServiceMonitor, its config files and its network policies.

The config files come from ``workloads.serving.tfs_config`` (the same renderer the development server
uses). TF Serving reads the model store through ``infra.specs.model_store``: a ``pvc`` directly, ``s3://``
and ``hdfs://`` through the mirror sidecar, a native sidecar (an init container that keeps running) whose
startup probe holds TF Serving back until the store has been looked at once.

On a first deploy no model exists yet: TF Serving starts (its startup and liveness probes are its gRPC
port) and stays unready, without restarts, until the first promotion reaches it; the Deployment is not
awaited by Pulumi (``pulumi.com/skipAwait``), so ``pulumi up`` goes green and the pods turn ready with no
second run. Readiness is the model's metadata endpoint, which answers only once a version is loaded, and
TF Serving loads a version only after replaying its warmup requests
(``assets.extra/tf_serving_warmup_requests``), so a pod takes traffic only when warm.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from infra.config import checks
from infra.config.settings import MIRROR_RESOURCES, SERVING_MAX_SURGE, Images, ModelSource, Serving
from infra.specs import argo, model_store, ports
from infra.specs.monitoring import PROMETHEUS_URL, service_monitor
from infra.specs.namespaces import SERVING, namespace_peer, policy, tcp
from infra.specs.scheduling import SERVING_PRIORITY
from infra.specs.workload import (
    checkov_skips,
    container_security_context,
    gpu_pod_fields,
    image_checkov_skips,
    labels,
    metadata,
    pod_security_context,
    pull_policy,
    resources,
    scratch_volumes,
    selector,
    workload_env,
)
from workloads.serving import tfs_config

NAME = "tf-serving"
HOST = f"{NAME}.{SERVING}.svc.cluster.local"
REST_URL = f"http://{HOST}:{ports.TFS_REST}"
CONFIG_DIR = "/etc/tfs"
MIRROR = "model-mirror"
MIRROR_READY_FILE = "/tmp/model-mirror.ready"
MIRROR_SIZE = "4Gi"
SKIP_AWAIT = "pulumi.com/skipAwait"
MODEL_FILE, BATCHING_FILE, MONITORING_FILE = "models.config", "batching.config", "monitoring.config"
REQUEST_RATE_QUERY = (
    f'sum(rate(:tensorflow:serving:request_count{{model_name="{tfs_config.MODEL_NAME}"}}[2m]))'
)
# TF Serving reports latency in microseconds; the query answers in milliseconds.
P99_LATENCY_QUERY = (
    "histogram_quantile(0.99, sum by (le) (rate(:tensorflow:serving:request_latency_bucket"
    f'{{model_name="{tfs_config.MODEL_NAME}",API="predict"}}[2m]))) / 1000'
)


def cpu_cores(quantity: str) -> int:
    """Whole cores in a CPU quantity (at least 1), for the batching thread count."""
    return max(1, math.floor(checks.amount(quantity)))


def config_files(serving: Serving) -> dict[str, str]:
    model = tfs_config.ServedModel(
        name=tfs_config.MODEL_NAME,
        base_path=model_store.served_base_path(serving.model_source),
        versions=serving.versions,
        labels=serving.labels,
    )
    profile = tfs_config.batching_profile("gpu" if serving.gpu else "cpu", cpu_cores(serving.resources.cpu))
    return {
        MODEL_FILE: tfs_config.render_model_config([model]),
        BATCHING_FILE: tfs_config.render_batching_parameters(profile),
        MONITORING_FILE: tfs_config.render_monitoring_config(),
    }


def serving_image(serving: Serving) -> str:
    if not serving.gpu or "@sha256:" in serving.image or re.search(r":[^/]*gpu[^/]*$", serving.image):
        return serving.image
    return f"{serving.image}-gpu"


def tf_serving_args() -> list[str]:
    return [
        f"--port={ports.TFS_GRPC}",
        f"--rest_api_port={ports.TFS_REST}",
        f"--model_config_file={CONFIG_DIR}/{MODEL_FILE}",
        "--enable_batching=true",
        f"--batching_parameters_file={CONFIG_DIR}/{BATCHING_FILE}",
        f"--monitoring_config_file={CONFIG_DIR}/{MONITORING_FILE}",
        "--enable_model_warmup=true",
        # New versions written under the base path are picked up within this many seconds.
        "--file_system_poll_wait_seconds=30",
    ]


def objects(serving: Serving, images: Images, node_cidr: str) -> list[dict[str, Any]]:
    """Every object of the serving component."""
    files = config_files(serving)
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(f"{NAME}-config", SERVING, "serving"),
            "data": files,
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": metadata(NAME, SERVING, "serving"),
            "automountServiceAccountToken": False,
        },
        deployment(serving, images, config_hash(files)),
        service(),
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": metadata(NAME, SERVING, "serving"),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(NAME)}},
        },
        autoscaler(serving),
        service_monitor(
            NAME, SERVING, selector(NAME), port="http", path=tfs_config.METRICS_PATH, interval="15s"
        ),
        policy(
            "allow-serving-clients",
            SERVING,
            pod_selector=selector(NAME),
            ingress=[
                {
                    "from": [namespace_peer(SERVING)]
                    + [namespace_peer(ns) for ns in serving.client_namespaces],
                    "ports": tcp(ports.TFS_GRPC, ports.TFS_REST),
                },
                # The workflow's verify-serving step checks what a promotion made TF Serving serve.
                {"from": [argo.step_pods_peer()], "ports": tcp(ports.TFS_REST)},
            ],
        ),
        *model_store.egress_policies(serving.model_source, SERVING, node_cidr),
    ]


def config_hash(files: dict[str, str]) -> str:
    """A digest of the config files: in the pod template, so a changed config rolls the pods."""
    return hashlib.sha256("".join(f"{k}\0{v}\0" for k, v in sorted(files.items())).encode()).hexdigest()


def deployment(serving: Serving, images: Images, config_hash: str) -> dict[str, Any]:
    image = serving_image(serving)
    source = serving.model_source
    volumes, mounts = _volumes(source)
    skips = (
        image_checkov_skips(image, images.workloads())
        if model_store.is_mirrored(source)
        else image_checkov_skips(image)
    )
    pod_spec: dict[str, Any] = {
        "serviceAccountName": NAME,
        "priorityClassName": SERVING_PRIORITY.name,
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "terminationGracePeriodSeconds": 30,
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector(NAME)},
            }
        ],
        "containers": [_container(serving, image, mounts)],
        "volumes": volumes,
    }
    if model_store.is_mirrored(source):
        pod_spec["initContainers"] = [_mirror(source, images)]
    if serving.gpu:
        pod_spec.update(gpu_pod_fields())
    annotations = {
        **checkov_skips(skips),
        # No model exists before the first promotion: `pulumi up` does not wait for ready pods.
        SKIP_AWAIT: "true",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**metadata(NAME, SERVING, "serving"), "annotations": annotations},
        "spec": {
            # No `replicas`: the autoscaler owns it (a declared count would fight every scaling decision).
            "selector": {"matchLabels": selector(NAME)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": SERVING_MAX_SURGE},
            },
            "template": {
                "metadata": {
                    "labels": labels(NAME, "serving"),
                    "annotations": {"mlstack.io/config-sha256": config_hash},
                },
                "spec": pod_spec,
            },
        },
    }


def _volumes(source: ModelSource) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Scratch space, the config files, and the models: the mirror's volume or the claim (read-only)."""
    volumes, mounts = scratch_volumes()
    volumes.append({"name": "config", "configMap": {"name": f"{NAME}-config"}})
    mounts.append({"name": "config", "mountPath": CONFIG_DIR, "readOnly": True})
    if model_store.is_mirrored(source):
        volumes.append({"name": model_store.MIRROR_VOLUME, "emptyDir": {"sizeLimit": MIRROR_SIZE}})
        mounts.append(
            {"name": model_store.MIRROR_VOLUME, "mountPath": model_store.MIRROR_DIR, "readOnly": True}
        )
    claim_volumes, claim_mounts = model_store.claim_volume(source, read_only=True)
    secret_volumes, _ = model_store.credentials_volume(source)  # the mirror's alone
    return volumes + claim_volumes + secret_volumes, mounts + claim_mounts


def _container(serving: Serving, image: str, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    model_ready = {"path": f"/v1/models/{tfs_config.MODEL_NAME}/metadata", "port": "http"}
    server_up = {"tcpSocket": {"port": "grpc"}}
    return {
        "name": "tensorflow-serving",
        "image": image,
        "imagePullPolicy": pull_policy(image),
        "command": ["tensorflow_model_server"],
        "args": tf_serving_args(),
        "ports": [
            {"name": "grpc", "containerPort": ports.TFS_GRPC, "protocol": "TCP"},
            {"name": "http", "containerPort": ports.TFS_REST, "protocol": "TCP"},
        ],
        "resources": resources(serving.resources.cpu, serving.resources.memory, gpus=1 if serving.gpu else 0),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
        # The server is up before any model exists (a first deploy): probes on it never restart a pod that
        # waits for its first version. Loading and warming a version can take minutes; readiness then gates
        # traffic on a warm model.
        "startupProbe": {**server_up, "periodSeconds": 5, "failureThreshold": 60},
        "readinessProbe": {"httpGet": model_ready, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**server_up, "periodSeconds": 10, "failureThreshold": 3},
    }


def _mirror(source: ModelSource, images: Images) -> dict[str, Any]:
    """The native sidecar that mirrors the store into the volume TF Serving reads; TF Serving starts once
    it has looked at the store (its startup probe), so a wrong endpoint or credential shows here."""
    image = images.workloads()
    _, mounts = scratch_volumes()  # the pod's scratch volume, which TF Serving mounts too
    return {
        "name": MIRROR,
        "image": image,
        "imagePullPolicy": pull_policy(image),
        # An init container that keeps running beside the others (a Kubernetes native sidecar).
        "restartPolicy": "Always",
        "command": ["python", "-m", "workloads", "mirror-models"],
        "args": model_store.mirror_args(source, MIRROR_READY_FILE),
        "env": workload_env() + model_store.env(source),
        "resources": resources(MIRROR_RESOURCES.cpu, MIRROR_RESOURCES.memory),
        "securityContext": container_security_context(),
        "volumeMounts": [
            *mounts,
            {"name": model_store.MIRROR_VOLUME, "mountPath": model_store.MIRROR_DIR},
            *model_store.credentials_volume(source)[1],
        ],
        "startupProbe": {
            "exec": {"command": ["cat", MIRROR_READY_FILE]},
            "periodSeconds": 5,
            "failureThreshold": 120,
        },
    }


def service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(NAME, SERVING, "serving"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(NAME),
            "ports": [
                {
                    "name": "grpc",
                    "port": ports.TFS_GRPC,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "grpc",
                },
                {
                    "name": "http",
                    "port": ports.TFS_REST,
                    "targetPort": "http",
                    "protocol": "TCP",
                    "appProtocol": "http",
                },
            ],
        },
    }


def autoscaler(serving: Serving) -> dict[str, Any]:
    """A CPU HorizontalPodAutoscaler, or a KEDA ScaledObject on request rate or p99 latency."""
    if serving.autoscaling.mode == "cpu":
        return _horizontal_pod_autoscaler(serving)
    return _scaled_object(serving)


def _scale_down() -> dict[str, Any]:
    """Scale down only after the load has stayed low for five minutes."""
    return {"scaleDown": {"stabilizationWindowSeconds": 300}}


def _horizontal_pod_autoscaler(serving: Serving) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(NAME, SERVING, "serving"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
            "minReplicas": serving.min_replicas,
            "maxReplicas": serving.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": serving.autoscaling.target_cpu_percent,
                        },
                    },
                }
            ],
            "behavior": _scale_down(),
        },
    }


def _scaled_object(serving: Serving) -> dict[str, Any]:
    """KEDA on a Prometheus query: the request rate per replica, or the p99 latency."""
    scaling = serving.autoscaling
    if scaling.mode == "requests":
        # AverageValue: replicas = ceil(total request rate / requests per replica).
        metric_type, query, threshold = "AverageValue", REQUEST_RATE_QUERY, scaling.target_requests_per_second
    else:
        # Value: replicas = ceil(current replicas * p99 / target p99).
        metric_type, query, threshold = "Value", P99_LATENCY_QUERY, scaling.target_p99_ms
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(NAME, SERVING, "serving"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
            "minReplicaCount": serving.min_replicas,
            "maxReplicaCount": serving.max_replicas,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": _scale_down()}},
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": metric_type,
                    "metadata": {
                        "serverAddress": PROMETHEUS_URL,
                        "query": query,
                        "threshold": str(threshold),
                    },
                }
            ],
        },
    }
