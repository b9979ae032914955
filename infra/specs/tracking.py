"""The MLflow tracking server in ``mlstack-tracking``: the workflow's selection and every trial record their
runs there (``URL``), and its registry holds the promoted models.

- **Server**: our image (workloads/images/tracking.Dockerfile: the ``tracking-server`` extra's pinned
  mlflow and psycopg) running ``mlflow server``; a Deployment behind a Service, probed on ``/health``.
- **Backend store**: PostgreSQL, the official image pinned by digest, a StatefulSet of one with its own
  claim. Its password is generated (``pulumi_random``) into a Secret: PostgreSQL reads it as a file
  (``POSTGRES_PASSWORD_FILE``), the server's libpq from a password file (``PGPASSFILE``) its init
  container writes into memory; the backend store URI names no password, so none is in any arg, env
  value or rendered object.
- **Artifacts**: ``--serve-artifacts``: clients upload through the server (``mlflow-artifacts:`` URIs), so
  trials and steps need no store credentials for MLflow and reach nothing but the server's port; the
  server writes under ``ARTIFACTS_DIR`` of the model store (``serving.modelSource``): an ``s3`` store with
  the credentials Secret (which must exist in ``mlstack-tracking`` too), a ``pvc`` store through a claim
  of the same name in ``mlstack-tracking`` bound to the same ReadWriteMany storage. mlflow writes
  ``hdfs://`` only through libhdfs and a JVM, which the image does not carry: beside an HDFS store the
  artifacts go to a claim of their own (``tracking.artifactStorage``).
- **Network**: the server's port admits only ``CLIENT_NAMESPACES``; PostgreSQL admits only the server;
  the server reaches only PostgreSQL and the store (and DNS, as every namespace).
"""

from __future__ import annotations

from typing import Any

from infra.config import Images, ModelSource, Tracking
from infra.specs import model_store, ports, versions
from infra.specs.namespaces import SERVING, TRACKING, TRAINING, namespace_peer, policy, tcp
from infra.specs.scheduling import TRAINING_PRIORITY
from infra.specs.workload import (
    checkov_skips,
    container_security_context,
    image_checkov_skips,
    labels,
    metadata,
    pod_security_context,
    pull_policy,
    resources,
    scratch_volumes,
    selector,
)
from workloads.core import tracking as tracking_client
from workloads.core.storage import S3_CREDENTIAL_ENV, S3_CREDENTIALS_DIR_ENV
from workloads.workflow import argo

SERVER = "mlflow"
DATABASE = "mlflow-postgres"
PASSWORD_SECRET = "mlflow-postgres"
PASSWORD_KEY = "password"
DATABASE_USER = "mlflow"
DATABASE_NAME = "mlflow"
HOST = f"{SERVER}.{TRACKING}.svc.cluster.local"
URL = f"http://{HOST}:{ports.MLFLOW}"
DATABASE_HOST = f"{DATABASE}.{TRACKING}.svc.cluster.local"
DATABASE_CLAIM = "mlflow-postgres-data"
# The containers' port names (at most 15 characters), which the Services and probes refer to.
SERVER_PORT = "http"
DATABASE_PORT = "postgres"
# What the workflow's steps and trials are given (``--tracking-uri``, MLFLOW_TRACKING_URI): the client's own names.
URI_FLAG = "--tracking-uri"
URI_VARIABLE = tracking_client.URI_VARIABLE
# Where the server may be called from: the trials' and the workflow steps' namespace (one: the workflows run
# where their templates are) and serving's.
CLIENT_NAMESPACES = tuple(dict.fromkeys((TRAINING, argo.NAMESPACE, SERVING)))
ARTIFACTS_DIR = "mlflow-artifacts"
ARTIFACTS_CLAIM = "mlflow-artifacts"
ARTIFACTS_MOUNT = "/mlflow-artifacts"
PASSWORD_DIR = "/var/run/secrets/mlstack/postgres"
# The server's credential files, written by its init container into an in-memory volume.
CREDENTIALS_VOLUME = "credentials"
CREDENTIALS_DIR = "/var/run/mlflow"
PGPASS_FILE = f"{CREDENTIALS_DIR}/pgpass"
AWS_CREDENTIALS_FILE = f"{CREDENTIALS_DIR}/aws-credentials"
POSTGRES_DATA = "/var/lib/postgresql/data"
SERVER_WORKERS = 2
COMPONENT = "tracking"


def objects(settings: Tracking, images: Images, source: ModelSource, password: Any) -> list[dict[str, Any]]:
    """Everything the tracking server needs; ``password``: the database password (an Output)."""
    return [
        password_secret(password),
        *database_objects(settings),
        *server_objects(settings, images, source),
        *network_policies(source),
    ]


def password_secret(password: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(PASSWORD_SECRET, TRACKING, COMPONENT),
        "type": "Opaque",
        "stringData": {PASSWORD_KEY: password},
    }


def _service_account(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(name, TRACKING, COMPONENT),
        "automountServiceAccountToken": False,
    }


def _service(name: str, port_name: str, port: int, headless: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": selector(name),
        "ports": [{"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}],
    }
    spec.update({"clusterIP": "None"} if headless else {"type": "ClusterIP"})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, TRACKING, COMPONENT),
        "spec": spec,
    }


def _claim(name: str, size: str, storage_class: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(name, TRACKING, COMPONENT),
        "spec": spec,
    }


def _password_volume() -> dict[str, Any]:
    """The generated database password as the file ``PASSWORD_DIR/PASSWORD_KEY``, readable by the pod's
    group only."""
    secret = {
        "secretName": PASSWORD_SECRET,
        "items": [{"key": PASSWORD_KEY, "path": PASSWORD_KEY}],
        "defaultMode": 0o440,
    }
    return {"name": "password", "secret": secret}


def _pod_spec(name: str, container: dict[str, Any], volumes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "serviceAccountName": name,
        # The trials record to it as they train: it yields to serving only, as they do.
        "priorityClassName": TRAINING_PRIORITY.name,
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": volumes,
    }


# -- the backend store ---------------------------------------------------------------------------------


def database_objects(settings: Tracking) -> list[dict[str, Any]]:
    """PostgreSQL: a StatefulSet of one (a replacement starts only once the old pod is gone, so two never
    share the data) over a claim of its own, which the pod template names (it is whole as a Pod), and the
    headless Service it is reached by."""
    return [
        _service_account(DATABASE),
        _service(DATABASE, DATABASE_PORT, ports.POSTGRES, headless=True),
        _claim(DATABASE_CLAIM, settings.database_storage, settings.storage_class),
        _statefulset(settings),
    ]


def _pg_isready() -> dict[str, Any]:
    command = ["pg_isready", "--host", "127.0.0.1", "--port", str(ports.POSTGRES)]
    return {"exec": {"command": [*command, "--username", DATABASE_USER, "--dbname", DATABASE_NAME]}}


def _statefulset(settings: Tracking) -> dict[str, Any]:
    image = versions.POSTGRES_IMAGE
    volumes, mounts = scratch_volumes()
    volumes += [
        # The socket directory and the password file; the data directory is the claim.
        {"name": "run", "emptyDir": {"sizeLimit": "16Mi"}},
        {"name": "data", "persistentVolumeClaim": {"claimName": DATABASE_CLAIM}},
        _password_volume(),
    ]
    mounts += [
        {"name": "run", "mountPath": "/var/run/postgresql"},
        {"name": "password", "mountPath": PASSWORD_DIR, "readOnly": True},
        {"name": "data", "mountPath": POSTGRES_DATA},
    ]
    container = {
        "name": DATABASE,
        "image": image,
        "imagePullPolicy": pull_policy(image),
        "ports": [{"name": DATABASE_PORT, "containerPort": ports.POSTGRES, "protocol": "TCP"}],
        "env": [
            {"name": "POSTGRES_USER", "value": DATABASE_USER},
            {"name": "POSTGRES_DB", "value": DATABASE_NAME},
            {"name": "POSTGRES_PASSWORD_FILE", "value": f"{PASSWORD_DIR}/{PASSWORD_KEY}"},
            # A directory of the claim, so that initdb creates it owned by the pod's user (not the mount).
            {"name": "PGDATA", "value": f"{POSTGRES_DATA}/pgdata"},
        ],
        "resources": resources(settings.database_resources.cpu, settings.database_resources.memory),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
        "readinessProbe": {**_pg_isready(), "periodSeconds": 10},
        "livenessProbe": {
            **_pg_isready(),
            "initialDelaySeconds": 30,
            "periodSeconds": 20,
            "failureThreshold": 6,
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            **metadata(DATABASE, TRACKING, COMPONENT),
            "annotations": checkov_skips(image_checkov_skips(image)),
        },
        "spec": {
            "replicas": 1,
            "serviceName": DATABASE,
            "selector": {"matchLabels": selector(DATABASE)},
            "template": {
                "metadata": {"labels": labels(DATABASE, COMPONENT)},
                "spec": _pod_spec(DATABASE, container, volumes),
            },
        },
    }


# -- the server ----------------------------------------------------------------------------------------


def backend_store_uri() -> str:
    """PostgreSQL without a password: libpq takes it from its password file (``PGPASSFILE``)."""
    return f"postgresql://{DATABASE_USER}@{DATABASE_HOST}:{ports.POSTGRES}/{DATABASE_NAME}"


def artifacts_destination(source: ModelSource) -> str:
    """Where the server keeps the artifacts: under the model store, or its own claim beside HDFS."""
    if source.kind == "hdfs":
        return ARTIFACTS_MOUNT
    return f"{model_store.store_url(source).rstrip('/')}/{ARTIFACTS_DIR}"


def allowed_hosts() -> str:
    """The Host headers the server answers (MLflow refuses others): its Service's names, and localhost for
    the probes and ``kubectl port-forward``."""
    names = [HOST, f"{SERVER}.{TRACKING}.svc", f"{SERVER}.{TRACKING}", "localhost"]
    return ",".join(host for name in names for host in (name, f"{name}:{ports.MLFLOW}"))


def server_args(source: ModelSource) -> list[str]:
    return [
        "--host", "0.0.0.0",
        "--port", str(ports.MLFLOW),
        "--workers", str(SERVER_WORKERS),
        "--backend-store-uri", backend_store_uri(),
        "--serve-artifacts",
        "--artifacts-destination", artifacts_destination(source),
        "--allowed-hosts", allowed_hosts(),
    ]  # fmt: skip


def server_env(source: ModelSource) -> list[dict[str, Any]]:
    """A writable home, where libpq and boto3 find their credentials (files the init container writes), and
    an ``s3`` store's endpoint and region."""
    items = [
        {"name": "HOME", "value": "/tmp"},
        {"name": "PGPASSFILE", "value": PGPASS_FILE},
    ]
    if source.kind != "s3":
        return items
    items.append({"name": "AWS_SHARED_CREDENTIALS_FILE", "value": AWS_CREDENTIALS_FILE})
    if source.s3_endpoint:
        items.append({"name": "MLFLOW_S3_ENDPOINT_URL", "value": source.s3_endpoint})
    if source.s3_region:
        items.append({"name": "AWS_DEFAULT_REGION", "value": source.s3_region})
    return items


def credentials_script(source: ModelSource) -> str:
    """What the init container runs: the mounted Secrets' files into the formats libpq and boto3 read (a
    password file libpq accepts only as its user's, mode 0600; a shared-credentials file), owner-only, in
    memory. The generated password is alphanumeric: nothing in it needs escaping."""
    password = f'"$(cat {PASSWORD_DIR}/{PASSWORD_KEY})"'
    lines = [
        "set -eu",
        "umask 077",
        f"printf '%s:%s:%s:%s:%s\\n' {DATABASE_HOST} {ports.POSTGRES} {DATABASE_NAME} {DATABASE_USER} "
        f"{password} > {PGPASS_FILE}",
    ]
    if source.kind == "s3":
        # The directory as every reader of the store's Secret is told it (infra.specs.model_store).
        key_id, secret_key = (
            f'"$(cat "${{{S3_CREDENTIALS_DIR_ENV}}}/{name}")"' for name in S3_CREDENTIAL_ENV
        )
        lines.append(
            "printf '[default]\\naws_access_key_id = %s\\naws_secret_access_key = %s\\n' "
            f"{key_id} {secret_key} > {AWS_CREDENTIALS_FILE}"
        )
    return "\n".join(lines)


def _credentials_container(image: str, source: ModelSource) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The init container that writes the credential files into the in-memory ``CREDENTIALS_VOLUME``, and
    the volumes it reads them from (the database password; an ``s3`` store's Secret)."""
    secret_volumes, secret_mounts = model_store.credentials_volume(source)
    volumes = [_password_volume(), *secret_volumes]
    container = {
        "name": "credentials",
        "image": image,
        "imagePullPolicy": pull_policy(image),
        "command": ["/bin/sh", "-c", credentials_script(source)],
        "env": [{"name": S3_CREDENTIALS_DIR_ENV, "value": model_store.CREDENTIALS_DIR}]
        if secret_mounts
        else [],
        "resources": resources("100m", "64Mi"),
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "password", "mountPath": PASSWORD_DIR, "readOnly": True},
            *secret_mounts,
            {"name": CREDENTIALS_VOLUME, "mountPath": CREDENTIALS_DIR},
        ],
    }
    volumes.append({"name": CREDENTIALS_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
    return container, volumes


def artifact_volumes(source: ModelSource) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A ``pvc`` store's claim read-write, or beside HDFS the artifacts' own claim; nothing for ``s3``."""
    if source.kind == "hdfs":
        claim = {"claimName": ARTIFACTS_CLAIM}
        return (
            [{"name": ARTIFACTS_CLAIM, "persistentVolumeClaim": claim}],
            [{"name": ARTIFACTS_CLAIM, "mountPath": ARTIFACTS_MOUNT}],
        )
    return model_store.claim_volume(source, read_only=False)


def server_objects(settings: Tracking, images: Images, source: ModelSource) -> list[dict[str, Any]]:
    items = [
        _service_account(SERVER),
        _service(SERVER, SERVER_PORT, ports.MLFLOW),
        _deployment(settings, images, source),
    ]
    if source.kind == "hdfs":
        items.append(_claim(ARTIFACTS_CLAIM, settings.artifact_storage, settings.storage_class))
    return items


def _health() -> dict[str, Any]:
    return {
        "httpGet": {
            "path": "/health",
            "port": SERVER_PORT,
            "httpHeaders": [{"name": "Host", "value": "localhost"}],
        }
    }


def _deployment(settings: Tracking, images: Images, source: ModelSource) -> dict[str, Any]:
    image = images.tracking()
    volumes, mounts = scratch_volumes()
    store_volumes, store_mounts = artifact_volumes(source)
    container = {
        "name": SERVER,
        "image": image,
        "imagePullPolicy": pull_policy(image),
        "command": ["mlflow", "server"],
        "args": server_args(source),
        "ports": [{"name": SERVER_PORT, "containerPort": ports.MLFLOW, "protocol": "TCP"}],
        "env": server_env(source),
        "resources": resources(settings.server_resources.cpu, settings.server_resources.memory),
        "securityContext": container_security_context(),
        "volumeMounts": [
            *mounts,
            *store_mounts,
            {"name": CREDENTIALS_VOLUME, "mountPath": CREDENTIALS_DIR, "readOnly": True},
        ],
        "readinessProbe": {**_health(), "periodSeconds": 10},
        "livenessProbe": {**_health(), "initialDelaySeconds": 30, "periodSeconds": 20, "failureThreshold": 6},
    }
    init, credential_volumes = _credentials_container(image, source)
    # Its own artifacts claim (beside HDFS) is ReadWriteOnce: a new pod may start only once the old one is gone.
    strategy = (
        {"type": "Recreate"}
        if source.kind == "hdfs"
        else {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            **metadata(SERVER, TRACKING, COMPONENT),
            "annotations": checkov_skips(image_checkov_skips(image)),
        },
        "spec": {
            "replicas": 1,
            "strategy": strategy,
            "selector": {"matchLabels": selector(SERVER)},
            "template": {
                "metadata": {"labels": labels(SERVER, COMPONENT)},
                "spec": {
                    **_pod_spec(SERVER, container, volumes + store_volumes + credential_volumes),
                    "initContainers": [init],
                },
            },
        },
    }


# -- the network ---------------------------------------------------------------------------------------


def network_policies(source: ModelSource) -> list[dict[str, Any]]:
    """Who may call the server and the database, and where the server may go; the clients' egress."""
    server, database = selector(SERVER), selector(DATABASE)
    items = [
        policy(
            "allow-mlflow-clients",
            TRACKING,
            pod_selector=server,
            ingress=[{"from": [namespace_peer(n) for n in CLIENT_NAMESPACES], "ports": tcp(ports.MLFLOW)}],
        ),
        policy(
            "allow-postgres-from-mlflow",
            TRACKING,
            pod_selector=database,
            ingress=[{"from": [{"podSelector": {"matchLabels": server}}], "ports": tcp(ports.POSTGRES)}],
        ),
        policy(
            "allow-mlflow-to-postgres",
            TRACKING,
            pod_selector=server,
            egress=[{"to": [{"podSelector": {"matchLabels": database}}], "ports": tcp(ports.POSTGRES)}],
        ),
        *model_store.object_storage_policies(source, TRACKING, pod_selector=server),
    ]
    for namespace in CLIENT_NAMESPACES:
        items.append(
            policy(
                "allow-mlflow",
                namespace,
                egress=[{"to": [namespace_peer(TRACKING, server)], "ports": tcp(ports.MLFLOW)}],
            )
        )
    return items
