"""The platform on k3s, one ComponentResource per concern.

Each component declares the objects its spec module builds (``infra.specs``); objects of custom kinds
wait for the component that installs their CRDs (``crds=``).
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra.components.kube import declare, is_typed
from infra.components.nodes import Node
from infra.config import (
    GpuSharing,
    Images,
    ModelSource,
    NamespaceBudget,
    RbacSubject,
    Serving,
    Streaming,
    Tracking,
    Workflow,
)
from infra.paths import project_path
from infra.specs import (
    argo,
    data,
    gpu,
    model_store,
    monitoring,
    namespaces,
    pipeline,
    ports,
    scheduling,
    serving,
    streaming,
    tracking,
    training,
    versions,
)


class _Platform(pulumi.ComponentResource):
    """Declares spec dicts as children.

    Children wait for what the component waits for (its ``depends_on``), and objects of custom kinds
    also wait for the components that install their CRDs.
    """

    def __init__(self, token: str, name: str, opts: pulumi.ResourceOptions | None) -> None:
        super().__init__(token, name, None, opts)
        self._prefix = name
        waits = opts.depends_on if opts is not None and opts.depends_on else []
        self._waits: list[pulumi.Resource] = list(waits) if isinstance(waits, list | tuple) else [waits]

    def _declare(
        self,
        specs: Iterable[Mapping[str, Any]],
        depends_on: Sequence[pulumi.Resource] = (),
        crds: Sequence[pulumi.Resource] = (),
    ) -> list[pulumi.CustomResource]:
        resources = []
        for spec in specs:
            waits = [*self._waits, *depends_on, *(() if is_typed(spec) else crds)]
            resources.append(
                declare(self._prefix, spec, pulumi.ResourceOptions(parent=self, depends_on=waits))
            )
        return resources


class Namespaces(_Platform):
    """The platform's namespaces: Pod Security labels, default-deny NetworkPolicies, DNS and scrapes; the
    workload namespaces' quotas and container defaults, and the priority classes their pods name (what
    waits for this component finds them in place)."""

    def __init__(
        self,
        name: str,
        names: Sequence[str],
        kubernetes_minor: str,
        budgets: Mapping[str, NamespaceBudget],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlstack:namespaces:Namespaces", name, opts)
        plans = [namespaces.PLANS[n] for n in names]
        created = self._declare(namespaces.namespace(p, kubernetes_minor) for p in plans)
        self._declare(
            (policy for p in plans for policy in namespaces.baseline_policies(p)), depends_on=created
        )
        self._declare(scheduling.objects(budgets, names), depends_on=created)
        self.register_outputs({"namespaces": list(names)})


class Monitoring(_Platform):
    """kube-prometheus-stack for k3s, its Grafana admin secret, the monitoring namespace's allows, and
    the scrape targets of the exporters the data-tier daemons serve on the nodes."""

    release: k8s.helm.v3.Release
    grafana_admin_password: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        node_cidr: str,
        charts_dir: str,
        nodes: Sequence[Node] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``nodes``: the machines; those in a group of :data:`monitoring.NODE_DAEMON_EXPORTERS` are scraped."""
        super().__init__("mlstack:monitoring:Monitoring", name, opts)
        password = random.RandomPassword(
            f"{name}-grafana-admin", length=32, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        self.grafana_admin_password = pulumi.Output.secret(password.result)
        secret = self._declare(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": monitoring.GRAFANA_ADMIN_SECRET, "namespace": namespaces.MONITORING},
                    "type": "Opaque",
                    "stringData": {"admin-user": "admin", "admin-password": self.grafana_admin_password},
                }
            ]
        )
        peers = [namespaces.cidr_peer(node_cidr)]
        self._declare(
            [
                # Prometheus scrapes every namespace and node (the node daemons' exporters too, on the
                # nodes' addresses); the operator and Grafana's sidecar call the API.
                namespaces.policy("allow-egress", namespaces.MONITORING, egress=[{}]),
                # The API server (on the nodes) calls the operator's admission webhook.
                namespaces.policy(
                    "allow-api-server-webhook",
                    namespaces.MONITORING,
                    ingress=[{"from": peers, "ports": namespaces.tcp(10250)}],
                ),
                namespaces.policy(
                    "allow-keda-queries",
                    namespaces.MONITORING,
                    pod_selector=namespaces.PROMETHEUS_POD,
                    ingress=[
                        {"from": [namespaces.namespace_peer(namespaces.KEDA)], "ports": namespaces.tcp(9090)}
                    ],
                ),
            ]
        )
        self.release = helm_release(
            f"{name}-kube-prometheus-stack",
            versions.KUBE_PROMETHEUS_STACK,
            namespaces.MONITORING,
            monitoring.kube_prometheus_stack_values(),
            charts_dir,
            pulumi.ResourceOptions(parent=self, depends_on=secret),
            release_name=monitoring.RELEASE,
        )
        self._declare(_node_daemon_scrape_configs(nodes), crds=[self.release])
        self.register_outputs({"release": self.release.name})


def _node_daemon_scrape_configs(nodes: Sequence[Node]) -> list[dict[str, Any]]:
    """One ScrapeConfig per node daemon exporter that some node runs, listing those nodes' internal addresses."""
    configs = []
    for exporter in monitoring.NODE_DAEMON_EXPORTERS:
        targets = [
            (node.name, pulumi.Output.format("{0}:{1}", node.internal_address, exporter.port))
            for node in nodes
            if set(node.groups) & set(exporter.groups)
        ]
        if targets:
            configs.append(monitoring.scrape_config(exporter.job, targets))
    return configs


class Dashboards(_Platform):
    """Every generated Grafana dashboard as a sidecar ConfigMap, every rule file as a PrometheusRule."""

    def __init__(
        self,
        name: str,
        directory: pathlib.Path,
        crds: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlstack:monitoring:Dashboards", name, opts)
        boards = monitoring.load_dashboards(directory / "grafana")
        rules = monitoring.load_rule_files(directory / "prometheus")
        if not boards and not rules:
            pulumi.log.warn(
                f"no dashboards or rules under {directory}; run `python -m dashboards` to generate them"
            )
        self._declare((monitoring.dashboard_config_map(board) for board in boards), crds=crds)
        self._declare((monitoring.prometheus_rule(rule) for rule in rules), crds=crds)
        self.register_outputs({"dashboards": [b.name for b in boards], "rules": [r.name for r in rules]})


class GpuOperator(_Platform):
    """The ``nvidia`` RuntimeClass, the device plugin (time-slicing/MIG config) and the DCGM exporter."""

    def __init__(
        self,
        name: str,
        sharing: GpuSharing,
        crds: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlstack:gpu:GpuOperator", name, opts)
        runtime = [
            declare(
                name,
                gpu.runtime_class(),
                # k3s may own the RuntimeClass too: never delete it from under the cluster.
                pulumi.ResourceOptions(parent=self, depends_on=self._waits, retain_on_delete=True),
            )
        ]
        config_text = gpu.device_plugin_config(sharing.strategy, sharing.replicas, sharing.mig_strategy)
        self._declare(
            [
                *gpu.device_plugin(config_text),
                *gpu.dcgm_exporter(),
                monitoring.service_monitor(
                    gpu.DCGM_EXPORTER,
                    namespaces.GPU,
                    gpu.selector(gpu.DCGM_EXPORTER),
                    port="metrics",
                    interval="15s",
                    # Its namespace and pod are the training pod's, which the GPU alerts join on.
                    honor_labels=True,
                ),
            ],
            depends_on=runtime,
            crds=crds,
        )
        self.register_outputs({"runtimeClass": "nvidia"})


class TrainingOperator(_Platform):
    """The Kubeflow training operator v1 (TFJob, PyTorchJob), from its pinned upstream manifests."""

    manifests: pulumi.Resource

    def __init__(self, name: str, manifests: str, opts: pulumi.ResourceOptions | None = None) -> None:
        """``manifests``: a kustomize directory to install from (air-gapped), or "" for the pinned upstream."""
        super().__init__("mlstack:training:TrainingOperator", name, opts)
        source = str(project_path(manifests)) if manifests else versions.TRAINING_OPERATOR_MANIFESTS
        self.manifests = k8s.kustomize.v2.Directory(
            f"{name}-manifests", directory=source, opts=pulumi.ResourceOptions(parent=self)
        )
        self.register_outputs({"version": versions.TRAINING_OPERATOR_VERSION, "source": source})


class Keda(_Platform):
    """KEDA, for serving autoscaling on a Prometheus query, with its namespace's network allows."""

    release: k8s.helm.v3.Release

    def __init__(
        self, name: str, node_cidr: str, charts_dir: str, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlstack:autoscaling:Keda", name, opts)
        nodes = [namespaces.cidr_peer(node_cidr)]
        self._declare(
            [
                namespaces.policy(
                    "allow-api-server",
                    namespaces.KEDA,
                    # The API server calls the metrics adapter (6443) and the admission webhooks (9443).
                    ingress=[{"from": nodes, "ports": namespaces.tcp(6443, 9443)}],
                    egress=[{"to": nodes, "ports": namespaces.tcp(ports.K3S_API)}],
                ),
                namespaces.policy(
                    "allow-prometheus-queries",
                    namespaces.KEDA,
                    egress=[
                        {
                            "to": [
                                namespaces.namespace_peer(namespaces.MONITORING, namespaces.PROMETHEUS_POD)
                            ],
                            "ports": namespaces.tcp(9090),
                        }
                    ],
                ),
            ]
        )
        values = {
            "resources": {
                component: {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"cpu": "500m", "memory": "512Mi"},
                }
                for component in ("operator", "metricServer", "webhooks")
            }
        }
        self.release = helm_release(
            f"{name}-keda",
            versions.KEDA,
            namespaces.KEDA,
            values,
            charts_dir,
            pulumi.ResourceOptions(parent=self, depends_on=self._waits),
        )
        self.register_outputs({"release": self.release.name})


class TfServing(_Platform):
    """TF Serving: Deployment, Service, PDB, HPA or ScaledObject, ServiceMonitor, config, network allows."""

    def __init__(
        self,
        name: str,
        settings: Serving,
        images: Images,
        node_cidr: str,
        crds: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``images``: the model mirror's (our workloads image), when the store is not a PVC."""
        super().__init__("mlstack:serving:TfServing", name, opts)
        self._declare(serving.objects(settings, images, node_cidr), crds=crds)
        self.register_outputs({"grpc": f"{serving.HOST}:{ports.TFS_GRPC}", "rest": serving.REST_URL})


class TrainingNamespace(_Platform):
    """The training namespace's shared objects: training service account, metrics Service and
    ServiceMonitor, the submitters' Role and binding, network allows."""

    def __init__(
        self,
        name: str,
        submitters: Sequence[RbacSubject],
        node_cidr: str,
        crds: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        # Formerly TrainingJobs, which also declared one-shot jobs: the alias keeps the children in place.
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(type_="mlstack:training:TrainingJobs")])
        )
        super().__init__("mlstack:training:TrainingNamespace", name, opts)
        self._declare(training.namespace_objects(node_cidr, submitters), crds=crds)
        self.register_outputs({"submitterRole": training.SUBMITTER_ROLE})


class ArgoWorkflows(_Platform):
    """Argo Workflows (controller, server, CRDs) from its pinned chart, and its namespace's allows."""

    release: k8s.helm.v3.Release

    def __init__(
        self,
        name: str,
        node_cidr: str,
        charts_dir: str,
        crds: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``crds``: what installs the ServiceMonitor kind (the chart renders its monitor only then)."""
        super().__init__("mlstack:workflow:ArgoWorkflows", name, opts)
        self._declare(argo.namespace_policies(node_cidr))
        self.release = helm_release(
            f"{name}-workflows",
            versions.ARGO_WORKFLOWS,
            namespaces.ARGO,
            argo.chart_values(),
            charts_dir,
            pulumi.ResourceOptions(parent=self, depends_on=[*self._waits, *crds]),
            release_name=argo.RELEASE,
        )
        self.register_outputs({"release": self.release.name, "version": versions.ARGO_WORKFLOWS.app_version})


class Workflows(_Platform):
    """The book's system as workflows: the runner's RBAC and network allows, one WorkflowTemplate per
    framework and, when configured, the retraining CronWorkflow."""

    def __init__(
        self,
        name: str,
        settings: Workflow,
        serving_settings: Serving,
        tracking_settings: Tracking,
        images: Images,
        node_cidr: str,
        crds: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``tracking_settings``: whether the steps and trials get the tracking server's URI."""
        super().__init__("mlstack:workflow:Workflows", name, opts)
        # The training namespace reaches HDFS and HTTPS already; an S3 endpoint may listen elsewhere.
        store = model_store.object_storage_policies(serving_settings.model_source, namespaces.TRAINING)
        runner = self._declare([*argo.runner_objects(node_cidr), *store])
        specs = pipeline.objects(settings, serving_settings, tracking_settings, images)
        self._declare(specs, depends_on=runner, crds=crds)
        self.register_outputs({"objects": [f"{spec['kind']}/{spec['metadata']['name']}" for spec in specs]})


class TrackingServer(_Platform):
    """The MLflow tracking server: its PostgreSQL with a generated password, the server, their Services
    and network allows (``infra.specs.tracking``)."""

    def __init__(
        self,
        name: str,
        settings: Tracking,
        images: Images,
        model_source: ModelSource,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``model_source``: the store the server keeps the runs' artifacts in (``serving.modelSource``)."""
        super().__init__("mlstack:tracking:TrackingServer", name, opts)
        password = random.RandomPassword(
            f"{name}-database", length=32, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        self._declare(tracking.objects(settings, images, model_source, pulumi.Output.secret(password.result)))
        self.register_outputs({"url": tracking.URL})


class DataServices(_Platform):
    """In-cluster names for HDFS and Kafka on the nodes, and the streaming services that use them."""

    def __init__(
        self,
        name: str,
        addresses: Mapping[str, Sequence[pulumi.Input[str]]],
        settings: Streaming,
        images: Images,
        node_cidr: str,
        crds: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``addresses``: Ansible group -> the internal addresses of its nodes (HDFS NameNode, Kafka brokers)."""
        super().__init__("mlstack:data:DataServices", name, opts)
        for service, group in (
            (data.HDFS_NAMENODE, "hdfs_namenodes"),
            (data.KAFKA_BOOTSTRAP, "kafka_brokers"),
        ):
            if addresses.get(group):
                self._declare(data.external_service(service, addresses[group]))
        if settings.enabled:
            self._declare(streaming.objects(settings, images, node_cidr), crds=crds)
        self.register_outputs({"hdfs": data.HDFS_URL, "kafka": data.KAFKA_BOOTSTRAP_SERVERS})


def helm_release(
    name: str,
    chart: versions.Chart,
    namespace: str,
    values: Mapping[str, Any],
    charts_dir: str,
    opts: pulumi.ResourceOptions,
    release_name: str | None = None,
) -> k8s.helm.v3.Release:
    """A pinned Helm release, from the chart repository or, air-gapped, from ``chartsDir``."""
    location: dict[str, Any]
    if charts_dir:
        location = {"chart": str(project_path(charts_dir) / chart.archive())}
    else:
        location = {
            "chart": chart.name,
            "repository_opts": k8s.helm.v3.RepositoryOptsArgs(repo=chart.repository),
        }
    return k8s.helm.v3.Release(
        name,
        name=release_name or chart.name,
        version=chart.version,
        namespace=namespace,
        create_namespace=False,
        values=dict(values),
        atomic=True,
        cleanup_on_fail=True,
        timeout=900,
        max_history=5,
        opts=opts,
        **location,
    )
