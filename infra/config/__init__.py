"""The stack configuration: read once, validated before any resource is declared.

Every setting lives in the ``mlstack:`` namespace of the stack file (``Pulumi.<stack>.yaml``). Scalar
settings are also declared, with their types and defaults, in ``Pulumi.yaml`` (a test keeps the two in
step); structured settings (node pools, hosts, serving, workflow) are objects that Pulumi cannot
type, so they are checked field by field. Every error names the full key
(``mlstack:nodePools[1].instanceType``) and what it accepts.

- ``keys``: the namespace, the declared keys, :class:`ConfigError`;
- ``settings``: the configuration as frozen dataclasses, with their defaults;
- ``fields`` and ``checks``: reading values and checking them, with errors that name the key;
- ``images``, ``nodes``, ``gpu_sharing``, ``serving``, ``streaming``, ``workflow``, ``training``,
  ``tracking``, ``budgets``: one reader per section;
- ``cluster``: the rules across sections; ``parsing``: :func:`parse`, pure, a mapping in;
- ``stack``: :func:`load`, the running stack's config and its secrets.
"""

from infra.config.keys import (
    NAMESPACE,
    OBJECT_KEYS,
    PROJECT_KEYS,
    SECRET_KEYS,
    ConfigError,
    is_required,
)
from infra.config.nodes import GPU_INSTANCE_FAMILIES
from infra.config.parsing import parse
from infra.config.settings import (
    ALMALINUX_AMI_OWNER,
    ANSIBLE_GROUPS,
    IMAGE_NAMES,
    SUPPORTED_KUBERNETES_MINORS,
    Autoscaling,
    AwsSettings,
    ExistingHost,
    GpuSharing,
    Images,
    ModelSource,
    NamespaceBudget,
    NodePool,
    Quota,
    RbacSubject,
    Resources,
    Retraining,
    Secrets,
    Serving,
    SparkIngest,
    StackConfig,
    Streaming,
    Tracking,
    TrainingJob,
    Workflow,
)
from infra.config.stack import load, stack_values

__all__ = [
    "ALMALINUX_AMI_OWNER",
    "ANSIBLE_GROUPS",
    "GPU_INSTANCE_FAMILIES",
    "IMAGE_NAMES",
    "NAMESPACE",
    "OBJECT_KEYS",
    "PROJECT_KEYS",
    "SECRET_KEYS",
    "SUPPORTED_KUBERNETES_MINORS",
    "Autoscaling",
    "AwsSettings",
    "ConfigError",
    "ExistingHost",
    "GpuSharing",
    "Images",
    "ModelSource",
    "NamespaceBudget",
    "NodePool",
    "Quota",
    "RbacSubject",
    "Resources",
    "Retraining",
    "Secrets",
    "Serving",
    "SparkIngest",
    "StackConfig",
    "Streaming",
    "Tracking",
    "TrainingJob",
    "Workflow",
    "is_required",
    "load",
    "parse",
    "stack_values",
]
