"""What every node provider hands to the host configuration: the machines and how to reach them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pulumi


@dataclasses.dataclass(frozen=True)
class Node:
    """One machine; addresses may be outputs of the resources that create it."""

    name: str
    groups: tuple[str, ...]
    ssh_address: pulumi.Input[str]
    """Where Ansible reaches the machine over SSH (the inventory's ``ansible_host``; on AWS its public one)."""
    internal_address: pulumi.Input[str]
    """Where the other nodes reach it (the inventory's ``cluster_address``, which the roles advertise)."""
    ssh_user: str
    hdfs_data_dirs: tuple[str, ...] = ()
    kafka_log_dirs: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class NodeSet:
    """The machines of a stack and what the Ansible run needs to know about them."""

    nodes: Sequence[Node]
    node_cidr: str
    api_endpoint: pulumi.Input[str]
    """Address agents and pods use for the API server (a server's private address)."""
    public_api_endpoint: pulumi.Input[str]
    """Address the fetched kubeconfig points at (reachable from where `pulumi up` runs)."""
    tls_sans: Sequence[pulumi.Input[str]]
    ssh_private_key: pulumi.Output[str] | None
    wait_for_cloud_init: bool
    ready: Sequence[pulumi.Resource] = ()
    """Resources that must exist before Ansible runs (data volume attachments)."""

    def in_group(self, group: str) -> list[Node]:
        return [node for node in self.nodes if group in node.groups]
