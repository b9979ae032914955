"""The AWS network plan: subnets and the security group rules of the cluster's nodes.

Ingress is opened port by port for what the components need (docs/interfaces.md): from the admin CIDR
blocks only SSH (Ansible) and the Kubernetes API; between nodes only the k3s, HDFS, Kafka and metrics
ports. Pod-to-pod traffic rides flannel's VXLAN (udp 8472), so pod ports need no rule of their own.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence

from infra.specs import ports

ANYWHERE = "0.0.0.0/0"


@dataclasses.dataclass(frozen=True)
class Rule:
    """One security group rule; ``cidr=None`` means the cluster's own security group."""

    description: str
    protocol: str
    from_port: int
    to_port: int
    cidr: str | None

    @property
    def name(self) -> str:
        source = "cluster" if self.cidr is None else self.cidr.replace("/", "-").replace(".", "-")
        span = str(self.from_port) if self.from_port == self.to_port else f"{self.from_port}-{self.to_port}"
        return f"{self.protocol}-{span}-{source}"


# Between nodes: (description, protocol, from, to).
_CLUSTER_PORTS: tuple[tuple[str, str, int, int], ...] = (
    ("k3s API server", "tcp", ports.K3S_API, ports.K3S_API),
    ("embedded etcd between servers", "tcp", ports.ETCD_CLIENT, ports.ETCD_PEER),
    ("kubelet API and metrics", "tcp", ports.KUBELET, ports.KUBELET),
    ("flannel VXLAN pod network", "udp", ports.FLANNEL_VXLAN, ports.FLANNEL_VXLAN),
    ("node_exporter metrics", "tcp", ports.NODE_EXPORTER, ports.NODE_EXPORTER),
    ("HDFS NameNode RPC", "tcp", ports.HDFS_NAMENODE_RPC, ports.HDFS_NAMENODE_RPC),
    ("HDFS NameNode HTTP (WebHDFS)", "tcp", ports.HDFS_NAMENODE_HTTP, ports.HDFS_NAMENODE_HTTP),
    ("HDFS DataNode HTTP", "tcp", ports.HDFS_DATANODE_HTTP, ports.HDFS_DATANODE_HTTP),
    ("HDFS DataNode data transfer", "tcp", ports.HDFS_DATANODE_DATA, ports.HDFS_DATANODE_DATA),
    ("Kafka brokers", "tcp", ports.KAFKA_BROKER, ports.KAFKA_BROKER),
    ("Kafka KRaft controllers", "tcp", ports.KAFKA_CONTROLLER, ports.KAFKA_CONTROLLER),
)


def ingress_rules(admin_cidrs: Sequence[str]) -> list[Rule]:
    """Who may open connections to a node."""
    rules = [
        Rule(description, protocol, low, high, None) for description, protocol, low, high in _CLUSTER_PORTS
    ]
    for cidr in admin_cidrs:
        rules.append(Rule("SSH for Ansible from admin networks", "tcp", ports.SSH, ports.SSH, cidr))
        rules.append(Rule("Kubernetes API from admin networks", "tcp", ports.K3S_API, ports.K3S_API, cidr))
    return rules


def egress_rules() -> list[Rule]:
    """Where a node may open connections: the cluster ports, and HTTP(S) for packages and images."""
    rules = [
        Rule(description, protocol, low, high, None) for description, protocol, low, high in _CLUSTER_PORTS
    ]
    rules.append(Rule("HTTPS: packages, container images, S3", "tcp", ports.HTTPS, ports.HTTPS, ANYWHERE))
    rules.append(Rule("HTTP: package mirrors that redirect", "tcp", ports.HTTP, ports.HTTP, ANYWHERE))
    return rules


def subnet_cidrs(vpc_cidr: str, zones: Sequence[str]) -> dict[str, str]:
    """One /24 per availability zone, in order, from the start of the VPC range."""
    subnets = ipaddress.ip_network(vpc_cidr).subnets(new_prefix=24)
    return {zone: str(next(subnets)) for zone in zones}
