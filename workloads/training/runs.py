"""What every trainer records about a run, whatever its framework or strategy.

The trainers differ in how a step is computed; they agree on what a run *is*: which checkpoints may
be resumed (the same model, global batch size and seed), how progress is logged, how the weights are
fingerprinted, and what the trained-model directory holds. Those rules live here once, so a
TensorFlow and a PyTorch run of the same settings are told apart only by their ``framework`` field.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn, Protocol

import numpy as np

from workloads import models
from workloads.core import logs, progress, storage
from workloads.core.errors import CheckpointError, DataError, WorkloadError
from workloads.data import datasets
from workloads.data.sampling import WorkerBatches
from workloads.data.shards import ShardCache, ShardSet
from workloads.training import trained_model
from workloads.training.checkpoints import CheckpointState, CheckpointStore
from workloads.training.config import TrainConfig
from workloads.training.metrics import TrainingMetrics

log = logging.getLogger(__name__)


class Trainer(Protocol):
    def run(self) -> int: ...


def run_with_metrics(
    config: TrainConfig, framework: str, rank: int, make_trainer: Callable[[TrainingMetrics], Trainer]
) -> int:
    """Run a trainer while this worker's training metrics are served on ``--metrics-port``."""
    storage.set_s3_endpoint(config.s3_endpoint)
    metrics = TrainingMetrics(config.effective_run_name, framework, rank)
    metrics.serve(config.metrics_port)
    try:
        return make_trainer(metrics).run()
    finally:
        metrics.close()


def weights_digest(weights: Iterable[np.ndarray]) -> str:
    """SHA-256 over all weights: equal on every replica of a correct synchronous run."""
    digest = hashlib.sha256()
    for value in weights:
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def open_training_data(config: TrainConfig) -> tuple[str, ShardSet]:
    """The training split named by ``--data`` (a shard directory, or a dataset directory's ``train/``)."""
    splits = datasets.resolve_splits(config.data)
    data = ShardSet.open(splits.train, cache=ShardCache(config.cache_dir))
    if data.manifest.image_shape != models.IMAGE_SHAPE:
        raise DataError(
            splits.train, f"holds {data.manifest.image_shape} images; the models take {models.IMAGE_SHAPE}"
        )
    return splits.train, data


def worker_batches(
    config: TrainConfig, url: str, data: ShardSet, *, rank: int = 0, world_size: int = 1
) -> tuple[WorkerBatches, int]:
    """This worker's batches of ``data`` and the run's total steps, logged as its training data."""
    batches = WorkerBatches(
        data,
        global_batch_size=config.batch_size,
        rank=rank,
        world_size=world_size,
        seed=config.seed,
        shuffle_window=config.shuffle_window,
    )
    total_steps = config.epochs * batches.steps_per_epoch
    log_training_data(url, batches, total_steps)
    return batches, total_steps


def log_training_data(url: str, batches: WorkerBatches, total_steps: int) -> None:
    log.info(
        "training data",
        extra=logs.fields(
            url=url,
            records=len(batches.data),
            steps_per_epoch=batches.steps_per_epoch,
            dropped_per_epoch=batches.dropped_per_epoch,
            per_worker_batch=batches.per_worker_batch,
            total_steps=total_steps,
        ),
    )


def checkpoint_identity(framework: str, config: TrainConfig, records: int) -> dict[str, Any]:
    """What a checkpoint records about its run; a checkpoint of another run is never resumed."""
    return {
        "framework": framework,
        "strategy": config.strategy,
        "model": config.model,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "records": records,
    }


def checkpoint_store(config: TrainConfig) -> CheckpointStore | None:
    """The store under ``--checkpoint-dir``; None when the run keeps no checkpoints."""
    if not config.checkpoint_dir:
        return None
    return CheckpointStore(config.checkpoint_dir, keep=config.keep_checkpoints)


def checkpoint_due(config: TrainConfig, step: int, total_steps: int) -> bool:
    """Whether a checkpoint is written after ``step``: every ``--checkpoint-every`` steps and at the end."""
    return step % config.checkpoint_every == 0 or step == total_steps


def latest_checkpoint(
    store: CheckpointStore | None, identity: Mapping[str, Any], *, is_chief: bool
) -> CheckpointState | None:
    """The checkpoint this run resumes from, checked to be one of its own; None for a fresh start.

    The chief first removes what a killed writer left behind; a fresh start is logged.
    """
    if store is None:
        log_fresh_start(None)
        return None
    if is_chief:
        store.remove_stale_staging()
    state = store.latest()
    if state is None:
        log_fresh_start(store)
        return None
    check_resumable(store, state, identity)
    return state


def check_resumable(store: CheckpointStore, state: CheckpointState, expected: Mapping[str, Any]) -> None:
    """Refuses a checkpoint of a different run; warns when only the training data changed."""
    mismatched = {  # a key the checkpoint does not record (an older writer) is not compared
        key: (state.extra[key], value)
        for key, value in expected.items()
        if key != "records" and key in state.extra and state.extra[key] != value
    }
    if mismatched:
        raise CheckpointError(
            f"{store.url} holds a checkpoint of a different run ({mismatched} as (checkpoint, now)); "
            "use another --checkpoint-dir or the same settings"
        )
    if state.extra.get("records") != expected.get("records"):
        log.warning(
            "the training data changed since the checkpoint",
            extra=logs.fields(checkpoint_records=state.extra.get("records"), records=expected.get("records")),
        )


def log_resumed(store: CheckpointStore, state: CheckpointState, batches: WorkerBatches) -> None:
    epoch, batch = batches.position(state.step)
    log.info(
        "resumed from checkpoint at step %d",
        state.step,
        extra=logs.fields(
            step=state.step, epoch=epoch, batch=batch, path=storage.join(store.url, state.path)
        ),
    )


def log_fresh_start(store: CheckpointStore | None) -> None:
    if store is None:
        log.warning("no --checkpoint-dir: this run cannot resume if it is interrupted")
    else:
        log.info("no checkpoint yet: starting at step 0", extra=logs.fields(checkpoint_dir=store.url))


def log_step(step: int, total_steps: int, epoch: int, loss: float, samples: int, seconds: float) -> None:
    """The progress line every trainer writes every ``--log-every`` steps."""
    log.info(
        "step %d/%d loss %.4f",
        step,
        total_steps,
        loss,
        extra=logs.fields(
            step=step,
            epoch=epoch,
            loss=round(loss, 5),
            samples_per_second=round(samples / seconds, 1) if seconds > 0 else None,
        ),
    )


def progress_bar(config: TrainConfig, total_steps: int, start_step: int, *, is_chief: bool = True) -> Any:
    """The training progress bar, continuing from ``start_step``; only the chief may show it."""
    return progress.bar(
        total_steps,
        f"train {config.model}",
        unit="step",
        initial=start_step,
        enabled=None if is_chief else False,
    )


class StepReporter:
    """What a synchronous trainer does after each step: keeps the loss history per epoch, records the
    metrics, moves the progress bar and logs a progress line every ``log_every`` steps."""

    def __init__(self, metrics: TrainingMetrics, bar: Any, total_steps: int, log_every: int) -> None:
        self.metrics, self.bar = metrics, bar
        self.total_steps, self.log_every = total_steps, log_every
        self.history: dict[int, list[float]] = {}

    def step_done(self, step: int, epoch: int, loss: float, samples: int, seconds: float) -> None:
        self.history.setdefault(epoch, []).append(loss)
        self.metrics.record_step(loss, samples, seconds)
        self.metrics.record_epoch(epoch)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.4f}", epoch=epoch)
        if step % self.log_every == 0 or step == self.total_steps:
            log_step(step, self.total_steps, epoch, loss, samples, seconds)


def epoch_history(losses: Mapping[int, list[float]]) -> list[dict[str, float]]:
    """``training.json``'s ``history`` from the step losses of each epoch."""
    return [
        {"epoch": epoch, "mean_loss": float(np.mean(values)), "steps": len(values)}
        for epoch, values in sorted(losses.items())
        if values
    ]


def write_trained_model(
    config: TrainConfig,
    model: Any,
    *,
    framework: str,
    strategy: str,
    world_size: int,
    start_step: int,
    step: int,
    history: list[dict[str, float]],
    digest: str,
    started: float,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """The chief's last act: ``model.keras`` and ``training.json`` under ``--output``."""
    record = trained_model.TrainingRecord(
        run_name=config.effective_run_name,
        framework=framework,
        strategy=strategy,
        model=config.model,
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
        epochs=config.epochs,
        seed=config.seed,
        data=config.data,
        world_size=world_size,
        steps=step,
        resumed_from_step=start_step,
        history=history,
        wall_seconds=round(time.monotonic() - started, 2),
        weights_sha256=digest,
        created_at=time.time(),
        extra=dict(extra or {}),
    )
    try:
        trained_model.save(config.output, model, record)
    except OSError as error:
        raise WorkloadError(f"could not write the trained model to {config.output}: {error}") from error
    log.info("trained model written", extra=logs.fields(output=config.output, steps=step))


def exit_now() -> NoReturn:
    """Ends a finished training process at once, its logs flushed.

    What remains is the interpreter's teardown of the frameworks: seconds per process (for a
    multi-worker TensorFlow process, waits on its peers) that the launcher and the next job would
    wait for.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
