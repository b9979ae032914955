"""Grid search: train every (model, learning rate, batch size) combination as an independent
multi-worker job on local processes (fan-out). Trials already trained with the same settings are
skipped. Writes WORKDIR/trials/<trial>/{model,checkpoints,logs} and WORKDIR/search.json; pick the
winner with `python -m workloads select --candidates WORKDIR/trials`.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib

from workloads import models
from workloads.core import logs, storage
from workloads.core.settings import CommandConfig, ConfigError, non_negative, option, positive
from workloads.workflow import search

HELP = "hyperparameter grid search: one multi-worker training job per grid point"
log = logging.getLogger(__name__)


def _known_models(names: tuple[str, ...]) -> str | None:
    unknown = [n for n in names if n not in models.MODELS]
    return f"unknown model(s) {unknown}; valid models: {', '.join(models.MODELS)}" if unknown else None


@dataclasses.dataclass(frozen=True)
class Config(CommandConfig):
    data: str = option(help="dataset directory (with train/) or training shard directory, path or URL")
    workdir: str = option(help="local directory for the trials and search.json")
    models: tuple[str, ...] = option(tuple(models.MODELS), help="model variants to try", check=_known_models)
    learning_rates: tuple[float, ...] = option((0.001, 0.003), help="learning rates to try")
    batch_sizes: tuple[int, ...] = option((64,), help="global batch sizes to try")
    epochs: int = option(2, help="epochs per trial", check=positive)
    seed: int = option(0, help="seed shared by every trial (same data order and initial weights)")
    workers_per_trial: int = option(
        2, help="worker processes per trial (MultiWorkerMirroredStrategy)", check=positive
    )
    checkpoint_every: int = option(50, help="steps between checkpoints of a trial", check=positive)
    max_restarts: int = option(3, help="group restarts per trial after a worker dies", check=non_negative)
    trial_timeout: float = option(1800.0, help="seconds before a trial is stopped", check=positive)
    collective_timeout: float = option(
        120.0, help="seconds a collective waits for a lost peer", check=positive
    )
    s3_endpoint: str | None = option(None, help="S3 endpoint URL for s3:// data (sets AWS_ENDPOINT_URL)")

    def validate(self) -> None:
        for name, values in (
            ("--models", self.models),
            ("--learning-rates", self.learning_rates),
            ("--batch-sizes", self.batch_sizes),
        ):
            if not values:
                raise ConfigError(name, "must list at least one value")
        if any(lr <= 0 for lr in self.learning_rates):
            raise ConfigError(
                "--learning-rates", f"must all be greater than 0, got {list(self.learning_rates)}"
            )
        bad = [b for b in self.batch_sizes if b <= 0 or b % self.workers_per_trial]
        if bad:
            raise ConfigError(
                "--batch-sizes",
                f"{bad}: each must be positive and a multiple of --workers-per-trial {self.workers_per_trial}",
            )

    def settings(self) -> search.SearchSettings:
        return search.SearchSettings(
            data=self.data,
            workdir=pathlib.Path(self.workdir),
            epochs=self.epochs,
            seed=self.seed,
            workers_per_trial=self.workers_per_trial,
            checkpoint_every=self.checkpoint_every,
            max_restarts=self.max_restarts,
            trial_timeout=self.trial_timeout,
            collective_timeout=self.collective_timeout,
        )


def run(config: Config) -> int:
    storage.set_s3_endpoint(config.s3_endpoint)
    trials = search.grid(config.models, config.learning_rates, config.batch_sizes)
    log.info("grid of %d trials", len(trials), extra=logs.fields(trials=[t.name for t in trials]))
    results = search.run_search(config.settings(), trials)
    failed = [r.trial.name for r in results if r.status == "failed"]
    log.info(
        "search finished",
        extra=logs.fields(workdir=config.workdir, trained=len(results) - len(failed), failed=failed),
    )
    return 1 if failed else 0
