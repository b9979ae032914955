"""Model selection (fan-in): evaluate trained models on the held-out split, print and write the
results table, and, with --model-base-path, promote the winner into TF Serving's layout
(<base>/<model-name>/<version>/) as the new highest version, atomically; a winner below
--min-accuracy (by default clearly above chance) is refused and nothing is promoted.

Candidates are trained-model directories (model.keras + training.json, from any framework) or
directories that contain them, such as a search's WORKDIR/trials; or, in the Argo workflow, the trials
of --grid under --runs (RUNS/<key>/model for each grid item). By default every candidate must exist;
with --min-candidates N those without a trained model (failed trials) are skipped with a warning, and
fewer than N found is an error. --promoted-output writes what was promoted as JSON for the next step
(verify-serving --promoted).

With MLflow tracking (--tracking-uri, MLFLOW_TRACKING_URI, else the store the winner was trained with;
--no-tracking for none), the ranking is logged to the search's run, a winner above the floor is
registered as a new version of --model-name with the alias `champion`, and the aliased version is the
one promoted, tagged with its TF Serving version.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from workloads.core import logs, storage, tracking
from workloads.core.errors import DataError, WorkloadError
from workloads.core.settings import CommandConfig, ConfigError, option, positive
from workloads.data import datasets
from workloads.data.shards import ShardCache, ShardSet
from workloads.serving.tfs_config import MODEL_NAME, model_name_problem
from workloads.workflow import selection
from workloads.workflow.export import newest_version_if_from, promote_trained_model

HELP = "evaluate candidates on the held-out split, rank them, promote the best"
log = logging.getLogger(__name__)


def fraction(value: float | None) -> str | None:
    return None if value is None or 0 <= value <= 1 else f"must be between 0 and 1, got {value}"


def min_accuracy_option() -> Any:
    """``--min-accuracy``, the same flag for ``select`` and ``pipeline``."""
    return option(
        None,
        help="least held-out accuracy the winner needs to be promoted (0..1); none = a tenth of the way "
        "from chance (1/classes of the held-out data) to 1, 0.19 for 10 classes",
        check=fraction,
    )


@dataclasses.dataclass(frozen=True)
class Config(CommandConfig):
    data: str = option(help="dataset directory (its test/ split is used) or a held-out shard directory")
    candidates: tuple[str, ...] = option(
        (), help="trained-model directories, or directories containing them (or give --grid and --runs)"
    )
    grid: str | None = option(
        None,
        help="JSON list of the workflow's grid items (workloads.workflow.argo.Point.item): each item's "
        "trial, RUNS/<key>/model, is a candidate; give with --runs",
        metavar="JSON",
    )
    runs: str | None = option(None, help="URL the --grid trials write under (RUNS/<key>/model)")
    min_candidates: int | None = option(
        None,
        help="least number of trained models to select from: candidates without one (failed trials) are "
        "skipped with a warning; none = every candidate given must exist",
        check=positive,
    )
    metric: str = option("accuracy", help="ranking metric", choices=tuple(selection.METRICS))
    results: str | None = option(
        None, help="where to write the results table as JSON (path or URL); none = do not write"
    )
    model_base_path: str | None = option(
        None, help="TF Serving base path to promote the winner into; none = no promotion"
    )
    model_name: str = option(MODEL_NAME, help="model name under the base path", check=model_name_problem)
    min_accuracy: float | None = min_accuracy_option()
    reuse_promoted: bool = option(
        False,
        help="promote nothing when the store's newest version was promoted from the winner as it is now "
        "(its provenance); a re-run of the same selection then adds no version",
    )
    promoted_output: str | None = option(
        None,
        help="file (path or URL) to write what was promoted to, as JSON (model_name, version, url, "
        "run_name, metric, accuracy, data); needs --model-base-path; none = do not write",
    )
    s3_endpoint: str | None = option(None, help="S3 endpoint URL for s3:// (sets AWS_ENDPOINT_URL)")
    tracking_uri: str | None = tracking.uri_option()
    no_tracking: bool = tracking.off_option()

    def validate(self) -> None:
        if (self.grid is None) != (self.runs is None):
            raise ConfigError("--runs" if self.runs is None else "--grid", "give --grid and --runs together")
        if not self.candidates and self.grid is None:
            raise ConfigError("--candidates", "give --candidates, or --grid and --runs")
        if self.promoted_output and not self.model_base_path:
            raise ConfigError("--promoted-output", "needs --model-base-path (nothing is promoted without it)")
        self.all_candidates()

    def all_candidates(self) -> list[str]:
        """--candidates, then the trained-model directory of every --grid trial."""
        if self.grid is None or self.runs is None:
            return list(self.candidates)
        try:
            return [*self.candidates, *selection.grid_candidates(self.grid, self.runs)]
        except ValueError as error:
            raise ConfigError("--grid", str(error)) from None


def held_out(url: str) -> str:
    """The held-out shards of a dataset directory, or ``url`` itself if it is a shard directory."""
    splits = datasets.resolve_splits(url)
    if splits.test is not None:
        return splits.test
    if storage.exists(storage.join(url, "train")):
        raise DataError(url, "has no test/ split to evaluate on")
    return splits.train


def run(config: Config) -> int:
    storage.set_s3_endpoint(config.s3_endpoint)
    tracked = tracking.resolve(config.tracking_uri, config.no_tracking, None)
    candidates = selection.find_candidates(config.all_candidates(), config.min_candidates)
    test_data = ShardSet.open(held_out(config.data), cache=ShardCache())
    rows = selection.select(candidates, test_data, config.metric)
    print(selection.render_table(rows, config.metric))
    if config.results:
        table = selection.results_json(rows, config.metric, test_data.url)
        storage.publish_bytes(config.results, table.encode())
        log.info("results table written", extra=logs.fields(path=config.results))
    registered = None if config.no_tracking else _register(config, tracked, rows, test_data)
    if config.model_base_path:
        winner = rows[0] if registered is None else selection.champion(rows, registered)
        version = _promote(config, config.model_base_path, winner, test_data)
        if registered is not None:
            url = storage.join(config.model_base_path, config.model_name, str(version))
            tracking.tag_served(registered.tracking, config.model_name, registered.version, version, url)
    return 0


def _register(
    config: Config, tracked: tracking.Tracking | None, rows: list[selection.Row], test_data: ShardSet
) -> selection.Registered | None:
    """Registers a winner above the floor as the champion, in the store of :func:`selection_tracking`."""
    store = selection.selection_tracking(tracked, rows[0])
    if store is None:
        return None
    try:
        selection.check_promotable(rows[0], test_data.manifest.num_classes, config.min_accuracy)
    except WorkloadError as refused:
        log.warning("not registered: %s", refused)
        return None
    return selection.register_winner(rows, config.metric, test_data.url, store, config.model_name)


def _promote(config: Config, base: str, winner: selection.Row, test_data: ShardSet) -> int:
    selection.check_promotable(winner, test_data.manifest.num_classes, config.min_accuracy)
    current = newest_version_if_from(winner.url, base, config.model_name) if config.reuse_promoted else None
    if current is not None:
        version, url = current, storage.join(base, config.model_name, str(current))
        print(f"{winner.run_name} is already {config.model_name} version {version}: {url}")
    else:
        version, url = promote_trained_model(winner.url, base, config.model_name, test_data.url)
        print(f"promoted {winner.run_name} as {config.model_name} version {version}: {url}")
    if config.promoted_output:
        promotion = selection.Promotion(
            config.model_name, version, url, winner.run_name, config.metric, winner.accuracy, test_data.url
        )
        storage.publish_bytes(config.promoted_output, promotion.to_json().encode())
        log.info("promotion written", extra=logs.fields(path=config.promoted_output))
    return version
