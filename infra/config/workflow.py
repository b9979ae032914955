"""The ``workflow`` setting: how the book's system runs as an Argo workflow, and its periodic retraining.

The defaults are the templates' own (``infra.specs.workflow.WorkflowDefaults``). ``retrain`` takes the
flags of ``python -m workloads workflow`` as camelCase keys, with that command's defaults and checks,
so the CronWorkflow submits exactly what the command would.
"""

from __future__ import annotations

from infra.config import checks
from infra.config.fields import Fields, resources
from infra.config.settings import Retraining, SparkIngest, Workflow
from workloads.commands.workflow import Config as WorkflowCommand
from workloads.core.settings import ConfigError as CommandError
from workloads.workflow import argo

# The book's gang scheduling needs a scheduler the stack does not install; a named one would leave every
# trial's pods Pending.
NO_GANG_SCHEDULER = (
    "no gang scheduler is installed by this stack (Volcano, scheduler-plugins), so trials naming one would "
    "stay Pending; remove the key: PyTorch trials are elastic (minWorkersPerTrial) and the training quota "
    "(namespaceBudgets.training) bounds what waiting workers hold (docs/infra.md)"
)


def read_workflow(top: Fields) -> Workflow:
    # infra.specs.workflow builds on infra.config, so it is imported once the package is loaded.
    from infra.specs.workflow import WorkflowDefaults

    obj = top.obj("workflow", {})
    if obj.has("gangScheduler"):
        raise obj.fail("gangScheduler", NO_GANG_SCHEDULER)
    default = WorkflowDefaults()
    parallelism = obj.integer("parallelism", default.parallelism, minimum=1)
    workflow = Workflow(
        parallelism=parallelism,
        memo_max_age=obj.string("memoMaxAge", default.memo_max_age, check=checks.duration),
        step_resources=resources(obj, "stepResources", default.step_resources),
        trial_resources=resources(obj, "trialResources", default.trial_resources),
        gpus_per_worker=obj.integer("gpusPerWorker", default.gpus_per_worker, minimum=0),
        checkpoint_every=obj.integer("checkpointEvery", default.checkpoint_every, minimum=1),
        retrain=_retraining(obj, parallelism),
        spark=_spark(obj),
    )
    obj.done()
    return workflow


def _spark(obj: Fields) -> SparkIngest | None:
    """``workflow.spark``: the ingest step on Spark executors (absent = one process)."""
    if not obj.has("spark"):
        obj.skip("spark")
        return None
    fields = obj.obj("spark")
    default = SparkIngest()
    spark = SparkIngest(
        executors=fields.integer("executors", default.executors, minimum=1),
        executor_resources=resources(fields, "executorResources", default.executor_resources),
    )
    fields.done()
    cores = checks.amount(spark.executor_resources.cpu)
    if cores < 1 or cores != int(cores):
        raise fields.fail(
            "executorResources",
            f"cpu {spark.executor_resources.cpu!r} must be whole cores (1, 2, ...): they are the executor's "
            "task slots",
        )
    return spark


def _retraining(obj: Fields, parallelism: int) -> Retraining | None:
    if not obj.has("retrain"):
        obj.skip("retrain")
        return None
    fields = obj.obj("retrain")
    command = WorkflowCommand  # its fields' defaults are the command's defaults
    flags = {
        "framework": fields.string("framework", command.framework, allowed=tuple(argo.FRAMEWORKS)),
        "models": fields.strings("models", list(command.models)),
        "learning_rates": fields.numbers("learningRates", list(command.learning_rates)),
        "batch_sizes": fields.integers("batchSizes", list(command.batch_sizes)),
        "epochs": fields.integer("epochs", command.epochs),
        "workers_per_trial": fields.integer("workersPerTrial", command.workers_per_trial),
        "min_workers_per_trial": fields.integer("minWorkersPerTrial", command.min_workers_per_trial),
        "max_restarts": fields.integer("maxRestarts", command.max_restarts),
        "min_trials": fields.integer("minTrials", command.min_trials),
    }
    schedule = fields.string("schedule", check=checks.cron_schedule)
    fields.done()
    try:
        submission = WorkflowCommand(**flags, parallelism=parallelism).submission()
    except CommandError as error:
        raise fields.fail(_key(error.field), error.message) from error
    return Retraining(schedule=schedule, submission=submission)


def _key(flag: str) -> str:
    """The camelCase key of a ``workflow`` command flag: ``--workers-per-trial`` -> ``workersPerTrial``."""
    first, *rest = flag.lstrip("-").split("-")
    return first + "".join(word.title() for word in rest)
