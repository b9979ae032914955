"""mlstack: GPU nodes, their host configuration through Ansible, and the ML platform on k3s.

This file only wires the components together from the stack configuration (infra/config.py), which is
validated before any resource is declared. docs/infra.md is the user guide.
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
    Dashboards,
    DataServices,
    GpuOperator,
    Keda,
    Monitoring,
    Namespaces,
    TfServing,
    TrainingJobs,
    TrainingOperator,
)
from infra.paths import project_path
from infra.specs import namespaces

config, secrets = stack_config.load()
ansible_project(config)  # fail on a missing playbook before declaring anything

if config.node_provider == "aws":
    aws_nodes = AwsNodes("nodes", config)
    node_set = aws_nodes.node_set
    pulumi.export("sshPrivateKey", aws_nodes.ssh_private_key)
else:
    node_set = ExistingNodes("nodes", config, secrets.ssh_private_key).node_set

hosts = HostConfiguration("hosts", config, node_set, secrets.k3s_token)
cluster = k8s.Provider("k3s", kubeconfig=hosts.kubeconfig, enable_server_side_apply=True)
on_cluster = pulumi.ResourceOptions(provider=cluster)

uses_keda = config.serving.autoscaling.mode != "cpu"
platform_namespaces = [namespaces.TRAINING, namespaces.SERVING, namespaces.DATA, namespaces.MONITORING]
platform_namespaces += [namespaces.GPU] if config.has_gpus else []
platform_namespaces += [namespaces.KEDA] if uses_keda else []
spaces = Namespaces("namespaces", config, platform_namespaces, opts=on_cluster)
after_namespaces = pulumi.ResourceOptions(provider=cluster, depends_on=[spaces])

monitoring = Monitoring("monitoring", config, opts=after_namespaces)
Dashboards(
    "dashboards", project_path(config.dashboards_dir), crds=[monitoring.release], opts=after_namespaces
)
if config.has_gpus:
    GpuOperator("gpu", config, crds=[monitoring.release], opts=after_namespaces)
operator = TrainingOperator("training-operator", config, opts=on_cluster)
autoscalers = [Keda("keda", config, opts=after_namespaces).release] if uses_keda else []
TfServing("serving", config, crds=[monitoring.release, *autoscalers], opts=after_namespaces)
TrainingJobs("training", config, crds=[monitoring.release, operator.manifests], opts=after_namespaces)
DataServices(
    "data",
    config,
    {
        group: [n.internal_address for n in node_set.in_group(group)]
        for group in ("hdfs_namenodes", "kafka_brokers")
    },
    crds=[monitoring.release],
    opts=after_namespaces,
)

pulumi.export("kubeconfig", hosts.kubeconfig)
pulumi.export("inventory", hosts.inventory)
pulumi.export("apiEndpoint", node_set.public_api_endpoint)
pulumi.export("nodes", {node.name: node.ssh_address for node in node_set.nodes})
pulumi.export("grafanaAdminPassword", monitoring.grafana_admin_password)
