"""The node provider's settings: ``aws`` and ``nodePools`` for ``aws``, ``hosts`` for ``existing``."""

from __future__ import annotations

import dataclasses
import ipaddress
import re

from infra.config import checks
from infra.config.fields import Fields, unique
from infra.config.keys import NAMESPACE, ConfigError
from infra.config.settings import ANSIBLE_GROUPS, AwsSettings, ExistingHost, NodePool

# EC2 instance families with NVIDIA GPUs, x86_64 CPUs (the AMI we look up is x86_64) and Nitro NVMe EBS
# (the data volume is found by its NVMe serial).
GPU_INSTANCE_FAMILIES = ("g4dn", "g5", "g6", "g6e", "gr6", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en")
# k3s's pod and service ranges, which the VPC must not overlap.
K3S_RANGES = ("10.42.0.0/16", "10.43.0.0/16")


@dataclasses.dataclass(frozen=True)
class Nodes:
    """What the provider's settings say: AWS settings and pools, or hosts; and the nodes' address range."""

    node_cidr: str
    aws: AwsSettings | None = None
    pools: tuple[NodePool, ...] = ()
    hosts: tuple[ExistingHost, ...] = ()


def read_nodes(top: Fields, provider: str, admin_cidrs: tuple[str, ...], node_cidr: str) -> Nodes:
    """The nodes of ``provider``; settings of the other provider are refused."""
    nodes = _aws_nodes(top, admin_cidrs) if provider == "aws" else _existing_nodes(top, node_cidr)
    for name in ("aws", "nodePools", "hosts"):
        top.skip(name)
    return nodes


def _aws_nodes(top: Fields, admin_cidrs: tuple[str, ...]) -> Nodes:
    for name in ("hosts", "apiEndpoint", "nodeCidr"):
        if top.given(name):
            raise top.fail(name, "applies to nodeProvider 'existing' only; remove it for 'aws'")
    if not admin_cidrs:
        raise top.fail(
            "adminCidrs",
            "missing; list the CIDR blocks allowed to reach SSH and the Kubernetes API "
            "(for example your office or VPN range, 203.0.113.0/24); 0.0.0.0/0 opens them to everyone",
        )
    aws = _aws(top.obj("aws"))
    return Nodes(node_cidr=aws.vpc_cidr, aws=aws, pools=_node_pools(top))


def _existing_nodes(top: Fields, node_cidr: str) -> Nodes:
    for name in ("aws", "nodePools"):
        if top.has(name):
            raise top.fail(name, "applies to nodeProvider 'aws' only; remove it for 'existing'")
    hosts = _hosts(top)
    if not node_cidr:
        raise top.fail(
            "nodeCidr",
            "missing; give the CIDR block that holds every host's private address (NetworkPolicies "
            "use it to allow pods to reach HDFS, Kafka and the API server)",
        )
    for index, host in enumerate(hosts):
        if ipaddress.ip_address(host.internal_address) not in ipaddress.ip_network(node_cidr):
            raise ConfigError(
                f"{NAMESPACE}:hosts[{index}].privateAddress: {host.internal_address} is outside "
                f"{NAMESPACE}:nodeCidr {node_cidr}"
            )
    return Nodes(node_cidr=node_cidr, hosts=hosts)


def _aws(obj: Fields) -> AwsSettings:
    zones = obj.strings("availabilityZones")
    if not zones:
        raise obj.fail("availabilityZones", "list at least one availability zone, e.g. eu-west-1a")
    settings = AwsSettings(
        availability_zones=zones,
        vpc_cidr=obj.string("vpcCidr", AwsSettings.vpc_cidr, check=checks.cidr),
        ami_owner=obj.string("amiOwner", AwsSettings.ami_owner),
        ami_name_pattern=obj.string("amiNamePattern", AwsSettings.ami_name_pattern),
        ssh_user=obj.string("sshUser", AwsSettings.ssh_user),
        root_volume_gb=obj.integer("rootVolumeGb", AwsSettings.root_volume_gb, minimum=20),
    )
    vpc = ipaddress.ip_network(settings.vpc_cidr)
    for reserved in K3S_RANGES:
        if vpc.overlaps(ipaddress.ip_network(reserved)):
            raise obj.fail("vpcCidr", f"{settings.vpc_cidr} overlaps k3s's pod/service range {reserved}")
    if vpc.prefixlen > 24 - (len(zones) - 1).bit_length():
        raise obj.fail(
            "vpcCidr", f"{settings.vpc_cidr} is too small for one /24 subnet per availability zone"
        )
    obj.done()
    return settings


def _groups(fields: Fields, name: str) -> tuple[str, ...]:
    groups = fields.strings(name)
    if not groups:
        raise fields.fail(name, f"list at least one Ansible group: {', '.join(ANSIBLE_GROUPS)}")
    for index, group in enumerate(groups):
        if group not in ANSIBLE_GROUPS:
            raise fields.fail(
                f"{name}[{index}]", f"{group!r} is not a group; allowed values: {', '.join(ANSIBLE_GROUPS)}"
            )
    if "k3s_servers" in groups and "k3s_agents" in groups:
        raise fields.fail(name, "a node is either in k3s_servers or in k3s_agents, not both")
    if "k3s_servers" not in groups and "k3s_agents" not in groups:
        raise fields.fail(name, "every node joins the cluster: add k3s_servers or k3s_agents")
    return groups


def _node_pools(top: Fields) -> tuple[NodePool, ...]:
    pools = []
    for item in top.obj_list("nodePools"):
        groups = _groups(item, "groups")
        pool = NodePool(
            name=item.string("name", check=checks.dns_label),
            groups=groups,
            count=item.integer("count", minimum=1),
            instance_type=item.string("instanceType", check=_instance_type),
            data_volume_gb=item.integer("dataVolumeGb", NodePool.data_volume_gb, minimum=0),
        )
        if pool.gpu and pool.instance_type.split(".")[0] not in GPU_INSTANCE_FAMILIES:
            raise item.fail(
                "instanceType",
                f"{pool.instance_type!r} has no NVIDIA GPU but the pool is in gpu_nodes; use a GPU type "
                f"(families: {', '.join(GPU_INSTANCE_FAMILIES)}), e.g. g5.xlarge",
            )
        if {"hdfs_datanodes", "kafka_brokers"} & set(groups) and pool.data_volume_gb < 10:
            raise item.fail(
                "dataVolumeGb", "HDFS DataNodes and Kafka brokers need a data volume of at least 10 GB"
            )
        item.done()
        pools.append(pool)
    if not pools:
        raise top.fail("nodePools", "list at least one node pool")
    unique(top, "nodePools", [p.name for p in pools])
    return tuple(pools)


def _instance_type(value: str) -> str | None:
    return None if re.fullmatch(r"[a-z0-9-]+\.[a-z0-9]+", value) else f"{value!r} is not an EC2 instance type"


def _hosts(top: Fields) -> tuple[ExistingHost, ...]:
    hosts = []
    for item in top.obj_list("hosts"):
        groups = _groups(item, "groups")
        host = ExistingHost(
            name=item.string("name", check=checks.dns_label),
            address=item.string("address", check=lambda v: None if v else "must not be empty"),
            groups=groups,
            private_address=item.string("privateAddress", "", check=checks.ip_or_empty),
            ssh_user=item.string("sshUser", ExistingHost.ssh_user),
            hdfs_data_dirs=item.strings("hdfsDataDirs", [], check=checks.absolute_path),
            kafka_log_dirs=item.strings("kafkaLogDirs", [], check=checks.absolute_path),
        )
        if not host.private_address and (problem := checks.ip_or_empty(host.address)):
            raise item.fail("privateAddress", f"missing; address {problem}, so give the host's private IP")
        if "hdfs_datanodes" in groups and not host.hdfs_data_dirs:
            raise item.fail("hdfsDataDirs", "missing; an HDFS DataNode needs at least one data directory")
        if "kafka_brokers" in groups and not host.kafka_log_dirs:
            raise item.fail("kafkaLogDirs", "missing; a Kafka broker needs at least one log directory")
        item.done()
        hosts.append(host)
    if not hosts:
        raise top.fail("hosts", "list at least one host")
    unique(top, "hosts", [h.name for h in hosts])
    return tuple(hosts)
