"""mlstack: GPU nodes, their host configuration through Ansible, and the ML platform on k3s.

This file only wires the components together from the stack configuration (infra/config/), which is
validated before any resource is declared; each component gets the settings it reads. docs/infra.md is
the user guide.
"""

import pathlib
import sys

# Import `infra` and `workloads` from this checkout (Pulumi runs this directory as a script).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import pulumi
import pulumi_kubernetes as k8s

from infra import config as stack_config
from infra.components.aws_nodes import AwsNodes
from infra.components.existing_nodes import ExistingNodes
from infra.components.host_configuration import HostConfiguration, ansible_project
from infra.components.platform import (
    ArgoWorkflows,
    Dashboards,
    DataServices,
    GpuOperator,
    Keda,
    Monitoring,
    Namespaces,
    TfServing,
    TrackingServer,
    TrainingNamespace,
    TrainingOperator,
    Workflows,
)
from infra.paths import project_path
from infra.specs import namespaces

config, secrets = stack_config.load()
ansible_dir = ansible_project(config.ansible_dir)  # fail on a missing playbook before declaring anything

if config.aws is not None:
    aws_nodes = AwsNodes(
        "nodes",
        config.aws,
        pools=config.node_pools,
        admin_cidrs=config.admin_cidrs,
        tls_sans=config.k3s_tls_sans,
    )
    node_set = aws_nodes.node_set
    pulumi.export("sshPrivateKey", aws_nodes.ssh_private_key)
else:
    node_set = ExistingNodes(
        "nodes",
        config.hosts,
        node_cidr=config.node_cidr,
        api_endpoint=config.api_endpoint,
        tls_sans=config.k3s_tls_sans,
        ssh_private_key=secrets.ssh_private_key,
    ).node_set

hosts = HostConfiguration(
    "hosts",
    ansible_dir,
    node_set,
    k3s_version=config.kubernetes_version,
    nvidia_driver_branch=config.nvidia_driver_branch,
    k3s_token=secrets.k3s_token,
    ssh_known_hosts=config.ssh_known_hosts,
)
cluster = k8s.Provider("k3s", kubeconfig=hosts.kubeconfig, enable_server_side_apply=True)
on_cluster = pulumi.ResourceOptions(provider=cluster)

uses_keda = config.serving.autoscaling.mode != "cpu"
platform_namespaces = [
    namespaces.TRAINING,
    namespaces.SERVING,
    namespaces.DATA,
    namespaces.MONITORING,
    namespaces.ARGO,
]
platform_namespaces += [namespaces.GPU] if config.has_gpus else []
platform_namespaces += [namespaces.KEDA] if uses_keda else []
platform_namespaces += [namespaces.TRACKING] if config.tracking.enabled else []
spaces = Namespaces(
    "namespaces",
    platform_namespaces,
    kubernetes_minor=config.kubernetes_minor,
    budgets=config.budgets,
    opts=on_cluster,
)
after_namespaces = pulumi.ResourceOptions(provider=cluster, depends_on=[spaces])

monitoring = Monitoring(
    "monitoring",
    node_cidr=config.node_cidr,
    charts_dir=config.charts_dir,
    nodes=node_set.nodes,
    opts=after_namespaces,
)
Dashboards(
    "dashboards", project_path(config.dashboards_dir), crds=[monitoring.release], opts=after_namespaces
)
if config.has_gpus:
    GpuOperator("gpu", config.gpu_sharing, crds=[monitoring.release], opts=after_namespaces)
operator = TrainingOperator("training-operator", config.training_operator_manifests, opts=on_cluster)
autoscalers = []
if uses_keda:
    keda = Keda("keda", node_cidr=config.node_cidr, charts_dir=config.charts_dir, opts=after_namespaces)
    autoscalers.append(keda.release)
TfServing(
    "serving",
    config.serving,
    images=config.images,
    node_cidr=config.node_cidr,
    crds=[monitoring.release, *autoscalers],
    opts=after_namespaces,
)
TrainingNamespace(
    "training",
    submitters=config.training_submitters,
    node_cidr=config.node_cidr,
    crds=[monitoring.release],
    opts=after_namespaces,
)
argo = ArgoWorkflows(
    "argo",
    node_cidr=config.node_cidr,
    charts_dir=config.charts_dir,
    crds=[monitoring.release],
    opts=after_namespaces,
)
if config.tracking.enabled:
    TrackingServer(
        "tracking",
        config.tracking,
        images=config.images,
        model_source=config.serving.model_source,
        opts=after_namespaces,
    )
Workflows(
    "workflow",
    config.workflow,
    config.serving,
    config.tracking,
    images=config.images,
    node_cidr=config.node_cidr,
    crds=[argo.release, operator.manifests],
    opts=after_namespaces,
)
DataServices(
    "data",
    {
        group: [n.internal_address for n in node_set.in_group(group)]
        for group in ("hdfs_namenodes", "kafka_brokers")
    },
    config.streaming,
    images=config.images,
    node_cidr=config.node_cidr,
    crds=[monitoring.release],
    opts=after_namespaces,
)

pulumi.export("kubeconfig", hosts.kubeconfig)
pulumi.export("inventory", hosts.inventory)
pulumi.export("apiEndpoint", node_set.public_api_endpoint)
pulumi.export("nodes", {node.name: node.ssh_address for node in node_set.nodes})
pulumi.export("grafanaAdminPassword", monitoring.grafana_admin_password)
