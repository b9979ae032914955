"""Hyperparameter grid search (fan-out): every grid point is an independent multi-worker training job.

The grid is model variant x learning rate x global batch size. Each trial runs as its own local job
(``--workers-per-trial`` processes with ``TF_CONFIG``, restarted on worker failure, resumed from
its own checkpoints) under ``<workdir>/trials/<trial>/``::

    model/          the trained model (model.keras + training.json)
    checkpoints/    the trial's checkpoints
    logs/           worker-<i>.log of every attempt

A failed trial is recorded and the search goes on; a trial whose trained model already exists with
the same settings and training data (the identity its checkpoints carry, and the epochs) is skipped
(step memoisation), so re-running a search only does what is missing or changed.
``<workdir>/search.json`` lists every trial and how it ended.

With tracking (:mod:`workloads.core.tracking`) the search is an MLflow run and each trial a child run
of it, recorded in ``<workdir>/trials/<trial>/tracking.json`` and continued when the trial is trained
again after it failed or was killed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import pathlib
import time
from collections.abc import Sequence
from typing import Protocol

from workloads import models
from workloads.core import fsutil, logs, tracking
from workloads.core.errors import WorkloadError
from workloads.core.settings import ConfigError
from workloads.data import datasets
from workloads.data.sampling import uneven_split
from workloads.data.shards import ShardSet
from workloads.training import runs, trained_model
from workloads.training.config import TrainConfig
from workloads.training.local_job import launch_local

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Trial:
    model: str
    learning_rate: float
    batch_size: int

    @property
    def name(self) -> str:
        return f"{self.model}-lr{self.learning_rate:g}-b{self.batch_size}"


@dataclasses.dataclass(frozen=True)
class TrialResult:
    trial: Trial
    status: str  # "trained" | "memoised" | "failed"
    model_dir: str
    wall_seconds: float
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class Grid:
    """The points of a search, model variant x learning rate x global batch size; the defaults are the
    grid of ``search`` and ``pipeline`` alike."""

    models: tuple[str, ...] = tuple(models.MODELS)
    learning_rates: tuple[float, ...] = (0.001, 0.003)
    batch_sizes: tuple[int, ...] = (64,)

    def trials(self) -> list[Trial]:
        """Every combination, in a stable order; duplicates removed."""
        points = itertools.product(self.models, self.learning_rates, self.batch_sizes)
        return list(dict.fromkeys(Trial(m, lr, b) for m, lr, b in points))


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """One search: where its data and trials are, the grid, and how every trial runs. The defaults
    here are the defaults of ``search`` and ``pipeline`` alike."""

    data: str
    workdir: pathlib.Path
    grid: Grid = Grid()
    epochs: int = 2
    seed: int = 0
    workers_per_trial: int = 2
    checkpoint_every: int = 50
    max_restarts: int = 3
    trial_timeout: float = 1800.0
    collective_timeout: float = TrainConfig.collective_timeout


class GridOptions(Protocol):
    """What a command that runs a search reads from its flags (``search``, ``pipeline``)."""

    models: tuple[str, ...]
    learning_rates: tuple[float, ...]
    batch_sizes: tuple[int, ...]
    epochs: int
    seed: int
    workers_per_trial: int
    checkpoint_every: int
    max_restarts: int
    trial_timeout: float
    collective_timeout: float


def check_options(options: GridOptions) -> None:
    """The rules of a grid before anything runs; raises :class:`ConfigError` naming the flag."""
    for flag, values in (
        ("--models", options.models),
        ("--learning-rates", options.learning_rates),
        ("--batch-sizes", options.batch_sizes),
    ):
        if not values:
            raise ConfigError(flag, "must list at least one value")
    if any(lr <= 0 for lr in options.learning_rates):
        raise ConfigError(
            "--learning-rates", f"must all be greater than 0, got {list(options.learning_rates)}"
        )
    for batch_size in options.batch_sizes:
        if batch_size <= 0:
            raise ConfigError("--batch-sizes", f"must all be greater than 0, got {list(options.batch_sizes)}")
        workers = options.workers_per_trial
        if problem := uneven_split(batch_size, workers, "workers per trial (--workers-per-trial)"):
            raise ConfigError("--batch-sizes", problem)


def search_settings(options: GridOptions, data: str, workdir: pathlib.Path) -> SearchSettings:
    """The search that ``options`` describe, over ``data``, with its trials under ``workdir``."""
    check_options(options)
    return SearchSettings(
        data=data,
        workdir=workdir,
        grid=Grid(options.models, options.learning_rates, options.batch_sizes),
        epochs=options.epochs,
        seed=options.seed,
        workers_per_trial=options.workers_per_trial,
        checkpoint_every=options.checkpoint_every,
        max_restarts=options.max_restarts,
        trial_timeout=options.trial_timeout,
        collective_timeout=options.collective_timeout,
    )


def trial_config(settings: SearchSettings, trial: Trial) -> TrainConfig:
    directory = settings.workdir / "trials" / trial.name
    return TrainConfig(
        data=settings.data,
        output=str(directory / "model"),
        model=trial.model,
        epochs=settings.epochs,
        batch_size=trial.batch_size,
        learning_rate=trial.learning_rate,
        seed=settings.seed,
        checkpoint_dir=str(directory / "checkpoints"),
        checkpoint_every=settings.checkpoint_every,
        run_name=trial.name,
        collective_timeout=settings.collective_timeout,
        local_workers=settings.workers_per_trial,
        max_restarts=settings.max_restarts,
        timeout=settings.trial_timeout,
    )


def _memoised(config: TrainConfig) -> bool:
    """Whether the trial's trained model is of this very run: the same identity as a checkpoint must
    have to be resumed (settings and the training data's content digest) and the same epochs."""
    if not trained_model.is_trained_model(config.output):
        return False
    record = trained_model.read_record(config.output)
    manifest = ShardSet.open(datasets.resolve_splits(config.data).train).manifest
    changed = runs.identity_changes(
        {**record.identity, "epochs": record.epochs},
        {**runs.checkpoint_identity(config.framework, config, manifest), "epochs": config.epochs},
    )
    if changed:
        log.info(
            "trial %s: its trained model is of another run (%s), training again",
            config.run_name,
            ", ".join(changed),
            extra=logs.fields(trial=config.run_name, changed=changed),
        )
    return not changed


def run_search(settings: SearchSettings, tracked: tracking.Tracking | None = None) -> list[TrialResult]:
    """Runs the grid's trials one after another (each already uses the machine's cores) and records them.

    The data is checked first, once: a missing or unreachable ``--data`` fails here, before any trial
    starts or anything is written, rather than in every trial. With ``tracked`` the search and its
    trials are MLflow runs (see the module's docstring).
    """
    datasets.check_splits(settings.data, ("train",))
    recorder = _search_run(settings, tracked)
    try:
        results = _run_trials(settings, recorder)
    except BaseException as error:
        if recorder is not None:
            recorder.end(error)
        raise
    if recorder is not None:
        recorder.end(None)
    return results


def _search_run(settings: SearchSettings, tracked: tracking.Tracking | None) -> tracking.SearchRun | None:
    if tracked is None:
        return None
    params = {
        "data": settings.data,
        "models": ",".join(settings.grid.models),
        "learning_rates": ",".join(map(str, settings.grid.learning_rates)),
        "batch_sizes": ",".join(map(str, settings.grid.batch_sizes)),
        "epochs": settings.epochs,
        "seed": settings.seed,
        "workers_per_trial": settings.workers_per_trial,
    }
    return tracking.SearchRun(tracked, settings.workdir, params)


def _trial_run(
    recorder: tracking.SearchRun | None, config: TrainConfig, directory: pathlib.Path
) -> contextlib.AbstractContextManager[str | None]:
    """The trial's MLflow run (see :meth:`tracking.SearchRun.trial`), or nothing without tracking."""
    if recorder is None:
        return contextlib.nullcontext()
    train = datasets.resolve_splits(config.data).train
    data = {"url": train, "digest": ShardSet.open(train).manifest.content_digest}
    params = {**runs.run_params(config, config.framework), "workers": config.local_workers}
    return recorder.trial(config.effective_run_name, directory, params, data)


def _run_trials(settings: SearchSettings, recorder: tracking.SearchRun | None) -> list[TrialResult]:
    trials = settings.grid.trials()
    log.info("grid of %d trials", len(trials), extra=logs.fields(trials=[t.name for t in trials]))
    results: list[TrialResult] = []
    for number, trial in enumerate(trials, 1):
        config = trial_config(settings, trial)
        began = time.monotonic()
        if _memoised(config):
            log.info("trial %s: already trained with these settings, skipped", trial.name)
            results.append(TrialResult(trial, "memoised", config.output, 0.0))
            continue
        log.info(
            "trial %d/%d: %s",
            number,
            len(trials),
            trial.name,
            extra=logs.fields(trial=trial.name, output=config.output),
        )
        directory = settings.workdir / "trials" / trial.name
        try:
            with _trial_run(recorder, config, directory) as run_id:
                launch_local(config, log_dir=directory / "logs")
                if recorder is not None and run_id is not None:
                    record = dataclasses.asdict(trained_model.read_record(config.output))
                    recorder.trained(run_id, config.output, record)
            status, error = "trained", None
        except WorkloadError as failure:
            log.error("trial %s failed: %s", trial.name, failure, extra=logs.fields(trial=trial.name))
            status, error = "failed", str(failure)
        results.append(TrialResult(trial, status, config.output, round(time.monotonic() - began, 1), error))
        _write_summary(settings.workdir, results)
    _write_summary(settings.workdir, results)
    if not any(r.status != "failed" for r in results):
        raise WorkloadError(f"every trial failed; see {settings.workdir / 'search.json'} and the trial logs")
    return results


def _write_summary(workdir: pathlib.Path, results: Sequence[TrialResult]) -> None:
    summary = [
        {
            **dataclasses.asdict(r.trial),
            "name": r.trial.name,
            **{k: v for k, v in dataclasses.asdict(r).items() if k != "trial"},
        }
        for r in results
    ]
    fsutil.atomic_write_text(workdir / "search.json", json.dumps({"trials": summary}, indent=1))
