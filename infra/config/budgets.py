"""The ``namespaceBudgets`` setting: each workload namespace's ResourceQuota and container defaults, and
the check that the stack's own workloads fit in them (a quota too small for them would refuse their pods
at admission, long after ``pulumi up`` said all was well)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from infra.config import checks
from infra.config.fields import Fields, resources
from infra.config.keys import NAMESPACE, ConfigError
from infra.config.settings import (
    DEFAULT_BUDGETS,
    MIRROR_RESOURCES,
    SERVING_MAX_SURGE,
    NamespaceBudget,
    Quota,
    Resources,
    StackConfig,
)

KEY = "namespaceBudgets"


def read_budgets(top: Fields) -> dict[str, NamespaceBudget]:
    """Each namespace's budget: what the stack file sets, the rest from ``DEFAULT_BUDGETS``."""
    obj = top.obj(KEY, {})
    budgets = {name: _budget(obj, name, default) for name, default in DEFAULT_BUDGETS.items()}
    obj.done()
    return budgets


def _budget(obj: Fields, name: str, default: NamespaceBudget) -> NamespaceBudget:
    if not obj.has(name):
        obj.skip(name)
        return default
    fields = obj.obj(name)
    quota = _quota(fields, default.quota)
    budget = NamespaceBudget(
        quota=quota,
        default_request=resources(fields, "defaultRequest", default.default_request),
        default_limit=resources(fields, "defaultLimit", default.default_limit),
    )
    fields.done()
    for kind in ("cpu", "memory"):
        request, limit = getattr(budget.default_request, kind), getattr(budget.default_limit, kind)
        if checks.amount(request) > checks.amount(limit):
            raise fields.fail(
                f"defaultRequest.{kind}", f"{request} is more than defaultLimit.{kind} ({limit}); lower it"
            )
    return budget


def _quota(fields: Fields, default: Quota) -> Quota:
    if not fields.has("quota"):
        fields.skip("quota")
        return default
    obj = fields.obj("quota")
    quota = Quota(
        cpu=obj.string("cpu", default.cpu, check=checks.quantity),
        memory=obj.string("memory", default.memory, check=checks.quantity),
        gpus=obj.integer("gpus", default.gpus, minimum=0),
        pods=obj.integer("pods", default.pods, minimum=1),
    )
    obj.done()
    return quota


def check_budgets(config: StackConfig) -> None:
    """The stack's own long-running pods, at their most, fit their namespaces' quotas."""
    serving = config.serving
    containers = [serving.resources]
    if serving.model_source.kind != "pvc":
        containers.append(MIRROR_RESOURCES)
    _fits(
        config,
        "serving",
        f"TF Serving at serving.maxReplicas ({serving.max_replicas}) plus {SERVING_MAX_SURGE} rolling-update pod",
        serving.max_replicas + SERVING_MAX_SURGE,
        containers,
        gpus=1 if serving.gpu else 0,
    )
    streaming = config.streaming
    if streaming.enabled:
        _fits(
            config,
            "data",
            "every streaming replica (streaming.inferReplicas, streaming.ingestReplicas) plus one being rolled",
            streaming.infer_replicas + streaming.ingest_replicas + 1,
            [streaming.resources],
        )
    _fits(
        config,
        "training",
        "one trial worker (workflow.trialResources, workflow.gpusPerWorker)",
        1,
        [config.workflow.trial_resources],
        gpus=config.workflow.gpus_per_worker,
    )
    spark = config.workflow.spark
    if spark is not None:
        # The ingest step (the driver) with all its executors: it runs before any trial does.
        _fits(
            config,
            "training",
            "the Spark ingest: its driver step (workflow.stepResources) and every executor "
            "(workflow.spark.executors x workflow.spark.executorResources)",
            1,
            [config.workflow.step_resources, *[spark.executor_resources] * spark.executors],
            pods=1 + spark.executors,
        )
    tracking = config.tracking
    if tracking.enabled:
        # The server and the database, and one server pod beside the old one while the server rolls (the
        # database is a StatefulSet of one: it is replaced, never doubled).
        _fits(
            config,
            "tracking",
            "the MLflow server during a rollout and its database (tracking.serverResources, "
            "tracking.databaseResources)",
            1,
            [tracking.server_resources, tracking.server_resources, tracking.database_resources],
            pods=3,
        )


def _fits(
    config: StackConfig,
    name: str,
    what: str,
    replicas: int,
    containers: Iterable[Resources],
    gpus: int = 0,
    pods: int | None = None,
) -> None:
    """``replicas`` pods of ``containers`` fit the quota of ``name``; ``pods``: how many pods that is, when
    ``containers`` lists those of several pods."""
    quota = config.budgets[name].quota
    containers = list(containers)
    needs = {
        "cpu": replicas * sum(checks.amount(c.cpu) for c in containers),
        "memory": replicas * sum(checks.amount(c.memory) for c in containers),
        "gpus": Decimal(replicas * gpus),
        "pods": Decimal(replicas if pods is None else pods),
    }
    for field, needed in needs.items():
        granted = getattr(quota, field)
        if needed > (checks.amount(granted) if isinstance(granted, str) else granted):
            raise ConfigError(
                f"{NAMESPACE}:{KEY}.{name}.quota.{field}: {granted} cannot hold {what}: "
                f"{_show(field, needed)} needed; raise it (or size those settings down)"
            )


def _show(field: str, needed: Decimal) -> str:
    if field == "memory":
        return f"{needed / 2**30:.2f}Gi"
    return f"{needed.normalize():f}"
