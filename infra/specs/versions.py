"""Every third-party version the platform deploys, pinned in one place.

Helm charts and the training operator's manifests are fetched at deploy time by the Kubernetes
provider (from the URLs below, or from ``mlstack:chartsDir`` / ``mlstack:trainingOperatorManifests``
for air-gapped installs; docs/infra.md says how to mirror them). Tests never fetch them: they check
these pins and the values passed as data.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Chart:
    name: str
    repository: str
    version: str
    app_version: str = ""
    """The release of the software the chart deploys (its ``appVersion``: the images' tag)."""

    def archive(self) -> str:
        """File name of the chart archive that ``helm pull <repo>/<name> --version <version>`` writes."""
        return f"{self.name}-{self.version}.tgz"


KUBE_PROMETHEUS_STACK = Chart(
    "kube-prometheus-stack", "https://prometheus-community.github.io/helm-charts", "87.15.0"
)
KEDA = Chart("keda", "https://kedacore.github.io/charts", "2.17.2")
# Argo Workflows 4.0.6 (controller, server, executor); tests/infra validates the generated objects with
# Hera's models, which are generated from Argo 4.0's schema.
ARGO_WORKFLOWS = Chart("argo-workflows", "https://argoproj.github.io/argo-helm", "1.0.18", "v4.0.6")

# Kubeflow training operator v1 (TFJob and PyTorchJob; Trainer v2 has no TensorFlow runtime).
TRAINING_OPERATOR_VERSION = "v1.9.3"
TRAINING_OPERATOR_MANIFESTS = f"https://github.com/kubeflow/training-operator.git/manifests/overlays/standalone?ref={TRAINING_OPERATOR_VERSION}"

DEVICE_PLUGIN_IMAGE = "nvcr.io/nvidia/k8s-device-plugin:v0.17.0"
DCGM_EXPORTER_IMAGE = "nvcr.io/nvidia/k8s/dcgm-exporter:4.2.3-4.1.3-ubuntu22.04"
# The MLflow tracking server's backend store: the official image, pinned by the digest of its multi-arch index.
POSTGRES_IMAGE = (
    "postgres:17.6-bookworm@sha256:f3bd19c606e442c3d7bdfa8002e03fe260a1023351e0ea4598032022b68dd6e3"
)
