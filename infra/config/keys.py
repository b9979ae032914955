"""The stack file's keys: the ``mlstack:`` namespace, the scalar settings Pulumi.yaml declares with their
types and defaults, the structured and the secret ones, and the error that names a key."""

from __future__ import annotations

from typing import Any

NAMESPACE = "mlstack"
REQUIRED: Any = object()
"""The default of a setting that has none: reading it when it is absent is an error."""

# Scalar settings declared in Pulumi.yaml: key -> (Pulumi type, default; REQUIRED = no default).
PROJECT_KEYS: dict[str, tuple[str, Any]] = {
    "nodeProvider": ("string", REQUIRED),
    "kubernetesVersion": ("string", "v1.33.5+k3s1"),
    "imageRegistry": ("string", REQUIRED),
    "imageVersion": ("string", REQUIRED),
    "adminCidrs": ("array", []),
    "nvidiaDriverBranch": ("string", "580"),
    "apiEndpoint": ("string", ""),
    "k3sTlsSans": ("array", []),
    "nodeCidr": ("string", ""),
    "ansibleDir": ("string", "ansible"),
    "dashboardsDir": ("string", "dashboards/generated"),
    "chartsDir": ("string", ""),
    "trainingOperatorManifests": ("string", ""),
    "sshKnownHosts": ("string", ""),
}
# Structured settings (JSON objects or lists in the stack file).
OBJECT_KEYS = (
    "aws",
    "nodePools",
    "hosts",
    "imageDigests",
    "gpuSharing",
    "serving",
    "streaming",
    "workflow",
    "tracking",
    "rbac",
    "namespaceBudgets",
)
SECRET_KEYS = ("k3sToken", "sshPrivateKey")


class ConfigError(ValueError):
    """A stack setting that is missing or invalid; the message names the key and what it accepts."""


def is_required(default: Any) -> bool:
    return default is REQUIRED


def default(name: str) -> Any:
    """The default Pulumi.yaml declares for a scalar setting (the CLI applies it; tests and mocks do not)."""
    return PROJECT_KEYS[name][1]
