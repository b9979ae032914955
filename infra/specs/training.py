"""Training jobs: one builder for TFJob and PyTorchJob, whose container runs ``python -m workloads train``
with the flags of docs/interfaces.md (each trial of the workflow is one); plus the metrics Service,
ServiceMonitor, service account, the submitters' RBAC and the network policies of the training namespace.

A PyTorchJob (``ddp``) is elastic, for the training operator v1.9: Worker replicas only (no Master), an
``elasticPolicy`` from the job's ``workers``, ``min_workers`` and ``max_restarts``, and each pod runs a
torchrun elastic agent over the trainer (``workloads.training.launcher.agent_command``) that reads the
``PET_*`` variables the operator injects (``PET_NNODES`` MIN:MAX, a c10d rendezvous hosted by
``<job>-worker-0`` on the job's port, ``PET_MAX_RESTARTS``): the command and settings the local launcher
gives its agents (``train --local-workers N --min-workers M``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from infra.config import Images, RbacSubject, TrainingJob
from infra.specs import data, ports
from infra.specs.monitoring import service_monitor
from infra.specs.namespaces import TRAINING, egress_https, egress_to_nodes
from infra.specs.scheduling import TRAINING_PRIORITY
from infra.specs.workload import (
    checkov_skips,
    container_security_context,
    gpu_pod_fields,
    image_checkov_skips,
    labels,
    metadata,
    pod_security_context,
    pull_policy,
    resources,
    scratch_volumes,
    workload_env,
)
from workloads.training import launcher
from workloads.workflow import argo

SERVICE_ACCOUNT = "training-worker"
JOB_LABEL = "mlstack.io/training-job"
METRICS_LABEL = "mlstack.io/metrics"
SUBMITTER_ROLE = "training-job-submitter"
METRICS_SERVICE = "training-metrics"
API_GROUP = "kubeflow.org"


@dataclasses.dataclass(frozen=True)
class Framework:
    kind: str
    replica_specs: str
    container: str
    port_name: str
    port: int


FRAMEWORKS = {
    "tensorflow": Framework("TFJob", "tfReplicaSpecs", "tensorflow", "tfjob-port", 2222),
    "pytorch": Framework("PyTorchJob", "pytorchReplicaSpecs", "pytorch", "pytorchjob-port", 23456),
}
# The training jobs' resource names (tfjobs, pytorchjobs) in RBAC rules.
JOB_RESOURCES = [f"{framework.kind.lower()}s" for framework in FRAMEWORKS.values()]


def train_args(job: TrainingJob) -> list[str]:
    """The ``python -m workloads train`` flags (every one exists in ``workloads.cli.build_parser()``)."""
    run_dir = f"{data.MODELS}/runs/{job.name}"
    return [
        "--framework", job.framework,
        "--strategy", job.strategy,
        "--model", job.model,
        "--data", job.data or data.DATASET_SHARDS,
        "--epochs", str(job.epochs),
        "--batch-size", str(job.batch_size),
        "--learning-rate", str(job.learning_rate),
        "--seed", str(job.seed),
        "--checkpoint-dir", job.checkpoint_dir or f"{run_dir}/checkpoints",
        "--checkpoint-every", str(job.checkpoint_every),
        "--output", job.output or f"{run_dir}/model",
        "--metrics-port", str(ports.TRAINING_METRICS),
        "--run-name", job.name,
        "--log-format", "json",
    ]  # fmt: skip


def replicas(job: TrainingJob) -> dict[str, tuple[int, bool]]:
    """Replica type -> (count, gets GPUs) for the job's strategy."""
    if job.strategy == "multi-worker-mirrored":
        return {"Worker": (job.workers, True)}
    if job.strategy == "parameter-server":
        # The chief coordinates and parameter servers hold variables: both on CPU; workers compute.
        return {"Chief": (1, False), "Worker": (job.workers, True), "PS": (job.parameter_servers, False)}
    if job.strategy == "ddp":
        # Elastic: every pod is an agent of one worker; the rendezvous, not a Master, ranks them.
        return {"Worker": (job.workers, True)}
    raise ValueError(f"job {job.name}: unknown strategy {job.strategy!r}")


def training_job(job: TrainingJob, images: Images) -> dict[str, Any]:
    """The TFJob or PyTorchJob of ``job``."""
    framework = FRAMEWORKS[job.framework]
    layout = replicas(job)
    specs = {
        replica_type: {
            "replicas": count,
            "restartPolicy": job.restart_policy,
            "template": _pod_template(job, framework, images, gpus=job.gpus_per_worker if gets_gpus else 0),
        }
        for replica_type, (count, gets_gpus) in layout.items()
    }
    run_policy: dict[str, Any] = {
        # Once the job ends, pods still running (parameter servers, workers of a failed job) are deleted and
        # their resources freed; finished pods keep their logs until the job itself goes.
        "cleanPodPolicy": "Running",
        "backoffLimit": job.backoff_limit,
    }
    if job.ttl_seconds_after_finished is not None:
        run_policy["ttlSecondsAfterFinished"] = job.ttl_seconds_after_finished
    spec: dict[str, Any] = {"runPolicy": run_policy, framework.replica_specs: specs}
    if is_elastic(job):
        # One worker per pod (the operator's default, "auto", would start one per CPU or GPU).
        spec.update(elasticPolicy=elastic_policy(job, framework), nprocPerNode="1")
    return {
        "apiVersion": f"{API_GROUP}/v1",
        "kind": framework.kind,
        "metadata": metadata(job.name, TRAINING, "training"),
        "spec": spec,
    }


def is_elastic(job: TrainingJob) -> bool:
    return job.strategy == "ddp"


def elastic_policy(job: TrainingJob, framework: Framework) -> dict[str, Any]:
    """The PyTorchJob's ``elasticPolicy``: between ``min_workers`` (0: all) and ``workers`` pods, a c10d
    rendezvous on the job's port of worker 0, ``max_restarts`` worker-group restarts per agent."""
    minimum = job.min_workers or job.workers
    if isinstance(minimum, int) and not 1 <= minimum <= job.workers:  # a trial's are placeholders
        raise ValueError(
            f"job {job.name}: min_workers is {job.min_workers}; give 1 to workers ({job.workers}), "
            "or 0 for a fixed-size job"
        )
    return {
        "minReplicas": minimum,
        "maxReplicas": job.workers,
        "rdzvBackend": launcher.RDZV_BACKEND,
        "rdzvPort": framework.port,
        "rdzvId": job.name,
        "maxRestarts": job.max_restarts,
    }


def _command(job: TrainingJob) -> list[str]:
    program = ["python", "-m", "workloads", "train"]
    return launcher.agent_command(program) if is_elastic(job) else program


def _pod_template(job: TrainingJob, framework: Framework, images: Images, gpus: int) -> dict[str, Any]:
    image = images.training(gpu=gpus > 0)
    volumes, mounts = scratch_volumes(memory_backed_shm=True)
    container = {
        "name": framework.container,
        "image": image,
        "imagePullPolicy": pull_policy(image),
        "command": _command(job),
        "args": train_args(job),
        "ports": [
            {"name": framework.port_name, "containerPort": framework.port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": ports.TRAINING_METRICS, "protocol": "TCP"},
        ],
        # Caches (Keras, torch) go to the writable /tmp; the root filesystem is read-only.
        "env": workload_env() + _agent_env(job),
        "resources": resources(job.resources.cpu, job.resources.memory, gpus=gpus),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    }
    skips = {
        "CKV_K8S_8": "batch pods: the operator restarts failed workers (restartPolicy) and a stuck run shows in "
        "the step-rate alert; a liveness probe would kill workers during long data loading",
        "CKV_K8S_9": "batch pods: peers find each other through the operator's headless Services, which a "
        "readiness gate would hide until the process is up",
        **image_checkov_skips(image),
    }
    spec: dict[str, Any] = {
        "serviceAccountName": SERVICE_ACCOUNT,
        # Serving may preempt a trial, which resumes from its checkpoint; a trial may preempt batch steps.
        "priorityClassName": TRAINING_PRIORITY.name,
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": volumes,
    }
    if gpus:
        spec.update(gpu_pod_fields())
    return {
        "metadata": {
            "labels": {**labels(job.name, "training"), JOB_LABEL: job.name, METRICS_LABEL: "training"},
            "annotations": checkov_skips(skips),
        },
        "spec": spec,
    }


def _agent_env(job: TrainingJob) -> list[dict[str, str]]:
    """An elastic agent's own settings beside the operator's ``PET_*`` (the local agents' too)."""
    if not is_elastic(job):
        return []
    return [{"name": name, "value": value} for name, value in launcher.AGENT_ENVIRONMENT.items()]


def namespace_objects(node_cidr: str, submitters: Sequence[RbacSubject]) -> list[dict[str, Any]]:
    """What every training job shares (service account, metrics Service and ServiceMonitor, policies) and
    the submitters' Role."""
    items = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": metadata(SERVICE_ACCOUNT, TRAINING, "training"),
            "automountServiceAccountToken": False,
        },
        _metrics_service(),
        service_monitor(
            "training-workers",
            TRAINING,
            metadata(METRICS_SERVICE, TRAINING, "training")["labels"],
            port="metrics",
            interval="15s",
            target_labels=(
                JOB_LABEL,
                "training.kubeflow.org/replica-type",
                "training.kubeflow.org/replica-index",
            ),
        ),
        _submitter_role(),
        egress_to_nodes(
            "allow-hdfs", TRAINING, node_cidr, (ports.HDFS_NAMENODE_RPC, ports.HDFS_DATANODE_DATA)
        ),
        egress_https("allow-object-storage", TRAINING),
    ]
    if submitters:
        items.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": metadata(SUBMITTER_ROLE, TRAINING, "training"),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SUBMITTER_ROLE},
                "subjects": [_subject(s) for s in submitters],
            }
        )
    return items


def _metrics_service() -> dict[str, Any]:
    """A headless Service over every training pod's metrics port, for the ServiceMonitor to find them."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(METRICS_SERVICE, TRAINING, "training"),
        "spec": {
            "clusterIP": "None",
            "selector": {METRICS_LABEL: "training"},
            "ports": [
                {
                    "name": "metrics",
                    "port": ports.TRAINING_METRICS,
                    "targetPort": "metrics",
                    "protocol": "TCP",
                }
            ],
        },
    }


def _submitter_role() -> dict[str, Any]:
    """Submit Workflows from the stack's templates and follow them; read the trials, their pods and logs.

    The Workflows' steps run as the workflow runner (``infra.specs.argo``), not as the submitter."""
    argo_group = argo.API_VERSION.split("/")[0]
    read = ["get", "list", "watch"]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(SUBMITTER_ROLE, TRAINING, "training"),
        "rules": [
            {"apiGroups": [argo_group], "resources": ["workflows"], "verbs": ["create", *read]},
            {"apiGroups": [argo_group], "resources": ["workflowtemplates"], "verbs": ["get", "list"]},
            {"apiGroups": [API_GROUP], "resources": JOB_RESOURCES, "verbs": read},
            {"apiGroups": [""], "resources": ["pods", "pods/log", "events"], "verbs": read},
        ],
    }


def _subject(subject: RbacSubject) -> dict[str, str]:
    if subject.kind == "ServiceAccount":
        return {"kind": "ServiceAccount", "name": subject.name, "namespace": subject.namespace}
    return {"kind": subject.kind, "name": subject.name, "apiGroup": "rbac.authorization.k8s.io"}
