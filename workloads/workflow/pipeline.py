"""The whole workflow as a list of stages: data -> shards -> grid search -> selection -> export -> predictions.

Each :class:`Stage` reads and extends one :class:`PipelineRun` (the config, the work directory, the
artifacts so far). To add a step, append a stage to :data:`STAGES` (the serving work adds "serve the
promoted model through the development server and send requests" this way); the summary at the end
lists every artifact any stage registered.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import time
from collections.abc import Callable
from typing import Any

from workloads.core import fsutil, logs, storage
from workloads.data import datasets
from workloads.data.shards import ShardCache, ShardSet
from workloads.workflow import search, selection
from workloads.workflow.serving_check import stage_serve

log = logging.getLogger(__name__)


@dataclasses.dataclass
class PipelineRun:
    """State shared by the stages of one pipeline run."""

    config: Any
    workdir: pathlib.Path
    artifacts: dict[str, str] = dataclasses.field(default_factory=dict)  # label -> path or URL
    values: dict[str, Any] = dataclasses.field(default_factory=dict)  # results later stages need
    timings: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    description: str
    run: Callable[[PipelineRun], None]


def stage_data(run: PipelineRun) -> None:
    config, output = run.config, str(run.workdir / "data")
    if config.data:
        datasets.ingest_idx(config.data, output, shard_size=config.shard_size)
    else:
        datasets.ingest_synthetic(
            output,
            train_records=config.synthetic_train,
            test_records=config.synthetic_test,
            seed=config.seed,
            shard_size=config.shard_size,
        )
    splits = datasets.resolve_splits(output)
    run.values.update(dataset=output, train=splits.train, test=splits.test)
    run.artifacts["dataset shards (train/, test/)"] = output


def stage_search(run: PipelineRun) -> None:
    config = run.config
    settings = search.SearchSettings(
        data=run.values["dataset"],
        workdir=run.workdir / "search",
        epochs=config.epochs,
        seed=config.seed,
        workers_per_trial=config.workers_per_trial,
        checkpoint_every=config.checkpoint_every,
        max_restarts=config.max_restarts,
        trial_timeout=config.trial_timeout,
        collective_timeout=120.0,
    )
    trials = search.grid(config.models, config.learning_rates, config.batch_sizes)
    results = search.run_search(settings, trials)
    run.values["trained"] = [r.model_dir for r in results if r.status != "failed"]
    run.artifacts["trials (model/, checkpoints/, logs/ each)"] = str(settings.workdir / "trials")
    run.artifacts["search summary"] = str(settings.workdir / "search.json")


def stage_select(run: PipelineRun) -> None:
    candidates = selection.find_candidates(run.values["trained"])
    rows = selection.select(
        candidates, ShardSet.open(run.values["test"], cache=ShardCache()), run.config.metric
    )
    print(selection.render_table(rows, run.config.metric), flush=True)
    table = run.workdir / "selection.json"
    fsutil.atomic_write_text(table, selection.results_json(rows, run.config.metric, run.values["test"]))
    run.values["winner"] = rows[0]
    run.artifacts["selection table"] = str(table)


def stage_export(run: PipelineRun) -> None:
    from workloads.workflow.export import promote_trained_model

    base = str(run.workdir / "serving" / "models")
    version, url = promote_trained_model(
        run.values["winner"].url, base, run.config.model_name, run.values["test"]
    )
    run.values.update(model_base_path=base, version=version, saved_model=url)
    run.artifacts["TF Serving model base path"] = base
    run.artifacts[f"promoted SavedModel (version {version})"] = url


def stage_predict(run: PipelineRun) -> None:
    from workloads.workflow.saved_model_check import predict_with_saved_model

    report = predict_with_saved_model(
        run.values["saved_model"], ShardSet.open(run.values["test"], cache=ShardCache())
    )
    report["selected"] = run.values["winner"].run_name
    path = run.workdir / "predictions.json"
    fsutil.atomic_write_text(path, json.dumps(report, indent=1))
    run.values["predictions"] = report
    print(
        f"SavedModel predictions on {report['records']} held-out images: accuracy {report['accuracy']:.4f} "
        f"(selection measured {run.values['winner'].accuracy:.4f}); PNG-bytes signature agrees: "
        f"{report['bytes_signature_agrees']}",
        flush=True,
    )
    run.artifacts["predictions from the SavedModel"] = str(path)


STAGES: list[Stage] = [
    Stage("data", "Fashion-MNIST IDX files or synthetic data -> checksummed shards", stage_data),
    Stage("search", "grid search, each trial a 2-worker MultiWorkerMirroredStrategy job", stage_search),
    Stage("select", "evaluate every trained model on the held-out split, rank", stage_select),
    Stage("export", "SavedModel with both signatures, promoted as the next TF Serving version", stage_export),
    Stage("predict", "held-out predictions through the SavedModel's signatures", stage_predict),
    Stage("serve", "serve-dev serves the promoted model; requests over REST and gRPC", stage_serve),
]


def run_pipeline(config: Any, stages: list[Stage] | None = None) -> PipelineRun:
    run = PipelineRun(config=config, workdir=pathlib.Path(config.workdir))
    run.workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    for number, stage in enumerate(stages if stages is not None else STAGES, 1):
        print(f"== [{number}] {stage.name}: {stage.description}", flush=True)
        began = time.monotonic()
        stage.run(run)
        run.timings[stage.name] = round(time.monotonic() - began, 1)
        log.info(
            "stage %s done", stage.name, extra=logs.fields(stage=stage.name, seconds=run.timings[stage.name])
        )
    run.timings["total"] = round(time.monotonic() - started, 1)
    print(summary(run), flush=True)
    return run


def summary(run: PipelineRun) -> str:
    lines = [
        "",
        f"Pipeline finished in {run.timings['total']:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in run.timings.items() if k != 'total')}).",
        "Artifacts:",
    ]
    width = max(len(label) for label in run.artifacts) if run.artifacts else 0
    for label, where in run.artifacts.items():
        shown = where if "://" in where else str(pathlib.Path(where).resolve())
        lines.append(f"  {label.ljust(width)}  {shown}")
    if storage.is_local(run.values.get("model_base_path", "")) and "model_base_path" in run.values:
        lines.append(
            f"Serve it: tensorflow_model_server --model_name={run.config.model_name} "
            f"--model_base_path={pathlib.Path(run.values['model_base_path'], run.config.model_name).resolve()} --rest_api_port=8501"
        )
    return "\n".join(lines)
