"""The book's system as the stack declares it: the WorkflowTemplates (``infra.specs.workflow``) with the
stack's settings as their defaults, and the CronWorkflow that retrains on a schedule (only with
``workflow.retrain``).

The templates' dataset and runs are the cluster's HDFS paths (``infra.specs.data``), their model store
is where TF Serving reads models (``serving.modelSource``), their serving URL TF Serving's Service, their
tracking URI the stack's MLflow server (``tracking``; none when it is off). With ``workflow.spark`` the
ingest step is a Spark driver, and its account and executor pod template are declared too.
"""

from __future__ import annotations

from typing import Any

from infra.config import Images, Retraining, Serving, Tracking, Workflow
from infra.specs import serving as serving_specs
from infra.specs import spark, tracking
from infra.specs.namespaces import TRAINING
from infra.specs.workflow import WorkflowDefaults, workflow_templates
from infra.specs.workload import metadata
from workloads.workflow import argo

RETRAIN = "retrain"


def defaults(settings: Workflow, serving: Serving, tracked: Tracking) -> WorkflowDefaults:
    """The templates' defaults from the stack's ``workflow``, ``serving`` and ``tracking`` settings."""
    return WorkflowDefaults(
        tracking_uri=tracking.URL if tracked.enabled else "",
        model_source=serving.model_source,
        serving_url=serving_specs.REST_URL,
        parallelism=settings.parallelism,
        memo_max_age=settings.memo_max_age,
        step_resources=settings.step_resources,
        trial_resources=settings.trial_resources,
        gpus_per_worker=settings.gpus_per_worker,
        checkpoint_every=settings.checkpoint_every,
        spark=settings.spark,
    )


def objects(settings: Workflow, serving: Serving, tracked: Tracking, images: Images) -> list[dict[str, Any]]:
    """One WorkflowTemplate per framework, and the retraining CronWorkflow when one is configured."""
    items = workflow_templates(images, defaults(settings, serving, tracked))
    if settings.spark is not None:
        items += spark.objects(serving.model_source)
    if settings.retrain is not None:
        items.append(cron_workflow(settings.retrain))
    return items


def cron_workflow(retraining: Retraining) -> dict[str, Any]:
    """Submits what ``python -m workloads workflow`` would for the grid, on schedule, one run at a time."""
    return {
        "apiVersion": argo.API_VERSION,
        "kind": "CronWorkflow",
        "metadata": metadata(RETRAIN, TRAINING, "workflow"),
        "spec": {
            "schedules": [retraining.schedule],
            # A run still going when the next is due (a slow grid) is not joined by a second one.
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "workflowSpec": retraining.submission.workflow(TRAINING)["spec"],
        },
    }
