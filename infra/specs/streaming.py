"""The Kafka-side services in ``mlstack-data``: inference workers (requests topic -> TF Serving ->
results topic) and streaming ingestion (images topic -> dataset shards), from the workloads image.

Their container args are ``python -m workloads <command>`` flags of docs/interfaces.md. The brokers'
listener is secured as ``streaming.kafka`` says (the kafka role's ``kafka_tls``, ``kafka_sasl_scram``): the
SCRAM user's Secret and the CA's ConfigMap are mounted read-only as files and the args only name them, so no
secret is in any arg or environment variable.
"""

from __future__ import annotations

from typing import Any

from infra.config import Images, Streaming
from infra.config.settings import KafkaClient
from infra.specs import data, ports
from infra.specs import serving as tf_serving
from infra.specs.monitoring import service_monitor
from infra.specs.namespaces import DATA, SERVING, egress_to_nodes, namespace_peer, policy, tcp
from infra.specs.scheduling import BATCH_PRIORITY, SERVING_PRIORITY
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
    workload_env,
)
from workloads.serving import tfs_config
from workloads.streaming import kafka

INFER_WORKER = "infer-worker"
STREAM_INGEST = "stream-ingest"
# Inference answers requests as they come (serving's class); ingestion is batch work that can wait.
PRIORITIES = {INFER_WORKER: SERVING_PRIORITY.name, STREAM_INGEST: BATCH_PRIORITY.name}
# stream-ingest is its output's only writer: a rollout stops the old pod before the new one starts.
STRATEGIES = {
    INFER_WORKER: {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
    STREAM_INGEST: {"type": "Recreate"},
}
TF_SERVING_URL = f"http://{tf_serving.NAME}.{SERVING}.svc.cluster.local:{ports.TFS_REST}"
KAFKA_CREDENTIALS_VOLUME = "kafka-credentials"
KAFKA_CREDENTIALS_DIR = "/var/run/secrets/mlstack/kafka"
KAFKA_CA_VOLUME = "kafka-ca"
KAFKA_CA_DIR = "/etc/mlstack/kafka-ca"
KAFKA_CA_FILE = f"{KAFKA_CA_DIR}/{kafka.CA_KEY}"


def kafka_args(client: KafkaClient) -> list[str]:
    """How both services reach the brokers: the listener's protocol and where its secrets are mounted."""
    args = [
        "--bootstrap-servers", data.KAFKA_BOOTSTRAP_SERVERS,
        "--kafka-security-protocol", client.security_protocol,
    ]  # fmt: skip
    if kafka.uses_sasl(client.security_protocol):
        args += [
            "--kafka-sasl-mechanism", client.sasl_mechanism,
            "--kafka-credentials-dir", KAFKA_CREDENTIALS_DIR,
        ]  # fmt: skip
    if kafka.uses_tls(client.security_protocol):
        args += ["--kafka-ca-file", KAFKA_CA_FILE]
    return args


def kafka_volumes(client: KafkaClient) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The SCRAM user's Secret (readable by the pod's group only, as the S3 credentials are:
    ``infra.specs.model_store``) and the CA's ConfigMap, each with exactly the keys the services read, so a
    Secret or ConfigMap without them keeps the pod from starting with an event that names the key."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if kafka.uses_sasl(client.security_protocol):
        items = [{"key": name, "path": name} for name in kafka.CREDENTIAL_FILES]
        secret = {"secretName": client.credentials_secret, "items": items, "defaultMode": 0o440}
        volumes.append({"name": KAFKA_CREDENTIALS_VOLUME, "secret": secret})
        mounts.append(
            {"name": KAFKA_CREDENTIALS_VOLUME, "mountPath": KAFKA_CREDENTIALS_DIR, "readOnly": True}
        )
    if kafka.uses_tls(client.security_protocol):
        items = [{"key": kafka.CA_KEY, "path": kafka.CA_KEY}]
        config_map = {"name": client.ca_config_map, "items": items, "defaultMode": 0o444}
        volumes.append({"name": KAFKA_CA_VOLUME, "configMap": config_map})
        mounts.append({"name": KAFKA_CA_VOLUME, "mountPath": KAFKA_CA_DIR, "readOnly": True})
    return volumes, mounts


def infer_worker_args(streaming: Streaming) -> list[str]:
    return [
        *kafka_args(streaming.kafka),
        "--group-id", kafka.INFER_WORKER_GROUP,
        "--requests-topic", kafka.REQUESTS_TOPIC,
        "--results-topic", kafka.RESULTS_TOPIC,
        "--dlq-topic", kafka.DLQ_TOPIC,
        "--server-url", TF_SERVING_URL,
        "--model-name", tfs_config.MODEL_NAME,
        "--max-batch-size", str(streaming.micro_batch_size),
        "--max-batch-wait-ms", str(streaming.micro_batch_wait_ms),
        "--metrics-port", str(ports.INFER_METRICS),
        "--log-format", "json",
    ]  # fmt: skip


def stream_ingest_args(streaming: Streaming) -> list[str]:
    return [
        *kafka_args(streaming.kafka),
        "--group-id", kafka.STREAM_INGEST_GROUP,
        "--topic", kafka.INGEST_TOPIC,
        "--output", streaming.ingest_output or data.STREAM_SHARDS,
        "--shard-size", str(streaming.shard_size),
        "--metrics-port", str(ports.INGEST_METRICS),
        "--log-format", "json",
    ]  # fmt: skip


COMMANDS = {INFER_WORKER: infer_worker_args, STREAM_INGEST: stream_ingest_args}


def objects(streaming: Streaming, images: Images, node_cidr: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": metadata("streaming", DATA, "streaming"),
            "automountServiceAccountToken": False,
        }
    ]
    for name, port, replicas in (
        (INFER_WORKER, ports.INFER_METRICS, streaming.infer_replicas),
        (STREAM_INGEST, ports.INGEST_METRICS, streaming.ingest_replicas),
    ):
        items += [
            _deployment(name, COMMANDS[name](streaming), port, replicas, streaming, images),
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": metadata(name, DATA, "streaming"),
                "spec": {
                    "type": "ClusterIP",
                    "selector": selector(name),
                    "ports": [{"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}],
                },
            },
            service_monitor(name, DATA, selector(name), port="metrics", interval="15s"),
        ]
    items += [
        # Kafka, and HDFS on the ports the ingest output's scheme uses.
        egress_to_nodes(
            "allow-kafka-and-hdfs",
            DATA,
            node_cidr,
            (ports.KAFKA_BROKER, *data.hdfs_client_ports(streaming.ingest_output or data.STREAM_SHARDS)),
        ),
        policy(
            "allow-tf-serving",
            DATA,
            pod_selector=selector(INFER_WORKER),
            egress=[
                {
                    "to": [namespace_peer(SERVING, selector(tf_serving.NAME))],
                    "ports": tcp(ports.TFS_REST, ports.TFS_GRPC),
                }
            ],
        ),
    ]
    return items


def _deployment(
    name: str, args: list[str], port: int, replicas: int, streaming: Streaming, images: Images
) -> dict[str, Any]:
    image = images.workloads()
    volumes, mounts = scratch_volumes()
    security_volumes, security_mounts = kafka_volumes(streaming.kafka)
    container = {
        "name": name,
        "image": image,
        "imagePullPolicy": pull_policy(image),
        "command": ["python", "-m", "workloads", name],
        "args": args,
        "ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"}],
        "env": workload_env(),
        "resources": resources(streaming.resources.cpu, streaming.resources.memory),
        "securityContext": container_security_context(),
        "volumeMounts": mounts + security_mounts,
        "readinessProbe": {"httpGet": {"path": "/metrics", "port": "metrics"}, "periodSeconds": 10},
        "livenessProbe": {
            "httpGet": {"path": "/metrics", "port": "metrics"},
            "initialDelaySeconds": 30,
            "periodSeconds": 20,
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            **metadata(name, DATA, "streaming"),
            "annotations": checkov_skips(image_checkov_skips(image)),
        },
        "spec": {
            "replicas": replicas,
            "strategy": STRATEGIES[name],
            "selector": {"matchLabels": selector(name)},
            "template": {
                "metadata": {"labels": labels(name, "streaming")},
                "spec": {
                    "serviceAccountName": "streaming",
                    "priorityClassName": PRIORITIES[name],
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(),
                    "containers": [container],
                    "volumes": volumes + security_volumes,
                },
            },
        },
    }
