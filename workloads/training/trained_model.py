"""The trained-model directory every trainer writes and model selection reads (any framework).

::

    <output>/model.keras      Keras 3 model, backend-neutral (loads under TensorFlow and PyTorch)
    <output>/training.json    what was trained, how, on what, and how it went (written last)

``training.json`` is the commit point: a directory without it is not a trained model (a chief that
died while saving). Its fields are listed in ``docs/interfaces.md`` ("Trained model directory").
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import tempfile
from typing import Any

from workloads.core import storage
from workloads.core.errors import WorkloadError

MODEL_FILE = "model.keras"
METADATA_FILE = "training.json"
FORMAT = "mlstack.trained-model"
VERSION = 2  # 2 added ``identity``
READABLE_VERSIONS = (1, 2)  # a version 1 record reads with an empty identity: selectable, never memoised


@dataclasses.dataclass(frozen=True)
class TrainingRecord:
    """``training.json``: the run's identity, hyperparameters and outcome."""

    run_name: str
    framework: str
    strategy: str
    model: str
    learning_rate: float
    batch_size: int
    epochs: int
    seed: int
    data: str
    world_size: int
    steps: int
    resumed_from_step: int
    history: list[dict[str, float]]
    wall_seconds: float
    weights_sha256: str
    created_at: float
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    # the run's identity (``runs.checkpoint_identity``: settings that change the weights, data_sha256)
    identity: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {"format": FORMAT, "version": VERSION, **dataclasses.asdict(self)}, indent=1, sort_keys=True
        )

    @classmethod
    def parse(cls, text: bytes | str, where: str) -> TrainingRecord:
        try:
            data = json.loads(text)
            if data.pop("format", None) != FORMAT or data.pop("version", None) not in READABLE_VERSIONS:
                raise ValueError(
                    f"not a {FORMAT} record of version {' or '.join(map(str, READABLE_VERSIONS))}"
                )
            return cls(**data)
        except (ValueError, TypeError) as error:
            raise WorkloadError(f"{where}: not a trained-model record ({error})") from None


def save(output: str, model: Any, record: TrainingRecord) -> None:
    """Writes the model, then ``training.json`` (the commit point)."""
    with tempfile.TemporaryDirectory(prefix="mlstack-model-") as tmp:
        local = pathlib.Path(tmp) / MODEL_FILE
        model.save(local)
        storage.upload_file(local, storage.join(output, MODEL_FILE))
    storage.publish_bytes(storage.join(output, METADATA_FILE), record.to_json().encode())


def read_record(output: str) -> TrainingRecord:
    where = storage.join(output, METADATA_FILE)
    try:
        return TrainingRecord.parse(storage.read_bytes(where), where)
    except FileNotFoundError:
        raise WorkloadError(f"{output} is not a trained model: {METADATA_FILE} is missing") from None


def is_trained_model(output: str) -> bool:
    return storage.exists(storage.join(output, METADATA_FILE))


def load_model(output: str) -> Any:
    """The Keras model of a trained-model directory."""
    import keras

    url = storage.join(output, MODEL_FILE)
    if storage.is_local(url):
        return keras.saving.load_model(storage.local_path(url), compile=False)
    with tempfile.TemporaryDirectory(prefix="mlstack-model-") as tmp:
        local = pathlib.Path(tmp) / MODEL_FILE
        local.write_bytes(storage.read_bytes(url))
        return keras.saving.load_model(local, compile=False)
