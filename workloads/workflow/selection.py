"""Model selection (fan-in): evaluate every candidate on the held-out split, rank them, pick the best.

Candidates are trained-model directories (``model.keras`` + ``training.json``) from any framework.
Each is evaluated on the same records with the same code; the ranking metric is configurable
(``accuracy`` and ``macro_f1`` higher is better, ``loss`` lower is better) and ties are broken by
the run name, so the same inputs always select the same winner. Each row also has the accuracy on
each class, keyed by the held-out dataset's class names (``datasets.class_names``).

In the Argo workflow the candidates are the trials of the grid (:func:`grid_candidates`), some of which
may have failed: :func:`find_candidates` with ``min_found`` skips those and refuses to select from too
few. What was promoted is handed on as a :class:`Promotion` (JSON), which ``verify-serving`` reads.

With tracking, the winner is registered in MLflow's model registry as a new version with the
``champion`` alias (:func:`register_winner`), and what is promoted is the candidate that alias points
at (:func:`champion`): the registry, not the ranking, decides what is served.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from workloads.core import logs, progress, storage, tracking
from workloads.core.errors import WorkloadError
from workloads.data import datasets
from workloads.data.sampling import sequential_batches
from workloads.data.shards import ShardSet
from workloads.training import trained_model
from workloads.workflow import argo

log = logging.getLogger(__name__)

METRICS: dict[str, bool] = {"accuracy": True, "macro_f1": True, "loss": False}  # name -> higher is better
EVAL_BATCH = 1000


@dataclasses.dataclass(frozen=True)
class Candidate:
    url: str
    record: trained_model.TrainingRecord


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the results table."""

    rank: int
    run_name: str
    model: str
    learning_rate: float
    batch_size: int
    framework: str
    accuracy: float
    macro_f1: float
    loss: float
    url: str
    # accuracy on each class's records (None: no records), by the dataset's class names in class-id order
    class_accuracy: dict[str, float | None] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Promotion:
    """What ``select`` promoted (``--promoted-output``, the workflow's ``promoted`` output): the version
    TF Serving is to serve, the run it came from, and its held-out accuracy on ``data``."""

    model_name: str
    version: int
    url: str
    run_name: str
    metric: str  # the ranking metric's name
    accuracy: float
    data: str  # the held-out shards the accuracy was measured on

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def parse(cls, text: str) -> Promotion:
        """Raises ``ValueError`` saying what is wrong with ``text``."""
        data = _load_json(text)
        names = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(data, dict) or not set(names) <= set(data):
            raise ValueError(
                f"must be a JSON object of {', '.join(names)} (as select --promoted-output writes)"
            )
        problems = [problem for name in names if (problem := _promotion_problem(name, data[name]))]
        if problems:
            raise ValueError("; ".join(problems))
        return cls(**{name: data[name] for name in names})


def _promotion_problem(name: str, value: Any) -> str | None:
    if name == "version":
        good = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        return None if good else f"version must be a whole number of at least 1, got {value!r}"
    if name == "accuracy":
        good = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1
        return None if good else f"accuracy must be a number between 0 and 1, got {value!r}"
    return None if isinstance(value, str) else f"{name} must be a string, got {value!r}"


def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"is not JSON: {error}") from None


def grid_candidates(grid: str, runs: str) -> list[str]:
    """The trained-model directory of every trial of ``grid`` (the workflow's JSON list of
    :meth:`argo.Point.item`), under ``runs``; ``ValueError`` saying what is wrong with ``grid``."""
    items = _load_json(grid)
    if not isinstance(items, list) or not items:
        raise ValueError("must be a non-empty JSON list of grid items (as the workflow command renders it)")
    keys = [item["key"] for item in items if isinstance(item, dict) and isinstance(item.get("key"), str)]
    if len(keys) != len(items) or not all(keys):
        raise ValueError('every item must be a JSON object with a "key" string')
    return [f"{argo.trial_dir(runs, key)}/model" for key in keys]


def find_candidates(urls: Sequence[str], min_found: int | None = None) -> list[Candidate]:
    """Trained-model directories among ``urls`` and below them (a search's ``trials/*/model``).

    ``min_found`` None: every URL must exist. A number: URLs without a trained model (a failed trial)
    are skipped with a warning each, and fewer than ``min_found`` models found is an error.
    """
    found: dict[str, Candidate] = {}
    missing = []
    for url in urls:
        dirs = _trained_dirs(url, must_exist=min_found is None)
        if not dirs:
            missing.append(url)
        found.update({d: Candidate(d, trained_model.read_record(d)) for d in dirs})
    if min_found is not None:
        _check_enough(len(found), min_found, missing)
    if not found:
        raise WorkloadError(f"no trained models (directories with training.json) under {list(urls)}")
    return sorted(found.values(), key=lambda c: c.record.run_name)


def _check_enough(found: int, min_found: int, missing: Sequence[str]) -> None:
    for url in missing:
        log.warning("skipping candidate %s: no trained model there (a failed trial?)", url)
    if found < min_found:
        raise WorkloadError(
            f"--min-candidates {min_found}: found {found} trained model(s), fewer than {min_found}; "
            f"missing: {', '.join(missing) or 'none'}; nothing was promoted"
        )


def _trained_dirs(url: str, must_exist: bool = True) -> list[str]:
    if trained_model.is_trained_model(url):
        return [url]
    fs, path = storage.filesystem(url)
    if not fs.exists(path):
        if must_exist:
            raise WorkloadError(f"{url} does not exist")
        return []
    pattern = path.rstrip("/") + "/**/" + trained_model.METADATA_FILE
    return sorted(storage.url_of(url, match.rsplit("/", 1)[0]) for match in fs.glob(pattern))


def evaluate(model: Any, data: ShardSet) -> dict[str, Any]:
    """Accuracy, macro-F1, mean cross-entropy and per-class accuracy (``class_accuracy``, a list by
    class id) of ``model`` on every record of ``data``."""
    predictions, labels, losses = [], [], []
    for images, batch_labels in sequential_batches(data, EVAL_BATCH):
        scores = np.asarray(model(images.astype(np.float32), training=False))
        picked = np.clip(scores[np.arange(len(batch_labels)), batch_labels], 1e-7, 1.0)
        losses.append(-np.log(picked))
        predictions.append(scores.argmax(axis=1))
        labels.append(batch_labels)
    all_labels, all_predictions = np.concatenate(labels), np.concatenate(predictions)
    return {
        **classification_metrics(all_labels, all_predictions, np.concatenate(losses)),
        "class_accuracy": class_accuracy(all_labels, all_predictions, data.manifest.num_classes),
    }


def class_accuracy(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> list[float | None]:
    """The share of each class's records predicted as that class (its recall); None for a class with none."""
    return [
        float(np.mean(predictions[labels == c] == c)) if np.any(labels == c) else None
        for c in range(num_classes)
    ]


def classification_metrics(
    labels: np.ndarray, predictions: np.ndarray, losses: np.ndarray | None = None
) -> dict[str, float]:
    classes = int(max(labels.max(), predictions.max())) + 1
    f1 = []
    for c in range(classes):
        true_positive = np.sum((predictions == c) & (labels == c))
        predicted, actual = np.sum(predictions == c), np.sum(labels == c)
        if actual == 0 and predicted == 0:
            continue
        f1.append(2 * true_positive / (predicted + actual) if predicted + actual else 0.0)
    result = {"accuracy": float(np.mean(predictions == labels)), "macro_f1": float(np.mean(f1))}
    if losses is not None:
        result["loss"] = float(np.mean(losses))
    return result


def select(candidates: Sequence[Candidate], data: ShardSet, metric: str) -> list[Row]:
    """Evaluates every candidate and returns the table, best first."""
    if metric not in METRICS:
        raise WorkloadError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    names = datasets.class_names(data.manifest)
    scored = []
    with progress.bar(len(candidates), "evaluate candidates", unit="model") as bar:
        for candidate in candidates:
            model = trained_model.load_model(candidate.url)
            result = evaluate(model, data)
            log.info(
                "evaluated %s",
                candidate.record.run_name,
                extra=logs.fields(run=candidate.record.run_name, **result),
            )
            scored.append((candidate, result))
            bar.update(1)
    higher_is_better = METRICS[metric]
    scored.sort(
        key=lambda item: (-item[1][metric] if higher_is_better else item[1][metric], item[0].record.run_name)
    )
    return [
        Row(
            rank=index + 1,
            run_name=candidate.record.run_name,
            model=candidate.record.model,
            learning_rate=candidate.record.learning_rate,
            batch_size=candidate.record.batch_size,
            framework=candidate.record.framework,
            accuracy=round(result["accuracy"], 5),
            macro_f1=round(result["macro_f1"], 5),
            loss=round(result["loss"], 5),
            url=candidate.url,
            class_accuracy={
                name: None if value is None else round(value, 5)
                for name, value in zip(names, result["class_accuracy"], strict=True)
            },
        )
        for index, (candidate, result) in enumerate(scored)
    ]


@dataclasses.dataclass(frozen=True)
class Registered:
    """The registry version :func:`register_winner` created, in the store it is in."""

    tracking: tracking.Tracking
    model_name: str
    version: int


def selection_tracking(tracked: tracking.Tracking | None, winner: Row) -> tracking.Tracking | None:
    """The store selection registers in: ``tracked`` (a flag or MLFLOW_TRACKING_URI), else the one the
    winner was trained with; None when the winner has no run (trained without tracking)."""
    if tracked is not None:
        return tracked
    run = tracking.run_of_model(winner.url)
    if run is None:
        return None
    found = tracking.Tracking.at(run["tracking_uri"])
    tracking.check_reachable(found)
    return found


def register_winner(
    rows: Sequence[Row], metric: str, data_url: str, tracked: tracking.Tracking, model_name: str
) -> Registered | None:
    """Logs the ranking to the search's run and registers the winner as ``model_name``'s champion;
    None (with a warning) when the winner was not trained in ``tracked``."""
    run = tracking.run_of_model(rows[0].url)
    if run is None or run["tracking_uri"] != tracked.uri:
        log.warning(
            "the winner %s has no run in MLflow at %s: the registry is not updated",
            rows[0].run_name,
            tracked.uri,
        )
        return None
    ranking = {
        "ranking.txt": render_table(rows, metric),
        "ranking.json": results_json(rows, metric, data_url),
    }
    version = tracking.register_champion(tracked, model_name, run["run_id"], ranking)
    return Registered(tracked, model_name, version)


def champion(rows: Sequence[Row], registered: Registered) -> Row:
    """The candidate the registry's ``champion`` alias points at: the one whose run it is."""
    aliased = tracking.champion_version(registered.tracking, registered.model_name, "--model-name")
    version, run_id = aliased.version, aliased.run_id
    for row in rows:
        run = tracking.run_of_model(row.url)
        if run is not None and run["run_id"] == run_id:
            return row
    raise WorkloadError(
        f"alias {tracking.CHAMPION!r} of registered model {registered.model_name!r} points at version "
        f"{version} (run {run_id}), which is none of the candidates; nothing was promoted"
    )


def default_min_accuracy(num_classes: int) -> float:
    """The least held-out accuracy a winner needs to be promoted when ``--min-accuracy`` is not given:
    a tenth of the way from chance (``1/num_classes``, uniform guessing) to perfect, i.e. Cohen's kappa
    of 0.1 against guessing. 0.19 for 10 classes, 0.55 for 2: clearly above chance (for 10 classes on
    1000 held-out records, 9 standard deviations of a guesser's accuracy) yet far below any trained
    model, so it stops garbage (an untrained model, or one trained on other labels) and nothing else."""
    chance = 1 / max(num_classes, 1)
    return chance + 0.1 * (1 - chance)


def check_promotable(winner: Row, num_classes: int, min_accuracy: float | None = None) -> None:
    """Refuses to promote a winner whose held-out accuracy is below ``min_accuracy`` (None: the
    default for ``num_classes``, :func:`default_min_accuracy`); whatever the ranking metric."""
    floor = default_min_accuracy(num_classes) if min_accuracy is None else min_accuracy
    if winner.accuracy < floor:
        chance = 1 / max(num_classes, 1)
        raise WorkloadError(
            f"not promoting {winner.run_name}: its held-out accuracy {winner.accuracy:.4f} is below the "
            f"floor {floor:.4f} (chance for {num_classes} classes is {chance:.4f}; set the floor with "
            "--min-accuracy); nothing was promoted"
        )


def results_json(rows: Sequence[Row], metric: str, data_url: str) -> str:
    return json.dumps(
        {
            "metric": metric,
            "higher_is_better": METRICS[metric],
            "evaluated_on": data_url,
            "class_names": list(rows[0].class_accuracy) if rows else [],
            "winner": dataclasses.asdict(rows[0]) if rows else None,
            "candidates": [dataclasses.asdict(row) for row in rows],
        },
        indent=1,
    )


def render_table(rows: Sequence[Row], metric: str) -> str:
    """The results as a fixed-width text table, the selected row marked."""
    header = ("rank", "run", "model", "lr", "batch", "framework", "accuracy", "macro_f1", "loss")
    lines = [
        (
            str(row.rank),
            row.run_name,
            row.model,
            f"{row.learning_rate:g}",
            str(row.batch_size),
            row.framework,
            f"{row.accuracy:.4f}",
            f"{row.macro_f1:.4f}",
            f"{row.loss:.4f}",
        )
        for row in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    for index, line in enumerate(lines):
        marker = "  <- selected" if index == 0 else ""
        out.append("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) + marker)
    if rows and rows[0].class_accuracy:
        per_class = ", ".join(
            f"{name} {'-' if value is None else f'{value:.4f}'}"
            for name, value in rows[0].class_accuracy.items()
        )
        out.append(f"selected, accuracy per class: {per_class}")
    out.append(f"ranked by {metric} ({'higher' if METRICS[metric] else 'lower'} is better)")
    return "\n".join(out)
