"""How pods reach the model store that ``serving.modelSource`` names, whatever its kind.

- **Promotion writes it**: the workflow's steps (``select`` promotes) and trials act on ``s3://`` through
  the configured endpoint with the credentials Secret mounted as files (``CREDENTIALS_DIR``, which the
  storage layer reads: no secret in any environment, and a rotated Secret is picked up), on ``hdfs://`` as the
  workloads' user (``infra.specs.workload.workload_env``), on a ``pvc`` mounted read-write at the
  store's path (the claim must then be ReadWriteMany: TF Serving mounts it too, read-only).
- **TF Serving reads a local directory**: stock ``tensorflow/serving`` reads neither ``s3://`` (gone
  since 2.7) nor ``hdfs://`` (needs a custom build), so for those its pods carry the mirror sidecar
  (``python -m workloads mirror-models``, our workloads image), which keeps ``MIRROR_DIR`` (an emptyDir
  both containers mount) holding the store's complete versions, each appearing whole by one rename. A
  ``pvc`` store is served straight from the claim.
- **Network**: egress to exactly the store: the HDFS NameNode and DataNode ports on the nodes, or the
  S3 endpoint's port.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from infra.config import ModelSource
from infra.specs import data, ports
from infra.specs.namespaces import cidr_peer, egress_to_nodes, policy, tcp
from workloads.core.storage import S3_CREDENTIALS_DIR_ENV, S3_ENDPOINT_ENV
from workloads.serving import tfs_config

MIRROR_DIR = "/models-mirror"
MIRROR_VOLUME = "models-mirror"
STORE_VOLUME = "model-store"
CREDENTIALS_VOLUME = "s3-credentials"
CREDENTIALS_DIR = "/var/run/secrets/mlstack/s3"
POLICY = "allow-model-store"


def store_url(source: ModelSource) -> str:
    """Where promotion writes ``<model name>/<version>/``: a URL, or the path the claim is mounted at."""
    return (source.base or data.MODELS) if source.kind == "hdfs" else source.base


def is_mirrored(source: ModelSource) -> bool:
    """Whether TF Serving reads a mirror of the store (``s3``, ``hdfs``) rather than the store (``pvc``)."""
    return source.kind != "pvc"


def served_base_path(source: ModelSource) -> str:
    """Where TF Serving finds the model's ``<version>/`` directories."""
    base = MIRROR_DIR if is_mirrored(source) else store_url(source)
    return f"{base.rstrip('/')}/{tfs_config.MODEL_NAME}"


def endpoint_port(source: ModelSource) -> int:
    """The S3 endpoint's port: given in ``s3Endpoint``, else its scheme's (AWS: HTTPS)."""
    endpoint = urllib.parse.urlsplit(source.s3_endpoint or "https://s3.amazonaws.com")
    return endpoint.port or (ports.HTTPS if endpoint.scheme == "https" else ports.HTTP)


def env(source: ModelSource) -> list[dict[str, Any]]:
    """The environment of a workloads container that reads or writes the store (none but for ``s3``)."""
    if source.kind != "s3":
        return []
    items: list[dict[str, Any]] = []
    if source.s3_endpoint:
        items.append({"name": S3_ENDPOINT_ENV, "value": source.s3_endpoint})
    if source.s3_region:
        items.append({"name": "AWS_REGION", "value": source.s3_region})
    items.append({"name": S3_CREDENTIALS_DIR_ENV, "value": CREDENTIALS_DIR})
    return items


def claim_volume(source: ModelSource, read_only: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A ``pvc`` store's volume and its mount at the store's path (nothing for the other kinds)."""
    if source.kind != "pvc":
        return [], []
    claim = {"claimName": source.claim_name, "readOnly": read_only}
    return (
        [{"name": STORE_VOLUME, "persistentVolumeClaim": claim}],
        [{"name": STORE_VOLUME, "mountPath": source.base, "readOnly": read_only}],
    )


def credentials_volume(source: ModelSource) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """An ``s3`` store's credentials Secret as files at ``CREDENTIALS_DIR``, readable by the pod's group only."""
    if source.kind != "s3":
        return [], []
    secret = {"secretName": source.credentials_secret, "defaultMode": 0o440}
    return (
        [{"name": CREDENTIALS_VOLUME, "secret": secret}],
        [{"name": CREDENTIALS_VOLUME, "mountPath": CREDENTIALS_DIR, "readOnly": True}],
    )


def writer_volumes(source: ModelSource) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What a pod that writes the store mounts: the claim read-write, or the S3 credentials."""
    claim_volumes, claim_mounts = claim_volume(source, read_only=False)
    secret_volumes, secret_mounts = credentials_volume(source)
    return claim_volumes + secret_volumes, claim_mounts + secret_mounts


def egress_policies(source: ModelSource, namespace: str, node_cidr: str) -> list[dict[str, Any]]:
    """Egress from every pod of ``namespace`` to the store (a PVC needs none)."""
    if source.kind == "hdfs":
        return [egress_to_nodes(POLICY, namespace, node_cidr, data.hdfs_client_ports(store_url(source)))]
    return object_storage_policies(source, namespace)


def object_storage_policies(
    source: ModelSource, namespace: str, pod_selector: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Egress to an ``s3`` store's endpoint, on its port (any address: an endpoint is a name, AWS's or a
    MinIO's anywhere), from the pods of ``namespace`` that ``pod_selector`` selects (all when None);
    nothing for the other kinds."""
    if source.kind != "s3":
        return []
    return [
        policy(
            POLICY,
            namespace,
            pod_selector=pod_selector,
            egress=[{"to": [cidr_peer("0.0.0.0/0")], "ports": tcp(endpoint_port(source))}],
        )
    ]


def mirror_args(source: ModelSource, ready_file: str) -> list[str]:
    """The sidecar's ``mirror-models`` arguments: the store into ``MIRROR_DIR``."""
    return [
        "--model-store", store_url(source),
        "--target", MIRROR_DIR,
        "--model-name", tfs_config.MODEL_NAME,
        "--ready-file", ready_file,
    ]  # fmt: skip
