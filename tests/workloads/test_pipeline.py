"""The whole pipeline once (a small `make demo`), then what it produced: two-worker trainings, the
selection table, the promoted SavedModel and its serving parity with the in-memory model.

Everything here shares one pipeline run (``demo``), so it lives on one xdist worker.
"""

import io
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tests.workloads.support import ROOT, json_lines, run_workloads, subprocess_env
from workloads.data.shards import ShardSet
from workloads.training import trained_model

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pipeline")]
TRIALS = ("plain-lr0.003-b64", "batchnorm-lr0.003-b64")


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    result = run_workloads(
        "pipeline", "--workdir", str(workdir),
        "--synthetic-train", "2048", "--synthetic-test", "512", "--shard-size", "512",
        "--models", "plain", "batchnorm", "--learning-rates", "0.003", "--batch-sizes", "64",
        "--epochs", "3", "--checkpoint-every", "20",
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, result


@pytest.fixture(scope="session")
def selected(demo):
    workdir, _ = demo
    table = json.loads((workdir / "selection.json").read_text())
    return table, pathlib.Path(table["winner"]["url"]), workdir / "serving" / "models" / "fashion_mnist" / "1"


@pytest.fixture(scope="session")
def test_images(demo):
    workdir, _ = demo
    images, labels = ShardSet.open(str(workdir / "data" / "test")).read_all()
    return images[:64], labels[:64]


def test_the_pipeline_ends_by_listing_every_artifact_and_they_exist(demo):
    workdir, result = demo
    listing = result.stdout[result.stdout.index("Artifacts:") :]
    for relative in (
        "data",
        "search/trials",
        "search/search.json",
        "selection.json",
        "serving/models/fashion_mnist/1",
        "predictions.json",
    ):
        path = (workdir / relative).resolve()
        assert str(path) in listing, relative
        assert path.exists(), relative


def test_each_trial_trained_on_two_workers_lowered_the_loss_and_ended_with_identical_weights(demo):
    workdir, _ = demo
    for trial in TRIALS:
        directory = workdir / "search" / "trials" / trial
        record = trained_model.read_record(str(directory / "model"))
        assert record.world_size == 2 and record.steps == 3 * (2048 // 64)
        losses = [epoch["mean_loss"] for epoch in record.history]
        assert losses[-1] < losses[0] * 0.7, losses
        digests = set()
        for worker in (0, 1):
            records = json_lines((directory / "logs" / f"worker-{worker}.log").read_text())
            digests |= {r["weights_sha256"] for r in records if r["msg"] == "final weights"}
            steps = [r for r in records if r["msg"].startswith("training data")]
            assert steps and steps[0]["per_worker_batch"] == 32
        assert digests == {record.weights_sha256}, trial


def test_the_selection_table_ranks_every_candidate_by_held_out_accuracy(demo, selected):
    _, result = demo
    table, _, _ = selected
    names = [row["run_name"] for row in table["candidates"]]
    assert sorted(names) == sorted(TRIALS)
    accuracies = [row["accuracy"] for row in table["candidates"]]
    assert accuracies == sorted(accuracies, reverse=True)
    assert table["winner"] == table["candidates"][0] and table["metric"] == "accuracy"
    assert table["winner"]["accuracy"] > 0.6
    assert f"{table['winner']['run_name']}" in result.stdout and "<- selected" in result.stdout


def test_predictions_through_the_saved_model_match_the_selection_measurement(demo, selected):
    workdir, _ = demo
    table, _, _ = selected
    predictions = json.loads((workdir / "predictions.json").read_text())
    assert predictions["records"] == 512
    assert predictions["accuracy"] == pytest.approx(table["winner"]["accuracy"], abs=1e-4)
    assert predictions["bytes_signature_agrees"]


def test_the_saved_model_has_exactly_the_documented_signatures(selected):
    import tensorflow as tf

    _, _, saved_model = selected
    loaded = tf.saved_model.load(str(saved_model))
    assert set(loaded.signatures) == {"serving_default", "serving_bytes"}
    default = loaded.signatures["serving_default"]
    assert {k: (v.dtype, v.shape.as_list()) for k, v in default.structured_input_signature[1].items()} == {
        "images": (tf.float32, [None, 28, 28])
    }
    encoded = loaded.signatures["serving_bytes"]
    assert {k: (v.dtype, v.shape.as_list()) for k, v in encoded.structured_input_signature[1].items()} == {
        "image_bytes": (tf.string, [None])
    }
    for signature in (default, encoded):
        outputs = {k: (v.dtype, v.shape.as_list()) for k, v in signature.structured_outputs.items()}
        assert outputs == {"scores": (tf.float32, [None, 10]), "class_ids": (tf.int64, [None])}


def test_both_signatures_agree_with_the_in_memory_model_on_the_same_images(selected, test_images):
    import tensorflow as tf

    from workloads.workflow.export import encode_png

    _, winner, saved_model = selected
    images, _ = test_images
    model = trained_model.load_model(str(winner))
    expected = np.asarray(model(images.astype(np.float32), training=False))
    loaded = tf.saved_model.load(str(saved_model))
    raw = loaded.signatures["serving_default"](images=tf.constant(images.astype(np.float32)))
    png = loaded.signatures["serving_bytes"](image_bytes=tf.constant([encode_png(i) for i in images]))
    for output in (raw, png):
        np.testing.assert_allclose(output["scores"].numpy(), expected, atol=1e-5)
        assert np.array_equal(output["class_ids"].numpy(), expected.argmax(axis=1))


def test_serving_bytes_takes_jpeg_colour_and_other_sizes(selected, test_images):
    import tensorflow as tf
    from PIL import Image

    _, _, saved_model = selected
    images, _ = test_images
    encoded = []
    for image in images[:4]:
        big = Image.fromarray(image).resize((56, 56)).convert("RGB")
        buffer = io.BytesIO()
        big.save(buffer, format="JPEG", quality=95)
        encoded.append(buffer.getvalue())
    out = tf.saved_model.load(str(saved_model)).signatures["serving_bytes"](image_bytes=tf.constant(encoded))
    scores = out["scores"].numpy()
    assert scores.shape == (4, 10) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)


def test_the_warmup_file_replays_one_request_per_signature(selected):
    import tensorflow as tf

    from workloads.workflow.export import WARMUP_FILE, read_warmup_file

    _, _, saved_model = selected
    records = read_warmup_file(saved_model / WARMUP_FILE)
    requests = [r.predict_log.request for r in records]
    assert sorted(r.model_spec.signature_name for r in requests) == ["serving_bytes", "serving_default"]
    assert all(r.model_spec.name == "fashion_mnist" for r in requests)
    loaded = tf.saved_model.load(str(saved_model))
    for request in requests:
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        out = loaded.signatures[request.model_spec.signature_name](
            **{k: tf.constant(v) for k, v in inputs.items()}
        )
        assert out["scores"].shape[1] == 10


def test_promoting_again_adds_the_next_version_and_leaves_the_first_intact(demo, selected):
    from workloads.workflow.export import promote_trained_model

    workdir, _ = demo
    _, winner, first = selected
    before = sorted((p.relative_to(first), p.stat().st_size) for p in first.rglob("*") if p.is_file())
    version, url = promote_trained_model(str(winner), str(workdir / "serving" / "models"))
    assert version == 2 and pathlib.Path(url).name == "2" and (pathlib.Path(url) / "saved_model.pb").exists()
    assert sorted((p.relative_to(first), p.stat().st_size) for p in first.rglob("*") if p.is_file()) == before


def test_a_rerun_of_the_search_reuses_every_trained_trial(demo):
    workdir, _ = demo
    result = run_workloads(
        "search", "--data", str(workdir / "data"), "--workdir", str(workdir / "search"),
        "--models", "plain", "batchnorm", "--learning-rates", "0.003", "--batch-sizes", "64", "--epochs", "3",
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((workdir / "search" / "search.json").read_text())
    assert [t["status"] for t in summary["trials"]] == ["memoised", "memoised"]


def test_the_trained_model_file_runs_unchanged_under_the_pytorch_backend(selected, test_images, tmp_path):
    """The models are backend-neutral Keras 3: a PyTorch trainer can reuse definitions and files."""
    _, winner, _ = selected
    images, _ = test_images
    model = trained_model.load_model(str(winner))
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "expected.npy", np.asarray(model(images.astype(np.float32), training=False)))
    script = (
        "import sys, numpy as np, keras\n"
        "assert keras.backend.backend() == 'torch'\n"
        "from workloads import models\n"
        "from workloads.training import trained_model\n"
        "for name in models.model_names():\n"
        "    out = models.build_model(name)(np.zeros((2, 28, 28), 'float32'))\n"
        "    assert tuple(out.shape) == (2, 10), name\n"
        "m = trained_model.load_model(sys.argv[1])\n"
        "got = keras.ops.convert_to_numpy(m(np.load(sys.argv[2]).astype('float32'), training=False))\n"
        "np.testing.assert_allclose(got, np.load(sys.argv[3]), atol=1e-4)\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(winner),
            str(tmp_path / "images.npy"),
            str(tmp_path / "expected.npy"),
        ],
        cwd=ROOT,
        env=subprocess_env(KERAS_BACKEND="torch"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_select_command_prints_writes_and_promotes_the_winner(demo, selected, tmp_path):
    workdir, _ = demo
    table, _, _ = selected
    result = run_workloads(
        "select", "--candidates", str(workdir / "search" / "trials"), "--data", str(workdir / "data"),
        "--results", str(tmp_path / "results.json"), "--model-base-path", str(tmp_path / "serving"),
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "<- selected" in result.stdout and "ranked by accuracy" in result.stdout
    written = json.loads((tmp_path / "results.json").read_text())
    assert [r["run_name"] for r in written["candidates"]] == [r["run_name"] for r in table["candidates"]]
    assert (tmp_path / "serving" / "fashion_mnist" / "1" / "saved_model.pb").exists()


def test_the_export_command_writes_a_saved_model_with_its_warmup_file(selected, tmp_path):
    _, winner, _ = selected
    result = run_workloads(
        "export", "--model-dir", str(winner), "--output", str(tmp_path / "savedmodel"), timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "savedmodel" / "saved_model.pb").exists()
    assert (tmp_path / "savedmodel" / "assets.extra" / "tf_serving_warmup_requests").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
