"""Training alerts: runs that stopped stepping and runs whose checkpoints are too old.

A run is the ``run`` label every training worker exports (docs/interfaces.md). A run that ends
takes its series with it, so these alerts only concern runs that are still alive.
"""

from __future__ import annotations

from dashboards.params import THRESHOLDS, Thresholds
from dashboards.rules.model import Alert, Recording, RuleGroup, promql, seconds

# Shared with the training dashboard, so the panel and the alert agree on a run's checkpoint age.
NEWEST_CHECKPOINT = "run:mlstack_train_last_checkpoint_timestamp_seconds:max"
NEWEST_START = "run:mlstack_train_start_timestamp_seconds:max"


def step_rate(t: Thresholds = THRESHOLDS) -> str:
    """The recorded steps per second of each run over the stall window (what TrainingStalled compares with 0)."""
    return f"run:mlstack_train_steps:rate{t.training_stall_window}"


def group(t: Thresholds = THRESHOLDS) -> RuleGroup:
    """The group at thresholds ``t`` (the integration test evaluates alerts at other thresholds live)."""
    return RuleGroup(
        name="mlstack-training",
        recordings=(
            Recording(
                step_rate(t), f"sum by (run) (rate(mlstack_train_steps_total[{t.training_stall_window}]))"
            ),
            Recording(NEWEST_START, "max by (run) (mlstack_train_start_timestamp_seconds)"),
            # Only workers that wrote or restored a checkpoint report a positive timestamp.
            Recording(
                NEWEST_CHECKPOINT, "max by (run) (mlstack_train_last_checkpoint_timestamp_seconds > 0)"
            ),
        ),
        alerts=(_stalled(t), _checkpoint_too_old(t)),
    )


def _stalled(t: Thresholds) -> Alert:
    return Alert(
        "TrainingStalled",
        promql(f"""
            {step_rate(t)} == 0
            and on (run)
            (time() - {NEWEST_START} > {seconds(t.training_stall_window)})
        """),
        for_=t.training_stall_for,
        severity="critical",
        summary="A training run stopped making progress.",
        description=(
            f"Run {{{{ $labels.run }}}} completed no optimizer step in the last {t.training_stall_window} "
            "although its workers are still running."
        ),
    )


def _checkpoint_too_old(t: Thresholds) -> Alert:
    max_age = f"{t.checkpoint_max_age_seconds:g}"
    return Alert(
        "TrainingCheckpointTooOld",
        promql(f"""
            (time() - {NEWEST_CHECKPOINT} > {max_age})
            or
            (
              (time() - {NEWEST_START} > {max_age})
              unless on (run)
              {NEWEST_CHECKPOINT}
            )
        """),
        for_=t.checkpoint_age_for,
        severity="warning",
        summary="A training run has not checkpointed for too long.",
        description=(
            "Run {{ $labels.run }} has no checkpoint newer than "
            "{{ $value | humanizeDuration }} (limit "
            f"{t.checkpoint_max_age_seconds:g}s); a failure now would lose that much work."
        ),
    )
