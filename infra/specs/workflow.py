"""The book's system as Argo WorkflowTemplates, one per framework (``workloads.workflow.argo`` is the
contract with the submissions):

    ingest -> trial x N (one TFJob or PyTorchJob per grid point; at most ``parallelism`` at once)
           -> select (fan-in over the trials that succeeded; promotes the winner atomically)
           -> verify-serving (TF Serving reports the version AVAILABLE; predictions agree)
    on exit: record-outcome (what failed and why)

Trials are memoized on content: the dataset's digest (which ingest outputs) and the grid point's key.
Ingest is not memoized: it must notice a changed source, and over the same source it writes nothing.
Neither is the selection: it evaluates the trials again (seconds) and promotes only when the winner is
not already the store's newest version (``select --reuse-promoted``), so what TF Serving serves is what
this run selected even when another grid promoted since; a memoized selection would hand the serving
check a version that may no longer be served.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from infra.config import Images, ModelSource, Resources, SparkIngest, TrainingJob
from infra.specs import data, model_store, ports, spark, tracking, training
from infra.specs.namespaces import TRAINING
from infra.specs.scheduling import BATCH_PRIORITY
from infra.specs.workload import (
    checkov_skips,
    container_security_context,
    image_checkov_skips,
    metadata,
    pod_security_context,
    pull_policy,
    resources,
    scratch_volumes,
    workload_env,
)
from workloads.serving import tfs_config
from workloads.workflow import argo

SERVICE_ACCOUNT = "workflow-runner"
TRIAL_CACHE = "trial-memo"
WORKFLOW_LABEL = "workflows.argoproj.io/workflow"
TRIAL_KEY_LABEL = "mlstack.io/trial-key"
DAG = "system"


@dataclasses.dataclass(frozen=True)
class WorkflowDefaults:
    """What the stack gives the templates: the parameters' defaults and how steps and trials run."""

    dataset: str = data.DATASET_SHARDS
    runs: str = f"{data.MODELS}/runs"
    model_source: ModelSource = dataclasses.field(
        default_factory=lambda: ModelSource(kind="hdfs", base=data.MODELS)
    )
    """The store promotion writes to (``serving.modelSource``): how steps and trials reach it."""
    serving_url: str = f"http://tf-serving.mlstack-serving.svc.cluster.local:{ports.TFS_REST}"
    parallelism: int = 2
    memo_max_age: str = "720h"
    step_resources: Resources = dataclasses.field(default_factory=lambda: Resources(cpu="1", memory="2Gi"))
    trial_resources: Resources = dataclasses.field(default_factory=lambda: Resources(cpu="2", memory="4Gi"))
    gpus_per_worker: int = 0
    checkpoint_every: int = 100
    tracking_uri: str = ""
    """The MLflow tracking server the selection and the trials record to (empty = they track nothing)."""
    spark: SparkIngest | None = None
    """The ingest step on Spark executors (``infra.specs.spark``); None = one process."""


def parameter(name: str) -> str:
    return f"{{{{workflow.parameters.{name}}}}}"


def _input(name: str) -> str:
    return f"{{{{inputs.parameters.{name}}}}}"


def workflow_templates(images: Images, defaults: WorkflowDefaults) -> list[dict[str, Any]]:
    return [workflow_template(framework, images, defaults) for framework in argo.FRAMEWORKS]


def workflow_template(framework: str, images: Images, defaults: WorkflowDefaults) -> dict[str, Any]:
    """The WorkflowTemplate of ``framework``'s trials."""
    volumes, _ = scratch_volumes()
    volumes += model_store.writer_volumes(defaults.model_source)[0]
    return {
        "apiVersion": argo.API_VERSION,
        "kind": "WorkflowTemplate",
        "metadata": metadata(argo.template_name(framework), TRAINING, "workflow"),
        "spec": {
            "entrypoint": DAG,
            "onExit": "record-outcome",
            "serviceAccountName": SERVICE_ACCOUNT,
            # The steps are batch work; the trials' pods carry the training class (their job's template).
            "podPriorityClassName": BATCH_PRIORITY.name,
            "parallelism": defaults.parallelism,
            "arguments": {"parameters": _parameters(defaults)},
            "securityContext": pod_security_context(),
            "volumes": volumes,
            # Keep a failed run's pods for their logs; the run itself goes after a week.
            "podGC": {"strategy": "OnPodSuccess"},
            "ttlStrategy": {"secondsAfterSuccess": 86400, "secondsAfterFailure": 7 * 86400},
            "templates": [
                _dag(),
                _ingest(images, defaults),
                _trial(framework, images, defaults),
                _select(images, defaults),
                _verify_serving(images, defaults),
                _record_outcome(images, defaults),
            ],
        },
    }


def _parameters(defaults: WorkflowDefaults) -> list[dict[str, Any]]:
    values = {
        "source": "",
        "synthetic-train": "60000",
        "synthetic-test": "10000",
        "shard-size": "10000",
        "dataset": defaults.dataset,
        "runs": defaults.runs,
        "model-store": model_store.store_url(defaults.model_source),
        "model-name": tfs_config.MODEL_NAME,
        "serving-url": defaults.serving_url,
        "smoke-records": "200",
        "min-trials": "1",
    }
    # grid has no default: a submission gives it (the `workflow` command).
    return [
        {"name": name, **({"value": values[name]} if name in values else {}), "description": text}
        for name, text in argo.PARAMETERS.items()
    ]


def _dag() -> dict[str, Any]:
    digest = "{{tasks.ingest.outputs.parameters.dataset-digest}}"
    item = [{"name": field, "value": f"{{{{item.{field}}}}}"} for field in argo.ITEM_FIELDS]
    return {
        "name": DAG,
        "dag": {
            # A failed trial does not stop the others; the selection runs on `trial.Failed` too and decides
            # whether enough succeeded (Argo refuses continueOn beside depends; a failure some task depends on
            # does not fail the DAG once that task completes).
            "failFast": False,
            "tasks": [
                {"name": "ingest", "template": "ingest"},
                {
                    "name": "trial",
                    "template": "trial",
                    "depends": "ingest",
                    "withParam": parameter("grid"),
                    "arguments": {"parameters": [*item, {"name": "dataset-digest", "value": digest}]},
                },
                {"name": "select", "template": "select", "depends": "trial || trial.Failed"},
                {
                    "name": "verify-serving",
                    "template": "verify-serving",
                    "depends": "select",
                    "arguments": {
                        "parameters": [
                            {"name": "promoted", "value": "{{tasks.select.outputs.parameters.promoted}}"}
                        ]
                    },
                },
            ],
        },
    }


def _container(name: str, images: Images, defaults: WorkflowDefaults, args: list[str]) -> dict[str, Any]:
    """A step of ``python -m workloads <name>`` in the workloads image, as every mlstack pod runs."""
    image = images.workloads()
    _, mounts = scratch_volumes()
    mounts += model_store.writer_volumes(defaults.model_source)[1]
    return {
        "image": image,
        "imagePullPolicy": pull_policy(image),
        "command": ["python", "-m", "workloads", name],
        "args": args,
        # Caches go to the writable /tmp (the root filesystem is read-only); the model store's access.
        "env": workload_env() + model_store.env(defaults.model_source),
        "resources": resources(defaults.step_resources.cpu, defaults.step_resources.memory),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    }


def _step_metadata(images: Images, image: str | None = None) -> dict[str, Any]:
    """A step's annotations; ``image``: the step's, when not the workloads image."""
    skips = {
        "CKV_K8S_8": "a batch step that runs to completion: Argo retries and times it, no liveness probe",
        "CKV_K8S_9": "a batch step takes no traffic: no readiness probe",
        **image_checkov_skips(image or images.workloads()),
    }
    return {"annotations": checkov_skips(skips)}


def _ingest(images: Images, defaults: WorkflowDefaults) -> dict[str, Any]:
    args = [
        "--output", parameter("dataset"),
        f"--data={parameter('source')}",
        "--synthetic-train", parameter("synthetic-train"),
        "--synthetic-test", parameter("synthetic-test"),
        "--shard-size", parameter("shard-size"),
        "--digest-output", argo.DATASET_DIGEST_FILE,
    ]  # fmt: skip
    template = {
        "name": "ingest",
        "metadata": _step_metadata(images),
        "container": _container("ingest", images, defaults, args),
        "outputs": {
            "parameters": [{"name": "dataset-digest", "valueFrom": {"path": argo.DATASET_DIGEST_FILE}}]
        },
    }
    return template if defaults.spark is None else _on_spark(template, images, defaults.spark)


def _on_spark(template: dict[str, Any], images: Images, settings: SparkIngest) -> dict[str, Any]:
    """The ingest step as Spark's driver: its image, account, flags, address and the executor template."""
    container, image = template["container"], images.spark()
    volume, mount = spark.template_volume()
    container.update(image=image, imagePullPolicy=pull_policy(image))
    container["args"] += spark.driver_args(settings, images)
    container["env"] += spark.driver_env()
    container["volumeMounts"].append(mount)
    return {
        **template,
        "metadata": {**_step_metadata(images, image), "labels": {spark.ROLE_LABEL: "driver"}},
        "serviceAccountName": spark.DRIVER_ACCOUNT,
        "volumes": [volume],
    }


def _trial(framework: str, images: Images, defaults: WorkflowDefaults) -> dict[str, Any]:
    kind, strategy = argo.FRAMEWORKS[framework]
    # Both jobs are Workers only. The operator calls an elastic PyTorchJob done once any worker is (its
    # agents finish together, and the job may have gone on with fewer); a TFJob once every worker is.
    done = "> 0" if strategy == "ddp" else f"= {_input('workers')}"
    return {
        "name": "trial",
        "inputs": {"parameters": [{"name": n} for n in (*argo.ITEM_FIELDS, "dataset-digest")]},
        "memoize": {
            "key": f"{_input('dataset-digest')}-{_input('key')}",
            "maxAge": defaults.memo_max_age,
            "cache": {"configMap": {"name": TRIAL_CACHE}},
        },
        "resource": {
            "action": "create",
            # The job goes with the workflow that made it.
            "setOwnerReference": True,
            "successCondition": f"status.replicaStatuses.Worker.succeeded {done}",
            "failureCondition": "status.replicaStatuses.Worker.failed > 0",
            "manifest": trial_manifest(framework, images, defaults),
        },
        "metadata": {"labels": {"mlstack.io/training-kind": kind}},
    }


# Fields of the trial's job that are whole numbers: the manifest leaves their placeholders unquoted.
_NUMERIC_INPUTS = ("workers", "min-workers", "max-restarts")


def trial_manifest(framework: str, images: Images, defaults: WorkflowDefaults) -> str:
    """The TFJob or PyTorchJob of one grid point (``{{inputs.parameters.*}}`` filled in by Argo), as JSON."""
    _, strategy = argo.FRAMEWORKS[framework]
    trial_dir = argo.trial_dir(parameter("runs"), _input("key"))
    job = TrainingJob(
        name=_input("name"),
        framework=framework,
        strategy=strategy,
        model=_input("model"),
        workers=_input("workers"),  # type: ignore[arg-type]
        min_workers=_input("min-workers"),  # type: ignore[arg-type]
        max_restarts=_input("max-restarts"),  # type: ignore[arg-type]
        gpus_per_worker=defaults.gpus_per_worker,
        epochs=_input("epochs"),  # type: ignore[arg-type]
        batch_size=_input("batch-size"),  # type: ignore[arg-type]
        learning_rate=_input("learning-rate"),  # type: ignore[arg-type]
        seed=_input("seed"),  # type: ignore[arg-type]
        checkpoint_every=defaults.checkpoint_every,
        data=parameter("dataset"),
        checkpoint_dir=f"{trial_dir}/checkpoints",
        output=f"{trial_dir}/model",
        resources=defaults.trial_resources,
    )
    job_object = training.training_job(job, images)
    job_object["metadata"] = {
        "generateName": "trial-",
        "namespace": TRAINING,
        "labels": {**job_object["metadata"]["labels"], TRIAL_KEY_LABEL: _input("key")},
    }
    for spec in job_object["spec"][training.FRAMEWORKS[framework].replica_specs].values():
        # `argo logs` finds the trial's pods by the workflow's label.
        spec["template"]["metadata"]["labels"][WORKFLOW_LABEL] = "{{workflow.name}}"
        # Trials read and write wherever the submission points them, the model store's S3 included.
        volumes, mounts = model_store.writer_volumes(defaults.model_source)
        spec["template"]["spec"]["volumes"] += volumes
        for container in spec["template"]["spec"]["containers"]:
            container["env"] += model_store.env(defaults.model_source) + tracking_env(defaults)
            container["volumeMounts"] += mounts
    text = json.dumps(job_object, indent=1)
    for name in _NUMERIC_INPUTS:
        text = text.replace(json.dumps(_input(name)), _input(name))
    return text


def tracking_args(defaults: WorkflowDefaults) -> list[str]:
    """A step's ``--tracking-uri``, when the stack runs a tracking server."""
    return [tracking.URI_FLAG, defaults.tracking_uri] if defaults.tracking_uri else []


def tracking_env(defaults: WorkflowDefaults) -> list[dict[str, str]]:
    """A trial's ``MLFLOW_TRACKING_URI`` (its chief opens the trial's run), when the stack runs a server."""
    return [{"name": tracking.URI_VARIABLE, "value": defaults.tracking_uri}] if defaults.tracking_uri else []


def _select(images: Images, defaults: WorkflowDefaults) -> dict[str, Any]:
    args = [
        "--grid", parameter("grid"),
        "--runs", parameter("runs"),
        "--min-candidates", parameter("min-trials"),
        "--data", parameter("dataset"),
        "--results", f"{parameter('runs')}/selections/{{{{workflow.name}}}}.json",
        "--model-base-path", parameter("model-store"),
        "--model-name", parameter("model-name"),
        "--reuse-promoted",
        "--promoted-output", argo.PROMOTED_FILE,
        *tracking_args(defaults),
    ]  # fmt: skip
    return {
        "name": "select",
        "metadata": _step_metadata(images),
        "container": _container("select", images, defaults, args),
        "outputs": {"parameters": [{"name": "promoted", "valueFrom": {"path": argo.PROMOTED_FILE}}]},
    }


def _verify_serving(images: Images, defaults: WorkflowDefaults) -> dict[str, Any]:
    args = [
        "--server-url", parameter("serving-url"),
        "--model-name", parameter("model-name"),
        "--promoted", _input("promoted"),
        "--data", parameter("dataset"),
        "--records", parameter("smoke-records"),
    ]  # fmt: skip
    return {
        "name": "verify-serving",
        "inputs": {"parameters": [{"name": "promoted"}]},
        "metadata": _step_metadata(images),
        "container": _container("verify-serving", images, defaults, args),
    }


def _record_outcome(images: Images, defaults: WorkflowDefaults) -> dict[str, Any]:
    args = [
        "--workflow", "{{workflow.name}}",
        "--status", "{{workflow.status}}",
        "--failures", "{{workflow.failures}}",
        "--output", f"{parameter('runs')}/outcomes/{{{{workflow.name}}}}.json",
    ]  # fmt: skip
    return {
        "name": "record-outcome",
        "metadata": _step_metadata(images),
        "container": _container("record-outcome", images, defaults, args),
    }
