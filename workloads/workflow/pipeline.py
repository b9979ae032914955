"""The whole workflow, locally: data -> shards -> grid search -> selection -> export -> predictions -> serving.

Each stage is a function whose inputs are the results of the stages before it and whose result is a
typed record (:class:`Dataset`, :class:`Trained`, :class:`Selected`, :class:`Promoted`, ...), as the
steps of a workflow engine pass outputs to inputs. :func:`run_pipeline` runs them in order, prints a
header and the time of each, and ends with the artifacts every result lists.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from workloads.core import fsutil, logs, storage, tracking
from workloads.data import datasets
from workloads.data.shards import ShardCache, ShardSet
from workloads.workflow import search, selection, serving_check

log = logging.getLogger(__name__)

# The stages, in the order they run, with what each does (printed as it starts).
STAGES: dict[str, str] = {
    "data": "Fashion-MNIST IDX files or synthetic data -> checksummed shards",
    "search": "grid search, each trial a MultiWorkerMirroredStrategy job of --workers-per-trial processes",
    "select": "evaluate every trained model on the held-out split, rank; refuse a winner below --min-accuracy",
    "export": "SavedModel with both signatures, promoted as the next TF Serving version",
    "predict": "held-out predictions through the SavedModel's signatures",
    "serve": "serve-dev serves the promoted model; requests over REST and gRPC",
}


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where the shards come from: the IDX files at ``url``, or synthetic data when it is None."""

    url: str | None
    synthetic_train: int
    synthetic_test: int
    shard_size: int
    seed: int


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
    """Everything one run needs, built by the ``pipeline`` command."""

    workdir: pathlib.Path
    source: DataSource
    search: search.SearchSettings  # its data is <workdir>/data, its trials under <workdir>/search
    metric: str
    model_name: str
    min_accuracy: float | None = None  # the winner's least held-out accuracy; None = selection's default
    tracking: tracking.Tracking | None = None  # where the runs and the registered winner go; None = nowhere


class StageResult(Protocol):
    def artifacts(self) -> dict[str, str]:
        """What the stage left, label -> path or URL."""
        ...


@dataclasses.dataclass(frozen=True)
class Dataset:
    url: str
    train: str
    test: str

    def artifacts(self) -> dict[str, str]:
        return {"dataset shards (train/, test/)": self.url}


@dataclasses.dataclass(frozen=True)
class Trained:
    model_dirs: tuple[str, ...]  # the trials that did not fail
    workdir: pathlib.Path

    def artifacts(self) -> dict[str, str]:
        return {
            "trials (model/, checkpoints/, logs/ each)": str(self.workdir / "trials"),
            "search summary": str(self.workdir / "search.json"),
        }


@dataclasses.dataclass(frozen=True)
class Selected:
    winner: selection.Row
    table: pathlib.Path
    registered: selection.Registered | None = None  # the winner's registry version (with tracking)

    def artifacts(self) -> dict[str, str]:
        return {"selection table": str(self.table)}


@dataclasses.dataclass(frozen=True)
class Promoted:
    model_base_path: str
    version: int
    saved_model: str

    def artifacts(self) -> dict[str, str]:
        return {
            "TF Serving model base path": self.model_base_path,
            f"promoted SavedModel (version {self.version})": self.saved_model,
        }


@dataclasses.dataclass(frozen=True)
class Predictions:
    report: dict[str, Any]
    path: pathlib.Path

    def artifacts(self) -> dict[str, str]:
        return {"predictions from the SavedModel": str(self.path)}


def prepare_data(settings: PipelineSettings) -> Dataset:
    source, output = settings.source, settings.search.data
    if source.url:
        datasets.ingest_idx(source.url, output, shard_size=source.shard_size)
    else:
        datasets.ingest_synthetic(
            output,
            train_records=source.synthetic_train,
            test_records=source.synthetic_test,
            seed=source.seed,
            shard_size=source.shard_size,
        )
    # search trains on train/; select, export (warmup), predict and serve read test/
    splits = datasets.check_splits(output, ("train", "test"))
    return Dataset(output, splits.train, str(splits.test))


def train_grid(settings: search.SearchSettings, tracked: tracking.Tracking | None = None) -> Trained:
    results = search.run_search(settings, tracked)
    return Trained(tuple(r.model_dir for r in results if r.status != "failed"), settings.workdir)


def select_winner(trained: Trained, dataset: Dataset, settings: PipelineSettings) -> Selected:
    candidates = selection.find_candidates(trained.model_dirs)
    test_data = ShardSet.open(dataset.test, cache=ShardCache())
    rows = selection.select(candidates, test_data, settings.metric)
    print(selection.render_table(rows, settings.metric), flush=True)
    table = settings.workdir / "selection.json"
    fsutil.atomic_write_text(table, selection.results_json(rows, settings.metric, dataset.test))
    selection.check_promotable(rows[0], test_data.manifest.num_classes, settings.min_accuracy)
    tracked = settings.tracking
    if tracked is None:
        return Selected(rows[0], table)
    registered = selection.register_winner(rows, settings.metric, dataset.test, tracked, settings.model_name)
    return Selected(rows[0], table, registered)


def export_winner(selected: Selected, dataset: Dataset, settings: PipelineSettings) -> Promoted:
    from workloads.workflow.export import promote_trained_model

    base = str(settings.workdir / "serving" / "models")
    registered = selected.registered
    winner = selected.winner if registered is None else selection.champion([selected.winner], registered)
    version, url = promote_trained_model(winner.url, base, settings.model_name, dataset.test)
    if registered is not None:
        tracking.tag_served(registered.tracking, settings.model_name, registered.version, version, url)
    return Promoted(base, version, url)


def predict(promoted: Promoted, selected: Selected, dataset: Dataset, workdir: pathlib.Path) -> Predictions:
    from workloads.workflow.saved_model_check import predict_with_saved_model

    report = predict_with_saved_model(promoted.saved_model, ShardSet.open(dataset.test, cache=ShardCache()))
    report["selected"] = selected.winner.run_name
    path = workdir / "predictions.json"
    fsutil.atomic_write_text(path, json.dumps(report, indent=1))
    print(
        f"SavedModel predictions on {report['records']} held-out images: accuracy {report['accuracy']:.4f} "
        f"(selection measured {selected.winner.accuracy:.4f}); PNG-bytes signature agrees: "
        f"{report['bytes_signature_agrees']}",
        flush=True,
    )
    return Predictions(report, path)


R = TypeVar("R", bound=StageResult)


@dataclasses.dataclass
class PipelineRun:
    """What one run did so far: each stage's time and the artifacts of its result."""

    settings: PipelineSettings
    artifacts: dict[str, str] = dataclasses.field(default_factory=dict)  # label -> path or URL
    timings: dict[str, float] = dataclasses.field(default_factory=dict)

    def stage(self, name: str, work: Callable[[], R]) -> R:
        print(f"== [{list(STAGES).index(name) + 1}] {name}: {STAGES[name]}", flush=True)
        began = time.monotonic()
        result = work()
        self.timings[name] = round(time.monotonic() - began, 1)
        self.artifacts.update(result.artifacts())
        log.info("stage %s done", name, extra=logs.fields(stage=name, seconds=self.timings[name]))
        return result


def check_source(source: DataSource) -> None:
    """Before any stage: the IDX files at ``--data`` are there and reachable (synthetic data always is).

    The data stage then writes train/ and test/ and checks them (:func:`prepare_data`), and the search
    checks its data once more before its first trial; nothing else reads a source the user named.
    """
    if source.url:
        datasets.find_idx_files(source.url)


def run_pipeline(settings: PipelineSettings) -> PipelineRun:
    check_source(settings.source)
    settings.workdir.mkdir(parents=True, exist_ok=True)
    run = PipelineRun(settings)
    started = time.monotonic()
    dataset = run.stage("data", lambda: prepare_data(settings))
    trained = run.stage("search", lambda: train_grid(settings.search, settings.tracking))
    selected = run.stage("select", lambda: select_winner(trained, dataset, settings))
    promoted = run.stage("export", lambda: export_winner(selected, dataset, settings))
    run.stage("predict", lambda: predict(promoted, selected, dataset, settings.workdir))
    run.stage(
        "serve",
        lambda: serving_check.serve_promoted(
            promoted.model_base_path, settings.model_name, dataset.test, settings.workdir
        ),
    )
    run.timings["total"] = round(time.monotonic() - started, 1)
    print(summary(run, promoted), flush=True)
    return run


def summary(run: PipelineRun, promoted: Promoted) -> str:
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in run.timings.items() if k != "total")
    lines = ["", f"Pipeline finished in {run.timings['total']:.0f} s ({stages}).", "Artifacts:"]
    width = max(len(label) for label in run.artifacts) if run.artifacts else 0
    for label, where in run.artifacts.items():
        shown = where if "://" in where else str(pathlib.Path(where).resolve())
        lines.append(f"  {label.ljust(width)}  {shown}")
    if storage.is_local(promoted.model_base_path):
        model_dir = pathlib.Path(promoted.model_base_path, run.settings.model_name).resolve()
        lines.append(
            f"Serve it: tensorflow_model_server --model_name={run.settings.model_name} "
            f"--model_base_path={model_dir} --rest_api_port=8501"
        )
    return "\n".join(lines)
