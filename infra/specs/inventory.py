"""The Ansible side of the program: the inventory it generates, the content hash that re-runs the
playbooks, and the kubeconfig it hands back.

The inventory uses the group names of docs/interfaces.md and sets only the variables listed there
(plus Ansible's own connection variables). Secrets (``k3s_token``) never appear in it: they travel in
a separate 0600 vars file (``infra/run_ansible.sh``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from infra.config import ANSIBLE_GROUPS

GPU_NODE_LABELS = ("nvidia.com/gpu.present=true",)
GPU_NODE_TAINTS = ("nvidia.com/gpu=present:NoSchedule",)
# Paths under the Ansible directory that do not change what the playbooks do.
_IGNORED_PARTS = frozenset({"molecule", "__pycache__", ".cache", "inventories", ".pytest_cache"})
_IGNORED_SUFFIXES = (".pyc", ".retry", ".md")


@dataclasses.dataclass(frozen=True)
class InventoryHost:
    """One machine as the inventory sees it (addresses already resolved): ``ssh_address`` is where Ansible
    reaches it, ``internal_address`` where the other nodes do."""

    name: str
    ssh_address: str
    internal_address: str
    ssh_user: str
    groups: tuple[str, ...]
    hdfs_data_dirs: tuple[str, ...] = ()
    kafka_log_dirs: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ClusterSettings:
    """Cluster-wide inventory variables."""

    k3s_version: str
    api_endpoint: str
    tls_sans: tuple[str, ...]
    nvidia_driver_branch: str


def build_inventory(hosts: Sequence[InventoryHost], cluster: ClusterSettings) -> dict[str, Any]:
    """A YAML inventory (as a dict): hosts with their own variables, groups listing their members."""
    if not hosts:
        raise ValueError("the inventory needs at least one host")
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise ValueError(f"host names must be unique, got {names}")
    for host in hosts:
        unknown = set(host.groups) - set(ANSIBLE_GROUPS)
        if unknown:
            raise ValueError(
                f"host {host.name}: unknown groups {sorted(unknown)}; allowed: {', '.join(ANSIBLE_GROUPS)}"
            )
    children: dict[str, Any] = {}
    for group in ANSIBLE_GROUPS:
        members = {h.name: None for h in hosts if group in h.groups}
        if members:
            children[group] = {"hosts": members}
    if "k3s_servers" in children and cluster.tls_sans:
        children["k3s_servers"]["vars"] = {"k3s_tls_sans": list(dict.fromkeys(cluster.tls_sans))}
    if "gpu_nodes" in children:
        children["gpu_nodes"]["vars"] = {"nvidia_driver_branch": cluster.nvidia_driver_branch}
    return {
        "all": {
            "vars": {"k3s_version": cluster.k3s_version, "k3s_api_endpoint": cluster.api_endpoint},
            "hosts": {host.name: _host_vars(host) for host in hosts},
            "children": children,
        }
    }


def _host_vars(host: InventoryHost) -> dict[str, Any]:
    """A host's own variables: Ansible reaches it at ``ansible_host`` (SSH, from where ``pulumi up`` runs),
    the other nodes at ``cluster_address``, the address every role advertises and joins on. On AWS the
    two differ: the security group's node-to-node rules match only traffic to private addresses."""
    variables: dict[str, Any] = {
        "ansible_host": host.ssh_address,
        "ansible_user": host.ssh_user,
        "cluster_address": host.internal_address,
    }
    if "gpu_nodes" in host.groups:
        variables["k3s_node_labels"] = list(GPU_NODE_LABELS)
        variables["k3s_node_taints"] = list(GPU_NODE_TAINTS)
    if "hdfs_datanodes" in host.groups:
        variables["hdfs_datanode_data_dirs"] = list(host.hdfs_data_dirs)
    if "kafka_brokers" in host.groups:
        variables["kafka_log_dirs"] = list(host.kafka_log_dirs)
    return variables


def render_inventory(inventory: dict[str, Any]) -> str:
    return yaml.safe_dump(inventory, sort_keys=True, default_flow_style=False)


def tree_digest(root: pathlib.Path) -> str:
    """SHA-256 over the relative path and content of every file that shapes what the playbooks do."""
    digest = hashlib.sha256()
    for path in sorted(_content_files(root)):
        relative = path.relative_to(root).as_posix()
        digest.update(relative.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _content_files(root: pathlib.Path) -> Iterable[pathlib.Path]:
    for path in root.rglob("*"):
        parts = path.relative_to(root).parts
        if (
            path.is_file()
            and not _IGNORED_PARTS.intersection(parts)
            and not path.name.endswith(_IGNORED_SUFFIXES)
        ):
            yield path


def kubeconfig_with_server(kubeconfig: str, server: str) -> str:
    """The fetched kubeconfig with every cluster pointing at ``server`` (the address reachable from here)."""
    try:
        document = yaml.safe_load(kubeconfig)
    except yaml.YAMLError as error:
        raise ValueError(f"the fetched kubeconfig is not YAML: {error}") from error
    clusters = document.get("clusters") if isinstance(document, dict) else None
    if not clusters:
        raise ValueError(
            "the fetched kubeconfig has no clusters; did the k3s role write it to k3s_kubeconfig_dest?"
        )
    for entry in clusters:
        entry["cluster"]["server"] = server
    return yaml.safe_dump(document, sort_keys=False)
