"""Rules across settings: the cluster the stack describes must be able to run what the stack asks for."""

from __future__ import annotations

from infra.config.budgets import check_budgets
from infra.config.keys import NAMESPACE, ConfigError
from infra.config.settings import StackConfig


def check_cluster(config: StackConfig) -> None:
    _check_node_groups(config)
    _check_data_services(config)
    _check_gpus(config)
    check_budgets(config)


def _check_node_groups(config: StackConfig) -> None:
    """The groups every cluster needs, in the numbers k3s and HDFS support."""
    key = f"{NAMESPACE}:{'nodePools' if config.node_provider == 'aws' else 'hosts'}"
    servers = config.group_members("k3s_servers")
    if servers == 0:
        raise ConfigError(f"{key}: no node is in k3s_servers; the cluster needs at least one server")
    if servers % 2 == 0:
        raise ConfigError(f"{key}: {servers} k3s servers; embedded etcd needs an odd number (1, 3, 5)")
    for group, needs in (("hdfs_datanodes", "hdfs_namenodes"), ("kafka_brokers", "kafka_controllers")):
        if config.group_members(group) and config.group_members(needs) == 0:
            raise ConfigError(f"{key}: nodes are in {group} but none is in {needs}")
    if config.group_members("hdfs_namenodes") > 1:
        raise ConfigError(f"{key}: put exactly one node in hdfs_namenodes (no HDFS high availability here)")


def _check_data_services(config: StackConfig) -> None:
    """What uses the cluster's HDFS or Kafka needs nodes that run them."""
    source = config.serving.model_source
    users = ["serving.modelSource"] if source.kind == "hdfs" and not source.base else []
    if config.streaming.enabled and not config.streaming.ingest_output:
        users.append("streaming.ingestOutput")
    if users and config.group_members("hdfs_namenodes") == 0:
        raise ConfigError(
            f"{NAMESPACE}:{users[0]}: uses the cluster's HDFS by default but no node is in hdfs_namenodes; "
            "add one or give explicit URLs"
        )
    if config.streaming.enabled and config.group_members("kafka_brokers") == 0:
        raise ConfigError(
            f"{NAMESPACE}:streaming.enabled: the streaming services need Kafka but no node is in kafka_brokers; "
            "add brokers or set streaming.enabled to false"
        )


def _check_gpus(config: StackConfig) -> None:
    """What asks for GPUs needs GPU nodes."""
    gpu_users = ["workflow.gpusPerWorker"] if config.workflow.gpus_per_worker else []
    if config.serving.gpu:
        gpu_users.append("serving.gpu")
    if gpu_users and not config.has_gpus:
        raise ConfigError(f"{NAMESPACE}:{gpu_users[0]}: asks for GPUs but no node is in gpu_nodes")
    if config.gpu_sharing.strategy != "none" and not config.has_gpus:
        raise ConfigError(f"{NAMESPACE}:gpuSharing: no node is in gpu_nodes")
