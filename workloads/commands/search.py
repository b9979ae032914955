"""Grid search: train every (model, learning rate, batch size) combination as an independent
multi-worker job on local processes (fan-out). Trials already trained with the same settings are
skipped. Writes WORKDIR/trials/<trial>/{model,checkpoints,logs} and WORKDIR/search.json; pick the
winner with `python -m workloads select --candidates WORKDIR/trials`. The search and its trials are
recorded in MLflow (--tracking-uri, MLFLOW_TRACKING_URI, else sqlite:///WORKDIR/mlflow.db; --no-tracking).
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
from typing import Any

from workloads import models
from workloads.core import logs, storage, tracking
from workloads.core.settings import Check, CommandConfig, non_negative, option, positive
from workloads.workflow import search
from workloads.workflow.search import Grid, SearchSettings

HELP = "hyperparameter grid search: one multi-worker training job per grid point"
log = logging.getLogger(__name__)

# The flags of how every trial runs, shared by `search` and `pipeline`: name -> (help, check).
_TRIAL_FLAGS: dict[str, tuple[str, Check]] = {
    "epochs": ("epochs per trial", positive),
    "max_restarts": ("group restarts per trial after a worker dies", non_negative),
    "trial_timeout": ("seconds before a trial is stopped", positive),
    "collective_timeout": ("seconds a collective waits for a lost peer", positive),
}


def trial_option(name: str) -> Any:
    """The flag of the trial setting ``name``; its default is :class:`SearchSettings`'s."""
    help_text, check = _TRIAL_FLAGS[name]
    return option(getattr(SearchSettings, name), help=help_text, check=check)


@dataclasses.dataclass(frozen=True)
class Config(CommandConfig):
    data: str = option(help="dataset directory (with train/) or training shard directory, path or URL")
    workdir: str = option(help="local directory for the trials and search.json")
    models: tuple[str, ...] = option(Grid.models, help="model variants to try", check=models.unknown_models)
    learning_rates: tuple[float, ...] = option(Grid.learning_rates, help="learning rates to try")
    batch_sizes: tuple[int, ...] = option(Grid.batch_sizes, help="global batch sizes to try")
    epochs: int = trial_option("epochs")
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
    max_restarts: int = trial_option("max_restarts")
    trial_timeout: float = trial_option("trial_timeout")
    collective_timeout: float = trial_option("collective_timeout")
    s3_endpoint: str | None = option(None, help="S3 endpoint URL for s3:// data (sets AWS_ENDPOINT_URL)")
    tracking_uri: str | None = tracking.uri_option()
    no_tracking: bool = tracking.off_option()

    def validate(self) -> None:
        search.check_options(self)

    def settings(self) -> SearchSettings:
        return search.search_settings(self, self.data, pathlib.Path(self.workdir))


def run(config: Config) -> int:
    storage.set_s3_endpoint(config.s3_endpoint)
    settings = config.settings()
    # Resolving the tracking checks that its store answers, before any trial starts.
    tracked = tracking.resolve(config.tracking_uri, config.no_tracking, settings.workdir)
    results = search.run_search(settings, tracked)
    failed = [r.trial.name for r in results if r.status == "failed"]
    log.info(
        "search finished",
        extra=logs.fields(workdir=config.workdir, trained=len(results) - len(failed), failed=failed),
    )
    return 1 if failed else 0
