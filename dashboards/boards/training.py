"""Training: throughput per worker and per run, loss, step time, checkpoints and restarts.

The workers' metrics are listed in docs/interfaces.md (labels ``run``, ``framework``, ``rank``).
"""

from __future__ import annotations

from dashboards.expr import quantile, sum_rate
from dashboards.panels import Board, Graph, Query, Row, Stat, Variable
from dashboards.params import THRESHOLDS
from dashboards.rules.training import NEWEST_CHECKPOINT
from dashboards.selectors import TRAINING_NAMESPACE

UID = "mlstack-training"
RUN = '{run=~"$run"}'
WORKER_LEGEND = "{{run}} rank {{rank}}"
CHECKPOINT_AGE = f"time() - {NEWEST_CHECKPOINT}{RUN}"


def board() -> Board:
    return Board(
        uid=UID,
        title="mlstack / Training",
        description="Distributed training runs: throughput, loss, step time, checkpoints and restarts.",
        rows=[_runs(), Row("Workers", [*_progress(), *_checkpoints_and_restarts()])],
        variables=[Variable("run", "Run", "label_values(mlstack_train_steps_total, run)")],
        tags=("mlstack", "training"),
    )


def _runs() -> Row:
    return Row(
        "Runs",
        [
            Stat(
                "Samples/s, all workers",
                "Training samples processed per second by every selected run's workers together.",
                Query(sum_rate("mlstack_train_samples_total", RUN)),
                unit="short",
            ),
            Stat(
                "Optimizer steps",
                "Steps completed by the furthest worker of the selected runs.",
                Query(f"max(mlstack_train_steps_total{RUN})"),
            ),
            Stat(
                "Epoch",
                "Current epoch of the selected runs.",
                Query(f"max(mlstack_train_epoch{RUN})"),
            ),
            Stat(
                "Checkpoint age",
                "Time since the newest checkpoint of the selected runs; red at the TrainingCheckpointTooOld threshold.",
                Query(f"min({CHECKPOINT_AGE})"),
                unit="s",
                thresholds=[(THRESHOLDS.checkpoint_max_age_seconds, "red")],
            ),
        ],
    )


def _progress() -> list[Graph]:
    return [
        Graph(
            "Samples/s per worker and per run",
            "Throughput of each worker, and the total of each run; a worker far below its peers is a straggler.",
            [
                Query(sum_rate("mlstack_train_samples_total", RUN, ["run", "rank"]), WORKER_LEGEND),
                Query(sum_rate("mlstack_train_samples_total", RUN, ["run"]), "{{run}} total"),
            ],
        ),
        Graph(
            "Loss",
            "Loss of each worker's last step (the series starts with the first step).",
            [Query(f"mlstack_train_loss{RUN}", WORKER_LEGEND)],
        ),
        Graph(
            "Step time",
            "Wall time of one optimizer step: median and 95th percentile per run.",
            [
                Query(quantile(0.5, "mlstack_train_step_duration_seconds", RUN, ["run"]), "{{run}} p50"),
                Query(quantile(0.95, "mlstack_train_step_duration_seconds", RUN, ["run"]), "{{run}} p95"),
            ],
            unit="s",
            min=0,
        ),
    ]


def _checkpoints_and_restarts() -> list[Graph]:
    return [
        Graph(
            "Checkpoint age",
            "Time since each run's newest checkpoint was written or restored (the series TrainingCheckpointTooOld watches).",
            [Query(CHECKPOINT_AGE, "{{run}}")],
            unit="s",
            min=0,
        ),
        Graph(
            "Restarts in the last hour",
            "Worker process restarts seen by the workers' start time, and container restarts seen by Kubernetes.",
            [
                Query(
                    f"sum by (run) (changes(mlstack_train_start_timestamp_seconds{RUN}[1h]))",
                    "{{run}} workers",
                ),
                Query(
                    f"sum by (pod) (increase(kube_pod_container_status_restarts_total{TRAINING_NAMESPACE}[1h]))",
                    "{{pod}} container",
                ),
            ],
            min=0,
        ),
        Graph(
            "Resumed from step",
            "Step each worker resumed from when it started (0 = a fresh start).",
            [Query(f"mlstack_train_resumed_step{RUN}", WORKER_LEGEND)],
            min=0,
        ),
    ]
