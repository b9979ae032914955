"""What every trainer records about a run, whatever its framework or strategy.

The trainers differ in how a step is computed; they agree on what a run *is*: which checkpoints may
be resumed (those of the same run: see :func:`checkpoint_identity`), how progress is logged, how the
weights are fingerprinted, and what the trained-model directory holds. Those rules live here once, so a
TensorFlow and a PyTorch run of the same settings are told apart only by their ``framework`` field.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn, Protocol

import numpy as np

from workloads import models
from workloads.core import logs, progress, storage, tracking
from workloads.core.errors import DataError, WorkloadError
from workloads.data import datasets
from workloads.data.sampling import WorkerBatches
from workloads.data.shards import Manifest, ShardCache, ShardSet
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
        with _own_run(config, framework, is_chief=rank == 0):
            return make_trainer(metrics).run()
    finally:
        metrics.close()


def _own_run(
    config: TrainConfig, framework: str, *, is_chief: bool
) -> contextlib.AbstractContextManager[Any]:
    """The chief's MLflow run when it tracks on its own (:func:`tracking.train_run`); else nothing."""
    if not is_chief or not tracking.opens_own_run(config.tracking_uri):
        return contextlib.nullcontext()
    url, data = open_training_data(config)
    digest = {"url": url, "digest": data.manifest.content_digest}
    params = run_params(config, framework)
    return tracking.train_run(config.tracking_uri, config.effective_run_name, config.output, params, digest)


def run_params(config: TrainConfig, framework: str) -> dict[str, Any]:
    """The settings a trial's MLflow run records as its parameters."""
    return {
        "model": config.model,
        "learning_rate": config.learning_rate,
        "batch_size": config.batch_size,
        "framework": framework,
        "strategy": config.strategy,
        "seed": config.seed,
        "epochs": config.epochs,
    }


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


def checkpoint_identity(framework: str, config: TrainConfig, manifest: Manifest) -> dict[str, Any]:
    """What makes two runs the same run: every setting that changes the trained weights, and the training
    data's content digest. A checkpoint is resumed only by a run of equal identity, a trained model is
    memoised only for one (``search``), and ``training.json`` records it.

    Left out on purpose: ``epochs`` (the batches and the constant learning rate do not depend on it,
    so a 2-epoch run's checkpoint is the first two epochs of a 3-epoch run; a checkpoint past this
    run's last step is refused in :func:`latest_checkpoint`), the worker count (an elastic job resumes
    with fewer or more workers), ``--precision`` and ``--threads`` (how the same arithmetic is done, not
    what it is) and the data's URL (the digest identifies the records wherever they are).
    """
    return {
        "framework": framework,
        "strategy": config.strategy,
        "model": config.model,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "seed": config.seed,
        "shuffle_window": config.shuffle_window,
        "data_sha256": manifest.content_digest,
        "records": manifest.records,
    }


def identity_changes(recorded: Mapping[str, Any], expected: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The keys of ``expected`` that ``recorded`` holds another value for, or none (an older writer's
    record): ``{key: {"recorded": old, "now": new}}``; empty when the two are the same run."""
    return {
        key: {"recorded": recorded.get(key), "now": value}
        for key, value in expected.items()
        if recorded.get(key) != value
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
    store: CheckpointStore | None, identity: Mapping[str, Any], *, total_steps: int, is_chief: bool
) -> CheckpointState | None:
    """The checkpoint this run resumes from; None for a fresh start, which is logged with its reason.

    A checkpoint of another identity (other data, learning rate, model ...) or past this run's
    ``total_steps`` is not resumed: the run starts at step 0. Every worker reaches that decision alone,
    from the same ``latest.json`` and its own identity (equal on every worker), so they agree without
    talking. The chief first removes what a killed writer left behind, and on a fresh start sets the
    unusable checkpoints aside (``superseded/``) so that nothing resumes or prunes them later.
    """
    if store is None:
        log_fresh_start(None)
        return None
    if is_chief:
        store.remove_stale_staging()
    state = store.latest()
    changed = identity_changes(state.extra, identity) if state is not None else {}
    if state is None:
        log_fresh_start(store)
    elif changed:
        log.warning(
            "checkpoint identity changed (%s): starting at step 0, not resuming step %d",
            ", ".join(changed),
            state.step,
            extra=logs.fields(checkpoint_dir=store.url, checkpoint_step=state.step, changed=changed),
        )
    elif state.step > total_steps:
        log.warning(
            "checkpoint at step %d is past this run's %d steps: starting at step 0",
            state.step,
            total_steps,
            extra=logs.fields(checkpoint_dir=store.url, checkpoint_step=state.step, total_steps=total_steps),
        )
    else:
        return state
    if is_chief and (where := store.set_aside()):
        log.info("earlier checkpoints set aside", extra=logs.fields(path=where))
    return None


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
    metrics, moves the progress bar and logs a progress line every ``log_every`` steps; the chief also
    sends the step's loss and samples/s to the run's MLflow run, if the launcher named one."""

    def __init__(self, metrics: TrainingMetrics, bar: Any, total_steps: int, log_every: int) -> None:
        self.metrics, self.bar = metrics, bar
        self.total_steps, self.log_every = total_steps, log_every
        self.history: dict[int, list[float]] = {}
        self.tracked = tracking.StepLogger.for_worker(is_chief=metrics.labels["rank"] == "0")

    def step_done(self, step: int, epoch: int, loss: float, samples: int, seconds: float) -> None:
        self.history.setdefault(epoch, []).append(loss)
        self.metrics.record_step(loss, samples, seconds)
        self.metrics.record_epoch(epoch)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.4f}", epoch=epoch)
        if self.tracked is not None:
            rate = samples / seconds if seconds > 0 else None
            self.tracked.step(step, loss, rate, last=step == self.total_steps)
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
    identity: Mapping[str, Any],
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
        identity=dict(identity),
    )
    try:
        trained_model.save(config.output, model, record)
    except OSError as error:
        raise WorkloadError(f"could not write the trained model to {config.output}: {error}") from error
    log.info("trained model written", extra=logs.fields(output=config.output, steps=step))
    tracking.finish_own_run(config.output, dataclasses.asdict(record))


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
