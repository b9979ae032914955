"""A run is its settings and its data: a checkpoint or a trained model of another run is never reused,
and a winner no better than guessing is never promoted (issue 21)."""

import dataclasses
import json
import logging
import re

import numpy as np
import pytest

from workloads import cli
from workloads.core.errors import WorkloadError
from workloads.data import datasets
from workloads.data.shards import Manifest, ShardEntry, ShardSet, ShardWriter
from workloads.training import runs, trained_model
from workloads.training.checkpoints import CheckpointStore
from workloads.training.config import TrainConfig
from workloads.workflow import search, selection

RUNS_LOG = "workloads.training.runs"


def write_shards(url, labels, *, metadata=None):
    """Replaces the shard directory ``url`` with fixed images and ``labels``, 4 records per shard."""
    images = np.arange(len(labels) * 28 * 28, dtype=np.uint32).reshape(len(labels), 28, 28).astype(np.uint8)
    writer = ShardWriter(url, shard_size=4, metadata=metadata, publish_each_commit=False, resume=False)
    writer.write(images, np.asarray(labels, dtype=np.uint8))
    writer.commit()
    writer.publish()
    return ShardSet.open(url).manifest


LABELS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def config(data, tmp_path, **overrides):
    return TrainConfig(
        data=str(data), output=str(tmp_path / "model"), checkpoint_dir=str(tmp_path / "ckpt"), **overrides
    )


def identity(config_, manifest):
    return runs.checkpoint_identity(config_.framework, config_, manifest)


def save(store, step, extra):
    store.save(
        step, epoch=0, batch=step, write=lambda d: (d / "weights.bin").write_text(str(step)), extra=extra
    )


# The data's content digest


def test_the_content_digest_changes_with_any_label_but_not_with_metadata(tmp_path):
    first = write_shards(str(tmp_path / "a"), LABELS, metadata={"offsets": [1, 2]})
    again = write_shards(str(tmp_path / "b"), LABELS, metadata={"offsets": [7, 9], "written_at": 5})
    relabelled = write_shards(str(tmp_path / "c"), [(label + 1) % 10 for label in LABELS])
    assert first.content_digest == again.content_digest
    assert relabelled.records == first.records and relabelled.image_shape == first.image_shape
    assert relabelled.content_digest != first.content_digest


def test_the_content_digest_changes_with_the_class_count():
    shards = (ShardEntry("shard-00000-aaaaaaaaaaaa.bin", 4, 100, "ab" * 32, (1,)),)
    ten, eleven = Manifest((28, 28), 10, 4, shards), Manifest((28, 28), 11, 4, shards)
    assert ten.content_digest != eleven.content_digest


# Resuming: only a checkpoint of the same identity


@pytest.fixture
def data(tmp_path):
    url = str(tmp_path / "data")
    return url, write_shards(url, LABELS)


def test_a_checkpoint_of_the_same_run_is_resumed_even_by_a_longer_run(tmp_path, data):
    url, manifest = data
    run = config(url, tmp_path)
    store = CheckpointStore(run.checkpoint_dir)
    save(store, 6, identity(run, manifest))
    state = runs.latest_checkpoint(store, identity(run, manifest), total_steps=12, is_chief=True)
    assert state is not None and state.step == 6


@pytest.mark.parametrize(
    "change",
    [
        {"learning_rate": 0.01},
        {"model": "batchnorm"},
        {"batch_size": 32},
        {"seed": 1},
        {"shuffle_window": 8},
    ],
    ids=lambda change: next(iter(change)),
)
def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path, data, change):
    url, manifest = data
    store = CheckpointStore(str(tmp_path / "ckpt"))
    save(store, 6, identity(config(url, tmp_path), manifest))
    changed = config(url, tmp_path, **change)
    assert runs.latest_checkpoint(store, identity(changed, manifest), total_steps=12, is_chief=True) is None


def test_a_checkpoint_of_other_data_is_set_aside_and_the_run_starts_at_step_0_saying_why(
    tmp_path, data, caplog
):
    url, manifest = data
    run = config(url, tmp_path)
    store = CheckpointStore(run.checkpoint_dir, keep=2)
    for step in (2, 4, 6):
        save(store, step, identity(run, manifest))
    relabelled = write_shards(url, [(label + 1) % 10 for label in LABELS])

    with caplog.at_level(logging.INFO, logger=RUNS_LOG):
        state = runs.latest_checkpoint(store, identity(run, relabelled), total_steps=3, is_chief=True)

    assert state is None
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert warning.getMessage() == (
        "checkpoint identity changed (data_sha256): starting at step 0, not resuming step 6"
    )
    assert warning.fields["changed"] == {
        "data_sha256": {"recorded": manifest.content_digest, "now": relabelled.content_digest}
    }
    root = tmp_path / "ckpt"
    assert sorted(p.name for p in root.iterdir()) == ["superseded"]
    assert sorted(p.name for p in (root / "superseded").iterdir()) == [
        "latest.json",
        "step-000000004",
        "step-000000006",
    ]
    # The new run's checkpoints are the only ones the store sees: pruned among themselves, resumed.
    for step in (1, 2, 3):
        save(store, step, identity(run, relabelled))
    assert sorted(p.name for p in root.glob("step-*")) == ["step-000000002", "step-000000003"]
    assert runs.latest_checkpoint(store, identity(run, relabelled), total_steps=3, is_chief=True).step == 3


def test_a_non_chief_worker_reaches_the_same_decision_and_moves_nothing(tmp_path, data):
    url, manifest = data
    run = config(url, tmp_path)
    store = CheckpointStore(run.checkpoint_dir)
    save(store, 6, identity(run, manifest))
    other = identity(config(url, tmp_path, seed=3), manifest)
    assert runs.latest_checkpoint(store, other, total_steps=12, is_chief=False) is None
    assert store.latest().step == 6 and not (tmp_path / "ckpt" / "superseded").exists()


def test_a_checkpoint_of_an_older_writer_without_the_data_digest_is_not_resumed(tmp_path, data, caplog):
    url, manifest = data
    run = config(url, tmp_path)
    store = CheckpointStore(run.checkpoint_dir)
    old = {
        "framework": "tensorflow",
        "strategy": run.strategy,
        "model": run.model,
        "batch_size": 64,
        "seed": 0,
    }
    save(store, 6, {**old, "records": 12})
    with caplog.at_level(logging.WARNING, logger=RUNS_LOG):
        assert runs.latest_checkpoint(store, identity(run, manifest), total_steps=12, is_chief=True) is None
    (warning,) = _warnings(caplog)
    assert "data_sha256" in warning and "learning_rate" in warning


def _warnings(caplog) -> list[str]:
    """The warnings logged; other records depend on the level an earlier test left the root logger at."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_checkpoint_past_this_runs_last_step_is_not_resumed(tmp_path, data, caplog):
    url, manifest = data
    run = config(url, tmp_path)
    store = CheckpointStore(run.checkpoint_dir)
    save(store, 9, identity(run, manifest))
    with caplog.at_level(logging.WARNING, logger=RUNS_LOG):
        assert runs.latest_checkpoint(store, identity(run, manifest), total_steps=6, is_chief=True) is None
    assert _warnings(caplog) == ["checkpoint at step 9 is past this run's 6 steps: starting at step 0"]


def test_step_directories_without_a_pointer_are_set_aside_on_a_fresh_start(tmp_path, data):
    url, manifest = data
    run = config(url, tmp_path)
    store = CheckpointStore(run.checkpoint_dir)
    save(store, 6, identity(run, manifest))
    (tmp_path / "ckpt" / "latest.json").unlink()  # a chief killed while setting them aside
    assert runs.latest_checkpoint(store, identity(run, manifest), total_steps=12, is_chief=True) is None
    assert [p.name for p in (tmp_path / "ckpt").glob("step-*")] == []
    assert (tmp_path / "ckpt" / "superseded" / "step-000000006").is_dir()


def test_checkpoints_on_s3_are_set_aside_too(s3_bucket):
    url = f"s3://{s3_bucket}/runs/a/checkpoints"
    store = CheckpointStore(url)
    save(store, 3, {"seed": 0})
    save(store, 5, {"seed": 0})
    assert store.set_aside() == f"{url}/superseded"
    import fsspec

    fs = fsspec.filesystem("s3")
    assert store.latest() is None and store._step_dirs() == []
    names = sorted(n.rsplit("/", 1)[-1] for n in fs.ls(f"{s3_bucket}/runs/a/checkpoints/superseded"))
    assert names == ["latest.json", "step-000000003", "step-000000005"]


# The trained-model record and the search's memo


def record_for(run, manifest, **overrides):
    values = dict(
        run_name="trial",
        framework=run.framework,
        strategy=run.strategy,
        model=run.model,
        learning_rate=run.learning_rate,
        batch_size=run.batch_size,
        epochs=run.epochs,
        seed=run.seed,
        data=run.data,
        world_size=1,
        steps=3,
        resumed_from_step=0,
        history=[],
        wall_seconds=1.0,
        weights_sha256="0" * 64,
        created_at=0.0,
        identity=identity(run, manifest),
    )
    return trained_model.TrainingRecord(**{**values, **overrides})


def test_the_search_memoises_a_trial_only_for_the_same_identity_and_epochs(tmp_path, data, caplog):
    url, manifest = data
    run = config(url, tmp_path, run_name="trial")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / trained_model.METADATA_FILE).write_text(record_for(run, manifest).to_json())
    assert search._memoised(run)
    assert not search._memoised(dataclasses.replace(run, epochs=run.epochs + 1))

    write_shards(url, [(label + 1) % 10 for label in LABELS])  # same path, shape and size
    with caplog.at_level(logging.INFO, logger="workloads.workflow.search"):
        assert not search._memoised(run)
    assert caplog.records[-1].getMessage() == (
        "trial trial: its trained model is of another run (data_sha256), training again"
    )


def test_a_version_1_training_record_still_reads_with_an_empty_identity(tmp_path, data):
    url, manifest = data
    run = config(url, tmp_path, run_name="trial")
    fields = json.loads(record_for(run, manifest).to_json())
    del fields["identity"]
    fields["version"] = 1
    record = trained_model.TrainingRecord.parse(json.dumps(fields), "training.json")
    assert record.identity == {} and record.model == run.model
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / trained_model.METADATA_FILE).write_text(json.dumps(fields))
    assert not search._memoised(run)


def test_a_training_record_of_an_unknown_version_is_refused_clearly():
    with pytest.raises(
        WorkloadError, match=r"x/training.json: not a trained-model record \(.*version 1 or 2"
    ):
        trained_model.TrainingRecord.parse(
            json.dumps({"format": trained_model.FORMAT, "version": 9}), "x/training.json"
        )


# Promotion's floor


def row(accuracy):
    return selection.Row(1, "plain-lr0.003-b64", "plain", 0.003, 64, "tensorflow", accuracy, 0.0, 2.3, "/m")


@pytest.mark.parametrize("classes, floor", [(10, 0.19), (2, 0.55), (100, 0.109)])
def test_the_default_floor_is_a_tenth_of_the_way_from_chance_to_perfect(classes, floor):
    assert selection.default_min_accuracy(classes) == pytest.approx(floor)


def test_a_winner_below_the_floor_is_refused_naming_its_accuracy_and_the_floor():
    with pytest.raises(
        WorkloadError, match=r"accuracy 0\.0300 is below the floor 0\.1900 .*nothing was promoted"
    ):
        selection.check_promotable(row(0.03), 10)
    selection.check_promotable(row(0.2), 10)
    selection.check_promotable(row(0.03), 10, min_accuracy=0.0)
    with pytest.raises(WorkloadError, match=r"accuracy 0\.8000 is below the floor 0\.9000"):
        selection.check_promotable(row(0.8), 10, min_accuracy=0.9)


@pytest.fixture
def guesser(small_dataset, tmp_path):
    """A trained-model directory whose model answers class 0 for every image (about 10% accurate)."""
    from workloads import models

    model = models.build_model("plain")
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    run = config(small_dataset, tmp_path, run_name="constant")
    manifest = ShardSet.open(datasets.resolve_splits(str(small_dataset)).train).manifest
    trained_model.save(str(tmp_path / "model"), model, record_for(run, manifest, run_name="constant"))
    return tmp_path / "model"


def test_select_refuses_to_promote_a_winner_below_the_floor_and_promotes_nothing(
    small_dataset, guesser, tmp_path, capsys
):
    base = tmp_path / "serving"

    code = cli.main([
        "select", "--candidates", str(guesser), "--data", str(small_dataset),
        "--model-base-path", str(base), "--log-format", "text",
    ])  # fmt: skip

    out, err = capsys.readouterr()
    assert code == 1
    refusals = [line for line in err.splitlines() if "not promoting" in line]
    assert len(refusals) == 1, err
    assert re.search(
        r"not promoting constant: its held-out accuracy 0\.\d{4} is below the floor 0\.1900", refusals[0]
    )
    assert "<- selected" in out and "promoted" not in out
    assert not base.exists() or not list(base.rglob("saved_model.pb"))


def test_the_pipeline_refuses_such_a_winner_in_its_select_stage_before_export(
    small_dataset, guesser, tmp_path
):
    from workloads.workflow import pipeline

    splits = datasets.resolve_splits(str(small_dataset))
    settings = pipeline.PipelineSettings(
        workdir=tmp_path,
        source=pipeline.DataSource(None, 1, 1, 1, 0),
        search=search.SearchSettings(data=str(small_dataset), workdir=tmp_path / "search"),
        metric="accuracy",
        model_name="fashion_mnist",
    )
    trained = pipeline.Trained((str(guesser),), tmp_path / "search")
    dataset = pipeline.Dataset(str(small_dataset), splits.train, splits.test)
    with pytest.raises(WorkloadError, match=r"accuracy 0\.\d{4} is below the floor 0\.1900"):
        pipeline.select_winner(trained, dataset, settings)
    assert (tmp_path / "selection.json").exists()  # the table, for a look at why
    low = dataclasses.replace(settings, min_accuracy=0.05)
    assert pipeline.select_winner(trained, dataset, low).winner.run_name == "constant"


# The scenario, end to end


@pytest.mark.slow
def test_a_search_rerun_on_relabelled_data_trains_again_from_step_0(tmp_path):
    from tests.workloads.support import attempts

    data = tmp_path / "data"
    datasets.ingest_synthetic(str(data), train_records=256, test_records=64, seed=0, shard_size=128)
    settings = search.SearchSettings(
        data=str(data),
        workdir=tmp_path / "search",
        grid=search.Grid(("plain",), (0.003,), (64,)),
        epochs=1,
        workers_per_trial=1,
        checkpoint_every=2,
        max_restarts=0,
        trial_timeout=300,
    )
    trial = tmp_path / "search" / "trials" / "plain-lr0.003-b64"
    assert [r.status for r in search.run_search(settings)] == ["trained"]
    first = trained_model.read_record(str(trial / "model"))
    assert json.loads((trial / "checkpoints" / "latest.json").read_text())["step"] == first.steps == 4

    train = ShardSet.open(str(data / "train"))
    images, labels = train.read_all()
    writer = ShardWriter(str(data / "train"), shard_size=128, publish_each_commit=False, resume=False)
    writer.write(images, (labels + 1) % 10)  # the same images, shape and size; every label another
    writer.commit()
    writer.publish(dict(train.manifest.metadata))

    assert [r.status for r in search.run_search(settings)] == ["trained"]  # not memoised
    second = trained_model.read_record(str(trial / "model"))
    assert (second.resumed_from_step, second.steps) == (0, 4)
    assert second.identity["data_sha256"] != first.identity["data_sha256"]
    assert second.weights_sha256 != first.weights_sha256
    log = attempts(trial / "logs" / "worker-0.log")[-1]
    messages = [r["msg"] for r in log]
    assert "checkpoint identity changed (data_sha256): starting at step 0, not resuming step 4" in messages
    assert not any(m.startswith("resumed from checkpoint") for m in messages)
    assert (trial / "checkpoints" / "superseded" / "step-000000004").is_dir()
    assert [r.status for r in search.run_search(settings)] == ["memoised"]  # the same data again
