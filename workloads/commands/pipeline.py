"""The whole workflow locally, as `make demo` runs it: data (synthetic, or the Fashion-MNIST IDX
files at --data) -> shards -> grid search with multi-worker training on local processes ->
selection on the held-out split -> SavedModel export promoted into TF Serving's layout ->
predictions from the exported model with accuracy. Ends by listing where every artifact is.
Re-running reuses what is already done (shards and trained trials with the same settings).
"""

from __future__ import annotations

import dataclasses

from workloads import models
from workloads.core import storage
from workloads.core.settings import CommandConfig, ConfigError, non_negative, option, positive
from workloads.serving.tfs_config import MODEL_NAME
from workloads.workflow import selection
from workloads.workflow.pipeline import run_pipeline

HELP = "run the whole pipeline locally (make demo): shards, search, select, export, predict"


@dataclasses.dataclass(frozen=True)
class Config(CommandConfig):
    workdir: str = option(help="local directory for every artifact of the run")
    data: str | None = option(
        None, help="directory (path or URL) of the Fashion-MNIST IDX files; none = synthetic"
    )
    synthetic_train: int = option(6000, help="synthetic training records (without --data)", check=positive)
    synthetic_test: int = option(1000, help="synthetic held-out records (without --data)", check=positive)
    shard_size: int = option(1024, help="records per shard", check=positive)
    models: tuple[str, ...] = option(tuple(models.MODELS), help="model variants in the grid")
    learning_rates: tuple[float, ...] = option((0.001, 0.003), help="learning rates in the grid")
    batch_sizes: tuple[int, ...] = option((64,), help="global batch sizes in the grid")
    epochs: int = option(2, help="epochs per trial", check=positive)
    workers_per_trial: int = option(2, help="worker processes per trial", check=positive)
    checkpoint_every: int = option(50, help="steps between checkpoints", check=positive)
    max_restarts: int = option(2, help="group restarts per trial after a worker dies", check=non_negative)
    trial_timeout: float = option(600.0, help="seconds before a trial is stopped", check=positive)
    metric: str = option("accuracy", help="selection metric", choices=tuple(selection.METRICS))
    model_name: str = option(MODEL_NAME, help="TF Serving model name")
    seed: int = option(0, help="seed for the synthetic data, initial weights and shuffling")
    s3_endpoint: str | None = option(None, help="S3 endpoint URL for s3:// data (sets AWS_ENDPOINT_URL)")

    def validate(self) -> None:
        unknown = [m for m in self.models if m not in models.MODELS]
        if unknown:
            raise ConfigError(
                "--models", f"unknown model(s) {unknown}; valid models: {', '.join(models.MODELS)}"
            )
        if not self.models or not self.learning_rates or not self.batch_sizes:
            raise ConfigError("--models", "the grid needs at least one model, learning rate and batch size")
        bad = [b for b in self.batch_sizes if b % self.workers_per_trial]
        if bad:
            raise ConfigError(
                "--batch-sizes", f"{bad} must be multiples of --workers-per-trial {self.workers_per_trial}"
            )


def run(config: Config) -> int:
    storage.set_s3_endpoint(config.s3_endpoint)
    run_pipeline(config)
    return 0
