"""The stack configuration: read once, validated before any resource is declared.

Every setting lives in the ``mlstack:`` namespace of the stack file (``Pulumi.<stack>.yaml``). Scalar
settings are also declared, with their types and defaults, in ``Pulumi.yaml`` (a test keeps the two in
step); structured settings (node pools, hosts, serving, training jobs) are objects that Pulumi cannot
type, so this module checks them field by field. Every error names the full key
(``mlstack:nodePools[1].instanceType``) and what it accepts.

:func:`parse` is pure (a mapping in, frozen dataclasses out) so it is tested without the engine;
:func:`load` reads the running stack's config and its secrets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pulumi

NAMESPACE = "mlstack"

# Kubernetes minors this program deploys to: k3s ships them and the offline schemas cover them.
SUPPORTED_KUBERNETES_MINORS = ("1.31", "1.32", "1.33", "1.34")
ANSIBLE_GROUPS = (
    "k3s_servers",
    "k3s_agents",
    "gpu_nodes",
    "hdfs_namenodes",
    "hdfs_datanodes",
    "kafka_controllers",
    "kafka_brokers",
)
# EC2 instance families with NVIDIA GPUs, x86_64 CPUs (the AMI we look up is x86_64) and Nitro NVMe EBS
# (the data volume is found by its NVMe serial).
GPU_INSTANCE_FAMILIES = ("g4dn", "g5", "g6", "g6e", "gr6", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en")
# The official AlmaLinux AWS account publishes the AlmaLinux OS AMIs.
ALMALINUX_AMI_OWNER = "764336703387"
IMAGE_NAMES = ("mlstack-training", "mlstack-training-cuda", "mlstack-workloads")
SECRET_KEYS = ("k3sToken", "sshPrivateKey")

_REQUIRED = object()
_K3S_VERSION = re.compile(r"^v(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)\+k3s(?P<build>\d+)$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")

# Scalar settings declared in Pulumi.yaml: key -> (Pulumi type, default; _REQUIRED = no default).
PROJECT_KEYS: dict[str, tuple[str, Any]] = {
    "nodeProvider": ("string", _REQUIRED),
    "kubernetesVersion": ("string", "v1.33.5+k3s1"),
    "imageRegistry": ("string", _REQUIRED),
    "imageVersion": ("string", _REQUIRED),
    "adminCidrs": ("array", []),
    "nvidiaDriverBranch": ("string", "580"),
    "apiEndpoint": ("string", ""),
    "k3sTlsSans": ("array", []),
    "nodeCidr": ("string", ""),
    "ansibleDir": ("string", "ansible"),
    "dashboardsDir": ("string", "dashboards/generated"),
    "chartsDir": ("string", ""),
    "trainingOperatorManifests": ("string", ""),
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
    "trainingJobs",
    "rbac",
)


class ConfigError(ValueError):
    """A stack setting that is missing or invalid; the message names the key and what it accepts."""


def is_required(default: Any) -> bool:
    return default is _REQUIRED


# ---------------------------------------------------------------------------------------------------
# The configuration, as frozen dataclasses


@dataclasses.dataclass(frozen=True)
class AwsSettings:
    """Where and how the ``aws`` node provider builds the network and the instances."""

    availability_zones: tuple[str, ...]
    """Availability zones to spread subnets and nodes over (GPU types are not offered in every zone)."""
    vpc_cidr: str = "10.20.0.0/16"
    """Address range of the VPC; it must not overlap k3s's pod (10.42.0.0/16) or service (10.43.0.0/16) ranges."""
    ami_owner: str = ALMALINUX_AMI_OWNER
    """AWS account that publishes the AMI (the official AlmaLinux account by default)."""
    ami_name_pattern: str = "AlmaLinux OS 9*"
    """AMI name filter; the newest x86_64 match is used."""
    ssh_user: str = "ec2-user"
    """Login user of the AMI."""
    root_volume_gb: int = 100
    """Size of every node's encrypted root volume."""


@dataclasses.dataclass(frozen=True)
class NodePool:
    """A group of identical EC2 instances that share Ansible groups."""

    name: str
    """DNS-label name; nodes are called ``<name>-<index>``."""
    groups: tuple[str, ...]
    """Ansible groups every node of the pool joins (``gpu_nodes`` makes it a GPU pool)."""
    count: int
    """Number of instances."""
    instance_type: str
    """EC2 instance type; GPU pools need a GPU family."""
    data_volume_gb: int = 0
    """Encrypted EBS data volume per node for HDFS and Kafka data (needed by those groups)."""

    @property
    def gpu(self) -> bool:
        return "gpu_nodes" in self.groups


@dataclasses.dataclass(frozen=True)
class ExistingHost:
    """A machine that already exists and is reached over SSH."""

    name: str
    """Inventory name (a DNS label)."""
    address: str
    """Address Ansible connects to."""
    groups: tuple[str, ...]
    """Ansible groups of the host."""
    private_address: str = ""
    """Address other nodes and pods use (defaults to ``address``)."""
    ssh_user: str = "root"
    """Login user."""
    hdfs_data_dirs: tuple[str, ...] = ()
    """HDFS DataNode directories, one per disk (needed in ``hdfs_datanodes``)."""
    kafka_log_dirs: tuple[str, ...] = ()
    """Kafka data directories (needed in ``kafka_brokers``)."""

    @property
    def internal_address(self) -> str:
        return self.private_address or self.address


@dataclasses.dataclass(frozen=True)
class Images:
    """Where the project's images come from: ``<registry>/<name>:<version>`` or ``@<digest>``."""

    registry: str
    version: str
    digests: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def reference(self, name: str) -> str:
        if name not in IMAGE_NAMES:
            raise ConfigError(f"unknown image {name!r}; known: {', '.join(IMAGE_NAMES)}")
        if name in self.digests:
            repository = name.removesuffix("-cuda")
            return f"{self.registry}/{repository}@{self.digests[name]}"
        if name.endswith("-cuda"):
            return f"{self.registry}/{name.removesuffix('-cuda')}:{self.version}-cuda"
        return f"{self.registry}/{name}:{self.version}"

    def training(self, gpu: bool) -> str:
        return self.reference("mlstack-training-cuda" if gpu else "mlstack-training")

    def workloads(self) -> str:
        return self.reference("mlstack-workloads")


@dataclasses.dataclass(frozen=True)
class GpuSharing:
    """How the NVIDIA device plugin shares each GPU."""

    strategy: str = "none"
    """``none`` (one pod per GPU) or ``time-slicing`` (``replicas`` pods per GPU)."""
    replicas: int = 1
    """Pods that share one GPU under time-slicing (2 or more)."""
    mig_strategy: str = "none"
    """MIG exposure: ``none``, ``single`` or ``mixed`` (the GPUs must be partitioned on the host)."""


@dataclasses.dataclass(frozen=True)
class Resources:
    """CPU and memory a container requests; its limits are the same (Guaranteed QoS)."""

    cpu: str
    memory: str


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where TF Serving reads ``<base>/fashion_mnist/<version>/`` from."""

    kind: str
    """``hdfs``, ``s3`` or ``pvc``."""
    base: str
    """``hdfs://`` or ``s3://`` URL, or a directory inside the PVC, that holds the model directory."""
    claim_name: str = ""
    """PersistentVolumeClaim (``pvc``) mounted read-only."""
    s3_endpoint: str = ""
    """S3-compatible endpoint URL (empty = AWS)."""
    s3_region: str = ""
    """S3 region."""
    credentials_secret: str = ""
    """Secret in mlstack-serving with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (``s3``)."""


@dataclasses.dataclass(frozen=True)
class Autoscaling:
    """How the serving Deployment scales between ``minReplicas`` and ``maxReplicas``."""

    mode: str = "cpu"
    """``cpu`` (a HorizontalPodAutoscaler) or ``requests`` / ``latency`` (a KEDA ScaledObject)."""
    target_cpu_percent: int = 70
    """``cpu``: average CPU utilisation to hold."""
    target_requests_per_second: int = 50
    """``requests``: requests per second per replica."""
    target_p99_ms: int = 100
    """``latency``: p99 request latency in milliseconds to stay under."""


@dataclasses.dataclass(frozen=True)
class Serving:
    """TF Serving: the model, its storage, its size and how it scales."""

    min_replicas: int = 2
    max_replicas: int = 4
    model_source: ModelSource = ModelSource(kind="hdfs", base="")
    versions: tuple[int, ...] = ()
    """Pinned model versions (empty = the highest version)."""
    labels: tuple[tuple[str, int], ...] = ()
    """Version labels such as ``stable``/``canary`` (they need pinned versions)."""
    gpu: bool = False
    """Run on GPU nodes with the GPU image and GPU batching profile."""
    image: str = "tensorflow/serving:2.19.1"
    """TF Serving image (``-gpu`` is appended for GPU serving unless the tag already says so)."""
    resources: Resources = Resources(cpu="2", memory="4Gi")
    autoscaling: Autoscaling = Autoscaling()
    client_namespaces: tuple[str, ...] = ("mlstack-data",)
    """Namespaces whose pods may call TF Serving (besides mlstack-serving itself)."""


@dataclasses.dataclass(frozen=True)
class Streaming:
    """The Kafka-side services: inference workers and streaming ingestion."""

    enabled: bool = True
    infer_replicas: int = 2
    ingest_replicas: int = 1
    max_batch_size: int = 32
    max_batch_wait_ms: int = 10
    shard_size: int = 10_000
    ingest_output: str = ""
    """Shard directory that ingestion writes (default: the HDFS dataset ``fashion-mnist``)."""
    resources: Resources = Resources(cpu="1", memory="1Gi")


@dataclasses.dataclass(frozen=True)
class TrainingJob:
    """A distributed training run: a TFJob or a PyTorchJob of ``python -m workloads train``."""

    name: str
    framework: str
    """``tensorflow`` or ``pytorch``."""
    strategy: str
    """``multi-worker-mirrored`` or ``parameter-server`` (tensorflow), ``ddp`` (pytorch)."""
    model: str = "plain"
    workers: int = 2
    parameter_servers: int = 1
    """``parameter-server`` only."""
    gpus_per_worker: int = 0
    epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 0.001
    seed: int = 42
    checkpoint_every: int = 100
    data: str = ""
    """Shard directory (default: the HDFS dataset ``fashion-mnist``)."""
    checkpoint_dir: str = ""
    """Default: ``/mlstack/models/runs/<name>/checkpoints`` on HDFS."""
    output: str = ""
    """Default: ``/mlstack/models/runs/<name>/model`` on HDFS."""
    restart_policy: str = "OnFailure"
    backoff_limit: int = 3
    ttl_seconds_after_finished: int = 86_400
    gang_scheduler: str = ""
    """``""`` (none), ``volcano`` or ``scheduler-plugins``: all workers start together or none does."""
    resources: Resources = Resources(cpu="4", memory="8Gi")


@dataclasses.dataclass(frozen=True)
class RbacSubject:
    kind: str
    """``User``, ``Group`` or ``ServiceAccount``."""
    name: str
    namespace: str = ""


@dataclasses.dataclass(frozen=True)
class StackConfig:
    """Everything the program needs from the stack file."""

    node_provider: str
    kubernetes_version: str
    images: Images
    admin_cidrs: tuple[str, ...]
    nvidia_driver_branch: str
    api_endpoint: str
    k3s_tls_sans: tuple[str, ...]
    node_cidr: str
    ansible_dir: str
    dashboards_dir: str
    charts_dir: str
    training_operator_manifests: str
    aws: AwsSettings | None
    node_pools: tuple[NodePool, ...]
    hosts: tuple[ExistingHost, ...]
    gpu_sharing: GpuSharing
    serving: Serving
    streaming: Streaming
    training_jobs: tuple[TrainingJob, ...]
    training_submitters: tuple[RbacSubject, ...]
    has_k3s_token: bool
    has_ssh_private_key: bool

    @property
    def kubernetes_minor(self) -> str:
        match = _K3S_VERSION.match(self.kubernetes_version)
        assert match, "validated by parse()"
        return f"{match['major']}.{match['minor']}"

    @property
    def has_gpus(self) -> bool:
        return any(p.gpu for p in self.node_pools) or any("gpu_nodes" in h.groups for h in self.hosts)

    def group_members(self, group: str) -> int:
        pools = sum(p.count for p in self.node_pools if group in p.groups)
        return pools + sum(1 for h in self.hosts if group in h.groups)


@dataclasses.dataclass(frozen=True)
class Secrets:
    """Secret settings, kept as Pulumi secrets (never plain strings)."""

    k3s_token: pulumi.Output[str] | None
    ssh_private_key: pulumi.Output[str] | None


# ---------------------------------------------------------------------------------------------------
# Reading values with errors that name the key


class _Fields:
    """Reads the fields of one object (the top level or a nested one), naming each by its full key."""

    def __init__(self, values: Mapping[str, Any], path: str) -> None:
        self._values = values
        self._path = path
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self._path}.{name}" if not self._path.endswith(":") else f"{self._path}{name}"

    def fail(self, name: str, message: str) -> ConfigError:
        return ConfigError(f"{self.key(name)}: {message}")

    def has(self, name: str) -> bool:
        return name in self._values

    def _get(self, name: str, default: Any) -> Any:
        self._seen.add(name)
        if name in self._values and self._values[name] is not None:
            return self._values[name]
        if default is _REQUIRED:
            raise self.fail(name, "missing; this setting is required")
        return default

    def string(
        self,
        name: str,
        default: Any = _REQUIRED,
        *,
        allowed: Iterable[str] | None = None,
        check: Callable[[str], str | None] | None = None,
    ) -> str:
        value = self._get(name, default)
        if not isinstance(value, str):
            raise self.fail(name, f"expected a string, got {_describe(value)}")
        if allowed is not None:
            allowed = tuple(allowed)
            if value not in allowed:
                raise self.fail(name, f"{value!r} is not allowed; allowed values: {', '.join(allowed)}")
        if check is not None and (problem := check(value)):
            raise self.fail(name, problem)
        return value

    def integer(self, name: str, default: Any = _REQUIRED, *, minimum: int | None = None) -> int:
        value = self._get(name, default)
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"expected an integer, got {_describe(value)}")
        if minimum is not None and value < minimum:
            raise self.fail(name, f"must be at least {minimum}, got {value}")
        return value

    def number(self, name: str, default: Any = _REQUIRED, *, positive: bool = False) -> float:
        value = self._get(name, default)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(name, f"expected a number, got {_describe(value)}")
        if positive and value <= 0:
            raise self.fail(name, f"must be greater than 0, got {value}")
        return float(value)

    def boolean(self, name: str, default: Any = _REQUIRED) -> bool:
        value = self._get(name, default)
        if isinstance(value, str) and value in ("true", "false"):
            value = value == "true"
        if not isinstance(value, bool):
            raise self.fail(name, f"expected true or false, got {_describe(value)}")
        return value

    def strings(
        self, name: str, default: Any = _REQUIRED, *, check: Callable[[str], str | None] | None = None
    ) -> tuple[str, ...]:
        value = self._get(name, default)
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            raise self.fail(name, f"expected a list of strings, got {_describe(value)}")
        for index, item in enumerate(value):
            if check is not None and (problem := check(item)):
                raise self.fail(f"{name}[{index}]", problem)
        return tuple(value)

    def integers(self, name: str, default: Any = _REQUIRED, *, minimum: int | None = None) -> tuple[int, ...]:
        value = self._get(name, default)
        if not isinstance(value, list | tuple):
            raise self.fail(name, f"expected a list of integers, got {_describe(value)}")
        items = _Fields({f"{name}[{i}]": item for i, item in enumerate(value)}, self._path)
        return tuple(items.integer(f"{name}[{i}]", minimum=minimum) for i in range(len(value)))

    def names(self) -> list[str]:
        """The keys of a free-form object (such as a map of labels)."""
        return list(self._values)

    def skip(self, name: str) -> None:
        """Marks an optional setting as handled when its absence means 'use the default'."""
        self._seen.add(name)

    def obj(self, name: str, default: Any = _REQUIRED) -> _Fields:
        value = self._get(name, default)
        if not isinstance(value, Mapping):
            raise self.fail(name, f"expected an object, got {_describe(value)}")
        return _Fields(value, self.key(name))

    def obj_list(self, name: str, default: Any = _REQUIRED) -> list[_Fields]:
        value = self._get(name, default)
        if not isinstance(value, list | tuple):
            raise self.fail(name, f"expected a list of objects, got {_describe(value)}")
        items = []
        for index, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise self.fail(f"{name}[{index}]", f"expected an object, got {_describe(item)}")
            items.append(_Fields(item, f"{self.key(name)}[{index}]"))
        return items

    def done(self) -> None:
        """Rejects keys nobody read: a typo must not silently fall back to a default."""
        known = self._seen
        for name in self._values:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = (
                    f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
                )
                raise self.fail(name, f"unknown setting{hint}")


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _cidr(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as error:
        return f"{value!r} is not a CIDR block such as 203.0.113.0/24 ({error})"
    return None


def _dns_label(value: str) -> str | None:
    if not _DNS_LABEL.match(value):
        return f"{value!r} must be a DNS label: lower-case letters, digits and '-', at most 63 characters"
    return None


def _absolute_path(value: str) -> str | None:
    return None if value.startswith("/") else f"{value!r} must be an absolute path"


def _storage_url(value: str) -> str | None:
    if not value or re.match(r"^(hdfs|s3|webhdfs|file)://", value) or value.startswith("/"):
        return None
    return f"{value!r} must be an hdfs://, s3://, webhdfs:// or file:// URL or an absolute path"


def _quantity(value: str) -> str | None:
    if re.fullmatch(r"\d+(\.\d+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?", value):
        return None
    return f"{value!r} is not a Kubernetes quantity such as 500m, 2, 512Mi or 4Gi"


def _resources(fields: _Fields, name: str, default: Resources) -> Resources:
    if not fields.has(name):
        fields.skip(name)
        return default
    obj = fields.obj(name)
    result = Resources(
        cpu=obj.string("cpu", default.cpu, check=_quantity),
        memory=obj.string("memory", default.memory, check=_quantity),
    )
    obj.done()
    return result


# ---------------------------------------------------------------------------------------------------
# Parsing


def parse(values: Mapping[str, Any], secret_keys: Iterable[str] = ()) -> StackConfig:
    """Validates the ``mlstack:`` settings (keys without the namespace) and returns the configuration."""
    top = _Fields(values, f"{NAMESPACE}:")
    secret_keys = set(secret_keys)
    for name in SECRET_KEYS:
        top.skip(name)
        if name in values and name not in secret_keys:
            raise top.fail(
                name,
                f"is stored in plain text; remove it and set it with `pulumi config set --secret {name}`",
            )

    provider = top.string("nodeProvider", allowed=("aws", "existing"))
    kubernetes_version = top.string("kubernetesVersion", _default("kubernetesVersion"), check=_k3s_version)
    images = _images(top)
    admin_cidrs = top.strings("adminCidrs", _default("adminCidrs"), check=_cidr)
    driver_branch = top.string(
        "nvidiaDriverBranch",
        _default("nvidiaDriverBranch"),
        check=lambda v: None if v.isdigit() else f"{v!r} must be a driver branch number such as 580",
    )
    api_endpoint = top.string("apiEndpoint", _default("apiEndpoint"))
    tls_sans = top.strings("k3sTlsSans", _default("k3sTlsSans"))
    node_cidr = top.string("nodeCidr", _default("nodeCidr"), check=lambda v: _cidr(v) if v else None)
    ansible_dir = top.string("ansibleDir", _default("ansibleDir"))
    dashboards_dir = top.string("dashboardsDir", _default("dashboardsDir"))
    charts_dir = top.string("chartsDir", _default("chartsDir"))
    operator_manifests = top.string("trainingOperatorManifests", _default("trainingOperatorManifests"))

    aws: AwsSettings | None = None
    pools: tuple[NodePool, ...] = ()
    hosts: tuple[ExistingHost, ...] = ()
    if provider == "aws":
        for name in ("hosts", "apiEndpoint", "nodeCidr"):
            if values.get(name):
                raise top.fail(name, "applies to nodeProvider 'existing' only; remove it for 'aws'")
        if not admin_cidrs:
            raise top.fail(
                "adminCidrs",
                "missing; list the CIDR blocks allowed to reach SSH and the Kubernetes API "
                "(for example your office or VPN range, 203.0.113.0/24); 0.0.0.0/0 opens them to everyone",
            )
        aws = _aws(top.obj("aws"))
        pools = _node_pools(top, aws)
        node_cidr = aws.vpc_cidr
    else:
        for name in ("aws", "nodePools"):
            if name in values:
                raise top.fail(name, "applies to nodeProvider 'aws' only; remove it for 'existing'")
        hosts = _hosts(top)
        if not node_cidr:
            raise top.fail(
                "nodeCidr",
                "missing; give the CIDR block that holds every host's private address (NetworkPolicies "
                "use it to allow pods to reach HDFS, Kafka and the API server)",
            )
        for index, host in enumerate(hosts):
            if ipaddress.ip_address(host.internal_address) not in ipaddress.ip_network(node_cidr):
                raise ConfigError(
                    f"{NAMESPACE}:hosts[{index}].privateAddress: {host.internal_address} is outside "
                    f"{NAMESPACE}:nodeCidr {node_cidr}"
                )
    for name in ("aws", "nodePools", "hosts"):
        top.skip(name)

    gpu_sharing = _gpu_sharing(top)
    serving = _serving(top)
    streaming = _streaming(top)
    jobs = _training_jobs(top)
    submitters = _rbac(top)
    top.done()

    config = StackConfig(
        node_provider=provider,
        kubernetes_version=kubernetes_version,
        images=images,
        admin_cidrs=admin_cidrs,
        nvidia_driver_branch=driver_branch,
        api_endpoint=api_endpoint,
        k3s_tls_sans=tls_sans,
        node_cidr=node_cidr,
        ansible_dir=ansible_dir,
        dashboards_dir=dashboards_dir,
        charts_dir=charts_dir,
        training_operator_manifests=operator_manifests,
        aws=aws,
        node_pools=pools,
        hosts=hosts,
        gpu_sharing=gpu_sharing,
        serving=serving,
        streaming=streaming,
        training_jobs=jobs,
        training_submitters=submitters,
        has_k3s_token="k3sToken" in values,
        has_ssh_private_key="sshPrivateKey" in values,
    )
    _check_cluster(config)
    return config


def _default(name: str) -> Any:
    """The default Pulumi.yaml declares for a scalar setting (the CLI applies it; tests and mocks do not)."""
    return PROJECT_KEYS[name][1]


def _k3s_version(value: str) -> str | None:
    match = _K3S_VERSION.match(value)
    allowed = ", ".join(SUPPORTED_KUBERNETES_MINORS)
    if not match:
        return f"{value!r} is not a k3s release; use vMAJOR.MINOR.PATCH+k3sN (e.g. v1.33.5+k3s1) of Kubernetes {allowed}"
    minor = f"{match['major']}.{match['minor']}"
    if minor not in SUPPORTED_KUBERNETES_MINORS:
        return f"Kubernetes {minor} ({value}) is not supported; allowed Kubernetes versions: {allowed}"
    return None


def _images(top: _Fields) -> Images:
    registry = top.string(
        "imageRegistry",
        check=lambda v: (
            None
            if _REGISTRY.match(v)
            else f"{v!r} must be a registry path without scheme or trailing '/', e.g. registry.example.com/mlstack"
        ),
    )
    version = top.string(
        "imageVersion",
        check=lambda v: (
            "'latest' is not allowed; pin a release version such as 0.1.0"
            if v == "latest"
            else (None if _IMAGE_TAG.match(v) else f"{v!r} is not a valid image tag")
        ),
    )
    digests: dict[str, str] = {}
    if top.has("imageDigests"):
        obj = top.obj("imageDigests")
        for name in IMAGE_NAMES:
            if obj.has(name):
                digests[name] = obj.string(
                    name,
                    check=lambda v: (
                        None if _DIGEST.match(v) else f"{v!r} must look like sha256:<64 hex digits>"
                    ),
                )
        obj.done()
    else:
        top.skip("imageDigests")
    return Images(registry=registry, version=version, digests=digests)


def _aws(obj: _Fields) -> AwsSettings:
    zones = obj.strings("availabilityZones")
    if not zones:
        raise obj.fail("availabilityZones", "list at least one availability zone, e.g. eu-west-1a")
    settings = AwsSettings(
        availability_zones=zones,
        vpc_cidr=obj.string("vpcCidr", AwsSettings.vpc_cidr, check=_cidr),
        ami_owner=obj.string("amiOwner", ALMALINUX_AMI_OWNER),
        ami_name_pattern=obj.string("amiNamePattern", AwsSettings.ami_name_pattern),
        ssh_user=obj.string("sshUser", AwsSettings.ssh_user),
        root_volume_gb=obj.integer("rootVolumeGb", AwsSettings.root_volume_gb, minimum=20),
    )
    vpc = ipaddress.ip_network(settings.vpc_cidr)
    for reserved in ("10.42.0.0/16", "10.43.0.0/16"):
        if vpc.overlaps(ipaddress.ip_network(reserved)):
            raise obj.fail("vpcCidr", f"{settings.vpc_cidr} overlaps k3s's pod/service range {reserved}")
    if vpc.prefixlen > 24 - (len(zones) - 1).bit_length():
        raise obj.fail(
            "vpcCidr", f"{settings.vpc_cidr} is too small for one /24 subnet per availability zone"
        )
    obj.done()
    return settings


def _groups(fields: _Fields, name: str) -> tuple[str, ...]:
    groups = fields.strings(name)
    if not groups:
        raise fields.fail(name, f"list at least one Ansible group: {', '.join(ANSIBLE_GROUPS)}")
    for index, group in enumerate(groups):
        if group not in ANSIBLE_GROUPS:
            raise fields.fail(
                f"{name}[{index}]", f"{group!r} is not a group; allowed values: {', '.join(ANSIBLE_GROUPS)}"
            )
    if "k3s_servers" in groups and "k3s_agents" in groups:
        raise fields.fail(name, "a node is either in k3s_servers or in k3s_agents, not both")
    if "k3s_servers" not in groups and "k3s_agents" not in groups:
        raise fields.fail(name, "every node joins the cluster: add k3s_servers or k3s_agents")
    return groups


def _node_pools(top: _Fields, aws: AwsSettings) -> tuple[NodePool, ...]:
    pools = []
    for item in top.obj_list("nodePools"):
        groups = _groups(item, "groups")
        pool = NodePool(
            name=item.string("name", check=_dns_label),
            groups=groups,
            count=item.integer("count", minimum=1),
            instance_type=item.string(
                "instanceType",
                check=lambda v: (
                    None
                    if re.fullmatch(r"[a-z0-9-]+\.[a-z0-9]+", v)
                    else f"{v!r} is not an EC2 instance type"
                ),
            ),
            data_volume_gb=item.integer("dataVolumeGb", 0, minimum=0),
        )
        if pool.gpu and pool.instance_type.split(".")[0] not in GPU_INSTANCE_FAMILIES:
            raise item.fail(
                "instanceType",
                f"{pool.instance_type!r} has no NVIDIA GPU but the pool is in gpu_nodes; use a GPU type "
                f"(families: {', '.join(GPU_INSTANCE_FAMILIES)}), e.g. g5.xlarge",
            )
        if {"hdfs_datanodes", "kafka_brokers"} & set(groups) and pool.data_volume_gb < 10:
            raise item.fail(
                "dataVolumeGb", "HDFS DataNodes and Kafka brokers need a data volume of at least 10 GB"
            )
        item.done()
        pools.append(pool)
    if not pools:
        raise top.fail("nodePools", "list at least one node pool")
    _unique(top, "nodePools", [p.name for p in pools])
    return tuple(pools)


def _hosts(top: _Fields) -> tuple[ExistingHost, ...]:
    hosts = []
    for item in top.obj_list("hosts"):
        groups = _groups(item, "groups")
        host = ExistingHost(
            name=item.string("name", check=_dns_label),
            address=item.string("address", check=lambda v: None if v else "must not be empty"),
            groups=groups,
            private_address=item.string("privateAddress", "", check=_ip_or_empty),
            ssh_user=item.string("sshUser", "root"),
            hdfs_data_dirs=item.strings("hdfsDataDirs", [], check=_absolute_path),
            kafka_log_dirs=item.strings("kafkaLogDirs", [], check=_absolute_path),
        )
        if not host.private_address and (problem := _ip_or_empty(host.address)):
            raise item.fail("privateAddress", f"missing; address {problem}, so give the host's private IP")
        if "hdfs_datanodes" in groups and not host.hdfs_data_dirs:
            raise item.fail("hdfsDataDirs", "missing; an HDFS DataNode needs at least one data directory")
        if "kafka_brokers" in groups and not host.kafka_log_dirs:
            raise item.fail("kafkaLogDirs", "missing; a Kafka broker needs at least one log directory")
        item.done()
        hosts.append(host)
    if not hosts:
        raise top.fail("hosts", "list at least one host")
    _unique(top, "hosts", [h.name for h in hosts])
    return tuple(hosts)


def _ip_or_empty(value: str) -> str | None:
    if not value:
        return None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address"
    return None


def _unique(top: _Fields, name: str, names: list[str]) -> None:
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise top.fail(name, f"names must be unique; repeated: {', '.join(duplicates)}")


def _gpu_sharing(top: _Fields) -> GpuSharing:
    if not top.has("gpuSharing"):
        top.skip("gpuSharing")
        return GpuSharing()
    obj = top.obj("gpuSharing")
    sharing = GpuSharing(
        strategy=obj.string("strategy", "none", allowed=("none", "time-slicing")),
        replicas=obj.integer("replicas", 1, minimum=1),
        mig_strategy=obj.string("migStrategy", "none", allowed=("none", "single", "mixed")),
    )
    if sharing.strategy == "time-slicing" and sharing.replicas < 2:
        raise obj.fail(
            "replicas", "time-slicing shares each GPU between 2 or more pods; set replicas to 2 or more"
        )
    if sharing.strategy == "none" and sharing.replicas != 1:
        raise obj.fail("replicas", "only applies to strategy 'time-slicing'")
    obj.done()
    return sharing


def _serving(top: _Fields) -> Serving:
    obj = top.obj("serving", {})
    default = Serving()
    if not obj.has("modelSource"):
        raise obj.fail(
            "modelSource",
            "missing; say where TF Serving reads models: kind hdfs (base hdfs://...), s3 (base s3://bucket/prefix) "
            "or pvc (claimName)",
        )
    source_fields = obj.obj("modelSource")
    kind = source_fields.string("kind", allowed=("hdfs", "s3", "pvc"))
    source = ModelSource(
        kind=kind,
        base=source_fields.string("base", _default_model_base(kind), check=lambda v: _model_base(kind, v)),
        claim_name=source_fields.string(
            "claimName", "" if kind != "pvc" else _REQUIRED, check=_claim_check(kind)
        ),
        s3_endpoint=source_fields.string("s3Endpoint", ""),
        s3_region=source_fields.string("s3Region", ""),
        credentials_secret=source_fields.string("credentialsSecret", ""),
    )
    if kind != "s3":
        for name in ("s3Endpoint", "s3Region", "credentialsSecret"):
            if getattr(source, _snake(name)):
                raise source_fields.fail(name, "applies to kind 's3' only")
    source_fields.done()

    versions = obj.integers("versions", [], minimum=1)
    labels_obj = obj.obj("labels", {})
    labels = tuple(sorted((name, labels_obj.integer(name, minimum=1)) for name in labels_obj.names()))
    labels_obj.done()
    for name, version in labels:
        if version not in versions:
            raise labels_obj.fail(
                name, f"points at version {version}, which is not in serving.versions {list(versions)}"
            )

    autoscaling_obj = obj.obj("autoscaling", {})
    autoscaling = Autoscaling(
        mode=autoscaling_obj.string("mode", "cpu", allowed=("cpu", "requests", "latency")),
        target_cpu_percent=autoscaling_obj.integer("targetCpuPercent", 70, minimum=1),
        target_requests_per_second=autoscaling_obj.integer("targetRequestsPerSecond", 50, minimum=1),
        target_p99_ms=autoscaling_obj.integer("targetP99Ms", 100, minimum=1),
    )
    autoscaling_obj.done()

    serving = Serving(
        min_replicas=obj.integer("minReplicas", default.min_replicas, minimum=1),
        max_replicas=obj.integer("maxReplicas", default.max_replicas, minimum=1),
        model_source=source,
        versions=versions,
        labels=labels,
        gpu=obj.boolean("gpu", False),
        image=obj.string("image", default.image, check=_pinned_image),
        resources=_resources(obj, "resources", default.resources),
        autoscaling=autoscaling,
        client_namespaces=obj.strings("clientNamespaces", list(default.client_namespaces), check=_dns_label),
    )
    if source.kind == "hdfs" and re.match(r"^(docker\.io/)?tensorflow/serving[:@]", serving.image):
        raise obj.fail(
            "image",
            f"{serving.image} cannot read hdfs:// (the stock image has no Hadoop libhdfs or JRE); give an image "
            "built on it with the Hadoop client, or use modelSource kind s3 or pvc",
        )
    if serving.min_replicas > serving.max_replicas:
        raise obj.fail(
            "minReplicas",
            f"{serving.min_replicas} is above maxReplicas {serving.max_replicas}; "
            "allowed: 1 <= minReplicas <= maxReplicas",
        )
    obj.done()
    return serving


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _default_model_base(kind: str) -> Any:
    return {"hdfs": "", "pvc": "/models"}.get(kind, _REQUIRED)


def _model_base(kind: str, value: str) -> str | None:
    if kind == "hdfs" and value and not value.startswith("hdfs://"):
        return f"{value!r} must be an hdfs:// URL (or empty for the cluster's HDFS /mlstack/models)"
    if kind == "s3" and not re.match(r"^s3://[a-z0-9.-]+(/.*)?$", value):
        return f"{value!r} must be an s3://bucket/prefix URL"
    if kind == "pvc" and not value.startswith("/"):
        return f"{value!r} must be an absolute path inside the volume mount, e.g. /models"
    return None


def _claim_check(kind: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if kind == "pvc":
            return _dns_label(value)
        return "applies to kind 'pvc' only" if value else None

    return check


def _pinned_image(value: str) -> str | None:
    name = value.rsplit("/", 1)[-1]
    if "@sha256:" in value:
        return None
    if ":" not in name:
        return f"{value!r} has no tag; pin a version such as tensorflow/serving:2.19.1"
    if name.endswith(":latest"):
        return f"{value!r}: 'latest' is not allowed; pin a version"
    return None


def _streaming(top: _Fields) -> Streaming:
    obj = top.obj("streaming", {})
    default = Streaming()
    streaming = Streaming(
        enabled=obj.boolean("enabled", default.enabled),
        infer_replicas=obj.integer("inferReplicas", default.infer_replicas, minimum=1),
        ingest_replicas=obj.integer("ingestReplicas", default.ingest_replicas, minimum=1),
        max_batch_size=obj.integer("maxBatchSize", default.max_batch_size, minimum=1),
        max_batch_wait_ms=obj.integer("maxBatchWaitMs", default.max_batch_wait_ms, minimum=0),
        shard_size=obj.integer("shardSize", default.shard_size, minimum=1),
        ingest_output=obj.string("ingestOutput", "", check=_storage_url),
        resources=_resources(obj, "resources", default.resources),
    )
    obj.done()
    return streaming


_STRATEGIES = {"tensorflow": ("multi-worker-mirrored", "parameter-server"), "pytorch": ("ddp",)}


def _training_jobs(top: _Fields) -> tuple[TrainingJob, ...]:
    jobs = []
    for item in top.obj_list("trainingJobs", []):
        framework = item.string("framework", allowed=_STRATEGIES)
        job = TrainingJob(
            name=item.string("name", check=_dns_label),
            framework=framework,
            strategy=item.string("strategy", allowed=_STRATEGIES[framework]),
            model=item.string("model", "plain", allowed=("plain", "dropout", "batchnorm")),
            workers=item.integer("workers", 2, minimum=1),
            parameter_servers=item.integer("parameterServers", 1, minimum=1),
            gpus_per_worker=item.integer("gpusPerWorker", 0, minimum=0),
            epochs=item.integer("epochs", 10, minimum=1),
            batch_size=item.integer("batchSize", 256, minimum=1),
            learning_rate=item.number("learningRate", 0.001, positive=True),
            seed=item.integer("seed", 42, minimum=0),
            checkpoint_every=item.integer("checkpointEvery", 100, minimum=1),
            data=item.string("data", "", check=_storage_url),
            checkpoint_dir=item.string("checkpointDir", "", check=_storage_url),
            output=item.string("output", "", check=_storage_url),
            restart_policy=item.string(
                "restartPolicy", "OnFailure", allowed=("OnFailure", "ExitCode", "Never", "Always")
            ),
            backoff_limit=item.integer("backoffLimit", 3, minimum=0),
            ttl_seconds_after_finished=item.integer("ttlSecondsAfterFinished", 86_400, minimum=0),
            gang_scheduler=item.string("gangScheduler", "", allowed=("", "volcano", "scheduler-plugins")),
            resources=_resources(item, "resources", TrainingJob.resources),
        )
        if job.strategy != "parameter-server" and item.has("parameterServers"):
            raise item.fail("parameterServers", "applies to strategy 'parameter-server' only")
        if job.framework == "pytorch" and job.workers < 2 and job.gang_scheduler:
            raise item.fail("gangScheduler", "gang scheduling needs at least 2 workers")
        item.done()
        jobs.append(job)
    _unique(top, "trainingJobs", [j.name for j in jobs])
    return tuple(jobs)


def _rbac(top: _Fields) -> tuple[RbacSubject, ...]:
    obj = top.obj("rbac", {})
    subjects = []
    for item in obj.obj_list("trainingSubmitters", []):
        kind = item.string("kind", allowed=("User", "Group", "ServiceAccount"))
        subjects.append(
            RbacSubject(
                kind=kind,
                name=item.string("name"),
                namespace=item.string("namespace", _REQUIRED if kind == "ServiceAccount" else ""),
            )
        )
        item.done()
    obj.done()
    return tuple(subjects)


def _check_cluster(config: StackConfig) -> None:
    """Rules across settings: the cluster must be able to run what the stack asks for."""
    where = "nodePools" if config.node_provider == "aws" else "hosts"
    key = f"{NAMESPACE}:{where}"
    if config.group_members("k3s_servers") == 0:
        raise ConfigError(f"{key}: no node is in k3s_servers; the cluster needs at least one server")
    if config.group_members("k3s_servers") % 2 == 0:
        raise ConfigError(
            f"{key}: {config.group_members('k3s_servers')} k3s servers; embedded etcd needs an odd number (1, 3, 5)"
        )
    for group, needs in (("hdfs_datanodes", "hdfs_namenodes"), ("kafka_brokers", "kafka_controllers")):
        if config.group_members(group) and config.group_members(needs) == 0:
            raise ConfigError(f"{key}: nodes are in {group} but none is in {needs}")
    if config.group_members("hdfs_namenodes") > 1:
        raise ConfigError(f"{key}: put exactly one node in hdfs_namenodes (no HDFS high availability here)")
    source = config.serving.model_source
    users = ["serving.modelSource"] if source.kind == "hdfs" and not source.base else []
    users += [
        f"trainingJobs[{i}]"
        for i, job in enumerate(config.training_jobs)
        if not (job.data and job.output and job.checkpoint_dir)
    ]
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
    gpu_users = [f"trainingJobs[{i}]" for i, j in enumerate(config.training_jobs) if j.gpus_per_worker]
    if config.serving.gpu:
        gpu_users.append("serving.gpu")
    if gpu_users and not config.has_gpus:
        raise ConfigError(f"{NAMESPACE}:{gpu_users[0]}: asks for GPUs but no node is in gpu_nodes")
    if config.gpu_sharing.strategy != "none" and not config.has_gpus:
        raise ConfigError(f"{NAMESPACE}:gpuSharing: no node is in gpu_nodes")


# ---------------------------------------------------------------------------------------------------
# Reading the running stack


def stack_values() -> tuple[dict[str, Any], set[str]]:
    """The ``mlstack:`` settings of the running stack (decoded) and which of them are secret."""
    from pulumi.runtime import config as runtime_config

    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    values: dict[str, Any] = {}
    secret: set[str] = set()
    for full_key, raw in merged.items():
        namespace, _, name = full_key.partition(":")
        if namespace != NAMESPACE:
            continue
        if (
            runtime_config.is_config_secret(full_key)
            or full_key in runtime_config.get_config_secret_keys_env()
        ):
            secret.add(name)
            values[name] = "[secret]"  # validated for presence only; read through pulumi.Config.get_secret
            continue
        values[name] = _decode(name, raw)
    return values, secret


def _decode(name: str, raw: Any) -> Any:
    kind = PROJECT_KEYS.get(name, ("object", None))[0]
    if not isinstance(raw, str) or kind == "string":
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{NAMESPACE}:{name}: expected a JSON/YAML {kind}, got {raw!r} ({error})"
        ) from error


def load() -> tuple[StackConfig, Secrets]:
    """Reads and validates the running stack's settings; raises ConfigError before any resource exists."""
    import pulumi

    values, secret_keys = stack_values()
    config = parse(values, secret_keys)
    settings = pulumi.Config(NAMESPACE)
    secrets = Secrets(
        k3s_token=settings.get_secret("k3sToken") if config.has_k3s_token else None,
        ssh_private_key=settings.get_secret("sshPrivateKey") if config.has_ssh_private_key else None,
    )
    return config, secrets
