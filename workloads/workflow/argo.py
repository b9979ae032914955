"""The book's system as an Argo workflow: what the stack's WorkflowTemplates and a submission share.

The stack declares one WorkflowTemplate per framework (``infra.specs.workflow``): ingest -> one
training job per grid point (fan-out) -> selection and promotion (fan-in) -> a check of what TF Serving
then serves. A submission is a Workflow that names the template and gives its arguments; the
``workflow`` command renders it from flags. This module is the contract between the two sides: the
template names, the parameter names, the grid items and their content keys, where each trial writes,
and the files the steps leave their outputs in. Nothing here talks to a cluster.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from workloads.workflow.search import Grid, SearchSettings, Trial

# framework -> (kind of its training job, distribution strategy the template's trials use)
FRAMEWORKS: dict[str, tuple[str, str]] = {
    "tensorflow": ("TFJob", "multi-worker-mirrored"),
    "pytorch": ("PyTorchJob", "ddp"),
}
API_VERSION = "argoproj.io/v1alpha1"
# Where the templates are and the workflows run: the training namespace (infra.specs.namespaces).
NAMESPACE = "mlstack-training"

# Where the steps write what Argo reads back as output parameters (a writable emptyDir in the pods).
OUTPUTS_DIR = "/tmp/outputs"
DATASET_DIGEST_FILE = f"{OUTPUTS_DIR}/dataset-digest"
PROMOTED_FILE = f"{OUTPUTS_DIR}/promoted.json"

# The workflow's parameters: name -> what it is. The template declares every one (with the stack's
# defaults where there is one); a submission gives the grid's and whatever else it changes.
PARAMETERS: dict[str, str] = {
    "source": "directory URL of the four Fashion-MNIST IDX files; empty = synthetic data",
    "synthetic-train": "synthetic training records (empty source)",
    "synthetic-test": "synthetic held-out records (empty source)",
    "shard-size": "records per shard",
    "dataset": "dataset URL the shards are written to (train/ and test/)",
    "runs": "URL under which every trial writes <key>/model and <key>/checkpoints",
    "model-store": "TF Serving base path the winner is promoted into",
    "model-name": "model name under the model store and in TF Serving",
    "serving-url": "TF Serving's REST URL, checked after the promotion",
    "smoke-records": "held-out records sent to TF Serving after the promotion",
    "grid": "JSON list of the trials, one item per grid point (see workloads.workflow.argo.Point)",
    "min-trials": "least number of trials that must succeed for the selection to run",
}


def template_name(framework: str) -> str:
    """The WorkflowTemplate of ``framework``'s trials."""
    return f"train-select-serve-{framework}"


def trial_dir(runs: str, key: str) -> str:
    """Where the trial of content key ``key`` writes ``model/`` and ``checkpoints/``."""
    return f"{runs.rstrip('/')}/{key}"


def _digest(value: Any, length: int = 20) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# How a trial's job rides out lost workers: not what it trains, so not in its key.
_HOW_IT_RUNS = ("min_workers", "max_restarts")


@dataclasses.dataclass(frozen=True)
class Point:
    """One trial of the grid with everything that changes what it trains, and how its job runs."""

    framework: str
    trial: Trial
    epochs: int
    seed: int
    workers: int
    min_workers: int = 0
    """Elastic PyTorchJob: the fewest workers the trial goes on with; 0 = all of them (fixed size)."""
    max_restarts: int = SearchSettings.max_restarts
    """Elastic PyTorchJob: worker-group restarts per agent."""

    @property
    def key(self) -> str:
        """Content key: the same settings give the same key, whatever the trial is called."""
        trained = {k: v for k, v in dataclasses.asdict(self).items() if k not in _HOW_IT_RUNS}
        return _digest({**trained, "strategy": FRAMEWORKS[self.framework][1]})

    def item(self) -> dict[str, str]:
        """The grid item the template's trial reads (``{{item.<name>}}``), every value a string."""
        return {
            "key": self.key,
            "name": self.trial.name,
            "model": self.trial.model,
            "learning-rate": repr(self.trial.learning_rate),
            "batch-size": str(self.trial.batch_size),
            "epochs": str(self.epochs),
            "seed": str(self.seed),
            "workers": str(self.workers),
            "min-workers": str(self.min_workers or self.workers),
            "max-restarts": str(self.max_restarts),
        }


ITEM_FIELDS = tuple(Point("tensorflow", Trial("m", 0.1, 1), 1, 0, 1).item())


@dataclasses.dataclass(frozen=True)
class Submission:
    """One run of the book's system: the grid and whatever else the submitter changes."""

    framework: str
    grid: Grid
    epochs: int
    seed: int
    workers_per_trial: int
    min_trials: int
    parallelism: int
    overrides: dict[str, str] = dataclasses.field(default_factory=dict)  # parameter -> value
    min_workers_per_trial: int = 0  # see Point.min_workers
    max_restarts: int = SearchSettings.max_restarts

    def points(self) -> list[Point]:
        return [
            Point(
                self.framework,
                trial,
                self.epochs,
                self.seed,
                self.workers_per_trial,
                self.min_workers_per_trial,
                self.max_restarts,
            )
            for trial in self.grid.trials()
        ]

    def arguments(self) -> dict[str, str]:
        """The workflow's arguments: the grid's parameters, then the overrides."""
        items = [point.item() for point in self.points()]
        return {
            "grid": json.dumps(items, separators=(",", ":")),
            "min-trials": str(self.min_trials),
            **self.overrides,
        }

    def workflow(self, namespace: str) -> dict[str, Any]:
        """The Workflow that runs the framework's template with these arguments."""
        name = template_name(self.framework)
        return {
            "apiVersion": API_VERSION,
            "kind": "Workflow",
            "metadata": {"generateName": f"{name}-", "namespace": namespace},
            "spec": {
                "workflowTemplateRef": {"name": name},
                # Trials at once: 1 trains them one after another, more in parallel.
                "parallelism": self.parallelism,
                "arguments": {"parameters": [{"name": k, "value": v} for k, v in self.arguments().items()]},
            },
        }
