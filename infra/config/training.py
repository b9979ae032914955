"""The ``trainingJobs`` setting (TFJobs and PyTorchJobs of ``python -m workloads train``) and
``rbac.trainingSubmitters`` (who may submit more).

The frameworks, strategies and models a job may name are the workloads' own registries
(``workloads.training.TRAINERS``, ``workloads.models``).
"""

from __future__ import annotations

from infra.config import checks
from infra.config.fields import Fields, resources, unique
from infra.config.keys import REQUIRED
from infra.config.settings import GANG_SCHEDULERS, RbacSubject, TrainingJob
from workloads import models
from workloads.training import TRAINERS

RESTART_POLICIES = ("OnFailure", "ExitCode", "Never", "Always")


def frameworks() -> list[str]:
    return list(dict.fromkeys(framework for framework, _ in TRAINERS))


def strategies(framework: str) -> list[str]:
    return [strategy for known, strategy in TRAINERS if known == framework]


def read_training_jobs(top: Fields) -> tuple[TrainingJob, ...]:
    jobs = []
    for item in top.obj_list("trainingJobs", []):
        job = _training_job(item)
        if job.strategy != "parameter-server" and item.has("parameterServers"):
            raise item.fail("parameterServers", "applies to strategy 'parameter-server' only")
        if job.framework == "pytorch" and job.workers < 2 and job.gang_scheduler:
            raise item.fail("gangScheduler", "gang scheduling needs at least 2 workers")
        item.done()
        jobs.append(job)
    unique(top, "trainingJobs", [j.name for j in jobs])
    return tuple(jobs)


def _training_job(item: Fields) -> TrainingJob:
    framework = item.string("framework", allowed=frameworks())
    default = TrainingJob
    return TrainingJob(
        name=item.string("name", check=checks.dns_label),
        framework=framework,
        strategy=item.string("strategy", allowed=strategies(framework)),
        model=item.string("model", default.model, allowed=models.model_names()),
        workers=item.integer("workers", default.workers, minimum=1),
        parameter_servers=item.integer("parameterServers", default.parameter_servers, minimum=1),
        gpus_per_worker=item.integer("gpusPerWorker", default.gpus_per_worker, minimum=0),
        epochs=item.integer("epochs", default.epochs, minimum=1),
        batch_size=item.integer("batchSize", default.batch_size, minimum=1),
        learning_rate=item.number("learningRate", default.learning_rate, positive=True),
        seed=item.integer("seed", default.seed, minimum=0),
        checkpoint_every=item.integer("checkpointEvery", default.checkpoint_every, minimum=1),
        data=item.string("data", default.data, check=checks.storage_url),
        checkpoint_dir=item.string("checkpointDir", default.checkpoint_dir, check=checks.storage_url),
        output=item.string("output", default.output, check=checks.storage_url),
        restart_policy=item.string("restartPolicy", default.restart_policy, allowed=RESTART_POLICIES),
        backoff_limit=item.integer("backoffLimit", default.backoff_limit, minimum=0),
        ttl_seconds_after_finished=item.integer(
            "ttlSecondsAfterFinished", default.ttl_seconds_after_finished, minimum=0
        ),
        gang_scheduler=item.string("gangScheduler", default.gang_scheduler, allowed=("", *GANG_SCHEDULERS)),
        resources=resources(item, "resources", default.resources),
    )


def read_training_submitters(top: Fields) -> tuple[RbacSubject, ...]:
    obj = top.obj("rbac", {})
    subjects = []
    for item in obj.obj_list("trainingSubmitters", []):
        kind = item.string("kind", allowed=("User", "Group", "ServiceAccount"))
        subjects.append(
            RbacSubject(
                kind=kind,
                name=item.string("name"),
                namespace=item.string("namespace", REQUIRED if kind == "ServiceAccount" else ""),
            )
        )
        item.done()
    obj.done()
    return tuple(subjects)
