"""Class names belong to the dataset: its manifest carries them (from --class-names, or Fashion-MNIST's
only for Fashion-MNIST), and selection, the exported SavedModel and predict use those names."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging

import numpy as np
import pytest

from tests.workloads.test_synthetic_and_ingest import write_fashion_mnist
from workloads import cli
from workloads.data import datasets
from workloads.data.shards import Manifest, ShardSet
from workloads.serving import class_names
from workloads.serving.client import Prediction
from workloads.serving.client_options import ClientOptions

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FASHION = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def names_of(dataset) -> tuple[str, ...]:
    return datasets.class_names(ShardSet.open(str(dataset / "train")).manifest)


def test_idx_data_other_than_fashion_mnist_is_named_by_its_label_numbers(tmp_path, caplog):
    source = write_fashion_mnist(tmp_path / "raw")
    with caplog.at_level(logging.INFO):
        datasets.ingest_idx(str(source), str(tmp_path / "shards"), shard_size=50)
    assert names_of(tmp_path / "shards") == tuple(str(i) for i in range(10))
    assert names_of(tmp_path / "shards") == datasets.class_names(
        ShardSet.open(str(tmp_path / "shards" / "test")).manifest
    )
    assert any("--class-names" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("compress", [True, False])
def test_the_fashion_mnist_release_is_recognised_by_its_label_files_gzipped_or_not(
    tmp_path, monkeypatch, compress
):
    source = write_fashion_mnist(tmp_path / "raw", compress=compress)
    digests = {}
    for split, (_, labels) in datasets.IDX_FILES.items():
        data = (source / (labels + (".gz" if compress else ""))).read_bytes()
        digests[split] = hashlib.md5(gzip.decompress(data) if compress else data).hexdigest()
    monkeypatch.setattr(datasets, "FASHION_MNIST_LABEL_MD5", digests)  # these files stand for the release
    datasets.ingest_idx(str(source), str(tmp_path / "shards"), shard_size=50)
    assert names_of(tmp_path / "shards") == FASHION


def test_synthetic_data_is_named_like_fashion_mnist(tmp_path):
    datasets.ingest_synthetic(str(tmp_path), train_records=20, test_records=10, seed=0, shard_size=64)
    assert names_of(tmp_path) == FASHION


def test_a_manifest_without_class_names_is_named_by_its_source():
    synthetic = Manifest((28, 28), 10, 64, metadata={"source": {"kind": "synthetic"}})
    streamed = Manifest((28, 28), 10, 64, metadata={})
    assert datasets.class_names(synthetic) == FASHION
    assert datasets.class_names(streamed) == tuple(str(i) for i in range(10))


def test_the_ingest_command_names_the_classes_as_told_and_a_change_is_redone(tmp_path):
    source = write_fashion_mnist(tmp_path / "raw")
    out = tmp_path / "shards"
    args = [
        "ingest",
        "--output",
        str(out),
        "--data",
        str(source),
        "--shard-size",
        "50",
        "--log-format",
        "text",
    ]
    assert cli.main([*args, "--class-names", ",".join(DIGITS)]) == 0
    assert names_of(out) == DIGITS
    renamed = tuple(name.upper() for name in DIGITS)
    assert cli.main([*args, "--class-names", ",".join(renamed)]) == 0
    assert names_of(out) == renamed and names_of(out) == datasets.class_names(
        ShardSet.open(str(out / "test")).manifest
    )


@pytest.mark.parametrize(
    "names",
    [
        "a,b,c",  # too few
        ",".join([*DIGITS, "ten"]),  # too many
        ",".join([*DIGITS[:9], "zero"]),  # repeated
    ],
)
def test_bad_class_names_exit_2_naming_the_flag(tmp_path, capsys, names):
    argv = ["ingest", "--output", str(tmp_path / "out"), "--class-names", names, "--log-format", "text"]
    assert cli.main(argv) == 2
    assert "--class-names" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A digits-named IDX dataset and a (barely) trained model of it, as every trainer writes one."""
    import time

    from workloads import models
    from workloads.training import trained_model

    root = tmp_path_factory.mktemp("digits")
    source = write_fashion_mnist(root / "raw", train=60, test=40)
    dataset = root / "dataset"
    datasets.ingest_idx(str(source), str(dataset), shard_size=50, class_names=DIGITS)
    output = root / "model"
    record = trained_model.TrainingRecord(
        run_name="digits",
        framework="tensorflow",
        strategy="multi-worker-mirrored",
        model="plain",
        learning_rate=0.001,
        batch_size=32,
        epochs=0,
        seed=0,
        data=str(dataset),
        world_size=1,
        steps=0,
        resumed_from_step=0,
        history=[],
        wall_seconds=0.0,
        weights_sha256="",
        created_at=time.time(),
    )
    trained_model.save(str(output), models.build_model("plain", seed=0), record)
    return dataset, output


def test_selection_reports_accuracy_per_class_by_the_dataset_names(trained):
    from workloads.workflow import selection

    dataset, model = trained
    rows = selection.select(
        selection.find_candidates([str(model)]), ShardSet.open(str(dataset / "test")), "accuracy"
    )
    assert tuple(rows[0].class_accuracy) == DIGITS
    table = json.loads(selection.results_json(rows, "accuracy", str(dataset / "test")))
    assert table["class_names"] == list(DIGITS) and list(table["winner"]["class_accuracy"]) == list(DIGITS)
    assert "nine" in selection.render_table(rows, "accuracy")


def test_the_exported_saved_model_carries_the_training_datasets_class_names(trained, tmp_path):
    from workloads.workflow.export import export_trained_model

    _, model = trained
    export_trained_model(str(model), str(tmp_path / "saved"))
    assert class_names.read(str(tmp_path / "saved")) == DIGITS
    assert json.loads((tmp_path / "saved" / class_names.CLASS_NAMES_FILE).read_text()) == list(DIGITS)


def test_a_promoted_version_takes_the_names_of_the_warmup_data_when_the_training_data_is_gone(
    trained, tmp_path
):
    import shutil

    from workloads.training import trained_model
    from workloads.workflow.export import promote_trained_model

    dataset, model = trained
    moved = tmp_path / "model"
    shutil.copytree(model, moved)
    record = json.loads((moved / trained_model.METADATA_FILE).read_text())
    record["data"] = str(tmp_path / "gone")
    (moved / trained_model.METADATA_FILE).write_text(json.dumps(record))
    version, url = promote_trained_model(
        str(moved), str(tmp_path / "base"), warmup_data=str(dataset / "test")
    )
    assert class_names.for_version(str(tmp_path / "base"), "fashion_mnist", version) == DIGITS
    assert class_names.read(url) == DIGITS


class FakeClient:
    """Answers every image with class 5 from version 2, as the gRPC client would (REST: no version)."""

    def __init__(self, grpc: bool) -> None:
        self.grpc = grpc
        self.asked: list[tuple[int | None, str | None]] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def latest_available_version(self) -> int:
        return 2

    def predict_images(self, images, *, version=None, label=None) -> Prediction:
        self.asked.append((version, label))
        scores = np.zeros((len(images), 10), np.float32)
        scores[:, 5] = 1.0
        answered = 2 if self.grpc else version
        return Prediction({"scores": scores, "class_ids": np.full(len(images), 5)}, answered)


def served_version_with_names(base, names) -> None:
    version = base / "2"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"")
    class_names.write(version, names)


@pytest.mark.parametrize("grpc", [True, False])
def test_predict_prints_the_class_names_of_the_version_that_answered(tmp_path, monkeypatch, capsys, grpc):
    client = FakeClient(grpc)
    monkeypatch.setattr(ClientOptions, "make_client", lambda self: client)
    served_version_with_names(tmp_path / "fashion_mnist", DIGITS)
    server = "grpc://127.0.0.1:8500" if grpc else "http://127.0.0.1:8501"
    argv = ["predict", "--synthetic", "2", "--server-url", server, "--log-format", "text"]
    assert cli.main([*argv, "--model-base-path", str(tmp_path / "fashion_mnist")]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["class_name"] for line in lines] == ["five", "five"]
    assert client.asked == [(None, None)] if grpc else [(2, None)]


def test_predict_names_classes_as_told_or_by_number_never_as_fashion_mnist(monkeypatch, capsys):
    monkeypatch.setattr(ClientOptions, "make_client", lambda self: FakeClient(grpc=True))
    argv = ["predict", "--synthetic", "1", "--server-url", "grpc://127.0.0.1:8500", "--log-format", "text"]
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["class_name"] == "5"
    assert cli.main([*argv, "--class-names", ",".join(DIGITS)]) == 0
    assert json.loads(capsys.readouterr().out)["class_name"] == "five"
