"""The configuration, as frozen dataclasses: what the program reads from the stack file, validated.

Each class documents its fields and holds their defaults; the section readers (``infra.config.nodes``,
``.serving``, ...) take the defaults from here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from infra.config.keys import ConfigError
from infra.specs.namespaces import DATA
from workloads.data.shards import DEFAULT_SHARD_SIZE
from workloads.streaming.infer_worker import MICRO_BATCH_SIZE, MICRO_BATCH_WAIT_MS
from workloads.streaming.kafka import SASL_MECHANISMS, SECURITY_PROTOCOLS
from workloads.workflow.argo import Submission

if TYPE_CHECKING:
    import pulumi

# Kubernetes minors this program deploys to: k3s ships them and the offline schemas cover them.
SUPPORTED_KUBERNETES_MINORS = ("1.31", "1.32", "1.33", "1.34")
K3S_VERSION = re.compile(r"^v(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)\+k3s(?P<build>\d+)$")
ANSIBLE_GROUPS = (
    "k3s_servers",
    "k3s_agents",
    "gpu_nodes",
    "hdfs_namenodes",
    "hdfs_datanodes",
    "kafka_controllers",
    "kafka_brokers",
)
# The official AlmaLinux AWS account publishes the AlmaLinux OS AMIs.
ALMALINUX_AMI_OWNER = "764336703387"
IMAGE_NAMES = (
    "mlstack-training",
    "mlstack-training-cuda",
    "mlstack-workloads",
    "mlstack-tracking",
    "mlstack-spark",
)


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

    def tracking(self) -> str:
        """The MLflow tracking server's (workloads/images/tracking.Dockerfile)."""
        return self.reference("mlstack-tracking")

    def spark(self) -> str:
        """The Spark ingest's driver and executors (workloads/images/spark.Dockerfile)."""
        return self.reference("mlstack-spark")


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
    """Where TF Serving reads ``<base>/<model name>/<version>/`` from (the model name is
    ``workloads.serving.tfs_config.MODEL_NAME``)."""

    kind: str
    """``hdfs``, ``s3`` or ``pvc``."""
    base: str
    """``hdfs://`` or ``s3://`` URL, or a directory inside the PVC, that holds the model directory."""
    claim_name: str = ""
    """PersistentVolumeClaim (``pvc``, ReadWriteMany): read-only in TF Serving, read-write in the steps."""
    s3_endpoint: str = ""
    """S3-compatible endpoint URL, ``http(s)://host[:port]`` (empty = AWS); its port is the one opened."""
    s3_region: str = ""
    """S3 region."""
    credentials_secret: str = ""
    """Secret in mlstack-serving and mlstack-training with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (``s3``)."""


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


# The model mirror beside TF Serving in each serving pod (infra.specs.serving), unless the store is a PVC.
MIRROR_RESOURCES = Resources(cpu="250m", memory="512Mi")
# Pods a serving rollout adds above the replica count (its Deployment's maxSurge; maxUnavailable is 0).
SERVING_MAX_SURGE = 1


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
    image: str = "tensorflow/serving:2.21.0"
    """TF Serving image (``-gpu`` is appended for GPU serving unless the tag already says so)."""
    resources: Resources = Resources(cpu="2", memory="4Gi")
    autoscaling: Autoscaling = Autoscaling()
    client_namespaces: tuple[str, ...] = (DATA,)
    """Namespaces whose pods may call TF Serving (besides mlstack-serving itself)."""


@dataclasses.dataclass(frozen=True)
class KafkaClient:
    """How the streaming services reach the brokers' listener: what the kafka role secures it with."""

    security_protocol: str = SECURITY_PROTOCOLS[0]
    """``PLAINTEXT``, ``SSL`` (the role's ``kafka_tls``), ``SASL_PLAINTEXT`` (``kafka_sasl_scram``) or
    ``SASL_SSL`` (both)."""
    sasl_mechanism: str = SASL_MECHANISMS[0]
    """SCRAM mechanism of the ``SASL_*`` protocols (the role's ``kafka_sasl_scram_mechanism``)."""
    credentials_secret: str = ""
    """Secret in mlstack-data with the SCRAM user's ``username`` and ``password`` (``SASL_*``)."""
    ca_config_map: str = ""
    """ConfigMap in mlstack-data whose ``ca.crt`` is the PEM of the brokers' CA (``SSL``, ``SASL_SSL``)."""


@dataclasses.dataclass(frozen=True)
class Streaming:
    """The Kafka-side services: inference workers and streaming ingestion."""

    enabled: bool = True
    infer_replicas: int = 2
    ingest_replicas: int = 1
    micro_batch_size: int = MICRO_BATCH_SIZE
    """Most requests an inference worker sends to TF Serving in one call (its Kafka micro-batch)."""
    micro_batch_wait_ms: int = MICRO_BATCH_WAIT_MS
    """Longest wait, in milliseconds, for an inference worker's micro-batch to fill."""
    shard_size: int = DEFAULT_SHARD_SIZE
    """Records per shard that streaming ingestion writes (stream-ingest's own default)."""
    ingest_output: str = ""
    """Shard directory that ingestion writes (default: the dataset's shards on the cluster's HDFS)."""
    resources: Resources = Resources(cpu="1", memory="1Gi")
    kafka: KafkaClient = KafkaClient()


@dataclasses.dataclass(frozen=True)
class TrainingJob:
    """A distributed training run: a TFJob or a PyTorchJob of ``python -m workloads train`` (each trial
    of the workflow is one, ``infra.specs.workflow``; the stack declares none itself)."""

    name: str
    framework: str
    """``tensorflow`` or ``pytorch``."""
    strategy: str
    """``multi-worker-mirrored`` or ``parameter-server`` (tensorflow), ``ddp`` (pytorch)."""
    model: str = "plain"
    """A variant of the model registry, ``workloads.models.model_names()``."""
    workers: int = 2
    """Every process of the job; ``ddp``: the most an elastic job runs (its pods, one worker each)."""
    min_workers: int = 0
    """``ddp`` only: the fewest workers the elastic job goes on with when pods are lost (1 to ``workers``);
    0 = all of them (a fixed-size job). ``train --min-workers`` locally."""
    max_restarts: int = 3
    """``ddp`` only: worker-group restarts per elastic agent (torchrun's); ``train --max-restarts`` locally,
    with the same default."""
    parameter_servers: int = 1
    """``parameter-server`` only."""
    gpus_per_worker: int = 0
    epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 0.001
    seed: int = 42
    checkpoint_every: int = 100
    data: str = ""
    """Shard directory (default: the dataset's shards on the cluster's HDFS)."""
    checkpoint_dir: str = ""
    """Default: ``/mlstack/models/runs/<name>/checkpoints`` on HDFS."""
    output: str = ""
    """Default: ``/mlstack/models/runs/<name>/model`` on HDFS."""
    restart_policy: str = "ExitCode"
    """The operator restarts only exit codes docs/interfaces.md calls retryable (128-255: a lost peer,
    preemption); 1-127 are permanent (bad data, a failed checkpoint write) and fail the job at once."""
    backoff_limit: int = 3
    ttl_seconds_after_finished: int | None = None
    """None: the job lives as long as what owns it (a trial: its Workflow, whose ttlStrategy removes both)."""
    resources: Resources = Resources(cpu="4", memory="8Gi")


@dataclasses.dataclass(frozen=True)
class SparkIngest:
    """The workflow's ingest step on Spark (``infra.specs.spark``): the step's pod is the driver, in client
    mode, and starts ``executors`` executor pods of ``executor_resources`` each in the training namespace."""

    executors: int = 2
    """Executor pods of one ingest."""
    executor_resources: Resources = Resources(cpu="1", memory="2Gi")
    """CPU (whole cores: Spark's task slots) and memory of each executor pod; the JVM heap is what remains
    of the memory after Spark's overhead."""


@dataclasses.dataclass(frozen=True)
class Retraining:
    """Periodic retraining: a CronWorkflow that submits ``submission`` on ``schedule``."""

    schedule: str
    """A cron schedule (five fields, or a macro such as ``@weekly``), in the controller's time zone (UTC)."""
    submission: Submission
    """What each run submits: the same arguments ``python -m workloads workflow`` sends for the grid."""


@dataclasses.dataclass(frozen=True)
class Workflow:
    """How the book's system runs as an Argo workflow (docs/workflow.md); the defaults are the
    templates' own (``infra.specs.workflow.WorkflowDefaults``)."""

    parallelism: int
    """Trials training at once when a submission does not say."""
    memo_max_age: str
    """How long a memoized trial or selection is reused (a Go duration such as ``720h``)."""
    step_resources: Resources
    """CPU and memory of the ingest, select, verify and record steps."""
    trial_resources: Resources
    """CPU and memory of every trial's training pods."""
    gpus_per_worker: int
    """GPUs of every trial's training pod (0 = CPU)."""
    checkpoint_every: int
    """Steps between the trials' checkpoints."""
    retrain: Retraining | None = None
    """Periodic retraining; ``None`` (the default) declares no CronWorkflow."""
    spark: SparkIngest | None = None
    """The ingest step on Spark executors; ``None`` (the default) ingests in the step's one process."""


@dataclasses.dataclass(frozen=True)
class Tracking:
    """The MLflow tracking server in the cluster (``infra.specs.tracking``): the workflow's selection and
    every trial record their runs there, and the registry holds the promoted models."""

    enabled: bool = True
    """False declares no server, namespace or database, and the workflow tracks nothing."""
    server_resources: Resources = Resources(cpu="500m", memory="1Gi")
    """CPU and memory of the ``mlflow server`` container."""
    database_resources: Resources = Resources(cpu="500m", memory="1Gi")
    """CPU and memory of the PostgreSQL container (the backend store)."""
    database_storage: str = "10Gi"
    """Size of PostgreSQL's PersistentVolumeClaim (runs, metrics, the registry)."""
    artifact_storage: str = "20Gi"
    """Size of the artifacts claim, declared only when the model store is HDFS (the server cannot write
    ``hdfs://``); an ``s3`` or ``pvc`` store holds the artifacts itself."""
    storage_class: str = ""
    """StorageClass of the claims (empty = the cluster's default, k3s's local-path)."""


@dataclasses.dataclass(frozen=True)
class Quota:
    """The most a workload namespace's pods may request together (a ResourceQuota)."""

    cpu: str
    memory: str
    gpus: int
    pods: int


@dataclasses.dataclass(frozen=True)
class NamespaceBudget:
    """A workload namespace's ResourceQuota, and the LimitRange that gives containers which declare no
    resources (a submitter's debug pod, a tool's helper) requests and limits the quota can count."""

    quota: Quota
    default_request: Resources = Resources(cpu="100m", memory="128Mi")
    default_limit: Resources = Resources(cpu="1", memory="1Gi")


# The workload namespaces' budgets when the stack file sets none: room for the example stacks' own
# workloads at their largest (serving at maxReplicas plus a rolling update's surge, every streaming
# replica, the workflow's parallel trials and their steps) with headroom; sized to the cluster by
# ``mlstack:namespaceBudgets`` (docs/infra.md).
DEFAULT_BUDGETS = {
    "training": NamespaceBudget(Quota(cpu="64", memory="256Gi", gpus=8, pods=100)),
    "serving": NamespaceBudget(Quota(cpu="32", memory="64Gi", gpus=4, pods=30)),
    "data": NamespaceBudget(Quota(cpu="16", memory="32Gi", gpus=0, pods=20)),
    "tracking": NamespaceBudget(Quota(cpu="4", memory="8Gi", gpus=0, pods=10)),
}


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
    ssh_known_hosts: str
    """Pinned SSH host keys (known_hosts text); empty: a host's key is accepted on first contact."""
    aws: AwsSettings | None
    node_pools: tuple[NodePool, ...]
    hosts: tuple[ExistingHost, ...]
    gpu_sharing: GpuSharing
    serving: Serving
    streaming: Streaming
    workflow: Workflow
    tracking: Tracking
    training_submitters: tuple[RbacSubject, ...]
    budgets: Mapping[str, NamespaceBudget]
    """Per workload namespace (``training``, ``serving``, ``data``, ``tracking``): its quota and container
    defaults."""
    has_k3s_token: bool
    has_ssh_private_key: bool

    @property
    def kubernetes_minor(self) -> str:
        match = K3S_VERSION.match(self.kubernetes_version)
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
