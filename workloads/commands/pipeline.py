"""The whole workflow locally, as `make demo` runs it: data (synthetic, or the Fashion-MNIST IDX
files at --data) -> shards -> grid search with multi-worker training on local processes ->
selection on the held-out split -> SavedModel export promoted into TF Serving's layout ->
predictions from the exported model with accuracy. Ends by listing where every artifact is.
Re-running reuses what is already done (shards and trained trials with the same settings).
Runs and the registered winner are recorded in MLflow: --tracking-uri or MLFLOW_TRACKING_URI, else
sqlite:///WORKDIR/mlflow.db, whose UI command ends the output; --no-tracking records nothing.
"""

from __future__ import annotations

import dataclasses
import pathlib

from workloads import models
from workloads.commands.search import trial_option
from workloads.commands.select import min_accuracy_option
from workloads.core import storage, tracking
from workloads.core.settings import CommandConfig, option, positive
from workloads.serving.tfs_config import MODEL_NAME, model_name_problem
from workloads.workflow import search, selection
from workloads.workflow.pipeline import DataSource, PipelineSettings, run_pipeline
from workloads.workflow.search import Grid, SearchSettings

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
    models: tuple[str, ...] = option(
        Grid.models, help="model variants in the grid", check=models.unknown_models
    )
    learning_rates: tuple[float, ...] = option(Grid.learning_rates, help="learning rates in the grid")
    batch_sizes: tuple[int, ...] = option(Grid.batch_sizes, help="global batch sizes in the grid")
    epochs: int = trial_option("epochs")
    workers_per_trial: int = option(
        SearchSettings.workers_per_trial, help="worker processes per trial", check=positive
    )
    checkpoint_every: int = option(
        SearchSettings.checkpoint_every, help="steps between checkpoints", check=positive
    )
    max_restarts: int = trial_option("max_restarts")
    trial_timeout: float = trial_option("trial_timeout")
    collective_timeout: float = trial_option("collective_timeout")
    metric: str = option("accuracy", help="selection metric", choices=tuple(selection.METRICS))
    model_name: str = option(MODEL_NAME, help="TF Serving model name", check=model_name_problem)
    min_accuracy: float | None = min_accuracy_option()
    seed: int = option(SearchSettings.seed, help="seed for the synthetic data, initial weights and shuffling")
    s3_endpoint: str | None = option(None, help="S3 endpoint URL for s3:// data (sets AWS_ENDPOINT_URL)")
    tracking_uri: str | None = tracking.uri_option()
    no_tracking: bool = tracking.off_option()

    def validate(self) -> None:
        search.check_options(self)

    def settings(self) -> PipelineSettings:
        workdir = pathlib.Path(self.workdir)
        source = DataSource(self.data, self.synthetic_train, self.synthetic_test, self.shard_size, self.seed)
        return PipelineSettings(
            workdir=workdir,
            source=source,
            search=search.search_settings(self, str(workdir / "data"), workdir / "search"),
            metric=self.metric,
            model_name=self.model_name,
            min_accuracy=self.min_accuracy,
        )


def run(config: Config) -> int:
    storage.set_s3_endpoint(config.s3_endpoint)
    # Resolving the tracking checks that its store answers, before anything runs.
    tracked = tracking.resolve(config.tracking_uri, config.no_tracking, pathlib.Path(config.workdir))
    run_pipeline(dataclasses.replace(config.settings(), tracking=tracked))
    if tracked is not None and tracked.artifacts is not None:
        print(f"Open the MLflow UI on its runs: {tracking.ui_command(tracked)}", flush=True)
    elif tracked is not None:
        print(f"Runs and the registered model are in MLflow at {tracked.uri}", flush=True)
    return 0
