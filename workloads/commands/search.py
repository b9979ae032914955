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
from workloads.core.settings import CommandConfig, non_negative, option, positive
from workloads.workflow import search
from workloads.workflow.search import Grid, SearchSettings

HELP = "hyperparameter grid search: one multi-worker training job per grid point"
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Config(CommandConfig):
    data: str = option(help="dataset directory (with train/) or training shard directory, path or URL")
    workdir: str = option(help="local directory for the trials and search.json")
    models: tuple[str, ...] = option(Grid.models, help="model variants to try", check=models.unknown_models)
    learning_rates: tuple[float, ...] = option(Grid.learning_rates, help="learning rates to try")
    batch_sizes: tuple[int, ...] = option(Grid.batch_sizes, help="global batch sizes to try")
    epochs: int = option(SearchSettings.epochs, help="epochs per trial", check=positive)
    seed: int = option(
        SearchSettings.seed, help="seed shared by every trial (same data order and initial weights)"
    )
    workers_per_trial: int = option(
        SearchSettings.workers_per_trial,
        help="worker processes per trial (MultiWorkerMirroredStrategy)",
        check=positive,
    )
    checkpoint_every: int = option(
        SearchSettings.checkpoint_every, help="steps between checkpoints of a trial", check=positive
    )
    max_restarts: int = option(
        SearchSettings.max_restarts, help="group restarts per trial after a worker dies", check=non_negative
    )
    trial_timeout: float = option(
        SearchSettings.trial_timeout, help="seconds before a trial is stopped", check=positive
    )
    collective_timeout: float = option(
        SearchSettings.collective_timeout, help="seconds a collective waits for a lost peer", check=positive
    )
    s3_endpoint: str | None = option(None, help="S3 endpoint URL for s3:// data (sets AWS_ENDPOINT_URL)")

    def validate(self) -> None:
        search.check_options(self)

    def settings(self) -> SearchSettings:
        return search.search_settings(self, self.data, pathlib.Path(self.workdir))


def run(config: Config) -> int:
    storage.set_s3_endpoint(config.s3_endpoint)
    results = search.run_search(config.settings())
    failed = [r.trial.name for r in results if r.status == "failed"]
    log.info(
        "search finished",
        extra=logs.fields(workdir=config.workdir, trained=len(results) - len(failed), failed=failed),
    )
    return 1 if failed else 0
