"""Stable in-cluster names for the services that run on the nodes (HDFS NameNode, Kafka brokers).

A Service without a selector plus an EndpointSlice listing the node addresses gives pods
``hdfs-namenode.mlstack-data.svc.cluster.local`` and ``kafka-bootstrap.mlstack-data.svc.cluster.local``,
so job specs and configs never carry node IPs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infra.specs import ports
from infra.specs.namespaces import DATA
from infra.specs.workload import metadata

HDFS_NAMENODE = "hdfs-namenode"
KAFKA_BOOTSTRAP = "kafka-bootstrap"
HDFS_NAMENODE_HOST = f"{HDFS_NAMENODE}.{DATA}.svc.cluster.local"
KAFKA_BOOTSTRAP_HOST = f"{KAFKA_BOOTSTRAP}.{DATA}.svc.cluster.local"
HDFS_URL = f"hdfs://{HDFS_NAMENODE_HOST}:{ports.HDFS_NAMENODE_RPC}"
KAFKA_BOOTSTRAP_SERVERS = f"{KAFKA_BOOTSTRAP_HOST}:{ports.KAFKA_BROKER}"
DATASET = "fashion-mnist"
DATASET_SHARDS = f"{HDFS_URL}/mlstack/datasets/{DATASET}/shards/"
# stream-ingest's own dataset: a batch dataset's directory would get a manifest hiding its train/ and test/.
STREAM_SHARDS = f"{HDFS_URL}/mlstack/datasets/{DATASET}-stream/shards/train/"
MODELS = f"{HDFS_URL}/mlstack/models"


def hdfs_client_ports(url: str) -> tuple[int, ...]:
    """The ports on the nodes a client of ``url`` connects to: RPC and data transfer for ``hdfs://``,
    the NameNode's and DataNodes' HTTP for ``webhdfs://`` (which redirects reads and writes to them);
    none for other schemes."""
    if url.startswith("webhdfs://"):
        return (ports.HDFS_NAMENODE_HTTP, ports.HDFS_DATANODE_HTTP)
    if url.startswith("hdfs://"):
        return (ports.HDFS_NAMENODE_RPC, ports.HDFS_DATANODE_DATA)
    return ()


_SERVICES: dict[str, tuple[tuple[str, int], ...]] = {
    HDFS_NAMENODE: (("rpc", ports.HDFS_NAMENODE_RPC), ("http", ports.HDFS_NAMENODE_HTTP)),
    KAFKA_BOOTSTRAP: (("kafka", ports.KAFKA_BROKER),),
}


def external_service(name: str, addresses: Sequence[str]) -> list[dict[str, Any]]:
    """The Service and EndpointSlice that name the nodes at ``addresses``."""
    if name not in _SERVICES:
        raise ValueError(f"unknown node service {name!r}; known: {', '.join(_SERVICES)}")
    if not addresses:
        raise ValueError(f"{name}: at least one address is needed")
    named_ports = _SERVICES[name]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, DATA, "node-service"),
        "spec": {
            "type": "ClusterIP",
            "ports": [
                {"name": port_name, "port": number, "targetPort": number, "protocol": "TCP"}
                for port_name, number in named_ports
            ],
        },
    }
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            **metadata(f"{name}-nodes", DATA, "node-service"),
            "labels": {
                **metadata(f"{name}-nodes", DATA, "node-service")["labels"],
                "kubernetes.io/service-name": name,
                "endpointslice.kubernetes.io/managed-by": "pulumi.mlstack.io",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}} for address in addresses],
        "ports": [
            {"name": port_name, "port": number, "protocol": "TCP"} for port_name, number in named_ports
        ],
    }
    return [service, endpoints]
