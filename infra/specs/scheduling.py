"""Who gets the cluster when it is full (the book's chapter 6): PriorityClasses that put serving before
training before batch work, and each workload namespace's ResourceQuota and LimitRange.

Serving answers users now, so it may preempt training; a preempted trial resumes from its checkpoint
(docs/interfaces.md). Training may preempt batch work (workflow steps, streaming ingestion), which
retries. Batch work preempts nothing. No class is the cluster's global default: pods of other software
keep priority 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

from infra.config import NamespaceBudget
from infra.specs.namespaces import DATA, SERVING, TRACKING, TRAINING
from infra.specs.workload import GPU_RESOURCE, labels, metadata


@dataclasses.dataclass(frozen=True)
class Priority:
    name: str
    value: int
    preempts: bool
    description: str


SERVING_PRIORITY = Priority(
    "mlstack-serving", 100_000, True, "Online inference (TF Serving, inference workers): may preempt training"
)
TRAINING_PRIORITY = Priority(
    "mlstack-training",
    10_000,
    True,
    "Training trials and the tracking server they record to: may preempt batch work; trials resume from "
    "checkpoints",
)
BATCH_PRIORITY = Priority(
    "mlstack-batch", 1_000, False, "Workflow steps and streaming ingestion: preempt nothing, retry"
)
PRIORITIES = (SERVING_PRIORITY, TRAINING_PRIORITY, BATCH_PRIORITY)
# The stack file's names for the workload namespaces (``mlstack:namespaceBudgets.<name>``).
BUDGET_NAMESPACES = {"training": TRAINING, "serving": SERVING, "data": DATA, "tracking": TRACKING}


def priority_class(priority: Priority) -> dict[str, Any]:
    return {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": priority.name, "labels": labels(priority.name, "scheduling")},
        "value": priority.value,
        "globalDefault": False,
        "preemptionPolicy": "PreemptLowerPriority" if priority.preempts else "Never",
        "description": priority.description,
    }


def resource_quota(namespace: str, budget: NamespaceBudget) -> dict[str, Any]:
    """Requests only: every container of ours sets limits equal to its requests, and the LimitRange
    gives any other container requests, so each pod is counted."""
    quota = budget.quota
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": metadata("workload-budget", namespace, "scheduling"),
        "spec": {
            "hard": {
                "requests.cpu": quota.cpu,
                "requests.memory": quota.memory,
                f"requests.{GPU_RESOURCE}": str(quota.gpus),
                "pods": str(quota.pods),
            }
        },
    }


def limit_range(namespace: str, budget: NamespaceBudget) -> dict[str, Any]:
    """Requests and limits for containers that declare none (the quota refuses pods it cannot count)."""
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": metadata("container-defaults", namespace, "scheduling"),
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "defaultRequest": dataclasses.asdict(budget.default_request),
                    "default": dataclasses.asdict(budget.default_limit),
                }
            ]
        },
    }


def objects(budgets: Mapping[str, NamespaceBudget], declared: Collection[str]) -> list[dict[str, Any]]:
    """The PriorityClasses, and the quota and container defaults of each workload namespace among the
    ``declared`` ones (the tracking namespace exists only with tracking on)."""
    items = [priority_class(priority) for priority in PRIORITIES]
    for name, namespace in BUDGET_NAMESPACES.items():
        if namespace not in declared:
            continue
        items += [resource_quota(namespace, budgets[name]), limit_range(namespace, budgets[name])]
    return items
