"""Model selection (fan-in): evaluate trained models on the held-out split, print and write the
results table, and, with --model-base-path, promote the winner into TF Serving's layout
(<base>/<model-name>/<version>/) as the new highest version, atomically; a winner below
--min-accuracy (by default clearly above chance) is refused and nothing is promoted.

Candidates are trained-model directories (model.keras + training.json, from any framework) or
directories that contain them, such as a search's WORKDIR/trials.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from workloads.core import logs, storage
from workloads.core.errors import DataError
from workloads.core.settings import CommandConfig, option
from workloads.data import datasets
from workloads.data.shards import ShardCache, ShardSet
from workloads.serving.tfs_config import MODEL_NAME, model_name_problem
from workloads.workflow import selection
from workloads.workflow.export import promote_trained_model

HELP = "evaluate candidates on the held-out split, rank them, promote the best"
log = logging.getLogger(__name__)


def _fraction(value: float | None) -> str | None:
    return None if value is None or 0 <= value <= 1 else f"must be between 0 and 1, got {value}"


def min_accuracy_option() -> Any:
    """``--min-accuracy``, the same flag for ``select`` and ``pipeline``."""
    return option(
        None,
        help="least held-out accuracy the winner needs to be promoted (0..1); none = a tenth of the way "
        "from chance (1/classes of the held-out data) to 1, 0.19 for 10 classes",
        check=_fraction,
    )


@dataclasses.dataclass(frozen=True)
class Config(CommandConfig):
    candidates: tuple[str, ...] = option(help="trained-model directories, or directories containing them")
    data: str = option(help="dataset directory (its test/ split is used) or a held-out shard directory")
    metric: str = option("accuracy", help="ranking metric", choices=tuple(selection.METRICS))
    results: str | None = option(
        None, help="where to write the results table as JSON (path or URL); none = do not write"
    )
    model_base_path: str | None = option(
        None, help="TF Serving base path to promote the winner into; none = no promotion"
    )
    model_name: str = option(MODEL_NAME, help="model name under the base path", check=model_name_problem)
    min_accuracy: float | None = min_accuracy_option()
    s3_endpoint: str | None = option(None, help="S3 endpoint URL for s3:// (sets AWS_ENDPOINT_URL)")


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
    candidates = selection.find_candidates(config.candidates)
    test_url = held_out(config.data)
    test_data = ShardSet.open(test_url, cache=ShardCache())
    rows = selection.select(candidates, test_data, config.metric)
    print(selection.render_table(rows, config.metric))
    if config.results:
        storage.publish_bytes(config.results, selection.results_json(rows, config.metric, test_url).encode())
        log.info("results table written", extra=logs.fields(path=config.results))
    if config.model_base_path:
        selection.check_promotable(rows[0], test_data.manifest.num_classes, config.min_accuracy)
        version, url = promote_trained_model(rows[0].url, config.model_base_path, config.model_name, test_url)
        print(f"promoted {rows[0].run_name} as {config.model_name} version {version}: {url}")
    return 0
