"""Render the Workflow that runs the book's system in the cluster for a grid, and submit it.

The stack declares the WorkflowTemplates (one per framework): ingest -> one TFJob or PyTorchJob per grid
point, at most --parallelism at once -> selection over the trials that succeeded and promotion of the
winner -> a check that TF Serving serves it. Steps are memoized on content: submitting the same grid
over the same data again trains nothing; changing one grid point trains only that point.

Without --argo-server or --kubeconfig the Workflow is printed (or written to --output) for
`kubectl create -f` or `argo submit`. Everything is checked before anything is created.

Examples:
  python -m workloads workflow --models simple-cnn,cnn-dropout --learning-rates 0.001,0.003 > run.yaml
  python -m workloads workflow --framework pytorch --kubeconfig ~/.kube/config
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import sys

import yaml

from workloads import models
from workloads.core import fsutil, logs, storage
from workloads.core.errors import DataError
from workloads.core.settings import CommandConfig, ConfigError, non_negative, option, positive
from workloads.workflow import argo, search, submit
from workloads.workflow.search import Grid, SearchSettings

# What the workflow's pods can reach, said by every refusal of a local path.
IN_CLUSTER = "which the workflow's pods cannot see: give an hdfs://, webhdfs:// or s3:// URL"
HELP = "render (and submit) the Argo Workflow of the book's system for a grid"
log = logging.getLogger(__name__)


def _override(help_text: str) -> str:
    return f"{help_text}; none = the template's default (the stack's)"


@dataclasses.dataclass(frozen=True)
class Config(CommandConfig):
    framework: str = option("tensorflow", help="framework of the trials", choices=tuple(argo.FRAMEWORKS))
    models: tuple[str, ...] = option(Grid.models, help="model variants to try", check=models.unknown_models)
    learning_rates: tuple[float, ...] = option(Grid.learning_rates, help="learning rates to try")
    batch_sizes: tuple[int, ...] = option(Grid.batch_sizes, help="global batch sizes to try")
    epochs: int = option(SearchSettings.epochs, help="epochs per trial", check=positive)
    seed: int = option(SearchSettings.seed, help="seed shared by every trial")
    workers_per_trial: int = option(
        SearchSettings.workers_per_trial, help="worker processes (pods) per trial", check=positive
    )
    min_workers_per_trial: int = option(
        0,
        help="PyTorch trials (elastic PyTorchJobs): the fewest workers a trial goes on with when pods are "
        "lost, 1 to --workers-per-trial; 0 = all of them",
        check=non_negative,
    )
    max_restarts: int = option(
        SearchSettings.max_restarts,
        help="PyTorch trials: worker-group restarts per elastic agent (torchrun --max-restarts)",
        check=non_negative,
    )
    min_trials: int = option(1, help="least number of trials that must succeed to select", check=positive)
    parallelism: int = option(2, help="trials training at once (1 = one after another)", check=positive)
    source: str | None = option(None, help=_override("directory URL of the Fashion-MNIST IDX files"))
    skip_source_check: bool = option(
        False, help="do not check from here that --source exists (when only the cluster can reach it)"
    )
    dataset: str | None = option(None, help=_override("dataset URL the shards are written to"))
    runs: str | None = option(None, help=_override("URL the trials write under"))
    model_store: str | None = option(None, help=_override("TF Serving base path to promote into"))
    serving_url: str | None = option(None, help=_override("TF Serving's REST URL"))
    namespace: str = option(argo.NAMESPACE, help="namespace to run the workflow in (where the template is)")
    output: str | None = option(None, help="write the Workflow (YAML) to this file; none = standard output")
    argo_server: str | None = option(
        None,
        help="submit through this Argo server (https://HOST:2746); token from --token-file or ARGO_TOKEN",
    )
    token_file: str | None = option(None, help="file holding the Argo server's bearer token")
    insecure: bool = option(False, help="do not verify the Argo server's TLS certificate (self-signed)")
    kubeconfig: str | None = option(None, help="submit through the Kubernetes API of this kubeconfig")
    context: str | None = option(None, help="kubeconfig context; none = its current context")

    def validate(self) -> None:
        search.check_options(self)
        self._check_elastic()
        trials = len(self.grid().trials())
        if self.min_trials > trials:
            raise ConfigError(
                "--min-trials", f"is {self.min_trials}, but the grid has only {trials} trial(s)"
            )
        if self.argo_server and self.kubeconfig:
            raise ConfigError("--argo-server", "give --argo-server or --kubeconfig, not both")
        self._check_reachable_from_pods()

    def _check_reachable_from_pods(self) -> None:
        """The overrides are read and written by the workflow's pods, which see none of this machine's
        files: a local path would only fail there, after the run is submitted."""
        for flag, url in (("--source", self.source), ("--dataset", self.dataset), ("--runs", self.runs)):
            if url is not None and storage.scheme(url) == "file":
                raise ConfigError(flag, f"{url!r} is a path on this machine, {IN_CLUSTER}")
        # A PVC model store is a path where the steps mount the claim (serving.modelSource.base).
        store = self.model_store
        if store is not None and storage.scheme(store) == "file" and not store.startswith("/"):
            raise ConfigError(
                "--model-store", f"{store!r} is relative, {IN_CLUSTER} (or the claim's mount path)"
            )
        if self.serving_url is not None and not self.serving_url.startswith(("http://", "https://")):
            raise ConfigError("--serving-url", f"{self.serving_url!r} is not an http(s):// URL of TF Serving")

    def _check_elastic(self) -> None:
        minimum, workers = self.min_workers_per_trial, self.workers_per_trial
        if minimum and self.framework != "pytorch":
            raise ConfigError(
                "--min-workers-per-trial", "only PyTorch trials are elastic: pass --framework pytorch or 0"
            )
        if minimum > workers:
            raise ConfigError(
                "--min-workers-per-trial",
                f"is {minimum}, more than --workers-per-trial {workers}: give 1 to {workers}, or 0 for all",
            )

    def grid(self) -> Grid:
        return Grid(self.models, self.learning_rates, self.batch_sizes)

    def submission(self) -> argo.Submission:
        overrides = {
            "source": self.source,
            "dataset": self.dataset,
            "runs": self.runs,
            "model-store": self.model_store,
            "serving-url": self.serving_url,
        }
        return argo.Submission(
            framework=self.framework,
            grid=self.grid(),
            epochs=self.epochs,
            seed=self.seed,
            workers_per_trial=self.workers_per_trial,
            min_workers_per_trial=self.min_workers_per_trial,
            max_restarts=self.max_restarts,
            min_trials=self.min_trials,
            parallelism=self.parallelism,
            overrides={k: v for k, v in overrides.items() if v is not None},
        )


def run(config: Config) -> int:
    if config.source and not config.skip_source_check and not storage.exists(config.source):
        raise DataError(
            config.source,
            "--source does not exist; check the URL, or pass --skip-source-check if only the cluster reaches it",
        )
    workflow = config.submission().workflow(config.namespace)
    text = yaml.safe_dump(workflow, sort_keys=False)
    if config.output:
        fsutil.atomic_write_text(pathlib.Path(config.output), text)
    elif not (config.argo_server or config.kubeconfig):
        sys.stdout.write(text)
    if config.argo_server:
        name = submit.to_argo_server(
            config.argo_server, submit.token_from(config.token_file), workflow, config.insecure
        )
    elif config.kubeconfig:
        name = submit.with_kubeconfig(pathlib.Path(config.kubeconfig).expanduser(), workflow, config.context)
    else:
        return 0
    log.info("workflow %s submitted", name, extra=logs.fields(workflow=name, namespace=config.namespace))
    print(name)
    return 0
