"""``rbac.trainingSubmitters`` (who may submit workflows and read the trials), and the refusal of the
former ``trainingJobs`` setting: one-shot training runs are workflows now, not stack state."""

from __future__ import annotations

from infra.config.fields import Fields
from infra.config.keys import REQUIRED
from infra.config.settings import RbacSubject

REMOVED_TRAINING_JOBS = (
    "one-shot training jobs are no longer stack state; remove the key and submit the run with "
    "`python -m workloads workflow ...` (docs/workflow.md)"
)


def refuse_training_jobs(top: Fields) -> None:
    """A stack file that still lists ``trainingJobs`` fails naming the key and what to do instead."""
    if top.has("trainingJobs"):
        raise top.fail("trainingJobs", REMOVED_TRAINING_JOBS)


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
