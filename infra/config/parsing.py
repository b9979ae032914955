"""The stack file's ``mlstack:`` settings in, a validated :class:`StackConfig` out.

:func:`parse` is pure (a mapping in, frozen dataclasses out), so it is tested without the engine. Each
section has its reader (``nodes``, ``serving``, ``streaming``, ``workflow``, ``tracking``, ...); the rules across
sections run last (``cluster``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from infra.config import checks
from infra.config.budgets import read_budgets
from infra.config.cluster import check_cluster
from infra.config.fields import Fields
from infra.config.gpu_sharing import read_gpu_sharing
from infra.config.images import read_images
from infra.config.keys import NAMESPACE, SECRET_KEYS, default
from infra.config.known_hosts import check_known_hosts
from infra.config.nodes import read_nodes
from infra.config.serving import read_serving
from infra.config.settings import StackConfig
from infra.config.streaming import read_streaming
from infra.config.tracking import read_tracking
from infra.config.training import read_training_submitters, refuse_training_jobs
from infra.config.workflow import read_workflow


def parse(values: Mapping[str, Any], secret_keys: Iterable[str] = ()) -> StackConfig:
    """Validates the ``mlstack:`` settings (keys without the namespace) and returns the configuration."""
    top = Fields(values, f"{NAMESPACE}:")
    _refuse_plain_text_secrets(top, set(secret_keys))
    refuse_training_jobs(top)
    provider = top.string("nodeProvider", allowed=("aws", "existing"))
    scalars = _scalar_settings(top)
    nodes = read_nodes(top, provider, scalars["admin_cidrs"], scalars["node_cidr"])
    config = StackConfig(
        node_provider=provider,
        **{**scalars, "node_cidr": nodes.node_cidr},
        aws=nodes.aws,
        node_pools=nodes.pools,
        hosts=nodes.hosts,
        gpu_sharing=read_gpu_sharing(top),
        serving=read_serving(top),
        streaming=read_streaming(top),
        workflow=read_workflow(top),
        tracking=read_tracking(top),
        training_submitters=read_training_submitters(top),
        budgets=read_budgets(top),
        has_k3s_token="k3sToken" in values,
        has_ssh_private_key="sshPrivateKey" in values,
    )
    top.done()
    check_cluster(config)
    return config


def _refuse_plain_text_secrets(top: Fields, secret_keys: set[str]) -> None:
    for name in SECRET_KEYS:
        top.skip(name)
        if top.has(name) and name not in secret_keys:
            raise top.fail(
                name,
                f"is stored in plain text; remove it and set it with `pulumi config set --secret {name}`",
            )


def _scalar_settings(top: Fields) -> dict[str, Any]:
    """The top-level settings Pulumi.yaml declares (and the images they name), as StackConfig fields."""
    return {
        "kubernetes_version": top.string(
            "kubernetesVersion", default("kubernetesVersion"), check=checks.k3s_version
        ),
        "images": read_images(top),
        "admin_cidrs": top.strings("adminCidrs", default("adminCidrs"), check=checks.cidr),
        "nvidia_driver_branch": top.string(
            "nvidiaDriverBranch", default("nvidiaDriverBranch"), check=checks.driver_branch
        ),
        "api_endpoint": top.string("apiEndpoint", default("apiEndpoint")),
        "k3s_tls_sans": top.strings("k3sTlsSans", default("k3sTlsSans")),
        "node_cidr": top.string("nodeCidr", default("nodeCidr"), check=checks.cidr_or_empty),
        "ansible_dir": top.string("ansibleDir", default("ansibleDir")),
        "dashboards_dir": top.string("dashboardsDir", default("dashboardsDir")),
        "charts_dir": top.string("chartsDir", default("chartsDir")),
        "training_operator_manifests": top.string(
            "trainingOperatorManifests", default("trainingOperatorManifests")
        ),
        "ssh_known_hosts": top.string("sshKnownHosts", default("sshKnownHosts"), check=check_known_hosts),
    }
